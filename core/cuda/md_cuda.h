/* md_cuda.h — the CUDA device: a context, its memory, and the engine's
 * kernels on device pointers.
 *
 * Lifecycle:
 *     md_cuda *c;
 *     if (md_cuda_open(0, 512u << 20, &c) != MD_OK) ... (logged; use the CPU)
 *     float *x = md_cuda_alloc(c, bytes);         // from the device arena
 *     md_cuda_upload(c, x, host, bytes);
 *     md_cuda_softmax_fwd(c, y, x, rows, d);      // queued on c's stream
 *     md_cuda_download(c, host, y, bytes);        // waits for the queue
 *     md_cuda_rewind(c);                          // next step reuses memory
 *     md_cuda_close(c);
 *
 * Memory: one cudaMalloc of arena_bytes at open (never managed memory),
 * handed out by a bump allocator (256-byte aligned) and rewound whole, so a
 * step allocates nothing from the driver. Device pointers below are arena
 * pointers or any other device memory of the same device.
 *
 * Work: every kernel is queued on the context's one stream, in call order,
 * and returns at once. A returned status covers the launch only (bad
 * arguments, a launch the device refused); faults inside a kernel surface
 * at the next md_cuda_sync or md_cuda_download. Every failure is logged
 * (MD_LOG_ERROR, naming the device and CUDA's reason).
 *
 * Shapes and formulas are those of the CPU ops (ops.h, optim.h), so each
 * kernel is checked against the CPU op with a tolerance (tests/test_gpu.c).
 * Outputs are overwritten, never accumulated into, unless a beta says so.
 *
 * Threads: a context is not thread-safe; use it from one thread at a time.
 * Built only with the `cuda` meson feature (MEDLEY_HAVE_CUDA).
 */
#ifndef MEDLEY_CUDA_H
#define MEDLEY_CUDA_H

#include "md.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_cuda md_cuda;

/* ---- context and memory -------------------------------------------------- */

/* Opens device `device` with a stream, a cuBLAS handle and an arena of
 * arena_bytes. No such device, a busy or exclusive device, no driver:
 * MD_ERR_UNSUPPORTED; arena too large for the device: MD_ERR_ALLOC; other
 * CUDA failures: MD_ERR. *out is NULL on failure. */
md_status md_cuda_open(int device, size_t arena_bytes, md_cuda **out);
/* Waits for queued work and frees everything; NULL is a no-op. */
void md_cuda_close(md_cuda *c);
/* "cuda:N"; owned by the context. */
const char *md_cuda_name(const md_cuda *c);
/* The cudaStream_t work is queued on (as void*, for timing with events). */
void *md_cuda_stream(const md_cuda *c);

/* bytes from the arena, 256-byte aligned; NULL (logged) when exhausted. */
void *md_cuda_alloc(md_cuda *c, size_t bytes);
/* Releases every allocation. Work already queued keeps running: memory is
 * reused only by work queued later, which the stream orders after it. */
void md_cuda_rewind(md_cuda *c);
/* Arena position, and a rewind to it (releases what came after). */
size_t md_cuda_mark(const md_cuda *c);
void md_cuda_rewind_to(md_cuda *c, size_t mark);
size_t md_cuda_capacity(const md_cuda *c);
/* Most bytes ever in use at once. */
size_t md_cuda_high_water(const md_cuda *c);

/* Host -> device; src may be reused when it returns. */
md_status md_cuda_upload(md_cuda *c, void *dst_dev, const void *src_host, size_t bytes);
/* Device -> host after all queued work; returns the first error of that
 * work, if any. */
md_status md_cuda_download(md_cuda *c, void *dst_host, const void *src_dev, size_t bytes);
/* Waits for queued work; MD_OK or the first error it raised (logged). */
md_status md_cuda_sync(md_cuda *c);
/* gemm math: false (default) strict fp32; true lets cuBLAS use TF32 tensor
 * cores (about 1e-3 relative error, several times faster). */
md_status md_cuda_set_tf32(md_cuda *c, bool on);
/* Attention forward: false (default) takes the tiled kernel where it
 * applies (Dh <= 128, at least 16 query rows); true keeps the kernel of one
 * block per query row everywhere (for comparisons: bench_gpu, test_gpu). */
void md_cuda_set_attention_rows(md_cuda *c, bool on);

/* Pinned (page-locked) host memory, for copies that a captured graph
 * repeats; NULL (logged) on failure. */
void *md_cuda_host_alloc(md_cuda *c, size_t bytes);
void md_cuda_host_free(void *p);
/* Device -> host queued on the stream, no wait (md_cuda_sync or a graph
 * run waits). */
