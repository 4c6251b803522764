#include "model/hf_config.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"

void slex_hubert_config_default(slex_hubert_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->conv_bias = 0;
    cfg->feat_extract_norm = SLEX_FEAT_NORM_GROUP;
    cfg->do_stable_layer_norm = 0;
    cfg->feat_proj_layer_norm = 1;
    cfg->layer_norm_eps = 1e-5f;
    cfg->num_conv_pos_embeddings = 128;
    cfg->num_conv_pos_embedding_groups = 16;
}

int slex_hubert_config_validate(const slex_hubert_config *c, const char *src, slex_error *err) {
    if (c->num_conv < 1 || c->num_conv > SLEX_HUBERT_MAX_CONV)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: conv_dim: %d conv layers (1..%d supported)", src, c->num_conv,
                            SLEX_HUBERT_MAX_CONV);
    for (int i = 0; i < c->num_conv; i++) {
        if (c->conv_dim[i] < 1)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: conv_dim[%d] = %d must be positive", src, i, c->conv_dim[i]);
        if (c->conv_kernel[i] < 1)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: conv_kernel[%d] = %d must be positive", src, i,
                                c->conv_kernel[i]);
        if (c->conv_stride[i] < 1)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: conv_stride[%d] = %d must be positive", src, i,
                                c->conv_stride[i]);
    }
    if (c->hidden_size < 1)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: hidden_size = %d must be positive", src, c->hidden_size);
    if (c->num_hidden_layers < 1)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: num_hidden_layers = %d must be positive", src,
                            c->num_hidden_layers);
    if (c->num_attention_heads < 1)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: num_attention_heads = %d must be positive", src,
                            c->num_attention_heads);
    if (c->hidden_size % c->num_attention_heads != 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: hidden_size %d is not divisible by num_attention_heads %d", src,
                            c->hidden_size, c->num_attention_heads);
    if (c->intermediate_size < 1)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: intermediate_size = %d must be positive", src,
                            c->intermediate_size);
    if (!(c->layer_norm_eps > 0.0f) || !isfinite(c->layer_norm_eps))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: layer_norm_eps = %g must be positive", src,
                            (double)c->layer_norm_eps);
    if (c->num_conv_pos_embeddings < 1)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: num_conv_pos_embeddings = %d must be positive", src,
                            c->num_conv_pos_embeddings);
    if (c->num_conv_pos_embedding_groups < 1 || c->hidden_size % c->num_conv_pos_embedding_groups != 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: num_conv_pos_embedding_groups %d does not divide hidden_size %d",
                            src, c->num_conv_pos_embedding_groups, c->hidden_size);
    return 0;
}

/* Reads an integer-valued JSON number. */
static int get_int(const cJSON *item, const char *src, const char *key, int *out, slex_error *err) {
    if (!cJSON_IsNumber(item) || floor(item->valuedouble) != item->valuedouble || fabs(item->valuedouble) > 1e9)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: key \"%s\" must be an integer", src, key);
    *out = (int)item->valuedouble;
    return 0;
}

static int get_bool(const cJSON *item, const char *src, const char *key, int *out, slex_error *err) {
    if (!cJSON_IsBool(item)) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: key \"%s\" must be true or false", src, key);
    *out = cJSON_IsTrue(item) ? 1 : 0;
    return 0;
}

static int get_int_list(const cJSON *root, const char *src, const char *key, int *out, int *n, slex_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: missing required key \"%s\"", src, key);
    if (!cJSON_IsArray(item))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: key \"%s\" must be a list of integers", src, key);
    int len = cJSON_GetArraySize(item);
    if (len < 1 || len > SLEX_HUBERT_MAX_CONV)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: key \"%s\" has %d entries (1..%d supported)", src, key, len,
                            SLEX_HUBERT_MAX_CONV);
    for (int i = 0; i < len; i++)
        if (get_int(cJSON_GetArrayItem(item, i), src, key, &out[i], err) != 0) return -1;
    *n = len;
    return 0;
}

static int get_required_int(const cJSON *root, const char *src, const char *key, int *out, slex_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: missing required key \"%s\"", src, key);
    return get_int(item, src, key, out, err);
}

/* Activation names: HF's "gelu" is the exact erf GELU, which is what HuBERT uses. */
static int check_gelu(const cJSON *root, const char *src, const char *key, slex_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item) return 0;
    if (!cJSON_IsString(item)) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: key \"%s\" must be a string", src, key);
    if (strcmp(item->valuestring, "gelu") != 0)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: key \"%s\" is \"%s\"; only \"gelu\" (exact erf GELU) is supported", src, key,
                            item->valuestring);
    return 0;
}

