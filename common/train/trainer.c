#include "train/trainer.h"

#include "train/step.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/rng.h"
#include "model/checkpoint.h"
#include "model/init.h"
#include "model/lora.h"
#include "run/resume.h"
#include "store/store.h"

#define PATH_CAP 4200
#define FILE_CAP (PATH_CAP + 64) /* a file inside a PATH_CAP directory */
/* Values of the flat gradient that share one fixed-point exponent in the exact sum over ranks. */
#define GRAD_SCALE_BLOCK 256

#define T slex_train_options
static const slex_option train_rows[] = {
    {SLEX_OPT_STRING_FIELD(T, init), .name = "init", .flags = SLEX_OPTF_PATH, .param = "init",
     .help = "Hugging Face HubertModel directory or slex checkpoint to start from"},
    {SLEX_OPT_STRING_FIELD(T, arch), .name = "arch", .flags = SLEX_OPTF_PATH, .param = "arch",
     .help = "instead of --init: a HF config.json to train from random weights (fairseq's init, --mode full)"},
    {SLEX_OPT_CHOICE_FIELD(T, full), .name = "mode", .choices = "lora|full", .def = 0, .param = "mode",
     .help = "lora (adapters, base frozen) or full (every parameter)"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH,
     .help = "run directory (checkpoints, train_log.jsonl, adapter/ or model/)"},
    {SLEX_OPT_INT_FIELD(T, lora_rank), .name = "lora-rank", .def = 24, .min = 1, .max = 65536, .param = "lora_rank",
     .help = "LoRA rank r"},
    {SLEX_OPT_DOUBLE_FIELD(T, lora_alpha), .name = "lora-alpha", .def = 48, .min = 0, .flags = SLEX_OPTF_ABOVE_MIN,
     .max = 1e9, .param = "lora_alpha", .help = "LoRA alpha (scaling alpha / r)"},
    {SLEX_OPT_STRING_FIELD(T, lora_targets), .name = "lora-targets", .def_text = "q,k,v,out", .param = "lora_targets",
     .help = "linears to adapt: any of q,k,v,out,fc1,fc2"},
    {SLEX_OPT_STRING_FIELD(T, lora_layers), .name = "lora-layers", .param = "lora_layers",
     .help = "1-based layers to adapt, e.g. 1-6,9 (default: all)"},
    {SLEX_OPT_FLAG_FIELD(T, rslora), .name = "rslora", .param = "rslora", .help = "rank-stabilised scaling alpha / sqrt(r)"},
    {SLEX_OPT_FLAG_FIELD(T, merge), .name = "merge", .param = "merge",
     .help = "also write merged/: a HF model with the adapter merged"},
    {SLEX_OPT_LONG_FIELD(T, steps), .name = "steps", .flags = SLEX_OPTF_REQUIRED, .min = 1, .max = 1e15, .param = "steps",
     .help = "updates to train (fairseq's max_update)"},
    {SLEX_OPT_INT_FIELD(T, update_freq), .name = "update-freq", .def = 1, .min = 1, .max = 64, .param = "update_freq",
     .help = "global batches per update (gradient accumulation)"},
    {SLEX_OPT_DOUBLE_FIELD(T, clip_norm), .name = "clip-norm", .def = 10, .min = 0, .max = 1e12, .param = "clip_norm",
     .help = "clip the gradient's global norm (0 = off)"},
    {SLEX_OPT_DOUBLE_FIELD(T, feature_grad_mult), .name = "feature-grad-mult", .def = 0.1, .min = 0, .max = 1,
     .param = "feature_grad_mult", .help = "scale of the gradient into the CNN (0: frozen)"},
    {SLEX_OPT_DOUBLE_FIELD(T, layerdrop), .name = "layerdrop", .def = 0.05, .min = 0, .max = 0.99, .param = "layerdrop",
     .help = "probability of leaving a transformer layer out of a micro-batch"},
    {SLEX_OPT_DOUBLE_FIELD(T, dropout), .name = "dropout", .def = 0.1, .min = 0, .max = 0.99, .param = "dropout",
     .help = "hidden dropout in training (HF HubertModel's sites)"},
    {SLEX_OPT_DOUBLE_FIELD(T, attention_dropout), .name = "attention-dropout", .def = 0.1, .min = 0, .max = 0.99,
     .param = "attention_dropout", .help = "dropout on the attention probabilities"},
    {SLEX_OPT_DOUBLE_FIELD(T, activation_dropout), .name = "activation-dropout", .def = 0, .min = 0, .max = 0.99,
     .param = "activation_dropout", .help = "dropout after the FFN's GELU"},
    {SLEX_OPT_INT_FIELD(T, final_dim), .name = "final-dim", .def = 256, .min = 1, .max = 65536, .param = "final_dim",
     .help = "projection size of a new head"},
    {SLEX_OPT_CHOICE_FIELD(T, label_emb_normal), .name = "label-emb-init", .choices = "uniform|normal", .def = 0,
     .param = "label_emb_init", .help = "a new head's label embeddings: U[0,1) as fairseq, or N(0,1) (small models from scratch)"},
    {SLEX_OPT_LONG_FIELD(T, checkpoint_every), .name = "checkpoint-every", .def = 1000, .min = 1, .max = 1e15,
     .help = "updates between checkpoints"},
    {SLEX_OPT_LONG_FIELD(T, keep_interval_updates), .name = "keep-interval-updates", .def = 2, .min = -1, .max = 1e15,
     .help = "checkpoints kept, the newest ones (-1: all; fairseq keeps all); older ones are removed after each save"},
    {SLEX_OPT_U64_FIELD(T, seed), .name = "seed", .def = 1, .param = "seed",
     .help = "seed of batches, masks, layerdrop and new parameters"},
    {SLEX_OPT_FLAG_FIELD(T, force), .name = "force", .help = "replace a run of other parameters in --out"},
};
#undef T
const slex_option_table slex_train_option_table = SLEX_OPTION_TABLE(train_rows);

void slex_train_option_groups(slex_train_options *o, slex_option_group groups[SLEX_TRAIN_OPTION_GROUPS]) {
    const slex_option_group g[SLEX_TRAIN_OPTION_GROUPS] = {
        {&slex_train_option_table, o},     {&slex_batch_option_table, &o->batch}, {&slex_mask_option_table, &o->mask},
        {&slex_lr_option_table, &o->lr},   {&slex_adam_option_table, &o->adam},   {&slex_criterion_option_table, &o->crit},
    };
    memcpy(groups, g, sizeof g);
}

void slex_train_options_default(slex_train_options *o) {
    memset(o, 0, sizeof *o);
    slex_lr_schedule_default(&o->lr);
    slex_adam_options_default(&o->adam);
    slex_batch_options_default(&o->batch);
    slex_mask_options_default(&o->mask);
    slex_criterion_default(&o->crit);
    slex_options_defaults(&slex_train_option_table, o);
}

/* The names --lora-targets takes, in slex_hubert_linear order. */
static const char *const LINEAR_NAMES[SLEX_HUBERT_LINEARS] = {"q", "k", "v", "out", "fc1", "fc2"};
/* 1-based layer list "1,3,5-8" -> selected[l] (0-based) and *lowest, the lowest selected
 * (0-based); NULL = all.  Without selected only the syntax is checked (n_layers unknown). */
