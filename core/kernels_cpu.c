/* kernels_cpu.c — CPU kernels: oneDNN for products, own loops for the rest.
 *
 * Threads: everything runs on the one OpenMP pool that oneDNN also uses
 * (libgomp), so our loops and the library's never oversubscribe the cores.
 * Work is split by index; no reduction order depends on the thread count.
 */
#include "kernels_cpu.h"
#include "simd.h"
#include "tensor.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* mr rows by nc columns of a · bᵀ, in tiles of 4 × 4 where they fit */
static inline __attribute__((always_inline)) SMALL_KERNEL void
nt_rows(int mr, int64_t nc, int64_t k, float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
        float beta, float *c, int64_t ldc)
{
    if (mr == 4 && nc == 4)
        nt_tile(4, 4, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else if (mr == 1 && nc == 4)
        nt_tile(1, 4, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else if (mr == 2 && nc == 4)
        nt_tile(2, 4, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        for (int r = 0; r < mr; r++)
            for (int64_t q = 0; q < nc; q++)
                nt_tile(1, 1, k, alpha, a + r * lda, lda, b + q * ldb, ldb, beta, c + r * ldc + q, ldc);
}

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
            nt_rows(mr, nc, k, alpha, ai, lda, b + j * ldb, ldb, beta, ci, ldc);
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

/* ---- products of few rows with half-precision weight panels ----------------
 * x · Wᵀ with W [n, k] packed as panels of MD_F16_PANEL of its rows (the
 * output's columns): panel t holds W[t·P + c][p] at [p][c], zeros past n.
 * A tile of up to 8 rows by up to 48 columns keeps its 24 sums in
 * registers; each step along k converts one panel row (48 values, 96
 * bytes, read in order) and multiplies it by each row's broadcast value,
 * so nothing is reduced across lanes. Each output is one sum in k's order:
 * its bits do not depend on the tiles, the threads or the other rows. */
size_t md_f16_panels_size(int64_t n, int64_t k)
{
    return (size_t)((n + MD_F16_PANEL - 1) / MD_F16_PANEL) * MD_F16_PANEL * (size_t)k;
}

void md_f16_panels_pack(uint16_t *dst, const uint16_t *w, int64_t n, int64_t k)
{
    const int64_t P = MD_F16_PANEL;
    for (int64_t t = 0; t * P < n; t++) {
        uint16_t *panel = dst + t * P * k;
        for (int64_t p = 0; p < k; p++)
            for (int64_t c = 0; c < P; c++)
                panel[p * P + c] = t * P + c < n ? w[(t * P + c) * k + p] : 0;
    }
}

#if defined(__AVX512F__)
static inline __attribute__((always_inline)) SMALL_KERNEL void
panel_tile(int MR, int NV, int64_t nc, int64_t k, const float *a, int64_t lda, const uint16_t *panel, float beta,
           float *c, int64_t ldc)
{
    __m512 acc[8][3];
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NV; q++)
            acc[r][q] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; p++) {
        const uint16_t *row = panel + p * MD_F16_PANEL;
        /* a step's weights (10 MB for the bundled model) come from L3:
         * asking 16 panel rows ahead made a pass over them 1.2× quicker */
        _mm_prefetch((const char *)(row + 16 * MD_F16_PANEL), _MM_HINT_T0);
        _mm_prefetch((const char *)(row + 16 * MD_F16_PANEL + 32), _MM_HINT_T0);
        __m512 bv[3];
        for (int q = 0; q < NV; q++)
            bv[q] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 16 * q)));
        for (int r = 0; r < MR; r++) {
            const __m512 av = _mm512_set1_ps(a[r * lda + p]);
            for (int q = 0; q < NV; q++)
                acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
        }
    }
    for (int q = 0; q < NV; q++) {
        const int64_t left = nc - 16 * q;
        const __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
        for (int r = 0; r < MR; r++) {
            float *cr = c + r * ldc + 16 * q;
            __m512 v = acc[r][q];
            if (beta != 0.0f)
                v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mk, cr)));
            _mm512_mask_storeu_ps(cr, mk, v);
        }
    }
}

