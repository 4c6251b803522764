/* slex-label: feature store + codebook -> label store (the nearest centre of every frame), and
 * fairseq's {split}.km + dict.km.txt + the matching manifest. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/codebook.h"
#include "core/fileio.h"
#include "cluster/assign.h"
#include "core/lock.h"
#include "core/log.h"
#include "corpus/manifest.h"
#include "core/mpi_util.h"
#include "core/options.h"
#include "core/paths.h"
#include "run/stagerun.h"
#include "store/store.h"

typedef struct label_options {
    char *store;    /* feature store (required) */
    char *codebook; /* slex-kmeans output (required) */
    char *out;      /* label store (required) */
    char *km;       /* directory for fairseq's {split}.km, dict.km.txt, {split}.tsv (optional) */
    char *split;    /* "train" */
    int shard;      /* -1 */
    int force;
} label_options;

#define T label_options
static const slex_option label_rows[] = {
    {SLEX_OPT_STRING_FIELD(T, store), .name = "store", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "feature store to label"},
    {SLEX_OPT_STRING_FIELD(T, codebook), .name = "codebook", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "codebook written by slex-kmeans (.h5)"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "output label store (int32 unit per frame, same shards and utterances)"},
    {SLEX_OPT_STRING_FIELD(T, km), .name = "km", .flags = SLEX_OPTF_PATH,
     .help = "also write fairseq's {split}.km, dict.km.txt and {split}.tsv here"},
    {SLEX_OPT_STRING_FIELD(T, split), .name = "split", .flags = SLEX_OPTF_PATH, .def_text = "train",
     .help = "fairseq split name for --km"},
    {SLEX_OPT_INT_FIELD(T, shard), .name = "shard", .def = -1, .min = -1, .max = INT_MAX,
     .help = "do only this shard (-1 = all; default from SLURM_ARRAY_TASK_ID/PBS_ARRAY_INDEX/PBS_ARRAYID)"},
    {SLEX_OPT_FLAG_FIELD(T, force), .name = "force",
     .help = "redo finished shards; replace a store made with other parameters"},
};
#undef T
static const slex_option_table label_table = SLEX_OPTION_TABLE(label_rows);

/* Rows assigned per sgemm pass (whole utterances; a longer utterance is one pass). */
#define LABEL_BLOCK_ROWS 65536

typedef struct label_job {
    const slex_store *feats;
    const slex_codebook *cb;
    float *x;      /* (rows, dim) */
    int32_t *labels;
    float *work;
    int64_t cap_rows;
} label_job;

static int64_t shard_size(void *ctx, int shard, int nshard, double *audio_seconds) {
    label_job *job = ctx;
    (void)nshard;
    *audio_seconds = (double)slex_store_shard_frames(job->feats, shard) / slex_store_frame_rate(job->feats);
    return slex_store_shard_utterances(job->feats, shard);
}

static int ensure_rows(label_job *job, int64_t rows, slex_error *err) {
    if (rows <= job->cap_rows) return 0;
    float *x = realloc(job->x, (size_t)rows * (size_t)job->cb->dim * sizeof *x);
    if (x) job->x = x;
    int32_t *labels = realloc(job->labels, (size_t)rows * sizeof *labels);
    if (labels) job->labels = labels;
    if (!x || !labels) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %lld rows", (long long)rows);
    job->cap_rows = rows;
    return 0;
}

/* Labels utterances [u0, u1) of an open shard, read as one block of rows. */
static int label_block(label_job *job, slex_store_shard *r, int shard, int64_t u0, int64_t u1, slex_store_writer *w,
                       slex_error *err) {
    const int64_t *off = slex_store_shard_offsets(r);
    int64_t rows = off[u1] - off[u0];
    int dim = job->cb->dim;
    if (ensure_rows(job, rows, err) || slex_store_shard_read_rows(r, off[u0], rows, job->x, err)) return -1;
    for (int64_t i = 0; i < rows * dim; i++)
        if (!isfinite(job->x[i])) {
            /* A damaged file is reported as such, not as the NaN its damage made. */
            if (slex_store_shard_verify(r, err)) return -1;
            int64_t row = off[u0] + i / dim, u = u0;
            while (off[u + 1] <= row) u++;
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s shard %d, utterance %s (frame %lld): NaN/Inf in the features",
                             slex_store_dir(job->feats), shard, slex_store_shard_utt_id(r, u),
                             (long long)(row - off[u]));
        }
    slex_assign_nearest(job->cb->centers, job->cb->k, dim, job->x, rows, job->labels, NULL, job->work);
    for (int64_t u = u0; u < u1; u++)
        if (slex_store_writer_append(w, slex_store_shard_utt_id(r, u), job->labels + (off[u] - off[u0]),
                                     off[u + 1] - off[u]))
            return slex_fail_as(err, slex_store_writer_error(w)->kind, "%s", slex_store_writer_error(w)->msg);
    return 0;
}

