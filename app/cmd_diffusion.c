/* cmd_diffusion.c — the diffusion models: `medley train audio` (the audio
 * decoder, core/audiogen.h) and `medley train diffusion` (the latent
 * diffusion decoder for pictures, core/imagegen.h), each with a quick check
 * of what it makes from digit prompts. */
#include "audiogen.h"
#include "imagegen.h"
#include "tokens.h"
#include "caption.h"
#include "commands.h"
#include "safetensors.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void medley_train_progress(const char *stage, int64_t step, int64_t steps, float loss, void *user)
{
    medley_train_ctx *c = user;
    if (strcmp(stage, "training") != 0) {
        if (step == steps)
            printf("  %s %lld/%lld  %.0f s\n", stage, (long long)step, (long long)steps,
                   md_time_now() - c->t0);
        fflush(stdout);
        return;
    }
    c->ema = step == 0 ? loss : 0.98f * c->ema + 0.02f * loss;
    if ((step + 1) % c->every == 0 || step + 1 == steps) {
        printf("  step %lld/%lld  loss %.4f  %.0f s\n", (long long)step + 1, (long long)steps, c->ema,
               md_time_now() - c->t0);
        fflush(stdout);
    }
}

/* The options both trainers take. Fields keep the defaults given when
 * their option is absent; returns 2 (after saying why) on a bad option. */
typedef struct train_args {
    const char *data, *out, *models;
    long seed, steps, batch, corpus, ch;
    double lr;
    double ink_weight;               /* pictures: < 0 where not taken */
    const char *space;               /* pictures: "latent" or "pixels"; NULL where not taken */
    const char *init;                /* pictures: a model file to go on from (NULL: fresh weights) */
    double noise_share;              /* videos: < 0 where not taken */
    bool noise_share_given, corpus_given, batch_given;
} train_args;

static int parse_train_args(const char *cmd, int argc, char **argv, train_args *t)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            fprintf(stderr, "%s: %s needs a value\n", cmd, a);
            return 2;
        }
        if (strcmp(a, "--data") == 0)
            t->data = val;
        else if (strcmp(a, "--out") == 0 || strcmp(a, "-o") == 0)
            t->out = val;
        else if (strcmp(a, "--models") == 0)
            t->models = val;
        else if (strcmp(a, "--seed") == 0) {
            if (medley_parse_int(a, val, 0, 2147483647L, &t->seed)) return 2;
        } else if (strcmp(a, "--steps") == 0) {
            if (medley_parse_int(a, val, 1, 10000000L, &t->steps)) return 2;
        } else if (strcmp(a, "--batch") == 0) {
            if (medley_parse_int(a, val, 2, 1024, &t->batch)) return 2;
            t->batch_given = true;
        } else if (strcmp(a, "--corpus") == 0) {
            if (medley_parse_int(a, val, 2, 1000000L, &t->corpus)) return 2;
            t->corpus_given = true;
        } else if (strcmp(a, "--ch") == 0) {
            if (medley_parse_int(a, val, 8, 256, &t->ch)) return 2;
            if (t->ch % 8) {
                fprintf(stderr, "%s: --ch %ld is not a multiple of 8\n", cmd, t->ch);
                return 2;
            }
        } else if (strcmp(a, "--lr") == 0) {
            if (medley_parse_double(a, val, 1e-6, 1.0, &t->lr)) return 2;
        } else if (strcmp(a, "--ink-weight") == 0 && t->ink_weight >= 0.0) {
            if (medley_parse_double(a, val, 0.0, 1000.0, &t->ink_weight)) return 2;
        } else if (strcmp(a, "--space") == 0 && t->space) {
            if (strcmp(val, "latent") != 0 && strcmp(val, "pixels") != 0 && strcmp(val, "pixels32") != 0 &&
                strcmp(val, "video32") != 0) {
                fprintf(stderr, "%s: --space \"%s\": expected latent, pixels, pixels32 or video32\n", cmd, val);
                return 2;
            }
            t->space = val;
        } else if (strcmp(a, "--noise-share") == 0 && t->noise_share >= 0.0) {
            if (medley_parse_double(a, val, 0.0, 0.95, &t->noise_share)) return 2;
            t->noise_share_given = true;
        } else if (strcmp(a, "--init") == 0 && t->space) {
            t->init = val;
        } else {
            fprintf(stderr, "%s: unknown option \"%s\"\n", cmd, a);
            return 2;
        }
        i++;
    }
    return 0;
}

