/* unet.c — see unet.h. */
#include "unet.h"
#include "caption.h"
#include "json.h"
#include "ops.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUPS 8
#define HEAD_DIM 32

/* ---- parameters ---- */

static md_tensor *p_add(md_paramset *ps, const char *prefix, const char *what, int ndim, const int64_t *shape)
{
    char n[96];
    snprintf(n, sizeof n, "%s.%s", prefix, what);
    return md_param_add(ps, n, ndim, shape);
}

static void conv_decl(md_paramset *ps, const char *name, int64_t cout, int64_t cin, int k, md_tensor **w,
                      md_tensor **b)
{
    *w = p_add(ps, name, "weight", 4, (int64_t[]){cout, cin, k, k});
    *b = p_add(ps, name, "bias", 1, (int64_t[]){cout});
}

static void lin_decl(md_paramset *ps, const char *name, int64_t out, int64_t in, md_tensor **w, md_tensor **b)
{
    *w = p_add(ps, name, "weight", 2, (int64_t[]){out, in});
    if (b)
        *b = p_add(ps, name, "bias", 1, (int64_t[]){out});
}

static void norm_decl(md_paramset *ps, const char *name, int64_t c, md_tensor **w, md_tensor **b)
{
    *w = p_add(ps, name, "weight", 1, (int64_t[]){c});
    *b = p_add(ps, name, "bias", 1, (int64_t[]){c});
}

static void res_decl(md_paramset *ps, const char *prefix, int64_t cin, int64_t cout, int64_t e, md_unet_res *r)
{
    char n[64];
    snprintf(n, sizeof n, "%s.gn1", prefix);
    norm_decl(ps, n, cin, &r->gn1_w, &r->gn1_b);
    snprintf(n, sizeof n, "%s.conv1", prefix);
    conv_decl(ps, n, cout, cin, 3, &r->conv1_w, &r->conv1_b);
    snprintf(n, sizeof n, "%s.emb", prefix);
    lin_decl(ps, n, cout, e, &r->emb_w, &r->emb_b);
    snprintf(n, sizeof n, "%s.gn2", prefix);
    norm_decl(ps, n, cout, &r->gn2_w, &r->gn2_b);
    snprintf(n, sizeof n, "%s.conv2", prefix);
    conv_decl(ps, n, cout, cout, 3, &r->conv2_w, &r->conv2_b);
    r->skip_w = r->skip_b = NULL;
    if (cin != cout) {
        snprintf(n, sizeof n, "%s.skip", prefix);
        conv_decl(ps, n, cout, cin, 1, &r->skip_w, &r->skip_b);
    }
}

static void uni_init(md_tensor *w, md_tensor *b, uint64_t seed, int64_t fan_in, float gain)
{
    float bound = gain * sqrtf(3.f / (float)fan_in);
    md_init_uniform(w, seed, -bound, bound);
    if (b)
        md_init_const(b, 0.f);
}

static void conv_init(md_tensor *w, md_tensor *b, uint64_t seed, float gain)
{
    uni_init(w, b, seed, w->shape[1] * w->shape[2] * w->shape[3], gain);
}

static void res_init(md_unet_res *r, uint64_t seed)
{
    md_init_const(r->gn1_w, 1.f);
    md_init_const(r->gn1_b, 0.f);
    md_init_const(r->gn2_w, 1.f);
    md_init_const(r->gn2_b, 0.f);
    conv_init(r->conv1_w, r->conv1_b, seed + 1, 1.f);
    uni_init(r->emb_w, r->emb_b, seed + 2, r->emb_w->shape[1], 1.f);
    conv_init(r->conv2_w, r->conv2_b, seed + 3, 0.1f);   /* starts near the identity */
    if (r->skip_w)
        conv_init(r->skip_w, r->skip_b, seed + 4, 1.f);
}

static md_status check_config(const md_unet_config *c)
{
    const char *bad = NULL;
    if (c->cin < 1 || c->cin > 64)
        bad = "cin (1..64)";
    else if (c->h < 4 || c->h > 256 || c->h % 4)
        bad = "h (4..256, a multiple of 4)";
    else if (c->w < 4 || c->w > 256 || c->w % 4)
        bad = "w (4..256, a multiple of 4)";
    else if (c->ch < 8 || c->ch > 256 || c->ch % 8)
        bad = "ch (8..256, a multiple of 8)";
    else if (c->cond_tokens < 1 || c->cond_tokens > 16)
        bad = "cond_tokens (1..16)";
    else if (!isfinite(c->shift) || !(c->scale > 0.f) || !isfinite(c->scale))
        bad = "shift and scale (finite, scale > 0)";
    else if (c->frames < 0 || c->frames > 32)
        bad = "frames (0..32)";
    else if (!(c->noise_share >= 0.f && c->noise_share <= 0.95f))
        bad = "noise_share (0..0.95)";
    if (bad) {
        md_log(MD_LOG_ERROR, "diffusion model: bad configuration: %s", bad);
        return MD_ERR_INVALID;
    }
    return MD_OK;
}

