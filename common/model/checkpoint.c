#include "model/checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "model/safetensors.h"
#include "model/weights.h"

#define MANIFEST_NAME "slex_checkpoint.json"
#define HEAD_NAME "head.safetensors"
#define ADAPTER_DIR "adapter"
#define PATH_CAP 4096


static int join_path(char *out, const char *dir, const char *name, slex_error *err) {
    if (snprintf(out, PATH_CAP, "%s/%s", dir, name) >= PATH_CAP)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s/%s: path too long", dir, name);
    return 0;
}

/* Shortest decimal text that reads back as the same float (or double): keeps config.json and
 * metadata free of binary noise such as 9.99999975e-06 for 1e-5f. */
static void format_float(char *buf, size_t cap, float x) {
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) return;
    }
}

static void format_double(char *buf, size_t cap, double x) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) return;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Pretraining head */

void slex_head_config_default(slex_head_config *cfg) {
    cfg->hidden_size = 0;
    cfg->final_dim = 256;
    cfg->num_classes = 0;
    cfg->label_rate = 50.0;
    cfg->logit_temp = 0.1;
    cfg->label_set[0] = '\0';
}

/* "" or 8-hex-digit CRCs joined by '+'. */
static int label_set_valid(const char *v) {
    size_t n = strlen(v);
    if (n == 0) return 1;
    if (n >= SLEX_HEAD_LABEL_SET_CAP || n % 9 != 8) return 0;
    for (size_t i = 0; i < n; i++)
        if (i % 9 == 8 ? v[i] != '+' : !strchr("0123456789abcdef", v[i])) return 0;
    return 1;
}

static int head_config_validate(const slex_head_config *cfg, const char *source, slex_error *err) {
    if (cfg->hidden_size <= 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: hidden_size %d must be positive", source, cfg->hidden_size);
    if (cfg->final_dim <= 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: final_dim %d must be positive", source, cfg->final_dim);
    if (cfg->num_classes <= 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: num_classes %d must be positive", source, cfg->num_classes);
    if (!(cfg->label_rate > 0.0) || !isfinite(cfg->label_rate))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: label_rate %g must be positive", source, cfg->label_rate);
    if (!(cfg->logit_temp > 0.0) || !isfinite(cfg->logit_temp))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: logit_temp %g must be positive", source, cfg->logit_temp);
    if (!label_set_valid(cfg->label_set))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: label_set \"%.100s\" is not codebook CRC-32s (8 hex digits) joined by '+'",
                            source, cfg->label_set);
    return 0;
}

slex_head *slex_head_create(const slex_head_config *cfg, slex_error *err) {
    if (head_config_validate(cfg, "pretraining head", err)) return NULL;
    int64_t C = cfg->hidden_size, D = cfg->final_dim, K = cfg->num_classes;
    int64_t n = C + D * C + D + K * D;
    slex_head *h = calloc(1, sizeof *h);
    if (h) h->params = calloc((size_t)n, sizeof(float));
    if (!h || !h->params) {
        slex_head_free(h);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "pretraining head: out of memory for %lld parameters",
                            (long long)n),
               NULL;
    }
    h->cfg = *cfg;
    h->num_params = n;
    h->mask_emb = h->params;
    h->final_proj_w = h->mask_emb + C;
    h->final_proj_b = h->final_proj_w + D * C;
    h->label_emb = h->final_proj_b + D;
    return h;
}

void slex_head_free(slex_head *head) {
    if (!head) return;
    free(head->params);
    free(head);
}

/* x[i] ~ U[lo, hi): torch's uniform_ computes from + (to - from) * u. */
static void fill_uniform(float *x, int64_t n, double lo, double hi, slex_rng *rng) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * slex_rng_uniform(rng));
}

