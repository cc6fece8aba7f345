/* test_conv_det.c — conv2d, conv1d, conv_transpose2d, groupnorm, pooling,
 * upsampling, VQ and the fused groupnorm + SiLU, forward and backward, give bit-identical outputs and
 * gradients for 1, 2 and 3 threads. Exit 0 identical, 1 any bit differs. */
#include "ops.h"
#include "rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { P_X, P_W1, P_B1, P_GW, P_GB, P_WT, P_BT, P_W1D, P_CB, P_GW2, P_GB2, P_W2, P_B2, P_COUNT };

/* Parameters and inputs (in a paramset, so grads outlive the graph). */
typedef struct det_model {
    md_paramset *ps;
    md_tensor *p[P_COUNT];
} det_model;

static const int64_t N = 4, C = 64, H = 18, W = 17, O = 32, D = 8, K = 40;

static void model_init(det_model *m)
{
    static const char *names[P_COUNT] = {"x", "w1", "b1", "gw", "gb", "wt", "bt", "w1d", "cb",
                                         "gw2", "gb2", "w2", "b2"};
    int64_t shapes[P_COUNT][4] = {
        {N, C, H, W}, {O, C, 3, 3}, {O}, {O}, {O}, {O, 2, 4, 4}, {8}, {8, 8, 5}, {K, D},
        {C}, {C}, {C, C, 3, 3}, {C},
    };
    int nd[P_COUNT] = {4, 4, 1, 1, 1, 4, 1, 3, 2, 1, 1, 4, 1};
    m->ps = md_paramset_new();
    for (int i = 0; i < P_COUNT; i++)
        m->p[i] = md_param_add(m->ps, names[i], nd[i], shapes[i]);
    if (md_paramset_alloc(m->ps) != MD_OK)
        exit(1);
    for (int i = 0; i < P_COUNT; i++)
        md_init_normal(m->p[i], 100 + (uint64_t)i, i == P_GW || i == P_GW2 ? 1.f : 0.f, i == P_X || i == P_CB ? 1.f : 0.2f);
}

/* One step; returns a copy of every output and gradient, concatenated. */
static float *run(det_model *m, int threads, size_t *count)
{
    md_threads_set(threads);
    md_graph *g = md_graph_new(1 << 20);
    md_paramset_zero_grad(m->ps);
    md_tensor **p = m->p;
    /* conv3x3 (two tiles per image) -> groupnorm -> silu */
    md_tensor *h = md_conv2d(g, p[P_X], p[P_W1], p[P_B1], 1, 1, 1);
    h = md_silu(g, md_groupnorm(g, h, 8, p[P_GW], p[P_GB], 1e-5f));
    /* conv_transpose 4x4 stride 2, groups 4 -> [N, 8, 36, 34] -> avgpool 2 -> upsample 2 */
    md_tensor *t = md_conv_transpose2d(g, h, p[P_WT], p[P_BT], 2, 1, 4);
    t = md_upsample_nearest2d(g, md_avgpool2d(g, t, 2, 2), 2);
    /* conv1d, stride 2, over the flattened image: [N, 8, 36*34] -> [N, 8, 612] */
    int64_t s3[3] = {N, 8, -1};
    md_tensor *r = md_conv1d(g, md_reshape(g, t, 3, s3), p[P_W1D], NULL, 2, 2, 1);
    /* VQ on rows of D values */
    int64_t s2[2] = {-1, D};
    md_tensor *z = md_reshape(g, r, 2, s2);
    md_vq_result q = md_vq(g, z, p[P_CB]);
    /* fused groupnorm + SiLU -> conv3x3 with 64 outputs (the shifted-copy
     * weight gradient with its bias sum), as in the residual block */
    md_tensor *f = md_groupnorm_silu(g, p[P_X], 16, p[P_GW2], p[P_GB2], 1e-6f);
    f = md_conv2d(g, f, p[P_W2], p[P_B2], 1, 1, 1);
    md_tensor *loss = md_add(g, md_add(g, md_mean(g, md_mul(g, q.zq, q.zq)), q.codebook_loss),
                             md_scale(g, q.commit_loss, 0.25f));
    loss = md_add(g, loss, md_mean(g, md_mul(g, f, f)));
    md_graph_backward(g, loss);
    md_paramset_finish_grads(m->ps);

    md_tensor *outs[] = {h, t, r, q.zq, f, loss};
    size_t n = 0;
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++)
        n += (size_t)md_numel(outs[i]);
    n += (size_t)md_numel(q.indices) + (size_t)md_paramset_numel(m->ps);
    float *all = malloc(sizeof(float) * n);
    size_t o = 0;
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) {
        memcpy(all + o, outs[i]->data, sizeof(float) * (size_t)md_numel(outs[i]));
        o += (size_t)md_numel(outs[i]);
    }
    memcpy(all + o, q.indices->data, sizeof(int32_t) * (size_t)md_numel(q.indices));
    o += (size_t)md_numel(q.indices);
    memcpy(all + o, md_paramset_grads(m->ps), sizeof(float) * (size_t)md_paramset_numel(m->ps));
    md_graph_free(g);
    *count = n;
    return all;
}

int main(void)
{
    det_model m;
    model_init(&m);
    size_t n1, n;
    float *ref = run(&m, 1, &n1);
    int bad = 0;
    for (int threads = 2; threads <= 3; threads++) {
        float *got = run(&m, threads, &n);
        size_t diff = 0, first = n;
        for (size_t i = 0; i < n; i++)
            if (memcmp(&ref[i], &got[i], sizeof(float)) != 0) {
                if (first == n)
                    first = i;
                diff++;
            }
        printf("%s %d threads: %zu of %zu values differ from 1 thread", diff ? "FAIL" : "ok  ", threads, diff, n);
        if (diff)
            printf(" (first at %zu: %.9g vs %.9g)", first, (double)ref[first], (double)got[first]);
        printf("\n");
        bad += diff != 0 || n != n1;
        free(got);
    }
    free(ref);
    md_paramset_free(m.ps);
    return bad ? 1 : 0;
}
