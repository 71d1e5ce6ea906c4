/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Unit tests of lib/loyalty_offers.c: catalog parsing and every
 * eligibility condition, alone and combined, around month and year ends.
 *
 * tap.h's ok() evaluates its condition twice: results are computed
 * first, then checked.
 */


#include "tap.h"
#include "loyalty_offers.h"


#define OFFER(id, cond)                                                      \
    "{\"id\":\"" id "\",\"title\":\"T\"" cond "}"


static void customer(loyalty_customer_t *c, const char *tier,
    const char *points, const char *segments, const char *first_order,
    const char *birthday, const char *offers);
static const char *ids(const loyalty_customer_t *c, const char *catalog,
    int y, int m, int d, size_t max);
static const char *one(const loyalty_customer_t *c, const char *cond, int y,
    int m, int d);
static void test_parse(void);
static void test_conditions(void);
static void test_dates(void);
static void test_combined(void);
static void test_output(void);


static loyalty_ladder_t  ladder;
static char              idbuf[512];


static void
customer(loyalty_customer_t *c, const char *tier, const char *points,
    const char *segments, const char *first_order, const char *birthday,
    const char *offers)
{
    int          i;
    char         err[256];
    const char  *v[LOYALTY_FIELD_COUNT];

    memset(v, 0, sizeof(v));
    v[LOYALTY_FIELD_TIER] = tier;
    v[LOYALTY_FIELD_POINTS] = points;
    v[LOYALTY_FIELD_SEGMENTS] = segments;
    v[LOYALTY_FIELD_FIRST_ORDER] = first_order;
    v[LOYALTY_FIELD_BIRTHDAY] = birthday;
    v[LOYALTY_FIELD_OFFERS] = offers;

    loyalty_customer_free(c);

    for (i = 0; i < LOYALTY_FIELD_COUNT; i++) {
        if (v[i] != NULL
            && loyalty_customer_set_field(c, i, (const unsigned char *) v[i],
                                          strlen(v[i]), err, sizeof(err))
               != 1)
        {
            printf("# bad test record: %s\n", err);
        }
    }
}


/* the ids of the eligible offers, comma-separated; "ERR" on failure */

static const char *
ids(const loyalty_customer_t *c, const char *catalog, int y, int m, int d,
    size_t max)
{
    int      n;
    char     err[256];
    size_t   i;
    json_t  *cat, *list, *offer;

    cat = NULL;
    n = loyalty_catalog_parse(catalog, strlen(catalog), &cat, err,
                              sizeof(err));

    if (n < 0) {
        return "ERR";
    }

    list = loyalty_offers_eligible(c, cat, &ladder, y, m, d, max);

    if (list == NULL) {
        json_decref(cat);
        return "ERR";
    }

    idbuf[0] = '\0';

    json_array_foreach(list, i, offer) {
        if (i) {
            strcat(idbuf, ",");
        }

        strcat(idbuf, json_string_value(json_object_get(offer, "id")));
    }

    json_decref(list);
    json_decref(cat);

    return idbuf;
}


/* "x" when the one offer with these conditions is eligible, else "" */

static const char *
one(const loyalty_customer_t *c, const char *cond, int y, int m, int d)
{
    char  catalog[1024];

    snprintf(catalog, sizeof(catalog), "[{\"id\":\"x\",\"title\":\"T\"%s}]",
             cond);

    return ids(c, catalog, y, m, d, 10);
}


