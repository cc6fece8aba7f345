/* ops_conv.c — convolutions (1-D, 2-D, transposed 2-D), nearest upsampling,
 * average pooling and group normalisation, each with its backward.
 *
 * Convolution is im2col + gemm on tiles of output positions:
 *   col [Cg*KH*KW, T]   one tile of T output positions of one image and group
 *   y   [Og, T]       = w_g [Og, Cg*KH*KW] @ col
 * A tile's col matrix is sized to stay in L2 (TILE_FLOATS). 1x1 convolutions
 * with stride 1 and no padding read x directly.
 *
 * Every conv op is written against one geometry (conv_geom) and three
 * kernels: conv_fwd, conv_bwd_data (the adjoint in x) and conv_bwd_weight.
 * conv1d is conv2d with H = KH = 1; conv_transpose2d is the adjoint of a
 * conv2d whose input is the transposed conv's output, so its forward is
 * conv_bwd_data and its input gradient is conv_fwd.
 *
 * Determinism: work is cut into items whose shapes depend on the geometry
 * only, never on the thread count; each gemm runs whole on one thread
 * (oneDNN runs sequentially inside an OpenMP parallel region); sums across
 * items (weight and bias gradients, norm gains) are added in a fixed order.
 * So every result is bit-identical for any thread count.
 */
#include "ops_internal.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Target size of one tile's col matrix, in floats (512 KiB: half a Zen 5
 * core's L2, leaving room for the weights and the output tile; measured
 * faster than 256 KiB for 64-channel 3x3 convs, where im2col copies whole
 * output rows). */
#define TILE_FLOATS 131072
/* Work items the data-gradient pass aims for, so a small batch still feeds
 * this many cores; a geometry constant, not the thread count. */
#define MIN_ITEMS 16
/* Partial weight-gradient buffers: at most this many, and at most this many
 * bytes in all (they are summed in order at the end). */
#define WGRAD_CHUNKS 16
#define WGRAD_BYTES ((int64_t)64 << 20)

static int max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Floor and ceiling division for b > 0 and any sign of a. */
static inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static inline int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

/* One convolution: x [n, c, h, w] * weight [o, c/groups, kh, kw]
 * -> y [n, o, oh, ow]. Strides and padding per axis (conv1d uses h = 1). */
typedef struct conv_geom {
    int64_t n, c, h, w;
    int64_t o, kh, kw;
    int64_t oh, ow;
    int64_t sh, sw, ph, pw;
    int64_t groups;
    /* derived */
    int64_t cg, og, kk;   /* channels per group in/out, kh*kw */
    int64_t rows;         /* cg*kk: rows of col, columns of w_g */
    int64_t ohw, hw;
    int64_t tile;         /* output positions per tile */
    int64_t ntiles;
    bool direct;          /* 1x1, stride 1, no padding: col is x itself */
} conv_geom;

static void geom_finish(conv_geom *q)
{
    MD_ASSERT(q->groups >= 1 && q->c % q->groups == 0 && q->o % q->groups == 0);
    MD_ASSERT(q->sh >= 1 && q->sw >= 1 && q->ph >= 0 && q->pw >= 0);
    MD_ASSERT(q->oh >= 1 && q->ow >= 1);
    q->cg = q->c / q->groups;
    q->og = q->o / q->groups;
    q->kk = q->kh * q->kw;
    q->rows = q->cg * q->kk;
    q->ohw = q->oh * q->ow;
    q->hw = q->h * q->w;
    q->direct = q->kk == 1 && q->sh == 1 && q->sw == 1 && q->ph == 0 && q->pw == 0;
    int64_t t = TILE_FLOATS / q->rows;
    t = t >= 64 ? t & ~(int64_t)15 : 64;   /* whole cache lines of col rows */
    q->tile = MD_MIN(t, q->ohw);
    q->ntiles = (q->ohw + q->tile - 1) / q->tile;
}

/* One kernel tap (kh, kw) walks output positions p0..p1 row by row; for each
 * output row, input row ih and the output columns [lo, hi) whose input
 * column iw = ow*sw + off lies inside the image (outside is padding). */
typedef struct tap_walk {
    int64_t off, olo, ohi;   /* iw = ow*sw + off valid for ow in [olo, ohi) */
} tap_walk;

