/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Unit tests of lib/loyalty_ab.c: spec parsing and its error messages,
 * the bucket against vectors from Python's hashlib, the distribution
 * and independence of assignments, the validators, the report fields,
 * the statistics against values from Python's math.erfc, the JSON
 * (parsed back with jansson) and the text table (column alignment).
 *
 * Results are computed first, then checked.
 */


#include "tap.h"
#include "loyalty_ab.h"

#include <math.h>
#include <stdlib.h>

#include <jansson.h>


#define WORDS_MAX    64
#define LINES_MAX    128
#define CELLS_MAX    16
#define KEYS         100000
#define CHI2_999_4   18.47          /* chi-square, 4 dof, 99.9% */


typedef struct {
    size_t       n;
    const char  *w[WORDS_MAX];
    size_t       len[WORDS_MAX];
    char         buf[1024];
} words_t;


typedef struct {
    size_t       n;
    const char  *line[LINES_MAX];
    char        *buf;
} lines_t;


static void split(words_t *ws, const char *spec);
static int parse(loyalty_ab_test_t *t, const char *name, const char *spec,
    char *err, size_t errlen);
static int fails(const char *name, const char *spec, const char *expect,
    char *err, size_t errlen);
static int percent_is(const char *s, int valid, unsigned expect);
static int variant_is(const loyalty_ab_test_t *t, size_t i,
    const char *name, unsigned share, int rest);
static unsigned bucket(const char *name, const char *key);
static size_t cells(const char *line, size_t *start, size_t *len);
static int table_aligned(const lines_t *ls, size_t first, size_t last);
static const char *cell_of(const lines_t *ls, const char *row, size_t col,
    char *buf, size_t size);
static void lines(lines_t *ls, const char *text, size_t len);
static double num(json_t *v);
static void test_percent(void);
static void test_parse(void);
static void test_parse_errors(void);
static void test_equal(void);
static void test_bucket(void);
static void test_assign(void);
static void test_validators(void);
static void test_report_field(void);
static void test_stats(void);
static void test_json(void);
static void test_text(void);
static void sample(loyalty_ab_report_t *rep);


static void
split(words_t *ws, const char *spec)
{
    char  *p, *sp;

    ws->n = 0;
    snprintf(ws->buf, sizeof(ws->buf), "%s", spec);

    if (ws->buf[0] == '\0') {
        return;
    }

    for (p = ws->buf; ws->n < WORDS_MAX; p = sp + 1) {
        sp = strchr(p, ' ');

        ws->w[ws->n] = p;
        ws->len[ws->n] = sp ? (size_t) (sp - p) : strlen(p);
        ws->n++;

        if (sp == NULL) {
            break;
        }
    }
}


static int
parse(loyalty_ab_test_t *t, const char *name, const char *spec, char *err,
    size_t errlen)
{
    words_t  ws;

    split(&ws, spec);

    return loyalty_ab_test_parse(t, name, strlen(name), ws.w, ws.len, ws.n,
                                 err, errlen);
}


/* -1, t untouched, one line in err that contains expect */

static int
fails(const char *name, const char *spec, const char *expect, char *err,
    size_t errlen)
{
    int                rc;
    loyalty_ab_test_t  t, before;

    memset(&t, 0x5a, sizeof(t));
    before = t;
    err[0] = '\0';

    rc = parse(&t, name, spec, err, errlen);

    return rc == -1 && memcmp(&t, &before, sizeof(t)) == 0
           && strstr(err, expect) != NULL && strchr(err, '\n') == NULL;
}


static int
percent_is(const char *s, int valid, unsigned expect)
{
    int       rc;
    unsigned  h;

    h = 77777;
    rc = loyalty_ab_parse_percent(s, strlen(s), &h);

    if (!valid) {
        return rc == 0 && h == 77777;
    }

    return rc == 1 && h == expect;
}


static int
variant_is(const loyalty_ab_test_t *t, size_t i, const char *name,
    unsigned share, int rest)
{
    return i < t->nvariants && strcmp(t->variants[i].name, name) == 0
           && t->variants[i].share == share && !t->variants[i].rest == !rest;
}


static unsigned
bucket(const char *name, const char *key)
{
    return loyalty_ab_bucket(name, strlen(name), (const unsigned char *) key,
                             strlen(key));
}


static void
test_percent(void)
{
    ok(percent_is("10%", 1, 1000), "10%%");
    ok(percent_is("12.5%", 1, 1250), "12.5%%");
    ok(percent_is("33.33%", 1, 3333), "33.33%%");
    ok(percent_is("0%", 1, 0), "0%%");
    ok(percent_is("0.0%", 1, 0), "0.0%%");
    ok(percent_is("0.05%", 1, 5), "0.05%%: one bucket is 0.01%%");
    ok(percent_is("0.5%", 1, 50), "0.5%%");
    ok(percent_is("100%", 1, 10000), "100%%");
    ok(percent_is("100.00%", 1, 10000), "100.00%%");
    ok(percent_is("100.0%", 1, 10000), "100.0%%");
    ok(percent_is("007%", 1, 700), "leading zeros");
    ok(percent_is("0000000000000000000000050%", 1, 5000),
       "many leading zeros do not overflow");

    ok(percent_is("", 0, 0), "empty");
    ok(percent_is("%", 0, 0), "only %%");
    ok(percent_is("10", 0, 0), "no %%");
    ok(percent_is(".5%", 0, 0), "no integer digits");
    ok(percent_is("5.%", 0, 0), "no decimals after the dot");
    ok(percent_is("12.345%", 0, 0), "three decimals");
    ok(percent_is("100.01%", 0, 0), "100.01%%");
    ok(percent_is("101%", 0, 0), "101%%");
    ok(percent_is("99999999999999999999%", 0, 0), "huge, no overflow");
    ok(percent_is("-1%", 0, 0), "sign");
    ok(percent_is("+1%", 0, 0), "plus sign");
    ok(percent_is("1e1%", 0, 0), "exponent");
    ok(percent_is(" 10%", 0, 0), "leading blank");
    ok(percent_is("10 %", 0, 0), "inner blank");
    ok(percent_is("10%%", 0, 0), "two %%");
    ok(percent_is("1,5%", 0, 0), "comma");
    ok(percent_is("1.5.5%", 0, 0), "two dots");
    ok(percent_is("1.a%", 0, 0), "letter as decimal");
    ok(percent_is("1.5a%", 0, 0), "letter as second decimal");
    ok(percent_is("*", 0, 0), "\"*\" is not a percentage");
    ok(loyalty_ab_parse_percent("10%", 2, &(unsigned) { 0 }) == 0,
       "length honoured: \"10\" of \"10%%\"");
}


