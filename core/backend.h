/* backend.h — the table of compute kernels behind the ops.
 *
 * Ops (ops.h) do the graph work — shapes, tape, gradients — and call
 * kernels through the graph's backend. A backend fills the slots it
 * supports; a NULL slot falls back to the CPU kernel. The CPU backend fills
 * every slot. The CUDA backend (cuda/md_cuda.h, chosen by
 * MEDLEY_DEVICE=cuda[:N]) fills gemm and gemm_batched by staging the host
 * operands through a device arena and leaves the other slots NULL; its
 * device kernels for the other ops (cuda/md_cuda.h) work on device
 * pointers; the token sampler runs whole steps with them
 * (tokens_device.h), other graphs wait for device-resident tensors. backend.c, the only file
 * that knows which backends a build has, registers it; call sites never
 * change.
 *
 * Kernels take raw row-major pointers, contiguous unless a leading-dimension
 * argument says otherwise, and never allocate.
 */
#ifndef MEDLEY_BACKEND_H
#define MEDLEY_BACKEND_H

#include "md.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_backend {
    const char *name;            /* "cpu", "cuda:0", ... */
    /* C = alpha * op(A) @ op(B) + beta * C; op(A) [M,K], op(B) [K,N] */
    void (*gemm)(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb,
                 float beta, float *c, int64_t ldc);
    /* batch independent gemms, operands at fixed strides */
    void (*gemm_batched)(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                         float alpha, const float *a, int64_t lda, int64_t sa,
                         const float *b, int64_t ldb, int64_t sb, float beta,
                         float *c, int64_t ldc, int64_t sc);
    /* Optional fused kernels (NULL = CPU). x, y [rows, d]. */
    void (*layernorm_fwd)(float *y, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int64_t rows, int64_t d, float eps);
    void (*softmax_fwd)(float *y, const float *x, int64_t rows, int64_t d);
} md_backend;

/* The CPU backend (oneDNN for products, own kernels for the rest). */
const md_backend *md_backend_cpu(void);
/* Backend chosen by MEDLEY_DEVICE (cpu|cuda[:N]); CPU when the requested
 * device is absent (a warning is logged). */
const md_backend *md_backend_default(void);
/* The CUDA device a backend computes on (N of "cuda:N"); -1 for the CPU. */
int md_backend_device(const md_backend *be);

#ifdef __cplusplus
}
#endif
#endif