#define PANEL_ROWS(NV)                                                                                    \
    switch (mr) {                                                                                         \
    case 8: panel_tile(8, NV, nc, k, ai, lda, panel, beta, ci, ldc); break;                               \
    case 7: panel_tile(7, NV, nc, k, ai, lda, panel, beta, ci, ldc); break;                               \
    case 6: panel_tile(6, NV, nc, k, ai, lda, panel, beta, ci, ldc); break;                               \
    case 5: panel_tile(5, NV, nc, k, ai, lda, panel, beta, ci, ldc); break;                               \
    case 4: panel_tile(4, NV, nc, k, ai, lda, panel, beta, ci, ldc); break;                               \
    case 3: panel_tile(3, NV, nc, k, ai, lda, panel, beta, ci, ldc); break;                               \
    case 2: panel_tile(2, NV, nc, k, ai, lda, panel, beta, ci, ldc); break;                               \
    default: panel_tile(1, NV, nc, k, ai, lda, panel, beta, ci, ldc); break;                              \
    }
#endif

/* panel t (columns t·P .. t·P + nc) over every row, 8 rows at a time */
SMALL_KERNEL static void panel_block(int64_t m, int64_t t, int64_t nc, int64_t k, const float *a, int64_t lda,
                                     const uint16_t *panels, float beta, float *c, int64_t ldc)
{
    const uint16_t *panel = panels + t * MD_F16_PANEL * k;
    for (int64_t i = 0; i < m; i += 8) {
        const int mr = (int)MD_MIN(8, m - i);
        const float *ai = a + i * lda;
        float *ci = c + i * ldc + t * MD_F16_PANEL;
#if defined(__AVX512F__)
        const int nv = (int)((nc + 15) / 16);
        if (nv == 3)
            PANEL_ROWS(3)
        else if (nv == 2)
            PANEL_ROWS(2)
        else
            PANEL_ROWS(1)
#else
        for (int r = 0; r < mr; r++)
            for (int64_t j = 0; j < nc; j++) {
                float s = 0.f;
                for (int64_t p = 0; p < k; p++)
                    s = fmaf(ai[r * lda + p], md_f16_to_f32(panel[p * MD_F16_PANEL + j]), s);
                float *o = ci + r * ldc + j;
                *o = beta == 0.0f ? s : s + beta * *o;
            }
#endif
    }
}

