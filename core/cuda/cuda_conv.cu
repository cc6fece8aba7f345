/* cuda_conv.cu — conv2d (groups 1) forward and backward as im2col + cuBLAS
 * per image, col2im as a gather (each input element sums the columns that
 * read it: no atomics, the same result every run); average pooling,
 * forward and backward, at the end.
 *
 * Columns of one image: col [C*KH*KW, OH*OW], row (c, ki, kj), column
 * (oh, ow), holding x[c, oh*s - p + ki, ow*s - p + kj] or 0 in the padding.
 * Then y_n [O, OH*OW] = w [O, C*KH*KW] @ col, dw += dy_n @ col^T and
 * dcol = w^T @ dy_n. */
#include "cuda_internal.h"

static int64_t out_size(int64_t in, int64_t k, int stride, int pad)
{
    int64_t span = in + 2 * (int64_t)pad - k;
    return (span < 0 || stride < 1) ? 0 : span / stride + 1;
}

int64_t md_cuda_conv2d_oh(const md_cuda_conv2d *q) { return out_size(q->h, q->kh, q->stride, q->pad); }
int64_t md_cuda_conv2d_ow(const md_cuda_conv2d *q) { return out_size(q->w, q->kw, q->stride, q->pad); }

size_t md_cuda_conv2d_scratch_bytes(const md_cuda_conv2d *q)
{
    return sizeof(float) * (size_t)(q->c * q->kh * q->kw) * (size_t)(md_cuda_conv2d_oh(q) * md_cuda_conv2d_ow(q));
}

struct conv_dims {
    int64_t c, h, w, kh, kw, oh, ow, s, p;
};

__global__ void im2col_kernel(float *col, const float *x, conv_dims g)
{
    int64_t ohw = g.oh * g.ow, kk = g.kh * g.kw;
    MD_GRID_LOOP(idx, g.c * kk * ohw) {
        int64_t row = idx / ohw, pos = idx % ohw;
        int64_t ci = row / kk, ki = (row % kk) / g.kw, kj = row % g.kw;
        int64_t ih = (pos / g.ow) * g.s - g.p + ki;
        int64_t iw = (pos % g.ow) * g.s - g.p + kj;
        bool in = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w;
        col[idx] = in ? x[(ci * g.h + ih) * g.w + iw] : 0.0f;
    }
}

/* dx[c, ih, iw] = sum over the taps (ki, kj) and outputs (oh, ow) with
 * oh*s - p + ki = ih and ow*s - p + kj = iw of dcol[(c, ki, kj), (oh, ow)]. */
__global__ void col2im_kernel(float *dx, const float *col, conv_dims g)
{
    int64_t ohw = g.oh * g.ow;
    MD_GRID_LOOP(idx, g.c * g.h * g.w) {
        int64_t ci = idx / (g.h * g.w), ih = (idx / g.w) % g.h, iw = idx % g.w;
        float sum = 0.0f;
        for (int64_t ki = 0; ki < g.kh; ki++) {
            int64_t th = ih + g.p - ki;
            if (th < 0 || th % g.s != 0 || th / g.s >= g.oh)
                continue;
            int64_t oh = th / g.s;
            for (int64_t kj = 0; kj < g.kw; kj++) {
                int64_t tw = iw + g.p - kj;
                if (tw < 0 || tw % g.s != 0 || tw / g.s >= g.ow)
                    continue;
                int64_t ow = tw / g.s;
                sum += col[((ci * g.kh + ki) * g.kw + kj) * ohw + oh * g.ow + ow];
            }
        }
        dx[idx] = sum;
    }
}

/* y [n, o, ohw] += bias[o]. */
__global__ void bias_add_kernel(float *y, const float *bias, int64_t o, int64_t ohw, int64_t total)
{
    MD_GRID_LOOP(i, total)
        y[i] += bias[(i / ohw) % o];
}

/* Block oc: db[oc] = sum over images and positions of dy[n, oc, :]. */
__global__ void bias_grad_kernel(float *db, const float *dy, int64_t n, int64_t o, int64_t ohw)
{
    __shared__ float sh[MD_CUDA_THREADS];
    int64_t oc = blockIdx.x;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        for (int64_t p = threadIdx.x; p < ohw; p += blockDim.x)
            s += dy[(i * o + oc) * ohw + p];
    s = md_block_sum(s, sh);
    if (threadIdx.x == 0)
        db[oc] = s;
}

