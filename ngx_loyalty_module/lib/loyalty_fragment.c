/*
 * Copyright (C) ngx_loyalty_module authors
 */


#include "loyalty_fragment.h"

#include <stdlib.h>
#include <string.h>


/*
 * ENSURE_ASCII escapes all non-ASCII, U+2028 and U+2029 included;
 * PRESERVE_ORDER keeps the members of offers and experiments as given
 */
#define LOYALTY_JSON_FLAGS                                                   \
    (JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY)

#define LOYALTY_BUF_START  512
#define LOYALTY_BUF_ROOM   256    /* free room tried before sizing */


/*
 * The fragment is written member by member rather than dumped from one
 * jansson object: cashback must keep the record's digits ("12.50"),
 * which a jansson real cannot hold, and progress must read 0.425, not
 * the 0.42499999999999999 of a real dumped with 17 digits.  Values are
 * still dumped by jansson, one at a time.
 */
typedef struct {
    char    *data;
    size_t   len;
    size_t   size;
    int      failed;
} loyalty_buf_t;


static void loyalty_buf_key(loyalty_buf_t *b, const char *name);
static void loyalty_buf_add(loyalty_buf_t *b, const char *p, size_t n);
static char *loyalty_buf_reserve(loyalty_buf_t *b, size_t n);
static void loyalty_buf_json(loyalty_buf_t *b, json_t *value);
static void loyalty_buf_uint(loyalty_buf_t *b, uint64_t n);
static void loyalty_buf_progress(loyalty_buf_t *b, double progress);
static json_t *loyalty_segments_json(const loyalty_customer_t *c);
static int loyalty_script_unsafe(unsigned char ch);


char *
loyalty_fragment(const char *status, const loyalty_customer_t *c,
    const loyalty_progress_t *p, const json_t *offers,
    const json_t *experiments, size_t *len)
{
    char           *out;
    loyalty_buf_t   b;

    if (status == NULL) {
        return NULL;
    }

    memset(&b, 0, sizeof(loyalty_buf_t));

    loyalty_buf_add(&b, "{", 1);
    loyalty_buf_key(&b, "status");
    loyalty_buf_json(&b, json_string(status));

    if (c == NULL) {
        goto experiments;
    }

    if (loyalty_customer_has(c, LOYALTY_FIELD_TIER)) {
        loyalty_buf_key(&b, "tier");
        loyalty_buf_json(&b, json_string(c->tier));
    }

    if (p != NULL && p->found && p->label_len) {
        loyalty_buf_key(&b, "label");
        loyalty_buf_json(&b, json_stringn(p->label, p->label_len));
    }

    if (loyalty_customer_has(c, LOYALTY_FIELD_POINTS)) {
        loyalty_buf_key(&b, "points");
        loyalty_buf_uint(&b, c->points);
    }

    if (p != NULL && p->found && p->has_next) {
        loyalty_buf_key(&b, "next_tier");
        loyalty_buf_json(&b, json_stringn(p->next_tier, p->next_tier_len));
        loyalty_buf_key(&b, "points_to_next");
        loyalty_buf_uint(&b, p->points_to_next);
    }

    if (p != NULL && p->found) {
        loyalty_buf_key(&b, "progress");
        loyalty_buf_progress(&b, p->progress);
    }

    if (loyalty_customer_has(c, LOYALTY_FIELD_CASHBACK)) {
        loyalty_buf_key(&b, "cashback");
        loyalty_buf_add(&b, c->cashback, strlen(c->cashback));
    }

    if (loyalty_customer_has(c, LOYALTY_FIELD_REFERRAL_CODE)) {
        loyalty_buf_key(&b, "referral_code");
        loyalty_buf_json(&b, json_string(c->referral_code));
    }

    if (loyalty_customer_has(c, LOYALTY_FIELD_SEGMENTS) && c->nsegments) {
        loyalty_buf_key(&b, "segments");
        loyalty_buf_json(&b, loyalty_segments_json(c));
    }

    if (json_is_array(offers) && json_array_size(offers)) {
        loyalty_buf_key(&b, "offers");
        loyalty_buf_json(&b, json_incref((json_t *) offers));
    }

experiments:

    if (json_is_object(experiments) && json_object_size(experiments)) {
        loyalty_buf_key(&b, "experiments");
        loyalty_buf_json(&b, json_incref((json_t *) experiments));
    }

    loyalty_buf_add(&b, "}", 1);

    if (b.failed) {
        free(b.data);
        return NULL;
    }

    out = loyalty_json_script_safe(b.data, b.len, len);

    free(b.data);

    return out;
}


