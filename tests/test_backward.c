/* test_backward: every forward/backward kernel pair of common/model against finite differences.
 *
 * Each kernel has a plain double-precision reference forward here (written from the formulas,
 * not from the kernel); the test checks that the float kernel forward agrees with it, then
 * differentiates the reference by central differences in double, with the loss
 * L = sum(R * out) for a random R, and compares with the float backward run with dout = R.
 *
 * Tolerance: relative error of the gradient (norm of the difference over norm of the finite
 * difference gradient) <= 1e-5.  The finite differences are exact to ~1e-9 (step 1e-6 in
 * double: truncation ~1e-12, rounding ~1e-10 relative); the backward runs in float (unit
 * roundoff 6e-8) over sums of at most about a thousand terms, and measures 3e-8..6e-7 here;
 * a wrong term in a formula gives errors of 1e-2 and more.
 *
 * Shapes use a batch of B = 2 and odd sizes, and cover the three code paths of the strided
 * conv (stride >= kernel, im2col for few channels, one product per tap) and outputs longer
 * than one im2col block of 512 rows.  Parameter gradients
 * must accumulate (they start from a non-zero value) and input gradients be written (they
 * start from garbage). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/attention.h"
#include "model/conv.h"
#include "model/hubert.h"
#include "model/layernorm.h"
#include "model/linear.h"
#include "model/lora.h"
#include "model/posconv.h"

#define GRAD_TOL 1e-5
#define FWD_TOL 1e-5
#define GARBAGE 7.25f
#define ACCUM 0.5f

/* ---- helpers --------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static double uniform(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static float *rand_floats(int64_t n, double lo, double hi) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * uniform());
    return x;
}

static float *filled(int64_t n, float v) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = v;
    return x;
}

static double *to_double(const float *x, int64_t n) {
    double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* A reference forward: fills out (n_out doubles) from the test's double inputs. */
typedef void (*ref_fn)(void *ctx, double *out);

typedef struct {
    ref_fn f;
    void *ctx;
    int64_t n_out;
    const float *R; /* the loss weights = dout */
    double *out;
} loss_ctx;

static double loss(loss_ctx *l) {
    l->f(l->ctx, l->out);
    double s = 0.0;
    for (int64_t i = 0; i < l->n_out; i++) s += (double)l->R[i] * l->out[i];
    return s;
}

/* Central differences of the loss in every element of x (double, n), against the float
 * gradient g (minus `offset`, the value it was accumulated onto). */
static void check_grad(const char *what, loss_ctx *l, double *x, int64_t n, const float *g, float offset) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double save = x[i], h = 1e-6 * fmax(1.0, fabs(save));
        x[i] = save + h;
        double lp = loss(l);
        x[i] = save - h;
        double lm = loss(l);
        x[i] = save;
        double fd = (lp - lm) / (2 * h), an = (double)g[i] - offset;
        num += (an - fd) * (an - fd);
        den += fd * fd;
    }
    double rel = sqrt(num) / fmax(sqrt(den), 1e-30);
    CHECK(rel <= GRAD_TOL && den > 0, "%s: relative gradient error %.3g (|fd| %.3g)", what, rel, sqrt(den));
    fprintf(stderr, "  %-44s rel err %.2e\n", what, rel);
}

/* check_grad for "<what> <part>". */
static void check_part(const char *what, const char *part, loss_ctx *l, double *x, int64_t n, const float *g,
                        float offset) {
    char name[160];
    snprintf(name, sizeof name, "%s %s", what, part);
    check_grad(name, l, x, n, g, offset);
}

/* The float forward out agrees with the double reference. */
static void check_forward(const char *what, loss_ctx *l, const float *out) {
    l->f(l->ctx, l->out);
    double m = 0.0, scale = 0.0;
    for (int64_t i = 0; i < l->n_out; i++) {
        double d = fabs(out[i] - l->out[i]);
        if (!(d <= m)) m = d;
        scale = fmax(scale, fabs(l->out[i]));
    }
    CHECK(m <= FWD_TOL * fmax(1.0, scale), "%s forward: max abs diff %.3g vs the double reference (scale %.3g)", what,
          m, scale);
}

static int all_equal(const float *x, int64_t n, float v) {
    for (int64_t i = 0; i < n; i++)
        if (x[i] != v) return 0;
    return 1;
}

/* ---- conv1d ---------------------------------------------------------------------------- */

typedef struct {
    int B, Ci, Co, K, S;
    int64_t Ti, To;
    double *inp, *w, *bias;
} conv_ref;

static void conv_ref_fn(void *p, double *out) {
    conv_ref *c = p;
    for (int b = 0; b < c->B; b++)
        for (int64_t t = 0; t < c->To; t++)
            for (int o = 0; o < c->Co; o++) {
                double s = c->bias[o];
                for (int k = 0; k < c->K; k++)
                    for (int i = 0; i < c->Ci; i++)
                        s += c->inp[(b * c->Ti + t * c->S + k) * c->Ci + i] * c->w[((int64_t)o * c->K + k) * c->Ci + i];
                out[(b * c->To + t) * c->Co + o] = s;
            }
}

