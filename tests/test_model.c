/* test_model: HuBERT loading and forward against torchaudio 0.13.1 fixtures
 * (tests/model_reference.py), the fairseq chunking rule, frame counts, and rejection of bad
 * safetensors files, checkpoints and config.json files.
 * usage: test_model DATA_DIR   (DATA_DIR = tests/data/model) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "model/hf_config.h"
#include "model/hubert.h"
#include "model/safetensors.h"

#define PARITY_TOL 1e-4

static char tmp_dir[256];

/* ---- helpers ---------------------------------------------------------------------------- */

static float *read_tensor(slex_safetensors *st, const char *name, int64_t *rows, int64_t *cols) {
    const slex_st_tensor_info *t = slex_safetensors_find(st, name);
    if (!t) return NULL;
    float *x = malloc((size_t)(t->numel > 0 ? t->numel : 1) * sizeof(float));
    slex_error err;
    if (slex_safetensors_read_f32(st, name, x, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        free(x);
        return NULL;
    }
    *rows = t->ndim >= 1 ? t->shape[0] : 1;
    *cols = t->ndim >= 2 ? t->shape[1] : 1;
    return x;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

/* Forwards `wave_name` at `layer` and compares with `ref_name`; returns the max abs error. */
static double compare_layer(slex_hubert *m, slex_safetensors *exp, const char *wave_name, int layer,
                            const char *ref_name, const char *what) {
    int64_t n, one, rows, cols;
    float *wave = read_tensor(exp, wave_name, &n, &one);
    float *ref = read_tensor(exp, ref_name, &rows, &cols);
    CHECK(wave && ref, "%s: fixture tensors %s/%s missing", what, wave_name, ref_name);
    if (!wave || !ref) {
        free(wave);
        free(ref);
        return INFINITY;
    }
    int C = slex_hubert_get_config(m)->hidden_size;
    int64_t frames = slex_hubert_num_frames(m, n);
    float *out = malloc((size_t)(frames * C) * sizeof(float));
    int64_t T = -1;
    slex_error err = {{0}};
    int rc = slex_hubert_forward(m, wave, n, layer, out, &T, &err);
    CHECK(rc == 0, "%s: forward failed: %s", what, err.msg);
    CHECK(T == rows && T == frames && cols == C, "%s: %lld frames (num_frames %lld), reference (%lld, %lld)", what,
          (long long)T, (long long)frames, (long long)rows, (long long)cols);
    double e = rc == 0 && T == rows && cols == C ? max_abs_diff(out, ref, T * C) : INFINITY;
    CHECK(e <= PARITY_TOL, "%s: max abs error %.3g", what, e);
    fprintf(stderr, "  %-40s T=%-4lld max abs err %.3g\n", what, (long long)T, e);
    free(wave);
    free(ref);
    free(out);
    return e;
}

static slex_hubert *load(const char *dir, int ignore_unexpected, int64_t chunk, int keep, slex_error *err) {
    slex_hubert_load_options o;
    slex_hubert_load_options_default(&o);
    o.ignore_unexpected = ignore_unexpected;
    if (chunk > 0) o.max_chunk_samples = chunk;
    o.keep_activations = keep;
    return slex_hubert_load(dir, &o, err);
}

static int64_t meta_int(slex_safetensors *st, const char *key) {
    const char *v = slex_safetensors_metadata(st, key);
    return v ? atoll(v) : -1;
}

/* ---- parity with torchaudio ----------------------------------------------------------- */

static void test_parity(const char *data, const char *variant, int keep) {
    char dir[1024], path[1200], what[128];
    snprintf(dir, sizeof dir, "%s/%s", data, variant);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    slex_error err = {{0}};
    slex_safetensors *exp = slex_safetensors_open(path, &err);
    CHECK(exp != NULL, "%s", err.msg);
    if (!exp) return;
    /* keep_activations stores every layer's (H, T, T) attention: size it for the test wave. */
    slex_hubert *m = load(dir, 0, keep ? 8000 : 0, keep, &err);
    CHECK(m != NULL, "%s: load: %s", variant, err.msg);
    if (m) {
        int L = slex_hubert_get_config(m)->num_hidden_layers;
        for (int layer = 0; layer <= L; layer++) {
            char ref[32];
            snprintf(ref, sizeof ref, "layer_%d", layer);
            if (!slex_safetensors_find(exp, ref)) continue;
            snprintf(what, sizeof what, "%s%s layer %d", variant, keep ? " (keep)" : "", layer);
            compare_layer(m, exp, "wave", layer, ref, what);
        }
        if (slex_safetensors_find(exp, "last_hidden_state")) {
            snprintf(what, sizeof what, "%s%s last_hidden_state", variant, keep ? " (keep)" : "");
            compare_layer(m, exp, "wave", SLEX_HUBERT_LAST_HIDDEN_STATE, "last_hidden_state", what);
        }
        slex_hubert_free(m);
    }
    /* fairseq's chunking: the same model with max_chunk = the fixture's chunk size. */
    int64_t chunk = meta_int(exp, "chunk_size");
    int chunk_layer = (int)meta_int(exp, "chunk_layer");
    m = load(dir, 0, chunk, keep, &err);
    CHECK(m != NULL && chunk > 0, "%s: load with chunk %lld: %s", variant, (long long)chunk, err.msg);
    if (m) {
        CHECK(slex_hubert_normalizes_waveform(m) == (int)meta_int(exp, "normalize"),
              "%s: waveform normalisation resolved to %d", variant, slex_hubert_normalizes_waveform(m));
        snprintf(what, sizeof what, "%s%s chunked (%lld) layer %d", variant, keep ? " (keep)" : "", (long long)chunk,
                 chunk_layer);
        compare_layer(m, exp, "chunk_wave", chunk_layer, "chunk_layer", what);
        slex_hubert_free(m);
    }
    slex_safetensors_close(exp);
}

/* The prefixed copy (hubert. + parametrizations names + lm_head) holds post_ln_group's weights. */
static void test_prefixed(const char *data) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/prefixed", data);
    slex_error err = {{0}};
    slex_hubert *m = load(dir, 0, 0, 0, &err);
    CHECK(m == NULL && strstr(err.msg, "unexpected tensor 'lm_head.") && strstr(err.msg, "prefixed/model.safetensors"),
          "lm_head must be reported as unexpected: %s", err.msg);
    slex_hubert_free(m);
    m = load(dir, 1, 0, 0, &err);
    CHECK(m != NULL, "prefixed with ignore_unexpected: %s", err.msg);
    if (!m) return;
    snprintf(path, sizeof path, "%s/post_ln_group/expected.safetensors", data);
    slex_safetensors *exp = slex_safetensors_open(path, &err);
    CHECK(exp != NULL, "%s", err.msg);
    if (exp) {
        compare_layer(m, exp, "wave", 3, "layer_3", "prefixed layer 3");
        /* masked_spec_embed is optional but loaded when present */
        snprintf(path, sizeof path, "%s/post_ln_group/model.safetensors", data);
        slex_safetensors *st = slex_safetensors_open(path, &err);
        int64_t r, c;
        float *mask = st ? read_tensor(st, "masked_spec_embed", &r, &c) : NULL;
        CHECK(mask && max_abs_diff(mask, slex_hubert_get_params(m)->mask_emb, r) == 0.0, "masked_spec_embed differs");
        free(mask);
        slex_safetensors_close(st);
        slex_safetensors_close(exp);
    }
    slex_hubert_free(m);
}

/* ---- a small Base-shaped checkpoint written from C ------------------------------------ */

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[3];
} tensor_spec;

