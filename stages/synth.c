/* slex-synth: a synthetic English or Mandarin corpus with phone alignments (espeak-ng), or an
 * English one from festival or flite.
 *
 *   slex-synth --lang en|zh --minutes M --out DIR --seed S [--split train|test] [--voices standard|all]
 *              [--augment [--speed-prob P ...]] [--engine espeak|festival|flite] [--voice NAME ...]
 *              [--f0-min HZ --f0-max HZ]
 *
 * The corpus is the shortest prefix of the seeded utterance sequence (synth.h) whose audio
 * reaches M minutes.  Ranks make utterances k with k % size == rank in rounds; after each round
 * the lengths are summed over ranks in utterance order, so where the corpus stops does not
 * depend on the rank count.  Every rank appends its utterances' records to its own part file;
 * rank 0 then merges the parts in utterance order into (docs/alignments.md):
 *   DIR/wav/<lang>_<split>_<k>.wav   16 kHz mono 16-bit
 *   DIR/<lang>_<split>.tsv           fairseq manifest: relpath, num_samples
 *   DIR/<lang>_<split>.columns       its side file: relpath, lang, speaker (corpus/manifest.h)
 *   DIR/<lang>_<split>.align         phone alignment (tonal labels for zh)
 *   DIR/<lang>_<split>.phones        label vocabulary with counts (tonal for zh)
 *   DIR/<lang>_<split>.utts          relpath, speaker, voice, rate, pitch, range, text
 *   DIR/<lang>_<split>.rejected      utterances the synthesiser could not make, with the reason
 *   DIR/<lang>_<split>.augment       with --augment: relpath and the perturbations applied
 * The manifest is renamed into place last: a corpus with a manifest is complete. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "corpus/align.h"
#include "corpus/audio.h"
#include "corpus/augment.h"
#include "corpus/extsynth.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/mpi_util.h"
#include "core/options.h"
#include "core/paths.h"
#include "core/progress.h"
#include "corpus/manifest.h"
#include "corpus/synth.h"

typedef struct {
    int lang;  /* slex_lang (required) */
    int split; /* slex_split: train */
    double minutes;
    char *out;
    int64_t seed;
    int speakers;
    char *fortune_dir;
    int voices;  /* slex_voice_set: standard */
    int augment; /* flag */
    int engine;                  /* slex_synth_engine_kind: espeak */
    slex_string_list voice_pool; /* --voice, repeated */
    int f0_min, f0_max;          /* 0, 0: the voices' own pitch */
} synth_args;

