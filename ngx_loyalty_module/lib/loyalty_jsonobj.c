/*
 * Copyright (C) ngx_loyalty_module authors
 */


#include "loyalty_jsonobj.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>


typedef struct {
    const unsigned char  *start;
    const unsigned char  *pos;
    const unsigned char  *end;
    char                 *err;
    size_t                err_len;
} loyalty_json_parser_t;


/* a key compared with the member while it is decoded, byte by byte */
typedef struct {
    const unsigned char  *member;
    size_t                mlen;
    size_t                matched;    /* bytes of member seen so far */
    int                   differs;
} loyalty_json_key_t;


static int loyalty_json_value(loyalty_json_parser_t *jp, int depth);
static int loyalty_json_object(loyalty_json_parser_t *jp, int depth,
    const unsigned char *member, size_t mlen, loyalty_json_object_t *info);
static int loyalty_json_array(loyalty_json_parser_t *jp, int depth);
static int loyalty_json_string(loyalty_json_parser_t *jp,
    loyalty_json_key_t *key);
static int loyalty_json_escape(loyalty_json_parser_t *jp,
    loyalty_json_key_t *key);
static int loyalty_json_hex4(const unsigned char *p, unsigned int *cp);
static size_t loyalty_json_utf8_len(const unsigned char *p,
    const unsigned char *end);
static void loyalty_json_key_add(loyalty_json_key_t *key,
    const unsigned char *p, size_t n);
static int loyalty_json_number(loyalty_json_parser_t *jp);
static int loyalty_json_literal(loyalty_json_parser_t *jp,
    const char *literal, size_t n);
static void loyalty_json_space(loyalty_json_parser_t *jp);
static int loyalty_json_error(loyalty_json_parser_t *jp,
    const unsigned char *at, const char *fmt, ...);


int
loyalty_json_object_check(const unsigned char *p, size_t len,
    const unsigned char *member, size_t mlen, loyalty_json_object_t *info,
    char *err, size_t err_len)
{
    loyalty_json_parser_t  jp;

    info->close = 0;
    info->empty = 0;
    info->has_member = 0;

    if (err != NULL && err_len > 0) {
        err[0] = '\0';
    }

    jp.start = p;
    jp.pos = p;
    jp.end = p + len;
    jp.err = err;
    jp.err_len = err_len;

    loyalty_json_space(&jp);

    if (jp.pos == jp.end) {
        return loyalty_json_error(&jp, NULL, "not an object (empty)");
    }

    if (jp.end - jp.pos >= 3 && jp.pos[0] == 0xef && jp.pos[1] == 0xbb
        && jp.pos[2] == 0xbf)
    {
        return loyalty_json_error(&jp, jp.pos, "byte order mark");
    }

    if (*jp.pos != '{') {
        return loyalty_json_error(&jp, jp.pos, "not an object");
    }

    if (loyalty_json_object(&jp, 1, member, mlen, info) != 0) {
        goto failed;
    }

    loyalty_json_space(&jp);

    if (jp.pos != jp.end) {
        (void) loyalty_json_error(&jp, jp.pos, "trailing data");
        goto failed;
    }

    return 0;

failed:

    /* the member may have been seen before the error */

    info->close = 0;
    info->empty = 0;
    info->has_member = 0;

    return -1;
}


/* depth: how many objects and arrays enclose the value */

static int
loyalty_json_value(loyalty_json_parser_t *jp, int depth)
{
    if (jp->pos == jp->end) {
        return loyalty_json_error(jp, jp->pos, "unexpected end");
    }

    switch (*jp->pos) {

    case '{':
        return loyalty_json_object(jp, depth + 1, NULL, 0, NULL);

    case '[':
        return loyalty_json_array(jp, depth + 1);

    case '"':
        return loyalty_json_string(jp, NULL);

    case 't':
        return loyalty_json_literal(jp, "true", 4);

    case 'f':
        return loyalty_json_literal(jp, "false", 5);

    case 'n':
        return loyalty_json_literal(jp, "null", 4);

    default:
        break;
    }

    /* '+' and '.' go there only to name the mistake: to their authors
     * "+1" and ".5" are numbers */

    if (*jp->pos == '-' || *jp->pos == '+' || *jp->pos == '.'
        || (*jp->pos >= '0' && *jp->pos <= '9'))
    {
        return loyalty_json_number(jp);
    }

    return loyalty_json_error(jp, jp->pos, "invalid value");
}