static inline tap_walk tap_init(const conv_geom *q, int64_t kw)
{
    tap_walk t;
    t.off = kw - q->pw;
    t.olo = MD_MAX(0, ceil_div(-t.off, q->sw));
    t.ohi = MD_MAX(t.olo, MD_MIN(q->ow, floor_div(q->w - 1 - t.off, q->sw) + 1));
    return t;
}

/* col [cn*kk, p1-p0] from channels c0..c0+cn of xg (one image's group) for
 * output positions p0..p1 (row-major over oh, ow); zeros where the kernel
 * reads padding. */
static void im2col_tile(float *col, const float *xg, const conv_geom *q, int64_t c0, int64_t cn,
                        int64_t p0, int64_t p1)
{
    const int64_t T = p1 - p0, W = q->w, H = q->h, OW = q->ow, sw = q->sw;
    const int64_t oh0 = p0 / OW, ow00 = p0 % OW;
    for (int64_t c = 0; c < cn; c++) {
        const float *xc = xg + (c0 + c) * q->hw;
        for (int64_t kh = 0; kh < q->kh; kh++)
            for (int64_t kw = 0; kw < q->kw; kw++) {
                float *d = col + ((c * q->kh + kh) * q->kw + kw) * T;
                const tap_walk tw = tap_init(q, kw);
                int64_t oh = oh0, ow0 = ow00;
                for (int64_t p = p0; p < p1; oh++, ow0 = 0) {
                    int64_t n = MD_MIN(OW - ow0, p1 - p), ow1 = ow0 + n;
                    int64_t ih = oh * q->sh - q->ph + kh;
                    if (ih < 0 || ih >= H) {
                        memset(d, 0, sizeof(float) * (size_t)n);
                    } else {
                        const float *xr = xc + ih * W;
                        int64_t lo = MD_MIN(MD_MAX(ow0, tw.olo), ow1), hi = MD_MAX(lo, MD_MIN(tw.ohi, ow1));
                        for (int64_t ow = ow0; ow < lo; ow++)
                            d[ow - ow0] = 0.f;
                        if (sw == 1)
                            memcpy(d + (lo - ow0), xr + lo + tw.off, sizeof(float) * (size_t)(hi - lo));
                        else
                            for (int64_t ow = lo; ow < hi; ow++)
                                d[ow - ow0] = xr[ow * sw + tw.off];
                        for (int64_t ow = hi; ow < ow1; ow++)
                            d[ow - ow0] = 0.f;
                    }
                    d += n;
                    p += n;
                }
            }
    }
}

/* Adjoint of im2col_tile: adds col [cn*kk, p1-p0] into channels c0.. of xg. */
static void col2im_tile(float *xg, const float *col, const conv_geom *q, int64_t c0, int64_t cn,
                        int64_t p0, int64_t p1)
{
    const int64_t T = p1 - p0, W = q->w, H = q->h, OW = q->ow, sw = q->sw;
    const int64_t oh0 = p0 / OW, ow00 = p0 % OW;
    for (int64_t c = 0; c < cn; c++) {
        float *xc = xg + (c0 + c) * q->hw;
        for (int64_t kh = 0; kh < q->kh; kh++)
            for (int64_t kw = 0; kw < q->kw; kw++) {
                const float *s = col + ((c * q->kh + kh) * q->kw + kw) * T;
                const tap_walk tw = tap_init(q, kw);
                int64_t oh = oh0, ow0 = ow00;
                for (int64_t p = p0; p < p1; oh++, ow0 = 0) {
                    int64_t n = MD_MIN(OW - ow0, p1 - p), ow1 = ow0 + n;
                    int64_t ih = oh * q->sh - q->ph + kh;
                    if (ih >= 0 && ih < H) {
                        float *xr = xc + ih * W;
                        int64_t lo = MD_MIN(MD_MAX(ow0, tw.olo), ow1), hi = MD_MAX(lo, MD_MIN(tw.ohi, ow1));
                        if (sw == 1) {
                            #pragma omp simd
                            for (int64_t ow = lo; ow < hi; ow++)
                                xr[ow + tw.off] += s[ow - ow0];
                        } else {
                            for (int64_t ow = lo; ow < hi; ow++)
                                xr[ow * sw + tw.off] += s[ow - ow0];
                        }
                    }
                    s += n;
                    p += n;
                }
            }
    }
}

/* y (=|+=) conv(x, w) + bias. beta 0 overwrites y, 1 accumulates into it;
 * bias may be NULL. Items: (image, group, tile), disjoint in y. */
