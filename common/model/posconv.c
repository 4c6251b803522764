#include "model/posconv.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Rows per im2col block. */
#define IM2COL_ROWS 512

/* Taps per pass of the weight norm: v is read in storage order (tap fastest) with the norms of
 * a block of taps accumulating side by side; each norm still sums its elements in order. */
#define WN_TAPS 256

void slex_weightnorm_forward(float *w, const float *g, const float *v, int C, int Cg, int K) {
    const int64_t rows = (int64_t)C * Cg;
    double sq[WN_TAPS], scale[WN_TAPS];
    for (int k0 = 0; k0 < K; k0 += WN_TAPS) {
        const int nk = K - k0 < WN_TAPS ? K - k0 : WN_TAPS;
        for (int k = 0; k < nk; k++) sq[k] = 0.0;
        for (int64_t i = 0; i < rows; i++) {
            const float *vi = v + i * K + k0;
            for (int k = 0; k < nk; k++) sq[k] += (double)vi[k] * vi[k];
        }
        /* sq == 0: a zero tap; NaN sq (NaN or Inf in v) keeps the tap NaN, as PyTorch. */
        for (int k = 0; k < nk; k++) scale[k] = sq[k] == 0.0 ? 0.0 : g[k0 + k] / sqrt(sq[k]);
        for (int o = 0; o < C; o++)
            for (int c = 0; c < Cg; c++) {
                const float *vi = v + ((int64_t)o * Cg + c) * K + k0;
                float *wo = w + ((int64_t)o * K + k0) * Cg + c;
                for (int k = 0; k < nk; k++) wo[(int64_t)k * Cg] = (float)(vi[k] * scale[k]);
            }
    }
}

void slex_weightnorm_backward(float *dg, float *dv, const float *dw, const float *g, const float *v, int C, int Cg,
                              int K) {
    double sq[WN_TAPS], dot[WN_TAPS], a[WN_TAPS], b[WN_TAPS];
    for (int k0 = 0; k0 < K; k0 += WN_TAPS) {
        const int nk = K - k0 < WN_TAPS ? K - k0 : WN_TAPS;
        for (int k = 0; k < nk; k++) sq[k] = dot[k] = 0.0;
        for (int o = 0; o < C; o++)
            for (int c = 0; c < Cg; c++) {
                const float *vi = v + ((int64_t)o * Cg + c) * K + k0;
                const float *dwo = dw + ((int64_t)o * K + k0) * Cg + c;
                for (int k = 0; k < nk; k++) {
                    double x = vi[k];
                    sq[k] += x * x;
                    dot[k] += x * dwo[(int64_t)k * Cg];
                }
            }
        for (int k = 0; k < nk; k++) {
            if (sq[k] == 0.0) {
                a[k] = b[k] = 0.0;
                continue;
            }
            double n = sqrt(sq[k]);
            if (dg) dg[k0 + k] += (float)(dot[k] / n);
            a[k] = g[k0 + k] / n;
            b[k] = g[k0 + k] * dot[k] / (n * sq[k]);
        }
        if (!dv) continue;
        for (int o = 0; o < C; o++)
            for (int c = 0; c < Cg; c++) {
                const int64_t iv = ((int64_t)o * Cg + c) * K + k0;
                const float *dwo = dw + ((int64_t)o * K + k0) * Cg + c;
                for (int k = 0; k < nk; k++) {
                    if (sq[k] == 0.0) continue;
                    dv[iv + k] += (float)(a[k] * dwo[(int64_t)k * Cg] - b[k] * v[iv + k]);
                }
            }
    }
}

int64_t slex_posconv_scratch_floats(int C, int K, int G) { return (int64_t)IM2COL_ROWS * K * (C / G); }

/* Windows of group g for output rows [t0, t0 + rows) into scratch (rows, K*Cg), zeros outside
 * the utterance (the padding). */