/* info is NULL for nested objects: only top-level keys are compared */

static int
loyalty_json_object(loyalty_json_parser_t *jp, int depth,
    const unsigned char *member, size_t mlen, loyalty_json_object_t *info)
{
    loyalty_json_key_t  key;

    if (depth > LOYALTY_JSON_MAX_DEPTH) {
        return loyalty_json_error(jp, jp->pos, "nesting deeper than %d",
                                  LOYALTY_JSON_MAX_DEPTH);
    }

    jp->pos++;
    loyalty_json_space(jp);

    if (jp->pos < jp->end && *jp->pos == '}') {
        if (info != NULL) {
            info->close = (size_t) (jp->pos - jp->start);
            info->empty = 1;
        }

        jp->pos++;
        return 0;
    }

    for ( ;; ) {
        if (jp->pos == jp->end) {
            return loyalty_json_error(jp, jp->pos, "unexpected end");
        }

        if (*jp->pos != '"') {
            return loyalty_json_error(jp, jp->pos, "expected a member name");
        }

        key.member = member;
        key.mlen = mlen;
        key.matched = 0;
        key.differs = (member == NULL);

        if (loyalty_json_string(jp, info != NULL ? &key : NULL) != 0) {
            return -1;
        }

        if (info != NULL && !key.differs && key.matched == mlen) {
            info->has_member = 1;
        }

        loyalty_json_space(jp);

        if (jp->pos == jp->end || *jp->pos != ':') {
            return loyalty_json_error(jp, jp->pos, "expected ':'");
        }

        jp->pos++;
        loyalty_json_space(jp);

        if (loyalty_json_value(jp, depth) != 0) {
            return -1;
        }

        loyalty_json_space(jp);

        if (jp->pos == jp->end) {
            return loyalty_json_error(jp, jp->pos, "unexpected end");
        }

        if (*jp->pos == '}') {
            if (info != NULL) {
                info->close = (size_t) (jp->pos - jp->start);
            }

            jp->pos++;
            return 0;
        }

        if (*jp->pos != ',') {
            return loyalty_json_error(jp, jp->pos, "expected ',' or '}'");
        }

        jp->pos++;
        loyalty_json_space(jp);
    }
}


static int
loyalty_json_array(loyalty_json_parser_t *jp, int depth)
{
    if (depth > LOYALTY_JSON_MAX_DEPTH) {
        return loyalty_json_error(jp, jp->pos, "nesting deeper than %d",
                                  LOYALTY_JSON_MAX_DEPTH);
    }

    jp->pos++;
    loyalty_json_space(jp);

    if (jp->pos < jp->end && *jp->pos == ']') {
        jp->pos++;
        return 0;
    }

    for ( ;; ) {
        if (loyalty_json_value(jp, depth) != 0) {
            return -1;
        }

        loyalty_json_space(jp);

        if (jp->pos == jp->end) {
            return loyalty_json_error(jp, jp->pos, "unexpected end");
        }

        if (*jp->pos == ']') {
            jp->pos++;
            return 0;
        }

        if (*jp->pos != ',') {
            return loyalty_json_error(jp, jp->pos, "expected ',' or ']'");
        }

        jp->pos++;
        loyalty_json_space(jp);
    }
}


/* key is NULL unless the string is a top-level key */

