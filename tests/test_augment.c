/* test_augment: the perturbations of corpus/augment.h against definitions and hand-computed
 * cases, not against their own bookkeeping.
 *
 *   test_augment                      unit checks:
 *     - phone rescaling under a speed change: hand-computed boundaries (rounding, a phone that
 *       vanishes, silences that merge, the last end = the audio length);
 *     - the speed change itself: a tone burst comes out round(n / speed) long, its onset and
 *       offset where the rescaled phone boundaries say, at speed x its frequency;
 *     - noise: the SNR measured back from the mixed signal; the spectral slope of white, pink and
 *       brown noise (0, -3, -6 dB per octave of power density);
 *     - the room response: RT60 estimated back by Schroeder backward integration (T30 fit), its
 *       DRR and its unit energy; FFT convolution against the direct sum;
 *     - the draws: same key same parameters, probabilities and ranges over many keys;
 *     - the voice sets the speakers come from (slex-synth --voices): every variant of "all" is a
 *       file of espeak-ng's voices/!v, all 99 and 8 accents occur, ranges as documented, and
 *       "standard" gives the speakers it gave before "all" existed.
 *   test_augment corpus CLEAN AUG NAME  an augmented corpus against the same corpus made without
 *     --augment (same seed: same sentences and speakers): every length and phone boundary is the
 *     clean one rescaled by the recorded speed; utterances with noise alone have the recorded
 *     SNR (measured from the two WAVs, with the recorded gain); gain alone has the recorded
 *     gain; the peak stays below the limit.
 *   test_augment similar REF.wav GOT.wav  the same length and a correlation of at least 0.999
 *     (tests/test_synth_augment.sh: a speed change against sox's `speed F rate -v 16000`). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "corpus/align.h"
#include "corpus/audio.h"
#include "corpus/augment.h"
#include "corpus/synth.h"

static const double PI = 3.14159265358979323846;

static double power_db_ratio(const float *a, const float *b, int64_t n) { /* 10 log10(sum a^2 / sum b^2) */
    double pa = 0, pb = 0;
    for (int64_t i = 0; i < n; i++) pa += (double)a[i] * a[i], pb += (double)b[i] * b[i];
    return 10 * log10(pa / pb);
}

static void check_segments(const slex_segment *got, int64_t n_got, const slex_segment *want, int64_t n_want,
                           const char *what) {
    CHECK(n_got == n_want, "%s: %lld phones, expected %lld", what, (long long)n_got, (long long)n_want);
    for (int64_t i = 0; i < n_got && i < n_want; i++)
        CHECK(got[i].start == want[i].start && got[i].end == want[i].end && !strcmp(got[i].label, want[i].label),
              "%s: phone %lld is [%lld, %lld) %s, expected [%lld, %lld) %s", what, (long long)i,
              (long long)got[i].start, (long long)got[i].end, got[i].label, (long long)want[i].start,
              (long long)want[i].end, want[i].label);
}

static void test_rescale(void) {
    /* Speed 2: b -> round(b / 2), halves rounding up.  p [251, 252) -> [126, 126) vanishes, and
     * the silences on both sides merge. */
    slex_segment s[] = {{0, 101, "a"}, {101, 251, "sil"}, {251, 252, "p"}, {252, 600, "sil"}, {600, 1000, "c"}};
    const slex_segment want[] = {{0, 51, "a"}, {51, 300, "sil"}, {300, 500, "c"}};
    int64_t n = slex_augment_rescale_segments(s, 5, 2000, 500);
    check_segments(s, n, want, 3, "speed 2.000");
    /* Speed 0.85: 100 -> 117.65 -> 118, 999 -> 1175.29 -> 1175, end -> round(1000 / 0.85) = 1176. */
    slex_segment t[] = {{0, 100, "a"}, {100, 999, "b"}, {999, 1000, "c"}};
    const slex_segment want_t[] = {{0, 118, "a"}, {118, 1175, "b"}, {1175, 1176, "c"}};
    n = slex_augment_rescale_segments(t, 3, 850, 1176);
    check_segments(t, n, want_t, 3, "speed 0.850");
    /* Speed 1.15: 1 -> 0.87 -> 1; 1000 -> 869.57 -> 870 = round(1001 / 1.15): the last phone
     * vanishes. */
    slex_segment u[] = {{0, 1, "a"}, {1, 1000, "b"}, {1000, 1001, "c"}};
    const slex_segment want_u[] = {{0, 1, "a"}, {1, 870, "b"}};
    n = slex_augment_rescale_segments(u, 3, 1150, 870);
    check_segments(u, n, want_u, 2, "speed 1.150, the last phone vanishes");
}

