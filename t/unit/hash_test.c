
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * Unit tests of the duplicates hash: every implementation (scalar, SSE2)
 * gives the same value for every length and alignment; every bit of
 * the input and its length matter; distinct identities rarely collide.
 * The key is fixed here, so every run checks the same values.
 */


#include <stdlib.h>
#include <string.h>

#include "ngx_http_studio_testusers_hash.h"
#include "tap.h"


#define T_MAX  700


static uint64_t  t_state = 0x9e3779b97f4a7c15ULL;


static uint64_t
t_rand(void)
{
    /* xorshift64 */
    t_state ^= t_state << 13;
    t_state ^= t_state >> 7;
    t_state ^= t_state << 17;

    return t_state;
}


static void
t_key(stu_hash_key_t *key)
{
    size_t  i;

    for (i = 0; i < STU_HASH_NH_WORDS; i++) {
        key->nh[i] = (uint32_t) t_rand();
    }

    key->mix[0] = t_rand();
    key->mix[1] = t_rand();
}


/* every implementation against the scalar one, at every offset */

static void
t_same(const stu_hash_key_t *key)
{
    size_t          len, off, bad, n, i;
    uint32_t        want;
    unsigned char  *buf;

    static const struct {
        stu_hash_impl_e   impl;
        const char       *name;
    } impls[] = {
        { STU_HASH_SSE2, "sse2" },
        { STU_HASH_BEST, "best" }
    };

    buf = malloc(T_MAX + 64);

    for (n = 0; n < sizeof(impls) / sizeof(impls[0]); n++) {

        if (!stu_hash_use(impls[n].impl)) {
            tap_diag("hash %s: not on this machine", impls[n].name);
            continue;
        }

        bad = 0;

        for (len = 0; len <= T_MAX; len++) {
            for (off = 0; off < 8; off++) {
                memset(buf, 0xa5, T_MAX + 64);
                memcpy(buf + off, "TestUsers", len < 9 ? len : 9);

                for (i = 9; i < len; i++) {
                    buf[off + i] = (unsigned char) t_rand();
                }

                stu_hash_use(STU_HASH_SCALAR);
                want = stu_hash(key, buf + off, len);
                stu_hash_use(impls[n].impl);

                if (stu_hash(key, buf + off, len) != want) {
                    if (bad++ == 0) {
                        tap_diag("hash %s: length %zu offset %zu differs "
                                 "from scalar", impls[n].name, len, off);
                    }
                }
            }
        }

        tap_ok(bad == 0, "hash %s equals scalar at lengths 0-%d, 8 offsets",
               impls[n].name, T_MAX);
    }

    free(buf);
}


/* a flipped bit anywhere, or one byte more or less, changes the value */

static void
t_bits(const stu_hash_key_t *key)
{
    size_t         len, bit, bad, tried;
    uint32_t       h;
    unsigned char  buf[T_MAX + 1];

    bad = 0;
    tried = 0;

    for (len = 1; len <= 400; len += (len < 80) ? 1 : 7) {
        for (bit = 0; bit < len; bit++) {
            buf[bit] = (unsigned char) t_rand();
        }

        h = stu_hash(key, buf, len);

        for (bit = 0; bit < len * 8; bit++) {
            buf[bit / 8] ^= (unsigned char) (1 << bit % 8);
            bad += (stu_hash(key, buf, len) == h);
            buf[bit / 8] ^= (unsigned char) (1 << bit % 8);
            tried++;
        }

        /* the same bytes, one shorter: a trailing zero must not vanish */

        buf[len] = 0;
        bad += (stu_hash(key, buf, len + 1) == h);
        tried++;
    }

    tap_ok(bad == 0, "hash: %zu single-bit flips and lengths, %zu unchanged",
           tried, bad);
}


static int
t_cmp(const void *a, const void *b)
{
    uint32_t  x = *(const uint32_t *) a, y = *(const uint32_t *) b;

    return (x > y) - (x < y);
}


/* 20,000 phone numbers and 300 runs of one letter: about 0.05 expected */

static void
t_spread(const stu_hash_key_t *key)
{
    char       s[400];
    size_t     i, n, same;
    uint32_t  *h;

    h = malloc(sizeof(uint32_t) * 20300);
    n = 0;

    for (i = 0; i < 20000; i++) {
        h[n++] = stu_hash(key, (unsigned char *) s,
                          (size_t) snprintf(s, sizeof(s), "+1555%07zu", i));
    }

    memset(s, 'x', sizeof(s));

    for (i = 1; i <= 300; i++) {
        h[n++] = stu_hash(key, (unsigned char *) s, i);
    }

    qsort(h, n, sizeof(uint32_t), t_cmp);

    same = 0;

    for (i = 1; i < n; i++) {
        same += (h[i] == h[i - 1]);
    }

    tap_ok(same <= 1, "hash: %zu equal values among %zu distinct inputs",
           same, n);

    free(h);
}


int
main(void)
{
    stu_hash_key_t  key, other;

    t_key(&key);
    t_key(&other);

    t_same(&key);

    stu_hash_use(STU_HASH_BEST);
    t_bits(&key);
    t_spread(&key);

    tap_ok(stu_hash(&key, (unsigned char *) "client:alice", 12)
           != stu_hash(&other, (unsigned char *) "client:alice", 12),
           "hash: another key, another value");

    tap_ok(stu_hash(&key, (unsigned char *) "", 0)
           == stu_hash(&key, (unsigned char *) "x", 0),
           "hash: empty input, whatever the pointer");

    return tap_done();
}
