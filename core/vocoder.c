/* vocoder.c — see vocoder.h. */
#include "vocoder.h"
#include "audiogen.h"
#include "judge.h"
#include "json.h"
#include "ops.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VERSION 2
#define MELS MD_AUDIOGEN_MELS
#define WIDTH MD_AUDIOGEN_WIDTH
#define N_SAMPLES MD_WORLD_AUDIO_SAMPLES

static const int k_up[MD_VOCODER_STAGES] = {5, 4, 4};   /* 80 samples a frame */
/* each divides its stage's length (520, 2080, 8320) */
static const int k_dil[MD_VOCODER_STAGES][MD_VOCODER_UNITS] = {{1, 2, 4}, {1, 4, 16}, {1, 4, 16}};
#define OUT_LEN ((int64_t)WIDTH * 80)

/* the loss's resolutions: FFT size, hop a quarter of it */
static const int k_fft[3] = {512, 256, 128};

/* ---- parameters ---- */

static void conv_decl(md_paramset *ps, const char *name, int64_t cout, int64_t cin, int k, md_tensor **w,
                      md_tensor **b)
{
    char n[64];
    snprintf(n, sizeof n, "%s.weight", name);
    *w = md_param_add(ps, n, 3, (int64_t[]){cout, cin, k});
    snprintf(n, sizeof n, "%s.bias", name);
    *b = md_param_add(ps, n, 1, (int64_t[]){cout});
}

static void conv_init(md_tensor *w, md_tensor *b, uint64_t seed, float gain)
{
    const float bound = gain * sqrtf(3.f / (float)(w->shape[1] * w->shape[2]));
    md_init_uniform(w, seed, -bound, bound);
    md_init_const(b, 0.f);
}

static int stage_width(int ch, int s) { return ch >> (s + 1); }

md_status md_vocoder_init(md_vocoder *v, int ch, uint64_t seed)
{
    memset(v, 0, sizeof *v);
    if (ch < 16 || ch > 512 || ch % 8) {
        md_log(MD_LOG_ERROR, "vocoder: width %d; 16..512, a multiple of 8, is allowed", ch);
        return MD_ERR_INVALID;
    }
    v->ch = ch;
    md_paramset *ps = v->ps = md_paramset_new();
    if (!ps)
        return MD_ERR_ALLOC;
    conv_decl(ps, "in", ch, MELS, 7, &v->in_w, &v->in_b);
    int cin = ch;
    for (int s = 0; s < MD_VOCODER_STAGES; s++) {
        const int cout = stage_width(ch, s);
        char n[32];
        md_vocoder_stage *st = &v->st[s];
        snprintf(n, sizeof n, "up%d", s);
        conv_decl(ps, n, (int64_t)cout * k_up[s], cin, 3, &st->up_w, &st->up_b);
        for (int u = 0; u < MD_VOCODER_UNITS; u++) {
            snprintf(n, sizeof n, "res%d.%d.dilated", s, u);
            conv_decl(ps, n, cout, cout, 3, &st->dil_w[u], &st->dil_b[u]);
            snprintf(n, sizeof n, "res%d.%d.mix", s, u);
            conv_decl(ps, n, cout, cout, 1, &st->mix_w[u], &st->mix_b[u]);
        }
        cin = cout;
    }
    conv_decl(ps, "out", 1, cin, 7, &v->out_w, &v->out_b);
    md_status st = md_paramset_alloc(ps);
    if (st != MD_OK) {
        md_vocoder_free(v);
        return st;
    }
    conv_init(v->in_w, v->in_b, seed + 1, 1.f);
    for (int s = 0; s < MD_VOCODER_STAGES; s++) {
        const uint64_t s0 = seed + 10 + 10 * (uint64_t)s;
        conv_init(v->st[s].up_w, v->st[s].up_b, s0, 1.f);
        for (int u = 0; u < MD_VOCODER_UNITS; u++) {
            conv_init(v->st[s].dil_w[u], v->st[s].dil_b[u], s0 + 1 + 2 * (uint64_t)u, 1.f);
            conv_init(v->st[s].mix_w[u], v->st[s].mix_b[u], s0 + 2 + 2 * (uint64_t)u, 0.1f);   /* near the identity */
        }
    }
    conv_init(v->out_w, v->out_b, seed + 2, 1.f);
    return MD_OK;
}

