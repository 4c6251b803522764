/* train/batch's memory does not grow with the labels: two corpora of the same utterances, one
 * 10x longer than the other (2 h and 20 h of labels per source), each a slex-label store of 3
 * shards (every shard larger than one chunk of the store and one block of the check at open)
 * and a .km file, both at 50 Hz with a known pattern of ids.  The peak RSS that opening both
 * sources adds (VmHWM, reset through /proc/self/clear_refs, in a fresh child process) stays
 * below 16 MB (ASan included) and grows by less than 2 MB from 2 h to 20 h, where keeping the
 * labels adds 14 MB; the labels of loaded micro-batches equal the pattern, for random crops
 * and for whole utterances (every utterance, so every shard boundary and every chunk boundary
 * inside an utterance is read); an id out of range in the last shard, past the first block, is
 * refused naming the utterance, and against an id mismatch the first failure of a whole read
 * wins (the id when it comes first, else the label).  Utterances are symbolic links to one WAV
 * of their length (open reads no audio; loads read it).
 * usage: test_train_batch_mem SCRATCH_DIR [HOURS UTTERANCES]   (with HOURS: only measure) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "core/fileio.h"
#include "corpus/audio.h"
#include "store/store.h"
#include "train/batch.h"

#define K 500
#define NSHARD 3

static int32_t pattern(int src, int64_t u, int64_t f) {
    return (int32_t)(((uint64_t)u * 2654435761u + (uint64_t)f * 40503u + (uint64_t)src * 17u) % K);
}
static int64_t n_labels(int64_t samples) { return (samples - 400) / 320 + 1; } /* 50 Hz */

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) v = atol(line + strlen(key));
    if (f) fclose(f);
    return v;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0); 0 on success. */
static int reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* dir/c.tsv (root dir/wav; utterances u00000.wav... links to one.wav of `samples`), dir/store
 * (NSHARD shards, pattern 0; utterance bad_utt, when >= 0, has id K at its third last frame) and
 * dir/c.km (pattern 1). */
static void write_corpus(const char *dir, int64_t utts, int64_t samples, int64_t bad_utt) {
    char path[4400], target[4400], cmd[4500];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s/wav", dir, dir);
    CHECK(system(cmd) == 0, "mkdir %s", dir);
    slex_error err = {{0}};
    float *x = malloc(sizeof(float) * (size_t)samples);
    for (int64_t i = 0; i < samples; i++) x[i] = (float)(0.25 * ((i * 7919) % 1000) / 1000.0 - 0.1);
    snprintf(target, sizeof target, "%s/wav/one.wav", dir);
    CHECK(slex_audio_write_wav16(target, x, samples, 16000, &err) == 0, "%s", err.msg);
    free(x);
    snprintf(path, sizeof path, "%s/c.tsv", dir);
    FILE *man = fopen(path, "w");
    snprintf(path, sizeof path, "%s/c.km", dir);
    FILE *km = fopen(path, "w");
    fprintf(man, "%s/wav\n", dir);
    const int64_t nl = n_labels(samples);
    char *line = malloc((size_t)nl * 5 + 2);
    for (int64_t u = 0; u < utts; u++) {
        snprintf(path, sizeof path, "%s/wav/u%05lld.wav", dir, (long long)u);
        CHECK(symlink("one.wav", path) == 0, "symlink %s", path);
        fprintf(man, "u%05lld.wav\t%lld\n", (long long)u, (long long)samples);
        char *p = line;
        for (int64_t f = 0; f < nl; f++) p += sprintf(p, f ? " %d" : "%d", pattern(1, u, f));
        *p++ = '\n';
        fwrite(line, 1, (size_t)(p - line), km);
    }
    free(line);
    fclose(man);
    fclose(km);
    snprintf(path, sizeof path, "%s/store", dir);
    slex_store_meta meta = {SLEX_STORE_I32, 1, 50.0, "slex-label", "{}"};
    char fp[17];
    CHECK(slex_store_prepare(path, &meta, NSHARD, 0, fp, &err) == 0, "%s", err.msg);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)nl);
    for (int sh = 0; sh < NSHARD; sh++) {
        slex_store_writer *w = slex_store_writer_open(path, sh, NSHARD, &meta, fp, &err);
        CHECK(w != NULL, "%s", err.msg);
        for (int64_t u = utts * sh / NSHARD; w && u < utts * (sh + 1) / NSHARD; u++) {
            for (int64_t f = 0; f < nl; f++) lab[f] = pattern(0, u, f);
            if (u == bad_utt) lab[nl - 3] = K;
            char id[32];
            snprintf(id, sizeof id, "u%05lld.wav", (long long)u);
            CHECK(slex_store_writer_append(w, id, lab, nl) == 0, "append");
        }
        CHECK(w && slex_store_writer_commit(w, &err) == 0, "%s", err.msg);
    }
    free(lab);
    slex_store_summary sum;
    CHECK(slex_store_finalize(path, NSHARD, fp, NULL, &sum, &err) == 0 && sum.finalized, "%s", err.msg);
}

