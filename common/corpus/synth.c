#include "corpus/synth.h"

#include <errno.h>
#include <espeak-ng/speak_lib.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/hash.h"
#include "corpus/audio.h"
#include "corpus/extsynth.h"

/* ---- names and options ---- */

const char *slex_lang_name(slex_lang lang) { return lang == SLEX_LANG_ZH ? "zh" : "en"; }
const char *slex_split_name(slex_split split) { return split == SLEX_SPLIT_TEST ? "test" : "train"; }

int slex_lang_parse(const char *name, slex_lang *lang) {
    if (!strcmp(name, "en")) *lang = SLEX_LANG_EN;
    else if (!strcmp(name, "zh")) *lang = SLEX_LANG_ZH;
    else return -1;
    return 0;
}

int slex_split_parse(const char *name, slex_split *split) {
    if (!strcmp(name, "train")) *split = SLEX_SPLIT_TRAIN;
    else if (!strcmp(name, "test")) *split = SLEX_SPLIT_TEST;
    else return -1;
    return 0;
}

const char *slex_synth_engine_name(slex_synth_engine_kind kind) {
    return kind == SLEX_ENGINE_FESTIVAL ? "festival" : kind == SLEX_ENGINE_FLITE ? "flite" : "espeak";
}

void slex_synth_options_default(slex_synth_options *o) {
    o->lang = SLEX_LANG_EN;
    o->split = SLEX_SPLIT_TRAIN;
    o->seed = 1;
    o->fortune_dir = "/usr/share/games/fortunes";
    o->num_speakers = 40;
    o->test_speaker_every = 5;
    o->test_sentence_percent = 10;
    o->voices = SLEX_VOICES_STANDARD;
    o->engine = SLEX_ENGINE_ESPEAK;
    o->voice_pool = NULL;
    o->n_voice_pool = 0;
    o->f0_min = o->f0_max = 0;
}

/* ---- counter-based random numbers (splitmix64): draw i of stream (a, b, c) ---- */

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t stream_key(uint64_t a, uint64_t b, uint64_t c) { return mix64(mix64(mix64(a) ^ b) ^ c); }

/* Uniform integer in [lo, hi] from draw `i` of a stream (modulo bias < 2^-40: irrelevant). */
static int64_t draw_int(uint64_t key, uint64_t i, int64_t lo, int64_t hi) {
    return lo + (int64_t)(mix64(key ^ mix64(i)) % (uint64_t)(hi - lo + 1));
}

/* ---- text ---- */

static int sentences_push(slex_sentences *s, const char *text, size_t len) {
    if ((s->n & (s->n - 1)) == 0) { /* grow at powers of two */
        char **t = realloc(s->text, (size_t)(s->n ? 2 * s->n : 1) * sizeof *t);
        if (!t) return -1;
        s->text = t;
    }
    if (!(s->text[s->n] = strndup(text, len))) return -1;
    s->n++;
    return 0;
}

void slex_sentences_free(slex_sentences *s) {
    for (int64_t i = 0; i < s->n; i++) free(s->text[i]);
    free(s->text);
    s->text = NULL;
    s->n = 0;
}

/* Growable byte buffer. */
typedef struct {
    char *p;
    size_t n, cap;
} buf_t;

static int buf_put(buf_t *b, const char *s, size_t len) {
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
    return 0;
}

static int english_sentence_ok(const char *s, size_t len) {
    if (len < 2 || s[0] < 'A' || s[0] > 'Z') return 0;
    char last = s[len - 1];
    if (last != '.' && last != '!' && last != '?') return 0;
    int words = 0, in_word = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!letter && !strchr(" ,.'!?;-", c)) return 0;
        if (c == '-' && i + 1 < len && s[i + 1] == '-') return 0;
        if (c == '.' && i + 1 < len && s[i + 1] == '.') return 0;
        if (c == ' ') in_word = 0;
        else if (!in_word) in_word = 1, words++;
    }
    return words >= 4 && words <= 25;
}

/* Splits one English fortune (lines joined with spaces) into kept sentences: a sentence ends
 * at . ! or ? followed by a space or the end. */
static int english_sentence_push(const char *s, size_t len, slex_sentences *out) {
    while (len && *s == ' ') s++, len--;
    while (len && s[len - 1] == ' ') len--;
    return len && english_sentence_ok(s, len) ? sentences_push(out, s, len) : 0;
}

static int english_fortune(const char *joined, size_t len, slex_sentences *out) {
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        char c = joined[i];
        if ((c == '.' || c == '!' || c == '?') && (i + 1 == len || joined[i + 1] == ' ')) {
            if (english_sentence_push(joined + start, i + 1 - start, out)) return -1;
            start = i + 1;
        }
    }
    return english_sentence_push(joined + start, len - start, out);
}

/* Decodes one UTF-8 code point at s (n bytes left); returns its length, 0 on bad bytes. */
static int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (!n) return 0;
    if (s[0] < 0x80) return *cp = s[0], 1;
    int len = (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (!len || (size_t)len > n) return 0;
    uint32_t c = s[0] & (0x7f >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    *cp = c;
    return len;
}

static int is_ideograph(uint32_t c) { return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf); }
static int is_zh_stop(uint32_t c) { return c == 0x3002 || c == 0xff01 || c == 0xff1f || c == 0xff1b; } /* 。！？； */
static int is_zh_inner(uint32_t c) { return c == 0xff0c || c == 0x3001 || c == 0xff1a; }                /* ，、： */

static int mandarin_sentence_ok(const char *s, size_t len) {
    int hanzi = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        int l = utf8_decode((const unsigned char *)s + i, len - i, &c);
        if (!l) return 0;
        if (is_ideograph(c)) hanzi++;
        else if (!is_zh_inner(c) && !(is_zh_stop(c) && i + (size_t)l == len)) return 0;
        if (is_zh_inner(c) && i == 0) return 0;
        i += (size_t)l;
    }
    return hanzi >= 4 && hanzi <= 40;
}

