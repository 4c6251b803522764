/* test_mfcc: slex_mfcc against fixtures made by tests/mfcc_reference.py with torchaudio 0.13.1
 * (fairseq dump_mfcc_feature.py: kaldi.mfcc + two compute_deltas), every coefficient within
 * 1e-3 absolute (fairseq's defaults and two cases with other options); frame counts; short
 * inputs; option validation.
 * Usage: test_mfcc <fixture dir (tests/data/mfcc)> */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "feat/mfcc.h"

#define TOLERANCE 1e-3

/* Reads exactly count little-endian float32 values (this test runs on little-endian hosts). */
static float *read_f32(const char *dir, const char *name, const char *suffix, size_t count) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, suffix);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    float *data = malloc(count ? count * sizeof *data : 1);
    size_t got = data ? fread(data, sizeof *data, count, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != count || extra) {
        fprintf(stderr, "%s: expected %zu floats\n", path, count);
        free(data);
        return NULL;
    }
    return data;
}

/* Applies "name=value" (a slex_mfcc_options field) to o; 0, or -1 for an unknown name. */
static int set_option(slex_mfcc_options *o, const char *assignment) {
    char name[64];
    double value;
    if (sscanf(assignment, "%63[^=]=%lf", name, &value) != 2) return -1;
    if (!strcmp(name, "sample_rate")) o->sample_rate = value;
    else if (!strcmp(name, "frame_length_ms")) o->frame_length_ms = value;
    else if (!strcmp(name, "frame_shift_ms")) o->frame_shift_ms = value;
    else if (!strcmp(name, "num_mel_bins")) o->num_mel_bins = (int)value;
    else if (!strcmp(name, "num_ceps")) o->num_ceps = (int)value;
    else if (!strcmp(name, "low_freq")) o->low_freq = value;
    else if (!strcmp(name, "high_freq")) o->high_freq = value;
    else if (!strcmp(name, "preemphasis")) o->preemphasis = value;
    else if (!strcmp(name, "cepstral_lifter")) o->cepstral_lifter = value;
    else if (!strcmp(name, "delta_window")) o->delta_window = (int)value;
    else return -1;
    return 0;
}

/* Compares one fixture case computed with options o, with and without deltas; returns the
 * max abs error (negative when it could not run). */
static double check_case(const slex_mfcc_options *o, const char *dir, const char *name, long long n,
                         long long frames, int dim) {
    slex_error err = {{0}};
    slex_mfcc_options o_plain = *o;
    o_plain.with_deltas = 0;
    slex_mfcc *m = slex_mfcc_create(o, &err);
    CHECK(m != NULL, "%s: create: %s", name, err.msg);
    slex_mfcc *m_plain = slex_mfcc_create(&o_plain, &err);
    CHECK(m_plain != NULL, "%s: create without deltas: %s", name, err.msg);
    float *wave = read_f32(dir, name, "wave.f32", (size_t)n);
    float *expected = read_f32(dir, name, "feat.f32", (size_t)(frames * dim));
    CHECK(wave && expected, "%s: fixture files missing", name);
    double max_err = -1.0;
    if (!m || !m_plain || !wave || !expected) goto done;
    CHECK(slex_mfcc_num_frames(m, n) == frames, "%s: %lld frames, torchaudio %lld", name,
          (long long)slex_mfcc_num_frames(m, n), frames);
    CHECK(dim == slex_mfcc_dim(m) && dim == 3 * slex_mfcc_dim(m_plain), "%s: fixture dim %d, slex %d / %d", name,
          dim, slex_mfcc_dim(m), slex_mfcc_dim(m_plain));
    if (dim != slex_mfcc_dim(m) || slex_mfcc_num_frames(m, n) != frames) goto done;

    const int n_ceps = dim / 3;
    float *got = malloc((size_t)(frames * dim) * sizeof *got);
    float *plain = malloc((size_t)(frames * n_ceps) * sizeof *plain);
    int rc = slex_mfcc_compute(m, wave, n, got, &err);
    CHECK(rc == 0, "%s: %s", name, err.msg);
    int rc_plain = slex_mfcc_compute(m_plain, wave, n, plain, &err);
    CHECK(rc_plain == 0, "%s (no deltas): %s", name, err.msg);
    double max_err_block[3] = {0, 0, 0}, max_err_plain = 0.0;
    int bad = 0;
    max_err = 0.0;
    for (long long t = 0; rc == 0 && t < frames; t++) {
        for (int c = 0; c < dim; c++) {
            double e = fabs((double)got[t * dim + c] - (double)expected[t * dim + c]);
            if (!(e <= TOLERANCE) && bad++ < 5) CHECK_CLOSE(got[t * dim + c], expected[t * dim + c], TOLERANCE, name);
            if (!(e <= max_err)) max_err = e;
            if (!(e <= max_err_block[c / n_ceps])) max_err_block[c / n_ceps] = e;
        }
    }
    CHECK(bad == 0, "%s: %d coefficients off by more than %g (max %g)", name, bad, TOLERANCE, max_err);
    /* Without deltas the rows are the fixture's first num_ceps columns. */
    for (long long t = 0; rc_plain == 0 && t < frames; t++)
        for (int c = 0; c < n_ceps; c++) {
            double e = fabs((double)plain[t * n_ceps + c] - (double)expected[t * dim + c]);
            if (!(e <= max_err_plain)) max_err_plain = e;
        }
    CHECK(max_err_plain <= TOLERANCE, "%s: without deltas max error %g", name, max_err_plain);
    fprintf(stderr, "  %-15s N=%-6lld T=%-4lld max abs err: mfcc %.2e  delta %.2e  delta-delta %.2e\n", name, n,
            frames, max_err_block[0], max_err_block[1], max_err_block[2]);
    free(got);
    free(plain);
done:
    slex_mfcc_free(m);
    slex_mfcc_free(m_plain);
    free(wave);
    free(expected);
    return max_err;
}

