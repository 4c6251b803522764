#include "model/model.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

/* The norms inside the conv stack use torch's default eps, not config.layer_norm_eps
 * (HF builds nn.GroupNorm / nn.LayerNorm there without passing the config's eps). */
#define CONV_NORM_EPS 1e-5f
/* fairseq normalises the waveform with F.layer_norm(x, x.shape), i.e. eps 1e-5. */
#define WAVE_NORM_EPS 1e-5
/* Rows per im2col block: bounds the scratch to a few MB whatever the chunk length. */
#define IM2COL_ROWS 512
/* Below this many input channels a per-tap sgemm has too short an inner dimension, so the
 * window is copied out (im2col) and multiplied once. */
#define MIN_CHANNELS_PER_TAP 32

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

void slex_hubert_load_options_default(slex_hubert_load_options *opts) {
    opts->ignore_unexpected = 0;
    opts->normalize_waveform = SLEX_HUBERT_NORMALIZE_AUTO;
    opts->max_chunk_samples = SLEX_HUBERT_DEFAULT_MAX_CHUNK;
    opts->keep_activations = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Shapes */

static int64_t conv_out_len(int64_t n, int k, int s) { return n < k ? 0 : (n - k) / s + 1; }

int64_t slex_hubert_chunk_frames(const slex_hubert *m, int64_t n) {
    for (int i = 0; i < m->cfg.num_conv; i++) n = conv_out_len(n, m->cfg.conv_kernel[i], m->cfg.conv_stride[i]);
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
/* Kernels.  Every activation is time-major: row t holds the C channels of frame t. */

/* out (To, Co) = conv1d(inp (Ti, Ci), w (Co, K, Ci), stride S) + bias (Co or NULL);
 * To = (Ti - K) / S + 1.  Row t of the im2col matrix is inp rows [tS, tS+K) flattened, so:
 * S >= K: the input itself is the im2col matrix with leading dimension S*Ci (one sgemm);
 * Ci small: copy blocks of windows to scratch (IM2COL_ROWS x K*Ci) and multiply;
 * otherwise: one sgemm per tap k over the strided rows inp[tS+k], against w[:, k, :]. */
static void conv1d_forward(float *out, const float *inp, const float *w, const float *bias, int64_t Ti, int Ci,
                           int Co, int K, int S, float *scratch) {
    int64_t To = conv_out_len(Ti, K, S);
    for (int64_t t = 0; t < To; t++) {
        float *row = out + t * Co;
        if (bias)
            memcpy(row, bias, (size_t)Co * sizeof(float));
        else
            memset(row, 0, (size_t)Co * sizeof(float));
    }
    int window = K * Ci;
    if (S >= K) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)To, Co, window, 1.0f, inp, S * Ci, w, window, 1.0f,
                    out, Co);
    } else if (Ci < MIN_CHANNELS_PER_TAP) {
        for (int64_t t0 = 0; t0 < To; t0 += IM2COL_ROWS) {
            int rows = (int)(To - t0 < IM2COL_ROWS ? To - t0 : IM2COL_ROWS);
            for (int r = 0; r < rows; r++)
                memcpy(scratch + (int64_t)r * window, inp + (t0 + r) * S * Ci, (size_t)window * sizeof(float));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, Co, window, 1.0f, scratch, window, w, window,
                        1.0f, out + t0 * Co, Co);
        }
    } else {
        for (int k = 0; k < K; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)To, Co, Ci, 1.0f, inp + (int64_t)k * Ci, S * Ci,
                        w + (int64_t)k * Ci, window, 1.0f, out, Co);
    }
}

/* Four-float vectors (GCC vector extension: SSE2 on x86-64 whatever the build machine, so the
 * results do not depend on it).  The elementwise maths below (exp, erf) runs four lanes at a
 * time; libm's scalar erff/expf would cost more than the convolutions they follow. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f v4_load(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void v4_store(float *p, v4f v) { memcpy(p, &v, sizeof v); }
static inline v4f v4_splat(float x) { return (v4f){x, x, x, x}; }
static inline v4f v4_select(v4i mask, v4f a, v4f b) { return (v4f)((mask & (v4i)a) | (~mask & (v4i)b)); }
static inline v4f v4_max(v4f a, v4f b) { return v4_select(a > b, a, b); }
static inline float v4_hsum(v4f v) { return (v[0] + v[1]) + (v[2] + v[3]); }

/* exp(x) for x <= 0, relative error < 3e-7: x = n ln2 + r, |r| <= ln2/2, 2^n built in the
 * exponent bits, e^r by its degree-6 Taylor polynomial.  Below -87 it returns ~e^-87. */
