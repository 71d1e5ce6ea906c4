/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The only user of hiredis.  hiredis's async API runs on nginx's event
 * loop here: each redisAsyncContext's socket is an ngx_connection_t
 * registered level-triggered (redisBufferRead reads at most 16 KiB per
 * call and hides EAGAIN, so edge-triggered events would stall), commands
 * written during one event-loop pass leave in one write(2) from a posted
 * event, and every timeout is an nginx timer (hiredis 0.14 has none).
 *
 * Each worker keeps a small pool of connections per Redis node, connected
 * in init_process and reconnected with backoff.  A backend is what a
 * loyalty_redis or loyalty_redis_cluster directive names: a single node,
 * or a Redis Cluster, where each command goes to the node that serves
 * its key's hash slot and follows MOVED and ASK.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_redis.h"
#include "ngx_http_loyalty_metrics.h"
#include "ngx_http_loyalty_log.h"


#define NGX_HTTP_LOYALTY_REDIS_POOL         2      /* connections per node */
#define NGX_HTTP_LOYALTY_REDIS_MAX_ARGS     16
#define NGX_HTTP_LOYALTY_REDIS_BACKOFF_MIN  10     /* ms */
#define NGX_HTTP_LOYALTY_REDIS_BACKOFF_MAX  500    /* ms */
#define NGX_HTTP_LOYALTY_REDIS_REPLY_POOL   4096   /* bytes, first block */

/*
 * A connection whose oldest command has waited this long (ms) without a
 * reply is dropped and reconnected: Redis is hung, and keeping it would
 * pile up commands without bound.
 */
#define NGX_HTTP_LOYALTY_REDIS_STALL        1000

/* the subscriber connection carries no commands: it subscribes again
 * this often (ms) to find out when it is dead; hiredis 0.14 cannot route
 * a PING's reply on a subscribed connection, a SUBSCRIBE's it can */
#define NGX_HTTP_LOYALTY_REDIS_SUB_PING     5000


#define NGX_HTTP_LOYALTY_CLUSTER_SLOTS      16384
#define NGX_HTTP_LOYALTY_CLUSTER_REDIRECTS  3      /* per command */
#define NGX_HTTP_LOYALTY_CLUSTER_REFRESH    250    /* ms between refreshes
                                                    * while nodes fail */
#define NGX_HTTP_LOYALTY_CLUSTER_PERIOD     10000  /* ms, routine refresh */


typedef struct ngx_http_loyalty_redis_node_s  ngx_http_loyalty_redis_node_t;
typedef struct ngx_http_loyalty_redis_conn_s  ngx_http_loyalty_redis_conn_t;
typedef struct ngx_http_loyalty_cluster_s     ngx_http_loyalty_cluster_t;


struct ngx_http_loyalty_redis_conn_s {
    redisAsyncContext               *ac;
    ngx_connection_t                *connection;
    ngx_http_loyalty_redis_node_t   *node;
    ngx_queue_t                      cmds;        /* sent, oldest first */
    ngx_event_t                      flush;       /* one write per pass */
    ngx_event_t                      reconnect;
    ngx_msec_t                       backoff;
    ngx_int_t                        failure;     /* why the last one ended */

    unsigned                         connected:1;
    unsigned                         writing:1;   /* inside a hiredis write */
    unsigned                         closing:1;   /* we dropped it */
    unsigned                         refused:1;   /* AUTH/SELECT failed */
    unsigned                         subscriber:1;
};


struct ngx_http_loyalty_redis_node_s {
    ngx_str_t                        name;        /* for logs */
    ngx_str_t                        host;        /* IP or unix path, NUL */
    int                              port;        /* 0: unix socket */
    ngx_str_t                        user;
    ngx_str_t                        password;    /* NULL data: no AUTH */
    ngx_int_t                        db;          /* 0: no SELECT */
    ngx_msec_t                       connect_timeout;
    ngx_log_t                       *log;
    ngx_http_loyalty_redis_conn_t    conns[NGX_HTTP_LOYALTY_REDIS_POOL];

    /* the circuit breaker, per worker */
    ngx_uint_t                       threshold;   /* 0: no breaker */
    ngx_msec_t                       cooldown;
    ngx_uint_t                       failures;    /* consecutive */
    ngx_event_t                      probe;
    ngx_http_loyalty_redis_cmd_t    *probe_cmd;

    /* invalidation messages */
    ngx_http_loyalty_redis_t        *backend;
    ngx_str_t                        channel;     /* empty: none */
    ngx_http_loyalty_redis_conn_t    sub;
    ngx_msec_t                       sub_ping;    /* sent, or 0 */
    ngx_msec_t                       sub_ping_after;

    ngx_http_loyalty_cluster_t      *cluster;     /* NULL: single Redis */
    ngx_http_loyalty_node_metrics_t *metrics;

    unsigned                         exiting:1;
    unsigned                         open:1;      /* the breaker */
    unsigned                         subscribed:1;
    unsigned                         readonly:1;  /* READONLY first */
};


/*
 * A Redis Cluster, as one worker sees it: the nodes it knows (the seeds
 * first, then those CLUSTER SLOTS or a redirection named) and, for every
 * hash slot, its master and a replica.
 */

struct ngx_http_loyalty_cluster_s {
    ngx_array_t                      seeds;       /* node *, configuration */
    ngx_http_loyalty_redis_node_t    tmpl;        /* what new nodes copy */
    ngx_http_loyalty_redis_node_t  **nodes;
    ngx_uint_t                       nnodes;
    ngx_uint_t                       nalloc;
    ngx_http_loyalty_redis_node_t  **masters;     /* by slot */
    ngx_http_loyalty_redis_node_t  **replicas;    /* by slot, or NULL */
    ngx_event_t                      refresh;
    ngx_msec_t                       refreshed;   /* last CLUSTER SLOTS */
    ngx_http_loyalty_redis_cmd_t    *refresh_cmd;
    ngx_http_loyalty_redis_node_t   *refresh_node;
    ngx_uint_t                       next;        /* node asked next */
    ngx_http_loyalty_redis_t        *backend;

    unsigned                         read_replicas:1;
    unsigned                         loaded:1;
};


struct ngx_http_loyalty_redis_s {
    ngx_str_t                          name;
    ngx_http_loyalty_redis_node_t     *node;      /* single Redis */
    ngx_http_loyalty_cluster_t        *cluster;   /* or a cluster */
    ngx_http_loyalty_redis_message_pt  message;   /* invalidations */
    void                              *message_data;
};


struct ngx_http_loyalty_redis_cmd_s {
    ngx_queue_t                        queue;     /* in conn->cmds */
    ngx_http_loyalty_redis_conn_t     *conn;
    ngx_http_loyalty_redis_handler_pt  handler;   /* NULL: nobody waits */
    void                              *data;
    ngx_pool_t                        *pool;

    /*
     * In a cluster: what a redirection needs to send it again.  The same
     * object goes to the other node, so the requester's handle stays
     * valid; the transport never keeps the requester's pointer to it.
     */
    ngx_uint_t                         argc;
    ngx_str_t                         *argv;      /* one allocation */
    ngx_msec_t                         deadline;
    ngx_uint_t                         redirects;
    unsigned                           replica:1;

    ngx_event_t                        timer;
    ngx_msec_t                         sent;
    ngx_uint_t                         sent_us;   /* for the histogram */
};


static ngx_http_loyalty_redis_conn_t *ngx_http_loyalty_redis_pick(
    ngx_http_loyalty_redis_node_t *node);
