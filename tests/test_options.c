/* Options: one registration per struct (defaults, help, JSON), the command line and config
 * sections, and every validation rule, each with an error that names the option and where its
 * value came from. */
#include <cjson/cJSON.h>
#include <float.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cluster/kmeans.h"
#include "core/options.h"
#include "corpus/textgrid.h"
#include "feat/mfcc.h"
#include "model/hubert.h"
#include "run/featstage.h"

typedef struct demo_options {
    char *name;
    char *out;
    int count;
    int level;
    int64_t offset;
    uint64_t seed;
    double rate;
    double fraction;
    int verbose;
    int mode;
    slex_string_list stores;
    int hidden;
} demo_options;

#define T demo_options
static const slex_option demo_rows[] = {
    {SLEX_OPT_STRING_FIELD(T, name), .name = "name", .def_text = "default", .param = "name", .help = "a name"},
    {SLEX_OPT_STRING_FIELD(T, out), .name = "out", .flags = SLEX_OPTF_REQUIRED | SLEX_OPTF_PATH, .help = "a path"},
    {SLEX_OPT_INT_FIELD(T, count), .name = "count", .def = 7, .min = -5, .max = 100, .param = "count",
     .help = "a count"},
    {SLEX_OPT_INT_FIELD(T, level), .name = "level", .def = 1, .min = 0, .max = INT_MAX, .help = "a level"},
    {SLEX_OPT_LONG_FIELD(T, offset), .name = "offset", .def = -3, .param = "offset", .help = "any integer"},
    {SLEX_OPT_U64_FIELD(T, seed), .name = "seed", .def = 5, .param = "seed", .help = "a seed"},
    {SLEX_OPT_DOUBLE_FIELD(T, rate), .name = "rate", .def = 0.5, .param = "rate", .help = "any finite number"},
    {SLEX_OPT_DOUBLE_FIELD(T, fraction), .name = "fraction", .flags = SLEX_OPTF_ABOVE_MIN, .def = 1, .min = 0,
     .max = 1, .param = "fraction", .help = "in (0, 1]"},
    {SLEX_OPT_FLAG_FIELD(T, verbose), .name = "verbose", .param = "verbose", .help = "a flag"},
    {SLEX_OPT_CHOICE_FIELD(T, mode), .name = "mode", .def = 1, .choices = "fast|exact|lazy", .param = "mode",
     .help = "a mode"},
    {SLEX_OPT_LIST_FIELD(T, stores), .name = "store", .flags = SLEX_OPTF_PATH, .param = "stores", .help = "stores"},
    {SLEX_OPT_INT_FIELD(T, hidden), .name = "hidden", .flags = SLEX_OPTF_INTERNAL, .def = 42, .param = "hidden"},
};
#undef T

/* Rules across fields: count must not exceed level + 10 (a stand-in for num_ceps <= num_mel_bins). */
static int demo_check(const void *opts, slex_error *err) {
    const demo_options *o = opts;
    if (o->count > (long long)o->level + 10)
        return slex_fail_as(err, SLEX_ERR_INPUT, "--count %d is more than --level + 10", o->count);
    return 0;
}
static const slex_option_table demo_table = SLEX_OPTION_TABLE_CHECKED(demo_rows, demo_check);

typedef struct extra_options {
    int depth;
    float weight;
} extra_options;
static const slex_option extra_rows[] = {
    {SLEX_OPT_INT_FIELD(extra_options, depth), .name = "depth", .def = 2, .min = 1, .max = 9, .help = "depth"},
    {SLEX_OPT_FLOAT_FIELD(extra_options, weight), .name = "weight", .def = 0.25, .min = 0, .max = 2, .param = "weight",
     .help = "a float"},
};
static const slex_option_table extra_table = SLEX_OPTION_TABLE(extra_rows);

static demo_options o;
static extra_options x;
static slex_option_group groups[2];
static slex_cli cli;
static slex_error err;
static char cfg[4096];

