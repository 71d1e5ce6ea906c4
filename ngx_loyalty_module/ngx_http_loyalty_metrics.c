/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Counters shared by all workers (atomics in a shared memory zone that a
 * reload reuses), and the loyalty_metrics handler that serves them in
 * Prometheus text exposition format or, with ?format=json, as JSON.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"


#define NGX_HTTP_LOYALTY_METRICS_ZONE_SIZE  (8 * ngx_pagesize)


static ngx_int_t ngx_http_loyalty_metrics_handler(ngx_http_request_t *r);
static u_char *ngx_http_loyalty_metrics_text(u_char *p,
    ngx_http_loyalty_metrics_t *m);
static u_char *ngx_http_loyalty_metrics_nodes_text(u_char *p,
    ngx_http_loyalty_metrics_t *m);
static u_char *ngx_http_loyalty_metrics_json(u_char *p,
    ngx_http_loyalty_metrics_t *m);
static ngx_int_t ngx_http_loyalty_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


/* in the shared zone; NULL in nginx -t and before the zone exists */
ngx_http_loyalty_metrics_t  *ngx_http_loyalty_metrics;

static ngx_slab_pool_t      *ngx_http_loyalty_metrics_shpool;


/* upper bounds of the latency buckets, in microseconds and as printed */

static ngx_uint_t  ngx_http_loyalty_latency_bounds[] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
    500000, 1000000
};

static char  *ngx_http_loyalty_latency_labels[] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
    "0.05", "0.1", "0.25", "0.5", "1", "+Inf"
};


/* indexed by ngx_http_loyalty_status_e, NONE excluded */

static char  *ngx_http_loyalty_status_labels[] = {
    NULL, "ok", "anonymous", "invalid", "unknown", "timeout", "error",
    "holdout", "bypass"
};


/* indexed by ngx_http_loyalty_cache_status_e, NONE excluded */

static char  *ngx_http_loyalty_cache_labels[] = {
    NULL, "hit", "miss", "expired", "stale", "bypass"
};


/* indexed by ngx_http_loyalty_error_e */

static char  *ngx_http_loyalty_error_labels[] = {
    "connect", "closed", "protocol", "reply", "record", "auth"
};


static ngx_str_t  ngx_http_loyalty_metrics_text_type =
    ngx_string("text/plain; version=0.0.4; charset=utf-8");
static ngx_str_t  ngx_http_loyalty_metrics_json_type =
    ngx_string("application/json");


