#include "eval/units.h"

#include <stdlib.h>
#include <string.h>

/* Counter layout, one int64 buffer: SCALARS totals, then per unit z (unit-major, so growing K
 * appends) the row [P tone-free phone counts | PT tonal phone counts | frames of z]. */
enum { C_UTTS, C_FRAMES, C_SCORED, C_RUNS, C_SAMPLES, SCALARS };

struct slex_unit_counts {
    const slex_alignment *al;
    int rate;
    slex_label_vocab *phones, *tonal; /* tone-free and tonal vocabularies of the alignment */
    int n_phones, n_tonal;
    int k;
    int64_t *buf; /* SCALARS + k * row */
    int64_t row;  /* n_phones + n_tonal + 1 */
    int32_t *frame_phone, *frame_tonal; /* one utterance's frame labels */
    int64_t frame_cap;
    char *excluded; /* per tone-free phone id: 1 when excluded */
    int64_t *per_unit; /* K frames per unit, gathered from buf by slex_unit_counts_per_unit */
};

static int mark_excluded(slex_unit_counts *c, const char *exclude, slex_error *err) {
    c->excluded = calloc((size_t)c->n_phones + 1, 1);
    if (!c->excluded) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    if (!exclude) return 0;
    const char *p = exclude;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len) {
            int32_t id = slex_label_vocab_find(c->phones, p, len);
            /* A label the alignment never uses is fine (an English set has no tones to exclude). */
            if (id >= 0) c->excluded[id] = 1;
        }
        p += len + (p[len] == ',');
    }
    return 0;
}

slex_unit_counts *slex_unit_counts_create(const slex_alignment *al, int frame_rate_hz, const char *exclude,
                                          slex_error *err) {
    if (frame_rate_hz != SLEX_FRAMES_50HZ && frame_rate_hz != SLEX_FRAMES_100HZ) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: label rate %d Hz: alignments give frame labels at 50 or 100 Hz only",
                  slex_alignment_path(al), frame_rate_hz);
        return NULL;
    }
    slex_unit_counts *c = calloc(1, sizeof *c);
    if (!c) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        return NULL;
    }
    c->al = al;
    c->rate = frame_rate_hz;
    if (!(c->phones = slex_alignment_vocab(al, 1, err)) || !(c->tonal = slex_alignment_vocab(al, 0, err))) {
        slex_unit_counts_free(c);
        return NULL;
    }
    c->n_phones = slex_label_vocab_size(c->phones);
    c->n_tonal = slex_label_vocab_size(c->tonal);
    c->row = c->n_phones + c->n_tonal + 1;
    c->buf = calloc(SCALARS, sizeof *c->buf);
    if (!c->buf || mark_excluded(c, exclude, err)) {
        if (!c->buf) slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        slex_unit_counts_free(c);
        return NULL;
    }
    return c;
}

void slex_unit_counts_free(slex_unit_counts *c) {
    if (!c) return;
    slex_label_vocab_free(c->phones);
    slex_label_vocab_free(c->tonal);
    free(c->buf);
    free(c->frame_phone);
    free(c->frame_tonal);
    free(c->excluded);
    free(c->per_unit);
    free(c);
}

int slex_unit_counts_grow(slex_unit_counts *c, int k, slex_error *err) {
    if (k <= c->k) return 0;
    int64_t *buf = realloc(c->buf, (size_t)(SCALARS + (int64_t)k * c->row) * sizeof *buf);
    if (!buf) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %d units", k);
    memset(buf + SCALARS + (int64_t)c->k * c->row, 0, (size_t)((int64_t)(k - c->k) * c->row) * sizeof *buf);
    c->buf = buf;
    c->k = k;
    return 0;
}

