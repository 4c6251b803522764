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
#include "run/resume.h"

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

/* ---- The run: checkpoints and resume through run/resume.h ----
 * History records: step, EWA inertia (NaN before the first), last batch inertia. */
enum { HISTORY_RECORD = 3 };

typedef struct run_ctx {
    slex_resume resume;
    int rank;
    double started, last_report, report_every; /* seconds (SLEX_PROGRESS_INTERVAL, default 30) */
    double last_pass;                          /* when the last checkpoint call came */
    int logged_pass;                           /* Lloyd pass last reported (or done before a resume) */
} run_ctx;

static int save_state(void *ctx, const char *path, slex_error *err) {
    return slex_kmeans_state_save(ctx, path, err);
}

static void report_progress(run_ctx *r, const slex_kmeans_state *st) {
    double now = MPI_Wtime();
    if (st->phase == SLEX_KMEANS_PHASE_MINIBATCH && st->step > 0 && now - r->last_report >= r->report_every) {
        r->last_report = now;
        double t = now - r->started, frac = (double)st->step / (double)st->n_steps;
        slex_info("step %lld/%lld (%.1f%%), smoothed inertia %.6g, %.1f steps/s, ETA %.0fs", (long long)st->step,
                  (long long)st->n_steps, 100 * frac, st->ewa_inertia, (double)st->step / t, t * (1 - frac) / frac);
    }
    /* Only the passes this process ran: a resumed state's earlier passes were reported by their run. */
    if ((st->phase == SLEX_KMEANS_PHASE_LLOYD || st->phase == SLEX_KMEANS_PHASE_DONE) && st->lloyd_pass > 0 &&
        st->lloyd_pass != r->logged_pass) {
        r->logged_pass = st->lloyd_pass;
        slex_info("Lloyd pass %d/%d: mean inertia %.6g, %.1f%% of the distances computed, %.2fs", st->lloyd_pass,
                  st->opts.lloyd_passes, st->last_inertia, 100 * st->last_computed_fraction, now - r->last_pass);
    }
    r->last_pass = now;
}

static int on_checkpoint(void *ctx, const slex_kmeans_state *st, slex_error *err) {
    run_ctx *r = ctx;
    if (st->phase != SLEX_KMEANS_PHASE_INIT) {
        const double record[HISTORY_RECORD] = {(double)st->step, st->has_ewa ? st->ewa_inertia : NAN,
                                               st->last_inertia};
        if (slex_resume_add_record(&r->resume, record, err)) return -1;
    }
    int saved = r->rank != 0 || !slex_resume_save(&r->resume, save_state, (void *)st, err);
    /* Every rank leaves the fit together, or none does (they are inside collective steps). */
    if (!slex_mpi_all_ok(saved)) return -1;
    if (r->rank == 0) report_progress(r, st);
    return 0;
}

/* The run's parameters: every option with a parameter key, then the pooled stores (pool: JSON,
 * slex_featpool_describe) unless pool is NULL.  Malloc'd; NULL when out of memory. */
static char *run_params(const slex_kmeans_options *ko, const kmeans_stage_options *o, const char *pool) {
    cJSON *p = cJSON_CreateObject();
    char *text = NULL;
    if (p && !slex_options_write_json(&slex_kmeans_option_table, ko, p) && !slex_options_write_json(&stage_table, o, p) &&
        (!pool || cJSON_AddItemToObject(p, "stores", cJSON_Parse(pool))))
        text = cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    return text;
}

/* The option part of run_params at every default: what a codebook or checkpoint recorded by an
 * older slex, before an option existed, stood for (slex_resume_open). */
static char *default_params(void) {
    slex_kmeans_options ko;
    kmeans_stage_options o;
    slex_kmeans_options_default(&ko);
    slex_options_defaults(&stage_table, &o);
    return run_params(&ko, &o, NULL);
}

