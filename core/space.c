/* space.c — see space.h. */
#include "space.h"
#include "probe.h"
#include "caption.h"
#include "ops.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEAT MD_JUDGE_FEATURES   /* width of the image, audio and frame features */
#define MOTION_IN 64           /* the ink path: 16 (x, y) about the centre, 16 from frame 0 */
#define TEXT_D 128
#define TEXT_LAYERS 2
#define TEXT_HEADS 4
#define LOG_SCALE_MAX 4.6052f   /* ln 100, as CLIP clamps it */

static const char *const mod_names[4] = {"text", "image", "audio", "video"};

/* ---- parameters ---- */

static void he_uniform(md_tensor *w, int64_t fan_in, uint64_t seed)
{
    float b = sqrtf(6.f / (float)fan_in);
    md_init_uniform(w, seed, -b, b);
}

md_status md_space_init(md_space *sp, md_bpe *bpe, uint64_t seed)
{
    memset(sp, 0, sizeof *sp);
    sp->bpe = bpe;
    sp->vocab = md_bpe_vocab_size(bpe);
    sp->text_d = TEXT_D;
    sp->text_layers = TEXT_LAYERS;
    for (int m = 0; m < 4; m++)
        if (!(sp->ps[m] = md_paramset_new())) {
            md_space_free(sp);
            return MD_ERR_ALLOC;
        }
    const int64_t D = MD_SPACE_DIM, d = TEXT_D;
    md_paramset *pt = sp->ps[MD_MOD_TEXT];
    sp->tok_emb = md_param_add(pt, "text.tok_emb", 2, (int64_t[]){sp->vocab, d});
    sp->pos_emb = md_param_add(pt, "text.pos_emb", 2, (int64_t[]){MD_SPACE_TEXT_LEN, d});
    char name[64];
    for (int l = 0; l < TEXT_LAYERS; l++) {
        snprintf(name, sizeof name, "text.block%d", l);
        md_tblock_declare(&sp->text_blocks[l], pt, name, d, TEXT_HEADS, 4, 0);
    }
    sp->lnf_w = md_param_add(pt, "text.lnf.weight", 1, (int64_t[]){d});
    sp->lnf_b = md_param_add(pt, "text.lnf.bias", 1, (int64_t[]){d});
    sp->text_proj = md_param_add(pt, "text.proj", 2, (int64_t[]){D, d});

    md_judge_net_declare(&sp->image_net, MD_WORLD_IMAGE, sp->ps[MD_MOD_IMAGE], "image.", false);
    sp->image_proj = md_param_add(sp->ps[MD_MOD_IMAGE], "image.proj", 2, (int64_t[]){D, FEAT});
    sp->log_scale[MD_MOD_IMAGE] = md_param_add(sp->ps[MD_MOD_IMAGE], "image.log_scale", 1, (int64_t[]){1});

    md_judge_net_declare(&sp->audio_net, MD_WORLD_AUDIO, sp->ps[MD_MOD_AUDIO], "audio.", false);
    sp->audio_proj = md_param_add(sp->ps[MD_MOD_AUDIO], "audio.proj", 2, (int64_t[]){D, FEAT});
    sp->log_scale[MD_MOD_AUDIO] = md_param_add(sp->ps[MD_MOD_AUDIO], "audio.log_scale", 1, (int64_t[]){1});

    md_paramset *pv = sp->ps[MD_MOD_VIDEO];
    sp->video_pos = md_param_add(pv, "video.pos", 2, (int64_t[]){MD_SPACE_VIDEO_FRAMES + 1, FEAT});
    sp->motion_w1 = md_param_add(pv, "video.motion1.weight", 2, (int64_t[]){FEAT, MOTION_IN});
    sp->motion_b1 = md_param_add(pv, "video.motion1.bias", 1, (int64_t[]){FEAT});
    sp->motion_w2 = md_param_add(pv, "video.motion2.weight", 2, (int64_t[]){FEAT, FEAT});
    sp->motion_b2 = md_param_add(pv, "video.motion2.bias", 1, (int64_t[]){FEAT});
    md_tblock_declare(&sp->video_block, pv, "video.block", FEAT, 4, 2, 0);
    sp->pool_q = md_param_add(pv, "video.pool_q", 2, (int64_t[]){FEAT, 1});
    sp->video_proj = md_param_add(pv, "video.proj", 2, (int64_t[]){D, FEAT});
    sp->log_scale[MD_MOD_VIDEO] = md_param_add(pv, "video.log_scale", 1, (int64_t[]){1});

    for (int m = 0; m < 4; m++) {
        md_status st = md_paramset_alloc(sp->ps[m]);
        if (st != MD_OK) {
            md_space_free(sp);
            return st;
        }
    }
    md_init_normal(sp->tok_emb, seed + 1, 0.f, 0.02f);
    md_init_normal(sp->pos_emb, seed + 2, 0.f, 0.01f);
    for (int l = 0; l < TEXT_LAYERS; l++)
        md_tblock_init(&sp->text_blocks[l], seed + 10 + (uint64_t)l * 10, TEXT_LAYERS);
    md_init_const(sp->lnf_w, 1.f);
    md_init_const(sp->lnf_b, 0.f);
    md_init_normal(sp->text_proj, seed + 3, 0.f, 1.f / sqrtf((float)d));
    md_judge_net_init(&sp->image_net, seed + 100);
    md_judge_net_init(&sp->audio_net, seed + 200);
    md_init_normal(sp->image_proj, seed + 4, 0.f, 1.f / sqrtf(FEAT));
    md_init_normal(sp->audio_proj, seed + 5, 0.f, 1.f / sqrtf(FEAT));
    md_init_normal(sp->video_proj, seed + 6, 0.f, 1.f / sqrtf(FEAT));
    md_init_normal(sp->video_pos, seed + 7, 0.f, 0.02f);
    he_uniform(sp->motion_w1, MOTION_IN, seed + 9);
    md_init_const(sp->motion_b1, 0.f);
    md_init_normal(sp->motion_w2, seed + 11, 0.f, 1.f / sqrtf(FEAT));
    md_init_const(sp->motion_b2, 0.f);
    md_tblock_init(&sp->video_block, seed + 400, 1);
    md_init_normal(sp->pool_q, seed + 8, 0.f, 0.02f);
    for (int m = 1; m < 4; m++)
        md_init_const(sp->log_scale[m], logf(1.f / 0.07f));
    return MD_OK;
}

void md_space_free(md_space *sp)
{
    if (!sp)
        return;
    for (int m = 0; m < 4; m++)
        md_paramset_free(sp->ps[m]);
    md_bpe_free(sp->bpe);
    memset(sp, 0, sizeof *sp);
}

/* ---- files ---- */

