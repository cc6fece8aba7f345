/* test_gpu.c — the gpu suite: every CUDA kernel against the engine's CPU op
 * on the same seeded inputs, the MEDLEY_DEVICE=cuda backend, and a short
 * training run on both backends. Skips (77) where this build has no CUDA
 * kernels or the machine no usable GPU.
 *
 * Error measure: max |gpu - cpu| / (max |cpu| + 1e-6) over an output,
 * against a limit per op (1e-5 elementwise and norms, 1e-4 for products in
 * strict fp32, 2e-3 with TF32). Sizes are ragged (37, 129, 1000) so an
 * index slip shows. One "ok"/"FAIL" line per output.
 */
#include "backend.h"
#include "cuda_info.h"
#include "kernels_cpu.h"
#include "ops.h"
#include "optim.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MEDLEY_HAVE_CUDA

int main(void)
{
    printf("skipped: this build has no CUDA kernels (meson -Dcuda=enabled with the CUDA toolkit and nvcc)\n");
    return 77;
}

#else

#include "cuda/md_cuda.h"
#include "tokens_device.h"

#define LIM_ELEM 1e-5
#define LIM_GEMM 1e-4
#define LIM_TF32 2e-3

static md_cuda *C;
static int failures, checks;

/* ---- helpers ----------------------------------------------------------------- */

static void report(const char *what, double err, double limit)
{
    bool ok = err <= limit;   /* NaN fails */
    checks++;
    if (!ok)
        failures++;
    printf("%-4s %-40s err %.2e  (limit %.0e)\n", ok ? "ok" : "FAIL", what, err, limit);
    fflush(stdout);
}

static double nerr(const float *gpu, const float *cpu, int64_t n)
{
    double md = 0, mc = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)gpu[i] - (double)cpu[i]);
        if (isnan(gpu[i]) != isnan(cpu[i]))
            return NAN;
        if (d > md)
            md = d;
        if (fabs((double)cpu[i]) > mc)
            mc = fabs((double)cpu[i]);
    }
    return md / (mc + 1e-6);
}

static float *hrand(int64_t n, uint64_t seed, float lo, float hi)
{
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
    MD_ASSERT(x);
    md_fill_uniform(x, n, seed, 0, lo, hi);
    return x;
}

/* Device copy of n floats (or bytes-sized ints) from the arena; the whole
 * check stops (the test fails) when the arena or the copy fails. */
static void *dput(const void *h, size_t bytes)
{
    void *d = md_cuda_alloc(C, bytes ? bytes : 1);
    if (!d || md_cuda_upload(C, d, h, bytes) != MD_OK) {
        printf("FAIL device allocation or upload of %zu bytes\n", bytes);
        exit(1);
    }
    return d;
}

static float *dnew(int64_t n)
{
    float *d = md_cuda_alloc(C, sizeof(float) * (size_t)(n ? n : 1));
    if (!d) {
        printf("FAIL device allocation of %lld floats\n", (long long)n);
        exit(1);
    }
    return d;
}

/* Host copy of a device result (after all queued work). */
static float *dget(const void *d, int64_t n)
{
    float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
    MD_ASSERT(h);
    if (md_cuda_download(C, h, d, sizeof(float) * (size_t)n) != MD_OK) {
        printf("FAIL download: %s\n", md_last_error());
        exit(1);
    }
    return h;
}

static void cmp(const char *what, const void *gpu_dev, const float *cpu, int64_t n, double limit)
{
    float *g = dget(gpu_dev, n);
    report(what, nerr(g, cpu, n), limit);
    free(g);
}

static void status_ok(const char *what, md_status st)
{
    if (st != MD_OK) {
        printf("FAIL %s returned %s: %s\n", what, md_status_str(st), md_last_error());
        failures++;
    }
}

/* A CPU graph (whatever MEDLEY_DEVICE says) and its tensors. */
static md_graph *cpu_graph(void)
{
    md_graph *g = md_graph_new(1 << 20);
    MD_ASSERT(g);
    md_graph_set_backend(g, md_backend_cpu());
    return g;
}

static md_tensor *tin(md_graph *g, int nd, const int64_t *shape, bool rg, uint64_t seed, float lo, float hi)
{
    md_tensor *t = md_tensor_new(g, MD_F32, nd, shape, rg);
    md_fill_uniform(t->data, md_numel(t), seed, 0, lo, hi);
    return t;
}

/* ---- products ------------------------------------------------------------------- */

static void check_gemm_one(bool ta, bool tb, bool tf32)
{
    const int64_t m = 129, n = 37, k = 1000;
    const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
    const int64_t ar = ta ? k : m, br = tb ? n : k;
    float *a = hrand(ar * lda, 11, -1, 1), *b = hrand(br * ldb, 12, -1, 1), *c = hrand(m * ldc, 13, -1, 1);
    float *ref = malloc(sizeof(float) * (size_t)(m * ldc));
    memcpy(ref, c, sizeof(float) * (size_t)(m * ldc));
    md_cpu_gemm_naive(ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.3f, ref, ldc);
    md_cuda_rewind(C);
    float *da = dput(a, sizeof(float) * (size_t)(ar * lda)), *db = dput(b, sizeof(float) * (size_t)(br * ldb));
    float *dc = dput(c, sizeof(float) * (size_t)(m * ldc));
    status_ok("md_cuda_set_tf32", md_cuda_set_tf32(C, tf32));
    status_ok("md_cuda_gemm", md_cuda_gemm(C, ta, tb, m, n, k, 0.7f, da, lda, db, ldb, 0.3f, dc, ldc));
    status_ok("md_cuda_set_tf32", md_cuda_set_tf32(C, false));
    char what[64];
    snprintf(what, sizeof what, "gemm %s%s 129x37x1000 %s", ta ? "T" : "N", tb ? "T" : "N", tf32 ? "tf32" : "fp32");
    float *g = dget(dc, m * ldc);
    /* the padding columns of C are the caller's: untouched */
    bool pad_ok = true;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = n; j < ldc; j++)
            pad_ok = pad_ok && g[i * ldc + j] == c[i * ldc + j];
    report(what, pad_ok ? nerr(g, ref, m * ldc) : INFINITY, tf32 ? LIM_TF32 : LIM_GEMM);
    free(g); free(a); free(b); free(c); free(ref);
}

static void check_gemm_batched(bool ta, bool tb)
{
    const int64_t batch = 5, m = 37, n = 129, k = 64;
    const int64_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
    const int64_t sa = (ta ? k : m) * lda + 7, sb = (tb ? n : k) * ldb + 3, sc = m * ldc;
    float *a = hrand(batch * sa, 21, -1, 1), *b = hrand(batch * sb, 22, -1, 1), *c = hrand(batch * sc, 23, -1, 1);
    float *ref = malloc(sizeof(float) * (size_t)(batch * sc));
    memcpy(ref, c, sizeof(float) * (size_t)(batch * sc));
    for (int64_t i = 0; i < batch; i++)
        md_cpu_gemm_naive(ta, tb, m, n, k, 1.0f, a + i * sa, lda, b + i * sb, ldb, 0.5f, ref + i * sc, ldc);
    md_cuda_rewind(C);
    float *da = dput(a, sizeof(float) * (size_t)(batch * sa)), *db = dput(b, sizeof(float) * (size_t)(batch * sb));
    float *dc = dput(c, sizeof(float) * (size_t)(batch * sc));
    status_ok("md_cuda_gemm_batched", md_cuda_gemm_batched(C, batch, ta, tb, m, n, k, 1.0f, da, lda, sa, db, ldb, sb,
                                                           0.5f, dc, ldc, sc));
    char what[64];
    snprintf(what, sizeof what, "gemm_batched %s%s 5x37x129x64", ta ? "T" : "N", tb ? "T" : "N");
    cmp(what, dc, ref, batch * sc, LIM_GEMM);
    free(a); free(b); free(c); free(ref);
}

static void check_products(void)
{
    for (int t = 0; t < 4; t++)
        check_gemm_one(t & 1, t & 2, false);
    for (int t = 0; t < 4; t++)
        check_gemm_one(t & 1, t & 2, true);
    check_gemm_batched(false, true);
    check_gemm_batched(true, false);
}

/* ---- elementwise ------------------------------------------------------------------- */

