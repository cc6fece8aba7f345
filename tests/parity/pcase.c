/* pcase.c — see pcase.h. */
#include "pcase.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void put_u32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }
static void put_str(FILE *f, const char *s)
{
    put_u32(f, (uint32_t)strlen(s));
    fwrite(s, 1, strlen(s), f);
}

int pc_open(pc_ctx *c, const char *path)
{
    memset(c, 0, sizeof *c);
    c->f = fopen(path, "wb");
    if (!c->f) {
        fprintf(stderr, "cannot write %s\n", path);
        return -1;
    }
    fwrite("MDPC", 1, 4, c->f);
    put_u32(c->f, 1);
    const char *e = getenv("MEDLEY_TEST_SEED");
    uint64_t seed = e && *e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL);
    printf("seed %llu (set MEDLEY_TEST_SEED to replay)\n", (unsigned long long)seed);
    md_rng_init(&c->rng, seed);
    c->fd_tol = 2e-2;
    return 0;
}

int pc_close(pc_ctx *c)
{
    if (c->f)
        fclose(c->f);
    c->f = NULL;
    printf("%d cases, %d finite-difference failures\n", c->cases, c->failures);
    return c->failures;
}

void pc_case_begin(pc_ctx *c, const char *op, const char *params)
{
    put_u32(c->f, 1);
    put_str(c->f, op);
    put_str(c->f, params ? params : "{}");
    c->cases++;
}

void pc_case_end(pc_ctx *c) { put_u32(c->f, 3); }

void pc_dump(pc_ctx *c, const char *role, const md_tensor *t, const float *data)
{
    put_u32(c->f, 2);
    put_str(c->f, role);
    put_u32(c->f, t->dtype == MD_I32 ? 3u : 0u);
    put_u32(c->f, (uint32_t)t->ndim);
    fwrite(t->shape, 8, (size_t)t->ndim, c->f);
    fwrite(data, 4, (size_t)md_numel(t), c->f);
}

void pc_fill(pc_ctx *c, float *x, int64_t n, float std)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = std * md_rng_normal(&c->rng);
}

static void fill_input(pc_ctx *c, md_tensor *t, const pc_input *in)
{
    int64_t n = md_numel(t);
    if (in->dtype == MD_I32) {
        for (int64_t i = 0; i < n; i++)
            md_i32(t)[i] = (int32_t)md_rng_below(&c->rng, (uint32_t)in->ihigh);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = (in->lo == 0.f && in->hi == 0.f) ? md_rng_normal(&c->rng)
                                                   : in->lo + (in->hi - in->lo) * md_rng_uniform(&c->rng);
        if (in->positive && fabsf(v) < 0.05f)
            v = v < 0 ? v - 0.05f : v + 0.05f;
        t->data[i] = v;
    }
}

/* L = Σ_k <out_k, dout_k>, in double. */
static double eval_loss(md_graph *g, int nin, const pc_input *ins, float **vals, pc_op_fn fn,
                        void *user, float **douts)
{
    md_graph_reset(g);
    md_graph_set_grad(g, false);
    md_tensor *in[8], *out[8];
    for (int i = 0; i < nin; i++)
        in[i] = md_tensor_wrap(g, ins[i].dtype, vals[i], ins[i].ndim, ins[i].shape);
    int nout = fn(g, in, out, user);
    double L = 0;
    for (int k = 0; k < nout; k++) {
        if (out[k]->dtype != MD_F32 || !douts[k])
            continue;
        int64_t n = md_numel(out[k]);
        for (int64_t i = 0; i < n; i++)
            L += (double)out[k]->data[i] * douts[k][i];
    }
    md_graph_set_grad(g, true);
    return L;
}

