/* cmd_space.c — the aligned-space commands of `medley`:
 *
 *   medley train space    train the space from scratch (tokenizer, stages)
 *   medley embed X...     print the unit vector of a text or a media file
 *   medley search --query X DIR    rank a folder's media by similarity
 *   medley eval --space   retrieval and zero-shot figures on the test split
 */
#include "commands.h"
#include "space_input.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static const char *const mod_names[4] = {"text", "image", "audio", "video"};

static int load_space(const char *models, md_space *sp)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/space.safetensors", medley_models_dir(models));
    if (md_space_load(sp, path) != MD_OK) {
        fprintf(stderr, "medley: %s\n(train one with 'medley train space', or point --models / "
                        "MEDLEY_MODELS_DIR at the folder holding space.safetensors)\n", md_last_error());
        return 1;
    }
    return 0;
}

/* TEXT or FILE: "text:..." is text; an existing file is a file; a missing
 * one with a media or text extension is an error (a typo, not a prompt);
 * anything else is text. */
static int input_from_arg(const char *arg, md_space_input *in)
{
    static const char *const ext[] = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".wav",
                                      ".flac", ".ogg", ".mp3", ".mp4", ".mov", ".mkv", ".webm", ".avi", ".txt"};
    struct stat sb;
    md_status st;
    if (strncmp(arg, "text:", 5) == 0) {
        st = md_space_input_from_text(arg + 5, in);
    } else if (stat(arg, &sb) == 0 && S_ISREG(sb.st_mode)) {
        st = md_space_input_from_file(arg, in);
    } else {
        const char *dot = strrchr(arg, '.');
        for (size_t i = 0; dot && !strchr(dot, ' ') && i < sizeof ext / sizeof *ext; i++)
            if (strcasecmp(dot, ext[i]) == 0) {
                fprintf(stderr, "medley: %s: no such file (write text:%s to use it as text)\n", arg, arg);
                memset(in, 0, sizeof *in);
                return 1;
            }
        st = md_space_input_from_text(arg, in);
    }
    if (st != MD_OK) {
        fprintf(stderr, "medley: %s\n", md_last_error());
        return 1;
    }
    return 0;
}

/* ---- train space ---- */

typedef struct space_ctx {
    double t0;
    float ema;
} space_ctx;

static void space_progress(int stage, int64_t step, int64_t steps, float loss, void *user)
{
    space_ctx *c = user;
    c->ema = step == 0 ? loss : 0.98f * c->ema + 0.02f * loss;
    if ((step + 1) % 100 == 0 || step + 1 == steps) {
        printf("  %s <-> text: step %lld/%lld  loss %.4f  %.0f s\n", mod_names[stage], (long long)step + 1,
               (long long)steps, c->ema, md_time_now() - c->t0);
        fflush(stdout);
    }
}

static void print_space_eval(const md_space_eval *e)
{
    printf("retrieval on %lld held-out samples per modality (R@1 / R@5 of the paired item):\n", (long long)e->n);
    for (int q = 0; q < 4; q++)
        for (int g = 0; g < 4; g++)
            if (!isnan(e->r1[q][g]))
                printf("  %-5s -> %-5s  R@1 %5.1f%%  R@5 %5.1f%%%s\n", mod_names[q], mod_names[g], 100 * e->r1[q][g],
                       100 * e->r5[q][g], (q == MD_MOD_AUDIO && g == MD_MOD_VIDEO) || (q == MD_MOD_VIDEO && g == MD_MOD_AUDIO)
                                              ? "   (emergent: never trained together)" : "");
    printf("digit agreement of the nearest neighbour (rows: query, columns: gallery):\n        ");
    for (int g = 0; g < 4; g++)
        printf("%8s", mod_names[g]);
    printf("\n");
    for (int q = 0; q < 4; q++) {
        printf("  %-5s ", mod_names[q]);
        for (int g = 0; g < 4; g++)
            if (isnan(e->agree[q][g]))
                printf("%8s", "—");
            else
                printf("%7.1f%%", 100 * e->agree[q][g]);
        printf("\n");
    }
    printf("zero-shot digit (nearest digit prompt): image %.1f%%  audio %.1f%%  video %.1f%%  (%.1f s)\n",
           100 * e->zeroshot[MD_MOD_IMAGE], 100 * e->zeroshot[MD_MOD_AUDIO], 100 * e->zeroshot[MD_MOD_VIDEO],
           e->seconds);
}

