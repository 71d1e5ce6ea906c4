/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Fuzz target: loyalty_catalog_parse, loyalty_offers_eligible,
 * loyalty_fragment and loyalty_json_script_safe.
 *
 * The whole input is a catalog.  A parsed catalog holds only valid
 * offers.  The offers eligible for a fixed customer (on a date and with
 * a cap picked by a hash of the input) are at most the cap, start with
 * the customer's personal offers, and are catalog offers in catalog
 * order, each with its members but the conditions.  The fragment built
 * from them is printable ASCII without "<", ">" or "&", and reads back
 * to the same offers.  The input itself, made script-safe, has none of
 * "<", ">", "&" either and, when it is JSON, the same value.
 */


#include "fuzz.h"
#include "loyalty_customer.h"
#include "loyalty_fragment.h"
#include "loyalty_offers.h"


#define FUZZ_MAX_CAP  8


typedef struct {
    int  y;
    int  m;
    int  d;
} fuzz_date_t;


static void fuzz_init(void);
static void fuzz_script_safe(const char *text, size_t len);
static void fuzz_eligible(const json_t *catalog, uint64_t h);
static void fuzz_check_offer(const json_t *out, const json_t *catalog,
    size_t *from);
static int fuzz_same_offer(const json_t *out, const json_t *src);
static int fuzz_is_condition(const char *key);
static void fuzz_check_text(const char *s, size_t len);
static uint64_t fuzz_hash(const uint8_t *data, size_t size);


static const char          *fuzz_conditions[] = {
    "tiers", "min_tier", "min_points", "segments", "from", "until",
    "first_order_within_days", "birthday_month", NULL
};

/* around month, year and leap-day ends; the last one is not a date */
static const fuzz_date_t    fuzz_dates[] = {
    { 2026, 1, 15 }, { 2025, 12, 31 }, { 2026, 1, 1 }, { 2024, 2, 29 },
    { 2025, 2, 28 }, { 2025, 3, 1 }, { 2026, 1, 19 }, { 2026, 2, 30 }
};

static loyalty_customer_t   fuzz_customer;
static loyalty_ladder_t     fuzz_ladder;
static loyalty_progress_t   fuzz_progress;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int      n;
    char     err[256];
    char    *text;
    size_t   i;
    json_t  *catalog, *offer;

    fuzz_init();

    /* a copy of the exact size: ASan sees a read past either end */

    text = malloc(size ? size : 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);

    fuzz_script_safe(text, size);

    catalog = NULL;
    memset(err, 'x', sizeof(err));

    n = loyalty_catalog_parse(text, size, &catalog, err, sizeof(err));

    FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    FUZZ_CHECK(n >= -1);

    if (n == -1) {
        FUZZ_CHECK(catalog == NULL);
        FUZZ_CHECK(err[0] != '\0');

        /* a missing or unusable catalog still shows the personal offers */

        fuzz_eligible(NULL, fuzz_hash(data, size));
        free(text);
        return 0;
    }

    FUZZ_CHECK(json_is_array(catalog));
    FUZZ_CHECK((n == 0) == (err[0] == '\0'));

    json_array_foreach(catalog, i, offer) {
        FUZZ_CHECK(loyalty_offer_valid(offer));
    }

    fuzz_eligible(catalog, fuzz_hash(data, size));

    json_decref(catalog);
    free(text);

    return 0;
}


static void
fuzz_init(void)
{
    int          i, rc;
    char         err[256];
    static int   done;    /* customer and ladder set up */

    static const char  *fields[LOYALTY_FIELD_COUNT] = {
        "gold", "2500", "12.50", "vip,new", "2025-12-20", "01-15", "REF-42",
        "[{\"id\":\"p1\",\"title\":\"<b>P</b> & co\",\"min_points\":9}]"
    };

    if (done) {
        return;
    }

    loyalty_customer_init(&fuzz_customer);

    for (i = 0; i < LOYALTY_FIELD_COUNT; i++) {
        rc = loyalty_customer_set_field(&fuzz_customer, i,
                                        (const unsigned char *) fields[i],
                                        strlen(fields[i]), err, sizeof(err));
        FUZZ_CHECK(rc == 1);
    }

    loyalty_ladder_init(&fuzz_ladder);

    FUZZ_CHECK(loyalty_ladder_add(&fuzz_ladder,
                                  (const unsigned char *) "bronze", 6, 0,
                                  NULL, 0, err, sizeof(err)) == 0);
    FUZZ_CHECK(loyalty_ladder_add(&fuzz_ladder,
                                  (const unsigned char *) "silver", 6, 1000,
                                  (const unsigned char *) "Silver & <co>",
                                  13, err, sizeof(err)) == 0);
    FUZZ_CHECK(loyalty_ladder_add(&fuzz_ladder,
                                  (const unsigned char *) "gold", 4, 2000,
                                  (const unsigned char *) "Gold", 4, err,
                                  sizeof(err)) == 0);
    FUZZ_CHECK(loyalty_ladder_add(&fuzz_ladder,
                                  (const unsigned char *) "platinum", 8,
                                  5000, NULL, 0, err, sizeof(err)) == 0);

    loyalty_ladder_progress(&fuzz_ladder, (const unsigned char *) "gold", 4,
                            fuzz_customer.points, &fuzz_progress);
    FUZZ_CHECK(fuzz_progress.found && fuzz_progress.has_next);

    /* the record lives as long as the process: nothing to free */

    done = 1;
}


