/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * loyalty-cookie: mints and checks the signed customer cookies that
 * nginx verifies with "loyalty_secret", and makes new keys.  It uses the
 * same codec as the module (lib/loyalty_sign.c), so a value it signs is
 * one nginx accepts.  See docs/cookie-signing.md.
 */


#include "loyalty_sign.h"
#include "loyalty_cookie.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>


#define LOYALTY_TOOL_OK          0
#define LOYALTY_TOOL_REJECTED    1     /* verify: the value is not valid */
#define LOYALTY_TOOL_ERROR       2     /* usage, key file, system */

#define LOYALTY_TOOL_FILE_MAX    65536 /* bytes: a key file is far smaller */
#define LOYALTY_TOOL_KEYGEN_LEN  32    /* bytes: 64 hex digits */


typedef struct {
    const char  *key_file;
    const char  *id;
    const char  *expires;
    const char  *ttl;
    const char  *now;
    const char  *value;
} loyalty_tool_args_t;


static int loyalty_tool_sign(loyalty_tool_args_t *args);
static int loyalty_tool_verify(loyalty_tool_args_t *args);
static int loyalty_tool_keygen(void);
static int loyalty_tool_parse_args(const char *cmd, int argc, char **argv,
    loyalty_tool_args_t *args);
static int loyalty_tool_option(const char *cmd, const char *arg,
    const char *value, loyalty_tool_args_t *args);
static int loyalty_tool_read_keys(const char *path, loyalty_key_t *keys,
    size_t max);
static int loyalty_tool_parse_time(const char *name, const char *text,
    int64_t *t);
static int loyalty_tool_finish(int rc);
static void loyalty_tool_usage(FILE *f);


static const char  *loyalty_tool_name = "loyalty-cookie";
static const char   loyalty_tool_hex[] = "0123456789abcdef";


int
main(int argc, char **argv)
{
    const char           *cmd;
    loyalty_tool_args_t   args;

    if (argc < 2) {
        loyalty_tool_usage(stderr);
        return LOYALTY_TOOL_ERROR;
    }

    cmd = argv[1];

    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0
        || strcmp(cmd, "help") == 0)
    {
        loyalty_tool_usage(stdout);
        return loyalty_tool_finish(LOYALTY_TOOL_OK);
    }

    memset(&args, 0, sizeof(args));

    if (strcmp(cmd, "sign") != 0 && strcmp(cmd, "verify") != 0
        && strcmp(cmd, "keygen") != 0)
    {
        fprintf(stderr, "%s: unknown command \"%s\" (try --help)\n",
                loyalty_tool_name, cmd);
        return LOYALTY_TOOL_ERROR;
    }

    switch (loyalty_tool_parse_args(cmd, argc - 2, argv + 2, &args)) {

    case -1:
        return LOYALTY_TOOL_ERROR;

    case 1:
        loyalty_tool_usage(stdout);
        return loyalty_tool_finish(LOYALTY_TOOL_OK);

    default:
        break;
    }

    if (strcmp(cmd, "sign") == 0) {
        return loyalty_tool_finish(loyalty_tool_sign(&args));
    }

    if (strcmp(cmd, "verify") == 0) {
        return loyalty_tool_finish(loyalty_tool_verify(&args));
    }

    return loyalty_tool_finish(loyalty_tool_keygen());
}


