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

/* What the command line fills: the trainer's options, and the few values that reach them
 * through a conversion (fairseq's spellings, float weights). */
typedef struct train_cli {
    slex_train_options o;
    slex_string_list data;
    int lr_schedule;          /* index in "linear|polynomial|cosine" = slex_lr_kind */
    char *adam_betas;         /* "0.9,0.98" or fairseq's "(0.9, 0.98)" */
    double pred_masked_weight, pred_nomask_weight, feature_pen;
} train_cli;

#define T train_cli
static const slex_option train_rows[] = {
    {SLEX_OPT_LIST_FIELD(T, data), .name = "data", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "MANIFEST:LABELS[:WEIGHT]: audio and its slex-label store or fairseq .km (repeat to combine)"},
    {SLEX_OPT_STRING_FIELD(T, o.init), .name = "init", .flags = SLEX_OPTF_PATH,
     .help = "Hugging Face HubertModel directory or slex checkpoint to start from"},
    {SLEX_OPT_STRING_FIELD(T, o.arch), .name = "arch", .flags = SLEX_OPTF_PATH,
     .help = "instead of --init: a HF config.json to train from random weights (fairseq's init, --mode full)"},
    {SLEX_OPT_CHOICE_FIELD(T, o.full), .name = "mode", .choices = "lora|full", .def = 0,
     .help = "lora (adapters, base frozen) or full (every parameter)"},
    {SLEX_OPT_STRING_FIELD(T, o.out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "run directory (checkpoints, train_log.jsonl, adapter/ or model/)"},
    {SLEX_OPT_INT_FIELD(T, o.batch.num_classes), .name = "num-classes", .flags = SLEX_OPTF_REQUIRED, .min = 1,
     .max = 1 << 24, .help = "K: units of the labels (the codebook size)"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.batch.label_rate), .name = "label-rate", .def = -1, .min = -1, .max = 16000,
     .help = "labels per second of .km sources (100 MFCC, 50 HuBERT); stores carry their own"},
    {SLEX_OPT_INT_FIELD(T, o.lora_rank), .name = "lora-rank", .def = 24, .min = 1, .max = 65536, .help = "LoRA rank r"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.lora_alpha), .name = "lora-alpha", .def = 48, .min = 0, .flags = SLEX_OPTF_ABOVE_MIN,
     .max = 1e9, .help = "LoRA alpha (scaling alpha / r)"},
    {SLEX_OPT_STRING_FIELD(T, o.lora_targets), .name = "lora-targets", .def_text = "q,k,v,out",
     .help = "linears to adapt: any of q,k,v,out,fc1,fc2"},
    {SLEX_OPT_STRING_FIELD(T, o.lora_layers), .name = "lora-layers", .help = "1-based layers to adapt, e.g. 1-6,9 (default: all)"},
    {SLEX_OPT_FLAG_FIELD(T, o.rslora), .name = "rslora", .help = "rank-stabilised scaling alpha / sqrt(r)"},
    {SLEX_OPT_FLAG_FIELD(T, o.merge), .name = "merge", .help = "also write merged/: a HF model with the adapter merged"},
    {SLEX_OPT_LONG_FIELD(T, o.steps), .name = "steps", .flags = SLEX_OPTF_REQUIRED, .min = 1, .max = 1e15,
     .help = "updates to train (fairseq's max_update)"},
    {SLEX_OPT_LONG_FIELD(T, o.batch.max_tokens), .name = "max-tokens", .def = 1400000, .min = 1, .max = 1e15,
     .help = "audio samples per global batch"},
    {SLEX_OPT_INT_FIELD(T, o.batch.micro_batch), .name = "micro-batch", .def = 8, .min = 1, .max = 1 << 20,
     .help = "utterances per micro-batch (one rank computes one whole)"},
    {SLEX_OPT_LONG_FIELD(T, o.batch.max_sample_size), .name = "max-sample-size", .def = 250000, .min = 400, .max = 1e12,
     .help = "longer utterances are cropped to this many samples"},
    {SLEX_OPT_LONG_FIELD(T, o.batch.min_sample_size), .name = "min-sample-size", .def = 32000, .min = 0, .max = 1e12,
     .help = "shorter utterances are skipped"},
    {SLEX_OPT_INT_FIELD(T, o.update_freq), .name = "update-freq", .def = 1, .min = 1, .max = 64,
     .help = "global batches per update (gradient accumulation)"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.lr.lr), .name = "lr", .def = 5e-4, .min = 0, .max = 1e3, .help = "peak learning rate"},
    {SLEX_OPT_LONG_FIELD(T, o.lr.warmup_updates), .name = "warmup-steps", .def = 0, .min = 0, .max = 1e15,
     .help = "linear warm-up updates"},
    {SLEX_OPT_CHOICE_FIELD(T, lr_schedule), .name = "lr-schedule", .choices = "linear|polynomial|cosine", .def = 0,
     .help = "decay after the warm-up (fairseq's polynomial_decay with power 1, with --power, cosine)"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.lr.power), .name = "power", .def = 1, .min = 0, .max = 100,
     .help = "exponent of the polynomial decay"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.lr.end_lr), .name = "end-learning-rate", .def = 0, .min = 0, .max = 1e3,
     .help = "learning rate at the end of the polynomial decay"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.adam.weight_decay), .name = "weight-decay", .def = 0.01, .min = 0, .max = 10,
     .help = "Adam's decoupled weight decay"},
    {SLEX_OPT_STRING_FIELD(T, adam_betas), .name = "adam-betas", .def_text = "0.9,0.98",
     .help = "Adam's beta1,beta2 (also fairseq's \"(0.9, 0.98)\")"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.adam.eps), .name = "adam-eps", .def = 1e-6, .min = 0, .max = 1,
     .flags = SLEX_OPTF_ABOVE_MIN, .help = "Adam's epsilon"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.clip_norm), .name = "clip-norm", .def = 10, .min = 0, .max = 1e12,
     .help = "clip the gradient's global norm (0 = off)"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.mask.mask_prob), .name = "mask-prob", .def = 0.8, .min = 0, .max = 1,
     .help = "share of frames that start a masked span"},
    {SLEX_OPT_INT_FIELD(T, o.mask.mask_length), .name = "mask-length", .def = 10, .min = 1, .max = 100000,
     .help = "frames per masked span"},
    {SLEX_OPT_DOUBLE_FIELD(T, pred_masked_weight), .name = "pred-masked-weight", .def = 1, .min = 0, .max = 1e6,
     .help = "weight of the loss on masked frames"},
    {SLEX_OPT_DOUBLE_FIELD(T, pred_nomask_weight), .name = "pred-nomask-weight", .def = 0, .min = 0, .max = 1e6,
     .help = "weight of the loss on unmasked frames"},
    {SLEX_OPT_DOUBLE_FIELD(T, feature_pen), .name = "feature-pen", .def = 10, .min = 0, .max = 1e6,
     .help = "weight of the feature penalty mean(features^2) (fairseq's loss_weights)"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.feature_grad_mult), .name = "feature-grad-mult", .def = 0.1, .min = 0, .max = 1,
     .help = "scale of the gradient into the CNN (0: frozen)"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.layerdrop), .name = "layerdrop", .def = 0.05, .min = 0, .max = 0.99,
     .help = "probability of leaving a transformer layer out of a micro-batch"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.dropout), .name = "dropout", .def = 0.1, .min = 0, .max = 0.99,
     .help = "hidden dropout in training (HF HubertModel's sites)"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.attention_dropout), .name = "attention-dropout", .def = 0.1, .min = 0, .max = 0.99,
     .help = "dropout on the attention probabilities"},
    {SLEX_OPT_DOUBLE_FIELD(T, o.activation_dropout), .name = "activation-dropout", .def = 0, .min = 0, .max = 0.99,
     .help = "dropout after the FFN's GELU"},
    {SLEX_OPT_INT_FIELD(T, o.final_dim), .name = "final-dim", .def = 256, .min = 1, .max = 65536,
     .help = "projection size of a new head"},
    {SLEX_OPT_CHOICE_FIELD(T, o.label_emb_normal), .name = "label-emb-init", .choices = "uniform|normal", .def = 0,
     .help = "a new head's label embeddings: U[0,1) as fairseq, or N(0,1) (small models from scratch)"},
    {SLEX_OPT_LONG_FIELD(T, o.checkpoint_every), .name = "checkpoint-every", .def = 1000, .min = 1, .max = 1e15,
     .help = "updates between checkpoints (the last two are kept)"},
    {SLEX_OPT_U64_FIELD(T, o.seed), .name = "seed", .def = 1, .help = "seed of batches, masks, layerdrop and new parameters"},
    {SLEX_OPT_FLAG_FIELD(T, o.force), .name = "force", .help = "replace a run of other parameters in --out"},
};
#undef T
static const slex_option_table train_table = SLEX_OPTION_TABLE(train_rows);

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
    slex_train_options_default(&c.o); /* the component defaults; the rows set the same values */
    slex_options_defaults(&train_table, &c);
    const slex_option_group groups[] = {{&train_table, &c}};
    slex_cli cli = {.program = "slex-train",
                    .synopsis = "--data MANIFEST:LABELS[:W] (--init DIR | --arch CONFIG) --mode lora|full --out DIR --num-classes K --steps N",
                    .about = "HuBERT masked-prediction training (fairseq's criterion and Adam) of LoRA adapters or\n"
                             "every parameter.  Data parallel over MPI with exact gradient sums: the weights after\n"
                             "N updates are the same bits for any rank count; a killed run re-run with the same\n"
                             "command resumes from its last checkpoint to the same bytes.",
                    .groups = groups,
                    .n_groups = 1};
    slex_error err = {{0}};
    int code = -1;
    slex_parse_result parsed = slex_cli_parse(&cli, argc, argv, &err);
    if (parsed == SLEX_PARSE_HELP) {
        if (mpi.rank == 0) slex_cli_help(&cli, stdout);
        code = 0;
    } else if (parsed == SLEX_PARSE_ERROR) {
        if (mpi.rank == 0) slex_error_log("%s", err.msg);
        code = 2;
    }
    slex_train_options *o = &c.o;
    if (code < 0 && !parse_betas(c.adam_betas, &o->adam.beta1, &o->adam.beta2)) {
        if (mpi.rank == 0) slex_error_log("--adam-betas %s: expected two numbers, e.g. 0.9,0.98", c.adam_betas);
        code = 2;
    }
    o->lr.kind = (slex_lr_kind)c.lr_schedule;
    o->lr.total_updates = o->steps;
    o->batch.seed = o->seed;
    o->crit.pred_masked_weight = (float)c.pred_masked_weight;
    o->crit.pred_nomask_weight = (float)c.pred_nomask_weight;
    o->crit.feature_pen_weight = (float)c.feature_pen;
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
