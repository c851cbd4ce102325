
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * The keyed hash of the duplicate-identity set: NH, the universal hash of
 * UMAC.  Each 32-bit word of the input is added to its own key word and
 * pairs are multiplied into 64-bit sums, so two given distinct inputs of
 * up to STU_HASH_NH_MAX bytes collide with probability about 2^-32 when
 * the key is random: a client cannot build a set that degrades into
 * comparing everything with everything.  The sums are mixed into 32 bits.
 *
 * Scalar and SSE2 code compute the same function; the tests compare them.
 * (No AVX2: in a server that does a little vector work per request, the
 * first 256-bit instruction after scalar code stalls while the upper lanes
 * power up, which cost more than the wider loop saved.)
 * No nginx types: unit tests and the fuzzer link this file alone.
 */


#ifndef _NGX_HTTP_STUDIO_TESTUSERS_HASH_H_INCLUDED_
#define _NGX_HTTP_STUDIO_TESTUSERS_HASH_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define STU_HASH_NH_MAX    304          /* bytes covered by one NH pass */
#define STU_HASH_NH_WORDS  80


typedef struct {
    uint32_t   nh[STU_HASH_NH_WORDS];   /* random */
    uint64_t   mix[2];                  /* random */
} stu_hash_key_t;


typedef enum {
    STU_HASH_BEST = 0,
    STU_HASH_SCALAR,
    STU_HASH_SSE2
} stu_hash_impl_e;


/* returns 0 if this machine cannot run it */
int stu_hash_use(stu_hash_impl_e impl);
uint32_t stu_hash(const stu_hash_key_t *key, const unsigned char *p,
    size_t len);


#endif /* _NGX_HTTP_STUDIO_TESTUSERS_HASH_H_INCLUDED_ */
