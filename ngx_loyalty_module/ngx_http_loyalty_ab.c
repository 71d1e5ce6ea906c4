/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * A/B tests.  loyalty_ab assigns each request one variant per test from a
 * hash of the test's name and a key (lib/loyalty_ab.c), so the variant is
 * the same in every worker, after reloads and on every nginx node.
 * Exposures are counted in shared memory and each worker flushes the sums
 * to Redis once a second (HINCRBY loyalty:ab:<name> <variant>:exposures),
 * and once more when it shuts down gracefully.  loyalty_ab_convert
 * records conversions (one script call per test, idempotent per order);
 * loyalty_ab_report reads the hashes back and prints the statistics.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_ctx.h"
#include "ngx_http_loyalty_redis.h"
#include "ngx_http_loyalty_log.h"
#include "loyalty_ab.h"
#include "loyalty_fragment.h"


#define NGX_HTTP_LOYALTY_AB_SLOTS       1024
#define NGX_HTTP_LOYALTY_AB_ZONE_SIZE   (256 * 1024)
#define NGX_HTTP_LOYALTY_AB_FLUSH       1000     /* ms between flushes */
#define NGX_HTTP_LOYALTY_AB_TIMEOUT     1000     /* ms, counting and report */
#define NGX_HTTP_LOYALTY_AB_PREFIX      "loyalty:ab:"
#define NGX_HTTP_LOYALTY_AB_ORDER_TTL   "7776000"  /* 90 days, in seconds */
#define NGX_HTTP_LOYALTY_AB_POOL_SIZE   256      /* a command and its reply */
#define NGX_HTTP_LOYALTY_AB_ERROR_MAX   256      /* bytes of a report error */


struct ngx_http_loyalty_ab_s {
    loyalty_ab_test_t              spec;
    ngx_str_t                      name;
    ngx_str_t                      key_text;  /* as written; empty: the id */
    ngx_http_complex_value_t      *key;       /* NULL: the customer id */
    ngx_str_t                      redis_key; /* loyalty:ab:<name> */
    ngx_str_t                      variants[LOYALTY_AB_VARIANTS_MAX];
    ngx_atomic_t                  *exposures[LOYALTY_AB_VARIANTS_MAX];
    ngx_http_loyalty_redis_t      *redis;     /* where the counts go */
};


/* one counter of the shared zone: found again by name after a reload */
typedef struct {
    u_char                         test[LOYALTY_AB_NAME_MAX + 1];
    u_char                         variant[LOYALTY_AB_VARIANT_MAX + 1];
    ngx_atomic_t                   exposures;  /* not yet flushed */
} ngx_http_loyalty_ab_slot_t;


typedef struct {
    ngx_uint_t                     nslots;
    ngx_http_loyalty_ab_slot_t     slots[NGX_HTTP_LOYALTY_AB_SLOTS];
} ngx_http_loyalty_ab_shm_t;


/*
 * An exposure flush (HINCRBY) or a conversion (EVAL) on its way.  It
 * lives in a pool of its own, which also holds the reply's elements
 * (the Redis layer views a reply in the pool given with the command):
 * the reply handler destroys it, or exit_process while the command still
 * waits, so no reply stays in ngx_cycle->pool for the worker's life.
 * cmd is the handle that a cluster redirection updates: it lives as
 * long as the command.
 */
typedef struct {
    ngx_pool_t                    *pool;      /* holds this struct */
    ngx_queue_t                    queue;     /* in ngx_http_loyalty_ab_sent */
    ngx_http_loyalty_redis_cmd_t  *cmd;
    ngx_http_loyalty_ab_t         *test;      /* a conversion's */
    ngx_http_loyalty_ab_slot_t    *slot;      /* a flush's counter */
    ngx_atomic_uint_t              n;         /* and the counts it sent */
} ngx_http_loyalty_ab_cmd_t;


typedef struct ngx_http_loyalty_ab_report_ctx_s
    ngx_http_loyalty_ab_report_ctx_t;


typedef struct {
    ngx_http_loyalty_ab_report_ctx_t  *rctx;
    ngx_uint_t                         index;
    ngx_http_loyalty_redis_cmd_t      *cmd;
} ngx_http_loyalty_ab_read_t;


struct ngx_http_loyalty_ab_report_ctx_s {
    ngx_http_request_t            *request;
    loyalty_ab_report_t           *reports;
    ngx_http_loyalty_ab_read_t    *reads;
    ngx_uint_t                     n;
    ngx_uint_t                     pending;
    ngx_str_t                      error;
    ngx_event_t                    done;
    unsigned                       text:1;
};


static ngx_int_t ngx_http_loyalty_ab_key(ngx_http_request_t *r,
    ngx_http_loyalty_ab_t *t, ngx_http_loyalty_ctx_t *ctx, ngx_str_t *key);
static ngx_int_t ngx_http_loyalty_ab_convert(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx);
static void ngx_http_loyalty_ab_convert_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err);
static ngx_int_t ngx_http_loyalty_ab_convert_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_loyalty_ab_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, u_char *data, size_t len);

static ngx_int_t ngx_http_loyalty_ab_report_handler(ngx_http_request_t *r);
static void ngx_http_loyalty_ab_report_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err);
static void ngx_http_loyalty_ab_report_error(
    ngx_http_loyalty_ab_report_ctx_t *rctx, ngx_str_t *err);
static void ngx_http_loyalty_ab_report_done(ngx_event_t *ev);
static u_char *ngx_http_loyalty_ab_report_error_json(ngx_http_request_t *r,
    ngx_str_t *error, size_t *len);
static void ngx_http_loyalty_ab_report_cleanup(void *data);

static void ngx_http_loyalty_ab_flush_handler(ngx_event_t *ev);
static void ngx_http_loyalty_ab_flush(ngx_log_t *log);
static void ngx_http_loyalty_ab_flush_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err);
static ngx_atomic_uint_t ngx_http_loyalty_ab_take(ngx_atomic_t *counter);
static ngx_http_loyalty_ab_cmd_t *ngx_http_loyalty_ab_cmd_create(void);
static ngx_int_t ngx_http_loyalty_ab_cmd_send(ngx_http_loyalty_ab_cmd_t *ac,
    ngx_http_loyalty_redis_t *redis, ngx_uint_t argc, ngx_str_t *argv,
    ngx_http_loyalty_redis_handler_pt handler, ngx_str_t *err);
