/*
 * Copyright (C) ngx_loyalty_module authors
 */


#include "loyalty_ab.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SHA256_Init() and friends are deprecated in OpenSSL 3, not removed */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <openssl/sha.h>


#define LOYALTY_AB_WORD_SHOW    40     /* bytes of a word quoted in errors */
#define LOYALTY_AB_REVENUE_MAX  64     /* characters of a revenue value */
#define LOYALTY_AB_VALUE_DIGITS 12     /* integer digits of an order value */
#define LOYALTY_AB_COLUMNS      9      /* of the text table */
#define LOYALTY_AB_CELL_MAX     128    /* bytes of a formatted cell */

/* the kinds of report fields */
#define LOYALTY_AB_EXPOSURES    0
#define LOYALTY_AB_CONVERSIONS  1
#define LOYALTY_AB_REVENUE      2


/* a growing output buffer; failed once realloc() failed */
typedef struct {
    char    *data;
    size_t   len;
    size_t   size;
    int      failed;
} loyalty_ab_buf_t;


static int loyalty_ab_hash(const char *name, size_t nlen,
    const unsigned char *key, size_t klen, unsigned *bucket);
static int loyalty_ab_chars_valid(const char *s, size_t len, size_t max,
    const char *extra);
static int loyalty_ab_word_char(unsigned char ch);
static void loyalty_ab_quote(char *dst, size_t size, const char *s,
    size_t len);
static const char *loyalty_ab_percent_error(const char *s, size_t len);
static void loyalty_ab_percent_str(unsigned hundredths, char *buf,
    size_t size);
static int loyalty_ab_parse_uint64(const char *s, size_t len, uint64_t *n);
static int loyalty_ab_parse_decimal(const char *s, size_t len, double *d);
static loyalty_ab_row_t *loyalty_ab_row(loyalty_ab_report_t *rep,
    const char *name, size_t len);
static void loyalty_ab_json_test(loyalty_ab_buf_t *b,
    const loyalty_ab_report_t *rep);
static void loyalty_ab_json_string(loyalty_ab_buf_t *b, const char *s);
static void loyalty_ab_json_double(loyalty_ab_buf_t *b, double x);
static void loyalty_ab_text_test(loyalty_ab_buf_t *b,
    const loyalty_ab_report_t *rep);
static size_t loyalty_ab_cell(const loyalty_ab_row_t *r, size_t col,
    char *buf, size_t size);
static void loyalty_ab_buf_add(loyalty_ab_buf_t *b, const char *s,
    size_t len);
static void loyalty_ab_buf_str(loyalty_ab_buf_t *b, const char *s);
static void loyalty_ab_buf_printf(loyalty_ab_buf_t *b, const char *fmt,
    ...);
static void loyalty_ab_buf_pad(loyalty_ab_buf_t *b, size_t n);
static char *loyalty_ab_buf_done(loyalty_ab_buf_t *b, size_t *len);


static const char  *loyalty_ab_headers[LOYALTY_AB_COLUMNS] = {
    "variant", "share", "exposures", "conversions", "rate", "revenue",
    "rev/exp", "uplift", "p_value"
};


/* 1 to max characters from [A-Za-z0-9_] and the ones in extra */

static int
loyalty_ab_chars_valid(const char *s, size_t len, size_t max,
    const char *extra)
{
    size_t         i;
    unsigned char  ch;

    if (len == 0 || len > max) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        ch = (unsigned char) s[i];

        if (!loyalty_ab_word_char(ch) && (ch == '\0' || !strchr(extra, ch)))
        {
            return 0;
        }
    }

    return 1;
}


int
loyalty_ab_name_valid(const char *s, size_t len)
{
    return loyalty_ab_chars_valid(s, len, LOYALTY_AB_NAME_MAX, "");
}


int
loyalty_ab_variant_valid(const char *s, size_t len)
{
    return loyalty_ab_chars_valid(s, len, LOYALTY_AB_VARIANT_MAX, "-");
}


