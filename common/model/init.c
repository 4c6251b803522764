#include "model/init.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "model/params.h"

static void fill_normal(float *x, int64_t n, double std, slex_rng *rng) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(std * slex_rng_normal(rng));
}

static void fill_uniform(float *x, int64_t n, double lo, double hi, slex_rng *rng) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * slex_rng_uniform(rng));
}

static void fill_value(float *x, int64_t n, float v) {
    for (int64_t i = 0; i < n; i++) x[i] = v;
}

static int ends_with(const char *s, const char *tail) {
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

static int starts_with(const char *s, const char *head) { return strncmp(s, head, strlen(head)) == 0; }

/* g of weight_norm(dim=2): the norm of v (C, Cg, K) over (C, Cg), for each tap k. */
static void pos_conv_g_from_v(float *g, const float *v, int64_t C, int64_t Cg, int64_t K) {
    for (int64_t k = 0; k < K; k++) {
        double sq = 0.0;
        for (int64_t i = 0; i < C * Cg; i++) sq += (double)v[i * K + k] * v[i * K + k];
        g[k] = (float)sqrt(sq);
    }
}

int slex_hubert_init_random(slex_hubert *model, uint64_t seed, slex_error *err) {
    const slex_hubert_config *cfg = slex_hubert_get_config(model);
    slex_hubert_params *p = slex_hubert_get_params(model);
    int n = slex_hubert_tensors(cfg, p, NULL);
    slex_hubert_tensor *tensors = malloc((size_t)n * sizeof *tensors);
    if (!tensors) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    slex_hubert_tensors(cfg, p, tensors);
    slex_rng rng;
    slex_rng_seed(&rng, seed);
    const slex_hubert_tensor *g = NULL, *v = NULL;
    double conv_fan_in = 1.0; /* of the conv whose weight came last (its bias follows it) */
    for (int i = 0; i < n; i++) {
        const slex_hubert_tensor *t = &tensors[i];
        const char *name = t->name;
        if (!t->data) continue;
        if (strstr(name, "norm.weight")) {
            fill_value(t->data, t->numel, 1.0f);
        } else if (strstr(name, "norm.bias") || (starts_with(name, "encoder.") && ends_with(name, ".bias"))) {
            fill_value(t->data, t->numel, 0.0f);
        } else if (starts_with(name, "feature_extractor.") && ends_with(name, "conv.weight")) {
            conv_fan_in = (double)(t->shape[1] * t->shape[2]);
            fill_normal(t->data, t->numel, sqrt(2.0 / conv_fan_in), &rng);
        } else if (starts_with(name, "feature_extractor.") && ends_with(name, "conv.bias")) {
            fill_uniform(t->data, t->numel, -1.0 / sqrt(conv_fan_in), 1.0 / sqrt(conv_fan_in), &rng); /* nn.Conv1d */
        } else if (starts_with(name, "feature_projection.projection.")) {
            double bound = 1.0 / sqrt((double)cfg->conv_dim[cfg->num_conv - 1]);
            fill_uniform(t->data, t->numel, -bound, bound, &rng);
        } else if (ends_with(name, "pos_conv_embed.conv.weight_g")) {
            g = t;
        } else if (ends_with(name, "pos_conv_embed.conv.weight_v")) {
            v = t;
            int64_t K = cfg->num_conv_pos_embeddings;
            fill_normal(t->data, t->numel, sqrt(4.0 / (double)(K * cfg->hidden_size)), &rng);
        } else if (strcmp(name, "masked_spec_embed") == 0) {
            fill_uniform(t->data, t->numel, 0.0, 1.0, &rng);
        } else if (starts_with(name, "encoder.layers.") && ends_with(name, ".weight")) {
            fill_normal(t->data, t->numel, 0.02, &rng);
        } else {
            slex_fail_as(err, SLEX_ERR_INTERNAL, "init: no rule for tensor '%s'", name);
            free(tensors);
            return -1;
        }
    }
    if (g && v)
        pos_conv_g_from_v(g->data, v->data, cfg->hidden_size, cfg->hidden_size / cfg->num_conv_pos_embedding_groups,
                          cfg->num_conv_pos_embeddings);
    free(tensors);
    slex_hubert_params_changed(model);
    return 0;
}
