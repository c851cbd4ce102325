
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
#include "ngx_http_studio_testusers_json.h"


#define NGX_HTTP_STU_NONE        0
#define NGX_HTTP_STU_FORWARDED   1
#define NGX_HTTP_STU_REJECTED    2


typedef struct {
    ngx_str_t                          file;
    ngx_str_t                          sid;
    ngx_str_t                          fingerprint;
    time_t                             loaded;
    ngx_table_elt_t                    header;  /* Authorization: Basic ... */
} ngx_http_studio_testusers_credentials_t;


#define NGX_HTTP_STU_BUCKETS     11


/* in the shared zone; "requests" is [GET, POST, other][forwarded, reasons] */
typedef struct {
    ngx_atomic_t                       requests[3][STU_REASON_LAST + 1];
    ngx_atomic_t                       upstream[6];
    ngx_atomic_t                       latency[NGX_HTTP_STU_BUCKETS];
    ngx_atomic_t                       latency_count;
    ngx_atomic_t                       latency_sum_ms;
    ngx_atomic_t                       audit_written;
    ngx_atomic_t                       audit_failed;
    ngx_atomic_t                       conflicts;
    ngx_atomic_t                       would_reject;
} ngx_http_studio_testusers_metrics_t;


#define NGX_HTTP_STU_TOKEN_LEN   32      /* HMAC-SHA256 */


typedef struct {
    ngx_str_t                          file;
    u_char                             key[64];
    size_t                             len;
    u_char                             id[8];   /* tells keys apart */
} ngx_http_studio_testusers_hmac_key_t;


typedef struct {
    ngx_open_file_t                   *file;
    ngx_syslog_peer_t                 *syslog;
    ngx_str_t                          name;
} ngx_http_studio_testusers_audit_log_t;


#define NGX_HTTP_STU_ENFORCE     0
#define NGX_HTTP_STU_REPORT      1


/* a rule set: a team's named policy, or a location's own rules */
typedef struct {
    ngx_str_t                          name;
    ngx_array_t                       *flows;       /* ngx_str_t; any */
    ngx_uint_t                         methods;     /* 0: any */
    ngx_array_t                       *patterns;    /* ngx_regex_t *; any */
    ngx_uint_t                         max_identities;   /* 0: no limit */
    ngx_int_t                          duplicates;  /* 1: allowed */
} ngx_http_studio_testusers_policy_t;


/* what the watched directives of other modules said, for nginx -t */
typedef struct {
    ngx_str_t                          proxy_pass;    /* this level only */
    ngx_flag_t                         ssl_verify;
    ngx_flag_t                         ssl_server_name;
    ngx_flag_t                         pass_request_headers;
    ngx_flag_t                         set_header;
    ngx_flag_t                         set_authorization;
    ngx_flag_t                         access;
    ngx_str_t                          body;   /* proxy_set_body & co */
} ngx_http_studio_testusers_lint_t;


typedef struct {
    ngx_flag_t                         enable;
    ngx_http_studio_testusers_credentials_t  *credentials;
    ngx_http_studio_testusers_lint_t   lint;

    ngx_http_studio_testusers_policy_t       rules;
    ngx_http_complex_value_t          *team;
    ngx_uint_t                         mode;

    ngx_array_t                       *pass_headers;  /* lower-case names */

    ngx_http_studio_testusers_audit_log_t    *audit;       /* NULL: off */
    ngx_http_complex_value_t          *actor;
    ngx_http_studio_testusers_hmac_key_t     *hmac_key;
    ngx_flag_t                         audit_raw;
    ngx_flag_t                         audit_required;
} ngx_http_studio_testusers_loc_conf_t;


typedef struct {
    ngx_shm_zone_t                    *zone;
    ngx_int_t                          request_id_index;
    ngx_array_t                        policies;   /* of policy_t */
    ngx_array_t                        credentials;  /* for the metrics */
    ngx_uint_t                         used;       /* unsigned:1 */
} ngx_http_studio_testusers_main_conf_t;


/* a slot of the duplicates set: 8 bytes, so growing it zeroes little */
typedef struct {
    uint32_t                           hash;
    uint32_t                           index;   /* 1-based in identities */
} ngx_http_studio_testusers_seen_t;


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
    ngx_list_t                         upstream_headers;
    ngx_list_t                         client_headers;  /* while lent */

    u_char                            *file_buf;
    unsigned                           body_filter:1;

    /* audit: the judging location's conf, identities, baseline snapshot */
    ngx_http_studio_testusers_loc_conf_t     *conf;
    ngx_array_t                       *identities;    /* of ngx_str_t */
    void                              *ids;           /* their chunks */
    u_char                            *ids_pos;
    u_char                            *ids_end;
    u_char                            *baseline;      /* sorted digests */
    ngx_uint_t                         baseline_n;
    ngx_buf_t                         *response;      /* upstream JSON */
    unsigned                           baseline_known:1;
    unsigned                           capture:1;
    unsigned                           capture_failed:1;
    unsigned                           logged:1;
    unsigned                           learned:1;
    unsigned                           json:1;
    unsigned                           error_json:1;
    unsigned                           error_sent:1;

    /* policy: the team, its policy, what report mode would have done */
    ngx_str_t                          team;
    ngx_http_studio_testusers_policy_t       *policy;
    stu_reason_e                       would_reject;
    size_t                             would_position;
    ngx_uint_t                         http_version;  /* the client's */
    ngx_uint_t                         seen;          /* identities */
    ngx_http_studio_testusers_seen_t  *seen_table;
    ngx_uint_t                         seen_size;
    ngx_buf_t                         *json_body;
    ngx_pool_t                        *pool;
    void                              *lock;          /* while held */

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

