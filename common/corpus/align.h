/* align: phone alignments — the file format, its validation, and per-frame labels.
 *
 * The format (docs/alignments.md): a UTF-8 text file, one phone per line,
 *
 *   utt_id <TAB> start <TAB> end <TAB> label
 *
 * start/end are 16 kHz sample positions, end exclusive; utt_id is the manifest's relpath.
 * Lines starting with '#' are comments.  The lines of one utterance are consecutive and tile
 * [0, num_samples) exactly: the first starts at 0, each starts where the previous ended
 * (a gap or an overlap is an error), and the last ends at the utterance's num_samples (checked
 * against the manifest).  Labels contain no whitespace; pauses are SLEX_SILENCE_LABEL.  A tonal
 * label is a phone, SLEX_TONE_SEPARATOR and a tone digit ("ou+3"); the tone-free label is the
 * part before the separator, so one file answers both "which phone" and "which tonal phone".
 *
 * Frames: a frame is labelled by the phone at its centre.  Both frame kinds have a 400-sample
 * window (HuBERT's receptive field, Kaldi's 25 ms), so frame i covers [i*hop, i*hop + 400) and
 * its centre is sample position c = i*hop + 200; the phone with start <= c < end labels it.
 * Frame counts are those of the feature stages: 50 Hz (hop 320) floor((N-400)/320)+1, 100 Hz
 * (hop 160) 1+(N-400)//160, and 0 frames when N < 400.
 *
 * Memory: slex_alignment_read keeps the whole file (~40 bytes per phone): fine for evaluation
 * sets (100 h of speech is ~5 M phones). */
#ifndef SLEX_ALIGN_H
#define SLEX_ALIGN_H

#include <stdint.h>
#include <stdio.h>

#include "core/err.h"
#include "corpus/manifest.h"

#define SLEX_ALIGN_SAMPLE_RATE 16000
#define SLEX_SILENCE_LABEL "sil"
#define SLEX_TONE_SEPARATOR '+'
/* Longest label (bytes, without the NUL) the reader and the writers accept. */
#define SLEX_LABEL_MAX 63

/* One phone: samples [start, end) labelled `label` (a string owned by whoever made it). */
typedef struct slex_segment {
    int64_t start;
    int64_t end;
    const char *label;
} slex_segment;

/* Frame kinds; the value is the frame rate in Hz. */
typedef enum { SLEX_FRAMES_50HZ = 50, SLEX_FRAMES_100HZ = 100 } slex_frame_rate;

/* Frames of num_samples samples at `rate` (see above); -1 for an unknown rate. */
int64_t slex_align_num_frames(slex_frame_rate rate, int64_t num_samples);

/* Bytes of the tone-free part of a label: up to the last SLEX_TONE_SEPARATOR when a tone digit
 * string follows it, else the whole label. */
size_t slex_label_base_length(const char *label);

/* 0 when the n segments tile [0, num_samples) (num_samples < 0: any end) with valid labels;
 * else -1 with a message naming `where` (e.g. "file:line" or an utterance id) and the
 * offending segment. */
int slex_align_check_segments(const char *where, const slex_segment *segs, int64_t n, int64_t num_samples,
                              slex_error *err);

/* The header comment every writer puts on line 1. */
void slex_align_write_header(FILE *f);
/* Writes one utterance's lines (after slex_align_check_segments with num_samples = -1). */
int slex_align_write_utt(FILE *f, const char *utt_id, const slex_segment *segs, int64_t n, slex_error *err);

/* Label vocabulary: labels <-> dense ids 0..size-1. */
typedef struct slex_label_vocab slex_label_vocab;

slex_label_vocab *slex_label_vocab_create(void);
void slex_label_vocab_free(slex_label_vocab *v);
/* Id of the first len bytes of label, added if new; -1 when out of memory. */
int32_t slex_label_vocab_add(slex_label_vocab *v, const char *label, size_t len);
/* Id or -1. */
int32_t slex_label_vocab_find(const slex_label_vocab *v, const char *label, size_t len);
int32_t slex_label_vocab_size(const slex_label_vocab *v);
const char *slex_label_vocab_label(const slex_label_vocab *v, int32_t id);
/* Occurrences counted by slex_label_vocab_count (0 for labels only added). */
int64_t slex_label_vocab_occurrences(const slex_label_vocab *v, int32_t id);
/* Adds the label if needed and counts one occurrence; its id or -1. */
int32_t slex_label_vocab_count(slex_label_vocab *v, const char *label, size_t len);
/* Reorders ids so that labels are in byte order (deterministic ids whatever the input order). */
int slex_label_vocab_sort(slex_label_vocab *v);
/* File: one line per id, "label<TAB>occurrences"; written atomically (slex_atomic). */
int slex_label_vocab_write(const slex_label_vocab *v, const char *path, slex_error *err);
slex_label_vocab *slex_label_vocab_read(const char *path, slex_error *err);

/* A whole alignment file in memory. */
typedef struct slex_alignment slex_alignment;

/* Reads and validates the format (columns, integers, label length, tiling from 0 without gaps
 * or overlaps, one block per utterance); errors name the file and line. */
slex_alignment *slex_alignment_read(const char *path, slex_error *err);
void slex_alignment_free(slex_alignment *a);
const char *slex_alignment_path(const slex_alignment *a);
int64_t slex_alignment_num_utts(const slex_alignment *a);
const char *slex_alignment_utt_id(const slex_alignment *a, int64_t i);
/* Line of the utterance's first phone. */
int64_t slex_alignment_utt_line(const slex_alignment *a, int64_t i);
/* Index of the utterance or -1. */
int64_t slex_alignment_find(const slex_alignment *a, const char *utt_id);
/* The utterance's phones (labels owned by a); *n gets their count. */
const slex_segment *slex_alignment_segments(const slex_alignment *a, int64_t i, int64_t *n);
/* The vocabulary of the labels in the file (tone-free when strip_tones), ids in byte order. */
slex_label_vocab *slex_alignment_vocab(const slex_alignment *a, int strip_tones, slex_error *err);

/* Checks the alignment against a manifest: every aligned utterance is a manifest relpath
 * ("unknown utterance", naming the alignment line) and ends at its num_samples (naming both
 * lines); with require_all, every well-formed manifest entry has an alignment. */
int slex_alignment_check_manifest(const slex_alignment *a, const slex_manifest *m, int require_all,
                                  slex_error *err);

/* Per-frame label ids of one utterance: out[i] = id in v of the phone at frame i's centre
 * (tone-free label when strip_tones).  out holds slex_align_num_frames(rate, num_samples)
 * entries; num_samples is the audio length (the segments must tile it).  Fails when a label is
 * missing from v. */
int slex_align_frame_labels(const slex_segment *segs, int64_t n, int64_t num_samples, slex_frame_rate rate,
                            const slex_label_vocab *v, int strip_tones, int32_t *out, slex_error *err);

#endif