static void check_fixtures(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/index.txt", dir);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    char line[1024];
    int cases = 0, option_cases = 0;
    double worst = 0.0;
    while (fgets(line, sizeof line, f)) {
        char name[256];
        long long n, frames;
        int dim, used;
        if (line[0] == '#' || line[0] == '\n') continue;
        int fields = sscanf(line, "%255s %lld %lld %d%n", name, &n, &frames, &dim, &used);
        CHECK(fields == 4, "bad index line: %s", line);
        if (fields != 4) continue;
        slex_mfcc_options o;
        slex_mfcc_options_default(&o);
        int options_ok = 1, n_options = 0;
        for (char *tok = strtok(line + used, " \t\n"); tok; tok = strtok(NULL, " \t\n"), n_options++) {
            int ok = set_option(&o, tok) == 0;
            CHECK(ok, "%s: unknown option %s", name, tok);
            options_ok &= ok;
        }
        if (!options_ok) continue;
        double e = check_case(&o, dir, name, n, frames, dim);
        CHECK(e >= 0.0, "%s: not compared", name);
        if (e > worst) worst = e;
        cases++;
        option_cases += n_options > 0;
    }
    fclose(f);
    CHECK(cases >= 10 && option_cases >= 2, "only %d fixture cases (%d with options) in %s", cases, option_cases,
          path);
    fprintf(stderr, "  %d cases, max abs error over all coefficients: %.3e (tolerance %g)\n", cases, worst, TOLERANCE);
}

static void check_short_inputs(slex_mfcc *m) {
    /* snip_edges frame counts: 0 below one window, then 1 + (n - 400) / 160. */
    const long long lengths[] = {0, 1, 399, 400, 401, 559, 560, 16000, 23457};
    const long long expected[] = {0, 0, 0, 1, 1, 1, 2, 98, 145};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++)
        CHECK(slex_mfcc_num_frames(m, lengths[i]) == expected[i], "n=%lld: %lld frames, expected %lld", lengths[i],
              (long long)slex_mfcc_num_frames(m, lengths[i]), expected[i]);

    /* Shorter than a window: 0 frames, success, output untouched. */
    slex_error err = {{0}};
    float wave[399], out[39];
    for (int i = 0; i < 399; i++) wave[i] = 0.5f * (float)((i * 37) % 17 - 8) / 8.0f;
    for (int i = 0; i < 39; i++) out[i] = 12345.0f;
    CHECK(slex_mfcc_compute(m, wave, 399, out, &err) == 0, "399 samples: %s", err.msg);
    int untouched = 1;
    for (int i = 0; i < 39; i++) untouched &= out[i] == 12345.0f;
    CHECK(untouched, "399 samples wrote into the output");
    CHECK(slex_mfcc_compute(m, NULL, 0, NULL, &err) == 0, "0 samples: %s", err.msg);
    CHECK(slex_mfcc_compute(m, wave, -1, out, &err) == -1, "negative length accepted");
    CHECK(strstr(err.msg, "mfcc") != NULL, "error message: %s", err.msg);
}

static void check_options(void) {
    slex_mfcc_options o;
    slex_mfcc_options_default(&o);
    CHECK(o.sample_rate == 16000.0 && o.frame_length_ms == 25.0 && o.frame_shift_ms == 10.0 && o.num_mel_bins == 23 &&
              o.num_ceps == 13 && o.low_freq == 20.0 && o.high_freq == 0.0 && o.preemphasis == 0.97 &&
              o.cepstral_lifter == 22.0 && o.delta_window == 2 && o.with_deltas == 1,
          "defaults differ from torchaudio 0.13.1's kaldi.mfcc / compute_deltas");
    struct {
        const char *what;
        slex_mfcc_options o;
    } bad[7];
    for (int i = 0; i < 7; i++) bad[i].o = o;
    bad[0].what = "num_ceps > num_mel_bins", bad[0].o.num_ceps = 24;
    bad[1].what = "3 mel bins", bad[1].o.num_mel_bins = 3;
    bad[2].what = "low_freq above high_freq", bad[2].o.low_freq = 5000, bad[2].o.high_freq = 4000;
    bad[3].what = "preemphasis 1.5", bad[3].o.preemphasis = 1.5;
    bad[4].what = "delta_window 0", bad[4].o.delta_window = 0;
    bad[5].what = "a window of 1.6e13 samples", bad[5].o.frame_length_ms = 1e12;
    bad[6].what = "a shift of 0 samples", bad[6].o.frame_shift_ms = 0.01;
    for (int i = 0; i < 7; i++) {
        slex_error err = {{0}};
        slex_mfcc *m = slex_mfcc_create(&bad[i].o, &err);
        CHECK(m == NULL && err.msg[0] != '\0', "%s accepted", bad[i].what);
        slex_mfcc_free(m);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <fixture dir>\n", argv[0]);
        return 2;
    }
    check_fixtures(argv[1]);
    slex_error err = {{0}};
    slex_mfcc_options o;
    slex_mfcc_options_default(&o);
    slex_mfcc *m = slex_mfcc_create(&o, &err);
    CHECK(m != NULL, "create: %s", err.msg);
    if (m) {
        CHECK(slex_mfcc_dim(m) == 39, "dim %d", slex_mfcc_dim(m));
        check_short_inputs(m);
    }
    slex_mfcc_free(m);
    check_options();
    return check_finish("test_mfcc");
}
