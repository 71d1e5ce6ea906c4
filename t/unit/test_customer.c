/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Unit tests of lib/loyalty_customer.c: field validation, dates and the
 * tier ladder.  Dates are checked against libc's timegm().
 *
 * tap.h's ok() evaluates its condition twice: only calls that give the
 * same result again (set_field with the same value) go inside it.
 */


#include "tap.h"
#include "loyalty_customer.h"

#include <stdint.h>
#include <time.h>

#include <jansson.h>


static int set(loyalty_customer_t *c, int field, const char *value,
    char *err);
static int quiet(const char *err, const char *value);
static int date_ok(const char *s, int with_year);
static int timegm_days(int y, int m, int d, int64_t *days);
static void test_fields(void);
static void test_segments(void);
static void test_offers(void);
static void test_dates(void);
static void test_ladder(void);
static void test_progress(void);


static char  errbuf[256];


static int
set(loyalty_customer_t *c, int field, const char *value, char *err)
{
    return loyalty_customer_set_field(c, field,
                                      (const unsigned char *) value,
                                      strlen(value), err, 256);
}


/* an error names no part of the value (values of 4 bytes and more) */

static int
quiet(const char *err, const char *value)
{
    return err[0] != '\0' && (strlen(value) < 4 || strstr(err, value) == NULL);
}


static int
date_ok(const char *s, int with_year)
{
    loyalty_date_t  d;

    return loyalty_date_parse((const unsigned char *) s, strlen(s),
                              with_year, &d);
}


/* 1 and the day number when timegm() keeps y-m-d as it is */

static int
timegm_days(int y, int m, int d, int64_t *days)
{
    time_t     t;
    struct tm  tm;

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    tm.tm_hour = 12;

    t = timegm(&tm);

    *days = (int64_t) (t - 12 * 3600) / 86400;

    return tm.tm_year == y - 1900 && tm.tm_mon == m - 1 && tm.tm_mday == d;
}


