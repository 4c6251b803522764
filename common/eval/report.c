#include "eval/report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "corpus/align.h"
#include "eval/plot.h"
#include "eval/unitstats.h"

#define PATH_CAP 4200

int slex_write_json(const char *path, const cJSON *doc, slex_error *err) {
    char *text = cJSON_Print(doc);
    if (!text) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
    size_t len = strlen(text);
    char *line = realloc(text, len + 2);
    if (!line) {
        free(text);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
    }
    line[len] = '\n';
    line[len + 1] = 0;
    int rc = slex_write_file_atomic(path, line, len + 1, err);
    free(line);
    return rc;
}

static void add_purity(cJSON *obj, const slex_purity *p, const char *suffix) {
    char key[64];
    snprintf(key, sizeof key, "pnmi%s", suffix);
    cJSON_AddNumberToObject(obj, key, p->pnmi);
    snprintf(key, sizeof key, "phone_purity%s", suffix);
    cJSON_AddNumberToObject(obj, key, p->phone_purity);
    snprintf(key, sizeof key, "cluster_purity%s", suffix);
    cJSON_AddNumberToObject(obj, key, p->cluster_purity);
    snprintf(key, sizeof key, "mutual_info_nats%s", suffix);
    cJSON_AddNumberToObject(obj, key, p->mutual_info);
    snprintf(key, sizeof key, "phone_entropy_nats%s", suffix);
    cJSON_AddNumberToObject(obj, key, p->phone_entropy);
}

/* Per language: dominant language of every unit by per-language frame shares (ties: the first
 * language), units used by several languages, and each language's frames in units another
 * language dominates. */
static int add_shared(cJSON *doc, cJSON **lang_objs, const slex_units_language *langs, int n, int k, slex_error *err) {
    int64_t *per = calloc((size_t)n * (size_t)(k ? k : 1), sizeof *per), *frames = calloc((size_t)n, sizeof *frames);
    int *dominant = malloc((size_t)(k ? k : 1) * sizeof *dominant);
    if (!per || !frames || !dominant) {
        free(per);
        free(frames);
        free(dominant);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    }
    for (int l = 0; l < n; l++) {
        const int64_t *pu = slex_unit_counts_per_unit(langs[l].counts);
        for (int z = 0; z < k && pu && z < slex_unit_counts_k(langs[l].counts); z++) {
            per[(int64_t)l * k + z] = pu[z];
            frames[l] += pu[z];
        }
    }
    int shared = 0, used_by_all = 0;
    for (int z = 0; z < k; z++) {
        int users = 0;
        dominant[z] = -1;
        double top = 0;
        for (int l = 0; l < n; l++) {
            int64_t c = per[(int64_t)l * k + z];
            users += c > 0;
            double share = frames[l] ? (double)c / (double)frames[l] : 0;
            if (c > 0 && share > top) {
                top = share;
                dominant[z] = l;
            }
        }
        shared += users >= 2;
        used_by_all += users == n;
    }
    for (int l = 0; l < n; l++) {
        int64_t other = 0;
        for (int z = 0; z < k; z++)
            if (dominant[z] >= 0 && dominant[z] != l) other += per[(int64_t)l * k + z];
        cJSON_AddNumberToObject(lang_objs[l], "frames_in_units_of_other",
                                frames[l] ? (double)other / (double)frames[l] : 0.0);
    }
    cJSON *s = cJSON_AddObjectToObject(doc, "shared");
    cJSON_AddNumberToObject(s, "units_used_by_several", shared);
    cJSON_AddNumberToObject(s, "units_used_by_all", used_by_all);
    cJSON_AddStringToObject(s, "dominance",
                            "a unit belongs to the language whose frames it takes the largest share of");
    free(per);
    free(frames);
    free(dominant);
    return 0;
}