static int parse_layers(const char *spec, int n_layers, char *selected, int *lowest, slex_error *err) {
    if (selected) memset(selected, spec ? 0 : 1, (size_t)n_layers);
    if (lowest) *lowest = spec ? INT_MAX : 0;
    for (const char *p = spec; p && *p;) {
        char *end;
        long a = strtol(p, &end, 10), b = a;
        if (end == p)
            return slex_fail_as(err, SLEX_ERR_INPUT, "--lora-layers %s: expected layer numbers like 1,3,5-8", spec);
        if (*end == '-') {
            const char *q = end + 1;
            b = strtol(q, &end, 10);
            if (end == q)
                return slex_fail_as(err, SLEX_ERR_INPUT, "--lora-layers %s: expected layer numbers like 1,3,5-8", spec);
        }
        if (a < 1 || b < a || b > INT_MAX)
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "--lora-layers %s: expected layer numbers from 1 up, ranges a-b with a <= b", spec);
        if (selected && b > n_layers)
            return slex_fail_as(err, SLEX_ERR_INPUT, "--lora-layers %s: the model has layers 1..%d", spec, n_layers);
        for (long l = a; selected && l <= b; l++) selected[l - 1] = 1;
        if (lowest && a - 1 < *lowest) *lowest = (int)(a - 1);
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return slex_fail_as(err, SLEX_ERR_INPUT, "--lora-layers %s: expected layer numbers like 1,3,5-8", spec);
    }
    return 0;
}

static int parse_targets(const char *spec, char *which, slex_error *err) {
    memset(which, 0, SLEX_HUBERT_LINEARS);
    int any = 0;
    for (const char *p = spec; *p;) {
        size_t len = strcspn(p, ",");
        int found = 0;
        for (int i = 0; i < SLEX_HUBERT_LINEARS; i++)
            if (strlen(LINEAR_NAMES[i]) == len && !strncmp(p, LINEAR_NAMES[i], len)) which[i] = found = any = 1;
        if (!found)
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "--lora-targets: unknown target \"%.*s\" (known: q, k, v, out, fc1, fc2)", (int)len, p);
        p += len + (p[len] == ',');
    }
    return any ? 0 : slex_fail_as(err, SLEX_ERR_INPUT, "--lora-targets is empty");
}

int slex_train_options_validate(const slex_train_options *o, slex_error *err) {
    if (!o->out) return slex_fail_as(err, SLEX_ERR_INPUT, "--out is required");
    if (!o->init == !o->arch)
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "give one of --init (a Hugging Face HubertModel directory or a slex checkpoint) and "
                            "--arch (a config.json to train from random weights)");
    if (o->arch && !o->full)
        return slex_fail_as(err, SLEX_ERR_INPUT, "--arch %s: a model from random weights trains in --mode full",
                            o->arch);
    if (o->steps < 1) return slex_fail_as(err, SLEX_ERR_INPUT, "--steps %lld: must be at least 1", (long long)o->steps);
    if (o->update_freq < 1)
        return slex_fail_as(err, SLEX_ERR_INPUT, "--update-freq %d: must be at least 1", o->update_freq);
    if (!o->full && (o->lora_rank < 1 || !(o->lora_alpha > 0) || !isfinite(o->lora_alpha)))
        return slex_fail_as(err, SLEX_ERR_INPUT, "--lora-rank %d and --lora-alpha %g: must be positive", o->lora_rank,
                            o->lora_alpha);
    if (!(o->clip_norm >= 0) || !isfinite(o->clip_norm))
        return slex_fail_as(err, SLEX_ERR_INPUT, "--clip-norm %g: must be >= 0", o->clip_norm);
    if (!(o->feature_grad_mult >= 0 && o->feature_grad_mult <= 1))
        return slex_fail_as(err, SLEX_ERR_INPUT, "--feature-grad-mult %g: must be in [0, 1]", o->feature_grad_mult);
    if (o->full && o->feature_grad_mult == 0)
        return slex_fail_as(
            err, SLEX_ERR_INPUT,
            "--feature-grad-mult 0 in full mode (a frozen CNN) is not supported: use a value in (0, 1]");
    if (!(o->layerdrop >= 0 && o->layerdrop < 1))
        return slex_fail_as(err, SLEX_ERR_INPUT, "--layerdrop %g: must be in [0, 1)", o->layerdrop);
    if (o->keep_interval_updates == 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "--keep-interval-updates 0: the checkpoint just written is always kept (1 or more, or -1 for all)");
    if (o->checkpoint_every < 1)
        return slex_fail_as(err, SLEX_ERR_INPUT, "--checkpoint-every %lld: must be >= 1",
                            (long long)o->checkpoint_every);
    if (o->final_dim < 1) return slex_fail_as(err, SLEX_ERR_INPUT, "--final-dim %d: must be >= 1", o->final_dim);
    char which[SLEX_HUBERT_LINEARS];
    if (!o->full && (parse_targets(o->lora_targets, which, err) || parse_layers(o->lora_layers, 0, NULL, NULL, err)))
        return -1;
    slex_lr_schedule lr = o->lr;
    lr.total_updates = o->steps;
    if (slex_lr_schedule_validate(&lr, err) || slex_adam_options_validate(&o->adam, err) ||
        slex_batch_options_validate(&o->batch, err) || slex_mask_options_validate(&o->mask, err) ||
        slex_criterion_validate(&o->crit, err))
        return -1;
    return 0;
}

/* ---- the run's parameters ------------------------------------------------------------------ */

/* What names an input's content: a store's content id, else a file's CRC-32 and size. */
static int content_of(const char *path, char *out, size_t size, slex_error *err) {
    struct stat st;
    if (stat(path, &st)) return slex_fail_as(err, slex_errno_kind(errno), "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char weights[PATH_CAP];
        snprintf(weights, sizeof weights, "%s/model.safetensors", path);
        if (slex_path_exists(weights)) return content_of(weights, out, size, err);
        slex_store *s = slex_store_open(path, err);
        if (!s) return -1;
        snprintf(out, size, "store %s", slex_store_content_id(s));
        slex_store_close(s);
        return 0;
    }
    uint32_t crc;
    int64_t bytes;
    if (slex_file_crc32(path, &crc, &bytes, err)) return -1;
    snprintf(out, size, "crc32 %08x, %lld bytes", crc, (long long)bytes);
    return 0;
}

/* Every option with a parameter key (slex_train_option_groups) as a JSON object; NULL when out
 * of memory. */
static cJSON *option_params(const slex_train_options *o) {
    cJSON *p = cJSON_CreateObject();
    slex_option_group groups[SLEX_TRAIN_OPTION_GROUPS];
    slex_train_option_groups((slex_train_options *)o, groups); /* only read */
    int rc = p ? 0 : -1;
    for (int g = 0; !rc && g < SLEX_TRAIN_OPTION_GROUPS; g++) rc = slex_options_write_json(groups[g].table, groups[g].opts, p);
    if (rc) cJSON_Delete(p);
    return rc ? NULL : p;
}

