/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The offer catalog and its eligibility rules.  An offer is a JSON
 * object with a non-empty string "id" and a string "title"; these
 * optional members are its conditions, all of which must hold:
 *
 *   tiers                    array of tier names: the customer's tier
 *                            is one of them
 *   min_tier                 a tier name of the ladder: the customer's
 *                            tier is that one or a higher one (a tier
 *                            not in the ladder fails)
 *   min_points               integer: points >= min_points
 *   segments                 array of segment names: the customer is in
 *                            at least one of them
 *   from, until              YYYY-MM-DD, inclusive, against today
 *   first_order_within_days  integer N >= 0: 0 <= today - first_order
 *                            <= N days (no first_order fails)
 *   birthday_month           boolean: when true, today is in the month
 *                            of the birthday (no birthday fails)
 *
 * Every other member (badge, url, code, discount, ...) passes through.
 */

#ifndef _LOYALTY_OFFERS_H_INCLUDED_
#define _LOYALTY_OFFERS_H_INCLUDED_


#include <stddef.h>

#include <jansson.h>

#include "loyalty_customer.h"


/* 1 when offer is an object with a non-empty string "id", string "title" */
int loyalty_offer_valid(const json_t *offer);

/*
 * Parses a catalog: a JSON array of offers.  Elements that are not
 * valid offers, or whose conditions are malformed (a wrong type, a bad
 * date, an empty list, a name that no tier or segment can have), are
 * left out: such an offer could never be shown.  Returns how many were
 * left out, with the first reason in err (err is "" when none), and
 * sets *catalog to a new array the caller releases with json_decref.
 * Returns -1 with the reason in err, leaving *catalog alone, when the
 * text is not JSON (duplicate keys included) or not an array.
 */
int loyalty_catalog_parse(const char *text, size_t len, json_t **catalog,
    char *err, size_t err_len);

/*
 * The offers the customer may use today (y-m-d): the personal offers of
 * the record first, as given, then the catalog offers whose conditions
 * hold, in catalog order, without their condition members; at most max
 * in all.  ladder serves min_tier and may be NULL (min_tier then
 * fails).  Returns a new array (json_decref), NULL when out of memory.
 * The elements share values with the catalog and the record by
 * reference: release the array before either.
 */
json_t *loyalty_offers_eligible(const loyalty_customer_t *c,
    const json_t *catalog, const loyalty_ladder_t *ladder, int y, int m,
    int d, size_t max);


#endif /* _LOYALTY_OFFERS_H_INCLUDED_ */
