/* cmd_world.c — the demo-world commands of `medley`:
 *
 *   medley corpus build   write the corpus shards
 *   medley train judges   retrain the judges shipped in assets/models
 *   medley eval --judges  each judge's accuracy on the test split
 *   medley eval           the any-to-any matrix for the generators present
 */
#include "commands.h"
#include "caption.h"
#include "corpus.h"
#include "judge.h"
#include "metrics.h"
#include "world.h"
#include "tokens.h"
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *medley_output_dir(const char *opt, const char *cmd)
{
    const char *dir = medley_models_dir(opt);
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
        fprintf(stderr, "%s: the output folder's name is too long\n", cmd);
        return NULL;
    }
    /* every level in turn, as mkdir -p */
    for (char *p = buf + 1;; p++) {
        bool end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            struct stat stt;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                fprintf(stderr, "%s: cannot create the folder %s: %s\n", cmd, buf, strerror(errno));
                return NULL;
            }
            if (stat(buf, &stt) != 0 || !S_ISDIR(stt.st_mode)) {
                fprintf(stderr, "%s: %s is not a folder\n", cmd, buf);
                return NULL;
            }
            if (end)
                break;
            *p = '/';
        }
    }
    return dir;
}

static int open_world(const char *data, md_world *w)
{
    double t0 = md_time_now();
    if (md_world_open(data, w) != MD_OK) {
        fprintf(stderr, "medley: %s\n", md_last_error());
        return 1;
    }
    fprintf(stderr, "demo world loaded in %.1f s (data hash %s)\n", md_time_now() - t0, w->data_hash);
    return 0;
}

static int kind_from_name(const char *s)
{
    for (int k = 0; k < 3; k++)
        if (strcmp(s, md_world_kind_names[k]) == 0)
            return k;
    return -1;
}

/* ---- corpus build ---- */

static void corpus_progress(const char *shard, int64_t done, int64_t total, void *user)
{
    (void)user;
    printf("  %-32s %lld/%lld\n", shard, (long long)done, (long long)total);
    fflush(stdout);
}

int medley_cmd_corpus(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "build") != 0) {
        fprintf(stderr, "usage: medley corpus build [--data DIR] [--out DIR] [--seed S] [--scale F]\n");
        return 2;
    }
    const char *data = NULL, *out = "corpus";
    long seed = 1;
    double scale = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            fprintf(stderr, "medley corpus: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--data") == 0)
            data = val;
        else if (strcmp(a, "--out") == 0 || strcmp(a, "-o") == 0)
            out = val;
        else if (strcmp(a, "--seed") == 0) {
            if (medley_parse_int(a, val, 0, 2147483647L, &seed)) return 2;
        } else if (strcmp(a, "--scale") == 0) {
            char *end;
            scale = strtod(val, &end);
            if (*end || !(scale > 0.0 && scale <= 1.0)) {
                fprintf(stderr, "medley corpus: --scale \"%s\": expected a number in (0, 1]\n", val);
                return 2;
            }
        } else {
            fprintf(stderr, "medley corpus: unknown option \"%s\"\n", a);
            return 2;
        }
        i++;
    }
    md_world w;
    if (open_world(data, &w))
        return 1;
    md_corpus_opts o;
    md_corpus_default_opts(&o, scale);
    o.out_dir = out;
    o.seed = (uint64_t)seed;
    o.progress = corpus_progress;
    o.cancel = &medley_cancel;
    md_corpus_stats s;
    printf("building the demo-world corpus in %s (seed %ld, scale %g)\n", out, seed, scale);
    md_status st = md_corpus_build(&w, &o, &s);
    md_world_close(&w);
    if (st != MD_OK) {
        fprintf(stderr, "medley corpus: %s\n", st == MD_ABORTED ? "cancelled" : md_last_error());
        return st == MD_ABORTED ? 130 : 1;
    }
    printf("wrote %d shards (%lld images, %lld audio clips, %lld videos; %.1f MB) in %.1f s\n", s.shards,
           (long long)s.samples[0], (long long)s.samples[1], (long long)s.samples[2], (double)s.bytes / 1e6,
           s.seconds);
    return 0;
}

/* ---- train judges ---- */