void pc_run(pc_ctx *c, const char *op, const char *params, int nin, const pc_input *ins,
            pc_op_fn fn, void *user)
{
    MD_ASSERT(nin <= 8);
    md_graph *g = md_graph_new(1 << 20);
    md_graph_set_seed(g, 1234);
    md_tensor *in[8], *out[8];
    float *vals[8];
    for (int i = 0; i < nin; i++) {
        in[i] = md_tensor_new(g, ins[i].dtype, ins[i].ndim, ins[i].shape, ins[i].grad);
        fill_input(c, in[i], &ins[i]);
    }
    int nout = fn(g, in, out, user);
    pc_case_begin(c, op, params);
    char role[32];
    float *douts[8] = {0};
    for (int i = 0; i < nin; i++) {
        snprintf(role, sizeof role, "in%d", i);
        pc_dump(c, role, in[i], in[i]->data);
        vals[i] = malloc(sizeof(float) * (size_t)md_numel(in[i]) + 4);
        memcpy(vals[i], in[i]->data, md_dtype_size(in[i]->dtype) * (size_t)md_numel(in[i]));
    }
    for (int k = 0; k < nout; k++) {
        snprintf(role, sizeof role, "out%d", k);
        pc_dump(c, role, out[k], out[k]->data);
        if (out[k]->dtype != MD_F32 || !out[k]->grad)
            continue;
        int64_t n = md_numel(out[k]);
        douts[k] = malloc(sizeof(float) * (size_t)n);
        pc_fill(c, douts[k], n, 1.f);
        memcpy(out[k]->grad, douts[k], sizeof(float) * (size_t)n);
        *out[k]->grad_ready = 1;
        snprintf(role, sizeof role, "dout%d", k);
        pc_dump(c, role, out[k], douts[k]);
    }
    md_graph_run_backward(g);
    float *grads[8] = {0};
    for (int i = 0; i < nin; i++) {
        if (!ins[i].grad)
            continue;
        int64_t n = md_numel(in[i]);
        grads[i] = malloc(sizeof(float) * (size_t)n);
        if (in[i]->grad && *in[i]->grad_ready)
            memcpy(grads[i], in[i]->grad, sizeof(float) * (size_t)n);
        else
            memset(grads[i], 0, sizeof(float) * (size_t)n);
        snprintf(role, sizeof role, "grad%d", i);
        pc_dump(c, role, in[i], grads[i]);
    }
    pc_case_end(c);

    /* Finite differences along a random direction v, per grad input. The
     * graph is reset by each evaluation: use only the saved copies now. */
    int64_t numel[8];
    for (int i = 0; i < nin; i++)
        numel[i] = md_numel(in[i]);
    for (int i = 0; i < nin; i++) {
        if (!ins[i].grad)
            continue;
        int64_t n = numel[i];
        float *v = malloc(sizeof(float) * (size_t)n);
        float *orig = malloc(sizeof(float) * (size_t)n);
        memcpy(orig, vals[i], sizeof(float) * (size_t)n);
        pc_fill(c, v, n, 1.f);
        double analytic = 0, g2 = 0, v2 = 0;
        for (int64_t j = 0; j < n; j++) {
            analytic += (double)grads[i][j] * v[j];
            g2 += (double)grads[i][j] * grads[i][j];
            v2 += (double)v[j] * v[j];
        }
        /* The error of a difference quotient scales with how strongly the
         * loss moves along typical directions, ||g|| * rms(v), not with this
         * one projection, which a random v can nearly cancel (a per-channel
         * bias before a GroupNorm: 0.15 where typical values are ~50). */
        const double scale = sqrt(g2) * sqrt(v2 / (double)n);
        double num = 0, best_err = INFINITY;
        /* two step sizes; keep the better agreement (kinks, f32 rounding) */
        const float steps[2] = {1e-2f, 3e-3f};
        for (int s = 0; s < 2; s++) {
            float h = steps[s];
            for (int64_t j = 0; j < n; j++) vals[i][j] = orig[j] + h * v[j];
            double lp = eval_loss(g, nin, ins, vals, fn, user, douts);
            for (int64_t j = 0; j < n; j++) vals[i][j] = orig[j] - h * v[j];
            double lm = eval_loss(g, nin, ins, vals, fn, user, douts);
            double est = (lp - lm) / (2.0 * h);
            double err = fabs(est - analytic) / fmax(fmax(1.0, scale), fmax(fabs(est), fabs(analytic)));
            if (err < best_err) {
                best_err = err;
                num = est;
            }
        }
        memcpy(vals[i], orig, sizeof(float) * (size_t)n);
        bool ok = best_err <= c->fd_tol;
        printf("%-4s fd  %-22s %s input %d: analytic %.6g numeric %.6g (rel err %.2e)\n",
               ok ? "ok" : "FAIL", op, params ? params : "", i, analytic, num, best_err);
        if (!ok)
            c->failures++;
        free(v);
        free(orig);
    }
    for (int i = 0; i < nin; i++) {
        free(vals[i]);
        free(grads[i]);
    }
    for (int k = 0; k < nout; k++)
        free(douts[k]);
    md_graph_free(g);
}
