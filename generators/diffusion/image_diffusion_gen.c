/* image_diffusion_gen.c — see image_diffusion_gen.h. */
#include "image_diffusion_gen.h"
#include "judge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { P_STEPS, P_GUIDANCE, P_ETA, P_CANDIDATES, P_STEER, P_STEER_UNTIL, P_MOTION_TEMPERATURE, P_COUNT };

#define MAX_CANDIDATES 30   /* as the token path (MD_TOK_MAX_CANDIDATES) */
#define PREVIEW_EVERY 5

/* pictures take the first six; videos all seven */
static const md_gen_param_spec params[P_COUNT] = {
    {"steps", "DDIM denoising steps", MD_GEN_INT, 25, 1, 200},
    {"guidance", "classifier-free guidance scale (1: none)", MD_GEN_FLOAT, 3.0, 0.0, 20.0},
    {"eta", "DDIM noise: 0 deterministic, 1 as DDPM", MD_GEN_FLOAT, 0.0, 0.0, 1.0},
    {"candidates", "draw this many pictures (videos: first frames) side by side and keep the one the aligned "
                   "space finds closest to the condition", MD_GEN_INT, MD_GEN_DIFFUSION_CANDIDATES, 1, MAX_CANDIDATES},
    {"steer", "space guidance: at each steered step each picture's estimate moves this far (RMS, in the model's "
              "units) toward the condition along the aligned space's image encoder's gradient (0: none; pixel "
              "models)",
     MD_GEN_FLOAT, MD_GEN_DIFFUSION_STEER, 0.0, 10.0},
    {"steer_until", "the share of the steps, from the first, that space guidance steers; the rest are the "
                    "model's own", MD_GEN_FLOAT, MD_GEN_DIFFUSION_STEER_UNTIL, 0.0, 1.0},
    {"motion_temperature", "videos: softmax temperature of the motion model's choice of path (0: the likeliest)",
     MD_GEN_FLOAT, 1.0, 0.0, 5.0},
};

typedef struct idiff_gen {
    md_modality out;                 /* image, or video: the picture moved by the motion model */
    const md_motion *mo;             /* videos' motion model */
    const md_unet *u;
    const md_vqgan *vq;
    const md_space *sp;
    md_graph *g;                     /* the workspace's when lent: sampling, steering, decoding, picking and
                                      * moving, one after another, so it grows to the largest alone */
    bool own_graph;
    char model_id[256];
    float *z, *pix;                  /* samples; their pictures [MAX_CANDIDATES, 3, 64, 64] */
    float *jx;                       /* candidates as the space reads them */
    float *frames;                   /* videos: [16, 3, 64, 64] */
    md_image preview;
    md_gen_progress_fn progress;
    void *user;
    const float *cond;               /* during a run: the condition steering follows */
} idiff_gen;

void md_gen_diffusion_to_image(const float *x, md_image *im)
{
    const int hw = MD_WORLD_SIZE * MD_WORLD_SIZE;
    for (int i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) {
            float v = (x[c * hw + i] + 1.f) * 0.5f;
            im->pixels[i * 3 + c] = v < 0.f ? 0.f : v > 1.f ? 1.f : v;
        }
}

md_status md_gen_diffusion_to_video(const float *frames, md_video *v)
{
    md_status st = md_video_alloc(v, MD_WORLD_SIZE, MD_WORLD_SIZE, 3, MD_WORLD_FRAMES, MD_WORLD_FPS);
    for (int f = 0; st == MD_OK && f < MD_WORLD_FRAMES; f++) {
        md_image im = {MD_WORLD_SIZE, MD_WORLD_SIZE, 3, v->pixels + (size_t)f * MD_WORLD_SIZE * MD_WORLD_SIZE * 3};
        md_gen_diffusion_to_image(frames + (size_t)f * MD_IMAGEGEN_PIXELS_SIZE, &im);
    }
    return st;
}

