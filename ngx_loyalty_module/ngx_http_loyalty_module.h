/*
 * Copyright (C) ngx_loyalty_module authors
 */


#ifndef _NGX_HTTP_LOYALTY_MODULE_H_INCLUDED_
#define _NGX_HTTP_LOYALTY_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* $loyalty_status values; NONE: the lookup has not ended yet */
typedef enum {
    NGX_HTTP_LOYALTY_NONE = 0,
    NGX_HTTP_LOYALTY_OK,
    NGX_HTTP_LOYALTY_ANONYMOUS,
    NGX_HTTP_LOYALTY_INVALID,
    NGX_HTTP_LOYALTY_UNKNOWN,
    NGX_HTTP_LOYALTY_TIMEOUT,
    NGX_HTTP_LOYALTY_ERROR,
    NGX_HTTP_LOYALTY_HOLDOUT,
    NGX_HTTP_LOYALTY_BYPASS
} ngx_http_loyalty_status_e;


#define NGX_HTTP_LOYALTY_STATUSES        9     /* NONE to BYPASS */


/* $loyalty_cache_status values; NONE: no cache, or no lookup */
typedef enum {
    NGX_HTTP_LOYALTY_CACHE_NONE = 0,
    NGX_HTTP_LOYALTY_CACHE_HIT,
    NGX_HTTP_LOYALTY_CACHE_MISS,
    NGX_HTTP_LOYALTY_CACHE_EXPIRED,
    NGX_HTTP_LOYALTY_CACHE_STALE,
    NGX_HTTP_LOYALTY_CACHE_BYPASS
} ngx_http_loyalty_cache_status_e;


#define NGX_HTTP_LOYALTY_CACHE_STATUSES  6


/* kinds of nginx_loyalty_redis_errors_total */
typedef enum {
    NGX_HTTP_LOYALTY_ERR_CONNECT = 0,
    NGX_HTTP_LOYALTY_ERR_CLOSED,
    NGX_HTTP_LOYALTY_ERR_PROTOCOL,
    NGX_HTTP_LOYALTY_ERR_REPLY,
    NGX_HTTP_LOYALTY_ERR_RECORD,
    NGX_HTTP_LOYALTY_ERR_AUTH,
    NGX_HTTP_LOYALTY_ERRORS
} ngx_http_loyalty_error_e;


#define NGX_HTTP_LOYALTY_LATENCY_BUCKETS 14    /* 13 bounds and +Inf */


#define NGX_HTTP_LOYALTY_METRICS_NODES   64


/* one Redis node's counters (a cluster has several), found by name */
typedef struct {
    u_char                         name[64];   /* "ip:port", NUL */
    ngx_atomic_t                   commands;
    ngx_atomic_t                   replies;
    ngx_atomic_t                   errors;     /* connection failures */
    ngx_atomic_t                   timeouts;
    ngx_atomic_t                   moved;
    ngx_atomic_t                   ask;
} ngx_http_loyalty_node_metrics_t;


/* all workers' counters, in shared memory */
typedef struct {
    ngx_atomic_t                   lookups[NGX_HTTP_LOYALTY_STATUSES];
    ngx_atomic_t                   in_flight;
    ngx_atomic_t                   commands;
    ngx_atomic_t                   replies;
    ngx_atomic_t                   errors[NGX_HTTP_LOYALTY_ERRORS];
    ngx_atomic_t                   timeouts;
    ngx_atomic_t                   reconnects;
    ngx_atomic_t                   connections;
    ngx_atomic_t                   latency[NGX_HTTP_LOYALTY_LATENCY_BUCKETS];
    ngx_atomic_t                   latency_sum_us;
    ngx_atomic_t                   cache[NGX_HTTP_LOYALTY_CACHE_STATUSES];
    ngx_atomic_t                   coalesced;
    ngx_atomic_t                   invalidations;
    ngx_atomic_t                   breaker_opens;
    ngx_atomic_t                   breakers_open;
    ngx_atomic_t                   log_suppressed;
    ngx_atomic_t                   map_refreshes;
    ngx_atomic_t                   nnodes;
    ngx_http_loyalty_node_metrics_t  nodes[NGX_HTTP_LOYALTY_METRICS_NODES];
} ngx_http_loyalty_metrics_t;


