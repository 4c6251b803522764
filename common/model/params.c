#include "model/params.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The dimensions a tensor shape is made of. */
typedef enum { D_ONE = 1, D_C, D_CF, D_F, D_KP, D_CG, D_CONV_OUT, D_CONV_IN, D_CONV_K } dim;

/* Which instances a row stands for: one tensor, one per conv layer (%d = conv index), or one
 * per transformer layer (%d = layer index, stacked in one (L, ...) array). */
typedef enum { ONCE, PER_CONV, PER_LAYER } scope;

/* When the config has the tensor. */
typedef enum { ALWAYS, IF_CONV_BIAS, IF_CONV_NORM, IF_PROJ_LN } presence;

typedef struct {
    const char *name;   /* HF name (a format with one %d for PER_CONV / PER_LAYER rows) */
    size_t field;       /* offsetof the pointer in slex_hubert_params */
    scope scope;
    int part, parts;    /* this tensor is slice `part` of `parts` stacked per instance (q, k, v) */
    int ndim;
    dim shape[3];
    presence presence;
    int conv_taps, optional, linear;
    int site; /* slex_hubert_linear + 1 of a layer's nn.Linear weight, 0 otherwise */
} tensor_row;

#define FIELD(f) offsetof(slex_hubert_params, f)

/* Every HubertModel tensor, in the state_dict order of HF's modules (k, v, q, out within the
 * attention; the positional conv's bias before its weight norm's g and v). */