static void test_conv1d(int Ci, int Co, int K, int S, int64_t Ti, const char *what) {
    int B = 2;
    int64_t To = slex_conv_out_len(Ti, K, S);
    int64_t ni = B * Ti * Ci, nw = (int64_t)Co * K * Ci, no = B * To * Co;
    float *inp = rand_floats(ni, -1, 1), *w = rand_floats(nw, -0.5, 0.5), *bias = rand_floats(Co, -0.5, 0.5);
    float *out = filled(no, GARBAGE), *R = rand_floats(no, -1, 1);
    int64_t ns = slex_conv1d_scratch_floats(Ci, K, S);
    float *scratch = filled(ns > 0 ? ns : 1, 0.0f);
    slex_conv1d_forward(out, inp, w, bias, B, Ti, Ci, Co, K, S, scratch);
    float *dinp = filled(ni, GARBAGE), *dw = filled(nw, ACCUM), *db = filled(Co, ACCUM);
    slex_conv1d_backward(dinp, dw, db, R, inp, w, B, Ti, Ci, Co, K, S, scratch);
    conv_ref c = {B, Ci, Co, K, S, Ti, To, to_double(inp, ni), to_double(w, nw), to_double(bias, Co)};
    loss_ctx l = {conv_ref_fn, &c, no, R, malloc((size_t)no * sizeof(double))};
    check_forward(what, &l, out);
    check_part(what, "dinp", &l, c.inp, ni, dinp, 0.0f);
    check_part(what, "dw", &l, c.w, nw, dw, ACCUM);
    check_part(what, "dbias", &l, c.bias, Co, db, ACCUM);
    /* NULL weight gradients (a frozen conv) leave the input gradient as it was. */
    float *dinp2 = filled(ni, GARBAGE);
    slex_conv1d_backward(dinp2, NULL, NULL, R, inp, w, B, Ti, Ci, Co, K, S, scratch);
    CHECK(memcmp(dinp, dinp2, (size_t)ni * sizeof(float)) == 0, "%s: dinp differs with frozen weights", what);
    free(inp), free(w), free(bias), free(out), free(R), free(scratch), free(dinp), free(dinp2), free(dw), free(db);
    free(c.inp), free(c.w), free(c.bias), free(l.out);
}

/* ---- group norm and layer norm ------------------------------------------------------------- */

typedef struct {
    int B, C, group; /* group: normalise each channel over T; else each row over C */
    int64_t T;
    double *inp, *w, *b, eps;
} norm_ref;

static void norm_ref_fn(void *p, double *out) {
    norm_ref *n = p;
    int64_t outer = n->group ? n->B : n->B * n->T;
    for (int64_t u = 0; u < outer; u++) {
        int64_t groups = n->group ? n->C : 1, len = n->group ? n->T : n->C;
        for (int64_t g = 0; g < groups; g++) {
            /* element j of group g of unit u */
#define AT(j) (n->group ? (u * n->T + (j)) * n->C + g : u * n->C + (j))
            double m = 0.0, v = 0.0;
            for (int64_t j = 0; j < len; j++) m += n->inp[AT(j)];
            m /= (double)len;
            for (int64_t j = 0; j < len; j++) v += (n->inp[AT(j)] - m) * (n->inp[AT(j)] - m);
            double r = 1.0 / sqrt(v / (double)len + n->eps);
            for (int64_t j = 0; j < len; j++) {
                int64_t c = n->group ? g : j;
                out[AT(j)] = (n->inp[AT(j)] - m) * r * n->w[c] + n->b[c];
            }
#undef AT
        }
    }
}

static void test_norm(int group) {
    int B = 2, C = group ? 5 : 9;
    int64_t T = group ? 7 : 3, N = B * T * C;
    const char *what = group ? "groupnorm (2, 7, 5)" : "layernorm (6, 9)";
    float eps = 1e-5f;
    float *inp = rand_floats(N, -2, 2), *w = rand_floats(C, 0.5, 1.5), *b = rand_floats(C, -0.5, 0.5);
    float *out = filled(N, GARBAGE), *R = rand_floats(N, -1, 1);
    float *mean = filled(B * (group ? C : T), 0), *rstd = filled(B * (group ? C : T), 0);
    float *dinp = filled(N, GARBAGE), *dw = filled(C, ACCUM), *db = filled(C, ACCUM);
    if (group) {
        slex_groupnorm_forward(out, mean, rstd, inp, w, b, B, T, C, eps);
        slex_groupnorm_backward(dinp, dw, db, R, inp, w, mean, rstd, B, T, C);
    } else {
        slex_layernorm_forward(out, mean, rstd, inp, w, b, B * T, C, eps);
        slex_layernorm_backward(dinp, dw, db, R, inp, w, mean, rstd, B * T, C);
    }
    norm_ref n = {B, C, group, T, to_double(inp, N), to_double(w, C), to_double(b, C), eps};
    loss_ctx l = {norm_ref_fn, &n, N, R, malloc((size_t)N * sizeof(double))};
    check_forward(what, &l, out);
    check_part(what, "dinp", &l, n.inp, N, dinp, 0.0f);
    check_part(what, "dw", &l, n.w, C, dw, ACCUM);
    check_part(what, "db", &l, n.b, C, db, ACCUM);
    /* In place: dinp may alias dout. */
    float *inplace = malloc((size_t)N * sizeof(float));
    memcpy(inplace, R, (size_t)N * sizeof(float));
    if (group)
        slex_groupnorm_backward(inplace, NULL, NULL, inplace, inp, w, mean, rstd, B, T, C);
    else
        slex_layernorm_backward(inplace, NULL, NULL, inplace, inp, w, mean, rstd, B * T, C);
    CHECK(memcmp(inplace, dinp, (size_t)N * sizeof(float)) == 0, "%s: in-place backward differs", what);
    free(inp), free(w), free(b), free(out), free(R), free(mean), free(rstd), free(dinp), free(dw), free(db);
    free(inplace), free(n.inp), free(n.w), free(n.b), free(l.out);
}

/* ---- GELU and dropout ------------------------------------------------------------------------ */

typedef struct {
    int64_t n;
    double *inp;
    const float *mask; /* dropout multipliers, or NULL for GELU */
} pointwise_ref;