extern ngx_http_loyalty_metrics_t  *ngx_http_loyalty_metrics;


#define ngx_http_loyalty_metric_add(field, n)                               \
    do {                                                                      \
        if (ngx_http_loyalty_metrics != NULL) {                               \
            (void) ngx_atomic_fetch_add(&ngx_http_loyalty_metrics->field,     \
                                        (ngx_atomic_int_t) (n));              \
        }                                                                     \
    } while (0)


/*
 * Error log flood guard: at most one line per second per worker and per
 * call site; the lines held back are counted and reported in one line.
 */

typedef struct ngx_http_loyalty_log_guard_s  ngx_http_loyalty_log_guard_t;

struct ngx_http_loyalty_log_guard_s {
    const char                    *cause;
    time_t                         sec;       /* of the last line written */
    ngx_uint_t                     suppressed;
    ngx_uint_t                     level;
    ngx_http_loyalty_log_guard_t  *next;      /* all guards used so far */
    unsigned                       registered:1;
};


#define ngx_http_loyalty_log_error(lvl, log, err, why, ...)                 \
    do {                                                                      \
        static ngx_http_loyalty_log_guard_t  ngx_http_loyalty_guard_ =        \
            { why, 0, 0, lvl, NULL, 0 };                                      \
                                                                              \
        ngx_http_loyalty_log_guarded(&ngx_http_loyalty_guard_, lvl, log,      \
                                     err, __VA_ARGS__);                       \
    } while (0)


/* the same, with a guard shared by several call sites of one cause */
#define ngx_http_loyalty_log_guarded(g, lvl, log, err, ...)                 \
    do {                                                                      \
        if ((log)->log_level >= (lvl) && ngx_http_loyalty_log_allow(g)) {     \
            ngx_log_error_core(lvl, log, err, __VA_ARGS__);                   \
        }                                                                     \
    } while (0)


/* the customer hash fields read with HMGET, in lib's loyalty_field_e
 * order: tier points cashback segments first_order birthday
 * referral_code offers */
#define NGX_HTTP_LOYALTY_FIELDS         8


/* loyalty_inject */
#define NGX_HTTP_LOYALTY_INJECT_OFF     0
#define NGX_HTTP_LOYALTY_INJECT_HTML    1
#define NGX_HTTP_LOYALTY_INJECT_JSON    2


/* how a Redis command ended, as told to its handler */
#define NGX_HTTP_LOYALTY_REDIS_REPLY    0
#define NGX_HTTP_LOYALTY_REDIS_TIMEOUT  1
#define NGX_HTTP_LOYALTY_REDIS_FAILED   2
#define NGX_HTTP_LOYALTY_REDIS_BYPASS   3   /* the circuit breaker is open */


/* reply types, as in RESP2 */
#define NGX_HTTP_LOYALTY_REPLY_STRING   1
#define NGX_HTTP_LOYALTY_REPLY_ARRAY    2
#define NGX_HTTP_LOYALTY_REPLY_INTEGER  3
#define NGX_HTTP_LOYALTY_REPLY_NIL      4
#define NGX_HTTP_LOYALTY_REPLY_STATUS   5
#define NGX_HTTP_LOYALTY_REPLY_ERROR    6


typedef struct ngx_http_loyalty_reply_s      ngx_http_loyalty_reply_t;
typedef struct ngx_http_loyalty_redis_s      ngx_http_loyalty_redis_t;
typedef struct ngx_http_loyalty_redis_cmd_s  ngx_http_loyalty_redis_cmd_t;
typedef struct ngx_http_loyalty_ab_s         ngx_http_loyalty_ab_t;


/*
 * A Redis reply as the handler sees it: strings point into hiredis's
 * memory and are valid only while the handler runs, so it copies what it
 * keeps; element arrays come from the pool given with the command, or
 * without one (NULL) from a pool destroyed when the handler returns.
 */