static int mandarin_fortune(const char *joined, size_t len, slex_sentences *out) {
    size_t start = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c = 0;
        int l = utf8_decode((const unsigned char *)joined + i, len - i, &c);
        if (!l) l = 1, c = 0xfffd;
        i += (size_t)l;
        if (!is_zh_stop(c) && i < len) continue;
        if (i > start && mandarin_sentence_ok(joined + start, i - start) && sentences_push(out, joined + start, i - start))
            return -1;
        start = i;
    }
    return 0;
}

int slex_synth_extract_sentences(slex_lang lang, const char *text, size_t len, slex_sentences *out,
                                 slex_error *err) {
    buf_t joined = {0};
    size_t pos = 0;
    int rc = 0;
    while (pos <= len && !rc) {
        /* One fortune: lines up to a "%" line or the end. */
        joined.n = 0;
        if (buf_put(&joined, "", 0)) rc = -1;
        while (pos < len && !rc) {
            const char *line = text + pos;
            const char *nl = memchr(line, '\n', len - pos);
            size_t ll = nl ? (size_t)(nl - line) : len - pos;
            pos += ll + 1;
            if (ll && line[ll - 1] == '\r') ll--;
            if (ll == 1 && line[0] == '%') break;
            size_t a = 0, b = ll;
            while (a < b && (line[a] == ' ' || line[a] == '\t')) a++;
            while (b > a && (line[b - 1] == ' ' || line[b - 1] == '\t')) b--;
            if (lang == SLEX_LANG_EN) {
                if (b - a >= 2 && line[a] == '-' && (line[a + 1] == '-' || line[a + 1] == ' ')) continue; /* "-- Name" */
                if (buf_put(&joined, line + a, b - a) || buf_put(&joined, " ", 1)) rc = -1;
            } else {
                if (memchr(line, 0x1b, ll)) continue; /* coloured title, author or attribution */
                /* Full-width spaces indent paragraphs: drop them with the ASCII ones. */
                while (b - a >= 3 && !memcmp(line + a, "\xe3\x80\x80", 3)) a += 3;
                if (buf_put(&joined, line + a, b - a)) rc = -1;
            }
        }
        if (!rc) rc = lang == SLEX_LANG_EN ? english_fortune(joined.p, joined.n, out)
                                           : mandarin_fortune(joined.p, joined.n, out);
        if (pos >= len) break;
    }
    free(joined.p);
    if (rc) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory while extracting sentences");
    return 0;
}

/* The files of Debian's fortunes (+ fortunes-min) with English prose, and of fortunes-zh.
 * art and ascii-art are pictures. */
static const char *const english_files[] = {
    "computers", "cookie", "debian", "definitions", "disclaimer", "drugs", "education", "ethnic", "food",
    "fortunes", "goedel", "humorists", "kids", "knghtbrd", "law", "linux", "linuxcookie", "literature", "love",
    "magic", "medicine", "men-women", "miscellaneous", "news", "paradoxum", "people", "perl", "pets",
    "platitudes", "politics", "pratchett", "riddles", "science", "songs-poems", "sports", "startrek", "tao",
    "translate-me", "wisdom", "work", "zippy", NULL};
static const char *const mandarin_files[] = {"chinese", "tang300", "song100", NULL};

int slex_synth_sentence_is_test(const slex_synth_options *opts, const char *sentence) {
    return (int)(mix64(slex_fnv1a64_str(SLEX_FNV1A_SLEX_BASIS, sentence)) % 100) < opts->test_sentence_percent;
}

static int read_whole_file(const char *path, char **data, size_t *len, slex_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open fortune file: %s", path, strerror(errno));
    buf_t b = {0};
    char chunk[65536];
    size_t got;
    int rc = 0;
    while (!rc && (got = fread(chunk, 1, sizeof chunk, f)) > 0) rc = buf_put(&b, chunk, got);
    int bad = ferror(f);
    fclose(f);
    if (rc || bad) {
        free(b.p);
        return slex_fail_as(err, rc ? SLEX_ERR_RESOURCE : SLEX_ERR_IO, "%s: %s", path,
                            rc ? "out of memory" : "read error");
    }
    *data = b.p;
    *len = b.n;
    return 0;
}

/* Sorts indices by sentence text (for deduplication); qsort_r context = the sentences. */
static int compare_sentence_index(const void *a, const void *b, void *ctx) {
    const slex_sentences *s = ctx;
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    int c = strcmp(s->text[i], s->text[j]);
    return c ? c : (i > j) - (i < j);
}

int slex_synth_load_sentences(const slex_synth_options *opts, slex_sentences *out, slex_error *err) {
    slex_sentences all = {0};
    const char *const *files = opts->lang == SLEX_LANG_EN ? english_files : mandarin_files;
    for (int i = 0; files[i]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", opts->fortune_dir, files[i]);
        char *data;
        size_t len;
        if (read_whole_file(path, &data, &len, err)) goto fail;
        int rc = slex_synth_extract_sentences(opts->lang, data, len, &all, err);
        free(data);
        if (rc) goto fail;
    }
    /* Deduplicate, keeping each text's first occurrence, then keep the split's sentences in
     * file order. */
    int64_t *idx = malloc((size_t)(all.n ? all.n : 1) * sizeof *idx);
    char *keep = calloc((size_t)(all.n ? all.n : 1), 1);
    if (!idx || !keep) {
        free(idx);
        free(keep);
        slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < all.n; i++) idx[i] = i;
    qsort_r(idx, (size_t)all.n, sizeof *idx, compare_sentence_index, &all);
    for (int64_t i = 0; i < all.n; i++)
        keep[idx[i]] = (i == 0 || strcmp(all.text[idx[i]], all.text[idx[i - 1]])) &&
                       slex_synth_sentence_is_test(opts, all.text[idx[i]]) == (opts->split == SLEX_SPLIT_TEST);
    free(idx);
    out->n = 0;
    out->text = NULL;
    for (int64_t i = 0; i < all.n; i++) {
        if (!keep[i]) continue;
        if (sentences_push(out, all.text[i], strlen(all.text[i]))) {
            free(keep);
            slex_sentences_free(out);
            slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
            goto fail;
        }
    }
    free(keep);
    slex_sentences_free(&all);
    if (!out->n)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no %s sentences for the %s split", opts->fortune_dir,
                            slex_lang_name(opts->lang), slex_split_name(opts->split));
    return 0;
