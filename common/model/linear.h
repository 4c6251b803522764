/* linear: the row-wise kernels of the feed-forward blocks and projections: nn.Linear, the
 * exact (erf) GELU, and residual sums.  Rows are N = B*T frames. */
#ifndef SLEX_LINEAR_H
#define SLEX_LINEAR_H

#include <stdint.h>

/* out (N, OC) = inp (N, IC) @ w^T (OC, IC) + bias (OC). */
void slex_linear_forward(float *out, const float *inp, const float *w, const float *bias, int64_t N, int IC, int OC);

/* Exact (erf) GELU: out (N), inp (N); out may alias inp. */
void slex_gelu_forward(float *out, const float *inp, int64_t N);

/* out (N) = a (N) + b (N); out may alias either. */
void slex_residual_forward(float *out, const float *a, const float *b, int64_t N);

#endif
