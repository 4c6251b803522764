#include "core/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int slex_fail_as(slex_error *err, slex_error_kind kind, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->kind = kind;
    }
    return -1;
}

slex_error_kind slex_errno_kind(int errnum) {
    switch (errnum) {
    case ENOENT:
    case ENOTDIR:
    case EISDIR:
    case EACCES:
    case EPERM:
    case ENAMETOOLONG:
    case ELOOP: return SLEX_ERR_INPUT;
    case ENOMEM:
    case EMFILE:
    case ENFILE: return SLEX_ERR_RESOURCE;
    default: return SLEX_ERR_IO;
    }
}

int slex_exit_code(const slex_error *err) {
    switch (err ? err->kind : SLEX_ERR_UNKNOWN) {
    case SLEX_ERR_INPUT: return SLEX_EXIT_INPUT;
    case SLEX_ERR_RESOURCE: return SLEX_EXIT_RESOURCE;
    case SLEX_ERR_INTERNAL: return SLEX_EXIT_INTERNAL;
    case SLEX_ERR_IO:
    case SLEX_ERR_UNKNOWN: break;
    }
    return SLEX_EXIT_FAILED;
}

int slex_exit_code_merge(int a, int b) { return a > b ? a : b; }

int slex_fail_wrap(slex_error *err, const char *fmt, ...) {
    if (err) {
        char prefix[SLEX_ERROR_MAX], old[SLEX_ERROR_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        /* Truncation of an over-long message is acceptable: it is only a message. */
        size_t used = strnlen(prefix, sizeof err->msg - 1);
        memcpy(err->msg, prefix, used);
        size_t rest = sizeof err->msg - 1 - used;
        if (rest >= 2) {
            memcpy(err->msg + used, ": ", 2);
            used += 2;
            rest -= 2;
        }
        size_t old_len = strnlen(old, rest);
        memcpy(err->msg + used, old, old_len);
        err->msg[used + old_len] = '\0';
    }
    return -1;
}

void slex_error_clear(slex_error *err) {
    if (err) {
        err->msg[0] = '\0';
        err->kind = SLEX_ERR_UNKNOWN;
    }
}
