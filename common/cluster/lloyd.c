#include "cluster/lloyd.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/assign.h"

enum {
    kGroupSize = 25,   /* centres per group: sgemm on 25 columns runs at ~0.6 of its peak */
    kMaxGroups = 64,
    kGroupIters = 5,   /* k-means iterations that group the centres */
    kRows = 1024,      /* frames examined together (the gathers of one group come from these) */
};

/* Frames needing more than this share of all distances are computed with one dense product. */
static const double kDenseShare = 0.5;

struct slex_lloyd {
    int k, dim, groups;
    int32_t *perm;        /* (K) centre index at each grouped position */
    int32_t *group_of;    /* (K) group of each centre */
    int32_t *group_start; /* (G+1) first grouped position of each group */
    float *grouped;       /* (K, D) centres in grouped order */
    float *cc;            /* (K) float ||c||^2 in grouped order, as slex_assign_nearest rounds it */
    float *centers;       /* (K, D) centres of the current pass; begin compares the new ones with them */
    double *group_drift;  /* (G) largest move of a centre of the group since the previous pass */
    float *drift_up;      /* (G) the same, as floats rounded up */
    double c_max;         /* largest ||c|| */
    int have_prev;
    int64_t n_state;  /* frames 0..n_state-1 keep bounds */
    int32_t *label;   /* (n_state) label at the previous pass, -1 before the first */
    float *lower;     /* (n_state, G) lower bound on the distance to the group's other centres */
    /* work for kRows frames */
    float *dots;      /* (kRows, K) x.c, grouped order */
    float *gathered;  /* (kRows, D) */
    float *gdots;     /* (kRows, kGroupSize max) products of one group */
    uint8_t *need;    /* (kRows, G) */
    double *s_old;    /* (kRows) exact distance to the previous label's centre */
    int32_t *rows;    /* (kRows) rows gathered for one group */
    float *cand_scores; /* (K) scores of the examined centres, group after group */
    int32_t *cand_ids;  /* (K) their centre indices */
    int max_group;
    int64_t computed, possible;
};

/* Float bounds rounded outwards: a lower bound never rises, an upper bound never falls. */
static float round_down(double v) {
    float f = (float)v;
    if ((double)f > v) f = nextafterf(f, -INFINITY);
    return f;
}

void slex_lloyd_close(slex_lloyd *l) {
    if (!l) return;
    free(l->perm);
    free(l->group_of);
    free(l->group_start);
    free(l->grouped);
    free(l->cc);
    free(l->centers);
    free(l->group_drift);
    free(l->drift_up);
    free(l->label);
    free(l->lower);
    free(l->dots);
    free(l->gathered);
    free(l->gdots);
    free(l->need);
    free(l->s_old);
    free(l->rows);
    free(l->cand_scores);
    free(l->cand_ids);
    free(l);
}

/* Groups of centres: a few k-means iterations on the centres themselves, started from every
 * (K/G)-th centre; empty groups are dropped.  Same result on every rank (same inputs). */
static int make_groups(slex_lloyd *l, const float *centers, int want, slex_error *err) {
    const int k = l->k, dim = l->dim;
    float *gc = malloc((size_t)want * (size_t)dim * sizeof *gc);
    double *sum = malloc((size_t)want * (size_t)dim * sizeof *sum);
    int64_t *count = malloc((size_t)want * sizeof *count);
    float *work = malloc(slex_assign_work_floats(want, dim) * sizeof *work);
    int32_t *renumber = malloc((size_t)want * sizeof *renumber);
    int rc = 0;
    if (!gc || !sum || !count || !work || !renumber) {
        rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "lloyd: out of memory grouping %d centres", k);
        goto done;
    }
    for (int g = 0; g < want; g++)
        memcpy(gc + (size_t)g * dim, centers + (size_t)((int64_t)g * k / want) * dim, (size_t)dim * sizeof *gc);
    for (int it = 0; it <= kGroupIters; it++) {
        slex_assign_nearest(gc, want, dim, centers, k, l->group_of, NULL, work);
        if (it == kGroupIters) break;
        memset(sum, 0, (size_t)want * (size_t)dim * sizeof *sum);
        memset(count, 0, (size_t)want * sizeof *count);
        for (int c = 0; c < k; c++) {
            count[l->group_of[c]]++;
            for (int d = 0; d < dim; d++) sum[(size_t)l->group_of[c] * dim + d] += centers[(size_t)c * dim + d];
        }
        for (int g = 0; g < want; g++)
            if (count[g] > 0)
                for (int d = 0; d < dim; d++) gc[(size_t)g * dim + d] = (float)(sum[(size_t)g * dim + d] / (double)count[g]);
    }
    memset(count, 0, (size_t)want * sizeof *count);
    for (int c = 0; c < k; c++) count[l->group_of[c]]++;
    int groups = 0;
    for (int g = 0; g < want; g++) renumber[g] = count[g] > 0 ? groups++ : -1;
    l->groups = groups;
    l->group_start = calloc((size_t)groups + 1, sizeof *l->group_start);
    if (!l->group_start) {
        rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "lloyd: out of memory");
        goto done;
    }
    for (int c = 0; c < k; c++) {
        l->group_of[c] = renumber[l->group_of[c]];
        l->group_start[l->group_of[c] + 1]++;
    }
    l->max_group = 0;
    for (int g = 0; g < groups; g++) {
        int size = l->group_start[g + 1];
        if (size > l->max_group) l->max_group = size;
        l->group_start[g + 1] += l->group_start[g];
    }
    int64_t *fill = count; /* reused: next free grouped position of each group */
    for (int g = 0; g < groups; g++) fill[g] = l->group_start[g];
    for (int c = 0; c < k; c++) l->perm[fill[l->group_of[c]]++] = c; /* by group, then index */
