
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * Team policies: which flows and methods a team may use and which
 * identities it may set.  A location's own rules and the named policy its
 * team selects must both allow a request.  In report mode a violation is
 * logged, counted and recorded, and the request goes on; the syntax rules
 * of the core are never relaxed.
 */


#include <openssl/rand.h>

#include "ngx_http_studio_testusers_module.h"
#include "ngx_http_studio_testusers_hash.h"


static char *ngx_http_studio_testusers_policy_directive(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf);
static char *ngx_http_studio_testusers_rule_set(ngx_conf_t *cf,
    ngx_http_studio_testusers_policy_t *p);
static stu_reason_e ngx_http_studio_testusers_rules_check(
    ngx_http_request_t *r, ngx_http_studio_testusers_ctx_t *ctx,
    ngx_http_studio_testusers_policy_t *p, ngx_str_t *id);
static ngx_int_t ngx_http_studio_testusers_seen_before(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, ngx_str_t *id);


void
ngx_http_studio_testusers_rules_init(ngx_http_studio_testusers_policy_t *p)
{
    p->flows = NGX_CONF_UNSET_PTR;
    p->methods = NGX_CONF_UNSET_UINT;
    p->patterns = NGX_CONF_UNSET_PTR;
    p->max_identities = NGX_CONF_UNSET_UINT;
    p->duplicates = NGX_CONF_UNSET;
}


void
ngx_http_studio_testusers_rules_merge(ngx_http_studio_testusers_policy_t *conf,
    ngx_http_studio_testusers_policy_t *prev)
{
    ngx_conf_merge_ptr_value(conf->flows, prev->flows, NULL);
    ngx_conf_merge_uint_value(conf->methods, prev->methods, 0);
    ngx_conf_merge_ptr_value(conf->patterns, prev->patterns, NULL);
    ngx_conf_merge_uint_value(conf->max_identities, prev->max_identities, 0);
    ngx_conf_merge_value(conf->duplicates, prev->duplicates, 0);
}


/* studio_testusers_flows, _methods, _identity_pattern, ... in a location */

char *
ngx_http_studio_testusers_rule(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_studio_testusers_loc_conf_t *slcf = conf;

    return ngx_http_studio_testusers_rule_set(cf, &slcf->rules);
}


/* studio_testusers_policy NAME { flows ...; methods ...; ... } */

