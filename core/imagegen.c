/* imagegen.c — see imagegen.h. */
#include "imagegen.h"
#include "caption.h"
#include "judge.h"
#include "ops.h"
#include "motion.h"
#include "rng.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define S MD_WORLD_SIZE
#define CHUNK 64

md_unet_config md_imagegen_config(int ch)
{
    md_unet_config c = {.cin = MD_VQ_DIM, .h = MD_VQ_GRID, .w = MD_VQ_GRID, .ch = ch, .cond_tokens = 4,
                        .shift = 0.f, .scale = 1.f};
    return c;
}

md_unet_config md_imagegen_config_pixels(int ch, int side)
{
    md_unet_config c = {.cin = 3, .h = side, .w = side, .ch = ch, .cond_tokens = 4, .shift = 0.f, .scale = 1.f};
    return c;
}

md_unet_config md_videogen_config(int ch, float noise_share)
{
    md_unet_config c = md_imagegen_config_pixels(ch, S / 2);
    c.frames = MD_WORLD_FRAMES;
    c.noise_share = noise_share;
    return c;
}

bool md_videogen_is_video(const md_unet_config *c)
{
    return c->frames == MD_WORLD_FRAMES && c->cin == 3 && c->h == S / 2 && c->w == S / 2;
}

bool md_imagegen_is_pixels(const md_unet_config *c)
{
    return md_unet_frames(c) == 1 && c->cin == 3 && c->h == c->w && (c->h == S || c->h == S / 2);
}

/* [3, 64, 64] -> [3, 32, 32]: the mean of each 2 × 2 */
static void halve(const float *x, float *y)
{
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < S / 2; i++)
            for (int j = 0; j < S / 2; j++) {
                const float *p = x + ((size_t)c * S + 2 * (size_t)i) * S + 2 * (size_t)j;
                y[((size_t)c * (S / 2) + (size_t)i) * (S / 2) + (size_t)j] = 0.25f * (p[0] + p[1] + p[S] + p[S + 1]);
            }
}

/* Where output pixel i of 64 samples the 32 a side: between inputs i0 and
 * i1 at weight w toward i1 (position i/2 - 1/4, edges held). enlarge and
 * its adjoint share it, so the two stay each other's transpose. */
static void enlarge_tap(int i, int *i0, int *i1, float *w)
{
    const int h = S / 2;
    const float f = 0.5f * (float)i - 0.25f;
    *i0 = f < 0.f ? 0 : (int)f;
    *i1 = *i0 + 1 < h ? *i0 + 1 : h - 1;
    *w = f < 0.f ? 0.f : f - (float)*i0;
}

/* [3, 32, 32] -> [3, 64, 64], bilinear with the pixel centres aligned */
static void enlarge(const float *x, float *y)
{
    const int h = S / 2;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < S; i++) {
            int y0, y1, x0, x1;
            float wy, wx;
            enlarge_tap(i, &y0, &y1, &wy);
            for (int j = 0; j < S; j++) {
                enlarge_tap(j, &x0, &x1, &wx);
                const float *r0 = x + ((size_t)c * h + (size_t)y0) * h, *r1 = x + ((size_t)c * h + (size_t)y1) * h;
                float top = r0[x0] + wx * (r0[x1] - r0[x0]), bot = r1[x0] + wx * (r1[x1] - r1[x0]);
                y[((size_t)c * S + (size_t)i) * S + (size_t)j] = top + wy * (bot - top);
            }
        }
}

/* The adjoint of enlarge: gy [3, 64, 64] -> gx [3, 32, 32] (overwritten). */
static void enlarge_adjoint(const float *gy, float *gx)
{
    const int h = S / 2;
    memset(gx, 0, sizeof(float) * (size_t)(3 * h * h));
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < S; i++) {
            int y0, y1, x0, x1;
            float wy, wx;
            enlarge_tap(i, &y0, &y1, &wy);
            for (int j = 0; j < S; j++) {
                enlarge_tap(j, &x0, &x1, &wx);
                const float gv = gy[((size_t)c * S + (size_t)i) * S + (size_t)j];
                float *r0 = gx + ((size_t)c * h + (size_t)y0) * h, *r1 = gx + ((size_t)c * h + (size_t)y1) * h;
                r0[x0] += (1.f - wy) * (1.f - wx) * gv;
                r0[x1] += (1.f - wy) * wx * gv;
                r1[x0] += wy * (1.f - wx) * gv;
                r1[x1] += wy * wx * gv;
            }
        }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* t as a constant of g: the same values, no gradient kept for it */
