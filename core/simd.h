/* simd.h — scalar math written so gcc vectorises it inside `omp simd` loops
 * (libm's expf/erff are calls the vectoriser cannot inline; accuracy: a few
 * ulp over the f32 range, checked against libm by test_core), and the
 * AVX-512 horizontal sums and half-precision loads and stores the
 * hand-written kernels share. */
#ifndef MEDLEY_SIMD_H
#define MEDLEY_SIMD_H

#include <stdint.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

/* e^x: range reduction by ln 2, degree-6 polynomial (Cephes coefficients),
 * exponent built by integer arithmetic. Inputs above 88 give e^88 (finite);
 * below -87.3, 0. */
static inline float md_fast_exp(float x)
{
    float xc = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
    float n = __builtin_rintf(xc * 1.44269504088896341f);   /* rint vectorises; floor does not */
    float f = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * f + 1.3981999507e-3f;
    p = p * f + 8.3334519073e-3f;
    p = p * f + 4.1665795894e-2f;
    p = p * f + 1.6666665459e-1f;
    p = p * f + 5.0000001201e-1f;
    float y = p * f * f + f + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;   /* bits of 2^n */
    float s;
    memcpy(&s, &e, 4);
    float r = y * s;
    return x < -87.3f ? 0.0f : r;
}

/* erf(x), two branches blended (both vectorise, no exp):
 *   |x| < 1: the Maclaurin series to x^21 (truncation < 2e-9);
 *   |x| >= 1: 1 - 1/(1 + a1·z + ... + a6·z⁶)^16 (Abramowitz & Stegun
 *            7.1.28, |error| <= 3e-7), where the sixteenth power is far
 *            enough from 1 that its rounding stays small. Large |x|
 *            overflows the power to +inf, giving exactly ±1. */
static inline float md_fast_erf(float x)
{
    float z = x < 0 ? -x : x;
    float x2 = x * x;
    float s = 1.31225329e-8f;
    s = s * x2 - 1.45038522e-7f;
    s = s * x2 + 1.45891690e-6f;
    s = s * x2 - 1.32275132e-5f;
    s = s * x2 + 1.06837607e-4f;
    s = s * x2 - 7.57575758e-4f;
    s = s * x2 + 4.62962963e-3f;
    s = s * x2 - 2.38095238e-2f;
    s = s * x2 + 1.0e-1f;
    s = s * x2 - 3.33333333e-1f;
    s = s * x2 + 1.0f;
    float small = 1.12837916709551257f * x * s;   /* 2/sqrt(pi) */
    float p = 0.0000430638f;
    p = p * z + 0.0002765672f;
    p = p * z + 0.0001520143f;
    p = p * z + 0.0092705272f;
    p = p * z + 0.0422820123f;
    p = p * z + 0.0705230784f;
    p = p * z + 1.0f;
    p = p * p;   /* ^2 */
    p = p * p;   /* ^4 */
    p = p * p;   /* ^8 */
    p = p * p;   /* ^16 */
    float r = 1.0f - 1.0f / p;
    float large = x < 0 ? -r : r;
    return z < 1.0f ? small : large;
}

static inline float md_fast_sigmoid(float x) { return 1.0f / (1.0f + md_fast_exp(-x)); }

static inline float md_fast_tanh(float x)
{
    float e = md_fast_exp(-2.0f * (x < 0 ? -x : x));
    float r = (1.0f - e) / (1.0f + e);
    return x < 0 ? -r : r;
}

#if defined(__AVX512F__)
/* The sums of the 8 lanes of each of v[0..7], in order. Every input goes
 * through the same tree, so a sum does not depend on its slot. */
static inline __m256 md_hsum8x8(const __m256 *v)
{
    __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
    __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
    t0 = _mm256_hadd_ps(t0, t1);
    t1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(t0, t1, 0x20), _mm256_permute2f128_ps(t0, t1, 0x31));
}

/* 16 lanes folded to 8 (lane i + lane i+8) */
static inline __m256 md_fold16(__m512 v)
{
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/* 16 half-precision values (f16 bits) widened to f32, and back (rounded
 * to nearest even): exact as md_f16_to_f32 / md_f32_to_f16 one by one */
static inline __m512 md_load_half16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
}

static inline void md_store_half16(uint16_t *p, __m512 v)
{
    _mm256_storeu_si256((__m256i *)(void *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
#endif

#endif
