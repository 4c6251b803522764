#include "corpus/augment.h"

#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "corpus/audio.h"

/* ---- options ---- */

#define T slex_augment_options
static const slex_option augment_rows[] = {
    {SLEX_OPT_DOUBLE_FIELD(T, speed_prob), .name = "speed-prob", .def = 0.6, .min = 0, .max = 1,
     .help = "--augment: probability of a speed change (tempo and pitch, as sox speed)"},
    {SLEX_OPT_DOUBLE_FIELD(T, speed_min), .name = "speed-min", .def = 0.85, .min = 0.5, .max = 2,
     .help = "smallest speed factor (uniform in steps of 0.001)"},
    {SLEX_OPT_DOUBLE_FIELD(T, speed_max), .name = "speed-max", .def = 1.15, .min = 0.5, .max = 2,
     .help = "largest speed factor"},
    {SLEX_OPT_DOUBLE_FIELD(T, reverb_prob), .name = "reverb-prob", .def = 0.3, .min = 0, .max = 1,
     .help = "--augment: probability of reverberation (synthetic room impulse response)"},
    {SLEX_OPT_DOUBLE_FIELD(T, rt60_min), .name = "rt60-min", .def = 0.2, .min = 0.05, .max = 3,
     .help = "shortest reverberation time RT60 (s)"},
    {SLEX_OPT_DOUBLE_FIELD(T, rt60_max), .name = "rt60-max", .def = 0.8, .min = 0.05, .max = 3,
     .help = "longest RT60 (s)"},
    {SLEX_OPT_DOUBLE_FIELD(T, drr_min), .name = "drr-min", .def = -3, .min = -20, .max = 40,
     .help = "lowest direct-to-reverberant ratio (dB)"},
    {SLEX_OPT_DOUBLE_FIELD(T, drr_max), .name = "drr-max", .def = 12, .min = -20, .max = 40,
     .help = "highest direct-to-reverberant ratio (dB)"},
    {SLEX_OPT_DOUBLE_FIELD(T, noise_prob), .name = "noise-prob", .def = 0.4, .min = 0, .max = 1,
     .help = "--augment: probability of additive noise"},
    {SLEX_OPT_DOUBLE_FIELD(T, snr_min), .name = "snr-min", .def = 5, .min = -20, .max = 80,
     .help = "lowest SNR (dB, mean powers over the utterance)"},
    {SLEX_OPT_DOUBLE_FIELD(T, snr_max), .name = "snr-max", .def = 25, .min = -20, .max = 80, .help = "highest SNR (dB)"},
    {SLEX_OPT_STRING_FIELD(T, noise_kinds), .name = "noise-kinds", .def_text = "white,pink,brown,babble",
     .help = "noise kinds drawn from with equal probability (comma-separated: white, pink, brown, babble)"},
    {SLEX_OPT_DOUBLE_FIELD(T, gain_prob), .name = "gain-prob", .def = 0.5, .min = 0, .max = 1,
     .help = "--augment: probability of a gain change (the peak is limited to 0.99 in any case)"},
    {SLEX_OPT_DOUBLE_FIELD(T, gain_min), .name = "gain-min", .def = -15, .min = -60, .max = 40,
     .help = "lowest gain (dB)"},
    {SLEX_OPT_DOUBLE_FIELD(T, gain_max), .name = "gain-max", .def = 5, .min = -60, .max = 40, .help = "highest gain (dB)"},
};
#undef T
const slex_option_table slex_augment_option_table = SLEX_OPTION_TABLE_CHECKED(augment_rows, slex_augment_options_check);

void slex_augment_options_default(slex_augment_options *opts) {
    memset(opts, 0, sizeof *opts);
    slex_options_defaults(&slex_augment_option_table, opts);
}

static const char *const noise_names[SLEX_NOISE_KINDS] = {"none", "white", "pink", "brown", "babble"};

const char *slex_noise_kind_name(slex_noise_kind kind) {
    return kind >= 0 && kind < SLEX_NOISE_KINDS ? noise_names[kind] : "?";
}

