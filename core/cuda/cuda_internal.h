/* cuda_internal.h — what the .cu files of core/cuda share: the context
 * layout, error checks that log, launch helpers and block reductions.
 * C++ (nvcc) only; not part of the public API. */
#ifndef MEDLEY_CUDA_INTERNAL_H
#define MEDLEY_CUDA_INTERNAL_H

#include "md_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

struct md_cuda {
    int device;
    char name[16];               /* "cuda:N" */
    cudaStream_t stream;
    cublasHandle_t blas;
    char *arena;                 /* one cudaMalloc of cap bytes */
    size_t cap, off, high;
    bool attention_rows;         /* md_cuda_set_attention_rows: the forward's row kernel only */
};

/* Turn a CUDA / cuBLAS result into a status, logging failures with the
 * device, the call and CUDA's reason. */
md_status md_cuda_err(const md_cuda *c, cudaError_t e, const char *what);
md_status md_cublas_err(const md_cuda *c, cublasStatus_t e, const char *what);
#define MD_CU(c, call) md_cuda_err((c), (call), #call)
#define MD_CUBLAS(c, call) md_cublas_err((c), (call), #call)
/* Status of the kernel launch just made (configuration errors). */
#define MD_LAUNCHED(c, name) md_cuda_err((c), cudaGetLastError(), name)
#define MD_TRY(x) do { md_status st_ = (x); if (st_ != MD_OK) return st_; } while (0)

/* Makes c's device current on the calling thread (the runtime keeps the
 * current device per host thread). */
md_status md_cuda_enter(md_cuda *c);

/* Threads per block for every kernel here; a power of two (the block
 * reductions below need one). */
#define MD_CUDA_THREADS 256

/* Blocks for a grid-stride loop over n items. */
static inline unsigned md_cuda_blocks(int64_t n)
{
    int64_t b = (n + MD_CUDA_THREADS - 1) / MD_CUDA_THREADS;
    if (b < 1)
        b = 1;
    if (b > 65535)
        b = 65535;
    return (unsigned)b;
}

#define MD_GRID_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)blockDim.x * gridDim.x)

/* Tree reduction over the block with op (blockDim.x a power of two, at
 * most MD_CUDA_THREADS); every thread gets the result. sh holds blockDim.x
 * values; it is free again when this returns. */
template <typename T, typename Op>
__device__ inline T md_block_reduce(T v, T *sh, Op op)
{
    unsigned t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s)
            sh[t] = op(sh[t], sh[t + s]);
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();
    return r;
}

struct md_op_add {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct md_op_max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <typename T>
__device__ inline T md_block_sum(T v, T *sh) { return md_block_reduce(v, sh, md_op_add()); }
__device__ inline float md_block_max(float v, float *sh) { return md_block_reduce(v, sh, md_op_max()); }

/* Grid dimension limits: blocks along x may number up to 2^31 - 1. */
static inline bool md_cuda_grid_ok(int64_t blocks) { return blocks >= 1 && blocks <= 2147483647; }

#endif