typedef struct train_ctx {
    double t0;
    const char *kind;
} train_ctx;

static void train_progress(int64_t step, int64_t steps, float loss, void *user)
{
    train_ctx *c = user;
    static float ema;
    ema = step == 0 ? loss : 0.98f * ema + 0.02f * loss;
    if ((step + 1) % 200 == 0 || step + 1 == steps) {
        double el = md_time_now() - c->t0;
        printf("  %s judge: step %lld/%lld  loss %.4f  %.0f s (%.0f s left)\n", c->kind, (long long)step + 1,
               (long long)steps, ema, el, el / (double)(step + 1) * (double)(steps - step - 1));
        fflush(stdout);
    }
}

static void print_eval(const md_judge *j, md_world_split split, const md_judge_eval *e)
{
    printf("  %-5s judge on %-5s (%lld samples, %.1f s):", md_world_kind_names[j->kind],
           md_world_split_names[split], (long long)e->n, e->seconds);
    for (int a = 0; a < MD_ATTR_COUNT; a++)
        if (e->asked[a])
            printf("  %s %.2f%%", md_attr_names[a], 100.0 * (double)e->right[a] / (double)e->asked[a]);
    if (e->photo_n)
        printf("  [digit: handwritten %.2f%%, sign photos %.2f%%]",
               100.0 * (double)e->hand_right / (double)e->hand_n, 100.0 * (double)e->photo_right / (double)e->photo_n);
    printf("\n");
}

int medley_cmd_train_judges(int argc, char **argv)
{
    const char *data = NULL, *out = NULL, *kinds = "all";
    long steps = 0, seed = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            fprintf(stderr, "medley train judges: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--data") == 0)
            data = val;
        else if (strcmp(a, "--out") == 0 || strcmp(a, "-o") == 0)
            out = val;
        else if (strcmp(a, "--kind") == 0) {
            if (strcmp(val, "all") != 0 && kind_from_name(val) < 0) {
                fprintf(stderr, "medley train judges: --kind \"%s\": expected image, audio, video or all\n", val);
                return 2;
            }
            kinds = val;
        } else if (strcmp(a, "--steps") == 0) {
            if (medley_parse_int(a, val, 1, 10000000L, &steps)) return 2;
        } else if (strcmp(a, "--seed") == 0) {
            if (medley_parse_int(a, val, 0, 2147483647L, &seed)) return 2;
        } else {
            fprintf(stderr, "medley train judges: unknown option \"%s\"\n", a);
            return 2;
        }
        i++;
    }
    if (!(out = medley_output_dir(out, "medley train judges")))
        return 1;
    md_world w;
    if (open_world(data, &w))
        return 1;
    int rc = 0;
    for (int k = 0; k < 3 && rc == 0; k++) {
        if (strcmp(kinds, "all") != 0 && kind_from_name(kinds) != k)
            continue;
        md_judge j;
        md_judge_train_opts o;
        md_judge_train_default_opts((md_world_kind)k, &o);
        if (steps)
            o.steps = steps;
        o.seed = (uint64_t)seed;
        train_ctx c = {md_time_now(), md_world_kind_names[k]};
        o.progress = train_progress;
        o.user = &c;
        o.cancel = &medley_cancel;
        if (k == MD_WORLD_VIDEO) {
            /* the video judge reads frames with the image judge */
            char ipath[4096], vpath[4096];
            snprintf(ipath, sizeof ipath, "%s/judge-image.safetensors", out);
            snprintf(vpath, sizeof vpath, "%s/judge-video.safetensors", out);
            md_judge im;
            md_status vs = md_judge_load(&im, ipath, MD_WORLD_IMAGE);
            if (vs == MD_OK) {
                vs = md_judge_video_from_image(&j, &im);
                md_judge_free(&im);
            }
            if (vs == MD_OK) {
                md_judge_eval e;
                if (md_judge_evaluate(&j, &w, MD_SPLIT_VAL, 7, 500, &e) == MD_OK)
                    print_eval(&j, MD_SPLIT_VAL, &e);
                vs = md_judge_save(&j, vpath, "{\"command\":\"medley train judges --kind video\",\"from\":\"judge-image\"}",
                                   w.data_hash);
                md_judge_free(&j);
            }
            if (vs != MD_OK) {
                fprintf(stderr, "medley train judges: %s\n", md_last_error());
                rc = 1;
            } else {
                printf("  saved %s (the image judge, read over frames)\n", vpath);
            }
            continue;
        }
        if (md_judge_init(&j, (md_world_kind)k, o.seed) != MD_OK) {
            fprintf(stderr, "medley: %s\n", md_last_error());
            rc = 1;
            break;
        }
        printf("training the %s judge: %lld steps of %d samples, %lld parameters, %d threads\n",
               md_world_kind_names[k], (long long)o.steps, o.batch, (long long)md_paramset_numel(j.ps),
               md_threads_get());
        md_status st = md_judge_train(&j, &w, &o);
        double secs = md_time_now() - c.t0;
        if (st == MD_OK) {
            md_judge_eval e;
            if (md_judge_evaluate(&j, &w, MD_SPLIT_VAL, 7, 1000, &e) == MD_OK)
                print_eval(&j, MD_SPLIT_VAL, &e);
            char path[4096], recipe[512];
            snprintf(path, sizeof path, "%s/judge-%s.safetensors", out, md_world_kind_names[k]);
            snprintf(recipe, sizeof recipe,
                     "{\"command\":\"medley train judges --kind %s --steps %lld --seed %ld\",\"steps\":%lld,"
                     "\"batch\":%d,\"lr\":%g,\"seed\":%ld,\"seconds\":%.0f,\"threads\":%d}",
                     md_world_kind_names[k], (long long)o.steps, seed, (long long)o.steps, o.batch, (double)o.lr,
                     seed, secs, md_threads_get());
            st = md_judge_save(&j, path, recipe, w.data_hash);
            if (st == MD_OK)
                printf("  saved %s (%.0f s of training)\n", path, secs);
        }
        if (st != MD_OK) {
            fprintf(stderr, "medley train judges: %s\n", st == MD_ABORTED ? "cancelled" : md_last_error());
            rc = st == MD_ABORTED ? 130 : 1;
        }
        md_judge_free(&j);
    }
    md_world_close(&w);
    return rc;
}

