/* test_init: the random weights of slex-train --arch (model/init.h) and core's normal draws,
 * against the distributions fairseq's HubertModel states (hand-computed moments), and the
 * OpenBLAS kernel choice (core/blas.h).
 *
 * Each tensor group's sample mean, standard deviation and kurtosis (m4 / m2^2: 3 for a normal,
 * 1.8 for a uniform) must match its stated distribution within a few standard errors. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/blas.h"
#include "core/mpi_util.h"
#include "core/rng.h"
#include "model/init.h"

typedef struct moments {
    double mean, std, kurtosis;
} moments;

static moments moments_of(const float *x, int64_t n) {
    double s = 0, m2 = 0, m4 = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    double mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - mean;
        m2 += d * d;
        m4 += d * d * d * d;
    }
    m2 /= (double)n;
    m4 /= (double)n;
    return (moments){mean, sqrt(m2), m4 / (m2 * m2)};
}

enum { NORMAL, UNIFORM };

/* x ~ N(0, std^2) or U(-b, b) with b = std * sqrt(3) (lo = 0 for mask_emb handled by the caller). */
static void check_group(const char *what, const float *x, int64_t n, int family, double mean, double std) {
    moments m = moments_of(x, n);
    double se = std / sqrt((double)n);
    CHECK(fabs(m.mean - mean) <= 5 * se, "%s: mean %.5f, expected %.5f (n %lld)", what, m.mean, mean, (long long)n);
    CHECK(fabs(m.std / std - 1) <= 5 / sqrt(2.0 * (double)n) + 0.002, "%s: std %.5f, expected %.5f (n %lld)", what,
          m.std, std, (long long)n);
    double kurt = family == NORMAL ? 3.0 : 1.8;
    if (n >= 4000)
        CHECK(fabs(m.kurtosis - kurt) <= 0.25, "%s: kurtosis %.3f, expected %.1f (%s)", what, m.kurtosis, kurt,
              family == NORMAL ? "normal" : "uniform");
}

static void check_constant(const char *what, const float *x, int64_t n, float v) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += x[i] != v;
    CHECK(bad == 0, "%s: %lld of %lld values are not %g", what, (long long)bad, (long long)n, v);
}

static const char *CONFIG =
    "{\"conv_dim\": [32, 32, 32, 32, 32, 32, 32], \"conv_kernel\": [10, 3, 3, 3, 3, 2, 2],"
    " \"conv_stride\": [5, 2, 2, 2, 2, 2, 2], \"conv_bias\": false, \"feat_extract_norm\": \"layer\","
    " \"do_stable_layer_norm\": true, \"hidden_size\": 64, \"num_hidden_layers\": 3,"
    " \"num_attention_heads\": 4, \"intermediate_size\": 256, \"num_conv_pos_embeddings\": 16,"
    " \"num_conv_pos_embedding_groups\": 4}";

static void check_rng_normal(void) {
    slex_rng rng;
    slex_rng_seed(&rng, 42);
    enum { N = 1000000 };
    float *x = malloc(N * sizeof *x);
    int64_t tail = 0;
    for (int i = 0; i < N; i++) {
        x[i] = (float)slex_rng_normal(&rng);
        tail += fabs(x[i]) > 1.959964;
    }
    check_group("slex_rng_normal", x, N, NORMAL, 0.0, 1.0);
    /* P(|z| > 1.96) = 0.05, binomial standard error 2.2e-4. */
    CHECK(fabs((double)tail / N - 0.05) < 0.0011, "P(|z| > 1.96) = %.5f", (double)tail / N);
    free(x);
}