int
loyalty_ab_parse_percent(const char *s, size_t len, unsigned *hundredths)
{
    size_t    i, frac;
    unsigned  n;

    if (len < 2 || s[len - 1] != '%') {
        return 0;
    }

    len--;
    n = 0;

    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        n = n * 10 + (s[i] - '0');

        /* leading zeros may go on, any other digit ends it here */

        if (n > 100) {
            return 0;
        }
    }

    if (i == 0) {
        return 0;
    }

    n *= 100;

    if (i < len) {
        if (s[i++] != '.') {
            return 0;
        }

        frac = len - i;

        if (frac == 0 || frac > 2) {
            return 0;
        }

        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }

        n += (s[i] - '0') * 10;

        if (frac == 2) {
            if (s[i + 1] < '0' || s[i + 1] > '9') {
                return 0;
            }

            n += s[i + 1] - '0';
        }
    }

    if (n > LOYALTY_AB_BUCKETS) {
        return 0;
    }

    *hundredths = n;

    return 1;
}


int
loyalty_ab_test_parse(loyalty_ab_test_t *t, const char *name, size_t nlen,
    const char *const *words, const size_t *lens, size_t nwords, char *err,
    size_t errlen)
{
    int                    star;
    char                   q[LOYALTY_AB_WORD_SHOW * 4 + 4], pct[16];
    size_t                 i, j, wlen, vlen;
    unsigned               share, sum;
    const char            *w, *v;
    loyalty_ab_test_t      test;
    loyalty_ab_variant_t  *var;

    if (!loyalty_ab_name_valid(name, nlen)) {
        loyalty_ab_quote(q, sizeof(q), name, nlen);
        snprintf(err, errlen, "invalid test name \"%s\" (1-%d of A-Z, a-z, "
                 "0-9, _)", q, LOYALTY_AB_NAME_MAX);
        return -1;
    }

    if (nwords == 0) {
        snprintf(err, errlen, "no variants: expected pairs of a percentage "
                 "or \"*\" and a variant");
        return -1;
    }

    memset(&test, 0, sizeof(test));
    memcpy(test.name, name, nlen);

    sum = 0;

    for (i = 0; i < nwords; i += 2) {
        w = words[i];
        wlen = lens[i];

        star = (wlen == 1 && w[0] == '*');
        share = 0;

        if (!star && !loyalty_ab_parse_percent(w, wlen, &share)) {
            loyalty_ab_quote(q, sizeof(q), w, wlen);
            snprintf(err, errlen, "invalid percentage \"%s\" (%s)", q,
                     loyalty_ab_percent_error(w, wlen));
            return -1;
        }

        if (i + 1 == nwords) {
            loyalty_ab_quote(q, sizeof(q), w, wlen);
            snprintf(err, errlen, "missing variant name after \"%s\"", q);
            return -1;
        }

        if (star && i + 2 < nwords) {
            snprintf(err, errlen, "\"*\" must be the last pair");
            return -1;
        }

        v = words[i + 1];
        vlen = lens[i + 1];

        if (!loyalty_ab_variant_valid(v, vlen)) {
            loyalty_ab_quote(q, sizeof(q), v, vlen);
            snprintf(err, errlen, "invalid variant name \"%s\" (1-%d of A-Z, "
                     "a-z, 0-9, _, -)", q, LOYALTY_AB_VARIANT_MAX);
            return -1;
        }

        for (j = 0; j < test.nvariants; j++) {
            if (strlen(test.variants[j].name) == vlen
                && memcmp(test.variants[j].name, v, vlen) == 0)
            {
                snprintf(err, errlen, "duplicate variant \"%.*s\"",
                         (int) vlen, v);
                return -1;
            }
        }

        if (test.nvariants == LOYALTY_AB_VARIANTS_MAX) {
            snprintf(err, errlen, "too many variants at \"%.*s\" (at most "
                     "%d)", (int) vlen, v, LOYALTY_AB_VARIANTS_MAX);
            return -1;
        }

        var = &test.variants[test.nvariants++];

        memcpy(var->name, v, vlen);
        var->share = share;
        var->rest = star;

        /* at most 16 shares of at most 10000 each: no overflow */

        sum += share;
    }

    if (sum > LOYALTY_AB_BUCKETS) {
        loyalty_ab_percent_str(sum, pct, sizeof(pct));
        snprintf(err, errlen, "percentages add up to %s%%, more than 100%%",
                 pct);
        return -1;
    }

    var = &test.variants[test.nvariants - 1];

    if (var->rest) {
        var->share = LOYALTY_AB_BUCKETS - sum;
    }

    *t = test;

    return 0;
}


