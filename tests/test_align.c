/* test_align: the alignment format, frame labels, and the TextGrid reader and importer, on
 * hand-computed cases and the hand-written files of tests/data/textgrid/.
 *
 *   test_align <tests/data/textgrid dir> <slex-import-textgrid binary> <scratch dir> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "corpus/align.h"
#include "check.h"
#include "corpus/manifest.h"
#include "corpus/textgrid.h"

static const char *scratch;

static char *write_file(const char *name, const char *text) {
    static char path[8][1024];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 1024, "%s/%s", scratch, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    return p;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    s[fread(s, 1, (size_t)n, f)] = '\0';
    fclose(f);
    return s;
}

static void test_frames(void) {
    /* Frame counts (FACTS: 16000 samples -> 49 HuBERT frames; Kaldi 1 + (N-400)//160). */
    CHECK(slex_align_num_frames(SLEX_FRAMES_50HZ, 16000) == 49, "50 Hz 16000");
    CHECK(slex_align_num_frames(SLEX_FRAMES_100HZ, 16000) == 98, "100 Hz 16000");
    CHECK(slex_align_num_frames(SLEX_FRAMES_50HZ, 399) == 0, "50 Hz 399");
    CHECK(slex_align_num_frames(SLEX_FRAMES_100HZ, 400) == 1, "100 Hz 400");
    CHECK(slex_align_num_frames(SLEX_FRAMES_50HZ, 719) == 1, "50 Hz 719");
    CHECK(slex_align_num_frames(SLEX_FRAMES_50HZ, 720) == 2, "50 Hz 720");
    CHECK(slex_align_num_frames(SLEX_FRAMES_100HZ, 559) == 1 && slex_align_num_frames(SLEX_FRAMES_100HZ, 560) == 2,
          "100 Hz 559/560");

    /* a [0,500) b [500,700) c [700,1200): 100 Hz centres 200 360 520 680 840 1000 -> a a b b c c;
     * 50 Hz centres 200 520 840 -> a b c. */
    slex_label_vocab *v = slex_label_vocab_create();
    int32_t a = slex_label_vocab_add(v, "a", 1), b = slex_label_vocab_add(v, "b", 1), c = slex_label_vocab_add(v, "c", 1);
    slex_segment segs[] = {{0, 500, "a"}, {500, 700, "b"}, {700, 1200, "c"}};
    int32_t out[8];
    slex_error err = {{0}};
    CHECK(!slex_align_frame_labels(segs, 3, 1200, SLEX_FRAMES_100HZ, v, 0, out, &err), "%s", err.msg);
    int32_t want100[] = {a, a, b, b, c, c};
    for (int i = 0; i < 6; i++) CHECK(out[i] == want100[i], "100 Hz frame %d: %d vs %d", i, out[i], want100[i]);
    CHECK(!slex_align_frame_labels(segs, 3, 1200, SLEX_FRAMES_50HZ, v, 0, out, &err), "%s", err.msg);
    int32_t want50[] = {a, b, c};
    for (int i = 0; i < 3; i++) CHECK(out[i] == want50[i], "50 Hz frame %d: %d vs %d", i, out[i], want50[i]);
    /* A boundary exactly at a centre belongs to the phone that starts there. */
    slex_segment edge[] = {{0, 360, "a"}, {360, 1200, "b"}};
    CHECK(!slex_align_frame_labels(edge, 2, 1200, SLEX_FRAMES_100HZ, v, 0, out, &err), "%s", err.msg);
    CHECK(out[0] == a && out[1] == b, "centre on a boundary: %d %d", out[0], out[1]);
    /* Segments that do not tile the audio are refused. */
    CHECK(slex_align_frame_labels(segs, 3, 1300, SLEX_FRAMES_100HZ, v, 0, out, &err) == -1 &&
              strstr(err.msg, "1300"), "length mismatch: %s", err.msg);
    slex_segment unknown[] = {{0, 1200, "zz"}};
    CHECK(slex_align_frame_labels(unknown, 1, 1200, SLEX_FRAMES_100HZ, v, 0, out, &err) == -1 && strstr(err.msg, "zz"),
          "unknown label: %s", err.msg);

    /* Tones: "ou+3" -> "ou"; labels without a digit suffix stay whole. */
    CHECK(slex_label_base_length("ou+3") == 2, "ou+3");
    CHECK(slex_label_base_length("ts.h+4") == 4, "ts.h+4");
    CHECK(slex_label_base_length("l/2") == 3, "l/2");
    CHECK(slex_label_base_length("+3") == 2, "+3");
    CHECK(slex_label_base_length("a+") == 2, "a+");
    CHECK(slex_label_base_length("a+b") == 3, "a+b");
    slex_segment tonal[] = {{0, 600, "a+1"}, {600, 1200, "a+4"}};
    CHECK(!slex_align_frame_labels(tonal, 2, 1200, SLEX_FRAMES_50HZ, v, 1, out, &err), "%s", err.msg);
    CHECK(out[0] == a && out[1] == a && out[2] == a, "tone-free frames %d %d %d", out[0], out[1], out[2]);
    CHECK(slex_align_frame_labels(tonal, 2, 1200, SLEX_FRAMES_50HZ, v, 0, out, &err) == -1, "tonal label not in vocab");
    slex_label_vocab_free(v);
}

