#include "core/blas.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define REEXEC_MARK "SLEX_BLAS_REEXEC"

const char *slex_blas_kernel(void) { return openblas_get_corename(); }

/* The best OpenBLAS core type the CPU can run, or NULL when it has neither AVX-512 nor AVX2. */
static const char *best_core_type(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512cd"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

void slex_blas_select_kernel(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv(REEXEC_MARK)) return;
    if (strcasecmp(slex_blas_kernel(), "prescott") != 0) return;
    const char *core = best_core_type();
    if (!core) return;
    if (setenv("OPENBLAS_CORETYPE", core, 1) || setenv(REEXEC_MARK, "1", 1)) return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: carry on with the kernels loaded */
}
