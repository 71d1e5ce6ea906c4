/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Unit tests of lib/loyalty_fragment.c: exact fragment text, escaping
 * for a <script> element, and every output read back by jansson.
 *
 * tap.h's ok() evaluates its condition twice: results are computed
 * first, then checked.
 */


#include "tap.h"
#include "loyalty_fragment.h"
#include "loyalty_offers.h"

#include <stdlib.h>


/* "Platina" in Cyrillic, 14 bytes of UTF-8 */
#define PLATINUM                                                             \
    "\xd0\x9f\xd0\xbb\xd0\xb0\xd1\x82\xd0\xb8\xd0\xbd\xd0\xb0"


static char *fragment(const char *status, const loyalty_customer_t *c,
    const loyalty_progress_t *p, const json_t *offers,
    const json_t *experiments);
static const char *shown(const char *s);
static int script_safe(const char *s);
static json_t *parse(const char *s);
static const char *progress_text(double progress);
static void test_anonymous(void);
static void test_full(void);
static void test_partial(void);
static void test_progress(void);
static void test_escaping(void);
static void test_script_safe(void);


static loyalty_ladder_t  ladder;


/* the fragment, with its length checked and its text script-safe */

static char *
fragment(const char *status, const loyalty_customer_t *c,
    const loyalty_progress_t *p, const json_t *offers,
    const json_t *experiments)
{
    char    *s;
    size_t   len;

    len = (size_t) -1;
    s = loyalty_fragment(status, c, p, offers, experiments, &len);

    if (s == NULL || len != strlen(s) || !script_safe(s)) {
        printf("# bad fragment: %s\n", shown(s));
        free(s);
        return NULL;
    }

    return s;
}


static const char *
shown(const char *s)
{
    return s != NULL ? s : "NULL";
}


/* printable ASCII only, and none of < > & */

static int
script_safe(const char *s)
{
    const unsigned char  *p;

    for (p = (const unsigned char *) s; *p; p++) {
        if (*p < 0x20 || *p > 0x7e || *p == '<' || *p == '>' || *p == '&') {
            return 0;
        }
    }

    return 1;
}


static json_t *
parse(const char *s)
{
    json_error_t  error;

    return s ? json_loads(s, JSON_REJECT_DUPLICATES, &error) : NULL;
}


static const char *
progress_text(double progress)
{
    char                *s;
    const char          *v;
    static char          buf[64];
    loyalty_customer_t   c;
    loyalty_progress_t   p;

    loyalty_customer_init(&c);
    memset(&p, 0, sizeof(p));
    p.found = 1;
    p.label = "";
    p.progress = progress;

    s = fragment("ok", &c, &p, NULL, NULL);

    if (s == NULL) {
        return "NULL";
    }

    v = strstr(s, "\"progress\":");
    snprintf(buf, sizeof(buf), "%s", v ? v + 11 : "none");

    if (strchr(buf, '}')) {
        *strchr(buf, '}') = '\0';
    }

    free(s);

    return buf;
}


static void
test_anonymous(void)
{
    char                *s;
    size_t               len;
    json_t              *offers, *exps, *j;
    loyalty_progress_t   p;

    s = loyalty_fragment("anonymous", NULL, NULL, NULL, NULL, &len);
    ok(s != NULL && strcmp(s, "{\"status\":\"anonymous\"}") == 0
       && len == strlen(s), "anonymous: %s", shown(s));

    j = parse(s);
    ok(j != NULL && json_object_size(j) == 1
       && strcmp(json_string_value(json_object_get(j, "status")),
                 "anonymous") == 0, "parses back");
    json_decref(j);
    free(s);

    offers = json_loads("[{\"id\":\"a\",\"title\":\"A\"}]", 0, NULL);
    exps = json_loads("{\"hero\":\"b\"}", 0, NULL);
    memset(&p, 0, sizeof(p));
    p.found = 1;
    p.label = "";

    s = fragment("anonymous", NULL, &p, offers, exps);
    ok(s != NULL
       && strcmp(s, "{\"status\":\"anonymous\","
                    "\"experiments\":{\"hero\":\"b\"}}") == 0,
       "no customer: status and experiments only, whatever else is given");
    free(s);

    s = fragment("timeout", NULL, NULL, NULL, NULL);
    ok(s != NULL && strcmp(s, "{\"status\":\"timeout\"}") == 0, "%s",
       shown(s));
    free(s);

    s = loyalty_fragment("bad\xff", NULL, NULL, NULL, NULL, &len);
    ok(s == NULL, "status not UTF-8: NULL");

    json_decref(offers);
    json_decref(exps);
}


