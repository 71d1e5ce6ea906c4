/*
 * Copyright (C) ngx_loyalty_module authors
 */


#ifndef _NGX_HTTP_LOYALTY_CATALOG_H_INCLUDED_
#define _NGX_HTTP_LOYALTY_CATALOG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"


/* an offer catalog, fetched by each worker and refreshed on a timer */
struct ngx_http_loyalty_catalog_s {
    ngx_http_loyalty_redis_t      *redis;
    ngx_str_t                      key;
    ngx_msec_t                     refresh;
    void                          *json;      /* json_t array, per worker */
    ngx_event_t                    timer;
    ngx_http_loyalty_redis_cmd_t  *cmd;       /* GET in flight */
    unsigned                       loaded:1;
};


ngx_http_loyalty_catalog_t *ngx_http_loyalty_catalog_add(ngx_conf_t *cf,
    ngx_http_loyalty_loc_conf_t *llcf);
void ngx_http_loyalty_catalog_init_process(ngx_cycle_t *cycle,
    ngx_http_loyalty_main_conf_t *lmcf);
void ngx_http_loyalty_catalog_exit_process(ngx_cycle_t *cycle,
    ngx_http_loyalty_main_conf_t *lmcf);


#endif /* _NGX_HTTP_LOYALTY_CATALOG_H_INCLUDED_ */
