/* kmeans_state: the complete state of a k-means run (kmeans.h) and its checkpoint file.
 *
 * The options, every counter of the algorithm and the RNG state are one plain struct, so that
 * copying it or saving and loading it reproduces the run exactly: slex_kmeans_fit() runs from
 * whatever point the state is at.
 *
 * Checkpoints: slex_kmeans_fit() calls a checkpoint callback after the initialisation, every
 * checkpoint_every steps, after the mini-batch phase, after every Lloyd pass but the last, and
 * once when done (phase DONE: the final codebook).  Saving the state there (slex_kmeans_state_save) and resuming from it (slex_kmeans_state_load +
 * slex_kmeans_fit) ends with the same codebook, bit for bit, as an uninterrupted run. */
#ifndef SLEX_KMEANS_STATE_H
#define SLEX_KMEANS_STATE_H

#include <stdint.h>

#include "core/err.h"
#include "core/options.h"
#include "core/rng.h"

typedef enum {
    SLEX_KMEANS_INIT_KMEANS_PP = 0, /* greedy k-means++ on the init sample (sklearn's default) */
    SLEX_KMEANS_INIT_RANDOM = 1     /* K distinct rows of the init sample (sklearn's "random") */
} slex_kmeans_init;

typedef struct slex_kmeans_options {
    int k;                     /* number of centres (no default: must be set, >= 1) */
    int max_iter;              /* 100: mini-batch steps = max_iter * n / batch_size */
    int batch_size;            /* 10000 (fairseq); capped at n */
    int init_size;             /* 0 = 3 * batch_size (at least 3 * k); capped at n */
    int n_init;                /* 20 (fairseq) initialisations, the best on the validation sample kept */
    int init;                  /* SLEX_KMEANS_INIT_KMEANS_PP (slex_kmeans_init) */
    int max_no_improvement;    /* 100; 0 disables the early stop on the smoothed inertia */
    double tol;                /* 0.0 (fairseq); > 0 stops on a small squared centre change */
    double reassignment_ratio; /* 0.0 (fairseq): centres with no points are left where they are */
    int lloyd_passes;          /* 0: full-batch Lloyd passes after the mini-batch phase */
    int lloyd_chunk;           /* 65536 frames reduced exactly at a time in Lloyd passes */
    int bounds_mb;             /* 1024: per-rank memory for the bounds that let Lloyd passes skip
                                  distances (lloyd.h); 0 = every distance, every pass.  Does not
                                  change the result. */
    uint64_t seed;             /* 0 */
    int checkpoint_every;      /* 100 mini-batch steps between checkpoint callbacks; 0 = never */
} slex_kmeans_options;

void slex_kmeans_options_default(slex_kmeans_options *opts);

/* The options registered once: defaults, ranges, --help and the run parameters (k .. seed, in
 * the table's order; bounds_mb and checkpoint_every do not change the result); lloyd_chunk is
 * internal.  k is required. */
extern const slex_option_table slex_kmeans_option_table;

typedef enum {
    SLEX_KMEANS_PHASE_INIT = 0,      /* nothing done yet */
    SLEX_KMEANS_PHASE_MINIBATCH = 1, /* centres initialised; `step` mini-batch steps done */
    SLEX_KMEANS_PHASE_LLOYD = 2,     /* mini-batch phase over; `lloyd_pass` passes done */
    SLEX_KMEANS_PHASE_DONE = 3
} slex_kmeans_phase;

/* Why the mini-batch phase ended (slex_kmeans_state.stop_reason; the codebook records the name). */
typedef enum {
    SLEX_KMEANS_STOP_MAX_ITER = 0,       /* ran all n_steps steps */
    SLEX_KMEANS_STOP_NO_IMPROVEMENT = 1, /* max_no_improvement steps without a better smoothed inertia */
    SLEX_KMEANS_STOP_TOL = 2             /* the squared centre change fell to tol_scaled */
} slex_kmeans_stop;

/* "max_iter", "no_improvement" or "tol" (sklearn's words). */
const char *slex_kmeans_stop_name(int stop_reason);

/* The complete algorithm state: copying it (slex_kmeans_state_copy) or saving and loading it
 * reproduces the run exactly.  Fields are read-only for callers except through the functions
 * below; centers and counts are owned by the state. */
typedef struct slex_kmeans_state {
    slex_kmeans_options opts; /* the options the run was started with (resolved, see init) */
    int32_t k, dim;
    int64_t n_frames;
    int32_t batch_size, init_size; /* resolved (capped at n_frames, init_size >= 3k rule) */
    int32_t phase;                 /* slex_kmeans_phase */
    int64_t step;                  /* mini-batch steps done */
    int64_t n_steps;               /* max_iter * n_frames / batch_size */
    int32_t lloyd_pass;            /* Lloyd passes done */
    int32_t has_ewa;               /* ewa_inertia / ewa_inertia_min are set (sklearn: not None) */
    double ewa_inertia, ewa_inertia_min;
    int64_t no_improvement;        /* steps since ewa_inertia_min last improved */
    int64_t since_reassign;        /* frames seen since the last random reassignment */
    double tol_scaled;             /* tol * mean per-dimension variance of the validation sample */
    double init_inertia;           /* validation inertia of the chosen initialisation */
    double last_inertia;           /* mean inertia of the last batch, or of the last Lloyd pass */
    int32_t stop_reason;           /* slex_kmeans_stop */
    double last_computed_fraction; /* share of the distances the last Lloyd pass computed (not saved) */
    slex_rng rng;
    float *centers;  /* (K, D) */
    int64_t *counts; /* (K): points each centre has absorbed in the mini-batch phase */
} slex_kmeans_state;

/* Validates opts against the data size (k > n_frames and k < 1 are errors), resolves batch
 * and init sizes as sklearn does, allocates centres and counts, seeds the RNG. */
int slex_kmeans_state_init(slex_kmeans_state *state, const slex_kmeans_options *opts,
                           int64_t n_frames, int dim, slex_error *err);
void slex_kmeans_state_free(slex_kmeans_state *state);
/* dst must be freed or zero-initialised; it gets its own arrays. */
int slex_kmeans_state_copy(slex_kmeans_state *dst, const slex_kmeans_state *src, slex_error *err);

/* Binary checkpoint: "SLEXKMS2" (format 2): the magic, then 8 little-endian bytes a field (integers
 * as int64, doubles as IEEE 754, the seed and RNG words as uint64): the options (the rows of
 * slex_kmeans_option_table without SLEX_OPTF_NOT_SAVED, in the table's order), the counters in the
 * order of the struct (k .. stop_reason), the 4 RNG words; the centres (float32), the counts
 * (int64), an FNV-1a 64 checksum of all before it.  Written through core's atomic writer
 * (fileio.h), so a file that exists is whole. */
int slex_kmeans_state_save(const slex_kmeans_state *state, const char *path, slex_error *err);
/* state must be freed or zero-initialised; on success it owns new arrays.  The options that are
 * not saved (bounds_mb) hold their defaults: a resumed run sets its own. */
int slex_kmeans_state_load(slex_kmeans_state *state, const char *path, slex_error *err);

#endif