md_status md_space_save(const md_space *sp, const char *path, const char *recipe_json, const char *data_hash)
{
    md_st_writer *w = md_st_writer_new();
    if (!w)
        return MD_ERR_ALLOC;
    md_status st = MD_OK;
    for (int m = 0; m < 4 && st == MD_OK; m++)
        for (int i = 0; i < md_paramset_count(sp->ps[m]) && st == MD_OK; i++) {
            md_tensor *t = md_paramset_get(sp->ps[m], i);
            st = md_st_writer_add_f32(w, t->name, MD_F16, t->ndim, t->shape, t->data);
        }
    char *tok = st == MD_OK ? md_bpe_to_json(sp->bpe, NULL) : NULL;
    char ver[16], wver[16];
    snprintf(ver, sizeof ver, "%d", MD_SPACE_VERSION);
    snprintf(wver, sizeof wver, "%d", MD_WORLD_VERSION);
    if (st == MD_OK && !tok)
        st = MD_ERR_ALLOC;
    if (st == MD_OK) st = md_st_writer_meta(w, "medley.model", "space");
    if (st == MD_OK) st = md_st_writer_meta(w, "medley.version", ver);
    if (st == MD_OK) st = md_st_writer_meta(w, "world.version", wver);
    if (st == MD_OK) st = md_st_writer_meta(w, "space.dim", "128");
    if (st == MD_OK) st = md_st_writer_meta(w, "tokenizer", tok);
    if (st == MD_OK) st = md_st_writer_meta(w, "data.hash", data_hash ? data_hash : "");
    if (st == MD_OK) st = md_st_writer_meta(w, "train.recipe", recipe_json ? recipe_json : "{}");
    if (st == MD_OK) st = md_st_writer_save(w, path);
    free(tok);
    md_st_writer_free(w);
    return st;
}

md_status md_space_load(md_space *sp, const char *path)
{
    memset(sp, 0, sizeof *sp);
    md_st_file *f;
    md_status st = md_st_open(path, &f);
    if (st != MD_OK)
        return st;
    const char *tok = md_st_meta(f, "tokenizer");
    md_bpe *bpe = NULL;
    st = md_st_check_model(f, path, "space", "embedding space", MD_SPACE_VERSION, "medley train space");
    if (st == MD_OK && !tok) {
        md_log(MD_LOG_ERROR, "%s: the embedding space carries no tokenizer", path);
        st = MD_ERR_FORMAT;
    }
    if (st == MD_OK)
        st = md_bpe_from_json(tok, strlen(tok), path, &bpe);
    if (st == MD_OK)
        st = md_space_init(sp, bpe, 0);
    else
        md_bpe_free(bpe);
    int expected = 0;
    for (int m = 0; m < 4 && st == MD_OK; m++)
        for (int i = 0; i < md_paramset_count(sp->ps[m]) && st == MD_OK; i++) {
            md_tensor *t = md_paramset_get(sp->ps[m], i);
            expected++;
            const md_st_info *in = md_st_find(f, t->name);
            if (!in) {
                md_log(MD_LOG_ERROR, "%s: tensor %s is missing", path, t->name);
                st = MD_ERR_FORMAT;
                break;
            }
            st = md_st_read_f32(f, t->name, t);
        }
    if (st == MD_OK && md_st_count(f) != expected) {
        md_log(MD_LOG_ERROR, "%s: %d tensors, expected %d", path, md_st_count(f), expected);
        st = MD_ERR_FORMAT;
    }
    md_st_close(f);
    if (st != MD_OK)
        md_space_free(sp);
    return st;
}

/* ---- inputs ---- */

int64_t md_space_input_size(md_modality m)
{
    switch (m) {
    case MD_MOD_IMAGE: return md_judge_input_size(MD_WORLD_IMAGE);
    case MD_MOD_AUDIO: return md_judge_input_size(MD_WORLD_AUDIO);
    case MD_MOD_VIDEO: return md_judge_input_size(MD_WORLD_VIDEO);
    default: return MD_SPACE_TEXT_LEN;
    }
}

md_status md_space_prep_sample(const md_world *w, const md_world_sample *s, uint8_t *scratch, float *x)
{
    return md_judge_prep_sample(w, s, scratch, x);
}

int md_space_tokenize(const md_space *sp, const char *text, int32_t *ids)
{
    int32_t bos = md_bpe_token_id(sp->bpe, "<bos>"), eos = md_bpe_token_id(sp->bpe, "<eos>"),
            pad = md_bpe_token_id(sp->bpe, "<pad>");
    ids[0] = bos;
    size_t n = md_bpe_encode(sp->bpe, text, strlen(text), ids + 1, MD_SPACE_TEXT_LEN - 2);
    if (n > MD_SPACE_TEXT_LEN - 2)
        n = MD_SPACE_TEXT_LEN - 2;   /* cut: the rest of a long text is not seen */
    int e = 1 + (int)n;
    ids[e] = eos;
    for (int i = e + 1; i < MD_SPACE_TEXT_LEN; i++)
        ids[i] = pad;
    return e;
}

/* Packs ids [n, MD_SPACE_TEXT_LEN] in place to [n, T] with T the longest
 * text of the batch (<eos> included): short captions then cost what they
 * hold, not the maximum length. Returns T. */
static int64_t pack_ids(int32_t *ids, const int32_t *eos, int64_t n)
{
    int64_t T = 1;
    for (int64_t i = 0; i < n; i++)
        if (eos[i] + 1 > T)
            T = eos[i] + 1;
    for (int64_t i = 0; i < n; i++)
        memmove(ids + i * T, ids + i * MD_SPACE_TEXT_LEN, sizeof(int32_t) * (size_t)T);
    return T;
}

/* ---- encoders ---- */

md_tensor *md_space_text(md_graph *g, const md_space *sp, md_tensor *ids, md_tensor *eos)
{
    int64_t B = ids->shape[0], T = ids->shape[1], d = sp->text_d;
    md_tensor *x = md_embedding(g, sp->tok_emb, ids);               /* [B, T, d] */
    md_tensor *pos = md_slice(g, sp->pos_emb, 0, 0, T);
    x = md_add(g, x, pos);
    for (int l = 0; l < sp->text_layers; l++)
        x = md_tblock_forward(g, &sp->text_blocks[l], x, NULL, true, 0.f);
    x = md_reshape(g, x, 2, (int64_t[]){B * T, d});
    int32_t *rows = md_graph_scratch(g, sizeof(int32_t) * (size_t)B);
    const int32_t *e = (const int32_t *)eos->data;
    for (int64_t b = 0; b < B; b++)
        rows[b] = (int32_t)(b * T + e[b]);
    md_tensor *ri = md_tensor_wrap(g, MD_I32, rows, 1, (int64_t[]){B});
    md_tensor *h = md_embedding(g, x, ri);                           /* [B, d] at <eos> */
    h = md_layernorm(g, h, sp->lnf_w, sp->lnf_b, 1e-5f);
    return md_l2_normalize(g, md_linear(g, h, sp->text_proj, NULL), 1e-6f);
}

