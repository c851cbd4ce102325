
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * Streaming, strict application/x-www-form-urlencoded decoder for the
 * Test Users body: the only field is "TestUsers", repeated.  Bytes may
 * arrive in any number of pieces (buffers, temp file reads, HTTP/2 frames);
 * an escape or a key split across pieces decodes the same as in one piece.
 * No nginx types: unit tests and the fuzzer link this file alone.
 */


#ifndef _NGX_HTTP_STUDIO_TESTUSERS_FORM_H_INCLUDED_
#define _NGX_HTTP_STUDIO_TESTUSERS_FORM_H_INCLUDED_


#include <stddef.h>

#include "ngx_http_studio_testusers_validate.h"


/*
 * Called for every identity that passed the core checks; p points into
 * the decoder or into the piece being fed, valid only during the call.
 */
typedef stu_reason_e (*stu_form_identity_pt)(void *data,
    const unsigned char *p, size_t len);


typedef struct {
    stu_form_identity_pt   handler;
    void                  *data;

    size_t                 bytes;        /* raw body bytes fed */
    size_t                 identities;   /* values decoded and accepted */

    stu_reason_e           error;        /* the first error, then sticky */
    size_t                 position;     /* 1-based value of the error */

    unsigned               state;
    unsigned               hi;           /* first digit of an escape */
    unsigned               unusual;      /* value has a byte not printable
                                            ASCII: check it at its end */
    size_t                 pair_len;     /* raw bytes of the current pair */
    size_t                 key_len;
    size_t                 value_len;

    unsigned char          value[STU_IDENTITY_MAX];
} stu_form_t;


/*
 * How runs of plain bytes are found: SSE2 where the compiler targets it
 * (all of x86-64), else 8 bytes at a time in plain C.  The tests run each
 * one; returns 0 if this build has no such scanner.
 */
typedef enum {
    STU_SCAN_BEST = 0,
    STU_SCAN_WORD,
    STU_SCAN_SSE2
} stu_scan_e;


int stu_form_scanner(stu_scan_e scan);
void stu_form_init(stu_form_t *f, stu_form_identity_pt handler, void *data);
stu_reason_e stu_form_feed(stu_form_t *f, const unsigned char *p, size_t len);
stu_reason_e stu_form_finish(stu_form_t *f);


#endif /* _NGX_HTTP_STUDIO_TESTUSERS_FORM_H_INCLUDED_ */
