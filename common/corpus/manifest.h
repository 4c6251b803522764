/* manifest: fairseq audio manifests (.tsv).
 *
 * Line 1 is the root directory; every further line is `relpath<TAB>num_samples`, optionally
 * followed by more tab-separated columns (mHuBERT-147 adds lang_id and dataset), kept verbatim.
 * A line that cannot be parsed is kept as an entry with `malformed` set (and the reason), so that
 * line counts — and hence fairseq's shard boundaries — stay those of the file, and the stage can
 * reject the line with its number instead of losing it. */
#ifndef SLEX_MANIFEST_H
#define SLEX_MANIFEST_H

#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

typedef struct slex_manifest_entry {
    char *relpath;       /* column 1 (for a malformed line: the raw line) */
    int64_t num_samples; /* column 2; -1 when malformed */
    char *extra;         /* columns 3.. joined by tabs, or NULL */
    int64_t line;        /* 1-based line number in the file (the root is line 1) */
    const char *malformed; /* NULL, or why the line could not be parsed */
} slex_manifest_entry;

typedef struct slex_manifest {
    char *path;
    char *root;
    int64_t n;                    /* entries held */
    int64_t first;                /* index (0-based, over all entry lines) of entries[0] */
    int64_t total;                /* entry lines in the whole file */
    slex_manifest_entry *entries; /* entries first .. first + n - 1 */
} slex_manifest;

/* Reads the whole manifest (a line costs ~100 bytes). */
slex_manifest *slex_manifest_read(const char *path, slex_error *err);
/* Reads the file once, keeping only entries [start, end) (0-based over entry lines) but counting
 * all of them in ->total: memory is one shard's, whatever the corpus.  end may exceed total. */
slex_manifest *slex_manifest_read_range(const char *path, int64_t start, int64_t end, slex_error *err);
void slex_manifest_free(slex_manifest *m);

/* root + "/" + relpath into buf; fails when it does not fit. */
int slex_manifest_audio_path(const slex_manifest *m, int64_t i, char *buf, size_t size, slex_error *err);

/* Writes one entry as a manifest line (relpath, num_samples, extra columns). */
void slex_manifest_write_entry(FILE *f, const slex_manifest_entry *e);


#endif