#define T synth_args
static const slex_option synth_rows[] = {
    {SLEX_OPT_CHOICE_FIELD(T, lang), .name = "lang", .flags = SLEX_OPTF_REQUIRED, .choices = "en|zh",
     .help = "language: en (fortunes) or zh (fortunes-zh, voice cmn-latn-pinyin)"},
    {SLEX_OPT_CHOICE_FIELD(T, split), .name = "split", .def = SLEX_SPLIT_TRAIN, .choices = "train|test",
     .help = "train or test (disjoint sentences and speakers)"},
    {SLEX_OPT_DOUBLE_FIELD(T, minutes), .name = "minutes", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_ABOVE_MIN, .min = 0,
     .max = 1e6, .help = "minutes of audio (the corpus stops at the first utterance reaching it)"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "output directory (created; several corpora may share it)"},
    {SLEX_OPT_LONG_FIELD(T, seed), .name = "seed", .def = 1, .help = "seed of the sentence order, speaker choice and jitter"},
    {SLEX_OPT_INT_FIELD(T, speakers), .name = "speakers", .def = 40, .min = 1, .max = 100000,
     .help = "speakers in the language's pool (every 5th is a test speaker); espeak only: for festival and flite "
             "the speakers are the --voice pool"},
    {SLEX_OPT_STRING_FIELD(T, fortune_dir), .name = "fortune-dir", .flags = SLEX_OPTF_PATH,
     .def_text = "/usr/share/games/fortunes", .help = "directory of the fortune files"},
    {SLEX_OPT_CHOICE_FIELD(T, voices), .name = "voices", .def = SLEX_VOICES_STANDARD, .choices = "standard|all",
     .help = "speaker pool: standard (6 accents, 15 variants) or all (8 accents, 99 variants of espeak-ng's "
             "voices/!v, wider rate/pitch/range; more --speakers make use of them)"},
    {SLEX_OPT_FLAG_FIELD(T, augment), .name = "augment",
     .help = "perturb every utterance at random (speed, reverberation, noise, gain: the options below; "
             "parameters in <lang>_<split>.augment)"},
    {SLEX_OPT_CHOICE_FIELD(T, engine), .name = "engine", .def = SLEX_ENGINE_ESPEAK, .choices = "espeak|festival|flite",
     .help = "synthesiser: espeak (espeak-ng), festival or flite (English only; needs --voice)"},
    {SLEX_OPT_LIST_FIELD(T, voice_pool), .name = "voice",
     .help = "a named voice (repeat for a pool): festival kal_diphone, ked_diphone, cmu_us_slt_arctic_hts; "
             "flite kal, kal16, awb, rms, slt; espeak en-us, en-us+f3, ... (replaces the accents of --voices)"},
    {SLEX_OPT_INT_FIELD(T, f0_min), .name = "f0-min", .min = 0, .max = SLEX_EXTSYNTH_F0_MAX,
     .help = "festival and flite: lowest mean F0 (Hz) of an utterance, drawn uniformly up to --f0-max (0 with "
             "--f0-max 0: each voice's own pitch; festival's HTS voices and flite's rms keep theirs and are refused)"},
    {SLEX_OPT_INT_FIELD(T, f0_max), .name = "f0-max", .min = 0, .max = SLEX_EXTSYNTH_F0_MAX,
     .help = "highest mean F0 (Hz); the drawn value is the pitch column of <lang>_<split>.utts"},
};
#undef T
static const slex_option_table synth_table = SLEX_OPTION_TABLE(synth_rows);

/* Utterances of babble speech (about 2.5 minutes) when the noise kinds include babble. */
enum { BABBLE_UTTERANCES = 48 };

typedef struct {
    char name[64];       /* <lang>_<split> */
    const char *out;
    slex_synth_options opts;
    slex_sentences sentences;
    int64_t *order;
    slex_synth_engine *engine;
    int rank, size;
    int augment;                  /* --augment */
    slex_augment_options aug;
    float *babble;                /* babble speech when the noise kinds include babble */
    int64_t n_babble;
    FILE *part;          /* this rank's records */
    char part_path[4096];
} synth_run;

static double cpu_seconds(void) {
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    return (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec + kids.ru_stime.tv_sec) +
           1e-6 * (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec +
                           kids.ru_stime.tv_usec);
}

static void wav_relpath(const synth_run *r, int64_t k, char *buf, size_t size) {
    snprintf(buf, size, "wav/%s_%06lld.wav", r->name, (long long)k);
}

/* The columns of the .augment file after the relpath (AUGMENT_HEADER), also in part records. */
#define AUGMENT_HEADER "relpath\tspeed\trt60\tdrr_db\tnoise\tsnr_db\tgain_db"
enum { AUGMENT_FIELDS = 6, U_FIELDS = 10 + AUGMENT_FIELDS };
static void format_augment(const slex_augment_params *p, char *buf, size_t size) {
    char rt60[32] = "-", drr[32] = "-", snr[32] = "-";
    if (p->rt60 > 0) {
        snprintf(rt60, sizeof rt60, "%.3f", p->rt60);
        snprintf(drr, sizeof drr, "%.2f", p->drr_db);
    }
    if (p->noise != SLEX_NOISE_NONE) snprintf(snr, sizeof snr, "%.2f", p->snr_db);
    snprintf(buf, size, "%.3f\t%s\t%s\t%s\t%s\t%.2f", p->speed_permille / 1000.0, rt60, drr,
             slex_noise_kind_name(p->noise), snr, p->applied_gain_db);
}

/* Makes utterance k: WAV file and a record in the part file.  Returns its sample count, or 0
 * when the synthesiser could not make it (a rejection record says why); -1 on an I/O failure. */
