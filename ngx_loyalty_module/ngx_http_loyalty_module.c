/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The hub: directives, variables, and the REWRITE-phase handler that reads
 * the customer cookie, asks Redis for the loyalty record without blocking
 * the worker, and resumes the request with $loyalty_* set and the
 * X-Loyalty-* request headers in place for the upstream.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "loyalty_record.h"


#define NGX_HTTP_LOYALTY_VAR_ID       0
#define NGX_HTTP_LOYALTY_VAR_TIER     1
#define NGX_HTTP_LOYALTY_VAR_POINTS   2
#define NGX_HTTP_LOYALTY_VAR_STATUS   3
#define NGX_HTTP_LOYALTY_VAR_COOKIE_ERROR  4

#define NGX_HTTP_LOYALTY_HEADER_PREFIX  "x-loyalty-"


typedef struct {
    ngx_str_t                      key;
    ngx_str_t                      lowcase;
    ngx_uint_t                     hash;
} ngx_http_loyalty_header_t;


static ngx_int_t ngx_http_loyalty_handler(ngx_http_request_t *r);
static ngx_http_loyalty_ctx_t *ngx_http_loyalty_create_ctx(
    ngx_http_request_t *r);
static void ngx_http_loyalty_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err);
static ngx_http_loyalty_status_e ngx_http_loyalty_record(
    ngx_http_loyalty_ctx_t *ctx, ngx_http_loyalty_reply_t *reply);
static void ngx_http_loyalty_resume(ngx_event_t *ev);
static ngx_int_t ngx_http_loyalty_finish(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx);
static ngx_int_t ngx_http_loyalty_set_headers(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx, ngx_http_loyalty_loc_conf_t *llcf);
static ngx_int_t ngx_http_loyalty_push_header(ngx_list_t *headers,
    ngx_http_loyalty_header_t *h, ngx_str_t *value);