struct ngx_http_loyalty_reply_s {
    ngx_uint_t                     type;
    ngx_str_t                      str;       /* string, status, error */
    int64_t                        integer;
    ngx_uint_t                     nelts;
    ngx_http_loyalty_reply_t      *elts;
};


/*
 * Called once per command: with a reply, or when it timed out or failed
 * (err says why).  Never called after the command was cancelled.
 */
typedef void (*ngx_http_loyalty_redis_handler_pt)(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err);


/* an offer catalog, fetched by each worker and refreshed on a timer */
typedef struct {
    ngx_http_loyalty_redis_t      *redis;
    ngx_str_t                      key;
    ngx_msec_t                     refresh;
    void                          *json;      /* json_t array, per worker */
    ngx_event_t                    timer;
    ngx_http_loyalty_redis_cmd_t  *cmd;       /* GET in flight */
    unsigned                       loaded:1;
} ngx_http_loyalty_catalog_t;


typedef struct {
    ngx_array_t                    backends;  /* ngx_http_loyalty_redis_t * */
    ngx_array_t                    catalogs;  /* ngx_http_loyalty_catalog_t * */
    ngx_array_t                    ab_tests;  /* ngx_http_loyalty_ab_t *, all */
    ngx_array_t                    caches;    /* ngx_http_loyalty_cache_t * */
    ngx_array_t                    cache_uses; /* cache_use_t */
    ngx_str_t                      invalidate_channel;
    ngx_flag_t                     warned_unsigned;
} ngx_http_loyalty_main_conf_t;


/* what a connection to Redis needs, as configured */
typedef struct {
    ngx_str_t                      address;
    ngx_str_t                      user;      /* empty: AUTH password */
    ngx_str_t                      password;  /* NULL data: no AUTH */
    ngx_int_t                      db;        /* 0 or unset: no SELECT */
    ngx_uint_t                     breaker_failures;  /* 0: no breaker */
    ngx_msec_t                     breaker_cooldown;
    ngx_array_t                   *cluster;   /* ngx_str_t: the seeds */
    ngx_flag_t                     read_replicas;
} ngx_http_loyalty_redis_conf_t;


typedef struct ngx_http_loyalty_cache_s  ngx_http_loyalty_cache_t;


/* the keys of a loyalty_secret file, the current one first */
typedef struct {
    void                          *keys;      /* loyalty_key_t[] */
    size_t                         nkeys;
} ngx_http_loyalty_secret_t;


typedef struct {
    ngx_flag_t                     enable;
    ngx_http_loyalty_redis_t      *redis;
    ngx_http_loyalty_redis_conf_t  redis_conf;
    ngx_http_loyalty_secret_t     *secret;
    ngx_msec_t                     timeout;
    ngx_msec_t                     connect_timeout;
    ngx_str_t                      cookie;
    ngx_str_t                      key_prefix;
    ngx_flag_t                     upstream_headers;
    ngx_flag_t                     response_headers;

    void                          *ladder;    /* loyalty_ladder_t */
    ngx_http_loyalty_catalog_t    *catalog;
    ngx_str_t                      offers_key;
    ngx_msec_t                     offers_refresh;
    ngx_uint_t                     offers_max;

    ngx_uint_t                     inject;
    ngx_str_t                      inject_marker;
    ngx_hash_t                     inject_types;
    ngx_array_t                   *inject_types_keys;
    ngx_flag_t                     inject_types_default;
    size_t                         inject_json_max_size;

    ngx_http_loyalty_cache_t      *cache;     /* NULL: loyalty_cache off */
    ngx_msec_t                     cache_stale;

    ngx_array_t                   *ab;        /* ngx_http_loyalty_ab_t *;
                                               * NULL: loyalty_ab off */
    ngx_flag_t                     ab_convert;
} ngx_http_loyalty_loc_conf_t;


/* a cache zone used with a Redis and a key prefix: what an invalidation
 * message evicts */