/* "DIR" or "DIR:WEIGHT" (a colon followed by a number; other colons belong to the path). */
/* The codebook (and its checkpoint, and --export-npy) must be apart from every input store. */
static int check_apart(const kmeans_stage_options *o, char (*dirs)[4096], slex_error *err) {
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", o->out);
    slex_path_role outputs[3] = {{"--out", o->out}, {"--out (its checkpoint)", ckpt}, {"--export-npy", o->export_npy}};
    slex_path_role *inputs = calloc((size_t)o->stores.count, sizeof *inputs);
    if (!inputs) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
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
    if (!(w > 0) || !isfinite(w))
        return slex_fail_as(err, SLEX_ERR_INPUT, "command line: --store %s: the weight must be a positive number", arg);
    *colon = '\0';
    *weight = w;
    return 0;
}

/* Every rank reads the same checkpoint, so they resume together (or all start afresh): 1 when
 * st holds the checkpoint of these parameters and data, with its history. */
static int resume_checkpoint(run_ctx *r, slex_kmeans_state *st, const slex_kmeans_options *ko, const slex_featpool *pool,
                             slex_error *err) {
    int ok = slex_resume_has_checkpoint(&r->resume) && !slex_kmeans_state_load(st, r->resume.ckpt, err) &&
             !slex_resume_load_history(&r->resume, (double)st->step, err) && st->k == ko->k &&
             st->dim == slex_featpool_dim(pool) && st->n_frames == slex_featpool_size(pool);
    st->opts.bounds_mb = ko->bounds_mb; /* not saved (SLEX_OPTF_NOT_SAVED): this run's budget */
    return slex_mpi_all_ok(ok);
}

/* A fresh state (every rank) and checkpoint record (rank 0). */
static int start_afresh(run_ctx *r, slex_kmeans_state *st, const slex_kmeans_options *ko, const slex_featpool *pool,
                        slex_error *err) {
    slex_kmeans_state_free(st);
    memset(st, 0, sizeof *st);
    int ok = slex_kmeans_state_init(st, ko, slex_featpool_size(pool), slex_featpool_dim(pool), err) == 0;
    if (ok && r->rank == 0) ok = slex_resume_start(&r->resume, err) == 0;
    if (ok && r->rank != 0) r->resume.n_history = r->resume.n_saved = 0;
    return slex_mpi_all_ok(ok) ? 0 : -1;
}

/* Rank 0 writes the codebook (and the .npy) of a finished fit; then the checkpoint goes. */
static int write_codebook(run_ctx *r, const slex_kmeans_state *st, const slex_featpool *pool, const char *params,
                          double final_inertia, const kmeans_stage_options *o, slex_error *err) {
    const slex_codebook cb = {.k = st->k,
                              .dim = st->dim,
                              .centers = st->centers,
                              .counts = st->counts,
                              .history = r->resume.history,
                              .n_history = r->resume.n_history,
                              .frame_rate_hz = slex_featpool_frame_rate(pool),
                              .init_inertia = st->init_inertia,
                              .final_inertia = final_inertia,
                              .steps = st->step,
                              .stop_reason = (char *)slex_kmeans_stop_name(st->stop_reason),
                              .params = (char *)params};
    if (slex_codebook_write(o->out, &cb, err) || (o->export_npy && slex_codebook_export_npy(o->export_npy, &cb, err)))
        return -1;
    slex_resume_finish(&r->resume);
    slex_info("%s: K=%d, D=%d after %lld steps (%s), %d Lloyd passes; mean inertia %.6g", o->out, st->k, st->dim,
              (long long)st->step, slex_kmeans_stop_name(st->stop_reason), st->lloyd_pass, final_inertia);
    return 0;
}

/* The pooled stores (every rank opens them) and the parameters of the run. */
typedef struct kmeans_inputs {
    slex_featpool *pool;
    char *pool_json, *params, *defaults; /* defaults: default_params() */
} kmeans_inputs;