static void on_step(int step, int steps, const float *x0, void *user)
{
    idiff_gen *a = user;
    if (!a->progress)
        return;
    const md_image *pv = NULL;
    if (x0 && md_imagegen_pixels(a->u, a->vq, a->g, x0, 1, a->pix) == MD_OK) {
        md_gen_diffusion_to_image(a->pix, &a->preview);
        pv = &a->preview;
    }
    a->progress("denoising", step + 1, steps, 0.95 * (double)(step + 1) / steps, pv, a->user);
}

/* The candidate the aligned space's image encoder places closest to cond. */
static md_status pick(idiff_gen *a, const float *cond, int n, int *best)
{
    const int64_t jsz = md_space_input_size(MD_MOD_IMAGE);
    uint8_t rgb[MD_WORLD_SIZE * MD_WORLD_SIZE * 3];
    for (int i = 0; i < n; i++) {
        md_vqgan_to_rgb(a->pix + (size_t)i * MD_IMAGEGEN_PIXELS_SIZE, rgb);
        md_judge_prep_rgb(rgb, a->jx + jsz * i);
    }
    return md_space_pick_closest(a->sp, a->g, MD_MOD_IMAGE, a->jx, n, cond, best, NULL);
}

static md_status steer_grad(const float *x0, int n, float *grad, void *user)
{
    idiff_gen *a = user;
    /* the sampler's graph holds nothing between its steps' chunks */
    return md_imagegen_space_grad(a->u, a->sp, a->g, x0, n, a->cond, grad, NULL);
}

static md_status run(void *self, const md_gen_condition *c, const double *p, uint64_t seed,
                     md_gen_progress_fn progress, void *user, const volatile int *cancel, md_gen_output *out)
{
    idiff_gen *a = self;
    memset(out, 0, sizeof *out);
    out->modality = MD_MOD_IMAGE;
    a->progress = progress;
    a->user = user;
    const int n = (int)p[P_CANDIDATES];
    const bool steer = p[P_STEER] > 0.0 && md_imagegen_is_pixels(&a->u->cfg);
    a->cond = c->vec;
    md_unet_sample_opts so = {(int)p[P_STEPS], (float)p[P_GUIDANCE], (float)p[P_ETA], PREVIEW_EVERY,
                              steer ? steer_grad : NULL, a, steer ? (float)p[P_STEER] : 0.f, (float)p[P_STEER_UNTIL]};
    md_status st = md_unet_sample(a->u, a->g, c->vec, n, &so, seed, on_step, a, cancel, a->z);
    if (st == MD_OK)
        st = md_imagegen_pixels(a->u, a->vq, a->g, a->z, n, a->pix);
    int best = 0;
    if (st == MD_OK && n > 1)
        st = pick(a, c->vec, n, &best);
    if (st == MD_OK && cancel && *cancel)
        st = MD_ABORTED;
    if (st == MD_OK && a->out == MD_MOD_VIDEO) {   /* frames 1..15: the picture moved along a drawn path */
        out->modality = MD_MOD_VIDEO;
        memcpy(a->frames, a->pix + (size_t)best * MD_IMAGEGEN_PIXELS_SIZE, sizeof(float) * MD_IMAGEGEN_PIXELS_SIZE);
        st = md_motion_move(a->mo, a->g, a->sp->bpe, c->vec, c->text, (float)p[P_MOTION_TEMPERATURE], seed,
                            a->frames);
        if (st == MD_OK)
            st = md_gen_diffusion_to_video(a->frames, &out->video);
    } else if (st == MD_OK) {
        st = md_image_alloc(&out->image, MD_WORLD_SIZE, MD_WORLD_SIZE, 3);
        if (st == MD_OK)
            md_gen_diffusion_to_image(a->pix + (size_t)best * MD_IMAGEGEN_PIXELS_SIZE, &out->image);
    }
    if (st == MD_OK && progress)
        progress("decoding", 1, 1, 1.0, NULL, user);
    if (st != MD_OK)
        md_gen_output_free(out);
    return st;
}

