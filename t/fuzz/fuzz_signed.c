/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Fuzz target: loyalty_cookie_verify and loyalty_cookie_sign.
 *
 * The whole input is a signed cookie value, verified with two fixed keys
 * at a fixed time (FUZZ_NOW).  A value that verifies must sign back to
 * itself with one of the keys.
 *
 * Then a round trip: when the input starts with id characters, that
 * prefix (at most 64) is signed with an expiry and a key derived from a
 * hash of the input; verifying the result must give the id and expiry
 * back (or "expired"), a changed signature character must not verify,
 * and a negative expiry must not sign.
 *
 * The seeds in t/fuzz/corpus/signed/ that verify were signed with these
 * keys (one per line of a key file) and expire after FUZZ_NOW.
 */


#include "fuzz.h"
#include "loyalty_cookie.h"
#include "loyalty_sign.h"


#define FUZZ_NOW  1800000000        /* 2027-01-15 08:00:00 UTC */

#define FUZZ_KEYS                                                            \
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"  \
    "a5a4a7a6a1a0a3a2adacafaea9a8abaab5b4b7b6b1b0b3b2bdbcbfbeb9b8bbba"    \
    "8584878681808382\n"


static void fuzz_init(void);
static void fuzz_verify_input(const unsigned char *value, size_t len);
static void fuzz_round_trip(const unsigned char *id, size_t id_len,
    uint64_t h);
static uint64_t fuzz_hash(const uint8_t *data, size_t size);
static int fuzz_is_id_char(unsigned char ch);


static const char     fuzz_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static loyalty_key_t  fuzz_keys[2];


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t          n;
    unsigned char  *value;

    fuzz_init();

    /* a copy of the exact size: ASan sees a read past either end */

    value = malloc(size ? size : 1);
    FUZZ_CHECK(value != NULL);
    memcpy(value, data, size);

    fuzz_verify_input(value, size);

    for (n = 0; n < size && n < LOYALTY_ID_MAX_LEN; n++) {
        if (!fuzz_is_id_char(value[n])) {
            break;
        }
    }

    if (loyalty_id_valid(value, n)) {
        fuzz_round_trip(value, n, fuzz_hash(data, size));
    }

    free(value);

    return 0;
}


static void
fuzz_init(void)
{
    int          n;
    char         err[128];
    static int   done;    /* keys parsed */

    if (done) {
        return;
    }

    n = loyalty_keys_parse(FUZZ_KEYS, sizeof(FUZZ_KEYS) - 1, fuzz_keys, 2,
                           err, sizeof(err));
    FUZZ_CHECK(n == 2);
    FUZZ_CHECK(fuzz_keys[0].len == 32 && fuzz_keys[1].len == 40);

    done = 1;
}


static void
fuzz_verify_input(const unsigned char *value, size_t len)
{
    size_t                i, id_len, out_len, digits, l;
    int64_t               expires, e;
    const char           *name;
    unsigned char        *out;
    loyalty_cookie_rc_e   rc;
    const unsigned char  *id, *p;

    id = NULL;
    id_len = (size_t) -1;
    expires = -1;

    rc = loyalty_cookie_verify(value, len, fuzz_keys, 2, FUZZ_NOW, &id,
                               &id_len, &expires);

    FUZZ_CHECK(rc == LOYALTY_COOKIE_OK || rc == LOYALTY_COOKIE_MALFORMED
               || rc == LOYALTY_COOKIE_BAD_SIGNATURE
               || rc == LOYALTY_COOKIE_EXPIRED);

    name = loyalty_cookie_error_name(rc);
    FUZZ_CHECK(name != NULL);
    FUZZ_CHECK((rc == LOYALTY_COOKIE_OK) == (name[0] == '\0'));

    /* without keys nothing verifies */

    FUZZ_CHECK(loyalty_cookie_verify(value, len, fuzz_keys, 0, FUZZ_NOW, &p,
                                     &l, &e)
               != LOYALTY_COOKIE_OK);

    if (rc != LOYALTY_COOKIE_OK) {
        return;
    }

    FUZZ_CHECK(id == value);
    FUZZ_CHECK(loyalty_id_valid(id, id_len));
    FUZZ_CHECK(id_len < len && value[id_len] == '.');
    FUZZ_CHECK(expires >= FUZZ_NOW);
    FUZZ_CHECK(len <= LOYALTY_SIGNED_MAX_LEN);

    digits = len - id_len - 2 - LOYALTY_SIG_LEN;

    /* leading zeros verify but never come out of the signer */

    if (value[id_len + 1] == '0' && digits > 1) {
        return;
    }

    out = malloc(LOYALTY_SIGNED_MAX_LEN);
    FUZZ_CHECK(out != NULL);

    for (i = 0; i < 2; i++) {
        out_len = loyalty_cookie_sign(id, id_len, expires, &fuzz_keys[i],
                                      out);

        if (out_len == len && memcmp(out, value, len) == 0) {
            break;
        }
    }

    FUZZ_CHECK(i < 2);

    free(out);
}