static md_tensor *frozen(md_graph *g, md_tensor *t)
{
    if (!t)
        return NULL;
    md_tensor *f = md_tensor_wrap(g, t->dtype, t->data, t->ndim, t->shape);
    if (f)
        f->half = t->half;
    return f;
}

static md_status space_grad_rows(const md_unet *u, const md_space *sp, md_graph *g, const float *x, int n,
                                 const float *cond, float *grad, float *score)
{
    const int64_t hw = (int64_t)S * S, psz = MD_IMAGEGEN_PIXELS_SIZE, usz = md_unet_size(u), D = MD_SPACE_DIM;
    const int64_t jsz = md_space_input_size(MD_MOD_IMAGE);
    const bool half = u->cfg.h != S;
    md_graph_reset(g);
    md_status st = MD_OK;
    md_tensor *in = md_tensor_new(g, MD_F32, 4, (int64_t[]){n, MD_JUDGE_IMAGE_CHANNELS, S, S}, true);
    float *pix = md_graph_scratch(g, sizeof(float) * (size_t)(n * psz));
    uint8_t *arg = md_graph_scratch(g, (size_t)(n * hw));   /* the ink's channel at each pixel */
    float *bg = md_graph_scratch(g, sizeof(float) * (size_t)(3 * n));
    float *dout = md_graph_scratch(g, sizeof(float) * (size_t)(n * D));
    float *gp = md_graph_scratch(g, sizeof(float) * (size_t)psz);
    if (!in || !pix || !arg || !bg || !dout || !gp)
        st = MD_ERR_ALLOC;
    for (int i = 0; i < n && st == MD_OK; i++) {
        float *p = pix + i * psz, *xi = in->data + i * jsz;
        if (half)
            enlarge(x + i * usz, p);
        else
            memcpy(p, x + i * usz, sizeof(float) * (size_t)psz);
        for (int c = 0; c < 3; c++) {
            float border[4 * S];
            int nb = 0;
            for (int k = 0; k < S; k++) {
                border[nb++] = p[c * hw + k];
                border[nb++] = p[c * hw + (S - 1) * S + k];
                if (k > 0 && k < S - 1) {
                    border[nb++] = p[c * hw + k * S];
                    border[nb++] = p[c * hw + k * S + S - 1];
                }
            }
            qsort(border, (size_t)nb, sizeof(float), cmp_float);
            bg[3 * i + c] = border[(nb + 1) / 2 - 1];
        }
        for (int64_t k = 0; k < hw; k++) {
            float d = -1.f;
            int a = 0;
            for (int c = 0; c < 3; c++) {
                float v = p[c * hw + k];
                v = v < -1.f ? -1.f : v > 1.f ? 1.f : v;
                xi[c * hw + k] = v;
                float e = fabsf(v - bg[3 * i + c]);
                if (e > d) {
                    d = e;
                    a = c;
                }
            }
            arg[i * hw + k] = (uint8_t)a;
            xi[3 * hw + k] = d - 1.f;   /* 255 levels span 2 here: |Δ| in these units is the prep's |Δ| / 255 · 2 */
        }
        memcpy(dout + D * i, cond, sizeof(float) * (size_t)D);
    }
    /* the encoder's weights as constants: the backward pass then computes
     * the input's gradient alone, not the weights' (about half its work) */
    md_space fz = *sp;
    md_judge *j = &fz.image_net;
    for (int k = 0; k < MD_JUDGE_CONVS; k++) {
        j->conv_w[k] = frozen(g, j->conv_w[k]);
        j->conv_b[k] = frozen(g, j->conv_b[k]);
        j->gn_w[k] = frozen(g, j->gn_w[k]);
        j->gn_b[k] = frozen(g, j->gn_b[k]);
    }
    j->att_w = frozen(g, j->att_w);
    j->att_b = frozen(g, j->att_b);
    j->where_w = frozen(g, j->where_w);
    j->where_b = frozen(g, j->where_b);
    j->fc_w = frozen(g, j->fc_w);
    j->fc_b = frozen(g, j->fc_b);
    for (int k = 0; k < MD_ATTR_COUNT; k++) {
        j->head_w[k] = frozen(g, j->head_w[k]);
        j->head_b[k] = frozen(g, j->head_b[k]);
    }
    fz.image_proj = frozen(g, fz.image_proj);
    md_tensor *e = st == MD_OK ? md_space_image(g, &fz, in) : NULL;
    if (st == MD_OK && (!e || !in->grad))
        st = MD_ERR_ALLOC;
    if (st == MD_OK) {
        memset(in->grad, 0, sizeof(float) * (size_t)(n * jsz));
        md_graph_backward_from(g, e, dout);
        for (int i = 0; i < n; i++) {
            const float *p = pix + i * psz, *gi = in->grad + i * jsz;
            float *gq = half ? gp : grad + i * usz;
            for (int64_t k = 0; k < hw; k++) {
                const int a = arg[i * hw + k];
                for (int c = 0; c < 3; c++) {
                    float v = p[c * hw + k], gv = gi[c * hw + k];
                    if (c == a) {
                        float vc = v < -1.f ? -1.f : v > 1.f ? 1.f : v;
                        gv += (vc >= bg[3 * i + c] ? 1.f : -1.f) * gi[3 * hw + k];
                    }
                    gq[c * hw + k] = v > -1.f && v < 1.f ? gv : 0.f;   /* the clamp passes nothing outside */
                }
            }
            if (half)
                enlarge_adjoint(gp, grad + i * usz);
            if (score) {
                double s = 0.0;
                for (int64_t d = 0; d < D; d++)
                    s += (double)e->data[i * D + d] * cond[d];
                score[i] = (float)s;
            }
        }
    }
    return st;
}

