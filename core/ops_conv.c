/* ops_conv.c — convolutions (1-D, 2-D, transposed 2-D), nearest upsampling,
 * average pooling, group normalisation and group normalisation + SiLU, each
 * with its backward.
 *
 * The reference convolution is im2col + gemm on tiles of output positions:
 *   col [Cg*KH*KW, T]   one tile of T output positions of one image and group
 *   y   [Og, T]       = w_g [Og, Cg*KH*KW] @ col
 * A tile's col matrix is sized to stay in L2 (TILE_FLOATS). 1x1 convolutions
 * with stride 1 and no padding read x directly.
 *
 * Fast paths beside it (MEDLEY_CONV_REF=1 turns them off):
 *   - conv_fwd and conv_bwd_data run oneDNN's direct convolution primitives
 *     (groups 1), cached per geometry; see "oneDNN convolution primitives".
 *   - conv_bwd_weight with stride 1 and 64k outputs per group runs a
 *     register-blocked kernel on copies of x shifted by kw columns, which
 *     move KW values per input value where im2col moves KH*KW, and sums the
 *     bias gradient from the same rows; see conv_bwd_weight_shift.
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
 * The oneDNN primitives used keep each output's reduction on one thread
 * (checked by tests/test_conv_det.c for 1, 2 and 3 threads). So every
 * result is bit-identical for any thread count.
 */
#include "ops_internal.h"
#include "simd.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <oneapi/dnnl/dnnl.h>
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

/* ---- oneDNN convolution primitives ------------------------------------------
 * The fast path of conv_fwd and conv_bwd_data: oneDNN's Winograd F(4x4, 3x3)
 * kernels where they apply and the images hold WINO_MIN_POSITIONS output
 * positions, else its direct kernels, in the layout they choose (nChw16c on
 * AVX-512), with reorders from and to Medley's NCHW around them. Those
 * kernels cut work by output element (tile) and keep each output's
 * reduction whole on one thread, so results do not depend on the thread
 * count (tests/test_conv_det.c checks 1, 2 and 3 threads). Winograd is
 * used only with gradients on (training): on some shapes oneDNN blocks its
 * sums by the thread count (seen: 128 -> 64 channels, 32x32, batch 4), so
 * forward passes without gradients (generation, which promises the same
 * bits on any thread count) take the direct kernels. Winograd's transforms
 * round differently from a direct sum: ~1e-7 relative RMS here, within the
 * parity tolerances. A primitive whose implementation is gemm-based or a
 * reference one (either may split a reduction), or one with groups > 1, is
 * not used: the im2col kernels above run instead. They stay the reference:
 * MEDLEY_CONV_REF=1 forces them everywhere.
 *
 * Primitives are created once per (geometry, bias, thread count, Winograd
 * allowed) into a
 * small cache (DNN_SLOTS entries, the oldest replaced when full), with
 * their memory objects, which each call points at its buffers. Blocked
 * copies come from the graph's arena; the scratchpad (user mode) is one
 * buffer, grown when a primitive is created. One mutex serialises use
 * of the cache (each call already runs on every thread of the pool). */

#define DNN_SLOTS 32
/* Winograd when the images hold at least this many output positions in all
 * (fewer: oneDNN's direct kernels were faster, measured on Zen 5). */
#define WINO_MIN_POSITIONS 1024
#define DNN_KEY 15

/* plain <-> blocked copy; prim NULL when the layouts agree. */
typedef struct dnn_reorder {
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst, sp;
    size_t sp_bytes;           /* scratchpad (user-provided) */
} dnn_reorder;

typedef struct dnn_conv {
    int64_t key[DNN_KEY];
    bool used, ok;             /* ok false: no usable primitive, use im2col */
    dnnl_primitive_t fwd, bwd;
    dnnl_memory_t fx, fw, fb, fy, fsp, bdy, bw, bdx, bsp;
    size_t fsp_bytes, bsp_bytes, x_bytes, y_bytes, fw_bytes, bw_bytes, dy_bytes, dx_bytes;
    dnn_reorder rx, rw, ry;    /* forward: x, w in; y out */
    dnn_reorder rdy, rwb, rdx; /* backward data: dy, w in; dx out */
} dnn_conv;

static pthread_mutex_t dnn_lock = PTHREAD_MUTEX_INITIALIZER;
static dnn_conv dnn_cache[DNN_SLOTS];
static int dnn_next;           /* slot replaced next when all are used */
static dnnl_engine_t dnn_engine;
static dnnl_stream_t dnn_stream;
static int dnn_state;          /* 0 unknown, 1 on, -1 off (env or no engine) */
/* One scratchpad for every primitive (they run one at a time, under
 * dnn_lock), grown when a primitive is created, never on a call. */
static void *dnn_sp;
static size_t dnn_sp_cap;

static int conv_ref_flag;
static pthread_once_t conv_ref_once = PTHREAD_ONCE_INIT;
static void conv_ref_init(void)
{
    const char *e = getenv("MEDLEY_CONV_REF");
    conv_ref_flag = e && *e && strcmp(e, "0") != 0;
}

/* MEDLEY_CONV_REF set (and not "0"): the im2col kernels run everywhere. */
static bool conv_ref(void)
{
    pthread_once(&conv_ref_once, conv_ref_init);
    return conv_ref_flag != 0;
}

