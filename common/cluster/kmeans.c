#include "cluster/kmeans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/assign.h"
#include "cluster/kmeans_init.h"
#include "cluster/lloyd.h"
#include "core/exactsum.h"

void slex_kmeans_accumulate(const float *x, int64_t n, int dim, const int32_t *labels,
                            const double *dist, int exponent_x, int exponent_d, int64_t *sums,
                            int64_t *counts, int64_t *dist_sum) {
    const double scale_x = ldexp(1.0, exponent_x), scale_d = ldexp(1.0, exponent_d);
    for (int64_t i = 0; i < n; i++) {
        int64_t *s = sums + (int64_t)labels[i] * dim;
        const float *xi = x + i * dim;
        for (int d = 0; d < dim; d++) s[d] += slex_exactsum_fixed(xi[d], scale_x);
        counts[labels[i]]++;
        if (dist && dist_sum) *dist_sum += slex_exactsum_fixed(dist[i], scale_d);
    }
}

void slex_kmeans_minibatch_update(slex_kmeans_state *state, const int64_t *sums,
                                  const int64_t *counts, int exponent_x) {
    const int dim = state->dim;
    const double unscale = ldexp(1.0, -exponent_x);
    for (int c = 0; c < state->k; c++) {
        if (counts[c] <= 0) continue; /* sklearn: centre kept as it is */
        float *cen = state->centers + (size_t)c * dim;
        const int64_t *s = sums + (size_t)c * dim;
        const double old_count = (double)state->counts[c];
        const double new_count = (double)(state->counts[c] + counts[c]);
        for (int d = 0; d < dim; d++)
            cen[d] = (float)(((double)cen[d] * old_count + (double)s[d] * unscale) / new_count);
        state->counts[c] += counts[c];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The mini-batch driver */

typedef struct minibatch_work {
    int64_t *frames; /* (B) */
    float *x;        /* (slice, D) */
    int32_t *labels;
    double *dist;
    float *work;
    int64_t *reduce; /* (K*D + K + 1) sums | counts | inertia */
    float *old;      /* (K, D) for the tol check, or NULL */
} minibatch_work;

static void minibatch_work_free(minibatch_work *w) {
    free(w->frames);
    free(w->x);
    free(w->labels);
    free(w->dist);
    free(w->work);
    free(w->reduce);
    free(w->old);
    memset(w, 0, sizeof *w);
}

static int minibatch_work_alloc(minibatch_work *w, const slex_kmeans_state *st, int64_t slice_rows,
                                slex_error *err) {
    memset(w, 0, sizeof *w);
    size_t nc = (size_t)st->k * (size_t)st->dim;
    w->frames = malloc((size_t)st->batch_size * sizeof *w->frames);
    w->x = malloc(((size_t)slice_rows * (size_t)st->dim + 1) * sizeof *w->x);
    w->labels = malloc(((size_t)slice_rows + 1) * sizeof *w->labels);
    w->dist = malloc(((size_t)slice_rows + 1) * sizeof *w->dist);
    w->work = malloc(slex_assign_work_floats(st->k, st->dim) * sizeof *w->work);
    w->reduce = malloc((nc + (size_t)st->k + 1) * sizeof *w->reduce);
    if (st->opts.tol > 0) w->old = malloc(nc * sizeof *w->old);
    if (!w->frames || !w->x || !w->labels || !w->dist || !w->work || !w->reduce ||
        (st->opts.tol > 0 && !w->old)) {
        minibatch_work_free(w);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "kmeans: out of memory for a mini-batch of %d frames", st->batch_size);
    }
    return 0;
}

/* sklearn: reassign centres whose count is below reassignment_ratio * max count to uniformly
 * chosen distinct batch rows (at most half the batch, the lowest counts first). */
static int random_reassign(slex_kmeans_state *st, minibatch_work *w, int64_t lo, int64_t hi,
                           const slex_exact_comm *comm, slex_error *err) {
    const int k = st->k, dim = st->dim;
    const int64_t B = st->batch_size;
    int64_t max_count = 0;
    for (int c = 0; c < k; c++)
        if (st->counts[c] > max_count) max_count = st->counts[c];
    const double limit = st->opts.reassignment_ratio * (double)max_count;
    int *chosen = malloc((size_t)k * sizeof *chosen);
    int *order = malloc((size_t)k * sizeof *order);
    int64_t *rows = malloc((size_t)B * sizeof *rows);
    int64_t *exch = NULL;
    int rc = 0;
    if (!chosen || !order || !rows) {
        rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "kmeans: out of memory in reassignment");
        goto done;
    }
    int n_low = 0;
    for (int c = 0; c < k; c++) {
        chosen[c] = (double)st->counts[c] < limit;
        n_low += chosen[c];
    }
    if (n_low == 0) goto done;
    const int64_t keep = B / 2; /* int(0.5 * batch_size) */
    if (n_low > 0.5 * (double)B) {
        /* Only the `keep` lowest counts (ties: lower index first) may be reassigned. */
        for (int c = 0; c < k; c++) order[c] = c;
        for (int i = 1; i < k; i++) { /* insertion sort by (count, index): k is small */
            int v = order[i], j = i;
            while (j > 0 && st->counts[order[j - 1]] > st->counts[v]) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = v;
        }
        for (int i = (int)keep; i < k; i++) chosen[order[i]] = 0;
        n_low = 0;
        for (int c = 0; c < k; c++) n_low += chosen[c];
    }
    if (n_low == 0) goto done;
    /* n_low distinct batch rows: partial Fisher-Yates over 0..B-1. */
    for (int64_t i = 0; i < B; i++) rows[i] = i;
    for (int i = 0; i < n_low; i++) {
        int64_t j = i + (int64_t)slex_rng_below(&st->rng, (uint64_t)(B - i));
        int64_t t = rows[i];
        rows[i] = rows[j];
        rows[j] = t;
    }
    exch = calloc((size_t)n_low * (size_t)dim, sizeof *exch);
    if (!exch) {
        rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "kmeans: out of memory in reassignment");
        goto done;
    }
    for (int i = 0; i < n_low; i++)
        if (rows[i] >= lo && rows[i] < hi) slex_kmeans_pack_floats(w->x + (rows[i] - lo) * dim, dim, exch + (size_t)i * dim);
    if (slex_exact_comm_sum(comm, exch, (int64_t)n_low * dim, err)) { rc = -1; goto done; }
    int64_t min_kept = -1;
    for (int c = 0; c < k; c++)
        if (!chosen[c] && (min_kept < 0 || st->counts[c] < min_kept)) min_kept = st->counts[c];
    for (int c = 0, i = 0; c < k; c++) {
        if (!chosen[c]) continue;
        slex_kmeans_unpack_floats(exch + (size_t)i * dim, dim, st->centers + (size_t)c * dim);
        st->counts[c] = min_kept;
        i++;
    }
