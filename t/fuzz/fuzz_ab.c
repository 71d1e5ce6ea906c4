/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Fuzz target: loyalty_ab_test_parse, loyalty_ab_assign and the report
 * (loyalty_ab_report_field, loyalty_ab_stats, loyalty_ab_report_json,
 * loyalty_ab_report_text).
 *
 * Input: the first line is a spec, split on single blanks (so empty
 * words happen): the test name, then the words of the directive.  Every
 * further line is "field=value", split at the first '=', one HGETALL
 * pair.  Every word, field and value is passed in a copy of its exact
 * size, so ASan sees any read past it.
 *
 * Parsing: on success the spec is what the rules allow (valid, unique
 * variants, shares up to 10000, "*" last and taking the rest) and
 * parses again, equal, from words printed back from it; assignment
 * follows the ranges.  On failure the message is one printable line,
 * and a shorter buffer gets a NUL-terminated prefix of it.
 *
 * The report: rows unique and valid, configured first; the JSON parses
 * with jansson, has every row with numbers or null; the text has a
 * title, a header and one line per row.
 */


#include "fuzz.h"
#include "loyalty_ab.h"

#include <math.h>

#include <jansson.h>


#define FUZZ_WORDS_MAX  64
#define FUZZ_ERR_LEN    256


static size_t fuzz_split(const uint8_t *data, size_t size, char **words,
    size_t *lens);
static void fuzz_parsed(const loyalty_ab_test_t *t, char **words,
    size_t *lens, size_t nwords);
static void fuzz_failed(const char *err, const char *small,
    size_t small_len);
static void fuzz_assign(const loyalty_ab_test_t *t, const uint8_t *data,
    size_t size);
static void fuzz_report(loyalty_ab_report_t *rep, const uint8_t *data,
    size_t size, size_t nconfigured);
static void fuzz_json(const loyalty_ab_report_t *rep);
static void fuzz_text(const loyalty_ab_report_t *rep);
static void fuzz_reports(const loyalty_ab_report_t *reps);
static void fuzz_validators(const char *field, size_t flen,
    const char *value, size_t vlen);
static char *fuzz_copy(const void *p, size_t n);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                   rc, rc2;
    char                 *words[FUZZ_WORDS_MAX], *small;
    char                  err[FUZZ_ERR_LEN];
    size_t                i, nwords, lens[FUZZ_WORDS_MAX], line, small_len;
    loyalty_ab_test_t     t;
    loyalty_ab_report_t   rep, reps[2];

    line = 0;

    while (line < size && data[line] != '\n') {
        line++;
    }

    nwords = fuzz_split(data, line, words, lens);

    memset(err, 0, sizeof(err));

    rc = loyalty_ab_test_parse(&t, words[0], lens[0],
                               (const char *const *) words + 1, lens + 1,
                               nwords - 1, err, sizeof(err));

    FUZZ_CHECK(rc == 0 || rc == -1);

    /* the same with a short error buffer of its exact size */

    small_len = 1 + size % 24;
    small = malloc(small_len);
    FUZZ_CHECK(small != NULL);
    memset(small, 0xa5, small_len);

    rc2 = loyalty_ab_test_parse(&t, words[0], lens[0],
                                (const char *const *) words + 1, lens + 1,
                                nwords - 1, small, small_len);

    FUZZ_CHECK(rc2 == rc);

    if (rc == 0) {
        fuzz_parsed(&t, words, lens, nwords);
        fuzz_assign(&t, data, size);

    } else {
        fuzz_failed(err, small, small_len);

        memset(&t, 0, sizeof(t));
        memcpy(t.name, "fuzz", 5);
    }

    free(small);

    for (i = 0; i < nwords; i++) {
        free(words[i]);
    }

    loyalty_ab_report_init(&rep, &t);
    FUZZ_CHECK(rep.nrows == t.nvariants);

    if (line < size) {
        fuzz_report(&rep, data + line + 1, size - line - 1, t.nvariants);
    }

    loyalty_ab_stats(&rep);

    for (i = 0; i < rep.nrows; i++) {
        FUZZ_CHECK(isfinite(rep.rows[i].conversion_rate));
        FUZZ_CHECK(isfinite(rep.rows[i].revenue_per_exposure));
        FUZZ_CHECK(i > 0 || (!rep.rows[i].has_uplift
                             && !rep.rows[i].has_p_value));
        FUZZ_CHECK(!rep.rows[i].has_uplift || isfinite(rep.rows[i].uplift));
        FUZZ_CHECK(!rep.rows[i].has_p_value
                   || (rep.rows[i].p_value >= 0
                       && rep.rows[i].p_value <= 1));
    }

    fuzz_json(&rep);
    fuzz_text(&rep);

    /* two tests: a copy under a name no spec can have */

    reps[0] = rep;
    reps[1] = rep;
    memcpy(reps[1].name, "-copy", 6);

    fuzz_reports(reps);

    return 0;
}


