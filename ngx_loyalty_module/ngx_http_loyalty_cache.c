/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The shared record cache (loyalty_cache_zone, loyalty_cache): customer
 * records, and "no such customer" answers, kept in shared memory for all
 * workers, in a red-black tree by CRC32 of the Redis key with an LRU
 * queue, as limit_req keeps its states.  Entries past their ttl stay for
 * loyalty_cache_stale more, to be served when Redis fails.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_cache.h"
#include "ngx_http_loyalty_log.h"
#include "ngx_http_loyalty_metrics.h"
#include "ngx_http_loyalty_redis.h"
#include "loyalty_cookie.h"


/* values kept per entry: tier, points, then the optional fields */
#define NGX_HTTP_LOYALTY_CACHE_VALUES  NGX_HTTP_LOYALTY_FIELDS

/* longest time an expired entry may wait for removal: whatever
 * loyalty_cache_stale says, entries older than this are evicted first */
#define NGX_HTTP_LOYALTY_CACHE_MAX_STALE  (24 * 3600 * 1000)


typedef struct {
    ngx_rbtree_t                   rbtree;
    ngx_rbtree_node_t              sentinel;
    ngx_queue_t                    queue;     /* LRU, most recent first */
} ngx_http_loyalty_cache_sh_t;


struct ngx_http_loyalty_cache_s {
    ngx_str_t                      name;
    ngx_shm_zone_t                *shm_zone;
    ngx_http_loyalty_cache_sh_t   *sh;
    ngx_slab_pool_t               *shpool;
    ngx_msec_t                     ttl;
    ngx_msec_t                     negative_ttl;
};


/* follows the rbtree node's key, from its "color" member on */
typedef struct {
    u_char                         color;
    u_char                         known;     /* 0: no such customer */
    u_short                        klen;
    ngx_queue_t                    queue;
    uint64_t                       stored;    /* ms since the epoch */
    uint64_t                       expires;
    uint32_t                       lens[NGX_HTTP_LOYALTY_CACHE_VALUES];
    u_char                         data[1];   /* key, then the values */
} ngx_http_loyalty_cache_node_t;


static ngx_http_loyalty_cache_node_t *ngx_http_loyalty_cache_find(
    ngx_http_loyalty_cache_t *cache, ngx_str_t *key, uint32_t hash);
static void ngx_http_loyalty_cache_remove(ngx_http_loyalty_cache_t *cache,
    ngx_http_loyalty_cache_node_t *cn);
static ngx_int_t ngx_http_loyalty_cache_copy(ngx_http_request_t *r,
    ngx_http_loyalty_cache_node_t *cn, ngx_http_loyalty_ctx_t *ctx);
static uint64_t ngx_http_loyalty_cache_now(void);
static void ngx_http_loyalty_cache_rbtree_insert_value(
    ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_loyalty_cache_cmp(ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *temp);
static ngx_int_t ngx_http_loyalty_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


#define ngx_http_loyalty_cache_node(n)                                       \
    ((ngx_http_loyalty_cache_node_t *) &(n)->color)

#define ngx_http_loyalty_cache_rbnode(cn)                                    \
    ((ngx_rbtree_node_t *)                                                    \
         ((u_char *) (cn) - offsetof(ngx_rbtree_node_t, color)))


/*
 * Looks the key up.  HIT: a fresh entry, copied into ctx (status, and the
 * record if it is a known customer).  EXPIRED: an entry past its ttl but
 * still within "stale", copied with ctx->stale set, for the caller to use
 * if Redis fails.  MISS otherwise.  max_ttl, when not 0, shortens every
 * entry's life (used while invalidations cannot be received).
 */

ngx_http_loyalty_cache_status_e
ngx_http_loyalty_cache_get(ngx_http_request_t *r,
    ngx_http_loyalty_cache_t *cache, ngx_str_t *key, ngx_msec_t max_ttl,
    ngx_msec_t stale, ngx_http_loyalty_ctx_t *ctx)
{
    uint32_t                        hash;
    uint64_t                        now, expires;
    ngx_http_loyalty_cache_node_t  *cn;
    ngx_http_loyalty_cache_status_e  cs;

    now = ngx_http_loyalty_cache_now();
    hash = ngx_crc32_short(key->data, key->len);

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_http_loyalty_cache_find(cache, key, hash);

    if (cn == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_HTTP_LOYALTY_CACHE_MISS;
    }

    expires = cn->expires;

    if (max_ttl && cn->stored + max_ttl < expires) {
        expires = cn->stored + max_ttl;
    }

    if (now < expires) {
        cs = NGX_HTTP_LOYALTY_CACHE_HIT;

    } else if (now < cn->expires + stale) {
        cs = NGX_HTTP_LOYALTY_CACHE_EXPIRED;

    } else {
        ngx_http_loyalty_cache_remove(cache, cn);
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_HTTP_LOYALTY_CACHE_MISS;
    }

    ngx_queue_remove(&cn->queue);
    ngx_queue_insert_head(&cache->sh->queue, &cn->queue);

    if (ngx_http_loyalty_cache_copy(r, cn, ctx) != NGX_OK) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_HTTP_LOYALTY_CACHE_MISS;
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);

    if (cs == NGX_HTTP_LOYALTY_CACHE_HIT) {
        ctx->status = ctx->record ? NGX_HTTP_LOYALTY_OK
                                  : NGX_HTTP_LOYALTY_UNKNOWN;
        ctx->stale = 0;

    } else {
        ctx->record = 0;
        ctx->stale = 1;
    }

    return cs;
}