static void test_vocab(void) {
    slex_label_vocab *v = slex_label_vocab_create();
    const char *labels[] = {"sil", "b", "a", "sil", "a", "sil"};
    for (int i = 0; i < 6; i++) slex_label_vocab_count(v, labels[i], strlen(labels[i]));
    for (int i = 0; i < 200; i++) { /* grow past the first table */
        char l[16];
        snprintf(l, sizeof l, "x%03d", i);
        slex_label_vocab_add(v, l, strlen(l));
    }
    CHECK(slex_label_vocab_size(v) == 203, "size %d", slex_label_vocab_size(v));
    CHECK(!slex_label_vocab_sort(v), "sort");
    CHECK(!strcmp(slex_label_vocab_label(v, 0), "a") && !strcmp(slex_label_vocab_label(v, 1), "b") &&
              !strcmp(slex_label_vocab_label(v, 2), "sil") && !strcmp(slex_label_vocab_label(v, 3), "x000"),
          "sorted order");
    CHECK(slex_label_vocab_occurrences(v, 2) == 3 && slex_label_vocab_occurrences(v, 0) == 2, "counts");
    CHECK(slex_label_vocab_find(v, "x199", 4) == 202 && slex_label_vocab_find(v, "x2000", 5) == -1, "find");
    slex_error err = {{0}};
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab.txt", scratch);
    CHECK(!slex_label_vocab_write(v, path, &err), "%s", err.msg);
    slex_label_vocab *r = slex_label_vocab_read(path, &err);
    CHECK(r && slex_label_vocab_size(r) == 203 && slex_label_vocab_find(r, "sil", 3) == 2 &&
              slex_label_vocab_occurrences(r, 2) == 3, "vocab round trip");
    slex_label_vocab_free(r);
    slex_label_vocab_free(v);
    char *dup = write_file("dup.txt", "a\t1\nb\t2\na\t3\n");
    CHECK(!slex_label_vocab_read(dup, &err) && strstr(err.msg, "dup.txt:3:"), "duplicate label: %s", err.msg);
}

/* Reading an alignment that must fail with `what` at file:line. */
static void expect_bad_alignment(const char *name, const char *text, int line, const char *what) {
    char *path = write_file(name, text);
    slex_error err = {{0}};
    slex_alignment *a = slex_alignment_read(path, &err);
    char where[1100];
    snprintf(where, sizeof where, "%s:%d:", path, line);
    CHECK(!a && strstr(err.msg, where) && strstr(err.msg, what), "%s: expected '%s' '%s', got '%s'", name, where, what,
          err.msg);
    slex_alignment_free(a);
}