/* Parses the NULL-terminated arguments after "prog" into fresh defaults. */
static slex_parse_result parse(const char *first, ...) {
    slex_cli_free(&cli);
    memset(&o, 0, sizeof o);
    slex_options_defaults(&demo_table, &o);
    slex_options_defaults(&extra_table, &x);
    groups[0] = (slex_option_group){&demo_table, &o};
    groups[1] = (slex_option_group){&extra_table, &x};
    cli = (slex_cli){.program = "slex-demo", .synopsis = "[options]", .groups = groups, .n_groups = 2};
    char *argv[64] = {"prog"};
    int argc = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 63; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
    va_end(ap);
    memset(&err, 0, sizeof err);
    return slex_cli_parse(&cli, argc, argv, &err);
}

static void write_config(const char *text) {
    FILE *f = fopen(cfg, "w");
    fputs(text, f);
    fclose(f);
}

/* The parse fails and the message holds every given fragment. */
#define CHECK_REFUSED(rc, ...)                                                                                       \
    do {                                                                                                             \
        const char *frags_[] = {__VA_ARGS__, NULL};                                                                  \
        int has_ = (rc) == SLEX_PARSE_ERROR;                                                                         \
        for (int k_ = 0; frags_[k_]; k_++) has_ = has_ && strstr(err.msg, frags_[k_]) != NULL;                       \
        CHECK(has_, "expected a refusal naming %s, got rc %d: %s", frags_[0], (int)(rc), err.msg);                   \
    } while (0)

static void test_defaults_and_values(void) {
    CHECK(parse("--out", "o", NULL) == SLEX_PARSE_OK, "%s", err.msg);
    CHECK(!strcmp(o.name, "default") && o.count == 7 && o.level == 1 && o.offset == -3 && o.seed == 5 &&
              o.rate == 0.5 && o.fraction == 1 && o.verbose == 0 && o.mode == 1 && o.stores.count == 0 &&
              o.hidden == 42 && x.depth == 2,
          "defaults from the table");
    CHECK(!slex_cli_given(&cli, "count") && slex_cli_given(&cli, "out"), "given");
    CHECK(parse("--out", "o", "--count", "-5", "--rate=-2.5", "--verbose", "--store", "a:1", "--store", "b",
                "--mode", "lazy", "--offset", "-9000000000", "--seed", "18446744073709551615", "--fraction",
                "1e-300", "--depth", "9", NULL) == SLEX_PARSE_OK,
          "%s", err.msg);
    CHECK(o.count == -5 && o.rate == -2.5 && o.verbose == 1 && o.mode == 2 && o.offset == -9000000000LL &&
              o.seed == UINT64_MAX && o.fraction == 1e-300 && x.depth == 9,
          "values");
    CHECK(o.stores.count == 2 && !strcmp(o.stores.items[0], "a:1") && !strcmp(o.stores.items[1], "b"), "list");
    CHECK(parse("--out", "o", "--verbose=false", "--count", "100", "--level", "2147483647", NULL) == SLEX_PARSE_OK &&
              o.verbose == 0 && o.count == 100 && o.level == INT_MAX,
          "bounds are inclusive: %s", err.msg);
    /* A value may start with a single '-' (negative numbers) and, when not a path, contain "--". */
    CHECK(parse("--out", "o", "--name", "-x--y", NULL) == SLEX_PARSE_OK && !strcmp(o.name, "-x--y"), "%s", err.msg);
    CHECK(parse("--out", "o", "--name=--z", NULL) == SLEX_PARSE_OK && !strcmp(o.name, "--z"), "explicit =: %s",
          err.msg);
    CHECK(parse("--help", NULL) == SLEX_PARSE_HELP, "help without the required options");
}