static void dnn_reorder_free(dnn_reorder *r)
{
    if (r->prim) dnnl_primitive_destroy(r->prim);
    if (r->src) dnnl_memory_destroy(r->src);
    if (r->dst) dnnl_memory_destroy(r->dst);
    if (r->sp) dnnl_memory_destroy(r->sp);
    *r = (dnn_reorder){0};
}

static void dnn_conv_free(dnn_conv *e)
{
    dnnl_primitive_t *p[] = {&e->fwd, &e->bwd};
    dnnl_memory_t *m[] = {&e->fx, &e->fw, &e->fb, &e->fy, &e->fsp, &e->bdy, &e->bw, &e->bdx, &e->bsp};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++)
        if (*p[i]) dnnl_primitive_destroy(*p[i]);
    for (size_t i = 0; i < sizeof m / sizeof *m; i++)
        if (*m[i]) dnnl_memory_destroy(*m[i]);
    dnn_reorder_free(&e->rx); dnn_reorder_free(&e->rw); dnn_reorder_free(&e->ry);
    dnn_reorder_free(&e->rdy); dnn_reorder_free(&e->rwb); dnn_reorder_free(&e->rdx);
    *e = (dnn_conv){0};
}

static bool dnn_mem(dnnl_memory_t *m, const dnnl_memory_desc_t *md)
{
    return dnnl_memory_create(m, md, dnn_engine, DNNL_MEMORY_NONE) == dnnl_success;
}

static bool dnn_reorder_init(dnn_reorder *r, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                             const_dnnl_primitive_attr_t attr)
{
    if (dnnl_memory_desc_equal(from, to))
        return true;
    dnnl_primitive_desc_t pd;
    if (dnnl_reorder_primitive_desc_create(&pd, from, dnn_engine, to, dnn_engine, attr) != dnnl_success)
        return false;
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    r->sp_bytes = dnnl_memory_desc_get_size(sp);
    bool ok = dnnl_primitive_create(&r->prim, pd) == dnnl_success && dnn_mem(&r->src, from) &&
              dnn_mem(&r->dst, to) && dnn_mem(&r->sp, sp);
    dnnl_primitive_desc_destroy(pd);
    return ok;
}

static void dnn_reorder_run(const dnn_reorder *r, const void *from, void *to)
{
    dnnl_memory_set_data_handle(r->src, (void *)from);
    dnnl_memory_set_data_handle(r->dst, to);
    dnnl_memory_set_data_handle(r->sp, r->sp_bytes ? dnn_sp : NULL);
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_FROM, r->src}, {DNNL_ARG_TO, r->dst}, {DNNL_ARG_SCRATCHPAD, r->sp}};
    dnnl_status_t st = dnnl_primitive_execute(r->prim, dnn_stream, 3, a);
    MD_ASSERT(st == dnnl_success);
}

/* Direct and Winograd F(4x4, 3x3) kernels only: see the section comment. */
static bool dnn_impl_ok(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl)
        return false;
    return strncmp(impl, "jit:", 4) == 0 || strncmp(impl, "brg", 3) == 0 || strncmp(impl, "jit_wino_4x3:", 13) == 0;
}

/* Forward and backward-data descriptors with algorithm alg; false (both
 * NULL) when either cannot be made or is not a kernel accepted above. */
static bool dnn_conv_pds(dnnl_primitive_desc_t *fpd, dnnl_primitive_desc_t *bpd, dnnl_alg_kind_t alg,
                         const dnnl_memory_desc_t *x, const dnnl_memory_desc_t *w, const dnnl_memory_desc_t *b,
                         const dnnl_memory_desc_t *y, const dnnl_dim_t *st, const dnnl_dim_t *pl,
                         const dnnl_dim_t *pr, const_dnnl_primitive_attr_t attr)
{
    dnnl_convolution_desc_t fd, bd;
    *fpd = *bpd = NULL;
    bool ok = dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, x, w, b, y, st, pl, pr) ==
                  dnnl_success &&
              dnnl_primitive_desc_create(fpd, &fd, attr, dnn_engine, NULL) == dnnl_success &&
              dnnl_convolution_backward_data_desc_init(&bd, alg, x, w, y, st, pl, pr) == dnnl_success &&
              dnnl_primitive_desc_create(bpd, &bd, attr, dnn_engine, *fpd) == dnnl_success &&
              dnn_impl_ok(*fpd) && dnn_impl_ok(*bpd);
    if (!ok) {
        if (*fpd) dnnl_primitive_desc_destroy(*fpd);
        if (*bpd) dnnl_primitive_desc_destroy(*bpd);
        *fpd = *bpd = NULL;
    }
    return ok;
}

static bool dnn_sp_reserve(size_t bytes)
{
    if (bytes <= dnn_sp_cap)
        return true;
    size_t cap = (bytes + 4095) & ~(size_t)4095;
    void *p = aligned_alloc(4096, cap);
    if (!p)
        return false;
    free(dnn_sp);
    dnn_sp = p;
    dnn_sp_cap = cap;
    return true;
}