static md_status conv_check(md_cuda *c, const md_cuda_conv2d *q, conv_dims *g)
{
    g->c = q->c; g->h = q->h; g->w = q->w; g->kh = q->kh; g->kw = q->kw;
    g->s = q->stride; g->p = q->pad;
    g->oh = md_cuda_conv2d_oh(q);
    g->ow = md_cuda_conv2d_ow(q);
    if (q->n < 0 || q->c < 1 || q->o < 1 || q->kh < 1 || q->kw < 1 || q->stride < 1 || q->pad < 0 || g->oh < 1 ||
        g->ow < 1) {
        md_log(MD_LOG_ERROR, "%s: conv2d: bad geometry (x [%lld, %lld, %lld, %lld], w [%lld, %lld, %lld, %lld], "
               "stride %d, pad %d)", c->name, (long long)q->n, (long long)q->c, (long long)q->h, (long long)q->w,
               (long long)q->o, (long long)q->c, (long long)q->kh, (long long)q->kw, q->stride, q->pad);
        return MD_ERR_INVALID;
    }
    return MD_OK;
}

md_status md_cuda_conv2d_fwd(md_cuda *c, const md_cuda_conv2d *q, float *y, const float *x,
                             const float *w, const float *bias, float *scratch)
{
    conv_dims g;
    MD_TRY(conv_check(c, q, &g));
    if (q->n == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    int64_t ohw = g.oh * g.ow, ckk = q->c * q->kh * q->kw;
    for (int64_t i = 0; i < q->n; i++) {
        im2col_kernel<<<md_cuda_blocks(ckk * ohw), MD_CUDA_THREADS, 0, c->stream>>>(scratch, x + i * q->c * q->h * q->w,
                                                                                     g);
        MD_TRY(MD_LAUNCHED(c, "im2col_kernel"));
        MD_TRY(md_cuda_gemm(c, false, false, q->o, ohw, ckk, 1.0f, w, ckk, scratch, ohw, 0.0f, y + i * q->o * ohw,
                            ohw));
    }
    if (bias) {
        int64_t total = q->n * q->o * ohw;
        bias_add_kernel<<<md_cuda_blocks(total), MD_CUDA_THREADS, 0, c->stream>>>(y, bias, q->o, ohw, total);
        MD_TRY(MD_LAUNCHED(c, "bias_add_kernel"));
    }
    return MD_OK;
}

md_status md_cuda_conv2d_bwd(md_cuda *c, const md_cuda_conv2d *q, float *dx, float *dw, float *db,
                             const float *dy, const float *x, const float *w, float *scratch)
{
    conv_dims g;
    MD_TRY(conv_check(c, q, &g));
    MD_TRY(md_cuda_enter(c));
    int64_t ohw = g.oh * g.ow, ckk = q->c * q->kh * q->kw, chw = q->c * q->h * q->w;
    if (db) {
        if (!md_cuda_grid_ok(q->o)) {
            md_log(MD_LOG_ERROR, "%s: conv2d: %lld output channels is more than one launch takes", c->name,
                   (long long)q->o);
            return MD_ERR_UNSUPPORTED;
        }
        bias_grad_kernel<<<(unsigned)q->o, MD_CUDA_THREADS, 0, c->stream>>>(db, dy, q->n, q->o, ohw);
        MD_TRY(MD_LAUNCHED(c, "bias_grad_kernel"));
    }
    if (dw && q->n == 0) {
        MD_TRY(MD_CU(c, cudaMemsetAsync(dw, 0, sizeof(float) * (size_t)(q->o * ckk), c->stream)));
    }
    for (int64_t i = 0; i < q->n; i++) {
        const float *dyi = dy + i * q->o * ohw;
        if (dw) {
            im2col_kernel<<<md_cuda_blocks(ckk * ohw), MD_CUDA_THREADS, 0, c->stream>>>(scratch, x + i * chw, g);
            MD_TRY(MD_LAUNCHED(c, "im2col_kernel"));
            MD_TRY(md_cuda_gemm(c, false, true, q->o, ckk, ohw, 1.0f, dyi, ohw, scratch, ohw, i == 0 ? 0.0f : 1.0f,
                                dw, ckk));
        }
        if (dx) {
            /* the stream runs this after the dw product has read scratch */
            MD_TRY(md_cuda_gemm(c, true, false, ckk, ohw, q->o, 1.0f, w, ckk, dyi, ohw, 0.0f, scratch, ohw));
            col2im_kernel<<<md_cuda_blocks(chw), MD_CUDA_THREADS, 0, c->stream>>>(dx + i * chw, scratch, g);
            MD_TRY(MD_LAUNCHED(c, "col2im_kernel"));
        }
    }
    return MD_OK;
}

/* ---- average pooling (no padding), forward and backward ------------------------------- */

__global__ void avgpool_fwd_kernel(float *y, const float *x, int64_t planes, int64_t h, int64_t w, int64_t k,
                                   int64_t s, int64_t oh, int64_t ow)
{
    const float inv = 1.0f / (float)(k * k);
    MD_GRID_LOOP(i, planes * oh * ow) {
        const int64_t p = i / (oh * ow), r = (i / ow) % oh, q = i % ow;
        const float *xp = x + p * h * w;
        float acc = 0.0f;
        for (int64_t a = 0; a < k; a++)
            for (int64_t b = 0; b < k; b++)
                acc += xp[(r * s + a) * w + q * s + b];
        y[i] = acc * inv;
    }
}

/* thread per input element: the windows that hold it, in output order */
__global__ void avgpool_bwd_kernel(float *dx, const float *dy, int64_t planes, int64_t h, int64_t w, int64_t k,
                                   int64_t s, int64_t oh, int64_t ow)
{
    const float inv = 1.0f / (float)(k * k);
    MD_GRID_LOOP(i, planes * h * w) {
        const int64_t p = i / (h * w), r = (i / w) % h, q = i % w;
        /* outputs o with o*s <= r < o*s + k */
        int64_t r0 = r - k + 1 <= 0 ? 0 : (r - k + 1 + s - 1) / s, r1 = r / s < oh - 1 ? r / s : oh - 1;
        int64_t q0 = q - k + 1 <= 0 ? 0 : (q - k + 1 + s - 1) / s, q1 = q / s < ow - 1 ? q / s : ow - 1;
        float acc = 0.0f;
        for (int64_t a = r0; a <= r1; a++)
            for (int64_t b = q0; b <= q1; b++)
                acc += dy[(p * oh + a) * ow + b];
        dx[i] = acc * inv;
    }
}

static bool pool_args(md_cuda *c, int64_t planes, int64_t h, int64_t w, int kernel, int stride, int64_t *oh,
                      int64_t *ow)
{
    if (planes < 0 || kernel < 1 || stride < 1 || h < kernel || w < kernel) {
        md_log(MD_LOG_ERROR, "%s: average pool: %lld planes of %lld x %lld, kernel %d, stride %d", c->name,
               (long long)planes, (long long)h, (long long)w, kernel, stride);
        return false;
    }
    *oh = (h - kernel) / stride + 1;
    *ow = (w - kernel) / stride + 1;
    return true;
}

md_status md_cuda_avgpool_fwd(md_cuda *c, float *y, const float *x, int64_t planes, int64_t h, int64_t w, int kernel,
                              int stride)
{
    int64_t oh, ow;
    if (!pool_args(c, planes, h, w, kernel, stride, &oh, &ow))
        return MD_ERR_INVALID;
    if (planes == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    avgpool_fwd_kernel<<<md_cuda_blocks(planes * oh * ow), MD_CUDA_THREADS, 0, c->stream>>>(y, x, planes, h, w,
                                                                                           kernel, stride, oh, ow);
    return MD_LAUNCHED(c, "avgpool_fwd_kernel");
}

md_status md_cuda_avgpool_bwd(md_cuda *c, float *dx, const float *dy, int64_t planes, int64_t h, int64_t w,
                              int kernel, int stride)
{
    int64_t oh, ow;
    if (!pool_args(c, planes, h, w, kernel, stride, &oh, &ow))
        return MD_ERR_INVALID;
    if (planes == 0)
        return MD_OK;
    MD_TRY(md_cuda_enter(c));
    avgpool_bwd_kernel<<<md_cuda_blocks(planes * h * w), MD_CUDA_THREADS, 0, c->stream>>>(dx, dy, planes, h, w,
                                                                                         kernel, stride, oh, ow);
    return MD_LAUNCHED(c, "avgpool_bwd_kernel");
}
