/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Fuzz target: loyalty_marker_find and loyalty_marker_tail.
 *
 * Input: byte 0 gives the marker length (1 + its low 4 bits) and the
 * largest buffer (its high 4 bits); then the marker; then two bytes
 * seeding the cuts; the rest is the body.  The body is fed as the body
 * filter feeds it: find over pending + buffer, else emit all but the
 * tail and hold the tail back.  The offset found must be the one a
 * naive one-shot search gives, every tail must be the naive longest
 * suffix that is a proper prefix of the marker, and the output must be
 * the body with the injection before the marker, byte for byte.
 *
 * Every buffer, pending included, is passed in a copy of its exact
 * size, so ASan sees any read past either end.
 */


#include "fuzz.h"
#include "loyalty_marker.h"

#include <sys/types.h>


#define FUZZ_MARKER_MAX  16
#define FUZZ_INJECT      "<!--X-->"


static ssize_t fuzz_naive_find(const unsigned char *marker, size_t mlen,
    const unsigned char *p, size_t len);
static size_t fuzz_naive_tail(const unsigned char *marker, size_t mlen,
    const unsigned char *p, size_t len);
static void fuzz_emit(unsigned char *out, size_t *out_len,
    const unsigned char *p, size_t n);
static unsigned char *fuzz_copy(const unsigned char *p, size_t n);
static unsigned char fuzz_lower(unsigned char ch);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t           mlen, max, len, pos, blen, plen, t, keep, off, base;
    size_t           out_len, ilen;
    ssize_t          want, found, rc;
    uint32_t         seed;
    unsigned char   *marker, *body, *out, *b, *pend, *concat;
    unsigned char    pending[FUZZ_MARKER_MAX];

    if (size < 2) {
        return 0;
    }

    mlen = 1 + (data[0] & 0x0f);
    max = (size_t) 1 << (data[0] >> 4);     /* 1 to 32768 bytes */

    if (size < 1 + mlen + 2) {
        return 0;
    }

    marker = fuzz_copy(data + 1, mlen);
    seed = (uint32_t) data[1 + mlen] << 8 | data[2 + mlen];
    len = size - (3 + mlen);
    body = fuzz_copy(data + 3 + mlen, len);

    ilen = sizeof(FUZZ_INJECT) - 1;
    out = malloc(len + ilen);
    concat = malloc(len + FUZZ_MARKER_MAX);
    FUZZ_CHECK(out != NULL && concat != NULL);

    /* one shot */

    want = fuzz_naive_find(marker, mlen, body, len);

    FUZZ_CHECK(loyalty_marker_find(marker, mlen, NULL, 0, body, len) == want);

    if (want < 0) {
        FUZZ_CHECK(loyalty_marker_tail(marker, mlen, NULL, 0, body, len)
                   == fuzz_naive_tail(marker, mlen, body, len));
    }

    /* streamed */

    found = -1;
    out_len = 0;
    plen = 0;
    base = 0;

    for (pos = 0; pos < len; pos += blen) {

        /* a linear congruential step picks each buffer's size */

        seed = seed * 1103515245 + 12345;
        blen = 1 + (seed >> 8) % max;

        if (blen > len - pos) {
            blen = len - pos;
        }

        b = fuzz_copy(body + pos, blen);

        if (found >= 0) {
            fuzz_emit(out, &out_len, b, blen);
            free(b);
            continue;
        }

        pend = fuzz_copy(pending, plen);

        rc = loyalty_marker_find(marker, mlen, pend, plen, b, blen);

        memcpy(concat, pending, plen);
        memcpy(concat + plen, b, blen);

        FUZZ_CHECK(rc >= -1 && rc < (ssize_t) (plen + blen));
        FUZZ_CHECK(rc == fuzz_naive_find(marker, mlen, concat, plen + blen));

        if (rc >= 0) {
            off = (size_t) rc;
            found = (ssize_t) (base + off);

            fuzz_emit(out, &out_len, concat, off);
            fuzz_emit(out, &out_len, (const unsigned char *) FUZZ_INJECT,
                      ilen);
            fuzz_emit(out, &out_len, concat + off, plen + blen - off);

            plen = 0;
            free(pend);
            free(b);
            continue;
        }

        t = loyalty_marker_tail(marker, mlen, pend, plen, b, blen);

        FUZZ_CHECK(t < mlen && t <= plen + blen);
        FUZZ_CHECK(t == fuzz_naive_tail(marker, mlen, concat, plen + blen));

        keep = plen + blen - t;

        fuzz_emit(out, &out_len, concat, keep);
        memcpy(pending, concat + keep, t);

        plen = t;
        base += keep;

        free(pend);
        free(b);
    }

    fuzz_emit(out, &out_len, pending, plen);

    FUZZ_CHECK(found == want);

    if (want < 0) {
        FUZZ_CHECK(out_len == len && memcmp(out, body, len) == 0);

    } else {
        off = (size_t) want;

        FUZZ_CHECK(out_len == len + ilen);
        FUZZ_CHECK(memcmp(out, body, off) == 0);
        FUZZ_CHECK(memcmp(out + off, FUZZ_INJECT, ilen) == 0);
        FUZZ_CHECK(memcmp(out + off + ilen, body + off, len - off) == 0);
    }

    free(concat);
    free(out);
    free(body);
    free(marker);

    return 0;
}


static ssize_t
fuzz_naive_find(const unsigned char *marker, size_t mlen,
    const unsigned char *p, size_t len)
{
    size_t  i, j;

    for (i = 0; i + mlen <= len; i++) {
        for (j = 0; j < mlen; j++) {
            if (fuzz_lower(p[i + j]) != fuzz_lower(marker[j])) {
                break;
            }
        }

        if (j == mlen) {
            return (ssize_t) i;
        }
    }

    return -1;
}


static size_t
fuzz_naive_tail(const unsigned char *marker, size_t mlen,
    const unsigned char *p, size_t len)
{
    size_t  k;

    for (k = mlen - 1; k > 0; k--) {
        if (k <= len && fuzz_naive_find(marker, k, p + len - k, k) == 0) {
            return k;
        }
    }

    return 0;
}


static void
fuzz_emit(unsigned char *out, size_t *out_len, const unsigned char *p,
    size_t n)
{
    memcpy(out + *out_len, p, n);
    *out_len += n;
}


static unsigned char *
fuzz_copy(const unsigned char *p, size_t n)
{
    unsigned char  *c;

    c = malloc(n ? n : 1);
    FUZZ_CHECK(c != NULL);
    memcpy(c, p, n);

    return c;
}


/* written apart from the library's: a table-free tolower for ASCII */

static unsigned char
fuzz_lower(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') {
        return (unsigned char) (ch - 'A' + 'a');
    }

    return ch;
}
