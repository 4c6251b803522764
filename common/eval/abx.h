/* abx: ABX phone discriminability (ZeroSpeech 2021 / Libri-light style) of a feature or label store.
 *
 * Items are triphones of the alignment (tone-free labels; no silence among the three phones):
 * the frames whose centre lies in [start of the previous phone, end of the next phone), at the
 * store's frame rate.  An item has a central phone, a context (previous, next) and a speaker.
 * A triplet (A, B, X) has A and X of phone a, B of phone b != a, all three in one context;
 * within speakers A, B and X share a speaker, across speakers A and B share one and X has
 * another.  The triplet is an error when d(A, X) > d(B, X), half an error on a tie.  d is DTW
 * over the frame-wise angular distance acos(cos(x, y)) / pi (units: 0 for equal units, 0.5
 * otherwise, the angular distance of one-hot vectors), averaged along the path (accumulated cost
 * over the number of steps of the cheapest path; ties prefer the diagonal step).  A cell is
 * (context, a, b, speaker[, X's speaker]); its error is the mean over its triplets; the error of
 * a pair (a, b) is the mean over its cells; the score is the mean over pairs.  With any_context
 * items are single phones (their own frames, no silence) and every item is in one context: small
 * test sets repeat few triphone contexts, so this variant is the one that still has triplets.
 *
 * Bounds (seeded, as fastabx/Libri-light subsample): at most max_size_group items per
 * (phone, context, speaker), at most max_x_across X speakers per across cell, at most max_items
 * items in all.  Memory: 4 * dim bytes per kept frame on every rank (features of all kept items).
 * MPI: each rank reads its shards' items, the items are shared, cells are dealt out round-robin
 * and their error counts summed exactly (integers), so the result does not depend on the rank
 * count. */
#ifndef SLEX_EVAL_ABX_H
#define SLEX_EVAL_ABX_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/err.h"
#include "core/options.h"

typedef struct slex_abx_options {
    int max_size_group;  /* 10 */
    int max_x_across;    /* 5 */
    long long max_items; /* 5000 */
    long long seed;      /* 0 */
    int any_context;     /* 0: triphone items, one context per cell (ZeroSpeech's "within context");
                          * 1: phone items (the frames whose centre is in the phone), context ignored */
} slex_abx_options;

slex_abx_options slex_abx_default_options(void);

/* The options registered once (defaults, ranges, --help of slex-eval abx). */
extern const slex_option_table slex_abx_option_table;

typedef struct slex_abx_result {
    double within;           /* error rate in [0, 1]; NaN when no triplet */
    double across;
    int64_t triplets_within;
    int64_t triplets_across;
    int64_t pairs_within;    /* phone pairs that entered the mean */
    int64_t pairs_across;
    int64_t items;           /* items kept */
    int64_t items_total;     /* items in the alignment before subsampling */
    int64_t frames;          /* frames of the kept items */
    int speakers;
    int is_units;            /* the store held labels */
} slex_abx_result;

/* Runs the evaluation on rank `rank` of `size` (collective over MPI_COMM_WORLD).  Fails on every
 * rank together; the rank that knows why fills err, the others leave it empty.  speakers: TSV
 * of relpath<TAB>speaker (further columns ignored; a slex-synth .utts file is one). */
int slex_abx_run(const char *store_dir, const char *align_path, const char *speakers_path,
                 const slex_abx_options *o, int rank, int size, slex_abx_result *r, slex_error *err);

/* The metrics.json document. */
cJSON *slex_abx_report(const slex_abx_result *r, const char *store_dir, const char *align_path, const char *lang,
                       const slex_abx_options *o);

/* DTW distance of two items as defined above, from their frame distance matrix d (n, m). */
double slex_abx_dtw(const double *d, int n, int m, double *work /* 2 * n * m */);

#endif
