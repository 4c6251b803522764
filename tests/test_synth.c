/* test_synth: checks a corpus made by slex-synth (tests/test_synth.sh makes it) against the
 * audio itself, not against the synthesiser's own bookkeeping:
 *  - every utterance is aligned, the phones tile its audio, every 50/100 Hz frame is labelled;
 *  - frames labelled silence are far quieter than speech frames (the labels sit on the audio);
 *  - phone boundaries coincide with energy changes: the energy step across a boundary between
 *    two phones is larger than across the middle of a phone (fails when boundaries are shifted
 *    or mis-scaled, e.g. 22050 Hz positions used as 16 kHz ones);
 *  - a pause (silence phone) inside the utterance wherever the text has a clause break;
 *  - Mandarin finals carry tones, initials do not; English labels carry none;
 *  - train and test are disjoint in sentences and in speakers, and each has several speakers.
 *
 *   test_synth <corpus dir>   (with en_train, en_test, zh_train, zh_test in it) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpus/align.h"
#include "corpus/audio.h"
#include "check.h"
#include "corpus/manifest.h"

enum { STEP = 160 }; /* samples each side of a point for the energy step */
/* Shifts of the boundaries (samples) at which the steps are summed too: festival's audio
 * changes 5-10 ms after its segment boundaries, so its corpora are checked at the best shift. */
enum { N_SHIFTS = 5 };
static const int shifts[N_SHIFTS] = {-160, -80, 0, 80, 160};

typedef struct {
    double sil_db, speech_db;        /* sums of frame energies (dB) */
    int64_t sil_frames, speech_frames;
    double boundary_step, middle_step; /* sums of |energy step| between two speech phones */
    double shifted_step[N_SHIFTS];     /* the same at boundary + shifts[i] */
    int64_t boundaries, middles;
    int64_t breaks, breaks_with_pause;
    int64_t finals, toned_finals, initials, toned_initials, tonal_labels;
} corpus_stats;

static double energy_db(const float *x, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) e += (double)x[i] * x[i];
    return 10 * log10(e / (double)n + 1e-10);
}

static double step_db(const float *x, int64_t at) { return fabs(energy_db(x + at, STEP) - energy_db(x + at - STEP, STEP)); }

/* Reads "relpath<TAB>c2<TAB>...": column `col` (0-based) of each line, keyed by relpath order. */
static char **read_column(const char *path, int col, int64_t *n) {
    FILE *f = fopen(path, "r");
    char **out = NULL;
    *n = 0;
    if (!f) return NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (len && line[len - 1] == '\n') line[--len] = '\0';
        char *p = line;
        for (int c = 0; c < col && p; c++) p = strchr(p, '\t') ? strchr(p, '\t') + 1 : NULL;
        if (!p) continue;
        char *tab = strchr(p, '\t');
        out = realloc(out, (size_t)(*n + 1) * sizeof *out);
        out[(*n)++] = tab ? strndup(p, (size_t)(tab - p)) : strdup(p);
    }
    free(line);
    fclose(f);
    return out;
}

static void free_column(char **c, int64_t n) {
    for (int64_t i = 0; i < n; i++) free(c[i]);
    free(c);
}

static int has_clause_break(const char *text, int zh) {
    size_t len = strlen(text);
    if (!zh) {
        for (size_t i = 0; i + 1 < len; i++)
            if ((text[i] == ',' || text[i] == ';') && text[i + 1] == ' ') return 1;
        return 0;
    }
    return strstr(text, "\xef\xbc\x8c") || strstr(text, "\xe3\x80\x81"); /* ， 、 */
}

static int is_initial(const char *base, size_t len) {
    static const char *const initials[] = {"p", "ph", "m", "f", "t", "th", "n", "l", "k", "kh", "X", "tS;",
                                           "tS;h", "S;", "ts.", "ts.h", "s.", "z.", "ts", "tsh", "s", NULL};
    for (int i = 0; initials[i]; i++)
        if (strlen(initials[i]) == len && !strncmp(base, initials[i], len)) return 1;
    return 0;
}

