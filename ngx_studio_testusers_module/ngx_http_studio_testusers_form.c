
/*
 * Copyright (C) ngx_studio_testusers_module authors
 */


#include <stdint.h>
#include <string.h>

#include "ngx_http_studio_testusers_form.h"

#if (defined __SSE2__)
#define STU_SSE2  1
#include <emmintrin.h>
#endif


#define STU_ONES         0x0101010101010101ULL
#define STU_HIGHS        0x8080808080808080ULL
#define stu_has_zero(v)  (((v) - STU_ONES) & ~(v) & STU_HIGHS)
#define stu_has_byte(w, b)  stu_has_zero((w) ^ (STU_ONES * (b)))

/* a printable ASCII byte, 0x20 to 0x7e: what stu_check_identity() passes */
#define stu_printable(c)  ((unsigned char) ((c) - 0x20) < 0x5f)


#define STU_KEY          "TestUsers"


enum {
    stu_st_key = 0,
    stu_st_key_hex1,
    stu_st_key_hex2,
    stu_st_value,
    stu_st_value_hex1,
    stu_st_value_hex2
};


/* 0xff: not a hex digit */
static const unsigned char  stu_hex[256] = {
#define X 0xff
#define R16 X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X
    R16, R16, R16,
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, X, X, X, X, X, X,
    X, 10, 11, 12, 13, 14, 15, X, X, X, X, X, X, X, X, X,
    R16,
    X, 10, 11, 12, 13, 14, 15, X, X, X, X, X, X, X, X, X,
    R16, R16, R16, R16, R16, R16, R16, R16, R16
#undef R16
#undef X
};


/*
 * A plain byte needs neither decoding nor checking: printable ASCII other
 * than the four the syntax gives a meaning to.  Runs of plain bytes are
 * copied whole; any other byte ends the run and takes the byte path.
 */

static const unsigned char  stu_plain[256] = {
#define N16 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
#define P16 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
    N16, N16,
    1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1,     /*  %&  +     */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1,     /*      =     */
    P16, P16, P16,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,     /*  DEL       */
    N16, N16, N16, N16, N16, N16, N16, N16
#undef N16
#undef P16
};


typedef const unsigned char *(*stu_scan_pt)(const unsigned char *p,
    const unsigned char *end);

static const unsigned char *stu_scan_word(const unsigned char *p,
    const unsigned char *end);
#if (STU_SSE2)
static const unsigned char *stu_scan_sse2(const unsigned char *p,
    const unsigned char *end);
#endif

static stu_scan_pt  stu_scan;


/* returns the first byte of [p, end) that is not plain, or end */

static const unsigned char *
stu_scan_word(const unsigned char *p, const unsigned char *end)
{
    uint64_t  w, del;

    while (end - p >= 8) {
        memcpy(&w, p, 8);
        del = w ^ (STU_ONES * 0x7f);

        /* a byte >= 0x80, < 0x20, 0x7f, or one of "%&+=" */

        if (((w | ((w - STU_ONES * 0x20) & ~w) | ((del - STU_ONES) & ~del))
             & STU_HIGHS)
            | stu_has_byte(w, '%') | stu_has_byte(w, '&')
            | stu_has_byte(w, '+') | stu_has_byte(w, '='))
        {
            break;
        }

        p += 8;
    }

    while (p < end && stu_plain[*p]) {
        p++;
    }

    return p;
}


#if (STU_SSE2)

/*
 * x + 0x60 maps 0x20..0x7e onto -128..-34 as signed bytes and every other
 * byte above -34: one add and one signed compare test printability.
 */

static const unsigned char *
stu_scan_sse2(const unsigned char *p, const unsigned char *end)
{
    int      m;
    __m128i  v, s, bias, lim;

    bias = _mm_set1_epi8(0x60);
    lim = _mm_set1_epi8(-33);

    while (end - p >= 16) {
        v = _mm_loadu_si128((const __m128i *) p);

        s = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('%')),
                                      _mm_cmpeq_epi8(v, _mm_set1_epi8('&'))),
                         _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('+')),
                                      _mm_cmpeq_epi8(v, _mm_set1_epi8('='))));

        m = _mm_movemask_epi8(
                _mm_andnot_si128(s, _mm_cmplt_epi8(_mm_add_epi8(v, bias),
                                                   lim)));
        if (m != 0xffff) {
            return p + __builtin_ctz(~m);
        }

        p += 16;
    }

    while (p < end && stu_plain[*p]) {
        p++;
    }

    return p;
}

#endif


