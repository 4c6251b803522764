#include "cluster/featpool.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "store/store.h"

/* A run of selected frames: rows [row, row + len) of one shard; `first` is the index of its
 * first frame among the input's selected frames. */
typedef struct segment {
    int64_t first, row, len;
    int shard;
} segment;

typedef struct pool_input {
    slex_store *store;
    slex_store_shard **shards; /* opened on use; at most MAX_OPEN_SHARDS over the pool */
    int64_t *last_used;        /* per shard: the pool's clock when it was last read */
    segment *segs;
    int64_t n_segs, n_utts, n_frames; /* selected */
    int64_t pool_first, pool_size;    /* its range of pool indices */
    double weight;
    float *cache;                     /* all its selected frames, when they fit the budget */
} pool_input;

/* Open shard readers hold two file descriptors and their utterance index each: a store of
 * thousands of shards must not keep them all open. */
#define MAX_OPEN_SHARDS 64

/* One uncached frame a fetch must read: where it is and where it goes. */
typedef struct frame_ref {
    int input, shard;
    int64_t row, slot;
} frame_ref;

struct slex_featpool {
    pool_input *in;
    int n_in, dim;
    int open_shards;
    int64_t clock;
    frame_ref *refs; /* fetch's work list (capacity refs_cap) */
    int64_t refs_cap;
    double frame_rate, percent;
    uint64_t seed;
    int64_t size;
};

int64_t slex_featpool_size(const slex_featpool *p) { return p->size; }
int slex_featpool_dim(const slex_featpool *p) { return p->dim; }
double slex_featpool_frame_rate(const slex_featpool *p) { return p->frame_rate; }
int64_t slex_featpool_input_frames(const slex_featpool *p, int i) { return p->in[i].n_frames; }
int64_t slex_featpool_input_utterances(const slex_featpool *p, int i) { return p->in[i].n_utts; }

static void close_shard(slex_featpool *p, pool_input *in, int shard) {
    if (!in->shards[shard]) return;
    slex_store_shard_close(in->shards[shard]);
    in->shards[shard] = NULL;
    p->open_shards--;
}

/* The reader of a shard, opened if needed, closing the least recently used one at the limit. */
static slex_store_shard *shard_reader(slex_featpool *p, pool_input *in, int shard, slex_error *err) {
    in->last_used[shard] = ++p->clock;
    if (in->shards[shard]) return in->shards[shard];
    if (p->open_shards >= MAX_OPEN_SHARDS) {
        pool_input *victim_in = NULL;
        int victim = -1;
        for (int i = 0; i < p->n_in; i++)
            for (int s = 0; p->in[i].shards && s < slex_store_nshard(p->in[i].store); s++)
                if (p->in[i].shards[s] && (!victim_in || p->in[i].last_used[s] < victim_in->last_used[victim])) {
                    victim_in = &p->in[i];
                    victim = s;
                }
        if (victim_in) close_shard(p, victim_in, victim);
    }
    if ((in->shards[shard] = slex_store_shard_open(in->store, shard, err))) p->open_shards++;
    return in->shards[shard];
}

/* Chooses int(n * percent) of n utterances (seeded, sorted), as fairseq's per-shard
 * random.sample; keep[i] = 1 for the chosen ones. */
static void choose_utterances(int64_t n, double percent, uint64_t seed, unsigned char *keep) {
    int64_t want = percent >= 1.0 ? n : (int64_t)((double)n * percent);
    memset(keep, want == n ? 1 : 0, (size_t)n);
    if (want == n) return;
    slex_rng rng;
    slex_rng_seed(&rng, seed);
    /* Floyd's algorithm: want distinct indices with want draws. */
    for (int64_t j = n - want; j < n; j++) {
        int64_t t = (int64_t)slex_rng_below(&rng, (uint64_t)j + 1);
        keep[keep[t] ? j : t] = 1;
    }
}

static int select_input(slex_featpool *p, int idx, slex_error *err) {
    pool_input *in = &p->in[idx];
    int nshard = slex_store_nshard(in->store);
    in->shards = calloc((size_t)nshard, sizeof *in->shards);
    in->last_used = calloc((size_t)nshard, sizeof *in->last_used);
    if (!in->shards || !in->last_used) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    int64_t cap = 0;
    for (int s = 0; s < nshard; s++) {
        slex_store_shard *r = shard_reader(p, in, s, err);
        if (!r) return -1;
        int64_t n = slex_store_shard_num_utts(r);
        const int64_t *off = slex_store_shard_offsets(r);
        unsigned char *keep = malloc((size_t)n + 1);
        if (!keep) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
        choose_utterances(n, p->percent, p->seed ^ ((uint64_t)idx << 48) ^ ((uint64_t)s << 20), keep);
        for (int64_t u = 0; u < n; u++) {
            if (!keep[u] || off[u + 1] == off[u]) continue;
            /* Consecutive chosen utterances make one segment. */
            if (in->n_segs && in->segs[in->n_segs - 1].shard == s &&
                in->segs[in->n_segs - 1].row + in->segs[in->n_segs - 1].len == off[u]) {
                in->segs[in->n_segs - 1].len += off[u + 1] - off[u];
            } else {
                if (in->n_segs == cap) {
                    cap = cap ? 2 * cap : 64;
                    segment *grown = realloc(in->segs, (size_t)cap * sizeof *grown);
                    if (!grown) {
                        free(keep);
                        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
                    }
                    in->segs = grown;
                }
                in->segs[in->n_segs++] = (segment){in->n_frames, off[u], off[u + 1] - off[u], s};
            }
            in->n_frames += off[u + 1] - off[u];
            in->n_utts++;
        }
        free(keep);
        close_shard(p, in, s);
    }
    if (in->n_frames == 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no frames%s", slex_store_dir(in->store),
                         p->percent < 1.0 ? " in the --percent sample" : "");
    return 0;
}

