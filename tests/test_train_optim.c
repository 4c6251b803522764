/* train/optim against fairseq's optimisation step run in PyTorch (tests/optim_reference.py ->
 * tests/data/train/optim.json): the learning-rate schedules after every number of updates, and
 * six updates over three parameter segments with update_freq 2 (gradients accumulated in the
 * one gradient allocation), clipping and weight decay: grad norm, parameters and both moments
 * after every update.  Also: a non-finite gradient changes nothing.
 *
 * usage: test_train_optim tests/data/train */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/fileio.h"
#include "train/optim.h"

static double num(const cJSON *o, const char *key, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static void schedule_from(const cJSON *c, slex_lr_schedule *s) {
    slex_lr_schedule_default(s);
    s->kind = (slex_lr_kind)slex_lr_kind_parse(cJSON_GetObjectItemCaseSensitive(c, "kind")->valuestring);
    s->lr = num(c, "lr", 0);
    s->warmup_updates = (int64_t)num(c, "warmup", 0);
    s->total_updates = (int64_t)num(c, "total", 0);
    s->end_lr = num(c, "end_lr", 0.0);
    s->power = num(c, "power", 1.0);
    s->warmup_init_lr = num(c, "warmup_init_lr", -1.0);
    s->min_lr = num(c, "min_lr", 0.0);
}

/* Worst relative norm error |got - want| / |want| over the segments (a JSON list of lists). */
static double seg_err(const cJSON *want, float *const *got, const int64_t *sizes, int n) {
    double worst = 0.0;
    for (int s = 0; s < n; s++) {
        const cJSON *list = cJSON_GetArrayItem(want, s);
        double num2 = 0.0, den2 = 0.0;
        for (int64_t i = 0; i < sizes[s]; i++) {
            double w = cJSON_GetArrayItem(list, (int)i)->valuedouble;
            num2 += (got[s][i] - w) * (got[s][i] - w);
            den2 += w * w;
        }
        worst = fmax(worst, sqrt(num2) / fmax(sqrt(den2), 1e-30));
    }
    return worst;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char path[4096];
    snprintf(path, sizeof path, "%s/optim.json", argv[1]);
    slex_error err = {{0}};
    char *text = slex_read_text_file(path, NULL, &err);
    if (!text) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    /* schedules */
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "schedules")) {
        slex_lr_schedule s;
        schedule_from(c, &s);
        CHECK(slex_lr_schedule_validate(&s, &err) == 0, "%s", err.msg);
        int n = 0;
        const cJSON *lr;
        cJSON_ArrayForEach(lr, cJSON_GetObjectItemCaseSensitive(c, "lrs")) {
            double got = slex_lr_at(&s, n), want = lr->valuedouble;
            CHECK(fabs(got - want) <= 1e-15 + 1e-12 * fabs(want), "schedule %s W=%lld: lr after %d updates %.17g vs %.17g",
                  cJSON_GetObjectItemCaseSensitive(c, "kind")->valuestring, (long long)s.warmup_updates, n, got, want);
            n++;
        }
    }
    /* the run */
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(root, "run");
    int nseg = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(run, "sizes"));
    int64_t sizes[8];
    float *params[8];
    for (int s = 0; s < nseg; s++) {
        sizes[s] = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(run, "sizes"), s)->valueint;
        params[s] = malloc(sizeof(float) * (size_t)sizes[s]);
        const cJSON *init = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(run, "init"), s);
        for (int64_t i = 0; i < sizes[s]; i++) params[s][i] = (float)cJSON_GetArrayItem(init, (int)i)->valuedouble;
    }
    slex_adam_options ao;
    slex_adam_options_default(&ao);
    const cJSON *betas = cJSON_GetObjectItemCaseSensitive(run, "betas");
    CHECK(ao.beta1 == cJSON_GetArrayItem(betas, 0)->valuedouble && ao.beta2 == cJSON_GetArrayItem(betas, 1)->valuedouble &&
              ao.eps == num(run, "eps", 0) && ao.weight_decay == num(run, "weight_decay", 0),
          "defaults are not fairseq's HuBERT recipe (0.9, 0.98), 1e-6, 0.01");
    slex_optim *o = slex_optim_create(&ao, nseg, params, sizes, &err);
    CHECK(o != NULL, "%s", err.msg);
    slex_lr_schedule sched;
    schedule_from(cJSON_GetObjectItemCaseSensitive(run, "schedule"), &sched);
    double clip = num(run, "clip_norm", 0);
    int u = 0;
    const cJSON *up;
    cJSON_ArrayForEach(up, cJSON_GetObjectItemCaseSensitive(run, "updates")) {
        slex_optim_zero_grad(o);
        int64_t sample_size = 0;
        const cJSON *mb;
        cJSON_ArrayForEach(mb, cJSON_GetObjectItemCaseSensitive(up, "micro")) {
            sample_size += (int64_t)num(mb, "sample_size", 0);
            for (int s = 0; s < nseg; s++) {
                float *g = slex_optim_grad(o, s);
                const cJSON *list = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(mb, "grads"), s);
                for (int64_t i = 0; i < sizes[s]; i++) g[i] += (float)cJSON_GetArrayItem(list, (int)i)->valuedouble;
            }
        }
        double lr = slex_lr_at(&sched, slex_optim_updates(o)), norm = 0.0;
        CHECK(fabs(lr - num(up, "lr", 0)) <= 1e-15, "update %d: lr %.17g vs %.17g", u, lr, num(up, "lr", 0));
        CHECK(slex_optim_step(o, lr, 1.0 / (double)sample_size, clip, &norm, &err) == 0, "%s", err.msg);
        double wn = num(up, "grad_norm", 0);
        CHECK(fabs(norm - wn) <= 1e-6 * wn, "update %d: grad norm %.9g vs %.9g", u, norm, wn);
        double ep = seg_err(cJSON_GetObjectItemCaseSensitive(up, "params"), params, sizes, nseg);
        float *m[8], *v[8];
        for (int s = 0; s < nseg; s++) {
            m[s] = slex_optim_exp_avg(o) + (slex_optim_grad(o, s) - slex_optim_grads(o));
            v[s] = slex_optim_exp_avg_sq(o) + (slex_optim_grad(o, s) - slex_optim_grads(o));
        }
        double em = seg_err(cJSON_GetObjectItemCaseSensitive(up, "exp_avg"), m, sizes, nseg);
        double ev = seg_err(cJSON_GetObjectItemCaseSensitive(up, "exp_avg_sq"), v, sizes, nseg);
        fprintf(stderr, "update %d: lr %.3g norm %.4g; relative error params %.2e exp_avg %.2e exp_avg_sq %.2e\n", u, lr,
                norm, ep, em, ev);
        CHECK(ep < 1e-6 && em < 1e-6 && ev < 1e-6, "update %d: state differs from fairseq's", u);
        u++;
    }
    CHECK(u == 6, "%d updates in the fixture", u);
    /* a non-finite gradient: error, nothing changes */
    float keep = params[1][3], keep_m = slex_optim_exp_avg(o)[10];
    int64_t keep_u = slex_optim_updates(o);
    slex_optim_zero_grad(o);
    slex_optim_grad(o, 1)[3] = INFINITY;
    CHECK(slex_optim_step(o, 1e-3, 1.0, 1.0, NULL, &err) == -1 && strstr(err.msg, "norm"), "inf gradient accepted");
    CHECK(params[1][3] == keep && slex_optim_exp_avg(o)[10] == keep_m && slex_optim_updates(o) == keep_u,
          "a failed update changed the state");
    slex_optim_free(o);
    for (int s = 0; s < nseg; s++) free(params[s]);
    cJSON_Delete(root);
    /* validation */
    slex_lr_schedule s;
    slex_lr_schedule_default(&s);
    CHECK(slex_lr_schedule_validate(&s, &err) == -1, "a schedule without steps accepted");
    CHECK(slex_lr_kind_parse("tri_stage") == -1, "unknown schedule name accepted");
    return check_finish("test_train_optim");
}
