/* probe.c — see probe.h. */
#include "probe.h"
#include "caption.h"
#include "json.h"
#include "rng.h"
#include "safetensors.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VERSION 1
#define D MD_SPACE_DIM
#define K MD_PROBE_CLASSES
#define H MD_PROBE_HEADS
#define CHUNK 32

const md_attr md_probe_attrs[H] = {MD_ATTR_DIGIT, MD_ATTR_STYLE, MD_ATTR_INK, MD_ATTR_BG, MD_ATTR_POS, MD_ATTR_SIZE};
static const int head_k[H] = {10, MD_STYLES, MD_COLOURS, MD_COLOURS, MD_POSITIONS, MD_SIZES};
static const int head_at[H] = {0, 10, 12, 20, 28, 37};

/* ---- the model ---- */

md_status md_probe_init(md_probe *p)
{
    memset(p, 0, sizeof *p);
    md_paramset *ps = p->ps = md_paramset_new();
    if (!ps)
        return MD_ERR_ALLOC;
    p->ask_w = md_param_add(ps, "ask.weight", 2, (int64_t[]){K, D});
    p->ask_b = md_param_add(ps, "ask.bias", 1, (int64_t[]){K});
    p->show_w = md_param_add(ps, "show.weight", 2, (int64_t[]){K, D});
    p->show_b = md_param_add(ps, "show.bias", 1, (int64_t[]){K});
    md_status st = md_paramset_alloc(ps);
    if (st != MD_OK) {
        md_probe_free(p);
        return st;
    }
    memset(p->ask_w->data, 0, sizeof(float) * K * D);
    memset(p->ask_b->data, 0, sizeof(float) * K);
    memset(p->show_w->data, 0, sizeof(float) * K * D);
    memset(p->show_b->data, 0, sizeof(float) * K);
    p->cos_weight = 0.f;
    return MD_OK;
}

void md_probe_free(md_probe *p)
{
    if (p->ps)
        md_paramset_free(p->ps);
    memset(p, 0, sizeof *p);
}

md_status md_probe_save(const md_probe *p, const char *path, const char *recipe_json, const char *data_hash)
{
    char ver[16], wver[16], cw[32];
    snprintf(ver, sizeof ver, "%d", VERSION);
    snprintf(wver, sizeof wver, "%d", MD_WORLD_VERSION);
    snprintf(cw, sizeof cw, "%g", (double)p->cos_weight);
    const char *keys[] = {"medley.model", "medley.version", "probe.cos_weight", "space.id", "world.version",
                          "data.hash", "train.recipe"};
    const char *vals[] = {MD_PROBE_MODEL, ver, cw, p->space_id, wver, data_hash ? data_hash : "",
                          recipe_json ? recipe_json : "{}"};
    return md_st_save_paramset(path, p->ps, MD_F16, 7, keys, vals);
}

md_status md_probe_load(md_probe *p, const char *path)
{
    memset(p, 0, sizeof *p);
    md_st_file *f;
    md_status st = md_st_open(path, &f);
    if (st != MD_OK)
        return st;
    st = md_st_check_model(f, path, MD_PROBE_MODEL, "candidate readers", VERSION, "medley train probes");
    double cw = 0;
    char sid[17] = "";
    if (st == MD_OK) {
        const char *c = md_st_meta(f, "probe.cos_weight"), *s = md_st_meta(f, "space.id");
        char *end = NULL;
        if (c)
            cw = strtod(c, &end);
        if (!c || end == c || *end || !isfinite(cw) || cw < 0 || cw > 1e3) {
            md_log(MD_LOG_ERROR, "%s: the candidate readers have no readable probe.cos_weight (a number in "
                                 "0..1000)", path);
            st = MD_ERR_FORMAT;
        }
        if (s)
            snprintf(sid, sizeof sid, "%s", s);
    }
    md_st_close(f);
    if (st != MD_OK)
        return st;
    if ((st = md_probe_init(p)) != MD_OK)
        return st;
    if ((st = md_st_load_paramset(path, p->ps)) != MD_OK) {
        md_probe_free(p);
        return st;
    }
    p->cos_weight = (float)cw;
    memcpy(p->space_id, sid, sizeof sid);
    return MD_OK;
}

