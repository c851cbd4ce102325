
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * The audit trail: one JSON line per request the gateway judged, written
 * in the log phase so it holds the upstream's answer.  Identities are
 * personal data: they are recorded as keyed HMAC-SHA256 tokens, or not at
 * all without a key.  For a POST the record says which tokens it added and
 * removed compared with the list Twilio last returned for that flow through
 * this gateway, which a response body filter keeps in the shared zone.
 *
 * The response filters here also serve the glue, as they see every answer
 * to a judged request: they take back a lent credential, let the flow's
 * update lock go at the last buffer, and give nginx's own 5xx pages for
 * forwarded requests Twilio's error shape.
 */


#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_http_studio_testusers_module.h"


#define NGX_HTTP_STU_AUDIT_VERSION    1
#define NGX_HTTP_STU_RESPONSE_MAX     (1024 * 1024)
#define NGX_HTTP_STU_KEY_MIN          32
#define NGX_HTTP_STU_KEY_MAX          64


static void ngx_http_studio_testusers_audit_settle(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
static ngx_int_t ngx_http_studio_testusers_audit_write(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, json_t *record);
static json_t *ngx_http_studio_testusers_audit_record(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, const char *event);
static ngx_int_t ngx_http_studio_testusers_tokens(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, u_char *key, size_t key_len,
    u_char **out, ngx_uint_t *n);
static json_t *ngx_http_studio_testusers_token_array(u_char *digests,
    ngx_uint_t n);
static int ngx_http_studio_testusers_cmp_digest(const void *a, const void *b);
static ngx_uint_t ngx_http_studio_testusers_sort_unique(u_char *d,
    ngx_uint_t m);
static void ngx_http_studio_testusers_key_of(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, u_char **key, size_t *len,
    u_char *key_id);

static ngx_int_t ngx_http_studio_testusers_header_filter(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_studio_testusers_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_studio_testusers_capture(void *data, u_char *p,
    size_t len);
static void ngx_http_studio_testusers_learn(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx);
static ngx_int_t ngx_http_studio_testusers_error_filter(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

static u_char  ngx_http_studio_testusers_salt_id[8];  /* all zero */


/* studio_testusers_audit_log path | syslog:server=...[,...] | off */

char *
ngx_http_studio_testusers_audit_log(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_studio_testusers_loc_conf_t *slcf = conf;

    ngx_str_t                              *value;
    ngx_http_studio_testusers_audit_log_t  *log;

    if (slcf->audit != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        slcf->audit = NULL;
        return NGX_CONF_OK;
    }

    log = ngx_pcalloc(cf->pool, sizeof(ngx_http_studio_testusers_audit_log_t));
    if (log == NULL) {
        return NGX_CONF_ERROR;
    }

    log->name = value[1];

    if (ngx_strncmp(value[1].data, "syslog:", 7) == 0) {
        log->syslog = ngx_pcalloc(cf->pool, sizeof(ngx_syslog_peer_t));
        if (log->syslog == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_syslog_process_conf(cf, log->syslog) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }

    } else {
        /* an open file of the cycle: reopened on -s reopen and reload */
        log->file = ngx_conf_open_file(cf->cycle, &value[1]);
        if (log->file == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    slcf->audit = log;

    return NGX_CONF_OK;
}


/*
 * The key file holds one line of 32 to 64 printable characters (for
 * example `openssl rand -hex 32`), used as is, so that
 * `openssl dgst -sha256 -hmac "$(cat FILE)"` computes the same tokens.
 */

char *
ngx_http_studio_testusers_hmac_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_studio_testusers_loc_conf_t *slcf = conf;

    size_t                                 len, i;
    ssize_t                                n;
    ngx_str_t                             *value;
    const char                            *err;
    unsigned int                           id_len;
    u_char                                 buf[NGX_HTTP_STU_KEY_MAX + 3];
    u_char                                 id[EVP_MAX_MD_SIZE];
    ngx_http_studio_testusers_hmac_key_t  *key;

    if (slcf->hmac_key != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    key = ngx_pcalloc(cf->pool, sizeof(ngx_http_studio_testusers_hmac_key_t));
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    key->file = value[1];

    n = ngx_http_studio_testusers_read_secret(cf,
                                              "studio_testusers_audit_hmac_key",
                                              &key->file, buf, sizeof(buf));
    if (n == NGX_ERROR) {
        ngx_explicit_memzero(buf, sizeof(buf));
        return NGX_CONF_ERROR;
    }

    len = n;
    err = NULL;

    if (len && buf[len - 1] == '\n') {
        len--;
        if (len && buf[len - 1] == '\r') {
            len--;
        }
    }

    if (len < NGX_HTTP_STU_KEY_MIN || len > NGX_HTTP_STU_KEY_MAX) {
        err = "must hold one line of 32 to 64 characters "
              "(e.g. \"openssl rand -hex 32\")";
    }

    for (i = 0; err == NULL && i < len; i++) {
        if (buf[i] <= ' ' || buf[i] >= 0x7f) {
            err = "must hold printable characters only, without spaces";
        }
    }

    if (err) {
        ngx_explicit_memzero(buf, sizeof(buf));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "studio_testusers_audit_hmac_key: \"%V\" %s",
                           &key->file, err);
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(key->key, buf, len);
    key->len = len;
    ngx_explicit_memzero(buf, sizeof(buf));

    /* an id that tells keys apart without revealing them */

    if (HMAC(EVP_sha256(), key->key, key->len,
             (u_char *) "studio_testusers key id", 23, id, &id_len)
        == NULL)
    {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(key->id, id, sizeof(key->id));

    slcf->hmac_key = key;

    return NGX_CONF_OK;
}


/*
 * The copies live in chunks that each worker keeps for its next requests:
 * allocating them per request (from the pool or not) made glibc trim and
 * regrow the heap, and the 30 KB benchmark took a page fault or more per
 * request.  A request's chunks go back when its pool is destroyed, after
 * the log phase has written the record.  A small body's copies, whose
 * total its Content-Length bounds, come from the request pool instead.
 */

#define NGX_HTTP_STU_CHUNK_SIZE   8192
#define NGX_HTTP_STU_SMALL_BODY   2048      /* its copies come from the pool */
#define NGX_HTTP_STU_CHUNKS_KEPT  128       /* 1 MB a worker at most */


typedef struct ngx_http_studio_testusers_chunk_s
    ngx_http_studio_testusers_chunk_t;

struct ngx_http_studio_testusers_chunk_s {
    ngx_http_studio_testusers_chunk_t  *next;
};


typedef struct {
    ngx_http_studio_testusers_chunk_t  *chunks;
} ngx_http_studio_testusers_ids_t;


static ngx_http_studio_testusers_chunk_t  *ngx_http_studio_testusers_free;
static ngx_uint_t                          ngx_http_studio_testusers_nfree;


static void
ngx_http_studio_testusers_ids_cleanup(void *data)
{
    ngx_http_studio_testusers_ids_t *ids = data;

    ngx_http_studio_testusers_chunk_t  *c, *next;

    for (c = ids->chunks; c; c = next) {
        next = c->next;

        if (ngx_http_studio_testusers_nfree < NGX_HTTP_STU_CHUNKS_KEPT) {
            c->next = ngx_http_studio_testusers_free;
            ngx_http_studio_testusers_free = c;
            ngx_http_studio_testusers_nfree++;

        } else {
            ngx_free(c);
        }
    }

    ids->chunks = NULL;
}


static ngx_int_t
ngx_http_studio_testusers_ids_room(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, size_t len)
{
    size_t                              size;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_studio_testusers_ids_t    *ids;
    ngx_http_studio_testusers_chunk_t  *c;

    if (ctx->ids == NULL && r->headers_in.content_length_n > 0
        && r->headers_in.content_length_n <= NGX_HTTP_STU_SMALL_BODY)
    {
        /* the identities of a small body fit in its length: from the pool */
        size = ngx_max(len, (size_t) r->headers_in.content_length_n);

    } else if (len > NGX_HTTP_STU_CHUNK_SIZE - sizeof(*c)) {
        size = len;                     /* longer than a chunk: never */

    } else {
        size = 0;
    }

    if (size) {
        ctx->ids_pos = ngx_pnalloc(r->pool, size);
        if (ctx->ids_pos == NULL) {
            return NGX_ERROR;
        }

        ctx->ids_end = ctx->ids_pos + size;
        return NGX_OK;
    }

    ids = ctx->ids;

    if (ids == NULL) {
        cln = ngx_pool_cleanup_add(r->pool,
                                   sizeof(ngx_http_studio_testusers_ids_t));
        if (cln == NULL) {
            return NGX_ERROR;
        }

        ids = cln->data;
        ids->chunks = NULL;
        ctx->ids = ids;

        cln->handler = ngx_http_studio_testusers_ids_cleanup;
    }

    c = ngx_http_studio_testusers_free;

    if (c) {
        ngx_http_studio_testusers_free = c->next;
        ngx_http_studio_testusers_nfree--;

    } else {
        c = ngx_alloc(NGX_HTTP_STU_CHUNK_SIZE, r->connection->log);
        if (c == NULL) {
            return NGX_ERROR;
        }
    }

    c->next = ids->chunks;
    ids->chunks = c;

    ctx->ids_pos = (u_char *) (c + 1);
    ctx->ids_end = (u_char *) c + NGX_HTTP_STU_CHUNK_SIZE;

    return NGX_OK;
}


/* keeps a copy of an identity for the record and the duplicates check */

ngx_int_t
ngx_http_studio_testusers_audit_identity(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, const unsigned char *p, size_t len)
{
    ngx_str_t  *id;

    if (ctx->identities == NULL) {
        ctx->identities = ngx_array_create(r->pool, 8, sizeof(ngx_str_t));
        if (ctx->identities == NULL) {
            return NGX_ERROR;
        }
    }

    /* room first: a failure must not leave a slot without an identity */

    if ((size_t) (ctx->ids_end - ctx->ids_pos) < len
        && ngx_http_studio_testusers_ids_room(r, ctx, len) != NGX_OK)
    {
        return NGX_ERROR;
    }

    id = ngx_array_push(ctx->identities);
    if (id == NULL) {
        return NGX_ERROR;
    }

    id->data = ctx->ids_pos;
    id->len = len;

    ctx->ids_pos = ngx_cpymem(ctx->ids_pos, p, len);

    return NGX_OK;
}


static void
ngx_http_studio_testusers_key_of(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, u_char **key, size_t *len,
    u_char *key_id)
{
    ngx_http_studio_testusers_main_conf_t  *smcf;

    if (ctx->conf->hmac_key) {
        *key = ctx->conf->hmac_key->key;
        *len = ctx->conf->hmac_key->len;
        ngx_memcpy(key_id, ctx->conf->hmac_key->id, 8);
        return;
    }

    /* no key: the zone's own random salt, only for comparing lists */

    smcf = ngx_http_get_module_main_conf(r, ngx_http_studio_testusers_module);

    *key = ngx_http_studio_testusers_zone_salt(smcf->zone);
    *len = 32;
    ngx_memcpy(key_id, ngx_http_studio_testusers_salt_id, 8);
}


/* called when a request is accepted, before it is forwarded */

ngx_int_t
ngx_http_studio_testusers_audit_prepare(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    u_char                                 *key, key_id[8];
    size_t                                  len;
    ngx_int_t                               rc;
    ngx_http_studio_testusers_main_conf_t  *smcf;

    if (ctx->conf == NULL || ctx->conf->audit == NULL) {
        return NGX_OK;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_studio_testusers_module);

    ctx->capture = 1;

    if (r->method != NGX_HTTP_POST) {
        return NGX_OK;
    }

    ngx_http_studio_testusers_key_of(r, ctx, &key, &len, key_id);

    rc = ngx_http_studio_testusers_baseline_get(smcf->zone, &ctx->flow_sid,
                                                key_id, r->pool,
                                                &ctx->baseline,
                                                &ctx->baseline_n);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    ctx->baseline_known = (rc == NGX_OK);

    return NGX_OK;
}


/* audit_required: a POST's intent is on record before Twilio sees it */

ngx_int_t
ngx_http_studio_testusers_audit_intent(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    json_t  *record;

    record = ngx_http_studio_testusers_audit_record(r, ctx, "intent");
    if (record == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_studio_testusers_audit_write(r, ctx, record);
}


/*
 * A POST went to Twilio but its answer was not read whole (the client
 * left, the answer was cut, Twilio failed): Twilio may or may not have
 * applied it, so the list this gateway remembers is no longer known.
 * Only an answer Twilio completed with a 4xx leaves the list as it was.
 */

static void
ngx_http_studio_testusers_audit_settle(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    ngx_http_upstream_state_t              *state;
    ngx_http_studio_testusers_main_conf_t  *smcf;

    if (ctx->conf->audit == NULL || ctx->learned
        || ctx->result != NGX_HTTP_STU_FORWARDED
        || r->method != NGX_HTTP_POST)
    {
        return;
    }

    state = NULL;

    if (r->upstream_states && r->upstream_states->nelts) {
        state = r->upstream_states->elts;
        state += r->upstream_states->nelts - 1;
    }

    if (state && state->status >= 400 && state->status < 500
        && !r->connection->error)
    {
        return;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_studio_testusers_module);

    ngx_http_studio_testusers_baseline_forget(smcf->zone, &ctx->flow_sid);
}


/* the log phase: the request's record, now that Twilio has answered */

void
ngx_http_studio_testusers_audit_request(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    json_t  *record;

    ngx_http_studio_testusers_audit_settle(r, ctx);

    if (ctx->conf->audit == NULL) {
        return;
    }

    record = ngx_http_studio_testusers_audit_record(r, ctx, "request");

    if (record == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "studio_testusers: audit record not built");
        return;
    }

    (void) ngx_http_studio_testusers_audit_write(r, ctx, record);
}


/* client-influenced strings: invalid UTF-8 bytes become '?' */

static json_t *
ngx_http_studio_testusers_json_str(ngx_str_t *s)
{
    u_char  *p;
    json_t  *j;
    size_t   i;

    if (s->len == 0) {
        return json_null();
    }

    j = json_stringn((char *) s->data, s->len);

    if (j || (p = ngx_alloc(s->len, ngx_cycle->log)) == NULL) {
        return j;
    }

    for (i = 0; i < s->len; i++) {
        p[i] = s->data[i] < 0x80 ? s->data[i] : '?';
    }

    j = json_stringn((char *) p, s->len);
    ngx_free(p);

    return j;
}


static json_t *
ngx_http_studio_testusers_audit_record(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, const char *event)
{
    u_char                                 *key, key_id[8], *p, *tokens;
    u_char                                 *added, *removed;
    size_t                                  len;
    json_t                                 *rec, *values;
    ngx_tm_t                                tm;
    ngx_str_t                               s, actor;
    ngx_int_t                               status;
    ngx_uint_t                              i, j, k, n, na, nr;
    ngx_time_t                             *tp;
    ngx_http_variable_value_t              *vv;
    ngx_http_upstream_state_t              *state;
    ngx_http_studio_testusers_main_conf_t  *smcf;
    u_char                                  time[sizeof("1970-01-01T"
                                                    "00:00:00.000Z")];

    smcf = ngx_http_get_module_main_conf(r, ngx_http_studio_testusers_module);

    rec = json_object();
    if (rec == NULL) {
        return NULL;
    }

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);
    p = ngx_sprintf(time, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec, tp->msec);

    json_object_set_new(rec, "v", json_integer(NGX_HTTP_STU_AUDIT_VERSION));
    json_object_set_new(rec, "event", json_string(event));
    json_object_set_new(rec, "time", json_stringn((char *) time, p - time));

    vv = ngx_http_get_indexed_variable(r, smcf->request_id_index);
    json_object_set_new(rec, "request_id",
                        (vv && !vv->not_found)
                        ? json_stringn((char *) vv->data, vv->len)
                        : json_null());

    ngx_str_null(&actor);

    if (ctx->conf->actor
        && ngx_http_complex_value(r, ctx->conf->actor, &actor) != NGX_OK)
    {
        ngx_str_null(&actor);
    }

    if (ctx->conf->actor == NULL) {
        actor = ctx->team;
    }

    json_object_set_new(rec, "actor",
                        ngx_http_studio_testusers_json_str(&actor));
    json_object_set_new(rec, "client",
                        ngx_http_studio_testusers_json_str(
                                                 &r->connection->addr_text));
    json_object_set_new(rec, "method",
                        ngx_http_studio_testusers_json_str(&r->method_name));
    json_object_set_new(rec, "flow_sid",
                        ngx_http_studio_testusers_json_str(&ctx->flow_sid));

    if (ctx->conf->team) {
        json_object_set_new(rec, "team",
                            ngx_http_studio_testusers_json_str(&ctx->team));
        json_object_set_new(rec, "policy",
                            ctx->policy
                            ? ngx_http_studio_testusers_json_str(
                                                          &ctx->policy->name)
                            : json_null());
    }

    if (ctx->conf->mode == NGX_HTTP_STU_REPORT) {
        json_object_set_new(rec, "mode", json_string("report"));
        json_object_set_new(rec, "would_reject",
                            ctx->would_reject
                            ? json_string(stu_reasons[ctx->would_reject].name)
                            : json_null());
    }

    switch (ngx_strcmp(event, "intent") == 0 ? NGX_HTTP_STU_FORWARDED
                                                : ctx->result)
    {
    case NGX_HTTP_STU_FORWARDED:
        /* an intent record: the POST passed every check and goes now */
        json_object_set_new(rec, "result", json_string("forwarded"));
        json_object_set_new(rec, "reason", json_null());
        break;

    case NGX_HTTP_STU_REJECTED:
        json_object_set_new(rec, "result", json_string("rejected"));
        json_object_set_new(rec, "reason",
                            json_string(stu_reasons[ctx->reason].name));
        break;

    default:
        /* nginx ended it while the body was read: 400, 408, 413, 499 */
        json_object_set_new(rec, "result", json_string("rejected"));
        json_object_set_new(rec, "reason", json_string("request_body_error"));
        break;
    }

    n = ctx->identities ? ctx->identities->nelts : 0;
    json_object_set_new(rec, "identities", json_integer(n));

    tokens = NULL;

    if (ctx->conf->hmac_key && n) {
        if (ngx_http_studio_testusers_tokens(r, ctx, ctx->conf->hmac_key->key,
                                             ctx->conf->hmac_key->len,
                                             &tokens, &n)
            != NGX_OK)
        {
            json_decref(rec);
            return NULL;
        }

        json_object_set_new(rec, "identity_tokens",
                            ngx_http_studio_testusers_token_array(tokens, n));
    }

    if (ctx->conf->audit_raw && ctx->identities) {
        values = json_array();

        for (i = 0; i < ctx->identities->nelts; i++) {
            s = ((ngx_str_t *) ctx->identities->elts)[i];
            json_array_append_new(values,
                                  json_stringn((char *) s.data, s.len));
        }

        json_object_set_new(rec, "identity_values", values);
    }

    if (r->method == NGX_HTTP_POST && ctx->result == NGX_HTTP_STU_FORWARDED) {

        json_object_set_new(rec, "baseline",
                            json_string(ctx->baseline_known ? "known"
                                                            : "unknown"));

        if (ctx->baseline_known) {
            ngx_http_studio_testusers_key_of(r, ctx, &key, &len, key_id);

            if (tokens == NULL
                && ngx_http_studio_testusers_tokens(r, ctx, key, len,
                                                    &tokens, &n)
                   != NGX_OK)
            {
                json_decref(rec);
                return NULL;
            }

            /* both lists are sorted and without duplicates: merge */

            added = ngx_pnalloc(r->pool, (n + 1) * NGX_HTTP_STU_TOKEN_LEN);
            removed = ngx_pnalloc(r->pool, (ctx->baseline_n + 1)
                                           * NGX_HTTP_STU_TOKEN_LEN);
            if (added == NULL || removed == NULL) {
                json_decref(rec);
                return NULL;
            }

            i = 0; j = 0; na = 0; nr = 0;

            while (i < n || j < ctx->baseline_n) {
                if (i == n) {
                    k = 1;

                } else if (j == ctx->baseline_n) {
                    k = 0;

                } else {
                    status = ngx_memcmp(tokens + i * NGX_HTTP_STU_TOKEN_LEN,
                                        ctx->baseline
                                        + j * NGX_HTTP_STU_TOKEN_LEN,
                                        NGX_HTTP_STU_TOKEN_LEN);
                    if (status == 0) {
                        i++; j++;
                        continue;
                    }

                    k = (status > 0);
                }

                if (k == 0) {
                    ngx_memcpy(added + na++ * NGX_HTTP_STU_TOKEN_LEN,
                               tokens + i++ * NGX_HTTP_STU_TOKEN_LEN,
                               NGX_HTTP_STU_TOKEN_LEN);
                } else {
                    ngx_memcpy(removed + nr++ * NGX_HTTP_STU_TOKEN_LEN,
                               ctx->baseline + j++ * NGX_HTTP_STU_TOKEN_LEN,
                               NGX_HTTP_STU_TOKEN_LEN);
                }
            }

            json_object_set_new(rec, "added", json_integer(na));
            json_object_set_new(rec, "removed", json_integer(nr));

            if (ctx->conf->hmac_key) {
                json_object_set_new(rec, "added_tokens",
                          ngx_http_studio_testusers_token_array(added, na));
                json_object_set_new(rec, "removed_tokens",
                          ngx_http_studio_testusers_token_array(removed, nr));
            }
        }
    }

    if (ngx_strcmp(event, "intent") == 0) {
        return rec;
    }

    state = NULL;

    if (r->upstream_states && r->upstream_states->nelts) {
        state = r->upstream_states->elts;
        state += r->upstream_states->nelts - 1;
    }

    json_object_set_new(rec, "upstream_status",
                        (state && state->status)
                        ? json_integer(state->status) : json_null());
    json_object_set_new(rec, "upstream_response_time_ms",
                        (state && state->status)
                        ? json_integer(state->response_time) : json_null());

    status = (ngx_int_t) (r->err_status ? r->err_status
                                        : r->headers_out.status);

    if (status == 0 && r->connection->error) {
        status = 499;
    }

    json_object_set_new(rec, "status", json_integer(status));

    return rec;
}


/* sorted, de-duplicated HMAC-SHA256 digests of the request's identities */

static ngx_int_t
ngx_http_studio_testusers_tokens(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, u_char *key, size_t key_len,
    u_char **out, ngx_uint_t *n)
{
    u_char        *d;
    ngx_str_t     *id;
    ngx_uint_t     i, m;
    unsigned int   len;

    m = ctx->identities ? ctx->identities->nelts : 0;

    d = ngx_pnalloc(r->pool, (m + 1) * NGX_HTTP_STU_TOKEN_LEN);
    if (d == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < m; i++) {
        id = (ngx_str_t *) ctx->identities->elts + i;

        if (HMAC(EVP_sha256(), key, key_len, id->data, id->len,
                 d + i * NGX_HTTP_STU_TOKEN_LEN, &len)
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    *n = ngx_http_studio_testusers_sort_unique(d, m);
    *out = d;

    return NGX_OK;
}


static int
ngx_http_studio_testusers_cmp_digest(const void *a, const void *b)
{
    return ngx_memcmp(a, b, NGX_HTTP_STU_TOKEN_LEN);
}


/* sorts m digests in place, drops repeats, returns how many are left */

static ngx_uint_t
ngx_http_studio_testusers_sort_unique(u_char *d, ngx_uint_t m)
{
    ngx_uint_t  i, n;

    ngx_qsort(d, m, NGX_HTTP_STU_TOKEN_LEN,
              ngx_http_studio_testusers_cmp_digest);

    for (i = 0, n = 0; i < m; i++) {
        if (n && ngx_memcmp(d + (n - 1) * NGX_HTTP_STU_TOKEN_LEN,
                            d + i * NGX_HTTP_STU_TOKEN_LEN,
                            NGX_HTTP_STU_TOKEN_LEN) == 0)
        {
            continue;
        }

        if (n != i) {
            ngx_memmove(d + n * NGX_HTTP_STU_TOKEN_LEN,
                        d + i * NGX_HTTP_STU_TOKEN_LEN,
                        NGX_HTTP_STU_TOKEN_LEN);
        }

        n++;
    }

    return n;
}


static json_t *
ngx_http_studio_testusers_token_array(u_char *digests, ngx_uint_t n)
{
    u_char       hex[NGX_HTTP_STU_TOKEN_LEN * 2];
    json_t      *a;
    ngx_uint_t   i;

    a = json_array();

    for (i = 0; a && i < n; i++) {
        ngx_hex_dump(hex, digests + i * NGX_HTTP_STU_TOKEN_LEN,
                     NGX_HTTP_STU_TOKEN_LEN);
        json_array_append_new(a, json_stringn((char *) hex, sizeof(hex)));
    }

    return a;
}


static ngx_int_t
ngx_http_studio_testusers_audit_write(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, json_t *record)
{
    char                                   *line;
    u_char                                 *buf, *p;
    size_t                                  len;
    ssize_t                                 n;
    ngx_err_t                               err;
    ngx_http_studio_testusers_audit_log_t  *log;
    ngx_http_studio_testusers_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_studio_testusers_module);
    log = ctx->conf->audit;

    line = json_dumps(record, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(record);

    n = -1;
    err = 0;
    len = 0;

    if (line) {
        len = ngx_strlen(line);

        if (log->syslog) {
            buf = ngx_pnalloc(r->pool, sizeof("<255>Jan 01 00:00:00 ") - 1
                                       + ngx_cycle->hostname.len + 1
                                       + log->syslog->tag.len + 2 + len);
            if (buf) {
                p = ngx_syslog_add_header(log->syslog, buf);
                p = ngx_cpymem(p, line, len);
                len = p - buf;
                n = ngx_syslog_send(log->syslog, buf, len);
                err = ngx_socket_errno;
            }

        } else {
            /* one write() per record: O_APPEND keeps workers' lines whole */
            line[len++] = '\n';
            n = ngx_write_fd(log->file->fd, line, len);
            err = ngx_errno;
        }

        free(line);
    }

    if (n == (ssize_t) len && len) {
        ngx_http_studio_testusers_count_audit(smcf->zone, 1);
        return NGX_OK;
    }

    ngx_http_studio_testusers_count_audit(smcf->zone, 0);

    ngx_log_error(NGX_LOG_ERR, r->connection->log, n == -1 ? err : 0,
                  "studio_testusers: audit record to \"%V\" not written "
                  "(%z of %uz bytes)", &log->name, n, len);

    return NGX_ERROR;
}


/* --- learning the last list Twilio returned, from its responses --- */

/* replaces nginx's HTML error page with the JSON one, sent once */

static ngx_int_t
ngx_http_studio_testusers_error_filter(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_uint_t    status;
    ngx_chain_t   out;
    const char   *message;

    if (ctx->error_sent || in == NULL) {
        return NGX_OK;
    }

    ctx->error_sent = 1;

    if (ctx->lock) {
        ngx_http_studio_testusers_unlock(ctx->lock);
        ctx->lock = NULL;
    }

    status = r->headers_out.status;

    switch (status) {

    case NGX_HTTP_BAD_GATEWAY:
        message = "Twilio could not be reached or gave no valid answer";
        break;

    case NGX_HTTP_GATEWAY_TIME_OUT:
        message = "Twilio did not answer in time";
        break;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        message = "Service unavailable";
        break;

    default:
        message = "Internal error in the gateway";
    }

    b = ngx_http_studio_testusers_error_body(r, status, 20000 + status,
                                            message, 0);
    if (b == NULL) {
        return NGX_ERROR;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static ngx_int_t
ngx_http_studio_testusers_header_filter(ngx_http_request_t *r)
{
    ngx_http_studio_testusers_ctx_t  *ctx;

    /* an error response from inside proxy_pass: take the credential back */

    ngx_http_studio_testusers_credentials_recall(r);

    ctx = ngx_http_get_module_ctx(r, ngx_http_studio_testusers_module);

    if (ctx && r == r->main && ctx->result == NGX_HTTP_STU_FORWARDED
        && r->upstream && r->http_version == NGX_HTTP_VERSION_9
        && ctx->http_version != NGX_HTTP_VERSION_9)
    {
        /*
         * proxy passes an answer without a valid status line on as an
         * HTTP/0.9 body; Twilio never sends one: it is a bad gateway
         */

        r->http_version = ctx->http_version;
        r->headers_out.status = NGX_HTTP_BAD_GATEWAY;
        r->headers_out.status_line.len = 0;

        if (r->upstream->state) {
            r->upstream->state->status = NGX_HTTP_BAD_GATEWAY;
        }

        r->upstream->headers_in.status_n = 0;
    }

    if (ctx && r == r->main && ctx->result == NGX_HTTP_STU_FORWARDED
        && r->headers_out.status >= NGX_HTTP_INTERNAL_SERVER_ERROR
        && (r->upstream == NULL || r->upstream->headers_in.status_n == 0))
    {
        /*
         * nginx's own error page for a forwarded request (Twilio refused
         * the connection, timed out, answered garbage): the helper
         * libraries show code and message only from Twilio's shape
         */

        ctx->error_json = 1;
        ctx->capture = 0;

        r->headers_out.content_length_n = -1;

        if (r->headers_out.content_length) {
            r->headers_out.content_length->hash = 0;
            r->headers_out.content_length = NULL;
        }

        r->headers_out.status_line.len = 0;

        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
        r->headers_out.content_type_lowcase = NULL;
        ngx_http_clear_accept_ranges(r);
        ngx_http_clear_last_modified(r);
        ngx_http_clear_etag(r);
    }

    if (ctx && ctx->capture && r == r->main) {

        if (r->headers_out.status != NGX_HTTP_OK
            || r->upstream == NULL
            || (r->headers_out.content_encoding
                && r->headers_out.content_encoding->value.len))
        {
            ctx->capture = 0;

            /* a list we cannot read leaves the baseline unknown */

            if (r->headers_out.status == NGX_HTTP_OK) {
                ngx_http_studio_testusers_baseline_forget(
                    ((ngx_http_studio_testusers_main_conf_t *)
                     ngx_http_get_module_main_conf(r,
                                      ngx_http_studio_testusers_module))->zone,
                    &ctx->flow_sid);
            }
        }
    }

    return ngx_http_next_header_filter(r);
}


static void
ngx_http_studio_testusers_capture(void *data, u_char *p, size_t len)
{
    ngx_http_request_t *r = data;

    size_t                            size;
    ngx_buf_t                        *b, *nb;
    ngx_http_studio_testusers_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_studio_testusers_module);

    if (ctx->capture_failed) {
        return;
    }

    b = ctx->response;

    if (b == NULL || (size_t) (b->end - b->last) < len) {
        size = b ? 2 * (size_t) (b->end - b->start) : 16384;

        while (size < (b ? (size_t) (b->last - b->pos) : 0) + len) {
            size *= 2;
        }

        if (size > NGX_HTTP_STU_RESPONSE_MAX) {
            ctx->capture_failed = 1;
            return;
        }

        nb = ngx_create_temp_buf(r->pool, size);
        if (nb == NULL) {
            ctx->capture_failed = 1;
            return;
        }

        if (b) {
            nb->last = ngx_cpymem(nb->last, b->pos, b->last - b->pos);
        }

        ctx->response = nb;
        b = nb;
    }

    b->last = ngx_cpymem(b->last, p, len);
}


/*
 * Sees the response to a judged request: learns the list from it, and
 * lets the flow's update lock go once the response is complete.
 */

static ngx_int_t
ngx_http_studio_testusers_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t                      *cl;
    ngx_http_studio_testusers_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_studio_testusers_module);

    if (ctx == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->error_json) {
        return ngx_http_studio_testusers_error_filter(r, ctx, in);
    }

    if (ctx->lock) {
        for (cl = in; cl; cl = cl->next) {
            if (cl->buf->last_buf) {
                ngx_http_studio_testusers_unlock(ctx->lock);
                ctx->lock = NULL;
                break;
            }
        }
    }

    if (!ctx->capture) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ngx_http_studio_testusers_chain_read(r, in, &ctx->file_buf,
                                             ngx_http_studio_testusers_capture,
                                             r)
        != NGX_OK)
    {
        ctx->capture_failed = 1;
    }

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->last_buf) {
            ngx_http_studio_testusers_learn(r, ctx);
            break;
        }
    }

    return ngx_http_next_body_filter(r, in);
}


static void
ngx_http_studio_testusers_learn(ngx_http_request_t *r,
    ngx_http_studio_testusers_ctx_t *ctx)
{
    u_char                                 *key, key_id[8], *d;
    size_t                                  len, i, m;
    json_t                                 *root, *sid, *users, *u;
    unsigned int                            dlen;
    ngx_uint_t                              n;
    json_error_t                            error;
    ngx_http_studio_testusers_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_studio_testusers_module);

    root = NULL;

    ctx->capture = 0;

    if (ctx->capture_failed || ctx->response == NULL) {
        goto unknown;
    }

    root = json_loadb((char *) ctx->response->pos,
                      ctx->response->last - ctx->response->pos,
                      JSON_REJECT_DUPLICATES, &error);

    sid = json_object_get(root, "sid");
    users = json_object_get(root, "test_users");

    if (!json_is_string(sid) || !json_is_array(users)
        || json_string_length(sid) != ctx->flow_sid.len
        || ngx_memcmp(json_string_value(sid), ctx->flow_sid.data,
                      ctx->flow_sid.len) != 0)
    {
        goto unknown;
    }

    m = json_array_size(users);

    d = ngx_pnalloc(r->pool, (m + 1) * NGX_HTTP_STU_TOKEN_LEN);
    if (d == NULL) {
        goto unknown;
    }

    ngx_http_studio_testusers_key_of(r, ctx, &key, &len, key_id);

    for (i = 0; i < m; i++) {
        u = json_array_get(users, i);

        if (!json_is_string(u)) {
            goto unknown;
        }

        if (HMAC(EVP_sha256(), key, len, (u_char *) json_string_value(u),
                 json_string_length(u), d + i * NGX_HTTP_STU_TOKEN_LEN, &dlen)
            == NULL)
        {
            goto unknown;
        }
    }

    n = ngx_http_studio_testusers_sort_unique(d, m);

    ngx_http_studio_testusers_baseline_set(smcf->zone, &ctx->flow_sid,
                                           key_id, d, n,
                                           r->connection->log);
    ctx->learned = 1;
    json_decref(root);
    return;

unknown:

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "studio_testusers: upstream answer not understood, "
                  "baseline of \"%V\" forgotten", &ctx->flow_sid);

    ngx_http_studio_testusers_baseline_forget(smcf->zone, &ctx->flow_sid);

    if (root) {
        json_decref(root);
    }
}


ngx_int_t
ngx_http_studio_testusers_audit_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_studio_testusers_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_studio_testusers_body_filter;

    return NGX_OK;
}