/* NaN/Inf in a frame is an error that names where it is: store, shard, utterance, frame. */
static int check_finite(slex_featpool *p, pool_input *in, int shard, int64_t row, const float *x, slex_error *err) {
    int dim = p->dim;
    for (int d = 0; d < dim; d++)
        if (!isfinite(x[d])) {
            slex_store_shard *r = shard_reader(p, in, shard, err);
            if (!r) return -1;
            const int64_t *off = slex_store_shard_offsets(r);
            int64_t lo = 0, hi = slex_store_shard_num_utts(r) - 1;
            while (lo < hi) {
                int64_t mid = (lo + hi + 1) / 2;
                if (off[mid] <= row) lo = mid;
                else hi = mid - 1;
            }
            /* A damaged file is reported as such, not as the NaN its damage made (a no-op for
             * shards already verified when the pool was opened). */
            if (slex_store_shard_verify(r, err)) return -1;
            char name[64];
            slex_store_shard_name(shard, slex_store_nshard(in->store), name, sizeof name);
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s/%s.h5: utterance %s, frame %lld: NaN/Inf in the features",
                             slex_store_dir(in->store), name, slex_store_shard_utt_id(r, lo), (long long)(row - off[lo]));
        }
    return 0;
}

/* The pool-open pass over every shard of an input: the whole file is read once in order and its
 * CRC-32 checked against the index (slex_store_shard_verify); when the input is cached, its
 * selected frames are taken from that same stream.  Later random row reads (uncached inputs)
 * rely on this pass plus the checks every shard open makes (size, identity, counts, ids). */
static int verify_and_cache(slex_featpool *p, pool_input *in, slex_error *err) {
    int dim = p->dim;
    int64_t g = 0;
    for (int s = 0; s < slex_store_nshard(in->store); s++) {
        slex_store_shard *r = shard_reader(p, in, s, err);
        if (!r) return -1;
        for (; in->cache && g < in->n_segs && in->segs[g].shard == s; g++) {
            const segment *seg = &in->segs[g];
            float *out = in->cache + seg->first * dim;
            if (slex_store_shard_read_rows(r, seg->row, seg->len, out, err)) return -1;
            for (int64_t j = 0; j < seg->len; j++)
                if (check_finite(p, in, s, seg->row + j, out + j * dim, err)) return -1;
        }
        if (slex_store_shard_verify(r, err)) return -1;
        close_shard(p, in, s);
    }
    return 0;
}

slex_featpool *slex_featpool_open(const slex_featpool_input *inputs, int n_inputs, double percent, uint64_t seed,
                                  int64_t cache_bytes, slex_error *err) {
    if (n_inputs < 1) return slex_fail_as(err, SLEX_ERR_INPUT, "no input store"), NULL;
    if (!(percent > 0 && percent <= 1)) return slex_fail_as(err, SLEX_ERR_INPUT, "--percent must be in (0, 1], got %g", percent), NULL;
    slex_featpool *p = calloc(1, sizeof *p);
    if (!p || !(p->in = calloc((size_t)n_inputs, sizeof *p->in))) {
        free(p);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), NULL;
    }
    p->n_in = n_inputs;
    p->percent = percent;
    p->seed = seed;
    int weighted = 0;
    for (int i = 0; i < n_inputs; i++) weighted += inputs[i].weight > 0;
    if (weighted && weighted != n_inputs) {
        slex_fail_as(err, SLEX_ERR_INPUT, "give a weight to every store (DIR:WEIGHT) or to none");
        goto fail;
    }
    int64_t total = 0;
    for (int i = 0; i < n_inputs; i++) {
        pool_input *in = &p->in[i];
        in->weight = inputs[i].weight;
        if (!(in->store = slex_store_open(inputs[i].dir, err))) goto fail;
        if (slex_store_get_dtype(in->store) != SLEX_STORE_F32) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s: is a label store, not a feature store", inputs[i].dir);
            goto fail;
        }
        if (i == 0) {
            p->dim = slex_store_dim(in->store);
            p->frame_rate = slex_store_frame_rate(in->store);
        } else if (slex_store_dim(in->store) != p->dim || slex_store_frame_rate(in->store) != p->frame_rate) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s has %d-dimensional features at %g Hz, but %s has %d at %g Hz", inputs[i].dir,
                      slex_store_dim(in->store), slex_store_frame_rate(in->store), inputs[0].dir, p->dim,
                      p->frame_rate);
            goto fail;
        }
        if (select_input(p, i, err)) goto fail;
        total += in->n_frames;
    }
    double weight_sum = 0;
    for (int i = 0; i < n_inputs; i++) weight_sum += p->in[i].weight;
    for (int i = 0; i < n_inputs; i++) {
        pool_input *in = &p->in[i];
        in->pool_first = p->size;
        in->pool_size = weighted ? (int64_t)floor(in->weight / weight_sum * (double)total) : in->n_frames;
        if (in->pool_size < 1) in->pool_size = 1;
        p->size += in->pool_size;
    }
    /* Cache inputs in order while they fit the budget; every shard is verified once. */
    int64_t budget = cache_bytes;
    for (int i = 0; i < n_inputs; i++) {
        pool_input *in = &p->in[i];
        int64_t bytes = in->n_frames * p->dim * (int64_t)sizeof(float);
        if (bytes <= budget && (in->cache = malloc((size_t)bytes))) budget -= bytes;
        if (verify_and_cache(p, in, err)) goto fail;
    }
    return p;