static void read_heads(const float *w, const float *b, const float *v, float *out)
{
    for (int c = 0; c < K; c++) {
        float s = b[c];
        for (int d = 0; d < D; d++)
            s += w[c * D + d] * v[d];
        out[c] = s;
    }
    for (int h = 0; h < H; h++) {
        float *o = out + head_at[h], m = o[0], z = 0.f;
        for (int c = 1; c < head_k[h]; c++)
            m = o[c] > m ? o[c] : m;
        for (int c = 0; c < head_k[h]; c++)
            z += (o[c] = expf(o[c] - m));
        for (int c = 0; c < head_k[h]; c++)
            o[c] /= z;
    }
}

void md_probe_read(const md_probe *p, int ask, const float *v, float *out)
{
    if (ask)
        read_heads(p->ask_w->data, p->ask_b->data, v, out);
    else
        read_heads(p->show_w->data, p->show_b->data, v, out);
}

float md_probe_score(const md_probe *p, const float *cond, const float *img)
{
    float a[K], s[K], score = 0.f;
    md_probe_read(p, 1, cond, a);
    md_probe_read(p, 0, img, s);
    for (int h = 0; h < H; h++) {
        float agree = 0.f;
        for (int c = head_at[h]; c < head_at[h] + head_k[h]; c++)
            agree += a[c] * s[c];
        score += logf(agree > 1e-30f ? agree : 1e-30f);
    }
    return score;
}

/* ---- training ---- */

void md_probe_train_default_opts(md_probe_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->images = 6000;
    o->videos = 1500;
    o->clips = 1500;
    o->iters = 400;
    o->lr = 0.05f;
    o->weight_decay = 1e-4f;
    o->cos_weight = 0.f;
    o->seed = 1;
}

/* Rows of one training set: vectors, per-head target distributions, and
 * per-head masks (0: the head learns nothing from the row). */
typedef struct rows {
    int64_t n, cap;
    float *v, *t, *m;
} rows;

static md_status rows_grow(rows *r, int64_t more)
{
    if (r->n + more <= r->cap)
        return MD_OK;
    int64_t cap = (r->n + more) * 2;
    float *v = realloc(r->v, sizeof(float) * (size_t)(cap * D));
    if (v)
        r->v = v;
    float *t = realloc(r->t, sizeof(float) * (size_t)(cap * K));
    if (t)
        r->t = t;
    float *m = realloc(r->m, sizeof(float) * (size_t)(cap * H));
    if (m)
        r->m = m;
    if (!v || !t || !m) {
        md_log(MD_LOG_ERROR, "candidate readers: out of memory for %lld rows", (long long)cap);
        return MD_ERR_ALLOC;
    }
    r->cap = cap;
    return MD_OK;
}

static void rows_free(rows *r)
{
    free(r->v);
    free(r->t);
    free(r->m);
    memset(r, 0, sizeof *r);
}

/* Appends a row: vector v; attr[] (MD_ATTR_COUNT, -1 unknown) gives one-hot
 * targets; an unknown attribute is uniform (uniform != 0) or masked. */
static void rows_add(rows *r, const float *v, const int *attr, int uniform)
{
    float *t = r->t + r->n * K, *m = r->m + r->n * H;
    memcpy(r->v + r->n * D, v, sizeof(float) * D);
    for (int h = 0; h < H; h++) {
        const int a = attr[md_probe_attrs[h]], k = head_k[h];
        for (int c = 0; c < k; c++)
            t[head_at[h] + c] = a >= 0 ? (float)(a == c) : 1.f / (float)k;
        m[h] = a >= 0 && a < k ? 1.f : uniform ? 1.f : 0.f;
        if (a >= k)   /* out of range: never a target */
            for (int c = 0; c < k; c++)
                t[head_at[h] + c] = 1.f / (float)k;
    }
    r->n++;
}