static void
fuzz_round_trip(const unsigned char *id, size_t id_len, uint64_t h)
{
    size_t                len, k, pos, l;
    int64_t               exp, e;
    const char           *c;
    unsigned char        *out, *bad;
    loyalty_cookie_rc_e   want;
    const unsigned char  *p;

    /* half near FUZZ_NOW, on both sides of it; half anywhere in int64 */

    if (h & 1) {
        exp = FUZZ_NOW - 1000 + (int64_t) ((h >> 8) % 2001);

    } else {
        exp = (int64_t) (h >> 1);
    }

    want = exp >= FUZZ_NOW ? LOYALTY_COOKIE_OK : LOYALTY_COOKIE_EXPIRED;
    k = (h >> 1) & 1;

    out = malloc(LOYALTY_SIGNED_MAX_LEN);
    bad = malloc(LOYALTY_SIGNED_MAX_LEN);
    FUZZ_CHECK(out != NULL && bad != NULL);

    len = loyalty_cookie_sign(id, id_len, exp, &fuzz_keys[k], out);

    FUZZ_CHECK(len > id_len + 2 + LOYALTY_SIG_LEN);
    FUZZ_CHECK(len <= LOYALTY_SIGNED_MAX_LEN);
    FUZZ_CHECK(memcmp(out, id, id_len) == 0 && out[id_len] == '.');
    FUZZ_CHECK(out[len - LOYALTY_SIG_LEN - 1] == '.');

    p = NULL;
    l = 0;
    e = -1;

    FUZZ_CHECK(loyalty_cookie_verify(out, len, fuzz_keys, 2, FUZZ_NOW, &p,
                                     &l, &e)
               == want);

    if (want == LOYALTY_COOKIE_OK) {
        FUZZ_CHECK(p == out && l == id_len && e == exp);
    }

    /* the signing key alone verifies it, the other one alone does not */

    FUZZ_CHECK(loyalty_cookie_verify(out, len, &fuzz_keys[k], 1, FUZZ_NOW,
                                     &p, &l, &e)
               == want);
    FUZZ_CHECK(loyalty_cookie_verify(out, len, &fuzz_keys[1 - k], 1,
                                     FUZZ_NOW, &p, &l, &e)
               == LOYALTY_COOKIE_BAD_SIGNATURE);

    /* one signature character changed to another base64url character */

    memcpy(bad, out, len);
    pos = len - LOYALTY_SIG_LEN + (size_t) ((h >> 16) % LOYALTY_SIG_LEN);
    c = strchr(fuzz_b64, bad[pos]);
    FUZZ_CHECK(c != NULL);
    bad[pos] = fuzz_b64[(c - fuzz_b64 + 1 + (h >> 24) % 63) % 64];

    FUZZ_CHECK(loyalty_cookie_verify(bad, len, fuzz_keys, 2, FUZZ_NOW, &p,
                                     &l, &e)
               == LOYALTY_COOKIE_BAD_SIGNATURE);

    /* negative expiry */

    FUZZ_CHECK(loyalty_cookie_sign(id, id_len, -1 - (int64_t) (h >> 2),
                                   &fuzz_keys[k], out)
               == 0);

    free(bad);
    free(out);
}


/* FNV-1a, 64 bits */

static uint64_t
fuzz_hash(const uint8_t *data, size_t size)
{
    size_t    i;
    uint64_t  h;

    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < size; i++) {
        h ^= data[i];
        h *= 0x100000001b3ULL;
    }

    return h;
}


static int
fuzz_is_id_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
           || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
}
