
/*
 * Copyright (C) ngx_studio_testusers_module authors
 */


#include <stdint.h>
#include <string.h>

#if (defined __SSE2__)
#include <emmintrin.h>
#endif

#include "ngx_http_studio_testusers_validate.h"


/* word-at-a-time byte tests: a byte below n, a byte equal to 0 */
#define STU_ONES              0x0101010101010101ULL
#define STU_HIGHS             0x8080808080808080ULL


#define STU_PATH_PREFIX       "/v2/Flows/"
#define STU_PATH_SUFFIX       "/TestUsers"
#define STU_FORM_TYPE         "application/x-www-form-urlencoded"

#define stu_lower(c)          ((c) >= 'A' && (c) <= 'Z' ? (c) | 0x20 : (c))


const stu_reason_t  stu_reasons[STU_REASON_LAST] = {
    { "", 200, 0, "" },
    { "path_not_found", 404, 20404,
      "The requested resource was not found" },
    { "query_string", 400, 20001,
      "Query parameters are not accepted on this resource" },
    { "method_not_allowed", 405, 20004,
      "Method not allowed: use GET or POST" },
    { "get_with_body", 400, 20001,
      "A GET request must not carry a body" },
    { "content_type_unsupported", 415, 20001,
      "Content-Type must be application/x-www-form-urlencoded "
      "or application/json" },
    { "content_type_duplicate", 400, 20001,
      "More than one Content-Type header" },
    { "malformed_escape", 400, 20001,
      "Malformed percent-escape in the post body" },
    { "malformed_form", 400, 20001,
      "Malformed form body: empty field or unescaped '=' in a value" },
    { "unknown_parameter", 400, 20001,
      "Unknown parameter in the post body: only TestUsers is accepted" },
    { "missing_identities", 400, 20001,
      "Missing required parameter TestUsers in the post body" },
    { "identity_empty", 400, 20001,
      "TestUsers value %u is empty" },
    { "identity_too_long", 400, 20001,
      "TestUsers value %u is longer than 300 bytes" },
    { "identity_invalid_utf8", 400, 20001,
      "TestUsers value %u is not valid UTF-8" },
    { "identity_control_char", 400, 20001,
      "TestUsers value %u contains a control character" },
    { "internal_error", 500, 20500,
      "Internal error in the gateway" },
    { "audit_unavailable", 503, 20503,
      "The audit log cannot be written: change refused" },
    { "malformed_json", 400, 20001,
      "Malformed JSON body: expected an object whose only member "
      "TestUsers is an array of strings" },
    { "team_unknown", 403, 20403,
      "No policy allows this team to use the gateway" },
    { "flow_not_allowed", 403, 20403,
      "This team may not use this flow" },
    { "method_not_permitted", 403, 20403,
      "This team may not use this method" },
    { "identity_pattern", 400, 20001,
      "TestUsers value %u does not match any pattern this team may use" },
    { "too_many_identities", 400, 20001,
      "TestUsers value %u is more than this team may set" },
    { "duplicate_identity", 400, 20001,
      "TestUsers value %u repeats an earlier value" },
    { "update_in_progress", 409, 20409,
      "Another update of this flow's test users is in progress" },
    { "json_too_large", 413, 20413,
      "JSON body larger than 1 MB" },
    { "zone_full", 503, 20503,
      "The gateway cannot take more updates at once: try again later" },
};


#if (defined __SSE2__)

/* 32 hex digits, 16 at a time: '0'-'9', or 'a'-'f' once bit 0x20 is set */

static int
stu_hex32(const unsigned char *p)
{
    int      i;
    __m128i  v, w, bad;

    bad = _mm_setzero_si128();

    for (i = 0; i < 32; i += 16) {
        v = _mm_loadu_si128((const __m128i *) (p + i));
        w = _mm_or_si128(v, _mm_set1_epi8(0x20));

        /* x + (0x80 - first) < -128 + count: x is in [first, first+count) */

        bad = _mm_or_si128(bad, _mm_andnot_si128(
                _mm_or_si128(
                    _mm_cmplt_epi8(_mm_add_epi8(v, _mm_set1_epi8(0x50)),
                                   _mm_set1_epi8(-118)),
                    _mm_cmplt_epi8(_mm_add_epi8(w, _mm_set1_epi8(0x1f)),
                                   _mm_set1_epi8(-122))),
                _mm_set1_epi8(-1)));
    }

    return _mm_movemask_epi8(bad) == 0;
}

