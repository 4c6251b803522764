#include "model/conv.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "model/vec4.h"

/* Rows per im2col block: bounds the scratch to a few MB whatever the chunk length. */
#define IM2COL_ROWS 512
/* Below this many input channels a per-tap sgemm has too short an inner dimension, so the
 * window is copied out (im2col) and multiplied once. */
#define MIN_CHANNELS_PER_TAP 32

int64_t slex_conv_out_len(int64_t n, int k, int s) { return n < k ? 0 : (n - k) / s + 1; }

int64_t slex_conv1d_scratch_floats(int Ci, int K, int S) {
    return S < K && Ci < MIN_CHANNELS_PER_TAP ? (int64_t)IM2COL_ROWS * K * Ci : 0;
}

/* One utterance.  Row t of the im2col matrix is inp rows [tS, tS+K) flattened, so:
 * S >= K: the input itself is the im2col matrix with leading dimension S*Ci (one sgemm);
 * Ci small: copy blocks of windows to scratch (IM2COL_ROWS x K*Ci) and multiply;
 * otherwise: one sgemm per tap k over the strided rows inp[tS+k], against w[:, k, :]. */
static void conv1d_one(float *out, const float *inp, const float *w, const float *bias, int64_t Ti, int Ci, int Co,
                       int K, int S, float *scratch) {
    int64_t To = slex_conv_out_len(Ti, K, S);
    /* Without a bias the first product writes out (beta 0) instead of adding to zeros. */
    float beta = bias ? 1.0f : 0.0f;
    if (bias)
        for (int64_t t = 0; t < To; t++) memcpy(out + t * Co, bias, (size_t)Co * sizeof(float));
    int window = K * Ci;
    if (S >= K) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)To, Co, window, 1.0f, inp, S * Ci, w, window, beta,
                    out, Co);
    } else if (Ci < MIN_CHANNELS_PER_TAP) {
        for (int64_t t0 = 0; t0 < To; t0 += IM2COL_ROWS) {
            int rows = (int)(To - t0 < IM2COL_ROWS ? To - t0 : IM2COL_ROWS);
            for (int r = 0; r < rows; r++)
                memcpy(scratch + (int64_t)r * window, inp + (t0 + r) * S * Ci, (size_t)window * sizeof(float));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, Co, window, 1.0f, scratch, window, w, window,
                        beta, out + t0 * Co, Co);
        }
    } else {
        for (int k = 0; k < K; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)To, Co, Ci, 1.0f, inp + (int64_t)k * Ci, S * Ci,
                        w + (int64_t)k * Ci, window, k ? 1.0f : beta, out, Co);
    }
}

void slex_conv1d_forward(float *out, const float *inp, const float *w, const float *bias, int B, int64_t Ti, int Ci,
                         int Co, int K, int S, float *scratch) {
    int64_t To = slex_conv_out_len(Ti, K, S);
    for (int b = 0; b < B; b++)
        conv1d_one(out + b * To * Co, inp + b * Ti * Ci, w, bias, Ti, Ci, Co, K, S, scratch);
}