static int add_spec(tensor_spec *s, int n, const char *name, int ndim, int64_t a, int64_t b, int64_t c) {
    snprintf(s[n].name, sizeof s[n].name, "%s", name);
    s[n].ndim = ndim;
    s[n].shape[0] = a;
    s[n].shape[1] = b;
    s[n].shape[2] = c;
    return n + 1;
}

/* HuBERT Base's conv stack with 4 channels, hidden 8, one layer. */
static const char *small_config =
    "{\"model_type\": \"hubert\", \"conv_dim\": [4,4,4,4,4,4,4], \"conv_kernel\": [10,3,3,3,3,2,2],"
    " \"conv_stride\": [5,2,2,2,2,2,2], \"conv_bias\": false, \"feat_extract_norm\": \"group\","
    " \"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 8,"
    " \"num_conv_pos_embeddings\": 4, \"num_conv_pos_embedding_groups\": 2}";

static int small_specs(tensor_spec *s) {
    int n = 0;
    char name[128];
    for (int i = 0; i < 7; i++) {
        static const int k[7] = {10, 3, 3, 3, 3, 2, 2};
        snprintf(name, sizeof name, "feature_extractor.conv_layers.%d.conv.weight", i);
        n = add_spec(s, n, name, 3, 4, i ? 4 : 1, k[i]);
    }
    n = add_spec(s, n, "feature_extractor.conv_layers.0.layer_norm.weight", 1, 4, 0, 0);
    n = add_spec(s, n, "feature_extractor.conv_layers.0.layer_norm.bias", 1, 4, 0, 0);
    n = add_spec(s, n, "feature_projection.layer_norm.weight", 1, 4, 0, 0);
    n = add_spec(s, n, "feature_projection.layer_norm.bias", 1, 4, 0, 0);
    n = add_spec(s, n, "feature_projection.projection.weight", 2, 8, 4, 0);
    n = add_spec(s, n, "feature_projection.projection.bias", 1, 8, 0, 0);
    n = add_spec(s, n, "encoder.pos_conv_embed.conv.weight_g", 3, 1, 1, 4);
    n = add_spec(s, n, "encoder.pos_conv_embed.conv.weight_v", 3, 8, 4, 4);
    n = add_spec(s, n, "encoder.pos_conv_embed.conv.bias", 1, 8, 0, 0);
    n = add_spec(s, n, "encoder.layer_norm.weight", 1, 8, 0, 0);
    n = add_spec(s, n, "encoder.layer_norm.bias", 1, 8, 0, 0);
    static const char *proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int j = 0; j < 4; j++) {
        snprintf(name, sizeof name, "encoder.layers.0.attention.%s.weight", proj[j]);
        n = add_spec(s, n, name, 2, 8, 8, 0);
        snprintf(name, sizeof name, "encoder.layers.0.attention.%s.bias", proj[j]);
        n = add_spec(s, n, name, 1, 8, 0, 0);
    }
    n = add_spec(s, n, "encoder.layers.0.layer_norm.weight", 1, 8, 0, 0);
    n = add_spec(s, n, "encoder.layers.0.layer_norm.bias", 1, 8, 0, 0);
    n = add_spec(s, n, "encoder.layers.0.feed_forward.intermediate_dense.weight", 2, 8, 8, 0);
    n = add_spec(s, n, "encoder.layers.0.feed_forward.intermediate_dense.bias", 1, 8, 0, 0);
    n = add_spec(s, n, "encoder.layers.0.feed_forward.output_dense.weight", 2, 8, 8, 0);
    n = add_spec(s, n, "encoder.layers.0.feed_forward.output_dense.bias", 1, 8, 0, 0);
    n = add_spec(s, n, "encoder.layers.0.final_layer_norm.weight", 1, 8, 0, 0);
    n = add_spec(s, n, "encoder.layers.0.final_layer_norm.bias", 1, 8, 0, 0);
    return n;
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, len, f) == len, "cannot write %s", path);
    if (f) fclose(f);
}