static void test_numbers(void) {
    CHECK_REFUSED(parse("--out", "o", "--count", "twelve", NULL), "command line", "--count twelve", "integer");
    CHECK_REFUSED(parse("--out", "o", "--count", "12x", NULL), "--count 12x", "integer");
    CHECK_REFUSED(parse("--out", "o", "--count", "", NULL), "--count", "integer");
    CHECK_REFUSED(parse("--out", "o", "--count", "1e3", NULL), "--count 1e3", "integer");
    CHECK_REFUSED(parse("--out", "o", "--level", "2147483648", NULL), "--level 2147483648", "integer");
    CHECK_REFUSED(parse("--out", "o", "--offset", "99999999999999999999", NULL), "--offset", "integer");
    /* Ranges: below, above; a negative value where the minimum is 0 (issue 9: --nshard -3). */
    CHECK_REFUSED(parse("--out", "o", "--count", "-6", NULL), "--count -6", "between -5 and 100");
    CHECK_REFUSED(parse("--out", "o", "--count", "101", NULL), "--count 101", "between -5 and 100");
    CHECK_REFUSED(parse("--out", "o", "--level", "-1", NULL), "--level -1", "at least 0");
    CHECK_REFUSED(parse("--out", "o", "--depth", "0", NULL), "--depth 0", "between 1 and 9");
    /* Doubles: finite always (issue 9: --max-reject nan), exclusive minimum, range. */
    const char *non_finite[] = {"nan", "NaN", "-nan", "inf", "-inf", "Infinity"};
    for (int i = 0; i < 6; i++) CHECK_REFUSED(parse("--out", "o", "--rate", non_finite[i], NULL), "--rate", "finite");
    CHECK_REFUSED(parse("--out", "o", "--fraction", "nan", NULL), "--fraction nan", "finite");
    CHECK_REFUSED(parse("--out", "o", "--rate", "1e999", NULL), "--rate 1e999", "number");
    CHECK_REFUSED(parse("--out", "o", "--rate", "0.5.1", NULL), "--rate 0.5.1", "number");
    CHECK_REFUSED(parse("--out", "o", "--fraction", "0", NULL), "--fraction 0", "greater than 0 and at most 1");
    CHECK_REFUSED(parse("--out", "o", "--fraction", "1.0000001", NULL), "--fraction 1.0000001", "at most 1");
    CHECK_REFUSED(parse("--out", "o", "--fraction", "-0.5", NULL), "--fraction -0.5", "greater than 0");
    /* Unsigned: no sign, no overflow. */
    CHECK_REFUSED(parse("--out", "o", "--seed", "-1", NULL), "--seed -1", "non-negative");
    CHECK_REFUSED(parse("--out", "o", "--seed", "18446744073709551616", NULL), "--seed", "non-negative");
    /* Flags and choices. */
    CHECK_REFUSED(parse("--out", "o", "--verbose=maybe", NULL), "--verbose maybe", "true or false");
    CHECK_REFUSED(parse("--out", "o", "--mode", "quick", NULL), "--mode quick", "one of fast, exact, lazy");
    CHECK_REFUSED(parse("--out", "o", "--mode", "fas", NULL), "--mode fas", "one of");
    CHECK_REFUSED(parse("--out", "o", "--mode", "fast|exact", NULL), "--mode fast|exact", "one of");
    CHECK(parse("--out", "o", "--mode", "fast", NULL) == SLEX_PARSE_OK && o.mode == 0, "first choice");
}

static void test_paths_and_values(void) {
    /* `--out --force` must not make a directory named --force (issue 9). */
    CHECK_REFUSED(parse("--out", "--verbose", NULL), "--out needs a value", "--verbose");
    CHECK(o.out == NULL && o.verbose == 0, "nothing was set");
    CHECK_REFUSED(parse("--out", "o", "--name", "--verbose", NULL), "--name needs a value", "--verbose");
    CHECK_REFUSED(parse("--out", "o", "--count", "--level", "3", NULL), "--count needs a value", "--level");
    CHECK_REFUSED(parse("--out", "o", "--store", "--out", "p", NULL), "--store needs a value");
    CHECK_REFUSED(parse("--out", "o", "--count", NULL), "--count needs a value");
    CHECK_REFUSED(parse("--out=--verbose", NULL), "--out --verbose", "looks like an option");
    CHECK_REFUSED(parse("--out", "-o", NULL), "--out -o", "looks like an option", "./");
    CHECK_REFUSED(parse("--out=", NULL), "--out", "must not be empty");
    CHECK_REFUSED(parse("--out", "o", "--store", "-s", NULL), "--store -s", "looks like an option");
    CHECK(parse("--out", "./-o", "--store", "x/-s", NULL) == SLEX_PARSE_OK, "paths with '-' inside: %s", err.msg);
    /* Required, unknown, positional. */
    CHECK_REFUSED(parse("--count", "3", NULL), "--out is required");
    CHECK_REFUSED(parse("--out", "o", "--nope", "1", NULL), "unknown option --nope");
    CHECK_REFUSED(parse("--out", "o", "--hidden", "1", NULL), "unknown option --hidden"); /* internal rows */
    CHECK_REFUSED(parse("--out", "o", "stray", NULL), "unexpected argument 'stray'");
    /* The table's rule across fields runs after parsing, on the final values. */
    CHECK_REFUSED(parse("--out", "o", "--count", "20", NULL), "--count 20 is more than --level + 10");
    CHECK(parse("--out", "o", "--count", "20", "--level", "10", NULL) == SLEX_PARSE_OK, "%s", err.msg);
}