fail:
    slex_sentences_free(&all);
    return -1;
}

/* ---- speakers and plans ---- */

/* espeak voice names: "en" is British English (en-gb is only its language code). */
static const char *const english_accents[] = {"en-us", "en", "en-gb-x-rp", "en-us-nyc", "en-029",
                                              "en-gb-scotland"};
static const char *const voice_variants[] = {"m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1",
                                             "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3"};
/* --voices all: every English accent of espeak-ng 1.51 and every variant of its voices/!v
 * but "fast" (an unstable speed test, otherwise the default voice) and "Mr serious" (a space
 * in its name). */
static const char *const all_english_accents[] = {"en-us",  "en",  "en-gb-x-rp", "en-us-nyc", "en-029",
                                                  "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd"};
static const char *const all_voice_variants[] = {
    "Alex",      "Alicia",   "Andrea",      "Andy",        "Annie",       "AnxiousAndy", "Demonic",  "Denis",
    "Diogo",     "Gene",     "Gene2",       "Henrique",    "Hugo",        "Jacky",       "Lee",      "Marco",
    "Mario",     "Michael",  "Mike",        "Nguyen",      "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm",
    "Tweaky",    "UniRobot", "adam",        "anika",       "anikaRobot",  "announcer",   "antonio",  "aunty",
    "belinda",   "benjamin", "boris",       "caleb",       "croak",       "david",       "ed",       "edward",
    "edward2",   "f1",       "f2",          "f3",          "f4",          "f5",          "grandma",  "grandpa",
    "gustave",   "iven",     "iven2",       "iven3",       "iven4",       "john",        "kaukovalta", "klatt",
    "klatt2",    "klatt3",   "klatt4",      "klatt5",      "klatt6",      "linda",       "m1",       "m2",
    "m3",        "m4",       "m5",          "m6",          "m7",          "m8",          "marcelo",  "max",
    "michel",    "miguel",   "norbert",     "pablo",       "paul",        "pedro",       "quincy",   "rob",
    "robert",    "robosoft", "robosoft2",   "robosoft3",   "robosoft4",   "robosoft5",   "robosoft6", "robosoft7",
    "robosoft8", "sandro",   "shelby",      "steph",       "steph2",      "steph3",      "travis",   "victor",
    "whisper",   "whisperf", "zac"};
#define COUNT(a) ((int)(sizeof a / sizeof *a))

/* The speaker pool's ranges of one voice set: base values of a speaker, and the bounds of an
 * utterance's jittered values. */
typedef struct {
    const char *const *accents, *const *variants;
    int n_accents, n_variants;
    int rate_min, rate_max, pitch_min, pitch_max, range_min, range_max; /* speaker base values */
    int rate_lo, rate_hi, pitch_lo, pitch_hi, range_lo, range_hi;       /* an utterance's values */
} voice_set;

static const voice_set voice_sets[2] = {
    [SLEX_VOICES_STANDARD] = {english_accents, voice_variants, COUNT(english_accents), COUNT(voice_variants),
                              130, 230, 25, 75, 20, 90, 115, 250, 20, 80, 15, 95},
    [SLEX_VOICES_ALL] = {all_english_accents, all_voice_variants, COUNT(all_english_accents),
                         COUNT(all_voice_variants), 100, 320, 10, 90, 10, 100, 85, 360, 5, 95, 5, 100},
};

/* Stream tags, so that the draws of different purposes are independent. */
enum { STREAM_SPEAKER = 1, STREAM_ORDER = 2, STREAM_UTTERANCE = 3, STREAM_AUGMENT = 4, STREAM_BABBLE = 5 };

const char *slex_voices_name(slex_voice_set voices) { return voices == SLEX_VOICES_ALL ? "all" : "standard"; }

void slex_synth_speaker(slex_lang lang, slex_voice_set voices, int index, slex_speaker *out) {
    const voice_set *v = &voice_sets[voices == SLEX_VOICES_ALL];
    uint64_t key = stream_key(STREAM_SPEAKER, (uint64_t)lang, (uint64_t)index);
    memset(out, 0, sizeof *out);
    out->index = index;
    snprintf(out->id, sizeof out->id, "%s_spk%03d", slex_lang_name(lang), index);
    const char *base = lang == SLEX_LANG_EN ? v->accents[draw_int(key, 0, 0, v->n_accents - 1)] : "cmn-latn-pinyin";
    snprintf(out->voice, sizeof out->voice, "%s+%s", base, v->variants[draw_int(key, 1, 0, v->n_variants - 1)]);
    out->rate = (int)draw_int(key, 2, v->rate_min, v->rate_max);
    out->pitch = (int)draw_int(key, 3, v->pitch_min, v->pitch_max);
    out->range = (int)draw_int(key, 4, v->range_min, v->range_max);
}

void slex_synth_pool_speaker(const slex_synth_options *opts, int index, slex_speaker *out) {
    if (opts->engine != SLEX_ENGINE_ESPEAK) { /* speaker s is voice s */
        const char *voice = opts->voice_pool[index % opts->n_voice_pool];
        memset(out, 0, sizeof *out);
        out->index = index;
        snprintf(out->id, sizeof out->id, "%s_%s_%s", slex_lang_name(opts->lang), slex_synth_engine_name(opts->engine),
                 voice);
        snprintf(out->voice, sizeof out->voice, "%s", voice);
        out->rate = 100;
        return;
    }
    slex_synth_speaker(opts->lang, opts->voices, index, out);
    if (!opts->n_voice_pool) return;
    /* The accent from the pool, by the same draw; the drawn variant stays unless the name has one. */
    uint64_t key = stream_key(STREAM_SPEAKER, (uint64_t)opts->lang, (uint64_t)index);
    const char *base = opts->voice_pool[draw_int(key, 0, 0, opts->n_voice_pool - 1)];
    const char *variant = strchr(out->voice, '+');
    char voice[sizeof out->voice];
    if (strchr(base, '+') || !variant) snprintf(voice, sizeof voice, "%s", base);
    else snprintf(voice, sizeof voice, "%.40s%s", base, variant);
    memcpy(out->voice, voice, sizeof voice);
}

