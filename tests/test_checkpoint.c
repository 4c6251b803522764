/* test_checkpoint: slex checkpoint directories (common/checkpoint.c).
 *   - every fixture model (tests/model_reference.py: torchaudio weights under HF names) saved as
 *     a checkpoint and reloaded by slex_hubert_load: every parameter bit for bit, every layer's
 *     forward output bit for bit, and torchaudio's outputs within the model test's tolerance;
 *     the directories are left in WORK_DIR for tests/checkpoint_reference.py, which compares
 *     the saved model.safetensors with the original fixture files by name in numpy;
 *   - head save/load round trip, head initialisation statistics against PyTorch's bounds;
 *   - a LoRA adapter saved inside a checkpoint and reloaded;
 *   - damaged checkpoints refused with the file named (CRC, size, missing head, wrong K, mask
 *     embeddings of different checkpoints, shapes against config.json, no manifest);
 *   - saves killed with SIGKILL at random points leave nothing incomplete that loads.
 * usage: test_checkpoint MODEL_DATA_DIR WORK_DIR   (tests/data/model, a scratch directory) */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "model/checkpoint.h"
#include "core/fileio.h"
#include "model/lora.h"
#include "model/hubert.h"
#include "core/rng.h"
#include "model/safetensors.h"

#define PARITY_TOL 1e-4 /* tests/test_model.c's torchaudio parity tolerance */
#define CHUNK 4000      /* the fixtures' max_chunk_samples */

static const char *model_data, *work;
static slex_checkpoint_load_options load_opts; /* defaults with the fixtures' chunk size */

static void path_join(char *out, size_t cap, const char *a, const char *b) {
    if (snprintf(out, cap, "%s/%s", a, b) >= (int)cap) {
        fprintf(stderr, "path too long: %s/%s\n", a, b);
        exit(2);
    }
}

static void run(const char *cmd) {
    if (system(cmd) != 0) fprintf(stderr, "command failed: %s\n", cmd);
}

static slex_hubert *load_dir(const char *dir, int ignore_unexpected) {
    slex_hubert_load_options o;
    slex_hubert_load_options_default(&o);
    o.ignore_unexpected = ignore_unexpected;
    o.max_chunk_samples = CHUNK;
    slex_error err = {{0}};
    slex_hubert *m = slex_hubert_load(dir, &o, &err);
    CHECK(m != NULL, "load %s: %s", dir, err.msg);
    return m;
}

/* Every parameter tensor of the model, with its size, listed from the config independently of
 * model.c's allocation order. */
typedef struct {
    const char *what;
    const float *p;
    int64_t n;
} tensor_ref;

static int list_params(slex_hubert *m, tensor_ref *out) {
    const slex_hubert_config *c = slex_hubert_get_config(m);
    const slex_hubert_params *p = slex_hubert_get_params(m);
    int64_t C = c->hidden_size, F = c->intermediate_size, L = c->num_hidden_layers, Kp = c->num_conv_pos_embeddings;
    int64_t Cf = c->conv_dim[c->num_conv - 1], Cg = C / c->num_conv_pos_embedding_groups;
    int n = 0;
    for (int i = 0; i < c->num_conv; i++) {
        int64_t co = c->conv_dim[i];
        out[n++] = (tensor_ref){"conv_w", p->conv_w[i], co * c->conv_kernel[i] * (i ? c->conv_dim[i - 1] : 1)};
        if (c->conv_bias) out[n++] = (tensor_ref){"conv_b", p->conv_b[i], co};
        if (i == 0 || c->feat_extract_norm == SLEX_FEAT_NORM_LAYER) {
            out[n++] = (tensor_ref){"conv_norm_w", p->conv_norm_w[i], co};
            out[n++] = (tensor_ref){"conv_norm_b", p->conv_norm_b[i], co};
        }
    }
    out[n++] = (tensor_ref){"proj_ln_w", p->proj_ln_w, Cf};
    out[n++] = (tensor_ref){"proj_ln_b", p->proj_ln_b, Cf};
    out[n++] = (tensor_ref){"proj_w", p->proj_w, C * Cf};
    out[n++] = (tensor_ref){"proj_b", p->proj_b, C};
    out[n++] = (tensor_ref){"pos_conv_g", p->pos_conv_g, Kp};
    out[n++] = (tensor_ref){"pos_conv_v", p->pos_conv_v, C * Cg * Kp};
    out[n++] = (tensor_ref){"pos_conv_b", p->pos_conv_b, C};
    out[n++] = (tensor_ref){"enc_ln_w", p->enc_ln_w, C};
    out[n++] = (tensor_ref){"enc_ln_b", p->enc_ln_b, C};
    out[n++] = (tensor_ref){"ln1_w", p->ln1_w, L * C};
    out[n++] = (tensor_ref){"ln1_b", p->ln1_b, L * C};
    out[n++] = (tensor_ref){"qkv_w", p->qkv_w, L * 3 * C * C};
    out[n++] = (tensor_ref){"qkv_b", p->qkv_b, L * 3 * C};
    out[n++] = (tensor_ref){"attproj_w", p->attproj_w, L * C * C};
    out[n++] = (tensor_ref){"attproj_b", p->attproj_b, L * C};
    out[n++] = (tensor_ref){"ln2_w", p->ln2_w, L * C};
    out[n++] = (tensor_ref){"ln2_b", p->ln2_b, L * C};
    out[n++] = (tensor_ref){"fc_w", p->fc_w, L * F * C};
    out[n++] = (tensor_ref){"fc_b", p->fc_b, L * F};
    out[n++] = (tensor_ref){"fcproj_w", p->fcproj_w, L * C * F};
    out[n++] = (tensor_ref){"fcproj_b", p->fcproj_b, L * C};
    out[n++] = (tensor_ref){"mask_emb", p->mask_emb, C};
    return n;
}