static void test_config(void) {
    /* [common] and [demo] apply, other sections do not; the command line wins; required options
     * may come from the file. */
    write_config("[common]\ncount = 3\nunrelated = 1\n[demo]\nname = from-config\nrate = 9\nout = o\n"
                 "mode = exact\nverbose = yes\nstore = s1\nstore = s2\n[other]\ncount = 99\nbogus = 1\n");
    CHECK(parse("--rate", "1.5", "--config", cfg, NULL) == SLEX_PARSE_OK, "parse config: %s", err.msg);
    CHECK(o.count == 3 && !strcmp(o.name, "from-config") && o.rate == 1.5 && !strcmp(o.out, "o") && o.mode == 1 &&
              o.verbose == 1 && o.stores.count == 2,
          "config values %d %s %g", o.count, o.name, o.rate);
    CHECK(slex_cli_given(&cli, "count") && !slex_cli_given(&cli, "level"), "given from the config");
    CHECK(parse("--config=", NULL) == SLEX_PARSE_ERROR && strstr(err.msg, "--config needs a file name"), "%s", err.msg);
    CHECK_REFUSED(parse("--config", "--out", "o", NULL), "--config needs a value", "--out");
    CHECK_REFUSED(parse("--config", "/nonexistent/x.ini", NULL), "/nonexistent/x.ini", "cannot open");
    /* Errors in the file name the file, the line and the option. */
    char line[4200];
    write_config("[demo]\nout = o\ncuont = 3\n");
    snprintf(line, sizeof line, "%s:3", cfg);
    CHECK_REFUSED(parse("--config", cfg, NULL), line, "cuont", "unknown key");
    write_config("; comment\n[common]\n\ncount = 3\n[demo]\nout = o\n\nfraction = nan\n");
    snprintf(line, sizeof line, "%s:8", cfg);
    CHECK_REFUSED(parse("--config", cfg, NULL), line, "--fraction nan", "finite");
    write_config("[demo]\nout = --verbose\n");
    snprintf(line, sizeof line, "%s:2", cfg);
    CHECK_REFUSED(parse("--config", cfg, NULL), line, "--out --verbose", "looks like an option");
    write_config("[common]\nlevel = -2\n");
    snprintf(line, sizeof line, "%s:2", cfg);
    CHECK_REFUSED(parse("--out", "o", "--config", cfg, NULL), line, "--level -2", "at least 0");
    write_config("[demo]\nverbose = sometimes\n");
    CHECK_REFUSED(parse("--out", "o", "--config", cfg, NULL), "--verbose sometimes", "true or false");
    write_config("[demo]\nmode = slow\n");
    CHECK_REFUSED(parse("--out", "o", "--config", cfg, NULL), "--mode slow", "one of fast, exact, lazy");
    /* Line numbers stay right after a line longer than inih's line buffer. */
    char text[3000] = "[demo]\n;";
    memset(text + strlen(text), 'x', 1500);
    strcat(text, "\nname = fine\ncount = 1000\n");
    write_config(text);
    snprintf(line, sizeof line, "%s:4", cfg);
    CHECK_REFUSED(parse("--out", "o", "--config", cfg, NULL), line, "--count 1000");
    write_config("[demo]\nthis line is not ini\n");
    snprintf(line, sizeof line, "%s:2", cfg);
    CHECK_REFUSED(parse("--out", "o", "--config", cfg, NULL), line, "malformed");
}

