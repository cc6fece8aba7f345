/* nn.c — see nn.h. */
#include "nn.h"

#include <math.h>
#include <stdio.h>

static md_tensor *decl(md_paramset *ps, const char *prefix, const char *name, int nd,
                       int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    char full[256];
    snprintf(full, sizeof full, "%s.%s", prefix, name);
    int64_t s[4] = {d0, d1, d2, d3};
    return md_param_add(ps, full, nd, s);
}

void md_tblock_declare(md_tblock *b, md_paramset *ps, const char *p, int64_t d, int64_t heads,
                       int64_t mlp_ratio, int64_t dcond)
{
    *b = (md_tblock){.d = d, .heads = heads, .mlp = d * mlp_ratio, .dcond = dcond};
    b->ln1_w = decl(ps, p, "ln1.weight", 1, d, 0, 0, 0);
    b->ln1_b = decl(ps, p, "ln1.bias", 1, d, 0, 0, 0);
    b->qkv_w = decl(ps, p, "attn.qkv.weight", 2, 3 * d, d, 0, 0);
    b->qkv_b = decl(ps, p, "attn.qkv.bias", 1, 3 * d, 0, 0, 0);
    b->proj_w = decl(ps, p, "attn.proj.weight", 2, d, d, 0, 0);
    b->proj_b = decl(ps, p, "attn.proj.bias", 1, d, 0, 0, 0);
    if (dcond) {
        b->lnx_w = decl(ps, p, "lnx.weight", 1, d, 0, 0, 0);
        b->lnx_b = decl(ps, p, "lnx.bias", 1, d, 0, 0, 0);
        b->xq_w = decl(ps, p, "xattn.q.weight", 2, d, d, 0, 0);
        b->xq_b = decl(ps, p, "xattn.q.bias", 1, d, 0, 0, 0);
        b->xk_w = decl(ps, p, "xattn.k.weight", 2, d, dcond, 0, 0);
        b->xk_b = decl(ps, p, "xattn.k.bias", 1, d, 0, 0, 0);
        b->xv_w = decl(ps, p, "xattn.v.weight", 2, d, dcond, 0, 0);
        b->xv_b = decl(ps, p, "xattn.v.bias", 1, d, 0, 0, 0);
        b->xproj_w = decl(ps, p, "xattn.proj.weight", 2, d, d, 0, 0);
        b->xproj_b = decl(ps, p, "xattn.proj.bias", 1, d, 0, 0, 0);
    }
    b->ln2_w = decl(ps, p, "ln2.weight", 1, d, 0, 0, 0);
    b->ln2_b = decl(ps, p, "ln2.bias", 1, d, 0, 0, 0);
    b->fc1_w = decl(ps, p, "mlp.fc1.weight", 2, b->mlp, d, 0, 0);
    b->fc1_b = decl(ps, p, "mlp.fc1.bias", 1, b->mlp, 0, 0, 0);
    b->fc2_w = decl(ps, p, "mlp.fc2.weight", 2, d, b->mlp, 0, 0);
    b->fc2_b = decl(ps, p, "mlp.fc2.bias", 1, d, 0, 0, 0);
}

void md_tblock_init(md_tblock *b, uint64_t seed, int layers)
{
    float out_std = 0.02f / sqrtf(2.0f * (float)(layers > 0 ? layers : 1));
    md_tensor *ones[] = {b->ln1_w, b->ln2_w, b->lnx_w};
    md_tensor *zeros[] = {b->ln1_b, b->ln2_b, b->lnx_b, b->qkv_b, b->proj_b, b->fc1_b, b->fc2_b,
                          b->xq_b, b->xk_b, b->xv_b, b->xproj_b};
    for (size_t i = 0; i < sizeof ones / sizeof *ones; i++)
        if (ones[i]) md_init_const(ones[i], 1.f);
    for (size_t i = 0; i < sizeof zeros / sizeof *zeros; i++)
        if (zeros[i]) md_init_const(zeros[i], 0.f);
    md_init_normal(b->qkv_w, seed + 1, 0.f, 0.02f);
    md_init_normal(b->proj_w, seed + 2, 0.f, out_std);
    md_init_normal(b->fc1_w, seed + 3, 0.f, 0.02f);
    md_init_normal(b->fc2_w, seed + 4, 0.f, out_std);
    if (b->dcond) {
        md_init_normal(b->xq_w, seed + 5, 0.f, 0.02f);
        md_init_normal(b->xk_w, seed + 6, 0.f, 0.02f);
        md_init_normal(b->xv_w, seed + 7, 0.f, 0.02f);
        md_init_normal(b->xproj_w, seed + 8, 0.f, out_std);
    }
}

