/* test_err: error kinds (core/err.h) and the exit codes they map to (README "Exit codes"). */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "core/fileio.h"

int main(int argc, char **argv) {
    const char *work = argc > 1 ? argv[1] : "/tmp";
    slex_error err = {{0}};
    CHECK(err.kind == SLEX_ERR_UNKNOWN && slex_exit_code(&err) == 1, "zeroed error: unknown, exit 1");
    slex_fail_as(&err, SLEX_ERR_INPUT, "%s: bad line %d", "m.tsv", 3);
    CHECK(!strcmp(err.msg, "m.tsv: bad line 3") && err.kind == SLEX_ERR_INPUT, "fail_as: %s", err.msg);
    CHECK(slex_exit_code(&err) == 4, "input -> 4");
    slex_fail_wrap(&err, "while reading %s", "x");
    CHECK(err.kind == SLEX_ERR_INPUT && !strcmp(err.msg, "while reading x: m.tsv: bad line 3"), "wrap keeps the kind");
    const int codes[][2] = {{SLEX_ERR_UNKNOWN, 1}, {SLEX_ERR_IO, 1}, {SLEX_ERR_RESOURCE, 5}, {SLEX_ERR_INPUT, 4},
                            {SLEX_ERR_INTERNAL, 6}};
    for (int i = 0; i < 5; i++) {
        err.kind = (slex_error_kind)codes[i][0];
        CHECK(slex_exit_code(&err) == codes[i][1], "kind %d -> exit %d", codes[i][0], codes[i][1]);
    }
    CHECK(slex_exit_code(NULL) == 1, "no error -> 1");
    slex_error_clear(&err);
    CHECK(err.kind == SLEX_ERR_UNKNOWN && !err.msg[0], "clear");
    /* Ranks agree on the most specific code. */
    CHECK(slex_exit_code_merge(0, 1) == 1 && slex_exit_code_merge(4, 1) == 4 && slex_exit_code_merge(1, 6) == 6 &&
              slex_exit_code_merge(3, 0) == 3,
          "merge");
    CHECK(slex_errno_kind(ENOENT) == SLEX_ERR_INPUT && slex_errno_kind(EACCES) == SLEX_ERR_INPUT, "missing file: input");
    CHECK(slex_errno_kind(ENOSPC) == SLEX_ERR_IO && slex_errno_kind(EIO) == SLEX_ERR_IO &&
              slex_errno_kind(EDQUOT) == SLEX_ERR_IO,
          "disk: I/O");
    CHECK(slex_errno_kind(ENOMEM) == SLEX_ERR_RESOURCE && slex_errno_kind(EMFILE) == SLEX_ERR_RESOURCE, "resources");
    /* Library failures carry their kind: a missing input file, an output in a missing place. */
    char path[4096];
    snprintf(path, sizeof path, "%s/test_err_no_such_file", work);
    CHECK(!slex_read_text_file(path, NULL, &err) && err.kind == SLEX_ERR_INPUT, "missing file: %s", err.msg);
    snprintf(path, sizeof path, "/proc/self/no-such-dir/out.json");
    CHECK(slex_write_file_atomic(path, "{}", 2, &err) && slex_exit_code(&err) != 0, "unwritable: %s", err.msg);
    return check_finish("test_err");
}