static void ngx_http_loyalty_redis_reply_handler(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_loyalty_redis_reply(ngx_http_loyalty_redis_cmd_t *cmd,
    redisReply *rr);
static ngx_int_t ngx_http_loyalty_redis_view(ngx_pool_t *pool,
    redisReply *rr, ngx_http_loyalty_reply_t *reply);
static void ngx_http_loyalty_redis_timeout_handler(ngx_event_t *ev);
static void ngx_http_loyalty_redis_drop(ngx_http_loyalty_redis_conn_t *conn,
    ngx_int_t failure);

static void ngx_http_loyalty_redis_connect(
    ngx_http_loyalty_redis_conn_t *conn);
static void ngx_http_loyalty_redis_setup(ngx_http_loyalty_redis_conn_t *conn);
static void ngx_http_loyalty_redis_setup_handler(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_loyalty_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_loyalty_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_http_loyalty_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_http_loyalty_redis_read_handler(ngx_event_t *ev);
static void ngx_http_loyalty_redis_write_handler(ngx_event_t *ev);
static void ngx_http_loyalty_redis_flush_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_loyalty_redis_send_node(
    ngx_http_loyalty_redis_node_t *node, ngx_pool_t *pool, ngx_log_t *log,
    ngx_msec_t timeout, ngx_uint_t argc, ngx_str_t *argv,
    ngx_http_loyalty_redis_handler_pt handler, void *data,
    ngx_http_loyalty_redis_cmd_t **cmdp, ngx_str_t *err);
static ngx_http_loyalty_redis_conn_t *ngx_http_loyalty_redis_conn(
    ngx_http_loyalty_redis_node_t *node);
static ngx_int_t ngx_http_loyalty_redis_queue(
    ngx_http_loyalty_redis_conn_t *conn, ngx_http_loyalty_redis_cmd_t *cmd,
    ngx_msec_t timeout, ngx_uint_t argc, ngx_str_t *argv);
static void ngx_http_loyalty_redis_failed(ngx_http_loyalty_redis_node_t *node);
static void ngx_http_loyalty_redis_succeeded(
    ngx_http_loyalty_redis_node_t *node);
static void ngx_http_loyalty_redis_probe_handler(ngx_event_t *ev);
static void ngx_http_loyalty_redis_probe_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err);
static void ngx_http_loyalty_redis_sub_handler(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_loyalty_redis_cmd_free(ngx_http_loyalty_redis_cmd_t *cmd);
static void ngx_http_loyalty_redis_exit_node(
    ngx_http_loyalty_redis_node_t *node);
static void ngx_http_loyalty_cluster_free(ngx_http_loyalty_cluster_t *c);
static void ngx_http_loyalty_redis_tick_node(
    ngx_http_loyalty_redis_node_t *node);
static void ngx_http_loyalty_redis_init_node(
    ngx_http_loyalty_redis_node_t *node, ngx_cycle_t *cycle);
static ngx_int_t ngx_http_loyalty_cluster_send(ngx_http_loyalty_redis_t *rd,
    ngx_pool_t *pool, ngx_log_t *log, ngx_msec_t timeout, ngx_uint_t argc,
    ngx_str_t *argv, ngx_http_loyalty_redis_handler_pt handler, void *data,
    ngx_http_loyalty_redis_cmd_t **cmdp, ngx_str_t *err);
static ngx_int_t ngx_http_loyalty_cluster_resend(
    ngx_http_loyalty_redis_cmd_t *cmd, ngx_http_loyalty_redis_node_t *node,
    ngx_uint_t asking);
static ngx_int_t ngx_http_loyalty_cluster_redirect(
    ngx_http_loyalty_redis_cmd_t *cmd, redisReply *rr);
static ngx_str_t *ngx_http_loyalty_cluster_key(ngx_uint_t argc,
    ngx_str_t *argv);
static ngx_uint_t ngx_http_loyalty_cluster_slot(u_char *key, size_t len);
static ngx_http_loyalty_redis_node_t *ngx_http_loyalty_cluster_node(
    ngx_http_loyalty_cluster_t *c, u_char *host, size_t len, int port);
static void ngx_http_loyalty_cluster_refresh(ngx_http_loyalty_cluster_t *c,
    ngx_msec_t delay);
static void ngx_http_loyalty_cluster_refresh_handler(ngx_event_t *ev);
static void ngx_http_loyalty_cluster_slots_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err);
static ngx_http_loyalty_redis_node_t **ngx_http_loyalty_redis_nodes(
    ngx_http_loyalty_redis_t *rd, ngx_uint_t *n);
static void ngx_http_loyalty_redis_init_conn(
    ngx_http_loyalty_redis_conn_t *conn, ngx_http_loyalty_redis_node_t *node,
    ngx_cycle_t *cycle);

static void ngx_http_loyalty_redis_add_read(void *privdata);
static void ngx_http_loyalty_redis_del_read(void *privdata);
static void ngx_http_loyalty_redis_add_write(void *privdata);
static void ngx_http_loyalty_redis_del_write(void *privdata);
static void ngx_http_loyalty_redis_cleanup(void *privdata);

static ngx_int_t ngx_http_loyalty_redis_str_eq(ngx_str_t *a, ngx_str_t *b);
static ngx_int_t ngx_http_loyalty_redis_same(
    ngx_http_loyalty_redis_node_t *node, ngx_http_loyalty_redis_conf_t *rc);
static ngx_http_loyalty_redis_t *ngx_http_loyalty_cluster_add(ngx_conf_t *cf,
    ngx_http_loyalty_redis_conf_t *rc);
static ngx_int_t ngx_http_loyalty_redis_parse_address(ngx_conf_t *cf,
    ngx_str_t *address, ngx_http_loyalty_redis_node_t *node,
    ngx_uint_t cluster);


static ngx_str_t  ngx_http_loyalty_redis_err_unavailable =
    ngx_string("not connected, waiting to reconnect");
static ngx_str_t  ngx_http_loyalty_redis_err_timed_out =
    ngx_string("timed out");
static ngx_str_t  ngx_http_loyalty_redis_err_stalled =
    ngx_string("connection dropped: no reply in time");
static ngx_str_t  ngx_http_loyalty_redis_err_closed =
    ngx_string("connection closed");
static ngx_str_t  ngx_http_loyalty_redis_err_nomem =
    ngx_string("out of memory");
static ngx_str_t  ngx_http_loyalty_redis_err_refused =
    ngx_string("connection refused by AUTH or SELECT");
static ngx_str_t  ngx_http_loyalty_redis_err_breaker =
    ngx_string("circuit breaker open");
static ngx_str_t  ngx_http_loyalty_redis_err_exiting =
    ngx_string("the worker is shutting down");
static ngx_str_t  ngx_http_loyalty_redis_ping = ngx_string("PING");

/*
 * Set in a worker once worker_shutdown_timeout has expired: its Redis
 * connections are closed and no command is sent any more, since nothing
 * may hold the worker now.
 */
static ngx_uint_t  ngx_http_loyalty_redis_expired;

/* two call sites, one cause */
static ngx_http_loyalty_log_guard_t  ngx_http_loyalty_redis_connect_guard =
    { "redis connect failed", 0, 0, NGX_LOG_ERR, NULL, 0 };

/* what the worker's graceful shutdown calls, set in init_process */
static ngx_http_loyalty_redis_shutdown_pt   ngx_http_loyalty_redis_stop;
static void                                *ngx_http_loyalty_redis_stop_data;


/*
 * Returns NGX_AGAIN when the command is on its way (the handler will be
 * called), or at once NGX_HTTP_LOYALTY_REDIS_TIMEOUT or _FAILED (no
 * connection: as the last one ended), _BYPASS (the breaker is open) with
 * err set, or NGX_ERROR.
 *
 * pool holds the element arrays of an array reply (strings always point
 * into hiredis's buffer, valid while the handler runs).  Without a pool
 * (NULL), a pool is made for each such reply and destroyed when the
 * handler returns: the reply is then valid only while the handler runs.
 * Commands that are not a request's pass NULL rather than a long-lived
 * pool such as ngx_cycle->pool, which would grow with every reply.
 *
 * cmdp, if not NULL, gets the command's handle with NGX_AGAIN, during
 * this call only: the transport keeps no pointer to it, so it may be a
 * local.  The handle stays the same object through cluster redirections
 * and is valid until the handler has returned or the command is
 * cancelled.
 */

ngx_int_t
ngx_http_loyalty_redis_send(ngx_http_loyalty_redis_t *rd, ngx_pool_t *pool,
    ngx_log_t *log, ngx_msec_t timeout, ngx_uint_t argc, ngx_str_t *argv,
    ngx_http_loyalty_redis_handler_pt handler, void *data,
    ngx_http_loyalty_redis_cmd_t **cmdp, ngx_str_t *err)
{
    ngx_http_loyalty_redis_node_t  *node;

    if (rd->cluster != NULL) {
        return ngx_http_loyalty_cluster_send(rd, pool, log, timeout, argc,
                                             argv, handler, data, cmdp, err);
    }

    node = rd->node;

    if (node->open) {
        *err = ngx_http_loyalty_redis_err_breaker;
        return NGX_HTTP_LOYALTY_REDIS_BYPASS;
    }

    return ngx_http_loyalty_redis_send_node(node, pool, log, timeout, argc,
                                            argv, handler, data, cmdp, err);
}


static ngx_int_t
ngx_http_loyalty_redis_send_node(ngx_http_loyalty_redis_node_t *node,
    ngx_pool_t *pool, ngx_log_t *log, ngx_msec_t timeout, ngx_uint_t argc,
    ngx_str_t *argv, ngx_http_loyalty_redis_handler_pt handler, void *data,
    ngx_http_loyalty_redis_cmd_t **cmdp, ngx_str_t *err)
{
    ngx_http_loyalty_redis_cmd_t   *cmd;
    ngx_http_loyalty_redis_conn_t  *conn;

    if (argc > NGX_HTTP_LOYALTY_REDIS_MAX_ARGS) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "loyalty redis command with %ui arguments", argc);
        return NGX_ERROR;
    }

    if (ngx_http_loyalty_redis_expired) {
        *err = ngx_http_loyalty_redis_err_exiting;
        return NGX_HTTP_LOYALTY_REDIS_FAILED;
    }

    conn = ngx_http_loyalty_redis_conn(node);

    if (conn == NULL) {
        *err = ngx_http_loyalty_redis_err_unavailable;
        return node->conns[0].failure;
    }

    cmd = ngx_calloc(sizeof(ngx_http_loyalty_redis_cmd_t), log);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    cmd->handler = handler;
    cmd->data = data;
    cmd->pool = pool;

    cmd->timer.handler = ngx_http_loyalty_redis_timeout_handler;
    cmd->timer.data = cmd;
    cmd->timer.log = log;

    if (ngx_http_loyalty_redis_queue(conn, cmd, timeout, argc, argv)
        != NGX_OK)
    {
        ngx_free(cmd);
        *err = ngx_http_loyalty_redis_err_closed;
        return NGX_HTTP_LOYALTY_REDIS_FAILED;
    }

    /* the requester's handle: written now, never later */

    if (cmdp != NULL) {
        *cmdp = cmd;
    }

    return NGX_AGAIN;
}


/* the connection a command for node goes on; none is a failure */

static ngx_http_loyalty_redis_conn_t *
ngx_http_loyalty_redis_conn(ngx_http_loyalty_redis_node_t *node)
{
    ngx_http_loyalty_redis_conn_t  *conn;

    conn = ngx_http_loyalty_redis_pick(node);

    if (conn == NULL) {
        /* a failure like any other for the breaker */
        ngx_http_loyalty_redis_failed(node);

        if (node->metrics) {
            (void) ngx_atomic_fetch_add(&node->metrics->errors, 1);
        }
    }

    return conn;
}


/*
 * Puts cmd on conn, for timeout ms: a new command, or one a cluster
 * redirected.  hiredis copies the words into its output buffer at once
 * and calls the reply handler with cmd when the reply comes.
 */

