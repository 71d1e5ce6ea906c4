/*
 * Copyright (C) ngx_loyalty_module authors
 */


#ifndef _NGX_HTTP_LOYALTY_METRICS_H_INCLUDED_
#define _NGX_HTTP_LOYALTY_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"


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


void ngx_http_loyalty_metrics_latency(ngx_uint_t us);
ngx_http_loyalty_node_metrics_t *ngx_http_loyalty_metrics_node(
    ngx_str_t *name);
ngx_uint_t ngx_http_loyalty_metrics_now_us(void);
char *ngx_http_loyalty_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_loyalty_metrics_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_LOYALTY_METRICS_H_INCLUDED_ */