void md_cpu_gemm_f16p(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                      const uint16_t *panels, float beta, float *c, int64_t ldc)
{
    if (m == 0 || n == 0)
        return;
    if (m > SMALL_M || k == 0 || !panels) {
        md_cpu_gemm(false, true, m, n, k, 1.f, a, lda, b, k, beta, c, ldc);
        return;
    }
    const int64_t blocks = (n + MD_F16_PANEL - 1) / MD_F16_PANEL;
    #pragma omp parallel for schedule(static) if (m * n * k >= SMALL_PAR_MACS && blocks > 1)
    for (int64_t t = 0; t < blocks; t++)
        panel_block(m, t, MD_MIN(MD_F16_PANEL, n - t * MD_F16_PANEL), k, a, lda, panels, beta, c, ldc);
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

/* ---- products with bf16 operands ---------------------------------------------
 * Training may ask for products on bf16 operands with f32 sums and results
 * (md_graph_set_bf16): oneDNN's matmul then runs on the CPU's bf16 units —
 * AMX tiles or AVX-512 BF16 dot products — several times faster than sgemm.
 * The operands are rounded to bf16 (nearest, ties to even) into this
 * thread's buffers; A is always made row-major [m, k], B keeps its
 * orientation.
 *
 * Bits against the thread count: oneDNN splits the sum along k between
 * threads when a product has few rows (m 256, n 768, k 4480 differed
 * between one thread and two in 150 000 outputs), never, in what was
 * tried (m 4480, n 256–768, k 256–768 on 1 to 32 threads), when it has
 * many. So a product with m >= 1024 rows and m >= 4 k runs as one call
 * over every thread; any other is cut by shape into row tiles (the largest
 * of 512, 256 or 128 rows giving GEMM_MIN_TILES tiles), each a whole
 * single-threaded call. test_core compares both kinds on 1, 2 and 3
 * threads. Products outside what this path takes (alpha ≠ 1, beta other
 * than 0 or 1, few rows or little work) go to md_cpu_gemm. */
#define BF16_MIN_MACS (1 << 21)

typedef struct bf_prim {
    int64_t m, n, k, lda, ldc;
    int nthr;   /* oneDNN plans a primitive for the thread count it is made with */
    bool ta, tb, acc;
    bool transient;   /* made for one call (the cache was full): the caller destroys it */
    dnnl_primitive_t p;
    size_t scratch;
} bf_prim;

/* Made primitives stay for the process (entries are never moved or
 * freed, so a thread may use one while another adds); past BF_CACHE
 * shapes, each call makes its own. */
#define BF_CACHE 256
static pthread_mutex_t bf_lock = PTHREAD_MUTEX_INITIALIZER;
static bf_prim bf_cache[BF_CACHE];
static int bf_ncache;
static dnnl_engine_t bf_engine;
static int bf_state;   /* 1: a fast bf16 product here, -1: not (bf_probe) */
static char bf_impl[64];

typedef struct bf_buf {
    void *p;
    size_t cap;
} bf_buf;

/* each thread's operand buffers and stream, freed when the thread ends */
typedef struct bf_thread {
    struct bf_buf a, b, scratch;
    dnnl_stream_t stream;
} bf_thread;

static pthread_key_t bf_key;
static pthread_once_t bf_key_once = PTHREAD_ONCE_INIT;

static void bf_thread_free(void *p)
{
    bf_thread *t = p;
    free(t->a.p);
    free(t->b.p);
    free(t->scratch.p);
    if (t->stream)
        dnnl_stream_destroy(t->stream);
    free(t);
}

static void bf_key_make(void) { pthread_key_create(&bf_key, bf_thread_free); }

static bf_thread *bf_this_thread(void)
{
    pthread_once(&bf_key_once, bf_key_make);
    bf_thread *t = pthread_getspecific(bf_key);
    if (!t && (t = calloc(1, sizeof *t)) && pthread_setspecific(bf_key, t) != 0) {
        free(t);
        t = NULL;
    }
    return t;
}

static void *bf_reserve(bf_buf *b, size_t bytes)
{
    if (b->cap >= bytes)
        return b->p;
    free(b->p);
    size_t cap = bytes + bytes / 4 + 4096;
    b->p = NULL;
    b->cap = 0;
    if (posix_memalign(&b->p, 64, cap) != 0)
        return NULL;
    b->cap = cap;
    return b->p;
}

/* rows × cols from src (rows ld apart) into dst, dense; threads split the
 * rows in top-level calls */
static void bf16_pack(uint16_t *dst, const float *src, int64_t ld, int64_t rows, int64_t cols, bool par)
{
    #pragma omp parallel for schedule(static) if (par && rows * cols >= 65536)
    for (int64_t r = 0; r < rows; r++) {
        const float *s = src + r * ld;
        uint16_t *d = dst + r * cols;
        int64_t c = 0;
#if defined(__AVX512BF16__)
        for (; c + 16 <= cols; c += 16)
            _mm256_storeu_si256((__m256i *)(d + c), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(s + c)));
#endif
        for (; c < cols; c++)
            d[c] = md_f32_to_bf16(s[c]);
    }
}

static bool bf_engine_ready(void)
{
    if (!bf_engine && dnnl_engine_create(&bf_engine, dnnl_cpu, 0) != dnnl_success) {
        bf_engine = NULL;
        return false;
    }
    return true;
}

/* the primitive for C[m, n] (ldc) (+)= A · B, A [m, k] (or [k, m] with rows
 * lda apart when ta), B [k, n] (or [n, k] when tb) */
