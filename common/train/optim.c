#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define T slex_lr_schedule
static const slex_option lr_rows[] = {
    {SLEX_OPT_DOUBLE_FIELD(T, lr), .name = "lr", .def = 5e-4, .min = 0, .max = 1e3, .param = "lr",
     .help = "peak learning rate"},
    {SLEX_OPT_LONG_FIELD(T, warmup_updates), .name = "warmup-steps", .def = 0, .min = 0, .max = 1e15,
     .param = "warmup_steps", .help = "linear warm-up updates"},
    {SLEX_OPT_CHOICE_FIELD(T, kind), .name = "lr-schedule", .choices = "linear|polynomial|cosine", .def = SLEX_LR_LINEAR,
     .param = "lr_schedule", .help = "decay after the warm-up (fairseq's polynomial_decay with power 1, with --power, cosine)"},
    {SLEX_OPT_DOUBLE_FIELD(T, power), .name = "power", .def = 1, .min = 0, .max = 100, .param = "power",
     .help = "exponent of the polynomial decay"},
    {SLEX_OPT_DOUBLE_FIELD(T, end_lr), .name = "end-learning-rate", .def = 0, .min = 0, .max = 1e3, .param = "end_lr",
     .help = "learning rate at the end of the polynomial decay"},
};
#undef T
const slex_option_table slex_lr_option_table = SLEX_OPTION_TABLE(lr_rows);

void slex_lr_schedule_default(slex_lr_schedule *s) {
    slex_options_defaults(&slex_lr_option_table, s);
    s->total_updates = 0;
    s->warmup_init_lr = -1.0;
    s->min_lr = 0.0;
    s->lr_shrink = 0.1;
}

int slex_lr_kind_parse(const char *name) {
    static const char *names[] = {"linear", "polynomial", "cosine"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

int slex_lr_schedule_validate(const slex_lr_schedule *s, slex_error *err) {
    if (s->kind < SLEX_LR_LINEAR || s->kind > SLEX_LR_COSINE)
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "lr-schedule: unknown kind %d", (int)s->kind);
    if (!(s->lr > 0.0) || !isfinite(s->lr)) return slex_fail_as(err, SLEX_ERR_INPUT, "lr %g: must be positive", s->lr);
    if (s->total_updates <= 0)
        return slex_fail_as(err, SLEX_ERR_INPUT, "steps %lld: must be at least 1", (long long)s->total_updates);
    if (s->warmup_updates < 0 || s->warmup_updates > s->total_updates)
        return slex_fail_as(err, SLEX_ERR_INPUT, "warmup-steps %lld: must be in [0, steps = %lld]",
                            (long long)s->warmup_updates, (long long)s->total_updates);
    if (s->kind == SLEX_LR_COSINE && s->warmup_updates == s->total_updates)
        return slex_fail_as(err, SLEX_ERR_INPUT, "warmup-steps %lld: the cosine schedule needs steps after the warm-up",
                            (long long)s->warmup_updates);
    if (!(s->end_lr >= 0.0) || !(s->min_lr >= 0.0) || !(s->power > 0.0) || !(s->lr_shrink > 0.0))
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "lr-schedule: end-lr %g and min-lr %g must be >= 0, power %g and lr-shrink %g > 0",
                            s->end_lr, s->min_lr, s->power, s->lr_shrink);
    return 0;
}

double slex_lr_at(const slex_lr_schedule *s, int64_t n) {
    const int64_t W = s->warmup_updates, total = s->total_updates;
    if (s->kind == SLEX_LR_COSINE) {
        double min_lr = s->min_lr, max_lr = s->lr;
        if (max_lr < min_lr) min_lr = max_lr;
        double init = s->warmup_init_lr < 0.0 ? min_lr : s->warmup_init_lr;
        if (n < W) return init + (double)n * ((max_lr - init) / (double)W);
        double period = (double)(total - W), c = (double)(n - W);
        double i = floor(c / period), t = c - period * i, shrink = pow(s->lr_shrink, i);
        double lo = min_lr * shrink, hi = max_lr * shrink;
        return lo + 0.5 * (hi - lo) * (1.0 + cos(M_PI * t / period));
    }
    double power = s->kind == SLEX_LR_LINEAR ? 1.0 : s->power;
    if (W > 0 && n <= W) return ((double)n / (double)W) * s->lr;
    if (n >= total) return s->end_lr;
    double remaining = 1.0 - (double)(n - W) / (double)(total - W);
    return (s->lr - s->end_lr) * pow(remaining, power) + s->end_lr;
}

#define T slex_adam_options
static const slex_option adam_rows[] = {
    {SLEX_OPT_DOUBLE_FIELD(T, weight_decay), .name = "weight-decay", .def = 0.01, .min = 0, .max = 10,
     .param = "weight_decay", .help = "Adam's decoupled weight decay"},
    {SLEX_OPT_DOUBLE_FIELD(T, eps), .name = "adam-eps", .def = 1e-6, .min = 0, .max = 1, .flags = SLEX_OPTF_ABOVE_MIN,
     .param = "adam_eps", .help = "Adam's epsilon"},
    {SLEX_OPT_DOUBLE_FIELD(T, beta1), .name = "adam-beta1", .flags = SLEX_OPTF_INTERNAL, .def = 0.9, .param = "adam_beta1"},
    {SLEX_OPT_DOUBLE_FIELD(T, beta2), .name = "adam-beta2", .flags = SLEX_OPTF_INTERNAL, .def = 0.98, .param = "adam_beta2"},
};
#undef T
const slex_option_table slex_adam_option_table = SLEX_OPTION_TABLE(adam_rows);

void slex_adam_options_default(slex_adam_options *o) { slex_options_defaults(&slex_adam_option_table, o); }

