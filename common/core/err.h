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

typedef struct slex_error {
    char msg[SLEX_ERROR_MAX];
} slex_error;

/* Formats the message into err (when err is not NULL) and returns -1, so that failures read
 * `return slex_fail(err, "%s: %s", path, reason);`. */
int slex_fail(slex_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message with more context ("while reading X: <old message>"). */
int slex_fail_wrap(slex_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void slex_error_clear(slex_error *err);

#endif