static int
loyalty_tool_sign(loyalty_tool_args_t *args)
{
    int            rc;
    size_t         len, id_len;
    int64_t        expires, ttl, now;
    loyalty_key_t  keys[LOYALTY_KEYS_MAX];
    unsigned char  out[LOYALTY_SIGNED_MAX_LEN];

    if (args->key_file == NULL || args->id == NULL
        || (args->expires == NULL) == (args->ttl == NULL))
    {
        fprintf(stderr, "%s: sign needs --key-file, --id, and either "
                "--expires or --ttl\n", loyalty_tool_name);
        return LOYALTY_TOOL_ERROR;
    }

    id_len = strlen(args->id);

    if (!loyalty_id_valid((const unsigned char *) args->id, id_len)) {
        fprintf(stderr, "%s: invalid id: it must be 1 to %d characters "
                "from A-Z, a-z, 0-9, \"_\" and \"-\"\n", loyalty_tool_name,
                LOYALTY_ID_MAX_LEN);
        return LOYALTY_TOOL_ERROR;
    }

    if (args->expires != NULL) {
        if (loyalty_tool_parse_time("--expires", args->expires, &expires)
            != 0)
        {
            return LOYALTY_TOOL_ERROR;
        }

    } else {
        if (loyalty_tool_parse_time("--ttl", args->ttl, &ttl) != 0) {
            return LOYALTY_TOOL_ERROR;
        }

        now = (int64_t) time(NULL);

        if (ttl > INT64_MAX - now) {
            fprintf(stderr, "%s: --ttl is too large\n", loyalty_tool_name);
            return LOYALTY_TOOL_ERROR;
        }

        expires = now + ttl;
    }

    if (loyalty_tool_read_keys(args->key_file, keys, LOYALTY_KEYS_MAX) < 0) {
        return LOYALTY_TOOL_ERROR;
    }

    /* the first key of the file is the current one: sign with it */

    len = loyalty_cookie_sign((const unsigned char *) args->id, id_len,
                              expires, &keys[0], out);

    OPENSSL_cleanse(keys, sizeof(keys));

    if (len == 0) {
        fprintf(stderr, "%s: signing failed\n", loyalty_tool_name);
        return LOYALTY_TOOL_ERROR;
    }

    rc = printf("%.*s\n", (int) len, (char *) out);

    return rc < 0 ? LOYALTY_TOOL_ERROR : LOYALTY_TOOL_OK;
}


static int
loyalty_tool_verify(loyalty_tool_args_t *args)
{
    int                   nkeys;
    size_t                id_len;
    int64_t               now, expires;
    loyalty_key_t         keys[LOYALTY_KEYS_MAX];
    const unsigned char  *id;
    loyalty_cookie_rc_e   rc;

    if (args->key_file == NULL || args->value == NULL) {
        fprintf(stderr, "%s: verify needs --key-file and a cookie value\n",
                loyalty_tool_name);
        return LOYALTY_TOOL_ERROR;
    }

    if (args->now != NULL) {
        if (loyalty_tool_parse_time("--now", args->now, &now) != 0) {
            return LOYALTY_TOOL_ERROR;
        }

    } else {
        now = (int64_t) time(NULL);
    }

    nkeys = loyalty_tool_read_keys(args->key_file, keys, LOYALTY_KEYS_MAX);
    if (nkeys < 0) {
        return LOYALTY_TOOL_ERROR;
    }

    rc = loyalty_cookie_verify((const unsigned char *) args->value,
                               strlen(args->value), keys, (size_t) nkeys,
                               now, &id, &id_len, &expires);

    OPENSSL_cleanse(keys, sizeof(keys));

    if (rc != LOYALTY_COOKIE_OK) {
        printf("%s\n", loyalty_cookie_error_name(rc));
        return LOYALTY_TOOL_REJECTED;
    }

    printf("ok %.*s %lld\n", (int) id_len, (const char *) id,
           (long long) expires);

    return LOYALTY_TOOL_OK;
}


static int
loyalty_tool_keygen(void)
{
    char           hex[2 * LOYALTY_TOOL_KEYGEN_LEN + 2];
    size_t         i;
    unsigned char  key[LOYALTY_TOOL_KEYGEN_LEN];

    if (RAND_bytes(key, sizeof(key)) != 1) {
        fprintf(stderr, "%s: RAND_bytes() failed\n", loyalty_tool_name);
        return LOYALTY_TOOL_ERROR;
    }

    for (i = 0; i < sizeof(key); i++) {
        hex[2 * i] = loyalty_tool_hex[key[i] >> 4];
        hex[2 * i + 1] = loyalty_tool_hex[key[i] & 0x0f];
    }

    hex[2 * i] = '\n';
    hex[2 * i + 1] = '\0';

    fputs(hex, stdout);

    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(hex, sizeof(hex));

    return LOYALTY_TOOL_OK;
}


