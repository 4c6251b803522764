/* hubert: HuBERT (Hugging Face HubertModel / fairseq HubertModel / torchaudio Wav2Vec2Model),
 * loaded from a Hugging Face checkpoint directory, forward pass in the style of llm.c.
 *
 *   wave (N) -> [whole-utterance normalisation] -> chunks of <= max_chunk_samples, each:
 *   conv stack (conv -> GroupNorm(conv 0, "group") | channel LayerNorm (each, "layer") -> GELU)
 *   -> feature projection (LayerNorm -> Linear) -> x + GELU(weight-normed grouped pos conv)
 *   -> [post-LN: encoder LayerNorm] -> transformer layers -> [pre-LN: final LayerNorm]
 *
 * All parameters live in one float allocation (slex_hubert_params points into it, laid out
 * by the tensor table of model/params.h and read by model/weights.h) and all activations in
 * another, sized at load for max_chunk_samples.  With keep_activations every
 * intermediate the backward pass needs is kept per layer; without it the layers share one set
 * of buffers.  The kernels are modules of their own, each x_forward beside its x_backward
 * (model/conv.h, layernorm.h, linear.h, attention.h, posconv.h); this module sequences them,
 * for inference (slex_hubert_forward) and for training (slex_hubert_forward_train on a batch,
 * then slex_hubert_backward).  Every matrix product is a cblas_sgemm.
 *
 * Layers are numbered like fairseq's output_layer: layer L (1..num_layers) is the output of
 * transformer layer L = torchaudio extract_features(x)[0][L-1] = HF hidden_states[L], except
 * that for pre-LN models HF applies the final LayerNorm to hidden_states[num_layers]; ask for
 * SLEX_HUBERT_LAST_HIDDEN_STATE to get that (HF last_hidden_state, torchaudio model(x)).
 * Layer 0 is the transformer input (HF hidden_states[0]). */
#ifndef SLEX_HUBERT_H
#define SLEX_HUBERT_H

#include <stdint.h>

#include "core/err.h"
#include "core/options.h"
#include "model/hf_config.h"
#include "model/params.h"

#define SLEX_HUBERT_LAST_HIDDEN_STATE (-1)
#define SLEX_HUBERT_NORMALIZE_AUTO (-1)
#define SLEX_HUBERT_DEFAULT_MAX_CHUNK 1600000

typedef struct slex_hubert_load_options {
    /* 0 (default): a checkpoint tensor that the model does not use is an error (it usually
     * means the wrong model class); 1: such tensors are skipped (e.g. HubertForCTC's lm_head). */
    int ignore_unexpected;
    /* Whole-utterance zero-mean unit-variance normalisation of the waveform, as fairseq's
     * F.layer_norm(x, x.shape) (eps 1e-5) before chunking.  SLEX_HUBERT_NORMALIZE_AUTO
     * (default): preprocessor_config.json's do_normalize when the directory has one, else on
     * exactly for feat_extract_norm == "layer" models (fairseq's normalize=True recipes);
     * 0: off; 1: on. */
    int normalize_waveform;
    /* Samples per forward chunk (fairseq dump_hubert_feature.py max_chunk); default
     * 1,600,000.  Activations are allocated for this many samples. */
    int64_t max_chunk_samples;
    /* 1: keep every intermediate of the feature projection and the encoder that a backward
     * pass needs, for max_batch utterances of max_chunk_samples (slex_hubert_forward_train);
     * default 0. */
    int keep_activations;
    /* 1 (with keep_activations): keep the conv stack's intermediates too, needed to train the
     * CNN (feature_grad_mult > 0); default 0, which keeps only its output. */
    int keep_cnn_activations;
    /* Utterances of one training batch (with keep_activations); default 1. */
    int max_batch;
    /* With keep_activations: the lowest transformer layer whose activations are kept (LoRA
     * training with nothing trainable below it: the layers underneath share one set of
     * buffers, and a backward that needs them is an error); default 0 (all). */
    int first_trained_layer;
    /* 1 (with keep_activations): no gradient of the FFN weights (fc1, fc2 and adapters on them)
     * will be asked for, so their inputs (the FFN input LayerNorm's output, the GELU output) are
     * not kept per layer; a backward that needs them is an error.  Default 0. */
    int frozen_ffn;
} slex_hubert_load_options;

void slex_hubert_load_options_default(slex_hubert_load_options *opts);

/* The load options registered once (defaults, ranges, --help, and the dump parameters
 * normalize_waveform_option, max_chunk_samples, ignore_unexpected in that order);
 * keep_activations, keep_cnn_activations, max_batch, first_trained_layer and frozen_ffn are
 * internal. */
extern const slex_option_table slex_hubert_load_option_table;

