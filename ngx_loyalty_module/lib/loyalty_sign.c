/*
 * Copyright (C) ngx_loyalty_module authors
 */


#include "loyalty_sign.h"
#include "loyalty_cookie.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>


static int loyalty_hmac(const loyalty_key_t *key, const unsigned char *msg,
    size_t len, unsigned char *mac);
static int loyalty_hex_value(unsigned char ch);


static const char  loyalty_base64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


loyalty_cookie_rc_e
loyalty_cookie_verify(const unsigned char *value, size_t len,
    const loyalty_key_t *keys, size_t nkeys, int64_t now,
    const unsigned char **id, size_t *id_len, int64_t *expires)
{
    size_t               i, ilen, elen, signed_len;
    int64_t              exp;
    unsigned int         valid;
    const unsigned char  *dot1, *dot2, *sig, *p;
    unsigned char        mac[32], expect[LOYALTY_SIG_LEN + 1];

    /* <id>.<expires>.<sig>: the id has no dots, so split at the first
     * dot and at the second */

    dot1 = memchr(value, '.', len);
    if (dot1 == NULL) {
        return LOYALTY_COOKIE_MALFORMED;
    }

    ilen = dot1 - value;

    dot2 = memchr(dot1 + 1, '.', len - ilen - 1);
    if (dot2 == NULL) {
        return LOYALTY_COOKIE_MALFORMED;
    }

    elen = dot2 - dot1 - 1;
    sig = dot2 + 1;
    signed_len = dot2 - value;

    if (!loyalty_id_valid(value, ilen)
        || elen == 0 || elen > LOYALTY_EXPIRES_MAX_LEN
        || len - signed_len - 1 != LOYALTY_SIG_LEN)
    {
        return LOYALTY_COOKIE_MALFORMED;
    }

    exp = 0;

    for (p = dot1 + 1; p < dot2; p++) {
        if (*p < '0' || *p > '9') {
            return LOYALTY_COOKIE_MALFORMED;
        }

        if (exp > (INT64_MAX - (*p - '0')) / 10) {
            return LOYALTY_COOKIE_MALFORMED;
        }

        exp = exp * 10 + (*p - '0');
    }

    for (i = 0; i < LOYALTY_SIG_LEN; i++) {
        if (strchr(loyalty_base64url, sig[i]) == NULL || sig[i] == '\0') {
            return LOYALTY_COOKIE_MALFORMED;
        }
    }

    /* every key is tried, so the time taken does not tell which matched */

    valid = 0;

    for (i = 0; i < nkeys; i++) {
        if (loyalty_hmac(&keys[i], value, signed_len, mac) != 0) {
            return LOYALTY_COOKIE_BAD_SIGNATURE;
        }

        (void) loyalty_base64url_encode(mac, sizeof(mac), expect);

        valid |= (CRYPTO_memcmp(expect, sig, LOYALTY_SIG_LEN) == 0);
    }

    if (!valid) {
        return LOYALTY_COOKIE_BAD_SIGNATURE;
    }

    if (exp < now) {
        return LOYALTY_COOKIE_EXPIRED;
    }

    *id = value;
    *id_len = ilen;
    *expires = exp;

    return LOYALTY_COOKIE_OK;
}


size_t
loyalty_cookie_sign(const unsigned char *id, size_t id_len, int64_t expires,
    const loyalty_key_t *key, unsigned char *out)
{
    int            n;
    size_t         len;
    unsigned char  mac[32];

    if (!loyalty_id_valid(id, id_len) || expires < 0) {
        return 0;
    }

    memcpy(out, id, id_len);
    len = id_len;

    n = snprintf((char *) out + len, LOYALTY_EXPIRES_MAX_LEN + 2, ".%lld",
                 (long long) expires);
    len += n;

    if (loyalty_hmac(key, out, len, mac) != 0) {
        return 0;
    }

    out[len++] = '.';
    len += loyalty_base64url_encode(mac, sizeof(mac), out + len);

    return len;
}


