/* slex-eval: unit quality per language (PNMI, purities, usage, runs), drift between two
 * labelings, ABX phone discriminability, comparison tables and figures, units for vocoders.
 *
 *   slex-eval units --labels STORE --align FILE [--lang NAME] [--labels ... --align ...] --out DIR
 *   slex-eval drift --labels A --labels B --out DIR
 *   slex-eval abx --features STORE --align FILE [--speakers TSV] --out DIR
 *   slex-eval compare RUN... --out DIR
 *   slex-eval curves --log train_log.jsonl [--log ...] --out DIR
 *   slex-eval export-units --labels STORE [--dedup] --out FILE
 *
 * MPI over shards: every rank counts its shards' frames, the integer counts are summed exactly,
 * rank 0 writes the results; they do not depend on the rank count. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/mpi_util.h"
#include "core/options.h"
#include "corpus/align.h"
#include "eval/abx.h"
#include "eval/labels.h"
#include "eval/report.h"
#include "eval/units.h"
#include "store/store.h"

#define PATH_CAP 4200

/* Exit codes (core/err.h): 0 done, 2 bad command line; a failure 1 (I/O), 4 (bad input),
 * 5 (resources) or 6 (internal) by its kind. */
enum { EXIT_DONE = SLEX_EXIT_OK, EXIT_USAGE = SLEX_EXIT_USAGE };

/* Parses a subcommand's options; returns -1 to go on, else the exit code. */
static int parse(slex_cli *cli, int argc, char **argv, const slex_mpi *mpi, slex_error *err) {
    slex_parse_result parsed = slex_cli_parse(cli, argc, argv, err);
    if (parsed == SLEX_PARSE_HELP) {
        if (mpi->rank == 0) slex_cli_help(cli, stdout);
        return EXIT_DONE;
    }
    if (parsed == SLEX_PARSE_ERROR) {
        if (mpi->rank == 0) slex_error_log("%s", err->msg);
        return slex_cli_exit_code(cli, err);
    }
    return -1;
}

static int usage_error(const slex_mpi *mpi, const char *msg) {
    if (mpi->rank == 0) slex_error_log("%s (see --help)", msg);
    return EXIT_USAGE;
}

/* Agrees on failure across ranks: a rank that failed logs its message; -1 (go on) when every
 * rank succeeded, else on all the exit code of the failure's kind (of the most specific one when
 * several ranks failed).  A failure with an empty message was said elsewhere. */
static int together(int rc, const slex_error *err) {
    if (rc && err->msg[0]) slex_error_log("%s", err->msg);
    int code = slex_mpi_exit_code(rc ? SLEX_EXIT_FAILED : SLEX_EXIT_OK, err);
    return code == SLEX_EXIT_OK ? -1 : code;
}

/* The exit code of a last step, agreed across ranks. */
static int all_done(int rc, const slex_error *err) {
    int code = together(rc, err);
    return code < 0 ? EXIT_DONE : code;
}

static int write_metrics(const char *dir, cJSON *doc, slex_error *err) {
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    int rc = !doc ? -1 : slex_mkdirs(dir, err) || slex_write_json(path, doc, err);
    if (!rc) slex_info("%s written", path);
    return rc;
}

/* ---- units ---------------------------------------------------------------------------------- */

typedef struct units_walk {
    slex_unit_counts *counts;
    int64_t missing;
    char first_missing[512];
} units_walk;

static int count_utt(void *ctx, const char *utt_id, const int32_t *units, int64_t n, slex_error *err) {
    units_walk *w = ctx;
    int rc = slex_unit_counts_add(w->counts, utt_id, units, n, err);
    if (rc == 1) {
        if (!w->missing++) snprintf(w->first_missing, sizeof w->first_missing, "%s", utt_id);
        return 0;
    }
    return rc;
}

/* The default language name: the alignment file's name up to its first '_' or '.'. */
static void lang_from_path(const char *path, char *out, size_t size) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, size, "%.*s", (int)strcspn(base, "_."), base);
}

