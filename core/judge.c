/* judge.c — see judge.h. */
#include "judge.h"
#include "ops.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int conv_out[MD_JUDGE_CONVS] = {32, 32, 64, 64, 128, 128, 128};
#define JUDGE_GROUPS 8   /* GroupNorm after every conv */
#define WHERE 64   /* image/video: width of the flattened (where) branch */
/* stride of conv i: 2 for 1, 3, 5 */
static int conv_stride(int i) { return i % 2 && i < 6 ? 2 : 1; }
#define AUDIO_FRAMES 101     /* 8000 samples, hop 80, centred */
#define AUDIO_MELS 40

bool md_judge_reads(md_world_kind kind, md_attr a)
{
    switch (kind) {
    case MD_WORLD_IMAGE:
        return a == MD_ATTR_DIGIT || a == MD_ATTR_STYLE || a == MD_ATTR_INK || a == MD_ATTR_BG ||
               a == MD_ATTR_POS || a == MD_ATTR_SIZE;
    case MD_WORLD_VIDEO:
        return a == MD_ATTR_DIGIT || a == MD_ATTR_INK || a == MD_ATTR_BG || a == MD_ATTR_SIZE ||
               a == MD_ATTR_MOTION || a == MD_ATTR_SPEED;
    case MD_WORLD_AUDIO:
        return a == MD_ATTR_DIGIT || a == MD_ATTR_SPEAKER;
    }
    return false;
}

static void input_shape(md_world_kind kind, int *c, int *h, int *w)
{
    if (kind == MD_WORLD_AUDIO) {
        *c = 1; *h = AUDIO_MELS; *w = AUDIO_FRAMES;
    } else {
        *c = MD_JUDGE_IMAGE_CHANNELS;   /* video: the image network, one frame at a time */
        *h = *w = MD_WORLD_SIZE;
    }
}

int64_t md_judge_input_size(md_world_kind kind)
{
    int c, h, w;
    input_shape(kind, &c, &h, &w);
    if (kind == MD_WORLD_VIDEO)   /* 6 frames, then the ink centroid (x, y) of all 16 */
        return (int64_t)MD_JUDGE_VIDEO_FRAMES * c * h * w + 2 * MD_WORLD_FRAMES;
    return (int64_t)c * h * w;
}

/* What the network's heads read: the video judge runs the image network. */
static bool net_reads(md_world_kind kind, md_attr a)
{
    return md_judge_reads(kind == MD_WORLD_VIDEO ? MD_WORLD_IMAGE : kind, a);
}

md_mel_params md_judge_mel_params(void)
{
    md_mel_params p = md_mel_params_default();
    p.sample_rate = MD_WORLD_RATE;
    p.n_fft = 256;
    p.hop = 80;
    p.win_length = 256;
    p.n_mels = AUDIO_MELS;
    p.f_min = 0.f;
    p.f_max = MD_WORLD_RATE / 2;
    return p;
}

static int conv_dim(int n, int stride) { return stride == 1 ? n : (n - 1) / 2 + 1; }   /* 3×3, pad 1 */

