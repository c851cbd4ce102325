
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * Configuration lint for `nginx -t`: a studio location whose proxy_pass
 * would send the credential to an unverified server, whose
 * proxy_set_header or proxy_pass_request_headers would undo it, or that
 * has no access control.
 *
 * Other modules' configurations are private, so the module watches their
 * directives instead: while the http block is parsed, the set handlers of
 * a few directives are wrapped to note what a level says, then call the
 * original.  The wrapping lasts exactly as long as the parse: it is
 * undone at postconfiguration, or by a cycle pool cleanup if the parse
 * fails, so command tables never point into a module that may be unloaded.
 */


#include "ngx_http_studio_testusers_module.h"


#define NGX_HTTP_STU_LINT_MAX  16


typedef enum {
    stu_watch_proxy_pass = 0,
    stu_watch_ssl_verify,
    stu_watch_ssl_server_name,
    stu_watch_set_header,
    stu_watch_pass_request_headers,
    stu_watch_body,
    stu_watch_access
} stu_watch_e;


typedef struct {
    ngx_str_t                          name;
    stu_watch_e                        what;
} ngx_http_studio_testusers_watch_t;


typedef struct {
    ngx_command_t                     *cmd;
    char                            *(*set)(ngx_conf_t *cf,
                                            ngx_command_t *cmd, void *conf);
    stu_watch_e                        what;
} ngx_http_studio_testusers_wrapped_t;


static ngx_http_studio_testusers_watch_t  ngx_http_studio_testusers_watch[] = {
    { ngx_string("proxy_pass"), stu_watch_proxy_pass },
    { ngx_string("proxy_ssl_verify"), stu_watch_ssl_verify },
    { ngx_string("proxy_ssl_server_name"), stu_watch_ssl_server_name },
    { ngx_string("proxy_set_header"), stu_watch_set_header },
    { ngx_string("proxy_pass_request_headers"),
      stu_watch_pass_request_headers },
    { ngx_string("proxy_set_body"), stu_watch_body },
    { ngx_string("proxy_method"), stu_watch_body },
    { ngx_string("proxy_pass_request_body"), stu_watch_body },
    { ngx_string("auth_basic"), stu_watch_access },
    { ngx_string("auth_request"), stu_watch_access },
    { ngx_string("allow"), stu_watch_access },
    { ngx_string("deny"), stu_watch_access },
    { ngx_string("ssl_verify_client"), stu_watch_access },
    { ngx_null_string, 0 }
};


static ngx_http_studio_testusers_wrapped_t
    ngx_http_studio_testusers_wrapped[NGX_HTTP_STU_LINT_MAX];
static ngx_uint_t  ngx_http_studio_testusers_nwrapped;