int
loyalty_ab_test_equal(const loyalty_ab_test_t *a, const loyalty_ab_test_t *b)
{
    size_t                       i;
    const loyalty_ab_variant_t  *va, *vb;

    if (strcmp(a->name, b->name) != 0 || a->nvariants != b->nvariants) {
        return 0;
    }

    for (i = 0; i < a->nvariants; i++) {
        va = &a->variants[i];
        vb = &b->variants[i];

        if (strcmp(va->name, vb->name) != 0 || va->share != vb->share
            || !va->rest != !vb->rest)
        {
            return 0;
        }
    }

    return 1;
}


unsigned
loyalty_ab_bucket(const char *name, size_t nlen, const unsigned char *key,
    size_t klen)
{
    unsigned  bucket;

    /* OpenSSL fails only out of memory, and only for long keys */

    if (loyalty_ab_hash(name, nlen, key, klen, &bucket) != 0) {
        return 0;
    }

    return bucket;
}


int
loyalty_ab_assign(const loyalty_ab_test_t *t, const unsigned char *key,
    size_t klen)
{
    size_t    i;
    unsigned  bucket, end;

    if (klen == 0) {
        return -1;
    }

    if (loyalty_ab_hash(t->name, strlen(t->name), key, klen, &bucket) != 0) {
        return -1;
    }

    end = 0;

    for (i = 0; i < t->nvariants; i++) {
        end += t->variants[i].share;

        if (bucket < end) {
            return (int) i;
        }
    }

    return -1;
}


int
loyalty_ab_order_valid(const char *s, size_t len)
{
    return loyalty_ab_chars_valid(s, len, LOYALTY_AB_ORDER_MAX, "-.:");
}


int
loyalty_ab_value_valid(const char *s, size_t len)
{
    size_t  i, digits;

    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        /* void */
    }

    if (i == 0 || i > LOYALTY_AB_VALUE_DIGITS) {
        return 0;
    }

    if (i == len) {
        return 1;
    }

    if (s[i++] != '.') {
        return 0;
    }

    digits = len - i;

    if (digits == 0 || digits > 2) {
        return 0;
    }

    for ( /* void */ ; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }

    return 1;
}


void
loyalty_ab_report_init(loyalty_ab_report_t *rep, const loyalty_ab_test_t *t)
{
    size_t             i;
    loyalty_ab_row_t  *r;

    memset(rep, 0, sizeof(loyalty_ab_report_t));

    memcpy(rep->name, t->name, sizeof(rep->name));
    rep->name[LOYALTY_AB_NAME_MAX] = '\0';

    for (i = 0; i < t->nvariants && i < LOYALTY_AB_VARIANTS_MAX; i++) {
        r = &rep->rows[i];

        memcpy(r->name, t->variants[i].name, sizeof(r->name));
        r->name[LOYALTY_AB_VARIANT_MAX] = '\0';
        r->configured = 1;
        r->share = t->variants[i].share;
    }

    rep->nrows = i;
}