static void check_corpus(const char *dir, const char *name, corpus_stats *st) {
    char path[1024], align_path[1024], utts_path[1024];
    int zh = !strncmp(name, "zh", 2);
    snprintf(path, sizeof path, "%s/%s.tsv", dir, name);
    snprintf(align_path, sizeof align_path, "%s/%s.align", dir, name);
    snprintf(utts_path, sizeof utts_path, "%s/%s.utts", dir, name);
    slex_error err = {{0}};
    slex_manifest *m = slex_manifest_read(path, &err);
    slex_alignment *a = slex_alignment_read(align_path, &err);
    CHECK(m && a, "%s: %s", name, err.msg);
    if (!m || !a) return;
    CHECK(!slex_alignment_check_manifest(a, m, 1, &err), "%s: %s", name, err.msg);
    CHECK(slex_alignment_num_utts(a) == m->n && m->n > 3, "%s: %lld aligned of %lld", name,
          (long long)slex_alignment_num_utts(a), (long long)m->n);
    int64_t n_text = 0;
    char **texts = read_column(utts_path, 6, &n_text);
    CHECK(n_text == m->n, "%s: %lld texts", name, (long long)n_text);
    slex_label_vocab *v = slex_alignment_vocab(a, 0, &err);
    int32_t sil = slex_label_vocab_find(v, SLEX_SILENCE_LABEL, strlen(SLEX_SILENCE_LABEL));
    for (int64_t u = 0; u < m->n && u < n_text; u++) {
        const slex_manifest_entry *e = &m->entries[u];
        char lang[8] = "";
        sscanf(e->extra ? e->extra : "", "%7[^\t]", lang);
        CHECK(!strcmp(lang, zh ? "zh" : "en"), "%s line %lld: lang column '%s'", name, (long long)e->line, lang);
        char wav[2048];
        slex_manifest_audio_path(m, u, wav, sizeof wav, &err);
        float *x = NULL;
        int64_t n = 0;
        slex_audio_info info;
        if (slex_audio_read(wav, 16000, &x, &n, &info, &err)) {
            CHECK(0, "%s", err.msg);
            continue;
        }
        CHECK(n == e->num_samples && info.source_rate == 16000 && info.source_channels == 1, "%s: %lld samples",
              wav, (long long)n);
        int64_t ai = slex_alignment_find(a, e->relpath), ns = 0;
        const slex_segment *s = slex_alignment_segments(a, ai, &ns);
        /* Every frame labelled, at both rates. */
        for (int rate = 50; rate <= 100; rate += 50) {
            int64_t T = slex_align_num_frames((slex_frame_rate)rate, n);
            int32_t *lab = malloc((size_t)(T + 1) * sizeof *lab);
            for (int64_t t = 0; t < T; t++) lab[t] = -1;
            CHECK(!slex_align_frame_labels(s, ns, n, (slex_frame_rate)rate, v, 0, lab, &err), "%s: %s", wav, err.msg);
            int64_t unlabelled = 0;
            for (int64_t t = 0; t < T; t++) unlabelled += lab[t] < 0 || lab[t] >= slex_label_vocab_size(v);
            CHECK(unlabelled == 0, "%s: %lld unlabelled frames at %d Hz", wav, (long long)unlabelled, rate);
            if (rate == 100)
                for (int64_t t = 0; t < T; t++) {
                    double db = energy_db(x + t * 160, 400);
                    if (lab[t] == sil) st->sil_db += db, st->sil_frames++;
                    else st->speech_db += db, st->speech_frames++;
                }
            free(lab);
        }
        /* Energy steps at boundaries between two speech phones vs in the middle of phones. */
        for (int64_t i = 0; i < ns; i++) {
            int speech = strcmp(s[i].label, SLEX_SILENCE_LABEL) != 0;
            if (speech && s[i].end - s[i].start >= 2 * STEP) {
                st->middle_step += step_db(x, (s[i].start + s[i].end) / 2);
                st->middles++;
            }
            if (i > 0 && speech && strcmp(s[i - 1].label, SLEX_SILENCE_LABEL) && s[i].end - s[i].start >= STEP &&
                s[i - 1].end - s[i - 1].start >= STEP) {
                st->boundary_step += step_db(x, s[i].start);
                st->boundaries++;
                for (int j = 0; j < N_SHIFTS; j++) {
                    int64_t at = s[i].start + shifts[j];
                    st->shifted_step[j] += at >= STEP && at + STEP <= n ? step_db(x, at) : 0;
                }
            }
        }
        /* A pause inside the utterance at a clause break. */
        if (has_clause_break(texts[u], zh)) {
            int pause = 0;
            for (int64_t i = 1; i + 1 < ns; i++) pause |= !strcmp(s[i].label, SLEX_SILENCE_LABEL);
            st->breaks++;
            st->breaks_with_pause += pause;
        }
        /* Tones: on Mandarin finals only. */
        for (int64_t i = 0; i < ns; i++) {
            const char *l = s[i].label;
            size_t base = slex_label_base_length(l);
            int toned = base != strlen(l);
            st->tonal_labels += toned;
            if (!zh || !strcmp(l, SLEX_SILENCE_LABEL)) continue;
            if (is_initial(l, base) && !(i > 0 && base == 1 && l[0] == 'n' && slex_label_base_length(s[i - 1].label) !=
                                                                                   strlen(s[i - 1].label))) {
                st->initials++;
                st->toned_initials += toned;
            } else if (strchr("aeiouyAEIOU@", l[0])) {
                st->finals++;
                st->toned_finals += toned;
            }
        }
        free(x);
    }
    free_column(texts, n_text);
    slex_label_vocab_free(v);
    slex_alignment_free(a);
    slex_manifest_free(m);
}