int slex_synth_speaker_is_test(const slex_synth_options *opts, int index) {
    return index % opts->test_speaker_every == 0;
}

int64_t *slex_synth_sentence_order(const slex_synth_options *opts, int64_t n, slex_error *err) {
    int64_t *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %lld sentences", (long long)n), NULL;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    uint64_t key = stream_key(STREAM_ORDER, opts->seed, (uint64_t)opts->lang * 2 + (uint64_t)opts->split);
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = draw_int(key, (uint64_t)i, 0, i);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    return order;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void slex_synth_make_plan(const slex_synth_options *opts, const int64_t *order, int64_t n_sentences, int64_t k,
                          slex_synth_plan *out) {
    uint64_t key = stream_key(STREAM_UTTERANCE, opts->seed,
                              ((uint64_t)k << 2) | ((uint64_t)opts->lang << 1) | (uint64_t)opts->split);
    out->k = k;
    out->sentence = order[k % n_sentences];
    /* The split's speakers are every test_speaker_every-th index (test) or the others (train). */
    int every = opts->test_speaker_every;
    int n_test = (opts->num_speakers + every - 1) / every;
    int s;
    if (opts->engine != SLEX_ENGINE_ESPEAK) { /* every voice of the pool, ±8% rate, the F0 range */
        slex_synth_pool_speaker(opts, (int)draw_int(key, 0, 0, opts->n_voice_pool - 1), &out->speaker);
        out->rate = (int)(100 * (0.92 + 0.16 * (double)draw_int(key, 1, 0, 1000) / 1000.0) + 0.5);
        out->pitch = opts->f0_max ? (int)draw_int(key, 2, opts->f0_min, opts->f0_max) : 0;
        out->range = 0;
        return;
    }
    if (opts->split == SLEX_SPLIT_TEST) {
        s = (int)draw_int(key, 0, 0, n_test - 1) * every;
    } else {
        int j = (int)draw_int(key, 0, 0, opts->num_speakers - n_test - 1); /* j-th non-test index */
        s = j + j / (every - 1) + 1;
    }
    slex_synth_pool_speaker(opts, s, &out->speaker);
    const voice_set *v = &voice_sets[opts->voices == SLEX_VOICES_ALL];
    out->rate = clampi((int)(out->speaker.rate * (0.92 + 0.16 * (double)draw_int(key, 1, 0, 1000) / 1000.0) + 0.5),
                       v->rate_lo, v->rate_hi);
    out->pitch = clampi(out->speaker.pitch + (int)draw_int(key, 2, -4, 4), v->pitch_lo, v->pitch_hi);
    out->range = clampi(out->speaker.range + (int)draw_int(key, 3, -6, 6), v->range_lo, v->range_hi);
}

uint64_t slex_synth_augment_key(const slex_synth_options *opts, int64_t k) {
    return stream_key(STREAM_AUGMENT, opts->seed, ((uint64_t)k << 2) | ((uint64_t)opts->lang << 1) | (uint64_t)opts->split);
}

/* ---- events -> segments ---- */

void slex_utterance_free(slex_utterance *u) {
    free(u->samples);
    free(u->segs);
    free(u->labels);
    memset(u, 0, sizeof *u);
}

static int is_pause(const char *name) { return name[0] == '_' || !strcmp(name, "||"); }

/* Mandarin initials (espeak cmn phoneme names); j and w are glides and belong to the final. */
static int is_mandarin_initial(const char *p) {
    static const char *const initials[] = {"p", "ph", "m", "f", "t", "th", "n", "l", "k", "kh", "X", "tS;",
                                           "tS;h", "S;", "ts.", "ts.h", "s.", "z.", "ts", "tsh", "s", NULL};
    for (int i = 0; initials[i]; i++)
        if (!strcmp(p, initials[i])) return 1;
    return 0;
}

/* espeak's Mandarin pitch contours -> pinyin tone numbers; 0 when unknown. */
static int tone_number(const char *contour) {
    static const struct {
        const char *contour;
        int tone;
    } map[] = {{"55", 1}, {"35", 2}, {"214", 3}, {"21", 3}, {"51", 4}, {"53", 4},
               {"11", 5}, {"22", 5}, {"33", 5}, {"44", 5}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(contour, map[i].contour)) return map[i].tone;
    return 0;
}

/* One phoneme of the trace: its name, the tone printed after it (it is the syllable's nucleus)
 * or 0, and whether a pause or a space precedes it. */
typedef struct {
    char name[16];
    int tone;          /* after parsing: the tone of the syllable's final, or 0 */
    int nucleus_tone;  /* tone digits printed right after this phoneme, as a tone number */
    int after_break;   /* a pause or a space comes before it */
} trace_phone;

static int is_mandarin_coda(const char *p) { return !strcmp(p, "n") || !strcmp(p, "N"); }

/* Splits the phonemes into syllables and gives each final its syllable's tone.  A syllable
 * ends at a pause or space, and after its nucleus (the phoneme the tone follows): what comes
 * next starts a new syllable, except a nasal coda (n, N) not followed by a vowel or glide
 * (then the nasal is the next syllable's initial, maximal onset as in Mandarin).  The final
 * is the syllable after its initial consonant. */
static int syllabify(trace_phone *ph, int64_t n, slex_error *err) {
    int64_t start = 0;
    while (start < n) {
        int64_t end = start + 1, nucleus = ph[start].nucleus_tone ? start : -1;
        while (end < n && !ph[end].after_break) {
            if (nucleus >= 0) {
                int coda = end == nucleus + 1 && is_mandarin_coda(ph[end].name) &&
                           (end + 1 == n || ph[end + 1].after_break || is_mandarin_initial(ph[end + 1].name));
                if (!coda) break;
            } else if (ph[end].nucleus_tone) {
                nucleus = end;
            }
            end++;
        }
        int tone = nucleus >= 0 ? ph[nucleus].nucleus_tone : 0;
        int64_t first = start + (end - start > 1 && is_mandarin_initial(ph[start].name));
        for (int64_t i = start; i < end; i++) {
            if (i != nucleus && ph[i].nucleus_tone)
                return slex_fail_as(err, SLEX_ERR_INPUT, "phoneme trace: two tones in one syllable at '%s'",
                                    ph[i].name);
            ph[i].tone = i >= first ? tone : 0;
        }
        start = end;
    }
    return 0;
}

/* Parses the phoneme trace (phoneme names separated by U+2016, words by spaces, stress marks
 * before names, tone digits after the nucleus: "tS;‖j‖'Au21‖_|") into phonemes with the tone
 * of their syllable's final; pauses are dropped. */
static int parse_trace(const char *trace, trace_phone **out, int64_t *n_out, slex_error *err) {
    static const char sep[] = "\xe2\x80\x96";
    trace_phone *ph = NULL;
    int64_t n = 0, cap = 0;
    int brk = 1;
    const char *p = trace;
    while (*p) {
        if (strchr(" \n\t\r", *p)) {
            brk = 1;
            p++;
            continue;
        }
        if (!strncmp(p, sep, 3)) {
            p += 3;
            continue;
        }
        const char *tok = p;
        size_t len = 0;
        while (tok[len] && !strchr(" \n\t\r", tok[len]) && strncmp(tok + len, sep, 3)) len++;
        p += len;
        while (len && strchr("',%=", *tok)) tok++, len--; /* stress marks */
        if (len >= sizeof ph->name) {
            free(ph);
            return slex_fail_as(err, SLEX_ERR_INPUT, "phoneme trace: token '%.*s' is too long", (int)len, tok);
        }
        size_t base = len; /* no Mandarin phoneme name ends in a digit: trailing digits are the tone */
        while (base && tok[base - 1] >= '0' && tok[base - 1] <= '9') base--;
        char digits[16];
        snprintf(digits, sizeof digits, "%.*s", (int)(len - base), tok + base);
        int tone = base < len ? tone_number(digits) : 0;
        if (base < len && (!tone || !base)) {
            free(ph);
            return slex_fail_as(err, SLEX_ERR_INPUT, "phoneme trace: %s '%.*s'",
                                tone ? "tone without a phoneme" : "unknown tone", (int)len, tok);
        }
        if (!base) continue;
        if (tok[0] == '_' || (base == 2 && !strncmp(tok, "||", 2))) { /* a pause */
            brk = 1;
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            trace_phone *g = realloc(ph, (size_t)cap * sizeof *g);
            if (!g) {
                free(ph);
                return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
            }
            ph = g;
        }
        memset(&ph[n], 0, sizeof ph[n]);
        memcpy(ph[n].name, tok, base);
        ph[n].nucleus_tone = tone;
        ph[n].after_break = brk;
        brk = 0;
        n++;
    }
    if (syllabify(ph, n, err)) {
        free(ph);
        return -1;
    }
    *out = ph;
    *n_out = n;
    return 0;
}

int slex_synth_events_to_segments(slex_lang lang, const slex_phoneme_event *ev, int64_t n_ev, int64_t n_in,
                                  int rate_in, int64_t n_out, int rate_out, const char *trace, slex_utterance *u,
                                  slex_error *err) {
    if (n_ev <= 0) return slex_fail_as(err, SLEX_ERR_INPUT, "no phoneme events");
    trace_phone *tp = NULL;
    int64_t n_tp = 0;
    if (lang == SLEX_LANG_ZH) {
        if (!trace) return slex_fail_as(err, SLEX_ERR_INTERNAL, "Mandarin needs the phoneme trace for tones");
        if (parse_trace(trace, &tp, &n_tp, err)) return -1;
    }
    /* Labels: at most n_ev + 1 of at most 8 + 2 bytes each. */
    slex_segment *segs = malloc((size_t)(n_ev + 1) * sizeof *segs);
    char *labels = malloc((size_t)(n_ev + 1) * 16);
    int64_t *label_off = malloc((size_t)(n_ev + 1) * sizeof *label_off);
    int64_t n = 0, used = 0, t = 0;
    int rc = -1;
    if (!segs || !labels || !label_off) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i <= n_ev; i++) {
        int64_t start, end;
        const char *name;
        char label[16];
        if (i == 0) { /* before the first event */
            start = 0;
            end = (ev[0].sample * rate_out * 2 + rate_in) / (2 * (int64_t)rate_in);
            name = "_";
        } else {
            const slex_phoneme_event *e = &ev[i - 1];
            if (e->sample < 0 || e->sample > n_in || (i < n_ev && ev[i].sample < e->sample)) {
                slex_fail_as(err, SLEX_ERR_INPUT,
                             "phoneme event %lld ('%s') at sample %lld is out of order or outside [0, %lld]",
                             (long long)(i - 1), e->name, (long long)e->sample, (long long)n_in);
                goto done;
            }
            start = (e->sample * rate_out * 2 + rate_in) / (2 * (int64_t)rate_in);
            end = i < n_ev ? (ev[i].sample * rate_out * 2 + rate_in) / (2 * (int64_t)rate_in) : n_out;
            name = e->name;
        }
        if (end > n_out) end = n_out;
        if (start > n_out) start = n_out;
        if (is_pause(name)) {
            snprintf(label, sizeof label, "%s", SLEX_SILENCE_LABEL);
        } else if (lang == SLEX_LANG_ZH) {
            if (t >= n_tp || strcmp(tp[t].name, name)) {
                slex_fail_as(err, SLEX_ERR_INPUT,
                             "phoneme event %lld ('%s') does not match the phoneme trace (%s '%s')", (long long)(i - 1),
                             name, t < n_tp ? "expected" : "which ended;", t < n_tp ? tp[t].name : "");
                goto done;
            }
            if (tp[t].tone) snprintf(label, sizeof label, "%s%c%d", name, SLEX_TONE_SEPARATOR, tp[t].tone);
            else snprintf(label, sizeof label, "%s", name);
            t++;
        } else {
            snprintf(label, sizeof label, "%s", name);
        }
        if (end <= start) continue;
        if (n && !strcmp(label, SLEX_SILENCE_LABEL) && !strcmp(labels + label_off[n - 1], SLEX_SILENCE_LABEL)) {
            segs[n - 1].end = end;
            continue;
        }
        label_off[n] = used;
        size_t l = strlen(label) + 1;
        memcpy(labels + used, label, l);
        used += (int64_t)l;
        segs[n++] = (slex_segment){start, end, NULL};
    }
    if (lang == SLEX_LANG_ZH && t != n_tp) {
        slex_fail_as(err, SLEX_ERR_INPUT, "the phoneme trace lists %lld phonemes, the events %lld", (long long)n_tp,
                     (long long)t);
        goto done;
    }
    if (!n || segs[n - 1].end != n_out) {
        slex_fail_as(err, SLEX_ERR_INPUT, "phones do not reach the end of the audio");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) segs[i].label = labels + label_off[i];
    u->segs = segs;
    u->n_segs = n;
    u->labels = labels;
    segs = NULL;
    labels = NULL;
    rc = 0;
done:
    free(segs);
    free(labels);
    free(label_off);
    free(tp);
    return rc;
}

