/* SLEX_OPT_*_FIELD checks the C type of a field at compile time: this file compiles, and fails
 * to compile with -DSLEX_BAD_FIELD (an int field registered as a double). */
#include "core/options.h"

typedef struct field_demo {
    int count;
    double rate;
} field_demo;

static const slex_option rows[] = {
    {SLEX_OPT_INT_FIELD(field_demo, count), .name = "count", .help = "an int"},
#ifdef SLEX_BAD_FIELD
    {SLEX_OPT_DOUBLE_FIELD(field_demo, count), .name = "rate", .help = "an int registered as a double"},
#else
    {SLEX_OPT_DOUBLE_FIELD(field_demo, rate), .name = "rate", .help = "a double"},
#endif
};
const slex_option_table field_demo_table = SLEX_OPTION_TABLE(rows);
