/* bench_mfcc: speed of slex_mfcc (MFCC + deltas + delta-deltas, one handle, one thread) on
 * generated speech-like audio, as audio seconds per CPU second.
 *
 *   bench_mfcc [--seconds S (300)] [--utterance-seconds U (10)] [--min-cpu-seconds C (2)]
 *              [--write-audio PATH]
 *
 * The audio is cut into utterances of U seconds (the last one shorter), each computed by one
 * slex_mfcc_compute call as fairseq does per file; passes over all of it repeat until C CPU
 * seconds have been spent.  --write-audio saves the generated audio (raw float32) so that
 * bench/mfcc_torchaudio.py measures torchaudio on exactly the same samples (bench/mfcc.sh). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "feat/mfcc.h"

#define SAMPLE_RATE 16000

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Uniform in [-1, 1) from a 64-bit LCG (Knuth's MMIX constants): reproducible everywhere. */
static float lcg_uniform(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*state >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

/* Speech-like audio: 8 harmonics of a pitch gliding between 90 and 250 Hz, a syllable-rate
 * envelope, and noise. */
static void generate_audio(float *wave, int64_t n) {
    uint64_t rng = 20240614;
    double phase = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / SAMPLE_RATE;
        double f0 = 170.0 + 80.0 * sin(2.0 * M_PI * 0.7 * t);
        phase += 2.0 * M_PI * f0 / SAMPLE_RATE;
        if (phase > 2.0 * M_PI) phase -= 2.0 * M_PI;
        double voiced = 0.0;
        for (int h = 1; h <= 8; h++) voiced += sin(h * phase) / h;
        double envelope = 0.55 + 0.45 * sin(2.0 * M_PI * 4.0 * t);
        wave[i] = (float)(0.08 * envelope * voiced + 0.01 * lcg_uniform(&rng));
    }
}

int main(int argc, char **argv) {
    double seconds = 300.0, utterance_seconds = 10.0, min_cpu = 2.0;
    const char *write_audio = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--utterance-seconds") && i + 1 < argc) utterance_seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--min-cpu-seconds") && i + 1 < argc) min_cpu = atof(argv[++i]);
        else if (!strcmp(argv[i], "--write-audio") && i + 1 < argc) write_audio = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--seconds S] [--utterance-seconds U] [--min-cpu-seconds C] [--write-audio PATH]\n",
                    argv[0]);
            return 2;
        }
    }
    int64_t n = (int64_t)(seconds * SAMPLE_RATE), utt = (int64_t)(utterance_seconds * SAMPLE_RATE);
    if (n <= 0 || utt <= 0) {
        fprintf(stderr, "bench_mfcc: --seconds and --utterance-seconds must be positive\n");
        return 2;
    }
    float *wave = malloc((size_t)n * sizeof *wave);
    if (!wave) return 1;
    generate_audio(wave, n);
    if (write_audio) {
        FILE *f = fopen(write_audio, "wb");
        if (!f || fwrite(wave, sizeof *wave, (size_t)n, f) != (size_t)n || fclose(f)) {
            fprintf(stderr, "bench_mfcc: cannot write %s\n", write_audio);
            return 1;
        }
    }

    slex_error err = {{0}};
    slex_mfcc_options opts;
    slex_mfcc_options_default(&opts);
    slex_mfcc *m = slex_mfcc_create(&opts, &err);
    if (!m) {
        fprintf(stderr, "bench_mfcc: %s\n", err.msg);
        return 1;
    }
    int dim = slex_mfcc_dim(m);
    float *feat = malloc((size_t)(slex_mfcc_num_frames(m, utt) * dim) * sizeof *feat);
    if (!feat) return 1;

    double feature_sum = 0.0, start = cpu_seconds(), elapsed = 0.0;
    int64_t frames = 0;
    int passes = 0;
    do {
        for (int64_t at = 0; at < n; at += utt) {
            int64_t len = n - at < utt ? n - at : utt;
            int64_t T = slex_mfcc_num_frames(m, len);
            if (slex_mfcc_compute(m, wave + at, len, feat, &err)) {
                fprintf(stderr, "bench_mfcc: %s\n", err.msg);
                return 1;
            }
            if (passes == 0) {
                for (int64_t i = 0; i < T * dim; i++) feature_sum += feat[i];
                frames += T;
            }
        }
        passes++;
        elapsed = cpu_seconds() - start;
    } while (elapsed < min_cpu);

    double rate = seconds * passes / elapsed;
    printf("audio_seconds %.1f\n", seconds);
    printf("frames %lld\n", (long long)frames);
    printf("feature_sum %.6e\n", feature_sum);
    printf("passes %d\n", passes);
    printf("cpu_seconds %.3f\n", elapsed);
    printf("audio_seconds_per_cpu_second %.1f\n", rate);
    slex_mfcc_free(m);
    free(feat);
    free(wave);
    return 0;
}
