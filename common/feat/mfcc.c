#include "feat/mfcc.h"

#include <float.h>
#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define T slex_mfcc_options
static const slex_option mfcc_rows[] = {
    {SLEX_OPT_DOUBLE_FIELD(T, sample_rate), .name = "sample-rate", .flags = SLEX_OPTF_INTERNAL | SLEX_OPTF_ABOVE_MIN,
     .def = 16000, .min = 0, .max = DBL_MAX, .param = "sample_rate"},
    {SLEX_OPT_DOUBLE_FIELD(T, frame_length_ms), .name = "frame-length-ms", .flags = SLEX_OPTF_INTERNAL, .def = 25,
     .param = "frame_length_ms"},
    {SLEX_OPT_DOUBLE_FIELD(T, frame_shift_ms), .name = "frame-shift-ms", .flags = SLEX_OPTF_INTERNAL, .def = 10,
     .param = "frame_shift_ms"},
    {SLEX_OPT_INT_FIELD(T, num_mel_bins), .name = "num-mel-bins", .def = 23, .min = 4, .max = 1024,
     .param = "num_mel_bins", .help = "mel filters"},
    {SLEX_OPT_INT_FIELD(T, num_ceps), .name = "num-ceps", .def = 13, .min = 1, .max = 1024, .param = "num_ceps",
     .help = "cepstral coefficients (with C0; at most --num-mel-bins)"},
    {SLEX_OPT_DOUBLE_FIELD(T, low_freq), .name = "low-freq", .def = 20, .min = 0, .max = DBL_MAX,
     .param = "low_freq", .help = "low edge of the mel bank (Hz)"},
    {SLEX_OPT_DOUBLE_FIELD(T, high_freq), .name = "high-freq", .def = 0, .param = "high_freq",
     .help = "high edge (Hz; 0 = Nyquist, < 0 = below Nyquist)"},
    {SLEX_OPT_DOUBLE_FIELD(T, preemphasis), .name = "preemphasis", .def = 0.97, .min = 0, .max = 1,
     .param = "preemphasis", .help = "pre-emphasis coefficient"},
    {SLEX_OPT_DOUBLE_FIELD(T, cepstral_lifter), .name = "cepstral-lifter", .def = 22, .min = 0, .max = DBL_MAX,
     .param = "cepstral_lifter", .help = "cepstral lifter (0 = none)"},
    {SLEX_OPT_INT_FIELD(T, delta_window), .name = "delta-window", .def = 2, .min = 1, .max = 1000,
     .param = "delta_window", .help = "delta half-window (compute_deltas win_length = 2N+1)"},
    {SLEX_OPT_INT_FIELD(T, with_deltas), .name = "with-deltas", .def = 1, .min = 0, .max = 1, .param = "with_deltas",
     .help = "1 = append deltas and delta-deltas (39 dims), 0 = 13 dims"},
};
#undef T
const slex_option_table slex_mfcc_option_table = SLEX_OPTION_TABLE_CHECKED(mfcc_rows, slex_mfcc_options_check);

void slex_mfcc_options_default(slex_mfcc_options *opts) {
    memset(opts, 0, sizeof *opts);
    slex_options_defaults(&slex_mfcc_option_table, opts);
}

/* Hot loops run in chunks of LANES (DCT_LANES for doubles) with a constant inner trip count,
 * which GCC -O2 vectorises without -march or -ffast-math; tables are padded to whole chunks. */
#define LANES 8 /* dot_forward's unrolling relies on this value */
#define DCT_LANES 4

struct slex_mfcc {
    slex_mfcc_options opts;
    int window_size;  /* samples per frame (400) */
    int window_shift; /* samples between frame starts (160) */
    int fft_size;     /* window_size rounded up to a power of two (512) */
    int dim;
    int ceps_stride;  /* num_ceps rounded up to DCT_LANES: zero-padded DCT columns */
    float preemph;    /* the coefficient as the float32 torchaudio multiplies by */
    double delta_denom;
    fftwf_plan plan;
    /* Everything below lives in one fftwf_malloc'd block (SIMD-aligned), tables then scratch. */
    void *block;
    float *window;       /* (window_size) povey */
    int *mel_first;      /* (num_mel_bins) first FFT bin with a nonzero weight */
    int *mel_count;      /* (num_mel_bins) weights stored per filter, a multiple of LANES */
    int *mel_offset;     /* (num_mel_bins) start of the filter's weights in mel_weights */
    float *mel_weights;  /* each triangle's nonzero span, zero-padded to mel_count, packed */
    double *dct;         /* (num_mel_bins, ceps_stride): the DCT matrix, right-multiplied */
    double *lifter;      /* (num_ceps) */
    float *fft_in;       /* (fft_size) windowed frame; samples window_size.. stay zero */
    fftwf_complex *fft_out; /* (fft_size/2+1) */
    float *power;        /* (fft_size/2 + LANES) power spectrum without the Nyquist bin; the
                            tail stays zero for the padded mel spans */
    double *log_mel;     /* (num_mel_bins) */
    double *ceps_acc;    /* (ceps_stride) DCT and delta accumulators */
};

