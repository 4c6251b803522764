/* store: sharded HDF5 feature and label stores, the only way stages exchange data.
 *
 * A store is a directory:
 *   params.json                      what produced it (producer, parameters, fingerprint)
 *   part-00000-of-00004.h5           one HDF5 file per shard (below)
 *   part-00000-of-00004.json         the shard's record: bytes, CRC-32, counts, fingerprint
 *   part-00000-of-00004.rejects.tsv  the shard's rejected utterances (possibly empty)
 *   index.json                       all shards with their records and the content id, once all are done
 *   rejects.tsv, manifest.tsv        all rejects; the manifest of the stored utterances, in order
 *   manifest.columns                 its extra columns, when the input had any (corpus/manifest.h)
 * A shard file holds `feats` (float32, frames x dim) or `labels` (int32, frames), `lengths`
 * (int64 frames per utterance), `utt_ids` (UTF-8 strings: the manifest relpath) and root
 * attributes dim, frame_rate_hz, kind, producer, version, shard, nshard, fingerprint, params.
 * Rows are chunked (~512 KiB) so readers stream mini-batches without loading a shard.
 *
 * Crash safety: a shard is written under a temporary name of its process (slex_atomic:
 * <name>.h5.tmp-<host>-<pid>), flushed, checksummed and renamed; its record is written (the same
 * way) only after that, so a shard counts as done exactly when its record exists, names the
 * current fingerprint and matches the file's size and CRC-32.
 * Concurrency: a writer holds <name>.lock (core/lock.h) while it writes the shard, so a second
 * run on the same shard fails naming the first (host, pid) instead of destroying its files;
 * different shards (the tasks of a job array) are written at the same time freely.
 * Determinism: no timestamps in HDF5 objects, fixed chunking and write order, so the same rows
 * give byte-identical files whichever process wrote them. */
#ifndef SLEX_STORE_H
#define SLEX_STORE_H

#include <stdint.h>

#include <stddef.h>

#include "core/err.h"

typedef enum { SLEX_STORE_F32 = 0, SLEX_STORE_I32 = 1 } slex_store_dtype;

typedef struct slex_store_meta {
    slex_store_dtype dtype; /* F32 -> dataset "feats" (frames x dim); I32 -> "labels" (frames) */
    int dim;                /* values per frame (1 for labels) */
    double frame_rate_hz;   /* 100 for MFCC, 50 for HuBERT layers */
    const char *producer;   /* e.g. "slex-mfcc" (the version is added) */
    const char *params_json; /* canonical JSON object of everything that determines the rows */
} slex_store_meta;

/* ---- Writing ---------------------------------------------------------------------------- */

/* Creates dir if needed and records params.json.  When dir already holds a store made with
 * other parameters (or another nshard), fails with a message saying so, unless force is set, in
 * which case the new parameters replace the old ones (shards of the old ones are then redone).
 * *fingerprint receives the 16-hex-digit fingerprint of (meta, nshard). */
int slex_store_prepare(const char *dir, const slex_store_meta *meta, int nshard, int force, char fingerprint[17],
                       slex_error *err);

/* 1 when shard `shard` is complete and valid for `fingerprint` (record present and matching
 * the file's size and CRC-32), 0 when it must be (re)done, -1 on an I/O error. */
int slex_store_shard_is_done(const char *dir, int shard, int nshard, const char *fingerprint, slex_error *err);

typedef struct slex_store_writer slex_store_writer;

/* Takes the shard's lock (failing when another live run holds it), then starts the shard over. */
slex_store_writer *slex_store_writer_open(const char *dir, int shard, int nshard, const slex_store_meta *meta,
                                          const char *fingerprint, slex_error *err);
/* Appends one utterance: n_rows rows of meta->dim values of meta->dtype. */
int slex_store_writer_append(slex_store_writer *w, const char *utt_id, const void *rows, int64_t n_rows);
/* Records an utterance that was not stored: its manifest line, id and the reason. */
int slex_store_writer_reject(slex_store_writer *w, int64_t manifest_line, const char *utt_id, const char *reason);
/* Flushes, checksums and renames the shard into place, then writes its record; frees w. */
int slex_store_writer_commit(slex_store_writer *w, slex_error *err);
/* Removes the temporary file; frees w. */
void slex_store_writer_abort(slex_store_writer *w);
/* The last failure of w (message and kind). */
const slex_error *slex_store_writer_error(const slex_store_writer *w);

typedef struct slex_store_summary {
    int finalized;       /* 1 when every shard was done and index.json was written */
    int shards_done;
    int64_t utterances;  /* stored */
    int64_t frames;
    int64_t rejected;
} slex_store_summary;