static void ngx_http_loyalty_ab_cmd_done(ngx_http_loyalty_ab_cmd_t *ac);
static ngx_http_loyalty_ab_t *ngx_http_loyalty_ab_find(
    ngx_http_loyalty_main_conf_t *lmcf, u_char *name, size_t len);

static ngx_int_t ngx_http_loyalty_ab_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


static ngx_http_loyalty_ab_shm_t  *ngx_http_loyalty_ab_shm;
static ngx_event_t                 ngx_http_loyalty_ab_flush_event;
static ngx_uint_t                  ngx_http_loyalty_ab_final;
static ngx_queue_t                 ngx_http_loyalty_ab_sent;

static ngx_str_t  ngx_http_loyalty_ab_hincrby = ngx_string("HINCRBY");
static ngx_str_t  ngx_http_loyalty_ab_hgetall = ngx_string("HGETALL");
static ngx_str_t  ngx_http_loyalty_ab_eval = ngx_string("EVAL");
static ngx_str_t  ngx_http_loyalty_ab_off = ngx_string("off");
static ngx_str_t  ngx_http_loyalty_ab_json_type =
    ngx_string("application/json");
static ngx_str_t  ngx_http_loyalty_ab_text_type =
    ngx_string("text/plain");


/*
 * KEYS[1] the test's hash, KEYS[2] (optional) the order's marker, in the
 * same hash slot ({loyalty:ab:<name>}:order:<id>); ARGV: variant, value
 * ("" for none), marker ttl.  Returns 1 when counted, 0 for a repeat.
 */

static ngx_str_t  ngx_http_loyalty_ab_script = ngx_string(
    "if #KEYS > 1 and not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', "
    "ARGV[3]) then return 0 end "
    "redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':conversions', 1) "
    "if ARGV[2] ~= '' then "
    "redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1] .. ':revenue', ARGV[2]) "
    "end "
    "return 1");


/*
 * Called by the REWRITE-phase handler once per main request: assigns the
 * variants of the location's tests, counts the exposures, and records a
 * conversion where loyalty_ab_convert is set.
 */

ngx_int_t
ngx_http_loyalty_ab_request(ngx_http_request_t *r,
    ngx_http_loyalty_loc_conf_t *llcf, ngx_http_loyalty_ctx_t *ctx)
{
    u_char                     *p;
    size_t                      len;
    ngx_int_t                   idx;
    ngx_str_t                   key;
    ngx_uint_t                  i;
    ngx_http_loyalty_ab_t     **tp, *t;
    ngx_http_loyalty_variant_t  *v;

    if (llcf->ab != NULL && llcf->ab->nelts) {

        ctx->variants = ngx_palloc(r->pool,
                                   llcf->ab->nelts
                                   * sizeof(ngx_http_loyalty_variant_t));
        if (ctx->variants == NULL) {
            return NGX_ERROR;
        }

        tp = llcf->ab->elts;
        len = 0;

        for (i = 0; i < llcf->ab->nelts; i++) {
            t = tp[i];

            if (ngx_http_loyalty_ab_key(r, t, ctx, &key) != NGX_OK) {
                return NGX_ERROR;
            }

            idx = loyalty_ab_assign(&t->spec, key.data, key.len);

            ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "loyalty ab \"%V\": key \"%V\", variant %i",
                           &t->name, &key, idx);

            if (idx < 0) {
                continue;
            }

            v = &ctx->variants[ctx->nvariants++];
            v->test = t->name;
            v->variant = t->variants[idx];

            if (t->exposures[idx] != NULL) {
                (void) ngx_atomic_fetch_add(t->exposures[idx], 1);
            }

            if (v->variant.len == ngx_http_loyalty_ab_off.len
                && ngx_strncmp(v->variant.data, "off", 3) == 0)
            {
                ctx->holdout = 1;
            }

            len += v->test.len + 1 + v->variant.len + 1;
        }

        if (ctx->nvariants) {
            p = ngx_pnalloc(r->pool, len);
            if (p == NULL) {
                return NGX_ERROR;
            }

            ctx->variants_text.data = p;

            for (i = 0; i < ctx->nvariants; i++) {
                if (i) {
                    *p++ = ',';
                }

                p = ngx_cpymem(p, ctx->variants[i].test.data,
                               ctx->variants[i].test.len);
                *p++ = '=';
                p = ngx_cpymem(p, ctx->variants[i].variant.data,
                               ctx->variants[i].variant.len);
            }

            ctx->variants_text.len = p - ctx->variants_text.data;
        }
    }

    if (llcf->ab_convert) {
        return ngx_http_loyalty_ab_convert(r, ctx);
    }

    return NGX_OK;
}


/* the bucketing key: key= evaluated, or the verified customer id */

static ngx_int_t
ngx_http_loyalty_ab_key(ngx_http_request_t *r, ngx_http_loyalty_ab_t *t,
    ngx_http_loyalty_ctx_t *ctx, ngx_str_t *key)
{
    if (t->key == NULL) {
        *key = ctx->id;
        return NGX_OK;
    }

    return ngx_http_complex_value(r, t->key, key);
}


/*
 * loyalty_ab_convert: one conversion for each test of the configuration
 * the requester is assigned to, with ?value= summed as revenue and
 * ?order= making it count once.  The page is never held up: the script
 * calls go out and their replies are only logged.
 */