md_status md_unet_init(md_unet *u, const md_unet_config *cfg, uint64_t seed)
{
    memset(u, 0, sizeof *u);
    md_status st = check_config(cfg);
    if (st != MD_OK)
        return st;
    u->cfg = *cfg;
    const int64_t c0 = cfg->ch, c1 = 2 * c0, c2 = 4 * c0, e = 4 * c0, D = MD_SPACE_DIM;
    md_paramset *ps = u->ps = md_paramset_new();
    if (!ps)
        return MD_ERR_ALLOC;
    lin_decl(ps, "time.fc1", e, c0, &u->t1_w, &u->t1_b);
    lin_decl(ps, "time.fc2", e, e, &u->t2_w, &u->t2_b);
    lin_decl(ps, "cond.emb", e, D, &u->c_w, &u->c_b);
    lin_decl(ps, "cond.tokens", cfg->cond_tokens * c2, D, &u->tok_w, &u->tok_b);
    conv_decl(ps, "in", c0, cfg->cin, 3, &u->in_w, &u->in_b);
    res_decl(ps, "l0.res", c0, c0, e, &u->r0);
    conv_decl(ps, "l0.down", c0, c0, 3, &u->down_w[0], &u->down_b[0]);
    res_decl(ps, "l1.res", c0, c1, e, &u->r1);
    conv_decl(ps, "l1.down", c1, c1, 3, &u->down_w[1], &u->down_b[1]);
    res_decl(ps, "mid.res0", c1, c2, e, &u->r2);
    norm_decl(ps, "mid.attn.norm", c2, &u->sa_gn_w, &u->sa_gn_b);
    conv_decl(ps, "mid.attn.qkv", 3 * c2, c2, 1, &u->sa_qkv_w, &u->sa_qkv_b);
    conv_decl(ps, "mid.attn.proj", c2, c2, 1, &u->sa_proj_w, &u->sa_proj_b);
    norm_decl(ps, "mid.xattn.norm", c2, &u->xa_ln_w, &u->xa_ln_b);
    lin_decl(ps, "mid.xattn.q", c2, c2, &u->xa_q_w, NULL);
    lin_decl(ps, "mid.xattn.kv", 2 * c2, c2, &u->xa_kv_w, NULL);
    lin_decl(ps, "mid.xattn.proj", c2, c2, &u->xa_proj_w, &u->xa_proj_b);
    res_decl(ps, "mid.res1", c2, c2, e, &u->r3);
    conv_decl(ps, "up1.conv", c1, c2, 3, &u->up_w[1], &u->up_b[1]);
    res_decl(ps, "up1.res", 2 * c1, c1, e, &u->r4);
    conv_decl(ps, "up0.conv", c0, c1, 3, &u->up_w[0], &u->up_b[0]);
    res_decl(ps, "up0.res", 2 * c0, c0, e, &u->r5);
    norm_decl(ps, "out.norm", c0, &u->out_gn_w, &u->out_gn_b);
    conv_decl(ps, "out", cfg->cin, c0, 3, &u->out_w, &u->out_b);
    const int64_t tw[MD_UNET_TEMPORAL] = {c1, c2, c1};
    const int F = md_unet_frames(cfg);
    for (int k = 0; k < MD_UNET_TEMPORAL && F > 1; k++) {
        char n[32];
        md_unet_temporal *ta = &u->ta[k];
        snprintf(n, sizeof n, "temporal%d.norm", k);
        norm_decl(ps, n, tw[k], &ta->ln_w, &ta->ln_b);
        snprintf(n, sizeof n, "temporal%d", k);
        ta->pos = p_add(ps, n, "frame", 2, (int64_t[]){F, tw[k]});
        snprintf(n, sizeof n, "temporal%d.qkv", k);
        lin_decl(ps, n, 3 * tw[k], tw[k], &ta->qkv_w, &ta->qkv_b);
        snprintf(n, sizeof n, "temporal%d.proj", k);
        lin_decl(ps, n, tw[k], tw[k], &ta->proj_w, &ta->proj_b);
    }
    if ((st = md_paramset_alloc(ps)) != MD_OK) {
        md_unet_free(u);
        return st;
    }
    for (int k = 0; k < MD_UNET_TEMPORAL && F > 1; k++) {
        md_unet_temporal *ta = &u->ta[k];
        md_init_const(ta->ln_w, 1.f);
        md_init_const(ta->ln_b, 0.f);
        md_init_uniform(ta->pos, seed + 70 + (uint64_t)k, -0.1f, 0.1f);
        uni_init(ta->qkv_w, ta->qkv_b, seed + 80 + (uint64_t)k, tw[k], 1.f);
        md_init_const(ta->proj_w, 0.f);   /* a picture model at the start */
        md_init_const(ta->proj_b, 0.f);
    }
    uni_init(u->t1_w, u->t1_b, seed + 1, c0, 1.f);
    uni_init(u->t2_w, u->t2_b, seed + 2, e, 1.f);
    uni_init(u->c_w, u->c_b, seed + 3, D, 1.f);
    uni_init(u->tok_w, u->tok_b, seed + 4, D, 1.f);
    conv_init(u->in_w, u->in_b, seed + 5, 1.f);
    res_init(&u->r0, seed + 10);
    conv_init(u->down_w[0], u->down_b[0], seed + 6, 1.f);
    res_init(&u->r1, seed + 20);
    conv_init(u->down_w[1], u->down_b[1], seed + 7, 1.f);
    res_init(&u->r2, seed + 30);
    md_init_const(u->sa_gn_w, 1.f);
    md_init_const(u->sa_gn_b, 0.f);
    conv_init(u->sa_qkv_w, u->sa_qkv_b, seed + 8, 1.f);
    conv_init(u->sa_proj_w, u->sa_proj_b, seed + 9, 0.1f);
    md_init_const(u->xa_ln_w, 1.f);
    md_init_const(u->xa_ln_b, 0.f);
    uni_init(u->xa_q_w, NULL, seed + 11, c2, 1.f);
    uni_init(u->xa_kv_w, NULL, seed + 12, c2, 1.f);
    uni_init(u->xa_proj_w, u->xa_proj_b, seed + 13, c2, 0.1f);
    res_init(&u->r3, seed + 40);
    conv_init(u->up_w[1], u->up_b[1], seed + 14, 1.f);
    res_init(&u->r4, seed + 50);
    conv_init(u->up_w[0], u->up_b[0], seed + 15, 1.f);
    res_init(&u->r5, seed + 60);
    md_init_const(u->out_gn_w, 1.f);
    md_init_const(u->out_gn_b, 0.f);
    conv_init(u->out_w, u->out_b, seed + 16, 0.1f);
    return MD_OK;
}