/* The kinds of a comma-separated list as bits (1 << kind); 0 with *bad pointing at the first
 * unknown name (and *bad_len its length) when there is one. */
static unsigned parse_noise_kinds(const char *list, const char **bad, size_t *bad_len) {
    unsigned mask = 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        int k = SLEX_NOISE_WHITE;
        while (k < SLEX_NOISE_KINDS && (strlen(noise_names[k]) != len || strncmp(p, noise_names[k], len))) k++;
        if (k == SLEX_NOISE_KINDS) {
            *bad = p;
            *bad_len = len;
            return 0;
        }
        mask |= 1u << k;
        p += len + (p[len] == ',');
    }
    return mask;
}

int slex_augment_options_check(const void *opts, slex_error *err) {
    const slex_augment_options *o = opts;
    const struct {
        const char *name;
        double lo, hi;
    } ranges[] = {{"speed", o->speed_min, o->speed_max}, {"rt60", o->rt60_min, o->rt60_max},
                  {"drr", o->drr_min, o->drr_max},       {"snr", o->snr_min, o->snr_max},
                  {"gain", o->gain_min, o->gain_max}};
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++)
        if (ranges[i].lo > ranges[i].hi)
            return slex_fail_as(err, SLEX_ERR_INPUT, "--%s-min %g is above --%s-max %g", ranges[i].name, ranges[i].lo,
                                ranges[i].name, ranges[i].hi);
    const char *bad = NULL;
    size_t bad_len = 0;
    if (!o->noise_kinds || !parse_noise_kinds(o->noise_kinds, &bad, &bad_len))
        return slex_fail_as(err, SLEX_ERR_INPUT, "--noise-kinds %s: %s%.*s%s",
                            o->noise_kinds ? o->noise_kinds : "(none)",
                            bad ? "unknown kind '" : "no kinds (expected white, pink, brown, babble)", (int)bad_len,
                            bad ? bad : "", bad ? "' (expected white, pink, brown, babble)" : "");
    return 0;
}

int slex_augment_uses_babble(const slex_augment_options *opts) {
    const char *bad;
    size_t bad_len;
    return opts->noise_prob > 0 && (parse_noise_kinds(opts->noise_kinds, &bad, &bad_len) >> SLEX_NOISE_BABBLE) & 1;
}

/* ---- draws ---- */

/* Independent streams of one key. */
enum { SUBSTREAM_PARAMS = 1, SUBSTREAM_ROOM = 2, SUBSTREAM_NOISE = 3 };

static uint64_t substream(uint64_t key, uint64_t tag) {
    uint64_t s = key ^ (tag * 0xd1b54a32d192ed03ULL);
    return slex_splitmix64(&s);
}

static double uniform_in(double u, double lo, double hi) { return lo + (hi - lo) * u; }

void slex_augment_draw(const slex_augment_options *o, uint64_t key, slex_augment_params *p) {
    slex_rng r;
    slex_rng_seed(&r, substream(key, SUBSTREAM_PARAMS));
    double u[10]; /* always all ten draws, in this order */
    for (int i = 0; i < 10; i++) u[i] = slex_rng_uniform(&r);
    memset(p, 0, sizeof *p);
    p->speed_permille = 1000;
    if (u[0] < o->speed_prob) {
        int lo = (int)lround(o->speed_min * 1000), hi = (int)lround(o->speed_max * 1000);
        int s = lo + (int)floor(u[1] * (hi - lo + 1));
        p->speed_permille = s > hi ? hi : s;
    }
    if (u[2] < o->reverb_prob) {
        p->rt60 = uniform_in(u[3], o->rt60_min, o->rt60_max);
        p->drr_db = uniform_in(u[4], o->drr_min, o->drr_max);
    }
    if (u[5] < o->noise_prob) {
        const char *bad;
        size_t bad_len;
        unsigned mask = parse_noise_kinds(o->noise_kinds, &bad, &bad_len);
        int n_kinds = 0, kinds[SLEX_NOISE_KINDS];
        for (int k = SLEX_NOISE_WHITE; k < SLEX_NOISE_KINDS; k++)
            if (mask >> k & 1) kinds[n_kinds++] = k;
        if (n_kinds) {
            int i = (int)floor(u[6] * n_kinds);
            p->noise = (slex_noise_kind)kinds[i < n_kinds ? i : n_kinds - 1];
            p->snr_db = uniform_in(u[7], o->snr_min, o->snr_max);
        }
    }
    if (u[8] < o->gain_prob) p->gain_db = uniform_in(u[9], o->gain_min, o->gain_max);
}

