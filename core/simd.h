/* simd.h — scalar math written so gcc vectorises it inside `omp simd` loops
 * (libm's expf/erff are calls the vectoriser cannot inline). Accuracy: a few
 * ulp over the f32 range, checked against libm by test_core. */
#ifndef MEDLEY_SIMD_H
#define MEDLEY_SIMD_H

#include <stdint.h>
#include <string.h>

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

/* erf(x) via the complementary form t·exp(-z² + P(t)), t = 1/(1 + z/2)
 * (a classical rational-exponential fit, |relative error| < 1.2e-7). */
static inline float md_fast_erf(float x)
{
    float z = x < 0 ? -x : x;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    float erfc = t * md_fast_exp(-z * z + p);
    float r = 1.0f - erfc;
    return x < 0 ? -r : r;
}

static inline float md_fast_sigmoid(float x) { return 1.0f / (1.0f + md_fast_exp(-x)); }

static inline float md_fast_tanh(float x)
{
    float e = md_fast_exp(-2.0f * (x < 0 ? -x : x));
    float r = (1.0f - e) / (1.0f + e);
    return x < 0 ? -r : r;
}

#endif