static void pointwise_ref_fn(void *p, double *out) {
    pointwise_ref *r = p;
    for (int64_t i = 0; i < r->n; i++)
        out[i] = r->mask ? r->inp[i] * r->mask[i] : 0.5 * r->inp[i] * (1.0 + erf(r->inp[i] / sqrt(2.0)));
}

static void test_pointwise(int dropout) {
    int64_t n = 2 * 3 * 7 + 1; /* not a multiple of 4: the vector tail */
    const char *what = dropout ? "dropout (43)" : "gelu (43)";
    float *inp = rand_floats(n, -5, 5), *R = rand_floats(n, -1, 1), *out = filled(n, GARBAGE);
    float *dinp = filled(n, GARBAGE), *mask = filled(n, 0.0f);
    for (int64_t i = 0; i < n; i++) mask[i] = uniform() < 0.3 ? 0.0f : 1.0f / 0.7f;
    if (dropout) {
        slex_dropout_forward(out, inp, mask, n);
        slex_dropout_backward(dinp, R, mask, n);
    } else {
        slex_gelu_forward(out, inp, n);
        slex_gelu_backward(dinp, R, inp, n);
    }
    pointwise_ref r = {n, to_double(inp, n), dropout ? mask : NULL};
    loss_ctx l = {pointwise_ref_fn, &r, n, R, malloc((size_t)n * sizeof(double))};
    check_forward(what, &l, out);
    check_part(what, "dinp", &l, r.inp, n, dinp, 0.0f);
    free(inp), free(R), free(out), free(dinp), free(mask), free(r.inp), free(l.out);
}

/* ---- linear, with and without a LoRA branch ---------------------------------------------------- */

typedef struct {
    int64_t N;
    int IC, OC, r;
    double s;
    double *inp, *w, *bias, *A, *B; /* A, B NULL: no LoRA */
} linear_ref;

static void linear_ref_fn(void *p, double *out) {
    linear_ref *L = p;
    for (int64_t t = 0; t < L->N; t++)
        for (int o = 0; o < L->OC; o++) {
            double y = L->bias[o];
            for (int i = 0; i < L->IC; i++) y += L->inp[t * L->IC + i] * L->w[(int64_t)o * L->IC + i];
            if (L->A)
                for (int j = 0; j < L->r; j++) {
                    double h = 0.0;
                    for (int i = 0; i < L->IC; i++) h += L->inp[t * L->IC + i] * L->A[(int64_t)j * L->IC + i];
                    y += L->s * L->B[(int64_t)o * L->r + j] * h;
                }
            out[t * L->OC + o] = y;
        }
}

static void test_linear(int lora) {
    int64_t N = 2 * 5;
    int IC = 7, OC = 6, r = 3;
    float s = (float)(16.0 / sqrt(3.0)); /* rsLoRA: alpha / sqrt(r) */
    const char *what = lora ? "lora linear (10, 7 -> 6, r 3)" : "linear (10, 7 -> 6)";
    /* With LoRA the output is a column slice of a wider buffer (q of a stacked q|k|v). */
    int64_t ldo = lora ? 3 * OC : OC;
    float *inp = rand_floats(N * IC, -1, 1), *w = rand_floats((int64_t)OC * IC, -0.5, 0.5);
    float *bias = rand_floats(OC, -0.5, 0.5), *A = rand_floats((int64_t)r * IC, -0.5, 0.5);
    float *B = rand_floats((int64_t)OC * r, -0.5, 0.5), *h = filled(N * r, GARBAGE), *dh = filled(N * r, GARBAGE);
    float *R = rand_floats(N * OC, -1, 1), *out = filled(N * OC, GARBAGE), *wide = filled(N * ldo, GARBAGE);
    float *dwide = filled(N * ldo, GARBAGE);
    float *dinp = filled(N * IC, GARBAGE), *dw = filled((int64_t)OC * IC, ACCUM), *db = filled(OC, ACCUM);
    float *dA = filled((int64_t)r * IC, ACCUM), *dB = filled((int64_t)OC * r, ACCUM);
    slex_linear_forward(out, inp, w, bias, N, IC, OC);
    if (lora) {
        for (int64_t t = 0; t < N; t++) memcpy(wide + t * ldo + OC, out + t * OC, (size_t)OC * sizeof(float));
        slex_lora_forward(wide + OC, ldo, h, inp, A, B, s, N, IC, OC, r);
        for (int64_t t = 0; t < N; t++) {
            memcpy(out + t * OC, wide + t * ldo + OC, (size_t)OC * sizeof(float));
            memcpy(dwide + t * ldo + OC, R + t * OC, (size_t)OC * sizeof(float));
        }
    }
    /* LoRA mode: the base weight is frozen (NULL dw), as in training. */
    slex_linear_backward(dinp, lora ? NULL : dw, db, R, inp, w, N, IC, OC);
    if (lora) slex_lora_backward(dinp, dA, dB, dh, dwide + OC, ldo, inp, h, A, B, s, N, IC, OC, r);
    linear_ref L = {N, IC, OC, r, s, to_double(inp, N * IC), to_double(w, (int64_t)OC * IC), to_double(bias, OC),
                    lora ? to_double(A, (int64_t)r * IC) : NULL, lora ? to_double(B, (int64_t)OC * r) : NULL};
    loss_ctx l = {linear_ref_fn, &L, N * OC, R, malloc((size_t)(N * OC) * sizeof(double))};
    check_forward(what, &l, out);
    check_part(what, "dinp", &l, L.inp, N * IC, dinp, 0.0f);
    check_part(what, "dbias", &l, L.bias, OC, db, ACCUM);
    if (lora) {
        CHECK(all_equal(dw, (int64_t)OC * IC, ACCUM), "%s: a frozen weight got a gradient", what);
        check_part(what, "dA", &l, L.A, (int64_t)r * IC, dA, ACCUM);
        check_part(what, "dB", &l, L.B, (int64_t)OC * r, dB, ACCUM);
        /* Columns outside the slice are untouched. */
        int outside = 1;
        for (int64_t t = 0; t < N; t++)
            outside &= all_equal(wide + t * ldo, OC, GARBAGE) && all_equal(wide + t * ldo + 2 * OC, OC, GARBAGE);
        CHECK(outside, "%s: wrote outside its column slice", what);
    } else {
        check_part(what, "dw", &l, L.w, (int64_t)OC * IC, dw, ACCUM);
    }
    free(inp), free(w), free(bias), free(A), free(B), free(h), free(dh), free(R), free(out), free(wide), free(dwide);
    free(dinp), free(dw), free(db), free(dA), free(dB), free(L.inp), free(L.w), free(L.bias), free(L.A), free(L.B);
    free(l.out);
}