/* ---- speed ---- */

int slex_augment_speed(const float *in, int64_t n, int speed_permille, float **out, int64_t *n_out,
                       slex_error *err) {
    if (speed_permille <= 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "speed factor %d/1000 is not positive", speed_permille);
    /* Read at speed x 16 kHz, written at 16 kHz: only the ratio of the two rates matters. */
    return slex_audio_resample(in, n, 16 * speed_permille, 16000, out, n_out, err);
}

static int is_silence(const slex_segment *s) { return !strcmp(s->label, SLEX_SILENCE_LABEL); }

int64_t slex_augment_rescale_segments(slex_segment *segs, int64_t n_segs, int speed_permille, int64_t n_out) {
    int64_t m = 0, start = 0, f = speed_permille;
    for (int64_t i = 0; i < n_segs; i++) {
        int64_t end = i + 1 == n_segs ? n_out : (segs[i].end * 2000 + f) / (2 * f);
        if (end > n_out) end = n_out;
        if (end <= start) continue; /* empty on the new axis */
        if (m && is_silence(&segs[m - 1]) && is_silence(&segs[i])) {
            segs[m - 1].end = end;
        } else {
            segs[m] = (slex_segment){start, end, segs[i].label};
            m++;
        }
        start = end;
    }
    if (m && segs[m - 1].end < n_out) segs[m - 1].end = n_out; /* the last phone was empty */
    return m;
}

/* ---- reverberation ---- */

int slex_augment_room_response(double rt60, double drr_db, int rate, uint64_t key, float **h, int64_t *len,
                               slex_error *err) {
    if (!(rt60 > 0) || rate <= 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "room response: RT60 %g s at %d Hz", rt60, rate);
    slex_rng r;
    slex_rng_seed(&r, key);
    int64_t pre = (int64_t)floor(rate * (0.002 + 0.008 * slex_rng_uniform(&r)));
    int64_t tail = (int64_t)ceil(rt60 * rate);
    if (pre < 1) pre = 1;
    float *x = calloc((size_t)(pre + tail), sizeof *x);
    if (!x)
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for a room response of %lld samples",
                            (long long)(pre + tail));
    double decay = 3.0 * log(10.0) / (rt60 * rate), tail_energy = 0;
    double *v = malloc((size_t)tail * sizeof *v);
    if (!v) {
        free(x);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for a room response of %lld samples",
                            (long long)(pre + tail));
    }
    for (int64_t i = 0; i < tail; i++) {
        v[i] = slex_rng_normal(&r) * exp(-decay * (double)i);
        tail_energy += v[i] * v[i];
    }
    /* direct^2 / (g^2 tail_energy) = 10^(drr/10) with direct 1; then unit energy in all. */
    double g = sqrt(1.0 / (pow(10.0, drr_db / 10.0) * tail_energy));
    double norm = 1.0 / sqrt(1.0 + g * g * tail_energy);
    x[0] = (float)norm;
    for (int64_t i = 0; i < tail; i++) x[pre + i] = (float)(v[i] * g * norm);
    free(v);
    *h = x;
    *len = pre + tail;
    return 0;
}

static int64_t next_pow2(int64_t n) {
    int64_t p = 2;
    while (p < n) p *= 2;
    return p;
}

/* FFT scratch: a real buffer of n and its half spectrum, SIMD-aligned (fftwf_malloc) so that
 * one buffer's plans run on another's arrays, and optionally the forward and inverse plans. */