static ngx_int_t
ngx_http_loyalty_ab_convert(ngx_http_request_t *r, ngx_http_loyalty_ctx_t *ctx)
{
    u_char                         *p, *last;
    size_t                          len;
    ngx_int_t                       idx, rc;
    ngx_str_t                       order, value, key, err, argv[8];
    ngx_uint_t                      i, argc;
    ngx_http_loyalty_ab_t         **tp, *t;
    ngx_http_loyalty_ab_cmd_t      *ac;
    ngx_http_loyalty_main_conf_t   *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_loyalty_module);

    if (ngx_http_arg(r, (u_char *) "order", 5, &order) != NGX_OK) {
        ngx_str_set(&order, "");
    }

    if (ngx_http_arg(r, (u_char *) "value", 5, &value) != NGX_OK) {
        ngx_str_set(&value, "");
    }

    len = sizeof("{\"order\":\"\",\"value\":\"\",\"converted\":{}}") - 1
          + order.len + value.len;

    if (order.len
        && !loyalty_ab_order_valid((char *) order.data, order.len))
    {
        ngx_http_loyalty_log_error(NGX_LOG_WARN, r->connection->log, 0,
                                   "invalid order",
                                   "loyalty ab conversion ignored: invalid "
                                   "\"order\" argument (1-%d of "
                                   "[A-Za-z0-9_.:-])", LOYALTY_AB_ORDER_MAX);
        ngx_str_set(&ctx->converted,
                    "{\"converted\":{},\"error\":\"invalid order\"}");
        return NGX_OK;
    }

    if (value.len
        && !loyalty_ab_value_valid((char *) value.data, value.len))
    {
        ngx_http_loyalty_log_error(NGX_LOG_WARN, r->connection->log, 0,
                                   "invalid value",
                                   "loyalty ab conversion without revenue: "
                                   "invalid \"value\" argument (digits, at "
                                   "most 2 decimals)");
        ngx_str_set(&value, "");
    }

    tp = lmcf->ab_tests.elts;

    for (i = 0; i < lmcf->ab_tests.nelts; i++) {
        len += sizeof(",\"\":\"\"") - 1 + tp[i]->name.len
               + LOYALTY_AB_VARIANT_MAX;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->converted.data = p;
    last = p + len;

    p = ngx_cpymem(p, "{", 1);

    if (order.len) {
        p = ngx_slprintf(p, last, "\"order\":\"%V\",", &order);
    }

    if (value.len) {
        p = ngx_slprintf(p, last, "\"value\":\"%V\",", &value);
    }

    p = ngx_cpymem(p, "\"converted\":{", sizeof("\"converted\":{") - 1);

    for (i = 0; i < lmcf->ab_tests.nelts; i++) {
        t = tp[i];

        if (ngx_http_loyalty_ab_key(r, t, ctx, &key) != NGX_OK) {
            return NGX_ERROR;
        }

        idx = loyalty_ab_assign(&t->spec, key.data, key.len);

        if (idx < 0) {
            continue;
        }

        argv[0] = ngx_http_loyalty_ab_eval;
        argv[1] = ngx_http_loyalty_ab_script;
        argv[3] = t->redis_key;

        if (order.len) {
            ngx_str_set(&argv[2], "2");

            argv[4].len = sizeof("{}:order:") - 1 + t->redis_key.len
                          + order.len;
            argv[4].data = ngx_pnalloc(r->pool, argv[4].len);
            if (argv[4].data == NULL) {
                return NGX_ERROR;
            }

            ngx_sprintf(argv[4].data, "{%V}:order:%V", &t->redis_key, &order);
            argc = 5;

        } else {
            ngx_str_set(&argv[2], "1");
            argc = 4;
        }

        argv[argc++] = t->variants[idx];
        argv[argc++] = value;
        ngx_str_set(&argv[argc], NGX_HTTP_LOYALTY_AB_ORDER_TTL);
        argc++;

        /* the page does not wait for the reply: the command outlives the
         * request, so it has a pool of its own */

        ac = ngx_http_loyalty_ab_cmd_create();
        if (ac == NULL) {
            return NGX_ERROR;
        }

        ac->test = t;

        rc = ngx_http_loyalty_ab_cmd_send(ac, t->redis, argc, argv,
                                          ngx_http_loyalty_ab_convert_reply,
                                          &err);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc != NGX_AGAIN) {
            ngx_http_loyalty_log_error(NGX_LOG_ERR, r->connection->log, 0,
                                       "conversion lost",
                                       "loyalty ab \"%V\": conversion of "
                                       "variant \"%V\" lost: redis \"%V\" "
                                       "%V", &t->name, &t->variants[idx],
                                       ngx_http_loyalty_redis_name(t->redis),
                                       &err);
            continue;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "loyalty ab \"%V\": conversion of \"%V\", order "
                       "\"%V\"", &t->name, &t->variants[idx], &order);

        if (p[-1] != '{') {
            *p++ = ',';
        }

        p = ngx_slprintf(p, last, "\"%V\":\"%V\"", &t->name,
                         &t->variants[idx]);
    }

    p = ngx_cpymem(p, "}}", 2);

    ctx->converted.len = p - ctx->converted.data;

    return NGX_OK;
}


static void
ngx_http_loyalty_ab_convert_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err)
{
    ngx_http_loyalty_ab_cmd_t *ac = data;

    ngx_http_loyalty_ab_t  *t;

    t = ac->test;

    if (rc != NGX_HTTP_LOYALTY_REDIS_REPLY) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "loyalty ab \"%V\": a conversion may be lost: %V",
                      &t->name, err);

    } else if (reply->type != NGX_HTTP_LOYALTY_REPLY_INTEGER) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "loyalty ab \"%V\": conversion not counted: \"%*s\"",
                      &t->name, ngx_min(reply->str.len, 128), reply->str.data);

    } else if (reply->integer == 0) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "loyalty ab \"%V\": order counted already, conversion "
                      "ignored", &t->name);
    }

    ngx_http_loyalty_ab_cmd_done(ac);
}


/*
 * The content of a loyalty_ab_convert location that has no other: what
 * was recorded, as JSON.
 */

static ngx_int_t
ngx_http_loyalty_ab_convert_handler(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_str_t                none = ngx_string("{\"converted\":{}}");
    ngx_str_t               *body;
    ngx_http_loyalty_ctx_t  *ctx;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx = ngx_http_loyalty_get_ctx(r);

    body = (ctx != NULL && ctx->converted.len) ? &ctx->converted : &none;

    return ngx_http_loyalty_ab_send(r, NGX_HTTP_OK,
                                         &ngx_http_loyalty_ab_json_type,
                                         body->data, body->len);
}


