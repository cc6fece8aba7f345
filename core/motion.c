/* motion.c — see motion.h. */
#include "motion.h"
#include "bpe.h"
#include "caption.h"
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

#define VERSION 1
#define S MD_WORLD_SIZE
#define T MD_WORLD_FRAMES
#define HW (S * S)
#define D MD_SPACE_DIM
#define IN (D + MD_MOTION_TEXT)

/* ---- the model ---- */

md_status md_motion_init(md_motion *m, int k, int hidden, int vocab, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    if (k < 2 || k > MD_MOTION_MAX_PATHS || hidden < 8 || hidden > 4096 || vocab < 1 || vocab > 65536) {
        md_log(MD_LOG_ERROR, "motion model: %d paths, width %d, %d text tokens; 2..%d paths, a width of 8..4096 "
                             "and 1..65536 tokens are allowed", k, hidden, vocab, MD_MOTION_MAX_PATHS);
        return MD_ERR_INVALID;
    }
    m->k = k;
    m->hidden = hidden;
    m->vocab = vocab;
    md_paramset *ps = m->ps = md_paramset_new();
    if (!ps)
        return MD_ERR_ALLOC;
    m->wt = md_param_add(ps, "text.weight", 2, (int64_t[]){MD_MOTION_TEXT, vocab});
    m->w1 = md_param_add(ps, "fc1.weight", 2, (int64_t[]){hidden, IN});
    m->b1 = md_param_add(ps, "fc1.bias", 1, (int64_t[]){hidden});
    m->w2 = md_param_add(ps, "fc2.weight", 2, (int64_t[]){hidden, hidden});
    m->b2 = md_param_add(ps, "fc2.bias", 1, (int64_t[]){hidden});
    m->w3 = md_param_add(ps, "out.weight", 2, (int64_t[]){k, hidden});
    m->b3 = md_param_add(ps, "out.bias", 1, (int64_t[]){k});
    md_status st = md_paramset_alloc(ps);
    if (st != MD_OK) {
        md_motion_free(m);
        return st;
    }
    md_init_normal(m->wt, seed * 13 + 4, 0.f, 1.f);
    md_init_uniform(m->w1, seed * 13 + 1, -sqrtf(3.f / IN), sqrtf(3.f / IN));
    md_init_uniform(m->w2, seed * 13 + 2, -sqrtf(3.f / (float)hidden), sqrtf(3.f / (float)hidden));
    md_init_normal(m->w3, seed * 13 + 3, 0.f, 0.01f);
    md_init_const(m->b1, 0.f);
    md_init_const(m->b2, 0.f);
    md_init_const(m->b3, 0.f);
    return MD_OK;
}

void md_motion_free(md_motion *m)
{
    if (m->ps)
        md_paramset_free(m->ps);
    memset(m, 0, sizeof *m);
}

md_status md_motion_save(const md_motion *m, const char *path, const char *recipe_json, const char *data_hash)
{
    char ver[16], wver[16];
    snprintf(ver, sizeof ver, "%d", VERSION);
    snprintf(wver, sizeof wver, "%d", MD_WORLD_VERSION);
    md_json_buf b;
    md_json_buf_init(&b);
    md_json_buf_begin_object(&b);
    md_json_buf_key(&b, "k");
    md_json_buf_num(&b, m->k);
    md_json_buf_key(&b, "hidden");
    md_json_buf_num(&b, m->hidden);
    md_json_buf_key(&b, "vocab");
    md_json_buf_num(&b, m->vocab);
    md_json_buf_key(&b, "paths");
    md_json_buf_begin_array(&b);
    for (int i = 0; i < m->k * MD_MOTION_PATH; i++)
        md_json_buf_num(&b, roundf(m->paths[i] * 1000.f) / 1000.f);
    md_json_buf_end_array(&b);
    md_json_buf_end_object(&b);
    char *cfg = md_json_buf_finish(&b, NULL);
    if (!cfg)
        return MD_ERR_ALLOC;
    const char *keys[] = {"medley.model", "medley.version", "motion.config", "world.version", "data.hash",
                          "train.recipe"};
    const char *vals[] = {MD_MOTION_MODEL, ver, cfg, wver, data_hash ? data_hash : "",
                          recipe_json ? recipe_json : "{}"};
    md_status st = md_st_save_paramset(path, m->ps, MD_F16, 6, keys, vals);
    free(cfg);
    return st;
}

