#include "model/lora.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/log.h"
#include "model/safetensors.h"

#define KEY_PREFIX "base_model.model."
#define A_SUFFIX ".lora_A.weight"
#define B_SUFFIX ".lora_B.weight"
#define CTC_PREFIX "hubert."

void slex_lora_config_default(slex_lora_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->r = 8;
    cfg->lora_alpha = 8.0;
    cfg->lora_dropout = 0.0;
    cfg->use_rslora = 0;
}

static float lora_scaling(double alpha, int r, int use_rslora) {
    return (float)(use_rslora ? alpha / sqrt((double)r) : alpha / (double)r);
}

/* ---- module paths ------------------------------------------------------------------------ */

/* The index of the nn.Linear weight of module path `module` among tensors, or -1. */
static int find_linear(const slex_hubert_tensor *tensors, int n, const char *module) {
    size_t len = strlen(module);
    for (int i = 0; i < n; i++)
        if (tensors[i].linear && strncmp(tensors[i].name, module, len) == 0 &&
            strcmp(tensors[i].name + len, ".weight") == 0)
            return i;
    return -1;
}

/* Resolves a HubertModel module path (with or without "hubert.") to the nn.Linear weight it
 * adapts, through the tensor table of model/params.h: *out x *in, and *W inside params when
 * params is not NULL.  On failure writes the reason to why and returns -1. */
static int resolve_module(const slex_hubert_config *c, slex_hubert_params *params, const char *module, float **W,
                          int *out, int *in, char *why, size_t cap) {
    const char *p = strncmp(module, CTC_PREFIX, strlen(CTC_PREFIX)) == 0 ? module + strlen(CTC_PREFIX) : module;
    int n = slex_hubert_tensors(c, params, NULL);
    slex_hubert_tensor *tensors = malloc((size_t)n * sizeof *tensors);
    if (!tensors) {
        snprintf(why, cap, "out of memory resolving '%s'", module);
        return -1;
    }
    slex_hubert_tensors(c, params, tensors);
    int found = find_linear(tensors, n, p);
    if (found >= 0) {
        *out = (int)tensors[found].shape[0];
        *in = (int)tensors[found].shape[1];
        if (params) *W = tensors[found].data;
        free(tensors);
        return 0;
    }
    /* A module of a layer beyond the model: the same module of layer 0 exists. */
    const char *layers = "encoder.layers.";
    char *end = NULL;
    long layer = -1;
    if (strncmp(p, layers, strlen(layers)) == 0 && p[strlen(layers)] >= '0' && p[strlen(layers)] <= '9')
        layer = strtol(p + strlen(layers), &end, 10);
    char in_layer0[SLEX_LORA_MODULE_MAX + 32];
    if (layer >= c->num_hidden_layers && *end == '.' &&
        snprintf(in_layer0, sizeof in_layer0, "%s0%s", layers, end) < (int)sizeof in_layer0 &&
        find_linear(tensors, n, in_layer0) >= 0)
        snprintf(why, cap, "module '%s' is in layer %ld but the model has %d transformer layers (0..%d)", module, layer,
                 c->num_hidden_layers, c->num_hidden_layers - 1);
    else
        snprintf(why, cap, "unknown module path '%s' (slex adapts feature_projection.projection and "
                           "encoder.layers.N.{attention.{q,k,v,out}_proj,feed_forward.{intermediate,output}_dense})",
                 module);
    free(tensors);
    return -1;
}

/* ---- construction ------------------------------------------------------------------------ */