/* A 300 Hz tone in [4000, 8000) of 16000 samples of silence, sped up and slowed down. */
static void test_speed(void) {
    const int64_t n = 16000;
    float *x = calloc((size_t)n, sizeof *x);
    for (int64_t i = 4000; i < 8000; i++) x[i] = (float)(0.5 * sin(2 * PI * 300 * (double)i / 16000));
    const int speeds[] = {870, 1000, 1130};
    for (int s = 0; s < 3; s++) {
        int f = speeds[s];
        float *y;
        int64_t m;
        slex_error err = {{0}};
        CHECK(!slex_augment_speed(x, n, f, &y, &m, &err), "speed %d: %s", f, err.msg);
        CHECK(m == (n * 2000 + f) / (2 * f), "speed %d: %lld samples, expected round(%lld / %g)", f, (long long)m,
              (long long)n, f / 1000.0);
        slex_segment seg[] = {{0, 4000, "sil"}, {4000, 8000, "a"}, {8000, n, "sil"}};
        int64_t ns = slex_augment_rescale_segments(seg, 3, f, m);
        CHECK(ns == 3 && seg[2].end == m, "speed %d: the phones end at the audio's end", f);
        /* Onset and offset: the first and last sample above half the tone's amplitude. */
        int64_t on = -1, off = -1, crossings = 0;
        for (int64_t i = 0; i < m; i++)
            if (fabsf(y[i]) > 0.25f) {
                if (on < 0) on = i;
                off = i;
            }
        CHECK(labs(on - seg[1].start) <= 6 && labs(off + 1 - seg[1].end) <= 6,
              "speed %d: tone in [%lld, %lld], phone [%lld, %lld)", f, (long long)on, (long long)off,
              (long long)seg[1].start, (long long)seg[1].end);
        /* Frequency from the zero crossings in the middle half of the tone. */
        int64_t a = seg[1].start + (seg[1].end - seg[1].start) / 4, b = seg[1].end - (seg[1].end - seg[1].start) / 4;
        for (int64_t i = a + 1; i < b; i++) crossings += (y[i - 1] < 0) != (y[i] < 0);
        double hz = crossings / 2.0 / ((double)(b - a) / 16000);
        CHECK_CLOSE(hz, 300 * f / 1000.0, 300 * f / 1000.0 * 0.02, "tone frequency after the speed change");
        free(y);
    }
    free(x);
}

/* Speech-like test signal: tones under a syllable-rate envelope, with pauses. */
static float *speechlike(int64_t n, double amp) {
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / 16000, env = fmax(0, sin(2 * PI * 3.7 * t));
        x[i] = (float)(amp * env * (sin(2 * PI * 180 * t) + 0.5 * sin(2 * PI * 730 * t) + 0.3 * sin(2 * PI * 2300 * t)));
    }
    return x;
}

/* Mean power density of x in [lo, hi) Hz, measured by a direct DFT at `points` frequencies
 * spread over the band, averaged over Hann-windowed frames of 2048 samples. */
