/* assign: the exact nearest-centre rule shared by k-means, Lloyd passes and slex-label.
 *
 * A label is argmin_c ||x - c||^2 evaluated in double (ties go to the lowest index).  The float
 * scores ||c||^2 - 2 x.c from cblas_sgemm (blocks of SLEX_ASSIGN_BLOCK rows) only screen: every
 * centre whose score is within the proven float error of the lowest (slex_assign_score_error)
 * is measured in double (slex_assign_decide), so a label depends on the row and the centres
 * alone, not on the BLAS, its kernels or the rows around it in a call (docs/kmeans.md). */
#ifndef SLEX_ASSIGN_H
#define SLEX_ASSIGN_H

#include <stddef.h>
#include <stdint.h>

/* Rows per sgemm call.  Every block is handed to cblas_sgemm as exactly this many rows (the last
 * one zero-padded), so each row's dot products come from the same call shape at the same row
 * position whatever the number of rows a caller has (OpenBLAS picks kernels by M and by row
 * position in its tiles).  k-means splits its work over ranks in whole blocks (kmeans.h). */
#define SLEX_ASSIGN_BLOCK 256

/* Floats of workspace slex_assign_nearest needs. */
size_t slex_assign_work_floats(int k, int dim);

/* Nearest centre of each row of x (n, D): labels (n) = argmin_c ||x - c||^2 evaluated in double
 * (ties go to the lowest index), dist (n, may be NULL) = that squared distance.  centers (K, D),
 * work (slex_assign_work_floats(k, dim) floats). */
void slex_assign_nearest(const float *centers, int k, int dim, const float *x, int64_t n, int32_t *labels,
                         double *dist, float *work);

/* g (SLEX_ASSIGN_BLOCK, m) = x (rows, D) cand (m, D)^T for rows <= SLEX_ASSIGN_BLOCK rows of x,
 * always as one sgemm of exactly SLEX_ASSIGN_BLOCK rows: a partial block is first copied into
 * the zero-padded xblock (SLEX_ASSIGN_BLOCK x D floats).  Rows of g past `rows` are zero. */
void slex_assign_block_products(const float *x, int64_t rows, int dim, const float *cand, int m, float *xblock,
                                float *g);

/* sum_d (a_d - b_d)^2 and sum_d a_d^2 in double, summed in a fixed order. */
double slex_assign_sq_dist(const float *a, const float *b, int dim);
double slex_assign_sq_norm(const float *a, int dim);

/* Largest ||c|| over the K centres (double). */
double slex_assign_max_norm(const float *centers, int k, int dim);

/* Bound on |score_j - (||x - c_j||^2 - ||x||^2)| for a float score_j = fl(||c_j||^2) - 2 fl(x.c_j)
 * computed by any summation order of D float products, given ||x|| and the largest ||c||. */
double slex_assign_score_error(double x_norm, double max_center_norm, int dim);

/* The exact decision among m scored candidates (ids[t] = centre index of scores[t], or t when
 * ids is NULL), given ||x|| and the largest ||c||: every candidate within twice the score error
 * (slex_assign_score_error) of the lowest score is measured with slex_assign_sq_dist; *label =
 * the nearest (ties: lowest index), *sq_dist its squared distance.  Returns how many were
 * measured. */
int slex_assign_decide(const float *x, const float *centers, int dim, const float *scores, const int32_t *ids, int m,
                       double x_norm, double max_center_norm, int32_t *label, double *sq_dist);

#endif
