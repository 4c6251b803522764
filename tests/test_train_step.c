/* train/step against the PyTorch training step (tests/train_reference.py ->
 * tests/data/train/<arch>_<mode>): one micro-batch forward + head + backward, one fairseq Adam
 * update: the loss (relative 1e-5), the gradient norm, every trainable gradient (relative norm
 * 1e-3) and the parameters after the update, for post-LN and pre-LN, full and LoRA.
 * usage: test_train_step tests/data/train */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/params.h"
#include "model/safetensors.h"
#include "train/step.h"

static float *tensor(slex_safetensors *st, const char *name, int64_t *numel, int64_t *shape) {
    const slex_st_tensor_info *t = slex_safetensors_find(st, name);
    if (!t) return NULL;
    float *v = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    if (slex_safetensors_read_f32(st, name, v, NULL)) {
        free(v);
        return NULL;
    }
    if (numel) *numel = t->numel;
    if (shape)
        for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    return v;
}

static double meta(slex_safetensors *st, const char *key) {
    const char *v = slex_safetensors_metadata(st, key);
    return v ? strtod(v, NULL) : NAN;
}

/* |got - want| / (|want| + 1e-5); want in the file's layout, got in memory (conv taps
 * (Co, K, Ci) in memory, (Co, Ci, K) in the file). */
static double grad_err(const float *got, const float *want, int64_t n, int taps, const int64_t *shape) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        int64_t j = i;
        if (taps) { /* file index i = (o, c, k) -> memory (o, k, c) */
            int64_t Ci = shape[1], K = shape[2], o = i / (Ci * K), c = (i / K) % Ci, k = i % K;
            j = (o * K + k) * Ci + c;
        }
        num += ((double)got[j] - want[i]) * ((double)got[j] - want[i]);
        den += (double)want[i] * want[i];
    }
    return sqrt(num) / (sqrt(den) + 1e-5);
}

typedef struct cmp_ctx {
    const char *dir;
    slex_safetensors *ex;
    double worst;
    char worst_name[320];
    int checked;
} cmp_ctx;

/* One trainable tensor's gradient against the fixture's grad.<name>. */
static void compare(cmp_ctx *cx, const char *name, const float *got, int64_t n, int taps, const int64_t *shape) {
    char key[320];
    snprintf(key, sizeof key, "grad.%.300s", name);
    float *w = tensor(cx->ex, key, NULL, NULL);
    CHECK(w != NULL, "%s: no %s", cx->dir, key);
    if (!w) return;
    double e = grad_err(got, w, n, taps, shape);
    if (e > cx->worst) cx->worst = e, snprintf(cx->worst_name, sizeof cx->worst_name, "%.300s", name);
    CHECK(e < 1e-3, "%s: gradient of %s off by %.3g (relative norm)", cx->dir, name, e);
    cx->checked++;
    free(w);
}

