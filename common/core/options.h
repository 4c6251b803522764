/* options: each options struct registers its options once; programs parse them from a config
 * file and the command line, validated as they are read.
 *
 * Kaldi's Register idea: a component keeps its options in a struct and describes every field
 * once, in a table of rows (slex_option_table) next to the code that uses them.  A row gives the
 * field, its long name, type, default, help, valid values and its key in the parameter JSON,
 * so defaults (slex_options_defaults), --help, parsing, validation and the parameters recorded
 * in outputs (slex_options_write_json) all come from that one row:
 *
 *   static const slex_option rows[] = {
 *       {SLEX_OPT_INT_FIELD(slex_mfcc_options, num_ceps), .name = "num-ceps", .def = 13, .min = 1,
 *        .max = 1024, .param = "num_ceps", .help = "cepstral coefficients (with C0)"},
 *       {SLEX_OPT_CHOICE_FIELD(my_options, init), .name = "init", .choices = "k-means++|random", ...},
 *   };
 *   const slex_option_table slex_mfcc_option_table = SLEX_OPTION_TABLE(rows);
 *
 * A program binds the tables of the structs it exposes to their instances (slex_option_group)
 * and parses.  `--config FILE` reads an INI file (libinih) whose keys are the same long names
 * (without "--"), from the sections [common] and [<program>]; the command line overrides it.
 *
 * Validation at parse time (errors name the option and where its value came from: the command
 * line, or FILE:LINE of the config; programs exit 2 on the command line's, 4 on the config's):
 *   - numbers must parse completely; INT/LONG/DOUBLE/FLOAT lie in [min, max] (both 0: any value of
 *     the type; SLEX_OPTF_ABOVE_MIN makes min exclusive); every DOUBLE must be finite;
 *   - CHOICE values are one of `choices`; FLAG values in a config are true/false/yes/no/1/0;
 *   - SLEX_OPTF_PATH strings are not empty and do not start with '-' (they would look like an
 *     option: `--out --force` must not create a directory named "--force");
 *   - on the command line, an option that takes a value never takes the next argument when it
 *     starts with "--" (`--out --force` is "--out needs a value");
 *   - SLEX_OPTF_REQUIRED options must be given; a table's `check` adds rules across its fields. */
#ifndef SLEX_OPTIONS_H
#define SLEX_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef enum {
    SLEX_OPT_STRING,      /* char * (or const char *); the parser stores a copy owned by the slex_cli */
    SLEX_OPT_INT,         /* int */
    SLEX_OPT_LONG,        /* int64_t (long or long long: 64 bits) */
    SLEX_OPT_U64,         /* uint64_t (decimal, no sign; min/max unused) */
    SLEX_OPT_DOUBLE,      /* double, always finite */
    SLEX_OPT_FLOAT,       /* float (parsed as a double, then rounded), always finite */
    SLEX_OPT_FLAG,        /* int set to 1 when present (config: true/false/yes/no/1/0) */
    SLEX_OPT_CHOICE,      /* int: the index of the value in `choices` */
    SLEX_OPT_STRING_LIST, /* slex_string_list; the option may repeat */
} slex_option_type;

enum {
    SLEX_OPTF_REQUIRED = 1u << 0,  /* must be given (command line or config) */
    SLEX_OPTF_PATH = 1u << 1,      /* STRING / STRING_LIST: not empty, not starting with '-' */
    SLEX_OPTF_INTERNAL = 1u << 2,  /* not an option of any program: only a default and a parameter */
    SLEX_OPTF_ABOVE_MIN = 1u << 3, /* numbers: strictly greater than min */
    SLEX_OPTF_NOT_SAVED = 1u << 4, /* not part of a saved run state (a memory budget: a resumed run
                                      takes it from its own options; the result does not depend on it) */
};

typedef struct slex_string_list {
    int count;
    char **items;
} slex_string_list;

typedef struct slex_option {
    const char *name;      /* long name without "--" */
    slex_option_type type; /* set with the field by SLEX_OPT_*_FIELD, which checks the C type */
    size_t offset;         /* of the field in its options struct */
    const char *help;
    unsigned flags;        /* SLEX_OPTF_* */
    double def;            /* default of numbers, flags and choices (the index) */
    const char *def_text;  /* default of STRING (NULL: none) */
    double min, max;       /* INT, LONG, DOUBLE, FLOAT: valid range, inclusive; both 0: the type's range */
    const char *choices;   /* CHOICE: the values separated by '|' */
    const char *param;     /* key in the parameter JSON (slex_options_write_json); NULL: not written */
} slex_option;

/* The field of a row, with a compile-time check that its C type matches the option type. */
#define SLEX_OPT_FIELD_(T, f, kind, ctype) .type = kind, .offset = offsetof(T, f) + 0 * _Generic(((T *)0)->f, ctype: 1)
#define SLEX_OPT_STRING_FIELD(T, f)                                                                                  \
    .type = SLEX_OPT_STRING, .offset = offsetof(T, f) + 0 * _Generic(((T *)0)->f, char *: 1, const char *: 1)
