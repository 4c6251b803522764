#include "model/linear.h"

#include <cblas.h>
#include <string.h>

#include "model/vec4.h"

void slex_linear_forward(float *out, const float *inp, const float *w, const float *bias, int64_t N, int IC, int OC) {
    for (int64_t t = 0; t < N; t++) memcpy(out + t * OC, bias, (size_t)OC * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, OC, IC, 1.0f, inp, IC, w, IC, 1.0f, out, OC);
}

void slex_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                          int64_t N, int IC, int OC) {
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, IC, OC, 1.0f, dout, OC, w, IC, 0.0f, dinp, IC);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, (int)N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
    if (dbias)
        for (int64_t t = 0; t < N; t++)
            for (int o = 0; o < OC; o++) dbias[o] += dout[t * OC + o];
}

void slex_lora_hidden(float *h, const float *inp, const float *A, int64_t N, int IC, int r) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, r, IC, 1.0f, inp, IC, A, IC, 0.0f, h, r);
}

void slex_lora_forward(float *out, int64_t ldo, float *h, const float *inp, const float *A, const float *B, float s,
                       int64_t N, int IC, int OC, int r) {
    slex_lora_hidden(h, inp, A, N, IC, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, OC, r, s, h, r, B, r, 1.0f, out, (int)ldo);
}

void slex_lora_backward(float *dinp, float *dA, float *dB, float *dh, const float *dout, int64_t ldo, const float *inp,
                        const float *h, const float *A, const float *B, float s, int64_t N, int IC, int OC, int r) {
    if (dB) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, r, (int)N, s, dout, (int)ldo, h, r, 1.0f, dB, r);
    if (!dA && !dinp) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, r, OC, s, dout, (int)ldo, B, r, 0.0f, dh, r);
    if (dA) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, IC, (int)N, 1.0f, dh, r, inp, IC, 1.0f, dA, IC);
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, IC, r, 1.0f, dh, r, A, IC, 1.0f, dinp, IC);
}

void slex_gelu_forward(float *out, const float *inp, int64_t N) {
    int64_t i = 0;
    for (; i + 4 <= N; i += 4) v4_store(out + i, v4_gelu(v4_load(inp + i)));
    if (i < N) {
        float tail[4] = {0};
        memcpy(tail, inp + i, (size_t)(N - i) * sizeof(float));
        v4_store(tail, v4_gelu(v4_load(tail)));
        memcpy(out + i, tail, (size_t)(N - i) * sizeof(float));
    }
}

void slex_gelu_backward(float *dinp, const float *dout, const float *inp, int64_t N) {
    int64_t i = 0;
    for (; i + 4 <= N; i += 4) v4_store(dinp + i, v4_load(dout + i) * v4_gelu_grad(v4_load(inp + i)));
    if (i < N) {
        float x[4] = {0}, g[4] = {0};
        memcpy(x, inp + i, (size_t)(N - i) * sizeof(float));
        memcpy(g, dout + i, (size_t)(N - i) * sizeof(float));
        v4_store(g, v4_load(g) * v4_gelu_grad(v4_load(x)));
        memcpy(dinp + i, g, (size_t)(N - i) * sizeof(float));
    }
}

void slex_dropout_forward(float *out, const float *inp, const float *mask, int64_t N) {
    for (int64_t i = 0; i < N; i++) out[i] = inp[i] * mask[i];
}

void slex_dropout_backward(float *dinp, const float *dout, const float *mask, int64_t N) {
    slex_dropout_forward(dinp, dout, mask, N);
}

void slex_residual_forward(float *out, const float *a, const float *b, int64_t N) {
    int64_t i = 0;
    for (; i + 4 <= N; i += 4) v4_store(out + i, v4_load(a + i) + v4_load(b + i));
    for (; i < N; i++) out[i] = a[i] + b[i];
}