/* Allocates the struct and one block for all A and B, given each target's r/in/out. */
static int alloc_params(slex_lora *lora, slex_error *err, const char *what) {
    int64_t n = 0;
    for (int i = 0; i < lora->n_targets; i++) {
        const slex_lora_target *t = &lora->targets[i];
        n += (int64_t)t->r * t->in + (int64_t)t->out * t->r;
    }
    lora->params = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    if (!lora->params)
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory for %lld LoRA parameters", what, (long long)n);
    lora->num_params = n;
    float *p = lora->params;
    for (int i = 0; i < lora->n_targets; i++) {
        lora->targets[i].A = p;
        p += (int64_t)lora->targets[i].r * lora->targets[i].in;
    }
    for (int i = 0; i < lora->n_targets; i++) {
        lora->targets[i].B = p;
        p += (int64_t)lora->targets[i].out * lora->targets[i].r;
    }
    return 0;
}

void slex_lora_free(slex_lora *lora) {
    if (!lora) return;
    free(lora->targets);
    free(lora->params);
    free(lora);
}

slex_lora *slex_lora_create(const slex_lora_config *cfg, const char *const *modules, int n_modules,
                            const slex_hubert *model, slex_error *err) {
    if (cfg->r <= 0) return slex_fail_as(err, SLEX_ERR_INPUT, "LoRA rank r must be positive, not %d", cfg->r), NULL;
    slex_lora *lora = calloc(1, sizeof *lora);
    if (lora) lora->targets = calloc((size_t)(n_modules > 0 ? n_modules : 1), sizeof *lora->targets);
    if (!lora || !lora->targets) {
        slex_lora_free(lora);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %d LoRA targets", n_modules), NULL;
    }
    lora->cfg = *cfg;
    const slex_hubert_config *c = slex_hubert_get_config(model);
    for (int i = 0; i < n_modules; i++) {
        slex_lora_target *t = &lora->targets[i];
        char why[512];
        if (strlen(modules[i]) >= sizeof t->module) {
            slex_fail_as(err, SLEX_ERR_INPUT, "LoRA module path too long: '%s'", modules[i]);
            goto fail;
        }
        if (resolve_module(c, NULL, modules[i], NULL, &t->out, &t->in, why, sizeof why)) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s", why);
            goto fail;
        }
        snprintf(t->module, sizeof t->module, "%s", modules[i]);
        t->r = cfg->r;
        t->alpha = cfg->lora_alpha;
        t->scaling = lora_scaling(t->alpha, t->r, cfg->use_rslora);
        lora->n_targets++;
    }
    if (alloc_params(lora, err, "slex_lora_create")) goto fail;
    if (slex_lora_check(lora, model, err)) goto fail;
    return lora;
fail:
    slex_lora_free(lora);
    return NULL;
}

/* ---- adapter_config.json ----------------------------------------------------------------- */

/* How PEFT resolves a module's rank_pattern / alpha_pattern entry; it changed twice
 * (src/peft/tuners/lora/model.py LoraModel._create_and_replace, src/peft/utils/other.py
 * get_pattern_key):
 *   PEFT_0_13  (<= 0.13)  ONE key for both, the first of rank_pattern's keys then alpha_pattern's
 *                         with re.match(rf".*\.{K}$", module) (else the module path itself); then
 *                         r = rank_pattern.get(key, r), alpha = alpha_pattern.get(key, lora_alpha)
 *   PEFT_0_14  (0.14)     each dict on its own, the same expression (peft #2195)
 *   PEFT_0_15  (>= 0.15)  each dict on its own, re.match(rf"(.*\.)?({K})$", module) (peft #2419)
 * The ".*\." of the older rules needs a dot before K, so a key that is a module's whole path
 * matches it only through the fallback: the exact dict lookup of the path. */
typedef enum { PEFT_0_13, PEFT_0_14, PEFT_0_15 } peft_rule;

/* Whether key K matches module under rule (Python's re.match: anchored at the start only,
 * hence the outer group).  -1 when K is not an expression POSIX can compile. */