void md_judge_net_declare(md_judge *j, md_world_kind kind, md_paramset *ps, const char *prefix, bool heads)
{
    memset(j, 0, sizeof *j);
    j->kind = kind;
    j->mel = md_judge_mel_params();
    input_shape(kind, &j->cin, &j->h, &j->w);
    int c = j->cin, h = j->h, w = j->w;
    char name[96];
#define NAME(...) (snprintf(name, sizeof name, "%s", prefix), \
                   snprintf(name + strlen(name), sizeof name - strlen(name), __VA_ARGS__), name)
    for (int i = 0; i < MD_JUDGE_CONVS; i++) {
        int stride = conv_stride(i);
        j->conv_w[i] = md_param_add(ps, NAME("conv%d.weight", i), 4, (int64_t[]){conv_out[i], c, 3, 3});
        j->conv_b[i] = md_param_add(ps, NAME("conv%d.bias", i), 1, (int64_t[]){conv_out[i]});
        j->gn_w[i] = md_param_add(ps, NAME("gn%d.weight", i), 1, (int64_t[]){conv_out[i]});
        j->gn_b[i] = md_param_add(ps, NAME("gn%d.bias", i), 1, (int64_t[]){conv_out[i]});
        c = conv_out[i];
        h = conv_dim(h, stride);
        w = conv_dim(w, stride);
    }
    /* audio: time-averaged map, flattened; image/video: the globally pooled
     * map (what, wherever it is) beside a narrow flattened branch (where) */
    int64_t flat = kind == MD_WORLD_AUDIO ? (int64_t)c * h : (int64_t)c + WHERE;
    if (kind != MD_WORLD_AUDIO) {
        j->att_w = md_param_add(ps, NAME("attn.weight"), 4, (int64_t[]){1, c, 1, 1});
        j->att_b = md_param_add(ps, NAME("attn.bias"), 1, (int64_t[]){1});
        j->where_w = md_param_add(ps, NAME("where.weight"), 2, (int64_t[]){WHERE, (int64_t)c * h * w});
        j->where_b = md_param_add(ps, NAME("where.bias"), 1, (int64_t[]){WHERE});
    }
    j->fc_w = md_param_add(ps, NAME("fc.weight"), 2, (int64_t[]){MD_JUDGE_FEATURES, flat});
    j->fc_b = md_param_add(ps, NAME("fc.bias"), 1, (int64_t[]){MD_JUDGE_FEATURES});
    for (int a = 0; heads && a < MD_ATTR_COUNT; a++) {
        if (!net_reads(kind, (md_attr)a))
            continue;
        j->head_w[a] = md_param_add(ps, NAME("head.%s.weight", md_attr_names[a]), 2,
                                    (int64_t[]){md_attr_classes[a], MD_JUDGE_FEATURES});
        j->head_b[a] = md_param_add(ps, NAME("head.%s.bias", md_attr_names[a]), 1, (int64_t[]){md_attr_classes[a]});
    }
#undef NAME
}

void md_judge_net_init(md_judge *j, uint64_t seed)
{
    /* He-uniform for the ReLU layers, PyTorch's default bound for heads;
     * biases zero. */
    for (int i = 0; i < MD_JUDGE_CONVS; i++) {
        float b = sqrtf(6.f / (float)(j->conv_w[i]->shape[1] * 9));
        md_init_uniform(j->conv_w[i], seed * 31 + (uint64_t)i, -b, b);
        md_init_const(j->conv_b[i], 0.f);
        md_init_const(j->gn_w[i], 1.f);
        md_init_const(j->gn_b[i], 0.f);
    }
    float b = sqrtf(6.f / (float)j->fc_w->shape[1]);
    md_init_uniform(j->fc_w, seed * 31 + 17, -b, b);
    if (j->att_w) {
        md_init_uniform(j->att_w, seed * 31 + 23, -0.05f, 0.05f);
        md_init_const(j->att_b, 0.f);
    }
    if (j->where_w) {
        b = sqrtf(6.f / (float)j->where_w->shape[1]);
        md_init_uniform(j->where_w, seed * 31 + 19, -b, b);
        md_init_const(j->where_b, 0.f);
    }
    md_init_const(j->fc_b, 0.f);
    for (int a = 0; a < MD_ATTR_COUNT; a++)
        if (j->head_w[a]) {
            b = 1.f / sqrtf((float)MD_JUDGE_FEATURES);
            md_init_uniform(j->head_w[a], seed * 31 + 100 + (uint64_t)a, -b, b);
            md_init_const(j->head_b[a], 0.f);
        }
}

md_status md_judge_init(md_judge *j, md_world_kind kind, uint64_t seed)
{
    memset(j, 0, sizeof *j);
    if (kind < MD_WORLD_IMAGE || kind > MD_WORLD_VIDEO) {
        md_log(MD_LOG_ERROR, "judge: unknown kind %d", (int)kind);
        return MD_ERR_INVALID;
    }
    md_paramset *ps = md_paramset_new();
    if (!ps)
        return MD_ERR_ALLOC;
    md_judge_net_declare(j, kind, ps, "", true);
    j->ps = ps;
    md_status st = md_paramset_alloc(j->ps);
    if (st != MD_OK) {
        md_judge_free(j);
        return st;
    }
    md_judge_net_init(j, seed);
    return MD_OK;
}

