/* audiogen.c — see audiogen.h. */
#include "audiogen.h"
#include "caption.h"
#include "dsp.h"
#include "judge.h"
#include "ops.h"
#include "optim.h"
#include "rng.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MELS MD_AUDIOGEN_MELS
#define FRAMES MD_AUDIOGEN_FRAMES
#define WIDTH MD_AUDIOGEN_WIDTH
#define N_SAMPLES MD_WORLD_AUDIO_SAMPLES

md_unet_config md_audiogen_config(int ch)
{
    md_unet_config c = {.cin = 1, .h = MELS, .w = WIDTH, .ch = ch, .cond_tokens = 4, .shift = 0.f, .scale = 1.f};
    return c;
}

/* the judge's scaling of log(floor): what silence reads as */
static float silence_value(void)
{
    md_mel_params p = md_judge_mel_params();
    return (logf(p.log_floor) + 4.f) * 0.25f;
}

md_status md_audiogen_prep(const float *audio, float *x)
{
    float jx[MELS * FRAMES];
    md_status st = md_judge_prep_audio(audio, jx);
    if (st != MD_OK)
        return st;
    const float sil = silence_value();
    for (int m = 0; m < MELS; m++)
        for (int t = 0; t < WIDTH; t++)
            x[m * WIDTH + t] = t < FRAMES ? jx[m * FRAMES + t] : sil;
    return MD_OK;
}

void md_audiogen_to_judge(const float *x, float *jx)
{
    for (int m = 0; m < MELS; m++)
        memcpy(jx + m * FRAMES, x + m * WIDTH, sizeof(float) * FRAMES);
}

md_status md_audiogen_vocode(const float *x, int iters, uint64_t seed, const volatile int *cancel, float *audio)
{
    if (iters < 1 || iters > 1000) {
        md_log(MD_LOG_ERROR, "vocoder: %d Griffin-Lim iterations; 1..1000 are allowed", iters);
        return MD_ERR_INVALID;
    }
    md_mel_params p = md_judge_mel_params();
    md_stft *st = md_stft_new(p.n_fft, p.hop, p.win_length, p.center);
    const int bins = p.n_fft / 2 + 1;
    float *logmel = malloc(sizeof(float) * MELS * FRAMES);
    float *mag = malloc(sizeof(float) * (size_t)bins * FRAMES);
    md_status s = st && logmel && mag ? MD_OK : MD_ERR_ALLOC;
    if (s == MD_OK && md_stft_frames(st, N_SAMPLES) != FRAMES) {
        md_log(MD_LOG_ERROR, "vocoder: the judge's mel settings give %lld frames, not %d",
               (long long)md_stft_frames(st, N_SAMPLES), FRAMES);
        s = MD_ERR;
    }
    if (s == MD_OK) {
        for (int t = 0; t < FRAMES; t++)   /* [mels, width] scaled -> [frames, mels] natural log */
            for (int m = 0; m < MELS; m++) {
                float v = x[m * WIDTH + t] * 4.f - 4.f;
                logmel[t * MELS + m] = isfinite(v) ? (v > 8.f ? 8.f : v) : logf(p.log_floor);
            }
        s = md_mel_to_linear(&p, logmel, FRAMES, mag);
    }
    if (s == MD_OK)
        s = md_griffin_lim(st, mag, FRAMES, iters, MD_GRIFFIN_LIM_MOMENTUM, seed, audio, N_SAMPLES, cancel);
    if (s == MD_OK) {
        float peak = 0.f;
        for (int i = 0; i < N_SAMPLES; i++)
            peak = fmaxf(peak, fabsf(audio[i]));
        if (peak > 1e-6f)
            for (int i = 0; i < N_SAMPLES; i++)
                audio[i] *= 0.9f / peak;
    }
    free(mag);
    free(logmel);
    md_stft_free(st);
    return s;
}

double md_spectral_convergence(const float *ref, const float *est, int64_t n)
{
    md_mel_params p = md_judge_mel_params();
    md_stft *st = md_stft_new(p.n_fft, p.hop, p.win_length, p.center);
    int64_t frames = st ? md_stft_frames(st, n) : 0;
    const int bins = p.n_fft / 2 + 1;
    float *a = frames ? malloc(sizeof(float) * (size_t)(frames * bins)) : NULL;
    float *b = frames ? malloc(sizeof(float) * (size_t)(frames * bins)) : NULL;
    double r = NAN;
    if (a && b && md_stft_magnitude(st, ref, n, a) == MD_OK && md_stft_magnitude(st, est, n, b) == MD_OK) {
        double num = 0, den = 0;
        for (int64_t i = 0; i < frames * bins; i++) {
            double d = (double)a[i] - b[i];
            num += d * d;
            den += (double)a[i] * a[i];
        }
        r = den > 0 ? sqrt(num / den) : NAN;
    }
    free(a);
    free(b);
    md_stft_free(st);
    return r;
}

double md_spectral_convergence_at_peak(const float *ref, const float *est, int64_t n)
{
    float pr = 0.f, pe = 0.f;
    for (int64_t i = 0; i < n; i++) {
        pr = fmaxf(pr, fabsf(ref[i]));
        pe = fmaxf(pe, fabsf(est[i]));
    }
    float *y = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!y)
        return NAN;
    for (int64_t i = 0; i < n; i++)
        y[i] = pe > 0.f ? est[i] * (pr / pe) : est[i];
    double r = md_spectral_convergence(ref, y, n);
    free(y);
    return r;
}

