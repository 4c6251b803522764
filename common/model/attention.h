/* attention: multi-head self-attention of the transformer layers, without masking (every
 * utterance of a batch has all its T frames), and the row softmax it uses. */
#ifndef SLEX_ATTENTION_H
#define SLEX_ATTENTION_H

#include <stdint.h>

/* In-place softmax of each row: att (R, T).  A row with a NaN (or +Inf) becomes all NaN, as in
 * PyTorch. */
void slex_softmax_forward(float *att, int64_t R, int64_t T);

/* out (B, T, C) = concat_h drop(softmax(q_h k_h^T / sqrt(hd))) v_h with qkv (B, T, 3C) =
 * [q | k | v] per row, hd = C / H.  att receives the probabilities before dropout (B, H, T, T)
 * when att_head_stride is T*T; with 0 every head reuses one (T, T) buffer.  dropout: NULL, or
 * the attention-dropout multipliers (B, H, T, T) (0 or 1 / (1 - p)); then scratch holds T*T
 * floats. */
void slex_attention_forward(float *out, float *att, int64_t att_head_stride, const float *qkv, const float *dropout,
                            int B, int64_t T, int C, int H, float *scratch);

/* Backward from qkv and the kept att (att_head_stride T*T) and dropout of the forward:
 * dqkv (B, T, 3C) is written from dout (B, T, C).  scratch holds 2*T*T floats. */
void slex_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, const float *dropout,
                             int B, int64_t T, int C, int H, float *scratch);

#endif