static void
test_parse(void)
{
    int                rc;
    char               err[256], spec[1024], name[40];
    size_t             i, off;
    unsigned           sum;
    loyalty_ab_test_t  t;

    rc = parse(&t, "badge", "10% off 45% a * b", err, sizeof(err));
    ok(rc == 0 && strcmp(t.name, "badge") == 0 && t.nvariants == 3,
       "\"10%% off 45%% a * b\" parses");
    ok(variant_is(&t, 0, "off", 1000, 0) && variant_is(&t, 1, "a", 4500, 0)
       && variant_is(&t, 2, "b", 4500, 1),
       "off 1000, a 4500, b the rest 4500");

    rc = parse(&t, "ship", "50% a 50% b", err, sizeof(err));
    ok(rc == 0 && t.nvariants == 2 && variant_is(&t, 0, "a", 5000, 0)
       && variant_is(&t, 1, "b", 5000, 0), "sum exactly 100%%, no \"*\"");

    rc = parse(&t, "t", "12.5% a 33.33% b 0% c", err, sizeof(err));
    ok(rc == 0 && t.nvariants == 3 && variant_is(&t, 0, "a", 1250, 0)
       && variant_is(&t, 1, "b", 3333, 0) && variant_is(&t, 2, "c", 0, 0),
       "decimals and 0%%, sum below 100%%");

    rc = parse(&t, "t", "100% all", err, sizeof(err));
    ok(rc == 0 && t.nvariants == 1 && variant_is(&t, 0, "all", 10000, 0),
       "100%% in one variant");

    rc = parse(&t, "t", "100.00% all", err, sizeof(err));
    ok(rc == 0 && variant_is(&t, 0, "all", 10000, 0), "100.00%%");

    rc = parse(&t, "t", "* only", err, sizeof(err));
    ok(rc == 0 && t.nvariants == 1 && variant_is(&t, 0, "only", 10000, 1),
       "\"*\" alone takes everything");

    rc = parse(&t, "t", "60% a 40% b * c", err, sizeof(err));
    ok(rc == 0 && t.nvariants == 3 && variant_is(&t, 2, "c", 0, 1),
       "\"*\" after 100%% gets a share of 0");

    rc = parse(&t, "t", "33.33% a 33.33% b * c", err, sizeof(err));
    ok(rc == 0 && variant_is(&t, 2, "c", 3334, 1), "\"*\" gets 33.34%%");

    rc = parse(&t, "t", "0% a * b", err, sizeof(err));
    ok(rc == 0 && variant_is(&t, 0, "a", 0, 0)
       && variant_is(&t, 1, "b", 10000, 1), "0%% then \"*\"");

    rc = parse(&t, "Test_2", "10% new-look 10% Old_Look", err, sizeof(err));
    ok(rc == 0 && variant_is(&t, 0, "new-look", 1000, 0)
       && variant_is(&t, 1, "Old_Look", 1000, 0),
       "variants with '-', '_', capitals");

    /* the longest names */

    memset(name, 'n', 32);
    name[32] = '\0';
    snprintf(spec, sizeof(spec), "50%% %.32s", name);
    rc = parse(&t, name, spec, err, sizeof(err));
    ok(rc == 0 && strlen(t.name) == 32 && strlen(t.variants[0].name) == 32,
       "32-character test and variant names");

    /* 16 variants, 6.25% each: 100% */

    off = 0;

    for (i = 0; i < LOYALTY_AB_VARIANTS_MAX; i++) {
        off += snprintf(spec + off, sizeof(spec) - off, "%s6.25%% v%d",
                        i ? " " : "", (int) i);
    }

    rc = parse(&t, "many", spec, err, sizeof(err));
    sum = 0;

    for (i = 0; rc == 0 && i < t.nvariants; i++) {
        sum += t.variants[i].share;
    }

    ok(rc == 0 && t.nvariants == 16 && sum == 10000
       && variant_is(&t, 15, "v15", 625, 0),
       "16 variants of 6.25%% (%s)", rc ? err : "ok");

    /* 15 pairs, then "*" */

    off = 0;

    for (i = 0; i < LOYALTY_AB_VARIANTS_MAX - 1; i++) {
        off += snprintf(spec + off, sizeof(spec) - off, "1%% v%d ", (int) i);
    }

    snprintf(spec + off, sizeof(spec) - off, "* rest");
    rc = parse(&t, "many", spec, err, sizeof(err));
    ok(rc == 0 && t.nvariants == 16 && variant_is(&t, 15, "rest", 8500, 1),
       "15 pairs and \"*\"");

    /* err is not touched on success */

    strcpy(err, "untouched");
    rc = parse(&t, "t", "10% a", err, sizeof(err));
    ok(rc == 0 && strcmp(err, "untouched") == 0, "err untouched on success");
}


