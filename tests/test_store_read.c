/* The store's verifying reader (issue 9), leak-checked: rows read straight from a shard of
 * several chunks equal the values written, in order, out of order and gathered; verify() passes
 * after reading everything, part of it or nothing, and fails (idempotently, naming the shard and
 * both CRCs) once one byte of the rows is changed; a truncated shard is refused at open.
 * usage: test_store_read WORK_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/fileio.h"
#include "store/store.h"

#define DIM 4
#define ROWS 70001 /* 32,768 rows per chunk: three chunks, the last one partial */

static float value(int64_t row, int col) { return (float)row + (float)col * 0.25f; }

static int make_store(const char *dir) {
    slex_store_meta meta = {SLEX_STORE_F32, DIM, 100.0, "test_store_read", "{}"};
    slex_error err = {{0}};
    char fp[17];
    if (slex_store_prepare(dir, &meta, 1, 1, fp, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
    slex_store_writer *w = slex_store_writer_open(dir, 0, 1, &meta, fp, &err);
    if (!w) return fprintf(stderr, "%s\n", err.msg), -1;
    float *x = malloc((size_t)ROWS * DIM * sizeof *x);
    for (int64_t r = 0; r < ROWS; r++)
        for (int c = 0; c < DIM; c++) x[r * DIM + c] = value(r, c);
    int rc = slex_store_writer_append(w, "a.wav", x, 1) || slex_store_writer_append(w, "b.wav", x + DIM, ROWS - 1);
    free(x);
    if (rc) return fprintf(stderr, "%s\n", slex_store_writer_error(w)->msg), slex_store_writer_abort(w), -1;
    slex_store_summary sum;
    if (slex_store_writer_commit(w, &err) || slex_store_finalize(dir, 1, fp, NULL, &sum, &err) || !sum.finalized)
        return fprintf(stderr, "%s\n", err.msg), -1;
    return 0;
}

/* Rows [a, b) read in blocks of `block` equal the values written. */
static int rows_ok(slex_store_shard *r, int64_t a, int64_t b, int64_t block, float *buf) {
    slex_error err = {{0}};
    for (int64_t at = a; at < b; at += block) {
        int64_t n = b - at < block ? b - at : block;
        if (slex_store_shard_read_rows(r, at, n, buf, &err)) return fprintf(stderr, "%s\n", err.msg), 0;
        for (int64_t i = 0; i < n; i++)
            for (int c = 0; c < DIM; c++)
                if (buf[i * DIM + c] != value(at + i, c)) return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) return fprintf(stderr, "usage: test_store_read WORK_DIR\n"), 2;
    char dir[4096], shard_path[4200];
    snprintf(dir, sizeof dir, "%s/store_read", argv[1]);
    snprintf(shard_path, sizeof shard_path, "%s/part-00000-of-00001.h5", dir);
    slex_error err = {{0}};
    if (slex_mkdirs(argv[1], &err) || make_store(dir)) return 1;
    float *buf = malloc((size_t)ROWS * DIM * sizeof *buf);
    slex_store *s = slex_store_open(dir, &err);
    CHECK(s != NULL, "open: %s", err.msg);
    if (!s) return check_finish("store_read");

    slex_store_shard *r = slex_store_shard_open(s, 0, &err);
    CHECK(r && rows_ok(r, 0, ROWS, 5000, buf), "rows in order, blocks across chunk boundaries");
    CHECK(r && slex_store_shard_verify(r, &err) == 0, "verify after a whole read: %s", err.msg);
    slex_store_shard_close(r);

    r = slex_store_shard_open(s, 0, &err);
    CHECK(r && rows_ok(r, 40000, 50000, 3333, buf) && rows_ok(r, 10, 35000, 7000, buf) && rows_ok(r, 69990, ROWS, 4, buf),
          "rows out of order (behind the stream, across a chunk)");
    int64_t pick[5] = {70000, 0, 32768, 32767, 5};
    CHECK(r && slex_store_shard_gather(r, pick, 5, buf, &err) == 0, "gather: %s", err.msg);
    for (int i = 0; r && i < 5; i++) CHECK(buf[i * DIM + 3] == value(pick[i], 3), "gathered row %lld", (long long)pick[i]);
    /* runs of consecutive rows (read as one per chunk), across the chunk boundaries and the end */
    int64_t runs[40];
    for (int i = 0; i < 40; i++) runs[i] = i < 15 ? 32760 + i : i < 20 ? 3 + i : i < 35 ? 65530 + i : 69996 + (i - 35);
    CHECK(r && slex_store_shard_gather(r, runs, 40, buf, &err) == 0, "gather runs: %s", err.msg);
    int wrong = 0;
    for (int i = 0; r && i < 40; i++)
        for (int c = 0; c < DIM; c++) wrong += buf[i * DIM + c] != value(runs[i], c);
    CHECK(wrong == 0, "gathered runs: %d values differ", wrong);
    CHECK(r && slex_store_shard_verify(r, &err) == 0, "verify after partial reads: %s", err.msg);
    slex_store_shard_close(r);

    r = slex_store_shard_open(s, 0, &err);
    CHECK(r && slex_store_shard_verify(r, &err) == 0, "verify with no read: %s", err.msg);
    slex_store_shard_close(r);

    /* One byte of row 50,000 changed: the rows still read, verify fails. */
    size_t len = 0;
    char *bytes = slex_read_text_file(shard_path, &len, &err);
    CHECK(bytes != NULL, "read shard: %s", err.msg);
    if (bytes) {
        float want = value(50000, 1);
        size_t at = 0;
        for (size_t i = 0; i + 4 <= len; i++)
            if (!memcmp(bytes + i, &want, 4) && !memcmp(bytes + i + 4, &(float){value(50000, 2)}, 4)) at = i;
        CHECK(at > 0, "row 50000 found in the file");
        bytes[at] ^= 1;
        CHECK(slex_write_file_atomic(shard_path, bytes, len, &err) == 0, "write: %s", err.msg);
        r = slex_store_shard_open(s, 0, &err);
        CHECK(r && !rows_ok(r, 0, ROWS, 65536, buf), "the changed value is read");
        CHECK(r && slex_store_shard_verify(r, &err) == -1 && strstr(err.msg, "part-00000-of-00001.h5: CRC-32") &&
                  strstr(err.msg, "the index says"),
              "verify names the shard and the CRCs: %s", err.msg);
        err.msg[0] = '\0';
        CHECK(r && slex_store_shard_verify(r, &err) == -1 && strstr(err.msg, "CRC-32"), "verify again: %s", err.msg);
        slex_store_shard_close(r);
        CHECK(slex_write_file_atomic(shard_path, bytes, len - 100, &err) == 0, "truncate: %s", err.msg);
        r = slex_store_shard_open(s, 0, &err);
        CHECK(!r && strstr(err.msg, "bytes, the index says"), "a truncated shard is refused at open: %s", err.msg);
        slex_store_shard_close(r);
        free(bytes);
    }
    slex_store_close(s);
    free(buf);
    return check_finish("store_read");
}