md_tensor *md_space_image(md_graph *g, const md_space *sp, md_tensor *x)
{
    md_tensor *logits[MD_ATTR_COUNT];
    md_tensor *h = md_judge_forward(g, &sp->image_net, x, logits);
    return md_l2_normalize(g, md_linear(g, h, sp->image_proj, NULL), 1e-6f);
}

md_tensor *md_space_audio(md_graph *g, const md_space *sp, md_tensor *x)
{
    md_tensor *logits[MD_ATTR_COUNT];
    md_tensor *h = md_judge_forward(g, &sp->audio_net, x, logits);
    return md_l2_normalize(g, md_linear(g, h, sp->audio_proj, NULL), 1e-6f);
}

md_tensor *md_space_video(md_graph *g, const md_space *sp, md_tensor *x)
{
    const int64_t B = x->shape[0], F = MD_SPACE_VIDEO_FRAMES, S = MD_WORLD_SIZE;
    const int64_t fsz = (int64_t)MD_JUDGE_IMAGE_CHANNELS * S * S, isz = md_space_input_size(MD_MOD_VIDEO);
    MD_ASSERT(md_numel(x) == B * isz);
    /* host side: the frames packed for the image network, and the motion
     * features of the ink path (pixels -> about [-1, 1]) */
    float *frames = md_graph_scratch(g, sizeof(float) * (size_t)(B * F * fsz));
    float *mot = md_graph_scratch(g, sizeof(float) * (size_t)(B * MOTION_IN));
    for (int64_t b = 0; b < B; b++) {
        const float *xb = x->data + b * isz, *traj = xb + F * fsz;
        memcpy(frames + b * F * fsz, xb, sizeof(float) * (size_t)(F * fsz));
        for (int t = 0; t < 2 * MD_WORLD_FRAMES; t++) {
            mot[b * MOTION_IN + t] = (traj[t] - 0.5f * S) / (0.5f * S);
            mot[b * MOTION_IN + 2 * MD_WORLD_FRAMES + t] = (traj[t] - traj[t % 2]) / 16.f;
        }
    }
    /* the image encoder's network, frozen: its features are constants here */
    bool grad = md_graph_grad_enabled(g);
    md_graph_set_grad(g, false);
    md_tensor *logits[MD_ATTR_COUNT];
    md_tensor *f = md_judge_forward(g, &sp->image_net,
                                    md_tensor_wrap(g, MD_F32, frames, 4, (int64_t[]){B * F, MD_JUDGE_IMAGE_CHANNELS, S, S}),
                                    logits);
    md_graph_set_grad(g, grad);
    f = md_tensor_wrap(g, MD_F32, f->data, 3, (int64_t[]){B, F, FEAT});
    md_tensor *m = md_tensor_wrap(g, MD_F32, mot, 2, (int64_t[]){B, MOTION_IN});
    m = md_linear(g, md_relu(g, md_linear(g, m, sp->motion_w1, sp->motion_b1)), sp->motion_w2, sp->motion_b2);
    md_tensor *parts[2] = {f, md_reshape(g, m, 3, (int64_t[]){B, 1, FEAT})};
    md_tensor *h = md_add(g, md_concat(g, parts, 2, 1), sp->video_pos);   /* [B, F + 1, 128] */
    h = md_tblock_forward(g, &sp->video_block, h, NULL, false, 0.f);
    const int64_t N = F + 1;
    md_tensor *hf = md_reshape(g, h, 2, (int64_t[]){B * N, FEAT});
    md_tensor *s = md_matmul(g, hf, sp->pool_q, false, false);            /* [B*N, 1] */
    s = md_softmax(g, md_reshape(g, s, 3, (int64_t[]){B, 1, N}));
    md_tensor *pooled = md_reshape(g, md_bmm(g, s, h, false, false), 2, (int64_t[]){B, FEAT});
    return md_l2_normalize(g, md_linear(g, pooled, sp->video_proj, NULL), 1e-6f);
}

static md_tensor *encode(md_graph *g, const md_space *sp, md_modality m, md_tensor *x, md_tensor *eos)
{
    switch (m) {
    case MD_MOD_TEXT: return md_space_text(g, sp, x, eos);
    case MD_MOD_IMAGE: return md_space_image(g, sp, x);
    case MD_MOD_AUDIO: return md_space_audio(g, sp, x);
    default: return md_space_video(g, sp, x);
    }
}

static md_tensor *wrap_input(md_graph *g, md_modality m, void *data, int64_t n)
{
    switch (m) {
    case MD_MOD_TEXT: return md_tensor_wrap(g, MD_I32, data, 2, (int64_t[]){n, MD_SPACE_TEXT_LEN});
    case MD_MOD_IMAGE:
        return md_tensor_wrap(g, MD_F32, data, 4, (int64_t[]){n, MD_JUDGE_IMAGE_CHANNELS, MD_WORLD_SIZE, MD_WORLD_SIZE});
    case MD_MOD_AUDIO: return md_tensor_wrap(g, MD_F32, data, 4, (int64_t[]){n, 1, 40, 101});
    default: return md_tensor_wrap(g, MD_F32, data, 2, (int64_t[]){n, md_space_input_size(MD_MOD_VIDEO)});
    }
}

md_status md_space_embed(const md_space *sp, md_graph *g, md_modality m, const void *inputs, int64_t n, float *out)
{
    const int64_t B = m == MD_MOD_VIDEO ? 16 : 64;
    bool grad = md_graph_grad_enabled(g), train = md_graph_training(g);
    md_graph_set_grad(g, false);
    md_graph_set_training(g, false);
    int32_t *ids = NULL, *eos = NULL;
    if (m == MD_MOD_TEXT) {
        ids = malloc(sizeof(int32_t) * (size_t)(B * MD_SPACE_TEXT_LEN));
        eos = malloc(sizeof(int32_t) * (size_t)B);
        if (!ids || !eos) {
            free(ids);
            free(eos);
            return MD_ERR_ALLOC;
        }
    }
    const int64_t isz = md_space_input_size(m);
    for (int64_t i0 = 0; i0 < n; i0 += B) {
        int64_t nb = n - i0 < B ? n - i0 : B;
        md_graph_reset(g);
        md_tensor *x, *e = NULL;
        if (m == MD_MOD_TEXT) {
            const char *const *texts = inputs;
            for (int64_t i = 0; i < nb; i++)
                eos[i] = md_space_tokenize(sp, texts[i0 + i], ids + i * MD_SPACE_TEXT_LEN);
            int64_t T = pack_ids(ids, eos, nb);
            x = md_tensor_wrap(g, MD_I32, ids, 2, (int64_t[]){nb, T});
            e = md_tensor_wrap(g, MD_I32, eos, 1, (int64_t[]){nb});
        } else {
            x = wrap_input(g, m, (void *)((const float *)inputs + i0 * isz), nb);
        }
        md_tensor *z = encode(g, sp, m, x, e);
        memcpy(out + i0 * MD_SPACE_DIM, z->data, sizeof(float) * (size_t)(nb * MD_SPACE_DIM));
    }
    md_graph_reset(g);
    md_graph_set_grad(g, grad);
    md_graph_set_training(g, train);
    free(ids);
    free(eos);
    return MD_OK;
}

