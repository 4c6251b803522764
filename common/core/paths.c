#include "core/paths.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* path with symlinks and ".." resolved into buf (PATH_MAX): realpath of its longest existing
 * prefix, then the rest with "." and ".." applied to the text (nothing there exists, so nothing
 * there is a link).  -1 when it cannot be resolved (a component is a file, a loop, too long). */
static int resolve(const char *path, char *buf) {
    size_t len = strlen(path), cut = len; /* path[cut..] does not exist */
    char head[PATH_MAX];
    if (!len || len >= sizeof head) return -1;
    memcpy(head, path, len + 1);
    while (!realpath(head, buf)) {
        if (errno != ENOENT) return -1;
        while (cut > 0 && head[cut - 1] == '/') cut--; /* trailing slashes */
        while (cut > 0 && head[cut - 1] != '/') cut--; /* the last component */
        if (cut == 0) { /* a relative path whose first component does not exist */
            if (!realpath(".", buf)) return -1;
            break;
        }
        while (cut > 1 && head[cut - 1] == '/') cut--; /* keep "/" itself */
        head[cut] = '\0';
    }
    char tail[PATH_MAX];
    snprintf(tail, sizeof tail, "%s", path + cut);
    for (char *save = NULL, *c = strtok_r(tail, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        size_t n = strlen(buf);
        if (!strcmp(c, ".")) continue;
        if (!strcmp(c, "..")) {
            char *slash = strrchr(buf, '/');
            if (slash == buf) buf[1] = '\0';
            else if (slash) *slash = '\0';
            continue;
        }
        if (n + 1 + strlen(c) >= PATH_MAX) return -1;
        snprintf(buf + n, PATH_MAX - n, "%s%s", n > 1 ? "/" : "", c);
    }
    return 0;
}

/* a is b or lies inside it (as text: both resolved). */
static int text_within(const char *a, const char *b) {
    size_t n = strlen(b);
    if (strncmp(a, b, n)) return 0;
    return a[n] == '\0' || a[n] == '/' || (n == 1 && b[0] == '/');
}

/* a (resolved) is the directory or file d, or lies inside it, by device and inode of a and of
 * each of its existing ancestors. */
static int inode_within(const char *a, const struct stat *d) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", a);
    for (;;) {
        struct stat st;
        if (!stat(p, &st) && st.st_dev == d->st_dev && st.st_ino == d->st_ino) return 1;
        char *slash = strrchr(p, '/');
        if (!slash || slash == p) {
            if (!stat("/", &st) && st.st_dev == d->st_dev && st.st_ino == d->st_ino) return 1;
            return 0;
        }
        *slash = '\0';
    }
}

/* 1: a is or lies inside b (resolved paths). */
static int within(const char *a, const char *b) {
    struct stat st;
    return text_within(a, b) || (!stat(b, &st) && inode_within(a, &st));
}

int slex_paths_check_apart(const slex_path_role *outputs, int n_outputs, const slex_path_role *inputs, int n_inputs,
                           slex_error *err) {
    for (int i = 0; i < n_inputs; i++) {
        char in[PATH_MAX];
        struct stat st;
        if (!inputs[i].path || stat(inputs[i].path, &st) || resolve(inputs[i].path, in)) continue;
        for (int o = 0; o < n_outputs; o++) {
            char out[PATH_MAX];
            if (!outputs[o].path) continue;
            if (resolve(outputs[o].path, out))
                return slex_fail_as(err, SLEX_ERR_INPUT, "%s %s: cannot resolve the path", outputs[o].option,
                                    outputs[o].path);
            const char *how = NULL;
            if (within(out, in)) how = !strcmp(out, in) || within(in, out) ? "is" : "lies inside";
            else if (within(in, out)) how = "contains";
            if (how)
                return slex_fail_as(err, SLEX_ERR_INPUT, "%s %s %s %s %s (%s): an output must be apart from the inputs, or writing it "
                                      "would change what is being read", outputs[o].option, outputs[o].path, how,
                                 inputs[i].option, inputs[i].path, in);
        }
    }
    return 0;
}
