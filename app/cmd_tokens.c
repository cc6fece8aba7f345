/* cmd_tokens.c — `medley train tokens` (the token transformer, core/tokens.h)
 * and its cells of the any-to-any matrix: every input modality -> image,
 * video and caption through the token generators. */
#include "bundle.h"
#include "job.h"
#include "caption.h"
#include "metrics.h"
#include "audio_gen.h"
#include "image_diffusion_gen.h"
#include "video_diffusion_gen.h"
#include "tokens_gen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tok_ctx {
    double t0;
    float ema;
    const char *last_stage;
} tok_ctx;

static void tok_progress(const char *stage, int64_t step, int64_t steps, float loss, void *user)
{
    tok_ctx *c = user;
    if (strcmp(stage, "training") != 0) {
        if (step == steps || step % 2048 < 64)
            printf("  tokens: %s %lld/%lld  %.0f s\n", stage, (long long)step, (long long)steps,
                   md_time_now() - c->t0);
        fflush(stdout);
        return;
    }
    c->ema = step == 0 ? loss : 0.98f * c->ema + 0.02f * loss;
    if ((step + 1) % 50 == 0 || step + 1 == steps) {
        printf("  tokens: step %lld/%lld  loss %.4f  %.0f s\n", (long long)step + 1, (long long)steps, c->ema,
               md_time_now() - c->t0);
        fflush(stdout);
    }
}