md_status md_cuda_download_async(md_cuda *c, void *dst_host, const void *src_dev, size_t bytes);

/* Captured graphs: between md_cuda_capture_begin and _end, the work this
 * thread queues on c's stream (kernels, cuBLAS products, copies; no waits)
 * is recorded instead of run; md_cuda_graph_run replays it and waits.
 * A replay reads what the recorded copies and kernels read at that moment
 * (the same addresses), so inputs change by writing to those buffers.
 * _end with keep false discards the capture (after a failed call inside
 * it); with keep true a failure to record is returned, *out NULL. */
typedef struct md_cuda_graph md_cuda_graph;
md_status md_cuda_capture_begin(md_cuda *c);
md_status md_cuda_capture_end(md_cuda *c, bool keep, md_cuda_graph **out);
md_status md_cuda_graph_run(md_cuda *c, md_cuda_graph *g);
void md_cuda_graph_free(md_cuda_graph *g);

/* ---- matrix products (row-major, as md_backend's gemm) ------------------- */

/* C = alpha * op(A) @ op(B) + beta * C; op(A) [M,K], op(B) [K,N]; beta 0
 * ignores C's contents. Dimensions and leading dims must fit in int. */
md_status md_cuda_gemm(md_cuda *c, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb,
                       float beta, float *cm, int64_t ldc);
/* batch products, operand i at a + i*sa, b + i*sb, cm + i*sc. */
md_status md_cuda_gemm_batched(md_cuda *c, int64_t batch, bool ta, bool tb, int64_t m, int64_t n,
                               int64_t k, float alpha, const float *a, int64_t lda, int64_t sa,
                               const float *b, int64_t ldb, int64_t sb, float beta,
                               float *cm, int64_t ldc, int64_t sc);

/* ---- elementwise ----------------------------------------------------------- */

typedef enum md_cuda_unary_op {
    MD_CUDA_GELU = 0,   /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
    MD_CUDA_SILU = 1,   /* x * sigmoid(x) */
    MD_CUDA_RELU = 2,
    MD_CUDA_TANH = 3,
    MD_CUDA_SIGMOID = 4,
    MD_CUDA_EXP = 5
} md_cuda_unary_op;

/* y [n] = f(x). */
md_status md_cuda_unary_fwd(md_cuda *c, md_cuda_unary_op op, float *y, const float *x, int64_t n);
/* dx [n] = dy * f'(x). x and y are the forward's input and output (gelu,
 * silu, relu read x; tanh, sigmoid, exp read y). */
md_status md_cuda_unary_bwd(md_cuda *c, md_cuda_unary_op op, float *dx, const float *dy,
                            const float *x, const float *y, int64_t n);

typedef enum md_cuda_binary_op {
    MD_CUDA_ADD = 0,
    MD_CUDA_SUB = 1,
    MD_CUDA_MUL = 2
} md_cuda_binary_op;

/* y [n] = a op b, equal shapes (no broadcasting). */
md_status md_cuda_binary(md_cuda *c, md_cuda_binary_op op, float *y, const float *a, const float *b,
                         int64_t n);

/* y [rows, d] = x + b, b [d] added to every row (a bias). */
md_status md_cuda_add_rows(md_cuda *c, float *y, const float *x, const float *b, int64_t rows, int64_t d);
/* x [rows, d] += table[*index] (row *index of table [?, d], read on the
 * device when the kernel runs). */
md_status md_cuda_add_row_at(md_cuda *c, float *x, int64_t rows, int64_t d, const float *table,
                             const int64_t *index);
/* A one-position step's qkv [rows, 3d] split: q [rows, d] = its first d
 * columns; k and v (rows kv_stride apart) at position *pos (read on the
 * device) = the next d and the last d. */
md_status md_cuda_split_qkv_at(md_cuda *c, float *q, float *k, float *v, const float *qkv, int64_t rows, int64_t d,
                               int64_t kv_stride, const int64_t *pos);
/* out [d] = sum over rows of x [rows, d] (+ beta * out): a bias's gradient. */
md_status md_cuda_sum_rows(md_cuda *c, float *out, const float *x, int64_t rows, int64_t d, float beta);

/* y [1] = mean (a-b)^2 over n elements (l1: mean |a-b|), summed in double
 * over a fixed grid (the same bits every run). Uses 2 KB of arena,
 * returned before it ends. */
