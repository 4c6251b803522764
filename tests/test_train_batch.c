/* train/batch on a small corpus written here (WAV files, manifests, a .km at 100 Hz and a
 * slex-label store at 50 Hz): the plans' invariants over many updates, the crops and labels of
 * loaded micro-batches against fairseq's collater/forward_targets arithmetic done here in
 * integers (Python's round half to even), whole-file normalisation, determinism from
 * (seed, step), weighted mixing, the errors for bad labels and manifests, and label ids kept
 * exactly in 2 bytes (K <= 65536) and 4 (K > 65536).
 * usage: test_train_batch SCRATCH_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/fileio.h"
#include "corpus/audio.h"
#include "store/store.h"
#include "train/batch.h"

#define K 20
#define NUTT 40

static char base[2048];
static int64_t lens[2][NUTT];

static slex_hubert_config base_conv(void) {
    slex_hubert_config c;
    slex_hubert_config_default(&c);
    const int k[7] = {10, 3, 3, 3, 3, 2, 2}, s[7] = {5, 2, 2, 2, 2, 2, 2};
    c.num_conv = 7;
    for (int i = 0; i < 7; i++) c.conv_dim[i] = 512, c.conv_kernel[i] = k[i], c.conv_stride[i] = s[i];
    return c;
}

static int64_t km_count(int64_t n) { return (n + 80) / 160; } /* 100 Hz labels */
static int64_t st_count(int64_t n) { return (n - 400) / 320 + 1; } /* 50 Hz labels */
static int32_t km_label(int u, int64_t f) { return (int32_t)((u * 7 + f) % K); }
static int32_t st_label(int u, int64_t f) { return (int32_t)((u * 3 + f * 5) % K); }

/* Corpus: source 0 = manifest a.tsv + a.km, source 1 = b.tsv + store b_labels (50 Hz). */
static void write_corpus(void) {
    char path[4400], cmd[4500];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s/wav", base, base);
    CHECK(system(cmd) == 0, "mkdir");
    slex_error err = {{0}};
    for (int src = 0; src < 2; src++) {
        snprintf(path, sizeof path, "%s/%c.tsv", base, "ab"[src]);
        FILE *man = fopen(path, "w");
        fprintf(man, "%s/wav\n", base);
        snprintf(path, sizeof path, "%s/a.km", base);
        FILE *km = src == 0 ? fopen(path, "w") : NULL;
        for (int u = 0; u < NUTT; u++) {
            int64_t n = 8000 + ((u * 7919 + src * 104729) % 97) * 170 + (u % 3) * 7; /* 8000 .. ~24500 */
            lens[src][u] = n;
            float *x = malloc(sizeof(float) * (size_t)n);
            for (int64_t i = 0; i < n; i++) x[i] = (float)(0.3 * sin(0.001 * (double)i * (u + 1)) + 0.01 * src + 0.1);
            snprintf(path, sizeof path, "%s/wav/%c%02d.wav", base, "ab"[src], u);
            CHECK(slex_audio_write_wav16(path, x, n, 16000, &err) == 0, "%s", err.msg);
            free(x);
            fprintf(man, "%c%02d.wav\t%lld\n", "ab"[src], u, (long long)n);
            if (km) {
                for (int64_t f = 0; f < km_count(n); f++) fprintf(km, f ? " %d" : "%d", km_label(u, f));
                fprintf(km, "\n");
            }
        }
        fclose(man);
        if (km) fclose(km);
    }
    snprintf(path, sizeof path, "%s/b_labels", base);
    slex_store_meta meta = {SLEX_STORE_I32, 1, 50.0, "slex-label", "{}"};
    char fp[17];
    CHECK(slex_store_prepare(path, &meta, 1, 0, fp, &err) == 0, "%s", err.msg);
    slex_store_writer *w = slex_store_writer_open(path, 0, 1, &meta, fp, &err);
    for (int u = 0; u < NUTT; u++) {
        int64_t nl = st_count(lens[1][u]);
        int32_t *lab = malloc(sizeof(int32_t) * (size_t)nl);
        for (int64_t f = 0; f < nl; f++) lab[f] = st_label(u, f);
        char id[32];
        snprintf(id, sizeof id, "b%02d.wav", u);
        CHECK(slex_store_writer_append(w, id, lab, nl) == 0, "append");
        free(lab);
    }
    CHECK(slex_store_writer_commit(w, &err) == 0, "%s", err.msg);
    slex_store_summary sum;
    CHECK(slex_store_finalize(path, 1, fp, NULL, &sum, &err) == 0 && sum.finalized, "%s", err.msg);
}