/* Writes a small model into tmp_dir/<sub>: drop = name to leave out, reshape = name whose
 * first dimension gets +1, extra = name of an additional tensor, poison = name of a tensor
 * whose element 5 becomes poison_value. */
static void write_small_model_poisoned(const char *sub, const char *drop, const char *reshape, const char *extra,
                                       const char *poison, float poison_value) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/%s", tmp_dir, sub);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, small_config, strlen(small_config));
    tensor_spec specs[64];
    int n = small_specs(specs);
    if (extra) n = add_spec(specs, n, extra, 1, 3, 0, 0);
    static float values[4096];
    uint32_t state = 12345;
    for (int i = 0; i < 4096; i++) {
        state = state * 1664525u + 1013904223u;
        values[i] = ((float)(state >> 8) / 16777216.0f - 0.5f) * 0.5f;
    }
    static float poisoned[4096];
    memcpy(poisoned, values, sizeof poisoned);
    poisoned[5] = poison_value;
    slex_st_write_tensor w[64];
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (drop && strcmp(specs[i].name, drop) == 0) continue;
        w[m].name = specs[i].name;
        w[m].ndim = specs[i].ndim;
        for (int d = 0; d < 3; d++) w[m].shape[d] = specs[i].shape[d];
        if (reshape && strcmp(specs[i].name, reshape) == 0) w[m].shape[0]++;
        w[m].data = values;
        if (poison && strcmp(specs[i].name, poison) == 0) w[m].data = poisoned;
        m++;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    slex_error err = {{0}};
    CHECK(slex_safetensors_write(path, w, m, NULL, 0, &err) == 0, "write %s: %s", path, err.msg);
}