/* n digit-only prompts (digits 0..9 in turn) worded for kind, embedded
 * into cond [n, MD_SPACE_DIM]: what both quick checks ask for. */
static md_status digit_prompts(const md_space *sp, md_graph *g, md_world_kind kind, int n, float *cond)
{
    char(*caps)[MD_CAPTION_MAX] = malloc(sizeof *caps * (size_t)n);
    const char **cp = malloc(sizeof *cp * (size_t)n);
    md_status st = caps && cp ? MD_OK : MD_ERR_ALLOC;
    for (int i = 0; i < n && st == MD_OK; i++) {
        st = md_caption_digit(kind, i % 10, 0xa0d10u + (uint64_t)i, caps[i], MD_CAPTION_MAX);
        cp[i] = caps[i];
    }
    if (st == MD_OK)
        st = md_space_embed(sp, g, MD_MOD_TEXT, cp, n, cond);
    free(cp);
    free(caps);
    return st;
}

int medley_audio_check(const md_unet *u, const md_space *sp, const md_judge *judge, int per_digit, int steps,
                       float guidance, double *acc);

/* per_digit clips for each digit from validation-style digit prompts,
 * vocoded and read by the audio judge: the share whose digit is heard. */
int medley_audio_check(const md_unet *u, const md_space *sp, const md_judge *judge, int per_digit, int steps,
                       float guidance, double *acc)
{
    const int n = 10 * per_digit;
    const int64_t D = MD_SPACE_DIM, jsz = md_judge_input_size(MD_WORLD_AUDIO);
    float *cond = malloc(sizeof(float) * (size_t)(n * D));
    float *x = malloc(sizeof(float) * MD_AUDIOGEN_SIZE);
    float *audio = malloc(sizeof(float) * MD_WORLD_AUDIO_SAMPLES);
    float *jx = malloc(sizeof(float) * (size_t)(n * jsz));
    int(*attrs)[MD_ATTR_COUNT] = malloc(sizeof(int[MD_ATTR_COUNT]) * (size_t)n);
    md_graph *g = md_graph_new((size_t)1 << 26);
    md_status st = cond && x && audio && jx && attrs && g ? MD_OK : MD_ERR_ALLOC;
    if (st == MD_OK)
        st = digit_prompts(sp, g, MD_WORLD_AUDIO, n, cond);
    md_unet_sample_opts so = {.steps = steps, .guidance = guidance, .eta = 0.f};
    for (int i = 0; i < n && st == MD_OK; i++) {
        st = md_unet_sample(u, g, cond + D * i, 1, &so, 1000 + (uint64_t)i, NULL, NULL, NULL, x);
        if (st == MD_OK)
            st = md_audiogen_vocode(x, 48, (uint64_t)i, NULL, audio);
        if (st == MD_OK)
            st = md_judge_prep_audio(audio, jx + jsz * i);
    }
    if (st == MD_OK)
        st = md_judge_read(judge, g, jx, n, attrs, NULL);
    int right = 0;
    for (int i = 0; i < n && st == MD_OK; i++)
        right += attrs[i][MD_ATTR_DIGIT] == i % 10;
    *acc = st == MD_OK ? (double)right / n : NAN;
    md_graph_free(g);
    free(attrs); free(jx); free(audio); free(x); free(cond);
    return st == MD_OK ? 0 : 1;
}

