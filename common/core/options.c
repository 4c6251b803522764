#include "core/options.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(long) == 8 && sizeof(long long) == 8, "LONG options are 64-bit long or long long fields");

static void *field_of(const slex_option *o, const void *opts) { return (char *)opts + o->offset; }

/* ---- Valid values ---- */

/* The range of values a field of the type can hold (numbers). */
static void type_range(slex_option_type type, double *lo, double *hi) {
    switch (type) {
    case SLEX_OPT_INT: *lo = INT_MIN, *hi = INT_MAX; return;
    case SLEX_OPT_LONG: *lo = (double)INT64_MIN, *hi = (double)INT64_MAX; return;
    case SLEX_OPT_FLOAT: *lo = -FLT_MAX, *hi = FLT_MAX; return;
    default: *lo = -DBL_MAX, *hi = DBL_MAX; return;
    }
}

static int has_range(const slex_option *o) {
    return (o->type == SLEX_OPT_INT || o->type == SLEX_OPT_LONG || o->type == SLEX_OPT_DOUBLE ||
            o->type == SLEX_OPT_FLOAT) &&
           (o->min != 0 || o->max != 0);
}

/* A bound as the user writes it: integers without exponent. */
static void format_bound(const slex_option *o, double v, char *buf, size_t size) {
    if (o->type == SLEX_OPT_DOUBLE || o->type == SLEX_OPT_FLOAT) snprintf(buf, size, "%g", v);
    else snprintf(buf, size, "%.0f", v);
}

/* "between 0 and 1", "at least 1", "greater than 0", "greater than 0 and at most 1". */
static void describe_range(const slex_option *o, char *buf, size_t size) {
    double tlo, thi;
    type_range(o->type, &tlo, &thi);
    char lo[64], hi[64];
    format_bound(o, o->min, lo, sizeof lo);
    format_bound(o, o->max, hi, sizeof hi);
    int open = (o->flags & SLEX_OPTF_ABOVE_MIN) != 0, upper = o->max < thi, lower = o->min > tlo || open;
    if (lower && upper && !open) snprintf(buf, size, "between %s and %s", lo, hi);
    else if (lower && upper) snprintf(buf, size, "greater than %s and at most %s", lo, hi);
    else if (lower) snprintf(buf, size, "%s %s", open ? "greater than" : "at least", lo);
    else snprintf(buf, size, "at most %s", hi);
}

static int in_range(const slex_option *o, double v) {
    if (!has_range(o)) return 1;
    if (o->flags & SLEX_OPTF_ABOVE_MIN ? !(v > o->min) : !(v >= o->min)) return 0;
    return v <= o->max;
}

/* The index of `value` among the '|'-separated choices, or -1. */
static int choice_index(const char *choices, const char *value) {
    size_t len = strlen(value);
    int index = 0;
    for (const char *c = choices; c; index++) {
        const char *bar = strchr(c, '|');
        size_t n = bar ? (size_t)(bar - c) : strlen(c);
        if (n == len && !strncmp(c, value, n)) return index;
        c = bar ? bar + 1 : NULL;
    }
    return -1;
}

static int choice_count(const char *choices) {
    int n = 1;
    for (const char *c = choices; *c; c++) n += *c == '|';
    return n;
}

/* The name of choice `index`, or NULL. */
static const char *choice_name(const char *choices, int index, char *buf, size_t size) {
    const char *c = choices;
    for (int i = 0; i < index && c; i++) {
        c = strchr(c, '|');
        if (c) c++;
    }
    if (!c || index < 0) return NULL;
    const char *bar = strchr(c, '|');
    size_t n = bar ? (size_t)(bar - c) : strlen(c);
    if (n >= size) n = size - 1;
    memcpy(buf, c, n);
    buf[n] = '\0';
    return buf;
}

/* "one of a, b, c" */
static void describe_choices(const char *choices, char *buf, size_t size) {
    snprintf(buf, size, "one of ");
    char name[128];
    for (int i = 0; choice_name(choices, i, name, sizeof name); i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s", i ? ", " : "", name);
    }
}

/* NULL when `value` is a valid path for a SLEX_OPTF_PATH option, else the reason. */
static const char *path_problem(const char *value) {
    if (!*value) return "must not be empty";
    if (*value == '-') return "is not a path but looks like an option (write ./NAME for a file so named)";
    return NULL;
}

/* ---- Setting a value ---- */