int
loyalty_ab_report_field(loyalty_ab_report_t *rep, const char *field,
    size_t flen, const char *value, size_t vlen)
{
    int                kind;
    double             revenue;
    size_t             colon, slen;
    uint64_t           n;
    const char        *suffix;
    loyalty_ab_row_t  *r;

    /* variant names have no ':', so the last one ends the name */

    for (colon = flen; colon > 0; colon--) {
        if (field[colon - 1] == ':') {
            break;
        }
    }

    if (colon == 0) {
        return 0;
    }

    suffix = field + colon;
    slen = flen - colon;

    if (slen == 9 && memcmp(suffix, "exposures", 9) == 0) {
        kind = LOYALTY_AB_EXPOSURES;

    } else if (slen == 11 && memcmp(suffix, "conversions", 11) == 0) {
        kind = LOYALTY_AB_CONVERSIONS;

    } else if (slen == 7 && memcmp(suffix, "revenue", 7) == 0) {
        kind = LOYALTY_AB_REVENUE;

    } else {
        return 0;
    }

    if (!loyalty_ab_variant_valid(field, colon - 1)) {
        return 0;
    }

    n = 0;
    revenue = 0;

    if (kind == LOYALTY_AB_REVENUE) {
        if (!loyalty_ab_parse_decimal(value, vlen, &revenue)) {
            return 0;
        }

    } else if (!loyalty_ab_parse_uint64(value, vlen, &n)) {
        return 0;
    }

    r = loyalty_ab_row(rep, field, colon - 1);

    if (r == NULL) {
        return 0;
    }

    switch (kind) {

    case LOYALTY_AB_EXPOSURES:
        r->exposures = n;
        break;

    case LOYALTY_AB_CONVERSIONS:
        r->conversions = n;
        break;

    default: /* LOYALTY_AB_REVENUE */
        r->revenue = revenue;
        break;
    }

    return 1;
}


void
loyalty_ab_stats(loyalty_ab_report_t *rep)
{
    size_t             i;
    double             n0, n1, c0, c1, p, se, z, pv;
    loyalty_ab_row_t  *r, *base;

    for (i = 0; i < rep->nrows; i++) {
        r = &rep->rows[i];

        n1 = (double) r->exposures;

        r->conversion_rate = n1 > 0 ? (double) r->conversions / n1 : 0;
        r->revenue_per_exposure = n1 > 0 ? r->revenue / n1 : 0;
        r->uplift = 0;
        r->p_value = 0;
        r->has_uplift = 0;
        r->has_p_value = 0;
    }

    if (rep->nrows == 0) {
        return;
    }

    base = &rep->rows[0];

    n0 = (double) base->exposures;
    c0 = (double) base->conversions;

    for (i = 1; i < rep->nrows; i++) {
        r = &rep->rows[i];

        /* without exposures the rate of 0 is no measurement */

        if (base->conversion_rate > 0 && r->exposures > 0) {
            r->uplift = r->conversion_rate / base->conversion_rate - 1;
            r->has_uplift = isfinite(r->uplift) ? 1 : 0;
        }

        n1 = (double) r->exposures;
        c1 = (double) r->conversions;

        if (n0 == 0 || n1 == 0) {
            continue;
        }

        p = (c0 + c1) / (n0 + n1);

        /* at 0 or 1 the standard error is 0: no test possible */

        if (!(p > 0 && p < 1)) {
            continue;
        }

        se = sqrt(p * (1 - p) * (1 / n0 + 1 / n1));
        z = (r->conversion_rate - base->conversion_rate) / se;
        pv = erfc(fabs(z) / sqrt(2.0));

        if (isfinite(pv)) {
            r->p_value = pv;
            r->has_p_value = 1;
        }
    }
}


char *
loyalty_ab_report_json(const loyalty_ab_report_t *reps, size_t n,
    size_t *len)
{
    size_t            i;
    loyalty_ab_buf_t  b;

    memset(&b, 0, sizeof(loyalty_ab_buf_t));

    loyalty_ab_buf_str(&b, "{\"tests\":{");

    for (i = 0; i < n; i++) {
        if (i > 0) {
            loyalty_ab_buf_str(&b, ",");
        }

        loyalty_ab_json_test(&b, &reps[i]);
    }

    loyalty_ab_buf_str(&b, "}}");

    return loyalty_ab_buf_done(&b, len);
}


