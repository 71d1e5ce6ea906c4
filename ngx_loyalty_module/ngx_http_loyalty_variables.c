/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The $loyalty_* variables: what the lookup found, read from the
 * request's ctx (a subrequest reads its main request's).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_ctx.h"
#include "ngx_http_loyalty_json.h"
#include "ngx_http_loyalty_variables.h"


#define NGX_HTTP_LOYALTY_VAR_ID       0
#define NGX_HTTP_LOYALTY_VAR_TIER     1
#define NGX_HTTP_LOYALTY_VAR_POINTS   2
#define NGX_HTTP_LOYALTY_VAR_STATUS   3
#define NGX_HTTP_LOYALTY_VAR_COOKIE_ERROR  4
#define NGX_HTTP_LOYALTY_VAR_JSON     5
#define NGX_HTTP_LOYALTY_VAR_OFFERS   6
#define NGX_HTTP_LOYALTY_VAR_NEXT_TIER  7
#define NGX_HTTP_LOYALTY_VAR_POINTS_TO_NEXT  8
#define NGX_HTTP_LOYALTY_VAR_CACHE_STATUS  9


static ngx_int_t ngx_http_loyalty_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_loyalty_vars[] = {

    { ngx_string("loyalty_id"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_tier"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_TIER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_points"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_POINTS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_status"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_cookie_error"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_COOKIE_ERROR, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_json"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_JSON, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_offers"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_OFFERS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_next_tier"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_NEXT_TIER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_points_to_next"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_POINTS_TO_NEXT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_cache_status"), NULL, ngx_http_loyalty_variable,
      NGX_HTTP_LOYALTY_VAR_CACHE_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_variants"), NULL,
      ngx_http_loyalty_ab_variants_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("loyalty_ab_"), NULL, ngx_http_loyalty_ab_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_loyalty_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t               *s, next, to_next;
    ngx_http_loyalty_ctx_t  *ctx;

    ctx = ngx_http_loyalty_get_ctx(r);

    if (ctx == NULL && r != r->main) {
        ctx = ngx_http_loyalty_get_ctx(r->main);
    }

    if (ctx == NULL || !ctx->done) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_HTTP_LOYALTY_VAR_ID:
        s = &ctx->id;
        break;

    case NGX_HTTP_LOYALTY_VAR_TIER:
        s = &ctx->tier;
        break;

    case NGX_HTTP_LOYALTY_VAR_POINTS:
        s = &ctx->points;
        break;

    case NGX_HTTP_LOYALTY_VAR_COOKIE_ERROR:
        s = &ctx->cookie_error;
        break;

    case NGX_HTTP_LOYALTY_VAR_JSON:
    case NGX_HTTP_LOYALTY_VAR_OFFERS:
        if (data == NGX_HTTP_LOYALTY_VAR_OFFERS && ctx->offers.data == NULL
            && !ctx->want_offers)
        {
            /* the fragment was built without them: build both */
            ctx->want_offers = 1;
            ctx->json.data = NULL;
            ctx->json.len = 0;
        }

        if (ngx_http_loyalty_fragment(r, ctx) == NULL) {
            return NGX_ERROR;
        }

        s = (data == NGX_HTTP_LOYALTY_VAR_JSON) ? &ctx->json : &ctx->offers;
        break;

    case NGX_HTTP_LOYALTY_VAR_NEXT_TIER:
    case NGX_HTTP_LOYALTY_VAR_POINTS_TO_NEXT:
        if (ngx_http_loyalty_progress(r, ctx, &next, &to_next) != NGX_OK) {
            return NGX_ERROR;
        }

        s = (data == NGX_HTTP_LOYALTY_VAR_NEXT_TIER) ? &next : &to_next;
        break;

    case NGX_HTTP_LOYALTY_VAR_CACHE_STATUS:
        s = ngx_http_loyalty_cache_status_name(ctx);
        break;

    default: /* NGX_HTTP_LOYALTY_VAR_STATUS */
        s = ngx_http_loyalty_status_name(ctx);
        break;
    }

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


ngx_int_t
ngx_http_loyalty_variables_add(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_loyalty_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}
