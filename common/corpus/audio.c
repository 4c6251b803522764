#include "corpus/audio.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sndfile.h>
#include <soxr.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int slex_audio_resample(const float *in, int64_t n, int in_rate, int out_rate, float **out, int64_t *n_out,
                        slex_error *err) {
    size_t cap = (size_t)ceil((double)n * out_rate / in_rate) + 16;
    float *buf = malloc(cap * sizeof *buf);
    if (!buf) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory resampling %lld samples", (long long)n);
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    size_t done = 0;
    soxr_error_t e = soxr_oneshot(in_rate, out_rate, 1, in, (size_t)n, NULL, buf, cap, &done, &io, &q, NULL);
    if (e) {
        free(buf);
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "resampling %d Hz -> %d Hz failed: %s", in_rate, out_rate, e);
    }
    *out = buf;
    *n_out = (int64_t)done;
    return 0;
}

/* libsndfile opens a WAV/AIFF whose data chunk runs past the end of the file and quietly reads
 * what is there; its log says "data : <declared> (should be <actual>)".  A declared size of 0 or
 * 0xFFFFFFFF is the placeholder of streamed writers, not a truncation. */
static int truncated_data_chunk(SNDFILE *sf, long long *declared, long long *actual) {
    char log[8192];
    sf_command(sf, SFC_GET_LOG_INFO, log, sizeof log);
    for (const char *p = strstr(log, "data :"); p; p = strstr(p + 1, "data :"))
        if (sscanf(p, "data : %lld (should be %lld)", declared, actual) == 2 && *actual < *declared &&
            *declared != 0xFFFFFFFFLL)
            return 1;
    return 0;
}

static const char *file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    return "not a regular file";
}

/* Opens path for reading only if it is a regular file (after symlinks).  O_NONBLOCK makes the
 * open itself return at once whatever the file is (a FIFO without a writer would block it
 * forever, and every other MPI rank with it); fstat of that descriptor then decides, so a file
 * swapped for a FIFO between a check and the open cannot block either. */
static int open_regular_file(const char *path, slex_error *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot read audio: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return slex_fail_as(err, slex_errno_kind(e), "%s: cannot read audio: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: is %s, not an audio file", path, file_kind(st.st_mode));
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)) {
        int e = errno;
        close(fd);
        return slex_fail_as(err, slex_errno_kind(e), "%s: cannot read audio: %s", path, strerror(e));
    }
    return fd;
}

int slex_audio_read(const char *path, int target_rate, float **samples, int64_t *n, slex_audio_info *info,
                    slex_error *err) {
    *samples = NULL;
    *n = 0;
    int fd = open_regular_file(path, err);
    if (fd < 0) return -1;
    SF_INFO sfi;
    memset(&sfi, 0, sizeof sfi);
    SNDFILE *sf = sf_open_fd(fd, SFM_READ, &sfi, SF_TRUE); /* closes fd */
    if (!sf) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: cannot open audio: %s", path, sf_strerror(NULL));
    info->source_rate = sfi.samplerate;
    info->source_channels = sfi.channels;
    info->source_frames = sfi.frames;
    info->resampled = sfi.samplerate != target_rate;
    info->downmixed = sfi.channels > 1;
    long long declared, actual;
    if (truncated_data_chunk(sf, &declared, &actual)) {
        sf_close(sf);
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: truncated audio: the header announces %lld bytes of data, the file holds %lld", path,
                            declared, actual);
    }
    if (sfi.frames <= 0) {
        sf_close(sf);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: audio has zero samples", path);
    }
    if (sfi.channels < 1 || sfi.samplerate < 1) {
        sf_close(sf);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: invalid header (%d channels, %d Hz)", path, sfi.channels,
                            sfi.samplerate);
    }
    if (sfi.samplerate < SLEX_AUDIO_MIN_RATE || sfi.samplerate > SLEX_AUDIO_MAX_RATE) {
        sf_close(sf);
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: sample rate %d Hz in the header is outside %d..%d Hz: a broken header, or not "
                            "speech audio (resampled to %d Hz, %lld frames would become %.0f s)",
                            path, sfi.samplerate, SLEX_AUDIO_MIN_RATE, SLEX_AUDIO_MAX_RATE, target_rate,
                            (long long)sfi.frames, (double)sfi.frames / sfi.samplerate);
    }
    float *interleaved = malloc((size_t)sfi.frames * (size_t)sfi.channels * sizeof(float));
    if (!interleaved) {
        sf_close(sf);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory for %lld frames", path, (long long)sfi.frames);
    }
    sf_count_t got = sf_readf_float(sf, interleaved, sfi.frames);
    int sf_err = sf_error(sf);
    char sf_msg[256];
    snprintf(sf_msg, sizeof sf_msg, "%s", sf_strerror(sf));
    sf_close(sf);
    if (sf_err != SF_ERR_NO_ERROR) {
        free(interleaved);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: decoding error after %lld of %lld frames: %s", path,
                            (long long)got, (long long)sfi.frames, sf_msg);
    }
    if (got != sfi.frames) {
        free(interleaved);
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "%s: truncated audio: the header announces %lld frames, the file holds %lld", path,
                            (long long)sfi.frames, (long long)got);
    }
    /* Average the channels in place (frame f's mean goes to index f). */
    int c = sfi.channels;
    for (sf_count_t f = 0; f < got; f++) {
        if (c == 1) break;
        float sum = 0.0f;
        for (int k = 0; k < c; k++) sum += interleaved[f * c + k];
        interleaved[f] = sum / (float)c;
    }
    for (sf_count_t f = 0; f < got; f++)
        if (!isfinite(interleaved[f])) {
            const char *what = isnan(interleaved[f]) ? "NaN" : "infinite";
            free(interleaved);
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: sample %lld is %s", path, (long long)f, what);
        }
    if (!info->resampled) {
        if (c > 1) { /* give back the room of the other channels */
            float *shrunk = realloc(interleaved, (size_t)got * sizeof(float));
            if (shrunk) interleaved = shrunk;
        }
        *samples = interleaved;
        *n = got;
        return 0;
    }
    int rc = slex_audio_resample(interleaved, got, sfi.samplerate, target_rate, samples, n, err);
    free(interleaved);
    if (rc) return slex_fail_wrap(err, "%s", path);
    return 0;
}

static int write_wav(const char *path, const float *samples, int64_t n, int rate, int subformat, slex_error *err) {
    SF_INFO sfi;
    memset(&sfi, 0, sizeof sfi);
    sfi.samplerate = rate;
    sfi.channels = 1;
    sfi.format = SF_FORMAT_WAV | subformat;
    SNDFILE *sf = sf_open(path, SFM_WRITE, &sfi);
    if (!sf)
        return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot create WAV file: %s", path, sf_strerror(NULL));
    /* Without SFC_SET_CLIPPING libsndfile wraps values past full scale around. */
    sf_command(sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
    sf_count_t wrote = sf_writef_float(sf, samples, n);
    int bad = wrote != n;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", sf_strerror(sf));
    if (sf_close(sf) || bad)
        return slex_fail_as(err, SLEX_ERR_IO, "%s: write failed after %lld of %lld samples: %s", path, (long long)wrote,
                            (long long)n, msg);
    return 0;
}

int slex_audio_write_wav16(const char *path, const float *samples, int64_t n, int rate, slex_error *err) {
    return write_wav(path, samples, n, rate, SF_FORMAT_PCM_16, err);
}

int slex_audio_write_wav_float(const char *path, const float *samples, int64_t n, int rate, slex_error *err) {
    return write_wav(path, samples, n, rate, SF_FORMAT_FLOAT, err);
}
