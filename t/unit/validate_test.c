
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * Unit tests of the request checks: the raw request target, the Flow SID,
 * Content-Type, a single identity, and the stu_reasons[] table.
 */


#include <string.h>

#include "ngx_http_studio_testusers_validate.h"
#include "tap.h"


#define T_SID          "FW0123456789abcdef0123456789ABCDEF"
#define T_PATH         "/v2/Flows/" T_SID "/TestUsers"

#define L(s)           s, sizeof(s) - 1


typedef struct {
    const char            *name;
    const char            *text;
    size_t                 len;
    stu_reason_e           reason;
} t_case_t;


static const t_case_t  t_paths[] = {

    { "the exact path", L(T_PATH), STU_OK },
    { "upper-case hex digits",
      L("/v2/Flows/FW0123456789ABCDEF0123456789ABCDEF/TestUsers"), STU_OK },
    { "lower-case hex digits",
      L("/v2/Flows/FW0123456789abcdef0123456789abcdef/TestUsers"), STU_OK },

    { "query string", L(T_PATH "?a=b"), STU_QUERY_STRING },
    { "empty query string", L(T_PATH "?"), STU_QUERY_STRING },
    { "query string of TestUsers",
      L(T_PATH "?TestUsers=%2B15555550100"), STU_QUERY_STRING },

    { "empty target", L(""), STU_PATH_NOT_FOUND },
    { "root", L("/"), STU_PATH_NOT_FOUND },
    { "only a query", L("?" T_PATH), STU_PATH_NOT_FOUND },
    { "the flow without /TestUsers", L("/v2/Flows/" T_SID),
      STU_PATH_NOT_FOUND },
    { "trailing slash", L(T_PATH "/"), STU_PATH_NOT_FOUND },
    { "trailing slash and a query", L(T_PATH "/?a=b"), STU_PATH_NOT_FOUND },
    { "leading '//'", L("/" T_PATH), STU_PATH_NOT_FOUND },
    { "'//' before Flows",
      L("/v2//Flows/" T_SID "/TestUsers"), STU_PATH_NOT_FOUND },
    { "'//' before the SID",
      L("/v2/Flows//" T_SID "/TestUsers"), STU_PATH_NOT_FOUND },
    { "'//' before TestUsers",
      L("/v2/Flows/" T_SID "//TestUsers"), STU_PATH_NOT_FOUND },
    { "'/./' segment",
      L("/v2/./Flows/" T_SID "/TestUsers"), STU_PATH_NOT_FOUND },
    { "'/./' before TestUsers",
      L("/v2/Flows/" T_SID "/./TestUsers"), STU_PATH_NOT_FOUND },
    { "'/../' segment",
      L("/v2/Flows/" T_SID "/x/../TestUsers"), STU_PATH_NOT_FOUND },
    { "escaped 'F' in the SID",
      L("/v2/Flows/%46W0123456789abcdef0123456789ABCDEF/TestUsers"),
      STU_PATH_NOT_FOUND },
    { "escaped letter in TestUsers",
      L("/v2/Flows/" T_SID "/Test%55sers"), STU_PATH_NOT_FOUND },
    { "escaped slash",
      L("/v2/Flows/" T_SID "%2FTestUsers"), STU_PATH_NOT_FOUND },
    { "lower-case 'fw'",
      L("/v2/Flows/fw0123456789abcdef0123456789ABCDEF/TestUsers"),
      STU_PATH_NOT_FOUND },
    { "'Fw' prefix",
      L("/v2/Flows/Fw0123456789abcdef0123456789ABCDEF/TestUsers"),
      STU_PATH_NOT_FOUND },
    { "other SID prefix",
      L("/v2/Flows/FX0123456789abcdef0123456789ABCDEF/TestUsers"),
      STU_PATH_NOT_FOUND },
    { "lower-case flows",
      L("/v2/flows/" T_SID "/TestUsers"), STU_PATH_NOT_FOUND },
    { "lower-case testusers",
      L("/v2/Flows/" T_SID "/testusers"), STU_PATH_NOT_FOUND },
    { "upper-case V2",
      L("/V2/Flows/" T_SID "/TestUsers"), STU_PATH_NOT_FOUND },
    { "v1 API",
      L("/v1/Flows/" T_SID "/TestUsers"), STU_PATH_NOT_FOUND },
    { "no SID: /v2/Flows/",
      L("/v2/Flows/"), STU_PATH_NOT_FOUND },
    { "no SID: /v2/Flows//TestUsers",
      L("/v2/Flows//TestUsers"), STU_PATH_NOT_FOUND },
    { ";jsessionid after TestUsers",
      L(T_PATH ";jsessionid=0123"), STU_PATH_NOT_FOUND },
    { ";jsessionid after the SID",
      L("/v2/Flows/" T_SID ";jsessionid=0/TestUsers"), STU_PATH_NOT_FOUND },
    { "';' in place of a hex digit, same length",
      L("/v2/Flows/FW0123456789abcdef0123456789ABCDE;/TestUsers"),
      STU_PATH_NOT_FOUND },
    { "33-character SID",
      L("/v2/Flows/FW0123456789abcdef0123456789ABCDE/TestUsers"),
      STU_PATH_NOT_FOUND },
    { "35-character SID",
      L("/v2/Flows/FW0123456789abcdef0123456789ABCDEF0/TestUsers"),
      STU_PATH_NOT_FOUND },
    { "33-character SID and a query of one byte",
      L("/v2/Flows/FW0123456789abcdef0123456789ABCDE/TestUsers?"),
      STU_PATH_NOT_FOUND },
    { "non-hex 'g' in the SID",
      L("/v2/Flows/FW0123456789abcdeg0123456789ABCDEF/TestUsers"),
      STU_PATH_NOT_FOUND },
    { "non-hex 'G' last in the SID",
      L("/v2/Flows/FW0123456789abcdef0123456789ABCDEG/TestUsers"),
      STU_PATH_NOT_FOUND },
    { "'?' inside the SID",
      L("/v2/Flows/FW0123456789abcdef0123456789ABCDE?/TestUsers"),
      STU_PATH_NOT_FOUND },
    { "'?' inside the SID, path length kept",
      L("/v2/Flows/FW0123456789abcdef?0123456789ABCDEF/TestUsers"),
      STU_PATH_NOT_FOUND },
    { "NUL inside the SID",
      L("/v2/Flows/FW0123456789abcdef\0000123456789ABCDE/TestUsers"),
      STU_PATH_NOT_FOUND },
    { "fragment", L(T_PATH "#x"), STU_PATH_NOT_FOUND },
    { "absolute form",
      L("http://example.com" T_PATH), STU_PATH_NOT_FOUND },
    { "space in the path", L(T_PATH " "), STU_PATH_NOT_FOUND },
    { "extension", L(T_PATH ".json"), STU_PATH_NOT_FOUND },
    { "bad path with a query: path first",
      L("/v2/Flows/" T_SID "/?a"), STU_PATH_NOT_FOUND },
};