static void conv_fwd(md_graph *g, const conv_geom *q, const float *x, const float *w, const float *bias,
                     float *y, float beta)
{
    const int64_t items = q->n * q->groups * q->ntiles;
    float *cols = NULL;
    if (!q->direct)
        cols = md_graph_scratch(g, sizeof(float) * (size_t)(q->rows * q->tile) * (size_t)max_threads());
    #pragma omp parallel for schedule(static)
    for (int64_t it = 0; it < items; it++) {
        int64_t t = it % q->ntiles, ng = it / q->ntiles, gi = ng % q->groups, n = ng / q->groups;
        int64_t p0 = t * q->tile, p1 = MD_MIN(q->ohw, p0 + q->tile), T = p1 - p0;
        const float *xg = x + (n * q->c + gi * q->cg) * q->hw;
        const float *wg = w + gi * q->og * q->rows;
        float *yg = y + (n * q->o + gi * q->og) * q->ohw + p0;
        if (q->direct) {
            md_gemm(g, false, false, q->og, T, q->rows, 1.f, wg, q->rows, xg + p0, q->hw, beta, yg, q->ohw);
        } else {
            float *col = cols + (size_t)thread_id() * (size_t)(q->rows * q->tile);
            im2col_tile(col, xg, q, 0, q->cg, p0, p1);
            md_gemm(g, false, false, q->og, T, q->rows, 1.f, wg, q->rows, col, T, beta, yg, q->ohw);
        }
        if (bias) {
            for (int64_t o = 0; o < q->og; o++) {
                float bv = bias[gi * q->og + o];
                float *yr = yg + o * q->ohw;
                #pragma omp simd
                for (int64_t i = 0; i < T; i++)
                    yr[i] += bv;
            }
        }
    }
}

/* dx (=|+=) conv^T(dy, w): the gradient of conv_fwd in x.
 * Items: (image, group, channel block); each walks its tiles in order, so
 * overlapping kernel windows add up in a fixed order without races. */
static void conv_bwd_data(md_graph *g, const conv_geom *q, const float *dy, const float *w, float *dx,
                          float beta)
{
    if (q->direct) {
        /* dx_g [Cg, T] = w_g^T [Cg, Og] @ dy_g [Og, T] */
        const int64_t items = q->n * q->groups * q->ntiles;
        #pragma omp parallel for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            int64_t t = it % q->ntiles, ng = it / q->ntiles, gi = ng % q->groups, n = ng / q->groups;
            int64_t p0 = t * q->tile, T = MD_MIN(q->ohw, p0 + q->tile) - p0;
            md_gemm(g, true, false, q->cg, T, q->og, 1.f, w + gi * q->og * q->rows, q->rows,
                    dy + (n * q->o + gi * q->og) * q->ohw + p0, q->ohw, beta,
                    dx + (n * q->c + gi * q->cg) * q->hw + p0, q->hw);
        }
        return;
    }
    int64_t nb = (MIN_ITEMS + q->n * q->groups - 1) / (q->n * q->groups);
    nb = MD_MAX(1, MD_MIN(nb, q->cg));
    const int64_t cb = (q->cg + nb - 1) / nb;   /* channels per block */
    nb = (q->cg + cb - 1) / cb;
    const int64_t items = q->n * q->groups * nb;
    float *cols = md_graph_scratch(g, sizeof(float) * (size_t)(cb * q->kk * q->tile) * (size_t)max_threads());
    #pragma omp parallel for schedule(static)
    for (int64_t it = 0; it < items; it++) {
        int64_t b = it % nb, ng = it / nb, gi = ng % q->groups, n = ng / q->groups;
        int64_t c0 = b * cb, cn = MD_MIN(q->cg, c0 + cb) - c0;
        float *col = cols + (size_t)thread_id() * (size_t)(cb * q->kk * q->tile);
        float *dxg = dx + (n * q->c + gi * q->cg) * q->hw;
        const float *dyg = dy + (n * q->o + gi * q->og) * q->ohw;
        const float *wg = w + gi * q->og * q->rows;
        if (beta == 0.f)
            memset(dxg + c0 * q->hw, 0, sizeof(float) * (size_t)(cn * q->hw));
        for (int64_t t = 0; t < q->ntiles; t++) {
            int64_t p0 = t * q->tile, p1 = MD_MIN(q->ohw, p0 + q->tile), T = p1 - p0;
            /* col [cn*kk, T] = (w_g[:, c0*kk ..])^T @ dy_g[:, p0..p1] */
            md_gemm(g, true, false, cn * q->kk, T, q->og, 1.f, wg + c0 * q->kk, q->rows, dyg + p0, q->ohw,
                    0.f, col, T);
            col2im_tile(dxg, col, q, c0, cn, p0, p1);
        }
    }
}

