/* checkpoint: slex's own model checkpoints (docs/checkpoints.md): a directory holding the base
 * weights as a Hugging Face HubertModel, the masked-prediction pretraining head and an optional
 * PEFT LoRA adapter, each in its own file, with a manifest of CRC-32s.
 *
 *   DIR/config.json              HF HubertModel config
 *   DIR/preprocessor_config.json HF Wav2Vec2FeatureExtractor config (do_normalize as loaded)
 *   DIR/model.safetensors        base weights under HF HubertModel names and layouts, F32
 *   DIR/head.safetensors         pretraining head (optional)
 *   DIR/adapter/                 PEFT LoRA adapter directory (optional)
 *   DIR/slex_checkpoint.json     what the directory holds, producer, step, CRC-32 of each file
 *
 * A save writes everything into DIR.tmp-<host>-<pid>, fsyncs every file and the directory, and renames
 * it to DIR (exchanging it atomically with an older checkpoint when overwriting), so DIR is
 * either the complete old checkpoint, the complete new one, or absent.  A load checks the
 * manifest's CRCs and sizes before reading anything, then every shape against config.json.
 *
 * The pretraining head (fairseq HubertModel / torchaudio hubert_pretrain_*):
 *   masked_spec_embed  (C)     learned embedding that replaces masked frames
 *   final_proj.weight  (D, C)  Linear(hidden -> final_dim)
 *   final_proj.bias    (D)
 *   label_embeddings   (K, D)  one embedding per target class
 * The head owns the mask embedding during pretraining.  HF's HubertModel also has it (as
 * masked_spec_embed), so a checkpoint with a head writes the head's mask embedding into both
 * files, and a load refuses a directory where the two copies differ. */
#ifndef SLEX_CHECKPOINT_H
#define SLEX_CHECKPOINT_H

#include <stdint.h>

#include "core/err.h"
#include "model/lora.h"
#include "model/hubert.h"

#define SLEX_CHECKPOINT_FORMAT "slex-checkpoint"
#define SLEX_CHECKPOINT_FORMAT_VERSION 1

/* ---- pretraining head ------------------------------------------------------------------- */

#define SLEX_HEAD_LABEL_SET_CAP 96 /* up to 10 codebooks */

typedef struct slex_head_config {
    int hidden_size;   /* C, required (the model's hidden_size) */
    int final_dim;     /* D; default 256 (HuBERT Base and Large) */
    int num_classes;   /* K, required */
    double label_rate; /* target frames per second, recorded for the trainer; default 50 */
    double logit_temp; /* cosine-similarity temperature; default 0.1 */
    /* What the label embeddings number: the CRC-32s (8 hex digits, sorted, joined by '+') of the
     * codebooks whose slex-label stores the head was trained on; "" when unknown (.km labels, a
     * head of an older slex).  A trainer reuses a head only for labels of the same set. */
    char label_set[SLEX_HEAD_LABEL_SET_CAP];
} slex_head_config;

/* final_dim 256, label_rate 50, logit_temp 0.1, label_set ""; hidden_size and num_classes 0
 * (required). */
void slex_head_config_default(slex_head_config *cfg);

typedef struct slex_head {
    slex_head_config cfg;
    float *mask_emb;     /* (C) */
    float *final_proj_w; /* (D, C) */
    float *final_proj_b; /* (D) */
    float *label_emb;    /* (K, D) */
    float *params;       /* one allocation: mask_emb, final_proj_w, final_proj_b, label_emb */
    int64_t num_params;
} slex_head;

/* Zero-filled head; fails on a non-positive size or a non-finite/non-positive rate or
 * temperature. */
slex_head *slex_head_create(const slex_head_config *cfg, slex_error *err);

/* How a new head draws its label embeddings. */
typedef enum {
    SLEX_LABEL_EMB_UNIFORM = 0, /* U[0, 1) (fairseq's nn.init.uniform_) */
    SLEX_LABEL_EMB_NORMAL = 1,  /* N(0, 1): spread over the whole sphere, which small models
                                   pretrained from scratch need to learn at all (FACTS.md 10) */
} slex_label_emb_init;

/* The initialisation of fairseq / torchaudio, drawn from slex_rng seeded with `seed`, in this
 * order: mask_emb ~ U[0, 1) (nn.init.uniform_); final_proj as PyTorch's nn.Linear default
 * (weight kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(C), 1/sqrt(C)), bias U(-1/sqrt(C), 1/sqrt(C)));
 * label_emb as `emb_init`. */
