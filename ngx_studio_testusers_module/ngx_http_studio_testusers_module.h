
/*
 * Copyright (C) ngx_studio_testusers_module authors
 */


#ifndef _NGX_HTTP_STUDIO_TESTUSERS_MODULE_H_INCLUDED_
#define _NGX_HTTP_STUDIO_TESTUSERS_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_studio_testusers_validate.h"
#include "ngx_http_studio_testusers_form.h"


#define NGX_HTTP_STU_NONE        0
#define NGX_HTTP_STU_FORWARDED   1
#define NGX_HTTP_STU_REJECTED    2


typedef struct {
    ngx_str_t                          file;
    ngx_str_t                          sid;
    ngx_table_elt_t                    header;  /* Authorization: Basic ... */
} ngx_http_studio_testusers_credentials_t;


typedef struct {
    ngx_flag_t                         enable;
    ngx_http_studio_testusers_credentials_t  *credentials;
} ngx_http_studio_testusers_loc_conf_t;


typedef struct {
    ngx_str_t                          flow_sid;
    u_char                             flow_sid_buf[STU_FLOW_SID_LEN];
    stu_reason_e                       reason;
    ngx_uint_t                         result;        /* NGX_HTTP_STU_* */

    /* what the handler answers when phases resume after the body read */
    ngx_int_t                          phase_rc;

    ngx_http_handler_pt                content_handler;
    ngx_http_studio_testusers_credentials_t  *credentials;
    ngx_table_elt_t                   *credential;     /* while lent */

    u_char                            *file_buf;
    unsigned                           body_filter:1;

    stu_form_t                         form;
} ngx_http_studio_testusers_ctx_t;


extern ngx_module_t  ngx_http_studio_testusers_module;


ngx_http_studio_testusers_ctx_t *ngx_http_studio_testusers_get_ctx(
    ngx_http_request_t *r);

ngx_int_t ngx_http_studio_testusers_read_body(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx,
    ngx_http_client_body_handler_pt handler);
stu_reason_e ngx_http_studio_testusers_body_done(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
ngx_int_t ngx_http_studio_testusers_body_init(ngx_conf_t *cf);

char *ngx_http_studio_testusers_credentials_load(ngx_conf_t *cf,
    ngx_str_t *file, ngx_http_studio_testusers_credentials_t *cred);
ngx_int_t ngx_http_studio_testusers_credentials_stage(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx,
    ngx_http_studio_testusers_credentials_t *cred);
ngx_int_t ngx_http_studio_testusers_credentials_inject(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
void ngx_http_studio_testusers_credentials_withdraw(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);

ngx_int_t ngx_http_studio_testusers_send_error(ngx_http_request_t *r,
    stu_reason_e reason, size_t position);


#endif /* _NGX_HTTP_STUDIO_TESTUSERS_MODULE_H_INCLUDED_ */
