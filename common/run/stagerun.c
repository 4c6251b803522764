#include "run/stagerun.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "core/lock.h"
#include "core/log.h"

int slex_shard_plan_resolve(int nshard_opt, int shard_opt, const slex_mpi *mpi, slex_shard_plan *plan,
                            slex_error *err) {
    int task = -1;
    const char *variable = NULL;
    int in_array = slex_job_array_task(&task, &variable);
    if (in_array < 0) return slex_fail_as(err, SLEX_ERR_INPUT, "%s is set but is not a task index", variable);
    plan->only_shard = shard_opt >= 0 ? shard_opt : (in_array ? task : -1);
    plan->nshard = nshard_opt;
    if (plan->nshard <= 0 && plan->only_shard >= 0) {
        const char *count = getenv("SLURM_ARRAY_TASK_COUNT");
        if (!count) return slex_fail_as(err, SLEX_ERR_INPUT, "--nshard is required with --shard or a PBS job array");
        plan->nshard = atoi(count);
    }
    if (plan->nshard <= 0) plan->nshard = mpi->size;
    plan->collective = plan->only_shard < 0;
    if (plan->only_shard >= 0 && mpi->size > 1)
        return slex_fail_as(err, SLEX_ERR_INPUT, "a single shard (--shard or a job-array task) is done by one rank, not %d", mpi->size);
    if (plan->only_shard >= plan->nshard)
        return slex_fail_as(err, SLEX_ERR_INPUT, "shard %d does not exist: there are %d shards%s%s%s", plan->only_shard, plan->nshard,
                         variable && shard_opt < 0 ? " (shard taken from " : "",
                         variable && shard_opt < 0 ? variable : "", variable && shard_opt < 0 ? ")" : "");
    if (plan->collective && plan->nshard < mpi->size && mpi->rank == 0)
        slex_warn("%d ranks for %d shards: %d ranks will have nothing to do", mpi->size, plan->nshard,
                  mpi->size - plan->nshard);
    return 0;
}

int slex_shard_plan_is_mine(const slex_shard_plan *plan, const slex_mpi *mpi, int s) {
    return plan->only_shard >= 0 ? s == plan->only_shard : s % mpi->size == mpi->rank;
}

static int run_one_shard(const slex_stagerun *run, int shard, int nshard, const char *fingerprint,
                         slex_progress *progress, slex_error *err) {
    slex_store_writer *w = slex_store_writer_open(run->out, shard, nshard, &run->meta, fingerprint, err);
    if (!w) return -1;
    if (run->fill_shard(run->ctx, shard, nshard, w, progress, err)) {
        slex_store_writer_abort(w);
        return -1;
    }
    return slex_store_writer_commit(w, err);
}

/* Rank 0 (or the lone task): the index once every shard is done, and the reject check. */
static slex_stage_status finish_store(const slex_stagerun *run, int nshard, const char *fingerprint,
                                      slex_error *err) {
    slex_store_summary summary;
    if (slex_store_finalize(run->out, nshard, fingerprint, run->manifest, &summary, err)) return SLEX_STAGE_FAILED;
    /* A killed run's temporaries (a whole shard, perhaps) are garbage once this run is done. */
    int swept = slex_sweep_dead_temporaries(run->out, err);
    if (swept < 0) return SLEX_STAGE_FAILED;
    if (swept) slex_info("%s: removed %d temporary file(s) of runs that died", run->out, swept);
    if (!summary.finalized) {
        slex_info("%s: %d of %d shards done; the last task to finish writes index.json", run->out, summary.shards_done,
                  nshard);
        return SLEX_STAGE_OK;
    }
    slex_info("%s: %lld %s, %lld frames in %d shards; %lld rejected%s", run->out, (long long)summary.utterances,
              run->items, (long long)summary.frames, nshard, (long long)summary.rejected,
              summary.rejected ? " (see rejects.tsv)" : "");
    int64_t seen = summary.utterances + summary.rejected;
    if (summary.rejected && (double)summary.rejected > run->max_reject * (double)seen) {
        slex_fail_as(err, SLEX_ERR_INPUT,
                     "%lld of %lld %s rejected (%.3g%%), more than --max-reject %g: see %s/rejects.tsv",
                     (long long)summary.rejected, (long long)seen, run->items,
                     100.0 * (double)summary.rejected / (double)seen, run->max_reject, run->out);
        return SLEX_STAGE_TOO_MANY_REJECTS;
    }
    return SLEX_STAGE_OK;
}

slex_stage_status slex_stagerun_run(const slex_stagerun *run, const slex_shard_plan *plan, const slex_mpi *mpi,
                                    slex_error *err) {
    int collective = plan->collective, nshard = plan->nshard;
    char fingerprint[17] = "";
    /* Rank 0 records the parameters first, so that ranks do not race on params.json. */
    int ok = 1;
    if (!collective || mpi->rank == 0)
        ok = slex_store_prepare(run->out, &run->meta, nshard, run->force, fingerprint, err) == 0;
    if (collective) {
        ok = slex_mpi_all_ok(ok);
        MPI_Bcast(fingerprint, sizeof fingerprint, MPI_CHAR, 0, MPI_COMM_WORLD);
    }
    if (!ok) return SLEX_STAGE_FAILED;

    int *todo = calloc((size_t)nshard, sizeof *todo);
    int n_todo = 0;
    int64_t skipped = 0, todo_items = 0;
    double todo_audio = 0;
    if (!todo) ok = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory") == 0;
    for (int s = 0; ok && s < nshard; s++) {
        if (!slex_shard_plan_is_mine(plan, mpi, s)) continue;
        int done = run->force ? 0 : slex_store_shard_is_done(run->out, s, nshard, fingerprint, err);
        if (done < 0) ok = 0;
        else if (done) skipped++;
        else {
            double audio = 0;
            todo_items += run->shard_size(run->ctx, s, nshard, &audio);
            todo_audio += audio;
            todo[n_todo++] = s;
        }
    }
    if (collective) {
        ok = slex_mpi_all_ok(ok);
        skipped = slex_mpi_sum_i64(skipped);
        todo_items = slex_mpi_sum_i64(todo_items);
        /* Audio seconds are summed as integer milliseconds: exact, so every rank agrees. */
        todo_audio = (double)slex_mpi_sum_i64((int64_t)(todo_audio * 1000.0)) / 1000.0;
    }
    int reporter = !collective || mpi->rank == 0;
    if (skipped && reporter)
        slex_info("%lld finished shard(s) skipped (validated against their records)", (long long)skipped);
    slex_progress *progress = slex_progress_start(run->items, todo_items, todo_audio, collective);
    for (int t = 0; ok && t < n_todo; t++) ok = run_one_shard(run, todo[t], nshard, fingerprint, progress, err) == 0;
    slex_progress_finish(progress);
    free(todo);
    if (collective) ok = slex_mpi_all_ok(ok);

    slex_stage_status status = ok ? SLEX_STAGE_OK : SLEX_STAGE_FAILED;
    if (ok && reporter) status = finish_store(run, nshard, fingerprint, err);
    if (collective) {
        int st = (int)status;
        MPI_Bcast(&st, 1, MPI_INT, 0, MPI_COMM_WORLD);
        status = (slex_stage_status)st;
    }
    return status;
}
