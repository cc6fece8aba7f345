/* kernels_cpu.c — CPU kernels: oneDNN for products, own loops for the rest.
 *
 * Threads: everything runs on the one OpenMP pool that oneDNN also uses
 * (libgomp), so our loops and the library's never oversubscribe the cores.
 * Work is split by index; no reduction order depends on the thread count.
 */
#include "kernels_cpu.h"
#include "simd.h"

#include <math.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

/* ---- products with few rows ------------------------------------------------
 * A sampler's step multiplies a handful of rows (a token per row) by every
 * weight matrix, and attention over a KV cache one query row by the cached
 * keys. sgemm pays a fixed cost per call (packing, dispatch) that is most
 * of the time at these shapes, so up to SMALL_M rows run in these loops:
 * register tiles of up to 4 rows by 4 columns (x · Wᵀ: sums along K, 16
 * lanes at a time, reduced once at the end) or 4 rows by 64 columns (x ·
 * W: a row of W at a time). Each output's sum runs in one fixed order;
 * threads split columns only, so results do not depend on their count. */
#define SMALL_M 32
#define SMALL_PAR_MACS 65536   /* below this many multiply-adds one thread is quicker */

/* The tiles are left out of the sanitizer builds' instrumentation, as the
 * oneDNN calls they replace are: every load checked made the sanitizer
 * suite's generations ten times slower. Their indexing is checked by
 * test_core against the reference over every edge of the tiles, and a
 * build with them instrumented passed the sanitizer suite. */
#define SMALL_KERNEL __attribute__((no_sanitize("address", "undefined")))

static inline SMALL_KERNEL void small_store(float *c, float v, float alpha, float beta)
{
    *c = beta == 0.0f ? alpha * v : alpha * v + beta * *c;
}

#if defined(__AVX512F__)
/* C[0..MR, 0..NR] of a · bᵀ, rows a (lda), columns b (ldb), k long. */
static inline __attribute__((always_inline)) SMALL_KERNEL void
nt_tile(int MR, int NR, int64_t k, float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
        float *c, int64_t ldc)
{
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int q = 0; q < 4; q++)
            acc[r][q] = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 16 <= k; p += 16) {
        __m512 bv[4];
        for (int q = 0; q < NR; q++)
            bv[q] = _mm512_loadu_ps(b + q * ldb + p);
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_loadu_ps(a + r * lda + p);
            for (int q = 0; q < NR; q++)
                acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
        }
    }
    if (p < k) {
        __mmask16 mk = (__mmask16)((1u << (k - p)) - 1u);
        __m512 bv[4];
        for (int q = 0; q < NR; q++)
            bv[q] = _mm512_maskz_loadu_ps(mk, b + q * ldb + p);
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_maskz_loadu_ps(mk, a + r * lda + p);
            for (int q = 0; q < NR; q++)
                acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
        }
    }
    /* 16 lanes -> 8, then eight sums at a time */
    __m256 h[16];
    for (int r = 0; r < 4; r++)
        for (int q = 0; q < 4; q++)
            h[r * 4 + q] = md_fold16(acc[r][q]);
    float out[16];
    _mm256_storeu_ps(out, md_hsum8x8(h));
    _mm256_storeu_ps(out + 8, md_hsum8x8(h + 8));
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NR; q++)
            small_store(c + r * ldc + q, out[r * 4 + q], alpha, beta);
}

/* C[0..MR, 0..nc] of a · b, b row-major [k, n] (ldb), nc <= 64. */
static inline __attribute__((always_inline)) SMALL_KERNEL void
nn_tile(int MR, int64_t nc, int64_t k, float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
        float beta, float *c, int64_t ldc)
{
    __m512 acc[4][4];
    __mmask16 mk[4];
    for (int q = 0; q < 4; q++) {
        int64_t left = nc - 16 * q;
        mk[q] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
        for (int r = 0; r < 4; r++)
            acc[r][q] = _mm512_setzero_ps();
    }
    const int nq = (int)((nc + 15) / 16);
    for (int64_t p = 0; p < k; p++) {
        __m512 bv[4];
        for (int q = 0; q < nq; q++)
            bv[q] = _mm512_maskz_loadu_ps(mk[q], b + p * ldb + 16 * q);
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(a[r * lda + p]);
            for (int q = 0; q < nq; q++)
                acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < nq; q++) {
            float *cr = c + r * ldc + 16 * q;
            __m512 v = _mm512_mul_ps(_mm512_set1_ps(alpha), acc[r][q]);
            if (beta != 0.0f)
                v = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mk[q], cr), v);
            _mm512_mask_storeu_ps(cr, mk[q], v);
        }
}
#else
static inline SMALL_KERNEL void nt_tile(int MR, int NR, int64_t k, float alpha, const float *a, int64_t lda,
                                        const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NR; q++) {
            float s = 0.f;
            for (int64_t p = 0; p < k; p++)
                s += a[r * lda + p] * b[q * ldb + p];
            small_store(c + r * ldc + q, s, alpha, beta);
        }
}