/* Every option with a parameter key (slex_train_option_groups), then what names the inputs'
 * contents: the model started from, each --data source's manifest and labels. */
static char *run_params(const slex_train_options *o, const slex_data_spec *specs, int n_specs, slex_error *err) {
    cJSON *p = option_params(o);
    if (!p) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), NULL;
    char content[256];
    const char *from = o->init ? o->init : o->arch;
    int rc = content_of(from, content, sizeof content, err);
    cJSON_AddStringToObject(p, o->init ? "init_content" : "arch_content", rc ? "" : content);
    cJSON *data = cJSON_AddArrayToObject(p, "data");
    for (int i = 0; !rc && i < n_specs; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "manifest", specs[i].manifest);
        if (!(rc = content_of(specs[i].manifest, content, sizeof content, err)))
            cJSON_AddStringToObject(d, "manifest_content", content);
        cJSON_AddStringToObject(d, "labels", specs[i].labels);
        if (!rc && !(rc = content_of(specs[i].labels, content, sizeof content, err)))
            cJSON_AddStringToObject(d, "labels_content", content);
        cJSON_AddNumberToObject(d, "weight", specs[i].weight);
        cJSON_AddItemToArray(data, d);
    }
    char *text = rc ? NULL : cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    if (!rc && !text) slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    return text;
}

/* The option part of run_params for every option at its default (JSON, malloc'd; NULL when out
 * of memory): what a run.json of an older slex, written before an option existed, stood for. */
static char *default_params(void) {
    slex_train_options d;
    slex_train_options_default(&d);
    cJSON *p = option_params(&d);
    char *text = p ? cJSON_PrintUnformatted(p) : NULL;
    cJSON_Delete(p);
    return text;
}

/* ---- the run directory -------------------------------------------------------------------- */

/* The largest N of OUT/checkpoint-N that holds a complete checkpoint, or -1. */
static int64_t last_checkpoint(const char *out) {
    DIR *d = opendir(out);
    int64_t best = -1;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) {
        long long n;
        char tail;
        if (sscanf(e->d_name, "checkpoint-%lld%c", &n, &tail) != 1 || n <= best) continue;
        char path[PATH_CAP];
        snprintf(path, sizeof path, "%s/%s/trainer.json", out, e->d_name);
        if (slex_path_exists(path)) best = n;
    }
    closedir(d);
    return best;
}

static void checkpoint_dir(const char *out, int64_t step, char *path, size_t size) {
    snprintf(path, size, "%s/checkpoint-%lld", out, (long long)step);
}

/* Removes a directory tree of files (a checkpoint). */
static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[PATH_CAP];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        remove_tree(sub);
    }
    closedir(d);
    rmdir(path);
}

/* What OUT holds for these parameters. */
typedef enum { OUT_FRESH, OUT_RESUMABLE, OUT_FINISHED } out_state;

/* The state of OUT against these parameters, changing nothing: finished (done.json of them),
 * resumable (run.json of them), fresh (no run, or another one and force); another run without
 * force is an error. */
static int check_out(const slex_train_options *o, const char *params, out_state *state, slex_error *err) {
    char run[PATH_CAP], done[PATH_CAP];
    snprintf(run, sizeof run, "%s/run.json", o->out);
    snprintf(done, sizeof done, "%s/done.json", o->out);
    *state = OUT_FRESH;
    if (!slex_path_exists(run)) return 0;
    char *recorded = slex_read_text_file(run, NULL, err);
    if (!recorded) return -1;
    size_t len = strlen(recorded);
    while (len && recorded[len - 1] == '\n') recorded[--len] = 0;
    char *defaults = default_params();
    int same = slex_resume_same_params(recorded, params, defaults);
    free(defaults);
    if (!same && !o->force) {
        char what[1024], path[256];
        slex_resume_difference(recorded, params, what, path, sizeof what);
        free(recorded);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s holds a run of other parameters (%s); use another --out or --force",
                            o->out, what);
    }
    free(recorded);
    if (same) *state = slex_path_exists(done) ? OUT_FINISHED : OUT_RESUMABLE;
    return 0;
}

/* A run that starts from its first update takes OUT (rank 0, once every input has been
 * checked, so that a refused run leaves an old one whole): the files of an earlier run go
 * (another run with force, or this one killed before its first checkpoint), then its
 * parameters are recorded. */
static int claim_out(const slex_train_options *o, const char *params, slex_error *err) {
    for (int64_t s; (s = last_checkpoint(o->out)) >= 0;) {
        char dir[PATH_CAP];
        checkpoint_dir(o->out, s, dir, sizeof dir);
        remove_tree(dir);
    }
    const char *files[] = {"done.json", "train_log.jsonl", "adapter", "model", "merged"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[PATH_CAP];
        snprintf(path, sizeof path, "%s/%s", o->out, files[i]);
        remove_tree(path);
    }
    char run[PATH_CAP];
    snprintf(run, sizeof run, "%s/run.json", o->out);
    char *line = malloc(strlen(params) + 2);
    if (!line) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    sprintf(line, "%s\n", params);
    int rc = slex_mkdirs(o->out, err) || slex_write_file_atomic(run, line, strlen(line), err);
    free(line);
    return rc;
}

/* ---- the trainer's state -------------------------------------------------------------------- */

typedef struct trainer {
    const slex_train_options *o;
    const slex_exact_comm *comm;
    int rank, size;
    slex_hubert *model;
    const slex_hubert_config *cfg;
    slex_head *head;
    slex_lora *lora;                 /* LoRA mode */
    slex_trainer *stepper;           /* one micro-batch's forward and backward, the update (train/step.h) */
    slex_optim *optim;               /* the step's optimizer: gradients and moments */
    slex_batcher *batcher;
    int n_sources;
    int64_t step;                    /* updates done */
    /* one micro-batch's buffers */
    slex_microbatch mb;
    uint8_t *mask, *skip;
    int64_t cap_frames;
} trainer;

/* Per-update statistics, summed exactly over ranks: per source and in all. */
enum { S_LOSS, S_LOSS_M, S_LOSS_U, S_PEN, S_SAMPLE, S_COUNT_M, S_COUNT_U, S_CORRECT_M, S_CORRECT_U, N_STATS };

/* A new adapter with PEFT's initialisation: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in),
 * 1/sqrt(in)), B = 0; drawn from the seed, target after target. */
