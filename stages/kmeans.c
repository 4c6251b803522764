/* slex-kmeans: learn a codebook over the frames of one or more feature stores (mini-batch
 * k-means with sklearn MiniBatchKMeans semantics, exact reductions over MPI ranks, resumable
 * checkpoints). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/codebook.h"
#include "cluster/featpool.h"
#include "core/fileio.h"
#include "cluster/kmeans.h"
#include "core/log.h"
#include "core/mpi_util.h"
#include "core/options.h"
#include "core/paths.h"

typedef struct kmeans_stage_options {
    slex_string_list stores; /* DIR[:WEIGHT], repeatable (required) */
    char *out;               /* codebook .h5 (required) */
    char *export_npy;        /* also write the centres as .npy */
    double percent;          /* 1.0: fraction of utterances sampled per shard */
    int final_inertia;       /* 1: mean squared distance over the whole pool at the end */
    int cache_mb;            /* 2048: per-rank memory for frames kept in RAM */
    int force;
} kmeans_stage_options;

#define T kmeans_stage_options
static const slex_option stage_rows[] = {
    {SLEX_OPT_LIST_FIELD(T, stores), .name = "store", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "feature store, DIR or DIR:WEIGHT (weights: each store's share of the pooled sample)"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "codebook file (.h5)"},
    {SLEX_OPT_DOUBLE_FIELD(T, percent), .name = "percent", .flags = SLEX_OPTF_ABOVE_MIN, .def = 1, .min = 0, .max = 1,
     .param = "percent", .help = "fraction of utterances sampled per shard (fairseq --percent)"},
    {SLEX_OPT_INT_FIELD(T, final_inertia), .name = "final-inertia", .def = 1, .min = 0, .max = 1,
     .help = "1 = compute the mean inertia over all frames at the end"},
    {SLEX_OPT_INT_FIELD(T, cache_mb), .name = "cache-mb", .def = 2048, .min = 0, .max = INT_MAX,
     .help = "per-rank memory for frames kept in RAM (the rest is read on demand)"},
    {SLEX_OPT_STRING_FIELD(T, export_npy), .name = "export-npy", .flags = SLEX_OPTF_PATH,
     .help = "also write the centres as .npy (fairseq users)"},
    {SLEX_OPT_FLAG_FIELD(T, force), .name = "force", .help = "ignore a checkpoint and replace an existing codebook"},
};
#undef T
static const slex_option_table stage_table = SLEX_OPTION_TABLE(stage_rows);

static int pool_fetch(void *ctx, const int64_t *frames, int64_t n, float *out, slex_error *err) {
    return slex_featpool_fetch(ctx, frames, n, out, err);
}

/* ---- Checkpoints ----
 * OUT.ckpt.json   the parameters of the run, written once when a run starts afresh (after any
 *                 older checkpoint was deleted), so every state beside it belongs to them;
 * OUT.ckpt.history  the inertia history, appended (step, EWA inertia, batch inertia as doubles);
 * OUT.ckpt        the k-means state (kmeans.h), saved after the history record it follows. */

typedef struct run_ctx {
    const char *ckpt, *ckpt_json, *ckpt_history;
    const char *params; /* JSON of everything that determines the result */
    double *history;    /* (n, 3): step, EWA inertia, last batch inertia */
    int64_t n_history, cap_history, n_saved; /* n_saved: records already in the history file */
    int rank;
    double started, last_report, report_every; /* seconds (SLEX_PROGRESS_INTERVAL, default 30) */
    double last_pass;                          /* when the last checkpoint call came */
    int logged_pass;                           /* Lloyd pass last reported */
} run_ctx;

static int push_history(run_ctx *r, const double record[3]) {
    if (r->n_history == r->cap_history) {
        int64_t cap = r->cap_history ? 2 * r->cap_history : 64;
        double *grown = realloc(r->history, (size_t)cap * 3 * sizeof *grown);
        if (!grown) return -1;
        r->history = grown;
        r->cap_history = cap;
    }
    memcpy(r->history + 3 * r->n_history++, record, 3 * sizeof *record);
    return 0;
}