done:
    free(chosen);
    free(order);
    free(rows);
    free(exch);
    return rc;
}

/* sklearn MiniBatchKMeans._mini_batch_convergence: returns 1 to stop. */
static int minibatch_converged(slex_kmeans_state *st, double batch_inertia, double centers_sq_diff) {
    batch_inertia /= st->batch_size;
    st->last_inertia = batch_inertia;
    if (st->step == 0) return 0; /* the first step's inertia comes from the initialisation */
    const int first = !st->has_ewa; /* sklearn: _ewa_inertia (and _ewa_inertia_min) still None */
    if (first) {
        st->ewa_inertia = batch_inertia;
        st->has_ewa = 1;
    } else {
        double alpha = st->batch_size * 2.0 / (double)(st->n_frames + 1);
        if (alpha > 1) alpha = 1;
        st->ewa_inertia = st->ewa_inertia * (1 - alpha) + batch_inertia * alpha;
    }
    if (st->tol_scaled > 0.0 && centers_sq_diff <= st->tol_scaled) {
        st->stop_reason = SLEX_KMEANS_STOP_TOL;
        return 1;
    }
    if (first || st->ewa_inertia < st->ewa_inertia_min) {
        st->no_improvement = 0;
        st->ewa_inertia_min = st->ewa_inertia;
    } else {
        st->no_improvement++;
    }
    if (st->opts.max_no_improvement > 0 && st->no_improvement >= st->opts.max_no_improvement) {
        st->stop_reason = SLEX_KMEANS_STOP_NO_IMPROVEMENT;
        return 1;
    }
    return 0;
}

