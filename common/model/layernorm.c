#include "model/layernorm.h"

#include <math.h>

void slex_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                            int64_t N, int C, float eps) {
    for (int64_t t = 0; t < N; t++) {
        const float *x = inp + t * C;
        float *y = out + t * C;
        double s = 0.0, sq = 0.0;
        for (int c = 0; c < C; c++) s += x[c];
        double m = s / C;
        for (int c = 0; c < C; c++) sq += (x[c] - m) * (x[c] - m);
        float r = (float)(1.0 / sqrt(sq / C + eps)), mf = (float)m;
        for (int c = 0; c < C; c++) y[c] = (x[c] - mf) * r * w[c] + b[c];
        mean[t] = mf;
        rstd[t] = r;
    }
}

/* Per row n = (x - mean) rstd, dn = dout w: dx = rstd (dn - mean(dn) - n mean(dn n)). */
void slex_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                             const float *mean, const float *rstd, int64_t N, int C) {
    for (int64_t t = 0; t < N; t++) {
        const float *x = inp + t * C, *g = dout + t * C;
        double m = mean[t], r = rstd[t], sdn = 0.0, sdnn = 0.0;
        for (int c = 0; c < C; c++) {
            double n = (x[c] - m) * r, dn = (double)g[c] * w[c];
            sdn += dn;
            sdnn += dn * n;
            if (dw) dw[c] += (float)(g[c] * n);
            if (db) db[c] += g[c];
        }
        if (!dinp) continue;
        float *d = dinp + t * C;
        for (int c = 0; c < C; c++) {
            double n = (x[c] - m) * r, dn = (double)g[c] * w[c];
            d[c] = (float)(r * (dn - sdn / C - n * sdnn / C));
        }
    }
}
