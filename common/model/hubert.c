#include "model/hubert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/attention.h"
#include "model/conv.h"
#include "model/layernorm.h"
#include "model/linear.h"
#include "model/posconv.h"
#include "model/weights.h"

/* The norms inside the conv stack use torch's default eps, not config.layer_norm_eps
 * (HF builds nn.GroupNorm / nn.LayerNorm there without passing the config's eps). */
#define CONV_NORM_EPS 1e-5f
/* fairseq normalises the waveform with F.layer_norm(x, x.shape), i.e. eps 1e-5. */
#define WAVE_NORM_EPS 1e-5

struct slex_hubert {
    slex_hubert_config cfg;
    slex_hubert_load_options opts;
    int normalize;
    slex_hubert_params params;
    float *params_memory;
    int64_t num_params;
    /* Derived from the parameters at load: the effective positional conv weight
     * g * v / ||v|| in the (C, Kp, C/G) layout the im2col product wants. */
    float *pos_conv_w;
    slex_hubert_acts acts;
    float *acts_memory;
    int64_t max_samples;                 /* activations are sized for this many samples */
    int max_batch;                       /* ... and this many utterances */
    int64_t scratch_floats;
    /* With keep_activations: gradient buffers of the backward (in the activation allocation),
     * the input of every layer in the last training forward, and that forward's batch. */
    float *dx, *dy, *dz;                 /* (B, T, max(C, Cf)) */
    float *dqkv, *dffn;                  /* (B, T, 3C), (B, T, F) */
    float *datt;                         /* 2 T*T attention backward scratch */
    float *dposw;                        /* (C, Kp, Cg) positional conv effective weight gradient */
    float *dconv[2];                     /* (B, T_i, C_i) CNN gradients, with keep_cnn_activations */
    float *att_drop;                     /* (B, H, T, T) attention dropout multipliers of one layer */
    const float **layer_in;              /* (L) */
    const float *top_in;                 /* input of the pre-LN final LayerNorm */
    slex_hubert_batch batch;
    int64_t T;                           /* frames of the last training forward; 0: none */
};

#define T slex_hubert_load_options
static const slex_option load_rows[] = {
    {SLEX_OPT_INT_FIELD(T, normalize_waveform), .name = "normalize-waveform", .def = SLEX_HUBERT_NORMALIZE_AUTO,
     .min = -1, .max = 1, .param = "normalize_waveform_option",
     .help = "whole-utterance waveform normalisation: -1 = auto (preprocessor_config.json's do_normalize, else on "
             "for feat_extract_norm \"layer\"), 0 = off, 1 = on"},
    {SLEX_OPT_LONG_FIELD(T, max_chunk_samples), .name = "max-chunk-samples", .def = SLEX_HUBERT_DEFAULT_MAX_CHUNK,
     .min = 1, .max = (double)INT64_MAX, .param = "max_chunk_samples",
     .help = "samples per forward chunk (fairseq's max_chunk); activations are sized for it"},
    {SLEX_OPT_FLAG_FIELD(T, ignore_unexpected), .name = "ignore-unexpected", .param = "ignore_unexpected",
     .help = "skip checkpoint tensors HubertModel does not use (e.g. HubertForCTC's lm_head)"},
    {SLEX_OPT_FLAG_FIELD(T, keep_activations), .name = "keep-activations", .flags = SLEX_OPTF_INTERNAL},
    {SLEX_OPT_FLAG_FIELD(T, keep_cnn_activations), .name = "keep-cnn-activations", .flags = SLEX_OPTF_INTERNAL},
    {SLEX_OPT_INT_FIELD(T, max_batch), .name = "max-batch", .def = 1, .min = 1, .max = 1 << 20,
     .flags = SLEX_OPTF_INTERNAL},
    {SLEX_OPT_INT_FIELD(T, first_trained_layer), .name = "first-trained-layer", .def = 0, .min = 0, .max = 1 << 20,
     .flags = SLEX_OPTF_INTERNAL},
    {SLEX_OPT_FLAG_FIELD(T, frozen_ffn), .name = "frozen-ffn", .flags = SLEX_OPTF_INTERNAL},
};
#undef T
const slex_option_table slex_hubert_load_option_table = SLEX_OPTION_TABLE(load_rows);

void slex_hubert_load_options_default(slex_hubert_load_options *opts) {
    memset(opts, 0, sizeof *opts);
    slex_options_defaults(&slex_hubert_load_option_table, opts);
}

/* ---------------------------------------------------------------------------------------- */
/* Shapes */

int64_t slex_hubert_chunk_frames(const slex_hubert *m, int64_t n) {
    for (int i = 0; i < m->cfg.num_conv; i++) n = slex_conv_out_len(n, m->cfg.conv_kernel[i], m->cfg.conv_stride[i]);
    return n;
}

int64_t slex_hubert_total_stride(const slex_hubert *m) {
    int64_t s = 1;
    for (int i = 0; i < m->cfg.num_conv; i++) s *= m->cfg.conv_stride[i];
    return s;
}

int64_t slex_hubert_receptive_field(const slex_hubert *m) {
    int64_t r = 1, jump = 1;
    for (int i = 0; i < m->cfg.num_conv; i++) {
        r += (int64_t)(m->cfg.conv_kernel[i] - 1) * jump;
        jump *= m->cfg.conv_stride[i];
    }
    return r;
}

int64_t slex_hubert_num_frames(const slex_hubert *m, int64_t n) {
    int64_t chunk = m->opts.max_chunk_samples, frames = 0;
    for (int64_t start = 0; start < n; start += chunk)
        frames += slex_hubert_chunk_frames(m, n - start < chunk ? n - start : chunk);
    return frames;
}

const slex_hubert_config *slex_hubert_get_config(const slex_hubert *m) { return &m->cfg; }
const slex_hubert_load_options *slex_hubert_get_options(const slex_hubert *m) { return &m->opts; }
slex_hubert_params *slex_hubert_get_params(slex_hubert *m) { return &m->params; }
const slex_hubert_params *slex_hubert_get_params_const(const slex_hubert *m) { return &m->params; }
int64_t slex_hubert_num_parameters(const slex_hubert *m) { return m->num_params; }
float *slex_hubert_params_block(slex_hubert *m) { return m->params_memory; }
const slex_hubert_acts *slex_hubert_get_acts(const slex_hubert *m) { return &m->acts; }
int slex_hubert_normalizes_waveform(const slex_hubert *m) { return m->normalize; }

/* ---------------------------------------------------------------------------------------- */
/* Memory layout */

typedef struct {
    float **ptr;
    int64_t n;
} slot;

#define MAX_SLOTS (8 * SLEX_HUBERT_MAX_CONV + 64)

/* Points every slot into one allocation; returns it (NULL when out of memory). */
static float *alloc_slots(slot *slots, int n_slots, int64_t *total_out) {
    int64_t total = 0;
    for (int i = 0; i < n_slots; i++) total += slots[i].n;
    float *mem = calloc((size_t)(total > 0 ? total : 1), sizeof(float));
    if (!mem) return NULL;
    int64_t off = 0;
    for (int i = 0; i < n_slots; i++) {
        *slots[i].ptr = slots[i].n > 0 ? mem + off : NULL;
        off += slots[i].n;
    }
    *total_out = total;
    return mem;
}

