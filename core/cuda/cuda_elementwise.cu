/* cuda_elementwise.cu — unary activations (forward, backward), binary
 * add/sub/mul, the AdamW update, a bias over rows and its gradient, and
 * embedding lookup and its gradient. One thread per element in grid-stride
 * loops unless a kernel says otherwise. Formulas as ops.c and optim.c; libm-accurate device functions
 * stand in for the CPU's vectorised approximations (a few ulp apart). */
#include "cuda_internal.h"

#include <cmath>

__device__ inline float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void unary_fwd_kernel(int op, float *y, const float *x, int64_t n)
{
    MD_GRID_LOOP(i, n) {
        float v = x[i], r;
        switch (op) {
        case MD_CUDA_GELU: r = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
        case MD_CUDA_SILU: r = v * sigmoid_f(v); break;
        case MD_CUDA_RELU: r = v > 0.0f ? v : 0.0f; break;
        case MD_CUDA_TANH: r = tanhf(v); break;
        case MD_CUDA_SIGMOID: r = sigmoid_f(v); break;
        default: r = expf(v); break;
        }
        y[i] = r;
    }
}

__global__ void unary_bwd_kernel(int op, float *dx, const float *dy, const float *x, const float *y, int64_t n)
{
    MD_GRID_LOOP(i, n) {
        float d = dy[i], r;
        switch (op) {
        case MD_CUDA_GELU: {
            float v = x[i];
            float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
            r = d * (cdf + v * pdf);
            break;
        }
        case MD_CUDA_SILU: {
            float v = x[i], s = sigmoid_f(v);
            r = d * s * (1.0f + v * (1.0f - s));
            break;
        }
        case MD_CUDA_RELU: r = x[i] > 0.0f ? d : 0.0f; break;
        case MD_CUDA_TANH: r = d * (1.0f - y[i] * y[i]); break;
        case MD_CUDA_SIGMOID: r = d * y[i] * (1.0f - y[i]); break;
        default: r = d * y[i]; break;
        }
        dx[i] = r;
    }
}

static bool unary_ok(md_cuda *c, md_cuda_unary_op op)
{
    if ((int)op >= MD_CUDA_GELU && (int)op <= MD_CUDA_EXP)
        return true;
    md_log(MD_LOG_ERROR, "%s: unknown unary op %d", c->name, (int)op);
    return false;
}

