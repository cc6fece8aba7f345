/* vqgan.c — see vqgan.h. */
#include "vqgan.h"
#include "ops.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUPS 8
#define S MD_WORLD_SIZE

/* ---- parameters ---- */

static void conv_declare(md_paramset *ps, const char *name, int64_t cout, int64_t cin, int k, md_tensor **w,
                         md_tensor **b)
{
    char n[128];
    snprintf(n, sizeof n, "%s.weight", name);
    *w = md_param_add(ps, n, 4, (int64_t[]){cout, cin, k, k});
    snprintf(n, sizeof n, "%s.bias", name);
    *b = md_param_add(ps, n, 1, (int64_t[]){cout});
}

static void norm_declare(md_paramset *ps, const char *name, int64_t c, md_tensor **w, md_tensor **b)
{
    char n[128];
    snprintf(n, sizeof n, "%s.weight", name);
    *w = md_param_add(ps, n, 1, (int64_t[]){c});
    snprintf(n, sizeof n, "%s.bias", name);
    *b = md_param_add(ps, n, 1, (int64_t[]){c});
}

static void attn_declare(md_paramset *ps, const char *prefix, int64_t c, md_vq_attn *a)
{
    char n[48];
    snprintf(n, sizeof n, "%s.norm", prefix);
    norm_declare(ps, n, c, &a->gn_w, &a->gn_b);
    snprintf(n, sizeof n, "%s.qkv", prefix);
    conv_declare(ps, n, 3 * c, c, 1, &a->qkv_w, &a->qkv_b);
    snprintf(n, sizeof n, "%s.proj", prefix);
    conv_declare(ps, n, c, c, 1, &a->proj_w, &a->proj_b);
}

static void conv_init(md_tensor *w, md_tensor *b, uint64_t seed, float gain)
{
    int64_t fan_in = w->shape[1] * w->shape[2] * w->shape[3];
    float bound = gain * sqrtf(3.f / (float)fan_in);
    md_init_uniform(w, seed, -bound, bound);
    md_init_const(b, 0.f);
}

static void attn_init(md_vq_attn *a, uint64_t seed)
{
    md_init_const(a->gn_w, 1.f);
    md_init_const(a->gn_b, 0.f);
    conv_init(a->qkv_w, a->qkv_b, seed, 1.f);
    conv_init(a->proj_w, a->proj_b, seed + 1, 0.1f);   /* starts near the identity */
}