int
stu_form_scanner(stu_scan_e scan)
{
    switch (scan) {

    case STU_SCAN_WORD:
        stu_scan = stu_scan_word;
        return 1;

#if (STU_SSE2)
    case STU_SCAN_SSE2:
        stu_scan = stu_scan_sse2;
        return 1;

#endif

    case STU_SCAN_BEST:
#if (STU_SSE2)
        stu_scan = stu_scan_sse2;
#else
        stu_scan = stu_scan_word;
#endif
        return 1;

    default:
        return 0;
    }
}


/* most runs are an identity's worth: no library call for those */

static void
stu_copy(unsigned char *dst, const unsigned char *src, size_t n)
{
    uint64_t  a, b;

    if (n >= 8 && n <= 16) {
        memcpy(&a, src, 8);
        memcpy(&b, src + n - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + n - 8, &b, 8);
        return;
    }

    memcpy(dst, src, n);
}


static stu_reason_e
stu_form_fail(stu_form_t *f, stu_reason_e reason, int in_value)
{
    f->error = reason;
    f->position = in_value ? f->identities + 1 : 0;

    return reason;
}


void
stu_form_init(stu_form_t *f, stu_form_identity_pt handler, void *data)
{
    memset(f, 0, offsetof(stu_form_t, value));

    f->handler = handler;
    f->data = data;
    f->state = stu_st_key;

    if (stu_scan == NULL) {
        (void) stu_form_scanner(STU_SCAN_BEST);
    }
}


static stu_reason_e
stu_form_key_byte(stu_form_t *f, unsigned char c)
{
    if (f->key_len == sizeof(STU_KEY) - 1 || STU_KEY[f->key_len] != c) {
        return stu_form_fail(f, STU_UNKNOWN_PARAMETER, 0);
    }

    f->key_len++;

    return STU_OK;
}


static stu_reason_e
stu_form_key_end(stu_form_t *f)
{
    if (f->key_len != sizeof(STU_KEY) - 1) {
        return stu_form_fail(f, STU_UNKNOWN_PARAMETER, 0);
    }

    f->value_len = 0;
    f->unusual = 0;

    return STU_OK;
}


/* value: f->value, or a whole plain run in the caller's piece */

static stu_reason_e
stu_form_value_end(stu_form_t *f, const unsigned char *value, size_t len)
{
    stu_reason_e  rc;

    /* a value of printable ASCII passes stu_check_identity() if not empty */

    if (f->unusual) {
        rc = stu_check_identity(value, len);

    } else {
        rc = len ? STU_OK : STU_IDENTITY_EMPTY;
    }

    if (rc == STU_OK && f->handler) {
        rc = f->handler(f->data, value, len);
    }

    if (rc != STU_OK) {
        return stu_form_fail(f, rc, 1);
    }

    f->identities++;
    f->pair_len = 0;
    f->key_len = 0;
    f->state = stu_st_key;

    return STU_OK;
}


static stu_reason_e
stu_form_value_byte(stu_form_t *f, unsigned char c)
{
    if (f->value_len == STU_IDENTITY_MAX) {
        return stu_form_fail(f, STU_IDENTITY_TOO_LONG, 1);
    }

    f->value[f->value_len++] = c;
    f->unusual |= !stu_printable(c);

    return STU_OK;
}


