/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The REWRITE phase handler: reads the customer cookie, asks the cache or
 * Redis for the loyalty record without blocking the worker, and resumes
 * the request with $loyalty_* set and the X-Loyalty-* request headers in
 * place for the upstream.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_ctx.h"
#include "ngx_http_loyalty_handler.h"
#include "ngx_http_loyalty_metrics.h"
#include "ngx_http_loyalty_redis.h"
#include "ngx_http_loyalty_cache.h"
#include "ngx_http_loyalty_cookie.h"
#include "ngx_http_loyalty_lookup.h"
#include "ngx_http_loyalty_headers.h"


/* an entry's longest life while invalidations cannot be received (ms) */
#define NGX_HTTP_LOYALTY_CACHE_UNSUBSCRIBED  1000


static void ngx_http_loyalty_resume(ngx_event_t *ev);
static ngx_int_t ngx_http_loyalty_finish(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx);


ngx_int_t
ngx_http_loyalty_handler(ngx_http_request_t *r)
{
    u_char                       *p;
    ngx_int_t                     rc;
    ngx_str_t                     key;
    ngx_http_loyalty_ctx_t       *ctx, *mctx;
    ngx_http_loyalty_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_loyalty_module);

    if (!llcf->enable && llcf->ab == NULL && !llcf->ab_convert) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_loyalty_get_ctx(r);

    if (ctx != NULL) {
        /* re-entered: while waiting (a write event ran the phases), or
         * after an internal redirect, which keeps the result; a redirect
         * from a location with tests only may still need the lookup */

        if (ctx->waiting) {
            return NGX_DONE;
        }

        if (ctx->done || !llcf->enable) {
            return NGX_DECLINED;
        }

        ctx->status = ngx_http_loyalty_cookie_id(r, llcf, ctx);

        goto lookup;
    }

    if (r != r->main) {
        mctx = ngx_http_loyalty_get_ctx(r->main);

        if (mctx != NULL && mctx->done) {
            /* a subrequest uses its main request's lookup */
            return NGX_DECLINED;
        }
    }

    ctx = ngx_http_loyalty_create_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->resume.handler = ngx_http_loyalty_resume;
    ctx->resume.data = ctx;
    ctx->resume.log = r->connection->log;

    ctx->status = ngx_http_loyalty_cookie_id(r, llcf, ctx);

    /* A/B variants are assigned (and exposures counted) once per main
     * request, wherever tests are on, with or without the lookup */

    if (r == r->main
        && ngx_http_loyalty_ab_request(r, llcf, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!llcf->enable) {
        /* tests only: no lookup, no $loyalty_status, no headers */
        ctx->status = NGX_HTTP_LOYALTY_NONE;
        return NGX_DECLINED;
    }

lookup:

    if (ctx->holdout) {
        /* no personalization at all, not even the lookup */
        ctx->status = NGX_HTTP_LOYALTY_HOLDOUT;
    }

    if (ctx->status != NGX_HTTP_LOYALTY_NONE) {
        return ngx_http_loyalty_finish(r, ctx);
    }

    /* HMGET <prefix><id> tier points cashback ... offers: one round trip
     * for the headers and the fragment alike */

    key.len = llcf->key_prefix.len + ctx->id.len;
    key.data = ngx_pnalloc(r->pool, key.len);
    if (key.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key.data, llcf->key_prefix.data, llcf->key_prefix.len);
    ngx_memcpy(p, ctx->id.data, ctx->id.len);

    ctx->start = ngx_current_msec;

    if (llcf->cache != NULL) {

        /* without invalidation messages an entry lives at most 1 s */

        ctx->cache_status = ngx_http_loyalty_cache_get(r, llcf->cache, &key,
                                  ngx_http_loyalty_redis_subscribed(llcf->redis)
                                  ? 0 : NGX_HTTP_LOYALTY_CACHE_UNSUBSCRIBED,
                                  llcf->cache_stale, ctx);

        if (ctx->cache_status == NGX_HTTP_LOYALTY_CACHE_HIT) {
            return ngx_http_loyalty_finish(r, ctx);
        }
    }

    rc = ngx_http_loyalty_lookup(r, llcf, ctx, &key);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        /* ended at once: no connection, or the breaker is open */
        return ngx_http_loyalty_finish(r, ctx);
    }

    /*
     * REWRITE phase: only NGX_DONE suspends here; count++ keeps the
     * request alive until the reply resumes the phases
     */

    ctx->waiting = 1;
    r->main->count++;

    ngx_http_loyalty_metric_add(in_flight, 1);

    return NGX_DONE;
}


static void
ngx_http_loyalty_resume(ngx_event_t *ev)
{
    ngx_connection_t        *c;
    ngx_http_request_t      *r;
    ngx_http_loyalty_ctx_t  *ctx;

    ctx = ev->data;
    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ctx->waiting = 0;
    r->main->count--;

    if (ngx_http_loyalty_finish(r, ctx) == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);

    } else {
        ngx_http_core_run_phases(r);
    }

    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_loyalty_finish(ngx_http_request_t *r, ngx_http_loyalty_ctx_t *ctx)
{
    ngx_http_loyalty_loc_conf_t  *llcf;

    ctx->done = 1;

    ngx_http_loyalty_metric_add(lookups[ctx->status], 1);

    if (ctx->cache_status != NGX_HTTP_LOYALTY_CACHE_NONE) {
        ngx_http_loyalty_metric_add(cache[ctx->cache_status], 1);
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_loyalty_module);

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "loyalty lookup \"%V%V\": %V, tier \"%V\", %M ms",
                   &llcf->key_prefix, &ctx->id,
                   ngx_http_loyalty_status_name(ctx), &ctx->tier,
                   ctx->start ? ngx_current_msec - ctx->start : 0);

    if (ngx_http_loyalty_set_headers(r, ctx, llcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_DECLINED;
}