md_status md_motion_load(md_motion *m, const char *path)
{
    memset(m, 0, sizeof *m);
    md_st_file *f;
    md_status st = md_st_open(path, &f);
    if (st != MD_OK)
        return st;
    st = md_st_check_model(f, path, MD_MOTION_MODEL, "motion model", VERSION, "medley train motion");
    int64_t k = 0, hidden = 0, vocab = 0;
    float paths[MD_MOTION_MAX_PATHS * MD_MOTION_PATH];
    if (st == MD_OK) {
        const char *js = md_st_meta(f, "motion.config");
        md_json_doc *doc = NULL;
        const md_json *root = NULL, *arr = NULL;
        bool ok = js && md_json_parse(js, strlen(js), path, &doc) == MD_OK;
        if (ok) {
            root = md_json_root(doc);
            arr = md_json_get(root, "paths");
            ok = md_json_int(md_json_get(root, "k"), &k) && md_json_int(md_json_get(root, "hidden"), &hidden) &&
                 md_json_int(md_json_get(root, "vocab"), &vocab) && vocab >= 1 && vocab <= 65536 &&
                 k >= 2 && k <= MD_MOTION_MAX_PATHS && hidden >= 8 && hidden <= 4096 &&
                 md_json_type_of(arr) == MD_JSON_ARRAY && md_json_len(arr) == (size_t)(k * MD_MOTION_PATH);
        }
        for (int64_t i = 0; ok && i < k * MD_MOTION_PATH; i++) {
            double v;
            ok = md_json_num(md_json_at(arr, (size_t)i), &v) && isfinite(v) && fabs(v) <= 2.0 * S;
            paths[i] = (float)v;
        }
        if (!ok) {
            md_log(MD_LOG_ERROR, "%s: the motion model has no readable motion.config (k, hidden, vocab and k "
                                 "paths of %d numbers, each within ±%d pixels)", path, MD_MOTION_PATH, 2 * S);
            st = MD_ERR_FORMAT;
        }
        md_json_free(doc);
    }
    md_st_close(f);
    if (st != MD_OK)
        return st;
    if ((st = md_motion_init(m, (int)k, (int)hidden, (int)vocab, 0)) != MD_OK)
        return st;
    memcpy(m->paths, paths, sizeof(float) * (size_t)(k * MD_MOTION_PATH));
    if ((st = md_st_load_paramset(path, m->ps)) != MD_OK)
        md_motion_free(m);
    return st;
}

md_tensor *md_motion_forward(md_graph *g, const md_motion *m, md_tensor *cond, md_tensor *bag)
{
    md_tensor *x = md_concat(g, (md_tensor *[]){cond, md_linear(g, bag, m->wt, NULL)}, 2, 1);
    x = md_silu(g, md_linear(g, x, m->w1, m->b1));
    x = md_silu(g, md_linear(g, x, m->w2, m->b2));
    return md_linear(g, x, m->w3, m->b3);
}

/* ---- frames ---- */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The box of the foreground kept (fg at least a third of top): the
 * union of its 8-connected parts that do not touch the frame's edge and
 * hold at least a tenth of the largest such part's weight — a decoder's
 * faint seams along the edge are not the subject. When every part touches
 * the edge, all of them. */
static void fg_box(const float *fg, float top, int box[4])
{
    int16_t lab[HW], stack[HW];
    double mass[HW / 2 + 1];
    int bx[HW / 2 + 1][4];
    bool edge[HW / 2 + 1];
    int n = 0;
    for (int i = 0; i < HW; i++)
        lab[i] = -1;
    for (int i = 0; i < HW; i++) {
        if (lab[i] >= 0 || fg[i] * 3.f < top || n > HW / 2)
            continue;
        int sp = 0;
        stack[sp++] = (int16_t)i;
        lab[i] = (int16_t)n;
        mass[n] = 0;
        edge[n] = false;
        bx[n][0] = bx[n][1] = S;
        bx[n][2] = bx[n][3] = -1;
        while (sp > 0) {
            const int q = stack[--sp], x = q % S, y = q / S;
            mass[n] += fg[q];
            edge[n] |= x == 0 || y == 0 || x == S - 1 || y == S - 1;
            bx[n][0] = x < bx[n][0] ? x : bx[n][0];
            bx[n][1] = y < bx[n][1] ? y : bx[n][1];
            bx[n][2] = x > bx[n][2] ? x : bx[n][2];
            bx[n][3] = y > bx[n][3] ? y : bx[n][3];
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    const int nx = x + dx, ny = y + dy, r = ny * S + nx;
                    if (nx >= 0 && nx < S && ny >= 0 && ny < S && lab[r] < 0 && fg[r] * 3.f >= top) {
                        lab[r] = (int16_t)n;
                        stack[sp++] = (int16_t)r;
                    }
                }
        }
        n++;
    }
    bool inner = false;
    double most = 0;
    for (int k = 0; k < n; k++)
        inner |= !edge[k];
    for (int k = 0; k < n; k++)
        if (!inner || !edge[k])
            most = mass[k] > most ? mass[k] : most;
    box[0] = box[1] = S;
    box[2] = box[3] = -1;
    for (int k = 0; k < n; k++) {
        if ((inner && edge[k]) || mass[k] < 0.1 * most)
            continue;
        box[0] = bx[k][0] < box[0] ? bx[k][0] : box[0];
        box[1] = bx[k][1] < box[1] ? bx[k][1] : box[1];
        box[2] = bx[k][2] > box[2] ? bx[k][2] : box[2];
        box[3] = bx[k][3] > box[3] ? bx[k][3] : box[3];
    }
}

