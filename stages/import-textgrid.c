/* slex-import-textgrid: Praat TextGrids (e.g. from the Montreal Forced Aligner) + a manifest ->
 * a slex alignment file (docs/alignments.md).
 *
 *   slex-import-textgrid --manifest M.tsv --textgrids DIR --out FILE.align [--tier phones]
 *
 * The TextGrid of manifest entry `relpath` is DIR/<relpath without its extension>.TextGrid (MFA
 * mirrors the corpus layout).  Every entry needs one (else an error naming the manifest line,
 * or a warning and a skipped utterance with --skip-missing), and every TextGrid under DIR must
 * belong to an entry ("unknown utterance", naming the file).  Errors in a TextGrid name its file
 * and line.  Output is in manifest order, written under a temporary name and renamed.  The work
 * is cheap (thousands of files per second), so rank 0 does it all under mpirun. */
#include <errno.h>
#include <float.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpus/align.h"
#include "core/fileio.h"
#include "core/log.h"
#include "corpus/manifest.h"
#include "core/mpi_util.h"
#include "core/options.h"
#include "core/paths.h"
#include "corpus/textgrid.h"

typedef struct {
    const char *manifest;
    const char *textgrids;
    const char *out;
    const char *vocab;
    slex_textgrid_options tg;
    double tolerance_ms;
    int skip_missing;
} import_args;

#define T import_args
static const slex_option import_rows[] = {
    {SLEX_OPT_STRING_FIELD(T, manifest), .name = "manifest", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "fairseq manifest of the audio (.tsv)"},
    {SLEX_OPT_STRING_FIELD(T, textgrids), .name = "textgrids", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "directory of TextGrids: <relpath without extension>.TextGrid"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "alignment file to write"},
    {SLEX_OPT_DOUBLE_FIELD(T, tolerance_ms), .name = "tolerance-ms", .def = 10, .min = 0, .max = DBL_MAX,
     .help = "allowed difference of the tier end and the audio length"},
    {SLEX_OPT_STRING_FIELD(T, vocab), .name = "vocab", .flags = SLEX_OPTF_PATH,
     .help = "also write the label vocabulary with counts to this file"},
    {SLEX_OPT_FLAG_FIELD(T, skip_missing), .name = "skip-missing",
     .help = "skip (with a warning) entries without a TextGrid"},
};
#undef T
static const slex_option_table import_table = SLEX_OPTION_TABLE(import_rows);

/* The TextGrid path of a relpath: extension replaced by .TextGrid. */
static int textgrid_path(const char *dir, const char *relpath, char *buf, size_t size) {
    const char *slash = strrchr(relpath, '/');
    const char *dot = strrchr(relpath, '.');
    size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - relpath) : strlen(relpath);
    int w = snprintf(buf, size, "%s/%.*s.TextGrid", dir, (int)stem, relpath);
    return w < 0 || (size_t)w >= size ? -1 : 0;
}

/* ---- TextGrids under the directory that no manifest entry claims ---- */

static char **expected_paths; /* sorted paths of the entries' TextGrids (nftw has no context pointer) */
static int64_t n_expected;
static char unknown_path[4096];

static int compare_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    size_t len = strlen(path);
    if (type != FTW_F || len < 9 || strcmp(path + len - 9, ".TextGrid")) return 0;
    const char *key = path;
    if (!bsearch(&key, expected_paths, (size_t)n_expected, sizeof *expected_paths, compare_str)) {
        snprintf(unknown_path, sizeof unknown_path, "%s", path);
        return 1;
    }
    return 0;
}