static int add_history(run_ctx *r, const slex_kmeans_state *st) {
    if (st->phase == SLEX_KMEANS_PHASE_INIT) return 0;
    if (r->n_history && r->history[3 * (r->n_history - 1)] == (double)st->step) return 0;
    double record[3] = {(double)st->step, st->has_ewa ? st->ewa_inertia : NAN, st->last_inertia};
    return push_history(r, record);
}

/* Appends the records not yet in the history file (raw doubles: restored bit for bit). */
static int append_history(run_ctx *r, slex_error *err) {
    if (r->n_saved == r->n_history) return 0;
    FILE *f = fopen(r->ckpt_history, "ab");
    if (!f) return slex_fail(err, "%s: cannot open: %s", r->ckpt_history, strerror(errno));
    size_t n = (size_t)(r->n_history - r->n_saved) * 3;
    int bad = fwrite(r->history + 3 * r->n_saved, sizeof(double), n, f) != n || fflush(f) || fsync(fileno(f));
    bad |= fclose(f) != 0;
    if (bad) return slex_fail(err, "%s: write failed (disk full?)", r->ckpt_history);
    r->n_saved = r->n_history;
    return 0;
}

/* A fresh run: the old checkpoint goes first, then the parameters are recorded. */
static int start_checkpoints(run_ctx *r, slex_error *err) {
    unlink(r->ckpt);
    unlink(r->ckpt_history);
    return slex_write_file_atomic(r->ckpt_json, r->params, strlen(r->params), err);
}

/* 1 when OUT.ckpt exists for exactly these parameters and was loaded into st with its history
 * (records after the state's step, from a kill between the two writes, are dropped). */
static int resume_checkpoint(run_ctx *r, slex_kmeans_state *st, slex_error *err) {
    if (!slex_path_exists(r->ckpt) || !slex_path_exists(r->ckpt_json)) return 0;
    char *params = slex_read_text_file(r->ckpt_json, NULL, err);
    int same = params && !strcmp(params, r->params);
    free(params);
    if (!same || slex_kmeans_state_load(st, r->ckpt, err)) return 0;
    FILE *f = fopen(r->ckpt_history, "rb");
    double record[3];
    while (f && fread(record, sizeof(double), 3, f) == 3 && record[0] <= (double)st->step)
        if (push_history(r, record)) break;
    if (f) fclose(f);
    r->n_saved = r->n_history;
    if (truncate(r->ckpt_history, (off_t)(r->n_history * 3 * (int64_t)sizeof(double))) && errno != ENOENT)
        return slex_fail(err, "%s: cannot truncate: %s", r->ckpt_history, strerror(errno)), 0;
    return 1;
}

static int on_checkpoint(void *ctx, const slex_kmeans_state *st, slex_error *err) {
    run_ctx *r = ctx;
    if (add_history(r, st)) return slex_fail(err, "out of memory");
    int saved = r->rank != 0 || (!append_history(r, err) && !slex_kmeans_state_save(st, r->ckpt, err));
    /* Every rank leaves the fit together, or none does (they are inside collective steps). */
    if (!slex_mpi_all_ok(saved)) return -1;
    if (r->rank == 0) {
        double now = MPI_Wtime();
        if (st->phase == SLEX_KMEANS_PHASE_MINIBATCH && st->step > 0 && now - r->last_report >= r->report_every) {
            r->last_report = now;
            double t = now - r->started, frac = (double)st->step / (double)st->n_steps;
            slex_info("step %lld/%lld (%.1f%%), smoothed inertia %.6g, %.1f steps/s, ETA %.0fs", (long long)st->step,
                      (long long)st->n_steps, 100 * frac, st->ewa_inertia, (double)st->step / t,
                      t * (1 - frac) / frac);
        }
        if ((st->phase == SLEX_KMEANS_PHASE_LLOYD || st->phase == SLEX_KMEANS_PHASE_DONE) && st->lloyd_pass > 0 &&
            st->lloyd_pass != r->logged_pass) {
            r->logged_pass = st->lloyd_pass;
            slex_info("Lloyd pass %d/%d: mean inertia %.6g, %.1f%% of the distances computed, %.2fs",
                      st->lloyd_pass, st->opts.lloyd_passes, st->last_inertia, 100 * st->last_computed_fraction,
                      now - r->last_pass);
        }
        r->last_pass = now;
    }
    return 0;
}