static inline v4f v4_exp_nonpos(v4f x) {
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    x = v4_max(x, v4_splat(-87.0f));
    v4f t = x * 1.44269504f + shifter;
    v4f n = t - shifter;
    v4f r = x - n * 0.693145752f - n * 1.42860677e-06f; /* ln2 split in two for accuracy */
    v4f p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    v4i scale = (((v4i)t - 0x4B400000) + 127) << 23;
    return p * (v4f)scale;
}

/* erf(x), absolute error < 5e-7: the odd rational minimax approximation x P(x^2) / Q(x^2) on
 * [-4, 4] used by XLA/Eigen for float erf; |erf| rounds to 1 beyond 4. */
static inline v4f v4_erf(v4f x) {
    x = v4_max(x, v4_splat(-4.0f));
    x = -v4_max(-x, v4_splat(-4.0f));
    v4f x2 = x * x;
    v4f p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
    p = x2 * p - 2.10102402082508e-06f;
    p = x2 * p - 5.69250639462346e-05f;
    p = x2 * p - 7.34990630326855e-04f;
    p = x2 * p - 2.95459980854025e-03f;
    p = x2 * p - 1.60960333262415e-02f;
    v4f q = x2 * -1.45660718464996e-05f - 2.13374055278905e-04f;
    q = x2 * q - 1.68282697438203e-03f;
    q = x2 * q - 7.37332916720468e-03f;
    q = x2 * q - 1.42647390514189e-02f;
    return x * p / q;
}

static inline v4f v4_gelu(v4f x) { return 0.5f * x * (1.0f + v4_erf(x * (float)M_SQRT1_2)); }

/* GroupNorm with one group per channel: each channel normalised over all T frames.
 * out (T, C), mean (C), rstd (C), inp (T, C), w/b (C).  out may alias inp.  Sums run in float
 * over blocks of ROWS frames and are carried across blocks in double. */
static void groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                              int64_t T, int C, float eps) {
    enum { BLOCK = 256, ROWS = 64 };
    for (int c0 = 0; c0 < C; c0 += BLOCK) {
        int nc = C - c0 < BLOCK ? C - c0 : BLOCK, nv = nc / 4 * 4;
        double sum[BLOCK] = {0}, sq[BLOCK] = {0};
        float m[BLOCK];
        for (int pass = 0; pass < 2; pass++) {
            double *acc = pass == 0 ? sum : sq;
            for (int64_t t0 = 0; t0 < T; t0 += ROWS) {
                float part[BLOCK] = {0};
                int64_t t1 = t0 + ROWS < T ? t0 + ROWS : T;
                for (int64_t t = t0; t < t1; t++) {
                    const float *x = inp + t * C + c0;
                    int c = 0;
                    for (; c < nv; c += 4) {
                        v4f v = v4_load(x + c);
                        if (pass == 1) v -= v4_load(m + c);
                        v4_store(part + c, v4_load(part + c) + (pass == 0 ? v : v * v));
                    }
                    for (; c < nc; c++) part[c] += pass == 0 ? x[c] : (x[c] - m[c]) * (x[c] - m[c]);
                }
                for (int c = 0; c < nc; c++) acc[c] += part[c];
            }
            if (pass == 0)
                for (int c = 0; c < nc; c++) m[c] = (float)(sum[c] / (double)T);
        }
        float scale[BLOCK], shift[BLOCK];
        for (int c = 0; c < nc; c++) {
            double r = 1.0 / sqrt(sq[c] / (double)T + eps);
            mean[c0 + c] = m[c];
            rstd[c0 + c] = (float)r;
            scale[c] = (float)(r * w[c0 + c]);
            shift[c] = (float)(b[c0 + c] - m[c] * r * w[c0 + c]);
        }
        for (int64_t t = 0; t < T; t++) {
            const float *x = inp + t * C + c0;
            float *y = out + t * C + c0;
            int c = 0;
            for (; c < nv; c += 4) v4_store(y + c, v4_load(x + c) * v4_load(scale + c) + v4_load(shift + c));
            for (; c < nc; c++) y[c] = x[c] * scale[c] + shift[c];
        }
    }
}