static ngx_int_t
ngx_http_loyalty_redis_queue(ngx_http_loyalty_redis_conn_t *conn,
    ngx_http_loyalty_redis_cmd_t *cmd, ngx_msec_t timeout, ngx_uint_t argc,
    ngx_str_t *argv)
{
    size_t                          lens[NGX_HTTP_LOYALTY_REDIS_MAX_ARGS];
    ngx_uint_t                      i;
    const char                     *args[NGX_HTTP_LOYALTY_REDIS_MAX_ARGS];
    ngx_http_loyalty_redis_node_t  *node;

    node = conn->node;

    for (i = 0; i < argc; i++) {
        args[i] = (const char *) argv[i].data;
        lens[i] = argv[i].len;
    }

    if (redisAsyncCommandArgv(conn->ac, ngx_http_loyalty_redis_reply_handler,
                              cmd, (int) argc, args, lens)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    cmd->conn = conn;
    cmd->sent = ngx_current_msec;
    cmd->sent_us = ngx_http_loyalty_metrics_now_us();

    ngx_http_loyalty_metric_add(commands, 1);

    /* a command queued on a connection still being set up may also wait
     * for the connect */

    ngx_add_timer(&cmd->timer, conn->connected
                               ? timeout
                               : timeout + node->connect_timeout);

    ngx_queue_insert_tail(&conn->cmds, &cmd->queue);

    if (node->metrics) {
        (void) ngx_atomic_fetch_add(&node->metrics->commands, 1);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, cmd->timer.log, 0,
                   "loyalty redis %V: sent %V, conn %p",
                   &node->name, &argv[0], conn);

    return NGX_OK;
}


void
ngx_http_loyalty_redis_cancel(ngx_http_loyalty_redis_cmd_t *cmd)
{
    /*
     * The requester is going away.  The command stays queued (its reply
     * must still be read off the connection) and its timer keeps running
     * as the connection's watchdog, so it must no longer point at the
     * request's pool or log.
     */

    cmd->handler = NULL;
    cmd->data = NULL;
    cmd->pool = NULL;
    cmd->timer.log = ngx_cycle->log;

    /* nobody waits for it: it must not delay a graceful shutdown */
    cmd->timer.cancelable = 1;
}


/*
 * The first connected connection takes every command: all commands of one
 * event-loop pass then leave in one write and their replies arrive in one
 * read.  The others stand by for when it fails.
 */

static ngx_http_loyalty_redis_conn_t *
ngx_http_loyalty_redis_pick(ngx_http_loyalty_redis_node_t *node)
{
    ngx_uint_t                      i;
    ngx_http_loyalty_redis_conn_t  *conn, *connecting;

    connecting = NULL;

    for (i = 0; i < NGX_HTTP_LOYALTY_REDIS_POOL; i++) {
        conn = &node->conns[i];

        if (conn->ac == NULL || conn->closing) {
            continue;
        }

        if (conn->connected) {
            return conn;
        }

        if (connecting == NULL) {
            connecting = conn;
        }
    }

    return connecting;
}


static void
ngx_http_loyalty_redis_reply_handler(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                     *rr = r;
    ngx_str_t                       err;
    ngx_int_t                       rc;
    ngx_http_loyalty_redis_cmd_t   *cmd;
    ngx_http_loyalty_redis_conn_t  *conn;

    cmd = privdata;
    conn = cmd->conn;

    ngx_queue_remove(&cmd->queue);

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    if (rr != NULL) {
        /* Redis answers: the next failure starts the backoff afresh */
        if (rr->type != REDIS_REPLY_ERROR) {
            conn->backoff = 0;
        }

        ngx_http_loyalty_redis_succeeded(conn->node);

    } else {
        ngx_http_loyalty_redis_failed(conn->node);
    }

    if (conn->node->metrics) {
        (void) ngx_atomic_fetch_add(rr ? &conn->node->metrics->replies
                                       : &conn->node->metrics->errors, 1);
    }

    if (rr != NULL) {
        ngx_http_loyalty_metric_add(replies, 1);
        ngx_http_loyalty_metrics_latency(ngx_http_loyalty_metrics_now_us()
                                         - cmd->sent_us);
    }

    if (cmd->handler == NULL) {
        ngx_http_loyalty_redis_cmd_free(cmd);
        return;
    }

    /*
     * A cluster's redirection, or a replica gone: cmd itself is queued
     * elsewhere, the requester's handle stays valid for a cancel
     */

    if (conn->node->cluster != NULL) {

        if (rr != NULL && rr->type == REDIS_REPLY_ERROR
            && ngx_http_loyalty_cluster_redirect(cmd, rr) == NGX_OK)
        {
            return;
        }

        if (rr == NULL && cmd->replica
            && !(conn->closing
                 && conn->failure == NGX_HTTP_LOYALTY_REDIS_TIMEOUT)
            && ngx_http_loyalty_cluster_resend(cmd, NULL, 0) == NGX_OK)
        {
            return;
        }
    }

    if (rr == NULL) {
        if (conn->closing && conn->failure == NGX_HTTP_LOYALTY_REDIS_TIMEOUT)
        {
            rc = NGX_HTTP_LOYALTY_REDIS_TIMEOUT;
            err = ngx_http_loyalty_redis_err_stalled;

        } else if (conn->refused) {
            rc = NGX_HTTP_LOYALTY_REDIS_FAILED;
            err = ngx_http_loyalty_redis_err_refused;

        } else {
            rc = NGX_HTTP_LOYALTY_REDIS_FAILED;

            if (ac->c.err) {
                err.data = (u_char *) ac->c.errstr;
                err.len = ngx_strlen(ac->c.errstr);

            } else {
                err = ngx_http_loyalty_redis_err_closed;
            }
        }

        cmd->handler(cmd->data, rc, NULL, &err);

    } else {
        ngx_http_loyalty_redis_reply(cmd, rr);
    }

    ngx_http_loyalty_redis_cmd_free(cmd);
}


/*
 * Hands a reply to the handler.  The element arrays of an array reply
 * come from the command's pool, or, for a command sent without one, from
 * a pool made for this reply and destroyed when the handler returns: a
 * worker's commands that are not a request's (flushes, probes, the slot
 * map) leave nothing behind.
 */

static void
ngx_http_loyalty_redis_reply(ngx_http_loyalty_redis_cmd_t *cmd,
    redisReply *rr)
{
    ngx_pool_t                *pool, *temp;
    ngx_http_loyalty_reply_t   reply;

    pool = cmd->pool;
    temp = NULL;

    if (pool == NULL && rr->type == REDIS_REPLY_ARRAY && rr->elements) {
        temp = ngx_create_pool(NGX_HTTP_LOYALTY_REDIS_REPLY_POOL,
                               cmd->timer.log);
        if (temp == NULL) {
            cmd->handler(cmd->data, NGX_HTTP_LOYALTY_REDIS_FAILED, NULL,
                         &ngx_http_loyalty_redis_err_nomem);
            return;
        }

        pool = temp;
    }

    if (ngx_http_loyalty_redis_view(pool, rr, &reply) != NGX_OK) {
        cmd->handler(cmd->data, NGX_HTTP_LOYALTY_REDIS_FAILED, NULL,
                     &ngx_http_loyalty_redis_err_nomem);

    } else {
        cmd->handler(cmd->data, NGX_HTTP_LOYALTY_REDIS_REPLY, &reply, NULL);
    }

    if (temp != NULL) {
        ngx_destroy_pool(temp);
    }
}


static void
ngx_http_loyalty_redis_cmd_free(ngx_http_loyalty_redis_cmd_t *cmd)
{
    if (cmd->argv != NULL) {
        ngx_free(cmd->argv);
    }

    ngx_free(cmd);
}


static ngx_int_t
ngx_http_loyalty_redis_view(ngx_pool_t *pool, redisReply *rr,
    ngx_http_loyalty_reply_t *reply)
{
    size_t  i;

    ngx_memzero(reply, sizeof(ngx_http_loyalty_reply_t));

    switch (rr->type) {

    case REDIS_REPLY_STRING:
        reply->type = NGX_HTTP_LOYALTY_REPLY_STRING;
        break;

    case REDIS_REPLY_STATUS:
        reply->type = NGX_HTTP_LOYALTY_REPLY_STATUS;
        break;

    case REDIS_REPLY_ERROR:
        reply->type = NGX_HTTP_LOYALTY_REPLY_ERROR;
        break;

    case REDIS_REPLY_INTEGER:
        reply->type = NGX_HTTP_LOYALTY_REPLY_INTEGER;
        reply->integer = rr->integer;
        return NGX_OK;

    case REDIS_REPLY_ARRAY:
        reply->type = NGX_HTTP_LOYALTY_REPLY_ARRAY;
        reply->nelts = rr->elements;

        if (rr->elements == 0) {
            return NGX_OK;
        }

        reply->elts = ngx_palloc(pool, rr->elements
                                       * sizeof(ngx_http_loyalty_reply_t));
        if (reply->elts == NULL) {
            return NGX_ERROR;
        }

        for (i = 0; i < rr->elements; i++) {
            if (ngx_http_loyalty_redis_view(pool, rr->element[i],
                                            &reply->elts[i])
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        return NGX_OK;

    default: /* REDIS_REPLY_NIL */
        reply->type = NGX_HTTP_LOYALTY_REPLY_NIL;
        return NGX_OK;
    }

    reply->str.data = (u_char *) rr->str;
    reply->str.len = rr->len;

    return NGX_OK;
}


static void
ngx_http_loyalty_redis_timeout_handler(ngx_event_t *ev)
{
    ngx_queue_t                        *q;
    ngx_http_loyalty_redis_cmd_t       *cmd, *oldest;
    ngx_http_loyalty_redis_conn_t      *conn;
    ngx_http_loyalty_redis_handler_pt   handler;

    cmd = ev->data;
    conn = cmd->conn;

    ngx_http_loyalty_metric_add(timeouts, 1);

    if (conn->node->metrics) {
        (void) ngx_atomic_fetch_add(&conn->node->metrics->timeouts, 1);
    }

    ngx_http_loyalty_redis_failed(conn->node);

    if (cmd->handler) {
        handler = cmd->handler;
        cmd->handler = NULL;
        cmd->timer.log = ngx_cycle->log;

        handler(cmd->data, NGX_HTTP_LOYALTY_REDIS_TIMEOUT, NULL,
                &ngx_http_loyalty_redis_err_timed_out);

        cmd->data = NULL;
        cmd->pool = NULL;
    }

    /* the command stays queued: its late reply must still be consumed */

    q = ngx_queue_head(&conn->cmds);
    oldest = ngx_queue_data(q, ngx_http_loyalty_redis_cmd_t, queue);

    if (conn->connected
        && ngx_current_msec - oldest->sent >= NGX_HTTP_LOYALTY_REDIS_STALL)
    {
        ngx_http_loyalty_log_error(NGX_LOG_ERR, conn->node->log, 0,
                                   "redis stalled",
                                   "loyalty redis \"%V\" sent no reply for "
                                   "%M ms, reconnecting", &conn->node->name,
                                   ngx_current_msec - oldest->sent);

        ngx_http_loyalty_redis_drop(conn, NGX_HTTP_LOYALTY_REDIS_TIMEOUT);
    }
}


/* frees the connection's context: pending commands end with "failure" */

static void
ngx_http_loyalty_redis_drop(ngx_http_loyalty_redis_conn_t *conn,
    ngx_int_t failure)
{
    if (conn->ac == NULL || conn->closing) {
        return;
    }

    conn->closing = 1;
    conn->failure = failure;

    /* not inside a hiredis callback here: the free is immediate */

    redisAsyncFree(conn->ac);
}


static void
ngx_http_loyalty_redis_connect(ngx_http_loyalty_redis_conn_t *conn)
{
    ngx_event_t                    *rev, *wev;
    ngx_connection_t               *c;
    redisAsyncContext              *ac;
    ngx_http_loyalty_redis_node_t  *node;

    node = conn->node;

    /*
     * The host is a numeric address (checked at configuration time), so
     * hiredis's getaddrinfo() does not block on DNS; connect() itself is
     * non-blocking.
     */

    if (node->port) {
        ac = redisAsyncConnect((char *) node->host.data, node->port);

    } else {
        ac = redisAsyncConnectUnix((char *) node->host.data);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ERR, node->log, 0,
                      "loyalty redis \"%V\": cannot allocate a context",
                      &node->name);
        goto failed;
    }

    if (ac->err) {
        ngx_http_loyalty_log_guarded(&ngx_http_loyalty_redis_connect_guard,
                                     NGX_LOG_ERR, node->log, 0,
                                     "loyalty redis \"%V\" connect failed: "
                                     "%s", &node->name, ac->errstr);
        ngx_http_loyalty_metric_add(errors[NGX_HTTP_LOYALTY_ERR_CONNECT], 1);
        redisAsyncFree(ac);
        goto failed;
    }

    c = ngx_get_connection(ac->c.fd, node->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        goto failed;
    }

    c->data = conn;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    /* "idle": a graceful shutdown calls the read handler with c->close
     * set, the one place a worker learns that it is about to exit */
    c->idle = 1;

    rev = c->read;
    wev = c->write;

    rev->handler = ngx_http_loyalty_redis_read_handler;
    wev->handler = ngx_http_loyalty_redis_write_handler;
    rev->log = node->log;
    wev->log = node->log;

    conn->ac = ac;
    conn->connection = c;
    conn->connected = 0;
    conn->closing = 0;
    conn->writing = 0;
    conn->refused = 0;

    ac->data = conn;
    ac->ev.data = conn;
    ac->ev.addRead = ngx_http_loyalty_redis_add_read;
    ac->ev.delRead = ngx_http_loyalty_redis_del_read;
    ac->ev.addWrite = ngx_http_loyalty_redis_add_write;
    ac->ev.delWrite = ngx_http_loyalty_redis_del_write;
    ac->ev.cleanup = ngx_http_loyalty_redis_cleanup;

    /* setting the connect callback arms the write event: the connect is
     * complete when the socket becomes writable */

    redisAsyncSetConnectCallback(ac, ngx_http_loyalty_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_http_loyalty_redis_disconnected);

    ngx_add_timer(wev, node->connect_timeout);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, node->log, 0,
                   "loyalty redis \"%V\": connecting, fd:%d",
                   &node->name, c->fd);

    ngx_http_loyalty_redis_setup(conn);

    if (conn->subscriber) {
        (void) redisAsyncCommand(ac, ngx_http_loyalty_redis_sub_handler,
                                 conn, "SUBSCRIBE %b", node->channel.data,
                                 node->channel.len);
    }

    return;

failed:

    conn->failure = NGX_HTTP_LOYALTY_REDIS_FAILED;

    if (!node->exiting) {
        conn->backoff = ngx_min(ngx_max(conn->backoff * 2,
                                        NGX_HTTP_LOYALTY_REDIS_BACKOFF_MIN),
                                NGX_HTTP_LOYALTY_REDIS_BACKOFF_MAX);
        ngx_add_timer(&conn->reconnect, conn->backoff);
    }
}


/*
 * AUTH and SELECT go first in the output buffer of every new connection,
 * so every lookup queued after them runs authenticated and in the right
 * database, without waiting for their replies.
 */

static void
ngx_http_loyalty_redis_setup(ngx_http_loyalty_redis_conn_t *conn)
{
    int                             argc;
    char                            db[NGX_INT_T_LEN];
    size_t                          lens[3];
    const char                     *args[3];
    ngx_http_loyalty_redis_node_t  *node;

    node = conn->node;

    if (node->password.data != NULL) {
        argc = 0;
        args[argc] = "AUTH";
        lens[argc++] = 4;

        if (node->user.len) {
            args[argc] = (const char *) node->user.data;
            lens[argc++] = node->user.len;
        }

        args[argc] = (const char *) node->password.data;
        lens[argc++] = node->password.len;

        (void) redisAsyncCommandArgv(conn->ac,
                                     ngx_http_loyalty_redis_setup_handler,
                                     (void *) "AUTH", argc, args, lens);
    }

    if (node->readonly) {
        args[0] = "READONLY";
        lens[0] = 8;

        (void) redisAsyncCommandArgv(conn->ac,
                                     ngx_http_loyalty_redis_setup_handler,
                                     (void *) "READONLY", 1, args, lens);
    }

    if (node->db > 0) {
        args[0] = "SELECT";
        lens[0] = 6;
        args[1] = db;
        lens[1] = ngx_sprintf((u_char *) db, "%i", node->db) - (u_char *) db;

        (void) redisAsyncCommandArgv(conn->ac,
                                     ngx_http_loyalty_redis_setup_handler,
                                     (void *) "SELECT", 2, args, lens);
    }
}


static void
ngx_http_loyalty_redis_setup_handler(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                     *rr = r;
    const char                     *what = privdata;
    ngx_http_loyalty_redis_conn_t  *conn;

    if (rr == NULL) {
        /* the connection is going away */
        return;
    }

    conn = ac->data;

    if (rr->type != REDIS_REPLY_ERROR) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, conn->node->log, 0,
                       "loyalty redis \"%V\": %s ok",
                       &conn->node->name, what);
        return;
    }

    /*
     * Once per connection attempt; the connection is dropped and retried
     * with the usual backoff (up to NGX_HTTP_LOYALTY_REDIS_BACKOFF_MAX),
     * so wrong credentials cause neither a log flood nor a reconnect
     * storm.  Never log the password.
     */

    ngx_http_loyalty_log_error(NGX_LOG_ERR, conn->node->log, 0,
                               "redis setup refused",
                               "loyalty redis \"%V\" %s failed: \"%*s\"",
                               &conn->node->name,
                               what[0] == 'A' ? "authentication (AUTH)"
                                              : what,
                               ngx_min(rr->len, 128), rr->str);

    ngx_http_loyalty_metric_add(errors[NGX_HTTP_LOYALTY_ERR_AUTH], 1);

    if (conn->closing) {
        return;
    }

    conn->refused = 1;
    conn->closing = 1;
    conn->failure = NGX_HTTP_LOYALTY_REDIS_FAILED;

    /* inside a hiredis callback: freed when it returns */
    redisAsyncFree(ac);
}