static int minibatch_step(slex_kmeans_state *st, const slex_kmeans_source *src, const slex_exact_comm *comm,
                          minibatch_work *w, int *stop, slex_error *err) {
    const int k = st->k, dim = st->dim;
    const int64_t B = st->batch_size;
    const size_t nc = (size_t)k * (size_t)dim;
    int rank, size;
    slex_exact_comm_rank_size(comm, &rank, &size);
    int64_t lo, hi;
    slex_kmeans_slice(B, rank, size, &lo, &hi);
    for (int64_t i = 0; i < B; i++) w->frames[i] = (int64_t)slex_rng_below(&st->rng, (uint64_t)st->n_frames);
    /* sklearn _random_reassign: due when a centre is empty or every 10 K frames. */
    st->since_reassign += B;
    int reassign_due = 0;
    for (int c = 0; c < k && !reassign_due; c++) reassign_due = st->counts[c] == 0;
    if (reassign_due || st->since_reassign >= 10 * (int64_t)k) {
        st->since_reassign = 0;
        reassign_due = 1;
    }
    const int64_t nloc = hi - lo;
    if (slex_kmeans_fetch_checked(src, w->frames + lo, nloc, w->x, err)) return -1;
    slex_assign_nearest(st->centers, k, dim, w->x, nloc, w->labels, w->dist, w->work);
    double mx[2] = {slex_kmeans_max_abs(w->x, nloc * dim), slex_kmeans_max_of(w->dist, nloc)};
    if (slex_exact_comm_max(comm, mx, 2, err)) return -1;
    const int ex = slex_exactsum_exponent(mx[0], B), ed = slex_exactsum_exponent(mx[1], B);
    int64_t *sums = w->reduce, *counts = w->reduce + nc, *inertia_q = w->reduce + nc + k;
    memset(w->reduce, 0, (nc + (size_t)k + 1) * sizeof *w->reduce);
    slex_kmeans_accumulate(w->x, nloc, dim, w->labels, w->dist, ex, ed, sums, counts, inertia_q);
    if (slex_exact_comm_sum(comm, w->reduce, (int64_t)(nc + (size_t)k + 1), err)) return -1;
    const double batch_inertia = ldexp((double)*inertia_q, -ed);
    if (w->old) memcpy(w->old, st->centers, nc * sizeof *w->old);
    slex_kmeans_minibatch_update(st, sums, counts, ex);
    if (reassign_due && st->opts.reassignment_ratio > 0 && random_reassign(st, w, lo, hi, comm, err)) return -1;
    double diff = 0;
    if (w->old)
        for (size_t i = 0; i < nc; i++) {
            double t = (double)st->centers[i] - (double)w->old[i];
            diff += t * t;
        }
    *stop = minibatch_converged(st, batch_inertia, diff);
    st->step++;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The Lloyd driver */

/* The buffers of a pass over all frames (one rank's slice of a chunk); kept over the passes
 * of the Lloyd phase, as fresh pages for ~100 MB per pass cost more than the pass's arithmetic. */
typedef struct pass_buffers {
    int64_t *frames;
    float *x;
    int32_t *labels;
    double *dist;
    float *work;
    int64_t *reduce;
    int checked; /* a whole pass went through these buffers: every frame is known finite */
} pass_buffers;

static void pass_buffers_free(pass_buffers *b) {
    free(b->frames);
    free(b->x);
    free(b->labels);
    free(b->dist);
    free(b->work);
    free(b->reduce);
    memset(b, 0, sizeof *b);
}

static int pass_buffers_alloc(pass_buffers *b, int k, int dim, int64_t chunk, const slex_exact_comm *comm,
                              slex_error *err) {
    int rank, size;
    slex_exact_comm_rank_size(comm, &rank, &size);
    int64_t max_slice = 0;
    for (int r = 0; r < size; r++) {
        int64_t lo, hi;
        slex_kmeans_slice(chunk, r, size, &lo, &hi);
        if (hi - lo > max_slice) max_slice = hi - lo;
    }
    b->frames = malloc((size_t)max_slice * sizeof *b->frames + 1);
    b->x = malloc(((size_t)max_slice * (size_t)dim + 1) * sizeof *b->x);
    b->labels = malloc(((size_t)max_slice + 1) * sizeof *b->labels);
    b->dist = malloc(((size_t)max_slice + 1) * sizeof *b->dist);
    b->work = malloc(slex_assign_work_floats(k, dim) * sizeof *b->work);
    b->reduce = malloc(((size_t)k * (size_t)dim + (size_t)k + 1) * sizeof *b->reduce);
    if (!b->frames || !b->x || !b->labels || !b->dist || !b->work || !b->reduce) {
        pass_buffers_free(b);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "kmeans: out of memory for a pass in chunks of %lld frames", (long long)chunk);
    }
    return 0;
}