/* Smallest power of two >= x, as torchaudio's _next_power_of_2. */
static int next_power_of_two(int x) {
    int p = 1;
    while (p < x) p *= 2;
    return p;
}

/* Largest window accepted: keeps every table index within int. */
#define MAX_WINDOW (1 << 20)

/* Samples of a window or shift of `ms` milliseconds: the same double expression as torchaudio's
 * int(...), so 25 ms at 16 kHz is exactly 400. */
static double window_length(const slex_mfcc_options *o, double ms) { return trunc(o->sample_rate * ms * 0.001); }

/* torchaudio's checks (its asserts) on the options and the window/shift in samples (computed
 * in double, before any conversion to int). */
static int validate(const slex_mfcc_options *o, double window_size, double window_shift, slex_error *err) {
    double nyquist = 0.5 * o->sample_rate;
    double high = o->high_freq <= 0.0 ? o->high_freq + nyquist : o->high_freq;
    if (!(o->sample_rate > 0.0))
        return slex_fail_as(err, SLEX_ERR_INPUT, "mfcc: sample_rate %g must be > 0", o->sample_rate);
    if (!(window_size >= 2.0 && window_size <= MAX_WINDOW))
        return slex_fail_as(err, SLEX_ERR_INPUT, "mfcc: frame_length_ms %g gives a window of %g samples (need 2..%d)",
                            o->frame_length_ms, window_size, MAX_WINDOW);
    if (!(window_shift >= 1.0 && window_shift <= MAX_WINDOW))
        return slex_fail_as(err, SLEX_ERR_INPUT, "mfcc: frame_shift_ms %g gives a shift of %g samples (need 1..%d)",
                            o->frame_shift_ms, window_shift, MAX_WINDOW);
    if (o->num_mel_bins <= 3 || o->num_mel_bins > 1024)
        return slex_fail_as(err, SLEX_ERR_INPUT, "mfcc: --num-mel-bins %d must be in 4..1024", o->num_mel_bins);
    if (o->num_ceps < 1 || o->num_ceps > o->num_mel_bins)
        return slex_fail_as(err, SLEX_ERR_INPUT, "mfcc: --num-ceps %d must be in 1..--num-mel-bins (%d)", o->num_ceps,
                            o->num_mel_bins);
    if (!(o->low_freq >= 0.0 && o->low_freq < nyquist && high > 0.0 && high <= nyquist && o->low_freq < high))
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "mfcc: --low-freq %g / --high-freq %g do not make a band below Nyquist %g", o->low_freq,
                            o->high_freq, nyquist);
    if (!(o->preemphasis >= 0.0 && o->preemphasis <= 1.0))
        return slex_fail_as(err, SLEX_ERR_INPUT, "mfcc: --preemphasis %g must be in [0, 1]", o->preemphasis);
    if (!(o->cepstral_lifter >= 0.0))
        return slex_fail_as(err, SLEX_ERR_INPUT, "mfcc: --cepstral-lifter %g must be >= 0", o->cepstral_lifter);
    if (o->delta_window < 1 || o->delta_window > 1000)
        return slex_fail_as(err, SLEX_ERR_INPUT, "mfcc: --delta-window %d must be in 1..1000", o->delta_window);
    return 0;
}

int slex_mfcc_options_check(const void *opts, slex_error *err) {
    const slex_mfcc_options *o = opts;
    return validate(o, window_length(o, o->frame_length_ms), window_length(o, o->frame_shift_ms), err);
}

/* torchaudio's mel_scale on a float32 tensor: every operation rounds to float32. */
static float mel_scale_f32(float freq) { return 1127.0f * logf(1.0f + freq / 700.0f); }

/* Weight of FFT bin k in mel filter b, computed the way torchaudio 0.13.1's get_mel_banks does
 * without VTLN: float32 tensors built from Python doubles (mel_low, mel_delta), the filter's
 * left/center/right edges in mel, and max(0, min(up_slope, down_slope)). */