md_status md_imagegen_space_grad(const md_unet *u, const md_space *sp, md_graph *g, const float *x, int n,
                                 const float *cond, float *grad, float *score)
{
    if (!md_imagegen_is_pixels(&u->cfg)) {
        md_log(MD_LOG_ERROR, "space guidance needs a picture model over pixels; this one works on latents");
        return MD_ERR_INVALID;
    }
    const int64_t usz = md_unet_size(u);
    const bool grad_was = md_graph_grad_enabled(g), train_was = md_graph_training(g);
    md_graph_set_grad(g, true);
    md_graph_set_training(g, false);
    md_status st = MD_OK;
    /* MD_IMAGEGEN_GRAD_ROWS pictures at a time: the graph holds one chunk's
     * activations and gradients, however many candidates there are */
    for (int r0 = 0; r0 < n && st == MD_OK; r0 += MD_IMAGEGEN_GRAD_ROWS) {
        const int nr = n - r0 < MD_IMAGEGEN_GRAD_ROWS ? n - r0 : MD_IMAGEGEN_GRAD_ROWS;
        st = space_grad_rows(u, sp, g, x + (size_t)r0 * (size_t)usz, nr, cond, grad + (size_t)r0 * (size_t)usz,
                             score ? score + r0 : NULL);
    }
    md_graph_reset(g);
    md_graph_set_grad(g, grad_was);
    md_graph_set_training(g, train_was);
    return st;
}

bool md_imagegen_is_latent(const md_unet_config *c)
{
    return c->cin == MD_VQ_DIM && c->h == MD_VQ_GRID && c->w == MD_VQ_GRID;
}

md_status md_imagegen_latents(const md_vqgan *vq, md_graph *g, const float *x, int64_t n, float *z)
{
    bool grad = md_graph_grad_enabled(g);
    md_graph_set_grad(g, false);
    const int64_t isz = (int64_t)3 * S * S;
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
        const int64_t nb = n - i0 < 16 ? n - i0 : 16;
        md_graph_reset(g);
        md_tensor *xt = md_tensor_wrap(g, MD_F32, (void *)(x + i0 * isz), 4, (int64_t[]){nb, 3, S, S});
        const float *e = md_vqgan_encode(g, vq, xt)->data;   /* [nb*256, D], position-major */
        for (int64_t b = 0; b < nb; b++)
            for (int p = 0; p < MD_VQ_TOKENS; p++)
                for (int d = 0; d < MD_VQ_DIM; d++)
                    z[(i0 + b) * MD_IMAGEGEN_SIZE + (int64_t)d * MD_VQ_TOKENS + p] =
                        e[(b * MD_VQ_TOKENS + p) * MD_VQ_DIM + d];
    }
    md_graph_reset(g);
    md_graph_set_grad(g, grad);
    return MD_OK;
}

