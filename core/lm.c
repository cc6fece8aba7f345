/* lm.c — see lm.h. */
#include "lm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

md_status md_lm_init(md_lm *m, int64_t vocab, int64_t d, int64_t layers, int64_t heads,
                     int64_t tmax, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    if (vocab < 1 || d < 1 || layers < 1 || heads < 1 || d % heads || tmax < 1) {
        md_log(MD_LOG_ERROR, "language model: invalid shape (vocab %lld, d %lld, layers %lld, heads %lld, tmax %lld)",
               (long long)vocab, (long long)d, (long long)layers, (long long)heads, (long long)tmax);
        return MD_ERR_INVALID;
    }
    m->vocab = vocab; m->d = d; m->layers = layers; m->heads = heads; m->tmax = tmax;
    m->ps = md_paramset_new();
    m->blocks = calloc((size_t)layers, sizeof *m->blocks);
    if (!m->ps || !m->blocks) {
        md_lm_free(m);
        return MD_ERR_ALLOC;
    }
    int64_t s[2] = {vocab, d};
    m->tok_emb = md_param_add(m->ps, "tok_emb.weight", 2, s);
    s[0] = tmax;
    m->pos_emb = md_param_add(m->ps, "pos_emb.weight", 2, s);
    for (int64_t l = 0; l < layers; l++) {
        char name[32];
        snprintf(name, sizeof name, "blocks.%lld", (long long)l);
        md_tblock_declare(&m->blocks[l], m->ps, name, d, heads, 4, 0);
    }
    m->lnf_w = md_param_add(m->ps, "ln_f.weight", 1, &d);
    m->lnf_b = md_param_add(m->ps, "ln_f.bias", 1, &d);
    s[0] = vocab;
    m->head_w = md_param_add(m->ps, "head.weight", 2, s);
    md_status st = md_paramset_alloc(m->ps);
    if (st != MD_OK) {
        md_lm_free(m);
        return st;
    }
    md_init_normal(m->tok_emb, seed * 31 + 1, 0.f, 0.02f);
    md_init_normal(m->pos_emb, seed * 31 + 2, 0.f, 0.02f);
    for (int64_t l = 0; l < layers; l++)
        md_tblock_init(&m->blocks[l], seed * 31 + 100 * (uint64_t)(l + 1), (int)layers);
    md_init_const(m->lnf_w, 1.f);
    md_init_const(m->lnf_b, 0.f);
    md_init_normal(m->head_w, seed * 31 + 3, 0.f, 0.02f);
    return MD_OK;
}

void md_lm_free(md_lm *m)
{
    md_paramset_free(m->ps);
    free(m->blocks);
    memset(m, 0, sizeof *m);
}

md_tensor *md_lm_forward(md_graph *g, const md_lm *m, md_tensor *ids, float dropout)
{
    MD_ASSERT(ids->ndim == 2 && ids->shape[1] <= m->tmax);
    int64_t B = ids->shape[0], T = ids->shape[1];
    md_tensor *x = md_embedding(g, m->tok_emb, ids);           /* [B, T, d] */
    int64_t ps[2] = {T, m->d};
    md_tensor *pos = md_reshape(g, m->pos_emb, 2, (int64_t[]){m->tmax, m->d});
    if (T < m->tmax)
        pos = md_slice(g, pos, 0, 0, T);
    pos = md_reshape(g, pos, 2, ps);
    x = md_add(g, x, pos);
    for (int64_t l = 0; l < m->layers; l++)
        x = md_tblock_forward(g, &m->blocks[l], x, NULL, true, dropout);
    x = md_layernorm(g, x, m->lnf_w, m->lnf_b, 1e-5f);
    md_tensor *logits = md_linear(g, x, m->head_w, NULL);     /* [B, T, V] */
    return md_reshape(g, logits, 2, (int64_t[]){B * T, m->vocab});
}

md_tensor *md_lm_forward_cached(md_graph *g, const md_lm *m, md_tensor *ids, md_kv_cache *caches,
                                int64_t pos0)
{
    MD_ASSERT(ids->ndim == 2);
    int64_t B = ids->shape[0], T = ids->shape[1];
    if (pos0 + T > m->tmax) {
        md_log(MD_LOG_ERROR, "sequence of %lld tokens exceeds the model's context of %lld",
               (long long)(pos0 + T), (long long)m->tmax);
        return NULL;
    }
    bool was = md_graph_grad_enabled(g);
    md_graph_set_grad(g, false);
    md_tensor *x = md_embedding(g, m->tok_emb, ids);
    md_tensor *pos = md_slice(g, m->pos_emb, 0, pos0, pos0 + T);
    x = md_add(g, x, pos);
    for (int64_t l = 0; l < m->layers && x; l++)
        x = md_tblock_forward_cached(g, &m->blocks[l], x, &caches[l]);
    md_tensor *logits = NULL;
    if (x) {
        x = md_layernorm(g, x, m->lnf_w, m->lnf_b, 1e-5f);
        logits = md_reshape(g, md_linear(g, x, m->head_w, NULL), 2, (int64_t[]){B * T, m->vocab});
    }
    md_graph_set_grad(g, was);
    return logits;
}
