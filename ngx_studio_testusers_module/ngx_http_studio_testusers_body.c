
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

    return stu_form_finish(&ctx->form);
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

    (void) stu_form_feed(&ctx->form, p, len);
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