static bool bf_get(int64_t m, int64_t n, int64_t k, bool ta, int64_t lda, bool tb, int64_t ldc, bool acc, int nthr,
                   bf_prim *out)
{
    pthread_mutex_lock(&bf_lock);
    for (int i = 0; i < bf_ncache; i++) {
        const bf_prim *e = &bf_cache[i];
        if (e->m == m && e->n == n && e->k == k && e->ta == ta && e->lda == lda && e->tb == tb && e->ldc == ldc &&
            e->acc == acc && e->nthr == nthr) {
            *out = *e;
            pthread_mutex_unlock(&bf_lock);
            return true;
        }
    }
    if (!bf_engine_ready()) {
        pthread_mutex_unlock(&bf_lock);
        return false;
    }
    dnnl_memory_desc_t ad, bd, cd;
    dnnl_dims_t da = {m, k}, db = {k, n}, dc = {m, n};
    dnnl_dims_t sa = {ta ? 1 : lda, ta ? lda : 1}, sb = {tb ? 1 : n, tb ? k : 1}, sc = {ldc, 1};
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t p = NULL;
    dnnl_matmul_desc_t md;
    bool ok = dnnl_memory_desc_init_by_strides(&ad, 2, da, dnnl_bf16, sa) == dnnl_success &&
              dnnl_memory_desc_init_by_strides(&bd, 2, db, dnnl_bf16, sb) == dnnl_success &&
              dnnl_memory_desc_init_by_strides(&cd, 2, dc, dnnl_f32, sc) == dnnl_success &&
              dnnl_matmul_desc_init(&md, &ad, &bd, NULL, &cd) == dnnl_success &&
              dnnl_primitive_attr_create(&attr) == dnnl_success &&
              dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    if (ok && acc)
        ok = dnnl_post_ops_create(&po) == dnnl_success && dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    /* oneDNN plans the work for the thread count it sees now */
    const int restore = omp_in_parallel() ? 0 : omp_get_max_threads();
    if (restore && restore != nthr)
        omp_set_num_threads(nthr);
    ok = ok && dnnl_primitive_desc_create(&pd, &md, attr, bf_engine, NULL) == dnnl_success;
    ok = ok && dnnl_primitive_create(&p, pd) == dnnl_success;
    if (restore && restore != nthr)
        omp_set_num_threads(restore);
    size_t scratch = 0;
    if (ok) {
        const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        scratch = smd ? dnnl_memory_desc_get_size(smd) : 0;
    }
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (ok) {
        *out = (bf_prim){m, n, k, lda, ldc, nthr, ta, tb, acc, bf_ncache == BF_CACHE, p, scratch};
        if (!out->transient)
            bf_cache[bf_ncache++] = *out;
    } else if (p) {
        dnnl_primitive_destroy(p);
    }
    pthread_mutex_unlock(&bf_lock);
    return ok;
}

static void bf_done(const bf_prim *e)
{
    if (e->transient)
        dnnl_primitive_destroy(e->p);
}

static bool bf_run(const bf_prim *e, const uint16_t *a, const uint16_t *b, float *c)
{
    bf_thread *t = bf_this_thread();
    if (!t)
        return false;
    if (!t->stream && dnnl_stream_create(&t->stream, bf_engine, dnnl_stream_default_flags) != dnnl_success) {
        t->stream = NULL;
        return false;
    }
    const_dnnl_primitive_desc_t pd;
    if (dnnl_primitive_get_primitive_desc(e->p, &pd) != dnnl_success)
        return false;
    void *scratch = e->scratch ? bf_reserve(&t->scratch, e->scratch) : NULL;
    if (e->scratch && !scratch)
        return false;
    dnnl_memory_t am = NULL, bm = NULL, cm = NULL, sm = NULL;
    bool ok = dnnl_memory_create(&am, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), bf_engine,
                                 (void *)a) == dnnl_success &&
              dnnl_memory_create(&bm, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), bf_engine,
                                 (void *)b) == dnnl_success &&
              dnnl_memory_create(&cm, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), bf_engine, c) ==
                  dnnl_success &&
              dnnl_memory_create(&sm, dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0), bf_engine,
                                 scratch) == dnnl_success;
    if (ok) {
        dnnl_exec_arg_t args[4] = {
            {DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}, {DNNL_ARG_SCRATCHPAD, sm}};
        ok = dnnl_primitive_execute(e->p, t->stream, 4, args) == dnnl_success &&
             dnnl_stream_wait(t->stream) == dnnl_success;
    }
    dnnl_memory_destroy(am);
    dnnl_memory_destroy(bm);
    dnnl_memory_destroy(cm);
    dnnl_memory_destroy(sm);
    return ok;
}