static void check_unary(void)
{
    static const char *names[] = {"gelu", "silu", "relu", "tanh", "sigmoid", "exp"};
    const int64_t shape[2] = {37, 1001}, n = 37 * 1001;
    for (int op = MD_CUDA_GELU; op <= MD_CUDA_EXP; op++) {
        md_graph *g = cpu_graph();
        md_tensor *x = tin(g, 2, shape, true, 100 + (uint64_t)op, -4, 4);
        md_tensor *y;
        switch (op) {
        case MD_CUDA_GELU: y = md_gelu(g, x); break;
        case MD_CUDA_SILU: y = md_silu(g, x); break;
        case MD_CUDA_RELU: y = md_relu(g, x); break;
        case MD_CUDA_TANH: y = md_tanh(g, x); break;
        case MD_CUDA_SIGMOID: y = md_sigmoid(g, x); break;
        default: y = md_exp(g, x); break;
        }
        float *dy = hrand(n, 200 + (uint64_t)op, -1, 1);
        md_graph_backward_from(g, y, dy);
        md_cuda_rewind(C);
        float *dx_ = dput(x->data, sizeof(float) * (size_t)n), *ddy = dput(dy, sizeof(float) * (size_t)n);
        float *dyv = dnew(n), *ddx = dnew(n);
        status_ok("md_cuda_unary_fwd", md_cuda_unary_fwd(C, (md_cuda_unary_op)op, dyv, dx_, n));
        status_ok("md_cuda_unary_bwd", md_cuda_unary_bwd(C, (md_cuda_unary_op)op, ddx, ddy, dx_, dyv, n));
        char what[64];
        snprintf(what, sizeof what, "%s forward", names[op]);
        cmp(what, dyv, y->data, n, LIM_ELEM);
        snprintf(what, sizeof what, "%s backward", names[op]);
        cmp(what, ddx, x->grad, n, LIM_ELEM);
        free(dy);
        md_graph_free(g);
    }
}

static void check_binary(void)
{
    static const char *names[] = {"add", "sub", "mul"};
    const int64_t shape[3] = {3, 129, 37}, n = 3 * 129 * 37;
    for (int op = MD_CUDA_ADD; op <= MD_CUDA_MUL; op++) {
        md_graph *g = cpu_graph();
        md_tensor *a = tin(g, 3, shape, false, 300, -2, 2), *b = tin(g, 3, shape, false, 301, -2, 2);
        md_tensor *y = op == MD_CUDA_ADD ? md_add(g, a, b) : op == MD_CUDA_SUB ? md_sub(g, a, b) : md_mul(g, a, b);
        md_cuda_rewind(C);
        float *da = dput(a->data, sizeof(float) * (size_t)n), *db = dput(b->data, sizeof(float) * (size_t)n);
        float *dy = dnew(n);
        status_ok("md_cuda_binary", md_cuda_binary(C, (md_cuda_binary_op)op, dy, da, db, n));
        char what[64];
        snprintf(what, sizeof what, "%s", names[op]);
        cmp(what, dy, y->data, n, LIM_ELEM);
        md_graph_free(g);
    }
}

/* ---- norms, softmax ------------------------------------------------------------------ */

static void check_layernorm(int64_t rows, int64_t d)
{
    md_graph *g = cpu_graph();
    int64_t xs[2] = {rows, d}, ws[1] = {d};
    md_tensor *x = tin(g, 2, xs, true, 400, -3, 5);
    md_tensor *w = tin(g, 1, ws, true, 401, 0.5f, 1.5f), *b = tin(g, 1, ws, true, 402, -1, 1);
    md_tensor *y = md_layernorm(g, x, w, b, 1e-5f);
    float *dy = hrand(rows * d, 403, -1, 1);
    md_graph_backward_from(g, y, dy);
    float *mean = malloc(sizeof(float) * (size_t)rows), *rstd = malloc(sizeof(float) * (size_t)rows);
    float *y2 = malloc(sizeof(float) * (size_t)(rows * d));
    md_cpu_layernorm_fwd(y2, mean, rstd, x->data, w->data, b->data, rows, d, 1e-5f);

    md_cuda_rewind(C);
    float *dx_ = dput(x->data, sizeof(float) * (size_t)(rows * d));
    float *dw_ = dput(w->data, sizeof(float) * (size_t)d), *db_ = dput(b->data, sizeof(float) * (size_t)d);
    float *ddy = dput(dy, sizeof(float) * (size_t)(rows * d));
    float *dyv = dnew(rows * d), *dmean = dnew(rows), *drstd = dnew(rows);
    float *gx = dnew(rows * d), *gw = dnew(d), *gb = dnew(d);
    status_ok("md_cuda_layernorm_fwd", md_cuda_layernorm_fwd(C, dyv, dmean, drstd, dx_, dw_, db_, rows, d, 1e-5f));
    status_ok("md_cuda_layernorm_bwd", md_cuda_layernorm_bwd(C, gx, gw, gb, ddy, dx_, dw_, dmean, drstd, rows, d));
    char what[64];
    snprintf(what, sizeof what, "layernorm %lldx%lld y", (long long)rows, (long long)d);
    cmp(what, dyv, y->data, rows * d, LIM_ELEM);
    snprintf(what, sizeof what, "layernorm %lldx%lld mean", (long long)rows, (long long)d);
    cmp(what, dmean, mean, rows, LIM_ELEM);
    snprintf(what, sizeof what, "layernorm %lldx%lld rstd", (long long)rows, (long long)d);
    cmp(what, drstd, rstd, rows, LIM_ELEM);
    snprintf(what, sizeof what, "layernorm %lldx%lld dx", (long long)rows, (long long)d);
    cmp(what, gx, x->grad, rows * d, LIM_ELEM);
    snprintf(what, sizeof what, "layernorm %lldx%lld dw", (long long)rows, (long long)d);
    cmp(what, gw, w->grad, d, LIM_ELEM);
    snprintf(what, sizeof what, "layernorm %lldx%lld db", (long long)rows, (long long)d);
    cmp(what, gb, b->grad, d, LIM_ELEM);
    free(dy); free(mean); free(rstd); free(y2);
    md_graph_free(g);
}

static void check_softmax(void)
{
    const int64_t rows = 129, d = 1000;
    md_graph *g = cpu_graph();
    int64_t xs[2] = {rows, d};
    md_tensor *x = tin(g, 2, xs, true, 500, -6, 6);
    md_tensor *y = md_softmax(g, x);
    float *dy = hrand(rows * d, 501, -1, 1);
    md_graph_backward_from(g, y, dy);
    md_cuda_rewind(C);
    float *dx_ = dput(x->data, sizeof(float) * (size_t)(rows * d)), *ddy = dput(dy, sizeof(float) * (size_t)(rows * d));
    float *dyv = dnew(rows * d), *gx = dnew(rows * d);
    status_ok("md_cuda_softmax_fwd", md_cuda_softmax_fwd(C, dyv, dx_, rows, d));
    status_ok("md_cuda_softmax_bwd", md_cuda_softmax_bwd(C, gx, dyv, ddy, rows, d));
    cmp("softmax 129x1000 forward", dyv, y->data, rows * d, LIM_ELEM);
    cmp("softmax 129x1000 backward", gx, x->grad, rows * d, LIM_ELEM);
    free(dy);
    md_graph_free(g);
}

static void check_groupnorm(void)
{
    const int64_t N = 3, Cc = 12, H = 37, W = 5, S = H * W;
    const int G = 4;
    md_graph *g = cpu_graph();
    int64_t xs[4] = {N, Cc, H, W}, ws[1] = {Cc};
    md_tensor *x = tin(g, 4, xs, true, 600, -2, 3);
    md_tensor *w = tin(g, 1, ws, true, 601, 0.5f, 1.5f), *b = tin(g, 1, ws, true, 602, -1, 1);
    md_tensor *y = md_groupnorm(g, x, G, w, b, 1e-5f);
    int64_t n = N * Cc * S;
    float *dy = hrand(n, 603, -1, 1);
    md_graph_backward_from(g, y, dy);
    md_cuda_rewind(C);
    float *dx_ = dput(x->data, sizeof(float) * (size_t)n), *ddy = dput(dy, sizeof(float) * (size_t)n);
    float *dw_ = dput(w->data, sizeof(float) * (size_t)Cc), *db_ = dput(b->data, sizeof(float) * (size_t)Cc);
    float *dyv = dnew(n), *dmean = dnew(N * G), *drstd = dnew(N * G), *gx = dnew(n), *gw = dnew(Cc), *gb = dnew(Cc);
    status_ok("md_cuda_groupnorm_fwd", md_cuda_groupnorm_fwd(C, dyv, dmean, drstd, dx_, dw_, db_, N, Cc, S, G, 1e-5f));
    status_ok("md_cuda_groupnorm_bwd",
              md_cuda_groupnorm_bwd(C, gx, gw, gb, ddy, dx_, dw_, dmean, drstd, N, Cc, S, G));
    cmp("groupnorm [3,12,37,5] g4 y", dyv, y->data, n, LIM_ELEM);
    cmp("groupnorm [3,12,37,5] g4 dx", gx, x->grad, n, LIM_ELEM);
    cmp("groupnorm [3,12,37,5] g4 dw", gw, w->grad, Cc, LIM_ELEM);
    cmp("groupnorm [3,12,37,5] g4 db", gb, b->grad, Cc, LIM_ELEM);
    free(dy);
    md_graph_free(g);
}