static void check_init(const char *work) {
    char path[4096];
    mkdir(work, 0777); /* may exist */
    snprintf(path, sizeof path, "%s/test_init_config_%ld.json", work, (long)getpid());
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    fputs(CONFIG, f);
    fclose(f);
    slex_error err = {{0}};
    slex_hubert *m = slex_hubert_create(path, NULL, &err);
    remove(path);
    CHECK(m != NULL, "create: %s", err.msg);
    if (!m) return;
    CHECK(slex_hubert_normalizes_waveform(m) == 1, "a layer-norm CNN normalises the waveform");
    CHECK(slex_hubert_init_random(m, 7, &err) == 0, "init: %s", err.msg);
    const slex_hubert_config *c = slex_hubert_get_config(m);
    const slex_hubert_params *p = slex_hubert_get_params_const(m);
    int64_t C = c->hidden_size, L = c->num_hidden_layers, F = c->intermediate_size, Cf = c->conv_dim[6];
    char what[64];
    for (int i = 0; i < c->num_conv; i++) {
        int64_t in = i ? c->conv_dim[i - 1] : 1, fan_in = in * c->conv_kernel[i];
        snprintf(what, sizeof what, "conv %d weight (kaiming_normal)", i);
        check_group(what, p->conv_w[i], c->conv_dim[i] * fan_in, NORMAL, 0.0, sqrt(2.0 / (double)fan_in));
        snprintf(what, sizeof what, "conv %d layer norm", i);
        check_constant(what, p->conv_norm_w[i], c->conv_dim[i], 1.0f);
        check_constant(what, p->conv_norm_b[i], c->conv_dim[i], 0.0f);
    }
    double b = 1.0 / sqrt((double)Cf);
    check_group("feature projection weight (nn.Linear)", p->proj_w, C * Cf, UNIFORM, 0.0, b / sqrt(3.0));
    check_constant("feature projection layer norm", p->proj_ln_w, Cf, 1.0f);
    check_group("qkv (init_bert_params)", p->qkv_w, L * 3 * C * C, NORMAL, 0.0, 0.02);
    check_group("out_proj", p->attproj_w, L * C * C, NORMAL, 0.0, 0.02);
    check_group("fc1", p->fc_w, L * F * C, NORMAL, 0.0, 0.02);
    check_group("fc2", p->fcproj_w, L * C * F, NORMAL, 0.0, 0.02);
    check_constant("qkv bias", p->qkv_b, L * 3 * C, 0.0f);
    check_constant("fc1 bias", p->fc_b, L * F, 0.0f);
    check_constant("fc2 bias", p->fcproj_b, L * C, 0.0f);
    check_constant("out_proj bias", p->attproj_b, L * C, 0.0f);
    check_constant("layer norms", p->ln1_w, L * C, 1.0f);
    check_constant("layer norms", p->ln2_b, L * C, 0.0f);
    check_constant("final layer norm", p->enc_ln_w, C, 1.0f);
    int64_t K = c->num_conv_pos_embeddings, Cg = C / c->num_conv_pos_embedding_groups;
    check_group("pos conv direction", p->pos_conv_v, C * Cg * K, NORMAL, 0.0, sqrt(4.0 / (double)(K * C)));
    check_constant("pos conv bias", p->pos_conv_b, C, 0.0f);
    for (int64_t k = 0; k < K; k++) { /* weight_norm(dim=2) at creation: g = |v[:, :, k]| */
        double sq = 0;
        for (int64_t i = 0; i < C * Cg; i++) sq += (double)p->pos_conv_v[i * K + k] * p->pos_conv_v[i * K + k];
        CHECK(fabs(p->pos_conv_g[k] - sqrt(sq)) <= 1e-5 * sqrt(sq), "pos conv g[%lld] %g vs |v| %g", (long long)k,
              p->pos_conv_g[k], sqrt(sq));
    }
    check_group("masked_spec_embed (uniform_)", p->mask_emb, C, UNIFORM, 0.5, 0.5 / sqrt(3.0));
    /* The same seed draws the same weights, another seed others. */
    int64_t n = slex_hubert_num_parameters(m);
    float *first = malloc((size_t)n * sizeof *first);
    memcpy(first, slex_hubert_params_block(m), (size_t)n * sizeof *first);
    slex_hubert_init_random(m, 7, &err);
    CHECK(!memcmp(first, slex_hubert_params_block(m), (size_t)n * sizeof *first), "seed 7 twice: other weights");
    slex_hubert_init_random(m, 8, &err);
    CHECK(memcmp(first, slex_hubert_params_block(m), (size_t)n * sizeof *first), "seeds 7 and 8: the same weights");
    free(first);
    slex_hubert_free(m);
}

/* Under MPI and without OPENBLAS_CORETYPE, slex_mpi_start leaves OpenBLAS on kernels the CPU
 * supports best (never Prescott on an AVX2 machine); a user's OPENBLAS_CORETYPE is kept. */
static void check_blas(void) {
    const char *kernel = slex_blas_kernel();
    const char *user = getenv("OPENBLAS_CORETYPE");
    __builtin_cpu_init();
    if (getenv("SLEX_BLAS_REEXEC") && user) /* set by the re-execution */
        CHECK(strcasecmp(kernel, "prescott") != 0, "kernel %s after the re-execution", kernel);
    else if (user)
        CHECK(strcasecmp(kernel, user) == 0, "OPENBLAS_CORETYPE=%s but the kernel is %s", user, kernel);
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CHECK(strcasecmp(kernel, "prescott") != 0, "OpenBLAS on Prescott kernels on an AVX2 machine");
    fprintf(stderr, "OpenBLAS kernel: %s\n", kernel);
}

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    if (argc < 2) {
        fprintf(stderr, "usage: test_init WORK_DIR\n");
        return 2;
    }
    check_blas();
    if (mpi.rank == 0) {
        check_rng_normal();
        check_init(argv[1]);
    }
    int failed = check_finish("test_init");
    slex_mpi_stop();
    return failed;
}
