/* cuda_norm.cu — row kernels: layernorm, softmax, groupnorm,
 * cross-entropy, RMSNorm and unit rows, forward and backward. One block per row (or per group),
 * shared-memory tree reductions, two passes for mean and variance as the
 * CPU does. Per-column sums (dw, db) run one thread per column over the
 * rows, so no atomics and the same sums on every run. */
#include "cuda_internal.h"

#include <cmath>

static md_status rows_ok(md_cuda *c, int64_t rows, const char *what)
{
    if (md_cuda_grid_ok(rows))
        return MD_OK;
    md_log(MD_LOG_ERROR, "%s: %s: %lld rows is more than one launch takes", c->name, what, (long long)rows);
    return MD_ERR_UNSUPPORTED;
}

/* ---- layernorm ------------------------------------------------------------------ */

/* Mean and 1/sqrt(variance + eps) of the m values at x, by the whole
 * block (every thread gets both); stored at mean[r], rstd[r] when given. */
__device__ static void run_stats(const float *x, int64_t m, float eps, float *sh, int64_t r, float *mean,
                                 float *rstd, float *mu, float *rs)
{
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x)
        s += x[i];
    *mu = md_block_sum(s, sh) / (float)m;
    float v = 0.0f;
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
        float t = x[i] - *mu;
        v += t * t;
    }
    *rs = 1.0f / sqrtf(md_block_sum(v, sh) / (float)m + eps);
    if (threadIdx.x == 0) {
        if (mean) mean[r] = *mu;
        if (rstd) rstd[r] = *rs;
    }
}

__global__ void layernorm_fwd_kernel(float *y, float *mean, float *rstd, const float *x, const float *w,
                                     const float *b, int64_t d, float eps)
{
    __shared__ float sh[MD_CUDA_THREADS];
    int64_t r = blockIdx.x;
    const float *xr = x + r * d;
    float *yr = y + r * d;
    float mu, rs;
    run_stats(xr, d, eps, sh, r, mean, rstd, &mu, &rs);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        yr[i] = (xr[i] - mu) * rs * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
}

md_status md_cuda_layernorm_fwd(md_cuda *c, float *y, float *mean, float *rstd, const float *x,
                                const float *w, const float *b, int64_t rows, int64_t d, float eps)
{
    if (rows <= 0 || d <= 0)
        return MD_OK;
    MD_TRY(rows_ok(c, rows, "layernorm"));
    MD_TRY(md_cuda_enter(c));
    layernorm_fwd_kernel<<<(unsigned)rows, MD_CUDA_THREADS, 0, c->stream>>>(y, mean, rstd, x, w, b, d, eps);
    return MD_LAUNCHED(c, "layernorm_fwd_kernel");
}

/* dx = rstd * (dy*w - mean(dy*w) - xhat * mean(dy*w*xhat)) per row. */
__global__ void layernorm_bwd_dx_kernel(float *dx, const float *dy, const float *x, const float *w,
                                        const float *mean, const float *rstd, int64_t d)
{
    __shared__ float sh[MD_CUDA_THREADS];
    int64_t r = blockIdx.x;
    const float *xr = x + r * d, *dyr = dy + r * d;
    float *dxr = dx + r * d;
    float mu = mean[r], rs = rstd[r];
    float s1 = 0.0f, s2 = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float dyw = dyr[i] * (w ? w[i] : 1.0f);
        s1 += dyw;
        s2 += dyw * (xr[i] - mu) * rs;
    }
    s1 = md_block_sum(s1, sh) / (float)d;
    s2 = md_block_sum(s2, sh) / (float)d;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float dyw = dyr[i] * (w ? w[i] : 1.0f);
        float xh = (xr[i] - mu) * rs;
        dxr[i] = rs * (dyw - s1 - xh * s2);
    }
}

