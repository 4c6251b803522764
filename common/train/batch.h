/* batch: training data — sources of audio with frame labels, and the batches of every update,
 * drawn as a function of (seed, step) alone so that a resumed run draws the same batches.
 *
 * A source is `MANIFEST:LABELS[:WEIGHT]` (weight default 1): a fairseq manifest and either a
 * slex-label store (a directory; its frame rate is the label rate, its utterances must be the
 * manifest's, in order) or a fairseq .km file (one line of unit ids per manifest line, label
 * rate from the options).  At open, as fairseq's HubertDataset: utterances whose manifest
 * length is below min_sample_size are skipped (counted); for every other one the label count
 * must agree with the audio, |num_samples / 16000 - labels / label_rate| <= 0.1 s, and every
 * label must be in [0, K).  Errors name the file, the manifest line and the reason; a
 * malformed manifest line, a label file with another number of lines, a store of another manifest and a
 * source with no usable utterance are errors (kind SLEX_ERR_INPUT).  Every label id, also of skipped
 * utterances, is checked against K in one streaming pass at open (a .km line by line, a store
 * 65,536 rows at a time, with each shard's CRC-32), so bad labels are refused before training.
 * No label stays in memory: per utterance only its label count and (.km) its line's byte offset
 * (16 bytes); a load reads the rows it needs again, from the .km line or from the store shard
 * (at most 4 shards kept open per source).  A file changed since the check is an error.
 *
 * A global batch (fairseq's batch, pad_audio=False, random_crop=True):
 *   1. an anchor: a source drawn by weight, one of its usable utterances uniformly; the crop
 *      length is L = min(its length, max_sample_size) samples;
 *   2. n = max(1, floor(max_tokens / L)) slots, each given a source drawn by weight among the
 *      sources holding an utterance of at least L samples;
 *   3. each source fills its c slots with c distinct utterances drawn uniformly from a window
 *      of n of its utterances of similar length (fairseq batches utterances of similar
 *      length): the n shortest at least as long as the anchor, moved down to n when fewer are
 *      left, never below L; a source with fewer than c utterances of L samples fills what it can;
 *   4. every utterance is cropped to L samples at a uniform offset in [0, len - L] (manifest
 *      lengths; the audio read must hold them);
 *   5. the slots, grouped by source, are cut into micro-batches of at most micro_batch
 *      utterances, each from one source: the unit one rank computes whole.
 * Frames and labels (fairseq's collater_frm_label and HubertModel.forward_targets): with label
 * rate r and the model's total stride S, the row cropped at sample o takes labels from
 * f0 = round(o r / 16000) (half to even), at most round(L r / 16000) of them and no more than
 * the utterance has after f0; the model keeps T = min(frames of the conv stack on L samples,
 * int(labels kept / ratio)) frames over the whole batch, ratio = r S / 16000, and frame i takes
 * label f0 + floor(i * ratio) (computed in float32, as torch does).
 *
 * Draws: batch k (0-based) of update `step` uses slex's generator seeded with
 * splitmix64-mixed (seed, step, k), in the order anchor source, anchor utterance, slot sources,
 * per source (in source order) the distinct utterances (partial Fisher-Yates over the window),
 * then the crop offsets in slot order. */
#ifndef SLEX_TRAIN_BATCH_H
#define SLEX_TRAIN_BATCH_H

#include <stdint.h>

#include "core/err.h"
#include "core/options.h"
#include "model/hf_config.h"

#define SLEX_BATCH_SAMPLE_RATE 16000

typedef struct slex_batch_options {
    int64_t max_tokens;      /* audio samples per global batch; default 1,400,000 (Base recipe) */
    int micro_batch;         /* utterances per micro-batch; default 8 */
    int64_t max_sample_size; /* longer utterances are cropped; default 250,000 */
    int64_t min_sample_size; /* shorter ones (manifest length) are skipped; default 32,000 */
    double label_rate;       /* labels per second of .km sources; default -1 (required for .km) */
    int num_classes;         /* K: labels must be in [0, K); required */
    double tolerance_s;      /* audio/label duration tolerance; default 0.1 (fairseq) */
    int normalize;           /* 1: each utterance is normalised (zero mean, unit variance over the
                                whole file, eps 1e-5) before the crop, as fairseq's normalize;
                                default 0 */
    uint64_t seed;           /* default 1 */
} slex_batch_options;

void slex_batch_options_default(slex_batch_options *o);
/* The options registered once (--num-classes, --label-rate, --max-tokens, --micro-batch,
 * --max-sample-size, --min-sample-size); tolerance_s, normalize and seed are set by the trainer. */
extern const slex_option_table slex_batch_option_table;
int slex_batch_options_validate(const slex_batch_options *o, slex_error *err);

typedef struct slex_data_spec {
    char manifest[4096];
    char labels[4096];
    double weight;
} slex_data_spec;

/* "MANIFEST:LABELS[:WEIGHT]" (the last field is a weight when it parses as a number >= 0). */
int slex_data_spec_parse(const char *text, slex_data_spec *spec, slex_error *err);

typedef struct slex_batcher slex_batcher;

typedef struct slex_source_info {
    const char *manifest, *labels;
    double weight;
    double label_rate;
    const char *codebook_crc32; /* the codebook a slex-label store was made with; NULL for .km */
    int64_t usable;        /* utterances that can be drawn */
    int64_t skipped_short; /* below min_sample_size */
    int64_t samples;       /* manifest samples of the usable ones */
} slex_source_info;

/* Opens and checks every source (see above).  model gives the conv stack (frames, stride). */
slex_batcher *slex_batcher_open(const slex_batch_options *opts, const slex_data_spec *specs, int n_specs,
                                const slex_hubert_config *model, slex_error *err);
void slex_batcher_free(slex_batcher *b);
int slex_batcher_num_sources(const slex_batcher *b);
void slex_batcher_source_info(const slex_batcher *b, int source, slex_source_info *info);

typedef struct slex_batch_item {
    int source;
    int64_t utt;    /* index into the source's manifest entries */
    int64_t offset; /* crop start (samples) */
} slex_batch_item;

typedef struct slex_batch_plan {
    int64_t crop;          /* L: samples per row */
    int64_t frames;        /* T: model frames per row that carry a label */
    int n_items;
    slex_batch_item *items; /* grouped by source */
    int n_micro;
    int *micro_start;      /* (n_micro + 1) item index where each micro-batch starts */
} slex_batch_plan;

/* Plans batch k of update step (any order, any number of times: the same plan). */
int slex_batcher_plan(slex_batcher *b, int64_t step, int k, slex_batch_plan *plan, slex_error *err);
void slex_batch_plan_free(slex_batch_plan *plan);

typedef struct slex_microbatch {
    int B;            /* rows */
    int source;
    int64_t L, T;
    float *wave;      /* (B, L) */
    int32_t *labels;  /* (B, T) */
    int64_t capacity_wave, capacity_labels; /* grown as needed; free with slex_microbatch_free */
} slex_microbatch;

/* Reads micro-batch m of the plan: audio (cropped, normalised if asked) and labels.  Fails,
 * naming the file, when the audio cannot be read or is shorter than the manifest says. */
int slex_batcher_load(slex_batcher *b, const slex_batch_plan *plan, int m, slex_microbatch *mb, slex_error *err);
void slex_microbatch_free(slex_microbatch *mb);

#endif