/*
 * Takes "--name value" and "--name=value".  Returns 0, 1 for --help, or
 * -1 after a message.  Only verify takes an operand, the cookie value;
 * since an id, and so a value, may begin with "-", "--" ends the options.
 */

static int
loyalty_tool_parse_args(const char *cmd, int argc, char **argv,
    loyalty_tool_args_t *args)
{
    int          i, options;
    char         name[32];
    const char  *arg, *eq, *value;

    options = 1;

    for (i = 0; i < argc; i++) {
        arg = argv[i];

        if (options && strcmp(arg, "--") == 0) {
            options = 0;
            continue;
        }

        if (options
            && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0))
        {
            return 1;
        }

        if (!options || strncmp(arg, "--", 2) != 0) {

            if (strcmp(cmd, "verify") != 0 || args->value != NULL) {
                fprintf(stderr, "%s: unexpected argument \"%s\"\n",
                        loyalty_tool_name, arg);
                return -1;
            }

            args->value = arg;
            continue;
        }

        eq = strchr(arg, '=');

        if (eq != NULL) {
            if ((size_t) (eq - arg) >= sizeof(name)) {
                fprintf(stderr, "%s: unknown option \"%.*s\"\n",
                        loyalty_tool_name, (int) (eq - arg), arg);
                return -1;
            }

            memcpy(name, arg, eq - arg);
            name[eq - arg] = '\0';
            arg = name;
            value = eq + 1;

        } else {
            if (i + 1 == argc) {
                fprintf(stderr, "%s: option \"%s\" needs a value\n",
                        loyalty_tool_name, arg);
                return -1;
            }

            value = argv[++i];
        }

        if (loyalty_tool_option(cmd, arg, value, args) != 0) {
            return -1;
        }
    }

    return 0;
}


static int
loyalty_tool_option(const char *cmd, const char *arg, const char *value,
    loyalty_tool_args_t *args)
{
    int           is_sign, is_verify;
    const char  **slot;

    is_sign = (strcmp(cmd, "sign") == 0);
    is_verify = (strcmp(cmd, "verify") == 0);

    if ((is_sign || is_verify) && strcmp(arg, "--key-file") == 0) {
        slot = &args->key_file;

    } else if (is_sign && strcmp(arg, "--id") == 0) {
        slot = &args->id;

    } else if (is_sign && strcmp(arg, "--expires") == 0) {
        slot = &args->expires;

    } else if (is_sign && strcmp(arg, "--ttl") == 0) {
        slot = &args->ttl;

    } else if (is_verify && strcmp(arg, "--now") == 0) {
        slot = &args->now;

    } else {
        fprintf(stderr, "%s: %s does not take option \"%s\"\n",
                loyalty_tool_name, cmd, arg);
        return -1;
    }

    if (*slot != NULL) {
        fprintf(stderr, "%s: option \"%s\" is given twice\n",
                loyalty_tool_name, arg);
        return -1;
    }

    *slot = value;

    return 0;
}


/*
 * Reads and parses a key file, refusing one that other users can read,
 * as nginx does.  The mode is checked on the open descriptor, so it is
 * the mode of the file actually read.  Returns the number of keys, or -1
 * after a message that never contains key material.
 */