done:
    free(gc);
    free(sum);
    free(count);
    free(work);
    free(renumber);
    return rc;
}

slex_lloyd *slex_lloyd_open(const float *centers, int k, int dim, int64_t n_local, size_t max_bytes,
                            slex_error *err) {
    slex_lloyd *l = calloc(1, sizeof *l);
    if (!l) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "lloyd: out of memory");
        return NULL;
    }
    l->k = k;
    l->dim = dim;
    /* K/25 groups (at most 64); when bounds for every frame do not fit the budget, fewer groups
     * (down to 8); when even that does not fit, bounds for as many frames as fit. */
    int want = k / kGroupSize;
    if (want > kMaxGroups) want = kMaxGroups;
    if (want < 1) want = 1;
    if (n_local > 0 && max_bytes / (size_t)n_local < 4 + 4 * (size_t)want) {
        int fit = (int)(max_bytes / (size_t)n_local / 4) - 1; /* groups that fit for every frame */
        int least = want < 8 ? want : 8;
        want = fit > least ? fit : least;
    }
    l->perm = malloc((size_t)k * sizeof *l->perm);
    l->group_of = malloc((size_t)k * sizeof *l->group_of);
    if (!l->perm || !l->group_of || make_groups(l, centers, want, err)) {
        if (!l->perm || !l->group_of) slex_fail_as(err, SLEX_ERR_RESOURCE, "lloyd: out of memory");
        slex_lloyd_close(l);
        return NULL;
    }
    l->n_state = (int64_t)(max_bytes / (4 + 4 * (size_t)l->groups));
    if (l->n_state > n_local) l->n_state = n_local;
    const size_t nc = (size_t)k * (size_t)dim;
    l->grouped = malloc(nc * sizeof *l->grouped);
    l->cc = malloc((size_t)k * sizeof *l->cc);
    l->centers = malloc(nc * sizeof *l->centers);
    l->group_drift = malloc((size_t)l->groups * sizeof *l->group_drift);
    l->drift_up = malloc((size_t)l->groups * sizeof *l->drift_up);
    l->label = malloc(((size_t)l->n_state + 1) * sizeof *l->label);
    l->lower = malloc(((size_t)l->n_state * (size_t)l->groups + 1) * sizeof *l->lower);
    l->dots = malloc((size_t)kRows * (size_t)k * sizeof *l->dots);
    l->gathered = malloc((size_t)kRows * (size_t)dim * sizeof *l->gathered);
    l->gdots = malloc((size_t)kRows * (size_t)l->max_group * sizeof *l->gdots);
    l->need = malloc((size_t)kRows * (size_t)l->groups);
    l->s_old = malloc(kRows * sizeof *l->s_old);
    l->rows = malloc(kRows * sizeof *l->rows);
    l->cand_scores = malloc((size_t)k * sizeof *l->cand_scores);
    l->cand_ids = malloc((size_t)k * sizeof *l->cand_ids);
    if (!l->grouped || !l->cc || !l->centers || !l->group_drift || !l->drift_up || !l->label || !l->lower || !l->dots ||
        !l->gathered || !l->gdots || !l->need || !l->s_old || !l->rows || !l->cand_scores || !l->cand_ids) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "lloyd: out of memory for bounds of %lld frames x %d groups", (long long)l->n_state,
                  l->groups);
        slex_lloyd_close(l);
        return NULL;
    }
    for (int64_t i = 0; i < l->n_state; i++) l->label[i] = -1;
    return l;
}