void md_unet_free(md_unet *u)
{
    if (!u)
        return;
    md_paramset_free(u->ps);
    memset(u, 0, sizeof *u);
}

int md_unet_frames(const md_unet_config *c)
{
    return c->frames > 1 ? c->frames : 1;
}

int64_t md_unet_size(const md_unet *u)
{
    return (int64_t)md_unet_frames(&u->cfg) * u->cfg.cin * u->cfg.h * u->cfg.w;
}

int64_t md_unet_copy_shared(md_unet *dst, const md_unet *src)
{
    int64_t copied = 0;
    for (int i = 0; i < md_paramset_count(dst->ps); i++) {
        md_tensor *d = md_paramset_get(dst->ps, i);
        const md_tensor *s = md_paramset_find(src->ps, d->name);
        if (!s || s->ndim != d->ndim || md_numel(s) != md_numel(d))
            continue;
        bool same = true;
        for (int k = 0; k < d->ndim; k++)
            same = same && s->shape[k] == d->shape[k];
        if (!same)
            continue;
        memcpy(d->data, s->data, sizeof(float) * (size_t)md_numel(d));
        copied += md_numel(d);
    }
    return copied;
}

static void config_json(const md_unet_config *c, char *buf, size_t n)
{
    snprintf(buf, n, "{\"cin\":%d,\"h\":%d,\"w\":%d,\"ch\":%d,\"cond_tokens\":%d,\"shift\":%.9g,\"scale\":%.9g,"
             "\"frames\":%d,\"noise_share\":%.9g}",
             c->cin, c->h, c->w, c->ch, c->cond_tokens, (double)c->shift, (double)c->scale, md_unet_frames(c),
             (double)c->noise_share);
}

md_status md_unet_save(const md_unet *u, const char *path, const char *model, const char *recipe_json,
                       const char *data_hash)
{
    char ver[16], wver[16], cfg[256];
    snprintf(ver, sizeof ver, "%d", MD_UNET_VERSION);
    snprintf(wver, sizeof wver, "%d", MD_WORLD_VERSION);
    config_json(&u->cfg, cfg, sizeof cfg);
    const char *keys[] = {"medley.model", "medley.version", "unet.config", "world.version", "data.hash",
                          "train.recipe"};
    const char *vals[] = {model, ver, cfg, wver, data_hash ? data_hash : "", recipe_json ? recipe_json : "{}"};
    return md_st_save_paramset(path, u->ps, MD_F16, 6, keys, vals);
}

static bool cfg_int(const md_json *o, const char *k, int *out)
{
    int64_t v;
    if (!md_json_int(md_json_get(o, k), &v) || v < -1000000 || v > 1000000)
        return false;
    *out = (int)v;
    return true;
}

static bool cfg_float(const md_json *o, const char *k, float *out)
{
    double v;
    if (!md_json_num(md_json_get(o, k), &v))
        return false;
    *out = (float)v;
    return true;
}

md_status md_unet_load(md_unet *u, const char *path, const char *model, const char *noun, const char *retrain)
{
    memset(u, 0, sizeof *u);
    md_st_file *f;
    md_status st = md_st_open(path, &f);
    if (st != MD_OK)
        return st;
    st = md_st_check_model(f, path, model, noun, MD_UNET_VERSION, retrain);
    md_unet_config c = {0};
    if (st == MD_OK) {
        const char *js = md_st_meta(f, "unet.config");
        md_json_doc *doc = NULL;
        if (!js || md_json_parse(js, strlen(js), path, &doc) != MD_OK) {
            md_log(MD_LOG_ERROR, "%s: the %s has no readable unet.config", path, noun);
            st = MD_ERR_FORMAT;
        } else {
            const md_json *o = md_json_root(doc);
            if (!cfg_int(o, "cin", &c.cin) || !cfg_int(o, "h", &c.h) || !cfg_int(o, "w", &c.w) ||
                !cfg_int(o, "ch", &c.ch) || !cfg_int(o, "cond_tokens", &c.cond_tokens) ||
                !cfg_float(o, "shift", &c.shift) || !cfg_float(o, "scale", &c.scale)) {
                md_log(MD_LOG_ERROR, "%s: the %s's unet.config lacks a field or has a bad one", path, noun);
                st = MD_ERR_FORMAT;
            } else if ((md_json_get(o, "frames") && !cfg_int(o, "frames", &c.frames)) ||   /* absent: pictures */
                       (md_json_get(o, "noise_share") && !cfg_float(o, "noise_share", &c.noise_share))) {
                md_log(MD_LOG_ERROR, "%s: the %s's unet.config has a bad frames or noise_share", path, noun);
                st = MD_ERR_FORMAT;
            }
        }
        md_json_free(doc);
    }
    md_st_close(f);
    if (st != MD_OK)
        return st;
    if ((st = md_unet_init(u, &c, 0)) != MD_OK) {
        md_log(MD_LOG_ERROR, "%s: %s", path, md_last_error());
        return MD_ERR_FORMAT;
    }
    if ((st = md_st_load_paramset(path, u->ps)) != MD_OK)
        md_unet_free(u);
    return st;
}

