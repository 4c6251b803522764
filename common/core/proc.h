/* proc: running an external program (a synthesiser, sox) and reporting how it ended.
 *
 * The program runs with stdin /dev/null; its stdout and stderr are captured whole, so its
 * messages can be quoted in an error.  It gets the caller's environment, working directory and
 * signal dispositions, and every descriptor the caller holds without O_CLOEXEC (MPI's sockets,
 * say: the synthesisers and sox run here never use them). */
#ifndef SLEX_PROC_H
#define SLEX_PROC_H

#include <stddef.h>

#include "core/err.h"

/* A program's captured output: NUL-terminated text (malloc'd; the caller frees p). */
typedef struct slex_proc_text {
    char *p;
    size_t n;
} slex_proc_text;

/* 1 when `name` is an executable file in a PATH directory (/bin:/usr/bin without PATH, as execvp). */
int slex_proc_in_path(const char *name);

/* Runs argv[0] (found in PATH); its stdout and stderr into out and errs.  *status is waitpid's
 * status.  Fails (-1) only when it could not be run at all; a program that ran and failed is
 * a 0 return with that status (slex_proc_describe_exit words it). */
int slex_proc_run(char *const argv[], slex_proc_text *out, slex_proc_text *errs, int *status, slex_error *err);

/* Makes a private directory for a program's files, $TMPDIR/slex-<tag>-XXXXXX (/tmp when TMPDIR is
 * unset), into buf. */
int slex_proc_tmpdir(const char *tag, char *buf, size_t size, slex_error *err);

/* 1 when status is a normal exit with status 0. */
int slex_proc_succeeded(int status);

/* The last line of s (a program's stderr), without the newline, into buf. */
void slex_proc_last_line(const char *s, char *buf, size_t size);

/* "exited with status 3" / "was killed by Segmentation fault", plus errs' last line. */
void slex_proc_describe_exit(int status, const char *errs, char *buf, size_t size);

#endif