static void
test_fields(void)
{
    char                 tier33[34];
    loyalty_customer_t   c;

    loyalty_customer_init(&c);

    ok(c.fields == 0 && c.offers == NULL, "init: nothing set");

    ok(set(&c, LOYALTY_FIELD_TIER, "gold", errbuf) == 1 && errbuf[0] == '\0'
       && strcmp(c.tier, "gold") == 0
       && loyalty_customer_has(&c, LOYALTY_FIELD_TIER), "tier kept");

    memset(tier33, 'a', 33);
    tier33[33] = '\0';
    ok(set(&c, LOYALTY_FIELD_TIER, tier33 + 1, errbuf) == 1
       && strlen(c.tier) == 32, "tier of 32 kept");
    ok(set(&c, LOYALTY_FIELD_TIER, tier33, errbuf) == 0
       && !loyalty_customer_has(&c, LOYALTY_FIELD_TIER),
       "tier of 33 dropped, and the older value with it");
    ok(quiet(errbuf, tier33) && strstr(errbuf, "tier:") != NULL,
       "reason without the value: %s", errbuf);

    ok(set(&c, LOYALTY_FIELD_TIER, "gold<script>", errbuf) == 0
       && quiet(errbuf, "gold<script>"), "tier with markup dropped");
    ok(set(&c, LOYALTY_FIELD_TIER, "", errbuf) == 0, "empty tier dropped");
    ok(loyalty_customer_set_field(&c, LOYALTY_FIELD_TIER,
                                  (const unsigned char *) "go\0ld", 5,
                                  errbuf, sizeof(errbuf)) == 0,
       "tier with NUL dropped");

    ok(set(&c, LOYALTY_FIELD_POINTS, "0002850", errbuf) == 1
       && c.points == 2850, "points with leading zeros");
    ok(set(&c, LOYALTY_FIELD_POINTS, "999999999999999999", errbuf) == 1
       && c.points == LOYALTY_POINTS_MAX, "18 digits");
    ok(set(&c, LOYALTY_FIELD_POINTS, "1000000000000000000", errbuf) == 0
       && quiet(errbuf, "1000000000000000000")
       && !loyalty_customer_has(&c, LOYALTY_FIELD_POINTS), "19 digits");
    ok(set(&c, LOYALTY_FIELD_POINTS, "-1", errbuf) == 0, "negative");
    ok(set(&c, LOYALTY_FIELD_POINTS, "1e3", errbuf) == 0, "exponent");
    ok(set(&c, LOYALTY_FIELD_POINTS, " 1", errbuf) == 0, "space");

    ok(set(&c, LOYALTY_FIELD_CASHBACK, "12.50", errbuf) == 1
       && strcmp(c.cashback, "12.50") == 0, "cashback 12.50 kept as text");
    ok(set(&c, LOYALTY_FIELD_CASHBACK, "0012.5", errbuf) == 1
       && strcmp(c.cashback, "12.5") == 0, "leading zeros removed");
    ok(set(&c, LOYALTY_FIELD_CASHBACK, "000", errbuf) == 1
       && strcmp(c.cashback, "0") == 0, "000 is 0");
    ok(set(&c, LOYALTY_FIELD_CASHBACK, "00.05", errbuf) == 1
       && strcmp(c.cashback, "0.05") == 0, "00.05 is 0.05");
    ok(set(&c, LOYALTY_FIELD_CASHBACK, "123456789012.99", errbuf) == 1
       && strcmp(c.cashback, "123456789012.99") == 0, "longest cashback");
    ok(set(&c, LOYALTY_FIELD_CASHBACK, "1234567890123", errbuf) == 0
       && !loyalty_customer_has(&c, LOYALTY_FIELD_CASHBACK),
       "13 digits dropped");
    ok(set(&c, LOYALTY_FIELD_CASHBACK, "1.234", errbuf) == 0
       && quiet(errbuf, "1.234"), "3 decimals dropped: %s", errbuf);
    ok(set(&c, LOYALTY_FIELD_CASHBACK, "1.", errbuf) == 0, "1. dropped");
    ok(set(&c, LOYALTY_FIELD_CASHBACK, ".5", errbuf) == 0, ".5 dropped");
    ok(set(&c, LOYALTY_FIELD_CASHBACK, "-1", errbuf) == 0, "-1 dropped");
    ok(set(&c, LOYALTY_FIELD_CASHBACK, "1,5", errbuf) == 0, "1,5 dropped");
    ok(set(&c, LOYALTY_FIELD_CASHBACK, "1e2", errbuf) == 0, "1e2 dropped");
    ok(set(&c, LOYALTY_FIELD_CASHBACK, "1.2.3", errbuf) == 0,
       "1.2.3 dropped");
    ok(set(&c, LOYALTY_FIELD_CASHBACK, "", errbuf) == 0, "empty dropped");

    ok(set(&c, LOYALTY_FIELD_REFERRAL_CODE, "REF-42_x", errbuf) == 1
       && strcmp(c.referral_code, "REF-42_x") == 0, "referral code kept");
    ok(set(&c, LOYALTY_FIELD_REFERRAL_CODE, "REF 42", errbuf) == 0
       && strstr(errbuf, "referral_code:") != NULL
       && !loyalty_customer_has(&c, LOYALTY_FIELD_REFERRAL_CODE),
       "referral code with a space dropped");

    ok(set(&c, LOYALTY_FIELD_FIRST_ORDER, "2024-02-29", errbuf) == 1
       && c.first_order.year == 2024 && c.first_order.month == 2
       && c.first_order.day == 29, "first_order kept");
    ok(set(&c, LOYALTY_FIELD_FIRST_ORDER, "2023-02-29", errbuf) == 0
       && quiet(errbuf, "2023-02-29")
       && !loyalty_customer_has(&c, LOYALTY_FIELD_FIRST_ORDER),
       "first_order 2023-02-29 dropped");

    ok(set(&c, LOYALTY_FIELD_BIRTHDAY, "02-29", errbuf) == 1
       && c.birthday.year == 0 && c.birthday.month == 2
       && c.birthday.day == 29, "birthday 02-29 kept");
    ok(set(&c, LOYALTY_FIELD_BIRTHDAY, "1990-02-28", errbuf) == 0
       && !loyalty_customer_has(&c, LOYALTY_FIELD_BIRTHDAY),
       "birthday with a year dropped");

    ok(set(&c, LOYALTY_FIELD_COUNT, "x", errbuf) == 0
       && strstr(errbuf, "unknown field") != NULL, "unknown field");
    ok(set(&c, -1, "x", errbuf) == 0, "negative field");

    ok(loyalty_customer_set_field(&c, LOYALTY_FIELD_TIER, NULL, 0, errbuf,
                                  sizeof(errbuf)) == 0, "NULL value");

    ok(strcmp(loyalty_customer_field_name(LOYALTY_FIELD_TIER), "tier") == 0
       && strcmp(loyalty_customer_field_name(LOYALTY_FIELD_REFERRAL_CODE),
                 "referral_code") == 0
       && strcmp(loyalty_customer_field_name(LOYALTY_FIELD_OFFERS),
                 "offers") == 0
       && loyalty_customer_field_name(LOYALTY_FIELD_COUNT) == NULL,
       "field names");

    ok(loyalty_customer_set_field(&c, LOYALTY_FIELD_POINTS,
                                  (const unsigned char *) "7", 1, NULL, 0)
       == 1, "err may be NULL with err_len 0");
    ok(loyalty_customer_set_field(&c, LOYALTY_FIELD_POINTS,
                                  (const unsigned char *) "x", 1, NULL, 0)
       == 0, "and a dropped field is still reported by the return value");

    loyalty_customer_free(&c);

    ok(c.fields == 0 && c.offers == NULL, "free: record empty again");
}