/* Creates both primitives of e (key already set); false if any step fails. */
static bool dnn_conv_init(dnn_conv *e, const conv_geom *q, bool bias, bool wino_ok)
{
    if (q->groups != 1)
        return false;
    dnnl_dims_t xd = {q->n, q->c, q->h, q->w}, wd = {q->o, q->c, q->kh, q->kw}, bd = {q->o},
                yd = {q->n, q->o, q->oh, q->ow}, st = {q->sh, q->sw}, pl = {q->ph, q->pw},
                pr = {(q->oh - 1) * q->sh + q->kh - q->h - q->ph, (q->ow - 1) * q->sw + q->kw - q->w - q->pw};
    dnnl_memory_desc_t xp, wp, bp, yp, xa, wa, ya;
    if (dnnl_memory_desc_init_by_tag(&xp, 4, xd, dnnl_f32, dnnl_nchw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&wp, 4, wd, dnnl_f32, dnnl_oihw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&bp, 1, bd, dnnl_f32, dnnl_x) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&yp, 4, yd, dnnl_f32, dnnl_nchw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&xa, 4, xd, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&wa, 4, wd, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&ya, 4, yd, dnnl_f32, dnnl_format_tag_any) != dnnl_success)
        return false;
    dnnl_primitive_attr_t attr;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success)
        return false;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    bool wino = wino_ok && q->n * q->ohw >= WINO_MIN_POSITIONS;
    bool ok = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success &&
              ((wino && dnn_conv_pds(&fpd, &bpd, dnnl_convolution_winograd, &xa, &wa, bias ? &bp : NULL, &ya, st,
                                     pl, pr, attr)) ||
               dnn_conv_pds(&fpd, &bpd, dnnl_convolution_direct, &xa, &wa, bias ? &bp : NULL, &ya, st, pl, pr,
                            attr));
    if (ok) {
        const dnnl_memory_desc_t *fx = dnnl_primitive_desc_query_md(fpd, dnnl_query_src_md, 0),
                                 *fw = dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0),
                                 *fy = dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0),
                                 *fs = dnnl_primitive_desc_query_md(fpd, dnnl_query_scratchpad_md, 0),
                                 *bdy = dnnl_primitive_desc_query_md(bpd, dnnl_query_diff_dst_md, 0),
                                 *bw = dnnl_primitive_desc_query_md(bpd, dnnl_query_weights_md, 0),
                                 *bdx = dnnl_primitive_desc_query_md(bpd, dnnl_query_diff_src_md, 0),
                                 *bs = dnnl_primitive_desc_query_md(bpd, dnnl_query_scratchpad_md, 0);
        e->x_bytes = dnnl_memory_desc_get_size(fx);
        e->fw_bytes = dnnl_memory_desc_get_size(fw);
        e->y_bytes = dnnl_memory_desc_get_size(fy);
        e->dy_bytes = dnnl_memory_desc_get_size(bdy);
        e->bw_bytes = dnnl_memory_desc_get_size(bw);
        e->dx_bytes = dnnl_memory_desc_get_size(bdx);
        e->fsp_bytes = dnnl_memory_desc_get_size(fs);
        e->bsp_bytes = dnnl_memory_desc_get_size(bs);
        ok = dnnl_primitive_create(&e->fwd, fpd) == dnnl_success &&
             dnnl_primitive_create(&e->bwd, bpd) == dnnl_success &&
             dnn_mem(&e->fx, fx) && dnn_mem(&e->fw, fw) && (!bias || dnn_mem(&e->fb, &bp)) &&
             dnn_mem(&e->fy, fy) && dnn_mem(&e->fsp, fs) && dnn_mem(&e->bdy, bdy) && dnn_mem(&e->bw, bw) &&
             dnn_mem(&e->bdx, bdx) && dnn_mem(&e->bsp, bs) &&
             dnn_reorder_init(&e->rx, &xp, fx, attr) && dnn_reorder_init(&e->rw, &wp, fw, attr) &&
             dnn_reorder_init(&e->ry, fy, &yp, attr) && dnn_reorder_init(&e->rdy, &yp, bdy, attr) &&
             dnn_reorder_init(&e->rwb, &wp, bw, attr) && dnn_reorder_init(&e->rdx, bdx, &xp, attr) &&
             dnn_sp_reserve(MD_MAX(MD_MAX(e->fsp_bytes, e->bsp_bytes),
                                   MD_MAX(MD_MAX(e->rx.sp_bytes, e->rw.sp_bytes),
                                          MD_MAX(MD_MAX(e->ry.sp_bytes, e->rdy.sp_bytes),
                                                 MD_MAX(e->rwb.sp_bytes, e->rdx.sp_bytes)))));
    }
    dnnl_primitive_attr_destroy(attr);
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (bpd) dnnl_primitive_desc_destroy(bpd);
    return ok;
}

/* The cache entry for q (created on first use), with dnn_lock held; NULL
 * (lock released) when the im2col kernels must run. Release with
 * dnn_release(). */
