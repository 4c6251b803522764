#include "train/head.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define COS_EPS 1e-8

#define T slex_criterion
static const slex_option criterion_rows[] = {
    {SLEX_OPT_FLOAT_FIELD(T, pred_masked_weight), .name = "pred-masked-weight", .def = 1, .min = 0, .max = 1e6,
     .param = "pred_masked_weight", .help = "weight of the loss on masked frames"},
    {SLEX_OPT_FLOAT_FIELD(T, pred_nomask_weight), .name = "pred-nomask-weight", .def = 0, .min = 0, .max = 1e6,
     .param = "pred_nomask_weight", .help = "weight of the loss on unmasked frames"},
    {SLEX_OPT_FLOAT_FIELD(T, feature_pen_weight), .name = "feature-pen", .def = 10, .min = 0, .max = 1e6,
     .param = "feature_pen", .help = "weight of the feature penalty mean(features^2) (fairseq's loss_weights)"},
};
#undef T
const slex_option_table slex_criterion_option_table = SLEX_OPTION_TABLE(criterion_rows);

void slex_criterion_default(slex_criterion *crit) { slex_options_defaults(&slex_criterion_option_table, crit); }

int slex_criterion_validate(const slex_criterion *crit, slex_error *err) {
    const float w[3] = {crit->pred_masked_weight, crit->pred_nomask_weight, crit->feature_pen_weight};
    for (int i = 0; i < 3; i++)
        if (!(w[i] >= 0.0f) || !isfinite(w[i]))
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "pred-masked-weight %g, pred-nomask-weight %g, feature-pen %g: each must be finite "
                                "and >= 0",
                                w[0], w[1], w[2]);
    if (w[0] == 0.0f && w[1] == 0.0f)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "pred-masked-weight and pred-nomask-weight are both 0: nothing to learn");
    return 0;
}

void slex_head_grads_point(const slex_head_config *cfg, float *base, slex_head_grads *g) {
    int64_t C = cfg->hidden_size, F = cfg->final_dim;
    g->mask_emb = base;
    g->final_proj_w = g->mask_emb + C;
    g->final_proj_b = g->final_proj_w + F * C;
    g->label_emb = g->final_proj_b + F;
}

/* Layout of the activations of N frames. */
typedef struct head_acts {
    float *proj;     /* (N, F) final_proj output */
    float *proj_hat; /* (N, F) proj / |proj| */
    float *proj_inv; /* (N) 1 / max(|proj|, eps) */
    float *emb_hat;  /* (K, F) emb / |emb| */
    float *emb_inv;  /* (K) */
    float *probs;    /* (N, K) softmax of the logits; the backward turns it into dlogits */
    float *dproj;    /* (N, F) backward scratch */
    float *demb;     /* (K, F) backward scratch */
} head_acts;

int64_t slex_head_acts_floats(const slex_head_config *cfg, int64_t N) {
    int64_t F = cfg->final_dim, K = cfg->num_classes;
    return 3 * N * F + N + 2 * K * F + K + N * K;
}

static head_acts acts_point(const slex_head_config *cfg, float *base, int64_t N) {
    int64_t F = cfg->final_dim, K = cfg->num_classes;
    head_acts a;
    a.proj = base;
    a.proj_hat = a.proj + N * F;
    a.proj_inv = a.proj_hat + N * F;
    a.emb_hat = a.proj_inv + N;
    a.emb_inv = a.emb_hat + K * F;
    a.probs = a.emb_inv + K;
    a.dproj = a.probs + N * K;
    a.demb = a.dproj + N * F;
    return a;
}

/* out (R, F) = in (R, F) / max(|row|, eps); inv (R) = 1 / max(|row|, eps). */
static void normalize_rows_forward(float *out, float *inv, const float *in, int64_t R, int F) {
    for (int64_t r = 0; r < R; r++) {
        const float *x = in + r * F;
        double s = 0.0;
        for (int f = 0; f < F; f++) s += (double)x[f] * x[f];
        double n = sqrt(s);
        float iv = (float)(1.0 / (n > COS_EPS ? n : COS_EPS));
        for (int f = 0; f < F; f++) out[r * F + f] = x[f] * iv;
        inv[r] = iv;
    }
}

/* din (R, F) = d(out)/d(in)^T dout for out = in / max(|in|, eps): (dout - out (out.dout)) / |in|
 * while |in| > eps, dout / eps below.  din may alias dout. */
static void normalize_rows_backward(float *din, const float *dout, const float *out, const float *inv, int64_t R,
                                    int F) {
    for (int64_t r = 0; r < R; r++) {
        const float *y = out + r * F, *dy = dout + r * F;
        float *dx = din + r * F;
        int clamped = inv[r] >= (float)(1.0 / COS_EPS);
        double dot = 0.0;
        if (!clamped)
            for (int f = 0; f < F; f++) dot += (double)y[f] * dy[f];
        float d = (float)dot;
        for (int f = 0; f < F; f++) dx[f] = inv[r] * (dy[f] - (clamped ? 0.0f : y[f] * d));
    }
}

