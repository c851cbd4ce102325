
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * Prometheus metrics: counters in the shared zone, so every worker adds
 * to the same numbers and a reload keeps them.  Labels are bounded: the
 * method, the result and the reason code, the upstream status class; no
 * per-flow or per-identity labels.
 */


#include <openssl/evp.h>

#include "ngx_http_studio_testusers_module.h"


static ngx_uint_t  ngx_http_studio_testusers_buckets[] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};


static ngx_int_t ngx_http_studio_testusers_metrics_handler(
    ngx_http_request_t *r);


/* the log phase: one request judged by the gateway */

void
ngx_http_studio_testusers_metrics_count(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    ngx_uint_t                              method, reason, i;
    ngx_msec_t                              ms;
    ngx_http_upstream_state_t              *state;
    ngx_http_studio_testusers_metrics_t    *m;
    ngx_http_studio_testusers_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_studio_testusers_module);

    if (smcf->zone == NULL) {
        return;
    }

    m = ngx_http_studio_testusers_zone_metrics(smcf->zone);

    method = r->method == NGX_HTTP_GET ? 0 : r->method == NGX_HTTP_POST ? 1 : 2;

    switch (ctx->result) {
    case NGX_HTTP_STU_FORWARDED:
        reason = 0;
        break;
    case NGX_HTTP_STU_REJECTED:
        reason = ctx->reason;
        break;
    default:
        reason = STU_REASON_LAST;    /* nginx ended it reading the body */
    }

    (void) ngx_atomic_fetch_add(&m->requests[method][reason], 1);

    if (ctx->result != NGX_HTTP_STU_FORWARDED) {
        return;
    }

    state = NULL;

    if (r->upstream_states && r->upstream_states->nelts) {
        state = r->upstream_states->elts;
        state += r->upstream_states->nelts - 1;
    }

    if (state == NULL || state->status < 100 || state->status > 599) {
        (void) ngx_atomic_fetch_add(&m->upstream[0], 1);
        return;
    }

    (void) ngx_atomic_fetch_add(&m->upstream[state->status / 100], 1);

    ms = state->response_time;

    for (i = 0; i < NGX_HTTP_STU_BUCKETS; i++) {
        if (ms <= ngx_http_studio_testusers_buckets[i]) {
            (void) ngx_atomic_fetch_add(&m->latency[i], 1);
        }
    }

    (void) ngx_atomic_fetch_add(&m->latency_count, 1);
    (void) ngx_atomic_fetch_add(&m->latency_sum_ms, ms);
}


static u_char *
ngx_http_studio_testusers_help(u_char *p, const char *name, const char *type,
    const char *help)
{
    return ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n",
                       name, help, name, type);
}