/* One utterance; the same three cases as the forward. */
static void conv1d_backward_one(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                const float *w, int64_t Ti, int Ci, int Co, int K, int S, float *scratch) {
    int64_t To = slex_conv_out_len(Ti, K, S);
    int window = K * Ci;
    if (dbias)
        for (int64_t t = 0; t < To; t++)
            for (int o = 0; o < Co; o++) dbias[o] += dout[t * Co + o];
    /* dw (Co, K*Ci) += dout^T (Co, To) @ windows (To, K*Ci) */
    if (dw && S >= K) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Co, window, (int)To, 1.0f, dout, Co, inp, S * Ci, 1.0f,
                    dw, window);
    } else if (dw && Ci < MIN_CHANNELS_PER_TAP) {
        for (int64_t t0 = 0; t0 < To; t0 += IM2COL_ROWS) {
            int rows = (int)(To - t0 < IM2COL_ROWS ? To - t0 : IM2COL_ROWS);
            for (int r = 0; r < rows; r++)
                memcpy(scratch + (int64_t)r * window, inp + (t0 + r) * S * Ci, (size_t)window * sizeof(float));
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Co, window, rows, 1.0f, dout + t0 * Co, Co, scratch,
                        window, 1.0f, dw, window);
        }
    } else if (dw) {
        for (int k = 0; k < K; k++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Co, Ci, (int)To, 1.0f, dout, Co, inp + (int64_t)k * Ci,
                        S * Ci, 1.0f, dw + (int64_t)k * Ci, window);
    }
    if (!dinp) return;
    /* windows (To, K*Ci) of dinp += dout (To, Co) @ w (Co, K*Ci); windows overlap when S < K.
     * Rows tS + k of the taps k < S tile rows [0, To S) once, so those products write (beta 0)
     * and only the rows past To S start from zero; the taps k >= S add. */
    if (S == K) {
        memset(dinp + To * S * Ci, 0, (size_t)((Ti - To * S) * Ci) * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)To, window, Co, 1.0f, dout, Co, w, window, 0.0f,
                    dinp, S * Ci);
    } else if (S > K) {
        memset(dinp, 0, (size_t)(Ti * Ci) * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)To, window, Co, 1.0f, dout, Co, w, window, 1.0f,
                    dinp, S * Ci);
    } else if (Ci < MIN_CHANNELS_PER_TAP) {
        memset(dinp, 0, (size_t)(Ti * Ci) * sizeof(float));
        for (int64_t t0 = 0; t0 < To; t0 += IM2COL_ROWS) {
            int rows = (int)(To - t0 < IM2COL_ROWS ? To - t0 : IM2COL_ROWS);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, window, Co, 1.0f, dout + t0 * Co, Co, w,
                        window, 0.0f, scratch, window);
            for (int r = 0; r < rows; r++) {
                float *d = dinp + (t0 + r) * S * Ci;
                const float *g = scratch + (int64_t)r * window;
                for (int j = 0; j < window; j++) d[j] += g[j];
            }
        }
    } else {
        memset(dinp + To * S * Ci, 0, (size_t)((Ti - To * S) * Ci) * sizeof(float));
        for (int k = 0; k < K; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)To, Ci, Co, 1.0f, dout, Co, w + (int64_t)k * Ci,
                        window, k < S ? 0.0f : 1.0f, dinp + (int64_t)k * Ci, S * Ci);
    }
}

void slex_conv1d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                          int B, int64_t Ti, int Ci, int Co, int K, int S, float *scratch) {
    int64_t To = slex_conv_out_len(Ti, K, S);
    for (int b = 0; b < B; b++)
        conv1d_backward_one(dinp ? dinp + b * Ti * Ci : NULL, dw, dbias, dout + b * To * Co, inp + b * Ti * Ci, w, Ti,
                            Ci, Co, K, S, scratch);
}

/* One utterance.  Sums run in float over blocks of ROWS frames and are carried across blocks
 * in double. */
