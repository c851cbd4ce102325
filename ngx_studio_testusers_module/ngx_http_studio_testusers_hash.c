
/*
 * Copyright (C) ngx_studio_testusers_module authors
 */


#include <string.h>

#include "ngx_http_studio_testusers_hash.h"

#if (defined __SSE2__)
#define STU_SSE2  1
#include <emmintrin.h>
#endif


/*
 * NH over at most STU_HASH_NH_MAX bytes into four 64-bit lane sums.
 * 32-byte blocks: words 0-1 go to lane 0, 2-3 to lane 1, 4-5 to lane 2,
 * 6-7 to lane 3, each block with the next eight key words.  A 16-byte
 * block after them: lanes 0 and 1.  The last 1 to 16 bytes (the last 16,
 * overlapping what came before, if there are that many) always make one
 * more block, into lanes 2 and 3, with the last four key words.
 */

typedef void (*stu_nh_pt)(const uint32_t *k, const unsigned char *p,
    size_t len, uint64_t *l);


static stu_nh_pt  stu_nh;


#define stu_nh_pair(l, a, b, ka, kb)                                         \
    l += (uint64_t) (uint32_t) ((a) + (ka)) * (uint32_t) ((b) + (kb))


/* the last bytes as two words that may overlap, for inputs under 16 */

static void
stu_nh_short(const unsigned char *p, size_t len, uint64_t *a, uint64_t *b)
{
    uint32_t  lo, hi;

    if (len >= 8) {
        memcpy(a, p, 8);
        memcpy(b, p + len - 8, 8);

    } else if (len >= 4) {
        memcpy(&lo, p, 4);
        memcpy(&hi, p + len - 4, 4);
        *a = lo;
        *b = hi;

    } else if (len) {
        *a = p[0] | (uint64_t) p[len / 2] << 8 | (uint64_t) p[len - 1] << 16;
        *b = 0;

    } else {
        *a = 0;
        *b = 0;
    }
}


static void
stu_nh_scalar(const uint32_t *k, const unsigned char *p, size_t len,
    uint64_t *l)
{
    uint32_t              w[8];
    uint64_t              a, b;
    const uint32_t       *kl;
    const unsigned char  *end;

    kl = k + STU_HASH_NH_WORDS - 4;
    end = p + len;
    l[0] = l[1] = l[2] = l[3] = 0;

    while (end - p > 32) {
        memcpy(w, p, 32);

        stu_nh_pair(l[0], w[0], w[1], k[0], k[1]);
        stu_nh_pair(l[1], w[2], w[3], k[2], k[3]);
        stu_nh_pair(l[2], w[4], w[5], k[4], k[5]);
        stu_nh_pair(l[3], w[6], w[7], k[6], k[7]);

        p += 32;
        k += 8;
    }

    if (end - p > 16) {
        memcpy(w, p, 16);

        stu_nh_pair(l[0], w[0], w[1], k[0], k[1]);
        stu_nh_pair(l[1], w[2], w[3], k[2], k[3]);
    }

    if (len >= 16) {
        memcpy(w, end - 16, 16);

    } else {
        stu_nh_short(p, len, &a, &b);
        w[0] = (uint32_t) a;
        w[1] = (uint32_t) (a >> 32);
        w[2] = (uint32_t) b;
        w[3] = (uint32_t) (b >> 32);
    }

    stu_nh_pair(l[2], w[0], w[1], kl[0], kl[1]);
    stu_nh_pair(l[3], w[2], w[3], kl[2], kl[3]);
}


#if (STU_SSE2)

#define stu_nh_128(acc, s)                                                   \
    acc = _mm_add_epi64(acc, _mm_mul_epu32(s, _mm_srli_epi64(s, 32)))


/* the 16-byte block, the last block, the lanes out */