static int list_append(slex_string_list *list, const char *value) {
    char **items = realloc(list->items, (size_t)(list->count + 1) * sizeof *items);
    if (!items) return -1;
    list->items = items;
    if (!(list->items[list->count] = strdup(value))) return -1;
    list->count++;
    return 0;
}

/* Every message about a value: "WHERE: --NAME VALUE: REASON". */
#define BAD_VALUE(reason_fmt, ...)                                                                                     \
    slex_fail_as(err, SLEX_ERR_INPUT, "%s: --%s %s: " reason_fmt, where, o->name, value, __VA_ARGS__)

/* Parses and validates one value of option o into its field; `where` names the source. */
static int set_option(slex_cli *cli, const slex_option *o, void *opts, const char *value, const char *where,
                      slex_error *err) {
    void *dest = field_of(o, opts);
    char *end = NULL;
    char range[200];
    errno = 0;
    switch (o->type) {
    case SLEX_OPT_STRING:
    case SLEX_OPT_STRING_LIST: {
        const char *why = o->flags & SLEX_OPTF_PATH ? path_problem(value) : NULL;
        if (why) return BAD_VALUE("%s", why);
        slex_string_list *into = o->type == SLEX_OPT_STRING ? &cli->owned : dest;
        if (list_append(into, value))
            return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: --%s: out of memory", where, o->name);
        if (o->type == SLEX_OPT_STRING) *(char **)dest = cli->owned.items[cli->owned.count - 1];
        return 0;
    }
    case SLEX_OPT_INT:
    case SLEX_OPT_LONG: {
        long long v = strtoll(value, &end, 10);
        double tlo, thi;
        type_range(o->type, &tlo, &thi);
        if (errno || end == value || *end || (double)v < tlo || (double)v > thi)
            return BAD_VALUE("%s", "expects an integer");
        if (!in_range(o, (double)v)) return describe_range(o, range, sizeof range), BAD_VALUE("must be %s", range);
        if (o->type == SLEX_OPT_INT) *(int *)dest = (int)v;
        else memcpy(dest, &(int64_t){v}, sizeof(int64_t)); /* the field is long or long long */
        return 0;
    }
    case SLEX_OPT_U64: {
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || end == value || *end || strchr(value, '-'))
            return BAD_VALUE("%s", "expects a non-negative integer");
        *(uint64_t *)dest = (uint64_t)v;
        return 0;
    }
    case SLEX_OPT_DOUBLE:
    case SLEX_OPT_FLOAT: {
        double v = strtod(value, &end);
        if (errno || end == value || *end) return BAD_VALUE("%s", "expects a number");
        if (!isfinite(v) || (o->type == SLEX_OPT_FLOAT && !isfinite((float)v)))
            return BAD_VALUE("%s", "must be a finite number");
        if (!in_range(o, v)) return describe_range(o, range, sizeof range), BAD_VALUE("must be %s", range);
        if (o->type == SLEX_OPT_FLOAT) *(float *)dest = (float)v;
        else *(double *)dest = v;
        return 0;
    }
    case SLEX_OPT_FLAG:
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes")) *(int *)dest = 1;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no")) *(int *)dest = 0;
        else return BAD_VALUE("%s", "expects true or false");
        return 0;
    case SLEX_OPT_CHOICE: {
        int index = choice_index(o->choices, value);
        if (index < 0) return describe_choices(o->choices, range, sizeof range), BAD_VALUE("expected %s", range);
        *(int *)dest = index;
        return 0;
    }
    }
    return slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: --%s has an unknown type", where, o->name);
}

/* ---- Tables ---- */

void slex_options_defaults(const slex_option_table *table, void *opts) {
    for (int i = 0; i < table->n; i++) {
        const slex_option *o = &table->rows[i];
        void *dest = field_of(o, opts);
        switch (o->type) {
        case SLEX_OPT_STRING: *(char **)dest = (char *)o->def_text; break;
        case SLEX_OPT_INT:
        case SLEX_OPT_FLAG:
        case SLEX_OPT_CHOICE: *(int *)dest = (int)o->def; break;
        case SLEX_OPT_LONG: memcpy(dest, &(int64_t){(int64_t)o->def}, sizeof(int64_t)); break;
        case SLEX_OPT_U64: *(uint64_t *)dest = (uint64_t)o->def; break;
        case SLEX_OPT_DOUBLE: *(double *)dest = o->def; break;
        case SLEX_OPT_FLOAT: *(float *)dest = (float)o->def; break;
        case SLEX_OPT_STRING_LIST: *(slex_string_list *)dest = (slex_string_list){0, NULL}; break;
        }
    }
}

