/* cuda_context.cu — the device context: open/close, the arena, copies,
 * error reporting, and the cuBLAS products. See md_cuda.h. */
#include "cuda_internal.h"

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <dlfcn.h>
#include <mutex>
#include <type_traits>

#define MD_STR_(x) #x
#define MD_STR(x) MD_STR_(x)

/* cuBLAS is opened at run time, when a device context is first made, not
 * linked: its libraries carry about 100 KB of thread-local storage, and a
 * program linked against them can no longer start threads with small
 * stacks (SDL's audio thread asks for 64 KB). A library opened later keeps
 * its thread-local storage apart. Only the calls below are used. */
static struct {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSgemm_v2) sgemm;
    decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
    bool ok;
    char why[256];
} blas;

static bool blas_load(void)
{
    static std::once_flag once;
    std::call_once(once, [] {
        static const char *const names[] = {"libcublas.so." MD_STR(CUBLAS_VER_MAJOR), "libcublas.so"};
        void *h = NULL;
        for (const char *n : names)
            if ((h = dlopen(n, RTLD_NOW | RTLD_LOCAL)) != NULL)
                break;
        if (!h) {
            const char *e = dlerror();
            snprintf(blas.why, sizeof blas.why, "cannot load cuBLAS (%s)", e ? e : "libcublas.so not found");
            return;
        }
        bool all = true;
        auto get = [&](auto &fn, const char *sym) {
            fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, sym));
            if (!fn && all) {
                snprintf(blas.why, sizeof blas.why, "cuBLAS lacks %s", sym);
                all = false;
            }
        };
        get(blas.create, "cublasCreate_v2");
        get(blas.destroy, "cublasDestroy_v2");
        get(blas.set_stream, "cublasSetStream_v2");
        get(blas.set_math_mode, "cublasSetMathMode");
        get(blas.sgemm, "cublasSgemm_v2");
        get(blas.sgemm_strided_batched, "cublasSgemmStridedBatched");
        blas.ok = all;
    });
    return blas.ok;
}

md_status md_cuda_err(const md_cuda *c, cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return MD_OK;
    md_log(MD_LOG_ERROR, "%s: %s failed: %s (%s)", c ? c->name : "cuda", what, cudaGetErrorString(e),
           cudaGetErrorName(e));
    return e == cudaErrorMemoryAllocation ? MD_ERR_ALLOC : MD_ERR;
}

static const char *cublas_reason(cublasStatus_t e)
{
    switch (e) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "cuBLAS not initialised";
    case CUBLAS_STATUS_ALLOC_FAILED: return "cuBLAS could not allocate";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "not supported on this architecture";
    case CUBLAS_STATUS_MAPPING_ERROR: return "memory mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "kernel execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "unknown cuBLAS status";
    }
}

md_status md_cublas_err(const md_cuda *c, cublasStatus_t e, const char *what)
{
    if (e == CUBLAS_STATUS_SUCCESS)
        return MD_OK;
    md_log(MD_LOG_ERROR, "%s: %s failed: %s (status %d)", c ? c->name : "cuda", what, cublas_reason(e),
           (int)e);
    return e == CUBLAS_STATUS_ALLOC_FAILED ? MD_ERR_ALLOC : MD_ERR;
}

md_status md_cuda_enter(md_cuda *c)
{
    MD_ASSERT(c);
    return MD_CU(c, cudaSetDevice(c->device));
}

/* Errors that mean "this device cannot be used here" rather than a fault. */
static bool unusable(cudaError_t e)
{
    return e == cudaErrorNoDevice || e == cudaErrorInvalidDevice || e == cudaErrorInsufficientDriver ||
           e == cudaErrorDevicesUnavailable || e == cudaErrorCompatNotSupportedOnDevice ||
           e == cudaErrorSystemDriverMismatch;
}

