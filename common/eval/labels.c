#include "eval/labels.h"

#include <stdlib.h>
#include <string.h>

slex_store *slex_label_store_open(const char *dir, slex_error *err) {
    slex_store *s = slex_store_open(dir, err);
    if (s && slex_store_get_dtype(s) != SLEX_STORE_I32) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: is a feature store, not a label store (make one with slex-label)", dir);
        slex_store_close(s);
        return NULL;
    }
    if (s && slex_store_frames(s) == 0) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: the store holds no labelled frames (%lld utterances)", dir,
                  (long long)slex_store_utterances(s));
        slex_store_close(s);
        return NULL;
    }
    return s;
}

/* A growing buffer for one utterance's labels. */
typedef struct label_buf {
    int32_t *v;
    int64_t cap;
} label_buf;

static int32_t *read_utt(slex_store_shard *r, int64_t i, label_buf *b, slex_error *err) {
    int64_t n = slex_store_shard_lengths(r)[i];
    if (n > b->cap) {
        int32_t *v = realloc(b->v, (size_t)n * sizeof *v);
        if (!v) {
            slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory for %lld labels", (long long)n);
            return NULL;
        }
        b->v = v;
        b->cap = n;
    }
    if (n && slex_store_shard_read_rows(r, slex_store_shard_offsets(r)[i], n, b->v, err)) return NULL;
    return b->v ? b->v : (int32_t *)b; /* a valid pointer for n = 0 */
}

/* The CRC-32 of the shards just streamed (slex_store_shard_verify): a damaged file is reported
 * as such, not as whatever its damage made fail (a negative unit, say). */
static int verified(slex_store_shard *ra, slex_store_shard *rb, int rc, slex_error *err) {
    slex_error why = {{0}};
    if (slex_store_shard_verify(ra, &why) || (rb && slex_store_shard_verify(rb, &why)))
        return slex_fail_as(err, why.kind, "%s", why.msg);
    return rc;
}

int slex_labels_walk(const slex_store *s, int first, int step, slex_labels_fn fn, void *ctx, slex_error *err) {
    label_buf buf = {NULL, 0};
    int rc = 0;
    for (int shard = first; !rc && shard < slex_store_nshard(s); shard += step) {
        slex_store_shard *r = slex_store_shard_open(s, shard, err);
        if (!r) {
            rc = -1;
            break;
        }
        for (int64_t i = 0; !rc && i < slex_store_shard_num_utts(r); i++) {
            const int32_t *units = read_utt(r, i, &buf, err);
            rc = units ? fn(ctx, slex_store_shard_utt_id(r, i), units, slex_store_shard_lengths(r)[i], err) : -1;
        }
        rc = verified(r, NULL, rc, err);
        slex_store_shard_close(r);
    }
    free(buf.v);
    return rc;
}

/* Same utterances, same frame counts, in the same order within one shard. */
static int same_shard(const slex_store *a, const slex_store *b, slex_store_shard *ra, slex_store_shard *rb, int shard,
                      slex_error *err) {
    int64_t n = slex_store_shard_num_utts(ra);
    if (slex_store_shard_num_utts(rb) != n)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s and %s label different utterances: shard %d holds %lld vs %lld utterances",
                         slex_store_dir(a), slex_store_dir(b), shard, (long long)n,
                         (long long)slex_store_shard_num_utts(rb));
    for (int64_t i = 0; i < n; i++) {
        const char *ia = slex_store_shard_utt_id(ra, i), *ib = slex_store_shard_utt_id(rb, i);
        if (strcmp(ia, ib))
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s and %s label different utterances: shard %d, utterance %lld is %s vs %s",
                             slex_store_dir(a), slex_store_dir(b), shard, (long long)i, ia, ib);
        if (slex_store_shard_lengths(ra)[i] != slex_store_shard_lengths(rb)[i])
            return slex_fail_as(err, SLEX_ERR_INPUT, "%s and %s: utterance %s has %lld vs %lld labels (another label rate?)",
                             slex_store_dir(a), slex_store_dir(b), ia, (long long)slex_store_shard_lengths(ra)[i],
                             (long long)slex_store_shard_lengths(rb)[i]);
    }
    return 0;
}

int slex_labels_walk_pair(const slex_store *a, const slex_store *b, int first, int step, slex_labels_pair_fn fn,
                          void *ctx, slex_error *err) {
    if (slex_store_frame_rate(a) != slex_store_frame_rate(b))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s is at %g Hz but %s at %g Hz: drift compares labelings at one rate",
                         slex_store_dir(a), slex_store_frame_rate(a), slex_store_dir(b), slex_store_frame_rate(b));
    if (slex_store_nshard(a) != slex_store_nshard(b) || slex_store_utterances(a) != slex_store_utterances(b))
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s (%d shards, %lld utterances) and %s (%d shards, %lld utterances) do not label the "
                              "same manifest the same way (label both from stores of one manifest and --nshard)",
                         slex_store_dir(a), slex_store_nshard(a), (long long)slex_store_utterances(a),
                         slex_store_dir(b), slex_store_nshard(b), (long long)slex_store_utterances(b));
    label_buf ba = {NULL, 0}, bb = {NULL, 0};
    int rc = 0;
    for (int shard = first; !rc && shard < slex_store_nshard(a); shard += step) {
        slex_store_shard *ra = slex_store_shard_open(a, shard, err);
        slex_store_shard *rb = ra ? slex_store_shard_open(b, shard, err) : NULL;
        rc = !ra || !rb ? -1 : same_shard(a, b, ra, rb, shard, err);
        for (int64_t i = 0; !rc && i < slex_store_shard_num_utts(ra); i++) {
            const int32_t *ua = read_utt(ra, i, &ba, err), *ub = ua ? read_utt(rb, i, &bb, err) : NULL;
            rc = ub ? fn(ctx, slex_store_shard_utt_id(ra, i), ua, ub, slex_store_shard_lengths(ra)[i], err) : -1;
        }
        if (ra && rb) rc = verified(ra, rb, rc, err);
        slex_store_shard_close(ra);
        slex_store_shard_close(rb);
    }
    free(ba.v);
    free(bb.v);
    return rc;
}
