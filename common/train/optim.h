/* optim: fairseq's optimisation step — its Adam with decoupled weight decay (fairseq/optim/adam.py,
 * "the AdamW variant"), the learning-rate schedules polynomial_decay and cosine, clipping by the
 * global gradient norm and gradient accumulation as fairseq's trainer does them.
 *
 * One update (fairseq Trainer.train_step):
 *   g = sum of the micro-batches' gradients (update_freq batches accumulate into one buffer)
 *   g *= grad_scale                         1 / summed sample_size
 *   norm = |g|_2; if clip_norm > 0: g *= min(1, clip_norm / (norm + 1e-6))
 *   a non-finite norm stops here (fairseq's FloatingPointError): nothing is changed
 *   t += 1; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2
 *   p -= weight_decay * lr * p;  p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
 * Note eps is added to sqrt(v) before the bias correction (torch.optim.AdamW adds it after:
 * the two differ while 1 - b2^t is far from 1).  Each element's update is computed in double
 * from the float state.  The learning rate of update number u (1-based) is the schedule at
 * u - 1 completed updates, as fairseq sets it after each update.
 *
 * The trainable parameters are segments anywhere in memory (the LoRA block, the head, ranges
 * of the model's block); their gradients, first and second moments are each one allocation,
 * segment after segment. */
#ifndef SLEX_TRAIN_OPTIM_H
#define SLEX_TRAIN_OPTIM_H

#include <stdint.h>

#include "core/err.h"
#include "core/options.h"

typedef enum {
    SLEX_LR_LINEAR = 0,     /* polynomial_decay with power 1 (the HuBERT recipe) */
    SLEX_LR_POLYNOMIAL = 1, /* polynomial_decay with `power` */
    SLEX_LR_COSINE = 2,     /* cosine (t_mult 1) */
} slex_lr_kind;

typedef struct slex_lr_schedule {
    int kind;                /* slex_lr_kind; default linear */
    double lr;               /* peak learning rate; default 5e-4 */
    int64_t warmup_updates;  /* linear warm-up; default 0 */
    int64_t total_updates;   /* max_update: the decay ends here; required (> 0) */
    double end_lr;           /* polynomial: end_learning_rate; default 0 */
    double power;            /* polynomial: decay exponent; default 1 */
    double warmup_init_lr;   /* cosine: start of the warm-up; default -1 = min_lr */
    double min_lr;           /* cosine: default 0 */
    double lr_shrink;        /* cosine: factor per period after the first; default 0.1 */
} slex_lr_schedule;

void slex_lr_schedule_default(slex_lr_schedule *s);
/* The options registered once (--lr, --warmup-steps, --lr-schedule, --power, --end-learning-rate:
 * defaults, ranges, --help and the run parameters); total_updates and the cosine's settings are
 * not options. */
extern const slex_option_table slex_lr_option_table;
int slex_lr_schedule_validate(const slex_lr_schedule *s, slex_error *err);
/* "linear", "polynomial", "cosine" -> kind; -1 for another name. */
int slex_lr_kind_parse(const char *name);

/* The learning rate after num_updates completed updates (fairseq's step_update(num_updates)):
 *   polynomial: warm-up lr * n / W for n <= W; end_lr for n >= total; else
 *               (lr - end_lr) * (1 - (n - W) / (total - W))^power + end_lr
 *   cosine:     warmup_init_lr + n (lr - warmup_init_lr) / W for n < W; else with c = n - W,
 *               P = total - W, i = floor(c / P): shrink^i (min_lr + (lr - min_lr)/2
 *               (1 + cos(pi (c - iP) / P))) */
double slex_lr_at(const slex_lr_schedule *s, int64_t num_updates);

typedef struct slex_adam_options {
    double beta1;        /* default 0.9 */
    double beta2;        /* default 0.98 */
    double eps;          /* default 1e-6 */
    double weight_decay; /* default 0.01 */
} slex_adam_options;

void slex_adam_options_default(slex_adam_options *o);
/* --weight-decay and --adam-eps; the betas are parameters only (a program reads them as one
 * option, e.g. slex-train's --adam-betas). */
extern const slex_option_table slex_adam_option_table;
int slex_adam_options_validate(const slex_adam_options *o, slex_error *err);

typedef struct slex_optim slex_optim;

/* Parameters: n_segments pieces params[i] of sizes[i] floats (not copied: updated in place). */
slex_optim *slex_optim_create(const slex_adam_options *o, int n_segments, float *const *params,
                              const int64_t *sizes, slex_error *err);
void slex_optim_free(slex_optim *o);

int64_t slex_optim_num_params(const slex_optim *o);
/* The gradient of segment i (in the one gradient allocation), and the whole allocation. */
float *slex_optim_grad(slex_optim *o, int segment);
float *slex_optim_grads(slex_optim *o);
void slex_optim_zero_grad(slex_optim *o);

/* One update as above.  *grad_norm (may be NULL) receives the norm before clipping; the
 * gradient buffer holds the scaled, clipped gradient afterwards.  Fails, changing no parameter
 * and no moment, when the norm is not finite. */
int slex_optim_step(slex_optim *o, double lr, double grad_scale, double clip_norm, double *grad_norm,
                    slex_error *err);

/* The state a checkpoint keeps: updates done, and the moments (num_params floats each). */
int64_t slex_optim_updates(const slex_optim *o);
void slex_optim_set_updates(slex_optim *o, int64_t updates);
float *slex_optim_exp_avg(slex_optim *o);
float *slex_optim_exp_avg_sq(slex_optim *o);

#endif
