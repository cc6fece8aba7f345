/* toy.h — small models and data shared by the end-to-end and determinism
 * tests: digit-like images (seven-segment strokes with random position,
 * thickness and intensity) and a conv autoencoder over them. */
#ifndef MEDLEY_TOY_H
#define MEDLEY_TOY_H

#include "nn.h"
#include "rng.h"

#include <math.h>
#include <string.h>

#define TOY_HW 32

/* One 32×32 image of digit d into img (values 0..1). */
static inline void toy_digit(md_rng *r, int d, float *img)
{
    static const unsigned char seg[10] = {0x3f, 0x06, 0x5b, 0x4f, 0x66, 0x6d, 0x7d, 0x07, 0x7f, 0x6f};
    memset(img, 0, sizeof(float) * TOY_HW * TOY_HW);
    int w = 10 + (int)md_rng_below(r, 6), h = 16 + (int)md_rng_below(r, 8);
    int x0 = 2 + (int)md_rng_below(r, (uint32_t)(TOY_HW - 4 - w));
    int y0 = 2 + (int)md_rng_below(r, (uint32_t)(TOY_HW - 4 - h));
    int th = 2 + (int)md_rng_below(r, 2);
    float ink = 0.6f + 0.4f * md_rng_uniform(r);
    /* segments a..g as rectangles (x, y, width, height) in a w×h box */
    int hm = h / 2;
    int rects[7][4] = {{0, 0, w, th}, {w - th, 0, th, hm}, {w - th, hm, th, h - hm}, {0, h - th, w, th},
                       {0, hm, th, h - hm}, {0, 0, th, hm}, {0, hm - th / 2, w, th}};
    for (int s = 0; s < 7; s++) {
        if (!(seg[d] >> s & 1))
            continue;
        for (int y = rects[s][1]; y < rects[s][1] + rects[s][3]; y++)
            for (int x = rects[s][0]; x < rects[s][0] + rects[s][2]; x++)
                img[(y0 + y) * TOY_HW + x0 + x] = ink;
    }
}

typedef struct toy_ae {
    md_paramset *ps;
    md_tensor *e1_w, *e1_b, *e2_w, *e2_b, *e3_w, *e3_b;   /* 1->16 s2, 16->32 s2, 32->8 1x1 */
    md_resblock mid;                                       /* 8x8 GroupNorm block at 32 ch */
    md_tensor *d1_w, *d1_b, *d2_w, *d2_b, *d3_w, *d3_b;   /* 8->32 1x1, convT 32->16 s2, up x2 + conv 16->1 */
} toy_ae;

static inline md_tensor *toy_param(md_paramset *ps, const char *n, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t s[4] = {a, b, c, d};
    return md_param_add(ps, n, d ? 4 : 1, d ? s : (int64_t[]){a});
}

static inline void toy_ae_init(toy_ae *m, uint64_t seed)
{
    m->ps = md_paramset_new();
    m->e1_w = toy_param(m->ps, "e1.w", 16, 1, 3, 3);   m->e1_b = toy_param(m->ps, "e1.b", 16, 0, 0, 0);
    m->e2_w = toy_param(m->ps, "e2.w", 32, 16, 3, 3);  m->e2_b = toy_param(m->ps, "e2.b", 32, 0, 0, 0);
    md_resblock_declare(&m->mid, m->ps, "mid", 32, 32, 8);
    m->e3_w = toy_param(m->ps, "e3.w", 8, 32, 1, 1);   m->e3_b = toy_param(m->ps, "e3.b", 8, 0, 0, 0);
    m->d1_w = toy_param(m->ps, "d1.w", 32, 8, 1, 1);   m->d1_b = toy_param(m->ps, "d1.b", 32, 0, 0, 0);
    m->d2_w = toy_param(m->ps, "d2.w", 32, 16, 4, 4);  m->d2_b = toy_param(m->ps, "d2.b", 16, 0, 0, 0);
    m->d3_w = toy_param(m->ps, "d3.w", 1, 16, 3, 3);   m->d3_b = toy_param(m->ps, "d3.b", 1, 0, 0, 0);
    md_paramset_alloc(m->ps);
    for (int i = 0; i < md_paramset_count(m->ps); i++) {
        md_tensor *t = md_paramset_get(m->ps, i);
        if (t->ndim == 4) {
            float b = 1.f / sqrtf((float)(md_numel(t) / t->shape[0]));
            md_init_uniform(t, seed + (uint64_t)i, -b, b);
        } else {
            md_init_const(t, 0.f);
        }
    }
    md_resblock_init(&m->mid, seed + 99);
}

/* x [N, 1, 32, 32] -> reconstruction [N, 1, 32, 32] */
static inline md_tensor *toy_ae_forward(md_graph *g, const toy_ae *m, md_tensor *x)
{
    md_tensor *h = md_silu(g, md_conv2d(g, x, m->e1_w, m->e1_b, 2, 1, 1));     /* 16x16x16 */
    h = md_silu(g, md_conv2d(g, h, m->e2_w, m->e2_b, 2, 1, 1));                /* 32x8x8 */
    h = md_resblock_forward(g, &m->mid, h);
    h = md_conv2d(g, h, m->e3_w, m->e3_b, 1, 0, 1);                            /* 8x8x8 code */
    h = md_silu(g, md_conv2d(g, h, m->d1_w, m->d1_b, 1, 0, 1));                /* 32x8x8 */
    h = md_silu(g, md_conv_transpose2d(g, h, m->d2_w, m->d2_b, 2, 1, 1));      /* 16x16x16 */
    h = md_upsample_nearest2d(g, h, 2);                                       /* 16x32x32 */
    return md_sigmoid(g, md_conv2d(g, h, m->d3_w, m->d3_b, 1, 1, 1));
}

#endif
