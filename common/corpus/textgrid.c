#include "corpus/textgrid.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- value stream ---- */

typedef enum { TOK_END, TOK_NUMBER, TOK_STRING, TOK_FLAG } tok_kind;

typedef struct {
    const char *name;
    const char *p, *end;
    int64_t line;
    /* the current value */
    tok_kind kind;
    double number;
    char *text; /* string or flag (malloc'd; the parser takes ownership or frees it) */
    int64_t tok_line;
} lexer;

static int lex_next(lexer *lx, slex_error *err) {
    free(lx->text);
    lx->text = NULL;
    for (;;) {
        if (lx->p >= lx->end) {
            lx->kind = TOK_END;
            lx->tok_line = lx->line;
            return 0;
        }
        char c = *lx->p;
        if (c == '\n') {
            lx->line++;
            lx->p++;
        } else if (c == '!') { /* comment to the end of the line */
            while (lx->p < lx->end && *lx->p != '\n') lx->p++;
        } else if (c == '[') { /* an index such as "item [1]:" */
            while (lx->p < lx->end && *lx->p != ']' && *lx->p != '\n') lx->p++;
            if (lx->p < lx->end && *lx->p == ']') lx->p++;
        } else if (c == '"') {
            lx->tok_line = lx->line;
            size_t cap = 64, n = 0;
            char *s = malloc(cap);
            if (!s) return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", lx->name);
            lx->p++;
            for (;;) {
                if (lx->p >= lx->end) {
                    free(s);
                    return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: string not closed before the end of the file",
                                        lx->name, (long long)lx->tok_line);
                }
                char d = *lx->p++;
                if (d == '"') {
                    if (lx->p < lx->end && *lx->p == '"') lx->p++; /* "" is a quote */
                    else break;
                }
                if (d == '\n') lx->line++;
                if (n + 2 > cap) {
                    char *g = realloc(s, cap *= 2);
                    if (!g) {
                        free(s);
                        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", lx->name);
                    }
                    s = g;
                }
                s[n++] = d;
            }
            s[n] = '\0';
            lx->text = s;
            lx->kind = TOK_STRING;
            return 0;
        } else if (c == '<') {
            lx->tok_line = lx->line;
            const char *q = lx->p + 1;
            while (q < lx->end && *q != '>' && *q != '\n') q++;
            if (q >= lx->end || *q != '>')
                return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: flag '<' not closed by '>'", lx->name,
                                    (long long)lx->line);
            if (!(lx->text = strndup(lx->p + 1, (size_t)(q - lx->p - 1))))
                return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", lx->name);
            lx->p = q + 1;
            lx->kind = TOK_FLAG;
            return 0;
        } else if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.') {
            lx->tok_line = lx->line;
            char buf[64];
            size_t n = 0;
            while (lx->p + n < lx->end && n < sizeof buf - 1 && strchr("0123456789+-.eE", lx->p[n])) n++;
            memcpy(buf, lx->p, n);
            buf[n] = '\0';
            char *e;
            errno = 0;
            double v = strtod(buf, &e);
            if (e != buf + n || errno || !isfinite(v))
                return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: '%s' is not a number", lx->name, (long long)lx->line,
                                    buf);
            lx->p += n;
            lx->number = v;
            lx->kind = TOK_NUMBER;
            return 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') { /* a key: skip the word */
            while (lx->p < lx->end && ((*lx->p >= 'a' && *lx->p <= 'z') || (*lx->p >= 'A' && *lx->p <= 'Z') ||
                                       (*lx->p >= '0' && *lx->p <= '9') || *lx->p == '_'))
                lx->p++;
        } else { /* spaces, '=', ':', '?' */
            lx->p++;
        }
    }
}

static const char *kind_name(tok_kind k) {
    return k == TOK_NUMBER ? "a number" : k == TOK_STRING ? "a string" : k == TOK_FLAG ? "a <flag>" : "the end of the file";
}

static int expect(lexer *lx, tok_kind kind, const char *what, slex_error *err) {
    if (lex_next(lx, err)) return -1;
    if (lx->kind != kind)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: expected %s (%s), found %s", lx->name,
                            (long long)lx->tok_line, kind_name(kind), what, kind_name(lx->kind));
    return 0;
}

static int expect_count(lexer *lx, const char *what, int64_t *out, slex_error *err) {
    if (expect(lx, TOK_NUMBER, what, err)) return -1;
    if (lx->number < 0 || lx->number != floor(lx->number) || lx->number > 1e9)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: %s must be a non-negative integer, found %g", lx->name,
                            (long long)lx->tok_line, what, lx->number);
    *out = (int64_t)lx->number;
    return 0;
}

/* ---- encodings ---- */