void md_judge_free(md_judge *j)
{
    if (!j)
        return;
    md_paramset_free(j->ps);
    memset(j, 0, sizeof *j);
}

md_status md_judge_save(const md_judge *j, const char *path, const char *recipe_json, const char *data_hash)
{
    char ver[16], wver[16];
    snprintf(ver, sizeof ver, "%d", MD_JUDGE_VERSION);
    snprintf(wver, sizeof wver, "%d", MD_WORLD_VERSION);
    const char *keys[] = {"medley.model", "medley.version", "judge.kind", "world.version",
                          "data.hash", "train.recipe"};
    const char *vals[] = {"judge", ver, md_world_kind_names[j->kind], wver,
                          data_hash ? data_hash : "", recipe_json ? recipe_json : "{}"};
    return md_st_save_paramset(path, j->ps, MD_F16, 6, keys, vals);
}

md_status md_judge_load(md_judge *j, const char *path, md_world_kind kind)
{
    memset(j, 0, sizeof *j);
    md_st_file *f;
    md_status st = md_st_open(path, &f);
    if (st != MD_OK)
        return st;
    const char *k = md_st_meta(f, "judge.kind");
    st = md_st_check_model(f, path, "judge", "judge", MD_JUDGE_VERSION, "medley train judges");
    if (st == MD_OK && (!k || strcmp(k, md_world_kind_names[kind]) != 0)) {
        md_log(MD_LOG_ERROR, "%s: a judge of %s, not of %s", path, k ? k : "nothing", md_world_kind_names[kind]);
        st = MD_ERR_FORMAT;
    }
    md_st_close(f);
    if (st != MD_OK)
        return st;
    if ((st = md_judge_init(j, kind, 0)) != MD_OK)
        return st;
    if ((st = md_st_load_paramset(path, j->ps)) != MD_OK)
        md_judge_free(j);
    return st;
}

/* ---- inputs ---- */

/* Median of one channel over the frame's border (252 pixels). */
static int border_median(const uint8_t *rgb, int c)
{
    const int S = MD_WORLD_SIZE;
    int hist[256] = {0}, n = 0;
    for (int i = 0; i < S; i++) {
        hist[rgb[(0 * S + i) * 3 + c]]++;
        hist[rgb[((S - 1) * S + i) * 3 + c]]++;
        n += 2;
        if (i > 0 && i < S - 1) {
            hist[rgb[(i * S + 0) * 3 + c]]++;
            hist[rgb[(i * S + S - 1) * 3 + c]]++;
            n += 2;
        }
    }
    for (int v = 0, acc = 0; v < 256; v++)
        if ((acc += hist[v]) * 2 >= n)
            return v;
    return 0;
}

/* ink [64*64]: each pixel's largest channel distance from the border's
 * median colour (the background, wherever the digit sits); returns the
 * largest. */
static int ink_map(const uint8_t *rgb, uint8_t *ink)
{
    int bg[3], maxd = 0;
    for (int c = 0; c < 3; c++)
        bg[c] = border_median(rgb, c);
    for (int i = 0; i < MD_WORLD_SIZE * MD_WORLD_SIZE; i++) {
        int d = 0;
        for (int c = 0; c < 3; c++) {
            int e = abs((int)rgb[i * 3 + c] - bg[c]);
            d = e > d ? e : d;
        }
        ink[i] = (uint8_t)d;
        maxd = d > maxd ? d : maxd;
    }
    return maxd;
}

void md_judge_prep_rgb(const uint8_t *rgb, float *x)
{
    const int hw = MD_WORLD_SIZE * MD_WORLD_SIZE;
    uint8_t ink[MD_WORLD_SIZE * MD_WORLD_SIZE];
    ink_map(rgb, ink);
    for (int i = 0; i < hw; i++) {
        for (int c = 0; c < 3; c++)
            x[c * hw + i] = (float)rgb[i * 3 + c] * (2.f / 255.f) - 1.f;
        x[3 * hw + i] = (float)ink[i] * (2.f / 255.f) - 1.f;
    }
}