static float *alloc_params(slex_hubert *m) {
    m->num_params = slex_hubert_params_layout(&m->cfg, NULL, NULL);
    float *mem = calloc((size_t)(m->num_params > 0 ? m->num_params : 1), sizeof(float));
    if (mem) slex_hubert_params_layout(&m->cfg, mem, &m->params);
    return mem;
}

/* With keep_activations, layers below first_trained_layer share slice 0 of the per-layer
 * buffers and every other layer has its own. */
static int layer_slices(const slex_hubert *m) {
    int f = m->opts.first_trained_layer;
    return m->cfg.num_hidden_layers - f + (f > 0);
}

static int64_t slice_of(const slex_hubert *m, int l) {
    int f = m->opts.first_trained_layer;
    return !m->opts.keep_activations || l < f ? 0 : l - f + (f > 0);
}

/* 1 when the per-layer buffers that only a gradient of the FFN weights reads (the FFN input
 * and the GELU output) have one slice for all layers (frozen_ffn). */
static int ffn_in_shared(const slex_hubert *m) { return m->opts.keep_activations && m->opts.frozen_ffn; }

static float *alloc_acts(slex_hubert *m, int64_t N) {
    const slex_hubert_config *c = &m->cfg;
    slex_hubert_acts *a = &m->acts;
    int keep = m->opts.keep_activations, keep_cnn = keep && m->opts.keep_cnn_activations;
    int64_t B = keep ? m->max_batch : 1;
    int64_t C = c->hidden_size, F = c->intermediate_size, H = c->num_attention_heads;
    int64_t Lk = keep ? layer_slices(m) : 1, Hk = keep ? H : 1;
    int64_t T = slex_hubert_chunk_frames(m, N), Cf = c->conv_dim[c->num_conv - 1];
    int64_t Kp = c->num_conv_pos_embeddings, Cg = C / c->num_conv_pos_embedding_groups;
    int64_t len[SLEX_HUBERT_MAX_CONV], ping = 0, pong = 0, scratch = 0, conv_max = 0;
    float *conv_ping = NULL, *conv_pong = NULL;
    /* The largest slots, in double: sizes whose float count overflows int64 are out of memory. */
    if ((double)B * (double)N * (double)(Cf > C ? Cf : C) > 0x1p60 ||
        (double)(Lk + 1) * (double)H * (double)B * (double)T * (double)T > 0x1p60)
        return NULL;
    slot s[MAX_SLOTS];
    int n = 0;
    s[n++] = (slot){&a->wave, B * N};
    int64_t tin = N;
    for (int i = 0; i < c->num_conv; i++) {
        int64_t cin = i ? c->conv_dim[i - 1] : 1, cout = c->conv_dim[i];
        int has_norm = c->feat_extract_norm == SLEX_FEAT_NORM_LAYER || i == 0;
        len[i] = slex_conv_out_len(tin, c->conv_kernel[i], c->conv_stride[i]);
        int64_t need = slex_conv1d_scratch_floats((int)cin, c->conv_kernel[i], c->conv_stride[i]);
        scratch = need > scratch ? need : scratch;
        conv_max = B * len[i] * cout > conv_max ? B * len[i] * cout : conv_max;
        if (keep_cnn) {
            s[n++] = (slot){&a->conv_out[i], B * len[i] * cout};
            s[n++] = (slot){&a->conv_norm[i], has_norm ? B * len[i] * cout : 0};
            s[n++] = (slot){&a->conv_gelu[i], B * len[i] * cout};
        } else if (i % 2 == 0) {
            ping = B * len[i] * cout > ping ? B * len[i] * cout : ping;
        } else {
            pong = B * len[i] * cout > pong ? B * len[i] * cout : pong;
        }
        int64_t stats = !has_norm ? 0 : c->feat_extract_norm == SLEX_FEAT_NORM_GROUP ? cout : len[i];
        s[n++] = (slot){&a->conv_norm_mean[i], B * stats};
        s[n++] = (slot){&a->conv_norm_rstd[i], B * stats};
        tin = len[i];
    }
    if (!keep_cnn) {
        s[n++] = (slot){&conv_ping, ping};
        s[n++] = (slot){&conv_pong, pong};
    }
    int64_t pos_scratch = slex_posconv_scratch_floats((int)C, c->num_conv_pos_embeddings, c->num_conv_pos_embedding_groups);
    scratch = pos_scratch > scratch ? pos_scratch : scratch;
    /* Attention dropout needs one (T, T) product buffer. */
    if (keep) scratch = T * T > scratch ? T * T : scratch;
    int64_t BT = B * T, Cmax = C > Cf ? C : Cf;
    s[n++] = (slot){&a->proj_ln, keep && c->feat_proj_layer_norm ? BT * Cf : 0};
    s[n++] = (slot){&a->proj_ln_mean, c->feat_proj_layer_norm ? BT : 0};
    s[n++] = (slot){&a->proj_ln_rstd, c->feat_proj_layer_norm ? BT : 0};
    s[n++] = (slot){&a->proj, BT * C};
    s[n++] = (slot){&a->pos_conv, BT * C};
    s[n++] = (slot){&a->enc_in, BT * C};
    s[n++] = (slot){&a->enc_ln, BT * C};
    s[n++] = (slot){&a->enc_ln_mean, BT};
    s[n++] = (slot){&a->enc_ln_rstd, BT};
    int pre = c->do_stable_layer_norm;
    int64_t Lf = ffn_in_shared(m) ? 1 : Lk;
    s[n++] = (slot){&a->ln1, (pre ? Lk : Lf) * BT * C};
    s[n++] = (slot){&a->ln1_mean, Lk * BT};
    s[n++] = (slot){&a->ln1_rstd, Lk * BT};
    s[n++] = (slot){&a->qkv, Lk * BT * 3 * C};
    s[n++] = (slot){&a->att, Lk * Hk * B * T * T};
    s[n++] = (slot){&a->atty, Lk * BT * C};
    s[n++] = (slot){&a->attproj, BT * C};
    s[n++] = (slot){&a->res1, Lk * BT * C};
    s[n++] = (slot){&a->ln2, (pre ? Lf : Lk) * BT * C};
    s[n++] = (slot){&a->ln2_mean, Lk * BT};
    s[n++] = (slot){&a->ln2_rstd, Lk * BT};
    s[n++] = (slot){&a->fch, Lk * BT * F};
    s[n++] = (slot){&a->fch_gelu, keep ? Lf * BT * F : 0};
    s[n++] = (slot){&a->fcproj, BT * C};
    s[n++] = (slot){&a->res2, Lk * BT * C};
    s[n++] = (slot){&a->scratch, scratch};
    s[n++] = (slot){&m->dx, keep ? BT * Cmax : 0};
    s[n++] = (slot){&m->dy, keep ? BT * Cmax : 0};
    s[n++] = (slot){&m->dz, keep ? BT * Cmax : 0};
    s[n++] = (slot){&m->dqkv, keep ? BT * 3 * C : 0};
    s[n++] = (slot){&m->dffn, keep ? BT * F : 0};
    s[n++] = (slot){&m->datt, keep ? 2 * T * T : 0};
    s[n++] = (slot){&m->dposw, keep ? C * Kp * Cg : 0};
    s[n++] = (slot){&m->dconv[0], keep_cnn ? conv_max : 0};
    s[n++] = (slot){&m->dconv[1], keep_cnn ? conv_max : 0};
    s[n++] = (slot){&m->att_drop, keep ? H * B * T * T : 0};
    int64_t total;
    float *mem = alloc_slots(s, n, &total);
    if (!mem) return NULL;
    m->scratch_floats = scratch;
    /* Without keep_cnn_activations the norm and GELU of each conv run in place and consecutive
     * convs alternate between two buffers; without keep_activations the projection LN and the
     * FFN GELU run in place too. */
    for (int i = 0; i < c->num_conv; i++) {
        int has_norm = c->feat_extract_norm == SLEX_FEAT_NORM_LAYER || i == 0;
        if (!keep_cnn) a->conv_out[i] = a->conv_gelu[i] = i % 2 == 0 ? conv_ping : conv_pong;
        a->conv_norm[i] = has_norm ? (keep_cnn ? a->conv_norm[i] : a->conv_out[i]) : a->conv_out[i];
    }
    if (!keep) {
        a->proj_ln = c->feat_proj_layer_norm ? a->conv_gelu[c->num_conv - 1] : NULL;
        a->fch_gelu = a->fch;
    }
    return mem;
}

