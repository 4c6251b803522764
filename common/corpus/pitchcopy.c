#include "corpus/pitchcopy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/proc.h"
#include "core/rng.h"
#include "corpus/audio.h"

static int pitchcopy_check(const void *opts, slex_error *err) {
    const slex_pitchcopy_options *o = opts;
    if (o->cents_min > o->cents_max)
        return slex_fail_as(err, SLEX_ERR_INPUT, "--cents-min %d is above --cents-max %d", o->cents_min, o->cents_max);
    return 0;
}

#define T slex_pitchcopy_options
static const slex_option pitchcopy_rows[] = {
    {SLEX_OPT_INT_FIELD(T, cents_min), .name = "cents-min", .def = 300, .min = -2400, .max = 2400,
     .param = "cents_min", .help = "lowest pitch shift in cents (100 = a semitone; negative: lower)"},
    {SLEX_OPT_INT_FIELD(T, cents_max), .name = "cents-max", .def = 500, .min = -2400, .max = 2400,
     .param = "cents_max", .help = "highest pitch shift in cents (each utterance draws an integer in between)"},
    {SLEX_OPT_LONG_FIELD(T, seed), .name = "seed", .def = 1, .param = "seed", .help = "seed of the per-utterance draws"},
    {SLEX_OPT_INT_FIELD(T, max_lag_hops), .name = "max-lag-hops", .def = 25, .min = 0, .max = 1000,
     .param = "max_lag_hops", .help = "largest delay searched to re-align sox's output, in 1 ms hops"},
};
#undef T
const slex_option_table slex_pitchcopy_option_table = SLEX_OPTION_TABLE_CHECKED(pitchcopy_rows, pitchcopy_check);

void slex_pitchcopy_options_default(slex_pitchcopy_options *o) {
    memset(o, 0, sizeof *o);
    slex_options_defaults(&slex_pitchcopy_option_table, o);
}

int slex_pitchcopy_cents(const slex_pitchcopy_options *o, int64_t index) {
    /* One generator per utterance, from a splitmix64 step of (seed, index): no draw depends on
     * another utterance's. */
    uint64_t state = (uint64_t)o->seed ^ ((uint64_t)index * 0x9E3779B97F4A7C15ull);
    slex_rng rng;
    slex_rng_seed(&rng, slex_splitmix64(&state));
    return o->cents_min + (int)slex_rng_below(&rng, (uint64_t)(o->cents_max - o->cents_min) + 1);
}

/* (hops,) RMS envelope of x (n samples); hops = ceil(n / HOP), windows cut at the end. */
static void envelope(const float *x, int64_t n, double *env, int64_t hops) {
    /* running sum of squares over [t*HOP, t*HOP + WINDOW) */
    double sum = 0;
    int64_t lo = 0, hi = 0;
    for (int64_t t = 0; t < hops; t++) {
        int64_t a = t * SLEX_PITCHCOPY_HOP, b = a + SLEX_PITCHCOPY_WINDOW < n ? a + SLEX_PITCHCOPY_WINDOW : n;
        for (; hi < b; hi++) sum += (double)x[hi] * x[hi];
        for (; lo < a; lo++) sum -= (double)x[lo] * x[lo];
        if (sum < 0) sum = 0; /* rounding of the running sum */
        env[t] = sqrt(sum / SLEX_PITCHCOPY_WINDOW);
    }
}