/* Counts one language on this rank, then sums over ranks: -1 (go on) or the exit code on all. */
static int count_language(slex_units_language *lang, const slex_store *labels, const slex_alignment *al,
                          const char *exclude, const slex_mpi *mpi, slex_error *err) {
    units_walk w = {.counts = slex_unit_counts_create(al, (int)slex_store_frame_rate(labels), exclude, err)};
    int rc = w.counts ? slex_labels_walk(labels, mpi->rank, mpi->size, count_utt, &w, err) : -1;
    lang->counts = w.counts;
    int code = together(rc, err);
    if (code >= 0) return code;
    int64_t missing = slex_mpi_sum_i64(w.missing);
    if (missing) {
        if (w.missing) slex_error_log("%s: no alignment in %s for %lld utterance(s) of this rank, the first %s",
                                      lang->labels, lang->align, (long long)w.missing, w.first_missing);
        if (mpi->rank == 0)
            slex_error_log("%s does not cover the labelled utterances: %lld of %lld utterance(s) of %s have no "
                           "alignment", lang->align, (long long)missing, (long long)slex_store_utterances(labels),
                           lang->labels);
        return SLEX_EXIT_INPUT;
    }
    int k = slex_unit_counts_k(w.counts), k_all;
    MPI_Allreduce(&k, &k_all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if ((code = together(slex_unit_counts_grow(w.counts, k_all, err), err)) >= 0) return code;
    int64_t n;
    int64_t *buf = slex_unit_counts_buffer(w.counts, &n);
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    return -1;
}

typedef struct units_options {
    slex_string_list labels, aligns, langs;
    char *exclude, *out;
    int no_plots;
} units_options;

#define T units_options
static const slex_option units_rows[] = {
    {SLEX_OPT_LIST_FIELD(T, labels), .name = "labels", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "label store (slex-label); repeat with --align per language"},
    {SLEX_OPT_LIST_FIELD(T, aligns), .name = "align", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "slex alignment of the same utterances (one per --labels)"},
    {SLEX_OPT_LIST_FIELD(T, langs), .name = "lang",
     .help = "language names, one per --labels (default: the alignment's name up to '_')"},
    {SLEX_OPT_STRING_FIELD(T, exclude), .name = "exclude",
     .help = "phone labels (comma-separated, e.g. sil) left out of purity and PNMI"},
    {SLEX_OPT_FLAG_FIELD(T, no_plots), .name = "no-plots", .help = "write metrics.json only"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "output directory (metrics.json, usage_*.png, cooc_*.png)"},
};
#undef T
static const slex_option_table units_table = SLEX_OPTION_TABLE(units_rows);

static int cmd_units(int argc, char **argv, const slex_mpi *mpi) {
    units_options uo;
    slex_options_defaults(&units_table, &uo);
    const slex_option_group groups[] = {{&units_table, &uo}};
    slex_cli cli = {.program = "slex-eval units",
                    .synopsis = "--labels STORE --align FILE [--lang NAME] [...] --out DIR",
                    .about = "Phone purity, cluster purity and PNMI (HuBERT paper) per language over every aligned\n"
                             "frame (frame-centre rule, at the label store's rate; Mandarin also against tonal\n"
                             "phones), codebook usage and perplexity, units shared between languages, mean run\n"
                             "length and deduplicated unit rate.",
                    .groups = groups,
                    .n_groups = 1};
    slex_error err = {{0}};
    int code = parse(&cli, argc, argv, mpi, &err);
    const slex_string_list labels = uo.labels, aligns = uo.aligns, langs = uo.langs;
    const char *out = uo.out, *exclude = uo.exclude;
    if (code < 0 && aligns.count != labels.count) code = usage_error(mpi, "give one --align per --labels");
    if (code < 0 && langs.count && langs.count != labels.count) code = usage_error(mpi, "give one --lang per --labels");
    if (code < 0 && labels.count > 64) code = usage_error(mpi, "at most 64 languages");
    if (code >= 0) {
        slex_cli_free(&cli);
        return code;
    }
    int n = labels.count, rc = 0;
    slex_units_language lang[64] = {{0}};
    slex_store *stores[64] = {0};
    slex_alignment *al[64] = {0};
    char names[64][128];
    double rate = 0;
    for (int i = 0; !rc && i < n; i++) {
        if (langs.count) snprintf(names[i], sizeof names[i], "%s", langs.items[i]);
        else lang_from_path(aligns.items[i], names[i], sizeof names[i]);
        lang[i] = (slex_units_language){.name = names[i], .labels = labels.items[i], .align = aligns.items[i]};
        if (!(stores[i] = slex_label_store_open(labels.items[i], &err)) ||
            !(al[i] = slex_alignment_read(aligns.items[i], &err)))
            rc = -1;
        else if (i && slex_store_frame_rate(stores[i]) != rate)
            rc = slex_fail_as(&err, SLEX_ERR_INPUT, "%s is at %g Hz but %s at %g Hz: one run compares one label rate", labels.items[i],
                           slex_store_frame_rate(stores[i]), labels.items[0], rate);
        else rate = slex_store_frame_rate(stores[i]);
        for (int j = 0; !rc && j < i; j++)
            if (!strcmp(names[i], names[j])) rc = slex_fail_as(&err, SLEX_ERR_INPUT, "language %s given twice (use --lang)", names[i]);
    }
    code = together(rc, &err);
    for (int i = 0; code < 0 && i < n; i++) code = count_language(&lang[i], stores[i], al[i], exclude, mpi, &err);
    if (code < 0) {
        /* Every language on one K (the largest unit seen in any), so shared units line up. */
        int k = 0;
        for (int i = 0; i < n; i++)
            if (slex_unit_counts_k(lang[i].counts) > k) k = slex_unit_counts_k(lang[i].counts);
        for (int i = 0; !rc && i < n; i++) rc = slex_unit_counts_grow(lang[i].counts, k, &err);
        if (mpi->rank == 0 && !rc) {
            cJSON *doc = slex_units_report(lang, n, rate, exclude, &err);
            rc = write_metrics(out, doc, &err) || (!uo.no_plots && slex_units_plots(out, lang, n, &err));
            cJSON_Delete(doc);
        }
        code = all_done(rc, &err);
    }
    for (int i = 0; i < n; i++) {
        slex_unit_counts_free(lang[i].counts);
        slex_store_close(stores[i]);
        slex_alignment_free(al[i]);
    }
    slex_cli_free(&cli);
    return code;
}

/* ---- drift ---------------------------------------------------------------------------------- */

typedef struct drift_walk {
    int ka, kb;
    int64_t *joint; /* (ka, kb); NULL in the first pass, which finds ka and kb */
    int64_t utterances;
} drift_walk;

static int drift_utt(void *ctx, const char *utt_id, const int32_t *a, const int32_t *b, int64_t n, slex_error *err) {
    drift_walk *w = ctx;
    for (int64_t i = 0; i < n; i++) {
        if (a[i] < 0 || b[i] < 0) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: frame %lld has a negative unit", utt_id, (long long)i);
        if (!w->joint) {
            if (a[i] >= w->ka) w->ka = a[i] + 1;
            if (b[i] >= w->kb) w->kb = b[i] + 1;
        } else {
            w->joint[(int64_t)a[i] * w->kb + b[i]]++;
        }
    }
    w->utterances += w->joint != NULL;
    return 0;
}

typedef struct drift_options {
    slex_string_list labels;
    char *out;
} drift_options;

#define T drift_options
static const slex_option drift_rows[] = {
    {SLEX_OPT_LIST_FIELD(T, labels), .name = "labels", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "the two label stores (give --labels twice: before, after)"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "output directory (metrics.json)"},
};
#undef T
static const slex_option_table drift_table = SLEX_OPTION_TABLE(drift_rows);

static int cmd_drift(int argc, char **argv, const slex_mpi *mpi) {
    drift_options dopt;
    slex_options_defaults(&drift_table, &dopt);
    const slex_option_group groups[] = {{&drift_table, &dopt}};
    slex_cli cli = {.program = "slex-eval drift",
                    .synopsis = "--labels A --labels B --out DIR",
                    .about = "How much two labelings of the same utterances differ (say before and after\n"
                             "re-clustering): NMI, the fraction of frames whose unit changed, and the same after\n"
                             "the best one-to-one matching of A's units to B's.",
                    .groups = groups,
                    .n_groups = 1};
    slex_error err = {{0}};
    int code = parse(&cli, argc, argv, mpi, &err);
    const slex_string_list labels = dopt.labels;
    const char *out = dopt.out;
    if (code < 0 && labels.count != 2) code = usage_error(mpi, "give --labels twice");
    if (code >= 0) {
        slex_cli_free(&cli);
        return code;
    }
    slex_store *a = slex_label_store_open(labels.items[0], &err), *b = a ? slex_label_store_open(labels.items[1], &err) : NULL;
    drift_walk w = {0};
    int rc = !b ? -1 : slex_labels_walk_pair(a, b, mpi->rank, mpi->size, drift_utt, &w, &err);
    code = together(rc, &err);
    if (code < 0) {
        int k[2] = {w.ka, w.kb};
        MPI_Allreduce(MPI_IN_PLACE, k, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        w.ka = k[0];
        w.kb = k[1];
        w.joint = calloc((size_t)w.ka * (size_t)w.kb + 1, sizeof *w.joint);
        rc = !w.joint ? slex_fail_as(&err, SLEX_ERR_RESOURCE, "out of memory for a %d x %d table", w.ka, w.kb)
                      : slex_labels_walk_pair(a, b, mpi->rank, mpi->size, drift_utt, &w, &err);
        code = together(rc, &err);
    }
    if (code < 0) {
        MPI_Allreduce(MPI_IN_PLACE, w.joint, w.ka * w.kb, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
        int64_t utts = slex_mpi_sum_i64(w.utterances);
        if (mpi->rank == 0) {
            cJSON *doc = slex_drift_report(labels.items[0], labels.items[1], w.joint, w.ka, w.kb, utts, &err);
            rc = write_metrics(out, doc, &err);
            cJSON_Delete(doc);
        }
        code = all_done(rc, &err);
    }
    free(w.joint);
    slex_store_close(a);
    slex_store_close(b);
    slex_cli_free(&cli);
    return code;
}

/* ---- export-units --------------------------------------------------------------------------- */

typedef struct export_walk {
    FILE *f;
    int dedup;
} export_walk;

static int export_utt(void *ctx, const char *utt_id, const int32_t *units, int64_t n, slex_error *err) {
    (void)utt_id;
    (void)err;
    export_walk *w = ctx;
    int first = 1;
    for (int64_t i = 0; i < n; i++) {
        if (w->dedup && i && units[i] == units[i - 1]) continue;
        fprintf(w->f, first ? "%d" : " %d", units[i]);
        first = 0;
    }
    fputc('\n', w->f);
    return 0;
}

typedef struct export_units_options {
    char *labels, *out;
    int dedup;
} export_units_options;

#define T export_units_options
static const slex_option export_units_rows[] = {
    {SLEX_OPT_STRING_FIELD(T, labels), .name = "labels", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "label store (slex-label)"},
    {SLEX_OPT_FLAG_FIELD(T, dedup), .name = "dedup",
     .help = "merge runs of equal consecutive units (as unit vocoders usually take them)"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "output text file"},
};
#undef T
static const slex_option_table export_units_table = SLEX_OPTION_TABLE(export_units_rows);

static int cmd_export_units(int argc, char **argv, const slex_mpi *mpi) {
    export_units_options eo;
    slex_options_defaults(&export_units_table, &eo);
    const slex_option_group groups[] = {{&export_units_table, &eo}};
    slex_cli cli = {.program = "slex-eval export-units",
                    .synopsis = "--labels STORE [--dedup] --out FILE",
                    .about = "One line of space-separated units per utterance, in the order of the store's\n"
                             "manifest.tsv (the input of fairseq/textlesslib unit HiFi-GAN vocoders).  Rank 0\n"
                             "streams the store: the file is small and written in order.",
                    .groups = groups,
                    .n_groups = 1};
    slex_error err = {{0}};
    int code = parse(&cli, argc, argv, mpi, &err);
    const char *labels = eo.labels, *out = eo.out;
    const int dedup = eo.dedup;
    if (code >= 0) {
        slex_cli_free(&cli);
        return code;
    }
    int rc = 0;
    if (mpi->rank == 0) {
        slex_store *s = slex_label_store_open(labels, &err);
        slex_atomic file = {.f = NULL};
        rc = !s || slex_mkdirs_for_file(out, &err) || slex_atomic_fopen(&file, out, &err);
        export_walk w = {.f = file.f, .dedup = dedup};
        if (!rc) rc = slex_labels_walk(s, 0, 1, export_utt, &w, &err);
        if (rc) slex_atomic_abandon(&file);
        else rc = slex_atomic_commit(&file, &err);
        if (!rc) slex_info("%s: %lld utterances%s", out, (long long)slex_store_utterances(s), dedup ? ", deduplicated" : "");
        slex_store_close(s);
    }
    slex_cli_free(&cli);
    return all_done(rc, &err);
}

/* ---- compare, curves (rank 0: small files) -------------------------------------------------- */

static int cmd_compare(int argc, char **argv, const slex_mpi *mpi) {
    /* Runs are the positional arguments; --out anywhere. */
    const char **runs = calloc((size_t)argc + 1, sizeof *runs);
    const char *out = NULL;
    int n = 0, code = -1;
    for (int i = 1; runs && i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            if (mpi->rank == 0)
                printf("usage: slex-eval compare [NAME=]RUN_DIR... --out DIR\n\n"
                       "A table of every system's metrics (a row per system, a column per language and\n"
                       "metric) from the metrics.json of each run directory: compare.md, compare.csv,\n"
                       "compare.json and pnmi.png.  Directories given under one NAME are seeds of one\n"
                       "system: their mean and sample standard deviation are shown.  Without NAME= the\n"
                       "directory's last component names the system.\n\n"
                       "options:\n"
                       "  --out DIR                  output directory (compare.md, compare.csv, compare.json, pnmi.png) (required)\n"
                       "  --help                     print this help and exit\n");
            code = EXIT_DONE;
        } else if (!strcmp(argv[i], "--out")) {
            if (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2)) code = usage_error(mpi, "--out needs a directory");
            else out = argv[++i];
        } else if (!strncmp(argv[i], "--", 2)) {
            if (mpi->rank == 0) slex_error_log("compare: unknown option %s", argv[i]);
            code = EXIT_USAGE;
        } else {
            runs[n++] = argv[i];
        }
    }
    if (code < 0 && (!out || !n)) code = usage_error(mpi, "compare needs run directories and --out");
    slex_error err = {{0}};
    if (code < 0) code = all_done(mpi->rank == 0 ? slex_compare_runs(runs, n, out, &err) : 0, &err);
    if (code == EXIT_DONE && mpi->rank == 0 && out) slex_info("%s/compare.md written (%d runs)", out, n);
    free(runs);
    return code;
}

typedef struct curves_options {
    slex_string_list logs;
    char *out;
    int smooth; /* trailing mean over this many updates of loss and accuracy; default 1 (as logged) */
} curves_options;

#define T curves_options
static const slex_option curves_rows[] = {
    {SLEX_OPT_LIST_FIELD(T, logs), .name = "log", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "train_log.jsonl of slex-train (repeat to overlay runs)"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "output directory (curves_loss.png, curves_accuracy.png, curves_lr.png)"},
    {SLEX_OPT_INT_FIELD(T, smooth), .name = "smooth", .def = 1, .min = 1, .max = 1000000,
     .help = "plot each loss and accuracy point as the mean of the last N logged updates (1 = as logged)"},
};
#undef T
static const slex_option_table curves_table = SLEX_OPTION_TABLE(curves_rows);

static int cmd_curves(int argc, char **argv, const slex_mpi *mpi) {
    curves_options co;
    slex_options_defaults(&curves_table, &co);
    const slex_option_group groups[] = {{&curves_table, &co}};
    slex_cli cli = {.program = "slex-eval curves",
                    .synopsis = "--log FILE [--log FILE] --out DIR",
                    .about = "Training curves: every key starting with \"loss\" (loss per source too), with \"acc\"\n"
                             "(masked and unmasked accuracy) and the learning rate, against the step.",
                    .groups = groups,
                    .n_groups = 1};
    slex_error err = {{0}};
    int code = parse(&cli, argc, argv, mpi, &err);
    if (code < 0)
        code = all_done(
            mpi->rank == 0 ? slex_training_curves((const char *const *)co.logs.items, co.logs.count, co.smooth, co.out, &err) : 0,
            &err);
    slex_cli_free(&cli);
    return code;
}

/* ---- abx ------------------------------------------------------------------------------------ */

typedef struct abx_stage_options {
    char *features, *align, *speakers, *lang, *out;
} abx_stage_options;

#define T abx_stage_options
static const slex_option abx_stage_rows[] = {
    {SLEX_OPT_STRING_FIELD(T, features), .name = "features", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "feature store (slex-mfcc, slex-dump) or label store (units)"},
    {SLEX_OPT_STRING_FIELD(T, align), .name = "align", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "slex alignment of the same utterances"},
    {SLEX_OPT_STRING_FIELD(T, speakers), .name = "speakers", .flags = SLEX_OPTF_PATH,
     .help = "TSV relpath<TAB>speaker (default: the alignment's .utts beside it)"},
    {SLEX_OPT_STRING_FIELD(T, lang), .name = "lang",
     .help = "language name in metrics.json (default: the alignment's name up to '_')"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "output directory (metrics.json)"},
};
#undef T
static const slex_option_table abx_stage_table = SLEX_OPTION_TABLE(abx_stage_rows);

static int cmd_abx(int argc, char **argv, const slex_mpi *mpi) {
    slex_abx_options ao = slex_abx_default_options();
    abx_stage_options so;
    slex_options_defaults(&abx_stage_table, &so);
    const slex_option_group groups[] = {{&abx_stage_table, &so}, {&slex_abx_option_table, &ao}};
    slex_cli cli = {.program = "slex-eval abx",
                    .synopsis = "--features STORE --align FILE [--speakers TSV] --out DIR",
                    .about = "ABX phone discriminability (ZeroSpeech 2021 style): triphone items, A and X of one\n"
                             "central phone, B of another, same context; within and across speakers; frame-wise\n"
                             "angular distance (units: 0 for equal units, 0.5 otherwise), DTW averaged along the\n"
                             "path.  Error rates are averaged over contexts and speakers per phone pair, then over\n"
                             "phone pairs.  docs/eval.md has the exact definition.",
                    .groups = groups,
                    .n_groups = 2};
    slex_error err = {{0}};
    int code = parse(&cli, argc, argv, mpi, &err);
    const char *features = so.features, *align = so.align, *speakers = so.speakers, *out = so.out, *lang = so.lang;
    if (code >= 0) {
        slex_cli_free(&cli);
        return code;
    }
    char spk_default[PATH_CAP], name[128];
    if (!speakers) {
        size_t len = strlen(align);
        if (len > 6 && !strcmp(align + len - 6, ".align")) len -= 6;
        snprintf(spk_default, sizeof spk_default, "%.*s.utts", (int)len, align);
        speakers = spk_default;
    }
    if (lang) snprintf(name, sizeof name, "%s", lang);
    else lang_from_path(align, name, sizeof name);
    slex_abx_result res;
    int rc = slex_abx_run(features, align, speakers, &ao, mpi->rank, mpi->size, &res, &err);
    code = together(rc, &err);
    if (code < 0) {
        if (mpi->rank == 0) {
            cJSON *doc = slex_abx_report(&res, features, align, name, &ao);
            rc = write_metrics(out, doc, &err);
            cJSON_Delete(doc);
        }
        code = all_done(rc, &err);
    }
    slex_cli_free(&cli);
    return code;
}

static void main_help(FILE *f) {
    fprintf(f, "usage: slex-eval COMMAND [options]   (slex-eval COMMAND --help for each)\n\n"
               "  units         phone purity, cluster purity, PNMI, usage, runs per language (metrics.json, PNGs)\n"
               "  drift         NMI and changed frames between two labelings of the same utterances\n"
               "  abx           ABX phone discriminability of features or units, within and across speakers\n"
               "  compare       a table (Markdown, CSV, JSON) and PNMI figure over several runs\n"
               "  curves        training curves from slex-train's train_log.jsonl\n"
               "  export-units  units per utterance as text lines for unit vocoders\n");
}

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    slex_log_init("eval", mpi.rank, mpi.size);
    slex_log_level_from_env();
    int code;
    const char *cmd = argc > 1 ? argv[1] : "";
    if (!strcmp(cmd, "units")) code = cmd_units(argc - 1, argv + 1, &mpi);
    else if (!strcmp(cmd, "drift")) code = cmd_drift(argc - 1, argv + 1, &mpi);
    else if (!strcmp(cmd, "abx")) code = cmd_abx(argc - 1, argv + 1, &mpi);
    else if (!strcmp(cmd, "compare")) code = cmd_compare(argc - 1, argv + 1, &mpi);
    else if (!strcmp(cmd, "curves")) code = cmd_curves(argc - 1, argv + 1, &mpi);
    else if (!strcmp(cmd, "export-units")) code = cmd_export_units(argc - 1, argv + 1, &mpi);
    else if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        if (mpi.rank == 0) main_help(stdout);
        code = EXIT_DONE;
    } else {
        if (mpi.rank == 0) {
            if (*cmd) slex_error_log("unknown command %s", cmd);
            main_help(stderr);
        }
        code = EXIT_USAGE;
    }
    slex_mpi_stop();
    return code;
}
