/* mpi_util: the MPI and job-scheduler facts every stage needs.
 *
 * A stage runs either as R ranks of one mpirun (the ranks share the shards round-robin) or as
 * one task of a Slurm/PBS job array (the task does the one shard named by its array index). */
#ifndef SLEX_MPI_UTIL_H
#define SLEX_MPI_UTIL_H

#include <stdint.h>

#include "core/exactsum.h"
#include "core/err.h"

typedef struct slex_mpi {
    int rank;
    int size;
} slex_mpi;

/* OpenBLAS's right kernels (core/blas.h: may re-execute the program), MPI_Init, rank/size, and
 * one OpenBLAS thread per rank (unless OPENBLAS_NUM_THREADS is set), so that several ranks on a
 * node do not oversubscribe its cores. */
slex_mpi slex_mpi_start(int *argc, char ***argv);
void slex_mpi_stop(void);

/* The job-array task index from SLURM_ARRAY_TASK_ID, PBS_ARRAY_INDEX or PBS_ARRAYID (first
 * set wins).  Returns 1 and sets *task when one is set, 0 when none is, -1 when one is set but
 * is not a non-negative integer. */
int slex_job_array_task(int *task, const char **variable);

/* 1 on every rank when local_ok is non-zero on every rank. */
int slex_mpi_all_ok(int local_ok);

/* The exit code of a stage program, called by every rank at its end: `code` is the stage's own
 * (0 done, 1 failed, 2 bad command line, 3 too many rejects); a failure (1) is made specific by
 * the kind of err (core/err.h: 4 bad input, 5 out of resources, 6 internal; I/O stays 1), and
 * the ranks agree on the largest code, so mpirun reports the same whichever rank failed. */
int slex_mpi_exit_code(int code, const slex_error *err);

/* Sums of counters over ranks (exact: integers). */
int64_t slex_mpi_sum_i64(int64_t value);
double slex_mpi_max_double(double value);

/* The exact reductions of core/exactsum (MPI_Allreduce, in place, MPI_INT64_T / MPI_SUM and
 * MPI_DOUBLE / MPI_MAX) over MPI_COMM_WORLD, with this process's rank and size.  MPI must be
 * initialised. */
slex_exact_comm slex_mpi_exact_comm(void);

#endif
