/* world.c — see world.h. */
#include "world.h"
#include "dsp.h"
#include "rng.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const md_world_split_names[MD_WORLD_SPLITS] = {"train", "val", "test", "compo"};
const char *const md_world_kind_names[3] = {"image", "audio", "video"};
const char *const md_attr_names[MD_ATTR_COUNT] = {"digit", "style", "ink", "background", "position",
                                                  "size", "motion", "speed", "speaker"};
const int md_attr_classes[MD_ATTR_COUNT] = {10, MD_STYLES, MD_COLOURS, MD_COLOURS, MD_POSITIONS,
                                            MD_SIZES, MD_MOTIONS, MD_SPEEDS, MD_FSDD_SPEAKERS};

const char *const md_colour_names[MD_COLOURS] = {"black", "white", "red", "green",
                                                 "blue", "yellow", "purple", "orange"};
/* Saturated, well separated hues; md_world_colours_ok keeps pairs that read. */
const uint8_t md_colour_rgb[MD_COLOURS][3] = {
    {15, 15, 15}, {240, 240, 240}, {220, 30, 35}, {30, 165, 60},
    {35, 75, 225}, {245, 215, 35}, {140, 50, 180}, {245, 135, 20},
};
const char *const md_position_names[MD_POSITIONS] = {"top left", "top", "top right", "left", "center",
                                                     "right", "bottom left", "bottom", "bottom right"};
const char *const md_size_names[MD_SIZES] = {"small", "medium", "large"};
const char *const md_motion_names[MD_MOTIONS] = {"left", "right", "up", "down", "bounce"};
const char *const md_speed_names[MD_SPEEDS] = {"slow", "fast"};
const char *const md_digit_words[10] = {"zero", "one", "two", "three", "four",
                                        "five", "six", "seven", "eight", "nine"};
