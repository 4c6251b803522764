/* test_lora: PEFT LoRA adapters (common/lora.c) against torch: merged weights of the fixture
 * adapters (tests/dump_reference.py: W + B @ A * scaling computed in torch, rsLoRA and
 * rank/alpha patterns included), that nothing but the targets changes, refusal of bad adapters
 * with the file and tensor named (and the model left untouched), and create/save/open round trip.
 * usage: test_lora MODEL_DATA_DIR DUMP_DATA_DIR   (tests/data/model, tests/data/dump) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/fileio.h"
#include "model/lora.h"
#include "model/hubert.h"
#include "model/safetensors.h"

#define MERGE_TOL 1e-6

static char tmp_dir[256];
static const char *model_data, *dump_data;

/* The weight a module path adapts, located independently of lora.c: (out, in) inside params. */
static float *weight_of(slex_hubert *m, const char *module, int64_t *size) {
    const slex_hubert_config *c = slex_hubert_get_config(m);
    slex_hubert_params *p = slex_hubert_get_params(m);
    int64_t C = c->hidden_size, F = c->intermediate_size;
    if (strncmp(module, "hubert.", 7) == 0) module += 7;
    if (strcmp(module, "feature_projection.projection") == 0) {
        *size = C * c->conv_dim[c->num_conv - 1];
        return p->proj_w;
    }
    int l = -1, used = 0;
    char rest[128];
    if (sscanf(module, "encoder.layers.%d.%127s%n", &l, rest, &used) != 2) return NULL;
    *size = C * C;
    if (!strcmp(rest, "attention.q_proj")) return p->qkv_w + (3 * l + 0) * C * C;
    if (!strcmp(rest, "attention.k_proj")) return p->qkv_w + (3 * l + 1) * C * C;
    if (!strcmp(rest, "attention.v_proj")) return p->qkv_w + (3 * l + 2) * C * C;
    if (!strcmp(rest, "attention.out_proj")) return p->attproj_w + l * C * C;
    *size = C * F;
    if (!strcmp(rest, "feed_forward.intermediate_dense")) return p->fc_w + l * F * C;
    if (!strcmp(rest, "feed_forward.output_dense")) return p->fcproj_w + l * C * F;
    return NULL;
}

static slex_hubert *load_model(const char *name, int ignore_unexpected) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", model_data, name);
    slex_hubert_load_options lo;
    slex_hubert_load_options_default(&lo);
    lo.ignore_unexpected = ignore_unexpected;
    lo.max_chunk_samples = 4000;
    slex_error err = {{0}};
    slex_hubert *m = slex_hubert_load(dir, &lo, &err);
    CHECK(m != NULL, "load %s: %s", name, err.msg);
    return m;
}

static slex_lora *open_adapter(const char *dir, slex_error *err) {
    slex_lora *lora = slex_lora_open(dir, err);
    return lora;
}

/* Merges dump_data/adapter_<name> into model `model_name` and compares every target with
 * dump_data/merged_<name>.safetensors; also checks that only target weights changed. */
static void test_merge(const char *name, const char *model_name, int ignore_unexpected, int expect_targets) {
    slex_hubert *m = load_model(model_name, ignore_unexpected);
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/adapter_%s", dump_data, name);
    snprintf(path, sizeof path, "%s/merged_%s.safetensors", dump_data, name);
    slex_error err = {{0}};
    slex_lora *lora = open_adapter(dir, &err);
    slex_safetensors *ref = slex_safetensors_open(path, &err);
    CHECK(lora && ref, "%s: %s", name, err.msg);
    if (!m || !lora || !ref) goto done;
    CHECK(lora->n_targets == expect_targets, "%s: %d targets", name, lora->n_targets);
    int64_t n = slex_hubert_num_parameters(m);
    float *base = slex_hubert_get_params(m)->conv_w[0]; /* start of the parameter block */
    float *before = malloc((size_t)n * sizeof(float));
    memcpy(before, base, (size_t)n * sizeof(float));
    CHECK(slex_lora_merge(lora, m, &err) == 0, "%s: merge: %s", name, err.msg);
    char *in_target = calloc((size_t)n, 1);
    double worst = 0.0;
    for (int i = 0; i < lora->n_targets; i++) {
        const slex_lora_target *t = &lora->targets[i];
        int64_t size = 0;
        float *W = weight_of(m, t->module, &size);
        CHECK(W != NULL && size == (int64_t)t->out * t->in, "%s: %s located", name, t->module);
        if (!W) continue;
        memset(in_target + (W - base), 1, (size_t)size);
        char tname[256];
        snprintf(tname, sizeof tname, "%s.weight", strncmp(t->module, "hubert.", 7) ? t->module : t->module + 7);
        const slex_st_tensor_info *info = slex_safetensors_find(ref, tname);
        CHECK(info && info->numel == size, "%s: reference %s", name, tname);
        if (!info || info->numel != size) continue;
        float *want = malloc((size_t)size * sizeof(float));
        slex_safetensors_read_f32(ref, tname, want, &err);
        for (int64_t k = 0; k < size; k++) worst = fmax(worst, fabs((double)W[k] - want[k]));
        free(want);
    }
    CHECK(worst <= MERGE_TOL, "%s: merged weights differ from torch by %.3g", name, worst);
    fprintf(stderr, "%s: merged weights vs torch: max abs difference %.3g\n", name, worst);
    int64_t changed_outside = 0, changed_inside = 0;
    for (int64_t k = 0; k < n; k++) {
        int changed = memcmp(&before[k], &base[k], sizeof(float)) != 0;
        if (changed && !in_target[k]) changed_outside++;
        changed_inside += changed && in_target[k];
    }
    CHECK(changed_outside == 0, "%s: %lld parameters outside the targets changed", name, (long long)changed_outside);
    CHECK(changed_inside > 0, "%s: nothing changed", name);
    free(in_target);
    free(before);
done:
    slex_safetensors_close(ref);
    slex_lora_free(lora);
    slex_hubert_free(m);
}