static int fill_shard(void *ctx, int shard, int nshard, slex_store_writer *w, slex_progress *progress,
                      slex_error *err) {
    label_job *job = ctx;
    (void)nshard;
    slex_store_shard *r = slex_store_shard_open(job->feats, shard, err);
    if (!r) return -1;
    const int64_t *off = slex_store_shard_offsets(r);
    int64_t n = slex_store_shard_num_utts(r);
    int rc = 0;
    for (int64_t u0 = 0; !rc && u0 < n;) {
        int64_t u1 = u0 + 1;
        while (u1 < n && off[u1 + 1] - off[u0] <= LABEL_BLOCK_ROWS) u1++;
        rc = label_block(job, r, shard, u0, u1, w, err);
        slex_progress_add(progress, u1 - u0, (double)(off[u1] - off[u0]) / slex_store_frame_rate(job->feats));
        u0 = u1;
    }
    /* The rows were checksummed as they streamed: nothing is committed from a damaged shard. */
    if (!rc) rc = slex_store_shard_verify(r, err);
    slex_store_shard_close(r);
    return rc;
}


/* fairseq's layout: {split}.km (one line of unit ids per utterance, shards in order),
 * dict.km.txt ("i 1" for every unit) and {split}.tsv (the manifest the lines match). */
static int write_km(const char *label_dir, const char *feature_dir, const label_options *o, int k, slex_error *err) {
    /* The temporaries of killed runs of this host (the labels are complete once this run is). */
    if (slex_mkdirs(o->km, err) || slex_sweep_dead_temporaries(o->km, err) < 0) return -1;
    char path[4200];
    slex_store *s = slex_store_open(label_dir, err);
    if (!s) return -1;
    snprintf(path, sizeof path, "%s/%s.km", o->km, o->split);
    slex_atomic out;
    int rc = slex_atomic_fopen(&out, path, err);
    FILE *f = out.f;
    int32_t *labels = NULL;
    int64_t cap = 0;
    for (int shard = 0; !rc && shard < slex_store_nshard(s); shard++) {
        slex_store_shard *r = slex_store_shard_open(s, shard, err);
        if (!r) {
            rc = -1;
            break;
        }
        const int64_t *off = slex_store_shard_offsets(r);
        for (int64_t u = 0; !rc && u < slex_store_shard_num_utts(r); u++) {
            int64_t n = off[u + 1] - off[u];
            if (n > cap) {
                int32_t *grown = realloc(labels, (size_t)n * sizeof *grown);
                if (!grown) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
                else labels = grown, cap = n;
            }
            if (!rc) rc = slex_store_shard_read_rows(r, off[u], n, labels, err);
            for (int64_t i = 0; !rc && i < n; i++) fprintf(f, i ? " %d" : "%d", labels[i]);
            if (!rc) fputc('\n', f);
        }
        if (!rc) rc = slex_store_shard_verify(r, err);
        slex_store_shard_close(r);
    }
    free(labels);
    slex_store_close(s);
    if (rc) slex_atomic_abandon(&out);
    if (rc || slex_atomic_commit(&out, err)) return -1;
    snprintf(path, sizeof path, "%s/dict.km.txt", o->km);
    if (slex_atomic_fopen(&out, path, err)) return -1;
    for (int i = 0; i < k; i++) fprintf(out.f, "%d 1\n", i);
    if (slex_atomic_commit(&out, err)) return -1;
    /* The feature store's manifest lists exactly its utterances, in order. */
    char src[4200];
    snprintf(src, sizeof src, "%s/manifest.tsv", feature_dir);
    snprintf(path, sizeof path, "%s/%s.tsv", o->km, o->split);
    if (!slex_path_exists(src)) {
        slex_warn("%s has no manifest.tsv: %s not written (give fairseq the manifest the store was made from)",
                  feature_dir, path);
        return 0;
    }
    return slex_manifest_copy(src, path, err); /* with its side file of extra columns */
}

