/* h5util: the few HDF5 patterns slex files share, written so that the same data gives the
 * same bytes (no object timestamps) and HDF5 never prints its own error stack. */
#ifndef SLEX_H5UTIL_H
#define SLEX_H5UTIL_H

#include <hdf5.h>
#include <stdint.h>

/* Turns off HDF5's automatic error printing (slex reports errors itself); SLEX_HDF5_DEBUG=1
 * leaves it on for debugging. */
void slex_h5_quiet(void);
/* H5Fcreate (truncating) with object timestamps off for the root group. */
hid_t slex_h5_create(const char *path);
/* Closes a file slex wrote (and every object of it still open): 0 when all its data reached the
 * file, -1 when not (disk full, quota, file size limit); the caller then removes the file.
 * Also the way to close a file being given up after a failed write.
 * HDF5 1.10 cannot survive a failed H5Fclose (or H5Fflush): it frees the file but keeps its id,
 * and its exit handler then crashes on it (HDFGroup/hdf5 #2257, CVE-2020-10812).  After such a
 * failure the process therefore ends without HDF5's exit handler, with the status given to
 * exit(): a stage exits cleanly with its error; it must not use HDF5 for long afterwards. */
int slex_h5_close_written(hid_t file);
/* Dataset creation properties with timestamps off (chunk may be NULL for contiguous). */
hid_t slex_h5_dcpl(int rank, const hsize_t *chunk);
/* Scalar attributes on any object. */
int slex_h5_set_string(hid_t obj, const char *name, const char *value);
int slex_h5_set_number(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, const void *value);
int slex_h5_set_int(hid_t obj, const char *name, int64_t value);
int slex_h5_set_double(hid_t obj, const char *name, double value);
/* Reads a scalar attribute (numbers converted to the memory type); strings malloc'd. */
int slex_h5_get_int(hid_t obj, const char *name, int64_t *value);
int slex_h5_get_double(hid_t obj, const char *name, double *value);
char *slex_h5_get_string(hid_t obj, const char *name);
/* A whole contiguous dataset of rank 1 or 2 written in one call. */
int slex_h5_write_array(hid_t file, const char *name, hid_t file_type, hid_t mem_type, int rank,
                        const hsize_t *dims, const void *data);
/* Reads a whole dataset of known size; fails unless its dims equal dims. */
int slex_h5_read_array(hid_t file, const char *name, hid_t mem_type, int rank, const hsize_t *dims, void *data);
/* The dims of a dataset (rank <= 2); returns its rank or -1. */
int slex_h5_dims(hid_t file, const char *name, hsize_t dims[2]);

#endif
