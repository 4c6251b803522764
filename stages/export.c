/* slex-export: a feature store -> fairseq's layout, {split}_{shard}_{nshard}.npy + .len per shard,
 * for users who continue with fairseq's learn_kmeans.py / dump_km_label.py. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/lock.h"
#include "core/log.h"
#include "core/mpi_util.h"
#include "store/npy.h"
#include "core/options.h"
#include "core/paths.h"
#include "store/store.h"

typedef struct export_options {
    char *store; /* feature store (required) */
    char *out;   /* output directory (required) */
    char *split; /* file name prefix, fairseq's {split} (default "train") */
    int force;   /* redo an export made from other features */
} export_options;

#define T export_options
static const slex_option export_rows[] = {
    {SLEX_OPT_STRING_FIELD(T, store), .name = "store", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "feature store to export"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "output directory"},
    {SLEX_OPT_STRING_FIELD(T, split), .name = "split", .flags = SLEX_OPTF_PATH, .def_text = "train",
     .help = "fairseq split name used in the file names"},
    {SLEX_OPT_FLAG_FIELD(T, force), .name = "force",
     .help = "redo a finished export; replace one made from other features"},
};
#undef T
static const slex_option_table export_table = SLEX_OPTION_TABLE(export_rows);

static void export_file(const export_options *o, int shard, int nshard, const char *ext, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s_%d_%d.%s", o->out, o->split, shard, nshard, ext);
}

/* Streams one shard into out/{split}_{shard}_{nshard}.npy and .len (temporary names, renamed
 * only once the shard's CRC-32 matched; the export counts as finished only when
 * {split}.export.json is written after every shard).  *rows = the rows written. */
static int export_shard(const slex_store *s, int shard, const export_options *o, int64_t *rows, slex_error *err) {
    slex_store_shard *r = slex_store_shard_open(s, shard, err);
    if (!r) return -1;
    int nshard = slex_store_nshard(s), dim = slex_store_dim(s);
    char npy[4200], len[4200];
    export_file(o, shard, nshard, "npy", npy, sizeof npy);
    export_file(o, shard, nshard, "len", len, sizeof len);
    slex_atomic fn = {.f = NULL}, fl = {.f = NULL};
    int rc = slex_atomic_fopen(&fn, npy, err) || slex_atomic_fopen(&fl, len, err);
    int64_t frames = slex_store_shard_num_frames(r);
    if (!rc) rc = slex_npy_write_header_f32(fn.f, frames, dim, fn.tmp, err);
    const int64_t block = 8192;
    float *buf = rc ? NULL : malloc((size_t)block * (size_t)dim * sizeof *buf);
    if (!rc && !buf) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    for (int64_t at = 0; !rc && at < frames; at += block) {
        int64_t n = frames - at < block ? frames - at : block;
        rc = slex_store_shard_read_rows(r, at, n, buf, err);
        if (!rc && fwrite(buf, sizeof *buf * (size_t)dim, (size_t)n, fn.f) != (size_t)n)
            rc = slex_fail_as(err, SLEX_ERR_IO, "%s: write failed (disk full?)", fn.tmp);
        if (!rc) *rows += n;
    }
    if (!rc) rc = slex_store_shard_verify(r, err);
    const int64_t *lengths = slex_store_shard_lengths(r);
    for (int64_t i = 0; !rc && i < slex_store_shard_num_utts(r); i++) fprintf(fl.f, "%lld\n", (long long)lengths[i]);
    free(buf);
    if (!rc) rc = slex_atomic_commit(&fn, err) || slex_atomic_commit(&fl, err);
    slex_atomic_abandon(&fn);
    slex_atomic_abandon(&fl);
    slex_store_shard_close(r);
    return rc;
}

/* What the output directory holds for this split: 0 nothing finished (or --force), 1 a finished
 * export of the same features (nothing to do), -1 an export of other features (an error). */
static int previous_export(const slex_store *s, const export_options *o, const char *marker, slex_error *err) {
    if (o->force || !slex_path_exists(marker)) return 0;
    char *text = slex_read_text_file(marker, NULL, err);
    if (!text) return -1;
    cJSON *doc = cJSON_Parse(text);
    free(text);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "content_id");
    const cJSON *nshard = cJSON_GetObjectItemCaseSensitive(doc, "nshard");
    int same = cJSON_IsString(id) && !strcmp(id->valuestring, slex_store_content_id(s)) && cJSON_IsNumber(nshard) &&
               nshard->valueint == slex_store_nshard(s);
    char old_id[32];
    snprintf(old_id, sizeof old_id, "%s", cJSON_IsString(id) ? id->valuestring : "none");
    cJSON_Delete(doc);
    if (!same)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: an export of other features (content id %s; %s now holds %s): use --force to redo it, "
                              "or choose another --out",
                         marker, old_id, o->store, slex_store_content_id(s));
    for (int shard = 0; shard < slex_store_nshard(s); shard++) {
        char npy[4200], len[4200];
        export_file(o, shard, slex_store_nshard(s), "npy", npy, sizeof npy);
        export_file(o, shard, slex_store_nshard(s), "len", len, sizeof len);
        if (!slex_path_exists(npy) || !slex_path_exists(len)) return 0;
    }
    return 1;
}