md_status md_vqgan_init(md_vqgan *v, uint64_t seed)
{
    memset(v, 0, sizeof *v);
    md_paramset *ps = v->ps = md_paramset_new();
    if (!ps)
        return MD_ERR_ALLOC;
    conv_declare(ps, "enc.in", 32, 3, 3, &v->ein_w, &v->ein_b);
    md_resblock_declare(&v->e0, ps, "enc.res0", 32, 32, GROUPS);
    conv_declare(ps, "enc.down0", 32, 32, 3, &v->edown_w[0], &v->edown_b[0]);
    md_resblock_declare(&v->e1, ps, "enc.res1", 32, 64, GROUPS);
    conv_declare(ps, "enc.down1", 64, 64, 3, &v->edown_w[1], &v->edown_b[1]);
    md_resblock_declare(&v->e2, ps, "enc.res2", 64, 128, GROUPS);
    attn_declare(ps, "enc.attn", 128, &v->ea);
    md_resblock_declare(&v->e3, ps, "enc.res3", 128, 128, GROUPS);
    norm_declare(ps, "enc.out_norm", 128, &v->eout_gn_w, &v->eout_gn_b);
    conv_declare(ps, "enc.out", MD_VQ_DIM, 128, 3, &v->eout_w, &v->eout_b);
    v->codebook = md_param_add(ps, "codebook", 2, (int64_t[]){MD_VQ_CODES, MD_VQ_DIM});
    conv_declare(ps, "dec.in", 128, MD_VQ_DIM, 3, &v->din_w, &v->din_b);
    md_resblock_declare(&v->d0, ps, "dec.res0", 128, 128, GROUPS);
    attn_declare(ps, "dec.attn", 128, &v->da);
    md_resblock_declare(&v->d1, ps, "dec.res1", 128, 128, GROUPS);
    conv_declare(ps, "dec.up0", 64, 128, 3, &v->dup_w[0], &v->dup_b[0]);
    md_resblock_declare(&v->d2, ps, "dec.res2", 64, 64, GROUPS);
    conv_declare(ps, "dec.up1", 32, 64, 3, &v->dup_w[1], &v->dup_b[1]);
    md_resblock_declare(&v->d3, ps, "dec.res3", 32, 32, GROUPS);
    norm_declare(ps, "dec.out_norm", 32, &v->dout_gn_w, &v->dout_gn_b);
    conv_declare(ps, "dec.out", 3, 32, 3, &v->dout_w, &v->dout_b);
    md_status st = md_paramset_alloc(ps);
    if (st != MD_OK) {
        md_vqgan_free(v);
        return st;
    }
    conv_init(v->ein_w, v->ein_b, seed + 1, 1.f);
    md_resblock_init(&v->e0, seed + 10);
    conv_init(v->edown_w[0], v->edown_b[0], seed + 2, 1.f);
    md_resblock_init(&v->e1, seed + 20);
    conv_init(v->edown_w[1], v->edown_b[1], seed + 3, 1.f);
    md_resblock_init(&v->e2, seed + 30);
    attn_init(&v->ea, seed + 40);
    md_resblock_init(&v->e3, seed + 50);
    md_init_const(v->eout_gn_w, 1.f);
    md_init_const(v->eout_gn_b, 0.f);
    conv_init(v->eout_w, v->eout_b, seed + 4, 1.f);
    md_init_normal(v->codebook, seed + 5, 0.f, 1.f);
    conv_init(v->din_w, v->din_b, seed + 6, 1.f);
    md_resblock_init(&v->d0, seed + 60);
    attn_init(&v->da, seed + 70);
    md_resblock_init(&v->d1, seed + 80);
    conv_init(v->dup_w[0], v->dup_b[0], seed + 7, 1.f);
    md_resblock_init(&v->d2, seed + 90);
    conv_init(v->dup_w[1], v->dup_b[1], seed + 8, 1.f);
    md_resblock_init(&v->d3, seed + 100);
    md_init_const(v->dout_gn_w, 1.f);
    md_init_const(v->dout_gn_b, 0.f);
    conv_init(v->dout_w, v->dout_b, seed + 9, 1.f);
    return MD_OK;
}

void md_vqgan_free(md_vqgan *v)
{
    if (!v)
        return;
    md_paramset_free(v->ps);
    memset(v, 0, sizeof *v);
}

md_status md_vqgan_save(const md_vqgan *v, const char *path, const char *recipe_json, const char *data_hash)
{
    char ver[16], wver[16], cfg[128];
    snprintf(ver, sizeof ver, "%d", MD_VQGAN_VERSION);
    snprintf(wver, sizeof wver, "%d", MD_WORLD_VERSION);
    snprintf(cfg, sizeof cfg, "{\"size\":%d,\"grid\":%d,\"codes\":%d,\"dim\":%d}", S, MD_VQ_GRID, MD_VQ_CODES,
             MD_VQ_DIM);
    const char *keys[] = {"medley.model", "medley.version", "vqgan.config", "world.version", "data.hash",
                          "train.recipe"};
    const char *vals[] = {"vqgan", ver, cfg, wver, data_hash ? data_hash : "", recipe_json ? recipe_json : "{}"};
    return md_st_save_paramset(path, v->ps, MD_F16, 6, keys, vals);
}

md_status md_vqgan_load(md_vqgan *v, const char *path)
{
    memset(v, 0, sizeof *v);
    md_st_file *f;
    md_status st = md_st_open(path, &f);
    if (st != MD_OK)
        return st;
    st = md_st_check_model(f, path, "vqgan", "image tokenizer (VQGAN)", MD_VQGAN_VERSION, "medley train vqgan");
    md_st_close(f);
    if (st != MD_OK)
        return st;
    if ((st = md_vqgan_init(v, 0)) != MD_OK)
        return st;
    if ((st = md_st_load_paramset(path, v->ps)) != MD_OK)
        md_vqgan_free(v);
    return st;
}

/* ---- pixels ---- */