/* Activations of one forward: B utterances (1 outside training) of N samples each -> T_i frames
 * after conv i, T frames in the transformer.  With keep_activations the per-layer buffers have
 * one slice per layer (layer stride B*T*C etc.); without, all layers share slice 0.  Without
 * keep_cnn_activations the conv stack alternates between two buffers in place
 * (conv_norm == conv_gelu == conv_out; the last holds the features). */
typedef struct slex_hubert_acts {
    float *wave;                                 /* (B, N) */
    float *conv_out[SLEX_HUBERT_MAX_CONV];       /* (B, T_i, C_i) conv output */
    float *conv_norm[SLEX_HUBERT_MAX_CONV];      /* (B, T_i, C_i) normalised (== conv_out if no norm) */
    float *conv_norm_mean[SLEX_HUBERT_MAX_CONV]; /* group: (B, C_i); layer: (B, T_i); NULL if no norm */
    float *conv_norm_rstd[SLEX_HUBERT_MAX_CONV];
    float *conv_gelu[SLEX_HUBERT_MAX_CONV];      /* (B, T_i, C_i) GELU output; last = features */
    float *proj_ln, *proj_ln_mean, *proj_ln_rstd; /* (B, T, Cf), (B, T), (B, T) */
    float *proj;                                 /* (B, T, C) feature projection output (masked
                                                    frames replaced by mask_emb in training) */
    float *pos_conv;                             /* (B, T, C) positional conv output before GELU */
    float *enc_in;                               /* (B, T, C) proj + GELU(pos_conv) */
    float *enc_ln, *enc_ln_mean, *enc_ln_rstd;   /* (B, T, C), (B, T), (B, T) encoder LN (post-LN
                                                    input LN, pre-LN final LN) */
    float *ln1, *ln1_mean, *ln1_rstd;            /* (L, B, T, C), (L, B, T), (L, B, T) */
    float *qkv;                                  /* (L, B, T, 3C) */
    float *att;                                  /* (L, B, H, T, T) softmax probabilities */
    float *atty;                                 /* (L, B, T, C) attention output before out_proj */
    float *attproj;                              /* (B, T, C) (no backward reads it: one slice) */
    float *res1;                                 /* (L, B, T, C) input + attention */
    float *ln2, *ln2_mean, *ln2_rstd;            /* (L, B, T, C), (L, B, T), (L, B, T) */
    float *fch;                                  /* (L, B, T, F) fc1 output before GELU */
    float *fch_gelu;                             /* (L, B, T, F) (== fch without keep_activations;
                                                    one slice with frozen_ffn, as the FFN's input
                                                    LayerNorm output: post-LN ln1, pre-LN ln2) */
    float *fcproj;                               /* (B, T, C) (one slice, as attproj) */
    float *res2;                                 /* (L, B, T, C) */
    float *scratch;                              /* im2col blocks, attention dropout */
} slex_hubert_acts;

typedef struct slex_hubert slex_hubert;

/* Loads dir/config.json and dir/model.safetensors (HubertModel tensor names, with or without
 * the "hubert." prefix; weight norm as weight_g/weight_v or
 * parametrizations.weight.original0/original1).  opts may be NULL for the defaults. */
slex_hubert *slex_hubert_load(const char *dir, const slex_hubert_load_options *opts, slex_error *err);

/* A model of config_path's shape (a HF config.json) with every parameter zero, for training
 * from scratch (model/init.h draws them); the waveform is normalised (AUTO) exactly for a
 * layer-norm CNN. */
slex_hubert *slex_hubert_create(const char *config_path, const slex_hubert_load_options *opts, slex_error *err);

void slex_hubert_free(slex_hubert *model);

const slex_hubert_config *slex_hubert_get_config(const slex_hubert *model);
const slex_hubert_load_options *slex_hubert_get_options(const slex_hubert *model);
/* The parameter block (for training code) and its size in floats. */
slex_hubert_params *slex_hubert_get_params(slex_hubert *model);
/* After the parameters were changed in place: recomputes what is derived from them (the
 * positional conv's effective weight from g and v) for slex_hubert_forward.
 * slex_hubert_forward_train does this itself. */
void slex_hubert_params_changed(slex_hubert *model);
/* The same, for code that only reads the parameters. */
const slex_hubert_params *slex_hubert_get_params_const(const slex_hubert *model);
int64_t slex_hubert_num_parameters(const slex_hubert *model);
/* The one allocation the parameters live in (slex_hubert_num_parameters floats, laid out by
 * slex_hubert_params_layout): what an optimizer over every parameter updates. */
float *slex_hubert_params_block(slex_hubert *model);
/* Activations of the last chunk forwarded (for training code). */
const slex_hubert_acts *slex_hubert_get_acts(const slex_hubert *model);

