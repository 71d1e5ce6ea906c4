/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The customer id from the request's cookies; the parsing and checks are
 * in lib/loyalty_cookie.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "loyalty_cookie.h"


/*
 * Returns NGX_HTTP_LOYALTY_NONE with id set when the cookie holds a valid
 * id, NGX_HTTP_LOYALTY_ANONYMOUS without the cookie, and
 * NGX_HTTP_LOYALTY_INVALID otherwise.  The first cookie of that name wins,
 * across all Cookie headers in their order.
 */

ngx_http_loyalty_status_e
ngx_http_loyalty_cookie_id(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *id)
{
    size_t            len;
    ngx_uint_t        i;
    const u_char     *value;
    ngx_table_elt_t  **cookies;

    cookies = r->headers_in.cookies.elts;

    for (i = 0; i < r->headers_in.cookies.nelts; i++) {

        if (!loyalty_cookie_find(cookies[i]->value.data,
                                 cookies[i]->value.len,
                                 name->data, name->len, &value, &len))
        {
            continue;
        }

        if (!loyalty_id_valid(value, len)) {
            /* the client's doing: info, and never the value itself */
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "loyalty cookie \"%V\" is malformed "
                          "(%uz bytes), treated as anonymous", name, len);
            return NGX_HTTP_LOYALTY_INVALID;
        }

        id->data = (u_char *) value;
        id->len = len;

        return NGX_HTTP_LOYALTY_NONE;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "loyalty cookie \"%V\" not found", name);

    return NGX_HTTP_LOYALTY_ANONYMOUS;
}
