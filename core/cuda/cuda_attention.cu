/* cuda_attention.cu — attention forward (tiles of 32 query rows sharing
 * each tile of keys in shared memory, online softmax; one block per query
 * row where few rows or wide heads make tiles pointless), its backward
 * (probabilities recomputed from the forward's log-sum-exp; one block per query row for dQ and one per
 * key row for dK and dV, so no output is written by two blocks and sums
 * run in a fixed order), and the VQ nearest-code search (one block per
 * vector). */
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
                                     int64_t tq, int64_t tk, const int64_t *tk_add, int64_t kvs, int64_t heads,
                                     int64_t dh, int causal, float scale)
{
    if (tk_add)
        tk += *tk_add;
    extern __shared__ float smem[];
    float *qs = smem, *ps = smem + dh, *red = ps + ATT_THREADS;
    const int64_t row = blockIdx.x, i = row % tq, bh = row / tq, h = bh % heads, b = bh / heads;
    const int64_t width = heads * dh;
    const float *qr = q + (b * tq + i) * width + h * dh;
    const float *kb = k + b * kvs + h * dh;
    const float *vb = v + b * kvs + h * dh;
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

/* ---- tiled forward ------------------------------------------------------ */

/* A block takes FT_Q query rows of one (batch, head) and walks the visible
 * keys FT_K at a time; the tile's keys and values sit in shared memory, so
 * each is read from global memory once per block rather than once per
 * query row. Four threads serve a query row (consecutive lanes of one
 * warp): thread lane4 scores keys lane4, lane4 + 4, ... of the tile and
 * owns output dims lane4, lane4 + 4, ...; the row's max and sum combine
 * the four over shuffles. Each score is one sum over d in order and each
 * output dim one sum over keys in order, so results do not depend on the
 * grid. Dh <= FT_DMAX. */
#define FT_Q 32
#define FT_K 16
#define FT_THREADS (FT_Q * 4)
#define FT_DMAX 128

static size_t tiled_shmem(int64_t dh)
{
    int64_t dp = dh + 1;   /* q and k rows padded: row r starts in bank r*(dh+1) */
    return sizeof(float) * (size_t)(FT_Q * dp + FT_K * dp + FT_K * dh + FT_Q * (FT_K + 1));
}

__global__ void __launch_bounds__(FT_THREADS)
attention_fwd_tiled_kernel(float *out, float *lse, const float *q, const float *k, const float *v, int64_t tq,
                           int64_t tk, int64_t kvs, int64_t heads, int64_t dh, int causal, float scale)
{
    extern __shared__ float smem[];
    const int64_t dp = dh + 1;
    float *qs = smem, *ks = qs + FT_Q * dp, *vs = ks + FT_K * dp, *ps = vs + FT_K * dh;
    const int64_t bh = blockIdx.y, h = bh % heads, b = bh / heads, i0 = (int64_t)blockIdx.x * FT_Q;
    const int64_t width = heads * dh;
    const float *qb = q + b * tq * width + h * dh;
    const float *kb = k + b * kvs + h * dh;
    const float *vb = v + b * kvs + h * dh;
    const int t = threadIdx.x, qi = t >> 2, lane4 = t & 3;
    const int64_t i = i0 + qi;

    for (int64_t x = t; x < FT_Q * dh; x += FT_THREADS) {
        int64_t r = x / dh, d = x % dh;
        qs[r * dp + d] = i0 + r < tq ? qb[(i0 + r) * width + d] : 0.0f;
    }
    /* keys row i sees: [0, kend); the block needs those of its last row */
    int64_t last = (i0 + FT_Q < tq ? i0 + FT_Q : tq) - 1;
    int64_t kend = tk, kblock = tk;
    if (causal) {
        kend = i + 1 + (tk - tq);
        kend = kend < 0 ? 0 : (kend > tk ? tk : kend);
        kblock = last + 1 + (tk - tq);
        kblock = kblock < 0 ? 0 : (kblock > tk ? tk : kblock);
    }
    if (i >= tq)
        kend = 0;

    float m = -INFINITY, l = 0.0f;
    float acc[FT_DMAX / 4];
#pragma unroll
    for (int r = 0; r < FT_DMAX / 4; r++)
        acc[r] = 0.0f;

    for (int64_t j0 = 0; j0 < kblock; j0 += FT_K) {
        __syncthreads();   /* the previous tile is no longer read */
        for (int64_t x = t; x < FT_K * dh; x += FT_THREADS) {
            int64_t r = x / dh, d = x % dh, j = j0 + r;
            bool in = j < tk;
            ks[r * dp + d] = in ? kb[j * width + d] : 0.0f;
            vs[r * dh + d] = in ? vb[j * width + d] : 0.0f;
        }
        __syncthreads();

        float sc[FT_K / 4];
#pragma unroll
        for (int s = 0; s < FT_K / 4; s++)
            sc[s] = 0.0f;
        const float *qr = qs + qi * dp, *kr = ks + lane4 * dp;
        for (int64_t d = 0; d < dh; d++) {   /* each dot in d's order; q[d] read once for four keys */
            float qd = qr[d];
#pragma unroll
            for (int s = 0; s < FT_K / 4; s++)
                sc[s] += qd * kr[4 * s * dp + d];
        }
        float mt = -INFINITY;
#pragma unroll
        for (int s = 0; s < FT_K / 4; s++) {
            sc[s] = j0 + lane4 + 4 * s < kend ? sc[s] * scale : -INFINITY;
            mt = fmaxf(mt, sc[s]);
        }
        mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
        mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
        float mnew = fmaxf(m, mt);
        float psum = 0.0f;
#pragma unroll
        for (int s = 0; s < FT_K / 4; s++) {
            float p = mnew == -INFINITY ? 0.0f : expf(sc[s] - mnew);
            ps[qi * (FT_K + 1) + lane4 + 4 * s] = p;
            psum += p;
        }
        psum += __shfl_xor_sync(0xffffffffu, psum, 1);
        psum += __shfl_xor_sync(0xffffffffu, psum, 2);
        float corr = m == -INFINITY ? 0.0f : expf(m - mnew);
        l = l * corr + psum;
        m = mnew;
        __syncwarp();   /* a row's probabilities come from its own four lanes */
        const float *pr = ps + qi * (FT_K + 1);
#pragma unroll
        for (int r = 0; r < FT_DMAX / 4; r++)
            acc[r] *= corr;
        for (int c = 0; c < FT_K; c++) {   /* each output dim in key order; p read once for all dims */
            float pc = pr[c];
            const float *vr = vs + c * dh + lane4;
#pragma unroll
            for (int r = 0; r < FT_DMAX / 4; r++)
                if (lane4 + 4 * r < dh)
                    acc[r] += pc * vr[4 * r];
        }
    }
    if (i < tq) {
        float *orow = out + (b * tq + i) * width + h * dh;
#pragma unroll
        for (int r = 0; r < FT_DMAX / 4; r++) {
            int64_t d = lane4 + 4 * r;
            if (d < dh)
                orow[d] = kend > 0 ? acc[r] / l : 0.0f;
        }
        if (lse && lane4 == 0)
            lse[bh * tq + i] = kend > 0 ? m + logf(l) : INFINITY;
    }
}

/* The row kernel over rows = B*H*Tq query rows (checked by the caller). */
static md_status launch_rows(md_cuda *c, float *out, float *lse, const float *q, const float *k, const float *v,
                             int64_t rows, int64_t tq, int64_t tk, const int64_t *tk_add, int64_t kvs, int64_t heads,
                             int64_t dh, bool causal)
{
    size_t shmem = sizeof(float) * (size_t)(dh + 2 * ATT_THREADS);
    attention_fwd_kernel<<<(unsigned)rows, ATT_THREADS, shmem, c->stream>>>(out, lse, q, k, v, tq, tk, tk_add, kvs,
                                                                            heads, dh, causal ? 1 : 0,
                                                                            1.0f / sqrtf((float)dh));
    return MD_LAUNCHED(c, "attention_fwd_kernel");
}

md_status md_cuda_attention_fwd_kv(md_cuda *c, float *out, float *lse, const float *q, const float *k,
                                   const float *v, int64_t b, int64_t tq, int64_t tk, int64_t kv_stride, int heads,
                                   int64_t dh, bool causal)
{
    if (heads < 1 || dh < 1 || dh > ATT_THREADS * ATT_DIMS || b < 0 || tq < 0 || tk < 0 ||
        kv_stride < tk * heads * dh) {
        md_log(MD_LOG_ERROR,
               "%s: attention: unsupported shape (B %lld, Tq %lld, Tk %lld, H %d, Dh %lld, key batch stride %lld; "
               "Dh <= %d)",
               c->name, (long long)b, (long long)tq, (long long)tk, heads, (long long)dh, (long long)kv_stride,
               ATT_THREADS * ATT_DIMS);
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
    if (!c->attention_rows && dh <= FT_DMAX && tq >= FT_Q / 2) {
        int64_t tiles = (tq + FT_Q - 1) / FT_Q;
        if (tiles <= 2147483647 && b * heads <= 65535) {
            dim3 grid((unsigned)tiles, (unsigned)(b * heads));
            attention_fwd_tiled_kernel<<<grid, FT_THREADS, tiled_shmem(dh), c->stream>>>(
                out, lse, q, k, v, tq, tk, kv_stride, heads, dh, causal ? 1 : 0, 1.0f / sqrtf((float)dh));
            return MD_LAUNCHED(c, "attention_fwd_tiled_kernel");
        }
    }
    return launch_rows(c, out, lse, q, k, v, rows, tq, tk, NULL, kv_stride, heads, dh, causal);
}

md_status md_cuda_attention_fwd_kv_at(md_cuda *c, float *out, const float *q, const float *k, const float *v,
                                      int64_t b, int64_t tk0, const int64_t *tk_add, int64_t kv_stride, int heads,
                                      int64_t dh)
{
    if (heads < 1 || dh < 1 || dh > ATT_THREADS * ATT_DIMS || b < 0 || tk0 < 0 || !tk_add) {
        md_log(MD_LOG_ERROR, "%s: attention at a device position: unsupported shape (B %lld, H %d, Dh %lld)",
               c->name, (long long)b, heads, (long long)dh);
        return MD_ERR_UNSUPPORTED;
    }
    int64_t rows = b * heads;
    if (rows == 0)
        return MD_OK;
    if (!md_cuda_grid_ok(rows))
        return MD_ERR_UNSUPPORTED;
    MD_TRY(md_cuda_enter(c));
    return launch_rows(c, out, NULL, q, k, v, rows, 1, tk0, tk_add, kv_stride, heads, dh, true);
}

md_status md_cuda_attention_fwd(md_cuda *c, float *out, float *lse, const float *q, const float *k,
                                const float *v, int64_t b, int64_t tq, int64_t tk, int heads,
                                int64_t dh, bool causal)
{
    return md_cuda_attention_fwd_kv(c, out, lse, q, k, v, b, tq, tk, tk * heads * dh, heads, dh, causal);
}

/* ---- attention backward --------------------------------------------------------------- */

/* Visible keys of query row i: [0, kend). */
__device__ inline int64_t att_kend(int64_t i, int64_t tq, int64_t tk, int causal)
{
    if (!causal)
        return tk;
    int64_t e = i + 1 + (tk - tq);
    return e < 0 ? 0 : (e > tk ? tk : e);
}

/* drow[(b*H + h)*Tq + i] = dO_i . O_i over the head's dims. */
__global__ void attention_bwd_rowdot_kernel(float *drow, const float *dout, const float *out, int64_t tq,
                                            int64_t heads, int64_t dh)
{
    __shared__ float red[ATT_THREADS];
    const int64_t row = blockIdx.x, i = row % tq, bh = row / tq, h = bh % heads, b = bh / heads;
    const int64_t off = (b * tq + i) * heads * dh + h * dh;
    float s = 0.0f;
    for (int64_t d = threadIdx.x; d < dh; d += ATT_THREADS)
        s += dout[off + d] * out[off + d];
    s = md_block_sum(s, red);
    if (threadIdx.x == 0)
        drow[row] = s;
}

/* dQ_i = scale * sum_j p_ij (dO_i . V_j - D_i) K_j, block per query row;
 * p_ij = exp(scale Q_i . K_j - lse_i). Thread t scores key j0 + t of each
 * chunk, then adds the chunk into the dims it owns. */
__global__ void attention_bwd_dq_kernel(float *dq, const float *dout, const float *q, const float *k,
                                        const float *v, const float *lse, const float *drow, int64_t tq,
                                        int64_t tk, int64_t heads, int64_t dh, int causal, float scale)
{
    extern __shared__ float smem[];
    float *qs = smem, *gs = smem + dh, *ds = gs + dh;
    const int64_t row = blockIdx.x, i = row % tq, bh = row / tq, h = bh % heads, b = bh / heads;
    const int64_t width = heads * dh, off = (b * tq + i) * width + h * dh;
    const float *kb = k + b * tk * width + h * dh, *vb = v + b * tk * width + h * dh;
    const int t = threadIdx.x;
    for (int64_t d = t; d < dh; d += ATT_THREADS) {
        qs[d] = q[off + d];
        gs[d] = dout[off + d];
    }
    __syncthreads();
    const int64_t kend = att_kend(i, tq, tk, causal);
    const float l = lse[row], dr = drow[row];
    float acc[ATT_DIMS];
    for (int r = 0; r < ATT_DIMS; r++)
        acc[r] = 0.0f;
    for (int64_t j0 = 0; j0 < kend; j0 += ATT_THREADS) {
        const int64_t j = j0 + t;
        float g = 0.0f;
        if (j < kend) {
            float sq = 0.0f, dp = 0.0f;
            for (int64_t d = 0; d < dh; d++) {
                sq += qs[d] * kb[j * width + d];
                dp += gs[d] * vb[j * width + d];
            }
            g = expf(sq * scale - l) * (dp - dr);
        }
        ds[t] = g;
        __syncthreads();
        const int64_t jn = kend - j0 < ATT_THREADS ? kend - j0 : ATT_THREADS;
        for (int r = 0; r < ATT_DIMS; r++) {
            const int64_t d = t + (int64_t)r * ATT_THREADS;
            if (d < dh)
                for (int64_t jj = 0; jj < jn; jj++)
                    acc[r] += ds[jj] * kb[(j0 + jj) * width + d];
        }
        __syncthreads();
    }
    for (int r = 0; r < ATT_DIMS; r++) {
        const int64_t d = t + (int64_t)r * ATT_THREADS;
        if (d < dh)
            dq[off + d] = acc[r] * scale;
    }
}

/* Block per key row j: dV_j = sum_i p_ij dO_i and dK_j = scale sum_i
 * p_ij (dO_i . V_j - D_i) Q_i over the queries that see key j. */
__global__ void attention_bwd_dkv_kernel(float *dk, float *dv, const float *dout, const float *q, const float *k,
                                         const float *v, const float *lse, const float *drow, int64_t tq,
                                         int64_t tk, int64_t heads, int64_t dh, int causal, float scale)
{
    extern __shared__ float smem[];
    float *ks = smem, *vs = smem + dh, *ps = vs + dh, *gs = ps + ATT_THREADS;
    const int64_t row = blockIdx.x, j = row % tk, bh = row / tk, h = bh % heads, b = bh / heads;
    const int64_t width = heads * dh, off = (b * tk + j) * width + h * dh;
    const float *qb = q + b * tq * width + h * dh, *ob = dout + b * tq * width + h * dh;
    const float *lb = lse + bh * tq, *db = drow + bh * tq;
    const int t = threadIdx.x;
    for (int64_t d = t; d < dh; d += ATT_THREADS) {
        ks[d] = k[off + d];
        vs[d] = v[off + d];
    }
    __syncthreads();
    /* query i sees key j when j < att_kend(i): for causal, i >= j - (tk - tq) */
    int64_t i0 = 0;
    if (causal) {
        i0 = j - (tk - tq);
        i0 = i0 < 0 ? 0 : i0;
    }
    float ak[ATT_DIMS], av[ATT_DIMS];
    for (int r = 0; r < ATT_DIMS; r++)
        ak[r] = av[r] = 0.0f;
    for (int64_t c0 = i0; c0 < tq; c0 += ATT_THREADS) {
        const int64_t i = c0 + t;
        float p = 0.0f, g = 0.0f;
        if (i < tq) {
            float sq = 0.0f, dp = 0.0f;
            for (int64_t d = 0; d < dh; d++) {
                sq += qb[i * width + d] * ks[d];
                dp += ob[i * width + d] * vs[d];
            }
            p = expf(sq * scale - lb[i]);   /* lse +inf (no key seen) gives 0 */
            g = p * (dp - db[i]);
        }
        ps[t] = p;
        gs[t] = g;
        __syncthreads();
        const int64_t in = tq - c0 < ATT_THREADS ? tq - c0 : ATT_THREADS;
        for (int r = 0; r < ATT_DIMS; r++) {
            const int64_t d = t + (int64_t)r * ATT_THREADS;
            if (d < dh)
                for (int64_t ii = 0; ii < in; ii++) {
                    av[r] += ps[ii] * ob[(c0 + ii) * width + d];
                    ak[r] += gs[ii] * qb[(c0 + ii) * width + d];
                }
        }
        __syncthreads();
    }
    for (int r = 0; r < ATT_DIMS; r++) {
        const int64_t d = t + (int64_t)r * ATT_THREADS;
        if (d < dh) {
            dk[off + d] = ak[r] * scale;
            dv[off + d] = av[r];
        }
    }
}

md_status md_cuda_attention_bwd(md_cuda *c, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                const float *k, const float *v, const float *out, const float *lse, int64_t b,
                                int64_t tq, int64_t tk, int heads, int64_t dh, bool causal)
{
    if (heads < 1 || dh < 1 || dh > ATT_THREADS * ATT_DIMS || b < 0 || tq < 0 || tk < 0) {
        md_log(MD_LOG_ERROR, "%s: attention backward: unsupported shape (B %lld, Tq %lld, Tk %lld, H %d, Dh %lld; "
               "Dh <= %d)", c->name, (long long)b, (long long)tq, (long long)tk, heads, (long long)dh,
               ATT_THREADS * ATT_DIMS);
        return MD_ERR_UNSUPPORTED;
    }
    const int64_t qrows = b * heads * tq, krows = b * heads * tk;
    if (qrows == 0 && krows == 0)
        return MD_OK;
    if ((qrows && !md_cuda_grid_ok(qrows)) || (krows && !md_cuda_grid_ok(krows))) {
        md_log(MD_LOG_ERROR, "%s: attention backward: %lld query rows or %lld key rows is more than one launch "
               "takes", c->name, (long long)qrows, (long long)krows);
        return MD_ERR_UNSUPPORTED;
    }
    MD_TRY(md_cuda_enter(c));
    const size_t mark = md_cuda_mark(c);
    float *drow = (float *)md_cuda_alloc(c, sizeof(float) * (size_t)(qrows ? qrows : 1));
    if (!drow)
        return MD_ERR_ALLOC;
    const float scale = 1.0f / sqrtf((float)dh);
    md_status st = MD_OK;
    if (qrows) {
        attention_bwd_rowdot_kernel<<<(unsigned)qrows, ATT_THREADS, 0, c->stream>>>(drow, dout, out, tq, heads, dh);
        st = MD_LAUNCHED(c, "attention_bwd_rowdot_kernel");
        if (st == MD_OK) {
            attention_bwd_dq_kernel<<<(unsigned)qrows, ATT_THREADS, sizeof(float) * (size_t)(2 * dh + ATT_THREADS),
                                      c->stream>>>(dq, dout, q, k, v, lse, drow, tq, tk, heads, dh, causal ? 1 : 0,
                                                   scale);
            st = MD_LAUNCHED(c, "attention_bwd_dq_kernel");
        }
    }
    if (st == MD_OK && krows) {
        attention_bwd_dkv_kernel<<<(unsigned)krows, ATT_THREADS,
                                   sizeof(float) * (size_t)(2 * dh + 2 * ATT_THREADS), c->stream>>>(
            dk, dv, dout, q, k, v, lse, drow, tq, tk, heads, dh, causal ? 1 : 0, scale);
        st = MD_LAUNCHED(c, "attention_bwd_dkv_kernel");
    }
    md_cuda_rewind_to(c, mark);   /* later work is ordered after these kernels on the stream */
    return st;
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