void slex_hubert_free(slex_hubert *m) {
    if (!m) return;
    free(m->params_memory);
    free(m->pos_conv_w);
    free(m->acts_memory);
    free(m->layer_in);
    free(m);
}

/* The model of config_path's shape with every parameter zero; dir is where a
 * preprocessor_config.json would be. */
static slex_hubert *hubert_new(const char *config_path, const char *dir, const slex_hubert_load_options *opts,
                               slex_error *err) {
    slex_hubert *m = calloc(1, sizeof *m);
    if (!m) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", config_path);
        return NULL;
    }
    if (opts)
        m->opts = *opts;
    else
        slex_hubert_load_options_default(&m->opts);
    char path[4096];
    if (slex_hubert_config_load(config_path, &m->cfg, err) != 0) goto fail;
    const slex_hubert_config *c = &m->cfg;
    if (m->opts.max_chunk_samples < slex_hubert_receptive_field(m)) {
        slex_fail_as(err, SLEX_ERR_INPUT,
                     "%s: max_chunk_samples %lld is shorter than the receptive field of %lld samples", config_path,
                     (long long)m->opts.max_chunk_samples, (long long)slex_hubert_receptive_field(m));
        goto fail;
    }
    if (m->opts.first_trained_layer < 0 || m->opts.first_trained_layer >= c->num_hidden_layers) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: first_trained_layer %d is not a layer of the model (0..%d)", config_path,
                     m->opts.first_trained_layer, c->num_hidden_layers - 1);
        goto fail;
    }
    if (m->opts.normalize_waveform == SLEX_HUBERT_NORMALIZE_AUTO) {
        int do_normalize = 0, rc = 1;
        if (dir) {
            snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
            rc = slex_hf_preprocessor_do_normalize(path, &do_normalize, err);
        }
        if (rc < 0) goto fail;
        m->normalize = rc == 0 ? do_normalize : c->feat_extract_norm == SLEX_FEAT_NORM_LAYER;
    } else {
        m->normalize = m->opts.normalize_waveform ? 1 : 0;
    }
    m->params_memory = alloc_params(m);
    int64_t Cg = c->hidden_size / c->num_conv_pos_embedding_groups;
    m->pos_conv_w = malloc((size_t)c->hidden_size * (size_t)(Cg * c->num_conv_pos_embeddings) * sizeof(float));
    if (!m->params_memory || !m->pos_conv_w) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory for %lld parameters", config_path, (long long)m->num_params);
        goto fail;
    }
    m->max_samples = m->opts.max_chunk_samples;
    m->max_batch = m->opts.keep_activations && m->opts.max_batch > 1 ? m->opts.max_batch : 1;
    m->acts_memory = alloc_acts(m, m->max_samples);
    m->layer_in = calloc((size_t)c->num_hidden_layers, sizeof *m->layer_in);
    if (!m->acts_memory || !m->layer_in) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory for the activations of %lld samples%s", config_path,
                  (long long)m->max_samples,
                  m->opts.keep_activations ? " (keep_activations keeps every layer's attention: use a "
                                             "max_chunk_samples sized for training crops)" : "");
        goto fail;
    }
    slex_hubert_params_changed(m);
    return m;
fail:
    slex_hubert_free(m);
    return NULL;
}

slex_hubert *slex_hubert_create(const char *config_path, const slex_hubert_load_options *opts, slex_error *err) {
    return hubert_new(config_path, NULL, opts, err);
}

slex_hubert *slex_hubert_load(const char *dir, const slex_hubert_load_options *opts, slex_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    slex_hubert *m = hubert_new(path, dir, opts, err);
    if (!m) return NULL;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (slex_hubert_read_weights(path, &m->cfg, &m->params, m->opts.ignore_unexpected, err) != 0) {
        slex_hubert_free(m);
        return NULL;
    }
    slex_hubert_params_changed(m);
    return m;
}

void slex_hubert_params_changed(slex_hubert *m) {
    const slex_hubert_config *c = &m->cfg;
    slex_weightnorm_forward(m->pos_conv_w, m->params.pos_conv_g, m->params.pos_conv_v, c->hidden_size,
                            c->hidden_size / c->num_conv_pos_embedding_groups, c->num_conv_pos_embeddings);
}

/* ---------------------------------------------------------------------------------------- */
/* Forward */

/* Dropout sites: per layer (DROP_LAYER * l + k) and two outside the layers. */
enum { DROP_ATT, DROP_ATTPROJ, DROP_ACT, DROP_FFN_OUT, DROP_LAYER = 4 };
#define DROP_PROJ (UINT64_C(1) << 40)
#define DROP_ENC_IN (DROP_PROJ + 1)

/* Element i of dropout site `site` is dropped with probability p when its 32 bits of
 * splitmix64(seed, site, i / 2) (the low half for even i, the high half for odd i), as a
 * fraction of 2^32, are below p: the same answer in the forward and the backward.  u / 2^32 < p
 * is compared as u < ceil(p 2^32) (exact); one hash serves two elements. */
static uint64_t drop_threshold(float p) { return (uint64_t)ceil(ldexp((double)p, 32)); }

static inline uint64_t drop_bits(uint64_t base, uint64_t pair) {
    uint64_t z = base ^ (pair * UINT64_C(0xD1B54A32D192ED03));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* out (n) = x * the site's dropout multipliers (0 or 1 / (1 - p), as PyTorch: a dropped NaN
 * stays NaN); x NULL: the multipliers themselves.  out may alias x.  Branch-free: the draws are
 * random, a branch on them would be mispredicted at rate p. */