static float mel_weight(float mel_low, float mel_delta, float fft_bin_width, int b, int k) {
    float left = mel_low + (float)b * mel_delta;
    float center = mel_low + ((float)b + 1.0f) * mel_delta;
    float right = mel_low + ((float)b + 2.0f) * mel_delta;
    float mel = mel_scale_f32(fft_bin_width * (float)k);
    float up = (mel - left) / (center - left);
    float down = (right - mel) / (right - center);
    float w = up < down ? up : down;
    return w > 0.0f ? w : 0.0f;
}

/* Reserves an aligned piece of the single block at *offset; returns its offset. */
static size_t reserve(size_t *offset, size_t bytes) {
    size_t at = *offset;
    *offset += (bytes + 63) & ~(size_t)63;
    return at;
}

/* Lays out the tables and scratch of m in the block at base (base NULL: only measure);
 * returns the block's size. */
static size_t layout(slex_mfcc *m, char *base, size_t n_weights) {
    size_t n_mel = (size_t)m->opts.num_mel_bins, n_ceps = (size_t)m->opts.num_ceps;
    size_t off = 0;
    size_t window = reserve(&off, sizeof(float) * (size_t)m->window_size);
    size_t mel_first = reserve(&off, sizeof(int) * n_mel);
    size_t mel_count = reserve(&off, sizeof(int) * n_mel);
    size_t mel_offset = reserve(&off, sizeof(int) * n_mel);
    size_t mel_weights = reserve(&off, sizeof(float) * n_weights);
    size_t dct = reserve(&off, sizeof(double) * n_mel * (size_t)m->ceps_stride);
    size_t lifter = reserve(&off, sizeof(double) * n_ceps);
    size_t fft_in = reserve(&off, sizeof(float) * (size_t)m->fft_size);
    size_t fft_out = reserve(&off, sizeof(fftwf_complex) * (size_t)(m->fft_size / 2 + 1));
    size_t power = reserve(&off, sizeof(float) * (size_t)(m->fft_size / 2 + LANES));
    size_t log_mel = reserve(&off, sizeof(double) * n_mel);
    size_t ceps_acc = reserve(&off, sizeof(double) * (size_t)m->ceps_stride);
    if (base) {
        m->window = (float *)(base + window);
        m->mel_first = (int *)(base + mel_first);
        m->mel_count = (int *)(base + mel_count);
        m->mel_offset = (int *)(base + mel_offset);
        m->mel_weights = (float *)(base + mel_weights);
        m->dct = (double *)(base + dct);
        m->lifter = (double *)(base + lifter);
        m->fft_in = (float *)(base + fft_in);
        m->fft_out = (fftwf_complex *)(base + fft_out);
        m->power = (float *)(base + power);
        m->log_mel = (double *)(base + log_mel);
        m->ceps_acc = (double *)(base + ceps_acc);
    }
    return off;
}

/* The handle with its geometry (window, shift, FFT size, output width, DCT stride) set from
 * validated options; no tables yet. */
static slex_mfcc *new_handle(const slex_mfcc_options *o, int window_size, int window_shift, slex_error *err) {
    slex_mfcc *m = calloc(1, sizeof *m);
    if (!m) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "mfcc: out of memory");
        return NULL;
    }
    int n = o->delta_window;
    *m = (slex_mfcc){
        .opts = *o,
        .window_size = window_size,
        .window_shift = window_shift,
        .fft_size = next_power_of_two(window_size),
        .dim = o->with_deltas ? 3 * o->num_ceps : o->num_ceps,
        .ceps_stride = (o->num_ceps + DCT_LANES - 1) / DCT_LANES * DCT_LANES,
        .preemph = (float)o->preemphasis,
        .delta_denom = (double)n * (n + 1) * (2 * n + 1) / 3.0,
    };
    return m;
}

/* Mel bank geometry (torchaudio get_mel_banks): edges in double, then float32 tensors. */
typedef struct mel_geometry {
    float mel_low;   /* mel of low_freq */
    float mel_delta; /* mel distance between filter edges */
    float bin_width; /* Hz per FFT bin */
} mel_geometry;