static dnn_conv *dnn_acquire(const conv_geom *q, bool bias, bool wino_ok)
{
    pthread_mutex_lock(&dnn_lock);
    if (dnn_state == 0) {
        dnn_state = conv_ref() ? -1 : 1;
        if (dnn_state == 1 && (dnnl_engine_create(&dnn_engine, dnnl_cpu, 0) != dnnl_success ||
                               dnnl_stream_create(&dnn_stream, dnn_engine, dnnl_stream_default_flags) != dnnl_success)) {
            md_log(MD_LOG_WARN, "oneDNN CPU engine unavailable; convolutions use im2col");
            dnn_state = -1;
        }
    }
    if (dnn_state < 0) {
        pthread_mutex_unlock(&dnn_lock);
        return NULL;
    }
    int64_t key[DNN_KEY] = {q->n, q->c, q->h, q->w, q->o, q->kh, q->kw, q->sh, q->sw, q->ph, q->pw,
                            q->groups, bias, max_threads(), wino_ok};
    dnn_conv *e = NULL;
    for (int i = 0; i < DNN_SLOTS && !e; i++)
        if (dnn_cache[i].used && memcmp(dnn_cache[i].key, key, sizeof key) == 0)
            e = &dnn_cache[i];
    if (!e) {
        for (int i = 0; i < DNN_SLOTS && !e; i++)
            if (!dnn_cache[i].used)
                e = &dnn_cache[i];
        if (!e) {
            e = &dnn_cache[dnn_next];
            dnn_next = (dnn_next + 1) % DNN_SLOTS;
            dnn_conv_free(e);
        }
        memcpy(e->key, key, sizeof key);
        e->used = true;
        e->ok = dnn_conv_init(e, q, bias, wino_ok);
        if (!e->ok) {
            /* keep the key (so the next call does not retry), drop the rest */
            dnn_conv_free(e);
            memcpy(e->key, key, sizeof key);
            e->used = true;
        }
    }
    if (!e->ok) {
        pthread_mutex_unlock(&dnn_lock);
        return NULL;
    }
    return e;
}

static void dnn_release(void) { pthread_mutex_unlock(&dnn_lock); }

static void dnn_exec(dnnl_primitive_t p, int n, const dnnl_exec_arg_t *args)
{
    dnnl_status_t st = dnnl_primitive_execute(p, dnn_stream, n, args);
    MD_ASSERT(st == dnnl_success);
    dnnl_stream_wait(dnn_stream);
}

/* Buffer in the layout of md memory m: the plain one when no reorder. */
static void *dnn_buf(md_graph *g, const dnn_reorder *r, const void *plain, size_t bytes)
{
    return r->prim ? md_graph_scratch(g, bytes) : (void *)plain;
}

/* y[i] += t[i] */
static void add_into(float *y, const float *t, int64_t n)
{
    #pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++)
        y[i] += t[i];
}

/* conv_fwd through oneDNN; false when the im2col kernel must run. */
static bool dnn_fwd(md_graph *g, const conv_geom *q, const float *x, const float *w, const float *bias,
                    float *y, float beta)
{
    /* no Winograd without gradients: generation promises the same bits on
     * any thread count, and oneDNN's Winograd blocks its sums by the
     * thread count on some shapes (the image decoder's 128 -> 64 channels
     * at 32x32 differed between 1 and 2 threads) */
    dnn_conv *e = dnn_acquire(q, bias != NULL, md_graph_grad_enabled(g));
    if (!e)
        return false;
    int64_t ny = q->n * q->o * q->ohw;
    float *yt = beta == 0.f ? y : md_graph_scratch(g, sizeof(float) * (size_t)ny);
    void *xb = dnn_buf(g, &e->rx, x, e->x_bytes), *wb = dnn_buf(g, &e->rw, w, e->fw_bytes),
         *yb = dnn_buf(g, &e->ry, yt, e->y_bytes);
    void *sp = e->fsp_bytes ? dnn_sp : NULL;
    if (e->rx.prim) dnn_reorder_run(&e->rx, x, xb);
    if (e->rw.prim) dnn_reorder_run(&e->rw, w, wb);
    dnnl_memory_set_data_handle(e->fx, xb);
    dnnl_memory_set_data_handle(e->fw, wb);
    dnnl_memory_set_data_handle(e->fy, yb);
    dnnl_memory_set_data_handle(e->fsp, sp);
    dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, e->fx}, {DNNL_ARG_WEIGHTS, e->fw}, {DNNL_ARG_DST, e->fy},
                            {DNNL_ARG_SCRATCHPAD, e->fsp}, {DNNL_ARG_BIAS, e->fb}};
    if (bias)
        dnnl_memory_set_data_handle(e->fb, (void *)bias);
    dnn_exec(e->fwd, bias ? 5 : 4, a);
    if (e->ry.prim) dnn_reorder_run(&e->ry, yb, yt);
    dnn_release();
    if (beta != 0.f)
        add_into(y, yt, ny);
    return true;
}

/* conv_bwd_data through oneDNN; false when the im2col kernel must run. */
static bool dnn_bwd_data(md_graph *g, const conv_geom *q, const float *dy, const float *w, float *dx,
                         float beta)
{
    dnn_conv *e = dnn_acquire(q, false, true);
    if (!e)
        return false;
    int64_t nx = q->n * q->c * q->hw;
    float *dxt = beta == 0.f ? dx : md_graph_scratch(g, sizeof(float) * (size_t)nx);
    void *dyb = dnn_buf(g, &e->rdy, dy, e->dy_bytes), *wb = dnn_buf(g, &e->rwb, w, e->bw_bytes),
         *dxb = dnn_buf(g, &e->rdx, dxt, e->dx_bytes);
    void *sp = e->bsp_bytes ? dnn_sp : NULL;
    if (e->rdy.prim) dnn_reorder_run(&e->rdy, dy, dyb);
    if (e->rwb.prim) dnn_reorder_run(&e->rwb, w, wb);
    dnnl_memory_set_data_handle(e->bdy, dyb);
    dnnl_memory_set_data_handle(e->bw, wb);
    dnnl_memory_set_data_handle(e->bdx, dxb);
    dnnl_memory_set_data_handle(e->bsp, sp);
    dnnl_exec_arg_t a[4] = {{DNNL_ARG_DIFF_DST, e->bdy}, {DNNL_ARG_WEIGHTS, e->bw}, {DNNL_ARG_DIFF_SRC, e->bdx},
                            {DNNL_ARG_SCRATCHPAD, e->bsp}};
    dnn_exec(e->bwd, 4, a);
    if (e->rdx.prim) dnn_reorder_run(&e->rdx, dxb, dxt);
    dnn_release();
    if (beta != 0.f)
        add_into(dx, dxt, nx);
    return true;
}

