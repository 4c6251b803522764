/* posconv: HuBERT's positional convolution: a grouped "same" Conv1d over time with an even
 * kernel (the last output frame dropped) whose weight is weight-normed over dim 2,
 * w[:, :, k] = g[k] * v[:, :, k] / ||v[:, :, k]||_F.  Shapes (B, T, C), Cg = C / G. */
#ifndef SLEX_POSCONV_H
#define SLEX_POSCONV_H

#include <stdint.h>

/* w (C, K, Cg) in the im2col layout from g (K) and v (C, Cg, K) as stored in the checkpoint.
 * A tap whose v is all zeros gets a zero weight. */
void slex_weightnorm_forward(float *w, const float *g, const float *v, int C, int Cg, int K);

/* Backward from dw (C, K, Cg): with n = ||v[:, :, k]||, dg[k] += (dw . v) / n and
 * dv += (g / n) dw - (g (dw . v) / n^3) v per tap (dg (K), dv (C, Cg, K) accumulate; NULL is
 * skipped; a zero tap gets no gradient). */
void slex_weightnorm_backward(float *dg, float *dv, const float *dw, const float *g, const float *v, int C, int Cg,
                              int K);

/* Floats of scratch slex_posconv_forward needs. */
int64_t slex_posconv_scratch_floats(int C, int K, int G);

/* out (B, T, C) = conv(inp (B, T, C), w (C, K, Cg), padding K/2 both sides, G groups) + bias
 * (C), keeping the first T outputs of each utterance. */
void slex_posconv_forward(float *out, const float *inp, const float *w, const float *bias, int B, int64_t T, int C,
                          int K, int G, float *scratch);

/* Backward for dout (B, T, C): dinp (B, T, C) written, dw (C, K, Cg) (the effective weight:
 * slex_weightnorm_backward takes it to g and v) and dbias (C) accumulate; NULL is skipped.
 * scratch as for the forward. */
void slex_posconv_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                           int B, int64_t T, int C, int K, int G, float *scratch);

#endif