void slex_head_init(slex_head *head, uint64_t seed, slex_label_emb_init emb_init) {
    const slex_head_config *c = &head->cfg;
    slex_rng rng;
    slex_rng_seed(&rng, seed);
    /* kaiming_uniform_(a=sqrt(5)): gain sqrt(2/(1+5)), bound gain*sqrt(3/fan_in) = 1/sqrt(fan_in);
     * nn.Linear draws the bias from the same bound. */
    double bound = 1.0 / sqrt((double)c->hidden_size);
    fill_uniform(head->mask_emb, c->hidden_size, 0.0, 1.0, &rng);
    fill_uniform(head->final_proj_w, (int64_t)c->final_dim * c->hidden_size, -bound, bound, &rng);
    fill_uniform(head->final_proj_b, c->final_dim, -bound, bound, &rng);
    int64_t n_emb = (int64_t)c->num_classes * c->final_dim;
    if (emb_init == SLEX_LABEL_EMB_NORMAL)
        for (int64_t i = 0; i < n_emb; i++) head->label_emb[i] = (float)slex_rng_normal(&rng);
    else
        fill_uniform(head->label_emb, n_emb, 0.0, 1.0, &rng);
}

int slex_head_save(const slex_head *head, const char *path, slex_error *err) {
    const slex_head_config *c = &head->cfg;
    char k[32], d[32], h[32], rate[40], temp[40];
    snprintf(k, sizeof k, "%d", c->num_classes);
    snprintf(d, sizeof d, "%d", c->final_dim);
    snprintf(h, sizeof h, "%d", c->hidden_size);
    format_double(rate, sizeof rate, c->label_rate);
    format_double(temp, sizeof temp, c->logit_temp);
    slex_st_metadata meta[] = {{"format", "pt"}, {"num_classes", k},     {"final_dim", d},          {"hidden_size", h},
                               {"label_rate", rate}, {"logit_temp", temp}, {"label_set", c->label_set}};
    slex_st_write_tensor t[] = {
        {.name = "masked_spec_embed", .ndim = 1, .shape = {c->hidden_size}, .data = head->mask_emb},
        {.name = "final_proj.weight", .ndim = 2, .shape = {c->final_dim, c->hidden_size}, .data = head->final_proj_w},
        {.name = "final_proj.bias", .ndim = 1, .shape = {c->final_dim}, .data = head->final_proj_b},
        {.name = "label_embeddings", .ndim = 2, .shape = {c->num_classes, c->final_dim}, .data = head->label_emb},
    };
    return slex_safetensors_write(path, t, 4, meta, c->label_set[0] ? 7 : 6, err);
}

static int meta_int(slex_safetensors *st, const char *key, int *out, slex_error *err) {
    const char *path = slex_safetensors_path(st), *v = slex_safetensors_metadata(st, key);
    if (!v)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: __metadata__ has no \"%s\" (not a slex pretraining head)", path,
                            key);
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x <= 0 || x > 1000000000)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: __metadata__ \"%s\" = \"%s\" is not a positive integer", path,
                            key, v);
    *out = (int)x;
    return 0;
}

static int meta_double(slex_safetensors *st, const char *key, double *out, slex_error *err) {
    const char *path = slex_safetensors_path(st), *v = slex_safetensors_metadata(st, key);
    if (!v)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: __metadata__ has no \"%s\" (not a slex pretraining head)", path,
                            key);
    char *end;
    *out = strtod(v, &end);
    if (end == v || *end)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: __metadata__ \"%s\" = \"%s\" is not a number", path, key, v);
    return 0;
}

