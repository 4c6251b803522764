#include "model/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

#define NAME_CAP (SLEX_HUBERT_TENSOR_NAME_MAX + 64)

/* The positional conv's weight norm as the torch version that saved the file named it:
 * torch.nn.utils.weight_norm, torch.nn.utils.parametrizations, or a plain weight when the norm
 * was removed before saving (no g). */
#define POS_CONV "encoder.pos_conv_embed.conv."
static const char *const pos_conv_schemes[3][2] = {
    {"weight_g", "weight_v"},
    {"parametrizations.weight.original0", "parametrizations.weight.original1"},
    {NULL, "weight"},
};

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* The name under which the file holds table tensor t: the prefix, and the positional conv's
 * g/v renamed to the file's scheme.  Returns 0 when the file's scheme has no such tensor (g of
 * a plain weight). */
static int file_name(char *out, const char *prefix, const slex_hubert_tensor *t, int scheme) {
    for (int j = 0; j < 2; j++)
        if (strcmp(t->name, j ? POS_CONV "weight_v" : POS_CONV "weight_g") == 0) {
            if (!pos_conv_schemes[scheme][j]) return 0;
            snprintf(out, NAME_CAP, "%s" POS_CONV "%s", prefix, pos_conv_schemes[scheme][j]);
            return 1;
        }
    snprintf(out, NAME_CAP, "%s%s", prefix, t->name);
    return 1;
}

/* Conv weight (Co, Ci, K) in the file -> (Co, K, Ci) in memory. */
static int read_conv_taps(slex_safetensors *st, const char *name, const slex_hubert_tensor *t, slex_error *err) {
    int64_t co = t->shape[0], ci = t->shape[1], k = t->shape[2];
    float *tmp = malloc((size_t)t->numel * sizeof(float));
    if (!tmp)
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory reading '%s'", slex_safetensors_path(st), name);
    int rc = slex_safetensors_read_weights(st, name, tmp, err);
    if (rc == 0)
        for (int64_t o = 0; o < co; o++)
            for (int64_t c = 0; c < ci; c++)
                for (int64_t j = 0; j < k; j++) t->data[(o * k + j) * ci + c] = tmp[(o * ci + c) * k + j];
    free(tmp);
    return rc;
}

static int read_tensor(slex_safetensors *st, const char *prefix, int scheme, const slex_hubert_tensor *t, char *used,
                       slex_error *err) {
    char name[NAME_CAP];
    if (!file_name(name, prefix, t, scheme)) return 0;
    const char *path = slex_safetensors_path(st);
    const slex_st_tensor_info *info = slex_safetensors_find(st, name);
    if (!info) return t->optional ? 0 : slex_fail_as(err, SLEX_ERR_INPUT, "%s: missing tensor '%s'", path, name);
    used[info - slex_safetensors_tensor(st, 0)] = 1;
    int same = info->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = info->shape[d] == t->shape[d];
    if (!same) {
        char got[128], want[128];
        format_shape(got, sizeof got, info->ndim, info->shape);
        format_shape(want, sizeof want, t->ndim, t->shape);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: tensor '%s' has shape %s but config.json implies %s", path, name,
                            got, want);
    }
    return t->conv_taps ? read_conv_taps(st, name, t, err) : slex_safetensors_read_weights(st, name, t->data, err);
}

/* A checkpoint whose positional conv was saved without weight norm: v = w and g = ||w[:,:,k]||,
 * so that g * v / ||v|| reproduces w. */
static void weight_norm_from_plain(float *g, const float *v, int64_t C, int64_t Cg, int64_t K) {
    for (int64_t k = 0; k < K; k++) {
        double sq = 0.0;
        for (int64_t i = 0; i < C * Cg; i++) sq += (double)v[i * K + k] * v[i * K + k];
        g[k] = (float)sqrt(sq);
    }
}

/* Every tensor of the file was read, or ignore_unexpected. */
static int check_unexpected(slex_safetensors *st, const char *used, int ignore_unexpected, slex_error *err) {
    int n_unexpected = 0;
    const char *first = NULL;
    for (int i = 0; i < slex_safetensors_count(st); i++)
        if (!used[i]) {
            if (!first) first = slex_safetensors_tensor(st, i)->name;
            n_unexpected++;
        }
    if (n_unexpected && !ignore_unexpected)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: unexpected tensor '%s'%s not used by HubertModel with this config.json (%d in all; "
                            "set ignore_unexpected to skip them)",
                            slex_safetensors_path(st), first, n_unexpected > 1 ? " and others" : "", n_unexpected);
    return 0;
}

