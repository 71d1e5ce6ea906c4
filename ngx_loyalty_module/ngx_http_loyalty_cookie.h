/*
 * Copyright (C) ngx_loyalty_module authors
 */


#ifndef _NGX_HTTP_LOYALTY_COOKIE_H_INCLUDED_
#define _NGX_HTTP_LOYALTY_COOKIE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"


ngx_http_loyalty_status_e ngx_http_loyalty_cookie_id(ngx_http_request_t *r,
    ngx_http_loyalty_loc_conf_t *llcf, ngx_http_loyalty_ctx_t *ctx);
char *ngx_http_loyalty_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_LOYALTY_COOKIE_H_INCLUDED_ */