static char *label_params(const char *codebook, const slex_store *feats, slex_error *err) {
    uint32_t crc;
    if (slex_file_crc32(codebook, &crc, NULL, err)) return NULL;
    char hex[16];
    snprintf(hex, sizeof hex, "%08x", crc);
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "labels", "nearest centre (squared Euclidean)");
    cJSON_AddStringToObject(p, "codebook_crc32", hex);
    cJSON_AddStringToObject(p, "features_fingerprint", slex_store_fingerprint(feats));
    cJSON_AddStringToObject(p, "features_content_id", slex_store_content_id(feats));
    char *text = cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    return text;
}

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    slex_log_init("label", mpi.rank, mpi.size);
    slex_log_level_from_env();
    label_options o;
    slex_options_defaults(&label_table, &o);
    const slex_option_group groups[] = {{&label_table, &o}};
    slex_cli cli = {.program = "slex-label",
                    .synopsis = "--store STORE --codebook CB.h5 --out LABELS [--km DIR --split NAME]",
                    .about = "Assigns every frame of a feature store its nearest codebook centre (blocked sgemm + argmin)\n"
                             "and writes a label store with the feature store's shards and utterances (label rate = its\n"
                             "frame rate).  Shards as the feature store's; MPI ranks or job-array tasks share them.",
                    .groups = groups,
                    .n_groups = 1};
    slex_error err = {{0}};
    int exit_code = 0;
    slex_parse_result parsed = slex_cli_parse(&cli, argc, argv, &err);
    slex_store *feats = NULL;
    slex_codebook cb = {0};
    char *params = NULL;
    label_job job = {0};
    if (parsed == SLEX_PARSE_HELP) {
        if (mpi.rank == 0) slex_cli_help(&cli, stdout);
    } else if (parsed == SLEX_PARSE_ERROR) {
        if (mpi.rank == 0) slex_error_log("%s", err.msg);
        exit_code = slex_cli_exit_code(&cli, &err);
    } else {
        /* Everything is checked before any work starts, and nothing is overwritten on error. */
        slex_path_role outputs[2] = {{"--out", o.out}, {"--km", o.km}};
        slex_path_role inputs[2] = {{"--store", o.store}, {"--codebook", o.codebook}};
        int ok = !slex_paths_check_apart(outputs, 2, inputs, 2, &err) && (feats = slex_store_open(o.store, &err)) &&
                 !slex_codebook_read(o.codebook, &cb, &err);
        if (ok && slex_store_get_dtype(feats) != SLEX_STORE_F32)
            ok = !slex_fail_as(&err, SLEX_ERR_INPUT, "%s: is a label store, not a feature store", o.store);
        if (ok && slex_store_dim(feats) != cb.dim)
            ok = !slex_fail_as(&err, SLEX_ERR_INPUT, "%s has %d-dimensional centres but %s has %d-dimensional features", o.codebook, cb.dim,
                            o.store, slex_store_dim(feats));
        if (ok && !(params = label_params(o.codebook, feats, &err))) ok = 0;
        job.feats = feats;
        job.cb = &cb;
        if (ok && !(job.work = malloc(slex_assign_work_floats(cb.k, cb.dim) * sizeof(float))))
            ok = !slex_fail_as(&err, SLEX_ERR_RESOURCE, "out of memory");
        slex_shard_plan plan;
        int usage = ok && slex_shard_plan_resolve(slex_store_nshard(feats), o.shard, &mpi, &plan, &err);
        ok = ok && !usage;
        /* The feature store's manifest.tsv lists exactly its utterances: the label store's too. */
        char manifest_path[4200];
        snprintf(manifest_path, sizeof manifest_path, "%s/manifest.tsv", o.store);
        const char *manifest = slex_path_exists(manifest_path) ? manifest_path : NULL;
        /* Every rank stops here together, or none does (stagerun is collective). */
        if (!slex_mpi_all_ok(ok)) {
            if (err.msg[0]) slex_error_log("%s", err.msg);
            exit_code = usage ? 2 : 1; /* a --shard (or job-array task) the store does not have */
        } else {
            slex_stagerun run = {o.out, o.force, 0.0,
                                 {SLEX_STORE_I32, 1, slex_store_frame_rate(feats), "slex-label", params},
                                 manifest, "utterances", shard_size, fill_shard, &job};
            exit_code = (int)slex_stagerun_run(&run, &plan, &mpi, &err);
            char index[4200];
            snprintf(index, sizeof index, "%s/index.json", o.out);
            if (!exit_code && o.km && (!plan.collective || mpi.rank == 0) && slex_path_exists(index)) {
                if (write_km(o.out, o.store, &o, cb.k, &err)) exit_code = 1;
                else slex_info("%s: %s.km, dict.km.txt (%d units) and %s.tsv written", o.km, o.split, cb.k, o.split);
            }
            if (plan.collective) exit_code = slex_mpi_all_ok(exit_code == 0) ? 0 : (exit_code ? exit_code : 1);
            if (exit_code && err.msg[0]) slex_error_log("%s", err.msg);
        }
    }
    free(job.x);
    free(job.labels);
    free(job.work);
    free(params);
    slex_codebook_free(&cb);
    slex_store_close(feats);
    slex_cli_free(&cli);
    exit_code = slex_mpi_exit_code(exit_code, &err);
    slex_mpi_stop();
    return exit_code;
}