static int create_lora(trainer *t, slex_error *err) {
    const slex_train_options *o = t->o;
    int L = t->cfg->num_hidden_layers;
    char *layer_on = malloc((size_t)L), which[SLEX_HUBERT_LINEARS];
    if (!layer_on) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    int rc = parse_layers(o->lora_layers, L, layer_on, NULL, err) || parse_targets(o->lora_targets, which, err);
    /* Module paths from the model's tensor table: the linears of the chosen layers and kinds. */
    int nt = rc ? 0 : slex_hubert_tensors(t->cfg, slex_hubert_get_params(t->model), NULL);
    slex_hubert_tensor *tensors = rc ? NULL : malloc((size_t)(nt ? nt : 1) * sizeof *tensors);
    char **modules = rc ? NULL : calloc((size_t)(nt ? nt : 1), sizeof *modules);
    int n = 0;
    if (tensors && modules) {
        slex_hubert_tensors(t->cfg, slex_hubert_get_params(t->model), tensors);
        for (int i = 0; i < nt; i++) {
            const slex_hubert_tensor *x = &tensors[i];
            if (x->site < 0 || !layer_on[x->layer] || !which[x->site]) continue;
            size_t len = strlen(x->name) - strlen(".weight");
            if (!(modules[n] = malloc(len + 1))) break;
            snprintf(modules[n++], len + 1, "%s", x->name);
        }
    }
    free(tensors);
    if (!rc && !modules) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    if (!rc) {
        slex_lora_config cfg;
        slex_lora_config_default(&cfg);
        cfg.r = o->lora_rank;
        cfg.lora_alpha = o->lora_alpha;
        cfg.use_rslora = o->rslora;
        snprintf(cfg.base_model_name_or_path, sizeof cfg.base_model_name_or_path, "%s", o->init);
        t->lora = slex_lora_create(&cfg, (const char *const *)modules, n, t->model, err);
        if (!t->lora) rc = -1;
    }
    for (int i = 0; modules && i < n; i++) free(modules[i]);
    free(modules);
    free(layer_on);
    if (rc) return -1;
    slex_rng rng;
    slex_rng_seed(&rng, o->seed ^ 0x4c6f5241ULL); /* "LoRA" */
    for (int i = 0; i < t->lora->n_targets; i++) {
        const slex_lora_target *tg = &t->lora->targets[i];
        double bound = 1.0 / sqrt((double)tg->in);
        for (int64_t j = 0; j < (int64_t)tg->r * tg->in; j++) tg->A[j] = (float)((2 * slex_rng_uniform(&rng) - 1) * bound);
    }
    return 0;
}

/* ---- loading -------------------------------------------------------------------------------- */

static int is_slex_checkpoint(const char *dir) {
    char path[FILE_CAP];
    snprintf(path, sizeof path, "%s/slex_checkpoint.json", dir);
    return slex_path_exists(path);
}

/* The head.safetensors that slex writes beside a HF model (OUT/model/, models/base-en), when
 * present and the model's own: the same width and mask embedding (slex writes it into both). */
static int load_hf_head(trainer *t, const char *dir, slex_error *err) {
    char path[FILE_CAP];
    snprintf(path, sizeof path, "%s/head.safetensors", dir);
    if (!slex_path_exists(path)) return 0;
    if (!(t->head = slex_head_load(path, err))) return -1;
    int C = slex_hubert_get_config(t->model)->hidden_size;
    const float *model_mask = slex_hubert_get_params(t->model)->mask_emb;
    int own = t->head->cfg.hidden_size == C && !memcmp(t->head->mask_emb, model_mask, (size_t)C * sizeof(float));
    if (!own) {
        if (t->rank == 0) slex_info("%s: head.safetensors is not this model's (another width or mask embedding): not used", dir);
        slex_head_free(t->head);
        t->head = NULL;
    }
    return 0;
}

/* Model (+ head, + adapter) from a HF directory or a slex checkpoint, loaded for training. */
static int load_model(trainer *t, const char *dir, int resuming, slex_error *err) {
    const slex_train_options *o = t->o;
    slex_checkpoint_load_options lo;
    slex_checkpoint_load_options_default(&lo);
    lo.model.keep_activations = 1;
    lo.model.keep_cnn_activations = o->full && o->feature_grad_mult > 0;
    lo.model.frozen_ffn = !o->full && !strstr(o->lora_targets, "fc"); /* no fc1, fc2 adapters */
    lo.model.max_batch = o->batch.micro_batch;
    lo.model.max_chunk_samples = o->batch.max_sample_size;
    if (!o->full) {
        /* LoRA mode: nothing below the lowest adapted layer trains (train/step.h: the mask
         * embedding is frozen), so the model keeps activations from there up. */
        char path[FILE_CAP];
        snprintf(path, sizeof path, "%s/config.json", dir);
        slex_hubert_config cfg;
        if (slex_hubert_config_load(path, &cfg, err) ||
            parse_layers(o->lora_layers, cfg.num_hidden_layers, NULL, &lo.model.first_trained_layer, err))
            return -1;
        if (lo.model.first_trained_layer >= cfg.num_hidden_layers)
            return slex_fail_as(err, SLEX_ERR_INPUT, "--lora-layers %s: %s has layers 1..%d", o->lora_layers, dir,
                                cfg.num_hidden_layers);
    }
    if (!resuming && o->arch) {
        if (!(t->model = slex_hubert_create(o->arch, &lo.model, err))) return -1;
        if (t->rank == 0) slex_info("%s: random weights (seed %llu)", o->arch, (unsigned long long)o->seed);
        return slex_hubert_init_random(t->model, o->seed, err);
    }
    if (!is_slex_checkpoint(dir)) {
        if (!(t->model = slex_hubert_load(dir, &lo.model, err))) return -1;
        return load_hf_head(t, dir, err);
    }
    slex_checkpoint *ck = slex_checkpoint_load(dir, &lo, err);
    if (!ck) return -1;
    t->model = ck->model;
    t->head = ck->head;
    slex_lora *lora = ck->lora;
    ck->model = NULL;
    ck->head = NULL;
    ck->lora = NULL;
    slex_checkpoint_free(ck);
    if (lora && resuming && !o->full) {
        t->lora = lora; /* the adapter being trained */
    } else if (lora) {
        /* Starting from an adapted model (the second iteration): its adapter becomes part of the base. */
        int rc = slex_lora_merge(lora, t->model, err);
        slex_lora_free(lora);
        if (rc) return -1;
        slex_hubert_params_changed(t->model);
        if (t->rank == 0) slex_info("%s: its LoRA adapter is merged into the base weights", dir);
    }
    return 0;
}

/* What the run's labels number (model/checkpoint.h: label_set): the codebooks of its label
 * stores, sorted and joined, or "" when a source is a .km file or there are too many. */
static void run_label_set(const slex_batcher *b, char out[SLEX_HEAD_LABEL_SET_CAP]) {
    int n = slex_batcher_num_sources(b), m = 0;
    const char *crc[SLEX_HEAD_LABEL_SET_CAP / 9];
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        slex_source_info info;
        slex_batcher_source_info(b, i, &info);
        if (!info.codebook_crc32) return;
        int j = 0;
        while (j < m && strcmp(crc[j], info.codebook_crc32) < 0) j++;
        if (j < m && !strcmp(crc[j], info.codebook_crc32)) continue;
        if (m == (int)(sizeof crc / sizeof crc[0])) return;
        memmove(crc + j + 1, crc + j, (size_t)(m - j) * sizeof crc[0]);
        crc[j] = info.codebook_crc32;
        m++;
    }
    for (int j = 0; j < m; j++) snprintf(out + strlen(out), SLEX_HEAD_LABEL_SET_CAP - strlen(out), "%s%s", j ? "+" : "", crc[j]);
}

