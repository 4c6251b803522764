/* train/head: forward against a plain double-precision implementation of fairseq's criterion,
 * backward against central finite differences of that double implementation (every element of
 * x, final_proj, the label embeddings); mask embedding and feature penalty likewise.  The
 * whole-model fixture of tests/train_reference.py checks the same head against PyTorch. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "train/head.h"

typedef struct problem {
    slex_head_config cfg;
    slex_criterion crit;
    int64_t N;
    double *x, *w, *b, *e; /* double copies of the inputs */
    uint8_t *mask;
    int32_t *labels;
} problem;

/* fairseq's loss (masked + unmasked, weighted), in double, from scratch. */
static double ref_loss(const problem *pb, int64_t *correct_m, int64_t *correct_u) {
    const int D = pb->cfg.hidden_size, F = pb->cfg.final_dim, K = pb->cfg.num_classes;
    double *p = malloc(sizeof(double) * F), *z = malloc(sizeof(double) * K);
    double loss = 0.0;
    if (correct_m) *correct_m = *correct_u = 0;
    for (int64_t n = 0; n < pb->N; n++) {
        double pn = 0.0;
        for (int f = 0; f < F; f++) {
            double s = pb->b[f];
            for (int d = 0; d < D; d++) s += pb->w[f * D + d] * pb->x[n * D + d];
            p[f] = s;
            pn += s * s;
        }
        pn = fmax(sqrt(pn), 1e-8);
        double mx = -INFINITY;
        for (int k = 0; k < K; k++) {
            double dot = 0.0, en = 0.0;
            for (int f = 0; f < F; f++) {
                dot += p[f] * pb->e[k * F + f];
                en += pb->e[k * F + f] * pb->e[k * F + f];
            }
            z[k] = dot / (pn * fmax(sqrt(en), 1e-8)) / pb->cfg.logit_temp;
            mx = fmax(mx, z[k]);
        }
        double s = 0.0;
        for (int k = 0; k < K; k++) s += exp(z[k] - mx);
        double ce = mx + log(s) - z[pb->labels[n]];
        loss += (pb->mask[n] ? pb->crit.pred_masked_weight : pb->crit.pred_nomask_weight) * ce;
        if (correct_m && z[pb->labels[n]] >= mx) (pb->mask[n] ? (*correct_m)++ : (*correct_u)++);
    }
    free(p);
    free(z);
    return loss;
}

static float *to_float(const double *v, int64_t n) {
    float *f = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
    return f;
}

