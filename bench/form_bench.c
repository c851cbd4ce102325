/*
 * Microbenchmark of the streaming form decoder and the identity checks
 * (ngx_http_studio_testusers_form.c + _validate.c, pure C, no nginx).
 *
 * Builds ~30 KB bodies of "TestUsers=<identity>" pairs, feeds each body to
 * stu_form_feed() in 4 KB pieces (as nginx would hand over its reads), calls
 * stu_form_finish(), and reports raw body bytes decoded per second.
 *
 *   cc -std=c99 -O2 -I ngx_studio_testusers_module bench/form_bench.c \
 *      ngx_studio_testusers_module/ngx_http_studio_testusers_form.c \
 *      ngx_studio_testusers_module/ngx_http_studio_testusers_validate.c
 *   ./form_bench [seconds-per-case]     MB/s, best and median of 20 slices,
 *                                       with the best scanner, then the
 *                                       portable one
 *   ./form_bench -n COUNT ids290|ids15  decode COUNT bodies, untimed (for
 *                                       counting instructions with callgrind)
 */

#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

#include "ngx_http_studio_testusers_form.h"


#define BODY_TARGET   (30 * 1024)
#define PIECE         4096
#define SLICES        20


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}


/* counts identities and their bytes, so the work cannot be optimised away */

static size_t  sink_bytes;

static stu_reason_e
count_identity(void *data, const unsigned char *p, size_t len)
{
    (void) data;
    sink_bytes += len + p[0];
    return STU_OK;
}


/*
 * kind 15:  "%2B1555555dddd" -> "+1555555dddd" (14 bytes raw, 12 decoded)
 * kind 290: "u-dddd-" + letters up to 290 bytes, no escapes
 */

static size_t
make_body(char *buf, size_t cap, int kind, size_t *count)
{
    size_t  len, n, i;
    char    id[400];

    len = 0;

    for (n = 0; ; n++) {
        if (kind == 15) {
            snprintf(id, sizeof(id), "%%2B1555555%04zu", n % 10000);

        } else {
            snprintf(id, sizeof(id), "u-%04zu-", n % 10000);

            for (i = strlen(id); i < 290; i++) {
                id[i] = "abcdefghijklmnopqrstuvwxyz"[(i + n) % 26];
            }

            id[290] = '\0';
        }

        i = strlen("TestUsers=") + strlen(id) + (n ? 1 : 0);

        if (len + i > BODY_TARGET || len + i >= cap) {
            break;
        }

        len += snprintf(buf + len, cap - len, "%sTestUsers=%s",
                        n ? "&" : "", id);
    }

    *count = n;

    return len;
}


static int
run_case(const char *name, int kind, double seconds)
{
    static char   body[BODY_TARGET + 512];
    int           s;
    size_t        len, count, off, piece, iters, i;
    double        t0, t1, mbs[SLICES];
    stu_form_t    f;
    stu_reason_e  rc;

    len = make_body(body, sizeof(body), kind, &count);

    /* correctness first: a benchmark of a decoder that rejects is useless */

    stu_form_init(&f, count_identity, NULL);
    for (off = 0; off < len; off += piece) {
        piece = len - off < PIECE ? len - off : PIECE;
        stu_form_feed(&f, (const unsigned char *) body + off, piece);
    }
    rc = stu_form_finish(&f);

    if (rc != STU_OK || f.identities != count) {
        fprintf(stderr, "form_bench: %s: decoder said %d after %zu of %zu "
                "identities\n", name, (int) rc, f.identities, count);
        return 1;
    }

    /*
     * SLICES timed slices: the best is the figure least disturbed by
     * whatever else the machine runs; the median is shown beside it
     */

    for (s = 0; s < SLICES; s++) {
        iters = 0;
        t0 = now();

        do {
            for (i = 0; i < 64; i++) {
                stu_form_init(&f, count_identity, NULL);

                for (off = 0; off < len; off += piece) {
                    piece = len - off < PIECE ? len - off : PIECE;
                    stu_form_feed(&f, (const unsigned char *) body + off,
                                  piece);
                }

                if (stu_form_finish(&f) != STU_OK || f.identities != count) {
                    fprintf(stderr, "form_bench: %s: rejected\n", name);
                    return 1;
                }
            }

            iters += 64;
            t1 = now();

        } while (t1 - t0 < seconds / SLICES);

        mbs[s] = (double) len * iters / (t1 - t0) / 1e6;
    }

    qsort(mbs, SLICES, sizeof(double), cmp_double);

    printf("%s\tbody_bytes=%zu\tidentities=%zu\tslices=%d\t"
           "MB_per_s=%.0f\tmedian_MB_per_s=%.0f\tns_per_body=%.0f\n",
           name, len, count, SLICES, mbs[SLICES - 1], mbs[SLICES / 2],
           len / mbs[SLICES - 1] * 1e3);

    return 0;
}


/* exactly count bodies, no clock: callgrind counts the instructions */

static int
run_count(const char *name, int kind, size_t count)
{
    static char   body[BODY_TARGET + 512];
    size_t        len, ids, off, piece, i;
    stu_form_t    f;

    len = make_body(body, sizeof(body), kind, &ids);

    for (i = 0; i < count; i++) {
        stu_form_init(&f, count_identity, NULL);

        for (off = 0; off < len; off += piece) {
            piece = len - off < PIECE ? len - off : PIECE;
            stu_form_feed(&f, (const unsigned char *) body + off, piece);
        }

        if (stu_form_finish(&f) != STU_OK || f.identities != ids) {
            fprintf(stderr, "form_bench: %s: rejected\n", name);
            return 1;
        }
    }

    printf("%s\tbody_bytes=%zu\tidentities=%zu\tbodies=%zu\n",
           name, len, ids, count);

    return 0;
}


int
main(int argc, char **argv)
{
    double  seconds;

    if (argc == 4 && strcmp(argv[1], "-n") == 0) {
        return run_count(argv[3], strcmp(argv[3], "ids290") == 0 ? 290 : 15,
                         (size_t) atol(argv[2]));
    }

    seconds = argc > 1 ? atof(argv[1]) : 2.0;

    if (run_case("ids290", 290, seconds) != 0
        || run_case("ids15", 15, seconds) != 0)
    {
        return 1;
    }

    /* the portable word-at-a-time scanner, what a CPU without SSE2 gets */

    if (!stu_form_scanner(STU_SCAN_WORD)
        || run_case("ids290_word", 290, seconds) != 0
        || run_case("ids15_word", 15, seconds) != 0)
    {
        return 1;
    }

    stu_form_scanner(STU_SCAN_BEST);

    if (sink_bytes == 0) {
        return 2;
    }

    return 0;
}