int medley_cmd_train_tokens(int argc, char **argv)
{
    const char *data = NULL, *out = NULL, *models = NULL, *init_path = NULL;
    md_tok_train_opts o;
    md_tok_train_default_opts(&o);
    long quick = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        long v;
        if (!val) {
            fprintf(stderr, "medley train tokens: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--data") == 0)
            data = val;
        else if (strcmp(a, "--out") == 0 || strcmp(a, "-o") == 0)
            out = val;
        else if (strcmp(a, "--models") == 0)
            models = val;
        else if (strcmp(a, "--seed") == 0) {
            if (medley_parse_int(a, val, 0, 2147483647L, &v)) return 2;
            o.seed = (uint64_t)v;
        } else if (strcmp(a, "--steps") == 0) {
            if (medley_parse_int(a, val, 1, 10000000L, &v)) return 2;
            o.steps = v;
        } else if (strcmp(a, "--batch-images") == 0 || strcmp(a, "--batch-videos") == 0) {
            if (medley_parse_int(a, val, 0, 1024, &v)) return 2;
            *(a[8] == 'i' ? &o.batch_images : &o.batch_videos) = (int)v;
        } else if (strcmp(a, "--images") == 0 || strcmp(a, "--videos") == 0) {
            if (medley_parse_int(a, val, 1, 10000000L, &v)) return 2;
            *(a[2] == 'i' ? &o.corpus_images : &o.corpus_videos) = v;
        } else if (strcmp(a, "--d") == 0) {
            if (medley_parse_int(a, val, 16, 2048, &v)) return 2;
            o.d = v;
        } else if (strcmp(a, "--layers") == 0) {
            if (medley_parse_int(a, val, 1, 48, &v)) return 2;
            o.layers = v;
        } else if (strcmp(a, "--heads") == 0) {
            if (medley_parse_int(a, val, 1, 64, &v)) return 2;
            o.heads = v;
        } else if (strcmp(a, "--lr") == 0) {
            double f;
            if (medley_parse_double(a, val, 1e-6, 1.0, &f)) return 2;
            o.lr = (float)f;
        } else if (strcmp(a, "--video-chain") == 0) {
            if (medley_parse_int(a, val, 0, 1, &v)) return 2;
            o.video_chain = (int)v;
        } else if (strcmp(a, "--init") == 0) {
            init_path = val;
        } else if (strcmp(a, "--eval") == 0) {
            if (medley_parse_int(a, val, 0, 100000, &quick)) return 2;
        } else {
            fprintf(stderr, "medley train tokens: unknown option \"%s\"\n", a);
            return 2;
        }
        i++;
    }
    if (o.d % o.heads) {
        fprintf(stderr, "medley train tokens: --d %lld is not a multiple of --heads %lld\n", (long long)o.d,
                (long long)o.heads);
        return 2;
    }
    if (!(out = medley_output_dir(out, "medley train tokens")))
        return 1;
    medley_bundle b;
    memset(&b, 0, sizeof b);
    const char *dir = medley_models_dir(models);
    char path[4096];
    snprintf(path, sizeof path, "%s/space.safetensors", dir);
    if (md_space_load(&b.sp, path) != MD_OK) {
        fprintf(stderr, "medley train tokens: %s (train it with 'medley train space')\n", md_last_error());
        return 1;
    }
    b.have_sp = true;
    snprintf(path, sizeof path, "%s/vqgan.safetensors", dir);
    if (md_vqgan_load(&b.vq, path) != MD_OK) {
        fprintf(stderr, "medley train tokens: %s (train it with 'medley train vqgan')\n", md_last_error());
        medley_bundle_free(&b);
        return 1;
    }
    b.have_vq = true;
    md_tokmodel init;
    if (init_path) {
        if (md_tok_load(&init, init_path) != MD_OK) {
            fprintf(stderr, "medley train tokens: --init: %s\n", md_last_error());
            medley_bundle_free(&b);
            return 1;
        }
        o.init = &init;
        o.d = init.d;
        o.layers = init.layers;
        o.heads = init.heads;
        printf("going on from %s\n", init_path);
    }
    md_world w;
    if (md_world_open(data, &w) != MD_OK) {
        fprintf(stderr, "medley: %s\n", md_last_error());
        if (o.init)
            md_tok_free(&init);
        medley_bundle_free(&b);
        return 1;
    }
    printf("training the token transformer: d %lld, %lld layers, %lld heads; %lld steps of %d images + %d videos "
           "from %lld images and %lld videos tokenised once; later frames after %s; %d threads\n",
           (long long)o.d, (long long)o.layers, (long long)o.heads, (long long)o.steps, o.batch_images,
           o.batch_videos, (long long)o.corpus_images, (long long)o.corpus_videos,
           o.video_chain ? "the frame before" : "frame 0", md_threads_get());
    double t0 = md_time_now();
    tok_ctx c = {t0, 0, NULL};
    o.progress = tok_progress;
    o.user = &c;
    o.cancel = &medley_cancel;
    md_status st = md_tok_train(&b.tm, &b.sp, &b.vq, &w, &o);
    if (o.init)
        md_tok_free(&init);
    double secs = md_time_now() - t0;
    if (st == MD_OK) {
        b.have_tm = true;
        char recipe[640];
        snprintf(recipe, sizeof recipe,
                 "{\"command\":\"medley train tokens\",\"steps\":%lld,\"batch_images\":%d,\"batch_videos\":%d,"
                 "\"images\":%lld,\"videos\":%lld,\"d\":%lld,\"layers\":%lld,\"heads\":%lld,\"lr\":%g,"
                 "\"seed\":%llu,\"video_chain\":%d,\"seconds\":%.0f,\"threads\":%d,\"init\":\"%s\"}",
                 (long long)o.steps, o.batch_images, o.batch_videos, (long long)o.corpus_images,
                 (long long)o.corpus_videos, (long long)o.d, (long long)o.layers, (long long)o.heads, (double)o.lr,
                 (unsigned long long)o.seed, o.video_chain, secs, md_threads_get(), init_path ? "a trained model" : "");
        snprintf(path, sizeof path, "%s/tokens.safetensors", out);
        st = md_tok_save(&b.tm, path, recipe, w.data_hash);
        if (st == MD_OK)
            printf("saved %s (%.0f s in all)\n", path, secs);
    }
    if (st == MD_OK && quick > 0) {
        md_judge j[3];
        if (medley_load_judges(models, j) == 0) {
            md_eval_matrix m;
            memset(&m, 0, sizeof m);
            medley_tok_eval_opts eo = {quick, quick, quick, 1.0f, 0, 0.0f, 3.0f, MD_SPLIT_VAL, true, -1, -1,
                                       0, 0, 0, 0, -1, -1.0f, -2, -1.0f, -1.0f, 0, 0, NULL, 0};
            if (medley_eval_tokens(&w, j, &b, &eo, &m) == 0)
                md_eval_matrix_print(stdout, &m);
            for (int k = 0; k < 3; k++)
                md_judge_free(&j[k]);
        }
    }
    if (st != MD_OK)
        fprintf(stderr, "medley train tokens: %s\n", st == MD_ABORTED ? "cancelled" : md_last_error());
    md_world_close(&w);
    medley_bundle_free(&b);
    return st == MD_OK ? 0 : st == MD_ABORTED ? 130 : 1;
}