/* ---- graph ---- */

static md_tensor *res_forward(md_graph *g, const md_unet_res *r, md_tensor *x, md_tensor *se)
{
    const int64_t n = x->shape[0], cout = r->conv1_w->shape[0];
    md_tensor *h = md_groupnorm_silu(g, x, GROUPS, r->gn1_w, r->gn1_b, 1e-6f);
    h = md_conv2d(g, h, r->conv1_w, r->conv1_b, 1, 1, 1);
    md_tensor *e = md_reshape(g, md_linear(g, se, r->emb_w, r->emb_b), 4, (int64_t[]){n, cout, 1, 1});
    h = md_add(g, h, e);
    h = md_groupnorm_silu(g, h, GROUPS, r->gn2_w, r->gn2_b, 1e-6f);
    h = md_conv2d(g, h, r->conv2_w, r->conv2_b, 1, 1, 1);
    md_tensor *skip = r->skip_w ? md_conv2d(g, x, r->skip_w, r->skip_b, 1, 0, 1) : x;
    return md_add(g, skip, h);
}

/* [n, c, h, w] <-> [n, h*w, c] */
static md_tensor *to_seq(md_graph *g, md_tensor *x)
{
    const int64_t n = x->shape[0], c = x->shape[1], p = x->shape[2] * x->shape[3];
    return md_transpose(g, md_reshape(g, x, 3, (int64_t[]){n, c, p}), 1, 2);
}

static md_tensor *from_seq(md_graph *g, md_tensor *s, const md_tensor *like)
{
    return md_reshape(g, md_transpose(g, s, 1, 2), 4, like->shape);
}

/* Self-attention across the F frames of each video at every position:
 * h [N·F, C, H, W] -> the same shape, h plus the attention's output. */
static md_tensor *temporal_forward(md_graph *g, const md_unet_temporal *ta, md_tensor *h, int F)
{
    const int64_t nf = h->shape[0], C = h->shape[1], P = h->shape[2] * h->shape[3], N = nf / F;
    md_tensor *s = md_permute(g, md_reshape(g, h, 4, (int64_t[]){N, F, C, P}), (int[]){0, 3, 1, 2});
    s = md_reshape(g, s, 3, (int64_t[]){N * P, F, C});
    md_tensor *a = md_add(g, md_layernorm(g, s, ta->ln_w, ta->ln_b, 1e-5f), ta->pos);
    a = md_attention_qkv(g, md_linear(g, a, ta->qkv_w, ta->qkv_b), C >= HEAD_DIM ? (int)(C / HEAD_DIM) : 1, false);
    a = md_linear(g, a, ta->proj_w, ta->proj_b);
    a = md_permute(g, md_reshape(g, a, 4, (int64_t[]){N, P, F, C}), (int[]){0, 2, 3, 1});
    return md_add(g, h, md_reshape(g, a, 4, h->shape));
}