void md_vqgan_prep_rgb(const uint8_t *rgb, float *x)
{
    const int hw = S * S;
    for (int i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++)
            x[c * hw + i] = (float)rgb[i * 3 + c] * (2.f / 255.f) - 1.f;
}

void md_vqgan_to_rgb(const float *x, uint8_t *rgb)
{
    const int hw = S * S;
    for (int i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) {
            float u = (x[c * hw + i] + 1.f) * 127.5f + 0.5f;
            rgb[i * 3 + c] = (uint8_t)(u < 0.f ? 0.f : u > 255.f ? 255.f : u);
        }
}

/* ---- graph ---- */

static md_tensor *attn_forward(md_graph *g, const md_vq_attn *a, md_tensor *x)
{
    const int64_t n = x->shape[0], c = x->shape[1], p = x->shape[2] * x->shape[3];
    md_tensor *h = md_groupnorm(g, x, GROUPS, a->gn_w, a->gn_b, 1e-6f);
    h = md_conv2d(g, h, a->qkv_w, a->qkv_b, 1, 0, 1);                       /* [n, 3c, H, W] */
    h = md_transpose(g, md_reshape(g, h, 3, (int64_t[]){n, 3 * c, p}), 1, 2);   /* [n, p, 3c] */
    h = md_attention_qkv(g, h, 1, false);                                     /* [n, p, c] */
    h = md_reshape(g, md_transpose(g, h, 1, 2), 4, (int64_t[]){n, c, x->shape[2], x->shape[3]});
    return md_add(g, x, md_conv2d(g, h, a->proj_w, a->proj_b, 1, 0, 1));
}

md_tensor *md_vqgan_codes(md_graph *g, const md_vqgan *v)
{
    return md_l2_normalize(g, v->codebook, 1e-6f);
}

md_tensor *md_vqgan_encode(md_graph *g, const md_vqgan *v, md_tensor *x)
{
    const int64_t n = x->shape[0];
    md_tensor *h = md_conv2d(g, x, v->ein_w, v->ein_b, 1, 1, 1);
    h = md_resblock_forward(g, &v->e0, h);
    h = md_conv2d(g, h, v->edown_w[0], v->edown_b[0], 2, 1, 1);            /* 32×32 */
    h = md_resblock_forward(g, &v->e1, h);
    h = md_conv2d(g, h, v->edown_w[1], v->edown_b[1], 2, 1, 1);            /* 16×16 */
    h = md_resblock_forward(g, &v->e2, h);
    h = attn_forward(g, &v->ea, h);
    h = md_resblock_forward(g, &v->e3, h);
    h = md_groupnorm_silu(g, h, GROUPS, v->eout_gn_w, v->eout_gn_b, 1e-6f);
    h = md_conv2d(g, h, v->eout_w, v->eout_b, 1, 1, 1);                    /* [n, D, 16, 16] */
    h = md_transpose(g, md_reshape(g, h, 3, (int64_t[]){n, MD_VQ_DIM, MD_VQ_TOKENS}), 1, 2);
    h = md_reshape(g, h, 2, (int64_t[]){n * MD_VQ_TOKENS, MD_VQ_DIM});
    return md_l2_normalize(g, h, 1e-6f);
}

md_tensor *md_vqgan_decode(md_graph *g, const md_vqgan *v, md_tensor *zq, int64_t n)
{
    md_tensor *h = md_transpose(g, md_reshape(g, zq, 3, (int64_t[]){n, MD_VQ_TOKENS, MD_VQ_DIM}), 1, 2);
    h = md_reshape(g, h, 4, (int64_t[]){n, MD_VQ_DIM, MD_VQ_GRID, MD_VQ_GRID});
    h = md_conv2d(g, h, v->din_w, v->din_b, 1, 1, 1);
    h = md_resblock_forward(g, &v->d0, h);
    h = attn_forward(g, &v->da, h);
    h = md_resblock_forward(g, &v->d1, h);
    h = md_conv2d(g, md_upsample_nearest2d(g, h, 2), v->dup_w[0], v->dup_b[0], 1, 1, 1);   /* 32×32 */
    h = md_resblock_forward(g, &v->d2, h);
    h = md_conv2d(g, md_upsample_nearest2d(g, h, 2), v->dup_w[1], v->dup_b[1], 1, 1, 1);   /* 64×64 */
    h = md_resblock_forward(g, &v->d3, h);
    h = md_groupnorm_silu(g, h, GROUPS, v->dout_gn_w, v->dout_gn_b, 1e-6f);
    return md_conv2d(g, h, v->dout_w, v->dout_b, 1, 1, 1);
}