/* The tensor `name` exists with exactly the given shape. */
static int check_shape(slex_safetensors *st, const char *name, int ndim, int64_t d0, int64_t d1, const char *why,
                       slex_error *err) {
    const char *path = slex_safetensors_path(st);
    const slex_st_tensor_info *t = slex_safetensors_find(st, name);
    if (!t) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: missing tensor '%s'", path, name);
    int64_t want[2] = {d0, d1};
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == want[i];
    if (!same) {
        char got[96] = "";
        for (int i = 0; i < t->ndim; i++) {
            size_t len = strlen(got);
            snprintf(got + len, sizeof got - len, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        }
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s' has shape [%s] but %s", path, name, got, why);
    }
    return 0;
}

slex_head *slex_head_load(const char *path, slex_error *err) {
    slex_safetensors *st = slex_safetensors_open(path, err);
    if (!st) return NULL;
    slex_head *head = NULL;
    slex_head_config cfg;
    slex_head_config_default(&cfg);
    if (meta_int(st, "num_classes", &cfg.num_classes, err) || meta_int(st, "final_dim", &cfg.final_dim, err) ||
        meta_int(st, "hidden_size", &cfg.hidden_size, err) || meta_double(st, "label_rate", &cfg.label_rate, err) ||
        meta_double(st, "logit_temp", &cfg.logit_temp, err))
        goto fail;
    const char *set = slex_safetensors_metadata(st, "label_set");
    if (set && strlen(set) >= sizeof cfg.label_set) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: __metadata__ \"label_set\" is longer than %d characters", path,
                     SLEX_HEAD_LABEL_SET_CAP - 1);
        goto fail;
    }
    snprintf(cfg.label_set, sizeof cfg.label_set, "%s", set ? set : "");
    if (head_config_validate(&cfg, path, err)) goto fail;
    char why[160];
    int64_t C = cfg.hidden_size, D = cfg.final_dim, K = cfg.num_classes;
    snprintf(why, sizeof why, "__metadata__ says hidden_size %lld", (long long)C);
    if (check_shape(st, "masked_spec_embed", 1, C, 0, why, err)) goto fail;
    snprintf(why, sizeof why, "__metadata__ says final_dim %lld, hidden_size %lld", (long long)D, (long long)C);
    if (check_shape(st, "final_proj.weight", 2, D, C, why, err)) goto fail;
    if (check_shape(st, "final_proj.bias", 1, D, 0, why, err)) goto fail;
    snprintf(why, sizeof why, "__metadata__ says num_classes %lld, final_dim %lld", (long long)K, (long long)D);
    if (check_shape(st, "label_embeddings", 2, K, D, why, err)) goto fail;
    if (slex_safetensors_count(st) != 4) {
        slex_fail_as(err, SLEX_ERR_INPUT,
                     "%s: %d tensors; a pretraining head has exactly masked_spec_embed, final_proj.weight, "
                     "final_proj.bias and label_embeddings",
                     path, slex_safetensors_count(st));
        goto fail;
    }
    head = slex_head_create(&cfg, err);
    if (!head || slex_safetensors_read_weights(st, "masked_spec_embed", head->mask_emb, err) ||
        slex_safetensors_read_weights(st, "final_proj.weight", head->final_proj_w, err) ||
        slex_safetensors_read_weights(st, "final_proj.bias", head->final_proj_b, err) ||
        slex_safetensors_read_weights(st, "label_embeddings", head->label_emb, err))
        goto fail;
    slex_safetensors_close(st);
    return head;
fail:
    slex_head_free(head);
    slex_safetensors_close(st);
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Base weights (model/weights.h) */

int slex_checkpoint_save_weights(const slex_hubert *model, const float *mask_emb, const char *path, slex_error *err) {
    return slex_hubert_write_weights(path, slex_hubert_get_config(model), slex_hubert_get_params_const(model), mask_emb,
                                     err);
}

/* ---------------------------------------------------------------------------------------- */
/* config.json and preprocessor_config.json */

static int same_config(const slex_hubert_config *a, const slex_hubert_config *b) {
    if (a->num_conv != b->num_conv) return 0;
    for (int i = 0; i < a->num_conv; i++)
        if (a->conv_dim[i] != b->conv_dim[i] || a->conv_kernel[i] != b->conv_kernel[i] ||
            a->conv_stride[i] != b->conv_stride[i])
            return 0;
    return a->conv_bias == b->conv_bias && a->feat_extract_norm == b->feat_extract_norm &&
           a->do_stable_layer_norm == b->do_stable_layer_norm && a->feat_proj_layer_norm == b->feat_proj_layer_norm &&
           a->hidden_size == b->hidden_size && a->num_hidden_layers == b->num_hidden_layers &&
           a->num_attention_heads == b->num_attention_heads && a->intermediate_size == b->intermediate_size &&
           a->layer_norm_eps == b->layer_norm_eps && a->num_conv_pos_embeddings == b->num_conv_pos_embeddings &&
           a->num_conv_pos_embedding_groups == b->num_conv_pos_embedding_groups;
}