/* ---- engine ---- */

struct slex_synth_engine {
    slex_synth_engine_kind kind;
    int rate;          /* espeak's output rate (22050) */
    slex_extsynth *ext; /* festival, flite */
};

static int engine_exists; /* espeak-ng is one global engine per process */

static int espeak_check_voices(const slex_synth_options *opts, slex_error *err);

/* An F0 range: within extsynth's bounds, and every voice of the pool follows it. */
static int check_f0(const slex_synth_options *opts, slex_extsynth_program program, slex_error *err) {
    if (opts->f0_min < SLEX_EXTSYNTH_F0_MIN || opts->f0_max > SLEX_EXTSYNTH_F0_MAX || opts->f0_min > opts->f0_max)
        return slex_fail_as(err, SLEX_ERR_INPUT, "F0 range %d..%d Hz: it must lie within %d..%d Hz, lowest first",
                            opts->f0_min, opts->f0_max, SLEX_EXTSYNTH_F0_MIN, SLEX_EXTSYNTH_F0_MAX);
    for (int i = 0; i < opts->n_voice_pool; i++)
        if (!slex_extsynth_follows_f0(program, opts->voice_pool[i]))
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "%s voice %s keeps its own pitch (its F0 model ignores the target): synthesise it "
                                "without an F0 range, in a corpus of its own",
                                slex_extsynth_program_name(program), opts->voice_pool[i]);
    return 0;
}

