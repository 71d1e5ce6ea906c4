/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Response side.  The header filter adds X-Loyalty-Tier and
 * X-Loyalty-Points for known customers (loyalty_response_headers) and
 * decides whether the body gets the loyalty fragment (loyalty_inject);
 * the body filter then inserts it: before the first marker of an HTML
 * page, streaming, or as a "loyalty" member spliced into a JSON object.
 * Reads the lookup's result from the request's ctx; never talks to Redis.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_ctx.h"
#include "ngx_http_loyalty_filter.h"
#include "ngx_http_loyalty_json.h"
#include "ngx_http_loyalty_headers.h"
#include "loyalty_marker.h"
#include "loyalty_jsonobj.h"


/* r->buffered bit while a JSON body is being collected (the image
 * filter's bit: the others are taken, and both never act together) */
#define NGX_HTTP_LOYALTY_BUFFERED  0x08

/* the first buffer for a JSON body of unknown length: one page, enough
 * for most API replies; it doubles as the body grows */
#define NGX_HTTP_LOYALTY_JSON_START_SIZE  4096


typedef struct {
    ngx_str_t                      fragment;   /* what is inserted */
    ngx_uint_t                     mode;

    /* html: bytes held back that may start the marker */
    u_char                        *pending;
    size_t                         plen;

    /* json: the body so far, in a buffer that grows with it, up to
     * loyalty_inject_json_max_size */
    u_char                        *json;
    size_t                         json_len;
    size_t                         json_size;  /* allocated */
    off_t                          json_expected; /* Content-Length, or -1 */

    unsigned                       done:1;     /* inserted or given up */
} ngx_http_loyalty_filter_ctx_t;


static ngx_int_t ngx_http_loyalty_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_loyalty_inject_start(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx, ngx_http_loyalty_loc_conf_t *llcf);
static ngx_uint_t ngx_http_loyalty_type_matches(ngx_http_request_t *r,
    ngx_http_loyalty_loc_conf_t *llcf);
static ngx_int_t ngx_http_loyalty_set_response_header(ngx_http_request_t *r,
    ngx_str_t *key, ngx_str_t *value);
static ngx_int_t ngx_http_loyalty_private(ngx_http_request_t *r);
static ngx_int_t ngx_http_loyalty_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_loyalty_html(ngx_http_request_t *r,
    ngx_http_loyalty_filter_ctx_t *fctx, ngx_http_loyalty_loc_conf_t *llcf,
    ngx_chain_t *in);
static ngx_int_t ngx_http_loyalty_json_collect(ngx_http_request_t *r,
    ngx_http_loyalty_filter_ctx_t *fctx, ngx_http_loyalty_loc_conf_t *llcf,
    ngx_chain_t *in);
static ngx_int_t ngx_http_loyalty_json_grow(ngx_http_request_t *r,
    ngx_http_loyalty_filter_ctx_t *fctx, size_t need, size_t max);
static ngx_int_t ngx_http_loyalty_json_send(ngx_http_request_t *r,
    ngx_http_loyalty_filter_ctx_t *fctx, ngx_chain_t *rest);
static ngx_chain_t **ngx_http_loyalty_append(ngx_http_request_t *r,
    ngx_chain_t **ll, u_char *p, size_t len, ngx_uint_t copy);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_str_t  ngx_http_loyalty_response_tier =
    ngx_string("X-Loyalty-Tier");
static ngx_str_t  ngx_http_loyalty_response_points =
    ngx_string("X-Loyalty-Points");
static ngx_str_t  ngx_http_loyalty_response_variants =
    ngx_string("X-Loyalty-Variants");

static ngx_str_t  ngx_http_loyalty_script_open =
    ngx_string("<script type=\"application/json\" id=\"loyalty-data\">");
static ngx_str_t  ngx_http_loyalty_script_close = ngx_string("</script>");
static ngx_str_t  ngx_http_loyalty_member = ngx_string("loyalty");
static ngx_str_t  ngx_http_loyalty_member_key = ngx_string(",\"loyalty\":");