void md_vocoder_free(md_vocoder *v)
{
    if (v->ps)
        md_paramset_free(v->ps);
    memset(v, 0, sizeof *v);
}

md_status md_vocoder_save(const md_vocoder *v, const char *path, const char *recipe_json, const char *data_hash)
{
    char ver[16], wver[16], cfg[64];
    snprintf(ver, sizeof ver, "%d", VERSION);
    snprintf(wver, sizeof wver, "%d", MD_WORLD_VERSION);
    snprintf(cfg, sizeof cfg, "{\"ch\":%d}", v->ch);
    const char *keys[] = {"medley.model", "medley.version", "vocoder.config", "world.version", "data.hash",
                          "train.recipe"};
    const char *vals[] = {MD_VOCODER_MODEL, ver, cfg, wver, data_hash ? data_hash : "",
                          recipe_json ? recipe_json : "{}"};
    return md_st_save_paramset(path, v->ps, MD_F16, 6, keys, vals);
}

md_status md_vocoder_load(md_vocoder *v, const char *path)
{
    memset(v, 0, sizeof *v);
    md_st_file *f;
    md_status st = md_st_open(path, &f);
    if (st != MD_OK)
        return st;
    st = md_st_check_model(f, path, MD_VOCODER_MODEL, "vocoder", VERSION, "medley train vocoder");
    int64_t ch = 0;
    if (st == MD_OK) {
        const char *js = md_st_meta(f, "vocoder.config");
        md_json_doc *doc = NULL;
        if (!js || md_json_parse(js, strlen(js), path, &doc) != MD_OK ||
            !md_json_int(md_json_get(md_json_root(doc), "ch"), &ch) || ch < 16 || ch > 512 || ch % 8) {
            md_log(MD_LOG_ERROR, "%s: the vocoder has no readable vocoder.config (its width \"ch\")", path);
            st = MD_ERR_FORMAT;
        }
        md_json_free(doc);
    }
    md_st_close(f);
    if (st != MD_OK)
        return st;
    if ((st = md_vocoder_init(v, (int)ch, 0)) != MD_OK)
        return st;
    if ((st = md_st_load_paramset(path, v->ps)) != MD_OK)
        md_vocoder_free(v);
    return st;
}

/* ---- graph ---- */

/* [n, c * s, L] -> [n, c, L * s]: channel j * s + q becomes phase q of
 * every position of channel j. */
static md_tensor *interleave(md_graph *g, md_tensor *x, int s)
{
    const int64_t n = x->shape[0], c = x->shape[1] / s, L = x->shape[2];
    md_tensor *t = md_reshape(g, x, 4, (int64_t[]){n, c, s, L});
    t = md_permute(g, t, (int[]){0, 1, 3, 2});
    return md_reshape(g, t, 3, (int64_t[]){n, c, L * s});
}

/* conv k3 with dilation d over x [n, c, L] (L a multiple of d): an
 * ordinary k3 convolution over each of the d interleaved phases
 * x[p], x[p + d], ..., which is the dilated one with its zero padding. */
md_tensor *md_vocoder_dilated_conv(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *b, int d)
{
    if (d == 1)
        return md_conv1d(g, x, w, b, 1, 1, 1);
    const int64_t n = x->shape[0], c = x->shape[1], L = x->shape[2], o = w->shape[0];
    MD_ASSERT(L % d == 0);
    md_tensor *t = md_reshape(g, x, 4, (int64_t[]){n, c, L / d, d});
    t = md_permute(g, t, (int[]){0, 3, 1, 2});                          /* [n, d, c, L/d] */
    t = md_conv1d(g, md_reshape(g, t, 3, (int64_t[]){n * d, c, L / d}), w, b, 1, 1, 1);
    t = md_permute(g, md_reshape(g, t, 4, (int64_t[]){n, d, o, L / d}), (int[]){0, 2, 3, 1});
    return md_reshape(g, t, 3, (int64_t[]){n, o, L});
}

