/*
 * Copyright (C) ngx_loyalty_module authors
 */


#include "loyalty_cookie.h"

#include <string.h>


static int loyalty_is_id_char(unsigned char ch);


int
loyalty_cookie_find(const unsigned char *header, size_t len,
    const unsigned char *name, size_t name_len,
    const unsigned char **value, size_t *value_len)
{
    const unsigned char  *p, *end, *start, *eq, *semi, *ne;

    p = header;
    end = header + len;

    while (p < end) {

        /* cookie-pairs are separated by ";" and optional white space */

        while (p < end && (*p == ' ' || *p == '\t' || *p == ';')) {
            p++;
        }

        if (p == end) {
            break;
        }

        start = p;

        semi = memchr(p, ';', end - p);
        if (semi == NULL) {
            semi = end;
        }

        eq = memchr(p, '=', semi - p);

        p = semi;

        if (eq == NULL) {
            continue;
        }

        /* the name may be followed by white space before "=" */

        ne = eq;

        while (ne > start && (ne[-1] == ' ' || ne[-1] == '\t')) {
            ne--;
        }

        if ((size_t) (ne - start) != name_len
            || memcmp(start, name, name_len) != 0)
        {
            continue;
        }

        start = eq + 1;

        while (start < semi && (*start == ' ' || *start == '\t')) {
            start++;
        }

        /* trailing white space before ";" is not part of the value */

        while (semi > start && (semi[-1] == ' ' || semi[-1] == '\t')) {
            semi--;
        }

        *value = start;
        *value_len = semi - start;

        return 1;
    }

    return 0;
}


int
loyalty_id_valid(const unsigned char *id, size_t len)
{
    size_t  i;

    if (len == 0 || len > LOYALTY_ID_MAX_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!loyalty_is_id_char(id[i])) {
            return 0;
        }
    }

    return 1;
}


static int
loyalty_is_id_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z')
           || (ch >= 'A' && ch <= 'Z')
           || (ch >= '0' && ch <= '9')
           || ch == '_' || ch == '-';
}
