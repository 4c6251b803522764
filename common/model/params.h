/* params: the parameters of HuBERT, as one table of tensors.
 *
 * The table (params.c) lists every tensor of a Hugging Face HubertModel once: its HF name, its
 * HF shape in terms of the config, where it lives in slex_hubert_params, and whether its memory
 * layout differs from the file's.  Everything that maps between slex's parameters and HF names
 * uses it: the layout of the one parameter allocation, the loader (model/weights.h), the
 * checkpoint writer (model/checkpoint.h) and LoRA's module paths (model/lora.h).
 *
 * Shapes below use C = hidden_size, Cf = conv_dim[last], F = intermediate_size, L = layers,
 * K_i = conv kernel i, Kp = pos conv kernel, G = pos conv groups, Cg = C / G. */
#ifndef SLEX_PARAMS_H
#define SLEX_PARAMS_H

#include <stdint.h>

#include "model/hf_config.h"

/* Pointers into one allocation.  Layouts differ from the checkpoint only where noted. */
typedef struct slex_hubert_params {
    float *conv_w[SLEX_HUBERT_MAX_CONV];      /* (C_i, K_i, C_{i-1}): taps before input channels,
                                                 so a window of time-major input is one row */
    float *conv_b[SLEX_HUBERT_MAX_CONV];      /* (C_i) or NULL without conv_bias */
    float *conv_norm_w[SLEX_HUBERT_MAX_CONV]; /* (C_i) GroupNorm/LayerNorm scale, NULL if none */
    float *conv_norm_b[SLEX_HUBERT_MAX_CONV]; /* (C_i) */
    float *proj_ln_w, *proj_ln_b;             /* (Cf), NULL without feat_proj_layer_norm */
    float *proj_w, *proj_b;                   /* (C, Cf), (C) */
    float *pos_conv_g;                        /* (Kp) weight-norm magnitude (checkpoint (1,1,Kp)) */
    float *pos_conv_v;                        /* (C, Cg, Kp) weight-norm direction, as stored */
    float *pos_conv_b;                        /* (C) */
    float *enc_ln_w, *enc_ln_b;               /* (C) encoder LN (post-LN: first; pre-LN: final) */
    float *ln1_w, *ln1_b;                     /* (L, C) attention LN ("layer_norm") */
    float *qkv_w, *qkv_b;                     /* (L, 3C, C), (L, 3C): q, k, v projections stacked */
    float *attproj_w, *attproj_b;             /* (L, C, C), (L, C) out_proj */
    float *ln2_w, *ln2_b;                     /* (L, C) FFN LN ("final_layer_norm") */
    float *fc_w, *fc_b;                       /* (L, F, C), (L, F) intermediate_dense */
    float *fcproj_w, *fcproj_b;               /* (L, C, F), (L, C) output_dense */
    float *mask_emb;                          /* (C) masked_spec_embed (zeros when absent) */
} slex_hubert_params;

/* The nn.Linear modules of a transformer layer (the ones LoRA adapts). */
typedef enum {
    SLEX_HUBERT_Q, SLEX_HUBERT_K, SLEX_HUBERT_V, SLEX_HUBERT_OUT, SLEX_HUBERT_FC1, SLEX_HUBERT_FC2,
    SLEX_HUBERT_LINEARS
} slex_hubert_linear;

#define SLEX_HUBERT_TENSOR_NAME_MAX 96

/* One tensor of the HF checkpoint, resolved for a config and a parameter block. */
typedef struct slex_hubert_tensor {
    char name[SLEX_HUBERT_TENSOR_NAME_MAX]; /* HF HubertModel name, without "hubert." */
    int ndim;
    int64_t shape[3];  /* the HF shape */
    int64_t numel;
    float *data;       /* numel floats inside the parameter block (NULL where the block has
                          NULL, e.g. the gradient of a frozen tensor) */
    int conv_taps;     /* 1: stored (C_out, K, C_in) in memory, (C_out, C_in, K) in HF files */
    int optional;      /* 1: a checkpoint may lack it (masked_spec_embed; the block keeps zeros) */
    int linear;        /* 1: the weight of an nn.Linear (a LoRA target); its module path is the
                          name without ".weight", out = shape[0], in = shape[1] */
    int layer;         /* transformer layer of the tensor, -1 outside the layers */
    int site;          /* the weight of linear slex_hubert_linear `site` of layer `layer`; -1 for
                          every other tensor (the feature projection's included) */
} slex_hubert_tensor;

/* Lays the parameters of `cfg` out over `block` (which holds the returned number of floats)
 * and points *params into it; tensors absent from the config get NULL.  block == NULL only
 * counts (params may then be NULL).  The same layout serves gradients and optimiser moments. */
int64_t slex_hubert_params_layout(const slex_hubert_config *cfg, float *block, slex_hubert_params *params);

/* The tensors of `cfg`, in Hugging Face's state_dict order, resolved against `params`
 * (laid out by slex_hubert_params_layout).  out == NULL only counts.  Returns the count. */
int slex_hubert_tensors(const slex_hubert_config *cfg, const slex_hubert_params *params, slex_hubert_tensor *out);

#endif