/* called with the zone locked */

static ngx_int_t
ngx_http_loyalty_cache_copy(ngx_http_request_t *r,
    ngx_http_loyalty_cache_node_t *cn, ngx_http_loyalty_ctx_t *ctx)
{
    u_char      *p, *v;
    size_t       len;
    ngx_str_t   *dst;
    ngx_uint_t   i;

    ctx->tier.len = 0;
    ctx->points.len = 0;
    ngx_memzero(ctx->fields, sizeof(ctx->fields));
    ctx->record = 0;

    if (!cn->known) {
        return NGX_OK;
    }

    len = 0;

    for (i = 0; i < NGX_HTTP_LOYALTY_CACHE_VALUES; i++) {
        len += cn->lens[i];
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v = cn->data + cn->klen;
    ngx_memcpy(p, v, len);

    for (i = 0; i < NGX_HTTP_LOYALTY_CACHE_VALUES; i++) {
        dst = (i == 0) ? &ctx->tier : (i == 1) ? &ctx->points
                                               : &ctx->fields[i];
        dst->data = p;
        dst->len = cn->lens[i];
        p += cn->lens[i];
    }

    ctx->record = 1;

    return NGX_OK;
}


/*
 * Stores what Redis said for the key: ctx->record set (a customer), or
 * not (no such customer, kept for negative_ttl).  When the zone is full
 * the least recently used entries go.
 */

void
ngx_http_loyalty_cache_put(ngx_http_loyalty_cache_t *cache, ngx_str_t *key,
    ngx_http_loyalty_ctx_t *ctx, ngx_log_t *log)
{
    u_char                         *p;
    size_t                          size, vlen;
    uint32_t                        hash;
    uint64_t                        now;
    ngx_str_t                      *src;
    ngx_uint_t                      i, n;
    ngx_queue_t                    *q;
    ngx_rbtree_node_t              *node;
    ngx_http_loyalty_cache_node_t  *cn;

    if (key->len > 65535) {
        return;
    }

    now = ngx_http_loyalty_cache_now();
    hash = ngx_crc32_short(key->data, key->len);

    vlen = 0;

    if (ctx->record) {
        vlen = ctx->tier.len + ctx->points.len;

        for (i = 2; i < NGX_HTTP_LOYALTY_CACHE_VALUES; i++) {
            vlen += ctx->fields[i].len;
        }
    }

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_loyalty_cache_node_t, data)
           + key->len + vlen;

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_http_loyalty_cache_find(cache, key, hash);

    if (cn != NULL) {
        ngx_http_loyalty_cache_remove(cache, cn);
    }

    /* entries long past any use go first, two at a time */

    for (n = 0; n < 2 && !ngx_queue_empty(&cache->sh->queue); n++) {
        q = ngx_queue_last(&cache->sh->queue);
        cn = ngx_queue_data(q, ngx_http_loyalty_cache_node_t, queue);

        if (now < cn->expires + NGX_HTTP_LOYALTY_CACHE_MAX_STALE) {
            break;
        }

        ngx_http_loyalty_cache_remove(cache, cn);
    }

    node = ngx_slab_alloc_locked(cache->shpool, size);

    /* full: evict from the least recently used end until it fits */

    for (n = 0; node == NULL && n < 64; n++) {
        if (ngx_queue_empty(&cache->sh->queue)) {
            break;
        }

        q = ngx_queue_last(&cache->sh->queue);
        cn = ngx_queue_data(q, ngx_http_loyalty_cache_node_t, queue);
        ngx_http_loyalty_cache_remove(cache, cn);

        node = ngx_slab_alloc_locked(cache->shpool, size);
    }

    if (node == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        ngx_http_loyalty_log_error(NGX_LOG_WARN, log, 0, "cache full",
                                   "loyalty cache \"%V\": no room for an "
                                   "entry of %uz bytes", &cache->name, size);
        return;
    }

    node->key = hash;

    cn = ngx_http_loyalty_cache_node(node);

    cn->known = ctx->record ? 1 : 0;
    cn->klen = (u_short) key->len;
    cn->stored = now;
    cn->expires = now + (ctx->record ? cache->ttl : cache->negative_ttl);

    p = ngx_cpymem(cn->data, key->data, key->len);

    for (i = 0; i < NGX_HTTP_LOYALTY_CACHE_VALUES; i++) {
        if (!ctx->record) {
            cn->lens[i] = 0;
            continue;
        }

        src = (i == 0) ? &ctx->tier : (i == 1) ? &ctx->points
                                               : &ctx->fields[i];
        cn->lens[i] = (uint32_t) src->len;
        p = ngx_cpymem(p, src->data, src->len);
    }

    ngx_rbtree_insert(&cache->sh->rbtree, node);
    ngx_queue_insert_head(&cache->sh->queue, &cn->queue);

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


/* an invalidation: returns 1 if the key was cached */

ngx_uint_t
ngx_http_loyalty_cache_delete(ngx_http_loyalty_cache_t *cache, ngx_str_t *key)
{
    uint32_t                        hash;
    ngx_http_loyalty_cache_node_t  *cn;

    hash = ngx_crc32_short(key->data, key->len);

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_http_loyalty_cache_find(cache, key, hash);

    if (cn != NULL) {
        ngx_http_loyalty_cache_remove(cache, cn);
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return cn != NULL;
}


/*
 * An invalidation message from Redis rd, as the transport hands it over:
 * evict the id wherever it is cached with that Redis.
 */

void
ngx_http_loyalty_cache_invalidate(void *data, ngx_http_loyalty_redis_t *rd,
    ngx_str_t *id)
{
    ngx_http_loyalty_main_conf_t *lmcf = data;

    u_char                         buf[512];
    ngx_str_t                      key;
    ngx_uint_t                     i, n;
    ngx_http_loyalty_cache_use_t  *use;

    if (!loyalty_id_valid(id->data, id->len)) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "loyalty invalidation ignored: not a customer id");
        return;
    }

    use = lmcf->cache_uses.elts;
    n = 0;

    for (i = 0; i < lmcf->cache_uses.nelts; i++) {
        if (use[i].redis != rd
            || use[i].prefix.len + id->len > sizeof(buf))
        {
            continue;
        }

        key.data = buf;
        key.len = ngx_cpymem(ngx_cpymem(buf, use[i].prefix.data,
                                        use[i].prefix.len),
                             id->data, id->len)
                  - buf;

        n += ngx_http_loyalty_cache_delete(use[i].cache, &key);
    }

    ngx_http_loyalty_metric_add(invalidations, 1);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "loyalty invalidation \"%V\": %ui entries evicted",
                   id, n);
}