static double band_density(const float *x, int64_t n, double lo, double hi, int points) {
    const int L = 2048;
    double sum = 0;
    int count = 0;
    for (int64_t at = 0; at + L <= n; at += L) {
        for (int p = 0; p < points; p++) {
            double f = lo * pow(hi / lo, (p + 0.5) / points);
            double re = 0, im = 0;
            for (int i = 0; i < L; i++) {
                double w = 0.5 - 0.5 * cos(2 * PI * i / (L - 1));
                re += w * x[at + i] * cos(2 * PI * f * i / 16000);
                im -= w * x[at + i] * sin(2 * PI * f * i / 16000);
            }
            sum += re * re + im * im;
            count++;
        }
    }
    return sum / count;
}

static void test_noise(void) {
    const int64_t n = 64000;
    float *x = speechlike(n, 0.1), *noise = malloc((size_t)n * sizeof *noise), *y = malloc((size_t)n * sizeof *y);
    float *babble = speechlike(50000, 1.0);
    const slex_noise_kind kinds[] = {SLEX_NOISE_WHITE, SLEX_NOISE_PINK, SLEX_NOISE_BROWN, SLEX_NOISE_BABBLE};
    const double snrs[] = {0, 7.5, 20};
    for (int k = 0; k < 4; k++) {
        for (int s = 0; s < 3; s++) {
            slex_error err = {{0}};
            CHECK(!slex_augment_noise(kinds[k], n, 77 + (uint64_t)s, babble, 50000, noise, &err), "%s", err.msg);
            double p = 0;
            for (int64_t i = 0; i < n; i++) p += (double)noise[i] * noise[i];
            CHECK_CLOSE(p / n, 1.0, 1e-3, "unit noise power");
            memcpy(y, x, (size_t)n * sizeof *y);
            slex_augment_add_noise(y, n, noise, snrs[s]);
            for (int64_t i = 0; i < n; i++) noise[i] = y[i] - x[i];
            CHECK_CLOSE(power_db_ratio(x, noise, n), snrs[s], 0.01, slex_noise_kind_name(kinds[k]));
        }
    }
    /* Colour: slope of 10 log10(power density) per octave over 125 Hz .. 4 kHz. */
    const int64_t nc = 16 * 2048;
    float *c = malloc((size_t)nc * sizeof *c);
    const double slopes[] = {0, -3.0103, -6.0206};
    for (int k = 0; k < 3; k++) {
        slex_error err = {{0}};
        CHECK(!slex_augment_noise(kinds[k], nc, 5, NULL, 0, c, &err), "%s", err.msg);
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        int bands = 5;
        for (int b = 0; b < bands; b++) {
            double lo = 125 * pow(2, b), d = 10 * log10(band_density(c, nc, lo, 2 * lo, 8));
            double o = b + 0.5;
            sx += o, sy += d, sxx += o * o, sxy += o * d;
        }
        double slope = (bands * sxy - sx * sy) / (bands * sxx - sx * sx);
        CHECK_CLOSE(slope, slopes[k], 0.3, slex_noise_kind_name(kinds[k]));
    }
    /* Through slex_augment_apply: noise only, quiet speech (no peak limit), gain 0. */
    slex_augment_params pa = {.speed_permille = 1000, .noise = SLEX_NOISE_PINK, .snr_db = 12.5};
    float *z = malloc((size_t)n * sizeof *z);
    memcpy(z, x, (size_t)n * sizeof *z);
    int64_t nz = n, nsegs = 1;
    slex_segment seg = {0, n, "a"};
    slex_error err = {{0}};
    CHECK(!slex_augment_apply(&pa, 9, NULL, 0, &z, &nz, &seg, &nsegs, &err), "%s", err.msg);
    CHECK(nz == n && nsegs == 1 && seg.end == n, "noise keeps the length and the phones");
    CHECK_CLOSE(pa.applied_gain_db, 0, 1e-9, "no gain");
    for (int64_t i = 0; i < n; i++) noise[i] = z[i] - x[i];
    CHECK_CLOSE(power_db_ratio(x, noise, n), 12.5, 0.01, "SNR through slex_augment_apply");
    /* Gain, and the peak limit: +30 dB on a 0.1 signal would exceed 0.99. */
    pa = (slex_augment_params){.speed_permille = 1000, .gain_db = -6};
    memcpy(z, x, (size_t)n * sizeof *z);
    CHECK(!slex_augment_apply(&pa, 9, NULL, 0, &z, &nz, &seg, &nsegs, &err), "%s", err.msg);
    CHECK_CLOSE(power_db_ratio(z, x, n), -6, 1e-4, "gain -6 dB");
    pa = (slex_augment_params){.speed_permille = 1000, .gain_db = 30};
    memcpy(z, x, (size_t)n * sizeof *z);
    CHECK(!slex_augment_apply(&pa, 9, NULL, 0, &z, &nz, &seg, &nsegs, &err), "%s", err.msg);
    double peak = 0, peak_x = 0;
    for (int64_t i = 0; i < n; i++) peak = fmax(peak, fabs(z[i])), peak_x = fmax(peak_x, fabs(x[i]));
    CHECK_CLOSE(peak, SLEX_AUGMENT_PEAK, 1e-6, "peak limited");
    CHECK_CLOSE(pa.applied_gain_db, 20 * log10(SLEX_AUGMENT_PEAK / peak_x), 1e-4, "applied gain includes the limit");
    /* Babble without babble speech is an error, not silence. */
    pa = (slex_augment_params){.speed_permille = 1000, .noise = SLEX_NOISE_BABBLE, .snr_db = 10};
    CHECK(slex_augment_apply(&pa, 9, NULL, 0, &z, &nz, &seg, &nsegs, &err) && strstr(err.msg, "babble"),
          "babble without speech: %s", err.msg);
    free(x), free(noise), free(y), free(babble), free(c), free(z);
}