/* ---- attention --------------------------------------------------------------------------------- */

typedef struct {
    int B, C, H;
    int64_t T;
    double *qkv;
    const float *dropout;
} att_ref;

static void att_ref_fn(void *p, double *out) {
    att_ref *a = p;
    int hd = a->C / a->H;
    int64_t T = a->T, ld = 3 * a->C;
    double *row = malloc((size_t)T * sizeof(double));
    for (int b = 0; b < a->B; b++)
        for (int h = 0; h < a->H; h++)
            for (int64_t i = 0; i < T; i++) {
                const double *q = a->qkv + (b * T + i) * ld + h * hd;
                double mx = -INFINITY, sum = 0.0;
                for (int64_t j = 0; j < T; j++) {
                    const double *k = a->qkv + (b * T + j) * ld + a->C + h * hd;
                    double s = 0.0;
                    for (int d = 0; d < hd; d++) s += q[d] * k[d];
                    row[j] = s / sqrt((double)hd);
                    mx = fmax(mx, row[j]);
                }
                for (int64_t j = 0; j < T; j++) sum += row[j] = exp(row[j] - mx);
                for (int d = 0; d < hd; d++) {
                    double y = 0.0;
                    for (int64_t j = 0; j < T; j++) {
                        double pr = row[j] / sum;
                        if (a->dropout) pr *= a->dropout[(((int64_t)b * a->H + h) * T + i) * T + j];
                        y += pr * a->qkv[(b * T + j) * ld + 2 * a->C + h * hd + d];
                    }
                    out[(b * T + i) * a->C + h * hd + d] = y;
                }
            }
    free(row);
}

static void test_attention(int dropout) {
    int B = 2, C = 12, H = 3;
    int64_t T = 7, nqkv = B * T * 3 * C, no = B * T * C, natt = (int64_t)B * H * T * T;
    const char *what = dropout ? "attention (2, 7, 12), 3 heads, dropout" : "attention (2, 7, 12), 3 heads";
    float *qkv = rand_floats(nqkv, -1.5, 1.5), *R = rand_floats(no, -1, 1), *out = filled(no, GARBAGE);
    float *att = filled(natt, GARBAGE), *scratch = filled(2 * T * T, GARBAGE), *dqkv = filled(nqkv, GARBAGE);
    float *mask = filled(natt, 1.0f);
    for (int64_t i = 0; i < natt; i++) mask[i] = uniform() < 0.25 ? 0.0f : 1.0f / 0.75f;
    slex_attention_forward(out, att, T * T, qkv, dropout ? mask : NULL, B, T, C, H, scratch);
    slex_attention_backward(dqkv, R, qkv, att, dropout ? mask : NULL, B, T, C, H, scratch);
    att_ref a = {B, C, H, T, to_double(qkv, nqkv), dropout ? mask : NULL};
    loss_ctx l = {att_ref_fn, &a, no, R, malloc((size_t)no * sizeof(double))};
    check_forward(what, &l, out);
    check_part(what, "dqkv", &l, a.qkv, nqkv, dqkv, 0.0f);
    free(qkv), free(R), free(out), free(att), free(scratch), free(dqkv), free(mask), free(a.qkv), free(l.out);
}

/* ---- positional conv with weight norm ------------------------------------------------------------ */

typedef struct {
    int B, C, K, G;
    int64_t T;
    double *inp, *g, *v, *bias;
} pos_ref;

static void pos_ref_fn(void *p, double *out) {
    pos_ref *r = p;
    int Cg = r->C / r->G, pad = r->K / 2;
    int64_t T = r->T;
    double *norm = malloc((size_t)r->K * sizeof(double));
    for (int k = 0; k < r->K; k++) {
        double sq = 0.0;
        for (int64_t i = 0; i < (int64_t)r->C * Cg; i++) sq += r->v[i * r->K + k] * r->v[i * r->K + k];
        norm[k] = sqrt(sq);
    }
    for (int b = 0; b < r->B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int o = 0; o < r->C; o++) {
                int g = o / Cg;
                double y = r->bias[o];
                for (int k = 0; k < r->K; k++) {
                    int64_t src = t + k - pad;
                    if (src < 0 || src >= T) continue;
                    for (int c = 0; c < Cg; c++)
                        y += r->inp[(b * T + src) * r->C + g * Cg + c] * r->g[k] *
                             r->v[((int64_t)o * Cg + c) * r->K + k] / norm[k];
                }
                out[(b * T + t) * r->C + o] = y;
            }
    free(norm);
}