static int
loyalty_json_string(loyalty_json_parser_t *jp, loyalty_json_key_t *key)
{
    size_t                n;
    const unsigned char  *open;

    open = jp->pos++;

    for ( ;; ) {
        if (jp->pos == jp->end) {
            return loyalty_json_error(jp, open, "unterminated string");
        }

        if (*jp->pos == '"') {
            jp->pos++;
            return 0;
        }

        if (*jp->pos == '\\') {
            if (loyalty_json_escape(jp, key) != 0) {
                return -1;
            }

            continue;
        }

        if (*jp->pos < 0x20) {
            return loyalty_json_error(jp, jp->pos,
                                      "control character in string");
        }

        if (*jp->pos < 0x80) {
            n = 1;

        } else {
            n = loyalty_json_utf8_len(jp->pos, jp->end);

            if (n == 0) {
                return loyalty_json_error(jp, jp->pos, "invalid UTF-8");
            }
        }

        if (key != NULL) {
            loyalty_json_key_add(key, jp->pos, n);
        }

        jp->pos += n;
    }
}


/* jp->pos is at the backslash */

static int
loyalty_json_escape(loyalty_json_parser_t *jp, loyalty_json_key_t *key)
{
    size_t                n;
    unsigned int          cp, low;
    unsigned char         utf8[4];
    const unsigned char  *p;

    p = jp->pos;

    if (jp->end - p < 2) {
        return loyalty_json_error(jp, p, "unterminated escape");
    }

    n = 1;

    switch (p[1]) {

    case '"':
    case '\\':
    case '/':
        utf8[0] = p[1];
        break;

    case 'b':
        utf8[0] = '\b';
        break;

    case 'f':
        utf8[0] = '\f';
        break;

    case 'n':
        utf8[0] = '\n';
        break;

    case 'r':
        utf8[0] = '\r';
        break;

    case 't':
        utf8[0] = '\t';
        break;

    case 'u':
        if (jp->end - p < 6 || loyalty_json_hex4(p + 2, &cp) != 0) {
            return loyalty_json_error(jp, p, "invalid \\u escape");
        }

        if (cp >= 0xdc00 && cp <= 0xdfff) {
            return loyalty_json_error(jp, p, "lone surrogate");
        }

        if (cp >= 0xd800 && cp <= 0xdbff) {

            /* a high surrogate counts only with a low one right after */

            if (jp->end - p < 12 || p[6] != '\\' || p[7] != 'u'
                || loyalty_json_hex4(p + 8, &low) != 0
                || low < 0xdc00 || low > 0xdfff)
            {
                return loyalty_json_error(jp, p, "lone surrogate");
            }

            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            p += 6;
        }

        p += 4;

        if (cp < 0x80) {
            utf8[0] = (unsigned char) cp;

        } else if (cp < 0x800) {
            utf8[0] = (unsigned char) (0xc0 | (cp >> 6));
            utf8[1] = (unsigned char) (0x80 | (cp & 0x3f));
            n = 2;

        } else if (cp < 0x10000) {
            utf8[0] = (unsigned char) (0xe0 | (cp >> 12));
            utf8[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
            utf8[2] = (unsigned char) (0x80 | (cp & 0x3f));
            n = 3;

        } else {
            utf8[0] = (unsigned char) (0xf0 | (cp >> 18));
            utf8[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
            utf8[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
            utf8[3] = (unsigned char) (0x80 | (cp & 0x3f));
            n = 4;
        }

        break;

    default:
        return loyalty_json_error(jp, p, "invalid escape");
    }

    if (key != NULL) {
        loyalty_json_key_add(key, utf8, n);
    }

    jp->pos = p + 2;

    return 0;
}


static int
loyalty_json_hex4(const unsigned char *p, unsigned int *cp)
{
    unsigned int   i, v;
    unsigned char  ch;

    v = 0;

    for (i = 0; i < 4; i++) {
        ch = p[i];

        if (ch >= '0' && ch <= '9') {
            v = v << 4 | (unsigned int) (ch - '0');

        } else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') {
            v = v << 4 | (unsigned int) ((ch | 0x20) - 'a' + 10);

        } else {
            return -1;
        }
    }

    *cp = v;

    return 0;
}


/*
 * The length of the well-formed multibyte UTF-8 sequence at p, or 0: as
 * in RFC 3629, no overlong forms, no surrogates, nothing above U+10FFFF.
 */

static size_t
loyalty_json_utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t         n, i;
    unsigned char  lo, hi;

    lo = 0x80;
    hi = 0xbf;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;

    } else if (p[0] == 0xe0) {
        n = 3;
        lo = 0xa0;

    } else if (p[0] == 0xed) {
        n = 3;
        hi = 0x9f;

    } else if (p[0] >= 0xe1 && p[0] <= 0xef) {
        n = 3;

    } else if (p[0] == 0xf0) {
        n = 4;
        lo = 0x90;

    } else if (p[0] == 0xf4) {
        n = 4;
        hi = 0x8f;

    } else if (p[0] >= 0xf1 && p[0] <= 0xf3) {
        n = 4;

    } else {
        return 0;
    }

    if ((size_t) (end - p) < n || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return n;
}


static void
loyalty_json_key_add(loyalty_json_key_t *key, const unsigned char *p,
    size_t n)
{
    if (key->differs) {
        return;
    }

    if (n > key->mlen - key->matched
        || memcmp(key->member + key->matched, p, n) != 0)
    {
        key->differs = 1;
        return;
    }

    key->matched += n;
}


/*
 * -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?, of any length:
 * nothing is converted, so no magnitude is too large
 */

static int
loyalty_json_number(loyalty_json_parser_t *jp)
{
    const unsigned char  *p, *end, *digits;

    p = jp->pos;
    end = jp->end;

    if (*p == '-') {
        p++;
    }

    if (p == end || *p < '0' || *p > '9') {
        return loyalty_json_error(jp, jp->pos, "invalid number");
    }

    if (*p == '0') {
        p++;

        if (p < end && *p >= '0' && *p <= '9') {
            return loyalty_json_error(jp, jp->pos, "invalid number");
        }

    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < end && *p == '.') {
        digits = ++p;

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == digits) {
            return loyalty_json_error(jp, jp->pos, "invalid number");
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        digits = p;

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == digits) {
            return loyalty_json_error(jp, jp->pos, "invalid number");
        }
    }

    jp->pos = p;

    return 0;
}