int medley_cmd_train_audio(int argc, char **argv)
{
    md_audiogen_train_opts o;
    md_audiogen_train_default_opts(&o);
    train_args t = {NULL, NULL, NULL, (long)o.seed, (long)o.steps, o.batch, o.corpus, o.ch, o.lr, -1.0, NULL, NULL, -1.0, false, false, false};
    if (parse_train_args("medley train audio", argc, argv, &t))
        return 2;
    const char *data = t.data, *out = t.out, *models = t.models;
    o.seed = (uint64_t)t.seed;
    o.steps = t.steps;
    o.batch = (int)t.batch;
    o.corpus = (int)t.corpus;
    o.ch = (int)t.ch;
    o.lr = (float)t.lr;
    if (!(out = medley_output_dir(out, "medley train audio")))
        return 1;
    const char *dir = medley_models_dir(models);
    char path[4096];
    md_space sp;
    snprintf(path, sizeof path, "%s/space.safetensors", dir);
    if (md_space_load(&sp, path) != MD_OK) {
        fprintf(stderr, "medley train audio: %s (train it with 'medley train space')\n", md_last_error());
        return 1;
    }
    md_judge judge;
    snprintf(path, sizeof path, "%s/judge-audio.safetensors", dir);
    bool have_judge = md_judge_load(&judge, path, MD_WORLD_AUDIO) == MD_OK;
    md_world w;
    if (md_world_open(data, &w) != MD_OK) {
        fprintf(stderr, "medley: %s\n", md_last_error());
        if (have_judge)
            md_judge_free(&judge);
        md_space_free(&sp);
        return 1;
    }
    printf("training the audio decoder (diffusion over 40x104 log-mels, ch %d): %lld steps of %d from %d clips; "
           "%d threads\n", o.ch, (long long)o.steps, o.batch, o.corpus, md_threads_get());
    fflush(stdout);
    medley_train_ctx c = {md_time_now(), 0, o.steps >= 1000 ? 100 : 10};
    o.progress = medley_train_progress;
    o.user = &c;
    o.cancel = &medley_cancel;
    md_unet u;
    md_status st = md_audiogen_train(&u, &sp, &w, &o);
    double secs = md_time_now() - c.t0;
    if (st == MD_OK) {
        printf("  audio decoder: %lld parameters\n", (long long)md_paramset_numel(u.ps));
        char recipe[512];
        snprintf(path, sizeof path, "%s/audiogen.safetensors", out);
        snprintf(recipe, sizeof recipe,
                 "{\"command\":\"medley train audio\",\"steps\":%lld,\"batch\":%d,\"lr\":%g,\"ch\":%d,"
                 "\"corpus\":%d,\"ema\":%g,\"seed\":%llu,\"seconds\":%.0f,\"threads\":%d}",
                 (long long)o.steps, o.batch, (double)o.lr, o.ch, o.corpus, (double)o.ema,
                 (unsigned long long)o.seed, secs, md_threads_get());
        st = md_unet_save(&u, path, MD_AUDIOGEN_MODEL, recipe, w.data_hash);
        if (st == MD_OK)
            printf("saved %s (%.0f s in all)\n", path, secs);
        double acc;
        if (st == MD_OK && have_judge && medley_audio_check(&u, &sp, &judge, 2, 25, 3.f, &acc) == 0)
            printf("  audio judge hears the asked digit in %.0f%% of 20 clips from digit prompts\n", 100 * acc);
        md_unet_free(&u);
    }
    if (st != MD_OK)
        fprintf(stderr, "medley train audio: %s\n", st == MD_ABORTED ? "cancelled" : md_last_error());
    if (have_judge)
        md_judge_free(&judge);
    md_world_close(&w);
    md_space_free(&sp);
    return st == MD_OK ? 0 : st == MD_ABORTED ? 130 : 1;
}

/* per_digit pictures for each digit from digit prompts, decoded and read
 * by the image judge: the share showing the asked digit. */
int medley_image_check(const md_unet *u, const md_space *sp, const md_vqgan *vq, const md_judge *judge,
                       int per_digit, int steps, float guidance, double *acc);