static void
ngx_http_loyalty_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_loyalty_redis_conn_t  *conn;

    conn = ac->data;

    /*
     * Never free the context here: hiredis 0.14 uses it afterwards.  On
     * failure it frees it itself; ac->errstr is not set yet, c.errstr is.
     */

    if (status != REDIS_OK) {
        ngx_http_loyalty_log_guarded(&ngx_http_loyalty_redis_connect_guard,
                                     NGX_LOG_ERR, conn->node->log, 0,
                                     "loyalty redis \"%V\" connect failed: "
                                     "%s", &conn->node->name, ac->c.errstr);
        ngx_http_loyalty_metric_add(errors[NGX_HTTP_LOYALTY_ERR_CONNECT], 1);
        conn->failure = NGX_HTTP_LOYALTY_REDIS_FAILED;
        conn->closing = 1;
        return;
    }

    conn->connected = 1;

    ngx_http_loyalty_metric_add(connections, 1);

    if (conn->connection->write->timer_set) {
        ngx_del_timer(conn->connection->write);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, conn->node->log, 0,
                   "loyalty redis \"%V\": connected", &conn->node->name);

    /* an open breaker learns at once whether the new connection works */

    if (conn->node->open && !conn->subscriber
        && conn->node->probe_cmd == NULL)
    {
        if (conn->node->probe.timer_set) {
            ngx_del_timer(&conn->node->probe);
        }

        ngx_add_timer(&conn->node->probe, 1);
    }
}


static void
ngx_http_loyalty_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ngx_http_loyalty_redis_conn_t  *conn;

    conn = ac->data;

    /* a connection we dropped ourselves was logged when we did */

    if (status != REDIS_OK && !conn->closing) {
        ngx_http_loyalty_log_error(NGX_LOG_ERR, conn->node->log, 0,
                                   "redis connection lost",
                                   "loyalty redis \"%V\" connection lost: %s",
                                   &conn->node->name,
                                   ac->c.err ? ac->c.errstr
                                             : "closed by peer");

        if (ac->c.err == REDIS_ERR_PROTOCOL) {
            ngx_http_loyalty_metric_add(
                                     errors[NGX_HTTP_LOYALTY_ERR_PROTOCOL], 1);

        } else {
            ngx_http_loyalty_metric_add(errors[NGX_HTTP_LOYALTY_ERR_CLOSED],
                                        1);
        }
    }
}


static void
ngx_http_loyalty_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_http_loyalty_redis_conn_t  *conn;

    conn = ev->data;

    if (conn->ac != NULL || conn->node->exiting || ngx_exiting) {
        return;
    }

    ngx_http_loyalty_metric_add(reconnects, 1);

    ngx_http_loyalty_redis_connect(conn);
}


static void
ngx_http_loyalty_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t               *c;
    ngx_http_loyalty_redis_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (c->close) {
        c->close = 0;

        /*
         * worker_shutdown_timeout has expired (nginx sets c->error along
         * with c->close then, for every connection): the commands still
         * waiting end as failed, and the connection closes
         */

        if (c->error) {
            ngx_http_loyalty_redis_expired = 1;
            conn->node->exiting = 1;
            ngx_http_loyalty_redis_drop(conn, NGX_HTTP_LOYALTY_REDIS_FAILED);
            return;
        }

        /* the worker shuts down gracefully: the connection stays for the
         * last writes, and the worker waits for their replies */

        if (ngx_http_loyalty_redis_stop != NULL) {
            ngx_http_loyalty_redis_stop(ngx_http_loyalty_redis_stop_data);
        }

        return;
    }

    /* may free the context (and close c) on EOF, reset or garbage */

    redisAsyncHandleRead(conn->ac);
}


static void
ngx_http_loyalty_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t               *c;
    ngx_http_loyalty_redis_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (ev->timedout) {
        ngx_http_loyalty_log_error(NGX_LOG_ERR, conn->node->log,
                                   NGX_ETIMEDOUT, "redis connect timeout",
                                   "loyalty redis \"%V\" connect timed out",
                                   &conn->node->name);
        ngx_http_loyalty_metric_add(errors[NGX_HTTP_LOYALTY_ERR_CONNECT], 1);
        ngx_http_loyalty_redis_drop(conn, NGX_HTTP_LOYALTY_REDIS_TIMEOUT);
        return;
    }

    conn->writing = 1;
    redisAsyncHandleWrite(conn->ac);
    conn->writing = 0;
}


static void
ngx_http_loyalty_redis_flush_handler(ngx_event_t *ev)
{
    ngx_http_loyalty_redis_conn_t  *conn;

    conn = ev->data;

    if (conn->ac == NULL) {
        return;
    }

    conn->writing = 1;
    redisAsyncHandleWrite(conn->ac);
    conn->writing = 0;
}


static void
ngx_http_loyalty_redis_add_read(void *privdata)
{
    ngx_http_loyalty_redis_conn_t  *conn = privdata;

    ngx_event_t  *rev;

    rev = conn->connection->read;

    if (!rev->active) {
        if (ngx_add_event(rev, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, conn->node->log, 0,
                          "loyalty redis \"%V\": cannot add read event",
                          &conn->node->name);
        }
    }
}