static int write_marker(const slex_store *s, const export_options *o, const char *marker, int64_t rows,
                        slex_error *err) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "store", o->store);
    cJSON_AddStringToObject(doc, "content_id", slex_store_content_id(s));
    cJSON_AddStringToObject(doc, "split", o->split);
    cJSON_AddNumberToObject(doc, "nshard", slex_store_nshard(s));
    cJSON_AddNumberToObject(doc, "frames", (double)rows);
    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    int rc = text ? slex_write_file_atomic(marker, text, strlen(text), err)
                  : slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", marker);
    free(text);
    return rc;
}

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    slex_log_init("export", mpi.rank, mpi.size);
    export_options o;
    slex_options_defaults(&export_table, &o);
    const slex_option_group groups[] = {{&export_table, &o}};
    slex_cli cli = {.program = "slex-export",
                    .synopsis = "--store STORE --out DIR [--split NAME]",
                    .about = "Writes fairseq's feature layout {split}_{shard}_{nshard}.npy (float32, frames x dim) and\n"
                             ".len (frames per utterance) for every shard of a feature store; ranks share the shards.\n"
                             "{split}.export.json (the store's content id) marks a finished export.",
                    .groups = groups,
                    .n_groups = 1};
    slex_error err = {{0}};
    int exit_code = 0;
    slex_parse_result parsed = slex_cli_parse(&cli, argc, argv, &err);
    slex_store *s = NULL;
    if (parsed == SLEX_PARSE_HELP) {
        if (mpi.rank == 0) slex_cli_help(&cli, stdout);
    } else if (parsed == SLEX_PARSE_ERROR) {
        if (mpi.rank == 0) slex_error_log("%s", err.msg);
        exit_code = slex_cli_exit_code(&cli, &err);
    } else if (slex_paths_check_apart(&(slex_path_role){"--out", o.out}, 1, &(slex_path_role){"--store", o.store}, 1,
                                      &err) ||
               !(s = slex_store_open(o.store, &err)) || slex_mkdirs(o.out, &err)) {
        slex_error_log("%s", err.msg);
        exit_code = 1;
    } else if (slex_store_get_dtype(s) != SLEX_STORE_F32) {
        slex_fail_as(&err, SLEX_ERR_INPUT, "%s: is a label store; fairseq's .km files come from slex-label --km", o.store);
        slex_error_log("%s", err.msg);
        exit_code = 1;
    } else {
        /* {split}.export.json marks a finished export of the content id it names: it goes before
         * any file changes, and comes back last. */
        char marker[4200];
        snprintf(marker, sizeof marker, "%s/%s.export.json", o.out, o.split);
        int state = 0;
        if (mpi.rank == 0) {
            state = previous_export(s, &o, marker, &err);
            if (state < 0) slex_error_log("%s", err.msg);
            else if (state > 0)
                slex_info("%s: %s is already exported from content id %s: nothing to do (--force redoes it)", o.out,
                          o.split, slex_store_content_id(s));
            else unlink(marker);
        }
        MPI_Bcast(&state, 1, MPI_INT, 0, MPI_COMM_WORLD);
        int ok = state >= 0;
        int64_t rows = 0;
        for (int shard = mpi.rank; state == 0 && ok && shard < slex_store_nshard(s); shard += mpi.size)
            if (export_shard(s, shard, &o, &rows, &err)) {
                slex_error_log("%s", err.msg);
                ok = 0;
            }
        ok = slex_mpi_all_ok(ok);
        rows = slex_mpi_sum_i64(rows);
        /* A killed export's temporaries can be whole shards: gone once an export is done. */
        if (state == 0 && ok && mpi.rank == 0 &&
            (write_marker(s, &o, marker, rows, &err) || slex_sweep_dead_temporaries(o.out, &err) < 0)) {
            slex_error_log("%s", err.msg);
            ok = 0;
        }
        if (state == 0 && ok && mpi.rank == 0)
            slex_info("%s: %d shard(s), %lld frames of dim %d exported as %s_*_%d.npy/.len", o.out,
                      slex_store_nshard(s), (long long)rows, slex_store_dim(s), o.split, slex_store_nshard(s));
        exit_code = ok ? 0 : 1;
    }
    slex_store_close(s);
    slex_cli_free(&cli);
    exit_code = slex_mpi_exit_code(exit_code, &err);
    slex_mpi_stop();
    return exit_code;
}
