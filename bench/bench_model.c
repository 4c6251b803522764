/* bench_model: HuBERT forward throughput of slex on one long utterance, for bench/model.sh.
 *
 *   bench_model DIR LAYER THREADS REPEATS
 *
 * DIR holds a Hugging Face checkpoint plus wave.f32 (the utterance) and reference.f32
 * (torchaudio's layer-LAYER features, written by bench/model_torch.py export).  Prints "key value"
 * lines: throughput (audio seconds per wall second, best of REPEATS after a warm-up), the max
 * abs error against torchaudio, the time of the transformer layers (full forward minus a forward
 * that stops at the transformer input), the GEMM FLOP rate reached there as a fraction of a large
 * square cblas_sgemm on the same threads, and the peak RSS. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "model/hubert.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *read_floats(const char *path, int64_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *x = malloc((size_t)bytes);
    if (x && fread(x, 1, (size_t)bytes, f) != (size_t)bytes) {
        free(x);
        x = NULL;
    }
    fclose(f);
    *n = bytes / (long)sizeof(float);
    return x;
}

/* Best time of `repeats` forwards (after one warm-up). */
static double time_forward(slex_hubert *m, const float *wave, int64_t n, int layer, float *out, int repeats) {
    slex_error err;
    int64_t T;
    double best = INFINITY;
    for (int r = 0; r <= repeats; r++) {
        double t0 = now();
        if (slex_hubert_forward(m, wave, n, layer, out, &T, &err) != 0) {
            fprintf(stderr, "bench_model: %s\n", err.msg);
            exit(1);
        }
        double dt = now() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    return best;
}

/* FLOP rate of a large square sgemm: what OpenBLAS reaches on these threads. */
static double sgemm_peak_gflops(void) {
    const int n = 1536;
    float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float));
    float *c = malloc((size_t)n * n * sizeof(float));
    for (int i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    double best = INFINITY;
    for (int r = 0; r < 4; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = now() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: bench_model DIR LAYER THREADS REPEATS\n");
        return 2;
    }
    const char *dir = argv[1];
    int layer = atoi(argv[2]), threads = atoi(argv[3]), repeats = atoi(argv[4]);
    openblas_set_num_threads(threads);
    slex_error err;
    slex_hubert *m = slex_hubert_load(dir, NULL, &err);
    if (!m) {
        fprintf(stderr, "bench_model: %s\n", err.msg);
        return 1;
    }
    const slex_hubert_config *c = slex_hubert_get_config(m);
    char path[4096];
    int64_t n, n_ref;
    snprintf(path, sizeof path, "%s/wave.f32", dir);
    float *wave = read_floats(path, &n);
    snprintf(path, sizeof path, "%s/reference.f32", dir);
    float *ref = read_floats(path, &n_ref);
    if (!wave || !ref) {
        fprintf(stderr, "bench_model: cannot read wave.f32 / reference.f32 in %s\n", dir);
        return 1;
    }
    int64_t T = slex_hubert_num_frames(m, n), C = c->hidden_size, F = c->intermediate_size;
    float *out = malloc((size_t)(T * C) * sizeof(float));
    double full = time_forward(m, wave, n, layer, out, repeats);
    double max_err = 0.0;
    if (n_ref != T * C) {
        fprintf(stderr, "bench_model: reference has %lld floats, slex gives %lld x %lld\n", (long long)n_ref,
                (long long)T, (long long)C);
        max_err = INFINITY;
    }
    for (int64_t i = 0; i < n_ref && i < T * C; i++) {
        double d = fabs((double)out[i] - ref[i]);
        if (!(d <= max_err)) max_err = d;
    }
    double front = time_forward(m, wave, n, 0, out, repeats);
    /* Per layer: q, k, v, out projections, the two FFN products, and QK^T and AV over all heads. */
    double layer_flops = 2.0 * T * C * (4.0 * C + 2.0 * F) + 4.0 * (double)T * T * C;
    double gemm_gflops = layer * layer_flops / (full - front) / 1e9;
    double peak = sgemm_peak_gflops();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double seconds = (double)n / 16000.0;
    printf("threads %d\n", threads);
    printf("audio_seconds %.1f\n", seconds);
    printf("frames %lld\n", (long long)T);
    printf("wall_seconds %.3f\n", full);
    printf("audio_seconds_per_second %.2f\n", seconds / full);
    printf("max_abs_err %.3g\n", max_err);
    printf("parity %s\n", max_err <= 1e-3 ? "ok" : "FAILED");
    printf("front_seconds %.3f\n", front);
    printf("transformer_seconds %.3f\n", full - front);
    printf("transformer_gemm_gflops %.1f\n", gemm_gflops);
    printf("sgemm_peak_gflops %.1f\n", peak);
    printf("transformer_fraction_of_peak %.2f\n", gemm_gflops / peak);
    printf("peak_rss_mb %.0f\n", (double)ru.ru_maxrss / 1024.0);
    free(out);
    free(wave);
    free(ref);
    slex_hubert_free(m);
    return max_err <= 1e-3 ? 0 : 1;
}
