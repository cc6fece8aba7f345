/* cuda_attention.cu — attention forward (one block per query row, online
 * softmax over chunks of keys) and the VQ nearest-code search (one block
 * per vector). */
#include "cuda_internal.h"

#include <cmath>

/* Keys per chunk = threads per block: each thread scores one key of the
 * chunk, then each thread updates the output dims it owns (d = t, t + 128,
 * ...), so Dh is at most ATT_THREADS * ATT_DIMS. */
#define ATT_THREADS 128
#define ATT_DIMS 4

/* Block row = (b*H + h)*Tq + i. Shared: q row [dh], probabilities of the
 * chunk [ATT_THREADS], reduction space [ATT_THREADS].
 * Running state (all threads hold the same m and l): m the largest score
 * so far, l = sum exp(score - m), acc[d] = sum exp(score - m) v[., d]. */
__global__ void attention_fwd_kernel(float *out, float *lse, const float *q, const float *k, const float *v,
                                     int64_t tq, int64_t tk, int64_t heads, int64_t dh, int causal, float scale)
{
    extern __shared__ float smem[];
    float *qs = smem, *ps = smem + dh, *red = ps + ATT_THREADS;
    const int64_t row = blockIdx.x, i = row % tq, bh = row / tq, h = bh % heads, b = bh / heads;
    const int64_t width = heads * dh;
    const float *qr = q + (b * tq + i) * width + h * dh;
    const float *kb = k + b * tk * width + h * dh;
    const float *vb = v + b * tk * width + h * dh;
    float *orow = out + (b * tq + i) * width + h * dh;
    const int t = threadIdx.x;

    for (int64_t d = t; d < dh; d += ATT_THREADS)
        qs[d] = qr[d];
    __syncthreads();

    int64_t kend = tk;   /* keys [0, kend) are visible */
    if (causal) {
        kend = i + 1 + (tk - tq);
        kend = kend < 0 ? 0 : (kend > tk ? tk : kend);
    }
    float m = -INFINITY, l = 0.0f;
    float acc[ATT_DIMS];
    for (int r = 0; r < ATT_DIMS; r++)
        acc[r] = 0.0f;

    for (int64_t j0 = 0; j0 < kend; j0 += ATT_THREADS) {   /* the same trip count for every thread */
        int64_t j = j0 + t;
        float sc = -INFINITY;
        if (j < kend) {
            const float *kr = kb + j * width;
            float dot = 0.0f;
            for (int64_t d = 0; d < dh; d++)
                dot += qs[d] * kr[d];
            sc = dot * scale;
        }
        float mnew = fmaxf(m, md_block_max(sc, red));   /* finite: key j0 is visible */
        float p = j < kend ? expf(sc - mnew) : 0.0f;
        ps[t] = p;
        float csum = md_block_sum(p, red);              /* its barriers publish ps too */
        float corr = expf(m - mnew);                    /* 0 on the first chunk */
        l = l * corr + csum;
        int64_t jn = kend - j0 < ATT_THREADS ? kend - j0 : ATT_THREADS;
        for (int r = 0; r < ATT_DIMS; r++) {
            int64_t d = t + (int64_t)r * ATT_THREADS;
            if (d < dh) {
                float a = acc[r] * corr;
                for (int64_t jj = 0; jj < jn; jj++)
                    a += ps[jj] * vb[(j0 + jj) * width + d];
                acc[r] = a;
            }
        }
        m = mnew;
        __syncthreads();   /* ps is rewritten by the next chunk */
    }
    for (int r = 0; r < ATT_DIMS; r++) {
        int64_t d = t + (int64_t)r * ATT_THREADS;
        if (d < dh)
            orow[d] = kend > 0 ? acc[r] / l : 0.0f;
    }
    if (lse && t == 0)
        lse[row] = kend > 0 ? m + logf(l) : INFINITY;
}