static slex_batcher *open_two(double wa, double wb, uint64_t seed, slex_error *err) {
    slex_batch_options o;
    slex_batch_options_default(&o);
    o.max_tokens = 100000;
    o.micro_batch = 3;
    o.max_sample_size = 20000;
    o.min_sample_size = 9000;
    o.label_rate = 100.0; /* for the .km; the store has its own 50 */
    o.num_classes = K;
    o.seed = seed;
    slex_data_spec d[2];
    char spec[9000];
    snprintf(spec, sizeof spec, "%s/a.tsv:%s/a.km:%g", base, base, wa);
    CHECK(slex_data_spec_parse(spec, &d[0], err) == 0, "%s", err->msg);
    snprintf(spec, sizeof spec, "%s/b.tsv:%s/b_labels:%g", base, base, wb);
    CHECK(slex_data_spec_parse(spec, &d[1], err) == 0, "%s", err->msg);
    slex_hubert_config c = base_conv();
    return slex_batcher_open(&o, d, 2, &c, err);
}

/* One source of the corpus, the test's batch options with min_size, max_sample and k classes. */
static slex_batcher *open_one(const char *manifest, const char *labels, double rate, int64_t min_size,
                              int64_t max_sample, int k, slex_error *err) {
    slex_batch_options o;
    slex_batch_options_default(&o);
    o.max_tokens = 100000;
    o.micro_batch = 3;
    o.max_sample_size = max_sample;
    o.min_sample_size = min_size;
    o.label_rate = rate;
    o.num_classes = k;
    slex_data_spec d = {{0}, {0}, 1.0};
    snprintf(d.manifest, sizeof d.manifest, "%s/%s", base, manifest);
    snprintf(d.labels, sizeof d.labels, "%s/%s", base, labels);
    slex_hubert_config c = base_conv();
    return slex_batcher_open(&o, &d, 1, &c, err);
}

/* Python's round(a / b) for a >= 0, b > 0: nearest, ties to even. */
static int64_t round_div(int64_t a, int64_t b) {
    int64_t q = a / b, r = a % b;
    if (2 * r > b || (2 * r == b && (q & 1))) q++;
    return q;
}

static int64_t conv_frames(int64_t n) {
    const int k[7] = {10, 3, 3, 3, 3, 2, 2}, s[7] = {5, 2, 2, 2, 2, 2, 2};
    for (int i = 0; i < 7; i++) n = n >= k[i] ? (n - k[i]) / s[i] + 1 : 0;
    return n;
}

static int same_plan(const slex_batch_plan *a, const slex_batch_plan *b) {
    if (a->crop != b->crop || a->frames != b->frames || a->n_items != b->n_items || a->n_micro != b->n_micro) return 0;
    for (int j = 0; j < a->n_items; j++)
        if (a->items[j].source != b->items[j].source || a->items[j].utt != b->items[j].utt ||
            a->items[j].offset != b->items[j].offset)
            return 0;
    return 1;
}