md_status md_imagegen_codes(const md_vqgan *vq, md_graph *g, const float *z, int64_t n, int32_t *codes)
{
    bool grad = md_graph_grad_enabled(g);
    md_graph_set_grad(g, false);
    md_graph_reset(g);
    md_tensor *rows = md_tensor_new(g, MD_F32, 2, (int64_t[]){n * MD_VQ_TOKENS, MD_VQ_DIM}, false);
    if (!rows) {
        md_graph_set_grad(g, grad);
        return MD_ERR_ALLOC;
    }
    for (int64_t b = 0; b < n; b++)
        for (int p = 0; p < MD_VQ_TOKENS; p++)
            for (int d = 0; d < MD_VQ_DIM; d++)
                rows->data[(b * MD_VQ_TOKENS + p) * MD_VQ_DIM + d] =
                    z[b * MD_IMAGEGEN_SIZE + (int64_t)d * MD_VQ_TOKENS + p];
    /* unit rows against unit codes: the nearest by L2 is the nearest by cosine */
    md_vq_result q = md_vq(g, md_l2_normalize(g, rows, 1e-6f), md_vqgan_codes(g, vq));
    memcpy(codes, md_i32(q.indices), sizeof(int32_t) * (size_t)(n * MD_VQ_TOKENS));
    md_graph_reset(g);
    md_graph_set_grad(g, grad);
    return MD_OK;
}

md_status md_imagegen_pixels(const md_unet *u, const md_vqgan *vq, md_graph *g, const float *x, int64_t n,
                             float *pix)
{
    const int64_t psz = MD_IMAGEGEN_PIXELS_SIZE;
    if (md_imagegen_is_pixels(&u->cfg)) {
        const int64_t usz = md_unet_size(u);
        for (int64_t i = 0; i < n; i++) {
            float *p = pix + i * psz;
            if (usz == psz)
                memcpy(p, x + i * usz, sizeof(float) * (size_t)psz);
            else
                enlarge(x + i * usz, p);
            for (int64_t k = 0; k < psz; k++)
                p[k] = p[k] < -1.f ? -1.f : p[k] > 1.f ? 1.f : p[k];
        }
        return MD_OK;
    }
    if (!md_imagegen_is_latent(&u->cfg)) {
        md_log(MD_LOG_ERROR, "picture diffusion: a model of %d x %d x %d is neither latents nor pixels", u->cfg.cin,
               u->cfg.h, u->cfg.w);
        return MD_ERR_INVALID;
    }
    int32_t *codes = malloc(sizeof(int32_t) * MD_VQ_TOKENS * (size_t)n);
    md_status st = codes ? md_imagegen_codes(vq, g, x, n, codes) : MD_ERR_ALLOC;
    if (st == MD_OK)
        st = md_vqgan_detokenize(vq, g, codes, n, pix);
    free(codes);
    return st;
}

void md_imagegen_train_default_opts(md_imagegen_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 3000;
    o->batch = 48;
    o->lr = 1.5e-3f;
    o->drop_cond = 0.1f;
    o->ema = 0.995f;
    o->corpus = 6000;
    o->ch = 64;
    o->side = S;
    o->seed = 1;
}

void md_imagegen_ink_weights(const md_world_sample *s, const uint8_t *rgb, int side, float lambda, float *wt)
{
    const int step = S / side;
    float d[3], dd = 0.f;
    for (int k = 0; k < 3; k++) {
        d[k] = s->ink_rgb[k] - s->bg_rgb[k];
        dd += d[k] * d[k];
    }
    const bool photo = s->attr[MD_ATTR_STYLE] == 1 || dd < 1e-4f;
    double sum = 0.0;
    for (int i = 0; i < side; i++)
        for (int j = 0; j < side; j++) {
            float cov = 0.f;
            for (int a = 0; a < step && !photo; a++)
                for (int b = 0; b < step; b++) {
                    const uint8_t *p = rgb + ((size_t)(i * step + a) * S + (size_t)(j * step + b)) * 3;
                    float dot = 0.f;
                    for (int k = 0; k < 3; k++)
                        dot += ((float)p[k] / 255.f - s->bg_rgb[k]) * d[k];
                    float c = dot / dd;
                    cov += c < 0.f ? 0.f : c > 1.f ? 1.f : c;
                }
            float v = 1.f + lambda * cov / (float)(step * step);
            wt[i * side + j] = v;
            sum += v;
        }
    const float norm = (float)((double)side * side / sum);
    for (int k = 0; k < side * side; k++)
        wt[k] *= norm;
}