static char *generate_config(const slex_hubert_config *c) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
    if (arch) cJSON_AddItemToArray(arch, cJSON_CreateString("HubertModel"));
    cJSON_AddStringToObject(root, "model_type", "hubert");
    cJSON_AddItemToObject(root, "conv_dim", cJSON_CreateIntArray(c->conv_dim, c->num_conv));
    cJSON_AddItemToObject(root, "conv_kernel", cJSON_CreateIntArray(c->conv_kernel, c->num_conv));
    cJSON_AddItemToObject(root, "conv_stride", cJSON_CreateIntArray(c->conv_stride, c->num_conv));
    cJSON_AddBoolToObject(root, "conv_bias", c->conv_bias);
    const char *norm = c->feat_extract_norm == SLEX_FEAT_NORM_LAYER ? "layer" : "group";
    cJSON_AddStringToObject(root, "feat_extract_norm", norm);
    cJSON_AddStringToObject(root, "feat_extract_activation", "gelu");
    cJSON_AddBoolToObject(root, "do_stable_layer_norm", c->do_stable_layer_norm);
    cJSON_AddBoolToObject(root, "feat_proj_layer_norm", c->feat_proj_layer_norm);
    cJSON_AddNumberToObject(root, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(root, "num_hidden_layers", c->num_hidden_layers);
    cJSON_AddNumberToObject(root, "num_attention_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(root, "intermediate_size", c->intermediate_size);
    cJSON_AddStringToObject(root, "hidden_act", "gelu");
    char eps[32];
    format_float(eps, sizeof eps, c->layer_norm_eps);
    cJSON_AddNumberToObject(root, "layer_norm_eps", strtod(eps, NULL));
    cJSON_AddNumberToObject(root, "num_conv_pos_embeddings", c->num_conv_pos_embeddings);
    cJSON_AddNumberToObject(root, "num_conv_pos_embedding_groups", c->num_conv_pos_embedding_groups);
    cJSON_AddStringToObject(root, "torch_dtype", "float32");
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

int slex_checkpoint_save_config(const slex_hubert *model, const char *config_source, const char *path,
                                slex_error *err) {
    const slex_hubert_config *c = slex_hubert_get_config(model);
    char *text = NULL;
    if (config_source) {
        text = slex_read_text_file(config_source, NULL, err);
        if (!text) return -1;
        slex_hubert_config source;
        if (slex_hubert_config_parse(text, config_source, &source, err)) {
            free(text);
            return -1;
        }
        if (!same_config(&source, c)) {
            free(text);
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "%s: describes another model than the one being saved (config_source must be the "
                                "config.json the model was loaded from)",
                                config_source);
        }
    } else {
        text = generate_config(c);
        if (!text) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
    }
    int rc = slex_write_file_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

int slex_checkpoint_save_preprocessor_config(const slex_hubert *model, const char *path, slex_error *err) {
    int normalize = slex_hubert_normalizes_waveform(model);
    char text[512];
    int len = snprintf(text, sizeof text,
                       "{\n  \"do_normalize\": %s,\n  \"feature_extractor_type\": \"Wav2Vec2FeatureExtractor\",\n"
                       "  \"feature_size\": 1,\n  \"padding_side\": \"right\",\n  \"padding_value\": 0.0,\n"
                       "  \"return_attention_mask\": %s,\n  \"sampling_rate\": 16000\n}\n",
                       normalize ? "true" : "false", normalize ? "true" : "false");
    return slex_write_file_atomic(path, text, (size_t)len, err);
}

/* ---------------------------------------------------------------------------------------- */
/* Directory handling */

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* rm -r; succeeds when path does not exist. */
static int remove_tree(const char *path, slex_error *err) {
    if (!slex_path_exists(path)) return 0;
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS))
        return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

static int fsync_dir(const char *path, slex_error *err) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open directory for fsync: %s", path,
                            strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc) return slex_fail_as(err, slex_errno_kind(saved), "%s: fsync failed: %s", path, strerror(saved));
    return 0;
}