static inline SMALL_KERNEL void nn_tile(int MR, int64_t nc, int64_t k, float alpha, const float *a, int64_t lda,
                                        const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    for (int r = 0; r < MR; r++)
        for (int64_t j = 0; j < nc; j++) {
            float s = 0.f;
            for (int64_t p = 0; p < k; p++)
                s += a[r * lda + p] * b[p * ldb + j];
            small_store(c + r * ldc + j, s, alpha, beta);
        }
}
#endif

/* one column block (NT: 4 columns, NN: 64) over every row, four at a time;
 * the tiles' shapes are constants in each branch so each is compiled alone */
SMALL_KERNEL static void small_block(bool tb, int64_t m, int64_t j, int64_t nc, int64_t k, float alpha,
                                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                                     int64_t ldc)
{
    for (int64_t i = 0; i < m; i += 4) {
        const int mr = (int)MD_MIN(4, m - i);
        const float *ai = a + i * lda;
        float *ci = c + i * ldc + j;
        if (tb) {
            const float *bj = b + j * ldb;
            if (mr == 4 && nc == 4)
                nt_tile(4, 4, k, alpha, ai, lda, bj, ldb, beta, ci, ldc);
            else if (mr == 1 && nc == 4)
                nt_tile(1, 4, k, alpha, ai, lda, bj, ldb, beta, ci, ldc);
            else if (mr == 2 && nc == 4)
                nt_tile(2, 4, k, alpha, ai, lda, bj, ldb, beta, ci, ldc);
            else
                for (int r = 0; r < mr; r++)
                    for (int64_t q = 0; q < nc; q++)
                        nt_tile(1, 1, k, alpha, ai + r * lda, lda, bj + q * ldb, ldb, beta, ci + r * ldc + q, ldc);
        } else {
            const float *bj = b + j;
            if (mr == 4)
                nn_tile(4, nc, k, alpha, ai, lda, bj, ldb, beta, ci, ldc);
            else if (mr == 1)
                nn_tile(1, nc, k, alpha, ai, lda, bj, ldb, beta, ci, ldc);
            else
                for (int r = 0; r < mr; r++)
                    nn_tile(1, nc, k, alpha, ai + r * lda, lda, bj, ldb, beta, ci + r * ldc, ldc);
        }
    }
}

static void small_gemm(bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    const int64_t nb = tb ? 4 : 64, blocks = (n + nb - 1) / nb;
    #pragma omp parallel for schedule(static) if (m * n * k >= SMALL_PAR_MACS && blocks > 1)
    for (int64_t t = 0; t < blocks; t++)
        small_block(tb, m, t * nb, MD_MIN(nb, n - t * nb), k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---- larger products --------------------------------------------------------
 * oneDNN's sgemm splits the sum along k across threads for some shapes
 * (m 144, n 256, k 1024: 31062 of 36864 outputs differed between one thread
 * and two; m 80, n 256, k 1024 too), so its bits would follow the thread
 * count. C is cut into square tiles by its shape alone — the largest of
 * 256, 128 or 64 that still gives GEMM_MIN_TILES tiles to share out (big
 * tiles keep sgemm's packing a small share: 64 × 128 tiles made 1024³ run
 * at 0.70× the raw call, 256 at about 1×) — and each tile is a whole
 * sgemm on one thread: the loop always opens a parallel region, even for
 * one tile, because oneDNN runs sequentially only inside one. Every output
 * is then summed in one order whatever the count. A call made inside a
 * parallel construct (active, or inactive on one thread: omp_get_level)
 * runs whole on its thread and stays one call (tiling those cost a
 * training step of the transformer block ~15%: the weight gradients run
 * that way). Even on one thread an sgemm's bits follow the call's shape
 * (m 144, n 256, k 1024: 31062 outputs differ between the whole call and
 * tiles), so a call site must make the same calls on any thread count. */
#define GEMM_MIN_TILES 8

static void tiled_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    int64_t ts = 64;
    for (int64_t s = 256; s > 64; s /= 2)
        if (((m + s - 1) / s) * ((n + s - 1) / s) >= GEMM_MIN_TILES) {
            ts = s;
            break;
        }
    const int64_t mt = (m + ts - 1) / ts, nt = (n + ts - 1) / ts;
    #pragma omp parallel for schedule(static, 1)
    for (int64_t t = 0; t < mt * nt; t++) {
        const int64_t i0 = (t / nt) * ts, j0 = (t % nt) * ts;
        const int64_t mb = MD_MIN(ts, m - i0), nb = MD_MIN(ts, n - j0);
        const float *at = ta ? a + i0 : a + i0 * lda;   /* A [m, k], or [k, m] transposed */
        const float *bt = tb ? b + j0 * ldb : b + j0;   /* B [k, n], or [n, k] transposed */
        dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', mb, nb, k, alpha, at, lda, bt, ldb, beta,
                                      c + i0 * ldc + j0, ldc);
        MD_ASSERT(st == dnnl_success);
    }
}

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
    if (!ta && m <= SMALL_M) {
        small_gemm(tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    if (omp_get_level() > 0) {
        /* in an inactive region (a team of one) oneDNN would start its own
         * threads: keep it on this one */
        const int restore = omp_in_parallel() ? 0 : omp_get_max_threads();
        if (restore > 1)
            omp_set_num_threads(1);
        dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        if (restore > 1)
            omp_set_num_threads(restore);
        MD_ASSERT(st == dnnl_success);
        return;
    }
    tiled_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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