static void
ngx_http_loyalty_redis_del_read(void *privdata)
{
    ngx_http_loyalty_redis_conn_t  *conn = privdata;

    ngx_event_t  *rev;

    rev = conn->connection->read;

    if (rev->active) {
        (void) ngx_del_event(rev, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_loyalty_redis_add_write(void *privdata)
{
    ngx_http_loyalty_redis_conn_t  *conn = privdata;

    ngx_event_t  *wev;

    wev = conn->connection->write;

    if (wev->active) {
        return;
    }

    /*
     * A command was queued by a request: flush at the end of this
     * event-loop pass, together with the commands other requests queue
     * in the same pass.  The socket's write event is needed only while
     * connecting or when a write did not take everything.
     */

    if (conn->connected && !conn->writing) {
        if (!conn->flush.posted) {
            ngx_post_event(&conn->flush, &ngx_posted_events);
        }

        return;
    }

    if (ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, conn->node->log, 0,
                      "loyalty redis \"%V\": cannot add write event",
                      &conn->node->name);
    }
}


static void
ngx_http_loyalty_redis_del_write(void *privdata)
{
    ngx_http_loyalty_redis_conn_t  *conn = privdata;

    ngx_event_t  *wev;

    wev = conn->connection->write;

    if (wev->active) {
        (void) ngx_del_event(wev, NGX_WRITE_EVENT, 0);
    }
}


/*
 * hiredis is about to free the context (pending commands have had their
 * NULL replies).  Undo ngx_get_connection(); nginx closes the fd, so
 * hiredis must not close it again.
 */

static void
ngx_http_loyalty_redis_cleanup(void *privdata)
{
    ngx_http_loyalty_redis_conn_t  *conn = privdata;

    ngx_connection_t               *c;
    ngx_http_loyalty_redis_node_t  *node;

    c = conn->connection;

    if (c == NULL) {
        return;
    }

    node = conn->node;

    /* hiredis ended it (EOF, reset, protocol error): a failure, not a
     * timeout; our own drops set the cause already */

    if (!conn->closing) {
        conn->failure = NGX_HTTP_LOYALTY_REDIS_FAILED;
    }

    if (conn->connected) {
        ngx_http_loyalty_metric_add(connections, -1);
    }

    if (conn->subscriber) {
        node->subscribed = 0;
        node->sub_ping = 0;
    }

    conn->ac->ev.cleanup = NULL;
    conn->ac->c.fd = -1;
    conn->ac = NULL;
    conn->connection = NULL;
    conn->connected = 0;
    conn->closing = 0;

    if (conn->flush.posted) {
        ngx_delete_posted_event(&conn->flush);
    }

    ngx_close_connection(c);

    if (node->exiting || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    conn->backoff = ngx_min(ngx_max(conn->backoff * 2,
                                    NGX_HTTP_LOYALTY_REDIS_BACKOFF_MIN),
                            NGX_HTTP_LOYALTY_REDIS_BACKOFF_MAX);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, node->log, 0,
                   "loyalty redis \"%V\": reconnecting in %M ms",
                   &node->name, conn->backoff);

    ngx_add_timer(&conn->reconnect, conn->backoff);
}


ngx_int_t
ngx_http_loyalty_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_loyalty_main_conf_t *lmcf)
{
    ngx_uint_t                       i, j;
    ngx_http_loyalty_redis_t       **rdp;
    ngx_http_loyalty_cluster_t      *c;
    ngx_http_loyalty_redis_node_t  **seeds;

    rdp = lmcf->backends.elts;

    for (i = 0; i < lmcf->backends.nelts; i++) {
        c = rdp[i]->cluster;

        if (c == NULL) {
            ngx_http_loyalty_redis_init_node(rdp[i]->node, cycle);
            continue;
        }

        /* the slot map and the node list are this worker's */

        c->masters = ngx_calloc(NGX_HTTP_LOYALTY_CLUSTER_SLOTS
                                * sizeof(void *), cycle->log);
        c->replicas = ngx_calloc(NGX_HTTP_LOYALTY_CLUSTER_SLOTS
                                 * sizeof(void *), cycle->log);
        c->nalloc = c->seeds.nelts + 8;
        c->nodes = ngx_alloc(c->nalloc * sizeof(void *), cycle->log);

        if (c->masters == NULL || c->replicas == NULL || c->nodes == NULL) {
            return NGX_ERROR;
        }

        c->refresh.handler = ngx_http_loyalty_cluster_refresh_handler;
        c->refresh.data = c;
        c->refresh.log = cycle->log;
        c->refresh.cancelable = 1;

        seeds = c->seeds.elts;

        for (j = 0; j < c->seeds.nelts; j++) {
            c->nodes[c->nnodes++] = seeds[j];
            ngx_http_loyalty_redis_init_node(seeds[j], cycle);
        }

        /* asked as soon as the loop runs, behind the connects */
        ngx_add_timer(&c->refresh, 1);
    }

    return NGX_OK;
}


static void
ngx_http_loyalty_redis_init_node(ngx_http_loyalty_redis_node_t *node,
    ngx_cycle_t *cycle)
{
    ngx_uint_t                      j;
    ngx_http_loyalty_redis_conn_t  *conn;

    node->log = cycle->log;
    node->metrics = ngx_http_loyalty_metrics_node(&node->name);

    node->probe.handler = ngx_http_loyalty_redis_probe_handler;
    node->probe.data = node;
    node->probe.log = cycle->log;
    node->probe.cancelable = 1;

    for (j = 0; j < NGX_HTTP_LOYALTY_REDIS_POOL; j++) {
        conn = &node->conns[j];
        ngx_http_loyalty_redis_init_conn(conn, node, cycle);
        ngx_http_loyalty_redis_connect(conn);
    }

    if (node->channel.len) {
        conn = &node->sub;
        ngx_http_loyalty_redis_init_conn(conn, node, cycle);
        conn->subscriber = 1;
        ngx_http_loyalty_redis_connect(conn);
    }
}


static void
ngx_http_loyalty_redis_init_conn(ngx_http_loyalty_redis_conn_t *conn,
    ngx_http_loyalty_redis_node_t *node, ngx_cycle_t *cycle)
{
    conn->node = node;
    conn->failure = NGX_HTTP_LOYALTY_REDIS_FAILED;
    ngx_queue_init(&conn->cmds);

    conn->flush.handler = ngx_http_loyalty_redis_flush_handler;
    conn->flush.data = conn;
    conn->flush.log = cycle->log;

    /* an idle worker must not wait for it to exit */

    conn->reconnect.handler = ngx_http_loyalty_redis_reconnect_handler;
    conn->reconnect.data = conn;
    conn->reconnect.log = cycle->log;
    conn->reconnect.cancelable = 1;
}


void
ngx_http_loyalty_redis_exit_process(ngx_cycle_t *cycle,
    ngx_http_loyalty_main_conf_t *lmcf)
{
    ngx_uint_t                       i, k, n;
    ngx_http_loyalty_redis_t       **rdp;
    ngx_http_loyalty_redis_node_t  **nodes;

    rdp = lmcf->backends.elts;

    for (i = 0; i < lmcf->backends.nelts; i++) {

        if (rdp[i]->cluster && rdp[i]->cluster->refresh.timer_set) {
            ngx_del_timer(&rdp[i]->cluster->refresh);
        }

        nodes = ngx_http_loyalty_redis_nodes(rdp[i], &n);

        for (k = 0; k < n; k++) {
            ngx_http_loyalty_redis_exit_node(nodes[k]);
        }

        if (rdp[i]->cluster != NULL) {
            ngx_http_loyalty_cluster_free(rdp[i]->cluster);
        }
    }
}


/* a worker's cluster state: the nodes it found and the slot map */

static void
ngx_http_loyalty_cluster_free(ngx_http_loyalty_cluster_t *c)
{
    ngx_uint_t  k;

    /* the seeds live in the configuration's pool */

    for (k = c->seeds.nelts; k < c->nnodes; k++) {
        ngx_free(c->nodes[k]);
    }

    if (c->nodes != NULL) {
        ngx_free(c->nodes);
    }

    if (c->masters != NULL) {
        ngx_free(c->masters);
    }

    if (c->replicas != NULL) {
        ngx_free(c->replicas);
    }

    c->nodes = NULL;
    c->masters = NULL;
    c->replicas = NULL;
    c->nnodes = 0;
}


static void
ngx_http_loyalty_redis_exit_node(ngx_http_loyalty_redis_node_t *node)
{
    ngx_uint_t                      j;
    ngx_http_loyalty_redis_conn_t  *conn;

    node->exiting = 1;

    if (node->probe.timer_set) {
        ngx_del_timer(&node->probe);
    }

    /* the shared gauge must not keep this worker's open breaker */

    if (node->open) {
        node->open = 0;
        ngx_http_loyalty_metric_add(breakers_open, -1);
    }

    for (j = 0; j <= NGX_HTTP_LOYALTY_REDIS_POOL; j++) {
        conn = (j < NGX_HTTP_LOYALTY_REDIS_POOL) ? &node->conns[j]
                                                 : &node->sub;

        if (conn->node == NULL) {
            continue;
        }

        if (conn->reconnect.timer_set) {
            ngx_del_timer(&conn->reconnect);
        }

        ngx_http_loyalty_redis_drop(conn, NGX_HTTP_LOYALTY_REDIS_FAILED);
    }
}


/*
 * The circuit breaker.  Every command that times out or whose connection
 * fails counts; any reply, even an error, proves Redis alive and resets
 * the count.  At "threshold" consecutive failures the breaker opens:
 * commands are refused at once (BYPASS) and a PING probes Redis every
 * cooldown, and as soon as a connection is (re)established.  The first
 * reply of any kind closes it.
 */

static void
ngx_http_loyalty_redis_failed(ngx_http_loyalty_redis_node_t *node)
{
    node->failures++;

    /* a failing node may have been replaced: ask the cluster soon */

    if (node->cluster != NULL && !node->exiting) {
        ngx_http_loyalty_cluster_refresh(node->cluster,
                                         NGX_HTTP_LOYALTY_CLUSTER_REFRESH);
    }

    if (node->threshold == 0 || node->open
        || node->failures < node->threshold || node->exiting)
    {
        return;
    }

    node->open = 1;

    ngx_http_loyalty_metric_add(breaker_opens, 1);
    ngx_http_loyalty_metric_add(breakers_open, 1);

    ngx_http_loyalty_log_error(NGX_LOG_ERR, node->log, 0, "breaker open",
                               "loyalty redis \"%V\": circuit breaker open "
                               "after %ui consecutive failures, lookups "
                               "bypass Redis, probing every %M ms",
                               &node->name, node->failures, node->cooldown);

    if (!node->probe.timer_set && node->probe_cmd == NULL) {
        ngx_add_timer(&node->probe, node->cooldown);
    }
}


static void
ngx_http_loyalty_redis_succeeded(ngx_http_loyalty_redis_node_t *node)
{
    node->failures = 0;

    if (!node->open) {
        return;
    }

    node->open = 0;

    ngx_http_loyalty_metric_add(breakers_open, -1);

    ngx_http_loyalty_log_error(NGX_LOG_NOTICE, node->log, 0, "breaker closed",
                               "loyalty redis \"%V\": circuit breaker "
                               "closed, Redis answers again", &node->name);

    if (node->probe.timer_set) {
        ngx_del_timer(&node->probe);
    }
}


static void
ngx_http_loyalty_redis_probe_handler(ngx_event_t *ev)
{
    ngx_int_t                       rc;
    ngx_str_t                       err;
    ngx_http_loyalty_redis_node_t  *node;

    node = ev->data;

    if (!node->open || node->probe_cmd != NULL || node->exiting
        || ngx_exiting)
    {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "loyalty redis \"%V\": breaker probe", &node->name);

    /* the probe waits a whole cooldown: a Redis that wakes up answers it
     * at once */

    rc = ngx_http_loyalty_redis_send_node(node, NULL, ev->log,
                                          node->cooldown, 1,
                                          &ngx_http_loyalty_redis_ping,
                                          ngx_http_loyalty_redis_probe_reply,
                                          node, &node->probe_cmd, &err);

    if (rc != NGX_AGAIN) {
        node->probe_cmd = NULL;

        if (node->open && !ev->timer_set) {
            ngx_add_timer(ev, node->cooldown);
        }

        return;
    }

    /* the probe's own timer may not hold a shutting down worker */
    node->probe_cmd->timer.cancelable = 1;
}


static void
ngx_http_loyalty_redis_probe_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err)
{
    ngx_http_loyalty_redis_node_t *node = data;

    node->probe_cmd = NULL;

    /* a reply closed the breaker already; a failure counted */

    if (node->open && !node->probe.timer_set) {
        ngx_add_timer(&node->probe, node->cooldown);
    }
}


/*
 * Invalidation messages: one subscriber connection per worker and Redis;
 * each message's payload is a customer id to evict from the caches.
 */

static void
ngx_http_loyalty_redis_sub_handler(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                     *rr = r;
    ngx_str_t                       id;
    ngx_http_loyalty_redis_t       *rd;
    ngx_http_loyalty_redis_conn_t  *conn = privdata;
    ngx_http_loyalty_redis_node_t  *node;

    if (rr == NULL) {
        return;
    }

    node = conn->node;

    if (rr->type != REDIS_REPLY_ARRAY || rr->elements < 3
        || rr->element[0]->type != REDIS_REPLY_STRING)
    {
        ngx_http_loyalty_log_error(NGX_LOG_ERR, node->log, 0,
                                   "redis subscribe refused",
                                   "loyalty redis \"%V\": SUBSCRIBE %V "
                                   "failed: \"%*s\"", &node->name,
                                   &node->channel,
                                   rr->type == REDIS_REPLY_ERROR
                                   ? ngx_min(rr->len, 128) : 0,
                                   rr->str);
        return;
    }

    if (ngx_strcmp(rr->element[0]->str, "subscribe") == 0) {
        node->subscribed = 1;

        /* alive: the next check after the interval */
        node->sub_ping = 0;
        node->sub_ping_after = ngx_current_msec
                               + NGX_HTTP_LOYALTY_REDIS_SUB_PING;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, node->log, 0,
                       "loyalty redis \"%V\": subscribed to \"%V\"",
                       &node->name, &node->channel);
        return;
    }

    if (ngx_strcmp(rr->element[0]->str, "message") != 0
        || rr->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    id.data = (u_char *) rr->element[2]->str;
    id.len = rr->element[2]->len;

    rd = node->backend;

    if (rd->message != NULL) {
        rd->message(rd->message_data, rd, &id);
    }
}