static md_status corpus_build(md_unet_corpus *c, const md_space *sp, const md_vqgan *vq, const md_world *w,
                              const md_imagegen_train_opts *o)
{
    memset(c, 0, sizeof *c);
    const int n = c->n = o->corpus;
    const int64_t D = MD_SPACE_DIM, isz = md_space_input_size(MD_MOD_IMAGE), qsz = (int64_t)3 * S * S,
                  T = md_threads_get(),
                  size = o->pixels ? (int64_t)3 * o->side * o->side : MD_IMAGEGEN_SIZE;
    c->x = malloc(sizeof(float) * (size_t)n * (size_t)size);
    c->own = malloc(sizeof(float) * (size_t)(n * D));
    c->caption = malloc(sizeof(float) * (size_t)(n * D));
    c->digit = malloc(sizeof(int) * (size_t)n);
    const bool weighted = o->pixels && o->ink_weight > 0.f;
    if (weighted)
        c->weight = malloc(sizeof(float) * (size_t)n * (size_t)(o->side * o->side));
    float *qx = malloc(sizeof(float) * (size_t)(qsz * CHUNK));
    float *sx = malloc(sizeof(float) * (size_t)(isz * CHUNK));
    uint8_t *rgb = malloc((size_t)S * S * 3 * (size_t)T);
    char(*caps)[MD_CAPTION_MAX] = malloc(sizeof *caps * CHUNK);
    const char *cp[CHUNK];
    md_graph *g = md_graph_new((size_t)1 << 26);
    md_status st = c->x && c->own && c->caption && c->digit && (c->weight || !weighted) && qx && sx && rgb && caps && g
                       ? MD_OK
                       : MD_ERR_ALLOC;
    for (int i0 = 0; i0 < n && st == MD_OK; i0 += CHUNK) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        const int nb = n - i0 < CHUNK ? n - i0 : CHUNK;
        volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads((int)T)
        for (int b = 0; b < nb; b++) {
            md_world_sample s;
            uint8_t *px = rgb + (size_t)S * S * 3 * (size_t)omp_get_thread_num();
            if (md_world_draw(w, o->seed, MD_SPLIT_TRAIN, MD_WORLD_IMAGE, i0 + b, &s) != MD_OK ||
                md_caption_make(&s, (int)(md_hash64(o->seed * 31 + (uint64_t)(i0 + b)) % 1000), caps[b],
                                MD_CAPTION_MAX, NULL) != MD_OK) {
                bad = 1;
                continue;
            }
            c->digit[i0 + b] = s.attr[MD_ATTR_DIGIT];
            md_world_render_image(w, &s, px);
            if (weighted)
                md_imagegen_ink_weights(&s, px, o->side, o->ink_weight,
                                        c->weight + (size_t)(i0 + b) * (size_t)(o->side * o->side));
            md_vqgan_prep_rgb(px, qx + qsz * b);
            md_judge_prep_rgb(px, sx + isz * b);
            cp[b] = caps[b];
        }
        if (bad) {
            st = MD_ERR;
            break;
        }
        if (o->pixels && o->side == S)
            memcpy(c->x + (size_t)i0 * (size_t)size, qx, sizeof(float) * (size_t)(qsz * nb));
        else if (o->pixels)
            for (int b = 0; b < nb; b++)
                halve(qx + qsz * b, c->x + (size_t)(i0 + b) * (size_t)size);
        else
            st = md_imagegen_latents(vq, g, qx, nb, c->x + (size_t)i0 * MD_IMAGEGEN_SIZE);
        if (st == MD_OK)
            st = md_space_embed(sp, g, MD_MOD_IMAGE, sx, nb, c->own + (size_t)i0 * D);
        if (st == MD_OK)
            st = md_space_embed(sp, g, MD_MOD_TEXT, cp, nb, c->caption + (size_t)i0 * D);
        if (o->progress && st == MD_OK)
            o->progress("encoding images", i0 + nb, n, 0.f, o->user);
    }
    if (st == MD_OK)
        st = md_unet_corpus_bank(c, sp, g, o->seed);
    md_graph_free(g);
    free(caps);
    free(rgb);
    free(sx);
    free(qx);
    if (st != MD_OK)
        md_unet_corpus_free(c);
    return st;
}