static ngx_int_t
ngx_http_loyalty_ab_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len)
{
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    r->headers_out.status = status;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_length_n = len + 1;

    /* counts change all the time: never cached */

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, data, len);
    *b->last++ = '\n';
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * loyalty_ab_report: the counts this worker has not flushed yet go first,
 * then one HGETALL per test on the same connection, so the report
 * includes every exposure counted before it was asked for.
 */

static ngx_int_t
ngx_http_loyalty_ab_report_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_str_t                          format, argv[2], err;
    ngx_uint_t                         i;
    ngx_pool_cleanup_t                *cln;
    ngx_http_loyalty_ab_t            **tp;
    ngx_http_loyalty_ab_read_t        *rd;
    ngx_http_loyalty_main_conf_t      *lmcf;
    ngx_http_loyalty_ab_report_ctx_t  *rctx;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_loyalty_module);

    cln = ngx_pool_cleanup_add(r->pool,
                               sizeof(ngx_http_loyalty_ab_report_ctx_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rctx = cln->data;
    ngx_memzero(rctx, sizeof(ngx_http_loyalty_ab_report_ctx_t));

    rctx->request = r;
    rctx->n = lmcf->ab_tests.nelts;
    rctx->done.handler = ngx_http_loyalty_ab_report_done;
    rctx->done.data = rctx;
    rctx->done.log = r->connection->log;

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK
        && format.len == 4
        && ngx_strncmp(format.data, "text", 4) == 0)
    {
        rctx->text = 1;
    }

    rctx->reports = ngx_pcalloc(r->pool,
                                (rctx->n + 1) * sizeof(loyalty_ab_report_t));
    rctx->reads = ngx_pcalloc(r->pool,
                              (rctx->n + 1)
                              * sizeof(ngx_http_loyalty_ab_read_t));

    if (rctx->reports == NULL || rctx->reads == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_loyalty_ab_report_cleanup;

    ngx_http_loyalty_ab_flush(r->connection->log);

    tp = lmcf->ab_tests.elts;

    for (i = 0; i < rctx->n; i++) {
        loyalty_ab_report_init(&rctx->reports[i], &tp[i]->spec);

        rd = &rctx->reads[i];
        rd->rctx = rctx;
        rd->index = i;

        argv[0] = ngx_http_loyalty_ab_hgetall;
        argv[1] = tp[i]->redis_key;

        rc = ngx_http_loyalty_redis_send(tp[i]->redis, r->pool,
                                         r->connection->log,
                                         NGX_HTTP_LOYALTY_AB_TIMEOUT,
                                         2, argv,
                                         ngx_http_loyalty_ab_report_reply,
                                         rd, &rd->cmd, &err);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc != NGX_AGAIN) {
            rd->cmd = NULL;
            ngx_http_loyalty_ab_report_error(rctx, &err);
            break;
        }

        rctx->pending++;
    }

    if (rctx->pending == 0) {
        /* nothing was sent: answer from the event loop all the same */
        ngx_post_event(&rctx->done, &ngx_posted_events);
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_loyalty_ab_report_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err)
{
    ngx_http_loyalty_ab_read_t *rd = data;

    ngx_str_t                          err_text;
    ngx_uint_t                         i;
    loyalty_ab_report_t               *rep;
    ngx_http_loyalty_reply_t          *f, *v;
    ngx_http_loyalty_ab_report_ctx_t  *rctx;

    rctx = rd->rctx;
    rd->cmd = NULL;
    rctx->pending--;

    if (rc != NGX_HTTP_LOYALTY_REDIS_REPLY) {
        ngx_http_loyalty_ab_report_error(rctx, err);

    } else if (reply->type == NGX_HTTP_LOYALTY_REPLY_ERROR) {
        ngx_http_loyalty_ab_report_error(rctx, &reply->str);

    } else if (reply->type != NGX_HTTP_LOYALTY_REPLY_ARRAY) {
        ngx_str_set(&err_text, "unexpected reply to HGETALL");
        ngx_http_loyalty_ab_report_error(rctx, &err_text);

    } else {
        rep = &rctx->reports[rd->index];

        for (i = 0; i + 1 < reply->nelts; i += 2) {
            f = &reply->elts[i];
            v = &reply->elts[i + 1];

            if (f->type != NGX_HTTP_LOYALTY_REPLY_STRING
                || v->type != NGX_HTTP_LOYALTY_REPLY_STRING)
            {
                continue;
            }

            (void) loyalty_ab_report_field(rep, (char *) f->str.data,
                                           f->str.len, (char *) v->str.data,
                                           v->str.len);
        }
    }

    if (rctx->pending == 0) {
        ngx_post_event(&rctx->done, &ngx_posted_events);
    }
}


/*
 * The first error is kept, copied into the request's pool: an error
 * text may live in the Redis connection's state, which is gone when the
 * report is written from a posted event.
 */

static void
ngx_http_loyalty_ab_report_error(ngx_http_loyalty_ab_report_ctx_t *rctx,
    ngx_str_t *err)
{
    size_t   len;
    u_char  *p;

    if (rctx->error.len) {
        return;
    }

    len = ngx_min(err->len, NGX_HTTP_LOYALTY_AB_ERROR_MAX);

    if (len == 0) {
        ngx_str_set(&rctx->error, "failed");
        return;
    }

    p = ngx_pnalloc(rctx->request->pool, len);
    if (p == NULL) {
        ngx_str_set(&rctx->error, "out of memory");
        return;
    }

    ngx_memcpy(p, err->data, len);

    rctx->error.data = p;
    rctx->error.len = len;
}


static void
ngx_http_loyalty_ab_report_done(ngx_event_t *ev)
{
    char                              *text;
    size_t                             len;
    ngx_int_t                          rc;
    ngx_uint_t                         i;
    ngx_connection_t                  *c;
    ngx_http_request_t                *r;
    ngx_http_loyalty_ab_report_ctx_t  *rctx;

    rctx = ev->data;
    r = rctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    /* the count taken by the handler is given back by the finalization
     * below (the content phase finalized the request with NGX_DONE) */

    if (rctx->error.len) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "loyalty ab report: redis %V", &rctx->error);

        text = (char *) ngx_http_loyalty_ab_report_error_json(r,
                                                              &rctx->error,
                                                              &len);
        if (text == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            goto done;
        }

        rc = ngx_http_loyalty_ab_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           &ngx_http_loyalty_ab_json_type,
                                           (u_char *) text, len);
        ngx_http_finalize_request(r, rc);
        goto done;
    }

    for (i = 0; i < rctx->n; i++) {
        loyalty_ab_stats(&rctx->reports[i]);
    }

    if (rctx->text) {
        text = loyalty_ab_report_text(rctx->reports, rctx->n, &len);

    } else {
        text = loyalty_ab_report_json(rctx->reports, rctx->n, &len);
    }

    if (text == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        goto done;
    }

    /* the text ends with a newline of its own */

    if (len && text[len - 1] == '\n') {
        len--;
    }

    rc = ngx_http_loyalty_ab_send(r, NGX_HTTP_OK,
                                       rctx->text
                                       ? &ngx_http_loyalty_ab_text_type
                                       : &ngx_http_loyalty_ab_json_type,
                                       (u_char *) text, len);
    free(text);

    ngx_http_finalize_request(r, rc);