char *ngx_http_studio_testusers_pass_header(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
ssize_t ngx_http_studio_testusers_read_secret(ngx_conf_t *cf,
    const char *directive, ngx_str_t *file, u_char *buf, size_t size);
char *ngx_http_studio_testusers_credentials_load(ngx_conf_t *cf,
    ngx_str_t *file, ngx_http_studio_testusers_credentials_t *cred);
ngx_int_t ngx_http_studio_testusers_credentials_stage(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx,
    ngx_http_studio_testusers_credentials_t *cred);
void ngx_http_studio_testusers_credentials_inject(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
void ngx_http_studio_testusers_credentials_withdraw(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
void ngx_http_studio_testusers_credentials_recall(ngx_http_request_t *r);

extern ngx_int_t  ngx_http_studio_testusers_authorization_var;

ngx_int_t ngx_http_studio_testusers_chain_read(ngx_http_request_t *r,
    ngx_chain_t *in, u_char **scratch,
    void (*handler)(void *data, u_char *p, size_t len), void *data);

char *ngx_http_studio_testusers_audit_log(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_studio_testusers_hmac_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_studio_testusers_audit_prepare(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
ngx_int_t ngx_http_studio_testusers_audit_intent(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
ngx_int_t ngx_http_studio_testusers_audit_init(ngx_conf_t *cf);
void ngx_http_studio_testusers_audit_request(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
ngx_int_t ngx_http_studio_testusers_audit_identity(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, const unsigned char *p, size_t len);

char *ngx_http_studio_testusers_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_studio_testusers_lock(ngx_shm_zone_t *zone,
    ngx_http_request_t *r, ngx_str_t *sid, void **handle);
void ngx_http_studio_testusers_unlock(void *handle);
void ngx_http_studio_testusers_count_policy(ngx_shm_zone_t *zone,
    ngx_uint_t conflict);

char *ngx_http_studio_testusers_policy_block(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_studio_testusers_rule(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_studio_testusers_rules_init(
    ngx_http_studio_testusers_policy_t *p);
void ngx_http_studio_testusers_rules_merge(
    ngx_http_studio_testusers_policy_t *conf,
    ngx_http_studio_testusers_policy_t *prev);
void ngx_http_studio_testusers_policy_team(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
stu_reason_e ngx_http_studio_testusers_policy_request(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
stu_reason_e ngx_http_studio_testusers_identity(void *data,
    const unsigned char *p, size_t len);
stu_reason_e ngx_http_studio_testusers_violation(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, stu_reason_e reason,
    size_t position);
ngx_int_t ngx_http_studio_testusers_zone_default(ngx_conf_t *cf,
    ngx_http_studio_testusers_main_conf_t *smcf);
stu_reason_e ngx_http_studio_testusers_json_done(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
ngx_int_t ngx_http_studio_testusers_baseline_get(ngx_shm_zone_t *zone,
    ngx_str_t *sid, u_char *key_id, ngx_pool_t *pool, u_char **digests,
    ngx_uint_t *n);
void ngx_http_studio_testusers_baseline_set(ngx_shm_zone_t *zone,
    ngx_str_t *sid, u_char *key_id, u_char *digests, ngx_uint_t n,
    ngx_log_t *log);
void ngx_http_studio_testusers_baseline_forget(ngx_shm_zone_t *zone,
    ngx_str_t *sid);
u_char *ngx_http_studio_testusers_zone_salt(ngx_shm_zone_t *zone);
ngx_http_studio_testusers_metrics_t *ngx_http_studio_testusers_zone_metrics(
    ngx_shm_zone_t *zone);
void ngx_http_studio_testusers_metrics_count(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
char *ngx_http_studio_testusers_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_studio_testusers_fingerprint(ngx_pool_t *pool,
    ngx_str_t *sid, ngx_str_t *out);
void ngx_http_studio_testusers_count_audit(ngx_shm_zone_t *zone,
    ngx_uint_t ok);

void ngx_http_studio_testusers_lint_init(ngx_http_studio_testusers_lint_t *l);
ngx_int_t ngx_http_studio_testusers_lint_wrap(ngx_conf_t *cf);
void ngx_http_studio_testusers_lint_unwrap_all(void);
char *ngx_http_studio_testusers_lint(ngx_conf_t *cf,
    ngx_http_studio_testusers_loc_conf_t *conf,
    ngx_http_studio_testusers_loc_conf_t *prev);

ngx_int_t ngx_http_studio_testusers_send_error(ngx_http_request_t *r,
    stu_reason_e reason, size_t position);
ngx_buf_t *ngx_http_studio_testusers_error_body(ngx_http_request_t *r,
    ngx_uint_t status, ngx_uint_t code, const char *message,
    size_t position);


#endif /* _NGX_HTTP_STUDIO_TESTUSERS_MODULE_H_INCLUDED_ */