typedef struct {
    ngx_http_loyalty_cache_t      *cache;
    ngx_http_loyalty_redis_t      *redis;
    ngx_str_t                      prefix;
} ngx_http_loyalty_cache_use_t;


/* a test's variant assigned to the request */
typedef struct {
    ngx_str_t                      test;
    ngx_str_t                      variant;
} ngx_http_loyalty_variant_t;


/*
 * The lookup's state and result.  It lives in a cleanup of r->pool, so
 * an internal redirect (which zeroes r->ctx) finds it again and does not
 * query Redis twice.
 */
typedef struct {
    ngx_http_request_t            *request;
    void                          *lookup;    /* joined lookup, or NULL */
    ngx_queue_t                    queue;     /* in the lookup's waiters */
    ngx_event_t                    resume;    /* posted when the lookup ends */
    ngx_msec_t                     start;

    ngx_http_loyalty_status_e      status;
    ngx_http_loyalty_cache_status_e  cache_status;
    ngx_str_t                      id;
    ngx_str_t                      cookie_error;
    ngx_str_t                      tier;
    ngx_str_t                      points;

    /* optional fields as read, validated when the fragment is built */
    ngx_str_t                      fields[NGX_HTTP_LOYALTY_FIELDS];

    ngx_str_t                      json;      /* $loyalty_json, once built */
    ngx_str_t                      offers;    /* $loyalty_offers, likewise */
    void                          *filter;    /* body filter state */

    ngx_http_loyalty_variant_t    *variants;  /* A/B, in the tests' order */
    ngx_uint_t                     nvariants;
    ngx_str_t                      variants_text;  /* $loyalty_variants */
    ngx_str_t                      converted; /* loyalty_ab_convert's JSON */

    unsigned                       waiting:1;
    unsigned                       done:1;
    unsigned                       holdout:1; /* a variant "off" */
    unsigned                       record:1;  /* tier, points, fields set
                                               * (from Redis or the cache) */
    unsigned                       want_offers:1;  /* $loyalty_offers used */
    unsigned                       stale:1;   /* they are an expired cache
                                               * entry, kept in case Redis
                                               * fails */
} ngx_http_loyalty_ctx_t;


extern ngx_module_t  ngx_http_loyalty_module;


/* ngx_http_loyalty_module.c */
ngx_http_loyalty_ctx_t *ngx_http_loyalty_get_ctx(ngx_http_request_t *r);
ngx_str_t *ngx_http_loyalty_status_name(ngx_http_loyalty_ctx_t *ctx);
void ngx_http_loyalty_shutdown(ngx_cycle_t *cycle);
ngx_uint_t ngx_http_loyalty_log_allow(ngx_http_loyalty_log_guard_t *g);
void ngx_http_loyalty_invalidate(ngx_http_loyalty_redis_t *rd,
    ngx_str_t *id);

/* ngx_http_loyalty_cache.c */
ngx_http_loyalty_cache_status_e ngx_http_loyalty_cache_get(
    ngx_http_request_t *r, ngx_http_loyalty_cache_t *cache, ngx_str_t *key,
    ngx_msec_t max_ttl, ngx_msec_t stale, ngx_http_loyalty_ctx_t *ctx);
void ngx_http_loyalty_cache_put(ngx_http_loyalty_cache_t *cache,
    ngx_str_t *key, ngx_http_loyalty_ctx_t *ctx, ngx_log_t *log);
ngx_uint_t ngx_http_loyalty_cache_delete(ngx_http_loyalty_cache_t *cache,
    ngx_str_t *key);
char *ngx_http_loyalty_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_loyalty_cache_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* ngx_http_loyalty_ab.c */
ngx_int_t ngx_http_loyalty_ab_request(ngx_http_request_t *r,
    ngx_http_loyalty_loc_conf_t *llcf, ngx_http_loyalty_ctx_t *ctx);
void ngx_http_loyalty_ab_shutdown(ngx_log_t *log);
ngx_int_t ngx_http_loyalty_ab_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_int_t ngx_http_loyalty_ab_variants_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_int_t ngx_http_loyalty_ab_init_process(ngx_cycle_t *cycle,
    ngx_http_loyalty_main_conf_t *lmcf);
