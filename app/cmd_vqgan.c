/* cmd_vqgan.c — `medley train vqgan` and `medley eval --vqgan`: the image
 * tokenizer (core/vqgan.h). */
#include "commands.h"
#include "vqgan.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vq_ctx {
    double t0;
    float ema, ema_l1;
} vq_ctx;

static void vq_progress(int64_t step, int64_t steps, float loss, float l1, float used, void *user)
{
    vq_ctx *c = user;
    c->ema = step == 0 ? loss : 0.98f * c->ema + 0.02f * loss;
    c->ema_l1 = step == 0 ? l1 : 0.98f * c->ema_l1 + 0.02f * l1;
    if ((step + 1) % 100 == 0 || step + 1 == steps) {
        printf("  vqgan: step %lld/%lld  loss %.4f  L1 %.4f  codes used %.0f%%  %.0f s\n", (long long)step + 1,
               (long long)steps, c->ema, c->ema_l1, 100.0 * used, md_time_now() - c->t0);
        fflush(stdout);
    }
}

static void print_vq_eval(const md_vqgan_eval *e, const char *split)
{
    printf("image tokenizer on %lld %s images: PSNR %.2f dB  L1 %.4f  codes used %.1f%% of %d  perplexity %.0f",
           (long long)e->n, split, e->psnr, e->l1, 100 * e->used, MD_VQ_CODES, e->perplexity);
    if (!isnan(e->judge_digit))
        printf("\n  image judge's digit on the reconstructions %.1f%% (on the originals %.1f%%)", 100 * e->judge_digit,
               100 * e->judge_digit_orig);
    printf("  (%.1f s)\n", e->seconds);
}

static int load_image_judge(const char *models, md_judge *j, bool quiet)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/judge-image.safetensors", medley_models_dir(models));
    if (md_judge_load(j, path, MD_WORLD_IMAGE) != MD_OK) {
        if (!quiet)
            fprintf(stderr, "medley: %s\n", md_last_error());
        return 1;
    }
    return 0;
}

