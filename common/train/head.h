/* head: HuBERT's pretraining head and criterion (fairseq HubertModel.forward after the encoder,
 * HubertCriterion), the learned mask embedding, and the feature penalty, each as a
 * forward/backward pair over flat float buffers.  The parameters are model/checkpoint.h's
 * slex_head (one allocation: mask_emb, final_proj, label_emb); their gradients have the same
 * layout (slex_head_grads_point).
 *
 *   x (N, D) encoder output of N = B*T frames, mask (N) from train/mask, labels (N) in [0, K)
 *   proj   = x W^T + b                                 final_proj, W (F, D), b (F)
 *   logit  = cos(proj_n, emb_k) / logit_temp           every class k of emb (K, F)
 *   ce_n   = logsumexp_k logit_nk - logit_n,label_n
 *   loss   = w_m * sum_{masked} ce + w_u * sum_{unmasked} ce
 *   sample_size = (w_m > 0 ? masked frames : 0) + (w_u > 0 ? unmasked frames : 0)
 * fairseq's logits have K+1 columns (the positive first, the positive's own column set to
 * -inf): the same softmax as the K columns here.  A frame counts as correct when its label's
 * logit is at least every other logit (fairseq's argmax == 0, which wins ties).  The gradient
 * fairseq applies is of (summed loss over the update) / (summed sample_size): the backward
 * takes that 1 / sample_size as dloss.  cos(a, b) = a.b / (max(|a|, 1e-8) max(|b|, 1e-8)).
 *
 * Heads trained by fairseq hold K+4 label embeddings (its Dictionary puts <s>, <pad>, </s>,
 * <unk> first); such a head is used with labels offset by 4, which this module leaves to its
 * caller.
 *
 * Feature penalty: features_pen = mean(f^2) over the CNN output f (B, T, Cf), added to the loss
 * as loss_weights[0] * features_pen * sample_size (fairseq's extra loss).
 * Mask embedding: masked frames of the projected features are replaced by mask_emb (C). */
#ifndef SLEX_TRAIN_HEAD_H
#define SLEX_TRAIN_HEAD_H

#include <stdint.h>

#include "core/err.h"
#include "core/options.h"
#include "model/checkpoint.h"

/* The criterion's weights (fairseq HubertCriterionConfig). */
typedef struct slex_criterion {
    float pred_masked_weight; /* default 1 */
    float pred_nomask_weight; /* default 0 */
    float feature_pen_weight; /* loss_weights[0]; default 10 */
} slex_criterion;

void slex_criterion_default(slex_criterion *crit);
/* The options registered once (--pred-masked-weight, --pred-nomask-weight, --feature-pen). */
extern const slex_option_table slex_criterion_option_table;
/* Weights >= 0 and finite, not both prediction weights 0. */
int slex_criterion_validate(const slex_criterion *crit, slex_error *err);

/* Gradients of a slex_head: pointers into one allocation of head->num_params floats laid out as
 * head->params.  A NULL member is a frozen parameter. */
typedef struct slex_head_grads {
    float *mask_emb;     /* (C) */
    float *final_proj_w; /* (F, D) */
    float *final_proj_b; /* (F) */
    float *label_emb;    /* (K, F) */
} slex_head_grads;

void slex_head_grads_point(const slex_head_config *cfg, float *base, slex_head_grads *g);

/* Activations of a forward over N frames: slex_head_acts_floats(cfg, N) floats. */
int64_t slex_head_acts_floats(const slex_head_config *cfg, int64_t N);

typedef struct slex_head_stats {
    double loss;          /* w_m * loss_m + w_u * loss_u (the penalty is separate) */
    double loss_m;        /* summed cross-entropy of masked frames (nats) */
    double loss_u;        /* summed cross-entropy of unmasked frames */
    int64_t sample_size;
    int64_t count_m, count_u;     /* masked / unmasked frames */
    int64_t correct_m, correct_u; /* frames whose label has the largest logit */
} slex_head_stats;

/* x (N, D), mask (N), labels (N) -> stats; acts receives the forward's intermediates.  Fails
 * on a label outside [0, K) (naming the frame). */
int slex_head_forward(const slex_head *head, const slex_criterion *crit, const float *x, const uint8_t *mask,
                      const int32_t *labels, int64_t N, float *acts, slex_head_stats *stats, slex_error *err);

/* Backward of dloss * loss: dx (N, D) is written (when not NULL); g's final_proj and label_emb
 * accumulate (g NULL or a NULL member: frozen).  acts are the forward's; the backward uses their
 * probabilities as its scratch, so one backward follows one forward. */
void slex_head_backward(const slex_head *head, const slex_criterion *crit, const float *x, const uint8_t *mask,
                        const int32_t *labels, int64_t N, float *acts, float dloss, const slex_head_grads *g,
                        float *dx);

/* mean(f^2) over n values (accumulated in double). */
double slex_feature_pen_forward(const float *f, int64_t n);
/* df (n) += scale * 2 f / n, the gradient of scale * mean(f^2); scale = feature_pen_weight *
 * sample_size * dloss for fairseq's penalty. */
void slex_feature_pen_backward(float *df, const float *f, int64_t n, float scale);

/* x (N, C): rows with mask set become emb (C). */
void slex_mask_emb_forward(float *x, const uint8_t *mask, const float *emb, int64_t N, int C);
/* dx (N, C): masked rows are summed into demb (C) (when not NULL) and zeroed (the encoder input
 * there does not depend on what was replaced). */
void slex_mask_emb_backward(float *dx, const uint8_t *mask, float *demb, int64_t N, int C);

#endif
