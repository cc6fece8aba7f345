/* kernels_cpu.h — CPU kernels: the reference every other backend is checked
 * against, and the fallback for slots a backend leaves NULL. */
#ifndef MEDLEY_KERNELS_CPU_H
#define MEDLEY_KERNELS_CPU_H

#include "md.h"

void md_cpu_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb,
                 float beta, float *c, int64_t ldc);
void md_cpu_gemm_batched(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                         float alpha, const float *a, int64_t lda, int64_t sa,
                         const float *b, int64_t ldb, int64_t sb, float beta,
                         float *c, int64_t ldc, int64_t sc);
/* A weight W [n, k] (its values exact in half precision, as a model is
 * loaded) packed for products of few rows: panels of MD_F16_PANEL of its
 * rows, panel t holding W[t·P + c][p] at [p][c], zeros past n. */
#define MD_F16_PANEL 48
size_t md_f16_panels_size(int64_t n, int64_t k);   /* in halves */
void md_f16_panels_pack(uint16_t *dst, const uint16_t *w, int64_t n, int64_t k);   /* w: W in f16, [n, k] */
/* C = A · Bᵀ (+ beta C), B [n, k] (ldb k) given also as its panels:
 * products of up to 32 rows read the panels (half the bytes, each output
 * one sum in k's order, the same bits however the rows and threads are
 * split); larger ones are md_cpu_gemm's on b. */
void md_cpu_gemm_f16p(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                      const uint16_t *panels, float beta, float *c, int64_t ldc);
/* As md_cpu_gemm with the operands rounded to bf16 and f32 sums, on the
 * CPU's bf16 units through oneDNN; the same bits on any thread count.
 * Falls back to md_cpu_gemm where it does not apply (alpha != 1, beta
 * other than 0 or 1, small products, no fast bf16 kernel here). */
void md_cpu_gemm_bf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *a, int64_t lda, const float *b, int64_t ldb,
                      float beta, float *c, int64_t ldc);
/* Whether this CPU has a fast bf16 product (oneDNN's choice, not a
 * reference kernel); *impl (optional) names oneDNN's implementation. */
bool md_cpu_bf16_available(const char **impl);
/* Naive triple loop, double accumulation: the obvious reference. */
void md_cpu_gemm_naive(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb,
                       float beta, float *c, int64_t ldc);
void md_cpu_layernorm_fwd(float *y, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int64_t rows, int64_t d, float eps);
void md_cpu_softmax_fwd(float *y, const float *x, int64_t rows, int64_t d);

#endif