static int key_matches(const char *key, const char *module, peft_rule rule) {
    size_t len = strlen(key) + 32;
    char *expr = malloc(len);
    if (!expr) return -1;
    snprintf(expr, len, rule == PEFT_0_15 ? "^((.*\\.)?(%s)$)" : "^(.*\\.%s$)", key);
    regex_t re;
    int rc = regcomp(&re, expr, REG_EXTENDED | REG_NOSUB);
    free(expr);
    if (rc) return -1;
    int match = regexec(&re, module, 0, NULL, 0) == 0;
    regfree(&re);
    return match;
}

/* The first key of patterns (in file order) that matches module under rule, else NULL; -1 on a
 * key that is not an expression slex can match. */
static int first_match(const cJSON *patterns, const char *module, peft_rule rule, const char **key, const char *path,
                       const char *field, slex_error *err) {
    const cJSON *item;
    cJSON_ArrayForEach(item, patterns) {
        int m = key_matches(item->string, module, rule);
        if (m < 0)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: %s key '%s' is not a regular expression slex can match", path,
                                field, item->string);
        if (m) {
            *key = item->string;
            return 0;
        }
    }
    return 0;
}

/* patterns.get(key, *value): a present key must hold a number. */
static int pattern_get(const cJSON *patterns, const char *key, double *value, const char *path, const char *field,
                       slex_error *err) {
    const cJSON *item = patterns ? cJSON_GetObjectItemCaseSensitive(patterns, key) : NULL;
    if (!item) return 0;
    if (!cJSON_IsNumber(item))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: %s['%s'] is not a number", path, field, key);
    *value = item->valuedouble;
    return 0;
}

/* Everything in adapter_config.json that changes what the adapter computes: slex either
 * implements it or refuses the file. */
typedef struct parsed_config {
    cJSON *json;
    const cJSON *rank_pattern, *alpha_pattern; /* objects, or NULL */
    int peft_version_known;                    /* "peft_version" (written since peft 0.18) is given */
} parsed_config;

/* *r and *alpha (the config's defaults on entry) for module, as PEFT version `rule` resolves
 * them. */
static int resolve_patterns(const parsed_config *pc, const char *module, peft_rule rule, double *r, double *alpha,
                            const char *path, slex_error *err) {
    const char *rank_key = NULL, *alpha_key = NULL;
    if (first_match(pc->rank_pattern, module, rule, &rank_key, path, "rank_pattern", err)) return -1;
    if (rule == PEFT_0_13) {
        if (!rank_key && first_match(pc->alpha_pattern, module, rule, &rank_key, path, "alpha_pattern", err))
            return -1;
        alpha_key = rank_key;
    } else if (first_match(pc->alpha_pattern, module, rule, &alpha_key, path, "alpha_pattern", err)) {
        return -1;
    }
    return pattern_get(pc->rank_pattern, rank_key ? rank_key : module, r, path, "rank_pattern", err) ||
           pattern_get(pc->alpha_pattern, alpha_key ? alpha_key : module, alpha, path, "alpha_pattern", err);
}

static int is_true(const cJSON *json, const char *key) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, key)); }