stu_reason_e
stu_form_feed(stu_form_t *f, const unsigned char *p, size_t len)
{
    unsigned char         c, d;
    size_t                n;
    stu_reason_e          rc;
    const unsigned char  *end, *run;

    if (f->error != STU_OK || len == 0) {
        return f->error;
    }

    f->bytes += len;
    end = p + len;

    while (p < end) {

        if (f->state == stu_st_key && f->pair_len == 0
            && end - p > (ptrdiff_t) sizeof(STU_KEY)
            && memcmp(p, STU_KEY "=", sizeof(STU_KEY)) == 0)
        {
            /* the usual key, whole in this piece */

            p += sizeof(STU_KEY);
            f->pair_len = sizeof(STU_KEY);
            f->key_len = sizeof(STU_KEY) - 1;
            f->value_len = 0;
            f->unusual = 0;
            f->state = stu_st_value;
        }

        if (f->state == stu_st_value) {

            /*
             * The hot path: runs of plain bytes and whole escapes, until
             * a byte that needs the state machine, or the piece's end.
             */

            for ( ;; ) {

                if (*p == '%') {
                    if (end - p < 3) {
                        break;
                    }

                    d = stu_hex[p[1]];
                    c = stu_hex[p[2]];

                    if ((d | c) & 0xf0) {
                        return stu_form_fail(f, STU_MALFORMED_ESCAPE, 1);
                    }

                    p += 3;
                    f->pair_len += 3;

                    if (stu_form_value_byte(f, (unsigned char) (d << 4 | c))
                        != STU_OK)
                    {
                        return f->error;
                    }

                    if (p == end) {
                        break;
                    }

                    continue;
                }

                run = p;
                p = stu_scan(p, end);
                n = p - run;

                if (n) {
                    if (n > STU_IDENTITY_MAX - f->value_len) {
                        return stu_form_fail(f, STU_IDENTITY_TOO_LONG, 1);
                    }

                    if (f->value_len == 0 && p < end && *p == '&') {

                        /* a whole value of plain bytes: used in place */

                        p++;

                        if (stu_form_value_end(f, run, n) != STU_OK) {
                            return f->error;
                        }

                        break;
                    }

                    stu_copy(f->value + f->value_len, run, n);
                    f->value_len += n;
                    f->pair_len += n;
                }

                if (p == end || *p != '%') {
                    break;
                }
            }

            if (p == end) {
                break;
            }

            if (f->state != stu_st_value) {
                continue;
            }

            if (*p == '&') {

                /* the usual end of a value */

                p++;

                if (stu_form_value_end(f, f->value, f->value_len) != STU_OK) {
                    return f->error;
                }

                continue;
            }
        }

        c = *p++;
        f->pair_len++;

        switch (f->state) {

        case stu_st_key:
            switch (c) {

            case '&':
                if (f->pair_len == 1) {
                    return stu_form_fail(f, STU_MALFORMED_FORM, 0);
                }

                /* "TestUsers&": a key without a value */

                if (stu_form_key_end(f) != STU_OK
                    || stu_form_value_end(f, f->value, f->value_len) != STU_OK)
                {
                    return f->error;
                }

                continue;

            case '=':
                if (stu_form_key_end(f) != STU_OK) {
                    return f->error;
                }

                f->state = stu_st_value;
                continue;

            case '%':
                f->state = stu_st_key_hex1;
                continue;

            case '+':
                c = ' ';
                break;
            }

            rc = stu_form_key_byte(f, c);
            break;

        case stu_st_key_hex1:
        case stu_st_value_hex1:
            d = stu_hex[c];

            if (d == 0xff) {
                return stu_form_fail(f, STU_MALFORMED_ESCAPE,
                                     f->state == stu_st_value_hex1);
            }

            f->hi = d;
            f->state++;
            continue;

        case stu_st_key_hex2:
        case stu_st_value_hex2:
            d = stu_hex[c];

            if (d == 0xff) {
                return stu_form_fail(f, STU_MALFORMED_ESCAPE,
                                     f->state == stu_st_value_hex2);
            }

            c = (unsigned char) (f->hi << 4 | d);

            if (f->state == stu_st_key_hex2) {
                f->state = stu_st_key;
                rc = stu_form_key_byte(f, c);

            } else {
                f->state = stu_st_value;
                rc = stu_form_value_byte(f, c);
            }

            break;

        default: /* stu_st_value */
            switch (c) {

            case '&':
                rc = stu_form_value_end(f, f->value, f->value_len);
                break;

            case '%':
                /* an escape cut by the piece's end */
                f->state = stu_st_value_hex1;
                continue;

            case '+':
                rc = stu_form_value_byte(f, ' ');
                break;

            case '=':
                /* parsers disagree on it, so refuse it */
                return stu_form_fail(f, STU_MALFORMED_FORM, 1);

            default:
                /* a control byte or raw non-ASCII: checked at the end */
                rc = stu_form_value_byte(f, c);
            }

            break;
        }

        if (rc != STU_OK) {
            return rc;
        }
    }

    return STU_OK;
}


stu_reason_e
stu_form_finish(stu_form_t *f)
{
    if (f->error != STU_OK) {
        return f->error;
    }

    switch (f->state) {

    case stu_st_key:
        if (f->bytes == 0) {
            return stu_form_fail(f, STU_MISSING_IDENTITIES, 0);
        }

        if (f->pair_len == 0) {
            /* a trailing "&" */
            return stu_form_fail(f, STU_MALFORMED_FORM, 0);
        }

        if (stu_form_key_end(f) != STU_OK) {
            return f->error;
        }

        /* fall through */

    case stu_st_value:
        if (stu_form_value_end(f, f->value, f->value_len) != STU_OK) {
            return f->error;
        }

        break;

    default:
        return stu_form_fail(f, STU_MALFORMED_ESCAPE,
                             f->state >= stu_st_value_hex1);
    }

    return STU_OK;
}
