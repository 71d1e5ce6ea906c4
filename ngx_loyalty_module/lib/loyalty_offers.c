/*
 * Copyright (C) ngx_loyalty_module authors
 */


#include "loyalty_offers.h"

#include <stdio.h>
#include <string.h>


static int loyalty_offer_check(const json_t *offer, char *err,
    size_t err_len);
static int loyalty_names_check(const json_t *list);
static int loyalty_offer_holds(const loyalty_customer_t *c,
    const json_t *offer, const loyalty_ladder_t *ladder,
    const loyalty_date_t *today);
static int loyalty_json_date(const json_t *value, loyalty_date_t *date);
static int loyalty_is_condition(const char *key);
static json_t *loyalty_offer_strip(const json_t *offer);


/* the members that decide eligibility and never reach the page */
static const char  *loyalty_conditions[] = {
    "tiers",
    "min_tier",
    "min_points",
    "segments",
    "from",
    "until",
    "first_order_within_days",
    "birthday_month",
    NULL
};


int
loyalty_offer_valid(const json_t *offer)
{
    const json_t  *id, *title;

    if (!json_is_object(offer)) {
        return 0;
    }

    id = json_object_get(offer, "id");
    title = json_object_get(offer, "title");

    return json_is_string(id) && json_string_length(id) > 0
           && json_is_string(title);
}


int
loyalty_catalog_parse(const char *text, size_t len, json_t **catalog,
    char *err, size_t err_len)
{
    int           left_out;
    char          reason[128];
    size_t        i;
    json_t       *root, *list, *offer;
    json_error_t  error;

    if (err_len) {
        err[0] = '\0';
    }

    /* duplicate keys would silently keep the last value */

    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &error);

    if (root == NULL) {
        snprintf(err, err_len, "invalid JSON at line %d, column %d: %s",
                 error.line, error.column, error.text);
        return -1;
    }

    if (!json_is_array(root)) {
        snprintf(err, err_len, "the catalog is not a JSON array");
        json_decref(root);
        return -1;
    }

    list = json_array();

    if (list == NULL) {
        goto nomem;
    }

    left_out = 0;

    json_array_foreach(root, i, offer) {

        if (!loyalty_offer_valid(offer)) {
            snprintf(reason, sizeof(reason), "not an object with a "
                     "non-empty string \"id\" and a string \"title\"");

        } else if (loyalty_offer_check(offer, reason, sizeof(reason))) {

            if (json_array_append(list, offer) != 0) {
                json_decref(list);
                goto nomem;
            }

            continue;
        }

        if (left_out++ == 0) {
            snprintf(err, err_len, "offer %d: %s", (int) i + 1, reason);
        }
    }

    json_decref(root);

    *catalog = list;

    return left_out;

nomem:

    json_decref(root);
    snprintf(err, err_len, "out of memory");

    return -1;
}


json_t *
loyalty_offers_eligible(const loyalty_customer_t *c, const json_t *catalog,
    const loyalty_ladder_t *ladder, int y, int m, int d, size_t max)
{
    size_t           i;
    json_t          *list, *offer, *out;
    loyalty_date_t   today, *t;

    list = json_array();

    if (list == NULL) {
        return NULL;
    }

    if (c->offers != NULL) {
        json_array_foreach(c->offers, i, offer) {
            if (json_array_size(list) >= max) {
                return list;
            }

            if (json_array_append(list, offer) != 0) {
                goto failed;
            }
        }
    }

    if (!json_is_array(catalog)) {
        return list;
    }

    t = NULL;

    if (loyalty_date_valid(y, m, d)) {
        today.year = y;
        today.month = m;
        today.day = d;
        t = &today;
    }

    /* jansson iterates only over non-const values; nothing is changed */

    json_array_foreach((json_t *) catalog, i, offer) {
        if (json_array_size(list) >= max) {
            break;
        }

        /* the catalog may not come from loyalty_catalog_parse */

        if (!loyalty_offer_valid(offer)
            || !loyalty_offer_check(offer, NULL, 0)
            || !loyalty_offer_holds(c, offer, ladder, t))
        {
            continue;
        }

        out = loyalty_offer_strip(offer);

        if (out == NULL) {
            goto failed;
        }

        if (json_array_append_new(list, out) != 0) {
            goto failed;
        }
    }

    return list;

failed:

    json_decref(list);

    return NULL;
}


/* 1 when every condition present is well-formed, 0 with a reason */

static int
loyalty_offer_check(const json_t *offer, char *err, size_t err_len)
{
    const char      *what;
    const json_t    *v;
    loyalty_date_t   date;

    v = json_object_get(offer, "tiers");

    if (v != NULL && !loyalty_names_check(v)) {
        what = "\"tiers\" is not a non-empty array of tier names";
        goto malformed;
    }

    v = json_object_get(offer, "min_tier");

    if (v != NULL
        && !(json_is_string(v)
             && loyalty_tier_valid((const unsigned char *) json_string_value(v),
                                   json_string_length(v))))
    {
        what = "\"min_tier\" is not a tier name";
        goto malformed;
    }

    v = json_object_get(offer, "min_points");

    if (v != NULL && !json_is_integer(v)) {
        what = "\"min_points\" is not an integer";
        goto malformed;
    }

    v = json_object_get(offer, "segments");

    if (v != NULL && !loyalty_names_check(v)) {
        what = "\"segments\" is not a non-empty array of segment names";
        goto malformed;
    }

    v = json_object_get(offer, "from");

    if (v != NULL && !loyalty_json_date(v, &date)) {
        what = "\"from\" is not a date as YYYY-MM-DD";
        goto malformed;
    }

    v = json_object_get(offer, "until");

    if (v != NULL && !loyalty_json_date(v, &date)) {
        what = "\"until\" is not a date as YYYY-MM-DD";
        goto malformed;
    }

    v = json_object_get(offer, "first_order_within_days");

    if (v != NULL && !(json_is_integer(v) && json_integer_value(v) >= 0)) {
        what = "\"first_order_within_days\" is not a non-negative integer";
        goto malformed;
    }

    v = json_object_get(offer, "birthday_month");

    if (v != NULL && !json_is_boolean(v)) {
        what = "\"birthday_month\" is not true or false";
        goto malformed;
    }

    return 1;

malformed:

    if (err_len) {
        snprintf(err, err_len, "%s", what);
    }

    return 0;
}