cJSON *slex_units_report(const slex_units_language *langs, int n_langs, double label_rate_hz, const char *exclude,
                         slex_error *err) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "kind", "units");
    cJSON_AddNumberToObject(doc, "label_rate_hz", label_rate_hz);
    cJSON_AddStringToObject(doc, "exclude", exclude ? exclude : "");
    cJSON *by_lang = cJSON_AddObjectToObject(doc, "languages");
    cJSON *objs[64];
    int k = 0, rc = 0;
    for (int l = 0; l < n_langs; l++)
        if (slex_unit_counts_k(langs[l].counts) > k) k = slex_unit_counts_k(langs[l].counts);
    cJSON_AddNumberToObject(doc, "units", k);
    for (int l = 0; !rc && l < n_langs; l++) {
        slex_unit_counts *c = langs[l].counts;
        cJSON *o = objs[l] = cJSON_AddObjectToObject(by_lang, langs[l].name);
        cJSON_AddStringToObject(o, "labels", langs[l].labels);
        cJSON_AddStringToObject(o, "align", langs[l].align);
        slex_unit_totals t;
        slex_unit_counts_totals(c, &t);
        cJSON_AddNumberToObject(o, "utterances", (double)t.utterances);
        cJSON_AddNumberToObject(o, "frames", (double)t.frames);
        cJSON_AddNumberToObject(o, "frames_scored", (double)t.frames_scored);
        cJSON_AddNumberToObject(o, "audio_seconds", (double)t.samples / SLEX_ALIGN_SAMPLE_RATE);
        cJSON_AddNumberToObject(o, "phones", slex_unit_counts_phones(c, 0));
        for (int tonal = 0; !rc && tonal <= slex_unit_counts_has_tones(c); tonal++) {
            int64_t *joint = slex_unit_counts_joint(c, tonal, err);
            if (!joint) {
                rc = -1;
                break;
            }
            slex_purity p;
            slex_purity_compute(joint, slex_unit_counts_phones(c, tonal), slex_unit_counts_k(c), &p);
            add_purity(o, &p, tonal ? "_tonal" : "");
            if (tonal) cJSON_AddNumberToObject(o, "phones_tonal", slex_unit_counts_phones(c, 1));
            free(joint);
        }
        const int64_t *pu = slex_unit_counts_per_unit(c);
        if (!pu) {
            rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
            break;
        }
        slex_usage u;
        slex_usage_compute(pu, slex_unit_counts_k(c), &u);
        cJSON_AddNumberToObject(o, "units_used", u.units_used);
        cJSON_AddNumberToObject(o, "perplexity", u.perplexity);
        cJSON_AddNumberToObject(o, "mean_run_length", t.runs ? (double)t.frames / (double)t.runs : 0.0);
        cJSON_AddNumberToObject(o, "unit_rate_hz",
                                t.samples ? (double)t.runs / ((double)t.samples / SLEX_ALIGN_SAMPLE_RATE) : 0.0);
    }
    if (!rc && n_langs >= 2) rc = add_shared(doc, objs, langs, n_langs, k, err);
    if (!rc && n_langs == 1) { /* one language: its main figures at the top as well */
        cJSON_AddStringToObject(doc, "lang", langs[0].name);
        const char *keys[] = {"pnmi", "phone_purity", "cluster_purity"};
        for (int i = 0; i < 3; i++)
            cJSON_AddNumberToObject(doc, keys[i], cJSON_GetObjectItem(objs[0], keys[i])->valuedouble);
    }
    if (rc) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

int slex_units_plots(const char *dir, const slex_units_language *langs, int n_langs, slex_error *err) {
    for (int l = 0; l < n_langs; l++) {
        slex_unit_counts *c = langs[l].counts;
        char name[300], title[600];
        const int64_t *pu = slex_unit_counts_per_unit(c);
        if (!pu) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        snprintf(name, sizeof name, "usage_%s", langs[l].name);
        snprintf(title, sizeof title, "unit usage, %s (%s)", langs[l].name, langs[l].labels);
        if (slex_plot_usage(dir, name, title, pu, slex_unit_counts_k(c), err)) return -1;
        for (int tonal = 0; tonal <= slex_unit_counts_has_tones(c); tonal++) {
            int np = slex_unit_counts_phones(c, tonal);
            const char **labels = malloc((size_t)np * sizeof *labels);
            int64_t *joint = labels ? slex_unit_counts_joint(c, tonal, err) : NULL;
            if (!joint) {
                free(labels);
                return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
            }
            for (int y = 0; y < np; y++) labels[y] = slex_unit_counts_phone(c, tonal, y);
            snprintf(name, sizeof name, "cooc_%s%s", langs[l].name, tonal ? "_tonal" : "");
            snprintf(title, sizeof title, "p(phone | unit), %s%s", langs[l].name, tonal ? ", tonal phones" : "");
            int rc = slex_plot_cooc(dir, name, title, joint, np, slex_unit_counts_k(c), labels, err);
            free(joint);
            free(labels);
            if (rc) return -1;
        }
    }
    return 0;
}

