/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Fuzz target: loyalty_keys_parse.
 *
 * Input: byte 0 sets max (0 to LOYALTY_KEYS_MAX + 1 keys), byte 1 the
 * size of the error buffer (1 to 96 bytes, so messages get truncated),
 * the rest is the key file.  The key array and the error buffer have
 * exactly that size, so ASan sees any write past them.
 *
 * On success: 1 to max keys, each 32 to 128 bytes, each found in the
 * file as hex digits.  On failure: a NUL-terminated message without key
 * material (no long run of hex digits).
 */


#include "fuzz.h"
#include "loyalty_sign.h"


#define FUZZ_ERR_MAX      96
#define FUZZ_HEX_RUN_MAX  10        /* an int line number, at most */


static int fuzz_is_hex(unsigned char ch);
static int fuzz_find_hex(const unsigned char *text, size_t len,
    const loyalty_key_t *key);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             n;
    char           *text, *err;
    size_t          max, err_len, len, i, run;
    unsigned char  *lower;
    loyalty_key_t  *keys;

    if (size < 2) {
        return 0;
    }

    max = data[0] % (LOYALTY_KEYS_MAX + 2);
    err_len = 1 + data[1] % FUZZ_ERR_MAX;
    len = size - 2;

    text = malloc(len ? len : 1);
    err = malloc(err_len);
    keys = malloc(max ? max * sizeof(loyalty_key_t) : 1);
    FUZZ_CHECK(text != NULL && err != NULL && keys != NULL);

    memcpy(text, data + 2, len);
    memset(err, 0xa5, err_len);

    n = loyalty_keys_parse(text, len, keys, max, err, err_len);

    FUZZ_CHECK(n == -1 || (n >= 1 && (size_t) n <= max));

    if (n == -1) {
        FUZZ_CHECK(memchr(err, '\0', err_len) != NULL);
        FUZZ_CHECK(err_len == 1 || err[0] != '\0');

        run = 0;

        for (i = 0; err[i] != '\0'; i++) {
            run = fuzz_is_hex((unsigned char) err[i]) ? run + 1 : 0;
            FUZZ_CHECK(run <= FUZZ_HEX_RUN_MAX);
        }

    } else {
        lower = malloc(len ? len : 1);
        FUZZ_CHECK(lower != NULL);

        for (i = 0; i < len; i++) {
            lower[i] = (unsigned char) text[i];

            if (lower[i] >= 'A' && lower[i] <= 'F') {
                lower[i] |= 0x20;
            }
        }

        for (i = 0; i < (size_t) n; i++) {
            FUZZ_CHECK(keys[i].len >= LOYALTY_KEY_MIN_LEN
                       && keys[i].len <= LOYALTY_KEY_MAX_LEN);
            FUZZ_CHECK(fuzz_find_hex(lower, len, &keys[i]));
        }

        free(lower);
    }

    free(keys);
    free(err);
    free(text);

    return 0;
}


static int
fuzz_is_hex(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')
           || (ch >= 'A' && ch <= 'F');
}


/* 1 when the key, in lowercase hex digits, occurs in text */

static int
fuzz_find_hex(const unsigned char *text, size_t len, const loyalty_key_t *key)
{
    int                 found;
    size_t              i, n;
    unsigned char       hex[2 * LOYALTY_KEY_MAX_LEN];
    static const char   digits[] = "0123456789abcdef";

    n = 2 * key->len;

    for (i = 0; i < key->len; i++) {
        hex[2 * i] = digits[key->data[i] >> 4];
        hex[2 * i + 1] = digits[key->data[i] & 0x0f];
    }

    found = 0;

    for (i = 0; !found && i + n <= len; i++) {
        found = memcmp(text + i, hex, n) == 0;
    }

    return found;
}
