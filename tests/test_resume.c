/* test_resume: run/resume, the checkpoint/resume protocol, against hand-worked cases: what an
 * output is (absent, done, other parameters), the first difference of two parameter texts, a
 * fresh start deleting an old checkpoint, history records appended before each state and the
 * records past a state's step (a kill between the two writes) dropped on resume.
 *   test_resume WORK_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "core/fileio.h"
#include "run/resume.h"

static char *recorded_params(const char *out, void *ctx) {
    (void)ctx;
    return slex_read_text_file(out, NULL, NULL); /* the "output" is its parameters here */
}

static int save_text(void *ctx, const char *path, slex_error *err) {
    return slex_write_file_atomic(path, ctx, strlen(ctx), err);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) ? -1 : (long)st.st_size;
}

static void test_output_state(const char *dir) {
    char out[1024];
    snprintf(out, sizeof out, "%s/out", dir);
    remove(out);
    slex_resume r;
    slex_error err = {{0}};
    const char *params = "{\"k\":3,\"stores\":[{\"store\":\"a\",\"content_id\":\"1111\"}]}";
    CHECK(slex_resume_open(&r, out, params, NULL, 2, &err) == 0, "%s", err.msg);
    char *rec = NULL;
    CHECK(slex_resume_output_state(&r, recorded_params, NULL, &rec) == SLEX_RESUME_ABSENT && !rec, "absent");
    slex_write_file_atomic(out, params, strlen(params), &err);
    CHECK(slex_resume_output_state(&r, recorded_params, NULL, &rec) == SLEX_RESUME_DONE && !rec, "done");
    const char *older = "{\"k\":3,\"stores\":[{\"store\":\"a\",\"content_id\":\"0000\"}]}";
    slex_write_file_atomic(out, older, strlen(older), &err);
    CHECK(slex_resume_output_state(&r, recorded_params, NULL, &rec) == SLEX_RESUME_OTHER && rec &&
              !strcmp(rec, older),
          "other parameters, recorded ones returned");
    char what[256], path[256];
    slex_resume_difference(rec, params, what, path, sizeof what);
    CHECK(!strcmp(path, "stores[0].content_id"), "path: %s", path);
    CHECK(!strcmp(what, "stores[0].content_id: \"0000\" -> \"1111\""), "what: %s", what);
    free(rec);
    slex_resume_difference("{\"k\":3,\"tol\":0}", "{\"k\":4,\"tol\":0}", what, path, sizeof what);
    CHECK(!strcmp(what, "k: 3 -> 4"), "what: %s", what);
    slex_resume_difference("{\"k\":3,\"gone\":1}", "{\"k\":3}", what, path, sizeof what);
    CHECK(!strcmp(what, "gone: 1 -> (absent)"), "what: %s", what);
    slex_resume_difference("{\"s\":[1,2]}", "{\"s\":[1,2,3]}", what, path, sizeof what);
    CHECK(!strcmp(what, "s: [1,2] -> [1,2,3]"), "what: %s", what);
    slex_resume_difference("not json", "{\"k\":3}", what, path, sizeof what);
    CHECK(strstr(what, "unreadable") && path[0] == '\0', "what: %s", what);
    slex_resume_close(&r);
}