static int valid_name(const char *name) {
    if (!name || !(*name >= 'a' && *name <= 'z')) return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_')) return 0;
    return strlen(name) < 100;
}

int slex_option_table_check(const slex_option_table *table, slex_error *err) {
    for (int i = 0; i < table->n; i++) {
        const slex_option *o = &table->rows[i];
        if (!valid_name(o->name))
            return slex_fail_as(err, SLEX_ERR_INTERNAL, "option table: row %d has an invalid name", i);
        for (int j = 0; j < i; j++)
            if (!strcmp(table->rows[j].name, o->name))
                return slex_fail_as(err, SLEX_ERR_INTERNAL, "option table: --%s twice", o->name);
        if (!(o->flags & SLEX_OPTF_INTERNAL) && !o->help)
            return slex_fail_as(err, SLEX_ERR_INTERNAL, "option table: --%s has no help text", o->name);
        if ((o->flags & SLEX_OPTF_REQUIRED) && (o->type == SLEX_OPT_FLAG || (o->flags & SLEX_OPTF_INTERNAL)))
            return slex_fail_as(err, SLEX_ERR_INTERNAL, "option table: --%s cannot be required", o->name);
        if ((o->flags & SLEX_OPTF_PATH) && o->type != SLEX_OPT_STRING && o->type != SLEX_OPT_STRING_LIST)
            return slex_fail_as(err, SLEX_ERR_INTERNAL, "option table: --%s is a path but not a string", o->name);
        if (has_range(o) && !(o->min <= o->max))
            return slex_fail_as(err, SLEX_ERR_INTERNAL, "option table: --%s has an empty range", o->name);
        /* Defaults obey the rules of given values (a required option's default is never used). */
        double tlo, thi;
        type_range(o->type, &tlo, &thi);
        int bad_default = 0;
        switch (o->type) {
        case SLEX_OPT_INT:
        case SLEX_OPT_LONG:
            bad_default = o->def != floor(o->def) || o->def < tlo || o->def > thi ||
                          (!(o->flags & SLEX_OPTF_REQUIRED) && !in_range(o, o->def));
            break;
        case SLEX_OPT_DOUBLE:
        case SLEX_OPT_FLOAT:
            bad_default = !isfinite(o->def) || (!(o->flags & SLEX_OPTF_REQUIRED) && !in_range(o, o->def));
            break;
        case SLEX_OPT_U64: bad_default = o->def != floor(o->def) || o->def < 0; break;
        case SLEX_OPT_FLAG: bad_default = o->def != 0 && o->def != 1; break;
        case SLEX_OPT_CHOICE:
            if (!o->choices || !*o->choices)
                return slex_fail_as(err, SLEX_ERR_INTERNAL, "option table: --%s has no choices", o->name);
            bad_default = o->def != floor(o->def) || o->def < 0 || o->def >= choice_count(o->choices);
            break;
        case SLEX_OPT_STRING:
            bad_default = o->def_text && (o->flags & SLEX_OPTF_PATH) && path_problem(o->def_text);
            break;
        case SLEX_OPT_STRING_LIST: break;
        }
        if (bad_default)
            return slex_fail_as(err, SLEX_ERR_INTERNAL, "option table: --%s has an invalid default", o->name);
    }
    return 0;
}

int slex_options_write_json(const slex_option_table *table, const void *opts, struct cJSON *object) {
    for (int i = 0; i < table->n; i++) {
        const slex_option *o = &table->rows[i];
        if (!o->param) continue;
        const void *v = field_of(o, opts);
        cJSON *item = NULL;
        char name[128];
        switch (o->type) {
        case SLEX_OPT_STRING: item = *(char *const *)v ? cJSON_CreateString(*(char *const *)v) : cJSON_CreateNull(); break;
        case SLEX_OPT_INT:
        case SLEX_OPT_FLAG: item = cJSON_CreateNumber(*(const int *)v); break;
        case SLEX_OPT_LONG: {
            int64_t n;
            memcpy(&n, v, sizeof n);
            item = cJSON_CreateNumber((double)n);
            break;
        }
        case SLEX_OPT_U64: item = cJSON_CreateNumber((double)*(const uint64_t *)v); break;
        case SLEX_OPT_DOUBLE: item = cJSON_CreateNumber(*(const double *)v); break;
        case SLEX_OPT_FLOAT: item = cJSON_CreateNumber(*(const float *)v); break;
        case SLEX_OPT_CHOICE: {
            const char *s = choice_name(o->choices, *(const int *)v, name, sizeof name);
            item = s ? cJSON_CreateString(s) : cJSON_CreateNull();
            break;
        }
        case SLEX_OPT_STRING_LIST: {
            const slex_string_list *list = v;
            item = cJSON_CreateArray();
            for (int k = 0; item && k < list->count; k++) {
                cJSON *s = cJSON_CreateString(list->items[k]);
                if (!s || !cJSON_AddItemToArray(item, s)) {
                    cJSON_Delete(s);
                    cJSON_Delete(item);
                    item = NULL;
                }
            }
            break;
        }
        }
        if (!item || !cJSON_AddItemToObject(object, o->param, item)) {
            cJSON_Delete(item);
            return -1;
        }
    }
    return 0;
}