static int parse_root(const cJSON *root, const char *src, slex_hubert_config *cfg, slex_error *err) {
    slex_hubert_config_default(cfg);
    if (!cJSON_IsObject(root)) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: not a JSON object", src);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (item && (!cJSON_IsString(item) || strcmp(item->valuestring, "hubert") != 0))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: key \"model_type\" is %s%s%s, expected \"hubert\"", src,
                            cJSON_IsString(item) ? "\"" : "", cJSON_IsString(item) ? item->valuestring : "not a string",
                            cJSON_IsString(item) ? "\"" : "");
    int n_dim, n_kernel, n_stride;
    if (get_int_list(root, src, "conv_dim", cfg->conv_dim, &n_dim, err) != 0 ||
        get_int_list(root, src, "conv_kernel", cfg->conv_kernel, &n_kernel, err) != 0 ||
        get_int_list(root, src, "conv_stride", cfg->conv_stride, &n_stride, err) != 0)
        return -1;
    if (n_dim != n_kernel || n_dim != n_stride)
        return slex_fail_as(
            err, SLEX_ERR_INPUT,
            "%s: keys \"conv_dim\", \"conv_kernel\", \"conv_stride\" have different lengths (%d, %d, %d)", src, n_dim,
            n_kernel, n_stride);
    cfg->num_conv = n_dim;
    if (get_required_int(root, src, "hidden_size", &cfg->hidden_size, err) != 0 ||
        get_required_int(root, src, "num_hidden_layers", &cfg->num_hidden_layers, err) != 0 ||
        get_required_int(root, src, "num_attention_heads", &cfg->num_attention_heads, err) != 0 ||
        get_required_int(root, src, "intermediate_size", &cfg->intermediate_size, err) != 0)
        return -1;
    if ((item = cJSON_GetObjectItemCaseSensitive(root, "conv_bias")) && get_bool(item, src, "conv_bias", &cfg->conv_bias, err))
        return -1;
    if ((item = cJSON_GetObjectItemCaseSensitive(root, "do_stable_layer_norm")) &&
        get_bool(item, src, "do_stable_layer_norm", &cfg->do_stable_layer_norm, err))
        return -1;
    if ((item = cJSON_GetObjectItemCaseSensitive(root, "feat_proj_layer_norm")) &&
        get_bool(item, src, "feat_proj_layer_norm", &cfg->feat_proj_layer_norm, err))
        return -1;
    if ((item = cJSON_GetObjectItemCaseSensitive(root, "feat_extract_norm"))) {
        if (!cJSON_IsString(item))
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: key \"feat_extract_norm\" must be a string", src);
        if (strcmp(item->valuestring, "group") == 0)
            cfg->feat_extract_norm = SLEX_FEAT_NORM_GROUP;
        else if (strcmp(item->valuestring, "layer") == 0)
            cfg->feat_extract_norm = SLEX_FEAT_NORM_LAYER;
        else
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "%s: key \"feat_extract_norm\" is \"%s\", expected \"group\" or \"layer\"", src,
                                item->valuestring);
    }
    if (check_gelu(root, src, "hidden_act", err) != 0 || check_gelu(root, src, "feat_extract_activation", err) != 0)
        return -1;
    if ((item = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_eps"))) {
        if (!cJSON_IsNumber(item))
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: key \"layer_norm_eps\" must be a number", src);
        cfg->layer_norm_eps = (float)item->valuedouble;
    }
    if ((item = cJSON_GetObjectItemCaseSensitive(root, "num_conv_pos_embeddings")) &&
        get_int(item, src, "num_conv_pos_embeddings", &cfg->num_conv_pos_embeddings, err))
        return -1;
    if ((item = cJSON_GetObjectItemCaseSensitive(root, "num_conv_pos_embedding_groups")) &&
        get_int(item, src, "num_conv_pos_embedding_groups", &cfg->num_conv_pos_embedding_groups, err))
        return -1;
    /* Newer transformers can replace the weight-normed positional conv by a batch norm. */
    if ((item = cJSON_GetObjectItemCaseSensitive(root, "conv_pos_batch_norm")) && cJSON_IsTrue(item))
        return slex_fail_as(
            err, SLEX_ERR_INPUT,
            "%s: key \"conv_pos_batch_norm\" is true; only the weight-normed positional conv is supported", src);
    return slex_hubert_config_validate(cfg, src, err);
}

int slex_hubert_config_parse(const char *json, const char *source, slex_hubert_config *cfg, slex_error *err) {
    cJSON *root = cJSON_Parse(json);
    if (!root) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: not valid JSON", source);
    int rc = parse_root(root, source, cfg, err);
    cJSON_Delete(root);
    return rc;
}

/* Whole small file into a NUL-terminated buffer; *missing set when it does not exist. */
static char *read_text(const char *path, int *missing, slex_error *err) {
    struct stat st;
    *missing = stat(path, &st) != 0 && errno == ENOENT;
    if (!*missing && st.st_size > (64 << 20))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: larger than 64 MB, not a config file", path), NULL;
    return slex_read_text_file(path, NULL, err);
}

int slex_hubert_config_load(const char *path, slex_hubert_config *cfg, slex_error *err) {
    int missing;
    char *text = read_text(path, &missing, err);
    if (!text) return -1;
    int rc = slex_hubert_config_parse(text, path, cfg, err);
    free(text);
    return rc;
}

int slex_hf_preprocessor_do_normalize(const char *path, int *do_normalize, slex_error *err) {
    int missing;
    char *text = read_text(path, &missing, err);
    if (!text) return missing ? 1 : -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: not a JSON object", path);
    }
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "do_normalize");
    int rc = 1;
    if (item) rc = get_bool(item, path, "do_normalize", do_normalize, err);
    cJSON_Delete(root);
    return rc;
}