/* ---- evaluation ---- */

static void to_u8(const float *x, int64_t n, uint8_t *u)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] * 255.f + 0.5f;
        u[i] = (uint8_t)(v < 0.f ? 0.f : v > 255.f ? 255.f : v);
    }
}

/* The condition for input modality `in` from test sample i, and what the
 * output should show (want: -1 = not asked). out_kind: the world kind the
 * output is judged as; judged false: a caption (the digit is parsed, and
 * out_kind only picks the kind of text input). */
static md_status make_condition(const md_world *w, const md_space *sp, md_graph *g, md_modality in,
                                md_world_kind out_kind, bool judged, md_world_split split, int64_t i, float *cond,
                                int want[MD_ATTR_COUNT], char text[MD_CAPTION_MAX])
{
    md_world_kind kind = in == MD_MOD_TEXT ? (out_kind == MD_WORLD_VIDEO   ? MD_WORLD_VIDEO
                                              : out_kind == MD_WORLD_AUDIO && judged ? MD_WORLD_AUDIO
                                                                                    : MD_WORLD_IMAGE)
                         : in == MD_MOD_IMAGE ? MD_WORLD_IMAGE
                         : in == MD_MOD_AUDIO ? MD_WORLD_AUDIO
                                              : MD_WORLD_VIDEO;
    md_world_sample s;
    md_status st = md_world_draw(w, 29, split, kind, i, &s);
    if (st != MD_OK)
        return st;
    for (int a = 0; a < MD_ATTR_COUNT; a++)
        want[a] = -1;
    text[0] = '\0';
    if (in == MD_MOD_TEXT) {
        int stated[MD_ATTR_COUNT];
        if ((st = md_caption_make(&s, (int)(i % MD_CAPTIONS_PER_SAMPLE), text, MD_CAPTION_MAX, stated)) != MD_OK)
            return st;
        const char *t = text;
        if ((st = md_space_embed(sp, g, MD_MOD_TEXT, &t, 1, cond)) != MD_OK)
            return st;
        for (int a = 0; a < MD_ATTR_COUNT; a++)   /* what the caption states and the output's judge reads */
            if (stated[a] >= 0 && (a == MD_ATTR_DIGIT || (judged && md_judge_reads(out_kind, a))))
                want[a] = stated[a];
        return MD_OK;
    }
    float *x = malloc(sizeof(float) * (size_t)md_space_input_size(in));
    uint8_t *scratch = malloc((size_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3);
    st = x && scratch ? md_space_prep_sample(w, &s, scratch, x) : MD_ERR_ALLOC;
    if (st == MD_OK)
        st = md_space_embed(sp, g, in, x, 1, cond);
    free(scratch);
    free(x);
    want[MD_ATTR_DIGIT] = s.attr[MD_ATTR_DIGIT];
    if (in == MD_MOD_VIDEO && out_kind == MD_WORLD_VIDEO)
        want[MD_ATTR_MOTION] = s.attr[MD_ATTR_MOTION];
    return st;
}

/* Judge features of n real samples (split, kind), seed 23 as the reference. */
static md_status real_features(const md_world *w, const md_judge *j, md_world_split split, int64_t n, float *feats)
{
    const int64_t isz = md_judge_input_size(j->kind);
    float *x = malloc(sizeof(float) * (size_t)(isz * n));
    int(*got)[MD_ATTR_COUNT] = malloc(sizeof *got * (size_t)n);
    uint8_t *scratch = malloc((size_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3);
    md_graph *g = md_graph_new((size_t)1 << 24);
    md_status st = x && got && scratch && g ? MD_OK : MD_ERR_ALLOC;
    for (int64_t i = 0; i < n && st == MD_OK; i++) {
        md_world_sample s;
        st = md_world_draw(w, 23, split, j->kind, i, &s);
        if (st == MD_OK)
            st = md_judge_prep_sample(w, &s, scratch, x + isz * i);
    }
    if (st == MD_OK)
        st = md_judge_read(j, g, x, n, got, feats);
    md_graph_free(g);
    free(scratch);
    free(got);
    free(x);
    return st;
}

int medley_eval_tokens(const md_world *w, const md_judge j[3], const medley_bundle *b,
                       const medley_tok_eval_opts *eo, md_eval_matrix *m)
{
    /* the fifth and sixth columns are pictures and videos by the diffusion
     * path, beside the tokens' */
    static const md_modality outs[6] = {MD_MOD_IMAGE, MD_MOD_VIDEO, MD_MOD_TEXT, MD_MOD_AUDIO, MD_MOD_IMAGE,
                                        MD_MOD_VIDEO};
    const int64_t nref = 1000;
    md_graph *g = md_graph_new((size_t)1 << 24);
    float *ref[3] = {malloc(sizeof(float) * MD_JUDGE_FEATURES * (size_t)nref),
                     malloc(sizeof(float) * MD_JUDGE_FEATURES * (size_t)nref),
                     malloc(sizeof(float) * MD_JUDGE_FEATURES * (size_t)nref)};
    int64_t nmax = eo->n_image > eo->n_video ? eo->n_image : eo->n_video;
    nmax = eo->n_audio > nmax ? eo->n_audio : nmax;
    float *gen = malloc(sizeof(float) * MD_JUDGE_FEATURES * (size_t)(nmax + 2));
    float *val = malloc(sizeof(float) * MD_JUDGE_FEATURES * (size_t)(nmax + 2));
    float *jx = malloc(sizeof(float) * (size_t)md_judge_input_size(MD_WORLD_VIDEO));
    uint8_t *u8 = malloc((size_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3);
    int *vid_digit = malloc(sizeof(int) * 4 * (size_t)(eo->n_video + 1));   /* [in][i]: the digit each video shows */
    for (int in = 0; in < 4; in++)
        m->av_agree[in] = NAN;
    md_status st = g && ref[0] && ref[1] && ref[2] && gen && val && jx && u8 && vid_digit ? MD_OK : MD_ERR_ALLOC;
    /* real test features (the Fréchet reference) of the image, video and audio judges */
    static const md_world_kind ref_kind[3] = {MD_WORLD_IMAGE, MD_WORLD_VIDEO, MD_WORLD_AUDIO};
    for (int k = 0; k < 3 && st == MD_OK; k++)
        st = real_features(w, &j[ref_kind[k]], MD_SPLIT_TEST, nref, ref[k]);
    md_tok_sample_opts so = {eo->temperature, eo->top_k, eo->top_p, eo->guidance, eo->via_caption, 0, NULL, NULL, 0.f, 0, NULL, 0, 0.f};
    /* audio last, so that its video+audio agreement can read the videos of
     * either path: the token path's when its cell ran, else diffusion's */
    static const int order[6] = {0, 1, 2, 4, 5, 3};
    int vid_path[4] = {0, 0, 0, 0};   /* which path's videos vid_digit holds for each input: 0 none, 1 tokens,
                                       * 2 diffusion */
    for (int oo = 0; oo < 6 && st == MD_OK; oo++) {
        const int oi = order[oo];
        const bool audio = outs[oi] == MD_MOD_AUDIO, diffusion = oi >= 4;
        /* image (video) selects both of its paths; image:diffusion (bit 4)
         * and video:diffusion (bit 5) the second alone, image:tokens (bit
         * 6) and video:tokens (bit 7) the first alone */
        const int sel = diffusion ? (1 << outs[oi]) | (1 << oi)
                        : oi < 2  ? (1 << outs[oi]) | (1 << (6 + oi))
                                  : 1 << outs[oi];
        if (eo->only >= 0 && !(eo->only & sel))
            continue;
        if (audio && (!b->have_ag || eo->n_audio < 1))
            continue;
        /* videos by diffusion: the video model when bundled, else frame 0 moved */
        const bool temporal = oi == 5 && b->have_vg;
        if (diffusion && !temporal && (!b->have_ig || (oi == 5 && !b->have_mo)))
            continue;
        md_generator *gen_o = audio       ? md_gen_audio_new(&b->ag, b->have_voc ? &b->voc : NULL, &b->sp, b->model_id, NULL)
                              : oi == 4   ? md_gen_image_diffusion_new(&b->ig, &b->vq, &b->sp, b->model_id, NULL)
                              : oi == 5   ? medley_video_diffusion_new(b, NULL)
                                          : md_gen_tokens_new(outs[oi], &b->tm, &b->vq, &b->sp,
                                                               b->have_mo ? &b->mo : NULL, b->model_id, NULL);
        if (!gen_o) {
            st = MD_ERR;
            break;
        }
        double p[MD_GEN_MAX_PARAMS];
        md_gen_params_default(gen_o, p);
        if (diffusion) {
            if (eo->diffusion_guidance > 0)
                p[md_gen_param_index(gen_o, "guidance")] = eo->diffusion_guidance;
        } else if (!audio) {
            p[0] = so.temperature;
            p[1] = so.top_k;
            if (so.top_p > 0.f)   /* 0: the generator's default */
                p[2] = so.top_p;
            p[3] = so.guidance;
            if (eo->via_caption >= 0)
                p[md_gen_param_index(gen_o, "via_caption")] = eo->via_caption;
            if (eo->frame_temperature >= 0)
                p[md_gen_param_index(gen_o, "frame_temperature")] = eo->frame_temperature;
            if (eo->motion >= -1)
                p[md_gen_param_index(gen_o, "motion")] = eo->motion;
            if (eo->motion_temperature >= 0)
                p[md_gen_param_index(gen_o, "motion_temperature")] = eo->motion_temperature;
            if (eo->caption_check >= 0)
                p[md_gen_param_index(gen_o, "caption_check")] = eo->caption_check;
        } else {
            if (eo->audio_guidance > 0)
                p[md_gen_param_index(gen_o, "guidance")] = eo->audio_guidance;
            if (eo->audio_vocoder >= 0)
                p[md_gen_param_index(gen_o, "vocoder")] = eo->audio_vocoder;
        }
        int ci = md_gen_param_index(gen_o, "candidates");
        if (eo->candidates > 0 && ci >= 0)
            p[ci] = eo->candidates > gen_o->params[ci].hi ? gen_o->params[ci].hi : eo->candidates;
        if (audio && eo->audio_candidates > 0 && ci >= 0)
            p[ci] = eo->audio_candidates > gen_o->params[ci].hi ? gen_o->params[ci].hi : eo->audio_candidates;
        /* GENERATOR.NAME=VALUE, for this generator alone */
        const size_t gl = strlen(gen_o->name);
        for (int k = 0; k < eo->n_set && st == MD_OK; k++) {
            const char *s = eo->set[k], *eq = strchr(s, '=');
            char name[64];
            if (strncmp(s, gen_o->name, gl) != 0 || s[gl] != '.' || !eq || eq - (s + gl + 1) >= (ptrdiff_t)sizeof name)
                continue;
            snprintf(name, sizeof name, "%.*s", (int)(eq - (s + gl + 1)), s + gl + 1);
            st = md_gen_param_set(gen_o, p, name, eq + 1);
        }
        if (st != MD_OK) {
            md_generator_free(gen_o);
            break;
        }
        const md_world_kind ok = outs[oi] == MD_MOD_IMAGE ? MD_WORLD_IMAGE
                                 : outs[oi] == MD_MOD_VIDEO ? MD_WORLD_VIDEO
                                                           : MD_WORLD_AUDIO;   /* text: judged by parsing */
        const int64_t n = outs[oi] == MD_MOD_IMAGE   ? eo->n_image
                          : outs[oi] == MD_MOD_VIDEO ? eo->n_video
                          : audio                    ? eo->n_audio
                                                     : eo->n_text;
        for (int in = 0; in < 4 && st == MD_OK; in++) {
            if (eo->inputs && !(eo->inputs & (1 << in)))
                continue;
            md_eval_cell *cell = oi == 4 ? &m->alt_image[in] : oi == 5 ? &m->alt_video[in] : &m->cell[in][outs[oi]];
            md_attr_score sc;
            memset(&sc, 0, sizeof sc);
            double t0 = md_time_now();
            for (int64_t i = 0; i < n && st == MD_OK; i++) {
                char typed[MD_CAPTION_MAX];
                int want[MD_ATTR_COUNT], got[MD_ATTR_COUNT];
                md_gen_condition c = {{0}, typed, 1.f};
                st = make_condition(w, &b->sp, g, (md_modality)in, ok, outs[oi] != MD_MOD_TEXT, eo->split, i, c.vec,
                                    want, typed);
                if (!typed[0])
                    c.text = NULL;
                md_gen_output o;
                if (st == MD_OK)
                    st = gen_o->run(gen_o->self, &c, p, (uint64_t)(1000 + i), NULL, NULL, NULL, &o);
                if (st != MD_OK)
                    break;
                if (outs[oi] == MD_MOD_TEXT) {
                    md_caption_parse(o.text, got);
                } else {
                    const md_judge *jj = &j[ok];
                    if (outs[oi] == MD_MOD_IMAGE) {
                        to_u8(o.image.pixels, (int64_t)MD_WORLD_SIZE * MD_WORLD_SIZE * 3, u8);
                        md_judge_prep_rgb(u8, jx);
                    } else if (audio) {
                        st = md_judge_prep_audio(o.audio.samples, jx);
                    } else {
                        to_u8(o.video.pixels, (int64_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3, u8);
                        md_judge_prep_frames(u8, jx);
                    }
                    int(*gr)[MD_ATTR_COUNT] = (int(*)[MD_ATTR_COUNT])got;
                    if (st == MD_OK)
                        st = md_judge_read(jj, g, jx, 1, gr, gen + (size_t)i * MD_JUDGE_FEATURES);
                }
                md_gen_output_free(&o);
                if (st == MD_OK)
                    md_attr_score_add(&sc, want, got);
                if (st == MD_OK && outs[oi] == MD_MOD_VIDEO && vid_digit && (!diffusion || vid_path[in] != 1))
                    vid_digit[(size_t)in * (size_t)n + (size_t)i] = got[MD_ATTR_DIGIT];
            }
            if (st != MD_OK)
                break;
            if (outs[oi] == MD_MOD_VIDEO && vid_path[in] != 1)
                vid_path[in] = diffusion ? 2 : 1;
            /* video and audio together: the clip made from each video
             * input's condition (the same seed) must say the digit the
             * video shows */
            double agree = NAN, clip_acc = NAN;
            if (audio && vid_digit && vid_path[in]) {
                int64_t same = 0, asked = 0;
                for (int64_t i = 0; i < eo->n_video && st == MD_OK; i++) {
                    char typed[MD_CAPTION_MAX];
                    int want[MD_ATTR_COUNT], got[MD_ATTR_COUNT];
                    md_gen_condition c = {{0}, typed, 1.f};
                    md_gen_output o;
                    st = make_condition(w, &b->sp, g, (md_modality)in, MD_WORLD_VIDEO, true, eo->split, i, c.vec, want,
                                        typed);
                    if (!typed[0])
                        c.text = NULL;
                    if (st == MD_OK)
                        st = gen_o->run(gen_o->self, &c, p, (uint64_t)(1000 + i), NULL, NULL, NULL, &o);
                    if (st != MD_OK)
                        break;
                    st = md_judge_prep_audio(o.audio.samples, jx);
                    md_gen_output_free(&o);
                    if (st == MD_OK)
                        st = md_judge_read(&j[MD_WORLD_AUDIO], g, jx, 1, (int(*)[MD_ATTR_COUNT])got, NULL);
                    same += st == MD_OK && got[MD_ATTR_DIGIT] == vid_digit[(size_t)in * (size_t)eo->n_video + (size_t)i];
                    asked += st == MD_OK && got[MD_ATTR_DIGIT] == want[MD_ATTR_DIGIT];
                }
                if (st != MD_OK)
                    break;
                agree = eo->n_video > 0 ? (double)same / (double)eo->n_video : NAN;
                clip_acc = eo->n_video > 0 ? (double)asked / (double)eo->n_video : NAN;
                m->av_agree[in] = agree;
            }
            cell->present = true;
            cell->n = n;
            cell->digit_acc = md_attr_score_acc(&sc, MD_ATTR_DIGIT);
            cell->attr_acc = md_attr_score_attrs(&sc);
            cell->diversity = NAN;
            cell->fd = cell->fd_floor = NAN;
            snprintf(cell->generator, sizeof cell->generator, "%s", gen_o->name);
            if (outs[oi] != MD_MOD_TEXT && n >= 2) {
                const int k = outs[oi] == MD_MOD_IMAGE ? 0 : outs[oi] == MD_MOD_VIDEO ? 1 : 2;
                st = md_frechet_distance(gen, n, ref[k], nref, MD_JUDGE_FEATURES, &cell->fd);
                if (st == MD_OK)
                    st = real_features(w, &j[ok], MD_SPLIT_VAL, n, val);
                if (st == MD_OK)
                    st = md_frechet_distance(val, n, ref[k], nref, MD_JUDGE_FEATURES, &cell->fd_floor);
            }
            if (eo->verbose) {
                fprintf(stderr, "  %s -> %s%s: digit %.1f%%  attributes %.1f%%", md_modality_names[in],
                        md_modality_names[outs[oi]], diffusion ? " (diffusion)" : "", 100 * cell->digit_acc,
                        100 * cell->attr_acc);
                if (outs[oi] == MD_MOD_VIDEO)
                    fprintf(stderr, "  motion %.1f%%", 100 * md_attr_score_acc(&sc, MD_ATTR_MOTION));
                fprintf(stderr, "  FD %.1f (floor %.1f)", cell->fd, cell->fd_floor);
                if (!isnan(agree))
                    fprintf(stderr, "  video+audio agreement %.1f%% (of %lld, videos by %s; their clips say the asked "
                                    "digit %.1f%%)",
                            100 * agree, (long long)eo->n_video, vid_path[in] == 2 ? "diffusion" : "tokens",
                            100 * clip_acc);
                fprintf(stderr, "  (%lld, %.1f s)\n", (long long)n, md_time_now() - t0);
            }
        }
        md_generator_free(gen_o);
    }
    if (st != MD_OK)
        fprintf(stderr, "medley eval: %s\n", md_last_error());
    md_graph_free(g);
    free(ref[0]);
    free(ref[1]);
    free(ref[2]);
    free(vid_digit);
    free(gen);
    free(val);
    free(jx);
    free(u8);
    return st == MD_OK ? 0 : 1;
}