static ngx_int_t
ngx_http_loyalty_header_filter(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_http_loyalty_ctx_t       *ctx;
    ngx_http_loyalty_loc_conf_t  *llcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_loyalty_get_ctx(r);

    if (ctx == NULL || !ctx->done) {
        return ngx_http_next_header_filter(r);
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_loyalty_module);

    if (llcf->response_headers && ctx->record) {

        if (ngx_http_loyalty_set_response_header(r,
                                             &ngx_http_loyalty_response_tier,
                                             &ctx->tier)
            != NGX_OK
            || ngx_http_loyalty_set_response_header(r,
                                            &ngx_http_loyalty_response_points,
                                            &ctx->points)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (llcf->response_headers
        && ctx->variants_text.len
        && ctx->status != NGX_HTTP_LOYALTY_HOLDOUT
        && ngx_http_loyalty_set_response_header(r,
                                          &ngx_http_loyalty_response_variants,
                                          &ctx->variants_text)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* a shopper held out of the program gets the page as it is */

    if (llcf->inject != NGX_HTTP_LOYALTY_INJECT_OFF
        && ctx->status != NGX_HTTP_LOYALTY_HOLDOUT)
    {
        rc = ngx_http_loyalty_inject_start(r, ctx, llcf);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return ngx_http_next_header_filter(r);
}


/*
 * Only a complete 200 response of a matching type in plain text is
 * changed: a compressed body cannot be searched (the gzip filter runs
 * after this one and still compresses what it sends), a range or a 304
 * has no whole body, HEAD has none at all.
 */

static ngx_int_t
ngx_http_loyalty_inject_start(ngx_http_request_t *r,
    ngx_http_loyalty_ctx_t *ctx, ngx_http_loyalty_loc_conf_t *llcf)
{
    u_char                         *p;
    ngx_str_t                      *json;
    ngx_http_loyalty_filter_ctx_t  *fctx;

    if (r->headers_out.status != NGX_HTTP_OK
        || r->header_only
        || r->method == NGX_HTTP_HEAD
        || r->headers_out.content_length_n == 0)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "loyalty inject: skipped, status %ui",
                       r->headers_out.status);
        return NGX_DECLINED;
    }

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->value.len)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "loyalty inject: skipped, body has Content-Encoding "
                      "\"%V\" (proxy_set_header Accept-Encoding \"\" "
                      "lets nginx compress after the module)",
                      &r->headers_out.content_encoding->value);
        return NGX_DECLINED;
    }

    if (!ngx_http_loyalty_type_matches(r, llcf)) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "loyalty inject: skipped, content type");
        return NGX_DECLINED;
    }

    json = ngx_http_loyalty_fragment(r, ctx);
    if (json == NULL) {
        return NGX_ERROR;
    }

    fctx = ngx_pcalloc(r->pool, sizeof(ngx_http_loyalty_filter_ctx_t));
    if (fctx == NULL) {
        return NGX_ERROR;
    }

    fctx->mode = llcf->inject;

    if (fctx->mode == NGX_HTTP_LOYALTY_INJECT_HTML) {
        fctx->fragment.len = ngx_http_loyalty_script_open.len + json->len
                             + ngx_http_loyalty_script_close.len;
        fctx->fragment.data = ngx_pnalloc(r->pool, fctx->fragment.len);
        if (fctx->fragment.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(fctx->fragment.data, ngx_http_loyalty_script_open.data,
                       ngx_http_loyalty_script_open.len);
        p = ngx_cpymem(p, json->data, json->len);
        ngx_memcpy(p, ngx_http_loyalty_script_close.data,
                   ngx_http_loyalty_script_close.len);

        fctx->pending = ngx_pnalloc(r->pool, llcf->inject_marker.len);
        if (fctx->pending == NULL) {
            return NGX_ERROR;
        }

    } else {
        fctx->fragment = *json;

        /* read before it is cleared below: the body's buffer is sized
         * by it */
        fctx->json_expected = r->headers_out.content_length_n;
    }

    ctx->filter = fctx;

    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    /* the body filter reads the bytes, so they must be in memory */
    r->filter_need_in_memory = 1;

    if (ngx_http_loyalty_private(r) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "loyalty inject: %s, fragment %uz bytes",
                   fctx->mode == NGX_HTTP_LOYALTY_INJECT_HTML ? "html"
                                                              : "json",
                   json->len);

    return NGX_OK;
}


static ngx_uint_t
ngx_http_loyalty_type_matches(ngx_http_request_t *r,
    ngx_http_loyalty_loc_conf_t *llcf)
{
    size_t      len;
    ngx_str_t  *type, deflt;

    if (!llcf->inject_types_default) {
        return ngx_http_test_content_type(r, &llcf->inject_types) != NULL;
    }

    if (llcf->inject == NGX_HTTP_LOYALTY_INJECT_JSON) {
        ngx_str_set(&deflt, "application/json");

    } else {
        ngx_str_set(&deflt, "text/html");
    }

    /* the type without parameters ("; charset=utf-8") */

    type = &r->headers_out.content_type;
    len = r->headers_out.content_type_len;

    if (len == 0 || len > type->len) {
        len = type->len;
    }

    return len == deflt.len
           && ngx_strncasecmp(type->data, deflt.data, len) == 0;
}


