/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The loyalty fragment: the customer record, the tier ladder and the
 * offer catalog turned into $loyalty_json and friends through lib/
 * (loyalty_customer, loyalty_offers, loyalty_fragment).  The only nginx
 * file that uses jansson; texts end up in r->pool.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_ctx.h"
#include "ngx_http_loyalty_json.h"
#include "ngx_http_loyalty_catalog.h"
#include "ngx_http_loyalty_log.h"
#include "loyalty_customer.h"
#include "loyalty_offers.h"
#include "loyalty_fragment.h"


/* fails to compile when the HMGET field list and lib/ disagree */
typedef char ngx_http_loyalty_fields_agree_t[
    (NGX_HTTP_LOYALTY_FIELDS == LOYALTY_FIELD_COUNT) ? 1 : -1];


static ngx_int_t ngx_http_loyalty_copy_text(ngx_http_request_t *r,
    ngx_str_t *dst, char *text, size_t len);
static json_t *ngx_http_loyalty_experiments(ngx_http_loyalty_ctx_t *ctx);


/* where no loyalty_tier is configured: no tier has a next one */
static loyalty_ladder_t  ngx_http_loyalty_no_ladder;


ngx_str_t *
ngx_http_loyalty_fragment(ngx_http_request_t *r, ngx_http_loyalty_ctx_t *ctx)
{
    char                         *text, *otext, *safe, *status, err[128];
    size_t                        len, olen, slen;
    ngx_tm_t                      tm;
    ngx_uint_t                    i;
    json_t                       *offers, *experiments;
    const json_t                 *catalog;
    loyalty_ladder_t             *ladder;
    loyalty_progress_t            progress;
    loyalty_customer_t            c;
    ngx_http_loyalty_loc_conf_t  *llcf;

    if (ctx->json.data != NULL) {
        return &ctx->json;
    }

    if (ctx->status == NGX_HTTP_LOYALTY_HOLDOUT) {
        /* held out: no fragment at all */
        ngx_str_set(&ctx->json, "");
        ngx_str_set(&ctx->offers, "");
        return &ctx->json;
    }

    experiments = ngx_http_loyalty_experiments(ctx);

    /* status names are NUL-terminated literals */
    status = (char *) ngx_http_loyalty_status_name(ctx)->data;

    if (!ctx->record) {
        text = loyalty_fragment(status, NULL, NULL, NULL, experiments, &len);

        json_decref(experiments);

        if (ngx_http_loyalty_copy_text(r, &ctx->json, text, len) != NGX_OK) {
            return NULL;
        }

        ngx_str_set(&ctx->offers, "[]");

        return &ctx->json;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_loyalty_module);

    loyalty_customer_init(&c);

    /* tier and points were validated with the lookup */

    (void) loyalty_customer_set_field(&c, LOYALTY_FIELD_TIER, ctx->tier.data,
                                      ctx->tier.len, err, sizeof(err));
    (void) loyalty_customer_set_field(&c, LOYALTY_FIELD_POINTS,
                                      ctx->points.data, ctx->points.len,
                                      err, sizeof(err));

    /* a field that fails validation is dropped and logged; the rest is
     * used */

    for (i = LOYALTY_FIELD_CASHBACK; i < LOYALTY_FIELD_COUNT; i++) {
        if (ctx->fields[i].len == 0) {
            continue;
        }

        if (!loyalty_customer_set_field(&c, i, ctx->fields[i].data,
                                        ctx->fields[i].len, err, sizeof(err)))
        {
            ngx_http_loyalty_log_error(NGX_LOG_WARN, r->connection->log, 0,
                                       "field dropped",
                                       "loyalty record field \"%s\" "
                                       "dropped: %s",
                                       loyalty_customer_field_name(i), err);
        }
    }

    ladder = llcf->ladder ? llcf->ladder : &ngx_http_loyalty_no_ladder;

    loyalty_ladder_progress(ladder, ctx->tier.data, ctx->tier.len, c.points,
                            &progress);

    /* dates use the server's local date */

    ngx_localtime(ngx_time(), &tm);

    catalog = llcf->catalog ? llcf->catalog->json : NULL;

    offers = loyalty_offers_eligible(&c, catalog, ladder, tm.ngx_tm_year,
                                     tm.ngx_tm_mon, tm.ngx_tm_mday,
                                     llcf->offers_max);

    text = loyalty_fragment(status, &c, &progress, offers, experiments,
                            &len);

    json_decref(experiments);

    otext = NULL;
    safe = NULL;

    /* $loyalty_offers is dumped only for a request that uses it */

    if (ctx->want_offers && offers != NULL) {
        otext = json_dumps(offers, JSON_COMPACT|JSON_ENSURE_ASCII
                                   |JSON_PRESERVE_ORDER);
    }

    if (otext != NULL) {
        olen = ngx_strlen(otext);
        safe = loyalty_json_script_safe(otext, olen, &slen);
        free(otext);
    }

    json_decref(offers);
    loyalty_customer_free(&c);

    if (ngx_http_loyalty_copy_text(r, &ctx->json, text, len) != NGX_OK) {
        free(safe);
        return NULL;
    }

    if (ctx->want_offers
        && ngx_http_loyalty_copy_text(r, &ctx->offers, safe,
                                      safe ? slen : 0)
           != NGX_OK)
    {
        return NULL;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "loyalty fragment: %uz bytes, %uz bytes of offers",
                   ctx->json.len, ctx->offers.len);

    return &ctx->json;
}