static int64_t make_utterance(synth_run *r, int64_t k, slex_error *err) {
    slex_synth_plan plan;
    slex_synth_make_plan(&r->opts, r->order, r->sentences.n, k, &plan);
    const char *text = r->sentences.text[plan.sentence];
    slex_utterance u;
    slex_error why;
    if (slex_synth_utterance(r->engine, r->opts.lang, &plan, text, &u, &why)) {
        slex_warn("utterance %lld (%s, \"%s\") rejected: %s", (long long)k, plan.speaker.voice, text, why.msg);
        fprintf(r->part, "R\t%lld\t%s: %s\n", (long long)k, plan.speaker.voice, why.msg);
        return ferror(r->part) ? slex_fail_as(err, SLEX_ERR_IO, "%s: write error", r->part_path) : 0;
    }
    char aug[160] = "-\t-\t-\t-\t-\t-"; /* AUGMENT_FIELDS columns */
    if (r->augment) {
        slex_augment_params ap;
        uint64_t key = slex_synth_augment_key(&r->opts, k);
        slex_augment_draw(&r->aug, key, &ap);
        if (slex_augment_apply(&ap, key, r->babble, r->n_babble, &u.samples, &u.n, u.segs, &u.n_segs, err)) {
            slex_utterance_free(&u);
            return slex_fail_wrap(err, "augmenting utterance %lld", (long long)k);
        }
        format_augment(&ap, aug, sizeof aug);
    }
    char rel[256], path[4352];
    wav_relpath(r, k, rel, sizeof rel);
    snprintf(path, sizeof path, "%s/%s", r->out, rel);
    int64_t n = u.n;
    slex_atomic wav;
    if (slex_atomic_begin(&wav, path, err) ||
        slex_audio_write_wav16(wav.tmp, u.samples, u.n, SLEX_ALIGN_SAMPLE_RATE, err) || slex_atomic_commit(&wav, err)) {
        slex_atomic_abandon(&wav);
        slex_utterance_free(&u);
        return -1;
    }
    fprintf(r->part, "U\t%lld\t%lld\t%s\t%s\t%d\t%d\t%d\t%lld\t%s\t%s\n", (long long)k, (long long)n,
            plan.speaker.id, plan.speaker.voice, plan.rate, plan.pitch, plan.range, (long long)u.n_segs, aug, text);
    for (int64_t i = 0; i < u.n_segs; i++)
        fprintf(r->part, "%lld\t%lld\t%s\n", (long long)u.segs[i].start, (long long)u.segs[i].end, u.segs[i].label);
    slex_utterance_free(&u);
    if (ferror(r->part)) return slex_fail_as(err, SLEX_ERR_IO, "%s: write error", r->part_path);
    return n;
}

/* Output files of rank 0's merge, written under temporary names (slex_atomic); the manifest (two
 * columns, for fairseq) with its side file of columns lang and speaker (corpus/manifest.h). */
typedef struct {
    slex_manifest_writer *tsv;
    FILE *align, *utts, *rejected, *augment; /* file[i].f; augment only with --augment */
    slex_atomic file[5];                     /* 1..4: align, utts, rejected, augment */
    int n_files;                             /* 4, or 5 with augment */
    char phones[4200];
} outputs;

static const char *const out_ext[6] = {"tsv", "align", "utts", "rejected", "augment", "phones"};

static int open_outputs(const synth_run *r, outputs *o, slex_error *err) {
    FILE **files[5] = {NULL, &o->align, &o->utts, &o->rejected, &o->augment};
    char path[4200];
    o->n_files = r->augment ? 5 : 4;
    for (int i = 1; i < o->n_files; i++) {
        snprintf(path, sizeof path, "%s/%s.%s", r->out, r->name, out_ext[i]);
        if (slex_atomic_fopen(&o->file[i], path, err)) return -1;
        *files[i] = o->file[i].f;
    }
    if (o->augment) fprintf(o->augment, "%s\n", AUGMENT_HEADER);
    snprintf(o->phones, sizeof o->phones, "%s/%s.%s", r->out, r->name, out_ext[5]);
    snprintf(path, sizeof path, "%s/%s.%s", r->out, r->name, out_ext[0]);
    char *root = realpath(r->out, NULL); /* fairseq roots are absolute */
    if (!root) return slex_fail_as(err, slex_errno_kind(errno), "%s: %s", r->out, strerror(errno));
    o->tsv = slex_manifest_writer_open(path, root, "lang\tspeaker", err);
    free(root);
    return o->tsv ? 0 : -1;
}

