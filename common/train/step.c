#include "train/step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/params.h"

void slex_step_options_default(slex_step_options *o) {
    o->lora = 0;
    o->feature_grad_mult = 0.1f;
    slex_criterion_default(&o->crit);
    slex_adam_options_default(&o->adam);
    o->clip_norm = 10.0;
    o->dropout = o->attention_dropout = o->activation_dropout = 0.0f;
}

struct slex_trainer {
    slex_step_options opts;
    slex_hubert *model;
    slex_head *head;
    slex_lora *lora;
    slex_optim *optim;
    slex_hubert_params mgrads;       /* model gradients (NULL fields frozen) */
    slex_head_grads hgrads;          /* head gradients (mask_emb NULL) */
    slex_hubert_lora_site *sites;    /* (L, SLEX_HUBERT_LINEARS) or NULL */
    float *out, *dout, *dfeat, *acts; /* (B, T, C), (B, T, C), (B, T, Cf), head activations */
    int64_t cap_out, cap_dout, cap_feat, cap_acts;
    int64_t sample_size;             /* of the update so far */
    const uint8_t *skip_layer;       /* the next micro-batch's layerdrop, or NULL */
    uint64_t dropout_seed;
    int fresh;                       /* 1: the next accumulate starts a new update (zero grads) */
};

/* The model's parameter block: the tensors of the table are contiguous from the lowest. */
static float *model_block(slex_hubert *m, int64_t *n, slex_error *err) {
    const slex_hubert_config *c = slex_hubert_get_config(m);
    slex_hubert_params *p = slex_hubert_get_params(m);
    int nt = slex_hubert_tensors(c, p, NULL);
    slex_hubert_tensor *t = malloc(sizeof *t * (size_t)nt);
    if (!t) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), NULL;
    slex_hubert_tensors(c, p, t);
    float *lo = NULL, *hi = NULL;
    for (int i = 0; i < nt; i++) {
        if (!t[i].data) continue;
        if (!lo || t[i].data < lo) lo = t[i].data;
        if (!hi || t[i].data + t[i].numel > hi) hi = t[i].data + t[i].numel;
    }
    free(t);
    *n = slex_hubert_params_layout(c, NULL, NULL);
    if (!lo || hi - lo != *n)
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "model parameters are not one block of %lld floats", (long long)*n), NULL;
    return lo;
}

slex_trainer *slex_trainer_create(slex_hubert *model, slex_head *head, slex_lora *lora, const slex_step_options *o,
                                  slex_error *err) {
    const slex_hubert_config *c = slex_hubert_get_config(model);
    if (slex_criterion_validate(&o->crit, err) || slex_adam_options_validate(&o->adam, err)) return NULL;
    if (head->cfg.hidden_size != c->hidden_size)
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "head of width %d for a model of width %d", head->cfg.hidden_size, c->hidden_size), NULL;
    if (o->lora != (lora != NULL))
        return slex_fail_as(err, SLEX_ERR_INTERNAL, o->lora ? "LoRA mode without an adapter" : "an adapter given in full mode"), NULL;
    if (!o->lora && !(o->feature_grad_mult >= 0.0f))
        return slex_fail_as(err, SLEX_ERR_INPUT, "feature-grad-mult %g: must be >= 0", o->feature_grad_mult), NULL;
    slex_trainer *t = calloc(1, sizeof *t);
    if (!t) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), NULL;
    t->opts = *o;
    t->model = model;
    t->head = head;
    t->lora = lora;
    slex_hubert_params *p = slex_hubert_get_params(model);
    const int64_t C = c->hidden_size, L = c->num_hidden_layers;
    memcpy(p->mask_emb, head->mask_emb, sizeof(float) * (size_t)C); /* the head's is loaded as the truth */
    float *seg[2];
    int64_t size[2];
    int n = 0;
    int64_t nmodel = 0;
    if (!o->lora) {
        if (!(seg[n] = model_block(model, &nmodel, err))) {
            slex_trainer_free(t);
            return NULL;
        }
        size[n++] = nmodel;
    } else {
        seg[n] = lora->params;
        size[n++] = lora->num_params;
    }
    seg[n] = head->final_proj_w; /* final_proj and label embeddings: the head block after mask_emb */
    size[n++] = head->num_params - C;
    if (!(t->optim = slex_optim_create(&o->adam, n, seg, size, err))) {
        slex_trainer_free(t);
        return NULL;
    }
    if (!o->lora) {
        slex_hubert_params_layout(c, slex_optim_grad(t->optim, 0), &t->mgrads);
        if (o->feature_grad_mult == 0.0f)
            for (int i = 0; i < c->num_conv; i++)
                t->mgrads.conv_w[i] = t->mgrads.conv_b[i] = t->mgrads.conv_norm_w[i] = t->mgrads.conv_norm_b[i] = NULL;
    } else {
        memset(&t->mgrads, 0, sizeof t->mgrads); /* the base, mask embedding included, is frozen */
        t->sites = calloc((size_t)(L * SLEX_HUBERT_LINEARS), sizeof *t->sites);
        if (!t->sites) {
            slex_trainer_free(t);
            return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), NULL;
        }
        if (slex_lora_sites(lora, model, slex_optim_grad(t->optim, 0), t->sites, err)) {
            slex_trainer_free(t);
            return NULL;
        }
    }
    float *hg = slex_optim_grad(t->optim, n - 1) - C; /* laid out like head->params, mask_emb unused */
    slex_head_grads_point(&head->cfg, hg, &t->hgrads);
    t->hgrads.mask_emb = NULL;
    t->fresh = 1;
    return t;
}