static slex_batcher *open_manifest(const char *dir, const char *manifest, int64_t max_sample, int64_t max_tokens, int both,
                                   slex_error *err) {
    slex_batch_options o;
    slex_batch_options_default(&o);
    o.max_tokens = max_tokens;
    o.micro_batch = 8;
    o.max_sample_size = max_sample;
    o.min_sample_size = 0;
    o.label_rate = 50.0;
    o.num_classes = K;
    slex_data_spec d[2];
    char spec[9000];
    snprintf(spec, sizeof spec, "%s/%s:%s/store:1", dir, manifest, dir);
    CHECK(slex_data_spec_parse(spec, &d[0], err) == 0, "%s", err->msg);
    snprintf(spec, sizeof spec, "%s/c.tsv:%s/c.km:1", dir, dir);
    CHECK(slex_data_spec_parse(spec, &d[1], err) == 0, "%s", err->msg);
    slex_hubert_config c; /* HuBERT's conv stack: 320 samples per frame */
    slex_hubert_config_default(&c);
    const int k[7] = {10, 3, 3, 3, 3, 2, 2}, st[7] = {5, 2, 2, 2, 2, 2, 2};
    c.num_conv = 7;
    for (int i = 0; i < 7; i++) c.conv_dim[i] = 512, c.conv_kernel[i] = k[i], c.conv_stride[i] = st[i];
    return slex_batcher_open(&o, d, both ? 2 : 1, &c, err);
}

static slex_batcher *open_corpus(const char *dir, int64_t max_sample, int64_t max_tokens, int both, slex_error *err) {
    return open_manifest(dir, "c.tsv", max_sample, max_tokens, both, err);
}

/* dir/c.tsv with utterance `other` renamed, as dir/other.tsv. */
static void rename_one(const char *dir, int64_t other) {
    char path[4400], line[256];
    snprintf(path, sizeof path, "%s/c.tsv", dir);
    FILE *in = fopen(path, "r");
    snprintf(path, sizeof path, "%s/other.tsv", dir);
    FILE *out = fopen(path, "w");
    for (int64_t n = 0; in && out && fgets(line, sizeof line, in); n++) {
        if (n == other + 1) line[0] = 'x';
        fputs(line, out);
    }
    if (in) fclose(in);
    if (out) fclose(out);
}

/* Loads every micro-batch of updates [0, steps) and compares the labels with the pattern
 * (fairseq's f0 = round(offset / 320), frame i -> label f0 + i at ratio 1).  Marks the
 * utterances loaded whole in seen[src][u]; returns the rows checked. */