static void
test_full(void)
{
    int                  n;
    char                *s, err[256];
    json_t              *cat, *offers, *exps, *j, *want;
    const char          *f[LOYALTY_FIELD_COUNT];
    loyalty_customer_t   c;
    loyalty_progress_t   p;

    memset(f, 0, sizeof(f));
    f[LOYALTY_FIELD_TIER] = "gold";
    f[LOYALTY_FIELD_POINTS] = "0002850";
    f[LOYALTY_FIELD_CASHBACK] = "0012.50";
    f[LOYALTY_FIELD_SEGMENTS] = "vip,,early_adopter";
    f[LOYALTY_FIELD_FIRST_ORDER] = "2025-12-20";
    f[LOYALTY_FIELD_BIRTHDAY] = "01-15";
    f[LOYALTY_FIELD_REFERRAL_CODE] = "REF-42";
    f[LOYALTY_FIELD_OFFERS] = "[{\"id\":\"p1\",\"title\":\"Yours\"}]";

    loyalty_customer_init(&c);

    for (n = 0; n < LOYALTY_FIELD_COUNT; n++) {
        if (loyalty_customer_set_field(&c, n, (const unsigned char *) f[n],
                                       strlen(f[n]), err, sizeof(err))
            != 1)
        {
            printf("# field %d: %s\n", n, err);
        }
    }

    loyalty_ladder_progress(&ladder, (const unsigned char *) "gold", 4,
                            c.points, &p);

    n = loyalty_catalog_parse(T("[{\"id\":\"c1\",\"title\":\"Gold week\","
                                "\"min_tier\":\"gold\",\"discount\":15},"
                                "{\"id\":\"c2\",\"title\":\"Platinum\","
                                "\"min_tier\":\"platinum\"}]"),
                              &cat, err, sizeof(err));
    ok(n == 0, "catalog");

    offers = loyalty_offers_eligible(&c, cat, &ladder, 2026, 1, 10, 5);
    exps = json_loads("{\"hero\":\"b\",\"checkout\":\"a\"}", 0, NULL);

    s = fragment("ok", &c, &p, offers, exps);

    ok(s != NULL
       && strcmp(s, "{\"status\":\"ok\",\"tier\":\"gold\","
                    "\"label\":\"Gold \\u0026 Co\",\"points\":2850,"
                    "\"next_tier\":\"platinum\",\"points_to_next\":1150,"
                    "\"progress\":0.425,\"cashback\":12.50,"
                    "\"referral_code\":\"REF-42\","
                    "\"segments\":[\"vip\",\"early_adopter\"],"
                    "\"offers\":[{\"id\":\"p1\",\"title\":\"Yours\"},"
                    "{\"id\":\"c1\",\"title\":\"Gold week\","
                    "\"discount\":15}],"
                    "\"experiments\":{\"hero\":\"b\",\"checkout\":\"a\"}}")
          == 0, "full record: %s", shown(s));

    j = parse(s);
    want = json_loads("{\"status\":\"ok\",\"tier\":\"gold\","
                      "\"label\":\"Gold & Co\",\"points\":2850,"
                      "\"next_tier\":\"platinum\",\"points_to_next\":1150,"
                      "\"progress\":0.425,\"cashback\":12.5,"
                      "\"referral_code\":\"REF-42\","
                      "\"segments\":[\"vip\",\"early_adopter\"]}", 0, NULL);
    json_object_set(want, "offers", offers);
    json_object_set(want, "experiments", exps);

    ok(j != NULL && json_equal(j, want), "parses back to the same values");
    ok(json_is_integer(json_object_get(j, "points"))
       && json_is_real(json_object_get(j, "cashback")), "number types");

    json_decref(want);
    json_decref(j);
    free(s);

    /* empty collections are left out */

    json_decref(exps);
    exps = json_object();
    json_array_clear(offers);

    s = fragment("ok", &c, &p, offers, exps);
    ok(s != NULL && strstr(s, "offers") == NULL
       && strstr(s, "experiments") == NULL, "empty offers and experiments");
    free(s);

    s = fragment("ok", &c, &p, exps, offers);
    ok(s != NULL && strstr(s, "offers") == NULL
       && strstr(s, "experiments") == NULL, "wrong types: left out");
    free(s);

    json_decref(exps);
    json_decref(offers);
    json_decref(cat);
    loyalty_customer_free(&c);
}