static void ngx_http_loyalty_cleanup(void *data);
static ngx_int_t ngx_http_loyalty_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static void *ngx_http_loyalty_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_loyalty_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_loyalty_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_loyalty_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_loyalty_redis_auth(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_loyalty_positive_msec(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_loyalty_cookie_name(ngx_conf_t *cf, void *post,
    void *data);
static ngx_int_t ngx_http_loyalty_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_loyalty_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_loyalty_init_process(ngx_cycle_t *cycle);
static void ngx_http_loyalty_exit_process(ngx_cycle_t *cycle);


static ngx_conf_post_t  ngx_http_loyalty_positive_msec_post =
    { ngx_http_loyalty_positive_msec };

static ngx_conf_post_t  ngx_http_loyalty_cookie_name_post =
    { ngx_http_loyalty_cookie_name };


static ngx_command_t  ngx_http_loyalty_commands[] = {

    { ngx_string("loyalty"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, enable),
      NULL },

    { ngx_string("loyalty_redis"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_http_loyalty_redis,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("loyalty_redis_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE12,
      ngx_http_loyalty_redis_auth,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("loyalty_redis_db"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, redis_conf.db),
      NULL },

    { ngx_string("loyalty_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_http_loyalty_secret,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("loyalty_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, timeout),
      &ngx_http_loyalty_positive_msec_post },

    { ngx_string("loyalty_redis_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, connect_timeout),
      &ngx_http_loyalty_positive_msec_post },

    { ngx_string("loyalty_cookie"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, cookie),
      &ngx_http_loyalty_cookie_name_post },

    { ngx_string("loyalty_key_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, key_prefix),
      NULL },

    { ngx_string("loyalty_upstream_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, upstream_headers),
      NULL },

    { ngx_string("loyalty_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_loyalty_metrics_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("loyalty_response_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, response_headers),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_loyalty_module_ctx = {
    ngx_http_loyalty_add_variables,        /* preconfiguration */
    ngx_http_loyalty_init,                 /* postconfiguration */

    ngx_http_loyalty_create_main_conf,     /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_loyalty_create_loc_conf,      /* create location configuration */
    ngx_http_loyalty_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_loyalty_module = {
    NGX_MODULE_V1,
    &ngx_http_loyalty_module_ctx,          /* module context */
    ngx_http_loyalty_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_loyalty_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_loyalty_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_loyalty_vars[] = {

    { ngx_string("loyalty_id"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_tier"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_TIER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_points"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_POINTS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_status"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_cookie_error"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_COOKIE_ERROR, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* indexed by ngx_http_loyalty_status_e */

static ngx_str_t  ngx_http_loyalty_status_names[] = {
    ngx_null_string,
    ngx_string("ok"),
    ngx_string("anonymous"),
    ngx_string("invalid"),
    ngx_string("unknown"),
    ngx_string("timeout"),
    ngx_string("error")
};


/* request headers for the upstream; hashes are filled in at init */

static ngx_http_loyalty_header_t  ngx_http_loyalty_header_id =
    { ngx_string("X-Loyalty-Id"), ngx_string("x-loyalty-id"), 0 };
static ngx_http_loyalty_header_t  ngx_http_loyalty_header_tier =
    { ngx_string("X-Loyalty-Tier"), ngx_string("x-loyalty-tier"), 0 };
static ngx_http_loyalty_header_t  ngx_http_loyalty_header_points =
    { ngx_string("X-Loyalty-Points"), ngx_string("x-loyalty-points"), 0 };
static ngx_http_loyalty_header_t  ngx_http_loyalty_header_status =
    { ngx_string("X-Loyalty-Status"), ngx_string("x-loyalty-status"), 0 };


static ngx_str_t  ngx_http_loyalty_field_tier = ngx_string("tier");
static ngx_str_t  ngx_http_loyalty_field_points = ngx_string("points");
static ngx_str_t  ngx_http_loyalty_hmget = ngx_string("HMGET");


static ngx_int_t
ngx_http_loyalty_handler(ngx_http_request_t *r)
{
    u_char                       *p;
    ngx_int_t                     rc;
    ngx_str_t                     err, argv[4];
    ngx_http_loyalty_ctx_t       *ctx, *mctx;
    ngx_http_loyalty_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_loyalty_module);

    if (!llcf->enable) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_loyalty_get_ctx(r);

    if (ctx != NULL) {
        /* re-entered: while waiting (a write event ran the phases), or
         * after an internal redirect, which keeps the result */
        return ctx->waiting ? NGX_DONE : NGX_DECLINED;
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

    ctx->status = ngx_http_loyalty_cookie_id(r, llcf, ctx);

    if (ctx->status != NGX_HTTP_LOYALTY_NONE) {
        return ngx_http_loyalty_finish(r, ctx);
    }

    /* HMGET <prefix><id> tier points */

    argv[0] = ngx_http_loyalty_hmget;

    argv[1].len = llcf->key_prefix.len + ctx->id.len;
    argv[1].data = ngx_pnalloc(r->pool, argv[1].len);
    if (argv[1].data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(argv[1].data, llcf->key_prefix.data, llcf->key_prefix.len);
    ngx_memcpy(p, ctx->id.data, ctx->id.len);

    argv[2] = ngx_http_loyalty_field_tier;
    argv[3] = ngx_http_loyalty_field_points;

    ctx->start = ngx_current_msec;

    rc = ngx_http_loyalty_redis_send(llcf->redis, r->pool,
                                     r->connection->log, llcf->timeout,
                                     4, argv, ngx_http_loyalty_reply, ctx,
                                     &ctx->cmd, &err);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc != NGX_AGAIN) {
        /* no connection right now: fail open at once */

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "loyalty lookup \"%V\": redis \"%V\" %V",
                       &argv[1], ngx_http_loyalty_redis_name(llcf->redis),
                       &err);

        ctx->status = (rc == NGX_HTTP_LOYALTY_REDIS_TIMEOUT)
                      ? NGX_HTTP_LOYALTY_TIMEOUT : NGX_HTTP_LOYALTY_ERROR;

        return ngx_http_loyalty_finish(r, ctx);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "loyalty lookup \"%V\": waiting for redis", &argv[1]);

    /*
     * REWRITE phase: only NGX_DONE suspends here; count++ keeps the
     * request alive until the reply resumes the phases
     */

    ctx->waiting = 1;
    r->main->count++;

    ngx_http_loyalty_metric_add(in_flight, 1);

    return NGX_DONE;
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


static ngx_http_loyalty_ctx_t *
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
     *     ctx->cmd = NULL;
     *     ctx->status = NGX_HTTP_LOYALTY_NONE;
     *     ctx->id = { 0, NULL };
     *     ctx->tier = { 0, NULL };
     *     ctx->points = { 0, NULL };
     *     ctx->waiting = 0;
     *     ctx->done = 0;
     */

    ctx->request = r;
    ctx->resume.handler = ngx_http_loyalty_resume;
    ctx->resume.data = ctx;
    ctx->resume.log = r->connection->log;

    cln->handler = ngx_http_loyalty_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_http_loyalty_module);

    return ctx;
}


/*
 * Runs inside hiredis's callback or the command's timer: record the
 * outcome and let the event loop resume the request.
 */

static void
ngx_http_loyalty_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err)
{
    ngx_http_loyalty_ctx_t       *ctx = data;

    ngx_http_request_t           *r;
    ngx_http_loyalty_loc_conf_t  *llcf;

    r = ctx->request;
    ctx->cmd = NULL;

    ngx_http_loyalty_metric_add(in_flight, -1);

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_loyalty_module);

    switch (rc) {

    case NGX_HTTP_LOYALTY_REDIS_REPLY:
        ctx->status = ngx_http_loyalty_record(ctx, reply);
        break;

    case NGX_HTTP_LOYALTY_REDIS_TIMEOUT:
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "loyalty redis \"%V\" %V after %M ms",
                      ngx_http_loyalty_redis_name(llcf->redis), err,
                      ngx_current_msec - ctx->start);
        ctx->status = NGX_HTTP_LOYALTY_TIMEOUT;
        break;

    default: /* NGX_HTTP_LOYALTY_REDIS_FAILED */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "loyalty redis \"%V\" lookup failed: %V",
                      ngx_http_loyalty_redis_name(llcf->redis), err);
        ctx->status = NGX_HTTP_LOYALTY_ERROR;
        break;
    }

    ngx_post_event(&ctx->resume, &ngx_posted_events);
}


/* HMGET tier points: both nil means no such customer */

static ngx_http_loyalty_status_e
ngx_http_loyalty_record(ngx_http_loyalty_ctx_t *ctx,
    ngx_http_loyalty_reply_t *reply)
{
    u_char                    *p;
    uint64_t                   points;
    ngx_log_t                 *log;
    ngx_http_request_t        *r;
    ngx_http_loyalty_reply_t  *tier, *pts;

    r = ctx->request;
    log = r->connection->log;

    if (reply->type == NGX_HTTP_LOYALTY_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "loyalty redis replied with an error: \"%*s\"",
                      ngx_min(reply->str.len, 128), reply->str.data);
        ngx_http_loyalty_metric_add(errors[NGX_HTTP_LOYALTY_ERR_REPLY], 1);
        return NGX_HTTP_LOYALTY_ERROR;
    }

    if (reply->type != NGX_HTTP_LOYALTY_REPLY_ARRAY || reply->nelts != 2) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "loyalty redis sent an unexpected reply of type %ui",
                      reply->type);
        ngx_http_loyalty_metric_add(errors[NGX_HTTP_LOYALTY_ERR_PROTOCOL], 1);
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
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "loyalty record rejected: \"tier\" is missing or not "
                      "1-%d characters of [A-Za-z0-9_-]",
                      LOYALTY_TIER_MAX_LEN);
        ngx_http_loyalty_metric_add(errors[NGX_HTTP_LOYALTY_ERR_RECORD], 1);
        return NGX_HTTP_LOYALTY_ERROR;
    }

    if (pts->type != NGX_HTTP_LOYALTY_REPLY_STRING
        || !loyalty_points_parse(pts->str.data, pts->str.len, &points))
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "loyalty record rejected: \"points\" is missing or not "
                      "a non-negative integer of at most %d digits",
                      LOYALTY_POINTS_MAX_LEN);
        ngx_http_loyalty_metric_add(errors[NGX_HTTP_LOYALTY_ERR_RECORD], 1);
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

    return NGX_HTTP_LOYALTY_OK;
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

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_loyalty_module);

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "loyalty lookup \"%V%V\": %V, tier \"%V\", %M ms",
                   &llcf->key_prefix, &ctx->id,
                   &ngx_http_loyalty_status_names[ctx->status], &ctx->tier,
                   ctx->start ? ngx_current_msec - ctx->start : 0);

    if (ngx_http_loyalty_set_headers(r, ctx, llcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_DECLINED;
}


/*
 * Client-sent X-Loyalty-* headers are removed whatever the outcome, so a
 * client can never claim a tier; ours are added when enabled.  nginx
 * keeps pointers into r->headers_in.headers (host, cookies, ...), so the
 * list is rebuilt rather than shifted; a subrequest shares its parent's
 * list parts, so it always gets a list of its own.
 */

static ngx_int_t
ngx_http_loyalty_set_headers(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx, ngx_http_loyalty_loc_conf_t *llcf)
{
    ngx_str_t         *status;
    ngx_uint_t         i, n, spoofed;
    ngx_list_t         old;
    ngx_list_part_t   *part;
    ngx_table_elt_t   *h, *nh;

    spoofed = 0;
    n = 0;

    part = &r->headers_in.headers.part;
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

        n++;

        if (h[i].key.len >= sizeof(NGX_HTTP_LOYALTY_HEADER_PREFIX) - 1
            && ngx_strncasecmp(h[i].key.data,
                               (u_char *) NGX_HTTP_LOYALTY_HEADER_PREFIX,
                               sizeof(NGX_HTTP_LOYALTY_HEADER_PREFIX) - 1)
               == 0)
        {
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

        part = &old.part;
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

            if (h[i].key.len >= sizeof(NGX_HTTP_LOYALTY_HEADER_PREFIX) - 1
                && ngx_strncasecmp(h[i].key.data,
                                   (u_char *) NGX_HTTP_LOYALTY_HEADER_PREFIX,
                                   sizeof(NGX_HTTP_LOYALTY_HEADER_PREFIX) - 1)
                   == 0)
            {
                continue;
            }

            nh = ngx_list_push(&r->headers_in.headers);
            if (nh == NULL) {
                return NGX_ERROR;
            }

            *nh = h[i];
        }
    }

    if (!llcf->upstream_headers) {
        return NGX_OK;
    }

    status = &ngx_http_loyalty_status_names[ctx->status];

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

    if (ctx->status != NGX_HTTP_LOYALTY_OK) {
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


static void
ngx_http_loyalty_cleanup(void *data)
{
    ngx_http_loyalty_ctx_t  *ctx = data;

    /* the request ends (or the client left) while Redis has not answered */

    if (ctx->cmd != NULL) {
        ngx_http_loyalty_redis_cancel(ctx->cmd);
        ctx->cmd = NULL;
        ngx_http_loyalty_metric_add(in_flight, -1);
    }

    if (ctx->resume.posted) {
        ngx_delete_posted_event(&ctx->resume);
    }
}


static ngx_int_t
ngx_http_loyalty_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t               *s;
    ngx_http_loyalty_ctx_t  *ctx;

    ctx = ngx_http_loyalty_get_ctx(r);

    if (ctx == NULL && r != r->main) {
        ctx = ngx_http_loyalty_get_ctx(r->main);
    }

    if (ctx == NULL || !ctx->done) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_HTTP_LOYALTY_VAR_ID:
        s = &ctx->id;
        break;

    case NGX_HTTP_LOYALTY_VAR_TIER:
        s = &ctx->tier;
        break;

    case NGX_HTTP_LOYALTY_VAR_POINTS:
        s = &ctx->points;
        break;

    case NGX_HTTP_LOYALTY_VAR_COOKIE_ERROR:
        s = &ctx->cookie_error;
        break;

    default: /* NGX_HTTP_LOYALTY_VAR_STATUS */
        s = &ngx_http_loyalty_status_names[ctx->status];
        break;
    }

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


static void *
ngx_http_loyalty_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_loyalty_main_conf_t  *lmcf;

    lmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_loyalty_main_conf_t));
    if (lmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&lmcf->backends, cf->pool, 2,
                       sizeof(ngx_http_loyalty_redis_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return lmcf;
}


static void *
ngx_http_loyalty_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_loyalty_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_loyalty_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->redis = NULL;
     *     conf->redis_conf.address = { 0, NULL };
     *     conf->redis_conf.user = { 0, NULL };
     *     conf->redis_conf.password = { 0, NULL };
     *     conf->cookie = { 0, NULL };
     *     conf->key_prefix = { 0, NULL };
     */

    conf->enable = NGX_CONF_UNSET;
    conf->redis_conf.db = NGX_CONF_UNSET;
    conf->secret = NGX_CONF_UNSET_PTR;
    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->connect_timeout = NGX_CONF_UNSET_MSEC;
    conf->upstream_headers = NGX_CONF_UNSET;
    conf->response_headers = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_loyalty_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_loyalty_loc_conf_t *prev = parent;
    ngx_http_loyalty_loc_conf_t *conf = child;

    ngx_http_loyalty_main_conf_t  *lmcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);

    if (conf->redis_conf.address.data == NULL) {
        conf->redis_conf.address = prev->redis_conf.address;
    }

    if (conf->redis_conf.password.data == NULL) {
        conf->redis_conf.user = prev->redis_conf.user;
        conf->redis_conf.password = prev->redis_conf.password;
    }

    ngx_conf_merge_value(conf->redis_conf.db, prev->redis_conf.db, 0);
    ngx_conf_merge_ptr_value(conf->secret, prev->secret, NULL);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 100);
    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              100);
    ngx_conf_merge_str_value(conf->cookie, prev->cookie, "loyalty_id");
    ngx_conf_merge_str_value(conf->key_prefix, prev->key_prefix,
                             "loyalty:customer:");
    ngx_conf_merge_value(conf->upstream_headers, prev->upstream_headers, 1);
    ngx_conf_merge_value(conf->response_headers, prev->response_headers, 0);

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    if (conf->redis_conf.address.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"loyalty\" is on, but no \"loyalty_redis\" "
                           "address is set for this server");
        return NGX_CONF_ERROR;
    }

    conf->redis = ngx_http_loyalty_redis_add(cf, &conf->redis_conf);
    if (conf->redis == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_http_loyalty_redis_use(conf->redis, conf->connect_timeout);

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_loyalty_module);

    if (conf->secret == NULL && !lmcf->warned_unsigned) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"loyalty\" is on without \"loyalty_secret\": "
                           "customer ids in cookies are trusted as sent, "
                           "anyone can claim another shopper's id");
        lmcf->warned_unsigned = 1;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_loyalty_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_loyalty_loc_conf_t *llcf = conf;

    ngx_str_t  *value;

    if (llcf->redis_conf.address.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* checked here to point at this line; connected to at merge time,
     * when the credentials of the same level are known */

    if (ngx_http_loyalty_redis_check(cf, &value[1]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    llcf->redis_conf.address = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_loyalty_redis_auth(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_loyalty_loc_conf_t *llcf = conf;

    ngx_str_t  *value;

    if (llcf->redis_conf.password.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 3) {
        llcf->redis_conf.user = value[1];
        llcf->redis_conf.password = value[2];

        if (value[1].len == 0) {
            return "has an empty user name";
        }

    } else {
        llcf->redis_conf.password = value[1];
    }

    if (llcf->redis_conf.password.len == 0) {
        return "has an empty password";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_loyalty_positive_msec(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *ms = data;

    if (*ms == 0) {
        return "must be greater than zero";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_loyalty_cookie_name(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *name = data;

    u_char  *p, *last;

    if (name->len == 0) {
        return "must not be empty";
    }

    last = name->data + name->len;

    /* a cookie name is an RFC 6265 token */

    for (p = name->data; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f || ngx_strchr("()<>@,;:\\\"/[]?={}", *p))
        {
            return "is not a valid cookie name";
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_loyalty_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_loyalty_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_loyalty_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_loyalty_header_t  *hdrs[4];
    ngx_http_core_main_conf_t  *cmcf;
    ngx_uint_t                  i;

    hdrs[0] = &ngx_http_loyalty_header_id;
    hdrs[1] = &ngx_http_loyalty_header_tier;
    hdrs[2] = &ngx_http_loyalty_header_points;
    hdrs[3] = &ngx_http_loyalty_header_status;

    for (i = 0; i < 4; i++) {
        hdrs[i]->hash = ngx_hash_key(hdrs[i]->lowcase.data,
                                     hdrs[i]->lowcase.len);
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* REWRITE, so that $loyalty_* exist for the location's if/set/return;
     * a module's handler runs before the rewrite module's in the phase */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_loyalty_handler;

    if (ngx_http_loyalty_metrics_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_loyalty_filter_init(cf);
}


static ngx_int_t
ngx_http_loyalty_init_process(ngx_cycle_t *cycle)
{
    ngx_http_loyalty_main_conf_t  *lmcf;

    lmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_loyalty_module);

    if (lmcf == NULL) {
        return NGX_OK;
    }

    return ngx_http_loyalty_redis_init_process(cycle, lmcf);
}


static void
ngx_http_loyalty_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_loyalty_main_conf_t  *lmcf;

    lmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_loyalty_module);

    if (lmcf == NULL) {
        return;
    }

    ngx_http_loyalty_redis_exit_process(cycle, lmcf);
}
