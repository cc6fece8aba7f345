/* audio_gen.c — see audio_gen.h. */
#include "audio_gen.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { P_STEPS, P_GUIDANCE, P_ETA, P_CANDIDATES, P_VOCODER, P_VOCODER_ITERS, P_COUNT };

#define MAX_CANDIDATES 8

static const md_gen_param_spec param_specs[P_COUNT] = {
    {"steps", "DDIM denoising steps", MD_GEN_INT, 25, 1, 200},
    {"guidance", "classifier-free guidance scale (1: none)", MD_GEN_FLOAT, 3.0, 0.0, 20.0},
    {"eta", "DDIM noise: 0 deterministic, 1 as DDPM", MD_GEN_FLOAT, 0.0, 0.0, 1.0},
    {"candidates", "draw this many spectrograms side by side and keep the one the aligned space finds "
                   "closest to the condition", MD_GEN_INT, 2, 1, MAX_CANDIDATES},
    {"vocoder", "0: Griffin-Lim phase recovery (the default: it measured better); 1: the neural vocoder, where "
                "one is bundled", MD_GEN_INT, 0, 0, 1},
    {"vocoder_iters", "Griffin-Lim iterations (vocoder 0)", MD_GEN_INT, 48, 1, 500},
};

#define PREVIEW_EVERY 5

typedef struct audio_gen {
    const md_unet *u;
    const md_vocoder *voc;           /* NULL: Griffin-Lim only */
    const md_space *sp;
    md_graph *g;                     /* sampling (the workspace's when lent) */
    bool own_graph;
    char model_id[256];
    float *x;                        /* [MAX_CANDIDATES, SIZE] */
    md_image preview;
    /* during a run */
    md_gen_progress_fn progress;
    void *user;
    int n;                           /* candidates */
    double share;                    /* of the progress bar the denoising takes */
} audio_gen;

void md_gen_audio_mel_picture(const float *x, md_image *im)
{
    const int W = MD_AUDIOGEN_FRAMES, H = MD_AUDIOGEN_MELS;
    MD_ASSERT(im->width == W && im->height == H && im->channels == 3);
    for (int y = 0; y < H; y++)
        for (int t = 0; t < W; t++) {
            /* scaled log-mel: about -2 (silence) .. 2 */
            float v = (x[(H - 1 - y) * MD_AUDIOGEN_WIDTH + t] + 2.f) * 0.25f;
            v = v < 0.f ? 0.f : v > 1.f ? 1.f : v;
            float *p = im->pixels + ((size_t)y * W + t) * 3;
            p[0] = v < 0.5f ? 0.f : (v - 0.5f) * 2.f;   /* dark blue -> magenta -> yellow-white */
            p[1] = v * v;
            p[2] = v < 0.5f ? v * 1.6f : 0.8f - (v - 0.5f) * 0.6f;
        }
}

static void on_step(int step, int steps, const float *x0, void *user)
{
    audio_gen *a = user;
    if (!a->progress)
        return;
    const md_image *pv = NULL;
    if (x0) {
        md_gen_audio_mel_picture(x0, &a->preview);   /* the first candidate */
        pv = &a->preview;
    }
    a->progress("denoising", step + 1, steps, a->share * (double)(step + 1) / steps, pv, a->user);
}

/* index of the candidate the space places closest to cond */
static md_status pick(audio_gen *a, const float *cond, int n, int *best)
{
    const int64_t jsz = md_space_input_size(MD_MOD_AUDIO);
    float *jx = malloc(sizeof(float) * (size_t)(jsz * n));
    if (!jx)
        return MD_ERR_ALLOC;
    for (int i = 0; i < n; i++)
        md_audiogen_to_judge(a->x + (size_t)i * MD_AUDIOGEN_SIZE, jx + jsz * i);
    md_status st = md_space_pick_closest(a->sp, a->g, MD_MOD_AUDIO, jx, n, cond, best, NULL);
    free(jx);
    return st;
}

