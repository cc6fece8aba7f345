/* rng.c — Philox-4x32-10 (Salmon et al., SC'11) and helpers. */
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo)
{
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void md_philox(uint64_t key, uint64_t counter_hi, uint64_t counter_lo, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)counter_lo, c1 = (uint32_t)(counter_lo >> 32);
    uint32_t c2 = (uint32_t)counter_hi, c3 = (uint32_t)(counter_hi >> 32);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, c0, &hi0, &lo0);
        mulhilo(PHILOX_M1, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static inline float u32_to_unit(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

uint32_t md_rand_u32_at(uint64_t key, uint64_t i)
{
    uint32_t o[4];
    md_philox(key, 0, i >> 2, o);
    return o[i & 3];
}

float md_rand_uniform_at(uint64_t key, uint64_t i) { return u32_to_unit(md_rand_u32_at(key, i)); }

/* Box–Muller on one Philox block: element i uses the pair belonging to it. */
float md_rand_normal_at(uint64_t key, uint64_t i)
{
    uint32_t o[4];
    md_philox(key, 1, i >> 1, o);
    float u1 = ((float)(o[0] >> 8) + 1.0f) * (1.0f / 16777217.0f);   /* (0,1] */
    float u2 = u32_to_unit(o[1]);
    float r = sqrtf(-2.0f * logf(u1));
    float th = 6.28318530717958647692f * u2;
    return (i & 1) ? r * sinf(th) : r * cosf(th);
}

void md_fill_uniform(float *x, int64_t n, uint64_t key, uint64_t offset, float lo, float hi)
{
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * md_rand_uniform_at(key, offset + (uint64_t)i);
}

void md_fill_normal(float *x, int64_t n, uint64_t key, uint64_t offset, float mean, float std)
{
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        x[i] = mean + std * md_rand_normal_at(key, offset + (uint64_t)i);
}

uint64_t md_hash64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void md_rng_init(md_rng *r, uint64_t seed)
{
    r->key = md_hash64(seed);
    r->counter = 0;
}

uint32_t md_rng_u32(md_rng *r) { return md_rand_u32_at(r->key, r->counter++); }
float md_rng_uniform(md_rng *r) { return u32_to_unit(md_rng_u32(r)); }
float md_rng_normal(md_rng *r) { return md_rand_normal_at(r->key ^ 0x5bd1e995ull, r->counter++); }

uint32_t md_rng_below(md_rng *r, uint32_t n)
{
    MD_ASSERT(n > 0);
    uint32_t lim = (uint32_t)(-n) % n;   /* reject the low values that bias */
    for (;;) {
        uint32_t x = md_rng_u32(r);
        if (x >= lim) return x % n;
    }
}

uint64_t md_rng_split(md_rng *r)
{
    uint64_t a = md_rng_u32(r), b = md_rng_u32(r);
    return md_hash64((a << 32) | b);
}
