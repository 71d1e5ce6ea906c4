/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Fuzz target: loyalty_cookie_find and loyalty_id_valid.
 *
 * Input: one selector byte, then the Cookie header.  A selector below
 * 0x80 picks a cookie name from a fixed list; otherwise its low five bits
 * say how many of the following bytes are the name (any bytes, "=" and
 * ";" included) and the header is what remains.
 *
 * Both functions are checked against reference versions written
 * differently (indexes instead of pointers, one cookie-pair at a time),
 * and a found value must lie inside the header.
 */


#include "fuzz.h"
#include "loyalty_cookie.h"


static int fuzz_is_ws(unsigned char ch);
static int fuzz_is_id_char(unsigned char ch);
static int fuzz_id_valid_ref(const unsigned char *id, size_t len);
static int fuzz_find_ref(const unsigned char *h, size_t len,
    const unsigned char *name, size_t name_len, size_t *off,
    size_t *value_len);
static unsigned char *fuzz_copy(const uint8_t *data, size_t size);


static const char  *fuzz_names[] = {
    "loyalty_id", "shopper", "a", "", "x y", "loyalty_id_sig"
};


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                   found, valid;
    size_t                name_len, len, value_len, off, ref_len, i;
    unsigned char         sel, *header, *name;
    const unsigned char  *value;

    if (size == 0) {
        return 0;
    }

    sel = data[0];
    data++;
    size--;

    if (sel < 0x80) {
        i = sel % (sizeof(fuzz_names) / sizeof(fuzz_names[0]));
        name_len = strlen(fuzz_names[i]);
        name = fuzz_copy((const uint8_t *) fuzz_names[i], name_len);

    } else {
        name_len = sel & 0x1f;

        if (name_len > size) {
            name_len = size;
        }

        name = fuzz_copy(data, name_len);
        data += name_len;
        size -= name_len;
    }

    /* copies of the exact size: ASan sees a read past either end */

    len = size;
    header = fuzz_copy(data, len);

    value = NULL;
    value_len = (size_t) -1;

    found = loyalty_cookie_find(header, len, name, name_len, &value,
                                &value_len);

    FUZZ_CHECK(found == 0 || found == 1);
    FUZZ_CHECK(found == fuzz_find_ref(header, len, name, name_len, &off,
                                      &ref_len));

    if (found) {
        FUZZ_CHECK(value != NULL);
        FUZZ_CHECK(value >= header && value <= header + len);
        FUZZ_CHECK(value_len <= (size_t) (header + len - value));

        FUZZ_CHECK(value == header + off);
        FUZZ_CHECK(value_len == ref_len);

        FUZZ_CHECK(memchr(value, ';', value_len) == NULL);
        FUZZ_CHECK(value_len == 0
                   || (!fuzz_is_ws(value[0])
                       && !fuzz_is_ws(value[value_len - 1])));

        valid = loyalty_id_valid(value, value_len);

        FUZZ_CHECK(valid == fuzz_id_valid_ref(value, value_len));

        if (valid) {
            FUZZ_CHECK(value_len >= 1 && value_len <= LOYALTY_ID_MAX_LEN);

            for (i = 0; i < value_len; i++) {
                FUZZ_CHECK(fuzz_is_id_char(value[i]));
            }
        }
    }

    /* the whole header too: long and short strings, any bytes */

    FUZZ_CHECK(loyalty_id_valid(header, len)
               == fuzz_id_valid_ref(header, len));

    free(header);
    free(name);

    return 0;
}


static int
fuzz_is_ws(unsigned char ch)
{
    return ch == ' ' || ch == '\t';
}


static int
fuzz_is_id_char(unsigned char ch)
{
    static const char  set[] = "abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789_-";

    return ch != '\0' && strchr(set, ch) != NULL;
}


static int
fuzz_id_valid_ref(const unsigned char *id, size_t len)
{
    size_t  i;

    if (len < 1 || len > 64) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!fuzz_is_id_char(id[i])) {
            return 0;
        }
    }

    return 1;
}


/*
 * The header split at every ";" into cookie-pairs; in each, white space
 * is trimmed around the name and around the value; a pair without "="
 * has no name.  The first pair whose name matches wins.
 */

static int
fuzz_find_ref(const unsigned char *h, size_t len, const unsigned char *name,
    size_t name_len, size_t *off, size_t *value_len)
{
    size_t  pair, end, ns, ne, eq, vs, ve;

    for (pair = 0; pair < len; pair = end + 1) {

        for (end = pair; end < len && h[end] != ';'; end++) {
            /* void */
        }

        for (ns = pair; ns < end && fuzz_is_ws(h[ns]); ns++) {
            /* void */
        }

        for (eq = ns; eq < end && h[eq] != '='; eq++) {
            /* void */
        }

        if (eq == end) {
            continue;
        }

        for (ne = eq; ne > ns && fuzz_is_ws(h[ne - 1]); ne--) {
            /* void */
        }

        if (ne - ns != name_len || memcmp(h + ns, name, name_len) != 0) {
            continue;
        }

        for (vs = eq + 1; vs < end && fuzz_is_ws(h[vs]); vs++) {
            /* void */
        }

        for (ve = end; ve > vs && fuzz_is_ws(h[ve - 1]); ve--) {
            /* void */
        }

        *off = vs;
        *value_len = ve - vs;

        return 1;
    }

    return 0;
}


static unsigned char *
fuzz_copy(const uint8_t *data, size_t size)
{
    unsigned char  *p;

    p = malloc(size ? size : 1);
    FUZZ_CHECK(p != NULL);

    if (size) {
        memcpy(p, data, size);
    }

    return p;
}
