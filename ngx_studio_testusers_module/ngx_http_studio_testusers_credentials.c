
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * Credential custody: the secret file is read once, at configuration time,
 * into a ready "Authorization: Basic" header; at request time the client's
 * own Authorization headers are dropped and the service header is lent to
 * proxy_pass only while it builds the upstream request.
 */


#include "ngx_http_studio_testusers_module.h"


#define NGX_HTTP_STU_CRED_MAX     512
#define NGX_HTTP_STU_SID_LEN      34
#define NGX_HTTP_STU_SECRET_LEN   32


static const char *ngx_http_studio_testusers_credentials_parse(u_char *p,
    size_t len, ngx_str_t *line);


/*
 * The credential is lent only for a synchronous call into proxy_pass, and
 * a worker runs one such call at a time: who holds it is kept here, so
 * every way out of that call (an error page's internal redirect, an error
 * response's filters, the log) can take it back first, even after an
 * internal redirect zeroed the request's module contexts.
 */

static ngx_str_t  ngx_http_studio_testusers_needed_headers[] = {
    ngx_string("accept"),
    ngx_string("accept-charset"),
    ngx_string("content-type"),
    ngx_string("content-length"),
    ngx_string("user-agent"),
    ngx_string("x-request-id"),
    ngx_null_string
};


static ngx_http_request_t               *ngx_http_studio_testusers_lent_r;
static ngx_http_studio_testusers_ctx_t  *ngx_http_studio_testusers_lent_ctx;
ngx_int_t  ngx_http_studio_testusers_authorization_var = NGX_ERROR;


/*
 * Reads a small secret file at configuration time: the whole content into
 * buf (at most size bytes; one more means "too large"), a warning when
 * other users may read it.  Errors name the directive and the file, never
 * the content.  Returns the length, or NGX_ERROR after logging.
 */

ssize_t
ngx_http_studio_testusers_read_secret(ngx_conf_t *cf, const char *directive,
    ngx_str_t *file, u_char *buf, size_t size)
{
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_uint_t        mode;
    ngx_file_info_t   fi;

    if (ngx_conf_full_name(cf->cycle, file, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s: " ngx_open_file_n " \"%V\" failed",
                           directive, file);
        return NGX_ERROR;
    }

    n = NGX_ERROR;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s: " ngx_fd_info_n " \"%V\" failed",
                           directive, file);

    } else if (!ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s: \"%V\" is not a regular file",
                           directive, file);

    } else {
        mode = ngx_file_access(&fi);

        if (mode & 077) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "%s: \"%V\" is accessible by other users "
                               "(mode 0%ui%ui%ui), make it 0600 or 0400",
                               directive, file,
                               (mode >> 6) & 7, (mode >> 3) & 7, mode & 7);
        }

        n = ngx_read_fd(fd, buf, size);

        if (n == -1) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "%s: " ngx_read_fd_n " \"%V\" failed",
                               directive, file);
            n = NGX_ERROR;
        }
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", file);
    }

    return n;
}


char *
ngx_http_studio_testusers_credentials_load(ngx_conf_t *cf, ngx_str_t *file,
    ngx_http_studio_testusers_credentials_t *cred)
{
    u_char            *p;
    ssize_t            n;
    ngx_str_t          line, encoded;
    ngx_uint_t         i;
    const char        *err;
    u_char             buf[NGX_HTTP_STU_CRED_MAX + 1];

    cred->file = *file;

    n = ngx_http_studio_testusers_read_secret(cf,
                                              "studio_testusers_credentials",
                                              &cred->file, buf, sizeof(buf));
    if (n == NGX_ERROR) {
        ngx_explicit_memzero(buf, sizeof(buf));
        return NGX_CONF_ERROR;
    }

    err = ngx_http_studio_testusers_credentials_parse(buf, n, &line);

    if (err) {
        ngx_explicit_memzero(buf, sizeof(buf));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "studio_testusers_credentials: \"%V\" %s",
                           &cred->file, err);
        return NGX_CONF_ERROR;
    }

    if (line.data[0] == 'A') {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "studio_testusers_credentials: \"%V\" holds an "
                           "Account SID and its Auth Token; an API key "
                           "(SK...) for the gateway alone is safer",
                           &cred->file);
    }

    /* only the SID: the secret lives on in the encoded header alone */

    cred->sid.len = NGX_HTTP_STU_SID_LEN;
    cred->sid.data = line.data;
    cred->sid.data = ngx_pstrdup(cf->pool, &cred->sid);

    encoded.len = sizeof("Basic ") - 1 + ngx_base64_encoded_length(line.len);
    p = ngx_pnalloc(cf->pool, encoded.len);

    if (cred->sid.data == NULL || p == NULL) {
        ngx_explicit_memzero(buf, sizeof(buf));
        return NGX_CONF_ERROR;
    }

    encoded.data = p + sizeof("Basic ") - 1;
    ngx_encode_base64(&encoded, &line);
    ngx_explicit_memzero(buf, sizeof(buf));

    ngx_memcpy(p, "Basic ", sizeof("Basic ") - 1);

    cred->header.value.data = p;
    cred->header.value.len = sizeof("Basic ") - 1 + encoded.len;

    ngx_str_set(&cred->header.key, "Authorization");
    cred->header.lowcase_key = (u_char *) "authorization";

    /* as the request parser computes it, so proxy_set_header dedupes it */

    cred->header.hash = 0;
    for (i = 0; i < cred->header.key.len; i++) {
        cred->header.hash = ngx_hash(cred->header.hash,
                                     cred->header.lowcase_key[i]);
    }

    return NGX_CONF_OK;
}