static md_status run(void *self, const md_gen_condition *c, const double *p, uint64_t seed,
                     md_gen_progress_fn progress, void *user, const volatile int *cancel, md_gen_output *out)
{
    audio_gen *a = self;
    memset(out, 0, sizeof *out);
    out->modality = MD_MOD_AUDIO;
    a->progress = progress;
    a->user = user;
    a->n = (int)p[P_CANDIDATES];
    a->share = 0.9;
    md_unet_sample_opts so = {(int)p[P_STEPS], (float)p[P_GUIDANCE], (float)p[P_ETA], PREVIEW_EVERY, NULL, NULL, 0.f, 0.f};
    md_status st = md_unet_sample(a->u, a->g, c->vec, a->n, &so, seed, on_step, a, cancel, a->x);
    int best = 0;
    if (st == MD_OK && a->n > 1)
        st = pick(a, c->vec, a->n, &best);
    if (st == MD_OK && cancel && *cancel)
        st = MD_ABORTED;
    if (st == MD_OK)
        st = md_audio_alloc(&out->audio, MD_WORLD_RATE, 1, MD_WORLD_AUDIO_SAMPLES);
    if (st == MD_OK) {
        if (progress)
            progress("vocoding", 0, 1, a->share, NULL, user);
        const float *x = a->x + (size_t)best * MD_AUDIOGEN_SIZE;
        if ((int)p[P_VOCODER] == 1 && !a->voc) {
            md_log(MD_LOG_ERROR, "diffusion-audio: vocoder 1 needs the neural vocoder (vocoder.safetensors; "
                                 "'medley train vocoder' makes it); vocoder 0 is Griffin-Lim");
            st = MD_ERR_INVALID;
        } else if ((int)p[P_VOCODER] == 1)
            st = md_vocoder_run(a->voc, a->g, x, out->audio.samples);
        else
            st = md_audiogen_vocode(x, (int)p[P_VOCODER_ITERS], md_hash64(seed ^ 0x766f63u), cancel,
                                    out->audio.samples);
    }
    if (st == MD_OK && progress)
        progress("vocoding", 1, 1, 1.0, NULL, user);
    if (st != MD_OK)
        md_gen_output_free(out);
    return st;
}

static void gen_free(void *self)
{
    audio_gen *a = self;
    if (!a)
        return;
    if (a->own_graph)
        md_graph_free(a->g);
    free(a->x);
    md_image_free(&a->preview);
    free(a);
}

md_generator *md_gen_audio_new(const md_unet *u, const md_vocoder *voc, const md_space *sp, const char *model_id,
                               md_gen_workspace *ws)
{
    const md_unet_config *c = &u->cfg;
    if (c->cin != 1 || c->h != MD_AUDIOGEN_MELS || c->w != MD_AUDIOGEN_WIDTH) {
        md_log(MD_LOG_ERROR, "the audio generator needs a model of 1 x %d x %d spectrograms, not %d x %d x %d: "
                             "retrain it with 'medley train audio'",
               MD_AUDIOGEN_MELS, MD_AUDIOGEN_WIDTH, c->cin, c->h, c->w);
        return NULL;
    }
    md_generator *g = calloc(1, sizeof *g);
    audio_gen *a = calloc(1, sizeof *a);
    md_status pst = MD_ERR_ALLOC;
    if (a) {
        a->u = u;
        a->voc = voc;
        a->sp = sp;
        snprintf(a->model_id, sizeof a->model_id, "%s", model_id ? model_id : "audiogen");
        a->own_graph = !ws;
        a->g = ws ? ws->graph : md_graph_new((size_t)1 << 22);   /* grows to one denoising step once */
        a->x = malloc(sizeof(float) * MAX_CANDIDATES * MD_AUDIOGEN_SIZE);
        pst = md_image_alloc(&a->preview, MD_AUDIOGEN_FRAMES, MD_AUDIOGEN_MELS, 3);
    }
    if (!g || !a || !a->g || !a->x || pst != MD_OK) {
        md_log(MD_LOG_ERROR, "audio generator: out of memory");
        gen_free(a);
        free(g);
        return NULL;
    }
    g->name = "diffusion-audio";
    g->model_id = a->model_id;
    g->output = MD_MOD_AUDIO;
    g->params = param_specs;
    g->nparams = P_COUNT;
    g->self = a;
    g->run = run;
    g->free = gen_free;
    return g;
}
