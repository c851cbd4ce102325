
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * Pure checks over byte ranges: request path, Content-Type, identities.
 * No nginx types here, so unit tests and the fuzzer link this file alone.
 */


#ifndef _NGX_HTTP_STUDIO_TESTUSERS_VALIDATE_H_INCLUDED_
#define _NGX_HTTP_STUDIO_TESTUSERS_VALIDATE_H_INCLUDED_


#include <stddef.h>


#define STU_FLOW_SID_LEN      34
#define STU_IDENTITY_MAX      300


/* why a request is refused; names and statuses live in stu_reasons[] */
typedef enum {
    STU_OK = 0,
    STU_PATH_NOT_FOUND,
    STU_QUERY_STRING,
    STU_METHOD_NOT_ALLOWED,
    STU_GET_WITH_BODY,
    STU_CONTENT_TYPE_UNSUPPORTED,
    STU_CONTENT_TYPE_DUPLICATE,
    STU_MALFORMED_ESCAPE,
    STU_MALFORMED_FORM,
    STU_UNKNOWN_PARAMETER,
    STU_MISSING_IDENTITIES,
    STU_IDENTITY_EMPTY,
    STU_IDENTITY_TOO_LONG,
    STU_IDENTITY_INVALID_UTF8,
    STU_IDENTITY_CONTROL_CHAR,
    STU_INTERNAL_ERROR,
    STU_AUDIT_UNAVAILABLE,
    STU_MALFORMED_JSON,
    STU_TEAM_UNKNOWN,
    STU_FLOW_NOT_ALLOWED,
    STU_METHOD_NOT_PERMITTED,
    STU_IDENTITY_PATTERN,
    STU_TOO_MANY_IDENTITIES,
    STU_DUPLICATE_IDENTITY,
    STU_CONFLICT,
    STU_JSON_TOO_LARGE,
    STU_ZONE_FULL,
    STU_REASON_LAST
} stu_reason_e;


typedef enum {
    STU_BODY_OTHER = 0,
    STU_BODY_FORM,
    STU_BODY_JSON
} stu_body_kind_e;


typedef struct {
    const char   *name;       /* stable code for logs and variables */
    unsigned      status;     /* HTTP status */
    unsigned      code;       /* Twilio error code */
    const char   *message;    /* "%u" is replaced with the identity position */
} stu_reason_t;


extern const stu_reason_t  stu_reasons[STU_REASON_LAST];


/*
 * uri: the raw request target as received (path and optional query).
 * On STU_OK and STU_QUERY_STRING, *sid points at the 34-byte Flow SID.
 */
stu_reason_e stu_check_path(const unsigned char *uri, size_t len,
    const unsigned char **sid);
int stu_flow_sid_valid(const unsigned char *p, size_t len);
stu_reason_e stu_check_content_type(const unsigned char *p, size_t len);
stu_body_kind_e stu_content_type_kind(const unsigned char *p, size_t len);
stu_reason_e stu_check_identity(const unsigned char *p, size_t len);


#endif /* _NGX_HTTP_STUDIO_TESTUSERS_VALIDATE_H_INCLUDED_ */