static void
fuzz_script_safe(const char *text, size_t len)
{
    char          *out;
    size_t         out_len;
    json_t        *a, *b;
    json_error_t   error;

    out = loyalty_json_script_safe(text, len, &out_len);

    FUZZ_CHECK(out != NULL);
    FUZZ_CHECK(out[out_len] == '\0');
    FUZZ_CHECK(out_len >= len);
    FUZZ_CHECK(memchr(out, '<', out_len) == NULL);
    FUZZ_CHECK(memchr(out, '>', out_len) == NULL);
    FUZZ_CHECK(memchr(out, '&', out_len) == NULL);

    a = json_loadb(text, len, JSON_DECODE_ANY, &error);

    if (a != NULL) {
        b = json_loadb(out, out_len, JSON_DECODE_ANY, &error);
        FUZZ_CHECK(b != NULL);
        FUZZ_CHECK(json_equal(a, b));
        json_decref(b);
        json_decref(a);
    }

    free(out);
}


static void
fuzz_eligible(const json_t *catalog, uint64_t h)
{
    char                *s;
    size_t               max, len, i, npersonal, from;
    json_t              *list, *j, *offers;
    const fuzz_date_t   *t;

    max = h % (FUZZ_MAX_CAP + 1);
    t = &fuzz_dates[(h >> 8) % (sizeof(fuzz_dates) / sizeof(fuzz_date_t))];

    list = loyalty_offers_eligible(&fuzz_customer, catalog, &fuzz_ladder,
                                   t->y, t->m, t->d, max);

    FUZZ_CHECK(list != NULL);
    FUZZ_CHECK(json_array_size(list) <= max);

    /* personal offers first, as given */

    npersonal = json_array_size(fuzz_customer.offers);

    for (i = 0; i < npersonal && i < json_array_size(list); i++) {
        FUZZ_CHECK(json_array_get(list, i)
                   == json_array_get(fuzz_customer.offers, i));
    }

    from = 0;

    for ( /* void */ ; i < json_array_size(list); i++) {
        FUZZ_CHECK(catalog != NULL);
        fuzz_check_offer(json_array_get(list, i), catalog, &from);
    }

    s = loyalty_fragment("ok", &fuzz_customer, &fuzz_progress, list, NULL,
                         &len);

    FUZZ_CHECK(s != NULL);
    fuzz_check_text(s, len);

    j = json_loadb(s, len, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_CHECK(j != NULL);

    offers = json_object_get(j, "offers");

    if (json_array_size(list)) {
        FUZZ_CHECK(json_equal(offers, list));

    } else {
        FUZZ_CHECK(offers == NULL);
    }

    json_decref(j);
    free(s);
    json_decref(list);
}


/*
 * out must be a later catalog offer than the one before it, with the
 * same members, conditions left out (ids may repeat in a catalog)
 */

static void
fuzz_check_offer(const json_t *out, const json_t *catalog, size_t *from)
{
    size_t  k;

    FUZZ_CHECK(loyalty_offer_valid(out));

    for (k = *from; k < json_array_size(catalog); k++) {
        if (fuzz_same_offer(out, json_array_get(catalog, k))) {
            *from = k + 1;
            return;
        }
    }

    FUZZ_CHECK(!"eligible offer not found in the catalog");
}


static int
fuzz_same_offer(const json_t *out, const json_t *src)
{
    size_t       n;
    json_t      *value;
    const char  *key;

    n = 0;

    json_object_foreach((json_t *) src, key, value) {
        if (fuzz_is_condition(key)) {
            if (json_object_get(out, key) != NULL) {
                return 0;
            }

            continue;
        }

        if (!json_equal(json_object_get(out, key), value)) {
            return 0;
        }

        n++;
    }

    return n == json_object_size(out);
}


static int
fuzz_is_condition(const char *key)
{
    int  i;

    for (i = 0; fuzz_conditions[i] != NULL; i++) {
        if (strcmp(fuzz_conditions[i], key) == 0) {
            return 1;
        }
    }

    return 0;
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


/* FNV-1a, 64 bits */

static uint64_t
fuzz_hash(const uint8_t *data, size_t size)
{
    size_t    i;
    uint64_t  h;

    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < size; i++) {
        h ^= data[i];
        h *= 0x100000001b3ULL;
    }

    return h;
}