static void
test_parse(void)
{
    int          n;
    char         err[256];
    json_t      *cat, *keep;
    const char  *text;

    text = "[" OFFER("a", "") ","
           "{\"id\":\"\",\"title\":\"empty id\"},"
           "{\"title\":\"no id\"},"
           "{\"id\":\"b\",\"title\":7},"
           "42,"
           OFFER("c", ",\"min_points\":\"100\"") ","
           OFFER("d", ",\"tiers\":\"gold\"") ","
           OFFER("e", ",\"tiers\":[]") ","
           OFFER("f", ",\"tiers\":[\"gold tier\"]") ","
           OFFER("g", ",\"min_tier\":5") ","
           OFFER("h", ",\"segments\":[1]") ","
           OFFER("i", ",\"from\":\"2026-02-30\"") ","
           OFFER("j", ",\"until\":\"2026-1-1\"") ","
           OFFER("k", ",\"first_order_within_days\":-1") ","
           OFFER("l", ",\"first_order_within_days\":1.5") ","
           OFFER("m", ",\"birthday_month\":1") ","
           OFFER("n", ",\"min_points\":1.0") ","
           OFFER("z", ",\"min_points\":-3,\"birthday_month\":false,"
                      "\"first_order_within_days\":0") "]";

    cat = NULL;
    n = loyalty_catalog_parse(text, strlen(text), &cat, err, sizeof(err));

    ok(n == 16, "16 offers left out: %d", n);
    ok(strcmp(err, "offer 2: not an object with a non-empty string \"id\" "
                   "and a string \"title\"") == 0, "first reason: %s", err);
    ok(json_array_size(cat) == 2
       && strcmp(json_string_value(json_object_get(json_array_get(cat, 1),
                                                   "id")), "z") == 0,
       "a and z kept");
    json_decref(cat);

    text = "[" OFFER("a", ",\"from\":\"2026-13-01\"") "]";
    n = loyalty_catalog_parse(text, strlen(text), &cat, err, sizeof(err));
    ok(n == 1 && strcmp(err, "offer 1: \"from\" is not a date as YYYY-MM-DD")
                 == 0, "%s", err);
    ok(json_array_size(cat) == 0, "empty catalog");
    json_decref(cat);

    text = "[" OFFER("a", "") "]";
    n = loyalty_catalog_parse(text, strlen(text), &cat, err, sizeof(err));
    ok(n == 0 && err[0] == '\0' && json_array_size(cat) == 1,
       "clean catalog: 0, no message");
    json_decref(cat);

    keep = json_array();

#define BAD(t, what)                                                         \
    cat = keep;                                                              \
    n = loyalty_catalog_parse((t), strlen(t), &cat, err, sizeof(err));       \
    ok(n == -1 && cat == keep, what ": %s", err)

    BAD("{\"id\":\"a\",\"title\":\"A\"}", "object");
    BAD("nope", "not JSON");
    BAD("", "empty");
    BAD("[" OFFER("a", "") "] x", "trailing garbage");
    BAD("[{\"id\":\"a\",\"id\":\"b\",\"title\":\"t\"}]", "duplicate keys");
    BAD("[{\"id\":\"a\",\"title\":\"t\",\"n\":99999999999999999999}]",
        "integer above int64");

#undef BAD

    json_decref(keep);
}


