
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * The JSON body for internal tools: {"TestUsers": ["+1555...", ...]},
 * decoded strictly with jansson and checked by the same identity rules as
 * the form body; and the form encoding it is forwarded as.  No nginx types.
 */


#ifndef _NGX_HTTP_STUDIO_TESTUSERS_JSON_H_INCLUDED_
#define _NGX_HTTP_STUDIO_TESTUSERS_JSON_H_INCLUDED_


#include <stddef.h>

#include "ngx_http_studio_testusers_form.h"


/*
 * Calls handler for every identity, in order, after stu_check_identity();
 * *position is the 1-based value an error is about (0: the body as a whole),
 * *count the number of identities accepted.
 */
stu_reason_e stu_json_parse(const unsigned char *p, size_t len,
    stu_form_identity_pt handler, void *data, size_t *position,
    size_t *count);

/* "TestUsers=" and the value escaped; with dst NULL only the length */
size_t stu_form_encode_pair(unsigned char *dst, const unsigned char *p,
    size_t len);


#endif /* _NGX_HTTP_STUDIO_TESTUSERS_JSON_H_INCLUDED_ */