typedef struct {
    int64_t n;
    float *re;
    fftwf_complex *spec;
    fftwf_plan fwd, inv;
} fft_buf;

static int fft_buf_open(fft_buf *b, int64_t n, int plans, slex_error *err) {
    memset(b, 0, sizeof *b);
    b->n = n;
    b->re = fftwf_malloc((size_t)n * sizeof *b->re);
    b->spec = fftwf_malloc((size_t)(n / 2 + 1) * sizeof *b->spec);
    if (!b->re || !b->spec)
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for an FFT of %lld points", (long long)n);
    if (!plans) return 0;
    b->fwd = fftwf_plan_dft_r2c_1d((int)n, b->re, b->spec, FFTW_ESTIMATE);
    b->inv = fftwf_plan_dft_c2r_1d((int)n, b->spec, b->re, FFTW_ESTIMATE);
    if (!b->fwd || !b->inv)
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "FFTW could not plan an FFT of %lld points", (long long)n);
    return 0;
}

static void fft_buf_close(fft_buf *b) {
    if (b->fwd) fftwf_destroy_plan(b->fwd);
    if (b->inv) fftwf_destroy_plan(b->inv);
    fftwf_free(b->re);
    fftwf_free(b->spec);
    memset(b, 0, sizeof *b);
}

/* re[0..n) = x[0..len) followed by zeros. */
static void fft_buf_load(fft_buf *b, const float *x, int64_t len) {
    memcpy(b->re, x, (size_t)len * sizeof *x);
    memset(b->re + len, 0, (size_t)(b->n - len) * sizeof *x);
}

int slex_augment_convolve(float *x, int64_t n, const float *h, int64_t len, slex_error *err) {
    int64_t N = next_pow2(n + len - 1);
    fft_buf a, b;
    memset(&b, 0, sizeof b);
    int rc = -1;
    if (fft_buf_open(&a, N, 1, err) || fft_buf_open(&b, N, 0, err)) goto done;
    fft_buf_load(&a, x, n);
    fft_buf_load(&b, h, len);
    fftwf_execute(a.fwd);
    fftwf_execute_dft_r2c(a.fwd, b.re, b.spec);
    float scale = 1.0f / (float)N;
    for (int64_t k = 0; k <= N / 2; k++) {
        float ar = a.spec[k][0], ai = a.spec[k][1], br = b.spec[k][0], bi = b.spec[k][1];
        a.spec[k][0] = (ar * br - ai * bi) * scale;
        a.spec[k][1] = (ar * bi + ai * br) * scale;
    }
    fftwf_execute(a.inv);
    memcpy(x, a.re, (size_t)n * sizeof *x);
    rc = 0;
done:
    fft_buf_close(&a);
    fft_buf_close(&b);
    return rc;
}

/* ---- noise ---- */