static void
test_conditions(void)
{
    const char          *r;
    loyalty_customer_t   c, bare;

    loyalty_customer_init(&c);
    loyalty_customer_init(&bare);

    customer(&c, "gold", "2500", "vip,new", "2025-12-20", "01-15", NULL);
    customer(&bare, "gold", "2500", NULL, NULL, NULL, NULL);

    r = one(&c, "", 2026, 1, 10);
    ok(strcmp(r, "x") == 0, "no condition: eligible");

    r = one(&c, ",\"tiers\":[\"silver\",\"gold\"]", 2026, 1, 10);
    ok(strcmp(r, "x") == 0, "tiers: listed");
    r = one(&c, ",\"tiers\":[\"silver\",\"Gold\"]", 2026, 1, 10);
    ok(strcmp(r, "") == 0, "tiers: not listed (case-sensitive)");

    r = one(&c, ",\"min_tier\":\"silver\"", 2026, 1, 10);
    ok(strcmp(r, "x") == 0, "min_tier: lower tier");
    r = one(&c, ",\"min_tier\":\"gold\"", 2026, 1, 10);
    ok(strcmp(r, "x") == 0, "min_tier: same tier");
    r = one(&c, ",\"min_tier\":\"platinum\"", 2026, 1, 10);
    ok(strcmp(r, "") == 0, "min_tier: higher tier");
    r = one(&c, ",\"min_tier\":\"diamond\"", 2026, 1, 10);
    ok(strcmp(r, "") == 0, "min_tier: not in the ladder");

    r = one(&c, ",\"min_points\":2500", 2026, 1, 10);
    ok(strcmp(r, "x") == 0, "min_points: equal");
    r = one(&c, ",\"min_points\":2501", 2026, 1, 10);
    ok(strcmp(r, "") == 0, "min_points: one above");
    r = one(&c, ",\"min_points\":0", 2026, 1, 10);
    ok(strcmp(r, "x") == 0, "min_points: 0");
    r = one(&c, ",\"min_points\":-5", 2026, 1, 10);
    ok(strcmp(r, "x") == 0, "min_points: negative");
    r = one(&c, ",\"min_points\":9223372036854775807", 2026, 1, 10);
    ok(strcmp(r, "") == 0, "min_points: int64 max");

    r = one(&c, ",\"segments\":[\"other\",\"new\"]", 2026, 1, 10);
    ok(strcmp(r, "x") == 0, "segments: one shared");
    r = one(&c, ",\"segments\":[\"other\"]", 2026, 1, 10);
    ok(strcmp(r, "") == 0, "segments: none shared");
    r = one(&bare, ",\"segments\":[\"vip\"]", 2026, 1, 10);
    ok(strcmp(r, "") == 0, "segments: customer without segments");

    r = one(&c, ",\"birthday_month\":false", 2026, 6, 10);
    ok(strcmp(r, "x") == 0, "birthday_month false: no condition");
    r = one(&bare, ",\"birthday_month\":false", 2026, 6, 10);
    ok(strcmp(r, "x") == 0, "birthday_month false, no birthday");
    r = one(&bare, ",\"birthday_month\":true", 2026, 1, 15);
    ok(strcmp(r, "") == 0, "birthday_month true, no birthday");
    r = one(&bare, ",\"first_order_within_days\":9999", 2026, 1, 10);
    ok(strcmp(r, "") == 0, "first_order_within_days, no first order");

    customer(&bare, "vip_x", "2500", NULL, NULL, NULL, NULL);
    r = one(&bare, ",\"min_tier\":\"bronze\"", 2026, 1, 10);
    ok(strcmp(r, "") == 0, "min_tier: customer tier not in the ladder");
    r = one(&bare, ",\"tiers\":[\"vip_x\"]", 2026, 1, 10);
    ok(strcmp(r, "x") == 0, "tiers: any name, ladder or not");

    customer(&bare, NULL, NULL, NULL, NULL, NULL, NULL);
    r = one(&bare, ",\"tiers\":[\"gold\"]", 2026, 1, 10);
    ok(strcmp(r, "") == 0, "tiers: no tier");
    r = one(&bare, ",\"min_tier\":\"bronze\"", 2026, 1, 10);
    ok(strcmp(r, "") == 0, "min_tier: no tier");
    r = one(&bare, ",\"min_points\":0", 2026, 1, 10);
    ok(strcmp(r, "") == 0, "min_points: no points");

    loyalty_customer_free(&c);
    loyalty_customer_free(&bare);
}