/* y (=|+=) conv(x, w) + bias. beta 0 overwrites y, 1 accumulates into it;
 * bias may be NULL. Items: (image, group, tile), disjoint in y. */
static void conv_fwd(md_graph *g, const conv_geom *q, const float *x, const float *w, const float *bias,
                     float *y, float beta)
{
    if (dnn_fwd(g, q, x, w, bias, y, beta))
        return;
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
    if (dnn_bwd_data(g, q, dy, w, dx, beta))
        return;
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

/* Rows of output per tile of the shifted-copy weight gradient: its copies
 * [KW, Cg, R+KH-1, OW] stay within this many floats (1 MiB: they and the dy
 * rows they meet fit a Zen 5 core's L2). */
#define WSHIFT_FLOATS 262144

/* Weight-gradient micro-kernel: a block of WG_NB weight columns (kh, kw, c)
 * by WG_OB output channels (four 16-float vectors) kept in registers over
 * WG_KB positions, so dy^T [WG_KB, WG_OB] (24 KiB) stays in L1. */
#define WG_OB 64
#define WG_NB 6
#define WG_KB 96

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 wg_vec;
static inline wg_vec wg_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void wg_store(float *p, wg_vec v) { _mm512_storeu_ps(p, v); }
static inline wg_vec wg_bcast(float x) { return _mm512_set1_ps(x); }
static inline wg_vec wg_zero(void) { return _mm512_setzero_ps(); }
static inline wg_vec wg_fma(wg_vec a, wg_vec b, wg_vec c) { return _mm512_fmadd_ps(a, b, c); }
#else
/* Portable: gcc/clang vector extensions (no fused multiply-add in ISO C mode). */
typedef float wg_vec __attribute__((vector_size(64)));
static inline wg_vec wg_load(const float *p)
{
    wg_vec v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void wg_store(float *p, wg_vec v) { memcpy(p, &v, sizeof v); }
static inline wg_vec wg_bcast(float x) { return (wg_vec){0} + x; }
static inline wg_vec wg_zero(void) { return (wg_vec){0}; }
static inline wg_vec wg_fma(wg_vec a, wg_vec b, wg_vec c) { return a * b + c; }
#endif

/* dst[j][i] = src[i][j] for a 16 x 16 block; rows ld floats apart. */
static void transpose16(float *dst, int64_t ldd, const float *src, int64_t lds)
{
#if defined(__AVX512F__)
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i++) {   /* per 128-bit lane: a0 b0 a1 b1 | a2 b2 a3 b3 */
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {   /* r[4i + j], lane L: column 4L + j of rows 4i..4i+3 */
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int j = 0; j < 4; j++) {   /* gather lane L of the four row groups */
        __m512 v = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), w = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
        __m512 v2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        __m512 w2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
        _mm512_storeu_ps(dst + j * ldd, _mm512_shuffle_f32x4(v, v2, 0x88));
        _mm512_storeu_ps(dst + (8 + j) * ldd, _mm512_shuffle_f32x4(v, v2, 0xdd));
        _mm512_storeu_ps(dst + (4 + j) * ldd, _mm512_shuffle_f32x4(w, w2, 0x88));
        _mm512_storeu_ps(dst + (12 + j) * ldd, _mm512_shuffle_f32x4(w, w2, 0xdd));
    }
#else
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++)
            dst[j * ldd + i] = src[i * lds + j];
#endif
}

/* ct[i][0..64) (=|+=) sum over k < K of b[i][k] * a[k][0..64) for i < nb;
 * a rows lda floats apart, ct rows ldc apart, b[i] one pointer per row. */
static inline __attribute__((always_inline)) void wg_block(float *ct, int64_t ldc, const float *const *b,
                                                           const int nb, const float *a, int64_t lda,
                                                           int64_t K, bool acc)
{
    wg_vec c[WG_NB][4];
    const float *br[WG_NB];
    for (int i = 0; i < nb; i++) {
        br[i] = b[i];
        for (int j = 0; j < 4; j++)
            c[i][j] = acc ? wg_load(ct + i * ldc + 16 * j) : wg_zero();
    }
    for (int64_t k = 0; k < K; k++) {
        const float *ak = a + k * lda;
        wg_vec a0 = wg_load(ak), a1 = wg_load(ak + 16), a2 = wg_load(ak + 32), a3 = wg_load(ak + 48);
        for (int i = 0; i < nb; i++) {
            wg_vec bb = wg_bcast(br[i][k]);
            c[i][0] = wg_fma(bb, a0, c[i][0]);
            c[i][1] = wg_fma(bb, a1, c[i][1]);
            c[i][2] = wg_fma(bb, a2, c[i][2]);
            c[i][3] = wg_fma(bb, a3, c[i][3]);
        }
    }
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < 4; j++)
            wg_store(ct + i * ldc + 16 * j, c[i][j]);
}

