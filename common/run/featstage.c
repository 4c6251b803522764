#include "run/featstage.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpus/audio.h"
#include "core/fileio.h"
#include "core/log.h"
#include "corpus/manifest.h"
#include "corpus/shard.h"

/* Warnings about manifest sample counts are listed up to this many, then only counted. */
#define MAX_LISTED_WARNINGS 20

#define T slex_featstage_options
static const slex_option featstage_rows[] = {
    {SLEX_OPT_STRING_FIELD(T, manifest), .name = "manifest", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "fairseq manifest (.tsv): root line, then relpath<TAB>samples"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "output store directory"},
    {SLEX_OPT_INT_FIELD(T, nshard), .name = "nshard", .def = 0, .min = 0, .max = INT_MAX,
     .help = "number of shards (0 = number of ranks)"},
    {SLEX_OPT_INT_FIELD(T, shard), .name = "shard", .def = -1, .min = -1, .max = INT_MAX,
     .help = "do only this shard (-1 = all; default from SLURM_ARRAY_TASK_ID/PBS_ARRAY_INDEX/PBS_ARRAYID)"},
    {SLEX_OPT_FLAG_FIELD(T, force), .name = "force",
     .help = "redo finished shards; replace a store made with other parameters"},
    {SLEX_OPT_DOUBLE_FIELD(T, max_reject), .name = "max-reject", .def = 0, .min = 0, .max = 1,
     .help = "fail when more than this fraction of utterances is rejected"},
    {SLEX_OPT_INT_FIELD(T, sample_rate), .name = "sample-rate", .flags = SLEX_OPTF_INTERNAL, .def = 16000, .min = 1,
     .max = INT_MAX},
};
#undef T
const slex_option_table slex_featstage_option_table = SLEX_OPTION_TABLE(featstage_rows);

void slex_featstage_options_default(slex_featstage_options *o) {
    memset(o, 0, sizeof *o);
    slex_options_defaults(&slex_featstage_option_table, o);
}

/* Counters reported once at the end, summed over ranks. */
enum { COUNT_RESAMPLED, COUNT_DOWNMIXED, COUNT_LENGTH_WARNINGS, N_COUNTS };

typedef struct feature_job {
    const slex_featstage *stage;
    const slex_featstage_options *opts;
    int64_t n_utts;               /* entry lines of the whole manifest */
    const slex_manifest *manifest; /* the lines of the shard being written */
    float *feats;
    int64_t feats_cap; /* floats */
    int64_t counts[N_COUNTS];
} feature_job;

/* Computes one utterance's features into job->feats; returns frames, or -1 with `why` set to
 * the reason the utterance is rejected.  *samples receives the audio length. */
static int64_t utterance_features(feature_job *job, int64_t i, int64_t *samples, slex_error *why) {
    const slex_manifest_entry *e = &job->manifest->entries[i];
    *samples = 0;
    if (e->malformed)
        return slex_fail_as(why, SLEX_ERR_INPUT, "%s:%lld: malformed manifest line: %s", job->manifest->path, (long long)e->line,
                         e->malformed);
    char path[8192];
    if (slex_manifest_audio_path(job->manifest, i, path, sizeof path, why)) return -1;
    float *wave = NULL;
    int64_t n = 0;
    slex_audio_info info;
    if (slex_audio_read(path, job->opts->sample_rate, &wave, &n, &info, why)) return -1;
    *samples = n;
    job->counts[COUNT_RESAMPLED] += info.resampled;
    job->counts[COUNT_DOWNMIXED] += info.downmixed;
    if (llabs(n - e->num_samples) > 160 && job->counts[COUNT_LENGTH_WARNINGS]++ < MAX_LISTED_WARNINGS)
        slex_warn("%s:%lld: %s has %lld samples, the manifest says %lld", job->manifest->path, (long long)e->line,
                  path, (long long)n, (long long)e->num_samples);
    int64_t frames = n >= job->stage->min_samples ? job->stage->num_frames(job->stage->ctx, n) : 0;
    if (frames <= 0) {
        free(wave);
        return slex_fail_as(why, SLEX_ERR_INPUT, "%s: only %lld samples, fewer than the %lld needed for one frame", path, (long long)n,
                         (long long)job->stage->min_samples);
    }
    int64_t need = frames * job->stage->meta.dim;
    if (need > job->feats_cap) {
        float *grown = realloc(job->feats, (size_t)need * sizeof *grown);
        if (!grown) {
            free(wave);
            return slex_fail_as(why, SLEX_ERR_RESOURCE, "%s: out of memory for %lld frames", path, (long long)frames);
        }
        job->feats = grown;
        job->feats_cap = need;
    }
    int rc = job->stage->compute(job->stage->ctx, wave, n, job->feats, frames, why);
    free(wave);
    if (rc) return slex_fail_wrap(why, "%s", path);
    for (int64_t k = 0; k < need; k++)
        if (!isfinite(job->feats[k]))
            return slex_fail_as(why, SLEX_ERR_INPUT, "%s: features contain NaN/Inf (frame %lld)", path,
                             (long long)(k / job->stage->meta.dim));
    return frames;
}

