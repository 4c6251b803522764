/* slex-train: HuBERT masked-prediction training, LoRA adapters or every parameter, over MPI.
 *
 *   slex-train --data MANIFEST:LABELS[:WEIGHT] [--data ...] --init DIR --mode lora|full --out DIR
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

int main(int argc, char **argv) {
    slex_mpi mpi = slex_mpi_start(&argc, &argv);
    slex_log_init("train", mpi.rank, mpi.size);
    slex_log_level_from_env();
    slex_train_options o;
    slex_train_options_default(&o);
    slex_string_list data = {0};
    char *mode = "lora", *schedule = "linear", *betas = "0.9,0.98";
    long long steps = 0, warmup = 0, max_tokens = o.batch.max_tokens, max_sample = o.batch.max_sample_size,
              min_sample = o.batch.min_sample_size, checkpoint_every = o.checkpoint_every, seed = (long long)o.seed;
    double mask_prob = o.mask.mask_prob, masked_w = o.crit.pred_masked_weight, nomask_w = o.crit.pred_nomask_weight,
           pen = o.crit.feature_pen_weight;
    int force = 0, merge = 0, rslora = 0;
    slex_option table[] = {
        {"data", SLEX_OPT_STRING_LIST, &data, "MANIFEST:LABELS[:WEIGHT]: audio and its slex-label store or fairseq .km (repeat to combine)"},
        {"init", SLEX_OPT_STRING, &o.init, "Hugging Face HubertModel directory or slex checkpoint to start from"},
        {"mode", SLEX_OPT_STRING, &mode, "lora (adapters, base frozen) or full (every parameter)"},
        {"out", SLEX_OPT_STRING, &o.out, "run directory (checkpoints, train_log.jsonl, adapter/ or model/)"},
        {"num-classes", SLEX_OPT_INT, &o.batch.num_classes, "K: units of the labels (the codebook size)"},
        {"label-rate", SLEX_OPT_DOUBLE, &o.batch.label_rate, "labels per second of .km sources (100 MFCC, 50 HuBERT)"},
        {"lora-rank", SLEX_OPT_INT, &o.lora_rank, "LoRA rank r"},
        {"lora-alpha", SLEX_OPT_DOUBLE, &o.lora_alpha, "LoRA alpha (scaling alpha / r)"},
        {"lora-targets", SLEX_OPT_STRING, &o.lora_targets, "linears to adapt: any of q,k,v,out,fc1,fc2"},
        {"lora-layers", SLEX_OPT_STRING, &o.lora_layers, "1-based layers to adapt, e.g. 1-6,9 (default: all)"},
        {"rslora", SLEX_OPT_FLAG, &rslora, "rank-stabilised scaling alpha / sqrt(r)"},
        {"merge", SLEX_OPT_FLAG, &merge, "also write merged/: a HF model with the adapter merged"},
        {"steps", SLEX_OPT_LONG, &steps, "updates to train (max_update)"},
        {"max-tokens", SLEX_OPT_LONG, &max_tokens, "audio samples per global batch"},
        {"micro-batch", SLEX_OPT_INT, &o.batch.micro_batch, "utterances per micro-batch (one rank computes one whole)"},
        {"max-sample-size", SLEX_OPT_LONG, &max_sample, "longer utterances are cropped to this many samples"},
        {"min-sample-size", SLEX_OPT_LONG, &min_sample, "shorter utterances are skipped"},
        {"update-freq", SLEX_OPT_INT, &o.update_freq, "global batches per update (gradient accumulation)"},
        {"lr", SLEX_OPT_DOUBLE, &o.lr.lr, "peak learning rate"},
        {"warmup-steps", SLEX_OPT_LONG, &warmup, "linear warm-up updates"},
        {"lr-schedule", SLEX_OPT_STRING, &schedule, "linear, polynomial or cosine decay after the warm-up"},
        {"weight-decay", SLEX_OPT_DOUBLE, &o.adam.weight_decay, "Adam's decoupled weight decay"},
        {"adam-betas", SLEX_OPT_STRING, &betas, "Adam's beta1,beta2"},
        {"adam-eps", SLEX_OPT_DOUBLE, &o.adam.eps, "Adam's epsilon"},
        {"clip-norm", SLEX_OPT_DOUBLE, &o.clip_norm, "clip the gradient's global norm (0 = off)"},
        {"mask-prob", SLEX_OPT_DOUBLE, &mask_prob, "share of frames that start a masked span"},
        {"mask-length", SLEX_OPT_INT, &o.mask.mask_length, "frames per masked span"},
        {"pred-masked-weight", SLEX_OPT_DOUBLE, &masked_w, "weight of the loss on masked frames"},
        {"pred-nomask-weight", SLEX_OPT_DOUBLE, &nomask_w, "weight of the loss on unmasked frames"},
        {"feature-pen", SLEX_OPT_DOUBLE, &pen, "weight of the feature penalty mean(features^2)"},
        {"feature-grad-mult", SLEX_OPT_DOUBLE, &o.feature_grad_mult, "scale of the gradient into the CNN (0: frozen)"},
        {"layerdrop", SLEX_OPT_DOUBLE, &o.layerdrop, "probability of leaving a transformer layer out of a micro-batch"},
        {"final-dim", SLEX_OPT_INT, &o.final_dim, "projection size of a new head"},
        {"checkpoint-every", SLEX_OPT_LONG, &checkpoint_every, "updates between checkpoints"},
        {"seed", SLEX_OPT_LONG, &seed, "seed of batches, masks, layerdrop and new parameters"},
        {"force", SLEX_OPT_FLAG, &force, "replace a run of other parameters in --out"},
    };
    slex_cli cli = {.program = "slex-train",
                    .synopsis = "--data MANIFEST:LABELS[:W] --init DIR --mode lora|full --out DIR --num-classes K --steps N",
                    .about = "HuBERT masked-prediction training (fairseq's criterion and Adam) of LoRA adapters or\n"
                             "every parameter.  Data parallel over MPI with exact gradient sums: the weights after\n"
                             "N updates are the same bits for any rank count; a killed run re-run with the same\n"
                             "command resumes from its last checkpoint to the same bytes.",
                    .options = table,
                    .n_options = (int)(sizeof table / sizeof table[0])};
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
    o.full = !strcmp(mode, "full");
    o.force = force;
    o.merge = merge;
    o.rslora = rslora;
    o.steps = steps;
    o.lr.warmup_updates = warmup;
    o.lr.total_updates = steps;
    o.batch.max_tokens = max_tokens;
    o.batch.max_sample_size = max_sample;
    o.batch.min_sample_size = min_sample;
    o.batch.seed = (uint64_t)seed;
    o.checkpoint_every = checkpoint_every;
    o.seed = (uint64_t)seed;
    o.mask.mask_prob = mask_prob;
    o.crit.pred_masked_weight = (float)masked_w;
    o.crit.pred_nomask_weight = (float)nomask_w;
    o.crit.feature_pen_weight = (float)pen;
    int kind = slex_lr_kind_parse(schedule);
    if (code < 0 && strcmp(mode, "lora") && strcmp(mode, "full")) {
        if (mpi.rank == 0) slex_error_log("--mode %s: lora or full", mode);
        code = 2;
    }
    if (code < 0 && kind < 0) {
        if (mpi.rank == 0) slex_error_log("--lr-schedule %s: linear, polynomial or cosine", schedule);
        code = 2;
    }
    if (code < 0 && sscanf(betas, "%lf,%lf", &o.adam.beta1, &o.adam.beta2) != 2) {
        if (mpi.rank == 0) slex_error_log("--adam-betas %s: expected two numbers, e.g. 0.9,0.98", betas);
        code = 2;
    }
    if (code < 0 && !data.count) {
        if (mpi.rank == 0) slex_error_log("--data is required");
        code = 2;
    }
    o.lr.kind = (slex_lr_kind)(kind < 0 ? 0 : kind);
    slex_data_spec *specs = calloc((size_t)data.count + 1, sizeof *specs);
    for (int i = 0; code < 0 && specs && i < data.count; i++)
        if (slex_data_spec_parse(data.items[i], &specs[i], &err)) {
            if (mpi.rank == 0) slex_error_log("--data %s: %s", data.items[i], err.msg);
            code = 2;
        }
    if (code < 0 && slex_train_options_validate(&o, &err)) {
        if (mpi.rank == 0) slex_error_log("%s", err.msg);
        code = 2;
    }
    if (code < 0) {
        slex_exact_comm comm = slex_mpi_exact_comm();
        slex_train_outcome outcome;
        int rc = slex_train_run(&o, specs, data.count, &comm, &outcome, &err);
        if (rc && err.msg[0]) slex_error_log("%s", err.msg);
        if (!rc && mpi.rank == 0)
            slex_info(outcome == SLEX_TRAIN_ALREADY_DONE ? "%s: finished earlier with these parameters; nothing to do"
                                                          : "%s: done", o.out);
        code = rc ? 1 : 0;
    }
    free(specs);
    slex_cli_free(&cli);
    slex_mpi_stop();
    return code;
}
