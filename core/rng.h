/* rng.h — counter-based random numbers (Philox-4x32-10).
 *
 * A number is a pure function of (key, counter), so work split across any
 * number of threads draws exactly the same values: element i of a stream
 * always comes from counter i. A stateful md_rng wraps a key and a running
 * counter for sequential use (training loops, samplers); its whole state is
 * two 64-bit words, saved in checkpoints.
 */
#ifndef MEDLEY_RNG_H
#define MEDLEY_RNG_H

#include "md.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Four 32-bit outputs for (key, counter). */
void md_philox(uint64_t key, uint64_t counter_hi, uint64_t counter_lo, uint32_t out[4]);

/* Element i of stream `key`: uniform in [0,1) with 24 bits, and N(0,1). */
float md_rand_uniform_at(uint64_t key, uint64_t i);
float md_rand_normal_at(uint64_t key, uint64_t i);
uint32_t md_rand_u32_at(uint64_t key, uint64_t i);

/* Fills n values of stream key starting at element `offset`; threads split
 * by index, results identical for any thread count. */
void md_fill_uniform(float *x, int64_t n, uint64_t key, uint64_t offset, float lo, float hi);
void md_fill_normal(float *x, int64_t n, uint64_t key, uint64_t offset, float mean, float std);

typedef struct md_rng {
    uint64_t key;
    uint64_t counter;
} md_rng;

void md_rng_init(md_rng *r, uint64_t seed);
uint32_t md_rng_u32(md_rng *r);
float md_rng_uniform(md_rng *r);                 /* [0,1) */
float md_rng_normal(md_rng *r);
uint32_t md_rng_below(md_rng *r, uint32_t n);    /* uniform in [0,n), unbiased */
/* Derives an independent key (e.g. per op, per sample). */
uint64_t md_rng_split(md_rng *r);
/* 64-bit mix of a value (splitmix64 finaliser), for deriving keys. */
uint64_t md_hash64(uint64_t x);

#ifdef __cplusplus
}
#endif
#endif