void md_judge_prep_frames(const uint8_t *frames, float *x)
{
    const size_t fsz = (size_t)MD_WORLD_SIZE * MD_WORLD_SIZE * 3;
    const size_t isz = (size_t)MD_WORLD_SIZE * MD_WORLD_SIZE * MD_JUDGE_IMAGE_CHANNELS;
    for (int k = 0; k < MD_JUDGE_VIDEO_FRAMES; k++)
        md_judge_prep_rgb(frames + fsz * (size_t)(k * 3), x + isz * (size_t)k);
    /* ink centroid of every frame: pixels at least half as far from the
     * border's colour as the farthest one, weighted by that distance */
    float *traj = x + isz * MD_JUDGE_VIDEO_FRAMES;
    for (int t = 0; t < MD_WORLD_FRAMES; t++) {
        uint8_t ink[MD_WORLD_SIZE * MD_WORLD_SIZE];
        int maxd = ink_map(frames + fsz * (size_t)t, ink);
        double sx = 0, sy = 0, sw = 0;
        for (int i = 0; i < MD_WORLD_SIZE * MD_WORLD_SIZE; i++)
            if (maxd > 0 && ink[i] * 2 >= maxd) {
                sx += (double)ink[i] * (i % MD_WORLD_SIZE);
                sy += (double)ink[i] * (i / MD_WORLD_SIZE);
                sw += ink[i];
            }
        traj[2 * t] = sw > 0 ? (float)(sx / sw) : MD_WORLD_SIZE * 0.5f;
        traj[2 * t + 1] = sw > 0 ? (float)(sy / sw) : MD_WORLD_SIZE * 0.5f;
    }
}

/* Motion and speed from the ink centroid's path (pixels, y down): a hop up
 * and back is a bounce (one hop slow, two fast); otherwise the larger of
 * the net horizontal and vertical travel gives the direction, and more
 * than 22 px over the clip (1 px/frame slow, 2 fast) is fast. */
static void read_motion(const float *traj, int *motion, int *speed)
{
    const int T = MD_WORLD_FRAMES;
    float x0 = traj[0], y0 = traj[1], x1 = traj[2 * (T - 1)], y1 = traj[2 * (T - 1) + 1];
    float ymin = y0, path = 0;
    for (int t = 0; t < T; t++) {
        ymin = traj[2 * t + 1] < ymin ? traj[2 * t + 1] : ymin;
        if (t)
            path += fabsf(traj[2 * t + 1] - traj[2 * t - 1]);
    }
    float dx = x1 - x0, dy = y1 - y0;
    if (y0 - ymin > 6.f && y1 - ymin > 6.f) {
        *motion = 4;
        *speed = path > 42.f;
    } else if (fabsf(dx) >= fabsf(dy)) {
        *motion = dx < 0 ? 0 : 1;
        *speed = fabsf(dx) > 22.f;
    } else {
        *motion = dy < 0 ? 2 : 3;
        *speed = fabsf(dy) > 22.f;
    }
}

md_status md_judge_prep_audio(const float *audio, float *x)
{
    md_mel_params p = md_judge_mel_params();
    md_audio a = {.rate = MD_WORLD_RATE, .channels = 1, .frames = MD_WORLD_AUDIO_SAMPLES, .samples = (float *)audio};
    float *mel;
    int64_t frames;
    md_status st = md_log_mel(&p, &a, &mel, &frames);
    if (st != MD_OK)
        return st;
    MD_ASSERT(frames == AUDIO_FRAMES);
    /* [frames, mels] -> [mels, frames], scaled to about [-2, 2] */
    for (int t = 0; t < AUDIO_FRAMES; t++)
        for (int m = 0; m < AUDIO_MELS; m++)
            x[m * AUDIO_FRAMES + t] = (mel[t * AUDIO_MELS + m] + 4.f) * 0.25f;
    free(mel);
    return MD_OK;
}

md_status md_judge_prep_sample(const md_world *w, const md_world_sample *s, uint8_t *scratch, float *x)
{
    switch (s->kind) {
    case MD_WORLD_IMAGE: {
        uint8_t rgb[MD_WORLD_SIZE * MD_WORLD_SIZE * 3];
        md_world_render_image(w, s, rgb);
        md_judge_prep_rgb(rgb, x);
        return MD_OK;
    }
    case MD_WORLD_VIDEO:
        md_world_render_video(w, s, scratch, NULL);
        md_judge_prep_frames(scratch, x);
        return MD_OK;
    case MD_WORLD_AUDIO: {
        float audio[MD_WORLD_AUDIO_SAMPLES];
        md_world_render_audio(w, s, audio);
        return md_judge_prep_audio(audio, x);
    }
    }
    return MD_ERR_INVALID;
}