md_status md_cuda_open(int device, size_t arena_bytes, md_cuda **out)
{
    MD_ASSERT(out);
    *out = NULL;
    md_cuda *c = (md_cuda *)calloc(1, sizeof *c);
    if (!c) {
        md_log(MD_LOG_ERROR, "cuda:%d: out of host memory", device);
        return MD_ERR_ALLOC;
    }
    c->device = device;
    snprintf(c->name, sizeof c->name, "cuda:%d", device);

    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || device < 0 || device >= count) {
        if (e != cudaSuccess)
            md_log(MD_LOG_ERROR, "%s: cannot open: %s", c->name, cudaGetErrorString(e));
        else
            md_log(MD_LOG_ERROR, "%s: cannot open: this machine has %d CUDA device%s", c->name, count,
                   count == 1 ? "" : "s");
        free(c);
        return MD_ERR_UNSUPPORTED;
    }
    /* cudaFree(0) creates the context now, so a busy device fails here. */
    e = cudaSetDevice(device);
    if (e == cudaSuccess)
        e = cudaFree(0);
    if (e != cudaSuccess) {
        md_log(MD_LOG_ERROR, "%s: cannot open: %s", c->name, cudaGetErrorString(e));
        free(c);
        return unusable(e) ? MD_ERR_UNSUPPORTED : MD_ERR;
    }
    md_status st = MD_CU(c, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    if (st == MD_OK && !blas_load()) {
        md_log(MD_LOG_ERROR, "%s: %s", c->name, blas.why);
        st = MD_ERR_UNSUPPORTED;
    }
    if (st == MD_OK && (st = MD_CUBLAS(c, blas.create(&c->blas))) != MD_OK)
        c->blas = NULL;
    if (st == MD_OK)
        st = MD_CUBLAS(c, blas.set_stream(c->blas, c->stream));
    if (st == MD_OK)
        st = MD_CUBLAS(c, blas.set_math_mode(c->blas, CUBLAS_DEFAULT_MATH));
    if (st == MD_OK && arena_bytes > 0) {
        e = cudaMalloc((void **)&c->arena, arena_bytes);
        if (e != cudaSuccess) {
            size_t free_b = 0, total_b = 0;
            cudaGetLastError();   /* clear it: the context stays usable */
            cudaMemGetInfo(&free_b, &total_b);
            md_log(MD_LOG_ERROR, "%s: cannot reserve a %.1f MiB arena (%.1f MiB free of %.1f): %s", c->name,
                   (double)arena_bytes / 1048576.0, (double)free_b / 1048576.0, (double)total_b / 1048576.0,
                   cudaGetErrorString(e));
            c->arena = NULL;
            st = MD_ERR_ALLOC;
        } else {
            c->cap = arena_bytes;
        }
    }
    if (st != MD_OK) {
        md_cuda_close(c);
        return st;
    }
    *out = c;
    return MD_OK;
}

void md_cuda_close(md_cuda *c)
{
    if (!c)
        return;
    if (cudaSetDevice(c->device) == cudaSuccess) {
        if (c->stream)
            cudaStreamSynchronize(c->stream);
        if (c->blas)
            blas.destroy(c->blas);
        if (c->arena)
            cudaFree(c->arena);
        if (c->stream)
            cudaStreamDestroy(c->stream);
    }
    free(c);
}

/* ---- pinned host memory, asynchronous download, captured graphs ------------------- */

void *md_cuda_host_alloc(md_cuda *c, size_t bytes)
{
    void *p = NULL;
    if (md_cuda_enter(c) != MD_OK || MD_CU(c, cudaMallocHost(&p, bytes ? bytes : 1)) != MD_OK)
        return NULL;
    return p;
}

void md_cuda_host_free(void *p)
{
    if (p)
        cudaFreeHost(p);
}

