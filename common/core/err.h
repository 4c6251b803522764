/* err: errors carried as values.
 *
 * Library functions return 0 on success and -1 on failure; on failure they fill a
 * caller-supplied slex_error (which may be NULL) with a message that names the file and
 * the reason.  Opaque handles keep their own slex_error and expose it through an
 * `x_error(handle)` accessor, as libsndfile's sf_strerror does.  Library code never prints
 * to stdout and never calls exit(): the program decides what to do with the message. */
#ifndef SLEX_ERR_H
#define SLEX_ERR_H

#include <stddef.h>

#define SLEX_ERROR_MAX 1024

/* What kind of failure an error is, so that whoever runs a stage knows what to do next. */
typedef enum slex_error_kind {
    SLEX_ERR_UNKNOWN = 0, /* not classified (a zeroed error, no failure recorded): treated like I/O */
    SLEX_ERR_IO,          /* reading or writing failed (disk full, permissions, a file system gone,
                             another run holding the output): retry once the cause is gone */
    SLEX_ERR_RESOURCE,    /* out of memory or another limit: retry with more */
    SLEX_ERR_INPUT,       /* the input is wrong (data, files, a store made otherwise): fix it; the
                             same run fails the same way */
    SLEX_ERR_INTERNAL,    /* a bug in slex: report it */
} slex_error_kind;

/* The members sit in an anonymous struct so that `slex_error e = {{0}};`, the zero initialiser
 * used throughout, stays warning-free with -Wextra. */
typedef struct slex_error {
    struct {
        slex_error_kind kind;
        char msg[SLEX_ERROR_MAX];
    };
} slex_error;

/* Exit codes of every stage (README "Exit codes"): a driver retries 1 and 5, not 4 or 6. */
enum {
    SLEX_EXIT_OK = 0,
    SLEX_EXIT_FAILED = 1,   /* I/O or unclassified: retrying the job may succeed */
    SLEX_EXIT_USAGE = 2,    /* bad command line */
    SLEX_EXIT_REJECTS = 3,  /* more rejected inputs than --max-reject (the output is complete) */
    SLEX_EXIT_INPUT = 4,    /* bad input: fix it before running again */
    SLEX_EXIT_RESOURCE = 5, /* out of memory (or another resource): retry with more */
    SLEX_EXIT_INTERNAL = 6, /* a bug in slex */
};

/* Formats the message into err (when err is not NULL), with its kind, and returns -1, so that
 * failures read `return slex_fail_as(err, SLEX_ERR_INPUT, "%s: %s", path, reason);`.  There is no
 * kind-less form: every failure says whether retrying can help. */
int slex_fail_as(slex_error *err, slex_error_kind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The kind of a failed system call's errno: a missing or forbidden file is the input's fault
 * (ENOENT, ENOTDIR, EISDIR, EACCES, EPERM, ENAMETOOLONG, ELOOP), memory and descriptor limits are
 * resources (ENOMEM, EMFILE, ENFILE), the rest I/O (ENOSPC, EDQUOT, EFBIG, EIO, EROFS, ESTALE...). */
slex_error_kind slex_errno_kind(int errnum);

/* Prefixes an existing message with more context ("while reading X: <old message>"); the kind
 * stays. */
int slex_fail_wrap(slex_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void slex_error_clear(slex_error *err);

/* The exit code of a stage that failed with err: 1 (I/O, unknown), 4, 5 or 6 by kind. */
int slex_exit_code(const slex_error *err);
/* Of two exit codes, the one to report: the larger, since the codes grow from "done" through
 * "failed, retry" to the more specific failures, so that the ranks of a collective run agree on
 * one (MPI_MAX). */
int slex_exit_code_merge(int a, int b);

#endif