int slex_hubert_read_weights(const char *path, const slex_hubert_config *c, slex_hubert_params *p,
                             int ignore_unexpected, slex_error *err) {
    slex_safetensors *st = slex_safetensors_open(path, err);
    if (!st) return -1;
    const char *prefix = "";
    if (!slex_safetensors_find(st, "feature_projection.projection.weight")) {
        if (!slex_safetensors_find(st, "hubert.feature_projection.projection.weight")) {
            slex_safetensors_close(st);
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "%s: no HubertModel tensors (feature_projection.projection.weight, with or without "
                                "the 'hubert.' prefix)",
                                path);
        }
        prefix = "hubert.";
    }
    int scheme = 0;
    for (int s = 0; s < 3; s++) {
        char name[NAME_CAP];
        snprintf(name, sizeof name, "%s" POS_CONV "%s", prefix, pos_conv_schemes[s][1]);
        if (slex_safetensors_find(st, name)) {
            scheme = s;
            break;
        }
    }
    int n = slex_hubert_tensors(c, p, NULL);
    slex_hubert_tensor *tensors = malloc((size_t)n * sizeof *tensors);
    char *used = calloc((size_t)slex_safetensors_count(st) + 1, 1);
    int rc = -1;
    if (!tensors || !used) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
        goto done;
    }
    slex_hubert_tensors(c, p, tensors);
    for (int i = 0; i < n; i++)
        if (read_tensor(st, prefix, scheme, &tensors[i], used, err)) goto done;
    if (!pos_conv_schemes[scheme][0])
        weight_norm_from_plain(p->pos_conv_g, p->pos_conv_v, c->hidden_size,
                               c->hidden_size / c->num_conv_pos_embedding_groups, c->num_conv_pos_embeddings);
    rc = check_unexpected(st, used, ignore_unexpected, err);
done:
    free(tensors);
    free(used);
    slex_safetensors_close(st);
    return rc;
}

int slex_hubert_write_weights(const char *path, const slex_hubert_config *c, const slex_hubert_params *p,
                              const float *mask_emb, slex_error *err) {
    int n = slex_hubert_tensors(c, p, NULL);
    slex_hubert_tensor *tensors = malloc((size_t)n * sizeof *tensors);
    slex_st_write_tensor *w = calloc((size_t)n, sizeof *w);
    /* Conv weights are (C_out, K, C_in) in memory and (C_out, C_in, K) in HF files. */
    int64_t conv_total = 0;
    for (int i = 0; i < c->num_conv; i++)
        conv_total += (int64_t)c->conv_dim[i] * c->conv_kernel[i] * (i ? c->conv_dim[i - 1] : 1);
    float *conv = malloc((size_t)conv_total * sizeof(float));
    int rc = -1;
    if (!tensors || !w || !conv) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
        goto done;
    }
    slex_hubert_tensors(c, p, tensors);
    float *dst = conv;
    for (int i = 0; i < n; i++) {
        const slex_hubert_tensor *t = &tensors[i];
        w[i] = (slex_st_write_tensor){.name = t->name, .ndim = t->ndim, .data = t->data};
        for (int d = 0; d < t->ndim; d++) w[i].shape[d] = t->shape[d];
        if (mask_emb && t->data == p->mask_emb) w[i].data = mask_emb;
        if (!t->conv_taps) continue;
        int64_t co = t->shape[0], ci = t->shape[1], k = t->shape[2];
        for (int64_t o = 0; o < co; o++)
            for (int64_t ch = 0; ch < ci; ch++)
                for (int64_t j = 0; j < k; j++) dst[(o * ci + ch) * k + j] = t->data[(o * k + j) * ci + ch];
        w[i].data = dst;
        dst += t->numel;
    }
    /* transformers refuses a safetensors file whose metadata lacks format "pt". */
    slex_st_metadata meta = {.key = "format", .value = "pt"};
    rc = slex_safetensors_write(path, w, n, &meta, 1, err);
done:
    free(conv);
    free(w);
    free(tensors);
    return rc;
}
