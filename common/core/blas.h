/* blas: OpenBLAS's kernels for this CPU.
 *
 * OpenBLAS before 0.3.25 (Debian 12 ships 0.3.21) does not know recent Intel models (Sapphire
 * and Emerald Rapids, model 143 and 207, among them) and falls back to its Prescott (SSE3)
 * kernels: sgemm runs 3-5x slower (OpenBLAS issue 4267, fixed by PR 4268).  OpenBLAS chooses
 * its kernels when it is loaded, from OPENBLAS_CORETYPE when that is set; so a program that
 * finds the Prescott kernels on a CPU with AVX-512 (or AVX2 and FMA) sets the variable to
 * SkylakeX (Haswell) and executes itself again, once, before it starts MPI.  A user's own
 * OPENBLAS_CORETYPE is left alone. */
#ifndef SLEX_CORE_BLAS_H
#define SLEX_CORE_BLAS_H

/* Re-executes the program with the better kernels when OpenBLAS fell back to Prescott as
 * above; returns only when nothing was to be done (or the re-execution failed, which leaves
 * the slow kernels).  argv as main received it. */
void slex_blas_select_kernel(char **argv);

/* The kernels OpenBLAS uses ("SkylakeX", "Haswell", "Prescott", ...). */
const char *slex_blas_kernel(void);

#endif