static void test_checkpoints(const char *dir) {
    char out[1024];
    snprintf(out, sizeof out, "%s/model", dir);
    slex_resume r;
    slex_error err = {{0}};
    const char *params = "{\"lr\":0.001}";
    CHECK(slex_resume_open(&r, out, params, NULL, 2, &err) == 0, "%s", err.msg);
    /* An old checkpoint of other parameters: not resumable, deleted by a fresh start. */
    slex_write_file_atomic(r.ckpt, "old", 3, &err);
    slex_write_file_atomic(r.ckpt_json, "{\"lr\":0.01}", 11, &err);
    slex_write_file_atomic(r.ckpt_history, "xxxxxxxxxxxxxxxx", 16, &err);
    CHECK(!slex_resume_has_checkpoint(&r), "a checkpoint of other parameters is not resumable");
    CHECK(slex_resume_start(&r, &err) == 0, "%s", err.msg);
    CHECK(!slex_path_exists(r.ckpt) && !slex_path_exists(r.ckpt_history), "old checkpoint deleted");
    char *rec = slex_read_text_file(r.ckpt_json, NULL, NULL);
    CHECK(rec && !strcmp(rec, params), "parameters recorded");
    free(rec);
    CHECK(!slex_resume_has_checkpoint(&r), "no state yet");
    /* Steps 10 and 20 saved; a record of step 30 appended but its state never written (kill). */
    const double h[3][2] = {{10, 1.5}, {20, 1.25}, {30, 1.125}};
    CHECK(slex_resume_add_record(&r, h[0], &err) == 0 && slex_resume_add_record(&r, h[0], &err) == 0,
          "a repeated step is one record");
    CHECK(slex_resume_save(&r, save_text, "state-10", &err) == 0, "%s", err.msg);
    slex_resume_add_record(&r, h[1], &err);
    CHECK(slex_resume_save(&r, save_text, "state-20", &err) == 0, "%s", err.msg);
    CHECK(file_size(r.ckpt_history) == 2 * 2 * 8, "history holds 2 records: %ld bytes", file_size(r.ckpt_history));
    FILE *f = fopen(r.ckpt_history, "ab");
    fwrite(h[2], sizeof(double), 2, f);
    fclose(f);
    slex_resume_close(&r);
    /* The resumed run: the state is of step 20, so the record of step 30 goes. */
    CHECK(slex_resume_open(&r, out, params, NULL, 2, &err) == 0, "%s", err.msg);
    CHECK(slex_resume_has_checkpoint(&r), "resumable");
    rec = slex_read_text_file(r.ckpt, NULL, NULL);
    CHECK(rec && !strcmp(rec, "state-20"), "the last state");
    free(rec);
    CHECK(slex_resume_load_history(&r, 20, &err) == 0, "%s", err.msg);
    CHECK(r.n_history == 2 && r.history[0] == 10 && r.history[1] == 1.5 && r.history[2] == 20 && r.history[3] == 1.25,
          "history up to the state's step: %lld records", (long long)r.n_history);
    CHECK(file_size(r.ckpt_history) == 2 * 2 * 8, "history file truncated to them: %ld", file_size(r.ckpt_history));
    slex_resume_finish(&r);
    CHECK(!slex_path_exists(r.ckpt) && !slex_path_exists(r.ckpt_json) && !slex_path_exists(r.ckpt_history),
          "checkpoint files gone when finished");
    slex_resume_close(&r);
}

/* A record of an older slex lacks the options added since: the same run when they are at their
 * defaults, for a finished output and for a checkpoint alike. */
static void test_older_records(const char *dir) {
    char out[1024];
    snprintf(out, sizeof out, "%s/older", dir);
    slex_resume r;
    slex_error err = {{0}};
    const char *params = "{\"k\":3,\"tol\":0,\"seed\":5}", *defaults = "{\"tol\":0,\"seed\":0}";
    CHECK(slex_resume_open(&r, out, params, defaults, 2, &err) == 0, "%s", err.msg);
    const char *no_tol = "{\"k\":3,\"seed\":5}", *no_seed = "{\"k\":3,\"tol\":0}";
    slex_write_file_atomic(out, no_tol, strlen(no_tol), &err);
    CHECK(slex_resume_output_state(&r, recorded_params, NULL, NULL) == SLEX_RESUME_DONE, "tol absent, at its default");
    slex_write_file_atomic(out, no_seed, strlen(no_seed), &err);
    CHECK(slex_resume_output_state(&r, recorded_params, NULL, NULL) == SLEX_RESUME_OTHER, "seed absent, not at its default");
    remove(out);
    slex_write_file_atomic(r.ckpt, "state", 5, &err);
    slex_write_file_atomic(r.ckpt_json, no_tol, strlen(no_tol), &err);
    CHECK(slex_resume_has_checkpoint(&r), "a checkpoint recorded without tol resumes");
    slex_write_file_atomic(r.ckpt_json, no_seed, strlen(no_seed), &err);
    CHECK(!slex_resume_has_checkpoint(&r), "a checkpoint recorded without seed (5 now) does not");
    slex_resume_close(&r);
    CHECK(slex_resume_open(&r, out, params, NULL, 2, &err) == 0, "%s", err.msg);
    slex_write_file_atomic(r.ckpt_json, no_tol, strlen(no_tol), &err);
    CHECK(!slex_resume_has_checkpoint(&r), "without defaults every key counts");
    slex_resume_finish(&r);
    slex_resume_close(&r);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp/test_resume";
    slex_error err = {{0}};
    if (slex_mkdirs(dir, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    test_output_state(dir);
    test_checkpoints(dir);
    test_older_records(dir);
    return check_finish("test_resume");
}