/* ---- Finding an option among the groups ---- */

typedef struct found {
    const slex_option *row;
    void *opts;
    int index; /* over the rows of all groups, for cli->given */
} found;

static int find_option(const slex_cli *cli, const char *name, found *f) {
    int index = 0;
    for (int g = 0; g < cli->n_groups; g++) {
        const slex_option_table *t = cli->groups[g].table;
        for (int i = 0; i < t->n; i++, index++)
            if (!(t->rows[i].flags & SLEX_OPTF_INTERNAL) && !strcmp(t->rows[i].name, name)) {
                *f = (found){&t->rows[i], cli->groups[g].opts, index};
                return 1;
            }
    }
    return 0;
}

static int total_rows(const slex_cli *cli) {
    int n = 0;
    for (int g = 0; g < cli->n_groups; g++) n += cli->groups[g].table->n;
    return n;
}

/* Every table valid, no option in two groups. */
static int check_groups(const slex_cli *cli, slex_error *err) {
    for (int g = 0; g < cli->n_groups; g++) {
        const slex_option_table *t = cli->groups[g].table;
        if (slex_option_table_check(t, err)) return slex_fail_wrap(err, "%s", cli->program);
        for (int i = 0; i < t->n; i++) {
            found f;
            if (!(t->rows[i].flags & SLEX_OPTF_INTERNAL) && find_option(cli, t->rows[i].name, &f) &&
                f.row != &t->rows[i])
                return slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: option table: --%s is in two groups", cli->program,
                                    t->rows[i].name);
        }
    }
    return 0;
}

static int set_found(slex_cli *cli, const found *f, const char *value, const char *where, slex_error *err) {
    if (set_option(cli, f->row, f->opts, value, where, err)) return -1;
    cli->given[f->index] = 1;
    return 0;
}

/* ---- The config file ---- */

/* Reads lines for inih and knows the line number of the last one (Debian's libinih is built
 * without line numbers in the handler).  A line longer than inih's buffer arrives in pieces;
 * only a piece ending in a newline ends a line. */
typedef struct line_reader {
    FILE *file;
    int line, next_line;
} line_reader;

static char *read_line(char *str, int num, void *stream) {
    line_reader *r = stream;
    char *s = fgets(str, num, r->file);
    if (!s) return NULL;
    r->line = r->next_line;
    size_t len = strlen(s);
    if (len && s[len - 1] == '\n') r->next_line++;
    return s;
}

typedef struct config_ctx {
    slex_cli *cli;
    const char *path;
    const char *section; /* program name without "slex-" */
    line_reader reader;
    slex_error *err;
    int failed;
} config_ctx;

static int on_config_entry(void *user, const char *section, const char *name, const char *value) {
    config_ctx *ctx = user;
    if (ctx->failed) return 0;
    if (strcmp(section, "common") && strcmp(section, ctx->section) && strcmp(section, ctx->cli->program))
        return 1; /* other programs' sections */
    char where[600];
    snprintf(where, sizeof where, "%s:%d ([%s] %s)", ctx->path, ctx->reader.line, section, name);
    found f;
    if (!find_option(ctx->cli, name, &f)) {
        if (!strcmp(section, "common")) return 1; /* common keys need not apply to every program */
        slex_fail_as(ctx->err, SLEX_ERR_INPUT, "%s: unknown key (see --help for the keys)", where);
        ctx->failed = 1;
        return 0;
    }
    if (set_found(ctx->cli, &f, value, where, ctx->err)) {
        ctx->failed = 1;
        return 0;
    }
    return 1;
}