static int
loyalty_tool_read_keys(const char *path, loyalty_key_t *keys, size_t max)
{
    int          fd, nkeys;
    char         err[128], text[LOYALTY_TOOL_FILE_MAX];
    size_t       len;
    ssize_t      n;
    struct stat  st;

    fd = open(path, O_RDONLY);
    if (fd == -1) {
        fprintf(stderr, "%s: cannot open key file \"%s\": %s\n",
                loyalty_tool_name, path, strerror(errno));
        return -1;
    }

    if (fstat(fd, &st) == -1) {
        fprintf(stderr, "%s: cannot stat key file \"%s\": %s\n",
                loyalty_tool_name, path, strerror(errno));
        goto failed;
    }

    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "%s: key file \"%s\" is not a regular file\n",
                loyalty_tool_name, path);
        goto failed;
    }

    if (st.st_mode & S_IROTH) {
        fprintf(stderr, "%s: key file \"%s\" is readable by other users "
                "(mode %04o); make it 0600 or 0640, e.g. "
                "\"chmod o-rwx %s\"\n", loyalty_tool_name, path,
                (unsigned int) (st.st_mode & 07777), path);
        goto failed;
    }

    len = 0;

    for ( ;; ) {
        n = read(fd, text + len, sizeof(text) - len);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            fprintf(stderr, "%s: cannot read key file \"%s\": %s\n",
                    loyalty_tool_name, path, strerror(errno));
            goto failed;
        }

        if (n == 0) {
            break;
        }

        len += n;

        if (len == sizeof(text)) {
            fprintf(stderr, "%s: key file \"%s\" is larger than %d bytes\n",
                    loyalty_tool_name, path, LOYALTY_TOOL_FILE_MAX - 1);
            goto failed;
        }
    }

    close(fd);

    nkeys = loyalty_keys_parse(text, len, keys, max, err, sizeof(err));

    OPENSSL_cleanse(text, len);

    if (nkeys < 0) {
        fprintf(stderr, "%s: invalid key file \"%s\": %s\n",
                loyalty_tool_name, path, err);
        return -1;
    }

    return nkeys;

failed:

    OPENSSL_cleanse(text, sizeof(text));
    close(fd);

    return -1;
}


/* a time or a number of seconds: decimal digits only, at most INT64_MAX */

static int
loyalty_tool_parse_time(const char *name, const char *text, int64_t *t)
{
    int64_t      v;
    const char  *p;

    v = 0;

    for (p = text; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - (*p - '0')) / 10) {
            break;
        }

        v = v * 10 + (*p - '0');
    }

    if (p == text || *p != '\0') {
        fprintf(stderr, "%s: %s takes a number of seconds, "
                "not \"%s\"\n", loyalty_tool_name, name, text);
        return -1;
    }

    *t = v;

    return 0;
}


/* a full disk or a closed pipe must not pass for success */

static int
loyalty_tool_finish(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: cannot write to standard output: %s\n",
                loyalty_tool_name, strerror(errno));
        return LOYALTY_TOOL_ERROR;
    }

    return rc;
}


static void
loyalty_tool_usage(FILE *f)
{
    fputs("Usage:\n"
          "  loyalty-cookie sign --key-file FILE --id ID"
          " (--expires UNIXTIME | --ttl SECONDS)\n"
          "  loyalty-cookie verify --key-file FILE [--now UNIXTIME]"
          " [--] VALUE\n"
          "  loyalty-cookie keygen\n"
          "  loyalty-cookie --help\n"
          "\n"
          "sign    prints the cookie value \"<id>.<expires>.<sig>\", signed\n"
          "        with the first key of FILE (the current key)\n"
          "verify  checks VALUE against every key of FILE and prints\n"
          "        \"ok <id> <expires>\" (exit 0) or the reason: malformed,\n"
          "        bad_signature or expired (exit 1)\n"
          "keygen  prints a new random 32-byte key in hex, for a key file\n"
          "\n"
          "FILE holds one key per line in hex (64 to 256 digits); blank\n"
          "lines and lines starting with \"#\" are ignored; the first key\n"
          "is the current one.  FILE must not be readable by other users.\n"
          "ID is 1 to 64 characters from A-Z, a-z, 0-9, \"_\" and \"-\".\n"
          "Errors exit 2.  See docs/cookie-signing.md.\n", f);
}
