#include "train/mask.h"

#include <stdlib.h>
#include <string.h>

#define T slex_mask_options
static const slex_option mask_rows[] = {
    {SLEX_OPT_DOUBLE_FIELD(T, mask_prob), .name = "mask-prob", .def = 0.8, .min = 0, .max = 1, .param = "mask_prob",
     .help = "share of frames that start a masked span"},
    {SLEX_OPT_INT_FIELD(T, mask_length), .name = "mask-length", .def = 10, .min = 1, .max = 100000,
     .param = "mask_length", .help = "frames per masked span"},
};
#undef T
const slex_option_table slex_mask_option_table = SLEX_OPTION_TABLE(mask_rows);

void slex_mask_options_default(slex_mask_options *opts) {
    slex_options_defaults(&slex_mask_option_table, opts);
    opts->min_masks = 2;
}

int slex_mask_options_validate(const slex_mask_options *opts, slex_error *err) {
    if (!(opts->mask_prob >= 0.0 && opts->mask_prob <= 1.0))
        return slex_fail_as(err, SLEX_ERR_INPUT, "mask-prob %g: must be in [0, 1]", opts->mask_prob);
    if (opts->mask_length < 1)
        return slex_fail_as(err, SLEX_ERR_INPUT, "mask-length %d: must be at least 1", opts->mask_length);
    if (opts->min_masks < 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "min-masks %d: must be at least 0", opts->min_masks);
    return 0;
}

/* The first k entries of a (n values) become k distinct values drawn uniformly (partial
 * Fisher-Yates, in the draw order the header documents). */
static void choose_distinct(int32_t *a, int64_t n, int64_t k, slex_rng *rng) {
    for (int64_t j = 0; j < k; j++) {
        int64_t r = j + (int64_t)slex_rng_below(rng, (uint64_t)(n - j));
        int32_t t = a[j];
        a[j] = a[r];
        a[r] = t;
    }
}

int slex_mask_compute(const slex_mask_options *opts, int B, int T, slex_rng *rng, uint8_t *mask,
                      int *n_masked_per_row, slex_error *err) {
    if (B < 1 || T < 1) return slex_fail_as(err, SLEX_ERR_INTERNAL, "mask: batch of %d rows of %d frames", B, T);
    memset(mask, 0, (size_t)B * (size_t)T);
    if (n_masked_per_row) *n_masked_per_row = 0;
    if (opts->mask_prob <= 0.0) return 0;
    /* Span starts are drawn from at most max(T, num_mask + 1) values. */
    int64_t max_spans = (int64_t)(opts->mask_prob * T / opts->mask_length + 1.0);
    if (max_spans < opts->min_masks) max_spans = opts->min_masks;
    int64_t cap = T > max_spans + 1 ? T : max_spans + 1;
    int32_t *a = malloc((size_t)cap * sizeof *a);
    int *count = malloc((size_t)B * sizeof *count);
    if (!a || !count) {
        free(a);
        free(count);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "mask: out of memory");
    }
    int rc = 0, smallest = T;
    for (int b = 0; b < B && !rc; b++) {
        uint8_t *row = mask + (int64_t)b * T;
        int64_t num_mask = (int64_t)(opts->mask_prob * T / opts->mask_length + slex_rng_uniform(rng));
        if (num_mask < opts->min_masks) num_mask = opts->min_masks;
        int64_t min_len = opts->mask_length;
        if (T - min_len <= num_mask) min_len = T - num_mask - 1;
        int64_t n = T - min_len; /* >= num_mask + 1 */
        for (int64_t i = 0; i < n; i++) a[i] = (int32_t)i;
        choose_distinct(a, n, num_mask, rng);
        for (int64_t j = 0; j < num_mask; j++)
            for (int64_t o = 0; o < opts->mask_length && a[j] + o < T; o++) row[a[j] + o] = 1;
        int c = 0;
        for (int t = 0; t < T; t++) c += row[t];
        if (c >= T)
            rc = slex_fail_as(err, SLEX_ERR_INPUT,
                              "mask: every one of the %d frames of row %d would be masked (mask_prob %g, "
                              "mask_length %d): the utterance is too short",
                              T, b, opts->mask_prob, opts->mask_length);
        count[b] = c;
        if (c < smallest) smallest = c;
    }
    for (int b = 0; b < B && !rc; b++) {
        if (count[b] <= smallest) continue;
        uint8_t *row = mask + (int64_t)b * T;
        int64_t n = 0;
        for (int t = 0; t < T; t++)
            if (row[t]) a[n++] = t;
        choose_distinct(a, n, smallest, rng);
        memset(row, 0, (size_t)T);
        for (int j = 0; j < smallest; j++) row[a[j]] = 1;
    }
    if (!rc && n_masked_per_row) *n_masked_per_row = smallest;
    free(a);
    free(count);
    return rc;
}