/* ---- model ---- */

md_tensor *md_judge_forward(md_graph *g, const md_judge *j, md_tensor *x, md_tensor *logits[MD_ATTR_COUNT])
{
    MD_ASSERT(x->ndim == 4 && x->shape[1] == j->cin && x->shape[2] == j->h && x->shape[3] == j->w);
    int64_t n = x->shape[0];
    md_tensor *h = x;
    for (int i = 0; i < MD_JUDGE_CONVS; i++)
        h = md_groupnorm_silu(g, md_conv2d(g, h, j->conv_w[i], j->conv_b[i], conv_stride(i), 1, 1), JUDGE_GROUPS,
                              j->gn_w[i], j->gn_b[i], 1e-5f);
    if (j->kind == MD_WORLD_AUDIO) {
        h = md_mean_dim(g, h, 3);   /* [N, C, mels', 1] */
        h = md_reshape(g, h, 2, (int64_t[]){n, md_numel(h) / n});
    } else {
        /* what: features pooled with a learned saliency over the 8×8
         * positions (a small digit on a large field would vanish in a plain
         * mean) */
        int64_t C = h->shape[1], P = h->shape[2] * h->shape[3];
        md_tensor *sal = md_conv2d(g, h, j->att_w, j->att_b, 1, 0, 1);                 /* [N, 1, 8, 8] */
        sal = md_softmax(g, md_reshape(g, sal, 3, (int64_t[]){n, 1, P}));
        md_tensor *hp = md_reshape(g, h, 3, (int64_t[]){n, C, P});
        md_tensor *what = md_reshape(g, md_bmm(g, sal, hp, false, true), 2, (int64_t[]){n, C});
        md_tensor *flat = md_reshape(g, h, 2, (int64_t[]){n, md_numel(h) / n});
        md_tensor *where = md_relu(g, md_linear(g, flat, j->where_w, j->where_b));
        md_tensor *parts[2] = {what, where};
        h = md_concat(g, parts, 2, 1);
    }
    md_tensor *feat = md_relu(g, md_linear(g, h, j->fc_w, j->fc_b));
    for (int a = 0; a < MD_ATTR_COUNT; a++)
        logits[a] = j->head_w[a] ? md_linear(g, feat, j->head_w[a], j->head_b[a]) : NULL;
    return feat;
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b])
            b = i;
    return b;
}

/* Video: the image network on frames 0, 3, .., 15; digit, colours and size
 * by vote over the frames (ties: the earliest frame's reading), features
 * the mean over frames; motion and speed from the ink path. */
static md_status read_video(const md_judge *j, md_graph *g, const float *x, int64_t n,
                            int (*attrs)[MD_ATTR_COUNT], float *feats)
{
    const int F = MD_JUDGE_VIDEO_FRAMES;
    const int64_t fsz = (int64_t)j->cin * j->h * j->w, vsz = md_judge_input_size(MD_WORLD_VIDEO), B = 16;
    float *fx = malloc(sizeof(float) * (size_t)(B * F * fsz));
    int(*fa)[MD_ATTR_COUNT] = malloc(sizeof *fa * (size_t)(B * F));
    float *ff = malloc(sizeof(float) * (size_t)(B * F * MD_JUDGE_FEATURES));
    md_status st = fx && fa && ff ? MD_OK : MD_ERR_ALLOC;
    md_judge img = *j;
    img.kind = MD_WORLD_IMAGE;
    for (int64_t i0 = 0; i0 < n && st == MD_OK; i0 += B) {
        int64_t nb = n - i0 < B ? n - i0 : B;
        for (int64_t i = 0; i < nb; i++)
            memcpy(fx + i * F * fsz, x + (i0 + i) * vsz, sizeof(float) * (size_t)(F * fsz));
        st = md_judge_read(&img, g, fx, nb * F, fa, ff);
        for (int64_t i = 0; st == MD_OK && i < nb; i++) {
            int *out = attrs[i0 + i];
            for (int a = 0; a < MD_ATTR_COUNT; a++) {
                out[a] = -1;
                if (!md_judge_reads(MD_WORLD_VIDEO, (md_attr)a) || a == MD_ATTR_MOTION || a == MD_ATTR_SPEED)
                    continue;
                int votes[16] = {0}, best = fa[i * F][a];
                for (int f = 0; f < F; f++)
                    if (fa[i * F + f][a] >= 0 && fa[i * F + f][a] < 16)
                        votes[fa[i * F + f][a]]++;
                for (int v = 0; v < 16; v++)
                    if (votes[v] > votes[best])
                        best = v;
                out[a] = best;
            }
            read_motion(x + (i0 + i) * vsz + F * fsz, &out[MD_ATTR_MOTION], &out[MD_ATTR_SPEED]);
            if (feats)
                for (int k = 0; k < MD_JUDGE_FEATURES; k++) {
                    float acc = 0;
                    for (int f = 0; f < F; f++)
                        acc += ff[(i * F + f) * MD_JUDGE_FEATURES + k];
                    feats[(i0 + i) * MD_JUDGE_FEATURES + k] = acc / (float)F;
                }
        }
    }
    free(ff);
    free(fa);
    free(fx);
    return st;
}

