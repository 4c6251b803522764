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

void slex_attention_forward(float *out, float *att, int64_t att_head_stride, const float *qkv, const float *dropout,
                            int B, int64_t T, int C, int H, float *scratch) {
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
            const float *p = a;
            if (dropout) {
                const float *d = dropout + ((int64_t)b * H + h) * T * T;
                for (int64_t i = 0; i < T * T; i++) scratch[i] = a[i] * d[i];
                p = scratch;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, p, (int)T, v, 3 * C,
                        0.0f, y + h * hd, C);
        }
    }
}

/* dP (T) *= the dropout multipliers d (NULL: none), then dS = P * (dP - sum(dP * P)), in place. */
static void softmax_backward_row(float *row, const float *pr, const float *d, int64_t T) {
    int64_t j = 0, nv = T / 4 * 4;
    v4f acc = v4_splat(0.0f);
    for (; j < nv; j += 4) {
        v4f g = v4_load(row + j);
        if (d) g *= v4_load(d + j);
        v4_store(row + j, g);
        acc += g * v4_load(pr + j);
    }
    float s = v4_hsum(acc);
    for (; j < T; j++) {
        if (d) row[j] *= d[j];
        s += row[j] * pr[j];
    }
    v4f vs = v4_splat(s);
    for (j = 0; j < nv; j += 4) v4_store(row + j, v4_load(pr + j) * (v4_load(row + j) - vs));
    for (; j < T; j++) row[j] = pr[j] * (row[j] - s);
}

/* Per head, with P the probabilities and P' = P * D after dropout, Y = P' V:
 * dV = P'^T dY, dP = (dY V^T) * D, dS = P * (dP - rowsum(dP * P)), dQ = scale dS K,
 * dK = scale dS^T Q. */
void slex_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, const float *dropout,
                             int B, int64_t T, int C, int H, float *scratch) {
    int hd = C / H, ld = 3 * C;
    float scale = 1.0f / sqrtf((float)hd);
    float *pd = scratch, *dp = scratch + T * T;
    for (int b = 0; b < B; b++) {
        const float *x = qkv + (int64_t)b * T * ld, *dy = dout + (int64_t)b * T * C;
        float *dx = dqkv + (int64_t)b * T * ld;
        for (int h = 0; h < H; h++) {
            const float *p = att + ((int64_t)b * H + h) * T * T;
            const float *d = dropout ? dropout + ((int64_t)b * H + h) * T * T : NULL;
            const float *q = x + h * hd, *k = x + C + h * hd, *v = x + 2 * C + h * hd;
            float *dq = dx + h * hd, *dk = dx + C + h * hd, *dv = dx + 2 * C + h * hd;
            const float *pdrop = p;
            if (d) {
                for (int64_t i = 0; i < T * T; i++) pd[i] = p[i] * d[i];
                pdrop = pd;
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, pdrop, (int)T, dy + h * hd,
                        C, 0.0f, dv, ld);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, hd, 1.0f, dy + h * hd, C, v, ld, 0.0f,
                        dp, (int)T);
            for (int64_t i = 0; i < T; i++)
                softmax_backward_row(dp + i * T, p + i * T, d ? d + i * T : NULL, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, hd, (int)T, scale, dp, (int)T, k, ld, 0.0f,
                        dq, ld);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, hd, (int)T, scale, dp, (int)T, q, ld, 0.0f,
                        dk, ld);
        }
    }
}