static int parse_config(const char *path, slex_lora_config *cfg, parsed_config *pc, slex_error *err) {
    char *text = slex_read_text_file(path, NULL, err);
    if (!text) return -1;
    cJSON *json = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: not a JSON object", path);
    }
    pc->json = json;
    slex_lora_config_default(cfg);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, "peft_type");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "LORA") != 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: peft_type is %s%s%s, not \"LORA\"", path,
                            cJSON_IsString(v) ? "\"" : "", cJSON_IsString(v) ? v->valuestring : "missing",
                            cJSON_IsString(v) ? "\"" : "");
    v = cJSON_GetObjectItemCaseSensitive(json, "r");
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble || v->valueint <= 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: \"r\" must be a positive integer", path);
    cfg->r = v->valueint;
    v = cJSON_GetObjectItemCaseSensitive(json, "lora_alpha");
    if (!cJSON_IsNumber(v)) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: \"lora_alpha\" must be a number", path);
    cfg->lora_alpha = v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(json, "lora_dropout");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v)) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: \"lora_dropout\" must be a number", path);
        cfg->lora_dropout = v->valuedouble;
    }
    v = cJSON_GetObjectItemCaseSensitive(json, "bias");
    if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "none") == 0))
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: bias is %s: only \"none\" is supported (the adapter would carry trained biases)", path,
                            cJSON_IsString(v) ? v->valuestring : "not a string");
    cfg->use_rslora = is_true(json, "use_rslora");
    static const char *refused[][2] = {
        {"use_dora", "DoRA adapters"},      {"lora_bias", "LoRA biases (lora_bias)"},
        {"use_alora", "activated LoRA"},    {"use_qalora", "QALoRA adapters"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (is_true(json, refused[i][0]))
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: %s are not supported (%s is true)", path, refused[i][1],
                                refused[i][0]);
    static const char *must_be_empty[] = {"modules_to_save", "target_parameters", "trainable_token_indices"};
    for (size_t i = 0; i < sizeof must_be_empty / sizeof must_be_empty[0]; i++) {
        v = cJSON_GetObjectItemCaseSensitive(json, must_be_empty[i]);
        if (v && !cJSON_IsNull(v) && !((cJSON_IsArray(v) || cJSON_IsObject(v)) && cJSON_GetArraySize(v) == 0))
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: %s is not supported (it adds weights other than LoRA A/B)",
                                path, must_be_empty[i]);
    }
    v = cJSON_GetObjectItemCaseSensitive(json, "init_lora_weights");
    if (cJSON_IsString(v)) {
        static const char *changes_base[] = {"pissa", "olora", "corda", "loftq", "lora_ga"};
        for (size_t i = 0; i < sizeof changes_base / sizeof changes_base[0]; i++)
            if (strncmp(v->valuestring, changes_base[i], strlen(changes_base[i])) == 0)
                return slex_fail_as(err, SLEX_ERR_INPUT,
                                    "%s: init_lora_weights \"%s\" changes the base weights: convert the adapter "
                                    "to plain LoRA first (PEFT's path_initial_model_for_weight_conversion)",
                                    path, v->valuestring);
    }
    if (is_true(json, "fan_in_fan_out"))
        slex_warn("%s: fan_in_fan_out is true but every target is an nn.Linear: ignored, as PEFT does", path);
    static const char *pattern_keys[2] = {"rank_pattern", "alpha_pattern"};
    const cJSON **patterns[2] = {&pc->rank_pattern, &pc->alpha_pattern};
    for (int k = 0; k < 2; k++) {
        v = cJSON_GetObjectItemCaseSensitive(json, pattern_keys[k]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsObject(v))
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: %s must be an object", path, pattern_keys[k]);
        *patterns[k] = cJSON_IsObject(v) ? v : NULL;
    }
    pc->peft_version_known = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(json, "peft_version"));
    v = cJSON_GetObjectItemCaseSensitive(json, "base_model_name_or_path");
    if (cJSON_IsString(v))
        snprintf(cfg->base_model_name_or_path, sizeof cfg->base_model_name_or_path, "%s", v->valuestring);
    return 0;
}

/* ---- reading ----------------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The module path of a "base_model.model.<module><suffix>" tensor name into out. */
static void module_of(const char *name, const char *suffix, char *out, size_t cap) {
    size_t len = strlen(name) - strlen(KEY_PREFIX) - strlen(suffix);
    if (len >= cap) len = cap - 1;
    memcpy(out, name + strlen(KEY_PREFIX), len);
    out[len] = 0;
}