static char *run_params(const slex_kmeans_options *ko, const kmeans_stage_options *o, const char *pool) {
    cJSON *p = cJSON_CreateObject();
    char *text = NULL;
    if (p && !slex_options_write_json(&slex_kmeans_option_table, ko, p) && !slex_options_write_json(&stage_table, o, p) &&
        cJSON_AddItemToObject(p, "stores", cJSON_Parse(pool)))
        text = cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    return text;
}

/* "DIR" or "DIR:WEIGHT" (a colon followed by a number; other colons belong to the path). */
/* The codebook (and its checkpoint, and --export-npy) must be apart from every input store. */
static int check_apart(const kmeans_stage_options *o, char (*dirs)[4096], slex_error *err) {
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", o->out);
    slex_path_role outputs[3] = {{"--out", o->out}, {"--out (its checkpoint)", ckpt}, {"--export-npy", o->export_npy}};
    slex_path_role *inputs = calloc((size_t)o->stores.count, sizeof *inputs);
    if (!inputs) return slex_fail(err, "out of memory");
    for (int i = 0; i < o->stores.count; i++) inputs[i] = (slex_path_role){.option = "--store", .path = dirs[i]};
    int rc = slex_paths_check_apart(outputs, 3, inputs, o->stores.count, err);
    free(inputs);
    return rc;
}

static int parse_store(const char *arg, char *dir, size_t size, double *weight, slex_error *err) {
    snprintf(dir, size, "%s", arg);
    *weight = 0;
    char *colon = strrchr(dir, ':');
    if (!colon) return 0;
    char *end;
    double w = strtod(colon + 1, &end);
    if (end == colon + 1 || *end) return 0;
    if (!(w > 0) || !isfinite(w)) return slex_fail(err, "command line: --store %s: the weight must be a positive number", arg);
    *colon = '\0';
    *weight = w;
    return 0;
}

static const char *stop_reason_name(int reason) {
    return reason == 1 ? "no_improvement" : reason == 2 ? "tol" : "max_iter";
}

