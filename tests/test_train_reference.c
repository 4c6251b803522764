/* The PyTorch training-step fixtures (tests/train_reference.py -> tests/data/train/<arch>_<mode>)
 * against slex:
 *   - slex's forward (slex_hubert_load + slex_hubert_forward, the adapter merged in LoRA mode)
 *     equals torchaudio's on the fixture's weights (last hidden state, no mask);
 *   - train/head on torchaudio's encoder output: loss, per-part losses, counts and accuracies,
 *     the gradients of final_proj and the label embeddings and the gradient at the encoder
 *     output; the feature penalty on torchaudio's CNN features; the mask embedding's gradient
 *     from torchaudio's gradient at the encoder input;
 *   - train/optim: torchaudio's gradients of every trainable tensor, one fairseq Adam update
 *     with clipping, against the parameters after the update.
 * usage: test_train_reference tests/data/train */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/checkpoint.h"
#include "model/lora.h"
#include "model/hubert.h"
#include "model/safetensors.h"
#include "train/head.h"
#include "train/optim.h"

typedef struct fixture {
    char dir[4096];
    slex_safetensors *exp;
} fixture;

static float *read_tensor(slex_safetensors *st, const char *name, int64_t *numel) {
    const slex_st_tensor_info *t = slex_safetensors_find(st, name);
    if (!t) return NULL;
    float *v = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    slex_error err = {{0}};
    if (slex_safetensors_read_f32(st, name, v, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        free(v);
        return NULL;
    }
    if (numel) *numel = t->numel;
    return v;
}

static double meta_d(const fixture *fx, const char *key) {
    const char *v = slex_safetensors_metadata(fx->exp, key);
    CHECK(v != NULL, "%s: no metadata %s", fx->dir, key);
    return v ? strtod(v, NULL) : NAN;
}

static double rel_norm(const float *a, const float *b, int64_t n, double floor) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / (sqrt(den) + floor);
}

static void test_forward(fixture *fx, int lora) {
    slex_error err = {{0}};
    slex_hubert *m = slex_hubert_load(fx->dir, NULL, &err);
    CHECK(m != NULL, "%s: %s", fx->dir, err.msg);
    if (!m) return;
    if (lora) {
        char ad[4200];
        snprintf(ad, sizeof ad, "%s/adapter", fx->dir);
        slex_lora *l = slex_lora_open(ad, &err);
        CHECK(l && slex_lora_merge(l, m, &err) == 0, "%s: %s", ad, err.msg);
        slex_lora_free(l);
    }
    const slex_st_tensor_info *wi = slex_safetensors_find(fx->exp, "wave");
    int64_t B = wi->shape[0], N = wi->shape[1], C = slex_hubert_get_config(m)->hidden_size;
    float *wave = read_tensor(fx->exp, "wave", NULL), *want = read_tensor(fx->exp, "last_hidden_state", NULL);
    int64_t T = slex_hubert_num_frames(m, N), got_T = 0;
    float *out = malloc(sizeof(float) * (size_t)(T * C));
    double worst = 0.0;
    for (int64_t b = 0; b < B; b++) {
        CHECK(slex_hubert_forward(m, wave + b * N, N, SLEX_HUBERT_LAST_HIDDEN_STATE, out, &got_T, &err) == 0, "%s: %s",
              fx->dir, err.msg);
        for (int64_t i = 0; i < T * C; i++) worst = fmax(worst, fabs(out[i] - want[b * T * C + i]));
    }
    fprintf(stderr, "%s: slex forward vs torchaudio: max abs diff %.3g\n", fx->dir, worst);
    CHECK(worst < 1e-4, "%s: forward differs from torchaudio by %.3g", fx->dir, worst);
    free(out);
    free(wave);
    free(want);
    slex_hubert_free(m);
}