/* dw[j] = sum_r dy * xhat, db[j] = sum_r dy: thread j walks the rows. */
__global__ void layernorm_bwd_wb_kernel(float *dw, float *db, const float *dy, const float *x, const float *mean,
                                        const float *rstd, int64_t rows, int64_t d)
{
    MD_GRID_LOOP(j, d) {
        float aw = 0.0f, ab = 0.0f;
        for (int64_t r = 0; r < rows; r++) {
            float g = dy[r * d + j];
            aw += g * (x[r * d + j] - mean[r]) * rstd[r];
            ab += g;
        }
        if (dw) dw[j] = aw;
        if (db) db[j] = ab;
    }
}

md_status md_cuda_layernorm_bwd(md_cuda *c, float *dx, float *dw, float *db, const float *dy,
                                const float *x, const float *w, const float *mean,
                                const float *rstd, int64_t rows, int64_t d)
{
    if (rows <= 0 || d <= 0)
        return MD_OK;
    MD_TRY(rows_ok(c, rows, "layernorm backward"));
    MD_TRY(md_cuda_enter(c));
    if (dx) {
        layernorm_bwd_dx_kernel<<<(unsigned)rows, MD_CUDA_THREADS, 0, c->stream>>>(dx, dy, x, w, mean, rstd, d);
        MD_TRY(MD_LAUNCHED(c, "layernorm_bwd_dx_kernel"));
    }
    if (dw || db) {
        layernorm_bwd_wb_kernel<<<md_cuda_blocks(d), MD_CUDA_THREADS, 0, c->stream>>>(dw, db, dy, x, mean, rstd,
                                                                                       rows, d);
        MD_TRY(MD_LAUNCHED(c, "layernorm_bwd_wb_kernel"));
    }
    return MD_OK;
}

/* ---- softmax ---------------------------------------------------------------------- */

__global__ void softmax_fwd_kernel(float *y, const float *x, int64_t d)
{
    __shared__ float sh[MD_CUDA_THREADS];
    int64_t r = blockIdx.x;
    const float *xr = x + r * d;
    float *yr = y + r * d;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        mx = fmaxf(mx, xr[i]);
    mx = md_block_max(mx, sh);
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float e = expf(xr[i] - mx);
        yr[i] = e;
        s += e;
    }
    float inv = 1.0f / md_block_sum(s, sh);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)   /* the same i this thread wrote */
        yr[i] *= inv;
}

md_status md_cuda_softmax_fwd(md_cuda *c, float *y, const float *x, int64_t rows, int64_t d)
{
    if (rows <= 0 || d <= 0)
        return MD_OK;
    MD_TRY(rows_ok(c, rows, "softmax"));
    MD_TRY(md_cuda_enter(c));
    softmax_fwd_kernel<<<(unsigned)rows, MD_CUDA_THREADS, 0, c->stream>>>(y, x, d);
    return MD_LAUNCHED(c, "softmax_fwd_kernel");
}

__global__ void softmax_bwd_kernel(float *dx, const float *y, const float *dy, int64_t d)
{
    __shared__ float sh[MD_CUDA_THREADS];
    int64_t r = blockIdx.x;
    const float *yr = y + r * d, *dyr = dy + r * d;
    float *dxr = dx + r * d;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        s += dyr[i] * yr[i];
    s = md_block_sum(s, sh);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        dxr[i] = yr[i] * (dyr[i] - s);
}

md_status md_cuda_softmax_bwd(md_cuda *c, float *dx, const float *y, const float *dy, int64_t rows, int64_t d)
{
    if (rows <= 0 || d <= 0)
        return MD_OK;
    MD_TRY(rows_ok(c, rows, "softmax backward"));
    MD_TRY(md_cuda_enter(c));
    softmax_bwd_kernel<<<(unsigned)rows, MD_CUDA_THREADS, 0, c->stream>>>(dx, y, dy, d);
    return MD_LAUNCHED(c, "softmax_bwd_kernel");
}

/* ---- groupnorm -------------------------------------------------------------------
 * x [N, C, S] seen as [N, G, Cg*S]: block ng = n*G + g owns the Cg*S
 * contiguous values of group g of image n. */