char *
loyalty_ab_report_text(const loyalty_ab_report_t *reps, size_t n,
    size_t *len)
{
    size_t            i;
    loyalty_ab_buf_t  b;

    memset(&b, 0, sizeof(loyalty_ab_buf_t));

    for (i = 0; i < n; i++) {
        if (i > 0) {
            loyalty_ab_buf_str(&b, "\n");
        }

        loyalty_ab_text_test(&b, &reps[i]);
    }

    return loyalty_ab_buf_done(&b, len);
}


/*
 * SHA-256 through the low-level interface: SHA256() and EVP look the
 * algorithm up in OpenSSL 3's provider tables on every call, ten times
 * the cost of the hash itself for a short key (0.75 us against 0.08 us
 * here), and this runs for every test on every request.
 */

static int
loyalty_ab_hash(const char *name, size_t nlen, const unsigned char *key,
    size_t klen, unsigned *bucket)
{
    size_t         i;
    uint64_t       v;
    SHA256_CTX     ctx;
    unsigned char  md[SHA256_DIGEST_LENGTH];

    if (SHA256_Init(&ctx) != 1
        || SHA256_Update(&ctx, name, nlen) != 1
        || SHA256_Update(&ctx, ":", 1) != 1
        || (klen && SHA256_Update(&ctx, key, klen) != 1)
        || SHA256_Final(md, &ctx) != 1)
    {
        return -1;
    }

    v = 0;

    for (i = 0; i < 8; i++) {
        v = v << 8 | md[i];
    }

    *bucket = (unsigned) (v % LOYALTY_AB_BUCKETS);

    return 0;
}


static int
loyalty_ab_word_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
           || (ch >= '0' && ch <= '9') || ch == '_';
}


/*
 * Writes a word for an error message, NUL-terminated: printable ASCII
 * as it is ('"' and '\' escaped), other bytes as \xHH, cut after
 * LOYALTY_AB_WORD_SHOW bytes with "...", so the message stays one line
 */

static void
loyalty_ab_quote(char *dst, size_t size, const char *s, size_t len)
{
    char           *d, *end;
    size_t          i;
    unsigned char   ch;

    static const char  hex[] = "0123456789abcdef";

    d = dst;
    end = dst + size - 1;

    for (i = 0; i < len && i < LOYALTY_AB_WORD_SHOW; i++) {
        ch = (unsigned char) s[i];

        if (end - d < 4) {
            break;
        }

        if (ch == '"' || ch == '\\') {
            *d++ = '\\';
            *d++ = (char) ch;

        } else if (ch >= 0x20 && ch < 0x7f) {
            *d++ = (char) ch;

        } else {
            *d++ = '\\';
            *d++ = 'x';
            *d++ = hex[ch >> 4];
            *d++ = hex[ch & 0x0f];
        }
    }

    if (i < len && end - d >= 3) {
        memcpy(d, "...", 3);
        d += 3;
    }

    *d = '\0';
}


/* why a word that is not "*" is not a percentage */

static const char *
loyalty_ab_percent_error(const char *s, size_t len)
{
    size_t  i, idigits, fdigits;

    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        /* void */
    }

    idigits = i;
    fdigits = 0;

    if (i < len && s[i] == '.') {
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            fdigits++;
        }

        if (fdigits == 0) {
            idigits = 0;
        }
    }

    if (idigits == 0 || (i < len && (s[i] != '%' || i + 1 != len))) {
        return "expected a number with at most two decimals and \"%\", "
               "or \"*\"";
    }

    if (i == len) {
        return "missing \"%\"";
    }

    if (fdigits > 2) {
        return "at most two decimals";
    }

    return "more than 100%";
}


/* 1000 -> "10", 1250 -> "12.5", 3333 -> "33.33" */