/* Full-batch Adam on the per-head cross-entropy; w [K, D], b [K]. */
static md_status fit(const rows *r, float *w, float *b, const md_probe_train_opts *o, const char *stage)
{
    const int T = md_threads_get();
    const int64_t P = (int64_t)K * D + K;
    float *gall = calloc((size_t)T * (size_t)P, sizeof(float)), *mom = calloc((size_t)P, sizeof(float)),
          *vel = calloc((size_t)P, sizeof(float));
    double *lossT = calloc((size_t)T, sizeof(double));
    if (!gall || !mom || !vel || !lossT) {
        free(gall);
        free(mom);
        free(vel);
        free(lossT);
        md_log(MD_LOG_ERROR, "candidate readers: out of memory");
        return MD_ERR_ALLOC;
    }
    md_status st = MD_OK;
    for (int it = 0; it < o->iters && st == MD_OK; it++) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        memset(gall, 0, sizeof(float) * (size_t)T * (size_t)P);
        memset(lossT, 0, sizeof(double) * (size_t)T);
#pragma omp parallel num_threads(T)
        {
            const int id = omp_get_thread_num();
            float *gw = gall + (size_t)id * (size_t)P, *gb = gw + K * D, p[K];
#pragma omp for schedule(static)
            for (int64_t i = 0; i < r->n; i++) {
                const float *v = r->v + i * D, *t = r->t + i * K, *m = r->m + i * H;
                read_heads(w, b, v, p);
                for (int h = 0; h < H; h++) {
                    if (m[h] == 0.f)
                        continue;
                    for (int c = head_at[h]; c < head_at[h] + head_k[h]; c++) {
                        if (t[c] > 0.f)
                            lossT[id] -= (double)(m[h] * t[c] * logf(p[c] > 1e-30f ? p[c] : 1e-30f));
                        const float gc = m[h] * (p[c] - t[c]);
                        gb[c] += gc;
                        for (int d = 0; d < D; d++)
                            gw[c * D + d] += gc * v[d];
                    }
                }
            }
        }
        double loss = 0;
        for (int q = 0; q < T; q++)
            loss += lossT[q];
        loss /= (double)r->n;
        const float b1 = 0.9f, b2 = 0.999f, c1 = 1.f - powf(b1, (float)(it + 1)), c2 = 1.f - powf(b2, (float)(it + 1));
        for (int64_t j = 0; j < P; j++) {
            float g = 0.f;
            for (int q = 0; q < T; q++)
                g += gall[(size_t)q * (size_t)P + (size_t)j];
            g /= (float)r->n;
            float *x = j < K * D ? &w[j] : &b[j - K * D];
            if (j < K * D)
                g += o->weight_decay * *x;
            mom[j] = b1 * mom[j] + (1.f - b1) * g;
            vel[j] = b2 * vel[j] + (1.f - b2) * g * g;
            *x -= o->lr * (mom[j] / c1) / (sqrtf(vel[j] / c2) + 1e-8f);
        }
        if (o->progress && ((it + 1) % 50 == 0 || it + 1 == o->iters))
            o->progress(stage, it + 1, o->iters, (float)loss, o->user);
    }
    free(gall);
    free(mom);
    free(vel);
    free(lossT);
    return st;
}

/* Embeds samples [i0, i0 + n) of (split, kind) and, for images, their
 * reconstructions, captions (with the attributes they state) and, every
 * fourth, a digit-only caption. Appends to show / ask (NULL: skip). */