static int table_error(const slex_option *rows, int n, const char *fragment) {
    slex_option_table t = {rows, n, NULL};
    slex_error e = {{0}};
    int failed = slex_option_table_check(&t, &e) != 0;
    if (!failed || !strstr(e.msg, fragment)) fprintf(stderr, "table check: expected '%s', got '%s'\n", fragment, e.msg);
    return failed && strstr(e.msg, fragment) != NULL;
}

static void test_tables(void) {
    /* Every table of slex passes its own check (their defaults obey their rules). */
    const slex_option_table *tables[] = {&demo_table, &extra_table, &slex_featstage_option_table,
                                         &slex_mfcc_option_table, &slex_hubert_load_option_table,
                                         &slex_kmeans_option_table, &slex_textgrid_option_table};
    for (int i = 0; i < (int)(sizeof tables / sizeof *tables); i++) {
        slex_error e = {{0}};
        CHECK(slex_option_table_check(tables[i], &e) == 0, "table %d: %s", i, e.msg);
    }
    /* Broken tables are refused, naming the option. */
    typedef struct { int a, b; double d; char *s; } t2;
    slex_option dup[] = {{SLEX_OPT_INT_FIELD(t2, a), .name = "a", .help = "h"},
                         {SLEX_OPT_INT_FIELD(t2, b), .name = "a", .help = "h"}};
    CHECK(table_error(dup, 2, "--a twice"), "duplicate");
    slex_option range[] = {{SLEX_OPT_INT_FIELD(t2, a), .name = "a", .def = 0, .min = 1, .max = 5, .help = "h"}};
    CHECK(table_error(range, 1, "--a has an invalid default"), "default outside the range");
    range[0].flags = SLEX_OPTF_REQUIRED;
    CHECK(slex_option_table_check(&(slex_option_table){range, 1, NULL}, NULL) == 0, "required: default unused");
    slex_option frac[] = {{SLEX_OPT_INT_FIELD(t2, a), .name = "a", .def = 1.5, .help = "h"}};
    CHECK(table_error(frac, 1, "invalid default"), "fractional integer default");
    slex_option nan_default[] = {{SLEX_OPT_DOUBLE_FIELD(t2, d), .name = "d", .def = NAN, .help = "h"}};
    CHECK(table_error(nan_default, 1, "invalid default"), "NaN default");
    slex_option choice[] = {{SLEX_OPT_CHOICE_FIELD(t2, a), .name = "c", .def = 2, .choices = "x|y", .help = "h"}};
    CHECK(table_error(choice, 1, "invalid default"), "choice default");
    choice[0].choices = NULL;
    CHECK(table_error(choice, 1, "no choices"), "no choices");
    slex_option path[] = {{SLEX_OPT_INT_FIELD(t2, a), .name = "p", .flags = SLEX_OPTF_PATH, .help = "h"}};
    CHECK(table_error(path, 1, "not a string"), "path on an integer");
    slex_option flag[] = {{SLEX_OPT_FLAG_FIELD(t2, a), .name = "f", .flags = SLEX_OPTF_REQUIRED, .help = "h"}};
    CHECK(table_error(flag, 1, "cannot be required"), "required flag");
    slex_option names[] = {{SLEX_OPT_INT_FIELD(t2, a), .name = "Bad Name", .help = "h"}};
    CHECK(table_error(names, 1, "invalid name"), "name");
    slex_option nohelp[] = {{SLEX_OPT_INT_FIELD(t2, a), .name = "a"}};
    CHECK(table_error(nohelp, 1, "no help"), "help");
    slex_option empty[] = {{SLEX_OPT_INT_FIELD(t2, a), .name = "a", .min = 3, .max = 2, .help = "h"}};
    CHECK(table_error(empty, 1, "empty range"), "empty range");
    slex_option badpath[] = {{SLEX_OPT_STRING_FIELD(t2, s), .name = "s", .flags = SLEX_OPTF_PATH, .def_text = "-x",
                              .help = "h"}};
    CHECK(table_error(badpath, 1, "invalid default"), "path default");
    /* The same option in two groups of one program. */
    static const slex_option again_rows[] = {{SLEX_OPT_INT_FIELD(extra_options, depth), .name = "count", .help = "h"}};
    static const slex_option_table again = SLEX_OPTION_TABLE(again_rows);
    extra_options y;
    slex_option_group two[] = {{&demo_table, &o}, {&again, &y}};
    slex_cli c = {.program = "slex-demo", .synopsis = "", .groups = two, .n_groups = 2};
    char *argv[] = {"prog"};
    slex_error e = {{0}};
    CHECK(slex_cli_parse(&c, 1, argv, &e) == SLEX_PARSE_ERROR && strstr(e.msg, "--count is in two groups"), "%s",
          e.msg);
    slex_cli_free(&c);
}