/* dw (=|+=) sum over images and positions of dy_tile @ col_tile^T.
 * The (image, tile) sequence is cut into a fixed number of contiguous
 * chunks; each sums into its own buffer and the buffers are added in chunk
 * order. Items: (chunk, group). */
static void conv_bwd_weight(md_graph *g, const conv_geom *q, const float *x, const float *dy, float *dw,
                            float beta)
{
    const int64_t wn = q->o * q->rows;   /* weight elements */
    const int64_t seq = q->n * q->ntiles;
    int64_t nch = MD_MIN(seq, WGRAD_CHUNKS);
    nch = MD_MAX(1, MD_MIN(nch, WGRAD_BYTES / (wn * (int64_t)sizeof(float))));
    float *part = md_graph_scratch(g, sizeof(float) * (size_t)(wn * nch));
    float *cols = NULL;
    if (!q->direct)
        cols = md_graph_scratch(g, sizeof(float) * (size_t)(q->rows * q->tile) * (size_t)max_threads());
    const int64_t items = nch * q->groups;
    #pragma omp parallel for schedule(static)
    for (int64_t it = 0; it < items; it++) {
        int64_t gi = it % q->groups, ch = it / q->groups;
        int64_t s0 = seq * ch / nch, s1 = seq * (ch + 1) / nch;
        float *pw = part + ch * wn + gi * q->og * q->rows;   /* [Og, rows] */
        float *col = cols ? cols + (size_t)thread_id() * (size_t)(q->rows * q->tile) : NULL;
        for (int64_t s = s0; s < s1; s++) {
            int64_t n = s / q->ntiles, t = s % q->ntiles;
            int64_t p0 = t * q->tile, p1 = MD_MIN(q->ohw, p0 + q->tile), T = p1 - p0;
            const float *xg = x + (n * q->c + gi * q->cg) * q->hw;
            const float *dyg = dy + (n * q->o + gi * q->og) * q->ohw + p0;
            const float *b = xg + p0;
            int64_t ldb = q->hw;
            if (!q->direct) {
                im2col_tile(col, xg, q, 0, q->cg, p0, p1);
                b = col;
                ldb = T;
            }
            md_gemm(g, false, true, q->og, q->rows, T, 1.f, dyg, q->ohw, b, ldb, s == s0 ? 0.f : 1.f,
                    pw, q->rows);
        }
    }
    #pragma omp parallel for schedule(static) if (wn * nch > 32768)
    for (int64_t i = 0; i < wn; i++) {
        float acc = part[i];
        for (int64_t ch = 1; ch < nch; ch++)
            acc += part[ch * wn + i];
        dw[i] = (beta == 0.f ? 0.f : dw[i]) + acc;
    }
}

/* db[o] (=|+=) sum over images and positions of dy [n, o, s]. */
static void bias_grad(float *db, const float *dy, int64_t n, int64_t o, int64_t s, float beta)
{
    #pragma omp parallel for schedule(static) if (n * o * s > 32768)
    for (int64_t k = 0; k < o; k++) {
        float acc = 0.f;
        for (int64_t i = 0; i < n; i++) {
            const float *r = dy + (i * o + k) * s;
            float a = 0.f;
            #pragma omp simd reduction(+:a)
            for (int64_t j = 0; j < s; j++)
                a += r[j];
            acc += a;
        }
        db[k] = (beta == 0.f ? 0.f : db[k]) + acc;
    }
}

/* ---- conv1d / conv2d ------------------------------------------------------ */

static void conv_backward(md_graph *g, md_node *nd)
{
    md_tensor *x = nd->in[0], *w = nd->in[1], *bias = nd->in[2], *y = nd->out;
    const conv_geom *q = nd->saved[0];
    if (md_wants_grad(x))
        conv_bwd_data(g, q, y->grad, w->data, x->grad, md_grad_beta(x));
    if (md_wants_grad(w))
        conv_bwd_weight(g, q, x->data, y->grad, w->grad, md_grad_beta(w));
    if (md_wants_grad(bias))
        bias_grad(bias->grad, y->grad, q->n, q->o, q->ohw, md_grad_beta(bias));
}