/* RT60 from Schroeder's backward integral: a line fitted to the energy decay curve between
 * -5 and -35 dB, extrapolated to -60 dB. */
static double schroeder_rt60(const float *h, int64_t len, int rate) {
    double *edc = malloc((size_t)len * sizeof *edc), acc = 0;
    for (int64_t i = len - 1; i >= 0; i--) acc += (double)h[i] * h[i], edc[i] = acc;
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    int64_t m = 0;
    for (int64_t i = 0; i < len; i++) {
        double d = 10 * log10(edc[i] / edc[0]);
        if (d > -5 || d < -35) continue;
        double t = (double)i / rate;
        sx += t, sy += d, sxx += t * t, sxy += t * d, m++;
    }
    free(edc);
    double slope = (m * sxy - sx * sy) / (m * sxx - sx * sx); /* dB per second */
    return -60 / slope;
}

static void test_room(void) {
    const double rt60s[] = {0.2, 0.45, 0.9}, drrs[] = {-3, 4, 12};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            float *h;
            int64_t len;
            slex_error err = {{0}};
            CHECK(!slex_augment_room_response(rt60s[a], drrs[b], 16000, 1000 + (uint64_t)(3 * a + b), &h, &len, &err),
                  "%s", err.msg);
            double e = 0, tail = 0;
            for (int64_t i = 0; i < len; i++) e += (double)h[i] * h[i];
            for (int64_t i = 1; i < len; i++) tail += (double)h[i] * h[i];
            CHECK_CLOSE(e, 1.0, 1e-5, "unit energy");
            CHECK_CLOSE(10 * log10((double)h[0] * h[0] / tail), drrs[b], 0.01, "DRR");
            CHECK(len >= (int64_t)(rt60s[a] * 16000) && len <= (int64_t)(rt60s[a] * 16000) + 162,
                  "length %lld for RT60 %g", (long long)len, rt60s[a]);
            double est = schroeder_rt60(h, len, 16000);
            CHECK(fabs(est - rt60s[a]) <= 0.05 * rt60s[a], "RT60 %g (DRR %g): Schroeder estimate %.4f", rt60s[a],
                  drrs[b], est);
            free(h);
        }
    /* FFT convolution = the direct sum. */
    const int64_t n = 3001, len = 777;
    float *x = malloc(n * sizeof *x), *h = malloc(len * sizeof *h), *y = malloc(n * sizeof *y);
    slex_rng r;
    slex_rng_seed(&r, 3);
    for (int64_t i = 0; i < n; i++) x[i] = (float)slex_rng_normal(&r);
    for (int64_t i = 0; i < len; i++) h[i] = (float)(slex_rng_normal(&r) * exp(-(double)i / 100));
    memcpy(y, x, n * sizeof *y);
    slex_error err = {{0}};
    CHECK(!slex_augment_convolve(y, n, h, len, &err), "%s", err.msg);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < len && j <= i; j++) s += (double)h[j] * x[i - j];
        worst = fmax(worst, fabs(s - y[i]));
    }
    CHECK(worst < 1e-4, "FFT convolution differs from the direct sum by %g", worst);
    free(x), free(h), free(y);
}