/* Fills the targets from the tensor names and shapes (no data yet). */
static int collect_targets(slex_lora *lora, slex_safetensors *st, const parsed_config *pc, const char *config_path,
                           slex_error *err) {
    const char *path = lora->weights_path;
    int n = slex_safetensors_count(st), warned_versions = 0;
    for (int i = 0; i < n; i++) {
        const slex_st_tensor_info *t = slex_safetensors_tensor(st, i);
        int is_a = ends_with(t->name, A_SUFFIX), is_b = ends_with(t->name, B_SUFFIX);
        if (strncmp(t->name, KEY_PREFIX, strlen(KEY_PREFIX)) != 0 || !(is_a || is_b) ||
            strlen(t->name) <= strlen(KEY_PREFIX) + strlen(A_SUFFIX))
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "%s: tensor '%s' is not a LoRA weight (base_model.model.<module>.lora_A.weight or "
                                ".lora_B.weight)",
                                path, t->name);
        if (t->ndim != 2)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s' has %d dimensions, not 2", path, t->name,
                                t->ndim);
        if (!is_a) continue;
        slex_lora_target *x = &lora->targets[lora->n_targets];
        if (strlen(t->name) - strlen(KEY_PREFIX) - strlen(A_SUFFIX) >= sizeof x->module)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor name '%s' is too long", path, t->name);
        module_of(t->name, A_SUFFIX, x->module, sizeof x->module);
        char b_name[sizeof x->module + 64];
        snprintf(b_name, sizeof b_name, KEY_PREFIX "%s" B_SUFFIX, x->module);
        const slex_st_tensor_info *b = slex_safetensors_find(st, b_name);
        if (!b) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s' has no matching '%s'", path, t->name, b_name);
        if (b->ndim != 2)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s' has %d dimensions, not 2", path, b_name, b->ndim);
        x->r = (int)t->shape[0];
        x->in = (int)t->shape[1];
        x->out = (int)b->shape[0];
        if (b->shape[1] != t->shape[0])
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "%s: '%s' is (%lld, %lld) but '%s' is (%lld, %lld): the ranks differ", path, t->name,
                                (long long)t->shape[0], (long long)t->shape[1], b_name, (long long)b->shape[0],
                                (long long)b->shape[1]);
        double r = lora->cfg.r, alpha = lora->cfg.lora_alpha;
        if (resolve_patterns(pc, x->module, PEFT_0_15, &r, &alpha, config_path, err)) return -1;
        if (!warned_versions && (pc->rank_pattern || pc->alpha_pattern) && !pc->peft_version_known) {
            for (peft_rule rule = PEFT_0_13; rule < PEFT_0_15 && !warned_versions; rule++) {
                double r_old = lora->cfg.r, alpha_old = lora->cfg.lora_alpha;
                slex_error ignored;
                if (!resolve_patterns(pc, x->module, rule, &r_old, &alpha_old, config_path, &ignored) &&
                    (r_old != r || alpha_old != alpha)) {
                    slex_warn("%s: peft %s resolves rank_pattern/alpha_pattern for module '%s' to r %g alpha %g, "
                              "peft >= 0.15 (and slex) to r %g alpha %g: if an older peft trained this adapter, "
                              "rewrite its pattern keys",
                              config_path, rule == PEFT_0_13 ? "<= 0.13" : "0.14", x->module, r_old, alpha_old, r,
                              alpha);
                    warned_versions = 1;
                }
            }
        }
        if (x->r != r || x->r <= 0)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: '%s' has rank %d but %s gives r = %g for module '%s'", path,
                                t->name, x->r, config_path, r, x->module);
        x->alpha = alpha;
        x->scaling = lora_scaling(alpha, x->r, lora->cfg.use_rslora);
        lora->n_targets++;
    }
    /* Every B must have had its A. */
    for (int i = 0; i < n; i++) {
        const slex_st_tensor_info *t = slex_safetensors_tensor(st, i);
        if (!ends_with(t->name, B_SUFFIX)) continue;
        char a_name[SLEX_LORA_MODULE_MAX + 64], module[SLEX_LORA_MODULE_MAX];
        module_of(t->name, B_SUFFIX, module, sizeof module);
        snprintf(a_name, sizeof a_name, KEY_PREFIX "%s" A_SUFFIX, module);
        if (!slex_safetensors_find(st, a_name))
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s' has no matching '%s'", path, t->name, a_name);
    }
    if (lora->n_targets == 0) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no LoRA tensors", path);
    return 0;
}