/* Train and test share no sentence and no speaker; each split has several speakers. */
static void check_disjoint(const char *dir, const char *lang) {
    char t[2][1024];
    snprintf(t[0], sizeof t[0], "%s/%s_train.utts", dir, lang);
    snprintf(t[1], sizeof t[1], "%s/%s_test.utts", dir, lang);
    int64_t ns[2], nt[2];
    char **spk[2], **txt[2];
    for (int i = 0; i < 2; i++) {
        spk[i] = read_column(t[i], 1, &ns[i]); /* relpath, speaker, ... */
        txt[i] = read_column(t[i], 6, &nt[i]);
    }
    int64_t shared_spk = 0, shared_txt = 0;
    for (int64_t i = 0; i < ns[0]; i++)
        for (int64_t j = 0; j < ns[1]; j++) shared_spk += !strcmp(spk[0][i], spk[1][j]);
    for (int64_t i = 0; i < nt[0]; i++)
        for (int64_t j = 0; j < nt[1]; j++) shared_txt += !strcmp(txt[0][i], txt[1][j]);
    CHECK(ns[0] > 3 && ns[1] > 3 && nt[0] == ns[0] && nt[1] == ns[1], "%s: speakers/texts read", lang);
    CHECK(shared_spk == 0, "%s: %lld train/test utterance pairs share a speaker", lang, (long long)shared_spk);
    CHECK(shared_txt == 0, "%s: %lld train/test utterance pairs share a sentence", lang, (long long)shared_txt);
    for (int i = 0; i < 2; i++) {
        int64_t distinct = 0;
        for (int64_t a = 0; a < ns[i]; a++) {
            int seen = 0;
            for (int64_t b = 0; b < a; b++) seen |= !strcmp(spk[i][a], spk[i][b]);
            distinct += !seen;
        }
        CHECK(distinct >= 3, "%s %s: only %lld speakers", lang, i ? "test" : "train", (long long)distinct);
        free_column(spk[i], ns[i]);
        free_column(txt[i], nt[i]);
    }
}