char *
ngx_http_studio_testusers_policy_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_studio_testusers_main_conf_t *smcf = conf;

    char                                *rv;
    ngx_str_t                           *value;
    ngx_uint_t                           i;
    ngx_conf_t                           save;
    ngx_http_studio_testusers_policy_t  *p;

    value = cf->args->elts;

    p = smcf->policies.elts;
    for (i = 0; i < smcf->policies.nelts; i++) {
        if (p[i].name.len == value[1].len
            && ngx_strncmp(p[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate studio_testusers_policy \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    p = ngx_array_push(&smcf->policies);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_http_studio_testusers_rules_init(p);
    p->name = value[1];

    save = *cf;
    cf->handler = ngx_http_studio_testusers_policy_directive;
    cf->handler_conf = (char *) p;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    /* duplicates stays unset unless said: then the location's applies */

    if (p->methods == NGX_CONF_UNSET_UINT) {
        p->methods = 0;
    }

    if (p->max_identities == NGX_CONF_UNSET_UINT) {
        p->max_identities = 0;
    }

    if (p->flows == NGX_CONF_UNSET_PTR) {
        p->flows = NULL;
    }

    if (p->patterns == NGX_CONF_UNSET_PTR) {
        p->patterns = NULL;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_studio_testusers_policy_directive(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf)
{
    return ngx_http_studio_testusers_rule_set(cf,
                                   (ngx_http_studio_testusers_policy_t *) conf);
}


/*
 * One rule, from a location ("studio_testusers_flows ...") or from inside
 * a policy block ("flows ...").
 */

static char *
ngx_http_studio_testusers_rule_set(ngx_conf_t *cf,
    ngx_http_studio_testusers_policy_t *p)
{
    u_char               errstr[NGX_MAX_CONF_ERRSTR];
    ngx_str_t           *value, name, *sid;
    ngx_int_t            n;
    ngx_uint_t           i;
    ngx_regex_t        **re;
    ngx_regex_compile_t  rc;

    value = cf->args->elts;
    name = value[0];

    if (ngx_strncmp(name.data, "studio_testusers_", 17) == 0) {
        name.data += 17;
        name.len -= 17;
    }

    if (cf->args->nelts < 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of arguments in \"%V\"", &value[0]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 5 && ngx_strncmp(name.data, "flows", 5) == 0) {

        if (p->flows == NGX_CONF_UNSET_PTR || p->flows == NULL) {
            p->flows = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
            if (p->flows == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        for (i = 1; i < cf->args->nelts; i++) {
            if (!stu_flow_sid_valid(value[i].data, value[i].len)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid flow sid \"%V\" in \"%V\": "
                                   "expected FW and 32 hex digits",
                                   &value[i], &value[0]);
                return NGX_CONF_ERROR;
            }

            sid = ngx_array_push(p->flows);
            if (sid == NULL) {
                return NGX_CONF_ERROR;
            }

            *sid = value[i];
        }

        return NGX_CONF_OK;
    }

    if (name.len == 7 && ngx_strncmp(name.data, "methods", 7) == 0) {

        if (p->methods == NGX_CONF_UNSET_UINT) {
            p->methods = 0;
        }

        for (i = 1; i < cf->args->nelts; i++) {
            if (ngx_strcmp(value[i].data, "GET") == 0) {
                p->methods |= NGX_HTTP_GET;

            } else if (ngx_strcmp(value[i].data, "POST") == 0) {
                p->methods |= NGX_HTTP_POST;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid method \"%V\" in \"%V\": "
                                   "GET or POST", &value[i], &value[0]);
                return NGX_CONF_ERROR;
            }
        }

        return NGX_CONF_OK;
    }

    if (name.len == 16 && ngx_strncmp(name.data, "identity_pattern", 16) == 0)
    {
        if (cf->args->nelts != 2) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" takes one regex", &value[0]);
            return NGX_CONF_ERROR;
        }

        if (p->patterns == NGX_CONF_UNSET_PTR || p->patterns == NULL) {
            p->patterns = ngx_array_create(cf->pool, 2, sizeof(ngx_regex_t *));
            if (p->patterns == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

        rc.pattern = value[1];
        rc.pool = cf->pool;
        rc.err.len = NGX_MAX_CONF_ERRSTR;
        rc.err.data = errstr;

        if (ngx_regex_compile(&rc) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\": %V",
                               &value[0], &rc.err);
            return NGX_CONF_ERROR;
        }

        re = ngx_array_push(p->patterns);
        if (re == NULL) {
            return NGX_CONF_ERROR;
        }

        *re = rc.regex;

        return NGX_CONF_OK;
    }

    if (name.len == 14 && ngx_strncmp(name.data, "max_identities", 14) == 0) {

        n = (cf->args->nelts == 2) ? ngx_atoi(value[1].data, value[1].len)
                                   : NGX_ERROR;

        if (n == NGX_ERROR || n == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" must be a positive number",
                               &value[0]);
            return NGX_CONF_ERROR;
        }

        if (p->max_identities != NGX_CONF_UNSET_UINT) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" is duplicate", &value[0]);
            return NGX_CONF_ERROR;
        }

        p->max_identities = n;

        return NGX_CONF_OK;
    }

    if (name.len == 10 && ngx_strncmp(name.data, "duplicates", 10) == 0) {

        if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "allow") == 0) {
            p->duplicates = 1;

        } else if (cf->args->nelts == 2
                   && ngx_strcmp(value[1].data, "reject") == 0)
        {
            p->duplicates = 0;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" takes \"reject\" or \"allow\"",
                               &value[0]);
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive \"%V\" in studio_testusers_policy: "
                       "flows, methods, identity_pattern, max_identities "
                       "or duplicates", &value[0]);

    return NGX_CONF_ERROR;
}


/*
 * Before the body: the team's policy, the flow and the method.  Returns
 * the violation to refuse the request with, or STU_OK.
 */

void
ngx_http_studio_testusers_policy_team(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    ngx_uint_t                               i;
    ngx_http_studio_testusers_policy_t      *p;
    ngx_http_studio_testusers_main_conf_t   *smcf;

    if (ctx->conf->team == NULL
        || ngx_http_complex_value(r, ctx->conf->team, &ctx->team) != NGX_OK)
    {
        return;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_studio_testusers_module);

    p = smcf->policies.elts;

    for (i = 0; i < smcf->policies.nelts; i++) {
        if (ctx->team.len && p[i].name.len == ctx->team.len
            && ngx_strncmp(p[i].name.data, ctx->team.data, ctx->team.len) == 0)
        {
            ctx->policy = &p[i];
            break;
        }

        if (p[i].name.len == 7
            && ngx_strncmp(p[i].name.data, "default", 7) == 0)
        {
            ctx->policy = &p[i];
        }
    }
}