/* copies text made by lib/ (malloc) into the pool and frees it */

/* "experiments":{"name":"variant",...}; NULL when there is none */

static json_t *
ngx_http_loyalty_experiments(ngx_http_loyalty_ctx_t *ctx)
{
    json_t      *obj;
    ngx_uint_t   i;

    if (ctx->nvariants == 0) {
        return NULL;
    }

    obj = json_object();
    if (obj == NULL) {
        return NULL;
    }

    /* names are [A-Za-z0-9_-], checked at configuration time */

    for (i = 0; i < ctx->nvariants; i++) {
        if (json_object_setn_new_nocheck(obj,
                                  (const char *) ctx->variants[i].test.data,
                                  ctx->variants[i].test.len,
                                  json_stringn_nocheck(
                                  (const char *) ctx->variants[i].variant.data,
                                  ctx->variants[i].variant.len))
            != 0)
        {
            json_decref(obj);
            return NULL;
        }
    }

    return obj;
}


static ngx_int_t
ngx_http_loyalty_copy_text(ngx_http_request_t *r, ngx_str_t *dst, char *text,
    size_t len)
{
    if (text == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "loyalty: cannot build JSON text");
        return NGX_ERROR;
    }

    dst->data = ngx_pnalloc(r->pool, len);
    if (dst->data == NULL) {
        free(text);
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, text, len);
    dst->len = len;

    free(text);

    return NGX_OK;
}


/* $loyalty_next_tier and $loyalty_points_to_next, from the ladder alone */

ngx_int_t
ngx_http_loyalty_progress(ngx_http_request_t *r, ngx_http_loyalty_ctx_t *ctx,
    ngx_str_t *next_tier, ngx_str_t *points_to_next)
{
    uint64_t                      points;
    loyalty_progress_t            p;
    ngx_http_loyalty_loc_conf_t  *llcf;

    next_tier->len = 0;
    points_to_next->len = 0;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_loyalty_module);

    if (!ctx->record || llcf->ladder == NULL
        || !loyalty_points_parse(ctx->points.data, ctx->points.len, &points))
    {
        return NGX_OK;
    }

    loyalty_ladder_progress(llcf->ladder, ctx->tier.data, ctx->tier.len,
                            points, &p);

    if (!p.has_next) {
        return NGX_OK;
    }

    next_tier->data = (u_char *) p.next_tier;
    next_tier->len = p.next_tier_len;

    points_to_next->data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (points_to_next->data == NULL) {
        return NGX_ERROR;
    }

    points_to_next->len = ngx_sprintf(points_to_next->data, "%uL",
                                      p.points_to_next)
                          - points_to_next->data;

    return NGX_OK;
}


/* a catalog text from Redis; an invalid one keeps the last good catalog */

void
ngx_http_loyalty_catalog_update(ngx_http_loyalty_catalog_t *cat,
    ngx_str_t *text, ngx_log_t *log)
{
    int      dropped;
    char     err[128];
    json_t  *json;

    json = NULL;

    if (text == NULL) {
        /* no such key: no catalog offers */
        json = json_array();

        if (json == NULL) {
            return;
        }

        dropped = 0;

    } else {
        dropped = loyalty_catalog_parse((char *) text->data, text->len,
                                        &json, err, sizeof(err));

        if (dropped < 0) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "loyalty offers catalog \"%V\" is invalid (%s), "
                          "keeping the last good one", &cat->key, err);
            return;
        }

        if (dropped > 0) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "loyalty offers catalog \"%V\": %d offer(s) left "
                          "out, first: %s", &cat->key, dropped, err);
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "loyalty offers catalog \"%V\": %uz offer(s)",
                   &cat->key, json_array_size(json));

    json_decref(cat->json);
    cat->json = json;
}


void
ngx_http_loyalty_catalog_free(ngx_http_loyalty_catalog_t *cat)
{
    json_decref(cat->json);
    cat->json = NULL;
}


/* loyalty_tier name min_points [label=text]; */

char *
ngx_http_loyalty_tier(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_loyalty_loc_conf_t *llcf = conf;

    char         err[128];
    off_t        min;
    ngx_str_t   *value, label;

    if (llcf->ladder == NGX_CONF_UNSET_PTR) {
        llcf->ladder = ngx_palloc(cf->pool, sizeof(loyalty_ladder_t));
        if (llcf->ladder == NULL) {
            return NGX_CONF_ERROR;
        }

        loyalty_ladder_init(llcf->ladder);
    }

    value = cf->args->elts;

    min = ngx_atoof(value[2].data, value[2].len);

    if (min == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"loyalty_tier\" has an invalid min_points "
                           "\"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&label);

    if (cf->args->nelts == 4) {
        if (value[3].len < 6 || ngx_strncmp(value[3].data, "label=", 6) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"loyalty_tier\" has an unknown parameter "
                               "\"%V\", expected label=text", &value[3]);
            return NGX_CONF_ERROR;
        }

        label.data = value[3].data + 6;
        label.len = value[3].len - 6;
    }

    if (loyalty_ladder_add(llcf->ladder, value[1].data, value[1].len,
                           (uint64_t) min, label.data, label.len,
                           err, sizeof(err))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"loyalty_tier\" \"%V\": %s", &value[1], err);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
