/* progress: "done/total, audio hours per second, ETA" for long MPI work.
 *
 * Every rank calls slex_progress_add() as it finishes items; rank 0 prints the total over all
 * ranks at most every `interval` seconds: one updating line on a terminal, plain lines in batch
 * logs.  Other ranks send their counts to rank 0 with non-blocking messages on a private
 * communicator, so no rank ever waits for another mid-run.  slex_progress_finish() is collective
 * (every rank of the communicator calls it) and prints the final summary. */
#ifndef SLEX_PROGRESS_H
#define SLEX_PROGRESS_H

#include <stdint.h>

typedef struct slex_progress slex_progress;

/* what: a noun for items ("utterances"); total_items: over all ranks; total_audio_seconds may be
 * 0 when unknown.  A rank that works alone (job-array task) passes `collective` = 0. */
slex_progress *slex_progress_start(const char *what, int64_t total_items, double total_audio_seconds,
                                   int collective);
void slex_progress_add(slex_progress *p, int64_t items, double audio_seconds);
/* Prints the final line (rank 0) and frees p; collective when started so. */
void slex_progress_finish(slex_progress *p);

#endif