static char *ngx_http_studio_testusers_watcher(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void ngx_http_studio_testusers_lint_unwrap(void *data);


void
ngx_http_studio_testusers_lint_init(ngx_http_studio_testusers_lint_t *l)
{
    ngx_str_null(&l->proxy_pass);
    l->ssl_verify = NGX_CONF_UNSET;
    l->ssl_server_name = NGX_CONF_UNSET;
    l->pass_request_headers = NGX_CONF_UNSET;
    l->set_header = NGX_CONF_UNSET;
    l->set_authorization = 0;
    l->access = NGX_CONF_UNSET;
    ngx_str_null(&l->body);
}


/* preconfiguration: start watching */

ngx_int_t
ngx_http_studio_testusers_lint_wrap(ngx_conf_t *cf)
{
    ngx_uint_t                          i;
    ngx_module_t                       *m;
    ngx_command_t                      *cmd;
    ngx_pool_cleanup_t                   *cln;
    ngx_http_studio_testusers_watch_t    *w;
    ngx_http_studio_testusers_wrapped_t  *wr;

    ngx_http_studio_testusers_nwrapped = 0;

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_studio_testusers_lint_unwrap;
    cln->data = NULL;

    for (i = 0; cf->cycle->modules[i]; i++) {
        m = cf->cycle->modules[i];

        if (m->type != NGX_HTTP_MODULE || m->commands == NULL) {
            continue;
        }

        for (cmd = m->commands; cmd->name.len; cmd++) {
            for (w = ngx_http_studio_testusers_watch; w->name.len; w++) {

                if (w->name.len != cmd->name.len
                    || ngx_strncmp(w->name.data, cmd->name.data,
                                   w->name.len) != 0
                    || cmd->set == ngx_http_studio_testusers_watcher
                    || ngx_http_studio_testusers_nwrapped
                       == NGX_HTTP_STU_LINT_MAX)
                {
                    continue;
                }

                wr = &ngx_http_studio_testusers_wrapped[
                                         ngx_http_studio_testusers_nwrapped++];
                wr->cmd = cmd;
                wr->set = cmd->set;
                wr->what = w->what;

                cmd->set = ngx_http_studio_testusers_watcher;
            }
        }
    }

    return NGX_OK;
}


/* postconfiguration (or a failed parse): the tables as they were */

void
ngx_http_studio_testusers_lint_unwrap_all(void)
{
    ngx_http_studio_testusers_lint_unwrap(NULL);
}


static void
ngx_http_studio_testusers_lint_unwrap(void *data)
{
    ngx_uint_t  i;

    for (i = 0; i < ngx_http_studio_testusers_nwrapped; i++) {
        ngx_http_studio_testusers_wrapped[i].cmd->set =
                                    ngx_http_studio_testusers_wrapped[i].set;
    }

    ngx_http_studio_testusers_nwrapped = 0;
}


static char *
ngx_http_studio_testusers_watcher(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t                             *value;
    ngx_uint_t                             i;
    ngx_http_studio_testusers_wrapped_t   *w;
    ngx_http_studio_testusers_lint_t      *l;
    ngx_http_studio_testusers_loc_conf_t  *slcf;

    w = NULL;

    for (i = 0; i < ngx_http_studio_testusers_nwrapped; i++) {
        if (ngx_http_studio_testusers_wrapped[i].cmd == cmd) {
            w = &ngx_http_studio_testusers_wrapped[i];
            break;
        }
    }

    if (w == NULL) {
        return "is watched by studio_testusers but unknown to it";
    }

    value = cf->args->elts;
    slcf = ngx_http_conf_get_module_loc_conf(cf,
                                             ngx_http_studio_testusers_module);
    l = &slcf->lint;

    switch (w->what) {

    case stu_watch_proxy_pass:
        l->proxy_pass = value[1];
        break;

    case stu_watch_ssl_verify:
        l->ssl_verify = (ngx_strcasecmp(value[1].data, (u_char *) "on") == 0);
        break;

    case stu_watch_ssl_server_name:
        l->ssl_server_name = (ngx_strcasecmp(value[1].data, (u_char *) "on")
                              == 0);
        break;

    case stu_watch_set_header:
        l->set_header = 1;

        if (value[1].len == sizeof("Authorization") - 1
            && ngx_strncasecmp(value[1].data, (u_char *) "Authorization",
                               value[1].len) == 0)
        {
            l->set_authorization = 1;
        }

        break;

    case stu_watch_pass_request_headers:
        l->pass_request_headers = (ngx_strcasecmp(value[1].data,
                                                  (u_char *) "on") == 0);
        break;

    case stu_watch_body:
        if (!(cmd->name.len == sizeof("proxy_pass_request_body") - 1
              && ngx_strcasecmp(value[1].data, (u_char *) "on") == 0))
        {
            l->body = cmd->name;
        }

        break;

    default: /* stu_watch_access */
        if (l->access != 1) {
            l->access = !(cf->args->nelts == 2
                          && ngx_strcmp(value[1].data, "off") == 0);
        }

        break;
    }

    return w->set(cf, cmd, conf);
}


/* merge_loc_conf: inherit as the watched modules do, then judge */

char *
ngx_http_studio_testusers_lint(ngx_conf_t *cf,
    ngx_http_studio_testusers_loc_conf_t *conf,
    ngx_http_studio_testusers_loc_conf_t *prev)
{
    u_char                            *p, *last;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_studio_testusers_lint_t  *l;

    l = &conf->lint;

    ngx_conf_merge_value(l->ssl_verify, prev->lint.ssl_verify, 0);
    ngx_conf_merge_value(l->ssl_server_name, prev->lint.ssl_server_name, 0);
    ngx_conf_merge_value(l->pass_request_headers,
                         prev->lint.pass_request_headers, 1);
    ngx_conf_merge_value(l->access, prev->lint.access, 0);

    if (l->body.len == 0) {
        l->body = prev->lint.body;
    }

    /* proxy_set_header lines are inherited only by a level without any */

    if (l->set_header == NGX_CONF_UNSET) {
        l->set_header = prev->lint.set_header;
        l->set_authorization = prev->lint.set_authorization;
    }

    if (!conf->enable || l->proxy_pass.len == 0) {
        return NGX_CONF_OK;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (l->set_authorization) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "studio_testusers in location \"%V\": "
                           "\"proxy_set_header Authorization\" would replace "
                           "the Twilio credential", &clcf->name);
        return NGX_CONF_ERROR;
    }

    if (!l->pass_request_headers) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "studio_testusers in location \"%V\": "
                           "\"proxy_pass_request_headers off\" would drop "
                           "the Twilio credential", &clcf->name);
        return NGX_CONF_ERROR;
    }

    if (l->body.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "studio_testusers in location \"%V\": \"%V\" "
                           "would forward a request other than the one "
                           "judged", &clcf->name, &l->body);
        return NGX_CONF_ERROR;
    }

    last = l->proxy_pass.data + l->proxy_pass.len;

    if (ngx_strlchr(l->proxy_pass.data, last, '$')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "studio_testusers in location \"%V\": "
                           "\"proxy_pass %V\" has variables: where the "
                           "Twilio credential goes must be fixed in the "
                           "configuration", &clcf->name, &l->proxy_pass);
        return NGX_CONF_ERROR;
    }

    if (l->proxy_pass.len > 8
        && ngx_strncasecmp(l->proxy_pass.data, (u_char *) "https://", 8) == 0
        && !(l->ssl_verify && l->ssl_server_name))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "studio_testusers in location \"%V\": "
                           "\"proxy_pass %V\" needs \"proxy_ssl_verify on\" "
                           "and \"proxy_ssl_server_name on\", or the Twilio "
                           "credential goes to whoever answers",
                           &clcf->name, &l->proxy_pass);
        return NGX_CONF_ERROR;
    }

    /* a URI part: what is forwarded may not be what was judged */

    p = (u_char *) ngx_strstr(l->proxy_pass.data, "://");

    if (p && ngx_strlchr(p + 3, last, '/')) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "studio_testusers in location \"%V\": "
                           "\"proxy_pass %V\" has a URI part, so the "
                           "request forwarded may differ from the one "
                           "judged; use a URL without a path",
                           &clcf->name, &l->proxy_pass);
    }

    if (!l->access) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "studio_testusers in location \"%V\" has no access "
                           "control (auth_basic, auth_request, allow/deny, "
                           "ssl_verify_client): anyone who reaches it acts "
                           "with the Twilio credential", &clcf->name);
    }

    return NGX_CONF_OK;
}
