/* lm.h — a decoder-only transformer language model (GPT layout): token and
 * position embeddings, pre-LN blocks, final LayerNorm, untied head.
 * The engine's demo and end-to-end tests train it; the token transformer
 * of later work builds on the same blocks.
 */
#ifndef MEDLEY_LM_H
#define MEDLEY_LM_H

#include "nn.h"

typedef struct md_lm {
    int64_t vocab, d, layers, heads, tmax;
    md_paramset *ps;
    md_tensor *tok_emb;    /* [vocab, d] */
    md_tensor *pos_emb;    /* [tmax, d] */
    md_tblock *blocks;     /* layers */
    md_tensor *lnf_w, *lnf_b, *head_w;   /* head [vocab, d] */
} md_lm;

md_status md_lm_init(md_lm *m, int64_t vocab, int64_t d, int64_t layers, int64_t heads,
                     int64_t tmax, uint64_t seed);
void md_lm_free(md_lm *m);
/* ids MD_I32 [B, T] (T <= tmax) -> logits [B*T, vocab] */
md_tensor *md_lm_forward(md_graph *g, const md_lm *m, md_tensor *ids, float dropout);

/* Incremental decoding: ids [B, Tn] are positions pos0.. of the sequence;
 * caches[layers] hold earlier positions (md_kv_cache_init with width d).
 * Returns logits [B*Tn, vocab] with the graph's grad off, NULL when full. */
md_tensor *md_lm_forward_cached(md_graph *g, const md_lm *m, md_tensor *ids, md_kv_cache *caches,
                                int64_t pos0);

#endif