static void
test_dates(void)
{
    const char          *r;
    loyalty_customer_t   c;

    loyalty_customer_init(&c);
    customer(&c, "gold", "2500", NULL, "2025-12-20", "01-15", NULL);

#define WINDOW  ",\"from\":\"2025-12-31\",\"until\":\"2026-01-01\""

    r = one(&c, WINDOW, 2025, 12, 30);
    ok(strcmp(r, "") == 0, "from: the day before");
    r = one(&c, WINDOW, 2025, 12, 31);
    ok(strcmp(r, "x") == 0, "from: the day itself (Dec 31)");
    r = one(&c, WINDOW, 2026, 1, 1);
    ok(strcmp(r, "x") == 0, "until: the day itself (Jan 1)");
    r = one(&c, WINDOW, 2026, 1, 2);
    ok(strcmp(r, "") == 0, "until: the day after");

#undef WINDOW

    r = one(&c, ",\"from\":\"2024-02-29\"", 2024, 2, 28);
    ok(strcmp(r, "") == 0, "from Feb 29: Feb 28");
    r = one(&c, ",\"from\":\"2024-02-29\"", 2024, 2, 29);
    ok(strcmp(r, "x") == 0, "from Feb 29: Feb 29");
    r = one(&c, ",\"until\":\"2024-02-29\"", 2024, 3, 1);
    ok(strcmp(r, "") == 0, "until Feb 29: Mar 1");
    r = one(&c, ",\"until\":\"2023-02-28\"", 2023, 3, 1);
    ok(strcmp(r, "") == 0, "until Feb 28 (common year): Mar 1");

    r = one(&c, ",\"first_order_within_days\":30", 2025, 12, 19);
    ok(strcmp(r, "") == 0, "first order: the day before it");
    r = one(&c, ",\"first_order_within_days\":30", 2025, 12, 20);
    ok(strcmp(r, "x") == 0, "first order: the day itself");
    r = one(&c, ",\"first_order_within_days\":30", 2026, 1, 19);
    ok(strcmp(r, "x") == 0, "first order: day 30, across the year end");
    r = one(&c, ",\"first_order_within_days\":30", 2026, 1, 20);
    ok(strcmp(r, "") == 0, "first order: day 31");
    r = one(&c, ",\"first_order_within_days\":0", 2025, 12, 21);
    ok(strcmp(r, "") == 0, "first order, 0 days: the next day");

    customer(&c, "gold", "2500", NULL, "2025-12-31", "12-31", NULL);
    r = one(&c, ",\"first_order_within_days\":1", 2026, 1, 1);
    ok(strcmp(r, "x") == 0, "first order Dec 31, 1 day: Jan 1");
    r = one(&c, ",\"first_order_within_days\":1", 2026, 1, 2);
    ok(strcmp(r, "") == 0, "first order Dec 31, 1 day: Jan 2");

    customer(&c, "gold", "2500", NULL, "2024-02-28", "02-29", NULL);
    r = one(&c, ",\"first_order_within_days\":1", 2024, 2, 29);
    ok(strcmp(r, "x") == 0, "first order Feb 28 (leap), 1 day: Feb 29");
    r = one(&c, ",\"first_order_within_days\":1", 2024, 3, 1);
    ok(strcmp(r, "") == 0, "first order Feb 28 (leap), 1 day: Mar 1");

    customer(&c, "gold", "2500", NULL, "2023-02-28", "02-29", NULL);
    r = one(&c, ",\"first_order_within_days\":1", 2023, 3, 1);
    ok(strcmp(r, "x") == 0, "first order Feb 28 (common), 1 day: Mar 1");

    /* birthday 02-29 */

    r = one(&c, ",\"birthday_month\":true", 2025, 2, 28);
    ok(strcmp(r, "x") == 0, "birthday Feb 29: Feb 28 of a common year");
    r = one(&c, ",\"birthday_month\":true", 2024, 2, 29);
    ok(strcmp(r, "x") == 0, "birthday Feb 29: Feb 29");
    r = one(&c, ",\"birthday_month\":true", 2025, 3, 1);
    ok(strcmp(r, "") == 0, "birthday Feb 29: Mar 1");
    r = one(&c, ",\"birthday_month\":true", 2025, 1, 31);
    ok(strcmp(r, "") == 0, "birthday Feb 29: Jan 31");

    customer(&c, "gold", "2500", NULL, NULL, "12-31", NULL);
    r = one(&c, ",\"birthday_month\":true", 2025, 12, 1);
    ok(strcmp(r, "x") == 0, "birthday Dec 31: Dec 1");
    r = one(&c, ",\"birthday_month\":true", 2025, 12, 31);
    ok(strcmp(r, "x") == 0, "birthday Dec 31: Dec 31");
    r = one(&c, ",\"birthday_month\":true", 2026, 1, 1);
    ok(strcmp(r, "") == 0, "birthday Dec 31: Jan 1");

    customer(&c, "gold", "2500", NULL, NULL, "01-01", NULL);
    r = one(&c, ",\"birthday_month\":true", 2025, 12, 31);
    ok(strcmp(r, "") == 0, "birthday Jan 1: Dec 31");
    r = one(&c, ",\"birthday_month\":true", 2026, 1, 1);
    ok(strcmp(r, "x") == 0, "birthday Jan 1: Jan 1");

    /* a bad "today" fails every date condition, and only those */

    r = one(&c, ",\"from\":\"2000-01-01\"", 2026, 2, 30);
    ok(strcmp(r, "") == 0, "invalid today: from fails");
    r = one(&c, ",\"birthday_month\":true", 2026, 1, 32);
    ok(strcmp(r, "") == 0, "invalid today: birthday_month fails");
    r = one(&c, ",\"min_points\":1", 2026, 2, 30);
    ok(strcmp(r, "x") == 0, "invalid today: other conditions still hold");

    loyalty_customer_free(&c);
}