/* One pass over all frames in chunks of `chunk` (global order), each reduced exactly, the chunk
 * results accumulated in double in chunk order.  acc (K*D) / acc_counts (K) may be NULL.
 * buffers from pass_buffers_alloc with the same k, dim, chunk and comm. */
static int full_pass(const float *centers, int k, int dim, const slex_kmeans_source *src,
                     const slex_exact_comm *comm, int64_t chunk, slex_lloyd *bounds, pass_buffers *buf,
                     double *acc, int64_t *acc_counts, double *inertia, slex_error *err) {
    int rank, size;
    slex_exact_comm_rank_size(comm, &rank, &size);
    const size_t nc = (size_t)k * (size_t)dim;
    const size_t nred = (acc ? nc + (size_t)k : 0) + 1;
    int64_t *frames = buf->frames, *reduce = buf->reduce;
    float *x = buf->x, *work = buf->work;
    int32_t *labels = buf->labels;
    double *dist = buf->dist;
    int rc = 0;
    *inertia = 0;
    int64_t local_first = 0; /* this rank's frames numbered in pass order, for the bounds */
    if (bounds) slex_lloyd_begin(bounds, centers);
    for (int64_t c0 = 0; c0 < src->n_frames; c0 += chunk) {
        const int64_t n = src->n_frames - c0 < chunk ? src->n_frames - c0 : chunk;
        int64_t lo, hi;
        slex_kmeans_slice(n, rank, size, &lo, &hi);
        const int64_t nloc = hi - lo;
        for (int64_t i = 0; i < nloc; i++) frames[i] = c0 + lo + i;
        /* Frames fetched by an earlier pass over these buffers were checked for NaN/Inf then. */
        if (buf->checked ? nloc > 0 && src->fetch(src->ctx, frames, nloc, x, err)
                         : slex_kmeans_fetch_checked(src, frames, nloc, x, err)) {
            rc = -1;
            goto done;
        }
        if (bounds) {
            slex_lloyd_assign(bounds, local_first, x, nloc, labels, dist);
            local_first += nloc;
        } else {
            slex_assign_nearest(centers, k, dim, x, nloc, labels, dist, work);
        }
        double mx[2] = {slex_kmeans_max_abs(x, nloc * dim), slex_kmeans_max_of(dist, nloc)};
        if (slex_exact_comm_max(comm, mx, 2, err)) { rc = -1; goto done; }
        const int ex = slex_exactsum_exponent(mx[0], n), ed = slex_exactsum_exponent(mx[1], n);
        memset(reduce, 0, nred * sizeof *reduce);
        int64_t *inertia_q = reduce + nred - 1;
        if (acc) {
            slex_kmeans_accumulate(x, nloc, dim, labels, dist, ex, ed, reduce, reduce + nc, inertia_q);
        } else {
            const double scale = ldexp(1.0, ed);
            for (int64_t i = 0; i < nloc; i++) *inertia_q += slex_exactsum_fixed(dist[i], scale);
        }
        if (slex_exact_comm_sum(comm, reduce, (int64_t)nred, err)) { rc = -1; goto done; }
        *inertia += ldexp((double)*inertia_q, -ed);
        if (acc) {
            const double unscale = ldexp(1.0, -ex);
            for (size_t i = 0; i < nc; i++) acc[i] += (double)reduce[i] * unscale;
            for (int c = 0; c < k; c++) acc_counts[c] += reduce[nc + (size_t)c];
        }
    }
    buf->checked = 1;
done:
    return rc;
}