void md_motion_frame(const float *frame, float bg[3], int box[4], float centre[2])
{
    float border[4 * S];
    for (int c = 0; c < 3; c++) {
        const float *x = frame + (size_t)c * HW;
        int n = 0;
        for (int i = 0; i < S; i++) {
            border[n++] = x[i];
            border[n++] = x[(S - 1) * S + i];
            if (i > 0 && i < S - 1) {
                border[n++] = x[i * S];
                border[n++] = x[i * S + S - 1];
            }
        }
        qsort(border, (size_t)n, sizeof(float), cmp_float);
        bg[c] = 0.5f * (border[(n - 1) / 2] + border[n / 2]);
    }
    /* foreground: the largest channel distance from the background, kept
     * where it is at least a third of the frame's largest */
    float fg[HW], top = 0.f;
    for (int i = 0; i < HW; i++) {
        float d = 0.f;
        for (int c = 0; c < 3; c++) {
            float e = fabsf(frame[(size_t)c * HW + i] - bg[c]);
            d = e > d ? e : d;
        }
        fg[i] = d;
        top = d > top ? d : top;
    }
    double sw = 0, sx = 0, sy = 0;
    for (int i = 0; top > 0.05f && i < HW; i++) {
        if (fg[i] * 3.f < top)
            continue;
        sw += fg[i];
        sx += fg[i] * (double)(i % S);
        sy += fg[i] * (double)(i / S);
    }
    if (box) {
        if (sw > 0)
            fg_box(fg, top, box);
        else {   /* nothing drawn: the whole frame */
            box[0] = box[1] = 0;
            box[2] = box[3] = S - 1;
        }
    }
    if (centre) {
        centre[0] = sw > 0 ? (float)(sx / sw) : S * 0.5f - 0.5f;
        centre[1] = sw > 0 ? (float)(sy / sw) : S * 0.5f - 0.5f;
    }
}

void md_motion_measure(const float *frames, int n, float *path)
{
    float bg[3], c0[2], c[2];
    md_motion_frame(frames, bg, NULL, c0);
    path[0] = path[1] = 0.f;
    for (int t = 1; t < n; t++) {
        md_motion_frame(frames + (size_t)t * 3 * HW, bg, NULL, c);
        path[2 * t] = c[0] - c0[0];
        path[2 * t + 1] = c[1] - c0[1];
    }
}

/* The whole-pixel shift of frame 0 that keeps its foreground box [lo, hi]
 * at least a pixel inside the frame along a path spanning [pmin, pmax]:
 * the smallest that does, or centred when none can. */
static int fit_shift(int lo, int hi, float pmin, float pmax)
{
    const float a = 1.f - (float)lo - pmin, b = (float)(S - 2 - hi) - pmax;   /* allowed: [a, b] */
    float o = a > b ? 0.5f * (a + b) : a > 0.f ? a : b < 0.f ? b : 0.f;
    return (int)(o >= 0.f ? ceilf(o - 1e-4f) : floorf(o + 1e-4f));
}

void md_motion_apply(const float *frame0, const float *path, float *frames)
{
    float bg[3], f0[3 * HW];
    int box[4];
    memcpy(f0, frame0, sizeof f0);   /* frames may begin at frame0 */
    md_motion_frame(f0, bg, box, NULL);
    float lo[2] = {0.f, 0.f}, hi[2] = {0.f, 0.f};
    for (int t = 0; t < T; t++)
        for (int a = 0; a < 2; a++) {
            lo[a] = fminf(lo[a], path[2 * t + a]);
            hi[a] = fmaxf(hi[a], path[2 * t + a]);
        }
    const int ox = fit_shift(box[0], box[2], lo[0], hi[0]), oy = fit_shift(box[1], box[3], lo[1], hi[1]);
    for (int t = 0; t < T; t++) {
        float *out = frames + (size_t)t * 3 * HW;
        /* out(x, y) = f0(x - dx, y - dy), bilinear; outside: background */
        const float dx = path[2 * t] + (float)ox, dy = path[2 * t + 1] + (float)oy;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                const float sx = (float)x - dx, sy = (float)y - dy;
                const int x0 = (int)floorf(sx), y0 = (int)floorf(sy);
                const float fx = sx - (float)x0, fy = sy - (float)y0;
                const float wts[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
                const int xs[4] = {x0, x0 + 1, x0, x0 + 1}, ys[4] = {y0, y0, y0 + 1, y0 + 1};
                for (int c = 0; c < 3; c++) {
                    float v = 0.f;
                    for (int q = 0; q < 4; q++) {
                        bool in = xs[q] >= 0 && xs[q] < S && ys[q] >= 0 && ys[q] < S;
                        v += wts[q] * (in ? f0[(size_t)c * HW + ys[q] * S + xs[q]] : bg[c]);
                    }
                    out[(size_t)c * HW + y * S + x] = v;
                }
            }
    }
}

