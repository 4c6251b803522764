#include "store/store.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/fileio.h"
#include "corpus/manifest.h"
#include "core/lock.h"
#include "store/h5util.h"

#define STORE_FORMAT_VERSION 1
#define CHUNK_BYTES (512 * 1024)

static const char *dtype_name(slex_store_dtype t) { return t == SLEX_STORE_F32 ? "float32" : "int32"; }
static const char *rows_dataset(slex_store_dtype t) { return t == SLEX_STORE_F32 ? "feats" : "labels"; }
static size_t dtype_size(slex_store_dtype t) { (void)t; return 4; }
static hid_t dtype_hdf5(slex_store_dtype t) { return t == SLEX_STORE_F32 ? H5T_IEEE_F32LE : H5T_STD_I32LE; }


void slex_store_shard_name(int shard, int nshard, char *buf, size_t size) {
    snprintf(buf, size, "part-%05d-of-%05d", shard, nshard);
}

/* dir/part-XXXXX-of-YYYYY<suffix> */
static int shard_path(const char *dir, int shard, int nshard, const char *suffix, char *buf, size_t size,
                      slex_error *err) {
    char name[64];
    slex_store_shard_name(shard, nshard, name, sizeof name);
    int w = snprintf(buf, size, "%s/%s%s", dir, name, suffix);
    if (w < 0 || (size_t)w >= size) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: path too long", dir);
    return 0;
}

static int join_path(const char *dir, const char *file, char *buf, size_t size, slex_error *err) {
    int w = snprintf(buf, size, "%s/%s", dir, file);
    if (w < 0 || (size_t)w >= size) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: path too long", dir);
    return 0;
}

/* ---- params.json ------------------------------------------------------------------------ */

static cJSON *params_document(const slex_store_meta *meta, int nshard, const char *fingerprint, slex_error *err) {
    cJSON *params = cJSON_Parse(meta->params_json ? meta->params_json : "{}");
    if (!params) return slex_fail_as(err, SLEX_ERR_INTERNAL, "internal error: the stage's parameters are not valid JSON"), NULL;
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "format", "slex-store");
    cJSON_AddNumberToObject(doc, "format_version", STORE_FORMAT_VERSION);
    cJSON_AddStringToObject(doc, "producer", meta->producer);
    cJSON_AddStringToObject(doc, "version", SLEX_VERSION);
    cJSON_AddStringToObject(doc, "dtype", dtype_name(meta->dtype));
    cJSON_AddStringToObject(doc, "dataset", rows_dataset(meta->dtype));
    cJSON_AddNumberToObject(doc, "dim", meta->dim);
    cJSON_AddNumberToObject(doc, "frame_rate_hz", meta->frame_rate_hz);
    cJSON_AddNumberToObject(doc, "nshard", nshard);
    cJSON_AddStringToObject(doc, "fingerprint", fingerprint);
    cJSON_AddItemToObject(doc, "params", params);
    return doc;
}

static void compute_fingerprint(const slex_store_meta *meta, int nshard, char out[17]) {
    size_t len = strlen(meta->params_json ? meta->params_json : "") + strlen(meta->producer) + 256;
    char *text = malloc(len);
    if (!text) {
        snprintf(out, 17, "%016x", 0);
        return;
    }
    snprintf(text, len, "%s %s %s %d %.17g %d %s", meta->producer, SLEX_VERSION, dtype_name(meta->dtype), meta->dim,
             meta->frame_rate_hz, nshard, meta->params_json ? meta->params_json : "");
    slex_fingerprint_hex(text, out);
    free(text);
}

static char *json_field_string(const cJSON *obj, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static int json_field_number(const cJSON *obj, const char *key, double *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(item)) return -1;
    *out = item->valuedouble;
    return 0;
}

/* Removes index.json, rejects.tsv and manifest.tsv (with its side file): they describe a
 * finished store, and the store is about to change. */
static void remove_store_summary(const char *dir) {
    static const char *files[] = {"index.json", "rejects.tsv", "manifest.tsv", "manifest.columns"};
    char path[4200];
    for (int i = 0; i < 4; i++)
        if (!join_path(dir, files[i], path, sizeof path, NULL)) unlink(path);
}

int slex_store_prepare(const char *dir, const slex_store_meta *meta, int nshard, int force, char fingerprint[17],
                       slex_error *err) {
    if (slex_mkdirs(dir, err)) return -1;
    compute_fingerprint(meta, nshard, fingerprint);
    char path[4200];
    if (join_path(dir, "params.json", path, sizeof path, err)) return -1;
    if (slex_path_exists(path)) {
        char *text = slex_read_text_file(path, NULL, err);
        if (!text) return -1;
        cJSON *old = cJSON_Parse(text);
        free(text);
        const char *old_fp = old ? json_field_string(old, "fingerprint") : NULL;
        int same = old_fp && !strcmp(old_fp, fingerprint);
        char old_producer[128] = "?";
        double old_nshard = 0;
        if (old) {
            const char *p = json_field_string(old, "producer");
            if (p) snprintf(old_producer, sizeof old_producer, "%s", p);
            json_field_number(old, "nshard", &old_nshard);
        }
        cJSON_Delete(old);
        if (same) return 0;
        if (!force) {
            char what[96];
            if ((int)old_nshard != nshard)
                snprintf(what, sizeof what, "another shard count (%g shards; now %d)", old_nshard, nshard);
            else
                snprintf(what, sizeof what, "other parameters or inputs");
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: this directory holds a store made by %s with %s: use --force to replace it, "
                                  "or choose another --out",
                             dir, old_producer, what);
        }
        remove_store_summary(dir);
    }
    cJSON *doc = params_document(meta, nshard, fingerprint, err);
    if (!doc) return -1;
    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (!text) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
    size_t len = strlen(text);
    text[len] = '\n'; /* cJSON's buffer has room for the NUL we overwrite; we pass len+1 */
    int rc = slex_write_file_atomic(path, text, len + 1, err);
    free(text);
    return rc;
}

/* ---- Shard records ---------------------------------------------------------------------- */

typedef struct shard_record {
    int64_t bytes, utterances, frames, rejected;
    uint32_t crc32;
    char fingerprint[17];
} shard_record;

static int read_record(const char *dir, int shard, int nshard, shard_record *rec, int *present, slex_error *err) {
    char path[4200];
    if (shard_path(dir, shard, nshard, ".json", path, sizeof path, err)) return -1;
    *present = slex_path_exists(path);
    if (!*present) return 0;
    char *text = slex_read_text_file(path, NULL, err);
    if (!text) return -1;
    cJSON *doc = cJSON_Parse(text);
    free(text);
    double bytes, utts, frames, rejected;
    const char *fp = doc ? json_field_string(doc, "fingerprint") : NULL;
    const char *crc = doc ? json_field_string(doc, "crc32") : NULL;
    if (!doc || !fp || !crc || json_field_number(doc, "bytes", &bytes) || json_field_number(doc, "utterances", &utts) ||
        json_field_number(doc, "frames", &frames) || json_field_number(doc, "rejected", &rejected)) {
        cJSON_Delete(doc);
        /* A damaged record means the shard is not done; it is redone, not trusted. */
        *present = 0;
        return 0;
    }
    snprintf(rec->fingerprint, sizeof rec->fingerprint, "%s", fp);
    rec->crc32 = (uint32_t)strtoul(crc, NULL, 16);
    rec->bytes = (int64_t)bytes;
    rec->utterances = (int64_t)utts;
    rec->frames = (int64_t)frames;
    rec->rejected = (int64_t)rejected;
    cJSON_Delete(doc);
    return 0;
}

