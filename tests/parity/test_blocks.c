/* test_blocks.c — whole blocks against PyTorch with identical weights: the
 * pre-LN transformer block (causal, bidirectional, with cross-attention to
 * a condition) and the GroupNorm conv residual block. Dumps input, every
 * parameter, output, upstream gradient, and the gradients of the input, the
 * condition and every parameter for oracle.py. */
#include "nn.h"
#include "pcase.h"

#include <stdio.h>
#include <string.h>

static void dump_params(pc_ctx *c, md_paramset *ps, bool grads)
{
    char role[300];
    for (int i = 0; i < md_paramset_count(ps); i++) {
        md_tensor *t = md_paramset_get(ps, i);
        snprintf(role, sizeof role, "%s:%s", grads ? "pgrad" : "param", t->name);
        pc_dump(c, role, t, grads ? t->grad : t->data);
    }
}

/* Perturb norms and biases so the test does not pass by symmetry. */
static void jitter(pc_ctx *c, md_paramset *ps)
{
    for (int i = 0; i < md_paramset_count(ps); i++) {
        md_tensor *t = md_paramset_get(ps, i);
        if (t->ndim == 1)
            for (int64_t j = 0; j < md_numel(t); j++)
                t->data[j] += 0.1f * md_rng_normal(&c->rng);
    }
}

static void run_block(pc_ctx *c, const char *op, const char *params, md_paramset *ps,
                      md_tensor *(*fwd)(md_graph *, md_tensor *, md_tensor *, void *), void *user,
                      int xnd, const int64_t *xs, int cnd, const int64_t *cs)
{
    md_graph *g = md_graph_new(1 << 22);
    md_tensor *x = md_tensor_new(g, MD_F32, xnd, xs, true);
    pc_fill(c, x->data, md_numel(x), 1.f);
    md_tensor *cond = NULL;
    if (cnd) {
        cond = md_tensor_new(g, MD_F32, cnd, cs, true);
        pc_fill(c, cond->data, md_numel(cond), 1.f);
    }
    md_paramset_zero_grad(ps);
    md_tensor *y = fwd(g, x, cond, user);
    pc_case_begin(c, op, params);
    pc_dump(c, "in0", x, x->data);
    if (cond)
        pc_dump(c, "in1", cond, cond->data);
    dump_params(c, ps, false);
    pc_dump(c, "out0", y, y->data);
    pc_fill(c, y->grad, md_numel(y), 1.f);
    *y->grad_ready = 1;
    pc_dump(c, "dout0", y, y->grad);
    md_graph_run_backward(g);
    md_paramset_finish_grads(ps);
    pc_dump(c, "grad0", x, x->grad);
    if (cond)
        pc_dump(c, "grad1", cond, cond->grad);
    dump_params(c, ps, true);
    pc_case_end(c);
    md_graph_free(g);
    printf("ok   ran %s %s\n", op, params);
}

typedef struct { md_tblock *b; bool causal; } tb_ctx;

static md_tensor *tb_fwd(md_graph *g, md_tensor *x, md_tensor *cond, void *user)
{
    tb_ctx *t = user;
    return md_tblock_forward(g, t->b, x, cond, t->causal, 0.f);
}

static md_tensor *rb_fwd(md_graph *g, md_tensor *x, md_tensor *cond, void *user)
{
    return md_resblock_forward(g, user, x);
}

int main(int argc, char **argv)
{
    pc_ctx c;
    if (pc_open(&c, argc > 1 ? argv[1] : "parity_blocks.bin"))
        return 1;
    char prm[256];
    for (int variant = 0; variant < 3; variant++) {
        int64_t d = 64, heads = 4, dcond = variant == 2 ? 48 : 0;
        bool causal = variant != 1;
        md_paramset *ps = md_paramset_new();
        md_tblock b;
        md_tblock_declare(&b, ps, "blk", d, heads, 4, dcond);
        md_paramset_alloc(ps);
        md_tblock_init(&b, 7 + (uint64_t)variant, 2);
        jitter(&c, ps);
        tb_ctx t = {&b, causal};
        int64_t xs[3] = {2, 37, d}, cs[3] = {2, 11, dcond};
        snprintf(prm, sizeof prm, "{\"heads\":%d,\"causal\":%s,\"cross\":%s,\"tol\":2e-4}", (int)heads,
                 causal ? "true" : "false", dcond ? "true" : "false");
        run_block(&c, "nn.tblock", prm, ps, tb_fwd, &t, 3, xs, dcond ? 3 : 0, cs);
        md_paramset_free(ps);
    }
    for (int variant = 0; variant < 2; variant++) {
        int64_t cin = 32, cout = variant ? 64 : 32;
        md_paramset *ps = md_paramset_new();
        md_resblock b;
        md_resblock_declare(&b, ps, "res", cin, cout, 8);
        md_paramset_alloc(ps);
        md_resblock_init(&b, 11);
        jitter(&c, ps);
        int64_t xs[4] = {2, cin, 9, 12};
        snprintf(prm, sizeof prm, "{\"groups\":8,\"tol\":2e-4}");
        run_block(&c, "nn.resblock", prm, ps, rb_fwd, &b, 4, xs, 0, NULL);
        md_paramset_free(ps);
    }
    return pc_close(&c) != 0;
}