static void test_plans_and_loads(void) {
    slex_error err = {{0}};
    slex_batcher *b = open_two(1.0, 0.25, 11, &err);
    CHECK(b != NULL, "%s", err.msg);
    if (!b) return;
    slex_source_info info;
    slex_batcher_source_info(b, 0, &info);
    int64_t short_a = 0;
    for (int u = 0; u < NUTT; u++) short_a += lens[0][u] < 9000;
    CHECK(info.skipped_short == short_a && info.usable == NUTT - short_a && info.label_rate == 100.0,
          "source 0: %lld usable, %lld short", (long long)info.usable, (long long)info.skipped_short);
    slex_batcher_source_info(b, 1, &info);
    CHECK(info.label_rate == 50.0, "store label rate %g", info.label_rate);
    float *files[2][NUTT];
    for (int s = 0; s < 2; s++)
        for (int u = 0; u < NUTT; u++) {
            char path[4400];
            int64_t n;
            slex_audio_info ai;
            snprintf(path, sizeof path, "%s/wav/%c%02d.wav", base, "ab"[s], u);
            CHECK(slex_audio_read(path, 16000, &files[s][u], &n, &ai, &err) == 0 && n == lens[s][u], "%s", err.msg);
        }
    int64_t items[2] = {0, 0}, loaded_rows = 0, label_errors = 0, wave_errors = 0;
    slex_microbatch mb = {0};
    for (int64_t step = 0; step < 400; step++) {
        slex_batch_plan p;
        if (slex_batcher_plan(b, step, 0, &p, &err)) {
            CHECK(0, "plan %lld: %s", (long long)step, err.msg);
            continue;
        }
        int64_t L = p.crop;
        CHECK(L <= 20000 && p.n_items >= 1 && p.n_items <= (100000 / L > 1 ? 100000 / L : 1),
              "step %lld: %d items of %lld samples", (long long)step, p.n_items, (long long)L);
        int64_t T = conv_frames(L);
        for (int j = 0; j < p.n_items; j++) {
            const slex_batch_item *it = &p.items[j];
            int64_t len = lens[it->source][it->utt];
            CHECK(len >= L && len >= 9000 && it->offset >= 0 && it->offset <= len - L, "step %lld item %d", (long long)step, j);
            CHECK(j == 0 || p.items[j - 1].source <= it->source, "items not grouped by source");
            for (int i = 0; i < j; i++)
                CHECK(p.items[i].source != it->source || p.items[i].utt != it->utt, "utterance drawn twice");
            items[it->source]++;
            /* fairseq: f0 = round(o r / sr), frm = min(round(L r / sr), labels - f0); T rule */
            int64_t div = it->source == 0 ? 160 : 320, ratio = it->source == 0 ? 2 : 1;
            int64_t nl = it->source == 0 ? km_count(len) : st_count(len);
            int64_t f0 = round_div(it->offset, div), fs = round_div(L, div);
            if (nl - f0 < fs) fs = nl - f0;
            int64_t Ti = ratio * conv_frames(L) > fs ? fs / ratio : conv_frames(L);
            if (Ti < T) T = Ti;
        }
        CHECK(p.frames == T, "step %lld: %lld frames, fairseq's rule gives %lld", (long long)step, (long long)p.frames,
              (long long)T);
        for (int m = 0; m < p.n_micro; m++) {
            CHECK(p.micro_start[m + 1] - p.micro_start[m] <= 3 && p.micro_start[m + 1] > p.micro_start[m], "micro size");
            if (step % 10) continue; /* load every tenth plan */
            if (slex_batcher_load(b, &p, m, &mb, &err)) {
                CHECK(0, "load: %s", err.msg);
                continue;
            }
            for (int r = 0; r < mb.B; r++) {
                const slex_batch_item *it = &p.items[p.micro_start[m] + r];
                CHECK(mb.source == it->source, "micro-batch mixes sources");
                wave_errors += memcmp(mb.wave + r * L, files[it->source][it->utt] + it->offset, sizeof(float) * (size_t)L) != 0;
                int64_t div = it->source == 0 ? 160 : 320, ratio = it->source == 0 ? 2 : 1, f0 = round_div(it->offset, div);
                for (int64_t i = 0; i < mb.T; i++) {
                    int32_t want = it->source == 0 ? km_label((int)it->utt, f0 + i * ratio) : st_label((int)it->utt, f0 + i * ratio);
                    label_errors += mb.labels[r * mb.T + i] != want;
                }
                loaded_rows++;
            }
        }
        slex_batch_plan_free(&p);
    }
    CHECK(wave_errors == 0 && label_errors == 0 && loaded_rows > 50, "%lld rows loaded: %lld crops and %lld labels wrong",
          (long long)loaded_rows, (long long)wave_errors, (long long)label_errors);
    double frac = (double)items[1] / (double)(items[0] + items[1]);
    fprintf(stderr, "mixing: %lld items from source 0, %lld from source 1 (weight share 0.2): %.3f\n",
            (long long)items[0], (long long)items[1], frac);
    CHECK(fabs(frac - 0.2) < 0.03, "source 1 gave %.3f of the items, its weight share is 0.2", frac);
    /* determinism: another batcher, other orders */
    slex_batcher *b2 = open_two(1.0, 0.25, 11, &err), *b3 = open_two(1.0, 0.25, 12, &err);
    slex_batch_plan p1, p2, p3;
    int differ = 0;
    for (int64_t step = 30; step >= 0; step -= 3) {
        CHECK(slex_batcher_plan(b, step, 1, &p1, &err) == 0 && slex_batcher_plan(b2, step, 1, &p2, &err) == 0 &&
                  slex_batcher_plan(b3, step, 1, &p3, &err) == 0, "%s", err.msg);
        CHECK(same_plan(&p1, &p2), "step %lld: plans differ between two batchers with the same seed", (long long)step);
        differ += !same_plan(&p1, &p3);
        slex_batch_plan_free(&p1);
        slex_batch_plan_free(&p2);
        slex_batch_plan_free(&p3);
    }
    CHECK(differ >= 9, "another seed gave the same plans (%d of 11 differ)", differ);
    CHECK(slex_batcher_plan(b, 7, 0, &p1, &err) == 0 && slex_batcher_plan(b, 7, 1, &p2, &err) == 0, "%s", err.msg);
    CHECK(!same_plan(&p1, &p2), "batches 0 and 1 of an update are the same");
    slex_batch_plan_free(&p1);
    slex_batch_plan_free(&p2);
    slex_microbatch_free(&mb);
    slex_batcher_free(b2);
    slex_batcher_free(b3);
    slex_batcher_free(b);
    for (int s = 0; s < 2; s++)
        for (int u = 0; u < NUTT; u++) free(files[s][u]);
}

