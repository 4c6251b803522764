/* plot: PNG figures through gnuplot (Debian's gnuplot-nox, pngcairo terminal).
 *
 * Each figure is a data file and a gnuplot script beside the PNG (NAME.dat, NAME.gp, NAME.png in
 * the output directory), so a user can restyle a figure by editing its script.  Data are
 * written with fixed formats and gnuplot's output carries no timestamps: the same numbers give
 * byte-identical PNG files. */
#ifndef SLEX_EVAL_PLOT_H
#define SLEX_EVAL_PLOT_H

#include <stdint.h>

#include "core/err.h"

/* Unit usage: the share of frames of each unit, units sorted by decreasing share (a log-scale
 * rank plot, as codebook usage is usually shown). */
int slex_plot_usage(const char *dir, const char *name, const char *title, const int64_t *per_unit, int k,
                    slex_error *err);

/* Phone-by-unit co-occurrence p(phone | unit) as a heat map (the HuBERT paper's figure): units on
 * x, grouped by their most frequent phone in phone order, phones on y; unused units left out. */
int slex_plot_cooc(const char *dir, const char *name, const char *title, const int64_t *joint /* (P,K) */, int n_phones,
                   int k, const char *const *phone_labels, slex_error *err);

/* Clustered bars: value[s * n_groups + g] for system s in group g (e.g. PNMI per system and
 * language); NaN = missing. */
int slex_plot_bars(const char *dir, const char *name, const char *title, const char *ylabel,
                   const char *const *systems, int n_systems, const char *const *groups, int n_groups,
                   const double *value, slex_error *err);

/* Curves against x: y[c * n + i] of curve c at x[i] (NaN = no point). */
int slex_plot_curves(const char *dir, const char *name, const char *title, const char *xlabel, const char *ylabel,
                     const double *x, int64_t n, const char *const *curves, int n_curves, const double *y,
                     slex_error *err);

#endif