/* LayerNorm over channels: out (T, C), mean (T), rstd (T), inp (T, C), w/b (C).
 * out may alias inp (each row's statistics are taken before it is written). */
static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                              int64_t T, int C, float eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *x = inp + t * C;
        float *y = out + t * C;
        double s = 0.0, sq = 0.0;
        for (int c = 0; c < C; c++) s += x[c];
        double m = s / C;
        for (int c = 0; c < C; c++) sq += (x[c] - m) * (x[c] - m);
        float r = (float)(1.0 / sqrt(sq / C + eps)), mf = (float)m;
        for (int c = 0; c < C; c++) y[c] = (x[c] - mf) * r * w[c] + b[c];
        mean[t] = mf;
        rstd[t] = r;
    }
}

/* Exact (erf) GELU: out (N), inp (N); out may alias inp. */
static void gelu_forward(float *out, const float *inp, int64_t N) {
    int64_t i = 0;
    for (; i + 4 <= N; i += 4) v4_store(out + i, v4_gelu(v4_load(inp + i)));
    if (i < N) {
        float tail[4] = {0};
        memcpy(tail, inp + i, (size_t)(N - i) * sizeof(float));
        v4_store(tail, v4_gelu(v4_load(tail)));
        memcpy(out + i, tail, (size_t)(N - i) * sizeof(float));
    }
}

/* out (N) = a (N) + b (N); out may alias either. */
static void residual_forward(float *out, const float *a, const float *b, int64_t N) {
    int64_t i = 0;
    for (; i + 4 <= N; i += 4) v4_store(out + i, v4_load(a + i) + v4_load(b + i));
    for (; i < N; i++) out[i] = a[i] + b[i];
}

/* In-place softmax of each row: att (R, T). */
static void softmax_forward(float *att, int64_t R, int64_t T) {
    for (int64_t i = 0; i < R; i++) {
        float *row = att + i * T;
        int64_t j = 0, nv = T / 4 * 4;
        float mx = row[0];
        if (nv) {
            v4f m = v4_load(row);
            for (j = 4; j < nv; j += 4) m = v4_max(m, v4_load(row + j));
            for (int k = 0; k < 4; k++) mx = m[k] > mx ? m[k] : mx;
        }
        for (j = nv; j < T; j++) mx = row[j] > mx ? row[j] : mx;
        v4f acc = v4_splat(0.0f), vmx = v4_splat(mx);
        for (j = 0; j < nv; j += 4) {
            v4f e = v4_exp_nonpos(v4_load(row + j) - vmx);
            v4_store(row + j, e);
            acc += e;
        }
        float sum = v4_hsum(acc);
        for (j = nv; j < T; j++) {
            row[j] = v4_exp_nonpos(v4_splat(row[j] - mx))[0];
            sum += row[j];
        }
        v4f inv = v4_splat(1.0f / sum);
        for (j = 0; j < nv; j += 4) v4_store(row + j, v4_load(row + j) * inv);
        for (j = nv; j < T; j++) row[j] *= inv[0];
    }
}

/* out (T, OC) = inp (T, IC) @ w^T (OC, IC) + bias (OC). */
static void linear_forward(float *out, const float *inp, const float *w, const float *bias, int64_t T, int IC, int OC) {
    for (int64_t t = 0; t < T; t++) memcpy(out + t * OC, bias, (size_t)OC * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, OC, IC, 1.0f, inp, IC, w, IC, 1.0f, out, OC);
}

/* Multi-head self-attention without masking (one utterance, no padding).
 * out (T, C) = concat_h softmax(q_h k_h^T / sqrt(hd)) v_h, att (H, T, T) probabilities,
 * qkv (T, 3C) = [q | k | v].  att_head_stride is T*T to keep every head's probabilities, or 0
 * to reuse one (T, T) buffer. */
static void attention_forward(float *out, float *att, int64_t att_head_stride, const float *qkv, int64_t T, int C,
                              int H) {
    int hd = C / H;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < H; h++) {
        float *a = att + h * att_head_stride;
        const float *q = qkv + h * hd, *k = qkv + C + h * hd, *v = qkv + 2 * C + h * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, hd, scale, q, 3 * C, k, 3 * C, 0.0f, a,
                    (int)T);
        softmax_forward(a, T, T);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, hd, (int)T, 1.0f, a, (int)T, v, 3 * C, 0.0f,
                    out + h * hd, C);
    }
}