/* 1 when every parameter of a and b is bit-identical (mask_emb compared with `mask_b` instead
 * of b's when given); counts the floats compared into *floats. */
static int same_params(slex_hubert *a, slex_hubert *b, const char *what, int64_t *floats) {
    tensor_ref ta[128], tb[128];
    int n = list_params(a, ta), nb = list_params(b, tb), ok = n == nb;
    CHECK(n == nb, "%s: %d vs %d tensors", what, n, nb);
    CHECK(slex_hubert_num_parameters(a) == slex_hubert_num_parameters(b), "%s: parameter counts", what);
    int64_t total = 0;
    for (int i = 0; ok && i < n; i++) {
        int same = ta[i].n == tb[i].n && memcmp(ta[i].p, tb[i].p, (size_t)ta[i].n * sizeof(float)) == 0;
        CHECK(same, "%s: parameter %s (#%d) differs", what, ta[i].what, i);
        ok = ok && same;
        total += ta[i].n;
    }
    if (floats) *floats = total;
    return ok;
}

static float *read_tensor(const char *path, const char *name, int64_t *numel) {
    slex_error err = {{0}};
    slex_safetensors *st = slex_safetensors_open(path, &err);
    CHECK(st != NULL, "%s", err.msg);
    if (!st) return NULL;
    const slex_st_tensor_info *t = slex_safetensors_find(st, name);
    float *x = t ? malloc((size_t)t->numel * sizeof(float)) : NULL;
    if (x && slex_safetensors_read_f32(st, name, x, &err)) {
        free(x);
        x = NULL;
    }
    if (x && numel) *numel = t->numel;
    slex_safetensors_close(st);
    return x;
}

/* Every layer's output (0..L and the last hidden state) of the two models bit for bit, and the
 * reloaded model's against torchaudio's outputs in expected.safetensors. */
static void compare_forward(slex_hubert *orig, slex_hubert *reloaded, const char *fixture_dir, const char *name) {
    char path[1024];
    path_join(path, sizeof path, fixture_dir, "expected.safetensors");
    int64_t n = 0;
    float *wave = read_tensor(path, "wave", &n);
    if (!wave) return;
    const slex_hubert_config *c = slex_hubert_get_config(orig);
    int64_t frames = slex_hubert_num_frames(orig, n), T1, T2;
    float *a = malloc((size_t)(frames * c->hidden_size) * sizeof(float));
    float *b = malloc((size_t)(frames * c->hidden_size) * sizeof(float));
    slex_error err = {{0}};
    double max_ref = 0.0;
    for (int layer = -1; layer <= c->num_hidden_layers; layer++) {
        int ok = slex_hubert_forward(orig, wave, n, layer, a, &T1, &err) == 0 &&
                 slex_hubert_forward(reloaded, wave, n, layer, b, &T2, &err) == 0;
        CHECK(ok, "%s forward layer %d: %s", name, layer, err.msg);
        if (!ok) break;
        CHECK(T1 == T2 && memcmp(a, b, (size_t)(T1 * c->hidden_size) * sizeof(float)) == 0,
              "%s: layer %d output of the reloaded checkpoint differs", name, layer);
        char key[32];
        if (layer < 0)
            snprintf(key, sizeof key, "last_hidden_state");
        else
            snprintf(key, sizeof key, "layer_%d", layer);
        int64_t ne = 0;
        float *ref = read_tensor(path, key, &ne);
        if (!ref) continue;
        CHECK(ne == T2 * c->hidden_size, "%s: %s size", name, key);
        for (int64_t i = 0; i < ne && ne == T2 * c->hidden_size; i++) {
            double e = fabs((double)b[i] - ref[i]);
            if (e > max_ref) max_ref = e;
        }
        free(ref);
    }
    CHECK(max_ref <= PARITY_TOL, "%s: reloaded checkpoint vs torchaudio max abs error %.3g", name, max_ref);
    fprintf(stderr, "  %s: %lld frames, all layers bit-identical after reload; vs torchaudio max |err| %.3g\n", name,
            (long long)T2, max_ref);
    free(a);
    free(b);
    free(wave);
}

static slex_head *make_head(int C, int K, int D, uint64_t seed) {
    slex_head_config hc;
    slex_head_config_default(&hc);
    hc.hidden_size = C;
    hc.num_classes = K;
    hc.final_dim = D;
    slex_error err = {{0}};
    slex_head *h = slex_head_create(&hc, &err);
    CHECK(h != NULL, "head create: %s", err.msg);
    if (h) slex_head_init(h, seed, SLEX_LABEL_EMB_UNIFORM);
    return h;
}

