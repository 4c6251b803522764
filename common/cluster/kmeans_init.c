#include "cluster/kmeans_init.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/assign.h"

/* Squared distances (double, >= 0) of the rows of x (n, D; at a block boundary) with squared
 * norms xx to the m vectors cand (m, D), as ||x||^2 + ||c||^2 - 2 x.c with the product from
 * sgemm: out (m, n). */
static void candidate_sq_dists(const float *x, const double *xx, int64_t n, int dim, const float *cand,
                               int m, double *out, float *work) {
    float *xblock = work;
    float *g = xblock + (size_t)SLEX_ASSIGN_BLOCK * dim;
    double cc[64]; /* m <= 2 + ln(K) candidates */
    for (int t = 0; t < m; t++) cc[t] = slex_assign_sq_norm(cand + (size_t)t * dim, dim);
    for (int64_t b0 = 0; b0 < n; b0 += SLEX_ASSIGN_BLOCK) {
        int64_t rows = n - b0 < SLEX_ASSIGN_BLOCK ? n - b0 : SLEX_ASSIGN_BLOCK;
        slex_assign_block_products(x + b0 * dim, rows, dim, cand, m, xblock, g);
        for (int64_t r = 0; r < rows; r++)
            for (int t = 0; t < m; t++) {
                double d = xx[b0 + r] + cc[t] - 2.0 * (double)g[r * m + t];
                out[(int64_t)t * n + b0 + r] = d > 0 ? d : 0;
            }
    }
}

/* Greedy k-means++ (sklearn _kmeans_plusplus) on a sample spread over ranks; centers (K, D).
 * Candidates are drawn with probability proportional to the potential in exact integers:
 * r uniform in [0, total), the candidate is the first row whose running sum exceeds r. */
