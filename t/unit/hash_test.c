
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * Unit tests of the duplicates hash: every implementation (scalar, SSE2)
 * and the short-input shortcut give a plain reference's value for every
 * length and alignment; every bit of the input and its length matter;
 * distinct identities rarely collide.
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


/*
 * The function as ngx_http_studio_testusers_hash.h describes it, written
 * plainly: what every implementation, and every shortcut, must give.
 */

static uint32_t
t_word(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16
           | (uint32_t) p[3] << 24;
}


static uint64_t
t_pair(const unsigned char *w, const uint32_t *k)
{
    return (uint64_t) (uint32_t) (t_word(w) + k[0])
           * (uint32_t) (t_word(w + 4) + k[1]);
}


static uint64_t
t_mix(uint64_t a, uint64_t b)
{
    unsigned __int128  m;

    m = (unsigned __int128) a * b;

    return (uint64_t) m ^ (uint64_t) (m >> 64);
}


static void
t_nh(const stu_hash_key_t *key, const unsigned char *p, size_t len,
    uint64_t *l)
{
    size_t          i, q, n;
    unsigned char   last[16];
    const uint32_t *k;

    l[0] = l[1] = l[2] = l[3] = 0;
    k = key->nh;

    for (i = 0; len - i > 32; i += 32, k += 8) {
        for (q = 0; q < 4; q++) {
            l[q] += t_pair(p + i + 8 * q, k + 2 * q);
        }
    }

    if (len - i > 16) {
        l[0] += t_pair(p + i, k);
        l[1] += t_pair(p + i + 8, k + 2);
    }

    memset(last, 0, 16);

    if (len >= 16) {
        memcpy(last, p + len - 16, 16);

    } else if (len >= 8) {
        memcpy(last, p, 8);
        memcpy(last + 8, p + len - 8, 8);

    } else if (len >= 4) {
        memcpy(last, p, 4);
        memcpy(last + 8, p + len - 4, 4);

    } else if (len) {
        last[0] = p[0];
        last[1] = p[len / 2];
        last[2] = p[len - 1];
    }

    n = STU_HASH_NH_WORDS - 4;
    l[2] += t_pair(last, key->nh + n);
    l[3] += t_pair(last + 8, key->nh + n + 2);
}


static uint32_t
t_ref(const stu_hash_key_t *key, const unsigned char *p, size_t len)
{
    size_t    n;
    uint64_t  h, l[4];

    h = 0;

    for (n = len; n > STU_HASH_NH_MAX; n -= 288, p += 288) {
        t_nh(key, p, 288, l);
        h = t_mix(h ^ (l[0] + l[2]) ^ key->mix[0], (l[1] + l[3]) ^ key->mix[1]);
    }

    t_nh(key, p, n, l);

    return (uint32_t) t_mix(h ^ (l[0] + l[2]) ^ key->mix[0],
                            (l[1] + l[3]) ^ key->mix[1] ^ len);
}


/* every implementation against the reference, at every offset */

static void
t_same(const stu_hash_key_t *key)
{
    size_t          len, off, bad, n, i;
    uint32_t        want, got;
    unsigned char  *buf, *exact;

    static const struct {
        stu_hash_impl_e   impl;
        const char       *name;
    } impls[] = {
        { STU_HASH_SCALAR, "scalar" },
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

                want = t_ref(key, buf + off, len);

                /* the input ends where its allocation does: ASan sees a
                 * read past it */

                exact = malloc(off + len ? off + len : 1);
                memcpy(exact + off, buf + off, len);
                got = stu_hash(key, exact + off, len);
                free(exact);

                if (got != want) {
                    if (bad++ == 0) {
                        tap_diag("hash %s: length %zu offset %zu differs "
                                 "from the reference", impls[n].name, len,
                                 off);
                    }
                }
            }
        }

        tap_ok(bad == 0, "hash %s equals the reference at lengths 0-%d, "
               "8 offsets", impls[n].name, T_MAX);
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
