/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The X-Loyalty-* request headers: what the client sent under those names
 * is removed, what the lookup found is added for the upstream.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_ctx.h"
#include "ngx_http_loyalty_headers.h"


#define NGX_HTTP_LOYALTY_HEADER_PREFIX  "x-loyalty-"


typedef struct {
    ngx_str_t                      key;
    ngx_str_t                      lowcase;
    ngx_uint_t                     hash;
} ngx_http_loyalty_header_t;


static ngx_uint_t ngx_http_loyalty_header_ours(ngx_table_elt_t *h);
static ngx_int_t ngx_http_loyalty_push_header(ngx_list_t *headers,
    ngx_http_loyalty_header_t *h, ngx_str_t *value);


/* request headers for the upstream; hashes are filled in at init */

static ngx_http_loyalty_header_t  ngx_http_loyalty_header_id =
    { ngx_string("X-Loyalty-Id"), ngx_string("x-loyalty-id"), 0 };
static ngx_http_loyalty_header_t  ngx_http_loyalty_header_tier =
    { ngx_string("X-Loyalty-Tier"), ngx_string("x-loyalty-tier"), 0 };
static ngx_http_loyalty_header_t  ngx_http_loyalty_header_points =
    { ngx_string("X-Loyalty-Points"), ngx_string("x-loyalty-points"), 0 };
static ngx_http_loyalty_header_t  ngx_http_loyalty_header_status =
    { ngx_string("X-Loyalty-Status"), ngx_string("x-loyalty-status"), 0 };
static ngx_http_loyalty_header_t  ngx_http_loyalty_header_variants =
    { ngx_string("X-Loyalty-Variants"), ngx_string("x-loyalty-variants"), 0 };


/*
 * Client-sent X-Loyalty-* headers are removed whatever the outcome, so a
 * client can never claim a tier; ours are added when enabled.  nginx
 * keeps pointers into r->headers_in.headers (host, cookies, ...), so the
 * list is rebuilt rather than shifted; a subrequest shares its parent's
 * list parts, so it always gets a list of its own.
 */

ngx_int_t
ngx_http_loyalty_set_headers(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx, ngx_http_loyalty_loc_conf_t *llcf)
{
    ngx_str_t                       *status;
    ngx_uint_t                       n, spoofed;
    ngx_list_t                       old;
    ngx_table_elt_t                 *h, *nh;
    ngx_http_loyalty_header_walk_t   w;

    spoofed = 0;
    n = 0;

    w.part = &r->headers_in.headers.part;
    w.i = 0;

    while ((h = ngx_http_loyalty_header_next(&w)) != NULL) {
        n++;

        if (ngx_http_loyalty_header_ours(h)) {
            spoofed++;
        }
    }

    if (spoofed) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "loyalty removed %ui client-sent X-Loyalty-* "
                      "request header(s)", spoofed);
    }

    if (spoofed || (llcf->upstream_headers && r != r->main)) {

        /*
         * a list cannot be copied by value (its "last" points into
         * itself): keep the old parts and initialize the list in place
         */

        old = r->headers_in.headers;

        if (ngx_list_init(&r->headers_in.headers, r->pool, n + 4,
                          sizeof(ngx_table_elt_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        w.part = &old.part;
        w.i = 0;

        while ((h = ngx_http_loyalty_header_next(&w)) != NULL) {

            if (ngx_http_loyalty_header_ours(h)) {
                continue;
            }

            nh = ngx_list_push(&r->headers_in.headers);
            if (nh == NULL) {
                return NGX_ERROR;
            }

            *nh = *h;
        }
    }

    if (!llcf->upstream_headers || ctx->status == NGX_HTTP_LOYALTY_HOLDOUT) {
        return NGX_OK;
    }

    status = ngx_http_loyalty_status_name(ctx);

    if (ctx->variants_text.len
        && ngx_http_loyalty_push_header(&r->headers_in.headers,
                                        &ngx_http_loyalty_header_variants,
                                        &ctx->variants_text)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_loyalty_push_header(&r->headers_in.headers,
                                     &ngx_http_loyalty_header_status, status)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->id.len
        && ngx_http_loyalty_push_header(&r->headers_in.headers,
                                        &ngx_http_loyalty_header_id, &ctx->id)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!ctx->record) {
        return NGX_OK;
    }

    if (ngx_http_loyalty_push_header(&r->headers_in.headers,
                                     &ngx_http_loyalty_header_tier,
                                     &ctx->tier)
        != NGX_OK
        || ngx_http_loyalty_push_header(&r->headers_in.headers,
                                        &ngx_http_loyalty_header_points,
                                        &ctx->points)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* any X-Loyalty-* name */

static ngx_uint_t
ngx_http_loyalty_header_ours(ngx_table_elt_t *h)
{
    return h->key.len >= sizeof(NGX_HTTP_LOYALTY_HEADER_PREFIX) - 1
           && ngx_strncasecmp(h->key.data,
                              (u_char *) NGX_HTTP_LOYALTY_HEADER_PREFIX,
                              sizeof(NGX_HTTP_LOYALTY_HEADER_PREFIX) - 1)
              == 0;
}


static ngx_int_t
ngx_http_loyalty_push_header(ngx_list_t *headers,
    ngx_http_loyalty_header_t *h, ngx_str_t *value)
{
    ngx_table_elt_t  *e;

    e = ngx_list_push(headers);
    if (e == NULL) {
        return NGX_ERROR;
    }

    /* the hash of the lowercase name, as the request parser computes it,
     * so proxy_set_header and $http_x_loyalty_* find the header */

    e->hash = h->hash;
    e->key = h->key;
    e->lowcase_key = h->lowcase.data;
    e->value = *value;

    return NGX_OK;
}


/*
 * The next header of a list, part after part; NULL after the last.  The
 * walk starts with w->part at the list's first part and w->i at 0.
 */

ngx_table_elt_t *
ngx_http_loyalty_header_next(ngx_http_loyalty_header_walk_t *w)
{
    ngx_table_elt_t  *h;

    while (w->i >= w->part->nelts) {
        if (w->part->next == NULL) {
            return NULL;
        }

        w->part = w->part->next;
        w->i = 0;
    }

    h = w->part->elts;

    return &h[w->i++];
}


void
ngx_http_loyalty_headers_init(void)
{
    ngx_uint_t                  i;
    ngx_http_loyalty_header_t  *hdrs[5];

    hdrs[0] = &ngx_http_loyalty_header_id;
    hdrs[1] = &ngx_http_loyalty_header_tier;
    hdrs[2] = &ngx_http_loyalty_header_points;
    hdrs[3] = &ngx_http_loyalty_header_status;
    hdrs[4] = &ngx_http_loyalty_header_variants;

    for (i = 0; i < 5; i++) {
        hdrs[i]->hash = ngx_hash_key(hdrs[i]->lowcase.data,
                                     hdrs[i]->lowcase.len);
    }
}