stu_reason_e
ngx_http_studio_testusers_policy_request(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    ngx_str_t                               *sid;
    ngx_uint_t                               j, k;
    stu_reason_e                             reason;
    ngx_http_studio_testusers_policy_t      *p, *sets[2];

    if (ctx->conf->team && ctx->policy == NULL) {
        reason = ngx_http_studio_testusers_violation(r, ctx,
                                                     STU_TEAM_UNKNOWN, 0);
        if (reason != STU_OK) {
            return reason;
        }
    }

    sets[0] = &ctx->conf->rules;
    sets[1] = ctx->policy;

    for (k = 0; k < 2; k++) {
        p = sets[k];

        if (p == NULL) {
            continue;
        }

        if (p->methods && !(p->methods & r->method)) {
            reason = ngx_http_studio_testusers_violation(r, ctx,
                                                  STU_METHOD_NOT_PERMITTED, 0);
            if (reason != STU_OK) {
                return reason;
            }
        }

        if (p->flows) {
            sid = p->flows->elts;

            for (j = 0; j < p->flows->nelts; j++) {
                if (ngx_strncmp(sid[j].data, ctx->flow_sid.data,
                                STU_FLOW_SID_LEN) == 0)
                {
                    break;
                }
            }

            if (j == p->flows->nelts) {
                reason = ngx_http_studio_testusers_violation(r, ctx,
                                                      STU_FLOW_NOT_ALLOWED, 0);
                if (reason != STU_OK) {
                    return reason;
                }
            }
        }
    }

    return STU_OK;
}


/* the decoders' identity handler, form and JSON alike */

stu_reason_e
ngx_http_studio_testusers_identity(void *data, const unsigned char *p,
    size_t len)
{
    ngx_http_request_t *r = data;

    ngx_int_t                         rc, duplicates;
    ngx_str_t                         id;
    ngx_uint_t                        kept;
    stu_reason_e                      reason;
    ngx_http_studio_testusers_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_studio_testusers_module);
    kept = 0;

    ctx->seen++;

    id.data = (u_char *) p;
    id.len = len;

    /* a team policy that says so overrides the location's duplicates */

    duplicates = (ctx->policy && ctx->policy->duplicates != NGX_CONF_UNSET)
                 ? ctx->policy->duplicates : ctx->conf->rules.duplicates;

    /* a copy is kept for the audit record and the duplicates check */

    if (ctx->conf->audit || !duplicates || ctx->json) {
        if (ngx_http_studio_testusers_audit_identity(r, ctx, p, len)
            != NGX_OK)
        {
            return STU_INTERNAL_ERROR;
        }

        id = ((ngx_str_t *) ctx->identities->elts)[ctx->identities->nelts - 1];
        kept = 1;
    }

    reason = ngx_http_studio_testusers_rules_check(r, ctx, &ctx->conf->rules,
                                                   &id);

    if (reason == STU_OK && ctx->policy) {
        reason = ngx_http_studio_testusers_rules_check(r, ctx, ctx->policy,
                                                       &id);
    }

    if (reason == STU_OK && !duplicates) {
        rc = ngx_http_studio_testusers_seen_before(r, ctx, &id);

        if (rc == NGX_ERROR) {
            reason = STU_INTERNAL_ERROR;

        } else if (rc == NGX_OK) {
            reason = ngx_http_studio_testusers_violation(r, ctx,
                                                    STU_DUPLICATE_IDENTITY,
                                                    ctx->seen);
        }
    }

    if (reason != STU_OK && kept) {
        /* the record counts and lists accepted values only */
        ctx->identities->nelts--;
    }

    return reason;
}


static stu_reason_e
ngx_http_studio_testusers_rules_check(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx,
    ngx_http_studio_testusers_policy_t *p, ngx_str_t *id)
{
    ngx_int_t      rc;
    ngx_uint_t     i;
    ngx_regex_t  **re;
    stu_reason_e   reason;

    if (p->max_identities == 0 && p->patterns == NULL) {
        return STU_OK;
    }

    if (p->max_identities && ctx->seen > p->max_identities) {
        reason = ngx_http_studio_testusers_violation(r, ctx,
                                                     STU_TOO_MANY_IDENTITIES,
                                                     ctx->seen);
        if (reason != STU_OK) {
            return reason;
        }
    }

    if (p->patterns) {
        re = p->patterns->elts;

        for (i = 0; i < p->patterns->nelts; i++) {
            rc = ngx_regex_exec(re[i], id, NULL, 0);

            if (rc >= 0) {
                break;
            }

            if (rc != NGX_REGEX_NO_MATCHED) {
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              ngx_regex_exec_n " failed: %i", rc);
                return STU_INTERNAL_ERROR;
            }
        }

        if (i == p->patterns->nelts) {
            reason = ngx_http_studio_testusers_violation(r, ctx,
                                                         STU_IDENTITY_PATTERN,
                                                         ctx->seen);
            if (reason != STU_OK) {
                return reason;
            }
        }
    }

    return STU_OK;
}


