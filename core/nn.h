/* nn.h — building blocks shared by Medley's models, laid out as in the
 * published architectures so that a name map loads public weights:
 *
 *   md_tblock: pre-LN transformer block
 *       x = x + proj(attn(ln1(x)))              self-attention, causal or not
 *       x = x + xproj(attn(lnx(x), cond))       optional cross-attention
 *       x = x + fc2(gelu(fc1(ln2(x))))          MLP, hidden = mlp_ratio * D
 *   md_resblock: GroupNorm residual block (as in VQGAN / latent diffusion)
 *       h = conv2(silu(gn2(conv1(silu(gn1(x))))));  x' = skip(x) + h
 *       skip is a 1×1 conv when channels change, else identity.
 *
 * Parameters are declared into a paramset (names "<prefix>.ln1.weight", ...)
 * and initialised from a seed; forward functions only build graph ops, so
 * backward comes from autograd.
 */
#ifndef MEDLEY_NN_H
#define MEDLEY_NN_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_tblock {
    int64_t d, heads, mlp, dcond;      /* dcond 0 = no cross-attention */
    md_tensor *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    md_tensor *lnx_w, *lnx_b, *xq_w, *xq_b, *xk_w, *xk_b, *xv_w, *xv_b, *xproj_w, *xproj_b;
    md_tensor *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} md_tblock;

void md_tblock_declare(md_tblock *b, md_paramset *ps, const char *prefix, int64_t d, int64_t heads,
                       int64_t mlp_ratio, int64_t dcond);
/* After md_paramset_alloc: GPT-style init (N(0, 0.02), output projections
 * scaled by 1/sqrt(2*layers)), norms 1/0, biases 0. */
void md_tblock_init(md_tblock *b, uint64_t seed, int layers);
/* x [B, T, D]; cond [B, Tc, dcond] or NULL. dropout p (0 = none). */
md_tensor *md_tblock_forward(md_graph *g, const md_tblock *b, md_tensor *x, md_tensor *cond,
                             bool causal, float dropout);

/* Inference step with a KV cache (no cross-attention, causal): x [B, Tn, D]
 * holds the next Tn positions; returns NULL if the cache is full. */
md_tensor *md_tblock_forward_cached(md_graph *g, const md_tblock *b, md_tensor *x, md_kv_cache *cache);

typedef struct md_resblock {
    int64_t cin, cout, groups;
    md_tensor *gn1_w, *gn1_b, *conv1_w, *conv1_b, *gn2_w, *gn2_b, *conv2_w, *conv2_b;
    md_tensor *skip_w, *skip_b;   /* NULL when cin == cout */
} md_resblock;

void md_resblock_declare(md_resblock *b, md_paramset *ps, const char *prefix, int64_t cin,
                         int64_t cout, int64_t groups);
/* Kaiming-uniform convs (as PyTorch's default), norms 1/0. */
void md_resblock_init(md_resblock *b, uint64_t seed);
/* x [N, cin, H, W] -> [N, cout, H, W] */
md_tensor *md_resblock_forward(md_graph *g, const md_resblock *b, md_tensor *x);

#ifdef __cplusplus
}
#endif
#endif