static void groupnorm_one(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                          int64_t T, int C, float eps) {
    enum { BLOCK = 256, ROWS = 64 };
    for (int c0 = 0; c0 < C; c0 += BLOCK) {
        int nc = C - c0 < BLOCK ? C - c0 : BLOCK, nv = nc / 4 * 4;
        double sum[BLOCK] = {0}, sq[BLOCK] = {0};
        float m[BLOCK];
        for (int pass = 0; pass < 2; pass++) {
            double *acc = pass == 0 ? sum : sq;
            for (int64_t t0 = 0; t0 < T; t0 += ROWS) {
                float part[BLOCK] = {0};
                int64_t t1 = t0 + ROWS < T ? t0 + ROWS : T;
                for (int64_t t = t0; t < t1; t++) {
                    const float *x = inp + t * C + c0;
                    int c = 0;
                    for (; c < nv; c += 4) {
                        v4f v = v4_load(x + c);
                        if (pass == 1) v -= v4_load(m + c);
                        v4_store(part + c, v4_load(part + c) + (pass == 0 ? v : v * v));
                    }
                    for (; c < nc; c++) part[c] += pass == 0 ? x[c] : (x[c] - m[c]) * (x[c] - m[c]);
                }
                for (int c = 0; c < nc; c++) acc[c] += part[c];
            }
            if (pass == 0)
                for (int c = 0; c < nc; c++) m[c] = (float)(sum[c] / (double)T);
        }
        float scale[BLOCK], shift[BLOCK];
        for (int c = 0; c < nc; c++) {
            double r = 1.0 / sqrt(sq[c] / (double)T + eps);
            mean[c0 + c] = m[c];
            rstd[c0 + c] = (float)r;
            scale[c] = (float)(r * w[c0 + c]);
            shift[c] = (float)(b[c0 + c] - m[c] * r * w[c0 + c]);
        }
        for (int64_t t = 0; t < T; t++) {
            const float *x = inp + t * C + c0;
            float *y = out + t * C + c0;
            int c = 0;
            for (; c < nv; c += 4) v4_store(y + c, v4_load(x + c) * v4_load(scale + c) + v4_load(shift + c));
            for (; c < nc; c++) y[c] = x[c] * scale[c] + shift[c];
        }
    }
}

void slex_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                            int B, int64_t T, int C, float eps) {
    for (int i = 0; i < B; i++)
        groupnorm_one(out + i * T * C, mean + (int64_t)i * C, rstd + (int64_t)i * C, inp + i * T * C, w, b, T, C, eps);
}

/* One utterance, channels in blocks: per channel n = (x - mean) rstd, dn = dout w,
 * dx = rstd (dn - mean_t(dn) - n mean_t(dn n)), dw += sum_t dout n, db += sum_t dout. */
static void groupnorm_backward_one(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                   const float *w, const float *mean, const float *rstd, int64_t T, int C) {
    enum { BLOCK = 256 };
    for (int c0 = 0; c0 < C; c0 += BLOCK) {
        int nc = C - c0 < BLOCK ? C - c0 : BLOCK;
        double sdn[BLOCK] = {0}, sdnn[BLOCK] = {0}, sdo[BLOCK] = {0}, sdon[BLOCK] = {0};
        for (int64_t t = 0; t < T; t++) {
            const float *x = inp + t * C + c0, *g = dout + t * C + c0;
            for (int c = 0; c < nc; c++) {
                double n = ((double)x[c] - mean[c0 + c]) * rstd[c0 + c], dn = (double)g[c] * w[c0 + c];
                sdn[c] += dn;
                sdnn[c] += dn * n;
                sdo[c] += g[c];
                sdon[c] += g[c] * n;
            }
        }
        for (int c = 0; c < nc; c++) {
            if (dw) dw[c0 + c] += (float)sdon[c];
            if (db) db[c0 + c] += (float)sdo[c];
        }
        if (!dinp) continue;
        for (int64_t t = 0; t < T; t++) {
            const float *x = inp + t * C + c0, *g = dout + t * C + c0;
            float *d = dinp + t * C + c0;
            for (int c = 0; c < nc; c++) {
                double n = ((double)x[c] - mean[c0 + c]) * rstd[c0 + c], dn = (double)g[c] * w[c0 + c];
                d[c] = (float)(rstd[c0 + c] * (dn - sdn[c] / (double)T - n * sdnn[c] / (double)T));
            }
        }
    }
}

void slex_groupnorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                             const float *mean, const float *rstd, int B, int64_t T, int C) {
    for (int i = 0; i < B; i++)
        groupnorm_backward_one(dinp ? dinp + i * T * C : NULL, dw, db, dout + i * T * C, inp + i * T * C, w,
                               mean + (int64_t)i * C, rstd + (int64_t)i * C, T, C);
}
