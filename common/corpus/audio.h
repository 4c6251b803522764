/* audio: any file libsndfile reads (WAV, FLAC, OGG, any sample format) -> float32 mono 16 kHz.
 *
 * Samples come out in [-1, 1] as soundfile (fairseq's reader) gives them: integer formats are
 * scaled by 1/2^(bits-1).  Several channels are averaged; another sample rate is resampled with
 * libsoxr (high quality, no dither).  The caller counts downmixes and resamples from the info
 * and reports them once per run, not once per file. */
#ifndef SLEX_AUDIO_H
#define SLEX_AUDIO_H

#include <stdint.h>

#include "core/err.h"

typedef struct slex_audio_info {
    int source_rate;      /* sample rate of the file */
    int source_channels;  /* channels of the file */
    int64_t source_frames; /* frames (samples per channel) the file holds */
    int resampled;        /* 1 when source_rate != target rate */
    int downmixed;        /* 1 when source_channels > 1 */
} slex_audio_info;

/* Sample rates a file may declare: outside them the header is broken (a "1 Hz" WAV would be
 * resampled into 16000 times as many samples) or the file is not speech audio. */
#define SLEX_AUDIO_MIN_RATE 4000
#define SLEX_AUDIO_MAX_RATE 768000

/* Reads path into *samples (malloc'd, caller frees) at target_rate Hz, mono.  Fails, naming the
 * file and the reason, on: a missing or unreadable file, anything but a regular file (a FIFO,
 * device, directory: never opened in a way that could block), unknown format, a sample rate
 * outside SLEX_AUDIO_MIN_RATE..SLEX_AUDIO_MAX_RATE, truncated data (fewer frames than the header
 * announces, or a decoding error), zero samples, and NaN/Inf samples. */
int slex_audio_read(const char *path, int target_rate, float **samples, int64_t *n, slex_audio_info *info,
                    slex_error *err);

/* Resamples n mono samples from in_rate to out_rate (libsoxr HQ).  *out is malloc'd. */
int slex_audio_resample(const float *in, int64_t n, int in_rate, int out_rate, float **out, int64_t *n_out,
                        slex_error *err);

/* Writes mono float samples as 16-bit PCM WAV (values clipped to [-1, 1]). */
int slex_audio_write_wav16(const char *path, const float *samples, int64_t n, int rate, slex_error *err);
/* Writes mono float samples as 32-bit float WAV, exactly (for programs that read them back). */
int slex_audio_write_wav_float(const char *path, const float *samples, int64_t n, int rate, slex_error *err);

#endif