__global__ void groupnorm_fwd_kernel(float *y, float *mean, float *rstd, const float *x, const float *w,
                                     const float *b, int64_t groups, int64_t cg, int64_t s, float eps)
{
    __shared__ float sh[MD_CUDA_THREADS];
    int64_t ng = blockIdx.x, m = cg * s;
    const float *xg = x + ng * m;
    float *yg = y + ng * m;
    float mu, rs;
    run_stats(xg, m, eps, sh, ng, mean, rstd, &mu, &rs);
    int64_t c0 = (ng % groups) * cg;
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
        int64_t ch = c0 + i / s;
        float sc = rs * (w ? w[ch] : 1.0f);
        float shift = (b ? b[ch] : 0.0f) - mu * sc;
        yg[i] = xg[i] * sc + shift;
    }
}

static md_status groupnorm_args(md_cuda *c, int64_t n, int64_t ch, int groups)
{
    if (groups < 1 || ch % groups != 0) {
        md_log(MD_LOG_ERROR, "%s: groupnorm: %lld channels do not split into %d groups", c->name, (long long)ch,
               groups);
        return MD_ERR_INVALID;
    }
    return rows_ok(c, n * ch, "groupnorm");
}

md_status md_cuda_groupnorm_fwd(md_cuda *c, float *y, float *mean, float *rstd, const float *x,
                                const float *w, const float *b, int64_t n, int64_t ch, int64_t s,
                                int groups, float eps)
{
    if (n <= 0 || ch <= 0 || s <= 0)
        return MD_OK;
    MD_TRY(groupnorm_args(c, n, ch, groups));
    MD_TRY(md_cuda_enter(c));
    groupnorm_fwd_kernel<<<(unsigned)(n * groups), MD_CUDA_THREADS, 0, c->stream>>>(y, mean, rstd, x, w, b, groups,
                                                                                    ch / groups, s, eps);
    return MD_LAUNCHED(c, "groupnorm_fwd_kernel");
}

/* Block nc = n*C + c: sdy = sum dy, sdyx = rstd * sum dy * (x - mean). */
__global__ void groupnorm_bwd_sums_kernel(float *sdy, float *sdyx, const float *dy, const float *x,
                                          const float *mean, const float *rstd, int64_t ch, int64_t groups,
                                          int64_t s)
{
    __shared__ float sh[MD_CUDA_THREADS];
    int64_t nc = blockIdx.x;
    int64_t ng = (nc / ch) * groups + (nc % ch) / (ch / groups);
    const float *xr = x + nc * s, *dyr = dy + nc * s;
    float mu = mean[ng];
    float s1 = 0.0f, s2 = 0.0f;
    for (int64_t i = threadIdx.x; i < s; i += blockDim.x) {
        s1 += dyr[i];
        s2 += dyr[i] * (xr[i] - mu);
    }
    s1 = md_block_sum(s1, sh);
    s2 = md_block_sum(s2, sh);
    if (threadIdx.x == 0) {
        sdy[nc] = s1;
        sdyx[nc] = s2 * rstd[ng];
    }
}

/* Block ng: dx = rs * (w*dy - mean(w*dy) - xhat * mean(w*dy*xhat)) over the
 * group, written as k1*dy - k2*x + k0 per channel as the CPU does. */
__global__ void groupnorm_bwd_dx_kernel(float *dx, const float *dy, const float *x, const float *w,
                                        const float *mean, const float *rstd, const float *sdy, const float *sdyx,
                                        int64_t ch, int64_t groups, int64_t s)
{
    __shared__ float sh[MD_CUDA_THREADS];
    int64_t ng = blockIdx.x, n = ng / groups, cg = ch / groups, c0 = (ng % groups) * cg;
    float a = 0.0f, bs = 0.0f;
    for (int64_t j = threadIdx.x; j < cg; j += blockDim.x) {
        float wc = w ? w[c0 + j] : 1.0f;
        a += wc * sdy[n * ch + c0 + j];
        bs += wc * sdyx[n * ch + c0 + j];
    }
    float m = (float)(cg * s);
    a = md_block_sum(a, sh) / m;
    bs = md_block_sum(bs, sh) / m;
    float mu = mean[ng], rs = rstd[ng];
    float k2 = rs * bs * rs, k0 = -rs * a + mu * k2;
    const float *xg = x + ng * cg * s, *dyg = dy + ng * cg * s;
    float *dxg = dx + ng * cg * s;
    for (int64_t i = threadIdx.x; i < cg * s; i += blockDim.x) {
        float k1 = rs * (w ? w[c0 + i / s] : 1.0f);
        dxg[i] = k1 * dyg[i] - k2 * xg[i] + k0;
    }
}

