/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Fuzz target: loyalty_json_object_check, with jansson as the oracle.
 *
 * The whole input is the document.  jansson parses it too (any top-level
 * value, integers as reals so that long ones fit, NUL allowed in strings
 * as RFC 8259 allows it), and where jansson is decisive the two agree:
 *
 *   - jansson loads an object no deeper than LOYALTY_JSON_MAX_DEPTH: the
 *     checker accepts it, with empty and has_member matching jansson's
 *     object; deeper, the checker says why it refuses;
 *   - jansson loads anything else: the checker refuses;
 *   - the checker accepts and jansson does not: only for reasons that are
 *     jansson's limits, not JSON's: a number beyond a double, a NUL in a
 *     key.
 *
 * Inputs with a raw NUL byte are left out: jansson reads past it.
 *
 * When the checker accepts, close is the last '}', and the member
 * spliced in before it (with a comma unless empty) gives a document that
 * the checker accepts with that member, and that jansson loads with one
 * more key whenever it loaded the original.
 */


#include "fuzz.h"
#include "loyalty_jsonobj.h"

#include <jansson.h>


#define FUZZ_SPLICE       "\"x\":1"
#define FUZZ_JSON_FLAGS                                                      \
    (JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL)


static void fuzz_check_info(const unsigned char *p, size_t len,
    const loyalty_json_object_t *info);
static void fuzz_splice(const unsigned char *p, size_t len,
    const loyalty_json_object_t *info, json_t *root);
static int fuzz_depth(const unsigned char *p, size_t len);
static int fuzz_space(unsigned char ch);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                    rc, rc2;
    char                   err[128];
    json_t                *root;
    json_error_t           jerr;
    unsigned char         *p;
    loyalty_json_object_t  info, info2, info3;

    /* a copy of the exact size: ASan sees a read past either end */

    p = malloc(size ? size : 1);
    FUZZ_CHECK(p != NULL);
    memcpy(p, data, size);

    err[0] = 'X';

    rc = loyalty_json_object_check(p, size, (const unsigned char *) "a", 1,
                                   &info, err, sizeof(err));

    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(rc == 0 ? err[0] == '\0' : err[0] != '\0');
    FUZZ_CHECK(strlen(err) < sizeof(err));

    /* the member changes has_member only */

    rc2 = loyalty_json_object_check(p, size,
                                    (const unsigned char *) "loyalty", 7,
                                    &info2, NULL, 0);

    FUZZ_CHECK(rc2 == rc);
    FUZZ_CHECK(info2.close == info.close && info2.empty == info.empty);

    if (rc == 0) {
        fuzz_check_info(p, size, &info);

        /* everything before the final '}' is not an object */

        FUZZ_CHECK(loyalty_json_object_check(p, info.close, NULL, 0, &info3,
                                             NULL, 0)
                   == -1);

    } else {
        FUZZ_CHECK(info.close == 0 && info.empty == 0
                   && info.has_member == 0);
    }

    /* jansson skips raw NUL bytes as if they were not there; JSON has no
     * place for them */

    if (memchr(p, '\0', size) != NULL) {
        FUZZ_CHECK(rc == -1);
        free(p);
        return 0;
    }

    root = json_loadb((const char *) p, size, FUZZ_JSON_FLAGS, &jerr);

    if (root == NULL) {
        if (rc == 0) {
            FUZZ_CHECK(json_error_code(&jerr) == json_error_numeric_overflow
                       || json_error_code(&jerr)
                          == json_error_null_byte_in_key);
            fuzz_splice(p, size, &info, NULL);
        }

    } else if (!json_is_object(root)) {
        FUZZ_CHECK(rc == -1);

    } else if (fuzz_depth(p, size) > LOYALTY_JSON_MAX_DEPTH) {
        FUZZ_CHECK(rc == -1);
        FUZZ_CHECK(strstr(err, "nesting deeper than") != NULL);

    } else {
        FUZZ_CHECK(rc == 0);
        FUZZ_CHECK(info.empty == (json_object_size(root) == 0));
        FUZZ_CHECK(info.has_member
                   == (json_object_getn(root, "a", 1) != NULL));
        FUZZ_CHECK(info2.has_member
                   == (json_object_getn(root, "loyalty", 7) != NULL));

        fuzz_splice(p, size, &info, root);
    }

    json_decref(root);
    free(p);

    return 0;
}


/* an accepted document: white space, '{', ..., '}', white space */

static void
fuzz_check_info(const unsigned char *p, size_t len,
    const loyalty_json_object_t *info)
{
    size_t  i, open;

    FUZZ_CHECK(info->close < len && p[info->close] == '}');

    for (i = info->close + 1; i < len; i++) {
        FUZZ_CHECK(fuzz_space(p[i]));
    }

    for (open = 0; fuzz_space(p[open]); open++) {
        /* void */
    }

    FUZZ_CHECK(p[open] == '{' && open < info->close);

    for (i = open + 1; i < info->close && fuzz_space(p[i]); i++) {
        /* void */
    }

    FUZZ_CHECK(info->empty == (i == info->close));
}


/*
 * The module's splice: the member before the final '}'.  root is
 * jansson's reading of the original, or NULL when it has none.
 */

static void
fuzz_splice(const unsigned char *p, size_t len,
    const loyalty_json_object_t *info, json_t *root)
{
    int                    rc;
    size_t                 n, add;
    json_t                *spliced;
    json_error_t           jerr;
    unsigned char         *s;
    loyalty_json_object_t  sinfo;

    add = (info->empty ? 0 : 1) + sizeof(FUZZ_SPLICE) - 1;

    s = malloc(len + add);
    FUZZ_CHECK(s != NULL);

    memcpy(s, p, info->close);
    n = info->close;

    if (!info->empty) {
        s[n++] = ',';
    }

    memcpy(s + n, FUZZ_SPLICE, sizeof(FUZZ_SPLICE) - 1);
    n += sizeof(FUZZ_SPLICE) - 1;

    memcpy(s + n, p + info->close, len - info->close);
    n += len - info->close;

    FUZZ_CHECK(n == len + add);

    rc = loyalty_json_object_check(s, n, (const unsigned char *) "x", 1,
                                   &sinfo, NULL, 0);

    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(sinfo.has_member == 1 && sinfo.empty == 0);
    FUZZ_CHECK(sinfo.close == info->close + add);

    if (root != NULL) {
        spliced = json_loadb((const char *) s, n, FUZZ_JSON_FLAGS, &jerr);

        FUZZ_CHECK(spliced != NULL && json_is_object(spliced));
        FUZZ_CHECK(json_is_number(json_object_get(spliced, "x")));
        FUZZ_CHECK(json_object_size(spliced)
                   == json_object_size(root)
                      + (json_object_get(root, "x") == NULL));

        json_decref(spliced);
    }

    free(s);
}


/* the deepest nesting of a document known to be valid JSON */

static int
fuzz_depth(const unsigned char *p, size_t len)
{
    int     depth, max, in_string;
    size_t  i;

    depth = 0;
    max = 0;
    in_string = 0;

    for (i = 0; i < len; i++) {
        if (in_string) {
            if (p[i] == '\\') {
                i++;

            } else if (p[i] == '"') {
                in_string = 0;
            }

            continue;
        }

        switch (p[i]) {

        case '"':
            in_string = 1;
            break;

        case '{':
        case '[':
            if (++depth > max) {
                max = depth;
            }

            break;

        case '}':
        case ']':
            depth--;
            break;

        default:
            break;
        }
    }

    return max;
}


static int
fuzz_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}