/* FLOAT: parsed as a double, stored rounded to float; its JSON is the float's exact value. */
static void test_floats(void) {
    CHECK(parse("--out", "o", NULL) == SLEX_PARSE_OK && x.weight == 0.25f, "float default %g", (double)x.weight);
    CHECK(parse("--out", "o", "--weight", "0.1", NULL) == SLEX_PARSE_OK && x.weight == 0.1f, "0.1 -> %.9g",
          (double)x.weight);
    cJSON *p = cJSON_CreateObject();
    CHECK(slex_options_write_json(&extra_table, &x, p) == 0, "json");
    char *text = cJSON_PrintUnformatted(p);
    /* 0.1f = 13421773 / 2^27 = 0.100000001490116119384765625 */
    CHECK(text && !strcmp(text, "{\"weight\":0.10000000149011612}"), "float json: %s", text);
    free(text);
    cJSON_Delete(p);
    CHECK_REFUSED(parse("--out", "o", "--weight", "2.5", NULL), "--weight 2.5", "between 0 and 2");
    CHECK_REFUSED(parse("--out", "o", "--weight", "nan", NULL), "--weight nan", "finite");
}

static void test_json_and_help(void) {
    CHECK(parse("--out", "o", "--store", "a", "--store", "b\"q", "--mode", "lazy", "--rate", "0.25", NULL) ==
              SLEX_PARSE_OK,
          "%s", err.msg);
    cJSON *p = cJSON_CreateObject();
    CHECK(slex_options_write_json(&demo_table, &o, p) == 0, "json");
    char *text = cJSON_PrintUnformatted(p);
    const char *expect = "{\"name\":\"default\",\"count\":7,\"offset\":-3,\"seed\":5,\"rate\":0.25,\"fraction\":1,"
                         "\"verbose\":0,\"mode\":\"lazy\",\"stores\":[\"a\",\"b\\\"q\"],\"hidden\":42}";
    CHECK(text && !strcmp(text, expect), "json: %s", text);
    free(text);
    cJSON_Delete(p);
    o.name = NULL;
    p = cJSON_CreateObject();
    slex_options_write_json(&demo_table, &o, p);
    text = cJSON_PrintUnformatted(p);
    CHECK(text && strstr(text, "{\"name\":null,"), "unset string is null: %s", text);
    free(text);
    cJSON_Delete(p);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    slex_cli_help(&cli, f);
    fclose(f);
    const char *expect_lines[] = {
        "--name VALUE", "a name (default: default)", "--out PATH", "a path (required)",
        "a count (default: 7; between -5 and 100)", "a level (default: 1; at least 0)", "any integer (default: -3)",
        "a seed (default: 5)", "in (0, 1] (default: 1; greater than 0 and at most 1)", "--verbose ",
        "a mode (default: exact; one of fast, exact, lazy)", "stores (repeatable)", "depth (default: 2; between 1 and 9)",
        "--config FILE", "--help"};
    for (int i = 0; i < (int)(sizeof expect_lines / sizeof *expect_lines); i++)
        CHECK(strstr(buf, expect_lines[i]), "help has '%s':\n%s", expect_lines[i], buf);
    CHECK(!strstr(buf, "hidden"), "internal rows are not in --help");
    free(buf);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    snprintf(cfg, sizeof cfg, "%s/test_options.ini", dir);
    char mk[4200];
    snprintf(mk, sizeof mk, "mkdir -p %s", dir);
    CHECK(system(mk) == 0, "mkdir");
    test_defaults_and_values();
    test_numbers();
    test_paths_and_values();
    test_config();
    test_tables();
    test_floats();
    test_json_and_help();
    slex_cli_free(&cli);
    return check_finish("test_options");
}
