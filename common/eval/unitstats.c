#include "eval/unitstats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* -p log p summed over counts (nats), from integer counts and their total. */
static double entropy_of(const int64_t *counts, int64_t n, int64_t stride, double total) {
    double h = 0;
    for (int64_t i = 0; i < n; i++) {
        double c = (double)counts[i * stride];
        if (c > 0) h -= c / total * log(c / total);
    }
    return h;
}

void slex_joint_information(const int64_t *joint, int na, int nb, double *mutual_info, double *entropy_a,
                            double *entropy_b) {
    int64_t *row = calloc((size_t)na + 1, sizeof *row), *col = calloc((size_t)nb + 1, sizeof *col);
    int64_t total = 0;
    for (int a = 0; a < na; a++)
        for (int b = 0; b < nb; b++) {
            int64_t c = joint[(int64_t)a * nb + b];
            if (row) row[a] += c;
            if (col) col[b] += c;
            total += c;
        }
    *mutual_info = *entropy_a = *entropy_b = 0;
    if (row && col && total > 0) {
        double t = (double)total, mi = 0;
        for (int a = 0; a < na; a++)
            for (int b = 0; b < nb; b++) {
                double c = (double)joint[(int64_t)a * nb + b];
                /* p(a,b) log(p(a,b) / (p(a) p(b))) = c/t * log(c t / (ra cb)) */
                if (c > 0) mi += c / t * log(c * t / ((double)row[a] * (double)col[b]));
            }
        *mutual_info = mi > 0 ? mi : 0; /* rounding can leave -1e-17 for independent tables */
        *entropy_a = entropy_of(row, na, 1, t);
        *entropy_b = entropy_of(col, nb, 1, t);
    }
    free(row);
    free(col);
}

void slex_purity_compute(const int64_t *joint, int n_phones, int n_units, slex_purity *out) {
    memset(out, 0, sizeof *out);
    int64_t total = 0, phone_best = 0, unit_best = 0;
    for (int y = 0; y < n_phones; y++) {
        int64_t best = 0;
        for (int z = 0; z < n_units; z++) {
            int64_t c = joint[(int64_t)y * n_units + z];
            total += c;
            if (c > best) best = c;
        }
        unit_best += best; /* max over z for this phone: cluster purity */
    }
    for (int z = 0; z < n_units; z++) {
        int64_t best = 0;
        for (int y = 0; y < n_phones; y++)
            if (joint[(int64_t)y * n_units + z] > best) best = joint[(int64_t)y * n_units + z];
        phone_best += best;
    }
    out->frames = total;
    if (total == 0) return;
    double h_units;
    slex_joint_information(joint, n_phones, n_units, &out->mutual_info, &out->phone_entropy, &h_units);
    out->phone_purity = (double)phone_best / (double)total;
    out->cluster_purity = (double)unit_best / (double)total;
    out->pnmi = out->phone_entropy > 0 ? out->mutual_info / out->phone_entropy : 0;
}

void slex_usage_compute(const int64_t *unit_counts, int n_units, slex_usage *out) {
    int64_t total = 0;
    out->units_used = 0;
    for (int z = 0; z < n_units; z++) {
        total += unit_counts[z];
        out->units_used += unit_counts[z] > 0;
    }
    out->perplexity = total > 0 ? exp(entropy_of(unit_counts, n_units, 1, (double)total)) : 0;
}

int64_t slex_unit_runs(const int32_t *units, int64_t n) {
    int64_t runs = n > 0;
    for (int64_t i = 1; i < n; i++) runs += units[i] != units[i - 1];
    return runs;
}

/* Minimum-cost assignment of rows 1..n to distinct columns 1..m (n <= m) of cost(i, j), with
 * potentials u, v (the classic O(n^2 m) Hungarian algorithm).  row_of[j] gets the row matched
 * to column j (0 = none).  All arithmetic is on int64: exact. */
typedef struct hungarian_work {
    int64_t *u, *v, *minv;
    int32_t *way;
    char *used;
} hungarian_work;

static void hungarian(const int64_t *joint, int na, int nb, int transposed, int n, int m, int32_t *row_of,
                      hungarian_work *w) {
    /* cost(i, j) = -matched frames of (row i-1, column j-1) in the orientation with n <= m. */
#define COST(i, j) (-(transposed ? joint[(int64_t)((j) - 1) * nb + ((i) - 1)] : joint[(int64_t)((i) - 1) * nb + ((j) - 1)]))
    (void)na;
    const int64_t inf = INT64_MAX / 4;
    for (int i = 1; i <= n; i++) {
        row_of[0] = i;
        int j0 = 0;
        for (int j = 0; j <= m; j++) {
            w->minv[j] = inf;
            w->used[j] = 0;
        }
        do {
            w->used[j0] = 1;
            int i0 = row_of[j0], j1 = 0;
            int64_t delta = inf;
            for (int j = 1; j <= m; j++) {
                if (w->used[j]) continue;
                int64_t cur = COST(i0, j) - w->u[i0] - w->v[j];
                if (cur < w->minv[j]) {
                    w->minv[j] = cur;
                    w->way[j] = j0;
                }
                if (w->minv[j] < delta) {
                    delta = w->minv[j];
                    j1 = j;
                }
            }
            for (int j = 0; j <= m; j++) {
                if (w->used[j]) {
                    w->u[row_of[j]] += delta;
                    w->v[j] -= delta;
                } else {
                    w->minv[j] -= delta;
                }
            }
            j0 = j1;
        } while (row_of[j0] != 0);
        do {
            int j1 = w->way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
        } while (j0);
    }
#undef COST
}

int64_t slex_best_matching(const int64_t *joint, int na, int nb, int32_t *match, slex_error *err) {
    for (int a = 0; a < na; a++) match[a] = -1;
    if (na == 0 || nb == 0) return 0;
    int transposed = na > nb; /* the algorithm wants rows <= columns */
    int n = transposed ? nb : na, m = transposed ? na : nb;
    hungarian_work w = {calloc((size_t)n + 1, sizeof(int64_t)), calloc((size_t)m + 1, sizeof(int64_t)),
                        calloc((size_t)m + 1, sizeof(int64_t)), calloc((size_t)m + 1, sizeof(int32_t)),
                        calloc((size_t)m + 1, 1)};
    int32_t *row_of = calloc((size_t)m + 1, sizeof *row_of);
    int64_t matched = -1;
    if (w.u && w.v && w.minv && w.way && w.used && row_of) {
        hungarian(joint, na, nb, transposed, n, m, row_of, &w);
        matched = 0;
        for (int j = 1; j <= m; j++) {
            if (!row_of[j]) continue;
            int a = transposed ? j - 1 : row_of[j] - 1, b = transposed ? row_of[j] - 1 : j - 1;
            match[a] = b;
            matched += joint[(int64_t)a * nb + b];
        }
    } else {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for a %d x %d matching", na, nb);
    }
    free(w.u);
    free(w.v);
    free(w.minv);
    free(w.way);
    free(w.used);
    free(row_of);
    return matched;
}
