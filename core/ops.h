/* ops.h — differentiable operations of Medley's engine.
 *
 * Every op: takes a graph and f32 tensors (MD_I32 where it says ids), returns
 * a new tensor owned by the graph, computed at once, and records a backward
 * node when an input requires grad (see tensor.h). Shapes are checked with
 * MD_ASSERT: a mismatch is a programmer error. Unless said otherwise inputs
 * must be contiguous; md_contiguous() makes a contiguous copy of a view.
 *
 * Layouts follow PyTorch's so published weights load by a name map:
 *   linear weight [N_out, K_in]; conv2d weight [O, C/groups, KH, KW];
 *   conv_transpose2d weight [C_in, O/groups, KH, KW]; images N×C×H×W.
 *
 * Legend in comments: B batch, T time/tokens, C channels, D model width,
 * H heads (attention) or height (images), V vocabulary.
 */
#ifndef MEDLEY_OPS_H
#define MEDLEY_OPS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- matrix products --------------------------------------------------- */
/* a [.., M, K] (leading dims flattened) @ b [K, N] (or [N, K] if tb) */
md_tensor *md_matmul(md_graph *g, md_tensor *a, md_tensor *b, bool ta, bool tb);
/* Batched: a [B, M, K] (ta: [B, K, M]), b [B, K, N] (tb: [B, N, K]) -> [B, M, N] */
md_tensor *md_bmm(md_graph *g, md_tensor *a, md_tensor *b, bool ta, bool tb);
/* y = x @ w^T + bias. x [.., K], w [N, K], bias [N] or NULL -> [.., N] */
md_tensor *md_linear(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *bias);

/* ---- elementwise (numpy broadcasting of b onto a's shape) -------------- */
md_tensor *md_add(md_graph *g, md_tensor *a, md_tensor *b);
md_tensor *md_sub(md_graph *g, md_tensor *a, md_tensor *b);
md_tensor *md_mul(md_graph *g, md_tensor *a, md_tensor *b);
md_tensor *md_scale(md_graph *g, md_tensor *a, float s);
md_tensor *md_add_scalar(md_graph *g, md_tensor *a, float s);
md_tensor *md_gelu(md_graph *g, md_tensor *x);      /* exact (erf) GELU */
md_tensor *md_silu(md_graph *g, md_tensor *x);
md_tensor *md_relu(md_graph *g, md_tensor *x);
md_tensor *md_tanh(md_graph *g, md_tensor *x);
md_tensor *md_sigmoid(md_graph *g, md_tensor *x);
md_tensor *md_exp(md_graph *g, md_tensor *x);
/* log(x + eps) and sqrt(x + eps), eps >= 0 (x + eps > 0 for finite values
 * and gradients: magnitudes of spectra, say). */
md_tensor *md_log_eps(md_graph *g, md_tensor *x, float eps);
md_tensor *md_sqrt_eps(md_graph *g, md_tensor *x, float eps);
/* x [..., D] / max(||x||_2, eps) along the last dim (unit rows). */
md_tensor *md_l2_normalize(md_graph *g, md_tensor *x, float eps);
/* Inverted dropout with probability p; identity when not training. */
md_tensor *md_dropout(md_graph *g, md_tensor *x, float p);

/* ---- normalisation ------------------------------------------------------ */
/* Over the last dim. w, b [D] (either may be NULL). */
md_tensor *md_layernorm(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *b, float eps);
md_tensor *md_rmsnorm(md_graph *g, md_tensor *x, md_tensor *w, float eps);
/* x [N, C, ...spatial]; w, b [C] (may be NULL). */
md_tensor *md_groupnorm(md_graph *g, md_tensor *x, int groups, md_tensor *w, md_tensor *b, float eps);
/* Softmax over the last dim. */
md_tensor *md_softmax(md_graph *g, md_tensor *x);
md_tensor *md_log_softmax(md_graph *g, md_tensor *x);

/* ---- attention ----------------------------------------------------------
 * q [B, Tq, H*Dh], k/v [B, Tk, H*Dh] -> [B, Tq, H*Dh]; scale 1/sqrt(Dh).
 * Causal: query i sees keys j <= i + (Tk - Tq). Memory-efficient: keeps
 * only the per-row log-sum-exp, recomputes probabilities in backward. */
md_tensor *md_attention(md_graph *g, md_tensor *q, md_tensor *k, md_tensor *v, int heads, bool causal);
/* Self-attention from one packed projection qkv [B, T, 3*H*Dh] (q | k | v
 * along the last dim) -> [B, T, H*Dh]; saves three copies each way. */
md_tensor *md_attention_qkv(md_graph *g, md_tensor *qkv, int heads, bool causal);

/* Inference with a KV cache (no gradient). One cache per attention layer.
 * Keys and values are kept in half precision (IEEE f16, rounded to
 * nearest): a sampler reads the whole cache at every step, and this halves
 * the bytes it reads; attention sees them with a relative rounding of at
 * most 2^-11. */