/* The checks of one corpus.  espeak: every clause break has a pause (espeak-ng pauses at every
 * comma; festival's phrasing does not), and the energy step at the boundaries themselves is 1.5
 * times that in phone middles; otherwise (festival, flite) 1.3 times at the best shift within
 * +-10 ms (a misplaced or mis-scaled alignment gives about 1). */
static void check_one(const char *dir, const char *name, int espeak) {
    corpus_stats st;
    memset(&st, 0, sizeof st);
    check_corpus(dir, name, &st);
    double sil = st.sil_db / (double)(st.sil_frames ? st.sil_frames : 1);
    double speech = st.speech_db / (double)(st.speech_frames ? st.speech_frames : 1);
    double at_boundary = st.boundary_step / (double)(st.boundaries ? st.boundaries : 1);
    double in_middle = st.middle_step / (double)(st.middles ? st.middles : 1);
    int best = 2;
    for (int j = 0; j < N_SHIFTS; j++)
        if (st.shifted_step[j] > st.shifted_step[best]) best = j;
    double at_best = st.shifted_step[best] / (double)(st.boundaries ? st.boundaries : 1);
    fprintf(stderr, "%s/%s: energy step %.2f dB at the best boundary shift, %+d samples\n", dir, name, at_best,
            shifts[best]);
    fprintf(stderr,
            "%s/%s: silence frames %.1f dB, speech frames %.1f dB; energy step %.2f dB at %lld boundaries, %.2f dB "
            "at %lld phone middles; %lld/%lld clause breaks with a pause; finals toned %lld/%lld, initials "
            "toned %lld/%lld\n",
            dir, name, sil, speech, at_boundary, (long long)st.boundaries, in_middle, (long long)st.middles,
            (long long)st.breaks_with_pause, (long long)st.breaks, (long long)st.toned_finals, (long long)st.finals,
            (long long)st.toned_initials, (long long)st.initials);
    CHECK(st.sil_frames > 10 && st.speech_frames > 100, "%s: frames", name);
    CHECK(speech - sil >= 30, "%s: speech only %.1f dB above silence", name, speech - sil);
    if (espeak)
        CHECK(st.boundaries > 50 && at_boundary >= 1.5 * in_middle, "%s: step at boundaries %.2f dB vs middles %.2f dB",
              name, at_boundary, in_middle);
    else
        CHECK(st.boundaries > 50 && at_best >= 1.3 * in_middle,
              "%s: step at boundaries (shift %+d) %.2f dB vs middles %.2f dB", name, shifts[best], at_best, in_middle);
    if (espeak)
        CHECK(st.breaks_with_pause == st.breaks, "%s: %lld clause breaks without a pause", name,
              (long long)(st.breaks - st.breaks_with_pause));
    if (name[0] == 'z') {
        CHECK(st.finals > 30 && st.toned_finals == st.finals, "%s: toned finals %lld/%lld", name,
              (long long)st.toned_finals, (long long)st.finals);
        CHECK(st.initials > 30 && st.toned_initials == 0, "%s: toned initials %lld/%lld", name,
              (long long)st.toned_initials, (long long)st.initials);
    } else {
        CHECK(st.tonal_labels == 0, "%s: %lld tonal labels in English", name, (long long)st.tonal_labels);
    }
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--one")) { /* test_synth --one DIR NAME: a festival/flite corpus */
        check_one(argv[2], argv[3], 0);
        return check_finish("test_synth");
    }
    if (argc != 2) {
        fprintf(stderr, "usage: test_synth <corpus dir> | test_synth --one <corpus dir> <name>\n");
        return 2;
    }
    static const char *const names[] = {"en_train", "en_test", "zh_train", "zh_test"};
    for (int c = 0; c < 4; c++) check_one(argv[1], names[c], 1);
    check_disjoint(argv[1], "en");
    check_disjoint(argv[1], "zh");
    return check_finish("test_synth");
}