md_tensor *md_unet_forward(md_graph *g, const md_unet *u, md_tensor *x, const float *t, md_tensor *cond)
{
    const int F = md_unet_frames(&u->cfg);
    MD_ASSERT(x->shape[0] % F == 0);
    const md_unet_config *c = &u->cfg;
    const int64_t n = x->shape[0], c0 = c->ch, c2 = 4 * c0, T = c->cond_tokens;
    MD_ASSERT(x->ndim == 4 && x->shape[1] == c->cin && x->shape[2] == c->h && x->shape[3] == c->w);
    MD_ASSERT(cond->ndim == 2 && cond->shape[0] == n && cond->shape[1] == MD_SPACE_DIM);
    /* sinusoidal time features, made on the host */
    md_tensor *tf = md_tensor_new(g, MD_F32, 2, (int64_t[]){n, c0}, false);
    const int half = (int)c0 / 2;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < half; k++) {
            double fr = exp(-log(10000.0) * k / half), a = 1000.0 * t[i] * fr;
            tf->data[i * c0 + k] = (float)sin(a);
            tf->data[i * c0 + half + k] = (float)cos(a);
        }
    md_tensor *e = md_linear(g, md_silu(g, md_linear(g, tf, u->t1_w, u->t1_b)), u->t2_w, u->t2_b);
    e = md_add(g, e, md_linear(g, cond, u->c_w, u->c_b));
    md_tensor *se = md_silu(g, e);

    md_tensor *h = md_conv2d(g, x, u->in_w, u->in_b, 1, 1, 1);
    md_tensor *s0 = res_forward(g, &u->r0, h, se);
    h = md_conv2d(g, s0, u->down_w[0], u->down_b[0], 2, 1, 1);
    md_tensor *s1 = res_forward(g, &u->r1, h, se);
    if (F > 1)
        s1 = temporal_forward(g, &u->ta[0], s1, F);
    h = md_conv2d(g, s1, u->down_w[1], u->down_b[1], 2, 1, 1);
    h = res_forward(g, &u->r2, h, se);
    /* self-attention over the lowest level's positions */
    {
        md_tensor *a = md_groupnorm(g, h, GROUPS, u->sa_gn_w, u->sa_gn_b, 1e-6f);
        a = md_attention_qkv(g, to_seq(g, md_conv2d(g, a, u->sa_qkv_w, u->sa_qkv_b, 1, 0, 1)),
                             (int)(c2 / HEAD_DIM), false);
        h = md_add(g, h, md_conv2d(g, from_seq(g, a, h), u->sa_proj_w, u->sa_proj_b, 1, 0, 1));
    }
    /* cross-attention to the condition's tokens */
    {
        md_tensor *sq = to_seq(g, h);
        md_tensor *q = md_linear(g, md_layernorm(g, sq, u->xa_ln_w, u->xa_ln_b, 1e-5f), u->xa_q_w, NULL);
        md_tensor *tok = md_reshape(g, md_linear(g, cond, u->tok_w, u->tok_b), 3, (int64_t[]){n, T, c2});
        md_tensor *kv = md_linear(g, tok, u->xa_kv_w, NULL);   /* [n, T, 2 c2] */
        md_tensor *k = md_slice(g, kv, 2, 0, c2), *v = md_slice(g, kv, 2, c2, 2 * c2);
        md_tensor *a = md_attention(g, q, k, v, (int)(c2 / HEAD_DIM), false);
        sq = md_add(g, sq, md_linear(g, a, u->xa_proj_w, u->xa_proj_b));
        h = md_contiguous(g, from_seq(g, sq, h));
    }
    if (F > 1)
        h = temporal_forward(g, &u->ta[1], h, F);
    h = res_forward(g, &u->r3, h, se);
    h = md_conv2d(g, md_upsample_nearest2d(g, h, 2), u->up_w[1], u->up_b[1], 1, 1, 1);
    md_tensor *cat1[2] = {h, s1};
    h = res_forward(g, &u->r4, md_concat(g, cat1, 2, 1), se);
    if (F > 1)
        h = temporal_forward(g, &u->ta[2], h, F);
    h = md_conv2d(g, md_upsample_nearest2d(g, h, 2), u->up_w[0], u->up_b[0], 1, 1, 1);
    md_tensor *cat0[2] = {h, s0};
    h = res_forward(g, &u->r5, md_concat(g, cat0, 2, 1), se);
    h = md_groupnorm_silu(g, h, GROUPS, u->out_gn_w, u->out_gn_b, 1e-6f);
    return md_conv2d(g, h, u->out_w, u->out_b, 1, 1, 1);
}

/* ---- schedule ---- */

double md_unet_alpha_bar(double t)
{
    double c = cos((t + 0.008) / 1.008 * M_PI / 2);
    double a = c * c;
    return a < 1e-6 ? 1e-6 : a > 0.99999 ? 0.99999 : a;
}

/* The noise at flat position idx of items of size values: independent, or
 * mixed across a video's frames (see md_unet_noise). */
static float eps_at(const md_unet_config *c, uint64_t seed, int64_t size, int64_t idx)
{
    const float own = md_rand_normal_at(seed, (uint64_t)idx);
    if (!c || md_unet_frames(c) == 1 || !(c->noise_share > 0.f))
        return own;
    const int64_t fsz = size / md_unet_frames(c), i = idx / size, k = (idx % size) % fsz;
    const float shared = md_rand_normal_at(seed ^ 0x7f4a7c159e3779b9ull, (uint64_t)(i * fsz + k));
    return sqrtf(c->noise_share) * shared + sqrtf(1.f - c->noise_share) * own;
}

void md_unet_noise(const md_unet_config *c, const float *x0, int64_t n, int64_t size, const float *t, uint64_t seed,
                   float *xt, float *v)
{
    for (int64_t i = 0; i < n; i++) {
        double a = md_unet_alpha_bar(t[i]);
        float sa = (float)sqrt(a), sb = (float)sqrt(1.0 - a);
        for (int64_t k = 0; k < size; k++) {
            float eps = eps_at(c, seed, size, i * size + k);
            float x = x0[i * size + k];
            xt[i * size + k] = sa * x + sb * eps;
            v[i * size + k] = sa * eps - sb * x;
        }
    }
}

/* ---- DDIM ---- */