static void
test_segments(void)
{
    int                  i;
    char                 list[512], *p;
    loyalty_customer_t   c;

    loyalty_customer_init(&c);

    ok(set(&c, LOYALTY_FIELD_SEGMENTS, "vip,,early_adopter,", errbuf) == 1
       && c.nsegments == 2 && strcmp(c.segments[0], "vip") == 0
       && strcmp(c.segments[1], "early_adopter") == 0,
       "segments: empty items ignored");
    ok(set(&c, LOYALTY_FIELD_SEGMENTS, "", errbuf) == 1 && c.nsegments == 0
       && loyalty_customer_has(&c, LOYALTY_FIELD_SEGMENTS),
       "empty list kept, no segment");
    ok(set(&c, LOYALTY_FIELD_SEGMENTS, ",,,", errbuf) == 1
       && c.nsegments == 0, "only commas");
    ok(set(&c, LOYALTY_FIELD_SEGMENTS, "vip, new", errbuf) == 0
       && c.nsegments == 0
       && !loyalty_customer_has(&c, LOYALTY_FIELD_SEGMENTS)
       && strstr(errbuf, "item 2") != NULL,
       "one bad item drops the whole field: %s", errbuf);
    ok(set(&c, LOYALTY_FIELD_SEGMENTS, "a,bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
           errbuf) == 0, "item of 33 characters");

    p = list;

    for (i = 0; i < 32; i++) {
        p += sprintf(p, "s%d,", i);
    }

    ok(set(&c, LOYALTY_FIELD_SEGMENTS, list, errbuf) == 1
       && c.nsegments == 32 && strcmp(c.segments[31], "s31") == 0,
       "32 segments");

    strcpy(p, "s32");

    ok(set(&c, LOYALTY_FIELD_SEGMENTS, list, errbuf) == 0
       && strstr(errbuf, "more than 32") != NULL, "33 segments: %s", errbuf);

    loyalty_customer_free(&c);
}