static void
test_parse_errors(void)
{
    int                rc;
    char               err[256], small[12], full[256], spec[512], name[40];
    size_t             i, off;
    const char        *w[2];
    size_t             len[2];
    loyalty_ab_test_t  t;

    ok(fails("a b", "10% a", "invalid test name \"a b\"", err, sizeof(err)),
       "test name with a blank: %s", err);
    ok(fails("", "10% a", "invalid test name \"\"", err, sizeof(err)),
       "empty test name: %s", err);
    ok(fails("new-look", "10% a", "invalid test name \"new-look\"", err,
             sizeof(err)), "'-' not in test names: %s", err);
    ok(fails("x:y", "10% a", "invalid test name \"x:y\"", err, sizeof(err)),
       "':' not in test names: %s", err);
    memset(name, 'n', 33);
    name[33] = '\0';
    ok(fails(name, "10% a", "invalid test name \"nnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
             "nnnn\"", err, sizeof(err)), "33-character test name: %s", err);

    ok(fails("t", "", "no variants", err, sizeof(err)),
       "no words: %s", err);

    ok(fails("t", "12.345% a", "", err, sizeof(err))
       && strcmp(err, "invalid percentage \"12.345%\" (at most two "
                 "decimals)") == 0, "three decimals: %s", err);
    ok(fails("t", "150% a", "invalid percentage \"150%\" (more than 100%)",
             err, sizeof(err)), "150%%: %s", err);
    ok(fails("t", "100.01% a", "invalid percentage \"100.01%\" (more than "
             "100%)", err, sizeof(err)), "100.01%%: %s", err);
    ok(fails("t", "10 a", "invalid percentage \"10\" (missing \"%\")", err,
             sizeof(err)), "no %%: %s", err);
    ok(fails("t", "abc a", "invalid percentage \"abc\"", err, sizeof(err)),
       "a word as percentage: %s", err);
    ok(fails("t", "10% a 5.% b", "invalid percentage \"5.%\"", err,
             sizeof(err)), "second percentage bad: %s", err);
    ok(fails("t", "10% a b", "invalid percentage \"b\"", err, sizeof(err)),
       "odd words, the last is no percentage: %s", err);
    ok(fails("t", "10% a 20%", "missing variant name after \"20%\"", err,
             sizeof(err)), "odd words, percentage without variant: %s", err);
    ok(fails("t", "*", "missing variant name after \"*\"", err,
             sizeof(err)), "\"*\" without variant: %s", err);

    ok(fails("t", "* a 10% b", "", err, sizeof(err))
       && strcmp(err, "\"*\" must be the last pair") == 0,
       "\"*\" first: %s", err);
    ok(fails("t", "* a * b", "\"*\" must be the last pair", err,
             sizeof(err)), "\"*\" twice: %s", err);

    ok(fails("t", "10% a 20% a", "", err, sizeof(err))
       && strcmp(err, "duplicate variant \"a\"") == 0,
       "duplicate variant: %s", err);
    ok(fails("t", "10% a 20% b * a", "duplicate variant \"a\"", err,
             sizeof(err)), "duplicate \"*\" variant: %s", err);
    rc = parse(&t, "t", "10% a 20% A", err, sizeof(err));
    ok(rc == 0 && t.nvariants == 2, "variants are case-sensitive");

    ok(fails("t", "10% a:b", "invalid variant name \"a:b\"", err,
             sizeof(err)), "':' in a variant: %s", err);
    ok(fails("t", "10% a 10% *", "invalid variant name \"*\"", err,
             sizeof(err)), "\"*\" as variant: %s", err);
    ok(fails("t", "10% a 10% 20%", "invalid variant name \"20%\"", err,
             sizeof(err)), "percentage as variant: %s", err);
    ok(fails("t", "10% a 20% ", "invalid variant name \"\"", err,
             sizeof(err)), "empty variant: %s", err);
    ok(fails("t", "10% aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "invalid variant name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
             err, sizeof(err)), "33-character variant: %s", err);

    /* a quoted nginx word may hold a blank */

    w[0] = "10%";
    len[0] = 3;
    w[1] = "a b";
    len[1] = 3;
    rc = loyalty_ab_test_parse(&t, "t", 1, w, len, 2, err, sizeof(err));
    ok(rc == -1 && strstr(err, "invalid variant name \"a b\"") != NULL,
       "variant with a blank: %s", err);

    ok(fails("t", "60% a 50.5% b", "", err, sizeof(err))
       && strcmp(err, "percentages add up to 110.5%, more than 100%") == 0,
       "sum 110.5%%: %s", err);
    ok(fails("t", "60% a 50% b * c", "percentages add up to 110%, more "
             "than 100%", err, sizeof(err)), "sum 110%% with \"*\": %s", err);
    ok(fails("t", "99.99% a 0.03% b", "percentages add up to 100.02%", err,
             sizeof(err)), "sum 100.02%%: %s", err);
    ok(fails("t", "100% a 100% b 100% c", "add up to 300%", err,
             sizeof(err)), "sum 300%%: %s", err);

    off = 0;

    for (i = 0; i <= LOYALTY_AB_VARIANTS_MAX; i++) {
        off += snprintf(spec + off, sizeof(spec) - off, "%s1%% v%d",
                        i ? " " : "", (int) i);
    }

    ok(fails("t", spec, "too many variants at \"v16\" (at most 16)", err,
             sizeof(err)), "17 variants: %s", err);

    /* hostile words stay on one line, quoted and cut */

    ok(fails("t", "1\n0% a", "invalid percentage \"1\\x0a0%\"", err,
             sizeof(err)), "newline escaped: %s", err);
    ok(fails("t", "10\"% a", "invalid percentage \"10\\\"%\"", err,
             sizeof(err)), "quote escaped: %s", err);

    memset(spec, 'x', 300);
    memcpy(spec + 300, " a", 3);
    rc = fails("t", spec, "invalid percentage \"xxxxxxxxxxxxxxxxxxxxxxxxxxxx"
               "xxxxxxxxxxxx...\"", err, sizeof(err));
    ok(rc && strlen(err) < 160, "long word cut: %s", err);

    w[0] = "\xff\x01%";
    len[0] = 3;
    w[1] = "a";
    len[1] = 1;
    rc = loyalty_ab_test_parse(&t, "t", 1, w, len, 2, err, sizeof(err));
    ok(rc == -1 && strstr(err, "\"\\xff\\x01%\"") != NULL,
       "bytes escaped: %s", err);

    w[0] = "10%\0";
    len[0] = 4;
    rc = loyalty_ab_test_parse(&t, "t", 1, w, len, 2, err, sizeof(err));
    ok(rc == -1 && strstr(err, "\"10%\\x00\"") != NULL,
       "NUL inside a word: %s", err);

    /* truncation */

    (void) parse(&t, "t", "10% a 20% a", full, sizeof(full));
    memset(small, 'z', sizeof(small));
    rc = parse(&t, "t", "10% a 20% a", small, sizeof(small));
    ok(rc == -1 && strlen(small) == sizeof(small) - 1
       && strncmp(small, full, sizeof(small) - 1) == 0,
       "message truncated to errlen: \"%s\"", small);

    memset(small, 'z', sizeof(small));
    rc = parse(&t, "t", "10% a 20% a", small, 1);
    ok(rc == -1 && small[0] == '\0' && small[1] == 'z', "errlen 1");

    rc = parse(&t, "t", "10% a 20% a", NULL, 0);
    ok(rc == -1, "errlen 0, err NULL");
}


static void
test_equal(void)
{
    int                eq[7];
    char               err[256];
    loyalty_ab_test_t  a, b;

    (void) parse(&a, "t", "10% off 45% a * b", err, sizeof(err));
    (void) parse(&b, "t", "10% off 45% a * b", err, sizeof(err));
    eq[0] = loyalty_ab_test_equal(&a, &b);

    (void) parse(&b, "u", "10% off 45% a * b", err, sizeof(err));
    eq[1] = loyalty_ab_test_equal(&a, &b);

    (void) parse(&b, "t", "10% off 45% a 45% b", err, sizeof(err));
    eq[2] = loyalty_ab_test_equal(&a, &b);

    (void) parse(&b, "t", "10% off 45% b * a", err, sizeof(err));
    eq[3] = loyalty_ab_test_equal(&a, &b);

    (void) parse(&b, "t", "10% off 40% a * b", err, sizeof(err));
    eq[4] = loyalty_ab_test_equal(&a, &b);

    (void) parse(&b, "t", "10% off 45% a", err, sizeof(err));
    eq[5] = loyalty_ab_test_equal(&a, &b);

    (void) parse(&b, "t", "10% off 45% a * c", err, sizeof(err));
    eq[6] = loyalty_ab_test_equal(&a, &b);

    ok(eq[0], "same spec: equal");
    ok(!eq[1], "other name");
    ok(!eq[2], "same shares, but no \"*\"");
    ok(!eq[3], "other order");
    ok(!eq[4], "other share");
    ok(!eq[5], "fewer variants");
    ok(!eq[6], "other variant name");
}


static void
test_bucket(void)
{
    int       in_range;
    char      key[300];
    unsigned  b[8], max;
    size_t    i;

    /*
     * int.from_bytes(hashlib.sha256(f"{name}:{key}".encode())
     *                .digest()[:8], "big") % 10000
     */

    b[0] = bucket("badge", "c1001");
    b[1] = bucket("badge", "");
    b[2] = bucket("ship", "42");
    b[3] = bucket("t", "k0");
    b[4] = bucket("badge", "k99999");

    ok(b[0] == 8813, "badge:c1001 -> 8813 (%u)", b[0]);
    ok(b[1] == 1151, "badge: -> 1151 (%u)", b[1]);
    ok(b[2] == 8581, "ship:42 -> 8581 (%u)", b[2]);
    ok(b[3] == 1606, "t:k0 -> 1606 (%u)", b[3]);
    ok(b[4] == 9942, "badge:k99999 -> 9942 (%u)", b[4]);

    /* 256 bytes hashed in one go, 257 and more streamed */

    memset(key, 'z', sizeof(key));
    b[5] = loyalty_ab_bucket("badge", 5, (unsigned char *) key, 250);
    b[6] = loyalty_ab_bucket("badge", 5, (unsigned char *) key, 251);
    memset(key, 'y', sizeof(key));
    b[7] = loyalty_ab_bucket("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 32,
                             (unsigned char *) key, 300);

    ok(b[5] == 3730, "badge:z*250 (256 bytes) -> 3730 (%u)", b[5]);
    ok(b[6] == 9567, "badge:z*251 (257 bytes) -> 9567 (%u)", b[6]);
    ok(b[7] == 6345, "x*32:y*300 -> 6345 (%u)", b[7]);

    in_range = 1;
    max = 0;

    for (i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "k%d", (int) i);
        b[0] = bucket("range", key);

        if (b[0] >= LOYALTY_AB_BUCKETS) {
            in_range = 0;
        }

        if (b[0] > max) {
            max = b[0];
        }
    }

    ok(in_range && max >= 9990, "%d buckets below 10000, max %u", KEYS, max);
}


