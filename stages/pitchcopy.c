/* slex-pitchcopy: a pitch-shifted copy of a corpus, frame-aligned with it (corpus/pitchcopy.h),
 * so that the original's labels train on the copy too (`--data COPY.tsv:LABELS` of slex-train).
 *
 *   slex-pitchcopy --manifest IN.tsv --out DIR [--cents-min C --cents-max C --seed S] [--force]
 *
 * Writes, for IN.tsv named NAME.tsv (docs/synth.md, "Pitch-shifted copies"):
 *   DIR/<relpath>          the copy of every utterance under the original's relpath (labels pair
 *                          by it): 16 kHz mono 16-bit WAV, the original's length at 16 kHz
 *   DIR/NAME.tsv           fairseq manifest of the copies (root DIR), the original's side file
 *                          columns carried (corpus/manifest.h)
 *   DIR/NAME.pitch         relpath, cents, lag_samples of every utterance
 *   DIR/NAME.params.json   what the copies were made from: the options and the input manifest
 * Ranks take lines k with k % size == rank.  Every finished copy is recorded in its rank's part
 * file (DIR/.NAME.part.<size>.<rank>), so a killed run resumes where it stopped, with any rank
 * count; rank 0 merges the records in manifest order and renames the manifest into place last:
 * a corpus with a manifest is complete.  Same arguments, same bytes, for any rank count. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/mpi_util.h"
#include "core/options.h"
#include "core/paths.h"
#include "core/progress.h"
#include "corpus/audio.h"
#include "corpus/manifest.h"
#include "corpus/pitchcopy.h"

typedef struct {
    char *manifest;
    char *out;
    int force;
} pitchcopy_args;

#define T pitchcopy_args
static const slex_option stage_rows[] = {
    {SLEX_OPT_STRING_FIELD(T, manifest), .name = "manifest", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "fairseq manifest of the corpus to copy"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "output directory (created; not the corpus' own)"},
    {SLEX_OPT_FLAG_FIELD(T, force), .name = "force", .help = "replace a finished copy made with other parameters"},
};
#undef T
static const slex_option_table stage_table = SLEX_OPTION_TABLE(stage_rows);

/* What rank 0 merges: per manifest line, its copy's lag and length (-1: not made yet). */
typedef struct {
    int64_t n_lines;
    int32_t *lag;
    int64_t *samples;
} copy_records;

typedef struct {
    const pitchcopy_args *a;
    const slex_pitchcopy_options *o;
    char name[1024];        /* NAME of NAME.tsv */
    char out_abs[4096];     /* DIR, absolute (the manifest's root) */
    char params_path[4200]; /* DIR/NAME.params.json */
    char *params;           /* its text */
    int rank, size;
} copy_run;

static void out_path(const copy_run *r, const char *suffix, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s%s", r->a->out, r->name, suffix);
}

/* The part file of rank `rank` of a run of `size` ranks. */
static void part_path(const copy_run *r, int size, int rank, char *buf, size_t size_buf) {
    snprintf(buf, size_buf, "%s/.%s.part.%d.%d", r->a->out, r->name, size, rank);
}

/* Everything the copies depend on: the options and the input manifest's bytes (its root line
 * included; not its path, so the same file named another way is the same run). */
static char *make_params(const pitchcopy_args *a, const slex_pitchcopy_options *o, slex_error *err) {
    uint32_t crc = 0;
    int64_t bytes = 0;
    if (slex_file_crc32(a->manifest, &crc, &bytes, err)) return NULL;
    char crc_hex[16];
    snprintf(crc_hex, sizeof crc_hex, "%08x", (unsigned)crc);
    cJSON *p = cJSON_CreateObject();
    char *text = NULL;
    if (p && cJSON_AddStringToObject(p, "effect", "sox pitch, envelope re-aligned") &&
        cJSON_AddStringToObject(p, "manifest_crc32", crc_hex) &&
        cJSON_AddNumberToObject(p, "manifest_bytes", (double)bytes) &&
        !slex_options_write_json(&slex_pitchcopy_option_table, o, p))
        text = cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    if (!text) slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    return text;
}