static ngx_int_t
ngx_http_studio_testusers_metrics_handler(ngx_http_request_t *r)
{
    u_char                                 *p;
    size_t                                  size;
    ngx_int_t                               rc;
    ngx_buf_t                              *b;
    ngx_uint_t                              i, j;
    ngx_chain_t                             out;
    ngx_atomic_uint_t                       v;
    ngx_http_studio_testusers_metrics_t    *m;
    ngx_http_studio_testusers_credentials_t **cred;
    ngx_http_studio_testusers_main_conf_t  *smcf;
    static const char                      *methods[] = { "GET", "POST",
                                                          "other" };

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_studio_testusers_module);

    if (smcf->zone == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    m = ngx_http_studio_testusers_zone_metrics(smcf->zone);

    size = 4096 + 3 * (STU_REASON_LAST + 1) * 160
           + smcf->credentials.nelts * 200;

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;

    p = ngx_http_studio_testusers_help(p, "studio_testusers_requests_total",
            "counter", "Requests judged by the gateway, by method, result "
            "and reason.");

    for (i = 0; i < 3; i++) {
        for (j = 0; j <= STU_REASON_LAST; j++) {
            v = m->requests[i][j];

            if (v == 0 && !(j == 0 && i < 2)) {
                continue;
            }

            p = ngx_sprintf(p, "studio_testusers_requests_total{method=\"%s\","
                            "result=\"%s\",reason=\"%s\"} %uA\n",
                            methods[i], j == 0 ? "forwarded" : "rejected",
                            j == STU_REASON_LAST ? "request_body_error"
                                                 : stu_reasons[j].name, v);
        }
    }

    p = ngx_http_studio_testusers_help(p,
            "studio_testusers_upstream_responses_total", "counter",
            "Answers to forwarded requests by status class; none: no answer.");

    for (i = 0; i < 6; i++) {
        if (i == 0) {
            p = ngx_sprintf(p, "studio_testusers_upstream_responses_total"
                            "{class=\"none\"} %uA\n", m->upstream[0]);
        } else {
            p = ngx_sprintf(p, "studio_testusers_upstream_responses_total"
                            "{class=\"%uixx\"} %uA\n", i, m->upstream[i]);
        }
    }

    p = ngx_http_studio_testusers_help(p,
            "studio_testusers_upstream_response_seconds", "histogram",
            "Time to Twilio's whole answer.");

    for (i = 0; i < NGX_HTTP_STU_BUCKETS; i++) {
        p = ngx_sprintf(p, "studio_testusers_upstream_response_seconds_bucket"
                        "{le=\"%ui.%03ui\"} %uA\n",
                        ngx_http_studio_testusers_buckets[i] / 1000,
                        ngx_http_studio_testusers_buckets[i] % 1000,
                        m->latency[i]);
    }

    p = ngx_sprintf(p, "studio_testusers_upstream_response_seconds_bucket"
                    "{le=\"+Inf\"} %uA\n"
                    "studio_testusers_upstream_response_seconds_sum "
                    "%uA.%03uA\n"
                    "studio_testusers_upstream_response_seconds_count %uA\n",
                    m->latency_count, m->latency_sum_ms / 1000,
                    m->latency_sum_ms % 1000, m->latency_count);

    p = ngx_http_studio_testusers_help(p,
            "studio_testusers_audit_records_total", "counter",
            "Audit records written and failed.");
    p = ngx_sprintf(p, "studio_testusers_audit_records_total"
                    "{outcome=\"written\"} %uA\n"
                    "studio_testusers_audit_records_total"
                    "{outcome=\"failed\"} %uA\n",
                    m->audit_written, m->audit_failed);

    p = ngx_http_studio_testusers_help(p,
            "studio_testusers_update_conflicts_total", "counter",
            "POSTs refused with 409 while another update of the flow was "
            "in flight.");
    p = ngx_sprintf(p, "studio_testusers_update_conflicts_total %uA\n",
                    m->conflicts);

    p = ngx_http_studio_testusers_help(p,
            "studio_testusers_report_would_reject_total", "counter",
            "Requests report mode forwarded that enforce mode would refuse.");
    p = ngx_sprintf(p, "studio_testusers_report_would_reject_total %uA\n",
                    m->would_reject);

    p = ngx_http_studio_testusers_help(p, "studio_testusers_credential_info",
            "gauge", "The credentials in use: a fingerprint of the SID (never "
            "the SID or secret), its kind, and when it was loaded.");

    cred = smcf->credentials.elts;

    for (i = 0; i < smcf->credentials.nelts; i++) {
        p = ngx_sprintf(p, "studio_testusers_credential_info"
                        "{fingerprint=\"%V\",kind=\"%s\",loaded=\"%T\"} 1\n",
                        &cred[i]->fingerprint,
                        cred[i]->sid.data[0] == 'S' ? "api_key" : "account",
                        cred[i]->loaded);
    }

    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "text/plain; version=0.0.4");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


char *
ngx_http_studio_testusers_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_core_loc_conf_t               *clcf;
    ngx_http_studio_testusers_main_conf_t  *smcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_studio_testusers_metrics_handler;

    smcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_studio_testusers_module);
    smcf->used = 1;

    return NGX_CONF_OK;
}


/* a short, non-reversible name for a SID, for dashboards */

ngx_int_t
ngx_http_studio_testusers_fingerprint(ngx_pool_t *pool, ngx_str_t *sid,
    ngx_str_t *out)
{
    u_char        md[EVP_MAX_MD_SIZE];
    unsigned int  len;

    if (EVP_Digest(sid->data, sid->len, md, &len, EVP_sha256(), NULL) != 1) {
        return NGX_ERROR;
    }

    out->len = 12;
    out->data = ngx_pnalloc(pool, out->len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_hex_dump(out->data, md, out->len / 2);

    return NGX_OK;
}
