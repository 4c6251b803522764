/* lora: PEFT LoRA adapters for the HuBERT model: read, validate against a model, merge, write.
 *
 * A PEFT adapter directory holds adapter_config.json ({"peft_type": "LORA", "r", "lora_alpha",
 * "target_modules", "lora_dropout", "bias": "none", "use_rslora", "rank_pattern",
 * "alpha_pattern", ...}) and adapter_model.safetensors with, for every adapted nn.Linear,
 *   base_model.model.<module>.lora_A.weight  (r, in)
 *   base_model.model.<module>.lora_B.weight  (out, r)
 * where <module> is a HubertModel module path, optionally with the "hubert." prefix of
 * HubertForCTC-based adapters:
 *   feature_projection.projection                         (C, Cf)  -> params.proj_w
 *   encoder.layers.<l>.attention.{q,k,v}_proj             (C, C)   -> rows of params.qkv_w[l]
 *   encoder.layers.<l>.attention.out_proj                 (C, C)   -> params.attproj_w[l]
 *   encoder.layers.<l>.feed_forward.intermediate_dense    (F, C)   -> params.fc_w[l]
 *   encoder.layers.<l>.feed_forward.output_dense          (C, F)   -> params.fcproj_w[l]
 * The adapted layer computes W x + scaling * B (A x), scaling = alpha / r (alpha / sqrt(r) with
 * use_rslora), so merging is W += scaling * B @ A (one sgemm per target).
 *
 * Per-module ranks and alphas (rank_pattern / alpha_pattern) are resolved as PEFT >= 0.15 does:
 * the first key K (in file order) for which the module path matches the regular expression
 * "(.*\.)?(K)$"; keys are matched as POSIX extended regular expressions, which agree with
 * Python's re for the usual keys (names, dots, alternations, classes; not \d).  Older PEFT
 * resolved keys otherwise (lora.c, peft_rule); an adapter without "peft_version" whose keys an
 * older PEFT resolves differently gets a warning naming the module.  slex_lora_save writes keys
 * that every PEFT version resolves to exactly the intended module (the module paths).
 * Refused with a message naming the file: another peft_type, bias other than "none",
 * use_dora, lora_bias, modules_to_save, base-weight-changing initialisations (pissa, olora,
 * corda, loftq, lora_ga), tensors other than lora_A/lora_B weights, a lora_A without its lora_B (or the
 * reverse), a rank that disagrees with r / rank_pattern, and (against a model) unknown module
 * paths, layers beyond the model, and in/out sizes other than the model's.  fan_in_fan_out is
 * ignored with a warning, as PEFT resets it for nn.Linear targets.
 *
 * The same struct serves training: slex_lora_create allocates zero-initialised targets for
 * given module paths of a model, the trainer updates A and B in place (all of them live in one
 * allocation, `params`, A of every target first in target order, then every B), and
 * slex_lora_save writes a directory PEFT's PeftModel.from_pretrained loads. */
#ifndef SLEX_LORA_H
#define SLEX_LORA_H

#include <stdint.h>

#include "core/err.h"
#include "model/hubert.h"

#define SLEX_LORA_MODULE_MAX 160

/* adapter_config.json's global fields. */
typedef struct slex_lora_config {
    int r;               /* default rank ("r"); default 8 */
    double lora_alpha;   /* default alpha ("lora_alpha"); default 8 */
    double lora_dropout; /* used by training only; default 0 */
    int use_rslora;      /* 1: scaling alpha / sqrt(r) instead of alpha / r; default 0 */
    char base_model_name_or_path[1024]; /* recorded, not checked (shapes are); default "" */
} slex_lora_config;

void slex_lora_config_default(slex_lora_config *cfg);

typedef struct slex_lora_target {
    char module[SLEX_LORA_MODULE_MAX]; /* module path without "base_model.model.", e.g.
                                          "encoder.layers.3.attention.q_proj" */
    int r, in, out;
    double alpha;  /* this module's alpha (alpha_pattern applied) */
    float scaling; /* alpha / r, or alpha / sqrt(r) with use_rslora */
    float *A;      /* (r, in)  lora_A.weight, points into slex_lora.params */
    float *B;      /* (out, r) lora_B.weight, points into slex_lora.params */
} slex_lora_target;

typedef struct slex_lora {
    slex_lora_config cfg;
    int n_targets;
    slex_lora_target *targets; /* in the order of the adapter file's lora_A tensors */
    float *params;             /* every A, then every B: one allocation */
    int64_t num_params;
    char weights_path[4096];   /* adapter_model.safetensors it was read from ("" if created):
                                  named in error messages */
} slex_lora;

/* Reads and validates dir/adapter_config.json and dir/adapter_model.safetensors (every check
 * that does not need the model). */
slex_lora *slex_lora_open(const char *dir, slex_error *err);

/* Zero-initialised adapter (A = 0, B = 0) for `n_modules` module paths of `model`, with cfg's r
 * and alpha for every target; fails on module paths the model does not have. */
slex_lora *slex_lora_create(const slex_lora_config *cfg, const char *const *modules, int n_modules,
                            const slex_hubert *model, slex_error *err);

void slex_lora_free(slex_lora *lora);

/* Checks every target against the model (known module path, layer index within the model,
 * A (r, in) and B (out, r) with the model's in/out sizes, no module adapted twice) without
 * changing anything. */
int slex_lora_check(const slex_lora *lora, const slex_hubert *model, slex_error *err);

/* slex_lora_check, then W += scaling * B @ A for every target, in place in the model's
 * parameters.  Nothing is changed when the check fails. */
int slex_lora_merge(const slex_lora *lora, slex_hubert *model, slex_error *err);

/* Binds the adapter to the model's training forward and backward (model/hubert.h,
 * slex_hubert_batch.lora): fills sites (num_hidden_layers * SLEX_HUBERT_LINEARS, indexed
 * [layer * SLEX_HUBERT_LINEARS + slex_hubert_linear]) with every target's A, B, r and scaling;
 * with grads (num_params floats, laid out like lora->params) dA and dB point into it, else
 * they are NULL.  Checks the adapter against the model first; a target on
 * feature_projection.projection is refused (training adapts the transformer layers). */
int slex_lora_sites(const slex_lora *lora, const slex_hubert *model, float *grads, slex_hubert_lora_site *sites,
                    slex_error *err);

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (creating dir).  Targets
 * whose r or alpha differ from cfg's are written as rank_pattern / alpha_pattern entries. */
int slex_lora_save(const slex_lora *lora, const char *dir, slex_error *err);

#endif
