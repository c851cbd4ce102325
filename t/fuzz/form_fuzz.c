
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * libFuzzer target for the form decoder and the request checks.
 *
 * The first input byte picks how the rest is cut into pieces; the pieces
 * must decode exactly as the whole does.  The whole is also checked
 * against a plain, non-streaming reference decoder written from the
 * specification: reason, position, count and the identities themselves.
 * The same bytes then go through stu_check_path(), stu_check_content_type()
 * and stu_check_identity(), each against its own reference or invariants,
 * and through every implementation of the duplicates hash.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_studio_testusers_form.h"
#include "ngx_http_studio_testusers_hash.h"


#define STU_KEY               "TestUsers"
#define STU_PATH_PREFIX       "/v2/Flows/"
#define STU_PATH_SUFFIX       "/TestUsers"
#define STU_FORM_TYPE         "application/x-www-form-urlencoded"

#define fz_assert(expr)                                                      \
    if (!(expr)) {                                                           \
        fprintf(stderr, "form_fuzz: %s:%d: assertion \"%s\" failed\n",       \
                __FILE__, __LINE__, #expr);                                  \
        abort();                                                             \
    }


typedef struct {
    size_t                 fail_at;    /* the handler call that fails */

    size_t                 calls;
    size_t                 len;
    size_t                 size;
    unsigned char         *seen;       /* identities, each after its length */
} fz_handler_t;


typedef struct {
    stu_reason_e           reason;
    size_t                 position;
    size_t                 identities;
    fz_handler_t           h;
} fz_result_t;


enum {
    FZ_BYTES = 0,
    FZ_SPLIT_HEAD,
    FZ_SPLIT_TAIL,
    FZ_PIECES
};


static void
fz_record(fz_handler_t *h, const unsigned char *p, size_t len)
{
    fz_assert(h->len + sizeof(size_t) + len <= h->size);

    memcpy(h->seen + h->len, &len, sizeof(size_t));
    memcpy(h->seen + h->len + sizeof(size_t), p, len);
    h->len += sizeof(size_t) + len;
}


/*
 * The identity rules, written apart from stu_check_identity(): the
 * well-formed byte sequences of Unicode Table 3-7, then C0, DEL and C1.
 */

static stu_reason_e
fz_ref_identity(const unsigned char *p, size_t len)
{
    size_t    i, n, k;
    unsigned  lo, hi, cp;

    if (len == 0) {
        return STU_IDENTITY_EMPTY;
    }

    if (len > STU_IDENTITY_MAX) {
        return STU_IDENTITY_TOO_LONG;
    }

    for (i = 0; i < len; i += n) {

        if (p[i] < 0x80) {
            if (p[i] < 0x20 || p[i] == 0x7f) {
                return STU_IDENTITY_CONTROL_CHAR;
            }

            n = 1;
            continue;
        }

        lo = 0x80;
        hi = 0xbf;

        if (p[i] >= 0xc2 && p[i] <= 0xdf) {
            n = 2;

        } else if (p[i] == 0xe0) {
            n = 3; lo = 0xa0;

        } else if (p[i] >= 0xe1 && p[i] <= 0xec) {
            n = 3;

        } else if (p[i] == 0xed) {
            n = 3; hi = 0x9f;

        } else if (p[i] >= 0xee && p[i] <= 0xef) {
            n = 3;

        } else if (p[i] == 0xf0) {
            n = 4; lo = 0x90;

        } else if (p[i] >= 0xf1 && p[i] <= 0xf3) {
            n = 4;

        } else if (p[i] == 0xf4) {
            n = 4; hi = 0x8f;

        } else {
            return STU_IDENTITY_INVALID_UTF8;
        }

        if (len - i < n
            || p[i + 1] < lo || p[i + 1] > hi)
        {
            return STU_IDENTITY_INVALID_UTF8;
        }

        for (k = 2; k < n; k++) {
            if (p[i + k] < 0x80 || p[i + k] > 0xbf) {
                return STU_IDENTITY_INVALID_UTF8;
            }
        }

        if (n == 2) {
            cp = (p[i] & 0x1f) << 6 | (p[i + 1] & 0x3f);

            if (cp <= 0x9f) {
                return STU_IDENTITY_CONTROL_CHAR;
            }
        }
    }

    return STU_OK;
}


static int
fz_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/*
 * The form rules over the whole body at once: split on raw '&', then on
 * the first raw '='; the first error in byte order wins.  Key errors
 * carry position 0, value errors the 1-based number of the value.
 */

static stu_reason_e
fz_ref_form(const unsigned char *body, size_t size, size_t fail_at,
    size_t *position, size_t *identities, fz_handler_t *h)
{
    int                   hi, lo;
    size_t                n, vlen, pairs;
    stu_reason_e          rc;
    unsigned char         c, value[STU_IDENTITY_MAX];
    const unsigned char  *p, *end, *pair, *pend, *eq;

    *position = 0;
    *identities = 0;

    if (size == 0) {
        return STU_MISSING_IDENTITIES;
    }

    end = body + size;
    pairs = 0;

    for (pair = body; ; pair = pend + 1) {

        pend = memchr(pair, '&', end - pair);
        if (pend == NULL) {
            pend = end;
        }

        if (pair == pend) {
            /* leading, doubled or trailing '&' */
            return STU_MALFORMED_FORM;
        }

        eq = memchr(pair, '=', pend - pair);

        /* the key */

        n = 0;

        for (p = pair; p < (eq ? eq : pend); p++) {
            c = *p;

            if (c == '%') {
                hi = (p + 1 < end) ? fz_hex(p[1]) : -1;
                lo = (p + 2 < end) ? fz_hex(p[2]) : -1;

                if (hi < 0 || lo < 0) {
                    return STU_MALFORMED_ESCAPE;
                }

                c = (unsigned char) (hi << 4 | lo);
                p += 2;

            } else if (c == '+') {
                c = ' ';
            }

            if (n == sizeof(STU_KEY) - 1 || STU_KEY[n] != c) {
                return STU_UNKNOWN_PARAMETER;
            }

            n++;
        }

        if (n != sizeof(STU_KEY) - 1) {
            return STU_UNKNOWN_PARAMETER;
        }

        /* the value */

        *position = pairs + 1;
        vlen = 0;

        for (p = eq ? eq + 1 : pend; p < pend; p++) {
            c = *p;

            if (c == '=') {
                return STU_MALFORMED_FORM;
            }

            if (c == '%') {
                hi = (p + 1 < end) ? fz_hex(p[1]) : -1;
                lo = (p + 2 < end) ? fz_hex(p[2]) : -1;

                if (hi < 0 || lo < 0) {
                    return STU_MALFORMED_ESCAPE;
                }

                c = (unsigned char) (hi << 4 | lo);
                p += 2;

            } else if (c == '+') {
                c = ' ';
            }

            if (vlen == STU_IDENTITY_MAX) {
                return STU_IDENTITY_TOO_LONG;
            }

            value[vlen++] = c;
        }

        rc = fz_ref_identity(value, vlen);
        if (rc != STU_OK) {
            return rc;
        }

        h->calls++;
        fz_record(h, value, vlen);

        if (h->calls == fail_at) {
            return STU_INTERNAL_ERROR;
        }

        pairs++;
        *identities = pairs;
        *position = 0;

        if (pend == end) {
            return STU_OK;
        }
    }
}


static stu_reason_e
fz_handler(void *data, const unsigned char *p, size_t len)
{
    fz_handler_t  *h;

    h = data;

    fz_assert(len >= 1 && len <= STU_IDENTITY_MAX);
    fz_assert(stu_check_identity(p, len) == STU_OK);
    fz_assert(fz_ref_identity(p, len) == STU_OK);

    h->calls++;
    fz_record(h, p, len);

    return h->calls == h->fail_at ? STU_INTERNAL_ERROR : STU_OK;
}


static void
fz_feed(stu_form_t *f, const unsigned char *p, size_t len, stu_reason_e *err)
{
    stu_reason_e  rc;

    rc = stu_form_feed(f, p, len);

    fz_assert(rc == STU_OK || rc == f->error);

    if (*err == STU_OK) {
        *err = rc;

    } else {
        fz_assert(rc == *err);
    }
}


static void
fz_run(const unsigned char *body, size_t size, int mode, unsigned param,
    size_t fail_at, fz_result_t *r)
{
    size_t         off, n;
    unsigned       rnd;
    stu_form_t     f;
    stu_reason_e   rc, err;

    r->h.fail_at = fail_at;
    r->h.calls = 0;
    r->h.len = 0;

    memset(&f, 0xa5, sizeof(stu_form_t));
    stu_form_init(&f, fz_handler, &r->h);

    err = STU_OK;

    switch (mode) {

    case -1:
        fz_feed(&f, body, size, &err);
        break;

    case FZ_BYTES:
        for (off = 0; off < size; off++) {
            fz_feed(&f, body + off, 1, &err);
        }

        break;

    case FZ_SPLIT_HEAD:
    case FZ_SPLIT_TAIL:
        n = param % (size + 1);

        if (mode == FZ_SPLIT_TAIL) {
            n = size - n;
        }

        fz_feed(&f, body, n, &err);
        fz_feed(&f, body + n, size - n, &err);
        break;

    default: /* FZ_PIECES: pieces of 0 to 16 bytes, empty ones too */
        rnd = param * 2654435761u + 1;

        for (off = 0; off < size; off += n) {
            rnd = rnd * 1103515245u + 12345;
            n = (rnd >> 16) % 17;

            if (n > size - off) {
                n = size - off;
            }

            fz_feed(&f, body + off, n, &err);
        }
    }

    rc = stu_form_finish(&f);

    fz_assert(err == STU_OK || rc == err);
    fz_assert(rc == f.error);

    if (rc == STU_OK) {
        fz_assert(f.bytes == size);
    }

    r->reason = rc;
    r->position = f.position;
    r->identities = f.identities;
}


static void
fz_same(const fz_result_t *a, const fz_result_t *b)
{
    fz_assert(a->reason == b->reason);
    fz_assert(a->position == b->position);
    fz_assert(a->identities == b->identities);
    fz_assert(a->h.calls == b->h.calls);
    fz_assert(a->h.len == b->h.len);
    fz_assert(memcmp(a->h.seen, b->h.seen, a->h.len) == 0);
}


static void
fz_invariants(const fz_result_t *r, size_t size)
{
    fz_assert(r->reason < STU_REASON_LAST);
    fz_assert(r->position == 0 || r->position <= r->identities + 1);
    fz_assert(r->h.calls
              == r->identities + (r->reason == STU_INTERNAL_ERROR));

    switch (r->reason) {

    case STU_OK:
        fz_assert(r->position == 0 && r->identities >= 1);
        fz_assert(r->h.calls == r->identities);
        break;

    case STU_MISSING_IDENTITIES:
        fz_assert(size == 0 && r->position == 0 && r->identities == 0);
        break;

    case STU_UNKNOWN_PARAMETER:
        fz_assert(r->position == 0);
        break;

    case STU_MALFORMED_FORM:
    case STU_MALFORMED_ESCAPE:
        fz_assert(r->position == 0 || r->position == r->identities + 1);
        break;

    case STU_IDENTITY_EMPTY:
    case STU_IDENTITY_TOO_LONG:
    case STU_IDENTITY_INVALID_UTF8:
    case STU_IDENTITY_CONTROL_CHAR:
        fz_assert(r->position == r->identities + 1);
        fz_assert(r->h.calls == r->identities);
        break;

    case STU_INTERNAL_ERROR:
        /* only from our handler */
        fz_assert(r->h.fail_at != 0 && r->h.calls == r->h.fail_at);
        fz_assert(r->position == r->identities + 1);
        break;

    default:
        fz_assert(0 && "a reason the decoder cannot give");
    }
}


static void
fz_form(const unsigned char *body, size_t size, unsigned char seed)
{
    size_t          bufsize;
    unsigned        s;
    unsigned char  *bufs;
    fz_result_t     whole, pieces, ref, other;

    static const stu_scan_e  scanners[] = {
        STU_SCAN_WORD, STU_SCAN_SSE2
    };

    /* each identity is no longer than its raw bytes */
    bufsize = size + (size + 1) * sizeof(size_t);

    bufs = malloc(4 * bufsize + 1);
    fz_assert(bufs != NULL);

    whole.h.seen = bufs;
    pieces.h.seen = bufs + bufsize;
    ref.h.seen = bufs + 2 * bufsize;
    other.h.seen = bufs + 3 * bufsize;
    whole.h.size = pieces.h.size = ref.h.size = other.h.size = bufsize;

    /* every way of scanning plain runs decodes the same */

    fz_assert(stu_form_scanner(scanners[0]));
    fz_run(body, size, -1, 0, 0, &whole);

    for (s = 1; s < sizeof(scanners) / sizeof(scanners[0]); s++) {
        if (stu_form_scanner(scanners[s])) {
            fz_run(body, size, -1, 0, 0, &other);
            fz_same(&whole, &other);
        }
    }

    /* the whole, the reference, the pieces (with the scanner size picks) */

    fz_assert(stu_form_scanner(STU_SCAN_BEST));
    fz_run(body, size, -1, 0, 0, &whole);
    fz_invariants(&whole, size);

    (void) stu_form_scanner(scanners[size % 2]);

    ref.h.fail_at = 0;
    ref.h.calls = 0;
    ref.h.len = 0;
    ref.reason = fz_ref_form(body, size, 0, &ref.position, &ref.identities,
                             &ref.h);
    fz_same(&whole, &ref);

    fz_run(body, size, seed & 3, seed >> 2, 0, &pieces);
    fz_same(&whole, &pieces);

    /* the same with a handler that fails on call 1 to 4 */

    fz_run(body, size, -1, 0, (seed >> 6) + 1, &whole);
    fz_invariants(&whole, size);

    ref.h.fail_at = (seed >> 6) + 1;
    ref.h.calls = 0;
    ref.h.len = 0;
    ref.reason = fz_ref_form(body, size, ref.h.fail_at, &ref.position,
                             &ref.identities, &ref.h);
    fz_same(&whole, &ref);

    fz_run(body, size, seed & 3, seed >> 2, (seed >> 6) + 1, &pieces);
    fz_same(&whole, &pieces);

    fz_assert(stu_form_scanner(STU_SCAN_BEST));

    free(bufs);
}


static int
fz_sid_ok(const unsigned char *p)
{
    size_t  i;

    if (p[0] != 'F' || p[1] != 'W') {
        return 0;
    }

    for (i = 2; i < STU_FLOW_SID_LEN; i++) {
        if (fz_hex(p[i]) < 0) {
            return 0;
        }
    }

    return 1;
}


static void
fz_path(const unsigned char *uri, size_t size)
{
    size_t                plen, full;
    stu_reason_e          rc, expect;
    const unsigned char  *sid, *q;

    full = sizeof(STU_PATH_PREFIX) - 1 + STU_FLOW_SID_LEN
           + sizeof(STU_PATH_SUFFIX) - 1;

    q = memchr(uri, '?', size);
    plen = q ? (size_t) (q - uri) : size;

    expect = STU_PATH_NOT_FOUND;

    if (plen == full
        && memcmp(uri, STU_PATH_PREFIX, sizeof(STU_PATH_PREFIX) - 1) == 0
        && fz_sid_ok(uri + sizeof(STU_PATH_PREFIX) - 1)
        && memcmp(uri + full - (sizeof(STU_PATH_SUFFIX) - 1),
                  STU_PATH_SUFFIX, sizeof(STU_PATH_SUFFIX) - 1) == 0)
    {
        expect = q ? STU_QUERY_STRING : STU_OK;
    }

    sid = NULL;
    rc = stu_check_path(uri, size, &sid);

    fz_assert(rc == expect);

    if (rc != STU_PATH_NOT_FOUND) {
        fz_assert(sid == uri + sizeof(STU_PATH_PREFIX) - 1);
        fz_assert(stu_flow_sid_valid(sid, STU_FLOW_SID_LEN));
    }

    fz_assert(stu_flow_sid_valid(uri, size)
              == (size == STU_FLOW_SID_LEN && fz_sid_ok(uri)));
}


static void
fz_content_type(const unsigned char *p, size_t size)
{
    size_t          i, n;
    stu_reason_e    rc;
    unsigned char   c, *buf;

    static const char  utf8[] = "; charset=UTF-8";
    static const char  latin1[] = ";charset=\"latin1\"";

    rc = stu_check_content_type(p, size);

    fz_assert(rc == STU_OK || rc == STU_CONTENT_TYPE_UNSUPPORTED);

    if (rc != STU_OK) {
        return;
    }

    /* the media type comes first, after optional whitespace */

    for (i = 0; i < size && (p[i] == ' ' || p[i] == '\t'); i++) {
        /* void */
    }

    fz_assert(size - i >= sizeof(STU_FORM_TYPE) - 1);

    for (n = 0; n < sizeof(STU_FORM_TYPE) - 1; n++) {
        c = p[i + n];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        fz_assert(c == (unsigned char) STU_FORM_TYPE[n]);
    }

    /* a further charset decides: UTF-8 stays acceptable, latin1 not */

    buf = malloc(size + sizeof(latin1));
    fz_assert(buf != NULL);

    memcpy(buf, p, size);
    memcpy(buf + size, utf8, sizeof(utf8) - 1);
    fz_assert(stu_check_content_type(buf, size + sizeof(utf8) - 1)
              == STU_OK);

    memcpy(buf + size, latin1, sizeof(latin1) - 1);
    fz_assert(stu_check_content_type(buf, size + sizeof(latin1) - 1)
              == STU_CONTENT_TYPE_UNSUPPORTED);

    free(buf);
}


/* the duplicates hash: every implementation gives the scalar one's value */

static void
fz_hash(const unsigned char *p, size_t size)
{
    size_t                 i;
    uint32_t               want;
    static stu_hash_key_t  key;

    if (key.mix[0] == 0) {
        for (i = 0; i < STU_HASH_NH_WORDS; i++) {
            key.nh[i] = (uint32_t) (i * 0x9e3779b9u + 0x7f4a7c15u);
        }

        key.mix[0] = 0x243f6a8885a308d3ULL;
        key.mix[1] = 0x13198a2e03707344ULL;
    }

    fz_assert(stu_hash_use(STU_HASH_SCALAR));
    want = stu_hash(&key, p, size);

    if (stu_hash_use(STU_HASH_SSE2)) {
        fz_assert(stu_hash(&key, p, size) == want);
    }

    fz_assert(stu_hash_use(STU_HASH_BEST));
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char  seed;

    if (size == 0) {
        return 0;
    }

    seed = data[0];
    data++;
    size--;

    fz_form(data, size, seed);
    fz_path(data, size);
    fz_content_type(data, size);

    fz_assert(stu_check_identity(data, size) == fz_ref_identity(data, size));

    fz_hash(data, size);

    return 0;
}