fail:
    slex_featpool_close(p);
    return NULL;
}

void slex_featpool_close(slex_featpool *p) {
    if (!p) return;
    for (int i = 0; i < p->n_in; i++) {
        pool_input *in = &p->in[i];
        if (in->shards && in->store)
            for (int s = 0; s < slex_store_nshard(in->store); s++) slex_store_shard_close(in->shards[s]);
        free(in->shards);
        free(in->last_used);
        free(in->segs);
        free(in->cache);
        slex_store_close(in->store);
    }
    free(p->in);
    free(p->refs);
    free(p);
}

char *slex_featpool_describe(const slex_featpool *p) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < p->n_in; i++) {
        const pool_input *in = &p->in[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "store", slex_store_dir(in->store));
        cJSON_AddStringToObject(o, "fingerprint", slex_store_fingerprint(in->store));
        cJSON_AddStringToObject(o, "content_id", slex_store_content_id(in->store));
        cJSON_AddNumberToObject(o, "weight", in->weight);
        cJSON_AddNumberToObject(o, "percent", p->percent);
        cJSON_AddNumberToObject(o, "utterances", (double)in->n_utts);
        cJSON_AddNumberToObject(o, "frames", (double)in->n_frames);
        cJSON_AddNumberToObject(o, "pool_frames", (double)in->pool_size);
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return text;
}

static int compare_refs(const void *a, const void *b) {
    const frame_ref *x = a, *y = b;
    if (x->input != y->input) return x->input < y->input ? -1 : 1;
    if (x->shard != y->shard) return x->shard < y->shard ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

int slex_featpool_fetch(slex_featpool *p, const int64_t *index, int64_t n, float *out, slex_error *err) {
    int64_t n_refs = 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t v = index[j];
        if (v < 0 || v >= p->size) return slex_fail_as(err, SLEX_ERR_INTERNAL, "frame %lld is outside the pool of %lld", (long long)v,
                                                    (long long)p->size);
        int i = 0;
        while (v >= p->in[i].pool_first + p->in[i].pool_size) i++;
        pool_input *in = &p->in[i];
        /* Pool position -> selected frame, spreading the input evenly over its share. */
        int64_t k = (int64_t)((__int128)(v - in->pool_first) * in->n_frames / in->pool_size);
        if (in->cache) {
            memcpy(out + j * p->dim, in->cache + k * p->dim, (size_t)p->dim * sizeof *out);
            continue;
        }
        int64_t lo = 0, hi = in->n_segs - 1; /* the segment holding k */
        while (lo < hi) {
            int64_t mid = (lo + hi + 1) / 2;
            if (in->segs[mid].first <= k) lo = mid;
            else hi = mid - 1;
        }
        if (n_refs == p->refs_cap) {
            int64_t cap = p->refs_cap ? 2 * p->refs_cap : 1024;
            frame_ref *grown = realloc(p->refs, (size_t)cap * sizeof *grown);
            if (!grown) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
            p->refs = grown;
            p->refs_cap = cap;
        }
        p->refs[n_refs++] = (frame_ref){i, in->segs[lo].shard, in->segs[lo].row + (k - in->segs[lo].first), j};
    }
    /* Uncached frames are read shard by shard, in row order: each shard is opened once per fetch. */
    if (n_refs > 1) qsort(p->refs, (size_t)n_refs, sizeof *p->refs, compare_refs);
    for (int64_t t = 0; t < n_refs; t++) {
        frame_ref *f = &p->refs[t];
        pool_input *in = &p->in[f->input];
        float *dst = out + f->slot * p->dim;
        slex_store_shard *r = shard_reader(p, in, f->shard, err);
        if (!r || slex_store_shard_gather(r, &f->row, 1, dst, err) || check_finite(p, in, f->shard, f->row, dst, err))
            return -1;
    }
    return 0;
}