/* ---- eval ---- */

/* --judges results as JSON: {"judges": [{kind, split, n, accuracy: {...}}],
 * "text": {...}} */
static md_json_buf g_jb;
static const char *g_json_path;

static void results_begin(const char *path)
{
    g_json_path = path;
    md_json_buf_init(&g_jb);
    md_json_buf_begin_object(&g_jb);
    md_json_buf_key(&g_jb, "judges");
    md_json_buf_begin_array(&g_jb);
}

static void results_judge(const char *kind, const char *split, const md_judge_eval *e)
{
    md_json_buf_begin_object(&g_jb);
    md_json_buf_key(&g_jb, "kind"); md_json_buf_str(&g_jb, kind);
    md_json_buf_key(&g_jb, "split"); md_json_buf_str(&g_jb, split);
    md_json_buf_key(&g_jb, "n"); md_json_buf_int(&g_jb, e->n);
    md_json_buf_key(&g_jb, "accuracy");
    md_json_buf_begin_object(&g_jb);
    for (int a = 0; a < MD_ATTR_COUNT; a++)
        if (e->asked[a]) {
            md_json_buf_key(&g_jb, md_attr_names[a]);
            md_json_buf_num(&g_jb, (double)e->right[a] / (double)e->asked[a]);
        }
    if (e->photo_n) {
        md_json_buf_key(&g_jb, "digit_handwritten"); md_json_buf_num(&g_jb, (double)e->hand_right / (double)e->hand_n);
        md_json_buf_key(&g_jb, "digit_photo"); md_json_buf_num(&g_jb, (double)e->photo_right / (double)e->photo_n);
    }
    md_json_buf_end_object(&g_jb);
    md_json_buf_end_object(&g_jb);
}

static void results_text(const md_attr_score *sc)
{
    md_json_buf_end_array(&g_jb);
    md_json_buf_key(&g_jb, "text");
    md_json_buf_begin_object(&g_jb);
    md_json_buf_key(&g_jb, "captions"); md_json_buf_int(&g_jb, sc->samples);
    for (int a = 0; a < MD_ATTR_COUNT; a++)
        if (sc->asked[a]) {
            md_json_buf_key(&g_jb, md_attr_names[a]);
            md_json_buf_num(&g_jb, md_attr_score_acc(sc, (md_attr)a));
        }
    md_json_buf_end_object(&g_jb);
}