static int record_matches_file(const char *dir, int shard, int nshard, const shard_record *rec, slex_error *err) {
    char path[4200];
    if (shard_path(dir, shard, nshard, ".h5", path, sizeof path, err)) return -1;
    if (!slex_path_exists(path)) return 0;
    char rejects[4200];
    if (shard_path(dir, shard, nshard, ".rejects.tsv", rejects, sizeof rejects, err)) return -1;
    if (!slex_path_exists(rejects)) return 0;
    uint32_t crc;
    int64_t bytes;
    if (slex_file_crc32(path, &crc, &bytes, err)) return -1;
    return crc == rec->crc32 && bytes == rec->bytes;
}

int slex_store_shard_is_done(const char *dir, int shard, int nshard, const char *fingerprint, slex_error *err) {
    shard_record rec;
    int present;
    if (read_record(dir, shard, nshard, &rec, &present, err)) return -1;
    if (!present || strcmp(rec.fingerprint, fingerprint)) return 0;
    return record_matches_file(dir, shard, nshard, &rec, err);
}

/* ---- Writer ----------------------------------------------------------------------------- */

struct slex_store_writer {
    char dir[4096];
    int shard, nshard;
    slex_store_meta meta;
    char fingerprint[17];
    slex_atomic h5, rej;  /* the shard file and its rejects, under temporary names until commit */
    slex_lock *lock;      /* part-XXXXX-of-YYYYY.lock: this process writes the shard */
    char record_path[4200];
    hid_t file, rows;
    int64_t rows_written;
    int64_t chunk_rows;   /* rows per HDF5 chunk = rows per buffered write */
    unsigned char *buf;   /* chunk_rows rows waiting to be written */
    int64_t buf_rows;
    int64_t *lengths;
    char **utt_ids;
    int64_t n_utts, cap_utts;
    int64_t n_rejected;
    slex_error err;
};

const slex_error *slex_store_writer_error(const slex_store_writer *w) { return &w->err; }

/* An extendible chunked dataset (n x cols; cols = 0 means 1-D) without timestamps. */
static hid_t create_extendible(hid_t file, const char *name, hid_t type, int64_t cols, int64_t chunk_rows) {
    int rank = cols > 0 ? 2 : 1;
    hsize_t dims[2] = {0, (hsize_t)cols}, maxdims[2] = {H5S_UNLIMITED, (hsize_t)cols};
    hsize_t chunk[2] = {(hsize_t)chunk_rows, (hsize_t)cols};
    hid_t space = H5Screate_simple(rank, dims, maxdims);
    hid_t dcpl = slex_h5_dcpl(rank, chunk);
    /* Every row is written, so fill values are never needed (HDF5 refuses this for strings). */
    if (H5Tis_variable_str(type) <= 0) H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    hid_t ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    return ds;
}

/* Appends n rows (of cols values, 0 = 1-D) of mem_type at the end of an extendible dataset. */
static int append_rows(hid_t ds, hid_t mem_type, int64_t at, int64_t n, int64_t cols, const void *data) {
    if (n == 0) return 0;
    int rank = cols > 0 ? 2 : 1;
    hsize_t new_dims[2] = {(hsize_t)(at + n), (hsize_t)cols};
    if (H5Dset_extent(ds, new_dims) < 0) return -1;
    hid_t file_space = H5Dget_space(ds);
    hsize_t start[2] = {(hsize_t)at, 0}, count[2] = {(hsize_t)n, (hsize_t)cols};
    H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t mem_space = H5Screate_simple(rank, count, NULL);
    herr_t rc = H5Dwrite(ds, mem_type, mem_space, file_space, H5P_DEFAULT, data);
    H5Sclose(mem_space);
    H5Sclose(file_space);
    return rc < 0 ? -1 : 0;
}

slex_store_writer *slex_store_writer_open(const char *dir, int shard, int nshard, const slex_store_meta *meta,
                                          const char *fingerprint, slex_error *err) {
    slex_h5_quiet();
    slex_store_writer *w = calloc(1, sizeof *w);
    if (!w) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", dir), NULL;
    w->file = w->rows = -1;
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    w->shard = shard;
    w->nshard = nshard;
    w->meta = *meta;
    snprintf(w->fingerprint, sizeof w->fingerprint, "%s", fingerprint);
    char h5_path[4200], rejects_path[4200];
    if (shard_path(dir, shard, nshard, ".h5", h5_path, sizeof h5_path, err) ||
        shard_path(dir, shard, nshard, ".rejects.tsv", rejects_path, sizeof rejects_path, err) ||
        shard_path(dir, shard, nshard, ".json", w->record_path, sizeof w->record_path, err) ||
        slex_atomic_begin(&w->h5, h5_path, err)) {
        free(w);
        return NULL;
    }
    /* The lock first: another live run writing this shard keeps its files. */
    char lock_path[4200], what[4400];
    if (shard_path(dir, shard, nshard, ".lock", lock_path, sizeof lock_path, err)) {
        free(w);
        return NULL;
    }
    snprintf(what, sizeof what, "shard %d of %d of store %s", shard, nshard, dir);
    if (!(w->lock = slex_lock_take(lock_path, what, err))) {
        free(w);
        return NULL;
    }
    /* The record goes first: from here on the shard no longer counts as done. */
    unlink(w->record_path);
    unlink(h5_path);
    unlink(rejects_path);
    remove_store_summary(dir);

    size_t row_bytes = (size_t)meta->dim * dtype_size(meta->dtype);
    w->chunk_rows = CHUNK_BYTES / row_bytes > 0 ? (int64_t)(CHUNK_BYTES / row_bytes) : 1;
    w->buf = malloc((size_t)w->chunk_rows * row_bytes);
    if (!w->buf) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", dir);
        slex_store_writer_abort(w);
        return NULL;
    }
    if (slex_atomic_fopen(&w->rej, rejects_path, err)) {
        slex_store_writer_abort(w);
        return NULL;
    }
    errno = 0;
    w->file = slex_h5_create(w->h5.tmp);
    if (w->file < 0) {
        slex_fail_as(err, SLEX_ERR_IO, "%s: cannot create HDF5 file: %s", w->h5.tmp, errno ? strerror(errno) : "HDF5 error");
        slex_store_writer_abort(w);
        return NULL;
    }
    int cols = meta->dtype == SLEX_STORE_F32 ? meta->dim : 0;
    w->rows = create_extendible(w->file, rows_dataset(meta->dtype), dtype_hdf5(meta->dtype), cols, w->chunk_rows);
    int32_t dim = meta->dim, shard32 = shard, nshard32 = nshard;
    char *params = meta->params_json ? (char *)meta->params_json : "{}";
    if (w->rows < 0 || slex_h5_set_number(w->file, "dim", H5T_STD_I32LE, H5T_NATIVE_INT32, &dim) ||
        slex_h5_set_number(w->file, "frame_rate_hz", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &meta->frame_rate_hz) ||
        slex_h5_set_number(w->file, "shard", H5T_STD_I32LE, H5T_NATIVE_INT32, &shard32) ||
        slex_h5_set_number(w->file, "nshard", H5T_STD_I32LE, H5T_NATIVE_INT32, &nshard32) ||
        slex_h5_set_string(w->file, "kind", rows_dataset(meta->dtype)) ||
        slex_h5_set_string(w->file, "producer", meta->producer) ||
        slex_h5_set_string(w->file, "version", SLEX_VERSION) ||
        slex_h5_set_string(w->file, "fingerprint", fingerprint) || slex_h5_set_string(w->file, "params", params)) {
        slex_fail_as(err, SLEX_ERR_IO, "%s: cannot create the datasets", w->h5.tmp);
        slex_store_writer_abort(w);
        return NULL;
    }
    return w;
}