void slex_lloyd_begin(slex_lloyd *l, const float *centers) {
    const int k = l->k, dim = l->dim;
    for (int g = 0; g < l->groups; g++) l->group_drift[g] = 0;
    for (int c = 0; c < k; c++) {
        const float *now = centers + (size_t)c * dim;
        if (l->have_prev) {
            /* rounded up: a rigorous bound on the true move */
            double move = sqrt(slex_assign_sq_dist(now, l->centers + (size_t)c * dim, dim)) * (1 + 1e-12);
            if (move > l->group_drift[l->group_of[c]]) l->group_drift[l->group_of[c]] = move;
        }
        memcpy(l->centers + (size_t)c * dim, now, (size_t)dim * sizeof *now);
    }
    for (int p = 0; p < k; p++) {
        memcpy(l->grouped + (size_t)p * dim, centers + (size_t)l->perm[p] * dim, (size_t)dim * sizeof *centers);
        l->cc[p] = (float)slex_assign_sq_norm(l->grouped + (size_t)p * dim, dim);
    }
    for (int g = 0; g < l->groups; g++) {
        float f = (float)l->group_drift[g];
        l->drift_up[g] = (double)f < l->group_drift[g] ? nextafterf(f, INFINITY) : f;
    }
    l->c_max = slex_assign_max_norm(centers, k, dim);
    l->have_prev = 1;
    l->computed = l->possible = 0;
}

/* Marks the groups frame `f` (row r) must examine in this pass, after loosening its bounds by the
 * moves since the previous pass (so: once per frame and pass).  The exact distance to the
 * previous label's centre, now moved, is the upper bound; a group whose lower bound exceeds it
 * holds no nearer centre.  Returns the number of centres to examine. */
static int frame_mark_groups(slex_lloyd *l, int64_t f, int r, const float *xr) {
    const int groups = l->groups;
    uint8_t *need = l->need + (size_t)r * groups;
    if (f >= l->n_state || l->label[f] < 0) {
        memset(need, 1, (size_t)groups);
        return l->k;
    }
    const double s_old = slex_assign_sq_dist(xr, l->centers + (size_t)l->label[f] * l->dim, l->dim);
    l->s_old[r] = s_old;
    const double upper = sqrt(s_old) * (1 + 1e-9);
    float *lower = l->lower + (size_t)f * groups;
    int centres = 0;
    /* lower - drift in float, then lowered by 2^-22 of itself: more than the rounding of the
     * subtraction (2^-24) and of the product, so the bound stays below the exact difference.
     * An infinite bound (a group with no other centre) stays infinite. */
    const float *drift = l->drift_up;
    for (int g = 0; g < groups; g++) {
        float v = lower[g] - drift[g];
        if (v < INFINITY) v -= fabsf(v) * 0x1p-22f + 0x1p-100f;
        lower[g] = v;
    }
    for (int g = 0; g < groups; g++) {
        need[g] = !((double)lower[g] > upper);
        if (need[g]) centres += l->group_start[g + 1] - l->group_start[g];
    }
    return centres;
}

/* The exact decision for row r among its examined groups (and its previous label), and its
 * new bounds. */