int medley_cmd_train_space(int argc, char **argv)
{
    const char *data = NULL, *out = NULL;
    md_space_train_opts o;
    md_space_train_default_opts(&o);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        long v;
        if (!val) {
            fprintf(stderr, "medley train space: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--data") == 0)
            data = val;
        else if (strcmp(a, "--out") == 0 || strcmp(a, "-o") == 0)
            out = val;
        else if (strcmp(a, "--seed") == 0) {
            if (medley_parse_int(a, val, 0, 2147483647L, &v)) return 2;
            o.seed = (uint64_t)v;
        } else if (strcmp(a, "--image-steps") == 0 || strcmp(a, "--audio-steps") == 0 ||
                   strcmp(a, "--video-steps") == 0) {
            if (medley_parse_int(a, val, 0, 10000000L, &v)) return 2;
            o.steps[a[2] == 'i' ? MD_MOD_IMAGE : a[2] == 'a' ? MD_MOD_AUDIO : MD_MOD_VIDEO] = v;
        } else if (strcmp(a, "--batch") == 0) {
            if (medley_parse_int(a, val, 2, 4096, &v)) return 2;
            o.batch[1] = o.batch[2] = o.batch[3] = (int)v;
        } else if (strcmp(a, "--digit-weight") == 0 || strcmp(a, "--lr") == 0) {
            char *end;
            double d = strtod(val, &end);
            bool lr = a[2] == 'l';
            if (*end || end == val || !(d >= 0 && d <= (lr ? 1 : 100)) || (lr && d == 0)) {
                fprintf(stderr, "medley train space: %s wants a number %s, not \"%s\"\n", a,
                        lr ? "above 0 and at most 1" : "from 0 to 100", val);
                return 2;
            }
            if (lr)
                o.lr = (float)d;
            else
                o.digit_weight = (float)d;
        } else {
            fprintf(stderr, "medley train space: unknown option \"%s\"\n", a);
            return 2;
        }
        i++;
    }
    if (!(out = medley_output_dir(out, "medley train space")))
        return 1;
    md_world w;
    double t0 = md_time_now();
    if (md_world_open(data, &w) != MD_OK) {
        fprintf(stderr, "medley: %s\n", md_last_error());
        return 1;
    }
    printf("training the aligned space: image<->text %lld steps (batch %d), then audio<->text %lld, "
           "video<->text %lld, text frozen; %d threads\n",
           (long long)o.steps[1], o.batch[1], (long long)o.steps[2], (long long)o.steps[3], md_threads_get());
    space_ctx c = {md_time_now(), 0};
    o.progress = space_progress;
    o.user = &c;
    o.cancel = &medley_cancel;
    md_space sp;
    md_status st = md_space_train(&sp, &w, &o);
    double secs = md_time_now() - t0;
    if (st == MD_OK) {
        md_space_eval e;
        if (md_space_evaluate(&sp, &w, MD_SPLIT_VAL, 300, &e) == MD_OK) {
            printf("validation:\n");
            print_space_eval(&e);
        }
        char path[4096], recipe[512];
        snprintf(path, sizeof path, "%s/space.safetensors", out);
        snprintf(recipe, sizeof recipe,
                 "{\"command\":\"medley train space\",\"steps\":[%lld,%lld,%lld],\"batch\":[%d,%d,%d],"
                 "\"lr\":%g,\"digit_weight\":%g,\"seed\":%llu,\"seconds\":%.0f,\"threads\":%d}",
                 (long long)o.steps[1], (long long)o.steps[2], (long long)o.steps[3], o.batch[1], o.batch[2],
                 o.batch[3], (double)o.lr, (double)o.digit_weight, (unsigned long long)o.seed, secs, md_threads_get());
        st = md_space_save(&sp, path, recipe, w.data_hash);
        if (st == MD_OK)
            printf("saved %s (%.0f s in all)\n", path, secs);
    }
    if (st != MD_OK)
        fprintf(stderr, "medley train space: %s\n", st == MD_ABORTED ? "cancelled" : md_last_error());
    md_space_free(&sp);
    md_world_close(&w);
    return st == MD_OK ? 0 : st == MD_ABORTED ? 130 : 1;
}

/* ---- embed ---- */

