/* Options: defaults, command line, config file sections, errors naming the option or file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/options.h"

typedef struct demo_options {
    char *name;
    int count;
    double rate;
    int verbose;
    slex_string_list stores;
} demo_options;

static slex_parse_result parse(demo_options *o, int argc, char **argv, slex_error *err, slex_cli *cli,
                               slex_option *table) {
    table[0] = (slex_option){"name", SLEX_OPT_STRING, &o->name, "a name"};
    table[1] = (slex_option){"count", SLEX_OPT_INT, &o->count, "a count"};
    table[2] = (slex_option){"rate", SLEX_OPT_DOUBLE, &o->rate, "a rate"};
    table[3] = (slex_option){"verbose", SLEX_OPT_FLAG, &o->verbose, "a flag"};
    table[4] = (slex_option){"store", SLEX_OPT_STRING_LIST, &o->stores, "stores"};
    *cli = (slex_cli){.program = "slex-demo", .synopsis = "[options]", .options = table, .n_options = 5};
    return slex_cli_parse(cli, argc, argv, err);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/test_options.ini", dir);
    char mk[4200];
    snprintf(mk, sizeof mk, "mkdir -p %s", dir);
    CHECK(system(mk) == 0, "mkdir");

    /* Defaults stay; the command line sets; --key=value works; lists repeat. */
    demo_options o = {"default", 7, 0.5, 0, {0, NULL}};
    slex_option table[5];
    slex_cli cli;
    slex_error err = {{0}};
    char *a1[] = {"prog", "--count", "12", "--rate=2.5", "--verbose", "--store", "a:1", "--store", "b"};
    CHECK(parse(&o, 9, a1, &err, &cli, table) == SLEX_PARSE_OK, "parse: %s", err.msg);
    CHECK(!strcmp(o.name, "default") && o.count == 12 && o.rate == 2.5 && o.verbose == 1, "values");
    CHECK(o.stores.count == 2 && !strcmp(o.stores.items[1], "b"), "list");
    slex_cli_free(&cli);

    /* Config: [common] and [demo] apply, other sections do not; the command line wins. */
    FILE *f = fopen(cfg, "w");
    fprintf(f, "[common]\ncount = 3\nunrelated = 1\n[demo]\nname = from-config\nrate = 9\n[other]\ncount = 99\n");
    fclose(f);
    demo_options p = {"default", 7, 0.5, 0, {0, NULL}};
    char *a2[] = {"prog", "--rate", "1.5", "--config", cfg};
    CHECK(parse(&p, 5, a2, &err, &cli, table) == SLEX_PARSE_OK, "parse config: %s", err.msg);
    CHECK(p.count == 3 && !strcmp(p.name, "from-config") && p.rate == 1.5, "config values %d %s %g", p.count,
          p.name, p.rate);
    slex_cli_free(&cli);

    /* Errors name what is wrong. */
    demo_options q = {"default", 7, 0.5, 0, {0, NULL}};
    char *a3[] = {"prog", "--count", "twelve"};
    CHECK(parse(&q, 3, a3, &err, &cli, table) == SLEX_PARSE_ERROR && strstr(err.msg, "--count"), "%s", err.msg);
    slex_cli_free(&cli);
    char *a4[] = {"prog", "--nope"};
    CHECK(parse(&q, 2, a4, &err, &cli, table) == SLEX_PARSE_ERROR && strstr(err.msg, "--nope"), "%s", err.msg);
    slex_cli_free(&cli);
    char *a5[] = {"prog", "--count"};
    CHECK(parse(&q, 2, a5, &err, &cli, table) == SLEX_PARSE_ERROR && strstr(err.msg, "needs a value"), "%s", err.msg);
    slex_cli_free(&cli);
    f = fopen(cfg, "w");
    fprintf(f, "[demo]\ncuont = 3\n");
    fclose(f);
    char *a6[] = {"prog", "--config", cfg};
    CHECK(parse(&q, 3, a6, &err, &cli, table) == SLEX_PARSE_ERROR && strstr(err.msg, "cuont") && strstr(err.msg, cfg),
          "%s", err.msg);
    slex_cli_free(&cli);
    char *a7[] = {"prog", "--config", "/nonexistent/x.ini"};
    CHECK(parse(&q, 3, a7, &err, &cli, table) == SLEX_PARSE_ERROR && strstr(err.msg, "/nonexistent/x.ini"), "%s",
          err.msg);
    slex_cli_free(&cli);
    char *a8[] = {"prog", "--help"};
    CHECK(parse(&q, 2, a8, &err, &cli, table) == SLEX_PARSE_HELP, "help");
    slex_cli_free(&cli);
    slex_string_list_free(&o.stores);
    return check_finish("test_options");
}