typedef struct builder {
    const md_space *sp;
    const md_vqgan *vq;
    const md_world *w;
    md_graph *g;
    float *x, *qx, *v;
    uint8_t *scratch;
    char (*caps)[MD_CAPTION_MAX];
    int (*stated)[MD_ATTR_COUNT];
    md_world_sample *s;
} builder;

static md_status build_chunk(builder *B, md_world_split split, md_world_kind kind, uint64_t seed, int64_t i0, int nb,
                             rows *show, rows *ask)
{
    const md_modality m = kind == MD_WORLD_IMAGE ? MD_MOD_IMAGE : kind == MD_WORLD_AUDIO ? MD_MOD_AUDIO : MD_MOD_VIDEO;
    const int64_t isz = md_space_input_size(m);
    const char *cp[CHUNK + CHUNK];
    int ncap = 0;
    for (int b = 0; b < nb; b++) {
        md_world_sample *s = &B->s[b];
        md_status st = md_world_draw(B->w, seed, split, kind, i0 + b, s);
        if (st == MD_OK)
            st = md_space_prep_sample(B->w, s, B->scratch, B->x + isz * b);
        if (st == MD_OK)
            st = md_caption_make(s, (int)(md_hash64(seed * 7 + (uint64_t)(i0 + b)) % 1000), B->caps[b],
                                 MD_CAPTION_MAX, B->stated[b]);
        if (st != MD_OK)
            return st;
        cp[ncap++] = B->caps[b];
    }
    int ndig = 0;
    int dig[CHUNK];
    for (int b = 0; b < nb; b++)
        if ((i0 + b) % 4 == 0) {
            md_status st = md_caption_digit(kind, B->s[b].attr[MD_ATTR_DIGIT], md_hash64(seed + (uint64_t)(i0 + b)),
                                            B->caps[CHUNK + ndig], MD_CAPTION_MAX);
            if (st != MD_OK)
                return st;
            dig[ndig] = B->s[b].attr[MD_ATTR_DIGIT];
            cp[ncap++] = B->caps[CHUNK + ndig++];
        }
    md_status st = rows_grow(show, 2 * nb);
    if (st == MD_OK && ask)
        st = rows_grow(ask, 2 * nb + ndig);
    if (st != MD_OK)
        return st;
    /* the sample itself */
    if ((st = md_space_embed(B->sp, B->g, m, B->x, nb, B->v)) != MD_OK)
        return st;
    for (int b = 0; b < nb; b++) {
        int a[MD_ATTR_COUNT];
        memcpy(a, B->s[b].attr, sizeof a);
        if (kind != MD_WORLD_IMAGE) {   /* a video's digit moves; a voice shows nothing but its digit */
            a[MD_ATTR_POS] = -1;
            if (kind == MD_WORLD_AUDIO)
                for (int h = 1; h < H; h++)
                    a[md_probe_attrs[h]] = -1;
        }
        if (kind == MD_WORLD_IMAGE && show)
            rows_add(show, B->v + (size_t)b * D, a, 0);
        if (ask)
            rows_add(ask, B->v + (size_t)b * D, a, 1);
    }
    /* reconstructions through the image tokenizer */
    if (kind == MD_WORLD_IMAGE && show && B->vq) {
        const int64_t qsz = (int64_t)3 * MD_WORLD_SIZE * MD_WORLD_SIZE;
        int32_t *codes = malloc(sizeof(int32_t) * (size_t)nb * MD_VQ_TOKENS);
        uint8_t rgb[MD_WORLD_SIZE * MD_WORLD_SIZE * 3];
        st = codes ? MD_OK : MD_ERR_ALLOC;
        for (int b = 0; st == MD_OK && b < nb; b++) {
            md_world_render_image(B->w, &B->s[b], rgb);
            md_vqgan_prep_rgb(rgb, B->qx + qsz * b);
        }
        if (st == MD_OK)
            st = md_vqgan_tokenize(B->vq, B->g, B->qx, nb, codes);
        if (st == MD_OK)
            st = md_vqgan_detokenize(B->vq, B->g, codes, nb, B->qx);
        for (int b = 0; st == MD_OK && b < nb; b++) {
            md_vqgan_to_rgb(B->qx + qsz * b, rgb);
            md_judge_prep_rgb(rgb, B->x + isz * b);
        }
        free(codes);
        if (st == MD_OK)
            st = md_space_embed(B->sp, B->g, m, B->x, nb, B->v);
        for (int b = 0; st == MD_OK && b < nb; b++)
            rows_add(show, B->v + (size_t)b * D, B->s[b].attr, 0);
        if (st != MD_OK)
            return st;
    }
    /* captions: what they state, any for the rest */
    if (ask) {
        if ((st = md_space_embed(B->sp, B->g, MD_MOD_TEXT, cp, ncap, B->v)) != MD_OK)
            return st;
        for (int b = 0; b < nb; b++) {
            int a[MD_ATTR_COUNT];
            memcpy(a, B->stated[b], sizeof a);
            if (kind != MD_WORLD_IMAGE)
                a[MD_ATTR_POS] = -1;
            rows_add(ask, B->v + (size_t)b * D, a, 1);
        }
        for (int q = 0; q < ndig; q++) {
            int a[MD_ATTR_COUNT];
            for (int k = 0; k < MD_ATTR_COUNT; k++)
                a[k] = -1;
            a[MD_ATTR_DIGIT] = dig[q];
            rows_add(ask, B->v + (size_t)(nb + q) * D, a, 1);
        }
    }
    return MD_OK;
}