static void test_posconv(int K, int64_t T, int C) {
    int B = 2, G = 2, Cg = C / G;
    int64_t n = B * T * C, nv = (int64_t)C * Cg * K;
    char what[64];
    snprintf(what, sizeof what, "posconv (2, %lld, %d), K %d, 2 groups", (long long)T, C, K);
    float *inp = rand_floats(n, -1, 1), *g = rand_floats(K, 0.5, 1.5), *v = rand_floats(nv, -1, 1);
    float *bias = rand_floats(C, -0.5, 0.5), *R = rand_floats(n, -1, 1), *out = filled(n, GARBAGE);
    float *w = filled(nv, GARBAGE), *dw = filled(nv, 0.0f), *dinp = filled(n, GARBAGE), *db = filled(C, ACCUM);
    float *dg = filled(K, ACCUM), *dv = filled(nv, ACCUM);
    float *scratch = filled(slex_posconv_scratch_floats(C, K, G), 0.0f);
    slex_weightnorm_forward(w, g, v, C, Cg, K);
    slex_posconv_forward(out, inp, w, bias, B, T, C, K, G, scratch);
    slex_posconv_backward(dinp, dw, db, R, inp, w, B, T, C, K, G, scratch);
    slex_weightnorm_backward(dg, dv, dw, g, v, C, Cg, K);
    pos_ref r = {B, C, K, G, T, to_double(inp, n), to_double(g, K), to_double(v, nv), to_double(bias, C)};
    loss_ctx l = {pos_ref_fn, &r, n, R, malloc((size_t)n * sizeof(double))};
    check_forward(what, &l, out);
    check_part(what, "dinp", &l, r.inp, n, dinp, 0.0f);
    check_part(what, "dbias", &l, r.bias, C, db, ACCUM);
    check_part(what, "dg (weight norm)", &l, r.g, K, dg, ACCUM);
    check_part(what, "dv (weight norm)", &l, r.v, nv, dv, ACCUM);
    free(inp), free(g), free(v), free(bias), free(R), free(out), free(w), free(dw), free(dinp), free(db), free(dg);
    free(dv), free(scratch), free(r.inp), free(r.g), free(r.v), free(r.bias), free(l.out);
}

/* ---- NaN propagation (issue 9) ----------------------------------------------------------------- */

static void test_nan(void) {
    float row[7] = {0.1f, -0.3f, NAN, 0.7f, 0.2f, -1.0f, 0.5f}, row4[4] = {0.2f, NAN, 0.1f, 0.3f};
    slex_softmax_forward(row, 1, 7);
    slex_softmax_forward(row4, 1, 4);
    int nan7 = 1, nan4 = 1;
    for (int i = 0; i < 7; i++) nan7 &= isnan(row[i]) != 0;
    for (int i = 0; i < 4; i++) nan4 &= isnan(row4[i]) != 0;
    CHECK(nan7 && nan4, "softmax of a row with a NaN must be all NaN (as torch.softmax)");
    float x[5] = {NAN, 1.0f, NAN, -2.0f, NAN}, y[5];
    slex_gelu_forward(y, x, 5);
    CHECK(isnan(y[0]) && isnan(y[2]) && isnan(y[4]) && !isnan(y[1]), "GELU(NaN) must be NaN");
    float ln[6] = {1, 2, NAN, 4, 5, 6}, w[3] = {1, 1, 1}, b[3] = {0, 0, 0}, mean[2], rstd[2];
    slex_layernorm_forward(ln, mean, rstd, ln, w, b, 2, 3, 1e-5f);
    CHECK(isnan(ln[0]) && isnan(ln[1]) && isnan(ln[2]) && !isnan(ln[3]), "LayerNorm: a NaN makes its row NaN");
    float v[2 * 1 * 2] = {NAN, 1.0f, 1.0f, 1.0f}, g[2] = {1.0f, 1.0f}, wn[4];
    slex_weightnorm_forward(wn, g, v, 2, 1, 2);
    CHECK(isnan(wn[0]) && isnan(wn[2]) && !isnan(wn[1]), "weight norm: a NaN in v makes its tap NaN");
}

/* ---- the whole model --------------------------------------------------------------------------
 * The forward is float, so the finite differences are directional (gradcheck-style): for each
 * tensor of the HF table (and each LoRA A and B) a random +-1 direction v at the tensor's own
 * RMS, central differences of L = sum(R * out) + sum(Q * features) (in double) at steps
 * h = 1e-2 and 2h along v, extrapolated (Richardson, error O(h^4)), against sum(grad * v).
 * The float forward's rounding puts ~5e-5 of noise on a directional derivative (measured: the
 * k_proj biases, whose true gradient is 0, read up to 5e-5), so the error is taken relative to
 * max(|fd|, 5e-2) and must be <= 2e-2; measured <= 2.5e-3 with OpenBLAS's SkylakeX and
 * Sandybridge kernels, 1.01e-2 with its Haswell/Zen kernels (an AMD EPYC: the post-LN
 * q_proj.bias, where the finite difference moved by 8e-4 between kernels and the backward did
 * not).  The kernels themselves are checked to 1e-5 above; what this checks is the wiring, where
 * a missed residual or a gradient taken at the wrong activation gives errors of order 1 (and a
 * wrong last frame of 18, ~5e-2). */

#define MODEL_TOL 2e-2
#define MODEL_STEP 1e-2
#define MODEL_FLOOR 5e-2
#define MODEL_B 2
#define MODEL_N 400

typedef struct {
    slex_hubert *m;
    const float *wave, *R, *Q;
    slex_hubert_batch batch;
    int64_t n_out, n_feat;
    float *out;
} model_case;