md_status md_cuda_unary_fwd(md_cuda *c, md_cuda_unary_op op, float *y, const float *x, int64_t n)
{
    if (!unary_ok(c, op))
        return MD_ERR_INVALID;
    if (n <= 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    unary_fwd_kernel<<<md_cuda_blocks(n), MD_CUDA_THREADS, 0, c->stream>>>((int)op, y, x, n);
    return MD_LAUNCHED(c, "unary_fwd_kernel");
}

md_status md_cuda_unary_bwd(md_cuda *c, md_cuda_unary_op op, float *dx, const float *dy,
                            const float *x, const float *y, int64_t n)
{
    if (!unary_ok(c, op))
        return MD_ERR_INVALID;
    bool needs_x = op == MD_CUDA_GELU || op == MD_CUDA_SILU || op == MD_CUDA_RELU;
    if ((needs_x && !x) || (!needs_x && !y)) {
        md_log(MD_LOG_ERROR, "%s: unary backward needs the forward's %s", c->name, needs_x ? "input" : "output");
        return MD_ERR_INVALID;
    }
    if (n <= 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    unary_bwd_kernel<<<md_cuda_blocks(n), MD_CUDA_THREADS, 0, c->stream>>>((int)op, dx, dy, x, y, n);
    return MD_LAUNCHED(c, "unary_bwd_kernel");
}

__global__ void binary_kernel(int op, float *y, const float *a, const float *b, int64_t n)
{
    MD_GRID_LOOP(i, n) {
        float u = a[i], v = b[i];
        y[i] = op == MD_CUDA_ADD ? u + v : (op == MD_CUDA_SUB ? u - v : u * v);
    }
}

md_status md_cuda_binary(md_cuda *c, md_cuda_binary_op op, float *y, const float *a, const float *b, int64_t n)
{
    if ((int)op < MD_CUDA_ADD || (int)op > MD_CUDA_MUL) {
        md_log(MD_LOG_ERROR, "%s: unknown binary op %d", c->name, (int)op);
        return MD_ERR_INVALID;
    }
    if (n <= 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    binary_kernel<<<md_cuda_blocks(n), MD_CUDA_THREADS, 0, c->stream>>>((int)op, y, a, b, n);
    return MD_LAUNCHED(c, "binary_kernel");
}

/* ---- AdamW ------------------------------------------------------------------- */

struct adamw_scalars {
    float b1, omb1, b2, omb2, eps, bc2_sqrt, neg_step_size, decay;
};

/* The CPU's order of operations, each rounded on its own (the _rn
 * intrinsics are never contracted into fused multiply-adds). */
__global__ void adamw_kernel(adamw_scalars k, float *p, const float *g, float *m, float *v, int64_t n)
{
    MD_GRID_LOOP(i, n) {
        float gi = g[i];
        float mi = __fadd_rn(__fmul_rn(m[i], k.b1), __fmul_rn(k.omb1, gi));
        float vi = __fadd_rn(__fmul_rn(v[i], k.b2), __fmul_rn(__fmul_rn(k.omb2, gi), gi));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bc2_sqrt), k.eps);
        float pi = __fmul_rn(p[i], k.decay);
        p[i] = __fadd_rn(pi, __fdiv_rn(__fmul_rn(k.neg_step_size, mi), denom));
        m[i] = mi;
        v[i] = vi;
    }
}

md_status md_cuda_adamw_step(md_cuda *c, const md_cuda_adamw *h, float *p, const float *g, float *m,
                             float *v, int64_t n)
{
    if (h->step < 1) {
        md_log(MD_LOG_ERROR, "%s: AdamW step %lld: steps count from 1", c->name, (long long)h->step);
        return MD_ERR_INVALID;
    }
    if (n <= 0)
        return MD_OK;
    const double t = (double)h->step;
    const double bc1 = 1.0 - pow((double)h->beta1, t);
    const double bc2 = 1.0 - pow((double)h->beta2, t);
    adamw_scalars k;
    k.b1 = h->beta1;
    k.omb1 = (float)(1.0 - (double)h->beta1);
    k.b2 = h->beta2;
    k.omb2 = (float)(1.0 - (double)h->beta2);
    k.eps = h->eps;
    k.bc2_sqrt = (float)sqrt(bc2);
    k.neg_step_size = (float)(-((double)h->lr / bc1));
    k.decay = h->decay ? (float)(1.0 - (double)h->lr * (double)h->weight_decay) : 1.0f;
    MD_TRY(md_cuda_enter(c));
    adamw_kernel<<<md_cuda_blocks(n), MD_CUDA_THREADS, 0, c->stream>>>(k, p, g, m, v, n);
    return MD_LAUNCHED(c, "adamw_kernel");
}

/* ---- rows: a bias broadcast over rows, and its gradient ------------------------------ */

__global__ void add_rows_kernel(float *y, const float *x, const float *b, int64_t rows, int64_t d)
{
    MD_GRID_LOOP(i, rows * d)
        y[i] = x[i] + b[i % d];
}

md_status md_cuda_add_rows(md_cuda *c, float *y, const float *x, const float *b, int64_t rows, int64_t d)
{
    if (rows < 0 || d < 1) {
        md_log(MD_LOG_ERROR, "%s: add_rows: %lld rows of %lld", c->name, (long long)rows, (long long)d);
        return MD_ERR_INVALID;
    }
    if (rows == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    add_rows_kernel<<<md_cuda_blocks(rows * d), MD_CUDA_THREADS, 0, c->stream>>>(y, x, b, rows, d);
    return MD_LAUNCHED(c, "add_rows_kernel");
}

__global__ void add_row_at_kernel(float *x, int64_t rows, int64_t d, const float *table, const int64_t *index)
{
    const float *t = table + *index * d;
    MD_GRID_LOOP(i, rows * d) {
        x[i] = x[i] + t[i % d];
    }
}

md_status md_cuda_add_row_at(md_cuda *c, float *x, int64_t rows, int64_t d, const float *table,
                             const int64_t *index)
{
    if (rows < 0 || d < 1) {
        md_log(MD_LOG_ERROR, "%s: add_row_at: %lld rows of %lld", c->name, (long long)rows, (long long)d);
        return MD_ERR_INVALID;
    }
    if (rows == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    add_row_at_kernel<<<md_cuda_blocks(rows * d), MD_CUDA_THREADS, 0, c->stream>>>(x, rows, d, table, index);
    return MD_LAUNCHED(c, "add_row_at_kernel");
}

__global__ void split_qkv_at_kernel(float *q, float *k, float *v, const float *qkv, int64_t rows, int64_t d,
                                    int64_t kvs, const int64_t *pos)
{
    const int64_t p = *pos;
    MD_GRID_LOOP(i, rows * d) {
        const int64_t r = i / d, j = i % d;
        const float *src = qkv + r * 3 * d;
        q[i] = src[j];
        k[r * kvs + p * d + j] = src[d + j];
        v[r * kvs + p * d + j] = src[2 * d + j];
    }
}

md_status md_cuda_split_qkv_at(md_cuda *c, float *q, float *k, float *v, const float *qkv, int64_t rows, int64_t d,
                               int64_t kv_stride, const int64_t *pos)
{
    if (rows < 0 || d < 1 || kv_stride < d) {
        md_log(MD_LOG_ERROR, "%s: split_qkv_at: %lld rows of %lld, rows %lld apart", c->name, (long long)rows,
               (long long)d, (long long)kv_stride);
        return MD_ERR_INVALID;
    }
    if (rows == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    split_qkv_at_kernel<<<md_cuda_blocks(rows * d), MD_CUDA_THREADS, 0, c->stream>>>(q, k, v, qkv, rows, d,
                                                                                     kv_stride, pos);
    return MD_LAUNCHED(c, "split_qkv_at_kernel");
}

/* One thread per column, walking the rows in order: a fixed sum order, and
 * neighbouring threads read neighbouring floats. */
__global__ void sum_rows_kernel(float *out, const float *x, int64_t rows, int64_t d, float beta)
{
    MD_GRID_LOOP(j, d) {
        float s = 0.0f;
        for (int64_t r = 0; r < rows; r++)
            s += x[r * d + j];
        out[j] = beta == 0.0f ? s : s + beta * out[j];
    }
}

md_status md_cuda_sum_rows(md_cuda *c, float *out, const float *x, int64_t rows, int64_t d, float beta)
{
    if (rows < 0 || d < 1) {
        md_log(MD_LOG_ERROR, "%s: sum_rows: %lld rows of %lld", c->name, (long long)rows, (long long)d);
        return MD_ERR_INVALID;
    }
    MD_TRY(md_cuda_enter(c));
    sum_rows_kernel<<<md_cuda_blocks(d), MD_CUDA_THREADS, 0, c->stream>>>(out, x, rows, d, beta);
    return MD_LAUNCHED(c, "sum_rows_kernel");
}

/* ---- embedding ---------------------------------------------------------------------- */

__global__ void embedding_fwd_kernel(float *y, const float *table, const int32_t *ids, int64_t n, int64_t d)
{
    MD_GRID_LOOP(i, n * d)
        y[i] = table[(int64_t)ids[i / d] * d + i % d];
}

/* Block per vocabulary row: its threads own the row's dims and add the
 * rows of dy whose id is this one, in index order (no atomics: the same
 * bits every run). */
__global__ void embedding_bwd_kernel(float *dtable, const float *dy, const int32_t *ids, int64_t n, int64_t d)
{
    const int64_t v = blockIdx.x;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++)
            if (ids[i] == v)
                s += dy[i * d + j];
        dtable[v * d + j] = s;
    }
}

md_status md_cuda_embedding_fwd(md_cuda *c, float *y, const float *table, const int32_t *ids, int64_t n,
                                int64_t d)
{
    if (n < 0 || d < 1) {
        md_log(MD_LOG_ERROR, "%s: embedding: %lld ids of width %lld", c->name, (long long)n, (long long)d);
        return MD_ERR_INVALID;
    }
    if (n == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    embedding_fwd_kernel<<<md_cuda_blocks(n * d), MD_CUDA_THREADS, 0, c->stream>>>(y, table, ids, n, d);
    return MD_LAUNCHED(c, "embedding_fwd_kernel");
}

md_status md_cuda_embedding_bwd(md_cuda *c, float *dtable, const float *dy, const int32_t *ids, int64_t n,
                                int64_t vocab, int64_t d)
{
    if (n < 0 || d < 1 || vocab < 1 || !md_cuda_grid_ok(vocab)) {
        md_log(MD_LOG_ERROR, "%s: embedding backward: %lld ids, vocabulary %lld, width %lld", c->name,
               (long long)n, (long long)vocab, (long long)d);
        return MD_ERR_INVALID;
    }
    MD_TRY(md_cuda_enter(c));
    embedding_bwd_kernel<<<(unsigned)vocab, MD_CUDA_THREADS, 0, c->stream>>>(dtable, dy, ids, n, d);
    return MD_LAUNCHED(c, "embedding_bwd_kernel");
}

/* ---- pair losses: mean (a-b)^2 and mean |a-b| ---------------------------------------- */

#define LOSS_BLOCKS 256

/* Block k sums (a-b)^2 (or |a-b|; b NULL: a^2 or |a|) over the elements
 * k*T + t, stepping by the whole grid, in double; a fixed grid, so the
 * partials and their order do not change from run to run. */
__global__ void pair_loss_partial_kernel(double *part, const float *a, const float *b, int64_t n, int l1)
{
    __shared__ double red[MD_CUDA_THREADS];
    double s = 0.0;
    MD_GRID_LOOP(i, n) {
        double d = (double)a[i] - (b ? (double)b[i] : 0.0);
        s += l1 ? fabs(d) : d * d;
    }
    s = md_block_sum(s, red);
    if (threadIdx.x == 0)
        part[blockIdx.x] = s;
}

/* The partials' sum: to sum (a double) and/or mean = sum / n (a float). */
__global__ void sum_parts_kernel(double *sum, float *mean, const double *part, int nparts, int64_t n)
{
    __shared__ double red[MD_CUDA_THREADS];
    double s = 0.0;
    for (int k = threadIdx.x; k < nparts; k += blockDim.x)
        s += part[k];
    s = md_block_sum(s, red);
    if (threadIdx.x == 0) {
        if (sum)
            sum[0] = s;
        if (mean)
            mean[0] = (float)(s / (double)(n ? n : 1));
    }
}

md_status md_cuda_pair_loss_fwd(md_cuda *c, float *y, const float *a, const float *b, int64_t n, bool l1)
{
    if (n < 0) {
        md_log(MD_LOG_ERROR, "%s: loss over %lld elements", c->name, (long long)n);
        return MD_ERR_INVALID;
    }
    MD_TRY(md_cuda_enter(c));
    const size_t mark = md_cuda_mark(c);
    double *part = (double *)md_cuda_alloc(c, sizeof(double) * LOSS_BLOCKS);
    if (!part)
        return MD_ERR_ALLOC;
    pair_loss_partial_kernel<<<LOSS_BLOCKS, MD_CUDA_THREADS, 0, c->stream>>>(part, a, b, n, l1 ? 1 : 0);
    md_status st = MD_LAUNCHED(c, "pair_loss_partial_kernel");
    if (st == MD_OK) {
        sum_parts_kernel<<<1, MD_CUDA_THREADS, 0, c->stream>>>(NULL, y, part, LOSS_BLOCKS, n);
        st = MD_LAUNCHED(c, "sum_parts_kernel");
    }
    md_cuda_rewind_to(c, mark);
    return st;
}

__global__ void pair_loss_bwd_kernel(float *da, float *db, const float *a, const float *b, float s, int64_t n,
                                     int l1)
{
    MD_GRID_LOOP(i, n) {
        float d = a[i] - b[i];
        float gv = l1 ? (d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f)) : 2.0f * d;
        if (da)
            da[i] = s * gv;
        if (db)
            db[i] = -s * gv;
    }
}

md_status md_cuda_pair_loss_bwd(md_cuda *c, float *da, float *db, const float *a, const float *b, float dy,
                                int64_t n, bool l1)
{
    if (n < 0) {
        md_log(MD_LOG_ERROR, "%s: loss gradient over %lld elements", c->name, (long long)n);
        return MD_ERR_INVALID;
    }
    if (n == 0 || (!da && !db))
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    pair_loss_bwd_kernel<<<md_cuda_blocks(n), MD_CUDA_THREADS, 0, c->stream>>>(da, db, a, b, dy / (float)n, n,
                                                                               l1 ? 1 : 0);
    return MD_LAUNCHED(c, "pair_loss_bwd_kernel");
}

/* ---- nearest upsampling of [planes, h, w] by an integer factor ---------------------- */

__global__ void upsample_fwd_kernel(float *y, const float *x, int64_t planes, int64_t h, int64_t w, int64_t s)
{
    const int64_t oh = h * s, ow = w * s;
    MD_GRID_LOOP(i, planes * oh * ow) {
        const int64_t p = i / (oh * ow), r = (i / ow) % oh, q = i % ow;
        y[i] = x[(p * h + r / s) * w + q / s];
    }
}

/* thread per input element: the s*s outputs it fed, in row order */
__global__ void upsample_bwd_kernel(float *dx, const float *dy, int64_t planes, int64_t h, int64_t w, int64_t s)
{
    const int64_t ow = w * s;
    MD_GRID_LOOP(i, planes * h * w) {
        const int64_t p = i / (h * w), r = (i / w) % h, q = i % w;
        const float *base = dy + (p * h * s + r * s) * ow + q * s;
        float acc = 0.0f;
        for (int64_t a = 0; a < s; a++)
            for (int64_t b = 0; b < s; b++)
                acc += base[a * ow + b];
        dx[i] = acc;
    }
}

md_status md_cuda_upsample_nearest(md_cuda *c, float *y, const float *x, int64_t planes, int64_t h, int64_t w,
                                   int scale)
{
    if (planes < 0 || h < 1 || w < 1 || scale < 1) {
        md_log(MD_LOG_ERROR, "%s: upsample: %lld planes of %lld x %lld by %d", c->name, (long long)planes,
               (long long)h, (long long)w, scale);
        return MD_ERR_INVALID;
    }
    if (planes == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    const int64_t n = planes * h * w * scale * scale;
    upsample_fwd_kernel<<<md_cuda_blocks(n), MD_CUDA_THREADS, 0, c->stream>>>(y, x, planes, h, w, scale);
    return MD_LAUNCHED(c, "upsample_fwd_kernel");
}

md_status md_cuda_upsample_nearest_bwd(md_cuda *c, float *dx, const float *dy, int64_t planes, int64_t h,
                                       int64_t w, int scale)
{
    if (planes < 0 || h < 1 || w < 1 || scale < 1) {
        md_log(MD_LOG_ERROR, "%s: upsample backward: %lld planes of %lld x %lld by %d", c->name,
               (long long)planes, (long long)h, (long long)w, scale);
        return MD_ERR_INVALID;
    }
    if (planes == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    upsample_bwd_kernel<<<md_cuda_blocks(planes * h * w), MD_CUDA_THREADS, 0, c->stream>>>(dx, dy, planes, h, w,
                                                                                          scale);
    return MD_LAUNCHED(c, "upsample_bwd_kernel");
}

/* ---- strided copies: permute, slice, concat and their gradients ------------------------ */

struct copy_desc {
    int nd;
    int64_t shape[MD_CUDA_COPY_DIMS], ss[MD_CUDA_COPY_DIMS], ds[MD_CUDA_COPY_DIMS];
};

/* thread per element of the shape, in row-major order of the shape */
__global__ void strided_copy_kernel(float *dst, const float *src, copy_desc q, int64_t n, float beta)
{
    MD_GRID_LOOP(i, n) {
        int64_t rest = i, so = 0, dof = 0;
        for (int k = q.nd - 1; k >= 0; k--) {
            const int64_t idx = rest % q.shape[k];
            rest /= q.shape[k];
            so += idx * q.ss[k];
            dof += idx * q.ds[k];
        }
        dst[dof] = beta == 0.0f ? src[so] : src[so] + beta * dst[dof];
    }
}

md_status md_cuda_copy_strided(md_cuda *c, float *dst, const int64_t *dst_strides, const float *src,
                               const int64_t *src_strides, const int64_t *shape, int nd, float beta)
{
    if (nd < 1 || nd > MD_CUDA_COPY_DIMS) {
        md_log(MD_LOG_ERROR, "%s: strided copy of %d dims (1..%d)", c->name, nd, MD_CUDA_COPY_DIMS);
        return MD_ERR_INVALID;
    }
    copy_desc q;
    q.nd = nd;
    int64_t n = 1;
    for (int k = 0; k < nd; k++) {
        if (shape[k] < 0) {
            md_log(MD_LOG_ERROR, "%s: strided copy: dim %d is %lld", c->name, k, (long long)shape[k]);
            return MD_ERR_INVALID;
        }
        q.shape[k] = shape[k];
        q.ss[k] = src_strides[k];
        q.ds[k] = dst_strides[k];
        n *= shape[k];
    }
    if (n == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    strided_copy_kernel<<<md_cuda_blocks(n), MD_CUDA_THREADS, 0, c->stream>>>(dst, src, q, n, beta);
    return MD_LAUNCHED(c, "strided_copy_kernel");
}

/* ---- dropout: the CPU's mask, from Philox-4x32-10 keyed by the stream ------------------ */

__device__ inline float philox_uniform_at(uint64_t key, uint64_t i)
{
    const uint64_t ctr = i >> 2;
    uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0u, c3 = 0u;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; r++) {
        const uint32_t lo0 = 0xD2511F53u * c0, hi0 = __umulhi(0xD2511F53u, c0);
        const uint32_t lo1 = 0xCD9E8D57u * c2, hi1 = __umulhi(0xCD9E8D57u, c2);
        const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    const uint32_t o[4] = {c0, c1, c2, c3};
    return (float)(o[i & 3] >> 8) * (1.0f / 16777216.0f);
}

/* forward: y = keep ? x / (1-p) : 0; backward: the same with dy for x */
__global__ void dropout_kernel(float *y, const float *x, uint64_t key, float p, float inv, int64_t n)
{
    MD_GRID_LOOP(i, n)
        y[i] = philox_uniform_at(key, (uint64_t)i) >= p ? x[i] * inv : 0.0f;
}

md_status md_cuda_dropout(md_cuda *c, float *y, const float *x, uint64_t key, float p, int64_t n)
{
    if (!(p >= 0.0f && p < 1.0f) || n < 0) {
        md_log(MD_LOG_ERROR, "%s: dropout with p %g over %lld elements (p in [0, 1))", c->name, (double)p,
               (long long)n);
        return MD_ERR_INVALID;
    }
    if (n == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    dropout_kernel<<<md_cuda_blocks(n), MD_CUDA_THREADS, 0, c->stream>>>(y, x, key, p, 1.0f / (1.0f - p), n);
    return MD_LAUNCHED(c, "dropout_kernel");
}

/* ---- EMA of weights and gradient-norm clipping (optim.c's formulas) ------------------- */

/* s = d*s + (1-d)*p, rounded as the CPU rounds (no fused multiply-add) */
__global__ void ema_kernel(float *s, const float *p, float d, float omd, int64_t n)
{
    MD_GRID_LOOP(i, n)
        s[i] = __fadd_rn(__fmul_rn(d, s[i]), __fmul_rn(omd, p[i]));
}

md_status md_cuda_ema_update(md_cuda *c, float *shadow, const float *p, float decay, int64_t n)
{
    if (!(decay >= 0.0f && decay < 1.0f) || n < 0) {
        md_log(MD_LOG_ERROR, "%s: EMA with decay %g over %lld values (decay in [0, 1))", c->name, (double)decay,
               (long long)n);
        return MD_ERR_INVALID;
    }
    if (n == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    const float omd = (float)(1.0 - (double)decay);
    ema_kernel<<<md_cuda_blocks(n), MD_CUDA_THREADS, 0, c->stream>>>(shadow, p, decay, omd, n);
    return MD_LAUNCHED(c, "ema_kernel");
}

__global__ void scale_kernel(float *g, float s, int64_t n)
{
    MD_GRID_LOOP(i, n)
        g[i] = __fmul_rn(g[i], s);
}

md_status md_cuda_clip_grad_norm(md_cuda *c, float *g, int64_t n, float max_norm, float *norm_out)
{
    if (!(max_norm > 0.0f) || n < 0) {
        md_log(MD_LOG_ERROR, "%s: gradient clipping to %g over %lld values (a positive norm)", c->name,
               (double)max_norm, (long long)n);
        return MD_ERR_INVALID;
    }
    MD_TRY(md_cuda_enter(c));
    const size_t mark = md_cuda_mark(c);
    double *part = (double *)md_cuda_alloc(c, sizeof(double) * (LOSS_BLOCKS + 1));
    if (!part)
        return MD_ERR_ALLOC;
    double total = 0.0;
    md_status st = MD_OK;
    if (n > 0) {
        pair_loss_partial_kernel<<<LOSS_BLOCKS, MD_CUDA_THREADS, 0, c->stream>>>(part, g, NULL, n, 0);
        st = MD_LAUNCHED(c, "pair_loss_partial_kernel");
        if (st == MD_OK) {
            sum_parts_kernel<<<1, MD_CUDA_THREADS, 0, c->stream>>>(part + LOSS_BLOCKS, NULL, part, LOSS_BLOCKS, n);
            st = MD_LAUNCHED(c, "sum_parts_kernel");
        }
        if (st == MD_OK)
            st = md_cuda_download(c, &total, part + LOSS_BLOCKS, sizeof(double));
    }
    md_cuda_rewind_to(c, mark);
    if (st != MD_OK)
        return st;
    const double norm = sqrt(total);
    if (norm_out)
        *norm_out = (float)norm;
    if (!isfinite(norm)) {
        md_log(MD_LOG_WARN, "%s: gradient norm is %s; gradients left unclipped (skip this step)", c->name,
               isnan(norm) ? "NaN" : "Inf");
        return MD_OK;
    }
    const double coef = (double)max_norm / (norm + 1e-6);
    if (coef >= 1.0)
        return MD_OK;
    scale_kernel<<<md_cuda_blocks(n), MD_CUDA_THREADS, 0, c->stream>>>(g, (float)coef, n);
    return MD_LAUNCHED(c, "scale_kernel");
}