static int64_t check_loads(slex_batcher *b, int64_t steps, char *seen[2], int64_t *wrong) {
    slex_error err = {{0}};
    slex_microbatch mb = {0};
    int64_t rows = 0;
    for (int64_t step = 0; step < steps; step++) {
        slex_batch_plan p;
        if (slex_batcher_plan(b, step, 0, &p, &err)) {
            CHECK(0, "plan: %s", err.msg);
            break;
        }
        for (int m = 0; m < p.n_micro; m++) {
            if (slex_batcher_load(b, &p, m, &mb, &err)) {
                CHECK(0, "load: %s", err.msg);
                break;
            }
            for (int r = 0; r < mb.B; r++, rows++) {
                const slex_batch_item *it = &p.items[p.micro_start[m] + r];
                int64_t f0 = (it->offset + 160) / 320; /* Python's round(offset / 320): ties to even */
                if ((it->offset % 320) == 160 && (it->offset / 320) % 2 == 0) f0--;
                for (int64_t i = 0; i < mb.T; i++) *wrong += mb.labels[r * mb.T + i] != pattern(it->source, it->utt, f0 + i);
                if (seen && it->offset == 0 && mb.T >= n_labels(p.crop) - 1) seen[it->source][it->utt] = 1;
            }
        }
        slex_batch_plan_free(&p);
    }
    slex_microbatch_free(&mb);
    return rows;
}

/* The peak RSS (kB) that opening both sources of dir adds, measured in a child process whose
 * heap holds no freed memory of earlier work to reuse (VmHWM reset to VmRSS just before). */
static long open_peak_kb(const char *dir, int64_t max_sample, int64_t max_tokens) {
    int fd[2];
    if (pipe(fd)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        slex_error err = {{0}};
        long kb = -1;
        if (reset_peak() == 0) {
            long rss0 = status_kb("VmRSS:");
            slex_batcher *b = open_corpus(dir, max_sample, max_tokens, 1, &err);
            if (b) kb = status_kb("VmHWM:") - rss0;
            else fprintf(stderr, "open %s: %s\n", dir, err.msg);
            slex_batcher_free(b);
        } else fprintf(stderr, "cannot reset VmHWM through /proc/self/clear_refs\n");
        _exit(write(fd[1], &kb, sizeof kb) == sizeof kb ? 0 : 1);
    }
    close(fd[1]);
    long kb = -1;
    if (pid < 0 || read(fd[0], &kb, sizeof kb) != sizeof kb) kb = -1;
    close(fd[0]);
    int status = 0;
    if (pid > 0) waitpid(pid, &status, 0);
    return kb;
}

/* write_corpus in a child process, so that its memory is not this process's heap. */
static void write_corpus_apart(const char *dir, int64_t utts, int64_t samples, int64_t bad_utt) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        check_failures = 0; /* this process's own */
        write_corpus(dir, utts, samples, bad_utt);
        fflush(NULL);
        _exit(check_failures ? 1 : 0);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0, "writing %s failed",
          dir);
}