int slex_pitchcopy_lag(const float *original, int64_t n, const float *shifted, int64_t m, int max_lag_hops,
                       slex_error *err) {
    int64_t ho = (n + SLEX_PITCHCOPY_HOP - 1) / SLEX_PITCHCOPY_HOP, hs = (m + SLEX_PITCHCOPY_HOP - 1) / SLEX_PITCHCOPY_HOP;
    double *eo = malloc((size_t)(ho + hs + 1) * sizeof *eo);
    if (!eo) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory (%lld envelope hops)", (long long)(ho + hs));
    double *es = eo + ho;
    envelope(original, n, eo, ho);
    envelope(shifted, m, es, hs);
    int best = 0;
    double best_score = -1;
    for (int lag = 0; lag <= max_lag_hops && lag < ho; lag++) {
        int64_t len = ho - lag < hs ? ho - lag : hs;
        double dot = 0, so = 0, ss = 0;
        for (int64_t t = 0; t < len; t++) {
            dot += eo[t + lag] * es[t];
            so += eo[t + lag] * eo[t + lag];
            ss += es[t] * es[t];
        }
        double score = so > 0 && ss > 0 ? dot / sqrt(so * ss) : -1;
        if (score > best_score) best_score = score, best = lag;
    }
    free(eo);
    return best;
}

struct slex_pitchcopy {
    char dir[4096];  /* private temporary directory */
    char in[4200];   /* dir/in.wav */
    char out[4200];  /* dir/out.wav */
    int max_lag_hops;
};

slex_pitchcopy *slex_pitchcopy_open(const slex_pitchcopy_options *o, slex_error *err) {
    if (!slex_proc_in_path("sox"))
        return slex_fail_as(err, SLEX_ERR_INPUT, "sox: not installed (not found in PATH); install the Debian package sox"),
               NULL;
    slex_pitchcopy *p = calloc(1, sizeof *p);
    if (!p) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), NULL;
    p->max_lag_hops = o->max_lag_hops;
    if (slex_proc_tmpdir("pitchcopy", p->dir, sizeof p->dir, err)) {
        free(p);
        return NULL;
    }
    snprintf(p->in, sizeof p->in, "%s/in.wav", p->dir);
    snprintf(p->out, sizeof p->out, "%s/out.wav", p->dir);
    return p;
}

void slex_pitchcopy_close(slex_pitchcopy *p) {
    if (!p) return;
    unlink(p->in);
    unlink(p->out);
    rmdir(p->dir);
    free(p);
}

int slex_pitchcopy_utterance(slex_pitchcopy *p, const float *original, int64_t n, int cents, float **copy,
                             int *lag_samples, slex_error *err) {
    *copy = NULL;
    float *shifted = NULL;
    int64_t m = 0;
    slex_proc_text so = {0}, se = {0};
    int status = 0, rc = -1;
    char amount[32];
    snprintf(amount, sizeof amount, "%d", cents);
    /* -D: no dither (sox adds it when it lowers the bit depth, here float -> 16 bits): the copy
     * is the shifted signal alone; -V1: errors only */
    char *argv[] = {"sox", "-D", "-V1", p->in, "-b", "16", p->out, "pitch", amount, NULL};
    unlink(p->out);
    if (slex_audio_write_wav_float(p->in, original, n, SLEX_PITCHCOPY_RATE, err) ||
        slex_proc_run(argv, &so, &se, &status, err))
        goto done;
    if (!slex_proc_succeeded(status)) {
        char why[800];
        slex_proc_describe_exit(status, se.p, why, sizeof why);
        slex_fail_as(err, SLEX_ERR_IO, "sox pitch %d %s", cents, why);
        goto done;
    }
    slex_audio_info info;
    if (slex_audio_read(p->out, SLEX_PITCHCOPY_RATE, &shifted, &m, &info, err)) {
        slex_fail_wrap(err, "sox pitch %d wrote no usable audio", cents);
        goto done;
    }
    int lag = slex_pitchcopy_lag(original, n, shifted, m, p->max_lag_hops, err);
    if (lag < 0) goto done;
    float *c = calloc((size_t)(n > 0 ? n : 1), sizeof *c);
    if (!c) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory (%lld samples)", (long long)n);
        goto done;
    }
    int64_t d = (int64_t)lag * SLEX_PITCHCOPY_HOP;
    for (int64_t i = d; i < n && i - d < m; i++) c[i] = shifted[i - d];
    *copy = c;
    *lag_samples = (int)d;
    rc = 0;
done:
    unlink(p->in);
    unlink(p->out);
    free(shifted);
    free(so.p);
    free(se.p);
    return rc;
}