/* 1 when `path` holds exactly `params`, 0 when it holds other ones or does not exist. */
static int same_params(const char *path, const char *params) {
    char *have = slex_read_text_file(path, NULL, NULL);
    int same = have && !strcmp(have, params);
    free(have);
    return same;
}

/* 1 when `file` is a part file of NAME: ".NAME.part.<ranks>.<rank>", digits only. */
static int is_part_file(const copy_run *r, const char *file) {
    size_t len = strlen(r->name);
    if (file[0] != '.' || strncmp(file + 1, r->name, len) || strncmp(file + 1 + len, ".part.", 6)) return 0;
    const char *p = file + len + 7;
    size_t a = strspn(p, "0123456789");
    if (!a || p[a] != '.') return 0;
    size_t b = strspn(p + a + 1, "0123456789");
    return b && !p[a + 1 + b];
}

/* Calls fn(path) on every part file of NAME (any rank count) until one fails. */
static int each_part(const copy_run *r, int (*fn)(const char *path, void *ctx, slex_error *err), void *ctx,
                     slex_error *err) {
    DIR *d = opendir(r->a->out);
    if (!d) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot list: %s", r->a->out, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (!is_part_file(r, e->d_name)) continue;
        char path[8400];
        snprintf(path, sizeof path, "%s/%s", r->a->out, e->d_name);
        rc = fn(path, ctx, err);
    }
    closedir(d);
    return rc;
}

static int remove_part(const char *path, void *ctx, slex_error *err) {
    (void)ctx;
    if (unlink(path) && errno != ENOENT)
        return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

/* Removes every part file of NAME. */
static int remove_parts(const copy_run *r, slex_error *err) { return each_part(r, remove_part, NULL, err); }

typedef struct {
    const copy_run *r;
    copy_records *rec;
    int repair;
} part_reading;

/* One part file's records into rec (lines "index<TAB>lag<TAB>samples").  A last line without
 * its newline is a record cut by a kill or a full disk: with `repair` the file is truncated to
 * the records before it (the next record would be appended to it), and that copy is made
 * again. */
static int read_part(const char *path, void *ctx, slex_error *err) {
    const part_reading *pr = ctx;
    FILE *f = fopen(path, "r");
    if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", path, strerror(errno));
    char line[256];
    long whole = 0; /* bytes of complete records */
    int cut = 0, rc = 0;
    for (int64_t ln = 1; fgets(line, sizeof line, f); ln++) {
        if (!strchr(line, '\n') && (cut = feof(f))) break; /* the file ends inside the record */
        long long k, lag, samples;
        char tail;
        if (sscanf(line, "%lld\t%lld\t%lld%c", &k, &lag, &samples, &tail) != 4 || tail != '\n' || k < 0 ||
            k >= pr->rec->n_lines || lag < 0 || samples < 0) {
            rc = slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: not a record of %s (remove the file to redo its copies)",
                              path, (long long)ln, pr->r->a->manifest);
            break;
        }
        pr->rec->lag[k] = (int32_t)lag;
        pr->rec->samples[k] = samples;
        whole = ftell(f);
    }
    fclose(f);
    if (pr->repair && cut && !rc && truncate(path, whole))
        rc = slex_fail_as(err, slex_errno_kind(errno), "%s: cannot cut its last, partial record: %s", path,
                          strerror(errno));
    return rc;
}

/* Reads every part file into rec (read_part). */
static int read_parts(const copy_run *r, copy_records *rec, int repair, slex_error *err) {
    part_reading pr = {r, rec, repair};
    return each_part(r, read_part, &pr, err);
}

