/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The customer id from the request's cookies, verified against the
 * loyalty_secret keys when there are any; parsing, signing and the key
 * file format are in lib/ (loyalty_cookie.c, loyalty_sign.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_cookie.h"
#include "loyalty_cookie.h"
#include "loyalty_sign.h"


#define NGX_HTTP_LOYALTY_SECRET_MAX_SIZE  65536


static ngx_str_t  ngx_http_loyalty_cookie_malformed = ngx_string("malformed");
static ngx_str_t  ngx_http_loyalty_cookie_bad_signature =
    ngx_string("bad_signature");
static ngx_str_t  ngx_http_loyalty_cookie_expired = ngx_string("expired");


/*
 * Returns NGX_HTTP_LOYALTY_NONE with ctx->id set when the cookie holds a
 * valid (and, with a secret, correctly signed and unexpired) id,
 * NGX_HTTP_LOYALTY_ANONYMOUS without the cookie, and
 * NGX_HTTP_LOYALTY_INVALID with ctx->cookie_error set otherwise.  The
 * first cookie of that name wins, across all Cookie headers in order.
 */

ngx_http_loyalty_status_e
ngx_http_loyalty_cookie_id(ngx_http_request_t *r,
    ngx_http_loyalty_loc_conf_t *llcf, ngx_http_loyalty_ctx_t *ctx)
{
    size_t                      len, id_len;
    int64_t                     expires;
    ngx_uint_t                  i;
    const u_char               *value, *id;
    ngx_table_elt_t           **cookies;
    loyalty_cookie_rc_e         rc;
    ngx_http_loyalty_secret_t  *secret;

    cookies = r->headers_in.cookies.elts;

    for (i = 0; i < r->headers_in.cookies.nelts; i++) {

        if (loyalty_cookie_find(cookies[i]->value.data, cookies[i]->value.len,
                                llcf->cookie.data, llcf->cookie.len,
                                &value, &len))
        {
            goto found;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "loyalty cookie \"%V\" not found", &llcf->cookie);

    return NGX_HTTP_LOYALTY_ANONYMOUS;

found:

    secret = llcf->secret;

    if (secret == NULL) {
        rc = loyalty_id_valid(value, len) ? LOYALTY_COOKIE_OK
                                          : LOYALTY_COOKIE_MALFORMED;
        id = value;
        id_len = len;

    } else {
        rc = loyalty_cookie_verify(value, len, secret->keys, secret->nkeys,
                                   (int64_t) ngx_time(), &id, &id_len,
                                   &expires);
    }

    switch (rc) {

    case LOYALTY_COOKIE_OK:
        ctx->id.data = (u_char *) id;
        ctx->id.len = id_len;
        return NGX_HTTP_LOYALTY_NONE;

    case LOYALTY_COOKIE_BAD_SIGNATURE:
        ctx->cookie_error = ngx_http_loyalty_cookie_bad_signature;
        break;

    case LOYALTY_COOKIE_EXPIRED:
        ctx->cookie_error = ngx_http_loyalty_cookie_expired;
        break;

    default: /* LOYALTY_COOKIE_MALFORMED */
        ctx->cookie_error = ngx_http_loyalty_cookie_malformed;
        break;
    }

    /* the client's doing: info, and never the value itself */

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "loyalty cookie \"%V\" rejected (%V, %uz bytes), "
                  "treated as anonymous", &llcf->cookie, &ctx->cookie_error,
                  len);

    return NGX_HTTP_LOYALTY_INVALID;
}


/*
 * loyalty_secret file: read once at configuration time.  The keys live
 * in the file, never in nginx.conf, so "nginx -T" does not print them;
 * the file must not be world-readable.
 */

char *
ngx_http_loyalty_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_loyalty_loc_conf_t *llcf = conf;

    int                         n;
    char                        err[128];
    u_char                     *buf;
    ssize_t                     size;
    ngx_fd_t                    fd;
    ngx_str_t                  *value, name;
    ngx_file_info_t             fi;
    ngx_http_loyalty_secret_t  *secret;

    if (llcf->secret != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"loyalty_secret\" cannot open \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    buf = NULL;
    size = 0;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"loyalty_secret\" cannot stat \"%V\"", &name);
        goto failed;
    }

    if (fi.st_mode & S_IROTH) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"loyalty_secret\" file \"%V\" is world-readable; "
                           "allow only nginx's user or group to read it "
                           "(chmod o-rwx)", &name);
        goto failed;
    }

    if (!S_ISREG(fi.st_mode) || ngx_file_size(&fi) == 0
        || ngx_file_size(&fi) > NGX_HTTP_LOYALTY_SECRET_MAX_SIZE)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"loyalty_secret\" file \"%V\" must be a regular "
                           "file of 1 to %d bytes", &name,
                           NGX_HTTP_LOYALTY_SECRET_MAX_SIZE);
        goto failed;
    }

    buf = ngx_pnalloc(cf->temp_pool, ngx_file_size(&fi));
    if (buf == NULL) {
        goto failed;
    }

    size = ngx_read_fd(fd, buf, ngx_file_size(&fi));

    if (size == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"loyalty_secret\" cannot read \"%V\"", &name);
        goto failed;
    }

    secret = ngx_palloc(cf->pool, sizeof(ngx_http_loyalty_secret_t));
    if (secret == NULL) {
        goto failed;
    }

    secret->keys = ngx_pcalloc(cf->pool,
                               LOYALTY_KEYS_MAX * sizeof(loyalty_key_t));
    if (secret->keys == NULL) {
        goto failed;
    }

    n = loyalty_keys_parse((char *) buf, size, secret->keys, LOYALTY_KEYS_MAX,
                           err, sizeof(err));

    if (n < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"loyalty_secret\" file \"%V\": %s", &name, err);
        goto failed;
    }

    secret->nkeys = n;
    llcf->secret = secret;

    ngx_explicit_memzero(buf, size);
    (void) ngx_close_file(fd);

    return NGX_CONF_OK;

failed:

    if (buf != NULL && size > 0) {
        ngx_explicit_memzero(buf, size);
    }

    (void) ngx_close_file(fd);

    return NGX_CONF_ERROR;
}
