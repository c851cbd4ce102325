
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * Rejections in Twilio's error shape, so that the helper libraries surface
 * code and message to their users.  The body is built from constant text
 * and numbers only: nothing the client sent is echoed.
 */


#include "ngx_http_studio_testusers_module.h"


#define NGX_HTTP_STU_ERROR_MAX  512


/* {"code", "message", "more_info", "status"}, from constant text only */

ngx_buf_t *
ngx_http_studio_testusers_error_body(ngx_http_request_t *r, ngx_uint_t status,
    ngx_uint_t code, const char *message, size_t position)
{
    u_char     *p, *mark;
    ngx_buf_t  *b;

    b = ngx_create_temp_buf(r->pool, NGX_HTTP_STU_ERROR_MAX);
    if (b == NULL) {
        return NULL;
    }

    p = ngx_sprintf(b->last, "{\"code\": %ui, \"message\": \"", code);

    mark = (u_char *) ngx_strstr(message, "%u");

    if (mark) {
        p = ngx_cpymem(p, message, mark - (u_char *) message);
        p = ngx_sprintf(p, "%uz%s", position, mark + 2);

    } else {
        p = ngx_sprintf(p, "%s", message);
    }

    b->last = ngx_sprintf(p, "\", \"more_info\": "
                          "\"https://www.twilio.com/docs/errors/%ui\", "
                          "\"status\": %ui}", code, status);

    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    return b;
}


ngx_int_t
ngx_http_studio_testusers_send_error(ngx_http_request_t *r,
    stu_reason_e reason, size_t position)
{
    ngx_int_t              rc;
    ngx_buf_t             *b;
    ngx_chain_t            out;
    ngx_table_elt_t       *h;
    const stu_reason_t    *sr;

    sr = &stu_reasons[reason];

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    b = ngx_http_studio_testusers_error_body(r, sr->status, sr->code,
                                            sr->message, position);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = sr->status;
    r->headers_out.content_length_n = b->last - b->pos;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (reason == STU_METHOD_NOT_ALLOWED) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        ngx_str_set(&h->value, "GET, POST");
        h->lowcase_key = (u_char *) "allow";
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
