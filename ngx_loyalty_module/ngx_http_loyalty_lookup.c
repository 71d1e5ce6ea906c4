/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The lookups in flight: one HMGET per customer key at a time in each
 * worker, however many requests want it; the reply is checked against
 * the record's rules and handed to every request waiting for it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_log.h"
#include "ngx_http_loyalty_metrics.h"
#include "ngx_http_loyalty_redis.h"
#include "ngx_http_loyalty_cache.h"
#include "ngx_http_loyalty_lookup.h"
#include "loyalty_record.h"


/* longest optional field value kept (bytes); longer ones are dropped */
#define NGX_HTTP_LOYALTY_FIELD_MAX    256
#define NGX_HTTP_LOYALTY_OFFERS_MAX   65536


/* an HMGET in flight in this worker, and the requests waiting for it */
typedef struct {
    ngx_rbtree_node_t              node;      /* key: CRC32 of the key */
    ngx_str_t                      key;
    ngx_http_loyalty_redis_t      *redis;
    ngx_http_loyalty_cache_t      *cache;
    ngx_queue_t                    waiters;   /* ngx_http_loyalty_ctx_t */
    ngx_pool_t                    *pool;      /* the reply's arrays */
    ngx_msec_t                     start;
} ngx_http_loyalty_lookup_t;


static ngx_http_loyalty_lookup_t *ngx_http_loyalty_lookup_find(
    ngx_str_t *key, uint32_t hash, ngx_http_loyalty_loc_conf_t *llcf);
static ngx_int_t ngx_http_loyalty_lookup_cmp(ngx_http_loyalty_lookup_t *a,
    uint32_t hash, ngx_str_t *key, ngx_http_loyalty_redis_t *redis,
    ngx_http_loyalty_cache_t *cache);
static void ngx_http_loyalty_lookup_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_loyalty_lookup_node_cmp(ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *temp);
static void ngx_http_loyalty_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err);
static ngx_http_loyalty_status_e ngx_http_loyalty_record(
    ngx_http_loyalty_ctx_t *ctx, ngx_http_loyalty_reply_t *reply,
    ngx_uint_t first);
static void ngx_http_loyalty_failed(ngx_http_loyalty_ctx_t *ctx,
    ngx_http_loyalty_status_e status);


/* this worker's lookups in flight */
static ngx_rbtree_t                   ngx_http_loyalty_lookups;
static ngx_rbtree_node_t              ngx_http_loyalty_lookups_sentinel;


/* in lib's loyalty_field_e order */

static ngx_str_t  ngx_http_loyalty_fields[NGX_HTTP_LOYALTY_FIELDS] = {
    ngx_string("tier"),
    ngx_string("points"),
    ngx_string("cashback"),
    ngx_string("segments"),
    ngx_string("first_order"),
    ngx_string("birthday"),
    ngx_string("referral_code"),
    ngx_string("offers")
};

static ngx_str_t  ngx_http_loyalty_hmget = ngx_string("HMGET");


/*
 * Sends the HMGET, or joins the same key's HMGET already on its way from
 * this worker: one Redis command for any number of concurrent requests.
 * NGX_AGAIN: waiting; NGX_OK: the lookup ended at once (ctx->status set).
 */