static double model_loss(model_case *mc) {
    slex_error err = {{0}};
    int rc = slex_hubert_forward_train(mc->m, mc->wave, &mc->batch, mc->out, &err);
    CHECK(rc == 0, "training forward: %s", err.msg);
    const float *feat = slex_hubert_get_acts(mc->m)->conv_gelu[slex_hubert_get_config(mc->m)->num_conv - 1];
    double s = 0.0;
    for (int64_t i = 0; i < mc->n_out; i++) s += (double)mc->R[i] * mc->out[i];
    for (int64_t i = 0; i < mc->n_feat; i++) s += (double)mc->Q[i] * feat[i];
    return s;
}

/* Directional check of grad (minus `offset`, scaled by 1/scale) for the n floats at x. */
static void check_direction(const char *what, model_case *mc, float *x, const float *grad, int64_t n, float offset,
                            double scale) {
    double rms = 0.0;
    for (int64_t i = 0; i < n; i++) rms += (double)x[i] * x[i];
    rms = sqrt(rms / (double)n);
    if (rms < 1e-3) rms = 0.1;
    float *save = malloc((size_t)n * sizeof(float)), *v = malloc((size_t)n * sizeof(float));
    memcpy(save, x, (size_t)n * sizeof(float));
    double an = 0.0;
    for (int64_t i = 0; i < n; i++) {
        v[i] = (float)((uniform() < 0.5 ? -1.0 : 1.0) * rms);
        an += ((double)grad[i] - offset) / scale * v[i];
    }
    /* Central differences at h and 2h, extrapolated (Richardson): error O(h^4). */
    double d[2];
    for (int k = 0; k < 2; k++) {
        double step = MODEL_STEP * (k + 1);
        for (int64_t i = 0; i < n; i++) x[i] = (float)(save[i] + step * v[i]);
        double lp = model_loss(mc);
        for (int64_t i = 0; i < n; i++) x[i] = (float)(save[i] - step * v[i]);
        double lm = model_loss(mc);
        d[k] = (lp - lm) / (2 * step);
    }
    memcpy(x, save, (size_t)n * sizeof(float));
    double fd = (4 * d[0] - d[1]) / 3, rel = fabs(an - fd) / fmax(fabs(fd), MODEL_FLOOR);
    CHECK(rel <= MODEL_TOL, "%s: directional derivative %.6g, backward %.6g (rel %.3g)", what, fd, an, rel);
    if (rel > 1e-4 || getenv("SLEX_TEST_VERBOSE"))
        fprintf(stderr, "  %-58s fd %+.5e rel %.1e\n", what, fd, rel);
    free(save);
    free(v);
}

/* LORA_TOP: only the adapters train (mask_emb frozen), and activations are kept from the lowest
 * adapted layer up (first_trained_layer). */
/* LORA_ATT: LORA's attention adapters only, the model loaded with frozen_ffn (the FFN inputs
 * shared by the layers): the same gradients, and an FFN weight gradient is refused. */
typedef enum { FULL, LORA, LORA_TOP, LORA_ATT } train_mode;

/* One configuration: the fixture model `variant`, in full or LoRA mode, with a mask, dropout,
 * one layer dropped (full mode) and feature_grad_mult 0.5 with a feature-penalty gradient. */
static void test_model_backward(const char *data, const char *variant, train_mode mode) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", data, variant);
    slex_hubert_load_options o;
    slex_hubert_load_options_default(&o);
    o.keep_activations = 1;
    o.keep_cnn_activations = mode == FULL;
    /* LORA_TOP adapts the top layer only (the first four sites below) and keeps only it. */
    char cfg_path[1100];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    slex_hubert_config fc;
    slex_error cerr = {{0}};
    CHECK(slex_hubert_config_load(cfg_path, &fc, &cerr) == 0, "%s", cerr.msg);
    o.first_trained_layer = mode == LORA_TOP ? fc.num_hidden_layers - 1 : 0;
    o.frozen_ffn = mode == LORA_ATT;
    o.max_batch = MODEL_B;
    o.max_chunk_samples = MODEL_N;
    slex_error err = {{0}};
    slex_hubert *m = slex_hubert_load(dir, &o, &err);
    CHECK(m != NULL, "%s: %s", dir, err.msg);
    if (!m) return;
    const slex_hubert_config *c = slex_hubert_get_config(m);
    int C = c->hidden_size, L = c->num_hidden_layers, Cf = c->conv_dim[c->num_conv - 1];
    int64_t T = slex_hubert_chunk_frames(m, MODEL_N), BT = MODEL_B * T;
    float *wave = rand_floats(MODEL_B * MODEL_N, -0.5, 0.5), *R = rand_floats(BT * C, -1, 1);
    float *Q = rand_floats(BT * Cf, -0.1, 0.1), *out = filled(BT * C, 0.0f);
    uint8_t *mask = calloc((size_t)BT, 1), *skip = calloc((size_t)L, 1);
    for (int64_t t = 0; t < BT; t++) mask[t] = t % 3 == 1;
    if (mode == FULL) skip[1] = 1; /* layerdrop: layer 1 is left out */
    /* Random mask embedding (the fixtures have zeros). */
    slex_hubert_params *p = slex_hubert_get_params(m);
    for (int i = 0; i < C; i++) p->mask_emb[i] = (float)(uniform() - 0.5);
    /* LoRA mode: adapters on q, v, out and fc1 of the last layer and k of layer 1, rsLoRA. */
    int r = 3;
    slex_hubert_lora_site *sites = calloc((size_t)L * SLEX_HUBERT_LINEARS, sizeof *sites);
    float *lora_mem = NULL, *lora_grad = NULL;
    int64_t lora_n = 0;
    static const struct {
        int layer_from_top, which;
    } adapted[] = {{0, SLEX_HUBERT_Q}, {0, SLEX_HUBERT_V}, {0, SLEX_HUBERT_OUT}, {0, SLEX_HUBERT_FC1}, {1, SLEX_HUBERT_K}};
    int n_adapted = mode == LORA || mode == LORA_ATT ? (int)(sizeof adapted / sizeof adapted[0]) : mode == LORA_TOP ? 4 : 0;