/* UTF-16 with BOM -> UTF-8 (malloc'd).  Unpaired surrogates become U+FFFD. */
static char *utf16_to_utf8(const unsigned char *d, size_t len, int big_endian, size_t *out_len) {
    char *out = malloc(len / 2 * 3 + 1);
    if (!out) return NULL;
    size_t n = 0;
    for (size_t i = 2; i + 1 < len; i += 2) {
        uint32_t u = big_endian ? (uint32_t)(d[i] << 8 | d[i + 1]) : (uint32_t)(d[i + 1] << 8 | d[i]);
        if (u >= 0xd800 && u < 0xdc00 && i + 3 < len) {
            uint32_t l = big_endian ? (uint32_t)(d[i + 2] << 8 | d[i + 3]) : (uint32_t)(d[i + 3] << 8 | d[i + 2]);
            if (l >= 0xdc00 && l < 0xe000) {
                u = 0x10000 + ((u - 0xd800) << 10) + (l - 0xdc00);
                i += 2;
            } else {
                u = 0xfffd;
            }
        } else if (u >= 0xd800 && u < 0xe000) {
            u = 0xfffd;
        }
        if (u < 0x80) out[n++] = (char)u;
        else if (u < 0x800) out[n++] = (char)(0xc0 | u >> 6), out[n++] = (char)(0x80 | (u & 0x3f));
        else if (u < 0x10000)
            out[n++] = (char)(0xe0 | u >> 12), out[n++] = (char)(0x80 | ((u >> 6) & 0x3f)),
            out[n++] = (char)(0x80 | (u & 0x3f));
        else
            out[n++] = (char)(0xf0 | u >> 18), out[n++] = (char)(0x80 | ((u >> 12) & 0x3f)),
            out[n++] = (char)(0x80 | ((u >> 6) & 0x3f)), out[n++] = (char)(0x80 | (u & 0x3f));
    }
    out[n] = '\0';
    *out_len = n;
    return out;
}

/* ---- parser ---- */

void slex_textgrid_free(slex_textgrid *tg) {
    if (!tg) return;
    for (int t = 0; t < tg->n_tiers; t++) {
        for (int64_t i = 0; i < tg->tiers[t].n; i++) free(tg->tiers[t].items[i].text);
        free(tg->tiers[t].items);
        free(tg->tiers[t].name);
    }
    free(tg->tiers);
    free(tg->path);
    free(tg);
}

static int parse_tier(lexer *lx, slex_textgrid_tier *tier, slex_error *err) {
    if (expect(lx, TOK_STRING, "tier class", err)) return -1;
    tier->line = lx->tok_line;
    if (!strcmp(lx->text, "IntervalTier")) tier->is_interval = 1;
    else if (!strcmp(lx->text, "TextTier")) tier->is_interval = 0;
    else
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: unknown tier class '%s'", lx->name, (long long)lx->tok_line,
                            lx->text);
    if (expect(lx, TOK_STRING, "tier name", err)) return -1;
    tier->name = lx->text;
    lx->text = NULL;
    if (expect(lx, TOK_NUMBER, "tier xmin", err)) return -1;
    tier->xmin = lx->number;
    if (expect(lx, TOK_NUMBER, "tier xmax", err)) return -1;
    tier->xmax = lx->number;
    int64_t n;
    if (expect_count(lx, tier->is_interval ? "number of intervals" : "number of points", &n, err)) return -1;
    if (!(tier->items = calloc((size_t)(n ? n : 1), sizeof *tier->items)))
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory for %lld items", lx->name, (long long)n);
    for (int64_t i = 0; i < n; i++) {
        slex_textgrid_item *it = &tier->items[i];
        if (expect(lx, TOK_NUMBER, tier->is_interval ? "interval xmin" : "point time", err)) return -1;
        it->line = lx->tok_line;
        it->xmin = it->xmax = lx->number;
        if (tier->is_interval) {
            if (expect(lx, TOK_NUMBER, "interval xmax", err)) return -1;
            it->xmax = lx->number;
        }
        if (expect(lx, TOK_STRING, tier->is_interval ? "interval text" : "point mark", err)) return -1;
        it->text = lx->text;
        lx->text = NULL;
        tier->n++;
    }
    return 0;
}