/* words of the spec line; at least one, the name, maybe empty */

static size_t
fuzz_split(const uint8_t *data, size_t size, char **words, size_t *lens)
{
    size_t  n, start, i;

    n = 0;
    start = 0;

    for (i = 0; i <= size && n < FUZZ_WORDS_MAX; i++) {
        if (i == size || data[i] == ' ') {
            words[n] = fuzz_copy(data + start, i - start);
            lens[n] = i - start;
            n++;
            start = i + 1;
        }
    }

    return n;
}


static void
fuzz_parsed(const loyalty_ab_test_t *t, char **words, size_t *lens,
    size_t nwords)
{
    int                 rc;
    char                buf[FUZZ_WORDS_MAX][16], err[FUZZ_ERR_LEN];
    char               *w[FUZZ_WORDS_MAX];
    size_t              i, j, l[FUZZ_WORDS_MAX];
    unsigned            sum;
    loyalty_ab_test_t   again;

    FUZZ_CHECK(nwords >= 3 && nwords % 2 == 1);
    FUZZ_CHECK(t->nvariants == (nwords - 1) / 2);
    FUZZ_CHECK(t->nvariants <= LOYALTY_AB_VARIANTS_MAX);
    FUZZ_CHECK(strlen(t->name) == lens[0]
               && memcmp(t->name, words[0], lens[0]) == 0);
    FUZZ_CHECK(loyalty_ab_name_valid(t->name, strlen(t->name)));

    sum = 0;

    for (i = 0; i < t->nvariants; i++) {
        FUZZ_CHECK(loyalty_ab_variant_valid(t->variants[i].name,
                                            strlen(t->variants[i].name)));
        FUZZ_CHECK(strlen(t->variants[i].name) == lens[2 + 2 * i]
                   && memcmp(t->variants[i].name, words[2 + 2 * i],
                             lens[2 + 2 * i]) == 0);
        FUZZ_CHECK(!t->variants[i].rest || i + 1 == t->nvariants);

        for (j = 0; j < i; j++) {
            FUZZ_CHECK(strcmp(t->variants[i].name, t->variants[j].name)
                       != 0);
        }

        sum += t->variants[i].share;
    }

    FUZZ_CHECK(sum <= LOYALTY_AB_BUCKETS);
    FUZZ_CHECK(!t->variants[t->nvariants - 1].rest
               || sum == LOYALTY_AB_BUCKETS);

    /* printed back and parsed again: the same spec */

    for (i = 0; i < t->nvariants; i++) {
        if (t->variants[i].rest) {
            snprintf(buf[i], sizeof(buf[i]), "*");

        } else {
            snprintf(buf[i], sizeof(buf[i]), "%u.%02u%%",
                     t->variants[i].share / 100, t->variants[i].share % 100);
        }

        w[2 * i] = buf[i];
        l[2 * i] = strlen(buf[i]);
        w[2 * i + 1] = (char *) t->variants[i].name;
        l[2 * i + 1] = strlen(t->variants[i].name);
    }

    rc = loyalty_ab_test_parse(&again, t->name, strlen(t->name),
                               (const char *const *) w, l,
                               2 * t->nvariants, err, sizeof(err));

    FUZZ_CHECK(rc == 0 && loyalty_ab_test_equal(t, &again));
    FUZZ_CHECK(loyalty_ab_test_equal(t, t));
}


