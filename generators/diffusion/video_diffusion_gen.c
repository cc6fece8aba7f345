/* video_diffusion_gen.c — see video_diffusion_gen.h. */
#include "video_diffusion_gen.h"
#include "judge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { P_STEPS, P_GUIDANCE, P_ETA, P_CANDIDATES, P_STEER, P_STEER_UNTIL, P_MOTION_STEER, P_MOTION_TEMPERATURE,
       P_COUNT };

#define MAX_CANDIDATES 8   /* 16 frames each */
#define PREVIEW_EVERY 5
#define F MD_WORLD_FRAMES
#define FRAME MD_IMAGEGEN_PIXELS_SIZE   /* one 64 × 64 frame, 3 channels */

static const md_gen_param_spec params[P_COUNT] = {
    {"steps", "DDIM denoising steps", MD_GEN_INT, 25, 1, 200},
    {"guidance", "classifier-free guidance scale (1: none)", MD_GEN_FLOAT, 3.0, 0.0, 20.0},
    {"eta", "DDIM noise: 0 deterministic, 1 as DDPM", MD_GEN_FLOAT, 0.0, 0.0, 1.0},
    {"candidates", "draw this many videos side by side and keep the one the aligned space finds closest to the "
                   "condition", MD_GEN_INT, MD_GEN_VIDEO_DIFFUSION_CANDIDATES, 1, MAX_CANDIDATES},
    {"steer", "space guidance: at each steered step every frame's estimate moves this far (RMS, in the model's "
              "units) toward the condition along the aligned space's image encoder's gradient (0: none)",
     MD_GEN_FLOAT, MD_GEN_DIFFUSION_STEER, 0.0, 10.0},
    {"steer_until", "the share of the steps, from the first, that space guidance steers; the rest are the "
                    "model's own", MD_GEN_FLOAT, MD_GEN_DIFFUSION_STEER_UNTIL, 0.0, 1.0},
    {"motion_steer", "motion guidance: how much of each steered move pulls every frame onto the motion model's "
                     "path, against the space's pull; above 0 the frames are also placed on the path at the end "
                     "(0: neither)",
     MD_GEN_FLOAT, MD_GEN_VIDEO_DIFFUSION_MOTION_STEER, 0.0, 10.0},
    {"motion_temperature", "softmax temperature of the motion model's choice of path (0: the likeliest)",
     MD_GEN_FLOAT, 1.0, 0.0, 5.0},
};

typedef struct vdiff_gen {
    const md_unet *u;
    const md_space *sp;
    const md_motion *mo;             /* motion guidance's paths (may be NULL: none) */
    float path[MD_MOTION_PATH];      /* during a run: the drawn path */
    float motion_steer;              /* during a run: its weight (0: none) */
    float *target32;                 /* one sample's frames moved, less the sample */
    md_graph *g;                     /* the workspace's when lent */
    bool own_graph;
    char model_id[256];
    float *z;                        /* samples [MAX_CANDIDATES, 16 · 3 · 32 · 32] */
    float *pix;                      /* their frames [MAX_CANDIDATES · 16, 3, 64, 64] */
    uint8_t *rgb;                    /* one video's frames as the space reads them [16, 64, 64, 3] */
    float *jx;                       /* candidates prepared for the space's video encoder */
    md_image preview;
    md_gen_progress_fn progress;
    void *user;
    const float *cond;
    const volatile int *cancel;      /* during a run */
} vdiff_gen;

/* previews: frame 0 of the first candidate's estimate */
static void on_step(int step, int steps, const float *x0, void *user)
{
    vdiff_gen *a = user;
    if (!a->progress)
        return;
    const md_image *pv = NULL;
    if (x0 && md_videogen_frames(a->u, x0, 1, a->pix) == MD_OK) {
        md_gen_diffusion_to_image(a->pix, &a->preview);
        pv = &a->preview;
    }
    a->progress("denoising", step + 1, steps, 0.95 * (double)(step + 1) / steps, pv, a->user);
}

