
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * Unit tests of the streaming form decoder.  Every case is decoded whole,
 * then in every two-piece split and byte by byte (with empty pieces in
 * between): all must give the same reason, position, identity count and
 * the same identities, byte for byte, handed to the handler in order.
 */


#include <stdlib.h>
#include <string.h>

#include "ngx_http_studio_testusers_form.h"
#include "tap.h"


#define T_SEEN_MAX     8192
#define T_BODY_MAX     16384
#define T_IDVAL        200

#define L(s)           s, sizeof(s) - 1


typedef struct {
    size_t                 fail_at;    /* the call that fails, 1-based */
    stu_reason_e           fail_rc;

    size_t                 calls;
    size_t                 bad;        /* calls with a value no identity */
    size_t                 len;
    unsigned char          seen[T_SEEN_MAX];   /* joined with '\n' */
} t_handler_t;


typedef struct {
    stu_reason_e           reason;
    size_t                 position;
    size_t                 identities;
    size_t                 bytes;
    const char            *broken;     /* an API contract broken */
    t_handler_t            h;
} t_result_t;


typedef struct {
    const char            *name;
    const char            *body;
    size_t                 len;
    stu_reason_e           reason;
    size_t                 position;
    size_t                 identities;
    const char            *expect;     /* identities joined with '\n' */
    size_t                 elen;
} t_case_t;


enum {
    T_WHOLE = 0,
    T_SPLIT,
    T_BYTES
};