void ngx_http_loyalty_ab_exit_process(ngx_cycle_t *cycle);
char *ngx_http_loyalty_ab_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_loyalty_ab_convert_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_loyalty_ab_report_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_loyalty_ab_merge(ngx_conf_t *cf,
    ngx_http_loyalty_loc_conf_t *prev, ngx_http_loyalty_loc_conf_t *conf);
ngx_int_t ngx_http_loyalty_ab_init(ngx_conf_t *cf);

/* ngx_http_loyalty_cookie.c */
ngx_http_loyalty_status_e ngx_http_loyalty_cookie_id(ngx_http_request_t *r,
    ngx_http_loyalty_loc_conf_t *llcf, ngx_http_loyalty_ctx_t *ctx);
char *ngx_http_loyalty_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* ngx_http_loyalty_json.c */
ngx_str_t *ngx_http_loyalty_fragment(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx);
ngx_int_t ngx_http_loyalty_progress(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx, ngx_str_t *next_tier,
    ngx_str_t *points_to_next);
void ngx_http_loyalty_catalog_update(ngx_http_loyalty_catalog_t *cat,
    ngx_str_t *text, ngx_log_t *log);
void ngx_http_loyalty_catalog_free(ngx_http_loyalty_catalog_t *cat);
char *ngx_http_loyalty_tier(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* ngx_http_loyalty_filter.c */
ngx_int_t ngx_http_loyalty_filter_init(ngx_conf_t *cf);

/* ngx_http_loyalty_metrics.c */
ngx_int_t ngx_http_loyalty_metrics_init(ngx_conf_t *cf);
char *ngx_http_loyalty_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_loyalty_metrics_latency(ngx_uint_t us);
ngx_http_loyalty_node_metrics_t *ngx_http_loyalty_metrics_node(
    ngx_str_t *name);
ngx_uint_t ngx_http_loyalty_metrics_now_us(void);

/* ngx_http_loyalty_redis.c */
ngx_int_t ngx_http_loyalty_redis_check(ngx_conf_t *cf, ngx_str_t *address,
    ngx_uint_t cluster);
ngx_http_loyalty_redis_t *ngx_http_loyalty_redis_add(ngx_conf_t *cf,
    ngx_http_loyalty_redis_conf_t *rc);
void ngx_http_loyalty_redis_use(ngx_http_loyalty_redis_t *rd,
    ngx_msec_t connect_timeout);
ngx_str_t *ngx_http_loyalty_redis_name(ngx_http_loyalty_redis_t *rd);
ngx_int_t ngx_http_loyalty_redis_send(ngx_http_loyalty_redis_t *rd,
    ngx_pool_t *pool, ngx_log_t *log, ngx_msec_t timeout,
    ngx_uint_t argc, ngx_str_t *argv,
    ngx_http_loyalty_redis_handler_pt handler, void *data,
    ngx_http_loyalty_redis_cmd_t **cmdp, ngx_str_t *err);
void ngx_http_loyalty_redis_cancel(ngx_http_loyalty_redis_cmd_t *cmd);
ngx_int_t ngx_http_loyalty_redis_subscribe(ngx_http_loyalty_redis_t *rd,
    ngx_str_t *channel);
ngx_uint_t ngx_http_loyalty_redis_subscribed(ngx_http_loyalty_redis_t *rd);
ngx_uint_t ngx_http_loyalty_redis_open(ngx_http_loyalty_redis_t *rd);
void ngx_http_loyalty_redis_tick(ngx_http_loyalty_main_conf_t *lmcf);
ngx_int_t ngx_http_loyalty_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_loyalty_main_conf_t *lmcf);
void ngx_http_loyalty_redis_exit_process(ngx_cycle_t *cycle,
    ngx_http_loyalty_main_conf_t *lmcf);


#endif /* _NGX_HTTP_LOYALTY_MODULE_H_INCLUDED_ */