slex_synth_engine *slex_synth_engine_create(const slex_synth_options *opts, slex_error *err) {
    if (opts->engine != SLEX_ENGINE_ESPEAK) {
        if (opts->lang != SLEX_LANG_EN)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s makes English only", slex_synth_engine_name(opts->engine)),
                   NULL;
        slex_extsynth_program program = opts->engine == SLEX_ENGINE_FESTIVAL ? SLEX_EXTSYNTH_FESTIVAL
                                                                             : SLEX_EXTSYNTH_FLITE;
        if (opts->f0_max && check_f0(opts, program, err)) return NULL;
        slex_synth_engine *e = calloc(1, sizeof *e);
        if (!e) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), NULL;
        e->kind = opts->engine;
        e->ext = slex_extsynth_open(program, opts->voice_pool, opts->n_voice_pool, err);
        if (!e->ext) {
            free(e);
            return NULL;
        }
        return e;
    }
    if (opts->f0_max)
        return slex_fail_as(err, SLEX_ERR_INPUT, "an F0 range is for festival and flite voices: espeak-ng's "
                                                 "speakers have their own pitch"), NULL;
    if (engine_exists)
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "espeak-ng is already initialised in this process"), NULL;
    slex_synth_engine *e = calloc(1, sizeof *e);
    if (!e) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), NULL;
    e->rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 200, NULL, espeakINITIALIZE_PHONEME_EVENTS);
    if (e->rate <= 0) {
        free(e);
        return slex_fail_as(err, SLEX_ERR_INPUT, "espeak_Initialize failed (is espeak-ng-data installed?)"), NULL;
    }
    engine_exists = 1;
    if (opts->n_voice_pool && espeak_check_voices(opts, err)) {
        free(e);
        return NULL;
    }
    return e;
}

/* The engine stays initialised until the process ends: a second espeak_Initialize after
 * espeak_Terminate deadlocks in 1.51, so slex never terminates it. */
void slex_synth_engine_free(slex_synth_engine *e) {
    if (e) slex_extsynth_close(e->ext);
    free(e);
}

/* What the child captures; the synth callback has no reliable context pointer, and the child
 * is a process of its own, so one static instance serves. */
typedef struct {
    buf_t samples; /* int16 */
    buf_t events;  /* slex_phoneme_event */
    int64_t n_samples;
} capture_t;
static capture_t child_capture;