static int flush_rows(slex_store_writer *w) {
    hid_t mem = w->meta.dtype == SLEX_STORE_F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32;
    int cols = w->meta.dtype == SLEX_STORE_F32 ? w->meta.dim : 0;
    if (append_rows(w->rows, mem, w->rows_written, w->buf_rows, cols, w->buf))
        return slex_fail_as(&w->err, SLEX_ERR_IO, "%s: write of %lld rows failed (disk full?)", w->h5.tmp, (long long)w->buf_rows);
    w->rows_written += w->buf_rows;
    w->buf_rows = 0;
    return 0;
}

int slex_store_writer_append(slex_store_writer *w, const char *utt_id, const void *rows, int64_t n_rows) {
    if (w->n_utts == w->cap_utts) {
        int64_t cap = w->cap_utts ? 2 * w->cap_utts : 256;
        int64_t *lengths = realloc(w->lengths, (size_t)cap * sizeof *lengths);
        if (lengths) w->lengths = lengths;
        char **ids = realloc(w->utt_ids, (size_t)cap * sizeof *ids);
        if (ids) w->utt_ids = ids;
        if (!lengths || !ids) return slex_fail_as(&w->err, SLEX_ERR_RESOURCE, "%s: out of memory", w->h5.tmp);
        w->cap_utts = cap;
    }
    if (!(w->utt_ids[w->n_utts] = strdup(utt_id))) return slex_fail_as(&w->err, SLEX_ERR_RESOURCE, "%s: out of memory", w->h5.tmp);
    w->lengths[w->n_utts++] = n_rows;
    slex_lock_refresh(w->lock);
    /* Rows go to the file in whole chunks, so the write pattern (and the file) does not depend
     * on utterance boundaries. */
    size_t row_bytes = (size_t)w->meta.dim * dtype_size(w->meta.dtype);
    const unsigned char *src = rows;
    while (n_rows > 0) {
        int64_t take = w->chunk_rows - w->buf_rows;
        if (take > n_rows) take = n_rows;
        memcpy(w->buf + (size_t)w->buf_rows * row_bytes, src, (size_t)take * row_bytes);
        w->buf_rows += take;
        src += (size_t)take * row_bytes;
        n_rows -= take;
        if (w->buf_rows == w->chunk_rows && flush_rows(w)) return -1;
    }
    return 0;
}

/* Writes a TSV field with its tabs and newlines turned into spaces (a malformed manifest line
 * used as an id, or a reason quoting one, would otherwise break the columns). */
static void put_tsv_field(FILE *f, const char *text, char end) {
    for (const char *p = text; *p; p++) fputc(*p == '\t' || *p == '\n' || *p == '\r' ? ' ' : *p, f);
    fputc(end, f);
}

int slex_store_writer_reject(slex_store_writer *w, int64_t manifest_line, const char *utt_id, const char *reason) {
    fprintf(w->rej.f, "%lld\t", (long long)manifest_line);
    put_tsv_field(w->rej.f, utt_id, '\t');
    put_tsv_field(w->rej.f, reason, '\n');
    w->n_rejected++;
    if (ferror(w->rej.f)) return slex_fail_as(&w->err, SLEX_ERR_IO, "%s: write failed", w->rej.tmp);
    return 0;
}

static int write_index_datasets(slex_store_writer *w) {
    hid_t lengths = create_extendible(w->file, "lengths", H5T_STD_I64LE, 0, 4096);
    if (lengths < 0 || append_rows(lengths, H5T_NATIVE_INT64, 0, w->n_utts, 0, w->lengths)) {
        if (lengths >= 0) H5Dclose(lengths);
        return -1;
    }
    H5Dclose(lengths);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, H5T_VARIABLE);
    H5Tset_cset(str, H5T_CSET_UTF8);
    hid_t ids = create_extendible(w->file, "utt_ids", str, 0, 1024);
    int rc = ids < 0 || append_rows(ids, str, 0, w->n_utts, 0, w->utt_ids) ? -1 : 0;
    if (ids >= 0) H5Dclose(ids);
    H5Tclose(str);
    return rc;
}

static int write_record(slex_store_writer *w, uint32_t crc, int64_t bytes, slex_error *err) {
    char name[64];
    slex_store_shard_name(w->shard, w->nshard, name, sizeof name);
    char crc_hex[16];
    snprintf(crc_hex, sizeof crc_hex, "%08x", crc);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "name", name);
    cJSON_AddNumberToObject(doc, "shard", w->shard);
    cJSON_AddNumberToObject(doc, "nshard", w->nshard);
    cJSON_AddNumberToObject(doc, "bytes", (double)bytes);
    cJSON_AddStringToObject(doc, "crc32", crc_hex);
    cJSON_AddNumberToObject(doc, "utterances", (double)w->n_utts);
    cJSON_AddNumberToObject(doc, "frames", (double)w->rows_written);
    cJSON_AddNumberToObject(doc, "rejected", (double)w->n_rejected);
    cJSON_AddStringToObject(doc, "fingerprint", w->fingerprint);
    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (!text) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", w->record_path);
    int rc = slex_write_file_atomic(w->record_path, text, strlen(text), err);
    free(text);
    return rc;
}

static void free_writer(slex_store_writer *w) {
    slex_lock_release(w->lock);
    for (int64_t i = 0; i < w->n_utts; i++) free(w->utt_ids[i]);
    free(w->utt_ids);
    free(w->lengths);
    free(w->buf);
    free(w);
}

int slex_store_writer_commit(slex_store_writer *w, slex_error *err) {
    if (w->err.msg[0]) {
        slex_fail_as(err, w->err.kind, "%s", w->err.msg);
        slex_store_writer_abort(w);
        return -1;
    }
    if ((w->buf_rows && flush_rows(w)) || write_index_datasets(w)) {
        if (w->err.msg[0]) slex_fail_as(err, w->err.kind, "%s", w->err.msg);
        else slex_fail_as(err, SLEX_ERR_IO, "%s: cannot write lengths and utt_ids (disk full?)", w->h5.tmp);
        slex_store_writer_abort(w);
        return -1;
    }
    int closed = slex_h5_close_written(w->file);
    w->file = w->rows = -1;
    if (closed) {
        slex_fail_as(err, SLEX_ERR_IO, "%s: cannot write the shard (disk full?)", w->h5.tmp);
        slex_store_writer_abort(w);
        return -1;
    }
    uint32_t crc;
    int64_t bytes;
    if (slex_file_crc32(w->h5.tmp, &crc, &bytes, err) || slex_atomic_commit(&w->h5, err) ||
        slex_atomic_commit(&w->rej, err)) {
        slex_store_writer_abort(w);
        return -1;
    }
    int rc = write_record(w, crc, bytes, err);
    free_writer(w);
    return rc;
}

