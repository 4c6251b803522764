#include "model/posconv.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Rows per im2col block. */
#define IM2COL_ROWS 512

void slex_weightnorm_forward(float *w, const float *g, const float *v, int C, int Cg, int K) {
    for (int k = 0; k < K; k++) {
        double sq = 0.0;
        for (int64_t i = 0; i < (int64_t)C * Cg; i++) sq += (double)v[i * K + k] * v[i * K + k];
        /* sq == 0: a zero tap; NaN sq (NaN or Inf in v) keeps the tap NaN, as PyTorch. */
        double scale = sq == 0.0 ? 0.0 : g[k] / sqrt(sq);
        for (int o = 0; o < C; o++)
            for (int c = 0; c < Cg; c++)
                w[((int64_t)o * K + k) * Cg + c] = (float)(v[((int64_t)o * Cg + c) * K + k] * scale);
    }
}

int64_t slex_posconv_scratch_floats(int C, int K, int G) { return (int64_t)IM2COL_ROWS * K * (C / G); }

/* One utterance: windows are copied to scratch (IM2COL_ROWS x K*Cg) per group. */
static void posconv_one(float *out, const float *inp, const float *w, const float *bias, int64_t T, int C, int K,
                        int G, float *scratch) {
    int Cg = C / G, pad = K / 2, window = K * Cg;
    for (int64_t t = 0; t < T; t++) memcpy(out + t * C, bias, (size_t)C * sizeof(float));
    for (int g = 0; g < G; g++) {
        for (int64_t t0 = 0; t0 < T; t0 += IM2COL_ROWS) {
            int rows = (int)(T - t0 < IM2COL_ROWS ? T - t0 : IM2COL_ROWS);
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
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, Cg, window, 1.0f, scratch, window,
                        w + (int64_t)g * Cg * window, window, 1.0f, out + t0 * C + (int64_t)g * Cg, C);
        }
    }
}

void slex_posconv_forward(float *out, const float *inp, const float *w, const float *bias, int B, int64_t T, int C,
                          int K, int G, float *scratch) {
    for (int b = 0; b < B; b++) posconv_one(out + b * T * C, inp + b * T * C, w, bias, T, C, K, G, scratch);
}