/* The output audio path of a relpath; relpaths that would leave DIR are refused. */
static int copy_path(const copy_run *r, const slex_manifest_entry *e, const char *manifest, char *buf, size_t size,
                     slex_error *err) {
    const char *p = e->relpath;
    if (p[0] == '/' || !strncmp(p, "../", 3) || strstr(p, "/../") || !strcmp(p, ".."))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: relpath '%s' is absolute or leaves the root: its copy "
                            "would not be inside --out", manifest, (long long)e->line, p);
    if ((size_t)snprintf(buf, size, "%s/%s", r->a->out, p) >= size)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: path too long", manifest, (long long)e->line);
    return 0;
}

/* Writes a copy atomically (a failed write leaves no temporary). */
static int write_copy(const char *path, const float *samples, int64_t n, slex_error *err) {
    slex_atomic wav;
    if (slex_atomic_begin(&wav, path, err)) return -1;
    if (slex_audio_write_wav16(wav.tmp, samples, n, SLEX_PITCHCOPY_RATE, err)) {
        slex_atomic_abandon(&wav);
        return -1;
    }
    return slex_atomic_commit(&wav, err);
}

/* Makes this rank's copies that are not recorded yet.  Every rank reads the whole manifest. */
static int make_copies(copy_run *r, const copy_records *rec, int64_t *made, slex_error *err) {
    int64_t todo = 0;
    for (int64_t k = r->rank; k < rec->n_lines; k += r->size)
        if (rec->samples[k] < 0) todo++;
    int64_t todo_all = slex_mpi_sum_i64(todo);
    if (r->rank == 0 && todo_all < rec->n_lines)
        slex_info("%s: %lld of %lld copies made earlier; %lld to make", r->name, (long long)(rec->n_lines - todo_all),
                  (long long)rec->n_lines, (long long)todo_all);
    /* sox only where there is something to make (a merge of finished records needs none) */
    slex_pitchcopy *pc = todo ? slex_pitchcopy_open(r->o, err) : NULL;
    char part[4400];
    part_path(r, r->size, r->rank, part, sizeof part);
    FILE *pf = pc ? fopen(part, "a") : NULL;
    int ok = !todo || (pc && pf);
    if (pc && !pf) slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", part, strerror(errno));
    if (!slex_mpi_all_ok(ok)) {
        if (pf) fclose(pf);
        slex_pitchcopy_close(pc);
        return -1;
    }
    slex_progress *progress = slex_progress_start("utterances", todo_all, 0, 1);
    slex_manifest_reader *mr = todo ? slex_manifest_reader_open(r->a->manifest, err) : NULL;
    ok = !todo || mr;
    slex_manifest_entry e;
    for (int64_t k = 0; ok && todo; k++) {
        int got = slex_manifest_reader_next(mr, &e, err);
        if (got <= 0) {
            if (!got) ok = !slex_fail_as(err, SLEX_ERR_INPUT, "%s: changed while it was read", r->a->manifest);
            else ok = 0;
            break;
        }
        if (k % r->size != r->rank || rec->samples[k] >= 0) continue;
        char src[8400], dst[8400];
        snprintf(src, sizeof src, "%s/%s", slex_manifest_reader_root(mr), e.relpath);
        float *x = NULL, *c = NULL;
        int64_t n = 0;
        int lag = 0;
        slex_audio_info info;
        int cents = slex_pitchcopy_cents(r->o, k);
        if (copy_path(r, &e, r->a->manifest, dst, sizeof dst, err) || slex_mkdirs_for_file(dst, err) ||
            slex_audio_read(src, SLEX_PITCHCOPY_RATE, &x, &n, &info, err) ||
            slex_pitchcopy_utterance(pc, x, n, cents, &c, &lag, err) || write_copy(dst, c, n, err)) {
            slex_fail_wrap(err, "%s:%lld (%s)", r->a->manifest, (long long)e.line, e.relpath);
            ok = 0;
        } else if (fprintf(pf, "%lld\t%d\t%lld\n", (long long)k, lag, (long long)n) < 0 || fflush(pf)) {
            ok = !slex_fail_as(err, SLEX_ERR_IO, "%s: write error", part);
        } else {
            (*made)++;
            todo--;
            slex_progress_add(progress, 1, (double)n / SLEX_PITCHCOPY_RATE);
        }
        free(x);
        free(c);
    }
    slex_manifest_reader_close(mr);
    if (pf && fclose(pf) && ok) ok = !slex_fail_as(err, SLEX_ERR_IO, "%s: write error", part);
    slex_pitchcopy_close(pc);
    slex_progress_finish(progress);
    if (!slex_mpi_all_ok(ok)) {
        if (ok) slex_fail_as(err, SLEX_ERR_IO, "another rank failed");
        return -1;
    }
    return 0;
}

