/* test_extsynth: the parsers of festival's and flite's segment lists (corpus/extsynth.h) on
 * hand-written program output: end times in microseconds, names, and every malformed case
 * (no end marker, decreasing times, a bad number, a name too long, no segment line). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "corpus/extsynth.h"

static void expect_fail(slex_extsynth_program p, const char *out, const char *message) {
    slex_extsynth_phone *ph = NULL;
    int64_t n = 0;
    slex_error err = {{0}};
    int rc = slex_extsynth_parse_phones(p, out, &ph, &n, &err);
    CHECK(rc == -1 && strstr(err.msg, message), "'%s': rc %d, message '%s', expected '%s'", out, rc, err.msg, message);
    if (!rc) free(ph);
}

int main(void) {
    slex_extsynth_phone *ph = NULL;
    int64_t n = 0;
    slex_error err = {{0}};
    /* festival: marker lines among other output; 6 decimals. */
    const char *fest = "Festival noise\nslex-seg pau 0.220000\nslex-seg hh 0.287141\nslex-seg ax 0.322137\n"
                       "slex-seg pau 3.140863\nslex-done\n";
    CHECK(!slex_extsynth_parse_phones(SLEX_EXTSYNTH_FESTIVAL, fest, &ph, &n, &err), "%s", err.msg);
    CHECK(n == 4, "festival: %lld phones", (long long)n);
    if (n == 4) {
        CHECK(!strcmp(ph[0].name, "pau") && ph[0].end_us == 220000, "festival 0: %s %lld", ph[0].name,
              (long long)ph[0].end_us);
        CHECK(!strcmp(ph[1].name, "hh") && ph[1].end_us == 287141, "festival 1: %s %lld", ph[1].name,
              (long long)ph[1].end_us);
        CHECK(ph[3].end_us == 3140863, "festival 3: %lld", (long long)ph[3].end_us);
    }
    free(ph);
    /* flite -psdur: milliseconds, one line; a line of other words before it is skipped. */
    const char *fl = "some message here\npau:0.220 hh:0.295 ax:0.342 uw:2.966 pau:3.186 \n";
    CHECK(!slex_extsynth_parse_phones(SLEX_EXTSYNTH_FLITE, fl, &ph, &n, &err), "%s", err.msg);
    CHECK(n == 5, "flite: %lld phones", (long long)n);
    if (n == 5)
        CHECK(!strcmp(ph[3].name, "uw") && ph[3].end_us == 2966000 && ph[4].end_us == 3186000, "flite 3: %s %lld",
              ph[3].name, (long long)ph[3].end_us);
    free(ph);
    expect_fail(SLEX_EXTSYNTH_FESTIVAL, "slex-seg pau 0.22\nslex-seg hh 0.3\n", "incomplete (no end marker)");
    expect_fail(SLEX_EXTSYNTH_FESTIVAL, "slex-seg pau 0.22\nslex-seg hh 0.1\nslex-done\n", "before the previous one");
    expect_fail(SLEX_EXTSYNTH_FESTIVAL, "slex-seg pau x\nslex-done\n", "bad end time 'x'");
    expect_fail(SLEX_EXTSYNTH_FESTIVAL, "slex-seg pau\nslex-done\n", "malformed segment line");
    expect_fail(SLEX_EXTSYNTH_FESTIVAL, "slex-done\n", "no segments");
    expect_fail(SLEX_EXTSYNTH_FLITE, "pau:0.2 abcdefghijklmnopq:0.3\n", "too long");
    expect_fail(SLEX_EXTSYNTH_FLITE, "pau:0.2 hh:0.1\n", "before the previous one");
    expect_fail(SLEX_EXTSYNTH_FLITE, "pau:0.2 hh:-1\n", "bad end time");
    expect_fail(SLEX_EXTSYNTH_FLITE, "Error: unknown voice\n", "no segment list");
    return check_finish("test_extsynth");
}