/* ---- tokens ---- */

#define INFER_BATCH 16

md_status md_vqgan_tokenize(const md_vqgan *v, md_graph *g, const float *x, int64_t n, int32_t *tokens)
{
    bool grad = md_graph_grad_enabled(g);
    md_graph_set_grad(g, false);
    const int64_t isz = (int64_t)3 * S * S;
    for (int64_t i0 = 0; i0 < n; i0 += INFER_BATCH) {
        int64_t nb = n - i0 < INFER_BATCH ? n - i0 : INFER_BATCH;
        md_graph_reset(g);
        md_tensor *xt = md_tensor_wrap(g, MD_F32, (void *)(x + i0 * isz), 4, (int64_t[]){nb, 3, S, S});
        md_vq_result q = md_vq(g, md_vqgan_encode(g, v, xt), md_vqgan_codes(g, v));
        memcpy(tokens + i0 * MD_VQ_TOKENS, md_i32(q.indices), sizeof(int32_t) * (size_t)(nb * MD_VQ_TOKENS));
    }
    md_graph_reset(g);
    md_graph_set_grad(g, grad);
    return MD_OK;
}

md_status md_vqgan_detokenize(const md_vqgan *v, md_graph *g, const int32_t *tokens, int64_t n, float *x)
{
    for (int64_t i = 0; i < n * MD_VQ_TOKENS; i++)
        if (tokens[i] < 0 || tokens[i] >= MD_VQ_CODES) {
            md_log(MD_LOG_ERROR, "image tokens: token %lld is %d, outside 0..%d", (long long)i, tokens[i],
                   MD_VQ_CODES - 1);
            return MD_ERR_INVALID;
        }
    bool grad = md_graph_grad_enabled(g);
    md_graph_set_grad(g, false);
    const int64_t isz = (int64_t)3 * S * S;
    for (int64_t i0 = 0; i0 < n; i0 += INFER_BATCH) {
        int64_t nb = n - i0 < INFER_BATCH ? n - i0 : INFER_BATCH;
        md_graph_reset(g);
        md_tensor *ids = md_tensor_wrap(g, MD_I32, (void *)(tokens + i0 * MD_VQ_TOKENS), 1,
                                        (int64_t[]){nb * MD_VQ_TOKENS});
        md_tensor *zq = md_embedding(g, md_vqgan_codes(g, v), ids);
        md_tensor *y = md_vqgan_decode(g, v, zq, nb);
        memcpy(x + i0 * isz, y->data, sizeof(float) * (size_t)(nb * isz));
    }
    md_graph_reset(g);
    md_graph_set_grad(g, grad);
    return MD_OK;
}

/* ---- training ---- */

void md_vqgan_train_default_opts(md_vqgan_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 2500;
    o->batch = 32;
    o->lr = 1e-3f;
    o->beta = 0.25f;
    o->perceptual = 0.2f;
    o->stroke = 2.0f;
    o->restart_every = 200;
    o->seed = 1;
}

/* The ink channel the judge reads beside RGB, from the original u8 frame:
 * md_judge_prep_rgb's fourth plane. */
static void ink_plane(const uint8_t *rgb, float *ink)
{
    float full[4 * S * S];
    md_judge_prep_rgb(rgb, full);
    memcpy(ink, full + 3 * S * S, sizeof(float) * S * S);
}

