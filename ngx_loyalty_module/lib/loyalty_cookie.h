/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Customer cookie codec: finding a cookie in a Cookie header and checking
 * the customer id.  No nginx, no hiredis: unit tests and fuzzers build it
 * alone.
 */

#ifndef _LOYALTY_COOKIE_H_INCLUDED_
#define _LOYALTY_COOKIE_H_INCLUDED_


#include <stddef.h>


#define LOYALTY_ID_MAX_LEN  64


/*
 * Finds the first cookie called name in one Cookie header value
 * ("a=1; b=2").  Returns 1 and points value/value_len at the raw value
 * (without quotes removed) when found, 0 otherwise.
 */
int loyalty_cookie_find(const unsigned char *header, size_t len,
    const unsigned char *name, size_t name_len,
    const unsigned char **value, size_t *value_len);

/* 1 when id is 1 to 64 characters of [A-Za-z0-9_-], 0 otherwise */
int loyalty_id_valid(const unsigned char *id, size_t len);


#endif /* _LOYALTY_COOKIE_H_INCLUDED_ */
