/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The directives that say which Redis to use and how (loyalty_redis,
 * loyalty_redis_auth, loyalty_redis_cluster, loyalty_redis_breaker), and
 * how a level inherits them.  The transport makes its backends of them
 * at merge time (ngx_http_loyalty_redis_add).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_loyalty_module.h"
#include "ngx_http_loyalty_redis.h"


char *
ngx_http_loyalty_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_loyalty_loc_conf_t *llcf = conf;

    ngx_str_t  *value;

    if (llcf->redis_conf.cluster != NULL) {
        return "cannot be combined with \"loyalty_redis_cluster\" in the "
               "same context";
    }

    if (llcf->redis_conf.address.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* checked here to point at this line; the backend is made at merge
     * time, when the credentials of the same level are known */

    if (ngx_http_loyalty_redis_check(cf, &value[1], 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    llcf->redis_conf.address = value[1];

    return NGX_CONF_OK;
}


char *
ngx_http_loyalty_redis_auth_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_loyalty_loc_conf_t *llcf = conf;

    ngx_str_t  *value;

    if (llcf->redis_conf.password.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 3) {
        llcf->redis_conf.user = value[1];
        llcf->redis_conf.password = value[2];

        if (value[1].len == 0) {
            return "has an empty user name";
        }

    } else {
        llcf->redis_conf.password = value[1];
    }

    if (llcf->redis_conf.password.len == 0) {
        return "has an empty password";
    }

    return NGX_CONF_OK;
}


/*
 * loyalty_redis_cluster address ...;  the seeds; the first also stands as
 * the level's address, so that a cluster is inherited like loyalty_redis
 */

char *
ngx_http_loyalty_redis_cluster_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_loyalty_loc_conf_t *llcf = conf;

    ngx_str_t   *value, *s;
    ngx_uint_t   i;

    if (llcf->redis_conf.cluster != NULL) {
        return "is duplicate";
    }

    if (llcf->redis_conf.address.data != NULL) {
        return "cannot be combined with \"loyalty_redis\" in the same "
               "context";
    }

    value = cf->args->elts;

    llcf->redis_conf.cluster = ngx_array_create(cf->pool, cf->args->nelts,
                                                sizeof(ngx_str_t));
    if (llcf->redis_conf.cluster == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_http_loyalty_redis_check(cf, &value[i], 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        if (value[i].len >= 5 && ngx_strncmp(value[i].data, "unix:", 5) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"loyalty_redis_cluster\" node \"%V\": a "
                               "cluster is reached over TCP, not a unix "
                               "socket", &value[i]);
            return NGX_CONF_ERROR;
        }

        s = ngx_array_push(llcf->redis_conf.cluster);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        *s = value[i];
    }

    llcf->redis_conf.address = value[1];

    return NGX_CONF_OK;
}


/* loyalty_redis_breaker failures=number cooldown=time | off; */

char *
ngx_http_loyalty_redis_breaker_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_loyalty_loc_conf_t *llcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value, s;
    ngx_uint_t   i;

    if (llcf->redis_conf.breaker_failures != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        llcf->redis_conf.breaker_failures = 0;
        llcf->redis_conf.breaker_cooldown = 2000;
        return NGX_CONF_OK;
    }

    llcf->redis_conf.breaker_failures = 5;
    llcf->redis_conf.breaker_cooldown = 2000;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "failures=", 9) == 0) {
            n = ngx_atoi(value[i].data + 9, value[i].len - 9);

            if (n == NGX_ERROR || n < 1 || n > 1000000) {
                goto invalid;
            }

            llcf->redis_conf.breaker_failures = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "cooldown=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            n = ngx_parse_time(&s, 0);

            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            llcf->redis_conf.breaker_cooldown = (ngx_msec_t) n;
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\": expected "
                       "failures=number (1 or more), cooldown=time (more "
                       "than 0), or off", &value[i]);

    return NGX_CONF_ERROR;
}


/*
 * A level without loyalty_redis or loyalty_redis_cluster inherits the
 * address with its cluster, one without loyalty_redis_auth the user with
 * the password: each pair is set together or not at all.
 */

char *
ngx_http_loyalty_redis_merge_conf(ngx_conf_t *cf,
    ngx_http_loyalty_redis_conf_t *prev, ngx_http_loyalty_redis_conf_t *conf)
{
    if (conf->address.data == NULL) {
        conf->address = prev->address;
        conf->cluster = prev->cluster;
    }

    ngx_conf_merge_value(conf->read_replicas, prev->read_replicas, 0);

    if (conf->password.data == NULL) {
        conf->user = prev->user;
        conf->password = prev->password;
    }

    ngx_conf_merge_value(conf->db, prev->db, 0);

    if (conf->cluster != NULL && conf->db > 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"loyalty_redis_db\" %i with "
                           "\"loyalty_redis_cluster\": a Redis Cluster "
                           "has only database 0", conf->db);
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_uint_value(conf->breaker_failures,
                              prev->breaker_failures, 0);
    ngx_conf_merge_msec_value(conf->breaker_cooldown,
                              prev->breaker_cooldown, 2000);

    return NGX_CONF_OK;
}