static void
test_assign(void)
{
    int                v, v2, deterministic, consistent, never_a, ix, iy;
    char               err[256], key[32];
    size_t             i, j, count[4], none, counts[3][3];
    double             pct[4], chi2, e, rows[3], cols[3];
    unsigned           b;
    loyalty_ab_test_t  t, t2, u;

    (void) parse(&t, "badge", "10% off 45% a * b", err, sizeof(err));

    memset(count, 0, sizeof(count));
    deterministic = 1;
    consistent = 1;

    for (i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "k%d", (int) i);

        v = loyalty_ab_assign(&t, (unsigned char *) key, strlen(key));
        v2 = loyalty_ab_assign(&t, (unsigned char *) key, strlen(key));
        b = bucket("badge", key);

        if (v != v2) {
            deterministic = 0;
        }

        if (v != (b < 1000 ? 0 : b < 5500 ? 1 : 2)) {
            consistent = 0;
        }

        count[v < 0 ? 3 : v]++;
    }

    for (i = 0; i < 4; i++) {
        pct[i] = 100.0 * count[i] / KEYS;
    }

    ok(fabs(pct[0] - 10) <= 0.5, "off gets %.2f%% (10%%)", pct[0]);
    ok(fabs(pct[1] - 45) <= 0.5, "a gets %.2f%% (45%%)", pct[1]);
    ok(fabs(pct[2] - 45) <= 0.5, "b gets %.2f%% (45%%)", pct[2]);
    ok(count[3] == 0, "with \"*\" every key has a variant");
    ok(deterministic, "the same key, the same variant");
    ok(consistent, "ranges in declaration order: [0,1000) [1000,5500) "
       "[5500,10000)");

    /* without "*" the rest is unassigned */

    (void) parse(&u, "badge", "10% off 45% a", err, sizeof(err));

    none = 0;
    consistent = 1;

    for (i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "k%d", (int) i);

        v = loyalty_ab_assign(&u, (unsigned char *) key, strlen(key));
        v2 = loyalty_ab_assign(&t, (unsigned char *) key, strlen(key));

        if (v < 0) {
            none++;
        }

        /* the same name, so the same buckets: only "*" differs */

        if ((v2 < 2 && v != v2) || (v2 == 2 && v != -1)) {
            consistent = 0;
        }
    }

    pct[3] = 100.0 * none / KEYS;

    ok(fabs(pct[3] - 45) <= 0.5, "no \"*\": %.2f%% unassigned (45%%)",
       pct[3]);
    ok(consistent, "no \"*\": exactly the \"*\" keys are unassigned");

    /* 0% and empty keys */

    (void) parse(&u, "z", "0% a * b", err, sizeof(err));
    never_a = 1;

    for (i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "k%d", (int) i);

        if (loyalty_ab_assign(&u, (unsigned char *) key, strlen(key)) != 1) {
            never_a = 0;
        }
    }

    ok(never_a, "a 0%% variant is never assigned");

    v = loyalty_ab_assign(&t, (unsigned char *) "", 0);
    ok(v == -1, "empty key: -1");
    v = loyalty_ab_assign(&t, NULL, 0);
    ok(v == -1, "empty key, NULL: -1");

    (void) parse(&u, "badge", "100% all", err, sizeof(err));
    v = loyalty_ab_assign(&u, (unsigned char *) "c1001", 5);
    ok(v == 0, "100%%: always the variant");

    /* two tests are independent: chi-square of the 3x3 table */

    (void) parse(&t2, "ship", "20% x 30% y * z", err, sizeof(err));

    memset(counts, 0, sizeof(counts));

    for (i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "k%d", (int) i);

        ix = loyalty_ab_assign(&t, (unsigned char *) key, strlen(key));
        iy = loyalty_ab_assign(&t2, (unsigned char *) key, strlen(key));

        if (ix >= 0 && iy >= 0) {
            counts[ix][iy]++;
        }
    }

    for (i = 0; i < 3; i++) {
        rows[i] = 0;
        cols[i] = 0;
    }

    for (i = 0; i < 3; i++) {
        for (j = 0; j < 3; j++) {
            rows[i] += counts[i][j];
            cols[j] += counts[i][j];
        }
    }

    chi2 = 0;

    for (i = 0; i < 3; i++) {
        for (j = 0; j < 3; j++) {
            e = rows[i] * cols[j] / KEYS;
            chi2 += (counts[i][j] - e) * (counts[i][j] - e) / e;
        }
    }

    ok(rows[0] + rows[1] + rows[2] == KEYS, "every key in the table");
    ok(chi2 < CHI2_999_4, "badge and ship independent: chi-square %.2f < "
       "%.2f", chi2, CHI2_999_4);
}


static void
test_validators(void)
{
    char  id[80];

    ok(loyalty_ab_name_valid(T("badge")), "test name");
    ok(loyalty_ab_name_valid(T("Badge_2")), "test name with _ and digit");
    ok(!loyalty_ab_name_valid(T("")), "empty test name");
    ok(!loyalty_ab_name_valid(T("a-b")), "'-' in a test name");
    ok(loyalty_ab_variant_valid(T("new-look_2")), "variant with - and _");
    ok(!loyalty_ab_variant_valid(T("a.b")), "'.' in a variant");
    ok(!loyalty_ab_variant_valid(T("")), "empty variant");

    ok(loyalty_ab_order_valid(T("A-1_b.c:d")), "order id with all kinds");
    ok(loyalty_ab_order_valid(T("1")), "one-character order id");
    memset(id, 'o', sizeof(id));
    ok(loyalty_ab_order_valid(id, 64), "64-character order id");
    ok(!loyalty_ab_order_valid(id, 65), "65-character order id");
    ok(!loyalty_ab_order_valid(T("")), "empty order id");
    ok(!loyalty_ab_order_valid(T("a b")), "blank in an order id");
    ok(!loyalty_ab_order_valid(T("a/b")), "'/' in an order id");
    ok(!loyalty_ab_order_valid(T("a\"b")), "'\"' in an order id");
    ok(!loyalty_ab_order_valid(T("caf\xc3\xa9")), "UTF-8 in an order id");
    ok(!loyalty_ab_order_valid(T("a\0b")), "NUL in an order id");

    ok(loyalty_ab_value_valid(T("0")), "value 0");
    ok(loyalty_ab_value_valid(T("12")), "value 12");
    ok(loyalty_ab_value_valid(T("12.5")), "value 12.5");
    ok(loyalty_ab_value_valid(T("12.50")), "value 12.50");
    ok(loyalty_ab_value_valid(T("999999999999")), "12 digits");
    ok(loyalty_ab_value_valid(T("999999999999.99")), "12 digits, 2 decimals");
    ok(!loyalty_ab_value_valid(T("9999999999999")), "13 digits");
    ok(!loyalty_ab_value_valid(T("")), "empty value");
    ok(!loyalty_ab_value_valid(T("1.")), "dot without decimals");
    ok(!loyalty_ab_value_valid(T(".5")), "decimals without digits");
    ok(!loyalty_ab_value_valid(T("1.234")), "three decimals");
    ok(!loyalty_ab_value_valid(T("-1")), "sign");
    ok(!loyalty_ab_value_valid(T("+1")), "plus");
    ok(!loyalty_ab_value_valid(T("1e5")), "exponent");
    ok(!loyalty_ab_value_valid(T(" 1")), "blank");
    ok(!loyalty_ab_value_valid(T("1,5")), "comma");
    ok(!loyalty_ab_value_valid(T("1.2.3")), "two dots");
    ok(!loyalty_ab_value_valid(T("1.a")), "letter after dot");
    ok(!loyalty_ab_value_valid(T("nan")), "nan");
}