md_status md_judge_read(const md_judge *j, md_graph *g, const float *x, int64_t n,
                        int (*attrs)[MD_ATTR_COUNT], float *feats)
{
    if (j->kind == MD_WORLD_VIDEO)
        return read_video(j, g, x, n, attrs, feats);
    const int64_t B = 64, isz = (int64_t)j->cin * j->h * j->w;
    bool grad = md_graph_grad_enabled(g), train = md_graph_training(g);
    md_graph_set_grad(g, false);
    md_graph_set_training(g, false);
    for (int64_t i0 = 0; i0 < n; i0 += B) {
        int64_t nb = n - i0 < B ? n - i0 : B;
        md_graph_reset(g);
        md_tensor *xt = md_tensor_wrap(g, MD_F32, (void *)(x + i0 * isz), 4, (int64_t[]){nb, j->cin, j->h, j->w});
        md_tensor *logits[MD_ATTR_COUNT];
        md_tensor *feat = md_judge_forward(g, j, xt, logits);
        for (int64_t i = 0; i < nb; i++) {
            for (int a = 0; a < MD_ATTR_COUNT; a++)
                attrs[i0 + i][a] = logits[a] ? argmax(logits[a]->data + i * md_attr_classes[a], md_attr_classes[a]) : -1;
            if (feats)
                memcpy(feats + (i0 + i) * MD_JUDGE_FEATURES, feat->data + i * MD_JUDGE_FEATURES,
                       sizeof(float) * MD_JUDGE_FEATURES);
        }
    }
    md_graph_reset(g);
    md_graph_set_grad(g, grad);
    md_graph_set_training(g, train);
    return MD_OK;
}

/* ---- training ---- */

void md_judge_train_default_opts(md_world_kind kind, md_judge_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->batch = 32;
    o->lr = 2e-3f;
    o->seed = 1;
    o->steps = kind == MD_WORLD_IMAGE ? 10000 : kind == MD_WORLD_VIDEO ? 4000 : 3000;
}

/* Augmentation, on top of the world's own variety: sensor-like noise
 * everywhere, and shifts and mirror images for the few sign photos. */
static void augment(md_world_kind kind, const md_world_sample *s, uint64_t key, float *x, float *tmp)
{
    md_rng r;
    md_rng_init(&r, key);
    int64_t n = md_judge_input_size(kind);
    if (kind == MD_WORLD_IMAGE && s->attr[MD_ATTR_STYLE] == 1) {
        const int S = MD_WORLD_SIZE;
        int dx = (int)md_rng_below(&r, 9) - 4, dy = (int)md_rng_below(&r, 9) - 4;
        bool flip = md_rng_below(&r, 2);
        memcpy(tmp, x, sizeof(float) * (size_t)n);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < S; y++)
                for (int xx = 0; xx < S; xx++) {
                    int sx = (flip ? S - 1 - xx : xx) + dx, sy = y + dy;
                    sx = sx < 0 ? 0 : sx >= S ? S - 1 : sx;
                    sy = sy < 0 ? 0 : sy >= S ? S - 1 : sy;
                    x[(c * S + y) * S + xx] = tmp[(c * S + sy) * S + sx];
                }
    }
    float sigma = md_rng_uniform(&r) * (kind == MD_WORLD_AUDIO ? 0.05f : 0.06f);
    if (sigma > 0.f) {
        uint64_t k2 = md_rng_split(&r);
        for (int64_t i = 0; i < n; i++)
            x[i] += sigma * md_rand_normal_at(k2, (uint64_t)i);
    }
}

