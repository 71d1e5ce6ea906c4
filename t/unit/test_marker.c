/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Unit tests of lib/loyalty_marker.c: direct calls, then a simulation of
 * the body filter (find, else emit all but the tail and hold the tail)
 * over many ways of cutting a page into buffers, compared with a naive
 * one-shot search written here.
 */


#include "tap.h"
#include "loyalty_marker.h"

#include <stdint.h>
#include <stdlib.h>


#define INJECT        "<!--X-->"
#define PAGE_MAX      (70 * 1024)
#define OUT_MAX       (PAGE_MAX + sizeof(INJECT))
#define MARKER_MAX    64
#define BUFS_MAX      PAGE_MAX

#define HEAD  "</head>"
#define PAGE  "<html><head><title>t</title></head><body>x</body></html>"


static ssize_t find(const char *marker, const char *pending,
    const char *buf);
static size_t tail(const char *marker, const char *pending, const char *buf);
static ssize_t naive_find(const unsigned char *marker, size_t mlen,
    const unsigned char *p, size_t len);
static size_t naive_tail(const unsigned char *marker, size_t mlen,
    const unsigned char *p, size_t len);
static int stream(const char *marker, const unsigned char *page, size_t len,
    const size_t *bufs, size_t n, ssize_t *found);
static void emit(const unsigned char *p, size_t n);
static int stream_all_splits(const char *marker, const char *page);
static int stream_bytes(const char *marker, const char *page);
static int stream_cuts(const char *marker, const char *page, size_t cut1,
    size_t cut2);
static uint64_t rnd(void);


static unsigned char  out[OUT_MAX], expect[OUT_MAX];
static size_t         out_len;
static size_t         sizes[BUFS_MAX];
static uint64_t       rnd_state = 0x9e3779b97f4a7c15ULL;