static void
fuzz_failed(const char *err, const char *small, size_t small_len)
{
    size_t  i, len;

    len = strlen(err);

    FUZZ_CHECK(len > 0 && len < FUZZ_ERR_LEN - 1);

    for (i = 0; i < len; i++) {
        FUZZ_CHECK(err[i] >= 0x20 && err[i] < 0x7f);
    }

    FUZZ_CHECK(memchr(small, '\0', small_len) != NULL);
    FUZZ_CHECK(strncmp(small, err, strlen(small)) == 0);
    FUZZ_CHECK(strlen(small) == (len < small_len ? len : small_len - 1));
}


/* keys from the input: the variant follows the ranges of the buckets */

static void
fuzz_assign(const loyalty_ab_test_t *t, const uint8_t *data, size_t size)
{
    int       v;
    char     *key;
    size_t    i, klen;
    unsigned  b, end;

    /* up to 600 bytes: beyond 256 with the name, the key is streamed */

    for (klen = 0; klen <= size && klen < 600; klen += 1 + klen / 2) {
        key = fuzz_copy(data + size - klen, klen);

        v = loyalty_ab_assign(t, (unsigned char *) key, klen);

        if (klen == 0) {
            FUZZ_CHECK(v == -1);
            free(key);
            continue;
        }

        b = loyalty_ab_bucket(t->name, strlen(t->name),
                              (unsigned char *) key, klen);

        FUZZ_CHECK(b < LOYALTY_AB_BUCKETS);

        end = 0;

        for (i = 0; i < t->nvariants; i++) {
            end += t->variants[i].share;

            if (b < end) {
                break;
            }
        }

        FUZZ_CHECK(v == (i < t->nvariants ? (int) i : -1));
        FUZZ_CHECK(v >= 0 || !t->variants[t->nvariants - 1].rest);

        free(key);
    }
}


static void
fuzz_report(loyalty_ab_report_t *rep, const uint8_t *data, size_t size,
    size_t nconfigured)
{
    int              rc;
    char            *field, *value;
    size_t           i, j, eol, eq, flen, vlen, before;
    const uint8_t   *p, *end;

    p = data;
    end = data + size;

    while (p < end) {
        for (eol = 0; p + eol < end && p[eol] != '\n'; eol++) {
            /* void */
        }

        for (eq = 0; eq < eol && p[eq] != '='; eq++) {
            /* void */
        }

        flen = eq;
        vlen = eq < eol ? eol - eq - 1 : 0;

        field = fuzz_copy(p, flen);
        value = fuzz_copy(p + eq + (eq < eol), vlen);

        fuzz_validators(field, flen, value, vlen);

        before = rep->nrows;

        rc = loyalty_ab_report_field(rep, field, flen, value, vlen);

        FUZZ_CHECK(rc == 0 || rc == 1);
        FUZZ_CHECK(rep->nrows == before
                   || (rc == 1 && rep->nrows == before + 1));

        if (rc == 1) {

            /* the variant is the field up to its last ':' */

            for (i = flen; field[i - 1] != ':'; i--) {
                /* void */
            }

            for (j = 0; j < rep->nrows; j++) {
                if (strlen(rep->rows[j].name) == i - 1
                    && memcmp(rep->rows[j].name, field, i - 1) == 0)
                {
                    break;
                }
            }

            FUZZ_CHECK(j < rep->nrows);
        }

        free(field);
        free(value);

        p += eol + 1;
    }

    FUZZ_CHECK(rep->nrows <= LOYALTY_AB_ROWS_MAX);

    for (i = 0; i < rep->nrows; i++) {
        FUZZ_CHECK(!rep->rows[i].configured == (i >= nconfigured));
        FUZZ_CHECK(loyalty_ab_variant_valid(rep->rows[i].name,
                                            strlen(rep->rows[i].name)));
        FUZZ_CHECK(rep->rows[i].exposures <= INT64_MAX
                   && rep->rows[i].conversions <= INT64_MAX);
        FUZZ_CHECK(isfinite(rep->rows[i].revenue));

        for (j = 0; j < i; j++) {
            FUZZ_CHECK(strcmp(rep->rows[i].name, rep->rows[j].name) != 0);
        }
    }
}