/* ---- convolution ---------------------------------------------------------------------- */

static void check_conv(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t k, int stride, int pad,
                       bool bias)
{
    md_graph *g = cpu_graph();
    int64_t xs[4] = {n, c, h, w}, ws[4] = {o, c, k, k}, bs[1] = {o};
    md_tensor *x = tin(g, 4, xs, true, 700, -1, 1), *wt = tin(g, 4, ws, true, 701, -0.5f, 0.5f);
    md_tensor *bt = bias ? tin(g, 1, bs, true, 702, -1, 1) : NULL;
    md_tensor *y = md_conv2d(g, x, wt, bt, stride, pad, 1);
    int64_t ny = md_numel(y), nx = md_numel(x), nw = md_numel(wt);
    float *dy = hrand(ny, 703, -1, 1);
    md_graph_backward_from(g, y, dy);

    md_cuda_conv2d q = {.n = n, .c = c, .h = h, .w = w, .o = o, .kh = k, .kw = k, .stride = stride, .pad = pad};
    MD_ASSERT(md_cuda_conv2d_oh(&q) == y->shape[2] && md_cuda_conv2d_ow(&q) == y->shape[3]);
    md_cuda_rewind(C);
    float *dx_ = dput(x->data, sizeof(float) * (size_t)nx), *dw_ = dput(wt->data, sizeof(float) * (size_t)nw);
    float *db_ = bias ? dput(bt->data, sizeof(float) * (size_t)o) : NULL;
    float *ddy = dput(dy, sizeof(float) * (size_t)ny);
    float *scratch = md_cuda_alloc(C, md_cuda_conv2d_scratch_bytes(&q));
    float *dyv = dnew(ny), *gx = dnew(nx), *gw = dnew(nw), *gb = dnew(o);
    MD_ASSERT(scratch);
    status_ok("md_cuda_conv2d_fwd", md_cuda_conv2d_fwd(C, &q, dyv, dx_, dw_, db_, scratch));
    status_ok("md_cuda_conv2d_bwd", md_cuda_conv2d_bwd(C, &q, gx, gw, bias ? gb : NULL, ddy, dx_, dw_, scratch));
    char what[80], tag[48];
    snprintf(tag, sizeof tag, "conv2d [%lld,%lld,%lld,%lld] k%lld s%d p%d", (long long)n, (long long)c, (long long)h,
             (long long)w, (long long)k, stride, pad);
    snprintf(what, sizeof what, "%s y", tag);
    cmp(what, dyv, y->data, ny, LIM_GEMM);
    snprintf(what, sizeof what, "%s dx", tag);
    cmp(what, gx, x->grad, nx, LIM_GEMM);
    snprintf(what, sizeof what, "%s dw", tag);
    cmp(what, gw, wt->grad, nw, LIM_GEMM);
    if (bias) {
        snprintf(what, sizeof what, "%s db", tag);
        cmp(what, gb, bt->grad, o, LIM_GEMM);
    }
    free(dy);
    md_graph_free(g);
}

/* ---- rows and embedding ----------------------------------------------------------------- */

static void check_rows_embedding(void)
{
    const int64_t R = 129, D = 37, V = 101, N = 1000, E = 40;
    md_graph *g = cpu_graph();
    int64_t xs[2] = {R, D}, bs[1] = {D};
    md_tensor *x = tin(g, 2, xs, false, 900, -2, 2), *b = tin(g, 1, bs, true, 901, -1, 1);
    md_tensor *y = md_add(g, x, b);
    float *gy = hrand(R * D, 902, -1, 1);
    md_graph_backward_from(g, y, gy);
    md_cuda_rewind(C);
    float *dx = dput(x->data, sizeof(float) * (size_t)(R * D)), *db = dput(b->data, sizeof(float) * (size_t)D);
    float *dgy = dput(gy, sizeof(float) * (size_t)(R * D)), *dy = dnew(R * D), *dgb = dnew(D);
    status_ok("md_cuda_add_rows", md_cuda_add_rows(C, dy, dx, db, R, D));
    status_ok("md_cuda_sum_rows", md_cuda_sum_rows(C, dgb, dgy, R, D, 0.f));
    cmp("bias over rows", dy, y->data, R * D, LIM_ELEM);
    cmp("bias over rows backward (column sums)", dgb, b->grad, D, LIM_ELEM);
    free(gy);
    md_graph_free(g);

    g = cpu_graph();
    int64_t ts[2] = {V, E}, is[1] = {N};
    md_tensor *table = tin(g, 2, ts, true, 903, -1, 1);
    md_tensor *ids = md_tensor_new(g, MD_I32, 1, is, false);
    int32_t *iv = (int32_t *)ids->data;
    for (int64_t i = 0; i < N; i++)
        iv[i] = (int32_t)((i * 37 + i / 7) % (V - 3));   /* ids V-3.. never occur: their rows' grads are 0 */
    md_tensor *e = md_embedding(g, table, ids);
    float *ge = hrand(N * E, 904, -1, 1);
    md_graph_backward_from(g, e, ge);
    md_cuda_rewind(C);
    float *dt = dput(table->data, sizeof(float) * (size_t)(V * E));
    int32_t *did = dput(iv, sizeof(int32_t) * (size_t)N);
    float *dge = dput(ge, sizeof(float) * (size_t)(N * E)), *de = dnew(N * E), *dgt = dnew(V * E);
    status_ok("md_cuda_embedding_fwd", md_cuda_embedding_fwd(C, de, dt, did, N, E));
    status_ok("md_cuda_embedding_bwd", md_cuda_embedding_bwd(C, dgt, dge, did, N, V, E));
    cmp("embedding", de, e->data, N * E, LIM_ELEM);
    cmp("embedding backward", dgt, table->grad, V * E, LIM_ELEM);
    free(ge);
    md_graph_free(g);
}

/* ---- log-softmax and dropout --------------------------------------------------------------- */

static void check_logsoftmax_dropout(void)
{
    const int64_t R = 37, D = 1001, n = R * D;
    int64_t xs[2] = {R, D};
    md_graph *g = cpu_graph();
    md_tensor *x = tin(g, 2, xs, true, 980, -4, 4);
    md_tensor *y = md_log_softmax(g, x);
    float *gy = hrand(n, 981, -1, 1);
    md_graph_backward_from(g, y, gy);
    md_cuda_rewind(C);
    float *dx = dput(x->data, sizeof(float) * (size_t)n), *dgy = dput(gy, sizeof(float) * (size_t)n);
    float *dy = dnew(n), *gx = dnew(n);
    status_ok("md_cuda_log_softmax_fwd", md_cuda_log_softmax_fwd(C, dy, dx, R, D));
    status_ok("md_cuda_log_softmax_bwd", md_cuda_log_softmax_bwd(C, gx, dy, dgy, R, D));
    cmp("log-softmax", dy, y->data, n, LIM_ELEM);
    cmp("log-softmax backward", gx, x->grad, n, LIM_ELEM);
    md_graph_free(g);

    /* dropout: the key md_dropout draws is the graph's next stream, so a
     * second graph with the same seed draws it again for the device */
    g = cpu_graph();
    md_graph_set_seed(g, 77);
    x = tin(g, 2, xs, true, 982, -1, 1);
    y = md_dropout(g, x, 0.3f);
    md_graph_backward_from(g, y, gy);
    md_graph *g2 = cpu_graph();
    md_graph_set_seed(g2, 77);
    const uint64_t key = md_graph_next_stream(g2);
    md_cuda_rewind(C);
    dx = dput(x->data, sizeof(float) * (size_t)n);
    dgy = dput(gy, sizeof(float) * (size_t)n);
    dy = dnew(n);
    gx = dnew(n);
    status_ok("md_cuda_dropout", md_cuda_dropout(C, dy, dx, key, 0.3f, n));
    status_ok("md_cuda_dropout (backward)", md_cuda_dropout(C, gx, dgy, key, 0.3f, n));
    cmp("dropout p 0.3 (the CPU's mask)", dy, y->data, n, LIM_ELEM);
    cmp("dropout backward", gx, x->grad, n, LIM_ELEM);
    free(gy);
    md_graph_free(g2);
    md_graph_free(g);
}

/* ---- average pooling ---------------------------------------------------------------------- */