static void parent_dir(const char *path, char *out) {
    snprintf(out, PATH_CAP, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash)
        snprintf(out, PATH_CAP, ".");
    else if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

/* ---------------------------------------------------------------------------------------- */
/* Manifest */

/* The files a checkpoint with (head, adapter) must list, in manifest order. */
static int expected_files(int has_head, int has_adapter, const char **out) {
    int n = 0;
    out[n++] = "config.json";
    out[n++] = "preprocessor_config.json";
    out[n++] = "model.safetensors";
    if (has_head) out[n++] = HEAD_NAME;
    if (has_adapter) {
        out[n++] = ADAPTER_DIR "/adapter_config.json";
        out[n++] = ADAPTER_DIR "/adapter_model.safetensors";
    }
    return n;
}

static int write_manifest(const char *dir, const slex_head *head, const slex_lora *lora, int64_t step,
                          slex_error *err) {
    const char *files[8];
    int n = expected_files(head != NULL, lora != NULL, files);
    cJSON *root = cJSON_CreateObject();
    if (!root) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", dir);
    cJSON_AddStringToObject(root, "format", SLEX_CHECKPOINT_FORMAT);
    cJSON_AddNumberToObject(root, "format_version", SLEX_CHECKPOINT_FORMAT_VERSION);
    cJSON_AddStringToObject(root, "producer", "slex");
    cJSON_AddStringToObject(root, "producer_version", SLEX_VERSION);
    if (step >= 0) cJSON_AddNumberToObject(root, "step", (double)step);
    cJSON *contents = cJSON_AddObjectToObject(root, "contents");
    cJSON_AddBoolToObject(contents, "base", 1);
    cJSON_AddBoolToObject(contents, "head", head != NULL);
    cJSON_AddBoolToObject(contents, "adapter", lora != NULL);
    if (head) {
        cJSON *h = cJSON_AddObjectToObject(root, "head");
        cJSON_AddNumberToObject(h, "num_classes", head->cfg.num_classes);
        cJSON_AddNumberToObject(h, "final_dim", head->cfg.final_dim);
    }
    cJSON *list = cJSON_AddObjectToObject(root, "files");
    int rc = -1;
    char path[PATH_CAP];
    for (int i = 0; i < n; i++) {
        uint32_t crc;
        int64_t bytes;
        if (join_path(path, dir, files[i], err) || slex_file_crc32(path, &crc, &bytes, err)) goto done;
        char hex[16];
        snprintf(hex, sizeof hex, "%08x", (unsigned)crc);
        cJSON *f = cJSON_AddObjectToObject(list, files[i]);
        cJSON_AddNumberToObject(f, "bytes", (double)bytes);
        cJSON_AddStringToObject(f, "crc32", hex);
    }
    char *text = cJSON_Print(root);
    if (!text) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", dir);
        goto done;
    }
    size_t len = strlen(text);
    char *with_newline = realloc(text, len + 2);
    if (!with_newline) {
        free(text);
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", dir);
        goto done;
    }
    memcpy(with_newline + len, "\n", 2);
    if (join_path(path, dir, MANIFEST_NAME, err) == 0) rc = slex_write_file_atomic(path, with_newline, len + 1, err);
    free(with_newline);
done:
    cJSON_Delete(root);
    return rc;
}

typedef struct {
    int has_head, has_adapter;
    int num_classes;
    int64_t step;
    char producer_version[64];
} manifest_info;

static int manifest_bool(const cJSON *obj, const char *key, int *out, const char *path, slex_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsBool(v))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: \"contents\".\"%s\" must be true or false", path, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* dir is a directory holding a manifest (else: not a checkpoint, or an interrupted save). */
static int check_checkpoint_dir(const char *dir, const char *manifest, slex_error *err) {
    struct stat sb;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: not a directory (a slex checkpoint is a directory)", dir);
    if (!slex_path_exists(manifest))
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: not a complete slex checkpoint: no %s (an interrupted save leaves only "
                            "%s.tmp-<host>-<pid>)",
                            dir, MANIFEST_NAME, dir);
    return 0;
}

/* "format", "format_version", "producer_version" and "step". */
static int parse_identity(const cJSON *root, const char *path, manifest_info *info, slex_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, SLEX_CHECKPOINT_FORMAT) != 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: \"format\" is not \"%s\"", path, SLEX_CHECKPOINT_FORMAT);
    v = cJSON_GetObjectItemCaseSensitive(root, "format_version");
    if (!cJSON_IsNumber(v) || v->valueint < 1 || v->valueint > SLEX_CHECKPOINT_FORMAT_VERSION)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: \"format_version\" must be 1..%d (a newer slex wrote it?)", path,
                            SLEX_CHECKPOINT_FORMAT_VERSION);
    v = cJSON_GetObjectItemCaseSensitive(root, "producer_version");
    snprintf(info->producer_version, sizeof info->producer_version, "%s", cJSON_IsString(v) ? v->valuestring : "");
    v = cJSON_GetObjectItemCaseSensitive(root, "step");
    info->step = -1;
    if (v) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble))
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: \"step\" must be a non-negative integer", path);
        info->step = (int64_t)v->valuedouble;
    }
    return 0;
}