slex_lora *slex_lora_open(const char *dir, slex_error *err) {
    char config_path[4096];
    snprintf(config_path, sizeof config_path, "%s/adapter_config.json", dir);
    slex_lora *lora = calloc(1, sizeof *lora);
    if (!lora) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", dir), NULL;
    snprintf(lora->weights_path, sizeof lora->weights_path, "%s/adapter_model.safetensors", dir);
    parsed_config pc = {0};
    slex_safetensors *st = NULL;
    if (parse_config(config_path, &lora->cfg, &pc, err)) goto fail;
    if (!(st = slex_safetensors_open(lora->weights_path, err))) goto fail;
    lora->targets = calloc((size_t)slex_safetensors_count(st) + 1, sizeof *lora->targets);
    if (!lora->targets) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", lora->weights_path);
        goto fail;
    }
    if (collect_targets(lora, st, &pc, config_path, err)) goto fail;
    if (alloc_params(lora, err, lora->weights_path)) goto fail;
    for (int i = 0; i < lora->n_targets; i++) {
        slex_lora_target *t = &lora->targets[i];
        char name[SLEX_LORA_MODULE_MAX + 64];
        snprintf(name, sizeof name, KEY_PREFIX "%s" A_SUFFIX, t->module);
        if (slex_safetensors_read_weights(st, name, t->A, err)) goto fail;
        snprintf(name, sizeof name, KEY_PREFIX "%s" B_SUFFIX, t->module);
        if (slex_safetensors_read_weights(st, name, t->B, err)) goto fail;
    }
    slex_safetensors_close(st);
    cJSON_Delete(pc.json);
    return lora;
fail:
    slex_safetensors_close(st);
    cJSON_Delete(pc.json);
    slex_lora_free(lora);
    return NULL;
}

/* ---- against a model --------------------------------------------------------------------- */

static const char *source_of(const slex_lora *lora) { return lora->weights_path[0] ? lora->weights_path : "LoRA adapter"; }

int slex_lora_check(const slex_lora *lora, const slex_hubert *model, slex_error *err) {
    const slex_hubert_config *c = slex_hubert_get_config(model);
    /* Resolving against the parameter block only computes addresses; nothing is written. */
    slex_hubert_params *params = slex_hubert_get_params((slex_hubert *)model);
    float **weights = calloc((size_t)lora->n_targets + 1, sizeof *weights);
    if (!weights) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", source_of(lora));
    int rc = 0;
    for (int i = 0; i < lora->n_targets && rc == 0; i++) {
        const slex_lora_target *t = &lora->targets[i];
        char why[512];
        int out, in;
        if (resolve_module(c, params, t->module, &weights[i], &out, &in, why, sizeof why)) {
            rc = slex_fail_as(err, SLEX_ERR_INPUT,
                              "%s: tensor '" KEY_PREFIX "%s" A_SUFFIX "': %s: the adapter is not for this model",
                              source_of(lora), t->module, why);
        } else if (t->in != in) {
            rc = slex_fail_as(err, SLEX_ERR_INPUT,
                              "%s: tensor '" KEY_PREFIX "%s" A_SUFFIX "' is (%d, %d) but the model's %s takes %d "
                              "inputs: the adapter is for a different base model",
                              source_of(lora), t->module, t->r, t->in, t->module, in);
        } else if (t->out != out) {
            rc = slex_fail_as(err, SLEX_ERR_INPUT,
                              "%s: tensor '" KEY_PREFIX "%s" B_SUFFIX "' is (%d, %d) but the model's %s has %d "
                              "outputs: the adapter is for a different base model",
                              source_of(lora), t->module, t->out, t->r, t->module, out);
        }
        for (int j = 0; j < i && rc == 0; j++)
            if (weights[j] == weights[i])
                rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: modules '%s' and '%s' adapt the same weight",
                                  source_of(lora), lora->targets[j].module, t->module);
    }
    free(weights);
    return rc;
}