int
loyalty_keys_parse(const char *text, size_t len, loyalty_key_t *keys,
    size_t max, char *err, size_t err_len)
{
    int          nkeys, line;
    size_t       i, n;
    const char  *p, *end, *eol, *s, *e;

    nkeys = 0;
    line = 0;
    p = text;
    end = text + len;

    while (p < end) {
        line++;

        eol = memchr(p, '\n', end - p);
        if (eol == NULL) {
            eol = end;
        }

        s = p;
        e = eol;
        p = eol + 1;

        while (s < e && (*s == ' ' || *s == '\t')) {
            s++;
        }

        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
            e--;
        }

        if (s == e || *s == '#') {
            continue;
        }

        n = e - s;

        for (i = 0; i < n; i++) {
            if (loyalty_hex_value((unsigned char) s[i]) < 0) {
                snprintf(err, err_len, "line %d: a key must be hex digits "
                         "only", line);
                return -1;
            }
        }

        if (n % 2) {
            snprintf(err, err_len, "line %d: odd number of hex digits",
                     line);
            return -1;
        }

        if (n < 2 * LOYALTY_KEY_MIN_LEN) {
            snprintf(err, err_len, "line %d: key is shorter than %d bytes "
                     "(%d hex digits)", line, LOYALTY_KEY_MIN_LEN,
                     2 * LOYALTY_KEY_MIN_LEN);
            return -1;
        }

        if (n > 2 * LOYALTY_KEY_MAX_LEN) {
            snprintf(err, err_len, "line %d: key is longer than %d bytes",
                     line, LOYALTY_KEY_MAX_LEN);
            return -1;
        }

        if ((size_t) nkeys == max) {
            snprintf(err, err_len, "more than %d keys", (int) max);
            return -1;
        }

        for (i = 0; i < n / 2; i++) {
            keys[nkeys].data[i] = (unsigned char)
                (loyalty_hex_value((unsigned char) s[2 * i]) << 4
                 | loyalty_hex_value((unsigned char) s[2 * i + 1]));
        }

        keys[nkeys].len = n / 2;
        nkeys++;
    }

    if (nkeys == 0) {
        snprintf(err, err_len, "no key found");
        return -1;
    }

    return nkeys;
}


const char *
loyalty_cookie_error_name(loyalty_cookie_rc_e rc)
{
    switch (rc) {

    case LOYALTY_COOKIE_MALFORMED:
        return "malformed";

    case LOYALTY_COOKIE_BAD_SIGNATURE:
        return "bad_signature";

    case LOYALTY_COOKIE_EXPIRED:
        return "expired";

    default:
        return "";
    }
}


size_t
loyalty_base64url_encode(const unsigned char *src, size_t len,
    unsigned char *dst)
{
    size_t          i;
    unsigned char  *d;
    unsigned long   v;

    d = dst;

    for (i = 0; i + 2 < len; i += 3) {
        v = (unsigned long) src[i] << 16 | src[i + 1] << 8 | src[i + 2];
        *d++ = loyalty_base64url[(v >> 18) & 0x3f];
        *d++ = loyalty_base64url[(v >> 12) & 0x3f];
        *d++ = loyalty_base64url[(v >> 6) & 0x3f];
        *d++ = loyalty_base64url[v & 0x3f];
    }

    if (len - i == 1) {
        v = (unsigned long) src[i] << 16;
        *d++ = loyalty_base64url[(v >> 18) & 0x3f];
        *d++ = loyalty_base64url[(v >> 12) & 0x3f];

    } else if (len - i == 2) {
        v = (unsigned long) src[i] << 16 | src[i + 1] << 8;
        *d++ = loyalty_base64url[(v >> 18) & 0x3f];
        *d++ = loyalty_base64url[(v >> 12) & 0x3f];
        *d++ = loyalty_base64url[(v >> 6) & 0x3f];
    }

    return d - dst;
}


static int
loyalty_hmac(const loyalty_key_t *key, const unsigned char *msg, size_t len,
    unsigned char *mac)
{
    unsigned int  mac_len;

    mac_len = 32;

    if (HMAC(EVP_sha256(), key->data, (int) key->len, msg, len, mac,
             &mac_len)
        == NULL || mac_len != 32)
    {
        return -1;
    }

    return 0;
}


static int
loyalty_hex_value(unsigned char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }

    ch |= 0x20;

    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }

    return -1;
}