/* "contents" (head, adapter) and the head's "num_classes". */
static int parse_contents(const cJSON *root, const char *path, manifest_info *info, slex_error *err) {
    const cJSON *contents = cJSON_GetObjectItemCaseSensitive(root, "contents");
    if (!cJSON_IsObject(contents)) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no \"contents\" object", path);
    if (manifest_bool(contents, "head", &info->has_head, path, err) ||
        manifest_bool(contents, "adapter", &info->has_adapter, path, err))
        return -1;
    info->num_classes = 0;
    if (info->has_head) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "head");
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(h, "num_classes");
        if (!cJSON_IsNumber(k) || k->valueint <= 0)
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "%s: the checkpoint has a head but no positive \"head\".\"num_classes\"", path);
        info->num_classes = k->valueint;
    }
    return 0;
}

/* One "files" entry: a name inside dir, and the file's size and CRC-32 as recorded. */
static int verify_file(const cJSON *f, const char *dir, const char *path, slex_error *err) {
    const char *rel = f->string;
    if (rel[0] == '/' || strstr(rel, ".."))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: file name '%s' leaves the checkpoint directory", path, rel);
    const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(f, "bytes");
    const cJSON *crc = cJSON_GetObjectItemCaseSensitive(f, "crc32");
    char *end = NULL;
    unsigned long want_crc = cJSON_IsString(crc) ? strtoul(crc->valuestring, &end, 16) : 0;
    if (!cJSON_IsNumber(bytes) || !end || end == crc->valuestring || *end || strlen(crc->valuestring) != 8)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: entry '%s' needs \"bytes\" and an 8-digit hex \"crc32\"", path,
                            rel);
    char file[PATH_CAP];
    if (join_path(file, dir, rel, err)) return -1;
    if (!slex_path_exists(file))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: missing (listed in %s)", file, MANIFEST_NAME);
    uint32_t got_crc;
    int64_t got_bytes;
    if (slex_file_crc32(file, &got_crc, &got_bytes, err)) return -1;
    if (got_bytes != (int64_t)bytes->valuedouble)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: %lld bytes but %s records %lld (truncated or replaced after the save)", file,
                            (long long)got_bytes, MANIFEST_NAME, (long long)bytes->valuedouble);
    if (got_crc != (uint32_t)want_crc)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: CRC-32 %08x but %s records %08lx (the file was changed or corrupted after the "
                            "save)",
                            file, (unsigned)got_crc, MANIFEST_NAME, want_crc);
    return 0;
}

/* "files": lists every file the contents need, and every listed file is as recorded. */
static int verify_files(const cJSON *root, const char *dir, const char *path, const manifest_info *info,
                        slex_error *err) {
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    if (!cJSON_IsObject(files)) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no \"files\" object", path);
    const char *need[8];
    int n_need = expected_files(info->has_head, info->has_adapter, need);
    for (int i = 0; i < n_need; i++)
        if (!cJSON_GetObjectItemCaseSensitive(files, need[i]))
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "%s: \"files\" does not list %s, which this checkpoint's contents need", path, need[i]);
    const cJSON *f;
    cJSON_ArrayForEach(f, files) if (verify_file(f, dir, path, err)) return -1;
    return 0;
}

/* Parses the manifest and checks every listed file's size and CRC-32. */
static int read_manifest(const char *dir, manifest_info *info, slex_error *err) {
    char path[PATH_CAP];
    if (join_path(path, dir, MANIFEST_NAME, err) || check_checkpoint_dir(dir, path, err)) return -1;
    char *text = slex_read_text_file(path, NULL, err);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    int rc = -1;
    if (!cJSON_IsObject(root))
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: not a JSON object", path);
    else if (parse_identity(root, path, info, err) == 0 && parse_contents(root, path, info, err) == 0)
        rc = verify_files(root, dir, path, info, err);
    cJSON_Delete(root);
    return rc;
}