static void
test_partial(void)
{
    char                *s, err[128];
    loyalty_customer_t   c;
    loyalty_progress_t   p;

    loyalty_customer_init(&c);
    loyalty_customer_set_field(&c, LOYALTY_FIELD_TIER,
                               (const unsigned char *) "vip_x", 5, err,
                               sizeof(err));
    loyalty_customer_set_field(&c, LOYALTY_FIELD_POINTS,
                               (const unsigned char *) "5", 1, err,
                               sizeof(err));
    loyalty_customer_set_field(&c, LOYALTY_FIELD_SEGMENTS,
                               (const unsigned char *) ",", 1, err,
                               sizeof(err));

    loyalty_ladder_progress(&ladder, (const unsigned char *) "vip_x", 5,
                            c.points, &p);

    s = fragment("ok", &c, &p, NULL, NULL);
    ok(s != NULL
       && strcmp(s, "{\"status\":\"ok\",\"tier\":\"vip_x\",\"points\":5}")
          == 0, "tier not in the ladder, no segments: %s", shown(s));
    free(s);

    s = fragment("ok", &c, NULL, NULL, NULL);
    ok(s != NULL
       && strcmp(s, "{\"status\":\"ok\",\"tier\":\"vip_x\",\"points\":5}")
          == 0, "no progress given");
    free(s);

    loyalty_customer_set_field(&c, LOYALTY_FIELD_TIER,
                               (const unsigned char *) "platinum", 8, err,
                               sizeof(err));
    loyalty_ladder_progress(&ladder, (const unsigned char *) "platinum", 8,
                            c.points, &p);

    s = fragment("ok", &c, &p, NULL, NULL);
    ok(s != NULL
       && strcmp(s, "{\"status\":\"ok\",\"tier\":\"platinum\","
                    "\"label\":\"\\u041F\\u043B\\u0430\\u0442\\u0438"
                    "\\u043D\\u0430\",\"points\":5,\"progress\":1}") == 0,
       "top tier: progress 1, no next tier, label escaped: %s", shown(s));
    free(s);

    loyalty_customer_init(&c);

    s = fragment("ok", &c, NULL, NULL, NULL);
    ok(s != NULL && strcmp(s, "{\"status\":\"ok\"}") == 0, "empty record");
    free(s);
}


static void
test_progress(void)
{
    ok(strcmp(progress_text(0.0), "0") == 0, "progress 0");
    ok(strcmp(progress_text(1.0), "1") == 0, "progress 1");
    ok(strcmp(progress_text(0.5), "0.5") == 0, "progress 0.5");
    ok(strcmp(progress_text(0.05), "0.05") == 0, "progress 0.05");
    ok(strcmp(progress_text(0.425), "0.425") == 0, "progress 0.425");
    ok(strcmp(progress_text(0.1), "0.1") == 0, "progress 0.1");
    ok(strcmp(progress_text(0.12345), "0.123") == 0, "progress 0.12345");
    ok(strcmp(progress_text(0.1236), "0.124") == 0, "progress 0.1236");
    ok(strcmp(progress_text(0.0004), "0") == 0, "progress 0.0004");
    ok(strcmp(progress_text(0.0006), "0.001") == 0, "progress 0.0006");
    ok(strcmp(progress_text(0.99967), "0.999") == 0,
       "progress 0.99967: not full before the next tier");
    ok(strcmp(progress_text(-0.5), "0") == 0, "progress negative: 0");
    ok(strcmp(progress_text(7.0), "1") == 0, "progress above 1: 1");
}


