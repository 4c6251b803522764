/* options: one table of options per program, filled from a config file and the command line.
 *
 * Each component keeps its options in a struct with documented defaults (Kaldi's option
 * structs).  A program lists the fields it exposes in a slex_option table; the defaults are
 * whatever the struct holds before parsing, and --help prints them.  `--config FILE` reads an
 * INI file (libinih) whose keys are the same long option names (without "--"), taken from the
 * sections [common] and [<program>]; the command line overrides the file.
 *
 *   slex_option opts[] = {
 *       {"manifest", SLEX_OPT_STRING, &o.manifest, "fairseq manifest (.tsv)"},
 *       {"nshard",   SLEX_OPT_INT,    &o.nshard,   "number of shards (0 = rank count)"},
 *   };
 */
#ifndef SLEX_OPTIONS_H
#define SLEX_OPTIONS_H

#include "core/err.h"

typedef enum {
    SLEX_OPT_STRING,      /* char *; the parser stores a copy owned by the slex_cli */
    SLEX_OPT_INT,         /* int */
    SLEX_OPT_LONG,        /* long long */
    SLEX_OPT_DOUBLE,      /* double */
    SLEX_OPT_FLAG,        /* int set to 1 when present (config: true/false/1/0) */
    SLEX_OPT_STRING_LIST, /* slex_string_list; the option may repeat */
} slex_option_type;

typedef struct slex_string_list {
    int count;
    char **items;
} slex_string_list;

typedef struct slex_option {
    const char *name; /* long name without "--" */
    slex_option_type type;
    void *dest;
    const char *help;
} slex_option;

typedef struct slex_cli {
    const char *program;  /* e.g. "slex-mfcc" */
    const char *synopsis; /* one line after "usage: " */
    const char *about;    /* a paragraph printed by --help */
    const slex_option *options;
    int n_options;
    slex_string_list owned; /* strings the parser allocated; freed by slex_cli_free */
} slex_cli;

typedef enum { SLEX_PARSE_OK = 0, SLEX_PARSE_HELP = 1, SLEX_PARSE_ERROR = -1 } slex_parse_result;

/* Parses argv (and --config FILE if given).  On SLEX_PARSE_HELP the caller prints
 * slex_cli_help() and exits 0; on error err names the offending option. */
slex_parse_result slex_cli_parse(slex_cli *cli, int argc, char **argv, slex_error *err);

/* Writes the --help text to a FILE* (stdout from programs). */
void slex_cli_help(const slex_cli *cli, void *file);

/* Frees strings the parser allocated. */
void slex_cli_free(slex_cli *cli);

/* Frees a list and zeroes it. */
void slex_string_list_free(slex_string_list *list);

#endif