static void check_avgpool(int kernel, int stride)
{
    md_graph *g = cpu_graph();
    int64_t xs[4] = {2, 3, 13, 17};
    const int64_t nx = 2 * 3 * 13 * 17;
    md_tensor *x = tin(g, 4, xs, true, 990, -1, 1);
    md_tensor *y = md_avgpool2d(g, x, kernel, stride);
    const int64_t ny = md_numel(y);
    float *gy = hrand(ny, 991, -1, 1);
    md_graph_backward_from(g, y, gy);
    md_cuda_rewind(C);
    float *dx = dput(x->data, sizeof(float) * (size_t)nx), *dgy = dput(gy, sizeof(float) * (size_t)ny);
    float *dy = dnew(ny), *gx = dnew(nx);
    status_ok("md_cuda_avgpool_fwd", md_cuda_avgpool_fwd(C, dy, dx, 6, 13, 17, kernel, stride));
    status_ok("md_cuda_avgpool_bwd", md_cuda_avgpool_bwd(C, gx, dgy, 6, 13, 17, kernel, stride));
    char what[64];
    snprintf(what, sizeof what, "average pool k%d s%d", kernel, stride);
    cmp(what, dy, y->data, ny, LIM_ELEM);
    snprintf(what, sizeof what, "average pool k%d s%d backward", kernel, stride);
    cmp(what, gx, x->grad, nx, LIM_ELEM);
    free(gy);
    md_graph_free(g);
}

/* ---- strided copies ---------------------------------------------------------------------- */

static void check_copies(void)
{
    md_graph *g = cpu_graph();
    md_graph_set_grad(g, false);
    int64_t xs[4] = {3, 5, 7, 11};
    const int64_t n = 3 * 5 * 7 * 11;
    md_tensor *x = tin(g, 4, xs, false, 970, -1, 1);
    const int perm[4] = {2, 0, 3, 1};
    md_tensor *p = md_permute(g, x, perm);            /* [7, 3, 11, 5] */
    md_tensor *sl = md_slice(g, x, 2, 2, 6);          /* [3, 5, 4, 11] */
    md_tensor *two[2] = {x, x};
    md_tensor *cat = md_concat(g, two, 2, 1);         /* [3, 10, 7, 11] */
    const int64_t xst[4] = {5 * 7 * 11, 7 * 11, 11, 1};
    md_cuda_rewind(C);
    float *dx = dput(x->data, sizeof(float) * (size_t)n);
    float *dp = dnew(n), *ds = dnew(3 * 5 * 4 * 11), *dc = dnew(2 * n);
    /* permute: walk the output's shape, reading x by the permuted strides */
    const int64_t pshape[4] = {7, 3, 11, 5}, pss[4] = {xst[2], xst[0], xst[3], xst[1]},
                  pds[4] = {3 * 11 * 5, 11 * 5, 5, 1};
    status_ok("md_cuda_copy_strided (permute)", md_cuda_copy_strided(C, dp, pds, dx, pss, pshape, 4, 0.f));
    const int64_t sshape[4] = {3, 5, 4, 11}, sds[4] = {5 * 4 * 11, 4 * 11, 11, 1};
    status_ok("md_cuda_copy_strided (slice)", md_cuda_copy_strided(C, ds, sds, dx + 2 * 11, xst, sshape, 4, 0.f));
    const int64_t cds[4] = {10 * 7 * 11, 7 * 11, 11, 1};
    status_ok("md_cuda_copy_strided (concat 1)", md_cuda_copy_strided(C, dc, cds, dx, xst, xs, 4, 0.f));
    status_ok("md_cuda_copy_strided (concat 2)",
              md_cuda_copy_strided(C, dc + 5 * 7 * 11, cds, dx, xst, xs, 4, 0.f));
    cmp("permute (strided copy)", dp, p->data, n, 0.0);
    cmp("slice (strided copy)", ds, sl->data, 3 * 5 * 4 * 11, 0.0);
    cmp("concat (two strided copies)", dc, cat->data, 2 * n, 0.0);
    md_graph_free(g);
}

/* ---- RMSNorm and unit rows --------------------------------------------------------------- */

static void check_rms_l2(void)
{
    const int64_t R = 129, D = 37, n = R * D;
    int64_t xs[2] = {R, D}, ws[1] = {D};
    md_graph *g = cpu_graph();
    md_tensor *x = tin(g, 2, xs, true, 960, -2, 2), *w = tin(g, 1, ws, true, 961, 0.5f, 1.5f);
    md_tensor *y = md_rmsnorm(g, x, w, 1e-5f);
    float *gy = hrand(n, 962, -1, 1);
    md_graph_backward_from(g, y, gy);
    md_cuda_rewind(C);
    float *dx = dput(x->data, sizeof(float) * (size_t)n), *dw = dput(w->data, sizeof(float) * (size_t)D);
    float *dgy = dput(gy, sizeof(float) * (size_t)n), *dy = dnew(n), *rstd = dnew(R), *gx = dnew(n), *gw = dnew(D);
    status_ok("md_cuda_rmsnorm_fwd", md_cuda_rmsnorm_fwd(C, dy, rstd, dx, dw, R, D, 1e-5f));
    status_ok("md_cuda_rmsnorm_bwd", md_cuda_rmsnorm_bwd(C, gx, gw, dgy, dx, dw, rstd, R, D));
    cmp("rmsnorm", dy, y->data, n, LIM_ELEM);
    cmp("rmsnorm backward x", gx, x->grad, n, LIM_ELEM);
    cmp("rmsnorm backward w", gw, w->grad, D, LIM_ELEM);
    md_graph_free(g);

    g = cpu_graph();
    x = tin(g, 2, xs, true, 963, -2, 2);
    for (int64_t i = 0; i < D; i++)
        x->data[5 * D + i] = 1e-9f;   /* a row under eps */
    y = md_l2_normalize(g, x, 1e-6f);
    md_graph_backward_from(g, y, gy);
    md_cuda_rewind(C);
    dx = dput(x->data, sizeof(float) * (size_t)n);
    dgy = dput(gy, sizeof(float) * (size_t)n);
    dy = dnew(n);
    float *nrm = dnew(R);
    gx = dnew(n);
    status_ok("md_cuda_l2norm_fwd", md_cuda_l2norm_fwd(C, dy, nrm, dx, R, D, 1e-6f));
    status_ok("md_cuda_l2norm_bwd", md_cuda_l2norm_bwd(C, gx, dgy, dy, nrm, R, D, 1e-6f));
    cmp("unit rows (l2 normalise)", dy, y->data, n, LIM_ELEM);
    cmp("unit rows backward", gx, x->grad, n, LIM_ELEM);
    free(gy);
    md_graph_free(g);
}

/* ---- losses and upsampling --------------------------------------------------------------- */

static void check_loss_upsample(void)
{
    const int64_t n = 100003;
    for (int l1 = 0; l1 < 2; l1++) {
        md_graph *g = cpu_graph();
        int64_t sh[1] = {n};
        md_tensor *a = tin(g, 1, sh, true, 950, -2, 2), *b = tin(g, 1, sh, true, 951, -2, 2);
        md_tensor *y = l1 ? md_l1(g, a, b) : md_mse(g, a, b);
        float gy = 0.75f;
        md_graph_backward_from(g, y, &gy);
        md_cuda_rewind(C);
        float *da = dput(a->data, sizeof(float) * (size_t)n), *db = dput(b->data, sizeof(float) * (size_t)n);
        float *dy = dnew(1), *ga = dnew(n), *gb = dnew(n);
        status_ok("md_cuda_pair_loss_fwd", md_cuda_pair_loss_fwd(C, dy, da, db, n, l1));
        status_ok("md_cuda_pair_loss_bwd", md_cuda_pair_loss_bwd(C, ga, gb, da, db, gy, n, l1));
        cmp(l1 ? "l1 loss" : "mse loss", dy, y->data, 1, LIM_ELEM);
        cmp(l1 ? "l1 loss backward a" : "mse loss backward a", ga, a->grad, n, LIM_ELEM);
        cmp(l1 ? "l1 loss backward b" : "mse loss backward b", gb, b->grad, n, LIM_ELEM);
        md_graph_free(g);
    }
    md_graph *g = cpu_graph();
    int64_t xs[4] = {2, 3, 13, 7};
    const int64_t nx = 2 * 3 * 13 * 7, ny = nx * 9;
    md_tensor *x = tin(g, 4, xs, true, 952, -1, 1);
    md_tensor *y = md_upsample_nearest2d(g, x, 3);
    float *gy = hrand(ny, 953, -1, 1);
    md_graph_backward_from(g, y, gy);
    md_cuda_rewind(C);
    float *dx = dput(x->data, sizeof(float) * (size_t)nx), *dgy = dput(gy, sizeof(float) * (size_t)ny);
    float *dy = dnew(ny), *dgx = dnew(nx);
    status_ok("md_cuda_upsample_nearest", md_cuda_upsample_nearest(C, dy, dx, 6, 13, 7, 3));
    status_ok("md_cuda_upsample_nearest_bwd", md_cuda_upsample_nearest_bwd(C, dgx, dgy, 6, 13, 7, 3));
    cmp("nearest upsample x3", dy, y->data, ny, LIM_ELEM);
    cmp("nearest upsample x3 backward", dgx, x->grad, nx, LIM_ELEM);
    free(gy);
    md_graph_free(g);
}