md_status md_cuda_pair_loss_fwd(md_cuda *c, float *y, const float *a, const float *b, int64_t n, bool l1);
/* da, db [n] (either may be NULL; overwritten) from the loss's gradient dy
 * (a host scalar). */
md_status md_cuda_pair_loss_bwd(md_cuda *c, float *da, float *db, const float *a, const float *b, float dy,
                                int64_t n, bool l1);

/* y [planes, h*scale, w*scale] = x [planes, h, w] repeated (nearest). */
md_status md_cuda_upsample_nearest(md_cuda *c, float *y, const float *x, int64_t planes, int64_t h, int64_t w,
                                   int scale);
/* dx [planes, h, w] = the sum of each input's scale*scale outputs' dy. */
md_status md_cuda_upsample_nearest_bwd(md_cuda *c, float *dx, const float *dy, int64_t planes, int64_t h,
                                       int64_t w, int scale);

/* dst[i0*ds0 + i1*ds1 + ...] = src[i0*ss0 + ...] (+ beta * dst) for every
 * index of shape [nd] (strides in elements): permute, slice and concat are
 * such copies, and so are their gradients (beta 1 accumulates). Up to
 * MD_CUDA_COPY_DIMS dims. */
#define MD_CUDA_COPY_DIMS 6
md_status md_cuda_copy_strided(md_cuda *c, float *dst, const int64_t *dst_strides, const float *src,
                               const int64_t *src_strides, const int64_t *shape, int nd, float beta);

/* Inverted dropout with the CPU's mask: element i is kept when Philox
 * (key, i) gives a uniform >= p, and scaled by 1/(1-p); key is the one
 * md_dropout drew (md_graph_next_stream). The backward is the same call on
 * dy. */
md_status md_cuda_dropout(md_cuda *c, float *y, const float *x, uint64_t key, float p, int64_t n);

/* ---- embedding ------------------------------------------------------------ */

/* y [n, d] = table[ids[i]] for table [vocab, d]; ids must be in range (the
 * caller checks them on the host, as md_embedding does). */
md_status md_cuda_embedding_fwd(md_cuda *c, float *y, const float *table, const int32_t *ids, int64_t n,
                                int64_t d);
/* dtable [vocab, d] (overwritten) = sum of the rows of dy [n, d] per id. */
md_status md_cuda_embedding_bwd(md_cuda *c, float *dtable, const float *dy, const int32_t *ids, int64_t n,
                                int64_t vocab, int64_t d);

/* ---- normalisation and softmax (rows of d) ----------------------------- */

/* x, y [rows, d]; w, b [d] or NULL; mean, rstd [rows] or NULL. */
md_status md_cuda_layernorm_fwd(md_cuda *c, float *y, float *mean, float *rstd, const float *x,
                                const float *w, const float *b, int64_t rows, int64_t d, float eps);
/* From dy [rows, d] and the forward's x, w (or NULL), mean, rstd:
 * dx [rows, d], dw [d], db [d]; any output may be NULL. */
md_status md_cuda_layernorm_bwd(md_cuda *c, float *dx, float *dw, float *db, const float *dy,
                                const float *x, const float *w, const float *mean,
                                const float *rstd, int64_t rows, int64_t d);
/* RMSNorm: y = x * rstd * w (w [d] or NULL), rstd [rows] (or NULL) =
 * 1/sqrt(mean(x^2) + eps). */
md_status md_cuda_rmsnorm_fwd(md_cuda *c, float *y, float *rstd, const float *x, const float *w, int64_t rows,
                              int64_t d, float eps);
/* dx [rows, d], dw [d] (either may be NULL) from dy and the forward's x,
 * w, rstd. */
md_status md_cuda_rmsnorm_bwd(md_cuda *c, float *dx, float *dw, const float *dy, const float *x, const float *w,
                              const float *rstd, int64_t rows, int64_t d);
/* Unit rows: y = x / n, nrm [rows] = n = max(||x||, eps) (the norm summed
 * in double, as the CPU does). */
md_status md_cuda_l2norm_fwd(md_cuda *c, float *y, float *nrm, const float *x, int64_t rows, int64_t d, float eps);
/* dx = (dy - y (y . dy)) / n where ||x|| > eps, else dy / eps. */
md_status md_cuda_l2norm_bwd(md_cuda *c, float *dx, const float *dy, const float *y, const float *nrm, int64_t rows,
                             int64_t d, float eps);