static void test_fields(void) {
    char dir[1024];
    slex_error err = {{0}};
    snprintf(dir, sizeof dir, "%s/adapter_post_ln", dump_data);
    slex_lora *a = open_adapter(dir, &err);
    CHECK(a != NULL, "%s", err.msg);
    if (a) {
        CHECK(a->cfg.r == 4 && a->cfg.lora_alpha == 8 && !a->cfg.use_rslora, "post_ln config");
        CHECK(!strcmp(a->targets[0].module, "encoder.layers.0.attention.q_proj"), "first target %s", a->targets[0].module);
        int64_t n = 0;
        for (int i = 0; i < a->n_targets; i++) {
            const slex_lora_target *t = &a->targets[i];
            CHECK(t->r == 4 && t->scaling == 2.0f, "%s: r %d scaling %g", t->module, t->r, t->scaling);
            n += (int64_t)t->r * (t->in + t->out);
            CHECK(t->A >= a->params && t->B + (int64_t)t->out * t->r <= a->params + a->num_params, "%s in the block",
                  t->module);
        }
        CHECK(n == a->num_params, "one block of %lld floats (%lld)", (long long)n, (long long)a->num_params);
        CHECK(a->targets[0].A == a->params, "A of the first target starts the block");
    }
    slex_lora_free(a);
    snprintf(dir, sizeof dir, "%s/adapter_ctc_rslora", dump_data);
    a = open_adapter(dir, &err);
    CHECK(a != NULL, "%s", err.msg);
    for (int i = 0; a && i < a->n_targets; i++) {
        const slex_lora_target *t = &a->targets[i];
        /* rank_pattern {"layers.2.attention.q_proj": 2}, alpha_pattern {"v_proj": 3}, alpha 6, rsLoRA */
        int r = strstr(t->module, "layers.2.attention.q_proj") ? 2 : 4;
        double alpha = strstr(t->module, "v_proj") ? 3 : 6;
        CHECK(t->r == r && t->alpha == alpha, "%s: r %d alpha %g", t->module, t->r, t->alpha);
        CHECK_CLOSE(t->scaling, alpha / sqrt(r), 1e-6, t->module);
    }
    slex_lora_free(a);
}

/* ---- bad adapters, written here ---------------------------------------------------------- */

static const char *GOOD_CONFIG = "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"bias\": \"none\", "
                                 "\"target_modules\": [\"q_proj\"]%s}";

/* Writes tmp_dir/<sub> with a config (GOOD_CONFIG with `extra` spliced in) and tensors named
 * base_model.model.<names[i]> of shapes (rows[i], cols[i]) filled with 0.01. */
static void write_adapter(const char *sub, const char *extra, int n, const char *const *names, const int *rows,
                          const int *cols) {
    char dir[512], path[700], json[2048];
    snprintf(dir, sizeof dir, "%s/%s", tmp_dir, sub);
    slex_error err = {{0}};
    slex_mkdirs(dir, &err);
    snprintf(json, sizeof json, GOOD_CONFIG, extra);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    slex_write_file_atomic(path, json, strlen(json), &err);
    slex_st_write_tensor t[8];
    char full[8][256];
    static float fill[64 * 64];
    for (int i = 0; i < 64 * 64; i++) fill[i] = 0.01f;
    for (int i = 0; i < n; i++) {
        snprintf(full[i], sizeof full[i], "base_model.model.%s", names[i]);
        t[i] = (slex_st_write_tensor){full[i], 2, {rows[i], cols[i]}, fill};
    }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    CHECK(slex_safetensors_write(path, t, n, NULL, 0, &err) == 0, "%s", err.msg);
}

