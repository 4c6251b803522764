#include "store/h5util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void slex_h5_quiet(void) {
    if (!getenv("SLEX_HDF5_DEBUG")) H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

hid_t slex_h5_create(const char *path) {
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0); /* the root group */
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    return file;
}

/* Closes every dataset, group, named datatype and attribute of file still open. */
static void close_objects(hid_t file) {
    unsigned types = H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR | H5F_OBJ_LOCAL;
    ssize_t n = H5Fget_obj_count(file, types);
    if (n <= 0) return;
    hid_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return;
    n = H5Fget_obj_ids(file, types, (size_t)n, ids);
    for (ssize_t i = 0; i < n; i++) {
        H5I_type_t t = H5Iget_type(ids[i]);
        if (t == H5I_DATASET) H5Dclose(ids[i]);
        else if (t == H5I_GROUP) H5Gclose(ids[i]);
        else if (t == H5I_DATATYPE) H5Tclose(ids[i]);
        else if (t == H5I_ATTR) H5Aclose(ids[i]);
    }
    free(ids);
}

/* HDF5 1.10 frees a file whose H5Fclose failed but keeps its id, and its exit handler
 * (H5_term_library, registered with atexit) then crashes on that id.  After such a failure the
 * process ends through this handler instead: registered later, it runs before HDF5's and ends
 * the process with the status exit() was given, skipping the handlers registered before it. */
static void end_without_hdf5_cleanup(int status, void *arg) {
    (void)arg;
    fflush(NULL);
    _exit(status);
}

static int close_failed(void) {
    static int registered = 0;
    if (!registered) registered = on_exit(end_without_hdf5_cleanup, NULL) == 0;
    return -1;
}

int slex_h5_close_written(hid_t file) {
    close_objects(file);
    return H5Fclose(file) < 0 ? close_failed() : 0;
}

hid_t slex_h5_dcpl(int rank, const hsize_t *chunk) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunk) H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_obj_track_times(dcpl, 0);
    return dcpl;
}

int slex_h5_set_string(hid_t obj, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = attr < 0 || H5Awrite(attr, type, &value) < 0 ? -1 : 0;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    return rc;
}

int slex_h5_set_number(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = attr < 0 || H5Awrite(attr, mem_type, value) < 0 ? -1 : 0;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    return rc;
}

int slex_h5_set_int(hid_t obj, const char *name, int64_t value) {
    return slex_h5_set_number(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

int slex_h5_set_double(hid_t obj, const char *name, double value) {
    return slex_h5_set_number(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

static int get_number(hid_t obj, const char *name, hid_t mem_type, void *value) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    int rc = attr < 0 || H5Aread(attr, mem_type, value) < 0 ? -1 : 0;
    if (attr >= 0) H5Aclose(attr);
    return rc;
}

int slex_h5_get_int(hid_t obj, const char *name, int64_t *value) {
    return get_number(obj, name, H5T_NATIVE_INT64, value);
}

int slex_h5_get_double(hid_t obj, const char *name, double *value) {
    return get_number(obj, name, H5T_NATIVE_DOUBLE, value);
}

char *slex_h5_get_string(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0) return NULL;
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    char *value = NULL, *copy = NULL;
    if (H5Aread(attr, type, &value) >= 0 && value) {
        copy = strdup(value);
        H5free_memory(value);
    }
    H5Tclose(type);
    H5Aclose(attr);
    return copy;
}

int slex_h5_write_array(hid_t file, const char *name, hid_t file_type, hid_t mem_type, int rank,
                        const hsize_t *dims, const void *data) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = slex_h5_dcpl(rank, NULL);
    hid_t ds = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc = ds < 0 || H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 ? -1 : 0;
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
    return rc;
}

int slex_h5_dims(hid_t file, const char *name, hsize_t dims[2]) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) return -1;
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    hid_t space = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank >= 1 && rank <= 2) H5Sget_simple_extent_dims(space, dims, NULL);
    else rank = -1;
    H5Sclose(space);
    H5Dclose(ds);
    return rank;
}

int slex_h5_read_array(hid_t file, const char *name, hid_t mem_type, int rank, const hsize_t *dims, void *data) {
    hsize_t have[2] = {0, 0};
    if (slex_h5_dims(file, name, have) != rank) return -1;
    for (int i = 0; i < rank; i++)
        if (have[i] != dims[i]) return -1;
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    int rc = ds < 0 || H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 ? -1 : 0;
    if (ds >= 0) H5Dclose(ds);
    return rc;
}
