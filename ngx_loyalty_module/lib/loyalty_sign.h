/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Signed customer cookies: "<id>.<expires>.<sig>", where sig is the
 * base64url encoding (no padding) of HMAC-SHA256(key, "<id>.<expires>"),
 * and the key file that holds the keys.  No nginx: the module, the
 * loyalty-cookie tool, the unit tests and the fuzzers share this code.
 */

#ifndef _LOYALTY_SIGN_H_INCLUDED_
#define _LOYALTY_SIGN_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define LOYALTY_KEY_MIN_LEN     32     /* bytes: 64 hex digits */
#define LOYALTY_KEY_MAX_LEN     128    /* bytes: 256 hex digits */
#define LOYALTY_KEYS_MAX        16     /* keys in one file */
#define LOYALTY_SIG_LEN         43     /* base64url of 32 bytes, no pad */
#define LOYALTY_EXPIRES_MAX_LEN 19     /* digits: always fits in int64 */

/* longest signed cookie value: id "." expires "." sig */
#define LOYALTY_SIGNED_MAX_LEN                                               \
    (64 + 1 + LOYALTY_EXPIRES_MAX_LEN + 1 + LOYALTY_SIG_LEN)


typedef struct {
    size_t          len;
    unsigned char   data[LOYALTY_KEY_MAX_LEN];
} loyalty_key_t;


/* why a signed cookie was rejected; the names are $loyalty_cookie_error */
typedef enum {
    LOYALTY_COOKIE_OK = 0,
    LOYALTY_COOKIE_MALFORMED,
    LOYALTY_COOKIE_BAD_SIGNATURE,
    LOYALTY_COOKIE_EXPIRED
} loyalty_cookie_rc_e;


/*
 * Verifies a signed cookie value against every key (the first is the
 * current one, the others still verify: rotation), in constant time per
 * key, then its expiry: valid while now <= expires.  The format is
 * checked first, the signature second, the expiry last, so a forged
 * value never reports "expired".  On LOYALTY_COOKIE_OK sets id/id_len
 * (pointing into value) and expires.
 */
loyalty_cookie_rc_e loyalty_cookie_verify(const unsigned char *value,
    size_t len, const loyalty_key_t *keys, size_t nkeys, int64_t now,
    const unsigned char **id, size_t *id_len, int64_t *expires);

/*
 * Writes "<id>.<expires>.<sig>" (not NUL-terminated) into out, which has
 * room for LOYALTY_SIGNED_MAX_LEN bytes.  Returns its length, or 0 when
 * the id is not valid (1 to 64 of [A-Za-z0-9_-]) or expires is negative.
 */
size_t loyalty_cookie_sign(const unsigned char *id, size_t id_len,
    int64_t expires, const loyalty_key_t *key, unsigned char *out);

/*
 * Parses a key file: one key per line in hex digits (at least 64, at most
 * 256, an even number), blank lines and lines starting with "#" ignored,
 * white space around a key ignored.  Returns the number of keys (at least
 * 1), or -1 with a message in err (never containing key material).
 */
int loyalty_keys_parse(const char *text, size_t len, loyalty_key_t *keys,
    size_t max, char *err, size_t err_len);

/* "malformed", "bad_signature", "expired"; "" for LOYALTY_COOKIE_OK */
const char *loyalty_cookie_error_name(loyalty_cookie_rc_e rc);

/* base64url without padding; returns the encoded length */
size_t loyalty_base64url_encode(const unsigned char *src, size_t len,
    unsigned char *dst);


#endif /* _LOYALTY_SIGN_H_INCLUDED_ */
