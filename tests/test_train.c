/* test_train.c — end-to-end training: the engine must learn.
 *   1. a tiny decoder-only transformer learns to reverse digit strings
 *      (the `medley demo` job): training loss < 0.05 (it starts at ln 10
 *      ~ 2.3) and held-out exact-match accuracy >= 90% after 400 steps;
 *   2. a tiny conv autoencoder (strided convs, a GroupNorm residual block,
 *      a transposed conv, nearest upsampling) learns digit-like images:
 *      held-out MSE below 0.01 (a blank guess scores ~0.08) in 300 steps. */
#include "check.h"
#include "demo.h"
#include "optim.h"
#include "toy.h"

#include <stdlib.h>

static void train_reverse(void)
{
    md_demo_opts o;
    md_demo_default_opts(&o);
    o.steps = 400;
    md_demo_result r;
    md_status st = md_demo_reverse(&o, &r);
    CHECK(st == MD_OK, "reverse task ran (%s)", md_status_str(st));
    printf("     loss %.3f -> %.3f in %d steps, %.1f s\n", r.first_loss, r.final_loss, r.steps_run, r.train_seconds);
    CHECK(r.final_loss < 0.05f, "transformer training loss below 0.05 within %d steps (%.4f)", r.steps_run,
          r.final_loss);
    CHECK(r.accuracy >= 0.90f, "transformer reverses held-out strings: %.1f%% exact (digits %.1f%%)",
          100.0 * r.accuracy, 100.0 * r.token_accuracy);
}

static float ae_eval(md_graph *g, toy_ae *m, float *imgs, int n)
{
    md_graph_reset(g);
    md_graph_set_grad(g, false);
    md_tensor *x = md_tensor_wrap(g, MD_F32, imgs, 4, (int64_t[]){n, 1, TOY_HW, TOY_HW});
    float l = md_mse(g, toy_ae_forward(g, m, x), x)->data[0];
    md_graph_set_grad(g, true);
    return l;
}

static void train_autoencoder(void)
{
    const int B = 32, STEPS = 300, NT = 64;
    toy_ae m;
    toy_ae_init(&m, 3);
    md_adamw opt;
    md_adamw_init(&opt, m.ps, 0.9f, 0.99f, 1e-8f, 0.0f);
    md_graph *g = md_graph_new(1 << 24);
    md_rng r, rt;
    md_rng_init(&r, 1);
    md_rng_init(&rt, 2);
    float *batch = malloc(sizeof(float) * B * TOY_HW * TOY_HW);
    float *test = malloc(sizeof(float) * NT * TOY_HW * TOY_HW);
    for (int i = 0; i < NT; i++)
        toy_digit(&rt, i % 10, test + i * TOY_HW * TOY_HW);
    float blank = 0;
    for (int i = 0; i < NT * TOY_HW * TOY_HW; i++)
        blank += test[i] * test[i];
    blank /= (float)(NT * TOY_HW * TOY_HW);
    float before = ae_eval(g, &m, test, NT);
    double t0 = md_time_now();
    for (int step = 0; step < STEPS; step++) {
        for (int i = 0; i < B; i++)
            toy_digit(&r, (int)md_rng_below(&r, 10), batch + i * TOY_HW * TOY_HW);
        md_graph_reset(g);
        md_paramset_zero_grad(m.ps);
        md_tensor *x = md_tensor_wrap(g, MD_F32, batch, 4, (int64_t[]){B, 1, TOY_HW, TOY_HW});
        md_tensor *loss = md_mse(g, toy_ae_forward(g, &m, x), x);
        md_graph_backward(g, loss);
        md_paramset_finish_grads(m.ps);
        md_adamw_step(&opt, md_lr_warmup_cosine(step, 20, STEPS, 3e-3f, 3e-4f));
    }
    float after = ae_eval(g, &m, test, NT);
    printf("     held-out MSE %.4f -> %.4f (all-zero guess %.4f) in %d steps, %.1f s\n", before, after, blank,
           STEPS, md_time_now() - t0);
    CHECK(after < 0.01f, "conv autoencoder reconstructs held-out digit images (MSE %.4f < 0.01)", after);
    free(batch);
    free(test);
    md_graph_free(g);
    md_adamw_free(&opt);
    md_paramset_free(m.ps);
}

int main(void)
{
    md_threads_init();
    train_reverse();
    train_autoencoder();
    return check_done();
}
