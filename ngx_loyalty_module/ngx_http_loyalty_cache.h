/*
 * Copyright (C) ngx_loyalty_module authors
 */


#ifndef _NGX_HTTP_LOYALTY_CACHE_H_INCLUDED_
#define _NGX_HTTP_LOYALTY_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"


/* a cache zone used with a Redis and a key prefix: what an invalidation
 * message evicts */
typedef struct {
    ngx_http_loyalty_cache_t      *cache;
    ngx_http_loyalty_redis_t      *redis;
    ngx_str_t                      prefix;
} ngx_http_loyalty_cache_use_t;


/* for equal hashes: < 0 when node goes left of temp */
typedef ngx_int_t (*ngx_http_loyalty_rbtree_cmp_pt)(ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *temp);


ngx_http_loyalty_cache_status_e ngx_http_loyalty_cache_get(
    ngx_http_request_t *r, ngx_http_loyalty_cache_t *cache, ngx_str_t *key,
    ngx_msec_t max_ttl, ngx_msec_t stale, ngx_http_loyalty_ctx_t *ctx);
void ngx_http_loyalty_cache_put(ngx_http_loyalty_cache_t *cache,
    ngx_str_t *key, ngx_http_loyalty_ctx_t *ctx, ngx_log_t *log);
ngx_uint_t ngx_http_loyalty_cache_delete(ngx_http_loyalty_cache_t *cache,
    ngx_str_t *key);
void ngx_http_loyalty_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel,
    ngx_http_loyalty_rbtree_cmp_pt cmp);
void ngx_http_loyalty_cache_invalidate(void *data,
    ngx_http_loyalty_redis_t *rd, ngx_str_t *id);
char *ngx_http_loyalty_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_loyalty_cache_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_loyalty_cache_use(ngx_conf_t *cf,
    ngx_http_loyalty_loc_conf_t *llcf);


#endif /* _NGX_HTTP_LOYALTY_CACHE_H_INCLUDED_ */