void slex_trainer_free(slex_trainer *t) {
    if (!t) return;
    slex_optim_free(t->optim);
    free(t->sites);
    free(t->out);
    free(t->dout);
    free(t->dfeat);
    free(t->acts);
    free(t);
}

static int grow(float **buf, int64_t *cap, int64_t n, slex_error *err) {
    if (*cap >= n) return 0;
    float *b = realloc(*buf, sizeof(float) * (size_t)n);
    if (!b) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %lld floats of training activations", (long long)n);
    *buf = b;
    *cap = n;
    return 0;
}

int slex_trainer_accumulate(slex_trainer *t, const float *wave, int B, int64_t N, const uint8_t *mask,
                            const int32_t *labels, int64_t T, slex_head_stats *stats, double *features_pen,
                            slex_error *err) {
    slex_hubert *m = t->model;
    const slex_hubert_config *c = slex_hubert_get_config(m);
    const int64_t C = c->hidden_size, Cf = c->conv_dim[c->num_conv - 1];
    int64_t Tm = slex_hubert_chunk_frames(m, N);
    if (T != Tm)
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "micro-batch of %lld-sample crops: labels for %lld frames, the model gives %lld", (long long)N,
                         (long long)T, (long long)Tm);
    int64_t rows = (int64_t)B * T;
    if (grow(&t->out, &t->cap_out, rows * C, err) || grow(&t->dout, &t->cap_dout, rows * C, err) ||
        grow(&t->dfeat, &t->cap_feat, rows * Cf, err) ||
        grow(&t->acts, &t->cap_acts, slex_head_acts_floats(&t->head->cfg, rows), err))
        return -1;
    if (t->fresh) {
        slex_optim_zero_grad(t->optim);
        t->sample_size = 0;
        t->fresh = 0;
    }
    slex_hubert_batch batch = {.B = B,
                               .N = N,
                               .mask = mask,
                               .skip_layer = t->skip_layer,
                               .lora = t->sites,
                               .dropout = t->opts.dropout,
                               .attention_dropout = t->opts.attention_dropout,
                               .activation_dropout = t->opts.activation_dropout,
                               .dropout_seed = t->dropout_seed};
    if (slex_hubert_forward_train(m, wave, &batch, t->out, err)) return -1;
    slex_head_stats st;
    if (slex_head_forward(t->head, &t->opts.crit, t->out, mask, labels, rows, t->acts, &st, err)) return -1;
    const float *feats = slex_hubert_get_acts(m)->conv_gelu[c->num_conv - 1];
    double pen = slex_feature_pen_forward(feats, rows * Cf);
    /* backward of the unnormalised loss (dloss = 1): the update divides by the sample size */
    slex_head_backward(t->head, &t->opts.crit, t->out, mask, labels, rows, t->acts, 1.0f, &t->hgrads, t->dout);
    const float *dfeat = NULL;
    float fgm = t->opts.lora ? 0.0f : t->opts.feature_grad_mult;
    if (fgm > 0.0f && t->opts.crit.feature_pen_weight > 0.0f) {
        memset(t->dfeat, 0, sizeof(float) * (size_t)(rows * Cf));
        slex_feature_pen_backward(t->dfeat, feats, rows * Cf, t->opts.crit.feature_pen_weight * (float)st.sample_size);
        dfeat = t->dfeat;
    }
    if (slex_hubert_backward(m, t->dout, dfeat, fgm, &t->mgrads, err)) return -1;
    t->sample_size += st.sample_size;
    if (stats) {
        *stats = st;
        stats->loss += t->opts.crit.feature_pen_weight * pen * (double)st.sample_size;
    }
    if (features_pen) *features_pen = pen;
    return 0;
}

void slex_trainer_set_draws(slex_trainer *t, const uint8_t *skip_layer, uint64_t dropout_seed) {
    t->skip_layer = skip_layer;
    t->dropout_seed = dropout_seed;
}

int slex_trainer_update(slex_trainer *t, double lr, double *grad_norm, slex_error *err) {
    return slex_trainer_update_total(t, lr, t->sample_size, grad_norm, err);
}

int slex_trainer_update_total(slex_trainer *t, double lr, int64_t sample_size, double *grad_norm, slex_error *err) {
    if (sample_size <= 0) return slex_fail_as(err, SLEX_ERR_INPUT, "update without any frame that carried a loss");
    if (slex_optim_step(t->optim, lr, 1.0 / (double)sample_size, t->opts.clip_norm, grad_norm, err)) return -1;
    const slex_hubert_config *c = slex_hubert_get_config(t->model);
    memcpy(t->head->mask_emb, slex_hubert_get_params(t->model)->mask_emb, sizeof(float) * (size_t)c->hidden_size);
    slex_hubert_params_changed(t->model);
    t->fresh = 1;
    return 0;
}

slex_optim *slex_trainer_optim(slex_trainer *t) { return t->optim; }
const slex_hubert_params *slex_trainer_model_grads(const slex_trainer *t) { return &t->mgrads; }
const slex_head_grads *slex_trainer_head_grads(const slex_trainer *t) { return &t->hgrads; }
int64_t slex_trainer_num_trainable(const slex_trainer *t) { return slex_optim_num_params(t->optim); }