/* Opens (and, if that succeeds, merges into model) tmp_dir/<sub>; expects failure with every
 * word in the message, and the model unchanged. */
static void expect_refused(slex_hubert *m, const char *sub, const char *w1, const char *w2) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmp_dir, sub);
    int64_t n = slex_hubert_num_parameters(m);
    float *base = slex_hubert_get_params(m)->conv_w[0];
    float *before = malloc((size_t)n * sizeof(float));
    memcpy(before, base, (size_t)n * sizeof(float));
    slex_error err = {{0}};
    slex_lora *a = slex_lora_open(dir, &err);
    int rc = a ? slex_lora_merge(a, m, &err) : -1;
    CHECK(rc != 0, "%s accepted", sub);
    CHECK(strstr(err.msg, dir) != NULL, "%s: message names the adapter: %s", sub, err.msg);
    CHECK(strstr(err.msg, w1) && (!w2 || strstr(err.msg, w2)), "%s: message '%s' lacks '%s'/'%s'", sub, err.msg, w1,
          w2 ? w2 : "");
    CHECK(memcmp(before, base, (size_t)n * sizeof(float)) == 0, "%s: a refused merge changed the model", sub);
    free(before);
    slex_lora_free(a);
}

static void test_refusals(void) {
    slex_hubert *m = load_model("post_ln_group", 0);
    if (!m) return;
    const char *q0[] = {"encoder.layers.0.attention.q_proj.lora_A.weight", "encoder.layers.0.attention.q_proj.lora_B.weight"};
    int r2[] = {2, 32}, c2[] = {32, 2};
    write_adapter("pissa", ", \"init_lora_weights\": \"pissa_niter_4\"", 2, q0, r2, c2);
    expect_refused(m, "pissa", "pissa", "base weights");
    write_adapter("lora_ga", ", \"init_lora_weights\": \"lora_ga\"", 2, q0, r2, c2);
    expect_refused(m, "lora_ga", "lora_ga", "base weights");
    write_adapter("save", ", \"modules_to_save\": [\"lm_head\"]", 2, q0, r2, c2);
    expect_refused(m, "save", "modules_to_save", NULL);
    write_adapter("lorabias", ", \"lora_bias\": true", 2, q0, r2, c2);
    expect_refused(m, "lorabias", "lora_bias", NULL);
    write_adapter("badpattern", ", \"alpha_pattern\": {\"q_proj(\": 2}", 2, q0, r2, c2);
    expect_refused(m, "badpattern", "alpha_pattern", "q_proj(");
    const char *magn[] = {q0[0], q0[1], "encoder.layers.0.attention.q_proj.lora_magnitude_vector"};
    int r3[] = {2, 32, 1}, c3[] = {32, 2, 32};
    write_adapter("magnitude", "", 3, magn, r3, c3);
    expect_refused(m, "magnitude", "lora_magnitude_vector", "not a LoRA weight");
    const char *only_b[] = {q0[1]};
    write_adapter("onlyb", "", 1, only_b, r2 + 1, c2 + 1);
    expect_refused(m, "onlyb", "q_proj.lora_B.weight", "no matching");
    int rb[] = {2, 48}, cb[] = {32, 2};
    write_adapter("outs", "", 2, q0, rb, cb);
    expect_refused(m, "outs", "lora_B.weight", "48");
    int rr[] = {2, 32}, cr[] = {32, 3};
    write_adapter("ranks", "", 2, q0, rr, cr);
    expect_refused(m, "ranks", "ranks differ", NULL);
    /* A good target first, then one beyond the model: the good one must not be merged either. */
    const char *two[] = {q0[0], q0[1], "encoder.layers.3.attention.q_proj.lora_A.weight",
                         "encoder.layers.3.attention.q_proj.lora_B.weight"};
    int r4[] = {2, 32, 2, 32}, c4[] = {32, 2, 32, 2};
    write_adapter("beyond", "", 4, two, r4, c4);
    expect_refused(m, "beyond", "encoder.layers.3.attention.q_proj", "3 transformer layers");
    const char *dup[] = {q0[0], q0[1], "hubert.encoder.layers.0.attention.q_proj.lora_A.weight",
                         "hubert.encoder.layers.0.attention.q_proj.lora_B.weight"};
    write_adapter("dup", "", 4, dup, r4, c4);
    expect_refused(m, "dup", "same weight", NULL);
    const char *conv[] = {"feature_extractor.conv_layers.1.conv.lora_A.weight",
                          "feature_extractor.conv_layers.1.conv.lora_B.weight"};
    write_adapter("conv", "", 2, conv, r2, c2);
    expect_refused(m, "conv", "unknown module path", "conv_layers.1");
    /* fan_in_fan_out is accepted (PEFT resets it for nn.Linear) */
    write_adapter("fifo", ", \"fan_in_fan_out\": true", 2, q0, r2, c2);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/fifo", tmp_dir);
    slex_error err = {{0}};
    slex_lora *a = slex_lora_open(dir, &err);
    CHECK(a && a->n_targets == 1 && a->targets[0].scaling == 2.0f, "fan_in_fan_out adapter: %s", err.msg);
    slex_lora_free(a);
    slex_hubert_free(m);
}