/*
 * In enforce mode a violation is the answer; in report mode it is noted
 * (the first one for the record, every one in the log) and let through.
 */

stu_reason_e
ngx_http_studio_testusers_violation(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, stu_reason_e reason,
    size_t position)
{
    ngx_http_studio_testusers_main_conf_t  *smcf;

    if (ctx->conf->mode == NGX_HTTP_STU_ENFORCE) {
        return reason;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_studio_testusers_module);

    if (position) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "studio_testusers: report mode, would reject: %s "
                      "(value %uz)", stu_reasons[reason].name, position);

    } else {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "studio_testusers: report mode, would reject: %s",
                      stu_reasons[reason].name);
    }

    if (ctx->would_reject == STU_OK) {
        ctx->would_reject = reason;
        ctx->would_position = position;

        if (smcf->zone) {
            ngx_http_studio_testusers_count_policy(smcf->zone, 0);
        }
    }

    return STU_OK;
}


/*
 * The duplicates set's key, per worker: chosen collisions would make the
 * set quadratic (see ngx_http_studio_testusers_hash.h).  random() is
 * seeded from the pid and the time, so it is only the last resort.
 */

static stu_hash_key_t  ngx_http_studio_testusers_hash_key;
static ngx_uint_t      ngx_http_studio_testusers_hash_keyed;


static uint32_t
ngx_http_studio_testusers_hash(u_char *p, size_t len)
{
    u_char      *k;
    ngx_uint_t   i;

    if (!ngx_http_studio_testusers_hash_keyed) {
        k = (u_char *) &ngx_http_studio_testusers_hash_key;

        if (RAND_bytes(k, sizeof(stu_hash_key_t)) != 1) {
            for (i = 0; i < sizeof(stu_hash_key_t); i++) {
                k[i] = (u_char) (ngx_random() >> 7);
            }
        }

        ngx_http_studio_testusers_hash_keyed = 1;
    }

    return stu_hash(&ngx_http_studio_testusers_hash_key, p, len);
}


/*
 * An open-addressing set of the identities seen so far, in the request
 * pool; id is the last of ctx->identities.  Returns NGX_OK if it was seen
 * before (and remembers it if not).
 */

static ngx_int_t
ngx_http_studio_testusers_seen_before(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, ngx_str_t *id)
{
    uint32_t                           hash;
    ngx_str_t                         *ids;
    ngx_uint_t                         i, n, size, mask;
    ngx_http_studio_testusers_seen_t  *t, *nt;

    if (ctx->seen_table == NULL || ctx->seen * 2 > ctx->seen_size) {

        size = ctx->seen_size ? ctx->seen_size * 4 : 64;
        mask = size - 1;

        nt = ngx_pcalloc(r->pool,
                         size * sizeof(ngx_http_studio_testusers_seen_t));
        if (nt == NULL) {
            return NGX_ERROR;
        }

        for (n = 0; n < ctx->seen_size; n++) {
            t = &ctx->seen_table[n];

            if (t->index == 0) {
                continue;
            }

            for (i = t->hash & mask; nt[i].index; i = (i + 1) & mask) {
                /* void */
            }

            nt[i] = *t;
        }

        ctx->seen_table = nt;
        ctx->seen_size = size;
    }

    hash = ngx_http_studio_testusers_hash(id->data, id->len);
    mask = ctx->seen_size - 1;
    t = ctx->seen_table;
    ids = ctx->identities->elts;

    for (i = hash & mask; t[i].index; i = (i + 1) & mask) {
        if (t[i].hash == hash
            && ids[t[i].index - 1].len == id->len
            && ngx_memcmp(ids[t[i].index - 1].data, id->data, id->len) == 0)
        {
            return NGX_OK;
        }
    }

    t[i].hash = hash;
    t[i].index = (uint32_t) ctx->identities->nelts;

    return NGX_DECLINED;
}
