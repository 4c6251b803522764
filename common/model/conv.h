/* conv: the kernels of HuBERT's CNN feature encoder: strided 1-D convolutions over time-major
 * frames, and the GroupNorm with one group per channel that follows conv 0 in Base models
 * (Large models use model/layernorm.h after every conv).  Shapes are (B, T, C): B utterances of
 * T frames with C channels each, row t of utterance b at (b * T + t) * C. */
#ifndef SLEX_CONV_H
#define SLEX_CONV_H

#include <stdint.h>

/* Output length of a convolution without padding: floor((Ti - K) / S) + 1, 0 when Ti < K. */
int64_t slex_conv_out_len(int64_t Ti, int K, int S);

/* Floats of scratch slex_conv1d_forward needs for (Ci, K, S) (0 when it needs none). */
int64_t slex_conv1d_scratch_floats(int Ci, int K, int S);

/* out (B, To, Co) = conv1d(inp (B, Ti, Ci), w (Co, K, Ci), stride S) + bias (Co, or NULL);
 * To = slex_conv_out_len(Ti, K, S).  scratch holds slex_conv1d_scratch_floats(Ci, K, S). */
void slex_conv1d_forward(float *out, const float *inp, const float *w, const float *bias, int B, int64_t Ti, int Ci,
                         int Co, int K, int S, float *scratch);

/* Backward of slex_conv1d_forward for dout (B, To, Co): dinp (B, Ti, Ci) is written (samples
 * past the last window get 0), dw (Co, K, Ci) and dbias (Co) accumulate.  A NULL gradient is
 * not computed (NULL dw: a frozen weight; NULL dinp: nothing below needs it). */
void slex_conv1d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                          int B, int64_t Ti, int Ci, int Co, int K, int S, float *scratch);

/* GroupNorm with one group per channel: each channel of each utterance normalised over its T
 * frames.  out (B, T, C), mean (B, C), rstd (B, C), inp (B, T, C), w/b (C); out may alias inp. */
void slex_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                            int B, int64_t T, int C, float eps);

/* Backward of slex_groupnorm_forward, from its inp, w, mean and rstd: dinp (B, T, C) written
 * (may alias dout), dw/db (C) accumulate; NULL gradients are skipped. */
void slex_groupnorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                             const float *mean, const float *rstd, int B, int64_t T, int C);

#endif
