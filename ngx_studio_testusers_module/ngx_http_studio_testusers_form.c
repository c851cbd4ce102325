
/*
 * Copyright (C) ngx_studio_testusers_module authors
 */


#include <stdint.h>
#include <string.h>

#include "ngx_http_studio_testusers_form.h"


#define STU_ONES         0x0101010101010101ULL
#define STU_HIGHS        0x8080808080808080ULL
#define stu_has_zero(v)  (((v) - STU_ONES) & ~(v) & STU_HIGHS)
#define stu_has_byte(w, b)  stu_has_zero((w) ^ (STU_ONES * (b)))


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


/* bytes that end a run of plain value bytes */
static const unsigned char  stu_value_special[256] = {
    ['%'] = 1, ['&'] = 1, ['+'] = 1, ['='] = 1
};


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

    return STU_OK;
}


static stu_reason_e
stu_form_value_end(stu_form_t *f)
{
    stu_reason_e  rc;

    rc = stu_check_identity(f->value, f->value_len);

    if (rc == STU_OK && f->handler) {
        rc = f->handler(f->data, f->value, f->value_len);
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

    return STU_OK;
}


stu_reason_e
stu_form_feed(stu_form_t *f, const unsigned char *p, size_t len)
{
    unsigned char         c, d;
    size_t                n;
    uint64_t              w;
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
            f->state = stu_st_value;
        }

        if (f->state == stu_st_value) {

            /* the hot path: find the end of a run of plain bytes */

            run = p;

            while (end - p >= 8) {
                memcpy(&w, p, 8);

                if (stu_has_byte(w, '%') | stu_has_byte(w, '&')
                    | stu_has_byte(w, '+') | stu_has_byte(w, '='))
                {
                    break;
                }

                p += 8;
            }

            while (p < end && !stu_value_special[*p]) {
                p++;
            }

            n = p - run;

            if (n) {
                if (n > STU_IDENTITY_MAX - f->value_len) {
                    return stu_form_fail(f, STU_IDENTITY_TOO_LONG, 1);
                }

                memcpy(f->value + f->value_len, run, n);
                f->value_len += n;
                f->pair_len += n;

                if (p == end) {
                    break;
                }
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
                    || stu_form_value_end(f) != STU_OK)
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
                rc = stu_form_value_end(f);
                break;

            case '%':
                f->state = stu_st_value_hex1;
                continue;

            case '+':
                rc = stu_form_value_byte(f, ' ');
                break;

            default: /* '=': parsers disagree on it, so refuse it */
                return stu_form_fail(f, STU_MALFORMED_FORM, 1);
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
        if (stu_form_value_end(f) != STU_OK) {
            return f->error;
        }

        break;

    default:
        return stu_form_fail(f, STU_MALFORMED_ESCAPE,
                             f->state >= stu_st_value_hex1);
    }

    return STU_OK;
}