static void test_alignment_file(void) {
    const char *good = "# comment\n"
                       "u1.wav\t0\t100\tsil\n"
                       "u1.wav\t100\t400\ta+2\n"
                       "u1.wav\t400\t1200\tsil\n"
                       "d/u2.wav\t0\t1200\tb\n";
    char *path = write_file("good.align", good);
    slex_error err = {{0}};
    slex_alignment *a = slex_alignment_read(path, &err);
    CHECK(a, "%s", err.msg);
    if (a) {
        CHECK(slex_alignment_num_utts(a) == 2, "utts");
        int64_t n = 0, u = slex_alignment_find(a, "u1.wav");
        const slex_segment *s = slex_alignment_segments(a, u, &n);
        CHECK(u == 0 && n == 3 && s[1].start == 100 && s[1].end == 400 && !strcmp(s[1].label, "a+2"), "u1 phones");
        CHECK(slex_alignment_utt_line(a, 1) == 5, "line of u2: %lld", (long long)slex_alignment_utt_line(a, 1));
        CHECK(slex_alignment_find(a, "nope") == -1, "find unknown");
        slex_label_vocab *tonefree = slex_alignment_vocab(a, 1, &err);
        CHECK(tonefree && slex_label_vocab_size(tonefree) == 3 && slex_label_vocab_find(tonefree, "a", 1) == 0,
              "tone-free vocabulary");
        slex_label_vocab *tonal = slex_alignment_vocab(a, 0, &err);
        CHECK(tonal && slex_label_vocab_find(tonal, "a+2", 3) == 0 && slex_label_vocab_occurrences(tonal, 2) == 2,
              "tonal vocabulary");
        slex_label_vocab_free(tonefree);
        slex_label_vocab_free(tonal);

        /* Against manifests: good, wrong length, unknown utterance, missing utterance. */
        char *m_ok = write_file("m_ok.tsv", "/root\nu1.wav\t1200\nd/u2.wav\t1200\tx\tspk\n");
        char *m_len = write_file("m_len.tsv", "/root\nu1.wav\t1200\nd/u2.wav\t1250\n");
        char *m_unk = write_file("m_unk.tsv", "/root\nu1.wav\t1200\n");
        char *m_miss = write_file("m_miss.tsv", "/root\nu1.wav\t1200\nd/u2.wav\t1200\nu3.wav\t500\n");
        slex_manifest *m = slex_manifest_read(m_ok, &err);
        CHECK(m && !slex_alignment_check_manifest(a, m, 1, &err), "manifest ok: %s", err.msg);
        slex_manifest_free(m);
        m = slex_manifest_read(m_len, &err);
        char where[1200];
        snprintf(where, sizeof where, "%s:5:", path);
        CHECK(m && slex_alignment_check_manifest(a, m, 1, &err) == -1 && strstr(err.msg, where) &&
                  strstr(err.msg, "m_len.tsv:3") && strstr(err.msg, "1250"), "length mismatch: %s", err.msg);
        slex_manifest_free(m);
        m = slex_manifest_read(m_unk, &err);
        CHECK(m && slex_alignment_check_manifest(a, m, 1, &err) == -1 && strstr(err.msg, where) &&
                  strstr(err.msg, "unknown utterance 'd/u2.wav'"), "unknown utterance: %s", err.msg);
        slex_manifest_free(m);
        m = slex_manifest_read(m_miss, &err);
        CHECK(m && slex_alignment_check_manifest(a, m, 1, &err) == -1 && strstr(err.msg, "m_miss.tsv:4:") &&
                  strstr(err.msg, "u3.wav"), "missing utterance: %s", err.msg);
        CHECK(!slex_alignment_check_manifest(a, m, 0, &err), "missing allowed: %s", err.msg);
        slex_manifest_free(m);

        /* Per-frame labels of u1 at 100 Hz: 1200 samples -> 6 frames, centres 200..1000:
         * a a(360) sil(520) ... */
        slex_label_vocab *v = slex_alignment_vocab(a, 0, &err);
        int32_t out[8];
        s = slex_alignment_segments(a, 0, &n);
        CHECK(!slex_align_frame_labels(s, n, 1200, SLEX_FRAMES_100HZ, v, 0, out, &err), "%s", err.msg);
        int32_t ia = slex_label_vocab_find(v, "a+2", 3), is = slex_label_vocab_find(v, "sil", 3);
        int32_t want[] = {ia, ia, is, is, is, is};
        for (int i = 0; i < 6; i++) CHECK(out[i] == want[i], "u1 frame %d", i);
        slex_label_vocab_free(v);
    }
    slex_alignment_free(a);

    expect_bad_alignment("gap.align", "u\t0\t100\ta\nu\t120\t200\tb\n", 2, "gap");
    expect_bad_alignment("overlap.align", "u\t0\t100\ta\nu\t90\t200\tb\n", 2, "overlap");
    expect_bad_alignment("start.align", "# x\nu\t5\t100\ta\n", 2, "not 0");
    expect_bad_alignment("empty.align", "u\t0\t100\ta\nu\t100\t100\tb\n", 2, "empty or reversed");
    expect_bad_alignment("columns.align", "u\t0\t100\n", 1, "4 tab-separated columns");
    expect_bad_alignment("number.align", "u\t0\t1e2\ta\n", 1, "end is not");
    expect_bad_alignment("space.align", "u\t0\t100\ta b\n", 1, "whitespace");
    expect_bad_alignment("split.align", "u\t0\t100\ta\nv\t0\t100\ta\nu\t100\t200\ta\n", 3, "already appeared");

    /* The writer refuses what the reader refuses. */
    slex_segment gap[] = {{0, 100, "a"}, {110, 200, "b"}};
    CHECK(slex_align_write_utt(stdout, "u", gap, 2, &err) == -1 && strstr(err.msg, "gap"), "writer gap: %s", err.msg);
}

