/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Fuzz target: loyalty_tier_valid, loyalty_points_parse and
 * loyalty_uint_format.
 *
 * The whole input is a tier and a points string, each checked against
 * a reference rule.  Points that parse must format back to the same
 * digits without leading zeros, and parse again to the same value.
 * The first eight bytes (little-endian, zero-padded) are also a number
 * to format: plain decimal, no leading zero, the same value back.
 */


#include "fuzz.h"
#include "loyalty_record.h"


static int fuzz_is_digit(unsigned char ch);
static int fuzz_tier_valid_ref(const unsigned char *p, size_t len);
static void fuzz_points(const unsigned char *p, size_t len);
static void fuzz_format(uint64_t n);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t          i;
    uint64_t        n;
    unsigned char  *p;

    /* a copy of the exact size: ASan sees a read past either end */

    p = malloc(size ? size : 1);
    FUZZ_CHECK(p != NULL);
    memcpy(p, data, size);

    FUZZ_CHECK(loyalty_tier_valid(p, size) == fuzz_tier_valid_ref(p, size));

    fuzz_points(p, size);

    n = 0;

    for (i = 0; i < 8 && i < size; i++) {
        n |= (uint64_t) data[i] << (8 * i);
    }

    fuzz_format(n);
    fuzz_format(UINT64_MAX - n);

    free(p);

    return 0;
}


static int
fuzz_is_digit(unsigned char ch)
{
    return ch >= '0' && ch <= '9';
}


static int
fuzz_tier_valid_ref(const unsigned char *p, size_t len)
{
    size_t  i;

    if (len < 1 || len > 32) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!(fuzz_is_digit(p[i])
              || (p[i] >= 'a' && p[i] <= 'z')
              || (p[i] >= 'A' && p[i] <= 'Z')
              || p[i] == '_' || p[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


static void
fuzz_points(const unsigned char *p, size_t len)
{
    int             ok, ref;
    size_t          i, z, flen;
    uint64_t        v, v2, want;
    unsigned char  *buf;

    ref = len >= 1 && len <= 18;
    want = 0;

    for (i = 0; ref && i < len; i++) {
        ref = fuzz_is_digit(p[i]);
        want = want * 10 + (p[i] - '0');
    }

    v = 0;
    ok = loyalty_points_parse(p, len, &v);

    FUZZ_CHECK(ok == ref);

    if (!ok) {
        return;
    }

    FUZZ_CHECK(v == want);
    FUZZ_CHECK(v < 1000000000000000000ULL);

    /* the digits without their leading zeros, "0" for all zeros */

    for (z = 0; z + 1 < len && p[z] == '0'; z++) {
        /* void */
    }

    buf = malloc(LOYALTY_INT_STR_LEN);
    FUZZ_CHECK(buf != NULL);

    flen = loyalty_uint_format(v, buf);

    FUZZ_CHECK(flen == len - z);
    FUZZ_CHECK(memcmp(buf, p + z, flen) == 0);

    v2 = 0;
    FUZZ_CHECK(loyalty_points_parse(buf, flen, &v2) && v2 == v);

    free(buf);
}


static void
fuzz_format(uint64_t n)
{
    size_t          i, len;
    uint64_t        v;
    unsigned char  *buf;

    buf = malloc(LOYALTY_INT_STR_LEN);
    FUZZ_CHECK(buf != NULL);

    len = loyalty_uint_format(n, buf);

    FUZZ_CHECK(len >= 1 && len <= LOYALTY_INT_STR_LEN);
    FUZZ_CHECK(len == 1 || buf[0] != '0');

    /* exact: the true value is below 2^64, so no step overflows */

    v = 0;

    for (i = 0; i < len; i++) {
        FUZZ_CHECK(fuzz_is_digit(buf[i]));
        v = v * 10 + (buf[i] - '0');
    }

    FUZZ_CHECK(v == n);

    if (len <= 18) {
        v = 0;
        FUZZ_CHECK(loyalty_points_parse(buf, len, &v) && v == n);
    }

    free(buf);
}