/* replaces any header of that name the upstream sent: one value only */

static ngx_int_t
ngx_http_loyalty_set_response_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value)
{
    ngx_table_elt_t                 *h;
    ngx_http_loyalty_header_walk_t   w;

    w.part = &r->headers_out.headers.part;
    w.i = 0;

    while ((h = ngx_http_loyalty_header_next(&w)) != NULL) {

        if (h->hash != 0
            && h->key.len == key->len
            && ngx_strncasecmp(h->key.data, key->data, key->len) == 0)
        {
            /* the header filter skips entries with a zero hash */
            h->hash = 0;
        }
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *key;
    h->value = *value;
    h->lowcase_key = NULL;

    return NGX_OK;
}


/*
 * A page with one shopper's data must not be stored by shared caches:
 * Cache-Control becomes "private", unless the upstream already forbids
 * storing it at all ("no-store"), which is stricter.
 */

static ngx_int_t
ngx_http_loyalty_private(ngx_http_request_t *r)
{
    ngx_uint_t         i;
    ngx_table_elt_t   *h, **ccp;

    ccp = r->headers_out.cache_control.elts;

    for (i = 0; i < r->headers_out.cache_control.nelts; i++) {
        if (ccp[i]->hash != 0
            && ngx_strlcasestrn(ccp[i]->value.data,
                                ccp[i]->value.data + ccp[i]->value.len,
                                (u_char *) "no-store", 8 - 1)
               != NULL)
        {
            return NGX_OK;
        }
    }

    for (i = 0; i < r->headers_out.cache_control.nelts; i++) {
        ccp[i]->hash = 0;
    }

    if (r->headers_out.cache_control.elts == NULL) {
        if (ngx_array_init(&r->headers_out.cache_control, r->pool, 1,
                           sizeof(ngx_table_elt_t *))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "private");
    h->lowcase_key = NULL;

    ccp = ngx_array_push(&r->headers_out.cache_control);
    if (ccp == NULL) {
        return NGX_ERROR;
    }

    *ccp = h;

    return NGX_OK;
}


static ngx_int_t
ngx_http_loyalty_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_http_loyalty_ctx_t         *ctx;
    ngx_http_loyalty_loc_conf_t    *llcf;
    ngx_http_loyalty_filter_ctx_t  *fctx;

    if (in == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_loyalty_module);

    if (ctx == NULL || ctx->filter == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    fctx = ctx->filter;

    if (fctx->done) {
        return ngx_http_next_body_filter(r, in);
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_loyalty_module);

    if (fctx->mode == NGX_HTTP_LOYALTY_INJECT_HTML) {
        return ngx_http_loyalty_html(r, fctx, llcf, in);
    }

    return ngx_http_loyalty_json_collect(r, fctx, llcf, in);
}


/*
 * Each buffer is searched together with the few bytes held back from the
 * previous ones (pending: a possible start of the marker), so a marker
 * split across buffers is found.  Bytes before the marker go out at once;
 * only a possible marker start is held, at most marker length - 1 bytes.
 */

static ngx_int_t
ngx_http_loyalty_html(ngx_http_request_t *r,
    ngx_http_loyalty_filter_ctx_t *fctx, ngx_http_loyalty_loc_conf_t *llcf,
    ngx_chain_t *in)
{
    size_t        len, emit, hold, from_pending;
    ssize_t       pos;
    ngx_buf_t    *b;
    ngx_str_t    *marker;
    ngx_chain_t  *out, **ll, *cl, *next;

    marker = &llcf->inject_marker;
    out = NULL;
    ll = &out;

    for (cl = in; cl; cl = next) {
        next = cl->next;
        b = cl->buf;

        if (fctx->done) {
            *ll = cl;
            ll = &cl->next;
            continue;
        }

        len = b->last - b->pos;

        pos = (len == 0) ? -1 : loyalty_marker_find(marker->data, marker->len,
                                                    fctx->pending, fctx->plen,
                                                    b->pos, len);

        if (pos >= 0) {
            from_pending = ngx_min((size_t) pos, fctx->plen);

            ll = ngx_http_loyalty_append(r, ll, fctx->pending, from_pending,
                                         1);
            if (ll == NULL) {
                return NGX_ERROR;
            }

            if ((size_t) pos > fctx->plen) {
                ll = ngx_http_loyalty_append(r, ll, b->pos,
                                             pos - fctx->plen, 0);
                if (ll == NULL) {
                    return NGX_ERROR;
                }

                b->pos += pos - fctx->plen;
            }

            ll = ngx_http_loyalty_append(r, ll, fctx->fragment.data,
                                         fctx->fragment.len, 0);
            if (ll == NULL) {
                return NGX_ERROR;
            }

            ll = ngx_http_loyalty_append(r, ll, fctx->pending + from_pending,
                                         fctx->plen - from_pending, 1);
            if (ll == NULL) {
                return NGX_ERROR;
            }

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "loyalty inject: marker \"%V\", %uz bytes "
                           "inserted", marker, fctx->fragment.len);

            fctx->plen = 0;
            fctx->done = 1;

            *ll = cl;
            ll = &cl->next;
            continue;
        }

        /* no marker yet: hold back what may be its beginning, unless the
         * body ends here */

        hold = b->last_buf ? 0
                           : loyalty_marker_tail(marker->data, marker->len,
                                                 fctx->pending, fctx->plen,
                                                 b->pos, len);

        emit = fctx->plen + len - hold;

        from_pending = ngx_min(emit, fctx->plen);

        ll = ngx_http_loyalty_append(r, ll, fctx->pending, from_pending, 1);
        if (ll == NULL) {
            return NGX_ERROR;
        }

        /* the new pending bytes: the rest of the old ones, then the end
         * of this buffer */

        ngx_memmove(fctx->pending, fctx->pending + from_pending,
                    fctx->plen - from_pending);
        fctx->plen -= from_pending;

        if (hold > fctx->plen) {
            ngx_memcpy(fctx->pending + fctx->plen,
                       b->last - (hold - fctx->plen), hold - fctx->plen);
            b->last -= hold - fctx->plen;
            fctx->plen = hold;
        }

        if (b->last_buf && fctx->plen == 0) {
            fctx->done = 1;
        }

        if (ngx_buf_size(b) || ngx_buf_special(b)) {
            *ll = cl;
            ll = &cl->next;

        } else {
            /* all of it is held: nothing to send, it counts as sent */
            b->pos = b->last;
        }
    }

    *ll = NULL;

    if (out == NULL) {
        return NGX_OK;
    }

    return ngx_http_next_body_filter(r, out);
}


/*
 * The body is collected (up to loyalty_inject_json_max_size), checked to
 * be one JSON object without a "loyalty" member, and the member is
 * spliced in before the final "}": the shop's bytes stay as they were.
 * The buffer grows with the body, so a response takes what its body
 * needs, not the maximum, whatever the maximum is.
 */

static ngx_int_t
ngx_http_loyalty_json_collect(ngx_http_request_t *r,
    ngx_http_loyalty_filter_ctx_t *fctx, ngx_http_loyalty_loc_conf_t *llcf,
    ngx_chain_t *in)
{
    size_t        len, max;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    max = llcf->inject_json_max_size;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;
        len = b->last - b->pos;

        /* a Content-Length above the maximum is known to be too large
         * before its bytes are copied */

        if (fctx->json_expected > (off_t) max
            || fctx->json_len + len > max)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "loyalty inject: JSON body larger than %uz bytes, "
                          "passed unchanged", max);

            /* what was collected goes first, then the rest as it came */
            return ngx_http_loyalty_json_send(r, fctx, cl);
        }

        if (len > fctx->json_size - fctx->json_len
            && ngx_http_loyalty_json_grow(r, fctx, fctx->json_len + len, max)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (len) {
            ngx_memcpy(fctx->json + fctx->json_len, b->pos, len);
            fctx->json_len += len;
            b->pos = b->last;
        }

        if (b->last_buf) {
            return ngx_http_loyalty_json_send(r, fctx, NULL);
        }
    }

    r->buffered |= NGX_HTTP_LOYALTY_BUFFERED;

    return NGX_OK;
}