static const t_case_t  t_cases[] = {

    /* what the official clients send */

    { "one phone number, '+' escaped as the helper libraries do",
      L("TestUsers=%2B15555550100"),
      STU_OK, 0, 1, L("+15555550100") },

    { "phone, client and whatsapp identities",
      L("TestUsers=%2B15555550100&TestUsers=client%3Aalice"
        "&TestUsers=whatsapp%3A%2B15555550101"),
      STU_OK, 0, 3,
      L("+15555550100\nclient:alice\nwhatsapp:+15555550101") },

    { "space sent as '+'",
      L("TestUsers=client%3Aalice+smith"),
      STU_OK, 0, 1, L("client:alice smith") },

    { "space sent as %20",
      L("TestUsers=client%3Aalice%20smith"),
      STU_OK, 0, 1, L("client:alice smith") },

    { "a raw '+' is a space, not a plus",
      L("TestUsers=+15555550100"),
      STU_OK, 0, 1, L(" 15555550100") },

    { "lower-case hex digits",
      L("TestUsers=whatsapp%3a%2b15555550101"),
      STU_OK, 0, 1, L("whatsapp:+15555550101") },

    { "reserved bytes left unescaped",
      L("TestUsers=client:alice/b?c;d@e,f!g$h'i(j)k*l~m#n"),
      STU_OK, 0, 1, L("client:alice/b?c;d@e,f!g$h'i(j)k*l~m#n") },

    { "every byte escaped",
      L("TestUsers=%63%6C%69%65%6E%74%3A%61"),
      STU_OK, 0, 1, L("client:a") },

    { "escaped '%', '&', '=' and '+' are data",
      L("TestUsers=%25%26%3D%2B"),
      STU_OK, 0, 1, L("%&=+") },

    { "duplicate identities are all delivered",
      L("TestUsers=%2B1&TestUsers=%2B1"),
      STU_OK, 0, 2, L("+1\n+1") },

    { "one-byte identity",
      L("TestUsers=a"),
      STU_OK, 0, 1, L("a") },

    { "an identity of one space",
      L("TestUsers=+&TestUsers=%20"),
      STU_OK, 0, 2, L(" \n ") },

    { "raw two-byte UTF-8",
      L("TestUsers=client%3Ajos\xC3\xA9"),
      STU_OK, 0, 1, L("client:jos\xC3\xA9") },

    { "escaped two-byte UTF-8",
      L("TestUsers=client%3Ajos%C3%A9"),
      STU_OK, 0, 1, L("client:jos\xC3\xA9") },

    { "UTF-8 sequence half raw, half escaped",
      L("TestUsers=jos\xC3%A9&TestUsers=%E2\x82%AC"),
      STU_OK, 0, 2, L("jos\xC3\xA9\n\xE2\x82\xAC") },

    { "raw three-byte UTF-8",
      L("TestUsers=\xE2\x82\xAC"),
      STU_OK, 0, 1, L("\xE2\x82\xAC") },

    { "raw four-byte UTF-8 emoji",
      L("TestUsers=client%3A\xF0\x9F\x98\x80"),
      STU_OK, 0, 1, L("client:\xF0\x9F\x98\x80") },

    { "escaped four-byte UTF-8 emoji",
      L("TestUsers=client%3A%F0%9F%98%80"),
      STU_OK, 0, 1, L("client:\xF0\x9F\x98\x80") },

    { "U+00A0, the first code point after C1",
      L("TestUsers=%C2%A0"),
      STU_OK, 0, 1, L("\xC2\xA0") },

    { "U+07FF and U+0800",
      L("TestUsers=%DF%BF%E0%A0%80"),
      STU_OK, 0, 1, L("\xDF\xBF\xE0\xA0\x80") },

    { "U+D7FF and U+E000 around the surrogates",
      L("TestUsers=%ED%9F%BF%EE%80%80"),
      STU_OK, 0, 1, L("\xED\x9F\xBF\xEE\x80\x80") },

    { "U+FFFF and U+10000",
      L("TestUsers=%EF%BF%BF%F0%90%80%80"),
      STU_OK, 0, 1, L("\xEF\xBF\xBF\xF0\x90\x80\x80") },

    { "U+10FFFF, the last code point",
      L("TestUsers=%F4%8F%BF%BF"),
      STU_OK, 0, 1, L("\xF4\x8F\xBF\xBF") },

    { "U+007E, the last printable ASCII",
      L("TestUsers=%7E+%20"),
      STU_OK, 0, 1, L("~  ") },

    { "key with an escaped letter: Test%55sers",
      L("Test%55sers=a"),
      STU_OK, 0, 1, L("a") },

    { "key escaped entirely",
      L("%54%65%73%74%55%73%65%72%73=a&%54estUsers=b"),
      STU_OK, 0, 2, L("a\nb") },

    /* missing, empty and malformed */

    { "empty body",
      L(""),
      STU_MISSING_IDENTITIES, 0, 0, L("") },

    { "a lone '&'",
      L("&"),
      STU_MALFORMED_FORM, 0, 0, L("") },

    { "'&&'",
      L("&&"),
      STU_MALFORMED_FORM, 0, 0, L("") },

    { "leading '&'",
      L("&TestUsers=a"),
      STU_MALFORMED_FORM, 0, 0, L("") },

    { "trailing '&'",
      L("TestUsers=a&"),
      STU_MALFORMED_FORM, 0, 1, L("a") },

    { "empty pair in the middle",
      L("TestUsers=a&&TestUsers=b"),
      STU_MALFORMED_FORM, 0, 1, L("a") },

    { "raw '=' in the first value",
      L("TestUsers=a=b"),
      STU_MALFORMED_FORM, 1, 0, L("") },

    { "raw '=' first in a value",
      L("TestUsers==a"),
      STU_MALFORMED_FORM, 1, 0, L("") },

    { "raw '=' last in a value",
      L("TestUsers=a="),
      STU_MALFORMED_FORM, 1, 0, L("") },

    { "raw '=' in the second value",
      L("TestUsers=a&TestUsers=b=c"),
      STU_MALFORMED_FORM, 2, 1, L("a") },

    { "raw '=' is seen before a control char in the same value",
      L("TestUsers=a%00=b"),
      STU_MALFORMED_FORM, 1, 0, L("") },

    { "key without '=' at the end",
      L("TestUsers"),
      STU_IDENTITY_EMPTY, 1, 0, L("") },

    { "key with '=' and nothing after",
      L("TestUsers="),
      STU_IDENTITY_EMPTY, 1, 0, L("") },

    { "key without '=' before '&'",
      L("TestUsers&TestUsers=a"),
      STU_IDENTITY_EMPTY, 1, 0, L("") },

    { "empty value before '&'",
      L("TestUsers=&TestUsers=a"),
      STU_IDENTITY_EMPTY, 1, 0, L("") },

    { "second value empty at the end",
      L("TestUsers=a&TestUsers="),
      STU_IDENTITY_EMPTY, 2, 1, L("a") },

    { "second key without '=' at the end",
      L("TestUsers=a&TestUsers"),
      STU_IDENTITY_EMPTY, 2, 1, L("a") },

    /* keys */

    { "key in lower case",
      L("testusers=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "key in upper case",
      L("TESTUSERS=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "key TestUsers[]",
      L("TestUsers[]=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "key TestUsers%5B%5D",
      L("TestUsers%5B%5D=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "key TestUser",
      L("TestUser=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "key TestUsersX",
      L("TestUsersX=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "key with an escaped NUL",
      L("TestUsers%00=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "key with a '+' space",
      L("Test+Users=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "key with a %20 space",
      L("Test%20Users=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "key with an escaped '=' is not a separator",
      L("TestUsers%3Da"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "key with an escaped '&' is not a separator",
      L("TestUsers%26TestUsers=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "key Test%75sers decodes to Testusers",
      L("Test%75sers=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "empty key",
      L("=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "a lone '='",
      L("="),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "another parameter",
      L("To=%2B15555550100"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "another parameter after an identity",
      L("TestUsers=a&To=b"),
      STU_UNKNOWN_PARAMETER, 0, 1, L("a") },

    { "body ends inside a short key",
      L("TestUser"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "body ends inside the second key",
      L("TestUsers=a&T"),
      STU_UNKNOWN_PARAMETER, 0, 1, L("a") },

    { "leading space",
      L(" TestUsers=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    { "leading UTF-8 byte order mark",
      L("\xEF\xBB\xBFTestUsers=a"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },

    /* escapes */

    { "'%' at the end of a value",
      L("TestUsers=%"),
      STU_MALFORMED_ESCAPE, 1, 0, L("") },

    { "'%' and one digit at the end of a value",
      L("TestUsers=%2"),
      STU_MALFORMED_ESCAPE, 1, 0, L("") },

    { "non-hex first digit",
      L("TestUsers=%G1"),
      STU_MALFORMED_ESCAPE, 1, 0, L("") },

    { "non-hex second digit",
      L("TestUsers=%2G"),
      STU_MALFORMED_ESCAPE, 1, 0, L("") },

    { "'%%'",
      L("TestUsers=%%41"),
      STU_MALFORMED_ESCAPE, 1, 0, L("") },

    { "'%+'",
      L("TestUsers=%+1"),
      STU_MALFORMED_ESCAPE, 1, 0, L("") },

    { "'%' and '&'",
      L("TestUsers=%&TestUsers=a"),
      STU_MALFORMED_ESCAPE, 1, 0, L("") },

    { "%u00e9 is not an escape",
      L("TestUsers=%u00e9"),
      STU_MALFORMED_ESCAPE, 1, 0, L("") },

    { "bad escape in the second value",
      L("TestUsers=a&TestUsers=%zz"),
      STU_MALFORMED_ESCAPE, 2, 1, L("a") },

    { "'%' at the end of the second value",
      L("TestUsers=a&TestUsers=b%"),
      STU_MALFORMED_ESCAPE, 2, 1, L("a") },

    { "a lone '%'",
      L("%"),
      STU_MALFORMED_ESCAPE, 0, 0, L("") },

    { "'%' at the end of a key",
      L("Test%"),
      STU_MALFORMED_ESCAPE, 0, 0, L("") },

    { "'%' and one digit at the end of a key",
      L("Test%5"),
      STU_MALFORMED_ESCAPE, 0, 0, L("") },

    { "non-hex first digit in a key",
      L("Test%Z5sers=a"),
      STU_MALFORMED_ESCAPE, 0, 0, L("") },

    { "non-hex second digit in a key",
      L("Test%5Zsers=a"),
      STU_MALFORMED_ESCAPE, 0, 0, L("") },

    { "bad escape in the second key",
      L("TestUsers=a&%"),
      STU_MALFORMED_ESCAPE, 0, 1, L("a") },

    /* control characters */

    { "escaped NUL",
      L("TestUsers=a%00b"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "escaped U+0001",
      L("TestUsers=%01"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "escaped tab",
      L("TestUsers=a%09"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "escaped CR LF, a header injection",
      L("TestUsers=a%0D%0ASet-Cookie:+x"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "escaped ESC",
      L("TestUsers=%1B[31m"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "escaped U+001F",
      L("TestUsers=%1F"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "escaped DEL",
      L("TestUsers=%7F"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "raw NUL",
      L("TestUsers=a\0b"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "raw tab",
      L("TestUsers=a\tb"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "raw LF",
      L("TestUsers=a\nb"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "raw DEL",
      L("TestUsers=a\x7F"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "escaped U+0080 (C2 80)",
      L("TestUsers=%C2%80"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "escaped U+0085 NEL (C2 85)",
      L("TestUsers=a%C2%85"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "escaped U+009F (C2 9F)",
      L("TestUsers=%C2%9F"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "raw U+0080 (C2 80)",
      L("TestUsers=\xC2\x80"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "control char in the second value",
      L("TestUsers=a&TestUsers=b%00c"),
      STU_IDENTITY_CONTROL_CHAR, 2, 1, L("a") },

    { "a refused identity never reaches the handler",
      L("TestUsers=a&TestUsers=%00&TestUsers=c"),
      STU_IDENTITY_CONTROL_CHAR, 2, 1, L("a") },

    /* UTF-8 */

    { "overlong NUL C0 80, escaped",
      L("TestUsers=%C0%80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "overlong NUL C0 80, raw",
      L("TestUsers=\xC0\x80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "overlong C1 BF",
      L("TestUsers=%C1%BF"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "overlong E0 80 80",
      L("TestUsers=%E0%80%80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "overlong E0 9F BF",
      L("TestUsers=%E0%9F%BF"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "overlong F0 80 80 80",
      L("TestUsers=%F0%80%80%80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "overlong F0 8F BF BF",
      L("TestUsers=%F0%8F%BF%BF"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "surrogate ED A0 80, escaped",
      L("TestUsers=%ED%A0%80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "surrogate ED A0 80, raw",
      L("TestUsers=\xED\xA0\x80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "surrogate ED BF BF",
      L("TestUsers=%ED%BF%BF"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "surrogate pair in CESU-8",
      L("TestUsers=%ED%A0%BD%ED%B8%80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "U+110000 F4 90 80 80, escaped",
      L("TestUsers=%F4%90%80%80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "U+110000 F4 90 80 80, raw",
      L("TestUsers=\xF4\x90\x80\x80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "lead byte F5",
      L("TestUsers=%F5%80%80%80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "five-byte form F8",
      L("TestUsers=%F8%88%80%80%80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "byte FE",
      L("TestUsers=%FE"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "byte FF",
      L("TestUsers=a\xFF"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "lone continuation byte 80",
      L("TestUsers=%80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "lone continuation byte BF after ASCII",
      L("TestUsers=a\xBF"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "extra continuation byte after an emoji",
      L("TestUsers=%F0%9F%98%80%80"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "truncated two-byte sequence at the end",
      L("TestUsers=jos%C3"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "truncated three-byte sequence at the end",
      L("TestUsers=%E2%82"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "truncated four-byte sequence at the end, raw",
      L("TestUsers=\xF0\x9F\x98"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "truncated sequence before '&'",
      L("TestUsers=%C3&TestUsers=%A9"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "three-byte sequence cut by ASCII",
      L("TestUsers=%E2%82A"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "lead byte followed by a lead byte",
      L("TestUsers=%C3%C3%A9"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "invalid UTF-8 in the second value",
      L("TestUsers=ok&TestUsers=%C0%80"),
      STU_IDENTITY_INVALID_UTF8, 2, 1, L("ok") },

    /* the first error wins */

    { "control char before bad UTF-8 in a value",
      L("TestUsers=%00%C0%80"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "bad UTF-8 before a control char in a value",
      L("TestUsers=%C0%80%00"),
      STU_IDENTITY_INVALID_UTF8, 1, 0, L("") },

    { "control char in value 1, bad escape in value 2",
      L("TestUsers=%00&TestUsers=%ZZ"),
      STU_IDENTITY_CONTROL_CHAR, 1, 0, L("") },

    { "raw '=' before a bad escape",
      L("TestUsers=a=b%ZZ"),
      STU_MALFORMED_FORM, 1, 0, L("") },

    { "bad escape before a raw '='",
      L("TestUsers=%ZZ="),
      STU_MALFORMED_ESCAPE, 1, 0, L("") },

    { "unknown key before a bad escape",
      L("testusers=a&TestUsers=%ZZ"),
      STU_UNKNOWN_PARAMETER, 0, 0, L("") },
};


static const char *
t_reason(stu_reason_e r)
{
    if (r == STU_OK) {
        return "ok";
    }

    return r < STU_REASON_LAST ? stu_reasons[r].name : "(bad reason)";
}


static void
t_show(const char *label, const unsigned char *p, size_t len)
{
    size_t  i;

    printf("# %s (%zu bytes): \"", label, len);

    for (i = 0; i < len && i < 120; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') {
            putchar(p[i]);

        } else {
            printf("\\x%02X", p[i]);
        }
    }

    printf("%s\"\n", i < len ? "..." : "");
}


static stu_reason_e
t_handler(void *data, const unsigned char *p, size_t len)
{
    t_handler_t  *h;

    h = data;

    h->calls++;

    if (len == 0 || len > STU_IDENTITY_MAX
        || stu_check_identity(p, len) != STU_OK)
    {
        h->bad++;
    }

    if (h->len + 1 + len > T_SEEN_MAX) {
        h->bad++;

    } else {
        if (h->calls > 1) {
            h->seen[h->len++] = '\n';
        }

        memcpy(h->seen + h->len, p, len);
        h->len += len;
    }

    return h->calls == h->fail_at ? h->fail_rc : STU_OK;
}


static void
t_feed(stu_form_t *f, const unsigned char *p, size_t len, stu_reason_e *err,
    t_result_t *r)
{
    stu_reason_e  rc;

    rc = stu_form_feed(f, p, len);

    if (rc != STU_OK && rc != f->error) {
        r->broken = "feed() returned an error other than f->error";
    }

    if (*err == STU_OK) {
        *err = rc;

    } else if (rc != *err) {
        r->broken = "feed() after an error returned another result";
    }
}


static void
t_run(const unsigned char *body, size_t len, int mode, size_t split,
    size_t fail_at, stu_reason_e fail_rc, t_result_t *r)
{
    size_t         i;
    stu_form_t     f;
    stu_reason_e   rc, err;

    memset(r, 0, sizeof(t_result_t));
    r->h.fail_at = fail_at;
    r->h.fail_rc = fail_rc;

    /* garbage first: stu_form_init() must set all it relies on */
    memset(&f, 0xa5, sizeof(stu_form_t));
    stu_form_init(&f, t_handler, &r->h);

    err = STU_OK;

    switch (mode) {

    case T_WHOLE:
        t_feed(&f, body, len, &err, r);
        break;

    case T_SPLIT:
        t_feed(&f, body, split, &err, r);
        t_feed(&f, body + split, len - split, &err, r);
        break;

    default: /* T_BYTES */
        t_feed(&f, body, 0, &err, r);

        for (i = 0; i < len; i++) {
            t_feed(&f, body + i, 1, &err, r);
            t_feed(&f, body + i + 1, 0, &err, r);
        }
    }

    rc = stu_form_finish(&f);

    if (err != STU_OK && rc != err) {
        r->broken = "finish() did not return the error of feed()";
    }

    if (rc != f.error) {
        r->broken = "finish() result differs from f->error";
    }

    if (rc != STU_OK) {
        if (stu_form_feed(&f, (const unsigned char *) "TestUsers=a", 11)
            != rc
            || stu_form_finish(&f) != rc)
        {
            r->broken = "the error is not sticky after finish()";
        }
    }

    r->reason = rc;
    r->position = f.position;
    r->identities = f.identities;
    r->bytes = f.bytes;
}


static int
t_same(const t_result_t *a, const t_result_t *b)
{
    return a->reason == b->reason
           && a->position == b->position
           && a->identities == b->identities
           && a->broken == b->broken
           && a->h.calls == b->h.calls
           && a->h.bad == b->h.bad
           && a->h.len == b->h.len
           && memcmp(a->h.seen, b->h.seen, a->h.len) == 0;
}


static void
t_show_result(const char *label, const t_result_t *r)
{
    printf("# %s: %s, position %zu, identities %zu, handler calls %zu%s%s\n",
           label, t_reason(r->reason), r->position, r->identities,
           r->h.calls, r->broken ? ", " : "", r->broken ? r->broken : "");
    t_show("  handler saw", r->h.seen, r->h.len);
}


/*
 * Decodes the body whole and checks the expected result, then checks
 * that every two-piece split and the byte-by-byte feed give the same.
 */

static void
t_form(const char *name, const void *data, size_t len, stu_reason_e reason,
    size_t position, size_t identities, const void *expect, size_t elen,
    size_t fail_at, stu_reason_e fail_rc)
{
    int                   pass;
    size_t                i;
    t_result_t           *whole, *r;
    const unsigned char  *body;

    static t_result_t     results[2];

    body = data;
    whole = &results[0];
    r = &results[1];

    t_run(body, len, T_WHOLE, 0, fail_at, fail_rc, whole);

    pass = whole->broken == NULL
           && whole->reason == reason
           && whole->position == position
           && whole->identities == identities
           && whole->h.bad == 0
           && whole->h.len == elen
           && memcmp(whole->h.seen, expect, elen) == 0
           && (reason != STU_OK || whole->bytes == len);

    if (!tap_ok(pass, "%s", name)) {
        t_show("body", body, len);
        printf("# expected: %s, position %zu, identities %zu\n",
               t_reason(reason), position, identities);
        t_show("  handler", expect, elen);
        t_show_result("got", whole);
    }

    for (i = 0; i <= len; i++) {
        t_run(body, len, T_SPLIT, i, fail_at, fail_rc, r);

        if (!t_same(whole, r)) {
            break;
        }
    }

    if (i > len) {
        t_run(body, len, T_BYTES, 0, fail_at, fail_rc, r);
    }

    pass = (i > len && t_same(whole, r));

    if (!tap_ok(pass, "%s: same in %zu two-piece splits and byte by byte",
                name, len + 1))
    {
        t_show("body", body, len);
        t_show_result("whole", whole);

        if (i <= len) {
            printf("# split after byte %zu:\n", i);
        } else {
            printf("# byte by byte:\n");
        }

        t_show_result("pieces", r);
    }
}


/* a tiny buffer builder for the long bodies */

typedef struct {
    size_t          len;
    unsigned char   data[T_BODY_MAX];
} t_buf_t;


static t_buf_t  t_body, t_expect;


static void
t_cat(t_buf_t *b, const char *s, size_t times)
{
    size_t  n;

    n = strlen(s);

    while (times--) {
        if (b->len + n > sizeof(b->data)) {
            fprintf(stderr, "t_cat: buffer too small\n");
            exit(2);
        }

        memcpy(b->data + b->len, s, n);
        b->len += n;
    }
}


static void
t_long(const char *name, const char *head, const char *run, size_t times,
    const char *tail, stu_reason_e reason, size_t position,
    size_t identities, const char *ehead, const char *erun, size_t etimes,
    const char *etail)
{
    t_body.len = 0;
    t_cat(&t_body, head, 1);
    t_cat(&t_body, run, times);
    t_cat(&t_body, tail, 1);

    t_expect.len = 0;
    t_cat(&t_expect, ehead, 1);
    t_cat(&t_expect, erun, etimes);
    t_cat(&t_expect, etail, 1);

    t_form(name, t_body.data, t_body.len, reason, position, identities,
           t_expect.data, t_expect.len, 0, STU_OK);
}


static void
t_lengths(void)
{
    size_t  i;
    char    name[64];

    t_long("300 raw bytes",
           "TestUsers=", "a", 300, "",
           STU_OK, 0, 1, "", "a", 300, "");

    t_long("301 raw bytes",
           "TestUsers=", "a", 301, "",
           STU_IDENTITY_TOO_LONG, 1, 0, "", "", 0, "");

    t_long("300 bytes as %XX escapes",
           "TestUsers=", "%41", 300, "",
           STU_OK, 0, 1, "", "A", 300, "");

    t_long("301 bytes as %XX escapes",
           "TestUsers=", "%41", 301, "",
           STU_IDENTITY_TOO_LONG, 1, 0, "", "", 0, "");

    t_long("300 spaces as '+'",
           "TestUsers=", "+", 300, "",
           STU_OK, 0, 1, "", " ", 300, "");

    t_long("301 spaces as '+'",
           "TestUsers=", "+", 301, "",
           STU_IDENTITY_TOO_LONG, 1, 0, "", "", 0, "");

    t_long("299 raw bytes and an escape",
           "TestUsers=", "a", 299, "%41",
           STU_OK, 0, 1, "", "a", 299, "A");

    t_long("300 raw bytes and an escape",
           "TestUsers=", "a", 300, "%41",
           STU_IDENTITY_TOO_LONG, 1, 0, "", "", 0, "");

    t_long("300 raw bytes and '+'",
           "TestUsers=", "a", 300, "+",
           STU_IDENTITY_TOO_LONG, 1, 0, "", "", 0, "");

    t_long("300 raw bytes and an escaped NUL",
           "TestUsers=", "a", 300, "%00",
           STU_IDENTITY_TOO_LONG, 1, 0, "", "", 0, "");

    t_long("299 raw bytes and an escaped NUL",
           "TestUsers=", "a", 299, "%00",
           STU_IDENTITY_CONTROL_CHAR, 1, 0, "", "", 0, "");

    t_long("298 bytes and an escaped two-byte character",
           "TestUsers=", "a", 298, "%C3%A9",
           STU_OK, 0, 1, "", "a", 298, "\xC3\xA9");

    t_long("299 bytes and an escaped two-byte character",
           "TestUsers=", "a", 299, "%C3%A9",
           STU_IDENTITY_TOO_LONG, 1, 0, "", "", 0, "");

    t_long("100 raw three-byte characters",
           "TestUsers=", "\xE2\x82\xAC", 100, "",
           STU_OK, 0, 1, "", "\xE2\x82\xAC", 100, "");

    t_long("100 raw three-byte characters and one byte",
           "TestUsers=", "\xE2\x82\xAC", 100, "a",
           STU_IDENTITY_TOO_LONG, 1, 0, "", "", 0, "");

    t_long("75 escaped emoji",
           "TestUsers=", "%F0%9F%98%80", 75, "",
           STU_OK, 0, 1, "", "\xF0\x9F\x98\x80", 75, "");

    t_long("76 escaped emoji",
           "TestUsers=", "%F0%9F%98%80", 76, "",
           STU_IDENTITY_TOO_LONG, 1, 0, "", "", 0, "");

    t_long("300 bytes then '='",
           "TestUsers=", "a", 300, "=",
           STU_MALFORMED_FORM, 1, 0, "", "", 0, "");

    t_long("301 bytes then '=': the length is seen first",
           "TestUsers=", "a", 301, "=",
           STU_IDENTITY_TOO_LONG, 1, 0, "", "", 0, "");

    t_long("301 bytes then a bad escape: the length is seen first",
           "TestUsers=", "a", 301, "%ZZ",
           STU_IDENTITY_TOO_LONG, 1, 0, "", "", 0, "");

    t_long("300 bytes then '%' at the end",
           "TestUsers=", "a", 300, "%",
           STU_MALFORMED_ESCAPE, 1, 0, "", "", 0, "");

    t_long("300 bytes, then a second identity",
           "TestUsers=", "a", 300, "&TestUsers=b",
           STU_OK, 0, 2, "", "a", 300, "\nb");

    t_long("second identity 301 bytes",
           "TestUsers=a&TestUsers=", "b", 301, "",
           STU_IDENTITY_TOO_LONG, 2, 1, "a", "", 0, "");

    t_long("two identities of 300 bytes",
           "TestUsers=", "a", 300, "&TestUsers=",
           STU_IDENTITY_EMPTY, 2, 1, "", "a", 300, "");

    /* many identities: the count and the order */

    t_body.len = 0;
    t_expect.len = 0;

    for (i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "%sTestUsers=%%2B1555555%04zu",
                 i ? "&" : "", i);
        t_cat(&t_body, name, 1);

        snprintf(name, sizeof(name), "%s+1555555%04zu", i ? "\n" : "", i);
        t_cat(&t_expect, name, 1);
    }

    t_form("100 identities in order", t_body.data, t_body.len, STU_OK, 0,
           100, t_expect.data, t_expect.len, 0, STU_OK);
}


static void
t_handlers(void)
{
    int            pass;
    stu_form_t     f;
    stu_reason_e   rc;

    t_form("handler error on the second of three stops there",
           L("TestUsers=a&TestUsers=b&TestUsers=c"),
           STU_INTERNAL_ERROR, 2, 1, L("a\nb"), 2, STU_INTERNAL_ERROR);

    t_form("handler error on the last identity, at finish()",
           L("TestUsers=a&TestUsers=b&TestUsers=c"),
           STU_INTERNAL_ERROR, 3, 2, L("a\nb\nc"), 3, STU_INTERNAL_ERROR);

    t_form("handler's own reason on the first identity",
           L("TestUsers=a&TestUsers=b"),
           STU_IDENTITY_INVALID_UTF8, 1, 0, L("a"), 1,
           STU_IDENTITY_INVALID_UTF8);

    t_form("handler error hides later errors in the body",
           L("TestUsers=a&TestUsers=b&%ZZ&testusers="),
           STU_INTERNAL_ERROR, 2, 1, L("a\nb"), 2, STU_INTERNAL_ERROR);

    /* no handler at all, as the module itself uses the decoder */

    memset(&f, 0x5a, sizeof(stu_form_t));
    stu_form_init(&f, NULL, NULL);

    rc = stu_form_feed(&f, (const unsigned char *)
                       "TestUsers=%2B15555550100&TestUsers=client%3Aal", 46);
    if (rc == STU_OK) {
        rc = stu_form_feed(&f, (const unsigned char *) "ice", 3);
    }

    if (rc == STU_OK) {
        rc = stu_form_finish(&f);
    }

    pass = (rc == STU_OK && f.identities == 2 && f.position == 0
            && f.bytes == 49);

    if (!tap_ok(pass, "no handler: identities counted")) {
        printf("# got %s, identities %zu, bytes %zu\n",
               t_reason(rc), f.identities, f.bytes);
    }

    stu_form_init(&f, NULL, NULL);

    rc = stu_form_feed(&f, (const unsigned char *) "TestUsers=%00", 13);
    if (rc == STU_OK) {
        rc = stu_form_finish(&f);
    }

    tap_ok(rc == STU_IDENTITY_CONTROL_CHAR && f.position == 1,
           "no handler: identities still checked");

    /* a GET body: bytes are counted even when the first piece fails */

    stu_form_init(&f, NULL, NULL);

    (void) stu_form_feed(&f, (const unsigned char *) "%ZZ", 3);
    (void) stu_form_feed(&f, (const unsigned char *) "abc", 3);

    tap_ok(f.bytes != 0 && f.error == STU_MALFORMED_ESCAPE,
           "bytes counted even when the first piece is refused");
}


/*
 * Every byte value at every offset of a long value, under one scanner:
 * the vector scanners must stop exactly where a byte stops being plain,
 * in a whole vector, in the tail after it, and at the piece's end.
 */

static void
t_scanner_bytes(const char *scanner)
{
    char           body[200], value[T_IDVAL];
    size_t         klen, vlen, pos, b, bad, ids, expect_pos, expect_ids;
    stu_form_t     f;
    stu_reason_e   rc, expect;

    klen = sizeof("TestUsers=") - 1;
    bad = 0;

    for (vlen = 1; vlen <= 130; vlen += (vlen < 40) ? 1 : 9) {
        for (pos = 0; pos < vlen; pos++) {
            for (b = 0; b < 256; b++) {

                memcpy(body, "TestUsers=", klen);
                memset(body + klen, 'x', vlen);
                body[klen + pos] = (char) b;

                memcpy(value, body + klen, vlen);

                expect_pos = 1;
                expect_ids = 0;

                if (b == '%') {
                    expect = STU_MALFORMED_ESCAPE;

                } else if (b == '=') {
                    expect = STU_MALFORMED_FORM;

                } else if (b == '&') {
                    if (pos == 0) {
                        expect = STU_IDENTITY_EMPTY;

                    } else if (pos == vlen - 1) {
                        expect = STU_MALFORMED_FORM;    /* trailing '&' */
                        expect_pos = 0;
                        expect_ids = 1;

                    } else {
                        expect = STU_UNKNOWN_PARAMETER;
                        expect_pos = 0;
                        expect_ids = 1;
                    }

                } else {
                    if (b == '+') {
                        value[pos] = ' ';
                    }

                    expect = stu_check_identity((unsigned char *) value,
                                                vlen);
                    expect_ids = (expect == STU_OK);
                    expect_pos = (expect == STU_OK) ? 0 : 1;
                }

                stu_form_init(&f, NULL, NULL);
                stu_form_feed(&f, (unsigned char *) body, klen + vlen);
                rc = stu_form_finish(&f);
                ids = f.identities;

                if (rc != expect || f.position != expect_pos
                    || ids != expect_ids)
                {
                    if (bad++ == 0) {
                        tap_diag("%s: byte 0x%02zx at %zu of %zu: reason %d "
                                 "position %zu identities %zu, expected "
                                 "%d %zu %zu", scanner, b, pos, vlen,
                                 (int) rc, f.position, ids, (int) expect,
                                 expect_pos, expect_ids);
                    }
                }
            }
        }
    }

    tap_ok(bad == 0, "scanner %s: every byte at every offset (%zu wrong)",
           scanner, bad);
}


int
main(void)
{
    size_t           i, s;
    const t_case_t  *c;

    static const struct {
        stu_scan_e   scan;
        const char  *name;
    } scanners[] = {
        { STU_SCAN_WORD, "word" },
        { STU_SCAN_SSE2, "sse2" },
        { STU_SCAN_BEST, "best" }
    };

    for (s = 0; s < sizeof(scanners) / sizeof(scanners[0]); s++) {

        if (!stu_form_scanner(scanners[s].scan)) {
            tap_diag("scanner %s: not on this machine", scanners[s].name);
            continue;
        }

        tap_diag("scanner %s", scanners[s].name);

        for (i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++) {
            c = &t_cases[i];
            t_form(c->name, c->body, c->len, c->reason, c->position,
                   c->identities, c->expect, c->elen, 0, STU_OK);
        }

        t_lengths();
        t_handlers();
        t_scanner_bytes(scanners[s].name);
    }

    return tap_done();
}