md_status md_cuda_attention_fwd(md_cuda *c, float *out, float *lse, const float *q, const float *k,
                                const float *v, int64_t b, int64_t tq, int64_t tk, int heads,
                                int64_t dh, bool causal)
{
    if (heads < 1 || dh < 1 || dh > ATT_THREADS * ATT_DIMS || b < 0 || tq < 0 || tk < 0) {
        md_log(MD_LOG_ERROR, "%s: attention: unsupported shape (B %lld, Tq %lld, Tk %lld, H %d, Dh %lld; Dh <= %d)",
               c->name, (long long)b, (long long)tq, (long long)tk, heads, (long long)dh, ATT_THREADS * ATT_DIMS);
        return MD_ERR_UNSUPPORTED;
    }
    int64_t rows = b * heads * tq;
    if (rows == 0)
        return MD_OK;
    if (!md_cuda_grid_ok(rows)) {
        md_log(MD_LOG_ERROR, "%s: attention: %lld query rows is more than one launch takes", c->name, (long long)rows);
        return MD_ERR_UNSUPPORTED;
    }
    MD_TRY(md_cuda_enter(c));
    size_t shmem = sizeof(float) * (size_t)(dh + 2 * ATT_THREADS);
    float scale = 1.0f / sqrtf((float)dh);
    attention_fwd_kernel<<<(unsigned)rows, ATT_THREADS, shmem, c->stream>>>(out, lse, q, k, v, tq, tk, heads, dh,
                                                                            causal ? 1 : 0, scale);
    return MD_LAUNCHED(c, "attention_fwd_kernel");
}

/* ---- VQ nearest code ------------------------------------------------------------ */

/* Block i: each thread scans codes t, t + 256, ... keeping its first
 * smallest distance; the tree then keeps the smaller distance, or on a tie
 * the lower index. A row whose distances are all NaN gets code 0 (as the
 * CPU's scan, which starts from code 0). */
__global__ void vq_nearest_kernel(int32_t *idx, const float *z, const float *cb, int64_t d, int64_t k)
{
    __shared__ float sd[MD_CUDA_THREADS];
    __shared__ int64_t si[MD_CUDA_THREADS];
    const float *zr = z + (int64_t)blockIdx.x * d;
    float best = INFINITY;
    int64_t bi = k;   /* none yet */
    for (int64_t kk = threadIdx.x; kk < k; kk += blockDim.x) {
        const float *cr = cb + kk * d;
        float s = 0.0f;
        for (int64_t j = 0; j < d; j++) {
            float t = zr[j] - cr[j];
            s += t * t;
        }
        if (s < best || (bi == k && s == best)) {   /* the second clause admits a first +inf */
            best = s;
            bi = kk;
        }
    }
    unsigned t = threadIdx.x;
    sd[t] = best;
    si[t] = bi;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) {
            float d2 = sd[t + s];
            int64_t i2 = si[t + s];
            if (d2 < sd[t] || (d2 == sd[t] && i2 < si[t])) {
                sd[t] = d2;
                si[t] = i2;
            }
        }
        __syncthreads();
    }
    if (t == 0)
        idx[blockIdx.x] = (int32_t)(si[0] < k ? si[0] : 0);
}

md_status md_cuda_vq_nearest(md_cuda *c, int32_t *idx, const float *z, const float *codebook,
                             int64_t n, int64_t d, int64_t k)
{
    if (k < 1 || k > INT32_MAX || d < 1) {
        md_log(MD_LOG_ERROR, "%s: vq: codebook of %lld codes of width %lld", c->name, (long long)k, (long long)d);
        return MD_ERR_INVALID;
    }
    if (n <= 0)
        return MD_OK;
    if (!md_cuda_grid_ok(n)) {
        md_log(MD_LOG_ERROR, "%s: vq: %lld vectors is more than one launch takes", c->name, (long long)n);
        return MD_ERR_UNSUPPORTED;
    }
    MD_TRY(md_cuda_enter(c));
    vq_nearest_kernel<<<(unsigned)n, MD_CUDA_THREADS, 0, c->stream>>>(idx, z, codebook, d, k);
    return MD_LAUNCHED(c, "vq_nearest_kernel");
}