md_status md_motion_move(const md_motion *m, md_graph *g, const md_bpe *bpe, const float *cond, const char *text,
                         float temperature, uint64_t seed, float *frames)
{
    float path[MD_MOTION_PATH];
    int32_t ids[MD_MOTION_TEXT_IDS];
    size_t nids = text ? md_bpe_encode(bpe, text, strlen(text), ids, MD_MOTION_TEXT_IDS) : 0;
    md_status st = md_motion_draw(m, g, cond, ids, (int)(nids < MD_MOTION_TEXT_IDS ? nids : MD_MOTION_TEXT_IDS),
                                  temperature, seed, path, NULL);
    if (st == MD_OK)
        md_motion_apply(frames, path, frames);
    return st;
}

/* Softmax of logits at temperature (0: argmax), then the prototype the
 * uniform u falls in. */
static int pick(const float *logits, int k, float temperature, float u)
{
    int best = 0;
    for (int i = 1; i < k; i++)
        if (logits[i] > logits[best])
            best = i;
    if (!(temperature > 0.f))
        return best;
    double p[MD_MOTION_MAX_PATHS], sum = 0;
    for (int i = 0; i < k; i++)
        sum += p[i] = exp((double)(logits[i] - logits[best]) / temperature);
    double acc = 0, target = (double)u * sum;
    for (int i = 0; i < k; i++)
        if ((acc += p[i]) > target)
            return i;
    return best;
}

void md_motion_bag(const md_motion *m, const int32_t *ids, int n, float *bag)
{
    memset(bag, 0, sizeof(float) * (size_t)m->vocab);
    int in = 0;
    for (int i = 0; i < n; i++)
        in += ids[i] >= 0 && ids[i] < m->vocab;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < m->vocab)
            bag[ids[i]] += 1.f / (float)in;
}

md_status md_motion_draw(const md_motion *m, md_graph *g, const float *cond, const int32_t *ids, int nids,
                         float temperature, uint64_t seed, float *path, int *which)
{
    if (!(temperature >= 0.f) || !isfinite(temperature)) {
        md_log(MD_LOG_ERROR, "motion model: temperature %g; 0 or more is allowed", (double)temperature);
        return MD_ERR_INVALID;
    }
    float c[D];
    memcpy(c, cond, sizeof c);
    md_graph_reset(g);
    md_tensor *ct = md_tensor_wrap(g, MD_F32, c, 2, (int64_t[]){1, D});
    md_tensor *bt = md_tensor_new2(g, 1, m->vocab);
    if (!bt) {
        md_graph_reset(g);
        return MD_ERR_ALLOC;
    }
    md_motion_bag(m, ids, ids ? nids : 0, bt->data);
    md_tensor *lg = md_motion_forward(g, m, ct, bt);
    if (!lg) {
        md_graph_reset(g);
        return MD_ERR;
    }
    int k = pick(lg->data, m->k, temperature, md_rand_uniform_at(md_hash64(seed ^ 0x6d6f74696f6eull), 0));
    md_graph_reset(g);
    memcpy(path, m->paths + (size_t)k * MD_MOTION_PATH, sizeof(float) * MD_MOTION_PATH);
    if (which)
        *which = k;
    return MD_OK;
}

/* ---- training ---- */

void md_motion_train_default_opts(md_motion_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 3000;
    o->batch = 128;
    o->lr = 2e-3f;
    o->corpus = 6000;
    o->k = 24;
    o->hidden = 256;
    o->drop_cond = 0.1f;
    o->seed = 1;
}

#define NCAP 2      /* captions embedded per video */
#define MAXIDS 64   /* tokens kept of a caption */

typedef struct mo_corpus {
    int n;
    md_world_sample *s;
    float *path;                     /* [n, 32] */
    float *cap, *digit, *vemb, *aemb;   /* [n, NCAP, D], [n, D] x3 */
    uint8_t *says;                   /* [n]: the first caption states the motion */
    int32_t *ids;                    /* [n, NCAP + 1, MAXIDS]: the captions' and the digit caption's tokens */
    uint8_t *nids;                   /* [n, NCAP + 1] */
} mo_corpus;