static int load_config(slex_cli *cli, const char *path, slex_error *err) {
    const char *section = cli->program;
    if (!strncmp(section, "slex-", 5)) section += 5;
    if (!*path) return slex_fail_as(err, SLEX_ERR_INPUT, "--config needs a file name");
    FILE *file = fopen(path, "r");
    if (!file) return slex_fail_as(err, slex_errno_kind(errno), "--config %s: cannot open: %s", path, strerror(errno));
    config_ctx ctx = {cli, path, section, {file, 0, 1}, err, 0};
    int rc = ini_parse_stream(read_line, &ctx.reader, on_config_entry, &ctx);
    fclose(file);
    if (ctx.failed) return -1;
    if (rc == -2) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory while reading config", path);
    if (rc) return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%d: malformed config line", path, rc);
    return 0;
}

/* ---- The command line ---- */

/* The value of the option at argv[i] that takes one: after '=' or the next argument, never an
 * argument that starts with "--" (the user forgot the value). */
static const char *option_value(int argc, char **argv, int *i, const char *eq, const char *name, slex_error *err) {
    if (eq) return eq + 1;
    if (*i + 1 >= argc) return slex_fail_as(err, SLEX_ERR_INPUT, "command line: --%s needs a value", name), NULL;
    if (!strncmp(argv[*i + 1], "--", 2))
        return slex_fail_as(err, SLEX_ERR_INPUT,
                            "command line: --%s needs a value, but the next argument is the option %s", name,
                            argv[*i + 1]),
               NULL;
    return argv[++*i];
}

static int check_required(const slex_cli *cli, slex_error *err) {
    char missing[1024] = "";
    int n_missing = 0, index = 0;
    for (int g = 0; g < cli->n_groups; g++) {
        const slex_option_table *t = cli->groups[g].table;
        for (int i = 0; i < t->n; i++, index++)
            if ((t->rows[i].flags & SLEX_OPTF_REQUIRED) && !cli->given[index]) {
                size_t used = strlen(missing);
                snprintf(missing + used, sizeof missing - used, "%s--%s", n_missing++ ? ", " : "", t->rows[i].name);
            }
    }
    if (n_missing)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s %s required (see --help)", missing, n_missing > 1 ? "are" : "is");
    for (int g = 0; g < cli->n_groups; g++)
        if (cli->groups[g].table->check && cli->groups[g].table->check(cli->groups[g].opts, err)) return -1;
    return 0;
}

