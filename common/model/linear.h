/* linear: the row-wise kernels of the feed-forward blocks and projections: nn.Linear (with an
 * optional LoRA branch), the exact (erf) GELU, dropout with a given mask, and residual sums.
 * Rows are N = B*T frames.  Backward passes write the input gradient and accumulate the
 * parameter gradients; a NULL gradient is not computed (a frozen weight, or no input
 * gradient needed below). */
#ifndef SLEX_LINEAR_H
#define SLEX_LINEAR_H

#include <stdint.h>

/* out (N, OC) = inp (N, IC) @ w^T (OC, IC) + bias (OC). */
void slex_linear_forward(float *out, const float *inp, const float *w, const float *bias, int64_t N, int IC, int OC);

/* dinp (N, IC) = dout (N, OC) @ w; dw (OC, IC) += dout^T @ inp; dbias (OC) += column sums. */
void slex_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                          int64_t N, int IC, int OC);

/* The LoRA branch of an adapted nn.Linear (PEFT, no LoRA dropout):
 * out (N, OC; row stride ldo) += s * (inp (N, IC) @ A^T (IC, r)) @ B^T (r, OC), keeping
 * h (N, r) = inp @ A^T for the backward.  A (r, IC), B (OC, r); s = alpha / r (rsLoRA:
 * alpha / sqrt(r)).  Run it after slex_linear_forward of the frozen base weight. */
void slex_lora_forward(float *out, int64_t ldo, float *h, const float *inp, const float *A, const float *B, float s,
                       int64_t N, int IC, int OC, int r);

/* h (N, r) = inp (N, IC) @ A^T: the branch's hidden activations (recomputed for a backward). */
void slex_lora_hidden(float *h, const float *inp, const float *A, int64_t N, int IC, int r);

/* Backward of the branch for dout (N, OC; row stride ldo): dB (OC, r) += s dout^T h;
 * dh (N, r) = s dout B (scratch); dA (r, IC) += dh^T inp; dinp (N, IC) += dh A, ADDED to the
 * base weight's input gradient that slex_linear_backward wrote (NULL: skipped). */
void slex_lora_backward(float *dinp, float *dA, float *dB, float *dh, const float *dout, int64_t ldo, const float *inp,
                        const float *h, const float *A, const float *B, float s, int64_t N, int IC, int OC, int r);

/* Exact (erf) GELU: out (N), inp (N); out may alias inp. */
void slex_gelu_forward(float *out, const float *inp, int64_t N);

/* dinp (N) = dout * gelu'(inp), gelu'(x) = Phi(x) + x phi(x); dinp may alias dout. */
void slex_gelu_backward(float *dinp, const float *dout, const float *inp, int64_t N);

/* Dropout with a given mask of multipliers (0 or 1 / (1 - p)): out (N) = inp * mask; out may
 * alias inp. */
void slex_dropout_forward(float *out, const float *inp, const float *mask, int64_t N);

/* dinp (N) = dout * mask; dinp may alias dout. */
void slex_dropout_backward(float *dinp, const float *dout, const float *mask, int64_t N);

/* out (N) = a (N) + b (N); out may alias either.  Its backward passes dout to both inputs:
 * callers add the gradients of the two paths with this same function. */
void slex_residual_forward(float *out, const float *a, const float *b, int64_t N);

#endif