static void test_draws(void) {
    slex_augment_options o;
    slex_augment_options_default(&o);
    slex_error err = {{0}};
    CHECK(!slex_augment_options_check(&o, &err), "defaults: %s", err.msg);
    slex_augment_params p, q;
    slex_augment_draw(&o, 12345, &p);
    slex_augment_draw(&o, 12345, &q);
    CHECK(!memcmp(&p, &q, sizeof p), "same key, same parameters");
    const int N = 20000;
    int speed = 0, reverb = 0, noise = 0, gain = 0, kinds[SLEX_NOISE_KINDS] = {0};
    double snr_sum = 0;
    for (int k = 0; k < N; k++) {
        slex_augment_draw(&o, (uint64_t)k * 7919, &p);
        if (p.speed_permille != 1000) {
            speed++;
            CHECK(p.speed_permille >= 850 && p.speed_permille <= 1150, "speed %d", p.speed_permille);
        }
        if (p.rt60 > 0) {
            reverb++;
            CHECK(p.rt60 >= 0.2 && p.rt60 <= 0.8 && p.drr_db >= -3 && p.drr_db <= 12, "rt60 %g drr %g", p.rt60, p.drr_db);
        }
        if (p.noise) noise++, kinds[p.noise]++, snr_sum += p.snr_db;
        if (p.gain_db != 0) gain++;
    }
    CHECK_CLOSE((double)speed / N, 0.6, 0.02, "speed probability");
    CHECK_CLOSE((double)reverb / N, 0.3, 0.02, "reverb probability");
    CHECK_CLOSE((double)noise / N, 0.4, 0.02, "noise probability");
    CHECK_CLOSE((double)gain / N, 0.5, 0.02, "gain probability");
    CHECK_CLOSE(snr_sum / noise, 15, 0.3, "mean SNR");
    for (int k = SLEX_NOISE_WHITE; k < SLEX_NOISE_KINDS; k++)
        CHECK_CLOSE((double)kinds[k] / noise, 0.25, 0.03, slex_noise_kind_name(k));
    /* One kind only; bad lists and ranges are refused. */
    o.noise_kinds = "pink";
    slex_augment_draw(&o, 99, &p);
    for (int k = 0; k < 200; k++) {
        slex_augment_draw(&o, (uint64_t)k, &p);
        CHECK(p.noise == SLEX_NOISE_NONE || p.noise == SLEX_NOISE_PINK, "only pink");
    }
    CHECK(!slex_augment_uses_babble(&o), "pink needs no babble");
    o.noise_kinds = "pink,hum";
    CHECK(slex_augment_options_check(&o, &err) && strstr(err.msg, "'hum'"), "unknown kind: %s", err.msg);
    o.noise_kinds = "pink";
    o.snr_min = 30;
    CHECK(slex_augment_options_check(&o, &err) && strstr(err.msg, "--snr-min"), "min above max: %s", err.msg);
}