static md_tensor *conv_run(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *bias, conv_geom *q,
                           int ndim, const int64_t *oshape)
{
    MD_CHECK_CONTIG(x);
    MD_CHECK_CONTIG(w);
    MD_CHECK_F32(x);
    MD_CHECK_F32(w);
    MD_ASSERT(!bias || (md_numel(bias) == q->o && md_is_contiguous(bias)));
    geom_finish(q);
    md_tensor *y = md_tensor_new(g, MD_F32, ndim, oshape, md_any_grad(g, x, w, bias));
    conv_fwd(g, q, x->data, w->data, bias ? bias->data : NULL, y->data, 0.f);
    md_node *nd = md_graph_record(g, conv_backward, y);
    if (nd) {
        conv_geom *sq = md_graph_scratch(g, sizeof *sq);
        *sq = *q;
        nd->in[0] = x; nd->in[1] = w; nd->in[2] = bias;
        nd->saved[0] = sq;
    }
    return y;
}

md_tensor *md_conv1d(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *bias,
                     int stride, int pad, int groups)
{
    MD_ASSERT(x->ndim == 3 && w->ndim == 3 && groups >= 1 && stride >= 1 && pad >= 0);
    MD_ASSERT(w->shape[1] * groups == x->shape[1]);
    conv_geom q = {
        .n = x->shape[0], .c = x->shape[1], .h = 1, .w = x->shape[2],
        .o = w->shape[0], .kh = 1, .kw = w->shape[2],
        .sh = 1, .sw = stride, .ph = 0, .pw = pad, .groups = groups,
    };
    q.oh = 1;
    q.ow = floor_div(q.w + 2 * pad - q.kw, stride) + 1;
    int64_t oshape[3] = {q.n, q.o, q.ow};
    return conv_run(g, x, w, bias, &q, 3, oshape);
}

md_tensor *md_conv2d(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *bias,
                     int stride, int pad, int groups)
{
    MD_ASSERT(x->ndim == 4 && w->ndim == 4 && groups >= 1 && stride >= 1 && pad >= 0);
    MD_ASSERT(w->shape[1] * groups == x->shape[1]);
    conv_geom q = {
        .n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
        .o = w->shape[0], .kh = w->shape[2], .kw = w->shape[3],
        .sh = stride, .sw = stride, .ph = pad, .pw = pad, .groups = groups,
    };
    q.oh = floor_div(q.h + 2 * pad - q.kh, stride) + 1;
    q.ow = floor_div(q.w + 2 * pad - q.kw, stride) + 1;
    int64_t oshape[4] = {q.n, q.o, q.oh, q.ow};
    return conv_run(g, x, w, bias, &q, 4, oshape);
}

/* ---- conv_transpose2d ------------------------------------------------------
 * Seen as the adjoint of a conv2d from the output y [N, O, OH, OW] to the
 * input x [N, C, H, W] with weight [C, O/groups, KH, KW] (the same memory):
 * y = conv^T(x), dx = conv(dy), dw from conv_bwd_weight(dy, x). */

static void convt_backward(md_graph *g, md_node *nd)
{
    md_tensor *x = nd->in[0], *w = nd->in[1], *bias = nd->in[2], *y = nd->out;
    const conv_geom *q = nd->saved[0];   /* q->n, q->c: y's; q->o: x's channels */
    if (md_wants_grad(x))
        conv_fwd(g, q, y->grad, w->data, NULL, x->grad, md_grad_beta(x));
    if (md_wants_grad(w))
        conv_bwd_weight(g, q, y->grad, x->data, w->grad, md_grad_beta(w));
    if (md_wants_grad(bias))
        bias_grad(bias->grad, y->grad, q->n, q->c, q->hw, md_grad_beta(bias));
}