/* create -> fill -> save -> open gives the same targets and values; per-target alpha goes
 * through alpha_pattern. */
static void test_round_trip(void) {
    slex_hubert *m = load_model("post_ln_group", 0);
    if (!m) return;
    slex_lora_config cfg;
    slex_lora_config_default(&cfg);
    cfg.r = 3;
    cfg.lora_alpha = 6;
    cfg.use_rslora = 1;
    snprintf(cfg.base_model_name_or_path, sizeof cfg.base_model_name_or_path, "post_ln_group");
    const char *modules[] = {"encoder.layers.1.attention.q_proj", "encoder.layers.2.feed_forward.intermediate_dense",
                             "feature_projection.projection"};
    slex_error err = {{0}};
    slex_lora *a = slex_lora_create(&cfg, modules, 3, m, &err);
    CHECK(a != NULL, "create: %s", err.msg);
    const char *bad[] = {"encoder.layers.1.attention.qq"};
    slex_lora *b = slex_lora_create(&cfg, bad, 1, m, &err);
    CHECK(!b && strstr(err.msg, "unknown module path"), "create with an unknown module: %s", err.msg);
    slex_lora_free(b);
    if (!a) goto done;
    CHECK(a->targets[1].out == 64 && a->targets[1].in == 32 && a->targets[2].in == 32, "created shapes");
    int64_t nonzero = 0;
    for (int64_t k = 0; k < a->num_params; k++) nonzero += a->params[k] != 0.0f;
    CHECK(nonzero == 0 && a->num_params == 3 * (32 + 32) + 3 * (32 + 64) + 3 * (32 + 32), "created: %lld floats, "
          "%lld nonzero", (long long)a->num_params, (long long)nonzero);
    for (int64_t k = 0; k < a->num_params; k++) a->params[k] = (float)sin(0.37 * (double)k);
    a->targets[2].alpha = 1.5;
    a->targets[2].scaling = (float)(1.5 / sqrt(3.0));
    char dir[512];
    snprintf(dir, sizeof dir, "%s/saved", tmp_dir);
    CHECK(slex_lora_save(a, dir, &err) == 0, "save: %s", err.msg);
    slex_lora *back = slex_lora_open(dir, &err);
    CHECK(back != NULL, "reopen: %s", err.msg);
    if (back) {
        CHECK(back->n_targets == 3 && back->cfg.r == 3 && back->cfg.lora_alpha == 6 && back->cfg.use_rslora,
              "saved config");
        CHECK(!strcmp(back->cfg.base_model_name_or_path, "post_ln_group"), "base model name");
        CHECK(back->num_params == a->num_params, "saved size");
        for (int i = 0; i < back->n_targets && i < 3; i++) {
            const slex_lora_target *x = &a->targets[i], *y = &back->targets[i];
            CHECK(!strcmp(x->module, y->module) && x->r == y->r && x->in == y->in && x->out == y->out &&
                      x->alpha == y->alpha && x->scaling == y->scaling,
                  "target %d: %s r %d alpha %g", i, y->module, y->r, y->alpha);
            CHECK(!memcmp(x->A, y->A, (size_t)x->r * x->in * sizeof(float)) &&
                      !memcmp(x->B, y->B, (size_t)x->out * x->r * sizeof(float)),
                  "target %d values", i);
        }
        char path[700];
        snprintf(path, sizeof path, "%s/adapter_config.json", dir);
        char *json = slex_read_text_file(path, NULL, &err);
        /* the module path itself: every PEFT version resolves it (tests/test_lora_patterns.py) */
        CHECK(json && strstr(json, "\"feature_projection.projection\":\t1.5"), "alpha_pattern entry: %s",
              json ? json : err.msg);
        free(json);
    }
    slex_lora_free(back);
done:
    slex_lora_free(a);
    slex_hubert_free(m);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_lora MODEL_DATA_DIR DUMP_DATA_DIR\n");
        return 2;
    }
    model_data = argv[1];
    dump_data = argv[2];
    snprintf(tmp_dir, sizeof tmp_dir, "%s/slex_test_lora_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 2;
    }
    test_fields();
    test_merge("post_ln", "post_ln_group", 0, 11);
    test_merge("ctc_rslora", "prefixed", 1, 7);
    test_refusals();
    test_round_trip();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return check_finish("test_lora");
}
