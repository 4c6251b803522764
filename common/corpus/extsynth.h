/* extsynth: English speech with phone end times from an external synthesiser program, Debian's
 * festival 2.5 (`festival -b SCRIPT`) or flite 2.2 (`flite -psdur`), one utterance per run.
 *
 * Each utterance is one fresh run of the program (fork + exec, stdin /dev/null, stdout and
 * stderr captured), so its output depends on its arguments alone: any utterance order and any
 * rank count give the same bytes.  The program writes a WAV into the handle's private temporary
 * directory; it is read (libsndfile), resampled to 16 kHz (libsoxr HQ, as corpus/audio.h) and
 * removed.  Phone end times come from the program itself:
 *  - festival: the items of the utterance's Segment relation, `item.name` and feature `end`
 *    (seconds, printed with 6 decimals by the script);
 *  - flite: `-psdur` prints `name:end` for every segment (seconds, 3 decimals).
 * Phone names are the synthesiser's own (festival's radio/CMU phone sets, flite's CMU set);
 * pauses (`pau`, `h#`, `brth`, `sil`) are reported as they are, the caller maps them.
 *
 * Speaking rate: `rate_percent` 100 is the voice's own; festival sets Duration_Stretch to
 * 100/rate (diphone and cluster voices) and HTS engine option -r rate/100 (HTS voices), flite
 * sets duration_stretch 100/rate.
 *
 * Pitch: `f0_hz` 0 is the voice's own; otherwise the mean of the intonation's F0 targets in Hz
 * (festival: target_f0_mean of int_lr_params, diphone and cluster voices; flite:
 * int_f0_target_mean).  Some voices ignore it, measured with Debian's (festival's HTS voices,
 * flite's rms): slex_extsynth_follows_f0 says which, so that a caller can refuse them. */
#ifndef SLEX_EXTSYNTH_H
#define SLEX_EXTSYNTH_H

#include <stdint.h>

#include "core/err.h"

typedef enum { SLEX_EXTSYNTH_FESTIVAL = 1, SLEX_EXTSYNTH_FLITE = 2 } slex_extsynth_program;

/* "festival" / "flite" (the program's name, looked up in PATH). */
const char *slex_extsynth_program_name(slex_extsynth_program program);

/* One segment as the synthesiser reports it. */
typedef struct slex_extsynth_phone {
    char name[16];
    int64_t end_us; /* end time in microseconds from the start of the audio */
} slex_extsynth_phone;

typedef struct slex_extsynth_result {
    float *samples;              /* 16 kHz mono, [-1, 1] */
    int64_t n;
    int source_rate;             /* the program's output rate */
    int64_t source_frames;       /* its sample count at that rate */
    slex_extsynth_phone *phones; /* in order; end times non-decreasing */
    int64_t n_phones;
} slex_extsynth_result;

void slex_extsynth_result_free(slex_extsynth_result *r);

typedef struct slex_extsynth slex_extsynth;

/* Checks that the program is installed (in PATH) and has every voice of the pool (asking the
 * program for its voice list: festival `(voice.list)`, flite `-lv`), and makes the temporary
 * directory (under $TMPDIR or /tmp).  A missing program or voice is an input error
 * (SLEX_ERR_INPUT) that names it, the voices there are and the Debian package to install. */
slex_extsynth *slex_extsynth_open(slex_extsynth_program program, const char *const *voices, int n_voices,
                                  slex_error *err);
/* Removes the temporary directory. */
void slex_extsynth_close(slex_extsynth *x);

/* 1 when the voice's pitch follows f0_hz (above): 0 for festival's HTS voices (`*_hts`) and
 * flite's rms, whose F0 comes from their own models. */
int slex_extsynth_follows_f0(slex_extsynth_program program, const char *voice);

/* Synthesises text (one English sentence; any bytes but NUL) with the voice at rate_percent
 * (50..200) and mean F0 f0_hz (SLEX_EXTSYNTH_F0_MIN..SLEX_EXTSYNTH_F0_MAX Hz, or 0: the voice's
 * own).  Fails, naming the program, voice and reason (exit status, signal, its stderr, a
 * malformed segment list, no audio). */
enum { SLEX_EXTSYNTH_F0_MIN = 50, SLEX_EXTSYNTH_F0_MAX = 400 };
int slex_extsynth_utterance(slex_extsynth *x, const char *voice, int rate_percent, int f0_hz, const char *text,
                            slex_extsynth_result *out, slex_error *err);

/* Parses a program's stdout into phones (exposed for tests): festival lines
 * "slex-seg NAME END" (other lines ignored; a line "slex-done" must end the list), flite
 * "NAME:END NAME:END ..." on the first line that has them. */
int slex_extsynth_parse_phones(slex_extsynth_program program, const char *out, slex_extsynth_phone **phones,
                               int64_t *n, slex_error *err);

#endif