/* ---- attention ---------------------------------------------------------------------------- */

/* Forward against md_attention, then the backward from a random upstream
 * gradient against the CPU's autograd. */
static void check_attention(int64_t B, int64_t tq, int64_t tk, int H, int64_t dh, bool causal)
{
    md_graph *g = cpu_graph();
    int64_t qs[3] = {B, tq, H * dh}, ks[3] = {B, tk, H * dh};
    md_tensor *q = tin(g, 3, qs, true, 800, -2, 2), *k = tin(g, 3, ks, true, 801, -2, 2);
    md_tensor *v = tin(g, 3, ks, true, 802, -1, 1);
    md_tensor *o = md_attention(g, q, k, v, H, causal);
    int64_t nq = md_numel(q), nk = md_numel(k);
    float *gy = hrand(nq, 803, -1, 1);
    md_graph_backward_from(g, o, gy);
    md_cuda_rewind(C);
    float *dq = dput(q->data, sizeof(float) * (size_t)nq), *dk = dput(k->data, sizeof(float) * (size_t)nk);
    float *dv = dput(v->data, sizeof(float) * (size_t)nk), *dout = dnew(nq), *lse = dnew(B * H * tq);
    float *dgy = dput(gy, sizeof(float) * (size_t)nq), *gq = dnew(nq), *gk = dnew(nk), *gv = dnew(nk);
    status_ok("md_cuda_attention_fwd", md_cuda_attention_fwd(C, dout, lse, dq, dk, dv, B, tq, tk, H, dh, causal));
    status_ok("md_cuda_attention_bwd",
              md_cuda_attention_bwd(C, gq, gk, gv, dgy, dq, dk, dv, dout, lse, B, tq, tk, H, dh, causal));
    char what[96];
    snprintf(what, sizeof what, "attention B%lld Tq%lld Tk%lld H%d Dh%lld%s", (long long)B, (long long)tq,
             (long long)tk, H, (long long)dh, causal ? " causal" : "");
    cmp(what, dout, o->data, nq, LIM_GEMM);
    /* the forward again with the kernel of one block per query row (the
     * shapes above 16 query rows and Dh <= 128 took the tiled one) */
    md_cuda_set_attention_rows(C, true);
    float *dout2 = dnew(nq);
    status_ok("md_cuda_attention_fwd (rows)",
              md_cuda_attention_fwd(C, dout2, NULL, dq, dk, dv, B, tq, tk, H, dh, causal));
    md_cuda_set_attention_rows(C, false);
    char w1[112];
    snprintf(w1, sizeof w1, "%s, row kernel", what);
    cmp(w1, dout2, o->data, nq, LIM_GEMM);
    static const char *part[3] = {"dq", "dk", "dv"};
    const float *ref[3] = {q->grad, k->grad, v->grad};
    const float *got[3] = {gq, gk, gv};
    for (int p = 0; p < 3; p++) {
        char w2[112];
        snprintf(w2, sizeof w2, "%s backward %s", what, part[p]);
        cmp(w2, got[p], ref[p], p ? nk : nq, LIM_GEMM);
    }
    free(gy);
    md_graph_free(g);
}

/* The bundled token transformer from MEDLEY_MODELS_DIR; false (nothing
 * loaded) where that is unset or its tokens.safetensors does not load. */
static bool load_bundled_tokens(md_tokmodel *m)
{
    const char *dir = getenv("MEDLEY_MODELS_DIR");
    char path[1024];
    return dir && *dir && snprintf(path, sizeof path, "%s/tokens.safetensors", dir) < (int)sizeof path &&
           md_tok_load(m, path) == MD_OK;
}

/* ---- the token transformer's steps on the device ------------------------------------------- */

static void truth(const char *what, bool ok);

/* Cached steps on the device (a prefix with 20 tokens: the tiled attention
 * over the cache; single tokens and a chunk of 10: the row kernel) against
 * the CPU's training graph over the whole sequence, row by row: each
 * step's logits are that graph's at the step's last position. */
static void check_tok_steps(const md_tokmodel *m, const char *label)
{
    enum { B = 3, TT = 60 };
    static const int chunks[] = {20, 1, 1, 1, 10, 1, 1, 25};
    enum { NCH = sizeof chunks / sizeof chunks[0] };
    md_graph *g = md_graph_new((size_t)1 << 26);
    MD_ASSERT(g);
    md_graph_set_backend(g, md_backend_cpu());
    md_graph_set_grad(g, false);
    int64_t cs[2] = {B, MD_SPACE_DIM}, is[2] = {B, TT};
    md_tensor *cond = tin(g, 2, cs, false, 1200, -0.2f, 0.2f);
    memset((float *)cond->data + 2 * MD_SPACE_DIM, 0, sizeof(float) * MD_SPACE_DIM);   /* an unconditional row */
    md_tensor *ids = md_tensor_new(g, MD_I32, 2, is, false), *slots = md_tensor_new(g, MD_I32, 2, is, false);
    md_rng r;
    md_rng_init(&r, 1201);
    int32_t *id = (int32_t *)ids->data, *sl = (int32_t *)slots->data;
    for (int i = 0; i < B * TT; i++) {
        id[i] = (int32_t)md_rng_below(&r, (uint32_t)m->vocab);
        sl[i] = (int32_t)md_rng_below(&r, MD_VQ_TOKENS + 1);
    }
    const int64_t T = MD_TOK_PREFIX + TT, V = m->vocab;
    md_tensor *ref = md_tok_forward(g, m, cond, ids, slots);   /* [B*T, vocab] */
    /* every step's logits, with the one-position steps replayed from graphs
     * (pass 0) and queued call by call (pass 1) */
    float *lg = malloc(sizeof(float) * (size_t)(2 * NCH * B * V));
    float *want = malloc(sizeof(float) * (size_t)(B * V));
    int32_t *ci = malloc(sizeof(int32_t) * B * TT), *cl = malloc(sizeof(int32_t) * B * TT);
    MD_ASSERT(lg && want && ci && cl);
    double worst = 0;
    int64_t done = 0;
    bool ran = true, replayed = false;
    for (int pass = 0; pass < 2 && ran; pass++) {
        md_tok_device *td = NULL;
        int64_t rows = B;
        md_cuda_rewind(C);
        status_ok("md_tok_device_new", md_tok_device_new(m, C, 1, &rows, &td));
        if (!td) {
            ran = false;
            break;
        }
        md_tok_device_set_graphs(td, pass == 0);
        done = 0;
        for (int k = 0; k < NCH && ran; k++) {
            int64_t n = chunks[k], pos0 = done ? MD_TOK_PREFIX + done : 0;
            for (int b = 0; b < B; b++) {
                memcpy(ci + b * n, id + b * TT + done, sizeof(int32_t) * (size_t)n);
                memcpy(cl + b * n, sl + b * TT + done, sizeof(int32_t) * (size_t)n);
            }
            float *out = lg + (size_t)(pass * NCH + k) * (size_t)(B * V);
            md_status st = md_tok_device_step(td, 0, 0, cond->data, B, ci, cl, n, pos0, out);
            if (st != MD_OK) {
                status_ok("md_tok_device_step", st);
                ran = false;
                break;
            }
            done += n;
            for (int b = 0; b < B; b++)
                memcpy(want + b * V, (float *)ref->data + (b * T + MD_TOK_PREFIX + done - 1) * V,
                       sizeof(float) * (size_t)V);
            double e = nerr(out, want, B * V);
            worst = isnan(e) || e > worst ? e : worst;
        }
        if (pass == 0)
            replayed = md_tok_device_graphs(td);   /* still on: every one-position step was a replay */
        md_tok_device_free(td);
    }
    char what[112];
    snprintf(what, sizeof what, "token steps on the device, %s (%lld tokens)", label, (long long)done);
    report(what, ran ? worst : NAN, LIM_GEMM);
    snprintf(what, sizeof what, "token steps on the device, %s: graph replays give the call-by-call bits", label);
    truth(what, ran && replayed && memcmp(lg, lg + (size_t)NCH * B * V, sizeof(float) * (size_t)(NCH * B * V)) == 0);
    free(lg); free(want); free(ci); free(cl);
    md_graph_free(g);
}

static void check_tok_device(void)
{
    md_tokmodel m;
    if (md_tok_init(&m, 300, 64, 2, 4, 7) != MD_OK) {
        report("a tiny token transformer", NAN, 0);
    } else {
        /* biases and norms away from 0 and 1, so every term of the step counts */
        float *w = md_paramset_values(m.ps);
        int64_t n = md_paramset_numel(m.ps);
        float *noise = hrand(n, 1210, -0.05f, 0.05f);
        for (int64_t i = 0; i < n; i++)
            w[i] += noise[i];
        free(noise);
        check_tok_steps(&m, "tiny model");
        md_tok_free(&m);
    }
    /* the bundled model, where the models folder is known */
    if (load_bundled_tokens(&m)) {
        check_tok_steps(&m, "the bundled model");
        md_tok_free(&m);
    } else {
        printf("     (the bundled token model: MEDLEY_MODELS_DIR unset or its tokens.safetensors unreadable)\n");
    }
}