static int capture_callback(short *wav, int n, espeak_EVENT *events) {
    capture_t *c = &child_capture;
    for (espeak_EVENT *ev = events; ev && ev->type != espeakEVENT_LIST_TERMINATED; ev++) {
        if (ev->type != espeakEVENT_PHONEME) continue;
        slex_phoneme_event pe;
        memset(&pe, 0, sizeof pe);
        pe.sample = ev->sample;
        memcpy(pe.name, ev->id.string, 8); /* not NUL-terminated when 8 bytes long */
        if (buf_put(&c->events, (const char *)&pe, sizeof pe)) return 1;
    }
    if (wav && n > 0) {
        if (buf_put(&c->samples, (const char *)wav, (size_t)n * sizeof(short))) return 1;
        c->n_samples += n;
    }
    return 0;
}

/* Child -> parent message: header, int16 samples, events, trace text, error text. */
typedef struct {
    int64_t magic, status, n_samples, n_events, trace_len, msg_len;
} child_header;
#define CHILD_MAGIC 0x736c657873796eLL

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void child_run(int fd, slex_lang lang, const slex_synth_plan *plan, const char *text) {
    char msg[256] = "";
    char *trace = NULL;
    size_t trace_len = 0;
    FILE *trace_f = NULL;
    int status = SLEX_ERR_INPUT; /* 0 done, else the slex_error_kind of the failure */
    espeak_SetSynthCallback(capture_callback);
    if (espeak_SetVoiceByName(plan->speaker.voice) != EE_OK) {
        snprintf(msg, sizeof msg, "espeak-ng has no voice '%s'", plan->speaker.voice);
        goto send;
    }
    espeak_SetParameter(espeakRATE, plan->rate, 0);
    espeak_SetParameter(espeakPITCH, plan->pitch, 0);
    espeak_SetParameter(espeakRANGE, plan->range, 0);
    if (lang == SLEX_LANG_ZH) {
        if (!(trace_f = open_memstream(&trace, &trace_len))) {
            snprintf(msg, sizeof msg, "open_memstream failed");
            status = SLEX_ERR_RESOURCE;
            goto send;
        }
        espeak_SetPhonemeTrace(espeakPHONEMES_SHOW | (0x2016 << 8), trace_f);
    }
    espeak_ERROR rc = espeak_Synth(text, strlen(text) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL, NULL);
    if (trace_f) fclose(trace_f);
    if (rc != EE_OK) {
        snprintf(msg, sizeof msg, "espeak_Synth failed (%d)", (int)rc);
        status = SLEX_ERR_IO;
    } else {
        status = 0;
    }
send:;
    child_header h = {.magic = CHILD_MAGIC,
                      .status = status,
                      .n_samples = child_capture.n_samples,
                      .n_events = (int64_t)(child_capture.events.n / sizeof(slex_phoneme_event)),
                      .trace_len = (int64_t)trace_len,
                      .msg_len = (int64_t)strlen(msg)};
    int bad = write_all(fd, &h, sizeof h) || write_all(fd, child_capture.samples.p, child_capture.samples.n) ||
              write_all(fd, child_capture.events.p, child_capture.events.n) || write_all(fd, trace, trace_len) ||
              write_all(fd, msg, strlen(msg));
    close(fd);
    _exit(bad ? 2 : 0); /* no atexit handlers: they belong to the parent (MPI) */
}

/* Checks each voice of the pool in a forked child (espeak_SetVoiceByName changes the engine's
 * state, which the parent keeps as it was for every utterance's child). */
static int espeak_check_voices(const slex_synth_options *opts, slex_error *err) {
    for (int i = 0; i < opts->n_voice_pool; i++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) return slex_fail_as(err, slex_errno_kind(errno), "fork: %s", strerror(errno));
        if (pid == 0) _exit(espeak_SetVoiceByName(opts->voice_pool[i]) == EE_OK ? 0 : 1);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        if (!WIFEXITED(status) || WEXITSTATUS(status))
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "espeak-ng has no voice '%s' (`espeak-ng --voices=en` lists them; variants: "
                                "NAME+m1..m7, +f1..f5, +klatt)",
                                opts->voice_pool[i]);
    }
    return 0;
}

static int is_ext_pause(const char *name) {
    return !strcmp(name, "pau") || !strcmp(name, "h#") || !strcmp(name, "brth") || !strcmp(name, "sil");
}

/* festival / flite: segment end times -> phoneme events (a segment starts where the previous one
 * ends) at 1 MHz, pauses as "_", and a pause from the last end when the audio goes on. */
static int ext_utterance(slex_synth_engine *e, const slex_synth_plan *plan, const char *text, slex_utterance *u,
                         slex_error *err) {
    enum { US = 1000000 };
    slex_extsynth_result r;
    if (slex_extsynth_utterance(e->ext, plan->speaker.voice, plan->rate, plan->pitch, text, &r, err)) return -1;
    int64_t n_in = (r.source_frames * US * 2 + r.source_rate) / (2 * (int64_t)r.source_rate);
    slex_phoneme_event *ev = malloc((size_t)(r.n_phones + 1) * sizeof *ev);
    int64_t n = 0;
    int rc = -1;
    if (!ev) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < r.n_phones; i++, n++) {
        const char *name = is_ext_pause(r.phones[i].name) ? "_" : r.phones[i].name;
        if (strlen(name) >= sizeof ev->name) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s '%s': phone name '%s' is longer than %d bytes",
                         slex_synth_engine_name(e->kind), plan->speaker.voice, name, (int)sizeof ev->name - 1);
            goto done;
        }
        memset(&ev[n], 0, sizeof ev[n]);
        ev[n].sample = i ? r.phones[i - 1].end_us : 0;
        memcpy(ev[n].name, name, strlen(name)); /* shorter than the field: checked above */
    }
    if (n && r.phones[n - 1].end_us < n_in) {
        memset(&ev[n], 0, sizeof ev[n]);
        ev[n].sample = r.phones[n - 1].end_us;
        ev[n++].name[0] = '_';
    }
    if (slex_synth_events_to_segments(SLEX_LANG_EN, ev, n, n_in, US, r.n, SLEX_ALIGN_SAMPLE_RATE, NULL, u, err)) {
        slex_fail_wrap(err, "%s '%s' (segment times in microseconds)", slex_synth_engine_name(e->kind),
                       plan->speaker.voice);
        goto done;
    }
    u->samples = r.samples;
    u->n = r.n;
    r.samples = NULL;
    rc = 0;
