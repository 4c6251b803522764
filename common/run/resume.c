#include "run/resume.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"

static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

int slex_resume_open(slex_resume *r, const char *out, const char *params, const char *defaults, int record_len,
                     slex_error *err) {
    memset(r, 0, sizeof *r);
    r->record_len = record_len;
    r->out = join(out, "");
    r->ckpt = join(out, ".ckpt");
    r->ckpt_json = join(out, ".ckpt.json");
    r->ckpt_history = join(out, ".ckpt.history");
    r->params = join(params, "");
    r->defaults = defaults ? join(defaults, "") : NULL;
    if (!r->out || !r->ckpt || !r->ckpt_json || !r->ckpt_history || !r->params || (defaults && !r->defaults) ||
        record_len < 1) {
        slex_resume_close(r);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory for the checkpoint names", out);
    }
    return 0;
}

void slex_resume_close(slex_resume *r) {
    free(r->out);
    free(r->ckpt);
    free(r->ckpt_json);
    free(r->ckpt_history);
    free(r->params);
    free(r->defaults);
    free(r->history);
    memset(r, 0, sizeof *r);
}

slex_resume_output slex_resume_output_state(const slex_resume *r, char *(*read_params)(const char *out, void *ctx),
                                            void *ctx, char **recorded) {
    if (recorded) *recorded = NULL;
    if (!slex_path_exists(r->out)) return SLEX_RESUME_ABSENT;
    char *params = read_params(r->out, ctx);
    if (params && slex_resume_same_params(params, r->params, r->defaults)) {
        free(params);
        return SLEX_RESUME_DONE;
    }
    if (recorded) *recorded = params;
    else free(params);
    return SLEX_RESUME_OTHER;
}

/* Describes a JSON value briefly (strings quoted, long values cut). */
static void brief(const cJSON *v, char *buf, size_t size) {
    char *text = v ? cJSON_PrintUnformatted(v) : NULL;
    snprintf(buf, size, "%s", text ? text : "(absent)");
    if (text && strlen(text) >= size && size > 4) memcpy(buf + size - 4, "...", 4);
    free(text);
}

/* Depth-first search for the first difference; 1 when found (path and values filled). */
static int first_difference(const cJSON *a, const cJSON *b, char *path, size_t size, char *old, char *now,
                            size_t vsize) {
    if (a && b && cJSON_IsObject(a) && cJSON_IsObject(b)) {
        size_t len = strlen(path);
        for (const cJSON *x = b->child; x; x = x->next) { /* members of the new text, in its order */
            snprintf(path + len, size - len, "%s%s", len ? "." : "", x->string);
            if (first_difference(cJSON_GetObjectItemCaseSensitive(a, x->string), x, path, size, old, now, vsize))
                return 1;
        }
        for (const cJSON *x = a->child; x; x = x->next) /* members that are gone */
            if (!cJSON_GetObjectItemCaseSensitive(b, x->string)) {
                snprintf(path + len, size - len, "%s%s", len ? "." : "", x->string);
                return first_difference(x, NULL, path, size, old, now, vsize);
            }
        path[len] = '\0';
        return 0;
    }
    if (a && b && cJSON_IsArray(a) && cJSON_IsArray(b) && cJSON_GetArraySize(a) == cJSON_GetArraySize(b)) {
        size_t len = strlen(path);
        const cJSON *y = a->child;
        int i = 0;
        for (const cJSON *x = b->child; x; x = x->next, y = y->next, i++) {
            snprintf(path + len, size - len, "[%d]", i);
            if (first_difference(y, x, path, size, old, now, vsize)) return 1;
        }
        path[len] = '\0';
        return 0;
    }
    if (a && b && cJSON_Compare(a, b, 1)) return 0;
    brief(a, old, vsize);
    brief(b, now, vsize);
    return 1;
}

void slex_resume_difference(const char *recorded, const char *params, char *what, char *path, size_t size) {
    cJSON *a = recorded ? cJSON_Parse(recorded) : NULL, *b = params ? cJSON_Parse(params) : NULL;
    char p[512] = "", old[160], now[160];
    if (a && b && first_difference(a, b, p, sizeof p, old, now, sizeof old))
        snprintf(what, size, "%s: %s -> %s", p[0] ? p : "(the whole record)", old, now);
    else
        snprintf(what, size, "%s", a ? "no difference" : "the recorded parameters are unreadable");
    if (path) snprintf(path, size, "%s", a && b ? p : "");
    cJSON_Delete(a);
    cJSON_Delete(b);
}