void slex_head_init(slex_head *head, uint64_t seed, slex_label_emb_init emb_init);

void slex_head_free(slex_head *head);

/* Writes head.safetensors: the four tensors (F32) and __metadata__ {format: "pt",
 * num_classes, final_dim, hidden_size, label_rate, logit_temp} (decimal strings), and label_set
 * when it is known. */
int slex_head_save(const slex_head *head, const char *path, slex_error *err);

/* Reads and validates a head file: metadata present and well formed (label_set optional),
 * exactly the four tensors, shapes agreeing with the metadata. */
slex_head *slex_head_load(const char *path, slex_error *err);

/* ---- base weights ------------------------------------------------------------------------- */

/* Writes the model's parameters as a Hugging Face HubertModel model.safetensors (F32, metadata
 * format "pt"): the inverse of slex_hubert_load's re-layout (conv weights back to
 * (C_out, C_in, K), q/k/v split, positional conv as weight_g (1, 1, Kp) / weight_v).
 * masked_spec_embed is taken from mask_emb when it is not NULL, else from the model. */
int slex_checkpoint_save_weights(const slex_hubert *model, const float *mask_emb, const char *path, slex_error *err);

/* Writes config.json for the model.  With config_source (a config.json path, may be NULL) the
 * source text is copied verbatim, after checking that it describes the model's config exactly
 * (so HF keys slex does not read, dropout rates, vocab_size, ..., survive); without, a
 * HubertModel config is generated from the parsed config. */
int slex_checkpoint_save_config(const slex_hubert *model, const char *config_source, const char *path,
                                slex_error *err);

/* Writes preprocessor_config.json (HF Wav2Vec2FeatureExtractor) with do_normalize as the model
 * normalises its waveform, so that a reload (slex or HF) feeds it what it was trained on. */
int slex_checkpoint_save_preprocessor_config(const slex_hubert *model, const char *path, slex_error *err);

/* ---- whole checkpoints ---------------------------------------------------------------------- */

typedef struct slex_checkpoint_save_options {
    int64_t step;              /* training step recorded in the manifest; -1 (default): none */
    const char *config_source; /* see slex_checkpoint_save_config; default NULL */
    int overwrite;             /* 1: replace an existing slex checkpoint at DIR; default 0 */
} slex_checkpoint_save_options;

void slex_checkpoint_save_options_default(slex_checkpoint_save_options *opts);

/* Saves model (required), head and lora (each may be NULL) as the checkpoint directory `dir`,
 * atomically (see above).  Refuses an existing `dir` unless opts->overwrite, and never replaces
 * a directory that is not a slex checkpoint.  opts may be NULL for the defaults. */
int slex_checkpoint_save(const char *dir, const slex_hubert *model, const slex_head *head, const slex_lora *lora,
                         const slex_checkpoint_save_options *opts, slex_error *err);

typedef struct slex_checkpoint_load_options {
    slex_hubert_load_options model; /* passed to slex_hubert_load; its defaults */
    int num_classes;                /* expected K of the head; 0 (default): any */
    int require_head;               /* 1: a checkpoint without a head is an error; default 0 */
} slex_checkpoint_load_options;

void slex_checkpoint_load_options_default(slex_checkpoint_load_options *opts);

typedef struct slex_checkpoint {
    slex_hubert *model;
    slex_head *head;   /* NULL when the checkpoint has none */
    slex_lora *lora;   /* NULL when none; checked against the model, not merged */
    int64_t step;      /* -1 when none was recorded */
    char producer_version[64];
} slex_checkpoint;

/* Checks the manifest (format, version, every listed file present with its size and CRC-32,
 * every file the contents need listed) without reading tensors. */
int slex_checkpoint_verify(const char *dir, slex_error *err);

/* slex_checkpoint_verify, then loads the model (shapes against config.json), the head (its
 * hidden_size against the model, num_classes against the manifest and opts->num_classes, its
 * mask embedding against model.safetensors' masked_spec_embed) and the adapter (against the
 * model).  opts may be NULL for the defaults. */
slex_checkpoint *slex_checkpoint_load(const char *dir, const slex_checkpoint_load_options *opts, slex_error *err);

void slex_checkpoint_free(slex_checkpoint *ckpt);

#endif