static mel_geometry mel_geometry_of(const slex_mfcc *m) {
    const slex_mfcc_options *o = &m->opts;
    double nyquist = 0.5 * o->sample_rate;
    double high_freq = o->high_freq <= 0.0 ? o->high_freq + nyquist : o->high_freq;
    double mel_low = 1127.0 * log(1.0 + o->low_freq / 700.0);
    double mel_high = 1127.0 * log(1.0 + high_freq / 700.0);
    return (mel_geometry){
        .mel_low = (float)mel_low,
        .mel_delta = (float)((mel_high - mel_low) / (o->num_mel_bins + 1)),
        .bin_width = (float)(o->sample_rate / m->fft_size),
    };
}

/* Each triangle's nonzero span (torchaudio's bank has no Nyquist column): first[b] and the
 * count of weights stored, zero-padded to whole LANES.  Returns the total weights stored. */
static size_t measure_mel_spans(const slex_mfcc *m, mel_geometry g, int *first, int *count) {
    int n_fft_bins = m->fft_size / 2;
    size_t n_weights = 0;
    for (int b = 0; b < m->opts.num_mel_bins; b++) {
        int lo = -1, hi = -1;
        for (int k = 0; k < n_fft_bins; k++) {
            if (mel_weight(g.mel_low, g.mel_delta, g.bin_width, b, k) > 0.0f) {
                if (lo < 0) lo = k;
                hi = k;
            }
        }
        first[b] = lo < 0 ? 0 : lo;
        count[b] = lo < 0 ? 0 : (hi - lo + 1 + LANES - 1) / LANES * LANES; /* zero-padded */
        n_weights += (size_t)count[b];
    }
    return n_weights;
}

/* The packed sparse mel bank over the spans measure_mel_spans found. */
static void fill_mel_bank(slex_mfcc *m, mel_geometry g, const int *first, const int *count) {
    int n_fft_bins = m->fft_size / 2, offset = 0;
    for (int b = 0; b < m->opts.num_mel_bins; b++) {
        m->mel_first[b] = first[b];
        m->mel_count[b] = count[b];
        m->mel_offset[b] = offset;
        for (int i = 0; i < count[b] && first[b] + i < n_fft_bins; i++)
            m->mel_weights[offset + i] = mel_weight(g.mel_low, g.mel_delta, g.bin_width, b, first[b] + i);
        offset += count[b];
    }
}

/* Povey window: torch.hann_window(periodic=False).pow(0.85), which torch builds in float32
 * as arange * (2 pi / (N-1)), cos, * -0.5, + 0.5. */
static void fill_window(slex_mfcc *m) {
    float hann_step = (float)(2.0 * M_PI / (double)(m->window_size - 1));
    for (int j = 0; j < m->window_size; j++) {
        float hann = cosf((float)j * hann_step) * -0.5f + 0.5f;
        m->window[j] = hann > 0.0f ? powf(hann, 0.85f) : 0.0f; /* no NaN from a rounded -0 */
    }
}

/* DCT: torchaudio create_dct(n_mel, n_mel, "ortho") with column 0 replaced by sqrt(1/n_mel)
 * (Kaldi's C0 scaling), first num_ceps columns; built in float32 like torchaudio, kept in
 * double for the accumulation.  Lifter 1 + L/2 sin(pi i / L), float32 as torchaudio's
 * _get_lifter_coeffs. */
static void fill_dct_and_lifter(slex_mfcc *m) {
    const slex_mfcc_options *o = &m->opts;
    int n_mel = o->num_mel_bins, n_ceps = o->num_ceps;
    float pi_over_n = (float)(M_PI / (double)n_mel);
    float ortho = (float)sqrt(2.0 / (double)n_mel);
    for (int i = 0; i < n_mel; i++) {
        for (int c = 0; c < n_ceps; c++) {
            float v = c == 0 ? (float)sqrt(1.0 / (double)n_mel)
                             : cosf(pi_over_n * ((float)i + 0.5f) * (float)c) * ortho;
            m->dct[(size_t)i * m->ceps_stride + c] = v;
        }
    }
    for (int c = 0; c < n_ceps; c++) {
        float L = (float)o->cepstral_lifter;
        m->lifter[c] = L == 0.0f ? 1.0 : (double)(1.0f + (float)(0.5 * o->cepstral_lifter) *
                                                          sinf((float)M_PI * (float)c / L));
    }
}

