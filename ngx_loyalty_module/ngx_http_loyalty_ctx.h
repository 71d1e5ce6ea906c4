/*
 * Copyright (C) ngx_loyalty_module authors
 */


#ifndef _NGX_HTTP_LOYALTY_CTX_H_INCLUDED_
#define _NGX_HTTP_LOYALTY_CTX_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"


ngx_http_loyalty_ctx_t *ngx_http_loyalty_create_ctx(ngx_http_request_t *r);
ngx_http_loyalty_ctx_t *ngx_http_loyalty_get_ctx(ngx_http_request_t *r);
ngx_str_t *ngx_http_loyalty_status_name(ngx_http_loyalty_ctx_t *ctx);
ngx_str_t *ngx_http_loyalty_cache_status_name(ngx_http_loyalty_ctx_t *ctx);


#endif /* _NGX_HTTP_LOYALTY_CTX_H_INCLUDED_ */