ngx_int_t
ngx_http_loyalty_lookup(ngx_http_request_t *r,
    ngx_http_loyalty_loc_conf_t *llcf, ngx_http_loyalty_ctx_t *ctx,
    ngx_str_t *key)
{
    uint32_t                    hash;
    ngx_int_t                   rc;
    ngx_str_t                   err, argv[2 + NGX_HTTP_LOYALTY_FIELDS];
    ngx_pool_t                 *pool;
    ngx_http_loyalty_lookup_t  *lk;

    hash = ngx_crc32_short(key->data, key->len);

    lk = ngx_http_loyalty_lookup_find(key, hash, llcf);

    if (lk != NULL) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "loyalty lookup \"%V\": joins the one in flight",
                       key);

        ngx_http_loyalty_metric_add(coalesced, 1);

        ngx_queue_insert_tail(&lk->waiters, &ctx->queue);
        ctx->lookup = lk;

        return NGX_AGAIN;
    }

    if (ngx_http_loyalty_redis_open(llcf->redis)) {
        /* the breaker is open: not even an allocation */
        ngx_http_loyalty_failed(ctx, NGX_HTTP_LOYALTY_BYPASS);
        return NGX_OK;
    }

    /* the lookup lives in its own pool, which also takes the reply */

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    lk = ngx_pcalloc(pool, sizeof(ngx_http_loyalty_lookup_t) + key->len);
    if (lk == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    lk->pool = pool;
    lk->node.key = hash;
    lk->key.data = (u_char *) &lk[1];
    lk->key.len = key->len;
    ngx_memcpy(lk->key.data, key->data, key->len);
    lk->redis = llcf->redis;
    lk->cache = llcf->cache;
    lk->start = ngx_current_msec;
    ngx_queue_init(&lk->waiters);

    argv[0] = ngx_http_loyalty_hmget;
    argv[1] = lk->key;

    ngx_memcpy(&argv[2], ngx_http_loyalty_fields,
               sizeof(ngx_http_loyalty_fields));

    rc = ngx_http_loyalty_redis_send(llcf->redis, lk->pool,
                                     ngx_cycle->log, llcf->timeout,
                                     2 + NGX_HTTP_LOYALTY_FIELDS, argv,
                                     ngx_http_loyalty_reply, lk,
                                     NULL, &err);

    if (rc == NGX_AGAIN) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "loyalty lookup \"%V\": waiting for redis", key);

        ngx_rbtree_insert(&ngx_http_loyalty_lookups, &lk->node);
        ngx_queue_insert_tail(&lk->waiters, &ctx->queue);
        ctx->lookup = lk;

        return NGX_AGAIN;
    }

    ngx_destroy_pool(pool);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* no connection right now, or the breaker is open: fail open at once;
     * the connection's failure was logged when it happened */

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "loyalty lookup \"%V\": redis \"%V\" %V",
                   key, ngx_http_loyalty_redis_name(llcf->redis), &err);

    switch (rc) {

    case NGX_HTTP_LOYALTY_REDIS_BYPASS:
        ngx_http_loyalty_failed(ctx, NGX_HTTP_LOYALTY_BYPASS);
        break;

    case NGX_HTTP_LOYALTY_REDIS_TIMEOUT:
        ngx_http_loyalty_failed(ctx, NGX_HTTP_LOYALTY_TIMEOUT);
        break;

    default:
        ngx_http_loyalty_failed(ctx, NGX_HTTP_LOYALTY_ERROR);
        break;
    }

    return NGX_OK;
}


static ngx_http_loyalty_lookup_t *
ngx_http_loyalty_lookup_find(ngx_str_t *key, uint32_t hash,
    ngx_http_loyalty_loc_conf_t *llcf)
{
    ngx_int_t                   rc;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_loyalty_lookup_t  *lk;

    node = ngx_http_loyalty_lookups.root;
    sentinel = ngx_http_loyalty_lookups.sentinel;

    while (node != sentinel) {
        lk = (ngx_http_loyalty_lookup_t *) node;

        rc = ngx_http_loyalty_lookup_cmp(lk, hash, key, llcf->redis,
                                         llcf->cache);

        if (rc == 0) {
            return lk;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* lookups are ordered by hash, then key, then Redis and cache */

static ngx_int_t
ngx_http_loyalty_lookup_cmp(ngx_http_loyalty_lookup_t *a, uint32_t hash,
    ngx_str_t *key, ngx_http_loyalty_redis_t *redis,
    ngx_http_loyalty_cache_t *cache)
{
    ngx_int_t  rc;

    if (a->node.key != hash) {
        return (hash < a->node.key) ? -1 : 1;
    }

    rc = ngx_memn2cmp(key->data, a->key.data, key->len, a->key.len);

    if (rc != 0) {
        return rc;
    }

    if (redis != a->redis) {
        return ((uintptr_t) redis < (uintptr_t) a->redis) ? -1 : 1;
    }

    if (cache != a->cache) {
        return ((uintptr_t) cache < (uintptr_t) a->cache) ? -1 : 1;
    }

    return 0;
}


static void
ngx_http_loyalty_lookup_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_http_loyalty_rbtree_insert(temp, node, sentinel,
                                   ngx_http_loyalty_lookup_node_cmp);
}


static ngx_int_t
ngx_http_loyalty_lookup_node_cmp(ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *temp)
{
    ngx_http_loyalty_lookup_t  *lk;

    lk = (ngx_http_loyalty_lookup_t *) node;

    return ngx_http_loyalty_lookup_cmp((ngx_http_loyalty_lookup_t *) temp,
                                       (uint32_t) node->key, &lk->key,
                                       lk->redis, lk->cache);
}


/*
 * Runs inside hiredis's callback or the command's timer: record the
 * outcome for every request waiting on the lookup, fill the cache, and
 * let the event loop resume the requests.
 */

static void
ngx_http_loyalty_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err)
{
    ngx_http_loyalty_lookup_t *lk = data;

    ngx_queue_t                *q;
    ngx_http_loyalty_ctx_t     *ctx, *first;
    ngx_http_loyalty_status_e   status;

    ngx_rbtree_delete(&ngx_http_loyalty_lookups, &lk->node);

    switch (rc) {

    case NGX_HTTP_LOYALTY_REDIS_REPLY:
        status = NGX_HTTP_LOYALTY_OK;
        break;

    case NGX_HTTP_LOYALTY_REDIS_TIMEOUT:
        ngx_http_loyalty_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                                   "lookup timeout",
                                   "loyalty redis \"%V\" %V after %M ms",
                                   ngx_http_loyalty_redis_name(lk->redis),
                                   err, ngx_current_msec - lk->start);
        status = NGX_HTTP_LOYALTY_TIMEOUT;
        break;

    default: /* NGX_HTTP_LOYALTY_REDIS_FAILED */
        ngx_http_loyalty_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                                   "lookup failed",
                                   "loyalty redis \"%V\" lookup failed: %V",
                                   ngx_http_loyalty_redis_name(lk->redis),
                                   err);
        status = NGX_HTTP_LOYALTY_ERROR;
        break;
    }

    first = NULL;

    while (!ngx_queue_empty(&lk->waiters)) {
        q = ngx_queue_head(&lk->waiters);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_loyalty_ctx_t, queue);
        ctx->lookup = NULL;

        ngx_http_loyalty_metric_add(in_flight, -1);

        if (status == NGX_HTTP_LOYALTY_OK) {
            ctx->status = ngx_http_loyalty_record(ctx, reply,
                                                  first == NULL);

            if (first == NULL) {
                first = ctx;
            }

        } else {
            ngx_http_loyalty_failed(ctx, status);
        }

        ngx_post_event(&ctx->resume, &ngx_posted_events);
    }

    /* only what Redis said about the customer is cached, not errors */

    if (lk->cache != NULL && first != NULL
        && (first->status == NGX_HTTP_LOYALTY_OK
            || first->status == NGX_HTTP_LOYALTY_UNKNOWN))
    {
        ngx_http_loyalty_cache_put(lk->cache, &lk->key, first,
                                   ngx_cycle->log);
    }

    ngx_destroy_pool(lk->pool);
}