/* ---- a sampler session on the device ---------------------------------------------------------- */

static void truth(const char *what, bool ok)
{
    checks++;
    if (!ok)
        failures++;
    printf("%-4s %s\n", ok ? "ok" : "FAIL", what);
    fflush(stdout);
}

static bool codes_in_range(const int32_t *c, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (c[i] < 0 || c[i] >= MD_VQ_CODES)
            return false;
    return true;
}

static int64_t same_count(const int32_t *a, const int32_t *b, int64_t n)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        k += a[i] == b[i];
    return k;
}

/* The bundled model sampled by a session on cuda:0 (every step on the
 * device): the session says where it runs; pictures (8 candidates, and
 * after a caption), a video (frames side by side from frame 0's copied
 * cache, and from 3 first-frame candidates) and a caption come out in
 * range and the same for the same seed. Against a CPU session the draws
 * are printed, not asserted: the CPU reads f16 weights and caches, the
 * device fp32, so a draw near a tie may go the other way. */
static void check_tok_session(void)
{
    md_tokmodel m;
    if (!load_bundled_tokens(&m)) {
        printf("     (sampler on the device: MEDLEY_MODELS_DIR unset or its tokens.safetensors unreadable)\n");
        return;
    }
    md_tok_session *sd = md_tok_session_new_on(&m, 0), *sc = md_tok_session_new_on(&m, -1);
    truth("a sampler session on cuda:0 runs there", sd && sc && strcmp(md_tok_session_device(sd), "cuda:0") == 0);
    if (!sd || !sc || strcmp(md_tok_session_device(sd), "cuda:0") != 0) {
        md_tok_session_free(sd);
        md_tok_session_free(sc);
        md_tok_free(&m);
        return;
    }
    float cond[MD_SPACE_DIM];
    md_fill_normal(cond, MD_SPACE_DIM, 1300, 0, 0.f, 1.f);
    double nn = 0;
    for (int i = 0; i < MD_SPACE_DIM; i++)
        nn += (double)cond[i] * cond[i];
    for (int i = 0; i < MD_SPACE_DIM; i++)
        cond[i] = (float)(cond[i] / sqrt(nn));
    md_tok_sample_opts o = {.temperature = 1.f, .top_k = 0, .top_p = 0.9f, .guidance = 3.f, .candidates = 8};
    enum { V = MD_WORLD_FRAMES * MD_VQ_TOKENS };
    int32_t *a = calloc(V, sizeof(int32_t)), *b = calloc(V, sizeof(int32_t)), *cpu = calloc(V, sizeof(int32_t));
    MD_ASSERT(a && b && cpu);
    char what[160];

    bool ok = md_tok_sample_image(sd, cond, &o, 11, NULL, NULL, NULL, a) == MD_OK &&
              md_tok_sample_image(sd, cond, &o, 11, NULL, NULL, NULL, b) == MD_OK;
    truth("device picture, 8 candidates: codes in range, the same for the same seed",
          ok && codes_in_range(a, MD_VQ_TOKENS) && memcmp(a, b, sizeof(int32_t) * MD_VQ_TOKENS) == 0);
    if (md_tok_sample_image(sc, cond, &o, 11, NULL, NULL, NULL, cpu) == MD_OK)
        printf("     picture codes equal to the CPU session's: %lld of %d\n",
               (long long)same_count(a, cpu, MD_VQ_TOKENS), MD_VQ_TOKENS);

    md_tok_sample_opts oc = o;
    oc.candidates = 1;
    oc.via_caption = 1;
    ok = md_tok_sample_image(sd, cond, &oc, 12, NULL, NULL, NULL, a) == MD_OK &&
         md_tok_sample_image(sd, cond, &oc, 12, NULL, NULL, NULL, b) == MD_OK;
    truth("device picture after a caption: codes in range, the same for the same seed",
          ok && codes_in_range(a, MD_VQ_TOKENS) && memcmp(a, b, sizeof(int32_t) * MD_VQ_TOKENS) == 0);
    oc.candidates = 3;   /* the caption read by the pair, copied to every row of the wide cache */
    ok = md_tok_sample_image(sd, cond, &oc, 12, NULL, NULL, NULL, a) == MD_OK &&
         md_tok_sample_image(sd, cond, &oc, 12, NULL, NULL, NULL, b) == MD_OK;
    truth("device picture, 3 candidates after a caption: codes in range, the same for the same seed",
          ok && codes_in_range(a, MD_VQ_TOKENS) && memcmp(a, b, sizeof(int32_t) * MD_VQ_TOKENS) == 0);
    if (md_tok_sample_image(sc, cond, &oc, 12, NULL, NULL, NULL, cpu) == MD_OK)
        printf("     picture codes after a caption equal to the CPU session's: %lld of %d\n",
               (long long)same_count(a, cpu, MD_VQ_TOKENS), MD_VQ_TOKENS);

    {   /* the caption re-check's score: log P(caption | picture) on the device against the CPU's */
        static const int32_t cap[4] = {MD_BPE_BOS, 40, 41, MD_BPE_EOS};
        float ld[3], lc[3];
        for (int i = 0; i < 3 * MD_VQ_TOKENS; i++)
            a[i] = (i * 31 + (i * i) % 17) % MD_VQ_CODES;
        ok = md_tok_caption_logprob(sd, NULL, a, 3, cap, 4, ld) == MD_OK &&
             md_tok_caption_logprob(sc, NULL, a, 3, cap, 4, lc) == MD_OK;
        double worst = 0;
        for (int i = 0; ok && i < 3; i++) {
            double d = fabs((double)ld[i] - lc[i]) / (1.0 + fabs((double)lc[i]));
            worst = d > worst ? d : worst;
        }
        snprintf(what, sizeof what, "device log P(caption | picture) of 3 pictures: the CPU's within 1e-3 (worst "
                 "relative %.1e)", worst);
        truth(what, ok && worst < 1e-3);
    }

    for (int cand = 1; cand <= 3; cand += 2) {
        md_tok_sample_opts ov = o;
        ov.candidates = cand;
        ok = md_tok_sample_video(sd, cond, &ov, 13, NULL, NULL, NULL, a) == MD_OK &&
             md_tok_sample_video(sd, cond, &ov, 13, NULL, NULL, NULL, b) == MD_OK;
        snprintf(what, sizeof what, "device video, %d first-frame candidate%s: codes in range, the same for the same "
                 "seed", cand, cand > 1 ? "s" : "");
        truth(what, ok && codes_in_range(a, V) && memcmp(a, b, sizeof(int32_t) * V) == 0);
        if (md_tok_sample_video(sc, cond, &ov, 13, NULL, NULL, NULL, cpu) == MD_OK)
            printf("     video codes equal to the CPU session's: %lld of %d\n", (long long)same_count(a, cpu, V), V);
    }

    int32_t ca[MD_TOK_CAPTION], cb[MD_TOK_CAPTION], cc[MD_TOK_CAPTION];
    int na = 0, nb = 0, nc = 0;
    ok = md_tok_sample_caption(sd, cond, &o, 14, NULL, ca, MD_TOK_CAPTION, &na) == MD_OK &&
         md_tok_sample_caption(sd, cond, &o, 14, NULL, cb, MD_TOK_CAPTION, &nb) == MD_OK;
    truth("device caption: tokens, the same for the same seed",
          ok && na > 0 && na == nb && memcmp(ca, cb, sizeof(int32_t) * (size_t)na) == 0);
    if (md_tok_sample_caption(sc, cond, &o, 14, NULL, cc, MD_TOK_CAPTION, &nc) == MD_OK)
        printf("     caption: %d tokens on the device, %d on the CPU, %s\n", na, nc,
               na == nc && memcmp(ca, cc, sizeof(int32_t) * (size_t)na) == 0 ? "the same" : "different");
    free(a); free(b); free(cpu);
    md_tok_session_free(sd);
    md_tok_session_free(sc);
    md_tok_free(&m);
}

/* ---- VQ ------------------------------------------------------------------------------------ */

static double sqdist(const float *a, const float *b, int64_t d)
{
    double s = 0;
    for (int64_t j = 0; j < d; j++)
        s += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    return s;
}

/* The CPU ranks codes by |z|^2 - 2 z.c + |c|^2 in float, the GPU by the
 * direct sum of squares: a differing pick must be a near tie. */