#else

static const unsigned char  stu_hexdigit[256] = {
#define N16 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
    N16, N16, N16,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    N16,
    0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    N16, N16, N16, N16, N16, N16, N16, N16, N16
#undef N16
};


static int
stu_hex32(const unsigned char *p)
{
    int       i;
    unsigned  ok;

    /* no early exit: every request has one, and most are valid */

    ok = 1;

    for (i = 0; i < 32; i++) {
        ok &= stu_hexdigit[p[i]];
    }

    return ok;
}

#endif


int
stu_flow_sid_valid(const unsigned char *p, size_t len)
{
    if (len != STU_FLOW_SID_LEN || p[0] != 'F' || p[1] != 'W') {
        return 0;
    }

    return stu_hex32(p + 2);
}


stu_reason_e
stu_check_path(const unsigned char *uri, size_t len,
    const unsigned char **sid)
{
    size_t                plen;
    const unsigned char  *q;

    q = memchr(uri, '?', len);
    plen = q ? (size_t) (q - uri) : len;

    /* exact bytes: escapes, "//", dot segments, ";" all fail here */

    if (plen != sizeof(STU_PATH_PREFIX) - 1 + STU_FLOW_SID_LEN
                + sizeof(STU_PATH_SUFFIX) - 1
        || memcmp(uri, STU_PATH_PREFIX, sizeof(STU_PATH_PREFIX) - 1) != 0
        || memcmp(uri + plen - (sizeof(STU_PATH_SUFFIX) - 1),
                  STU_PATH_SUFFIX, sizeof(STU_PATH_SUFFIX) - 1) != 0
        || !stu_flow_sid_valid(uri + sizeof(STU_PATH_PREFIX) - 1,
                               STU_FLOW_SID_LEN))
    {
        return STU_PATH_NOT_FOUND;
    }

    *sid = uri + sizeof(STU_PATH_PREFIX) - 1;

    return q ? STU_QUERY_STRING : STU_OK;
}


static int
stu_is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
        || (c >= 'A' && c <= 'Z'))
    {
        return 1;
    }

    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}


static const unsigned char *
stu_skip_ows(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    return p;
}


static int
stu_equal_nocase(const unsigned char *p, size_t len, const char *s)
{
    size_t  i;

    if (len != strlen(s)) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (stu_lower(p[i]) != (unsigned char) s[i]) {
            return 0;
        }
    }

    return 1;
}


/*
 * media-type = type "/" subtype *( OWS ";" OWS [ token "=" value ] );
 * a charset parameter, if present, must name UTF-8: identities are
 * checked as UTF-8 and Twilio reads them so.
 */