int
main(void)
{
    int             bad, runs;
    size_t          i, n, len, pos, mlen;
    ssize_t         found;
    const char     *marker;
    unsigned char  *page;

    static const char  *markers[] = {
        HEAD, "</HEAD>", "<", "aa", "aab", "abab", "</body>", "<<</",
        "</he</head>", "a\xc3"
    };
    static const char   alphabet[] = "<</hHeEaAdDb>> xay\xc3\xe3";

    /* direct calls */

    ok(find(HEAD, "", PAGE) == 28, "found in one buffer");
    ok(find(HEAD, "", "</head><body>") == 0, "marker at offset 0");
    ok(find(HEAD, "", "<p>x</p></head>") == 8, "marker at the very end");
    ok(find(HEAD, "", "<html><body>x</body></html>") == -1, "absent");
    ok(find(HEAD, "", "") == -1, "empty buffer");
    ok(find(HEAD, "", "</head") == -1, "all but the last byte");
    ok(find(HEAD, "", "<</head>") == 1, "\"<</head>\"");
    ok(find(HEAD, "", "</he</head>") == 4, "\"</he</head>\"");
    ok(find(HEAD, "", "</h</he</hea</head>") == 12, "several broken starts");
    ok(find(HEAD, "", "x</HEAD>") == 1, "upper-case page");
    ok(find(HEAD, "", "x</HeAd>") == 1, "mixed-case page");
    ok(find("</HEAD>", "", "x</head>") == 1, "upper-case marker");
    ok(find("</hEaD>", "", "x</HeAd>") == 1, "mixed-case marker and page");
    ok(find(HEAD, "", "</Head ></head >") == -1, "\"</Head >\" no match");
    ok(find(HEAD, "", "</head></head>") == 0, "first of two occurrences");

    /* only A-Z and a-z fold: 0x40 '@' and 0x60 '`' differ by 0x20 too */

    ok(find("@", "", "`") == -1 && find("`", "", "@") == -1,
       "'@' and '`' are different bytes");
    ok(find("[x", "", "{X") == -1, "'[' and '{' are different bytes");
    ok(find("\xc3\xa9", "", "\xe3\xa9") == -1
       && find("\xc3\xa9", "", "x\xc3\xa9") == 1,
       "bytes above 0x7f compared exactly");
    ok(find("\xc3\xa9", "", "x\xc3\x89") == -1,
       "no Unicode case folding");
    ok(loyalty_marker_find(S("a\0b"), NULL, 0, S("xa\0c")) == -1
       && loyalty_marker_find(S("a\0b"), NULL, 0, S("xa\0b")) == 1,
       "NUL bytes in marker and page");

    ok(find(HEAD, "</he", "ad>") == 0, "completed: starts in pending");
    ok(find(HEAD, "</he", "llo</head>") == 7, "broken, then found in buf");
    ok(find(HEAD, "<", "</head>") == 1, "pending \"<\" then \"</head>\"");
    ok(find(HEAD, "</he", "</head>") == 4,
       "pending \"</he\" then \"</head>\"");
    ok(find(HEAD, "</head", "") == -1, "pending alone, no buffer");
    ok(find(HEAD, "</HEA", "d>") == 0, "case differs across the split");
    ok(find(">", "", "a>") == 1 && find(">", "", "") == -1,
       "one-byte marker");

    ok(tail(HEAD, "", "<html></he") == 4, "tail \"</he\"");
    ok(tail(HEAD, "", "<html></head") == 6, "tail: all but the last byte");
    ok(tail(HEAD, "", "<html></HeA") == 5, "tail in another case");
    ok(tail(HEAD, "", "<html>") == 0, "no tail");
    ok(tail(HEAD, "", "") == 0, "no tail in nothing");
    ok(tail(HEAD, "", "</he</") == 2, "tail after a broken start");
    ok(tail(HEAD, "", "x<") == 1 && tail(HEAD, "", "<<") == 1,
       "tail \"<\" after \"<\"");
    ok(tail(HEAD, "</he", "llo") == 0, "partial then broken: no tail");
    ok(tail(HEAD, "</h", "e") == 4, "tail spans pending and buf");
    ok(tail(HEAD, "</he", "") == 4, "tail is all of pending");
    ok(tail(HEAD, "</hea", "</") == 2, "tail restarts inside buf");
    ok(tail(">", "", "abc") == 0, "one-byte marker holds nothing back");
    ok(tail("aab", "", "xaa") == 2 && tail("aab", "", "aaa") == 2
       && tail("aab", "a", "a") == 2, "tail of \"aab\"");
    ok(tail("abab", "", "xaba") == 3 && tail("abab", "ab", "a") == 3,
       "tail of \"abab\"");

    /* the filter, over every way of cutting a page */

    ok(stream_all_splits(HEAD, PAGE), "every two-way and three-way split");
    ok(stream_bytes(HEAD, PAGE), "one-byte buffers");
    ok(stream_all_splits(HEAD, "</head>x") && stream_bytes(HEAD, "</head>x"),
       "every split, marker at offset 0");
    ok(stream_all_splits(HEAD, "abc</head>")
       && stream_bytes(HEAD, "abc</head>"),
       "every split, marker at the very end");
    ok(stream_all_splits(HEAD, "<html><body>x</body></html>")
       && stream_bytes(HEAD, "<html><body>x</body></html>"),
       "every split, absent: every byte out once");
    ok(stream_all_splits(HEAD, "x</he</head>y")
       && stream_all_splits(HEAD, "<</head>")
       && stream_all_splits(HEAD, "</h</he</hea</head></head>")
       && stream_all_splits(HEAD, "</Head ></head >x</HEAD>"),
       "every split, repeated prefixes and mixed case");
    ok(stream_all_splits(HEAD, "<html></he") && stream_bytes(HEAD, "</hea"),
       "every split, partial marker at the end of the body");
    ok(stream_all_splits("abab", "aabaabababab")
       && stream_all_splits("aab", "aaaaaaab")
       && stream_all_splits("<<</", "<<<<<<<</"),
       "every split, self-overlapping markers");

    ok(stream_cuts(HEAD, "<html></he" "ad><body>", 10, 10),
       "partial at the end of a buffer, completed by the next");
    ok(stream_cuts(HEAD, "<html></he" "llo></head>", 10, 10),
       "partial at the end of a buffer, broken by the next");

    /* a 64 KB buffer full of false starts, then the marker */

    page = malloc(PAGE_MAX);
    if (page == NULL) {
        return 1;
    }

    len = 64 * 1024;

    for (i = 0; i < len; i++) {
        page[i] = "</he"[i % 4];
    }

    memcpy(page + len - 7, "</HEAD>", 7);

    ok(loyalty_marker_find(S(HEAD), NULL, 0, page, len)
       == (ssize_t) (len - 7), "64 KB of false starts, marker at the end");
    ok(loyalty_marker_find(S(HEAD), NULL, 0, page, len - 1) == -1
       && loyalty_marker_tail(S(HEAD), NULL, 0, page, len - 1) == 6,
       "64 KB, last byte missing: tail 6");

    sizes[0] = 1000;
    sizes[1] = len - 1003;
    sizes[2] = 3;
    ok(stream(HEAD, page, len, sizes, 3, &found) && found == (ssize_t) len - 7,
       "64 KB in three buffers, marker split by the last cut");

    /*
     * Property: random pages from a small alphabet rich in marker bytes,
     * random cuts; the streamed search must agree with the one-shot one
     * and give back every byte once, in order.
     */

    bad = 0;

    for (runs = 0; runs < 20000; runs++) {
        marker = markers[rnd() % (sizeof(markers) / sizeof(markers[0]))];
        mlen = strlen(marker);
        len = rnd() % 200;

        for (i = 0; i < len; i++) {
            page[i] = alphabet[rnd() % (sizeof(alphabet) - 1)];
        }

        /* now and then plant the marker itself, in a random case */

        if (len > mlen && rnd() % 2) {
            pos = rnd() % (len - mlen);

            for (i = 0; i < mlen; i++) {
                page[pos + i] = (unsigned char) marker[i];

                if (rnd() % 2 && page[pos + i] >= 'a'
                    && page[pos + i] <= 'z')
                {
                    page[pos + i] &= ~0x20;
                }
            }
        }

        n = 0;

        for (pos = 0; pos < len; pos += sizes[n++]) {
            sizes[n] = 1 + rnd() % (rnd() % 2 ? 3 : 40);

            if (sizes[n] > len - pos) {
                sizes[n] = len - pos;
            }
        }

        /* empty buffers happen too (flush, last_buf alone) */

        if (rnd() % 4 == 0) {
            sizes[n++] = 0;
        }

        if (!stream(marker, page, len, sizes, n, &found)) {
            if (bad++ == 0) {
                printf("# run %d: marker \"%s\", %zu bytes, %zu buffers\n",
                       runs, marker, len, n);
            }
        }
    }

    ok(bad == 0, "20000 random pages and cuts agree with one-shot search");

    free(page);

    return done_testing();
}


