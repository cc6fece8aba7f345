/* ops_vq.c — vector quantisation: nearest codebook entry, straight-through
 * output, codebook and commitment losses, with their backward.
 *
 * Distances for a block of rows: d[i, k] = ||z_i||² - 2 z_i·c_k + ||c_k||²,
 * the dot products by one gemm per block of RB rows (single-threaded inside
 * the parallel loop), so memory is RB*K floats per thread whatever N is.
 * Ties go to the lowest index. Blocks have a fixed size and the codebook
 * gradient is split by code rows (each scanning all N rows in order), so
 * every result is bit-identical for any thread count.
 */
#include "ops_internal.h"

#include <string.h>

#define RB 64   /* rows of z per distance block */

/* dz (=|+=) dzq: the straight-through estimator. */
static void vq_zq_backward(md_graph *g, md_node *nd)
{
    md_tensor *z = nd->in[0], *zq = nd->out;
    if (md_wants_grad(z))
        md_axpby(z->grad, zq->grad, md_numel(z), 1.f, md_grad_beta(z));
}

/* codebook_loss = mean (sg(z) - q)^2: dq_i = 2 (q_i - z_i) / (N*D) * dL,
 * added to row idx[i] of the codebook's gradient. */
static void vq_codebook_backward(md_graph *g, md_node *nd)
{
    md_tensor *z = nd->in[0], *cb = nd->in[1], *loss = nd->out;
    const int32_t *idx = nd->saved[0];
    if (!md_wants_grad(cb))
        return;
    int64_t N = z->shape[0], D = z->shape[1], K = cb->shape[0];
    float s = 2.f * loss->grad[0] / (float)(N * D);
    float *dcb = md_grad_acc(cb);
    /* Σ over rows i using code k of s (q_k - z_i) = s·count_k·q_k - s·Σ z_i */
    md_scatter_add_rows(dcb, K, D, idx, N, z->data, -s);
    int64_t *count = md_graph_scratch(g, sizeof(int64_t) * (size_t)K);
    memset(count, 0, sizeof(int64_t) * (size_t)K);
    for (int64_t i = 0; i < N; i++)
        count[idx[i]]++;
    #pragma omp parallel for schedule(static) if (K * D > 16384)
    for (int64_t k = 0; k < K; k++) {
        if (!count[k])
            continue;
        float c = s * (float)count[k];
        for (int64_t j = 0; j < D; j++)
            dcb[k * D + j] += c * cb->data[k * D + j];
    }
}

/* commit_loss = mean (z - sg(q))^2: dz_i = 2 (z_i - q_i) / (N*D) * dL. */
static void vq_commit_backward(md_graph *g, md_node *nd)
{
    md_tensor *z = nd->in[0], *cb = nd->in[1], *loss = nd->out;
    const int32_t *idx = nd->saved[0];
    if (!md_wants_grad(z))
        return;
    int64_t N = z->shape[0], D = z->shape[1];
    float s = 2.f * loss->grad[0] / (float)(N * D);
    float beta = md_grad_beta(z);
    #pragma omp parallel for schedule(static) if (N * D > 32768)
    for (int64_t i = 0; i < N; i++) {
        const float *zr = z->data + i * D, *qr = cb->data + (int64_t)idx[i] * D;
        float *dz = z->grad + i * D;
        #pragma omp simd
        for (int64_t j = 0; j < D; j++)
            dz[j] = (beta == 0.f ? 0.f : dz[j]) + s * (zr[j] - qr[j]);
    }
}