static void frame_decide(slex_lloyd *l, int64_t f, int r, const float *xr, int32_t *label, double *dist) {
    const int dim = l->dim, groups = l->groups;
    const uint8_t *need = l->need + (size_t)r * groups;
    const float *dots = l->dots + (size_t)r * l->k;
    const double xx = slex_assign_sq_norm(xr, dim);
    const double score_err = slex_assign_score_error(sqrt(xx), l->c_max, dim);
    int m = 0;
    for (int g = 0; g < groups; g++) {
        if (!need[g]) continue;
        for (int p = l->group_start[g]; p < l->group_start[g + 1]; p++) {
            l->cand_scores[m] = l->cc[p] - 2.0f * dots[p]; /* as slex_assign_nearest */
            l->cand_ids[m] = l->perm[p];
            m++;
        }
    }
    int32_t best;
    double best_d;
    slex_assign_decide(xr, l->centers, dim, l->cand_scores, l->cand_ids, m, sqrt(xx), l->c_max, &best, &best_d);
    const int has_bounds = f < l->n_state && l->label[f] >= 0;
    const int32_t old = has_bounds ? l->label[f] : -1;
    if (has_bounds && (l->s_old[r] < best_d || (l->s_old[r] == best_d && old < best))) {
        best = old;
        best_d = l->s_old[r];
    }
    *label = best;
    *dist = best_d;
    if (f >= l->n_state) return;
    /* New bounds of the examined groups: the lowest score other than the winner's, turned into a
     * distance that is certainly not above the true one (one square root per group). */
    float *lower = l->lower + (size_t)f * groups;
    int t = 0;
    for (int g = 0; g < groups; g++) {
        if (!need[g]) continue;
        const int end = t + l->group_start[g + 1] - l->group_start[g];
        float low = INFINITY;
        for (; t < end; t++) {
            if (l->cand_ids[t] == best) continue;
            const float sc = l->cand_scores[t];
            low = sc < low ? sc : low;
            if (!isfinite(sc)) low = -INFINITY; /* an overflowed score bounds nothing */
        }
        const double v = (double)low + xx - score_err;
        lower[g] = low == INFINITY ? INFINITY : round_down(v > 0 ? sqrt(v) * (1 - 1e-12) : 0.0);
    }
    if (old >= 0 && old != best && !need[l->group_of[old]]) { /* the old centre is now an "other" one */
        const float b = round_down(sqrt(l->s_old[r]) * (1 - 1e-12));
        if (b < lower[l->group_of[old]]) lower[l->group_of[old]] = b;
    }
    l->label[f] = best;
}

void slex_lloyd_assign(slex_lloyd *l, int64_t first, const float *x, int64_t n, int32_t *labels, double *dist) {
    const int k = l->k, dim = l->dim, groups = l->groups;
    for (int64_t r0 = 0; r0 < n; r0 += kRows) {
        const int rows = (int)(n - r0 < kRows ? n - r0 : kRows);
        const float *xb = x + r0 * dim;
        int64_t wanted = 0;
        for (int r = 0; r < rows; r++) wanted += frame_mark_groups(l, first + r0 + r, r, xb + (size_t)r * dim);
        l->possible += (int64_t)rows * k;
        if (wanted > kDenseShare * (double)rows * k) {
            /* (rows, K) = (rows, D) grouped^T; every examining frame examines every group */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, k, dim, 1.0f, xb, dim, l->grouped, dim, 0.0f,
                        l->dots, k);
            for (int r = 0; r < rows; r++) {
                uint8_t *need = l->need + (size_t)r * groups;
                int any = 0;
                for (int g = 0; g < groups && !any; g++) any = need[g];
                if (any) {
                    memset(need, 1, (size_t)groups);
                    l->computed += k; /* the rows that needed nothing are not counted */
                }
            }
        } else {
            for (int g = 0; g < groups; g++) {
                const int p0 = l->group_start[g], width = l->group_start[g + 1] - p0;
                int m = 0;
                for (int r = 0; r < rows; r++)
                    if (l->need[(size_t)r * groups + g]) {
                        l->rows[m] = r;
                        memcpy(l->gathered + (size_t)m * dim, xb + (size_t)r * dim, (size_t)dim * sizeof *xb);
                        m++;
                    }
                if (m == 0) continue;
                /* (m, width) = (m, D) (group's centres)^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, width, dim, 1.0f, l->gathered, dim,
                            l->grouped + (size_t)p0 * dim, dim, 0.0f, l->gdots, width);
                for (int t = 0; t < m; t++)
                    memcpy(l->dots + (size_t)l->rows[t] * k + p0, l->gdots + (size_t)t * width,
                           (size_t)width * sizeof *l->gdots);
                l->computed += (int64_t)m * width;
            }
        }
        for (int r = 0; r < rows; r++) {
            const int64_t f = first + r0 + r;
            const uint8_t *need = l->need + (size_t)r * groups;
            int any = 0;
            for (int g = 0; g < groups && !any; g++) any = need[g];
            if (any) {
                frame_decide(l, f, r, xb + (size_t)r * dim, &labels[r0 + r], &dist[r0 + r]);
            } else { /* no group can hold a nearer centre */
                labels[r0 + r] = l->label[f];
                dist[r0 + r] = l->s_old[r];
            }
        }
    }
}

void slex_lloyd_get_stats(const slex_lloyd *l, slex_lloyd_stats *stats) {
    stats->groups = l->groups;
    stats->frames_with_bounds = l->n_state;
    stats->computed_fraction = l->possible > 0 ? (double)l->computed / (double)l->possible : 0.0;
}