static double rms(const float *x, int64_t n)
{
    double s = 0.0;
    for (int64_t k = 0; k < n; k++)
        s += (double)x[k] * x[k];
    return sqrt(s / (double)n);
}

/* The space's pull on every frame; with motion guidance, plus the pull of
 * each frame toward itself placed on the path (md_videogen_place), each pull
 * scaled to unit RMS first and the motion's weighed by motion_steer (the
 * sampler scales the sum to the steer asked). */
static md_status steer_grad(const float *x0, int n, float *grad, void *user)
{
    vdiff_gen *a = user;
    if (a->cancel && *a->cancel)   /* the space's pass over 16 frames is long: stop before it */
        return MD_ABORTED;
    md_status st = md_videogen_space_grad(a->u, a->sp, a->g, x0, n, a->cond, grad);
    if (st != MD_OK || !(a->motion_steer > 0.f))
        return st;
    const int64_t size = md_unet_size(a->u);
    for (int i = 0; i < n && st == MD_OK; i++) {
        const float *xi = x0 + (size_t)i * (size_t)size;
        float *gi = grad + (size_t)i * (size_t)size;
        if ((st = md_videogen_place(a->u, a->path, xi, a->pix, a->target32)) != MD_OK)
            break;
        for (int64_t k = 0; k < size; k++)
            a->target32[k] -= xi[k];
        const double rs = rms(gi, size), rm = rms(a->target32, size);
        const float ks = rs > 0.0 ? (float)(1.0 / rs) : 0.f, km = rm > 0.0 ? a->motion_steer / (float)rm : 0.f;
        for (int64_t k = 0; k < size; k++)
            gi[k] = ks * gi[k] + km * a->target32[k];
    }
    return st;
}

/* The candidate the space's video encoder places closest to cond. */
static md_status pick(vdiff_gen *a, const float *cond, int n, int *best)
{
    const int64_t jsz = md_space_input_size(MD_MOD_VIDEO), fpx = (int64_t)MD_WORLD_SIZE * MD_WORLD_SIZE * 3;
    for (int i = 0; i < n; i++) {
        for (int f = 0; f < F; f++)
            md_vqgan_to_rgb(a->pix + ((size_t)i * F + (size_t)f) * FRAME, a->rgb + fpx * f);
        md_judge_prep_frames(a->rgb, a->jx + jsz * i);
    }
    return md_space_pick_closest(a->sp, a->g, MD_MOD_VIDEO, a->jx, n, cond, best, NULL);
}

static md_status run(void *self, const md_gen_condition *c, const double *p, uint64_t seed,
                     md_gen_progress_fn progress, void *user, const volatile int *cancel, md_gen_output *out)
{
    vdiff_gen *a = self;
    memset(out, 0, sizeof *out);
    out->modality = MD_MOD_VIDEO;
    a->progress = progress;
    a->user = user;
    a->cond = c->vec;
    a->cancel = cancel;
    const int n = (int)p[P_CANDIDATES];
    const bool steer = p[P_STEER] > 0.0;
    /* the path pulls while space guidance steers, and places the frames at
     * the end either way */
    a->motion_steer = a->mo ? (float)p[P_MOTION_STEER] : 0.f;
    if (a->motion_steer > 0.f) {   /* one path for the run, drawn as the other video paths draw theirs */
        int32_t ids[MD_MOTION_TEXT_IDS];
        size_t nids = c->text ? md_bpe_encode(a->sp->bpe, c->text, strlen(c->text), ids, MD_MOTION_TEXT_IDS) : 0;
        md_status ps = md_motion_draw(a->mo, a->g, c->vec, ids, (int)(nids < MD_MOTION_TEXT_IDS ? nids : MD_MOTION_TEXT_IDS),
                                      (float)p[P_MOTION_TEMPERATURE], seed, a->path, NULL);
        if (ps != MD_OK)
            return ps;
    }
    md_unet_sample_opts so = {(int)p[P_STEPS], (float)p[P_GUIDANCE], (float)p[P_ETA], PREVIEW_EVERY,
                              steer ? steer_grad : NULL, a, steer ? (float)p[P_STEER] : 0.f, (float)p[P_STEER_UNTIL]};
    md_status st = md_unet_sample(a->u, a->g, c->vec, n, &so, seed, on_step, a, cancel, a->z);
    const int64_t size = md_unet_size(a->u);
    for (int i = 0; st == MD_OK && a->motion_steer > 0.f && i < n; i++) {   /* the frames placed on the path */
        float *zi = a->z + (size_t)i * (size_t)size;
        if ((st = md_videogen_place(a->u, a->path, zi, a->pix, a->target32)) == MD_OK)
            memcpy(zi, a->target32, sizeof(float) * (size_t)size);
    }
    if (st == MD_OK)
        st = md_videogen_frames(a->u, a->z, n, a->pix);
    int best = 0;
    if (st == MD_OK && n > 1)
        st = pick(a, c->vec, n, &best);
    if (st == MD_OK && cancel && *cancel)
        st = MD_ABORTED;
    if (st == MD_OK)
        st = md_gen_diffusion_to_video(a->pix + (size_t)best * F * FRAME, &out->video);
    if (st == MD_OK && progress)
        progress("decoding", 1, 1, 1.0, NULL, user);
    if (st != MD_OK)
        md_gen_output_free(out);
    return st;
}

