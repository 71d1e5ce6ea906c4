/*
 * Copyright (C) ngx_loyalty_module authors
 */


#include "loyalty_customer.h"
#include "loyalty_offers.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>


static void loyalty_customer_clear(loyalty_customer_t *c, int field);
static int loyalty_cashback_parse(const unsigned char *p, size_t len,
    char *out);
static int loyalty_segments_parse(loyalty_customer_t *c,
    const unsigned char *p, size_t len, char *err, size_t err_len);
static int loyalty_offers_parse(loyalty_customer_t *c,
    const unsigned char *p, size_t len, char *err, size_t err_len);
static int loyalty_digits(const unsigned char *p, size_t len);
static int loyalty_is_leap(int y);
static int loyalty_label_valid(const unsigned char *label, size_t len);


static const char  *loyalty_field_names[] = {
    "tier",
    "points",
    "cashback",
    "segments",
    "first_order",
    "birthday",
    "referral_code",
    "offers"
};


/* days before the first of each month in a common year */
static const int  loyalty_month_start[] = {
    0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334
};


void
loyalty_customer_init(loyalty_customer_t *c)
{
    memset(c, 0, sizeof(loyalty_customer_t));
}


int
loyalty_customer_set_field(loyalty_customer_t *c, int field,
    const unsigned char *value, size_t len, char *err, size_t err_len)
{
    int          ok;
    const char  *name;

    if (err_len) {
        err[0] = '\0';
    }

    name = loyalty_customer_field_name(field);

    if (name == NULL) {
        snprintf(err, err_len, "unknown field %d", field);
        return 0;
    }

    /* a dropped value must not leave an older one behind */

    loyalty_customer_clear(c, field);

    if (value == NULL) {
        value = (const unsigned char *) "";
        len = 0;
    }

    ok = 0;

    switch (field) {

    case LOYALTY_FIELD_TIER:
        ok = loyalty_tier_valid(value, len);

        if (ok) {
            memcpy(c->tier, value, len);
            c->tier[len] = '\0';

        } else {
            snprintf(err, err_len, "tier: not 1 to %d of [A-Za-z0-9_-]",
                     LOYALTY_NAME_MAX_LEN);
        }

        break;

    case LOYALTY_FIELD_REFERRAL_CODE:
        ok = loyalty_tier_valid(value, len);

        if (ok) {
            memcpy(c->referral_code, value, len);
            c->referral_code[len] = '\0';

        } else {
            snprintf(err, err_len,
                     "referral_code: not 1 to %d of [A-Za-z0-9_-]",
                     LOYALTY_NAME_MAX_LEN);
        }

        break;

    case LOYALTY_FIELD_POINTS:
        ok = loyalty_points_parse(value, len, &c->points);

        if (!ok) {
            snprintf(err, err_len, "points: not 1 to %d decimal digits",
                     LOYALTY_POINTS_MAX_LEN);
        }

        break;

    case LOYALTY_FIELD_CASHBACK:
        ok = loyalty_cashback_parse(value, len, c->cashback);

        if (!ok) {
            snprintf(err, err_len, "cashback: not a decimal number with "
                     "1 to 12 digits and up to 2 decimals");
        }

        break;

    case LOYALTY_FIELD_SEGMENTS:
        ok = loyalty_segments_parse(c, value, len, err, err_len);
        break;

    case LOYALTY_FIELD_FIRST_ORDER:
        ok = loyalty_date_parse(value, len, 1, &c->first_order);

        if (!ok) {
            snprintf(err, err_len, "first_order: not a date as YYYY-MM-DD");
        }

        break;

    case LOYALTY_FIELD_BIRTHDAY:
        ok = loyalty_date_parse(value, len, 0, &c->birthday);

        if (!ok) {
            snprintf(err, err_len, "birthday: not a date as MM-DD");
        }

        break;

    case LOYALTY_FIELD_OFFERS:
        ok = loyalty_offers_parse(c, value, len, err, err_len);
        break;
    }

    if (ok) {
        c->fields |= 1u << field;
    }

    return ok;
}