static void test_voices(void) {
    char seen[200][64];
    int n_seen = 0, accents = 0, rate_lo = 1000, rate_hi = 0, pitch_lo = 1000, pitch_hi = 0;
    const char *accent_names[] = {"en-us", "en", "en-gb-x-rp", "en-us-nyc", "en-029", "en-gb-scotland",
                                  "en-gb-x-gbclan", "en-gb-x-gbcwmd"};
    for (int i = 0; i < 4000; i++) {
        slex_speaker sp;
        slex_synth_speaker(SLEX_LANG_EN, SLEX_VOICES_ALL, i, &sp);
        const char *plus = strchr(sp.voice, '+');
        CHECK(plus, "voice %s has no variant", sp.voice);
        if (!plus) continue;
        int j = 0;
        while (j < n_seen && strcmp(seen[j], plus + 1)) j++;
        if (j == n_seen && n_seen < 200) {
            char path[256];
            snprintf(path, sizeof path, "/usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/!v/%s", plus + 1);
            FILE *f = fopen(path, "r");
            CHECK(f, "variant %s is not a file of espeak-ng", plus + 1);
            if (f) fclose(f);
            snprintf(seen[n_seen++], sizeof seen[0], "%s", plus + 1);
        }
        for (int a = 0; a < 8; a++)
            if ((size_t)(plus - sp.voice) == strlen(accent_names[a]) && !strncmp(sp.voice, accent_names[a], plus - sp.voice))
                accents |= 1 << a;
        rate_lo = sp.rate < rate_lo ? sp.rate : rate_lo, rate_hi = sp.rate > rate_hi ? sp.rate : rate_hi;
        pitch_lo = sp.pitch < pitch_lo ? sp.pitch : pitch_lo, pitch_hi = sp.pitch > pitch_hi ? sp.pitch : pitch_hi;
    }
    CHECK(n_seen == 99, "--voices all: %d variants, expected 99", n_seen);
    CHECK(accents == 0xff, "--voices all: accents seen %#x", accents);
    CHECK(rate_lo == 100 && rate_hi == 320 && pitch_lo == 10 && pitch_hi == 90, "--voices all: rate %d..%d pitch %d..%d",
          rate_lo, rate_hi, pitch_lo, pitch_hi);
    /* Standard: the speakers the build before "all" gave (printed by that build). */
    const struct {
        slex_lang lang;
        int index;
        const char *voice;
        int rate, pitch, range;
    } before[] = {{SLEX_LANG_EN, 0, "en-gb-x-rp+m7", 218, 70, 29},
                  {SLEX_LANG_EN, 7, "en-gb-scotland+klatt3", 177, 29, 54},
                  {SLEX_LANG_EN, 13, "en-gb-x-rp+m5", 212, 57, 70},
                  {SLEX_LANG_EN, 39, "en-us+m1", 159, 69, 65},
                  {SLEX_LANG_ZH, 3, "cmn-latn-pinyin+f1", 142, 40, 30}};
    for (size_t i = 0; i < sizeof before / sizeof *before; i++) {
        slex_speaker sp;
        slex_synth_speaker(before[i].lang, SLEX_VOICES_STANDARD, before[i].index, &sp);
        CHECK(!strcmp(sp.voice, before[i].voice) && sp.rate == before[i].rate && sp.pitch == before[i].pitch &&
                  sp.range == before[i].range,
              "standard speaker %d: %s %d %d %d, before %s %d %d %d", before[i].index, sp.voice, sp.rate, sp.pitch,
              sp.range, before[i].voice, before[i].rate, before[i].pitch, before[i].range);
    }
}

/* ---- an augmented corpus against the clean one ---- */

static char **read_lines(const char *path, int64_t *n) {
    FILE *f = fopen(path, "r");
    char **out = NULL, *line = NULL;
    size_t cap = 0;
    ssize_t len;
    *n = 0;
    if (!f) return NULL;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (len && line[len - 1] == '\n') line[--len] = '\0';
        out = realloc(out, (size_t)(*n + 1) * sizeof *out);
        out[(*n)++] = strdup(line);
    }
    free(line);
    fclose(f);
    return out;
}

