#include "corpus/extsynth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/proc.h"
#include "corpus/align.h"
#include "corpus/audio.h"

struct slex_extsynth {
    slex_extsynth_program program;
    char dir[4096];    /* private temporary directory */
    char wav[4200];    /* dir/utt.wav */
    char script[4200]; /* dir/utt.scm (festival) */
};

const char *slex_extsynth_program_name(slex_extsynth_program program) {
    return program == SLEX_EXTSYNTH_FESTIVAL ? "festival" : "flite";
}

static const char *debian_voice_packages(slex_extsynth_program program) {
    return program == SLEX_EXTSYNTH_FESTIVAL ? "festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts; other "
                                               "languages: festvox-italp16k, festvox-itapc16k, festvox-ca-ona-hts, "
                                               "festvox-czech-dita, festvox-czech-ph, festvox-suopuhe-lj, festvox-suopuhe-mv"
                                             : "flite (voices kal, kal16, awb, rms, slt)";
}

void slex_extsynth_result_free(slex_extsynth_result *r) {
    free(r->samples);
    free(r->phones);
    memset(r, 0, sizeof *r);
}

/* ---- voices ---- */

/* The program's voices as one space-separated string: festival prints (voice.list) as
 * "(a b c)", flite -lv "Voices available: a b c". */
static int list_voices(slex_extsynth *x, char *voices, size_t size, slex_error *err) {
    const char *name = slex_extsynth_program_name(x->program);
    slex_proc_text out = {0}, errs = {0};
    int status = 0, rc = -1;
    if (x->program == SLEX_EXTSYNTH_FESTIVAL) {
        FILE *f = fopen(x->script, "w");
        if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot create: %s", x->script, strerror(errno));
        fprintf(f, "(format t \"slex-voices %%l\\n\" (voice.list))\n");
        if (fclose(f)) return slex_fail_as(err, SLEX_ERR_IO, "%s: write error", x->script);
        char *argv[] = {"festival", "-b", x->script, NULL};
        if (slex_proc_run(argv, &out, &errs, &status, err)) goto done;
    } else {
        char *argv[] = {"flite", "-lv", NULL};
        if (slex_proc_run(argv, &out, &errs, &status, err)) goto done;
    }
    const char *key = x->program == SLEX_EXTSYNTH_FESTIVAL ? "slex-voices (" : "Voices available:";
    const char *p = strstr(out.p, key);
    if (!slex_proc_succeeded(status) || !p) {
        char why[700];
        slex_proc_describe_exit(status, errs.p, why, sizeof why);
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: cannot list its voices (%s)", name, why);
        goto done;
    }
    p += strlen(key);
    size_t len = strcspn(p, ")\n");
    snprintf(voices, size, " %.*s ", (int)len, p);
    rc = 0;
done:
    free(out.p);
    free(errs.p);
    return rc;
}

slex_extsynth *slex_extsynth_open(slex_extsynth_program program, const char *const *voices, int n_voices,
                                  slex_error *err) {
    const char *name = slex_extsynth_program_name(program);
    if (!slex_proc_in_path(name))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: not installed (not found in PATH); install the Debian package %s",
                            name, name),
               NULL;
    if (n_voices < 1) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no voice given", name), NULL;
    slex_extsynth *x = calloc(1, sizeof *x);
    if (!x) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), NULL;
    x->program = program;
    if (slex_proc_tmpdir(name, x->dir, sizeof x->dir, err)) {
        free(x);
        return NULL;
    }
    snprintf(x->wav, sizeof x->wav, "%s/utt.wav", x->dir);
    snprintf(x->script, sizeof x->script, "%s/utt.scm", x->dir);
    char have[8192];
    if (list_voices(x, have, sizeof have, err)) goto fail;
    for (int i = 0; i < n_voices; i++) {
        char key[256];
        snprintf(key, sizeof key, " %s ", voices[i]);
        if (strlen(voices[i]) >= 200 || strchr(voices[i], ' ') || !strstr(have, key)) {
            const char *list = have + strspn(have, " ");
            size_t hl = strlen(list);
            while (hl && list[hl - 1] == ' ') hl--;
            slex_fail_as(err, SLEX_ERR_INPUT, "%s has no voice '%s' (it has: %.*s; voices come with the Debian packages %s)",
                         name, voices[i], (int)hl, list, debian_voice_packages(program));
            goto fail;
        }
    }
    return x;
fail:
    slex_extsynth_close(x);
    return NULL;
}

void slex_extsynth_close(slex_extsynth *x) {
    if (!x) return;
    unlink(x->wav);
    unlink(x->script);
    rmdir(x->dir);
    free(x);
}

/* ---- phones ---- */