static void
test_combined(void)
{
    const char          *r, *catalog;
    loyalty_customer_t   c;

    loyalty_customer_init(&c);
    customer(&c, "gold", "2500", "vip,new", "2025-12-20", "01-15",
             "[{\"id\":\"p1\",\"title\":\"P1\"},"
             "{\"id\":\"p2\",\"title\":\"P2\",\"min_points\":999999}]");

#define ALL                                                                  \
    ",\"tiers\":[\"gold\",\"platinum\"],\"min_tier\":\"silver\","            \
    "\"min_points\":2000,\"segments\":[\"vip\"],\"from\":\"2026-01-01\","    \
    "\"until\":\"2026-01-31\",\"first_order_within_days\":30,"               \
    "\"birthday_month\":true"

    r = one(&c, ALL, 2026, 1, 15);
    ok(strcmp(r, "p1,p2,x") == 0, "all conditions hold: %s", r);
    r = one(&c, ALL, 2026, 1, 20);
    ok(strcmp(r, "p1,p2") == 0, "all but the first-order window");
    r = one(&c, ALL ",\"min_points\":3000", 2026, 1, 15);
    ok(strcmp(r, "ERR") == 0, "duplicate key: the catalog is refused");

    customer(&c, "silver", "2500", "vip,new", "2025-12-20", "01-15", NULL);
    r = one(&c, ALL, 2026, 1, 15);
    ok(strcmp(r, "") == 0, "all but tiers");

    customer(&c, "gold", "1999", "vip,new", "2025-12-20", "01-15", NULL);
    r = one(&c, ALL, 2026, 1, 15);
    ok(strcmp(r, "") == 0, "all but min_points");

    customer(&c, "gold", "2500", "new", "2025-12-20", "01-15", NULL);
    r = one(&c, ALL, 2026, 1, 15);
    ok(strcmp(r, "") == 0, "all but segments");

    customer(&c, "gold", "2500", "vip", "2025-12-20", "02-15", NULL);
    r = one(&c, ALL, 2026, 1, 15);
    ok(strcmp(r, "") == 0, "all but birthday_month");

#undef ALL

    /* order and cap: personal first, then the catalog in its order */

    customer(&c, "gold", "2500", "vip", NULL, NULL,
             "[{\"id\":\"p1\",\"title\":\"P1\"},"
             "{\"id\":\"p2\",\"title\":\"P2\"}]");

    catalog = "[" OFFER("c1", "") ","
              OFFER("no", ",\"min_points\":3000") ","
              OFFER("c2", ",\"segments\":[\"vip\"]") ","
              OFFER("c3", ",\"min_tier\":\"bronze\"") "]";

    r = ids(&c, catalog, 2026, 1, 1, 10);
    ok(strcmp(r, "p1,p2,c1,c2,c3") == 0, "order: %s", r);
    r = ids(&c, catalog, 2026, 1, 1, 5);
    ok(strcmp(r, "p1,p2,c1,c2,c3") == 0, "cap equal to the count");
    r = ids(&c, catalog, 2026, 1, 1, 4);
    ok(strcmp(r, "p1,p2,c1,c2") == 0, "cap 4: %s", r);
    r = ids(&c, catalog, 2026, 1, 1, 2);
    ok(strcmp(r, "p1,p2") == 0, "cap 2: personal offers only");
    r = ids(&c, catalog, 2026, 1, 1, 1);
    ok(strcmp(r, "p1") == 0, "cap 1");
    r = ids(&c, catalog, 2026, 1, 1, 0);
    ok(strcmp(r, "") == 0, "cap 0: nothing");

    loyalty_customer_free(&c);
}