static void
loyalty_ab_percent_str(unsigned hundredths, char *buf, size_t size)
{
    if (hundredths % 100 == 0) {
        snprintf(buf, size, "%u", hundredths / 100);

    } else if (hundredths % 10 == 0) {
        snprintf(buf, size, "%u.%u", hundredths / 100,
                 hundredths % 100 / 10);

    } else {
        snprintf(buf, size, "%u.%02u", hundredths / 100, hundredths % 100);
    }
}


/* up to INT64_MAX: Redis counters (HINCRBY) are signed 64-bit */

static int
loyalty_ab_parse_uint64(const char *s, size_t len, uint64_t *n)
{
    size_t    i;
    unsigned  d;
    uint64_t  v;

    if (len == 0) {
        return 0;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }

        d = (unsigned) (s[i] - '0');

        if (v > ((uint64_t) INT64_MAX - d) / 10) {
            return 0;
        }

        v = v * 10 + d;
    }

    *n = v;

    return 1;
}


/*
 * HINCRBYFLOAT writes "%.17Lf" without trailing zeros (and without the
 * dot for whole numbers): an optional "-", digits, optional "." and
 * digits; never an exponent, "inf" or "nan"
 */

static int
loyalty_ab_parse_decimal(const char *s, size_t len, double *d)
{
    char    buf[LOYALTY_AB_REVENUE_MAX + 1];
    size_t  i, start, digits;
    double  v;

    if (len == 0 || len > LOYALTY_AB_REVENUE_MAX) {
        return 0;
    }

    i = (s[0] == '-');
    start = i;

    for ( /* void */ ; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        /* void */
    }

    if (i == start) {
        return 0;
    }

    if (i < len) {
        if (s[i++] != '.') {
            return 0;
        }

        for (digits = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            digits++;
        }

        if (digits == 0 || i != len) {
            return 0;
        }
    }

    memcpy(buf, s, len);
    buf[len] = '\0';

    /* nginx never calls setlocale(): the decimal point is "." */

    v = strtod(buf, NULL);

    if (!isfinite(v)) {
        return 0;
    }

    *d = v;

    return 1;
}


/* the row of a variant, appended when new and there is room */

static loyalty_ab_row_t *
loyalty_ab_row(loyalty_ab_report_t *rep, const char *name, size_t len)
{
    size_t             i;
    loyalty_ab_row_t  *r;

    for (i = 0; i < rep->nrows; i++) {
        r = &rep->rows[i];

        if (strlen(r->name) == len && memcmp(r->name, name, len) == 0) {
            return r;
        }
    }

    if (rep->nrows >= LOYALTY_AB_ROWS_MAX) {
        return NULL;
    }

    r = &rep->rows[rep->nrows++];

    memset(r, 0, sizeof(loyalty_ab_row_t));
    memcpy(r->name, name, len);

    return r;
}


static void
loyalty_ab_json_test(loyalty_ab_buf_t *b, const loyalty_ab_report_t *rep)
{
    size_t                   i;
    const loyalty_ab_row_t  *r;

    loyalty_ab_json_string(b, rep->name);
    loyalty_ab_buf_str(b, ":{\"baseline\":");

    if (rep->nrows > 0) {
        loyalty_ab_json_string(b, rep->rows[0].name);

    } else {
        loyalty_ab_buf_str(b, "null");
    }

    loyalty_ab_buf_str(b, ",\"variants\":{");

    for (i = 0; i < rep->nrows; i++) {
        r = &rep->rows[i];

        if (i > 0) {
            loyalty_ab_buf_str(b, ",");
        }

        loyalty_ab_json_string(b, r->name);
        loyalty_ab_buf_str(b, ":{\"share\":");

        if (r->configured) {
            loyalty_ab_json_double(b, r->share / 100.0);

        } else {
            loyalty_ab_buf_str(b, "null");
        }

        loyalty_ab_buf_printf(b, ",\"exposures\":%llu,\"conversions\":%llu",
                              (unsigned long long) r->exposures,
                              (unsigned long long) r->conversions);

        loyalty_ab_buf_str(b, ",\"conversion_rate\":");
        loyalty_ab_json_double(b, r->conversion_rate);

        loyalty_ab_buf_str(b, ",\"revenue\":");
        loyalty_ab_json_double(b, r->revenue);

        loyalty_ab_buf_str(b, ",\"revenue_per_exposure\":");
        loyalty_ab_json_double(b, r->revenue_per_exposure);

        loyalty_ab_buf_str(b, ",\"uplift\":");

        if (r->has_uplift) {
            loyalty_ab_json_double(b, r->uplift);

        } else {
            loyalty_ab_buf_str(b, "null");
        }

        loyalty_ab_buf_str(b, ",\"p_value\":");

        if (r->has_p_value) {
            loyalty_ab_json_double(b, r->p_value);

        } else {
            loyalty_ab_buf_str(b, "null");
        }

        loyalty_ab_buf_str(b, "}");
    }

    loyalty_ab_buf_str(b, "}}");
}