static void
fuzz_json(const loyalty_ab_report_t *rep)
{
    char          *s;
    size_t         len, i;
    json_t        *j, *test, *vars, *v, *m;
    const char    *key;
    json_error_t   error;

    s = loyalty_ab_report_json(rep, 1, &len);
    FUZZ_CHECK(s != NULL && strlen(s) == len);

    j = json_loadb(s, len, JSON_REJECT_DUPLICATES, &error);
    FUZZ_CHECK(j != NULL);

    test = json_object_get(json_object_get(j, "tests"), rep->name);
    vars = json_object_get(test, "variants");

    FUZZ_CHECK(json_is_object(vars) && json_object_size(vars) == rep->nrows);
    FUZZ_CHECK(rep->nrows == 0
               || strcmp(json_string_value(json_object_get(test,
                                                           "baseline")),
                         rep->rows[0].name) == 0);

    for (i = 0; i < rep->nrows; i++) {
        v = json_object_get(vars, rep->rows[i].name);
        FUZZ_CHECK(json_is_object(v) && json_object_size(v) == 8);

        json_object_foreach(v, key, m) {
            FUZZ_CHECK(json_is_number(m) || json_is_null(m));
        }

        FUZZ_CHECK(json_is_integer(json_object_get(v, "exposures"))
                   && (uint64_t) json_integer_value(json_object_get(v,
                                                    "exposures"))
                      == rep->rows[i].exposures);
    }

    json_decref(j);
    free(s);
}


static void
fuzz_text(const loyalty_ab_report_t *rep)
{
    char    *s;
    size_t   len, i, nl;

    s = loyalty_ab_report_text(rep, 1, &len);
    FUZZ_CHECK(s != NULL && strlen(s) == len && len > 0 && s[len - 1] == '\n');

    nl = 0;

    for (i = 0; i < len; i++) {
        nl += (s[i] == '\n');
        FUZZ_CHECK(s[i] == '\n' || (s[i] >= 0x20 && s[i] < 0x7f));
        FUZZ_CHECK(s[i] != '\n' || i == 0 || s[i - 1] != ' ');
    }

    FUZZ_CHECK(nl == 2 + rep->nrows);

    free(s);
}


static void
fuzz_reports(const loyalty_ab_report_t *reps)
{
    char          *s, *t;
    size_t         len, tlen;
    json_t        *j, *tests;
    json_error_t   error;

    s = loyalty_ab_report_json(reps, 2, &len);
    FUZZ_CHECK(s != NULL && strlen(s) == len);

    j = json_loadb(s, len, JSON_REJECT_DUPLICATES, &error);
    FUZZ_CHECK(j != NULL);

    tests = json_object_get(j, "tests");
    FUZZ_CHECK(json_object_size(tests) == 2);
    FUZZ_CHECK(json_equal(json_object_get(tests, reps[0].name),
                          json_object_get(tests, "-copy")));

    json_decref(j);
    free(s);

    /* the second table follows the first after a blank line */

    s = loyalty_ab_report_text(reps, 1, &len);
    t = loyalty_ab_report_text(reps, 2, &tlen);
    FUZZ_CHECK(s != NULL && t != NULL && tlen > len + 1);
    FUZZ_CHECK(memcmp(s, t, len) == 0 && t[len] == '\n'
               && strncmp(t + len + 1, "test -copy ", 11) == 0);

    free(t);
    free(s);
}


/* the order validators on whatever the lines hold */

static void
fuzz_validators(const char *field, size_t flen, const char *value,
    size_t vlen)
{
    char    *c;
    size_t   i;
    double   d;

    if (loyalty_ab_order_valid(field, flen)) {
        FUZZ_CHECK(flen >= 1 && flen <= 64);

        for (i = 0; i < flen; i++) {
            FUZZ_CHECK(field[i] != '\0' && strchr("abcdefghijklmnopqrstuvwxyz"
                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-", field[i])
                       != NULL);
        }
    }

    if (loyalty_ab_value_valid(value, vlen)) {
        c = malloc(vlen + 1);
        FUZZ_CHECK(c != NULL);
        memcpy(c, value, vlen);
        c[vlen] = '\0';

        d = strtod(c, NULL);
        FUZZ_CHECK(vlen <= 15 && d >= 0 && d < 1e12);
        FUZZ_CHECK(strspn(c, "0123456789.") == vlen && c[vlen - 1] != '.');

        free(c);
    }
}


static char *
fuzz_copy(const void *p, size_t n)
{
    char  *c;

    c = malloc(n ? n : 1);
    FUZZ_CHECK(c != NULL);
    memcpy(c, p, n);

    return c;
}