static void dropout_site(float *out, const float *x, int64_t n, float p, uint64_t seed, uint64_t site) {
    const float mul[2] = {1.0f / (1.0f - p), 0.0f}; /* [dropped] */
    const uint64_t th = drop_threshold(p), base = seed ^ (site * UINT64_C(0x9E3779B97F4A7C15));
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
        uint64_t z = drop_bits(base, (uint64_t)i >> 1);
        float m0 = mul[(z & 0xffffffffu) < th], m1 = mul[(z >> 32) < th];
        out[i] = x ? x[i] * m0 : m0;
        out[i + 1] = x ? x[i + 1] * m1 : m1;
    }
    if (i < n) {
        float m0 = mul[(drop_bits(base, (uint64_t)i >> 1) & 0xffffffffu) < th];
        out[i] = x ? x[i] * m0 : m0;
    }
}

/* x (n) *= the site's dropout multipliers; the same call is its backward. */
static void apply_dropout(float *x, int64_t n, float p, uint64_t seed, uint64_t site) {
    if (p > 0.0f) dropout_site(x, x, n, p, seed, site);
}

/* The attention dropout multipliers of layer l into m->att_drop; NULL when off. */
static const float *attention_dropout(slex_hubert *m, const slex_hubert_batch *b, int l, int64_t n) {
    if (!b || b->attention_dropout <= 0.0f) return NULL;
    dropout_site(m->att_drop, NULL, n, b->attention_dropout, b->dropout_seed, (uint64_t)l * DROP_LAYER + DROP_ATT);
    return m->att_drop;
}

/* The LoRA branch of site s (if any) on a linear whose output out has row stride ldo. */
static void lora_forward_site(const slex_hubert_lora_site *s, float *out, int64_t ldo, const float *inp, int64_t N,
                              int IC, int OC, float *h) {
    if (s && s->A) slex_lora_forward(out, ldo, h, inp, s->A, s->B, s->scale, N, IC, OC, s->r);
}

/* B utterances of n samples each (in acts->wave, already normalised if asked) through the
 * model up to `layer`; returns the (B, T, C) output, T in *T_out.  train: the batch's mask,
 * layerdrop and adapters (NULL for inference); lora_h: (B*T, r) scratch for the adapters. */
static const float *forward_batch(slex_hubert *m, int B, int64_t n, int layer, const slex_hubert_batch *train,
                                  float *lora_h, int64_t *T_out) {
    const slex_hubert_config *c = &m->cfg;
    const slex_hubert_params *p = &m->params;
    slex_hubert_acts *a = &m->acts;
    int keep = m->opts.keep_activations;
    int C = c->hidden_size, F = c->intermediate_size, H = c->num_attention_heads, L = c->num_hidden_layers;

    /* Feature extractor: (B, N) -> (B, T, Cf) */
    const float *x = a->wave;
    int64_t T = n;
    int cin = 1;
    for (int i = 0; i < c->num_conv; i++) {
        int cout = c->conv_dim[i];
        int64_t To = slex_conv_out_len(T, c->conv_kernel[i], c->conv_stride[i]);
        slex_conv1d_forward(a->conv_out[i], x, p->conv_w[i], p->conv_b[i], B, T, cin, cout, c->conv_kernel[i],
                            c->conv_stride[i], a->scratch);
        if (p->conv_norm_w[i] && c->feat_extract_norm == SLEX_FEAT_NORM_GROUP)
            slex_groupnorm_forward(a->conv_norm[i], a->conv_norm_mean[i], a->conv_norm_rstd[i], a->conv_out[i],
                                   p->conv_norm_w[i], p->conv_norm_b[i], B, To, cout, CONV_NORM_EPS);
        else if (p->conv_norm_w[i])
            slex_layernorm_forward(a->conv_norm[i], a->conv_norm_mean[i], a->conv_norm_rstd[i], a->conv_out[i],
                                   p->conv_norm_w[i], p->conv_norm_b[i], B * To, cout, CONV_NORM_EPS);
        slex_gelu_forward(a->conv_gelu[i], a->conv_norm[i], B * To * cout);
        x = a->conv_gelu[i];
        T = To;
        cin = cout;
    }
    int64_t BT = B * T;

    /* Feature projection: (B, T, Cf) -> (B, T, C), then the masked frames */
    if (c->feat_proj_layer_norm) {
        slex_layernorm_forward(a->proj_ln, a->proj_ln_mean, a->proj_ln_rstd, x, p->proj_ln_w, p->proj_ln_b, BT, cin,
                               c->layer_norm_eps);
        x = a->proj_ln;
    }
    slex_linear_forward(a->proj, x, p->proj_w, p->proj_b, BT, cin, C);
    float pd = train ? train->dropout : 0.0f, pa = train ? train->activation_dropout : 0.0f;
    uint64_t seed = train ? train->dropout_seed : 0;
    apply_dropout(a->proj, BT * C, pd, seed, DROP_PROJ);
    if (train && train->mask)
        for (int64_t t = 0; t < BT; t++)
            if (train->mask[t]) memcpy(a->proj + t * C, p->mask_emb, (size_t)C * sizeof(float));

    /* Positional conv embedding: enc_in = proj + gelu(posconv(proj)) (B, T, C) */
    slex_posconv_forward(a->pos_conv, a->proj, m->pos_conv_w, p->pos_conv_b, B, T, C, c->num_conv_pos_embeddings,
                         c->num_conv_pos_embedding_groups, a->scratch);
    slex_gelu_forward(a->enc_in, a->pos_conv, BT * C);
    slex_residual_forward(a->enc_in, a->enc_in, a->proj, BT * C);
    x = a->enc_in;
    if (!c->do_stable_layer_norm) {
        slex_layernorm_forward(a->enc_ln, a->enc_ln_mean, a->enc_ln_rstd, x, p->enc_ln_w, p->enc_ln_b, BT, C,
                               c->layer_norm_eps);
        x = a->enc_ln;
    }
    apply_dropout((float *)x, BT * C, pd, seed, DROP_ENC_IN);

    int last = layer == SLEX_HUBERT_LAST_HIDDEN_STATE ? L : layer;
    int64_t sTC = keep ? BT * C : 0, sT = keep ? BT : 0, sTF = keep ? BT * F : 0;
    for (int l = 0; l < last; l++) {
        if (train) m->layer_in[l] = x;
        if (train && train->skip_layer && train->skip_layer[l]) continue;
        const slex_hubert_lora_site *site = train && train->lora ? train->lora + (int64_t)l * SLEX_HUBERT_LINEARS : NULL;
        int64_t sl = slice_of(m, l), sf = ffn_in_shared(m) ? 0 : sl; /* sf: the FFN inputs' slice */
        int pre = c->do_stable_layer_norm;
        float *ln1 = a->ln1 + (pre ? sl : sf) * sTC, *ln1_mean = a->ln1_mean + sl * sT, *ln1_rstd = a->ln1_rstd + sl * sT;
        float *qkv = a->qkv + 3 * sl * sTC, *att = a->att + sl * (keep ? (int64_t)H * B * T * T : 0);
        float *atty = a->atty + sl * sTC, *attproj = a->attproj, *res1 = a->res1 + sl * sTC;
        float *ln2 = a->ln2 + (pre ? sf : sl) * sTC, *ln2_mean = a->ln2_mean + sl * sT, *ln2_rstd = a->ln2_rstd + sl * sT;
        float *fch = a->fch + sl * sTF, *fch_gelu = a->fch_gelu + sf * sTF, *fcproj = a->fcproj;
        float *res2 = a->res2 + sl * sTC;
        const float *ln1_w = p->ln1_w + (int64_t)l * C, *ln1_b = p->ln1_b + (int64_t)l * C;
        const float *ln2_w = p->ln2_w + (int64_t)l * C, *ln2_b = p->ln2_b + (int64_t)l * C;
        const float *qkv_w = p->qkv_w + (int64_t)l * 3 * C * C, *qkv_b = p->qkv_b + (int64_t)l * 3 * C;
        const float *attproj_w = p->attproj_w + (int64_t)l * C * C, *attproj_b = p->attproj_b + (int64_t)l * C;
        const float *fc_w = p->fc_w + (int64_t)l * F * C, *fc_b = p->fc_b + (int64_t)l * F;
        const float *fcproj_w = p->fcproj_w + (int64_t)l * C * F, *fcproj_b = p->fcproj_b + (int64_t)l * C;
        /* pre-LN: res1 = x + attn(LN1(x)); res2 = res1 + ffn(LN2(res1))
         * post-LN: ln1 = LN1(x + attn(x)); ln2 = LN2(ln1 + ffn(ln1)) */
        if (pre) slex_layernorm_forward(ln1, ln1_mean, ln1_rstd, x, ln1_w, ln1_b, BT, C, c->layer_norm_eps);
        const float *att_in = pre ? ln1 : x;
        slex_linear_forward(qkv, att_in, qkv_w, qkv_b, BT, C, 3 * C);
        for (int j = 0; j < 3; j++)
            lora_forward_site(site ? &site[SLEX_HUBERT_Q + j] : NULL, qkv + j * C, 3 * C, att_in, BT, C, C, lora_h);
        uint64_t ds = (uint64_t)l * DROP_LAYER;
        const float *att_drop = attention_dropout(m, train, l, (int64_t)H * B * T * T);
        slex_attention_forward(atty, att, keep ? T * T : 0, qkv, att_drop, B, T, C, H, a->scratch);
        slex_linear_forward(attproj, atty, attproj_w, attproj_b, BT, C, C);
        lora_forward_site(site ? &site[SLEX_HUBERT_OUT] : NULL, attproj, C, atty, BT, C, C, lora_h);
        apply_dropout(attproj, BT * C, pd, seed, ds + DROP_ATTPROJ);
        slex_residual_forward(res1, x, attproj, BT * C);
        if (!pre) slex_layernorm_forward(ln1, ln1_mean, ln1_rstd, res1, ln1_w, ln1_b, BT, C, c->layer_norm_eps);
        if (pre) slex_layernorm_forward(ln2, ln2_mean, ln2_rstd, res1, ln2_w, ln2_b, BT, C, c->layer_norm_eps);
        const float *ffn_in = pre ? ln2 : ln1;
        slex_linear_forward(fch, ffn_in, fc_w, fc_b, BT, C, F);
        lora_forward_site(site ? &site[SLEX_HUBERT_FC1] : NULL, fch, F, ffn_in, BT, C, F, lora_h);
        slex_gelu_forward(fch_gelu, fch, BT * F);
        apply_dropout(fch_gelu, BT * F, pa, seed, ds + DROP_ACT);
        slex_linear_forward(fcproj, fch_gelu, fcproj_w, fcproj_b, BT, F, C);
        lora_forward_site(site ? &site[SLEX_HUBERT_FC2] : NULL, fcproj, C, fch_gelu, BT, F, C, lora_h);
        apply_dropout(fcproj, BT * C, pd, seed, ds + DROP_FFN_OUT);
        slex_residual_forward(res2, pre ? res1 : ln1, fcproj, BT * C);
        if (!pre) slex_layernorm_forward(ln2, ln2_mean, ln2_rstd, res2, ln2_w, ln2_b, BT, C, c->layer_norm_eps);
        x = pre ? res2 : ln2;
    }
    if (train) m->top_in = x;
    if (layer == SLEX_HUBERT_LAST_HIDDEN_STATE && c->do_stable_layer_norm) {
        slex_layernorm_forward(a->enc_ln, a->enc_ln_mean, a->enc_ln_rstd, x, p->enc_ln_w, p->enc_ln_b, BT, C,
                               c->layer_norm_eps);
        x = a->enc_ln;
    }
    *T_out = T;
    return x;
}

