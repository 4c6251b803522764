/* exactsum: sums over MPI ranks that give the same bits for any split of the terms and any
 * reduction order.
 *
 * Every term v is converted to the integer round(v * 2^S) (half away from zero), where the
 * exponent S (slex_exactsum_exponent) comes from the global maximum |v| (of the terms' block of
 * columns, below) and the global number of terms n so that the total of n terms cannot exceed
 * 2^62 in magnitude.  Integer addition is associative, so any split over ranks and any
 * reduction order (MPI_Allreduce with MPI_INT64_T / MPI_SUM) gives the same integers; the
 * global maximum is itself exact (MPI_MAX).  The total is off the true sum of the terms by at
 * most n * 2^-(S+1), i.e. 2^-(63 - ceil(log2 n)) of the largest |v| per term: far below float
 * precision.  The result depends on which terms there
 * are, never on which rank held them: a fit or a gradient reduction built on it is bit-identical
 * for any number of ranks, as long as the terms themselves are (one rank computes each term in
 * full, e.g. the gradient of one micro-batch).
 *
 * Used by k-means (per-centre sums of points, inertia, k-means++ potentials) and by training's
 * gradient reduction (slex_exactsum_f32: the sum of the per-micro-batch gradient vectors of all
 * ranks, an exponent per block of 256 values). */
#ifndef SLEX_EXACTSUM_H
#define SLEX_EXACTSUM_H

#include <math.h>
#include <stdint.h>

#include "core/err.h"

/* How ranks talk (an MPI program fills this with MPI_Allreduce calls; tests with threads).
 * NULL, or size 1, means a single process.  Both reductions are exact in any order, so MPI's
 * choice of algorithm cannot change results:
 *   sum_i64: values[i] = sum over ranks of values[i]    (MPI_INT64_T, MPI_SUM, in place)
 *   max_f64: values[i] = max over ranks of values[i]    (MPI_DOUBLE, MPI_MAX, in place)
 * Every rank calls them the same number of times with the same n. */
typedef struct slex_exact_comm {
    void *ctx;
    int rank, size;
    int (*sum_i64)(void *ctx, int64_t *values, int64_t n, slex_error *err);
    int (*max_f64)(void *ctx, double *values, int64_t n, slex_error *err);
} slex_exact_comm;

/* The reductions through comm (nothing to do for NULL or a single process). */
int slex_exact_comm_sum(const slex_exact_comm *comm, int64_t *values, int64_t n, slex_error *err);
int slex_exact_comm_max(const slex_exact_comm *comm, double *values, int64_t n, slex_error *err);
/* rank 0 of 1 for NULL or a single process. */
void slex_exact_comm_rank_size(const slex_exact_comm *comm, int *rank, int *size);

/* Exponent S for the exact sum of n_terms values with |v| <= max_abs: round(v * 2^S) summed
 * over n_terms terms stays below 2^62 in magnitude.  0 when max_abs is 0 (or not a number). */
int slex_exactsum_exponent(double max_abs, int64_t n_terms);

/* round(v * scale), scale = 2^S, half away from zero: inline (llrint is a libm call per element
 * here), and any fixed rounding rule is as deterministic as another.  Branch-free (copysign is a
 * bit operation): the sign of a feature value is random, and a branch on it mispredicted half the
 * time made k-means' accumulation a quarter of a mini-batch step at D=768.  Same values as
 * t >= 0 ? t + 0.5 : t - 0.5 (both give 0 for -0.0). */
static inline int64_t slex_exactsum_fixed(double v, double scale) {
    double t = v * scale;
    return (int64_t)(t + copysign(0.5, t));
}

/* The exact sums of vectors held by the ranks: out[j] = sum over every rank's rows i of
 * v[i * len + j], where v (rows, len) are this rank's rows and total_rows the number of rows of
 * all ranks together (the number of terms of each sum).  Each run of `block` columns (the last
 * one may be shorter; block 0 or >= len: all of them) has its own exponent, from its global max
 * |v| (one MPI_MAX of len / block values, then the integer sums): a column is off its true sum
 * by at most total_rows * 2^-(S_b + 1) for its block's S_b, so blocks of very different
 * magnitudes (the gradient of a bias beside a weight's) each keep their own precision, where
 * one exponent for all would round a value more than ~2^-49 below the largest to 0.  All ranks
 * call it together with the same len, block and total_rows; rows may differ (and be 0).  out
 * (len) is the same, bit for bit, on every rank and for any number of ranks or split of the
 * rows.  Non-finite values are an error (on every rank). */
int slex_exactsum_f32(const float *v, int64_t rows, int64_t len, int64_t block, int64_t total_rows,
                      const slex_exact_comm *comm, double *out, slex_error *err);
int slex_exactsum_f64(const double *v, int64_t rows, int64_t len, int64_t block, int64_t total_rows,
                      const slex_exact_comm *comm, double *out, slex_error *err);

#endif