/*
 * One line "SID:SECRET", an optional line ending after it.  Messages never
 * quote the file: it holds a secret.
 */

static const char *
ngx_http_studio_testusers_credentials_parse(u_char *p, size_t len,
    ngx_str_t *line)
{
    u_char      *colon, *secret;
    size_t       i, slen;

    if (len > NGX_HTTP_STU_CRED_MAX) {
        return "is too large for one credential line";
    }

    if (len && p[len - 1] == '\n') {
        len--;

        if (len && p[len - 1] == '\r') {
            len--;
        }
    }

    if (len == 0) {
        return "is empty";
    }

    if (ngx_strlchr(p, p + len, '\n') || ngx_strlchr(p, p + len, '\r')) {
        return "holds more than one line: expected one line SID:SECRET";
    }

    colon = ngx_strlchr(p, p + len, ':');

    if (colon == NULL) {
        return "is malformed: expected one line SID:SECRET";
    }

    if (colon - p != NGX_HTTP_STU_SID_LEN
        || !((p[0] == 'A' && p[1] == 'C') || (p[0] == 'S' && p[1] == 'K')))
    {
        return "has a malformed SID: expected \"AC\" or \"SK\" "
               "followed by 32 hex digits";
    }

    for (i = 2; i < NGX_HTTP_STU_SID_LEN; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')
              || (p[i] >= 'A' && p[i] <= 'F')))
        {
            return "has a malformed SID: expected \"AC\" or \"SK\" "
                   "followed by 32 hex digits";
        }
    }

    secret = colon + 1;
    slen = p + len - secret;

    if (slen != NGX_HTTP_STU_SECRET_LEN) {
        return "has a malformed secret: expected 32 letters or digits";
    }

    for (i = 0; i < slen; i++) {
        if (!((secret[i] >= '0' && secret[i] <= '9')
              || (secret[i] >= 'a' && secret[i] <= 'z')
              || (secret[i] >= 'A' && secret[i] <= 'Z')))
        {
            return "has a malformed secret: expected 32 letters or digits";
        }
    }

    line->data = p;
    line->len = len;

    return NULL;
}


/* studio_testusers_pass_header name: forward one more client header */