static void test_head(fixture *fx) {
    slex_error err = {{0}};
    char path[4200];
    snprintf(path, sizeof path, "%s/head.safetensors", fx->dir);
    slex_head *head = slex_head_load(path, &err);
    CHECK(head != NULL, "%s", err.msg);
    if (!head) return;
    const slex_st_tensor_info *xi = slex_safetensors_find(fx->exp, "enc_out");
    int64_t N = xi->shape[0] * xi->shape[1], C = xi->shape[2], F = head->cfg.final_dim, K = head->cfg.num_classes;
    float *x = read_tensor(fx->exp, "enc_out", NULL), *lab = read_tensor(fx->exp, "labels", NULL);
    float *msk = read_tensor(fx->exp, "mask", NULL), *gx_want = read_tensor(fx->exp, "grad_enc_out", NULL);
    int64_t nf = 0;
    float *feats = read_tensor(fx->exp, "features", &nf);
    uint8_t *mask = malloc((size_t)N);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)N);
    for (int64_t n = 0; n < N; n++) {
        mask[n] = msk[n] != 0.0f;
        labels[n] = (int32_t)lab[n];
    }
    slex_criterion crit;
    slex_criterion_default(&crit);
    crit.pred_masked_weight = (float)meta_d(fx, "pred_masked_weight");
    crit.pred_nomask_weight = (float)meta_d(fx, "pred_nomask_weight");
    crit.feature_pen_weight = (float)meta_d(fx, "feature_pen_weight");
    float *acts = malloc(sizeof(float) * (size_t)slex_head_acts_floats(&head->cfg, N));
    slex_head_stats st;
    CHECK(slex_head_forward(head, &crit, x, mask, labels, N, acts, &st, &err) == 0, "%s", err.msg);
    double pen = slex_feature_pen_forward(feats, nf);
    double loss = st.loss + crit.feature_pen_weight * pen * (double)st.sample_size;
    double want = meta_d(fx, "loss");
    fprintf(stderr, "%s: loss %.9g vs torch %.9g (rel %.2e)\n", fx->dir, loss, want, fabs(loss - want) / want);
    CHECK(fabs(loss - want) <= 1e-5 * fabs(want), "%s: loss %.9g vs %.9g", fx->dir, loss, want);
    CHECK(fabs(st.loss_m - meta_d(fx, "loss_m")) <= 1e-5 * fabs(meta_d(fx, "loss_m")), "%s: loss_m %.9g", fx->dir,
          st.loss_m);
    CHECK(fabs(st.loss_u - meta_d(fx, "loss_u")) <= 1e-5 * fabs(meta_d(fx, "loss_u")), "%s: loss_u %.9g", fx->dir,
          st.loss_u);
    CHECK(fabs(pen - meta_d(fx, "features_pen")) <= 1e-6 * meta_d(fx, "features_pen"), "%s: features_pen %.9g",
          fx->dir, pen);
    CHECK(st.sample_size == (int64_t)meta_d(fx, "sample_size") && st.count_m == (int64_t)meta_d(fx, "count_m") &&
              st.count_u == (int64_t)meta_d(fx, "count_u"),
          "%s: sample_size %lld counts %lld/%lld", fx->dir, (long long)st.sample_size, (long long)st.count_m,
          (long long)st.count_u);
    CHECK(st.correct_m == (int64_t)meta_d(fx, "correct_m") && st.correct_u == (int64_t)meta_d(fx, "correct_u"),
          "%s: correct %lld/%lld", fx->dir, (long long)st.correct_m, (long long)st.correct_u);
    float *grads = calloc((size_t)head->num_params, sizeof(float)), *dx = malloc(sizeof(float) * (size_t)(N * C));
    slex_head_grads g;
    slex_head_grads_point(&head->cfg, grads, &g);
    slex_head_backward(head, &crit, x, mask, labels, N, acts, (float)(1.0 / (double)st.sample_size), &g, dx);
    float *gx_enc_in = read_tensor(fx->exp, "grad_enc_in", NULL);
    slex_mask_emb_backward(gx_enc_in, mask, g.mask_emb, N, (int)C);
    struct { const char *name; const float *got; int64_t n; } parts[] = {
        {"grad.final_proj.weight", g.final_proj_w, F * C}, {"grad.final_proj.bias", g.final_proj_b, F},
        {"grad.label_embeddings", g.label_emb, K * F}, {"grad.masked_spec_embed", g.mask_emb, C},
        {"grad_enc_out", dx, N * C}};
    for (int i = 0; i < 5; i++) {
        float *w = i < 4 ? read_tensor(fx->exp, parts[i].name, NULL) : gx_want;
        double r = rel_norm(parts[i].got, w, parts[i].n, 0.0);
        fprintf(stderr, "%s: %s relative error %.2e\n", fx->dir, parts[i].name, r);
        CHECK(r < 1e-4, "%s: %s differs from torch by %.3g (relative norm)", fx->dir, parts[i].name, r);
        if (i < 4) free(w);
    }
    free(gx_enc_in);
    free(grads);
    free(dx);
    free(acts);
    free(x);
    free(lab);
    free(msk);
    free(gx_want);
    free(feats);
    free(mask);
    free(labels);
    slex_head_free(head);
}