static int same_head(const slex_head *a, const slex_head *b) {
    return a && b && a->cfg.hidden_size == b->cfg.hidden_size && a->cfg.final_dim == b->cfg.final_dim &&
           a->cfg.num_classes == b->cfg.num_classes && a->cfg.label_rate == b->cfg.label_rate &&
           a->cfg.logit_temp == b->cfg.logit_temp && !strcmp(a->cfg.label_set, b->cfg.label_set) &&
           a->num_params == b->num_params &&
           memcmp(a->params, b->params, (size_t)a->num_params * sizeof(float)) == 0;
}

/* ---- fixtures saved and reloaded ------------------------------------------------------------- */

/* expected_of: the fixture whose expected.safetensors holds this model's torchaudio outputs. */
static void test_fixture(const char *name, const char *expected_of, int ignore_unexpected, int copy_config) {
    char src[1024], dst[1024], cfg_path[1100], ref[1024];
    path_join(src, sizeof src, model_data, name);
    path_join(dst, sizeof dst, work, name);
    slex_hubert *orig = load_dir(src, ignore_unexpected);
    if (!orig) return;
    const slex_hubert_config *c = slex_hubert_get_config(orig);
    /* The head continues the model's mask embedding, so the reloaded model must equal the
     * original in every parameter. */
    slex_head *head = make_head(c->hidden_size, 20, 16, 11);
    memcpy(head->mask_emb, slex_hubert_get_params(orig)->mask_emb, (size_t)c->hidden_size * sizeof(float));
    slex_checkpoint_save_options so;
    slex_checkpoint_save_options_default(&so);
    path_join(cfg_path, sizeof cfg_path, src, "config.json");
    so.config_source = copy_config ? cfg_path : NULL;
    so.step = 500;
    slex_error err = {{0}};
    CHECK(slex_checkpoint_save(dst, orig, head, NULL, &so, &err) == 0, "save %s: %s", name, err.msg);
    if (copy_config) {
        char *a = slex_read_text_file(cfg_path, NULL, &err);
        path_join(cfg_path, sizeof cfg_path, dst, "config.json");
        char *b = slex_read_text_file(cfg_path, NULL, &err);
        CHECK(a && b && strcmp(a, b) == 0, "%s: config.json copied verbatim", name);
        free(a);
        free(b);
    }
    slex_hubert *back = load_dir(dst, 0);
    if (back) {
        int64_t floats = 0;
        if (same_params(orig, back, name, &floats))
            fprintf(stderr, "  %s: %lld parameters bit-identical after save + slex_hubert_load\n", name,
                    (long long)floats);
        CHECK(slex_hubert_normalizes_waveform(orig) == slex_hubert_normalizes_waveform(back),
              "%s: waveform normalisation survives the save", name);
        path_join(ref, sizeof ref, model_data, expected_of);
        compare_forward(orig, back, ref, name);
        slex_hubert_free(back);
    }
    slex_checkpoint *ck = slex_checkpoint_load(dst, &load_opts, &err);
    CHECK(ck != NULL, "checkpoint load %s: %s", name, err.msg);
    if (ck) {
        CHECK(same_head(ck->head, head), "%s: head bit-identical", name);
        CHECK(ck->lora == NULL && ck->step == 500 && strcmp(ck->producer_version, SLEX_VERSION) == 0,
              "%s: no adapter, step 500 (%lld), version '%s'", name, (long long)ck->step, ck->producer_version);
        slex_checkpoint_free(ck);
    }
    slex_head_free(head);
    slex_hubert_free(orig);
}

/* A head with its own mask embedding: model.safetensors gets the head's, the rest unchanged. */
static void test_head_owns_mask_embedding(void) {
    char src[1024], dst[1024];
    path_join(src, sizeof src, model_data, "post_ln_group");
    path_join(dst, sizeof dst, work, "own_mask");
    slex_hubert *orig = load_dir(src, 0);
    if (!orig) return;
    int C = slex_hubert_get_config(orig)->hidden_size;
    slex_head *head = make_head(C, 7, 8, 3);
    slex_error err = {{0}};
    CHECK(slex_checkpoint_save(dst, orig, head, NULL, NULL, &err) == 0, "save: %s", err.msg);
    slex_checkpoint *ck = slex_checkpoint_load(dst, &load_opts, &err);
    CHECK(ck != NULL, "load: %s", err.msg);
    if (ck) {
        float *mask = slex_hubert_get_params(ck->model)->mask_emb;
        CHECK(memcmp(mask, head->mask_emb, (size_t)C * sizeof(float)) == 0, "model mask embedding = head's");
        memcpy(slex_hubert_get_params(orig)->mask_emb, head->mask_emb, (size_t)C * sizeof(float));
        same_params(orig, ck->model, "own_mask", NULL);
        CHECK(ck->step == -1, "no step recorded: %lld", (long long)ck->step);
        slex_checkpoint_free(ck);
    }
    slex_head_free(head);
    slex_hubert_free(orig);
}