static int
loyalty_json_literal(loyalty_json_parser_t *jp, const char *literal,
    size_t n)
{
    if ((size_t) (jp->end - jp->pos) < n || memcmp(jp->pos, literal, n) != 0)
    {
        return loyalty_json_error(jp, jp->pos, "invalid literal");
    }

    jp->pos += n;

    return 0;
}


/* RFC 8259 white space: no form feed, no vertical tab, no NBSP */

static void
loyalty_json_space(loyalty_json_parser_t *jp)
{
    while (jp->pos < jp->end
           && (*jp->pos == ' ' || *jp->pos == '\t' || *jp->pos == '\n'
               || *jp->pos == '\r'))
    {
        jp->pos++;
    }
}


/* always returns -1; at, when not NULL, is appended as a byte offset */

static int
loyalty_json_error(loyalty_json_parser_t *jp, const unsigned char *at,
    const char *fmt, ...)
{
    int      n;
    va_list  args;

    if (jp->err == NULL || jp->err_len == 0) {
        return -1;
    }

    va_start(args, fmt);
    n = vsnprintf(jp->err, jp->err_len, fmt, args);
    va_end(args);

    if (at != NULL && n >= 0 && (size_t) n < jp->err_len) {
        snprintf(jp->err + n, jp->err_len - n, " at byte %zu",
                 (size_t) (at - jp->start));
    }

    return -1;
}
