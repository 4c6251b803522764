/* paths: outputs kept apart from inputs.
 *
 * A stage refuses, before it touches anything, an output that is one of its inputs, lies inside
 * one (a store written into the feature store it reads), or contains one (an output directory
 * holding the codebook or manifest it reads: --force would clear it).  Paths are compared as the
 * file system sees them: symlinks and ".." resolved (an output that does not exist yet through
 * its nearest existing ancestor), and existing directories also by device and inode, so a bind
 * mount or a second mount of the same tree is caught too.  Inputs that do not exist are skipped
 * (the stage reports them itself). */
#ifndef SLEX_PATHS_H
#define SLEX_PATHS_H

#include "core/err.h"

typedef struct slex_path_role {
    const char *option; /* how the user gave it, e.g. "--out" */
    const char *path;   /* NULL: not given (skipped) */
} slex_path_role;

/* 0, or -1 naming both options, both paths and how they overlap. */
int slex_paths_check_apart(const slex_path_role *outputs, int n_outputs, const slex_path_role *inputs, int n_inputs,
                           slex_error *err);

#endif