/* field/value from two C strings */
#define FIELD(rep, f, v)                                                     \
    loyalty_ab_report_field(rep, T(f), T(v))


static void
test_report_field(void)
{
    int                  rc[40], all, none;
    char                 err[256], f[64], longv[80];
    size_t               i;
    loyalty_ab_test_t    t;
    loyalty_ab_report_t  rep, before;

    (void) parse(&t, "badge", "10% off 45% a * b", err, sizeof(err));

    memset(&rep, 0x5a, sizeof(rep));
    loyalty_ab_report_init(&rep, &t);

    ok(strcmp(rep.name, "badge") == 0 && rep.nrows == 3,
       "init: name and three rows");
    ok(strcmp(rep.rows[0].name, "off") == 0 && rep.rows[0].configured
       && rep.rows[0].share == 1000 && strcmp(rep.rows[2].name, "b") == 0
       && rep.rows[2].share == 4500 && rep.rows[1].exposures == 0
       && rep.rows[1].conversions == 0 && rep.rows[1].revenue == 0,
       "init: rows in order with shares, counts zero");

    rc[0] = FIELD(&rep, "off:exposures", "1000");
    rc[1] = FIELD(&rep, "off:conversions", "50");
    rc[2] = FIELD(&rep, "off:revenue", "2500.5");
    rc[3] = FIELD(&rep, "a:exposures", "1000");
    rc[4] = FIELD(&rep, "a:conversions", "70");
    rc[5] = FIELD(&rep, "a:revenue", "3600.25000000000000000");
    rc[6] = FIELD(&rep, "b:revenue", "-12");

    ok(rc[0] && rc[1] && rc[2] && rc[3] && rc[4] && rc[5] && rc[6],
       "all field kinds used");
    ok(rep.rows[0].exposures == 1000 && rep.rows[0].conversions == 50
       && rep.rows[0].revenue == 2500.5 && rep.rows[1].exposures == 1000
       && rep.rows[1].conversions == 70 && rep.rows[1].revenue == 3600.25
       && rep.rows[2].revenue == -12 && rep.rows[2].exposures == 0,
       "values stored in their rows");

    rc[0] = FIELD(&rep, "off:exposures", "1200");
    ok(rc[0] && rep.rows[0].exposures == 1200, "a field again replaces");
    (void) FIELD(&rep, "off:exposures", "1000");

    rc[0] = FIELD(&rep, "old:exposures", "5");
    rc[1] = FIELD(&rep, "old:revenue", "9.99");
    rc[2] = FIELD(&rep, "old-2:conversions", "1");

    ok(rc[0] && rc[1] && rc[2] && rep.nrows == 5, "extras appended");
    ok(strcmp(rep.rows[3].name, "old") == 0 && !rep.rows[3].configured
       && rep.rows[3].share == 0 && rep.rows[3].exposures == 5
       && rep.rows[3].revenue == 9.99 && rep.rows[3].conversions == 0
       && strcmp(rep.rows[4].name, "old-2") == 0
       && rep.rows[4].conversions == 1,
       "extras: configured 0, in the order found");

    rc[0] = FIELD(&rep, "off:exposures", "9223372036854775807");
    ok(rc[0] && rep.rows[0].exposures == 9223372036854775807ULL,
       "INT64_MAX");
    (void) FIELD(&rep, "off:exposures", "1000");

    /* garbage, none of it used, nothing changed */

    before = rep;
    i = 0;

    rc[i++] = FIELD(&rep, "off:clicks", "1");
    rc[i++] = FIELD(&rep, "off:Exposures", "1");
    rc[i++] = FIELD(&rep, "off:exposures ", "1");
    rc[i++] = FIELD(&rep, "offexposures", "1");
    rc[i++] = FIELD(&rep, ":exposures", "1");
    rc[i++] = FIELD(&rep, "a:b:exposures", "1");
    rc[i++] = FIELD(&rep, "off:", "1");
    rc[i++] = FIELD(&rep, "", "1");
    rc[i++] = FIELD(&rep, "a b:exposures", "1");
    rc[i++] = FIELD(&rep, "new:exposures", "x");
    rc[i++] = FIELD(&rep, "off:exposures", "-1");
    rc[i++] = FIELD(&rep, "off:exposures", "+1");
    rc[i++] = FIELD(&rep, "off:exposures", "1.5");
    rc[i++] = FIELD(&rep, "off:exposures", "");
    rc[i++] = FIELD(&rep, "off:exposures", " 1");
    rc[i++] = FIELD(&rep, "off:exposures", "1e3");
    rc[i++] = FIELD(&rep, "off:exposures", "9223372036854775808");
    rc[i++] = FIELD(&rep, "off:exposures", "18446744073709551616");
    rc[i++] = FIELD(&rep, "off:conversions", "abc");
    rc[i++] = FIELD(&rep, "off:revenue", "");
    rc[i++] = FIELD(&rep, "off:revenue", "1e5");
    rc[i++] = FIELD(&rep, "off:revenue", "nan");
    rc[i++] = FIELD(&rep, "off:revenue", "inf");
    rc[i++] = FIELD(&rep, "off:revenue", "-inf");
    rc[i++] = FIELD(&rep, "off:revenue", "1.");
    rc[i++] = FIELD(&rep, "off:revenue", ".5");
    rc[i++] = FIELD(&rep, "off:revenue", "--1");
    rc[i++] = FIELD(&rep, "off:revenue", "-");
    rc[i++] = FIELD(&rep, "off:revenue", "0x10");
    rc[i++] = FIELD(&rep, "off:revenue", "1,5");
    rc[i++] = loyalty_ab_report_field(&rep, "o\0f:exposures", 13, T("1"));
    rc[i++] = loyalty_ab_report_field(&rep, T("off:exposures"), "1\0", 2);
    rc[i++] = FIELD(&rep, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:exposures", "1");

    memset(longv, '1', sizeof(longv));
    rc[i++] = loyalty_ab_report_field(&rep, T("off:revenue"), longv, 65);

    none = 1;

    while (i-- > 0) {
        if (rc[i] != 0) {
            none = 0;
            printf("# garbage case %d used\n", (int) i);
        }
    }

    ok(none, "garbage ignored");
    ok(memcmp(&rep, &before, sizeof(rep)) == 0, "garbage changed nothing");

    rc[0] = loyalty_ab_report_field(&rep, T("off:revenue"), longv, 64);
    ok(rc[0] && rep.rows[0].revenue > 1e63 && rep.rows[0].revenue < 1.2e63,
       "a 64-digit revenue");

    /* room for 32 rows, then no more */

    all = 1;

    for (i = rep.nrows; i < LOYALTY_AB_ROWS_MAX; i++) {
        snprintf(f, sizeof(f), "x%d:exposures", (int) i);

        if (loyalty_ab_report_field(&rep, f, strlen(f), T("1")) != 1) {
            all = 0;
        }
    }

    rc[0] = FIELD(&rep, "full:exposures", "1");
    rc[1] = FIELD(&rep, "a:exposures", "2000");

    ok(all && rep.nrows == LOYALTY_AB_ROWS_MAX, "extras up to 32 rows");
    ok(rc[0] == 0 && rep.nrows == LOYALTY_AB_ROWS_MAX,
       "no room: a new variant ignored");
    ok(rc[1] == 1 && rep.rows[1].exposures == 2000,
       "no room: known variants still used");
}


/* badge: off 1000/50, a 1000/70, c 1000/30, d 0 exposures, extra old */

static void
sample(loyalty_ab_report_t *rep)
{
    char               err[256];
    loyalty_ab_test_t  t;

    (void) parse(&t, "badge", "10% off 45% a 20% c * d", err, sizeof(err));
    loyalty_ab_report_init(rep, &t);

    (void) FIELD(rep, "off:exposures", "1000");
    (void) FIELD(rep, "off:conversions", "50");
    (void) FIELD(rep, "off:revenue", "2500.5");
    (void) FIELD(rep, "a:exposures", "1000");
    (void) FIELD(rep, "a:conversions", "70");
    (void) FIELD(rep, "a:revenue", "3600.25");
    (void) FIELD(rep, "c:exposures", "1000");
    (void) FIELD(rep, "c:conversions", "30");
    (void) FIELD(rep, "c:revenue", "1000");
    (void) FIELD(rep, "old:exposures", "10000");
    (void) FIELD(rep, "old:conversions", "1300");
    (void) FIELD(rep, "old:revenue", "12.345");

    loyalty_ab_stats(rep);
}


static void
test_stats(void)
{
    char                 err[256];
    loyalty_ab_row_t    *r;
    loyalty_ab_test_t    t;
    loyalty_ab_report_t  rep;

    sample(&rep);

    r = &rep.rows[0];
    ok(r->conversion_rate == 0.05 && r->revenue_per_exposure == 2.5005
       && !r->has_uplift && !r->has_p_value,
       "baseline: rate 0.05, rev/exp 2.5005, no uplift, no p-value");

    /* python3: math.erfc(abs(z) / math.sqrt(2)), pooled z */

    r = &rep.rows[1];
    ok(r->conversion_rate == 0.07 && fabs(r->uplift - 0.4) < 1e-12
       && r->has_uplift, "a: rate 0.07, uplift +40%% (%.15g)", r->uplift);
    ok(r->has_p_value && fabs(r->p_value - 0.05968560553242625) < 1e-9,
       "a: p-value 0.0596856055 (%.12g)", r->p_value);
    ok(fabs(r->revenue_per_exposure - 3.60025) < 1e-12, "a: rev/exp");

    r = &rep.rows[2];
    ok(r->has_uplift && fabs(r->uplift + 0.4) < 1e-12
       && r->has_p_value && fabs(r->p_value - 0.02247887336612527) < 1e-9,
       "c: uplift -40%%, p-value 0.0224788734 (%.12g)", r->p_value);

    r = &rep.rows[3];
    ok(r->exposures == 0 && r->conversion_rate == 0
       && r->revenue_per_exposure == 0 && !r->has_uplift && !r->has_p_value,
       "d without exposures: rates 0, no uplift, no p-value");

    r = &rep.rows[4];
    ok(!r->configured && r->has_uplift && fabs(r->uplift - 1.6) < 1e-12
       && r->has_p_value
       && fabs(r->p_value - 1.9649619633452292e-13) < 1e-20,
       "extra old: compared too (uplift %.15g, p %.12g)", r->uplift,
       r->p_value);

    /* edge cases */

    (void) parse(&t, "e", "50% a * b", err, sizeof(err));

    loyalty_ab_report_init(&rep, &t);
    (void) FIELD(&rep, "a:exposures", "100");
    (void) FIELD(&rep, "b:exposures", "100");
    (void) FIELD(&rep, "b:conversions", "3");
    loyalty_ab_stats(&rep);
    r = &rep.rows[1];
    ok(!r->has_uplift && r->has_p_value
       && fabs(r->p_value - 0.08095194377738098) < 1e-9,
       "baseline rate 0: no uplift, p-value 0.0809519438 (%.12g)",
       r->p_value);

    loyalty_ab_report_init(&rep, &t);
    (void) FIELD(&rep, "b:exposures", "100");
    (void) FIELD(&rep, "b:conversions", "3");
    loyalty_ab_stats(&rep);
    r = &rep.rows[1];
    ok(!r->has_uplift && !r->has_p_value && r->conversion_rate == 0.03,
       "n0 = 0: no uplift, no p-value");

    loyalty_ab_report_init(&rep, &t);
    (void) FIELD(&rep, "a:exposures", "100");
    (void) FIELD(&rep, "a:conversions", "3");
    (void) FIELD(&rep, "b:revenue", "5");
    loyalty_ab_stats(&rep);
    r = &rep.rows[1];
    ok(!r->has_uplift && !r->has_p_value && r->revenue_per_exposure == 0,
       "n1 = 0: no uplift, no p-value, rev/exp 0");

    loyalty_ab_report_init(&rep, &t);
    (void) FIELD(&rep, "a:exposures", "100");
    (void) FIELD(&rep, "b:exposures", "200");
    loyalty_ab_stats(&rep);
    r = &rep.rows[1];
    ok(!r->has_uplift && !r->has_p_value, "pooled rate 0: no p-value");

    loyalty_ab_report_init(&rep, &t);
    (void) FIELD(&rep, "a:exposures", "100");
    (void) FIELD(&rep, "a:conversions", "100");
    (void) FIELD(&rep, "b:exposures", "200");
    (void) FIELD(&rep, "b:conversions", "200");
    loyalty_ab_stats(&rep);
    r = &rep.rows[1];
    ok(r->has_uplift && r->uplift == 0 && !r->has_p_value,
       "pooled rate 1: uplift 0, no p-value");

    loyalty_ab_report_init(&rep, &t);
    (void) FIELD(&rep, "a:exposures", "10");
    (void) FIELD(&rep, "a:conversions", "5");
    (void) FIELD(&rep, "b:exposures", "10");
    (void) FIELD(&rep, "b:conversions", "5");
    loyalty_ab_stats(&rep);
    r = &rep.rows[1];
    ok(r->has_uplift && r->uplift == 0 && r->has_p_value
       && r->p_value == 1.0, "equal rates: uplift 0, p-value 1");

    loyalty_ab_report_init(&rep, &t);
    (void) FIELD(&rep, "a:exposures", "9223372036854775807");
    (void) FIELD(&rep, "a:conversions", "9223372036854775807");
    (void) FIELD(&rep, "b:exposures", "9223372036854775807");
    (void) FIELD(&rep, "b:conversions", "1");
    loyalty_ab_stats(&rep);
    r = &rep.rows[1];
    ok(isfinite(r->uplift) && isfinite(r->conversion_rate)
       && (!r->has_p_value || isfinite(r->p_value)),
       "INT64_MAX counts stay finite");

    /* conversions above exposures (e.g. several orders per exposure) */

    loyalty_ab_report_init(&rep, &t);
    (void) FIELD(&rep, "a:exposures", "1");
    (void) FIELD(&rep, "a:conversions", "5");
    (void) FIELD(&rep, "b:exposures", "1");
    (void) FIELD(&rep, "b:conversions", "3");
    loyalty_ab_stats(&rep);
    r = &rep.rows[1];
    ok(!r->has_p_value && r->has_uplift && fabs(r->uplift + 0.4) < 1e-12,
       "pooled rate above 1: no p-value");

    memset(&rep, 0, sizeof(rep));
    loyalty_ab_stats(&rep);
    ok(rep.nrows == 0, "no rows: nothing to do");

    /* 10000/1000 against 10000/1300: p is 2.94e-11 */

    (void) parse(&t, "big", "50% a * b", err, sizeof(err));
    loyalty_ab_report_init(&rep, &t);
    (void) FIELD(&rep, "a:exposures", "10000");
    (void) FIELD(&rep, "a:conversions", "1000");
    (void) FIELD(&rep, "b:exposures", "10000");
    (void) FIELD(&rep, "b:conversions", "1300");
    loyalty_ab_stats(&rep);
    r = &rep.rows[1];
    ok(r->has_p_value
       && fabs(r->p_value - 2.9419097876154897e-11) < 1e-18,
       "tiny p-value 2.94e-11 (%.12g)", r->p_value);
}


static double
num(json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : -12345;
}


static void
test_json(void)
{
    int                   order_ok;
    char                 *s, err[256];
    size_t                len, i;
    json_t               *j, *tests, *badge, *vars, *v;
    const char           *k;
    json_error_t          error;
    loyalty_ab_test_t     t;
    loyalty_ab_report_t   reps[3];

    static const char    *expect_order[] = { "off", "a", "c", "d", "old" };

    sample(&reps[0]);

    (void) parse(&t, "ship", "33.33% free * paid", err, sizeof(err));
    loyalty_ab_report_init(&reps[1], &t);
    loyalty_ab_stats(&reps[1]);

    s = loyalty_ab_report_json(reps, 2, &len);
    ok(s != NULL && strlen(s) == len, "json: NUL-terminated, len set");

    j = s ? json_loadb(s, len, JSON_REJECT_DUPLICATES, &error) : NULL;
    ok(j != NULL, "json parses back (%s)", j ? "ok" : error.text);

    tests = json_object_get(j, "tests");
    badge = json_object_get(tests, "badge");
    vars = json_object_get(badge, "variants");

    ok(json_object_size(j) == 1 && json_object_size(tests) == 2
       && json_object_get(tests, "ship") != NULL, "two tests");
    ok(json_is_string(json_object_get(badge, "baseline"))
       && strcmp(json_string_value(json_object_get(badge, "baseline")),
                 "off") == 0, "baseline off");
    ok(json_object_size(vars) == 5, "five variants, the extra included");

    order_ok = 1;
    i = 0;

    json_object_foreach(vars, k, v) {
        if (i >= 5 || strcmp(k, expect_order[i++]) != 0) {
            order_ok = 0;
        }
    }

    ok(order_ok && s != NULL && strstr(s, "\"off\":") < strstr(s, "\"a\":")
       && strstr(s, "\"c\":") < strstr(s, "\"old\":"),
       "variants in report order");

    v = json_object_get(vars, "off");
    ok(num(json_object_get(v, "share")) == 10
       && json_is_integer(json_object_get(v, "exposures"))
       && json_integer_value(json_object_get(v, "exposures")) == 1000
       && json_integer_value(json_object_get(v, "conversions")) == 50
       && num(json_object_get(v, "conversion_rate")) == 0.05
       && num(json_object_get(v, "revenue")) == 2500.5
       && num(json_object_get(v, "revenue_per_exposure")) == 2.5005
       && json_is_null(json_object_get(v, "uplift"))
       && json_is_null(json_object_get(v, "p_value"))
       && json_object_size(v) == 8, "off: all eight members");

    v = json_object_get(vars, "a");
    ok(num(json_object_get(v, "share")) == 45
       && num(json_object_get(v, "uplift")) == 0.4
       && fabs(num(json_object_get(v, "p_value")) - 0.05968560553) < 1e-10
       && num(json_object_get(v, "revenue_per_exposure")) == 3.60025,
       "a: share, uplift, p-value (%%.10g)");

    v = json_object_get(vars, "d");
    ok(num(json_object_get(v, "share")) == 25
       && json_integer_value(json_object_get(v, "exposures")) == 0
       && num(json_object_get(v, "conversion_rate")) == 0
       && json_is_null(json_object_get(v, "uplift"))
       && json_is_null(json_object_get(v, "p_value")), "d: no data");

    v = json_object_get(vars, "old");
    ok(json_is_null(json_object_get(v, "share"))
       && num(json_object_get(v, "revenue")) == 12.345
       && json_integer_value(json_object_get(v, "exposures")) == 10000,
       "extra: share null");

    v = json_object_get(json_object_get(json_object_get(tests, "ship"),
                                        "variants"), "free");
    ok(num(json_object_get(v, "share")) == 33.33
       && s != NULL && strstr(s, "\"share\":33.33,") != NULL
       && strstr(s, "\"share\":66.67,") != NULL
       && strstr(s, "\"share\":10,") != NULL,
       "shares printed as 33.33, 66.67, 10");

    json_decref(j);
    free(s);

    /* not finite: null; escapes */

    reps[1].rows[0].revenue = NAN;
    reps[1].rows[1].revenue = INFINITY;
    reps[1].rows[1].exposures = 2;
    loyalty_ab_stats(&reps[1]);
    strcpy(reps[1].rows[1].name, "q\"b\\s\x01");

    s = loyalty_ab_report_json(reps, 2, &len);
    j = s ? json_loadb(s, len, JSON_REJECT_DUPLICATES, &error) : NULL;
    ok(j != NULL, "json with NaN and escapes parses (%s)",
       j ? "ok" : error.text);
    ok(s != NULL && strstr(s, "nan") == NULL && strstr(s, "inf") == NULL
       && strstr(s, "\"revenue\":null") != NULL, "no nan or inf, null");

    vars = json_object_get(json_object_get(json_object_get(j, "tests"),
                                           "ship"), "variants");
    ok(json_object_get(vars, "q\"b\\s\x01") != NULL
       && json_is_null(json_object_get(json_object_get(vars, "q\"b\\s\x01"),
                                       "revenue_per_exposure")),
       "'\"', '\\' and control characters escaped");

    json_decref(j);
    free(s);

    /* empty list, a test without rows */

    s = loyalty_ab_report_json(reps, 0, &len);
    ok(s != NULL && len == 12 && strcmp(s, "{\"tests\":{}}") == 0,
       "no tests: {\"tests\":{}}");
    free(s);

    memset(&reps[2], 0, sizeof(reps[2]));
    strcpy(reps[2].name, "empty");
    s = loyalty_ab_report_json(&reps[2], 1, &len);
    ok(s != NULL && strcmp(s, "{\"tests\":{\"empty\":{\"baseline\":null,"
                           "\"variants\":{}}}}") == 0,
       "no rows: baseline null (%s)", s ? s : "NULL");
    free(s);
}


static void
lines(lines_t *ls, const char *text, size_t len)
{
    char  *p, *nl;

    ls->n = 0;
    ls->buf = malloc(len + 1);
    memcpy(ls->buf, text, len + 1);

    for (p = ls->buf; *p != '\0' && ls->n < LINES_MAX; p = nl + 1) {
        nl = strchr(p, '\n');
        ls->line[ls->n++] = p;

        if (nl == NULL) {
            break;
        }

        *nl = '\0';
    }
}


/* cells of a line: runs of non-blanks */

static size_t
cells(const char *line, size_t *start, size_t *len)
{
    size_t  n, i;

    n = 0;
    i = 0;

    while (line[i] != '\0' && n < CELLS_MAX) {
        while (line[i] == ' ') {
            i++;
        }

        if (line[i] == '\0') {
            break;
        }

        start[n] = i;

        while (line[i] != ' ' && line[i] != '\0') {
            i++;
        }

        len[n] = i - start[n];
        n++;
    }

    return n;
}


/*
 * Lines first to last (header and rows) have 9 cells starting at the
 * header's offsets, no trailing blank, and each column is as wide as its
 * widest cell plus two blanks.
 */

static int
table_aligned(const lines_t *ls, size_t first, size_t last)
{
    size_t  i, k, n, hstart[CELLS_MAX], start[CELLS_MAX], len[CELLS_MAX];
    size_t  widest[CELLS_MAX];

    n = cells(ls->line[first], hstart, len);

    if (n != 9) {
        return 0;
    }

    memset(widest, 0, sizeof(widest));

    for (i = first; i <= last; i++) {
        if (cells(ls->line[i], start, len) != 9
            || ls->line[i][strlen(ls->line[i]) - 1] == ' ')
        {
            return 0;
        }

        for (k = 0; k < 9; k++) {
            if (start[k] != hstart[k]) {
                return 0;
            }

            if (len[k] > widest[k]) {
                widest[k] = len[k];
            }
        }
    }

    for (k = 0; k + 1 < 9; k++) {
        if (hstart[k + 1] - hstart[k] != widest[k] + 2) {
            return 0;
        }
    }

    return 1;
}


/* the cell in column col of the row whose first cell is row */

static const char *
cell_of(const lines_t *ls, const char *row, size_t col, char *buf,
    size_t size)
{
    size_t  i, n, start[CELLS_MAX], len[CELLS_MAX];

    for (i = 0; i < ls->n; i++) {
        n = cells(ls->line[i], start, len);

        if (n == 9 && len[0] == strlen(row)
            && memcmp(ls->line[i], row, len[0]) == 0)
        {
            snprintf(buf, size, "%.*s", (int) len[col],
                     ls->line[i] + start[col]);
            return buf;
        }
    }

    return "";
}


static void
test_text(void)
{
    int                   rc;
    char                 *s, err[256], c[9][64];
    size_t                len, i;
    lines_t               ls;
    loyalty_ab_test_t     t;
    loyalty_ab_report_t   reps[2];

    sample(&reps[0]);

    (void) parse(&t, "ship", "33.33% free * paid", err, sizeof(err));
    loyalty_ab_report_init(&reps[1], &t);
    (void) FIELD(&reps[1], "free:exposures", "10000");
    (void) FIELD(&reps[1], "free:conversions", "1000");
    (void) FIELD(&reps[1], "paid:exposures", "10000");
    (void) FIELD(&reps[1], "paid:conversions", "1300");
    loyalty_ab_stats(&reps[1]);

    s = loyalty_ab_report_text(reps, 2, &len);
    ok(s != NULL && strlen(s) == len && len > 0 && s[len - 1] == '\n',
       "text: NUL-terminated, len set, ends with a newline");

    if (s == NULL) {
        return;
    }

    lines(&ls, s, len);

    /* title, header, 5 rows, blank, title, header, 2 rows */

    ok(ls.n == 12, "12 lines (%d)", (int) ls.n);
    ok(ls.n == 12 && strcmp(ls.line[0], "test badge (baseline off)") == 0
       && strncmp(ls.line[1], "variant", 7) == 0
       && strcmp(ls.line[7], "") == 0
       && strcmp(ls.line[8], "test ship (baseline free)") == 0,
       "titles and a blank line between tests");

    rc = ls.n == 12 && table_aligned(&ls, 1, 6) && table_aligned(&ls, 9, 11);
    ok(rc, "columns aligned, padded to the widest cell");

    ok(ls.n == 12
       && strcmp(ls.line[1], "variant  share  exposures  conversions  rate"
                 "    revenue  rev/exp  uplift    p_value") == 0,
       "header: \"%s\"", ls.n ? ls.line[1] : "");

    for (i = 0; i < 9; i++) {
        cell_of(&ls, "off", i, c[i], sizeof(c[i]));
    }

    ok(strcmp(c[1], "10%") == 0 && strcmp(c[2], "1000") == 0
       && strcmp(c[3], "50") == 0 && strcmp(c[4], "5.00%") == 0
       && strcmp(c[5], "2500.50") == 0 && strcmp(c[6], "2.50") == 0
       && strcmp(c[7], "-") == 0 && strcmp(c[8], "-") == 0,
       "baseline row: %s %s %s %s %s %s %s %s", c[1], c[2], c[3], c[4],
       c[5], c[6], c[7], c[8]);

    for (i = 0; i < 9; i++) {
        cell_of(&ls, "a", i, c[i], sizeof(c[i]));
    }

    ok(strcmp(c[1], "45%") == 0 && strcmp(c[4], "7.00%") == 0
       && strcmp(c[5], "3600.25") == 0 && strcmp(c[6], "3.60") == 0
       && strcmp(c[7], "+40.00%") == 0 && strcmp(c[8], "0.0597") == 0,
       "row a: %s %s %s %s %s %s", c[1], c[4], c[5], c[6], c[7], c[8]);

    for (i = 0; i < 9; i++) {
        cell_of(&ls, "c", i, c[i], sizeof(c[i]));
    }

    ok(strcmp(c[7], "-40.00%") == 0 && strcmp(c[8], "0.0225") == 0,
       "row c: %s %s", c[7], c[8]);

    for (i = 0; i < 9; i++) {
        cell_of(&ls, "d", i, c[i], sizeof(c[i]));
    }

    ok(strcmp(c[1], "25%") == 0 && strcmp(c[2], "0") == 0
       && strcmp(c[4], "-") == 0 && strcmp(c[5], "0.00") == 0
       && strcmp(c[6], "-") == 0 && strcmp(c[7], "-") == 0
       && strcmp(c[8], "-") == 0,
       "row d without exposures: %s %s %s %s %s %s", c[1], c[4], c[5],
       c[6], c[7], c[8]);

    for (i = 0; i < 9; i++) {
        cell_of(&ls, "old", i, c[i], sizeof(c[i]));
    }

    ok(strcmp(c[1], "-") == 0 && strcmp(c[4], "13.00%") == 0
       && strcmp(c[5], "12.35") == 0 && strcmp(c[7], "+160.00%") == 0
       && strcmp(c[8], "<0.0001") == 0,
       "extra row: %s %s %s %s %s", c[1], c[4], c[5], c[7], c[8]);

    for (i = 0; i < 9; i++) {
        cell_of(&ls, "paid", i, c[i], sizeof(c[i]));
    }

    ok(strcmp(c[1], "66.67%") == 0 && strcmp(c[7], "+30.00%") == 0
       && strcmp(c[8], "<0.0001") == 0,
       "ship: 66.67%%, +30.00%%, <0.0001: %s %s %s", c[1], c[7], c[8]);

    free(ls.buf);
    free(s);

    s = loyalty_ab_report_text(reps, 0, &len);
    ok(s != NULL && len == 0 && s[0] == '\0', "no tests: empty text");
    free(s);

    memset(&reps[1], 0, sizeof(reps[1]));
    strcpy(reps[1].name, "empty");
    s = loyalty_ab_report_text(&reps[1], 1, &len);
    ok(s != NULL && strncmp(s, "test empty (no variants)\nvariant  share",
                            38) == 0, "no rows: title and header");
    free(s);
}


int
main(void)
{
    test_percent();
    test_parse();
    test_parse_errors();
    test_equal();
    test_bucket();
    test_assign();
    test_validators();
    test_report_field();
    test_stats();
    test_json();
    test_text();

    return done_testing();
}