static void abandon_outputs(outputs *o) {
    for (int i = 1; i < o->n_files; i++) slex_atomic_abandon(&o->file[i]);
}

/* Reads one line of a part file into *line (no newline); fails at the end. */
static int read_part_line(FILE *f, const char *path, char **line, size_t *cap, slex_error *err) {
    ssize_t len = getline(line, cap, f);
    if (len < 0) return slex_fail_as(err, SLEX_ERR_IO, "%s: ends early", path);
    if (len && (*line)[len - 1] == '\n') (*line)[len - 1] = '\0';
    return 0;
}

/* Rank 0's reader of every rank's part file: the current record line split into fields and
 * the phones of the current utterance. */
typedef struct part_reader {
    int n;                /* part files, one per rank */
    FILE **files;
    char (*paths)[4200];
    char *line;           /* the line last read */
    size_t cap;
    char *head;           /* a copy of the record line, split in place into fld */
    char *fld[U_FIELDS];
    int nf;
    slex_segment *segs;   /* the phones of the record (labels point into `labels`) */
    char *labels;
    int64_t segs_cap;
} part_reader;

static int parts_open(part_reader *p, const synth_run *r, slex_error *err) {
    memset(p, 0, sizeof *p);
    p->n = r->size;
    p->files = calloc((size_t)r->size, sizeof *p->files);
    p->paths = calloc((size_t)r->size, sizeof *p->paths);
    if (!p->files || !p->paths) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    for (int q = 0; q < r->size; q++) {
        snprintf(p->paths[q], sizeof p->paths[q], "%s/.%s.part%d.tmp", r->out, r->name, q);
        if (!(p->files[q] = fopen(p->paths[q], "r")))
            return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", p->paths[q], strerror(errno));
    }
    return 0;
}

static void parts_close(part_reader *p) {
    for (int q = 0; p->files && q < p->n; q++)
        if (p->files[q]) fclose(p->files[q]);
    free(p->files);
    free(p->paths);
    free(p->line);
    free(p->head);
    free(p->segs);
    free(p->labels);
}

/* Reads the record of utterance k (from part k % n) into p->fld: 'U' records have U_FIELDS
 * fields (U, k, samples, speaker, voice, rate, pitch, range, phones, the AUGMENT_FIELDS columns,
 * text), 'R' records at least 3. */
static int read_record(part_reader *p, int64_t k, slex_error *err) {
    const char *path = p->paths[k % p->n];
    if (read_part_line(p->files[k % p->n], path, &p->line, &p->cap, err)) return -1;
    free(p->head); /* the phone lines reuse `line`: keep the record's fields in a copy */
    if (!(p->head = strdup(p->line))) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    char **fld = p->fld;
    int nf = 0;
    for (char *q = p->head; nf < U_FIELDS; nf++) {
        fld[nf] = q;
        char *tab = nf < U_FIELDS - 1 ? strchr(q, '\t') : NULL;
        if (!tab) {
            nf++;
            break;
        }
        *tab = '\0';
        q = tab + 1;
    }
    p->nf = nf;
    if (nf < 3 || atoll(fld[1]) != k || (fld[0][0] == 'U' && nf != U_FIELDS))
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: record of utterance %lld is malformed", path, (long long)k);
    return 0;
}

/* Reads the n_segs phone lines that follow utterance k's record into p->segs, counting their
 * labels in vocab. */
static int read_phones(part_reader *p, int64_t k, int64_t n_segs, slex_label_vocab *vocab, slex_error *err) {
    FILE *f = p->files[k % p->n];
    const char *path = p->paths[k % p->n];
    if (n_segs > p->segs_cap) {
        p->segs_cap = 2 * n_segs;
        free(p->segs);
        free(p->labels);
        p->segs = malloc((size_t)p->segs_cap * sizeof *p->segs);
        p->labels = malloc((size_t)p->segs_cap * (SLEX_LABEL_MAX + 1));
        if (!p->segs || !p->labels) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    }
    for (int64_t i = 0; i < n_segs; i++) {
        if (read_part_line(f, path, &p->line, &p->cap, err)) return -1;
        char *label = p->labels + i * (SLEX_LABEL_MAX + 1);
        long long s, e;
        if (sscanf(p->line, "%lld\t%lld\t%63s", &s, &e, label) != 3)
            return slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: phone line of utterance %lld is malformed", path,
                                (long long)k);
        p->segs[i] = (slex_segment){.start = s, .end = e, .label = label};
        if (slex_label_vocab_count(vocab, label, strlen(label)) < 0)
            return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    }
    return 0;
}

