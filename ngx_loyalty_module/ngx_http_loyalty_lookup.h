/*
 * Copyright (C) ngx_loyalty_module authors
 */


#ifndef _NGX_HTTP_LOYALTY_LOOKUP_H_INCLUDED_
#define _NGX_HTTP_LOYALTY_LOOKUP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"


ngx_int_t ngx_http_loyalty_lookup(ngx_http_request_t *r,
    ngx_http_loyalty_loc_conf_t *llcf, ngx_http_loyalty_ctx_t *ctx,
    ngx_str_t *key);
void ngx_http_loyalty_lookup_leave(ngx_http_loyalty_ctx_t *ctx);
void ngx_http_loyalty_lookup_init_process(void);


#endif /* _NGX_HTTP_LOYALTY_LOOKUP_H_INCLUDED_ */