cJSON *slex_drift_report(const char *a, const char *b, const int64_t *joint, int ka, int kb, int64_t utterances,
                         slex_error *err) {
    int32_t *match = malloc((size_t)(ka ? ka : 1) * sizeof *match);
    if (!match) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        return NULL;
    }
    int64_t matched = slex_best_matching(joint, ka, kb, match, err);
    if (matched < 0) {
        free(match);
        return NULL;
    }
    int64_t total = 0, same = 0;
    for (int i = 0; i < ka; i++)
        for (int j = 0; j < kb; j++) {
            total += joint[(int64_t)i * kb + j];
            if (i == j) same += joint[(int64_t)i * kb + j];
        }
    double mi, ha, hb;
    slex_joint_information(joint, ka, kb, &mi, &ha, &hb);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "kind", "drift");
    cJSON_AddStringToObject(doc, "labels_a", a);
    cJSON_AddStringToObject(doc, "labels_b", b);
    cJSON_AddNumberToObject(doc, "utterances", (double)utterances);
    cJSON_AddNumberToObject(doc, "frames", (double)total);
    cJSON_AddNumberToObject(doc, "units_a", ka);
    cJSON_AddNumberToObject(doc, "units_b", kb);
    cJSON_AddNumberToObject(doc, "nmi", ha + hb > 0 ? mi / ((ha + hb) / 2) : 1.0);
    cJSON_AddNumberToObject(doc, "changed", total ? 1.0 - (double)same / (double)total : 0.0);
    cJSON_AddNumberToObject(doc, "changed_after_matching", total ? 1.0 - (double)matched / (double)total : 0.0);
    cJSON *m = cJSON_AddArrayToObject(doc, "matching");
    for (int i = 0; i < ka; i++) cJSON_AddItemToArray(m, cJSON_CreateNumber(match[i]));
    free(match);
    return doc;
}

/* ---- compare ------------------------------------------------------------------------------ */

/* The columns compare shows, in this order within a language. */
static const char *const METRICS[] = {"pnmi", "phone_purity", "cluster_purity", "pnmi_tonal", "phone_purity_tonal",
                                      "cluster_purity_tonal", "units_used", "perplexity", "mean_run_length",
                                      "unit_rate_hz", "frames_in_units_of_other", "abx_within", "abx_across",
                                      "nmi", "changed", "changed_after_matching"};
#define N_METRICS (int)(sizeof METRICS / sizeof METRICS[0])

typedef struct column {
    char name[160];
    char lang[128]; /* the part before '/' */
    int metric;     /* index in METRICS */
} column;

typedef struct system_row {
    char name[256];
    int n_dirs;
    double *values; /* per column: n_dirs_cap values, NaN when that run lacks it */
    int *counts;    /* per column: values present */
} system_row;

typedef struct table {
    column *cols;
    int n_cols, cap_cols;
    system_row *rows;
    int n_rows;
    /* values[(row, column, seed)] in one array: rows x cols x max_seeds */
    double *cell;
    int max_seeds;
} table;

static int column_index(table *t, const char *lang, int metric, slex_error *err) {
    for (int c = 0; c < t->n_cols; c++)
        if (t->cols[c].metric == metric && !strcmp(t->cols[c].lang, lang)) return c;
    if (t->n_cols == t->cap_cols) {
        int cap = t->cap_cols ? 2 * t->cap_cols : 16;
        column *cols = realloc(t->cols, (size_t)cap * sizeof *cols);
        if (!cols) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        t->cols = cols;
        t->cap_cols = cap;
    }
    column *c = &t->cols[t->n_cols];
    snprintf(c->lang, sizeof c->lang, "%s", lang);
    snprintf(c->name, sizeof c->name, "%s/%s", lang, METRICS[metric]);
    c->metric = metric;
    return t->n_cols++;
}

/* Calls add(lang, metric, value) for every metric of a metrics.json object (one language's). */
typedef struct flat_value {
    char lang[128];
    int metric;
    double value;
} flat_value;

