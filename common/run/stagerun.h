/* stagerun: the shard loop every store-writing stage shares.
 *
 * Which shards this process writes (MPI ranks round-robin, or the one shard of a job-array
 * task), recording the parameters, skipping shards that are already done, progress over all
 * ranks, and, once every shard is done, the store's index and the check of the rejected
 * fraction.  A stage supplies what one shard is: a function that fills a store writer. */
#ifndef SLEX_STAGERUN_H
#define SLEX_STAGERUN_H

#include <stdint.h>

#include "core/err.h"
#include "core/mpi_util.h"
#include "core/progress.h"
#include "store/store.h"

/* Which shards this process does. */
typedef struct slex_shard_plan {
    int nshard;     /* shards of the output store */
    int only_shard; /* -1: shards s with s % size == rank (collective MPI run); else this one */
    int collective; /* 1 when every rank of MPI_COMM_WORLD takes part (only_shard < 0) */
} slex_shard_plan;

/* nshard_opt: --nshard (0 = default: SLURM_ARRAY_TASK_COUNT for a job-array task, else the
 * rank count); shard_opt: --shard (-1 = from SLURM_ARRAY_TASK_ID / PBS_ARRAY_INDEX /
 * PBS_ARRAYID when set, else all of this rank's shards).  A failure is a bad command line (exit 2). */
int slex_shard_plan_resolve(int nshard_opt, int shard_opt, const slex_mpi *mpi, slex_shard_plan *plan,
                            slex_error *err);
/* 1 when shard s is this process's. */
int slex_shard_plan_is_mine(const slex_shard_plan *plan, const slex_mpi *mpi, int s);

/* What happened, for the program's exit code (0, 1, 2, 3). */
typedef enum {
    SLEX_STAGE_OK = 0,
    SLEX_STAGE_FAILED = 1,          /* err says why; nothing that looks complete was left */
    SLEX_STAGE_BAD_USAGE = 2,       /* the command line (or the job-array variables) cannot be run:
                                       a missing option, a shard that does not exist; nothing written */
    SLEX_STAGE_TOO_MANY_REJECTS = 3,
} slex_stage_status;

typedef struct slex_stagerun {
    const char *out;      /* output store */
    int force;            /* redo finished shards; replace a store with other parameters */
    double max_reject;    /* largest tolerated fraction of rejected items */
    slex_store_meta meta; /* params_json complete (inputs' identities included) */
    const char *manifest; /* a manifest path: finalize writes its stored lines as manifest.tsv (or NULL) */
    const char *items;    /* noun for progress: "utterances" */
    /* Items and audio seconds of one shard, for the progress total. */
    int64_t (*shard_size)(void *ctx, int shard, int nshard, double *audio_seconds);
    /* Fills w with shard `shard` (append / reject), reporting progress; the runner commits. */
    int (*fill_shard)(void *ctx, int shard, int nshard, slex_store_writer *w, slex_progress *progress,
                      slex_error *err);
    void *ctx;
} slex_stagerun;

/* In a collective run every rank calls this; a failure on one rank fails every rank, and only
 * the rank where it happened has a message in err (the others return with err empty, so that
 * the log says it once). */
slex_stage_status slex_stagerun_run(const slex_stagerun *run, const slex_shard_plan *plan, const slex_mpi *mpi,
                                    slex_error *err);

#endif