/* Asks oneDNN, once, what it would run a bf16 product with. */
static void bf_probe(void)
{
    pthread_mutex_lock(&bf_lock);
    const bool eng = bf_engine_ready();
    pthread_mutex_unlock(&bf_lock);
    dnnl_memory_desc_t ad, bd, cd;
    dnnl_dims_t da = {256, 256}, db = {256, 256};
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    const char *name = NULL;
    bf_state = -1;
    snprintf(bf_impl, sizeof bf_impl, "none");
    if (eng && dnnl_memory_desc_init_by_tag(&ad, 2, da, dnnl_bf16, dnnl_ab) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&bd, 2, db, dnnl_bf16, dnnl_ab) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&cd, 2, da, dnnl_f32, dnnl_ab) == dnnl_success &&
        dnnl_matmul_desc_init(&md, &ad, &bd, NULL, &cd) == dnnl_success &&
        dnnl_primitive_desc_create(&pd, &md, NULL, bf_engine, NULL) == dnnl_success &&
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) == dnnl_success && name) {
        snprintf(bf_impl, sizeof bf_impl, "%s", name);
        /* a reference or emulated kernel is slower than sgemm */
        bf_state = strstr(name, "ref") || !strstr(name, "bf16") ? -1 : 1;
    }
    if (pd)
        dnnl_primitive_desc_destroy(pd);
}

bool md_cpu_bf16_available(const char **impl)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, bf_probe);
    if (impl)
        *impl = bf_impl;
    return bf_state > 0;
}

void md_cpu_gemm_bf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (alpha != 1.0f || (beta != 0.0f && beta != 1.0f) || m <= SMALL_M || k == 0 ||
        m * n * k < BF16_MIN_MACS || !md_cpu_bf16_available(NULL)) {
        md_cpu_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const bool top = omp_get_level() == 0;
    bf_thread *th = bf_this_thread();
    uint16_t *ab = th ? bf_reserve(&th->a, (size_t)(m * k) * 2) : NULL;
    uint16_t *bb = th ? bf_reserve(&th->b, (size_t)(n * k) * 2) : NULL;
    if (!ab || !bb) {
        md_cpu_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* operands keep their orientation, made dense */
    if (ta)
        bf16_pack(ab, a, lda, k, m, top);
    else
        bf16_pack(ab, a, lda, m, k, top);
    if (tb)
        bf16_pack(bb, b, ldb, n, k, top);
    else
        bf16_pack(bb, b, ldb, k, n, top);
    const int64_t la = ta ? m : k;
    const bool acc = beta != 0.0f;
    bool ok;
    if (!top || (m >= 1024 && m >= 4 * k)) {
        bf_prim e;
        if (!bf_get(m, n, k, ta, la, tb, ldc, acc, top ? omp_get_max_threads() : 1, &e)) {
            /* oneDNN refused the shape: C is untouched */
            md_cpu_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        /* inside a parallel construct the call stays on this thread */
        const int restore = top || omp_in_parallel() ? 0 : omp_get_max_threads();
        if (restore > 1)
            omp_set_num_threads(1);
        ok = bf_run(&e, ab, bb, c);
        if (restore > 1)
            omp_set_num_threads(restore);
        bf_done(&e);
    } else {
        int64_t rt = 128;
        for (int64_t s = 512; s > 128; s /= 2)
            if ((m + s - 1) / s >= GEMM_MIN_TILES) {
                rt = s;
                break;
            }
        const int64_t tiles = (m + rt - 1) / rt, last = m - (tiles - 1) * rt;
        bf_prim full, edge;
        const bool have_full = bf_get(rt, n, k, ta, la, tb, ldc, acc, 1, &full);
        const bool have_edge = have_full && (last == rt ? (edge = full, true)
                                                        : bf_get(last, n, k, ta, la, tb, ldc, acc, 1, &edge));
        if (!have_full || !have_edge) {
            if (have_full)
                bf_done(&full);
            md_cpu_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        int bad = 0;
        #pragma omp parallel for schedule(static, 1) reduction(+:bad)
        for (int64_t t = 0; t < tiles; t++)
            bad += !bf_run(t == tiles - 1 ? &edge : &full, ab + t * rt * (ta ? 1 : k), bb, c + t * rt * ldc);
        ok = bad == 0;
        bf_done(&full);
        if (last != rt)
            bf_done(&edge);
    }
    MD_ASSERT(ok);
}