/* names are restricted to safe characters; escaped anyway */

static void
loyalty_ab_json_string(loyalty_ab_buf_t *b, const char *s)
{
    unsigned char  ch;

    loyalty_ab_buf_str(b, "\"");

    for ( /* void */ ; *s != '\0'; s++) {
        ch = (unsigned char) *s;

        if (ch == '"' || ch == '\\') {
            loyalty_ab_buf_str(b, "\\");
            loyalty_ab_buf_add(b, s, 1);

        } else if (ch < 0x20 || ch >= 0x7f) {
            loyalty_ab_buf_printf(b, "\\u%04x", ch);

        } else {
            loyalty_ab_buf_add(b, s, 1);
        }
    }

    loyalty_ab_buf_str(b, "\"");
}


static void
loyalty_ab_json_double(loyalty_ab_buf_t *b, double x)
{
    if (!isfinite(x)) {
        loyalty_ab_buf_str(b, "null");
        return;
    }

    loyalty_ab_buf_printf(b, "%.10g", x);
}


static void
loyalty_ab_text_test(loyalty_ab_buf_t *b, const loyalty_ab_report_t *rep)
{
    char                     cell[LOYALTY_AB_CELL_MAX];
    size_t                   i, col, len, width[LOYALTY_AB_COLUMNS];
    const loyalty_ab_row_t  *r;

    loyalty_ab_buf_str(b, "test ");
    loyalty_ab_buf_str(b, rep->name);

    if (rep->nrows > 0) {
        loyalty_ab_buf_str(b, " (baseline ");
        loyalty_ab_buf_str(b, rep->rows[0].name);
        loyalty_ab_buf_str(b, ")\n");

    } else {
        loyalty_ab_buf_str(b, " (no variants)\n");
    }

    /* line 0 is the header; every cell is formatted twice, first for
     * the widths of the columns */

    for (col = 0; col < LOYALTY_AB_COLUMNS; col++) {
        width[col] = 0;
    }

    for (i = 0; i <= rep->nrows; i++) {
        r = (i == 0) ? NULL : &rep->rows[i - 1];

        for (col = 0; col < LOYALTY_AB_COLUMNS; col++) {
            len = loyalty_ab_cell(r, col, cell, sizeof(cell));

            if (len > width[col]) {
                width[col] = len;
            }
        }
    }

    for (i = 0; i <= rep->nrows; i++) {
        r = (i == 0) ? NULL : &rep->rows[i - 1];

        for (col = 0; col < LOYALTY_AB_COLUMNS; col++) {
            len = loyalty_ab_cell(r, col, cell, sizeof(cell));
            loyalty_ab_buf_add(b, cell, len);

            /* no trailing blanks after the last column */

            if (col + 1 < LOYALTY_AB_COLUMNS) {
                loyalty_ab_buf_pad(b, width[col] - len + 2);
            }
        }

        loyalty_ab_buf_str(b, "\n");
    }
}