int slex_head_forward(const slex_head *head, const slex_criterion *crit, const float *x, const uint8_t *mask,
                      const int32_t *labels, int64_t N, float *acts, slex_head_stats *stats, slex_error *err) {
    const slex_head_config *cfg = &head->cfg;
    const int D = cfg->hidden_size, F = cfg->final_dim, K = cfg->num_classes;
    const float temp = (float)cfg->logit_temp;
    memset(stats, 0, sizeof *stats);
    for (int64_t n = 0; n < N; n++)
        if (labels[n] < 0 || labels[n] >= K)
            return slex_fail_as(err, SLEX_ERR_INTERNAL, "head: frame %lld has label %d, outside the %d classes",
                                (long long)n, labels[n], K);
    head_acts a = acts_point(cfg, acts, N);
    /* proj (N, F) = x (N, D) W^T + b */
    for (int64_t n = 0; n < N; n++) memcpy(a.proj + n * F, head->final_proj_b, (size_t)F * sizeof(float));
    if (N > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, F, D, 1.0f, x, D, head->final_proj_w, D, 1.0f, a.proj, F);
    normalize_rows_forward(a.proj_hat, a.proj_inv, a.proj, N, F);
    normalize_rows_forward(a.emb_hat, a.emb_inv, head->label_emb, K, F);
    /* logits (N, K) = proj_hat emb_hat^T / temp */
    if (N > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, K, F, 1.0f / temp, a.proj_hat, F,
                    a.emb_hat, F, 0.0f, a.probs, K);
    for (int64_t n = 0; n < N; n++) {
        float *z = a.probs + n * K;
        float mx = z[0];
        for (int k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
        double s = 0.0;
        for (int k = 0; k < K; k++) s += exp((double)z[k] - mx);
        double lse = mx + log(s);
        double ce = lse - z[labels[n]];
        int correct = z[labels[n]] >= mx;
        if (mask[n]) {
            stats->loss_m += ce;
            stats->count_m++;
            stats->correct_m += correct;
        } else {
            stats->loss_u += ce;
            stats->count_u++;
            stats->correct_u += correct;
        }
        for (int k = 0; k < K; k++) z[k] = (float)exp((double)z[k] - lse);
    }
    stats->loss = (double)crit->pred_masked_weight * stats->loss_m + (double)crit->pred_nomask_weight * stats->loss_u;
    stats->sample_size =
        (crit->pred_masked_weight > 0.0f ? stats->count_m : 0) + (crit->pred_nomask_weight > 0.0f ? stats->count_u : 0);
    return 0;
}

void slex_head_backward(const slex_head *head, const slex_criterion *crit, const float *x, const uint8_t *mask,
                        const int32_t *labels, int64_t N, float *acts, float dloss, const slex_head_grads *g,
                        float *dx) {
    const slex_head_config *cfg = &head->cfg;
    const int D = cfg->hidden_size, F = cfg->final_dim, K = cfg->num_classes;
    const float temp = (float)cfg->logit_temp;
    head_acts a = acts_point(cfg, acts, N);
    if (N == 0) return;
    /* dlogits (N, K), in place of the probabilities, already divided by the temperature */
    for (int64_t n = 0; n < N; n++) {
        float *g = a.probs + n * K;
        float w = (mask[n] ? crit->pred_masked_weight : crit->pred_nomask_weight) * dloss / temp;
        if (w == 0.0f) {
            memset(g, 0, (size_t)K * sizeof(float));
            continue;
        }
        for (int k = 0; k < K; k++) g[k] *= w;
        g[labels[n]] -= w;
    }
    /* dproj_hat (N, F) = dlogits (N, K) emb_hat (K, F); demb_hat (K, F) = dlogits^T proj_hat */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, F, K, 1.0f, a.probs, K, a.emb_hat, F, 0.0f, a.dproj,
                F);
    if (g && g->label_emb) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, F, (int)N, 1.0f, a.probs, K, a.proj_hat, F, 0.0f,
                    a.demb, F);
        normalize_rows_backward(a.demb, a.demb, a.emb_hat, a.emb_inv, K, F);
        for (int64_t i = 0; i < (int64_t)K * F; i++) g->label_emb[i] += a.demb[i];
    }
    normalize_rows_backward(a.dproj, a.dproj, a.proj_hat, a.proj_inv, N, F);
    /* dW (F, D) += dproj^T x; db (F) += column sums; dx (N, D) = dproj W */
    if (g && g->final_proj_w)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, F, D, (int)N, 1.0f, a.dproj, F, x, D, 1.0f, g->final_proj_w,
                    D);
    if (g && g->final_proj_b)
        for (int64_t n = 0; n < N; n++)
            for (int f = 0; f < F; f++) g->final_proj_b[f] += a.dproj[n * F + f];
    if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, D, F, 1.0f, a.dproj, F, head->final_proj_w, D, 0.0f, dx, D);
}

double slex_feature_pen_forward(const float *f, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)f[i] * f[i];
    return n > 0 ? s / (double)n : 0.0;
}

void slex_feature_pen_backward(float *df, const float *f, int64_t n, float scale) {
    if (n <= 0) return;
    float c = (float)(2.0 * scale / (double)n);
    for (int64_t i = 0; i < n; i++) df[i] += c * f[i];
}

void slex_mask_emb_forward(float *x, const uint8_t *mask, const float *emb, int64_t N, int C) {
    for (int64_t n = 0; n < N; n++)
        if (mask[n]) memcpy(x + n * C, emb, (size_t)C * sizeof(float));
}

void slex_mask_emb_backward(float *dx, const uint8_t *mask, float *demb, int64_t N, int C) {
    for (int64_t n = 0; n < N; n++) {
        if (!mask[n]) continue;
        float *g = dx + n * C;
        if (demb)
            for (int c = 0; c < C; c++) demb[c] += g[c];
        memset(g, 0, (size_t)C * sizeof(float));
    }
}