static int flatten_object(const cJSON *obj, const char *lang, flat_value *out, int n, int cap) {
    for (int m = 0; m < N_METRICS && n < cap; m++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, METRICS[m]);
        if (!cJSON_IsNumber(v)) continue;
        snprintf(out[n].lang, sizeof out[n].lang, "%s", lang);
        out[n].metric = m;
        out[n].value = v->valuedouble;
        n++;
    }
    return n;
}

/* The metrics of one run directory: languages of `units`, or the whole document under its
 * language ("lang") or kind. */
static int flatten_run(const char *dir, flat_value *out, int cap, slex_error *err) {
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    char *text = slex_read_text_file(path, NULL, err);
    if (!text) return -1;
    cJSON *doc = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: not a JSON object (a metrics.json of slex-eval?)", path);
    }
    const cJSON *langs = cJSON_GetObjectItemCaseSensitive(doc, "languages");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(doc, "kind");
    const cJSON *lang = cJSON_GetObjectItemCaseSensitive(doc, "lang");
    int n = 0;
    if (cJSON_IsObject(langs)) {
        const cJSON *l;
        cJSON_ArrayForEach(l, langs) n = flatten_object(l, l->string, out, n, cap);
    } else if (cJSON_IsString(kind)) {
        n = flatten_object(doc, cJSON_IsString(lang) ? lang->valuestring : kind->valuestring, out, n, cap);
    } else {
        cJSON_Delete(doc);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no \"kind\" (not written by slex-eval)", path);
    }
    cJSON_Delete(doc);
    if (n == 0) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no metric that compare knows", path);
    return n;
}

