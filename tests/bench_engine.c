/* bench_engine.c — the engine's benchmark, one run on one machine:
 *   - the FMA peak of this machine's cores, measured here (AVX-512 FMA
 *     chains on every thread);
 *   - sgemm GFLOP/s: Medley's md_matmul op against the raw oneDNN call;
 *   - forward+backward per step of a pre-LN transformer block (d=256,
 *     4 heads, T=256, batch 16; bidirectional and causal) and of a conv
 *     residual block (64 channels, 32×32, batch 16, GroupNorm 32 groups),
 *     for Medley and for PyTorch CPU with the same thread count (run as a
 *     child process with PyTorch's best settings in its command alone),
 *     with the ratio and Medley's fraction of the measured peak.
 * Timing is the median step after warm-up. Usage:
 *   bench_engine [--iters N] [--no-torch]
 * With MEDLEY_PROFILE=1 each block's op-by-op times are printed too.
 * FLOP counts (multiply-add = 2): linear layers 2·N·12·d² forward; full
 * attention 4·B·T²·d forward, causal counted at T(T+1)/2 of it (only that
 * is needed); backward = 2× forward; recomputation is not counted. */
#include "kernels_cpu.h"
#include "nn.h"
#include "ops.h"
#include "rng.h"

#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* AVX-512 FMA throughput: 12 independent chains per thread. */
__attribute__((target("avx512f")))
static double fma_peak_gflops(void)
{
    const long iters = 20000000;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = md_time_now();
        float sink = 0;
        #pragma omp parallel reduction(+:sink)
        {
            __m512 a[12], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
            for (int i = 0; i < 12; i++)
                a[i] = _mm512_set1_ps((float)i);
            for (long it = 0; it < iters; it++)
                for (int i = 0; i < 12; i++)
                    a[i] = _mm512_fmadd_ps(a[i], m, c);
            __m512 s = a[0];
            for (int i = 1; i < 12; i++)
                s = _mm512_add_ps(s, a[i]);
            sink += _mm512_reduce_add_ps(s);
        }
        double dt = md_time_now() - t0;
        double flops = (double)md_threads_get() * iters * 12 * 16 * 2;
        if (flops / dt / 1e9 > best)
            best = flops / dt / 1e9;
        if (sink == 12345.f)
            printf(" ");
    }
    return best;
}

static double sgemm_raw(int n)
{
    float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n),
          *c = malloc(sizeof(float) * (size_t)n * n);
    for (long i = 0; i < (long)n * n; i++)
        a[i] = b[i] = c[i] = 0.001f * (float)(i % 1000);
    double best = 1e9;
    for (int r = 0; r < 10; r++) {
        double t0 = md_time_now();
        dnnl_sgemm('N', 'N', n, n, n, 1.f, a, n, b, n, 0.f, c, n);
        double dt = md_time_now() - t0;
        best = dt < best ? dt : best;
    }
    free(a); free(b); free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

static double sgemm_medley(int n)
{
    md_graph *g = md_graph_new((size_t)n * n * 16);
    md_graph_set_grad(g, false);
    double best = 1e9;
    for (int r = 0; r < 10; r++) {
        md_graph_reset(g);
        md_tensor *a = md_tensor_new2(g, n, n), *b = md_tensor_new2(g, n, n);
        if (r == 0)
            for (long i = 0; i < (long)n * n; i++)
                a->data[i] = b->data[i] = 0.001f * (float)(i % 1000);
        double t0 = md_time_now();
        md_matmul(g, a, b, false, false);
        double dt = md_time_now() - t0;
        best = dt < best ? dt : best;
    }
    md_graph_free(g);
    return 2.0 * n * n * (double)n / best / 1e9;
}

/* Products with few rows, as a sampler's step makes them (x · Wᵀ): Medley's
 * tiles (md_cpu_gemm) against oneDNN's sgemm on the same operands, median
 * of 9 timings of 200 calls each. */
static void small_products(void)
{
    static const int shapes[][3] = {{2, 768, 256}, {16, 768, 256}, {16, 1024, 256}, {16, 256, 1024},
                                    {16, 2304, 256}, {30, 768, 256}, {32, 1024, 256}};
    float *a = malloc(sizeof(float) * 32 * 1024), *b = malloc(sizeof(float) * 2304 * 1024),
          *c = malloc(sizeof(float) * 32 * 2304);
    for (int i = 0; i < 32 * 1024; i++)
        a[i] = 0.001f * (float)(i % 997) - 0.5f;
    for (int i = 0; i < 2304 * 1024; i++)
        b[i] = 0.001f * (float)(i % 991) - 0.5f;
    printf("products of few rows, x [m, k] times W [n, k] transposed (a sampler step's shapes):\n");
    printf("  %-18s %12s %12s %9s\n", "m x n x k", "Medley us", "oneDNN us", "speed-up");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        double t[2][9];
        for (int r = 0; r < 9; r++)
            for (int w = 0; w < 2; w++) {
                double t0 = md_time_now();
                for (int i = 0; i < 200; i++) {
                    if (w == 0)
                        md_cpu_gemm(false, true, m, n, k, 1.f, a, k, b, k, 0.f, c, n);
                    else
                        dnnl_sgemm('N', 'T', m, n, k, 1.f, a, k, b, k, 0.f, c, n);
                }
                t[w][r] = (md_time_now() - t0) / 200;
            }
        qsort(t[0], 9, sizeof(double), cmp_double);
        qsort(t[1], 9, sizeof(double), cmp_double);
        char name[32];
        snprintf(name, sizeof name, "%d x %d x %d", m, n, k);
        printf("  %-18s %12.1f %12.1f %8.2fx\n", name, 1e6 * t[0][4], 1e6 * t[1][4], t[1][4] / t[0][4]);
    }
    printf("\n");
    free(a);
    free(b);
    free(c);
}

