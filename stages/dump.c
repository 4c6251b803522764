/* slex-dump: fairseq manifest -> store of one HuBERT layer's features (T, hidden_size), as
 * fairseq's dump_hubert_feature.py, optionally with a PEFT LoRA adapter merged into the model. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "run/featstage.h"
#include "core/fileio.h"
#include "core/log.h"
#include "model/lora.h"
#include "model/hubert.h"
#include "core/mpi_util.h"
#include "core/options.h"
#include "core/paths.h"

/* The stage's own options (the feature stage's and the model's load options have their tables). */
typedef struct dump_options {
    char *model;   /* Hugging Face HubertModel directory (required) */
    char *adapter; /* PEFT LoRA adapter directory (optional) */
    int layer;     /* fairseq's output_layer (required) */
} dump_options;

#define T dump_options
static const slex_option dump_rows[] = {
    {SLEX_OPT_STRING_FIELD(T, model), .name = "model", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "Hugging Face HubertModel directory (config.json, model.safetensors)"},
    {SLEX_OPT_INT_FIELD(T, layer), .name = "layer", .flags = SLEX_OPTF_REQUIRED, .min = SLEX_HUBERT_LAST_HIDDEN_STATE,
     .max = INT_MAX,
     .help = "transformer layer to dump, as fairseq's output_layer (1..L; 0 = transformer input; -1 = last hidden "
             "state)"},
    {SLEX_OPT_STRING_FIELD(T, adapter), .name = "adapter", .flags = SLEX_OPTF_PATH,
     .help = "PEFT LoRA adapter directory, merged into the model at load"},
};
#undef T
static const slex_option_table dump_table = SLEX_OPTION_TABLE(dump_rows);

typedef struct dump_ctx {
    slex_hubert *model;
    int layer;
} dump_ctx;

static int64_t dump_frames(void *ctx, int64_t n) { return slex_hubert_num_frames(((dump_ctx *)ctx)->model, n); }

static int dump_compute(void *ctx, const float *wave, int64_t n, float *out, int64_t frames, slex_error *err) {
    dump_ctx *d = ctx;
    int64_t T = 0;
    if (slex_hubert_forward(d->model, wave, n, d->layer, out, &T, err)) return -1;
    if (T != frames)
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "model returned %lld frames, expected %lld", (long long)T,
                            (long long)frames);
    return 0;
}

/* {"crc32": "...", "bytes": N} of a file, or null when it does not exist (optional files). */
static int add_file_identity(cJSON *obj, const char *key, const char *dir, const char *name, int optional,
                             slex_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (optional && !slex_path_exists(path)) {
        cJSON_AddNullToObject(obj, key);
        return 0;
    }
    uint32_t crc = 0;
    int64_t bytes = 0;
    if (slex_file_crc32(path, &crc, &bytes, err)) return -1;
    char hex[9];
    snprintf(hex, sizeof hex, "%08x", crc);
    cJSON *id = cJSON_AddObjectToObject(obj, key);
    cJSON_AddStringToObject(id, "crc32", hex);
    cJSON_AddNumberToObject(id, "bytes", (double)bytes);
    return 0;
}

/* Everything that determines the rows, as canonical JSON (the store fingerprints it): the
 * model's and adapter's files by content, the layer, and the load options as resolved. */
static char *dump_params_json(const char *model_dir, const char *adapter_dir, int layer, const slex_hubert *model,
                              slex_error *err) {
    cJSON *p = cJSON_CreateObject();
    if (!p) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), NULL;
    const slex_hubert_load_options *lo = slex_hubert_get_options(model);
    cJSON_AddStringToObject(p, "features", "hubert-layer");
    cJSON_AddNumberToObject(p, "layer", layer);
    cJSON *m = cJSON_AddObjectToObject(p, "model");
    int rc = add_file_identity(m, "config.json", model_dir, "config.json", 0, err);
    if (!rc) rc = add_file_identity(m, "model.safetensors", model_dir, "model.safetensors", 0, err);
    if (!rc) rc = add_file_identity(m, "preprocessor_config.json", model_dir, "preprocessor_config.json", 1, err);
    if (!rc && adapter_dir) {
        cJSON *a = cJSON_AddObjectToObject(p, "adapter");
        rc = add_file_identity(a, "adapter_config.json", adapter_dir, "adapter_config.json", 0, err);
        if (!rc) rc = add_file_identity(a, "adapter_model.safetensors", adapter_dir, "adapter_model.safetensors", 0, err);
    } else if (!rc) {
        cJSON_AddNullToObject(p, "adapter");
    }
    cJSON_AddNumberToObject(p, "normalize_waveform", slex_hubert_normalizes_waveform(model));
    if (!rc && slex_options_write_json(&slex_hubert_load_option_table, lo, p))
        rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    char *text = rc ? NULL : cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    if (!rc && !text) slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    return text;
}

/* Loads the model, checks the layer, merges the adapter: everything that can fail before any
 * shard is touched. */
