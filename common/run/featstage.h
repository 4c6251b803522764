/* featstage: manifest -> feature store, shared by slex-mfcc and slex-dump.
 *
 * Reads each utterance of a shard (fairseq sharding of the manifest), rejects the unusable
 * ones with their reason (malformed manifest line, unreadable/truncated/empty audio, too few
 * samples, NaN/Inf), computes the stage's features and appends them; the shard loop, restart,
 * progress and the store's index are stagerun's.  The stage supplies a feature function. */
#ifndef SLEX_FEATSTAGE_H
#define SLEX_FEATSTAGE_H

#include <stdint.h>

#include "core/err.h"
#include "core/mpi_util.h"
#include "core/options.h"
#include "core/paths.h"
#include "run/stagerun.h"
#include "store/store.h"

/* Options every feature stage takes (defaults from slex_featstage_options_default: the table's). */
typedef struct slex_featstage_options {
    char *manifest;    /* fairseq manifest (.tsv); required */
    char *out;         /* store directory; required */
    int nshard;        /* shards; 0 = the rank count (job arrays: SLURM_ARRAY_TASK_COUNT) */
    int shard;         /* -1 = all of this rank's shards; >= 0 = only that one (job arrays) */
    int force;         /* redo finished shards and replace a store made with other parameters */
    double max_reject; /* largest tolerated fraction of rejected utterances (default 0) */
    int sample_rate;   /* audio is resampled to this (default 16000) */
} slex_featstage_options;

void slex_featstage_options_default(slex_featstage_options *o);

/* The options of slex_featstage_options, registered once (defaults, --help, validation):
 *   slex_option_group groups[] = {{&slex_featstage_option_table, &fo}, {&stage_table, &so}}; */
extern const slex_option_table slex_featstage_option_table;

/* The end of every feature stage's --help paragraph. */
#define SLEX_FEATSTAGE_ABOUT                                                                                         \
    "Run under `mpirun -np R` (the ranks share the shards) or as one task of a Slurm/PBS job array.\n"              \
    "Finished shards are skipped on re-run; unusable utterances are listed with their reason in\n"                  \
    "STORE/rejects.tsv and left out of STORE/manifest.tsv."

/* The feature function: frames for n samples (0 when too short), and the features themselves
 * as (frames, dim) rows.  ctx is the stage's own state (an MFCC handle, a model). */
typedef struct slex_featstage {
    slex_store_meta meta; /* params_json: the feature parameters; the manifest's CRC is added */
    int64_t (*num_frames)(void *ctx, int64_t n_samples);
    int (*compute)(void *ctx, const float *wave, int64_t n_samples, float *out, int64_t frames, slex_error *err);
    void *ctx;
    int64_t min_samples; /* shorter audio is rejected (400: one 25 ms window) */
    const slex_path_role *inputs; /* what the stage reads besides the manifest (a model, an
                                     adapter): the store must be apart from them too */
    int n_inputs;
} slex_featstage;

/* Collective in an MPI run (see stagerun.h); returns the exit status.  Fails before touching
 * anything when the store is, lies inside or contains the manifest, its side file or one of the
 * stage's inputs (paths.h). */
slex_stage_status slex_featstage_run(const slex_featstage *stage, const slex_featstage_options *opts,
                                     const slex_mpi *mpi, slex_error *err);

#endif
