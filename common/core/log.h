/* log: rank-prefixed messages on stderr.
 *
 * Every line starts with "slex-<program> [rank r/n]" so that interleaved output of many ranks
 * (or of job-array tasks in one log) can be told apart.  The prefix is set once by the program
 * through slex_log_init(); library modules use the same calls but only for warnings that the
 * caller cannot otherwise see (they report failures through slex_error instead). */
#ifndef SLEX_LOG_H
#define SLEX_LOG_H

typedef enum { SLEX_LOG_DEBUG = 0, SLEX_LOG_INFO = 1, SLEX_LOG_WARN = 2, SLEX_LOG_ERROR = 3 } slex_log_level;

/* program: short name such as "mfcc"; rank/size: this process's MPI rank and world size. */
void slex_log_init(const char *program, int rank, int size);
void slex_log_set_level(slex_log_level level);
/* Level from the SLEX_LOG environment variable (debug|info|warn|error), if set. */
void slex_log_level_from_env(void);

void slex_log(slex_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 when messages of this level are printed (for output that is not a slex_log line, such as
 * progress). */
int slex_log_enabled(slex_log_level level);
#define slex_debug(...) slex_log(SLEX_LOG_DEBUG, __VA_ARGS__)
#define slex_info(...) slex_log(SLEX_LOG_INFO, __VA_ARGS__)
#define slex_warn(...) slex_log(SLEX_LOG_WARN, __VA_ARGS__)
#define slex_error_log(...) slex_log(SLEX_LOG_ERROR, __VA_ARGS__)

#endif
