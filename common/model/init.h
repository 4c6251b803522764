/* init: random initial weights of a HuBERT trained from scratch, as fairseq's HubertModel draws
 * them (slex-train --arch).
 *
 *   conv stack weights        kaiming_normal_ (fan_in = C_in * K, gain sqrt 2): N(0, 2 / fan_in)
 *   feature projection        nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
 *   positional conv           N(0, 4 / (K * C)) direction, g = its norm per tap (weight_norm(dim=2)
 *                             at creation), bias 0  (fairseq's std sqrt(4 (1 - dropout) / (K C))
 *                             with dropout 0)
 *   encoder linears           init_bert_params: N(0, 0.02), bias 0
 *   every norm                weight 1, bias 0
 *   masked_spec_embed         U[0, 1)
 * The draws come from one generator seeded by `seed`, tensor by tensor in the table order of
 * model/params.h, so the weights are a function of (config, seed). */
#ifndef SLEX_MODEL_INIT_H
#define SLEX_MODEL_INIT_H

#include <stdint.h>

#include "core/err.h"
#include "model/hubert.h"

/* Draws every parameter of model (made by slex_hubert_create) as above, then refreshes what
 * is derived from them. */
int slex_hubert_init_random(slex_hubert *model, uint64_t seed, slex_error *err);

#endif