static void
test_escaping(void)
{
    char                *s;
    size_t               i;
    json_t              *offers, *j;
    loyalty_customer_t   c;

    offers = json_pack("[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}, {s:s, s:s},"
                       " {s:s, s:s, s:s}]",
                       "id", "a", "title", "</script><script>alert(1)",
                       "id", "b", "title", "<!--<script>",
                       "id", "c", "title", "Fish &amp; chips & more",
                       "id", "d", "title", "line\xe2\x80\xa8sep\xe2\x80\xa9x",
                       "id", "e", "title", "caf\xc3\xa9 \xf0\x9f\x8e\x81",
                       "url", "/x?a=1&b=<2>");

    loyalty_customer_init(&c);

    s = fragment("ok", &c, NULL, offers, NULL);

    ok(s != NULL, "fragment with hostile titles: %s", shown(s));
    ok(s != NULL
       && strstr(s, "\\u003c/script\\u003e\\u003cscript\\u003ealert(1)")
          != NULL, "</script> escaped");
    ok(s != NULL && strstr(s, "\\u003c!--\\u003cscript\\u003e") != NULL,
       "<!-- escaped");
    ok(s != NULL && strstr(s, "Fish \\u0026amp; chips \\u0026 more") != NULL,
       "&amp; escaped");
    ok(s != NULL && strstr(s, "line\\u2028sep\\u2029x") != NULL,
       "U+2028 and U+2029 escaped");
    ok(s != NULL && strstr(s, "caf\\u00E9 \\uD83C\\uDF81") != NULL,
       "non-ASCII escaped, surrogate pairs");
    ok(s != NULL && strstr(s, "/x?a=1\\u0026b=\\u003c2\\u003e") != NULL,
       "pass-through members escaped");

    j = parse(s);
    ok(j != NULL && json_equal(json_object_get(j, "offers"), offers),
       "parses back to the same titles");

    for (i = 0; i < json_array_size(offers); i++) {
        ok(strcmp(json_string_value(json_object_get(json_array_get(
                      json_object_get(j, "offers"), i), "title")),
                  json_string_value(json_object_get(json_array_get(offers, i),
                                                    "title"))) == 0,
           "title %d read back", (int) i);
    }

    json_decref(j);
    free(s);
    json_decref(offers);
}


static void
test_script_safe(void)
{
    char        *s;
    size_t       len;
    json_t      *a, *b;
    const char  *in;

    s = loyalty_json_script_safe(T("{\"a\":\"<>&\"}"), &len);
    ok(s != NULL && strcmp(s, "{\"a\":\"\\u003c\\u003e\\u0026\"}") == 0
       && len == strlen(s), "%s", shown(s));
    free(s);

    /* raw U+2028: a fragment dumped without JSON_ENSURE_ASCII */

    in = "[\"a\xe2\x80\xa8" "b\xe2\x80\xa9" "c\xe2\x80\xaa\"]";
    s = loyalty_json_script_safe(in, strlen(in), &len);
    ok(s != NULL && strcmp(s, "[\"a\\u2028b\\u2029c\xe2\x80\xaa\"]") == 0,
       "raw U+2028/U+2029 escaped, U+202A left");

    a = json_loads(in, 0, NULL);
    b = parse(s);
    ok(a != NULL && b != NULL && json_equal(a, b), "same value");
    json_decref(a);
    json_decref(b);
    free(s);

    s = loyalty_json_script_safe(T("\"\xe2\x80\""), &len);
    ok(s != NULL && len == 4 && memcmp(s, "\"\xe2\x80\"", 4) == 0,
       "truncated sequence left as it is");
    free(s);

    s = loyalty_json_script_safe(T("{\"a\x7f\":\"\x7f\"}"), &len);
    ok(s != NULL && strcmp(s, "{\"a\\u007f\":\"\\u007f\"}") == 0,
       "DEL escaped: %s", shown(s));
    free(s);

    s = loyalty_json_script_safe("", 0, &len);
    ok(s != NULL && len == 0 && s[0] == '\0', "empty");
    free(s);

    s = loyalty_json_script_safe(T("\"&\""), NULL);
    ok(s != NULL && strcmp(s, "\"\\u0026\"") == 0, "out_len may be NULL");
    free(s);
}


int
main(void)
{
    char  err[128];

    loyalty_ladder_init(&ladder);
    loyalty_ladder_add(&ladder, (const unsigned char *) "silver", 6, 1000,
                       (const unsigned char *) "Silver", 6, err, sizeof(err));
    loyalty_ladder_add(&ladder, (const unsigned char *) "gold", 4, 2000,
                       (const unsigned char *) "Gold & Co", 9, err,
                       sizeof(err));
    loyalty_ladder_add(&ladder, (const unsigned char *) "platinum", 8, 4000,
                       (const unsigned char *) PLATINUM,
                       sizeof(PLATINUM) - 1, err, sizeof(err));

    test_anonymous();
    test_full();
    test_partial();
    test_progress();
    test_escaping();
    test_script_safe();

    return done_testing();
}