/* Runs (or resumes) the fit and writes the codebook; every rank calls it. */
static int learn(slex_featpool *pool, const slex_kmeans_options *ko, const kmeans_stage_options *o, const slex_mpi *mpi,
                 const char *params, slex_error *err) {
    char ckpt[4200], ckpt_json[4300], ckpt_history[4300];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", o->out);
    snprintf(ckpt_json, sizeof ckpt_json, "%s.ckpt.json", o->out);
    snprintf(ckpt_history, sizeof ckpt_history, "%s.ckpt.history", o->out);
    const char *interval = getenv("SLEX_PROGRESS_INTERVAL");
    run_ctx r = {ckpt, ckpt_json, ckpt_history, params, NULL, 0, 0, 0, mpi->rank, MPI_Wtime(), MPI_Wtime(),
                 interval ? atof(interval) : 30.0, MPI_Wtime(), 0};
    slex_kmeans_state st;
    memset(&st, 0, sizeof st);
    /* Every rank reads the same checkpoint, so they resume together (or all start afresh). */
    int resumed = !o->force && resume_checkpoint(&r, &st, err) && st.k == ko->k &&
                  st.dim == slex_featpool_dim(pool) && st.n_frames == slex_featpool_size(pool);
    resumed = slex_mpi_all_ok(resumed);
    if (resumed) {
        if (mpi->rank == 0) slex_info("resuming from %s (step %lld of %lld)", ckpt, (long long)st.step, (long long)st.n_steps);
    } else {
        free(r.history);
        r.history = NULL;
        r.n_history = r.cap_history = r.n_saved = 0;
        slex_kmeans_state_free(&st);
        memset(&st, 0, sizeof st);
        int ok = slex_kmeans_state_init(&st, ko, slex_featpool_size(pool), slex_featpool_dim(pool), err) == 0;
        if (ok && mpi->rank == 0) ok = start_checkpoints(&r, err) == 0;
        if (!slex_mpi_all_ok(ok)) {
            slex_kmeans_state_free(&st);
            return -1;
        }
    }
    slex_kmeans_source src = {pool, slex_featpool_size(pool), slex_featpool_dim(pool), pool_fetch};
    slex_exact_comm comm = slex_mpi_exact_comm();
    int rc = slex_kmeans_fit(&st, &src, &comm, on_checkpoint, &r, err);
    double final_inertia = NAN;
    if (!rc && o->final_inertia) {
        rc = slex_kmeans_inertia(st.centers, st.k, st.dim, &src, &comm, 65536, &final_inertia, err);
        final_inertia /= (double)slex_featpool_size(pool);
    }
    if (!rc && mpi->rank == 0) {
        slex_codebook cb = {st.k, st.dim, st.centers, st.counts, r.history, r.n_history, slex_featpool_frame_rate(pool),
                            st.init_inertia, final_inertia, st.step, (char *)stop_reason_name(st.stop_reason),
                            (char *)params};
        rc = slex_codebook_write(o->out, &cb, err);
        if (!rc && o->export_npy) rc = slex_codebook_export_npy(o->export_npy, &cb, err);
        if (!rc) {
            unlink(ckpt);
            unlink(ckpt_history);
            unlink(ckpt_json);
            slex_info("%s: K=%d, D=%d after %lld steps (%s), %d Lloyd passes; mean inertia %.6g", o->out, st.k, st.dim,
                      (long long)st.step, stop_reason_name(st.stop_reason), st.lloyd_pass, final_inertia);
        }
    }
    slex_kmeans_state_free(&st);
    free(r.history);
    return rc;
}

/* 1 when out already holds the codebook of exactly these parameters. */
static int already_done(const char *out, const char *params) {
    if (!slex_path_exists(out)) return 0;
    slex_codebook cb;
    if (slex_codebook_read(out, &cb, NULL)) return 0;
    int same = cb.params && !strcmp(cb.params, params);
    slex_codebook_free(&cb);
    return same;
}

enum { DECIDE_RUN = -1, DECIDE_DONE = -2 };

/* Rank 0 looks at the output (ranks could see a shared file system differently) and every rank
 * follows: DECIDE_RUN, DECIDE_DONE (the codebook of these parameters exists; its .npy is
 * written if asked), or an exit code. */