/* ---- head --------------------------------------------------------------------------------------- */

static void test_head_round_trip(void) {
    slex_head_config hc;
    slex_head_config_default(&hc);
    CHECK(hc.final_dim == 256 && hc.label_rate == 50.0 && hc.logit_temp == 0.1, "head defaults");
    hc.hidden_size = 24;
    hc.num_classes = 13;
    hc.final_dim = 10;
    hc.label_rate = 100.0;
    hc.logit_temp = 0.1;
    slex_error err = {{0}};
    slex_head *h = slex_head_create(&hc, &err);
    CHECK(h && h->num_params == 24 + 10 * 24 + 10 + 13 * 10, "head create: %s", err.msg);
    if (!h) return;
    slex_head_init(h, 99, SLEX_LABEL_EMB_UNIFORM);
    char path[1024];
    path_join(path, sizeof path, work, "head_round_trip.safetensors");
    CHECK(slex_head_save(h, path, &err) == 0, "head save: %s", err.msg);
    slex_head *back = slex_head_load(path, &err);
    CHECK(same_head(h, back), "head round trip bit-identical: %s", back ? "values differ" : err.msg);
    /* metadata written as the shortest decimal text */
    slex_safetensors *st = slex_safetensors_open(path, &err);
    if (st) {
        CHECK(!strcmp(slex_safetensors_metadata(st, "label_rate"), "100") &&
                  !strcmp(slex_safetensors_metadata(st, "logit_temp"), "0.1") &&
                  !strcmp(slex_safetensors_metadata(st, "num_classes"), "13") &&
                  !strcmp(slex_safetensors_metadata(st, "format"), "pt"),
              "head metadata text");
        slex_safetensors_close(st);
    }
    slex_head_free(back);
    st = slex_safetensors_open(path, &err);
    CHECK(st && !slex_safetensors_metadata(st, "label_set"), "no label_set written when it is unknown");
    slex_safetensors_close(st);

    /* the label set (two codebooks' CRC-32s) survives the round trip; malformed ones are refused */
    snprintf(h->cfg.label_set, sizeof h->cfg.label_set, "%s", "0a1b2c3d+9429555d");
    CHECK(slex_head_save(h, path, &err) == 0, "head save with a label set: %s", err.msg);
    back = slex_head_load(path, &err);
    CHECK(same_head(h, back) && !strcmp(back->cfg.label_set, "0a1b2c3d+9429555d"), "label_set round trip: %s",
          back ? back->cfg.label_set : err.msg);
    slex_head_free(back);
    static const char *bad_sets[] = {"9429555", "9429555d+", "9429555D", "9429555d,0a1b2c3d", "9429555d++0a1b2c3"};
    for (size_t i = 0; i < sizeof bad_sets / sizeof bad_sets[0]; i++) {
        snprintf(hc.label_set, sizeof hc.label_set, "%s", bad_sets[i]);
        hc.num_classes = 13;
        CHECK(slex_head_create(&hc, &err) == NULL && strstr(err.msg, "label_set"), "label_set %s refused: %s", bad_sets[i],
              err.msg);
    }
    hc.label_set[0] = '\0';

    /* refusals */
    hc.num_classes = 0;
    CHECK(slex_head_create(&hc, &err) == NULL && strstr(err.msg, "num_classes"), "K = 0 refused: %s", err.msg);
    path_join(path, sizeof path, work, "not_a_head.safetensors");
    slex_st_write_tensor t = {"label_embeddings", 2, {3, 4}, h->params};
    slex_st_metadata m = {"num_classes", "3"};
    slex_safetensors_write(path, &t, 1, &m, 1, &err);
    CHECK(slex_head_load(path, &err) == NULL && strstr(err.msg, "not_a_head.safetensors") &&
              strstr(err.msg, "final_dim"),
          "head without final_dim metadata refused: %s", err.msg);
    slex_st_metadata m2[] = {{"num_classes", "3"}, {"final_dim", "4"}, {"hidden_size", "2"}, {"label_rate", "50"},
                             {"logit_temp", "0.1"}};
    slex_st_write_tensor t2[] = {{"masked_spec_embed", 1, {2}, h->params},
                                 {"final_proj.weight", 2, {4, 2}, h->params},
                                 {"final_proj.bias", 1, {4}, h->params},
                                 {"label_embeddings", 2, {5, 4}, h->params}};
    slex_safetensors_write(path, t2, 4, m2, 5, &err);
    CHECK(slex_head_load(path, &err) == NULL && strstr(err.msg, "label_embeddings") && strstr(err.msg, "[5, 4]") &&
              strstr(err.msg, "num_classes 3"),
          "label_embeddings of 5 classes with num_classes 3 refused: %s", err.msg);
    slex_head_free(h);
}

static void moments(const float *x, int64_t n, double *mean, double *var, double *lo, double *hi) {
    double s = 0.0, sq = 0.0;
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        if (x[i] < *lo) *lo = x[i];
        if (x[i] > *hi) *hi = x[i];
    }
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) sq += (x[i] - *mean) * (x[i] - *mean);
    *var = sq / (double)n;
}