void slex_store_writer_abort(slex_store_writer *w) {
    if (!w) return;
    /* The file is given up (after a failed write its close may fail: slex_h5_close_written). */
    if (w->file >= 0) slex_h5_close_written(w->file);
    slex_atomic_abandon(&w->h5);
    slex_atomic_abandon(&w->rej);
    free_writer(w);
}

/* ---- Finalize --------------------------------------------------------------------------- */

/* Appends the shard's rejects to out and their manifest line numbers to *lines. */
static int gather_rejects(const char *dir, int shard, int nshard, FILE *out, int64_t **lines, int64_t *n, int64_t *cap,
                          slex_error *err) {
    char path[4200];
    if (shard_path(dir, shard, nshard, ".rejects.tsv", path, sizeof path, err)) return -1;
    FILE *f = fopen(path, "r");
    if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t linecap = 0;
    while (getline(&line, &linecap, f) >= 0) {
        fputs(line, out);
        if (*n == *cap) {
            *cap = *cap ? 2 * *cap : 256;
            int64_t *grown = realloc(*lines, (size_t)*cap * sizeof *grown);
            if (!grown) {
                free(line);
                fclose(f);
                return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
            }
            *lines = grown;
        }
        (*lines)[(*n)++] = strtoll(line, NULL, 10);
    }
    free(line);
    fclose(f);
    return 0;
}

/* Writes the manifest of the stored utterances: the input manifest's root and its lines that were
 * stored, in order, as fairseq reads them (relpath, num_samples) with their extra columns in the
 * side file (manifest.h); read as a stream (rejected_lines, in manifest order, are the file line
 * numbers to leave out). */
static int write_filtered_manifest(const char *dir, const char *manifest, const int64_t *rejected_lines,
                                   int64_t n_rejected, int64_t stored, slex_error *err) {
    char path[4200];
    if (join_path(dir, "manifest.tsv", path, sizeof path, err)) return -1;
    slex_manifest_reader *in = slex_manifest_reader_open(manifest, err);
    if (!in) return -1;
    slex_manifest_writer *out =
        slex_manifest_writer_open(path, slex_manifest_reader_root(in), slex_manifest_reader_columns(in), err);
    int64_t entries = 0, r = 0;
    slex_manifest_entry e;
    int got = out ? 1 : -1;
    while (got > 0 && (got = slex_manifest_reader_next(in, &e, err)) > 0) {
        entries++;
        if (r < n_rejected && rejected_lines[r] == e.line) {
            r++;
            continue;
        }
        if (e.malformed)
            got = slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: stored, but the line is malformed (%s): was the manifest changed while "
                                 "the store was written?", manifest, (long long)e.line, e.malformed);
        else if (slex_manifest_writer_add(out, e.relpath, e.num_samples, e.extra, err)) got = -1;
    }
    slex_manifest_reader_close(in);
    if (got == 0 && entries - n_rejected != stored)
        got = slex_fail_as(err, SLEX_ERR_INPUT, "%s: the manifest has %lld lines, the store %lld utterances and %lld rejects: "
                             "was the manifest changed while the store was written?",
                        manifest, (long long)entries, (long long)stored, (long long)n_rejected);
    if (got < 0) {
        slex_manifest_writer_abort(out);
        return -1;
    }
    return slex_manifest_writer_commit(out, err);
}

static void content_identity(const shard_record *recs, int nshard, char out[17]) {
    size_t len = (size_t)nshard * 48 + 1;
    char *text = malloc(len);
    if (!text) {
        snprintf(out, 17, "%016x", 0);
        return;
    }
    size_t at = 0;
    for (int s = 0; s < nshard; s++)
        at += (size_t)snprintf(text + at, len - at, "%d %08x %lld;", s, recs[s].crc32, (long long)recs[s].bytes);
    slex_fingerprint_hex(text, out);
    free(text);
}

int slex_store_finalize(const char *dir, int nshard, const char *fingerprint, const char *manifest,
                        slex_store_summary *summary, slex_error *err) {
    memset(summary, 0, sizeof *summary);
    shard_record *recs = calloc((size_t)nshard, sizeof *recs);
    if (!recs) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", dir);
    for (int s = 0; s < nshard; s++) {
        int present;
        if (read_record(dir, s, nshard, &recs[s], &present, err)) goto fail;
        if (present && !strcmp(recs[s].fingerprint, fingerprint)) summary->shards_done++;
    }
    if (summary->shards_done < nshard) {
        free(recs);
        return 0;
    }
    char path[4200];
    slex_atomic rej;
    if (join_path(dir, "rejects.tsv", path, sizeof path, err) || slex_atomic_fopen(&rej, path, err)) goto fail;
    fprintf(rej.f, "line\tutt_id\treason\n");
    int64_t *lines = NULL, n_lines = 0, cap_lines = 0;
    int rc = 0;
    for (int s = 0; s < nshard && !rc; s++) rc = gather_rejects(dir, s, nshard, rej.f, &lines, &n_lines, &cap_lines, err);
    if (rc) slex_atomic_abandon(&rej);
    else rc = slex_atomic_commit(&rej, err);
    for (int s = 0; s < nshard; s++) {
        summary->utterances += recs[s].utterances;
        summary->frames += recs[s].frames;
        summary->rejected += recs[s].rejected;
    }
    if (!rc && manifest) rc = write_filtered_manifest(dir, manifest, lines, n_lines, summary->utterances, err);
    free(lines);
    if (rc) goto fail;

    /* index.json = params.json + the shards' records + totals. */
    if (join_path(dir, "params.json", path, sizeof path, err)) goto fail;
    char *text = slex_read_text_file(path, NULL, err);
    if (!text) goto fail;
    cJSON *index = cJSON_Parse(text);
    free(text);
    if (!index) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: not valid JSON", path);
        goto fail;
    }
    /* The content id names the rows themselves (every shard's CRC and size): later stages key on
     * it, so a shard redone with the same parameters but other audio is not mistaken for the old. */
    char content_id[17];
    content_identity(recs, nshard, content_id);
    cJSON_AddStringToObject(index, "content_id", content_id);
    cJSON_AddNumberToObject(index, "utterances", (double)summary->utterances);
    cJSON_AddNumberToObject(index, "frames", (double)summary->frames);
    cJSON_AddNumberToObject(index, "rejected", (double)summary->rejected);
    cJSON *shards = cJSON_AddArrayToObject(index, "shards");
    for (int s = 0; s < nshard; s++) {
        char name[64], crc_hex[16];
        slex_store_shard_name(s, nshard, name, sizeof name);
        snprintf(crc_hex, sizeof crc_hex, "%08x", recs[s].crc32);
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "file", strcat(name, ".h5"));
        cJSON_AddNumberToObject(r, "bytes", (double)recs[s].bytes);
        cJSON_AddStringToObject(r, "crc32", crc_hex);
        cJSON_AddNumberToObject(r, "utterances", (double)recs[s].utterances);
        cJSON_AddNumberToObject(r, "frames", (double)recs[s].frames);
        cJSON_AddNumberToObject(r, "rejected", (double)recs[s].rejected);
        cJSON_AddItemToArray(shards, r);
    }
    text = cJSON_Print(index);
    cJSON_Delete(index);
    if (join_path(dir, "index.json", path, sizeof path, err)) {
        free(text);
        goto fail;
    }
    rc = text ? slex_write_file_atomic(path, text, strlen(text), err) : slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
    free(text);
    if (rc) goto fail;
    /* Another job-array task may have started redoing a shard while this one wrote the index: if
     * any record changed meanwhile, the index no longer describes the store and goes away. */
    for (int s = 0; s < nshard; s++) {
        shard_record now;
        int present;
        if (read_record(dir, s, nshard, &now, &present, err)) goto fail;
        if (!present || now.crc32 != recs[s].crc32 || now.bytes != recs[s].bytes) {
            unlink(path);
            summary->shards_done = s;
            free(recs);
            return 0;
        }
    }
    summary->finalized = 1;
    free(recs);
    return 0;
