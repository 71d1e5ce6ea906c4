/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * A strict RFC 8259 validator for a JSON response that is one object:
 * the module splices a member in before the final '}' without decoding
 * and re-encoding the document, so the shop's numbers and bytes stay as
 * they were.  Nothing is allocated and no value is converted: numbers of
 * any magnitude (1e400, 40-digit integers) are valid JSON.
 */

#ifndef _LOYALTY_JSONOBJ_H_INCLUDED_
#define _LOYALTY_JSONOBJ_H_INCLUDED_


#include <stddef.h>


#define LOYALTY_JSON_MAX_DEPTH  64     /* nested objects and arrays */


typedef struct {
    size_t  close;         /* offset of the top-level object's '}' */
    int     empty;         /* 1: the object has no members */
    int     has_member;    /* 1: a top-level key, unescaped, is member */
} loyalty_json_object_t;


/*
 * Checks that p is exactly one JSON object, optionally surrounded by JSON
 * white space (no byte order mark): every string's escapes and UTF-8,
 * every number's grammar, the literals, and at most
 * LOYALTY_JSON_MAX_DEPTH levels of objects and arrays.  Duplicate keys
 * are allowed.
 *
 * Returns 0 and fills info when it is; has_member compares the decoded
 * keys of the top-level object with the mlen bytes of member (NULL
 * matches nothing), so {"\u006coyalty":1} has the member "loyalty".
 * Returns -1 otherwise, with a short reason in err, such as "invalid
 * number at byte 17" (offsets count from 0); err may be NULL.
 */
int loyalty_json_object_check(const unsigned char *p, size_t len,
    const unsigned char *member, size_t mlen, loyalty_json_object_t *info,
    char *err, size_t err_len);


#endif /* _LOYALTY_JSONOBJ_H_INCLUDED_ */