md_status md_unet_sample(const md_unet *u, md_graph *g, const float *cond, int n, const md_unet_sample_opts *o,
                         uint64_t seed, md_unet_step_fn step, void *user, const volatile int *cancel, float *out)
{
    if (o->steps < 1 || o->steps > 1000) {
        md_log(MD_LOG_ERROR, "diffusion: steps is %d; it must be 1..1000", o->steps);
        return MD_ERR_INVALID;
    }
    if (!(o->guidance >= 0.f) || o->guidance > 100.f) {
        md_log(MD_LOG_ERROR, "diffusion: guidance is %g; it must be 0..100", (double)o->guidance);
        return MD_ERR_INVALID;
    }
    if (!(o->eta >= 0.f && o->eta <= 1.f)) {
        md_log(MD_LOG_ERROR, "diffusion: eta is %g; it must be 0..1", (double)o->eta);
        return MD_ERR_INVALID;
    }
    if (!(o->steer >= 0.f && o->steer <= 10.f)) {
        md_log(MD_LOG_ERROR, "diffusion: steer is %g; it must be 0..10", (double)o->steer);
        return MD_ERR_INVALID;
    }
    if (!(o->steer_until >= 0.f && o->steer_until <= 1.f)) {
        md_log(MD_LOG_ERROR, "diffusion: steer_until is %g; it must be 0..1", (double)o->steer_until);
        return MD_ERR_INVALID;
    }
    if (n < 1 || n > 64) {
        md_log(MD_LOG_ERROR, "diffusion: %d samples at once; 1..64 can be drawn", n);
        return MD_ERR_INVALID;
    }
    const int64_t size = md_unet_size(u), D = MD_SPACE_DIM;
    const bool guided = o->guidance != 1.f, steered = o->guide && o->steer > 0.f && o->steer_until > 0.f;
    const int rows = guided ? 2 * n : n;
    float *sg = steered ? malloc(sizeof(float) * (size_t)(size * n)) : NULL;   /* x0 (data units), then its gradient */
    if (steered && !sg)
        return MD_ERR_ALLOC;
    float *x = malloc(sizeof(float) * (size_t)(size * n));
    float *xin = malloc(sizeof(float) * (size_t)(size * rows));
    const int F = md_unet_frames(&u->cfg);   /* a video's frames share its time and condition */
    float *conds = calloc((size_t)(D * rows * F), sizeof(float));
    float *tt = malloc(sizeof(float) * (size_t)(rows * F));
    float *x0 = malloc(sizeof(float) * (size_t)(size * n));
    float *vout = malloc(sizeof(float) * (size_t)(size * rows));
    if (!x || !xin || !conds || !tt || !x0 || !vout) {
        free(x); free(xin); free(conds); free(tt); free(x0); free(vout); free(sg);
        return MD_ERR_ALLOC;
    }
    for (int r = 0; r < n * F; r++)   /* rows n..2n-1 (guided) stay zeros: no condition */
        memcpy(conds + D * r, cond, sizeof(float) * (size_t)D);
    for (int64_t k = 0; k < size * n; k++)
        x[k] = eps_at(&u->cfg, seed, size, k);
    bool grad = md_graph_grad_enabled(g);
    md_graph_set_grad(g, false);
    md_status st = MD_OK;
    const float gs = o->guidance;
    for (int s = 0; s < o->steps && st == MD_OK; s++) {
        if (cancel && *cancel) {
            st = MD_ABORTED;
            break;
        }
        const double t = 1.0 - (double)s / o->steps, tn = 1.0 - (double)(s + 1) / o->steps;
        const double a = md_unet_alpha_bar(t), an = tn <= 0.0 ? 1.0 : md_unet_alpha_bar(tn);
        for (int r = 0; r < rows * F; r++)
            tt[r] = (float)t;
        for (int r = 0; r < rows; r++) {
            memcpy(xin + size * r, x + size * (r % n), sizeof(float) * (size_t)size);
        }
        /* MD_UNET_SAMPLE_ROWS rows at a time: the graph holds one chunk's
         * activations, so memory does not grow with the candidates */
        const int chunk = F > 1 ? 1 : MD_UNET_SAMPLE_ROWS;   /* a video is already F pictures' work */
        for (int r0 = 0; r0 < rows; r0 += chunk) {
            if (r0 > 0 && cancel && *cancel) {   /* a video's rows are long: polled between them too */
                st = MD_ABORTED;
                break;
            }
            const int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
            md_graph_reset(g);
            md_tensor *xt = md_tensor_wrap(g, MD_F32, xin + size * r0, 4,
                                           (int64_t[]){nr * F, u->cfg.cin, u->cfg.h, u->cfg.w});
            md_tensor *ct = md_tensor_wrap(g, MD_F32, conds + D * r0 * F, 2, (int64_t[]){nr * F, D});
            md_tensor *vt = md_unet_forward(g, u, xt, tt + r0 * F, ct);
            if (!vt) {
                st = MD_ERR_ALLOC;
                break;
            }
            memcpy(vout + size * r0, vt->data, sizeof(float) * (size_t)(size * nr));
        }
        if (st != MD_OK)
            break;
        const float *vp = vout;
        const float sa = (float)sqrt(a), sb = (float)sqrt(1.0 - a);
        const bool steer_now = steered && s + 1 < o->steps && (double)s < (double)o->steps * o->steer_until;
        if (steer_now) {
            /* the x0 estimates in data units, for the guide; its gradient
             * becomes each sample's move, scaled to an RMS of steer */
            for (int64_t k = 0; k < size * n; k++) {
                float v = guided ? vp[size * n + k] + gs * (vp[k] - vp[size * n + k]) : vp[k];
                float p0 = sa * x[k] - sb * v;
                p0 = p0 < -4.f ? -4.f : p0 > 4.f ? 4.f : p0;
                sg[k] = p0 / u->cfg.scale + u->cfg.shift;
            }
            if ((st = o->guide(sg, n, sg, o->guide_user)) != MD_OK)
                break;
            for (int i = 0; i < n; i++) {
                double ss = 0.0;
                for (int64_t k = 0; k < size; k++) {
                    sg[i * size + k] /= u->cfg.scale;   /* d/d(normalised) = d/d(data) / scale */
                    ss += (double)sg[i * size + k] * sg[i * size + k];
                }
                const float m = ss > 0.0 ? o->steer / (float)sqrt(ss / (double)size) : 0.f;
                for (int64_t k = 0; k < size; k++)
                    sg[i * size + k] *= m;
            }
        }
        const double sig = o->eta * sqrt((1.0 - an) / (1.0 - a)) * sqrt(fmax(0.0, 1.0 - a / an));
        const float san = (float)sqrt(an), sdir = (float)sqrt(fmax(0.0, 1.0 - an - sig * sig));
        for (int64_t k = 0; k < size * n; k++) {
            float v = guided ? vp[size * n + k] + gs * (vp[k] - vp[size * n + k]) : vp[k];
            float xk = x[k];
            float p0 = sa * xk - sb * v;            /* x0 estimate */
            p0 = p0 < -4.f ? -4.f : p0 > 4.f ? 4.f : p0;
            float eps = (xk - sa * p0) / (sb > 1e-6f ? sb : 1e-6f);
            if (steer_now)   /* the noise estimate stays; the step heads for the moved x0 */
                p0 += sg[k];
            x0[k] = p0;
            float nx = san * p0 + sdir * eps;
            if (sig > 0.0)
                nx += (float)sig * eps_at(&u->cfg, seed ^ 0x5bd1e995u, size, (int64_t)(s + 1) * size * n + k);
            x[k] = nx;
        }
        if (step) {
            bool due = o->preview_every > 0 && ((s + 1) % o->preview_every == 0 || s + 1 == o->steps);
            if (due)
                for (int64_t k = 0; k < size * n; k++)
                    x0[k] = x0[k] / u->cfg.scale + u->cfg.shift;
            step(s, o->steps, due ? x0 : NULL, user);
        }
    }
    if (st == MD_OK)
        for (int64_t k = 0; k < size * n; k++)
            out[k] = x[k] / u->cfg.scale + u->cfg.shift;
    md_graph_reset(g);
    md_graph_set_grad(g, grad);
    free(x); free(xin); free(conds); free(tt); free(x0); free(vout); free(sg);
    return st;
}

