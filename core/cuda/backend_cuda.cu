/* backend_cuda.cu — the engine's CUDA backend: gemm and gemm_batched on
 * host pointers, staged through one device arena (upload the operands,
 * cuBLAS, download C). Every other slot is NULL, so the ops run those on
 * the CPU. backend.c registers it; see md_cuda_backend in md_cuda.h. */
#include "cuda_internal.h"

/* C headers without C++ guards of their own */
extern "C" {
#include "backend.h"
#include "kernels_cpu.h"
}

#include <cstdlib>
#include <mutex>

/* Products below this many multiply-adds stay on the CPU: the copies would
 * cost more than the product. */
#define STAGE_MIN_MACS ((int64_t)1 << 21)

static std::mutex g_lock;   /* guards everything below; one product at a time */
static md_cuda *g_ctx;
static int g_device = -1;
static bool g_tried, g_broken;
static md_backend g_backend;

static size_t arena_bytes(void)
{
    const char *e = getenv("MEDLEY_CUDA_ARENA_MB");
    long mb = e && *e ? strtol(e, NULL, 10) : 0;
    return (size_t)(mb > 0 ? mb : 1024) << 20;
}

/* Elements from the first to the last one a strided operand touches:
 * batch blocks `stride` apart, each of `rows` rows `ld` apart, `cols` used. */
static int64_t span(int64_t batch, int64_t stride, int64_t rows, int64_t ld, int64_t cols)
{
    return (batch - 1) * stride + (rows - 1) * ld + cols;
}

static size_t round256(int64_t floats) { return ((size_t)floats * sizeof(float) + 255) & ~(size_t)255; }

/* One staged product (batch 1 with strides 0 for a single gemm). Returns
 * MD_UNSUPPORTED for shapes it leaves to the CPU (nothing logged), another
 * error (logged) when the device failed; *c_touched says whether host C
 * may have been written. Caller holds g_lock. */
static md_status stage(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, int64_t sa, const float *b, int64_t ldb, int64_t sb,
                       float beta, float *cm, int64_t ldc, int64_t sc, bool *c_touched)
{
    md_cuda *c = g_ctx;
    *c_touched = false;
    if (sa < 0 || sb < 0 || sc < 0 || (batch > 1 && sc < m * ldc) || ldc < n)
        return MD_ERR_UNSUPPORTED;   /* overlapping outputs or odd strides: the CPU's business */
    int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int64_t na = span(batch, sa, ar, lda, ac), nb = span(batch, sb, br, ldb, bc), nc = span(batch, sc, m, ldc, n);
    if (round256(na) + round256(nb) + round256(nc) > md_cuda_capacity(c))
        return MD_ERR_UNSUPPORTED;
    md_cuda_rewind(c);
    float *da = (float *)md_cuda_alloc(c, sizeof(float) * (size_t)na);
    float *db = (float *)md_cuda_alloc(c, sizeof(float) * (size_t)nb);
    float *dc = (float *)md_cuda_alloc(c, sizeof(float) * (size_t)nc);
    if (!da || !db || !dc)
        return MD_ERR_ALLOC;
    MD_TRY(md_cuda_upload(c, da, a, sizeof(float) * (size_t)na));
    MD_TRY(md_cuda_upload(c, db, b, sizeof(float) * (size_t)nb));
    if (beta != 0.0f)   /* beta 0: cuBLAS does not read C */
        MD_TRY(md_cuda_upload(c, dc, cm, sizeof(float) * (size_t)nc));
    MD_TRY(md_cuda_gemm_batched(c, batch, ta, tb, m, n, k, alpha, da, lda, sa, db, ldb, sb, beta, dc, ldc, sc));
    /* Only the m x n block of each product comes back: the gaps between
     * rows (ldc > n) and between products belong to the caller. */
    size_t row = sizeof(float) * (size_t)n, pitch = sizeof(float) * (size_t)ldc;
    *c_touched = true;
    if (batch == 1 || sc == m * ldc) {
        MD_TRY(MD_CU(c, cudaMemcpy2DAsync(cm, pitch, dc, pitch, row, (size_t)(batch * m), cudaMemcpyDeviceToHost,
                                          c->stream)));
    } else {
        for (int64_t i = 0; i < batch; i++)
            MD_TRY(MD_CU(c, cudaMemcpy2DAsync(cm + i * sc, pitch, dc + i * sc, pitch, row, (size_t)m,
                                              cudaMemcpyDeviceToHost, c->stream)));
    }
    return md_cuda_sync(c);
}

static void staged_batched(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                           float alpha, const float *a, int64_t lda, int64_t sa,
                           const float *b, int64_t ldb, int64_t sb, float beta,
                           float *cm, int64_t ldc, int64_t sc)
{
    if (batch <= 0 || m <= 0 || n <= 0)
        return;
    if (k <= 0 || batch * m * n * k < STAGE_MIN_MACS) {
        md_cpu_gemm_batched(batch, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, cm, ldc, sc);
        return;
    }
    md_status st = MD_ERR_UNSUPPORTED;
    bool touched = false;
    {
        std::lock_guard<std::mutex> hold(g_lock);
        if (!g_broken) {
            st = stage(batch, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, cm, ldc, sc, &touched);
            if (st != MD_OK && st != MD_ERR_UNSUPPORTED && st != MD_ERR_ALLOC) {
                /* a fault may leave the context unusable: the CPU from now on */
                g_broken = true;
                md_log(MD_LOG_ERROR, "%s: products move to the CPU after this error", g_ctx->name);
            }
        }
    }
    if (st == MD_OK)
        return;
    if (touched && beta != 0.0f) {
        /* C was partly overwritten and its old values are gone. */
        md_log(MD_LOG_ERROR, "cuda: a product failed while copying its result; that result is lost");
        return;
    }
    md_cpu_gemm_batched(batch, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, cm, ldc, sc);
}

static void staged_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb,
                        float beta, float *cm, int64_t ldc)
{
    staged_batched(1, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, cm, ldc, 0);
}

const md_backend *md_cuda_backend(int device)
{
    std::lock_guard<std::mutex> hold(g_lock);
    if (g_ctx) {
        if (device == g_device)
            return &g_backend;
        md_log(MD_LOG_ERROR, "cuda:%d: this process already uses %s (one device per process)", device, g_ctx->name);
        return NULL;
    }
    if (g_tried)
        return NULL;   /* the failure was logged the first time */
    g_tried = true;
    md_cuda *c = NULL;
    size_t bytes = arena_bytes();
    md_status st = md_cuda_open(device, bytes, &c);
    if (st == MD_ERR_ALLOC && bytes > ((size_t)256 << 20)) {
        md_log(MD_LOG_WARN, "cuda:%d: retrying with a 256 MiB arena", device);
        st = md_cuda_open(device, (size_t)256 << 20, &c);
    }
    if (st != MD_OK)
        return NULL;
    g_ctx = c;
    g_device = device;
    g_backend.name = md_cuda_name(c);
    g_backend.gemm = staged_gemm;
    g_backend.gemm_batched = staged_batched;
    g_backend.layernorm_fwd = NULL;
    g_backend.softmax_fwd = NULL;
    return &g_backend;
}