/* Rank 0: the manifest, side file and NAME.pitch from the records, in manifest order. */
static int write_outputs(const copy_run *r, const copy_records *rec, slex_error *err) {
    char tsv[4400], pitch[4400];
    out_path(r, ".tsv", tsv, sizeof tsv);
    out_path(r, ".pitch", pitch, sizeof pitch);
    slex_manifest_reader *mr = slex_manifest_reader_open(r->a->manifest, err);
    if (!mr) return -1;
    slex_manifest_writer *w = slex_manifest_writer_open(tsv, r->out_abs, slex_manifest_reader_columns(mr), err);
    slex_atomic pa;
    int have_pa = 0, rc = -1;
    if (!w || slex_atomic_fopen(&pa, pitch, err)) goto done;
    have_pa = 1;
    fputs("relpath\tcents\tlag_samples\n", pa.f);
    slex_manifest_entry e;
    for (int64_t k = 0; k < rec->n_lines; k++) {
        if (slex_manifest_reader_next(mr, &e, err) != 1) {
            if (!err->msg[0]) slex_fail_as(err, SLEX_ERR_INPUT, "%s: changed while it was read", r->a->manifest);
            goto done;
        }
        if (e.malformed || rec->samples[k] < 0) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: %s", r->a->manifest, (long long)e.line,
                         e.malformed ? e.malformed : "no copy was recorded: the manifest changed during the run");
            goto done;
        }
        fprintf(pa.f, "%s\t%d\t%d\n", e.relpath, slex_pitchcopy_cents(r->o, k), rec->lag[k]);
        if (slex_manifest_writer_add(w, e.relpath, rec->samples[k], e.extra, err)) goto done;
    }
    if (slex_atomic_commit(&pa, err)) {
        have_pa = 0;
        goto done;
    }
    have_pa = 0;
    char *now = make_params(r->a, r->o, err);
    int changed = now && strcmp(now, r->params);
    free(now);
    if (!now) goto done;
    if (changed) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: changed during the run: run again", r->a->manifest);
        goto done;
    }
    if (slex_write_file_atomic(r->params_path, r->params, strlen(r->params), err)) goto done;
    rc = slex_manifest_writer_commit(w, err); /* last: a manifest present means a complete copy */
    w = NULL;
done:
    if (have_pa) slex_atomic_abandon(&pa);
    if (w) slex_manifest_writer_abort(w);
    slex_manifest_reader_close(mr);
    return rc;
}

/* Counts the manifest's lines and checks each (malformed lines are errors: nothing is dropped). */
static int count_lines(const char *manifest, int64_t *n, slex_error *err) {
    slex_manifest_reader *mr = slex_manifest_reader_open(manifest, err);
    if (!mr) return -1;
    slex_manifest_entry e;
    int got;
    *n = 0;
    while ((got = slex_manifest_reader_next(mr, &e, err)) == 1) {
        if (e.malformed) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: %s", manifest, (long long)e.line, e.malformed);
            got = -1;
            break;
        }
        (*n)++;
    }
    slex_manifest_reader_close(mr);
    return got < 0 ? -1 : 0;
}