/* ---- training ---- */

void md_unet_corpus_free(md_unet_corpus *c)
{
    free(c->x);
    free(c->own);
    free(c->caption);
    free(c->bank);
    free(c->digit);
    free(c->weight);
    memset(c, 0, sizeof *c);
}

md_status md_unet_corpus_bank(md_unet_corpus *c, const md_space *sp, md_graph *g, uint64_t seed)
{
    const int64_t D = MD_SPACE_DIM;
    c->bank_per_digit = MD_UNET_BANK;
    c->bank = malloc(sizeof(float) * (size_t)(10 * MD_UNET_BANK * D));
    if (!c->bank)
        return MD_ERR_ALLOC;
    char caps[MD_UNET_BANK][MD_CAPTION_MAX];
    const char *cp[MD_UNET_BANK];
    md_status st = MD_OK;
    for (int d = 0; d < 10 && st == MD_OK; d++) {
        for (int k = 0; k < MD_UNET_BANK && st == MD_OK; k++) {
            st = md_caption_digit((md_world_kind)(k % 3), d, md_hash64(seed * 977 + (uint64_t)(d * 100 + k)), caps[k],
                                  MD_CAPTION_MAX);
            cp[k] = caps[k];
        }
        if (st == MD_OK)
            st = md_space_embed(sp, g, MD_MOD_TEXT, cp, MD_UNET_BANK, c->bank + (size_t)d * MD_UNET_BANK * D);
    }
    return st;
}

void md_unet_corpus_normalise(md_unet_corpus *c, int64_t size, md_unet_config *cfg)
{
    double s1 = 0, s2 = 0;
    const int64_t tot = (int64_t)c->n * size;
    for (int64_t i = 0; i < tot; i++) {
        s1 += c->x[i];
        s2 += (double)c->x[i] * c->x[i];
    }
    double mean = tot ? s1 / (double)tot : 0.0, var = tot ? s2 / (double)tot - mean * mean : 1.0;
    cfg->shift = (float)mean;
    cfg->scale = (float)(1.0 / sqrt(var > 1e-8 ? var : 1e-8));
    for (int64_t i = 0; i < tot; i++)
        c->x[i] = (c->x[i] - cfg->shift) * cfg->scale;
}

