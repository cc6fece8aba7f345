/* test_determinism.c — same seed, same steps: bit-identical losses and
 * weights with 1 and with 2 threads, for a transformer (with dropout) and
 * for the conv autoencoder, both trained with AdamW and clipping. */
#include "check.h"
#include "lm.h"
#include "optim.h"
#include "toy.h"

#include <stdlib.h>

#define STEPS 8

static void run_lm(int threads, float *losses, float *weights_out, int64_t *nw)
{
    md_threads_set(threads);
    md_lm m;
    md_lm_init(&m, 23, 64, 2, 4, 32, 11);
    md_adamw opt;
    md_adamw_init(&opt, m.ps, 0.9f, 0.95f, 1e-8f, 0.1f);
    md_graph *g = md_graph_new(1 << 22);
    md_graph_set_seed(g, 5);
    md_rng r;
    md_rng_init(&r, 3);
    int32_t ids[8 * 32], tg[8 * 32];
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < 8 * 32; i++) {
            ids[i] = (int32_t)md_rng_below(&r, 23);
            tg[i] = (int32_t)md_rng_below(&r, 23);
        }
        md_graph_reset(g);
        md_paramset_zero_grad(m.ps);
        md_tensor *x = md_tensor_wrap(g, MD_I32, ids, 2, (int64_t[]){8, 32});
        md_tensor *t = md_tensor_wrap(g, MD_I32, tg, 1, (int64_t[]){8 * 32});
        md_tensor *loss = md_cross_entropy(g, md_lm_forward(g, &m, x, 0.1f), t, 0.1f, -100);
        md_graph_backward(g, loss);
        md_paramset_finish_grads(m.ps);
        md_clip_grad_norm(m.ps, 0.5f);
        md_adamw_step(&opt, 1e-3f);
        losses[s] = loss->data[0];
    }
    *nw = md_paramset_numel(m.ps);
    if (weights_out)
        memcpy(weights_out, md_paramset_values(m.ps), sizeof(float) * (size_t)*nw);
    md_graph_free(g);
    md_adamw_free(&opt);
    md_lm_free(&m);
}

static void run_ae(int threads, float *losses, float *weights_out, int64_t *nw)
{
    md_threads_set(threads);
    toy_ae m;
    toy_ae_init(&m, 8);
    md_adamw opt;
    md_adamw_init(&opt, m.ps, 0.9f, 0.99f, 1e-8f, 0.01f);
    md_graph *g = md_graph_new(1 << 22);
    md_rng r;
    md_rng_init(&r, 4);
    float *batch = malloc(sizeof(float) * 16 * TOY_HW * TOY_HW);
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < 16; i++)
            toy_digit(&r, i % 10, batch + i * TOY_HW * TOY_HW);
        md_graph_reset(g);
        md_paramset_zero_grad(m.ps);
        md_tensor *x = md_tensor_wrap(g, MD_F32, batch, 4, (int64_t[]){16, 1, TOY_HW, TOY_HW});
        md_tensor *loss = md_mse(g, toy_ae_forward(g, &m, x), x);
        md_graph_backward(g, loss);
        md_paramset_finish_grads(m.ps);
        md_clip_grad_norm(m.ps, 1.0f);
        md_adamw_step(&opt, 2e-3f);
        losses[s] = loss->data[0];
    }
    *nw = md_paramset_numel(m.ps);
    if (weights_out)
        memcpy(weights_out, md_paramset_values(m.ps), sizeof(float) * (size_t)*nw);
    free(batch);
    md_graph_free(g);
    md_adamw_free(&opt);
    md_paramset_free(m.ps);
}

static void compare(const char *what, void (*run)(int, float *, float *, int64_t *))
{
    float l1[STEPS], l2[STEPS];
    int64_t n1, n2;
    run(1, l1, NULL, &n1);
    float *w1 = malloc(sizeof(float) * (size_t)n1), *w2 = malloc(sizeof(float) * (size_t)n1);
    run(1, l1, w1, &n1);
    run(2, l2, w2, &n2);
    printf("     %s losses:", what);
    for (int s = 0; s < STEPS; s++)
        printf(" %.6f", l1[s]);
    printf("\n");
    CHECK(memcmp(l1, l2, sizeof l1) == 0, "%s: %d losses bit-identical with 1 and 2 threads", what, STEPS);
    CHECK(n1 == n2 && memcmp(w1, w2, sizeof(float) * (size_t)n1) == 0,
          "%s: %lld weights bit-identical after training", what, (long long)n1);
    float l3[STEPS];
    run(2, l3, w2, &n2);
    CHECK(memcmp(l2, l3, sizeof l2) == 0, "%s: a second 2-thread run repeats exactly", what);
    free(w1);
    free(w2);
}

int main(void)
{
    md_threads_init();
    compare("transformer", run_lm);
    compare("conv autoencoder", run_ae);
    return check_done();
}