#define SKIPPED(k) (mode == LORA_ATT && adapted[k].which == SLEX_HUBERT_FC1)
    int64_t per = 0;
    for (int k = 0; k < n_adapted; k++) {
        if (SKIPPED(k)) continue;
        int in = C, outd = adapted[k].which == SLEX_HUBERT_FC1 ? c->intermediate_size : C;
        per += (int64_t)r * in + (int64_t)outd * r;
    }
    lora_n = per;
    lora_mem = rand_floats(lora_n, -0.3, 0.3);
    lora_grad = filled(lora_n, ACCUM);
    int64_t off = 0;
    for (int k = 0; k < n_adapted; k++) {
        if (SKIPPED(k)) continue;
        slex_hubert_lora_site *s = &sites[(int64_t)(L - 1 - adapted[k].layer_from_top) * SLEX_HUBERT_LINEARS +
                                          adapted[k].which];
        int in = C, outd = adapted[k].which == SLEX_HUBERT_FC1 ? c->intermediate_size : C;
        *s = (slex_hubert_lora_site){.A = lora_mem + off, .dA = lora_grad + off, .scale = (float)(8.0 / sqrt(r)), .r = r};
        off += (int64_t)r * in;
        s->B = lora_mem + off;
        s->dB = lora_grad + off;
        off += (int64_t)outd * r;
    }
    model_case mc = {m, wave, R, Q, {.B = MODEL_B, .N = MODEL_N, .mask = mask, .skip_layer = skip,
                                     .lora = mode != FULL ? sites : NULL}, BT * C, BT * Cf, out};
    /* Dropout everywhere (fixed masks: the same seed in every forward of the differences). */
    if (mode != LORA_TOP) {
        mc.batch.dropout = 0.1f;
        mc.batch.attention_dropout = 0.15f;
        mc.batch.activation_dropout = 0.2f;
        mc.batch.dropout_seed = 12345;
    }
    /* Gradients: every tensor in full mode; LoRA mode trains only the adapters and mask_emb. */
    slex_hubert_params g;
    int64_t ng = slex_hubert_params_layout(c, NULL, NULL);
    float *gmem = filled(ng, ACCUM);
    slex_hubert_params_layout(c, gmem, &g);
    if (mode != FULL) {
        float *keep_mask = g.mask_emb;
        memset(&g, 0, sizeof g);
        g.mask_emb = keep_mask;
    }
    if (mode == LORA_TOP) {
        /* mask_emb sits below the kept layers: refused, then frozen. */
        model_loss(&mc);
        CHECK(slex_hubert_backward(m, R, Q, 0.0f, &g, &err) != 0 && strstr(err.msg, "first_trained_layer"),
              "a gradient below first_trained_layer: %s", err.msg);
        g.mask_emb = NULL;
    }
    if (mode == LORA_ATT) {
        /* frozen_ffn: an FFN weight gradient is refused. */
        model_loss(&mc);
        float *fc = g.fc_w;
        g.fc_w = gmem;
        CHECK(slex_hubert_backward(m, R, Q, 0.0f, &g, &err) != 0 && strstr(err.msg, "frozen_ffn"),
              "an FFN weight gradient with frozen_ffn: %s", err.msg);
        g.fc_w = fc;
    }
    float mult = mode == FULL ? 0.5f : 0.0f;
    model_loss(&mc);
    int rc = slex_hubert_backward(m, R, Q, mult, &g, &err);
    CHECK(rc == 0, "%s: backward: %s", variant, err.msg);
    int n = slex_hubert_tensors(c, p, NULL);
    slex_hubert_tensor *pt = malloc((size_t)n * sizeof *pt), *gt = malloc((size_t)n * sizeof *gt);
    slex_hubert_tensors(c, p, pt);
    slex_hubert_tensors(c, &g, gt);
    char what[200];
    for (int i = 0; i < n; i++) {
        if (!gt[i].data) continue;
        snprintf(what, sizeof what, "%s %s %s", variant, mode == FULL ? "full" : "lora", pt[i].name);
        if (pt[i].layer == 1 && mode == FULL) {
            CHECK(all_equal(gt[i].data, gt[i].numel, ACCUM), "%s: a dropped layer got a gradient", what);
            continue;
        }
        /* The CNN's gradient is scaled by feature_grad_mult (fairseq's GradMultiply). */
        int cnn = strncmp(pt[i].name, "feature_extractor.", 18) == 0;
        /* Conv weights are re-laid out in memory; a direction over the same floats is the same. */
        check_direction(what, &mc, pt[i].data, gt[i].data, pt[i].numel, ACCUM, cnn ? mult : 1.0);
    }
    for (int k = 0; k < n_adapted; k++) {
        if (SKIPPED(k)) continue;
        slex_hubert_lora_site *s = &sites[(int64_t)(L - 1 - adapted[k].layer_from_top) * SLEX_HUBERT_LINEARS +
                                          adapted[k].which];
        int in = C, outd = adapted[k].which == SLEX_HUBERT_FC1 ? c->intermediate_size : C;
        snprintf(what, sizeof what, "%s lora layer %d linear %d A", variant, L - 1 - adapted[k].layer_from_top,
                 adapted[k].which);
        check_direction(what, &mc, (float *)s->A, s->dA, (int64_t)r * in, ACCUM, 1.0);
        snprintf(what, sizeof what, "%s lora layer %d linear %d B", variant, L - 1 - adapted[k].layer_from_top,
                 adapted[k].which);
        check_direction(what, &mc, (float *)s->B, s->dB, (int64_t)outd * r, ACCUM, 1.0);
    }
    free(pt), free(gt), free(gmem), free(wave), free(R), free(Q), free(out), free(mask), free(skip), free(sites);
    free(lora_mem), free(lora_grad);
    slex_hubert_free(m);
