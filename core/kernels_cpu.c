/* kernels_cpu.c — CPU kernels: oneDNN for products, own loops for the rest.
 *
 * Threads: everything runs on the one OpenMP pool that oneDNN also uses
 * (libgomp), so our loops and the library's never oversubscribe the cores.
 * Work is split by index; no reduction order depends on the thread count.
 */
#include "kernels_cpu.h"

#include <math.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

void md_cpu_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb,
                 float beta, float *c, int64_t ldc)
{
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda,
                                  b, ldb, beta, c, ldc);
    MD_ASSERT(st == dnnl_success);
}

void md_cpu_gemm_batched(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                         float alpha, const float *a, int64_t lda, int64_t sa,
                         const float *b, int64_t ldb, int64_t sb, float beta,
                         float *c, int64_t ldc, int64_t sc)
{
    /* Each product runs whole on one thread (oneDNN runs single-threaded
     * inside a parallel region), so results do not depend on the count. */
    #pragma omp parallel for schedule(static) if (batch > 1)
    for (int64_t i = 0; i < batch; i++)
        md_cpu_gemm(ta, tb, m, n, k, alpha, a + i * sa, lda, b + i * sb, ldb, beta, c + i * sc, ldc);
}

void md_cpu_gemm_naive(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb,
                       float beta, float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) {
                float av = ta ? a[p * lda + i] : a[i * lda + p];
                float bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                s += (double)av * bv;
            }
            float prev = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
            c[i * ldc + j] = (float)(alpha * s) + prev;
        }
}

void md_cpu_layernorm_fwd(float *y, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int64_t rows, int64_t d, float eps)
{
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        float s = 0.f;
        #pragma omp simd reduction(+:s)
        for (int64_t i = 0; i < d; i++)
            s += xr[i];
        float mu = s / (float)d;
        float v = 0.f;
        #pragma omp simd reduction(+:v)
        for (int64_t i = 0; i < d; i++) {
            float t = xr[i] - mu;
            v += t * t;
        }
        float rs = 1.0f / sqrtf(v / (float)d + eps);
        if (mean) mean[r] = mu;
        if (rstd) rstd[r] = rs;
        #pragma omp simd
        for (int64_t i = 0; i < d; i++) {
            float t = (xr[i] - mu) * rs;
            yr[i] = t * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
        }
    }
}

void md_cpu_softmax_fwd(float *y, const float *x, int64_t rows, int64_t d)
{
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        float mx = -INFINITY;
        for (int64_t i = 0; i < d; i++)
            mx = xr[i] > mx ? xr[i] : mx;   /* fmaxf is a call; this vectorises */
        float s = 0.f;
        for (int64_t i = 0; i < d; i++) {
            yr[i] = expf(xr[i] - mx);
            s += yr[i];
        }
        float inv = 1.0f / s;
        for (int64_t i = 0; i < d; i++)
            yr[i] *= inv;
    }
}
