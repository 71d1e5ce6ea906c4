/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Unit tests of lib/loyalty_jsonobj.c: what RFC 8259 accepts and
 * rejects, the offset of the final '}', and which keys count as the
 * member.
 */


#include "tap.h"
#include "loyalty_jsonobj.h"


#define MEMBER  "loyalty"


static int check(const char *json, size_t len, const char *member,
    size_t mlen);
static int valid(const char *json, size_t len);
static int invalid(const char *json, size_t len, const char *why);
static int has(const char *json, size_t len, const char *member,
    size_t mlen);
static void nest(char *buf, int depth);


static char                   err[128];
static loyalty_json_object_t  info;


int
main(void)
{
    int   rc;
    char  deep[512], small[5];

    /* the object itself */

    ok(valid(T("{}")) && info.empty == 1 && info.close == 1,
       "{} is empty, close at 1");
    ok(valid(T("{ }")) && info.empty == 1 && info.close == 2,
       "{ } is empty, close at 2");
    ok(valid(T(" \t\r\n{\r\n\t }\n\n")) && info.empty == 1
       && info.close == 9, "white space around and inside an empty object");
    ok(valid(T("{\"a\":1}")) && info.empty == 0 && info.close == 6,
       "one member, close at 6");
    ok(valid(T("{\"a\":{\"b\":{}}}  ")) && info.close == 13,
       "close is the top-level brace, not a nested one");
    ok(valid(T("{\"a\":{\"b\":[1,2,{\"c\":null}],\"e\":{}},\"d\":[[],[[]]]}")),
       "nested objects and arrays");
    ok(valid(T(" { \"a\" : [ 1 , true , false , null , \"x\" , { } , [ ] ] ,"
               "\t\"b\"\n:\r-0.5e+10\n}\n")),
       "white space everywhere");
    ok(valid(T("{\"a\":1,\"a\":2}")), "duplicate keys allowed");
    ok(valid(T("{\"\":\"\"}")), "empty key and value");

    ok(invalid(T(""), "not an object"), "empty input: %s", err);
    ok(invalid(T(" \n\t "), "not an object"), "white space only: %s", err);
    ok(invalid(T("[]"), "not an object at byte 0"), "array: %s", err);
    ok(invalid(T("  [{}]"), "not an object at byte 2"), "array of objects");
    ok(invalid(T("\"{}\""), "not an object"), "string");
    ok(invalid(T("42"), "not an object"), "number");
    ok(invalid(T("null"), "not an object"), "null");
    ok(invalid(T("true"), "not an object"), "true");
    ok(invalid(T("\xef\xbb\xbf{}"), "byte order mark at byte 0"),
       "UTF-8 byte order mark: %s", err);
    ok(invalid(T("\f{}"), "not an object"), "form feed is not white space");
    ok(invalid(T("\v{}"), "not an object"), "vertical tab either");
    ok(invalid(T("{}\xc2\xa0"), "trailing data at byte 2"),
       "no-break space either: %s", err);

    ok(invalid(T("{} x"), "trailing data at byte 3"), "trailing garbage: %s",
       err);
    ok(invalid(T("{}{}"), "trailing data at byte 2"), "two objects");
    ok(invalid(T("{},"), "trailing data"), "trailing comma");
    ok(invalid(T("{}\0"), "trailing data at byte 2"), "trailing NUL");
    ok(invalid(T("{\"a\":1}}"), "trailing data at byte 7"), "extra brace");

    ok(invalid(T("{"), "unexpected end at byte 1"), "\"{\": %s", err);
    ok(invalid(T("{\"a\":1"), "unexpected end at byte 6"), "no final brace");
    ok(invalid(T("{\"a\":"), "unexpected end"), "no value at the end");
    ok(invalid(T("{\"a"), "unterminated string at byte 1"),
       "unterminated key: %s", err);
    ok(invalid(T("{\"a\":1,}"), "expected a member name at byte 7"),
       "trailing comma in object: %s", err);
    ok(invalid(T("{,}"), "expected a member name at byte 1"), "{,}");
    ok(invalid(T("{a:1}"), "expected a member name"), "unquoted key");
    ok(invalid(T("{'a':1}"), "expected a member name"), "single quotes");
    ok(invalid(T("{1:1}"), "expected a member name"), "number as key");
    ok(invalid(T("{\"a\"}"), "expected ':' at byte 4"), "no colon: %s", err);
    ok(invalid(T("{\"a\"=1}"), "expected ':'"), "'=' for ':'");
    ok(invalid(T("{\"a\":}"), "invalid value at byte 5"), "no value: %s",
       err);
    ok(invalid(T("{\"a\":1 \"b\":2}"), "expected ',' or '}' at byte 7"),
       "no comma: %s", err);
    ok(invalid(T("{\"a\":[1,]}"), "invalid value at byte 8"),
       "trailing comma in array: %s", err);
    ok(invalid(T("{\"a\":[1 2]}"), "expected ',' or ']' at byte 8"),
       "no comma in array");
    ok(invalid(T("{\"a\":[1}"), "expected ',' or ']'"), "unclosed array");
    ok(invalid(T("{\"a\":{]}"), "expected a member name"), "mismatched");
    ok(invalid(T("{\"a\":1}/*c*/"), "trailing data"), "no comments");

    /* literals */

    ok(valid(T("{\"t\":true,\"f\":false,\"n\":null}")), "literals");
    ok(invalid(T("{\"a\":tru}"), "invalid literal at byte 5"), "tru: %s",
       err);
    ok(invalid(T("{\"a\":True}"), "invalid value"), "True");
    ok(invalid(T("{\"a\":nul"), "invalid literal"), "nul at the end");
    ok(invalid(T("{\"a\":nulll}"), "expected ',' or '}'"), "nulll");
    ok(invalid(T("{\"a\":undefined}"), "invalid value"), "undefined");

    /* numbers: the grammar, at any magnitude */

    ok(valid(T("{\"n\":[0,-0,0.0,-0.0,1,-1,12.5,1e5,1E5,1e+5,1e-5,"
               "0e0,-0E-0,1.25e+10]}")), "numbers");
    ok(valid(T("{\"n\":1e400}")), "1e400: overflows a double, still JSON");
    ok(valid(T("{\"n\":-1E-400}")), "-1E-400");
    ok(valid(T("{\"n\":1234567890123456789012345678901234567890}")),
       "40-digit integer");
    ok(valid(T("{\"n\":-1234567890123456789012345678901234567890.1234567890"
               "e-99999999999999999999}")), "long mantissa and exponent");
    ok(valid(T("{\"n\":1}")) && valid(T("{\"n\":1 }"))
       && valid(T("{\"n\":1\n}")),
       "a number ends at '}' or white space");

    ok(invalid(T("{\"n\":01}"), "invalid number at byte 5"),
       "leading zero: %s", err);
    ok(invalid(T("{\"n\":-01}"), "invalid number at byte 5"),
       "negative leading zero");
    ok(invalid(T("{\"n\":00}"), "invalid number"), "leading zero: 00");
    ok(invalid(T("{\"n\":+1}"), "invalid number at byte 5"), "+1: %s", err);
    ok(invalid(T("{\"n\":.5}"), "invalid number"), ".5");
    ok(invalid(T("{\"n\":-.5}"), "invalid number"), "-.5");
    ok(invalid(T("{\"n\":1.}"), "invalid number"), "1.");
    ok(invalid(T("{\"n\":1.e5}"), "invalid number"), "1.e5");
    ok(invalid(T("{\"n\":1e}"), "invalid number"), "1e");
    ok(invalid(T("{\"n\":1e+}"), "invalid number"), "1e+");
    ok(invalid(T("{\"n\":1E-}"), "invalid number"), "1E-");
    ok(invalid(T("{\"n\":-}"), "invalid number"), "-");
    ok(invalid(T("{\"n\":-"), "invalid number"), "- at the end");
    ok(invalid(T("{\"n\":1."), "invalid number"), "1. at the end");
    ok(invalid(T("{\"n\":--1}"), "invalid number"), "--1");
    ok(invalid(T("{\"n\":NaN}"), "invalid value"), "NaN");
    ok(invalid(T("{\"n\":Infinity}"), "invalid value"), "Infinity");
    ok(invalid(T("{\"n\":-Infinity}"), "invalid number"), "-Infinity");
    ok(invalid(T("{\"n\":0x10}"), "expected ',' or '}'"), "hexadecimal");
    ok(invalid(T("{\"n\":1.5.5}"), "expected ',' or '}'"), "two points");
    ok(invalid(T("{\"n\":1e5e5}"), "expected ',' or '}'"), "two exponents");

    /* strings */

    ok(valid(T("{\"s\":\"Gr\xc3\xbc\xc3\x9f" "e \xe6\x97\xa5\xe6\x9c\xac "
               "\xf0\x9f\x98\x80\"}")), "raw UTF-8: 2, 3 and 4 bytes");
    ok(valid(T("{\"s\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"
               "\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"}")),
       "UTF-8 boundaries: U+80, U+7FF, U+800, U+D7FF, U+E000, U+FFFF, "
       "U+10000, U+10FFFF");
    ok(valid(T("{\"s\":\"\\u00fc\\u65E5\\ud83d\\ude00\\uDBFF\\uDFFF"
               "\\u0000\\\"\\\\\\/\\b\\f\\n\\r\\t\"}")),
       "every escape, surrogate pairs in both cases");
    ok(valid(T("{\"s\":\"\x7f\"}")), "DEL is not a control character");
    ok(valid(T("{\"s\":\"'<>&{}[]:,\"}")), "punctuation");

    ok(invalid(T("{\"s\":\"a\x01\"}"), "control character in string at "
               "byte 7"), "raw U+0001: %s", err);
    ok(invalid(T("{\"s\":\"\t\"}"), "control character"), "raw tab");
    ok(invalid(T("{\"s\":\"\n\"}"), "control character"), "raw newline");
    ok(invalid(T("{\"s\":\"\0\"}"), "control character"), "raw NUL");
    ok(invalid(T("{\"s\x1f\":1}"), "control character"), "in a key");
    ok(invalid(T("{\"s\":\"\\x41\"}"), "invalid escape at byte 6"),
       "\\x: %s", err);
    ok(invalid(T("{\"s\":\"\\U0041\"}"), "invalid escape"), "\\U");
    ok(invalid(T("{\"s\":\"\\'\"}"), "invalid escape"), "\\'");
    ok(invalid(T("{\"s\":\"\\"), "unterminated escape"), "\\ at the end");
    ok(invalid(T("{\"s\":\"\\u00g0\"}"), "invalid \\u escape at byte 6"),
       "\\u with a non-hex digit: %s", err);
    ok(invalid(T("{\"s\":\"\\u12\"}"), "invalid \\u escape"), "short \\u");
    ok(invalid(T("{\"s\":\"\\u12"), "invalid \\u escape"), "\\u at the end");
    ok(invalid(T("{\"s\":\"\\ud800\"}"), "lone surrogate at byte 6"),
       "lone high surrogate: %s", err);
    ok(invalid(T("{\"s\":\"\\udc00\"}"), "lone surrogate"),
       "lone low surrogate");
    ok(invalid(T("{\"s\":\"\\ud800\\u0041\"}"), "lone surrogate"),
       "high surrogate, then not a low one");
    ok(invalid(T("{\"s\":\"\\ud800\\ud800\"}"), "lone surrogate"),
       "two high surrogates");
    ok(invalid(T("{\"s\":\"\\ude00\\ud83d\"}"), "lone surrogate"),
       "pair in the wrong order");
    ok(invalid(T("{\"s\":\"\\ud83dx\\ude00\"}"), "lone surrogate"),
       "pair apart");
    ok(invalid(T("{\"s\":\"\\ud83d\\\\ude00\"}"), "lone surrogate"),
       "escaped backslash between");
    ok(invalid(T("{\"\\ud800\":1}"), "lone surrogate"), "in a key");

    ok(invalid(T("{\"s\":\"\xc0\x80\"}"), "invalid UTF-8 at byte 6"),
       "overlong NUL: %s", err);
    ok(invalid(T("{\"s\":\"\xc1\xbf\"}"), "invalid UTF-8"), "overlong 2");
    ok(invalid(T("{\"s\":\"\xe0\x80\x80\"}"), "invalid UTF-8"),
       "overlong 3");
    ok(invalid(T("{\"s\":\"\xe0\x9f\xbf\"}"), "invalid UTF-8"),
       "overlong U+7FF");
    ok(invalid(T("{\"s\":\"\xf0\x80\x80\x80\"}"), "invalid UTF-8"),
       "overlong 4");
    ok(invalid(T("{\"s\":\"\xf0\x8f\xbf\xbf\"}"), "invalid UTF-8"),
       "overlong U+FFFF");
    ok(invalid(T("{\"s\":\"\xed\xa0\x80\"}"), "invalid UTF-8"),
       "encoded surrogate U+D800");
    ok(invalid(T("{\"s\":\"\xed\xbf\xbf\"}"), "invalid UTF-8"),
       "encoded surrogate U+DFFF");
    ok(invalid(T("{\"s\":\"\xf4\x90\x80\x80\"}"), "invalid UTF-8"),
       "U+110000");
    ok(invalid(T("{\"s\":\"\xf5\x80\x80\x80\"}"), "invalid UTF-8"), "F5");
    ok(invalid(T("{\"s\":\"\xff\"}"), "invalid UTF-8"), "FF");
    ok(invalid(T("{\"s\":\"\x80\"}"), "invalid UTF-8"),
       "lone continuation byte");
    ok(invalid(T("{\"s\":\"\xe6\x97\"}"), "invalid UTF-8"),
       "truncated sequence");
    ok(invalid(T("{\"s\":\"\xe6\x41\x41\"}"), "invalid UTF-8"),
       "ASCII after a lead byte");
    ok(invalid(T("{\"s\":\"\xf0\x9f\x98"), "invalid UTF-8"),
       "truncated by the end of input");
    ok(invalid(T("{\"a\":1,\xc3\xa9:1}"), "expected a member name"),
       "UTF-8 outside strings");

    /* depth */

    nest(deep, 64);
    ok(valid(deep, strlen(deep)), "64 levels");
    nest(deep, 65);
    ok(invalid(deep, strlen(deep), "nesting deeper than 64 at byte 68"),
       "65 levels: %s", err);
    ok(invalid(T("{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
               "nesting deeper than 64"), "deep arrays, unterminated");

    /* the member */

    ok(has(T("{\"loyalty\":1}"), T(MEMBER)) == 1, "member");
    ok(has(T("{\"a\":1,\"loyalty\":{}}"), T(MEMBER)) == 1, "second member");
    ok(has(T("{\"\\u006coyalty\":1}"), T(MEMBER)) == 1,
       "escaped first letter");
    ok(has(T("{\"loyalt\\u0079\":1}"), T(MEMBER)) == 1,
       "escaped last letter");
    ok(has(T("{\"\\u006C\\u006F\\u0079\\u0061\\u006c\\u0074\\u0079\":1}"),
           T(MEMBER)) == 1, "every letter escaped");
    ok(has(T("{\"a\":1,\"loyalty\":2,\"loyalty\":3}"), T(MEMBER)) == 1,
       "duplicate member");
    ok(has(T("{\"a\":{\"loyalty\":1}}"), T(MEMBER)) == 0, "nested key");
    ok(has(T("{\"a\":[{\"loyalty\":1}]}"), T(MEMBER)) == 0,
       "key in an array");
    ok(has(T("{\"a\":\"loyalty\"}"), T(MEMBER)) == 0, "value, not key");
    ok(has(T("{\"loyalty2\":1}"), T(MEMBER)) == 0, "longer key");
    ok(has(T("{\"loyalt\":1}"), T(MEMBER)) == 0, "shorter key");
    ok(has(T("{\"Loyalty\":1}"), T(MEMBER)) == 0, "keys are case-sensitive");
    ok(has(T("{\"loyalty\\u0000\":1}"), T(MEMBER)) == 0, "trailing NUL");
    ok(has(T("{}"), T(MEMBER)) == 0, "empty object");
    ok(has(T("{\"loyalty\":1}"), NULL, 0) == 0
       && has(T("{\"\":1}"), NULL, 0) == 0, "no member given");
    ok(has(T("{\"\":1}"), T("")) == 1 && has(T("{\"a\":1}"), T("")) == 0,
       "empty member");
    ok(has(T("{\"a\\u0000b\":1}"), T("a\0b")) == 1, "member with a NUL");
    ok(has(T("{\"\\u00fc\":1}"), T("\xc3\xbc")) == 1
       && has(T("{\"\\u00FC\":1}"), T("\xc3\xbc")) == 1
       && has(T("{\"\xc3\xbc\":1}"), T("\xc3\xbc")) == 1,
       "U+00FC escaped or raw");
    ok(has(T("{\"\\ud83d\\ude00\":1}"), T("\xf0\x9f\x98\x80")) == 1,
       "surrogate pair against raw UTF-8");
    ok(has(T("{\"\\u20ac\":1}"), T("\xe2\x82\xac")) == 1, "U+20AC");
    ok(has(T("{\"\\/\\\"\\\\\\b\\f\\n\\r\\t\":1}"), T("/\"\\\b\f\n\r\t"))
       == 1, "short escapes decoded");

    /* failures leave info cleared; err is optional and bounded */

    ok(valid(T("{\"loyalty\":1}"))
       && check(T("[{\"loyalty\":1}]"), MEMBER, 7) == -1
       && info.close == 0 && info.empty == 0 && info.has_member == 0,
       "info cleared on failure");
    ok(valid(T("{\"loyalty\":1}"))
       && check(T("{\"loyalty\":1} x"), MEMBER, 7) == -1
       && info.close == 0 && info.empty == 0 && info.has_member == 0,
       "info cleared on failure after the member was seen");
    ok(valid(T("{\"loyalty\":1}"))
       && check(T("{\"loyalty\":1,"), MEMBER, 7) == -1
       && info.has_member == 0, "and inside the object");

    rc = loyalty_json_object_check((const unsigned char *) "[]", 2, NULL, 0,
                                   &info, NULL, 0);
    ok(rc == -1, "err may be NULL");

    rc = loyalty_json_object_check((const unsigned char *) "[]", 2, NULL, 0,
                                   &info, small, sizeof(small));
    ok(rc == -1 && strlen(small) == 4, "message cut to err_len: \"%s\"",
       small);

    return done_testing();
}


static int
check(const char *json, size_t len, const char *member, size_t mlen)
{
    memset(err, 0, sizeof(err));

    return loyalty_json_object_check((const unsigned char *) json, len,
                                     (const unsigned char *) member, mlen,
                                     &info, err, sizeof(err));
}


static int
valid(const char *json, size_t len)
{
    if (check(json, len, MEMBER, sizeof(MEMBER) - 1) != 0) {
        printf("# unexpected error: %s\n", err);
        return 0;
    }

    return 1;
}


static int
invalid(const char *json, size_t len, const char *why)
{
    if (check(json, len, MEMBER, sizeof(MEMBER) - 1) != -1) {
        printf("# accepted\n");
        return 0;
    }

    if (strstr(err, why) == NULL) {
        printf("# wrong reason: \"%s\", expected \"%s\"\n", err, why);
        return 0;
    }

    return 1;
}


/* -1 when invalid, else has_member */

static int
has(const char *json, size_t len, const char *member, size_t mlen)
{
    if (check(json, len, member, mlen) != 0) {
        printf("# unexpected error: %s\n", err);
        return -1;
    }

    return info.has_member;
}


/* an object holding depth - 1 nested arrays: depth levels in all */

static void
nest(char *buf, int depth)
{
    buf[0] = '{';
    memcpy(buf + 1, "\"a\":", 4);
    memset(buf + 5, '[', depth - 1);
    memset(buf + 5 + depth - 1, ']', depth - 1);
    memcpy(buf + 5 + 2 * (depth - 1), "}", 2);
}