md_tensor *md_vocoder_forward(md_graph *g, const md_vocoder *v, md_tensor *x)
{
    MD_ASSERT(x->ndim == 3 && x->shape[1] == MELS && x->shape[2] == WIDTH);
    const int64_t n = x->shape[0];
    md_tensor *h = md_conv1d(g, x, v->in_w, v->in_b, 1, 3, 1);
    for (int s = 0; s < MD_VOCODER_STAGES; s++) {
        const md_vocoder_stage *st = &v->st[s];
        h = interleave(g, md_conv1d(g, md_silu(g, h), st->up_w, st->up_b, 1, 1, 1), k_up[s]);
        for (int u = 0; u < MD_VOCODER_UNITS; u++) {
            md_tensor *r = md_vocoder_dilated_conv(g, md_silu(g, h), st->dil_w[u], st->dil_b[u], k_dil[s][u]);
            h = md_add(g, h, md_conv1d(g, md_silu(g, r), st->mix_w[u], st->mix_b[u], 1, 0, 1));
        }
    }
    h = md_tanh(g, md_conv1d(g, md_silu(g, h), v->out_w, v->out_b, 1, 3, 1));
    return md_reshape(g, h, 2, (int64_t[]){n, OUT_LEN});
}

md_status md_vocoder_run(const md_vocoder *v, md_graph *g, const float *x, float *audio)
{
    md_graph_reset(g);
    bool was = md_graph_grad_enabled(g);
    md_graph_set_grad(g, false);
    md_tensor *xt = md_tensor_wrap(g, MD_F32, (void *)x, 3, (int64_t[]){1, MELS, WIDTH});
    md_tensor *y = md_vocoder_forward(g, v, xt);
    md_graph_set_grad(g, was);
    if (!y)
        return MD_ERR;
    float peak = 0.f;
    for (int i = 0; i < N_SAMPLES; i++)
        peak = fmaxf(peak, fabsf(y->data[i]));
    for (int i = 0; i < N_SAMPLES; i++)
        audio[i] = peak > 1e-6f ? y->data[i] * (0.9f / peak) : 0.f;
    md_graph_reset(g);
    return MD_OK;
}

/* ---- loss ---- */

/* [2 * bins, 1, nfft]: Hann-windowed cosines, then negated sines. */
static float *dft_kernel(int nfft)
{
    const int bins = nfft / 2 + 1;
    float *w = malloc(sizeof(float) * (size_t)(2 * bins * nfft));
    if (!w)
        return NULL;
    for (int k = 0; k < bins; k++)
        for (int i = 0; i < nfft; i++) {
            const double win = 0.5 - 0.5 * cos(2.0 * M_PI * i / nfft), a = 2.0 * M_PI * (double)k * i / nfft;
            w[(size_t)k * nfft + i] = (float)(win * cos(a));
            w[(size_t)(bins + k) * nfft + i] = (float)(-win * sin(a));
        }
    return w;
}

static float *g_kernels[3];

static md_status kernels(void)
{
    md_status st = MD_OK;
    #pragma omp critical(md_vocoder_kernels)
    for (int r = 0; r < 3; r++)
        if (!g_kernels[r] && !(g_kernels[r] = dft_kernel(k_fft[r])))
            st = MD_ERR_ALLOC;
    return st;
}

/* magnitudes [n, bins, frames] of x [n, 1, len] */
static md_tensor *magnitude(md_graph *g, md_tensor *x, int r)
{
    const int nfft = k_fft[r], bins = nfft / 2 + 1;
    md_tensor *w = md_tensor_wrap(g, MD_F32, g_kernels[r], 3, (int64_t[]){2 * bins, 1, nfft});
    md_tensor *s = md_conv1d(g, x, w, NULL, nfft / 4, 0, 1);
    md_tensor *re = md_slice(g, s, 1, 0, bins), *im = md_slice(g, s, 1, bins, 2 * bins);
    return md_sqrt_eps(g, md_add(g, md_mul(g, re, re), md_mul(g, im, im)), 1e-7f);
}

md_tensor *md_vocoder_loss(md_graph *g, md_tensor *y, const float *ref, int n, int64_t len)
{
    if (kernels() != MD_OK)
        return NULL;
    MD_ASSERT(y->ndim == 2 && y->shape[0] == n && y->shape[1] >= len);
    md_tensor *yc = y->shape[1] == len ? y : md_slice(g, y, 1, 0, len);
    yc = md_reshape(g, yc, 3, (int64_t[]){n, 1, len});
    md_tensor *rt = md_tensor_wrap(g, MD_F32, (void *)ref, 3, (int64_t[]){n, 1, len});
    md_tensor *loss = NULL;
    for (int r = 0; r < 3; r++) {
        md_tensor *m = magnitude(g, yc, r), *mr = magnitude(g, rt, r);
        double den = 0;
        for (int64_t i = 0; i < md_numel(mr); i++)
            den += (double)mr->data[i] * mr->data[i];
        md_tensor *d = md_sub(g, m, mr);
        md_tensor *sc = md_scale(g, md_sqrt_eps(g, md_sum(g, md_mul(g, d, d)), 1e-12f),
                                 (float)(1.0 / sqrt(den + 1e-12)));
        md_tensor *lm = md_l1(g, md_log_eps(g, m, 1e-5f), md_log_eps(g, mr, 1e-5f));
        md_tensor *t = md_add(g, sc, lm);
        loss = loss ? md_add(g, loss, t) : t;
    }
    return md_scale(g, loss, 1.f / 3.f);
}