static ssize_t
find(const char *marker, const char *pending, const char *buf)
{
    return loyalty_marker_find((const unsigned char *) marker, strlen(marker),
                               (const unsigned char *) pending,
                               strlen(pending), (const unsigned char *) buf,
                               strlen(buf));
}


static size_t
tail(const char *marker, const char *pending, const char *buf)
{
    return loyalty_marker_tail((const unsigned char *) marker, strlen(marker),
                               (const unsigned char *) pending,
                               strlen(pending), (const unsigned char *) buf,
                               strlen(buf));
}


/* the reference: every start, every byte, folding by hand */

static ssize_t
naive_find(const unsigned char *marker, size_t mlen, const unsigned char *p,
    size_t len)
{
    size_t         i, j;
    unsigned char  a, b;

    for (i = 0; i + mlen <= len; i++) {
        for (j = 0; j < mlen; j++) {
            a = p[i + j];
            b = marker[j];

            if (a >= 'A' && a <= 'Z') {
                a += 'a' - 'A';
            }

            if (b >= 'A' && b <= 'Z') {
                b += 'a' - 'A';
            }

            if (a != b) {
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
naive_tail(const unsigned char *marker, size_t mlen, const unsigned char *p,
    size_t len)
{
    size_t  k;

    for (k = mlen - 1; k > 0; k--) {
        if (k <= len && naive_find(marker, k, p + len - k, k) == 0) {
            return k;
        }
    }

    return 0;
}


/*
 * The body filter: each buffer is searched together with what was held
 * back; on a match the injection goes before the marker and the rest
 * passes through; otherwise all but the tail is emitted.  Returns 1
 * when the output and the offset equal the one-shot result.
 */

static int
stream(const char *marker, const unsigned char *page, size_t len,
    const size_t *bufs, size_t n, ssize_t *found)
{
    size_t          i, mlen, plen, blen, pos, base, t, keep, off;
    ssize_t         rc, want;
    unsigned char  *b, pending[MARKER_MAX], concat[MARKER_MAX + 64];

    mlen = strlen(marker);
    plen = 0;
    base = 0;
    pos = 0;
    out_len = 0;
    *found = -1;

    for (i = 0; i < n; i++) {

        /* a copy of the exact size, so that a tool would see overreads */

        blen = bufs[i];
        b = malloc(blen ? blen : 1);
        if (b == NULL) {
            return 0;
        }

        memcpy(b, page + pos, blen);
        pos += blen;

        if (*found >= 0) {
            emit(b, blen);
            free(b);
            continue;
        }

        rc = loyalty_marker_find((const unsigned char *) marker, mlen,
                                 pending, plen, b, blen);

        if (rc >= 0) {
            off = (size_t) rc;
            *found = (ssize_t) (base + off);

            if (off <= plen) {
                emit(pending, off);
                emit((const unsigned char *) INJECT, sizeof(INJECT) - 1);
                emit(pending + off, plen - off);
                emit(b, blen);

            } else {
                emit(pending, plen);
                emit(b, off - plen);
                emit((const unsigned char *) INJECT, sizeof(INJECT) - 1);
                emit(b + off - plen, blen - (off - plen));
            }

            plen = 0;
            free(b);
            continue;
        }

        t = loyalty_marker_tail((const unsigned char *) marker, mlen,
                                pending, plen, b, blen);

        if (t >= mlen || t > plen + blen) {
            free(b);
            return 0;
        }

        /* the tail against the reference, on small buffers */

        if (plen + blen <= sizeof(concat)) {
            memcpy(concat, pending, plen);
            memcpy(concat + plen, b, blen);

            if (t != naive_tail((const unsigned char *) marker, mlen, concat,
                                plen + blen))
            {
                free(b);
                return 0;
            }
        }

        keep = plen + blen - t;

        if (keep <= plen) {
            emit(pending, keep);
            memmove(pending, pending + keep, plen - keep);
            memcpy(pending + plen - keep, b, blen);

        } else {
            emit(pending, plen);
            emit(b, keep - plen);
            memcpy(pending, b + keep - plen, t);
        }

        plen = t;
        base += keep;
        free(b);
    }

    emit(pending, plen);

    if (pos != len) {
        return 0;
    }

    want = naive_find((const unsigned char *) marker, mlen, page, len);

    if (want != *found) {
        return 0;
    }

    if (want < 0) {
        return out_len == len && memcmp(out, page, len) == 0;
    }

    memcpy(expect, page, want);
    memcpy(expect + want, INJECT, sizeof(INJECT) - 1);
    memcpy(expect + want + sizeof(INJECT) - 1, page + want, len - want);

    return out_len == len + sizeof(INJECT) - 1
           && memcmp(out, expect, out_len) == 0;
}


static void
emit(const unsigned char *p, size_t n)
{
    memcpy(out + out_len, p, n);
    out_len += n;
}


static int
stream_all_splits(const char *marker, const char *page)
{
    size_t  len, i, j;

    len = strlen(page);

    for (i = 0; i <= len; i++) {
        for (j = i; j <= len; j++) {
            if (!stream_cuts(marker, page, i, j)) {
                printf("# \"%s\" in \"%s\" cut at %zu and %zu\n", marker,
                       page, i, j);
                return 0;
            }
        }
    }

    return 1;
}


static int
stream_bytes(const char *marker, const char *page)
{
    size_t   len, i;
    ssize_t  found;

    len = strlen(page);

    for (i = 0; i < len; i++) {
        sizes[i] = 1;
    }

    return stream(marker, (const unsigned char *) page, len, sizes, len,
                  &found);
}


static int
stream_cuts(const char *marker, const char *page, size_t cut1, size_t cut2)
{
    size_t   len, bufs[3];
    ssize_t  found;

    len = strlen(page);

    bufs[0] = cut1;
    bufs[1] = cut2 - cut1;
    bufs[2] = len - cut2;

    return stream(marker, (const unsigned char *) page, len, bufs, 3,
                  &found);
}


/* xorshift64*: fixed seed, the same pages on every run */

static uint64_t
rnd(void)
{
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;

    return rnd_state * 0x2545f4914f6cdd1dULL;
}
