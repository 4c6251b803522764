#include "core/progress.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

enum { TAG_UPDATE = 1, TAG_DONE = 2 };

struct slex_progress {
    const char *what;
    int64_t total_items;
    double total_audio;
    int collective, rank, size, tty;
    MPI_Comm comm;
    double start, last_print, last_send, interval;
    int64_t my_items;     /* this rank's count */
    double my_audio;
    int64_t *rank_items;  /* rank 0: the latest count of every rank */
    double *rank_audio;
    MPI_Request send_req;
    double send_buf[2];
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_duration(double s, char *buf, size_t size) {
    if (!isfinite(s) || s < 0) snprintf(buf, size, "?");
    else if (s < 90) snprintf(buf, size, "%.0fs", s);
    else if (s < 5400) snprintf(buf, size, "%.0fm%02.0fs", floor(s / 60), fmod(s, 60));
    else snprintf(buf, size, "%.0fh%02.0fm", floor(s / 3600), floor(fmod(s, 3600) / 60));
}

static void print_line(slex_progress *p, int final) {
    int64_t items = 0;
    double audio = 0;
    for (int r = 0; r < p->size; r++) items += p->rank_items[r], audio += p->rank_audio[r];
    double elapsed = now_seconds() - p->start;
    double rate = elapsed > 0 ? audio / 3600.0 / elapsed : 0;
    double frac = p->total_items ? (double)items / (double)p->total_items : 1;
    if (p->total_audio > 0) frac = audio / p->total_audio;
    char eta[32], took[32];
    format_duration(frac > 0 ? elapsed * (1 - frac) / frac : NAN, eta, sizeof eta);
    format_duration(elapsed, took, sizeof took);
    char line[256];
    if (final)
        snprintf(line, sizeof line, "done: %lld/%lld %s, %.2f h of audio in %s (%.2f audio h/s, %.0fx real time)",
                 (long long)items, (long long)p->total_items, p->what, audio / 3600, took, rate, rate * 3600);
    else
        /* as a multiple of real time: a node does ~100x, which in audio hours per second reads 0.03 */
        snprintf(line, sizeof line, "%lld/%lld %s (%.1f%%), %.0fx real time, ETA %s", (long long)items,
                 (long long)p->total_items, p->what, 100 * frac, rate * 3600, eta);
    if (!slex_log_enabled(SLEX_LOG_INFO)) return; /* SLEX_LOG=warn or error: progress is info */
    if (p->tty) fprintf(stderr, "\r%-79s%s", line, final ? "\n" : "");
    else fprintf(stderr, "progress: %s\n", line);
    fflush(stderr);
}

slex_progress *slex_progress_start(const char *what, int64_t total_items, double total_audio_seconds,
                                   int collective) {
    slex_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->what = what;
    p->total_items = total_items;
    p->total_audio = total_audio_seconds;
    p->collective = collective;
    p->size = 1;
    if (collective) {
        MPI_Comm_dup(MPI_COMM_WORLD, &p->comm);
        MPI_Comm_rank(p->comm, &p->rank);
        MPI_Comm_size(p->comm, &p->size);
    }
    p->tty = isatty(2);
    const char *env = getenv("SLEX_PROGRESS_INTERVAL");
    p->interval = env ? atof(env) : (p->tty ? 1.0 : 30.0);
    p->rank_items = calloc((size_t)p->size, sizeof *p->rank_items);
    p->rank_audio = calloc((size_t)p->size, sizeof *p->rank_audio);
    p->send_req = MPI_REQUEST_NULL;
    p->start = p->last_print = p->last_send = now_seconds();
    return p;
}

/* Rank 0: takes in every count that has arrived (non-blocking). */
static void drain_updates(slex_progress *p) {
    for (;;) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_UPDATE, p->comm, &flag, &st);
        if (!flag) return;
        double buf[2];
        MPI_Recv(buf, 2, MPI_DOUBLE, st.MPI_SOURCE, TAG_UPDATE, p->comm, MPI_STATUS_IGNORE);
        p->rank_items[st.MPI_SOURCE] = (int64_t)buf[0];
        p->rank_audio[st.MPI_SOURCE] = buf[1];
    }
}

void slex_progress_add(slex_progress *p, int64_t items, double audio_seconds) {
    if (!p) return;
    p->my_items += items;
    p->my_audio += audio_seconds;
    double t = now_seconds();
    if (p->rank == 0) {
        p->rank_items[0] = p->my_items;
        p->rank_audio[0] = p->my_audio;
        if (t - p->last_print < p->interval) return;
        if (p->collective) drain_updates(p);
        print_line(p, 0);
        p->last_print = t;
        return;
    }
    if (t - p->last_send < p->interval / 2) return;
    int done = 1;
    if (p->send_req != MPI_REQUEST_NULL) MPI_Test(&p->send_req, &done, MPI_STATUS_IGNORE);
    if (!done) return; /* rank 0 is busy: skip this update rather than queue it */
    p->send_buf[0] = (double)p->my_items;
    p->send_buf[1] = p->my_audio;
    MPI_Isend(p->send_buf, 2, MPI_DOUBLE, 0, TAG_UPDATE, p->comm, &p->send_req);
    p->last_send = t;
}

void slex_progress_finish(slex_progress *p) {
    if (!p) return;
    if (p->collective) {
        if (p->rank == 0) {
            p->rank_items[0] = p->my_items;
            p->rank_audio[0] = p->my_audio;
            /* Every other rank ends with one DONE message carrying its final count; messages from
             * one rank arrive in order, so all its updates are drained before its DONE. */
            for (int pending = p->size - 1; pending > 0;) {
                double buf[2];
                MPI_Status st;
                MPI_Recv(buf, 2, MPI_DOUBLE, MPI_ANY_SOURCE, MPI_ANY_TAG, p->comm, &st);
                p->rank_items[st.MPI_SOURCE] = (int64_t)buf[0];
                p->rank_audio[st.MPI_SOURCE] = buf[1];
                if (st.MPI_TAG == TAG_DONE) pending--;
            }
        } else {
            if (p->send_req != MPI_REQUEST_NULL) MPI_Wait(&p->send_req, MPI_STATUS_IGNORE);
            double buf[2] = {(double)p->my_items, p->my_audio};
            MPI_Send(buf, 2, MPI_DOUBLE, 0, TAG_DONE, p->comm);
        }
    } else {
        p->rank_items[0] = p->my_items;
        p->rank_audio[0] = p->my_audio;
    }
    if (p->rank == 0 && (p->total_items > 0 || p->my_items > 0)) print_line(p, 1); /* nothing was to do: quiet */
    if (p->collective) MPI_Comm_free(&p->comm);
    free(p->rank_items);
    free(p->rank_audio);
    free(p);
}