/* One chunk of n samples (already normalised if asked) through the model up to `layer`;
 * writes (T, C) to out and returns T. */
static int64_t forward_chunk(slex_hubert *m, int64_t n, int layer, float *out) {
    int64_t T;
    const float *x = forward_batch(m, 1, n, layer, NULL, NULL, &T);
    memcpy(out, x, (size_t)(T * m->cfg.hidden_size) * sizeof(float));
    return T;
}

int slex_hubert_forward(slex_hubert *m, const float *wave, int64_t n, int layer, float *out, int64_t *T_out,
                        slex_error *err) {
    const slex_hubert_config *c = &m->cfg;
    if (layer != SLEX_HUBERT_LAST_HIDDEN_STATE && (layer < 0 || layer > c->num_hidden_layers))
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "layer %d is out of range: the model has %d transformer layers (1..%d, 0 = "
                            "transformer input, %d = last hidden state)",
                            layer, c->num_hidden_layers, c->num_hidden_layers, SLEX_HUBERT_LAST_HIDDEN_STATE);
    int64_t rf = slex_hubert_receptive_field(m);
    if (n < rf)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "waveform of %lld samples is shorter than the model's receptive field of %lld samples",
                            (long long)n, (long long)rf);
    /* fairseq: F.layer_norm over the whole utterance, then chunks of max_chunk samples. */
    double mean = 0.0, rstd = 1.0;
    if (m->normalize) {
        double s = 0.0, sq = 0.0;
        for (int64_t i = 0; i < n; i++) s += wave[i];
        mean = s / (double)n;
        for (int64_t i = 0; i < n; i++) sq += (wave[i] - mean) * (wave[i] - mean);
        rstd = 1.0 / sqrt(sq / (double)n + WAVE_NORM_EPS);
    }
    int64_t chunk = m->opts.max_chunk_samples, frames = 0;
    for (int64_t start = 0; start < n; start += chunk) {
        int64_t len = n - start < chunk ? n - start : chunk;
        if (slex_hubert_chunk_frames(m, len) == 0) continue;
        float *w = m->acts.wave;
        if (m->normalize)
            for (int64_t i = 0; i < len; i++) w[i] = (float)((wave[start + i] - mean) * rstd);
        else
            memcpy(w, wave + start, (size_t)len * sizeof(float));
        frames += forward_chunk(m, len, layer, out + frames * c->hidden_size);
    }
    *T_out = frames;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Training: forward of a batch with everything kept, and its backward */