void
loyalty_customer_free(loyalty_customer_t *c)
{
    if (c->offers != NULL) {
        json_decref(c->offers);
    }

    loyalty_customer_init(c);
}


const char *
loyalty_customer_field_name(int field)
{
    if (field < 0 || field >= LOYALTY_FIELD_COUNT) {
        return NULL;
    }

    return loyalty_field_names[field];
}


static void
loyalty_customer_clear(loyalty_customer_t *c, int field)
{
    c->fields &= ~(1u << field);

    switch (field) {

    case LOYALTY_FIELD_TIER:
        c->tier[0] = '\0';
        break;

    case LOYALTY_FIELD_POINTS:
        c->points = 0;
        break;

    case LOYALTY_FIELD_CASHBACK:
        c->cashback[0] = '\0';
        break;

    case LOYALTY_FIELD_SEGMENTS:
        c->nsegments = 0;
        break;

    case LOYALTY_FIELD_FIRST_ORDER:
        memset(&c->first_order, 0, sizeof(loyalty_date_t));
        break;

    case LOYALTY_FIELD_BIRTHDAY:
        memset(&c->birthday, 0, sizeof(loyalty_date_t));
        break;

    case LOYALTY_FIELD_REFERRAL_CODE:
        c->referral_code[0] = '\0';
        break;

    case LOYALTY_FIELD_OFFERS:
        if (c->offers != NULL) {
            json_decref(c->offers);
            c->offers = NULL;
        }

        break;
    }
}


static int
loyalty_cashback_parse(const unsigned char *p, size_t len, char *out)
{
    size_t  i, dot, start;

    for (dot = 0; dot < len && p[dot] != '.'; dot++) {
        /* void */
    }

    if (dot == 0 || dot > 12 || !loyalty_digits(p, dot)) {
        return 0;
    }

    if (dot < len) {
        if (len - dot - 1 < 1 || len - dot - 1 > 2
            || !loyalty_digits(p + dot + 1, len - dot - 1))
        {
            return 0;
        }
    }

    /* JSON numbers have no leading zeros; "0.5" keeps its "0" */

    for (start = 0; start + 1 < dot && p[start] == '0'; start++) {
        /* void */
    }

    for (i = 0; start < len; i++, start++) {
        out[i] = (char) p[start];
    }

    out[i] = '\0';

    return 1;
}


static int
loyalty_segments_parse(loyalty_customer_t *c, const unsigned char *p,
    size_t len, char *err, size_t err_len)
{
    size_t  i, start, n;

    n = 0;
    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && p[i] != ',') {
            continue;
        }

        if (i > start) {
            if (!loyalty_tier_valid(p + start, i - start)) {
                snprintf(err, err_len, "segments: item %d is not 1 to %d of "
                         "[A-Za-z0-9_-]", (int) n + 1, LOYALTY_NAME_MAX_LEN);
                goto failed;
            }

            if (n == LOYALTY_SEGMENTS_MAX) {
                snprintf(err, err_len, "segments: more than %d",
                         LOYALTY_SEGMENTS_MAX);
                goto failed;
            }

            memcpy(c->segments[n], p + start, i - start);
            c->segments[n][i - start] = '\0';
            n++;
        }

        start = i + 1;
    }

    c->nsegments = n;

    return 1;

failed:

    c->nsegments = 0;

    return 0;
}