/* Rank 0: merges the part files of utterances 0..n_utts-1 in order into the outputs. */
static int merge_parts(const synth_run *r, int64_t n_utts, outputs *o, slex_label_vocab *vocab, slex_error *err) {
    part_reader p;
    char rel[256];
    int rc = -1;
    if (parts_open(&p, r, err)) goto done;
    slex_align_write_header(o->align);
    for (int64_t k = 0; k < n_utts; k++) {
        if (read_record(&p, k, err)) goto done;
        char **fld = p.fld;
        wav_relpath(r, k, rel, sizeof rel);
        if (fld[0][0] == 'R') {
            fprintf(o->rejected, "%s\t%s\n", rel, fld[2]);
            continue;
        }
        int64_t n_segs = atoll(fld[8]);
        if (read_phones(&p, k, n_segs, vocab, err) ||
            slex_align_check_segments(rel, p.segs, n_segs, atoll(fld[2]), err) ||
            slex_align_write_utt(o->align, rel, p.segs, n_segs, err))
            goto done;
        char columns[128];
        snprintf(columns, sizeof columns, "%s\t%s", slex_lang_name(r->opts.lang), fld[3]);
        if (slex_manifest_writer_add(o->tsv, rel, atoll(fld[2]), columns, err)) goto done;
        fprintf(o->utts, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rel, fld[3], fld[4], fld[5], fld[6], fld[7],
                fld[U_FIELDS - 1]);
        if (o->augment) {
            fprintf(o->augment, "%s", rel);
            for (int c = 9; c < 9 + AUGMENT_FIELDS; c++) fprintf(o->augment, "\t%s", fld[c]);
            fputc('\n', o->augment);
        }
    }
    rc = 0;
done:
    parts_close(&p);
    return rc;
}

/* Rank 0: removes WAVs of this corpus name past its end (made in the last round beyond the
 * target, or left by an earlier, longer run). */
static void remove_extra_wavs(const synth_run *r, int64_t n_utts) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/wav", r->out);
    DIR *d = opendir(dir);
    if (!d) return;
    size_t nl = strlen(r->name);
    struct dirent *de;
    int64_t removed = 0;
    while ((de = readdir(d))) {
        const char *f = de->d_name;
        char *end;
        if (strncmp(f, r->name, nl) || f[nl] != '_') continue;
        long long k = strtoll(f + nl + 1, &end, 10);
        if (strcmp(end, ".wav") || k < n_utts) continue;
        char path[8500];
        snprintf(path, sizeof path, "%s/%s", dir, f);
        if (!unlink(path)) removed++;
    }
    closedir(d);
    if (removed) slex_info("removed %lld WAV files past the corpus end", (long long)removed);
}

static int finish_outputs(const synth_run *r, outputs *o, const slex_label_vocab *vocab, slex_error *err) {
    for (int i = 1; i < o->n_files; i++)
        if (slex_atomic_commit(&o->file[i], err)) return -1;
    if (!r->augment) { /* an earlier run's parameters would describe other audio */
        char path[4200];
        snprintf(path, sizeof path, "%s/%s.%s", r->out, r->name, out_ext[4]);
        if (unlink(path) && errno != ENOENT)
            return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot remove: %s", path, strerror(errno));
    }
    if (slex_label_vocab_write(vocab, o->phones, err)) return -1;
    /* The manifest last: its presence says the corpus is complete. */
    slex_manifest_writer *tsv = o->tsv;
    o->tsv = NULL;
    return slex_manifest_writer_commit(tsv, err);
}