done:

    ngx_http_run_posted_requests(c);
}


/*
 * {"error":"redis: <error>"} in r->pool, escaped as the module's other
 * JSON is: control characters, quotes and backslashes by jansson, every
 * non-ASCII character as \uXXXX, and "<", ">", "&" as \u003c, \u003e,
 * \u0026.  Bytes that are not UTF-8 become "?".
 */

static u_char *
ngx_http_loyalty_ab_report_error_json(ngx_http_request_t *r,
    ngx_str_t *error, size_t *len)
{
    char    *safe;
    size_t   size, n, i;
    u_char  *msg, *out;
    json_t  *root, *str;

    n = sizeof("redis: ") - 1 + error->len;

    msg = ngx_pnalloc(r->pool, n);
    if (msg == NULL) {
        return NULL;
    }

    ngx_memcpy(ngx_cpymem(msg, "redis: ", sizeof("redis: ") - 1),
               error->data, error->len);

    str = json_stringn((char *) msg, n);

    if (str == NULL) {
        for (i = 0; i < n; i++) {
            if (msg[i] >= 0x80) {
                msg[i] = '?';
            }
        }

        str = json_stringn((char *) msg, n);
    }

    root = json_object();

    if (str == NULL || root == NULL
        || json_object_set_new(root, "error", str) != 0)
    {
        /* json_object_set_new() took str even when it failed */
        if (root == NULL && str != NULL) {
            json_decref(str);
        }

        if (root != NULL) {
            json_decref(root);
        }

        return NULL;
    }

    size = json_dumpb(root, NULL, 0, JSON_COMPACT|JSON_ENSURE_ASCII);

    out = (size == 0) ? NULL : ngx_pnalloc(r->pool, size);

    if (out == NULL
        || json_dumpb(root, (char *) out, size,
                      JSON_COMPACT|JSON_ENSURE_ASCII) != size)
    {
        json_decref(root);
        return NULL;
    }

    json_decref(root);

    safe = loyalty_json_script_safe((char *) out, size, &n);
    if (safe == NULL) {
        return NULL;
    }

    out = ngx_pnalloc(r->pool, n);

    if (out != NULL) {
        ngx_memcpy(out, safe, n);
        *len = n;
    }

    free(safe);

    return out;
}


static void
ngx_http_loyalty_ab_report_cleanup(void *data)
{
    ngx_http_loyalty_ab_report_ctx_t *rctx = data;

    ngx_uint_t  i;

    if (rctx->reads != NULL) {
        for (i = 0; i < rctx->n; i++) {
            if (rctx->reads[i].cmd != NULL) {
                ngx_http_loyalty_redis_cancel(rctx->reads[i].cmd);
                rctx->reads[i].cmd = NULL;
            }
        }
    }

    if (rctx->done.posted) {
        ngx_delete_posted_event(&rctx->done);
    }
}


/* the once-a-second flush, in every worker */

static void
ngx_http_loyalty_ab_flush_handler(ngx_event_t *ev)
{
    ngx_http_loyalty_ab_flush(ev->log);

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(ev, NGX_HTTP_LOYALTY_AB_FLUSH);
    }
}


/*
 * The graceful shutdown's last flush: the worker waits for the replies
 * (command timers are not cancelable), so a reload or a QUIT loses no
 * exposure counted in shared memory.
 */

void
ngx_http_loyalty_ab_shutdown(ngx_log_t *log)
{
    if (ngx_http_loyalty_ab_final) {
        return;
    }

    ngx_http_loyalty_ab_final = 1;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0,
                   "loyalty ab: last flush before exiting");

    ngx_http_loyalty_ab_flush(log);
}


/*
 * Takes every slot's unflushed count out of the shared zone and sends it;
 * a count that cannot be sent right now (no connection) goes back for the
 * next flush.
 */