int medley_image_check(const md_unet *u, const md_space *sp, const md_vqgan *vq, const md_judge *judge,
                       int per_digit, int steps, float guidance, double *acc)
{
    const int n = 10 * per_digit;
    const int64_t D = MD_SPACE_DIM, jsz = md_judge_input_size(MD_WORLD_IMAGE), isz = 3 * 64 * 64;
    float *cond = malloc(sizeof(float) * (size_t)(n * D));
    float *z = malloc(sizeof(float) * (size_t)md_unet_size(u));
    float *px = malloc(sizeof(float) * (size_t)isz);
    uint8_t rgb[64 * 64 * 3];
    float *jx = malloc(sizeof(float) * (size_t)(n * jsz));
    int(*attrs)[MD_ATTR_COUNT] = malloc(sizeof(int[MD_ATTR_COUNT]) * (size_t)n);
    md_graph *g = md_graph_new((size_t)1 << 26);
    md_status st = cond && z && px && jx && attrs && g ? MD_OK : MD_ERR_ALLOC;
    if (st == MD_OK)
        st = digit_prompts(sp, g, MD_WORLD_IMAGE, n, cond);
    md_unet_sample_opts so = {.steps = steps, .guidance = guidance, .eta = 0.f};
    for (int i = 0; i < n && st == MD_OK; i++) {
        st = md_unet_sample(u, g, cond + D * i, 1, &so, 1000 + (uint64_t)i, NULL, NULL, NULL, z);
        if (st == MD_OK)
            st = md_imagegen_pixels(u, vq, g, z, 1, px);
        if (st == MD_OK) {
            md_vqgan_to_rgb(px, rgb);
            md_judge_prep_rgb(rgb, jx + jsz * i);
        }
    }
    if (st == MD_OK)
        st = md_judge_read(judge, g, jx, n, attrs, NULL);
    int right = 0;
    for (int i = 0; i < n && st == MD_OK; i++)
        right += attrs[i][MD_ATTR_DIGIT] == i % 10;
    *acc = st == MD_OK ? (double)right / n : NAN;
    md_graph_free(g);
    free(attrs); free(jx); free(px); free(z); free(cond);
    return st == MD_OK ? 0 : 1;
}