static void test_normalize(void) {
    slex_error err = {{0}};
    slex_batch_options o;
    slex_batch_options_default(&o);
    o.max_tokens = 9000;
    o.min_sample_size = 9000;
    o.max_sample_size = 9000;
    o.label_rate = 100.0;
    o.num_classes = K;
    o.normalize = 1;
    slex_data_spec d;
    char spec[9000];
    snprintf(spec, sizeof spec, "%s/a.tsv:%s/a.km", base, base);
    CHECK(slex_data_spec_parse(spec, &d, &err) == 0 && d.weight == 1.0, "%s", err.msg);
    slex_hubert_config c = base_conv();
    slex_batcher *b = slex_batcher_open(&o, &d, 1, &c, &err);
    slex_batch_plan p;
    slex_microbatch mb = {0};
    CHECK(b && slex_batcher_plan(b, 3, 0, &p, &err) == 0 && slex_batcher_load(b, &p, 0, &mb, &err) == 0, "%s", err.msg);
    if (!b) return;
    const slex_batch_item *it = &p.items[0];
    char path[4400];
    snprintf(path, sizeof path, "%s/wav/a%02d.wav", base, (int)it->utt);
    float *x;
    int64_t n;
    slex_audio_info ai;
    CHECK(slex_audio_read(path, 16000, &x, &n, &ai, &err) == 0, "%s", err.msg);
    long double s = 0, q = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    long double mean = s / n;
    for (int64_t i = 0; i < n; i++) q += (x[i] - mean) * (x[i] - mean);
    double worst = 0.0;
    for (int64_t i = 0; i < p.crop; i++)
        worst = fmax(worst, fabs(mb.wave[i] - (double)((x[it->offset + i] - mean) / sqrtl(q / n + 1e-5L))));
    CHECK(p.crop == 9000 && worst < 1e-5, "normalised crop off by %.3g", worst);
    free(x);
    slex_microbatch_free(&mb);
    slex_batch_plan_free(&p);
    slex_batcher_free(b);
}

/* Opens one source and expects failure with all of `needles` in the message. */
static void expect_error(const char *manifest, const char *labels, double rate, int64_t min_size, const char *what,
                         const char *n1, const char *n2) {
    slex_error err = {{0}};
    slex_batcher *b = open_one(manifest, labels, rate, min_size, 20000, K, &err);
    CHECK(!b && strstr(err.msg, n1) && (!n2 || strstr(err.msg, n2)), "%s: got \"%s\"", what, b ? "(opened)" : err.msg);
    fprintf(stderr, "%s: %s\n", what, err.msg);
    slex_batcher_free(b);
}

static void rewrite_km(const char *name, int drop_line, int bad_line, int32_t bad_value, int short_line) {
    char src[4400], dst[4400];
    snprintf(src, sizeof src, "%s/a.km", base);
    snprintf(dst, sizeof dst, "%s/%s", base, name);
    FILE *f = fopen(dst, "w");
    for (int u = 0; u < NUTT; u++) {
        if (u == drop_line) continue;
        int64_t nl = km_count(lens[0][u]) - (u == short_line ? 15 : 0);
        for (int64_t fr = 0; fr < nl; fr++)
            fprintf(f, fr ? " %d" : "%d", u == bad_line && fr == 3 ? bad_value : km_label(u, fr));
        fprintf(f, "\n");
    }
    fclose(f);
    (void)src;
}

