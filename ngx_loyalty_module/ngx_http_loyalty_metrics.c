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
#include "ngx_http_loyalty_metrics.h"


#define NGX_HTTP_LOYALTY_METRICS_ZONE_SIZE  (8 * ngx_pagesize)

/* the first buffer for a page of metrics, and the most ever tried: 64
 * nodes with the longest names, escaped, take well under 128 KiB */
#define NGX_HTTP_LOYALTY_METRICS_START_SIZE  16384
#define NGX_HTTP_LOYALTY_METRICS_MAX_SIZE    (1024 * 1024)


/* what a family's value is in ngx_http_loyalty_metrics_t */
typedef enum {
    NGX_HTTP_LOYALTY_METRIC_VALUE = 0,         /* one ngx_atomic_t */
    NGX_HTTP_LOYALTY_METRIC_LABELED,           /* an array, one per label */
    NGX_HTTP_LOYALTY_METRIC_HISTOGRAM          /* latency buckets and sum */
} ngx_http_loyalty_metric_kind_e;


/*
 * One metric family, in the order both formats print them: the
 * Prometheus name (after "nginx_loyalty_"), type and help; its key in
 * the JSON object, and the JSON object its member opens before it
 * ("redis") or closes after it.
 */
typedef struct {
    char                            *name;
    char                            *type;
    char                            *help;
    char                            *json;
    char                            *json_open;
    ngx_uint_t                       json_close;
    ngx_http_loyalty_metric_kind_e   kind;
    size_t                           offset;   /* in the snapshot */
    char                            *label;    /* label name */
    char                           **labels;   /* label values */
    ngx_uint_t                       first;    /* labels[first .. last - 1] */
    ngx_uint_t                       last;
} ngx_http_loyalty_metric_family_t;


/*
 * One counter of a Redis node.  Prometheus: family
 * nginx_loyalty_redis_node_<name>_total, a series per node (and kind);
 * a NULL help continues the family above it.  JSON: a member, named by
 * the kind when there is one, of the node's object.
 */
typedef struct {
    char                            *name;
    char                            *help;
    char                            *kind;
    size_t                           offset;   /* in node_metrics_t */
} ngx_http_loyalty_node_counter_t;


static ngx_int_t ngx_http_loyalty_metrics_handler(ngx_http_request_t *r);
static u_char *ngx_http_loyalty_metrics_text(u_char *p, u_char *last,
    ngx_http_loyalty_metrics_t *m);
static u_char *ngx_http_loyalty_metrics_nodes_text(u_char *p, u_char *last,
    ngx_http_loyalty_metrics_t *m);
static u_char *ngx_http_loyalty_metrics_json(u_char *p, u_char *last,
    ngx_http_loyalty_metrics_t *m);
static u_char *ngx_http_loyalty_metrics_nodes_json(u_char *p, u_char *last,
    ngx_http_loyalty_metrics_t *m);
static u_char *ngx_http_loyalty_metrics_escape(u_char *dst,
    ngx_http_loyalty_node_metrics_t *nm, ngx_uint_t json);
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


#define ngx_http_loyalty_metric(field)                                      \
    offsetof(ngx_http_loyalty_metrics_t, field)

/* a family of one series, a plain member in JSON */
#define ngx_http_loyalty_metric_value(name, type, json, field, help)        \
    { name, type, help, json, NULL, 0, NGX_HTTP_LOYALTY_METRIC_VALUE,       \
      ngx_http_loyalty_metric(field), NULL, NULL, 0, 0 }