int slex_checkpoint_verify(const char *dir, slex_error *err) {
    manifest_info info;
    return read_manifest(dir, &info, err);
}

/* ---------------------------------------------------------------------------------------- */
/* Whole checkpoints */

void slex_checkpoint_save_options_default(slex_checkpoint_save_options *opts) {
    opts->step = -1;
    opts->config_source = NULL;
    opts->overwrite = 0;
}

void slex_checkpoint_load_options_default(slex_checkpoint_load_options *opts) {
    slex_hubert_load_options_default(&opts->model);
    opts->num_classes = 0;
    opts->require_head = 0;
}

/* Writes every file of the checkpoint into `tmp` (which exists and is empty), fsynced. */
static int write_contents(const char *tmp, const slex_hubert *model, const slex_head *head, const slex_lora *lora,
                          const slex_checkpoint_save_options *opts, slex_error *err) {
    char path[PATH_CAP];
    if (join_path(path, tmp, "config.json", err) || slex_checkpoint_save_config(model, opts->config_source, path, err))
        return -1;
    if (join_path(path, tmp, "preprocessor_config.json", err) ||
        slex_checkpoint_save_preprocessor_config(model, path, err))
        return -1;
    if (join_path(path, tmp, "model.safetensors", err) ||
        slex_checkpoint_save_weights(model, head ? head->mask_emb : NULL, path, err) || slex_fsync_path(path, err))
        return -1;
    if (head && (join_path(path, tmp, HEAD_NAME, err) || slex_head_save(head, path, err) || slex_fsync_path(path, err)))
        return -1;
    if (lora) {
        char adir[PATH_CAP];
        if (join_path(adir, tmp, ADAPTER_DIR, err) || slex_lora_save(lora, adir, err)) return -1;
        if (join_path(path, adir, "adapter_model.safetensors", err) || slex_fsync_path(path, err) ||
            fsync_dir(adir, err))
            return -1;
    }
    if (write_manifest(tmp, head, lora, opts->step, err)) return -1;
    return fsync_dir(tmp, err);
}

int slex_checkpoint_save(const char *dir_arg, const slex_hubert *model, const slex_head *head, const slex_lora *lora,
                         const slex_checkpoint_save_options *opts_arg, slex_error *err) {
    slex_checkpoint_save_options opts;
    if (opts_arg)
        opts = *opts_arg;
    else
        slex_checkpoint_save_options_default(&opts);
    char dir[PATH_CAP], tmp[PATH_CAP + 300], old[PATH_CAP + 300], parent[PATH_CAP], path[PATH_CAP];
    if (snprintf(dir, sizeof dir, "%s", dir_arg) >= (int)sizeof dir - 64)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: path too long", dir_arg);
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') dir[--len] = '\0';
    if (head && head->cfg.hidden_size != slex_hubert_get_config(model)->hidden_size)
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: the head's hidden_size %d differs from the model's %d", dir,
                            head->cfg.hidden_size, slex_hubert_get_config(model)->hidden_size);
    if (lora && slex_lora_check(lora, model, err))
        return slex_fail_wrap(err, "%s: adapter does not fit the model", dir);
    int exists = slex_path_exists(dir);
    if (exists) {
        if (!opts.overwrite)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: exists (set overwrite to replace a checkpoint)", dir);
        if (join_path(path, dir, MANIFEST_NAME, err)) return -1;
        if (!slex_path_exists(path))
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "%s: exists and is not a slex checkpoint (no %s): refusing to replace it", dir,
                                MANIFEST_NAME);
    }
    parent_dir(dir, parent);
    if (slex_mkdirs(parent, err)) return -1;
    /* DIR.tmp-<host>-<pid> and DIR.old-<host>-<pid>: the atomic-write temporaries (core/fileio.h). */
    if (slex_tmp_name(dir, tmp, sizeof tmp, err)) return -1;
    snprintf(old, sizeof old, "%s.old-%s", dir, tmp + strlen(dir) + strlen(".tmp-"));
    /* A leftover of an earlier process that had this host and pid and was killed mid-save. */
    if (remove_tree(tmp, err)) return -1;
    if (mkdir(tmp, 0777))
        return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot create: %s", tmp, strerror(errno));
    if (write_contents(tmp, model, head, lora, &opts, err)) goto fail;
    if (!exists) {
        if (rename(tmp, dir)) {
            slex_fail_as(err, slex_errno_kind(errno), "%s: cannot rename %s into place: %s", dir, tmp, strerror(errno));
            goto fail;
        }
    } else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        /* dir is the new checkpoint; tmp now holds the old one. */
        if (fsync_dir(parent, err)) return -1;
        return remove_tree(tmp, err);
    } else if (errno == EINVAL || errno == ENOSYS) {
        /* No atomic exchange on this file system: dir is briefly absent, never incomplete. */
        if (rename(dir, old)) {
            slex_fail_as(err, slex_errno_kind(errno), "%s: cannot move the old checkpoint aside: %s", dir,
                         strerror(errno));
            goto fail;
        }
        if (rename(tmp, dir)) {
            slex_fail_as(err, slex_errno_kind(errno), "%s: cannot rename %s into place: %s", dir, tmp, strerror(errno));
            if (rename(old, dir) == 0) goto fail;
            return -1;
        }
        if (fsync_dir(parent, err)) return -1;
        return remove_tree(old, err);
    } else {
        slex_fail_as(err, slex_errno_kind(errno), "%s: cannot exchange with %s: %s", dir, tmp, strerror(errno));
        goto fail;
    }
    return fsync_dir(parent, err);
