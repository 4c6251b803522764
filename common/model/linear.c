#include "model/linear.h"

#include <cblas.h>
#include <string.h>

#include "model/vec4.h"

void slex_linear_forward(float *out, const float *inp, const float *w, const float *bias, int64_t N, int IC, int OC) {
    for (int64_t t = 0; t < N; t++) memcpy(out + t * OC, bias, (size_t)OC * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, OC, IC, 1.0f, inp, IC, w, IC, 1.0f, out, OC);
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

void slex_residual_forward(float *out, const float *a, const float *b, int64_t N) {
    int64_t i = 0;
    for (; i + 4 <= N; i += 4) v4_store(out + i, v4_load(a + i) + v4_load(b + i));
    for (; i < N; i++) out[i] = a[i] + b[i];
}