static void test_errors(void) {
    int u_long = 0;
    for (int u = 0; u < NUTT; u++)
        if (lens[0][u] >= 9000) u_long = u;
    rewrite_km("short.km", -1, -1, 0, u_long);
    expect_error("a.tsv", "short.km", 100.0, 9000, "labels 0.15 s short", "short.km", "line");
    rewrite_km("big.km", -1, u_long, K, -1);
    expect_error("a.tsv", "big.km", 100.0, 9000, "label id K", "big.km", "outside the 20 classes");
    rewrite_km("missing.km", 5, -1, 0, -1);
    expect_error("a.tsv", "missing.km", 100.0, 9000, "a line missing", "missing.km", "39 lines");
    expect_error("a.tsv", "a.km", -1.0, 9000, ".km without a rate", "a.km", "--label-rate");
    expect_error("a.tsv", "b_labels", -1.0, 9000, "store of another manifest", "b_labels", "another manifest");
    expect_error("a.tsv", "a.km", 100.0, 1000000, "nothing usable", "a.tsv", "no usable utterance");
    expect_error("a.tsv", "a.km", 50.0, 9000, "wrong label rate", "a.km", "label rate right");
    /* a manifest that claims more samples than the file holds: the load names the file */
    char path[4400];
    snprintf(path, sizeof path, "%s/liar.tsv", base);
    FILE *f = fopen(path, "w");
    fprintf(f, "%s/wav\na00.wav\t%lld\n", base, (long long)lens[0][0] + 1600);
    fclose(f);
    snprintf(path, sizeof path, "%s/liar.km", base);
    f = fopen(path, "w");
    for (int64_t fr = 0; fr < km_count(lens[0][0] + 1600); fr++) fprintf(f, fr ? " 1" : "1");
    fprintf(f, "\n");
    fclose(f);
    slex_error err = {{0}};
    slex_batcher *b = open_one("liar.tsv", "liar.km", 100.0, 0, 250000, K, &err);
    slex_batch_plan p;
    slex_microbatch mb = {0};
    CHECK(b && slex_batcher_plan(b, 0, 0, &p, &err) == 0, "%s", err.msg);
    CHECK(b && slex_batcher_load(b, &p, 0, &mb, &err) == -1 && strstr(err.msg, "a00.wav") && strstr(err.msg, "does not fit"),
          "short audio: %s", err.msg);
    if (b) slex_batch_plan_free(&p);
    slex_microbatch_free(&mb);
    slex_batcher_free(b);
    slex_data_spec d;
    CHECK(slex_data_spec_parse("only_a_manifest.tsv", &d, &err) == -1, "spec without labels accepted");
    CHECK(slex_data_spec_parse("m.tsv:l.km:-1", &d, &err) == -1, "negative weight accepted");
    CHECK(slex_data_spec_parse("m.tsv:dir:with:colon", &d, &err) == 0 && !strcmp(d.labels, "dir:with:colon") &&
              d.weight == 1.0, "labels path with ':'");
}

/* Labels kept in 2 bytes (K <= 65536, ids up to 65535) and in 4 (K > 65536): a .km of ids
 * spread over [0, span), loaded micro-batches against the same formula. */
static int32_t wide_label(int u, int64_t f, int64_t span) { return (int32_t)((((uint64_t)u << 20) + (uint64_t)f * 40503u) % (uint64_t)span); }