int medley_cmd_embed(int argc, char **argv)
{
    const char *models = NULL;
    int first = 0;
    if (argc >= 2 && strcmp(argv[0], "--models") == 0) {
        models = argv[1];
        first = 2;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: medley embed [--models DIR] TEXT|FILE...\n");
        return 2;
    }
    md_space sp;
    if (load_space(models, &sp))
        return 1;
    md_graph *g = md_graph_new((size_t)1 << 24);
    int rc = g ? 0 : 1;
    for (int i = first; i < argc && rc == 0; i++) {
        md_space_input in;
        if (input_from_arg(argv[i], &in)) {
            rc = 1;
            break;
        }
        float v[MD_SPACE_DIM];
        if (md_space_embed_input(&sp, g, &in, v) != MD_OK) {
            fprintf(stderr, "medley embed: %s\n", md_last_error());
            rc = 1;
        } else {
            printf("%s\t%s\t[", argv[i], mod_names[in.modality]);
            for (int k = 0; k < MD_SPACE_DIM; k++)
                printf("%s%.6f", k ? ", " : "", v[k]);
            printf("]\n");
        }
        md_space_input_free(&in);
    }
    md_graph_free(g);
    md_space_free(&sp);
    return rc;
}

/* ---- search ---- */

typedef struct hit {
    char *path;
    md_modality m;
    float score;
} hit;

static int cmp_hit(const void *a, const void *b)
{
    float x = ((const hit *)a)->score, y = ((const hit *)b)->score;
    return x < y ? 1 : x > y ? -1 : strcmp(((const hit *)a)->path, ((const hit *)b)->path);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int medley_cmd_search(int argc, char **argv)
{
    const char *models = NULL, *dir = NULL;
    int nq = 0;
    const char *queries[16];
    float weights[16];
    long top = 10;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--query") == 0 || strcmp(a, "-q") == 0) {
            if (!val || nq == 16) {
                fprintf(stderr, "medley search: --query needs a value (at most 16 queries)\n");
                return 2;
            }
            /* TEXT|FILE[@WEIGHT] */
            const char *at = strrchr(val, '@');
            char *end = NULL;
            double wv = at ? strtod(at + 1, &end) : 1.0;
            if (at && end && *end == '\0' && end != at + 1) {
                char *q = strndup(val, (size_t)(at - val));
                queries[nq] = q;
            } else {
                queries[nq] = strdup(val);
                wv = 1.0;
            }
            weights[nq++] = (float)wv;
            i++;
        } else if (strcmp(a, "--models") == 0 && val) {
            models = val;
            i++;
        } else if (strcmp(a, "--top") == 0) {
            if (medley_parse_int(a, val, 1, 1000000L, &top)) return 2;
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "medley search: unknown option \"%s\"\n", a);
            return 2;
        } else if (!dir) {
            dir = a;
        } else {
            fprintf(stderr, "medley search: one folder only (\"%s\" and \"%s\")\n", dir, a);
            return 2;
        }
    }
    if (!nq || !dir) {
        fprintf(stderr, "usage: medley search --query TEXT|FILE[@WEIGHT] [--query ...] [--top N] DIR\n");
        for (int i = 0; i < nq; i++)
            free((char *)queries[i]);
        return 2;
    }
    md_space sp;
    if (load_space(models, &sp)) {
        for (int i = 0; i < nq; i++)
            free((char *)queries[i]);
        return 1;
    }
    int rc = 0;
    md_graph *g = md_graph_new((size_t)1 << 24);
    float qv[16 * MD_SPACE_DIM], cond[MD_SPACE_DIM];
    for (int i = 0; i < nq && rc == 0; i++) {
        md_space_input in;
        rc = input_from_arg(queries[i], &in);
        if (rc == 0 && md_space_embed_input(&sp, g, &in, qv + i * MD_SPACE_DIM) != MD_OK) {
            fprintf(stderr, "medley search: %s\n", md_last_error());
            rc = 1;
        }
        md_space_input_free(&in);
    }
    if (rc == 0 && md_space_compose(qv, weights, nq, cond) != MD_OK) {
        fprintf(stderr, "medley search: %s\n", md_last_error());
        rc = 1;
    }
    DIR *d = rc == 0 ? opendir(dir) : NULL;
    if (rc == 0 && !d) {
        fprintf(stderr, "medley search: %s: cannot open the folder: %s\n", dir, strerror(errno));
        rc = 1;
    }
    char **names = NULL;
    size_t nn = 0, cap = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        if (nn == cap) {
            cap = cap ? cap * 2 : 64;
            char **nb = realloc(names, sizeof *names * cap);
            if (!nb)
                break;
            names = nb;
        }
        names[nn++] = strdup(e->d_name);
    }
    if (d)
        closedir(d);
    if (nn)
        qsort(names, nn, sizeof *names, cmp_str);
    hit *hits = calloc(nn ? nn : 1, sizeof *hits);
    size_t nh = 0, skipped = 0;
    md_log_set_callback(medley_quiet_log, NULL);   /* unreadable files are counted, not shouted about */
    for (size_t i = 0; rc == 0 && i < nn; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        md_space_input in;
        float v[MD_SPACE_DIM];
        if (md_space_input_from_file(path, &in) != MD_OK || md_space_embed_input(&sp, g, &in, v) != MD_OK) {
            skipped++;
            md_space_input_free(&in);
            continue;
        }
        float s = 0;
        for (int k = 0; k < MD_SPACE_DIM; k++)
            s += v[k] * cond[k];
        hits[nh].path = strdup(path);
        hits[nh].m = in.modality;
        hits[nh].score = s;
        nh++;
        md_space_input_free(&in);
    }
    md_log_set_callback(NULL, NULL);
    if (rc == 0) {
        qsort(hits, nh, sizeof *hits, cmp_hit);
        for (size_t i = 0; i < nh && (long)i < top; i++)
            printf("%2zu  %.4f  %-5s  %s\n", i + 1, hits[i].score, mod_names[hits[i].m], hits[i].path);
        if (skipped)
            fprintf(stderr, "(%zu file%s skipped: not readable as text, image, audio or video)\n", skipped,
                    skipped == 1 ? "" : "s");
        if (!nh)
            fprintf(stderr, "medley search: no readable file in %s\n", dir);
    }
    for (size_t i = 0; i < nh; i++)
        free(hits[i].path);
    free(hits);
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    for (int i = 0; i < nq; i++)
        free((char *)queries[i]);
    md_graph_free(g);
    md_space_free(&sp);
    return rc;
}

