
/*
 * libFuzzer target for the JSON body path: stu_json_parse() must never
 * crash or leak, must only hand out identities that pass
 * stu_check_identity(), and what it accepts must survive the trip to the
 * form body it is forwarded as: stu_form_encode_pair() then the form
 * decoder give back the same identities, in order.
 */

#include <stdlib.h>
#include <string.h>

#include "ngx_http_studio_testusers_json.h"


#define MAX_IDS  4096

typedef struct {
    size_t          n;
    unsigned char  *p[MAX_IDS];
    size_t          len[MAX_IDS];
    size_t          next;       /* form side: index of the next expected */
    int             mismatch;
} ids_t;


static stu_reason_e
collect(void *data, const unsigned char *p, size_t len)
{
    ids_t  *ids = data;

    if (stu_check_identity(p, len) != STU_OK || ids->n == MAX_IDS) {
        abort();
    }

    ids->p[ids->n] = malloc(len ? len : 1);
    memcpy(ids->p[ids->n], p, len);
    ids->len[ids->n++] = len;

    return STU_OK;
}


static stu_reason_e
compare(void *data, const unsigned char *p, size_t len)
{
    ids_t  *ids = data;

    if (ids->next >= ids->n || ids->len[ids->next] != len
        || memcmp(ids->p[ids->next], p, len) != 0)
    {
        ids->mismatch = 1;
    }

    ids->next++;

    return STU_OK;
}


int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    size_t          i, pos, count, len, off;
    ids_t           ids;
    stu_form_t      f;
    stu_reason_e    rc;
    unsigned char  *body;

    memset(&ids, 0, sizeof(ids));

    rc = stu_json_parse(data, size, collect, &ids, &pos, &count);

    if (rc == STU_OK) {
        if (count != ids.n || count == 0 || pos != 0) {
            abort();
        }

        len = 0;
        for (i = 0; i < ids.n; i++) {
            len += stu_form_encode_pair(NULL, ids.p[i], ids.len[i]) + 1;
        }

        body = malloc(len);
        off = 0;

        for (i = 0; i < ids.n; i++) {
            if (i) {
                body[off++] = '&';
            }

            off += stu_form_encode_pair(body + off, ids.p[i], ids.len[i]);
        }

        stu_form_init(&f, compare, &ids);

        if (stu_form_feed(&f, body, off) != STU_OK
            || stu_form_finish(&f) != STU_OK
            || ids.mismatch || ids.next != ids.n)
        {
            abort();
        }

        free(body);

    } else if (count > ids.n || (pos && pos != count + 1)) {
        abort();
    }

    for (i = 0; i < ids.n; i++) {
        free(ids.p[i]);
    }

    return 0;
}