static void test_wide_labels(int64_t span) {
    char km[4400];
    snprintf(km, sizeof km, "%s/wide%lld.km", base, (long long)span);
    FILE *f = fopen(km, "w");
    int top = 0;
    for (int u = 0; u < NUTT; u++) {
        for (int64_t fr = 0; fr < km_count(lens[0][u]); fr++) {
            int32_t v = u == 1 && fr == 0 ? (int32_t)span - 1 : wide_label(u, fr, span);
            top |= v == span - 1;
            fprintf(f, fr ? " %d" : "%d", v);
        }
        fprintf(f, "\n");
    }
    fclose(f);
    slex_error err = {{0}};
    slex_batcher *b = open_one("a.tsv", km + strlen(base) + 1, 100.0, 9000, 20000, (int)span, &err);
    CHECK(b != NULL, "K = %lld: %s", (long long)span, err.msg);
    if (!b) return;
    int64_t checked = 0, wrong = 0, high = 0;
    slex_microbatch mb = {0};
    for (int64_t step = 0; step < 40; step++) {
        slex_batch_plan p;
        CHECK(slex_batcher_plan(b, step, 0, &p, &err) == 0, "%s", err.msg);
        for (int m = 0; m < p.n_micro; m++) {
            CHECK(slex_batcher_load(b, &p, m, &mb, &err) == 0, "%s", err.msg);
            for (int r = 0; r < mb.B; r++) {
                const slex_batch_item *it = &p.items[p.micro_start[m] + r];
                int64_t f0 = round_div(it->offset, 160);
                for (int64_t i = 0; i < mb.T; i++, checked++) {
                    int64_t fr = f0 + 2 * i;
                    int32_t want = it->utt == 1 && fr == 0 ? (int32_t)span - 1 : wide_label((int)it->utt, fr, span);
                    wrong += mb.labels[r * mb.T + i] != want;
                    high += want >= 32768;
                }
            }
        }
        slex_batch_plan_free(&p);
    }
    CHECK(top && wrong == 0 && checked > 1000 && high > checked / 4, "K = %lld: %lld of %lld labels wrong (%lld >= 32768)",
          (long long)span, (long long)wrong, (long long)checked, (long long)high);
    /* the same file with K one smaller: id K-1 is refused, not wrapped */
    slex_microbatch_free(&mb);
    slex_batcher_free(b);
    b = open_one("a.tsv", km + strlen(base) + 1, 100.0, 9000, 20000, (int)span - 1, &err);
    CHECK(!b && strstr(err.msg, "outside the") && strstr(err.msg, "a01.wav"), "K = %lld - 1: %s", (long long)span,
          b ? "(opened)" : err.msg);
    slex_batcher_free(b);
}

/* Anchors longer than max_sample_size: their batches hold utterances of their own length, not
 * always the n shortest ones above the crop (which made one fixed batch of nearly the same crops
 * for every long anchor). Over many steps, the crops of max_sample_size samples use nearly every
 * long utterance, and each batch's utterances lie within a window of similar lengths. */
static void test_long_anchors(void) {
    slex_error err = {{0}};
    const int64_t max_sample = 12000;
    slex_batcher *b = open_one("a.tsv", "a.km", 100.0, 9000, max_sample, K, &err);
    CHECK(b != NULL, "%s", err.msg);
    if (!b) return;
    int used[NUTT] = {0}, n_long = 0, long_plans = 0, short_plans = 0;
    for (int u = 0; u < NUTT; u++) n_long += lens[0][u] >= max_sample;
    const int slots = (int)(100000 / max_sample); /* max_tokens / L */
    for (int64_t step = 0; step < 300; step++) {
        slex_batch_plan p;
        CHECK(slex_batcher_plan(b, step, 0, &p, &err) == 0, "%s", err.msg);
        if (p.crop == max_sample) {
            long_plans++;
            /* the window moves down for the longest anchors: every batch is full */
            short_plans += p.n_items != (n_long < slots ? n_long : slots);
            for (int j = 0; j < p.n_items; j++) used[p.items[j].utt] = 1;
        }
        slex_batch_plan_free(&p);
    }
    int n_used = 0;
    for (int u = 0; u < NUTT; u++) n_used += used[u];
    CHECK(short_plans == 0, "%d of %d plans of long anchors hold fewer than %d utterances", short_plans, long_plans,
          slots);
    CHECK(long_plans > 50 && n_used >= n_long - 2 && n_used > slots + 4,
          "%d plans of long anchors used %d of the %d utterances of at least %lld samples", long_plans, n_used, n_long,
          (long long)max_sample);
    slex_batcher_free(b);
}

int main(int argc, char **argv) {
    snprintf(base, sizeof base, "%s/test_train_batch", argc > 1 ? argv[1] : "/tmp");
    write_corpus();
    test_plans_and_loads();
    test_long_anchors();
    test_normalize();
    test_errors();
    test_wide_labels(65536);
    test_wide_labels(70000);
    return check_finish("test_train_batch");
}