/* Relative norm error |a - ref| / |ref|. */
static double rel_err(const float *a, const double *ref, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

/* Central differences of ref_loss * dloss over every element of v (n values). */
static void fd_grad(problem *pb, double *v, int64_t n, double dloss, double *out) {
    for (int64_t i = 0; i < n; i++) {
        double keep = v[i], h = 1e-5 * fmax(1.0, fabs(keep));
        v[i] = keep + h;
        double lp = ref_loss(pb, NULL, NULL);
        v[i] = keep - h;
        double lm = ref_loss(pb, NULL, NULL);
        v[i] = keep;
        out[i] = dloss * (lp - lm) / (2 * h);
    }
}

static void run_case(const char *name, int64_t N, int D, int F, int K, float wm, float wu, uint64_t seed) {
    slex_rng rng;
    slex_rng_seed(&rng, seed);
    problem pb;
    slex_head_config_default(&pb.cfg);
    pb.cfg.hidden_size = D;
    pb.cfg.final_dim = F;
    pb.cfg.num_classes = K;
    slex_criterion_default(&pb.crit);
    pb.crit.pred_masked_weight = wm;
    pb.crit.pred_nomask_weight = wu;
    pb.N = N;
    slex_error err = {{0}};
    CHECK(slex_criterion_validate(&pb.crit, &err) == 0, "%s: %s", name, err.msg);
    slex_head *head = slex_head_create(&pb.cfg, &err);
    CHECK(head != NULL, "%s: %s", name, err.msg);
    int64_t nw = (int64_t)F * D, np = head->num_params;
    pb.x = malloc(sizeof(double) * (size_t)(N * D));
    pb.w = malloc(sizeof(double) * (size_t)nw);
    pb.b = malloc(sizeof(double) * (size_t)F);
    pb.e = malloc(sizeof(double) * (size_t)K * F);
    pb.mask = malloc((size_t)N);
    pb.labels = malloc(sizeof(int32_t) * (size_t)N);
    slex_head_init(head, seed, SLEX_LABEL_EMB_UNIFORM);
    for (int64_t i = 0; i < N * D; i++) pb.x[i] = slex_rng_uniform(&rng) * 2 - 1;
    for (int f = 0; f < F; f++) head->final_proj_b[f] += (float)(0.2 * (slex_rng_uniform(&rng) - 0.5));
    for (int64_t n = 0; n < N; n++) {
        pb.mask[n] = slex_rng_uniform(&rng) < 0.6;
        pb.labels[n] = (int32_t)slex_rng_below(&rng, (uint64_t)K);
    }
    float *grads = calloc((size_t)np, sizeof(float));
    slex_head_grads g;
    slex_head_grads_point(&pb.cfg, grads, &g);
    CHECK(g.label_emb + (int64_t)K * F == grads + np, "%s: gradient layout", name);
    /* the double reference sees exactly the float inputs */
    for (int64_t i = 0; i < nw; i++) pb.w[i] = head->final_proj_w[i];
    for (int f = 0; f < F; f++) pb.b[f] = head->final_proj_b[f];
    for (int64_t i = 0; i < (int64_t)K * F; i++) pb.e[i] = head->label_emb[i];
    float *x = to_float(pb.x, N * D);
    for (int64_t i = 0; i < N * D; i++) pb.x[i] = x[i];
    float *acts = malloc(sizeof(float) * (size_t)slex_head_acts_floats(&pb.cfg, N));
    slex_head_stats st;
    CHECK(slex_head_forward(head, &pb.crit, x, pb.mask, pb.labels, N, acts, &st, &err) == 0, "%s: %s", name, err.msg);
    int64_t cm, cu, nm = 0;
    double ref = ref_loss(&pb, &cm, &cu);
    for (int64_t n = 0; n < N; n++) nm += pb.mask[n];
    CHECK(fabs(st.loss - ref) <= 1e-5 * fabs(ref), "%s: loss %.9g vs double %.9g", name, st.loss, ref);
    CHECK(st.count_m == nm && st.count_u == N - nm, "%s: counts %lld/%lld", name, (long long)st.count_m,
          (long long)st.count_u);
    CHECK(st.correct_m == cm && st.correct_u == cu, "%s: correct %lld/%lld vs %lld/%lld", name,
          (long long)st.correct_m, (long long)st.correct_u, (long long)cm, (long long)cu);
    int64_t ss = (wm > 0 ? nm : 0) + (wu > 0 ? N - nm : 0);
    CHECK(st.sample_size == ss, "%s: sample_size %lld vs %lld", name, (long long)st.sample_size, (long long)ss);
    float dloss = 1.0f / (float)st.sample_size;
    float *dx = malloc(sizeof(float) * (size_t)(N * D));
    slex_head_backward(head, &pb.crit, x, pb.mask, pb.labels, N, acts, dloss, &g, dx);
    double *fd = malloc(sizeof(double) * (size_t)(N * D > np ? N * D : np));
    struct { const char *what; double *v; int64_t n; const float *got; } parts[] = {
        {"dx", pb.x, N * D, dx}, {"dW", pb.w, nw, g.final_proj_w}, {"db", pb.b, F, g.final_proj_b},
        {"demb", pb.e, (int64_t)K * F, g.label_emb}};
    for (int i = 0; i < 4; i++) {
        fd_grad(&pb, parts[i].v, parts[i].n, dloss, fd);
        double r = rel_err(parts[i].got, fd, parts[i].n);
        CHECK(r < 2e-4, "%s: %s relative error %.3g against finite differences", name, parts[i].what, r);
        fprintf(stderr, "%s: %s rel err %.2e\n", name, parts[i].what, r);
    }
    /* parameter gradients accumulate; a NULL member is frozen and dx may be NULL */
    float *g1 = malloc(sizeof(float) * (size_t)np);
    memcpy(g1, grads, sizeof(float) * (size_t)np);
    CHECK(slex_head_forward(head, &pb.crit, x, pb.mask, pb.labels, N, acts, &st, &err) == 0, "%s", err.msg);
    slex_head_grads g2 = g;
    g2.final_proj_b = NULL;
    slex_head_backward(head, &pb.crit, x, pb.mask, pb.labels, N, acts, dloss, &g2, NULL);
    double worst = 0.0;
    for (int64_t i = 0; i < np; i++) {
        int is_b = i >= D + nw && i < D + nw + F;
        double want = is_b ? g1[i] : 2.0 * g1[i];
        worst = fmax(worst, fabs(grads[i] - want) / fmax(fabs(want), 1e-6));
    }
    CHECK(worst < 1e-5, "%s: accumulated gradients off by %.3g (relative)", name, worst);
    free(g1);
    free(fd);
    free(dx);
    free(acts);
    free(x);
    slex_head_free(head);
    free(grads);
    free(pb.x);
    free(pb.w);
    free(pb.b);
    free(pb.e);
    free(pb.mask);
    free(pb.labels);
}

static void test_label_range(void) {
    slex_head_config cfg;
    slex_head_config_default(&cfg);
    cfg.hidden_size = 2;
    cfg.final_dim = 2;
    cfg.num_classes = 3;
    slex_error err = {{0}};
    slex_head *head = slex_head_create(&cfg, &err);
    slex_head_init(head, 1, SLEX_LABEL_EMB_UNIFORM);
    slex_criterion crit;
    slex_criterion_default(&crit);
    float x[4] = {1, 2, 3, 4}, acts[64];
    uint8_t mask[2] = {1, 0};
    int32_t labels[2] = {0, 3};
    slex_head_stats st;
    CHECK(slex_head_forward(head, &crit, x, mask, labels, 2, acts, &st, &err) == -1 && strstr(err.msg, "frame 1"),
          "label 3 of 3 classes accepted: %s", err.msg);
    crit.pred_masked_weight = 0;
    CHECK(slex_criterion_validate(&crit, &err) == -1, "both weights 0 accepted");
    slex_head_free(head);
}

static void test_mask_emb_and_pen(void) {
    enum { N = 9, C = 5 };
    slex_rng rng;
    slex_rng_seed(&rng, 3);
    float x[N * C], x0[N * C], emb[C], dx[N * C], demb[C] = {0};
    uint8_t mask[N];
    double G[N * C];
    for (int i = 0; i < N * C; i++) x0[i] = x[i] = (float)(slex_rng_uniform(&rng) - 0.5);
    for (int c = 0; c < C; c++) emb[c] = (float)slex_rng_uniform(&rng);
    for (int n = 0; n < N; n++) mask[n] = (n % 3) == 1;
    for (int i = 0; i < N * C; i++) dx[i] = (float)(G[i] = slex_rng_uniform(&rng) - 0.5);
    slex_mask_emb_forward(x, mask, emb, N, C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            CHECK(x[n * C + c] == (mask[n] ? emb[c] : x0[n * C + c]), "mask_emb forward row %d", n);
    slex_mask_emb_backward(dx, mask, demb, N, C);
    /* L = sum G * out: dL/demb_c = sum over masked rows of G, dL/dx = G on unmasked rows */
    for (int c = 0; c < C; c++) {
        double want = 0.0;
        for (int n = 0; n < N; n++)
            if (mask[n]) want += G[n * C + c];
        CHECK_CLOSE(demb[c], want, 1e-6, "mask_emb demb");
    }
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) CHECK_CLOSE(dx[n * C + c], mask[n] ? 0.0 : (double)(float)G[n * C + c], 0.0, "mask_emb dx");
    /* penalty: mean of squares, gradient by central differences in double */
    double pen = slex_feature_pen_forward(x0, N * C), want = 0.0;
    for (int i = 0; i < N * C; i++) want += (double)x0[i] * x0[i];
    CHECK_CLOSE(pen, want / (N * C), 1e-12, "features_pen");
    float df[N * C];
    for (int i = 0; i < N * C; i++) df[i] = 1.0f;
    slex_feature_pen_backward(df, x0, N * C, 3.5f);
    for (int i = 0; i < N * C; i++) {
        double h = 1e-6, v = x0[i], sp = 0.0, sm = 0.0;
        for (int j = 0; j < N * C; j++) {
            double u = j == i ? v + h : x0[j], w = j == i ? v - h : x0[j];
            sp += u * u;
            sm += w * w;
        }
        double fdv = 3.5 * (sp - sm) / (N * C) / (2 * h);
        CHECK_CLOSE(df[i], 1.0 + fdv, 1e-5, "features_pen gradient (accumulated onto 1)");
    }
}

int main(void) {
    run_case("masked only", 37, 12, 8, 7, 1.0f, 0.0f, 1);
    run_case("masked + unmasked", 41, 10, 6, 9, 1.0f, 0.5f, 2);
    run_case("unmasked only, wide", 23, 20, 16, 30, 0.0f, 1.0f, 3);
    test_label_range();
    test_mask_emb_and_pen();
    return check_finish("test_train_head");
}
