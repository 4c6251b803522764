/* weights: a Hugging Face HubertModel model.safetensors <-> slex's parameter block, through the
 * one tensor table of model/params.h.
 *
 * Reading accepts the names with or without the "hubert." prefix (HubertForCTC and friends),
 * the positional conv's weight norm as weight_g/weight_v, as
 * parametrizations.weight.original0/original1 (newer torch), or as a plain weight (norm removed
 * before saving: v = w, g = ||w[:, :, k]||), any float dtype, and checks every shape against
 * the config and every value for NaN/Inf.  Writing produces F32 tensors under HF names and
 * layouts, in HF's state_dict order, with metadata format "pt". */
#ifndef SLEX_WEIGHTS_H
#define SLEX_WEIGHTS_H

#include "core/err.h"
#include "model/hf_config.h"
#include "model/params.h"

/* Reads `path` into params (laid out for cfg).  A tensor the config does not use is an error
 * unless ignore_unexpected; a missing one (other than masked_spec_embed), a wrong shape, or a
 * non-finite value is an error naming the file and the tensor. */
int slex_hubert_read_weights(const char *path, const slex_hubert_config *cfg, slex_hubert_params *params,
                             int ignore_unexpected, slex_error *err);

/* Writes params as an HF model.safetensors at path; masked_spec_embed is taken from mask_emb
 * when it is not NULL, else from params. */
int slex_hubert_write_weights(const char *path, const slex_hubert_config *cfg, const slex_hubert_params *params,
                              const float *mask_emb, slex_error *err);

#endif