static void mo_free(mo_corpus *c)
{
    free(c->ids); free(c->nids); free(c->says); free(c->s); free(c->path);
    free(c->cap); free(c->digit); free(c->vemb); free(c->aemb);
    memset(c, 0, sizeof *c);
}

#define CHUNK 64

/* Draws and renders n videos of a split, measures their paths, and
 * embeds their captions, a digit-only caption, the video and its sound. */
static md_status mo_build(mo_corpus *c, const md_space *sp, const md_world *w, md_world_split split, int n,
                          uint64_t seed, const md_motion_train_opts *o)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    const int64_t vsz = md_space_input_size(MD_MOD_VIDEO), asz = md_space_input_size(MD_MOD_AUDIO);
    const int th = md_threads_get();
    const size_t fsz = (size_t)HW * 3;
    c->s = malloc(sizeof *c->s * (size_t)n);
    c->says = malloc((size_t)n);
    c->ids = malloc(sizeof(int32_t) * MAXIDS * (NCAP + 1) * (size_t)n);
    c->nids = malloc((size_t)(NCAP + 1) * (size_t)n);
    c->path = malloc(sizeof(float) * MD_MOTION_PATH * (size_t)n);
    c->cap = malloc(sizeof(float) * D * NCAP * (size_t)n);
    c->digit = malloc(sizeof(float) * D * (size_t)n);
    c->vemb = malloc(sizeof(float) * D * (size_t)n);
    c->aemb = malloc(sizeof(float) * D * (size_t)n);
    float *vx = malloc(sizeof(float) * (size_t)(vsz * CHUNK));
    float *ax = malloc(sizeof(float) * (size_t)(asz * CHUNK));
    uint8_t *frames = malloc(fsz * T * (size_t)th);
    float *ff = malloc(sizeof(float) * fsz * T * (size_t)th);
    float *audio = malloc(sizeof(float) * MD_WORLD_AUDIO_SAMPLES * (size_t)th);
    char(*texts)[MD_CAPTION_MAX] = malloc(sizeof *texts * (size_t)CHUNK * (NCAP + 1));
    const char **tp = malloc(sizeof *tp * (size_t)CHUNK * (NCAP + 1));
    float *temb = malloc(sizeof(float) * D * CHUNK * (NCAP + 1));
    md_graph *g = md_graph_new((size_t)1 << 26);
    md_status st = c->s && c->says && c->ids && c->nids && c->path && c->cap && c->digit && c->vemb && c->aemb &&
                           vx && ax && frames && ff && audio && texts && tp && temb && g
                       ? MD_OK
                       : MD_ERR_ALLOC;
    for (int i0 = 0; i0 < n && st == MD_OK; i0 += CHUNK) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        const int nb = n - i0 < CHUNK ? n - i0 : CHUNK;
        volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(th)
        for (int b = 0; b < nb; b++) {
            md_world_sample *s = &c->s[i0 + b];
            const int me = omp_get_thread_num();
            uint8_t *fr = frames + fsz * T * (size_t)me;
            float *fl = ff + fsz * T * (size_t)me;
            float *au = audio + MD_WORLD_AUDIO_SAMPLES * (size_t)me;
            if (md_world_draw(w, seed, split, MD_WORLD_VIDEO, i0 + b, s) != MD_OK) {
                bad = 1;
                continue;
            }
            md_world_render_video(w, s, fr, au);
            for (int t = 0; t < T; t++)   /* HWC u8 -> CHW [-1, 1] */
                for (int i = 0; i < HW; i++)
                    for (int ch = 0; ch < 3; ch++)
                        fl[fsz * (size_t)t + (size_t)ch * HW + i] = (float)fr[fsz * (size_t)t + (size_t)i * 3 + ch] *
                                                                        (2.f / 255.f) - 1.f;
            md_motion_measure(fl, T, c->path + (size_t)(i0 + b) * MD_MOTION_PATH);
            md_judge_prep_frames(fr, vx + vsz * b);
            if (md_judge_prep_audio(au, ax + asz * b) != MD_OK)
                bad = 1;
        }
        if (bad) {
            md_log(MD_LOG_ERROR, "motion model: drawing or rendering a video of the corpus failed");
            st = MD_ERR;
            break;
        }
        int nt = 0;
        for (int b = 0; b < nb && st == MD_OK; b++) {
            const md_world_sample *s = &c->s[i0 + b];
            uint64_t key = md_hash64(seed * 0x9e3779b97f4a7c15ull + (uint64_t)(i0 + b));
            for (int q = 0; q < NCAP && st == MD_OK; q++) {
                int stated[MD_ATTR_COUNT];
                st = md_caption_make(s, (int)(md_hash64(key + (uint64_t)q) % 1000), texts[nt++], MD_CAPTION_MAX,
                                     stated);
                if (q == 0)
                    c->says[i0 + b] = stated[MD_ATTR_MOTION] >= 0;
            }
            if (st == MD_OK)
                st = md_caption_digit((md_world_kind)(md_hash64(key + 7) % 3), s->attr[MD_ATTR_DIGIT],
                                      md_hash64(key + 8), texts[nt++], MD_CAPTION_MAX);
        }
        for (int i = 0; i < nt; i++) {
            tp[i] = texts[i];
            size_t q = (size_t)i0 * (NCAP + 1) + (size_t)i;
            size_t k = md_bpe_encode(sp->bpe, texts[i], strlen(texts[i]), c->ids + q * MAXIDS, MAXIDS);
            c->nids[q] = (uint8_t)(k < MAXIDS ? k : MAXIDS);
        }
        if (st == MD_OK)
            st = md_space_embed(sp, g, MD_MOD_TEXT, tp, nt, temb);
        for (int b = 0; b < nb && st == MD_OK; b++) {
            memcpy(c->cap + (size_t)(i0 + b) * NCAP * D, temb + (size_t)b * (NCAP + 1) * D, sizeof(float) * NCAP * D);
            memcpy(c->digit + (size_t)(i0 + b) * D, temb + ((size_t)b * (NCAP + 1) + NCAP) * D, sizeof(float) * D);
        }
        if (st == MD_OK)
            st = md_space_embed(sp, g, MD_MOD_VIDEO, vx, nb, c->vemb + (size_t)i0 * D);
        if (st == MD_OK)
            st = md_space_embed(sp, g, MD_MOD_AUDIO, ax, nb, c->aemb + (size_t)i0 * D);
        if (o->progress && st == MD_OK)
            o->progress(split == MD_SPLIT_TRAIN ? "videos" : "validation videos", i0 + nb, n, 0.f, o->user);
    }
    md_graph_free(g);
    free(vx); free(ax); free(frames); free(ff); free(audio); free(texts); free(tp); free(temb);
    if (st != MD_OK)
        mo_free(c);
    return st;
}