static int results_end(void)
{
    md_json_buf_end_object(&g_jb);
    char *text = md_json_buf_finish(&g_jb, NULL);
    int rc = 0;
    if (g_json_path) {
        rc = !text || md_write_file_atomic(g_json_path, text, strlen(text)) != MD_OK;
        if (rc)
            fprintf(stderr, "medley eval: %s\n", md_last_error());
        else
            printf("results written to %s\n", g_json_path);
    }
    free(text);
    return rc;
}

typedef struct eval_opts {
    const char *data, *models, *json;
    bool judges, space, baseline, vqgan, vocoder;
    long quick;    /* 0 = whole test split */
    long outputs;  /* per generator cell; 0 = the defaults */
    medley_gen_eval gen;
} eval_opts;

int medley_load_judges(const char *models, md_judge j[3])
{
    const char *dir = medley_models_dir(models);
    for (int k = 0; k < 3; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/judge-%s.safetensors", dir, md_world_kind_names[k]);
        if (md_judge_load(&j[k], path, (md_world_kind)k) != MD_OK) {
            fprintf(stderr, "medley eval: %s\n(retrain with 'medley train judges', or point --models / "
                            "MEDLEY_MODELS_DIR at the folder holding the judges)\n", md_last_error());
            for (int q = 0; q < k; q++)
                md_judge_free(&j[q]);
            return 1;
        }
    }
    return 0;
}

/* Text judge on corpus captions: the share of stated attributes read back. */
static void eval_text_judge(const md_world *w, md_world_split split, int64_t n, md_attr_score *sc)
{
    memset(sc, 0, sizeof *sc);
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < n; i++) {
            md_world_sample s;
            if (md_world_draw(w, 11, split == MD_SPLIT_COMPO && k == MD_WORLD_AUDIO ? MD_SPLIT_TEST : split,
                              (md_world_kind)k, i, &s) != MD_OK)
                continue;
            for (int v = 0; v < MD_CAPTIONS_PER_SAMPLE; v++) {
                char cap[MD_CAPTION_MAX];
                int stated[MD_ATTR_COUNT], got[MD_ATTR_COUNT];
                if (md_caption_make(&s, v, cap, sizeof cap, stated) != MD_OK)
                    continue;
                md_caption_parse(cap, got);
                md_attr_score_add(sc, stated, got);
            }
        }
}

static int eval_judges(const eval_opts *eo, md_world *w, md_judge j[3])
{
    printf("judges on the demo world's held-out splits (targets: image digit >= 99%% on MNIST test digits,\n"
           "sign photos >= 95%%, audio digit >= 95%% on FSDD takes 0-4, colour/position/motion >= 99%%)\n");
    results_begin(eo->json);
    int bad = 0;
    for (int k = 0; k < 3; k++) {
        for (int sp = MD_SPLIT_TEST; sp <= MD_SPLIT_COMPO; sp++) {
            if (k == MD_WORLD_AUDIO && sp == MD_SPLIT_COMPO)
                continue;   /* audio has no held-out combinations */
            md_judge_eval e;
            int64_t count = k == MD_WORLD_VIDEO || sp == MD_SPLIT_COMPO ? 1000 : eo->quick;
            if (eo->quick && count > eo->quick)
                count = eo->quick;
            if (md_judge_evaluate(&j[k], w, (md_world_split)sp, 7, count, &e) != MD_OK) {
                fprintf(stderr, "medley eval: %s\n", md_last_error());
                bad = 1;
                continue;
            }
            print_eval(&j[k], (md_world_split)sp, &e);
            results_judge(md_world_kind_names[k], md_world_split_names[sp], &e);
        }
    }
    md_attr_score sc;
    eval_text_judge(w, MD_SPLIT_TEST, eo->quick ? 100 : 1000, &sc);
    printf("  text  judge on test  (%lld captions):", (long long)sc.samples);
    for (int a = 0; a < MD_ATTR_COUNT; a++)
        if (sc.asked[a])
            printf("  %s %.2f%%", md_attr_names[a], 100.0 * md_attr_score_acc(&sc, (md_attr)a));
    printf("\n");
    results_text(&sc);
    if (results_end() != 0)
        bad = 1;
    return bad;
}