/* formats one cell of the text table; r is NULL for the header */

static size_t
loyalty_ab_cell(const loyalty_ab_row_t *r, size_t col, char *buf,
    size_t size)
{
    int     n;
    char    pct[16];
    double  x;

    if (r == NULL) {
        n = snprintf(buf, size, "%s", loyalty_ab_headers[col]);
        goto done;
    }

    n = snprintf(buf, size, "-");

    switch (col) {

    case 0:
        n = snprintf(buf, size, "%s", r->name);
        break;

    case 1:
        if (r->configured) {
            loyalty_ab_percent_str(r->share, pct, sizeof(pct));
            n = snprintf(buf, size, "%s%%", pct);
        }
        break;

    case 2:
        n = snprintf(buf, size, "%llu", (unsigned long long) r->exposures);
        break;

    case 3:
        n = snprintf(buf, size, "%llu", (unsigned long long) r->conversions);
        break;

    case 4:
        x = r->conversion_rate * 100;

        if (r->exposures > 0 && isfinite(x)) {
            n = snprintf(buf, size, "%.2f%%", x);
        }
        break;

    case 5:
        if (isfinite(r->revenue)) {
            n = snprintf(buf, size, "%.2f", r->revenue);
        }
        break;

    case 6:
        if (r->exposures > 0 && isfinite(r->revenue_per_exposure)) {
            n = snprintf(buf, size, "%.2f", r->revenue_per_exposure);
        }
        break;

    case 7:
        x = r->uplift * 100;

        if (r->has_uplift && isfinite(x)) {
            n = snprintf(buf, size, "%+.2f%%", x);
        }
        break;

    default: /* 8 */
        if (r->has_p_value && isfinite(r->p_value)) {
            n = r->p_value < 0.0001
                ? snprintf(buf, size, "<0.0001")
                : snprintf(buf, size, "%.4f", r->p_value);
        }
        break;
    }

done:

    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }

    return (size_t) n < size ? (size_t) n : size - 1;
}


static void
loyalty_ab_buf_add(loyalty_ab_buf_t *b, const char *s, size_t len)
{
    char    *p;
    size_t   size;

    if (b->failed || len == 0) {
        return;
    }

    if (b->len + len + 1 > b->size) {
        size = b->size ? b->size : 1024;

        while (size < b->len + len + 1) {
            size *= 2;
        }

        p = realloc(b->data, size);

        if (p == NULL) {
            b->failed = 1;
            return;
        }

        b->data = p;
        b->size = size;
    }

    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}


static void
loyalty_ab_buf_str(loyalty_ab_buf_t *b, const char *s)
{
    loyalty_ab_buf_add(b, s, strlen(s));
}


/* numbers only: they fit the local buffer */

static void
loyalty_ab_buf_printf(loyalty_ab_buf_t *b, const char *fmt, ...)
{
    int      n;
    char     tmp[LOYALTY_AB_CELL_MAX];
    va_list  args;

    va_start(args, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, args);
    va_end(args);

    if (n < 0) {
        b->failed = 1;
        return;
    }

    loyalty_ab_buf_add(b, tmp, (size_t) n < sizeof(tmp) ? (size_t) n
                                                        : sizeof(tmp) - 1);
}


static void
loyalty_ab_buf_pad(loyalty_ab_buf_t *b, size_t n)
{
    size_t  k;

    static const char  spaces[] = "                                ";

    while (n > 0) {
        k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
        loyalty_ab_buf_add(b, spaces, k);
        n -= k;
    }
}


static char *
loyalty_ab_buf_done(loyalty_ab_buf_t *b, size_t *len)
{
    if (b->failed) {
        free(b->data);
        return NULL;
    }

    if (b->data == NULL) {
        b->data = malloc(1);

        if (b->data == NULL) {
            return NULL;
        }

        b->data[0] = '\0';
    }

    *len = b->len;

    return b->data;
}
