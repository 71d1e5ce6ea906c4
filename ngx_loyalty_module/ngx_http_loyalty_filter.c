/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Response side: X-Loyalty-Tier and X-Loyalty-Points for known customers
 * where loyalty_response_headers is on.  Reads the lookup's result from
 * the request's ctx; never talks to Redis.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"


static ngx_int_t ngx_http_loyalty_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_loyalty_set_response_header(ngx_http_request_t *r,
    ngx_str_t *key, ngx_str_t *value);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


static ngx_str_t  ngx_http_loyalty_response_tier =
    ngx_string("X-Loyalty-Tier");
static ngx_str_t  ngx_http_loyalty_response_points =
    ngx_string("X-Loyalty-Points");


static ngx_int_t
ngx_http_loyalty_header_filter(ngx_http_request_t *r)
{
    ngx_http_loyalty_ctx_t       *ctx;
    ngx_http_loyalty_loc_conf_t  *llcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_loyalty_module);

    if (!llcf->response_headers) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_loyalty_get_ctx(r);

    if (ctx == NULL || ctx->status != NGX_HTTP_LOYALTY_OK) {
        return ngx_http_next_header_filter(r);
    }

    if (ngx_http_loyalty_set_response_header(r,
                                             &ngx_http_loyalty_response_tier,
                                             &ctx->tier)
        != NGX_OK
        || ngx_http_loyalty_set_response_header(r,
                                            &ngx_http_loyalty_response_points,
                                            &ctx->points)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/* replaces any header of that name the upstream sent: one value only */

static ngx_int_t
ngx_http_loyalty_set_response_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash != 0
            && h[i].key.len == key->len
            && ngx_strncasecmp(h[i].key.data, key->data, key->len) == 0)
        {
            /* the header filter skips entries with a zero hash */
            h[i].hash = 0;
        }
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *key;
    h->value = *value;
    h->lowcase_key = NULL;

    return NGX_OK;
}


ngx_int_t
ngx_http_loyalty_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_loyalty_header_filter;

    return NGX_OK;
}