static void
ngx_http_loyalty_ab_flush(ngx_log_t *log)
{
    u_char                         field[LOYALTY_AB_VARIANT_MAX + 16];
    u_char                         key[sizeof(NGX_HTTP_LOYALTY_AB_PREFIX)
                                       + LOYALTY_AB_NAME_MAX];
    u_char                         num[NGX_ATOMIC_T_LEN];
    ngx_int_t                      rc;
    ngx_str_t                      argv[4], err;
    ngx_uint_t                     i;
    ngx_atomic_uint_t              n;
    ngx_http_loyalty_ab_t         *t, **tp;
    ngx_http_loyalty_redis_t      *redis;
    ngx_http_loyalty_ab_cmd_t     *ac;
    ngx_http_loyalty_ab_slot_t    *s;
    ngx_http_loyalty_main_conf_t  *lmcf;

    if (ngx_http_loyalty_ab_shm == NULL) {
        return;
    }

    lmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_loyalty_module);

    if (lmcf == NULL || lmcf->ab_tests.nelts == 0) {
        return;
    }

    tp = lmcf->ab_tests.elts;

    for (i = 0; i < ngx_http_loyalty_ab_shm->nslots; i++) {
        s = &ngx_http_loyalty_ab_shm->slots[i];

        n = ngx_http_loyalty_ab_take(&s->exposures);

        if (n == 0) {
            continue;
        }

        /* a test dropped from the configuration still has its counts
         * flushed, to the first test's Redis */

        t = ngx_http_loyalty_ab_find(lmcf, s->test, ngx_strlen(s->test));
        redis = (t != NULL) ? t->redis : tp[0]->redis;

        ac = ngx_http_loyalty_ab_cmd_create();
        if (ac == NULL) {
            (void) ngx_atomic_fetch_add(&s->exposures, (ngx_atomic_int_t) n);
            return;
        }

        ac->slot = s;
        ac->n = n;

        argv[0] = ngx_http_loyalty_ab_hincrby;
        argv[1].data = key;
        argv[1].len = ngx_sprintf(key, NGX_HTTP_LOYALTY_AB_PREFIX "%s",
                                  s->test)
                      - key;
        argv[2].data = field;
        argv[2].len = ngx_sprintf(field, "%s:exposures", s->variant) - field;
        argv[3].data = num;
        argv[3].len = ngx_sprintf(num, "%uA", n) - num;

        ngx_str_null(&err);

        rc = ngx_http_loyalty_ab_cmd_send(ac, redis, 4, argv,
                                          ngx_http_loyalty_ab_flush_reply,
                                          &err);

        if (rc != NGX_AGAIN) {
            (void) ngx_atomic_fetch_add(&s->exposures, (ngx_atomic_int_t) n);

            ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                           "loyalty ab: %uA exposures of \"%s\" kept for "
                           "later: %V", n, s->test, &err);
            continue;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                       "loyalty ab: flushed %uA exposures of \"%s\" \"%s\"",
                       n, s->test, s->variant);
    }
}


/*
 * A failure after the command left may still have been applied, so the
 * counts are not put back (they could be counted twice): they are
 * logged as possibly lost.
 */

static void
ngx_http_loyalty_ab_flush_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err)
{
    ngx_http_loyalty_ab_cmd_t *ac = data;

    if (rc != NGX_HTTP_LOYALTY_REDIS_REPLY) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "loyalty ab: exposure counts may be lost: %uA of "
                      "\"%s\" \"%s\": %V", ac->n, ac->slot->test,
                      ac->slot->variant, err);

    } else if (reply->type != NGX_HTTP_LOYALTY_REPLY_INTEGER) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "loyalty ab: exposure counts lost: %uA of \"%s\" "
                      "\"%s\": \"%*s\"", ac->n, ac->slot->test,
                      ac->slot->variant, ngx_min(reply->str.len, 128),
                      reply->str.data);
    }

    ngx_http_loyalty_ab_cmd_done(ac);
}


static ngx_http_loyalty_ab_cmd_t *
ngx_http_loyalty_ab_cmd_create(void)
{
    ngx_pool_t                 *pool;
    ngx_http_loyalty_ab_cmd_t  *ac;

    pool = ngx_create_pool(NGX_HTTP_LOYALTY_AB_POOL_SIZE, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    ac = ngx_pcalloc(pool, sizeof(ngx_http_loyalty_ab_cmd_t));
    if (ac == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    ac->pool = pool;

    return ac;
}


/*
 * Sends the command with ac as the handler's data; when it did not leave
 * (any code but NGX_AGAIN) ac is destroyed here, else by the handler.
 * The command may outlive whatever sent it (a request, a report's log),
 * so it logs to the cycle's log.
 */

static ngx_int_t
ngx_http_loyalty_ab_cmd_send(ngx_http_loyalty_ab_cmd_t *ac,
    ngx_http_loyalty_redis_t *redis, ngx_uint_t argc, ngx_str_t *argv,
    ngx_http_loyalty_redis_handler_pt handler, ngx_str_t *err)
{
    ngx_int_t  rc;

    rc = ngx_http_loyalty_redis_send(redis, ac->pool, ngx_cycle->log,
                                     NGX_HTTP_LOYALTY_AB_TIMEOUT, argc, argv,
                                     handler, ac, &ac->cmd, err);

    if (rc != NGX_AGAIN) {
        ngx_destroy_pool(ac->pool);
        return rc;
    }

    ngx_queue_insert_tail(&ngx_http_loyalty_ab_sent, &ac->queue);

    return NGX_AGAIN;
}


static void
ngx_http_loyalty_ab_cmd_done(ngx_http_loyalty_ab_cmd_t *ac)
{
    ngx_queue_remove(&ac->queue);
    ngx_destroy_pool(ac->pool);
}


/*
 * A counter's value, leaving 0 in the same atomic step: when several
 * workers flush at once (each one's timer, a report's flush), one takes
 * the counts and the others find 0, so no count is sent twice, and no
 * subtraction can take the counter below 0.
 */

static ngx_atomic_uint_t
ngx_http_loyalty_ab_take(ngx_atomic_t *counter)
{
    ngx_atomic_uint_t  n;

    for ( ;; ) {
        n = *counter;

        if (n == 0 || ngx_atomic_cmp_set(counter, n, 0)) {
            return n;
        }
    }
}


static ngx_http_loyalty_ab_t *
ngx_http_loyalty_ab_find(ngx_http_loyalty_main_conf_t *lmcf, u_char *name,
    size_t len)
{
    ngx_uint_t               i;
    ngx_http_loyalty_ab_t  **tp;

    tp = lmcf->ab_tests.elts;

    for (i = 0; i < lmcf->ab_tests.nelts; i++) {
        if (tp[i]->name.len == len
            && ngx_strncmp(tp[i]->name.data, name, len) == 0)
        {
            return tp[i];
        }
    }

    return NULL;
}


/* $loyalty_ab_<name> */

ngx_int_t
ngx_http_loyalty_ab_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t *name = (ngx_str_t *) data;

    size_t                   len;
    u_char                  *test;
    ngx_uint_t               i;
    ngx_http_loyalty_ctx_t  *ctx;

    v->not_found = 1;

    ctx = ngx_http_loyalty_get_ctx(r->main);

    if (ctx == NULL) {
        return NGX_OK;
    }

    test = name->data + sizeof("loyalty_ab_") - 1;
    len = name->len - (sizeof("loyalty_ab_") - 1);

    for (i = 0; i < ctx->nvariants; i++) {
        if (ctx->variants[i].test.len == len
            && ngx_strncmp(ctx->variants[i].test.data, test, len) == 0)
        {
            v->len = ctx->variants[i].variant.len;
            v->data = ctx->variants[i].variant.data;
            v->valid = 1;
            v->no_cacheable = 1;
            v->not_found = 0;
            break;
        }
    }

    return NGX_OK;
}


/* $loyalty_variants: name=variant,... */

ngx_int_t
ngx_http_loyalty_ab_variants_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_loyalty_ctx_t  *ctx;

    ctx = ngx_http_loyalty_get_ctx(r->main);

    if (ctx == NULL || ctx->variants_text.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ctx->variants_text.len;
    v->data = ctx->variants_text.data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_loyalty_ab_init_process(ngx_cycle_t *cycle,
    ngx_http_loyalty_main_conf_t *lmcf)
{
    ngx_event_t  *ev;

    ngx_queue_init(&ngx_http_loyalty_ab_sent);

    if (lmcf->ab_tests.nelts == 0) {
        return NGX_OK;
    }

    ev = &ngx_http_loyalty_ab_flush_event;

    ev->handler = ngx_http_loyalty_ab_flush_handler;
    ev->log = cycle->log;
    ev->data = lmcf;
    ev->cancelable = 1;

    ngx_add_timer(ev, NGX_HTTP_LOYALTY_AB_FLUSH);

    return NGX_OK;
}


/*
 * Commands still waiting here were not waited for (a fast shutdown, or
 * worker_shutdown_timeout): their handlers are never called, so their
 * pools go now.
 */

void
ngx_http_loyalty_ab_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                  n;
    ngx_queue_t                *q;
    ngx_http_loyalty_ab_cmd_t  *ac;

    if (ngx_http_loyalty_ab_flush_event.timer_set) {
        ngx_del_timer(&ngx_http_loyalty_ab_flush_event);
    }

    if (ngx_http_loyalty_ab_sent.next == NULL) {
        return;
    }

    n = 0;

    while (!ngx_queue_empty(&ngx_http_loyalty_ab_sent)) {
        q = ngx_queue_head(&ngx_http_loyalty_ab_sent);
        ac = ngx_queue_data(q, ngx_http_loyalty_ab_cmd_t, queue);

        ngx_http_loyalty_redis_cancel(ac->cmd);
        ngx_http_loyalty_ab_cmd_done(ac);
        n++;
    }

    if (n) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "loyalty ab: %ui counts or conversions sent to redis "
                      "without a reply at exit may be lost", n);
    }
}


