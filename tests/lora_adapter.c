/* Writes and reads PEFT LoRA adapters through common/model/lora.c, for tests that check the
 * files with other tools' rules (tests/test_lora_patterns.py).
 *   lora_adapter write SPEC DIR   SPEC: a line "r lora_alpha use_rslora", then one line per
 *                                 target "module r alpha in out"; A and B are filled with
 *                                 small values; the adapter is saved with slex_lora_save
 *   lora_adapter read DIR         prints "module r alpha" of every target slex_lora_open reads
 * Exit 0, or 1 with the error on stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/lora.h"

static int write_adapter(const char *spec, const char *dir) {
    FILE *f = fopen(spec, "r");
    if (!f) return fprintf(stderr, "%s: cannot open\n", spec), 1;
    slex_lora lora;
    memset(&lora, 0, sizeof lora);
    slex_lora_config_default(&lora.cfg);
    if (fscanf(f, "%d %lf %d", &lora.cfg.r, &lora.cfg.lora_alpha, &lora.cfg.use_rslora) != 3)
        return fprintf(stderr, "%s: bad first line\n", spec), 1;
    int cap = 16;
    lora.targets = calloc((size_t)cap, sizeof *lora.targets);
    slex_lora_target t;
    memset(&t, 0, sizeof t);
    while (fscanf(f, "%159s %d %lf %d %d", t.module, &t.r, &t.alpha, &t.in, &t.out) == 5) {
        if (lora.n_targets == cap) lora.targets = realloc(lora.targets, (size_t)(cap *= 2) * sizeof *lora.targets);
        lora.targets[lora.n_targets++] = t;
        lora.num_params += (int64_t)t.r * (t.in + t.out);
    }
    fclose(f);
    lora.params = malloc((size_t)lora.num_params * sizeof *lora.params);
    float *p = lora.params;
    for (int i = 0; i < lora.n_targets; i++) {
        slex_lora_target *x = &lora.targets[i];
        x->scaling = (float)(lora.cfg.use_rslora ? x->alpha / sqrt(x->r) : x->alpha / x->r);
        x->A = p;
        p += (int64_t)x->r * x->in;
        x->B = p;
        p += (int64_t)x->out * x->r;
    }
    for (int64_t k = 0; k < lora.num_params; k++) lora.params[k] = (float)(0.01 * sin((double)k));
    slex_error err = {{0}};
    int rc = slex_lora_save(&lora, dir, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    free(lora.params);
    free(lora.targets);
    return rc ? 1 : 0;
}

static int read_adapter(const char *dir) {
    slex_error err = {{0}};
    slex_lora *lora = slex_lora_open(dir, &err);
    if (!lora) return fprintf(stderr, "%s\n", err.msg), 1;
    for (int i = 0; i < lora->n_targets; i++)
        printf("%s %d %.17g\n", lora->targets[i].module, lora->targets[i].r, lora->targets[i].alpha);
    slex_lora_free(lora);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "write")) return write_adapter(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "read")) return read_adapter(argv[2]);
    fprintf(stderr, "usage: lora_adapter write SPEC DIR | lora_adapter read DIR\n");
    return 2;
}