static const tensor_row rows[] = {
    {.name = "feature_extractor.conv_layers.%d.conv.weight", .field = FIELD(conv_w), .scope = PER_CONV, .ndim = 3,
     .shape = {D_CONV_OUT, D_CONV_IN, D_CONV_K}, .conv_taps = 1},
    {.name = "feature_extractor.conv_layers.%d.conv.bias", .field = FIELD(conv_b), .scope = PER_CONV, .ndim = 1,
     .shape = {D_CONV_OUT}, .presence = IF_CONV_BIAS},
    {.name = "feature_extractor.conv_layers.%d.layer_norm.weight", .field = FIELD(conv_norm_w), .scope = PER_CONV,
     .ndim = 1, .shape = {D_CONV_OUT}, .presence = IF_CONV_NORM},
    {.name = "feature_extractor.conv_layers.%d.layer_norm.bias", .field = FIELD(conv_norm_b), .scope = PER_CONV,
     .ndim = 1, .shape = {D_CONV_OUT}, .presence = IF_CONV_NORM},
    {.name = "feature_projection.layer_norm.weight", .field = FIELD(proj_ln_w), .ndim = 1, .shape = {D_CF},
     .presence = IF_PROJ_LN},
    {.name = "feature_projection.layer_norm.bias", .field = FIELD(proj_ln_b), .ndim = 1, .shape = {D_CF},
     .presence = IF_PROJ_LN},
    {.name = "feature_projection.projection.weight", .field = FIELD(proj_w), .ndim = 2, .shape = {D_C, D_CF},
     .linear = 1},
    {.name = "feature_projection.projection.bias", .field = FIELD(proj_b), .ndim = 1, .shape = {D_C}},
    {.name = "encoder.pos_conv_embed.conv.bias", .field = FIELD(pos_conv_b), .ndim = 1, .shape = {D_C}},
    {.name = "encoder.pos_conv_embed.conv.weight_g", .field = FIELD(pos_conv_g), .ndim = 3,
     .shape = {D_ONE, D_ONE, D_KP}},
    {.name = "encoder.pos_conv_embed.conv.weight_v", .field = FIELD(pos_conv_v), .ndim = 3,
     .shape = {D_C, D_CG, D_KP}},
    {.name = "encoder.layer_norm.weight", .field = FIELD(enc_ln_w), .ndim = 1, .shape = {D_C}},
    {.name = "encoder.layer_norm.bias", .field = FIELD(enc_ln_b), .ndim = 1, .shape = {D_C}},
    {.name = "encoder.layers.%d.attention.k_proj.weight", .field = FIELD(qkv_w), .scope = PER_LAYER, .part = 1,
     .parts = 3, .ndim = 2, .shape = {D_C, D_C}, .linear = 1, .site = 1 + SLEX_HUBERT_K},
    {.name = "encoder.layers.%d.attention.k_proj.bias", .field = FIELD(qkv_b), .scope = PER_LAYER, .part = 1,
     .parts = 3, .ndim = 1, .shape = {D_C}},
    {.name = "encoder.layers.%d.attention.v_proj.weight", .field = FIELD(qkv_w), .scope = PER_LAYER, .part = 2,
     .parts = 3, .ndim = 2, .shape = {D_C, D_C}, .linear = 1, .site = 1 + SLEX_HUBERT_V},
    {.name = "encoder.layers.%d.attention.v_proj.bias", .field = FIELD(qkv_b), .scope = PER_LAYER, .part = 2,
     .parts = 3, .ndim = 1, .shape = {D_C}},
    {.name = "encoder.layers.%d.attention.q_proj.weight", .field = FIELD(qkv_w), .scope = PER_LAYER, .part = 0,
     .parts = 3, .ndim = 2, .shape = {D_C, D_C}, .linear = 1, .site = 1 + SLEX_HUBERT_Q},
    {.name = "encoder.layers.%d.attention.q_proj.bias", .field = FIELD(qkv_b), .scope = PER_LAYER, .part = 0,
     .parts = 3, .ndim = 1, .shape = {D_C}},
    {.name = "encoder.layers.%d.attention.out_proj.weight", .field = FIELD(attproj_w), .scope = PER_LAYER, .ndim = 2,
     .shape = {D_C, D_C}, .linear = 1, .site = 1 + SLEX_HUBERT_OUT},
    {.name = "encoder.layers.%d.attention.out_proj.bias", .field = FIELD(attproj_b), .scope = PER_LAYER, .ndim = 1,
     .shape = {D_C}},
    {.name = "encoder.layers.%d.layer_norm.weight", .field = FIELD(ln1_w), .scope = PER_LAYER, .ndim = 1,
     .shape = {D_C}},
    {.name = "encoder.layers.%d.layer_norm.bias", .field = FIELD(ln1_b), .scope = PER_LAYER, .ndim = 1,
     .shape = {D_C}},
    {.name = "encoder.layers.%d.feed_forward.intermediate_dense.weight", .field = FIELD(fc_w), .scope = PER_LAYER,
     .ndim = 2, .shape = {D_F, D_C}, .linear = 1, .site = 1 + SLEX_HUBERT_FC1},
    {.name = "encoder.layers.%d.feed_forward.intermediate_dense.bias", .field = FIELD(fc_b), .scope = PER_LAYER,
     .ndim = 1, .shape = {D_F}},
    {.name = "encoder.layers.%d.feed_forward.output_dense.weight", .field = FIELD(fcproj_w), .scope = PER_LAYER,
     .ndim = 2, .shape = {D_C, D_F}, .linear = 1, .site = 1 + SLEX_HUBERT_FC2},
    {.name = "encoder.layers.%d.feed_forward.output_dense.bias", .field = FIELD(fcproj_b), .scope = PER_LAYER,
     .ndim = 1, .shape = {D_C}},
    {.name = "encoder.layers.%d.final_layer_norm.weight", .field = FIELD(ln2_w), .scope = PER_LAYER, .ndim = 1,
     .shape = {D_C}},
    {.name = "encoder.layers.%d.final_layer_norm.bias", .field = FIELD(ln2_b), .scope = PER_LAYER, .ndim = 1,
     .shape = {D_C}},
    {.name = "masked_spec_embed", .field = FIELD(mask_emb), .ndim = 1, .shape = {D_C}, .optional = 1},
};

#define N_ROWS ((int)(sizeof rows / sizeof rows[0]))
/* Pointer slots of slex_hubert_params (every member is a float pointer). */
#define N_SLOTS ((int)(sizeof(slex_hubert_params) / sizeof(float *)))

static int64_t dim_value(const slex_hubert_config *c, dim d, int conv) {
    switch (d) {
    case D_ONE: return 1;
    case D_C: return c->hidden_size;
    case D_CF: return c->conv_dim[c->num_conv - 1];
    case D_F: return c->intermediate_size;
    case D_KP: return c->num_conv_pos_embeddings;
    case D_CG: return c->hidden_size / c->num_conv_pos_embedding_groups;
    case D_CONV_OUT: return c->conv_dim[conv];
    case D_CONV_IN: return conv ? c->conv_dim[conv - 1] : 1;
    case D_CONV_K: return c->conv_kernel[conv];
    }
    return 0;
}