slex_textgrid *slex_textgrid_parse(const char *data, size_t len, const char *name, slex_error *err) {
    char *converted = NULL;
    const unsigned char *u = (const unsigned char *)data;
    if (len >= 2 && ((u[0] == 0xfe && u[1] == 0xff) || (u[0] == 0xff && u[1] == 0xfe))) {
        if (!(converted = utf16_to_utf8(u, len, u[0] == 0xfe, &len)))
            return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", name), NULL;
        data = converted;
    } else if (len >= 3 && u[0] == 0xef && u[1] == 0xbb && u[2] == 0xbf) {
        data += 3;
        len -= 3;
    }
    slex_textgrid *tg = calloc(1, sizeof *tg);
    lexer lx = {.name = name, .p = data, .end = data + len, .line = 1, .kind = TOK_END, .tok_line = 1};
    if (!tg || !(tg->path = strdup(name))) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", name);
        goto fail;
    }
    if (len >= 12 && !memcmp(data, "ooBinaryFile", 12)) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s: binary TextGrid: save it as a text file in Praat", name);
        goto fail;
    }
    if (expect(&lx, TOK_STRING, "\"ooTextFile\"", err)) goto fail;
    if (strcmp(lx.text, "ooTextFile")) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: not a Praat text file (starts with \"%s\", not \"ooTextFile\")",
                     name, (long long)lx.tok_line, lx.text);
        goto fail;
    }
    if (expect(&lx, TOK_STRING, "object class", err)) goto fail;
    if (strcmp(lx.text, "TextGrid")) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: a Praat \"%s\", not a \"TextGrid\"", name, (long long)lx.tok_line,
                     lx.text);
        goto fail;
    }
    if (expect(&lx, TOK_NUMBER, "xmin", err) || (tg->xmin = lx.number, expect(&lx, TOK_NUMBER, "xmax", err)))
        goto fail;
    tg->xmax = lx.number;
    if (expect(&lx, TOK_FLAG, "<exists> or <absent>", err)) goto fail;
    if (!strcmp(lx.text, "exists")) {
        int64_t n;
        if (expect_count(&lx, "number of tiers", &n, err)) goto fail;
        if (n > 100000) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: %lld tiers is implausible", name, (long long)lx.tok_line,
                         (long long)n);
            goto fail;
        }
        if (!(tg->tiers = calloc((size_t)(n ? n : 1), sizeof *tg->tiers))) {
            slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", name);
            goto fail;
        }
        for (int64_t t = 0; t < n; t++) {
            tg->n_tiers++;
            if (parse_tier(&lx, &tg->tiers[t], err)) goto fail;
        }
    } else if (strcmp(lx.text, "absent")) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: expected <exists> or <absent>, found <%s>", name,
                     (long long)lx.tok_line, lx.text);
        goto fail;
    }
    if (lex_next(&lx, err)) goto fail;
    if (lx.kind != TOK_END) {
        slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: unexpected %s after the last tier", name, (long long)lx.tok_line,
                     kind_name(lx.kind));
        goto fail;
    }
    free(lx.text);
    free(converted);
    return tg;
fail:
    free(lx.text);
    free(converted);
    slex_textgrid_free(tg);
    return NULL;
}

