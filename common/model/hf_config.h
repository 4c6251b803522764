/* hf_config: the Hugging Face HubertModel config.json, parsed and validated.
 *
 * The keys that fix the tensor shapes (conv_dim, conv_kernel, conv_stride, hidden_size,
 * num_hidden_layers, num_attention_heads, intermediate_size) are required; the others take
 * transformers' HubertConfig defaults when absent (conv_bias false, feat_extract_norm "group",
 * do_stable_layer_norm false, hidden_act "gelu", feat_extract_activation "gelu",
 * layer_norm_eps 1e-5, num_conv_pos_embeddings 128, num_conv_pos_embedding_groups 16,
 * feat_proj_layer_norm true).  Values slex cannot run (another activation, batch-norm
 * positional convs, inconsistent lengths) are errors naming the file and the key. */
#ifndef SLEX_HF_CONFIG_H
#define SLEX_HF_CONFIG_H

#include "core/err.h"

#define SLEX_HUBERT_MAX_CONV 16

typedef enum { SLEX_FEAT_NORM_GROUP = 0, SLEX_FEAT_NORM_LAYER = 1 } slex_feat_extract_norm;

typedef struct slex_hubert_config {
    int num_conv;                        /* length of conv_dim / conv_kernel / conv_stride */
    int conv_dim[SLEX_HUBERT_MAX_CONV];  /* output channels of each conv */
    int conv_kernel[SLEX_HUBERT_MAX_CONV];
    int conv_stride[SLEX_HUBERT_MAX_CONV];
    int conv_bias;                       /* convs have a bias */
    slex_feat_extract_norm feat_extract_norm; /* group: GroupNorm after conv 0; layer: LN after each */
    int do_stable_layer_norm;            /* 1 = pre-LN encoder layers + final LN (Large) */
    int feat_proj_layer_norm;            /* LayerNorm before the feature projection */
    int hidden_size;                     /* C */
    int num_hidden_layers;               /* L */
    int num_attention_heads;             /* H; C % H == 0 */
    int intermediate_size;               /* FFN width */
    float layer_norm_eps;                /* encoder and projection LNs (conv norms use 1e-5) */
    int num_conv_pos_embeddings;         /* positional conv kernel */
    int num_conv_pos_embedding_groups;   /* positional conv groups; C % groups == 0 */
} slex_hubert_config;

/* Sets the HubertConfig defaults for the optional keys; required ones are zeroed. */
void slex_hubert_config_default(slex_hubert_config *cfg);

/* Checks the consistency rules on a filled struct; `source` names it in messages. */
int slex_hubert_config_validate(const slex_hubert_config *cfg, const char *source, slex_error *err);

/* Parses a config.json file. */
int slex_hubert_config_load(const char *path, slex_hubert_config *cfg, slex_error *err);

/* Same from a JSON text already in memory; `source` names it in messages. */
int slex_hubert_config_parse(const char *json, const char *source, slex_hubert_config *cfg, slex_error *err);

/* Reads "do_normalize" from a preprocessor_config.json: *do_normalize = 0/1.  Returns 1 when
 * the file or the key does not exist (caller decides the default), 0 on success, -1 on a
 * bad file. */
int slex_hf_preprocessor_do_normalize(const char *path, int *do_normalize, slex_error *err);

#endif
