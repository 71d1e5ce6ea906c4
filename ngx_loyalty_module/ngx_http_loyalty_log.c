/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The error log flood guard: Redis failing under load would otherwise
 * write the same line for every request.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_metrics.h"
#include "ngx_http_loyalty_log.h"


static void ngx_http_loyalty_log_report(ngx_http_loyalty_log_guard_t *g);


/* this worker's guards used so far */
static ngx_http_loyalty_log_guard_t  *ngx_http_loyalty_guards;


/*
 * The log flood guard behind ngx_http_loyalty_log_error(): one line per
 * second and call site; the rest are counted, and the count is written
 * with the next line or by the next tick.
 */

ngx_uint_t
ngx_http_loyalty_log_allow(ngx_http_loyalty_log_guard_t *g)
{
    time_t  now;

    if (!g->registered) {
        g->registered = 1;
        g->next = ngx_http_loyalty_guards;
        ngx_http_loyalty_guards = g;
    }

    now = ngx_time();

    if (g->sec == now) {
        g->suppressed++;
        ngx_http_loyalty_metric_add(log_suppressed, 1);
        return 0;
    }

    ngx_http_loyalty_log_report(g);

    g->sec = now;

    return 1;
}


static void
ngx_http_loyalty_log_report(ngx_http_loyalty_log_guard_t *g)
{
    if (g->suppressed == 0) {
        return;
    }

    ngx_log_error(g->level, ngx_cycle->log, 0,
                  "loyalty: %ui more \"%s\" messages suppressed",
                  g->suppressed, g->cause);

    g->suppressed = 0;
}


/* every second: the counts nobody has written yet */

void
ngx_http_loyalty_log_tick(void)
{
    time_t                         now;
    ngx_http_loyalty_log_guard_t  *g;

    now = ngx_time();

    /* a summary does not take the second from the next real line */

    for (g = ngx_http_loyalty_guards; g; g = g->next) {
        if (g->suppressed && g->sec < now) {
            ngx_http_loyalty_log_report(g);
        }
    }
}