/* Runs (or resumes) the fit and writes the codebook; every rank calls it. */
static int learn(const kmeans_inputs *in, const slex_kmeans_options *ko, const kmeans_stage_options *o,
                 const slex_mpi *mpi, slex_error *err) {
    slex_featpool *pool = in->pool;
    const char *params = in->params;
    const char *interval = getenv("SLEX_PROGRESS_INTERVAL");
    const double now = MPI_Wtime();
    run_ctx r = {.rank = mpi->rank,
                 .started = now,
                 .last_report = now,
                 .report_every = interval ? atof(interval) : 30.0,
                 .last_pass = now};
    if (slex_resume_open(&r.resume, o->out, params, in->defaults, HISTORY_RECORD, err)) return -1;
    slex_kmeans_state st;
    memset(&st, 0, sizeof st);
    int rc = 0;
    if (!o->force && resume_checkpoint(&r, &st, ko, pool, err)) {
        if (mpi->rank == 0)
            slex_info("resuming from %s (step %lld of %lld)", r.resume.ckpt, (long long)st.step, (long long)st.n_steps);
        r.logged_pass = st.lloyd_pass;
    } else {
        slex_error_clear(err); /* an unusable checkpoint is not this run's failure */
        rc = start_afresh(&r, &st, ko, pool, err);
    }
    const slex_kmeans_source src = {.ctx = pool,
                                    .n_frames = slex_featpool_size(pool),
                                    .dim = slex_featpool_dim(pool),
                                    .fetch = pool_fetch};
    const slex_exact_comm comm = slex_mpi_exact_comm();
    if (!rc) rc = slex_kmeans_fit(&st, &src, &comm, on_checkpoint, &r, err);
    double final_inertia = NAN;
    if (!rc && o->final_inertia) {
        rc = slex_kmeans_inertia(st.centers, st.k, st.dim, &src, &comm, 65536, &final_inertia, err);
        final_inertia /= (double)slex_featpool_size(pool);
    }
    if (!rc && mpi->rank == 0) rc = write_codebook(&r, &st, pool, params, final_inertia, o, err);
    slex_kmeans_state_free(&st);
    slex_resume_close(&r.resume);
    return rc;
}

static char *codebook_params(const char *out, void *ctx) {
    (void)ctx;
    slex_codebook cb;
    if (slex_codebook_read(out, &cb, NULL)) return NULL;
    char *params = cb.params;
    cb.params = NULL;
    slex_codebook_free(&cb);
    return params;
}

/* The error for an existing codebook of other parameters: the store whose contents changed, or
 * the first parameter that differs. */
static void explain_other(const char *out, const char *recorded, const char *params, const kmeans_stage_options *o,
                          slex_error *err) {
    char what[1024], path[1024];
    int store = -1;
    slex_resume_difference(recorded, params, what, path, sizeof what);
    if (sscanf(path, "stores[%d].content_id", &store) == 1 && store >= 0 && store < o->stores.count)
        slex_fail_as(err, SLEX_ERR_INPUT, "%s was made from other contents of the store %s (content id %s; the features were redone "
                       "since): use --force to redo it",
                  out, o->stores.items[store], strstr(what, ": ") + 2);
    else
        slex_fail_as(err, SLEX_ERR_INPUT, "%s exists and was made from other inputs or parameters (%s): use --force to replace it", out,
                  what);
}

enum { DECIDE_RUN = -1, DECIDE_DONE = -2 };

/* The codebook of these parameters exists: its .npy is written if asked.  0 or an exit code. */
static int export_existing(const kmeans_stage_options *o, slex_error *err) {
    slex_codebook cb;
    if (!o->export_npy) return 0;
    if (slex_codebook_read(o->out, &cb, err)) return 1;
    int rc = slex_mkdirs_for_file(o->export_npy, err) || slex_codebook_export_npy(o->export_npy, &cb, err);
    slex_codebook_free(&cb);
    return rc ? 1 : 0;
}