static void run(const char *dir, int lora_mode) {
    char path[4300];
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    slex_error err = {{0}};
    slex_safetensors *ex = slex_safetensors_open(path, &err);
    CHECK(ex != NULL, "%s", err.msg);
    if (!ex) return;
    int64_t shape[4], nw;
    float *wave = tensor(ex, "wave", &nw, shape);
    int B = (int)shape[0];
    int64_t N = shape[1];
    slex_hubert_load_options lo;
    slex_hubert_load_options_default(&lo);
    lo.keep_activations = 1;
    lo.keep_cnn_activations = !lora_mode;
    lo.max_batch = B;
    lo.max_chunk_samples = N;
    slex_hubert *m = slex_hubert_load(dir, &lo, &err);
    CHECK(m != NULL, "%s: %s", dir, err.msg);
    snprintf(path, sizeof path, "%s/head.safetensors", dir);
    slex_head *head = slex_head_load(path, &err);
    CHECK(head != NULL, "%s", err.msg);
    slex_lora *lora = NULL;
    if (lora_mode) {
        snprintf(path, sizeof path, "%s/adapter", dir);
        lora = slex_lora_open(path, &err);
        CHECK(lora != NULL, "%s", err.msg);
    }
    if (!m || !head || (lora_mode && !lora)) return;
    slex_step_options o;
    slex_step_options_default(&o);
    o.lora = lora_mode;
    o.feature_grad_mult = (float)meta(ex, "feature_grad_mult");
    o.crit.pred_masked_weight = (float)meta(ex, "pred_masked_weight");
    o.crit.pred_nomask_weight = (float)meta(ex, "pred_nomask_weight");
    o.crit.feature_pen_weight = (float)meta(ex, "feature_pen_weight");
    o.adam = (slex_adam_options){meta(ex, "beta1"), meta(ex, "beta2"), meta(ex, "eps"), meta(ex, "weight_decay")};
    o.clip_norm = meta(ex, "clip_norm");
    slex_trainer *t = slex_trainer_create(m, head, lora, &o, &err);
    CHECK(t != NULL, "%s: %s", dir, err.msg);
    if (!t) return;
    if (meta(ex, "normalize") == 1.0) /* fairseq's dataset normalises each utterance (F.layer_norm) */
        for (int b = 0; b < B; b++) {
            float *x = wave + b * N;
            double s = 0, q = 0;
            for (int64_t i = 0; i < N; i++) s += x[i];
            double mean = s / N;
            for (int64_t i = 0; i < N; i++) q += (x[i] - mean) * (x[i] - mean);
            double r = 1.0 / sqrt(q / N + 1e-5);
            for (int64_t i = 0; i < N; i++) x[i] = (float)((x[i] - mean) * r);
        }
    int64_t nm;
    float *mf = tensor(ex, "mask", &nm, shape), *lf = tensor(ex, "labels", NULL, NULL);
    int64_t T = shape[1];
    uint8_t *mask = malloc((size_t)nm);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)nm);
    for (int64_t i = 0; i < nm; i++) mask[i] = mf[i] != 0.0f, labels[i] = (int32_t)lf[i];
    slex_head_stats st;
    double pen = 0.0, norm = 0.0;
    CHECK(slex_trainer_accumulate(t, wave, B, N, mask, labels, T, &st, &pen, &err) == 0, "%s: %s", dir, err.msg);
    double want = meta(ex, "loss");
    fprintf(stderr, "%s: loss %.9g vs torch %.9g (rel %.2e), sample size %lld\n", dir, st.loss, want,
            fabs(st.loss - want) / want, (long long)st.sample_size);
    CHECK(fabs(st.loss - want) <= 1e-5 * fabs(want), "%s: loss %.9g vs %.9g", dir, st.loss, want);
    CHECK(st.sample_size == (int64_t)meta(ex, "sample_size"), "%s: sample size", dir);
    const slex_hubert_config *c = slex_hubert_get_config(m);
    int64_t F = head->cfg.final_dim, K = head->cfg.num_classes, C = c->hidden_size;
    float *mask_before = malloc(sizeof(float) * (size_t)C);
    memcpy(mask_before, head->mask_emb, sizeof(float) * (size_t)C);
    CHECK(slex_trainer_update(t, meta(ex, "lr"), &norm, &err) == 0, "%s: %s", dir, err.msg);
    /* LoRA mode freezes the mask embedding, which the reference trains (train/step.h says why):
     * the norm is the reference's without its gradient; full mode trains it. */
    double want_norm = meta(ex, "grad_norm");
    float *gmask = tensor(ex, "grad.masked_spec_embed", NULL, NULL);
    CHECK(gmask != NULL, "%s: no grad.masked_spec_embed", dir);
    if (lora_mode && gmask) {
        double sq = want_norm * want_norm;
        for (int64_t i = 0; i < C; i++) sq -= (double)gmask[i] * gmask[i];
        want_norm = sqrt(sq);
    }
    free(gmask);
    CHECK(fabs(norm - want_norm) <= 1e-3 * want_norm, "%s: grad norm %.6g vs %.6g", dir, norm, want_norm);
    /* every trainable gradient (after the update: divided by the sample size, not clipped here) */
    cmp_ctx cx = {dir, ex, 0.0, "", 0};
    const slex_head_grads *hg = slex_trainer_head_grads(t);
    compare(&cx, "final_proj.weight", hg->final_proj_w, F * C, 0, shape);
    compare(&cx, "final_proj.bias", hg->final_proj_b, F, 0, shape);
    compare(&cx, "label_embeddings", hg->label_emb, K * F, 0, shape);
    const slex_hubert_params *mg = slex_trainer_model_grads(t);
    CHECK(!lora_mode == (mg->mask_emb != NULL), "%s: the mask embedding is %s in %s mode", dir,
          mg->mask_emb ? "trained" : "frozen", lora_mode ? "LoRA" : "full");
    if (!lora_mode) {
        compare(&cx, "masked_spec_embed", mg->mask_emb, C, 0, shape);
        int nt = slex_hubert_tensors(c, mg, NULL);
        slex_hubert_tensor *tt = malloc(sizeof *tt * (size_t)nt);
        slex_hubert_tensors(c, mg, tt);
        for (int i = 0; i < nt; i++) {
            if (!tt[i].data || !strcmp(tt[i].name, "masked_spec_embed")) continue;
            compare(&cx, tt[i].name, tt[i].data, tt[i].numel, tt[i].conv_taps, tt[i].shape);
        }
        free(tt);
    } else {
        float *g = slex_optim_grad(slex_trainer_optim(t), 0); /* the adapter, then the head */
        for (int i = 0; i < lora->n_targets; i++) {
            const slex_lora_target *tg = &lora->targets[i];
            char name[300];
            snprintf(name, sizeof name, "base_model.model.%s.lora_A.weight", tg->module);
            compare(&cx, name, g + (tg->A - lora->params), (int64_t)tg->r * tg->in, 0, shape);
            snprintf(name, sizeof name, "base_model.model.%s.lora_B.weight", tg->module);
            compare(&cx, name, g + (tg->B - lora->params), (int64_t)tg->out * tg->r, 0, shape);
        }
    }
    fprintf(stderr, "%s: %d gradients, worst relative error %.2e (%s)\n", dir, cx.checked, cx.worst, cx.worst_name);
    /* parameters after the update: head and mask embedding (the whole-model tensors follow from
     * the same optimiser, tested in train_reference) */
    struct { const char *name; const float *p; int64_t n; } after[] = {
        {"after.final_proj.weight", head->final_proj_w, F * C}, {"after.label_embeddings", head->label_emb, K * F},
        {"after.masked_spec_embed", head->mask_emb, C}};
    for (int i = 0; i < 3; i++) {
        float *w = tensor(ex, after[i].name, NULL, NULL);
        if (lora_mode && !strcmp(after[i].name, "after.masked_spec_embed")) { /* frozen: unchanged */
            CHECK(!memcmp(head->mask_emb, mask_before, sizeof(float) * (size_t)C), "%s: LoRA mode changed the mask embedding", dir);
            free(w);
            continue;
        }
        double e = 0.0;
        for (int64_t j = 0; w && j < after[i].n; j++) e = fmax(e, fabs(after[i].p[j] - w[j]) / (fabs(w[j]) + 1e-3));
        CHECK(w && e < 1e-5, "%s: %s off by %.3g", dir, after[i].name, e);
        free(w);
    }
    free(mask_before);
    free(wave);
    free(mf);
    free(lf);
    free(mask);
    free(labels);
    slex_trainer_free(t);
    slex_lora_free(lora);
    slex_head_free(head);
    slex_hubert_free(m);
    slex_safetensors_close(ex);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *names[] = {"post_ln_full", "post_ln_lora", "pre_ln_full", "pre_ln_lora"};
    for (int i = 0; i < 4; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", argv[1], names[i]);
        run(dir, strstr(names[i], "lora") != NULL);
    }
    return check_finish("test_train_step");
}