static void gen_free(void *self)
{
    idiff_gen *a = self;
    if (!a)
        return;
    if (a->own_graph)
        md_graph_free(a->g);
    free(a->z);
    free(a->pix);
    free(a->jx);
    free(a->frames);
    md_image_free(&a->preview);
    free(a);
}

static md_generator *diffusion_new(md_modality out, const md_unet *u, const md_vqgan *vq, const md_space *sp,
                                   const md_motion *mo, const char *model_id, md_gen_workspace *ws)
{
    const md_unet_config *c = &u->cfg;
    if (out == MD_MOD_VIDEO && !mo) {
        md_log(MD_LOG_ERROR, "video by diffusion needs the motion model (motion.safetensors; train it with 'medley "
                             "train motion')");
        return NULL;
    }
    if (!md_imagegen_is_latent(c) && !md_imagegen_is_pixels(c)) {
        md_log(MD_LOG_ERROR, "the image diffusion generator needs a model of %d x %d x %d latents or 3 x %d x %d "
                             "(or 3 x %d x %d) pixels, not %d x %d x %d: retrain it with 'medley train diffusion'",
               MD_VQ_DIM, MD_VQ_GRID, MD_VQ_GRID, MD_WORLD_SIZE, MD_WORLD_SIZE, MD_WORLD_SIZE / 2, MD_WORLD_SIZE / 2,
               c->cin, c->h, c->w);
        return NULL;
    }
    md_generator *g = calloc(1, sizeof *g);
    idiff_gen *a = calloc(1, sizeof *a);
    md_status pst = MD_ERR_ALLOC;
    if (a) {
        a->out = out;
        a->mo = mo;
        a->u = u;
        a->vq = vq;
        a->sp = sp;
        snprintf(a->model_id, sizeof a->model_id, "%s", model_id ? model_id : "imagegen");
        a->own_graph = !ws;
        a->g = ws ? ws->graph : md_graph_new((size_t)1 << 22);   /* grows once to its largest use */
        a->z = malloc(sizeof(float) * MAX_CANDIDATES * (size_t)md_unet_size(u));
        a->pix = malloc(sizeof(float) * MAX_CANDIDATES * MD_IMAGEGEN_PIXELS_SIZE);
        a->jx = malloc(sizeof(float) * MAX_CANDIDATES * (size_t)md_space_input_size(MD_MOD_IMAGE));
        if (out == MD_MOD_VIDEO)
            a->frames = malloc(sizeof(float) * MD_WORLD_FRAMES * MD_IMAGEGEN_PIXELS_SIZE);
        pst = md_image_alloc(&a->preview, MD_WORLD_SIZE, MD_WORLD_SIZE, 3);
    }
    if (!g || !a || !a->g || !a->z || !a->pix || !a->jx || (out == MD_MOD_VIDEO && !a->frames) ||
        pst != MD_OK) {
        md_log(MD_LOG_ERROR, "image diffusion generator: out of memory");
        gen_free(a);
        free(g);
        return NULL;
    }
    g->name = out == MD_MOD_VIDEO ? "diffusion-video" : "diffusion-image";
    g->model_id = a->model_id;
    g->output = out;
    g->params = params;
    g->nparams = out == MD_MOD_VIDEO ? P_COUNT : P_MOTION_TEMPERATURE;
    g->self = a;
    g->run = run;
    g->free = gen_free;
    return g;
}

md_generator *md_gen_image_diffusion_new(const md_unet *u, const md_vqgan *vq, const md_space *sp,
                                         const char *model_id, md_gen_workspace *ws)
{
    return diffusion_new(MD_MOD_IMAGE, u, vq, sp, NULL, model_id, ws);
}

md_generator *md_gen_video_diffusion_new(const md_unet *u, const md_vqgan *vq, const md_space *sp,
                                         const md_motion *mo, const char *model_id, md_gen_workspace *ws)
{
    return diffusion_new(MD_MOD_VIDEO, u, vq, sp, mo, model_id, ws);
}