fail:
    remove_tree(tmp, NULL);
    return -1;
}

void slex_checkpoint_free(slex_checkpoint *ckpt) {
    if (!ckpt) return;
    slex_hubert_free(ckpt->model);
    slex_head_free(ckpt->head);
    slex_lora_free(ckpt->lora);
    free(ckpt);
}

slex_checkpoint *slex_checkpoint_load(const char *dir, const slex_checkpoint_load_options *opts_arg, slex_error *err) {
    slex_checkpoint_load_options opts;
    if (opts_arg)
        opts = *opts_arg;
    else
        slex_checkpoint_load_options_default(&opts);
    manifest_info info;
    if (read_manifest(dir, &info, err)) return NULL;
    char path[PATH_CAP];
    if (opts.require_head && !info.has_head)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: the checkpoint has no pretraining head (%s says contents.head false)", dir,
                            MANIFEST_NAME),
               NULL;
    slex_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", dir), NULL;
    ck->step = info.step;
    snprintf(ck->producer_version, sizeof ck->producer_version, "%s", info.producer_version);
    ck->model = slex_hubert_load(dir, &opts.model, err);
    if (!ck->model) goto fail;
    const slex_hubert_config *c = slex_hubert_get_config(ck->model);
    if (info.has_head) {
        if (join_path(path, dir, HEAD_NAME, err)) goto fail;
        ck->head = slex_head_load(path, err);
        if (!ck->head) goto fail;
        const slex_head_config *h = &ck->head->cfg;
        if (h->hidden_size != c->hidden_size) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s: hidden_size %d but config.json says %d", path, h->hidden_size,
                         c->hidden_size);
            goto fail;
        }
        if (h->num_classes != info.num_classes) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s: num_classes %d but %s records %d", path, h->num_classes,
                         MANIFEST_NAME, info.num_classes);
            goto fail;
        }
        if (opts.num_classes > 0 && h->num_classes != opts.num_classes) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s: num_classes %d but %d label classes were expected", path,
                         h->num_classes, opts.num_classes);
            goto fail;
        }
        if (memcmp(ck->head->mask_emb, slex_hubert_get_params_const(ck->model)->mask_emb, (size_t)c->hidden_size * sizeof(float))) {
            slex_fail_as(err, SLEX_ERR_INPUT,
                         "%s: masked_spec_embed differs from model.safetensors' (files of different checkpoints?)",
                         path);
            goto fail;
        }
    }
    if (info.has_adapter) {
        if (join_path(path, dir, ADAPTER_DIR, err)) goto fail;
        ck->lora = slex_lora_open(path, err);
        if (!ck->lora || slex_lora_check(ck->lora, ck->model, err)) goto fail;
    }
    return ck;
fail:
    slex_checkpoint_free(ck);
    return NULL;
}