md_status md_space_scores(const md_space *sp, md_graph *g, md_modality m, const void *inputs, int n,
                          const float *cond, float *scores)
{
    /* embedded EMBED at a time: the graph holds that many inputs, whatever n */
    enum { EMBED = 8 };
    float *v = malloc(sizeof(float) * EMBED * MD_SPACE_DIM);
    md_status st = v ? MD_OK : MD_ERR_ALLOC;
    const size_t isz = m == MD_MOD_TEXT ? sizeof(const char *) : sizeof(float) * (size_t)md_space_input_size(m);
    for (int e = 0; st == MD_OK && e < n; e += EMBED) {
        const int ne = n - e < EMBED ? n - e : EMBED;
        st = md_space_embed(sp, g, m, (const char *)inputs + isz * (size_t)e, ne, v);
        for (int i = 0; st == MD_OK && i < ne; i++) {
            float s = 0.f;
            for (int d = 0; d < MD_SPACE_DIM; d++)
                s += v[(size_t)i * MD_SPACE_DIM + d] * cond[d];
            if (m == MD_MOD_IMAGE && sp->probe)
                s = md_probe_score(sp->probe, cond, v + (size_t)i * MD_SPACE_DIM) + sp->probe->cos_weight * s;
            scores[e + i] = s;
        }
    }
    free(v);
    return st;
}

md_status md_space_pick_closest(const md_space *sp, md_graph *g, md_modality m, const void *inputs, int n,
                                const float *cond, int *best, float *score)
{
    float *sc = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    md_status st = sc ? md_space_scores(sp, g, m, inputs, n, cond, sc) : MD_ERR_ALLOC;
    float bs = -INFINITY;
    *best = 0;
    for (int i = 0; st == MD_OK && i < n; i++)
        if (sc[i] > bs) {   /* the first on a tie */
            bs = sc[i];
            *best = i;
        }
    if (score)
        *score = bs;
    free(sc);
    return st;
}

md_status md_space_compose(const float *v, const float *w, int n, float *out)
{
    if (n < 1) {
        md_log(MD_LOG_ERROR, "composition: no inputs");
        return MD_ERR_INVALID;
    }
    double tw = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(w[i])) {
            md_log(MD_LOG_ERROR, "composition: weight %d is not a finite number", i + 1);
            return MD_ERR_INVALID;
        }
        tw += w[i];
    }
    if (fabs(tw) < 1e-6) {
        md_log(MD_LOG_ERROR, "composition: the weights add up to zero (%g); give the inputs a non-zero total weight", tw);
        return MD_ERR_INVALID;
    }
    double acc[MD_SPACE_DIM] = {0}, nn = 0;
    for (int k = 0; k < MD_SPACE_DIM; k++) {
        for (int i = 0; i < n; i++)
            acc[k] += (double)w[i] * v[i * MD_SPACE_DIM + k];
        acc[k] /= tw;
        nn += acc[k] * acc[k];
    }
    if (!(nn > 1e-12)) {
        md_log(MD_LOG_ERROR, "composition: the weighted inputs cancel out (the result has no direction)");
        return MD_ERR_INVALID;
    }
    double inv = 1.0 / sqrt(nn);
    for (int k = 0; k < MD_SPACE_DIM; k++)
        out[k] = (float)(acc[k] * inv);
    return MD_OK;
}

/* ---- training ---- */

void md_space_train_default_opts(md_space_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps[MD_MOD_IMAGE] = 7000;
    o->steps[MD_MOD_AUDIO] = 1500;
    o->steps[MD_MOD_VIDEO] = 1500;
    o->batch[MD_MOD_IMAGE] = 64;
    o->batch[MD_MOD_AUDIO] = 64;
    o->batch[MD_MOD_VIDEO] = 32;
    o->lr = 1e-3f;
    o->digit_weight = 0.3f;
    o->seed = 1;
}

#define BPE_VOCAB 1024
#define BPE_SAMPLES 6000   /* per kind, 4 captions each */

static md_status train_tokenizer(const md_world *w, uint64_t seed, md_bpe **out)
{
    int64_t n = 3 * BPE_SAMPLES * MD_CAPTIONS_PER_SAMPLE;
    char *buf = malloc((size_t)n * MD_CAPTION_MAX);
    const char **texts = malloc(sizeof(char *) * (size_t)n);
    if (!buf || !texts) {
        free(buf);
        free(texts);
        return MD_ERR_ALLOC;
    }
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < BPE_SAMPLES; i++) {
            md_world_sample s;
            md_world_draw(w, seed, MD_SPLIT_TRAIN, (md_world_kind)k, i, &s);
            for (int v = 0; v < MD_CAPTIONS_PER_SAMPLE; v++) {
                int64_t j = ((int64_t)k * BPE_SAMPLES + i) * MD_CAPTIONS_PER_SAMPLE + v;
                md_caption_make(&s, v, buf + j * MD_CAPTION_MAX, MD_CAPTION_MAX, NULL);
                texts[j] = buf + j * MD_CAPTION_MAX;
            }
        }
    md_status st = md_bpe_train(texts, NULL, n, BPE_VOCAB, NULL, out);
    free(texts);
    free(buf);
    return st;
}

/* Symmetric InfoNCE between unit rows za, zb [B, D] with logit scale
 * exp(log_scale) (CLIP's loss). */
static md_tensor *info_nce(md_graph *g, md_tensor *za, md_tensor *zb, md_tensor *log_scale, int64_t B)
{
    int32_t *t = md_graph_scratch(g, sizeof(int32_t) * (size_t)B);
    for (int64_t i = 0; i < B; i++)
        t[i] = (int32_t)i;
    md_tensor *tg = md_tensor_wrap(g, MD_I32, t, 1, (int64_t[]){B});
    md_tensor *logits = md_mul(g, md_matmul(g, za, zb, false, true), md_exp(g, log_scale));
    md_tensor *la = md_cross_entropy(g, logits, tg, 0.f, -1);
    md_tensor *lb = md_cross_entropy(g, md_transpose(g, logits, 0, 1), tg, 0.f, -1);
    return md_scale(g, md_add(g, la, lb), 0.5f);
}

/* A caption of kind k that states only digit d (wording by variant):
 * the world sample with every other attribute unset. */
/* Images and videos come to training in groups of GROUP samples that
 * share every attribute but the digit (colours, place, size, motion; same
 * style), each with another digit: within a group only the digit tells the
 * captions apart, so the encoders must learn to read it. (Drawn at random,
 * colour and place alone match most captions in a batch, and the digit is
 * never learned: the first space read image digits at 20%.) Held-out
 * digit-ink and digit-motion pairs are never made. Audio is drawn as is. */