static void
test_output(void)
{
    int                  n;
    char                 err[256];
    json_t              *cat, *list, *o, *expect, *bad;
    const char          *text;
    loyalty_customer_t   c;

    loyalty_customer_init(&c);
    customer(&c, "gold", "2500", "vip", NULL, NULL,
             "[{\"id\":\"p\",\"title\":\"P\",\"min_points\":1,\"x\":null}]");

    text = "[{\"id\":\"c\",\"title\":\"C\",\"badge\":\"new\","
           "\"tiers\":[\"gold\"],\"url\":\"/c?a=1&b=2\",\"code\":\"SAVE10\","
           "\"min_tier\":\"silver\",\"min_points\":1,\"segments\":[\"vip\"],"
           "\"discount\":10,\"from\":\"2026-01-01\",\"until\":\"2026-12-31\","
           "\"first_order_within_days\":100000,\"birthday_month\":false,"
           "\"extra\":{\"a\":[1,true,null],\"tiers\":\"kept\"}}]";

    n = loyalty_catalog_parse(text, strlen(text), &cat, err, sizeof(err));
    ok(n == 0, "catalog parsed: %s", err);

    customer(&c, "gold", "2500", "vip", "2025-12-20", NULL,
             "[{\"id\":\"p\",\"title\":\"P\",\"min_points\":1,\"x\":null}]");

    list = loyalty_offers_eligible(&c, cat, &ladder, 2026, 1, 10, 10);

    expect = json_loads("[{\"id\":\"p\",\"title\":\"P\",\"min_points\":1,"
                        "\"x\":null},{\"id\":\"c\",\"title\":\"C\","
                        "\"badge\":\"new\",\"url\":\"/c?a=1&b=2\","
                        "\"code\":\"SAVE10\",\"discount\":10,"
                        "\"extra\":{\"a\":[1,true,null],\"tiers\":\"kept\"}}]",
                        0, NULL);

    ok(list != NULL && json_equal(list, expect),
       "conditions stripped, other members kept, personal offers as given");

    o = json_array_get(list, 1);
    ok(o != NULL && json_object_get(o, "from") == NULL
       && json_object_get(o, "birthday_month") == NULL, "no condition left");

    ok(json_object_get(json_array_get(cat, 0), "tiers") != NULL,
       "the catalog itself is unchanged");

    json_decref(expect);
    json_decref(list);

    /* a catalog built by hand: malformed offers are still never shown */

    bad = json_loads("[{\"id\":\"a\",\"title\":\"A\",\"min_points\":\"1\"},"
                     "{\"id\":\"b\"},7,"
                     "{\"id\":\"c\",\"title\":\"C\"}]", 0, NULL);

    list = loyalty_offers_eligible(&c, bad, &ladder, 2026, 1, 10, 10);
    ok(json_array_size(list) == 2
       && strcmp(json_string_value(json_object_get(json_array_get(list, 1),
                                                   "id")), "c") == 0,
       "unparsed catalog: malformed and invalid offers skipped");
    json_decref(list);

    list = loyalty_offers_eligible(&c, NULL, &ladder, 2026, 1, 10, 10);
    ok(json_array_size(list) == 1, "no catalog: personal offers only");
    json_decref(list);

    json_decref(bad);

    list = loyalty_offers_eligible(&c, cat, NULL, 2026, 1, 10, 10);
    ok(json_array_size(list) == 1, "no ladder: min_tier fails");
    json_decref(list);

    json_decref(cat);
    loyalty_customer_free(&c);
}


int
main(void)
{
    char  err[128];

    loyalty_ladder_init(&ladder);
    loyalty_ladder_add(&ladder, (const unsigned char *) "bronze", 6, 0,
                       NULL, 0, err, sizeof(err));
    loyalty_ladder_add(&ladder, (const unsigned char *) "silver", 6, 1000,
                       NULL, 0, err, sizeof(err));
    loyalty_ladder_add(&ladder, (const unsigned char *) "gold", 4, 2000,
                       NULL, 0, err, sizeof(err));
    loyalty_ladder_add(&ladder, (const unsigned char *) "platinum", 8, 5000,
                       NULL, 0, err, sizeof(err));

    test_parse();
    test_conditions();
    test_dates();
    test_combined();
    test_output();

    return done_testing();
}
