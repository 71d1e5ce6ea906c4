/*
 * Copyright (C) ngx_loyalty_module authors
 */


#include "loyalty_record.h"


int
loyalty_tier_valid(const unsigned char *tier, size_t len)
{
    size_t         i;
    unsigned char  ch;

    if (len == 0 || len > LOYALTY_TIER_MAX_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        ch = tier[i];

        if (!((ch >= 'a' && ch <= 'z')
              || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9')
              || ch == '_' || ch == '-'))
        {
            return 0;
        }
    }

    return 1;
}


int
loyalty_points_parse(const unsigned char *p, size_t len, uint64_t *points)
{
    size_t    i;
    uint64_t  n;

    if (len == 0 || len > LOYALTY_POINTS_MAX_LEN) {
        return 0;
    }

    n = 0;

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }

        n = n * 10 + (p[i] - '0');
    }

    *points = n;

    return 1;
}


size_t
loyalty_uint_format(uint64_t n, unsigned char *buf)
{
    size_t         i, len;
    unsigned char  tmp[LOYALTY_INT_STR_LEN], *p;

    p = tmp + LOYALTY_INT_STR_LEN;

    do {
        *--p = (unsigned char) ('0' + n % 10);
        n /= 10;
    } while (n);

    len = tmp + LOYALTY_INT_STR_LEN - p;

    for (i = 0; i < len; i++) {
        buf[i] = p[i];
    }

    return len;
}