static int present(const slex_hubert_config *c, const tensor_row *r, int conv) {
    switch (r->presence) {
    case ALWAYS: return 1;
    case IF_CONV_BIAS: return c->conv_bias;
    case IF_CONV_NORM: return c->feat_extract_norm == SLEX_FEAT_NORM_LAYER || conv == 0;
    case IF_PROJ_LN: return c->feat_proj_layer_norm;
    }
    return 0;
}

static int64_t row_numel(const slex_hubert_config *c, const tensor_row *r, int conv) {
    int64_t n = 1;
    for (int d = 0; d < r->ndim; d++) n *= dim_value(c, r->shape[d], conv);
    return n;
}

static int instances(const slex_hubert_config *c, const tensor_row *r) {
    return r->scope == PER_CONV ? c->num_conv : r->scope == PER_LAYER ? c->num_hidden_layers : 1;
}

/* The pointer slot of instance i of row r (conv rows have one pointer per conv). */
static int slot_of(const tensor_row *r, int i) {
    return (int)(r->field / sizeof(float *)) + (r->scope == PER_CONV ? i : 0);
}

int64_t slex_hubert_params_layout(const slex_hubert_config *c, float *block, slex_hubert_params *p) {
    float **slots = p ? (float **)(void *)p : NULL;
    int assigned[N_SLOTS];
    memset(assigned, 0, sizeof assigned);
    if (p) memset(p, 0, sizeof *p);
    int64_t total = 0;
    for (int k = 0; k < N_ROWS; k++) {
        const tensor_row *r = &rows[k];
        for (int i = 0; i < (r->scope == PER_CONV ? c->num_conv : 1); i++) {
            int s = slot_of(r, i);
            if (assigned[s] || !present(c, r, i)) continue;
            assigned[s] = 1;
            /* A stacked field holds every layer's parts: (L, parts, ...) or (parts, ...). */
            int64_t n = row_numel(c, r, i) * (r->parts ? r->parts : 1) * (r->scope == PER_LAYER ? c->num_hidden_layers : 1);
            if (block) slots[s] = block + total;
            total += n;
        }
    }
    return total;
}

/* Fills *t with instance i of row r. */
static void resolve(const slex_hubert_config *c, const float *const *slots, const tensor_row *r, int i,
                    slex_hubert_tensor *t) {
    memset(t, 0, sizeof *t);
    if (r->scope == ONCE)
        snprintf(t->name, sizeof t->name, "%s", r->name);
    else
        snprintf(t->name, sizeof t->name, r->name, i);
    t->ndim = r->ndim;
    t->numel = row_numel(c, r, i);
    for (int d = 0; d < r->ndim; d++) t->shape[d] = dim_value(c, r->shape[d], i);
    /* Index of this tensor inside its field: (layer, part) for stacked layer fields. */
    int64_t index = (r->scope == PER_LAYER ? (int64_t)i * (r->parts ? r->parts : 1) : 0) + r->part;
    const float *field = slots ? slots[slot_of(r, i)] : NULL;
    t->data = field ? (float *)field + index * t->numel : NULL; /* NULL: absent (or a frozen gradient) */
    t->conv_taps = r->conv_taps;
    t->optional = r->optional;
    t->linear = r->linear;
    t->layer = r->scope == PER_LAYER ? i : -1;
    t->site = r->site - 1;
}

int slex_hubert_tensors(const slex_hubert_config *c, const slex_hubert_params *p, slex_hubert_tensor *out) {
    const float *const *slots = p ? (const float *const *)(const void *)p : NULL;
    int n = 0;
    /* Runs of rows with the same scope, instance by instance (conv 0's tensors, then conv 1's,
     * ...; layer 0's, then layer 1's, ...): HF's state_dict order. */
    for (int k0 = 0, k1; k0 < N_ROWS; k0 = k1) {
        for (k1 = k0 + 1; k1 < N_ROWS && rows[k1].scope == rows[k0].scope;) k1++;
        for (int i = 0; i < instances(c, &rows[k0]); i++)
            for (int k = k0; k < k1; k++) {
                if (!present(c, &rows[k], i)) continue;
                if (out) resolve(c, slots, &rows[k], i, &out[n]);
                n++;
            }
    }
    return n;
}