int slex_kmeans_inertia(const float *centers, int k, int dim, const slex_kmeans_source *src,
                        const slex_exact_comm *comm, int chunk, double *inertia, slex_error *err) {
    if (src->dim != dim) return slex_fail_as(err, SLEX_ERR_INTERNAL, "kmeans: centres have %d dimensions, data %d", dim, src->dim);
    if (chunk < 1) return slex_fail_as(err, SLEX_ERR_INTERNAL, "kmeans: chunk must be >= 1");
    pass_buffers buf;
    if (pass_buffers_alloc(&buf, k, dim, chunk, comm, err)) return -1;
    int rc = full_pass(centers, k, dim, src, comm, chunk, NULL, &buf, NULL, NULL, inertia, err);
    pass_buffers_free(&buf);
    return rc;
}

static int lloyd_pass(slex_kmeans_state *st, const slex_kmeans_source *src, const slex_exact_comm *comm,
                      slex_lloyd *bounds, pass_buffers *buf, slex_error *err) {
    const int k = st->k, dim = st->dim;
    const size_t nc = (size_t)k * (size_t)dim;
    double *acc = calloc(nc, sizeof *acc);
    int64_t *counts = calloc((size_t)k, sizeof *counts);
    int rc = 0;
    if (!acc || !counts) {
        rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "kmeans: out of memory for a Lloyd pass");
    } else {
        double inertia;
        rc = full_pass(st->centers, k, dim, src, comm, st->opts.lloyd_chunk, bounds, buf, acc, counts, &inertia, err);
        if (!rc) {
            for (int c = 0; c < k; c++) {
                if (counts[c] == 0) continue; /* no points: the centre stays */
                for (int d = 0; d < dim; d++)
                    st->centers[(size_t)c * dim + d] = (float)(acc[(size_t)c * dim + d] / (double)counts[c]);
            }
            st->last_inertia = inertia / (double)st->n_frames;
            st->lloyd_pass++;
        }
    }
    free(acc);
    free(counts);
    return rc;
}

/* Bounds for this rank's frames of a Lloyd pass (the slices of every chunk), grouped on the
 * current centres. */
static slex_lloyd *open_bounds(const slex_kmeans_state *st, const slex_exact_comm *comm, slex_error *err) {
    int rank, size;
    slex_exact_comm_rank_size(comm, &rank, &size);
    const int64_t chunk = st->opts.lloyd_chunk;
    int64_t n_local = 0;
    for (int64_t c0 = 0; c0 < st->n_frames; c0 += chunk) {
        int64_t lo, hi;
        slex_kmeans_slice(st->n_frames - c0 < chunk ? st->n_frames - c0 : chunk, rank, size, &lo, &hi);
        n_local += hi - lo;
    }
    return slex_lloyd_open(st->centers, st->k, st->dim, n_local, (size_t)st->opts.bounds_mb << 20, err);
}

