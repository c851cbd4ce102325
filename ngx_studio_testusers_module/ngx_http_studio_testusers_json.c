
/*
 * Copyright (C) ngx_studio_testusers_module authors
 */


#include <string.h>

#include <jansson.h>

#include "ngx_http_studio_testusers_json.h"


stu_reason_e
stu_json_parse(const unsigned char *p, size_t len,
    stu_form_identity_pt handler, void *data, size_t *position,
    size_t *count)
{
    size_t         i, n;
    json_t        *root, *users, *u;
    stu_reason_e   rc;
    json_error_t   error;

    *position = 0;
    *count = 0;

    if (len == 0) {
        return STU_MISSING_IDENTITIES;
    }

    /*
     * jansson rejects invalid UTF-8, "\u0000" and trailing data itself;
     * duplicate keys on request
     */

    root = json_loadb((const char *) p, len, JSON_REJECT_DUPLICATES, &error);

    if (root == NULL) {
        return STU_MALFORMED_JSON;
    }

    rc = STU_OK;

    if (!json_is_object(root)) {
        rc = STU_MALFORMED_JSON;
        goto done;
    }

    users = json_object_get(root, "TestUsers");

    if (json_object_size(root) != (users ? 1 : 0)) {
        rc = STU_UNKNOWN_PARAMETER;
        goto done;
    }

    if (users == NULL) {
        rc = STU_MISSING_IDENTITIES;
        goto done;
    }

    if (!json_is_array(users)) {
        rc = STU_MALFORMED_JSON;
        goto done;
    }

    n = json_array_size(users);

    if (n == 0) {
        rc = STU_MISSING_IDENTITIES;
        goto done;
    }

    for (i = 0; i < n; i++) {
        u = json_array_get(users, i);
        *position = i + 1;

        if (!json_is_string(u)) {
            rc = STU_MALFORMED_JSON;
            goto done;
        }

        rc = stu_check_identity((const unsigned char *) json_string_value(u),
                                json_string_length(u));

        if (rc == STU_OK && handler) {
            rc = handler(data, (const unsigned char *) json_string_value(u),
                         json_string_length(u));
        }

        if (rc != STU_OK) {
            goto done;
        }

        (*count)++;
    }

    *position = 0;

done:

    json_decref(root);

    return rc;
}


/* everything but unreserved characters is escaped, as the clients do */

size_t
stu_form_encode_pair(unsigned char *dst, const unsigned char *p, size_t len)
{
    size_t                n;
    unsigned char         c;
    const unsigned char  *end;
    static const char     hex[] = "0123456789ABCDEF";

    n = sizeof("TestUsers=") - 1;

    if (dst) {
        memcpy(dst, "TestUsers=", n);
    }

    for (end = p + len; p < end; p++) {
        c = *p;

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || c == '~')
        {
            if (dst) {
                dst[n] = c;
            }

            n++;
            continue;
        }

        if (dst) {
            dst[n] = '%';
            dst[n + 1] = hex[c >> 4];
            dst[n + 2] = hex[c & 0xf];
        }

        n += 3;
    }

    return n;
}