static double dist2(const float *a, const float *b)
{
    double s = 0;
    for (int i = 0; i < MD_MOTION_PATH; i++)
        s += (double)(a[i] - b[i]) * (a[i] - b[i]);
    return s;
}

static int nearest(const md_motion *m, const float *p)
{
    int best = 0;
    double bd = INFINITY;
    for (int j = 0; j < m->k; j++) {
        double d = dist2(p, m->paths + (size_t)j * MD_MOTION_PATH);
        if (d < bd) {
            bd = d;
            best = j;
        }
    }
    return best;
}

/* k-means over the corpus's paths (k-means++ seeding, 40 rounds) into
 * m->paths; lab [n] the nearest prototype of each. */
static void kmeans(md_motion *m, const mo_corpus *c, uint64_t seed, int *lab)
{
    const int n = c->n, k = m->k;
    md_rng r;
    md_rng_init(&r, seed * 5 + 11);
    double *dmin = malloc(sizeof(double) * (size_t)n);
    memcpy(m->paths, c->path + (size_t)md_rng_below(&r, (uint32_t)n) * MD_MOTION_PATH, sizeof(float) * MD_MOTION_PATH);
    for (int i = 0; i < n; i++)
        dmin[i] = dist2(c->path + (size_t)i * MD_MOTION_PATH, m->paths);
    for (int j = 1; j < k; j++) {
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += dmin[i];
        double u = md_rng_uniform(&r) * sum, acc = 0;
        int pickd = n - 1;
        for (int i = 0; i < n; i++)
            if ((acc += dmin[i]) > u) {
                pickd = i;
                break;
            }
        float *pj = m->paths + (size_t)j * MD_MOTION_PATH;
        memcpy(pj, c->path + (size_t)pickd * MD_MOTION_PATH, sizeof(float) * MD_MOTION_PATH);
        for (int i = 0; i < n; i++) {
            double d = dist2(c->path + (size_t)i * MD_MOTION_PATH, pj);
            dmin[i] = d < dmin[i] ? d : dmin[i];
        }
    }
    double *sum = malloc(sizeof(double) * (size_t)k * MD_MOTION_PATH);
    int *cnt = malloc(sizeof(int) * (size_t)k);
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < n; i++)
            lab[i] = nearest(m, c->path + (size_t)i * MD_MOTION_PATH);
        memset(sum, 0, sizeof(double) * (size_t)k * MD_MOTION_PATH);
        memset(cnt, 0, sizeof(int) * (size_t)k);
        for (int i = 0; i < n; i++) {
            cnt[lab[i]]++;
            for (int q = 0; q < MD_MOTION_PATH; q++)
                sum[(size_t)lab[i] * MD_MOTION_PATH + q] += c->path[(size_t)i * MD_MOTION_PATH + q];
        }
        for (int j = 0; j < k; j++)
            if (cnt[j] > 0)
                for (int q = 0; q < MD_MOTION_PATH; q++)
                    m->paths[(size_t)j * MD_MOTION_PATH + q] = (float)(sum[(size_t)j * MD_MOTION_PATH + q] / cnt[j]);
    }
    for (int i = 0; i < n; i++)
        lab[i] = nearest(m, c->path + (size_t)i * MD_MOTION_PATH);
    free(dmin);
    free(sum);
    free(cnt);
}