static int kmeans_plusplus(slex_kmeans_state *st, const slex_kmeans_sample *s, const slex_exact_comm *comm,
                           float *centers, float *work, slex_error *err) {
    const int k = st->k, dim = st->dim;
    const int trials = 2 + (int)log((double)k);
    int rank, size;
    slex_exact_comm_rank_size(comm, &rank, &size);
    const int64_t nloc = s->hi - s->lo;
    double *xx = malloc(((size_t)nloc + 1) * sizeof *xx);
    double *closest = malloc(((size_t)nloc + 1) * sizeof *closest);
    double *cand_d = malloc(((size_t)nloc * (size_t)trials + 1) * sizeof *cand_d);
    int64_t *closest_q = malloc(((size_t)nloc + 1) * sizeof *closest_q); /* closest in fixed point */
    /* exchange buffer: trials candidate potentials | trials x D candidate bits | per-rank totals */
    int64_t *exch = malloc(((size_t)trials * (size_t)(dim + 1) + (size_t)size) * sizeof *exch);
    float *cand = malloc((size_t)trials * (size_t)dim * sizeof *cand);
    int rc = 0;
    if (!xx || !closest || !cand_d || !closest_q || !exch || !cand) {
        rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "kmeans: out of memory in k-means++");
        goto done;
    }
    for (int64_t i = 0; i < nloc; i++) xx[i] = slex_assign_sq_norm(s->x + i * dim, dim);

    /* First centre: a uniformly drawn sample row. */
    {
        int64_t p = (int64_t)slex_rng_below(&st->rng, (uint64_t)s->n_global);
        memset(exch, 0, (size_t)dim * sizeof *exch);
        if (p >= s->lo && p < s->hi) slex_kmeans_pack_floats(s->x + (p - s->lo) * dim, dim, exch);
        if (slex_exact_comm_sum(comm, exch, dim, err)) { rc = -1; goto done; }
        slex_kmeans_unpack_floats(exch, dim, centers);
        candidate_sq_dists(s->x, xx, nloc, dim, centers, 1, closest, work);
    }
    for (int c = 1; c < k; c++) {
        double mx = slex_kmeans_max_of(closest, nloc);
        if (slex_exact_comm_max(comm, &mx, 1, err)) { rc = -1; goto done; }
        const int e = slex_exactsum_exponent(mx, s->n_global);
        const double scale = ldexp(1.0, e);
        /* Per-rank totals of the potential, exchanged so every rank knows where each lies. */
        int64_t *rank_total = exch + (size_t)trials * (size_t)(dim + 1);
        memset(rank_total, 0, (size_t)size * sizeof *rank_total);
        /* Converted once: the draws below scan these again for every candidate. */
        for (int64_t i = 0; i < nloc; i++) {
            closest_q[i] = slex_exactsum_fixed(closest[i], scale);
            rank_total[rank] += closest_q[i];
        }
        if (slex_exact_comm_sum(comm, rank_total, size, err)) { rc = -1; goto done; }
        int64_t total = 0, before = 0;
        for (int r = 0; r < size; r++) {
            if (r < rank) before += rank_total[r];
            total += rank_total[r];
        }
        /* Draw the candidates; the rank holding each writes its row and vector. */
        memset(exch, 0, (size_t)trials * (size_t)(dim + 1) * sizeof *exch);
        for (int t = 0; t < trials; t++) {
            int64_t r = total > 0 ? (int64_t)slex_rng_below(&st->rng, (uint64_t)total) : 0;
            int64_t found = -1;
            if (total == 0) {
                if (s->lo == 0 && s->hi > 0) found = 0; /* all potentials zero: row 0, as sklearn */
            } else if (r >= before && r < before + rank_total[rank]) {
                int64_t run = before;
                for (int64_t i = 0; i < nloc; i++) {
                    run += closest_q[i];
                    if (run > r) {
                        found = i;
                        break;
                    }
                }
            }
            if (found >= 0) {
                slex_kmeans_pack_floats(s->x + found * dim, dim, exch + trials + (size_t)t * dim);
            }
        }
        if (slex_exact_comm_sum(comm, exch, (int64_t)trials * (dim + 1), err)) { rc = -1; goto done; }
        slex_kmeans_unpack_floats(exch + trials, trials * dim, cand);
        /* Potential after adding each candidate (exact: same exponent, values only shrink). */
        candidate_sq_dists(s->x, xx, nloc, dim, cand, trials, cand_d, work);
        int64_t *pot = exch;
        memset(pot, 0, (size_t)trials * sizeof *pot);
        for (int t = 0; t < trials; t++) {
            double *dt = cand_d + (int64_t)t * nloc;
            for (int64_t i = 0; i < nloc; i++) {
                if (closest[i] < dt[i]) dt[i] = closest[i];
                pot[t] += slex_exactsum_fixed(dt[i], scale);
            }
        }
        if (slex_exact_comm_sum(comm, pot, trials, err)) { rc = -1; goto done; }
        int best = 0;
        for (int t = 1; t < trials; t++)
            if (pot[t] < pot[best]) best = t;
        memcpy(closest, cand_d + (int64_t)best * nloc, (size_t)nloc * sizeof *closest);
        memcpy(centers + (size_t)c * dim, cand + (size_t)best * dim, (size_t)dim * sizeof *centers);
    }
done:
    free(xx);
    free(closest);
    free(cand_d);
    free(closest_q);
    free(exch);
    free(cand);
    return rc;
}

/* Inertia of the sample slice to centers, exact over ranks. */
static int sample_inertia(const slex_kmeans_state *st, const slex_kmeans_sample *s, const float *centers,
                          const slex_exact_comm *comm, float *work, int32_t *labels, double *dist,
                          double *inertia, slex_error *err) {
    const int64_t nloc = s->hi - s->lo;
    slex_assign_nearest(centers, st->k, st->dim, s->x, nloc, labels, dist, work);
    return slex_exactsum_f64(dist, nloc, 1, 0, s->n_global, comm, inertia, err);
}