/* dir/rel, or rel alone when dir is NULL. */
static float *read_wav(const char *dir, const char *rel, int64_t *n) {
    char path[4096];
    snprintf(path, sizeof path, "%s%s%s", dir ? dir : "", dir ? "/" : "", rel);
    float *x = NULL;
    slex_audio_info info;
    slex_error err = {{0}};
    CHECK(!slex_audio_read(path, 16000, &x, n, &info, &err), "%s", err.msg);
    return x;
}

static int check_corpus(const char *clean, const char *aug, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.augment", aug, name);
    int64_t n_rows;
    char **rows = read_lines(path, &n_rows);
    CHECK(rows && n_rows > 1 && !strcmp(rows[0], "relpath\tspeed\trt60\tdrr_db\tnoise\tsnr_db\tgain_db"),
          "%s: missing or without its header", path);
    if (!rows) return check_finish("test_augment corpus");
    slex_error err = {{0}};
    snprintf(path, sizeof path, "%s/%s.align", clean, name);
    slex_alignment *ca = slex_alignment_read(path, &err);
    snprintf(path, sizeof path, "%s/%s.align", aug, name);
    slex_alignment *aa = slex_alignment_read(path, &err);
    CHECK(ca && aa, "alignments: %s", err.msg);
    if (!ca || !aa) return check_finish("test_augment corpus");
    CHECK(slex_alignment_num_utts(aa) == n_rows - 1, "one .augment row per aligned utterance");
    int64_t speeds = 0, noise_only = 0, gain_only = 0, reverbs = 0, kinds[SLEX_NOISE_KINDS] = {0};
    for (int64_t r = 1; r < n_rows; r++) {
        char rel[256], rt60[32], drr[32], noise[32], snr[32];
        double speed, gain;
        CHECK(sscanf(rows[r], "%255[^\t]\t%lf\t%31[^\t]\t%31[^\t]\t%31[^\t]\t%31[^\t]\t%lf", rel, &speed, rt60, drr, noise,
                     snr, &gain) == 7,
              "row %lld: %s", (long long)r, rows[r]);
        CHECK(!strcmp(rel, slex_alignment_utt_id(aa, r - 1)), "row %lld is %s, the alignment's %s", (long long)r, rel,
              slex_alignment_utt_id(aa, r - 1));
        int64_t ic = slex_alignment_find(ca, rel), nc, na;
        CHECK(ic >= 0, "%s is not in the clean corpus", rel);
        if (ic < 0) continue;
        const slex_segment *cs = slex_alignment_segments(ca, ic, &nc), *as = slex_alignment_segments(aa, r - 1, &na);
        int f = (int)lround(speed * 1000);
        int64_t n_clean = cs[nc - 1].end, n_aug = as[na - 1].end, nx, ny;
        float *x = read_wav(clean, rel, &nx), *y = read_wav(aug, rel, &ny);
        CHECK(nx == n_clean && ny == n_aug, "%s: WAV lengths %lld, %lld, phones end at %lld, %lld", rel, (long long)nx,
              (long long)ny, (long long)n_clean, (long long)n_aug);
        if (!x || !y || nx != n_clean || ny != n_aug) {
            free(x), free(y);
            continue;
        }
        /* Length and phones: the clean ones rescaled (round(b * 1000 / f)), exactly. */
        CHECK(n_aug == (n_clean * 2000 + f) / (2 * f), "%s: %lld samples, clean %lld at speed %.3f", rel,
              (long long)n_aug, (long long)n_clean, speed);
        slex_segment *want = malloc((size_t)nc * sizeof *want);
        memcpy(want, cs, (size_t)nc * sizeof *want);
        int64_t nw = f == 1000 ? nc : slex_augment_rescale_segments(want, nc, f, n_aug);
        int same = nw == na;
        for (int64_t i = 0; same && i < na; i++)
            same = want[i].start == as[i].start && want[i].end == as[i].end && !strcmp(want[i].label, as[i].label);
        CHECK(same, "%s: phones are not the clean ones rescaled by %.3f", rel, speed);
        free(want);
        if (f != 1000) speeds++;
        if (strcmp(rt60, "-")) reverbs++;
        for (int k = 0; k < SLEX_NOISE_KINDS; k++)
            if (!strcmp(noise, slex_noise_kind_name(k))) kinds[k]++;
        double peak = 0;
        for (int64_t i = 0; i < n_aug; i++) peak = fmax(peak, fabs(y[i]));
        CHECK(peak <= SLEX_AUGMENT_PEAK + 1.0 / 32768, "%s: peak %g above the limit", rel, peak);
        if (f == 1000 && !strcmp(rt60, "-") && n_aug == n_clean) {
            double g = pow(10, gain / 20);
            float *gx = malloc((size_t)n_aug * sizeof *gx), *d = malloc((size_t)n_aug * sizeof *d);
            for (int64_t i = 0; i < n_aug; i++) gx[i] = (float)(g * x[i]), d[i] = y[i] - gx[i];
            if (strcmp(noise, "none")) { /* noise (and gain): the recorded SNR */
                CHECK_CLOSE(power_db_ratio(gx, d, n_aug), atof(snr), 0.3, rel);
                noise_only++;
            } else { /* gain alone: the residual is 16-bit rounding (and espeak's clipped peaks) */
                CHECK(power_db_ratio(gx, d, n_aug) > 50, "%s: gain %.2f dB: residual at %.1f dB", rel, gain,
                      power_db_ratio(gx, d, n_aug));
                gain_only++;
            }
            free(gx), free(d);
        }
        free(x), free(y);
    }
    fprintf(stderr, "test_augment corpus %s: %lld speed changes, %lld reverberant, %lld noise-only SNRs and %lld "
                    "gain-only levels checked; noise kinds: white %lld pink %lld brown %lld babble %lld\n",
            name, (long long)speeds, (long long)reverbs, (long long)noise_only, (long long)gain_only,
            (long long)kinds[1], (long long)kinds[2], (long long)kinds[3], (long long)kinds[4]);
    CHECK(speeds > 0 && reverbs > 0 && noise_only > 0 && gain_only > 0, "every perturbation occurs in the corpus");
    for (int64_t r = 0; r < n_rows; r++) free(rows[r]);
    free(rows);
    slex_alignment_free(ca);
    slex_alignment_free(aa);
    return check_finish("test_augment corpus");
}