int slex_lora_merge(const slex_lora *lora, slex_hubert *model, slex_error *err) {
    if (slex_lora_check(lora, model, err)) return -1;
    const slex_hubert_config *c = slex_hubert_get_config(model);
    slex_hubert_params *params = slex_hubert_get_params(model);
    for (int i = 0; i < lora->n_targets; i++) {
        const slex_lora_target *t = &lora->targets[i];
        float *W = NULL;
        int out, in;
        char why[512];
        resolve_module(c, params, t->module, &W, &out, &in, why, sizeof why);
        /* W (out, in) += scaling * B (out, r) @ A (r, in) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, t->r, t->scaling, t->B, t->r, t->A, in, 1.0f,
                    W, in);
    }
    return 0;
}

int slex_lora_sites(const slex_lora *lora, const slex_hubert *model, float *grads, slex_hubert_lora_site *sites,
                    slex_error *err) {
    if (slex_lora_check(lora, model, err)) return -1;
    const slex_hubert_config *c = slex_hubert_get_config(model);
    memset(sites, 0, (size_t)c->num_hidden_layers * SLEX_HUBERT_LINEARS * sizeof *sites);
    int n = slex_hubert_tensors(c, NULL, NULL);
    slex_hubert_tensor *tensors = malloc((size_t)n * sizeof *tensors);
    if (!tensors) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", source_of(lora));
    slex_hubert_tensors(c, NULL, tensors);
    int rc = 0;
    for (int i = 0; i < lora->n_targets && rc == 0; i++) {
        const slex_lora_target *t = &lora->targets[i];
        const char *p = strncmp(t->module, CTC_PREFIX, strlen(CTC_PREFIX)) == 0 ? t->module + strlen(CTC_PREFIX)
                                                                                 : t->module;
        int k = find_linear(tensors, n, p); /* found: slex_lora_check passed */
        if (tensors[k].site < 0) {
            rc = slex_fail_as(err, SLEX_ERR_INPUT,
                              "%s: module '%s' cannot be trained: slex trains adapters of the transformer layers",
                              source_of(lora), t->module);
            break;
        }
        slex_hubert_lora_site *s = &sites[(int64_t)tensors[k].layer * SLEX_HUBERT_LINEARS + tensors[k].site];
        *s = (slex_hubert_lora_site){
            .A = t->A,
            .B = t->B,
            .dA = grads ? grads + (t->A - lora->params) : NULL,
            .dB = grads ? grads + (t->B - lora->params) : NULL,
            .scale = t->scaling,
            .r = t->r,
        };
    }
    free(tensors);
    return rc;
}

/* ---- writing ----------------------------------------------------------------------------- */

/* rank_pattern / alpha_pattern keys are the module paths themselves, unescaped: every PEFT
 * version resolves them to exactly that module (see peft_rule).  PEFT <= 0.14 finds them by its
 * exact-path fallback (under a "hubert." prefix, by its expression); PEFT >= 0.15 by its
 * expression, where each "." matches any character, which within HuBERT's module paths (all
 * "encoder.layers.<n>.<name>" or "feature_projection.projection", optionally under "hubert.")
 * still means only that path.  An escaped key (encoder\.layers...) matches nothing before
 * PEFT 0.15, which then silently uses the default r and lora_alpha.  tests/test_lora_patterns.py
 * checks the keys under all three rules. */
