/* report: metrics as JSON documents, tables that compare systems, and their figures.
 *
 * A run directory holds metrics.json (written by `slex-eval units`, `drift` or `abx`).  compare
 * flattens each document to named columns ("en/pnmi", "zh/abx_within", "drift/nmi", ...) and
 * writes one row per system: systems given several directories (seeds) get mean and sample
 * standard deviation per column. */
#ifndef SLEX_EVAL_REPORT_H
#define SLEX_EVAL_REPORT_H

#include <cjson/cJSON.h>

#include "core/err.h"
#include "eval/units.h"

/* One language of `units`: its counts after reduction. */
typedef struct slex_units_language {
    const char *name;    /* "en" */
    const char *labels;  /* label store */
    const char *align;   /* alignment file */
    slex_unit_counts *counts;
} slex_units_language;

/* The metrics.json document of `units` (per language: purities, PNMI (tonal too when the
 * alignment has tones), usage, runs; across languages: shared units and the share of each
 * language's frames in units dominated by another).  Caller deletes it. */
cJSON *slex_units_report(const slex_units_language *langs, int n_langs, double label_rate_hz, const char *exclude,
                         slex_error *err);

/* Figures of `units` into dir: usage_<lang>.png and cooc_<lang>.png (and cooc_<lang>_tonal.png). */
int slex_units_plots(const char *dir, const slex_units_language *langs, int n_langs, slex_error *err);

/* The metrics.json document of `drift` from the joint table of the two labelings (ka, kb). */
cJSON *slex_drift_report(const char *a, const char *b, const int64_t *joint, int ka, int kb, int64_t utterances,
                         slex_error *err);

/* `compare`: runs[i] is "NAME=DIR" or "DIR" (name = DIR's last component); writes
 * out/compare.md, compare.csv, compare.json and pnmi.png (when some run has PNMI). */
int slex_compare_runs(const char *const *runs, int n_runs, const char *out, slex_error *err);

/* `curves`: training curves from train_log.jsonl files (one JSON object per line with "step"):
 * out/curves_loss.png (keys starting with "loss"), curves_accuracy.png ("acc..."), and
 * curves_lr.png ("lr"), one curve per key and log.  smooth > 1 plots each loss and accuracy
 * point as the mean of its series' last `smooth` values (a noisy per-update log of thousands of
 * updates is otherwise a band); the learning rate is drawn as logged. */
int slex_training_curves(const char *const *logs, int n_logs, int smooth, const char *out, slex_error *err);

/* Writes a JSON document to path atomically (pretty-printed, newline-terminated). */
int slex_write_json(const char *path, const cJSON *doc, slex_error *err);

#endif