md_tensor *md_tblock_forward(md_graph *g, const md_tblock *b, md_tensor *x, md_tensor *cond,
                             bool causal, float dropout)
{
    MD_ASSERT(x->ndim == 3 && x->shape[2] == b->d);
    md_tensor *h = md_layernorm(g, x, b->ln1_w, b->ln1_b, 1e-5f);
    h = md_linear(g, h, b->qkv_w, b->qkv_b);
    h = md_attention_qkv(g, h, (int)b->heads, causal);
    h = md_linear(g, h, b->proj_w, b->proj_b);
    if (dropout > 0.f)
        h = md_dropout(g, h, dropout);
    x = md_add(g, x, h);
    if (b->dcond && cond) {
        MD_ASSERT(cond->ndim == 3 && cond->shape[2] == b->dcond && cond->shape[0] == x->shape[0]);
        md_tensor *q = md_linear(g, md_layernorm(g, x, b->lnx_w, b->lnx_b, 1e-5f), b->xq_w, b->xq_b);
        md_tensor *k = md_linear(g, cond, b->xk_w, b->xk_b);
        md_tensor *v = md_linear(g, cond, b->xv_w, b->xv_b);
        h = md_attention(g, q, k, v, (int)b->heads, false);
        h = md_linear(g, h, b->xproj_w, b->xproj_b);
        if (dropout > 0.f)
            h = md_dropout(g, h, dropout);
        x = md_add(g, x, h);
    }
    h = md_layernorm(g, x, b->ln2_w, b->ln2_b, 1e-5f);
    h = md_gelu(g, md_linear(g, h, b->fc1_w, b->fc1_b));
    h = md_linear(g, h, b->fc2_w, b->fc2_b);
    if (dropout > 0.f)
        h = md_dropout(g, h, dropout);
    return md_add(g, x, h);
}

md_tensor *md_tblock_forward_cached(md_graph *g, const md_tblock *b, md_tensor *x, md_kv_cache *cache)
{
    int64_t d = b->d;
    md_tensor *h = md_layernorm(g, x, b->ln1_w, b->ln1_b, 1e-5f);
    h = md_linear(g, h, b->qkv_w, b->qkv_b);
    md_tensor *q = md_slice(g, h, 2, 0, d), *k = md_slice(g, h, 2, d, 2 * d), *v = md_slice(g, h, 2, 2 * d, 3 * d);
    h = md_attention_cached(g, q, k, v, (int)b->heads, cache);
    if (!h)
        return NULL;
    x = md_add(g, x, md_linear(g, h, b->proj_w, b->proj_b));
    h = md_layernorm(g, x, b->ln2_w, b->ln2_b, 1e-5f);
    h = md_linear(g, md_gelu(g, md_linear(g, h, b->fc1_w, b->fc1_b)), b->fc2_w, b->fc2_b);
    return md_add(g, x, h);
}

void md_resblock_declare(md_resblock *b, md_paramset *ps, const char *p, int64_t cin,
                         int64_t cout, int64_t groups)
{
    *b = (md_resblock){.cin = cin, .cout = cout, .groups = groups};
    b->gn1_w = decl(ps, p, "norm1.weight", 1, cin, 0, 0, 0);
    b->gn1_b = decl(ps, p, "norm1.bias", 1, cin, 0, 0, 0);
    b->conv1_w = decl(ps, p, "conv1.weight", 4, cout, cin, 3, 3);
    b->conv1_b = decl(ps, p, "conv1.bias", 1, cout, 0, 0, 0);
    b->gn2_w = decl(ps, p, "norm2.weight", 1, cout, 0, 0, 0);
    b->gn2_b = decl(ps, p, "norm2.bias", 1, cout, 0, 0, 0);
    b->conv2_w = decl(ps, p, "conv2.weight", 4, cout, cout, 3, 3);
    b->conv2_b = decl(ps, p, "conv2.bias", 1, cout, 0, 0, 0);
    if (cin != cout) {
        b->skip_w = decl(ps, p, "skip.weight", 4, cout, cin, 1, 1);
        b->skip_b = decl(ps, p, "skip.bias", 1, cout, 0, 0, 0);
    }
}

/* PyTorch's default conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both. */
static void conv_init(md_tensor *w, md_tensor *bias, uint64_t seed)
{
    int64_t fan_in = md_numel(w) / w->shape[0];
    float bound = 1.0f / sqrtf((float)fan_in);
    md_init_uniform(w, seed, -bound, bound);
    if (bias)
        md_init_uniform(bias, seed + 1000003, -bound, bound);
}

void md_resblock_init(md_resblock *b, uint64_t seed)
{
    md_init_const(b->gn1_w, 1.f);
    md_init_const(b->gn1_b, 0.f);
    md_init_const(b->gn2_w, 1.f);
    md_init_const(b->gn2_b, 0.f);
    conv_init(b->conv1_w, b->conv1_b, seed + 1);
    conv_init(b->conv2_w, b->conv2_b, seed + 2);
    if (b->skip_w)
        conv_init(b->skip_w, b->skip_b, seed + 3);
}

md_tensor *md_resblock_forward(md_graph *g, const md_resblock *b, md_tensor *x)
{
    MD_ASSERT(x->ndim == 4 && x->shape[1] == b->cin);
    md_tensor *h = md_groupnorm_silu(g, x, (int)b->groups, b->gn1_w, b->gn1_b, 1e-6f);
    h = md_conv2d(g, h, b->conv1_w, b->conv1_b, 1, 1, 1);
    h = md_groupnorm_silu(g, h, (int)b->groups, b->gn2_w, b->gn2_b, 1e-6f);
    h = md_conv2d(g, h, b->conv2_w, b->conv2_b, 1, 1, 1);
    md_tensor *skip = b->skip_w ? md_conv2d(g, x, b->skip_w, b->skip_b, 1, 0, 1) : x;
    return md_add(g, skip, h);
}
