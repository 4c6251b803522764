/* Writes a feature store from a simple binary file, so tests can plant exact features:
 *   int64 n_utts, int32 dim, then per utterance: int64 frames, frames*dim float32.
 * usage: make_store IN.bin OUT_DIR NSHARD FRAME_RATE [i32] [MANIFEST]
 * With i32 the values are int32 and the store is a label store (dim 1), as slex-label writes.
 * Utterance ids are u00000, u00001, ...; shards follow fairseq's boundaries.  With MANIFEST (a
 * manifest whose lines are those ids), the store gets its manifest.tsv as a stage's would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpus/shard.h"
#include "store/store.h"

int main(int argc, char **argv) {
    int labels = 0;
    const char *manifest = NULL;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "i32")) labels = 1;
        else manifest = argv[i];
    }
    if (argc < 5 || argc > 7 || (argc == 7 && (!labels || !manifest)))
        return fprintf(stderr, "usage: make_store IN.bin OUT_DIR NSHARD FRAME_RATE [i32] [MANIFEST]\n"), 2;
    FILE *f = fopen(argv[1], "rb");
    int64_t n_utts;
    int32_t dim;
    if (!f || fread(&n_utts, 8, 1, f) != 1 || fread(&dim, 4, 1, f) != 1) return fprintf(stderr, "bad input\n"), 1;
    int nshard = atoi(argv[3]);
    slex_store_meta meta = {labels ? SLEX_STORE_I32 : SLEX_STORE_F32, dim, atof(argv[4]), "make_store",
                            "{\"test\":true}"};
    slex_error err = {{0}};
    char fp[17];
    if (slex_store_prepare(argv[2], &meta, nshard, 1, fp, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    for (int s = 0; s < nshard; s++) {
        int64_t start, end;
        if (slex_shard_range(n_utts, nshard, s, &start, &end, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        slex_store_writer *w = slex_store_writer_open(argv[2], s, nshard, &meta, fp, &err);
        if (!w) return fprintf(stderr, "%s\n", err.msg), 1;
        for (int64_t u = start; u < end; u++) {
            int64_t frames;
            if (fread(&frames, 8, 1, f) != 1) return fprintf(stderr, "truncated input\n"), 1;
            float *x = malloc((size_t)(frames * dim + 1) * sizeof *x);
            if (fread(x, sizeof *x, (size_t)(frames * dim), f) != (size_t)(frames * dim))
                return fprintf(stderr, "truncated input\n"), 1;
            char id[32];
            snprintf(id, sizeof id, "u%05lld", (long long)u);
            if (slex_store_writer_append(w, id, x, frames))
                return fprintf(stderr, "%s\n", slex_store_writer_error(w)->msg), 1;
            free(x);
        }
        if (slex_store_writer_commit(w, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    }
    slex_store_summary sum;
    if (slex_store_finalize(argv[2], nshard, fp, manifest, &sum, &err) || !sum.finalized)
        return fprintf(stderr, "finalize: %s\n", err.msg), 1;
    fclose(f);
    return 0;
}