typedef md_tensor *(*block_fn)(md_graph *g, md_tensor *x, void *user);

static double time_block(md_paramset *ps, block_fn fn, void *user, int nd, const int64_t *shape, int iters,
                         bool bf16)
{
    md_graph *g = md_graph_new(1 << 20);
    md_graph_set_bf16(g, bf16);
    double *t = malloc(sizeof(double) * (size_t)(iters + 2));
    float *x0 = NULL, *dy = NULL;
    int64_t nx = 1;
    for (int i = 0; i < nd; i++)
        nx *= shape[i];
    x0 = malloc(sizeof(float) * (size_t)nx);
    md_fill_normal(x0, nx, 1, 0, 0.f, 1.f);
    bool profile = getenv("MEDLEY_PROFILE") && strcmp(getenv("MEDLEY_PROFILE"), "0") != 0;
    for (int it = 0; it < iters + 2; it++) {
        if (profile && it == 2)
            md_graph_set_profile(g, true);   /* count the timed steps only */
        double t0 = md_time_now();
        md_graph_reset(g);
        md_paramset_zero_grad(ps);
        md_tensor *x = md_tensor_new(g, MD_F32, nd, shape, true);
        memcpy(x->data, x0, sizeof(float) * (size_t)nx);
        md_tensor *y = fn(g, x, user);
        if (!dy) {
            dy = malloc(sizeof(float) * (size_t)md_numel(y));
            md_fill_normal(dy, md_numel(y), 2, 0, 0.f, 1.f);
        }
        md_graph_backward_from(g, y, dy);
        t[it] = md_time_now() - t0;
    }
    if (profile) {
        printf("\nop profile, %d steps:\n", iters);
        md_graph_profile_print(g, stdout);
    }
    qsort(t + 2, (size_t)iters, sizeof(double), cmp_double);
    double med = t[2 + iters / 2];
    free(t); free(x0); free(dy);
    md_graph_free(g);
    return med;
}

typedef struct { md_tblock *b; bool causal; } tb_user;
static md_tensor *tb_fn(md_graph *g, md_tensor *x, void *u)
{
    tb_user *t = u;
    return md_tblock_forward(g, t->b, x, NULL, t->causal, 0.f);
}
static md_tensor *rb_fn(md_graph *g, md_tensor *x, void *u) { return md_resblock_forward(g, u, x); }

/* Runs the PyTorch baseline; fills the three times and its sgemm figure. */
static int run_torch(int iters, double *full, double *causal, double *res, double *gemm)
{
    const char *src = getenv("MEDLEY_SOURCE_DIR");
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=passive %s "
             "MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 "
             "/usr/bin/python3 %s/tests/bench_torch.py %d %d 2>/dev/null",
             access("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", R_OK) == 0
                 ? "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2" : "",
             src ? src : ".", md_threads_get(), iters);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[4096] = {0};
    char *got = fgets(line, sizeof line, p);
    int rc = pclose(p);
    if (!got || rc != 0)
        return -1;
    const char *k;
    if (!(k = strstr(line, "\"tblock_full_s\": ")) || sscanf(k + 17, "%lf", full) != 1) return -1;
    if (!(k = strstr(line, "\"tblock_causal_s\": ")) || sscanf(k + 19, "%lf", causal) != 1) return -1;
    if (!(k = strstr(line, "\"resblock_s\": ")) || sscanf(k + 14, "%lf", res) != 1) return -1;
    if (!(k = strstr(line, "\"sgemm_gflops\": ")) || sscanf(k + 16, "%lf", gemm) != 1) return -1;
    return 0;
}