char *
ngx_http_studio_testusers_pass_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_studio_testusers_loc_conf_t *slcf = conf;

    ngx_str_t  *value, *name;

    value = cf->args->elts;

    if (value[1].len == sizeof("authorization") - 1
        && ngx_strncasecmp(value[1].data, (u_char *) "authorization",
                           value[1].len) == 0)
    {
        return "cannot pass the client's Authorization: the service "
               "credential replaces it";
    }

    if (slcf->pass_headers == NGX_CONF_UNSET_PTR) {
        slcf->pass_headers = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (slcf->pass_headers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    name = ngx_array_push(slcf->pass_headers);
    if (name == NULL) {
        return NGX_CONF_ERROR;
    }

    name->len = value[1].len;
    name->data = ngx_pnalloc(cf->pool, name->len);
    if (name->data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_strlow(name->data, value[1].data, name->len);

    return NGX_CONF_OK;
}


static ngx_uint_t
ngx_http_studio_testusers_needed(ngx_http_studio_testusers_ctx_t *ctx,
    ngx_table_elt_t *h)
{
    ngx_str_t   *n;
    ngx_uint_t   i;

    for (n = ngx_http_studio_testusers_needed_headers; n->len; n++) {
        if (n->len == h->key.len
            && ngx_strncmp(n->data, h->lowcase_key, n->len) == 0)
        {
            return 1;
        }
    }

    if (ctx->conf->pass_headers) {
        n = ctx->conf->pass_headers->elts;

        for (i = 0; i < ctx->conf->pass_headers->nelts; i++) {
            if (n[i].len == h->key.len
                && ngx_strncmp(n[i].data, h->lowcase_key, n[i].len) == 0)
            {
                return 1;
            }
        }
    }

    return 0;
}


/*
 * Builds, aside, the header list Twilio will get: only what a Twilio
 * client needs (no Cookie, no Proxy-Authorization, no client
 * X-Forwarded-*, never the client's Authorization), and one spare slot
 * for the credential.  Elements are copied: the request's own list, which
 * logs, variables and other modules keep using, is not touched.
 */

ngx_int_t
ngx_http_studio_testusers_credentials_stage(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx,
    ngx_http_studio_testusers_credentials_t *cred)
{
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh;

    n = 0;
    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    if (ngx_list_init(&ctx->upstream_headers, r->pool, n + 1,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            /* the audit reads Twilio's answer: ask for it uncompressed */

            if (!ngx_http_studio_testusers_needed(ctx, &h[i])
                || (ctx->capture
                    && h[i].key.len == sizeof("Accept-Encoding") - 1
                    && ngx_strncmp(h[i].lowcase_key, "accept-encoding",
                                   sizeof("accept-encoding") - 1) == 0))
            {
                continue;
            }

            nh = ngx_list_push(&ctx->upstream_headers);
            if (nh == NULL) {
                return NGX_ERROR;
            }

            *nh = h[i];

            /* a JSON body goes to Twilio as the equivalent form body */

            if (ctx->json
                && h[i].key.len == sizeof("Content-Type") - 1
                && ngx_strncmp(h[i].lowcase_key, "content-type",
                               sizeof("content-type") - 1) == 0)
            {
                ngx_str_set(&nh->value, "application/x-www-form-urlencoded");
            }
        }
    }

    /* the spare slot: lending the credential allocates nothing */

    h = ngx_list_push(&ctx->upstream_headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = cred->header;

    ctx->credentials = cred;

    return NGX_OK;
}


/*
 * While proxy_pass builds its request, the request's header list is the
 * staged one, credential included; then the client's list comes back.
 */

void
ngx_http_studio_testusers_credentials_inject(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    ctx->client_headers = r->headers_in.headers;

    /* one part: "last" must point at the part inside the request */

    r->headers_in.headers = ctx->upstream_headers;
    r->headers_in.headers.last = &r->headers_in.headers.part;

    ctx->credential = (ngx_table_elt_t *) r->headers_in.headers.part.elts
                      + r->headers_in.headers.part.nelts - 1;

    ngx_http_studio_testusers_lent_r = r->main;
    ngx_http_studio_testusers_lent_ctx = ctx;
}


void
ngx_http_studio_testusers_credentials_recall(ngx_http_request_t *r)
{
    if (ngx_http_studio_testusers_lent_ctx
        && ngx_http_studio_testusers_lent_r == r->main)
    {
        ngx_http_studio_testusers_credentials_withdraw(r->main,
                                         ngx_http_studio_testusers_lent_ctx);
    }
}


void
ngx_http_studio_testusers_credentials_withdraw(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    if (ctx->credential == NULL) {
        return;
    }

    if (ngx_http_studio_testusers_lent_ctx == ctx) {
        ngx_http_studio_testusers_lent_ctx = NULL;
        ngx_http_studio_testusers_lent_r = NULL;
    }

    r->headers_in.headers = ctx->client_headers;

    /* the staged copy is not used again: no secret left behind in it */

    ngx_memzero(ctx->credential, sizeof(ngx_table_elt_t));
    ctx->credential = NULL;

    /* $http_authorization read while lent must not keep the value */

    if (ngx_http_studio_testusers_authorization_var != NGX_ERROR) {
        r->variables[ngx_http_studio_testusers_authorization_var].valid = 0;
        r->variables[ngx_http_studio_testusers_authorization_var].not_found
                                                                         = 0;
    }
}