static void check_vq(void)
{
    const int64_t N = 1000, D = 37, K = 129;
    md_graph *g = cpu_graph();
    md_graph_set_grad(g, false);
    int64_t zs[2] = {N, D}, cs[2] = {K, D};
    md_tensor *z = tin(g, 2, zs, false, 900, -1, 1), *cb = tin(g, 2, cs, false, 901, -1, 1);
    /* exact duplicates: ties must go to the lower index */
    memcpy(cb->data + 100 * D, cb->data + 7 * D, sizeof(float) * (size_t)D);
    memcpy(z->data + 5 * D, cb->data + 7 * D, sizeof(float) * (size_t)D);
    md_vq_result r = md_vq(g, z, cb);
    md_cuda_rewind(C);
    float *dz = dput(z->data, sizeof(float) * (size_t)(N * D)), *dc = dput(cb->data, sizeof(float) * (size_t)(K * D));
    int32_t *di = md_cuda_alloc(C, sizeof(int32_t) * (size_t)N);
    MD_ASSERT(di);
    status_ok("md_cuda_vq_nearest", md_cuda_vq_nearest(C, di, dz, dc, N, D, K));
    int32_t *gi = malloc(sizeof(int32_t) * (size_t)N);
    if (md_cuda_download(C, gi, di, sizeof(int32_t) * (size_t)N) != MD_OK) {
        printf("FAIL vq download\n");
        exit(1);
    }
    const int32_t *ci = md_i32(r.indices);
    int64_t differ = 0, bad = 0;
    for (int64_t i = 0; i < N; i++) {
        if (gi[i] == ci[i])
            continue;
        differ++;
        if (gi[i] < 0 || gi[i] >= K) {
            bad++;
            continue;
        }
        double dg = sqdist(z->data + i * D, cb->data + (int64_t)gi[i] * D, D);
        double dcpu = sqdist(z->data + i * D, cb->data + (int64_t)ci[i] * D, D);
        if (dg - dcpu > 1e-5 * (dcpu + 1e-6))
            bad++;
    }
    bool tie_ok = gi[5] == 7;
    printf("%-4s vq nearest 1000x37 of 129 codes: %lld picks differ from the CPU, %lld not a near tie; tie -> %d\n",
           bad == 0 && tie_ok ? "ok" : "FAIL", (long long)differ, (long long)bad, gi[5]);
    checks++;
    if (bad || !tie_ok)
        failures++;
    free(gi);
    md_graph_free(g);
}

/* ---- AdamW ------------------------------------------------------------------------------ */

static void check_adamw(void)
{
    md_paramset *ps = md_paramset_new();
    md_param_add(ps, "w", 2, (int64_t[]){37, 129});
    md_param_add(ps, "b", 1, (int64_t[]){129});
    MD_ASSERT(md_paramset_alloc(ps) == MD_OK);
    md_init_normal(md_paramset_get(ps, 0), 1, 0.f, 0.5f);
    md_init_normal(md_paramset_get(ps, 1), 2, 0.f, 0.5f);
    md_adamw opt;
    MD_ASSERT(md_adamw_init(&opt, ps, 0.9f, 0.999f, 1e-8f, 0.1f) == MD_OK);
    int64_t n = md_paramset_numel(ps), nw = 37 * 129;
    md_cuda_rewind(C);
    float *dp = dput(md_paramset_values(ps), sizeof(float) * (size_t)n);
    float *zeros = calloc((size_t)n, sizeof(float));
    float *dm = dput(zeros, sizeof(float) * (size_t)n), *dv = dput(zeros, sizeof(float) * (size_t)n);
    float *dg = dnew(n);
    md_status st = MD_OK;
    for (int step = 1; step <= 3; step++) {
        md_paramset_zero_grad(ps);
        md_paramset_finish_grads(ps);
        md_fill_normal(md_paramset_grads(ps), n, 1000 + (uint64_t)step, 0, 0.f, 1.f);
        if (md_cuda_upload(C, dg, md_paramset_grads(ps), sizeof(float) * (size_t)n) != MD_OK)
            st = MD_ERR;
        float lr = 1e-2f * (float)step;
        md_adamw_step(&opt, lr);
        /* the default decay mask: the matrix decays, the bias does not */
        md_cuda_adamw h = {.lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f,
                           .step = step, .decay = true};
        if (st == MD_OK)
            st = md_cuda_adamw_step(C, &h, dp, dg, dm, dv, nw);
        h.decay = false;
        if (st == MD_OK)
            st = md_cuda_adamw_step(C, &h, dp + nw, dg + nw, dm + nw, dv + nw, n - nw);
    }
    status_ok("md_cuda_adamw_step", st);
    cmp("adamw 3 steps params", dp, md_paramset_values(ps), n, LIM_ELEM);
    cmp("adamw 3 steps m", dm, opt.m, n, LIM_ELEM);
    cmp("adamw 3 steps v", dv, opt.v, n, LIM_ELEM);
    float *hp = dget(dp, n);
    bool same = memcmp(hp, md_paramset_values(ps), sizeof(float) * (size_t)n) == 0;
    printf("%-4s adamw parameters equal bit for bit\n", same ? "ok" : "note");
    free(hp);
    free(zeros);
    md_adamw_free(&opt);
    md_paramset_free(ps);
}

/* EMA and clipping against optim.c on one paramset: a shadow after 3
 * updates, and a gradient clipped to a norm below its own. */
static void check_ema_clip(void)
{
    md_paramset *ps = md_paramset_new();
    md_param_add(ps, "w", 2, (int64_t[]){37, 1001});
    MD_ASSERT(md_paramset_alloc(ps) == MD_OK);
    const int64_t n = md_paramset_numel(ps);
    md_init_normal(md_paramset_get(ps, 0), 5, 0.f, 0.5f);
    md_ema ema;
    MD_ASSERT(md_ema_init(&ema, ps, 0.99f) == MD_OK);
    md_cuda_rewind(C);
    float *dshadow = dput(md_paramset_values(ps), sizeof(float) * (size_t)n), *dp = dnew(n);
    md_status st = MD_OK;
    for (int k = 0; k < 3; k++) {
        md_init_normal(md_paramset_get(ps, 0), 6 + (uint64_t)k, 0.f, 0.5f);   /* new weights each time */
        md_ema_update(&ema);
        if (st == MD_OK)
            st = md_cuda_upload(C, dp, md_paramset_values(ps), sizeof(float) * (size_t)n);
        if (st == MD_OK)
            st = md_cuda_ema_update(C, dshadow, dp, 0.99f, n);
    }
    status_ok("md_cuda_ema_update", st);
    cmp("ema 3 updates", dshadow, ema.shadow, n, 0.0);

    md_paramset_zero_grad(ps);
    md_paramset_finish_grads(ps);
    md_fill_normal(md_paramset_grads(ps), n, 1200, 0, 0.f, 1.f);
    float *dg = dput(md_paramset_grads(ps), sizeof(float) * (size_t)n);
    float gnorm = 0.f;
    status_ok("md_cuda_clip_grad_norm", md_cuda_clip_grad_norm(C, dg, n, 10.f, &gnorm));
    const float cnorm = md_clip_grad_norm(ps, 10.f);
    report("gradient norm (before clipping)", fabs((double)gnorm - cnorm) / cnorm, 1e-6);
    cmp("gradients clipped to norm 10", dg, md_paramset_grads(ps), n, LIM_ELEM);
    md_ema_free(&ema);
    md_paramset_free(ps);
}

/* ---- cross-entropy ----------------------------------------------------------------------- */

static void check_xent(float ls)
{
    const int64_t N = 129, V = 1000;
    const int ignore = -100;
    md_graph *g = cpu_graph();
    int64_t xs[2] = {N, V};
    md_tensor *x = tin(g, 2, xs, true, 1100, -5, 5);
    md_tensor *t = md_tensor_new(g, MD_I32, 1, &N, false);
    int32_t *tv = md_i32(t);
    for (int64_t i = 0; i < N; i++)
        tv[i] = i % 7 == 3 ? ignore : (int32_t)(md_rand_u32_at(1101, (uint64_t)i) % V);
    md_tensor *loss = md_cross_entropy(g, x, t, ls, ignore);
    md_graph_backward(g, loss);
    md_cuda_rewind(C);
    float *dx_ = dput(x->data, sizeof(float) * (size_t)(N * V));
    int32_t *dt = dput(tv, sizeof(int32_t) * (size_t)N);
    float *dl = dnew(1), *lse = dnew(N), *gx = dnew(N * V);
    int32_t *dcount = md_cuda_alloc(C, sizeof(int32_t));
    MD_ASSERT(dcount);
    status_ok("md_cuda_cross_entropy_fwd",
              md_cuda_cross_entropy_fwd(C, dl, dcount, lse, dx_, dt, N, V, ls, ignore));
    status_ok("md_cuda_cross_entropy_bwd",
              md_cuda_cross_entropy_bwd(C, gx, dx_, lse, dt, dcount, N, V, ls, ignore, 1.0f));
    char what[64];
    snprintf(what, sizeof what, "cross-entropy 129x1000 ls %.1f loss", (double)ls);
    cmp(what, dl, loss->data, 1, LIM_ELEM);
    snprintf(what, sizeof what, "cross-entropy 129x1000 ls %.1f dlogits", (double)ls);
    cmp(what, gx, x->grad, N * V, LIM_ELEM);
    md_graph_free(g);
}

