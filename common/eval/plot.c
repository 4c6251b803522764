#include "eval/plot.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fileio.h"

extern char **environ;

#define PATH_CAP 4200

/* A gnuplot string literal: double quotes, with " and \ escaped. */
static void put_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static FILE *open_for(const char *dir, const char *name, const char *ext, char *path, slex_error *err) {
    snprintf(path, PATH_CAP, "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "w");
    if (!f) slex_fail_as(err, slex_errno_kind(errno), "%s: cannot create: %s", path, strerror(errno));
    return f;
}

static int close_checked(FILE *f, const char *path, slex_error *err) {
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    return bad ? slex_fail_as(err, SLEX_ERR_IO, "%s: write failed (disk full?)", path) : 0;
}

/* The script's common head: terminal, output, no enhanced text (labels hold '_' and '^'). */
static void script_head(FILE *f, const char *dir, const char *name, const char *title, int width, int height) {
    fprintf(f, "set terminal pngcairo noenhanced size %d,%d font \"DejaVu Sans,10\"\n", width, height);
    fprintf(f, "set output ");
    char png[PATH_CAP];
    snprintf(png, sizeof png, "%s/%s.png", dir, name);
    put_string(f, png);
    fprintf(f, "\nset title ");
    put_string(f, title);
    fprintf(f, "\nset datafile missing \"nan\"\n");
}

/* Runs gnuplot on the script; its messages go to NAME.log, whose last line names a failure. */
static int run_gnuplot(const char *dir, const char *name, const char *script, slex_error *err) {
    char log[PATH_CAP];
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char *argv[] = {"gnuplot", (char *)script, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "gnuplot", &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc)
        return slex_fail_as(err, slex_errno_kind(rc), "cannot run gnuplot (install Debian's gnuplot-nox): %s",
                            strerror(rc));
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return slex_fail_as(err, slex_errno_kind(errno), "gnuplot: %s", strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        unlink(log);
        return 0;
    }
    char *text = slex_read_text_file(log, NULL, NULL);
    const char *last = text ? text : "";
    for (char *p = text; p && *p; p++)
        if (*p == '\n' && p[1]) last = p + 1;
    slex_fail_as(err, SLEX_ERR_IO, "gnuplot failed on %s (%s): %.300s", script, log, last);
    free(text);
    return -1;
}

int slex_plot_usage(const char *dir, const char *name, const char *title, const int64_t *per_unit, int k,
                    slex_error *err) {
    int64_t *sorted = malloc((size_t)(k ? k : 1) * sizeof *sorted), total = 0;
    if (!sorted) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    for (int z = 0; z < k; z++) {
        sorted[z] = per_unit[z];
        total += per_unit[z];
    }
    char path[PATH_CAP];
    FILE *f = open_for(dir, name, "dat", path, err);
    int rc = f ? 0 : -1;
    if (!rc) {
        for (int gap = k / 2; gap > 0; gap /= 2) /* shell sort, decreasing counts */
            for (int i = gap; i < k; i++)
                for (int j = i; j >= gap && sorted[j - gap] < sorted[j]; j -= gap) {
                    int64_t t = sorted[j];
                    sorted[j] = sorted[j - gap];
                    sorted[j - gap] = t;
                }
        fprintf(f, "# rank share_of_frames\n");
        for (int z = 0; z < k && sorted[z] > 0; z++)
            fprintf(f, "%d %.9e\n", z + 1, total ? (double)sorted[z] / (double)total : 0.0);
        rc = close_checked(f, path, err);
    }
    free(sorted);
    if (rc) return rc;
    char script[PATH_CAP];
    FILE *g = open_for(dir, name, "gp", script, err);
    if (!g) return -1;
    script_head(g, dir, name, title, 800, 500);
    fprintf(g, "set logscale y\nset xlabel \"unit rank (most used first)\"\nset ylabel \"share of frames\"\n"
               "set grid\nplot ");
    put_string(g, path);
    fprintf(g, " using 1:2 with steps lw 2 notitle\n");
    if (close_checked(g, script, err)) return -1;
    return run_gnuplot(dir, name, script, err);
}

int slex_plot_cooc(const char *dir, const char *name, const char *title, const int64_t *joint, int n_phones, int k,
                   const char *const *phone_labels, slex_error *err) {
    /* Column order: used units grouped by their most frequent phone (phone order), within a group
     * by decreasing p(that phone | unit); ties by unit id.  */
    int *order = malloc((size_t)(k ? k : 1) * sizeof *order), *best = malloc((size_t)(k ? k : 1) * sizeof *best);
    double *purity = malloc((size_t)(k ? k : 1) * sizeof *purity);
    if (!order || !best || !purity) {
        free(order);
        free(best);
        free(purity);
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory");
    }
    int used = 0;
    for (int z = 0; z < k; z++) {
        int64_t total = 0, top = -1;
        best[z] = 0;
        for (int y = 0; y < n_phones; y++) {
            int64_t c = joint[(int64_t)y * k + z];
            total += c;
            if (c > top) {
                top = c;
                best[z] = y;
            }
        }
        purity[z] = total ? (double)top / (double)total : 0;
        if (total) order[used++] = z;
    }
    for (int gap = used / 2; gap > 0; gap /= 2) /* shell sort by (best phone, -purity, unit) */
        for (int i = gap; i < used; i++)
            for (int j = i; j >= gap; j -= gap) {
                int a = order[j - gap], b = order[j];
                int after = best[a] > best[b] || (best[a] == best[b] && (purity[a] < purity[b] ||
                                                                         (purity[a] == purity[b] && a > b)));
                if (!after) break;
                order[j - gap] = b;
                order[j] = a;
            }
    char path[PATH_CAP], script[PATH_CAP];
    FILE *f = open_for(dir, name, "dat", path, err);
    int rc = f ? 0 : -1;
    if (!rc) {
        /* gnuplot "matrix" layout: one line per phone (y), one column per unit (x). */
        for (int y = 0; y < n_phones; y++) {
            for (int i = 0; i < used; i++) {
                int z = order[i];
                int64_t total = 0;
                for (int yy = 0; yy < n_phones; yy++) total += joint[(int64_t)yy * k + z];
                fprintf(f, i ? " %.6f" : "%.6f", (double)joint[(int64_t)y * k + z] / (double)total);
            }
            fputc('\n', f);
        }
        rc = close_checked(f, path, err);
    }
    free(order);
    free(best);
    free(purity);
    FILE *g = rc ? NULL : open_for(dir, name, "gp", script, err);
    if (rc || !g) return -1;
    int height = 200 + 12 * n_phones;
    script_head(g, dir, name, title, 1000, height > 2400 ? 2400 : height);
    fprintf(g, "set xlabel \"units (%d used), grouped by their most frequent phone\"\nset ylabel \"phone\"\n", used);
    fprintf(g, "set cblabel \"p(phone | unit)\"\nset cbrange [0:1]\nset palette defined (0 \"white\", 1 \"#08306b\")\n");
    fprintf(g, "set xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\nset ytics (", used - 1, n_phones - 1);
    for (int y = 0; y < n_phones; y++) {
        if (y) fputc(',', g);
        put_string(g, phone_labels[y]);
        fprintf(g, " %d", y);
    }
    fprintf(g, ") font \",7\"\nset xtics out\nplot ");
    put_string(g, path);
    fprintf(g, " matrix with image notitle\n");
    if (close_checked(g, script, err)) return -1;
    return run_gnuplot(dir, name, script, err);
}

int slex_plot_bars(const char *dir, const char *name, const char *title, const char *ylabel,
                   const char *const *systems, int n_systems, const char *const *groups, int n_groups,
                   const double *value, slex_error *err) {
    char path[PATH_CAP], script[PATH_CAP];
    FILE *f = open_for(dir, name, "dat", path, err);
    if (!f) return -1;
    /* One row per system: its name, then one column per group. */
    for (int s = 0; s < n_systems; s++) {
        put_string(f, systems[s]);
        for (int g = 0; g < n_groups; g++)
            if (isnan(value[s * n_groups + g])) fprintf(f, " nan");
            else fprintf(f, " %.6f", value[s * n_groups + g]);
        fputc('\n', f);
    }
    if (close_checked(f, path, err)) return -1;
    FILE *g = open_for(dir, name, "gp", script, err);
    if (!g) return -1;
    script_head(g, dir, name, title, 200 + 60 * n_systems * (n_groups > 1 ? n_groups : 1), 500);
    fprintf(g, "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
               "set boxwidth 0.9\nset grid ytics\nset yrange [0:*]\nset ylabel ");
    put_string(g, ylabel);
    fprintf(g, "\nset xtics rotate by -30\nset key outside right top\nplot ");
    for (int gi = 0; gi < n_groups; gi++) {
        if (gi) fprintf(g, ", ''");
        else put_string(g, path);
        fprintf(g, " using %d:xtic(1) title ", gi + 2);
        put_string(g, groups[gi]);
    }
    fputc('\n', g);
    if (close_checked(g, script, err)) return -1;
    return run_gnuplot(dir, name, script, err);
}

int slex_plot_curves(const char *dir, const char *name, const char *title, const char *xlabel, const char *ylabel,
                     const double *x, int64_t n, const char *const *curves, int n_curves, const double *y,
                     slex_error *err) {
    char path[PATH_CAP], script[PATH_CAP];
    FILE *f = open_for(dir, name, "dat", path, err);
    if (!f) return -1;
    for (int64_t i = 0; i < n; i++) {
        fprintf(f, "%.9g", x[i]);
        for (int c = 0; c < n_curves; c++)
            if (isnan(y[c * n + i])) fprintf(f, " nan");
            else fprintf(f, " %.9g", y[c * n + i]);
        fputc('\n', f);
    }
    if (close_checked(f, path, err)) return -1;
    FILE *g = open_for(dir, name, "gp", script, err);
    if (!g) return -1;
    script_head(g, dir, name, title, 900, 500);
    fprintf(g, "set grid\nset key outside right top\nset xlabel ");
    put_string(g, xlabel);
    fprintf(g, "\nset ylabel ");
    put_string(g, ylabel);
    fprintf(g, "\nplot ");
    for (int c = 0; c < n_curves; c++) {
        if (c) fprintf(g, ", ''");
        else put_string(g, path);
        fprintf(g, " using 1:%d with lines lw 2 title ", c + 2);
        put_string(g, curves[c]);
    }
    fputc('\n', g);
    if (close_checked(g, script, err)) return -1;
    return run_gnuplot(dir, name, script, err);
}
