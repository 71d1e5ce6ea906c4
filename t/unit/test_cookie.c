/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Unit tests of lib/loyalty_cookie.c.
 */


#include "tap.h"
#include "loyalty_cookie.h"


static int
find_is(const char *header, const char *name, const char *expect)
{
    size_t                len;
    const unsigned char  *v;

    if (!loyalty_cookie_find((const unsigned char *) header, strlen(header),
                             (const unsigned char *) name, strlen(name),
                             &v, &len))
    {
        return expect == NULL;
    }

    return expect != NULL
           && len == strlen(expect)
           && memcmp(v, expect, len) == 0;
}


int
main(void)
{
    char  id[80];

    /* finding the cookie */

    ok(find_is("loyalty_id=42", "loyalty_id", "42"), "single cookie");
    ok(find_is("a=1; loyalty_id=42; b=2", "loyalty_id", "42"), "middle");
    ok(find_is("a=1;loyalty_id=42", "loyalty_id", "42"), "no space after ;");
    ok(find_is("a=1;  loyalty_id = 42 ;b=2", "loyalty_id", "42"),
       "white space around = and ;");
    ok(find_is("xloyalty_id=1; loyalty_id=2", "loyalty_id", "2"),
       "a longer name with the same suffix does not match");
    ok(find_is("loyalty_idx=1; loyalty_id=2", "loyalty_id", "2"),
       "a longer name with the same prefix does not match");
    ok(find_is("loyalty_id=1; loyalty_id=2", "loyalty_id", "1"),
       "first of duplicate names wins");
    ok(find_is("a=1; b=2", "loyalty_id", NULL), "absent");
    ok(find_is("", "loyalty_id", NULL), "empty header");
    ok(find_is("loyalty_id", "loyalty_id", NULL), "name without =");
    ok(find_is("loyalty_id=", "loyalty_id", ""), "empty value is found");
    ok(find_is("loyalty_id=\"42\"", "loyalty_id", "\"42\""),
       "quotes are kept (and make the id invalid)");
    ok(find_is(";;; ;loyalty_id=7;;", "loyalty_id", "7"), "stray separators");
    ok(find_is("a=b=c; loyalty_id=x=y", "loyalty_id", "x=y"),
       "= inside values");

    /* validating the id */

    ok(loyalty_id_valid(S("42")), "digits");
    ok(loyalty_id_valid(S("Cust_omer-9")), "letters, _ and -");
    ok(!loyalty_id_valid(S("")), "empty is invalid");
    ok(!loyalty_id_valid(S("4 2")), "space is invalid");
    ok(!loyalty_id_valid(S("42;")), "; is invalid");
    ok(!loyalty_id_valid(S("a\r\nb")), "CR/LF is invalid");
    ok(!loyalty_id_valid(S("%34%32")), "percent-encoding is invalid");
    ok(!loyalty_id_valid(S("\xc3\xa9")), "non-ASCII is invalid");
    ok(!loyalty_id_valid((const unsigned char *) "a\0b", 3), "NUL is invalid");

    memset(id, 'a', sizeof(id));
    ok(loyalty_id_valid((unsigned char *) id, 64), "64 characters");
    ok(!loyalty_id_valid((unsigned char *) id, 65), "65 characters");

    return done_testing();
}
