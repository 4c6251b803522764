#include "core/options.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const slex_option *find_option(const slex_cli *cli, const char *name) {
    for (int i = 0; i < cli->n_options; i++)
        if (!strcmp(cli->options[i].name, name)) return &cli->options[i];
    return NULL;
}

/* Sets one option from its text value; `where` names the source for error messages. */
static int list_append(slex_string_list *list, const char *value) {
    char **items = realloc(list->items, (size_t)(list->count + 1) * sizeof *items);
    if (!items) return -1;
    list->items = items;
    if (!(list->items[list->count] = strdup(value))) return -1;
    list->count++;
    return 0;
}

static int set_option(slex_cli *cli, const slex_option *opt, const char *value, const char *where,
                      slex_error *err) {
    char *end = NULL;
    errno = 0;
    switch (opt->type) {
    case SLEX_OPT_STRING:
        if (list_append(&cli->owned, value)) return slex_fail(err, "%s: out of memory", where);
        *(char **)opt->dest = cli->owned.items[cli->owned.count - 1];
        return 0;
    case SLEX_OPT_STRING_LIST:
        if (list_append(opt->dest, value)) return slex_fail(err, "%s: out of memory", where);
        return 0;
    case SLEX_OPT_INT: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < -2147483647L || v > 2147483647L)
            return slex_fail(err, "%s: --%s expects an integer, got '%s'", where, opt->name, value);
        *(int *)opt->dest = (int)v;
        return 0;
    }
    case SLEX_OPT_LONG: {
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end)
            return slex_fail(err, "%s: --%s expects an integer, got '%s'", where, opt->name, value);
        *(long long *)opt->dest = v;
        return 0;
    }
    case SLEX_OPT_DOUBLE: {
        double v = strtod(value, &end);
        if (errno || end == value || *end)
            return slex_fail(err, "%s: --%s expects a number, got '%s'", where, opt->name, value);
        *(double *)opt->dest = v;
        return 0;
    }
    case SLEX_OPT_FLAG:
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes")) *(int *)opt->dest = 1;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no")) *(int *)opt->dest = 0;
        else return slex_fail(err, "%s: --%s expects true or false, got '%s'", where, opt->name, value);
        return 0;
    }
    return slex_fail(err, "%s: --%s has an unknown type", where, opt->name);
}

typedef struct {
    slex_cli *cli;
    const char *path;
    const char *section; /* program name without "slex-" */
    slex_error *err;
    int failed;
} config_ctx;

/* Debian's libinih is built without line numbers in the handler, so errors name the key instead. */
static int on_config_entry(void *user, const char *section, const char *name, const char *value) {
    config_ctx *ctx = user;
    if (ctx->failed) return 0;
    if (strcmp(section, "common") && strcmp(section, ctx->section) && strcmp(section, ctx->cli->program))
        return 1; /* other programs' sections */
    const slex_option *opt = find_option(ctx->cli, name);
    char where[600];
    snprintf(where, sizeof where, "%s [%s] %s", ctx->path, section, name);
    if (!opt) {
        if (!strcmp(section, "common")) return 1; /* common keys need not apply to every program */
        slex_fail(ctx->err, "%s: unknown key (see --help for the keys)", where);
        ctx->failed = 1;
        return 0;
    }
    if (set_option(ctx->cli, opt, value, where, ctx->err)) {
        ctx->failed = 1;
        return 0;
    }
    return 1;
}

static int load_config(slex_cli *cli, const char *path, slex_error *err) {
    const char *section = cli->program;
    if (!strncmp(section, "slex-", 5)) section += 5;
    config_ctx ctx = {cli, path, section, err, 0};
    int rc = ini_parse(path, on_config_entry, &ctx);
    if (ctx.failed) return -1;
    if (rc == -1) return slex_fail(err, "%s: cannot open config file: %s", path, strerror(errno));
    if (rc == -2) return slex_fail(err, "%s: out of memory while reading config", path);
    if (rc > 0) return slex_fail(err, "%s:%d: malformed config line", path, rc);
    return 0;
}

