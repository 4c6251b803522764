/* manifest: fairseq audio manifests (.tsv) and their columns side file.
 *
 * Line 1 is the root directory; every further line is `relpath<TAB>num_samples`.  That is all
 * fairseq reads: HubertDataset's load_audio asserts exactly two columns, and the
 * simple_kmeans dump_*_feature.py scripts unpack exactly two.  So every manifest slex writes
 * has exactly these two columns, and further columns (slex-synth's lang and speaker,
 * mHuBERT-147's lang_id and dataset) go to the manifest's side file (columns_path):
 *
 *   <manifest without ".tsv">.columns     line 1: "relpath<TAB>name<TAB>name..." (the names of
 *                                         the columns); line N (N >= 2): the relpath of the
 *                                         manifest's line N, then that line's columns
 *
 * so the manifest with its side file pasted column-wise gives back the wide manifest.  On input
 * slex accepts both: extra columns on the manifest's lines (kept, as before), or a side file
 * beside it (its lines must follow the manifest's, relpath for relpath; a side file next to a
 * manifest that also has extra columns is an error).  Either way they reach the entries'
 * `extra`, which the stages carry to the manifests they write (STORE/manifest.tsv, slex-label's
 * {split}.tsv), side file included.
 *
 * A line that cannot be parsed is kept as an entry with `malformed` set (and the reason), so that
 * line counts — and hence fairseq's shard boundaries — stay those of the file, and the stage can
 * reject the line with its number instead of losing it.  Malformed: an empty line, no tab, an
 * empty path, a sample count that is not a non-negative integer, a path that is not UTF-8
 * (stores keep ids as UTF-8 strings).  A NUL byte anywhere, the root line included, fails the
 * whole read (the file is not a manifest). */
#ifndef SLEX_MANIFEST_H
#define SLEX_MANIFEST_H

#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

typedef struct slex_manifest_entry {
    char *relpath;       /* column 1 (for a malformed line: the raw line) */
    int64_t num_samples; /* column 2; -1 when malformed */
    char *extra;         /* columns 3.. (or the side file's) joined by tabs, or NULL */
    int64_t line;        /* 1-based line number in the file (the root is line 1) */
    const char *malformed; /* NULL, or why the line could not be parsed */
} slex_manifest_entry;

typedef struct slex_manifest {
    char *path;
    char *root;
    char *columns;                /* names of the extra columns, tab-separated, when a side file
                                     gave them; NULL otherwise */
    int64_t n;                    /* entries held */
    int64_t first;                /* index (0-based, over all entry lines) of entries[0] */
    int64_t total;                /* entry lines in the whole file */
    slex_manifest_entry *entries; /* entries first .. first + n - 1 */
} slex_manifest;

/* The side file of a manifest: path without a final ".tsv", then ".columns". */
int slex_manifest_columns_path(const char *manifest, char *buf, size_t size, slex_error *err);

/* Reads the whole manifest (a line costs ~100 bytes). */
slex_manifest *slex_manifest_read(const char *path, slex_error *err);
/* Reads the file once, keeping only entries [start, end) (0-based over entry lines) but counting
 * all of them in ->total: memory is one shard's, whatever the corpus.  end may exceed total. */
slex_manifest *slex_manifest_read_range(const char *path, int64_t start, int64_t end, slex_error *err);
void slex_manifest_free(slex_manifest *m);

/* root + "/" + relpath into buf; fails when it does not fit. */
int slex_manifest_audio_path(const slex_manifest *m, int64_t i, char *buf, size_t size, slex_error *err);

/* ---- streaming ---------------------------------------------------------------------------- */

/* One pass over a manifest (and its side file), one entry at a time: memory is one line. */
typedef struct slex_manifest_reader slex_manifest_reader;

slex_manifest_reader *slex_manifest_reader_open(const char *path, slex_error *err);
const char *slex_manifest_reader_root(const slex_manifest_reader *r);
const char *slex_manifest_reader_columns(const slex_manifest_reader *r); /* or NULL */
/* The next entry line into *e (its strings belong to the reader until the next call): 1, or 0
 * at the end, or -1 with the file and line named in err. */
int slex_manifest_reader_next(slex_manifest_reader *r, slex_manifest_entry *e, slex_error *err);
void slex_manifest_reader_close(slex_manifest_reader *r);

/* Writes a manifest for fairseq (root, then relpath<TAB>num_samples) and, when any entry has
 * extra columns, its side file; both under temporary names until commit, which renames the side
 * file first and the manifest last (a manifest present means both are complete) and removes a
 * side file left by an earlier version of the manifest when this one has none. */
typedef struct slex_manifest_writer slex_manifest_writer;

/* columns: the names of the extra columns (tab-separated), or NULL: "column3", "column4", ... */
slex_manifest_writer *slex_manifest_writer_open(const char *path, const char *root, const char *columns,
                                                slex_error *err);
/* relpath must hold no tab, CR or LF (fairseq splits on them); extra may be NULL. */
int slex_manifest_writer_add(slex_manifest_writer *w, const char *relpath, int64_t num_samples, const char *extra,
                             slex_error *err);
/* Frees w, whatever the result. */
int slex_manifest_writer_commit(slex_manifest_writer *w, slex_error *err);
/* Removes the temporary files; frees w. */
void slex_manifest_writer_abort(slex_manifest_writer *w);

/* Copies a manifest and its side file (or the absence of one) to dst, atomically as above. */
int slex_manifest_copy(const char *src, const char *dst, slex_error *err);

/* Utterance ids (relpaths) that appear on more than one line of the manifest: their count in
 * *n_duplicates and, when there are any, the first as "path (lines A and B)" in example.  One
 * pass over the file (a second one only when some path hashes repeat); memory 8 bytes per entry
 * line while it runs. */
int slex_manifest_find_duplicates(const char *path, int64_t *n_duplicates, char *example, size_t size,
                                  slex_error *err);

#endif