#undef SKIPPED
}

/* The training forward with unmerged adapters (slex_lora_sites) equals the inference forward
 * of the merged model (slex-dump --adapter), utterance by utterance, within 1e-5. */
static void test_unmerged_lora(const char *data, const char *variant) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", data, variant);
    slex_hubert_load_options o;
    slex_hubert_load_options_default(&o);
    o.normalize_waveform = 0;
    o.max_chunk_samples = MODEL_N;
    slex_error err = {{0}};
    slex_hubert *merged = slex_hubert_load(dir, &o, &err);
    o.keep_activations = 1;
    o.max_batch = MODEL_B;
    slex_hubert *train = slex_hubert_load(dir, &o, &err);
    CHECK(merged && train, "%s: %s", dir, err.msg);
    if (!merged || !train) {
        slex_hubert_free(merged);
        slex_hubert_free(train);
        return;
    }
    const slex_hubert_config *c = slex_hubert_get_config(train);
    char names[8][SLEX_LORA_MODULE_MAX];
    const char *modules[8];
    static const char *suffix[6] = {"attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.out_proj",
                                    "feed_forward.intermediate_dense", "feed_forward.output_dense"};
    int nm = 0;
    for (int j = 0; j < 6; j++) {
        snprintf(names[nm], sizeof names[nm], "encoder.layers.%d.%s", j % c->num_hidden_layers, suffix[j]);
        modules[nm] = names[nm];
        nm++;
    }
    slex_lora_config lc;
    slex_lora_config_default(&lc);
    lc.r = 4;
    lc.lora_alpha = 8;
    lc.use_rslora = 1;
    slex_lora *lora = slex_lora_create(&lc, modules, nm, train, &err);
    CHECK(lora != NULL, "lora create: %s", err.msg);
    if (!lora) return;
    for (int64_t i = 0; i < lora->num_params; i++) lora->params[i] = (float)(0.4 * (uniform() - 0.5));
    slex_hubert_lora_site *sites = calloc((size_t)c->num_hidden_layers * SLEX_HUBERT_LINEARS, sizeof *sites);
    CHECK(slex_lora_sites(lora, train, NULL, sites, &err) == 0, "sites: %s", err.msg);
    CHECK(slex_lora_merge(lora, merged, &err) == 0, "merge: %s", err.msg);
    slex_hubert_params_changed(merged);
    int C = c->hidden_size;
    int64_t T = slex_hubert_chunk_frames(train, MODEL_N);
    float *wave = rand_floats(MODEL_B * MODEL_N, -0.5, 0.5), *out = filled(MODEL_B * T * C, 0.0f);
    float *ref = filled(T * C, 0.0f);
    slex_hubert_batch batch = {.B = MODEL_B, .N = MODEL_N, .lora = sites};
    CHECK(slex_hubert_forward_train(train, wave, &batch, out, &err) == 0, "training forward: %s", err.msg);
    double worst = 0.0;
    for (int b = 0; b < MODEL_B; b++) {
        int64_t Tr = 0;
        CHECK(slex_hubert_forward(merged, wave + b * MODEL_N, MODEL_N, SLEX_HUBERT_LAST_HIDDEN_STATE, ref, &Tr, &err) ==
                  0 && Tr == T, "merged forward: %s", err.msg);
        for (int64_t i = 0; i < T * C; i++) {
            double d = fabs((double)out[b * T * C + i] - ref[i]);
            if (!(d <= worst)) worst = d;
        }
    }
    CHECK(worst <= 1e-5, "%s: unmerged training forward vs merged inference: max abs diff %.3g", variant, worst);
    fprintf(stderr, "  %-44s max abs diff %.2e\n", variant, worst);
    free(sites), free(wave), free(out), free(ref);
    slex_lora_free(lora);
    slex_hubert_free(merged);
    slex_hubert_free(train);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_backward MODEL_DATA_DIR (tests/data/model)\n");
        return 2;
    }
    test_conv1d(3, 5, 4, 2, 23, "conv1d im2col (2, 23, 3) k4 s2");
    test_conv1d(3, 5, 2, 3, 20, "conv1d stride>=kernel (2, 20, 3) k2 s3");
    test_conv1d(33, 5, 3, 2, 9, "conv1d per tap (2, 9, 33) k3 s2");
    test_conv1d(2, 3, 4, 2, 1046, "conv1d im2col, 522 rows (2, 1046, 2) k4 s2");
    test_norm(1);
    test_norm(0);
    test_pointwise(0);
    test_pointwise(1);
    test_linear(0);
    test_linear(1);
    test_attention(0);
    test_attention(1);
    test_posconv(4, 9, 8);
    test_posconv(5, 9, 8);
    test_posconv(4, 517, 4);
    test_nan();
    test_unmerged_lora(argv[1], "post_ln_group");
    test_unmerged_lora(argv[1], "pre_ln_layer");
    test_model_backward(argv[1], "post_ln_group", FULL);
    test_model_backward(argv[1], "pre_ln_layer", FULL);
    test_model_backward(argv[1], "post_ln_group", LORA);
    test_model_backward(argv[1], "pre_ln_layer", LORA);
    test_model_backward(argv[1], "post_ln_group", LORA_TOP);
    test_model_backward(argv[1], "pre_ln_layer", LORA_TOP);
    test_model_backward(argv[1], "post_ln_group", LORA_ATT);
    test_model_backward(argv[1], "pre_ln_layer", LORA_ATT);
    return check_finish("test_backward");
}