static char *config_json(const slex_lora *lora) {
    const slex_lora_config *c = &lora->cfg;
    cJSON *j = cJSON_CreateObject();
    cJSON *rank = cJSON_CreateObject(), *alpha = cJSON_CreateObject(), *targets = cJSON_CreateArray();
    int ok = j && rank && alpha && targets;
    for (int i = 0; ok && i < lora->n_targets; i++) {
        const slex_lora_target *t = &lora->targets[i];
        cJSON_AddItemToArray(targets, cJSON_CreateString(t->module));
        if (t->r == c->r && t->alpha == c->lora_alpha) continue;
        if (t->r != c->r) cJSON_AddNumberToObject(rank, t->module, t->r);
        if (t->alpha != c->lora_alpha) cJSON_AddNumberToObject(alpha, t->module, t->alpha);
    }
    char *text = NULL;
    if (ok) {
        cJSON_AddStringToObject(j, "peft_type", "LORA");
        cJSON_AddNullToObject(j, "task_type");
        if (c->base_model_name_or_path[0]) cJSON_AddStringToObject(j, "base_model_name_or_path", c->base_model_name_or_path);
        else cJSON_AddNullToObject(j, "base_model_name_or_path");
        cJSON_AddNumberToObject(j, "r", c->r);
        cJSON_AddNumberToObject(j, "lora_alpha", c->lora_alpha);
        cJSON_AddNumberToObject(j, "lora_dropout", c->lora_dropout);
        cJSON_AddItemToObject(j, "target_modules", targets);
        targets = NULL;
        cJSON_AddStringToObject(j, "bias", "none");
        cJSON_AddBoolToObject(j, "use_rslora", c->use_rslora);
        cJSON_AddBoolToObject(j, "use_dora", 0);
        cJSON_AddBoolToObject(j, "fan_in_fan_out", 0);
        cJSON_AddBoolToObject(j, "init_lora_weights", 1);
        cJSON_AddBoolToObject(j, "inference_mode", 1);
        cJSON_AddNullToObject(j, "modules_to_save");
        cJSON_AddNullToObject(j, "layers_to_transform");
        cJSON_AddNullToObject(j, "layers_pattern");
        cJSON_AddItemToObject(j, "rank_pattern", rank);
        cJSON_AddItemToObject(j, "alpha_pattern", alpha);
        rank = alpha = NULL;
        text = cJSON_Print(j);
    }
    cJSON_Delete(rank);
    cJSON_Delete(alpha);
    cJSON_Delete(targets);
    cJSON_Delete(j);
    return text;
}

int slex_lora_save(const slex_lora *lora, const char *dir, slex_error *err) {
    if (slex_mkdirs(dir, err)) return -1;
    slex_st_write_tensor *tensors = calloc((size_t)lora->n_targets * 2 + 1, sizeof *tensors);
    char (*names)[SLEX_LORA_MODULE_MAX + 64] = calloc((size_t)lora->n_targets * 2 + 1, sizeof *names);
    char *json = config_json(lora);
    int rc = -1;
    if (!tensors || !names || !json) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", dir);
        goto done;
    }
    for (int i = 0; i < lora->n_targets; i++) {
        const slex_lora_target *t = &lora->targets[i];
        snprintf(names[2 * i], sizeof names[0], KEY_PREFIX "%s" A_SUFFIX, t->module);
        snprintf(names[2 * i + 1], sizeof names[0], KEY_PREFIX "%s" B_SUFFIX, t->module);
        tensors[2 * i] = (slex_st_write_tensor){.name = names[2 * i], .ndim = 2, .shape = {t->r, t->in}, .data = t->A};
        tensors[2 * i + 1] =
            (slex_st_write_tensor){.name = names[2 * i + 1], .ndim = 2, .shape = {t->out, t->r}, .data = t->B};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    slex_st_metadata meta = {.key = "format", .value = "pt"};
    if (slex_safetensors_write(path, tensors, 2 * lora->n_targets, &meta, 1, err)) goto done;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if (slex_write_file_atomic(path, json, strlen(json), err)) goto done;
    rc = 0;
done:
    free(json);
    free(names);
    free(tensors);
    return rc;
}
