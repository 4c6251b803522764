/* train_mask_dump: prints slex_mask_compute's masks for the configurations read from stdin,
 * one per line: "seed B T mask_prob mask_length min_masks".  Output per configuration:
 * "ok C" (C masked frames per row) then B lines of 0/1 characters, or "error MESSAGE".
 * Driven by tests/test_train_mask.py, which compares with fairseq's algorithm. */
#include <stdio.h>
#include <stdlib.h>

#include "core/rng.h"
#include "train/mask.h"

int main(void) {
    unsigned long long seed;
    int B, T, len, min_masks;
    double prob;
    while (scanf("%llu %d %d %lf %d %d", &seed, &B, &T, &prob, &len, &min_masks) == 6) {
        slex_mask_options o = {prob, len, min_masks};
        slex_rng rng;
        slex_rng_seed(&rng, seed);
        uint8_t *mask = malloc((size_t)B * (size_t)T);
        slex_error err = {{0}};
        int c = 0;
        if (!mask) return 1;
        if (slex_mask_compute(&o, B, T, &rng, mask, &c, &err)) {
            printf("error %s\n", err.msg);
        } else {
            printf("ok %d\n", c);
            for (int b = 0; b < B; b++) {
                for (int t = 0; t < T; t++) putchar('0' + mask[(size_t)b * T + t]);
                putchar('\n');
            }
        }
        free(mask);
    }
    return 0;
}