/*
 * loyalty_ab name [key=string] percent% variant ... [* variant];
 * loyalty_ab off;
 */

char *
ngx_http_loyalty_ab_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_loyalty_loc_conf_t *llcf = conf;

    char                               err[256];
    size_t                             lens[2 * LOYALTY_AB_VARIANTS_MAX + 2];
    ngx_str_t                         *value, key;
    ngx_uint_t                         i, first, nwords;
    const char                        *words[2 * LOYALTY_AB_VARIANTS_MAX + 2];
    ngx_http_loyalty_ab_t             *t, **tp, *prev;
    ngx_http_loyalty_main_conf_t      *lmcf;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    if (cf->args->nelts == 2
        && ngx_strcmp(value[1].data, "off") == 0)
    {
        if (llcf->ab != NGX_CONF_UNSET_PTR) {
            return "is duplicate or combined with tests at this level";
        }

        llcf->ab = NULL;
        return NGX_CONF_OK;
    }

    if (llcf->ab == NULL) {
        return "cannot declare a test where \"loyalty_ab off\" is set";
    }

    t = ngx_pcalloc(cf->pool, sizeof(ngx_http_loyalty_ab_t));
    if (t == NULL) {
        return NGX_CONF_ERROR;
    }

    t->name = value[1];
    first = 2;

    if (cf->args->nelts > 2
        && ngx_strncmp(value[2].data, "key=", 4) == 0)
    {
        key.data = value[2].data + 4;
        key.len = value[2].len - 4;

        if (key.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "test \"%V\": empty \"key=\"", &t->name);
            return NGX_CONF_ERROR;
        }

        t->key_text = key;

        t->key = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (t->key == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &key;
        ccv.complex_value = t->key;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        first = 3;
    }

    nwords = cf->args->nelts - first;

    if (nwords > 2 * LOYALTY_AB_VARIANTS_MAX + 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "test \"%V\": more than %d variants", &t->name,
                           LOYALTY_AB_VARIANTS_MAX);
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < nwords; i++) {
        words[i] = (const char *) value[first + i].data;
        lens[i] = value[first + i].len;
    }

    if (loyalty_ab_test_parse(&t->spec, (const char *) t->name.data,
                              t->name.len, words, lens, nwords,
                              err, sizeof(err))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s", err);
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < t->spec.nvariants; i++) {
        t->variants[i].data = (u_char *) t->spec.variants[i].name;
        t->variants[i].len = ngx_strlen(t->spec.variants[i].name);
    }

    t->redis_key.len = sizeof(NGX_HTTP_LOYALTY_AB_PREFIX) - 1 + t->name.len;
    t->redis_key.data = ngx_pnalloc(cf->pool, t->redis_key.len);
    if (t->redis_key.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(t->redis_key.data, NGX_HTTP_LOYALTY_AB_PREFIX "%V", &t->name);

    /* one definition per name in the whole configuration: the counts in
     * Redis are kept by name */

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_loyalty_module);

    prev = ngx_http_loyalty_ab_find(lmcf, t->name.data, t->name.len);

    if (prev != NULL) {
        if (!loyalty_ab_test_equal(&prev->spec, &t->spec)
            || prev->key_text.len != t->key_text.len
            || ngx_strncmp(prev->key_text.data, t->key_text.data,
                           t->key_text.len) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "test \"%V\" is declared differently "
                               "elsewhere: a test's counts are kept by "
                               "name, so every declaration must be the same",
                               &t->name);
            return NGX_CONF_ERROR;
        }

        t = prev;

    } else {
        tp = ngx_array_push(&lmcf->ab_tests);
        if (tp == NULL) {
            return NGX_CONF_ERROR;
        }

        *tp = t;
    }

    if (llcf->ab == NGX_CONF_UNSET_PTR) {
        llcf->ab = ngx_array_create(cf->pool, 2,
                                    sizeof(ngx_http_loyalty_ab_t *));
        if (llcf->ab == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    tp = llcf->ab->elts;

    for (i = 0; i < llcf->ab->nelts; i++) {
        if (tp[i] == t) {
            return "declares the same test twice";
        }
    }

    tp = ngx_array_push(llcf->ab);
    if (tp == NULL) {
        return NGX_CONF_ERROR;
    }

    *tp = t;

    return NGX_CONF_OK;
}


char *
ngx_http_loyalty_ab_convert_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_loyalty_loc_conf_t *llcf = conf;

    if (llcf->ab_convert) {
        return "is duplicate";
    }

    llcf->ab_convert = 1;

    return NGX_CONF_OK;
}


