#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The prefix is process-wide by nature (one program, one rank per process). */
static char log_prefix[96] = "slex";
static slex_log_level log_level = SLEX_LOG_INFO;

void slex_log_init(const char *program, int rank, int size) {
    if (size > 1)
        snprintf(log_prefix, sizeof log_prefix, "slex-%s [rank %d/%d]", program, rank, size);
    else
        snprintf(log_prefix, sizeof log_prefix, "slex-%s", program);
}

void slex_log_set_level(slex_log_level level) { log_level = level; }

int slex_log_enabled(slex_log_level level) { return level >= log_level; }

void slex_log_level_from_env(void) {
    const char *v = getenv("SLEX_LOG");
    if (!v) return;
    if (!strcmp(v, "debug")) log_level = SLEX_LOG_DEBUG;
    else if (!strcmp(v, "info")) log_level = SLEX_LOG_INFO;
    else if (!strcmp(v, "warn")) log_level = SLEX_LOG_WARN;
    else if (!strcmp(v, "error")) log_level = SLEX_LOG_ERROR;
}

void slex_log(slex_log_level level, const char *fmt, ...) {
    static const char *names[] = {"debug", "info", "warning", "error"};
    if (level < log_level) return;
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so that lines of different ranks do not interleave mid-line. */
    if (level == SLEX_LOG_INFO)
        fprintf(stderr, "%s: %s\n", log_prefix, line);
    else
        fprintf(stderr, "%s: %s: %s\n", log_prefix, names[level], line);
}