/*
 * Redis Cluster.  A command goes to the master of its key's hash slot
 * (a replica for HMGET with loyalty_redis_read_replicas on), as the map
 * of CLUSTER SLOTS says; MOVED updates the map and sends the command
 * again, ASK sends ASKING and the command once to the named node, both
 * within the command's original deadline.
 */

static ngx_int_t
ngx_http_loyalty_cluster_send(ngx_http_loyalty_redis_t *rd, ngx_pool_t *pool,
    ngx_log_t *log, ngx_msec_t timeout, ngx_uint_t argc, ngx_str_t *argv,
    ngx_http_loyalty_redis_handler_pt handler, void *data,
    ngx_http_loyalty_redis_cmd_t **cmdp, ngx_str_t *err)
{
    u_char                         *p;
    size_t                          size;
    ngx_int_t                       rc;
    ngx_str_t                      *key;
    ngx_uint_t                      i, slot, replica;
    ngx_http_loyalty_cluster_t     *c;
    ngx_http_loyalty_redis_cmd_t   *cmd;
    ngx_http_loyalty_redis_conn_t  *conn;
    ngx_http_loyalty_redis_node_t  *node, *r;

    c = rd->cluster;

    if (!c->loaded) {
        ngx_http_loyalty_cluster_refresh(c, 0);
        ngx_str_set(err, "cluster slot map not loaded yet");
        return NGX_HTTP_LOYALTY_REDIS_FAILED;
    }

    key = ngx_http_loyalty_cluster_key(argc, argv);

    slot = ngx_http_loyalty_cluster_slot(key->data, key->len);

    node = c->masters[slot];
    replica = 0;

    if (c->read_replicas && argv[0].len == 5
        && ngx_strncasecmp(argv[0].data, (u_char *) "HMGET", 5) == 0)
    {
        r = c->replicas[slot];

        /* only a replica that is connected: the master answers at once,
         * a replica still connecting would make the lookup wait */

        conn = (r != NULL && !r->open) ? ngx_http_loyalty_redis_pick(r)
                                       : NULL;

        if (conn != NULL && conn->connected) {
            node = r;
            replica = 1;
        }
    }

    if (node == NULL) {
        ngx_http_loyalty_cluster_refresh(c, 0);
        ngx_str_set(err, "no cluster node serves the slot");
        return NGX_HTTP_LOYALTY_REDIS_FAILED;
    }

    if (node->open) {
        *err = ngx_http_loyalty_redis_err_breaker;
        return NGX_HTTP_LOYALTY_REDIS_BYPASS;
    }

    rc = ngx_http_loyalty_redis_send_node(node, pool, log, timeout, argc,
                                          argv, handler, data, &cmd, err);

    if (rc != NGX_AGAIN) {
        return rc;
    }

    if (cmdp != NULL) {
        *cmdp = cmd;
    }

    cmd->deadline = ngx_current_msec + timeout;
    cmd->replica = replica;

    /* a copy of the words, for a redirection */

    size = argc * sizeof(ngx_str_t);

    for (i = 0; i < argc; i++) {
        size += argv[i].len;
    }

    cmd->argv = ngx_alloc(size, log);
    if (cmd->argv == NULL) {
        /* still on its way: only a redirection would fail */
        return NGX_AGAIN;
    }

    p = (u_char *) &cmd->argv[argc];

    for (i = 0; i < argc; i++) {
        cmd->argv[i].data = p;
        cmd->argv[i].len = argv[i].len;
        p = ngx_cpymem(p, argv[i].data, argv[i].len);
    }

    cmd->argc = argc;

    return NGX_AGAIN;
}


/*
 * Sends cmd again, to node (NULL: the slot's master), for what is left of
 * its deadline: the same object, its handler, words and requester's
 * handle unchanged.  NGX_OK: it is queued there, and its reply handler
 * will run again; otherwise it is queued nowhere.
 */

static ngx_int_t
ngx_http_loyalty_cluster_resend(ngx_http_loyalty_redis_cmd_t *cmd,
    ngx_http_loyalty_redis_node_t *node, ngx_uint_t asking)
{
    ngx_int_t                       rc;
    ngx_str_t                       err, word, *key;
    ngx_msec_int_t                  left;
    ngx_http_loyalty_cluster_t     *c;
    ngx_http_loyalty_redis_conn_t  *conn;

    c = cmd->conn->node->cluster;

    if (cmd->argv == NULL
        || cmd->redirects >= NGX_HTTP_LOYALTY_CLUSTER_REDIRECTS)
    {
        return NGX_DECLINED;
    }

    if (node == NULL) {
        key = ngx_http_loyalty_cluster_key(cmd->argc, cmd->argv);
        node = c->masters[ngx_http_loyalty_cluster_slot(key->data,
                                                        key->len)];
    }

    left = (ngx_msec_int_t) (cmd->deadline - ngx_current_msec);

    if (node == NULL || node->open || left <= 0) {
        return NGX_DECLINED;
    }

    conn = ngx_http_loyalty_redis_conn(node);
    if (conn == NULL) {
        return NGX_DECLINED;
    }

    /* ASKING goes first on the connection the command takes */

    if (asking) {
        ngx_str_set(&word, "ASKING");

        rc = ngx_http_loyalty_redis_send_node(node, NULL, ngx_cycle->log,
                                              (ngx_msec_t) left, 1, &word,
                                              NULL, NULL, NULL, &err);
        if (rc != NGX_AGAIN) {
            return NGX_DECLINED;
        }
    }

    if (ngx_http_loyalty_redis_queue(conn, cmd, (ngx_msec_t) left,
                                     cmd->argc, cmd->argv)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    cmd->redirects++;
    cmd->replica = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "loyalty redis cluster: %V sent again to \"%V\"",
                   &cmd->argv[0], &node->name);

    return NGX_OK;
}


/* "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381" */

static ngx_int_t
ngx_http_loyalty_cluster_redirect(ngx_http_loyalty_redis_cmd_t *cmd,
    redisReply *rr)
{
    u_char                         *p, *last, *host, *colon;
    ngx_int_t                       slot, port;
    ngx_uint_t                      ask;
    ngx_http_loyalty_cluster_t     *c;
    ngx_http_loyalty_redis_node_t  *node, *from;

    p = (u_char *) rr->str;
    last = p + rr->len;

    if (rr->len > 6 && ngx_strncmp(p, "MOVED ", 6) == 0) {
        ask = 0;
        p += 6;

    } else if (rr->len > 4 && ngx_strncmp(p, "ASK ", 4) == 0) {
        ask = 1;
        p += 4;

    } else {
        return NGX_DECLINED;
    }

    host = ngx_strlchr(p, last, ' ');
    if (host == NULL) {
        return NGX_DECLINED;
    }

    slot = ngx_atoi(p, host - p);
    host++;

    colon = NULL;

    for (p = last - 1; p > host; p--) {
        if (*p == ':') {
            colon = p;
            break;
        }
    }

    if (slot == NGX_ERROR || slot >= NGX_HTTP_LOYALTY_CLUSTER_SLOTS
        || colon == NULL)
    {
        return NGX_DECLINED;
    }

    port = ngx_atoi(colon + 1, last - colon - 1);
    if (port == NGX_ERROR || port < 1 || port > 65535) {
        return NGX_DECLINED;
    }

    from = cmd->conn->node;
    c = from->cluster;

    node = ngx_http_loyalty_cluster_node(c, host, colon - host, (int) port);
    if (node == NULL) {
        return NGX_DECLINED;
    }

    if (from->metrics) {
        (void) ngx_atomic_fetch_add(ask ? &from->metrics->ask
                                        : &from->metrics->moved, 1);
    }

    if (!ask) {
        /* the slot has moved for good: note it, and reload the map */
        c->masters[slot] = node;
        ngx_http_loyalty_cluster_refresh(c, 0);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "loyalty redis cluster: %s slot %i to \"%V\"",
                   ask ? "ASK" : "MOVED", slot, &node->name);

    return ngx_http_loyalty_cluster_resend(cmd, node, ask);
}


/*
 * The key a command is routed by: the second word (the first for a
 * command without arguments), or for EVAL script numkeys key ... the
 * fourth
 */

static ngx_str_t *
ngx_http_loyalty_cluster_key(ngx_uint_t argc, ngx_str_t *argv)
{
    if (argc > 3 && argv[0].len == 4
        && ngx_strncasecmp(argv[0].data, (u_char *) "EVAL", 4) == 0)
    {
        return &argv[3];
    }

    return &argv[argc > 1 ? 1 : 0];
}


/* CRC16 (XMODEM) of the key, or of its {hash tag}, mod 16384 */

static ngx_uint_t
ngx_http_loyalty_cluster_slot(u_char *key, size_t len)
{
    size_t     i, s, e;
    uint16_t   crc;
    ngx_uint_t  b;

    for (s = 0; s < len; s++) {
        if (key[s] == '{') {
            break;
        }
    }

    if (s < len) {
        for (e = s + 1; e < len; e++) {
            if (key[e] == '}') {
                break;
            }
        }

        if (e < len && e != s + 1) {
            key += s + 1;
            len = e - s - 1;
        }
    }

    crc = 0;

    for (i = 0; i < len; i++) {
        crc ^= (uint16_t) key[i] << 8;

        for (b = 0; b < 8; b++) {
            crc = (crc & 0x8000) ? (uint16_t) ((crc << 1) ^ 0x1021)
                                 : (uint16_t) (crc << 1);
        }
    }

    return crc & (NGX_HTTP_LOYALTY_CLUSTER_SLOTS - 1);
}


/* a known node, or a new one (connected at once) */

static ngx_http_loyalty_redis_node_t *
ngx_http_loyalty_cluster_node(ngx_http_loyalty_cluster_t *c, u_char *host,
    size_t len, int port)
{
    u_char                          *p;
    ngx_uint_t                       i;
    ngx_http_loyalty_redis_node_t   *node, **nodes;

    for (i = 0; i < c->nnodes; i++) {
        node = c->nodes[i];

        if (node->port == port && node->host.len == len
            && ngx_strncmp(node->host.data, host, len) == 0)
        {
            return node;
        }
    }

    if (len == 0 || len > NGX_INET6_ADDRSTRLEN
        || (ngx_inet_addr(host, len) == INADDR_NONE
#if (NGX_HAVE_INET6)
            && ngx_strlchr(host, host + len, ':') == NULL
#endif
           ))
    {
        ngx_http_loyalty_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                                   "cluster bad node",
                                   "loyalty redis cluster: node \"%*s\" is "
                                   "not a numeric address, ignored",
                                   len, host);
        return NULL;
    }

    if (c->nnodes == c->nalloc) {
        nodes = ngx_alloc((c->nalloc * 2 + 8) * sizeof(void *),
                          ngx_cycle->log);
        if (nodes == NULL) {
            return NULL;
        }

        if (c->nnodes) {
            ngx_memcpy(nodes, c->nodes, c->nnodes * sizeof(void *));
            ngx_free(c->nodes);
        }

        c->nodes = nodes;
        c->nalloc = c->nalloc * 2 + 8;
    }

    node = ngx_calloc(sizeof(ngx_http_loyalty_redis_node_t) + 2 * len
                      + sizeof(":65535"), ngx_cycle->log);
    if (node == NULL) {
        return NULL;
    }

    *node = c->tmpl;
    ngx_memzero(&node->conns, sizeof(node->conns));
    ngx_memzero(&node->sub, sizeof(node->sub));
    ngx_memzero(&node->probe, sizeof(ngx_event_t));

    p = (u_char *) &node[1];

    node->host.data = p;
    node->host.len = len;
    p = ngx_cpymem(p, host, len);
    *p++ = '\0';

    node->name.data = p;
    node->name.len = ngx_sprintf(p, "%*s:%d", len, host, port) - p;

    node->port = port;

    c->nodes[c->nnodes++] = node;

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "loyalty redis cluster: node \"%V\" added", &node->name);

    ngx_http_loyalty_redis_init_node(node, (ngx_cycle_t *) ngx_cycle);

    return node;
}


