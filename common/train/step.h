/* step: one update of HuBERT masked-prediction training, assembled from the model's training
 * forward/backward (model/hubert.h), the head and criterion (train/head.h) and fairseq's
 * optimiser step (train/optim.h):
 *
 *   for every micro-batch of the update (slex_trainer_accumulate):
 *     x = encoder(wave, mask)            masked frames take the mask embedding
 *     loss_mb = head(x) + w_pen * mean(features^2) * sample_size_mb
 *     backward of loss_mb (unnormalised, as fairseq's criterion returns it); the CNN's
 *     gradient is scaled by feature_grad_mult (full mode)
 *   slex_trainer_update: gradients / (summed sample_size), clip, Adam with lr.
 *
 * Trainable: full mode, every model parameter (the CNN through feature_grad_mult; 0 freezes
 * it) and the head; LoRA mode, the adapter's A and B and the head's projection and label
 * embeddings, the base frozen with its mask embedding.  The mask embedding trained in full mode
 * is the model's masked_spec_embed; the head's copy is set from it after every update (slex
 * checkpoints keep the two equal).  Gradients and the Adam moments are the optimiser's three
 * allocations over exactly these tensors.
 *
 * Why LoRA mode freezes the mask embedding: it is a parameter of the pretrained base (HF
 * HubertModel's masked_spec_embed), which the paper leaves frozen, training only the adapters
 * and the head (as PEFT does: masked_spec_embed is not an adapted module).  The base model was
 * pretrained with it, so its layers already read it as "masked"; the adapters learn the new
 * language's targets on top.  Its gradient would also be the one thing that needs the backward
 * through every layer and the positional convolution, since fairseq's mask embedding replaces
 * the masked frames below the first layer: frozen, the backward stops at the lowest adapted
 * layer, and the model keeps no activations below it (model/hubert.h, first_trained_layer). 
 *
 * Every row of a micro-batch has the frames of the model's conv stack on its N samples; a
 * batch whose labels cover fewer frames (train/batch's T below that) is refused, since
 * fairseq then trims the features before the encoder, which the model's forward does not do. */
#ifndef SLEX_TRAIN_STEP_H
#define SLEX_TRAIN_STEP_H

#include <stdint.h>

#include "core/err.h"
#include "model/checkpoint.h"
#include "model/hubert.h"
#include "model/lora.h"
#include "train/head.h"
#include "train/optim.h"

typedef struct slex_step_options {
    int lora;                /* 1: LoRA mode (lora given, base frozen); 0: full mode; default 0 */
    float feature_grad_mult; /* full mode: CNN gradient scale (fairseq Base 0.1; 0 = frozen); default 0.1 */
    slex_criterion crit;     /* its defaults */
    slex_adam_options adam;  /* its defaults */
    double clip_norm;        /* fairseq clip_norm; 0 = none; default 10 (Base recipe) */
    float dropout;           /* HF HubertModel's hidden dropout in training; default 0 */
    float attention_dropout; /* on the attention probabilities; default 0 */
    float activation_dropout; /* after the FFN's GELU; default 0 */
} slex_step_options;

void slex_step_options_default(slex_step_options *o);

typedef struct slex_trainer slex_trainer;

/* model: loaded with keep_activations (and keep_cnn_activations when the CNN trains), max_batch
 * and max_chunk_samples at least the micro-batches'; head: its hidden size the model's; lora:
 * checked against the model (LoRA mode) or NULL (full mode).  None is copied: the trainer
 * updates them in place and they must outlive it. */
slex_trainer *slex_trainer_create(slex_hubert *model, slex_head *head, slex_lora *lora, const slex_step_options *o,
                                  slex_error *err);
void slex_trainer_free(slex_trainer *t);

/* Forward and backward of one micro-batch: wave (B, N) (already normalised if the model wants
 * it), mask and labels (B, T) with T = the model's frames for N samples.  Gradients accumulate;
 * *stats and *features_pen (may be NULL) receive this micro-batch's head statistics and
 * mean(features^2); the update's sample size accumulates. */
int slex_trainer_accumulate(slex_trainer *t, const float *wave, int B, int64_t N, const uint8_t *mask,
                            const int32_t *labels, int64_t T, slex_head_stats *stats, double *features_pen,
                            slex_error *err);

/* The draws of the next micro-batch: the layers it leaves out (layerdrop; (L) or NULL for none,
 * kept by the caller) and the seed of its dropout masks. */
void slex_trainer_set_draws(slex_trainer *t, const uint8_t *skip_layer, uint64_t dropout_seed);

/* The update from the accumulated gradients (see train/optim.h).  The gradient buffer then
 * holds the scaled, clipped gradient until the next accumulate, which starts the next update
 * from zero.  *grad_norm (may be NULL): the norm before clipping.  Fails without changing
 * anything on a non-finite norm or an update without any frame that carried a loss. */
int slex_trainer_update(slex_trainer *t, double lr, double *grad_norm, slex_error *err);
/* The same from whatever the gradient buffer holds, divided by sample_size: for a data-parallel
 * caller that summed the micro-batches of every rank into it (and the sample sizes with them). */
int slex_trainer_update_total(slex_trainer *t, double lr, int64_t sample_size, double *grad_norm, slex_error *err);

/* The optimiser (its gradients, moments and update count, for checkpoints and tests), and the
 * gradient blocks of the model (laid out like its parameters; NULL fields are frozen) and of
 * the head (final_proj, label embeddings; mask_emb NULL: the model's is trained in full mode,
 * frozen in LoRA mode). */
slex_optim *slex_trainer_optim(slex_trainer *t);
const slex_hubert_params *slex_trainer_model_grads(const slex_trainer *t);
const slex_head_grads *slex_trainer_head_grads(const slex_trainer *t);
/* Trainable floats and the model's parameter count (for "x% of the parameters trainable"). */
int64_t slex_trainer_num_trainable(const slex_trainer *t);

#endif