int slex_adam_options_validate(const slex_adam_options *o, slex_error *err) {
    if (!(o->beta1 >= 0.0 && o->beta1 < 1.0) || !(o->beta2 >= 0.0 && o->beta2 < 1.0))
        return slex_fail_as(err, SLEX_ERR_INPUT, "adam-betas (%g, %g): each must be in [0, 1)", o->beta1, o->beta2);
    if (!(o->eps > 0.0) || !isfinite(o->eps))
        return slex_fail_as(err, SLEX_ERR_INPUT, "adam-eps %g: must be positive", o->eps);
    if (!(o->weight_decay >= 0.0) || !isfinite(o->weight_decay))
        return slex_fail_as(err, SLEX_ERR_INPUT, "weight-decay %g: must be >= 0", o->weight_decay);
    return 0;
}

struct slex_optim {
    slex_adam_options opts;
    int n_segments;
    float **params;   /* (n_segments) */
    int64_t *offsets; /* (n_segments + 1) into the flat buffers */
    float *grad, *m, *v;
    int64_t updates;
};

slex_optim *slex_optim_create(const slex_adam_options *opts, int n_segments, float *const *params,
                              const int64_t *sizes, slex_error *err) {
    if (slex_adam_options_validate(opts, err)) return NULL;
    if (n_segments < 1) return slex_fail_as(err, SLEX_ERR_INPUT, "optimiser: no trainable parameters"), NULL;
    slex_optim *o = calloc(1, sizeof *o);
    if (!o) return slex_fail_as(err, SLEX_ERR_RESOURCE, "optimiser: out of memory"), NULL;
    o->opts = *opts;
    o->n_segments = n_segments;
    o->params = malloc(sizeof(float *) * (size_t)n_segments);
    o->offsets = malloc(sizeof(int64_t) * (size_t)(n_segments + 1));
    if (!o->params || !o->offsets) {
        slex_optim_free(o);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "optimiser: out of memory"), NULL;
    }
    o->offsets[0] = 0;
    for (int i = 0; i < n_segments; i++) {
        if (sizes[i] < 0 || (sizes[i] > 0 && !params[i])) {
            slex_optim_free(o);
            return slex_fail_as(err, SLEX_ERR_INTERNAL, "optimiser: segment %d has no parameters (%lld floats)", i,
                                (long long)sizes[i]),
                   NULL;
        }
        o->params[i] = params[i];
        o->offsets[i + 1] = o->offsets[i] + sizes[i];
    }
    size_t n = (size_t)o->offsets[n_segments];
    o->grad = calloc(n ? n : 1, sizeof(float));
    o->m = calloc(n ? n : 1, sizeof(float));
    o->v = calloc(n ? n : 1, sizeof(float));
    if (!o->grad || !o->m || !o->v) {
        slex_optim_free(o);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "optimiser: out of memory for 3 x %zu floats", n), NULL;
    }
    return o;
}

void slex_optim_free(slex_optim *o) {
    if (!o) return;
    free(o->params);
    free(o->offsets);
    free(o->grad);
    free(o->m);
    free(o->v);
    free(o);
}

int64_t slex_optim_num_params(const slex_optim *o) { return o->offsets[o->n_segments]; }
float *slex_optim_grad(slex_optim *o, int segment) { return o->grad + o->offsets[segment]; }
float *slex_optim_grads(slex_optim *o) { return o->grad; }
int64_t slex_optim_updates(const slex_optim *o) { return o->updates; }
void slex_optim_set_updates(slex_optim *o, int64_t updates) { o->updates = updates; }
float *slex_optim_exp_avg(slex_optim *o) { return o->m; }
float *slex_optim_exp_avg_sq(slex_optim *o) { return o->v; }

void slex_optim_zero_grad(slex_optim *o) {
    memset(o->grad, 0, sizeof(float) * (size_t)slex_optim_num_params(o));
}

int slex_optim_step(slex_optim *o, double lr, double grad_scale, double clip_norm, double *grad_norm,
                    slex_error *err) {
    const int64_t n = slex_optim_num_params(o);
    float *g = o->grad;
    /* the norm of the scaled gradient, in double and in a fixed order */
    double sq = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double x = (double)g[i] * grad_scale;
        sq += x * x;
    }
    double norm = sqrt(sq);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm))
        return slex_fail_as(err, SLEX_ERR_INPUT, "gradient norm is %g at update %lld: parameters left unchanged", norm,
                            (long long)o->updates + 1);
    double coef = grad_scale;
    if (clip_norm > 0.0) {
        double c = clip_norm / (norm + 1e-6);
        if (c < 1.0) coef *= c;
    }
    const double b1 = o->opts.beta1, b2 = o->opts.beta2, eps = o->opts.eps;
    o->updates++;
    const double t = (double)o->updates;
    const double step = lr * sqrt(1.0 - pow(b2, t)) / (1.0 - pow(b1, t));
    const double decay = o->opts.weight_decay * lr;
    for (int s = 0; s < o->n_segments; s++) {
        float *p = o->params[s];
        for (int64_t j = 0, i = o->offsets[s]; i < o->offsets[s + 1]; i++, j++) {
            double gi = (double)(float)((double)g[i] * coef); /* the clipped gradient, stored as float */
            g[i] = (float)gi;
            double m = b1 * o->m[i] + (1.0 - b1) * gi;
            double v = b2 * o->v[i] + (1.0 - b2) * gi * gi;
            o->m[i] = (float)m;
            o->v[i] = (float)v;
            double pj = p[j];
            pj -= decay * pj;
            pj -= step * (double)o->m[i] / (sqrt((double)o->v[i]) + eps);
            p[j] = (float)pj;
        }
    }
    return 0;
}
