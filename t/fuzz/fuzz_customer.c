/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Fuzz target: loyalty_customer_set_field, loyalty_ladder_progress,
 * loyalty_offers_eligible and loyalty_fragment.
 *
 * The input is up to 16 lines, each a field and a raw hash value: the
 * first byte modulo 16 is the field index ("0" tier ... "7" offers, "8"
 * to "?" unknown), the rest of the line the value.  They are applied in
 * order to a record that starts as tier gold, points 2500.  Each result
 * is checked against a reference rule written here, and the reason for
 * a dropped field is made of a small alphabet, so that no value with
 * other characters can be repeated in it.  Then the fragment for the
 * record, its ladder progress and the offers of a fixed catalog must be
 * printable ASCII without "<", ">" or "&" and read back with jansson to
 * the record's values.
 */


#include "fuzz.h"
#include "loyalty_customer.h"
#include "loyalty_fragment.h"
#include "loyalty_offers.h"

#include <time.h>


#define FUZZ_LINES  16

/* every character the reasons of set_field are made of */
#define FUZZ_ERR_CHARS                                                       \
    " \"(),-.:[]_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"                       \
    "abcdefghijklmnopqrstuvwxyz"

#define FUZZ_CATALOG                                                         \
    "[{\"id\":\"c1\",\"title\":\"Gold & up\",\"min_tier\":\"gold\"},"        \
    "{\"id\":\"c2\",\"title\":\"</script>\",\"segments\":[\"vip\"]},"        \
    "{\"id\":\"c3\",\"title\":\"Birthday\",\"birthday_month\":true},"        \
    "{\"id\":\"c4\",\"title\":\"Welcome\",\"first_order_within_days\":30},"  \
    "{\"id\":\"c5\",\"title\":\"Big\",\"min_points\":100000,"                \
    "\"tiers\":[\"platinum\",\"gold\"]},"                                    \
    "{\"id\":\"c6\",\"title\":\"Jan\",\"from\":\"2026-01-01\","              \
    "\"until\":\"2026-01-31\",\"url\":\"/?a=1&b=2\"}]"


static void fuzz_init(void);
static void fuzz_set(const unsigned char *line, size_t len);
static int fuzz_name_ref(const unsigned char *p, size_t len);
static int fuzz_digits(const unsigned char *p, size_t len);
static int fuzz_cashback_ref(const unsigned char *p, size_t len);
static int fuzz_date_ref(const unsigned char *p, size_t len, int with_year);
static int fuzz_segments_ref(const unsigned char *p, size_t len);
static int fuzz_offers_ref(const unsigned char *p, size_t len);
static void fuzz_fragment(void);
static void fuzz_check_text(const char *s, size_t len);


static loyalty_customer_t  fuzz_c;
static loyalty_ladder_t    fuzz_ladder;
static json_t             *fuzz_catalog;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             n;
    char            err[128];
    size_t          start, i;
    unsigned char  *line;

    fuzz_init();

    loyalty_customer_init(&fuzz_c);
    FUZZ_CHECK(loyalty_customer_set_field(&fuzz_c, LOYALTY_FIELD_TIER,
                                          (const unsigned char *) "gold", 4,
                                          err, sizeof(err)) == 1);
    FUZZ_CHECK(loyalty_customer_set_field(&fuzz_c, LOYALTY_FIELD_POINTS,
                                          (const unsigned char *) "2500", 4,
                                          err, sizeof(err)) == 1);

    n = 0;
    start = 0;

    for (i = 0; i <= size && n < FUZZ_LINES; i++) {
        if (i < size && data[i] != '\n') {
            continue;
        }

        if (i > start) {

            /* a copy of the exact size: ASan sees a read past either end */

            line = malloc(i - start);
            FUZZ_CHECK(line != NULL);
            memcpy(line, data + start, i - start);

            fuzz_set(line, i - start);

            free(line);
            n++;
        }

        start = i + 1;
    }

    fuzz_fragment();

    loyalty_customer_free(&fuzz_c);
    FUZZ_CHECK(fuzz_c.offers == NULL && fuzz_c.fields == 0);

    return 0;
}