static void test_head_init(void) {
    /* HuBERT Base sizes: C 768, final_dim 256, K 500 */
    slex_head *h = make_head(768, 500, 256, 2024);
    if (!h) return;
    float bound = (float)(1.0 / sqrt(768.0)); /* PyTorch nn.Linear: 1/sqrt(fan_in) */
    double mean, var, lo, hi;
    int64_t nw = 256 * 768;
    moments(h->final_proj_w, nw, &mean, &var, &lo, &hi);
    double b2 = (double)bound * bound;
    CHECK(lo >= -bound && hi <= bound, "final_proj.weight in [-%g, %g]: [%g, %g]", bound, bound, lo, hi);
    CHECK(hi > 0.999 * bound && lo < -0.999 * bound, "final_proj.weight fills its range: [%g, %g]", lo, hi);
    CHECK(fabs(mean) < 5.0 * sqrt(b2 / 3.0 / nw), "final_proj.weight mean %g", mean);
    CHECK(fabs(var / (b2 / 3.0) - 1.0) < 0.02, "final_proj.weight variance %g vs bound^2/3 %g", var, b2 / 3.0);
    fprintf(stderr, "  final_proj.weight: range [%.6f, %.6f] (bound %.6f), mean %.2e, var/(bound^2/3) %.4f\n", lo, hi,
            bound, mean, var / (b2 / 3.0));
    moments(h->final_proj_b, 256, &mean, &var, &lo, &hi);
    CHECK(lo >= -bound && hi <= bound && hi - lo > bound, "final_proj.bias in bound: [%g, %g]", lo, hi);
    int64_t nl = 500 * 256;
    moments(h->label_emb, nl, &mean, &var, &lo, &hi);
    CHECK(lo >= 0.0 && hi < 1.0 && lo < 1e-3 && hi > 0.999, "label embeddings in [0, 1): [%g, %g]", lo, hi);
    CHECK(fabs(mean - 0.5) < 5.0 * sqrt(1.0 / 12.0 / nl), "label embeddings mean %g", mean);
    CHECK(fabs(var * 12.0 - 1.0) < 0.02, "label embeddings variance %g vs 1/12", var);
    fprintf(stderr, "  label_embeddings: range [%.6f, %.6f], mean %.5f, var*12 %.4f\n", lo, hi, mean, var * 12.0);
    moments(h->mask_emb, 768, &mean, &var, &lo, &hi);
    CHECK(lo >= 0.0 && hi < 1.0 && fabs(mean - 0.5) < 0.1, "mask embedding U[0,1): [%g, %g] mean %g", lo, hi, mean);
    /* seeded: the same seed gives the same head, another seed another one */
    slex_head *same = make_head(768, 500, 256, 2024), *other = make_head(768, 500, 256, 2025);
    CHECK(same_head(h, same), "same seed, same head");
    CHECK(!same_head(h, other), "another seed, another head");
    slex_head_free(same);
    slex_head_free(other);
    slex_head_free(h);
}

/* ---- adapter ----------------------------------------------------------------------------------- */

static void test_adapter(void) {
    char src[1024], dst[1024];
    path_join(src, sizeof src, model_data, "pre_ln_layer");
    path_join(dst, sizeof dst, work, "with_adapter");
    slex_hubert *m = load_dir(src, 0);
    if (!m) return;
    slex_lora_config lc;
    slex_lora_config_default(&lc);
    lc.r = 4;
    lc.lora_alpha = 8;
    const char *modules[] = {"encoder.layers.0.attention.q_proj", "encoder.layers.1.feed_forward.output_dense",
                             "feature_projection.projection"};
    slex_error err = {{0}};
    slex_lora *lora = slex_lora_create(&lc, modules, 3, m, &err);
    CHECK(lora != NULL, "lora create: %s", err.msg);
    if (!lora) {
        slex_hubert_free(m);
        return;
    }
    slex_rng rng;
    slex_rng_seed(&rng, 5);
    for (int64_t i = 0; i < lora->num_params; i++) lora->params[i] = (float)(slex_rng_uniform(&rng) - 0.5);
    slex_head *head = make_head(slex_hubert_get_config(m)->hidden_size, 30, 12, 8);
    slex_checkpoint_save_options so;
    slex_checkpoint_save_options_default(&so);
    so.step = 77;
    CHECK(slex_checkpoint_save(dst, m, head, lora, &so, &err) == 0, "save with adapter: %s", err.msg);
    slex_checkpoint *ck = slex_checkpoint_load(dst, &load_opts, &err);
    CHECK(ck != NULL, "load with adapter: %s", err.msg);
    if (ck) {
        CHECK(ck->lora != NULL && ck->step == 77, "adapter present, step %lld", (long long)ck->step);
        if (ck->lora) {
            CHECK(ck->lora->n_targets == 3 && ck->lora->num_params == lora->num_params, "adapter targets");
            for (int i = 0; i < lora->n_targets && i < ck->lora->n_targets; i++) {
                const slex_lora_target *a = &lora->targets[i], *b = &ck->lora->targets[i];
                CHECK(!strcmp(a->module, b->module) && a->r == b->r && a->alpha == b->alpha &&
                          a->scaling == b->scaling &&
                          !memcmp(a->A, b->A, (size_t)a->r * a->in * sizeof(float)) &&
                          !memcmp(a->B, b->B, (size_t)a->out * a->r * sizeof(float)),
                      "adapter target %s bit-identical", a->module);
            }
        }
        CHECK(same_head(ck->head, head), "head next to the adapter");
        slex_checkpoint_free(ck);
    }
    /* an adapter that does not fit the model is refused before anything is written */
    char other[1024];
    path_join(other, sizeof other, work, "adapter_mismatch");
    slex_hubert *small = NULL;
    char src2[1024];
    path_join(src2, sizeof src2, model_data, "post_ln_group"); /* 3 layers, same hidden size */
    small = load_dir(src2, 0);
    if (small) {
        lora->targets[1].out += 1; /* output_dense out size no longer the model's */
        CHECK(slex_checkpoint_save(other, small, NULL, lora, NULL, &err) != 0 && strstr(err.msg, "adapter") &&
                  !slex_path_exists(other),
              "misfit adapter refused: %s", err.msg);
        lora->targets[1].out -= 1;
        slex_hubert_free(small);
    }
    slex_head_free(head);
    slex_lora_free(lora);
    slex_hubert_free(m);
}