/* HMGET tier points ...: tier and points nil means no such customer */

static ngx_http_loyalty_status_e
ngx_http_loyalty_record(ngx_http_loyalty_ctx_t *ctx,
    ngx_http_loyalty_reply_t *reply, ngx_uint_t first)
{
    u_char                    *p;
    size_t                     max;
    uint64_t                   points;
    ngx_uint_t                 i;
    ngx_log_t                 *log;
    ngx_http_request_t        *r;
    ngx_http_loyalty_reply_t  *tier, *pts, *f;

    r = ctx->request;

    /* errors are logged and counted once per lookup, not per waiter */
    log = first ? r->connection->log : NULL;

    /* Redis answered: an expired cache entry copied before goes */

    ctx->tier.len = 0;
    ctx->points.len = 0;
    ngx_memzero(ctx->fields, sizeof(ctx->fields));
    ctx->record = 0;
    ctx->stale = 0;

    if (reply->type == NGX_HTTP_LOYALTY_REPLY_ERROR) {
        if (log) {
            ngx_http_loyalty_log_error(NGX_LOG_ERR, log, 0, "error reply",
                                       "loyalty redis replied with an "
                                       "error: \"%*s\"",
                                       ngx_min(reply->str.len, 128),
                                       reply->str.data);
            ngx_http_loyalty_metric_add(errors[NGX_HTTP_LOYALTY_ERR_REPLY],
                                        1);
        }

        return NGX_HTTP_LOYALTY_ERROR;
    }

    if (reply->type != NGX_HTTP_LOYALTY_REPLY_ARRAY
        || reply->nelts != NGX_HTTP_LOYALTY_FIELDS)
    {
        if (log) {
            ngx_http_loyalty_log_error(NGX_LOG_ERR, log, 0, "bad reply",
                                       "loyalty redis sent an unexpected "
                                       "reply of type %ui", reply->type);
            ngx_http_loyalty_metric_add(
                                   errors[NGX_HTTP_LOYALTY_ERR_PROTOCOL], 1);
        }

        return NGX_HTTP_LOYALTY_ERROR;
    }

    tier = &reply->elts[0];
    pts = &reply->elts[1];

    if (tier->type == NGX_HTTP_LOYALTY_REPLY_NIL
        && pts->type == NGX_HTTP_LOYALTY_REPLY_NIL)
    {
        return NGX_HTTP_LOYALTY_UNKNOWN;
    }

    /* the values go into headers and pages: allow-list them */

    if (tier->type != NGX_HTTP_LOYALTY_REPLY_STRING
        || !loyalty_tier_valid(tier->str.data, tier->str.len))
    {
        if (log) {
            ngx_http_loyalty_log_error(NGX_LOG_ERR, log, 0, "bad tier",
                                       "loyalty record rejected: \"tier\" "
                                       "is missing or not 1-%d characters "
                                       "of [A-Za-z0-9_-]",
                                       LOYALTY_TIER_MAX_LEN);
            ngx_http_loyalty_metric_add(errors[NGX_HTTP_LOYALTY_ERR_RECORD],
                                        1);
        }

        return NGX_HTTP_LOYALTY_ERROR;
    }

    if (pts->type != NGX_HTTP_LOYALTY_REPLY_STRING
        || !loyalty_points_parse(pts->str.data, pts->str.len, &points))
    {
        if (log) {
            ngx_http_loyalty_log_error(NGX_LOG_ERR, log, 0, "bad points",
                                       "loyalty record rejected: "
                                       "\"points\" is missing or not a "
                                       "non-negative integer of at most %d "
                                       "digits", LOYALTY_POINTS_MAX_LEN);
            ngx_http_loyalty_metric_add(errors[NGX_HTTP_LOYALTY_ERR_RECORD],
                                        1);
        }

        return NGX_HTTP_LOYALTY_ERROR;
    }

    /* the reply's strings vanish when the callback returns: copy */

    ctx->tier.data = ngx_pnalloc(r->pool, tier->str.len);
    ctx->points.data = ngx_pnalloc(r->pool, LOYALTY_INT_STR_LEN);

    if (ctx->tier.data == NULL || ctx->points.data == NULL) {
        return NGX_HTTP_LOYALTY_ERROR;
    }

    p = ngx_cpymem(ctx->tier.data, tier->str.data, tier->str.len);
    ctx->tier.len = p - ctx->tier.data;

    ctx->points.len = loyalty_uint_format(points, ctx->points.data);

    /* the other fields are copied as they are and validated only if the
     * fragment is built; absurd sizes are dropped here */

    for (i = 2; i < NGX_HTTP_LOYALTY_FIELDS; i++) {
        f = &reply->elts[i];

        if (f->type != NGX_HTTP_LOYALTY_REPLY_STRING || f->str.len == 0) {
            continue;
        }

        max = (i == NGX_HTTP_LOYALTY_FIELDS - 1) ? NGX_HTTP_LOYALTY_OFFERS_MAX
                                                 : NGX_HTTP_LOYALTY_FIELD_MAX;

        if (f->str.len > max) {
            if (log) {
                ngx_http_loyalty_log_error(NGX_LOG_WARN, log, 0,
                                           "field too long",
                                           "loyalty record field \"%V\" "
                                           "dropped: longer than %uz bytes",
                                           &ngx_http_loyalty_fields[i], max);
            }

            continue;
        }

        ctx->fields[i].data = ngx_pnalloc(r->pool, f->str.len);
        if (ctx->fields[i].data == NULL) {
            return NGX_HTTP_LOYALTY_ERROR;
        }

        ngx_memcpy(ctx->fields[i].data, f->str.data, f->str.len);
        ctx->fields[i].len = f->str.len;
    }

    ctx->record = 1;

    return NGX_HTTP_LOYALTY_OK;
}


