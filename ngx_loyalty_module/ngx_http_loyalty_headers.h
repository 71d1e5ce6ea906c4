/*
 * Copyright (C) ngx_loyalty_module authors
 */


#ifndef _NGX_HTTP_LOYALTY_HEADERS_H_INCLUDED_
#define _NGX_HTTP_LOYALTY_HEADERS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"


/* a walk over a list of ngx_table_elt_t */
typedef struct {
    ngx_list_part_t               *part;
    ngx_uint_t                     i;
} ngx_http_loyalty_header_walk_t;


ngx_int_t ngx_http_loyalty_set_headers(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx, ngx_http_loyalty_loc_conf_t *llcf);
ngx_table_elt_t *ngx_http_loyalty_header_next(
    ngx_http_loyalty_header_walk_t *w);
void ngx_http_loyalty_headers_init(void);


#endif /* _NGX_HTTP_LOYALTY_HEADERS_H_INCLUDED_ */
