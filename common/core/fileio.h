/* fileio: the file operations that make outputs crash-safe and checkable.
 * Atomic writes (temporary name, fsync, rename), directory creation, CRC-32 of files, small
 * text files, and the 64-bit fingerprint that names a set of parameters. */
#ifndef SLEX_FILEIO_H
#define SLEX_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

/* mkdir -p; succeeds when the directory exists already. */
int slex_mkdirs(const char *path, slex_error *err);
/* Creates the directory a file will go in (nothing when the path has no directory part). */
int slex_mkdirs_for_file(const char *path, slex_error *err);
/* This machine's name (gethostname), as temporary names and locks record it. */
void slex_host_name(char *buf, size_t size);
/* A temporary name next to path that no other process, here or on another node, uses at the
 * same time: "<path>.tmp-<host>-<pid>" (job-array tasks may write the same file at once). */
int slex_tmp_name(const char *path, char *buf, size_t size, slex_error *err);

/* ---- Atomic writes: the one way slex replaces a file ----
 * The data goes to slex_tmp_name(path); commit fsyncs it, renames it over path and fsyncs the
 * directory, so a crash or power cut leaves the old file or the new one, never a part of one,
 * and concurrent writers never share a temporary.  Either commit or abandon ends every begin. */
typedef struct slex_atomic {
    char path[4096]; /* the final name */
    char tmp[4400];  /* where the data goes */
    FILE *f;         /* the stream slex_atomic_fopen opened on tmp, else NULL */
} slex_atomic;

/* Chooses a->tmp for path (nothing is created): for files other libraries write (HDF5). */
int slex_atomic_begin(slex_atomic *a, const char *path, slex_error *err);
/* slex_atomic_begin, then a->f = fopen(a->tmp, "wb"). */
int slex_atomic_fopen(slex_atomic *a, const char *path, slex_error *err);
/* Closes a->f when open (failing when any write to it failed), fsyncs a->tmp, renames it to
 * a->path and fsyncs the directory.  On failure the temporary is removed. */
int slex_atomic_commit(slex_atomic *a, slex_error *err);
/* Closes a->f when open and removes the temporary (nothing after a successful commit). */
void slex_atomic_abandon(slex_atomic *a);
/* Writes text to path atomically (begin, write, commit). */
int slex_write_file_atomic(const char *path, const char *text, size_t len, slex_error *err);
/* fsync of a file or directory by name. */
int slex_fsync_path(const char *path, slex_error *err);
/* fsync of the directory holding path (after a rename into it, so the new name is durable). */
int slex_fsync_parent(const char *path, slex_error *err);
/* Reads a whole text file; NUL-terminated, caller frees. */
char *slex_read_text_file(const char *path, size_t *len, slex_error *err);
/* CRC-32 (zlib's) and size of a whole file. */
int slex_file_crc32(const char *path, uint32_t *crc, int64_t *bytes, slex_error *err);
/* 1 when path exists. */
int slex_path_exists(const char *path);
/* FNV-1a 64-bit of a string, as 16 lower-case hex digits. */
void slex_fingerprint_hex(const char *text, char out[17]);

#endif