/* The head: the loaded one when it numbers these labels (the same unit count, and the same
 * codebooks where both sides record them), else a new one for K units. */
static int setup_head(trainer *t, int resuming, slex_error *err) {
    int K = t->o->batch.num_classes, C = t->cfg->hidden_size;
    float *model_mask = slex_hubert_get_params(t->model)->mask_emb;
    char labels[SLEX_HEAD_LABEL_SET_CAP];
    run_label_set(t->batcher, labels);
    const char *had = t->head ? t->head->cfg.label_set : "";
    int other_set = had[0] && labels[0] && strcmp(had, labels);
    if (t->head && t->head->cfg.num_classes == K && !other_set) {
        if (t->rank == 0 && !resuming)
            slex_info("head of %s reused (%d units, %s)", t->o->init, K,
                      had[0] && labels[0] ? "the same codebook" : "matched on the unit count: a label set is not recorded");
        memcpy(model_mask, t->head->mask_emb, (size_t)C * sizeof(float));
        snprintf(t->head->cfg.label_set, sizeof t->head->cfg.label_set, "%s", labels);
        return 0;
    }
    if (t->head && t->rank == 0) {
        if (other_set)
            slex_info("the head of %s numbers the units of codebook %s, the labels are of %s: a new head", t->o->init, had,
                      labels);
        else
            slex_info("the head of %s has %d units, the labels %d: a new head", t->o->init, t->head->cfg.num_classes, K);
    }
    slex_head_free(t->head);
    slex_head_config hc;
    slex_head_config_default(&hc);
    hc.hidden_size = C;
    hc.num_classes = K;
    hc.final_dim = t->o->final_dim;
    slex_source_info info;
    slex_batcher_source_info(t->batcher, 0, &info);
    hc.label_rate = info.label_rate;
    snprintf(hc.label_set, sizeof hc.label_set, "%s", labels);
    if (!(t->head = slex_head_create(&hc, err))) return -1;
    slex_head_init(t->head, t->o->seed, t->o->label_emb_normal ? SLEX_LABEL_EMB_NORMAL : SLEX_LABEL_EMB_UNIFORM);
    if (t->rank == 0 && !resuming) slex_info("new head for %d units (final dim %d)", K, hc.final_dim);
    /* The model's masked_spec_embed when it has one (a HF model), else the head's fresh one. */
    int zero = 1;
    for (int c = 0; c < C; c++) zero &= model_mask[c] == 0;
    if (zero) memcpy(model_mask, t->head->mask_emb, (size_t)C * sizeof(float));
    else memcpy(t->head->mask_emb, model_mask, (size_t)C * sizeof(float));
    return 0;
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

static int save_optimizer(const trainer *t, const char *dir, slex_error *err) {
    char path[FILE_CAP];
    snprintf(path, sizeof path, "%s/optimizer.bin", dir);
    slex_atomic a;
    if (slex_atomic_fopen(&a, path, err)) return -1;
    int64_t n = slex_optim_num_params(t->optim), updates = slex_optim_updates(t->optim);
    const char magic[8] = "SLEXADM1";
    int bad = fwrite(magic, 8, 1, a.f) != 1 || fwrite(&n, 8, 1, a.f) != 1 || fwrite(&updates, 8, 1, a.f) != 1 ||
              fwrite(slex_optim_exp_avg(t->optim), sizeof(float), (size_t)n, a.f) != (size_t)n ||
              fwrite(slex_optim_exp_avg_sq(t->optim), sizeof(float), (size_t)n, a.f) != (size_t)n;
    if (bad) {
        slex_atomic_abandon(&a);
        return slex_fail_as(err, SLEX_ERR_IO, "%s: write failed (disk full?)", path);
    }
    return slex_atomic_commit(&a, err);
}

static int load_optimizer(trainer *t, const char *dir, slex_error *err) {
    char path[FILE_CAP];
    snprintf(path, sizeof path, "%s/optimizer.bin", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: %s", path, strerror(errno));
    char magic[8];
    int64_t n, updates;
    int64_t want = slex_optim_num_params(t->optim);
    int bad = fread(magic, 8, 1, f) != 1 || memcmp(magic, "SLEXADM1", 8) || fread(&n, 8, 1, f) != 1 ||
              fread(&updates, 8, 1, f) != 1 || n != want;
    bad = bad || fread(slex_optim_exp_avg(t->optim), sizeof(float), (size_t)n, f) != (size_t)n ||
          fread(slex_optim_exp_avg_sq(t->optim), sizeof(float), (size_t)n, f) != (size_t)n || fgetc(f) != EOF;
    fclose(f);
    if (bad) return slex_fail_as(err, SLEX_ERR_INPUT, "%s: not the optimizer state of this run (damaged, or %lld parameters)", path, (long long)want);
    slex_optim_set_updates(t->optim, updates);
    return 0;
}

static int descending(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x < y) - (x > y);
}

/* Removes the checkpoints of OUT older than step but the newest keep - 1 of them. */
static void prune_checkpoints(const char *out, int64_t step, int64_t keep) {
    if (keep < 0) return;
    long long *steps = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(out);
    for (struct dirent *e; d && (e = readdir(d));) {
        long long s;
        char tail;
        if (sscanf(e->d_name, "checkpoint-%lld%c", &s, &tail) != 1 || s >= step) continue;
        if (n == cap) {
            long long *grown = realloc(steps, (cap = cap ? 2 * cap : 16) * sizeof *steps);
            if (!grown) { /* out of memory: keep them all this time (a partial list could name a newest one) */
                closedir(d);
                free(steps);
                return;
            }
            steps = grown;
        }
        steps[n++] = s;
    }
    if (d) closedir(d);
    if (n > 1) qsort(steps, n, sizeof *steps, descending); /* steps is NULL when there are none */
    for (size_t i = (size_t)keep - 1; i < n; i++) {
        char path[PATH_CAP];
        snprintf(path, sizeof path, "%s/checkpoint-%lld", out, steps[i]);
        remove_tree(path);
    }
    free(steps);
}

/* checkpoint-<step>/: model, head (with the model's mask embedding), adapter, optimizer, then
 * trainer.json, which makes it count; then older checkpoints go (--keep-interval-updates). */
static int save_checkpoint(trainer *t, slex_error *err) {
    char dir[PATH_CAP], path[FILE_CAP];
    checkpoint_dir(t->o->out, t->step, dir, sizeof dir);
    memcpy(t->head->mask_emb, slex_hubert_get_params(t->model)->mask_emb, (size_t)t->cfg->hidden_size * sizeof(float));
    slex_checkpoint_save_options so;
    slex_checkpoint_save_options_default(&so);
    so.step = t->step;
    so.overwrite = 1;
    if (slex_checkpoint_save(dir, t->model, t->head, t->lora, &so, err) || save_optimizer(t, dir, err)) return -1;
    char text[128];
    snprintf(text, sizeof text, "{\"step\": %lld}\n", (long long)t->step);
    snprintf(path, sizeof path, "%s/trainer.json", dir);
    if (slex_write_file_atomic(path, text, strlen(text), err)) return -1;
    prune_checkpoints(t->o->out, t->step, t->o->keep_interval_updates);
    return 0;
}

/* train_log.jsonl cut back to the lines of steps <= step (a resumed run rewrites the rest). */
static int truncate_log(const char *out, int64_t step, slex_error *err) {
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/train_log.jsonl", out);
    if (!slex_path_exists(path)) return 0;
    size_t len;
    char *text = slex_read_text_file(path, &len, err);
    if (!text) return -1;
    size_t keep = 0;
    for (char *p = text; *p;) {
        char *end = strchr(p, '\n');
        if (!end) break; /* a torn last line goes */
        *end = 0;
        cJSON *line = cJSON_Parse(p);
        *end = '\n';
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(line, "step");
        int keep_line = cJSON_IsNumber(s) && s->valuedouble <= (double)step;
        cJSON_Delete(line);
        if (!keep_line) break;
        keep = (size_t)(end + 1 - text);
        p = end + 1;
    }
    int rc = keep == len ? 0 : slex_write_file_atomic(path, text, keep, err);
    free(text);
    return rc;
}

/* ---- one update ----------------------------------------------------------------------------- */

/* Forward and backward of one micro-batch into the (zeroed) gradient buffer; stats[] gets its
 * loss terms.  Its mask, layerdrop and dropout are drawn from draw_seed alone. */
static int micro_step(trainer *t, const slex_batch_plan *plan, int m, uint64_t draw_seed, double *stats,
                      slex_error *err) {
    if (slex_batcher_load(t->batcher, plan, m, &t->mb, err)) return -1;
    int B = t->mb.B, L = t->cfg->num_hidden_layers;
    int64_t T = t->mb.T, N = t->mb.L;
    /* The model's frames of N samples may exceed the labelled T (the labels end earlier;
     * fairseq then trims the features): the crop to T frames is taken on the waveform, rf +
     * (T-1)*stride samples (the same frames for a layer-norm CNN; a group-norm CNN then
     * normalises over fewer samples than fairseq). */
    if (slex_hubert_chunk_frames(t->model, N) > T) {
        int64_t n_crop = slex_hubert_receptive_field(t->model) + (T - 1) * slex_hubert_total_stride(t->model);
        for (int b = 1; b < B; b++) memmove(t->mb.wave + b * n_crop, t->mb.wave + b * N, (size_t)n_crop * sizeof(float));
        N = n_crop;
    }
    if (B * T > t->cap_frames) {
        uint8_t *mask = realloc(t->mask, (size_t)(B * T));
        if (!mask) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %lld frames", (long long)(B * T));
        t->mask = mask;
        t->cap_frames = B * T;
    }
    slex_rng rng;
    slex_rng_seed(&rng, draw_seed);
    if (slex_mask_compute(&t->o->mask, B, (int)T, &rng, t->mask, NULL, err)) return -1;
    if (!t->skip && !(t->skip = malloc((size_t)L))) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    for (int l = 0; l < L; l++) t->skip[l] = slex_rng_uniform(&rng) < t->o->layerdrop;
    slex_trainer_set_draws(t->stepper, t->skip, slex_rng_next(&rng));
    slex_head_stats hs;
    double pen;
    if (slex_trainer_accumulate(t->stepper, t->mb.wave, B, N, t->mask, t->mb.labels, T, &hs, &pen, err)) return -1;
    stats[S_LOSS] = hs.loss; /* the penalty term included */
    stats[S_LOSS_M] = hs.loss_m;
    stats[S_LOSS_U] = hs.loss_u;
    stats[S_PEN] = pen;
    stats[S_SAMPLE] = (double)hs.sample_size;
    stats[S_COUNT_M] = (double)hs.count_m;
    stats[S_COUNT_U] = (double)hs.count_u;
    stats[S_CORRECT_M] = (double)hs.correct_m;
    stats[S_CORRECT_U] = (double)hs.correct_u;
    return 0;
}

/* A micro-batch whose loss or gradient is not finite stops the run on every rank, naming the
 * step, the micro-batch and its source.  The update is not applied and no checkpoint follows,
 * so the last checkpoint on disk is the last good state (re-running resumes from it). */
static int check_finite(const trainer *t, const slex_batch_plan *plan, int m, int j, double loss, const float *grad,
                        int64_t len, slex_error *err) {
    int64_t bad = -1;
    for (int64_t i = 0; isfinite(loss) && bad < 0 && i < len; i++)
        if (!isfinite(grad[i])) bad = i;
    if (isfinite(loss) && bad < 0) return 0;
    slex_source_info info;
    slex_batcher_source_info(t->batcher, plan->items[plan->micro_start[m]].source, &info);
    char what[96], kept[PATH_CAP + 64];
    double v = bad < 0 ? loss : (double)grad[bad];
    const char *value = isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
    if (bad < 0) snprintf(what, sizeof what, "the loss is %s", value);
    else snprintf(what, sizeof what, "the loss is finite but gradient element %lld is %s", (long long)bad, value);
    int64_t last = last_checkpoint(t->o->out);
    if (last >= 0) snprintf(kept, sizeof kept, "the last good checkpoint %s/checkpoint-%lld is kept", t->o->out, (long long)last);
    else snprintf(kept, sizeof kept, "no checkpoint was written before it");
    return slex_fail_as(err, SLEX_ERR_INPUT,
                        "step %lld, micro-batch %d (source %s:%s): %s: the training diverged (a lower --lr, more "
                        "--warmup-steps?) or the model overflows; %s", (long long)t->step + 1, j, info.manifest, info.labels, what, kept);
}

/* Micro-batches of one update: (k, m) pairs in order, j = their index. */
typedef struct update_plan {
    slex_batch_plan plans[64];
    int n_plans;
    int total; /* micro-batches */
} update_plan;

static int write_log_line(trainer *t, const double *all, const double *per_source, int n_micro, double lr,
                          double grad_norm, double seconds, int64_t samples, slex_error *err) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)t->step);
    double ss = all[S_SAMPLE] > 0 ? all[S_SAMPLE] : 1;
    cJSON_AddNumberToObject(o, "loss", all[S_LOSS] / ss / M_LN2); /* fairseq logs base 2 */
    for (int s = 0; s < t->n_sources; s++) {
        const double *v = per_source + s * N_STATS;
        if (v[S_SAMPLE] <= 0) continue;
        char key[32];
        snprintf(key, sizeof key, "loss_%d", s);
        cJSON_AddNumberToObject(o, key, v[S_LOSS] / v[S_SAMPLE] / M_LN2);
        snprintf(key, sizeof key, "acc_masked_%d", s);
        if (v[S_COUNT_M] > 0) cJSON_AddNumberToObject(o, key, v[S_CORRECT_M] / v[S_COUNT_M]);
    }
    if (all[S_COUNT_M] > 0) cJSON_AddNumberToObject(o, "acc_masked", all[S_CORRECT_M] / all[S_COUNT_M]);
    if (all[S_COUNT_U] > 0) cJSON_AddNumberToObject(o, "acc_unmasked", all[S_CORRECT_U] / all[S_COUNT_U]);
    cJSON_AddNumberToObject(o, "features_pen", all[S_PEN] / n_micro); /* mean over micro-batches */
    cJSON_AddNumberToObject(o, "lr", lr);
    cJSON_AddNumberToObject(o, "grad_norm", grad_norm);
    cJSON_AddNumberToObject(o, "sample_size", all[S_SAMPLE]);
    cJSON_AddNumberToObject(o, "audio_seconds_per_second", seconds > 0 ? (double)samples / 16000.0 / seconds : 0);
    cJSON_AddNumberToObject(o, "seconds_per_step", seconds);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/train_log.jsonl", t->o->out);
    FILE *f = fopen(path, "a");
    int bad = !f || fprintf(f, "%s\n", text) < 0;
    if (f) bad |= fclose(f) != 0;
    free(text);
    return bad ? slex_fail_as(err, SLEX_ERR_IO, "%s: write failed", path) : 0;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Agrees on failure: -1 on every rank when one failed (its err says why). */