/* Allocates the single block (tables then scratch, zeroed) and fills the tables. */
static int build_tables(slex_mfcc *m, slex_error *err) {
    int n_mel = m->opts.num_mel_bins;
    mel_geometry g = mel_geometry_of(m);
    int *first = malloc(sizeof(int) * 2 * (size_t)n_mel);
    if (!first) return slex_fail_as(err, SLEX_ERR_RESOURCE, "mfcc: out of memory");
    int *count = first + n_mel;
    size_t n_weights = measure_mel_spans(m, g, first, count);
    size_t bytes = layout(m, NULL, n_weights);
    if (!(m->block = fftwf_malloc(bytes))) {
        free(first);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "mfcc: out of memory (%zu bytes)", bytes);
    }
    memset(m->block, 0, bytes);
    layout(m, m->block, n_weights);
    fill_mel_bank(m, g, first, count);
    free(first);
    fill_window(m);
    fill_dct_and_lifter(m);
    return 0;
}

slex_mfcc *slex_mfcc_create(const slex_mfcc_options *opts, slex_error *err) {
    const slex_mfcc_options *o = opts;
    if (!o) {
        slex_fail_as(err, SLEX_ERR_INTERNAL, "mfcc: NULL options");
        return NULL;
    }
    double window_samples = window_length(o, o->frame_length_ms), shift_samples = window_length(o, o->frame_shift_ms);
    if (validate(o, window_samples, shift_samples, err)) return NULL;
    slex_mfcc *m = new_handle(o, (int)window_samples, (int)shift_samples, err);
    if (!m) return NULL;
    if (build_tables(m, err)) {
        slex_mfcc_free(m);
        return NULL;
    }
    m->plan = fftwf_plan_dft_r2c_1d(m->fft_size, m->fft_in, m->fft_out, FFTW_ESTIMATE | FFTW_PRESERVE_INPUT);
    if (!m->plan) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "mfcc: FFTW could not plan a real FFT of size %d", m->fft_size);
        slex_mfcc_free(m);
        return NULL;
    }
    return m;
}

int64_t slex_mfcc_num_frames(const slex_mfcc *m, int64_t n_samples) {
    if (n_samples < m->window_size) return 0;
    return 1 + (n_samples - m->window_size) / m->window_shift;
}

int slex_mfcc_dim(const slex_mfcc *m) { return m->dim; }

/* Sum of x (n) in double.  Eight named partial sums (not an array, which GCC keeps in memory)
 * break the dependency chain. */
static double sum_forward(const float *restrict x, int n) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    int j;
    for (j = 0; j + 8 <= n; j += 8) {
        a0 += x[j], a1 += x[j + 1], a2 += x[j + 2], a3 += x[j + 3];
        a4 += x[j + 4], a5 += x[j + 5], a6 += x[j + 6], a7 += x[j + 7];
    }
    double sum = ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7));
    for (; j < n; j++) sum += x[j];
    return sum;
}

/* frame (n) -> out (n): d = frame - mean; y[j] = d[j] - p*d[j-1] with d[-1] = d[0]; out = y*win.
 * The float32 operations of torchaudio's _get_window, in its order. */
static void preemphasis_window_forward(const float *restrict frame, const float *restrict win, float *restrict out,
                                       int n, float mean, float p) {
    out[0] = ((frame[0] - mean) - p * (frame[0] - mean)) * win[0];
    int j;
    for (j = 1; j + LANES <= n; j += LANES)
        for (int i = 0; i < LANES; i++)
            out[j + i] = ((frame[j + i] - mean) - p * (frame[j + i - 1] - mean)) * win[j + i];
    for (; j < n; j++) out[j] = ((frame[j] - mean) - p * (frame[j - 1] - mean)) * win[j];
}

/* spec (n complex, interleaved re, im) -> power (n): |X_k|^2. */
static void power_forward(const float *restrict spec, float *restrict power, int n) {
    int k;
    for (k = 0; k + LANES <= n; k += LANES)
        for (int i = 0; i < LANES; i++)
            power[k + i] = spec[2 * (k + i)] * spec[2 * (k + i)] + spec[2 * (k + i) + 1] * spec[2 * (k + i) + 1];
    for (; k < n; k++) power[k] = spec[2 * k] * spec[2 * k] + spec[2 * k + 1] * spec[2 * k + 1];
}

/* w . x over n floats, n a multiple of LANES (8), in eight partial sums. */
static float dot_forward(const float *restrict w, const float *restrict x, int n) {
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (int i = 0; i < n; i += 8) {
        a0 += w[i] * x[i], a1 += w[i + 1] * x[i + 1], a2 += w[i + 2] * x[i + 2], a3 += w[i + 3] * x[i + 3];
        a4 += w[i + 4] * x[i + 4], a5 += w[i + 5] * x[i + 5], a6 += w[i + 6] * x[i + 6], a7 += w[i + 7] * x[i + 7];
    }
    return ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7));
}