/* ---- damaged checkpoints ---------------------------------------------------------------------- */

/* Sets the manifest entry of `rel` to the file's current size and CRC-32. */
static void reseal(const char *dir, const char *rel) {
    char path[1024], file[1024];
    path_join(path, sizeof path, dir, "slex_checkpoint.json");
    path_join(file, sizeof file, dir, rel);
    slex_error err = {{0}};
    char *text = slex_read_text_file(path, NULL, &err);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    cJSON *entry = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "files"), rel);
    uint32_t crc = 0;
    int64_t bytes = 0;
    CHECK(entry && slex_file_crc32(file, &crc, &bytes, &err) == 0, "reseal %s", rel);
    if (entry) {
        char hex[16];
        snprintf(hex, sizeof hex, "%08x", (unsigned)crc);
        cJSON_ReplaceItemInObject(entry, "crc32", cJSON_CreateString(hex));
        cJSON_ReplaceItemInObject(entry, "bytes", cJSON_CreateNumber((double)bytes));
        char *out = cJSON_Print(root);
        slex_write_file_atomic(path, out, strlen(out), &err);
        free(out);
    }
    cJSON_Delete(root);
    free(text);
}

static void expect_refused(const char *dir, const slex_checkpoint_load_options *opts, const char *needle1,
                           const char *needle2, const char *what) {
    slex_error err = {{0}};
    slex_checkpoint *ck = slex_checkpoint_load(dir, opts ? opts : &load_opts, &err);
    CHECK(ck == NULL && strstr(err.msg, needle1) && strstr(err.msg, needle2),
          "%s must be refused naming '%s' and '%s': %s", what, needle1, needle2, ck ? "loaded" : err.msg);
    if (!ck) fprintf(stderr, "  refused (%s): %s\n", what, err.msg);
    slex_checkpoint_free(ck);
}