md_vq_result md_vq(md_graph *g, md_tensor *z, md_tensor *codebook)
{
    MD_CHECK_CONTIG(z);
    MD_CHECK_CONTIG(codebook);
    MD_CHECK_F32(z);
    MD_CHECK_F32(codebook);
    MD_ASSERT(z->ndim == 2 && codebook->ndim == 2 && z->shape[1] == codebook->shape[1]);
    MD_ASSERT(codebook->shape[0] >= 1 && codebook->shape[0] <= INT32_MAX);
    int64_t N = z->shape[0], D = z->shape[1], K = codebook->shape[0];
    const float *zv = z->data, *cv = codebook->data;

    md_vq_result r;
    r.indices = md_tensor_new(g, MD_I32, 1, &N, false);
    r.zq = md_tensor_new(g, MD_F32, 2, z->shape, md_any_grad(g, z, NULL, NULL));
    int32_t *idx = md_i32(r.indices);

    float *cn = md_graph_scratch(g, sizeof(float) * (size_t)K);   /* ||c_k||² */
    #pragma omp parallel for schedule(static) if (K * D > 32768)
    for (int64_t k = 0; k < K; k++) {
        const float *cr = cv + k * D;
        float s = 0.f;
        #pragma omp simd reduction(+:s)
        for (int64_t j = 0; j < D; j++)
            s += cr[j] * cr[j];
        cn[k] = s;
    }

    int nthr = 1;
#ifdef _OPENMP
    nthr = omp_get_max_threads();
#endif
    float *dist = md_graph_scratch(g, sizeof(float) * (size_t)(RB * K) * (size_t)nthr);
    double *rowsq = md_graph_scratch(g, sizeof(double) * (size_t)(N ? N : 1));   /* ||z_i - q_i||² */
    int64_t nblk = (N + RB - 1) / RB;
    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nblk; b++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        int64_t i0 = b * RB, rb = MD_MIN(N, i0 + RB) - i0;
        float *d = dist + (size_t)tid * (size_t)(RB * K);
        /* d [rb, K] = -2 z_blk @ codebook^T */
        md_gemm(g, false, true, rb, K, D, -2.f, zv + i0 * D, D, cv, D, 0.f, d, K);
        for (int64_t i = 0; i < rb; i++) {
            const float *zr = zv + (i0 + i) * D;
            float zn = 0.f;
            #pragma omp simd reduction(+:zn)
            for (int64_t j = 0; j < D; j++)
                zn += zr[j] * zr[j];
            const float *dr = d + i * K;
            float best = zn + dr[0] + cn[0];
            int64_t bk = 0;
            for (int64_t k = 1; k < K; k++) {
                float v = zn + dr[k] + cn[k];
                if (v < best) {
                    best = v;
                    bk = k;
                }
            }
            idx[i0 + i] = (int32_t)bk;
            const float *qr = cv + bk * D;
            float *out = r.zq->data + (i0 + i) * D;
            double sq = 0;
            for (int64_t j = 0; j < D; j++) {
                float diff = qr[j] - zr[j];
                out[j] = zr[j] + diff;   /* z + sg(q - z), rounded as PyTorch does */
                sq += (double)diff * diff;
            }
            rowsq[i0 + i] = sq;
        }
    }
    double total = 0;
    for (int64_t i = 0; i < N; i++)
        total += rowsq[i];
    float mse = (N * D != 0) ? (float)(total / (double)(N * D)) : 0.f;

    int64_t one = 1;
    r.codebook_loss = md_tensor_new(g, MD_F32, 1, &one, md_any_grad(g, codebook, NULL, NULL));
    r.commit_loss = md_tensor_new(g, MD_F32, 1, &one, md_any_grad(g, z, NULL, NULL));
    r.codebook_loss->data[0] = mse;
    r.commit_loss->data[0] = mse;

    md_node *nd = md_graph_record(g, vq_zq_backward, r.zq);
    if (nd)
        nd->in[0] = z;
    nd = md_graph_record(g, vq_codebook_backward, r.codebook_loss);
    if (nd) {
        nd->in[0] = z; nd->in[1] = codebook;
        nd->saved[0] = idx;
    }
    nd = md_graph_record(g, vq_commit_backward, r.commit_loss);
    if (nd) {
        nd->in[0] = z; nd->in[1] = codebook;
        nd->saved[0] = idx;
    }
    return r;
}