char *
ngx_http_loyalty_ab_report_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != NULL) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_loyalty_ab_report_handler;

    return NGX_CONF_OK;
}


/*
 * Merge time: a level with loyalty_ab replaces the inherited list; each
 * test counts in the Redis of the first context that has one; a convert
 * location without content of its own answers with what it recorded.
 */

char *
ngx_http_loyalty_ab_merge(ngx_conf_t *cf, ngx_http_loyalty_loc_conf_t *prev,
    ngx_http_loyalty_loc_conf_t *conf)
{
    ngx_uint_t                  i;
    ngx_http_loyalty_ab_t     **tp;
    ngx_http_core_loc_conf_t   *clcf;

    ngx_conf_merge_ptr_value(conf->ab, prev->ab, NULL);

    if (conf->ab_convert) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

        if (clcf->handler == NULL) {
            clcf->handler = ngx_http_loyalty_ab_convert_handler;
        }
    }

    if (conf->ab == NULL || conf->redis_conf.address.data == NULL) {
        return NGX_CONF_OK;
    }

    tp = conf->ab->elts;

    for (i = 0; i < conf->ab->nelts; i++) {
        if (tp[i]->redis != NULL) {
            continue;
        }

        tp[i]->redis = ngx_http_loyalty_redis_add(cf, &conf->redis_conf);
        if (tp[i]->redis == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_http_loyalty_redis_use(tp[i]->redis, conf->connect_timeout);
    }

    return NGX_CONF_OK;
}


/* postconfiguration: every test has a Redis; the counters' zone */

ngx_int_t
ngx_http_loyalty_ab_init(ngx_conf_t *cf)
{
    ngx_str_t                      name = ngx_string("ngx_http_loyalty_ab");
    ngx_uint_t                     i;
    ngx_shm_zone_t                *shm_zone;
    ngx_http_loyalty_ab_t        **tp;
    ngx_http_loyalty_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_loyalty_module);

    if (lmcf->ab_tests.nelts == 0) {
        return NGX_OK;
    }

    tp = lmcf->ab_tests.elts;

    for (i = 0; i < lmcf->ab_tests.nelts; i++) {
        if (tp[i]->redis == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "loyalty_ab test \"%V\" has no \"loyalty_redis\" "
                          "to count in: set one in the http block or in "
                          "each server that uses the test", &tp[i]->name);
            return NGX_ERROR;
        }
    }

    shm_zone = ngx_shared_memory_add(cf, &name, NGX_HTTP_LOYALTY_AB_ZONE_SIZE,
                                     &ngx_http_loyalty_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_loyalty_ab_init_zone;
    shm_zone->data = lmcf;

    return NGX_OK;
}


/*
 * Slots are found by test and variant name, so a reload (which keeps the
 * zone) goes on counting in the same slots; new pairs take free slots.
 * Runs in the master: workers only ever touch the counters.
 */

static ngx_int_t
ngx_http_loyalty_ab_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    size_t                         nlen, vlen;
    ngx_uint_t                     i, j, k;
    ngx_slab_pool_t               *shpool;
    ngx_http_loyalty_ab_t        **tp, *t;
    ngx_http_loyalty_ab_shm_t     *shm;
    ngx_http_loyalty_ab_slot_t    *s;
    ngx_http_loyalty_main_conf_t  *lmcf;

    lmcf = shm_zone->data;

    if (data) {
        shm = data;

    } else {
        shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

        if (shm_zone->shm.exists) {
            shm = shpool->data;

        } else {
            shm = ngx_slab_calloc(shpool, sizeof(ngx_http_loyalty_ab_shm_t));
            if (shm == NULL) {
                return NGX_ERROR;
            }

            shpool->data = shm;
        }
    }

    shm_zone->data = shm;
    ngx_http_loyalty_ab_shm = shm;

    tp = lmcf->ab_tests.elts;

    for (i = 0; i < lmcf->ab_tests.nelts; i++) {
        t = tp[i];
        nlen = t->name.len;

        for (j = 0; j < t->spec.nvariants; j++) {
            vlen = t->variants[j].len;

            for (k = 0; k < shm->nslots; k++) {
                s = &shm->slots[k];

                if (ngx_strlen(s->test) == nlen
                    && ngx_strncmp(s->test, t->name.data, nlen) == 0
                    && ngx_strlen(s->variant) == vlen
                    && ngx_strncmp(s->variant, t->variants[j].data, vlen)
                       == 0)
                {
                    break;
                }
            }

            if (k == shm->nslots) {
                if (shm->nslots == NGX_HTTP_LOYALTY_AB_SLOTS) {
                    ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                                  "loyalty_ab: more than %d test variants "
                                  "counted since nginx started; restart "
                                  "nginx to start afresh",
                                  NGX_HTTP_LOYALTY_AB_SLOTS);
                    return NGX_ERROR;
                }

                s = &shm->slots[shm->nslots];
                ngx_memcpy(s->test, t->name.data, nlen);
                ngx_memcpy(s->variant, t->variants[j].data, vlen);

                /* old workers read nslots while a reload runs */
                ngx_memory_barrier();
                shm->nslots++;
            }

            t->exposures[j] = &shm->slots[k].exposures;
        }
    }

    return NGX_OK;
}