/* NAME and the parameters (every rank). */
static int name_and_params(copy_run *r, slex_error *err) {
    const char *slash = strrchr(r->a->manifest, '/');
    const char *base = slash ? slash + 1 : r->a->manifest;
    size_t len = strlen(base);
    if (len > 4 && !strcmp(base + len - 4, ".tsv")) len -= 4;
    if (len == 0 || len >= sizeof r->name)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: not a manifest name (NAME.tsv)", r->a->manifest);
    snprintf(r->name, sizeof r->name, "%.*s", (int)len, base);
    if (!(r->params = make_params(r->a, r->o, err))) return -1;
    out_path(r, ".params.json", r->params_path, sizeof r->params_path);
    return 0;
}

/* Checks, paths and the resume state (rank 0).  Returns 1 when the finished copy is there
 * already, 0 to go on, -1 on failure. */
static int prepare(copy_run *r, int64_t *n_lines, slex_error *err) {
    char tsv[4400], parts_json[4400];
    out_path(r, ".tsv", tsv, sizeof tsv);
    snprintf(parts_json, sizeof parts_json, "%s/.%s.part.json", r->a->out, r->name);
    /* the corpus' root (a copy there would replace the originals) and the manifest with its side
     * file (NAME.tsv in DIR would be the input itself) */
    slex_manifest *head = slex_manifest_read_range(r->a->manifest, 0, 0, err);
    if (!head) return -1;
    char columns[4200];
    int apart = !slex_manifest_columns_path(r->a->manifest, columns, sizeof columns, err);
    const slex_path_role inputs[] = {{"the corpus root (line 1 of --manifest)", head->root},
                                     {"--manifest", r->a->manifest},
                                     {"the side file of --manifest", columns}};
    apart = apart && !slex_paths_check_apart(&(slex_path_role){"--out", r->a->out}, 1, inputs, 3, err);
    slex_manifest_free(head);
    if (!apart || count_lines(r->a->manifest, n_lines, err)) return -1;
    /* two lines of one relpath would be two copies in one file: the last writer would win */
    int64_t n_dup = 0;
    char example[1200];
    if (slex_manifest_find_duplicates(r->a->manifest, &n_dup, example, sizeof example, err)) return -1;
    if (n_dup)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: %lld relpaths on more than one line, e.g. %s", r->a->manifest,
                            (long long)n_dup, example);
    if (slex_mkdirs(r->a->out, err)) return -1;
    if (*n_lines > 0x7fffffff) /* MPI counts are int */
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: more than 2^31 - 1 utterances: split it", r->a->manifest);
    if (!realpath(r->a->out, r->out_abs))
        return slex_fail_as(err, slex_errno_kind(errno), "%s: %s", r->a->out, strerror(errno));
    if (slex_path_exists(tsv)) {
        if (same_params(r->params_path, r->params)) return 1;
        if (!r->a->force)
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s: a copy made with other parameters (%s); --force replaces it",
                                tsv, r->params_path);
        if (unlink(tsv)) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot remove: %s", tsv, strerror(errno));
    }
    /* part files belong to the parameters recorded beside them: other ones start afresh (not
     * --force: a killed --force run resumes like any other) */
    if (!same_params(parts_json, r->params)) {
        if (remove_parts(r, err)) return -1;
        if (slex_write_file_atomic(parts_json, r->params, strlen(r->params), err)) return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    slex_log_init("pitchcopy", mpi.rank, mpi.size);
    slex_log_level_from_env();
    pitchcopy_args a;
    memset(&a, 0, sizeof a);
    slex_options_defaults(&stage_table, &a);
    slex_pitchcopy_options o;
    slex_pitchcopy_options_default(&o);
    const slex_option_group groups[] = {{&stage_table, &a}, {&slex_pitchcopy_option_table, &o}};
    slex_cli cli = {.program = "slex-pitchcopy",
                    .synopsis = "--manifest IN.tsv --out DIR [--cents-min C] [--cents-max C] [--seed S] [--force]",
                    .about = "A pitch-shifted copy of a corpus (sox pitch, cents drawn per utterance), re-aligned to "
                             "the original by its energy envelope, so that the original's labels serve it: train on "
                             "DIR/NAME.tsv with the original's labels. Resumes when re-run; same arguments, same bytes, "
                             "for any rank count (docs/synth.md).",
                    .groups = groups,
                    .n_groups = 2};
    slex_error err = {{0}};
    copy_run r = {.a = &a, .o = &o, .rank = mpi.rank, .size = mpi.size};
    copy_records rec = {0};
    int status = 1;
    slex_parse_result pr = slex_cli_parse(&cli, argc, argv, &err);
    if (pr == SLEX_PARSE_HELP) {
        if (mpi.rank == 0) slex_cli_help(&cli, stdout);
        status = 0;
        goto out;
    }
    if (pr == SLEX_PARSE_ERROR) {
        if (mpi.rank == 0) slex_error_log("%s", err.msg);
        status = slex_cli_exit_code(&cli, &err);
        goto out;
    }
    double wall0 = MPI_Wtime();
    int64_t n_lines = 0, made = 0;
    int state = name_and_params(&r, &err);
    if (!slex_mpi_all_ok(state == 0)) goto fail;
    if (mpi.rank == 0) state = prepare(&r, &n_lines, &err);
    int64_t shared[2] = {state, n_lines};
    MPI_Bcast(shared, 2, MPI_INT64_T, 0, MPI_COMM_WORLD);
    if (shared[0] < 0) goto fail;
    if (shared[0] == 1) {
        if (mpi.rank == 0) slex_info("%s/%s.tsv: done already (same parameters); nothing to do", a.out, r.name);
        status = 0;
        goto out;
    }
    /* the records so far, read by rank 0 and shared, so that every rank sees the same */
    rec.n_lines = n_lines = shared[1];
    rec.lag = malloc((size_t)(n_lines ? n_lines : 1) * sizeof *rec.lag);
    rec.samples = malloc((size_t)(n_lines ? n_lines : 1) * sizeof *rec.samples);
    int ok = rec.lag && rec.samples;
    if (!ok) slex_fail_as(&err, SLEX_ERR_RESOURCE, "out of memory (%lld utterances)", (long long)n_lines);
    if (ok) {
        for (int64_t k = 0; k < n_lines; k++) rec.samples[k] = -1, rec.lag[k] = 0;
        if (mpi.rank == 0 && read_parts(&r, &rec, 1, &err)) ok = 0;
    }
    if (!slex_mpi_all_ok(ok)) goto fail;
    MPI_Bcast(rec.lag, (int)n_lines, MPI_INT32_T, 0, MPI_COMM_WORLD);
    MPI_Bcast(rec.samples, (int)n_lines, MPI_INT64_T, 0, MPI_COMM_WORLD);
    if (make_copies(&r, &rec, &made, &err)) goto fail;
    if (mpi.rank == 0) {
        for (int64_t k = 0; k < n_lines; k++) rec.samples[k] = -1;
        ok = !read_parts(&r, &rec, 0, &err) && !write_outputs(&r, &rec, &err);
        if (ok) {
            char parts_json[4400];
            snprintf(parts_json, sizeof parts_json, "%s/.%s.part.json", a.out, r.name);
            ok = !remove_parts(&r, &err);
            if (ok) unlink(parts_json);
        }
    }
    if (!slex_mpi_all_ok(ok)) goto fail;
    made = slex_mpi_sum_i64(made);
    if (mpi.rank == 0)
        slex_info("%s: %lld copies (%lld made now) in %s/%s.tsv, %.1f s wall", r.name, (long long)n_lines,
                  (long long)made, a.out, r.name, MPI_Wtime() - wall0);
    status = 0;
    goto out;
fail:
    if (err.msg[0]) slex_error_log("%s", err.msg);
out:
    free(rec.lag);
    free(rec.samples);
    free(r.params);
    slex_cli_free(&cli);
    status = slex_mpi_exit_code(status, &err);
    slex_mpi_stop();
    return status;
}