static void expect_bad_textgrid(const char *dir, const char *name, int line, const char *what) {
    char path[1024], where[1100];
    snprintf(path, sizeof path, "%s/bad/%s.TextGrid", dir, name);
    if (line) snprintf(where, sizeof where, "%s:%d:", path, line);
    else snprintf(where, sizeof where, "%s:", path);
    slex_error err = {{0}};
    slex_textgrid *tg = slex_textgrid_read(path, &err);
    slex_textgrid_options o;
    slex_textgrid_options_default(&o);
    slex_segment *segs = NULL;
    char *labels = NULL;
    int64_t n = 0;
    int rc = tg ? slex_textgrid_to_segments(tg, &o, 16000, &segs, &labels, &n, &err) : -1;
    CHECK(rc == -1 && strstr(err.msg, where) && strstr(err.msg, what), "%s: expected '%s' '%s', got '%s'", name, where,
          what, err.msg);
    free(segs);
    free(labels);
    slex_textgrid_free(tg);
}

/* The segments of a TextGrid against hand-computed (start, end, label) triples. */
static void check_segments(const char *what, const slex_segment *s, int64_t n, const slex_segment *want, int64_t nw) {
    CHECK(n == nw, "%s: %lld phones, expected %lld", what, (long long)n, (long long)nw);
    for (int64_t i = 0; i < n && i < nw; i++)
        CHECK(s[i].start == want[i].start && s[i].end == want[i].end && !strcmp(s[i].label, want[i].label),
              "%s phone %lld: [%lld %lld) %s, expected [%lld %lld) %s", what, (long long)i, (long long)s[i].start,
              (long long)s[i].end, s[i].label, (long long)want[i].start, (long long)want[i].end, want[i].label);
}

static void test_textgrid(const char *dir) {
    char path[1024];
    slex_error err = {{0}};
    slex_textgrid_options o;
    slex_textgrid_options_default(&o);
    slex_segment *segs = NULL;
    char *labels = NULL;
    int64_t n = 0;

    /* Long format, two tiers, a quoted quote, a UTF-8 label. */
    snprintf(path, sizeof path, "%s/good/a.TextGrid", dir);
    slex_textgrid *tg = slex_textgrid_read(path, &err);
    CHECK(tg, "%s", err.msg);
    if (tg) {
        CHECK(tg->n_tiers == 2 && tg->xmax == 1.0, "a: tiers");
        const slex_textgrid_tier *w = slex_textgrid_tier_by_name(tg, "words");
        CHECK(w && w->n == 3 && !strcmp(w->items[1].text, "say \"hello\"") && w->items[1].line == 20,
              "a: words tier (text '%s', line %lld)", w ? w->items[1].text : "", w ? (long long)w->items[1].line : 0);
        CHECK(!slex_textgrid_to_segments(tg, &o, 16000, &segs, &labels, &n, &err), "%s", err.msg);
        slex_segment want[] = {{0, 1600, "sil"},    {1600, 4000, "HH"},   {4000, 6400, "\xc9\x99"},
                               {6400, 8800, "L"},   {8800, 12800, "OW1"}, {12800, 16000, "sil"}};
        check_segments("a", segs, n, want, 6);
        free(segs);
        free(labels);
        /* 150 samples (9.4 ms) off the audio length is within the 10 ms tolerance; 200 is not. */
        CHECK(!slex_textgrid_to_segments(tg, &o, 16150, &segs, &labels, &n, &err) && segs[n - 1].end == 16150,
              "snap to the audio length: %s", err.msg);
        free(segs);
        free(labels);
        CHECK(slex_textgrid_to_segments(tg, &o, 16200, &segs, &labels, &n, &err) == -1 && strstr(err.msg, ":54:"),
              "beyond the tolerance: %s", err.msg);
        slex_textgrid_free(tg);
    }
    /* Short format, silence labels mapped and merged, end within tolerance. */
    snprintf(path, sizeof path, "%s/good/sub/b.TextGrid", dir);
    tg = slex_textgrid_read(path, &err);
    CHECK(tg && !slex_textgrid_to_segments(tg, &o, 8005, &segs, &labels, &n, &err), "b: %s", err.msg);
    if (tg) {
        slex_segment want[] = {{0, 1600, "sil"}, {1600, 3200, "n"}, {3200, 5600, "i3"}, {5600, 8005, "sil"}};
        check_segments("b", segs, n, want, 4);
        free(segs);
        free(labels);
        slex_textgrid_free(tg);
    }
    /* The same short file in UTF-16 LE with BOM, as Praat writes non-ASCII text. */
    snprintf(path, sizeof path, "%s/good/sub/b.TextGrid", dir);
    char *text = slurp(path);
    size_t len = strlen(text);
    char *u16 = malloc(2 * len + 2);
    u16[0] = (char)0xff;
    u16[1] = (char)0xfe;
    for (size_t i = 0; i < len; i++) u16[2 + 2 * i] = text[i], u16[3 + 2 * i] = 0;
    tg = slex_textgrid_parse(u16, 2 * len + 2, "b16.TextGrid", &err);
    CHECK(tg && !slex_textgrid_to_segments(tg, &o, 8005, &segs, &labels, &n, &err) && n == 4 &&
              !strcmp(segs[2].label, "i3") && segs[2].start == 3200, "UTF-16: %s", err.msg);
    if (tg) free(segs), free(labels);
    slex_textgrid_free(tg);
    free(u16);
    free(text);
    tg = slex_textgrid_parse("ooBinaryFile\x08TextGrid", 21, "bin.TextGrid", &err);
    CHECK(!tg && strstr(err.msg, "binary"), "binary: %s", err.msg);

    expect_bad_textgrid(dir, "gap", 16, "gap");
    expect_bad_textgrid(dir, "overlap", 19, "overlap");
    expect_bad_textgrid(dir, "length", 19, "audio lasts 1.000000 s");
    expect_bad_textgrid(dir, "truncated", 20, "end of the file");
    expect_bad_textgrid(dir, "space", 16, "whitespace");
    expect_bad_textgrid(dir, "notier", 0, "no tier named 'phones' (tiers: 'words')");
}

