/* textgrid: Praat TextGrid files (the output of the Montreal Forced Aligner) -> phone segments.
 *
 * Reads Praat's long ("xmin = 0") and short (bare values) text formats, in UTF-8 (with or
 * without BOM) or UTF-16 with BOM (Praat's own choice for non-ASCII text).  Like Praat, the
 * reader takes only the values: numbers, "strings" ("" is a quote inside a string) and <flags>,
 * skipping keys, "[n]" indices and "!" comments, so both formats are the same value stream:
 *   "ooTextFile" "TextGrid" xmin xmax <exists> n_tiers
 *   per tier: "IntervalTier" name xmin xmax n, then n x (xmin xmax "text")
 *          or "TextTier"     name xmin xmax n, then n x (time "mark")
 * Every value keeps its line number, so errors read "file:line: reason".  Binary TextGrids are
 * refused with a message.
 *
 * Conversion of an interval tier to slex segments (align.h): times -> round(t * rate) samples;
 * the intervals must tile [0, audio length] (gaps, overlaps, and an end further than
 * `tolerance_s` from the audio length are errors naming the interval's line; the last end is
 * then snapped to the audio length); empty text and the silence labels become
 * SLEX_SILENCE_LABEL, neighbouring silences merge; other labels are kept verbatim (an MFA
 * tonal label such as "a2" stays "a2"). */
#ifndef SLEX_TEXTGRID_H
#define SLEX_TEXTGRID_H

#include <stddef.h>
#include <stdint.h>

#include "corpus/align.h"
#include "core/err.h"
#include "core/options.h"

typedef struct slex_textgrid_item {
    double xmin, xmax; /* a point of a TextTier has xmin == xmax */
    char *text;
    int64_t line;      /* line of the item's first value */
} slex_textgrid_item;

typedef struct slex_textgrid_tier {
    char *name;
    int is_interval; /* 1: IntervalTier, 0: TextTier */
    double xmin, xmax;
    int64_t n;
    slex_textgrid_item *items;
    int64_t line;    /* line of the tier's class string */
} slex_textgrid_tier;

typedef struct slex_textgrid {
    char *path;
    double xmin, xmax;
    int n_tiers;
    slex_textgrid_tier *tiers;
} slex_textgrid;

/* Parses len bytes of a TextGrid; `name` is used in messages (a file path). */
slex_textgrid *slex_textgrid_parse(const char *data, size_t len, const char *name, slex_error *err);
slex_textgrid *slex_textgrid_read(const char *path, slex_error *err);
void slex_textgrid_free(slex_textgrid *tg);
/* The tier with this name, or NULL. */
const slex_textgrid_tier *slex_textgrid_tier_by_name(const slex_textgrid *tg, const char *name);

typedef struct slex_textgrid_options {
    const char *tier;      /* "phones": MFA's phone tier */
    int sample_rate;       /* 16000: sample positions of the segments */
    double tolerance_s;    /* 0.01: allowed |tier end - audio duration| */
    const char *silence;   /* "sil,sp,<eps>": comma-separated labels that mean silence (plus "") */
} slex_textgrid_options;

void slex_textgrid_options_default(slex_textgrid_options *opts);

/* The options registered once (tier and silence are options of slex-import-textgrid;
 * sample_rate and tolerance_s are internal: the stage takes the tolerance in ms). */
extern const slex_option_table slex_textgrid_option_table;

/* Segments of the options' tier for audio of num_samples samples: *segs (malloc'd) with
 * labels in *labels (malloc'd storage the segments point into), *n segments. */
int slex_textgrid_to_segments(const slex_textgrid *tg, const slex_textgrid_options *opts, int64_t num_samples,
                              slex_segment **segs, char **labels, int64_t *n, slex_error *err);

#endif