/* tier and segment names share the allow-list; a list must not be empty */

static int
loyalty_names_check(const json_t *list)
{
    size_t   i;
    json_t  *name;

    if (!json_is_array(list) || json_array_size(list) == 0) {
        return 0;
    }

    json_array_foreach((json_t *) list, i, name) {
        if (!json_is_string(name)
            || !loyalty_tier_valid((const unsigned char *)
                                   json_string_value(name),
                                   json_string_length(name)))
        {
            return 0;
        }
    }

    return 1;
}


/* the conditions are known to be well-formed (loyalty_offer_check) */

static int
loyalty_offer_holds(const loyalty_customer_t *c, const json_t *offer,
    const loyalty_ladder_t *ladder, const loyalty_date_t *today)
{
    int              found, i, j;
    size_t           k, n;
    int64_t          days;
    json_int_t       min;
    const json_t    *v, *name;
    loyalty_date_t   date;

    v = json_object_get(offer, "tiers");

    if (v != NULL) {
        if (!loyalty_customer_has(c, LOYALTY_FIELD_TIER)) {
            return 0;
        }

        found = 0;

        for (k = 0; k < json_array_size(v); k++) {
            name = json_array_get(v, k);

            if (strcmp(json_string_value(name), c->tier) == 0) {
                found = 1;
                break;
            }
        }

        if (!found) {
            return 0;
        }
    }

    v = json_object_get(offer, "min_tier");

    if (v != NULL) {
        if (ladder == NULL || !loyalty_customer_has(c, LOYALTY_FIELD_TIER)) {
            return 0;
        }

        i = loyalty_ladder_find(ladder,
                                (const unsigned char *) json_string_value(v),
                                json_string_length(v));
        j = loyalty_ladder_find(ladder, (const unsigned char *) c->tier,
                                strlen(c->tier));

        if (i < 0 || j < i) {
            return 0;
        }
    }

    v = json_object_get(offer, "min_points");

    if (v != NULL) {
        if (!loyalty_customer_has(c, LOYALTY_FIELD_POINTS)) {
            return 0;
        }

        min = json_integer_value(v);

        if (min > 0 && c->points < (uint64_t) min) {
            return 0;
        }
    }

    v = json_object_get(offer, "segments");

    if (v != NULL) {
        if (!loyalty_customer_has(c, LOYALTY_FIELD_SEGMENTS)) {
            return 0;
        }

        found = 0;

        for (k = 0; k < json_array_size(v) && !found; k++) {
            name = json_array_get(v, k);

            for (n = 0; n < c->nsegments; n++) {
                if (strcmp(json_string_value(name), c->segments[n]) == 0) {
                    found = 1;
                    break;
                }
            }
        }

        if (!found) {
            return 0;
        }
    }

    v = json_object_get(offer, "from");

    if (v != NULL) {
        if (today == NULL || !loyalty_json_date(v, &date)
            || loyalty_date_days(today->year, today->month, today->day)
               < loyalty_date_days(date.year, date.month, date.day))
        {
            return 0;
        }
    }

    v = json_object_get(offer, "until");

    if (v != NULL) {
        if (today == NULL || !loyalty_json_date(v, &date)
            || loyalty_date_days(today->year, today->month, today->day)
               > loyalty_date_days(date.year, date.month, date.day))
        {
            return 0;
        }
    }

    v = json_object_get(offer, "first_order_within_days");

    if (v != NULL) {
        if (today == NULL
            || !loyalty_customer_has(c, LOYALTY_FIELD_FIRST_ORDER))
        {
            return 0;
        }

        days = loyalty_date_days(today->year, today->month, today->day)
               - loyalty_date_days(c->first_order.year, c->first_order.month,
                                   c->first_order.day);

        if (days < 0 || days > json_integer_value(v)) {
            return 0;
        }
    }

    v = json_object_get(offer, "birthday_month");

    if (json_is_true(v)) {
        if (today == NULL || !loyalty_customer_has(c, LOYALTY_FIELD_BIRTHDAY)
            || c->birthday.month != today->month)
        {
            return 0;
        }
    }

    return 1;
}


static int
loyalty_json_date(const json_t *value, loyalty_date_t *date)
{
    if (!json_is_string(value)) {
        return 0;
    }

    return loyalty_date_parse((const unsigned char *) json_string_value(value),
                              json_string_length(value), 1, date);
}


static int
loyalty_is_condition(const char *key)
{
    const char  **name;

    for (name = loyalty_conditions; *name != NULL; name++) {
        if (strcmp(key, *name) == 0) {
            return 1;
        }
    }

    return 0;
}


/* a new object without the conditions, sharing the other values */

static json_t *
loyalty_offer_strip(const json_t *offer)
{
    json_t      *out, *value;
    const char  *key;

    out = json_object();

    if (out == NULL) {
        return NULL;
    }

    json_object_foreach((json_t *) offer, key, value) {
        if (loyalty_is_condition(key)) {
            continue;
        }

        if (json_object_set(out, key, value) != 0) {
            json_decref(out);
            return NULL;
        }
    }

    return out;
}