/* When every shard of the store is done, writes index.json, rejects.tsv and (when manifest, a
 * manifest's path, is not NULL) manifest.tsv: its root and its lines that were stored, in order,
 * as relpath<TAB>num_samples, their extra columns in manifest.columns (streamed: memory does not
 * grow with the manifest).
 * Otherwise leaves the directory as it is and reports how many shards are done. */
int slex_store_finalize(const char *dir, int nshard, const char *fingerprint, const char *manifest,
                        slex_store_summary *summary, slex_error *err);

/* ---- Reading ---------------------------------------------------------------------------- */

typedef struct slex_store slex_store;

/* Opens a finalized store (its index.json).  Readers trust nothing they have not checked:
 *   - the index lists exactly part-0..part-(nshard-1), in order, each with bytes, CRC-32,
 *     utterances and frames, and its totals are the sum of its shards;
 *   - manifest.tsv, when the store has one, lists exactly the index's utterances;
 *   - the content id is computed from those entries (what every read is checked against), so an
 *     output that records it names the rows it read.
 * Each shard is checked when opened (below) and, for whole-shard reads, by its CRC-32. */
slex_store *slex_store_open(const char *dir, slex_error *err);
void slex_store_close(slex_store *s);
int slex_store_nshard(const slex_store *s);
int slex_store_dim(const slex_store *s);
slex_store_dtype slex_store_get_dtype(const slex_store *s);
double slex_store_frame_rate(const slex_store *s);
int64_t slex_store_frames(const slex_store *s);
int64_t slex_store_utterances(const slex_store *s);
int64_t slex_store_shard_frames(const slex_store *s, int shard);
int64_t slex_store_shard_utterances(const slex_store *s, int shard);
const char *slex_store_fingerprint(const slex_store *s);
/* Names the rows themselves (a hash of every shard's CRC-32 and size): what a later stage keys
 * its own outputs on, so that redone shards invalidate them. */
const char *slex_store_content_id(const slex_store *s);
/* The CRC-32 (8 hex digits) of the codebook a slex-label store's labels were assigned with, as
 * its params.json records it; NULL for any other store.  Two label stores with the same one
 * number the same units. */
const char *slex_store_codebook_crc32(const slex_store *s);
const char *slex_store_dir(const slex_store *s);

typedef struct slex_store_shard slex_store_shard;

/* Opens one shard file for reading.  Fails, naming the file and what differs, unless its size,
 * its attributes (shard, nshard, fingerprint, kind, dim, frame rate), its frame and utterance
 * counts agree with the index, and its utterance ids are the manifest's lines of this shard. */
slex_store_shard *slex_store_shard_open(const slex_store *s, int shard, slex_error *err);
void slex_store_shard_close(slex_store_shard *r);
int64_t slex_store_shard_num_utts(const slex_store_shard *r);
int64_t slex_store_shard_num_frames(const slex_store_shard *r);
const int64_t *slex_store_shard_lengths(const slex_store_shard *r);  /* frames per utterance */
const int64_t *slex_store_shard_offsets(const slex_store_shard *r);  /* n+1 row offsets */
const char *slex_store_shard_utt_id(const slex_store_shard *r, int64_t i);
/* Reads rows [start, start+count) into buf (count x dim values of the store's dtype), straight
 * from the file (the store never compresses).  The bytes read in file order are folded into a
 * running CRC-32 as they stream, so a whole-shard read checks the file at no extra I/O: */
int slex_store_shard_read_rows(slex_store_shard *r, int64_t start, int64_t count, void *buf, slex_error *err);
/* Reads the bytes the row reads have not passed yet (HDF5 metadata, skipped rows, the tail; all
 * of the file when nothing was read) and compares the file's CRC-32 with the index's.  A reader
 * calls it before it commits anything made from the shard: rows already returned are trusted
 * only once it succeeds.  Idempotent; the error names the shard and both CRCs. */
int slex_store_shard_verify(slex_store_shard *r, slex_error *err);
/* Reads the listed rows (any order, repeats allowed) into buf, row i of buf = rows[i].  Random
 * access for mini-batches: rows are read straight from their chunks' file offsets (the store
 * never compresses), so a row costs one small read, not a chunk (a run of consecutive rows in
 * one chunk, one read).  Such reads cannot check a
 * CRC: they rely on the checks of shard_open, and on a verify() pass made earlier (featpool
 * makes one when a pool is opened). */
int slex_store_shard_gather(slex_store_shard *r, const int64_t *rows, int64_t n, void *buf, slex_error *err);

/* "part-00003-of-00008" */
void slex_store_shard_name(int shard, int nshard, char *buf, size_t size);

#endif