static int max_lora_rank(const slex_hubert *m, const slex_hubert_batch *b) {
    int r = 0;
    if (b->lora)
        for (int64_t i = 0; i < (int64_t)m->cfg.num_hidden_layers * SLEX_HUBERT_LINEARS; i++)
            if (b->lora[i].A && b->lora[i].r > r) r = b->lora[i].r;
    return r;
}

int slex_hubert_forward_train(slex_hubert *m, const float *wave, const slex_hubert_batch *batch, float *out,
                              slex_error *err) {
    const slex_hubert_config *c = &m->cfg;
    m->T = 0;
    if (!m->opts.keep_activations)
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "training forward: the model was loaded without keep_activations");
    if (batch->B < 1 || batch->B > m->max_batch)
        return slex_fail_as(err, SLEX_ERR_INTERNAL,
                            "training forward: batch of %d utterances, the activations hold 1..%d (max_batch)",
                            batch->B, m->max_batch);
    if (batch->N < slex_hubert_receptive_field(m) || batch->N > m->max_samples)
        return slex_fail_as(err, SLEX_ERR_INTERNAL,
                            "training forward: utterances of %lld samples, the model takes %lld..%lld "
                            "(receptive field .. max_chunk_samples)",
                            (long long)batch->N, (long long)slex_hubert_receptive_field(m), (long long)m->max_samples);
    int64_t T = slex_hubert_chunk_frames(m, batch->N), r = max_lora_rank(m, batch);
    float *h = r ? malloc((size_t)(batch->B * T * r) * sizeof(float)) : NULL;
    if (r && !h)
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "training forward: out of memory for the LoRA activations");
    slex_hubert_params_changed(m);
    memcpy(m->acts.wave, wave, (size_t)(batch->B * batch->N) * sizeof(float));
    const float *x = forward_batch(m, batch->B, batch->N, SLEX_HUBERT_LAST_HIDDEN_STATE, batch, h, &T);
    memcpy(out, x, (size_t)(batch->B * T * c->hidden_size) * sizeof(float));
    free(h);
    m->batch = *batch;
    m->T = T;
    return 0;
}

/* One transformer layer's parameters (or gradients: NULL fields stay NULL). */
typedef struct {
    float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *attproj_w, *attproj_b, *ln2_w, *ln2_b, *fc_w, *fc_b, *fcproj_w, *fcproj_b;
} layer_params;

static float *at(float *base, int64_t off) { return base ? base + off : NULL; }

static layer_params layer_slice(const slex_hubert_params *p, int l, int64_t C, int64_t F) {
    return (layer_params){
        .ln1_w = at(p->ln1_w, l * C), .ln1_b = at(p->ln1_b, l * C),
        .qkv_w = at(p->qkv_w, l * 3 * C * C), .qkv_b = at(p->qkv_b, l * 3 * C),
        .attproj_w = at(p->attproj_w, l * C * C), .attproj_b = at(p->attproj_b, l * C),
        .ln2_w = at(p->ln2_w, l * C), .ln2_b = at(p->ln2_b, l * C),
        .fc_w = at(p->fc_w, l * F * C), .fc_b = at(p->fc_b, l * F),
        .fcproj_w = at(p->fcproj_w, l * C * F), .fcproj_b = at(p->fcproj_b, l * C),
    };
}

/* One layer's kept activations in the last training forward. */
typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *res1, *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu, *res2;
} layer_acts;

static layer_acts layer_view(const slex_hubert *m, int layer) {
    const slex_hubert_acts *a = &m->acts;
    int64_t l = slice_of(m, layer), f = ffn_in_shared(m) ? 0 : l;
    int64_t BT = m->batch.B * m->T, C = m->cfg.hidden_size, F = m->cfg.intermediate_size;
    int64_t H = m->cfg.num_attention_heads;
    int pre = m->cfg.do_stable_layer_norm;
    return (layer_acts){
        .ln1 = a->ln1 + (pre ? l : f) * BT * C, .ln1_mean = a->ln1_mean + l * BT, .ln1_rstd = a->ln1_rstd + l * BT,
        .qkv = a->qkv + l * BT * 3 * C, .att = a->att + l * H * BT * m->T, .atty = a->atty + l * BT * C,
        .res1 = a->res1 + l * BT * C, .ln2 = a->ln2 + (pre ? f : l) * BT * C, .ln2_mean = a->ln2_mean + l * BT,
        .ln2_rstd = a->ln2_rstd + l * BT, .fch = a->fch + l * BT * F, .fch_gelu = a->fch_gelu + f * BT * F,
        .res2 = a->res2 + l * BT * C,
    };
}

static int any_grad(const layer_params *g) {
    return g->ln1_w || g->ln1_b || g->qkv_w || g->qkv_b || g->attproj_w || g->attproj_b || g->ln2_w || g->ln2_b ||
           g->fc_w || g->fc_b || g->fcproj_w || g->fcproj_b;
}

static const slex_hubert_lora_site *site_of(const slex_hubert *m, int l, int which) {
    return m->batch.lora ? &m->batch.lora[(int64_t)l * SLEX_HUBERT_LINEARS + which] : NULL;
}

static int layer_trainable(const slex_hubert *m, const slex_hubert_params *g, int l) {
    layer_params lg = layer_slice(g, l, m->cfg.hidden_size, m->cfg.intermediate_size);
    if (any_grad(&lg)) return 1;
    for (int j = 0; j < SLEX_HUBERT_LINEARS; j++) {
        const slex_hubert_lora_site *s = site_of(m, l, j);
        if (s && s->A && (s->dA || s->dB)) return 1;
    }
    return 0;
}

/* Backward of the LoRA branch of site s (if any) on top of slex_linear_backward. */
static void lora_backward_site(const slex_hubert_lora_site *s, float *dinp, const float *dout, int64_t ldo,
                               const float *inp, int64_t N, int IC, int OC, float *h, float *dh) {
    if (!s || !s->A || (!s->dA && !s->dB && !dinp)) return;
    slex_lora_hidden(h, inp, s->A, N, IC, s->r);
    slex_lora_backward(dinp, s->dA, s->dB, dh, dout, ldo, inp, h, s->A, s->B, s->scale, N, IC, OC, s->r);
}

/* A linear with its LoRA branch: dinp written (NULL: not needed), weight gradients accumulate. */
static void adapted_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                    const float *w, int64_t N, int IC, int OC, const slex_hubert_lora_site *s,
                                    float *h, float *dh) {
    slex_linear_backward(dinp, dw, db, dout, inp, w, N, IC, OC);
    lora_backward_site(s, dinp, dout, OC, inp, N, IC, OC, h, dh);
}

/* Layer l: m->dx holds the gradient of its output on entry and that of its input on return
 * (when need_dinp).  Buffers dy, dz, dqkv, dffn are scratch. */