/* Videos of the world's train split at 32 × 32 a frame, [n, F, 3, 32,
 * 32]: each with its caption's embedding, its own (the space's video
 * encoder) and its digit. */
static md_status video_corpus_build(md_unet_corpus *c, const md_space *sp, const md_world *w,
                                    const md_imagegen_train_opts *o)
{
    memset(c, 0, sizeof *c);
    const int n = c->n = o->corpus, F = MD_WORLD_FRAMES, th = md_threads_get();
    const int64_t D = MD_SPACE_DIM, vsz = md_space_input_size(MD_MOD_VIDEO), qsz = (int64_t)3 * S * S,
                  fsz = (int64_t)3 * (S / 2) * (S / 2), size = F * fsz, rsz = (int64_t)S * S * 3 * F;
    c->x = malloc(sizeof(float) * (size_t)n * (size_t)size);
    c->own = malloc(sizeof(float) * (size_t)(n * D));
    c->caption = malloc(sizeof(float) * (size_t)(n * D));
    c->digit = malloc(sizeof(int) * (size_t)n);
    float *vx = malloc(sizeof(float) * (size_t)(vsz * CHUNK));
    float *qx = malloc(sizeof(float) * (size_t)(qsz * th));
    uint8_t *fr = malloc((size_t)rsz * (size_t)th);
    float *au = malloc(sizeof(float) * MD_WORLD_AUDIO_SAMPLES * (size_t)th);
    char(*caps)[MD_CAPTION_MAX] = malloc(sizeof *caps * CHUNK);
    const char *cp[CHUNK];
    md_graph *g = md_graph_new((size_t)1 << 26);
    md_status st = c->x && c->own && c->caption && c->digit && vx && qx && fr && au && caps && g ? MD_OK : MD_ERR_ALLOC;
    for (int i0 = 0; i0 < n && st == MD_OK; i0 += CHUNK) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        const int nb = n - i0 < CHUNK ? n - i0 : CHUNK;
        volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(th)
        for (int b = 0; b < nb; b++) {
            const int me = omp_get_thread_num();
            md_world_sample s;
            uint8_t *f8 = fr + (size_t)rsz * (size_t)me;
            float *q = qx + qsz * me;
            if (md_world_draw(w, o->seed, MD_SPLIT_TRAIN, MD_WORLD_VIDEO, i0 + b, &s) != MD_OK ||
                md_caption_make(&s, (int)(md_hash64(o->seed * 37 + (uint64_t)(i0 + b)) % 1000), caps[b],
                                MD_CAPTION_MAX, NULL) != MD_OK) {
                bad = 1;
                continue;
            }
            c->digit[i0 + b] = s.attr[MD_ATTR_DIGIT];
            md_world_render_video(w, &s, f8, au + MD_WORLD_AUDIO_SAMPLES * (size_t)me);
            float *dst = c->x + (size_t)(i0 + b) * (size_t)size;
            for (int f = 0; f < F; f++) {
                md_vqgan_prep_rgb(f8 + (size_t)S * S * 3 * (size_t)f, q);
                halve(q, dst + fsz * f);
            }
            md_judge_prep_frames(f8, vx + vsz * b);
            cp[b] = caps[b];
        }
        if (bad) {
            md_log(MD_LOG_ERROR, "video diffusion: drawing a video of the corpus failed");
            st = MD_ERR;
            break;
        }
        st = md_space_embed(sp, g, MD_MOD_VIDEO, vx, nb, c->own + (size_t)i0 * D);
        if (st == MD_OK)
            st = md_space_embed(sp, g, MD_MOD_TEXT, cp, nb, c->caption + (size_t)i0 * D);
        if (o->progress && st == MD_OK)
            o->progress("encoding videos", i0 + nb, n, 0.f, o->user);
    }
    if (st == MD_OK)
        st = md_unet_corpus_bank(c, sp, g, o->seed);
    md_graph_free(g);
    free(caps); free(au); free(fr); free(qx); free(vx);
    if (st != MD_OK)
        md_unet_corpus_free(c);
    return st;
}