/* Weight norm over dim 2 (per tap): w[o, k, c] = g[k] * v[o, c, k] / ||v[:, :, k]||_F.
 * w (C, K, Cg) in the im2col layout, g (K), v (C, Cg, K) as stored in the checkpoint. */
static void weight_norm_forward(float *w, const float *g, const float *v, int C, int Cg, int K) {
    for (int k = 0; k < K; k++) {
        double sq = 0.0;
        for (int64_t i = 0; i < (int64_t)C * Cg; i++) sq += (double)v[i * K + k] * v[i * K + k];
        double scale = sq > 0.0 ? g[k] / sqrt(sq) : 0.0;
        for (int o = 0; o < C; o++)
            for (int c = 0; c < Cg; c++)
                w[((int64_t)o * K + k) * Cg + c] = (float)(v[((int64_t)o * Cg + c) * K + k] * scale);
    }
}

/* Grouped "same" conv of the positional embedding: out (T, C) = conv(inp (T, C), w (C, K, Cg),
 * padding K/2 both sides, G groups) + bias, keeping the first T outputs (an even kernel gives
 * T+1 and the last is dropped).  Windows are copied to scratch (IM2COL_ROWS x K*Cg) per group. */
static void pos_conv_forward(float *out, const float *inp, const float *w, const float *bias, int64_t T, int C, int K,
                             int G, float *scratch) {
    int Cg = C / G, pad = K / 2, window = K * Cg;
    for (int64_t t = 0; t < T; t++) memcpy(out + t * C, bias, (size_t)C * sizeof(float));
    for (int g = 0; g < G; g++) {
        for (int64_t t0 = 0; t0 < T; t0 += IM2COL_ROWS) {
            int rows = (int)(T - t0 < IM2COL_ROWS ? T - t0 : IM2COL_ROWS);
            for (int r = 0; r < rows; r++) {
                float *col = scratch + (int64_t)r * window;
                for (int k = 0; k < K; k++) {
                    int64_t src = t0 + r + k - pad;
                    if (src < 0 || src >= T)
                        memset(col + (int64_t)k * Cg, 0, (size_t)Cg * sizeof(float));
                    else
                        memcpy(col + (int64_t)k * Cg, inp + src * C + (int64_t)g * Cg, (size_t)Cg * sizeof(float));
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, Cg, window, 1.0f, scratch, window,
                        w + (int64_t)g * Cg * window, window, 1.0f, out + t0 * C + (int64_t)g * Cg, C);
        }
    }
}

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
    const slex_hubert_config *c = &m->cfg;
    slex_hubert_params *p = &m->params;
    int64_t C = c->hidden_size, F = c->intermediate_size, L = c->num_hidden_layers, Kp = c->num_conv_pos_embeddings;
    int64_t Cf = c->conv_dim[c->num_conv - 1], Cg = C / c->num_conv_pos_embedding_groups;
    slot s[MAX_SLOTS];
    int n = 0;
    for (int i = 0; i < c->num_conv; i++) {
        int64_t cin = i ? c->conv_dim[i - 1] : 1, cout = c->conv_dim[i];
        int has_norm = c->feat_extract_norm == SLEX_FEAT_NORM_LAYER || i == 0;
        s[n++] = (slot){&p->conv_w[i], cout * c->conv_kernel[i] * cin};
        s[n++] = (slot){&p->conv_b[i], c->conv_bias ? cout : 0};
        s[n++] = (slot){&p->conv_norm_w[i], has_norm ? cout : 0};
        s[n++] = (slot){&p->conv_norm_b[i], has_norm ? cout : 0};
    }
    s[n++] = (slot){&p->proj_ln_w, c->feat_proj_layer_norm ? Cf : 0};
    s[n++] = (slot){&p->proj_ln_b, c->feat_proj_layer_norm ? Cf : 0};
    s[n++] = (slot){&p->proj_w, C * Cf};
    s[n++] = (slot){&p->proj_b, C};
    s[n++] = (slot){&p->pos_conv_g, Kp};
    s[n++] = (slot){&p->pos_conv_v, C * Cg * Kp};
    s[n++] = (slot){&p->pos_conv_b, C};
    s[n++] = (slot){&p->enc_ln_w, C};
    s[n++] = (slot){&p->enc_ln_b, C};
    s[n++] = (slot){&p->ln1_w, L * C};
    s[n++] = (slot){&p->ln1_b, L * C};
    s[n++] = (slot){&p->qkv_w, L * 3 * C * C};
    s[n++] = (slot){&p->qkv_b, L * 3 * C};
    s[n++] = (slot){&p->attproj_w, L * C * C};
    s[n++] = (slot){&p->attproj_b, L * C};
    s[n++] = (slot){&p->ln2_w, L * C};
    s[n++] = (slot){&p->ln2_b, L * C};
    s[n++] = (slot){&p->fc_w, L * F * C};
    s[n++] = (slot){&p->fc_b, L * F};
    s[n++] = (slot){&p->fcproj_w, L * C * F};
    s[n++] = (slot){&p->fcproj_b, L * C};
    s[n++] = (slot){&p->mask_emb, C};
    return alloc_slots(s, n, &m->num_params);
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
        len[i] = conv_out_len(tin, c->conv_kernel[i], c->conv_stride[i]);
        if (c->conv_stride[i] < c->conv_kernel[i] && cin < MIN_CHANNELS_PER_TAP) {
            int64_t need = IM2COL_ROWS * c->conv_kernel[i] * cin;
            scratch = need > scratch ? need : scratch;
        }
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
    int64_t pos_scratch = IM2COL_ROWS * (int64_t)c->num_conv_pos_embeddings * (C / c->num_conv_pos_embedding_groups);
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

/* ---------------------------------------------------------------------------------------- */
/* Loading */

typedef enum { COPY, CONV_TAPS } load_kind;

typedef struct {
    char name[160];
    float *dst;
    int ndim;
    int64_t shape[3];
    load_kind kind;
    int optional;
} param_entry;

static void add_entry(param_entry *e, int *n, float *dst, load_kind kind, int optional, int ndim, int64_t d0,
                      int64_t d1, int64_t d2, const char *fmt, ...) __attribute__((format(printf, 10, 11)));

static void add_entry(param_entry *e, int *n, float *dst, load_kind kind, int optional, int ndim, int64_t d0,
                      int64_t d1, int64_t d2, const char *fmt, ...) {
    param_entry *x = &e[(*n)++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->name, sizeof x->name, fmt, ap);
    va_end(ap);
    x->dst = dst;
    x->kind = kind;
    x->optional = optional;
    x->ndim = ndim;
    x->shape[0] = d0;
    x->shape[1] = d1;
    x->shape[2] = d2;
}

/* The HubertModel tensors this config needs, with where each one goes.  The positional conv
 * magnitude/direction names depend on the torch version that saved the file (pos_g, pos_v). */
static int build_entries(slex_hubert *m, param_entry *e, const char *pos_g, const char *pos_v) {
    const slex_hubert_config *c = &m->cfg;
    slex_hubert_params *p = &m->params;
    int64_t C = c->hidden_size, F = c->intermediate_size, Kp = c->num_conv_pos_embeddings;
    int64_t Cf = c->conv_dim[c->num_conv - 1], Cg = C / c->num_conv_pos_embedding_groups;
    int n = 0;
    for (int i = 0; i < c->num_conv; i++) {
        int64_t cin = i ? c->conv_dim[i - 1] : 1, cout = c->conv_dim[i];
        add_entry(e, &n, p->conv_w[i], CONV_TAPS, 0, 3, cout, cin, c->conv_kernel[i],
                  "feature_extractor.conv_layers.%d.conv.weight", i);
        if (c->conv_bias)
            add_entry(e, &n, p->conv_b[i], COPY, 0, 1, cout, 0, 0, "feature_extractor.conv_layers.%d.conv.bias", i);
        if (p->conv_norm_w[i]) {
            add_entry(e, &n, p->conv_norm_w[i], COPY, 0, 1, cout, 0, 0,
                      "feature_extractor.conv_layers.%d.layer_norm.weight", i);
            add_entry(e, &n, p->conv_norm_b[i], COPY, 0, 1, cout, 0, 0,
                      "feature_extractor.conv_layers.%d.layer_norm.bias", i);
        }
    }
    if (c->feat_proj_layer_norm) {
        add_entry(e, &n, p->proj_ln_w, COPY, 0, 1, Cf, 0, 0, "feature_projection.layer_norm.weight");
        add_entry(e, &n, p->proj_ln_b, COPY, 0, 1, Cf, 0, 0, "feature_projection.layer_norm.bias");
    }
    add_entry(e, &n, p->proj_w, COPY, 0, 2, C, Cf, 0, "feature_projection.projection.weight");
    add_entry(e, &n, p->proj_b, COPY, 0, 1, C, 0, 0, "feature_projection.projection.bias");
    if (pos_g) add_entry(e, &n, p->pos_conv_g, COPY, 0, 3, 1, 1, Kp, "encoder.pos_conv_embed.conv.%s", pos_g);
    add_entry(e, &n, p->pos_conv_v, COPY, 0, 3, C, Cg, Kp, "encoder.pos_conv_embed.conv.%s", pos_v);
    add_entry(e, &n, p->pos_conv_b, COPY, 0, 1, C, 0, 0, "encoder.pos_conv_embed.conv.bias");
    add_entry(e, &n, p->enc_ln_w, COPY, 0, 1, C, 0, 0, "encoder.layer_norm.weight");
    add_entry(e, &n, p->enc_ln_b, COPY, 0, 1, C, 0, 0, "encoder.layer_norm.bias");
    static const char *qkv_names[3] = {"q_proj", "k_proj", "v_proj"};
    for (int l = 0; l < c->num_hidden_layers; l++) {
        for (int j = 0; j < 3; j++) {
            add_entry(e, &n, p->qkv_w + ((int64_t)l * 3 + j) * C * C, COPY, 0, 2, C, C, 0,
                      "encoder.layers.%d.attention.%s.weight", l, qkv_names[j]);
            add_entry(e, &n, p->qkv_b + ((int64_t)l * 3 + j) * C, COPY, 0, 1, C, 0, 0,
                      "encoder.layers.%d.attention.%s.bias", l, qkv_names[j]);
        }
        add_entry(e, &n, p->attproj_w + l * C * C, COPY, 0, 2, C, C, 0, "encoder.layers.%d.attention.out_proj.weight", l);
        add_entry(e, &n, p->attproj_b + l * C, COPY, 0, 1, C, 0, 0, "encoder.layers.%d.attention.out_proj.bias", l);
        add_entry(e, &n, p->ln1_w + l * C, COPY, 0, 1, C, 0, 0, "encoder.layers.%d.layer_norm.weight", l);
        add_entry(e, &n, p->ln1_b + l * C, COPY, 0, 1, C, 0, 0, "encoder.layers.%d.layer_norm.bias", l);
        add_entry(e, &n, p->fc_w + l * F * C, COPY, 0, 2, F, C, 0,
                  "encoder.layers.%d.feed_forward.intermediate_dense.weight", l);
        add_entry(e, &n, p->fc_b + l * F, COPY, 0, 1, F, 0, 0, "encoder.layers.%d.feed_forward.intermediate_dense.bias", l);
        add_entry(e, &n, p->fcproj_w + l * C * F, COPY, 0, 2, C, F, 0,
                  "encoder.layers.%d.feed_forward.output_dense.weight", l);
        add_entry(e, &n, p->fcproj_b + l * C, COPY, 0, 1, C, 0, 0, "encoder.layers.%d.feed_forward.output_dense.bias", l);
        add_entry(e, &n, p->ln2_w + l * C, COPY, 0, 1, C, 0, 0, "encoder.layers.%d.final_layer_norm.weight", l);
        add_entry(e, &n, p->ln2_b + l * C, COPY, 0, 1, C, 0, 0, "encoder.layers.%d.final_layer_norm.bias", l);
    }
    add_entry(e, &n, p->mask_emb, COPY, 1, 1, C, 0, 0, "masked_spec_embed");
    return n;
}

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

static int load_entry(slex_safetensors *st, const char *prefix, const param_entry *e, char *used, slex_error *err) {
    char full[200];
    snprintf(full, sizeof full, "%s%s", prefix, e->name);
    const slex_st_tensor_info *t = slex_safetensors_find(st, full);
    const char *path = slex_safetensors_path(st);
    if (!t) {
        if (e->optional) return 0;
        return slex_fail(err, "%s: missing tensor '%s'", path, full);
    }
    used[t - slex_safetensors_tensor(st, 0)] = 1;
    int same = t->ndim == e->ndim;
    for (int d = 0; same && d < e->ndim; d++) same = t->shape[d] == e->shape[d];
    if (!same) {
        char got[128], want[128];
        format_shape(got, sizeof got, t->ndim, t->shape);
        format_shape(want, sizeof want, e->ndim, e->shape);
        return slex_fail(err, "%s: tensor '%s' has shape %s but config.json implies %s", path, full, got, want);
    }
    if (e->kind == COPY) return slex_safetensors_read_f32(st, full, e->dst, err);
    /* Conv weight (Co, Ci, K) -> (Co, K, Ci). */
    int64_t co = e->shape[0], ci = e->shape[1], k = e->shape[2];
    float *tmp = malloc((size_t)(co * ci * k) * sizeof(float));
    if (!tmp) return slex_fail(err, "%s: out of memory reading '%s'", path, full);
    if (slex_safetensors_read_f32(st, full, tmp, err) != 0) {
        free(tmp);
        return -1;
    }
    for (int64_t o = 0; o < co; o++)
        for (int64_t c = 0; c < ci; c++)
            for (int64_t j = 0; j < k; j++) e->dst[(o * k + j) * ci + c] = tmp[(o * ci + c) * k + j];
    free(tmp);
    return 0;
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

static int load_weights(slex_hubert *m, const char *dir, slex_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    slex_safetensors *st = slex_safetensors_open(path, err);
    if (!st) return -1;
    const char *prefix = "";
    if (!slex_safetensors_find(st, "feature_projection.projection.weight")) {
        if (slex_safetensors_find(st, "hubert.feature_projection.projection.weight")) {
            prefix = "hubert.";
        } else {
            slex_safetensors_close(st);
            return slex_fail(err, "%s: no HubertModel tensors (feature_projection.projection.weight, with or without "
                                  "the 'hubert.' prefix)", path);
        }
    }
    /* Weight-norm naming: torch.nn.utils.weight_norm (weight_g/v), torch.nn.utils.parametrizations
     * (original0/1), or a plain weight when the norm was removed before saving. */
    static const char *schemes[3][2] = {{"weight_g", "weight_v"},
                                        {"parametrizations.weight.original0", "parametrizations.weight.original1"},
                                        {NULL, "weight"}};
    const char *pos_g = schemes[0][0], *pos_v = schemes[0][1];
    for (int s = 0; s < 3; s++) {
        char name[200];
        snprintf(name, sizeof name, "%sencoder.pos_conv_embed.conv.%s", prefix, schemes[s][1]);
        if (slex_safetensors_find(st, name)) {
            pos_g = schemes[s][0];
            pos_v = schemes[s][1];
            break;
        }
    }
    int max_entries = 4 * m->cfg.num_conv + 16 + 16 * m->cfg.num_hidden_layers;
    param_entry *entries = malloc((size_t)max_entries * sizeof *entries);
    char *used = calloc((size_t)slex_safetensors_count(st) + 1, 1);
    int rc = -1;
    if (!entries || !used) {
        slex_fail(err, "%s: out of memory", path);
        goto done;
    }
    int n = build_entries(m, entries, pos_g, pos_v);
    for (int i = 0; i < n; i++)
        if (load_entry(st, prefix, &entries[i], used, err) != 0) goto done;
    if (!pos_g) {
        const slex_hubert_config *c = &m->cfg;
        weight_norm_from_plain(m->params.pos_conv_g, m->params.pos_conv_v, c->hidden_size,
                               c->hidden_size / c->num_conv_pos_embedding_groups, c->num_conv_pos_embeddings);
    }
    int n_unexpected = 0;
    const char *first = NULL;
    for (int i = 0; i < slex_safetensors_count(st); i++)
        if (!used[i]) {
            if (!first) first = slex_safetensors_tensor(st, i)->name;
            n_unexpected++;
        }
    if (n_unexpected && !m->opts.ignore_unexpected) {
        slex_fail(err, "%s: unexpected tensor '%s'%s not used by HubertModel with this config.json (%d in all; set "
                       "ignore_unexpected to skip them)", path, first, n_unexpected > 1 ? " and others" : "", n_unexpected);
        goto done;
    }
    rc = 0;
done:
    free(entries);
    free(used);
    slex_safetensors_close(st);
    return rc;
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
    if (load_weights(m, dir, err) != 0) goto fail;
    weight_norm_forward(m->pos_conv_w, m->params.pos_conv_g, m->params.pos_conv_v, c->hidden_size, (int)Cg,
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
        int64_t To = conv_out_len(T, c->conv_kernel[i], c->conv_stride[i]);
        conv1d_forward(a->conv_out[i], x, p->conv_w[i], p->conv_b[i], T, cin, cout, c->conv_kernel[i],
                       c->conv_stride[i], a->scratch);
        if (p->conv_norm_w[i] && c->feat_extract_norm == SLEX_FEAT_NORM_GROUP)
            groupnorm_forward(a->conv_norm[i], a->conv_norm_mean[i], a->conv_norm_rstd[i], a->conv_out[i],
                              p->conv_norm_w[i], p->conv_norm_b[i], To, cout, CONV_NORM_EPS);
        else if (p->conv_norm_w[i])
            layernorm_forward(a->conv_norm[i], a->conv_norm_mean[i], a->conv_norm_rstd[i], a->conv_out[i],
                              p->conv_norm_w[i], p->conv_norm_b[i], To, cout, CONV_NORM_EPS);
        gelu_forward(a->conv_gelu[i], a->conv_norm[i], To * cout);
        x = a->conv_gelu[i];
        T = To;
        cin = cout;
    }

    /* Feature projection: (T, Cf) -> (T, C) */
    if (c->feat_proj_layer_norm) {
        layernorm_forward(a->proj_ln, a->proj_ln_mean, a->proj_ln_rstd, x, p->proj_ln_w, p->proj_ln_b, T, cin,
                          c->layer_norm_eps);
        x = a->proj_ln;
    }
    linear_forward(a->proj, x, p->proj_w, p->proj_b, T, cin, C);

    /* Positional conv embedding: enc_in = proj + gelu(posconv(proj)) (T, C) */
    pos_conv_forward(a->pos_conv, a->proj, m->pos_conv_w, p->pos_conv_b, T, C, c->num_conv_pos_embeddings,
                     c->num_conv_pos_embedding_groups, a->scratch);
    gelu_forward(a->enc_in, a->pos_conv, T * C);
    residual_forward(a->enc_in, a->enc_in, a->proj, T * C);
    x = a->enc_in;
    if (!c->do_stable_layer_norm) {
        layernorm_forward(a->enc_ln, a->enc_ln_mean, a->enc_ln_rstd, x, p->enc_ln_w, p->enc_ln_b, T, C,
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
            layernorm_forward(ln1, ln1_mean, ln1_rstd, x, ln1_w, ln1_b, T, C, c->layer_norm_eps);
            linear_forward(qkv, ln1, qkv_w, qkv_b, T, C, 3 * C);
            attention_forward(atty, att, keep ? T * T : 0, qkv, T, C, H);
            linear_forward(attproj, atty, attproj_w, attproj_b, T, C, C);
            residual_forward(res1, x, attproj, T * C);
            layernorm_forward(ln2, ln2_mean, ln2_rstd, res1, ln2_w, ln2_b, T, C, c->layer_norm_eps);
            linear_forward(fch, ln2, fc_w, fc_b, T, C, F);
            gelu_forward(fch_gelu, fch, T * F);
            linear_forward(fcproj, fch_gelu, fcproj_w, fcproj_b, T, F, C);
            residual_forward(res2, res1, fcproj, T * C);
            x = res2;
        } else {
            /* post-LN: ln1 = LN1(x + attn(x)); ln2 = LN2(ln1 + ffn(ln1)) */
            linear_forward(qkv, x, qkv_w, qkv_b, T, C, 3 * C);
            attention_forward(atty, att, keep ? T * T : 0, qkv, T, C, H);
            linear_forward(attproj, atty, attproj_w, attproj_b, T, C, C);
            residual_forward(res1, x, attproj, T * C);
            layernorm_forward(ln1, ln1_mean, ln1_rstd, res1, ln1_w, ln1_b, T, C, c->layer_norm_eps);
            linear_forward(fch, ln1, fc_w, fc_b, T, C, F);
            gelu_forward(fch_gelu, fch, T * F);
            linear_forward(fcproj, fch_gelu, fcproj_w, fcproj_b, T, F, C);
            residual_forward(res2, ln1, fcproj, T * C);
            layernorm_forward(ln2, ln2_mean, ln2_rstd, res2, ln2_w, ln2_b, T, C, c->layer_norm_eps);
            x = ln2;
        }
    }
    if (layer == SLEX_HUBERT_LAST_HIDDEN_STATE && c->do_stable_layer_norm) {
        layernorm_forward(a->enc_ln, a->enc_ln_mean, a->enc_ln_rstd, x, p->enc_ln_w, p->enc_ln_b, T, C,
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