fail:
    free(recs);
    return -1;
}

/* ---- Reader ----------------------------------------------------------------------------- */

/* What a reader trusts nothing else for: the index's record of every shard (checked against the
 * file when the shard is opened and, for whole-shard reads, against its bytes as they stream) and
 * where the shard's utterances start in manifest.tsv. */
typedef struct store_shard_info {
    shard_record rec;
    int64_t first_utt;     /* index of the shard's first utterance in the store */
    int64_t manifest_offset; /* byte offset of its first line in manifest.tsv (-1: no manifest) */
} store_shard_info;

struct slex_store {
    char dir[4096];
    char index_path[4200], manifest_path[4200];
    char fingerprint[17], content_id[17];
    char codebook_crc32[9]; /* params.codebook_crc32 of a slex-label store, else "" */
    int nshard, dim, has_manifest;
    slex_store_dtype dtype;
    double frame_rate;
    int64_t frames, utterances;
    store_shard_info *shards;
};

/* The index's entries must be exactly part-0..part-(nshard-1), in order, each once. */
static int read_index_entries(slex_store *s, const cJSON *shards, slex_error *err) {
    int listed = cJSON_GetArraySize(shards);
    for (int i = 0; i < s->nshard || i < listed; i++) {
        char name[64];
        slex_store_shard_name(i < s->nshard ? i : s->nshard, s->nshard, name, sizeof name);
        const cJSON *r = cJSON_GetArrayItem(shards, i);
        if (!r)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no entry for shard %s.h5 (the index lists %d of %d shards)", s->index_path, name,
                             listed, s->nshard);
        const char *file = json_field_string(r, "file");
        if (i >= s->nshard)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: %d entries for %d shards (an extra entry names %s)", s->index_path, listed,
                             s->nshard, file ? file : "nothing");
        if (!file || strncmp(file, name, strlen(name)) || strcmp(file + strlen(name), ".h5"))
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: entry %d names %s, expected %s.h5 (entries removed, duplicated or reordered)",
                             s->index_path, i, file ? file : "no file", name);
        const char *crc = json_field_string(r, "crc32");
        double b, u, f;
        char *end = NULL;
        unsigned long crc_value = crc ? strtoul(crc, &end, 16) : 0;
        if (!crc || strlen(crc) != 8 || *end || json_field_number(r, "bytes", &b) ||
            json_field_number(r, "utterances", &u) || json_field_number(r, "frames", &f) || b < 0 || u < 0 || f < 0)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: malformed entry of shard %s.h5", s->index_path, name);
        store_shard_info *info = &s->shards[i];
        info->rec.crc32 = (uint32_t)crc_value;
        info->rec.bytes = (int64_t)b;
        info->rec.utterances = (int64_t)u;
        info->rec.frames = (int64_t)f;
        info->first_utt = i ? s->shards[i - 1].first_utt + s->shards[i - 1].rec.utterances : 0;
        info->manifest_offset = -1;
        /* The index copies the shards' records: an entry that disagrees with its record is a
         * damaged index, refused before anything is made from it. */
        shard_record rec;
        int present;
        if (read_record(s->dir, i, s->nshard, &rec, &present, err)) return -1;
        const char *what = !present                                  ? "is missing or damaged"
                           : rec.crc32 != info->rec.crc32            ? "has another crc32"
                           : rec.bytes != info->rec.bytes            ? "has another size"
                           : rec.frames != info->rec.frames          ? "has another frame count"
                           : rec.utterances != info->rec.utterances  ? "has another utterance count"
                           : strcmp(rec.fingerprint, s->fingerprint) ? "has another fingerprint"
                                                                     : NULL;
        if (what)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: the entry of %s.h5 does not match its record: %s/%s.json %s (re-run the stage "
                                  "that wrote the store to repair it)",
                             s->index_path, name, s->dir, name, what);
    }
    /* The totals are those of the entries (each checked against its file when opened). */
    for (int i = 0; i < s->nshard; i++) {
        s->frames += s->shards[i].rec.frames;
        s->utterances += s->shards[i].rec.utterances;
    }
    return 0;
}

/* One pass over manifest.tsv: it must list exactly the index's utterances; remembers where each
 * shard's lines start, so that opening a shard reads only its own lines. */
static int index_manifest(slex_store *s, slex_error *err) {
    if (join_path(s->dir, "manifest.tsv", s->manifest_path, sizeof s->manifest_path, err)) return -1;
    s->has_manifest = slex_path_exists(s->manifest_path);
    if (!s->has_manifest) return 0;
    FILE *f = fopen(s->manifest_path, "r");
    if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", s->manifest_path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len = getline(&line, &cap, f); /* the root */
    int64_t entries = 0, at = len > 0 ? (int64_t)len : 0;
    for (int shard = 0; len >= 0;) {
        while (shard < s->nshard && s->shards[shard].first_utt == entries) s->shards[shard++].manifest_offset = at;
        if ((len = getline(&line, &cap, f)) < 0) break;
        entries++;
        at += (int64_t)len;
    }
    free(line);
    int bad = ferror(f);
    fclose(f);
    if (bad) return slex_fail_as(err, SLEX_ERR_IO, "%s: read failed", s->manifest_path);
    if (entries != s->utterances)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s lists %lld utterances, %s %lld", s->manifest_path, (long long)entries, s->index_path,
                         (long long)s->utterances);
    return 0;
}

