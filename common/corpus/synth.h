/* synth: a bilingual speech corpus with phone alignments from Debian packages alone
 * (espeak-ng 1.51, fortunes, fortunes-zh).
 *
 * Four pieces, each a pure function of its arguments except the engine:
 *  - text: fortune files -> cleaned sentences (English from `fortunes`, Mandarin from
 *    `fortunes-zh`), deduplicated, each assigned to the train or test split by a hash of its
 *    text (so any train corpus and any test corpus are disjoint in sentences, whatever seeds).
 *  - speakers: a fixed pool per language and voice set; speaker s has voice, variant, base
 *    rate, pitch and range drawn from (lang, s) alone among the voice set's (standard: 6 English
 *    accents, 15 variants; all: 8 accents, 99 variants and wider ranges), and belongs to the
 *    test split when s % test_speaker_every == 0 (so splits are disjoint in speakers across runs).
 *  - plan: utterance k of a corpus = (sentence, speaker, per-utterance rate/pitch/range jitter)
 *    drawn from (seed, lang, split, k): the corpus is a fixed sequence, and any rank can make
 *    any utterance.
 *  - engine: espeak-ng synthesis of one utterance in a forked child of the initialised engine
 *    (espeak keeps state between utterances, so forking from the same parent state makes the
 *    output independent of utterance order and rank count); the child sends the 22050 Hz
 *    samples, phoneme events and phoneme trace back through a pipe, the parent resamples to
 *    16 kHz (libsoxr) and converts events to phone segments.  Or (English only) festival or
 *    flite, one run of the program per utterance (corpus/extsynth.h), whose segment end times
 *    become the same phone segments.
 *
 * Voices: espeak speakers draw their accent from a fixed list, or from opts->voice_pool when given
 * (a name without "+variant" gets a drawn variant).  For festival and flite the voice pool is
 * opts->voice_pool and speaker s is voice s: every voice is a speaker of both splits (the sentence
 * split still holds), speaking at its own pitch, rate 100% jittered per utterance.
 *
 * Phone labels are espeak phoneme names; every pause phoneme (names starting with '_') and
 * the audio before the first phoneme become SLEX_SILENCE_LABEL.  Mandarin labels carry the
 * syllable's tone on every phone of its final (glide, vowel, nasal coda): "a+4", "n+4";
 * tones come from espeak's phoneme trace (pitch contours 55 35 214 21 51 53 and the neutral
 * 11 22 33 44) as pinyin tone numbers 1 2 3 3 4 4 5 5 5 5. */
#ifndef SLEX_SYNTH_H
#define SLEX_SYNTH_H

#include <stdint.h>

#include "corpus/align.h"
#include "core/err.h"

typedef enum { SLEX_LANG_EN = 0, SLEX_LANG_ZH = 1 } slex_lang;
typedef enum { SLEX_ENGINE_ESPEAK = 0, SLEX_ENGINE_FESTIVAL = 1, SLEX_ENGINE_FLITE = 2 } slex_synth_engine_kind;
typedef enum { SLEX_SPLIT_TRAIN = 0, SLEX_SPLIT_TEST = 1 } slex_split;
/* The speaker pool's voices and ranges.  Standard: accents en-us, en (British), en-gb-x-rp,
 * en-us-nyc, en-029, en-gb-scotland; variants m1-m7, f1-f5, klatt, klatt2, klatt3; base rate
 * 130..230 wpm, pitch 25..75, range 20..90.  All: the accents plus en-gb-x-gbclan (Lancaster)
 * and en-gb-x-gbcwmd (West Midlands); the 99 variants of espeak-ng 1.51's voices/!v (Andy,
 * Annie, klatt4-6, whisper, croak, robosoft, ...: all but "fast" and "Mr serious"); base rate
 * 100..320, pitch 10..90, range 10..100. */
typedef enum { SLEX_VOICES_STANDARD = 0, SLEX_VOICES_ALL = 1 } slex_voice_set;

const char *slex_lang_name(slex_lang lang);   /* "en" / "zh" */
const char *slex_split_name(slex_split split); /* "train" / "test" */
const char *slex_voices_name(slex_voice_set voices); /* "standard" / "all" */
/* 0, or -1 for an unknown name. */
int slex_lang_parse(const char *name, slex_lang *lang);
int slex_split_parse(const char *name, slex_split *split);
const char *slex_synth_engine_name(slex_synth_engine_kind kind); /* "espeak" / "festival" / "flite" */