/* A comma list of modalities as a mask (1 << MD_MOD_*); with paths, also
 * the output paths image:diffusion, video:diffusion (bits 4, 5),
 * image:tokens and video:tokens (6, 7). Returns 2 after saying why. */
static int modality_mask(const char *opt, const char *val, bool paths, int *mask)
{
    static const char *const names[8] = {"text", "image", "audio", "video", "image:diffusion", "video:diffusion",
                                         "image:tokens", "video:tokens"};
    const int count = paths ? 8 : 4;
    *mask = 0;
    for (const char *q = val; *q;) {
        size_t n = strcspn(q, ",");
        int hit = -1;
        for (int m = 0; m < count; m++)
            if (strlen(names[m]) == n && strncmp(q, names[m], n) == 0)
                hit = m;
        if (hit < 0) {
            fprintf(stderr, "medley eval: %s \"%.*s\": expected %s (comma-separated)\n", opt, (int)n, q,
                    paths ? "text, image, image:tokens, image:diffusion, audio, video, video:tokens or video:diffusion"
                          : "text, image, audio or video");
            return 2;
        }
        *mask |= 1 << hit;
        q += n;
        if (*q)
            q++;
    }
    if (!*mask) {
        fprintf(stderr, "medley eval: %s needs at least one modality\n", opt);
        return 2;
    }
    return 0;
}

