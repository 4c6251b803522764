/* resume: the checkpoint/resume protocol of a long computation with one output file.
 *
 * A run is named by its parameters: a JSON text of everything that determines the result (the
 * options and the content ids of the inputs).  For an output OUT:
 *   OUT               the finished output; it records the parameters it was made from (the
 *                     stage reads them back through a callback);
 *   OUT.ckpt.json     the parameters of the run in progress, written (atomically) once when a
 *                     run starts afresh, after any older checkpoint was deleted, so every state
 *                     beside it belongs to them;
 *   OUT.ckpt.history  records of a fixed number of doubles (the first: the step they belong to),
 *                     appended and fsync'd before each state;
 *   OUT.ckpt          the state, written by the stage's save callback (atomically: a file that
 *                     exists is whole), after the history records it follows.
 * The rules: a finished output of the same parameters is never redone; a finished output of
 * other parameters is an error unless --force (the stage words it, slex_resume_difference names
 * what changed); a checkpoint of the same parameters is resumed (history records past the
 * state's step, from a kill between the two writes, are dropped); a checkpoint of other
 * parameters, or any checkpoint with --force, is discarded; the checkpoint files go once the
 * output is written.
 *
 * Used by slex-kmeans (state: kmeans.h) and by training (parameters + optimizer state).  The
 * module does no MPI: the stage decides which rank writes (rank 0) and that every rank reads the
 * same checkpoint. */
#ifndef SLEX_RESUME_H
#define SLEX_RESUME_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct slex_resume {
    char *out, *ckpt, *ckpt_json, *ckpt_history; /* owned paths */
    char *params;                                /* owned copy of the run's parameters */
    char *defaults;                              /* owned copy of the options' defaults (JSON) or NULL */
    int record_len;                              /* doubles per history record */
    double *history;                             /* (n_history, record_len) */
    int64_t n_history, cap_history, n_saved;     /* n_saved: records already in the file */
} slex_resume;

/* defaults (may be NULL): the options' parameter JSON at their defaults, so that an output or a
 * checkpoint recorded by an older slex, before an option existed, is the same run when that
 * option is at its default (slex_resume_same_params). */
int slex_resume_open(slex_resume *r, const char *out, const char *params, const char *defaults, int record_len,
                     slex_error *err);
void slex_resume_close(slex_resume *r);

/* What OUT is now (the recorded parameters compared with slex_resume_same_params). */
typedef enum {
    SLEX_RESUME_ABSENT = 0, /* no output yet: run (or resume) */
    SLEX_RESUME_DONE = 1,   /* the finished output of exactly these parameters: nothing to do */
    SLEX_RESUME_OTHER = 2   /* an output of other parameters (or unreadable): an error unless --force */
} slex_resume_output;

/* read_params returns the parameters recorded in a finished output (malloc'd) or NULL.  With
 * SLEX_RESUME_OTHER, *recorded (when not NULL) receives them (malloc'd; NULL when unreadable). */
slex_resume_output slex_resume_output_state(const slex_resume *r, char *(*read_params)(const char *out, void *ctx),
                                            void *ctx, char **recorded);

/* The first difference between two parameter texts (JSON), as "PATH: OLD -> NOW" with PATH like
 * stores[0].content_id; *path (when not NULL) receives the path alone.  Both are written to
 * caller buffers of `size` bytes; an empty path when the texts do not parse. */
void slex_resume_difference(const char *recorded, const char *params, char *what, char *path, size_t size);

/* 1 when the recorded parameters are these, or would be once every top-level key they lack is
 * given its value in `defaults` (JSON of the options' defaults, may be NULL): a record written
 * before an option existed names the same run when the option is at its default, as options are
 * added with a default that keeps the earlier behaviour.  0 otherwise (also when unreadable). */
int slex_resume_same_params(const char *recorded, const char *params, const char *defaults);

/* 1 when a checkpoint of these parameters exists (OUT.ckpt and OUT.ckpt.json; slex_resume_same_params). */
int slex_resume_has_checkpoint(const slex_resume *r);

/* After the state was loaded from r->ckpt: reads the history records up to step `step`, and
 * truncates the file to them. */
int slex_resume_load_history(slex_resume *r, double step, slex_error *err);

/* A fresh run (rank 0): deletes any old checkpoint, records the parameters. */
int slex_resume_start(slex_resume *r, slex_error *err);

/* Adds a history record (record_len doubles) unless the last one has the same step. */
int slex_resume_add_record(slex_resume *r, const double *record, slex_error *err);

/* A checkpoint (rank 0): appends the new history records (fsync), then save(ctx, r->ckpt, err)
 * writes the state. */
int slex_resume_save(slex_resume *r, int (*save)(void *ctx, const char *path, slex_error *err), void *ctx,
                     slex_error *err);

/* The output was written (rank 0): the checkpoint files go. */
void slex_resume_finish(const slex_resume *r);

#endif