static int push_phone(slex_extsynth_phone **ph, int64_t *n, int64_t *cap, const char *name, size_t len,
                      const char *end_text, slex_error *err) {
    char *stop;
    double end = strtod(end_text, &stop);
    if (stop == end_text || !(end >= 0 && end < 1e6) || (*stop && !strchr(" \t\r\n", *stop)))
        return slex_fail_as(err, SLEX_ERR_INPUT, "segment '%.*s': bad end time '%.*s'", (int)len, name,
                            (int)(strcspn(end_text, " \t\r\n") < 20 ? strcspn(end_text, " \t\r\n") : 20), end_text);
    if (!len || len >= sizeof(*ph)->name)
        return slex_fail_as(err, SLEX_ERR_INPUT, "segment name '%.*s' is empty or too long", (int)len, name);
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        slex_extsynth_phone *g = realloc(*ph, (size_t)*cap * sizeof *g);
        if (!g) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        *ph = g;
    }
    slex_extsynth_phone *p = &(*ph)[*n];
    memset(p, 0, sizeof *p);
    memcpy(p->name, name, len);
    p->end_us = (int64_t)(end * 1e6 + 0.5);
    if (*n && p->end_us < (*ph)[*n - 1].end_us)
        return slex_fail_as(err, SLEX_ERR_INPUT, "segment %lld ('%s') ends at %.6f s, before the previous one",
                            (long long)*n, p->name, end);
    (*n)++;
    return 0;
}

static int parse_festival(const char *out, slex_extsynth_phone **ph, int64_t *n, int64_t *cap, slex_error *err) {
    int done = 0;
    for (const char *line = out; *line && !done;) {
        size_t ll = strcspn(line, "\n");
        if (!strncmp(line, "slex-seg ", 9)) {
            const char *name = line + 9;
            size_t len = strcspn(name, " \n");
            if (name[len] != ' ')
                return slex_fail_as(err, SLEX_ERR_INPUT, "malformed segment line '%.*s'", (int)ll, line);
            if (push_phone(ph, n, cap, name, len, name + len + 1, err)) return -1;
        } else if (!strncmp(line, "slex-done", 9) && (ll == 9 || line[9] == '\r')) {
            done = 1;
        }
        line += ll + (line[ll] == '\n');
    }
    return done ? 0 : slex_fail_as(err, SLEX_ERR_INPUT, "the segment list is incomplete (no end marker)");
}

/* The first line made only of NAME:END tokens. */
static int parse_flite(const char *out, slex_extsynth_phone **ph, int64_t *n, int64_t *cap, slex_error *err) {
    for (const char *line = out; *line;) {
        size_t ll = strcspn(line, "\n");
        int tokens = 0, all = 1;
        for (size_t i = 0; i < ll && all;) {
            while (i < ll && strchr(" \t\r", line[i])) i++;
            if (i == ll) break;
            size_t tl = strcspn(line + i, " \t\r\n");
            const char *colon = memchr(line + i, ':', tl);
            all = colon && colon > line + i && colon + 1 < line + i + tl;
            tokens++;
            i += tl;
        }
        if (tokens && all) {
            for (size_t i = 0; i < ll;) {
                while (i < ll && strchr(" \t\r", line[i])) i++;
                if (i == ll) break;
                size_t tl = strcspn(line + i, " \t\r\n");
                const char *colon = memchr(line + i, ':', tl);
                if (push_phone(ph, n, cap, line + i, (size_t)(colon - (line + i)), colon + 1, err)) return -1;
                i += tl;
            }
            return 0;
        }
        line += ll + (line[ll] == '\n');
    }
    return slex_fail_as(err, SLEX_ERR_INPUT, "no segment list (-psdur) in its output");
}

int slex_extsynth_parse_phones(slex_extsynth_program program, const char *out, slex_extsynth_phone **phones,
                               int64_t *n, slex_error *err) {
    slex_extsynth_phone *ph = NULL;
    int64_t count = 0, cap = 0;
    int rc = program == SLEX_EXTSYNTH_FESTIVAL ? parse_festival(out, &ph, &count, &cap, err)
                                               : parse_flite(out, &ph, &count, &cap, err);
    if (!rc && !count) rc = slex_fail_as(err, SLEX_ERR_INPUT, "no segments");
    if (rc) {
        free(ph);
        return -1;
    }
    *phones = ph;
    *n = count;
    return 0;
}

/* ---- one utterance ---- */

int slex_extsynth_follows_f0(slex_extsynth_program program, const char *voice) {
    size_t n = strlen(voice);
    if (program == SLEX_EXTSYNTH_FESTIVAL) return !(n >= 4 && !strcmp(voice + n - 4, "_hts"));
    return strcmp(voice, "rms") != 0;
}