static const char *const digit_numerals[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
static const char *const style_names[MD_STYLES] = {"handwritten", "photo"};

const char *md_attr_value_name(md_attr a, int v)
{
    if ((int)a < 0 || a >= MD_ATTR_COUNT || v < 0 || v >= md_attr_classes[a])
        return NULL;
    switch (a) {
    case MD_ATTR_DIGIT: return digit_numerals[v];
    case MD_ATTR_STYLE: return style_names[v];
    case MD_ATTR_INK:
    case MD_ATTR_BG: return md_colour_names[v];
    case MD_ATTR_POS: return md_position_names[v];
    case MD_ATTR_SIZE: return md_size_names[v];
    case MD_ATTR_MOTION: return md_motion_names[v];
    case MD_ATTR_SPEED: return md_speed_names[v];
    case MD_ATTR_SPEAKER: return md_fsdd_speaker_names[v];
    default: return NULL;
    }
}

bool md_world_colours_ok(int ink, int bg)
{
    if (ink < 0 || bg < 0 || ink >= MD_COLOURS || bg >= MD_COLOURS || ink == bg)
        return false;
    float d2 = 0;
    for (int c = 0; c < 3; c++) {
        float d = (float)md_colour_rgb[ink][c] - (float)md_colour_rgb[bg][c];
        d2 += d * d;
    }
    /* RGB distance 150: drops red/orange, blue/purple, yellow/white and the
     * like, which would be hard to read after colour jitter. */
    return d2 >= 150.f * 150.f;
}

bool md_world_is_heldout(const int attr[MD_ATTR_COUNT])
{
    int d = attr[MD_ATTR_DIGIT];
    if (d < 0)
        return false;
    if (attr[MD_ATTR_INK] >= 0 && attr[MD_ATTR_INK] == (d + 2) % MD_COLOURS)
        return true;
    if (attr[MD_ATTR_MOTION] >= 0 && attr[MD_ATTR_MOTION] == d % MD_MOTIONS)
        return true;
    return false;
}

/* ---- loading ---- */

static md_status join(char *buf, size_t cap, const char *a, const char *b)
{
    int k = snprintf(buf, cap, "%s/%s", a, b);
    if (k < 0 || (size_t)k >= cap) {
        md_log(MD_LOG_ERROR, "data folder path too long: %s", a);
        return MD_ERR_INVALID;
    }
    return MD_OK;
}

/* Splits as world.h describes, as index lists by digit. */
static md_status build_splits(md_world *w)
{
    int cnt[MD_WORLD_SPLITS][10];
    /* MNIST: lists hold indices into the train file (train, val) or the
     * t10k file (test, compo). */
    for (int sp = 0; sp < MD_WORLD_SPLITS; sp++) {
        const md_mnist *m = sp <= MD_SPLIT_VAL ? &w->mnist_train : &w->mnist_test;
        int64_t lo = 0, hi = m->n;
        if (sp == MD_SPLIT_TRAIN)
            hi = m->n < 55000 ? m->n * 11 / 12 : 55000;
        else if (sp == MD_SPLIT_VAL)
            lo = m->n < 55000 ? m->n * 11 / 12 : 55000;
        memset(cnt, 0, sizeof cnt);
        for (int64_t i = lo; i < hi; i++)
            cnt[sp][m->labels[i]]++;
        for (int d = 0; d < 10; d++) {
            w->mnist_idx[sp][d] = malloc(sizeof(int) * (size_t)(cnt[sp][d] + 1));
            if (!w->mnist_idx[sp][d])
                return MD_ERR_ALLOC;
            w->n_mnist[sp][d] = 0;
        }
        for (int64_t i = lo; i < hi; i++) {
            int d = m->labels[i];
            w->mnist_idx[sp][d][w->n_mnist[sp][d]++] = (int)i;
        }
    }
    /* Sign photos by rank in their folder; FSDD by take. compo uses test
     * sources. */
    for (int sp = 0; sp < MD_WORLD_SPLITS; sp++) {
        for (int d = 0; d < 10; d++) {
            w->sign_idx[sp][d] = malloc(sizeof(int) * (size_t)(w->sign.n + 1));
            w->fsdd_idx[sp][d] = malloc(sizeof(int) * (size_t)(w->fsdd.n + 1));
            if (!w->sign_idx[sp][d] || !w->fsdd_idx[sp][d])
                return MD_ERR_ALLOC;
            w->n_sign[sp][d] = w->n_fsdd[sp][d] = 0;
        }
        for (int i = 0; i < w->sign.n; i++) {
            int r = w->sign.rank[i], s = r % 5 == 4 ? MD_SPLIT_TEST : r % 10 == 3 ? MD_SPLIT_VAL : MD_SPLIT_TRAIN;
            if (s == sp || (sp == MD_SPLIT_COMPO && s == MD_SPLIT_TEST)) {
                int d = w->sign.labels[i];
                w->sign_idx[sp][d][w->n_sign[sp][d]++] = i;
            }
        }
        for (int i = 0; i < w->fsdd.n; i++) {
            int t = w->fsdd.clips[i].take, s = t < 5 ? MD_SPLIT_TEST : t < 10 ? MD_SPLIT_VAL : MD_SPLIT_TRAIN;
            if (s == sp || (sp == MD_SPLIT_COMPO && s == MD_SPLIT_TEST)) {
                int d = w->fsdd.clips[i].digit;
                w->fsdd_idx[sp][d][w->n_fsdd[sp][d]++] = i;
            }
        }
    }
    for (int sp = 0; sp < MD_WORLD_SPLITS; sp++)
        for (int d = 0; d < 10; d++)
            if (!w->n_mnist[sp][d] || !w->n_sign[sp][d] || !w->n_fsdd[sp][d]) {
                md_log(MD_LOG_ERROR, "demo world: the %s split has no source item for digit %d",
                       md_world_split_names[sp], d);
                return MD_ERR_INVALID;
            }
    return MD_OK;
}

md_status md_world_open(const char *data_dir, md_world *w)
{
    memset(w, 0, sizeof *w);
    if (!data_dir || !*data_dir)
        data_dir = getenv("MEDLEY_DATA_DIR");
    if (!data_dir || !*data_dir) {
        md_log(MD_LOG_ERROR, "no data folder: pass --data DIR or set MEDLEY_DATA_DIR "
                             "(the folder holding mnist/, fsdd/ and sign-digits/)");
        return MD_ERR_INVALID;
    }
    char a[4096], b[4096];
    md_status st;
    if ((st = join(a, sizeof a, data_dir, "mnist/train-images-idx3-ubyte.gz")) ||
        (st = join(b, sizeof b, data_dir, "mnist/train-labels-idx1-ubyte.gz")) ||
        (st = md_mnist_load(a, b, &w->mnist_train)))
        goto fail;
    if ((st = join(a, sizeof a, data_dir, "mnist/t10k-images-idx3-ubyte.gz")) ||
        (st = join(b, sizeof b, data_dir, "mnist/t10k-labels-idx1-ubyte.gz")) ||
        (st = md_mnist_load(a, b, &w->mnist_test)))
        goto fail;
    if ((st = join(a, sizeof a, data_dir, "fsdd/recordings")) ||
        (st = md_fsdd_load(a, MD_WORLD_RATE, &w->fsdd)))
        goto fail;
    if ((st = join(a, sizeof a, data_dir, "sign-digits/images")) ||
        (st = md_sign_load(a, MD_WORLD_SIZE, &w->sign)))
        goto fail;
    if ((st = build_splits(w)))
        goto fail;
    uint64_t h = MD_FNV1A_INIT;
    h = md_fnv1a(h, w->mnist_train.images, (size_t)w->mnist_train.n * 784);
    h = md_fnv1a(h, w->mnist_train.labels, (size_t)w->mnist_train.n);
    h = md_fnv1a(h, w->mnist_test.images, (size_t)w->mnist_test.n * 784);
    h = md_fnv1a(h, w->mnist_test.labels, (size_t)w->mnist_test.n);
    for (int i = 0; i < w->fsdd.n; i++)
        h = md_fnv1a(h, w->fsdd.clips[i].samples, sizeof(float) * (size_t)w->fsdd.clips[i].n);
    h = md_fnv1a(h, w->sign.images, (size_t)w->sign.n * MD_WORLD_SIZE * MD_WORLD_SIZE * 3);
    h = md_fnv1a(h, w->sign.labels, (size_t)w->sign.n);
    snprintf(w->data_hash, sizeof w->data_hash, "%016llx", (unsigned long long)h);
    return MD_OK;
fail:
    md_world_close(w);
    return st;
}

void md_world_close(md_world *w)
{
    if (!w)
        return;
    md_mnist_free(&w->mnist_train);
    md_mnist_free(&w->mnist_test);
    md_fsdd_free(&w->fsdd);
    md_sign_free(&w->sign);
    for (int sp = 0; sp < MD_WORLD_SPLITS; sp++)
        for (int d = 0; d < 10; d++) {
            free(w->mnist_idx[sp][d]);
            free(w->sign_idx[sp][d]);
            free(w->fsdd_idx[sp][d]);
        }
    memset(w, 0, sizeof *w);
}

/* ---- drawing ---- */

#define BOX_SMALL 20.f
static const float box_sides[MD_SIZES] = {20.f, 28.f, 40.f};

/* Largest centre offset from the middle that keeps the ink (about 0.72 of
 * the MNIST cell) inside the frame with a 3-pixel margin. */
static float max_offset(float box)
{
    float off = (MD_WORLD_SIZE - 0.72f * box) * 0.5f - 3.f;
    return off < 20.f ? off : 20.f;
}

static float uni(md_rng *r, float lo, float hi) { return lo + (hi - lo) * md_rng_uniform(r); }

static void pick_colours(md_rng *r, int ink_forced, int *ink, int *bg)
{
    for (;;) {
        int i = ink_forced >= 0 ? ink_forced : (int)md_rng_below(r, MD_COLOURS);
        int b = (int)md_rng_below(r, MD_COLOURS);
        if (md_world_colours_ok(i, b)) {
            *ink = i;
            *bg = b;
            return;
        }
    }
}

static void jitter_colour(md_rng *r, int c, float out[3])
{
    for (int k = 0; k < 3; k++) {
        float v = ((float)md_colour_rgb[c][k] + uni(r, -12.f, 12.f)) / 255.f;
        out[k] = v < 0.f ? 0.f : v > 1.f ? 1.f : v;
    }
}

/* Places the spoken word: gain, and an offset that keeps it inside the clip. */
static void place_audio(const md_world *w, md_rng *r, md_world_sample *s)
{
    const md_fsdd_clip *c = &w->fsdd.clips[s->src_audio];
    int64_t len = c->n < MD_WORLD_AUDIO_SAMPLES ? c->n : MD_WORLD_AUDIO_SAMPLES;
    s->audio_offset = (int)md_rng_below(r, (uint32_t)(MD_WORLD_AUDIO_SAMPLES - len + 1));
    s->audio_gain = uni(r, 0.5f, 0.9f);
    s->attr[MD_ATTR_SPEAKER] = c->speaker;
}

static uint64_t stream_key(uint64_t seed, md_world_split split, md_world_kind kind, int64_t index, uint64_t salt)
{
    uint64_t k = md_hash64(seed ^ 0x776f726c64000000ull);   /* "world" */
    k = md_hash64(k ^ ((uint64_t)split << 8 | (uint64_t)kind) ^ salt);
    return md_hash64(k ^ (uint64_t)index);
}

static bool split_ok(md_world_split split, md_world_kind kind) { return split >= 0 && split < MD_WORLD_SPLITS && kind >= 0 && kind <= MD_WORLD_VIDEO; }

/* Fills everything but the source choice (src_image / digit / style set). */
static void draw_attrs(md_rng *r, md_world_sample *s, bool any_combo)
{
    int d = s->attr[MD_ATTR_DIGIT];
    md_world_split split = s->split;
    if (s->kind == MD_WORLD_AUDIO) {
        return;
    }
    if (s->kind == MD_WORLD_IMAGE && s->attr[MD_ATTR_STYLE] == 1) {
        s->box = MD_WORLD_SIZE;
        s->cx = s->cy = MD_WORLD_SIZE * 0.5f;
        s->audio_gain = uni(r, 0.88f, 1.12f);   /* photo brightness */
        return;
    }
    /* Which held-out kind a compo sample shows (video: ink or motion). */
    bool force_ink = split == MD_SPLIT_COMPO && (s->kind == MD_WORLD_IMAGE || md_rng_below(r, 2) == 0);
    bool free_combo = split == MD_SPLIT_COMPO || any_combo;
    bool force_motion = split == MD_SPLIT_COMPO && !force_ink;
    int ink, bg;
    for (;;) {
        pick_colours(r, force_ink ? (d + 2) % MD_COLOURS : -1, &ink, &bg);
        if (free_combo || ink != (d + 2) % MD_COLOURS)
            break;
    }
    s->attr[MD_ATTR_INK] = ink;
    s->attr[MD_ATTR_BG] = bg;
    jitter_colour(r, ink, s->ink_rgb);
    jitter_colour(r, bg, s->bg_rgb);
    int size = s->kind == MD_WORLD_VIDEO ? (int)md_rng_below(r, 2) : (int)md_rng_below(r, MD_SIZES);
    s->attr[MD_ATTR_SIZE] = size;
    s->box = box_sides[size] * uni(r, 0.93f, 1.07f);
    float off = max_offset(s->box);
    if (s->kind == MD_WORLD_IMAGE) {
        int pos = (int)md_rng_below(r, MD_POSITIONS);
        s->attr[MD_ATTR_POS] = pos;
        s->cx = MD_WORLD_SIZE * 0.5f + (float)(pos % 3 - 1) * off + uni(r, -1.5f, 1.5f);
        s->cy = MD_WORLD_SIZE * 0.5f + (float)(pos / 3 - 1) * off + uni(r, -1.5f, 1.5f);
        return;
    }
    /* video */
    int motion;
    for (;;) {
        motion = force_motion ? d % MD_MOTIONS : (int)md_rng_below(r, MD_MOTIONS);
        if (free_combo || motion != d % MD_MOTIONS)
            break;
    }
    int speed = (int)md_rng_below(r, MD_SPEEDS);
    s->attr[MD_ATTR_MOTION] = motion;
    s->attr[MD_ATTR_SPEED] = speed;
    float mid = MD_WORLD_SIZE * 0.5f, v = speed ? 2.0f : 1.0f, travel = v * (MD_WORLD_FRAMES - 1);
    float lo = mid - off, hi = mid + off;
    s->dx = s->dy = 0;
    switch (motion) {
    case 0: s->dx = -v; s->cx = uni(r, lo + travel, hi); s->cy = uni(r, lo, hi); break;
    case 1: s->dx = v; s->cx = uni(r, lo, hi - travel); s->cy = uni(r, lo, hi); break;
    case 2: s->dy = -v; s->cy = uni(r, lo + travel, hi); s->cx = uni(r, lo, hi); break;
    case 3: s->dy = v; s->cy = uni(r, lo, hi - travel); s->cx = uni(r, lo, hi); break;
    default: {
        /* bounce: up and back down, once (slow) or twice (fast); dy holds
         * the height of the hop */
        float amp = uni(r, 13.f, 16.f);
        s->dy = amp;
        s->cy = uni(r, lo + amp, hi);
        s->cx = uni(r, lo, hi);
    }
    }
}

/* Resets s and starts its random stream (salt tells draws from items). */
static md_status draw_common(const md_world *w, uint64_t seed, md_world_split split, md_world_kind kind,
                             int64_t index, uint64_t salt, md_world_sample *s, md_rng *r)
{
    memset(s, 0, sizeof *s);
    if (!w || !w->mnist_train.n || !split_ok(split, kind)) {
        md_log(MD_LOG_ERROR, "demo world: bad split or kind, or world not open");
        return MD_ERR_INVALID;
    }
    s->kind = kind;
    s->split = split;
    s->seed = seed;
    s->index = index;
    s->src_image = s->src_audio = -1;
    for (int a = 0; a < MD_ATTR_COUNT; a++)
        s->attr[a] = -1;
    s->audio_gain = 1.f;
    r->key = stream_key(seed, split, kind, index, salt);
    r->counter = 0;
    s->noise_key = md_hash64(r->key ^ 0x6e6f697365ull);
    return MD_OK;
}

static md_status draw(const md_world *w, uint64_t seed, md_world_split split, md_world_kind kind, int64_t index,
                      bool any_combo, md_world_sample *s)
{
    md_rng r;
    md_status st = draw_common(w, seed, split, kind, index, 0, s, &r);
    if (st != MD_OK)
        return st;
    int d = (int)md_rng_below(&r, 10);
    s->attr[MD_ATTR_DIGIT] = d;
    if (kind == MD_WORLD_AUDIO) {
        s->src_audio = w->fsdd_idx[split][d][md_rng_below(&r, (uint32_t)w->n_fsdd[split][d])];
        place_audio(w, &r, s);
        return MD_OK;
    }
    bool photo = kind == MD_WORLD_IMAGE && split != MD_SPLIT_COMPO && md_rng_uniform(&r) < MD_WORLD_PHOTO_SHARE;
    s->attr[MD_ATTR_STYLE] = photo ? 1 : 0;
    if (photo)
        s->src_image = w->sign_idx[split][d][md_rng_below(&r, (uint32_t)w->n_sign[split][d])];
    else
        s->src_image = w->mnist_idx[split][d][md_rng_below(&r, (uint32_t)w->n_mnist[split][d])];
    draw_attrs(&r, s, any_combo);
    if (kind == MD_WORLD_VIDEO) {
        s->src_audio = w->fsdd_idx[split][d][md_rng_below(&r, (uint32_t)w->n_fsdd[split][d])];
        place_audio(w, &r, s);
    }
    return MD_OK;
}

md_status md_world_draw(const md_world *w, uint64_t seed, md_world_split split, md_world_kind kind,
                        int64_t index, md_world_sample *s)
{
    return draw(w, seed, split, kind, index, false, s);
}

md_status md_world_draw_any(const md_world *w, uint64_t seed, md_world_split split, md_world_kind kind,
                            int64_t index, md_world_sample *s)
{
    return draw(w, seed, split, kind, index, true, s);
}

int64_t md_world_enumerate_count(const md_world *w, md_world_split split, md_world_kind kind)
{
    if (!w || !split_ok(split, kind))
        return 0;
    int64_t n = 0;
    for (int d = 0; d < 10; d++) {
        if (kind == MD_WORLD_AUDIO)
            n += w->n_fsdd[split][d];
        else
            n += w->n_mnist[split][d] + (kind == MD_WORLD_IMAGE && split != MD_SPLIT_COMPO ? w->n_sign[split][d] : 0);
    }
    return n;
}

md_status md_world_draw_item(const md_world *w, uint64_t seed, md_world_split split, md_world_kind kind,
                             int64_t item, md_world_sample *s)
{
    md_rng r;
    md_status st = draw_common(w, seed, split, kind, item, 0x6974656dull, s, &r);   /* "item" */
    if (st != MD_OK)
        return st;
    if (item < 0 || item >= md_world_enumerate_count(w, split, kind)) {
        md_log(MD_LOG_ERROR, "demo world: item %lld out of range for %s %s", (long long)item,
               md_world_split_names[split], md_world_kind_names[kind]);
        return MD_ERR_INVALID;
    }
    int64_t k = item;
    /* order: digit by digit, MNIST (or FSDD) items, then sign items */
    int64_t total_main = 0;
    for (int d = 0; d < 10; d++)
        total_main += kind == MD_WORLD_AUDIO ? w->n_fsdd[split][d] : w->n_mnist[split][d];
    bool photo = k >= total_main;
    if (photo)
        k -= total_main;
    for (int d = 0; d < 10; d++) {
        int nd = kind == MD_WORLD_AUDIO ? w->n_fsdd[split][d] : photo ? w->n_sign[split][d] : w->n_mnist[split][d];
        if (k < nd) {
            s->attr[MD_ATTR_DIGIT] = d;
            if (kind == MD_WORLD_AUDIO) {
                s->src_audio = w->fsdd_idx[split][d][k];
                place_audio(w, &r, s);
                return MD_OK;
            }
            s->attr[MD_ATTR_STYLE] = photo ? 1 : 0;
            s->src_image = photo ? w->sign_idx[split][d][k] : w->mnist_idx[split][d][k];
            draw_attrs(&r, s, false);
            if (kind == MD_WORLD_VIDEO) {
                s->src_audio = w->fsdd_idx[split][d][md_rng_below(&r, (uint32_t)w->n_fsdd[split][d])];
                place_audio(w, &r, s);
            }
            return MD_OK;
        }
        k -= nd;
    }
    return MD_ERR;   /* unreachable: item was range-checked */
}

/* ---- rendering ---- */

static const uint8_t *mnist_cell(const md_world *w, const md_world_sample *s)
{
    const md_mnist *m = s->split <= MD_SPLIT_VAL ? &w->mnist_train : &w->mnist_test;
    return m->images + (size_t)s->src_image * 784;
}

/* Bilinear ink coverage of the 28×28 cell scaled to a box of side `box`
 * centred at (cx, cy), composited over the background: rgb [64,64,3]. */
static void draw_digit(const uint8_t *cell, float cx, float cy, float box, const float ink[3],
                       const float bg[3], uint8_t *rgb)
{
    float scale = 28.f / box, x0 = cx - box * 0.5f, y0 = cy - box * 0.5f;
    for (int y = 0; y < MD_WORLD_SIZE; y++) {
        float v = ((float)y + 0.5f - y0) * scale - 0.5f;
        int vi = (int)floorf(v);
        float fv = v - (float)vi;
        for (int x = 0; x < MD_WORLD_SIZE; x++) {
            float u = ((float)x + 0.5f - x0) * scale - 0.5f;
            int ui = (int)floorf(u);
            float fu = u - (float)ui, a = 0.f;
            if (ui >= -1 && ui < 28 && vi >= -1 && vi < 28) {
                float p00 = 0, p01 = 0, p10 = 0, p11 = 0;
                if (vi >= 0 && ui >= 0) p00 = cell[vi * 28 + ui];
                if (vi >= 0 && ui + 1 < 28) p01 = cell[vi * 28 + ui + 1];
                if (vi + 1 < 28 && ui >= 0) p10 = cell[(vi + 1) * 28 + ui];
                if (vi + 1 < 28 && ui + 1 < 28) p11 = cell[(vi + 1) * 28 + ui + 1];
                a = ((p00 * (1 - fu) + p01 * fu) * (1 - fv) + (p10 * (1 - fu) + p11 * fu) * fv) * (1.f / 255.f);
            }
            uint8_t *px = rgb + ((size_t)y * MD_WORLD_SIZE + (size_t)x) * 3;
            for (int c = 0; c < 3; c++)
                px[c] = (uint8_t)lrintf((bg[c] + (ink[c] - bg[c]) * a) * 255.f);
        }
    }
}

void md_world_render_image(const md_world *w, const md_world_sample *s, uint8_t *rgb)
{
    if (s->attr[MD_ATTR_STYLE] == 1) {
        const uint8_t *src = w->sign.images + (size_t)s->src_image * MD_WORLD_SIZE * MD_WORLD_SIZE * 3;
        for (int i = 0; i < MD_WORLD_SIZE * MD_WORLD_SIZE * 3; i++) {
            float v = (float)src[i] * s->audio_gain;
            rgb[i] = (uint8_t)(v > 255.f ? 255 : lrintf(v));
        }
        return;
    }
    draw_digit(mnist_cell(w, s), s->cx, s->cy, s->box, s->ink_rgb, s->bg_rgb, rgb);
}

void md_world_render_audio(const md_world *w, const md_world_sample *s, float *audio)
{
    memset(audio, 0, sizeof(float) * MD_WORLD_AUDIO_SAMPLES);
    if (s->src_audio < 0)
        return;
    const md_fsdd_clip *c = &w->fsdd.clips[s->src_audio];
    /* keep the loudest second (a few FSDD takes run to 2.3 s) */
    int64_t start = md_loudest_window(c->samples, c->n, MD_WORLD_AUDIO_SAMPLES);
    int64_t len = c->n < MD_WORLD_AUDIO_SAMPLES ? c->n : MD_WORLD_AUDIO_SAMPLES;
    float peak = 0;
    for (int64_t i = 0; i < len; i++)
        peak = fmaxf(peak, fabsf(c->samples[start + i]));
    float g = peak > 0 ? s->audio_gain / peak : 0.f;
    for (int64_t i = 0; i < len; i++)
        audio[s->audio_offset + i] = c->samples[start + i] * g;
}

void md_world_render_video(const md_world *w, const md_world_sample *s, uint8_t *frames, float *audio)
{
    const uint8_t *cell = mnist_cell(w, s);
    size_t fsz = (size_t)MD_WORLD_SIZE * MD_WORLD_SIZE * 3;
    for (int t = 0; t < MD_WORLD_FRAMES; t++) {
        float cx = s->cx, cy = s->cy;
        if (s->attr[MD_ATTR_MOTION] == 4) {
            float hops = s->attr[MD_ATTR_SPEED] ? 2.f : 1.f;
            cy -= s->dy * fabsf(sinf((float)M_PI * hops * (float)t / (float)(MD_WORLD_FRAMES - 1)));
        } else {
            cx += s->dx * (float)t;
            cy += s->dy * (float)t;
        }
        draw_digit(cell, cx, cy, s->box, s->ink_rgb, s->bg_rgb, frames + fsz * (size_t)t);
    }
    if (audio)
        md_world_render_audio(w, s, audio);
}