static void layer_backward(slex_hubert *m, int l, slex_hubert_params *grads, int need_dinp, float *h, float *dh) {
    const slex_hubert_config *c = &m->cfg;
    int C = c->hidden_size, F = c->intermediate_size, H = c->num_attention_heads, B = m->batch.B;
    int64_t T = m->T, BT = B * T;
    layer_params p = layer_slice(&m->params, l, C, F), g = layer_slice(grads, l, C, F);
    layer_acts a = layer_view(m, l);
    const float *x = m->layer_in[l];
    float pd = m->batch.dropout, pa = m->batch.activation_dropout;
    uint64_t seed = m->batch.dropout_seed, ds = (uint64_t)l * DROP_LAYER;
    float *dx = m->dx, *dy = m->dy, *dz = m->dz, *dqkv = m->dqkv, *dffn = m->dffn;
    if (c->do_stable_layer_norm) {
        /* res2 = res1 + fc2(gelu(fc1(LN2(res1)))); res1 = x + out(attn(qkv(LN1(x)))) */
        memcpy(dz, dx, (size_t)(BT * C) * sizeof(float));
        apply_dropout(dz, BT * C, pd, seed, ds + DROP_FFN_OUT);
        adapted_linear_backward(dffn, g.fcproj_w, g.fcproj_b, dz, a.fch_gelu, p.fcproj_w, BT, F, C,
                                site_of(m, l, SLEX_HUBERT_FC2), h, dh);
        apply_dropout(dffn, BT * F, pa, seed, ds + DROP_ACT);
        slex_gelu_backward(dffn, dffn, a.fch, BT * F);
        adapted_linear_backward(dz, g.fc_w, g.fc_b, dffn, a.ln2, p.fc_w, BT, C, F, site_of(m, l, SLEX_HUBERT_FC1), h,
                                dh);
        slex_layernorm_backward(dy, g.ln2_w, g.ln2_b, dz, a.res1, p.ln2_w, a.ln2_mean, a.ln2_rstd, BT, C);
        slex_residual_forward(dy, dy, dx, BT * C);
    } else {
        /* ln2 = LN2(ln1 + fc2(gelu(fc1(ln1)))); ln1 = LN1(x + out(attn(qkv(x)))) */
        slex_layernorm_backward(dy, g.ln2_w, g.ln2_b, dx, a.res2, p.ln2_w, a.ln2_mean, a.ln2_rstd, BT, C);
        memcpy(dz, dy, (size_t)(BT * C) * sizeof(float));
        apply_dropout(dz, BT * C, pd, seed, ds + DROP_FFN_OUT);
        adapted_linear_backward(dffn, g.fcproj_w, g.fcproj_b, dz, a.fch_gelu, p.fcproj_w, BT, F, C,
                                site_of(m, l, SLEX_HUBERT_FC2), h, dh);
        apply_dropout(dffn, BT * F, pa, seed, ds + DROP_ACT);
        slex_gelu_backward(dffn, dffn, a.fch, BT * F);
        adapted_linear_backward(dz, g.fc_w, g.fc_b, dffn, a.ln1, p.fc_w, BT, C, F, site_of(m, l, SLEX_HUBERT_FC1), h,
                                dh);
        slex_residual_forward(dz, dz, dy, BT * C);
        slex_layernorm_backward(dy, g.ln1_w, g.ln1_b, dz, a.res1, p.ln1_w, a.ln1_mean, a.ln1_rstd, BT, C);
    }
    /* dy: gradient of res1 = x + drop(attproj) */
    memcpy(dqkv, dy, (size_t)(BT * C) * sizeof(float));
    apply_dropout(dqkv, BT * C, pd, seed, ds + DROP_ATTPROJ);
    adapted_linear_backward(dz, g.attproj_w, g.attproj_b, dqkv, a.atty, p.attproj_w, BT, C, C,
                            site_of(m, l, SLEX_HUBERT_OUT), h, dh);
    const float *att_drop = attention_dropout(m, &m->batch, l, (int64_t)H * B * T * T);
    slex_attention_backward(dqkv, dz, a.qkv, a.att, att_drop, B, T, C, H, m->datt);
    const float *att_in = c->do_stable_layer_norm ? a.ln1 : x;
    int pre_ln_norm = c->do_stable_layer_norm && (need_dinp || g.ln1_w || g.ln1_b);
    float *datt_in = c->do_stable_layer_norm ? (pre_ln_norm ? dz : NULL) : (need_dinp ? dx : NULL);
    slex_linear_backward(datt_in, g.qkv_w, g.qkv_b, dqkv, att_in, p.qkv_w, BT, C, 3 * C);
    for (int j = 0; j < 3; j++)
        lora_backward_site(site_of(m, l, SLEX_HUBERT_Q + j), datt_in, dqkv + j * C, 3 * C, att_in, BT, C, C, h, dh);
    if (pre_ln_norm)
        slex_layernorm_backward(need_dinp ? dx : NULL, g.ln1_w, g.ln1_b, dz, x, p.ln1_w, a.ln1_mean, a.ln1_rstd, BT,
                                C);
    if (need_dinp) slex_residual_forward(dx, dx, dy, BT * C);
}

static int any_conv_grad(const slex_hubert_params *g, int i) {
    return g->conv_w[i] || g->conv_b[i] || g->conv_norm_w[i] || g->conv_norm_b[i];
}

/* CNN backward from the gradient of the features in m->dconv[0]. */
static void cnn_backward(slex_hubert *m, slex_hubert_params *g) {
    const slex_hubert_config *c = &m->cfg;
    const slex_hubert_params *p = &m->params;
    const slex_hubert_acts *a = &m->acts;
    int B = m->batch.B, lowest = c->num_conv;
    for (int i = c->num_conv - 1; i >= 0; i--)
        if (any_conv_grad(g, i)) lowest = i;
    int64_t len[SLEX_HUBERT_MAX_CONV + 1];
    len[0] = m->batch.N;
    for (int i = 0; i < c->num_conv; i++) len[i + 1] = slex_conv_out_len(len[i], c->conv_kernel[i], c->conv_stride[i]);
    float *cur = m->dconv[0], *next = m->dconv[1];
    for (int i = c->num_conv - 1; i >= lowest; i--) {
        int cout = c->conv_dim[i], cin = i ? c->conv_dim[i - 1] : 1;
        int64_t To = len[i + 1];
        slex_gelu_backward(cur, cur, a->conv_norm[i], B * To * cout);
        if (p->conv_norm_w[i] && c->feat_extract_norm == SLEX_FEAT_NORM_GROUP)
            slex_groupnorm_backward(cur, g->conv_norm_w[i], g->conv_norm_b[i], cur, a->conv_out[i], p->conv_norm_w[i],
                                    a->conv_norm_mean[i], a->conv_norm_rstd[i], B, To, cout);
        else if (p->conv_norm_w[i])
            slex_layernorm_backward(cur, g->conv_norm_w[i], g->conv_norm_b[i], cur, a->conv_out[i], p->conv_norm_w[i],
                                    a->conv_norm_mean[i], a->conv_norm_rstd[i], B * To, cout);
        slex_conv1d_backward(i > lowest ? next : NULL, g->conv_w[i], g->conv_b[i], cur, i ? a->conv_gelu[i - 1] : a->wave,
                             p->conv_w[i], B, len[i], cin, cout, c->conv_kernel[i], c->conv_stride[i], a->scratch);
        float *t = cur;
        cur = next;
        next = t;
    }
}