int slex_unit_counts_add(slex_unit_counts *c, const char *utt_id, const int32_t *units, int64_t n, slex_error *err) {
    int64_t idx = slex_alignment_find(c->al, utt_id);
    if (idx < 0) return 1;
    int64_t n_segs;
    const slex_segment *segs = slex_alignment_segments(c->al, idx, &n_segs);
    int64_t samples = n_segs ? segs[n_segs - 1].end : 0;
    int64_t frames = slex_align_num_frames((slex_frame_rate)c->rate, samples);
    if (frames != n)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: %lld labels at %d Hz, but its alignment in %s (%lld samples) gives %lld frames",
                         utt_id, (long long)n, c->rate, slex_alignment_path(c->al), (long long)samples,
                         (long long)frames);
    if (n > c->frame_cap) {
        int32_t *fp = realloc(c->frame_phone, (size_t)n * sizeof *fp);
        if (fp) c->frame_phone = fp;
        int32_t *ft = realloc(c->frame_tonal, (size_t)n * sizeof *ft);
        if (ft) c->frame_tonal = ft;
        if (!fp || !ft) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        c->frame_cap = n;
    }
    if (slex_align_frame_labels(segs, n_segs, samples, (slex_frame_rate)c->rate, c->phones, 1, c->frame_phone, err) ||
        slex_align_frame_labels(segs, n_segs, samples, (slex_frame_rate)c->rate, c->tonal, 0, c->frame_tonal, err))
        return -1;
    int32_t top = -1;
    for (int64_t i = 0; i < n; i++) {
        if (units[i] < 0) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: frame %lld has the negative unit %d", utt_id, (long long)i, units[i]);
        if (units[i] > top) top = units[i];
    }
    if (slex_unit_counts_grow(c, top + 1, err)) return -1;
    int64_t scored = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t *row = c->buf + SCALARS + (int64_t)units[i] * c->row;
        row[c->n_phones + c->n_tonal]++;
        if (c->excluded[c->frame_phone[i]]) continue;
        row[c->frame_phone[i]]++;
        row[c->n_phones + c->frame_tonal[i]]++;
        scored++;
    }
    c->buf[C_UTTS]++;
    c->buf[C_FRAMES] += n;
    c->buf[C_SCORED] += scored;
    c->buf[C_RUNS] += slex_unit_runs(units, n);
    c->buf[C_SAMPLES] += samples;
    return 0;
}

int slex_unit_counts_k(const slex_unit_counts *c) { return c->k; }

int64_t *slex_unit_counts_buffer(slex_unit_counts *c, int64_t *n) {
    *n = SCALARS + (int64_t)c->k * c->row;
    return c->buf;
}

int slex_unit_counts_phones(const slex_unit_counts *c, int tonal) { return tonal ? c->n_tonal : c->n_phones; }

const char *slex_unit_counts_phone(const slex_unit_counts *c, int tonal, int id) {
    return slex_label_vocab_label(tonal ? c->tonal : c->phones, id);
}

int slex_unit_counts_has_tones(const slex_unit_counts *c) { return c->n_tonal != c->n_phones; }

int64_t *slex_unit_counts_joint(const slex_unit_counts *c, int tonal, slex_error *err) {
    int np = tonal ? c->n_tonal : c->n_phones, first = tonal ? c->n_phones : 0;
    int64_t *joint = calloc((size_t)np * (size_t)(c->k ? c->k : 1), sizeof *joint);
    if (!joint) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        return NULL;
    }
    for (int z = 0; z < c->k; z++)
        for (int y = 0; y < np; y++) joint[(int64_t)y * c->k + z] = c->buf[SCALARS + (int64_t)z * c->row + first + y];
    return joint;
}

const int64_t *slex_unit_counts_per_unit(slex_unit_counts *c) {
    /* A copy of buf's last column, refreshed on each call (buf is what gets reduced). */
    int64_t *p = realloc(c->per_unit, (size_t)(c->k ? c->k : 1) * sizeof *p);
    if (!p) return NULL;
    c->per_unit = p;
    for (int z = 0; z < c->k; z++) p[z] = c->buf[SCALARS + (int64_t)z * c->row + c->n_phones + c->n_tonal];
    return p;
}

void slex_unit_counts_totals(const slex_unit_counts *c, slex_unit_totals *t) {
    t->utterances = c->buf[C_UTTS];
    t->frames = c->buf[C_FRAMES];
    t->frames_scored = c->buf[C_SCORED];
    t->runs = c->buf[C_RUNS];
    t->samples = c->buf[C_SAMPLES];
}
