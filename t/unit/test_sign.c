/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Unit tests of lib/loyalty_sign.c; the expected signatures were computed
 * with Python's hmac and base64 modules, not with this code.
 */


#include "tap.h"
#include "loyalty_sign.h"


#define KEY0_HEX                                                             \
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define KEY1_HEX                                                             \
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"

#define NOW  1800000000


static loyalty_cookie_rc_e
verify(const char *value, loyalty_key_t *keys, int nkeys, size_t *id_len)
{
    int64_t               exp;
    const unsigned char  *id;

    *id_len = 0;

    return loyalty_cookie_verify((const unsigned char *) value,
                                 strlen(value), keys, nkeys, NOW, &id,
                                 id_len, &exp);
}


int
main(void)
{
    int            n;
    char           err[128], text[1024], buf[LOYALTY_SIGNED_MAX_LEN + 1];
    size_t         len, idl;
    loyalty_key_t  keys[LOYALTY_KEYS_MAX], k1[1];

    /* key files */

    n = loyalty_keys_parse(T("# current\n" KEY0_HEX "\n\n  " KEY1_HEX
                             "  \r\n# old\n"), keys, LOYALTY_KEYS_MAX,
                           err, sizeof(err));
    ok(n == 2, "two keys, comments and blank lines ignored");
    ok(keys[0].len == 32 && keys[0].data[0] == 0 && keys[0].data[31] == 0x1f,
       "first key decoded");

    n = loyalty_keys_parse(T("abcd\n"), k1, 1, err, sizeof(err));
    ok(n == -1 && strstr(err, "line 1: key is shorter than 32 bytes"),
       "short key rejected: %s", err);
    n = loyalty_keys_parse(T(KEY0_HEX "zz\n"), k1, 1, err, sizeof(err));
    ok(n == -1 && strstr(err, "hex digits only"), "non-hex rejected");
    n = loyalty_keys_parse(T(KEY0_HEX "a\n"), k1, 1, err, sizeof(err));
    ok(n == -1 && strstr(err, "odd number"), "odd length rejected");
    n = loyalty_keys_parse(T("# nothing\n\n"), k1, 1, err, sizeof(err));
    ok(n == -1 && strstr(err, "no key found"), "empty file rejected");
    n = loyalty_keys_parse(T(KEY0_HEX "\n" KEY1_HEX "\n"), k1, 1, err,
                           sizeof(err));
    ok(n == -1 && strstr(err, "more than 1 keys"), "too many keys");
    ok(strstr(err, "0001020304") == NULL, "no key material in messages");

    memset(text, 'a', 258);
    text[258] = '\0';
    n = loyalty_keys_parse(text, 258, k1, 1, err, sizeof(err));
    ok(n == -1 && strstr(err, "longer than 128"), "too long key rejected");

    /* signing: vectors from Python */

    len = loyalty_cookie_sign((const unsigned char *) "42", 2, 4102444800LL,
                              &keys[0], (unsigned char *) buf);
    buf[len] = '\0';
    ok(strcmp(buf, "42.4102444800.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmYE")
       == 0, "sign 42 with key 0: %s", buf);

    len = loyalty_cookie_sign((const unsigned char *) "cust_A-9", 8,
                              1700000000LL, &keys[1], (unsigned char *) buf);
    buf[len] = '\0';
    ok(strcmp(buf, "cust_A-9.1700000000."
                   "tRhGD1u4ZNsFoMoZrcJTm9BI_bemayBKol3C-xBKWBg") == 0,
       "sign cust_A-9 with key 1: %s", buf);

    ok(loyalty_cookie_sign((const unsigned char *) "a.b", 3, 1, &keys[0],
                           (unsigned char *) buf) == 0, "invalid id not signed");

    /* verifying */

    ok(verify("42.4102444800.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmYE",
              keys, 2, &idl) == LOYALTY_COOKIE_OK && idl == 2,
       "valid cookie, current key");
    ok(verify("42.4102444800.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmYE",
              &keys[1], 1, &idl) == LOYALTY_COOKIE_BAD_SIGNATURE,
       "key no longer in the file: bad signature");

    len = loyalty_cookie_sign((const unsigned char *) "42", 2, 4102444800LL,
                              &keys[1], (unsigned char *) buf);
    buf[len] = '\0';
    ok(verify(buf, keys, 2, &idl) == LOYALTY_COOKIE_OK,
       "signed with the second (old) key still verifies");

    ok(verify("cust_A-9.1700000000.tRhGD1u4ZNsFoMoZrcJTm9BI_bemayBKol3C-xBKWBg",
              keys, 2, &idl) == LOYALTY_COOKIE_EXPIRED, "expired");
    ok(verify("cust_A-9.1700000000.tRhGD1u4ZNsFoMoZrcJTm9BI_bemayBKol3C-xBKWBh",
              keys, 2, &idl) == LOYALTY_COOKIE_BAD_SIGNATURE,
       "expired and tampered: bad signature, not expired");
    ok(verify("43.4102444800.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmYE",
              keys, 2, &idl) == LOYALTY_COOKIE_BAD_SIGNATURE,
       "signature of another id");
    ok(verify("42.4102444801.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmYE",
              keys, 2, &idl) == LOYALTY_COOKIE_BAD_SIGNATURE,
       "expiry changed");

    ok(verify("42", keys, 2, &idl) == LOYALTY_COOKIE_MALFORMED, "unsigned");
    ok(verify("", keys, 2, &idl) == LOYALTY_COOKIE_MALFORMED, "empty");
    ok(verify("42.4102444800", keys, 2, &idl) == LOYALTY_COOKIE_MALFORMED,
       "no signature");
    ok(verify("42.4102444800.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmY",
              keys, 2, &idl) == LOYALTY_COOKIE_MALFORMED, "short signature");
    ok(verify("42.4102444800.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmYE=",
              keys, 2, &idl) == LOYALTY_COOKIE_MALFORMED, "padding");
    ok(verify("42.4102444800.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmY+",
              keys, 2, &idl) == LOYALTY_COOKIE_MALFORMED, "base64 (not url)");
    ok(verify(".4102444800.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmYE",
              keys, 2, &idl) == LOYALTY_COOKIE_MALFORMED, "empty id");
    ok(verify("42..JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmYE",
              keys, 2, &idl) == LOYALTY_COOKIE_MALFORMED, "empty expiry");
    ok(verify("42.-1.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmYE",
              keys, 2, &idl) == LOYALTY_COOKIE_MALFORMED, "negative expiry");
    ok(verify("42.99999999999999999999.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmYE",
              keys, 2, &idl) == LOYALTY_COOKIE_MALFORMED, "expiry overflow");
    ok(verify("4 2.4102444800.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmYE",
              keys, 2, &idl) == LOYALTY_COOKIE_MALFORMED, "bad id character");

    ok(strcmp(loyalty_cookie_error_name(LOYALTY_COOKIE_BAD_SIGNATURE),
              "bad_signature") == 0, "error names");

    return done_testing();
}