static const t_case_t  t_types[] = {

    { "the media type alone",
      L("application/x-www-form-urlencoded"), STU_OK },
    { "mixed case",
      L("Application/X-WWW-Form-URLEncoded"), STU_OK },
    { "upper case",
      L("APPLICATION/X-WWW-FORM-URLENCODED"), STU_OK },
    { "charset=UTF-8",
      L("application/x-www-form-urlencoded; charset=UTF-8"), STU_OK },
    { "charset=utf-8 without a space",
      L("application/x-www-form-urlencoded;charset=utf-8"), STU_OK },
    { "quoted charset",
      L("application/x-www-form-urlencoded;charset=\"utf-8\""), STU_OK },
    { "parameter name in upper case",
      L("application/x-www-form-urlencoded; CHARSET=Utf-8"), STU_OK },
    { "charset and another parameter",
      L("application/x-www-form-urlencoded; charset=UTF-8; foo=bar"),
      STU_OK },
    { "another parameter before charset",
      L("application/x-www-form-urlencoded; foo=bar; charset=utf-8"),
      STU_OK },
    { "another parameter alone",
      L("application/x-www-form-urlencoded; foo=bar"), STU_OK },
    { "quoted parameter with ';' inside",
      L("application/x-www-form-urlencoded; foo=\"a;b=c\""), STU_OK },
    { "quoted parameter with an escaped quote",
      L("application/x-www-form-urlencoded; foo=\"a\\\"b\""), STU_OK },
    { "empty quoted parameter",
      L("application/x-www-form-urlencoded; foo=\"\""), STU_OK },
    { "OWS around everything",
      L(" \tapplication/x-www-form-urlencoded \t; \tcharset=utf-8 \t"),
      STU_OK },
    { "trailing ';'",
      L("application/x-www-form-urlencoded;"), STU_OK },
    { "empty parameters",
      L("application/x-www-form-urlencoded; ; ;charset=utf-8;;"), STU_OK },

    { "charset=latin1",
      L("application/x-www-form-urlencoded; charset=latin1"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "charset=ISO-8859-1",
      L("application/x-www-form-urlencoded; charset=ISO-8859-1"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "charset=utf8",
      L("application/x-www-form-urlencoded; charset=utf8"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "charset=utf-16",
      L("application/x-www-form-urlencoded; charset=utf-16"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "utf-8 then latin1",
      L("application/x-www-form-urlencoded; charset=utf-8; charset=latin1"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "quoted charset with an escape",
      L("application/x-www-form-urlencoded; charset=\"utf\\-8\""),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "empty charset",
      L("application/x-www-form-urlencoded; charset="),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "empty quoted charset",
      L("application/x-www-form-urlencoded; charset=\"\""),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "empty parameter value",
      L("application/x-www-form-urlencoded; foo="),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "empty parameter value before charset",
      L("application/x-www-form-urlencoded; foo=; charset=utf-8"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "charset without '='",
      L("application/x-www-form-urlencoded; charset"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "space before '='",
      L("application/x-www-form-urlencoded; charset =utf-8"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "space after '='",
      L("application/x-www-form-urlencoded; charset= utf-8"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "parameter without a name",
      L("application/x-www-form-urlencoded; =utf-8"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "charset followed by a comma",
      L("application/x-www-form-urlencoded; charset=utf-8, text/plain"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "two media types",
      L("application/x-www-form-urlencoded, text/plain"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "unterminated quoted string",
      L("application/x-www-form-urlencoded; foo=\"bar"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "unterminated quoted charset",
      L("application/x-www-form-urlencoded; charset=\"utf-8"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "quoted string ending in a backslash",
      L("application/x-www-form-urlencoded; foo=\"bar\\"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "quoted string ending in an escaped quote",
      L("application/x-www-form-urlencoded; foo=\"bar\\\""),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "garbage after a quoted string",
      L("application/x-www-form-urlencoded; foo=\"bar\"x"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "text/plain", L("text/plain"), STU_CONTENT_TYPE_UNSUPPORTED },
    { "text/plain; charset=utf-8",
      L("text/plain; charset=utf-8"), STU_CONTENT_TYPE_UNSUPPORTED },
    { "application/json",
      L("application/json"), STU_CONTENT_TYPE_UNSUPPORTED },
    { "suffix after the subtype",
      L("application/x-www-form-urlencodedx"), STU_CONTENT_TYPE_UNSUPPORTED },
    { "prefix of the media type",
      L("application/x-www-form-urlencode"), STU_CONTENT_TYPE_UNSUPPORTED },
    { "space inside the media type",
      L("application/x-www-form-urlencoded x"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "space around '/'",
      L("application / x-www-form-urlencoded"),
      STU_CONTENT_TYPE_UNSUPPORTED },
    { "multipart/form-data",
      L("multipart/form-data; boundary=xyz"), STU_CONTENT_TYPE_UNSUPPORTED },
    { "empty", L(""), STU_CONTENT_TYPE_UNSUPPORTED },
    { "only OWS", L(" \t "), STU_CONTENT_TYPE_UNSUPPORTED },
    { "only ';'", L(";"), STU_CONTENT_TYPE_UNSUPPORTED },
    { "NUL after the media type",
      L("application/x-www-form-urlencoded\0"), STU_CONTENT_TYPE_UNSUPPORTED },
    { "CR LF after the media type",
      L("application/x-www-form-urlencoded\r\n"),
      STU_CONTENT_TYPE_UNSUPPORTED },
};


static const t_case_t  t_identities[] = {

    { "phone number", L("+15555550100"), STU_OK },
    { "client identity", L("client:alice"), STU_OK },
    { "whatsapp identity", L("whatsapp:+15555550101"), STU_OK },
    { "one space", L(" "), STU_OK },
    { "two-byte UTF-8", L("jos\xC3\xA9"), STU_OK },
    { "U+00A0", L("\xC2\xA0"), STU_OK },
    { "U+FFFD", L("\xEF\xBF\xBD"), STU_OK },
    { "emoji", L("\xF0\x9F\x98\x80"), STU_OK },
    { "U+10FFFF", L("\xF4\x8F\xBF\xBF"), STU_OK },

    { "empty", L(""), STU_IDENTITY_EMPTY },

    { "NUL", L("\0"), STU_IDENTITY_CONTROL_CHAR },
    { "tab", L("a\tb"), STU_IDENTITY_CONTROL_CHAR },
    { "U+001F", L("\x1F"), STU_IDENTITY_CONTROL_CHAR },
    { "DEL", L("\x7F"), STU_IDENTITY_CONTROL_CHAR },
    { "U+0080", L("\xC2\x80"), STU_IDENTITY_CONTROL_CHAR },
    { "U+009F", L("\xC2\x9F"), STU_IDENTITY_CONTROL_CHAR },

    { "overlong C0 80", L("\xC0\x80"), STU_IDENTITY_INVALID_UTF8 },
    { "overlong C1 BF", L("\xC1\xBF"), STU_IDENTITY_INVALID_UTF8 },
    { "overlong E0 80 80", L("\xE0\x80\x80"), STU_IDENTITY_INVALID_UTF8 },
    { "overlong F0 8F BF BF", L("\xF0\x8F\xBF\xBF"),
      STU_IDENTITY_INVALID_UTF8 },
    { "surrogate ED A0 80", L("\xED\xA0\x80"), STU_IDENTITY_INVALID_UTF8 },
    { "surrogate ED BF BF", L("\xED\xBF\xBF"), STU_IDENTITY_INVALID_UTF8 },
    { "F4 90 80 80", L("\xF4\x90\x80\x80"), STU_IDENTITY_INVALID_UTF8 },
    { "F5 80 80 80", L("\xF5\x80\x80\x80"), STU_IDENTITY_INVALID_UTF8 },
    { "lone 80", L("\x80"), STU_IDENTITY_INVALID_UTF8 },
    { "FF", L("\xFF"), STU_IDENTITY_INVALID_UTF8 },
    { "truncated C3", L("a\xC3"), STU_IDENTITY_INVALID_UTF8 },
    { "truncated E2 82", L("\xE2\x82"), STU_IDENTITY_INVALID_UTF8 },
    { "truncated F0 9F 98", L("\xF0\x9F\x98"), STU_IDENTITY_INVALID_UTF8 },
    { "E2 82 then ASCII", L("\xE2\x82" "A"), STU_IDENTITY_INVALID_UTF8 },
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
t_check(const char *what, const t_case_t *c, stu_reason_e rc)
{
    if (!tap_ok(rc == c->reason, "%s: %s", what, c->name)) {
        tap_diag("expected %s, got %s",
                 t_reason(c->reason), t_reason(rc));
    }
}


static void
t_path_checks(void)
{
    size_t                i;
    stu_reason_e          rc;
    const t_case_t       *c;
    const unsigned char  *sid, *uri;

    static const unsigned char  unset[] = "unset";

    for (i = 0; i < sizeof(t_paths) / sizeof(t_paths[0]); i++) {
        c = &t_paths[i];
        uri = (const unsigned char *) c->text;

        sid = unset;
        rc = stu_check_path(uri, c->len, &sid);

        t_check("path", c, rc);

        if (rc == STU_OK || rc == STU_QUERY_STRING) {
            tap_ok(sid == uri + sizeof("/v2/Flows/") - 1
                   && stu_flow_sid_valid(sid, STU_FLOW_SID_LEN),
                   "path: %s: sid points at the Flow SID", c->name);
        }
    }
}


/* every byte value at every digit position: valid exactly if hex */

static void
t_sid_every_byte(void)
{
    int            hex;
    size_t         pos, b, bad;
    unsigned char  sid[STU_FLOW_SID_LEN];

    bad = 0;

    for (pos = 2; pos < STU_FLOW_SID_LEN; pos++) {
        for (b = 0; b < 256; b++) {
            memcpy(sid, T_SID, STU_FLOW_SID_LEN);
            sid[pos] = (unsigned char) b;

            hex = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f')
                  || (b >= 'A' && b <= 'F');

            if (stu_flow_sid_valid(sid, STU_FLOW_SID_LEN) != hex) {
                if (bad++ == 0) {
                    tap_diag("sid: byte 0x%02zx at %zu judged wrongly",
                             b, pos);
                }
            }
        }
    }

    tap_ok(bad == 0, "sid: every byte at every digit position (%zu wrong)",
           bad);
}


static void
t_sid_checks(void)
{
    tap_ok(stu_flow_sid_valid((const unsigned char *) L(T_SID)),
           "sid: valid");
    tap_ok(stu_flow_sid_valid((const unsigned char *)
                              L("FWFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF")),
           "sid: all hex letters");
    tap_ok(!stu_flow_sid_valid((const unsigned char *)
                               L("FW0123456789abcdef0123456789ABCDE")),
           "sid: 33 characters");
    tap_ok(!stu_flow_sid_valid((const unsigned char *)
                               L("FW0123456789abcdef0123456789ABCDEF0")),
           "sid: 35 characters");
    tap_ok(!stu_flow_sid_valid((const unsigned char *)
                               L("fw0123456789abcdef0123456789ABCDEF")),
           "sid: lower-case prefix");
    tap_ok(!stu_flow_sid_valid((const unsigned char *)
                               L("FW0123456789abcdef0123456789ABCDEg")),
           "sid: non-hex digit");
    tap_ok(!stu_flow_sid_valid((const unsigned char *)
                               L("FW0123456789abcdef01234567 9ABCDEF")),
           "sid: space");
    tap_ok(!stu_flow_sid_valid((const unsigned char *)
                               L("FW0123456789abcdef0123456789ABCD\xC3\xA9")),
           "sid: non-ASCII");
    tap_ok(!stu_flow_sid_valid((const unsigned char *) L("")),
           "sid: empty");
    tap_ok(!stu_flow_sid_valid((const unsigned char *) L("F")),
           "sid: one byte");

    t_sid_every_byte();
}


static void
t_type_checks(void)
{
    size_t           i;
    const t_case_t  *c;

    for (i = 0; i < sizeof(t_types) / sizeof(t_types[0]); i++) {
        c = &t_types[i];
        t_check("content type", c,
                stu_check_content_type((const unsigned char *) c->text,
                                       c->len));
    }
}


static void
t_identity_checks(void)
{
    size_t           i;
    unsigned char    buf[STU_IDENTITY_MAX + 2];
    const t_case_t  *c;

    for (i = 0; i < sizeof(t_identities) / sizeof(t_identities[0]); i++) {
        c = &t_identities[i];
        t_check("identity", c,
                stu_check_identity((const unsigned char *) c->text, c->len));
    }

    memset(buf, 'a', sizeof(buf));

    tap_ok(stu_check_identity(buf, STU_IDENTITY_MAX) == STU_OK,
           "identity: 300 bytes");
    tap_ok(stu_check_identity(buf, STU_IDENTITY_MAX + 1)
           == STU_IDENTITY_TOO_LONG,
           "identity: 301 bytes");

    /* the length is checked before the content */

    buf[0] = 0;
    tap_ok(stu_check_identity(buf, STU_IDENTITY_MAX + 1)
           == STU_IDENTITY_TOO_LONG,
           "identity: 301 bytes with a NUL");

    /* a sequence cut by the length, not by the buffer */

    memset(buf, 'a', sizeof(buf));
    buf[STU_IDENTITY_MAX - 1] = 0xc3;
    buf[STU_IDENTITY_MAX] = 0xa9;
    tap_ok(stu_check_identity(buf, STU_IDENTITY_MAX)
           == STU_IDENTITY_INVALID_UTF8,
           "identity: two-byte sequence cut by the length");
}


static void
t_reason_checks(void)
{
    int       pass;
    size_t    i;
    unsigned  status;

    tap_ok(stu_reasons[STU_OK].status == 200, "reasons: OK is 200");

    pass = 1;

    for (i = 1; i < STU_REASON_LAST; i++) {
        status = stu_reasons[i].status;

        if (stu_reasons[i].name == NULL || stu_reasons[i].name[0] == '\0'
            || stu_reasons[i].message == NULL
            || stu_reasons[i].message[0] == '\0'
            || status < 400 || status > 599 || stu_reasons[i].code == 0)
        {
            tap_diag("reason %zu is incomplete", i);
            pass = 0;
        }
    }

    tap_ok(pass, "reasons: every error has a name, a 4xx/5xx status, "
           "a code and a message");

    tap_ok(strstr(stu_reasons[STU_IDENTITY_EMPTY].message, "%u") != NULL
           && strstr(stu_reasons[STU_IDENTITY_TOO_LONG].message, "%u")
              != NULL
           && strstr(stu_reasons[STU_IDENTITY_INVALID_UTF8].message, "%u")
              != NULL
           && strstr(stu_reasons[STU_IDENTITY_CONTROL_CHAR].message, "%u")
              != NULL,
           "reasons: identity messages carry the position");

    tap_ok(stu_reasons[STU_PATH_NOT_FOUND].status == 404
           && stu_reasons[STU_METHOD_NOT_ALLOWED].status == 405
           && stu_reasons[STU_CONTENT_TYPE_UNSUPPORTED].status == 415
           && stu_reasons[STU_INTERNAL_ERROR].status == 500
           && stu_reasons[STU_MALFORMED_FORM].status == 400,
           "reasons: statuses");
}


int
main(void)
{
    t_path_checks();
    t_sid_checks();
    t_type_checks();
    t_identity_checks();
    t_reason_checks();

    return tap_done();
}