static ngx_http_loyalty_metric_family_t  ngx_http_loyalty_metric_families[] = {

    { "lookups_total", "counter",
      "Customer lookups by outcome ($loyalty_status).",
      "lookups", NULL, 0, NGX_HTTP_LOYALTY_METRIC_LABELED,
      ngx_http_loyalty_metric(lookups), "status",
      ngx_http_loyalty_status_labels, 1, NGX_HTTP_LOYALTY_STATUSES },

    ngx_http_loyalty_metric_value("lookups_in_flight", "gauge",
        "lookups_in_flight", in_flight,
        "Lookups waiting for Redis now."),

    { "redis_commands_total", "counter",
      "Redis commands sent.",
      "commands", "redis", 0, NGX_HTTP_LOYALTY_METRIC_VALUE,
      ngx_http_loyalty_metric(commands), NULL, NULL, 0, 0 },

    ngx_http_loyalty_metric_value("redis_replies_total", "counter",
        "replies", replies,
        "Redis replies received."),

    { "redis_errors_total", "counter",
      "Redis errors by kind: connect failed, connection closed, protocol "
      "error, error reply, invalid record, AUTH or SELECT refused.",
      "errors", NULL, 0, NGX_HTTP_LOYALTY_METRIC_LABELED,
      ngx_http_loyalty_metric(errors), "kind",
      ngx_http_loyalty_error_labels, 0, NGX_HTTP_LOYALTY_ERRORS },

    ngx_http_loyalty_metric_value("redis_timeouts_total", "counter",
        "timeouts", timeouts,
        "Redis commands that got no reply within loyalty_redis_timeout."),

    ngx_http_loyalty_metric_value("redis_reconnects_total", "counter",
        "reconnects", reconnects,
        "Connection attempts after a Redis connection failed or was lost."),

    ngx_http_loyalty_metric_value("redis_connections", "gauge",
        "connections", connections,
        "Open Redis connections of all workers."),

    { "redis_latency_seconds", "histogram",
      "Redis round trip, from sending a command to its reply.",
      "latency_seconds", NULL, 1, NGX_HTTP_LOYALTY_METRIC_HISTOGRAM,
      ngx_http_loyalty_metric(latency), "le",
      ngx_http_loyalty_latency_labels, 0, NGX_HTTP_LOYALTY_LATENCY_BUCKETS },

    { "cache_lookups_total", "counter",
      "Cache outcomes of lookups ($loyalty_cache_status).",
      "cache", NULL, 0, NGX_HTTP_LOYALTY_METRIC_LABELED,
      ngx_http_loyalty_metric(cache), "status",
      ngx_http_loyalty_cache_labels, 1, NGX_HTTP_LOYALTY_CACHE_STATUSES },

    ngx_http_loyalty_metric_value("coalesced_total", "counter",
        "coalesced", coalesced,
        "Lookups that joined the same customer's Redis command already in "
        "flight."),

    ngx_http_loyalty_metric_value("invalidations_total", "counter",
        "invalidations", invalidations,
        "Invalidation messages received (each worker receives each "
        "message)."),

    ngx_http_loyalty_metric_value("breaker_opens_total", "counter",
        "breaker_opens", breaker_opens,
        "Times a worker's circuit breaker opened."),

    ngx_http_loyalty_metric_value("breakers_open", "gauge",
        "breakers_open", breakers_open,
        "Circuit breakers open now, summed over workers and Redis servers."),

    ngx_http_loyalty_metric_value("log_suppressed_total", "counter",
        "log_suppressed", log_suppressed,
        "Error log lines held back by the flood guard."),

    ngx_http_loyalty_metric_value("cluster_map_refreshes_total", "counter",
        "map_refreshes", map_refreshes,
        "Redis Cluster slot maps loaded (CLUSTER SLOTS), all workers.")
};


#define ngx_http_loyalty_node_metric(field)                                 \
    offsetof(ngx_http_loyalty_node_metrics_t, field)