static void scale_to_unit_power(float *x, int64_t n) {
    double p = 0;
    for (int64_t i = 0; i < n; i++) p += (double)x[i] * x[i];
    if (p <= 0) return;
    float s = (float)sqrt((double)n / p);
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

/* Gaussian noise shaped by 1/f^(exponent/2) in amplitude (power 1/f^exponent) above 20 Hz, none
 * below, at 16 kHz. */
static int coloured_noise(double exponent, int64_t n, slex_rng *r, float *out, slex_error *err) {
    int64_t N = next_pow2(n);
    fft_buf a;
    int rc = -1;
    if (fft_buf_open(&a, N, 1, err)) goto done;
    for (int64_t i = 0; i < N; i++) a.re[i] = (float)slex_rng_normal(r);
    fftwf_execute(a.fwd);
    for (int64_t k = 0; k <= N / 2; k++) {
        double f = (double)k * 16000.0 / (double)N;
        float w = f < 20.0 ? 0.0f : (float)pow(f, -exponent / 2);
        a.spec[k][0] *= w;
        a.spec[k][1] *= w;
    }
    fftwf_execute(a.inv);
    memcpy(out, a.re, (size_t)n * sizeof *out);
    rc = 0;
done:
    fft_buf_close(&a);
    return rc;
}

int slex_augment_noise(slex_noise_kind kind, int64_t n, uint64_t key, const float *babble, int64_t n_babble,
                       float *out, slex_error *err) {
    slex_rng r;
    slex_rng_seed(&r, key);
    switch (kind) {
    case SLEX_NOISE_WHITE:
        for (int64_t i = 0; i < n; i++) out[i] = (float)slex_rng_normal(&r);
        break;
    case SLEX_NOISE_PINK:
    case SLEX_NOISE_BROWN:
        if (coloured_noise(kind == SLEX_NOISE_PINK ? 1.0 : 2.0, n, &r, out, err)) return -1;
        break;
    case SLEX_NOISE_BABBLE: {
        if (!babble || n_babble <= 0) return slex_fail_as(err, SLEX_ERR_INTERNAL, "babble noise without babble speech");
        int talkers = 3 + (int)slex_rng_below(&r, 5);
        memset(out, 0, (size_t)n * sizeof *out);
        for (int t = 0; t < talkers; t++) {
            int64_t at = (int64_t)slex_rng_below(&r, (uint64_t)n_babble);
            for (int64_t i = 0; i < n; i++, at = at + 1 == n_babble ? 0 : at + 1) out[i] += babble[at];
        }
        break;
    }
    default:
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "unknown noise kind %d", (int)kind);
    }
    scale_to_unit_power(out, n);
    return 0;
}

void slex_augment_add_noise(float *x, int64_t n, const float *noise, double snr_db) {
    double px = 0, pn = 0;
    for (int64_t i = 0; i < n; i++) {
        px += (double)x[i] * x[i];
        pn += (double)noise[i] * noise[i];
    }
    if (px <= 0 || pn <= 0) return;
    float s = (float)sqrt(px / (pn * pow(10.0, snr_db / 10.0)));
    for (int64_t i = 0; i < n; i++) x[i] += s * noise[i];
}

/* ---- all of it ---- */

int slex_augment_apply(slex_augment_params *p, uint64_t key, const float *babble, int64_t n_babble, float **samples,
                       int64_t *n, slex_segment *segs, int64_t *n_segs, slex_error *err) {
    if (p->speed_permille != 1000) {
        float *out;
        int64_t n_out;
        if (slex_augment_speed(*samples, *n, p->speed_permille, &out, &n_out, err)) return -1;
        free(*samples);
        *samples = out;
        *n = n_out;
        *n_segs = slex_augment_rescale_segments(segs, *n_segs, p->speed_permille, n_out);
    }
    float *x = *samples;
    if (p->rt60 > 0) {
        float *h;
        int64_t len;
        if (slex_augment_room_response(p->rt60, p->drr_db, 16000, substream(key, SUBSTREAM_ROOM), &h, &len, err))
            return -1;
        int rc = slex_augment_convolve(x, *n, h, len, err);
        free(h);
        if (rc) return -1;
    }
    if (p->noise != SLEX_NOISE_NONE) {
        float *noise = malloc((size_t)*n * sizeof *noise);
        if (!noise)
            return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %lld samples of noise", (long long)*n);
        if (slex_augment_noise(p->noise, *n, substream(key, SUBSTREAM_NOISE), babble, n_babble, noise, err)) {
            free(noise);
            return -1;
        }
        slex_augment_add_noise(x, *n, noise, p->snr_db);
        free(noise);
    }
    double peak = 0, g = pow(10.0, p->gain_db / 20.0);
    for (int64_t i = 0; i < *n; i++)
        if (fabs(x[i]) > peak) peak = fabs(x[i]);
    if (peak * g > SLEX_AUGMENT_PEAK) g = SLEX_AUGMENT_PEAK / peak;
    for (int64_t i = 0; i < *n; i++) x[i] = (float)(x[i] * g);
    p->applied_gain_db = 20.0 * log10(g);
    return 0;
}