static stu_reason_e
stu_check_media_type(const unsigned char *p, size_t len, const char *type)
{
    const unsigned char  *end, *name, *value;
    size_t                nlen, vlen;
    int                   escaped;

    nlen = strlen(type);

    /* what clients send, byte for byte */

    if (len == nlen && memcmp(p, type, nlen) == 0) {
        return STU_OK;
    }

    end = p + len;
    p = stu_skip_ows(p, end);

    if ((size_t) (end - p) < nlen || !stu_equal_nocase(p, nlen, type)) {
        return STU_CONTENT_TYPE_UNSUPPORTED;
    }

    p += nlen;

    for ( ;; ) {
        p = stu_skip_ows(p, end);

        if (p == end) {
            return STU_OK;
        }

        if (*p++ != ';') {
            return STU_CONTENT_TYPE_UNSUPPORTED;
        }

        p = stu_skip_ows(p, end);

        if (p == end || *p == ';') {
            continue;
        }

        name = p;
        while (p < end && stu_is_tchar(*p)) {
            p++;
        }

        nlen = p - name;

        if (nlen == 0 || p == end || *p++ != '=') {
            return STU_CONTENT_TYPE_UNSUPPORTED;
        }

        escaped = 0;

        if (p < end && *p == '"') {
            value = ++p;

            while (p < end && *p != '"') {
                if (*p == '\\') {
                    escaped = 1;
                    if (++p == end) {
                        return STU_CONTENT_TYPE_UNSUPPORTED;
                    }
                }

                p++;
            }

            if (p == end) {
                return STU_CONTENT_TYPE_UNSUPPORTED;
            }

            vlen = p++ - value;

        } else {
            value = p;
            while (p < end && stu_is_tchar(*p)) {
                p++;
            }

            vlen = p - value;

            if (vlen == 0) {
                return STU_CONTENT_TYPE_UNSUPPORTED;
            }
        }

        if (stu_equal_nocase(name, nlen, "charset")
            && (escaped || !stu_equal_nocase(value, vlen, "utf-8")))
        {
            return STU_CONTENT_TYPE_UNSUPPORTED;
        }
    }
}


stu_reason_e
stu_check_content_type(const unsigned char *p, size_t len)
{
    return stu_check_media_type(p, len, STU_FORM_TYPE);
}


stu_body_kind_e
stu_content_type_kind(const unsigned char *p, size_t len)
{
    if (stu_check_media_type(p, len, STU_FORM_TYPE) == STU_OK) {
        return STU_BODY_FORM;
    }

    if (stu_check_media_type(p, len, "application/json") == STU_OK) {
        return STU_BODY_JSON;
    }

    return STU_BODY_OTHER;
}


/*
 * RFC 3629 UTF-8 without overlong forms or surrogates; control characters
 * are C0, DEL and C1: none belongs in a phone number or a chat identity,
 * and they would corrupt logs and Twilio's own consoles.
 *
 * The form decoder does not call this for values of printable ASCII only
 * (1 to STU_IDENTITY_MAX bytes of 0x20-0x7e), which must all pass here;
 * t/unit/form_test.c and the fuzz target would fail if that changed.
 */

stu_reason_e
stu_check_identity(const unsigned char *p, size_t len)
{
    uint64_t              w, del;
    const unsigned char  *end;
    unsigned              c, n, cp, min;

    if (len == 0) {
        return STU_IDENTITY_EMPTY;
    }

    if (len > STU_IDENTITY_MAX) {
        return STU_IDENTITY_TOO_LONG;
    }

    end = p + len;

    while (p < end) {

        /* eight printable ASCII bytes at a time: the common case */

        if (end - p >= 8) {
            memcpy(&w, p, 8);
            del = w ^ (STU_ONES * 0x7f);

            /* no byte >= 0x80, none below 0x20, none equal to 0x7f */

            if (((w | ((w - STU_ONES * 0x20) & ~w) | ((del - STU_ONES) & ~del))
                 & STU_HIGHS) == 0)
            {
                p += 8;
                continue;
            }
        }

        c = *p++;

        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) {
                return STU_IDENTITY_CONTROL_CHAR;
            }

            continue;
        }

        if (c >= 0xc2 && c <= 0xdf) {
            n = 1; cp = c & 0x1f; min = 0x80;

        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2; cp = c & 0x0f; min = 0x800;

        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3; cp = c & 0x07; min = 0x10000;

        } else {
            return STU_IDENTITY_INVALID_UTF8;
        }

        if ((size_t) (end - p) < n) {
            return STU_IDENTITY_INVALID_UTF8;
        }

        while (n--) {
            c = *p++;

            if ((c & 0xc0) != 0x80) {
                return STU_IDENTITY_INVALID_UTF8;
            }

            cp = (cp << 6) | (c & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return STU_IDENTITY_INVALID_UTF8;
        }

        if (cp >= 0x80 && cp <= 0x9f) {
            return STU_IDENTITY_CONTROL_CHAR;
        }
    }

    return STU_OK;
}