/* Defaults in comments.  The split rules (test_sentence_percent, test_speaker_every,
 * num_speakers) must be the same for a train and a test corpus to stay disjoint. */
typedef struct slex_synth_options {
    slex_lang lang;            /* SLEX_LANG_EN */
    slex_split split;          /* SLEX_SPLIT_TRAIN */
    uint64_t seed;             /* 1: draws sentences, speakers and jitter of the utterances */
    const char *fortune_dir;   /* "/usr/share/games/fortunes" */
    int num_speakers;          /* 40 speakers per language in the pool, both splits together */
    int test_speaker_every;    /* 5: speakers 0, 5, 10, ... are test speakers */
    int test_sentence_percent; /* 10: a sentence is a test sentence when its hash % 100 < 10 */
    slex_voice_set voices;     /* SLEX_VOICES_STANDARD */
    slex_synth_engine_kind engine; /* SLEX_ENGINE_ESPEAK */
    const char *const *voice_pool; /* NULL: named voices (--voice; required for festival and flite) */
    int n_voice_pool;              /* 0 */
    int f0_min, f0_max; /* 0, 0: festival/flite voices keep their own pitch; else each utterance's mean
                           F0 (Hz) is drawn in [f0_min, f0_max] (corpus/extsynth.h: not espeak-ng,
                           and only voices that follow it) */
} slex_synth_options;

void slex_synth_options_default(slex_synth_options *opts);

/* ---- text ---- */

typedef struct slex_sentences {
    int64_t n;
    char **text; /* UTF-8, one sentence each */
} slex_sentences;

/* Cleaned sentences of one fortune file's text (len bytes), appended to out in file order.
 * English: fortunes split at "%" lines, attribution lines ("-- Name") dropped, lines joined,
 * split at . ! ?, kept when made of ASCII letters, digits and , . ' ! ? ; - with 4..25 words,
 * starting upper-case.  Mandarin: ANSI-coloured lines (titles, authors) dropped, lines joined,
 * split after 。！？；, kept when made only of CJK ideographs and ，、： with 4..40 ideographs. */
int slex_synth_extract_sentences(slex_lang lang, const char *text, size_t len, slex_sentences *out,
                                 slex_error *err);
/* All sentences of the language's fortune files in opts->fortune_dir that belong to
 * opts->split, deduplicated (first occurrence kept), in file order. */
int slex_synth_load_sentences(const slex_synth_options *opts, slex_sentences *out, slex_error *err);
/* 1 when the sentence belongs to the test split. */
int slex_synth_sentence_is_test(const slex_synth_options *opts, const char *sentence);
void slex_sentences_free(slex_sentences *s);

/* ---- speakers and the utterance plan ---- */

typedef struct slex_speaker {
    int index;           /* in the language's pool */
    char id[96];         /* "en_spk007", "en_festival_kal_diphone" */
    char voice[64];      /* espeak voice name with variant, "en-gb-scotland+f3"; festival/flite voice */
    int rate;            /* espeak: words per minute, 130..230 (all: 100..320; espeak loses events above
                            449); festival/flite: 100 (% of the voice's own rate) */
    int pitch;           /* espeak: 25..75 (all: 10..90); festival/flite: 0 (the voice's own) or, in a
                            plan with f0_max set, the utterance's mean F0 in Hz */
    int range;           /* espeak: 20..90 (all: 10..100); festival/flite: 0 (the voice's own) */
} slex_speaker;

/* Speaker `index` of the language's espeak pool of a voice set (independent of the seed). */
void slex_synth_speaker(slex_lang lang, slex_voice_set voices, int index, slex_speaker *out);
/* Speaker `index` of opts' pool: festival/flite voice opts->voice_pool[index], "en_<engine>_<voice>";
 * espeak with a voice pool: the speaker of slex_synth_speaker with its accent drawn from the pool
 * (a name with "+variant" keeps its own variant); otherwise slex_synth_speaker's. */
void slex_synth_pool_speaker(const slex_synth_options *opts, int index, slex_speaker *out);
int slex_synth_speaker_is_test(const slex_synth_options *opts, int index);

typedef struct slex_synth_plan {
    int64_t k;             /* utterance index in the corpus */
    int64_t sentence;      /* index into the split's sentences */
    slex_speaker speaker;  /* base voice */
    int rate, pitch, range; /* this utterance's values (speaker's base with jitter) */
} slex_synth_plan;