static int all_ok(const trainer *t, int rc, slex_error *err) {
    double v = rc ? 1 : 0;
    slex_error e2;
    if (slex_exact_comm_max(t->comm, &v, 1, &e2)) return rc ? rc : slex_fail_as(err, e2.kind, "%s", e2.msg);
    if (v > 0 && !rc) {
        slex_error_clear(err);
        return -1;
    }
    return rc;
}

/* The statistics rows (rows x [all | per source] x N_STATS) summed exactly over ranks, each
 * statistic on its own fixed-point scale: on one scale, a huge loss would round the frame
 * counts beside it away. */
static int sum_stats(const trainer *t, const double *stats, int rows, int total_rows, double *out, slex_error *err) {
    int64_t width = t->n_sources + 1;
    double *col = malloc((size_t)((rows ? rows : 1) * width) * sizeof *col), *sum = malloc((size_t)width * sizeof *sum);
    int rc = col && sum ? 0 : slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    for (int k = 0; !rc && k < N_STATS; k++) {
        for (int64_t i = 0; i < rows * width; i++) col[i] = stats[i * N_STATS + k];
        rc = slex_exactsum_f64(col, rows, width, 0, total_rows, t->comm, sum, err);
        for (int64_t s = 0; !rc && s < width; s++) out[s * N_STATS + k] = sum[s];
    }
    free(col);
    free(sum);
    return rc;
}