slex_parse_result slex_cli_parse(slex_cli *cli, int argc, char **argv, slex_error *err) {
    cli->config_failed = 0;
    free(cli->given);
    cli->given = calloc((size_t)total_rows(cli) + 1, 1);
    if (!cli->given) return slex_fail_as(err, SLEX_ERR_RESOURCE, "out of memory"), SLEX_PARSE_ERROR;
    if (check_groups(cli, err)) return SLEX_PARSE_ERROR;
    /* The config file goes first so that the command line overrides it wherever it appears. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return SLEX_PARSE_HELP;
        if (!strcmp(argv[i], "--config") || !strncmp(argv[i], "--config=", 9)) {
            const char *path = option_value(argc, argv, &i, argv[i][8] ? argv[i] + 8 : NULL, "config", err);
            if (!path) return SLEX_PARSE_ERROR;
            if (load_config(cli, path, err)) {
                cli->config_failed = 1;
                return SLEX_PARSE_ERROR;
            }
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2))
            return slex_fail_as(err, SLEX_ERR_INPUT,
                                "command line: unexpected argument '%s' (options start with --; see --help)", arg),
                   SLEX_PARSE_ERROR;
        char name[128];
        const char *eq = strchr(arg + 2, '=');
        size_t len = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
        if (len >= sizeof name)
            return slex_fail_as(err, SLEX_ERR_INPUT, "command line: option '%s' is too long", arg), SLEX_PARSE_ERROR;
        memcpy(name, arg + 2, len);
        name[len] = '\0';
        if (!strcmp(name, "config")) {
            if (!eq) i++;
            continue;
        }
        found f;
        if (!find_option(cli, name, &f))
            return slex_fail_as(err, SLEX_ERR_INPUT, "command line: unknown option --%s (see --help)", name),
                   SLEX_PARSE_ERROR;
        if (f.row->type == SLEX_OPT_FLAG && !eq) {
            *(int *)field_of(f.row, f.opts) = 1;
            cli->given[f.index] = 1;
            continue;
        }
        const char *value = option_value(argc, argv, &i, eq, name, err);
        if (!value || set_found(cli, &f, value, "command line", err)) return SLEX_PARSE_ERROR;
    }
    return check_required(cli, err) ? SLEX_PARSE_ERROR : SLEX_PARSE_OK;
}

int slex_cli_exit_code(const slex_cli *cli, const slex_error *err) {
    return cli->config_failed ? slex_exit_code(err) : SLEX_EXIT_USAGE;
}

int slex_cli_given(const slex_cli *cli, const char *name) {
    found f;
    return cli->given && find_option(cli, name, &f) && cli->given[f.index];
}

/* ---- --help ---- */

static void describe_default(const slex_option *o, char *buf, size_t size) {
    char name[128];
    *buf = '\0';
    switch (o->type) {
    case SLEX_OPT_STRING:
        if (o->def_text && *o->def_text) snprintf(buf, size, "default: %s", o->def_text);
        break;
    case SLEX_OPT_INT:
    case SLEX_OPT_LONG:
    case SLEX_OPT_U64: snprintf(buf, size, "default: %.0f", o->def); break;
    case SLEX_OPT_DOUBLE:
    case SLEX_OPT_FLOAT: snprintf(buf, size, "default: %g", o->def); break;
    case SLEX_OPT_CHOICE:
        if (choice_name(o->choices, (int)o->def, name, sizeof name)) snprintf(buf, size, "default: %s", name);
        break;
    case SLEX_OPT_FLAG:
    case SLEX_OPT_STRING_LIST: break;
    }
}

void slex_cli_help(const slex_cli *cli, void *file) {
    FILE *f = file;
    fprintf(f, "usage: %s %s\n\n", cli->program, cli->synopsis);
    if (cli->about) fprintf(f, "%s\n\n", cli->about);
    fprintf(f, "options:\n");
    for (int g = 0; g < cli->n_groups; g++) {
        const slex_option_table *t = cli->groups[g].table;
        for (int i = 0; i < t->n; i++) {
            const slex_option *o = &t->rows[i];
            if (o->flags & SLEX_OPTF_INTERNAL) continue;
            const char *arg = o->type == SLEX_OPT_FLAG                                            ? ""
                              : o->type == SLEX_OPT_DOUBLE || o->type == SLEX_OPT_FLOAT          ? " X"
                              : o->type == SLEX_OPT_STRING || o->type == SLEX_OPT_STRING_LIST     ? " VALUE"
                              : o->type == SLEX_OPT_CHOICE                                        ? " NAME"
                                                                                                  : " N";
            if (o->flags & SLEX_OPTF_PATH) arg = " PATH";
            char head[160], notes[600] = "", part[300];
            snprintf(head, sizeof head, "--%s%s", o->name, arg);
            /* (required; default: D; one of a, b; at least 1; repeatable) */
            const char *parts[5];
            int n = 0;
            char def[160], range[200];
            if (o->flags & SLEX_OPTF_REQUIRED) parts[n++] = "required";
            describe_default(o, def, sizeof def);
            if (*def && !(o->flags & SLEX_OPTF_REQUIRED)) parts[n++] = def;
            if (o->type == SLEX_OPT_CHOICE) describe_choices(o->choices, range, sizeof range), parts[n++] = range;
            else if (has_range(o)) describe_range(o, range, sizeof range), parts[n++] = range;
            if (o->type == SLEX_OPT_STRING_LIST) parts[n++] = "repeatable";
            for (int k = 0; k < n; k++) {
                snprintf(part, sizeof part, "%s%s", k ? "; " : " (", parts[k]);
                strncat(notes, part, sizeof notes - strlen(notes) - 1);
            }
            if (n) strncat(notes, ")", sizeof notes - strlen(notes) - 1);
            fprintf(f, "  %-26s %s%s\n", head, o->help, notes);
        }
    }
    fprintf(f, "  %-26s %s\n", "--config FILE", "INI file with the same keys, sections [common] and [<stage>]");
    fprintf(f, "  %-26s %s\n", "--help", "print this help and exit");
}

/* ---- Freeing ---- */

void slex_string_list_free(slex_string_list *list) {
    for (int i = 0; i < list->count; i++) free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

void slex_cli_free(slex_cli *cli) {
    slex_string_list_free(&cli->owned);
    for (int g = 0; g < cli->n_groups; g++) {
        const slex_option_table *t = cli->groups[g].table;
        for (int i = 0; i < t->n; i++)
            if (t->rows[i].type == SLEX_OPT_STRING_LIST)
                slex_string_list_free(field_of(&t->rows[i], cli->groups[g].opts));
    }
    free(cli->given);
    cli->given = NULL;
}