static void test_damaged(void) {
    char src[1024], good[1024], dir[1024], cmd[8192], file[1100];
    path_join(src, sizeof src, model_data, "post_ln_group");
    path_join(good, sizeof good, work, "good");
    slex_hubert *m = load_dir(src, 0);
    if (!m) return;
    int C = slex_hubert_get_config(m)->hidden_size;
    slex_head *head = make_head(C, 20, 16, 1);
    memcpy(head->mask_emb, slex_hubert_get_params(m)->mask_emb, (size_t)C * sizeof(float));
    slex_error err = {{0}};
    CHECK(slex_checkpoint_save(good, m, head, NULL, NULL, &err) == 0, "save: %s", err.msg);
    CHECK(slex_checkpoint_verify(good, &err) == 0, "verify good: %s", err.msg);

    /* existing directory: refused without overwrite; a non-checkpoint never replaced */
    CHECK(slex_checkpoint_save(good, m, head, NULL, NULL, &err) != 0 && strstr(err.msg, "exists"),
          "existing checkpoint needs overwrite: %s", err.msg);
    path_join(dir, sizeof dir, work, "plain_dir");
    slex_mkdirs(dir, &err);
    slex_checkpoint_save_options so;
    slex_checkpoint_save_options_default(&so);
    so.overwrite = 1;
    CHECK(slex_checkpoint_save(dir, m, head, NULL, &so, &err) != 0 && strstr(err.msg, "not a slex checkpoint"),
          "plain directory not replaced: %s", err.msg);
    expect_refused(dir, NULL, "plain_dir", "not a complete slex checkpoint", "directory without manifest");

    /* CRC mismatch: one byte of a weight flipped */
    path_join(dir, sizeof dir, work, "bad_crc");
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dir, good, dir);
    run(cmd);
    path_join(file, sizeof file, dir, "model.safetensors");
    FILE *f = fopen(file, "r+b");
    if (f) {
        fseek(f, -100, SEEK_END);
        int ch = fgetc(f);
        fseek(f, -100, SEEK_END);
        fputc(ch ^ 0x10, f);
        fclose(f);
    }
    expect_refused(dir, NULL, "bad_crc/model.safetensors", "CRC-32", "flipped byte");
    CHECK(slex_checkpoint_verify(dir, &err) != 0 && strstr(err.msg, "CRC-32"), "verify sees it: %s", err.msg);

    /* truncated file */
    path_join(dir, sizeof dir, work, "truncated");
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s' && truncate -s -8 '%s/head.safetensors'", dir, good, dir,
             dir);
    run(cmd);
    expect_refused(dir, NULL, "truncated/head.safetensors", "bytes", "truncated head");

    /* missing head */
    path_join(dir, sizeof dir, work, "no_head");
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s' && rm '%s/head.safetensors'", dir, good, dir, dir);
    run(cmd);
    expect_refused(dir, NULL, "no_head/head.safetensors", "missing", "missing head");

    /* wrong K: a head of another size, resealed so that the CRCs agree */
    path_join(dir, sizeof dir, work, "wrong_k");
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dir, good, dir);
    run(cmd);
    slex_head *h25 = make_head(C, 25, 16, 1);
    memcpy(h25->mask_emb, head->mask_emb, (size_t)C * sizeof(float));
    path_join(file, sizeof file, dir, "head.safetensors");
    slex_head_save(h25, file, &err);
    reseal(dir, "head.safetensors");
    expect_refused(dir, NULL, "wrong_k/head.safetensors", "num_classes 25 but slex_checkpoint.json records 20",
                   "head of 25 classes in a 20-class checkpoint");
    slex_head_free(h25);

    /* expected K given by the caller */
    slex_checkpoint_load_options lo = load_opts;
    lo.num_classes = 21;
    expect_refused(good, &lo, "good/head.safetensors", "21 label classes were expected", "caller expects 21 classes");
    lo.num_classes = 20;
    slex_checkpoint *ck = slex_checkpoint_load(good, &lo, &err);
    CHECK(ck != NULL, "expected K 20 accepted: %s", err.msg);
    slex_checkpoint_free(ck);

    /* head and base from different checkpoints: the mask embeddings disagree */
    path_join(dir, sizeof dir, work, "mixed");
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dir, good, dir);
    run(cmd);
    slex_head *other = make_head(C, 20, 16, 2);
    path_join(file, sizeof file, dir, "head.safetensors");
    slex_head_save(other, file, &err);
    reseal(dir, "head.safetensors");
    expect_refused(dir, NULL, "mixed/head.safetensors", "masked_spec_embed differs", "head of another checkpoint");
    slex_head_free(other);

    /* config.json that disagrees with the weights (resealed): shapes checked against it */
    path_join(dir, sizeof dir, work, "bad_config");
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dir, good, dir);
    run(cmd);
    path_join(file, sizeof file, dir, "config.json");
    char *text = slex_read_text_file(file, NULL, &err);
    cJSON *cfg = text ? cJSON_Parse(text) : NULL;
    CHECK(cJSON_GetObjectItemCaseSensitive(cfg, "intermediate_size") != NULL, "config.json has intermediate_size");
    cJSON_ReplaceItemInObject(cfg, "intermediate_size", cJSON_CreateNumber(65));
    char *edited = cJSON_Print(cfg);
    slex_write_file_atomic(file, edited, strlen(edited), &err);
    free(edited);
    cJSON_Delete(cfg);
    free(text);
    reseal(dir, "config.json");
    expect_refused(dir, NULL, "bad_config/model.safetensors", "config.json implies", "config/weights mismatch");

    /* require_head on a checkpoint without one */
    path_join(dir, sizeof dir, work, "base_only");
    CHECK(slex_checkpoint_save(dir, m, NULL, NULL, NULL, &err) == 0, "base-only save: %s", err.msg);
    lo.num_classes = 0;
    lo.require_head = 1;
    expect_refused(dir, &lo, "base_only", "no pretraining head", "require_head");
    lo.require_head = 0;
    ck = slex_checkpoint_load(dir, &lo, &err);
    CHECK(ck && ck->head == NULL && ck->lora == NULL, "base-only checkpoint loads: %s", err.msg);
    slex_checkpoint_free(ck);

    /* overwrite replaces a checkpoint in one step and leaves no temporary behind */
    slex_head *h2 = make_head(C, 20, 16, 9);
    memcpy(h2->mask_emb, head->mask_emb, (size_t)C * sizeof(float));
    CHECK(slex_checkpoint_save(good, m, h2, NULL, &so, &err) == 0, "overwrite: %s", err.msg);
    ck = slex_checkpoint_load(good, &load_opts, &err);
    CHECK(ck && same_head(ck->head, h2), "overwritten checkpoint has the new head: %s", err.msg);
    slex_checkpoint_free(ck);
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -d '%s'.tmp-* '%s'.old-* 2>/dev/null)\"", good, good);
    CHECK(system(cmd) == 0, "no temporary directories left after overwrite");
    slex_head_free(h2);
    slex_head_free(head);
    slex_hubert_free(m);
}

/* ---- killed saves ------------------------------------------------------------------------------ */

/* Saves in a loop until killed: to fresh directories ck_0, ck_1, ... (overwrite 0) or always to
 * `ck` alternating two heads (overwrite 1). */
