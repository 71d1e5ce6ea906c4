/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Unit tests of lib/loyalty_record.c.
 */


#include "tap.h"
#include "loyalty_record.h"


static int
points_is(const char *s, int valid, uint64_t expect)
{
    uint64_t  n = 12345;

    if (!loyalty_points_parse((const unsigned char *) s, strlen(s), &n)) {
        return !valid && n == 12345;
    }

    return valid && n == expect;
}


static int
format_is(uint64_t n, const char *expect)
{
    size_t         len;
    unsigned char  buf[LOYALTY_INT_STR_LEN];

    len = loyalty_uint_format(n, buf);

    return len == strlen(expect) && memcmp(buf, expect, len) == 0;
}


int
main(void)
{
    char  tier[40];

    ok(loyalty_tier_valid(S("gold")), "gold");
    ok(loyalty_tier_valid(S("Platinum_2-X")), "mixed case, _ and -");
    ok(!loyalty_tier_valid(S("")), "empty tier");
    ok(!loyalty_tier_valid(S("gold\r\nX-Evil: 1")), "CR/LF in tier");
    ok(!loyalty_tier_valid(S("</script>")), "markup in tier");
    ok(!loyalty_tier_valid(S("gold ")), "trailing space");

    memset(tier, 'g', sizeof(tier));
    ok(loyalty_tier_valid((unsigned char *) tier, 32), "32 characters");
    ok(!loyalty_tier_valid((unsigned char *) tier, 33), "33 characters");

    ok(points_is("0", 1, 0), "zero");
    ok(points_is("1234", 1, 1234), "a plain number");
    ok(points_is("007", 1, 7), "leading zeros");
    ok(points_is("999999999999999999", 1, 999999999999999999ULL),
       "18 digits");
    ok(points_is("1000000000000000000", 0, 0), "19 digits rejected");
    ok(points_is("-5", 0, 0), "negative rejected");
    ok(points_is("+5", 0, 0), "sign rejected");
    ok(points_is("", 0, 0), "empty rejected");
    ok(points_is("12a", 0, 0), "letters rejected");
    ok(points_is(" 12", 0, 0), "white space rejected");
    ok(points_is("1.5", 0, 0), "decimal rejected");

    ok(format_is(0, "0"), "format 0");
    ok(format_is(7, "7"), "format 7");
    ok(format_is(1234, "1234"), "format 1234");
    ok(format_is(18446744073709551615ULL, "18446744073709551615"),
       "format UINT64_MAX");

    return done_testing();
}