/* ---- training ---- */

void md_vocoder_train_default_opts(md_vocoder_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 3000;
    o->batch = 8;
    o->lr = 2e-3f;
    o->corpus = 2000;
    o->ch = 64;
    o->seed = 1;
}

/* n train clips: samples [n, N_SAMPLES] and their spectrograms [n, SIZE] */
static md_status corpus_build(const md_world *w, const md_vocoder_train_opts *o, float *audio, float *mel)
{
    volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 8) num_threads(md_threads_get())
    for (int i = 0; i < o->corpus; i++) {
        md_world_sample s;
        float *a = audio + (size_t)i * N_SAMPLES;
        if (md_world_draw(w, o->seed, MD_SPLIT_TRAIN, MD_WORLD_AUDIO, i, &s) != MD_OK) {
            bad = 1;
            continue;
        }
        md_world_render_audio(w, &s, a);
        if (md_audiogen_prep(a, mel + (size_t)i * MD_AUDIOGEN_SIZE) != MD_OK)
            bad = 1;
    }
    if (bad) {
        md_log(MD_LOG_ERROR, "vocoder training: could not draw the train clips: %s", md_last_error());
        return MD_ERR;
    }
    return MD_OK;
}

md_status md_vocoder_train(md_vocoder *v, const md_world *w, const md_vocoder_train_opts *o)
{
    memset(v, 0, sizeof *v);
    if (o->steps < 1 || o->batch < 1 || !(o->lr > 0.f) || o->corpus < o->batch) {
        md_log(MD_LOG_ERROR, "vocoder training: steps >= 1, batch >= 1, lr > 0, corpus >= batch");
        return MD_ERR_INVALID;
    }
    const int B = o->batch;
    float *audio = malloc(sizeof(float) * (size_t)o->corpus * N_SAMPLES);
    float *mel = malloc(sizeof(float) * (size_t)o->corpus * MD_AUDIOGEN_SIZE);
    float *bx = malloc(sizeof(float) * (size_t)B * MD_AUDIOGEN_SIZE);
    float *ba = malloc(sizeof(float) * (size_t)B * N_SAMPLES);
    md_graph *g = md_graph_new((size_t)1 << 26);
    md_status st = audio && mel && bx && ba && g ? MD_OK : MD_ERR_ALLOC;
    if (st == MD_OK)
        st = corpus_build(w, o, audio, mel);
    if (st == MD_OK)
        st = md_vocoder_init(v, o->ch, o->seed);
    md_adamw opt;
    bool have_opt = false;
    if (st == MD_OK && (st = md_adamw_init(&opt, v->ps, 0.9f, 0.99f, 1e-8f, 0.f)) == MD_OK)
        have_opt = true;
    md_rng r;
    md_rng_init(&r, o->seed * 17 + 3);
    for (int64_t step = 0; step < o->steps && st == MD_OK; step++) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        for (int b = 0; b < B; b++) {
            const int k = (int)md_rng_below(&r, (uint32_t)o->corpus);
            memcpy(bx + (size_t)b * MD_AUDIOGEN_SIZE, mel + (size_t)k * MD_AUDIOGEN_SIZE,
                   sizeof(float) * MD_AUDIOGEN_SIZE);
            memcpy(ba + (size_t)b * N_SAMPLES, audio + (size_t)k * N_SAMPLES, sizeof(float) * N_SAMPLES);
        }
        md_graph_reset(g);
        md_paramset_zero_grad(v->ps);
        md_tensor *xt = md_tensor_wrap(g, MD_F32, bx, 3, (int64_t[]){B, MELS, WIDTH});
        md_tensor *loss = md_vocoder_loss(g, md_vocoder_forward(g, v, xt), ba, B, N_SAMPLES);
        if (!loss || !isfinite(loss->data[0])) {
            md_log(MD_LOG_ERROR, "vocoder training: the loss is not finite at step %lld", (long long)step);
            st = MD_ERR;
            break;
        }
        md_graph_backward(g, loss);
        md_paramset_finish_grads(v->ps);
        md_clip_grad_norm(v->ps, 1.0f);
        md_adamw_step(&opt, md_lr_warmup_cosine(step, o->steps / 50 + 1, o->steps, o->lr, o->lr * 0.05f));
        if (o->progress)
            o->progress("training", step, o->steps, loss->data[0], o->user);
    }
    if (g && getenv("MEDLEY_PROFILE"))
        md_graph_profile_print(g, stderr);
    if (have_opt)
        md_adamw_free(&opt);
    if (st != MD_OK)
        md_vocoder_free(v);
    md_graph_free(g);
    free(ba);
    free(bx);
    free(mel);
    free(audio);
    return st;
}