static void save_loop(const char *dir, slex_hubert *m, slex_head *const *heads, int overwrite) {
    slex_checkpoint_save_options so;
    slex_checkpoint_save_options_default(&so);
    so.overwrite = overwrite;
    char path[1100];
    for (int i = 0;; i++) {
        char name[32] = "ck";
        if (!overwrite) snprintf(name, sizeof name, "ck_%d", i);
        path_join(path, sizeof path, dir, name);
        so.step = i;
        slex_error err;
        if (slex_checkpoint_save(path, m, heads[i % 2], NULL, &so, &err)) _exit(2);
    }
}

/* Kills a save loop after `delay_us` and examines what it left: every directory that loads
 * must be a complete checkpoint of the model with one of the heads.  Returns the number of
 * directories that did not load (interrupted saves). */
static int killed_save(const char *dir, slex_hubert *m, slex_head *const *heads, int overwrite, long delay_us,
                       int *complete) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    run(cmd);
    if (overwrite) {
        /* the loop overwrites a complete checkpoint from its first save on */
        char ck_path[1100];
        path_join(ck_path, sizeof ck_path, dir, "ck");
        slex_error err = {{0}};
        CHECK(slex_checkpoint_save(ck_path, m, heads[1], NULL, NULL, &err) == 0, "first save: %s", err.msg);
    }
    pid_t pid = fork();
    if (pid == 0) save_loop(dir, m, heads, overwrite);
    struct timespec ts = {delay_us / 1000000, (delay_us % 1000000) * 1000};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "save loop killed (status %d)", status);
    DIR *d = opendir(dir);
    struct dirent *e;
    int incomplete = 0;
    *complete = 0;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1300];
        path_join(path, sizeof path, dir, e->d_name);
        slex_error err = {{0}};
        slex_checkpoint *ck = slex_checkpoint_load(path, &load_opts, &err);
        int temporary = strstr(e->d_name, ".tmp-") || strstr(e->d_name, ".old-");
        if (!ck) {
            incomplete++;
            CHECK(temporary, "%s: a final checkpoint name that does not load: %s", e->d_name, err.msg);
            continue;
        }
        int ok = same_params(m, ck->model, e->d_name, NULL) &&
                 (same_head(ck->head, heads[0]) || same_head(ck->head, heads[1]));
        CHECK(ok, "%s loads but is not a complete checkpoint of the saved model", e->d_name);
        if (!temporary) (*complete)++;
        slex_checkpoint_free(ck);
    }
    if (d) closedir(d);
    if (overwrite) CHECK(*complete == 1, "the overwritten checkpoint 'ck' loads after the kill");
    return incomplete;
}

static void test_killed_saves(void) {
    char src[1024], dir[1024];
    path_join(src, sizeof src, model_data, "post_ln_group");
    slex_hubert *m = load_dir(src, 0);
    if (!m) return;
    int C = slex_hubert_get_config(m)->hidden_size;
    slex_head *heads[2] = {make_head(C, 50, 16, 21), make_head(C, 50, 16, 22)};
    for (int i = 0; i < 2; i++)
        memcpy(heads[i]->mask_emb, slex_hubert_get_params(m)->mask_emb, (size_t)C * sizeof(float));
    for (int overwrite = 0; overwrite <= 1; overwrite++) {
        snprintf(dir, sizeof dir, "%s/killed_%s", work, overwrite ? "overwrite" : "fresh");
        int interrupted = 0, complete = 0, total_complete = 0, attempts = 0;
        /* Repeat with other delays until a kill has landed inside a save (nearly always the
         * first time: the loop does nothing but save). */
        for (; attempts < 20 && !interrupted; attempts++) {
            interrupted = killed_save(dir, m, heads, overwrite, 40000 + 7919L * attempts, &complete);
            total_complete += complete;
        }
        CHECK(interrupted > 0, "%s: no kill landed inside a save in %d attempts", dir, attempts);
        fprintf(stderr, "  killed save loop (%s): %d attempt(s), %d complete checkpoint(s) load, %d interrupted "
                        "save(s) refused\n", overwrite ? "overwrite" : "fresh dirs", attempts, total_complete,
                interrupted);
    }
    slex_head_free(heads[0]);
    slex_head_free(heads[1]);
    slex_hubert_free(m);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL_DATA_DIR WORK_DIR\n", argv[0]);
        return 2;
    }
    model_data = argv[1];
    work = argv[2];
    slex_checkpoint_load_options_default(&load_opts);
    load_opts.model.max_chunk_samples = CHUNK;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", work, work);
    run(cmd);
    test_fixture("post_ln_group", "post_ln_group", 0, 1);
    test_fixture("pre_ln_layer", "pre_ln_layer", 0, 0);
    test_fixture("prefixed", "post_ln_group", 1, 0); /* post_ln_group's weights, HubertForCTC names */
    test_fixture("f16", "f16", 0, 0);
    test_head_owns_mask_embedding();
    test_head_round_trip();
    test_head_init();
    test_adapter();
    test_damaged();
    test_killed_saves();
    return check_finish("checkpoint");
}