slex_parse_result slex_cli_parse(slex_cli *cli, int argc, char **argv, slex_error *err) {
    /* The config file goes first so that the command line overrides it wherever it appears. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return SLEX_PARSE_HELP;
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) return slex_fail(err, "--config needs a file name"), SLEX_PARSE_ERROR;
            if (load_config(cli, argv[i + 1], err)) return SLEX_PARSE_ERROR;
            i++;
        } else if (!strncmp(argv[i], "--config=", 9)) {
            if (load_config(cli, argv[i] + 9, err)) return SLEX_PARSE_ERROR;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2))
            return slex_fail(err, "unexpected argument '%s' (options start with --; see --help)", arg),
                   SLEX_PARSE_ERROR;
        char name[128];
        const char *value = NULL;
        const char *eq = strchr(arg + 2, '=');
        size_t len = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
        if (len >= sizeof name) return slex_fail(err, "option '%s' is too long", arg), SLEX_PARSE_ERROR;
        memcpy(name, arg + 2, len);
        name[len] = '\0';
        if (eq) value = eq + 1;
        if (!strcmp(name, "config")) {
            if (!eq) i++;
            continue;
        }
        const slex_option *opt = find_option(cli, name);
        if (!opt) return slex_fail(err, "unknown option --%s (see --help)", name), SLEX_PARSE_ERROR;
        if (opt->type == SLEX_OPT_FLAG && !value) {
            *(int *)opt->dest = 1;
            continue;
        }
        if (!value) {
            if (i + 1 >= argc) return slex_fail(err, "--%s needs a value", name), SLEX_PARSE_ERROR;
            value = argv[++i];
        }
        if (set_option(cli, opt, value, "command line", err)) return SLEX_PARSE_ERROR;
    }
    return SLEX_PARSE_OK;
}

void slex_cli_help(const slex_cli *cli, void *file) {
    FILE *f = file;
    fprintf(f, "usage: %s %s\n\n", cli->program, cli->synopsis);
    if (cli->about) fprintf(f, "%s\n\n", cli->about);
    fprintf(f, "options:\n");
    for (int i = 0; i < cli->n_options; i++) {
        const slex_option *o = &cli->options[i];
        char def[160] = "";
        switch (o->type) {
        case SLEX_OPT_STRING: {
            const char *s = *(char **)o->dest;
            if (s && *s) snprintf(def, sizeof def, " (default: %s)", s);
            break;
        }
        case SLEX_OPT_INT: snprintf(def, sizeof def, " (default: %d)", *(int *)o->dest); break;
        case SLEX_OPT_LONG: snprintf(def, sizeof def, " (default: %lld)", *(long long *)o->dest); break;
        case SLEX_OPT_DOUBLE: snprintf(def, sizeof def, " (default: %g)", *(double *)o->dest); break;
        case SLEX_OPT_FLAG:
        case SLEX_OPT_STRING_LIST: break;
        }
        const char *arg = o->type == SLEX_OPT_FLAG ? "" : o->type == SLEX_OPT_INT || o->type == SLEX_OPT_LONG ? " N"
                          : o->type == SLEX_OPT_DOUBLE                                                   ? " X"
                                                                                                         : " VALUE";
        char head[160];
        snprintf(head, sizeof head, "--%s%s", o->name, arg);
        fprintf(f, "  %-26s %s%s%s\n", head, o->help, def, o->type == SLEX_OPT_STRING_LIST ? " (repeatable)" : "");
    }
    fprintf(f, "  %-26s %s\n", "--config FILE", "INI file with the same keys, sections [common] and [<stage>]");
    fprintf(f, "  %-26s %s\n", "--help", "print this help and exit");
}

void slex_string_list_free(slex_string_list *list) {
    for (int i = 0; i < list->count; i++) free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

void slex_cli_free(slex_cli *cli) {
    slex_string_list_free(&cli->owned);
    for (int i = 0; i < cli->n_options; i++)
        if (cli->options[i].type == SLEX_OPT_STRING_LIST) slex_string_list_free(cli->options[i].dest);
}