static int decide(const kmeans_stage_options *o, const char *params, const slex_mpi *mpi, slex_error *err) {
    int verdict = DECIDE_RUN;
    if (mpi->rank == 0) {
        if (!o->force && already_done(o->out, params)) {
            slex_info("%s is already the codebook of these inputs and parameters: nothing to do", o->out);
            verdict = DECIDE_DONE;
            slex_codebook cb;
            if (o->export_npy && slex_codebook_read(o->out, &cb, err)) verdict = 1;
            else if (o->export_npy) {
                if (slex_mkdirs_for_file(o->export_npy, err) || slex_codebook_export_npy(o->export_npy, &cb, err))
                    verdict = 1;
                slex_codebook_free(&cb);
            }
        } else if (!o->force && slex_path_exists(o->out)) {
            slex_fail(err, "%s exists and was made from other inputs or parameters: use --force to replace it", o->out);
            verdict = 1;
        } else if (slex_mkdirs_for_file(o->out, err) || (o->export_npy && slex_mkdirs_for_file(o->export_npy, err))) {
            verdict = 1;
        }
    }
    MPI_Bcast(&verdict, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return verdict;
}

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    slex_log_init("kmeans", mpi.rank, mpi.size);
    slex_log_level_from_env();
    slex_kmeans_options ko;
    slex_kmeans_options_default(&ko);
    kmeans_stage_options o;
    slex_options_defaults(&stage_table, &o);
    const slex_option_group groups[] = {{&stage_table, &o}, {&slex_kmeans_option_table, &ko}};
    slex_cli cli = {.program = "slex-kmeans",
                    .synopsis = "--store DIR[:WEIGHT] [--store ...] --k K --out CODEBOOK.h5 [options]",
                    .about = "Mini-batch k-means (sklearn MiniBatchKMeans semantics, fairseq's defaults) over pooled feature\n"
                             "stores, streamed with bounded memory, across MPI ranks with bit-identical results for any\n"
                             "rank count; checkpoints every few steps and resumes after a kill. Full-batch Lloyd passes\n"
                             "(--lloyd-passes) skip the distances that bounds prove useless; for the lowest inertia use\n"
                             "--init random --max-iter 0 --lloyd-passes 30 (docs/kmeans.md).",
                    .groups = groups,
                    .n_groups = (int)(sizeof groups / sizeof groups[0])};
    slex_error err = {{0}};
    int exit_code = 0;
    slex_parse_result parsed = slex_cli_parse(&cli, argc, argv, &err);
    /* The stores' weights are options too: checked before any store is opened. */
    slex_featpool_input *inputs = NULL;
    char (*dirs)[4096] = NULL;
    if (parsed == SLEX_PARSE_OK) {
        inputs = calloc((size_t)o.stores.count, sizeof *inputs);
        dirs = calloc((size_t)o.stores.count, sizeof *dirs);
        if (!inputs || !dirs) {
            slex_fail(&err, "out of memory");
            parsed = SLEX_PARSE_ERROR;
        }
        for (int i = 0; parsed == SLEX_PARSE_OK && i < o.stores.count; i++) {
            if (parse_store(o.stores.items[i], dirs[i], sizeof dirs[i], &inputs[i].weight, &err))
                parsed = SLEX_PARSE_ERROR;
            inputs[i].dir = dirs[i];
        }
    }
    slex_featpool *pool = NULL;
    char *pool_json = NULL, *params = NULL;
    if (parsed == SLEX_PARSE_HELP) {
        if (mpi.rank == 0) slex_cli_help(&cli, stdout);
    } else if (parsed == SLEX_PARSE_ERROR) {
        if (mpi.rank == 0) slex_error_log("%s", err.msg);
        exit_code = 2;
    } else {
        int ok = !check_apart(&o, dirs, &err) &&
                 (pool = slex_featpool_open(inputs, o.stores.count, o.percent, ko.seed, (int64_t)o.cache_mb << 20,
                                            &err)) != NULL;
        if (ok && ko.k > slex_featpool_size(pool))
            ok = !slex_fail(&err, "--k %d is more than the %lld frames of the pooled stores", ko.k,
                            (long long)slex_featpool_size(pool));
        if (ok) ok = (pool_json = slex_featpool_describe(pool)) && (params = run_params(&ko, &o, pool_json));
        ok = slex_mpi_all_ok(ok);
        if (!ok) {
            if (err.msg[0]) slex_error_log("%s", err.msg);
            exit_code = 1;
        } else if ((exit_code = decide(&o, params, &mpi, &err)) != DECIDE_RUN) {
            if (exit_code == DECIDE_DONE) exit_code = 0;
            else if (err.msg[0]) slex_error_log("%s", err.msg);
        } else {
            if (mpi.rank == 0)
                for (int i = 0; i < o.stores.count; i++)
                    slex_info("%s: %lld utterances, %lld frames selected", dirs[i],
                              (long long)slex_featpool_input_utterances(pool, i),
                              (long long)slex_featpool_input_frames(pool, i));
            int rc = learn(pool, &ko, &o, &mpi, params, &err);
            if (rc && err.msg[0]) slex_error_log("%s", err.msg);
            exit_code = slex_mpi_all_ok(rc == 0) ? 0 : 1;
        }
    }
    slex_featpool_close(pool);
    free(dirs);
    free(inputs);
    free(pool_json);
    free(params);
    slex_cli_free(&cli);
    slex_mpi_stop();
    return exit_code;
}
