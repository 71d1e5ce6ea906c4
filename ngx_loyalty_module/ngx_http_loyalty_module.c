/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The module itself: its directives, the configuration's creation and
 * merge, and what each worker starts and stops.  Each part it ties
 * together has a file of its own (README.md, "Project layout").
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_log.h"
#include "ngx_http_loyalty_metrics.h"
#include "ngx_http_loyalty_redis.h"
#include "ngx_http_loyalty_cache.h"
#include "ngx_http_loyalty_cookie.h"
#include "ngx_http_loyalty_handler.h"
#include "ngx_http_loyalty_lookup.h"
#include "ngx_http_loyalty_headers.h"
#include "ngx_http_loyalty_variables.h"
#include "ngx_http_loyalty_catalog.h"
#include "ngx_http_loyalty_json.h"
#include "ngx_http_loyalty_filter.h"


static void ngx_http_loyalty_tick(ngx_event_t *ev);
static void ngx_http_loyalty_shutdown(void *data);

static void *ngx_http_loyalty_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_loyalty_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_loyalty_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_loyalty_inject(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_loyalty_positive_msec(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_loyalty_cookie_name(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_loyalty_marker(ngx_conf_t *cf, void *post, void *data);
static ngx_int_t ngx_http_loyalty_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_loyalty_init_process(ngx_cycle_t *cycle);
static void ngx_http_loyalty_exit_process(ngx_cycle_t *cycle);


/* every second, in every worker: log summaries, Redis upkeep */
static ngx_event_t  ngx_http_loyalty_tick_event;


static ngx_conf_enum_t  ngx_http_loyalty_inject_modes[] = {
    { ngx_string("off"), NGX_HTTP_LOYALTY_INJECT_OFF },
    { ngx_string("html"), NGX_HTTP_LOYALTY_INJECT_HTML },
    { ngx_string("json"), NGX_HTTP_LOYALTY_INJECT_JSON },
    { ngx_null_string, 0 }
};


static ngx_conf_post_t  ngx_http_loyalty_positive_msec_post =
    { ngx_http_loyalty_positive_msec };

static ngx_conf_post_t  ngx_http_loyalty_cookie_name_post =
    { ngx_http_loyalty_cookie_name };

static ngx_conf_post_t  ngx_http_loyalty_marker_post =
    { ngx_http_loyalty_marker };


static ngx_command_t  ngx_http_loyalty_commands[] = {

    { ngx_string("loyalty"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, enable),
      NULL },

    { ngx_string("loyalty_redis"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_http_loyalty_redis_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("loyalty_redis_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE12,
      ngx_http_loyalty_redis_auth_directive,
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

    { ngx_string("loyalty_tier"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE23,
      ngx_http_loyalty_tier,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("loyalty_offers_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, offers_key),
      NULL },

    { ngx_string("loyalty_offers_refresh"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, offers_refresh),
      &ngx_http_loyalty_positive_msec_post },

    { ngx_string("loyalty_offers_max"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, offers_max),
      NULL },

    { ngx_string("loyalty_inject"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_loyalty_inject,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, inject),
      &ngx_http_loyalty_inject_modes },

    { ngx_string("loyalty_inject_marker"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, inject_marker),
      &ngx_http_loyalty_marker_post },

    { ngx_string("loyalty_inject_types"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_types_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, inject_types_keys),
      NULL },

    { ngx_string("loyalty_inject_json_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, inject_json_max_size),
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

    { ngx_string("loyalty_cache_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_loyalty_cache_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("loyalty_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_loyalty_cache_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("loyalty_cache_stale"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, cache_stale),
      NULL },

    { ngx_string("loyalty_invalidate_channel"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_loyalty_main_conf_t, invalidate_channel),
      NULL },

    { ngx_string("loyalty_redis_cluster"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_1MORE,
      ngx_http_loyalty_redis_cluster_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("loyalty_redis_read_replicas"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_loyalty_loc_conf_t, redis_conf.read_replicas),
      NULL },

    { ngx_string("loyalty_redis_breaker"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_1MORE,
      ngx_http_loyalty_redis_breaker_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("loyalty_ab"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_loyalty_ab_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("loyalty_ab_convert"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_loyalty_ab_convert_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("loyalty_ab_report"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_loyalty_ab_report_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_loyalty_module_ctx = {
    ngx_http_loyalty_variables_add,        /* preconfiguration */
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


/*
 * The worker has begun a graceful shutdown (reload or QUIT): what is
 * still only in shared memory goes to Redis while connections remain.
 * Called once per Redis connection; each part acts once.
 */

static void
ngx_http_loyalty_shutdown(void *data)
{
    ngx_cycle_t  *cycle = data;

    ngx_http_loyalty_ab_shutdown(cycle->log);
}


/* every second, in every worker */

static void
ngx_http_loyalty_tick(ngx_event_t *ev)
{
    ngx_http_loyalty_log_tick();

    ngx_http_loyalty_redis_tick(ev->data);

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, 1000);
    }
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
        != NGX_OK
        || ngx_array_init(&lmcf->catalogs, cf->pool, 2,
                          sizeof(ngx_http_loyalty_catalog_t *))
           != NGX_OK
        || ngx_array_init(&lmcf->ab_tests, cf->pool, 2,
                          sizeof(ngx_http_loyalty_ab_t *))
           != NGX_OK
        || ngx_array_init(&lmcf->caches, cf->pool, 2,
                          sizeof(ngx_http_loyalty_cache_t *))
           != NGX_OK
        || ngx_array_init(&lmcf->cache_uses, cf->pool, 2,
                          sizeof(ngx_http_loyalty_cache_use_t))
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
     *     conf->catalog = NULL;
     *     conf->offers_key = { 0, NULL };
     *     conf->inject_marker = { 0, NULL };
     *     conf->inject_types_keys = NULL;
     *     conf->ab_convert = 0;
     */

    conf->enable = NGX_CONF_UNSET;
    conf->redis_conf.db = NGX_CONF_UNSET;
    conf->secret = NGX_CONF_UNSET_PTR;
    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->connect_timeout = NGX_CONF_UNSET_MSEC;
    conf->upstream_headers = NGX_CONF_UNSET;
    conf->response_headers = NGX_CONF_UNSET;
    conf->ladder = NGX_CONF_UNSET_PTR;
    conf->offers_refresh = NGX_CONF_UNSET_MSEC;
    conf->offers_max = NGX_CONF_UNSET_UINT;
    conf->inject = NGX_CONF_UNSET_UINT;
    conf->inject_json_max_size = NGX_CONF_UNSET_SIZE;
    conf->ab = NGX_CONF_UNSET_PTR;
    conf->cache = NGX_CONF_UNSET_PTR;
    conf->cache_stale = NGX_CONF_UNSET_MSEC;
    conf->redis_conf.breaker_failures = NGX_CONF_UNSET_UINT;
    conf->redis_conf.read_replicas = NGX_CONF_UNSET;
    conf->redis_conf.breaker_cooldown = NGX_CONF_UNSET_MSEC;

    return conf;
}


static char *
ngx_http_loyalty_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_loyalty_loc_conf_t *prev = parent;
    ngx_http_loyalty_loc_conf_t *conf = child;

    ngx_http_loyalty_main_conf_t  *lmcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);

    if (ngx_http_loyalty_redis_merge_conf(cf, &prev->redis_conf,
                                          &conf->redis_conf)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_ptr_value(conf->cache, prev->cache, NULL);
    ngx_conf_merge_msec_value(conf->cache_stale, prev->cache_stale, 60000);
    ngx_conf_merge_ptr_value(conf->secret, prev->secret, NULL);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 100);
    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              100);
    ngx_conf_merge_str_value(conf->cookie, prev->cookie, "loyalty_id");
    ngx_conf_merge_str_value(conf->key_prefix, prev->key_prefix,
                             "loyalty:customer:");
    ngx_conf_merge_value(conf->upstream_headers, prev->upstream_headers, 1);
    ngx_conf_merge_value(conf->response_headers, prev->response_headers, 0);
    ngx_conf_merge_ptr_value(conf->ladder, prev->ladder, NULL);
    ngx_conf_merge_str_value(conf->offers_key, prev->offers_key,
                             "loyalty:offers");
    ngx_conf_merge_msec_value(conf->offers_refresh, prev->offers_refresh,
                              10000);
    ngx_conf_merge_uint_value(conf->offers_max, prev->offers_max, 5);
    ngx_conf_merge_uint_value(conf->inject, prev->inject,
                              NGX_HTTP_LOYALTY_INJECT_OFF);
    ngx_conf_merge_str_value(conf->inject_marker, prev->inject_marker,
                             "</head>");
    ngx_conf_merge_size_value(conf->inject_json_max_size,
                              prev->inject_json_max_size, 1024 * 1024);

    /*
     * Without loyalty_inject_types at any level, the type follows each
     * location's mode (text/html or application/json), which
     * ngx_http_merge_types() cannot do: it settles a default at the outer
     * level, before an inner level picks its mode.
     */

    if (conf->inject_types_keys == NULL && prev->inject_types_keys == NULL) {
        conf->inject_types_default = 1;

    } else if (ngx_http_merge_types(cf, &conf->inject_types_keys,
                                    &conf->inject_types,
                                    &prev->inject_types_keys,
                                    &prev->inject_types,
                                    ngx_http_html_default_types)
               != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_loyalty_ab_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

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

    conf->catalog = ngx_http_loyalty_catalog_add(cf, conf);
    if (conf->catalog == NULL) {
        return NGX_CONF_ERROR;
    }

    if (conf->cache != NULL
        && ngx_http_loyalty_cache_use(cf, conf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

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


/* ngx_conf_set_enum_slot's message would not name the directive */

static char *
ngx_http_loyalty_inject(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_loyalty_loc_conf_t *llcf = conf;

    ngx_str_t        *value;
    ngx_conf_enum_t  *e;

    if (llcf->inject != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (e = cmd->post; e->name.len; e++) {
        if (e->name.len == value[1].len
            && ngx_strcasecmp(e->name.data, value[1].data) == 0)
        {
            llcf->inject = e->value;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"loyalty_inject\" directive has an invalid value "
                       "\"%V\": use off, html or json", &value[1]);

    return NGX_CONF_ERROR;
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


static char *
ngx_http_loyalty_marker(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *marker = data;

    if (marker->len == 0) {
        return "must not be empty";
    }

    if (marker->len > 64) {
        return "is longer than 64 bytes";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_loyalty_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    ngx_http_loyalty_headers_init();

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

    if (ngx_http_loyalty_ab_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_loyalty_filter_init(cf);
}


static ngx_int_t
ngx_http_loyalty_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                     i;
    ngx_http_loyalty_redis_t     **rdp;
    ngx_http_loyalty_main_conf_t  *lmcf;

    lmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_loyalty_module);

    if (lmcf == NULL) {
        return NGX_OK;
    }

    ngx_http_loyalty_lookup_init_process();

    ngx_http_loyalty_tick_event.handler = ngx_http_loyalty_tick;
    ngx_http_loyalty_tick_event.log = cycle->log;
    ngx_http_loyalty_tick_event.data = lmcf;
    ngx_http_loyalty_tick_event.cancelable = 1;

    ngx_add_timer(&ngx_http_loyalty_tick_event, 1000);

    /* the transport calls nothing above it: it is told here what to do
     * with an invalidation message, and when the worker shuts down */

    ngx_http_loyalty_redis_on_shutdown(ngx_http_loyalty_shutdown, cycle);

    rdp = lmcf->backends.elts;

    for (i = 0; i < lmcf->backends.nelts; i++) {
        ngx_http_loyalty_redis_on_message(rdp[i],
                                          ngx_http_loyalty_cache_invalidate,
                                          lmcf);
    }

    if (ngx_http_loyalty_redis_init_process(cycle, lmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_loyalty_ab_init_process(cycle, lmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_loyalty_catalog_init_process(cycle, lmcf);

    return NGX_OK;
}


static void
ngx_http_loyalty_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_loyalty_main_conf_t  *lmcf;

    lmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_loyalty_module);

    if (lmcf == NULL) {
        return;
    }

    ngx_http_loyalty_catalog_exit_process(cycle, lmcf);

    if (ngx_http_loyalty_tick_event.timer_set) {
        ngx_del_timer(&ngx_http_loyalty_tick_event);
    }

    ngx_http_loyalty_ab_exit_process(cycle);
    ngx_http_loyalty_redis_exit_process(cycle, lmcf);
}