/* y [rows, d] = log-softmax of each row; backward dx = dy - exp(y) sum(dy). */
md_status md_cuda_log_softmax_fwd(md_cuda *c, float *y, const float *x, int64_t rows, int64_t d);
md_status md_cuda_log_softmax_bwd(md_cuda *c, float *dx, const float *y, const float *dy, int64_t rows, int64_t d);
/* y [rows, d] = softmax over each row. */
md_status md_cuda_softmax_fwd(md_cuda *c, float *y, const float *x, int64_t rows, int64_t d);
/* dx = y * (dy - sum(dy * y)) per row. */
md_status md_cuda_softmax_bwd(md_cuda *c, float *dx, const float *y, const float *dy, int64_t rows,
                              int64_t d);
/* x, y [n, ch, s] (s = product of the spatial dims); w, b [ch] or NULL;
 * mean, rstd [n, groups] (or NULL); ch % groups == 0. */
md_status md_cuda_groupnorm_fwd(md_cuda *c, float *y, float *mean, float *rstd, const float *x,
                                const float *w, const float *b, int64_t n, int64_t ch, int64_t s,
                                int groups, float eps);
/* dx [n, ch, s], dw, db [ch] (any may be NULL) from dy and the forward's
 * x, w, mean, rstd. Uses 2*n*ch floats of arena, returned before it ends. */
md_status md_cuda_groupnorm_bwd(md_cuda *c, float *dx, float *dw, float *db, const float *dy,
                                const float *x, const float *w, const float *mean,
                                const float *rstd, int64_t n, int64_t ch, int64_t s, int groups);

/* ---- convolution (im2col + gemm; groups 1) ------------------------------- */

typedef struct md_cuda_conv2d {
    int64_t n, c, h, w;      /* x [n, c, h, w] */
    int64_t o, kh, kw;       /* weight [o, c, kh, kw], bias [o] */
    int stride, pad;         /* >= 1, >= 0; the same on both axes */
} md_cuda_conv2d;

/* Output height and width ((h + 2 pad - kh) / stride + 1); 0 when the
 * kernel does not fit. */
int64_t md_cuda_conv2d_oh(const md_cuda_conv2d *q);
int64_t md_cuda_conv2d_ow(const md_cuda_conv2d *q);
/* Scratch both directions need: one image's columns, c*kh*kw*oh*ow floats. */
size_t md_cuda_conv2d_scratch_bytes(const md_cuda_conv2d *q);
/* y [n, o, oh, ow] = conv(x, w) + bias (bias may be NULL). */
md_status md_cuda_conv2d_fwd(md_cuda *c, const md_cuda_conv2d *q, float *y, const float *x,
                             const float *w, const float *bias, float *scratch);
/* dx [n, c, h, w], dw [o, c, kh, kw], db [o] from dy [n, o, oh, ow]; any
 * output may be NULL. */
md_status md_cuda_conv2d_bwd(md_cuda *c, const md_cuda_conv2d *q, float *dx, float *dw, float *db,
                             const float *dy, const float *x, const float *w, float *scratch);

/* Average pooling of [planes, h, w] by kernel x kernel windows at stride
 * (no padding; h, w >= kernel): y [planes, oh, ow], oh = (h - kernel) /
 * stride + 1. The backward spreads dy / kernel^2 over each window. */
md_status md_cuda_avgpool_fwd(md_cuda *c, float *y, const float *x, int64_t planes, int64_t h, int64_t w, int kernel,
                              int stride);
md_status md_cuda_avgpool_bwd(md_cuda *c, float *dx, const float *dy, int64_t planes, int64_t h, int64_t w,
                              int kernel, int stride);

/* ---- attention ------------------------------------------------------------- */

/* q [B, Tq, H*Dh], k, v [B, Tk, H*Dh] -> out [B, Tq, H*Dh], scale
 * 1/sqrt(Dh); causal: query i sees keys j <= i + (Tk - Tq); a query that
 * sees no key gives zeros. lse [B, H, Tq] (or NULL): each row's
 * log-sum-exp of scaled scores (+inf for a row with no key). Dh <= 512. */
md_status md_cuda_attention_fwd(md_cuda *c, float *out, float *lse, const float *q, const float *k,
                                const float *v, int64_t b, int64_t tq, int64_t tk, int heads,
                                int64_t dh, bool causal);

/* The same with keys and values kv_stride floats apart from one batch row
 * to the next (>= Tk*H*Dh): a KV cache of Tmax positions holds Tk of them.
 * Causal offsets as above (a step's queries are the last Tq positions). */
md_status md_cuda_attention_fwd_kv(md_cuda *c, float *out, float *lse, const float *q, const float *k,
                                   const float *v, int64_t b, int64_t tq, int64_t tk, int64_t kv_stride, int heads,
                                   int64_t dh, bool causal);