static ngx_http_loyalty_cache_node_t *
ngx_http_loyalty_cache_find(ngx_http_loyalty_cache_t *cache, ngx_str_t *key,
    uint32_t hash)
{
    ngx_int_t                       rc;
    ngx_rbtree_node_t              *node, *sentinel;
    ngx_http_loyalty_cache_node_t  *cn;

    node = cache->sh->rbtree.root;
    sentinel = cache->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        /* hash == node->key */

        cn = ngx_http_loyalty_cache_node(node);

        rc = ngx_memn2cmp(key->data, cn->data, key->len, (size_t) cn->klen);

        if (rc == 0) {
            return cn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_loyalty_cache_remove(ngx_http_loyalty_cache_t *cache,
    ngx_http_loyalty_cache_node_t *cn)
{
    ngx_rbtree_node_t  *node;

    node = ngx_http_loyalty_cache_rbnode(cn);

    ngx_queue_remove(&cn->queue);
    ngx_rbtree_delete(&cache->sh->rbtree, node);
    ngx_slab_free_locked(cache->shpool, node);
}


/* wall-clock milliseconds: the same in every worker */

static uint64_t
ngx_http_loyalty_cache_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


static void
ngx_http_loyalty_cache_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_http_loyalty_rbtree_insert(temp, node, sentinel,
                                   ngx_http_loyalty_cache_cmp);
}


static ngx_int_t
ngx_http_loyalty_cache_cmp(ngx_rbtree_node_t *node, ngx_rbtree_node_t *temp)
{
    ngx_http_loyalty_cache_node_t  *cn, *cnt;

    cn = ngx_http_loyalty_cache_node(node);
    cnt = ngx_http_loyalty_cache_node(temp);

    return ngx_memn2cmp(cn->data, cnt->data, cn->klen, cnt->klen);
}


/*
 * Inserts into a tree keyed by a CRC32 in node->key; nodes of equal
 * hashes are ordered by cmp.  The cache's tree and each worker's tree of
 * lookups in flight both insert this way.
 */

void
ngx_http_loyalty_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel,
    ngx_http_loyalty_rbtree_cmp_pt cmp)
{
    ngx_rbtree_node_t  **p;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            p = (cmp(node, temp) < 0) ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* loyalty_cache_zone name:size [ttl=time] [negative_ttl=time]; */

char *
ngx_http_loyalty_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                         *p;
    ssize_t                         size;
    ngx_str_t                      *value, name, s;
    ngx_int_t                       ms;
    ngx_uint_t                      i;
    ngx_http_loyalty_cache_t       *cache, **cachep;
    ngx_http_loyalty_main_conf_t   *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_loyalty_module);

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\": expected name:size, for "
                           "example loyalty:10m", &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small: at least %uzk",
                           &name, 8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    cachep = lmcf->caches.elts;

    for (i = 0; i < lmcf->caches.nelts; i++) {
        if (cachep[i]->name.len == name.len
            && ngx_strncmp(cachep[i]->name.data, name.data, name.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zone \"%V\" is declared twice", &name);
            return NGX_CONF_ERROR;
        }
    }

    cache = ngx_pcalloc(cf->pool, sizeof(ngx_http_loyalty_cache_t));
    if (cache == NULL) {
        return NGX_CONF_ERROR;
    }

    cache->name = name;
    cache->ttl = 5000;
    cache->negative_ttl = 30000;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            ms = ngx_parse_time(&s, 0);
            if (ms == NGX_ERROR || ms == 0) {
                goto invalid;
            }

            cache->ttl = (ngx_msec_t) ms;
            continue;
        }

        if (ngx_strncmp(value[i].data, "negative_ttl=", 13) == 0) {
            s.data = value[i].data + 13;
            s.len = value[i].len - 13;

            ms = ngx_parse_time(&s, 0);
            if (ms == NGX_ERROR) {
                goto invalid;
            }

            cache->negative_ttl = (ngx_msec_t) ms;
            continue;
        }

        goto invalid;
    }

    cache->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                            &ngx_http_loyalty_module);
    if (cache->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (cache->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used by another "
                           "directive", &name);
        return NGX_CONF_ERROR;
    }

    cache->shm_zone->init = ngx_http_loyalty_cache_init_zone;
    cache->shm_zone->data = cache;

    cachep = ngx_array_push(&lmcf->caches);
    if (cachep == NULL) {
        return NGX_CONF_ERROR;
    }

    *cachep = cache;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\": expected ttl=time (more "
                       "than 0) or negative_ttl=time", &value[i]);
    return NGX_CONF_ERROR;
}