static void wg_block_n(float *ct, int64_t ldc, const float *const *b, int nb, const float *a, int64_t lda,
                       int64_t K, bool acc)
{
    switch (nb) {
    case 6: wg_block(ct, ldc, b, 6, a, lda, K, acc); break;
    case 5: wg_block(ct, ldc, b, 5, a, lda, K, acc); break;
    case 4: wg_block(ct, ldc, b, 4, a, lda, K, acc); break;
    case 3: wg_block(ct, ldc, b, 3, a, lda, K, acc); break;
    case 2: wg_block(ct, ldc, b, 2, a, lda, K, acc); break;
    default: wg_block(ct, ldc, b, 1, a, lda, K, acc); break;
    }
}

/* conv_bwd_weight for stride 1 and Og a multiple of WG_OB, without im2col.
 * With xs_kw [Cg, OH+KH-1, OW] the input shifted by kw columns (zeros where
 * it reads padding), every weight column is a dot product over positions
 * p = (oh, ow) with a row of xs read kh rows on:
 *   dw[o, c, kh, kw] = sum_p dy[o, p] * xs_kw[c, p + kh*OW]
 * The copies move KW values per input value where im2col moves KH*KW; dy
 * is transposed per tile to dy^T [P, Og] for the kernel. Output rows are cut
 * into tiles of R rows and the (image, tile) sequence into chunks summed as
 * in conv_bwd_weight. Partial layout per group: [KH, KW, Cg, Og]. When db is
 * given the bias gradient is summed from the same dy rows (partials per
 * chunk, added in order). */
static void conv_bwd_weight_shift(md_graph *g, const conv_geom *q, const float *x, const float *dy, float *dw,
                                  float beta, float *db, float dbeta)
{
    const int64_t KH = q->kh, KW = q->kw, OW = q->ow, OH = q->oh, cg = q->cg, og = q->og;
    const int64_t wn = q->o * q->rows, ncol = q->rows;   /* columns (kh, kw, c) per group */
    int64_t R = WSHIFT_FLOATS / (KW * cg * OW) - (KH - 1);
    R = MD_MAX(1, MD_MIN(R, OH));
    const int64_t nrt = (OH + R - 1) / R, seq = q->n * nrt;
    const int64_t xs_floats = KW * cg * (R + KH - 1) * OW, dt_floats = R * OW * og;
    int64_t nch = MD_MIN(seq, WGRAD_CHUNKS);
    nch = MD_MAX(1, MD_MIN(nch, WGRAD_BYTES / (wn * (int64_t)sizeof(float))));
    float *part = md_graph_scratch(g, sizeof(float) * (size_t)(wn * nch));
    float *bpart = db ? md_graph_scratch(g, sizeof(float) * (size_t)(q->o * nch)) : NULL;
    float *xss = md_graph_scratch(g, sizeof(float) * (size_t)(xs_floats + dt_floats) * (size_t)max_threads());
    const int64_t items = nch * q->groups;
    #pragma omp parallel
    {
        float *xs = xss + (size_t)thread_id() * (size_t)(xs_floats + dt_floats);
        float *dyt = xs + xs_floats;   /* [P, Og] */
        const float *bp[WG_NB];
        #pragma omp for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            int64_t gi = it % q->groups, ch = it / q->groups;
            int64_t s0 = seq * ch / nch, s1 = seq * (ch + 1) / nch;
            float *pw = part + ch * wn + gi * og * ncol;   /* [KH, KW, Cg, Og] */
            float *pb = bpart ? bpart + ch * q->o + gi * og : NULL;
            for (int64_t s = s0; s < s1; s++) {
                int64_t n = s / nrt, r0 = (s % nrt) * R, rn = MD_MIN(OH, r0 + R) - r0;
                int64_t rows = rn + KH - 1, plane = rows * OW, P = rn * OW;
                const float *xg = x + (n * q->c + gi * cg) * q->hw;
                /* xs [KW, Cg, rows, OW]: xs[kw, c, rr, ow] = x[c, r0+rr-ph, ow+kw-pw] */
                for (int64_t kw = 0; kw < KW; kw++) {
                    const tap_walk tw = tap_init(q, kw);
                    for (int64_t c = 0; c < cg; c++) {
                        float *d = xs + (kw * cg + c) * plane;
                        const float *xc = xg + c * q->hw;
                        for (int64_t rr = 0; rr < rows; rr++, d += OW) {
                            int64_t ih = r0 + rr - q->ph;
                            if (ih < 0 || ih >= q->h) {
                                memset(d, 0, sizeof(float) * (size_t)OW);
                                continue;
                            }
                            const float *xr = xc + ih * q->w + tw.off;
                            for (int64_t ow = 0; ow < tw.olo; ow++)
                                d[ow] = 0.f;
                            #pragma omp simd
                            for (int64_t ow = tw.olo; ow < tw.ohi; ow++)
                                d[ow] = xr[ow];
                            for (int64_t ow = tw.ohi; ow < OW; ow++)
                                d[ow] = 0.f;
                        }
                    }
                }
                /* dy^T [P, Og] from dy [Og, P] in 16 x 16 blocks; bias sums */
                const float *dyg = dy + (n * q->o + gi * og) * q->ohw + r0 * OW;
                for (int64_t o0 = 0; o0 < og; o0 += 16)
                    for (int64_t p0 = 0; p0 < P; p0 += 16) {
                        int64_t pn = MD_MIN(16, P - p0);
                        if (pn == 16) {
                            transpose16(dyt + p0 * og + o0, og, dyg + o0 * q->ohw + p0, q->ohw);
                            continue;
                        }
                        for (int64_t o = o0; o < o0 + 16; o++) {
                            const float *src = dyg + o * q->ohw + p0;
                            for (int64_t p = 0; p < pn; p++)
                                dyt[(p0 + p) * og + o] = src[p];
                        }
                    }
                if (pb)
                    for (int64_t o = 0; o < og; o++) {
                        const float *r = dyg + o * q->ohw;
                        float acc = 0.f;
                        #pragma omp simd reduction(+:acc)
                        for (int64_t p = 0; p < P; p++)
                            acc += r[p];
                        pb[o] = (s == s0 ? 0.f : pb[o]) + acc;
                    }
                for (int64_t k0 = 0; k0 < P; k0 += WG_KB) {
                    int64_t K = MD_MIN(WG_KB, P - k0);
                    bool acc = s != s0 || k0 != 0;
                    for (int64_t ob = 0; ob < og; ob += WG_OB)
                        for (int64_t n0 = 0; n0 < ncol; n0 += WG_NB) {
                            int nb = (int)MD_MIN(WG_NB, ncol - n0);
                            for (int i = 0; i < nb; i++) {
                                int64_t col = n0 + i, kh = col / (KW * cg), kw = (col / cg) % KW, c = col % cg;
                                bp[i] = xs + (kw * cg + c) * plane + kh * OW + k0;
                            }
                            wg_block_n(pw + n0 * og + ob, og, bp, nb, dyt + k0 * og + ob, og, K, acc);
                        }
                }
            }
        }
        /* Chunks summed in order (contiguous, into the first chunk), then
         * dw[o, c, kh, kw] from part[gi][kh, kw, c, o']. */
        #pragma omp for schedule(static)
        for (int64_t j0 = 0; j0 < wn; j0 += 1024) {
            int64_t j1 = MD_MIN(wn, j0 + 1024);
            for (int64_t ch = 1; ch < nch; ch++) {
                const float *src = part + ch * wn;
                #pragma omp simd
                for (int64_t j = j0; j < j1; j++)
                    part[j] += src[j];
            }
        }
        #pragma omp for schedule(static)
        for (int64_t o = 0; o < q->o; o++) {
            const float *src = part + (o / og) * og * ncol + o % og;
            float *d = dw + o * q->rows;
            for (int64_t c = 0; c < cg; c++)
                for (int64_t kh = 0; kh < KH; kh++)
                    for (int64_t kw = 0; kw < KW; kw++) {
                        float v = src[((kh * KW + kw) * cg + c) * og];
                        float *e = d + (c * KH + kh) * KW + kw;
                        *e = (beta == 0.f ? 0.f : *e) + v;
                    }
            if (db) {
                float acc = bpart[o];
                for (int64_t ch = 1; ch < nch; ch++)
                    acc += bpart[ch * q->o + o];
                db[o] = (dbeta == 0.f ? 0.f : db[o]) + acc;
            }
        }
    }
}