static void
stu_nh_finish(const uint32_t *k, const uint32_t *kl, const unsigned char *p,
    const unsigned char *end, size_t len, __m128i acc0, __m128i acc1,
    uint64_t *l)
{
    uint64_t  a, b;
    __m128i   s;

    if (end - p > 16) {
        s = _mm_add_epi32(_mm_loadu_si128((const __m128i *) p),
                          _mm_loadu_si128((const __m128i *) k));
        stu_nh_128(acc0, s);
    }

    if (len >= 16) {
        s = _mm_loadu_si128((const __m128i *) (end - 16));

    } else {
        stu_nh_short(p, len, &a, &b);
        s = _mm_set_epi64x((long long) b, (long long) a);
    }

    s = _mm_add_epi32(s, _mm_loadu_si128((const __m128i *) kl));
    stu_nh_128(acc1, s);

    _mm_storeu_si128((__m128i *) l, acc0);
    _mm_storeu_si128((__m128i *) (l + 2), acc1);
}


static void
stu_nh_sse2(const uint32_t *k, const unsigned char *p, size_t len,
    uint64_t *l)
{
    __m128i               acc0, acc1, s0, s1;
    const uint32_t       *kl;
    const unsigned char  *end;

    kl = k + STU_HASH_NH_WORDS - 4;
    end = p + len;
    acc0 = _mm_setzero_si128();
    acc1 = _mm_setzero_si128();

    while (end - p > 32) {
        s0 = _mm_add_epi32(_mm_loadu_si128((const __m128i *) p),
                           _mm_loadu_si128((const __m128i *) k));
        s1 = _mm_add_epi32(_mm_loadu_si128((const __m128i *) (p + 16)),
                           _mm_loadu_si128((const __m128i *) (k + 4)));
        stu_nh_128(acc0, s0);
        stu_nh_128(acc1, s1);

        p += 32;
        k += 8;
    }

    stu_nh_finish(k, kl, p, end, len, acc0, acc1, l);
}

#endif


static uint64_t
stu_mix(uint64_t a, uint64_t b)
{
#if (defined __SIZEOF_INT128__)
    unsigned __int128  m;

    m = (unsigned __int128) a * b;

    return (uint64_t) m ^ (uint64_t) (m >> 64);
#else
    uint64_t  m;

    m = (a ^ (b >> 29)) * (b | 1);

    return m ^ (m >> 32);
#endif
}


int
stu_hash_use(stu_hash_impl_e impl)
{
    switch (impl) {

    case STU_HASH_SCALAR:
        stu_nh = stu_nh_scalar;
        return 1;

#if (STU_SSE2)
    case STU_HASH_SSE2:
        stu_nh = stu_nh_sse2;
        return 1;

#endif

    case STU_HASH_BEST:
#if (STU_SSE2)
        stu_nh = stu_nh_sse2;
#else
        stu_nh = stu_nh_scalar;
#endif
        return 1;

    default:
        return 0;
    }
}


uint32_t
stu_hash(const stu_hash_key_t *key, const unsigned char *p, size_t len)
{
    size_t           n;
    uint64_t         a, b, h, l[4];
    const uint32_t  *k;

    if (len <= 16) {

        /* what stu_nh() gives for these: only the last block, lanes 2, 3 */

        stu_nh_short(p, len, &a, &b);

        if (len == 16) {
            memcpy(&a, p, 8);
            memcpy(&b, p + 8, 8);
        }

        l[2] = 0;
        l[3] = 0;
        k = key->nh + STU_HASH_NH_WORDS - 4;

        stu_nh_pair(l[2], (uint32_t) a, (uint32_t) (a >> 32), k[0], k[1]);
        stu_nh_pair(l[3], (uint32_t) b, (uint32_t) (b >> 32), k[2], k[3]);

        return (uint32_t) stu_mix(l[2] ^ key->mix[0],
                                  l[3] ^ key->mix[1] ^ len);
    }

    if (stu_nh == NULL) {
        (void) stu_hash_use(STU_HASH_BEST);
    }

    h = 0;
    n = len;

    /* longer than the key (never, for an identity): 288 bytes at a time */

    while (n > STU_HASH_NH_MAX) {
        stu_nh(key->nh, p, 288, l);
        h = stu_mix(h ^ (l[0] + l[2]) ^ key->mix[0],
                    (l[1] + l[3]) ^ key->mix[1]);
        p += 288;
        n -= 288;
    }

    stu_nh(key->nh, p, n, l);

    return (uint32_t) stu_mix(h ^ (l[0] + l[2]) ^ key->mix[0],
                              (l[1] + l[3]) ^ key->mix[1] ^ len);
}