__global__ void groupnorm_bwd_wb_kernel(float *dw, float *db, const float *sdy, const float *sdyx, int64_t n,
                                        int64_t ch)
{
    MD_GRID_LOOP(c, ch) {
        float aw = 0.0f, ab = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            aw += sdyx[i * ch + c];
            ab += sdy[i * ch + c];
        }
        if (dw) dw[c] = aw;
        if (db) db[c] = ab;
    }
}

md_status md_cuda_groupnorm_bwd(md_cuda *c, float *dx, float *dw, float *db, const float *dy,
                                const float *x, const float *w, const float *mean,
                                const float *rstd, int64_t n, int64_t ch, int64_t s, int groups)
{
    if (n <= 0 || ch <= 0 || s <= 0 || (!dx && !dw && !db))
        return MD_OK;
    MD_TRY(groupnorm_args(c, n, ch, groups));
    size_t mark = md_cuda_mark(c);
    float *sums = (float *)md_cuda_alloc(c, sizeof(float) * 2 * (size_t)(n * ch));
    if (!sums)
        return MD_ERR_ALLOC;
    float *sdy = sums, *sdyx = sums + n * ch;
    md_status st = md_cuda_enter(c);
    if (st == MD_OK) {
        groupnorm_bwd_sums_kernel<<<(unsigned)(n * ch), MD_CUDA_THREADS, 0, c->stream>>>(sdy, sdyx, dy, x, mean,
                                                                                         rstd, ch, groups, s);
        st = MD_LAUNCHED(c, "groupnorm_bwd_sums_kernel");
    }
    if (st == MD_OK && dx) {
        groupnorm_bwd_dx_kernel<<<(unsigned)(n * groups), MD_CUDA_THREADS, 0, c->stream>>>(
            dx, dy, x, w, mean, rstd, sdy, sdyx, ch, groups, s);
        st = MD_LAUNCHED(c, "groupnorm_bwd_dx_kernel");
    }
    if (st == MD_OK && (dw || db)) {
        groupnorm_bwd_wb_kernel<<<md_cuda_blocks(ch), MD_CUDA_THREADS, 0, c->stream>>>(dw, db, sdy, sdyx, n, ch);
        st = MD_LAUNCHED(c, "groupnorm_bwd_wb_kernel");
    }
    /* The sums are only read by work queued above; later allocations are
     * used by later work, which the stream runs after it. */
    md_cuda_rewind_to(c, mark);
    return st;
}

/* ---- cross-entropy ------------------------------------------------------------------ */

/* Block r: lse[r], and row r's loss in double (0 when ignored, NaN for a
 * target out of range). */
__global__ void xent_rows_kernel(float *lse, double *rowloss, const float *logits, const int32_t *targets,
                                 int64_t v, float ls, int ignore)
{
    __shared__ float sh[MD_CUDA_THREADS];
    int64_t r = blockIdx.x;
    const float *xr = logits + r * v;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x)
        mx = fmaxf(mx, xr[j]);
    mx = md_block_max(mx, sh);
    float s = 0.0f, sx = 0.0f;
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
        s += expf(xr[j] - mx);
        sx += xr[j];
    }
    s = md_block_sum(s, sh);
    sx = md_block_sum(sx, sh);
    if (threadIdx.x == 0) {
        float l = mx + logf(s);
        lse[r] = l;
        int32_t t = targets[r];
        if (t == ignore) {
            rowloss[r] = 0.0;
        } else if (t < 0 || (int64_t)t >= v) {
            rowloss[r] = nan("");
        } else {
            double lp_t = (double)xr[t] - l;
            double mean_lp = (double)sx / (double)v - l;
            rowloss[r] = -(1.0 - ls) * lp_t - ls * mean_lp;
        }
    }
}