/* A WAV against a reference WAV of the same speech (sox's speed change of the clean utterance):
 * the same length, normalised correlation at least 0.999 (any gain). */
static int check_similar(const char *ref, const char *got) {
    int64_t nr, ng;
    float *r = read_wav(NULL, ref, &nr), *g = read_wav(NULL, got, &ng);
    if (r && g) {
        CHECK(nr == ng, "%s: %lld samples, the reference %s %lld", got, (long long)ng, ref, (long long)nr);
        double rg = 0, rr = 0, gg = 0;
        for (int64_t i = 0; i < nr && i < ng; i++) rg += (double)r[i] * g[i], rr += (double)r[i] * r[i], gg += (double)g[i] * g[i];
        double c = rg / sqrt(rr * gg);
        CHECK(c >= 0.999, "%s: correlation %.6f with the reference %s", got, c, ref);
        fprintf(stderr, "test_augment similar: %s vs %s: %lld samples, correlation %.7f\n", got, ref, (long long)ng, c);
    }
    free(r), free(g);
    return check_finish("test_augment similar");
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "corpus")) return check_corpus(argv[2], argv[3], argv[4]);
    if (argc == 4 && !strcmp(argv[1], "similar")) return check_similar(argv[2], argv[3]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_augment | test_augment corpus CLEAN_DIR AUG_DIR NAME | test_augment similar REF.wav "
                        "GOT.wav\n");
        return 2;
    }
    test_rescale();
    test_speed();
    test_noise();
    test_room();
    test_draws();
    test_voices();
    return check_finish("test_augment");
}
