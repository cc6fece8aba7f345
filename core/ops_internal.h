/* ops_internal.h — helpers shared by the ops_*.c files (not public). */
#ifndef MEDLEY_OPS_INTERNAL_H
#define MEDLEY_OPS_INTERNAL_H

#include "backend.h"
#include "kernels_cpu.h"
#include "ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Threads of the pool (outside a parallel region) and this thread's index
 * (inside one); 1 and 0 without OpenMP. */
static inline int md_pool_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static inline int md_pool_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Output of an op: requires grad when any input does (and the graph records). */
static inline bool md_any_grad(const md_graph *g, md_tensor *a, md_tensor *b, md_tensor *c)
{
    if (!md_graph_grad_enabled(g))
        return false;
    return (a && a->requires_grad) || (b && b->requires_grad) || (c && c->requires_grad);
}

static inline const md_backend *md_be(const md_graph *g)
{
    const md_backend *be = md_graph_backend(g);
    return be ? be : md_backend_cpu();
}

/* gemm through the graph's backend (CPU when the slot is empty). */
static inline void md_gemm(const md_graph *g, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                           float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                           float beta, float *c, int64_t ldc)
{
    const md_backend *be = md_be(g);
    if (md_graph_bf16(g) && (!be->gemm || be->gemm == md_cpu_gemm)) {
        md_cpu_gemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    (be->gemm ? be->gemm : md_cpu_gemm)(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static inline void md_gemm_batched(const md_graph *g, int64_t batch, bool ta, bool tb, int64_t m,
                                   int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                                   int64_t sa, const float *b, int64_t ldb, int64_t sb, float beta,
                                   float *c, int64_t ldc, int64_t sc)
{
    const md_backend *be = md_be(g);
    (be->gemm_batched ? be->gemm_batched : md_cpu_gemm_batched)(batch, ta, tb, m, n, k, alpha, a, lda, sa,
                                                                b, ldb, sb, beta, c, ldc, sc);
}

/* Rows = product of all dims but the last. */
static inline int64_t md_rows(const md_tensor *t) { return md_numel(t) / t->shape[t->ndim - 1]; }
static inline int64_t md_last(const md_tensor *t) { return t->shape[t->ndim - 1]; }

/* y[i] (=|+=) x[i]: beta 0 overwrites, 1 accumulates. */
void md_axpby(float *y, const float *x, int64_t n, float alpha, float beta);

/* dst[idx[i]] += scale * src[i] for rows i < n of width d (dst has `rows`
 * rows). Rows of dst are split among threads by index and each thread scans
 * i in order, so sums are the same bits for any thread count. */
void md_scatter_add_rows(float *dst, int64_t rows, int64_t d, const int32_t *idx, int64_t n,
                         const float *src, float scale);

#define MD_CHECK_CONTIG(t) MD_ASSERT(md_is_contiguous(t))
#define MD_CHECK_F32(t) MD_ASSERT((t)->dtype == MD_F32)

#endif