/* ---- training ---- */

void md_audiogen_train_default_opts(md_audiogen_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 3000;
    o->batch = 32;
    o->lr = 2e-3f;
    o->drop_cond = 0.1f;
    o->ema = 0.995f;
    o->corpus = 3000;
    o->ch = 32;
    o->seed = 1;
}

#define CHUNK 64

static md_status corpus_build(md_unet_corpus *c, const md_space *sp, const md_world *w,
                              const md_audiogen_train_opts *o)
{
    memset(c, 0, sizeof *c);
    const int n = c->n = o->corpus;
    const int64_t D = MD_SPACE_DIM, asz = md_space_input_size(MD_MOD_AUDIO), T = md_threads_get();
    c->x = malloc(sizeof(float) * (size_t)n * MD_AUDIOGEN_SIZE);
    c->own = malloc(sizeof(float) * (size_t)(n * D));
    c->caption = malloc(sizeof(float) * (size_t)(n * D));
    c->digit = malloc(sizeof(int) * (size_t)n);
    float *ax = malloc(sizeof(float) * (size_t)(asz * CHUNK));
    float *audio = malloc(sizeof(float) * N_SAMPLES * (size_t)T);
    char(*caps)[MD_CAPTION_MAX] = malloc(sizeof *caps * CHUNK);
    const char *cp[CHUNK];
    md_graph *g = md_graph_new((size_t)1 << 26);
    md_status st = c->x && c->own && c->caption && c->digit && ax && audio && caps && g ? MD_OK
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
            float *au = audio + (size_t)N_SAMPLES * (size_t)omp_get_thread_num();
            /* with a digit limit, the first of 64 draws reserved for this
             * item whose digit is inside it */
            bool got = false;
            for (int r = 0; r < (o->digits > 0 ? 64 : 1) && !got; r++) {
                int64_t idx = o->digits > 0 ? (int64_t)(i0 + b) * 64 + r : i0 + b;
                if (md_world_draw(w, o->seed, MD_SPLIT_TRAIN, MD_WORLD_AUDIO, idx, &s) != MD_OK)
                    break;
                got = o->digits <= 0 || s.attr[MD_ATTR_DIGIT] < o->digits;
            }
            if (!got) {
                bad = 1;
                continue;
            }
            md_world_render_audio(w, &s, au);
            c->digit[i0 + b] = s.attr[MD_ATTR_DIGIT];
            if (md_audiogen_prep(au, c->x + (size_t)(i0 + b) * MD_AUDIOGEN_SIZE) != MD_OK ||
                md_judge_prep_audio(au, ax + asz * b) != MD_OK ||
                md_caption_make(&s, (int)(md_hash64(o->seed * 31 + (uint64_t)(i0 + b)) % 1000), caps[b],
                                MD_CAPTION_MAX, NULL) != MD_OK)
                bad = 1;
            cp[b] = caps[b];
        }
        if (bad) {
            st = MD_ERR;
            break;
        }
        if ((st = md_space_embed(sp, g, MD_MOD_AUDIO, ax, nb, c->own + (size_t)i0 * D)) == MD_OK)
            st = md_space_embed(sp, g, MD_MOD_TEXT, cp, nb, c->caption + (size_t)i0 * D);
        if (o->progress && st == MD_OK)
            o->progress("embedding clips", i0 + nb, n, 0.f, o->user);
    }
    if (st == MD_OK)
        st = md_unet_corpus_bank(c, sp, g, o->seed);
    md_graph_free(g);
    free(caps);
    free(audio);
    free(ax);
    if (st != MD_OK)
        md_unet_corpus_free(c);
    return st;
}

md_status md_audiogen_train(md_unet *u, const md_space *sp, const md_world *w, const md_audiogen_train_opts *o)
{
    memset(u, 0, sizeof *u);
    if (o->steps < 1 || o->batch < 2 || !(o->lr > 0.f) || !(o->drop_cond >= 0.f && o->drop_cond < 1.f) ||
        !(o->ema >= 0.f && o->ema < 1.f) || o->corpus < o->batch) {
        md_log(MD_LOG_ERROR, "audio decoder training: steps >= 1, batch >= 2, lr > 0, drop_cond and ema in "
                             "[0, 1), corpus >= batch");
        return MD_ERR_INVALID;
    }
    md_unet_config cfg = md_audiogen_config(o->ch);
    md_unet_corpus c;
    md_status st = corpus_build(&c, sp, w, o);
    if (st != MD_OK)
        return st;
    md_unet_corpus_normalise(&c, MD_AUDIOGEN_SIZE, &cfg);
    if ((st = md_unet_init(u, &cfg, o->seed)) == MD_OK) {
        md_unet_train_opts to = {o->steps, o->batch, o->lr, o->drop_cond, o->ema, o->seed,
                                 o->progress, o->user, o->cancel};
        if ((st = md_unet_train(u, &c, &to)) != MD_OK)
            md_unet_free(u);
    }
    md_unet_corpus_free(&c);
    return st;
}