md_status md_imagegen_train(md_unet *u, const md_space *sp, const md_vqgan *vq, const md_world *w,
                            const md_imagegen_train_opts *o)
{
    memset(u, 0, sizeof *u);
    if (o->corpus < 2 || o->batch < 2 || (o->pixels && o->side != S && o->side != S / 2)) {
        md_log(MD_LOG_ERROR, "image diffusion training: corpus and batch >= 2, pixels 64 or 32 a side (got %d, %d, %d)",
               o->corpus, o->batch, o->side);
        return MD_ERR_INVALID;
    }
    if (!(o->ink_weight >= 0.f && o->ink_weight <= 1000.f) || (o->ink_weight > 0.f && !o->pixels)) {
        md_log(MD_LOG_ERROR, "image diffusion training: ink weight %g: it must be 0..1000, and is taken in pixel "
                             "space only", (double)o->ink_weight);
        return MD_ERR_INVALID;
    }
    const bool video = o->frames > 1;
    if (video && (o->frames != MD_WORLD_FRAMES || !o->pixels || o->side != S / 2 || o->ink_weight > 0.f)) {
        md_log(MD_LOG_ERROR, "video diffusion training: videos are %d frames of 32 x 32 pixels, without ink weights",
               MD_WORLD_FRAMES);
        return MD_ERR_INVALID;
    }
    md_unet_config cfg = video      ? md_videogen_config(o->ch, o->noise_share)
                         : o->pixels ? md_imagegen_config_pixels(o->ch, o->side)
                                     : md_imagegen_config(o->ch);
    const md_unet_config *ic = o->init ? &o->init->cfg : NULL;
    if (ic && (ic->cin != cfg.cin || ic->h != cfg.h || ic->w != cfg.w || ic->ch != cfg.ch ||
               ic->cond_tokens != cfg.cond_tokens ||
               (md_unet_frames(ic) > 1 && (ic->frames != cfg.frames || ic->noise_share != cfg.noise_share)) ||
               (md_unet_frames(ic) > 1 && !video))) {
        md_log(MD_LOG_ERROR, "image diffusion training: the model to go on from is %d x %d x %d, ch %d; this run asks "
                             "for %d x %d x %d, ch %d (give the same --space and --ch)",
               ic->cin, ic->h, ic->w, ic->ch, cfg.cin, cfg.h, cfg.w, cfg.ch);
        return MD_ERR_INVALID;
    }
    md_unet_corpus c;
    md_status st = video ? video_corpus_build(&c, sp, w, o) : corpus_build(&c, sp, vq, w, o);
    if (st != MD_OK)
        return st;
    const int64_t size = (int64_t)md_unet_frames(&cfg) * cfg.cin * cfg.h * cfg.w;
    if (ic) {   /* the weights were trained on data normalised this way */
        cfg.shift = ic->shift;
        cfg.scale = ic->scale;
        for (int64_t i = 0; i < (int64_t)c.n * size; i++)
            c.x[i] = (c.x[i] - cfg.shift) * cfg.scale;
    } else {
        md_unet_corpus_normalise(&c, size, &cfg);
    }
    if ((st = md_unet_init(u, &cfg, o->seed)) == MD_OK && ic) {
        if (video && md_unet_frames(ic) == 1)   /* a picture model: its layers; the temporal ones start at zero */
            md_unet_copy_shared(u, o->init);
        else if (md_paramset_numel(u->ps) == md_paramset_numel(o->init->ps))
            memcpy(md_paramset_values(u->ps), md_paramset_values(o->init->ps),
                   sizeof(float) * (size_t)md_paramset_numel(u->ps));
        else {
            md_log(MD_LOG_ERROR, "image diffusion training: the model to go on from has another parameter count");
            md_unet_free(u);
            st = MD_ERR_INVALID;
        }
    }
    if (st == MD_OK) {
        md_unet_train_opts to = {o->steps, o->batch, o->lr, o->drop_cond, o->ema, o->seed,
                                 o->progress, o->user, o->cancel};
        if ((st = md_unet_train(u, &c, &to)) != MD_OK)
            md_unet_free(u);
    }
    md_unet_corpus_free(&c);
    return st;
}

