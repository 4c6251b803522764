/* slex-train: HuBERT masked-prediction training, LoRA adapters or every parameter, over MPI.
 *
 *   slex-train --data MANIFEST:LABELS[:WEIGHT] [--data ...] (--init DIR | --arch CONFIG.json) --mode lora|full --out DIR
 *              --num-classes K --steps N [options]
 *
 * The loop, its determinism and the run directory: common/train/trainer.h. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/exactsum.h"
#include "core/log.h"
#include "core/mpi_util.h"
#include "core/options.h"
#include "train/trainer.h"

/* What the command line fills: the trainer's options (registered by the trainer and its
 * components, train/trainer.h), the data sources, and the Adam betas as one value. */
typedef struct train_cli {
    slex_train_options o;
    slex_string_list data;
    char *adam_betas; /* "0.9,0.98" or fairseq's "(0.9, 0.98)" */
} train_cli;

#define T train_cli
static const slex_option stage_rows[] = {
    {SLEX_OPT_LIST_FIELD(T, data), .name = "data", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "MANIFEST:LABELS[:WEIGHT]: audio and its slex-label store or fairseq .km (repeat to combine)"},
    {SLEX_OPT_STRING_FIELD(T, adam_betas), .name = "adam-betas", .def_text = "0.9,0.98",
     .help = "Adam's beta1,beta2 (also fairseq's \"(0.9, 0.98)\")"},
};
#undef T
static const slex_option_table stage_table = SLEX_OPTION_TABLE(stage_rows);

/* "0.9,0.98" or "(0.9, 0.98)". */
static int parse_betas(const char *text, double *b1, double *b2) {
    char tail;
    return sscanf(text, " ( %lf , %lf ) %c", b1, b2, &tail) == 2 || sscanf(text, " %lf , %lf %c", b1, b2, &tail) == 2;
}

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    slex_log_init("train", mpi.rank, mpi.size);
    slex_log_level_from_env();
    train_cli c;
    memset(&c, 0, sizeof c);
    slex_train_options_default(&c.o);
    slex_options_defaults(&stage_table, &c);
    slex_option_group groups[1 + SLEX_TRAIN_OPTION_GROUPS] = {{&stage_table, &c}};
    slex_train_option_groups(&c.o, groups + 1);
    slex_cli cli = {.program = "slex-train",
                    .synopsis = "--data MANIFEST:LABELS[:W] (--init DIR | --arch CONFIG) --mode lora|full --out DIR --num-classes K --steps N",
                    .about = "HuBERT masked-prediction training (fairseq's criterion and Adam) of LoRA adapters or\n"
                             "every parameter.  Data parallel over MPI with exact gradient sums: the weights after\n"
                             "N updates are the same bits for any rank count; a killed run re-run with the same\n"
                             "command resumes from its last checkpoint to the same bytes.",
                    .groups = groups,
                    .n_groups = 1 + SLEX_TRAIN_OPTION_GROUPS};
    slex_error err = {{0}};
    int code = -1;
    slex_parse_result parsed = slex_cli_parse(&cli, argc, argv, &err);
    if (parsed == SLEX_PARSE_HELP) {
        if (mpi.rank == 0) slex_cli_help(&cli, stdout);
        code = 0;
    } else if (parsed == SLEX_PARSE_ERROR) {
        if (mpi.rank == 0) slex_error_log("%s", err.msg);
        code = slex_cli_exit_code(&cli, &err);
    }
    slex_train_options *o = &c.o;
    if (code < 0 && !parse_betas(c.adam_betas, &o->adam.beta1, &o->adam.beta2)) {
        if (mpi.rank == 0) slex_error_log("--adam-betas %s: expected two numbers, e.g. 0.9,0.98", c.adam_betas);
        code = 2;
    }
    o->lr.total_updates = o->steps;
    o->batch.seed = o->seed;
    slex_data_spec *specs = calloc((size_t)c.data.count + 1, sizeof *specs);
    for (int i = 0; code < 0 && specs && i < c.data.count; i++)
        if (slex_data_spec_parse(c.data.items[i], &specs[i], &err)) {
            if (mpi.rank == 0) slex_error_log("--data %s: %s", c.data.items[i], err.msg);
            code = 2;
        }
    if (code < 0 && slex_train_options_validate(o, &err)) {
        if (mpi.rank == 0) slex_error_log("%s", err.msg);
        code = 2;
    }
    if (code < 0) {
        slex_exact_comm comm = slex_mpi_exact_comm();
        slex_train_outcome outcome;
        int rc = slex_train_run(o, specs, c.data.count, &comm, &outcome, &err);
        if (rc && err.msg[0]) slex_error_log("%s", err.msg);
        if (!rc && mpi.rank == 0)
            slex_info(outcome == SLEX_TRAIN_ALREADY_DONE ? "%s: finished earlier with these parameters; nothing to do"
                                                          : "%s: done", o->out);
        code = rc ? SLEX_EXIT_FAILED : SLEX_EXIT_OK;
    }
    free(specs);
    slex_cli_free(&cli);
    code = slex_mpi_exit_code(code, &err); /* 1 becomes 4, 5 or 6 by the error's kind; the ranks agree */
    slex_mpi_stop();
    return code;
}