int slex_resume_same_params(const char *recorded, const char *params, const char *defaults) {
    if (!strcmp(recorded, params)) return 1;
    cJSON *r = cJSON_Parse(recorded), *p = cJSON_Parse(params), *d = defaults ? cJSON_Parse(defaults) : NULL;
    int same = r && p && d && cJSON_IsObject(r) && cJSON_IsObject(p);
    for (const cJSON *x = same ? p->child : NULL; x && same; x = x->next) {
        if (cJSON_GetObjectItemCaseSensitive(r, x->string)) continue;
        const cJSON *def = cJSON_GetObjectItemCaseSensitive(d, x->string);
        same = def && cJSON_Compare(def, x, 1) && cJSON_AddItemToObject(r, x->string, cJSON_Duplicate(def, 1));
    }
    same = same && cJSON_Compare(r, p, 1);
    cJSON_Delete(r);
    cJSON_Delete(p);
    cJSON_Delete(d);
    return same;
}

int slex_resume_has_checkpoint(const slex_resume *r) {
    if (!slex_path_exists(r->ckpt) || !slex_path_exists(r->ckpt_json)) return 0;
    char *params = slex_read_text_file(r->ckpt_json, NULL, NULL);
    int same = params && slex_resume_same_params(params, r->params, r->defaults);
    free(params);
    return same;
}

static int push_record(slex_resume *r, const double *record) {
    if (r->n_history == r->cap_history) {
        int64_t cap = r->cap_history ? 2 * r->cap_history : 64;
        double *grown = realloc(r->history, (size_t)cap * (size_t)r->record_len * sizeof *grown);
        if (!grown) return -1;
        r->history = grown;
        r->cap_history = cap;
    }
    memcpy(r->history + (size_t)r->record_len * (size_t)r->n_history++, record, (size_t)r->record_len * sizeof *record);
    return 0;
}

int slex_resume_load_history(slex_resume *r, double step, slex_error *err) {
    r->n_history = r->n_saved = 0;
    FILE *f = fopen(r->ckpt_history, "rb");
    double *record = malloc((size_t)r->record_len * sizeof *record);
    int rc = record ? 0 : slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", r->ckpt_history);
    while (!rc && f && fread(record, sizeof(double), (size_t)r->record_len, f) == (size_t)r->record_len &&
           record[0] <= step)
        if (push_record(r, record)) rc = slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", r->ckpt_history);
    if (f) fclose(f);
    free(record);
    r->n_saved = r->n_history;
    if (!rc && truncate(r->ckpt_history, (off_t)(r->n_history * r->record_len * (int64_t)sizeof(double))) &&
        errno != ENOENT)
        rc = slex_fail_as(err, slex_errno_kind(errno), "%s: cannot truncate: %s", r->ckpt_history, strerror(errno));
    return rc;
}

int slex_resume_start(slex_resume *r, slex_error *err) {
    r->n_history = r->n_saved = 0;
    unlink(r->ckpt);
    unlink(r->ckpt_history);
    return slex_write_file_atomic(r->ckpt_json, r->params, strlen(r->params), err);
}

int slex_resume_add_record(slex_resume *r, const double *record, slex_error *err) {
    if (r->n_history && r->history[(size_t)r->record_len * (size_t)(r->n_history - 1)] == record[0]) return 0;
    if (push_record(r, record)) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    return 0;
}

/* Appends the records not yet in the history file (raw doubles: restored bit for bit). */
static int append_history(slex_resume *r, slex_error *err) {
    if (r->n_saved == r->n_history) return 0;
    FILE *f = fopen(r->ckpt_history, "ab");
    if (!f) return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open: %s", r->ckpt_history, strerror(errno));
    size_t n = (size_t)(r->n_history - r->n_saved) * (size_t)r->record_len;
    int bad = fwrite(r->history + (size_t)r->record_len * (size_t)r->n_saved, sizeof(double), n, f) != n ||
              fflush(f) || fsync(fileno(f));
    bad |= fclose(f) != 0;
    if (bad) return slex_fail_as(err, SLEX_ERR_IO, "%s: write failed (disk full?)", r->ckpt_history);
    r->n_saved = r->n_history;
    return 0;
}

int slex_resume_save(slex_resume *r, int (*save)(void *ctx, const char *path, slex_error *err), void *ctx,
                     slex_error *err) {
    if (append_history(r, err)) return -1;
    return save(ctx, r->ckpt, err);
}

void slex_resume_finish(const slex_resume *r) {
    unlink(r->ckpt);
    unlink(r->ckpt_history);
    unlink(r->ckpt_json);
}
