
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * The glue: directives, the precontent phase handler that judges a Test
 * Users request, the content handler wrapper that lends the credential to
 * proxy_pass, and the variables.
 */


#include "ngx_http_studio_testusers_module.h"


enum {
    NGX_HTTP_STU_VAR_FLOW_SID = 0,
    NGX_HTTP_STU_VAR_IDENTITIES,
    NGX_HTTP_STU_VAR_RESULT,
    NGX_HTTP_STU_VAR_REASON,
    NGX_HTTP_STU_VAR_TEAM
};


static ngx_int_t ngx_http_studio_testusers_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_studio_testusers_recall_handler(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_studio_testusers_log_handler(ngx_http_request_t *r);
static void ngx_http_studio_testusers_body_handler(ngx_http_request_t *r);
static stu_reason_e ngx_http_studio_testusers_check(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, ngx_uint_t *need_body);
static ngx_int_t ngx_http_studio_testusers_accept(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
static ngx_int_t ngx_http_studio_testusers_reject(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, stu_reason_e reason,
    size_t position);
static ngx_int_t ngx_http_studio_testusers_content_handler(
    ngx_http_request_t *r);
static void ngx_http_studio_testusers_cleanup(void *data);

static ngx_int_t ngx_http_studio_testusers_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_studio_testusers_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_studio_testusers_init(ngx_conf_t *cf);
static void *ngx_http_studio_testusers_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_studio_testusers_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_studio_testusers_credentials(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_studio_testusers_audit_log_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_studio_testusers_enable(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void *ngx_http_studio_testusers_create_main_conf(ngx_conf_t *cf);


static ngx_conf_enum_t  ngx_http_studio_testusers_modes[] = {
    { ngx_string("enforce"), NGX_HTTP_STU_ENFORCE },
    { ngx_string("report"), NGX_HTTP_STU_REPORT },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_studio_testusers_commands[] = {

    { ngx_string("studio_testusers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_studio_testusers_enable,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_studio_testusers_loc_conf_t, enable),
      NULL },

    { ngx_string("studio_testusers_credentials"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_studio_testusers_credentials,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("studio_testusers_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_studio_testusers_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("studio_testusers_audit_log"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_studio_testusers_audit_log_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("studio_testusers_actor"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_studio_testusers_loc_conf_t, actor),
      NULL },

    { ngx_string("studio_testusers_audit_hmac_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_studio_testusers_hmac_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("studio_testusers_audit_raw_identities"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_studio_testusers_loc_conf_t, audit_raw),
      NULL },

    { ngx_string("studio_testusers_audit_required"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_studio_testusers_loc_conf_t, audit_required),
      NULL },

    { ngx_string("studio_testusers_flows"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_studio_testusers_rule,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("studio_testusers_methods"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_studio_testusers_rule,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("studio_testusers_identity_pattern"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_studio_testusers_rule,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("studio_testusers_max_identities"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_studio_testusers_rule,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("studio_testusers_duplicates"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_studio_testusers_rule,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("studio_testusers_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_studio_testusers_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("studio_testusers_pass_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_studio_testusers_pass_header,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("studio_testusers_policy"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_studio_testusers_policy_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("studio_testusers_team"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_studio_testusers_loc_conf_t, team),
      NULL },

    { ngx_string("studio_testusers_mode"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_studio_testusers_loc_conf_t, mode),
      &ngx_http_studio_testusers_modes },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_studio_testusers_module_ctx = {
    ngx_http_studio_testusers_add_variables, /* preconfiguration */
    ngx_http_studio_testusers_init,        /* postconfiguration */

    ngx_http_studio_testusers_create_main_conf, /* create main conf */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_studio_testusers_create_loc_conf, /* create location conf */
    ngx_http_studio_testusers_merge_loc_conf   /* merge location conf */
};


ngx_module_t  ngx_http_studio_testusers_module = {
    NGX_MODULE_V1,
    &ngx_http_studio_testusers_module_ctx, /* module context */
    ngx_http_studio_testusers_commands,    /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_studio_testusers_vars[] = {

    { ngx_string("studio_testusers_flow_sid"), NULL,
      ngx_http_studio_testusers_variable, NGX_HTTP_STU_VAR_FLOW_SID,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("studio_testusers_identities"), NULL,
      ngx_http_studio_testusers_variable, NGX_HTTP_STU_VAR_IDENTITIES,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("studio_testusers_result"), NULL,
      ngx_http_studio_testusers_variable, NGX_HTTP_STU_VAR_RESULT,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("studio_testusers_reason"), NULL,
      ngx_http_studio_testusers_variable, NGX_HTTP_STU_VAR_REASON,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("studio_testusers_team"), NULL,
      ngx_http_studio_testusers_variable, NGX_HTTP_STU_VAR_TEAM,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_studio_testusers_results[] = {
    ngx_null_string,
    ngx_string("forwarded"),
    ngx_string("rejected")
};


/*
 * Runs in the precontent phase: after allow/deny, auth_basic and
 * auth_request have judged the client's own request, before proxy_pass.
 * Success is NGX_DECLINED, so the other precontent handlers still run.
 */

static ngx_int_t
ngx_http_studio_testusers_handler(ngx_http_request_t *r)
{
    ngx_int_t                              rc;
    ngx_uint_t                             need_body;
    stu_reason_e                           reason;
    ngx_pool_cleanup_t                    *cln;
    ngx_http_studio_testusers_ctx_t       *ctx;
    ngx_http_studio_testusers_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_studio_testusers_module);

    if (!slcf->enable) {
        return NGX_DECLINED;
    }

    if (r != r->main) {
        /* a mirror or SSI subrequest would reach Twilio unjudged */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "studio_testusers: subrequest refused");
        return NGX_HTTP_FORBIDDEN;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_studio_testusers_module);

    if (ctx) {
        return ctx->phase_rc;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "studio_testusers handler");

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_studio_testusers_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the cleanup lets variables find ctx after an internal redirect */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_studio_testusers_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_studio_testusers_module);

    ctx->conf = slcf;
    ctx->pool = r->pool;

    stu_form_init(&ctx->form, ngx_http_studio_testusers_identity, r);

    /* first, so logs and the audit name the team of every request */

    ngx_http_studio_testusers_policy_team(r, ctx);

    reason = ngx_http_studio_testusers_check(r, ctx, &need_body);

    if (reason == STU_OK) {
        reason = ngx_http_studio_testusers_policy_request(r, ctx);
    }

    if (reason != STU_OK) {
        return ngx_http_studio_testusers_reject(r, ctx, reason, 0);
    }

    if (!need_body) {
        return ngx_http_studio_testusers_accept(r, ctx);
    }

    /* body-read ownership as in ngx_http_mirror_module */

    ctx->phase_rc = NGX_DONE;

    rc = ngx_http_studio_testusers_read_body(r, ctx,
                                      ngx_http_studio_testusers_body_handler);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    return NGX_DONE;
}


static void
ngx_http_studio_testusers_body_handler(ngx_http_request_t *r)
{
    stu_reason_e                      reason;
    ngx_http_studio_testusers_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_studio_testusers_module);

    reason = ngx_http_studio_testusers_body_done(r, ctx);

    if (reason != STU_OK) {
        (void) ngx_http_studio_testusers_reject(r, ctx, reason,
                                                ctx->form.position);
        return;
    }

    ctx->phase_rc = ngx_http_studio_testusers_accept(r, ctx);

    if (ctx->phase_rc == NGX_DONE) {
        /* refused at the last moment: the request is finalized */
        return;
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/* what can be judged before the body: path, method, Content-Type */

static stu_reason_e
ngx_http_studio_testusers_check(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, ngx_uint_t *need_body)
{
    ngx_str_t             *uri;
    ngx_uint_t             i, types;
    stu_reason_e           reason;
    ngx_list_part_t       *part;
    ngx_table_elt_t       *h, *type;
    const unsigned char   *sid;

    *need_body = 0;

    /*
     * proxy_pass without a URI part forwards the raw request target when
     * it is still valid, and the normalised r->uri after a rewrite
     */

    uri = r->valid_unparsed_uri ? &r->unparsed_uri : &r->uri;

    reason = stu_check_path(uri->data, uri->len, &sid);

    if (reason == STU_PATH_NOT_FOUND) {
        return reason;
    }

    /* a copy: variables are read after the header buffer may be reused */

    ctx->flow_sid.len = STU_FLOW_SID_LEN;
    ctx->flow_sid.data = ngx_cpymem(ctx->flow_sid_buf, sid, STU_FLOW_SID_LEN)
                         - STU_FLOW_SID_LEN;

    if (reason != STU_OK || (!r->valid_unparsed_uri && r->args.len)) {
        return STU_QUERY_STRING;
    }

    if (r->method == NGX_HTTP_GET) {

        if (r->headers_in.content_length_n > 0) {
            return STU_GET_WITH_BODY;
        }

        /* chunked or HTTP/2 without END_STREAM: read it, it must be empty */

        *need_body = r->headers_in.chunked;
        return STU_OK;
    }

    if (r->method != NGX_HTTP_POST) {
        return STU_METHOD_NOT_ALLOWED;
    }

    /* r->headers_in.content_type holds only the first one: count them all */

    types = 0;
    type = NULL;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Content-Type") - 1
            && ngx_strncmp(h[i].lowcase_key, "content-type",
                           sizeof("content-type") - 1) == 0)
        {
            types++;
            type = &h[i];
        }
    }

    if (types > 1) {
        return STU_CONTENT_TYPE_DUPLICATE;
    }

    if (type == NULL) {
        if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
            return STU_MISSING_IDENTITIES;
        }

        return STU_CONTENT_TYPE_UNSUPPORTED;
    }

    switch (stu_content_type_kind(type->value.data, type->value.len)) {

    case STU_BODY_FORM:
        break;

    case STU_BODY_JSON:
        ctx->json = 1;
        break;

    default:
        return STU_CONTENT_TYPE_UNSUPPORTED;
    }

    *need_body = 1;

    return STU_OK;
}


static ngx_int_t
ngx_http_studio_testusers_accept(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    ngx_int_t                               rc;
    ngx_http_studio_testusers_loc_conf_t   *slcf;
    ngx_http_studio_testusers_main_conf_t  *smcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_studio_testusers_module);
    smcf = ngx_http_get_module_main_conf(r, ngx_http_studio_testusers_module);

    /* a POST replaces the list: one at a time per flow, or updates get lost */

    if (r->method == NGX_HTTP_POST) {
        rc = ngx_http_studio_testusers_lock(smcf->zone, r, &ctx->flow_sid,
                                            &ctx->lock);

        if (rc == NGX_BUSY) {
            return ngx_http_studio_testusers_reject(r, ctx, STU_CONFLICT, 0);
        }

        if (rc == NGX_DECLINED) {
            return ngx_http_studio_testusers_reject(r, ctx, STU_ZONE_FULL, 0);
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_http_studio_testusers_audit_prepare(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (slcf->audit && slcf->audit_required && r->method == NGX_HTTP_POST
        && ngx_http_studio_testusers_audit_intent(r, ctx) != NGX_OK)
    {
        ctx->capture = 0;
        return ngx_http_studio_testusers_reject(r, ctx, STU_AUDIT_UNAVAILABLE,
                                                0);
    }

    ctx->result = NGX_HTTP_STU_FORWARDED;
    ctx->http_version = r->http_version;

    if (r->content_handler == NULL) {
        /* nothing will be forwarded, so no credential is lent either */
        return NGX_DECLINED;
    }

    if (ngx_http_studio_testusers_credentials_stage(r, ctx, slcf->credentials)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->content_handler = r->content_handler;
    r->content_handler = ngx_http_studio_testusers_content_handler;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "studio_testusers forward flow \"%V\", identities: %uz",
                   &ctx->flow_sid, ctx->form.identities);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_studio_testusers_reject(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, stu_reason_e reason,
    size_t position)
{
    ngx_int_t  rc;

    ctx->result = NGX_HTTP_STU_REJECTED;
    ctx->reason = reason;
    ctx->phase_rc = NGX_DONE;

    /* only our own constant strings: no client bytes reach the log */

    if (position) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "studio_testusers: rejected, %s (value %uz)",
                      stu_reasons[reason].name, position);

    } else {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "studio_testusers: rejected, %s",
                      stu_reasons[reason].name);
    }

    rc = ngx_http_studio_testusers_send_error(r, reason, position);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * The credential joins the request headers only while proxy_pass builds
 * its upstream request, which it does synchronously once the body has been
 * read: access checks, subrequests, filters and log variables never see it.
 */

static ngx_int_t
ngx_http_studio_testusers_content_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_studio_testusers_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_studio_testusers_module);

    if (ctx == NULL || ctx->content_handler == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "studio_testusers: content handler without context");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_studio_testusers_credentials_inject(r, ctx);

    rc = ctx->content_handler(r);

    ngx_http_studio_testusers_credentials_withdraw(r, ctx);

    return rc;
}


/*
 * First in the rewrite phases: a request that an error page redirected
 * while proxy_pass held the credential gets it taken back before anything
 * in its new location (auth_request, mirror, return) can see it.
 */

static ngx_int_t
ngx_http_studio_testusers_recall_handler(ngx_http_request_t *r)
{
    ngx_http_studio_testusers_credentials_recall(r);

    return NGX_DECLINED;
}


/* the log phase: counters and the audit record of a judged request */

static ngx_int_t
ngx_http_studio_testusers_log_handler(ngx_http_request_t *r)
{
    ngx_http_studio_testusers_ctx_t  *ctx;

    ngx_http_studio_testusers_credentials_recall(r);

    /*
     * With log_subrequest on, a subrequest (a mirror) is logged too, and
     * maybe before the main request ends: the record is the main's alone.
     */

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_http_studio_testusers_get_ctx(r);

    if (ctx == NULL || ctx->logged) {
        return NGX_OK;
    }

    ctx->logged = 1;

    ngx_http_studio_testusers_metrics_count(r, ctx);
    ngx_http_studio_testusers_audit_request(r, ctx);

    return NGX_OK;
}


static void
ngx_http_studio_testusers_cleanup(void *data)
{
    /* a marker only: see ngx_http_studio_testusers_get_ctx() */
}


ngx_http_studio_testusers_ctx_t *
ngx_http_studio_testusers_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t               *cln;
    ngx_http_studio_testusers_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_studio_testusers_module);

    if (ctx || !r->main->internal) {
        return ctx;
    }

    /* an internal redirect zeroed r->ctx; the newest cleanup is first */

    for (cln = r->main->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_studio_testusers_cleanup) {
            return cln->data;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_studio_testusers_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                           *p;
    ngx_str_t                         s;
    ngx_http_studio_testusers_ctx_t  *ctx;

    ctx = ngx_http_studio_testusers_get_ctx(r);

    if (ctx == NULL || ctx->result == NGX_HTTP_STU_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_HTTP_STU_VAR_FLOW_SID:
        s = ctx->flow_sid;
        break;

    case NGX_HTTP_STU_VAR_IDENTITIES:
        p = ngx_pnalloc(r->pool, NGX_SIZE_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        s.data = p;
        s.len = ngx_sprintf(p, "%uz", ctx->form.identities) - p;
        break;

    case NGX_HTTP_STU_VAR_RESULT:
        s = ngx_http_studio_testusers_results[ctx->result];
        break;

    case NGX_HTTP_STU_VAR_TEAM:
        s = ctx->team;
        break;

    default: /* NGX_HTTP_STU_VAR_REASON */
        s.data = (u_char *) stu_reasons[ctx->reason].name;
        s.len = ngx_strlen(s.data);
        break;
    }

    if (s.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s.data;

    return NGX_OK;
}


/* preconfiguration: variables, and watching directives for the lint */

static ngx_int_t
ngx_http_studio_testusers_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    if (ngx_http_studio_testusers_lint_wrap(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    for (v = ngx_http_studio_testusers_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_studio_testusers_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_studio_testusers_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_studio_testusers_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->enable = NGX_CONF_UNSET;
    conf->credentials = NGX_CONF_UNSET_PTR;
    conf->audit = NGX_CONF_UNSET_PTR;
    conf->actor = NGX_CONF_UNSET_PTR;
    conf->hmac_key = NGX_CONF_UNSET_PTR;
    conf->audit_raw = NGX_CONF_UNSET;
    conf->audit_required = NGX_CONF_UNSET;
    conf->team = NGX_CONF_UNSET_PTR;
    conf->mode = NGX_CONF_UNSET_UINT;
    conf->pass_headers = NGX_CONF_UNSET_PTR;

    ngx_http_studio_testusers_rules_init(&conf->rules);
    ngx_http_studio_testusers_lint_init(&conf->lint);

    return conf;
}


static char *
ngx_http_studio_testusers_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_studio_testusers_loc_conf_t *prev = parent;
    ngx_http_studio_testusers_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_ptr_value(conf->credentials, prev->credentials, NULL);
    ngx_conf_merge_ptr_value(conf->audit, prev->audit, NULL);
    ngx_conf_merge_ptr_value(conf->actor, prev->actor, NULL);
    ngx_conf_merge_ptr_value(conf->hmac_key, prev->hmac_key, NULL);
    ngx_conf_merge_value(conf->audit_raw, prev->audit_raw, 0);
    ngx_conf_merge_value(conf->audit_required, prev->audit_required, 0);
    ngx_conf_merge_ptr_value(conf->team, prev->team, NULL);
    ngx_conf_merge_uint_value(conf->mode, prev->mode, NGX_HTTP_STU_ENFORCE);
    ngx_conf_merge_ptr_value(conf->pass_headers, prev->pass_headers, NULL);

    ngx_http_studio_testusers_rules_merge(&conf->rules, &prev->rules);

    if (conf->enable && conf->credentials == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"studio_testusers on\" needs "
                           "\"studio_testusers_credentials\" at the same "
                           "or an enclosing level");
        return NGX_CONF_ERROR;
    }

    if (conf->enable && conf->audit_required
        && (conf->audit == NULL || conf->audit->syslog))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"studio_testusers_audit_required on\" needs "
                           "\"studio_testusers_audit_log\" to a file: "
                           "syslog over UDP cannot tell a lost record");
        return NGX_CONF_ERROR;
    }

    return ngx_http_studio_testusers_lint(cf, conf, prev);
}


static void *
ngx_http_studio_testusers_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_studio_testusers_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_studio_testusers_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->zone = NULL;
     *     smcf->used = 0;
     */

    smcf->request_id_index = NGX_CONF_UNSET;

    if (ngx_array_init(&smcf->policies, cf->pool, 4,
                       sizeof(ngx_http_studio_testusers_policy_t))
        != NGX_OK
        || ngx_array_init(&smcf->credentials, cf->pool, 2,
                          sizeof(ngx_http_studio_testusers_credentials_t *))
           != NGX_OK)
    {
        return NULL;
    }

    return smcf;
}


static char *
ngx_http_studio_testusers_audit_log_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf)
{
    ngx_http_studio_testusers_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_studio_testusers_module);
    smcf->used = 1;

    return ngx_http_studio_testusers_audit_log(cf, cmd, conf);
}


/* "on" anywhere means the shared zone is needed (update locks) */

static char *
ngx_http_studio_testusers_enable(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char                                   *rv;
    ngx_http_studio_testusers_main_conf_t  *smcf;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);

    if (rv == NGX_CONF_OK) {
        smcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_studio_testusers_module);
        smcf->used = 1;
    }

    return rv;
}


static char *
ngx_http_studio_testusers_credentials(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_studio_testusers_loc_conf_t *slcf = conf;

    ngx_str_t                                *value;
    ngx_http_studio_testusers_credentials_t  *cred, **credp;
    ngx_http_studio_testusers_main_conf_t    *smcf;

    if (slcf->credentials != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    cred = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_studio_testusers_credentials_t));
    if (cred == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_studio_testusers_credentials_load(cf, &value[1], cred)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_studio_testusers_module);

    credp = ngx_array_push(&smcf->credentials);
    if (credp == NULL
        || ngx_http_studio_testusers_fingerprint(cf->pool, &cred->sid,
                                                 &cred->fingerprint)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    *credp = cred;
    cred->loaded = ngx_time();

    slcf->credentials = cred;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_studio_testusers_init(ngx_conf_t *cf)
{
    ngx_str_t                               name;
    ngx_http_handler_pt                    *h;
    ngx_http_core_main_conf_t              *cmcf;
    ngx_http_studio_testusers_main_conf_t  *smcf;

    ngx_http_studio_testusers_lint_unwrap_all();

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    smcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_studio_testusers_module);

    if (smcf->used
        && ngx_http_studio_testusers_zone_default(cf, smcf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&name, "request_id");

    smcf->request_id_index = ngx_http_get_variable_index(cf, &name);
    if (smcf->request_id_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ngx_http_studio_testusers_audit_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_studio_testusers_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_SERVER_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_studio_testusers_recall_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_studio_testusers_recall_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_studio_testusers_log_handler;

    ngx_str_set(&name, "http_authorization");

    ngx_http_studio_testusers_authorization_var =
                                        ngx_http_get_variable_index(cf, &name);
    if (ngx_http_studio_testusers_authorization_var == NGX_ERROR) {
        return NGX_ERROR;
    }

    return ngx_http_studio_testusers_body_init(cf);
}