static void
test_offers(void)
{
    const char          *bad;
    loyalty_customer_t   c;

    loyalty_customer_init(&c);

    ok(set(&c, LOYALTY_FIELD_OFFERS,
           "[{\"id\":\"a\",\"title\":\"A\"},{\"id\":\"\",\"title\":\"x\"},"
           "{\"id\":1,\"title\":\"t\"},\"str\",{\"title\":\"t\"},"
           "{\"id\":\"b\",\"title\":\"B\",\"url\":\"/b\",\"n\":[1,2]}]",
           errbuf) == 1, "offers kept");
    ok(json_array_size(c.offers) == 2
       && strcmp(json_string_value(json_object_get(json_array_get(c.offers, 1),
                                                   "url")), "/b") == 0,
       "invalid elements dropped, others kept as given");
    ok(strstr(errbuf, "4 of 6") != NULL, "and counted: %s", errbuf);

    ok(set(&c, LOYALTY_FIELD_OFFERS, "[]", errbuf) == 1
       && json_array_size(c.offers) == 0 && errbuf[0] == '\0',
       "empty array replaces the older offers");

    ok(set(&c, LOYALTY_FIELD_OFFERS, "{\"id\":\"a\",\"title\":\"A\"}",
           errbuf) == 0 && c.offers == NULL
       && !loyalty_customer_has(&c, LOYALTY_FIELD_OFFERS),
       "not an array: dropped (%s)", errbuf);

    bad = "[{\"id\":\"secretvalue\",\"title\":tru}]";
    ok(set(&c, LOYALTY_FIELD_OFFERS, bad, errbuf) == 0
       && quiet(errbuf, "secretvalue") && strstr(errbuf, "tru") == NULL,
       "invalid JSON: dropped without quoting it (%s)", errbuf);

    ok(set(&c, LOYALTY_FIELD_OFFERS,
           "[{\"id\":\"a\",\"id\":\"b\",\"title\":\"t\"}]", errbuf) == 0,
       "duplicate keys: dropped");
    ok(set(&c, LOYALTY_FIELD_OFFERS, "[] x", errbuf) == 0,
       "trailing garbage: dropped");
    ok(set(&c, LOYALTY_FIELD_OFFERS, "[{\"id\":\"a\",\"title\":\"t\"}]",
           errbuf) == 1 && json_array_size(c.offers) == 1,
       "valid again");

    loyalty_customer_free(&c);
}


static void
test_dates(void)
{
    int      y, m, d, bad, valid, ref, mism;
    int64_t  days, want;

    ok(loyalty_date_days(1970, 1, 1) == 0, "1970-01-01 is day 0");
    ok(loyalty_date_days(2000, 3, 1) == 11017, "2000-03-01");
    ok(loyalty_date_days(1, 1, 1) == -719162, "0001-01-01");
    ok(loyalty_date_days(9999, 12, 31) == 2932896, "9999-12-31");

    bad = 0;
    mism = 0;

    for (y = 1899; y <= 2101; y++) {
        for (m = 1; m <= 12; m++) {
            for (d = 1; d <= 31; d++) {
                valid = loyalty_date_valid(y, m, d);
                ref = timegm_days(y, m, d, &want);

                if (valid != ref) {
                    bad++;
                }

                if (valid) {
                    days = loyalty_date_days(y, m, d);

                    if (days != want) {
                        mism++;
                    }
                }
            }
        }
    }

    ok(bad == 0, "validity agrees with timegm 1899-2101 (%d differ)", bad);
    ok(mism == 0, "day numbers agree with timegm (%d differ)", mism);

    ok(loyalty_date_days(2026, 1, 1) - loyalty_date_days(2025, 12, 31) == 1,
       "Dec 31 to Jan 1 is one day");
    ok(loyalty_date_days(2024, 3, 1) - loyalty_date_days(2024, 2, 28) == 2,
       "leap February");

    ok(date_ok("2024-02-29", 1), "2024-02-29");
    ok(date_ok("2000-02-29", 1), "2000-02-29");
    ok(!date_ok("1900-02-29", 1), "1900-02-29");
    ok(!date_ok("2023-02-29", 1), "2023-02-29");
    ok(!date_ok("2024-04-31", 1), "2024-04-31");
    ok(!date_ok("2024-13-01", 1), "month 13");
    ok(!date_ok("2024-00-10", 1), "month 0");
    ok(!date_ok("2024-01-00", 1), "day 0");
    ok(!date_ok("0000-01-01", 1), "year 0");
    ok(date_ok("0001-01-01", 1) && date_ok("9999-12-31", 1), "year range");
    ok(!date_ok("2024-1-01", 1), "one-digit month");
    ok(!date_ok("2024/01/01", 1), "slashes");
    ok(!date_ok("2024-01-01 ", 1), "trailing space");
    ok(!date_ok("+024-01-01", 1), "sign");
    ok(!date_ok("2024-01-+1", 1), "sign in day");
    ok(!date_ok("", 1) && !date_ok("", 0), "empty");

    ok(date_ok("02-29", 0), "birthday 02-29");
    ok(!date_ok("02-30", 0), "birthday 02-30");
    ok(date_ok("12-31", 0) && date_ok("01-01", 0), "birthday 12-31, 01-01");
    ok(!date_ok("04-31", 0), "birthday 04-31");
    ok(!date_ok("13-01", 0) && !date_ok("00-01", 0), "birthday months");
    ok(!date_ok("2-29", 0) && !date_ok("02-29-", 0), "birthday format");
}