/* loyalty_cache zone | off; */

char *
ngx_http_loyalty_cache_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_loyalty_loc_conf_t *llcf = conf;

    ngx_str_t                      *value;
    ngx_uint_t                      i;
    ngx_http_loyalty_cache_t      **cachep;
    ngx_http_loyalty_main_conf_t   *lmcf;

    if (llcf->cache != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        llcf->cache = NULL;
        return NGX_CONF_OK;
    }

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_loyalty_module);

    cachep = lmcf->caches.elts;

    for (i = 0; i < lmcf->caches.nelts; i++) {
        if (cachep[i]->name.len == value[1].len
            && ngx_strncmp(cachep[i]->name.data, value[1].data,
                           value[1].len) == 0)
        {
            llcf->cache = cachep[i];
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown zone \"%V\": declare it first with "
                       "loyalty_cache_zone in the http block", &value[1]);

    return NGX_CONF_ERROR;
}


/* a reload keeps the zone, and so the entries */

/*
 * A cache used with a Redis and a key prefix: that Redis's invalidation
 * messages evict prefix + id from it, so each worker subscribes there.
 */

ngx_int_t
ngx_http_loyalty_cache_use(ngx_conf_t *cf, ngx_http_loyalty_loc_conf_t *llcf)
{
    ngx_uint_t                     i;
    ngx_http_loyalty_cache_use_t  *use;
    ngx_http_loyalty_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_loyalty_module);

    use = lmcf->cache_uses.elts;

    for (i = 0; i < lmcf->cache_uses.nelts; i++) {
        if (use[i].cache == llcf->cache && use[i].redis == llcf->redis
            && use[i].prefix.len == llcf->key_prefix.len
            && ngx_strncmp(use[i].prefix.data, llcf->key_prefix.data,
                           llcf->key_prefix.len) == 0)
        {
            return NGX_OK;
        }
    }

    use = ngx_array_push(&lmcf->cache_uses);
    if (use == NULL) {
        return NGX_ERROR;
    }

    use->cache = llcf->cache;
    use->redis = llcf->redis;
    use->prefix = llcf->key_prefix;

    if (lmcf->invalidate_channel.data == NULL) {
        ngx_str_set(&lmcf->invalidate_channel, "loyalty:invalidate");

    } else if (lmcf->invalidate_channel.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"loyalty_invalidate_channel\" is empty: a "
                           "cache needs a channel for invalidations");
        return NGX_ERROR;
    }

    return ngx_http_loyalty_redis_subscribe(llcf->redis,
                                            &lmcf->invalidate_channel);
}