/* One block: the mean over counted rows. */
__global__ void xent_mean_kernel(float *loss, int32_t *count, const double *rowloss, const int32_t *targets,
                                 int64_t n, int ignore)
{
    __shared__ double shd[MD_CUDA_THREADS];
    __shared__ long long shc[MD_CUDA_THREADS];
    double total = 0.0;
    long long cnt = 0;
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x)
        if (targets[r] != ignore) {
            total += rowloss[r];
            cnt++;
        }
    total = md_block_sum(total, shd);
    cnt = md_block_sum(cnt, shc);
    if (threadIdx.x == 0) {
        loss[0] = cnt ? (float)(total / (double)cnt) : 0.0f;
        if (count) count[0] = (int32_t)cnt;
    }
}

md_status md_cuda_cross_entropy_fwd(md_cuda *c, float *loss, int32_t *count, float *lse,
                                    const float *logits, const int32_t *targets, int64_t n,
                                    int64_t v, float label_smoothing, int ignore_index)
{
    if (n <= 0 || v <= 0) {
        md_log(MD_LOG_ERROR, "%s: cross-entropy over %lld rows of %lld classes", c->name, (long long)n,
               (long long)v);
        return MD_ERR_INVALID;
    }
    MD_TRY(rows_ok(c, n, "cross-entropy"));
    size_t mark = md_cuda_mark(c);
    double *rowloss = (double *)md_cuda_alloc(c, sizeof(double) * (size_t)n);
    if (!rowloss)
        return MD_ERR_ALLOC;
    md_status st = md_cuda_enter(c);
    if (st == MD_OK) {
        xent_rows_kernel<<<(unsigned)n, MD_CUDA_THREADS, 0, c->stream>>>(lse, rowloss, logits, targets, v,
                                                                         label_smoothing, ignore_index);
        st = MD_LAUNCHED(c, "xent_rows_kernel");
    }
    if (st == MD_OK) {
        xent_mean_kernel<<<1, MD_CUDA_THREADS, 0, c->stream>>>(loss, count, rowloss, targets, n, ignore_index);
        st = MD_LAUNCHED(c, "xent_mean_kernel");
    }
    md_cuda_rewind_to(c, mark);
    return st;
}

__global__ void xent_bwd_kernel(float *dx, const float *logits, const float *lse, const int32_t *targets,
                                const int32_t *count, int64_t v, float ls, int ignore, float dloss)
{
    int64_t r = blockIdx.x;
    int32_t cnt = count[0], t = targets[r];
    float scale = cnt ? dloss / (float)cnt : 0.0f;
    bool skip = t == ignore;
    const float *xr = logits + r * v;
    float *dr = dx + r * v;
    float l = lse[r];
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
        float g = 0.0f;
        if (!skip) {
            float p = expf(xr[j] - l);
            g = (p - ls / (float)v - (j == t ? 1.0f - ls : 0.0f)) * scale;
        }
        dr[j] = g;
    }
}

md_status md_cuda_cross_entropy_bwd(md_cuda *c, float *dlogits, const float *logits, const float *lse,
                                    const int32_t *targets, const int32_t *count, int64_t n, int64_t v,
                                    float label_smoothing, int ignore_index, float dloss)
{
    if (n <= 0 || v <= 0)
        return MD_OK;
    MD_TRY(rows_ok(c, n, "cross-entropy backward"));
    MD_TRY(md_cuda_enter(c));
    xent_bwd_kernel<<<(unsigned)n, MD_CUDA_THREADS, 0, c->stream>>>(dlogits, logits, lse, targets, count, v,
                                                                    label_smoothing, ignore_index, dloss);
    return MD_LAUNCHED(c, "xent_bwd_kernel");
}