typedef struct md_kv_cache {
    uint16_t *k, *v;     /* f16 bits. v [B, Tmax, H*Dh]; k per row in blocks of 16 positions, each
                          * [H*Dh][16] (a head's keys for 16 positions side by side) */
    int64_t batch, tmax, width;
    int64_t len;         /* positions filled */
} md_kv_cache;
md_status md_kv_cache_init(md_kv_cache *c, int64_t batch, int64_t tmax, int64_t width);
void md_kv_cache_free(md_kv_cache *c);
void md_kv_cache_clear(md_kv_cache *c);
/* Sequences [row0, row0 + rows) of c as a cache of their own (the same
 * memory; its len is the view's to keep). */
md_kv_cache md_kv_cache_rows(const md_kv_cache *c, int64_t row0, int64_t rows);
/* Positions [0, n) of sequence src_row of src into sequence dst_row of dst
 * (same width); len is the caller's to set. */
void md_kv_cache_copy_row(md_kv_cache *dst, int64_t dst_row, const md_kv_cache *src, int64_t src_row, int64_t n);
/* Appends k, v [B, Tn, W] to the cache, then attends q [B, Tn, W] causally
 * over everything cached. Returns NULL (logged) if the cache is full. */
md_tensor *md_attention_cached(md_graph *g, md_tensor *q, md_tensor *k, md_tensor *v,
                               int heads, md_kv_cache *cache);

/* ---- lookup, shapes ----------------------------------------------------- */
/* weight [V, D], ids MD_I32 [...] -> [..., D]. Out-of-range id asserts. */
md_tensor *md_embedding(md_graph *g, md_tensor *weight, md_tensor *ids);
/* A view sharing data (x must be contiguous); -1 in one place is inferred. */
md_tensor *md_reshape(md_graph *g, md_tensor *x, int ndim, const int64_t *shape);
md_tensor *md_permute(md_graph *g, md_tensor *x, const int *perm);   /* copy */
md_tensor *md_transpose(md_graph *g, md_tensor *x, int d0, int d1);  /* copy */
md_tensor *md_slice(md_graph *g, md_tensor *x, int dim, int64_t start, int64_t end); /* copy */
md_tensor *md_concat(md_graph *g, md_tensor **xs, int n, int dim);
md_tensor *md_contiguous(md_graph *g, md_tensor *x);

/* ---- reductions and losses (scalar results have ndim 1, shape [1]) ------ */
md_tensor *md_sum(md_graph *g, md_tensor *x);
md_tensor *md_mean(md_graph *g, md_tensor *x);
/* Over one dim, keeping it with size 1. */
md_tensor *md_sum_dim(md_graph *g, md_tensor *x, int dim);
md_tensor *md_mean_dim(md_graph *g, md_tensor *x, int dim);
/* logits [N, V], targets MD_I32 [N]; mean over targets != ignore_index. */
md_tensor *md_cross_entropy(md_graph *g, md_tensor *logits, md_tensor *targets,
                            float label_smoothing, int ignore_index);
md_tensor *md_mse(md_graph *g, md_tensor *a, md_tensor *b);   /* mean (a-b)^2 */
md_tensor *md_l1(md_graph *g, md_tensor *a, md_tensor *b);    /* mean |a-b| */

/* ---- convolution family (ops_conv.c) ------------------------------------ */
/* x [N, C, L], w [O, C/groups, K], bias [O] or NULL */
md_tensor *md_conv1d(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *bias,
                     int stride, int pad, int groups);
/* x [N, C, H, W], w [O, C/groups, KH, KW] */
md_tensor *md_conv2d(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *bias,
                     int stride, int pad, int groups);
/* x [N, C, H, W], w [C, O/groups, KH, KW]; out = (H-1)*stride - 2*pad + KH */
md_tensor *md_conv_transpose2d(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *bias,
                               int stride, int pad, int groups);
md_tensor *md_upsample_nearest2d(md_graph *g, md_tensor *x, int scale);
md_tensor *md_avgpool2d(md_graph *g, md_tensor *x, int kernel, int stride);
/* silu(groupnorm(x)) in one op (as md_silu(md_groupnorm(...)), without the
 * normalised tensor in between). x [N, C, ...spatial]; w, b [C] or NULL. */
md_tensor *md_groupnorm_silu(md_graph *g, md_tensor *x, int groups, md_tensor *w, md_tensor *b, float eps);

/* ---- vector quantisation (ops_vq.c) -------------------------------------
 * z [N, D] to its nearest code in codebook [K, D] (squared L2). Returns
 * z_q = z + sg(q - z) (straight-through: gradient flows to z unchanged).
 * *indices: MD_I32 [N]. *codebook_loss = mean (sg(z) - q)^2 (trains codes),
 * *commit_loss = mean (z - sg(q))^2 (scale by beta in the model). */
typedef struct md_vq_result {
    md_tensor *zq, *indices, *codebook_loss, *commit_loss;
} md_vq_result;
md_vq_result md_vq(md_graph *g, md_tensor *z, md_tensor *codebook);

#ifdef __cplusplus
}
#endif
#endif