/* ---- eval --space ---- */

static void baseline_progress(int stage, int64_t step, int64_t steps, float loss, void *user)
{
    (void)user;
    if ((step + 1) % 100 == 0 || step + 1 == steps) {
        printf("  supervised %s encoder: step %lld/%lld  loss %.4f\n", mod_names[stage], (long long)step + 1,
               (long long)steps, loss);
        fflush(stdout);
    }
}

int medley_eval_space(const md_world *w, const char *models, long quick, bool baseline)
{
    md_space sp;
    if (load_space(models, &sp))
        return 1;
    md_space_eval e;
    int64_t n = quick ? quick : 1000;
    md_status st = md_space_evaluate(&sp, w, MD_SPLIT_TEST, n, &e);
    if (st == MD_OK)
        print_space_eval(&e);
    else
        fprintf(stderr, "medley eval: %s\n", md_last_error());
    md_space_free(&sp);
    if (st == MD_OK && baseline) {
        /* the same encoders trained on the digit labels: the gap to close */
        md_space_train_opts o;
        md_space_train_default_opts(&o);
        if (quick) {   /* a quick look: a tenth of the space's own steps */
            for (int m = 1; m < 4; m++)
                o.steps[m] = o.steps[m] / 10 + 1;
        }
        o.progress = baseline_progress;
        o.cancel = &medley_cancel;
        double acc[4];
        printf("supervised baseline: the same encoders trained on the digit labels (image %lld, audio %lld, "
               "video %lld steps; batches %d / %d / %d)\n", (long long)o.steps[1], (long long)o.steps[2],
               (long long)o.steps[3], o.batch[1], o.batch[2], o.batch[3]);
        st = md_space_supervised_baseline(w, &o, MD_SPLIT_TEST, n, acc);
        if (st == MD_OK)
            printf("digit accuracy, supervised: image %.1f%%  audio %.1f%%  video %.1f%%   (zero-shot above: "
                   "%.1f%% / %.1f%% / %.1f%%)\n", 100 * acc[1], 100 * acc[2], 100 * acc[3],
                   100 * e.zeroshot[MD_MOD_IMAGE], 100 * e.zeroshot[MD_MOD_AUDIO], 100 * e.zeroshot[MD_MOD_VIDEO]);
        else
            fprintf(stderr, "medley eval: %s\n", st == MD_ABORTED ? "cancelled" : md_last_error());
    }
    return st == MD_OK ? 0 : 1;
}
