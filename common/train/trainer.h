/* trainer: HuBERT masked-prediction training over MPI ranks, restartable and rank-count independent.
 *
 * One update (fairseq's train_step with update_freq sub-batches):
 *   for k in 0..update_freq-1: the global batch k of the step (train/batch.h), cut into fixed
 *   micro-batches; micro-batch j of the update (counted over all k) is computed whole by rank
 *   j mod ranks: mask (train/mask.h, its own generator seeded by (seed, step, j)), layerdrop,
 *   model forward with LoRA branches (model/hubert.h), head and criterion (train/head.h), feature
 *   penalty, backward; its gradient of the summed loss is one row.
 *   The rows of all ranks are summed exactly (core/exactsum.h), so the sum does not depend on
 *   which rank computed which row; so are the loss terms, sample sizes and accuracy counts.
 *   Adam (train/optim.h) then takes the sum scaled by 1 / (summed sample_size), clipped by norm.
 * Because batches, masks and layerdrop are functions of (seed, step, micro-batch), and every
 * reduction is exact, the weights after N updates are the same bits for 1, 2, 3 or 4 ranks, and a
 * resumed run continues with the same bits as an uninterrupted one.
 *
 * The run directory OUT:
 *   run.json                 the run's parameters (options, inputs and their content); another
 *                            command on an existing OUT is an error unless force
 *   checkpoint-<step>/       slex checkpoint (model/checkpoint.h) + optimizer.safetensors (Adam's
 *                            moments) + trainer.json (step); written atomically; the last two are kept
 *   train_log.jsonl          one JSON object per update (rank 0); on resume cut back to the step
 *                            of the checkpoint resumed from
 *   adapter/ (LoRA) or model/ (full)   the final result: a PEFT adapter directory or a Hugging
 *                            Face HubertModel directory; merged/ with merge (LoRA merged in)
 *   done.json                written last: the run is finished and is not redone
 * Memory per rank: the model with the activations of one micro-batch, the gradient rows of the
 * micro-batches this rank computes in one update (trainable parameters x 4 bytes each), Adam's
 * two moments. */
#ifndef SLEX_TRAIN_TRAINER_H
#define SLEX_TRAIN_TRAINER_H

#include <stdint.h>

#include "core/err.h"
#include "core/options.h"
#include "core/exactsum.h"
#include "train/batch.h"
#include "train/head.h"
#include "train/mask.h"
#include "train/optim.h"

typedef struct slex_train_options {
    const char *init;         /* Hugging Face HubertModel directory or slex checkpoint (or NULL with arch) */
    const char *arch;         /* config.json of a model to start from random weights (full mode) */
    const char *out;          /* run directory (required) */
    int full;                 /* 0: LoRA (base frozen), 1: every parameter */
    int force;                /* replace an existing run of other parameters */
    /* LoRA */
    int lora_rank;            /* 24 */
    double lora_alpha;        /* 48 */
    const char *lora_targets; /* "q,k,v,out" (any of q,k,v,out,fc1,fc2) */
    const char *lora_layers;  /* NULL = every layer; else comma-separated 1-based layers, ranges a-b */
    int rslora;               /* 0 */
    int merge;                /* 0; 1: also write merged/ (the adapter merged into the base) */
    /* updates */
    int64_t steps;            /* updates (required) */
    int update_freq;          /* 1 */
    slex_lr_schedule lr;      /* peak 5e-4, linear decay, warm-up --warmup-steps */
    slex_adam_options adam;   /* (0.9, 0.98), 1e-6, weight decay 0.01 */
    double clip_norm;         /* 10 (0 = off) */
    /* data, masking, criterion, regularisation */
    slex_batch_options batch;
    slex_mask_options mask;
    slex_criterion crit;
    double feature_grad_mult; /* 0.1; 0 = the CNN gets no gradient (frozen) */
    double layerdrop;         /* 0.05 */
    double dropout;           /* 0.1: hidden dropout (HF HubertModel's sites) */
    double attention_dropout; /* 0.1 */
    double activation_dropout; /* 0.0 */
    int final_dim;            /* 256: head of a new run */
    int label_emb_normal;     /* 0: a new head's label embeddings U[0, 1) (fairseq); 1: N(0, 1) */
    int64_t checkpoint_every; /* 1000 updates */
    int64_t keep_interval_updates; /* checkpoints kept, the newest (fairseq's name); -1 all; default 2 */
    uint64_t seed;            /* 1 */
} slex_train_options;

void slex_train_options_default(slex_train_options *o);

/* The options registered once, by the part of slex_train_options they fill: the trainer's own
 * (slex_train_option_table) and its components' (batch, mask, lr, adam, criterion).  Their
 * defaults are slex_train_options_default's; every row with a parameter key is in run.json, so a
 * run of other values of any of them is another run.  Not options: lr.total_updates (= steps),
 * batch.seed (= seed), the Adam betas (parameters only: slex-train reads them as --adam-betas). */
extern const slex_option_table slex_train_option_table;
enum { SLEX_TRAIN_OPTION_GROUPS = 6 };
/* The tables bound to the parts of o, trainer's first (for slex_cli and for run.json). */
void slex_train_option_groups(slex_train_options *o, slex_option_group groups[SLEX_TRAIN_OPTION_GROUPS]);
int slex_train_options_validate(const slex_train_options *o, slex_error *err);

/* Result of slex_train_run. */
typedef enum {
    SLEX_TRAIN_FINISHED = 0,     /* trained (or resumed and finished) now */
    SLEX_TRAIN_ALREADY_DONE = 1, /* done.json of the same parameters: nothing to do */
} slex_train_outcome;

/* Trains as described above; collective over comm (NULL: one process).  Rank 0 writes the run
 * directory and the log; errors of any rank fail every rank (the failing one fills err). */
int slex_train_run(const slex_train_options *o, const slex_data_spec *specs, int n_specs, const slex_exact_comm *comm,
                   slex_train_outcome *outcome, slex_error *err);

#endif