static void
test_ladder(void)
{
    int                i, rc;
    char               name[16], label[130];
    loyalty_ladder_t   l;

    loyalty_ladder_init(&l);

#define ADD(n, min, lab)                                                     \
    loyalty_ladder_add(&l, (const unsigned char *) (n), strlen(n), (min),    \
                       (const unsigned char *) (lab), strlen(lab), errbuf,   \
                       sizeof(errbuf))

    rc = ADD("bronze", 0, "");
    ok(rc == 0, "bronze");
    rc = ADD("silver", 1000, "Silver");
    ok(rc == 0, "silver");
    rc = ADD("gold", 2000, "Gold & Co");
    ok(rc == 0, "gold");
    rc = ADD("platinum", 5000, "\xd0\x9f\xd0\xbb");
    ok(rc == 0, "platinum, UTF-8");
    ok(l.ntiers == 4, "four tiers");

    rc = ADD("gold", 9000, "");
    ok(rc == -1
       && strcmp(errbuf, "duplicate tier \"gold\"") == 0, "%s", errbuf);
    rc = ADD("diamond", 2000, "");
    ok(rc == -1
       && strstr(errbuf, "same min_points 2000") != NULL, "%s", errbuf);
    rc = ADD("diamond", 3000, "");
    ok(rc == -1
       && strcmp(errbuf, "tiers must be given in ascending min_points order")
          == 0, "out of order: %s", errbuf);
    rc = ADD("dia mond", 9000, "");
    ok(rc == -1
       && strstr(errbuf, "invalid tier name") != NULL, "%s", errbuf);
    rc = ADD("", 9000, "");
    ok(rc == -1, "empty name");
    rc = ADD("diamond", 9000, "a\nb");
    ok(rc == -1
       && strstr(errbuf, "control") != NULL, "%s", errbuf);
    rc = ADD("diamond", 9000, "\xff");
    ok(rc == -1, "label not UTF-8");
    rc = ADD("diamond", 9000, "\xed\xa0\x80");
    ok(rc == -1, "label with a surrogate");
    rc = ADD("diamond", LOYALTY_POINTS_MAX + 1, "");
    ok(rc == -1
       && strstr(errbuf, "above") != NULL, "%s", errbuf);

    memset(label, 'x', 129);
    label[129] = '\0';
    rc = ADD("diamond", 9000, label);
    ok(rc == -1
       && strstr(errbuf, "longer than 128") != NULL, "%s", errbuf);
    ok(l.ntiers == 4, "nothing added by the failures");

    label[128] = '\0';
    rc = ADD("diamond", 9000, label);
    ok(rc == 0 && l.tiers[4].label_len == 128,
       "label of 128 bytes");

    ok(loyalty_ladder_find(&l, (const unsigned char *) "gold", 4) == 2
       && loyalty_ladder_find(&l, (const unsigned char *) "Gold", 4) == -1
       && loyalty_ladder_find(&l, (const unsigned char *) "gol", 3) == -1,
       "find: exact and case-sensitive");

    loyalty_ladder_init(&l);

    for (i = 0; i < LOYALTY_LADDER_MAX; i++) {
        sprintf(name, "t%d", i);

        if (ADD(name, (uint64_t) i * 10, "") != 0) {
            break;
        }
    }

    ok(i == LOYALTY_LADDER_MAX, "32 tiers");
    rc = ADD("t32", 1000, "");
    ok(rc == -1
       && strstr(errbuf, "more than 32 tiers") != NULL, "%s", errbuf);

#undef ADD
}


