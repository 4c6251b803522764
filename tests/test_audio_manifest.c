/* Manifest parsing (columns, malformed lines with their numbers) and audio reading (scaling as
 * soundfile, channel averaging, resampling, formats, and each kind of bad file). */
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corpus/audio.h"
#include "check.h"
#include "corpus/manifest.h"

static void write_file(const char *path, int format, int rate, int channels, const short *pcm, int frames) {
    SF_INFO info = {.samplerate = rate, .channels = channels, .format = format};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    CHECK(sf != NULL, "create %s: %s", path, sf_strerror(NULL));
    if (!sf) return;
    sf_writef_short(sf, pcm, frames);
    sf_close(sf);
}

int main(int argc, char **argv) {
    char dir[4096], path[4300];
    snprintf(dir, sizeof dir, "%s/test_audio", argc > 1 ? argv[1] : "/tmp");
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    CHECK(system(cmd) == 0, "mkdir");
    slex_error err = {{0}};

    /* ---- manifest ---- */
    snprintf(path, sizeof path, "%s/m.tsv", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "/root/dir\r\na.wav\t16000\r\nb/c.flac\t320\ten\tlibri\n\nnotab\nd.wav\t-5\ne.wav\t12x\n\tonly\n");
    fclose(f);
    slex_manifest *m = slex_manifest_read(path, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (m) {
        CHECK(!strcmp(m->root, "/root/dir") && m->n == 7, "root '%s', %lld entries", m->root, (long long)m->n);
        CHECK(!strcmp(m->entries[0].relpath, "a.wav") && m->entries[0].num_samples == 16000 && !m->entries[0].extra &&
                  m->entries[0].line == 2 && !m->entries[0].malformed,
              "line 2");
        CHECK(!strcmp(m->entries[1].relpath, "b/c.flac") && m->entries[1].num_samples == 320 &&
                  !strcmp(m->entries[1].extra, "en\tlibri"),
              "extra columns kept");
        const char *why[] = {"empty line", "no tab", "non-negative", "non-negative", "empty path"};
        for (int i = 0; i < 5; i++)
            CHECK(m->entries[2 + i].malformed && strstr(m->entries[2 + i].malformed, why[i]) &&
                      m->entries[2 + i].line == 4 + i,
                  "line %d: %s", 4 + i, m->entries[2 + i].malformed ? m->entries[2 + i].malformed : "(accepted)");
        char buf[64];
        CHECK(slex_manifest_audio_path(m, 1, buf, sizeof buf, &err) == 0 && !strcmp(buf, "/root/dir/b/c.flac"), "path");
        CHECK(slex_manifest_audio_path(m, 1, buf, 8, &err) == -1 && strstr(err.msg, ":3:"), "too long: %s", err.msg);
    }
    slex_manifest_free(m);
    /* A range keeps only its entries (0-based over entry lines) and counts them all. */
    m = slex_manifest_read_range(path, 1, 3, &err);
    CHECK(m && m->n == 2 && m->total == 7 && m->first == 1 && !strcmp(m->entries[0].relpath, "b/c.flac") &&
              m->entries[1].line == 4 && !strcmp(m->root, "/root/dir"),
          "range: %s", err.msg);
    slex_manifest_free(m);
    m = slex_manifest_read_range(path, 0, 0, &err);
    CHECK(m && m->n == 0 && m->total == 7, "count only");
    slex_manifest_free(m);
    snprintf(path, sizeof path, "%s/none.tsv", dir);
    CHECK(slex_manifest_read(path, &err) == NULL && strstr(err.msg, "none.tsv"), "%s", err.msg);

    /* ---- audio: 16-bit scaling is x / 32768, as soundfile reads it ---- */
    short pcm[8] = {0, 16384, -32768, 32767, -1, 1, 100, -100};
    snprintf(path, sizeof path, "%s/a.wav", dir);
    write_file(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, pcm, 8);
    float *x = NULL;
    int64_t n = 0;
    slex_audio_info info;
    CHECK(slex_audio_read(path, 16000, &x, &n, &info, &err) == 0 && n == 8, "read: %s", err.msg);
    for (int i = 0; x && i < 8; i++) CHECK(x[i] == pcm[i] / 32768.0f, "sample %d: %g", i, x[i]);
    CHECK(!info.resampled && !info.downmixed, "plain file");
    free(x);

    /* FLAC decodes to the same samples; stereo is the mean of the channels. */
    snprintf(path, sizeof path, "%s/a.flac", dir);
    write_file(path, SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000, 1, pcm, 8);
    CHECK(slex_audio_read(path, 16000, &x, &n, &info, &err) == 0 && n == 8 && x[1] == 0.5f, "flac: %s", err.msg);
    free(x);
    /* OGG Vorbis is lossy: the length is kept and a loud tone stays close to itself. */
    short ogg_tone[16000];
    for (int i = 0; i < 16000; i++) ogg_tone[i] = (short)lrint(12000.0 * sin(2 * M_PI * 300.0 * i / 16000.0));
    snprintf(path, sizeof path, "%s/tone.ogg", dir);
    write_file(path, SF_FORMAT_OGG | SF_FORMAT_VORBIS, 16000, 1, ogg_tone, 16000);
    CHECK(slex_audio_read(path, 16000, &x, &n, &info, &err) == 0 && n == 16000, "ogg: %s (%lld samples)", err.msg,
          (long long)n);
    double ogg_err = 0;
    for (int i = 2000; x && i < 14000; i++) ogg_err = fmax(ogg_err, fabs(x[i] - ogg_tone[i] / 32768.0));
    CHECK(ogg_err < 0.05, "ogg decodes to the tone (max error %g)", ogg_err);
    free(x);
    short st[6] = {16384, -8192, 0, 32767, -32768, -32768};
    snprintf(path, sizeof path, "%s/st.wav", dir);
    write_file(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 2, st, 3);
    CHECK(slex_audio_read(path, 16000, &x, &n, &info, &err) == 0 && n == 3 && info.downmixed, "stereo: %s", err.msg);
    if (x) CHECK(x[0] == 0.125f && x[1] == 32767.0f / 65536.0f && x[2] == -1.0f, "means %g %g %g", x[0], x[1], x[2]);
    free(x);

    /* 8 kHz -> 16 kHz: a 440 Hz tone stays a 440 Hz tone, in phase, with twice the samples. */
    short tone[8000];
    for (int i = 0; i < 8000; i++) tone[i] = (short)lrint(16000.0 * sin(2 * M_PI * 440.0 * i / 8000.0));
    snprintf(path, sizeof path, "%s/tone8k.wav", dir);
    write_file(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 8000, 1, tone, 8000);
    CHECK(slex_audio_read(path, 16000, &x, &n, &info, &err) == 0 && info.resampled, "resample: %s", err.msg);
    CHECK(n == 16000, "resampled length %lld", (long long)n);
    double worst = 0;
    for (int i = 1000; x && i < 15000; i++)
        worst = fmax(worst, fabs(x[i] - 16000.0 / 32768.0 * sin(2 * M_PI * 440.0 * i / 16000.0)));
    CHECK(worst < 2e-3, "resampled tone differs from the analytic one by %g", worst);
    free(x);

    /* ---- bad files ---- */
    snprintf(path, sizeof path, "%s/missing.wav", dir);
    CHECK(slex_audio_read(path, 16000, &x, &n, &info, &err) == -1 && strstr(err.msg, "missing.wav") &&
              strstr(err.msg, "No such file"),
          "%s", err.msg);
    snprintf(path, sizeof path, "%s/garbage.wav", dir);
    f = fopen(path, "w");
    fprintf(f, "definitely not a sound file, just words and words and words");
    fclose(f);
    CHECK(slex_audio_read(path, 16000, &x, &n, &info, &err) == -1 && strstr(err.msg, "cannot open audio"), "%s",
          err.msg);
    snprintf(path, sizeof path, "%s/empty.wav", dir);
    write_file(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, pcm, 0);
    CHECK(slex_audio_read(path, 16000, &x, &n, &info, &err) == -1 && strstr(err.msg, "zero samples"), "%s", err.msg);
    short longer[4000] = {0};
    snprintf(path, sizeof path, "%s/trunc.wav", dir);
    write_file(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, longer, 4000);
    CHECK(truncate(path, 44 + 3000) == 0, "truncate");
    CHECK(slex_audio_read(path, 16000, &x, &n, &info, &err) == -1 && strstr(err.msg, "truncated"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/trunc.flac", dir);
    for (int i = 0; i < 4000; i++) longer[i] = (short)(i * 37 % 20000 - 10000);
    write_file(path, SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000, 1, longer, 4000);
    FILE *ff = fopen(path, "rb");
    fseek(ff, 0, SEEK_END);
    long size = ftell(ff);
    fclose(ff);
    CHECK(truncate(path, size / 2) == 0, "truncate flac");
    CHECK(slex_audio_read(path, 16000, &x, &n, &info, &err) == -1 &&
              (strstr(err.msg, "truncated") || strstr(err.msg, "decoding error")),
          "%s", err.msg);
    /* NaN in a float WAV. */
    snprintf(path, sizeof path, "%s/nan.wav", dir);
    SF_INFO fi = {.samplerate = 16000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &fi);
    float fl[4] = {0.1f, NAN, 0.2f, 0.3f};
    sf_writef_float(sf, fl, 4);
    sf_close(sf);
    CHECK(slex_audio_read(path, 16000, &x, &n, &info, &err) == -1 && strstr(err.msg, "NaN") &&
              strstr(err.msg, "sample 1"),
          "%s", err.msg);
    return check_finish("test_audio_manifest");
}