static slex_hubert *prepare_model(const char *model_dir, const char *adapter_dir, int layer,
                                  const slex_hubert_load_options *lo, slex_error *err) {
    slex_hubert *model = slex_hubert_load(model_dir, lo, err);
    if (!model) return NULL;
    const slex_hubert_config *c = slex_hubert_get_config(model);
    if (layer != SLEX_HUBERT_LAST_HIDDEN_STATE && (layer < 0 || layer > c->num_hidden_layers)) {
        slex_fail_as(err, SLEX_ERR_INPUT,
                     "--layer %d is beyond the model: %s/config.json has %d transformer layers (use 1..%d, 0 for "
                     "the transformer input, %d for the last hidden state)",
                     layer, model_dir, c->num_hidden_layers, c->num_hidden_layers, SLEX_HUBERT_LAST_HIDDEN_STATE);
        slex_hubert_free(model);
        return NULL;
    }
    if (adapter_dir) {
        slex_lora *lora = slex_lora_open(adapter_dir, err);
        int rc = lora ? slex_lora_merge(lora, model, err) : -1;
        if (lora && !rc)
            slex_info("%s: %d LoRA target(s), %lld parameters, merged into %s", adapter_dir, lora->n_targets,
                      (long long)lora->num_params, model_dir);
        slex_lora_free(lora);
        if (rc) {
            slex_hubert_free(model);
            return NULL;
        }
    }
    return model;
}

/* Every rank prepares the same model; all fail if one does.  The message is logged once: by
 * rank 0 when it failed, else by the ranks that did. */
static int all_ranks_ok(int ok, const slex_error *err, const slex_mpi *mpi) {
    int rank0_ok = ok;
    MPI_Bcast(&rank0_ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!ok && (mpi->rank == 0 || rank0_ok)) slex_error_log("%s", err->msg);
    return slex_mpi_all_ok(ok);
}

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    slex_log_init("dump", mpi.rank, mpi.size);
    slex_log_level_from_env();

    slex_featstage_options fo;
    slex_featstage_options_default(&fo);
    slex_hubert_load_options lo;
    slex_hubert_load_options_default(&lo);
    dump_options d;
    slex_options_defaults(&dump_table, &d);
    const slex_option_group groups[] = {
        {&slex_featstage_option_table, &fo}, {&dump_table, &d}, {&slex_hubert_load_option_table, &lo}};
    slex_cli cli = {
        .program = "slex-dump",
        .synopsis = "--manifest M.tsv --model DIR --layer L --out STORE [--adapter DIR] [--nshard N] [--shard I] "
                    "[options]",
        .about = "Features of one HuBERT transformer layer (50 Hz for HuBERT's conv stack) exactly as fairseq's\n"
                 "dump_hubert_feature.py (torchaudio extract_features layer L), written to a sharded HDF5 store.\n"
                 "With --adapter, a PEFT LoRA adapter is merged into the weights once at load.\n"
                 SLEX_FEATSTAGE_ABOUT,
        .groups = groups,
        .n_groups = (int)(sizeof groups / sizeof groups[0]),
    };
    slex_error err = {{0}};
    int exit_code = 0;
    slex_parse_result parsed = slex_cli_parse(&cli, argc, argv, &err);
    slex_hubert *model = NULL;
    char *params = NULL;
    if (parsed == SLEX_PARSE_HELP) {
        if (mpi.rank == 0) slex_cli_help(&cli, stdout);
    } else if (parsed == SLEX_PARSE_ERROR) {
        if (mpi.rank == 0) slex_error_log("%s", err.msg);
        exit_code = slex_cli_exit_code(&cli, &err);
    } else {
        slex_path_role out = {"--out", fo.out}, inputs[2] = {{"--model", d.model}, {"--adapter", d.adapter}};
        if (!slex_paths_check_apart(&out, 1, inputs, 2, &err)) model = prepare_model(d.model, d.adapter, d.layer, &lo, &err);
        if (model) params = dump_params_json(d.model, d.adapter, d.layer, model, &err);
        if (!all_ranks_ok(params != NULL, &err, &mpi)) {
            exit_code = 1;
        } else {
            const slex_hubert_config *c = slex_hubert_get_config(model);
            dump_ctx ctx = {.model = model, .layer = d.layer};
            slex_featstage stage = {
                .meta = {.dtype = SLEX_STORE_F32,
                         .dim = c->hidden_size,
                         .frame_rate_hz = (double)fo.sample_rate / (double)slex_hubert_total_stride(model),
                         .producer = "slex-dump",
                         .params_json = params},
                .num_frames = dump_frames,
                .compute = dump_compute,
                .ctx = &ctx,
                .min_samples = slex_hubert_receptive_field(model),
                .inputs = inputs,
                .n_inputs = 2,
            };
            exit_code = (int)slex_featstage_run(&stage, &fo, &mpi, &err);
            if (exit_code && err.msg[0]) slex_error_log("%s", err.msg);
        }
    }
    free(params);
    slex_hubert_free(model);
    slex_cli_free(&cli);
    exit_code = slex_mpi_exit_code(exit_code, &err);
    slex_mpi_stop();
    return exit_code;
}
