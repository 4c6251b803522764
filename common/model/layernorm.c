#include "model/layernorm.h"

#include <math.h>

#include "model/vec4.h"

/* Rows are short (C <= a few thousand floats) and stay in L1 between the passes; the sums run
 * in two float vectors of four lanes each (eight partial sums), folded in a fixed order. */

/* sum over the row x (C) */
static inline float row_sum(const float *x, int C) {
    v4f s0 = v4_splat(0.0f), s1 = v4_splat(0.0f);
    int c = 0;
    for (; c + 8 <= C; c += 8) {
        s0 += v4_load(x + c);
        s1 += v4_load(x + c + 4);
    }
    float s = v4_hsum(s0 + s1);
    for (; c < C; c++) s += x[c];
    return s;
}

/* sum over the row of (x - m)^2 */
static inline float row_sq_dev(const float *x, float m, int C) {
    v4f s0 = v4_splat(0.0f), s1 = v4_splat(0.0f), vm = v4_splat(m);
    int c = 0;
    for (; c + 8 <= C; c += 8) {
        v4f d0 = v4_load(x + c) - vm, d1 = v4_load(x + c + 4) - vm;
        s0 += d0 * d0;
        s1 += d1 * d1;
    }
    float s = v4_hsum(s0 + s1);
    for (; c < C; c++) s += (x[c] - m) * (x[c] - m);
    return s;
}

/* (N, C) -> (N, C): y = (x - mean) rstd w + b per row, mean and rstd (N) kept. */
void slex_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                            int64_t N, int C, float eps) {
    const float inv_c = 1.0f / (float)C;
    for (int64_t t = 0; t < N; t++) {
        const float *x = inp + t * C;
        float *y = out + t * C;
        float m = row_sum(x, C) * inv_c;
        float r = (float)(1.0 / sqrt((double)(row_sq_dev(x, m, C) * inv_c) + eps));
        v4f vm = v4_splat(m), vr = v4_splat(r);
        int c = 0;
        for (; c + 4 <= C; c += 4)
            v4_store(y + c, (v4_load(x + c) - vm) * vr * v4_load(w + c) + v4_load(b + c));
        for (; c < C; c++) y[c] = (x[c] - m) * r * w[c] + b[c];
        mean[t] = m;
        rstd[t] = r;
    }
}

/* Per row n = (x - mean) rstd, dn = dout w: dx = rstd (dn - mean(dn) - n mean(dn n)),
 * dw += dout n, db += dout.  Two passes over the row: the sums (and dw, db), then dx. */
void slex_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                             const float *mean, const float *rstd, int64_t N, int C) {
    const float inv_c = 1.0f / (float)C;
    for (int64_t t = 0; t < N; t++) {
        const float *x = inp + t * C, *g = dout + t * C;
        const float m = mean[t], r = rstd[t];
        const v4f vm = v4_splat(m), vr = v4_splat(r);
        v4f sdn = v4_splat(0.0f), sdnn = v4_splat(0.0f);
        int c = 0;
        for (; c + 4 <= C; c += 4) {
            v4f gv = v4_load(g + c), n = (v4_load(x + c) - vm) * vr, dn = gv * v4_load(w + c);
            sdn += dn;
            sdnn += dn * n;
            if (dw) v4_store(dw + c, v4_load(dw + c) + gv * n);
            if (db) v4_store(db + c, v4_load(db + c) + gv);
        }
        float s1 = v4_hsum(sdn), s2 = v4_hsum(sdnn);
        for (int k = c; k < C; k++) {
            float n = (x[k] - m) * r, dn = g[k] * w[k];
            s1 += dn;
            s2 += dn * n;
            if (dw) dw[k] += g[k] * n;
            if (db) db[k] += g[k];
        }
        if (!dinp) continue;
        float *d = dinp + t * C;
        const float a = s1 * inv_c, bq = s2 * inv_c;
        const v4f va = v4_splat(a), vb = v4_splat(bq);
        for (c = 0; c + 4 <= C; c += 4) {
            v4f n = (v4_load(x + c) - vm) * vr;
            v4_store(d + c, vr * (v4_load(g + c) * v4_load(w + c) - va - n * vb));
        }
        for (; c < C; c++) {
            float n = (x[c] - m) * r;
            d[c] = r * (g[c] * w[c] - a - n * bq);
        }
    }
}