/* A video model read as a picture model of its frames: for the helpers
 * that only look at the data shape. */
static md_unet frame_view(const md_unet *u)
{
    md_unet v = *u;
    v.cfg.frames = 1;
    return v;
}

md_status md_videogen_frames(const md_unet *u, const float *x, int64_t n, float *pix)
{
    if (!md_videogen_is_video(&u->cfg)) {
        md_log(MD_LOG_ERROR, "video diffusion: the model is not one of %d frames of 3 x 32 x 32", MD_WORLD_FRAMES);
        return MD_ERR_INVALID;
    }
    md_unet v = frame_view(u);
    return md_imagegen_pixels(&v, NULL, NULL, x, n * MD_WORLD_FRAMES, pix);
}

md_status md_videogen_space_grad(const md_unet *u, const md_space *sp, md_graph *g, const float *x, int n,
                                 const float *cond, float *grad)
{
    if (!md_videogen_is_video(&u->cfg)) {
        md_log(MD_LOG_ERROR, "video diffusion: the model is not one of %d frames of 3 x 32 x 32", MD_WORLD_FRAMES);
        return MD_ERR_INVALID;
    }
    md_unet v = frame_view(u);
    return md_imagegen_space_grad(&v, sp, g, x, n * MD_WORLD_FRAMES, cond, grad, NULL);
}

/* Frame x [3, h, w] moved by (dx, dy) pixels (bilinear; the edges
 * extend) into y. */
static void shift_frame(const float *x, int h, int w, float dx, float dy, float *y)
{
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                float sy = (float)i - dy, sx = (float)j - dx;
                sy = sy < 0.f ? 0.f : sy > (float)(h - 1) ? (float)(h - 1) : sy;
                sx = sx < 0.f ? 0.f : sx > (float)(w - 1) ? (float)(w - 1) : sx;
                const int y0 = (int)sy, x0 = (int)sx, y1 = y0 + 1 < h ? y0 + 1 : y0, x1 = x0 + 1 < w ? x0 + 1 : x0;
                const float fy = sy - (float)y0, fx = sx - (float)x0;
                const float *p = x + (size_t)c * h * w;
                y[((size_t)c * h + i) * w + j] = (1.f - fy) * ((1.f - fx) * p[y0 * w + x0] + fx * p[y0 * w + x1]) +
                                                 fy * ((1.f - fx) * p[y1 * w + x0] + fx * p[y1 * w + x1]);
            }
}

md_status md_videogen_place(const md_unet *u, const float *path, const float *xi, float *pix, float *out)
{
    const int64_t fsz = md_unet_size(u) / MD_WORLD_FRAMES;
    const int side = u->cfg.h, S64 = MD_WORLD_SIZE;
    const float scale = (float)side / (float)S64;   /* the model's pixels per frame pixel */
    md_status st = md_videogen_frames(u, xi, 1, pix);
    if (st != MD_OK)
        return st;
    float ctr[MD_WORLD_FRAMES][2], anchor[2] = {0.f, 0.f}, lo[2] = {0.f, 0.f}, hi[2] = {0.f, 0.f};
    for (int f = 0; f < MD_WORLD_FRAMES; f++) {
        float bg[3];
        md_motion_frame(pix + (size_t)f * MD_IMAGEGEN_PIXELS_SIZE, bg, NULL, ctr[f]);
        for (int d = 0; d < 2; d++) {
            anchor[d] += (ctr[f][d] - path[2 * f + d]) / (float)MD_WORLD_FRAMES;
            lo[d] = fminf(lo[d], path[2 * f + d]);
            hi[d] = fmaxf(hi[d], path[2 * f + d]);
        }
    }
    for (int d = 0; d < 2; d++) {   /* the path's centres a margin inside the picture, where they fit */
        const float m = 10.f, amin = m - lo[d], amax = (float)(S64 - 1) - m - hi[d];
        if (amin <= amax)
            anchor[d] = anchor[d] < amin ? amin : anchor[d] > amax ? amax : anchor[d];
    }
    for (int f = 0; f < MD_WORLD_FRAMES; f++)
        shift_frame(xi + fsz * f, side, side, (anchor[0] + path[2 * f] - ctr[f][0]) * scale,
                    (anchor[1] + path[2 * f + 1] - ctr[f][1]) * scale, out + fsz * f);
    return MD_OK;
}