static void bias_grad(float *db, const float *dy, int64_t n, int64_t o, int64_t s, float beta);

/* dw (=|+=) sum over images and positions of dy_tile @ col_tile^T, and
 * db (=|+=, dbeta) the bias gradient when db is not NULL.
 * The (image, tile) sequence is cut into a fixed number of contiguous
 * chunks; each sums into its own buffer and the buffers are added in chunk
 * order. Items: (chunk, group). Stride 1 with Og a multiple of WG_OB runs
 * conv_bwd_weight_shift instead (unless MEDLEY_CONV_REF). */
static void conv_bwd_weight(md_graph *g, const conv_geom *q, const float *x, const float *dy, float *dw,
                            float beta, float *db, float dbeta)
{
    if (!q->direct && q->sh == 1 && q->sw == 1 && q->og % WG_OB == 0 && !conv_ref()) {
        conv_bwd_weight_shift(g, q, x, dy, dw, beta, db, dbeta);
        return;
    }
    if (db)
        bias_grad(db, dy, q->n, q->o, q->ohw, dbeta);
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
    bool gb = md_wants_grad(bias);
    if (md_wants_grad(w)) {
        float bw = md_grad_beta(w);
        conv_bwd_weight(g, q, x->data, y->grad, w->grad, bw, gb ? bias->grad : NULL,
                        gb ? md_grad_beta(bias) : 0.f);
        gb = false;
    }
    if (gb)
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
        conv_bwd_weight(g, q, y->grad, x->data, w->grad, md_grad_beta(w), NULL, 0.f);
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

/* Backward of groupnorm (silu false) and of silu(groupnorm) (silu true).
 * With SiLU the normalised values y were never stored: each group's
 * dy = dz * silu'(y) is recomputed from x and the statistics into a
 * per-thread buffer [Cg*S] between the two passes. */
static void gn_backward(md_graph *g, md_node *nd, bool silu)
{
    md_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2], *z = nd->out;
    const float *mean = nd->saved[0], *rstd = nd->saved[1];
    int64_t N = x->shape[0], C = x->shape[1], G = nd->iarg[0];
    int64_t S = md_numel(x) / (N * C), Cg = C / G;
    const float *wv = w ? w->data : NULL, *bv = b ? b->data : NULL;
    bool gx = md_wants_grad(x), gw = md_wants_grad(w), gb = md_wants_grad(b);
    /* Per (n, c): sum dy and sum dy*xhat; reused by dx and by dw, db. */
    float *sdy = md_graph_scratch(g, sizeof(float) * (size_t)(N * C));
    float *sdyx = md_graph_scratch(g, sizeof(float) * (size_t)(N * C));
    float *dys = silu ? md_graph_scratch(g, sizeof(float) * (size_t)(Cg * S) * (size_t)max_threads()) : NULL;
    float beta = gx ? md_grad_beta(x) : 0.f;
    #pragma omp parallel for schedule(static)
    for (int64_t ng = 0; ng < N * G; ng++) {
        int64_t n = ng / G, c0 = (ng % G) * Cg;
        float mu = mean[ng], rs = rstd[ng];
        float *dyg = silu ? dys + (size_t)thread_id() * (size_t)(Cg * S) : NULL;
        float a = 0.f, bsum = 0.f;   /* sum w*dy, sum w*dy*xhat over the group */
        for (int64_t c = c0; c < c0 + Cg; c++) {
            const float *xr = x->data + (n * C + c) * S, *dzr = z->grad + (n * C + c) * S;
            float wc = wv ? wv[c] : 1.f;
            float s1 = 0.f, s2 = 0.f;
            if (silu) {
                float *dyr = dyg + (c - c0) * S;
                float sc = rs * wc, sh = (bv ? bv[c] : 0.f) - mu * sc;
                #pragma omp simd reduction(+:s1, s2)
                for (int64_t i = 0; i < S; i++) {
                    float y = xr[i] * sc + sh, sg = md_fast_sigmoid(y);
                    float d = dzr[i] * sg * (1.f + y * (1.f - sg));
                    dyr[i] = d;
                    s1 += d;
                    s2 += d * (xr[i] - mu);
                }
            } else {
                #pragma omp simd reduction(+:s1, s2)
                for (int64_t i = 0; i < S; i++) {
                    s1 += dzr[i];
                    s2 += dzr[i] * (xr[i] - mu);
                }
            }
            s2 *= rs;
            sdy[n * C + c] = s1;
            sdyx[n * C + c] = s2;
            a += wc * s1;
            bsum += wc * s2;
        }
        if (!gx)
            continue;
        float M = (float)(Cg * S);
        a /= M;
        bsum /= M;
        for (int64_t c = c0; c < c0 + Cg; c++) {
            const float *xr = x->data + (n * C + c) * S;
            const float *dyr = silu ? dyg + (c - c0) * S : z->grad + (n * C + c) * S;
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

static void groupnorm_backward(md_graph *g, md_node *nd) { gn_backward(g, nd, false); }
static void groupnorm_silu_backward(md_graph *g, md_node *nd) { gn_backward(g, nd, true); }

/* y = groupnorm(x) or silu(groupnorm(x)): statistics per (n, g), then one
 * pass that scales, shifts and (with SiLU) activates. */
static md_tensor *gn_forward(md_graph *g, md_tensor *x, int groups, md_tensor *w, md_tensor *b, float eps,
                             bool silu)
{
    MD_CHECK_CONTIG(x);
    MD_CHECK_F32(x);
    MD_ASSERT(x->ndim >= 2 && groups >= 1 && x->shape[1] % groups == 0);
    int64_t N = x->shape[0], C = x->shape[1], G = groups;
    int64_t S = (N * C != 0) ? md_numel(x) / (N * C) : 0, Cg = C / G;
    MD_ASSERT(!w || md_numel(w) == C);
    MD_ASSERT(!b || md_numel(b) == C);
    md_tensor *z = md_tensor_new(g, MD_F32, x->ndim, x->shape, md_any_grad(g, x, w, b));
    float *mean = md_graph_scratch(g, sizeof(float) * (size_t)(N * G));
    float *rstd = md_graph_scratch(g, sizeof(float) * (size_t)(N * G));
    const float *wv = w ? w->data : NULL, *bv = b ? b->data : NULL;
    #pragma omp parallel for schedule(static)
    for (int64_t ng = 0; ng < N * G; ng++) {
        const float *xg = x->data + ng * Cg * S;
        float *zg = z->data + ng * Cg * S;
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
            float *zr = zg + c * S;
            if (silu) {
                #pragma omp simd
                for (int64_t i = 0; i < S; i++) {
                    float y = xr[i] * sc + sh;
                    zr[i] = y * md_fast_sigmoid(y);
                }
            } else {
                #pragma omp simd
                for (int64_t i = 0; i < S; i++)
                    zr[i] = xr[i] * sc + sh;
            }
        }
    }
    md_node *nd = silu ? md_graph_record(g, groupnorm_silu_backward, z) : md_graph_record(g, groupnorm_backward, z);
    if (nd) {
        nd->in[0] = x; nd->in[1] = w; nd->in[2] = b;
        nd->saved[0] = mean; nd->saved[1] = rstd;
        nd->iarg[0] = G;
    }
    return z;
}

md_tensor *md_groupnorm(md_graph *g, md_tensor *x, int groups, md_tensor *w, md_tensor *b, float eps)
{
    return gn_forward(g, x, groups, w, b, eps, false);
}

/* ---- groupnorm + SiLU ---------------------------------------------------------
 * z = silu(groupnorm(x)) as one op: the normalised values are never stored
 * (backward recomputes them). Statistics as md_groupnorm. */
md_tensor *md_groupnorm_silu(md_graph *g, md_tensor *x, int groups, md_tensor *w, md_tensor *b, float eps)
{
    return gn_forward(g, x, groups, w, b, eps, true);
}