/* ---- RMSNorm: y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps) ------------------------ */

__global__ void rmsnorm_fwd_kernel(float *y, float *rstd, const float *x, const float *w, int64_t d, float eps)
{
    __shared__ float sh[MD_CUDA_THREADS];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * d;
    float *yr = y + r * d;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        s += xr[i] * xr[i];
    const float rs = 1.0f / sqrtf(md_block_sum(s, sh) / (float)d + eps);
    if (rstd && threadIdx.x == 0)
        rstd[r] = rs;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        yr[i] = xr[i] * rs * (w ? w[i] : 1.0f);
}

/* dx = rstd * (dy*w - xhat * mean(dy*w*xhat)), xhat = x * rstd */
__global__ void rmsnorm_bwd_dx_kernel(float *dx, const float *dy, const float *x, const float *w, const float *rstd,
                                      int64_t d)
{
    __shared__ float sh[MD_CUDA_THREADS];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * d, *dyr = dy + r * d;
    float *dxr = dx + r * d;
    const float rs = rstd[r];
    float s2 = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        s2 += dyr[i] * (w ? w[i] : 1.0f) * xr[i] * rs;
    s2 = md_block_sum(s2, sh) / (float)d;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        dxr[i] = rs * (dyr[i] * (w ? w[i] : 1.0f) - xr[i] * rs * s2);
}

__global__ void rmsnorm_bwd_w_kernel(float *dw, const float *dy, const float *x, const float *rstd, int64_t rows,
                                     int64_t d)
{
    MD_GRID_LOOP(j, d) {
        float a = 0.0f;
        for (int64_t r = 0; r < rows; r++)
            a += dy[r * d + j] * x[r * d + j] * rstd[r];
        dw[j] = a;
    }
}

md_status md_cuda_rmsnorm_fwd(md_cuda *c, float *y, float *rstd, const float *x, const float *w, int64_t rows,
                              int64_t d, float eps)
{
    if (rows <= 0 || d <= 0)
        return MD_OK;
    MD_TRY(rows_ok(c, rows, "rmsnorm"));
    MD_TRY(md_cuda_enter(c));
    rmsnorm_fwd_kernel<<<(unsigned)rows, MD_CUDA_THREADS, 0, c->stream>>>(y, rstd, x, w, d, eps);
    return MD_LAUNCHED(c, "rmsnorm_fwd_kernel");
}

md_status md_cuda_rmsnorm_bwd(md_cuda *c, float *dx, float *dw, const float *dy, const float *x, const float *w,
                              const float *rstd, int64_t rows, int64_t d)
{
    if (rows <= 0 || d <= 0)
        return MD_OK;
    MD_TRY(rows_ok(c, rows, "rmsnorm backward"));
    MD_TRY(md_cuda_enter(c));
    if (dx) {
        rmsnorm_bwd_dx_kernel<<<(unsigned)rows, MD_CUDA_THREADS, 0, c->stream>>>(dx, dy, x, w, rstd, d);
        MD_TRY(MD_LAUNCHED(c, "rmsnorm_bwd_dx_kernel"));
    }
    if (dw) {
        rmsnorm_bwd_w_kernel<<<md_cuda_blocks(d), MD_CUDA_THREADS, 0, c->stream>>>(dw, dy, x, rstd, rows, d);
        MD_TRY(MD_LAUNCHED(c, "rmsnorm_bwd_w_kernel"));
    }
    return MD_OK;
}

/* ---- unit rows: y = x / max(||x||, eps) ------------------------------------------------ */

__global__ void l2norm_fwd_kernel(float *y, float *nrm, const float *x, int64_t d, float eps)
{
    __shared__ double sh[MD_CUDA_THREADS];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * d;
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        s += (double)xr[i] * xr[i];
    const float nv = (float)sqrt(md_block_sum(s, sh)), n = nv > eps ? nv : eps, inv = 1.0f / n;
    if (threadIdx.x == 0)
        nrm[r] = n;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        y[r * d + i] = xr[i] * inv;
}

