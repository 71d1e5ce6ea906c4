/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Finding an insertion marker (such as "</head>") in a response body that
 * arrives in buffers of any size, without buffering the body.  The caller
 * keeps at most mlen - 1 "pending" bytes from earlier buffers, a possible
 * start of the marker, and asks about the virtual concatenation
 * pending + buf; nothing here keeps state or allocates.
 *
 * Matching is case-insensitive for the ASCII letters only: other bytes,
 * UTF-8 included, must be equal.  The marker may be given in any case.
 */

#ifndef _LOYALTY_MARKER_H_INCLUDED_
#define _LOYALTY_MARKER_H_INCLUDED_


#include <stddef.h>
#include <sys/types.h>


/*
 * Returns the offset in pending + buf where the first occurrence of the
 * marker starts, or -1.  Requires 1 <= mlen and plen < mlen (plen may be
 * 0 and pending NULL then).
 */
ssize_t loyalty_marker_find(const unsigned char *marker, size_t mlen,
    const unsigned char *pending, size_t plen, const unsigned char *buf,
    size_t blen);

/*
 * Returns the length (0 to mlen - 1) of the longest suffix of
 * pending + buf that is a proper prefix of the marker: the bytes to hold
 * back when loyalty_marker_find() found nothing.  Same requirements.
 */
size_t loyalty_marker_tail(const unsigned char *marker, size_t mlen,
    const unsigned char *pending, size_t plen, const unsigned char *buf,
    size_t blen);


#endif /* _LOYALTY_MARKER_H_INCLUDED_ */