/* ---- the backend ------------------------------------------------------------------------- */

static const md_backend *check_backend(void)
{
    setenv("MEDLEY_DEVICE", "cuda:0", 1);
    const md_backend *be = md_backend_default();
    bool named = be && strcmp(be->name, "cuda:0") == 0;
    printf("%-4s MEDLEY_DEVICE=cuda:0 gives backend \"%s\"\n", named ? "ok" : "FAIL", be ? be->name : "(null)");
    checks++;
    if (!named) {
        failures++;
        return NULL;
    }
    /* a staged product (above the CPU threshold) into a C with padding */
    const int64_t m = 257, n = 300, k = 129, ldc = n + 4;
    float *a = hrand(m * k, 1200, -1, 1), *b = hrand(n * k, 1201, -1, 1), *c = hrand(m * ldc, 1202, -1, 1);
    float *ref = malloc(sizeof(float) * (size_t)(m * ldc));
    memcpy(ref, c, sizeof(float) * (size_t)(m * ldc));
    md_cpu_gemm_naive(false, true, m, n, k, 1.0f, a, k, b, k, 0.5f, ref, ldc);
    be->gemm(false, true, m, n, k, 1.0f, a, k, b, k, 0.5f, c, ldc);
    report("backend gemm NT 257x300x129 (staged)", nerr(c, ref, m * ldc), LIM_GEMM);
    /* batched, C packed */
    const int64_t batch = 6, bm = 129, bn = 64, bk = 37 * 10;
    float *ba = hrand(batch * bm * bk, 1203, -1, 1), *bb = hrand(batch * bk * bn, 1204, -1, 1);
    float *bc = calloc((size_t)(batch * bm * bn), sizeof(float)), *bref = calloc((size_t)(batch * bm * bn), sizeof(float));
    for (int64_t i = 0; i < batch; i++)
        md_cpu_gemm_naive(false, false, bm, bn, bk, 1.0f, ba + i * bm * bk, bk, bb + i * bk * bn, bn, 0.0f,
                          bref + i * bm * bn, bn);
    be->gemm_batched(batch, false, false, bm, bn, bk, 1.0f, ba, bk, bm * bk, bb, bn, bk * bn, 0.0f, bc, bn, bm * bn);
    report("backend gemm_batched 6x129x64x370 (staged)", nerr(bc, bref, batch * bm * bn), LIM_GEMM);
    free(a); free(b); free(c); free(ref); free(ba); free(bb); free(bc); free(bref);
    return be;
}

/* 2-layer MLP, 50 AdamW steps; returns the loss curve in losses[50]. */
static void train_mlp(const md_backend *be, float *losses)
{
    const int64_t B = 256, IN = 200, HID = 512, OUT = 64;
    md_paramset *ps = md_paramset_new();
    md_tensor *w1 = md_param_add(ps, "w1", 2, (int64_t[]){HID, IN});
    md_tensor *b1 = md_param_add(ps, "b1", 1, (int64_t[]){HID});
    md_tensor *w2 = md_param_add(ps, "w2", 2, (int64_t[]){OUT, HID});
    md_tensor *b2 = md_param_add(ps, "b2", 1, (int64_t[]){OUT});
    MD_ASSERT(md_paramset_alloc(ps) == MD_OK);
    md_init_normal(w1, 1, 0.f, 0.07f);
    md_init_const(b1, 0.f);
    md_init_normal(w2, 2, 0.f, 0.04f);
    md_init_const(b2, 0.f);
    md_adamw opt;
    MD_ASSERT(md_adamw_init(&opt, ps, 0.9f, 0.999f, 1e-8f, 0.01f) == MD_OK);
    float *xin = hrand(B * IN, 1300, -1, 1), *tgt = hrand(B * OUT, 1301, -1, 1);
    md_graph *g = md_graph_new(1 << 24);
    MD_ASSERT(g);
    for (int s = 0; s < 50; s++) {
        md_graph_reset(g);
        md_graph_set_backend(g, be);
        md_paramset_zero_grad(ps);
        md_tensor *x = md_tensor_wrap(g, MD_F32, xin, 2, (int64_t[]){B, IN});
        md_tensor *t = md_tensor_wrap(g, MD_F32, tgt, 2, (int64_t[]){B, OUT});
        md_tensor *h = md_gelu(g, md_linear(g, x, w1, b1));
        md_tensor *y = md_linear(g, h, w2, b2);
        md_tensor *loss = md_mse(g, y, t);
        losses[s] = loss->data[0];
        md_graph_backward(g, loss);
        md_paramset_finish_grads(ps);
        md_adamw_step(&opt, 3e-3f);
    }
    md_graph_free(g);
    free(xin);
    free(tgt);
    md_adamw_free(&opt);
    md_paramset_free(ps);
}

static void check_training(const md_backend *be)
{
    float lc[50], lg[50];
    train_mlp(md_backend_cpu(), lc);
    train_mlp(be, lg);
    double worst = 0;
    for (int s = 0; s < 50; s++) {
        double r = fabs((double)lg[s] - lc[s]) / (fabs((double)lc[s]) + 1e-12);
        if (!(r <= worst))
            worst = r;
    }
    printf("     MLP loss: step 0 %.5f -> step 49 %.5f (CPU), %.5f -> %.5f (%s)\n", (double)lc[0], (double)lc[49],
           (double)lg[0], (double)lg[49], be->name);
    report("MLP 50 AdamW steps, loss curve vs CPU", worst, 1e-3);
    if (!(lc[49] < lc[0]))
        report("MLP loss falls on the CPU", INFINITY, 0);
}

int main(void)
{
    const char *why = NULL;
    if (md_cuda_device_count(&why) == 0) {
        printf("skipped: no GPU to test: %s\n", why);
        return 77;
    }
    md_cuda_device d;
    if (md_cuda_device_info(0, &d) == MD_OK)
        printf("     cuda:0 %s, compute %d.%d, %.1f GiB, %d SMs\n", d.name, d.major, d.minor,
               (double)d.memory_bytes / (1 << 30), d.multiprocessors);
    md_status st = md_cuda_open(0, (size_t)256 << 20, &C);
    if (st == MD_ERR_UNSUPPORTED) {   /* busy, exclusive to another process, driver too old */
        printf("skipped: cuda:0 cannot be used here: %s\n", md_last_error());
        return 77;
    }
    if (st != MD_OK) {
        printf("FAIL cannot open cuda:0: %s\n", md_last_error());
        return 1;
    }
    check_products();
    check_unary();
    check_binary();
    check_layernorm(129, 1000);
    check_layernorm(1000, 37);
    check_softmax();
    check_groupnorm();
    check_conv(2, 5, 37, 29, 7, 3, 2, 1, true);
    check_conv(3, 6, 13, 17, 129, 1, 1, 0, false);
    check_conv(1, 3, 29, 37, 5, 5, 1, 2, true);
    check_rows_embedding();
    check_loss_upsample();
    check_rms_l2();
    check_copies();
    check_logsoftmax_dropout();
    check_avgpool(2, 2);
    check_avgpool(3, 2);   /* overlapping windows, a ragged edge */
    check_avgpool(2, 3);   /* gaps between windows */
    check_attention(2, 37, 129, 3, 40, false);
    check_attention(2, 37, 129, 3, 40, true);
    check_attention(1, 129, 129, 2, 64, true);
    check_attention(2, 50, 37, 2, 16, true);     /* the first 13 queries see no key */
    check_attention(1, 3, 1000, 1, 129, false);  /* Dh past one thread's share */
    check_attention(2, 100, 300, 2, 128, true);  /* four query tiles, keys past the tile, the widest tiled head */
    check_tok_device();
    check_vq();
    check_adamw();
    check_ema_clip();
    check_xent(0.0f);
    check_xent(0.1f);
    st = md_cuda_sync(C);
    if (st != MD_OK)
        report("queued work ran without a device error", INFINITY, 0);
    printf("     device arena high water: %.1f MiB\n", (double)md_cuda_high_water(C) / 1048576.0);
    md_cuda_close(C);
    C = NULL;
    check_tok_session();   /* opens contexts of its own */
    const md_backend *be = check_backend();
    if (be)
        check_training(be);
    printf("%d of %d checks failed\n", failures, checks);
    return failures ? 1 : 0;
}

#endif