/*
 * Makes room for need bytes (need <= max).  The first buffer has the
 * announced Content-Length, or NGX_HTTP_LOYALTY_JSON_START_SIZE; each
 * next one at least twice the last, so a body is copied less than twice
 * over in all, and the old buffer is given back at once.
 */

static ngx_int_t
ngx_http_loyalty_json_grow(ngx_http_request_t *r,
    ngx_http_loyalty_filter_ctx_t *fctx, size_t need, size_t max)
{
    u_char  *p;
    size_t   size;

    if (fctx->json_size) {
        size = fctx->json_size * 2;

    } else if (fctx->json_expected > 0) {
        size = (size_t) fctx->json_expected;

    } else {
        size = NGX_HTTP_LOYALTY_JSON_START_SIZE;
    }

    size = ngx_min(ngx_max(size, need), max);

    p = ngx_pnalloc(r->pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (fctx->json != NULL) {
        ngx_memcpy(p, fctx->json, fctx->json_len);
        (void) ngx_pfree(r->pool, fctx->json);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "loyalty inject: JSON buffer %uz bytes for %uz",
                   size, need);

    fctx->json = p;
    fctx->json_size = size;

    return NGX_OK;
}


/*
 * Sends the collected body, spliced when rest is NULL (the body is
 * complete) and it is an object without the member, else as it came,
 * followed by rest.
 */

static ngx_int_t
ngx_http_loyalty_json_send(ngx_http_request_t *r,
    ngx_http_loyalty_filter_ctx_t *fctx, ngx_chain_t *rest)
{
    char                    err[96];
    ngx_buf_t              *b;
    ngx_str_t              *key;
    ngx_uint_t              splice;
    ngx_chain_t            *out, **ll, *cl;
    loyalty_json_object_t   info;

    fctx->done = 1;
    r->buffered &= ~NGX_HTTP_LOYALTY_BUFFERED;

    out = NULL;
    ll = &out;
    splice = 0;

    if (rest == NULL) {

        if (loyalty_json_object_check(fctx->json, fctx->json_len,
                                      ngx_http_loyalty_member.data,
                                      ngx_http_loyalty_member.len,
                                      &info, err, sizeof(err))
            != 0)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "loyalty inject: body is not a JSON object (%s), "
                          "passed unchanged", err);

        } else if (info.has_member) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "loyalty inject: JSON body already has a "
                          "\"loyalty\" member, passed unchanged");

        } else {
            splice = 1;
        }
    }

    if (splice) {
        /* <body up to "}">[,]"loyalty":<fragment><"}" and the rest>, as
         * buffers pointing into the body: it is not copied again */

        key = &ngx_http_loyalty_member_key;

        ll = ngx_http_loyalty_append(r, ll, fctx->json, info.close, 0);
        ll = ngx_http_loyalty_append(r, ll, key->data + (info.empty ? 1 : 0),
                                     key->len - (info.empty ? 1 : 0), 0);
        ll = ngx_http_loyalty_append(r, ll, fctx->fragment.data,
                                     fctx->fragment.len, 0);
        ll = ngx_http_loyalty_append(r, ll, fctx->json + info.close,
                                     fctx->json_len - info.close, 0);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "loyalty inject: %uz bytes spliced into JSON",
                       fctx->fragment.len);

    } else {
        ll = ngx_http_loyalty_append(r, ll, fctx->json, fctx->json_len, 0);
    }

    if (ll == NULL) {
        return NGX_ERROR;
    }

    if (rest != NULL) {
        *ll = rest;

    } else {
        /* the body ended: an empty last buffer ends the response */

        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->last_buf = 1;

        cl->buf = b;
        cl->next = NULL;
        *ll = cl;
    }

    return ngx_http_next_body_filter(r, out);
}


/*
 * Appends a memory buffer with len bytes at p (copied into the pool when
 * copy is set: held-back bytes are overwritten later).  Nothing is
 * appended for zero bytes.  A NULL ll (an earlier append failed) is
 * returned as it is, so a run of appends is checked once.
 */

static ngx_chain_t **
ngx_http_loyalty_append(ngx_http_request_t *r, ngx_chain_t **ll, u_char *p,
    size_t len, ngx_uint_t copy)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (ll == NULL || len == 0) {
        return ll;
    }

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NULL;
    }

    if (copy) {
        b = ngx_create_temp_buf(r->pool, len);
        if (b == NULL) {
            return NULL;
        }

        b->last = ngx_cpymem(b->pos, p, len);

    } else {
        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NULL;
        }

        b->memory = 1;
        b->pos = p;
        b->last = p + len;
    }

    cl->buf = b;
    cl->next = NULL;
    *ll = cl;

    return &cl->next;
}


ngx_int_t
ngx_http_loyalty_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_loyalty_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_loyalty_body_filter;

    return NGX_OK;
}