static ngx_int_t
ngx_http_loyalty_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_loyalty_cache_t  *ocache = data;

    size_t                     len;
    ngx_http_loyalty_cache_t  *cache;

    cache = shm_zone->data;

    if (ocache) {
        cache->sh = ocache->sh;
        cache->shpool = ocache->shpool;
        return NGX_OK;
    }

    cache->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cache->sh = cache->shpool->data;
        return NGX_OK;
    }

    cache->sh = ngx_slab_alloc(cache->shpool,
                               sizeof(ngx_http_loyalty_cache_sh_t));
    if (cache->sh == NULL) {
        return NGX_ERROR;
    }

    cache->shpool->data = cache->sh;

    ngx_rbtree_init(&cache->sh->rbtree, &cache->sh->sentinel,
                    ngx_http_loyalty_cache_rbtree_insert_value);

    ngx_queue_init(&cache->sh->queue);

    len = sizeof(" in loyalty cache zone \"\"") + shm_zone->shm.name.len;

    cache->shpool->log_ctx = ngx_slab_alloc(cache->shpool, len);
    if (cache->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cache->shpool->log_ctx, " in loyalty cache zone \"%V\"%Z",
                &shm_zone->shm.name);

    cache->shpool->log_nomem = 0;

    return NGX_OK;
}