md_tensor *md_conv_transpose2d(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *bias,
                               int stride, int pad, int groups)
{
    MD_ASSERT(x->ndim == 4 && w->ndim == 4 && groups >= 1 && stride >= 1 && pad >= 0);
    MD_ASSERT(w->shape[0] == x->shape[1]);
    MD_CHECK_CONTIG(x);
    MD_CHECK_CONTIG(w);
    MD_CHECK_F32(x);
    MD_CHECK_F32(w);
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = w->shape[1] * groups, KH = w->shape[2], KW = w->shape[3];
    int64_t OH = (H - 1) * stride - 2 * pad + KH, OW = (W - 1) * stride - 2 * pad + KW;
    MD_ASSERT(OH >= 1 && OW >= 1);
    MD_ASSERT(!bias || (md_numel(bias) == O && md_is_contiguous(bias)));
    conv_geom q = {
        .n = N, .c = O, .h = OH, .w = OW,
        .o = C, .kh = KH, .kw = KW, .oh = H, .ow = W,
        .sh = stride, .sw = stride, .ph = pad, .pw = pad, .groups = groups,
    };
    geom_finish(&q);
    int64_t oshape[4] = {N, O, OH, OW};
    md_tensor *y = md_tensor_new(g, MD_F32, 4, oshape, md_any_grad(g, x, w, bias));
    conv_bwd_data(g, &q, x->data, w->data, y->data, 0.f);
    if (bias) {
        int64_t planes = N * O, S = OH * OW;
        #pragma omp parallel for schedule(static) if (planes * S > 32768)
        for (int64_t pl = 0; pl < planes; pl++) {
            float bv = bias->data[pl % O], *yr = y->data + pl * S;
            #pragma omp simd
            for (int64_t i = 0; i < S; i++)
                yr[i] += bv;
        }
    }
    md_node *nd = md_graph_record(g, convt_backward, y);
    if (nd) {
        conv_geom *sq = md_graph_scratch(g, sizeof *sq);
        *sq = q;
        nd->in[0] = x; nd->in[1] = w; nd->in[2] = bias;
        nd->saved[0] = sq;
    }
    return y;
}

/* ---- upsample_nearest2d: y[.., h*s+i, w*s+j] = x[.., h, w] ----------------- */

static void upsample_backward(md_graph *g, md_node *nd)
{
    md_tensor *x = nd->in[0], *y = nd->out;
    if (!md_wants_grad(x))
        return;
    int64_t s = nd->iarg[0], H = x->shape[2], W = x->shape[3], planes = x->shape[0] * x->shape[1];
    int64_t OW = W * s;
    float beta = md_grad_beta(x);
    #pragma omp parallel for schedule(static) if (planes * H * W > 16384)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *dy = y->grad + pl * H * W * s * s;
        float *dx = x->grad + pl * H * W;
        for (int64_t h = 0; h < H; h++)
            for (int64_t w = 0; w < W; w++) {
                float acc = 0.f;
                for (int64_t i = 0; i < s; i++)
                    for (int64_t j = 0; j < s; j++)
                        acc += dy[(h * s + i) * OW + w * s + j];
                dx[h * W + w] = (beta == 0.f ? 0.f : dx[h * W + w]) + acc;
            }
    }
}

md_tensor *md_upsample_nearest2d(md_graph *g, md_tensor *x, int scale)
{
    MD_CHECK_CONTIG(x);
    MD_CHECK_F32(x);
    MD_ASSERT(x->ndim == 4 && scale >= 1);
    int64_t s = scale, H = x->shape[2], W = x->shape[3], planes = x->shape[0] * x->shape[1];
    int64_t shape[4] = {x->shape[0], x->shape[1], H * s, W * s};
    md_tensor *y = md_tensor_new(g, MD_F32, 4, shape, md_any_grad(g, x, NULL, NULL));
    int64_t OW = W * s;
    #pragma omp parallel for schedule(static) if (planes * H * W > 16384)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x->data + pl * H * W;
        float *yp = y->data + pl * H * W * s * s;
        for (int64_t h = 0; h < H; h++) {
            float *yr = yp + h * s * OW;
            for (int64_t w = 0; w < W; w++)
                for (int64_t j = 0; j < s; j++)
                    yr[w * s + j] = xp[h * W + w];
            for (int64_t i = 1; i < s; i++)
                memcpy(yr + i * OW, yr, sizeof(float) * (size_t)OW);
        }
    }
    md_node *nd = md_graph_record(g, upsample_backward, y);
    if (nd) {
        nd->in[0] = x;
        nd->iarg[0] = s;
    }
    return y;
}

/* ---- avgpool2d: kernel k, stride s, no padding; OH = (H - k)/s + 1 ------- */