/* Sentence order of a corpus: a seeded permutation of 0..n_sentences-1 (malloc'd). */
int64_t *slex_synth_sentence_order(const slex_synth_options *opts, int64_t n_sentences, slex_error *err);
/* Utterance k: sentence order[k % n], a speaker of the split and jitter (rate +-8%, pitch +-4,
 * range +-6, clamped to the voice set's bounds), all from the seed.  festival/flite: a voice of
 * the pool, rate +-8% and, with f0_max set, the mean F0 uniform in [f0_min, f0_max] Hz. */
void slex_synth_make_plan(const slex_synth_options *opts, const int64_t *order, int64_t n_sentences, int64_t k,
                          slex_synth_plan *out);
/* The key of utterance k's augmentation draws (corpus/augment.h): from (seed, lang, split, k)
 * alone, like its plan, so any rank makes the same augmented utterance. */
uint64_t slex_synth_augment_key(const slex_synth_options *opts, int64_t k);

/* ---- phoneme events -> phone segments ---- */

/* One espeakEVENT_PHONEME: position in the 22050 Hz output and the phoneme name. */
typedef struct slex_phoneme_event {
    int64_t sample;
    char name[9];
} slex_phoneme_event;

typedef struct slex_utterance {
    float *samples;      /* 16 kHz mono, [-1, 1] */
    int64_t n;
    slex_segment *segs;  /* tile [0, n); labels point into `labels` */
    int64_t n_segs;
    char *labels;        /* storage of the label strings */
} slex_utterance;

void slex_utterance_free(slex_utterance *u);

/* Segments at rate_out of n_out samples from phoneme events at rate_in over n_in samples:
 * phone i spans [event i, event i+1) (the last to n_in), positions scaled by rate_out/rate_in
 * and rounded; pauses and the start before the first event become SLEX_SILENCE_LABEL; empty
 * phones vanish and neighbouring silences merge.  For Mandarin, trace (the phoneme trace of
 * the same synthesis, phoneme names separated by U+2016) gives the tones; it must list the
 * same non-pause phonemes as the events, in order (else an error).  Fills u->segs/labels. */
int slex_synth_events_to_segments(slex_lang lang, const slex_phoneme_event *events, int64_t n_events,
                                  int64_t n_in, int rate_in, int64_t n_out, int rate_out, const char *trace,
                                  slex_utterance *u, slex_error *err);

/* ---- engine ---- */

typedef struct slex_synth_engine slex_synth_engine;

/* The engine of opts->engine.  espeak-ng is initialised once for the process (espeak's state is
 * global: a second espeak engine, or a second espeak_Initialize after espeak_Terminate, is
 * refused); opts->voice_pool, when given, are checked in a forked child.  festival and flite: the
 * program and every voice of opts->voice_pool must be installed (corpus/extsynth.h).  A missing
 * voice or program is an input error (SLEX_ERR_INPUT) naming it.  NULL and err on failure. */
slex_synth_engine *slex_synth_engine_create(const slex_synth_options *opts, slex_error *err);
void slex_synth_engine_free(slex_synth_engine *e);

/* Synthesises text with the plan's voice, rate, pitch and range in a forked child: 16 kHz
 * samples plus phone segments in *u.  Same arguments, same bytes, in any order.  festival and
 * flite: segment end times t become 16 kHz positions round(t * 16000); their pauses (pau, h#,
 * brth, sil) and the audio after the last segment are SLEX_SILENCE_LABEL, other names are
 * kept (radio / CMU phone names, "ax", "hh"); a segment that starts after the audio's end is
 * an error. */
int slex_synth_utterance(slex_synth_engine *e, slex_lang lang, const slex_synth_plan *plan, const char *text,
                         slex_utterance *u, slex_error *err);

/* Speech to make babble noise from (corpus/augment.h): n_utts utterances of the options' split
 * (its sentences and speakers; sentence order and speakers drawn from the seed mixed with a tag
 * of their own, so they are not the corpus's utterances 0..n_utts-1), each scaled to unit mean
 * power, concatenated into *samples (malloc'd).  Utterances espeak-ng cannot make are left out;
 * an error when none is left.  The same on every rank. */
int slex_synth_babble_bank(slex_synth_engine *e, const slex_synth_options *opts, const slex_sentences *sentences,
                           int n_utts, float **samples, int64_t *n, slex_error *err);

#endif