static int
loyalty_offers_parse(loyalty_customer_t *c, const unsigned char *p,
    size_t len, char *err, size_t err_len)
{
    size_t        i, dropped;
    json_t       *root, *list, *offer;
    json_error_t  error;

    /*
     * jansson's error text quotes the input ("near 'xyz'"): only the
     * position is reported
     */

    root = json_loadb((const char *) p, len, JSON_REJECT_DUPLICATES, &error);

    if (root == NULL) {
        snprintf(err, err_len, "offers: invalid JSON at byte %d",
                 error.position);
        return 0;
    }

    if (!json_is_array(root)) {
        snprintf(err, err_len, "offers: not a JSON array");
        json_decref(root);
        return 0;
    }

    list = json_array();

    if (list == NULL) {
        goto nomem;
    }

    dropped = 0;

    json_array_foreach(root, i, offer) {
        if (!loyalty_offer_valid(offer)) {
            dropped++;
            continue;
        }

        if (json_array_append(list, offer) != 0) {
            json_decref(list);
            goto nomem;
        }
    }

    json_decref(root);

    if (dropped) {
        snprintf(err, err_len, "offers: %d of %d elements dropped (not an "
                 "object with string \"id\" and \"title\")",
                 (int) dropped, (int) (dropped + json_array_size(list)));
    }

    c->offers = list;

    return 1;

nomem:

    json_decref(root);
    snprintf(err, err_len, "offers: out of memory");

    return 0;
}


int
loyalty_date_parse(const unsigned char *p, size_t len, int with_year,
    loyalty_date_t *date)
{
    int  y, m, d;

    if (with_year) {
        if (len != 10 || p[4] != '-' || p[7] != '-'
            || !loyalty_digits(p, 4))
        {
            return 0;
        }

        y = (p[0] - '0') * 1000 + (p[1] - '0') * 100 + (p[2] - '0') * 10
            + (p[3] - '0');
        p += 5;

    } else {
        if (len != 5) {
            return 0;
        }

        y = 0;
    }

    if (p[2] != '-' || !loyalty_digits(p, 2) || !loyalty_digits(p + 3, 2)) {
        return 0;
    }

    m = (p[0] - '0') * 10 + (p[1] - '0');
    d = (p[3] - '0') * 10 + (p[4] - '0');

    /* a birthday is checked against a leap year: 02-29 is a birthday */

    if (!loyalty_date_valid(with_year ? y : 2000, m, d)) {
        return 0;
    }

    date->year = y;
    date->month = m;
    date->day = d;

    return 1;
}


int
loyalty_date_valid(int y, int m, int d)
{
    int  last;

    if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1) {
        return 0;
    }

    if (m == 12) {
        last = 31;

    } else {
        last = loyalty_month_start[m] - loyalty_month_start[m - 1];
    }

    if (m == 2 && loyalty_is_leap(y)) {
        last = 29;
    }

    return d <= last;
}


int64_t
loyalty_date_days(int y, int m, int d)
{
    int64_t  n, py;

    /* whole years before y, counted from 0001-01-01 */

    py = y - 1;
    n = py * 365 + py / 4 - py / 100 + py / 400;

    n += loyalty_month_start[m - 1] + d - 1;

    if (m > 2 && loyalty_is_leap(y)) {
        n++;
    }

    /* 0001-01-01 to 1970-01-01 */

    return n - 719162;
}


void
loyalty_ladder_init(loyalty_ladder_t *ladder)
{
    ladder->ntiers = 0;
}