/* asks for the slot map in delay ms, unless asked more recently */

static void
ngx_http_loyalty_cluster_refresh(ngx_http_loyalty_cluster_t *c,
    ngx_msec_t delay)
{
    ngx_msec_t  since;

    if (c->refresh.handler == NULL || ngx_exiting || ngx_quit
        || ngx_terminate)
    {
        return;
    }

    since = ngx_current_msec - c->refreshed;

    if (c->refreshed && since < NGX_HTTP_LOYALTY_CLUSTER_REFRESH) {
        delay = ngx_max(delay, NGX_HTTP_LOYALTY_CLUSTER_REFRESH - since);
    }

    if (c->refresh.timer_set) {
        if ((ngx_msec_int_t) (c->refresh.timer.key - ngx_current_msec)
            <= (ngx_msec_int_t) delay)
        {
            return;
        }

        ngx_del_timer(&c->refresh);
    }

    ngx_add_timer(&c->refresh, delay ? delay : 1);
}


static void
ngx_http_loyalty_cluster_refresh_handler(ngx_event_t *ev)
{
    ngx_int_t                       rc;
    ngx_str_t                       argv[2], err;
    ngx_uint_t                      i;
    ngx_http_loyalty_cluster_t     *c;
    ngx_http_loyalty_redis_node_t  *node;

    c = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (c->refresh_cmd != NULL) {
        /* the reply schedules the next one */
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_LOYALTY_CLUSTER_PERIOD);

    ngx_str_set(&argv[0], "CLUSTER");
    ngx_str_set(&argv[1], "SLOTS");

    /* any node that is up may answer; the next one next time */

    for (i = 0; i < c->nnodes; i++) {
        node = c->nodes[(c->next + i) % c->nnodes];

        if (ngx_http_loyalty_redis_pick(node) == NULL) {
            continue;
        }

        /* the reply is needed only while the map is read from it */

        rc = ngx_http_loyalty_redis_send_node(node, NULL,
                                              ngx_cycle->log, 1000, 2, argv,
                                          ngx_http_loyalty_cluster_slots_reply,
                                              c, &c->refresh_cmd, &err);
        if (rc == NGX_AGAIN) {
            c->next = (c->next + i + 1) % c->nnodes;
            c->refresh_node = node;
            c->refreshed = ngx_current_msec;

            /* it must not hold a worker that shuts down */
            c->refresh_cmd->timer.cancelable = 1;
            return;
        }

        c->refresh_cmd = NULL;
    }

    ngx_http_loyalty_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                               "cluster unreachable",
                               "loyalty redis cluster \"%V\": no node to "
                               "ask for the slot map", &c->backend->name);

    ngx_del_timer(ev);
    ngx_add_timer(ev, NGX_HTTP_LOYALTY_CLUSTER_REFRESH);
}


/*
 * CLUSTER SLOTS: [[start, end, [ip, port, id], [replica ip, port, id],
 * ...], ...].  Slots no entry covers have no node until the next map.
 */

static void
ngx_http_loyalty_cluster_slots_reply(void *data, ngx_int_t rc,
    ngx_http_loyalty_reply_t *reply, ngx_str_t *err)
{
    ngx_http_loyalty_cluster_t *c = data;

    size_t                          len;
    u_char                         *host;
    ngx_int_t                       n;
    ngx_uint_t                      i, j, s, covered;
    ngx_http_loyalty_reply_t       *e, *m;
    ngx_http_loyalty_redis_node_t  *master, *replica, *asked;

    c->refresh_cmd = NULL;
    asked = c->refresh_node;

    if (asked->exiting) {
        goto done;
    }

    if (rc != NGX_HTTP_LOYALTY_REDIS_REPLY
        || reply->type != NGX_HTTP_LOYALTY_REPLY_ARRAY
        || reply->nelts == 0)
    {
        ngx_http_loyalty_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                                   "cluster map failed",
                                   "loyalty redis cluster \"%V\": CLUSTER "
                                   "SLOTS from \"%V\" failed: %V",
                                   &c->backend->name, &asked->name,
                                   rc == NGX_HTTP_LOYALTY_REDIS_REPLY
                                   ? &reply->str : err);
        goto done;
    }

    ngx_memzero(c->masters,
                NGX_HTTP_LOYALTY_CLUSTER_SLOTS * sizeof(void *));
    ngx_memzero(c->replicas,
                NGX_HTTP_LOYALTY_CLUSTER_SLOTS * sizeof(void *));

    covered = 0;

    for (i = 0; i < reply->nelts; i++) {
        e = &reply->elts[i];

        if (e->type != NGX_HTTP_LOYALTY_REPLY_ARRAY || e->nelts < 3
            || e->elts[0].type != NGX_HTTP_LOYALTY_REPLY_INTEGER
            || e->elts[1].type != NGX_HTTP_LOYALTY_REPLY_INTEGER
            || e->elts[0].integer < 0
            || e->elts[1].integer >= NGX_HTTP_LOYALTY_CLUSTER_SLOTS
            || e->elts[0].integer > e->elts[1].integer)
        {
            continue;
        }

        master = NULL;
        replica = NULL;

        for (j = 2; j < e->nelts; j++) {
            m = &e->elts[j];

            if (m->type != NGX_HTTP_LOYALTY_REPLY_ARRAY || m->nelts < 2
                || m->elts[0].type != NGX_HTTP_LOYALTY_REPLY_STRING
                || m->elts[1].type != NGX_HTTP_LOYALTY_REPLY_INTEGER)
            {
                continue;
            }

            host = m->elts[0].str.data;
            len = m->elts[0].str.len;
            n = (ngx_int_t) m->elts[1].integer;

            /* an empty or "?" endpoint: the node that answered */

            if (len == 0 || (len == 1 && host[0] == '?')) {
                host = asked->host.data;
                len = asked->host.len;
            }

            if (n < 1 || n > 65535) {
                continue;
            }

            if (j == 2) {
                master = ngx_http_loyalty_cluster_node(c, host, len, (int) n);

            } else if (replica == NULL) {
                replica = ngx_http_loyalty_cluster_node(c, host, len,
                                                        (int) n);
            }
        }

        if (master == NULL) {
            continue;
        }

        for (s = (ngx_uint_t) e->elts[0].integer;
             s <= (ngx_uint_t) e->elts[1].integer;
             s++)
        {
            c->masters[s] = master;
            c->replicas[s] = replica;
        }

        covered += e->elts[1].integer - e->elts[0].integer + 1;
    }

    c->loaded = 1;

    ngx_http_loyalty_metric_add(map_refreshes, 1);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "loyalty redis cluster \"%V\": map from \"%V\", %ui "
                   "slots covered", &c->backend->name, &asked->name,
                   covered);

    if (covered < NGX_HTTP_LOYALTY_CLUSTER_SLOTS) {
        /* a failover in progress: look again soon */
        ngx_http_loyalty_cluster_refresh(c, NGX_HTTP_LOYALTY_CLUSTER_REFRESH);
    }

done:

    if (!c->loaded) {
        ngx_http_loyalty_cluster_refresh(c, NGX_HTTP_LOYALTY_CLUSTER_REFRESH);
    }
}


/* the nodes of a backend: one, or a cluster's (this worker's) */

static ngx_http_loyalty_redis_node_t **
ngx_http_loyalty_redis_nodes(ngx_http_loyalty_redis_t *rd, ngx_uint_t *n)
{
    if (rd->cluster != NULL) {
        *n = rd->cluster->nnodes;
        return rd->cluster->nodes;
    }

    *n = 1;
    return &rd->node;
}


/*
 * Every second: the subscriber connection subscribes again every
 * NGX_HTTP_LOYALTY_REDIS_SUB_PING ms; one that has not confirmed within
 * as long is dead (a silent network partition) and is reopened.  Until
 * it is subscribed again, cached entries live at most 1 s.
 */

void
ngx_http_loyalty_redis_tick(ngx_http_loyalty_main_conf_t *lmcf)
{
    ngx_uint_t                       i, k, n;
    ngx_http_loyalty_redis_t       **rdp;
    ngx_http_loyalty_redis_node_t  **nodes;

    rdp = lmcf->backends.elts;

    for (i = 0; i < lmcf->backends.nelts; i++) {
        nodes = ngx_http_loyalty_redis_nodes(rdp[i], &n);

        for (k = 0; k < n; k++) {
            ngx_http_loyalty_redis_tick_node(nodes[k]);
        }
    }
}


static void
ngx_http_loyalty_redis_tick_node(ngx_http_loyalty_redis_node_t *node)
{
    ngx_http_loyalty_redis_conn_t  *conn;

    conn = &node->sub;

    if (node->channel.len == 0 || conn->ac == NULL || conn->closing
        || !node->subscribed)
    {
        return;
    }

    if (node->sub_ping == 0) {
        if ((ngx_msec_int_t) (ngx_current_msec - node->sub_ping_after) < 0) {
            return;
        }

        node->sub_ping = ngx_current_msec;

        (void) redisAsyncCommand(conn->ac, ngx_http_loyalty_redis_sub_handler,
                                 conn, "SUBSCRIBE %b", node->channel.data,
                                 node->channel.len);
        return;
    }

    if (ngx_current_msec - node->sub_ping >= NGX_HTTP_LOYALTY_REDIS_SUB_PING) {
        ngx_http_loyalty_log_error(NGX_LOG_ERR, node->log, 0,
                                   "redis subscriber silent",
                                   "loyalty redis \"%V\": the invalidation "
                                   "subscriber did not answer, reconnecting",
                                   &node->name);

        ngx_http_loyalty_redis_drop(conn, NGX_HTTP_LOYALTY_REDIS_TIMEOUT);
    }
}


/* configuration time: this backend's workers subscribe to the channel */

ngx_int_t
ngx_http_loyalty_redis_subscribe(ngx_http_loyalty_redis_t *rd,
    ngx_str_t *channel)
{
    ngx_uint_t                       i;
    ngx_http_loyalty_redis_node_t  **seeds;

    if (rd->cluster == NULL) {
        rd->node->backend = rd;
        rd->node->channel = *channel;
        return NGX_OK;
    }

    /* in a cluster every node delivers every message: each node a worker
     * knows has a subscriber, so that any of them may fail */

    rd->cluster->tmpl.channel = *channel;

    seeds = rd->cluster->seeds.elts;

    for (i = 0; i < rd->cluster->seeds.nelts; i++) {
        seeds[i]->channel = *channel;
    }

    return NGX_OK;
}


/*
 * The transport calls nothing above it: what to do with a message on the
 * backend's channel, and at the worker's graceful shutdown, is given here
 * in init_process.
 */

void
ngx_http_loyalty_redis_on_message(ngx_http_loyalty_redis_t *rd,
    ngx_http_loyalty_redis_message_pt handler, void *data)
{
    rd->message = handler;
    rd->message_data = data;
}