static int one_update(trainer *t, slex_error *err) {
    const slex_train_options *o = t->o;
    double t0 = now_seconds();
    update_plan up = {.n_plans = o->update_freq > 64 ? 64 : o->update_freq};
    int rc = 0;
    for (int k = 0; !rc && k < up.n_plans; k++) {
        rc = slex_batcher_plan(t->batcher, t->step, k, &up.plans[k], err);
        if (!rc) up.total += up.plans[k].n_micro;
    }
    int64_t len = slex_optim_num_params(t->optim);
    int mine = 0;
    for (int j = 0; j < up.total; j++) mine += j % t->size == t->rank;
    float *rows = rc ? NULL : malloc((size_t)(mine ? mine : 1) * (size_t)len * sizeof(float));
    double *stats = calloc((size_t)(mine ? mine : 1) * (size_t)(t->n_sources + 1) * N_STATS, sizeof *stats);
    if (!rc && (!rows || !stats)) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %d gradient rows of %lld floats", mine, (long long)len);
    int64_t samples = 0;
    int row = 0;
    for (int k = 0, j = 0; k < up.n_plans; k++)
        for (int m = 0; m < up.plans[k].n_micro; m++, j++) {
            int64_t rows_here = up.plans[k].micro_start[m + 1] - up.plans[k].micro_start[m];
            samples += rows_here * up.plans[k].crop;
            if (rc || j % t->size != t->rank) continue;
            slex_optim_zero_grad(t->optim);
            /* Draws of micro-batch j: a function of (seed, step, j) only. */
            uint64_t mix = o->seed ^ 0x6d61736bULL;
            uint64_t seed = slex_splitmix64(&mix) ^ ((uint64_t)t->step * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)j << 32);
            double st[N_STATS] = {0};
            rc = micro_step(t, &up.plans[k], m, seed, st, err);
            if (rc) break;
            memcpy(rows + (int64_t)row * len, slex_optim_grads(t->optim), (size_t)len * sizeof(float));
            if ((rc = check_finite(t, &up.plans[k], m, j, st[S_LOSS], rows + (int64_t)row * len, len, err))) break;
            /* stats rows: [all | per source], only this row's source filled */
            double *srow = stats + (int64_t)row * (t->n_sources + 1) * N_STATS;
            memcpy(srow, st, sizeof st);
            memcpy(srow + (1 + up.plans[k].items[up.plans[k].micro_start[m]].source) * N_STATS, st, sizeof st);
            row++;
        }
    rc = all_ok(t, rc, err);
    double *sum = rc ? NULL : malloc((size_t)len * sizeof *sum);
    double *stat_sum = rc ? NULL : malloc((size_t)(t->n_sources + 1) * N_STATS * sizeof *stat_sum);
    if (!rc && (!sum || !stat_sum)) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    rc = all_ok(t, rc, err);
    /* an exponent per GRAD_SCALE_BLOCK values: a small gradient beside a large one keeps its bits */
    if (!rc) rc = slex_exactsum_f32(rows, mine, len, GRAD_SCALE_BLOCK, up.total, t->comm, sum, err);
    if (!rc) rc = sum_stats(t, stats, mine, up.total, stat_sum, err);
    double lr = slex_lr_at(&o->lr, t->step), grad_norm = 0;
    if (!rc) {
        float *g = slex_optim_grads(t->optim);
        for (int64_t i = 0; i < len; i++) g[i] = (float)sum[i];
        if (stat_sum[S_SAMPLE] <= 0)
            rc = slex_fail_as(err, SLEX_ERR_INPUT, "step %lld: no frame carried a loss", (long long)t->step + 1);
        if (!rc && slex_trainer_update_total(t->stepper, lr, (int64_t)stat_sum[S_SAMPLE], &grad_norm, err))
            rc = slex_fail_wrap(err, "step %lld", (long long)t->step + 1);
    }
    if (!rc) {
        t->step++;
        double seconds = now_seconds() - t0;
        if (t->rank == 0)
            rc = write_log_line(t, stat_sum, stat_sum + N_STATS, up.total, lr, grad_norm, seconds, samples, err);
    }
    for (int k = 0; k < up.n_plans; k++) slex_batch_plan_free(&up.plans[k]);
    free(rows);
    free(stats);
    free(sum);
    free(stat_sum);
    return rc;
}

/* ---- the run -------------------------------------------------------------------------------- */

static void trainer_free(trainer *t) {
    slex_hubert_free(t->model);
    slex_head_free(t->head);
    slex_lora_free(t->lora);
    slex_trainer_free(t->stepper);
    slex_batcher_free(t->batcher);
    slex_microbatch_free(&t->mb);
    free(t->mask);
    free(t->skip);
}