/* acc (stride) = x (rows) @ matrix (rows, stride), stride a multiple of DCT_LANES. */
static void dct_forward(const double *restrict x, const double *restrict matrix, double *restrict acc, int rows,
                        int stride) {
    for (int c = 0; c < stride; c++) acc[c] = 0.0;
    for (int b = 0; b < rows; b++) {
        const double *restrict row = matrix + (size_t)b * stride;
        const double v = x[b];
        for (int c = 0; c < stride; c += DCT_LANES)
            for (int l = 0; l < DCT_LANES; l++) acc[c + l] += v * row[c + l];
    }
}

/* One frame: frame (window_size) samples -> ceps (num_ceps) liftered MFCC. */
static void mfcc_frame_forward(slex_mfcc *m, const float *frame, float *ceps) {
    const int ws = m->window_size, n_mel = m->opts.num_mel_bins, n_ceps = m->opts.num_ceps;

    /* Per-frame DC removal (the mean in double; torchaudio's float32 mean differs by rounding
     * only), preemphasis, window; the FFT's zero padding stays from creation. */
    const float mean = (float)(sum_forward(frame, ws) / ws);
    preemphasis_window_forward(frame, m->window, m->fft_in, ws, mean, m->preemph);
    fftwf_execute(m->plan);
    /* torchaudio's mel bank has no Nyquist column: the power of k < fft_size/2 only. */
    power_forward((const float *)m->fft_out, m->power, m->fft_size / 2);

    /* Sparse mel bank over each filter's padded span, then the log with torchaudio's
     * float-epsilon floor. */
    for (int b = 0; b < n_mel; b++) {
        float energy = dot_forward(m->mel_weights + m->mel_offset[b], m->power + m->mel_first[b], m->mel_count[b]);
        m->log_mel[b] = logf(energy > FLT_EPSILON ? energy : FLT_EPSILON);
    }

    /* DCT (n_mel -> n_ceps) in double, then the lifter. */
    dct_forward(m->log_mel, m->dct, m->ceps_acc, n_mel, m->ceps_stride);
    for (int c = 0; c < n_ceps; c++) ceps[c] = (float)(m->ceps_acc[c] * m->lifter[c]);
}

/* compute_deltas along time on columns [src, src+n_ceps) of feat (T, dim), written to
 * [dst, dst+n_ceps): d[t] = sum_{k=1..N} k*(x[t+k] - x[t-k]) / denom, indices clamped to [0, T-1]
 * (replicate padding). */
static void deltas_forward(slex_mfcc *m, float *feat, int64_t T, int src, int dst) {
    const int dim = m->dim, n_ceps = m->opts.num_ceps, N = m->opts.delta_window;
    const double denom = m->delta_denom;
    double *acc = m->ceps_acc;
    for (int64_t t = 0; t < T; t++) {
        for (int c = 0; c < n_ceps; c++) acc[c] = 0.0;
        for (int k = 1; k <= N; k++) {
            const float *ahead = feat + (t + k < T ? t + k : T - 1) * dim + src;
            const float *behind = feat + (t - k >= 0 ? t - k : 0) * dim + src;
            for (int c = 0; c < n_ceps; c++) acc[c] += k * ((double)ahead[c] - (double)behind[c]);
        }
        float *d = feat + t * dim + dst;
        for (int c = 0; c < n_ceps; c++) d[c] = (float)(acc[c] / denom);
    }
}

int slex_mfcc_compute(slex_mfcc *m, const float *wave, int64_t n, float *out, slex_error *err) {
    if (n < 0) return slex_fail_as(err, SLEX_ERR_INTERNAL, "mfcc: negative sample count %lld", (long long)n);
    int64_t T = slex_mfcc_num_frames(m, n);
    if (T == 0) return 0;
    if (!wave || !out)
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "mfcc: NULL %s for %lld samples", wave ? "output" : "waveform",
                            (long long)n);
    const int dim = m->dim, n_ceps = m->opts.num_ceps;
    for (int64_t t = 0; t < T; t++) mfcc_frame_forward(m, wave + t * m->window_shift, out + t * dim);
    if (m->opts.with_deltas) {
        deltas_forward(m, out, T, 0, n_ceps);
        deltas_forward(m, out, T, n_ceps, 2 * n_ceps);
    }
    return 0;
}

void slex_mfcc_free(slex_mfcc *m) {
    if (!m) return;
    if (m->plan) fftwf_destroy_plan(m->plan);
    if (m->block) fftwf_free(m->block);
    free(m);
}
