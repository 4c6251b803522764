/* posconv: HuBERT's positional convolution: a grouped "same" Conv1d over time with an even
 * kernel (the last output frame dropped) whose weight is weight-normed over dim 2,
 * w[:, :, k] = g[k] * v[:, :, k] / ||v[:, :, k]||_F.  Shapes (B, T, C), Cg = C / G. */
#ifndef SLEX_POSCONV_H
#define SLEX_POSCONV_H

#include <stdint.h>

/* w (C, K, Cg) in the im2col layout from g (K) and v (C, Cg, K) as stored in the checkpoint.
 * A tap whose v is all zeros gets a zero weight. */
void slex_weightnorm_forward(float *w, const float *g, const float *v, int C, int Cg, int K);

/* Floats of scratch slex_posconv_forward needs. */
int64_t slex_posconv_scratch_floats(int C, int K, int G);

/* out (B, T, C) = conv(inp (B, T, C), w (C, K, Cg), padding K/2 both sides, G groups) + bias
 * (C), keeping the first T outputs of each utterance. */
void slex_posconv_forward(float *out, const float *inp, const float *w, const float *bias, int B, int64_t T, int C,
                          int K, int G, float *scratch);

#endif