#define GROUP 8
#define TEXT_HOLD 0.3

static md_status draw_batch(const md_world *w, uint64_t seed, md_world_kind kind, int64_t step, int64_t B,
                            md_world_sample *out)
{
    for (int64_t b = 0; b < B; b++) {
        int64_t idx = step * B + b;
        md_status st;
        if (kind == MD_WORLD_AUDIO || b % GROUP == 0) {
            if ((st = md_world_draw(w, seed, MD_SPLIT_TRAIN, kind, idx, &out[b])) != MD_OK)
                return st;
            continue;
        }
        const int64_t first = b - b % GROUP;
        const md_world_sample *a = &out[first];
        bool placed = false;
        for (int tries = 0; tries < 400 && !placed; tries++) {
            md_world_sample m;
            if ((st = md_world_draw(w, seed, MD_SPLIT_TRAIN, kind, ((int64_t)1 << 40) + idx * 512 + tries, &m)) != MD_OK)
                return st;
            bool used = m.attr[MD_ATTR_STYLE] != a->attr[MD_ATTR_STYLE];
            for (int64_t j = first; j < b && !used; j++)
                used = out[j].attr[MD_ATTR_DIGIT] == m.attr[MD_ATTR_DIGIT];
            int at[MD_ATTR_COUNT];
            memcpy(at, a->attr, sizeof at);
            at[MD_ATTR_DIGIT] = m.attr[MD_ATTR_DIGIT];
            at[MD_ATTR_SPEAKER] = m.attr[MD_ATTR_SPEAKER];   /* the voice comes with the soundtrack */
            if (used || md_world_is_heldout(at))
                continue;
            memcpy(m.attr, at, sizeof at);
            m.cx = a->cx;
            m.cy = a->cy;
            m.box = a->box;
            memcpy(m.ink_rgb, a->ink_rgb, sizeof m.ink_rgb);
            memcpy(m.bg_rgb, a->bg_rgb, sizeof m.bg_rgb);
            m.dx = a->dx;
            m.dy = a->dy;
            out[b] = m;
            placed = true;
        }
        if (!placed && (st = md_world_draw(w, seed, MD_SPLIT_TRAIN, kind, idx, &out[b])) != MD_OK)
            return st;
    }
    return MD_OK;
}

/* One alignment stage: modality m against text; text trains in stage 1
 * only. */
static md_status train_stage(md_space *sp, const md_world *w, const md_space_train_opts *o, md_modality m)
{
    const int64_t steps = o->steps[m], B = o->batch[m], isz = md_space_input_size(m);
    if (steps < 1)
        return MD_OK;
    const bool train_text = m == MD_MOD_IMAGE;
    md_world_kind kind = m == MD_MOD_IMAGE ? MD_WORLD_IMAGE : m == MD_MOD_AUDIO ? MD_WORLD_AUDIO : MD_WORLD_VIDEO;
    md_adamw opt_m, opt_t;
    md_status st = md_adamw_init(&opt_m, sp->ps[m], 0.9f, 0.98f, 1e-6f, 0.05f);
    if (st != MD_OK)
        return st;
    if (train_text && (st = md_adamw_init(&opt_t, sp->ps[MD_MOD_TEXT], 0.9f, 0.98f, 1e-6f, 0.05f)) != MD_OK) {
        md_adamw_free(&opt_m);
        return st;
    }
    /* no decay on the temperature */
    for (int i = 0; i < md_paramset_count(sp->ps[m]); i++)
        if (md_paramset_get(sp->ps[m], i) == sp->log_scale[m])
            md_adamw_set_decay(&opt_m, i, false);
    const int T = md_threads_get();
    const size_t vsz = (size_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3;
    md_graph *g = md_graph_new((size_t)1 << 26);
    float *x = malloc(sizeof(float) * (size_t)(isz * B));
    /* text rows: B captions, then the ten digit-only captions */
    const int64_t NT = B + 10;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(NT * MD_SPACE_TEXT_LEN));
    int32_t *eos = malloc(sizeof(int32_t) * (size_t)NT);
    int32_t *digit = malloc(sizeof(int32_t) * (size_t)B);
    md_world_sample *smp = malloc(sizeof(md_world_sample) * (size_t)B);
    uint8_t *scratch = malloc(vsz * (size_t)T);
    if (!g || !x || !ids || !eos || !digit || !smp || !scratch) {
        st = MD_ERR_ALLOC;
        goto done;
    }
    md_graph_set_seed(g, o->seed + (uint64_t)m);
    for (int64_t step = 0; step < steps; step++) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        if ((st = draw_batch(w, o->seed + 100, kind, step, B, smp)) != MD_OK)
            break;
        volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 2) num_threads(T)
        for (int64_t b = 0; b < B; b++) {
            const md_world_sample s = smp[b];
            int64_t idx = step * B + b;
            float *xb = x + isz * b;
            uint8_t *sc = scratch + vsz * (size_t)omp_get_thread_num();
            if (md_space_prep_sample(w, &s, sc, xb) != MD_OK) {
                bad = 1;
                continue;
            }
            char cap[MD_CAPTION_MAX];
            int variant = (int)(md_hash64(o->seed ^ (uint64_t)idx * 0x9e3779b97f4a7c15ull) % 1000);
            md_caption_make(&s, variant, cap, sizeof cap, NULL);
            eos[b] = md_space_tokenize(sp, cap, ids + b * MD_SPACE_TEXT_LEN);
            digit[b] = s.attr[MD_ATTR_DIGIT];
        }
        for (int d = 0; d < 10 && !bad; d++) {
            char cap[MD_CAPTION_MAX];
            if (md_caption_digit(kind, d, md_hash64(o->seed * 1000003u + (uint64_t)step * 10 + (uint64_t)d), cap,
                              sizeof cap) != MD_OK)
                bad = 1;
            else
                eos[B + d] = md_space_tokenize(sp, cap, ids + (B + d) * MD_SPACE_TEXT_LEN);
        }
        if (bad) {
            st = MD_ERR;
            break;
        }
        md_graph_reset(g);
        md_paramset_zero_grad(sp->ps[m]);
        if (train_text)
            md_paramset_zero_grad(sp->ps[MD_MOD_TEXT]);
        md_tensor *zall;
        int64_t tlen = pack_ids(ids, eos, NT);
        md_tensor *it = md_tensor_wrap(g, MD_I32, ids, 2, (int64_t[]){NT, tlen});
        md_tensor *et = md_tensor_wrap(g, MD_I32, eos, 1, (int64_t[]){NT});
        /* stage 1 holds the text encoder at its start for the first
         * TEXT_HOLD of the steps: the image encoder first learns to find
         * the captions' (random but consistent) words, the digit among
         * them; a text encoder trained from the first step instead drops
         * the digit, which the image side cannot yet see, and the two
         * settle on colour and place alone */
        const bool text_now = train_text && step >= (int64_t)(TEXT_HOLD * (double)steps);
        if (text_now) {
            zall = md_space_text(g, sp, it, et);
        } else {
            /* frozen text: its vectors are constants of this step */
            md_graph_set_grad(g, false);
            md_tensor *z0 = md_space_text(g, sp, it, et);
            md_graph_set_grad(g, true);
            zall = md_tensor_wrap(g, MD_F32, z0->data, 2, (int64_t[]){NT, MD_SPACE_DIM});
        }
        md_tensor *zt = md_slice(g, zall, 0, 0, B), *zd = md_slice(g, zall, 0, B, NT);
        md_tensor *zm = encode(g, sp, m, wrap_input(g, m, x, B), NULL);
        md_tensor *loss = info_nce(g, zm, zt, sp->log_scale[m], B);
        if (o->digit_weight > 0) {
            /* each sample against the ten digit-only captions, at the
             * pair's temperature held constant (ten near-even guesses would
             * otherwise pull the learned scale down, and InfoNCE with it) */
            md_tensor *ld = md_scale(g, md_matmul(g, zm, zd, false, true), expf(sp->log_scale[m]->data[0]));
            md_tensor *ce = md_cross_entropy(g, ld, md_tensor_wrap(g, MD_I32, digit, 1, (int64_t[]){B}), 0.f, -1);
            loss = md_add(g, loss, md_scale(g, ce, o->digit_weight));
        }
        md_graph_backward(g, loss);
        md_paramset_finish_grads(sp->ps[m]);
        md_clip_grad_norm(sp->ps[m], 1.0f);
        float lr = md_lr_warmup_cosine(step, steps / 20 + 1, steps, o->lr, o->lr * 0.05f);
        md_adamw_step(&opt_m, lr);
        if (text_now) {
            md_paramset_finish_grads(sp->ps[MD_MOD_TEXT]);
            md_clip_grad_norm(sp->ps[MD_MOD_TEXT], 1.0f);
            md_adamw_step(&opt_t, lr);
        }
        if (sp->log_scale[m]->data[0] > LOG_SCALE_MAX)
            sp->log_scale[m]->data[0] = LOG_SCALE_MAX;
        if (o->progress)
            o->progress(m, step, steps, loss->data[0], o->user);
    }
