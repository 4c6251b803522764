/* layernorm: LayerNorm over the channels of each row (the encoder's, each layer's, the
 * feature projection's, and the conv stack's of "layer" models). */
#ifndef SLEX_LAYERNORM_H
#define SLEX_LAYERNORM_H

#include <stdint.h>

/* out (N, C), mean (N), rstd (N), inp (N, C), w/b (C); N = B*T rows.  out may alias inp (each
 * row's statistics are taken before it is written).  NaN in a row gives a NaN row. */
void slex_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                            int64_t N, int C, float eps);

/* Backward from the forward's inp, w, mean and rstd: dinp (N, C) written (may alias dout),
 * dw/db (C) accumulate; NULL gradients are skipped (NULL dw and db: a frozen norm). */
void slex_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                             const float *mean, const float *rstd, int64_t N, int C);

#endif
