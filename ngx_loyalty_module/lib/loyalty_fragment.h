/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The JSON fragment ($loyalty_json) that the page reads from a
 * <script type="application/json"> element: compact, printable ASCII
 * only, and with no "<", ">" or "&", so that no value can end the
 * element, open a comment or be read as a character reference
 * (DESIGN-RISKS 6).
 */

#ifndef _LOYALTY_FRAGMENT_H_INCLUDED_
#define _LOYALTY_FRAGMENT_H_INCLUDED_


#include <stddef.h>

#include <jansson.h>

#include "loyalty_customer.h"


/*
 * Returns the fragment as malloc()ed, NUL-terminated text (release it
 * with free()) and its length in *len, or NULL when out of memory or
 * when status is not UTF-8.  Members, in this order, each left out when
 * it has no value:
 *
 *   status          always
 *   tier            the record's tier
 *   label           p->label, when p->found and the label is not empty
 *   points          number
 *   next_tier       p->next_tier, when p->has_next
 *   points_to_next  number, when p->has_next
 *   progress        number, 3 decimals, when p->found; below 1 until the
 *                   next tier is reached (0.9996 shows as 0.999)
 *   cashback        number, the record's digits
 *   referral_code   string
 *   segments        array of strings, when not empty
 *   offers          the offers array as given, when not empty
 *   experiments     the object as given, when not empty
 *
 * With c NULL (status anonymous, miss, error, ...) only status and
 * experiments are written: {"status":"anonymous"}.  p, offers and
 * experiments may be NULL.
 */
char *loyalty_fragment(const char *status, const loyalty_customer_t *c,
    const loyalty_progress_t *p, const json_t *offers,
    const json_t *experiments, size_t *len);

/*
 * Rewrites "<", ">", "&" as \u003c, \u003e, \u0026, DEL as \u007f, and
 * raw U+2028 and U+2029 as \u2028, \u2029.  In JSON text these can only
 * occur inside strings, where the escapes mean the same characters, so
 * any valid JSON keeps its value.  Returns malloc()ed, NUL-terminated
 * text (free it with free()) and its length in *out_len (which may be
 * NULL), or NULL when out of memory.
 */
char *loyalty_json_script_safe(const char *json, size_t len,
    size_t *out_len);


#endif /* _LOYALTY_FRAGMENT_H_INCLUDED_ */