md_status md_judge_train(md_judge *j, const md_world *w, const md_judge_train_opts *o)
{
    if (o->steps < 1 || o->batch < 1 || !(o->lr > 0.f)) {
        md_log(MD_LOG_ERROR, "judge training: steps, batch and lr must be positive");
        return MD_ERR_INVALID;
    }
    if (j->kind == MD_WORLD_VIDEO) {
        md_log(MD_LOG_ERROR, "judge training: the video judge is the image judge read over frames; train the "
                             "image judge and make the video judge from it (md_judge_video_from_image)");
        return MD_ERR_INVALID;
    }
    const int B = o->batch;
    const int64_t isz = md_judge_input_size(j->kind);
    md_adamw opt;
    md_status st = md_adamw_init(&opt, j->ps, 0.9f, 0.999f, 1e-8f, 1e-4f);
    if (st != MD_OK)
        return st;
    md_graph *g = md_graph_new((size_t)1 << 26);
    float *x = malloc(sizeof(float) * (size_t)(isz * B));
    float *tmp = malloc(sizeof(float) * (size_t)(isz * md_threads_get()));
    uint8_t *scratch = malloc((size_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3 * (size_t)md_threads_get());
    int32_t *tg = malloc(sizeof(int32_t) * (size_t)(B * MD_ATTR_COUNT));
    if (!g || !x || !tmp || !scratch || !tg) {
        st = MD_ERR_ALLOC;
        goto done;
    }
    md_graph_set_seed(g, o->seed);
    const size_t vsz = (size_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3;
    for (int64_t step = 0; step < o->steps; step++) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(md_threads_get())
        for (int b = 0; b < B; b++) {
            int tid = omp_get_thread_num();
            md_world_sample s;
            int64_t idx = step * B + b;
            if (md_world_draw_any(w, o->seed, MD_SPLIT_TRAIN, j->kind, idx, &s) != MD_OK ||
                md_judge_prep_sample(w, &s, scratch + vsz * (size_t)tid, x + isz * b) != MD_OK) {
                bad = 1;
                continue;
            }
            augment(j->kind, &s, md_hash64(o->seed * 0x9e37ull + (uint64_t)idx), x + isz * b, tmp + isz * tid);
            for (int a = 0; a < MD_ATTR_COUNT; a++)
                tg[a * B + b] = s.attr[a];
        }
        if (bad) {
            st = MD_ERR;
            break;
        }
        md_graph_reset(g);
        md_paramset_zero_grad(j->ps);
        md_tensor *xt = md_tensor_wrap(g, MD_F32, x, 4, (int64_t[]){B, j->cin, j->h, j->w});
        md_tensor *logits[MD_ATTR_COUNT];
        md_judge_forward(g, j, xt, logits);
        md_tensor *loss = NULL;
        for (int a = 0; a < MD_ATTR_COUNT; a++) {
            if (!logits[a])
                continue;
            md_tensor *t = md_tensor_wrap(g, MD_I32, tg + a * B, 1, (int64_t[]){B});
            bool any = false;
            for (int b = 0; b < B; b++)
                any |= tg[a * B + b] >= 0;
            if (!any)
                continue;
            md_tensor *l = md_cross_entropy(g, logits[a], t, 0.f, -1);
            loss = loss ? md_add(g, loss, l) : l;
        }
        md_graph_backward(g, loss);
        md_paramset_finish_grads(j->ps);
        md_clip_grad_norm(j->ps, 2.0f);
        md_adamw_step(&opt, md_lr_warmup_cosine(step, o->steps * 3 / 100 + 1, o->steps, o->lr, o->lr * 0.05f));
        if (o->progress)
            o->progress(step, o->steps, loss->data[0], o->user);
    }
done:
    if (g && getenv("MEDLEY_PROFILE"))
        md_graph_profile_print(g, stderr);
    free(tg);
    free(scratch);
    free(tmp);
    free(x);
    md_graph_free(g);
    md_adamw_free(&opt);
    return st;
}

md_status md_judge_video_from_image(md_judge *video, const md_judge *image)
{
    if (image->kind != MD_WORLD_IMAGE) {
        md_log(MD_LOG_ERROR, "judge: the video judge is made from an image judge");
        return MD_ERR_INVALID;
    }
    md_status st = md_judge_init(video, MD_WORLD_VIDEO, 0);
    if (st != MD_OK)
        return st;
    MD_ASSERT(md_paramset_numel(video->ps) == md_paramset_numel(image->ps));
    memcpy(md_paramset_values(video->ps), md_paramset_values(image->ps),
           sizeof(float) * (size_t)md_paramset_numel(image->ps));
    return MD_OK;
}

/* ---- evaluation ---- */

md_status md_judge_evaluate(const md_judge *j, const md_world *w, md_world_split split, uint64_t seed,
                            int64_t count, md_judge_eval *out)
{
    memset(out, 0, sizeof *out);
    double t0 = md_time_now();
    int64_t items = md_world_enumerate_count(w, split, j->kind);
    bool enumerate = j->kind != MD_WORLD_VIDEO;
    int64_t n = enumerate ? (count > 0 && count < items ? count : items) : count;
    if (n < 1) {
        md_log(MD_LOG_ERROR, "judge evaluation: nothing to evaluate (count %lld)", (long long)count);
        return MD_ERR_INVALID;
    }
    const int64_t isz = md_judge_input_size(j->kind), CH = 256;
    const size_t vsz = (size_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3;
    float *x = malloc(sizeof(float) * (size_t)(isz * CH));
    md_world_sample *ss = malloc(sizeof *ss * (size_t)CH);
    int(*got)[MD_ATTR_COUNT] = malloc(sizeof *got * (size_t)CH);
    uint8_t *scratch = malloc(vsz * (size_t)md_threads_get());
    md_graph *g = md_graph_new((size_t)1 << 24);
    md_status st = MD_OK;
    if (!x || !ss || !got || !scratch || !g) {
        st = MD_ERR_ALLOC;
        goto done;
    }
    for (int64_t c0 = 0; c0 < n && st == MD_OK; c0 += CH) {
        int64_t nc = n - c0 < CH ? n - c0 : CH;
        volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 4) num_threads(md_threads_get())
        for (int64_t i = 0; i < nc; i++) {
            int64_t k = c0 + i;
            md_status s2 = enumerate ? md_world_draw_item(w, seed, split, j->kind, n < items ? k * items / n : k, &ss[i])
                                     : md_world_draw(w, seed, split, j->kind, k, &ss[i]);
            if (s2 != MD_OK || md_judge_prep_sample(w, &ss[i], scratch + vsz * (size_t)omp_get_thread_num(), x + isz * i) != MD_OK)
                bad = 1;
        }
        if (bad) {
            st = MD_ERR;
            break;
        }
        md_judge_read(j, g, x, nc, got, NULL);
        for (int64_t i = 0; i < nc; i++) {
            out->n++;
            for (int a = 0; a < MD_ATTR_COUNT; a++) {
                if (!md_judge_reads(j->kind, (md_attr)a) || ss[i].attr[a] < 0)
                    continue;
                out->asked[a]++;
                out->right[a] += got[i][a] == ss[i].attr[a];
            }
            if (j->kind == MD_WORLD_IMAGE) {
                bool ok = got[i][MD_ATTR_DIGIT] == ss[i].attr[MD_ATTR_DIGIT];
                if (ss[i].attr[MD_ATTR_STYLE] == 1) {
                    out->photo_n++;
                    out->photo_right += ok;
                } else {
                    out->hand_n++;
                    out->hand_right += ok;
                }
            }
        }
    }
done:
    out->seconds = md_time_now() - t0;
    md_graph_free(g);
    free(scratch);
    free(got);
    free(ss);
    free(x);
    return st;
}
