/*
 * Copyright (C) ngx_loyalty_module authors
 */


#ifndef _NGX_HTTP_LOYALTY_LOG_H_INCLUDED_
#define _NGX_HTTP_LOYALTY_LOG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * Error log flood guard: at most one line per second per worker and per
 * call site; the lines held back are counted and reported in one line.
 */

typedef struct ngx_http_loyalty_log_guard_s  ngx_http_loyalty_log_guard_t;

struct ngx_http_loyalty_log_guard_s {
    const char                    *cause;
    time_t                         sec;       /* of the last line written */
    ngx_uint_t                     suppressed;
    ngx_uint_t                     level;
    ngx_http_loyalty_log_guard_t  *next;      /* all guards used so far */
    unsigned                       registered:1;
};


#define ngx_http_loyalty_log_error(lvl, log, err, why, ...)                 \
    do {                                                                      \
        static ngx_http_loyalty_log_guard_t  ngx_http_loyalty_guard_ =        \
            { why, 0, 0, lvl, NULL, 0 };                                      \
                                                                              \
        ngx_http_loyalty_log_guarded(&ngx_http_loyalty_guard_, lvl, log,      \
                                     err, __VA_ARGS__);                       \
    } while (0)


/* the same, with a guard shared by several call sites of one cause */
#define ngx_http_loyalty_log_guarded(g, lvl, log, err, ...)                 \
    do {                                                                      \
        if ((log)->log_level >= (lvl) && ngx_http_loyalty_log_allow(g)) {     \
            ngx_log_error_core(lvl, log, err, __VA_ARGS__);                   \
        }                                                                     \
    } while (0)


ngx_uint_t ngx_http_loyalty_log_allow(ngx_http_loyalty_log_guard_t *g);
void ngx_http_loyalty_log_tick(void);


#endif /* _NGX_HTTP_LOYALTY_LOG_H_INCLUDED_ */