/* Rank 0 looks at the output (ranks could see a shared file system differently) and every rank
 * follows: DECIDE_RUN, DECIDE_DONE (the codebook of these parameters exists; its .npy is
 * written if asked), or an exit code. */
static int decide(const kmeans_stage_options *o, const kmeans_inputs *in, const slex_mpi *mpi, slex_error *err) {
    const char *params = in->params;
    int verdict = DECIDE_RUN;
    if (mpi->rank == 0) {
        slex_resume r;
        char *recorded = NULL;
        slex_resume_output state = SLEX_RESUME_ABSENT;
        if (slex_resume_open(&r, o->out, params, in->defaults, HISTORY_RECORD, err)) {
            verdict = 1;
        } else {
            state = o->force ? SLEX_RESUME_ABSENT : slex_resume_output_state(&r, codebook_params, NULL, &recorded);
            slex_resume_close(&r);
        }
        if (verdict != DECIDE_RUN) {
        } else if (state == SLEX_RESUME_DONE) {
            slex_info("%s is already the codebook of these inputs and parameters: nothing to do", o->out);
            verdict = export_existing(o, err);
            if (!verdict) verdict = DECIDE_DONE;
        } else if (state == SLEX_RESUME_OTHER) {
            explain_other(o->out, recorded, params, o, err);
            verdict = 1;
        } else if (slex_mkdirs_for_file(o->out, err) || (o->export_npy && slex_mkdirs_for_file(o->export_npy, err))) {
            verdict = 1;
        }
        free(recorded);
    }
    MPI_Bcast(&verdict, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return verdict;
}

/* The command line: the stage's options (o), the algorithm's (ko), and the stores with their
 * weights (a bad weight is a bad command line, found before any store is opened). */
typedef struct kmeans_command_line {
    slex_kmeans_options ko;
    kmeans_stage_options o;
    slex_option_group groups[2];
    slex_cli cli;
    slex_featpool_input *inputs; /* (o.stores.count) */
    char (*dirs)[4096];          /* the stores' directories, without weights */
} kmeans_command_line;

/* Returns -1 to go on, or an exit code (0 after --help, 2 for a bad command line). */
static int parse_command_line(int argc, char **argv, const slex_mpi *mpi, kmeans_command_line *c) {
    *c = (kmeans_command_line){.groups = {{&stage_table, &c->o}, {&slex_kmeans_option_table, &c->ko}}};
    slex_kmeans_options_default(&c->ko);
    slex_options_defaults(&stage_table, &c->o);
    c->cli = (slex_cli){.program = "slex-kmeans",
                        .synopsis = "--store DIR[:WEIGHT] [--store ...] --k K --out CODEBOOK.h5 [options]",
                        .about = "Mini-batch k-means (sklearn MiniBatchKMeans semantics, fairseq's defaults) over pooled feature\n"
                                 "stores, streamed with bounded memory, across MPI ranks with bit-identical results for any\n"
                                 "rank count; checkpoints every few steps and resumes after a kill. Full-batch Lloyd passes\n"
                                 "(--lloyd-passes) skip the distances that bounds prove useless; for the lowest inertia use\n"
                                 "--init random --max-iter 0 --lloyd-passes 30 (docs/kmeans.md).",
                        .groups = c->groups,
                        .n_groups = 2};
    slex_error err = {{0}};
    slex_parse_result parsed = slex_cli_parse(&c->cli, argc, argv, &err);
    if (parsed == SLEX_PARSE_OK) {
        const int n = c->o.stores.count;
        c->inputs = calloc((size_t)n, sizeof *c->inputs);
        c->dirs = calloc((size_t)n, sizeof *c->dirs);
        if (!c->inputs || !c->dirs) {
            slex_fail_as(&err, SLEX_ERR_RESOURCE, "out of memory");
            parsed = SLEX_PARSE_ERROR;
        }
        for (int i = 0; parsed == SLEX_PARSE_OK && i < n; i++) {
            if (parse_store(c->o.stores.items[i], c->dirs[i], sizeof c->dirs[i], &c->inputs[i].weight, &err))
                parsed = SLEX_PARSE_ERROR;
            c->inputs[i].dir = c->dirs[i];
        }
    }
    if (parsed == SLEX_PARSE_HELP) {
        if (mpi->rank == 0) slex_cli_help(&c->cli, stdout);
        return 0;
    }
    if (parsed == SLEX_PARSE_ERROR) {
        if (mpi->rank == 0) slex_error_log("%s", err.msg);
        return slex_cli_exit_code(&c->cli, &err);
    }
    return -1;
}

static void command_line_free(kmeans_command_line *c) {
    free(c->inputs);
    free(c->dirs);
    slex_cli_free(&c->cli);
}

static void inputs_free(kmeans_inputs *in) {
    slex_featpool_close(in->pool);
    free(in->pool_json);
    free(in->params);
    free(in->defaults);
    memset(in, 0, sizeof *in);
}

static int open_inputs(const kmeans_command_line *c, kmeans_inputs *in, slex_error *err) {
    const slex_kmeans_options *ko = &c->ko;
    const kmeans_stage_options *o = &c->o;
    memset(in, 0, sizeof *in);
    int ok = !check_apart(o, c->dirs, err) &&
             (in->pool = slex_featpool_open(c->inputs, o->stores.count, o->percent, ko->seed,
                                            (int64_t)o->cache_mb << 20, err)) != NULL;
    if (ok && ko->k > slex_featpool_size(in->pool))
        ok = !slex_fail_as(err, SLEX_ERR_INPUT, "--k %d is more than the %lld frames of the pooled stores", ko->k,
                        (long long)slex_featpool_size(in->pool));
    if (ok) ok = (in->pool_json = slex_featpool_describe(in->pool)) && (in->params = run_params(ko, o, in->pool_json)) &&
             (in->defaults = default_params());
    return slex_mpi_all_ok(ok) ? 0 : -1;
}

/* Opens the inputs, decides, learns: the exit code (1 for a failure described in err). */
static int run_stage(const kmeans_command_line *c, const slex_mpi *mpi, slex_error *err) {
    const slex_kmeans_options *ko = &c->ko;
    const kmeans_stage_options *o = &c->o;
    kmeans_inputs in;
    int exit_code = 1;
    if (open_inputs(c, &in, err)) {
        if (err->msg[0]) slex_error_log("%s", err->msg);
    } else if ((exit_code = decide(o, &in, mpi, err)) != DECIDE_RUN) {
        if (exit_code == DECIDE_DONE) exit_code = 0;
        else if (err->msg[0]) slex_error_log("%s", err->msg);
    } else {
        if (mpi->rank == 0)
            for (int i = 0; i < o->stores.count; i++)
                slex_info("%s: %lld utterances, %lld frames selected", c->dirs[i],
                          (long long)slex_featpool_input_utterances(in.pool, i),
                          (long long)slex_featpool_input_frames(in.pool, i));
        int rc = learn(&in, ko, o, mpi, err);
        if (rc && err->msg[0]) slex_error_log("%s", err->msg);
        exit_code = slex_mpi_all_ok(rc == 0) ? 0 : 1;
    }
    inputs_free(&in);
    return exit_code;
}

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    slex_log_init("kmeans", mpi.rank, mpi.size);
    slex_log_level_from_env();
    kmeans_command_line c;
    slex_error err = {{0}};
    int exit_code = parse_command_line(argc, argv, &mpi, &c);
    if (exit_code < 0) exit_code = run_stage(&c, &mpi, &err);
    command_line_free(&c);
    exit_code = slex_mpi_exit_code(exit_code, &err); /* 1 by the error's kind (4, 5, 6), agreed by the ranks */
    slex_mpi_stop();
    return exit_code;
}