char *
loyalty_json_script_safe(const char *json, size_t len, size_t *out_len)
{
    char                 *out, *q;
    size_t                i, n;
    const unsigned char  *p;
    static const char     hex[] = "0123456789abcdef";

    p = (const unsigned char *) json;

    if (len > (SIZE_MAX - 1) / 6) {
        return NULL;
    }

    n = 0;

    for (i = 0; i < len; i++) {
        if (loyalty_script_unsafe(p[i])) {
            n += 6;

        } else if (p[i] == 0xe2 && i + 2 < len && p[i + 1] == 0x80
                   && (p[i + 2] == 0xa8 || p[i + 2] == 0xa9))
        {
            n += 6;
            i += 2;

        } else {
            n++;
        }
    }

    out = malloc(n + 1);

    if (out == NULL) {
        return NULL;
    }

    q = out;

    for (i = 0; i < len; i++) {
        if (loyalty_script_unsafe(p[i])) {
            memcpy(q, "\\u00", 4);
            q[4] = hex[p[i] >> 4];
            q[5] = hex[p[i] & 0x0f];
            q += 6;

        } else if (p[i] == 0xe2 && i + 2 < len && p[i + 1] == 0x80
                   && (p[i + 2] == 0xa8 || p[i + 2] == 0xa9))
        {
            memcpy(q, p[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
            q += 6;
            i += 2;

        } else {
            *q++ = (char) p[i];
        }
    }

    *q = '\0';

    if (out_len != NULL) {
        *out_len = n;
    }

    return out;
}


/* writes ,"name": (no comma after the opening brace) */

static void
loyalty_buf_key(loyalty_buf_t *b, const char *name)
{
    if (b->len > 1) {
        loyalty_buf_add(b, ",", 1);
    }

    loyalty_buf_add(b, "\"", 1);
    loyalty_buf_add(b, name, strlen(name));
    loyalty_buf_add(b, "\":", 2);
}


static void
loyalty_buf_add(loyalty_buf_t *b, const char *p, size_t n)
{
    char  *dst;

    dst = loyalty_buf_reserve(b, n);

    if (dst != NULL) {
        memcpy(dst, p, n);
        b->len += n;
    }
}


/* room for n more bytes at b->data + b->len, NULL once anything failed */

static char *
loyalty_buf_reserve(loyalty_buf_t *b, size_t n)
{
    char    *data;
    size_t   size;

    if (b->failed) {
        return NULL;
    }

    if (n > b->size - b->len) {
        size = b->size ? b->size : LOYALTY_BUF_START;

        while (size - b->len < n) {
            if (size > SIZE_MAX / 2) {
                b->failed = 1;
                return NULL;
            }

            size *= 2;
        }

        data = realloc(b->data, size);

        if (data == NULL) {
            b->failed = 1;
            return NULL;
        }

        b->data = data;
        b->size = size;
    }

    return b->data + b->len;
}


/* dumps value and releases it; NULL (out of memory) fails the buffer */

static void
loyalty_buf_json(loyalty_buf_t *b, json_t *value)
{
    char    *dst;
    size_t   n;

    if (value == NULL) {
        b->failed = 1;
        return;
    }

    /*
     * Dumped straight into the free room; json_dumpb() tells the size it
     * needs when the room is too small, and only then is it dumped again
     * into a larger one (dumping the offers twice was a tenth of a
     * request's time).
     */

    dst = loyalty_buf_reserve(b, LOYALTY_BUF_ROOM);

    if (dst != NULL) {
        n = json_dumpb(value, dst, b->size - b->len, LOYALTY_JSON_FLAGS);

        if (n > b->size - b->len) {
            dst = loyalty_buf_reserve(b, n);

            if (dst != NULL
                && json_dumpb(value, dst, n, LOYALTY_JSON_FLAGS) != n)
            {
                b->failed = 1;
            }
        }

        if (n == 0) {
            b->failed = 1;

        } else if (!b->failed) {
            b->len += n;
        }
    }

    json_decref(value);
}


static void
loyalty_buf_uint(loyalty_buf_t *b, uint64_t n)
{
    size_t         len;
    unsigned char  buf[LOYALTY_INT_STR_LEN];

    len = loyalty_uint_format(n, buf);

    loyalty_buf_add(b, (char *) buf, len);
}


/*
 * Three decimals without trailing zeros, by hand: printf("%f") follows
 * the locale's decimal point.  Short of the next tier the bar never
 * reads 1.
 */

static void
loyalty_buf_progress(loyalty_buf_t *b, double progress)
{
    char          text[6];
    size_t        len;
    unsigned int  k;

    if (!(progress > 0.0)) {
        k = 0;

    } else if (progress >= 1.0) {
        k = 1000;

    } else {
        k = (unsigned int) (progress * 1000.0 + 0.5);

        if (k > 999) {
            k = 999;
        }
    }

    if (k == 1000) {
        loyalty_buf_add(b, "1", 1);
        return;
    }

    text[0] = '0';
    text[1] = '.';
    text[2] = (char) ('0' + k / 100);
    text[3] = (char) ('0' + k / 10 % 10);
    text[4] = (char) ('0' + k % 10);

    for (len = 5; len > 2 && text[len - 1] == '0'; len--) {
        /* void */
    }

    loyalty_buf_add(b, text, len == 2 ? 1 : len);
}


static json_t *
loyalty_segments_json(const loyalty_customer_t *c)
{
    size_t   i;
    json_t  *list;

    list = json_array();

    if (list == NULL) {
        return NULL;
    }

    for (i = 0; i < c->nsegments; i++) {
        if (json_array_append_new(list, json_string(c->segments[i])) != 0) {
            json_decref(list);
            return NULL;
        }
    }

    return list;
}


/*
 * < > & could end the element, open a comment or start a character
 * reference; DEL is ASCII, so JSON_ENSURE_ASCII keeps it, but HTML
 * counts it as a control character
 */

static int
loyalty_script_unsafe(unsigned char ch)
{
    return ch == '<' || ch == '>' || ch == '&' || ch == 0x7f;
}