/* Redis did not answer: an expired cache entry, if any, stands in */

static void
ngx_http_loyalty_failed(ngx_http_loyalty_ctx_t *ctx,
    ngx_http_loyalty_status_e status)
{
    ctx->status = status;

    if (ctx->stale) {
        ctx->stale = 0;
        ctx->record = (ctx->tier.len != 0);
        ctx->cache_status = NGX_HTTP_LOYALTY_CACHE_STALE;
        return;
    }

    if (status == NGX_HTTP_LOYALTY_BYPASS
        && ctx->cache_status != NGX_HTTP_LOYALTY_CACHE_NONE)
    {
        ctx->cache_status = NGX_HTTP_LOYALTY_CACHE_BYPASS;
    }
}


/* the request ends (or the client left) before the lookup: the lookup
 * goes on for the others waiting, and for the cache */

void
ngx_http_loyalty_lookup_leave(ngx_http_loyalty_ctx_t *ctx)
{
    ngx_queue_remove(&ctx->queue);
    ctx->lookup = NULL;

    ngx_http_loyalty_metric_add(in_flight, -1);
}


void
ngx_http_loyalty_lookup_init_process(void)
{
    ngx_rbtree_init(&ngx_http_loyalty_lookups,
                    &ngx_http_loyalty_lookups_sentinel,
                    ngx_http_loyalty_lookup_insert);
}
