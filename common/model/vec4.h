/* vec4: four-float vectors for the elementwise maths of the kernels (GCC vector extension:
 * SSE2 on x86-64 whatever the build machine, so the results do not depend on it).  exp and
 * erf run four lanes at a time; libm's scalar erff/expf would cost more than the convolutions
 * they follow.  NaN inputs give NaN outputs, as in PyTorch. */
#ifndef SLEX_VEC4_H
#define SLEX_VEC4_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f v4_load(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void v4_store(float *p, v4f v) { memcpy(p, &v, sizeof v); }
static inline v4f v4_splat(float x) { return (v4f){x, x, x, x}; }
static inline v4f v4_select(v4i mask, v4f a, v4f b) { return (v4f)((mask & (v4i)a) | (~mask & (v4i)b)); }
/* a > b ? a : b and a < b ? a : b per lane (b when either is NaN): one maxps / minps. */
#if defined(__SSE__)
static inline v4f v4_max(v4f a, v4f b) { return (v4f)_mm_max_ps((__m128)a, (__m128)b); }
static inline v4f v4_min(v4f a, v4f b) { return (v4f)_mm_min_ps((__m128)a, (__m128)b); }
#else
static inline v4f v4_max(v4f a, v4f b) { return v4_select(a > b, a, b); }
static inline v4f v4_min(v4f a, v4f b) { return v4_select(a < b, a, b); }
#endif
static inline v4f v4_abs(v4f x) { return (v4f)((v4i)x & 0x7fffffff); }
static inline float v4_hsum(v4f v) { return (v[0] + v[1]) + (v[2] + v[3]); }

/* exp(x) for x <= 0, relative error < 3e-7: x = n ln2 + r, |r| <= ln2/2, 2^n built in the
 * exponent bits, e^r by its degree-6 Taylor polynomial.  Below -87 it returns ~e^-87; NaN stays
 * NaN. */
static inline v4f v4_exp_nonpos(v4f x) {
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    x = v4_max(v4_splat(-87.0f), x); /* NaN stays NaN: maxps returns its second operand */
    v4f t = x * 1.44269504f + shifter;
    v4f n = t - shifter;
    v4f r = x - n * 0.693145752f - n * 1.42860677e-06f; /* ln2 split in two for accuracy */
    v4f p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    v4i scale = (((v4i)t - 0x4B400000) + 127) << 23;
    return p * (v4f)scale;
}

/* erf(x), absolute error < 5e-7: the odd rational minimax approximation x P(x^2) / Q(x^2) on
 * [-4, 4] used by XLA/Eigen for float erf; |erf| rounds to 1 beyond 4. */
static inline v4f v4_erf(v4f x) {
    x = v4_min(v4_max(x, v4_splat(-4.0f)), v4_splat(4.0f));
    v4f x2 = x * x;
    v4f p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
    p = x2 * p - 2.10102402082508e-06f;
    p = x2 * p - 5.69250639462346e-05f;
    p = x2 * p - 7.34990630326855e-04f;
    p = x2 * p - 2.95459980854025e-03f;
    p = x2 * p - 1.60960333262415e-02f;
    v4f q = x2 * -1.45660718464996e-05f - 2.13374055278905e-04f;
    q = x2 * q - 1.68282697438203e-03f;
    q = x2 * q - 7.37332916720468e-03f;
    q = x2 * q - 1.42647390514189e-02f;
    return x * p / q;
}

/* Exact (erf) GELU; NaN through the outer factor x. */
static inline v4f v4_gelu(v4f x) { return 0.5f * x * (1.0f + v4_erf(x * (float)M_SQRT1_2)); }

/* GELU'(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).  One exp serves both:
 * Phi(-|x|) = erfc(|x| / sqrt 2) / 2 with erfc(z) = t P(t) exp(-z^2), t = 1 / (1 + p z)
 * (Abramowitz & Stegun 7.1.26, absolute error < 1.5e-7, as PyTorch's vectorised erf), and
 * exp(-z^2) = sqrt(2 pi) phi(x). */
static inline v4f v4_gelu_grad(v4f x) {
    const float inv_sqrt_2pi = 0.398942280401432678f;
    v4f t = 1.0f / (1.0f + 0.3275911f * (v4_abs(x) * (float)M_SQRT1_2));
    v4f poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    v4f e = v4_exp_nonpos(x * x * -0.5f);
    v4f tail = 0.5f * poly * e; /* Phi(-|x|) */
    return v4_select(x < 0.0f, tail, 1.0f - tail) + x * inv_sqrt_2pi * e;
}

#endif