static void gen_free(void *self)
{
    vdiff_gen *a = self;
    if (!a)
        return;
    if (a->own_graph)
        md_graph_free(a->g);
    free(a->z);
    free(a->pix);
    free(a->rgb);
    free(a->jx);
    free(a->target32);
    md_image_free(&a->preview);
    free(a);
}

md_generator *md_gen_video_diffusion_temporal_new(const md_unet *u, const md_space *sp, const md_motion *mo,
                                                  const char *model_id, md_gen_workspace *ws)
{
    if (!md_videogen_is_video(&u->cfg)) {
        md_log(MD_LOG_ERROR, "the video diffusion generator needs a model of %d frames of 3 x %d x %d pixels, not "
                             "%d frames of %d x %d x %d: retrain it with 'medley train diffusion --space video32'",
               F, MD_WORLD_SIZE / 2, MD_WORLD_SIZE / 2, md_unet_frames(&u->cfg), u->cfg.cin, u->cfg.h, u->cfg.w);
        return NULL;
    }
    md_generator *g = calloc(1, sizeof *g);
    vdiff_gen *a = calloc(1, sizeof *a);
    md_status pst = MD_ERR_ALLOC;
    if (a) {
        a->u = u;
        a->sp = sp;
        a->mo = mo;
        a->target32 = malloc(sizeof(float) * (size_t)md_unet_size(u));
        snprintf(a->model_id, sizeof a->model_id, "%s", model_id ? model_id : MD_VIDEOGEN_MODEL);
        a->own_graph = !ws;
        a->g = ws ? ws->graph : md_graph_new((size_t)1 << 22);
        a->z = malloc(sizeof(float) * MAX_CANDIDATES * (size_t)md_unet_size(u));
        a->pix = malloc(sizeof(float) * MAX_CANDIDATES * F * (size_t)FRAME);
        a->rgb = malloc((size_t)F * MD_WORLD_SIZE * MD_WORLD_SIZE * 3);
        a->jx = malloc(sizeof(float) * MAX_CANDIDATES * (size_t)md_space_input_size(MD_MOD_VIDEO));
        pst = md_image_alloc(&a->preview, MD_WORLD_SIZE, MD_WORLD_SIZE, 3);
    }
    if (!g || !a || !a->g || !a->z || !a->pix || !a->rgb || !a->jx || !a->target32 || pst != MD_OK) {
        md_log(MD_LOG_ERROR, "video diffusion generator: out of memory");
        gen_free(a);
        free(g);
        return NULL;
    }
    g->name = "diffusion-video";
    g->model_id = a->model_id;
    g->output = MD_MOD_VIDEO;
    g->params = params;
    g->nparams = mo ? P_COUNT : P_MOTION_STEER;
    g->self = a;
    g->run = run;
    g->free = gen_free;
    return g;
}