done:
    if (g && getenv("MEDLEY_PROFILE"))
        md_graph_profile_print(g, stderr);
    free(scratch);
    free(smp);
    free(digit);
    free(eos);
    free(ids);
    free(x);
    md_graph_free(g);
    md_adamw_free(&opt_m);
    if (train_text)
        md_adamw_free(&opt_t);
    return st;
}

md_status md_space_train(md_space *sp, const md_world *w, const md_space_train_opts *o)
{
    md_bpe *bpe = NULL;
    md_status st = train_tokenizer(w, o->seed, &bpe);
    if (st != MD_OK)
        return st;
    if ((st = md_space_init(sp, bpe, o->seed)) != MD_OK) {
        md_bpe_free(bpe);
        return st;
    }
    if ((st = train_stage(sp, w, o, MD_MOD_IMAGE)) != MD_OK)
        return st;
    if ((st = train_stage(sp, w, o, MD_MOD_AUDIO)) != MD_OK)
        return st;
    return train_stage(sp, w, o, MD_MOD_VIDEO);
}

/* ---- supervised baseline ---- */

/* Prepares batch b of modality m from the world (train split): inputs x,
 * digits y. Returns false if a draw failed. */
static bool supervised_batch(const md_world *w, uint64_t seed, md_world_split split, md_modality m, int64_t first,
                             int64_t B, bool items, float *x, int32_t *y, uint8_t *scratch)
{
    md_world_kind kind = (md_world_kind)(m - 1);
    const int64_t isz = md_space_input_size(m);
    const size_t vsz = (size_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3;
    int64_t all = items ? md_world_enumerate_count(w, split, kind) : 0;
    volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 2) num_threads(md_threads_get())
    for (int64_t b = 0; b < B; b++) {
        md_world_sample s;
        md_status st = items ? md_world_draw_item(w, seed, split, kind, (first + b) % all, &s)
                             : md_world_draw(w, seed, split, kind, first + b, &s);
        uint8_t *sc = scratch + vsz * (size_t)omp_get_thread_num();
        if (st != MD_OK) {
            bad = 1;
            continue;
        }
        y[b] = s.attr[MD_ATTR_DIGIT];
        if (m == MD_MOD_VIDEO) {
            md_world_render_video(w, &s, sc, NULL);
            md_judge_prep_frames(sc, x + isz * b);
        } else if (md_space_prep_sample(w, &s, sc, x + isz * b) != MD_OK) {
            bad = 1;
        }
    }
    return !bad;
}