/* The world's five motions read from a path: a rise of more than 6 px
 * that comes back is a bounce (4); else the larger net travel, left (0),
 * right (1), up (2) or down (3). */
static int path_kind(const float *p)
{
    float ymin = 0.f, dx = p[MD_MOTION_PATH - 2], dy = p[MD_MOTION_PATH - 1];
    for (int t = 0; t < T; t++)
        ymin = p[2 * t + 1] < ymin ? p[2 * t + 1] : ymin;
    if (-ymin > 6.f && dy - ymin > 6.f)
        return 4;
    if (fabsf(dx) >= fabsf(dy))
        return dx < 0.f ? 0 : 1;
    return dy < 0.f ? 2 : 3;
}

/* Logits for n rows of conditions (kind: 0 caption, 1 video, 2 none):
 * the share whose likeliest prototype is the row's nearest, and the share
 * whose likeliest prototype moves as the video does (kind 0: among the
 * captions that state the motion). */
static md_status read_back(const md_motion *m, const mo_corpus *c, int kind, md_graph *g, double *share,
                           double *moves)
{
    float *cond = malloc(sizeof(float) * D * (size_t)c->n);
    float *bag = malloc(sizeof(float) * (size_t)m->vocab * (size_t)c->n);
    if (!cond || !bag) {
        free(cond);
        free(bag);
        return MD_ERR_ALLOC;
    }
    for (int i = 0; i < c->n; i++) {
        float *cv = cond + (size_t)i * D;
        const size_t q = (size_t)i * (NCAP + 1);
        if (kind == 0)
            memcpy(cv, c->cap + (size_t)i * NCAP * D, sizeof(float) * D);
        else if (kind == 1)
            memcpy(cv, c->vemb + (size_t)i * D, sizeof(float) * D);
        else
            memset(cv, 0, sizeof(float) * D);
        md_motion_bag(m, c->ids + q * MAXIDS, kind == 0 ? c->nids[q] : 0, bag + (size_t)i * (size_t)m->vocab);
    }
    md_graph_reset(g);
    md_tensor *ct = md_tensor_wrap(g, MD_F32, cond, 2, (int64_t[]){c->n, D});
    md_tensor *bt = md_tensor_wrap(g, MD_F32, bag, 2, (int64_t[]){c->n, m->vocab});
    md_tensor *lg = md_motion_forward(g, m, ct, bt);
    int hit = 0, same = 0, counted = 0;
    for (int i = 0; lg && i < c->n; i++) {
        const float *own = c->path + (size_t)i * MD_MOTION_PATH;
        int k = pick(lg->data + (size_t)i * m->k, m->k, 0.f, 0.f);
        hit += k == nearest(m, own);
        if (kind != 0 || c->says[i]) {
            counted++;
            same += path_kind(m->paths + (size_t)k * MD_MOTION_PATH) == path_kind(own);
        }
    }
    md_graph_reset(g);
    free(cond);
    free(bag);
    *share = lg ? (double)hit / c->n : NAN;
    *moves = lg && counted ? (double)same / counted : NAN;
    return lg ? MD_OK : MD_ERR;
}