slex_store *slex_store_open(const char *dir, slex_error *err) {
    slex_h5_quiet();
    char path[4200];
    if (join_path(dir, "index.json", path, sizeof path, err)) return NULL;
    if (!slex_path_exists(path))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: not a finished store (no index.json: the stage that writes it has not completed)",
                         dir),
               NULL;
    char *text = slex_read_text_file(path, NULL, err);
    if (!text) return NULL;
    cJSON *doc = cJSON_Parse(text);
    free(text);
    slex_store *s = calloc(1, sizeof *s);
    double nshard, dim, rate;
    const char *dtype = doc ? json_field_string(doc, "dtype") : NULL;
    const char *fp = doc ? json_field_string(doc, "fingerprint") : NULL;
    const cJSON *shards = doc ? cJSON_GetObjectItemCaseSensitive(doc, "shards") : NULL;
    if (!s || !doc || !dtype || !fp || strlen(fp) != 16 || !cJSON_IsArray(shards) ||
        json_field_number(doc, "nshard", &nshard) || json_field_number(doc, "dim", &dim) ||
        json_field_number(doc, "frame_rate_hz", &rate) || nshard < 1 || nshard > 99999 || dim < 1 ||
        (strcmp(dtype, "float32") && strcmp(dtype, "int32"))) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: malformed store index", path);
        goto fail;
    }
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->index_path, sizeof s->index_path, "%s", path);
    snprintf(s->fingerprint, sizeof s->fingerprint, "%s", fp);
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(doc, "params");
    const char *crc = cJSON_IsObject(params) ? json_field_string(params, "codebook_crc32") : NULL;
    if (crc && strlen(crc) == 8 && strspn(crc, "0123456789abcdef") == 8) snprintf(s->codebook_crc32, sizeof s->codebook_crc32, "%s", crc);
    s->nshard = (int)nshard;
    s->dim = (int)dim;
    s->dtype = strcmp(dtype, "float32") ? SLEX_STORE_I32 : SLEX_STORE_F32;
    s->frame_rate = rate;
    if (!(s->shards = calloc((size_t)s->nshard, sizeof *s->shards))) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
        goto fail;
    }
    if (read_index_entries(s, shards, err) || index_manifest(s, err)) goto fail;
    /* The content id is computed from the entries every read is checked against (not copied from
     * the index), so an output that records it names the rows it actually read. */
    shard_record *recs = malloc((size_t)s->nshard * sizeof *recs);
    if (!recs) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", path);
        goto fail;
    }
    for (int i = 0; i < s->nshard; i++) recs[i] = s->shards[i].rec;
    content_identity(recs, s->nshard, s->content_id);
    free(recs);
    cJSON_Delete(doc);
    return s;
fail:
    cJSON_Delete(doc);
    slex_store_close(s);
    return NULL;
}

void slex_store_close(slex_store *s) {
    if (!s) return;
    free(s->shards);
    free(s);
}

int slex_store_nshard(const slex_store *s) { return s->nshard; }
int slex_store_dim(const slex_store *s) { return s->dim; }
slex_store_dtype slex_store_get_dtype(const slex_store *s) { return s->dtype; }
double slex_store_frame_rate(const slex_store *s) { return s->frame_rate; }
int64_t slex_store_frames(const slex_store *s) { return s->frames; }
int64_t slex_store_utterances(const slex_store *s) { return s->utterances; }
int64_t slex_store_shard_frames(const slex_store *s, int shard) { return s->shards[shard].rec.frames; }
int64_t slex_store_shard_utterances(const slex_store *s, int shard) { return s->shards[shard].rec.utterances; }
const char *slex_store_fingerprint(const slex_store *s) { return s->fingerprint; }
const char *slex_store_content_id(const slex_store *s) { return s->content_id; }
const char *slex_store_codebook_crc32(const slex_store *s) { return s->codebook_crc32[0] ? s->codebook_crc32 : NULL; }
const char *slex_store_dir(const slex_store *s) { return s->dir; }

/* Bytes between the rows a whole-shard read asks for (HDF5 metadata, rows it skips) are read
 * in blocks of this size, only to be checksummed. */
#define SKIP_BLOCK (1 << 20)

struct slex_store_shard {
    char path[4200];
    hid_t file, rows;
    int fd;               /* the same file, for the direct reads of rows */
    int64_t chunk_rows;   /* rows per chunk */
    haddr_t *chunk_addr;  /* file offset of every chunk, in row order */
    int64_t n_chunks;
    slex_store_dtype dtype;
    int dim;
    int64_t n_utts, n_frames;
    int64_t *lengths, *offsets;
    char **utt_ids;
    shard_record want;    /* the index's entry */
    /* Streaming verification: bytes [0, stream_pos) were read in file order and folded into
     * stream_crc; verify() reads the rest and compares with the index's CRC-32. */
    int64_t stream_pos;
    uLong stream_crc;
    unsigned char *skip;
    int verified;         /* 1 matched, -1 mismatched (verified_msg says how) */
    slex_error verified_why;  /* when it mismatched */
};

static int read_lengths_and_ids(slex_store_shard *r, slex_error *err) {
    hid_t ds = H5Dopen2(r->file, "lengths", H5P_DEFAULT);
    hid_t ids = H5Dopen2(r->file, "utt_ids", H5P_DEFAULT);
    if (ds < 0 || ids < 0) {
        if (ds >= 0) H5Dclose(ds);
        if (ids >= 0) H5Dclose(ids);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: missing dataset lengths or utt_ids", r->path);
    }
    hid_t space = H5Dget_space(ds);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(space, &n, NULL);
    H5Sclose(space);
    hid_t id_space = H5Dget_space(ids);
    hsize_t n_ids = 0;
    H5Sget_simple_extent_dims(id_space, &n_ids, NULL);
    H5Sclose(id_space);
    r->n_utts = (int64_t)n;
    int rc = 0;
    if (n != n_ids)
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: %llu lengths but %llu utterance ids", r->path, (unsigned long long)n,
                       (unsigned long long)n_ids);
    else if (r->n_utts != r->want.utterances)
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: %lld utterances, the index says %lld", r->path, (long long)r->n_utts,
                       (long long)r->want.utterances);
    r->lengths = calloc(n + 1, sizeof *r->lengths);
    r->offsets = calloc(n + 1, sizeof *r->offsets);
    r->utt_ids = calloc(n + 1, sizeof *r->utt_ids);
    if (!rc && (!r->lengths || !r->offsets || !r->utt_ids)) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", r->path);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, H5T_VARIABLE);
    H5Tset_cset(str, H5T_CSET_UTF8);
    if (!rc && n > 0 &&
        (H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->lengths) < 0 ||
         H5Dread(ids, str, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->utt_ids) < 0))
        rc = slex_fail_as(err, SLEX_ERR_IO, "%s: cannot read lengths or utt_ids", r->path);
    H5Tclose(str);
    H5Dclose(ds);
    H5Dclose(ids);
    for (int64_t i = 0; !rc && i < r->n_utts; i++) {
        if (r->lengths[i] < 0 || !r->utt_ids[i])
            rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: utterance %lld has no id or a negative length", r->path, (long long)i);
        else r->offsets[i + 1] = r->offsets[i] + r->lengths[i];
    }
    if (!rc && r->offsets[r->n_utts] != r->n_frames)
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: lengths add up to %lld frames but the file holds %lld", r->path,
                       (long long)r->offsets[r->n_utts], (long long)r->n_frames);
    return rc;
}