/* The festival script: voice, rate, pitch, synthesis, the WAV and the segment list. */
static int write_festival_script(const slex_extsynth *x, const char *voice, int rate_percent, int f0_hz,
                                 const char *text, slex_error *err) {
    FILE *f = fopen(x->script, "w");
    if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot create: %s", x->script, strerror(errno));
    fprintf(f, "(voice_%s)\n(defvar hts_engine_params nil)\n", voice);
    fprintf(f, "(Parameter.set 'Duration_Stretch (/ 100 %d))\n", rate_percent);
    fprintf(f, "(set! hts_engine_params (append hts_engine_params (list (list \"-r\" (/ %d 100)))))\n", rate_percent);
    /* int_lr_params is an association list: an entry in front overrides the voice's own. */
    if (f0_hz) fprintf(f, "(set! int_lr_params (cons (list 'target_f0_mean %d) int_lr_params))\n", f0_hz);
    fputs("(set! utt (SynthText \"", f);
    for (const char *c = text; *c; c++) {
        if (*c == '"' || *c == '\\') fputc('\\', f);
        fputc(*c, f);
    }
    fprintf(f, "\"))\n(utt.save.wave utt \"%s\" 'riff)\n", x->wav);
    fputs("(mapcar (lambda (s) (format t \"slex-seg %s %f\\n\" (item.name s) (item.feat s \"end\")))"
          " (utt.relation.items utt 'Segment))\n(format t \"slex-done\\n\")\n",
          f);
    if (ferror(f) | fclose(f)) return slex_fail_as(err, SLEX_ERR_IO, "%s: write error", x->script);
    return 0;
}

int slex_extsynth_utterance(slex_extsynth *x, const char *voice, int rate_percent, int f0_hz, const char *text,
                            slex_extsynth_result *out, slex_error *err) {
    memset(out, 0, sizeof *out);
    const char *name = slex_extsynth_program_name(x->program);
    if (rate_percent < 50 || rate_percent > 200)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s '%s': rate %d%% outside 50..200", name, voice, rate_percent);
    if (f0_hz && (f0_hz < SLEX_EXTSYNTH_F0_MIN || f0_hz > SLEX_EXTSYNTH_F0_MAX))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s '%s': F0 %d Hz outside %d..%d", name, voice, f0_hz,
                            SLEX_EXTSYNTH_F0_MIN, SLEX_EXTSYNTH_F0_MAX);
    unlink(x->wav);
    slex_proc_text so = {0}, se = {0};
    int status = 0, rc = -1;
    char stretch[64], f0[64];
    snprintf(stretch, sizeof stretch, "duration_stretch=%.6f", 100.0 / rate_percent);
    snprintf(f0, sizeof f0, "int_f0_target_mean=%d", f0_hz);
    if (x->program == SLEX_EXTSYNTH_FESTIVAL) {
        char *argv[] = {"festival", "-b", x->script, NULL};
        if (write_festival_script(x, voice, rate_percent, f0_hz, text, err) ||
            slex_proc_run(argv, &so, &se, &status, err))
            goto done;
    } else {
        char *argv[] = {"flite", "-voice", (char *)voice, "--setf", stretch, "-psdur", "-t", (char *)text,
                        "-o", x->wav, NULL, NULL, NULL};
        if (f0_hz) argv[10] = "--setf", argv[11] = f0; /* flite takes options in any order */
        if (slex_proc_run(argv, &so, &se, &status, err)) goto done;
    }
    char why[800];
    if (!slex_proc_succeeded(status)) {
        slex_proc_describe_exit(status, se.p, why, sizeof why);
        slex_fail_as(err, SLEX_ERR_IO, "%s '%s' %s", name, voice, why);
        goto done;
    }
    slex_error perr = {{0}};
    if (slex_extsynth_parse_phones(x->program, so.p, &out->phones, &out->n_phones, &perr)) {
        slex_proc_last_line(se.p, why, sizeof why);
        slex_fail_as(err, perr.kind, "%s '%s': %s%s%s", name, voice, perr.msg, why[0] ? "; its last message: " : "",
                     why);
        goto done;
    }
    slex_audio_info info;
    if (slex_audio_read(x->wav, SLEX_ALIGN_SAMPLE_RATE, &out->samples, &out->n, &info, err)) {
        slex_fail_wrap(err, "%s '%s' wrote no usable audio", name, voice);
        goto done;
    }
    out->source_rate = info.source_rate;
    out->source_frames = info.source_frames;
    rc = 0;
done:
    unlink(x->wav);
    free(so.p);
    free(se.p);
    if (rc) slex_extsynth_result_free(out);
    return rc;
}