md_status md_cuda_download_async(md_cuda *c, void *dst_host, const void *src_dev, size_t bytes)
{
    if (bytes == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    return MD_CU(c, cudaMemcpyAsync(dst_host, src_dev, bytes, cudaMemcpyDeviceToHost, c->stream));
}

struct md_cuda_graph {
    cudaGraphExec_t exec;
};

md_status md_cuda_capture_begin(md_cuda *c)
{
    MD_TRY(md_cuda_enter(c));
    return MD_CU(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
}

md_status md_cuda_capture_end(md_cuda *c, bool keep, md_cuda_graph **out)
{
    *out = NULL;
    MD_TRY(md_cuda_enter(c));
    cudaGraph_t graph = NULL;
    md_status st = MD_CU(c, cudaStreamEndCapture(c->stream, &graph));
    if (st == MD_OK && keep) {
        md_cuda_graph *g = (md_cuda_graph *)calloc(1, sizeof *g);
        if (!g)
            st = MD_ERR_ALLOC;
        else if ((st = MD_CU(c, cudaGraphInstantiate(&g->exec, graph, 0))) != MD_OK)
            free(g);
        else
            *out = g;
    }
    if (graph)
        cudaGraphDestroy(graph);
    cudaGetLastError();   /* a failed capture leaves its error behind; it was reported above */
    return keep ? st : MD_OK;
}

md_status md_cuda_graph_run(md_cuda *c, md_cuda_graph *g)
{
    MD_TRY(md_cuda_enter(c));
    MD_TRY(MD_CU(c, cudaGraphLaunch(g->exec, c->stream)));
    return md_cuda_sync(c);
}

void md_cuda_graph_free(md_cuda_graph *g)
{
    if (!g)
        return;
    cudaGraphExecDestroy(g->exec);
    free(g);
}

const char *md_cuda_name(const md_cuda *c) { return c->name; }
void *md_cuda_stream(const md_cuda *c) { return (void *)c->stream; }

/* ---- arena ------------------------------------------------------------------ */

void *md_cuda_alloc(md_cuda *c, size_t bytes)
{
    size_t start = (c->off + 255) & ~(size_t)255;
    if (start > c->cap || bytes > c->cap - start) {
        md_log(MD_LOG_ERROR, "%s: arena exhausted: %zu bytes asked, %zu of %zu in use", c->name, bytes, c->off,
               c->cap);
        return NULL;
    }
    c->off = start + bytes;
    if (c->off > c->high)
        c->high = c->off;
    return c->arena + start;
}

void md_cuda_rewind(md_cuda *c) { c->off = 0; }
size_t md_cuda_mark(const md_cuda *c) { return c->off; }

void md_cuda_rewind_to(md_cuda *c, size_t mark)
{
    MD_ASSERT(mark <= c->off);
    c->off = mark;
}

size_t md_cuda_capacity(const md_cuda *c) { return c->cap; }
size_t md_cuda_high_water(const md_cuda *c) { return c->high; }

/* ---- copies and sync ----------------------------------------------------------- */

md_status md_cuda_upload(md_cuda *c, void *dst_dev, const void *src_host, size_t bytes)
{
    if (bytes == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    return MD_CU(c, cudaMemcpyAsync(dst_dev, src_host, bytes, cudaMemcpyHostToDevice, c->stream));
}

md_status md_cuda_download(md_cuda *c, void *dst_host, const void *src_dev, size_t bytes)
{
    MD_TRY(md_cuda_enter(c));
    if (bytes > 0)
        MD_TRY(MD_CU(c, cudaMemcpyAsync(dst_host, src_dev, bytes, cudaMemcpyDeviceToHost, c->stream)));
    return md_cuda_sync(c);
}

md_status md_cuda_sync(md_cuda *c)
{
    MD_TRY(md_cuda_enter(c));
    return MD_CU(c, cudaStreamSynchronize(c->stream));
}

md_status md_cuda_set_tf32(md_cuda *c, bool on)
{
    MD_TRY(md_cuda_enter(c));
    return MD_CUBLAS(c, blas.set_math_mode(c->blas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

void md_cuda_set_attention_rows(md_cuda *c, bool on) { c->attention_rows = on; }

/* ---- products ------------------------------------------------------------------- */

/* C = beta * C over m rows of n (ldc apart): cuBLAS is not asked for k = 0. */
__global__ void scale_rows_kernel(float *cm, int64_t m, int64_t n, int64_t ldc, float beta)
{
    MD_GRID_LOOP(i, m * n) {
        int64_t r = i / n, j = i % n;
        float *p = cm + r * ldc + j;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

static bool fits_int(int64_t x) { return x >= 0 && x <= INT_MAX; }

/* Row-major C [m,n] = op(A) op(B) is column-major C^T [n,m] = op(B)^T
 * op(A)^T: the same memory, so cuBLAS gets B first, then A, with n and m
 * swapped and each operand's own transpose flag. */
static md_status check_dims(md_cuda *c, bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t lda,
                            int64_t ldb, int64_t ldc)
{
    if (!fits_int(m) || !fits_int(n) || !fits_int(k) || !fits_int(lda) || !fits_int(ldb) || !fits_int(ldc)) {
        md_log(MD_LOG_ERROR, "%s: gemm %lld x %lld x %lld (ld %lld, %lld, %lld) exceeds cuBLAS's int range",
               c->name, (long long)m, (long long)n, (long long)k, (long long)lda, (long long)ldb, (long long)ldc);
        return MD_ERR_UNSUPPORTED;
    }
    int64_t acols = ta ? m : k, bcols = tb ? k : n;
    if (lda < MD_MAX(acols, 1) || ldb < MD_MAX(bcols, 1) || ldc < MD_MAX(n, 1)) {
        md_log(MD_LOG_ERROR, "%s: gemm leading dimensions too small (lda %lld, ldb %lld, ldc %lld)", c->name,
               (long long)lda, (long long)ldb, (long long)ldc);
        return MD_ERR_INVALID;
    }
    return MD_OK;
}

md_status md_cuda_gemm(md_cuda *c, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb,
                       float beta, float *cm, int64_t ldc)
{
    return md_cuda_gemm_batched(c, 1, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, cm, ldc, 0);
}

md_status md_cuda_gemm_batched(md_cuda *c, int64_t batch, bool ta, bool tb, int64_t m, int64_t n,
                               int64_t k, float alpha, const float *a, int64_t lda, int64_t sa,
                               const float *b, int64_t ldb, int64_t sb, float beta,
                               float *cm, int64_t ldc, int64_t sc)
{
    if (batch <= 0 || m == 0 || n == 0)
        return MD_OK;
    MD_TRY(check_dims(c, ta, tb, m, n, k, lda, ldb, ldc));
    if (!fits_int(batch)) {
        md_log(MD_LOG_ERROR, "%s: gemm batch %lld exceeds cuBLAS's int range", c->name, (long long)batch);
        return MD_ERR_UNSUPPORTED;
    }
    MD_TRY(md_cuda_enter(c));
    if (k == 0) {
        for (int64_t i = 0; i < batch; i++) {
            scale_rows_kernel<<<md_cuda_blocks(m * n), MD_CUDA_THREADS, 0, c->stream>>>(cm + i * sc, m, n, ldc,
                                                                                         beta);
            MD_TRY(MD_LAUNCHED(c, "scale_rows_kernel"));
        }
        return MD_OK;
    }
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (batch == 1)
        return MD_CUBLAS(c, blas.sgemm(c->blas, opb, opa, (int)n, (int)m, (int)k, &alpha, b, (int)ldb, a,
                                        (int)lda, &beta, cm, (int)ldc));
    return MD_CUBLAS(c, blas.sgemm_strided_batched(c->blas, opb, opa, (int)n, (int)m, (int)k, &alpha, b, (int)ldb,
                                                  (long long)sb, a, (int)lda, (long long)sa, &beta, cm, (int)ldc,
                                                  (long long)sc, (int)batch));
}
