/*
 * Copyright (C) ngx_loyalty_module authors
 */


#ifndef _NGX_HTTP_LOYALTY_REDIS_H_INCLUDED_
#define _NGX_HTTP_LOYALTY_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"


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


/* a message on the invalidation channel of backend rd */
typedef void (*ngx_http_loyalty_redis_message_pt)(void *data,
    ngx_http_loyalty_redis_t *rd, ngx_str_t *message);

/* the worker's graceful shutdown has begun: the last writes go now */
typedef void (*ngx_http_loyalty_redis_shutdown_pt)(void *data);


ngx_int_t ngx_http_loyalty_redis_send(ngx_http_loyalty_redis_t *rd,
    ngx_pool_t *pool, ngx_log_t *log, ngx_msec_t timeout,
    ngx_uint_t argc, ngx_str_t *argv,
    ngx_http_loyalty_redis_handler_pt handler, void *data,
    ngx_http_loyalty_redis_cmd_t **cmdp, ngx_str_t *err);
void ngx_http_loyalty_redis_cancel(ngx_http_loyalty_redis_cmd_t *cmd);
ngx_str_t *ngx_http_loyalty_redis_name(ngx_http_loyalty_redis_t *rd);
ngx_uint_t ngx_http_loyalty_redis_subscribed(ngx_http_loyalty_redis_t *rd);
ngx_uint_t ngx_http_loyalty_redis_open(ngx_http_loyalty_redis_t *rd);
void ngx_http_loyalty_redis_tick(ngx_http_loyalty_main_conf_t *lmcf);
ngx_int_t ngx_http_loyalty_redis_check(ngx_conf_t *cf, ngx_str_t *address,
    ngx_uint_t cluster);
ngx_http_loyalty_redis_t *ngx_http_loyalty_redis_add(ngx_conf_t *cf,
    ngx_http_loyalty_redis_conf_t *rc);
void ngx_http_loyalty_redis_use(ngx_http_loyalty_redis_t *rd,
    ngx_msec_t connect_timeout);
ngx_int_t ngx_http_loyalty_redis_subscribe(ngx_http_loyalty_redis_t *rd,
    ngx_str_t *channel);
void ngx_http_loyalty_redis_on_message(ngx_http_loyalty_redis_t *rd,
    ngx_http_loyalty_redis_message_pt handler, void *data);
void ngx_http_loyalty_redis_on_shutdown(
    ngx_http_loyalty_redis_shutdown_pt handler, void *data);
ngx_int_t ngx_http_loyalty_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_loyalty_main_conf_t *lmcf);
void ngx_http_loyalty_redis_exit_process(ngx_cycle_t *cycle,
    ngx_http_loyalty_main_conf_t *lmcf);

/* ngx_http_loyalty_redis_conf.c */
char *ngx_http_loyalty_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_loyalty_redis_auth_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_loyalty_redis_cluster_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_loyalty_redis_breaker_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_loyalty_redis_merge_conf(ngx_conf_t *cf,
    ngx_http_loyalty_redis_conf_t *prev, ngx_http_loyalty_redis_conf_t *conf);


#endif /* _NGX_HTTP_LOYALTY_REDIS_H_INCLUDED_ */