static ngx_http_loyalty_node_counter_t  ngx_http_loyalty_node_counters[] = {
    { "commands", "Commands sent to the node.", NULL,
      ngx_http_loyalty_node_metric(commands) },
    { "replies", "Replies received from the node.", NULL,
      ngx_http_loyalty_node_metric(replies) },
    { "errors", "Commands whose connection to the node failed.", NULL,
      ngx_http_loyalty_node_metric(errors) },
    { "timeouts", "Commands the node did not answer in time.", NULL,
      ngx_http_loyalty_node_metric(timeouts) },
    { "redirects", "Redis Cluster redirections the node answered with.",
      "moved", ngx_http_loyalty_node_metric(moved) },
    { "redirects", NULL, "ask", ngx_http_loyalty_node_metric(ask) }
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
    size_t                       size;
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

    m->nnodes = ngx_min(m->nnodes, NGX_HTTP_LOYALTY_METRICS_NODES);

    /*
     * Every write is bounded by the buffer's end.  Output that reaches
     * the end may have been cut short: it is built again in twice the
     * room, so nothing is sent truncated, whatever the node names.
     */

    size = NGX_HTTP_LOYALTY_METRICS_START_SIZE;

    for ( ;; ) {
        b = ngx_create_temp_buf(r->pool, size);
        if (b == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        b->last = json ? ngx_http_loyalty_metrics_json(b->pos, b->end, m)
                       : ngx_http_loyalty_metrics_text(b->pos, b->end, m);

        if (b->last < b->end) {
            break;
        }

        (void) ngx_pfree(r->pool, b->start);

        if (size >= NGX_HTTP_LOYALTY_METRICS_MAX_SIZE) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "loyalty metrics do not fit in %uz bytes", size);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        size *= 2;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "loyalty metrics: %uz bytes", (size_t) (b->last - b->pos));

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


/* Prometheus text exposition format, family by family */

static u_char *
ngx_http_loyalty_metrics_text(u_char *p, u_char *last,
    ngx_http_loyalty_metrics_t *m)
{
    ngx_uint_t                         i, k, sum;
    ngx_atomic_t                      *v;
    ngx_http_loyalty_metric_family_t  *f;

    for (k = 0; k < sizeof(ngx_http_loyalty_metric_families)
                    / sizeof(ngx_http_loyalty_metric_family_t); k++)
    {
        f = &ngx_http_loyalty_metric_families[k];
        v = (ngx_atomic_t *) ((u_char *) m + f->offset);

        p = ngx_slprintf(p, last, "# HELP nginx_loyalty_%s %s\n"
                         "# TYPE nginx_loyalty_%s %s\n",
                         f->name, f->help, f->name, f->type);

        switch (f->kind) {

        case NGX_HTTP_LOYALTY_METRIC_VALUE:
            p = ngx_slprintf(p, last, "nginx_loyalty_%s %uA\n",
                             f->name, *v);
            break;

        case NGX_HTTP_LOYALTY_METRIC_LABELED:
            for (i = f->first; i < f->last; i++) {
                p = ngx_slprintf(p, last, "nginx_loyalty_%s{%s=\"%s\"} %uA\n",
                                 f->name, f->label, f->labels[i], v[i]);
            }
            break;

        default: /* NGX_HTTP_LOYALTY_METRIC_HISTOGRAM */
            sum = 0;

            for (i = f->first; i < f->last; i++) {
                sum += v[i];
                p = ngx_slprintf(p, last, "nginx_loyalty_%s_bucket"
                                 "{%s=\"%s\"} %ui\n",
                                 f->name, f->label, f->labels[i], sum);
            }

            p = ngx_slprintf(p, last, "nginx_loyalty_%s_sum %uA.%06uA\n"
                             "nginx_loyalty_%s_count %ui\n",
                             f->name, m->latency_sum_us / 1000000,
                             m->latency_sum_us % 1000000, f->name, sum);
            break;
        }
    }

    return ngx_http_loyalty_metrics_nodes_text(p, last, m);
}


/* per Redis node: one series per node and counter */

static u_char *
ngx_http_loyalty_metrics_nodes_text(u_char *p, u_char *last,
    ngx_http_loyalty_metrics_t *m)
{
    u_char                           *name_end;
    u_char                            name[6 * sizeof(m->nodes[0].name)];
    ngx_uint_t                        i, k, first, end, n;
    ngx_atomic_t                     *v;
    ngx_http_loyalty_node_counter_t  *nc;

    nc = ngx_http_loyalty_node_counters;
    n = sizeof(ngx_http_loyalty_node_counters)
        / sizeof(ngx_http_loyalty_node_counter_t);

    for (first = 0; first < n; first = end) {

        /* a family: a counter with help and those continuing it */

        for (end = first + 1; end < n && nc[end].help == NULL; end++) {
            /* void */
        }

        p = ngx_slprintf(p, last, "# HELP nginx_loyalty_redis_node_%s_total "
                         "%s\n"
                         "# TYPE nginx_loyalty_redis_node_%s_total counter\n",
                         nc[first].name, nc[first].help, nc[first].name);

        for (i = 0; i < m->nnodes; i++) {
            name_end = ngx_http_loyalty_metrics_escape(name, &m->nodes[i], 0);

            for (k = first; k < end; k++) {
                v = (ngx_atomic_t *) ((u_char *) &m->nodes[i] + nc[k].offset);

                p = ngx_slprintf(p, last, "nginx_loyalty_redis_node_%s_total"
                                 "{node=\"%*s\"%s%s%s} %uA\n",
                                 nc[k].name, (size_t) (name_end - name), name,
                                 nc[k].kind ? ",kind=\"" : "",
                                 nc[k].kind ? nc[k].kind : "",
                                 nc[k].kind ? "\"" : "", *v);
            }
        }
    }

    return p;
}


/* the same families as one JSON object, grouped as the table says */

static u_char *
ngx_http_loyalty_metrics_json(u_char *p, u_char *last,
    ngx_http_loyalty_metrics_t *m)
{
    ngx_uint_t                         i, k, sum;
    ngx_atomic_t                      *v;
    ngx_http_loyalty_metric_family_t  *f;

    p = ngx_slprintf(p, last, "{");

    for (k = 0; k < sizeof(ngx_http_loyalty_metric_families)
                    / sizeof(ngx_http_loyalty_metric_family_t); k++)
    {
        f = &ngx_http_loyalty_metric_families[k];
        v = (ngx_atomic_t *) ((u_char *) m + f->offset);

        p = ngx_slprintf(p, last, "%s", k ? "," : "");

        if (f->json_open) {
            p = ngx_slprintf(p, last, "\"%s\":{", f->json_open);
        }

        p = ngx_slprintf(p, last, "\"%s\":", f->json);

        switch (f->kind) {

        case NGX_HTTP_LOYALTY_METRIC_VALUE:
            p = ngx_slprintf(p, last, "%uA", *v);
            break;

        case NGX_HTTP_LOYALTY_METRIC_LABELED:
            p = ngx_slprintf(p, last, "{");

            for (i = f->first; i < f->last; i++) {
                p = ngx_slprintf(p, last, "%s\"%s\":%uA",
                                 i > f->first ? "," : "", f->labels[i],
                                 v[i]);
            }

            p = ngx_slprintf(p, last, "}");
            break;

        default: /* NGX_HTTP_LOYALTY_METRIC_HISTOGRAM */
            p = ngx_slprintf(p, last, "{\"buckets\":{");

            sum = 0;

            for (i = f->first; i < f->last; i++) {
                sum += v[i];
                p = ngx_slprintf(p, last, "%s\"%s\":%ui",
                                 i > f->first ? "," : "", f->labels[i], sum);
            }

            p = ngx_slprintf(p, last, "},\"sum\":%uA.%06uA,\"count\":%ui}",
                             m->latency_sum_us / 1000000,
                             m->latency_sum_us % 1000000, sum);
            break;
        }

        if (f->json_close) {
            p = ngx_slprintf(p, last, "}");
        }
    }

    p = ngx_http_loyalty_metrics_nodes_json(p, last, m);

    return ngx_slprintf(p, last, "}\n");
}


static u_char *
ngx_http_loyalty_metrics_nodes_json(u_char *p, u_char *last,
    ngx_http_loyalty_metrics_t *m)
{
    u_char                           *name_end;
    u_char                            name[6 * sizeof(m->nodes[0].name)];
    ngx_uint_t                        i, k, n;
    ngx_atomic_t                     *v;
    ngx_http_loyalty_node_counter_t  *nc;

    nc = ngx_http_loyalty_node_counters;
    n = sizeof(ngx_http_loyalty_node_counters)
        / sizeof(ngx_http_loyalty_node_counter_t);

    p = ngx_slprintf(p, last, ",\"nodes\":{");

    for (i = 0; i < m->nnodes; i++) {
        name_end = ngx_http_loyalty_metrics_escape(name, &m->nodes[i], 1);

        p = ngx_slprintf(p, last, "%s\"%*s\":{", i ? "," : "",
                         (size_t) (name_end - name), name);

        for (k = 0; k < n; k++) {
            v = (ngx_atomic_t *) ((u_char *) &m->nodes[i] + nc[k].offset);

            p = ngx_slprintf(p, last, "%s\"%s\":%uA", k ? "," : "",
                             nc[k].kind ? nc[k].kind : nc[k].name, *v);
        }

        p = ngx_slprintf(p, last, "}");
    }

    return ngx_slprintf(p, last, "}");
}


/*
 * A node's name as a Prometheus label value (\\, \" and \n) or a JSON
 * string (ngx_escape_json): names are addresses as configured, and a
 * unix socket path may hold any byte.  dst has room for 6 bytes per byte
 * of the name, the most either escaping takes.
 */

static u_char *
ngx_http_loyalty_metrics_escape(u_char *dst,
    ngx_http_loyalty_node_metrics_t *nm, ngx_uint_t json)
{
    u_char  *s, *end;

    s = nm->name;
    end = s + ngx_strnlen(s, sizeof(nm->name));

    if (json) {
        return (u_char *) ngx_escape_json(dst, s, end - s);
    }

    while (s < end) {

        switch (*s) {

        case '\\':
        case '"':
            *dst++ = '\\';
            *dst++ = *s;
            break;

        case '\n':
            *dst++ = '\\';
            *dst++ = 'n';
            break;

        default:
            *dst++ = *s;
        }

        s++;
    }

    return dst;
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