static int log_trainable(const trainer *t) {
    int64_t trainable = slex_trainer_num_trainable(t->stepper);
    int64_t total = slex_hubert_num_parameters(t->model) + t->head->num_params - t->cfg->hidden_size +
                    (t->lora ? t->lora->num_params : 0);
    slex_info("%s: %lld trainable parameters of %lld (%.2f %% of the model with its head%s)", t->o->full ? "full" : "LoRA",
              (long long)trainable, (long long)total, 100.0 * (double)trainable / (double)total,
              t->lora ? ", adapters included" : "");
    return 0;
}

/* The final result: adapter/ (+ merged/) or model/, then done.json. */

/* A Hugging Face HubertModel directory of the model's weights (config.json, model.safetensors,
 * preprocessor_config.json: without it a reload guesses the waveform normalisation from the conv
 * stack's norm, which is not always what the base model said). */
static int save_hf_dir(const slex_hubert *model, const char *dir, slex_error *err) {
    char file[FILE_CAP];
    if (slex_mkdirs(dir, err)) return -1;
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    if (slex_checkpoint_save_weights(model, NULL, file, err)) return -1;
    snprintf(file, sizeof file, "%s/preprocessor_config.json", dir);
    if (slex_checkpoint_save_preprocessor_config(model, file, err)) return -1;
    snprintf(file, sizeof file, "%s/config.json", dir);
    return slex_checkpoint_save_config(model, NULL, file, err);
}
static int write_result(trainer *t, const char *params, slex_error *err) {
    char path[PATH_CAP];
    memcpy(t->head->mask_emb, slex_hubert_get_params(t->model)->mask_emb, (size_t)t->cfg->hidden_size * sizeof(float));
    if (t->lora) {
        snprintf(path, sizeof path, "%s/adapter", t->o->out);
        if (slex_lora_save(t->lora, path, err)) return -1;
        if (t->o->merge) {
            if (slex_lora_merge(t->lora, t->model, err)) return -1;
            snprintf(path, sizeof path, "%s/merged", t->o->out);
            if (save_hf_dir(t->model, path, err)) return -1;
        }
    } else {
        snprintf(path, sizeof path, "%s/model", t->o->out);
        if (save_hf_dir(t->model, path, err)) return -1;
        char file[FILE_CAP];
        snprintf(file, sizeof file, "%s/head.safetensors", path);
        if (slex_head_save(t->head, file, err)) return -1;
    }
    snprintf(path, sizeof path, "%s/done.json", t->o->out);
    char *line = malloc(strlen(params) + 2);
    if (!line) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    sprintf(line, "%s\n", params);
    int rc = slex_write_file_atomic(path, line, strlen(line), err);
    free(line);
    return rc;
}

int slex_train_run(const slex_train_options *o, const slex_data_spec *specs, int n_specs, const slex_exact_comm *comm,
                   slex_train_outcome *outcome, slex_error *err) {
    trainer t = {.o = o, .comm = comm};
    slex_exact_comm_rank_size(comm, &t.rank, &t.size);
    *outcome = SLEX_TRAIN_FINISHED;
    if (slex_train_options_validate(o, err)) return -1;
    char *params = run_params(o, specs, n_specs, err);
    out_state state = OUT_FRESH;
    int rc = params ? check_out(o, params, &state, err) : -1;
    rc = all_ok(&t, rc, err);
    if (!rc && state == OUT_FINISHED) {
        *outcome = SLEX_TRAIN_ALREADY_DONE;
        free(params);
        return 0;
    }
    int64_t resume_step = rc || state != OUT_RESUMABLE ? -1 : last_checkpoint(o->out);
    char from[PATH_CAP];
    if (resume_step >= 0) checkpoint_dir(o->out, resume_step, from, sizeof from);
    else snprintf(from, sizeof from, "%s", o->init ? o->init : o->arch);
    /* The loaders validate what they read (header bounds, shapes, finite values, CRCs, an adapter
     * against its base): a failure they leave unclassified is the input's; memory and file-system
     * failures carry their own kinds. */
    if (!rc && (rc = load_model(&t, from, resume_step >= 0, err)) && err && err->kind == SLEX_ERR_UNKNOWN)
        err->kind = SLEX_ERR_INPUT;
    if (!rc) {
        t.cfg = slex_hubert_get_config(t.model);
        slex_batch_options bo = o->batch;
        bo.normalize = slex_hubert_normalizes_waveform(t.model);
        t.batcher = slex_batcher_open(&bo, specs, n_specs, t.cfg, err);
        if (!t.batcher) rc = -1;
        else t.n_sources = slex_batcher_num_sources(t.batcher);
    }
    if (!rc) rc = setup_head(&t, resume_step >= 0, err);
    if (!rc && !o->full && !t.lora) rc = create_lora(&t, err);
    if (!rc) {
        slex_step_options so;
        slex_step_options_default(&so);
        so.lora = !o->full;
        so.feature_grad_mult = (float)o->feature_grad_mult;
        so.crit = o->crit;
        so.adam = o->adam;
        so.clip_norm = o->clip_norm;
        so.dropout = (float)o->dropout;
        so.attention_dropout = (float)o->attention_dropout;
        so.activation_dropout = (float)o->activation_dropout;
        t.stepper = slex_trainer_create(t.model, t.head, t.lora, &so, err);
        if (!t.stepper) rc = -1;
        else t.optim = slex_trainer_optim(t.stepper);
    }
    if (!rc && resume_step >= 0) {
        rc = load_optimizer(&t, from, err);
        t.step = resume_step;
        if (!rc && t.rank == 0) rc = truncate_log(o->out, resume_step, err);
        if (!rc && t.rank == 0) slex_info("resuming from %s (step %lld of %lld)", from, (long long)resume_step, (long long)o->steps);
    }
    /* Every input has loaded and fits: only now does a new run replace what OUT holds. */
    rc = all_ok(&t, rc, err);
    if (!rc && resume_step < 0 && t.rank == 0) rc = claim_out(o, params, err);
    if (!rc && t.rank == 0 && resume_step < 0) log_trainable(&t);
    rc = all_ok(&t, rc, err);
    double t0 = now_seconds(), last_log = 0;
    int64_t first = t.step;
    while (!rc && t.step < o->steps) {
        rc = all_ok(&t, one_update(&t, err), err);
        if (!rc && (t.step % o->checkpoint_every == 0 || t.step == o->steps) && t.rank == 0) rc = save_checkpoint(&t, err);
        rc = all_ok(&t, rc, err);
        if (!rc && t.rank == 0 && (now_seconds() - last_log >= 30 || t.step == o->steps || t.step == first + 1)) {
            last_log = now_seconds();
            double el = now_seconds() - t0, rate = (double)(t.step - first) / (el > 0 ? el : 1);
            slex_info("step %lld/%lld, %.2f steps/s, ETA %.0f s", (long long)t.step, (long long)o->steps, rate,
                      rate > 0 ? (double)(o->steps - t.step) / rate : 0);
        }
    }
    if (!rc && t.rank == 0) rc = write_result(&t, params, err);
    rc = all_ok(&t, rc, err);
    trainer_free(&t);
    free(params);
    return rc;
}