/* The shard's utterance ids must be the manifest's lines of this shard, in order (their first
 * column, the relpath). */
static int check_ids_against_manifest(const slex_store *s, int shard, slex_store_shard *r, slex_error *err) {
    if (!s->has_manifest) return 0;
    FILE *f = fopen(s->manifest_path, "r");
    if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", s->manifest_path, strerror(errno));
    int rc = 0;
    if (fseeko(f, (off_t)s->shards[shard].manifest_offset, SEEK_SET))
        rc = slex_fail_as(err, slex_errno_kind(errno), "%s: cannot seek: %s", s->manifest_path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    for (int64_t i = 0; !rc && i < r->n_utts; i++) {
        ssize_t len = getline(&line, &cap, f);
        if (len < 0) {
            rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: ends before utterance %lld of %s", s->manifest_path, (long long)i, r->path);
            break;
        }
        line[strcspn(line, "\t\r\n")] = '\0';
        if (strcmp(line, r->utt_ids[i]))
            rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: utterance %lld is '%s' but line %lld of %s is '%s'", r->path, (long long)i,
                           r->utt_ids[i], (long long)(s->shards[shard].first_utt + i + 2), s->manifest_path, line);
    }
    free(line);
    fclose(f);
    return rc;
}

/* The file's root attributes must name this store's shard: its position, the shard count, the
 * store's fingerprint, kind, dimension and frame rate. */
static int check_identity(const slex_store *s, int shard, slex_store_shard *r, slex_error *err) {
    int64_t got_shard = -1, got_nshard = -1, got_dim = -1;
    double got_rate = -1;
    char *fp = slex_h5_get_string(r->file, "fingerprint"), *kind = slex_h5_get_string(r->file, "kind");
    int rc = 0;
    if (slex_h5_get_int(r->file, "shard", &got_shard) || slex_h5_get_int(r->file, "nshard", &got_nshard) ||
        slex_h5_get_int(r->file, "dim", &got_dim) || slex_h5_get_double(r->file, "frame_rate_hz", &got_rate) || !fp ||
        !kind)
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: missing attributes (shard, nshard, fingerprint, kind, dim, frame_rate_hz)", r->path);
    else if (got_shard != shard || got_nshard != s->nshard)
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: holds shard %lld of %lld (attributes shard, nshard), the index expects shard %d of %d",
                       r->path, (long long)got_shard, (long long)got_nshard, shard, s->nshard);
    else if (strcmp(fp, s->fingerprint))
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: fingerprint %s, the store's is %s (a shard of another store?)", r->path, fp,
                       s->fingerprint);
    else if (strcmp(kind, rows_dataset(s->dtype)) || got_dim != s->dim ||
             got_rate != s->frame_rate)
        rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s: holds %s of dim %lld at %g Hz, the index says %s of dim %d at %g Hz", r->path, kind,
                       (long long)got_dim, got_rate, rows_dataset(s->dtype), s->dim, s->frame_rate);
    free(fp);
    free(kind);
    return rc;
}

/* The chunk layout of the rows dataset: rows are read straight from their chunks' file offsets.
 * Chunk addresses are looked up when a row of the chunk is first read (H5Dget_chunk_info walks
 * the chunk index from the start at every call, so listing all chunks up front costs time
 * quadratic in their number). */
static int read_chunk_layout(slex_store_shard *r, slex_error *err) {
    hid_t dcpl = H5Dget_create_plist(r->rows);
    hid_t type = H5Dget_type(r->rows);
    hsize_t chunk[2] = {0, 0};
    int rank = H5Pget_chunk(dcpl, 2, chunk);
    int layout_ok = H5Pget_layout(dcpl) == H5D_CHUNKED && rank >= 1 && H5Pget_nfilters(dcpl) == 0 &&
                    (r->dtype == SLEX_STORE_I32 || (rank == 2 && (int)chunk[1] == r->dim)) &&
                    H5Tequal(type, dtype_hdf5(r->dtype)) > 0;
    H5Tclose(type);
    H5Pclose(dcpl);
    if (!layout_ok || chunk[0] == 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: rows are not stored as plain little-endian chunks of whole rows", r->path);
    r->chunk_rows = (int64_t)chunk[0];
    r->n_chunks = (r->n_frames + r->chunk_rows - 1) / r->chunk_rows;
    r->chunk_addr = malloc(((size_t)r->n_chunks + 1) * sizeof *r->chunk_addr);
    if (!r->chunk_addr) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", r->path);
    for (int64_t i = 0; i <= r->n_chunks; i++) r->chunk_addr[i] = HADDR_UNDEF;
    return 0;
}

/* The file offset of chunk c (looked up once). */
static int chunk_address(slex_store_shard *r, int64_t c, haddr_t *addr, slex_error *err) {
    if (r->chunk_addr[c] == HADDR_UNDEF) {
        hsize_t offset[2] = {(hsize_t)(c * r->chunk_rows), 0};
        unsigned filter_mask = 0;
        hsize_t size = 0;
        if (H5Dget_chunk_info_by_coord(r->rows, offset, &filter_mask, &r->chunk_addr[c], &size) < 0 ||
            r->chunk_addr[c] == HADDR_UNDEF)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: chunk %lld of the rows is missing", r->path, (long long)c);
        int64_t rows_in = r->n_frames - c * r->chunk_rows < r->chunk_rows ? r->n_frames - c * r->chunk_rows
                                                                          : r->chunk_rows;
        if ((int64_t)r->chunk_addr[c] < 0 ||
            (int64_t)r->chunk_addr[c] + rows_in * r->dim * (int64_t)dtype_size(r->dtype) > r->want.bytes)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: chunk %lld lies outside the file", r->path, (long long)c);
    }
    *addr = r->chunk_addr[c];
    return 0;
}

static int read_fully(slex_store_shard *r, void *buf, int64_t len, int64_t at, slex_error *err) {
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t got = pread(r->fd, p, (size_t)len, (off_t)at);
        if (got <= 0)
            return slex_fail_as(err, SLEX_ERR_IO, "%s: read at byte %lld failed: %s", r->path, (long long)at,
                             got < 0 ? strerror(errno) : "unexpected end of file");
        p += got;
        at += got;
        len -= got;
    }
    return 0;
}

/* Checksums the bytes [stream_pos, until) that nobody asked for. */
static int stream_skip_to(slex_store_shard *r, int64_t until, slex_error *err) {
    if (until > r->stream_pos && !r->skip && !(r->skip = malloc(SKIP_BLOCK)))
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", r->path);
    while (r->stream_pos < until) {
        int64_t n = until - r->stream_pos < SKIP_BLOCK ? until - r->stream_pos : SKIP_BLOCK;
        if (read_fully(r, r->skip, n, r->stream_pos, err)) return -1;
        r->stream_crc = crc32(r->stream_crc, r->skip, (uInt)n);
        r->stream_pos += n;
    }
    return 0;
}

/* Reads bytes [at, at+len) into buf, folding those at or past the stream position into the
 * running CRC (bytes before it were folded in when the stream passed them). */