static int check_args(const synth_args *a, synth_run *r, slex_error *err) {
    slex_synth_options_default(&r->opts);
    r->opts.lang = (slex_lang)a->lang;
    r->opts.split = (slex_split)a->split;
    r->opts.engine = (slex_synth_engine_kind)a->engine;
    r->opts.voice_pool = (const char *const *)a->voice_pool.items;
    r->opts.n_voice_pool = a->voice_pool.count;
    const char *engine = slex_synth_engine_name(r->opts.engine);
    static const char voice_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-";
    for (int i = 0; i < a->voice_pool.count; i++) {
        const char *v = a->voice_pool.items[i];
        if (!v[0] || strspn(v, voice_chars) != strlen(v))
            return slex_fail_as(err, SLEX_ERR_INPUT, "--voice '%s': a voice name is made of letters, digits and _ + -",
                                v);
    }
    if (r->opts.engine != SLEX_ENGINE_ESPEAK && r->opts.lang != SLEX_LANG_EN)
        return slex_fail_as(err, SLEX_ERR_INPUT, "--engine %s makes English only (--lang en)", engine);
    if (r->opts.engine != SLEX_ENGINE_ESPEAK && a->voices == SLEX_VOICES_ALL)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "--voices all is espeak-ng's speaker pool; --engine %s speaks with the --voice pool",
                            engine);
    if (r->opts.engine != SLEX_ENGINE_ESPEAK && !a->voice_pool.count)
        return slex_fail_as(err, SLEX_ERR_INPUT, "--engine %s needs --voice NAME (repeat it for a pool)", engine);
    if ((a->f0_min || a->f0_max) && r->opts.engine == SLEX_ENGINE_ESPEAK)
        return slex_fail_as(err, SLEX_ERR_INPUT, "--f0-min/--f0-max set festival and flite voices' pitch; "
                                                 "espeak-ng speakers have their own (--voices)");
    if ((a->f0_min || a->f0_max) && (a->f0_min < SLEX_EXTSYNTH_F0_MIN || a->f0_min > a->f0_max))
        return slex_fail_as(err, SLEX_ERR_INPUT, "--f0-min %d --f0-max %d: --f0-min must be at least %d Hz and at most --f0-max",
                            a->f0_min, a->f0_max, SLEX_EXTSYNTH_F0_MIN);
    r->opts.f0_min = a->f0_min;
    r->opts.f0_max = a->f0_max;
    if (a->speakers < 2 * r->opts.test_speaker_every)
        return slex_fail_as(err, SLEX_ERR_INPUT, "--speakers must be at least %d", 2 * r->opts.test_speaker_every);
    r->opts.seed = (uint64_t)a->seed;
    r->opts.num_speakers = a->speakers;
    r->opts.fortune_dir = a->fortune_dir;
    r->opts.voices = (slex_voice_set)a->voices;
    r->augment = a->augment;
    r->out = a->out;
    snprintf(r->name, sizeof r->name, "%s_%s", slex_lang_name(r->opts.lang), slex_split_name(r->opts.split));
    return 0;
}

/* The perturbation options do nothing without --augment: giving one alone is a mistake. */
static int check_augment_given(const slex_cli *cli, const synth_args *a, slex_error *err) {
    if (a->augment) return 0;
    for (int i = 0; i < slex_augment_option_table.n; i++)
        if (slex_cli_given(cli, slex_augment_option_table.rows[i].name))
            return slex_fail_as(err, SLEX_ERR_INPUT, "--%s needs --augment", slex_augment_option_table.rows[i].name);
    return 0;
}

/* OUT and OUT/wav, with any missing parents (as the other stages' --out). */
static int make_dirs(const char *out, slex_error *err) {
    char wav[4200];
    snprintf(wav, sizeof wav, "%s/wav", out);
    return slex_mkdirs(wav, err);
}