void
ngx_http_loyalty_redis_on_shutdown(ngx_http_loyalty_redis_shutdown_pt handler,
    void *data)
{
    ngx_http_loyalty_redis_stop = handler;
    ngx_http_loyalty_redis_stop_data = data;
}


ngx_uint_t
ngx_http_loyalty_redis_subscribed(ngx_http_loyalty_redis_t *rd)
{
    ngx_uint_t                       i, n;
    ngx_http_loyalty_redis_node_t  **nodes;

    nodes = ngx_http_loyalty_redis_nodes(rd, &n);

    for (i = 0; i < n; i++) {
        if (nodes[i]->subscribed) {
            return 1;
        }
    }

    return 0;
}


ngx_uint_t
ngx_http_loyalty_redis_open(ngx_http_loyalty_redis_t *rd)
{
    /* a cluster's breakers are per node: known once the key is routed */

    return rd->cluster == NULL && rd->node->open;
}


ngx_str_t *
ngx_http_loyalty_redis_name(ngx_http_loyalty_redis_t *rd)
{
    return &rd->name;
}


/*
 * The connect timeout is the connection's, shared by every location
 * that uses the backend: the largest of theirs.
 */

void
ngx_http_loyalty_redis_use(ngx_http_loyalty_redis_t *rd,
    ngx_msec_t connect_timeout)
{
    ngx_uint_t                       i;
    ngx_http_loyalty_redis_node_t  **seeds;

    if (rd->cluster == NULL) {
        if (connect_timeout > rd->node->connect_timeout) {
            rd->node->connect_timeout = connect_timeout;
        }

        return;
    }

    if (connect_timeout > rd->cluster->tmpl.connect_timeout) {
        rd->cluster->tmpl.connect_timeout = connect_timeout;
    }

    seeds = rd->cluster->seeds.elts;

    for (i = 0; i < rd->cluster->seeds.nelts; i++) {
        seeds[i]->connect_timeout = rd->cluster->tmpl.connect_timeout;
    }
}


/* an address of loyalty_redis, or a seed of loyalty_redis_cluster */

ngx_int_t
ngx_http_loyalty_redis_check(ngx_conf_t *cf, ngx_str_t *address,
    ngx_uint_t cluster)
{
    ngx_http_loyalty_redis_node_t  node;

    return ngx_http_loyalty_redis_parse_address(cf, address, &node, cluster);
}


/*
 * One backend per address, credentials, database and breaker settings:
 * servers that name the same Redis the same way share its connections
 * and its breaker.  The breaker is a node's (it counts what happens on
 * the node's connections), so servers whose breakers differ get nodes of
 * their own.
 */

ngx_http_loyalty_redis_t *
ngx_http_loyalty_redis_add(ngx_conf_t *cf, ngx_http_loyalty_redis_conf_t *rc)
{
    ngx_int_t                       db;
    ngx_uint_t                      i;
    ngx_http_loyalty_redis_t       *rd, **rdp;
    ngx_http_loyalty_main_conf_t   *lmcf;
    ngx_http_loyalty_redis_node_t  *node;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_loyalty_module);

    db = (rc->db == NGX_CONF_UNSET) ? 0 : rc->db;

    if (rc->cluster != NULL) {
        return ngx_http_loyalty_cluster_add(cf, rc);
    }

    rdp = lmcf->backends.elts;

    for (i = 0; i < lmcf->backends.nelts; i++) {
        if (rdp[i]->cluster != NULL) {
            continue;
        }

        node = rdp[i]->node;

        if (ngx_http_loyalty_redis_str_eq(&rdp[i]->name, &rc->address)
            && ngx_http_loyalty_redis_same(node, rc)
            && node->db == db)
        {
            return rdp[i];
        }
    }

    rd = ngx_pcalloc(cf->pool, sizeof(ngx_http_loyalty_redis_t));
    if (rd == NULL) {
        return NULL;
    }

    node = ngx_pcalloc(cf->pool, sizeof(ngx_http_loyalty_redis_node_t));
    if (node == NULL) {
        return NULL;
    }

    if (ngx_http_loyalty_redis_parse_address(cf, &rc->address, node, 0)
        != NGX_OK)
    {
        return NULL;
    }

    node->user = rc->user;
    node->password = rc->password;
    node->db = db;
    node->threshold = rc->breaker_failures;
    node->cooldown = rc->breaker_cooldown;

    rd->name = rc->address;
    rd->node = node;

    rdp = ngx_array_push(&lmcf->backends);
    if (rdp == NULL) {
        return NULL;
    }

    *rdp = rd;

    return rd;
}


/*
 * A cluster backend: one per seed list, credentials, breaker settings and
 * read mode.  The seeds are parsed here; every other node is found by
 * the workers.
 */

static ngx_http_loyalty_redis_t *
ngx_http_loyalty_cluster_add(ngx_conf_t *cf,
    ngx_http_loyalty_redis_conf_t *rc)
{
    u_char                          *p;
    size_t                           len;
    ngx_str_t                       *addr;
    ngx_uint_t                       i, j;
    ngx_http_loyalty_redis_t        *rd, **rdp;
    ngx_http_loyalty_cluster_t      *c;
    ngx_http_loyalty_main_conf_t    *lmcf;
    ngx_http_loyalty_redis_node_t   *node, **np;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_loyalty_module);

    addr = rc->cluster->elts;

    /* the name: the seeds, comma-separated */

    len = 0;

    for (i = 0; i < rc->cluster->nelts; i++) {
        len += addr[i].len + 1;
    }

    rdp = lmcf->backends.elts;

    for (i = 0; i < lmcf->backends.nelts; i++) {
        c = rdp[i]->cluster;

        if (c == NULL || rdp[i]->name.len != len - 1
            || c->read_replicas != (rc->read_replicas == 1)
            || !ngx_http_loyalty_redis_same(&c->tmpl, rc))
        {
            continue;
        }

        p = rdp[i]->name.data;

        for (j = 0; j < rc->cluster->nelts; j++) {
            if (ngx_strncmp(p, addr[j].data, addr[j].len) != 0) {
                break;
            }

            p += addr[j].len + 1;
        }

        if (j == rc->cluster->nelts) {
            return rdp[i];
        }
    }

    rd = ngx_pcalloc(cf->pool, sizeof(ngx_http_loyalty_redis_t));
    c = ngx_pcalloc(cf->pool, sizeof(ngx_http_loyalty_cluster_t));

    if (rd == NULL || c == NULL) {
        return NULL;
    }

    rd->name.data = ngx_pnalloc(cf->pool, len);
    if (rd->name.data == NULL) {
        return NULL;
    }

    p = rd->name.data;

    for (i = 0; i < rc->cluster->nelts; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, addr[i].data, addr[i].len);
    }

    rd->name.len = p - rd->name.data;
    rd->cluster = c;

    c->backend = rd;
    c->read_replicas = (rc->read_replicas == 1);

    c->tmpl.user = rc->user;
    c->tmpl.password = rc->password;
    c->tmpl.threshold = rc->breaker_failures;
    c->tmpl.cooldown = rc->breaker_cooldown;
    c->tmpl.backend = rd;
    c->tmpl.cluster = c;
    c->tmpl.readonly = c->read_replicas;

    if (ngx_array_init(&c->seeds, cf->pool, rc->cluster->nelts,
                       sizeof(ngx_http_loyalty_redis_node_t *))
        != NGX_OK)
    {
        return NULL;
    }

    for (i = 0; i < rc->cluster->nelts; i++) {
        node = ngx_pcalloc(cf->pool, sizeof(ngx_http_loyalty_redis_node_t));
        if (node == NULL) {
            return NULL;
        }

        if (ngx_http_loyalty_redis_parse_address(cf, &addr[i], node, 1)
            != NGX_OK)
        {
            return NULL;
        }

        if (node->port == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"loyalty_redis_cluster\" node \"%V\": a "
                               "cluster is reached over TCP, not a unix "
                               "socket", &addr[i]);
            return NULL;
        }

        node->user = c->tmpl.user;
        node->password = c->tmpl.password;
        node->threshold = c->tmpl.threshold;
        node->cooldown = c->tmpl.cooldown;
        node->backend = rd;
        node->cluster = c;
        node->readonly = c->tmpl.readonly;

        np = ngx_array_push(&c->seeds);
        if (np == NULL) {
            return NULL;
        }

        *np = node;
    }

    rdp = ngx_array_push(&lmcf->backends);
    if (rdp == NULL) {
        return NULL;
    }

    *rdp = rd;

    return rd;
}


static ngx_int_t
ngx_http_loyalty_redis_str_eq(ngx_str_t *a, ngx_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || ngx_memcmp(a->data, b->data, a->len) == 0);
}


/* the credentials and the breaker of node are those rc asks for */

static ngx_int_t
ngx_http_loyalty_redis_same(ngx_http_loyalty_redis_node_t *node,
    ngx_http_loyalty_redis_conf_t *rc)
{
    if (!ngx_http_loyalty_redis_str_eq(&node->user, &rc->user)
        || !ngx_http_loyalty_redis_str_eq(&node->password, &rc->password)
        || (node->password.data == NULL) != (rc->password.data == NULL))
    {
        return 0;
    }

    /* without a breaker the cooldown means nothing */

    return node->threshold == rc->breaker_failures
           && (node->threshold == 0 || node->cooldown == rc->breaker_cooldown);
}


static ngx_int_t
ngx_http_loyalty_redis_parse_address(ngx_conf_t *cf, ngx_str_t *address,
    ngx_http_loyalty_redis_node_t *node, ngx_uint_t cluster)
{
    char       *name, *hint;
    u_char     *p;
    ngx_url_t   u;
    ngx_str_t   host;
#if (NGX_HAVE_INET6)
    u_char      inaddr6[16];
#endif

    node->name = *address;

    name = cluster ? "loyalty_redis_cluster" : "loyalty_redis";
    hint = cluster ? "" : " or unix:/path";

    if (address->len >= 5 && ngx_strncmp(address->data, "unix:", 5) == 0) {

        if (address->len == 5) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%s\" has an empty unix socket path in "
                               "\"%V\"", name, address);
            return NGX_ERROR;
        }

        host.data = address->data + 5;
        host.len = address->len - 5;
        node->port = 0;

        goto done;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *address;
    u.default_port = 6379;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" has an invalid address \"%V\": %s",
                           name, address,
                           u.err ? u.err : "cannot parse");
        return NGX_ERROR;
    }

    if (u.uri.len || u.host.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" has an invalid address \"%V\": "
                           "expected host:port%s", name, address, hint);
        return NGX_ERROR;
    }

    host = u.host;

    if (host.len > 2 && host.data[0] == '[') {
        host.data++;
        host.len -= 2;
    }

    /*
     * hiredis resolves names with a blocking getaddrinfo() in the worker,
     * which would stall every request on that worker: numbers only
     */

    if (ngx_inet_addr(host.data, host.len) == INADDR_NONE
#if (NGX_HAVE_INET6)
        && ngx_inet6_addr(host.data, host.len, inaddr6) != NGX_OK
#endif
        )
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" address \"%V\" is not numeric: "
                           "a host name would need a blocking DNS lookup in "
                           "the worker; use an IP address%s",
                           name, address, hint);
        return NGX_ERROR;
    }

    node->port = u.port;

done:

    p = ngx_pnalloc(cf->pool, host.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    node->host.data = p;
    node->host.len = host.len;
    ngx_memcpy(p, host.data, host.len);
    p[host.len] = '\0';

    return NGX_OK;
}