int
loyalty_ladder_add(loyalty_ladder_t *ladder, const unsigned char *name,
    size_t name_len, uint64_t min_points, const unsigned char *label,
    size_t label_len, char *err, size_t err_len)
{
    size_t           i;
    loyalty_tier_t  *t;

    if (!loyalty_tier_valid(name, name_len)) {
        snprintf(err, err_len, "invalid tier name: it must be 1 to %d of "
                 "[A-Za-z0-9_-]", LOYALTY_NAME_MAX_LEN);
        return -1;
    }

    if (label_len > LOYALTY_LABEL_MAX_LEN) {
        snprintf(err, err_len, "tier label is longer than %d bytes",
                 LOYALTY_LABEL_MAX_LEN);
        return -1;
    }

    if (label_len && !loyalty_label_valid(label, label_len)) {
        snprintf(err, err_len, "tier label must be UTF-8 text without "
                 "control characters");
        return -1;
    }

    if (min_points > LOYALTY_POINTS_MAX) {
        snprintf(err, err_len, "tier min_points is above %llu",
                 (unsigned long long) LOYALTY_POINTS_MAX);
        return -1;
    }

    for (i = 0; i < ladder->ntiers; i++) {
        t = &ladder->tiers[i];

        if (t->name_len == name_len && memcmp(t->name, name, name_len) == 0)
        {
            snprintf(err, err_len, "duplicate tier \"%s\"", t->name);
            return -1;
        }

        if (t->min_points == min_points) {
            snprintf(err, err_len, "tier \"%.*s\" has the same min_points "
                     "%llu as tier \"%s\"", (int) name_len, (char *) name,
                     (unsigned long long) min_points, t->name);
            return -1;
        }
    }

    if (ladder->ntiers
        && ladder->tiers[ladder->ntiers - 1].min_points > min_points)
    {
        snprintf(err, err_len, "tiers must be given in ascending min_points "
                 "order");
        return -1;
    }

    if (ladder->ntiers == LOYALTY_LADDER_MAX) {
        snprintf(err, err_len, "more than %d tiers", LOYALTY_LADDER_MAX);
        return -1;
    }

    t = &ladder->tiers[ladder->ntiers++];

    memcpy(t->name, name, name_len);
    t->name[name_len] = '\0';
    t->name_len = name_len;

    if (label_len) {
        memcpy(t->label, label, label_len);
    }

    t->label[label_len] = '\0';
    t->label_len = label_len;
    t->min_points = min_points;

    return 0;
}


int
loyalty_ladder_find(const loyalty_ladder_t *ladder,
    const unsigned char *name, size_t len)
{
    size_t  i;

    for (i = 0; i < ladder->ntiers; i++) {
        if (ladder->tiers[i].name_len == len
            && memcmp(ladder->tiers[i].name, name, len) == 0)
        {
            return (int) i;
        }
    }

    return -1;
}


void
loyalty_ladder_progress(const loyalty_ladder_t *ladder,
    const unsigned char *tier, size_t tier_len, uint64_t points,
    loyalty_progress_t *out)
{
    int                    i;
    const loyalty_tier_t  *cur, *next;

    memset(out, 0, sizeof(loyalty_progress_t));
    out->label = "";

    i = loyalty_ladder_find(ladder, tier, tier_len);

    if (i < 0) {
        return;
    }

    cur = &ladder->tiers[i];

    out->found = 1;
    out->label = cur->label;
    out->label_len = cur->label_len;

    if ((size_t) i + 1 == ladder->ntiers) {
        out->progress = 1.0;
        return;
    }

    next = &ladder->tiers[i + 1];

    out->has_next = 1;
    out->next_tier = next->name;
    out->next_tier_len = next->name_len;

    /*
     * The record's tier comes from Redis and need not match its points:
     * a customer kept in a tier below its minimum shows 0, one past the
     * next minimum shows 1 and 0 points to go.
     */

    if (points >= next->min_points) {
        out->points_to_next = 0;
        out->progress = 1.0;

    } else if (points <= cur->min_points) {
        out->points_to_next = next->min_points - points;
        out->progress = 0.0;

    } else {
        out->points_to_next = next->min_points - points;
        out->progress = (double) (points - cur->min_points)
                        / (double) (next->min_points - cur->min_points);
    }
}


static int
loyalty_digits(const unsigned char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
    }

    return 1;
}


static int
loyalty_is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}


static int
loyalty_label_valid(const unsigned char *label, size_t len)
{
    size_t   i;
    json_t  *s;

    for (i = 0; i < len; i++) {
        if (label[i] < 0x20 || label[i] == 0x7f) {
            return 0;
        }
    }

    /* jansson checks UTF-8 exactly as the fragment will need it */

    s = json_stringn((const char *) label, len);

    if (s == NULL) {
        return 0;
    }

    json_decref(s);

    return 1;
}