int main(int argc, char **argv) {
    char base[2048], small[2100], big[2100];
    snprintf(base, sizeof base, "%s/test_train_batch_mem", argc > 1 ? argv[1] : "/tmp");
    slex_error err = {{0}};
    CHECK(slex_mkdirs(base, &err) == 0, "%s", err.msg);
    if (argc > 3) { /* measure only: HOURS of labels in UTTERANCES utterances */
        const int64_t utts = atoll(argv[3]), samples = (int64_t)(atof(argv[2]) * 3600 * 16000 / (double)utts);
        snprintf(big, sizeof big, "%s/measure", base);
        char done[2200];
        snprintf(done, sizeof done, "%s/store/index.json", big);
        if (!slex_path_exists(done)) write_corpus_apart(big, utts, samples, -1); /* kept for the next measure */
        long kb = open_peak_kb(big, 250000, 1400000);
        double t0 = seconds();
        slex_batcher *b = open_corpus(big, 250000, 1400000, 1, &err);
        double t1 = seconds();
        int64_t wrong = 0, rows = b ? check_loads(b, 20, NULL, &wrong) : 0;
        printf("%s h in %lld utterances, 2 sources (store + .km, 50 Hz, labels %lld MB in 2 bytes): open adds %ld kB of peak RSS, "
               "takes %.2f s; %lld rows loaded in %.3f s, %lld labels wrong\n", argv[2], (long long)utts,
               (long long)(2 * utts * n_labels(samples) * 2 >> 20), kb, t1 - t0, (long long)rows, seconds() - t1, (long long)wrong);
        slex_batcher_free(b);
        return check_finish("test_train_batch_mem");
    }
    const int64_t utts = 400, samples_small = 18 * 16000; /* 2 h (3 shards of 120,000 labels, each over a block); big: 10x */
    snprintf(small, sizeof small, "%s/small", base);
    snprintf(big, sizeof big, "%s/big", base);
    write_corpus_apart(small, utts, samples_small, -1);
    write_corpus_apart(big, utts, 10 * samples_small, -1);

    long kb_small = open_peak_kb(small, 250000, 1400000), kb_big = open_peak_kb(big, 250000, 1400000);
    fprintf(stderr, "open of 2 x 2 h of labels adds %ld kB of peak RSS, 2 x 20 h %ld kB (the labels are %lld kB in 2 bytes)\n",
            kb_small, kb_big, (long long)(2 * utts * n_labels(10 * samples_small) * 2 / 1024));
    CHECK(kb_small >= 0 && kb_big >= 0 && kb_big < 16384 && kb_big - kb_small < 2048,
          "opening 20 h of labels adds %ld kB of peak RSS, 2 h %ld kB", kb_big, kb_small);
    slex_batcher *b = open_corpus(big, 250000, 1400000, 1, &err);
    CHECK(b != NULL, "%s", err.msg);
    /* random crops of 250,000 samples in the long utterances */
    int64_t wrong = 0, rows = b ? check_loads(b, 6, NULL, &wrong) : 0;
    CHECK(rows >= 30 && wrong == 0, "20 h: %lld rows loaded, %lld labels wrong", (long long)rows, (long long)wrong);
    slex_batcher_free(b);

    /* whole utterances of the short corpus: batches of 400 slots, every utterance read whole */
    b = open_corpus(small, samples_small, 400 * samples_small, 1, &err);
    CHECK(b != NULL, "%s", err.msg);
    char *seen[2] = {calloc((size_t)utts, 1), calloc((size_t)utts, 1)};
    wrong = 0;
    rows = b ? check_loads(b, 12, seen, &wrong) : 0;
    int64_t unseen = 0;
    for (int s = 0; s < 2; s++)
        for (int64_t u = 0; u < utts; u++) unseen += !seen[s][u];
    CHECK(wrong == 0 && unseen == 0, "whole utterances: %lld rows, %lld labels wrong, %lld utterances never read whole",
          (long long)rows, (long long)wrong, (long long)unseen);
    free(seen[0]);
    free(seen[1]);
    slex_batcher_free(b);

    /* an id out of range near the end of the last shard (past its first block of rows) */
    snprintf(small, sizeof small, "%s/bad", base);
    write_corpus_apart(small, 100, 60 * 16000, 98); /* shard 2 = 66..99: 32 x 2999 rows before it */
    b = open_corpus(small, 250000, 1400000, 0, &err);
    CHECK(!b && err.kind == SLEX_ERR_INPUT && strstr(err.msg, "u00098.wav (line 100 of") && strstr(err.msg, "label 500 at frame 2996") &&
              strstr(err.msg, "outside the 500 classes"), "bad id: %s", b ? "(opened)" : err.msg);
    slex_batcher_free(b);
    /* the first failure a whole read would meet: an id that differs before the bad label wins, one after it does not */
    rename_one(small, 90);
    b = open_manifest(small, "other.tsv", 250000, 1400000, 0, &err);
    CHECK(!b && err.kind == SLEX_ERR_INPUT && strstr(err.msg, "utterance 91 is u00090.wav but line 92 of") &&
              strstr(err.msg, "another manifest"), "id before the bad label: %s", b ? "(opened)" : err.msg);
    slex_batcher_free(b);
    rename_one(small, 99);
    b = open_manifest(small, "other.tsv", 250000, 1400000, 0, &err);
    CHECK(!b && strstr(err.msg, "u00098.wav (line 100 of") && strstr(err.msg, "label 500"), "id after the bad label: %s",
          b ? "(opened)" : err.msg);
    slex_batcher_free(b);
    if (!check_failures) { /* ~100 MB of corpora: kept only to look at a failure */
        char cmd[2200];
        snprintf(cmd, sizeof cmd, "rm -rf %s", base);
        CHECK(system(cmd) == 0, "rm -rf %s", base);
    }
    return check_finish("test_train_batch_mem");
}
