#include "model/attention.h"

#include <cblas.h>
#include <math.h>

#include "model/vec4.h"

void slex_softmax_forward(float *att, int64_t R, int64_t T) {
    for (int64_t i = 0; i < R; i++) {
        float *row = att + i * T;
        int64_t j = 0, nv = T / 4 * 4;
        float mx = row[0];
        if (nv) {
            v4f m = v4_load(row);
            for (j = 4; j < nv; j += 4) m = v4_max(m, v4_load(row + j));
            for (int k = 0; k < 4; k++) mx = m[k] > mx ? m[k] : mx;
        }
        for (j = nv; j < T; j++) mx = row[j] > mx ? row[j] : mx;
        /* A NaN the maximum skipped still reaches the sum through exp (NaN in, NaN out). */
        v4f acc = v4_splat(0.0f), vmx = v4_splat(mx);
        for (j = 0; j < nv; j += 4) {
            v4f e = v4_exp_nonpos(v4_load(row + j) - vmx);
            v4_store(row + j, e);
            acc += e;
        }
        float sum = v4_hsum(acc);
        for (j = nv; j < T; j++) {
            row[j] = v4_exp_nonpos(v4_splat(row[j] - mx))[0];
            sum += row[j];
        }
        v4f inv = v4_splat(1.0f / sum);
        for (j = 0; j < nv; j += 4) v4_store(row + j, v4_load(row + j) * inv);
        for (j = nv; j < T; j++) row[j] *= inv[0];
    }
}

void slex_attention_forward(float *out, float *att, int64_t att_head_stride, const float *qkv, int B, int64_t T, int C,
                            int H) {
    int hd = C / H;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++) {
        const float *x = qkv + (int64_t)b * T * 3 * C;
        float *y = out + (int64_t)b * T * C;
        for (int h = 0; h < H; h++) {
            float *a = att + ((int64_t)b * H + h) * att_head_stride;
            const float *q = x + h * hd, *k = x + C + h * hd, *v = x + 2 * C + h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, hd, scale, q, 3 * C, k, 3 * C, 0.0f,
                        a, (int)T);
            slex_softmax_forward(a, T, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, a, (int)T, v, 3 * C,
                        0.0f, y + h * hd, C);
        }
    }
}
