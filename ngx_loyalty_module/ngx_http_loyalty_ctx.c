/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The request's ctx: made once per request, found again after an
 * internal redirect, released with the request; and the names of its
 * statuses, for the variables, the headers and the fragment.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_ctx.h"
#include "ngx_http_loyalty_lookup.h"


static void ngx_http_loyalty_cleanup(void *data);


/* indexed by ngx_http_loyalty_status_e */

static ngx_str_t  ngx_http_loyalty_status_names[] = {
    ngx_null_string,
    ngx_string("ok"),
    ngx_string("anonymous"),
    ngx_string("invalid"),
    ngx_string("unknown"),
    ngx_string("timeout"),
    ngx_string("error"),
    ngx_string("holdout"),
    ngx_string("bypass")
};


/* indexed by ngx_http_loyalty_cache_status_e */

static ngx_str_t  ngx_http_loyalty_cache_status_names[] = {
    ngx_null_string,
    ngx_string("HIT"),
    ngx_string("MISS"),
    ngx_string("EXPIRED"),
    ngx_string("STALE"),
    ngx_string("BYPASS")
};


ngx_http_loyalty_ctx_t *
ngx_http_loyalty_create_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_loyalty_ctx_t  *ctx;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_loyalty_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_loyalty_ctx_t));

    /*
     * set by ngx_memzero():
     *
     *     ctx->lookup = NULL;
     *     ctx->cache_status = NGX_HTTP_LOYALTY_CACHE_NONE;
     *     ctx->record = 0;
     *     ctx->stale = 0;
     *     ctx->status = NGX_HTTP_LOYALTY_NONE;
     *     ctx->id = { 0, NULL };
     *     ctx->tier = { 0, NULL };
     *     ctx->points = { 0, NULL };
     *     ctx->waiting = 0;
     *     ctx->done = 0;
     *     ctx->resume: set up by the phase handler
     */

    ctx->request = r;

    cln->handler = ngx_http_loyalty_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_http_loyalty_module);

    return ctx;
}


ngx_http_loyalty_ctx_t *
ngx_http_loyalty_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_loyalty_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_loyalty_module);

    if (ctx != NULL) {
        return ctx;
    }

    /*
     * an internal redirect zeroed r->ctx; the lookup's result is still in
     * the pool cleanup that owns it
     */

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler != ngx_http_loyalty_cleanup) {
            continue;
        }

        ctx = cln->data;

        if (ctx->request == r) {
            ngx_http_set_ctx(r, ctx, ngx_http_loyalty_module);
            return ctx;
        }
    }

    return NULL;
}


ngx_str_t *
ngx_http_loyalty_status_name(ngx_http_loyalty_ctx_t *ctx)
{
    return &ngx_http_loyalty_status_names[ctx->status];
}


ngx_str_t *
ngx_http_loyalty_cache_status_name(ngx_http_loyalty_ctx_t *ctx)
{
    return &ngx_http_loyalty_cache_status_names[ctx->cache_status];
}


/* the request ends, or the client left while Redis has not answered */

static void
ngx_http_loyalty_cleanup(void *data)
{
    ngx_http_loyalty_ctx_t  *ctx = data;

    if (ctx->lookup != NULL) {
        ngx_http_loyalty_lookup_leave(ctx);
    }

    if (ctx->resume.posted) {
        ngx_delete_posted_event(&ctx->resume);
    }
}