static void write_small_model(const char *sub, const char *drop, const char *reshape, const char *extra) {
    write_small_model_poisoned(sub, drop, reshape, extra, NULL, 0.0f);
}

static int all_nan(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isnan(x[i])) return 0;
    return 1;
}

/* Issue 9: one NaN in a k_proj weight gave finite features.  A non-finite weight is refused at
 * load, naming the file and the tensor; a NaN that arises inside the forward reaches every
 * output, as in PyTorch (the softmax used to turn NaN scores into finite probabilities). */
static void test_nan_weights(void) {
    char dir[512];
    slex_error err = {{0}};
    static const struct {
        const char *tensor;
        float value;
        const char *word;
    } cases[] = {
        {"encoder.layers.0.attention.k_proj.weight", NAN, "NaN"},
        {"feature_extractor.conv_layers.1.conv.weight", INFINITY, "+Inf"}, /* the re-laid-out conv path */
        {"encoder.pos_conv_embed.conv.weight_v", -INFINITY, "-Inf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char sub[32];
        snprintf(sub, sizeof sub, "poison%zu", i);
        write_small_model_poisoned(sub, NULL, NULL, NULL, cases[i].tensor, cases[i].value);
        snprintf(dir, sizeof dir, "%s/%s", tmp_dir, sub);
        slex_hubert *m = load(dir, 0, 0, 0, &err);
        char file[600];
        snprintf(file, sizeof file, "%s/model.safetensors", dir);
        CHECK(m == NULL && strstr(err.msg, file) && strstr(err.msg, cases[i].tensor) && strstr(err.msg, cases[i].word),
              "%s = %s at load: %s", cases[i].tensor, cases[i].word, m ? "accepted" : err.msg);
        slex_hubert_free(m);
    }
    /* The same NaN put into the loaded parameters (as a diverged training step would). */
    snprintf(dir, sizeof dir, "%s/good", tmp_dir);
    slex_hubert *m = load(dir, 0, 0, 0, &err);
    CHECK(m != NULL, "small model: %s", err.msg);
    if (!m) return;
    int C = slex_hubert_get_config(m)->hidden_size;
    float wave[16000], out[49 * 8];
    for (int i = 0; i < 16000; i++) wave[i] = sinf(0.01f * (float)i);
    int64_t T = 0;
    slex_hubert_get_params(m)->qkv_w[(int64_t)C * C + 5] = NAN; /* layer 0, k_proj row 0 */
    CHECK(slex_hubert_forward(m, wave, 16000, 1, out, &T, &err) == 0 && T == 49, "forward: %s", err.msg);
    CHECK(all_nan(out, T * C), "a NaN k_proj weight must make every layer-1 feature NaN");
    slex_hubert_free(m);
}

static void test_frames_and_bad_checkpoints(void) {
    char dir[512];
    slex_error err = {{0}};
    write_small_model("good", NULL, NULL, NULL);
    snprintf(dir, sizeof dir, "%s/good", tmp_dir);
    slex_hubert *m = load(dir, 0, 0, 0, &err);
    CHECK(m != NULL, "small model: %s", err.msg);
    if (m) {
        /* Base conv stack: receptive field 400, stride 320, floor((N-400)/320)+1 frames. */
        CHECK(slex_hubert_receptive_field(m) == 400, "receptive field %lld", (long long)slex_hubert_receptive_field(m));
        CHECK(slex_hubert_total_stride(m) == 320, "stride %lld", (long long)slex_hubert_total_stride(m));
        CHECK(slex_hubert_num_frames(m, 16000) == 49, "16000 samples -> %lld frames", (long long)slex_hubert_num_frames(m, 16000));
        CHECK(slex_hubert_num_frames(m, 400) == 1 && slex_hubert_num_frames(m, 399) == 0 &&
                  slex_hubert_num_frames(m, 719) == 1 && slex_hubert_num_frames(m, 720) == 2,
              "frame count at the boundaries");
        CHECK(slex_hubert_normalizes_waveform(m) == 0, "group-norm model must not normalise the waveform by default");
        /* fairseq: chunks [0,1.6M), [1.6M, ...): 4999 frames for the first, then the rest. */
        int64_t n = 1600000 + 16000;
        CHECK(slex_hubert_num_frames(m, n) == 4999 + 49, "%lld samples -> %lld frames, fairseq chunks give %d",
              (long long)n, (long long)slex_hubert_num_frames(m, n), 4999 + 49);
        CHECK(slex_hubert_num_frames(m, 1600000 + 399) == 4999, "a trailing chunk shorter than 400 gives no frames");
        float wave[16000], out[49 * 8];
        for (int i = 0; i < 16000; i++) wave[i] = sinf(0.01f * (float)i);
        int64_t T = 0;
        CHECK(slex_hubert_forward(m, wave, 16000, 1, out, &T, &err) == 0 && T == 49, "forward 16000: %s", err.msg);
        CHECK(slex_hubert_forward(m, wave, 16000, 2, out, &T, &err) != 0 && strstr(err.msg, "layer 2 is out of range"),
              "layer beyond depth: %s", err.msg);
        CHECK(slex_hubert_forward(m, wave, 399, 1, out, &T, &err) != 0 && strstr(err.msg, "shorter than"),
              "too short: %s", err.msg);
        slex_hubert_free(m);
    }
    /* Chunks shorter than the receptive field cannot be asked for. */
    m = load(dir, 0, 300, 0, &err);
    CHECK(m == NULL && strstr(err.msg, "max_chunk_samples 300"), "chunk 300: %s", err.msg);
    slex_hubert_free(m);

    write_small_model("missing", "encoder.layers.0.attention.k_proj.bias", NULL, NULL);
    snprintf(dir, sizeof dir, "%s/missing", tmp_dir);
    m = load(dir, 0, 0, 0, &err);
    CHECK(m == NULL && strstr(err.msg, "missing tensor 'encoder.layers.0.attention.k_proj.bias'") &&
              strstr(err.msg, "missing/model.safetensors"),
          "missing tensor: %s", err.msg);
    slex_hubert_free(m);

    write_small_model("shape", NULL, "encoder.layers.0.feed_forward.output_dense.weight", NULL);
    snprintf(dir, sizeof dir, "%s/shape", tmp_dir);
    m = load(dir, 0, 0, 0, &err);
    CHECK(m == NULL && strstr(err.msg, "'encoder.layers.0.feed_forward.output_dense.weight' has shape [9, 8] but "
                                       "config.json implies [8, 8]"),
          "wrong shape: %s", err.msg);
    slex_hubert_free(m);

    write_small_model("extra", NULL, NULL, "encoder.layers.1.layer_norm.weight");
    snprintf(dir, sizeof dir, "%s/extra", tmp_dir);
    m = load(dir, 0, 0, 0, &err);
    CHECK(m == NULL && strstr(err.msg, "unexpected tensor 'encoder.layers.1.layer_norm.weight'"), "extra tensor: %s",
          err.msg);
    slex_hubert_free(m);
    m = load(dir, 1, 0, 0, &err);
    CHECK(m != NULL, "extra tensor with ignore_unexpected: %s", err.msg);
    slex_hubert_free(m);
}

/* ---- safetensors format ------------------------------------------------------------------ */

/* Writes 8-byte length + header + data; header_len overrides the length field when >= 0. */
static void write_raw(const char *path, const char *header, long long header_len, const void *data, size_t data_len) {
    size_t hl = strlen(header);
    uint64_t n = header_len >= 0 ? (uint64_t)header_len : hl;
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)(n >> (8 * i));
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return;
    fwrite(len_bytes, 1, 8, f);
    fwrite(header, 1, hl, f);
    if (data_len) fwrite(data, 1, data_len, f);
    fclose(f);
}