/* 1 when the waveform is normalised before the forward (after resolving AUTO at load). */
int slex_hubert_normalizes_waveform(const slex_hubert *model);

/* Samples that give the first frame (400 for the Base conv stack) and samples per frame (320). */
int64_t slex_hubert_receptive_field(const slex_hubert *model);
int64_t slex_hubert_total_stride(const slex_hubert *model);

/* Frames of one conv-stack pass over n samples: 0 if n is shorter than the receptive field. */
int64_t slex_hubert_chunk_frames(const slex_hubert *model, int64_t n_samples);

/* Frames slex_hubert_forward returns for n samples: the sum over the fairseq chunks
 * [0, c), [c, 2c), ... (c = max_chunk_samples) of slex_hubert_chunk_frames.  A trailing chunk
 * shorter than the receptive field contributes no frames (fairseq's reader fails there, as
 * torch's conv rejects an input shorter than its kernel). */
int64_t slex_hubert_num_frames(const slex_hubert *model, int64_t n_samples);

/* Features of `layer` (0..num_layers or SLEX_HUBERT_LAST_HIDDEN_STATE) for a whole utterance:
 * out receives (T, hidden_size) floats, T = slex_hubert_num_frames(n), stored in *T.
 * Fails when n is shorter than the receptive field or layer is out of range. */
int slex_hubert_forward(slex_hubert *model, const float *wave, int64_t n, int layer, float *out, int64_t *T,
                        slex_error *err);

/* ---- training ------------------------------------------------------------------------------ */

/* A LoRA branch on one linear (model/linear.h slex_lora_forward): y += scale * B (A x).
 * Sites are indexed [layer * SLEX_HUBERT_LINEARS + slex_hubert_linear] (model/params.h). */
typedef struct slex_hubert_lora_site {
    const float *A; /* (r, in); NULL: no adapter on this linear */
    const float *B; /* (out, r) */
    float *dA, *dB; /* gradients (accumulate); NULL: not computed */
    float scale;    /* alpha / r, or alpha / sqrt(r) (rsLoRA) */
    int r;
} slex_hubert_lora_site;

/* One training batch: B utterances of N samples each (fairseq crops a batch to its shortest
 * utterance), wave (B, N), already normalised when the model wants it. */
typedef struct slex_hubert_batch {
    int B;
    int64_t N;
    const uint8_t *mask;       /* (B, T): 1 = frame replaced by mask_emb after the feature
                                  projection (masked prediction); NULL: none */
    const uint8_t *skip_layer; /* (L): 1 = layer left out of this step (layerdrop); NULL: none */
    const slex_hubert_lora_site *lora; /* (L, SLEX_HUBERT_LINEARS) adapters; NULL: none */
    /* Dropout as HF's HubertModel applies it in training (0: off): `dropout` after the feature
     * projection, on the encoder input, after each attention out_proj and FFN output_dense;
     * `attention_dropout` on the attention probabilities; `activation_dropout` after the FFN's
     * GELU.  Masks come from a counter-based generator keyed by dropout_seed, the site and the
     * element, so the backward regenerates them instead of storing them. */
    float dropout, attention_dropout, activation_dropout;
    uint64_t dropout_seed;
} slex_hubert_batch;

/* Forward of a training batch with every activation the backward needs kept (the model was
 * loaded with keep_activations, max_batch >= B, max_chunk_samples >= N).  out (B, T, C) is the
 * encoder output: the last layer's output (post-LN), after the final LayerNorm (pre-LN).  The
 * positional conv weight is recomputed from g and v first, so parameters may change between
 * steps.  The CNN features (B, T, Cf) stay in acts->conv_gelu[num_conv - 1]. */
int slex_hubert_forward_train(slex_hubert *model, const float *wave, const slex_hubert_batch *batch, float *out,
                              slex_error *err);

/* Backward of the last slex_hubert_forward_train, for dout (B, T, C).  Parameter gradients
 * accumulate into grads (laid out like the parameters, slex_hubert_params_layout); a NULL
 * field is a frozen tensor and is skipped, and the pass stops below the lowest tensor that
 * needs a gradient.  dfeatures (B, T, Cf) or NULL: a gradient at the CNN features from other
 * terms of the loss (fairseq's feature penalty), added before feature_grad_mult scales the
 * gradient that enters the CNN (0: the CNN gets none).  LoRA gradients go to the batch's
 * sites.  CNN gradients need keep_cnn_activations. */
int slex_hubert_backward(slex_hubert *model, const float *dout, const float *dfeatures, float feature_grad_mult,
                         slex_hubert_params *grads, slex_error *err);

#endif
