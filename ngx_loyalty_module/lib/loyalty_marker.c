/*
 * Copyright (C) ngx_loyalty_module authors
 */


#include "loyalty_marker.h"

#include <string.h>


#define loyalty_marker_lower(c)                                              \
    (((c) >= 'A' && (c) <= 'Z') ? (unsigned char) ((c) | 0x20) : (c))
#define loyalty_marker_upper(c)                                              \
    (((c) >= 'a' && (c) <= 'z') ? (unsigned char) ((c) & ~0x20) : (c))


static size_t loyalty_marker_prefix(const unsigned char *marker,
    size_t mlen, const unsigned char *pending, size_t plen,
    const unsigned char *buf, size_t blen, size_t pos);
static int loyalty_marker_equal(const unsigned char *p,
    const unsigned char *marker, size_t len);
static const unsigned char *loyalty_marker_memchr(const unsigned char *p,
    const unsigned char *end, unsigned char ch);


ssize_t
loyalty_marker_find(const unsigned char *marker, size_t mlen,
    const unsigned char *pending, size_t plen, const unsigned char *buf,
    size_t blen)
{
    size_t                pos;
    unsigned char         lo, up;
    const unsigned char  *p, *q, *end, *next_lo, *next_up;

    if (mlen == 0) {
        return -1;
    }

    /* starts inside pending: fewer than mlen of them, checked one by one */

    for (pos = 0; pos < plen; pos++) {
        if (loyalty_marker_prefix(marker, mlen, pending, plen, buf, blen,
                                  pos)
            == mlen)
        {
            return (ssize_t) pos;
        }
    }

    if (blen < mlen) {
        return -1;
    }

    /*
     * Starts inside buf, where the whole marker fits: jump between the
     * first byte's two cases with memchr.  Each case's next position is
     * looked for again only once it has been passed, so buf is scanned
     * at most once per case, plus the comparisons at the candidates.
     */

    lo = loyalty_marker_lower(marker[0]);
    up = loyalty_marker_upper(marker[0]);

    p = buf;
    end = buf + (blen - mlen + 1);

    next_lo = loyalty_marker_memchr(p, end, lo);
    next_up = (up == lo) ? NULL : loyalty_marker_memchr(p, end, up);

    for ( ;; ) {
        if (next_lo == NULL) {
            q = next_up;

        } else if (next_up == NULL) {
            q = next_lo;

        } else {
            q = (next_lo < next_up) ? next_lo : next_up;
        }

        if (q == NULL) {
            return -1;
        }

        if (loyalty_marker_equal(q + 1, marker + 1, mlen - 1)) {
            return (ssize_t) (plen + (size_t) (q - buf));
        }

        p = q + 1;

        if (next_lo == q) {
            next_lo = loyalty_marker_memchr(p, end, lo);
        }

        if (next_up == q) {
            next_up = loyalty_marker_memchr(p, end, up);
        }
    }
}


size_t
loyalty_marker_tail(const unsigned char *marker, size_t mlen,
    const unsigned char *pending, size_t plen, const unsigned char *buf,
    size_t blen)
{
    size_t  k, total;

    if (mlen == 0) {
        return 0;
    }

    total = plen + blen;
    k = (total < mlen - 1) ? total : mlen - 1;

    /* longest first: the first suffix that is a prefix is the answer */

    for ( /* void */ ; k > 0; k--) {
        if (loyalty_marker_prefix(marker, mlen, pending, plen, buf, blen,
                                  total - k)
            == k)
        {
            return k;
        }
    }

    return 0;
}


/*
 * How many bytes of pending + buf, from pos on, match the marker's
 * start; stops at the marker's end, at the data's end or at the first
 * difference.
 */

static size_t
loyalty_marker_prefix(const unsigned char *marker, size_t mlen,
    const unsigned char *pending, size_t plen, const unsigned char *buf,
    size_t blen, size_t pos)
{
    size_t         i, k;
    unsigned char  ch;

    for (i = 0; i < mlen; i++) {
        k = pos + i;

        if (k < plen) {
            ch = pending[k];

        } else if (k - plen < blen) {
            ch = buf[k - plen];

        } else {
            break;
        }

        if (loyalty_marker_lower(ch) != loyalty_marker_lower(marker[i])) {
            break;
        }
    }

    return i;
}


static int
loyalty_marker_equal(const unsigned char *p, const unsigned char *marker,
    size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (loyalty_marker_lower(p[i]) != loyalty_marker_lower(marker[i])) {
            return 0;
        }
    }

    return 1;
}


static const unsigned char *
loyalty_marker_memchr(const unsigned char *p, const unsigned char *end,
    unsigned char ch)
{
    if (p >= end) {
        return NULL;
    }

    return memchr(p, ch, (size_t) (end - p));
}