/* Runs the importer; returns its exit code (-1 when it did not exit) and leaves its stderr in *log. */
static int run_import(const char *binary, const char *manifest, const char *tgdir, const char *out, char **log) {
    char cmd[4096], log_path[1024];
    snprintf(log_path, sizeof log_path, "%s/import.log", scratch);
    /* Open MPI's MPI_Init leaks by design: no LeakSanitizer for the MPI program. */
    snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 %s --manifest %s --textgrids %s --out %s 2>%s", binary,
             manifest, tgdir, out, log_path);
    int rc = system(cmd);
    *log = slurp(log_path);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_importer(const char *dir, const char *binary) {
    char manifest[1024], tgdir[1024], out[1024], want_path[1024];
    snprintf(manifest, sizeof manifest, "%s/good.tsv", dir);
    snprintf(tgdir, sizeof tgdir, "%s/good", dir);
    snprintf(out, sizeof out, "%s/imported.align", scratch);
    snprintf(want_path, sizeof want_path, "%s/good.align", dir);
    char *log = NULL;
    CHECK(run_import(binary, manifest, tgdir, out, &log) == 0, "import failed: %s", log ? log : "");
    free(log);
    char *got = slurp(out), *want = slurp(want_path);
    CHECK(got && want && !strcmp(got, want), "imported alignment differs from %s:\n%s", want_path, got ? got : "");
    free(got);
    free(want);

    /* Bad input exits 4 (README "Exit codes"). A TextGrid no manifest line claims. */
    char *m1 = write_file("only_a.tsv", "/x\na.wav\t16000\n");
    CHECK(run_import(binary, m1, tgdir, out, &log) == 4 && strstr(log, "good/sub/b.TextGrid: unknown utterance"),
          "unknown TextGrid: %s", log);
    free(log);
    /* A manifest line without a TextGrid. */
    char *m2 = write_file("extra.tsv", "/x\na.wav\t16000\nsub/b.wav\t8005\nc.flac\t100\n");
    CHECK(run_import(binary, m2, tgdir, out, &log) == 4 && strstr(log, "extra.tsv:4:") && strstr(log, "c.TextGrid"),
          "missing TextGrid: %s", log);
    free(log);
    /* An audio length the TextGrid does not match: names the TextGrid line and the manifest line. */
    char *m3 = write_file("short.tsv", "/x\na.wav\t15000\nsub/b.wav\t8005\n");
    CHECK(run_import(binary, m3, tgdir, out, &log) == 4 && strstr(log, "good/a.TextGrid:54:") &&
              strstr(log, "short.tsv:2"),
          "length mismatch: %s", log);
    free(log);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: test_align <tests/data/textgrid> <slex-import-textgrid> <scratch dir>\n");
        return 2;
    }
    scratch = argv[3];
    mkdir(scratch, 0777);
    test_frames();
    test_vocab();
    test_alignment_file();
    test_textgrid(argv[1]);
    test_importer(argv[1], argv[2]);
    return check_finish("test_align");
}