/* Every trainable tensor's value before the update, from whichever file holds it. */
static float *initial_value(const fixture *fx, const char *name, int64_t *n) {
    static const char *files[] = {"head.safetensors", "adapter/adapter_model.safetensors", "model.safetensors"};
    for (int i = 0; i < 3; i++) {
        char path[4300];
        snprintf(path, sizeof path, "%s/%s", fx->dir, files[i]);
        slex_safetensors *st = slex_safetensors_open(path, NULL);
        if (!st) continue;
        float *v = read_tensor(st, name, n);
        slex_safetensors_close(st);
        if (v) return v;
    }
    return NULL;
}

static void test_update(fixture *fx) {
    const char *list = slex_safetensors_metadata(fx->exp, "trainable");
    char *names = strdup(list ? list : "");
    float *params[512];
    int64_t sizes[512];
    char *name_of[512];
    int n = 0;
    for (char *tok = strtok(names, " "); tok && n < 512; tok = strtok(NULL, " ")) {
        name_of[n] = tok;
        params[n] = initial_value(fx, tok, &sizes[n]);
        CHECK(params[n] != NULL, "%s: no initial value of %s", fx->dir, tok);
        if (!params[n]) return;
        n++;
    }
    slex_adam_options ao = {meta_d(fx, "beta1"), meta_d(fx, "beta2"), meta_d(fx, "eps"), meta_d(fx, "weight_decay")};
    slex_error err = {{0}};
    slex_optim *o = slex_optim_create(&ao, n, params, sizes, &err);
    CHECK(o != NULL, "%s", err.msg);
    for (int i = 0; i < n; i++) {
        char key[300];
        snprintf(key, sizeof key, "grad.%s", name_of[i]);
        float *gr = read_tensor(fx->exp, key, NULL);
        memcpy(slex_optim_grad(o, i), gr, sizeof(float) * (size_t)sizes[i]);
        free(gr);
    }
    double norm = 0.0;
    CHECK(slex_optim_step(o, meta_d(fx, "lr"), 1.0, meta_d(fx, "clip_norm"), &norm, &err) == 0, "%s", err.msg);
    CHECK(fabs(norm - meta_d(fx, "grad_norm")) <= 1e-5 * meta_d(fx, "grad_norm"), "%s: grad norm %.9g vs %.9g",
          fx->dir, norm, meta_d(fx, "grad_norm"));
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < n; i++) {
        char key[300];
        snprintf(key, sizeof key, "after.%s", name_of[i]);
        float *want = read_tensor(fx->exp, key, NULL);
        /* an element whose gradient is ~0 moves by an eps-dominated amount: compare absolutely */
        double e = 0.0;
        for (int64_t j = 0; j < sizes[i]; j++) e = fmax(e, fabs(params[i][j] - want[j]) / (fabs(want[j]) + 1e-3));
        if (e > worst) worst = e, worst_name = name_of[i];
        free(want);
        free(params[i]);
    }
    fprintf(stderr, "%s: %d tensors after one update: worst relative error %.2e (%s)\n", fx->dir, n, worst, worst_name);
    CHECK(worst < 1e-5, "%s: parameters after the update differ by %.3g (%s)", fx->dir, worst, worst_name);
    slex_optim_free(o);
    free(names);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *names[] = {"post_ln_full", "post_ln_lora", "pre_ln_full", "pre_ln_lora"};
    for (int i = 0; i < 4; i++) {
        fixture fx;
        snprintf(fx.dir, sizeof fx.dir, "%s/%s", argv[1], names[i]);
        char path[4200];
        snprintf(path, sizeof path, "%s/expected.safetensors", fx.dir);
        slex_error err = {{0}};
        fx.exp = slex_safetensors_open(path, &err);
        CHECK(fx.exp != NULL, "%s", err.msg);
        if (!fx.exp) continue;
        test_forward(&fx, strstr(names[i], "lora") != NULL);
        test_head(&fx);
        test_update(&fx);
        slex_safetensors_close(fx.exp);
    }
    return check_finish("test_train_reference");
}