static void avgpool_backward(md_graph *g, md_node *nd)
{
    md_tensor *x = nd->in[0], *y = nd->out;
    if (!md_wants_grad(x))
        return;
    int64_t k = nd->iarg[0], s = nd->iarg[1];
    int64_t H = x->shape[2], W = x->shape[3], OH = y->shape[2], OW = y->shape[3];
    int64_t planes = x->shape[0] * x->shape[1];
    float inv = 1.f / (float)(k * k), beta = md_grad_beta(x);
    #pragma omp parallel for schedule(static) if (planes * H * W > 16384)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dx = x->grad + pl * H * W;
        const float *dy = y->grad + pl * OH * OW;
        if (beta == 0.f)
            memset(dx, 0, sizeof(float) * (size_t)(H * W));
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                float v = dy[oh * OW + ow] * inv;
                for (int64_t i = 0; i < k; i++)
                    for (int64_t j = 0; j < k; j++)
                        dx[(oh * s + i) * W + ow * s + j] += v;
            }
    }
}

md_tensor *md_avgpool2d(md_graph *g, md_tensor *x, int kernel, int stride)
{
    MD_CHECK_CONTIG(x);
    MD_CHECK_F32(x);
    MD_ASSERT(x->ndim == 4 && kernel >= 1 && stride >= 1);
    int64_t k = kernel, s = stride, H = x->shape[2], W = x->shape[3];
    MD_ASSERT(H >= k && W >= k);
    int64_t OH = (H - k) / s + 1, OW = (W - k) / s + 1, planes = x->shape[0] * x->shape[1];
    int64_t shape[4] = {x->shape[0], x->shape[1], OH, OW};
    md_tensor *y = md_tensor_new(g, MD_F32, 4, shape, md_any_grad(g, x, NULL, NULL));
    float inv = 1.f / (float)(k * k);
    #pragma omp parallel for schedule(static) if (planes * H * W > 16384)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x->data + pl * H * W;
        float *yp = y->data + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                float acc = 0.f;
                for (int64_t i = 0; i < k; i++)
                    for (int64_t j = 0; j < k; j++)
                        acc += xp[(oh * s + i) * W + ow * s + j];
                yp[oh * OW + ow] = acc * inv;
            }
    }
    md_node *nd = md_graph_record(g, avgpool_backward, y);
    if (nd) {
        nd->in[0] = x;
        nd->iarg[0] = k;
        nd->iarg[1] = s;
    }
    return y;
}

/* ---- groupnorm --------------------------------------------------------------
 * x [N, C, S...] seen as [N, G, Cg, S]; statistics per (n, g) over Cg*S
 * contiguous values (biased variance, as PyTorch). saved: mean, rstd [N*G]. */