/* dx = (dy - y (y . dy)) / n where ||x|| > eps, else dy / eps */
__global__ void l2norm_bwd_kernel(float *dx, const float *dy, const float *y, const float *nrm, int64_t d,
                                  float eps)
{
    __shared__ float sh[MD_CUDA_THREADS];
    const int64_t r = blockIdx.x;
    const float *yr = y + r * d, *gr = dy + r * d;
    float dot = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        dot += yr[i] * gr[i];
    dot = md_block_sum(dot, sh);
    if (!(nrm[r] > eps))
        dot = 0.0f;
    const float inv = 1.0f / nrm[r];
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        dx[r * d + i] = (gr[i] - yr[i] * dot) * inv;
}

md_status md_cuda_l2norm_fwd(md_cuda *c, float *y, float *nrm, const float *x, int64_t rows, int64_t d, float eps)
{
    if (rows <= 0 || d <= 0)
        return MD_OK;
    MD_TRY(rows_ok(c, rows, "l2 normalise"));
    MD_TRY(md_cuda_enter(c));
    l2norm_fwd_kernel<<<(unsigned)rows, MD_CUDA_THREADS, 0, c->stream>>>(y, nrm, x, d, eps);
    return MD_LAUNCHED(c, "l2norm_fwd_kernel");
}

md_status md_cuda_l2norm_bwd(md_cuda *c, float *dx, const float *dy, const float *y, const float *nrm, int64_t rows,
                             int64_t d, float eps)
{
    if (rows <= 0 || d <= 0)
        return MD_OK;
    MD_TRY(rows_ok(c, rows, "l2 normalise backward"));
    MD_TRY(md_cuda_enter(c));
    l2norm_bwd_kernel<<<(unsigned)rows, MD_CUDA_THREADS, 0, c->stream>>>(dx, dy, y, nrm, d, eps);
    return MD_LAUNCHED(c, "l2norm_bwd_kernel");
}

/* ---- log-softmax: y = x - max - log(sum exp(x - max)); dx = dy - exp(y) sum(dy) ------- */

__global__ void log_softmax_fwd_kernel(float *y, const float *x, int64_t d)
{
    __shared__ float sh[MD_CUDA_THREADS];
    const int64_t r = blockIdx.x;
    const float *xr = x + r * d;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        mx = fmaxf(mx, xr[i]);
    mx = md_block_max(mx, sh);
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        s += expf(xr[i] - mx);
    const float lse = mx + logf(md_block_sum(s, sh));
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        y[r * d + i] = xr[i] - lse;
}

__global__ void log_softmax_bwd_kernel(float *dx, const float *y, const float *dy, int64_t d)
{
    __shared__ float sh[MD_CUDA_THREADS];
    const int64_t r = blockIdx.x;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        s += dy[r * d + i];
    s = md_block_sum(s, sh);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        dx[r * d + i] = dy[r * d + i] - expf(y[r * d + i]) * s;
}

md_status md_cuda_log_softmax_fwd(md_cuda *c, float *y, const float *x, int64_t rows, int64_t d)
{
    if (rows <= 0 || d <= 0)
        return MD_OK;
    MD_TRY(rows_ok(c, rows, "log-softmax"));
    MD_TRY(md_cuda_enter(c));
    log_softmax_fwd_kernel<<<(unsigned)rows, MD_CUDA_THREADS, 0, c->stream>>>(y, x, d);
    return MD_LAUNCHED(c, "log_softmax_fwd_kernel");
}

md_status md_cuda_log_softmax_bwd(md_cuda *c, float *dx, const float *y, const float *dy, int64_t rows, int64_t d)
{
    if (rows <= 0 || d <= 0)
        return MD_OK;
    MD_TRY(rows_ok(c, rows, "log-softmax backward"));
    MD_TRY(md_cuda_enter(c));
    log_softmax_bwd_kernel<<<(unsigned)rows, MD_CUDA_THREADS, 0, c->stream>>>(dx, y, dy, d);
    return MD_LAUNCHED(c, "log_softmax_bwd_kernel");
}