static int import(const import_args *a, slex_error *err) {
    slex_manifest *m = slex_manifest_read(a->manifest, err);
    if (!m) return -1;
    int rc = -1;
    FILE *f = NULL;
    slex_atomic out = {.f = NULL};
    slex_label_vocab *vocab = slex_label_vocab_create();
    expected_paths = calloc((size_t)(m->n ? m->n : 1), sizeof *expected_paths);
    n_expected = 0;
    if (!vocab || !expected_paths) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < m->n; i++) {
        const slex_manifest_entry *e = &m->entries[i];
        char path[4096];
        if (e->malformed) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: %s", m->path, (long long)e->line, e->malformed);
            goto done;
        }
        if (textgrid_path(a->textgrids, e->relpath, path, sizeof path) || !(expected_paths[n_expected++] = strdup(path))) {
            slex_fail_as(err, SLEX_ERR_RESOURCE, "%s:%lld: TextGrid path too long or out of memory", m->path,
                         (long long)e->line);
            goto done;
        }
    }
    qsort(expected_paths, (size_t)n_expected, sizeof *expected_paths, compare_str);
    int walk = nftw(a->textgrids, visit, 32, FTW_PHYS);
    if (walk == 1) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: unknown utterance: no line of %s has this TextGrid's audio",
                     unknown_path, m->path);
        goto done;
    }
    if (walk) {
        slex_fail_as(err, slex_errno_kind(errno), "%s: cannot read the directory: %s", a->textgrids, strerror(errno));
        goto done;
    }
    if (slex_atomic_fopen(&out, a->out, err)) goto done;
    f = out.f;
    slex_align_write_header(f);
    int64_t done_utts = 0, skipped = 0, phones = 0;
    for (int64_t i = 0; i < m->n; i++) {
        const slex_manifest_entry *e = &m->entries[i];
        char path[4096];
        textgrid_path(a->textgrids, e->relpath, path, sizeof path);
        FILE *probe = fopen(path, "rb");
        if (!probe) {
            if (a->skip_missing && errno == ENOENT) {
                slex_warn("%s:%lld: no TextGrid %s: utterance skipped", m->path, (long long)e->line, path);
                skipped++;
                continue;
            }
            slex_fail_as(err, slex_errno_kind(errno), "%s:%lld: no TextGrid for '%s': %s: %s", m->path,
                         (long long)e->line, e->relpath, path, strerror(errno));
            goto done;
        }
        fclose(probe);
        slex_textgrid *tg = slex_textgrid_read(path, err);
        slex_segment *segs = NULL;
        char *labels = NULL;
        int64_t n = 0;
        int bad = !tg || slex_textgrid_to_segments(tg, &a->tg, e->num_samples, &segs, &labels, &n, err) ||
                  slex_align_write_utt(f, e->relpath, segs, n, err);
        for (int64_t s = 0; !bad && s < n; s++)
            if (slex_label_vocab_count(vocab, segs[s].label, strlen(segs[s].label)) < 0)
                bad = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        slex_textgrid_free(tg);
        free(segs);
        free(labels);
        if (bad) {
            slex_fail_wrap(err, "for %s:%lld", m->path, (long long)e->line);
            goto done;
        }
        done_utts++;
        phones += n;
    }
    if (slex_atomic_commit(&out, err)) goto done;
    if (a->vocab && (slex_label_vocab_sort(vocab) || slex_label_vocab_write(vocab, a->vocab, err))) goto done;
    slex_info("%s: %lld utterances, %lld phones, %d labels%s", a->out, (long long)done_utts, (long long)phones,
              slex_label_vocab_size(vocab), skipped ? " (some skipped: see the warnings)" : "");
    rc = 0;
done:
    slex_atomic_abandon(&out);
    for (int64_t i = 0; i < n_expected; i++) free(expected_paths[i]);
    free(expected_paths);
    expected_paths = NULL;
    slex_label_vocab_free(vocab);
    slex_manifest_free(m);
    return rc;
}

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    slex_log_init("import-textgrid", mpi.rank, mpi.size);
    slex_log_level_from_env();
    import_args a;
    memset(&a, 0, sizeof a);
    slex_options_defaults(&import_table, &a);
    slex_textgrid_options_default(&a.tg);
    const slex_option_group groups[] = {{&import_table, &a}, {&slex_textgrid_option_table, &a.tg}};
    slex_cli cli = {.program = "slex-import-textgrid",
                    .synopsis = "--manifest M.tsv --textgrids DIR --out FILE.align",
                    .about = "Converts Praat TextGrids (Montreal Forced Aligner output) into a slex alignment file "
                             "(docs/alignments.md), checking them against the manifest's audio lengths.",
                    .groups = groups,
                    .n_groups = 2};
    slex_error err = {{0}};
    int status = 1;
    slex_parse_result pr = slex_cli_parse(&cli, argc, argv, &err);
    if (pr == SLEX_PARSE_HELP) {
        if (mpi.rank == 0) slex_cli_help(&cli, stdout);
        status = 0;
    } else if (pr == SLEX_PARSE_ERROR) {
        status = slex_cli_exit_code(&cli, &err);
    } else if (slex_paths_check_apart((slex_path_role[]){{"--out", a.out}, {"--vocab", a.vocab}}, 2,
                                      (slex_path_role[]){{"--manifest", a.manifest}, {"--textgrids", a.textgrids}}, 2,
                                      &err)) {
        status = 1;
    } else {
        a.tg.tolerance_s = a.tolerance_ms / 1000.0;
        /* nftw's paths must compare equal to the ones built from the manifest: no trailing '/'. */
        size_t len = strlen(a.textgrids);
        while (len > 1 && a.textgrids[len - 1] == '/') ((char *)a.textgrids)[--len] = '\0';
        status = mpi.rank == 0 ? (import(&a, &err) ? 1 : 0) : 0;
    }
    if (pr != SLEX_PARSE_ERROR && !slex_mpi_all_ok(status == 0)) status = 1;
    if (status && err.msg[0] && (pr != SLEX_PARSE_ERROR || mpi.rank == 0)) slex_error_log("%s", err.msg);
    slex_cli_free(&cli);
    status = slex_mpi_exit_code(status, &err);
    slex_mpi_stop();
    return status;
}
