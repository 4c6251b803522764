/* The store: round trip of features and labels, chunk boundaries, records and finalize, the
 * filtered manifest, byte-identical rewrites, and crash safety (a writer killed mid-shard). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/fileio.h"
#include "store/store.h"

static float value(int64_t row, int col) { return (float)row * 0.5f + (float)col * 0.001f - 3.0f; }

/* Writes shard `shard` of a 2-shard store: utterances of 3, 0 (rejected) and `big` rows. */
static int write_shard(const char *dir, int shard, const slex_store_meta *meta, const char *fp, int64_t big,
                       int commit) {
    slex_error err = {{0}};
    slex_store_writer *w = slex_store_writer_open(dir, shard, 2, meta, fp, &err);
    if (!w) return fprintf(stderr, "%s\n", err.msg), -1;
    int64_t lens[2] = {3, big};
    int64_t row = 0;
    for (int u = 0; u < 2; u++) {
        float *x = malloc((size_t)(lens[u] * meta->dim) * sizeof *x);
        for (int64_t r = 0; r < lens[u]; r++)
            for (int c = 0; c < meta->dim; c++) x[r * meta->dim + c] = value(row + r, c);
        row += lens[u];
        char id[64];
        snprintf(id, sizeof id, "s%d/u%d.wav", shard, u);
        CHECK(slex_store_writer_append(w, id, x, lens[u]) == 0, "append");
        free(x);
        if (u == 0) slex_store_writer_reject(w, 3 + 3 * shard, "bad\tfile.wav", "no such\tfile");
    }
    if (!commit) return 0; /* the caller is a child about to be killed */
    if (slex_store_writer_commit(w, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
    return 0;
}

static int files_equal(const char *a, const char *b) {
    size_t la, lb;
    char *x = slex_read_text_file(a, &la, NULL), *y = slex_read_text_file(b, &lb, NULL);
    int eq = x && y && la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return eq;
}

int main(int argc, char **argv) {
    char base[4096], dir[4200], dir2[4200], path[4400], path2[4400];
    snprintf(base, sizeof base, "%s/test_store", argc > 1 ? argv[1] : "/tmp");
    snprintf(dir, sizeof dir, "%s/a", base);
    snprintf(dir2, sizeof dir2, "%s/b", base);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    CHECK(system(cmd) == 0, "rm");
    slex_error err = {{0}};
    slex_store_meta meta = {SLEX_STORE_F32, 1024, 50.0, "test-store", "{\"layer\":9}"};
    char fp[17], fp2[17];
    CHECK(slex_store_prepare(dir, &meta, 2, 0, fp, &err) == 0, "prepare: %s", err.msg);
    CHECK(slex_store_prepare(dir2, &meta, 2, 0, fp2, &err) == 0 && !strcmp(fp, fp2), "same fingerprint");

    /* Not done before writing; done after. 300 rows of 1024 floats span three 128-row chunks. */
    CHECK(slex_store_shard_is_done(dir, 0, 2, fp, &err) == 0, "not done yet");
    CHECK(write_shard(dir, 0, &meta, fp, 300, 1) == 0, "write shard 0");
    CHECK(slex_store_shard_is_done(dir, 0, 2, fp, &err) == 1, "done: %s", err.msg);
    CHECK(slex_store_shard_is_done(dir, 0, 2, "0000000000000000", &err) == 0, "other fingerprint: not done");

    /* Finalize waits for every shard. */
    slex_store_summary sum;
    CHECK(slex_store_finalize(dir, 2, fp, NULL, &sum, &err) == 0 && !sum.finalized && sum.shards_done == 1,
          "finalize with a shard missing");
    snprintf(path, sizeof path, "%s/index.json", dir);
    CHECK(!slex_path_exists(path), "no index yet");

    /* A writer killed before commit leaves nothing that looks complete. */
    pid_t pid = fork();
    if (pid == 0) {
        write_shard(dir, 1, &meta, fp, 5000, 0);
        raise(SIGKILL);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status), "child killed");
    CHECK(slex_store_shard_is_done(dir, 1, 2, fp, &err) == 0, "killed shard is not done");
    snprintf(path, sizeof path, "%s/part-00001-of-00002.h5", dir);
    CHECK(!slex_path_exists(path), "killed shard has no final file");
    /* Killing a redo of a finished shard un-finishes it (the record goes first). */
    pid = fork();
    if (pid == 0) {
        write_shard(dir, 0, &meta, fp, 300, 0);
        raise(SIGKILL);
    }
    waitpid(pid, &status, 0);
    CHECK(slex_store_shard_is_done(dir, 0, 2, fp, &err) == 0, "interrupted redo is not done");

    CHECK(write_shard(dir, 0, &meta, fp, 300, 1) == 0 && write_shard(dir, 1, &meta, fp, 200, 1) == 0, "write");
    /* The manifest: root + 6 lines; lines 3 and 6 are the rejects (file lines count the root). */
    snprintf(path, sizeof path, "%s/m.tsv", base);
    FILE *f = fopen(path, "w");
    fprintf(f, "/data\ns0/u0.wav\t10\tzh\nbad\tfile.wav\ns0/u1.wav\t30\ns1/u0.wav\t40\nbad\tfile.wav\ns1/u1.wav\t60\tzh\tx\n");
    fclose(f);
    CHECK(slex_store_finalize(dir, 2, fp, path, &sum, &err) == 0 && sum.finalized, "finalize: %s", err.msg);
    CHECK(sum.utterances == 4 && sum.frames == 3 + 300 + 3 + 200 && sum.rejected == 2, "summary");
    snprintf(path, sizeof path, "%s/manifest.tsv", dir);
    char *text = slex_read_text_file(path, NULL, &err);
    CHECK(text && !strcmp(text, "/data\ns0/u0.wav\t10\ns0/u1.wav\t30\ns1/u0.wav\t40\ns1/u1.wav\t60\n"),
          "filtered manifest (fairseq's two columns):\n%s", text);
    free(text);
    snprintf(path, sizeof path, "%s/manifest.columns", dir);
    text = slex_read_text_file(path, NULL, &err);
    CHECK(text && !strcmp(text, "relpath\tcolumn3\tcolumn4\ns0/u0.wav\tzh\ns0/u1.wav\ns1/u0.wav\ns1/u1.wav\tzh\tx\n"),
          "its extra columns in the side file:\n%s", text);
    free(text);
    snprintf(path, sizeof path, "%s/rejects.tsv", dir);
    text = slex_read_text_file(path, NULL, &err);
    CHECK(text && !strcmp(text, "line\tutt_id\treason\n3\tbad file.wav\tno such file\n6\tbad file.wav\tno such file\n"),
          "rejects:\n%s", text);
    free(text);

    /* Read back. */
    slex_store *s = slex_store_open(dir, &err);
    CHECK(s != NULL, "open: %s", err.msg);
    if (s) {
        CHECK(slex_store_nshard(s) == 2 && slex_store_dim(s) == 1024 && slex_store_frames(s) == 506 &&
                  slex_store_frame_rate(s) == 50.0 && slex_store_utterances(s) == 4,
              "store fields");
        slex_store_shard *r = slex_store_shard_open(s, 0, &err);
        CHECK(r && slex_store_shard_num_utts(r) == 2 && slex_store_shard_lengths(r)[1] == 300 &&
                  slex_store_shard_offsets(r)[2] == 303 && !strcmp(slex_store_shard_utt_id(r, 1), "s0/u1.wav"),
              "shard index");
        float *x = malloc(200 * 1024 * sizeof *x);
        /* Rows 100..299 cross chunk boundaries at 128 and 256. */
        CHECK(r && slex_store_shard_read_rows(r, 100, 200, x, &err) == 0, "read: %s", err.msg);
        int bad = 0;
        for (int64_t i = 0; i < 200; i++)
            for (int c = 0; c < 1024; c++) bad += x[i * 1024 + c] != value(100 + i, c);
        CHECK(bad == 0, "%d values differ", bad);
        CHECK(r && slex_store_shard_read_rows(r, 300, 10, x, &err) == -1 && strstr(err.msg, "outside"), "bounds");
        /* Gather: any order, repeats, across chunks. */
        int64_t pick[6] = {302, 0, 128, 127, 302, 255};
        CHECK(r && slex_store_shard_gather(r, pick, 6, x, &err) == 0, "gather: %s", err.msg);
        bad = 0;
        for (int i = 0; i < 6; i++)
            for (int c = 0; c < 1024; c++) bad += x[i * 1024 + c] != value(pick[i], c);
        CHECK(bad == 0, "gather: %d values differ", bad);
        int64_t outside = 303;
        CHECK(r && slex_store_shard_gather(r, &outside, 1, x, &err) == -1 && strstr(err.msg, "outside"), "gather bounds");
        free(x);
        slex_store_shard_close(r);
        slex_store_close(s);
    }

    /* Byte-identical files from a second writer (another directory, later in time). */
    sleep(1);
    CHECK(write_shard(dir2, 0, &meta, fp, 300, 1) == 0, "write b");
    snprintf(path, sizeof path, "%s/part-00000-of-00002.h5", dir);
    snprintf(path2, sizeof path2, "%s/part-00000-of-00002.h5", dir2);
    CHECK(files_equal(path, path2), "rewritten shard is byte-identical");

    /* Labels: int32, one per frame. */
    slex_store_meta lmeta = {SLEX_STORE_I32, 1, 50.0, "test-labels", "{}"};
    snprintf(dir2, sizeof dir2, "%s/labels", base);
    CHECK(slex_store_prepare(dir2, &lmeta, 1, 0, fp2, &err) == 0, "prepare labels");
    slex_store_writer *w = slex_store_writer_open(dir2, 0, 1, &lmeta, fp2, &err);
    int32_t labels[70000];
    for (int i = 0; i < 70000; i++) labels[i] = (i * 7919) % 1000;
    CHECK(w && slex_store_writer_append(w, "x", labels, 70000) == 0 && slex_store_writer_commit(w, &err) == 0,
          "labels: %s", err.msg);
    CHECK(slex_store_finalize(dir2, 1, fp2, NULL, &sum, &err) == 0 && sum.finalized, "finalize labels");
    s = slex_store_open(dir2, &err);
    slex_store_shard *r = s ? slex_store_shard_open(s, 0, &err) : NULL;
    int32_t back[1000];
    CHECK(r && slex_store_shard_read_rows(r, 69000, 1000, back, &err) == 0 && back[999] == labels[69999] &&
              back[0] == labels[69000],
          "labels read back: %s", err.msg);
    slex_store_shard_close(r);
    slex_store_close(s);

    /* Other parameters: refused without force, accepted with it (and the old index removed). */
    slex_store_meta other = meta;
    other.params_json = "{\"layer\":10}";
    CHECK(slex_store_prepare(dir, &other, 2, 0, fp2, &err) == -1 && strstr(err.msg, "--force"), "%s", err.msg);
    CHECK(slex_store_prepare(dir, &other, 2, 1, fp2, &err) == 0 && strcmp(fp, fp2), "force");
    snprintf(path, sizeof path, "%s/index.json", dir);
    CHECK(!slex_path_exists(path), "index removed when the parameters change");
    CHECK(slex_store_shard_is_done(dir, 0, 2, fp2, &err) == 0, "old shards are not done for new parameters");

    /* A damaged record is not trusted; a store without an index is not opened. */
    snprintf(path, sizeof path, "%s/part-00001-of-00002.json", dir);
    CHECK(slex_write_file_atomic(path, "{garbage", 8, &err) == 0, "write garbage");
    CHECK(slex_store_shard_is_done(dir, 1, 2, fp, &err) == 0, "damaged record");
    CHECK(slex_store_open(dir, &err) == NULL && strstr(err.msg, "not a finished store"), "%s", err.msg);
    return check_finish("test_store");
}