/* Progress counts utterances; audio seconds are summed as they are read (no pass over the
 * manifest just for a total). */
static int64_t shard_size(void *ctx, int shard, int nshard, double *audio_seconds) {
    feature_job *job = ctx;
    int64_t start = 0, end = 0;
    slex_shard_range(job->n_utts, nshard, shard, &start, &end, NULL);
    *audio_seconds = 0;
    return end - start;
}

/* Only the shard's own manifest lines are read: memory is one shard's, whatever the corpus. */
static int fill_shard(void *ctx, int shard, int nshard, slex_store_writer *w, slex_progress *progress,
                      slex_error *err) {
    feature_job *job = ctx;
    int64_t start, end;
    if (slex_shard_range(job->n_utts, nshard, shard, &start, &end, err)) return -1;
    slex_manifest *m = slex_manifest_read_range(job->opts->manifest, start, end, err);
    if (!m) return -1;
    int rc = 0;
    if (m->n != end - start)
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: has %lld lines now, %lld when the run started: was it changed during the run?",
                       job->opts->manifest, (long long)m->total, (long long)job->n_utts);
    job->manifest = m;
    for (int64_t i = 0; !rc && i < m->n; i++) {
        const slex_manifest_entry *e = &m->entries[i];
        slex_error why = {{0}};
        int64_t samples;
        int64_t frames = utterance_features(job, i, &samples, &why);
        rc = frames < 0 ? slex_store_writer_reject(w, e->line, e->relpath, why.msg)
                        : slex_store_writer_append(w, e->relpath, job->feats, frames);
        if (rc) slex_fail_as(err, slex_store_writer_error(w)->kind, "%s", slex_store_writer_error(w)->msg);
        slex_progress_add(progress, 1, (double)samples / job->opts->sample_rate);
    }
    job->manifest = NULL;
    slex_manifest_free(m);
    return rc;
}

/* The stage's parameters plus the manifest's checksum, so that a changed manifest is not
 * mistaken for the one a finished shard was made from. */
static char *params_with_manifest(const char *params_json, const char *manifest, slex_error *err) {
    uint32_t crc;
    if (slex_file_crc32(manifest, &crc, NULL, err)) return NULL;
    size_t len = strlen(params_json) + 64;
    char *params = malloc(len);
    if (!params) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), NULL;
    const char *rest = params_json + 1; /* after the object's '{' */
    snprintf(params, len, "{\"manifest_crc32\":\"%08x\"%s%s", crc, *rest == '}' ? "" : ",", rest);
    return params;
}