int medley_cmd_train_diffusion(int argc, char **argv)
{
    md_imagegen_train_opts o;
    md_imagegen_train_default_opts(&o);
    train_args t = {NULL, NULL, NULL, (long)o.seed, (long)o.steps, o.batch, o.corpus, o.ch, o.lr, 0.0, "latent", NULL, 0.9, false, false, false};
    if (parse_train_args("medley train diffusion", argc, argv, &t))
        return 2;
    const bool video = strcmp(t.space, "video32") == 0;
    o.pixels = strncmp(t.space, "pixels", 6) == 0 || video;
    o.side = strcmp(t.space, "pixels32") == 0 || video ? 32 : 64;
    o.frames = video ? MD_WORLD_FRAMES : 0;
    o.noise_share = video ? (float)t.noise_share : 0.f;
    if (!video && t.noise_share_given) {
        fprintf(stderr, "medley train diffusion: --noise-share is for videos (--space video32)\n");
        return 2;
    }
    if (video && !t.init) {
        fprintf(stderr, "medley train diffusion: --space video32 starts from a picture model: give --init "
                        "imagegen.safetensors (or a video model to go on from)\n");
        return 2;
    }
    if (video && !t.corpus_given)   /* videos: 196 KB each, 16 frames a batch item */
        t.corpus = 3000;
    if (video && !t.batch_given)
        t.batch = 2;
    if (video && (t.corpus > 8000 || t.batch > 16)) {
        fprintf(stderr, "medley train diffusion: --corpus %ld --batch %ld: videos take at most 8000 and 16\n",
                t.corpus, t.batch);
        return 2;
    }
    o.ink_weight = (float)t.ink_weight;
    if (o.ink_weight > 0.f && !o.pixels) {
        fprintf(stderr, "medley train diffusion: --ink-weight needs --space pixels or pixels32 (the latents have no "
                        "ink to weigh)\n");
        return 2;
    }
    const char *data = t.data, *out = t.out, *models = t.models;
    o.seed = (uint64_t)t.seed;
    o.steps = t.steps;
    o.batch = (int)t.batch;
    o.corpus = (int)t.corpus;
    o.ch = (int)t.ch;
    o.lr = (float)t.lr;
    if (!(out = medley_output_dir(out, "medley train diffusion")))
        return 1;
    const char *dir = medley_models_dir(models);
    char path[4096];
    md_space sp;
    md_vqgan vq;
    snprintf(path, sizeof path, "%s/space.safetensors", dir);
    if (md_space_load(&sp, path) != MD_OK) {
        fprintf(stderr, "medley train diffusion: %s (train it with 'medley train space')\n", md_last_error());
        return 1;
    }
    snprintf(path, sizeof path, "%s/vqgan.safetensors", dir);
    if (md_vqgan_load(&vq, path) != MD_OK) {
        fprintf(stderr, "medley train diffusion: %s (train it with 'medley train vqgan')\n", md_last_error());
        md_space_free(&sp);
        return 1;
    }
    md_unet init;
    bool have_init = false;
    if (t.init) {
        /* a video run goes on from a video model or starts from a picture model */
        bool init_video = false;
        md_st_file *f;
        if (video && md_st_open(t.init, &f) == MD_OK) {
            const char *kind = md_st_meta(f, "medley.model");
            init_video = kind && strcmp(kind, MD_VIDEOGEN_MODEL) == 0;
            md_st_close(f);
        }
        if (md_unet_load(&init, t.init, init_video ? MD_VIDEOGEN_MODEL : MD_IMAGEGEN_MODEL,
                         init_video ? "video diffusion decoder" : "picture diffusion decoder",
                         "medley train diffusion") != MD_OK) {
            fprintf(stderr, "medley train diffusion: --init: %s\n", md_last_error());
            md_vqgan_free(&vq);
            md_space_free(&sp);
            return 1;
        }
        have_init = true;
        o.init = &init;
    }
    md_judge judge;
    snprintf(path, sizeof path, "%s/judge-image.safetensors", dir);
    bool have_judge = md_judge_load(&judge, path, MD_WORLD_IMAGE) == MD_OK;
    md_world w;
    if (md_world_open(data, &w) != MD_OK) {
        fprintf(stderr, "medley: %s\n", md_last_error());
        if (have_judge)
            md_judge_free(&judge);
        if (have_init)
            md_unet_free(&init);
        md_vqgan_free(&vq);
        md_space_free(&sp);
        return 1;
    }
    printf("training the %s diffusion decoder (over %s, ch %d, ink weight %g): %lld steps of %d from %d %s%s%s; "
           "%d threads\n", video ? "video" : "picture",
           video ? "16 frames of 3x32x32 pixels" : o.pixels ? (o.side == 32 ? "3x32x32 pixels" : "3x64x64 pixels")
                                                          : "the tokenizer's 32x16x16 latents", o.ch,
           (double)o.ink_weight, (long long)o.steps, o.batch, o.corpus, video ? "videos" : "images",
           t.init ? ", going on from " : "",
           t.init ? t.init : "", md_threads_get());
    fflush(stdout);
    medley_train_ctx c = {md_time_now(), 0, o.steps >= 1000 ? 100 : 10};
    o.progress = medley_train_progress;
    o.user = &c;
    o.cancel = &medley_cancel;
    md_unet u;
    md_status st = md_imagegen_train(&u, &sp, &vq, &w, &o);
    double secs = md_time_now() - c.t0;
    if (st == MD_OK) {
        printf("  %s diffusion: %lld parameters\n", video ? "video" : "picture", (long long)md_paramset_numel(u.ps));
        char recipe[512];
        snprintf(path, sizeof path, "%s/%s.safetensors", out, video ? MD_VIDEOGEN_MODEL : MD_IMAGEGEN_MODEL);
        snprintf(recipe, sizeof recipe,
                 "{\"command\":\"medley train diffusion\",\"space\":\"%s\",\"steps\":%lld,\"batch\":%d,\"lr\":%g,"
                 "\"ch\":%d,\"corpus\":%d,\"ink_weight\":%g,\"ema\":%g,\"seed\":%llu,\"seconds\":%.0f,"
                 "\"threads\":%d,\"init\":%s}",
                 t.space, (long long)o.steps, o.batch, (double)o.lr, o.ch, o.corpus, (double)o.ink_weight, (double)o.ema,
                 (unsigned long long)o.seed, secs, md_threads_get(), have_init ? "true" : "false");
        st = md_unet_save(&u, path, video ? MD_VIDEOGEN_MODEL : MD_IMAGEGEN_MODEL, recipe, w.data_hash);
        if (st == MD_OK)
            printf("saved %s (%.0f s in all)\n", path, secs);
        double acc;
        if (st == MD_OK && have_judge && !video && medley_image_check(&u, &sp, &vq, &judge, 2, 25, 3.f, &acc) == 0)
            printf("  image judge sees the asked digit in %.0f%% of 20 pictures from digit prompts\n", 100 * acc);
        md_unet_free(&u);
    }
    if (st != MD_OK)
        fprintf(stderr, "medley train diffusion: %s\n", st == MD_ABORTED ? "cancelled" : md_last_error());
    if (have_judge)
        md_judge_free(&judge);
    if (have_init)
        md_unet_free(&init);
    md_world_close(&w);
    md_vqgan_free(&vq);
    md_space_free(&sp);
    return st == MD_OK ? 0 : st == MD_ABORTED ? 130 : 1;
}