int slex_hubert_backward(slex_hubert *m, const float *dout, const float *dfeatures, float feature_grad_mult,
                         slex_hubert_params *g, slex_error *err) {
    const slex_hubert_config *c = &m->cfg;
    const slex_hubert_params *p = &m->params;
    const slex_hubert_acts *a = &m->acts;
    if (m->T == 0) return slex_fail_as(err, SLEX_ERR_INTERNAL, "backward: no training forward to differentiate");
    int C = c->hidden_size, L = c->num_hidden_layers, B = m->batch.B, pre = c->do_stable_layer_norm;
    int Cf = c->conv_dim[c->num_conv - 1], Kp = c->num_conv_pos_embeddings, G = c->num_conv_pos_embedding_groups;
    int64_t T = m->T, BT = B * T;
    /* What needs a gradient, from the bottom up. */
    int cnn = 0;
    for (int i = 0; i < c->num_conv; i++) cnn |= any_conv_grad(g, i);
    cnn = cnn && feature_grad_mult != 0.0f;
    if (cnn && !m->opts.keep_cnn_activations)
        return slex_fail_as(err, SLEX_ERR_INTERNAL,
                            "backward: CNN gradients need the model loaded with keep_cnn_activations");
    int proj = cnn || g->proj_w || g->proj_b || g->proj_ln_w || g->proj_ln_b;
    int enc_in = proj || g->mask_emb || g->pos_conv_g || g->pos_conv_v || g->pos_conv_b ||
                 (!pre && (g->enc_ln_w || g->enc_ln_b));
    int lowest = L; /* lowest layer with a trainable tensor */
    for (int l = L - 1; l >= 0; l--)
        if (layer_trainable(m, g, l)) lowest = l;
    int f = m->opts.first_trained_layer;
    if (f > 0 && (enc_in || lowest < f))
        return slex_fail_as(err, SLEX_ERR_INTERNAL,
                            "backward: a gradient below layer %d was asked for (%s), but the model keeps "
                            "activations from first_trained_layer %d up",
                            f, enc_in ? "below the encoder layers" : "a trainable layer", f);
    for (int l = 0; ffn_in_shared(m) && l < L; l++) {
        layer_params lg = layer_slice(g, l, C, c->intermediate_size);
        const slex_hubert_lora_site *s1 = site_of(m, l, SLEX_HUBERT_FC1), *s2 = site_of(m, l, SLEX_HUBERT_FC2);
        if (lg.fc_w || lg.fcproj_w || (s1 && s1->A && (s1->dA || s1->dB)) || (s2 && s2->A && (s2->dA || s2->dB)))
            return slex_fail_as(err, SLEX_ERR_INTERNAL,
                                "backward: a gradient of layer %d's feed-forward weights was asked for, but the "
                                "model was loaded with frozen_ffn (their inputs are not kept)",
                                l + 1);
    }
    int r = max_lora_rank(m, &m->batch);
    float *h = r ? malloc((size_t)(2 * BT * r) * sizeof(float)) : NULL;
    if (r && !h) return slex_fail_as(err, SLEX_ERR_RESOURCE, "backward: out of memory for the LoRA activations");
    float *dh = h ? h + BT * r : NULL;

    /* Encoder output -> last layer (pre-LN: through the final LayerNorm). */
    if (pre)
        slex_layernorm_backward(m->dx, g->enc_ln_w, g->enc_ln_b, dout, m->top_in, p->enc_ln_w, a->enc_ln_mean,
                                a->enc_ln_rstd, BT, C);
    else
        memcpy(m->dx, dout, (size_t)(BT * C) * sizeof(float));
    for (int l = L - 1; l >= 0 && (l >= lowest || enc_in); l--) {
        if (m->batch.skip_layer && m->batch.skip_layer[l]) continue;
        layer_backward(m, l, g, enc_in || l > lowest, h, dh);
    }
    free(h);
    if (!enc_in) return 0;

    /* m->dx: gradient of the layers' input.  Post-LN: through the encoder LayerNorm; then
     * enc_in = proj + gelu(posconv(proj)). */
    float *dx = m->dx, *dy = m->dy, *dz = m->dz;
    apply_dropout(dx, BT * C, m->batch.dropout, m->batch.dropout_seed, DROP_ENC_IN);
    if (!pre)
        slex_layernorm_backward(dy, g->enc_ln_w, g->enc_ln_b, dx, a->enc_in, p->enc_ln_w, a->enc_ln_mean,
                                a->enc_ln_rstd, BT, C);
    else
        memcpy(dy, dx, (size_t)(BT * C) * sizeof(float));
    slex_gelu_backward(dz, dy, a->pos_conv, BT * C);
    int pos_w = g->pos_conv_g || g->pos_conv_v;
    if (pos_w) memset(m->dposw, 0, (size_t)C * (size_t)Kp * (size_t)(C / G) * sizeof(float));
    slex_posconv_backward(dx, pos_w ? m->dposw : NULL, g->pos_conv_b, dz, a->proj, m->pos_conv_w, B, T, C, Kp, G,
                          a->scratch);
    if (pos_w) slex_weightnorm_backward(g->pos_conv_g, g->pos_conv_v, m->dposw, p->pos_conv_g, p->pos_conv_v, C, C / G, Kp);
    slex_residual_forward(dx, dx, dy, BT * C);
    /* Masked frames took mask_emb instead of the projection. */
    if (m->batch.mask)
        for (int64_t t = 0; t < BT; t++) {
            if (!m->batch.mask[t]) continue;
            if (g->mask_emb) slex_residual_forward(g->mask_emb, g->mask_emb, dx + t * C, C);
            memset(dx + t * C, 0, (size_t)C * sizeof(float));
        }
    if (!proj) return 0;
    apply_dropout(dx, BT * C, m->batch.dropout, m->batch.dropout_seed, DROP_PROJ);

    /* Feature projection: proj = Linear(LN(features)). */
    const float *features = a->conv_gelu[c->num_conv - 1];
    int ln = c->feat_proj_layer_norm;
    float *dfeat = cnn ? m->dconv[0] : NULL;
    slex_linear_backward(ln ? (cnn || g->proj_ln_w || g->proj_ln_b ? dy : NULL) : dfeat, g->proj_w, g->proj_b, dx,
                         ln ? a->proj_ln : features, p->proj_w, BT, Cf, C);
    if (ln)
        slex_layernorm_backward(dfeat, g->proj_ln_w, g->proj_ln_b, dy, features, p->proj_ln_w, a->proj_ln_mean,
                                a->proj_ln_rstd, BT, Cf);
    if (!cnn) return 0;

    /* fairseq's GradMultiply on the features, after the feature penalty's gradient joined. */
    if (dfeatures) slex_residual_forward(dfeat, dfeat, dfeatures, BT * Cf);
    for (int64_t i = 0; i < BT * Cf; i++) dfeat[i] *= feature_grad_mult;
    cnn_backward(m, g);
    return 0;
}
