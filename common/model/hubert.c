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
    int64_t scratch_floats;
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

static float *alloc_acts(slex_hubert *m, int64_t N) {
    const slex_hubert_config *c = &m->cfg;
    slex_hubert_acts *a = &m->acts;
    int keep = m->opts.keep_activations;
    int64_t C = c->hidden_size, F = c->intermediate_size, H = c->num_attention_heads;
    int64_t Lk = keep ? c->num_hidden_layers : 1, Hk = keep ? H : 1;
    int64_t T = slex_hubert_chunk_frames(m, N), Cf = c->conv_dim[c->num_conv - 1];
    int64_t len[SLEX_HUBERT_MAX_CONV], ping = 0, pong = 0, scratch = 0;
    float *conv_ping = NULL, *conv_pong = NULL;
    slot s[MAX_SLOTS];
    int n = 0;
    s[n++] = (slot){&a->wave, N};
    int64_t tin = N;
    for (int i = 0; i < c->num_conv; i++) {
        int64_t cin = i ? c->conv_dim[i - 1] : 1, cout = c->conv_dim[i];
        int has_norm = c->feat_extract_norm == SLEX_FEAT_NORM_LAYER || i == 0;
        len[i] = slex_conv_out_len(tin, c->conv_kernel[i], c->conv_stride[i]);
        int64_t need = slex_conv1d_scratch_floats((int)cin, c->conv_kernel[i], c->conv_stride[i]);
        scratch = need > scratch ? need : scratch;
        if (keep) {
            s[n++] = (slot){&a->conv_out[i], len[i] * cout};
            s[n++] = (slot){&a->conv_norm[i], has_norm ? len[i] * cout : 0};
            s[n++] = (slot){&a->conv_gelu[i], len[i] * cout};
        } else if (i % 2 == 0) {
            ping = len[i] * cout > ping ? len[i] * cout : ping;
        } else {
            pong = len[i] * cout > pong ? len[i] * cout : pong;
        }
        int64_t stats = !has_norm ? 0 : c->feat_extract_norm == SLEX_FEAT_NORM_GROUP ? cout : len[i];
        s[n++] = (slot){&a->conv_norm_mean[i], stats};
        s[n++] = (slot){&a->conv_norm_rstd[i], stats};
        tin = len[i];
    }
    if (!keep) {
        s[n++] = (slot){&conv_ping, ping};
        s[n++] = (slot){&conv_pong, pong};
    }
    int64_t pos_scratch = slex_posconv_scratch_floats((int)C, c->num_conv_pos_embeddings, c->num_conv_pos_embedding_groups);
    scratch = pos_scratch > scratch ? pos_scratch : scratch;
    s[n++] = (slot){&a->proj_ln, keep && c->feat_proj_layer_norm ? T * Cf : 0};
    s[n++] = (slot){&a->proj_ln_mean, c->feat_proj_layer_norm ? T : 0};
    s[n++] = (slot){&a->proj_ln_rstd, c->feat_proj_layer_norm ? T : 0};
    s[n++] = (slot){&a->proj, T * C};
    s[n++] = (slot){&a->pos_conv, T * C};
    s[n++] = (slot){&a->enc_in, T * C};
    s[n++] = (slot){&a->enc_ln, T * C};
    s[n++] = (slot){&a->enc_ln_mean, T};
    s[n++] = (slot){&a->enc_ln_rstd, T};
    s[n++] = (slot){&a->ln1, Lk * T * C};
    s[n++] = (slot){&a->ln1_mean, Lk * T};
    s[n++] = (slot){&a->ln1_rstd, Lk * T};
    s[n++] = (slot){&a->qkv, Lk * T * 3 * C};
    s[n++] = (slot){&a->att, Lk * Hk * T * T};
    s[n++] = (slot){&a->atty, Lk * T * C};
    s[n++] = (slot){&a->attproj, Lk * T * C};
    s[n++] = (slot){&a->res1, Lk * T * C};
    s[n++] = (slot){&a->ln2, Lk * T * C};
    s[n++] = (slot){&a->ln2_mean, Lk * T};
    s[n++] = (slot){&a->ln2_rstd, Lk * T};
    s[n++] = (slot){&a->fch, Lk * T * F};
    s[n++] = (slot){&a->fch_gelu, keep ? Lk * T * F : 0};
    s[n++] = (slot){&a->fcproj, Lk * T * C};
    s[n++] = (slot){&a->res2, Lk * T * C};
    s[n++] = (slot){&a->scratch, scratch};
    int64_t total;
    float *mem = alloc_slots(s, n, &total);
    if (!mem) return NULL;
    m->scratch_floats = scratch;
    /* Without keep_activations the norm and GELU of each conv run in place and consecutive
     * convs alternate between two buffers; the projection LN and the FFN GELU run in place. */
    for (int i = 0; i < c->num_conv; i++) {
        int has_norm = c->feat_extract_norm == SLEX_FEAT_NORM_LAYER || i == 0;
        if (!keep) a->conv_out[i] = a->conv_gelu[i] = i % 2 == 0 ? conv_ping : conv_pong;
        a->conv_norm[i] = has_norm ? (keep ? a->conv_norm[i] : a->conv_out[i]) : a->conv_out[i];
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
    free(m);
}

slex_hubert *slex_hubert_load(const char *dir, const slex_hubert_load_options *opts, slex_error *err) {
    slex_hubert *m = calloc(1, sizeof *m);
    if (!m) {
        slex_fail(err, "%s: out of memory", dir);
        return NULL;
    }
    if (opts)
        m->opts = *opts;
    else
        slex_hubert_load_options_default(&m->opts);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (slex_hubert_config_load(path, &m->cfg, err) != 0) goto fail;
    const slex_hubert_config *c = &m->cfg;
    if (m->opts.max_chunk_samples < slex_hubert_receptive_field(m)) {
        slex_fail(err, "%s: max_chunk_samples %lld is shorter than the receptive field of %lld samples", dir,
                  (long long)m->opts.max_chunk_samples, (long long)slex_hubert_receptive_field(m));
        goto fail;
    }
    if (m->opts.normalize_waveform == SLEX_HUBERT_NORMALIZE_AUTO) {
        snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
        int do_normalize = 0;
        int rc = slex_hf_preprocessor_do_normalize(path, &do_normalize, err);
        if (rc < 0) goto fail;
        m->normalize = rc == 0 ? do_normalize : c->feat_extract_norm == SLEX_FEAT_NORM_LAYER;
    } else {
        m->normalize = m->opts.normalize_waveform ? 1 : 0;
    }
    m->params_memory = alloc_params(m);
    int64_t Cg = c->hidden_size / c->num_conv_pos_embedding_groups;
    m->pos_conv_w = malloc((size_t)c->hidden_size * (size_t)(Cg * c->num_conv_pos_embeddings) * sizeof(float));
    if (!m->params_memory || !m->pos_conv_w) {
        slex_fail(err, "%s: out of memory for %lld parameters", dir, (long long)m->num_params);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (slex_hubert_read_weights(path, c, &m->params, m->opts.ignore_unexpected, err) != 0) goto fail;
    slex_weightnorm_forward(m->pos_conv_w, m->params.pos_conv_g, m->params.pos_conv_v, c->hidden_size, (int)Cg,
                        c->num_conv_pos_embeddings);
    m->max_samples = m->opts.max_chunk_samples;
    m->acts_memory = alloc_acts(m, m->max_samples);
    if (!m->acts_memory) {
        slex_fail(err, "%s: out of memory for the activations of %lld samples%s", dir, (long long)m->max_samples,
                  m->opts.keep_activations ? " (keep_activations keeps every layer's attention: use a "
                                             "max_chunk_samples sized for training crops)" : "");
        goto fail;
    }
    return m;
fail:
    slex_hubert_free(m);
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Forward */

/* One chunk of n samples (already normalised if asked) through the model up to `layer`;
 * writes (T, C) to out and returns T. */
static int64_t forward_chunk(slex_hubert *m, int64_t n, int layer, float *out) {
    const slex_hubert_config *c = &m->cfg;
    const slex_hubert_params *p = &m->params;
    slex_hubert_acts *a = &m->acts;
    int keep = m->opts.keep_activations;
    int C = c->hidden_size, F = c->intermediate_size, H = c->num_attention_heads, L = c->num_hidden_layers;

    /* Feature extractor: (N) -> (T, Cf) */
    const float *x = a->wave;
    int64_t T = n;
    int cin = 1;
    for (int i = 0; i < c->num_conv; i++) {
        int cout = c->conv_dim[i];
        int64_t To = slex_conv_out_len(T, c->conv_kernel[i], c->conv_stride[i]);
        slex_conv1d_forward(a->conv_out[i], x, p->conv_w[i], p->conv_b[i], 1, T, cin, cout, c->conv_kernel[i],
                       c->conv_stride[i], a->scratch);
        if (p->conv_norm_w[i] && c->feat_extract_norm == SLEX_FEAT_NORM_GROUP)
            slex_groupnorm_forward(a->conv_norm[i], a->conv_norm_mean[i], a->conv_norm_rstd[i], a->conv_out[i],
                                   p->conv_norm_w[i], p->conv_norm_b[i], 1, To, cout, CONV_NORM_EPS);
        else if (p->conv_norm_w[i])
            slex_layernorm_forward(a->conv_norm[i], a->conv_norm_mean[i], a->conv_norm_rstd[i], a->conv_out[i],
                              p->conv_norm_w[i], p->conv_norm_b[i], To, cout, CONV_NORM_EPS);
        slex_gelu_forward(a->conv_gelu[i], a->conv_norm[i], To * cout);
        x = a->conv_gelu[i];
        T = To;
        cin = cout;
    }

    /* Feature projection: (T, Cf) -> (T, C) */
    if (c->feat_proj_layer_norm) {
        slex_layernorm_forward(a->proj_ln, a->proj_ln_mean, a->proj_ln_rstd, x, p->proj_ln_w, p->proj_ln_b, T, cin,
                          c->layer_norm_eps);
        x = a->proj_ln;
    }
    slex_linear_forward(a->proj, x, p->proj_w, p->proj_b, T, cin, C);

    /* Positional conv embedding: enc_in = proj + gelu(posconv(proj)) (T, C) */
    slex_posconv_forward(a->pos_conv, a->proj, m->pos_conv_w, p->pos_conv_b, 1, T, C, c->num_conv_pos_embeddings,
                         c->num_conv_pos_embedding_groups, a->scratch);
    slex_gelu_forward(a->enc_in, a->pos_conv, T * C);
    slex_residual_forward(a->enc_in, a->enc_in, a->proj, T * C);
    x = a->enc_in;
    if (!c->do_stable_layer_norm) {
        slex_layernorm_forward(a->enc_ln, a->enc_ln_mean, a->enc_ln_rstd, x, p->enc_ln_w, p->enc_ln_b, T, C,
                          c->layer_norm_eps);
        x = a->enc_ln;
    }

    int last = layer == SLEX_HUBERT_LAST_HIDDEN_STATE ? L : layer;
    int64_t sTC = keep ? T * C : 0, sT = keep ? T : 0, sTF = keep ? T * F : 0;
    for (int l = 0; l < last; l++) {
        float *ln1 = a->ln1 + l * sTC, *ln1_mean = a->ln1_mean + l * sT, *ln1_rstd = a->ln1_rstd + l * sT;
        float *qkv = a->qkv + 3 * l * sTC, *att = a->att + l * (keep ? (int64_t)H * T * T : 0);
        float *atty = a->atty + l * sTC, *attproj = a->attproj + l * sTC, *res1 = a->res1 + l * sTC;
        float *ln2 = a->ln2 + l * sTC, *ln2_mean = a->ln2_mean + l * sT, *ln2_rstd = a->ln2_rstd + l * sT;
        float *fch = a->fch + l * sTF, *fch_gelu = a->fch_gelu + l * sTF, *fcproj = a->fcproj + l * sTC;
        float *res2 = a->res2 + l * sTC;
        const float *ln1_w = p->ln1_w + (int64_t)l * C, *ln1_b = p->ln1_b + (int64_t)l * C;
        const float *ln2_w = p->ln2_w + (int64_t)l * C, *ln2_b = p->ln2_b + (int64_t)l * C;
        const float *qkv_w = p->qkv_w + (int64_t)l * 3 * C * C, *qkv_b = p->qkv_b + (int64_t)l * 3 * C;
        const float *attproj_w = p->attproj_w + (int64_t)l * C * C, *attproj_b = p->attproj_b + (int64_t)l * C;
        const float *fc_w = p->fc_w + (int64_t)l * F * C, *fc_b = p->fc_b + (int64_t)l * F;
        const float *fcproj_w = p->fcproj_w + (int64_t)l * C * F, *fcproj_b = p->fcproj_b + (int64_t)l * C;
        if (c->do_stable_layer_norm) {
            /* pre-LN: res1 = x + attn(LN1(x)); res2 = res1 + ffn(LN2(res1)) */
            slex_layernorm_forward(ln1, ln1_mean, ln1_rstd, x, ln1_w, ln1_b, T, C, c->layer_norm_eps);
            slex_linear_forward(qkv, ln1, qkv_w, qkv_b, T, C, 3 * C);
            slex_attention_forward(atty, att, keep ? T * T : 0, qkv, NULL, 1, T, C, H, NULL);
            slex_linear_forward(attproj, atty, attproj_w, attproj_b, T, C, C);
            slex_residual_forward(res1, x, attproj, T * C);
            slex_layernorm_forward(ln2, ln2_mean, ln2_rstd, res1, ln2_w, ln2_b, T, C, c->layer_norm_eps);
            slex_linear_forward(fch, ln2, fc_w, fc_b, T, C, F);
            slex_gelu_forward(fch_gelu, fch, T * F);
            slex_linear_forward(fcproj, fch_gelu, fcproj_w, fcproj_b, T, F, C);
            slex_residual_forward(res2, res1, fcproj, T * C);
            x = res2;
        } else {
            /* post-LN: ln1 = LN1(x + attn(x)); ln2 = LN2(ln1 + ffn(ln1)) */
            slex_linear_forward(qkv, x, qkv_w, qkv_b, T, C, 3 * C);
            slex_attention_forward(atty, att, keep ? T * T : 0, qkv, NULL, 1, T, C, H, NULL);
            slex_linear_forward(attproj, atty, attproj_w, attproj_b, T, C, C);
            slex_residual_forward(res1, x, attproj, T * C);
            slex_layernorm_forward(ln1, ln1_mean, ln1_rstd, res1, ln1_w, ln1_b, T, C, c->layer_norm_eps);
            slex_linear_forward(fch, ln1, fc_w, fc_b, T, C, F);
            slex_gelu_forward(fch_gelu, fch, T * F);
            slex_linear_forward(fcproj, fch_gelu, fcproj_w, fcproj_b, T, F, C);
            slex_residual_forward(res2, ln1, fcproj, T * C);
            slex_layernorm_forward(ln2, ln2_mean, ln2_rstd, res2, ln2_w, ln2_b, T, C, c->layer_norm_eps);
            x = ln2;
        }
    }
    if (layer == SLEX_HUBERT_LAST_HIDDEN_STATE && c->do_stable_layer_norm) {
        slex_layernorm_forward(a->enc_ln, a->enc_ln_mean, a->enc_ln_rstd, x, p->enc_ln_w, p->enc_ln_b, T, C,
                          c->layer_norm_eps);
        x = a->enc_ln;
    }
    memcpy(out, x, (size_t)(T * C) * sizeof(float));
    return T;
}

int slex_hubert_forward(slex_hubert *m, const float *wave, int64_t n, int layer, float *out, int64_t *T_out,
                        slex_error *err) {
    const slex_hubert_config *c = &m->cfg;
    if (layer != SLEX_HUBERT_LAST_HIDDEN_STATE && (layer < 0 || layer > c->num_hidden_layers))
        return slex_fail(err, "layer %d is out of range: the model has %d transformer layers (1..%d, 0 = "
                              "transformer input, %d = last hidden state)",
                         layer, c->num_hidden_layers, c->num_hidden_layers, SLEX_HUBERT_LAST_HIDDEN_STATE);
    int64_t rf = slex_hubert_receptive_field(m);
    if (n < rf)
        return slex_fail(err, "waveform of %lld samples is shorter than the model's receptive field of %lld samples",
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