int medley_cmd_eval(int argc, char **argv)
{
    eval_opts eo = {0};
    eo.gen.only = -1;
    eo.gen.via_caption = -1;
    eo.gen.frame_temperature = -1;
    eo.gen.motion = -2;
    eo.gen.motion_temperature = -1;
    eo.gen.caption_check = -1;
    eo.gen.audio_vocoder = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--judges") == 0) {
            eo.judges = true;
            continue;
        }
        if (strcmp(a, "--space") == 0) {
            eo.space = true;
            continue;
        }
        if (strcmp(a, "--baseline") == 0) {
            eo.baseline = true;
            continue;
        }
        if (strcmp(a, "--vqgan") == 0) {
            eo.vqgan = true;
            continue;
        }
        if (strcmp(a, "--vocoder") == 0) {
            eo.vocoder = true;
            continue;
        }
        if (strcmp(a, "--val") == 0) {
            eo.gen.val = true;
            continue;
        }
        if (!val) {
            fprintf(stderr, "medley eval: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--data") == 0)
            eo.data = val;
        else if (strcmp(a, "--models") == 0)
            eo.models = val;
        else if (strcmp(a, "--json") == 0)
            eo.json = val;
        else if (strcmp(a, "--guidance") == 0 || strcmp(a, "--temperature") == 0 || strcmp(a, "--top-p") == 0) {
            double f;
            if (medley_parse_double(a, val, 0.01, a[2] == 'g' ? 20.0 : a[3] == 'o' ? 1.0 : 5.0, &f))
                return 2;
            *(a[2] == 'g' ? &eo.gen.guidance : a[2] == 't' && a[3] == 'e' ? &eo.gen.temperature : &eo.gen.top_p) = f;
        } else if (strcmp(a, "--only") == 0 || strcmp(a, "--inputs") == 0) {
            if (modality_mask(a, val, a[2] == 'o', a[2] == 'o' ? &eo.gen.only : &eo.gen.inputs))
                return 2;
        } else if (strcmp(a, "--frame-temperature") == 0) {
            if (medley_parse_double(a, val, 0.0, 5.0, &eo.gen.frame_temperature)) return 2;
        } else if (strcmp(a, "--motion") == 0) {
            long v;
            if (medley_parse_int(a, val, 0, 1, &v)) return 2;
            eo.gen.motion = (int)v;
        } else if (strcmp(a, "--motion-temperature") == 0) {
            if (medley_parse_double(a, val, 0.0, 5.0, &eo.gen.motion_temperature)) return 2;
        } else if (strcmp(a, "--caption-check") == 0) {
            if (medley_parse_double(a, val, 0.0, 2.0, &eo.gen.caption_check)) return 2;
        } else if (strcmp(a, "--via-caption") == 0) {
            long v;
            if (medley_parse_int(a, val, 0, 2, &v)) return 2;
            eo.gen.via_caption = (int)v;
        } else if (strcmp(a, "--top-k") == 0) {
            if (medley_parse_int(a, val, 0, 2048, &eo.gen.top_k)) return 2;
        } else if (strcmp(a, "--candidates") == 0) {
            if (medley_parse_int(a, val, 1, MD_TOK_MAX_CANDIDATES, &eo.gen.candidates)) return 2;
        } else if (strcmp(a, "--set") == 0) {
            static const char *const gens[] = {"tokens-image.", "tokens-video.", "tokens-caption.", "diffusion-image.",
                                               "diffusion-video.", "diffusion-audio."};
            bool known = false;
            for (size_t k = 0; k < sizeof gens / sizeof gens[0]; k++)
                known |= strncmp(val, gens[k], strlen(gens[k])) == 0;
            if (!known || !strchr(val, '=')) {
                fprintf(stderr, "medley eval: --set %s: expected GENERATOR.NAME=VALUE with GENERATOR one of tokens-image, "
                                "tokens-video, tokens-caption, diffusion-image, diffusion-video, diffusion-audio\n", val);
                return 2;
            }
            if (eo.gen.n_set >= 8) {
                fprintf(stderr, "medley eval: --set: at most 8\n");
                return 2;
            }
            eo.gen.set[eo.gen.n_set++] = val;
        } else if (strcmp(a, "--audio-candidates") == 0) {
            if (medley_parse_int(a, val, 1, 8, &eo.gen.audio_candidates)) return 2;
        } else if (strcmp(a, "--audio-vocoder") == 0) {
            long v;
            if (medley_parse_int(a, val, 0, 1, &v)) return 2;
            eo.gen.audio_vocoder = (int)v;
        } else if (strcmp(a, "--audio-guidance") == 0 || strcmp(a, "--diffusion-guidance") == 0) {
            if (medley_parse_double(a, val, 0.01, 20.0, a[2] == 'a' ? &eo.gen.audio_guidance
                                                                    : &eo.gen.diffusion_guidance)) return 2;
        } else if (strcmp(a, "--outputs") == 0) {
            if (medley_parse_int(a, val, 2, 100000L, &eo.outputs)) return 2;
        } else if (strcmp(a, "--video-outputs") == 0) {
            if (medley_parse_int(a, val, 2, 100000L, &eo.gen.video_outputs)) return 2;
        } else if (strcmp(a, "--quick") == 0) {
            if (medley_parse_int(a, val, 1, 100000000L, &eo.quick)) return 2;
        } else {
            fprintf(stderr, "medley eval: unknown option \"%s\"\n", a);
            return 2;
        }
        i++;
    }
    md_world w;
    if (eo.vocoder) {
        if (open_world(eo.data, &w))
            return 1;
        int rc = medley_eval_vocoder(&w, eo.models, eo.quick > 0 ? eo.quick : 100);
        md_world_close(&w);
        return rc;
    }
    if (eo.vqgan) {
        if (open_world(eo.data, &w))
            return 1;
        int rc = medley_eval_vqgan(&w, eo.models, eo.quick);
        md_world_close(&w);
        return rc;
    }
    if (eo.space) {
        if (open_world(eo.data, &w))
            return 1;
        int rc = medley_eval_space(&w, eo.models, eo.quick, eo.baseline);
        md_world_close(&w);
        return rc;
    }
    md_judge j[3];
    if (medley_load_judges(eo.models, j))
        return 1;
    if (open_world(eo.data, &w)) {
        for (int k = 0; k < 3; k++)
            md_judge_free(&j[k]);
        return 1;
    }
    int rc = eo.judges ? eval_judges(&eo, &w, j) : medley_eval_matrix(&w, j, eo.json, eo.quick, eo.models, eo.outputs, &eo.gen);
    md_world_close(&w);
    for (int k = 0; k < 3; k++)
        md_judge_free(&j[k]);
    return rc;
}