/* ---- comparison ---- */

md_status md_vocoder_compare(const md_vocoder *v, const md_world *w, const md_judge *judge, int n,
                             md_vocoder_figures *f)
{
    const int64_t jsz = md_judge_input_size(MD_WORLD_AUDIO), S = MD_WORLD_AUDIO_SAMPLES;
    float *audio = malloc(sizeof(float) * (size_t)S), *y = malloc(sizeof(float) * (size_t)S);
    float *x = malloc(sizeof(float) * MD_AUDIOGEN_SIZE);
    float *jx = judge ? malloc(sizeof(float) * (size_t)(jsz * n * 3)) : NULL;
    int *digit = malloc(sizeof(int) * (size_t)n);
    int(*got)[MD_ATTR_COUNT] = judge ? malloc(sizeof(int[MD_ATTR_COUNT]) * (size_t)n * 3) : NULL;
    md_graph *g = md_graph_new((size_t)1 << 24);
    md_status st = audio && y && x && digit && g && (!judge || (jx && got)) ? MD_OK : MD_ERR_ALLOC;
    memset(f, 0, sizeof *f);
    f->n = n;
    double t_gl = 0, t_nn = 0;
    for (int i = 0; i < n && st == MD_OK; i++) {
        md_world_sample s;
        if ((st = md_world_draw(w, 5, MD_SPLIT_TEST, MD_WORLD_AUDIO, i, &s)) != MD_OK)
            break;
        md_world_render_audio(w, &s, audio);
        digit[i] = s.attr[MD_ATTR_DIGIT];
        if ((st = md_audiogen_prep(audio, x)) != MD_OK)
            break;
        if (judge && (st = md_judge_prep_audio(audio, jx + jsz * i)) != MD_OK)
            break;
        for (int which = 0; which < 2 && st == MD_OK; which++) {
            double t0 = md_time_now();
            st = which == 0 ? md_audiogen_vocode(x, 48, (uint64_t)i, NULL, y) : md_vocoder_run(v, g, x, y);
            *(which == 0 ? &t_gl : &t_nn) += md_time_now() - t0;
            if (st != MD_OK)
                break;
            if (judge && (st = md_judge_prep_audio(y, jx + jsz * (n * (1 + which) + i))) != MD_OK)
                break;
            /* compared at the original's level (both peak-normalise) */
            double c = md_spectral_convergence_at_peak(audio, y, S);
            *(which == 0 ? &f->sc_gl : &f->sc_nn) += c / n;
        }
    }
    if (st == MD_OK && judge)
        st = md_judge_read(judge, g, jx, 3 * n, got, NULL);
    if (st == MD_OK && judge) {
        int r[3] = {0, 0, 0};
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < n; i++)
                r[k] += got[k * n + i][MD_ATTR_DIGIT] == digit[i];
        f->digit_orig = (double)r[0] / n;
        f->digit_gl = (double)r[1] / n;
        f->digit_nn = (double)r[2] / n;
    } else {
        f->digit_orig = f->digit_gl = f->digit_nn = NAN;
    }
    f->secs_gl = t_gl / n;
    f->secs_nn = t_nn / n;
    md_graph_free(g);
    free(got);
    free(digit);
    free(jx);
    free(x);
    free(y);
    free(audio);
    return st;
}