md_status md_vqgan_train(md_vqgan *v, const md_world *w, const md_vqgan_train_opts *o)
{
    if (o->steps < 1 || o->batch < 4 || !(o->lr > 0.f) || !(o->beta >= 0.f) || !(o->perceptual >= 0.f) ||
        !(o->stroke >= 0.f)) {
        md_log(MD_LOG_ERROR, "vqgan training: steps >= 1, batch >= 4, lr > 0, beta, perceptual and stroke >= 0");
        return MD_ERR_INVALID;
    }
    if (o->judge && o->judge->kind != MD_WORLD_IMAGE) {
        md_log(MD_LOG_ERROR, "vqgan training: the perceptual term needs the image judge");
        return MD_ERR_INVALID;
    }
    const bool percep = o->judge && o->perceptual > 0.f;
    const int B = o->batch, nvid = B / 8;                 /* nvid videos give 2 frames each */
    const int nimg = B - 2 * nvid;
    const int64_t isz = (int64_t)3 * S * S, T = md_threads_get();
    const size_t vsz = (size_t)MD_WORLD_FRAMES * S * S * 3;
    md_adamw opt;
    md_status st = md_adamw_init(&opt, v->ps, 0.9f, 0.99f, 1e-8f, 0.f);
    if (st != MD_OK)
        return st;
    md_graph *g = md_graph_new((size_t)1 << 27);
    float *x = malloc(sizeof(float) * (size_t)(isz * B));
    float *ink = malloc(sizeof(float) * (size_t)(S * S * B));
    float *strokew = malloc(sizeof(float) * (size_t)(isz * B));   /* stroke weight per pixel and channel */
    uint8_t *rgb = malloc((size_t)S * S * 3 * (size_t)B);
    uint8_t *scratch = malloc(vsz * (size_t)T);
    int64_t *use = calloc(MD_VQ_CODES, sizeof(int64_t));
    if (!g || !x || !ink || !strokew || !rgb || !scratch || !use) {
        st = MD_ERR_ALLOC;
        goto done;
    }
    if (percep)
        md_paramset_set_frozen(o->judge->ps, true);
    md_graph_set_seed(g, o->seed);
    for (int64_t step = 0; step < o->steps; step++) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads((int)T)
        for (int b = 0; b < nimg + nvid; b++) {
            md_world_sample s;
            uint8_t *sc = scratch + vsz * (size_t)omp_get_thread_num();
            if (b < nimg) {
                if (md_world_draw(w, o->seed, MD_SPLIT_TRAIN, MD_WORLD_IMAGE, step * nimg + b, &s) != MD_OK) {
                    bad = 1;
                    continue;
                }
                md_world_render_image(w, &s, rgb + (size_t)b * S * S * 3);
            } else {
                int k = b - nimg;
                if (md_world_draw(w, o->seed, MD_SPLIT_TRAIN, MD_WORLD_VIDEO, step * nvid + k, &s) != MD_OK) {
                    bad = 1;
                    continue;
                }
                md_world_render_video(w, &s, sc, NULL);
                uint64_t r = md_hash64(o->seed * 7919u + (uint64_t)(step * nvid + k));
                int f0 = (int)(r % MD_WORLD_FRAMES), f1 = (int)((r >> 8) % MD_WORLD_FRAMES);
                memcpy(rgb + (size_t)(nimg + 2 * k) * S * S * 3, sc + (size_t)f0 * S * S * 3, (size_t)S * S * 3);
                memcpy(rgb + (size_t)(nimg + 2 * k + 1) * S * S * 3, sc + (size_t)f1 * S * S * 3, (size_t)S * S * 3);
            }
        }
        if (bad) {
            st = MD_ERR;
            break;
        }
#pragma omp parallel for schedule(static) num_threads((int)T)
        for (int b = 0; b < B; b++) {
            md_vqgan_prep_rgb(rgb + (size_t)b * S * S * 3, x + isz * b);
            float *ib = ink + (size_t)b * S * S;
            ink_plane(rgb + (size_t)b * S * S * 3, ib);
            for (int c = 0; c < 3; c++)
                for (int i = 0; i < S * S; i++)   /* ink plane [-1, 1] -> [0, 1] */
                    strokew[isz * b + (int64_t)c * S * S + i] = 0.5f * (ib[i] + 1.f);
        }
        md_graph_reset(g);
        md_paramset_zero_grad(v->ps);
        md_tensor *xt = md_tensor_wrap(g, MD_F32, x, 4, (int64_t[]){B, 3, S, S});
        if (o->decoder_only)
            md_graph_set_grad(g, false);   /* the codes are given: no gradient reaches encoder or codebook */
        md_tensor *z = md_vqgan_encode(g, v, xt);
        md_vq_result q = md_vq(g, z, md_vqgan_codes(g, v));
        md_tensor *zq = q.zq;
        if (o->decoder_only) {
            md_graph_set_grad(g, true);
            zq = md_tensor_wrap(g, MD_F32, q.zq->data, 2, q.zq->shape);
        }
        md_tensor *y = md_vqgan_decode(g, v, zq, B);
        md_tensor *l1 = md_l1(g, y, xt);
        md_tensor *loss = o->decoder_only
                              ? l1
                              : md_add(g, l1, md_add(g, q.codebook_loss, md_scale(g, q.commit_loss, o->beta)));
        if (o->stroke > 0.f) {   /* squared error where the ink is: thin strokes must survive */
            md_tensor *d = md_sub(g, y, xt);
            md_tensor *sw = md_tensor_wrap(g, MD_F32, strokew, 4, (int64_t[]){B, 3, S, S});
            loss = md_add(g, loss, md_scale(g, md_mean(g, md_mul(g, md_mul(g, d, d), sw)), o->stroke));
        }
        if (percep) {
            md_tensor *inkt = md_tensor_wrap(g, MD_F32, ink, 4, (int64_t[]){B, 1, S, S});
            md_tensor *logits[MD_ATTR_COUNT];
            bool gr = md_graph_grad_enabled(g);
            md_graph_set_grad(g, false);
            md_tensor *parts0[2] = {xt, inkt};
            md_tensor *f0 = md_judge_forward(g, o->judge, md_concat(g, parts0, 2, 1), logits);
            md_graph_set_grad(g, gr);
            f0 = md_tensor_wrap(g, MD_F32, f0->data, 2, f0->shape);
            md_tensor *parts1[2] = {y, inkt};
            md_tensor *f1 = md_judge_forward(g, o->judge, md_concat(g, parts1, 2, 1), logits);
            loss = md_add(g, loss, md_scale(g, md_mse(g, f1, f0), o->perceptual));
        }
        md_graph_backward(g, loss);
        md_paramset_finish_grads(v->ps);
        md_clip_grad_norm(v->ps, 1.0f);
        md_adamw_step(&opt, md_lr_warmup_cosine(step, o->steps / 50 + 1, o->steps, o->lr, o->lr * 0.05f));
        /* code use; restarts of codes unused since the last check, at
         * random encoder outputs of this batch */
        const int32_t *idx = md_i32(q.indices);
        for (int64_t i = 0; i < (int64_t)B * MD_VQ_TOKENS; i++)
            use[idx[i]]++;
        int64_t used = 0;
        for (int k = 0; k < MD_VQ_CODES; k++)
            used += use[k] > 0;
        if (o->restart_every > 0 && !o->decoder_only && (step + 1) % o->restart_every == 0) {
            uint64_t r = md_hash64(o->seed ^ (uint64_t)step * 0x9e3779b97f4a7c15ull);
            for (int k = 0; k < MD_VQ_CODES; k++) {
                if (use[k] == 0) {
                    r = md_hash64(r + (uint64_t)k);
                    int64_t row = (int64_t)(r % (uint64_t)(B * MD_VQ_TOKENS));
                    memcpy(v->codebook->data + (size_t)k * MD_VQ_DIM, z->data + row * MD_VQ_DIM,
                           sizeof(float) * MD_VQ_DIM);
                }
            }
            memset(use, 0, sizeof(int64_t) * MD_VQ_CODES);
        }
        if (o->progress)
            o->progress(step, o->steps, loss->data[0], l1->data[0], (float)used / MD_VQ_CODES, o->user);
    }
    if (percep)
        md_paramset_set_frozen(o->judge->ps, false);