int medley_cmd_train_vqgan(int argc, char **argv)
{
    const char *data = NULL, *out = NULL, *models = NULL, *init = NULL;
    bool perceptual = true;
    md_vqgan_train_opts o;
    md_vqgan_train_default_opts(&o);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        long v;
        if (strcmp(a, "--no-perceptual") == 0) {
            perceptual = false;
            continue;
        }
        if (strcmp(a, "--decoder-only") == 0) {
            o.decoder_only = true;
            continue;
        }
        if (!val) {
            fprintf(stderr, "medley train vqgan: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--data") == 0)
            data = val;
        else if (strcmp(a, "--out") == 0 || strcmp(a, "-o") == 0)
            out = val;
        else if (strcmp(a, "--models") == 0)
            models = val;
        else if (strcmp(a, "--init") == 0)
            init = val;
        else if (strcmp(a, "--lr") == 0) {
            double f;
            if (medley_parse_double(a, val, 1e-6, 1.0, &f)) return 2;
            o.lr = (float)f;
        } else if (strcmp(a, "--seed") == 0) {
            if (medley_parse_int(a, val, 0, 2147483647L, &v)) return 2;
            o.seed = (uint64_t)v;
        } else if (strcmp(a, "--steps") == 0) {
            if (medley_parse_int(a, val, 1, 10000000L, &v)) return 2;
            o.steps = v;
        } else if (strcmp(a, "--batch") == 0) {
            if (medley_parse_int(a, val, 8, 1024, &v)) return 2;
            o.batch = (int)v;
        } else if (strcmp(a, "--perceptual") == 0 || strcmp(a, "--stroke") == 0) {
            double f;
            if (medley_parse_double(a, val, 0.0, 100.0, &f)) return 2;
            *(a[2] == 'p' ? &o.perceptual : &o.stroke) = (float)f;
        } else {
            fprintf(stderr, "medley train vqgan: unknown option \"%s\"\n", a);
            return 2;
        }
        i++;
    }
    if (o.decoder_only && !init) {
        fprintf(stderr, "medley train vqgan: --decoder-only needs --init FILE (the tokenizer whose encoder and codes "
                        "are kept)\n");
        return 2;
    }
    if (!(out = medley_output_dir(out, "medley train vqgan")))
        return 1;
    md_judge judge;
    bool have_judge = perceptual && load_image_judge(models, &judge, false) == 0;
    if (perceptual && !have_judge) {
        fprintf(stderr, "medley train vqgan: the perceptual term needs the image judge "
                        "(train it with 'medley train judges', or pass --no-perceptual)\n");
        return 1;
    }
    md_world w;
    double t0 = md_time_now();
    if (md_world_open(data, &w) != MD_OK) {
        fprintf(stderr, "medley: %s\n", md_last_error());
        if (have_judge)
            md_judge_free(&judge);
        return 1;
    }
    o.judge = have_judge ? &judge : NULL;
    printf("training the image tokenizer%s: %lld steps of %d (images and video frames), 16x16 codes of %d, "
           "perceptual term %s; %d threads\n", o.decoder_only ? "'s decoder (encoder and codes kept)" : "",
           (long long)o.steps, o.batch, MD_VQ_CODES, have_judge ? "on (image judge features)" : "off",
           md_threads_get());
    vq_ctx c = {md_time_now(), 0, 0};
    o.progress = vq_progress;
    o.user = &c;
    o.cancel = &medley_cancel;
    md_vqgan v;
    md_status st = init ? md_vqgan_load(&v, init) : md_vqgan_init(&v, o.seed);
    if (st == MD_OK)
        st = md_vqgan_train(&v, &w, &o);
    else if (init)
        memset(&v, 0, sizeof v);
    double secs = md_time_now() - t0;
    if (st == MD_OK) {
        md_vqgan_eval e;
        if (md_vqgan_evaluate(&v, &w, MD_SPLIT_VAL, 300, o.judge, &e) == MD_OK)
            print_vq_eval(&e, "validation");
        char path[4096], recipe[512];
        snprintf(path, sizeof path, "%s/vqgan.safetensors", out);
        snprintf(recipe, sizeof recipe,
                 "{\"command\":\"medley train vqgan\",\"steps\":%lld,\"batch\":%d,\"lr\":%g,\"beta\":%g,"
                 "\"perceptual\":%g,\"stroke\":%g,\"seed\":%llu,\"init\":%s,\"decoder_only\":%s,"
                 "\"seconds\":%.0f,\"threads\":%d}",
                 (long long)o.steps, o.batch, (double)o.lr, (double)o.beta, have_judge ? (double)o.perceptual : 0.0,
                 (double)o.stroke, (unsigned long long)o.seed, init ? "true" : "false",
                 o.decoder_only ? "true" : "false", secs, md_threads_get());
        st = md_vqgan_save(&v, path, recipe, w.data_hash);
        if (st == MD_OK)
            printf("saved %s (%.0f s in all)\n", path, secs);
    }
    if (st != MD_OK)
        fprintf(stderr, "medley train vqgan: %s\n", st == MD_ABORTED ? "cancelled" : md_last_error());
    md_vqgan_free(&v);
    if (have_judge)
        md_judge_free(&judge);
    md_world_close(&w);
    return st == MD_OK ? 0 : st == MD_ABORTED ? 130 : 1;
}

int medley_eval_vqgan(const md_world *w, const char *models, long quick)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vqgan.safetensors", medley_models_dir(models));
    md_vqgan v;
    if (md_vqgan_load(&v, path) != MD_OK) {
        fprintf(stderr, "medley eval: %s\n(train it with 'medley train vqgan')\n", md_last_error());
        return 1;
    }
    md_judge judge;
    bool have_judge = load_image_judge(models, &judge, true) == 0;
    md_vqgan_eval e;
    md_status st = md_vqgan_evaluate(&v, w, MD_SPLIT_TEST, quick ? quick : 1000, have_judge ? &judge : NULL, &e);
    if (st == MD_OK)
        print_vq_eval(&e, "test");
    else
        fprintf(stderr, "medley eval: %s\n", md_last_error());
    if (have_judge)
        md_judge_free(&judge);
    md_vqgan_free(&v);
    return st == MD_OK ? 0 : 1;
}