md_status md_unet_train(md_unet *u, const md_unet_corpus *c, const md_unet_train_opts *o)
{
    if (o->steps < 1 || o->batch < 2 || !(o->lr > 0.f) || !(o->drop_cond >= 0.f && o->drop_cond < 1.f) ||
        !(o->ema >= 0.f && o->ema < 1.f) || c->n < 1) {
        md_log(MD_LOG_ERROR, "diffusion training: steps >= 1, batch >= 2, lr > 0, drop_cond and ema in [0, 1), "
                             "a corpus of at least one item");
        return MD_ERR_INVALID;
    }
    const int B = o->batch;
    const int64_t D = MD_SPACE_DIM, size = md_unet_size(u);
    float *x0 = malloc(sizeof(float) * (size_t)(B * size));
    float *xt = malloc(sizeof(float) * (size_t)(B * size));
    float *v = malloc(sizeof(float) * (size_t)(B * size));
    const int F = md_unet_frames(&u->cfg);   /* a video's frames share its time and condition */
    float *cond = malloc(sizeof(float) * (size_t)(B * F * D));
    float *t = malloc(sizeof(float) * (size_t)B), *tf = malloc(sizeof(float) * (size_t)(B * F));
    const int64_t hw = (int64_t)u->cfg.h * u->cfg.w;
    /* weighted: the error is taken between pred·√w and v·√w */
    float *sw = c->weight ? malloc(sizeof(float) * (size_t)(B * size)) : NULL;
    md_graph *g = md_graph_new((size_t)1 << 28);
    md_adamw opt;
    md_ema ema;
    bool have_opt = false, have_ema = false;
    md_status st = x0 && xt && v && cond && t && tf && g && (sw || !c->weight) ? MD_OK : MD_ERR_ALLOC;
    if (st == MD_OK && c->weight && F > 1) {
        md_log(MD_LOG_ERROR, "diffusion training: loss weights are for pictures, not videos");
        st = MD_ERR_INVALID;
    }
    if (st == MD_OK && (st = md_adamw_init(&opt, u->ps, 0.9f, 0.99f, 1e-8f, 0.f)) == MD_OK)
        have_opt = true;
    if (st == MD_OK && (st = md_ema_init(&ema, u->ps, o->ema)) == MD_OK)
        have_ema = true;
    md_rng r;
    md_rng_init(&r, o->seed * 13 + 5);
    for (int64_t step = 0; step < o->steps && st == MD_OK; step++) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        for (int b = 0; b < B; b++) {
            const int k = (int)md_rng_below(&r, (uint32_t)c->n);
            memcpy(x0 + size * b, c->x + (size_t)k * (size_t)size, sizeof(float) * (size_t)size);
            if (sw) {   /* √w once a position, then the same for every channel */
                float *row = sw + size * b;
                for (int64_t p = 0; p < hw; p++)
                    row[p] = sqrtf(c->weight[(size_t)k * (size_t)hw + (size_t)p]);
                for (int64_t ch = 1; ch < u->cfg.cin; ch++)
                    memcpy(row + ch * hw, row, sizeof(float) * (size_t)hw);
            }
            /* stratified times: every batch spans the whole schedule */
            t[b] = ((float)b + md_rng_uniform(&r)) / (float)B;
            float uu = md_rng_uniform(&r);
            const float *src;
            if (uu < o->drop_cond)
                src = NULL;
            else if (uu < o->drop_cond + 0.3f)
                src = c->caption + D * k;
            else if (uu < o->drop_cond + 0.6f)
                src = c->bank + ((size_t)c->digit[k] * (size_t)c->bank_per_digit +
                                 md_rng_below(&r, (uint32_t)c->bank_per_digit)) * (size_t)D;
            else
                src = c->own + D * k;
            for (int f = 0; f < F; f++) {
                float *row = cond + D * (b * F + f);
                if (src)
                    memcpy(row, src, sizeof(float) * (size_t)D);
                else
                    memset(row, 0, sizeof(float) * (size_t)D);
                tf[b * F + f] = t[b];
            }
        }
        md_unet_noise(&u->cfg, x0, B, size, t, md_hash64(o->seed * 0x9e37u + (uint64_t)step), xt, v);
        if (sw)
            for (int64_t k = 0; k < B * size; k++)
                v[k] *= sw[k];
        md_graph_reset(g);
        md_paramset_zero_grad(u->ps);
        const int64_t shp[4] = {B * F, u->cfg.cin, u->cfg.h, u->cfg.w};
        md_tensor *xtt = md_tensor_wrap(g, MD_F32, xt, 4, shp);
        md_tensor *ct = md_tensor_wrap(g, MD_F32, cond, 2, (int64_t[]){B * F, D});
        md_tensor *vt = md_tensor_wrap(g, MD_F32, v, 4, shp);
        md_tensor *pred = md_unet_forward(g, u, xtt, tf, ct);
        if (sw)
            pred = md_mul(g, pred, md_tensor_wrap(g, MD_F32, sw, 4, shp));
        md_tensor *loss = md_mse(g, pred, vt);
        md_graph_backward(g, loss);
        md_paramset_finish_grads(u->ps);
        md_clip_grad_norm(u->ps, 1.0f);
        md_adamw_step(&opt, md_lr_warmup_cosine(step, o->steps / 50 + 1, o->steps, o->lr, o->lr * 0.05f));
        md_ema_update(&ema);
        if (o->progress)
            o->progress("training", step, o->steps, loss->data[0], o->user);
    }
    if (st == MD_OK && have_ema)
        md_ema_swap(&ema);   /* keep the averaged weights */
    if (g && getenv("MEDLEY_PROFILE"))
        md_graph_profile_print(g, stderr);
    if (have_ema)
        md_ema_free(&ema);
    if (have_opt)
        md_adamw_free(&opt);
    md_graph_free(g);
    free(sw);
    free(tf);
    free(t);
    free(cond);
    free(v);
    free(xt);
    free(x0);
    return st;
}