int main(int argc, char **argv)
{
    int iters = 10;
    bool torch = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-torch") == 0)
            torch = false;
        else {
            fprintf(stderr, "usage: bench_engine [--iters N] [--no-torch]\n");
            return 2;
        }
    }
    if (iters < 1)
        iters = 1;
    md_threads_init();
    int th = md_threads_get();
    printf("Medley engine benchmark: %d threads, median of %d steps after 2 warm-up\n\n", th, iters);

    double peak = fma_peak_gflops();
    printf("FMA peak (AVX-512, measured): %.0f GFLOP/s\n", peak);
    double graw = sgemm_raw(1024), gmd = sgemm_medley(1024);
    printf("sgemm 1024^3: oneDNN raw %.0f GFLOP/s (%.0f%% of peak), Medley md_matmul %.0f GFLOP/s (%.2fx raw)\n\n",
           graw, 100 * graw / peak, gmd, gmd / graw);
    small_products();

    const int64_t B = 16, T = 256, D = 256;
    double tb_flops_full = 3.0 * (2.0 * B * T * 12 * D * D + 4.0 * B * T * T * D);
    double tb_flops_causal = 3.0 * (2.0 * B * T * 12 * D * D + 4.0 * B * (T * (T + 1) / 2) * D);
    double rb_flops = 3.0 * 2 * (2.0 * 16 * 32 * 32 * 64 * 64 * 9);

    md_paramset *tps = md_paramset_new();
    md_tblock tb;
    md_tblock_declare(&tb, tps, "b", D, 4, 4, 0);
    md_paramset_alloc(tps);
    md_tblock_init(&tb, 1, 1);
    tb_user uf = {&tb, false}, uc = {&tb, true};
    double t_full = time_block(tps, tb_fn, &uf, 3, (int64_t[]){B, T, D}, iters, false);
    double t_causal = time_block(tps, tb_fn, &uc, 3, (int64_t[]){B, T, D}, iters, false);

    md_paramset *rps = md_paramset_new();
    md_resblock rb;
    md_resblock_declare(&rb, rps, "r", 64, 64, 32);
    md_paramset_alloc(rps);
    md_resblock_init(&rb, 2);
    double t_res = time_block(rps, rb_fn, &rb, 4, (int64_t[]){16, 64, 32, 32}, iters, false);
    /* the same steps with products on bf16 operands (training's --bf16) */
    const char *bf_impl = NULL;
    const bool have_bf16 = md_cpu_bf16_available(&bf_impl);
    double b_full = 0, b_causal = 0, b_res = 0;
    if (have_bf16) {
        b_full = time_block(tps, tb_fn, &uf, 3, (int64_t[]){B, T, D}, iters, true);
        b_causal = time_block(tps, tb_fn, &uc, 3, (int64_t[]){B, T, D}, iters, true);
        b_res = time_block(rps, rb_fn, &rb, 4, (int64_t[]){16, 64, 32, 32}, iters, true);
    }

    double p_full = 0, p_causal = 0, p_res = 0, p_gemm = 0;
    bool have_torch = torch && run_torch(iters, &p_full, &p_causal, &p_res, &p_gemm) == 0;
    if (torch && !have_torch)
        printf("(PyTorch baseline unavailable: /usr/bin/python3 with torch is needed)\n");

    printf("%-44s %10s %8s %10s %8s %9s\n", "forward+backward per step", "Medley ms", "% peak", "PyTorch ms", "% peak", "speed-up");
    struct { const char *name; double t, p, fl; } rows[3] = {
        {"transformer block d256 h4 T256 B16 (full)", t_full, p_full, tb_flops_full},
        {"transformer block d256 h4 T256 B16 (causal)", t_causal, p_causal, tb_flops_causal},
        {"conv resblock 64ch 32x32 B16 GN32", t_res, p_res, rb_flops},
    };
    for (int i = 0; i < 3; i++) {
        double pct = 100 * rows[i].fl / rows[i].t / 1e9 / peak;
        if (have_torch)
            printf("%-44s %10.1f %7.0f%% %10.1f %7.0f%% %8.2fx\n", rows[i].name, 1e3 * rows[i].t, pct,
                   1e3 * rows[i].p, 100 * rows[i].fl / rows[i].p / 1e9 / peak, rows[i].p / rows[i].t);
        else
            printf("%-44s %10.1f %7.0f%% %10s %8s %9s\n", rows[i].name, 1e3 * rows[i].t, pct, "-", "-", "-");
    }
    if (have_bf16) {
        printf("\nbf16 products (oneDNN %s), same steps:\n", bf_impl);
        printf("%-44s %10s %10s %9s\n", "forward+backward per step", "f32 ms", "bf16 ms", "speed-up");
        const double bt[3] = {b_full, b_causal, b_res};
        for (int i = 0; i < 3; i++)
            printf("%-44s %10.1f %10.1f %8.2fx\n", rows[i].name, 1e3 * rows[i].t, 1e3 * bt[i], rows[i].t / bt[i]);
    } else {
        printf("\n(bf16 products: no fast bf16 kernel here, oneDNN offers %s)\n", bf_impl);
    }
    if (have_torch)
        printf("\nPyTorch %s sgemm 1024^3: %.0f GFLOP/s\n", "(same threads)", p_gemm);
    printf("FLOPs per step: block full %.2f G, causal %.2f G, resblock %.2f G\n", tb_flops_full / 1e9,
           tb_flops_causal / 1e9, rb_flops / 1e9);
    md_paramset_free(tps);
    md_paramset_free(rps);
    return 0;
}
