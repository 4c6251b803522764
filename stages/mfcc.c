/* slex-mfcc: fairseq manifest -> store of Kaldi MFCC + deltas (T, 39) at 100 Hz. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "run/featstage.h"
#include "core/log.h"
#include "feat/mfcc.h"
#include "core/mpi_util.h"
#include "core/options.h"

static int64_t mfcc_frames(void *ctx, int64_t n) { return slex_mfcc_num_frames(ctx, n); }

static int mfcc_compute(void *ctx, const float *wave, int64_t n, float *out, int64_t frames, slex_error *err) {
    (void)frames;
    return slex_mfcc_compute(ctx, wave, n, out, err);
}

/* Everything that determines the rows, as canonical JSON (the store fingerprints it). */
static char *mfcc_params_json(const slex_mfcc_options *o) {
    cJSON *p = cJSON_CreateObject();
    char *text = NULL;
    if (p && cJSON_AddStringToObject(p, "features", "kaldi-mfcc+deltas") &&
        !slex_options_write_json(&slex_mfcc_option_table, o, p))
        text = cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    return text;
}

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    slex_log_init("mfcc", mpi.rank, mpi.size);
    slex_log_level_from_env();

    slex_featstage_options fo;
    slex_featstage_options_default(&fo);
    slex_mfcc_options mo;
    slex_mfcc_options_default(&mo);
    const slex_option_group groups[] = {{&slex_featstage_option_table, &fo}, {&slex_mfcc_option_table, &mo}};
    slex_cli cli = {
        .program = "slex-mfcc",
        .synopsis = "--manifest M.tsv --out STORE [--nshard N] [--shard I] [--force] [options]",
        .about = "Kaldi MFCC + deltas + delta-deltas exactly as fairseq's dump_mfcc_feature.py (torchaudio 0.13.1),\n"
                 "written to a sharded HDF5 store.\n" SLEX_FEATSTAGE_ABOUT,
        .groups = groups,
        .n_groups = (int)(sizeof groups / sizeof groups[0]),
    };
    slex_error err = {{0}};
    int exit_code = 0;
    slex_parse_result parsed = slex_cli_parse(&cli, argc, argv, &err);
    slex_mfcc *mfcc = NULL;
    char *params = NULL;
    if (parsed == SLEX_PARSE_HELP) {
        if (mpi.rank == 0) slex_cli_help(&cli, stdout);
    } else if (parsed == SLEX_PARSE_ERROR) {
        if (mpi.rank == 0) slex_error_log("%s", err.msg);
        exit_code = slex_cli_exit_code(&cli, &err);
    } else if (!(mfcc = slex_mfcc_create(&mo, &err)) ||
               (!(params = mfcc_params_json(&mo)) && slex_fail_as(&err, SLEX_ERR_RESOURCE, "out of memory"))) {
        slex_error_log("%s", err.msg);
        exit_code = err.kind == SLEX_ERR_INPUT ? SLEX_EXIT_USAGE : slex_exit_code(&err); /* bad options: 2 */
    } else {
        slex_featstage stage = {
            .meta = {SLEX_STORE_F32, slex_mfcc_dim(mfcc), 1000.0 / mo.frame_shift_ms, "slex-mfcc", params},
            .num_frames = mfcc_frames,
            .compute = mfcc_compute,
            .ctx = mfcc,
            .min_samples = (int64_t)(mo.sample_rate * mo.frame_length_ms / 1000.0),
        };
        fo.sample_rate = (int)mo.sample_rate;
        exit_code = (int)slex_featstage_run(&stage, &fo, &mpi, &err);
        if (exit_code && err.msg[0]) slex_error_log("%s", err.msg);
    }
    free(params);
    slex_mfcc_free(mfcc);
    slex_cli_free(&cli);
    exit_code = slex_mpi_exit_code(exit_code, &err);
    slex_mpi_stop();
    return exit_code;
}