md_status md_motion_train(md_motion *m, const md_space *sp, const md_world *w, const md_motion_train_opts *o,
                          md_motion_figures *f)
{
    if (o->steps < 1 || o->batch < 1 || o->corpus < o->k || !(o->lr > 0.f) ||
        !(o->drop_cond >= 0.f && o->drop_cond < 1.f)) {
        md_log(MD_LOG_ERROR, "motion model training: steps >= 1, batch >= 1, a corpus of at least k videos, lr > 0, "
                             "drop_cond in [0, 1)");
        return MD_ERR_INVALID;
    }
    md_status st = md_motion_init(m, o->k, o->hidden, md_bpe_vocab_size(sp->bpe), o->seed);
    if (st != MD_OK)
        return st;
    mo_corpus c, v;
    if ((st = mo_build(&c, sp, w, MD_SPLIT_TRAIN, o->corpus, o->seed, o)) != MD_OK) {
        md_motion_free(m);
        return st;
    }
    memset(&v, 0, sizeof v);
    int *lab = malloc(sizeof(int) * (size_t)c.n);
    const int B = o->batch;
    float *cond = malloc(sizeof(float) * D * (size_t)B);
    float *bag = malloc(sizeof(float) * (size_t)m->vocab * (size_t)B);
    int32_t *tgt = malloc(sizeof(int32_t) * (size_t)B);
    md_graph *g = md_graph_new((size_t)1 << 24);
    md_adamw opt;
    bool have_opt = false;
    st = lab && cond && bag && tgt && g ? MD_OK : MD_ERR_ALLOC;
    if (st == MD_OK) {
        kmeans(m, &c, o->seed, lab);
        st = md_adamw_init(&opt, m->ps, 0.9f, 0.99f, 1e-8f, 0.01f);
        have_opt = st == MD_OK;
    }
    md_rng r;
    md_rng_init(&r, o->seed * 3 + 5);
    for (int64_t step = 0; step < o->steps && st == MD_OK; step++) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        /* conditions as the token transformer's: none, a caption, a
         * digit-only caption, or the video's (or its sound's) embedding */
        for (int b = 0; b < B; b++) {
            const int i = (int)md_rng_below(&r, (uint32_t)c.n);
            float u = md_rng_uniform(&r), *cv = cond + (size_t)b * D;
            const float *src = NULL;
            int text = -1;                   /* which of the sample's texts, if one */
            if (u < o->drop_cond)
                src = NULL;
            else if (u < o->drop_cond + 0.45f) {
                text = (int)md_rng_below(&r, NCAP);
                src = c.cap + ((size_t)i * NCAP + (size_t)text) * D;
            } else if (u < o->drop_cond + 0.6f) {
                text = NCAP;
                src = c.digit + (size_t)i * D;
            } else
                src = (md_rng_uniform(&r) < 0.25f ? c.aemb : c.vemb) + (size_t)i * D;
            if (src)
                memcpy(cv, src, sizeof(float) * D);
            else
                memset(cv, 0, sizeof(float) * D);
            const size_t q = (size_t)i * (NCAP + 1) + (size_t)(text >= 0 ? text : 0);
            md_motion_bag(m, c.ids + q * MAXIDS, text >= 0 ? c.nids[q] : 0, bag + (size_t)b * (size_t)m->vocab);
            tgt[b] = lab[i];
        }
        md_graph_reset(g);
        md_paramset_zero_grad(m->ps);
        md_tensor *ct = md_tensor_wrap(g, MD_F32, cond, 2, (int64_t[]){B, D});
        md_tensor *bt = md_tensor_wrap(g, MD_F32, bag, 2, (int64_t[]){B, m->vocab});
        md_tensor *tt = md_tensor_wrap(g, MD_I32, tgt, 1, (int64_t[]){B});
        md_tensor *loss = md_cross_entropy(g, md_motion_forward(g, m, ct, bt), tt, 0.f, -100);
        if (!loss) {
            st = MD_ERR;
            break;
        }
        md_graph_backward(g, loss);
        md_paramset_finish_grads(m->ps);
        md_clip_grad_norm(m->ps, 1.0f);
        md_adamw_step(&opt, md_lr_warmup_cosine(step, o->steps * 3 / 100 + 1, o->steps, o->lr, o->lr * 0.1f));
        if (o->progress)
            o->progress("training", step, o->steps, loss->data[0], o->user);
    }
    if (st == MD_OK && f) {
        memset(f, 0, sizeof *f);
        double fit = 0;
        for (int i = 0; i < c.n; i++)
            fit += sqrt(dist2(c.path + (size_t)i * MD_MOTION_PATH,
                              m->paths + (size_t)lab[i] * MD_MOTION_PATH) / T);
        f->fit = fit / c.n;
        st = mo_build(&v, sp, w, MD_SPLIT_VAL, 500, o->seed + 1, o);
        f->n = v.n;
        if (st == MD_OK)
            st = read_back(m, &v, 0, g, &f->caption, &f->caption_moves);
        if (st == MD_OK)
            st = read_back(m, &v, 1, g, &f->video, &f->video_moves);
        if (st == MD_OK)
            st = read_back(m, &v, 2, g, &f->none, &f->none_moves);
    }
    if (have_opt)
        md_adamw_free(&opt);
    md_graph_free(g);
    free(lab); free(cond); free(bag); free(tgt);
    mo_free(&c);
    mo_free(&v);
    if (st != MD_OK)
        md_motion_free(m);
    return st;
}