static void run_name(const char *run, char *name, size_t size, const char **dir) {
    const char *eq = strchr(run, '=');
    if (eq) {
        snprintf(name, size, "%.*s", (int)(eq - run), run);
        *dir = eq + 1;
        return;
    }
    *dir = run;
    size_t len = strlen(run);
    while (len > 1 && run[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && run[start - 1] != '/') start--;
    snprintf(name, size, "%.*s", (int)(len - start), run + start);
}

static void mean_sd(const double *v, int n_seeds, double *mean, double *sd, int *count) {
    double s = 0;
    int n = 0;
    for (int i = 0; i < n_seeds; i++)
        if (!isnan(v[i])) {
            s += v[i];
            n++;
        }
    *count = n;
    *mean = n ? s / n : NAN;
    double q = 0;
    for (int i = 0; i < n_seeds; i++)
        if (!isnan(v[i])) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : NAN;
}

static void format_cell(char *buf, size_t size, double mean, double sd, int count, int metric) {
    if (!count) {
        snprintf(buf, size, "-");
        return;
    }
    int integer = !strcmp(METRICS[metric], "units_used");
    if (count > 1) snprintf(buf, size, integer ? "%.1f ± %.1f" : "%.4f ± %.4f", mean, sd);
    else snprintf(buf, size, integer ? "%.0f" : "%.4f", mean);
}

static int write_tables(const table *t, const char *out, slex_error *err) {
    char md[PATH_CAP], csv[PATH_CAP];
    snprintf(md, sizeof md, "%s/compare.md", out);
    snprintf(csv, sizeof csv, "%s/compare.csv", out);
    FILE *fm = fopen(md, "w"), *fc = fopen(csv, "w");
    if (!fm || !fc) {
        if (fm) fclose(fm);
        if (fc) fclose(fc);
        return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot create: %s", !fm ? md : csv, strerror(errno));
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON *systems = cJSON_AddArrayToObject(doc, "systems");
    fprintf(fm, "| system | runs |");
    fprintf(fc, "system,runs");
    for (int c = 0; c < t->n_cols; c++) {
        fprintf(fm, " %s |", t->cols[c].name);
        fprintf(fc, ",%s,%s_sd", t->cols[c].name, t->cols[c].name);
    }
    fprintf(fm, "\n| --- | --- |");
    for (int c = 0; c < t->n_cols; c++) fprintf(fm, " --- |");
    fprintf(fm, "\n");
    fprintf(fc, "\n");
    for (int r = 0; r < t->n_rows; r++) {
        const system_row *row = &t->rows[r];
        fprintf(fm, "| %s | %d |", row->name, row->n_dirs);
        fprintf(fc, "%s,%d", row->name, row->n_dirs);
        cJSON *js = cJSON_CreateObject();
        cJSON_AddStringToObject(js, "name", row->name);
        cJSON_AddNumberToObject(js, "runs", row->n_dirs);
        cJSON *cols = cJSON_AddObjectToObject(js, "columns");
        for (int c = 0; c < t->n_cols; c++) {
            const double *v = t->cell + ((int64_t)r * t->n_cols + c) * t->max_seeds;
            double mean, sd;
            int count;
            mean_sd(v, row->n_dirs, &mean, &sd, &count);
            char cell[64];
            format_cell(cell, sizeof cell, mean, sd, count, t->cols[c].metric);
            fprintf(fm, " %s |", cell);
            if (count) fprintf(fc, ",%.6g,", mean);
            else fprintf(fc, ",,");
            if (count > 1) fprintf(fc, "%.6g", sd);
            if (!count) continue;
            cJSON *o = cJSON_AddObjectToObject(cols, t->cols[c].name);
            cJSON_AddNumberToObject(o, "mean", mean);
            if (count > 1) cJSON_AddNumberToObject(o, "sd", sd);
            cJSON_AddNumberToObject(o, "n", count);
            cJSON *vals = cJSON_AddArrayToObject(o, "values");
            for (int i = 0; i < row->n_dirs; i++)
                if (!isnan(v[i])) cJSON_AddItemToArray(vals, cJSON_CreateNumber(v[i]));
        }
        fprintf(fm, "\n");
        fprintf(fc, "\n");
        cJSON_AddItemToArray(systems, js);
    }
    int bad = ferror(fm) || ferror(fc);
    bad |= fclose(fm) != 0;
    bad |= fclose(fc) != 0;
    char json[PATH_CAP];
    snprintf(json, sizeof json, "%s/compare.json", out);
    int rc = bad ? slex_fail_as(err, SLEX_ERR_IO, "%s: write failed (disk full?)", md) : slex_write_json(json, doc, err);
    cJSON_Delete(doc);
    return rc;
}

/* pnmi.png: mean PNMI per system (bars) and language (clusters). */
static int plot_pnmi(const table *t, const char *out, slex_error *err) {
    int pnmi = 0, n_langs = 0;
    const char *langs[64];
    int lang_col[64];
    for (int c = 0; c < t->n_cols && n_langs < 64; c++)
        if (t->cols[c].metric == pnmi) {
            langs[n_langs] = t->cols[c].lang;
            lang_col[n_langs++] = c;
        }
    if (!n_langs) return 0;
    double *v = malloc((size_t)t->n_rows * (size_t)n_langs * sizeof *v);
    const char **names = malloc((size_t)t->n_rows * sizeof *names);
    if (!v || !names) {
        free(v);
        free(names);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    }
    for (int r = 0; r < t->n_rows; r++) {
        names[r] = t->rows[r].name;
        for (int l = 0; l < n_langs; l++) {
            double mean, sd;
            int count;
            mean_sd(t->cell + ((int64_t)r * t->n_cols + lang_col[l]) * t->max_seeds, t->rows[r].n_dirs, &mean, &sd,
                    &count);
            v[r * n_langs + l] = mean;
        }
    }
    int rc = slex_plot_bars(out, "pnmi", "PNMI per system and language", "PNMI", names, t->n_rows, langs, n_langs, v,
                            err);
    free(v);
    free(names);
    return rc;
}

int slex_compare_runs(const char *const *runs, int n_runs, const char *out, slex_error *err) {
    if (n_runs == 0) return slex_fail_as(err, SLEX_ERR_INPUT, "compare: no run given");
    table t = {0};
    t.rows = calloc((size_t)n_runs, sizeof *t.rows);
    int *row_of = calloc((size_t)n_runs, sizeof *row_of), *seed_of = calloc((size_t)n_runs, sizeof *seed_of);
    enum { CAP = 4096 };
    flat_value *flat = malloc(CAP * sizeof *flat);
    int *flat_n = calloc((size_t)n_runs, sizeof *flat_n);
    flat_value **per_run = calloc((size_t)n_runs, sizeof *per_run);
    int rc = (!t.rows || !row_of || !seed_of || !flat || !flat_n || !per_run) ? slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory") : 0;
    /* Pass 1: systems, seeds and columns. */
    for (int i = 0; !rc && i < n_runs; i++) {
        char name[256];
        const char *dir;
        run_name(runs[i], name, sizeof name, &dir);
        int r = 0;
        while (r < t.n_rows && strcmp(t.rows[r].name, name)) r++;
        if (r == t.n_rows) snprintf(t.rows[t.n_rows++].name, sizeof t.rows[0].name, "%s", name);
        row_of[i] = r;
        seed_of[i] = t.rows[r].n_dirs++;
        if (t.rows[r].n_dirs > t.max_seeds) t.max_seeds = t.rows[r].n_dirs;
        int n = flatten_run(dir, flat, CAP, err);
        if (n < 0) {
            rc = -1;
            break;
        }
        per_run[i] = malloc((size_t)n * sizeof *per_run[i]);
        if (!per_run[i]) {
            rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
            break;
        }
        memcpy(per_run[i], flat, (size_t)n * sizeof *flat);
        flat_n[i] = n;
        for (int j = 0; !rc && j < n; j++)
            if (column_index(&t, flat[j].lang, flat[j].metric, err) < 0) rc = -1;
    }
    /* Columns: by language in first-appearance order, metrics in METRICS order within one. */
    if (!rc) {
        column *sorted = malloc((size_t)(t.n_cols ? t.n_cols : 1) * sizeof *sorted);
        if (!sorted) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        int n = 0;
        for (int c = 0; sorted && c < t.n_cols; c++) {
            int first = 1;
            for (int p = 0; p < c; p++) first &= strcmp(t.cols[p].lang, t.cols[c].lang) != 0;
            if (!first) continue;
            for (int m = 0; m < N_METRICS; m++)
                for (int q = c; q < t.n_cols; q++)
                    if (t.cols[q].metric == m && !strcmp(t.cols[q].lang, t.cols[c].lang)) sorted[n++] = t.cols[q];
        }
        if (sorted) {
            memcpy(t.cols, sorted, (size_t)n * sizeof *sorted);
            free(sorted);
        }
    }
    if (!rc) {
        size_t cells = (size_t)t.n_rows * (size_t)(t.n_cols ? t.n_cols : 1) * (size_t)t.max_seeds;
        t.cell = malloc(cells * sizeof *t.cell);
        if (!t.cell) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        for (size_t i = 0; t.cell && i < cells; i++) t.cell[i] = NAN;
    }
    /* Pass 2: values into cells. */
    for (int i = 0; !rc && i < n_runs; i++)
        for (int j = 0; j < flat_n[i]; j++) {
            int c = column_index(&t, per_run[i][j].lang, per_run[i][j].metric, err);
            t.cell[((int64_t)row_of[i] * t.n_cols + c) * t.max_seeds + seed_of[i]] = per_run[i][j].value;
        }
    if (!rc) rc = slex_mkdirs(out, err) || write_tables(&t, out, err) || plot_pnmi(&t, out, err);
    for (int i = 0; per_run && i < n_runs; i++) free(per_run[i]);
    free(per_run);
    free(flat_n);
    free(flat);
    free(row_of);
    free(seed_of);
    free(t.cols);
    free(t.rows);
    free(t.cell);
    return rc ? -1 : 0;
}

/* ---- training curves ------------------------------------------------------------------------ */

typedef struct series {
    char name[300];
    int group; /* 0 loss, 1 accuracy, 2 lr */
    double *y; /* per point of the merged x axis */
} series;

static int key_group(const char *key) {
    if (!strncmp(key, "loss", 4)) return 0;
    if (!strncmp(key, "acc", 3)) return 1;
    if (!strcmp(key, "lr")) return 2;
    return -1;
}

/* y[i] := the mean of the last `window` values of y[0..i] that are not NaN (NaN stays NaN).
 * Returns -1 when out of memory. */
static int trailing_mean(double *y, int64_t n, int window) {
    double *prefix = malloc((size_t)(n + 1) * sizeof *prefix); /* sums of the first k values */
    if (!prefix) return -1;
    prefix[0] = 0;
    for (int64_t i = 0, k = 0; i < n; i++) {
        if (isnan(y[i])) continue;
        prefix[k + 1] = prefix[k] + y[i];
        k++;
        int64_t first = k > window ? k - window : 0;
        y[i] = (prefix[k] - prefix[first]) / (double)(k - first);
    }
    free(prefix);
    return 0;
}

int slex_training_curves(const char *const *logs, int n_logs, int smooth, const char *out, slex_error *err) {
    /* All points of all logs on one x axis (the union of steps, in log order). */
    double *x = NULL;
    int64_t n = 0, cap = 0;
    series *s = NULL;
    int n_series = 0, cap_series = 0, rc = 0;
    for (int l = 0; !rc && l < n_logs; l++) {
        char *text = slex_read_text_file(logs[l], NULL, err);
        if (!text) {
            rc = -1;
            break;
        }
        int line = 0;
        for (char *p = text, *end; !rc && *p; p = end + (*end != 0)) {
            end = p + strcspn(p, "\n");
            char saved = *end;
            *end = 0;
            line++;
            cJSON *o = *p ? cJSON_Parse(p) : NULL;
            *end = saved;
            if (!*p) continue;
            const cJSON *step = cJSON_GetObjectItemCaseSensitive(o, "step");
            if (!cJSON_IsNumber(step)) {
                cJSON_Delete(o);
                rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s:%d: not a JSON object with a numeric \"step\"", logs[l], line);
                break;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                double *nx = realloc(x, (size_t)cap * sizeof *nx);
                if (!nx) {
                    cJSON_Delete(o);
                    rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
                    break;
                }
                x = nx;
                for (int i = 0; i < n_series; i++) {
                    double *ny = realloc(s[i].y, (size_t)cap * sizeof *ny);
                    if (!ny) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
                    else s[i].y = ny;
                }
                if (rc) {
                    cJSON_Delete(o);
                    break;
                }
            }
            x[n] = step->valuedouble;
            for (int i = 0; i < n_series; i++) s[i].y[n] = NAN;
            const cJSON *v;
            cJSON_ArrayForEach(v, o) {
                int g = key_group(v->string);
                if (g < 0 || !cJSON_IsNumber(v)) continue;
                char name[300];
                snprintf(name, sizeof name, n_logs > 1 ? "%2$s: %1$s" : "%s", v->string, logs[l]);
                int i = 0;
                while (i < n_series && strcmp(s[i].name, name)) i++;
                if (i == n_series) {
                    if (n_series == cap_series) {
                        cap_series = cap_series ? 2 * cap_series : 16;
                        series *ns = realloc(s, (size_t)cap_series * sizeof *ns);
                        if (!ns) {
                            rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
                            break;
                        }
                        s = ns;
                    }
                    snprintf(s[i].name, sizeof s[i].name, "%s", name);
                    s[i].group = g;
                    s[i].y = malloc((size_t)cap * sizeof *s[i].y);
                    if (!s[i].y) {
                        rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
                        break;
                    }
                    for (int64_t j = 0; j <= n; j++) s[i].y[j] = NAN;
                    n_series++;
                }
                s[i].y[n] = v->valuedouble;
            }
            cJSON_Delete(o);
            n++;
        }
        free(text);
    }
    if (!rc && n == 0) rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: no training log lines", n_logs ? logs[0] : "curves");
    if (!rc) rc = slex_mkdirs(out, err);
    static const char *const files[] = {"curves_loss", "curves_accuracy", "curves_lr"};
    static const char *const ylabels[] = {"loss", "accuracy", "learning rate"};
    for (int g = 0; !rc && g < 3; g++) {
        int m = 0;
        for (int i = 0; i < n_series; i++) m += s[i].group == g;
        if (!m) continue;
        const char **names = malloc((size_t)m * sizeof *names);
        double *y = malloc((size_t)m * (size_t)n * sizeof *y);
        if (!names || !y) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        for (int i = 0, c = 0; !rc && i < n_series; i++)
            if (s[i].group == g) {
                names[c] = s[i].name;
                memcpy(y + (int64_t)c * n, s[i].y, (size_t)n * sizeof *y);
                if (smooth > 1 && g < 2 && trailing_mean(y + (int64_t)c * n, n, smooth))
                    rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
                c++;
            }
        if (!rc) rc = slex_plot_curves(out, files[g], "training", "step", ylabels[g], x, n, names, m, y, err);
        free(names);
        free(y);
    }
    for (int i = 0; i < n_series; i++) free(s[i].y);
    free(s);
    free(x);
    return rc ? -1 : 0;
}