done:
    if (g && getenv("MEDLEY_PROFILE"))
        md_graph_profile_print(g, stderr);
    free(use);
    free(scratch);
    free(rgb);
    free(strokew);
    free(ink);
    free(x);
    md_graph_free(g);
    md_adamw_free(&opt);
    return st;
}

/* ---- evaluation ---- */

md_status md_vqgan_evaluate(const md_vqgan *v, const md_world *w, md_world_split split, int64_t n,
                            const md_judge *judge, md_vqgan_eval *out)
{
    memset(out, 0, sizeof *out);
    out->judge_digit = out->judge_digit_orig = NAN;
    if (n < 1) {
        md_log(MD_LOG_ERROR, "vqgan evaluation: need at least one image");
        return MD_ERR_INVALID;
    }
    double t0 = md_time_now();
    const int64_t isz = (int64_t)3 * S * S, jsz = md_judge_input_size(MD_WORLD_IMAGE);
    float *x = malloc(sizeof(float) * (size_t)(isz * n)), *y = malloc(sizeof(float) * (size_t)(isz * n));
    uint8_t *rgb = malloc((size_t)S * S * 3 * (size_t)n);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(n * MD_VQ_TOKENS));
    int *digit = malloc(sizeof(int) * (size_t)n);
    float *jx = judge ? malloc(sizeof(float) * (size_t)(jsz * n)) : NULL;
    int64_t *use = calloc(MD_VQ_CODES, sizeof(int64_t));
    md_graph *g = md_graph_new((size_t)1 << 25);
    md_status st = x && y && rgb && tok && digit && use && g && (!judge || jx) ? MD_OK : MD_ERR_ALLOC;
    volatile int bad = 0;
    if (st == MD_OK) {
#pragma omp parallel for schedule(dynamic, 4) num_threads(md_threads_get())
        for (int64_t i = 0; i < n; i++) {
            md_world_sample s;
            if (md_world_draw(w, 17, split, MD_WORLD_IMAGE, i, &s) != MD_OK) {
                bad = 1;
                continue;
            }
            digit[i] = s.attr[MD_ATTR_DIGIT];
            md_world_render_image(w, &s, rgb + (size_t)i * S * S * 3);
            md_vqgan_prep_rgb(rgb + (size_t)i * S * S * 3, x + isz * i);
        }
        if (bad)
            st = MD_ERR;
    }
    if (st == MD_OK)
        st = md_vqgan_tokenize(v, g, x, n, tok);
    if (st == MD_OK)
        st = md_vqgan_detokenize(v, g, tok, n, y);
    if (st == MD_OK) {
        double psnr = 0, l1 = 0;
        for (int64_t i = 0; i < n; i++) {
            double se = 0, ae = 0;
            for (int64_t k = 0; k < isz; k++) {
                float yk = fminf(1.f, fmaxf(-1.f, y[i * isz + k]));
                double d = (double)yk - x[i * isz + k];
                se += d * d;
                ae += fabs(d);
            }
            double mse = se / (double)isz;
            psnr += 10.0 * log10(4.0 / (mse > 1e-10 ? mse : 1e-10));
            l1 += ae / (double)isz;
        }
        out->psnr = psnr / (double)n;
        out->l1 = l1 / (double)n;
        for (int64_t i = 0; i < n * MD_VQ_TOKENS; i++)
            use[tok[i]]++;
        double ent = 0;
        int64_t used = 0;
        for (int k = 0; k < MD_VQ_CODES; k++)
            if (use[k]) {
                double p = (double)use[k] / (double)(n * MD_VQ_TOKENS);
                ent -= p * log(p);
                used++;
            }
        out->used = (double)used / MD_VQ_CODES;
        out->perplexity = exp(ent);
        out->n = n;
    }
    if (st == MD_OK && judge) {
        int(*attrs)[MD_ATTR_COUNT] = malloc(sizeof(int[MD_ATTR_COUNT]) * (size_t)n);
        if (!attrs)
            st = MD_ERR_ALLOC;
        for (int pass = 0; pass < 2 && st == MD_OK; pass++) {
            for (int64_t i = 0; i < n; i++) {
                uint8_t r2[S * S * 3];
                if (pass == 0)
                    md_vqgan_to_rgb(y + isz * i, r2);
                md_judge_prep_rgb(pass == 0 ? r2 : rgb + (size_t)i * S * S * 3, jx + jsz * i);
            }
            st = md_judge_read(judge, g, jx, n, attrs, NULL);
            int64_t right = 0;
            for (int64_t i = 0; st == MD_OK && i < n; i++)
                right += attrs[i][MD_ATTR_DIGIT] == digit[i];
            if (pass == 0)
                out->judge_digit = (double)right / (double)n;
            else
                out->judge_digit_orig = (double)right / (double)n;
        }
        free(attrs);
    }
    md_graph_free(g);
    free(use);
    free(jx);
    free(digit);
    free(tok);
    free(rgb);
    free(y);
    free(x);
    out->seconds = md_time_now() - t0;
    return st;
}