static int call_checkpoint(slex_kmeans_checkpoint_fn cb, void *ctx, const slex_kmeans_state *st,
                           slex_error *err) {
    if (!cb) return 0;
    int rc = cb(ctx, st, err);
    /* A rank that failed only because another rank did has no message of its own: it stays
     * silent (the stage logs non-empty messages), instead of logging an empty "checkpoint:". */
    if (rc < 0) return err && err->msg[0] ? slex_fail_wrap(err, "kmeans: checkpoint") : -1;
    return rc ? 1 : 0;
}

int slex_kmeans_fit(slex_kmeans_state *st, const slex_kmeans_source *src, const slex_exact_comm *comm,
                    slex_kmeans_checkpoint_fn checkpoint, void *checkpoint_ctx, slex_error *err) {
    if (src->dim != st->dim || src->n_frames != st->n_frames)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "kmeans: the state is for %lld frames of dimension %d, the data has %lld of %d",
                            (long long)st->n_frames, st->dim, (long long)src->n_frames, src->dim);
    if (comm && comm->size > 1 && (!comm->sum_i64 || !comm->max_f64 || comm->rank < 0 || comm->rank >= comm->size))
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "kmeans: incomplete communicator (rank %d of %d)", comm->rank, comm->size);
    int rc;
    if (st->phase == SLEX_KMEANS_PHASE_INIT) {
        if (slex_kmeans_initialise(st, src, comm, err)) return -1;
        if ((rc = call_checkpoint(checkpoint, checkpoint_ctx, st, err)) != 0) return rc;
    }
    if (st->phase == SLEX_KMEANS_PHASE_MINIBATCH) {
        int rank, size;
        slex_exact_comm_rank_size(comm, &rank, &size);
        int64_t lo, hi;
        slex_kmeans_slice(st->batch_size, rank, size, &lo, &hi);
        minibatch_work w;
        if (minibatch_work_alloc(&w, st, hi - lo, err)) return -1;
        int stop = 0;
        while (st->step < st->n_steps && !stop) {
            if (minibatch_step(st, src, comm, &w, &stop, err)) {
                minibatch_work_free(&w);
                return -1;
            }
            if (!stop && st->step < st->n_steps && st->opts.checkpoint_every > 0 &&
                st->step % st->opts.checkpoint_every == 0) {
                if ((rc = call_checkpoint(checkpoint, checkpoint_ctx, st, err)) != 0) {
                    minibatch_work_free(&w);
                    return rc;
                }
            }
        }
        minibatch_work_free(&w);
        st->phase = SLEX_KMEANS_PHASE_LLOYD;
        if ((rc = call_checkpoint(checkpoint, checkpoint_ctx, st, err)) != 0) return rc;
    }
    slex_lloyd *bounds = NULL;
    pass_buffers buf = {0};
    rc = 0;
    while (st->phase == SLEX_KMEANS_PHASE_LLOYD) {
        if (st->lloyd_pass >= st->opts.lloyd_passes) {
            st->phase = SLEX_KMEANS_PHASE_DONE;
            break;
        }
        if (!buf.x && pass_buffers_alloc(&buf, st->k, st->dim, st->opts.lloyd_chunk, comm, err)) {
            rc = -1;
            break;
        }
        if (!bounds && st->opts.bounds_mb > 0 &&
            !(bounds = open_bounds(st, comm, err))) {
            rc = -1;
            break;
        }
        if (lloyd_pass(st, src, comm, bounds, &buf, err)) {
            rc = -1;
            break;
        }
        st->last_computed_fraction = 1; /* without bounds every distance is computed */
        if (bounds) {
            slex_lloyd_stats stats;
            slex_lloyd_get_stats(bounds, &stats);
            st->last_computed_fraction = stats.computed_fraction;
        }
        if (st->lloyd_pass < st->opts.lloyd_passes &&
            (rc = call_checkpoint(checkpoint, checkpoint_ctx, st, err)) != 0)
            break;
    }
    slex_lloyd_close(bounds);
    pass_buffers_free(&buf);
    if (rc) return rc;
    return call_checkpoint(checkpoint, checkpoint_ctx, st, err) < 0 ? -1 : 0;
}
