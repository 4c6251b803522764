#include "core/mpi_util.h"

#include <cblas.h>
#include <errno.h>
#include <mpi.h>
#include <stdlib.h>

#include "core/blas.h"

slex_mpi slex_mpi_start(int *argc, char ***argv) {
    slex_mpi m = {0, 1};
    slex_blas_select_kernel(*argv);
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &m.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &m.size);
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
    return m;
}

void slex_mpi_stop(void) { MPI_Finalize(); }

int slex_job_array_task(int *task, const char **variable) {
    static const char *names[] = {"SLURM_ARRAY_TASK_ID", "PBS_ARRAY_INDEX", "PBS_ARRAYID"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(names[i]);
        if (!v || !*v) continue;
        if (variable) *variable = names[i];
        char *end;
        errno = 0;
        long t = strtol(v, &end, 10);
        if (errno || *end || t < 0 || t > 1000000000L) return -1;
        *task = (int)t;
        return 1;
    }
    return 0;
}

int slex_mpi_all_ok(int local_ok) {
    int in = local_ok ? 1 : 0, out = 0;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return out;
}

int slex_mpi_exit_code(int code, const slex_error *err) {
    if (code == SLEX_EXIT_FAILED) code = slex_exit_code(err);
    int size = 1, out = code;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) MPI_Allreduce(&code, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return out;
}

int64_t slex_mpi_sum_i64(int64_t value) {
    int64_t out = 0;
    MPI_Allreduce(&value, &out, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    return out;
}

double slex_mpi_max_double(double value) {
    double out = 0;
    MPI_Allreduce(&value, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return out;
}

static int exact_sum_i64(void *ctx, int64_t *values, int64_t n, slex_error *err) {
    (void)ctx;
    if (MPI_Allreduce(MPI_IN_PLACE, values, (int)n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return slex_fail_as(err, SLEX_ERR_IO, "MPI_Allreduce failed");
    return 0;
}

static int exact_max_f64(void *ctx, double *values, int64_t n, slex_error *err) {
    (void)ctx;
    if (MPI_Allreduce(MPI_IN_PLACE, values, (int)n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        return slex_fail_as(err, SLEX_ERR_IO, "MPI_Allreduce failed");
    return 0;
}

slex_exact_comm slex_mpi_exact_comm(void) {
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return (slex_exact_comm){.ctx = NULL, .rank = rank, .size = size, .sum_i64 = exact_sum_i64,
                             .max_f64 = exact_max_f64};
}