void
ngx_http_loyalty_metrics_latency(ngx_uint_t us)
{
    ngx_uint_t  i;

    if (ngx_http_loyalty_metrics == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_LOYALTY_LATENCY_BUCKETS - 1; i++) {
        if (us <= ngx_http_loyalty_latency_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&ngx_http_loyalty_metrics->latency[i], 1);
    (void) ngx_atomic_fetch_add(&ngx_http_loyalty_metrics->latency_sum_us,
                                us);
}


ngx_uint_t
ngx_http_loyalty_metrics_now_us(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (ngx_uint_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static ngx_int_t
ngx_http_loyalty_metrics_handler(ngx_http_request_t *r)
{
    size_t                       len;
    ngx_int_t                    rc;
    ngx_buf_t                   *b;
    ngx_str_t                    format;
    ngx_chain_t                  out;
    ngx_uint_t                   json;
    ngx_http_loyalty_metrics_t   snapshot, *m;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    json = 0;

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK) {
        if (format.len == 4 && ngx_strncmp(format.data, "json", 4) == 0) {
            json = 1;

        } else if (!(format.len == 4
                     && ngx_strncmp(format.data, "text", 4) == 0))
        {
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    /* copy once, so the text is built from one set of values */

    m = &snapshot;

    if (ngx_http_loyalty_metrics != NULL) {
        ngx_memcpy(m, ngx_http_loyalty_metrics, sizeof(snapshot));

    } else {
        ngx_memzero(m, sizeof(snapshot));
    }

    /* every line is short and the set of lines is fixed */

    len = 8192 + m->nnodes * 1024;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = json ? ngx_http_loyalty_metrics_json(b->pos, m)
                   : ngx_http_loyalty_metrics_text(b->pos, m);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    r->headers_out.content_type = json ? ngx_http_loyalty_metrics_json_type
                                       : ngx_http_loyalty_metrics_text_type;
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static u_char *
ngx_http_loyalty_metrics_text(u_char *p, ngx_http_loyalty_metrics_t *m)
{
    ngx_uint_t  i, sum;

    p = ngx_sprintf(p,
            "# HELP nginx_loyalty_lookups_total Customer lookups by outcome "
            "($loyalty_status).\n"
            "# TYPE nginx_loyalty_lookups_total counter\n");

    for (i = 1; i < NGX_HTTP_LOYALTY_STATUSES; i++) {
        p = ngx_sprintf(p, "nginx_loyalty_lookups_total{status=\"%s\"} %uA\n",
                        ngx_http_loyalty_status_labels[i], m->lookups[i]);
    }

    p = ngx_sprintf(p,
            "# HELP nginx_loyalty_lookups_in_flight Lookups waiting for "
            "Redis now.\n"
            "# TYPE nginx_loyalty_lookups_in_flight gauge\n"
            "nginx_loyalty_lookups_in_flight %uA\n"
            "# HELP nginx_loyalty_redis_commands_total Redis commands "
            "sent.\n"
            "# TYPE nginx_loyalty_redis_commands_total counter\n"
            "nginx_loyalty_redis_commands_total %uA\n"
            "# HELP nginx_loyalty_redis_replies_total Redis replies "
            "received.\n"
            "# TYPE nginx_loyalty_redis_replies_total counter\n"
            "nginx_loyalty_redis_replies_total %uA\n",
            m->in_flight, m->commands, m->replies);

    p = ngx_sprintf(p,
            "# HELP nginx_loyalty_redis_errors_total Redis errors by kind: "
            "connect failed, connection closed, protocol error, error "
            "reply, invalid record, AUTH or SELECT refused.\n"
            "# TYPE nginx_loyalty_redis_errors_total counter\n");

    for (i = 0; i < NGX_HTTP_LOYALTY_ERRORS; i++) {
        p = ngx_sprintf(p, "nginx_loyalty_redis_errors_total{kind=\"%s\"} "
                        "%uA\n", ngx_http_loyalty_error_labels[i],
                        m->errors[i]);
    }

    p = ngx_sprintf(p,
            "# HELP nginx_loyalty_redis_timeouts_total Redis commands that "
            "got no reply within loyalty_redis_timeout.\n"
            "# TYPE nginx_loyalty_redis_timeouts_total counter\n"
            "nginx_loyalty_redis_timeouts_total %uA\n"
            "# HELP nginx_loyalty_redis_reconnects_total Connection attempts "
            "after a Redis connection failed or was lost.\n"
            "# TYPE nginx_loyalty_redis_reconnects_total counter\n"
            "nginx_loyalty_redis_reconnects_total %uA\n"
            "# HELP nginx_loyalty_redis_connections Open Redis connections "
            "of all workers.\n"
            "# TYPE nginx_loyalty_redis_connections gauge\n"
            "nginx_loyalty_redis_connections %uA\n",
            m->timeouts, m->reconnects, m->connections);

    p = ngx_sprintf(p,
            "# HELP nginx_loyalty_redis_latency_seconds Redis round trip, "
            "from sending a command to its reply.\n"
            "# TYPE nginx_loyalty_redis_latency_seconds histogram\n");

    sum = 0;

    for (i = 0; i < NGX_HTTP_LOYALTY_LATENCY_BUCKETS; i++) {
        sum += m->latency[i];
        p = ngx_sprintf(p, "nginx_loyalty_redis_latency_seconds_bucket"
                        "{le=\"%s\"} %ui\n",
                        ngx_http_loyalty_latency_labels[i], sum);
    }

    p = ngx_sprintf(p, "nginx_loyalty_redis_latency_seconds_sum %uA.%06uA\n"
                    "nginx_loyalty_redis_latency_seconds_count %ui\n",
                    m->latency_sum_us / 1000000, m->latency_sum_us % 1000000,
                    sum);

    p = ngx_sprintf(p,
            "# HELP nginx_loyalty_cache_lookups_total Cache outcomes of "
            "lookups ($loyalty_cache_status).\n"
            "# TYPE nginx_loyalty_cache_lookups_total counter\n");

    for (i = 1; i < NGX_HTTP_LOYALTY_CACHE_STATUSES; i++) {
        p = ngx_sprintf(p, "nginx_loyalty_cache_lookups_total"
                        "{status=\"%s\"} %uA\n",
                        ngx_http_loyalty_cache_labels[i], m->cache[i]);
    }

    p = ngx_sprintf(p,
            "# HELP nginx_loyalty_coalesced_total Lookups that joined the "
            "same customer's Redis command already in flight.\n"
            "# TYPE nginx_loyalty_coalesced_total counter\n"
            "nginx_loyalty_coalesced_total %uA\n"
            "# HELP nginx_loyalty_invalidations_total Invalidation messages "
            "received (each worker receives each message).\n"
            "# TYPE nginx_loyalty_invalidations_total counter\n"
            "nginx_loyalty_invalidations_total %uA\n"
            "# HELP nginx_loyalty_breaker_opens_total Times a worker's "
            "circuit breaker opened.\n"
            "# TYPE nginx_loyalty_breaker_opens_total counter\n"
            "nginx_loyalty_breaker_opens_total %uA\n"
            "# HELP nginx_loyalty_breakers_open Circuit breakers open now, "
            "summed over workers and Redis servers.\n"
            "# TYPE nginx_loyalty_breakers_open gauge\n"
            "nginx_loyalty_breakers_open %uA\n"
            "# HELP nginx_loyalty_log_suppressed_total Error log lines held "
            "back by the flood guard.\n"
            "# TYPE nginx_loyalty_log_suppressed_total counter\n"
            "nginx_loyalty_log_suppressed_total %uA\n",
            m->coalesced, m->invalidations, m->breaker_opens,
            m->breakers_open, m->log_suppressed);

    p = ngx_sprintf(p,
            "# HELP nginx_loyalty_cluster_map_refreshes_total Redis Cluster "
            "slot maps loaded (CLUSTER SLOTS), all workers.\n"
            "# TYPE nginx_loyalty_cluster_map_refreshes_total counter\n"
            "nginx_loyalty_cluster_map_refreshes_total %uA\n",
            m->map_refreshes);

    p = ngx_http_loyalty_metrics_nodes_text(p, m);

    return p;
}


/* per Redis node: one series per node and counter */

static u_char *
ngx_http_loyalty_metrics_nodes_text(u_char *p, ngx_http_loyalty_metrics_t *m)
{
    ngx_uint_t                        i, k, n;
    ngx_http_loyalty_node_metrics_t  *nm;

    static char  *names[] = {
        "commands", "Commands sent to the node.",
        "replies", "Replies received from the node.",
        "errors", "Commands whose connection to the node failed.",
        "timeouts", "Commands the node did not answer in time."
    };

    n = ngx_min(m->nnodes, NGX_HTTP_LOYALTY_METRICS_NODES);

    for (k = 0; k < 8; k += 2) {
        p = ngx_sprintf(p, "# HELP nginx_loyalty_redis_node_%s_total %s\n"
                        "# TYPE nginx_loyalty_redis_node_%s_total counter\n",
                        names[k], names[k + 1], names[k]);

        for (i = 0; i < n; i++) {
            nm = &m->nodes[i];
            p = ngx_sprintf(p, "nginx_loyalty_redis_node_%s_total"
                            "{node=\"%s\"} %uA\n", names[k], nm->name,
                            k == 0 ? nm->commands : k == 2 ? nm->replies
                            : k == 4 ? nm->errors : nm->timeouts);
        }
    }

    p = ngx_sprintf(p, "# HELP nginx_loyalty_redis_node_redirects_total "
                    "Redis Cluster redirections the node answered with.\n"
                    "# TYPE nginx_loyalty_redis_node_redirects_total "
                    "counter\n");

    for (i = 0; i < n; i++) {
        nm = &m->nodes[i];
        p = ngx_sprintf(p, "nginx_loyalty_redis_node_redirects_total"
                        "{node=\"%s\",kind=\"moved\"} %uA\n"
                        "nginx_loyalty_redis_node_redirects_total"
                        "{node=\"%s\",kind=\"ask\"} %uA\n",
                        nm->name, nm->moved, nm->name, nm->ask);
    }

    return p;
}


static u_char *
ngx_http_loyalty_metrics_json(u_char *p, ngx_http_loyalty_metrics_t *m)
{
    ngx_uint_t  i, sum;

    p = ngx_sprintf(p, "{\"lookups\":{");

    for (i = 1; i < NGX_HTTP_LOYALTY_STATUSES; i++) {
        p = ngx_sprintf(p, "%s\"%s\":%uA", i > 1 ? "," : "",
                        ngx_http_loyalty_status_labels[i], m->lookups[i]);
    }

    p = ngx_sprintf(p, "},\"lookups_in_flight\":%uA,\"redis\":{"
                    "\"commands\":%uA,\"replies\":%uA,\"errors\":{",
                    m->in_flight, m->commands, m->replies);

    for (i = 0; i < NGX_HTTP_LOYALTY_ERRORS; i++) {
        p = ngx_sprintf(p, "%s\"%s\":%uA", i ? "," : "",
                        ngx_http_loyalty_error_labels[i], m->errors[i]);
    }

    p = ngx_sprintf(p, "},\"timeouts\":%uA,\"reconnects\":%uA,"
                    "\"connections\":%uA,\"latency_seconds\":{\"buckets\":{",
                    m->timeouts, m->reconnects, m->connections);

    sum = 0;

    for (i = 0; i < NGX_HTTP_LOYALTY_LATENCY_BUCKETS; i++) {
        sum += m->latency[i];
        p = ngx_sprintf(p, "%s\"%s\":%ui", i ? "," : "",
                        ngx_http_loyalty_latency_labels[i], sum);
    }

    p = ngx_sprintf(p, "},\"sum\":%uA.%06uA,\"count\":%ui}},\"cache\":{",
                    m->latency_sum_us / 1000000, m->latency_sum_us % 1000000,
                    sum);

    for (i = 1; i < NGX_HTTP_LOYALTY_CACHE_STATUSES; i++) {
        p = ngx_sprintf(p, "%s\"%s\":%uA", i > 1 ? "," : "",
                        ngx_http_loyalty_cache_labels[i], m->cache[i]);
    }

    p = ngx_sprintf(p, "},\"coalesced\":%uA,\"invalidations\":%uA,"
                    "\"breaker_opens\":%uA,\"breakers_open\":%uA,"
                    "\"log_suppressed\":%uA,\"map_refreshes\":%uA,"
                    "\"nodes\":{",
                    m->coalesced, m->invalidations, m->breaker_opens,
                    m->breakers_open, m->log_suppressed, m->map_refreshes);

    for (i = 0; i < ngx_min(m->nnodes, NGX_HTTP_LOYALTY_METRICS_NODES); i++) {
        p = ngx_sprintf(p, "%s\"%s\":{\"commands\":%uA,\"replies\":%uA,"
                        "\"errors\":%uA,\"timeouts\":%uA,\"moved\":%uA,"
                        "\"ask\":%uA}", i ? "," : "", m->nodes[i].name,
                        m->nodes[i].commands, m->nodes[i].replies,
                        m->nodes[i].errors, m->nodes[i].timeouts,
                        m->nodes[i].moved, m->nodes[i].ask);
    }

    p = ngx_sprintf(p, "}}\n");

    return p;
}


char *
ngx_http_loyalty_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != NULL) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_loyalty_metrics_handler;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_loyalty_metrics_init(ngx_conf_t *cf)
{
    ngx_str_t        name = ngx_string("ngx_http_loyalty_metrics");
    ngx_shm_zone_t  *shm_zone;

    shm_zone = ngx_shared_memory_add(cf, &name,
                                     NGX_HTTP_LOYALTY_METRICS_ZONE_SIZE,
                                     &ngx_http_loyalty_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_loyalty_metrics_init_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_loyalty_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t             *shpool;
    ngx_http_loyalty_metrics_t  *m;

    /* a reload keeps the zone, and so the counters */

    if (data) {
        shm_zone->data = data;
        ngx_http_loyalty_metrics = data;
        ngx_http_loyalty_metrics_shpool =
                                    (ngx_slab_pool_t *) shm_zone->shm.addr;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    ngx_http_loyalty_metrics_shpool = shpool;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        ngx_http_loyalty_metrics = shpool->data;
        return NGX_OK;
    }

    m = ngx_slab_calloc(shpool, sizeof(ngx_http_loyalty_metrics_t));
    if (m == NULL) {
        return NGX_ERROR;
    }

    shpool->data = m;
    shm_zone->data = m;
    ngx_http_loyalty_metrics = m;

    return NGX_OK;
}


/* a Redis node's counters, by "ip:port": taken the first time it is used */

ngx_http_loyalty_node_metrics_t *
ngx_http_loyalty_metrics_node(ngx_str_t *name)
{
    size_t                            len;
    ngx_uint_t                        i;
    ngx_http_loyalty_metrics_t       *m;
    ngx_http_loyalty_node_metrics_t  *nm;

    m = ngx_http_loyalty_metrics;

    if (m == NULL || ngx_http_loyalty_metrics_shpool == NULL) {
        return NULL;
    }

    len = ngx_min(name->len, sizeof(nm->name) - 1);

    ngx_shmtx_lock(&ngx_http_loyalty_metrics_shpool->mutex);

    for (i = 0; i < m->nnodes; i++) {
        nm = &m->nodes[i];

        if (ngx_strncmp(nm->name, name->data, len) == 0
            && nm->name[len] == '\0')
        {
            goto done;
        }
    }

    if (m->nnodes == NGX_HTTP_LOYALTY_METRICS_NODES) {
        nm = NULL;
        goto done;
    }

    nm = &m->nodes[m->nnodes];
    ngx_memcpy(nm->name, name->data, len);
    nm->name[len] = '\0';

    ngx_memory_barrier();
    m->nnodes++;

done:

    ngx_shmtx_unlock(&ngx_http_loyalty_metrics_shpool->mutex);

    return nm;
}