/* tol * mean per-dimension variance of the sample (sklearn _tolerance), exact over ranks. */
static int scaled_tolerance(slex_kmeans_state *st, const slex_kmeans_sample *s, const slex_exact_comm *comm,
                            slex_error *err) {
    const int dim = st->dim;
    const int64_t nloc = s->hi - s->lo;
    int64_t *q = calloc((size_t)dim * 2, sizeof *q);
    if (!q) return slex_fail_as(err, SLEX_ERR_RESOURCE, "kmeans: out of memory");
    double m[2] = {slex_kmeans_max_abs(s->x, nloc * dim), 0};
    m[1] = m[0] * m[0];
    if (slex_exact_comm_max(comm, m, 2, err)) {
        free(q);
        return -1;
    }
    const int e1 = slex_exactsum_exponent(m[0], s->n_global);
    const int e2 = slex_exactsum_exponent(m[1], s->n_global);
    const double s1 = ldexp(1.0, e1), s2 = ldexp(1.0, e2);
    for (int64_t i = 0; i < nloc; i++)
        for (int d = 0; d < dim; d++) {
            double v = s->x[i * dim + d];
            q[d] += slex_exactsum_fixed(v, s1);
            q[dim + d] += slex_exactsum_fixed(v * v, s2);
        }
    if (slex_exact_comm_sum(comm, q, 2 * dim, err)) {
        free(q);
        return -1;
    }
    double var_sum = 0;
    for (int d = 0; d < dim; d++) {
        double mean = ldexp((double)q[d], -e1) / (double)s->n_global;
        double mean_sq = ldexp((double)q[dim + d], -e2) / (double)s->n_global;
        var_sum += mean_sq - mean * mean;
    }
    st->tol_scaled = st->opts.tol * var_sum / dim;
    free(q);
    return 0;
}

/* sklearn's init="random": K distinct rows of the init sample, chosen uniformly (a partial
 * Fisher-Yates shuffle of the sample positions).  Every rank fetches the K frames itself. */
static int random_init(slex_kmeans_state *st, const slex_kmeans_source *src, int draw, float *centers,
                       slex_error *err) {
    const int64_t n = st->init_size;
    int64_t *frames = malloc((size_t)n * sizeof *frames);
    if (!frames) return slex_fail_as(err, SLEX_ERR_RESOURCE, "kmeans: out of memory for a sample of %lld frames", (long long)n);
    slex_kmeans_draw_frames(st, n, draw, frames);
    for (int c = 0; c < st->k; c++) {
        int64_t j = c + (int64_t)slex_rng_below(&st->rng, (uint64_t)(n - c));
        int64_t t = frames[c];
        frames[c] = frames[j];
        frames[j] = t;
    }
    int rc = slex_kmeans_fetch_checked(src, frames, st->k, centers, err);
    free(frames);
    return rc;
}

int slex_kmeans_initialise(slex_kmeans_state *st, const slex_kmeans_source *src, const slex_exact_comm *comm,
                           slex_error *err) {
    const int k = st->k, dim = st->dim;
    slex_kmeans_sample valid = {0}, init = {0};
    size_t nc = (size_t)k * (size_t)dim;
    float *work = malloc(slex_assign_work_floats(k > 64 ? k : 64, dim) * sizeof *work);
    float *trial = malloc(nc * sizeof *trial);
    int32_t *labels = malloc(((size_t)st->init_size + 1) * sizeof *labels);
    double *dist = malloc(((size_t)st->init_size + 1) * sizeof *dist);
    int rc = 0;
    if (!work || !trial || !labels || !dist) {
        rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "kmeans: out of memory for the initialisation");
        goto done;
    }
    if (slex_kmeans_sample_make(&valid, st, src, comm, st->init_size, 1, err)) { rc = -1; goto done; }
    double best = 0;
    for (int run = 0; run < st->opts.n_init; run++) {
        int draw = st->init_size < st->n_frames;
        if (st->opts.init == SLEX_KMEANS_INIT_RANDOM) {
            if (random_init(st, src, draw, trial, err)) { rc = -1; goto done; }
        } else {
            if (slex_kmeans_sample_make(&init, st, src, comm, st->init_size, draw, err)) { rc = -1; goto done; }
            if (kmeans_plusplus(st, &init, comm, trial, work, err)) { rc = -1; goto done; }
            slex_kmeans_sample_free(&init);
        }
        double inertia;
        if (sample_inertia(st, &valid, trial, comm, work, labels, dist, &inertia, err)) { rc = -1; goto done; }
        if (run == 0 || inertia < best) {
            best = inertia;
            memcpy(st->centers, trial, nc * sizeof *trial);
        }
    }
    if (st->opts.tol > 0 && scaled_tolerance(st, &valid, comm, err)) { rc = -1; goto done; }
    st->init_inertia = best;
    memset(st->counts, 0, (size_t)k * sizeof *st->counts);
    st->phase = SLEX_KMEANS_PHASE_MINIBATCH;
    st->step = 0;
done:
    slex_kmeans_sample_free(&valid);
    slex_kmeans_sample_free(&init);
    free(work);
    free(trial);
    free(labels);
    free(dist);
    return rc;
}