slex_textgrid *slex_textgrid_read(const char *path, slex_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot open TextGrid: %s", path, strerror(errno)), NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *data = malloc(cap);
    while (data && (got = fread(data + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *g = realloc(data, cap *= 2);
            if (!g) free(data);
            data = g;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!data || bad) {
        free(data);
        return slex_fail_as(err, bad ? SLEX_ERR_IO : SLEX_ERR_RESOURCE, "%s: %s", path,
                            bad ? "read error" : "out of memory"),
               NULL;
    }
    slex_textgrid *tg = slex_textgrid_parse(data, n, path, err);
    free(data);
    return tg;
}

const slex_textgrid_tier *slex_textgrid_tier_by_name(const slex_textgrid *tg, const char *name) {
    for (int t = 0; t < tg->n_tiers; t++)
        if (!strcmp(tg->tiers[t].name, name)) return &tg->tiers[t];
    return NULL;
}

/* ---- conversion ---- */

#define T slex_textgrid_options
static const slex_option textgrid_rows[] = {
    {SLEX_OPT_STRING_FIELD(T, tier), .name = "tier", .def_text = "phones", .help = "interval tier with the phones"},
    {SLEX_OPT_INT_FIELD(T, sample_rate), .name = "sample-rate", .flags = SLEX_OPTF_INTERNAL,
     .def = SLEX_ALIGN_SAMPLE_RATE, .min = 1, .max = INT_MAX},
    {SLEX_OPT_DOUBLE_FIELD(T, tolerance_s), .name = "tolerance-s", .flags = SLEX_OPTF_INTERNAL, .def = 0.01, .min = 0,
     .max = DBL_MAX},
    {SLEX_OPT_STRING_FIELD(T, silence), .name = "silence", .def_text = "sil,sp,<eps>",
     .help = "comma-separated labels that mean silence (empty text always does)"},
};
#undef T
const slex_option_table slex_textgrid_option_table = SLEX_OPTION_TABLE(textgrid_rows);

void slex_textgrid_options_default(slex_textgrid_options *o) {
    memset(o, 0, sizeof *o);
    slex_options_defaults(&slex_textgrid_option_table, o);
}

/* 1 when text (already trimmed, len bytes) is in the comma-separated list or empty. */
static int is_silence(const char *list, const char *text, size_t len) {
    if (!len) return 1;
    for (const char *p = list; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        if (l == len && !memcmp(p, text, len)) return 1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

int slex_textgrid_to_segments(const slex_textgrid *tg, const slex_textgrid_options *o, int64_t num_samples,
                              slex_segment **segs_out, char **labels_out, int64_t *n_out, slex_error *err) {
    const char *name = tg->path;
    const slex_textgrid_tier *tier = slex_textgrid_tier_by_name(tg, o->tier);
    if (!tier) {
        char names[512] = "";
        for (int t = 0; t < tg->n_tiers; t++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s'%s'", t ? ", " : "", tg->tiers[t].name);
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s: no tier named '%s' (tiers: %s)", name, o->tier,
                            tg->n_tiers ? names : "none");
    }
    if (!tier->is_interval)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: tier '%s' is a TextTier (points), not an IntervalTier", name,
                            (long long)tier->line, tier->name);
    if (!tier->n)
        return slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: tier '%s' has no intervals", name, (long long)tier->line,
                            tier->name);
    double rate = o->sample_rate;
    slex_segment *segs = malloc((size_t)tier->n * sizeof *segs);
    char *labels = malloc((size_t)tier->n * (SLEX_LABEL_MAX + 1));
    int64_t *offs = malloc((size_t)tier->n * sizeof *offs);
    int64_t n = 0;
    if (!segs || !labels || !offs) {
        slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory", name);
        goto fail;
    }
    int64_t prev_end = 0;
    for (int64_t i = 0; i < tier->n; i++) {
        const slex_textgrid_item *it = &tier->items[i];
        int64_t start = llround(it->xmin * rate), end = llround(it->xmax * rate);
        if (i == tier->n - 1) {
            double audio_s = (double)num_samples / rate;
            if (fabs(it->xmax - audio_s) > o->tolerance_s) {
                slex_fail_as(err, SLEX_ERR_INPUT,
                             "%s:%lld: the last interval ends at %.6f s but the audio lasts %.6f s (%lld samples; "
                             "tolerance %.3f s)",
                             name, (long long)it->line, it->xmax, audio_s, (long long)num_samples, o->tolerance_s);
                goto fail;
            }
            end = num_samples; /* snap within the tolerance */
        }
        if (start != prev_end) {
            if (i == 0)
                slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: the first interval starts at %.6f s, not 0", name,
                             (long long)it->line, it->xmin);
            else
                slex_fail_as(
                    err, SLEX_ERR_INPUT, "%s:%lld: %s: interval starts at %.6f s but the previous one ends at %.6f s",
                    name, (long long)it->line, start > prev_end ? "gap" : "overlap", it->xmin, tier->items[i - 1].xmax);
            goto fail;
        }
        if (end <= start) {
            slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: interval [%.6f, %.6f] s is %s", name, (long long)it->line,
                         it->xmin, it->xmax,
                         it->xmax < it->xmin ? "reversed"
                         : end > num_samples ? "past the end of the audio"
                                             : "shorter than one sample");
            goto fail;
        }
        prev_end = end;
        /* Label: the text without surrounding whitespace. */
        const char *t = it->text;
        size_t len = strlen(t);
        while (len && strchr(" \t\r\n", *t)) t++, len--;
        while (len && strchr(" \t\r\n", t[len - 1])) len--;
        int sil = is_silence(o->silence, t, len);
        if (!sil) {
            if (len > SLEX_LABEL_MAX || memchr(t, ' ', len) || memchr(t, '\t', len) || memchr(t, '\n', len)) {
                slex_fail_as(err, SLEX_ERR_INPUT, "%s:%lld: label \"%.*s\" %s", name, (long long)it->line,
                             (int)(len > 80 ? 80 : len), t,
                             len > SLEX_LABEL_MAX ? "is longer than 63 bytes" : "contains whitespace");
                goto fail;
            }
        }
        if (sil && n && !strcmp(labels + offs[n - 1], SLEX_SILENCE_LABEL)) {
            segs[n - 1].end = end;
            continue;
        }
        offs[n] = n * (SLEX_LABEL_MAX + 1);
        if (sil) snprintf(labels + offs[n], SLEX_LABEL_MAX + 1, "%s", SLEX_SILENCE_LABEL);
        else snprintf(labels + offs[n], SLEX_LABEL_MAX + 1, "%.*s", (int)len, t);
        segs[n++] = (slex_segment){start, end, NULL};
    }
    for (int64_t i = 0; i < n; i++) segs[i].label = labels + offs[i];
    free(offs);
    *segs_out = segs;
    *labels_out = labels;
    *n_out = n;
    return 0;
fail:
    free(segs);
    free(labels);
    free(offs);
    return -1;
}