static void groupnorm_backward(md_graph *g, md_node *nd)
{
    md_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2], *y = nd->out;
    const float *mean = nd->saved[0], *rstd = nd->saved[1];
    int64_t N = x->shape[0], C = x->shape[1], G = nd->iarg[0];
    int64_t S = md_numel(x) / (N * C), Cg = C / G;
    const float *wv = w ? w->data : NULL;
    bool gx = md_wants_grad(x), gw = md_wants_grad(w), gb = md_wants_grad(b);
    /* Per (n, c): sum dy and sum dy*xhat; reused by dx and by dw, db. */
    float *sdy = md_graph_scratch(g, sizeof(float) * (size_t)(N * C));
    float *sdyx = md_graph_scratch(g, sizeof(float) * (size_t)(N * C));
    float beta = gx ? md_grad_beta(x) : 0.f;
    #pragma omp parallel for schedule(static)
    for (int64_t ng = 0; ng < N * G; ng++) {
        int64_t n = ng / G, c0 = (ng % G) * Cg;
        float mu = mean[ng], rs = rstd[ng];
        float a = 0.f, bsum = 0.f;   /* sum w*dy, sum w*dy*xhat over the group */
        for (int64_t c = c0; c < c0 + Cg; c++) {
            const float *xr = x->data + (n * C + c) * S, *dyr = y->grad + (n * C + c) * S;
            float s1 = 0.f, s2 = 0.f;
            #pragma omp simd reduction(+:s1, s2)
            for (int64_t i = 0; i < S; i++) {
                s1 += dyr[i];
                s2 += dyr[i] * (xr[i] - mu);
            }
            s2 *= rs;
            sdy[n * C + c] = s1;
            sdyx[n * C + c] = s2;
            float wc = wv ? wv[c] : 1.f;
            a += wc * s1;
            bsum += wc * s2;
        }
        if (!gx)
            continue;
        float M = (float)(Cg * S);
        a /= M;
        bsum /= M;
        for (int64_t c = c0; c < c0 + Cg; c++) {
            const float *xr = x->data + (n * C + c) * S, *dyr = y->grad + (n * C + c) * S;
            float *dxr = x->grad + (n * C + c) * S;
            float wc = wv ? wv[c] : 1.f;
            /* dx = rs * (w*dy - mean(w*dy) - xhat * mean(w*dy*xhat)) */
            float k1 = rs * wc, k2 = rs * bsum * rs, k0 = -rs * a + mu * k2;
            if (beta == 0.f) {
                #pragma omp simd
                for (int64_t i = 0; i < S; i++)
                    dxr[i] = k1 * dyr[i] - k2 * xr[i] + k0;
            } else {
                #pragma omp simd
                for (int64_t i = 0; i < S; i++)
                    dxr[i] += k1 * dyr[i] - k2 * xr[i] + k0;
            }
        }
    }
    if (gw || gb) {
        float bw = gw ? md_grad_beta(w) : 0.f, bb = gb ? md_grad_beta(b) : 0.f;
        for (int64_t c = 0; c < C; c++) {
            float aw = 0.f, ab = 0.f;
            for (int64_t n = 0; n < N; n++) {
                aw += sdyx[n * C + c];
                ab += sdy[n * C + c];
            }
            if (gw) w->grad[c] = (bw == 0.f ? 0.f : w->grad[c]) + aw;
            if (gb) b->grad[c] = (bb == 0.f ? 0.f : b->grad[c]) + ab;
        }
    }
}

md_tensor *md_groupnorm(md_graph *g, md_tensor *x, int groups, md_tensor *w, md_tensor *b, float eps)
{
    MD_CHECK_CONTIG(x);
    MD_CHECK_F32(x);
    MD_ASSERT(x->ndim >= 2 && groups >= 1 && x->shape[1] % groups == 0);
    int64_t N = x->shape[0], C = x->shape[1], G = groups;
    int64_t S = (N * C != 0) ? md_numel(x) / (N * C) : 0, Cg = C / G;
    MD_ASSERT(!w || md_numel(w) == C);
    MD_ASSERT(!b || md_numel(b) == C);
    md_tensor *y = md_tensor_new(g, MD_F32, x->ndim, x->shape, md_any_grad(g, x, w, b));
    float *mean = md_graph_scratch(g, sizeof(float) * (size_t)(N * G));
    float *rstd = md_graph_scratch(g, sizeof(float) * (size_t)(N * G));
    const float *wv = w ? w->data : NULL, *bv = b ? b->data : NULL;
    #pragma omp parallel for schedule(static)
    for (int64_t ng = 0; ng < N * G; ng++) {
        const float *xg = x->data + ng * Cg * S;
        float *yg = y->data + ng * Cg * S;
        int64_t M = Cg * S;
        float s = 0.f;
        #pragma omp simd reduction(+:s)
        for (int64_t i = 0; i < M; i++)
            s += xg[i];
        float mu = s / (float)M, v = 0.f;
        #pragma omp simd reduction(+:v)
        for (int64_t i = 0; i < M; i++) {
            float d = xg[i] - mu;
            v += d * d;
        }
        float rs = 1.f / sqrtf(v / (float)M + eps);
        mean[ng] = mu;
        rstd[ng] = rs;
        int64_t c0 = (ng % G) * Cg;
        for (int64_t c = 0; c < Cg; c++) {
            float sc = rs * (wv ? wv[c0 + c] : 1.f);
            float sh = (bv ? bv[c0 + c] : 0.f) - mu * sc;
            const float *xr = xg + c * S;
            float *yr = yg + c * S;
            #pragma omp simd
            for (int64_t i = 0; i < S; i++)
                yr[i] = xr[i] * sc + sh;
        }
    }
    md_node *nd = md_graph_record(g, groupnorm_backward, y);
    if (nd) {
        nd->in[0] = x; nd->in[1] = w; nd->in[2] = b;
        nd->saved[0] = mean; nd->saved[1] = rstd;
        nd->iarg[0] = G;
    }
    return y;
}