md_status md_space_supervised_baseline(const md_world *w, const md_space_train_opts *o, md_world_split split,
                                       int64_t n, double acc[4])
{
    for (int m = 0; m < 4; m++)
        acc[m] = NAN;
    md_bpe *bpe = NULL;
    const char *one = "0";
    md_status st = md_bpe_train(&one, NULL, 1, 300, NULL, &bpe);   /* the text encoder is not used */
    md_space sp;
    if (st != MD_OK || (st = md_space_init(&sp, bpe, o->seed + 77)) != MD_OK) {
        md_bpe_free(bpe);
        return st;
    }
    const size_t vsz = (size_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3;
    uint8_t *scratch = malloc(vsz * (size_t)md_threads_get());
    md_graph *g = md_graph_new((size_t)1 << 26);
    if (!scratch || !g)
        st = MD_ERR_ALLOC;
    for (int m = 1; m < 4 && st == MD_OK; m++) {
        const int64_t B = o->batch[m], steps = o->steps[m], isz = md_space_input_size(m);
        md_paramset *head = md_paramset_new();
        md_tensor *hw = head ? md_param_add(head, "head.weight", 2, (int64_t[]){10, MD_SPACE_DIM}) : NULL;
        md_tensor *hb = head ? md_param_add(head, "head.bias", 1, (int64_t[]){10}) : NULL;
        float *x = malloc(sizeof(float) * (size_t)(isz * (B > 64 ? B : 64)));
        int32_t *y = malloc(sizeof(int32_t) * (size_t)(B > 64 ? B : 64));
        md_adamw om, oh;
        bool ok = head && x && y && md_paramset_alloc(head) == MD_OK;
        if (ok) {
            md_init_uniform(hw, o->seed + 5, -0.1f, 0.1f);
            md_init_const(hb, 0.f);
            ok = md_adamw_init(&om, sp.ps[m], 0.9f, 0.98f, 1e-6f, 0.05f) == MD_OK;
            if (ok && md_adamw_init(&oh, head, 0.9f, 0.98f, 1e-6f, 0.0f) != MD_OK) {
                md_adamw_free(&om);
                ok = false;
            }
        }
        if (!ok)
            st = MD_ERR_ALLOC;
        for (int64_t step = 0; st == MD_OK && step < steps; step++) {
            if (o->cancel && *o->cancel) {
                st = MD_ABORTED;
                break;
            }
            if (!supervised_batch(w, o->seed + 200, MD_SPLIT_TRAIN, (md_modality)m, step * B, B, false, x, y, scratch)) {
                st = MD_ERR;
                break;
            }
            md_graph_reset(g);
            md_paramset_zero_grad(sp.ps[m]);
            md_paramset_zero_grad(head);
            /* the unit vector, scaled as the space's logits are, then the head */
            md_tensor *z = md_scale(g, encode(g, &sp, (md_modality)m, wrap_input(g, (md_modality)m, x, B), NULL), 10.f);
            md_tensor *loss = md_cross_entropy(g, md_linear(g, z, hw, hb),
                                               md_tensor_wrap(g, MD_I32, y, 1, (int64_t[]){B}), 0.f, -1);
            md_graph_backward(g, loss);
            md_paramset_finish_grads(sp.ps[m]);
            md_paramset_finish_grads(head);
            float lr = md_lr_warmup_cosine(step, steps / 20 + 1, steps, o->lr, o->lr * 0.05f);
            md_adamw_step(&om, lr);
            md_adamw_step(&oh, lr);
            if (o->progress)
                o->progress(m, step, steps, loss->data[0], o->user);
        }
        /* score: n samples drawn as md_space_evaluate does (seed 17) */
        int64_t right = 0;
        md_graph_set_grad(g, false);
        for (int64_t i0 = 0; st == MD_OK && i0 < n; i0 += 64) {
            int64_t nb = n - i0 < 64 ? n - i0 : 64;
            if (m == MD_MOD_AUDIO) {
                /* audio: the split's items spread evenly, as in the evaluation */
                int64_t all = md_world_enumerate_count(w, split, MD_WORLD_AUDIO);
                bool ok2 = true;
                for (int64_t i = 0; i < nb; i++)
                    ok2 &= supervised_batch(w, 17, split, MD_MOD_AUDIO, (i0 + i) * all / n, 1, true, x + isz * i,
                                            y + i, scratch);
                if (!ok2)
                    st = MD_ERR;
            } else if (!supervised_batch(w, 17, split, (md_modality)m, i0, nb, false, x, y, scratch)) {
                st = MD_ERR;
            }
            if (st != MD_OK)
                break;
            md_graph_reset(g);
            md_tensor *z = md_scale(g, encode(g, &sp, (md_modality)m, wrap_input(g, (md_modality)m, x, nb), NULL), 10.f);
            md_tensor *lg = md_linear(g, z, hw, hb);
            for (int64_t i = 0; i < nb; i++) {
                int best = 0;
                for (int c = 1; c < 10; c++)
                    if (lg->data[i * 10 + c] > lg->data[i * 10 + best])
                        best = c;
                right += best == y[i];
            }
        }
        md_graph_set_grad(g, true);
        if (st == MD_OK)
            acc[m] = (double)right / (double)n;
        if (ok) {
            md_adamw_free(&om);
            md_adamw_free(&oh);
        }
        md_paramset_free(head);
        free(x);
        free(y);
    }
    md_graph_free(g);
    free(scratch);
    md_space_free(&sp);
    return st;
}

/* ---- evaluation ---- */

/* Digit prompts: the mean of a few phrasings per digit, renormalised. */
static md_status digit_prompts(const md_space *sp, md_graph *g, float *protos)
{
    static const char *const forms[] = {"%s", "the number %s", "the digit %s", "a %s"};
    enum { NF = 4 };
    char buf[10 * NF * 2][32];
    const char *texts[10 * NF * 2];
    for (int d = 0; d < 10; d++)
        for (int f = 0; f < NF; f++)
            for (int wv = 0; wv < 2; wv++) {
                int k = (d * NF + f) * 2 + wv;
                char word[8];
                snprintf(word, sizeof word, "%d", d);
                snprintf(buf[k], sizeof buf[k], forms[f], wv ? md_digit_words[d] : word);
                texts[k] = buf[k];
            }
    float *z = malloc(sizeof(float) * 10 * NF * 2 * MD_SPACE_DIM);
    if (!z)
        return MD_ERR_ALLOC;
    md_status st = md_space_embed(sp, g, MD_MOD_TEXT, texts, 10 * NF * 2, z);
    for (int d = 0; st == MD_OK && d < 10; d++) {
        float w1[2 * NF];
        for (int i = 0; i < 2 * NF; i++)
            w1[i] = 1.f;
        st = md_space_compose(z + (size_t)d * 2 * NF * MD_SPACE_DIM, w1, 2 * NF, protos + d * MD_SPACE_DIM);
    }
    free(z);
    return st;
}

static float dot(const float *a, const float *b)
{
    float s = 0;
    for (int k = 0; k < MD_SPACE_DIM; k++)
        s += a[k] * b[k];
    return s;
}

/* Rank of gallery item `want` for query q among n (0 = best). */
static int rank_of(const float *q, const float *gal, int64_t n, int64_t want)
{
    float sw = dot(q, gal + want * MD_SPACE_DIM);
    int r = 0;
    for (int64_t j = 0; j < n; j++)
        if (j != want && dot(q, gal + j * MD_SPACE_DIM) > sw)
            r++;
    return r;
}

static int64_t nearest(const float *q, const float *gal, int64_t n)
{
    int64_t b = 0;
    float bs = -2.f;
    for (int64_t j = 0; j < n; j++) {
        float s = dot(q, gal + j * MD_SPACE_DIM);
        if (s > bs) {
            bs = s;
            b = j;
        }
    }
    return b;
}

md_status md_space_evaluate(const md_space *sp, const md_world *w, md_world_split split, int64_t n,
                            md_space_eval *out)
{
    memset(out, 0, sizeof *out);
    double t0 = md_time_now();
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            out->r1[a][b] = out->r5[a][b] = out->agree[a][b] = NAN;
    for (int a = 0; a < 4; a++)
        out->zeroshot[a] = NAN;
    if (n < 2) {
        md_log(MD_LOG_ERROR, "space evaluation: need at least 2 samples");
        return MD_ERR_INVALID;
    }
    out->n = n;
    /* per kind k: n samples, their embeddings z[k], the embeddings of their
     * full captions (variant 0) c[k], digits d[k]; the videos' soundtracks
     * za. */
    float *z[3], *c[3], *za = malloc(sizeof(float) * (size_t)(n * MD_SPACE_DIM));
    int *dg[3];
    char *capbuf = malloc((size_t)n * MD_CAPTION_MAX);
    const char **caps = malloc(sizeof(char *) * (size_t)n);
    md_graph *g = md_graph_new((size_t)1 << 24);
    md_status st = za && capbuf && caps && g ? MD_OK : MD_ERR_ALLOC;
    for (int k = 0; k < 3; k++) {
        z[k] = malloc(sizeof(float) * (size_t)(n * MD_SPACE_DIM));
        c[k] = malloc(sizeof(float) * (size_t)(n * MD_SPACE_DIM));
        dg[k] = malloc(sizeof(int) * (size_t)n);
        if (!z[k] || !c[k] || !dg[k])
            st = MD_ERR_ALLOC;
    }
    const size_t vsz = (size_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3;
    for (int k = 0; k < 3 && st == MD_OK; k++) {
        md_modality m = (md_modality)(k + 1);
        int64_t isz = md_space_input_size(m);
        float *x = malloc(sizeof(float) * (size_t)(isz * n));
        float *xa = k == MD_WORLD_VIDEO ? malloc(sizeof(float) * (size_t)(md_space_input_size(MD_MOD_AUDIO) * n)) : NULL;
        uint8_t *scratch = malloc(vsz * (size_t)md_threads_get());
        if (!x || !scratch || (k == MD_WORLD_VIDEO && !xa)) {
            free(x);
            free(xa);
            free(scratch);
            st = MD_ERR_ALLOC;
            break;
        }
        int64_t items = md_world_enumerate_count(w, split, (md_world_kind)k);
        volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 4) num_threads(md_threads_get())
        for (int64_t i = 0; i < n; i++) {
            md_world_sample s;
            md_status s2 = k == MD_WORLD_AUDIO ? md_world_draw_item(w, 17, split, (md_world_kind)k, i * items / n, &s)
                                               : md_world_draw(w, 17, split, (md_world_kind)k, i, &s);
            uint8_t *sc = scratch + vsz * (size_t)omp_get_thread_num();
            if (s2 != MD_OK) {
                bad = 1;
                continue;
            }
            dg[k][i] = s.attr[MD_ATTR_DIGIT];
            if (k == MD_WORLD_VIDEO) {
                float audio[MD_WORLD_AUDIO_SAMPLES];
                md_world_render_video(w, &s, sc, audio);
                md_judge_prep_frames(sc, x + isz * i);
                if (md_judge_prep_audio(audio, xa + md_space_input_size(MD_MOD_AUDIO) * i) != MD_OK)
                    bad = 1;
            } else if (md_space_prep_sample(w, &s, sc, x + isz * i) != MD_OK) {
                bad = 1;
            }
            md_caption_make(&s, 0, capbuf + i * MD_CAPTION_MAX, MD_CAPTION_MAX, NULL);
            caps[i] = capbuf + i * MD_CAPTION_MAX;
        }
        if (bad)
            st = MD_ERR;
        if (st == MD_OK) st = md_space_embed(sp, g, m, x, n, z[k]);
        if (st == MD_OK) st = md_space_embed(sp, g, MD_MOD_TEXT, caps, n, c[k]);
        if (st == MD_OK && xa) st = md_space_embed(sp, g, MD_MOD_AUDIO, xa, n, za);
        free(x);
        free(xa);
        free(scratch);
    }
    float protos[10 * MD_SPACE_DIM];
    if (st == MD_OK)
        st = digit_prompts(sp, g, protos);
    if (st == MD_OK) {
        /* instance retrieval: X <-> its caption; video <-> its soundtrack */
        for (int k = 0; k < 3; k++) {
            int m = k + 1;
            int64_t h1[2] = {0, 0}, h5[2] = {0, 0};
            for (int64_t i = 0; i < n; i++) {
                int ra = rank_of(z[k] + i * MD_SPACE_DIM, c[k], n, i);   /* X -> text */
                int rb = rank_of(c[k] + i * MD_SPACE_DIM, z[k], n, i);   /* text -> X */
                h1[0] += ra < 1; h5[0] += ra < 5;
                h1[1] += rb < 1; h5[1] += rb < 5;
            }
            out->r1[m][MD_MOD_TEXT] = (double)h1[0] / (double)n;
            out->r5[m][MD_MOD_TEXT] = (double)h5[0] / (double)n;
            out->r1[MD_MOD_TEXT][m] = (double)h1[1] / (double)n;
            out->r5[MD_MOD_TEXT][m] = (double)h5[1] / (double)n;
            int64_t zs = 0;
            for (int64_t i = 0; i < n; i++)
                zs += nearest(z[k] + i * MD_SPACE_DIM, protos, 10) == dg[k][i];
            out->zeroshot[m] = (double)zs / (double)n;
        }
        int64_t h1[2] = {0, 0}, h5[2] = {0, 0};
        for (int64_t i = 0; i < n; i++) {
            int ra = rank_of(z[MD_WORLD_VIDEO] + i * MD_SPACE_DIM, za, n, i);
            int rb = rank_of(za + i * MD_SPACE_DIM, z[MD_WORLD_VIDEO], n, i);
            h1[0] += ra < 1; h5[0] += ra < 5;
            h1[1] += rb < 1; h5[1] += rb < 5;
        }
        out->r1[MD_MOD_VIDEO][MD_MOD_AUDIO] = (double)h1[0] / (double)n;
        out->r5[MD_MOD_VIDEO][MD_MOD_AUDIO] = (double)h5[0] / (double)n;
        out->r1[MD_MOD_AUDIO][MD_MOD_VIDEO] = (double)h1[1] / (double)n;
        out->r5[MD_MOD_AUDIO][MD_MOD_VIDEO] = (double)h5[1] / (double)n;
        /* digit agreement of the top-1 neighbour, every pair; the text
         * gallery of a query modality is the captions of its own set */
        for (int q = 1; q < 4; q++)
            for (int gm = 0; gm < 4; gm++) {
                if (gm == q)
                    continue;
                const float *gal = gm == MD_MOD_TEXT ? c[q - 1] : z[gm - 1];
                const int *gd = gm == MD_MOD_TEXT ? dg[q - 1] : dg[gm - 1];
                int64_t ok = 0;
                for (int64_t i = 0; i < n; i++)
                    ok += gd[nearest(z[q - 1] + i * MD_SPACE_DIM, gal, n)] == dg[q - 1][i];
                out->agree[q][gm] = (double)ok / (double)n;
            }
        for (int gm = 1; gm < 4; gm++) {
            int64_t ok = 0;
            for (int64_t i = 0; i < n; i++)
                ok += dg[gm - 1][nearest(c[gm - 1] + i * MD_SPACE_DIM, z[gm - 1], n)] == dg[gm - 1][i];
            out->agree[MD_MOD_TEXT][gm] = (double)ok / (double)n;
        }
    }
    for (int k = 0; k < 3; k++) {
        free(z[k]);
        free(c[k]);
        free(dg[k]);
    }
    free(za);
    free(caps);
    free(capbuf);
    md_graph_free(g);
    out->seconds = md_time_now() - t0;
    (void)mod_names;
    return st;
}
