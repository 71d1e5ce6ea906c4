/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Validation of the customer record's fields as read from Redis.  Values
 * end up in request headers, response headers and HTML, so only what is
 * allow-listed here gets through.
 */

#ifndef _LOYALTY_RECORD_H_INCLUDED_
#define _LOYALTY_RECORD_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define LOYALTY_TIER_MAX_LEN     32
#define LOYALTY_POINTS_MAX_LEN   18      /* digits: always fits in int64 */
#define LOYALTY_INT_STR_LEN      20      /* longest uint64 in decimal */


/* 1 when tier is 1 to 32 characters of [A-Za-z0-9_-], 0 otherwise */
int loyalty_tier_valid(const unsigned char *tier, size_t len);

/*
 * Parses points: 1 to 18 decimal digits (leading zeros allowed), no sign,
 * no white space.  Returns 1 and stores the value, 0 when invalid.
 */
int loyalty_points_parse(const unsigned char *p, size_t len,
    uint64_t *points);

/* writes n in decimal into buf (LOYALTY_INT_STR_LEN bytes), returns length */
size_t loyalty_uint_format(uint64_t n, unsigned char *buf);


#endif /* _LOYALTY_RECORD_H_INCLUDED_ */
