#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int slex_fail(slex_error *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

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
    if (err) err->msg[0] = '\0';
}