#define SLEX_OPT_INT_FIELD(T, f) SLEX_OPT_FIELD_(T, f, SLEX_OPT_INT, int)
/* LONG fields are 64-bit: int64_t, long or long long (slex needs an LP64 platform). */
#define SLEX_OPT_LONG_FIELD(T, f)                                                                                    \
    .type = SLEX_OPT_LONG, .offset = offsetof(T, f) + 0 * _Generic(((T *)0)->f, long: 1, long long: 1)
#define SLEX_OPT_U64_FIELD(T, f) SLEX_OPT_FIELD_(T, f, SLEX_OPT_U64, uint64_t)
#define SLEX_OPT_DOUBLE_FIELD(T, f) SLEX_OPT_FIELD_(T, f, SLEX_OPT_DOUBLE, double)
#define SLEX_OPT_FLOAT_FIELD(T, f) SLEX_OPT_FIELD_(T, f, SLEX_OPT_FLOAT, float)
#define SLEX_OPT_FLAG_FIELD(T, f) SLEX_OPT_FIELD_(T, f, SLEX_OPT_FLAG, int)
#define SLEX_OPT_CHOICE_FIELD(T, f) SLEX_OPT_FIELD_(T, f, SLEX_OPT_CHOICE, int)
#define SLEX_OPT_LIST_FIELD(T, f) SLEX_OPT_FIELD_(T, f, SLEX_OPT_STRING_LIST, slex_string_list)

/* The rows of one options struct, and optionally the rules across its fields (called after
 * parsing, with the parsed struct; a failure is a bad command line naming the options). */
typedef struct slex_option_table {
    const slex_option *rows;
    int n;
    int (*check)(const void *opts, slex_error *err);
} slex_option_table;

#define SLEX_OPTION_TABLE(rows_array) {(rows_array), (int)(sizeof(rows_array) / sizeof((rows_array)[0])), NULL}
#define SLEX_OPTION_TABLE_CHECKED(rows_array, check_fn)                                                             \
    {(rows_array), (int)(sizeof(rows_array) / sizeof((rows_array)[0])), (check_fn)}

/* Sets every field of the table's rows to its default (other fields are left alone). */
void slex_options_defaults(const slex_option_table *table, void *opts);

/* Checks a table itself: names unique and well formed, defaults valid, choices non-empty.
 * slex_cli_parse runs it on every table (a failure there is a bug of the program). */
int slex_option_table_check(const slex_option_table *table, slex_error *err);

/* Adds "param": value for every row with a `param` key, in the table's order, to a cJSON
 * object (numbers as JSON numbers, FLAG as 0/1, CHOICE as its name, STRING as a string or
 * null, STRING_LIST as an array).  Returns 0, or -1 when out of memory. */
struct cJSON;
int slex_options_write_json(const slex_option_table *table, const void *opts, struct cJSON *object);

/* One table bound to the struct it fills. */
typedef struct slex_option_group {
    const slex_option_table *table;
    void *opts;
} slex_option_group;

typedef struct slex_cli {
    const char *program;  /* e.g. "slex-mfcc" */
    const char *synopsis; /* one line after "usage: " */
    const char *about;    /* a paragraph printed by --help */
    const slex_option_group *groups;
    int n_groups;
    slex_string_list owned; /* strings the parser allocated; freed by slex_cli_free */
    unsigned char *given;   /* per row of all groups: 1 when set by the config or command line */
    int config_failed;      /* set by slex_cli_parse: the failure was the --config file's */
} slex_cli;

typedef enum { SLEX_PARSE_OK = 0, SLEX_PARSE_HELP = 1, SLEX_PARSE_ERROR = -1 } slex_parse_result;

/* Parses argv (and --config FILE if given) into the groups' structs, which hold their defaults
 * beforehand.  On SLEX_PARSE_HELP the caller prints slex_cli_help() and exits 0; on
 * SLEX_PARSE_ERROR err names the option and the caller exits slex_cli_exit_code(). */
slex_parse_result slex_cli_parse(slex_cli *cli, int argc, char **argv, slex_error *err);
/* The exit code after SLEX_PARSE_ERROR: 2 (bad command line), or, when the --config file failed
 * (missing, malformed, a bad value or key), the code of err's kind (4 for those; a file system's
 * failure 1). */
int slex_cli_exit_code(const slex_cli *cli, const slex_error *err);

/* 1 when the option `name` was given in the config or on the command line. */
int slex_cli_given(const slex_cli *cli, const char *name);

/* Writes the --help text to a FILE* (stdout from programs): every option with its default and
 * its valid values. */
void slex_cli_help(const slex_cli *cli, void *file);

/* Frees strings the parser allocated and the groups' string lists. */
void slex_cli_free(slex_cli *cli);

/* Frees a list and zeroes it. */
void slex_string_list_free(slex_string_list *list);

#endif