/* md_cuda_attention_fwd_kv for one query per row (Tq 1, causal: it sees
 * every cached key) where the key count is tk0 + *tk_add, read on the
 * device when the kernel runs (a captured step reads its position there). */
md_status md_cuda_attention_fwd_kv_at(md_cuda *c, float *out, const float *q, const float *k, const float *v,
                                      int64_t b, int64_t tk0, const int64_t *tk_add, int64_t kv_stride, int heads,
                                      int64_t dh);

/* Gradients of md_cuda_attention_fwd: dq [B, Tq, H*Dh], dk, dv [B, Tk,
 * H*Dh] (overwritten) from dout and the forward's q, k, v, out and lse
 * (probabilities are recomputed from it). Uses B*H*Tq floats of arena,
 * returned before it ends. Dh <= 512. */
md_status md_cuda_attention_bwd(md_cuda *c, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                const float *k, const float *v, const float *out, const float *lse, int64_t b,
                                int64_t tq, int64_t tk, int heads, int64_t dh, bool causal);

/* ---- vector quantisation ------------------------------------------------- */

/* idx [n] = argmin_k ||z_i - codebook_k||^2 for z [n, d], codebook [k, d];
 * ties go to the lower index. */
md_status md_cuda_vq_nearest(md_cuda *c, int32_t *idx, const float *z, const float *codebook,
                             int64_t n, int64_t d, int64_t k);

/* ---- optimiser ------------------------------------------------------------- */

/* One AdamW update as md_adamw_step (optim.h), on one span of parameters
 * that share the decay flag. step counts this update (>= 1). The scalars
 * are formed in double on the host and the element arithmetic rounds as
 * the CPU's does (no fused multiply-add), so results match bit for bit. */
typedef struct md_cuda_adamw {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;
    bool decay;
} md_cuda_adamw;

md_status md_cuda_adamw_step(md_cuda *c, const md_cuda_adamw *h, float *p, const float *g, float *m,
                             float *v, int64_t n);
/* shadow = decay * shadow + (1 - decay) * p (md_ema_update), rounded as the
 * CPU rounds. */
md_status md_cuda_ema_update(md_cuda *c, float *shadow, const float *p, float decay, int64_t n);
/* md_clip_grad_norm on one span: the norm (squares summed in double over a
 * fixed grid) goes to the host (this waits for queued work), then g is
 * scaled by max_norm / (norm + 1e-6) when that is below 1. A norm that is
 * not finite leaves g as it is (a warning). *norm_out (or NULL) gets the
 * norm. */
md_status md_cuda_clip_grad_norm(md_cuda *c, float *g, int64_t n, float max_norm, float *norm_out);

/* ---- cross-entropy ---------------------------------------------------------- */

/* logits [n, v], targets [n] (int32): loss[0] = mean over rows whose
 * target != ignore_index of -(1-ls) log p[t] - ls * mean_j log p[j]
 * (0 when no row counts); count[0] = rows counted; lse [n] = each row's
 * log-sum-exp (what backward needs). A target outside [0, v) that is not
 * ignore_index gives NaN. Uses n doubles of arena, returned before it
 * ends. */
md_status md_cuda_cross_entropy_fwd(md_cuda *c, float *loss, int32_t *count, float *lse,
                                    const float *logits, const int32_t *targets, int64_t n,
                                    int64_t v, float label_smoothing, int ignore_index);
/* dlogits [n, v] = (softmax - (1-ls) onehot - ls/v) * dloss / count on
 * counted rows, 0 on ignored ones. */
md_status md_cuda_cross_entropy_bwd(md_cuda *c, float *dlogits, const float *logits, const float *lse,
                                    const int32_t *targets, const int32_t *count, int64_t n, int64_t v,
                                    float label_smoothing, int ignore_index, float dloss);

/* ---- the engine's backend ---------------------------------------------------
 * A backend for device `device` whose gemm and gemm_batched take host
 * pointers and stage them through a device arena (upload, cuBLAS,
 * download); its other slots are NULL (CPU). Products under 2^21
 * multiply-adds, and any that fail on the device, run on the CPU kernel.
 * Opened once and kept for the process; one device per process (a second
 * device is refused). NULL (logged) when the device cannot be opened.
 * Thread-safe: products from several threads run one at a time. The arena
 * is MEDLEY_CUDA_ARENA_MB (default 1024) MiB. */
struct md_backend;
const struct md_backend *md_cuda_backend(int device);

#ifdef __cplusplus
}
#endif
#endif
