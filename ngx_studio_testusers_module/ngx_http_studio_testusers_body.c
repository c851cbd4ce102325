
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * Getting every byte of the request body into the form decoder, whatever
 * its shape: a request body filter sees each piece as nginx reads it,
 * after chunked decoding and HTTP/2 framing and before the save filter
 * spills it to a temp file, so nothing is read twice.  If another module
 * read the body before us, the saved chain (memory and temp file alike)
 * is walked instead: it is what proxy_pass will forward.
 */


#include "ngx_http_studio_testusers_module.h"


#define NGX_HTTP_STU_FILE_CHUNK  16384
#define NGX_HTTP_STU_JSON_MAX    (1024 * 1024)


static ngx_int_t ngx_http_studio_testusers_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_studio_testusers_feed(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, ngx_chain_t *in);


static ngx_http_request_body_filter_pt   ngx_http_next_request_body_filter;


ngx_int_t
ngx_http_studio_testusers_read_body(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx,
    ngx_http_client_body_handler_pt handler)
{
    ctx->body_filter = (r->request_body == NULL);

    return ngx_http_read_client_request_body(r, handler);
}


stu_reason_e
ngx_http_studio_testusers_body_done(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    if (ctx->body_filter) {
        ctx->body_filter = 0;

    } else if (r->request_body
               && ngx_http_studio_testusers_feed(r, ctx, r->request_body->bufs)
                  != NGX_OK)
    {
        return STU_INTERNAL_ERROR;
    }

    if (r->method == NGX_HTTP_GET) {
        return ctx->form.bytes ? STU_GET_WITH_BODY : STU_OK;
    }

    if (ctx->json) {
        return ngx_http_studio_testusers_json_done(r, ctx);
    }

    return stu_form_finish(&ctx->form);
}


/*
 * A JSON body is checked whole, then forwarded as the equivalent form
 * body: Twilio takes form bodies only.
 */

stu_reason_e
ngx_http_studio_testusers_json_done(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    size_t         len, position, count;
    ngx_buf_t     *b;
    ngx_str_t     *id;
    ngx_uint_t     i;
    ngx_chain_t   *cl;
    stu_reason_e   rc;

    if (ctx->form.error == STU_JSON_TOO_LARGE) {
        return STU_JSON_TOO_LARGE;
    }

    b = ctx->json_body;

    rc = stu_json_parse(b ? b->pos : (u_char *) "", b ? b->last - b->pos : 0,
                        ngx_http_studio_testusers_identity, r,
                        &position, &count);

    ctx->form.identities = count;
    ctx->form.position = position;

    if (rc != STU_OK) {
        return rc;
    }

    /* the identity handler keeps JSON identities, in order */

    if (ctx->identities == NULL) {
        return STU_INTERNAL_ERROR;
    }

    id = ctx->identities->elts;
    len = 0;

    for (i = 0; i < ctx->identities->nelts; i++) {
        len += stu_form_encode_pair(NULL, id[i].data, id[i].len) + 1;
    }

    b = ngx_create_temp_buf(r->pool, len);
    cl = ngx_alloc_chain_link(r->pool);
    if (b == NULL || cl == NULL) {
        return STU_INTERNAL_ERROR;
    }

    for (i = 0; i < ctx->identities->nelts; i++) {
        if (i) {
            *b->last++ = '&';
        }

        b->last += stu_form_encode_pair(b->last, id[i].data, id[i].len);
    }

    b->last_buf = 1;
    cl->buf = b;
    cl->next = NULL;

    r->request_body->bufs = cl;
    r->headers_in.content_length_n = b->last - b->pos;

    return STU_OK;
}


static ngx_int_t
ngx_http_studio_testusers_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_http_studio_testusers_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_studio_testusers_module);

    if (ctx && ctx->body_filter
        && ngx_http_studio_testusers_feed(r, ctx, in) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_next_request_body_filter(r, in);
}


/*
 * Feeds on past the first error: the decoder ignores the rest, and the
 * body is still read to its end so the connection stays usable.
 */

static void
ngx_http_studio_testusers_feed_form(void *data, u_char *p, size_t len)
{
    ngx_http_studio_testusers_ctx_t *ctx = data;

    size_t      size;
    ngx_buf_t  *b, *nb;

    if (!ctx->json) {
        (void) stu_form_feed(&ctx->form, p, len);
        return;
    }

    /* JSON is parsed whole: collect it, up to a bound */

    ctx->form.bytes += len;

    if (ctx->form.error != STU_OK) {
        return;
    }

    if (ctx->form.bytes > NGX_HTTP_STU_JSON_MAX) {
        ctx->form.error = STU_JSON_TOO_LARGE;
        return;
    }

    b = ctx->json_body;

    if (b == NULL || (size_t) (b->end - b->last) < len) {
        size = b ? 2 * (size_t) (b->end - b->start) : 4096;

        while (size < ctx->form.bytes) {
            size *= 2;
        }

        nb = ngx_create_temp_buf(ctx->pool, size);
        if (nb == NULL) {
            ctx->form.error = STU_INTERNAL_ERROR;
            return;
        }

        if (b) {
            nb->last = ngx_cpymem(nb->last, b->pos, b->last - b->pos);
        }

        ctx->json_body = nb;
        b = nb;
    }

    b->last = ngx_cpymem(b->last, p, len);
}


static ngx_int_t
ngx_http_studio_testusers_feed(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, ngx_chain_t *in)
{
    return ngx_http_studio_testusers_chain_read(r, in, &ctx->file_buf,
                                       ngx_http_studio_testusers_feed_form,
                                       ctx);
}


/* hands every byte of a chain, in memory or in a file, to a handler */

ngx_int_t
ngx_http_studio_testusers_chain_read(ngx_http_request_t *r, ngx_chain_t *in,
    u_char **scratch, void (*handler)(void *data, u_char *p, size_t len),
    void *data)
{
    off_t         offset;
    size_t        size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            if (b->last > b->pos) {
                handler(data, b->pos, b->last - b->pos);
            }

            continue;
        }

        if (!b->in_file) {
            continue;
        }

        if (*scratch == NULL) {
            *scratch = ngx_palloc(r->pool, NGX_HTTP_STU_FILE_CHUNK);
            if (*scratch == NULL) {
                return NGX_ERROR;
            }
        }

        for (offset = b->file_pos; offset < b->file_last; offset += n) {
            size = ngx_min(b->file_last - offset, NGX_HTTP_STU_FILE_CHUNK);

            n = ngx_read_file(b->file, *scratch, size, offset);

            if (n == NGX_ERROR) {
                return NGX_ERROR;
            }

            if ((size_t) n != size) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "studio_testusers: short read of \"%V\": "
                              "%z of %uz bytes", &b->file->name, n, size);
                return NGX_ERROR;
            }

            handler(data, *scratch, size);
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_studio_testusers_body_init(ngx_conf_t *cf)
{
    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_studio_testusers_body_filter;

    return NGX_OK;
}
