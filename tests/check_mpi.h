/* check_mpi.h: the end of a C test that runs over MPI ranks (check.h's counters are per rank). */
#ifndef SLEX_TESTS_CHECK_MPI_H
#define SLEX_TESTS_CHECK_MPI_H

#include <mpi.h>

#include "check.h"

/* After every check: finalizes MPI; the exit code of every rank is 1 when a check failed on any,
 * and rank 0 prints the summary. */
static inline int check_finish_mpi(const char *name) {
    int rank = 0, failed = check_failures, any = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank == 0) return check_finish(name) | (any != 0);
    return any != 0;
}

#endif