static void expect_open_error(const char *header, long long header_len, size_t data_len, const char *needle,
                              const char *what) {
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmp_dir);
    static unsigned char data[256];
    write_raw(path, header, header_len, data, data_len);
    slex_error err = {{0}};
    slex_safetensors *st = slex_safetensors_open(path, &err);
    CHECK(st == NULL && strstr(err.msg, needle) && strstr(err.msg, "bad.safetensors"), "%s: got \"%s\"", what,
          st ? "(opened)" : err.msg);
    slex_safetensors_close(st);
}

static void test_safetensors(void) {
    char path[512];
    slex_error err = {{0}};
    /* writer -> reader round trip with metadata */
    float a[6] = {1, -2, 3.5f, 4, 5, 6}, b[3] = {0.25f, -0.125f, 1e-3f};
    slex_st_write_tensor w[2] = {{"a", 2, {2, 3}, a}, {"b.bias", 1, {3}, b}};
    slex_st_metadata meta[1] = {{"format", "pt"}};
    snprintf(path, sizeof path, "%s/rt.safetensors", tmp_dir);
    CHECK(slex_safetensors_write(path, w, 2, meta, 1, &err) == 0, "write: %s", err.msg);
    slex_safetensors *st = slex_safetensors_open(path, &err);
    CHECK(st != NULL, "round trip open: %s", err.msg);
    if (st) {
        const slex_st_tensor_info *t = slex_safetensors_find(st, "a");
        CHECK(t && t->dtype == SLEX_ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->numel == 6,
              "tensor info of a");
        float ra[6] = {0}, rb[3] = {0};
        CHECK(slex_safetensors_read_f32(st, "a", ra, &err) == 0 && memcmp(ra, a, sizeof a) == 0, "values of a");
        CHECK(slex_safetensors_read_f32(st, "b.bias", rb, &err) == 0 && memcmp(rb, b, sizeof b) == 0, "values of b");
        const char *fmt = slex_safetensors_metadata(st, "format");
        CHECK(fmt && strcmp(fmt, "pt") == 0, "metadata");
        CHECK(slex_safetensors_read_f32(st, "c", ra, &err) != 0 && strstr(err.msg, "no tensor named 'c'"), "absent: %s",
              err.msg);
        slex_safetensors_close(st);
    }
    /* truncated: the last 4 bytes of the round-trip file cut off */
    FILE *f = fopen(path, "rb");
    static unsigned char buf[4096];
    size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/trunc.safetensors", tmp_dir);
    write_file(path, buf, len - 4);
    st = slex_safetensors_open(path, &err);
    CHECK(st == NULL && strstr(err.msg, "trunc.safetensors") && strstr(err.msg, "file holds 32 data bytes"),
          "truncated: %s", err.msg);
    slex_safetensors_close(st);
    write_file(path, buf, 5);
    st = slex_safetensors_open(path, &err);
    CHECK(st == NULL && strstr(err.msg, "too short for the 8-byte header length"), "5-byte file: %s", err.msg);
    slex_safetensors_close(st);

    const char *one = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_open_error(one, 9999999, 8, "header length 9999999 runs past the end of the file", "header past the end");
    expect_open_error(one, 200000000, 8, "header length 200000000 exceeds the limit", "header above 100 MB");
    expect_open_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                      -1, 12, "overlap tensor 'x'", "overlapping offsets");
    expect_open_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                      -1, 20, "gap of 4 bytes between tensors 'x' and 'y'", "gap in offsets");
    expect_open_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", -1, 12,
                      "starts at 4, not 0", "first tensor not at 0");
    expect_open_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}", -1, 8, "\"data_offsets\" must be", "missing offsets");
    expect_open_error("{\"x\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8, "unknown dtype \"F33\"",
                      "unknown dtype");
    expect_open_error("{\"x\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8,
                      "hold 8 bytes but F16 shape needs 4", "bytes != numel * size");
    expect_open_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 12,
                      "tensors end at data offset 8 but the file holds 12 data bytes", "trailing bytes");
    expect_open_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", -1, 8,
                      "shape entry 0 is not a non-negative integer", "negative dim");
    expect_open_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}",
                      -1, 8, "'x' appears twice", "duplicate name");
    expect_open_error("{\"x\":{\"dtype\":", -1, 8, "not valid JSON", "broken JSON");
    expect_open_error("[1, 2]", -1, 0, "not a JSON object", "JSON array header");

    /* dtype conversion, hand-computed: F16 1, -2, 65504, 2^-24 (subnormal), +inf; BF16 1, -0.5;
     * F64 3.25; I64 cannot be read as float. */
    unsigned char data[8 * 2 + 2 * 2 + 8 + 8];
    uint16_t h[5] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00}, bf[2] = {0x3F80, 0xBF00};
    size_t off = 0;
    for (int i = 0; i < 5; i++, off += 2) data[off] = (unsigned char)h[i], data[off + 1] = (unsigned char)(h[i] >> 8);
    for (int i = 0; i < 2; i++, off += 2) data[off] = (unsigned char)bf[i], data[off + 1] = (unsigned char)(bf[i] >> 8);
    double d = 3.25;
    memcpy(data + off, &d, 8);
    off += 8;
    int64_t iv = 7;
    memcpy(data + off, &iv, 8);
    off += 8;
    snprintf(path, sizeof path, "%s/dtypes.safetensors", tmp_dir);
    write_raw(path,
              "{\"h\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[0,10]},"
              "\"bf\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[10,14]},"
              "\"d\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[14,22]},"
              "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[22,30]}}  ",
              -1, data, off);
    st = slex_safetensors_open(path, &err);
    CHECK(st != NULL, "dtypes: %s", err.msg);
    if (st) {
        float x[5] = {0};
        CHECK(slex_safetensors_read_f32(st, "h", x, &err) == 0, "F16: %s", err.msg);
        CHECK(x[0] == 1.0f && x[1] == -2.0f && x[2] == 65504.0f && x[3] == ldexpf(1.0f, -24) && isinf(x[4]) && x[4] > 0,
              "F16 values %g %g %g %g %g", x[0], x[1], x[2], x[3], x[4]);
        CHECK(slex_safetensors_read_f32(st, "bf", x, &err) == 0 && x[0] == 1.0f && x[1] == -0.5f, "BF16 values");
        CHECK(slex_safetensors_read_f32(st, "d", x, &err) == 0 && x[0] == 3.25f, "F64 scalar");
        CHECK(slex_safetensors_read_f32(st, "i", x, &err) != 0 && strstr(err.msg, "dtype I64"), "I64 read: %s", err.msg);
        slex_safetensors_close(st);
    }
}