static void
fuzz_init(void)
{
    int          n;
    char         err[256];
    static int   done;    /* ladder and catalog set up */

    if (done) {
        return;
    }

    loyalty_ladder_init(&fuzz_ladder);

    FUZZ_CHECK(loyalty_ladder_add(&fuzz_ladder,
                                  (const unsigned char *) "bronze", 6, 0,
                                  NULL, 0, err, sizeof(err)) == 0);
    FUZZ_CHECK(loyalty_ladder_add(&fuzz_ladder,
                                  (const unsigned char *) "silver", 6, 1000,
                                  (const unsigned char *) "<Silver>", 8,
                                  err, sizeof(err)) == 0);
    FUZZ_CHECK(loyalty_ladder_add(&fuzz_ladder,
                                  (const unsigned char *) "gold", 4, 2000,
                                  (const unsigned char *) "Gold & Co", 9,
                                  err, sizeof(err)) == 0);
    FUZZ_CHECK(loyalty_ladder_add(&fuzz_ladder,
                                  (const unsigned char *) "platinum", 8,
                                  5000, NULL, 0, err, sizeof(err)) == 0);

    n = loyalty_catalog_parse(FUZZ_CATALOG, sizeof(FUZZ_CATALOG) - 1,
                              &fuzz_catalog, err, sizeof(err));
    FUZZ_CHECK(n == 0 && json_array_size(fuzz_catalog) == 6);

    done = 1;
}


static void
fuzz_set(const unsigned char *line, size_t len)
{
    int                   field, rc, ref;
    char                  err[128];
    size_t                i, vlen;
    const unsigned char  *value;

    field = line[0] % 16;
    value = line + 1;
    vlen = len - 1;

    memset(err, 'x', sizeof(err));

    rc = loyalty_customer_set_field(&fuzz_c, field, value, vlen, err,
                                    sizeof(err));

    FUZZ_CHECK(rc == 0 || rc == 1);
    FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);

    /*
     * Messages are fixed texts with numbers in them, so a value could
     * spell a piece of one (the fuzzer finds them through memcmp): what
     * can be checked is that no character outside that alphabet, and so
     * no value holding one, ever shows up in a message.
     */

    for (i = 0; err[i]; i++) {
        FUZZ_CHECK(strchr(FUZZ_ERR_CHARS, err[i]) != NULL);
    }

    if (field >= LOYALTY_FIELD_COUNT) {
        FUZZ_CHECK(rc == 0 && err[0] != '\0');
        return;
    }

    FUZZ_CHECK(loyalty_customer_has(&fuzz_c, field) == rc);

    FUZZ_CHECK(rc == 1 || err[0] != '\0');

    switch (field) {

    case LOYALTY_FIELD_TIER:
    case LOYALTY_FIELD_REFERRAL_CODE:
        ref = fuzz_name_ref(value, vlen);
        FUZZ_CHECK(rc == ref);

        if (rc) {
            FUZZ_CHECK(memcmp(field == LOYALTY_FIELD_TIER
                              ? fuzz_c.tier : fuzz_c.referral_code,
                              value, vlen) == 0);
        }

        break;

    case LOYALTY_FIELD_POINTS:
        FUZZ_CHECK(rc == (vlen >= 1 && vlen <= 18 && fuzz_digits(value, vlen)));
        FUZZ_CHECK(!rc || fuzz_c.points <= LOYALTY_POINTS_MAX);
        break;

    case LOYALTY_FIELD_CASHBACK:
        FUZZ_CHECK(rc == fuzz_cashback_ref(value, vlen));

        if (rc) {
            FUZZ_CHECK(strlen(fuzz_c.cashback) <= vlen);
            FUZZ_CHECK(memcmp(fuzz_c.cashback,
                              value + vlen - strlen(fuzz_c.cashback),
                              strlen(fuzz_c.cashback)) == 0);
            FUZZ_CHECK(fuzz_c.cashback[0] != '0'
                       || fuzz_c.cashback[1] == '\0'
                       || fuzz_c.cashback[1] == '.');
        }

        break;

    case LOYALTY_FIELD_SEGMENTS:
        FUZZ_CHECK(rc == fuzz_segments_ref(value, vlen));
        FUZZ_CHECK(fuzz_c.nsegments <= LOYALTY_SEGMENTS_MAX);
        FUZZ_CHECK(rc || fuzz_c.nsegments == 0);

        for (i = 0; i < fuzz_c.nsegments; i++) {
            FUZZ_CHECK(fuzz_name_ref((const unsigned char *)
                                     fuzz_c.segments[i],
                                     strlen(fuzz_c.segments[i])));
        }

        break;

    case LOYALTY_FIELD_FIRST_ORDER:
        FUZZ_CHECK(rc == fuzz_date_ref(value, vlen, 1));
        break;

    case LOYALTY_FIELD_BIRTHDAY:
        FUZZ_CHECK(rc == fuzz_date_ref(value, vlen, 0));
        break;

    case LOYALTY_FIELD_OFFERS:
        FUZZ_CHECK(rc == fuzz_offers_ref(value, vlen));
        FUZZ_CHECK(rc == (fuzz_c.offers != NULL));

        if (rc) {
            FUZZ_CHECK(json_is_array(fuzz_c.offers));

            for (i = 0; i < json_array_size(fuzz_c.offers); i++) {
                FUZZ_CHECK(loyalty_offer_valid(json_array_get(fuzz_c.offers,
                                                              i)));
            }
        }

        break;
    }
}