done:
    free(ev);
    slex_extsynth_result_free(&r);
    return rc;
}

int slex_synth_utterance(slex_synth_engine *e, slex_lang lang, const slex_synth_plan *plan, const char *text,
                         slex_utterance *u, slex_error *err) {
    memset(u, 0, sizeof *u);
    if (e->kind != SLEX_ENGINE_ESPEAK) return ext_utterance(e, plan, text, u, err);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC)) return slex_fail_as(err, slex_errno_kind(errno), "pipe: %s", strerror(errno));
    fflush(NULL); /* nothing buffered may be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return slex_fail_as(err, slex_errno_kind(errno), "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        child_run(fds[1], lang, plan, text);
    }
    close(fds[1]);
    buf_t msg = {0};
    char chunk[65536];
    ssize_t got;
    int rc = -1, read_failed = 0;
    for (;;) {
        got = read(fds[0], chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        if (buf_put(&msg, chunk, (size_t)got)) {
            read_failed = 1;
            break;
        }
    }
    if (got < 0) read_failed = 1;
    close(fds[0]);
    int wstatus = 0;
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {}
    child_header h;
    if (read_failed || msg.n < sizeof h) {
        slex_fail_as(err, SLEX_ERR_IO, "espeak-ng child for '%s' %s", plan->speaker.voice,
                     WIFSIGNALED(wstatus) ? strsignal(WTERMSIG(wstatus)) : "sent no result");
        goto done;
    }
    memcpy(&h, msg.p, sizeof h);
    size_t need = sizeof h + (size_t)h.n_samples * sizeof(short) + (size_t)h.n_events * sizeof(slex_phoneme_event) +
                  (size_t)h.trace_len + (size_t)h.msg_len;
    if (h.magic != CHILD_MAGIC || h.n_samples < 0 || h.n_events < 0 || h.trace_len < 0 || h.msg_len < 0 ||
        need != msg.n || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus)) {
        slex_fail_as(err, SLEX_ERR_IO, "espeak-ng child for '%s' failed (exit status %d, %zu bytes)",
                     plan->speaker.voice, WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1, msg.n);
        goto done;
    }
    const char *p = msg.p + sizeof h;
    const short *pcm = (const short *)p;
    p += h.n_samples * (int64_t)sizeof(short);
    slex_phoneme_event *events = malloc((size_t)(h.n_events ? h.n_events : 1) * sizeof *events);
    if (!events) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        goto done;
    }
    memcpy(events, p, (size_t)h.n_events * sizeof *events);
    p += h.n_events * (int64_t)sizeof *events;
    char *trace = strndup(p, (size_t)h.trace_len);
    p += h.trace_len;
    if (!trace) {
        free(events);
        slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        goto done;
    }
    if (h.status) {
        slex_error_kind kind =
            h.status >= SLEX_ERR_IO && h.status <= SLEX_ERR_INTERNAL ? (slex_error_kind)h.status : SLEX_ERR_IO;
        slex_fail_as(err, kind, "%.*s", (int)h.msg_len, p);
    } else if (!h.n_samples) {
        slex_fail_as(err, SLEX_ERR_INPUT, "espeak-ng produced no audio");
    } else {
        float *in = malloc((size_t)h.n_samples * sizeof *in);
        if (!in) {
            slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        } else {
            for (int64_t i = 0; i < h.n_samples; i++) in[i] = (float)pcm[i] / 32768.0f;
            if (!slex_audio_resample(in, h.n_samples, e->rate, SLEX_ALIGN_SAMPLE_RATE, &u->samples, &u->n, err) &&
                !slex_synth_events_to_segments(lang, events, h.n_events, h.n_samples, e->rate, u->n,
                                               SLEX_ALIGN_SAMPLE_RATE, trace, u, err))
                rc = 0;
            free(in);
        }
    }
    free(events);
    free(trace);
done:
    free(msg.p);
    if (rc) slex_utterance_free(u);
    return rc;
}

int slex_synth_babble_bank(slex_synth_engine *e, const slex_synth_options *opts, const slex_sentences *sentences,
                           int n_utts, float **samples, int64_t *n, slex_error *err) {
    slex_synth_options bo = *opts;
    bo.seed = stream_key(STREAM_BABBLE, opts->seed, 0);
    int64_t *order = slex_synth_sentence_order(&bo, sentences->n, err);
    if (!order) return -1;
    buf_t bank = {0};
    int rc = 0;
    for (int k = 0; k < n_utts && !rc; k++) {
        slex_synth_plan plan;
        slex_synth_make_plan(&bo, order, sentences->n, k, &plan);
        slex_utterance u;
        slex_error why;
        if (slex_synth_utterance(e, bo.lang, &plan, sentences->text[plan.sentence], &u, &why)) continue;
        double power = 0;
        for (int64_t i = 0; i < u.n; i++) power += (double)u.samples[i] * u.samples[i];
        power /= (double)u.n;
        float scale = power > 0 ? (float)(1.0 / sqrt(power)) : 0.0f;
        for (int64_t i = 0; i < u.n; i++) u.samples[i] *= scale;
        if (power > 0 && buf_put(&bank, (const char *)u.samples, (size_t)u.n * sizeof(float))) rc = -1;
        slex_utterance_free(&u);
    }
    free(order);
    if (rc) {
        free(bank.p);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for the babble speech");
    }
    if (!bank.n) {
        free(bank.p);
        return slex_fail_as(err, SLEX_ERR_INPUT, "espeak-ng made none of the %d babble utterances", n_utts);
    }
    *samples = (float *)bank.p;
    *n = (int64_t)(bank.n / sizeof(float));
    return 0;
}