/* Rounds of utterances until their audio reaches target samples; returns the corpus size. */
static int64_t synthesise(synth_run *r, int64_t target, slex_progress *progress, int64_t *audio_samples,
                          int64_t *rejected, slex_error *err) {
    int64_t k0 = 0, total = 0, made = 0, n_rejected = 0;
    int64_t *lengths = NULL;
    int warned_repeat = 0;
    for (;;) {
        /* Size the round from the mean length so far (3 s before any), with 5% to spare. */
        double mean = made ? (double)total / (double)made : 3.0 * SLEX_ALIGN_SAMPLE_RATE;
        int64_t want = (int64_t)ceil((double)(target - total) / mean * 1.05);
        if (want < r->size) want = r->size;
        if (want > 64 * r->size) want = 64 * r->size;
        int64_t *grown = realloc(lengths, (size_t)want * sizeof *grown);
        if (!grown) {
            free(lengths);
            return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        }
        lengths = grown;
        memset(lengths, 0, (size_t)want * sizeof *lengths);
        int ok = 1;
        for (int64_t k = k0 + (r->rank - k0 % r->size + r->size) % r->size; k < k0 + want && ok; k += r->size) {
            int64_t n = make_utterance(r, k, err);
            if (n < 0) ok = 0;
            else lengths[k - k0] = n;
            slex_progress_add(progress, 1, (double)(n > 0 ? n : 0) / SLEX_ALIGN_SAMPLE_RATE);
        }
        if (!slex_mpi_all_ok(ok)) {
            free(lengths);
            if (ok) slex_fail_as(err, SLEX_ERR_IO, "another rank failed");
            return -1;
        }
        MPI_Allreduce(MPI_IN_PLACE, lengths, (int)want, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
        for (int64_t i = 0; i < want; i++) {
            if (lengths[i]) total += lengths[i], made++;
            else n_rejected++;
            if (total >= target) {
                free(lengths);
                *audio_samples = total;
                *rejected = n_rejected;
                return k0 + i + 1;
            }
        }
        k0 += want;
        if (!warned_repeat && k0 > r->sentences.n && r->rank == 0) {
            slex_warn("more utterances than the %lld %s sentences: sentences repeat (with other speakers)",
                      (long long)r->sentences.n, r->name);
            warned_repeat = 1;
        }
        if (n_rejected > 20 && n_rejected * 2 > k0) {
            free(lengths);
            return slex_fail_as(err, SLEX_ERR_INPUT, "%lld of %lld utterances rejected: see the warnings",
                                (long long)n_rejected, (long long)k0);
        }
    }
}

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    slex_log_init("synth", mpi.rank, mpi.size);
    slex_log_level_from_env();
    double cpu0 = cpu_seconds(), wall0 = MPI_Wtime();
    synth_args a;
    slex_options_defaults(&synth_table, &a);
    synth_run r;
    memset(&r, 0, sizeof r);
    slex_augment_options_default(&r.aug);
    const slex_option_group groups[] = {{&synth_table, &a}, {&slex_augment_option_table, &r.aug}};
    slex_cli cli = {.program = "slex-synth",
                    .synopsis = "--lang en|zh --minutes M --out DIR --seed S [--split train|test] [--voices "
                                "standard|all] [--augment] [--engine espeak|festival|flite] [--voice NAME ...] "
                                "[--f0-min HZ --f0-max HZ]",
                    .about = "Synthesises 16 kHz speech with espeak-ng (or, English only, festival or flite) from "
                             "Debian's fortune texts, with a fairseq manifest and 16 kHz phone alignments "
                             "(docs/alignments.md), optionally perturbed (--augment: docs/synth.md). Same arguments, "
                             "same bytes, for any rank count.",
                    .groups = groups,
                    .n_groups = 2};
    slex_error err = {{0}};
    r.rank = mpi.rank;
    r.size = mpi.size;
    int status = 1;
    slex_parse_result pr = slex_cli_parse(&cli, argc, argv, &err);
    if (pr == SLEX_PARSE_HELP) {
        if (mpi.rank == 0) slex_cli_help(&cli, stdout);
        status = 0;
        goto out;
    }
    if (pr == SLEX_PARSE_OK && (check_args(&a, &r, &err) || check_augment_given(&cli, &a, &err))) pr = SLEX_PARSE_ERROR;
    if (pr == SLEX_PARSE_ERROR) {
        if (mpi.rank == 0) slex_error_log("%s", err.msg);
        status = slex_cli_exit_code(&cli, &err);
        goto out;
    }
    int ok = !slex_paths_check_apart(&(slex_path_role){"--out", a.out}, 1,
                                     &(slex_path_role){"--fortune-dir", a.fortune_dir}, 1, &err);
    if (ok && mpi.rank == 0 && make_dirs(r.out, &err)) ok = 0;
    if (!slex_mpi_all_ok(ok)) goto fail;
    ok = !slex_synth_load_sentences(&r.opts, &r.sentences, &err) &&
         (r.order = slex_synth_sentence_order(&r.opts, r.sentences.n, &err)) &&
         (r.engine = slex_synth_engine_create(&r.opts, &err));
    /* Babble speech: the same on every rank (made from the initialised engine like any utterance). */
    if (ok && r.augment && slex_augment_uses_babble(&r.aug))
        ok = !slex_synth_babble_bank(r.engine, &r.opts, &r.sentences, BABBLE_UTTERANCES, &r.babble, &r.n_babble, &err);
    if (ok) {
        snprintf(r.part_path, sizeof r.part_path, "%s/.%s.part%d.tmp", r.out, r.name, r.rank);
        if (!(r.part = fopen(r.part_path, "w")))
            ok = !slex_fail_as(&err, slex_errno_kind(errno), "%s: cannot create: %s", r.part_path, strerror(errno));
    }
    if (!slex_mpi_all_ok(ok)) goto fail;
    if (mpi.rank == 0)
        slex_info("%s: %lld sentences, seed %lld, %.2f minutes, voices %s%s", r.name, (long long)r.sentences.n,
                  (long long)a.seed, a.minutes, slex_voices_name(r.opts.voices), r.augment ? ", augmented" : "");
    int64_t target = (int64_t)ceil(a.minutes * 60.0 * SLEX_ALIGN_SAMPLE_RATE);
    slex_progress *progress = slex_progress_start("utterances", (int64_t)ceil(a.minutes * 20), a.minutes * 60, 1);
    int64_t audio = 0, rejected = 0;
    int64_t n_utts = synthesise(&r, target, progress, &audio, &rejected, &err);
    slex_progress_finish(progress);
    ok = n_utts > 0;
    if (r.part && fclose(r.part)) ok = ok && !slex_fail_as(&err, SLEX_ERR_IO, "%s: write error", r.part_path);
    r.part = NULL;
    if (!slex_mpi_all_ok(ok)) goto fail;
    if (mpi.rank == 0) {
        outputs o;
        memset(&o, 0, sizeof o);
        slex_label_vocab *vocab = slex_label_vocab_create();
        if (!vocab) slex_fail_as(&err, SLEX_ERR_RESOURCE, "out of memory");
        ok = vocab && !open_outputs(&r, &o, &err) && !merge_parts(&r, n_utts, &o, vocab, &err) &&
             !slex_label_vocab_sort(vocab) && !finish_outputs(&r, &o, vocab, &err);
        abandon_outputs(&o);
        if (ok) remove_extra_wavs(&r, n_utts);
        slex_manifest_writer_abort(o.tsv); /* left only after a failure */
        slex_label_vocab_free(vocab);
    }
    if (!slex_mpi_all_ok(ok)) goto fail;
    unlink(r.part_path);
    double cpu = cpu_seconds() - cpu0, cpu_all = 0;
    MPI_Reduce(&cpu, &cpu_all, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (mpi.rank == 0)
        slex_info("%s: %lld utterances (%lld rejected), %.1f s of audio in %.1f s wall, %.2f CPU s: "
                  "%.0f audio s per CPU s",
                  r.name, (long long)(n_utts - rejected), (long long)rejected, (double)audio / SLEX_ALIGN_SAMPLE_RATE,
                  MPI_Wtime() - wall0, cpu_all, (double)audio / SLEX_ALIGN_SAMPLE_RATE / (cpu_all > 0 ? cpu_all : 1e-9));
    status = 0;
    goto out;
fail:
    if (err.msg[0]) slex_error_log("%s", err.msg);
out:
    if (r.part) fclose(r.part);
    free(r.order);
    free(r.babble);
    slex_sentences_free(&r.sentences);
    slex_synth_engine_free(r.engine);
    slex_cli_free(&cli);
    status = slex_mpi_exit_code(status, &err);
    slex_mpi_stop();
    return status;
}