static int
fuzz_name_ref(const unsigned char *p, size_t len)
{
    size_t  i;

    if (len < 1 || len > 32) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!(fuzz_digits(p + i, 1)
              || (p[i] >= 'a' && p[i] <= 'z')
              || (p[i] >= 'A' && p[i] <= 'Z')
              || p[i] == '_' || p[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


static int
fuzz_digits(const unsigned char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
    }

    return 1;
}


/* [0-9]{1,12}(\.[0-9]{1,2})? */

static int
fuzz_cashback_ref(const unsigned char *p, size_t len)
{
    const unsigned char  *dot;

    dot = memchr(p, '.', len);

    if (dot == NULL) {
        return len >= 1 && len <= 12 && fuzz_digits(p, len);
    }

    return dot - p >= 1 && dot - p <= 12 && fuzz_digits(p, dot - p)
           && len - (dot - p) - 1 >= 1 && len - (dot - p) - 1 <= 2
           && fuzz_digits(dot + 1, len - (dot - p) - 1);
}


/* a real date when timegm() gives back the same fields */

static int
fuzz_date_ref(const unsigned char *p, size_t len, int with_year)
{
    int        y, m, d;
    struct tm  tm;

    if (with_year) {
        if (len != 10 || !fuzz_digits(p, 4) || p[4] != '-') {
            return 0;
        }

        y = (p[0] - '0') * 1000 + (p[1] - '0') * 100 + (p[2] - '0') * 10
            + (p[3] - '0');
        p += 5;

        if (y == 0) {
            return 0;
        }

    } else {
        if (len != 5) {
            return 0;
        }

        y = 2000;
    }

    if (!fuzz_digits(p, 2) || p[2] != '-' || !fuzz_digits(p + 3, 2)) {
        return 0;
    }

    m = (p[0] - '0') * 10 + (p[1] - '0');
    d = (p[3] - '0') * 10 + (p[4] - '0');

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    tm.tm_hour = 12;

    (void) timegm(&tm);

    return tm.tm_year == y - 1900 && tm.tm_mon == m - 1 && tm.tm_mday == d;
}


static int
fuzz_segments_ref(const unsigned char *p, size_t len)
{
    size_t                n, rest;
    const unsigned char  *comma;

    n = 0;

    while (len) {
        comma = memchr(p, ',', len);
        rest = comma ? (size_t) (comma - p) : len;

        if (rest) {
            if (!fuzz_name_ref(p, rest) || ++n > 32) {
                return 0;
            }
        }

        if (comma == NULL) {
            break;
        }

        len -= rest + 1;
        p = comma + 1;
    }

    return 1;
}


static int
fuzz_offers_ref(const unsigned char *p, size_t len)
{
    int      ok;
    json_t  *j;

    j = json_loadb((const char *) p, len, JSON_REJECT_DUPLICATES, NULL);
    ok = json_is_array(j);
    json_decref(j);

    return ok;
}


static void
fuzz_fragment(void)
{
    char                *s;
    size_t               len, i;
    json_t              *offers, *j, *v;
    loyalty_progress_t   p;

    /* a dropped tier or points leave nothing behind in the record */

    FUZZ_CHECK(loyalty_customer_has(&fuzz_c, LOYALTY_FIELD_TIER)
               || fuzz_c.tier[0] == '\0');
    FUZZ_CHECK(loyalty_customer_has(&fuzz_c, LOYALTY_FIELD_POINTS)
               || fuzz_c.points == 0);

    loyalty_ladder_progress(&fuzz_ladder,
                            (const unsigned char *) fuzz_c.tier,
                            strlen(fuzz_c.tier), fuzz_c.points, &p);

    FUZZ_CHECK(p.progress >= 0.0 && p.progress <= 1.0);
    FUZZ_CHECK(!p.has_next || p.found);

    offers = loyalty_offers_eligible(&fuzz_c, fuzz_catalog, &fuzz_ladder,
                                     2026, 1, 15, 5);
    FUZZ_CHECK(offers != NULL && json_array_size(offers) <= 5);

    s = loyalty_fragment("ok", &fuzz_c, &p, offers, NULL, &len);

    FUZZ_CHECK(s != NULL);
    fuzz_check_text(s, len);

    j = json_loadb(s, len, JSON_REJECT_DUPLICATES, NULL);

    FUZZ_CHECK(json_is_object(j));
    FUZZ_CHECK(strcmp(json_string_value(json_object_get(j, "status")), "ok")
               == 0);

    v = json_object_get(j, "tier");
    FUZZ_CHECK(loyalty_customer_has(&fuzz_c, LOYALTY_FIELD_TIER)
               ? strcmp(json_string_value(v), fuzz_c.tier) == 0 : v == NULL);

    v = json_object_get(j, "points");
    FUZZ_CHECK(loyalty_customer_has(&fuzz_c, LOYALTY_FIELD_POINTS)
               ? json_is_integer(v)
                 && (uint64_t) json_integer_value(v) == fuzz_c.points
               : v == NULL);

    v = json_object_get(j, "cashback");
    FUZZ_CHECK(loyalty_customer_has(&fuzz_c, LOYALTY_FIELD_CASHBACK)
               ? json_is_number(v)
                 && json_number_value(v) == strtod(fuzz_c.cashback, NULL)
               : v == NULL);

    v = json_object_get(j, "referral_code");
    FUZZ_CHECK(loyalty_customer_has(&fuzz_c, LOYALTY_FIELD_REFERRAL_CODE)
               ? strcmp(json_string_value(v), fuzz_c.referral_code) == 0
               : v == NULL);

    v = json_object_get(j, "segments");
    FUZZ_CHECK(json_array_size(v) == fuzz_c.nsegments);

    for (i = 0; i < json_array_size(v); i++) {
        FUZZ_CHECK(strcmp(json_string_value(json_array_get(v, i)),
                          fuzz_c.segments[i]) == 0);
    }

    v = json_object_get(j, "progress");
    FUZZ_CHECK(p.found ? json_is_number(v) && json_number_value(v) >= 0
                         && json_number_value(v) <= 1
                       : v == NULL);

    v = json_object_get(j, "offers");
    FUZZ_CHECK(json_array_size(offers) ? json_equal(v, offers) : v == NULL);

    json_decref(j);
    free(s);
    json_decref(offers);
}


/* printable ASCII, none of < > &, as long as it says */

static void
fuzz_check_text(const char *s, size_t len)
{
    size_t  i;

    FUZZ_CHECK(strlen(s) == len);

    for (i = 0; i < len; i++) {
        FUZZ_CHECK(s[i] >= 0x20 && s[i] <= 0x7e);
        FUZZ_CHECK(s[i] != '<' && s[i] != '>' && s[i] != '&');
    }
}