/* The store must not be, lie inside or contain what the stage reads. */
static int check_apart(const slex_featstage *stage, const slex_featstage_options *opts, slex_error *err) {
    char columns[4200];
    if (slex_manifest_columns_path(opts->manifest, columns, sizeof columns, err)) return -1;
    slex_path_role out = {"--out", opts->out}, inputs[8] = {{"--manifest", opts->manifest},
                                                            {"--manifest (its side file)", columns}};
    int n = 2;
    for (int i = 0; i < stage->n_inputs && n < 8; i++) inputs[n++] = stage->inputs[i];
    return slex_paths_check_apart(&out, 1, inputs, n, err);
}

/* Utterance ids are the relpaths: a path on two lines gives two utterances with one id (both
 * are stored; alignments and side files keyed by id cannot tell them apart). */
static void warn_duplicates(const char *manifest) {
    int64_t n = 0;
    char example[4400];
    slex_error why = {{0}};
    if (slex_manifest_find_duplicates(manifest, &n, example, sizeof example, &why))
        slex_warn("%s: duplicate ids not checked: %s", manifest, why.msg);
    else if (n)
        slex_warn("%s: %lld line(s) repeat the path of an earlier line, e.g. %s: the utterance ids are not unique",
                  manifest, (long long)n, example);
}

slex_stage_status slex_featstage_run(const slex_featstage *stage, const slex_featstage_options *opts,
                                     const slex_mpi *mpi, slex_error *err) {
    slex_shard_plan plan = {0, -1, 1};
    if (!opts->manifest || !opts->out) return slex_fail_as(err, SLEX_ERR_INPUT, "--manifest and --out are required"), SLEX_STAGE_BAD_USAGE;
    /* The same on every rank (same options and environment), so every rank returns the same. */
    int usage = slex_shard_plan_resolve(opts->nshard, opts->shard, mpi, &plan, err) != 0;
    int ok = !usage && check_apart(stage, opts, err) == 0;
    slex_manifest *head = ok ? slex_manifest_read_range(opts->manifest, 0, 0, err) : NULL; /* counts lines */
    char *params = head ? params_with_manifest(stage->meta.params_json, opts->manifest, err) : NULL;
    ok = params != NULL;
    if (ok && plan.nshard > head->total)
        ok = slex_fail_as(err, SLEX_ERR_INPUT, "%s: %lld utterances cannot fill %d shards", opts->manifest, (long long)head->total,
                       plan.nshard) == 0;
    if (ok && (!plan.collective || mpi->rank == 0)) warn_duplicates(opts->manifest);
    if (plan.collective) ok = slex_mpi_all_ok(ok);
    feature_job job = {stage, opts, head ? head->total : 0, NULL, NULL, 0, {0}};
    slex_stage_status status = usage ? SLEX_STAGE_BAD_USAGE : SLEX_STAGE_FAILED;
    if (ok) {
        slex_stagerun run = {opts->out, opts->force, opts->max_reject, stage->meta, opts->manifest, "utterances",
                             shard_size, fill_shard, &job};
        run.meta.params_json = params;
        status = slex_stagerun_run(&run, &plan, mpi, err);
    }
    /* Counted per file, reported once. */
    for (int c = 0; plan.collective && c < N_COUNTS; c++) job.counts[c] = slex_mpi_sum_i64(job.counts[c]);
    if ((status == SLEX_STAGE_OK || status == SLEX_STAGE_TOO_MANY_REJECTS) && (!plan.collective || mpi->rank == 0)) {
        if (job.counts[COUNT_DOWNMIXED])
            slex_info("%lld file(s) had several channels: averaged to mono", (long long)job.counts[COUNT_DOWNMIXED]);
        if (job.counts[COUNT_RESAMPLED])
            slex_info("%lld file(s) were not at %d Hz: resampled", (long long)job.counts[COUNT_RESAMPLED],
                      opts->sample_rate);
        if (job.counts[COUNT_LENGTH_WARNINGS] > MAX_LISTED_WARNINGS)
            slex_warn("%lld utterances in all differ from the manifest's sample count by more than 160",
                      (long long)job.counts[COUNT_LENGTH_WARNINGS]);
    }
    free(job.feats);
    free(params);
    slex_manifest_free(head);
    return status;
}
