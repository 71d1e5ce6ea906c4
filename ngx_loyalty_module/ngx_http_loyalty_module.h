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


/* the customer hash fields read with HMGET, in lib's loyalty_field_e
 * order: tier points cashback segments first_order birthday
 * referral_code offers */
#define NGX_HTTP_LOYALTY_FIELDS         8


/* loyalty_inject */
#define NGX_HTTP_LOYALTY_INJECT_OFF     0
#define NGX_HTTP_LOYALTY_INJECT_HTML    1
#define NGX_HTTP_LOYALTY_INJECT_JSON    2


typedef struct ngx_http_loyalty_redis_s      ngx_http_loyalty_redis_t;
typedef struct ngx_http_loyalty_redis_cmd_s  ngx_http_loyalty_redis_cmd_t;
typedef struct ngx_http_loyalty_cache_s      ngx_http_loyalty_cache_t;
typedef struct ngx_http_loyalty_catalog_s    ngx_http_loyalty_catalog_t;
typedef struct ngx_http_loyalty_ab_s         ngx_http_loyalty_ab_t;


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


#endif /* _NGX_HTTP_LOYALTY_MODULE_H_INCLUDED_ */