/* ---- config.json ------------------------------------------------------------------------ */

static void expect_config_error(const char *json, const char *needle, const char *what) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", tmp_dir);
    write_file(path, json, strlen(json));
    slex_hubert_config cfg;
    slex_error err = {{0}};
    int rc = slex_hubert_config_load(path, &cfg, &err);
    CHECK(rc != 0 && strstr(err.msg, needle) && strstr(err.msg, "config.json"), "%s: got \"%s\"", what,
          rc ? err.msg : "(accepted)");
}

#define SHAPES "\"hidden_size\": 768, \"num_hidden_layers\": 12, \"num_attention_heads\": 12, \"intermediate_size\": 3072"
#define CONVS "\"conv_dim\": [512, 512], \"conv_kernel\": [10, 3], \"conv_stride\": [5, 2]"

static void test_config(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", tmp_dir);
    const char *good = "{" CONVS ", " SHAPES ", \"do_stable_layer_norm\": true, \"feat_extract_norm\": \"layer\","
                       " \"conv_bias\": true, \"layer_norm_eps\": 1e-6, \"unknown_key\": [1]}";
    write_file(path, good, strlen(good));
    slex_hubert_config cfg;
    slex_error err = {{0}};
    CHECK(slex_hubert_config_load(path, &cfg, &err) == 0, "good config: %s", err.msg);
    CHECK(cfg.num_conv == 2 && cfg.conv_dim[1] == 512 && cfg.conv_kernel[0] == 10 && cfg.conv_stride[1] == 2 &&
              cfg.hidden_size == 768 && cfg.num_hidden_layers == 12 && cfg.num_attention_heads == 12 &&
              cfg.intermediate_size == 3072 && cfg.do_stable_layer_norm == 1 &&
              cfg.feat_extract_norm == SLEX_FEAT_NORM_LAYER && cfg.conv_bias == 1 && cfg.layer_norm_eps == 1e-6f,
          "parsed values");
    /* defaults as in transformers' HubertConfig */
    CHECK(cfg.num_conv_pos_embeddings == 128 && cfg.num_conv_pos_embedding_groups == 16 && cfg.feat_proj_layer_norm == 1,
          "defaults");

    expect_config_error("{" SHAPES "}", "missing required key \"conv_dim\"", "missing conv_dim");
    expect_config_error("{" CONVS ", \"hidden_size\": 768, \"num_attention_heads\": 12, \"intermediate_size\": 3072}",
                        "missing required key \"num_hidden_layers\"", "missing num_hidden_layers");
    expect_config_error("{\"conv_dim\": [512, 512], \"conv_kernel\": [10], \"conv_stride\": [5, 2], " SHAPES "}",
                        "have different lengths (2, 1, 2)", "conv lengths differ");
    expect_config_error("{" CONVS ", \"hidden_size\": 770, \"num_hidden_layers\": 12, \"num_attention_heads\": 12,"
                        " \"intermediate_size\": 3072}",
                        "hidden_size 770 is not divisible by num_attention_heads 12", "heads do not divide");
    expect_config_error("{" CONVS ", " SHAPES ", \"feat_extract_norm\": \"batch\"}",
                        "\"feat_extract_norm\" is \"batch\"", "unknown feat_extract_norm");
    expect_config_error("{" CONVS ", " SHAPES ", \"hidden_act\": \"relu\"}", "\"hidden_act\" is \"relu\"",
                        "hidden_act relu");
    expect_config_error("{" CONVS ", " SHAPES ", \"num_conv_pos_embedding_groups\": 5}",
                        "num_conv_pos_embedding_groups 5 does not divide hidden_size 768", "pos groups");
    expect_config_error("{" CONVS ", " SHAPES ", \"conv_bias\": 1}", "\"conv_bias\" must be true or false",
                        "conv_bias type");
    expect_config_error("{\"conv_dim\": [512, 0], \"conv_kernel\": [10, 3], \"conv_stride\": [5, 2], " SHAPES "}",
                        "conv_dim[1] = 0", "zero conv dim");
    expect_config_error("{" CONVS ", " SHAPES ", \"model_type\": \"wav2vec2\"}", "expected \"hubert\"", "model_type");
    expect_config_error("{" CONVS ", " SHAPES, "not valid JSON", "broken JSON");
}

/* ---- main ---------------------------------------------------------------------------------- */

static void remove_tree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_model DATA_DIR\n");
        return 2;
    }
    snprintf(tmp_dir, sizeof tmp_dir, "%s/slex_test_model_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 2;
    }
    test_parity(argv[1], "post_ln_group", 0);
    test_parity(argv[1], "pre_ln_layer", 0);
    test_parity(argv[1], "pre_ln_layer", 1);
    test_parity(argv[1], "post_ln_group", 1);
    test_parity(argv[1], "f16", 0);
    test_prefixed(argv[1]);
    test_frames_and_bad_checkpoints();
    test_nan_weights();
    test_safetensors();
    test_config();
    remove_tree(tmp_dir);
    return check_finish("test_model");
}