static void
test_progress(void)
{
    char                 err[128];
    loyalty_ladder_t     l;
    loyalty_progress_t   p;

    loyalty_ladder_init(&l);
    loyalty_ladder_add(&l, (const unsigned char *) "bronze", 6, 0, NULL, 0,
                       err, sizeof(err));
    loyalty_ladder_add(&l, (const unsigned char *) "silver", 6, 1000,
                       (const unsigned char *) "Silver", 6, err, sizeof(err));
    loyalty_ladder_add(&l, (const unsigned char *) "gold", 4, 2000,
                       (const unsigned char *) "Gold", 4, err, sizeof(err));
    loyalty_ladder_add(&l, (const unsigned char *) "platinum", 8, 5000,
                       NULL, 0, err, sizeof(err));

#define PROGRESS(t, pts)                                                     \
    loyalty_ladder_progress(&l, (const unsigned char *) (t), strlen(t),      \
                            (pts), &p)

    PROGRESS("bronze", 0);
    ok(p.found && p.has_next && p.progress == 0.0 && p.points_to_next == 1000
       && strcmp(p.next_tier, "silver") == 0 && p.next_tier_len == 6
       && p.label_len == 0 && strcmp(p.label, "") == 0,
       "bottom tier at 0 points");

    PROGRESS("silver", 1000);
    ok(p.found && p.has_next && p.progress == 0.0 && p.points_to_next == 1000
       && strcmp(p.label, "Silver") == 0 && p.label_len == 6,
       "exactly at the tier's minimum: 0");

    PROGRESS("silver", 1999);
    ok(p.has_next && p.points_to_next == 1 && p.progress > 0.998
       && p.progress < 1.0, "one below the next tier: %.5f", p.progress);

    PROGRESS("gold", 2850);
    ok(p.has_next && p.points_to_next == 2150
       && p.progress > 0.2833 && p.progress < 0.2834
       && strcmp(p.next_tier, "platinum") == 0, "between: %.5f", p.progress);

    PROGRESS("gold", 1500);
    ok(p.found && p.has_next && p.progress == 0.0 && p.points_to_next == 3500,
       "points below the tier's minimum: 0");

    PROGRESS("silver", 2500);
    ok(p.found && p.has_next && p.progress == 1.0 && p.points_to_next == 0,
       "points past the next minimum: 1, nothing to go");

    PROGRESS("platinum", 5000);
    ok(p.found && !p.has_next && p.progress == 1.0 && p.next_tier == NULL
       && p.label_len == 0, "top tier at its minimum: 1, no next tier");

    PROGRESS("platinum", LOYALTY_POINTS_MAX);
    ok(p.found && !p.has_next && p.progress == 1.0, "far above the top");

    PROGRESS("platinum", 10);
    ok(p.found && !p.has_next && p.progress == 1.0,
       "top tier below its minimum: still 1");

    PROGRESS("diamond", 100);
    ok(!p.found && !p.has_next && p.label != NULL && p.label_len == 0,
       "tier not in the ladder");

    PROGRESS("Gold", 2000);
    ok(!p.found, "tier names are case-sensitive");

    loyalty_ladder_init(&l);
    PROGRESS("gold", 2000);
    ok(!p.found, "empty ladder");

#undef PROGRESS
}


int
main(void)
{
    test_fields();
    test_segments();
    test_offers();
    test_dates();
    test_ladder();
    test_progress();

    return done_testing();
}