static md_status build(builder *B, md_world_split split, md_world_kind kind, uint64_t seed, int64_t n, rows *show,
                       rows *ask, const md_probe_train_opts *o, const char *stage)
{
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        if (o->cancel && *o->cancel)
            return MD_ABORTED;
        const int nb = (int)(n - i0 < CHUNK ? n - i0 : CHUNK);
        md_status st = build_chunk(B, split, kind, seed, i0, nb, show, ask);
        if (st != MD_OK)
            return st;
        if (o->progress)
            o->progress(stage, i0 + nb, n, 0.f, o->user);
    }
    return MD_OK;
}

static int argmax_head(const float *p, int h)
{
    int best = 0;
    for (int c = 1; c < head_k[h]; c++)
        if (p[head_at[h] + c] > p[head_at[h] + best])
            best = c;
    return best;
}

md_status md_probe_train(md_probe *p, const md_space *sp, const md_vqgan *vq, const md_world *w,
                         const md_probe_train_opts *o, md_probe_figures *f)
{
    if (o->images < 1 || o->videos < 0 || o->clips < 0 || o->iters < 1 || !(o->lr > 0.f) ||
        !(o->weight_decay >= 0.f) || !(o->cos_weight >= 0.f)) {
        md_log(MD_LOG_ERROR, "candidate readers: images %d, videos %d, clips %d, iterations %d, lr %g, weight decay "
                             "%g, cosine weight %g: need at least one image and iteration, a positive lr and no "
                             "negative counts or weights",
               o->images, o->videos, o->clips, o->iters, (double)o->lr, (double)o->weight_decay,
               (double)o->cos_weight);
        return MD_ERR_INVALID;
    }
    md_status st = md_probe_init(p);
    if (st != MD_OK)
        return st;
    p->cos_weight = o->cos_weight;
    int64_t maxin = md_space_input_size(MD_MOD_VIDEO);
    if (md_space_input_size(MD_MOD_IMAGE) > maxin)
        maxin = md_space_input_size(MD_MOD_IMAGE);
    if (md_space_input_size(MD_MOD_AUDIO) > maxin)
        maxin = md_space_input_size(MD_MOD_AUDIO);
    builder B = {sp, vq, w, md_graph_new((size_t)1 << 26),
                 malloc(sizeof(float) * CHUNK * (size_t)maxin),
                 malloc(sizeof(float) * CHUNK * 3 * MD_WORLD_SIZE * MD_WORLD_SIZE),
                 malloc(sizeof(float) * 2 * CHUNK * D),
                 malloc((size_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3),
                 malloc(sizeof(char[MD_CAPTION_MAX]) * 2 * CHUNK),
                 malloc(sizeof(int[MD_ATTR_COUNT]) * CHUNK),
                 malloc(sizeof(md_world_sample) * CHUNK)};
    rows show = {0}, ask = {0}, vshow = {0}, vask = {0};
    if (!B.g || !B.x || !B.qx || !B.v || !B.scratch || !B.caps || !B.stated || !B.s)
        st = MD_ERR_ALLOC;
    if (st == MD_OK)
        st = build(&B, MD_SPLIT_TRAIN, MD_WORLD_IMAGE, o->seed, o->images, &show, &ask, o, "reading pictures");
    if (st == MD_OK && o->videos)
        st = build(&B, MD_SPLIT_TRAIN, MD_WORLD_VIDEO, o->seed + 1, o->videos, &show, &ask, o, "reading videos");
    if (st == MD_OK && o->clips)
        st = build(&B, MD_SPLIT_TRAIN, MD_WORLD_AUDIO, o->seed + 2, o->clips, &show, &ask, o, "reading clips");
    if (st == MD_OK)
        st = fit(&show, p->show_w->data, p->show_b->data, o, "fitting the picture readers");
    if (st == MD_OK)
        st = fit(&ask, p->ask_w->data, p->ask_b->data, o, "fitting the condition readers");
    /* held out: validation pictures, real, and their captions */
    const md_vqgan *keep = B.vq;
    B.vq = NULL;
    const int nval = 1000;
    if (st == MD_OK)
        st = build(&B, MD_SPLIT_VAL, MD_WORLD_IMAGE, o->seed + 3, nval, &vshow, &vask, o, "validating");
    B.vq = keep;
    if (st == MD_OK && f) {
        memset(f, 0, sizeof *f);
        f->n = nval;
        int64_t n_show[H] = {0}, n_ask[H] = {0};
        float pr[K];
        for (int64_t i = 0; i < vshow.n; i++) {
            md_probe_read(p, 0, vshow.v + i * D, pr);
            for (int h = 0; h < H; h++)
                if (vshow.m[i * H + h] > 0.f) {
                    n_show[h]++;
                    f->show_acc[h] += vshow.t[i * K + head_at[h] + argmax_head(pr, h)] > 0.5f;
                }
        }
        /* ask rows of a chunk: the pictures, then their captions, then digit captions; the captions'
         * rows are those whose targets are one-hot and that are not pictures: read them all */
        for (int64_t i = 0; i < vask.n; i++) {
            md_probe_read(p, 1, vask.v + i * D, pr);
            for (int h = 0; h < H; h++) {
                const float *t = vask.t + i * K + head_at[h];
                int onehot = 0;
                for (int c = 0; c < head_k[h]; c++)
                    onehot |= t[c] > 0.5f;
                if (onehot) {
                    n_ask[h]++;
                    f->ask_acc[h] += t[argmax_head(pr, h)] > 0.5f;
                }
            }
        }
        for (int h = 0; h < H; h++) {
            f->show_acc[h] = n_show[h] ? f->show_acc[h] / (double)n_show[h] : NAN;
            f->ask_acc[h] = n_ask[h] ? f->ask_acc[h] / (double)n_ask[h] : NAN;
        }
    }
    rows_free(&show);
    rows_free(&ask);
    rows_free(&vshow);
    rows_free(&vask);
    md_graph_free(B.g);
    free(B.x);
    free(B.qx);
    free(B.v);
    free(B.scratch);
    free(B.caps);
    free(B.stated);
    free(B.s);
    if (st != MD_OK)
        md_probe_free(p);
    return st;
}
