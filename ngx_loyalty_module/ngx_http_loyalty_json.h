/*
 * Copyright (C) ngx_loyalty_module authors
 */


#ifndef _NGX_HTTP_LOYALTY_JSON_H_INCLUDED_
#define _NGX_HTTP_LOYALTY_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"


ngx_str_t *ngx_http_loyalty_fragment(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx);
ngx_int_t ngx_http_loyalty_progress(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx, ngx_str_t *next_tier,
    ngx_str_t *points_to_next);
void ngx_http_loyalty_catalog_update(ngx_http_loyalty_catalog_t *cat,
    ngx_str_t *text, ngx_log_t *log);
void ngx_http_loyalty_catalog_free(ngx_http_loyalty_catalog_t *cat);
char *ngx_http_loyalty_tier(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


#endif /* _NGX_HTTP_LOYALTY_JSON_H_INCLUDED_ */
