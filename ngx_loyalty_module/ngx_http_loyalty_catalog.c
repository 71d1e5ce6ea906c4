/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The offer catalog: a JSON array in one Redis key, which each worker
 * fetches when it starts and then every loyalty_offers_refresh, so that
 * it costs nothing per request.  json.c parses it and picks the offers.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_redis.h"
#include "ngx_http_loyalty_json.h"
#include "ngx_http_loyalty_catalog.h"


/* reply time allowed for fetching the offer catalog (ms) */
#define NGX_HTTP_LOYALTY_CATALOG_TIMEOUT  1000


static void ngx_http_loyalty_catalog_fetch(ngx_event_t *ev);
static void ngx_http_loyalty_catalog_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err);


static ngx_str_t  ngx_http_loyalty_get = ngx_string("GET");


/* until the first fetch succeeds, it retries every second */

static void
ngx_http_loyalty_catalog_fetch(ngx_event_t *ev)
{
    ngx_int_t                    rc;
    ngx_str_t                    err, argv[2];
    ngx_http_loyalty_catalog_t  *cat;

    cat = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (cat->cmd == NULL) {
        argv[0] = ngx_http_loyalty_get;
        argv[1] = cat->key;
        ngx_str_null(&err);

        /* without a pool: the transport gives the reply one and
         * destroys it after the handler, as it does for its own probes;
         * ngx_cycle->pool kept every fetch's reply for the worker's life */

        rc = ngx_http_loyalty_redis_send(cat->redis, NULL, ngx_cycle->log,
                                         NGX_HTTP_LOYALTY_CATALOG_TIMEOUT,
                                         2, argv,
                                         ngx_http_loyalty_catalog_reply, cat,
                                         &cat->cmd, &err);

        if (rc != NGX_AGAIN) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                           "loyalty offers catalog \"%V\": %V",
                           &cat->key, &err);
            cat->cmd = NULL;
        }
    }

    ngx_add_timer(&cat->timer, cat->loaded ? cat->refresh
                                           : ngx_min(cat->refresh, 1000));
}


static void
ngx_http_loyalty_catalog_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err)
{
    ngx_http_loyalty_catalog_t *cat = data;

    cat->cmd = NULL;

    if (rc != NGX_HTTP_LOYALTY_REDIS_REPLY) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "loyalty offers catalog \"%V\" not fetched: %V",
                      &cat->key, err);
        return;
    }

    switch (reply->type) {

    case NGX_HTTP_LOYALTY_REPLY_STRING:
        ngx_http_loyalty_catalog_update(cat, &reply->str, ngx_cycle->log);
        break;

    case NGX_HTTP_LOYALTY_REPLY_NIL:
        ngx_http_loyalty_catalog_update(cat, NULL, ngx_cycle->log);
        break;

    default:
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "loyalty offers catalog \"%V\": unexpected reply "
                      "\"%*s\", keeping the last good one", &cat->key,
                      ngx_min(reply->str.len, 128), reply->str.data);
        return;
    }

    cat->loaded = 1;
}


/* one catalog per Redis and key, refreshed at the shortest interval */

ngx_http_loyalty_catalog_t *
ngx_http_loyalty_catalog_add(ngx_conf_t *cf, ngx_http_loyalty_loc_conf_t *llcf)
{
    ngx_uint_t                     i;
    ngx_http_loyalty_catalog_t    *cat, **catp;
    ngx_http_loyalty_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_loyalty_module);

    catp = lmcf->catalogs.elts;

    for (i = 0; i < lmcf->catalogs.nelts; i++) {
        cat = catp[i];

        if (cat->redis == llcf->redis
            && cat->key.len == llcf->offers_key.len
            && ngx_strncmp(cat->key.data, llcf->offers_key.data,
                           cat->key.len) == 0)
        {
            cat->refresh = ngx_min(cat->refresh, llcf->offers_refresh);
            return cat;
        }
    }

    cat = ngx_pcalloc(cf->pool, sizeof(ngx_http_loyalty_catalog_t));
    if (cat == NULL) {
        return NULL;
    }

    cat->redis = llcf->redis;
    cat->key = llcf->offers_key;
    cat->refresh = llcf->offers_refresh;

    catp = ngx_array_push(&lmcf->catalogs);
    if (catp == NULL) {
        return NULL;
    }

    *catp = cat;

    return cat;
}


void
ngx_http_loyalty_catalog_init_process(ngx_cycle_t *cycle,
    ngx_http_loyalty_main_conf_t *lmcf)
{
    ngx_uint_t                    i;
    ngx_http_loyalty_catalog_t  **catp;

    catp = lmcf->catalogs.elts;

    for (i = 0; i < lmcf->catalogs.nelts; i++) {
        catp[i]->timer.handler = ngx_http_loyalty_catalog_fetch;
        catp[i]->timer.data = catp[i];
        catp[i]->timer.log = cycle->log;
        catp[i]->timer.cancelable = 1;

        /* fetched as soon as the loop runs, behind the connects */
        ngx_add_timer(&catp[i]->timer, 1);
    }
}


void
ngx_http_loyalty_catalog_exit_process(ngx_cycle_t *cycle,
    ngx_http_loyalty_main_conf_t *lmcf)
{
    ngx_uint_t                    i;
    ngx_http_loyalty_catalog_t  **catp;

    catp = lmcf->catalogs.elts;

    for (i = 0; i < lmcf->catalogs.nelts; i++) {
        if (catp[i]->timer.timer_set) {
            ngx_del_timer(&catp[i]->timer);
        }

        if (catp[i]->cmd != NULL) {
            ngx_http_loyalty_redis_cancel(catp[i]->cmd);
            catp[i]->cmd = NULL;
        }

        ngx_http_loyalty_catalog_free(catp[i]);
    }
}