static void gather_windows(float *scratch, const float *inp, int64_t t0, int rows, int64_t T, int C, int K, int Cg,
                           int g) {
    int pad = K / 2, window = K * Cg;
    for (int r = 0; r < rows; r++) {
        float *col = scratch + (int64_t)r * window;
        for (int k = 0; k < K; k++) {
            int64_t src = t0 + r + k - pad;
            if (src < 0 || src >= T)
                memset(col + (int64_t)k * Cg, 0, (size_t)Cg * sizeof(float));
            else
                memcpy(col + (int64_t)k * Cg, inp + src * C + (int64_t)g * Cg, (size_t)Cg * sizeof(float));
        }
    }
}

/* One utterance: windows are copied to scratch (IM2COL_ROWS x K*Cg) per group. */
static void posconv_one(float *out, const float *inp, const float *w, const float *bias, int64_t T, int C, int K,
                        int G, float *scratch) {
    int Cg = C / G, window = K * Cg;
    for (int64_t t = 0; t < T; t++) memcpy(out + t * C, bias, (size_t)C * sizeof(float));
    for (int g = 0; g < G; g++) {
        for (int64_t t0 = 0; t0 < T; t0 += IM2COL_ROWS) {
            int rows = (int)(T - t0 < IM2COL_ROWS ? T - t0 : IM2COL_ROWS);
            gather_windows(scratch, inp, t0, rows, T, C, K, Cg, g);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, Cg, window, 1.0f, scratch, window,
                        w + (int64_t)g * Cg * window, window, 1.0f, out + t0 * C + (int64_t)g * Cg, C);
        }
    }
}

void slex_posconv_forward(float *out, const float *inp, const float *w, const float *bias, int B, int64_t T, int C,
                          int K, int G, float *scratch) {
    for (int b = 0; b < B; b++) posconv_one(out + b * T * C, inp + b * T * C, w, bias, T, C, K, G, scratch);
}

/* One utterance, per group and block of rows: dw_g (Cg, K*Cg) += dout_g^T @ windows, then the
 * window gradients dout_g @ w_g (rows, K*Cg) are scattered back onto dinp. */
static void posconv_backward_one(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                 const float *w, int64_t T, int C, int K, int G, float *scratch) {
    int Cg = C / G, pad = K / 2, window = K * Cg;
    if (dbias)
        for (int64_t t = 0; t < T; t++)
            for (int c = 0; c < C; c++) dbias[c] += dout[t * C + c];
    if (dinp) memset(dinp, 0, (size_t)(T * C) * sizeof(float));
    for (int g = 0; g < G; g++) {
        const float *wg = w + (int64_t)g * Cg * window;
        for (int64_t t0 = 0; t0 < T; t0 += IM2COL_ROWS) {
            int rows = (int)(T - t0 < IM2COL_ROWS ? T - t0 : IM2COL_ROWS);
            const float *dg = dout + t0 * C + (int64_t)g * Cg;
            if (dw) {
                gather_windows(scratch, inp, t0, rows, T, C, K, Cg, g);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Cg, window, rows, 1.0f, dg, C, scratch, window,
                            1.0f, dw + (int64_t)g * Cg * window, window);
            }
            if (!dinp) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, window, Cg, 1.0f, dg, C, wg, window, 0.0f,
                        scratch, window);
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < K; k++) {
                    int64_t dst = t0 + r + k - pad;
                    if (dst < 0 || dst >= T) continue;
                    float *d = dinp + dst * C + (int64_t)g * Cg;
                    const float *s = scratch + (int64_t)r * window + (int64_t)k * Cg;
                    for (int c = 0; c < Cg; c++) d[c] += s[c];
                }
        }
    }
}

void slex_posconv_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                           int B, int64_t T, int C, int K, int G, float *scratch) {
    for (int b = 0; b < B; b++)
        posconv_backward_one(dinp ? dinp + b * T * C : NULL, dw, dbias, dout + b * T * C, inp + b * T * C, w, T, C, K,
                             G, scratch);
}