static int read_streamed(slex_store_shard *r, unsigned char *buf, int64_t len, int64_t at, slex_error *err) {
    if (at < r->stream_pos) {
        int64_t n = r->stream_pos - at < len ? r->stream_pos - at : len;
        if (read_fully(r, buf, n, at, err)) return -1;
        buf += n;
        at += n;
        len -= n;
    }
    if (len == 0) return 0;
    if (stream_skip_to(r, at, err) || read_fully(r, buf, len, at, err)) return -1;
    for (int64_t done = 0; done < len;) {
        int64_t n = len - done < (1 << 30) ? len - done : (1 << 30);
        r->stream_crc = crc32(r->stream_crc, buf + done, (uInt)n);
        done += n;
    }
    r->stream_pos = at + len;
    return 0;
}

int slex_store_shard_verify(slex_store_shard *r, slex_error *err) {
    if (!r->verified) {
        if (stream_skip_to(r, r->want.bytes, &r->verified_why)) r->verified = -1;
        else if ((uint32_t)r->stream_crc != r->want.crc32) {
            r->verified = -1;
            slex_fail_as(&r->verified_why, SLEX_ERR_INPUT,
                      "%s: CRC-32 of its bytes is %08x, the index says %08x: the file is damaged or was replaced "
                      "(re-run the stage that wrote the store to repair it)",
                      r->path, (unsigned)r->stream_crc, (unsigned)r->want.crc32);
        } else r->verified = 1;
    }
    return r->verified > 0 ? 0 : slex_fail_as(err, r->verified_why.kind, "%s", r->verified_why.msg);
}

slex_store_shard *slex_store_shard_open(const slex_store *s, int shard, slex_error *err) {
    if (shard < 0 || shard >= s->nshard) return slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: no shard %d", s->dir, shard), NULL;
    slex_store_shard *r = calloc(1, sizeof *r);
    if (!r) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", s->dir), NULL;
    r->file = r->rows = -1;
    r->dtype = s->dtype;
    r->dim = s->dim;
    r->want = s->shards[shard].rec;
    r->stream_crc = crc32(0L, Z_NULL, 0);
    char name[64];
    slex_store_shard_name(shard, s->nshard, name, sizeof name);
    if (join_path(s->dir, strcat(name, ".h5"), r->path, sizeof r->path, err)) goto fail;
    struct stat st;
    if ((r->fd = open(r->path, O_RDONLY)) < 0 || fstat(r->fd, &st)) {
        slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", r->path, strerror(errno));
        goto fail;
    }
    if ((int64_t)st.st_size != r->want.bytes) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: %lld bytes, the index says %lld", r->path, (long long)st.st_size,
                  (long long)r->want.bytes);
        goto fail;
    }
    r->file = H5Fopen(r->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r->file < 0) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: cannot open HDF5 file: not HDF5 or damaged", r->path);
        goto fail;
    }
    if (check_identity(s, shard, r, err)) goto fail;
    r->rows = H5Dopen2(r->file, rows_dataset(s->dtype), H5P_DEFAULT);
    if (r->rows < 0) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: no dataset '%s'", r->path, rows_dataset(s->dtype));
        goto fail;
    }
    hid_t space = H5Dget_space(r->rows);
    hsize_t dims[2] = {0, 1};
    int rank = H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    if ((s->dtype == SLEX_STORE_F32 && (rank != 2 || (int)dims[1] != s->dim)) ||
        (s->dtype == SLEX_STORE_I32 && rank != 1)) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: dataset '%s' does not have the index's shape", r->path, rows_dataset(s->dtype));
        goto fail;
    }
    r->n_frames = (int64_t)dims[0];
    if (r->n_frames != r->want.frames) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: %lld frames, the index says %lld", r->path, (long long)r->n_frames,
                  (long long)r->want.frames);
        goto fail;
    }
    if (read_lengths_and_ids(r, err) || check_ids_against_manifest(s, shard, r, err) || read_chunk_layout(r, err))
        goto fail;
    return r;
fail:
    slex_store_shard_close(r);
    return NULL;
}

void slex_store_shard_close(slex_store_shard *r) {
    if (!r) return;
    if (r->utt_ids) {
        for (int64_t i = 0; i < r->n_utts; i++) H5free_memory(r->utt_ids[i]);
        free(r->utt_ids);
    }
    free(r->lengths);
    free(r->offsets);
    free(r->chunk_addr);
    free(r->skip);
    if (r->fd >= 0) close(r->fd);
    if (r->rows >= 0) H5Dclose(r->rows);
    if (r->file >= 0) H5Fclose(r->file);
    free(r);
}

int64_t slex_store_shard_num_utts(const slex_store_shard *r) { return r->n_utts; }
int64_t slex_store_shard_num_frames(const slex_store_shard *r) { return r->n_frames; }
const int64_t *slex_store_shard_lengths(const slex_store_shard *r) { return r->lengths; }
const int64_t *slex_store_shard_offsets(const slex_store_shard *r) { return r->offsets; }
const char *slex_store_shard_utt_id(const slex_store_shard *r, int64_t i) { return r->utt_ids[i]; }

int slex_store_shard_read_rows(slex_store_shard *r, int64_t start, int64_t count, void *buf, slex_error *err) {
    if (start < 0 || count < 0 || start + count > r->n_frames)
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: rows %lld..%lld are outside 0..%lld", r->path, (long long)start,
                         (long long)(start + count), (long long)r->n_frames);
    int64_t row_bytes = (int64_t)r->dim * (int64_t)dtype_size(r->dtype);
    unsigned char *out = buf;
    /* Rows in a chunk are contiguous and in order (C layout of a (chunk_rows, dim) block). */
    for (int64_t row = start; row < start + count;) {
        int64_t c = row / r->chunk_rows, in_chunk = (c + 1) * r->chunk_rows - row;
        int64_t take = start + count - row < in_chunk ? start + count - row : in_chunk;
        haddr_t chunk = 0;
        if (chunk_address(r, c, &chunk, err) ||
            read_streamed(r, out, take * row_bytes, (int64_t)chunk + (row - c * r->chunk_rows) * row_bytes, err))
            return -1;
        out += take * row_bytes;
        row += take;
    }
    return 0;
}

int slex_store_shard_gather(slex_store_shard *r, const int64_t *rows, int64_t n, void *buf, slex_error *err) {
    int64_t row_bytes = (int64_t)r->dim * (int64_t)dtype_size(r->dtype);
    unsigned char *out = buf;
    for (int64_t i = 0, run; i < n; i += run) {
        int64_t row = rows[i];
        if (row < 0 || row >= r->n_frames)
            return slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: row %lld is outside 0..%lld", r->path, (long long)row, (long long)r->n_frames);
        /* consecutive rows of one chunk are one read */
        const int64_t chunk_end = (row / r->chunk_rows + 1) * r->chunk_rows;
        for (run = 1; i + run < n && rows[i + run] == row + run && row + run < chunk_end && row + run < r->n_frames;) run++;
        haddr_t chunk = 0;
        if (chunk_address(r, row / r->chunk_rows, &chunk, err) ||
            read_fully(r, out + i * row_bytes, run * row_bytes, (int64_t)chunk + (row % r->chunk_rows) * row_bytes, err))
            return -1;
    }
    return 0;
}
