/* test_core.c — engine unit tests: arenas, RNG, dtypes, fast math, products
 * with few rows, the KV cache, gradient accumulation, dropout, views,
 * errors. */
#include "check.h"
#include "kernels_cpu.h"
#include "lm.h"
#include "ops.h"
#include "rng.h"
#include "simd.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void test_arena_steady_state(void)
{
    md_lm m;
    CHECK(md_lm_init(&m, 17, 32, 2, 4, 24, 3) == MD_OK, "lm init");
    md_graph *g = md_graph_new(4096);   /* deliberately too small: must learn its size */
    int32_t ids[4 * 24], tg[4 * 24];
    for (int i = 0; i < 4 * 24; i++) {
        ids[i] = i % 17;
        tg[i] = (i * 7) % 17;
    }
    size_t mallocs_after_first = 0;
    float first_loss = 0, loss_again = 0;
    for (int step = 0; step < 5; step++) {
        md_graph_reset(g);
        md_paramset_zero_grad(m.ps);
        md_tensor *x = md_tensor_wrap(g, MD_I32, ids, 2, (int64_t[]){4, 24});
        md_tensor *t = md_tensor_wrap(g, MD_I32, tg, 1, (int64_t[]){4 * 24});
        md_tensor *loss = md_cross_entropy(g, md_lm_forward(g, &m, x, 0.f), t, 0.f, -100);
        md_graph_backward(g, loss);
        if (step == 0) first_loss = loss->data[0];
        if (step == 4) loss_again = loss->data[0];
        if (step == 1)
            mallocs_after_first = md_arena_mallocs(md_graph_arena(g));
    }
    CHECK(md_arena_mallocs(md_graph_arena(g)) == mallocs_after_first,
          "arena: no allocation after the second step (%zu mallocs, capacity %zu, high water %zu)",
          md_arena_mallocs(md_graph_arena(g)), md_arena_capacity(md_graph_arena(g)),
          md_arena_high_water(md_graph_arena(g)));
    CHECK(first_loss == loss_again, "same inputs, same weights: same loss each step (%.7f)", first_loss);
    md_graph_free(g);
    md_lm_free(&m);
}

static void test_rng(void)
{
    enum { N = 200000 };
    float *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    md_threads_set(1);
    md_fill_normal(a, N, 42, 0, 0.f, 1.f);
    md_threads_set(2);
    md_fill_normal(b, N, 42, 0, 0.f, 1.f);
    CHECK(memcmp(a, b, sizeof(float) * N) == 0, "rng: normal fill identical with 1 and 2 threads");
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) {
        s += a[i];
        s2 += (double)a[i] * a[i];
    }
    double mean = s / N, var = s2 / N - mean * mean;
    CHECK(fabs(mean) < 0.01 && fabs(var - 1) < 0.02, "rng: normal mean %.4f variance %.4f", mean, var);
    md_fill_normal(b, 1000, 42, 500, 0.f, 1.f);
    CHECK(memcmp(a + 500, b, sizeof(float) * 1000) == 0, "rng: element i depends only on (key, i)");
    md_rng r1, r2;
    md_rng_init(&r1, 9);
    md_rng_init(&r2, 9);
    int same = 1, inrange = 1;
    for (int i = 0; i < 1000; i++) {
        uint32_t x = md_rng_below(&r1, 7);
        same &= x == md_rng_below(&r2, 7);
        inrange &= x < 7;
    }
    CHECK(same && inrange, "rng: stateful stream reproducible and bounded");
    free(a);
    free(b);
}

static void test_dtypes(void)
{
    float vals[] = {0.f, 1.f, -2.5f, 3.14159265f, 65504.f, 1e-3f, -1e30f};
    bool ok16 = true, okbf = true;
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        float bf = md_bf16_to_f32(md_f32_to_bf16(vals[i]));
        okbf &= fabsf(bf - vals[i]) <= fabsf(vals[i]) * (1.f / 256.f);
        if (fabsf(vals[i]) <= 65504.f) {
            float h = md_f16_to_f32(md_f32_to_f16(vals[i]));
            ok16 &= fabsf(h - vals[i]) <= fabsf(vals[i]) * (1.f / 1024.f) + 1e-7f;
        }
    }
    CHECK(okbf, "bf16 round trip within half an ulp of bf16");
    CHECK(ok16, "f16 round trip within half an ulp of f16");
    CHECK(isnan(md_bf16_to_f32(md_f32_to_bf16(NAN))), "bf16 keeps NaN");
    CHECK(md_f32_to_bf16(1.00390625f) == 0x3f80, "bf16 rounds to nearest even (0x%04x)", md_f32_to_bf16(1.00390625f));
    uint16_t buf[3];
    float src[3] = {1.f, -1.f, 0.5f}, back[3];
    md_convert(buf, MD_BF16, src, MD_F32, 3);
    md_convert(back, MD_F32, buf, MD_BF16, 3);
    CHECK(memcmp(src, back, sizeof src) == 0, "md_convert f32 -> bf16 -> f32 exact for representable values");
    CHECK(md_dtype_size(MD_BF16) == 2 && md_dtype_from_name("F16") == MD_F16 && md_dtype_from_name("F64") == -1,
          "dtype names and sizes");
    /* f16 arrays convert 16 at a time (the KV cache): the same bits as one
     * by one, ties, subnormals, overflow and a tail included */
    enum { N16 = 1003 };
    float *xs = malloc(sizeof(float) * N16), *ys = malloc(sizeof(float) * N16);
    uint16_t *hs = malloc(sizeof(uint16_t) * N16);
    md_rng rng;
    md_rng_init(&rng, 4);
    for (int i = 0; i < N16; i++)
        xs[i] = (2.f * md_rng_uniform(&rng) - 1.f) * powf(2.f, (float)(i % 40) - 26.f);
    xs[0] = 1.00048828125f;   /* halfway between two halves: to even */
    xs[1] = 70000.f;          /* past the largest half */
    xs[2] = 3e-8f;            /* a subnormal half */
    md_convert(hs, MD_F16, xs, MD_F32, N16);
    md_convert(ys, MD_F32, hs, MD_F16, N16);
    int bad = 0;
    for (int i = 0; i < N16; i++)
        bad += hs[i] != md_f32_to_f16(xs[i]) || memcmp(&ys[i], &(float){md_f16_to_f32(hs[i])}, 4) != 0;
    CHECK(bad == 0, "md_convert f32 <-> f16 over %d values: the bits of the one-by-one conversion (%d differ)", N16,
          bad);
    free(xs);
    free(ys);
    free(hs);
}

static void test_fast_math(void)
{
    double worst_exp = 0, worst_erf = 0;
    for (float x = -80.f; x < 80.f; x += 0.0137f) {
        double r = exp((double)x);
        worst_exp = fmax(worst_exp, fabs(md_fast_exp(x) - r) / r);
    }
    for (float x = -6.f; x < 6.f; x += 0.001f)
        worst_erf = fmax(worst_erf, fabs(md_fast_erf(x) - erf((double)x)));
    CHECK(worst_exp < 4e-7, "fast exp: max relative error %.2e over [-80, 80]", worst_exp);
    CHECK(worst_erf < 4e-7, "fast erf: max absolute error %.2e over [-6, 6]", worst_erf);
    CHECK(md_fast_exp(-200.f) == 0.f && isfinite(md_fast_exp(200.f)), "fast exp clamps");
}

/* Products of up to 32 rows run in Medley's own loops: against the naive
 * reference over every edge of their tiles (rows, columns, K tails, strides,
 * alpha and beta), and each row's result the same bits whether it is
 * multiplied alone or among others, on any thread count. */
static void test_small_products(void)
{
    static const int ms[] = {1, 2, 3, 4, 5, 7, 16, 30, 32}, ns[] = {1, 3, 4, 5, 17, 64, 65, 130},
                     ks[] = {1, 5, 16, 17, 33, 256};
    const int64_t cap = 40 * 300;
    float *a = malloc(sizeof(float) * cap), *b = malloc(sizeof(float) * 300 * 300), *c = malloc(sizeof(float) * cap),
          *r = malloc(sizeof(float) * cap), *c0 = malloc(sizeof(float) * cap);
    md_rng rng;
    md_rng_init(&rng, 5);
    for (int64_t i = 0; i < cap; i++)
        c0[i] = md_rng_uniform(&rng) - 0.5f;
    for (int64_t i = 0; i < 300 * 300; i++)
        b[i] = md_rng_uniform(&rng) - 0.5f;
    for (int64_t i = 0; i < cap; i++)
        a[i] = md_rng_uniform(&rng) - 0.5f;
    double worst = 0.0;
    int cases = 0;
    for (int tb = 0; tb < 2; tb++)
        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
                for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
                    for (int ab = 0; ab < 2; ab++) {
                        const int64_t m = ms[mi], n = ns[ni], k = ks[ki], lda = k + 3, ldb = (tb ? k : n) + 2,
                                      ldc = n + 1;
                        const float alpha = ab ? 0.5f : 1.f, beta = ab ? 1.f : 0.f;
                        memcpy(c, c0, sizeof(float) * (size_t)(m * ldc));
                        memcpy(r, c0, sizeof(float) * (size_t)(m * ldc));
                        md_cpu_gemm(false, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
                        md_cpu_gemm_naive(false, tb, m, n, k, alpha, a, lda, b, ldb, beta, r, ldc);
                        for (int64_t i = 0; i < m; i++)
                            for (int64_t j = 0; j < n; j++) {
                                double mag = fabs(beta * c0[i * ldc + j]) + 1e-30;
                                for (int64_t p = 0; p < k; p++)
                                    mag += fabs(alpha * a[i * lda + p] * (tb ? b[j * ldb + p] : b[p * ldb + j]));
                                worst = fmax(worst, fabs(c[i * ldc + j] - r[i * ldc + j]) / mag);
                            }
                        cases++;
                    }
    CHECK(worst < 1e-6, "products of 1..32 rows match the reference in %d shapes (worst error %.2e of the "
                        "terms' magnitude)", cases, worst);
    /* row 5 of 16, alone; 1 thread and 2 */
    const int threads = md_threads_get();
    bool same = true;
    for (int tb = 0; tb < 2; tb++)
        for (int nt = 1; nt <= 2; nt++) {
            md_threads_set(nt);
            md_cpu_gemm(false, tb, 16, 130, 256, 1.f, a, 256, b, tb ? 256 : 130, 0.f, c, 130);
            md_threads_set(1);
            md_cpu_gemm(false, tb, 1, 130, 256, 1.f, a + 5 * 256, 256, b, tb ? 256 : 130, 0.f, r, 130);
            same = same && memcmp(c + 5 * 130, r, sizeof(float) * 130) == 0;
        }
    md_threads_set(threads);
    CHECK(same, "a row's product has the same bits alone or among 16, on 1 or 2 threads");
    /* larger products (oneDNN's): the same bits on 1, 2 and 3 threads,
     * including a long sum (k 1024) that oneDNN alone splits by thread */
    {
        static const int64_t shp[5][4] = {{144, 256, 1024, 0}, {80, 256, 1024, 0}, {144, 768, 256, 0},
                                          {256, 256, 4096, 1}, {40, 100, 2000, 0}};
        const int64_t big = 4096 * 256;
        float *x = malloc(sizeof(float) * (size_t)big), *y = malloc(sizeof(float) * (size_t)big);
        float *c1 = malloc(sizeof(float) * 256 * 768), *c2 = malloc(sizeof(float) * 256 * 768);
        for (int64_t i = 0; i < big; i++) {
            x[i] = md_rng_uniform(&rng) - 0.5f;
            y[i] = md_rng_uniform(&rng) - 0.5f;
        }
        bool same_big = true;
        for (int s = 0; s < 5; s++) {
            const int64_t m = shp[s][0], n = shp[s][1], k = shp[s][2];
            const bool ta = shp[s][3] != 0;
            for (int nt = 1; nt <= 3; nt++) {
                md_threads_set(nt);
                md_cpu_gemm(ta, true, m, n, k, 1.f, x, ta ? m : k, y, k, 0.f, nt == 1 ? c1 : c2, n);
                same_big = same_big && (nt == 1 || memcmp(c1, c2, sizeof(float) * (size_t)(m * n)) == 0);
            }
        }
        md_threads_set(threads);
        CHECK(same_big, "products of up to 256 x 768 with sums up to 4096 long: the same bits on 1, 2 and 3 threads");
        /* a linear layer's gradients at a shape where sgemm's bits follow
         * the call's shape (1024 x 1024 by 1024 x 1024: a whole call and
         * tiles differ in most outputs): the same on 1, 2 and 3 threads */
        enum { LD = 1024 };
        bool same_grad = true;
        float *gx1 = malloc(sizeof(float) * LD * LD), *gw1 = malloc(sizeof(float) * LD * LD);
        float *dy = malloc(sizeof(float) * LD * LD);
        for (int64_t i = 0; i < (int64_t)LD * LD; i++)
            dy[i] = md_rng_uniform(&rng) - 0.5f;
        for (int nt = 1; nt <= 3; nt++) {
            md_threads_set(nt);
            md_graph *g = md_graph_new((size_t)1 << 26);
            md_tensor *xt = md_tensor_new(g, MD_F32, 2, (int64_t[]){LD, LD}, true);
            md_tensor *wt = md_tensor_new(g, MD_F32, 2, (int64_t[]){LD, LD}, true);
            memcpy(xt->data, x, sizeof(float) * LD * LD);
            memcpy(wt->data, y, sizeof(float) * LD * LD);
            md_tensor *yt = md_linear(g, xt, wt, NULL);
            md_graph_backward_from(g, yt, dy);
            if (nt == 1) {
                memcpy(gx1, xt->grad, sizeof(float) * LD * LD);
                memcpy(gw1, wt->grad, sizeof(float) * LD * LD);
            } else
                same_grad = same_grad && memcmp(gx1, xt->grad, sizeof(float) * LD * LD) == 0 &&
                            memcmp(gw1, wt->grad, sizeof(float) * LD * LD) == 0;
            md_graph_free(g);
        }
        md_threads_set(threads);
        CHECK(same_grad, "a linear layer's gradients (1024 x 1024 by 1024 x 1024) have the same bits on 1, 2 and 3 "
                         "threads");
        free(dy);
        free(gx1);
        free(gw1);
        free(x);
        free(y);
        free(c1);
        free(c2);
    }
    free(a);
    free(b);
    free(c);
    free(r);
    free(c0);
}


/* Products on bf16 operands (md_cpu_gemm_bf16, training's --bf16): against
 * the reference on the same rounded operands (only the f32 sums differ),
 * against the f32 product within bf16's rounding, beta 1 accumulating, the
 * same bits on 1, 2 and 3 threads for each way the call is made, and a
 * linear layer's gradients in a bf16 graph near the f32 ones. */
static float round_bf16(float v) { return md_bf16_to_f32(md_f32_to_bf16(v)); }

static void test_bf16_products(void)
{
    const char *impl = NULL;
    const bool fast = md_cpu_bf16_available(&impl);
    printf("     bf16 products here: %s (oneDNN %s)\n", fast ? "yes" : "no, f32 fallback", impl);
    const int threads = md_threads_get();
    md_rng rng;
    md_rng_init(&rng, 77);
    /* m, n, k, ta, tb: one whole call (m >= 1024, m >= 4k), row tiles
     * (few rows, long sums: oneDNN alone splits those by thread), a
     * transposed A, an edge tile */
    static const int64_t shp[5][5] = {
        {2048, 256, 256, 0, 1}, {256, 768, 4480, 1, 0}, {300, 200, 1000, 0, 0}, {1100, 96, 512, 1, 1},
        {640, 512, 128, 0, 0}};
    const int64_t cap = 4480 * 768;
    float *a = malloc(sizeof(float) * (size_t)cap), *b = malloc(sizeof(float) * (size_t)cap);
    float *ar = malloc(sizeof(float) * (size_t)cap), *br = malloc(sizeof(float) * (size_t)cap);
    float *c = malloc(sizeof(float) * (size_t)cap), *c1 = malloc(sizeof(float) * (size_t)cap);
    float *ref = malloc(sizeof(float) * (size_t)cap), *f32 = malloc(sizeof(float) * (size_t)cap);
    for (int64_t i = 0; i < cap; i++) {
        a[i] = md_rng_uniform(&rng) - 0.5f;
        b[i] = md_rng_uniform(&rng) - 0.5f;
        ar[i] = round_bf16(a[i]);
        br[i] = round_bf16(b[i]);
    }
    double worst_same = 0, worst_f32 = 0, worst_acc = 0;
    bool same = true;
    for (int s = 0; s < 5; s++) {
        const int64_t m = shp[s][0], n = shp[s][1], k = shp[s][2];
        const bool ta = shp[s][3] != 0, tb = shp[s][4] != 0;
        const int64_t lda = ta ? m : k, ldb = tb ? k : n;
        md_cpu_gemm_naive(ta, tb, m, n, k, 1.f, ar, lda, br, ldb, 0.f, ref, n);
        md_cpu_gemm(ta, tb, m, n, k, 1.f, a, lda, b, ldb, 0.f, f32, n);
        double scale = 0;
        for (int64_t i = 0; i < m * n; i++)
            scale = fmax(scale, fabs(ref[i]));
        for (int nt = 1; nt <= 3; nt++) {
            md_threads_set(nt);
            md_cpu_gemm_bf16(ta, tb, m, n, k, 1.f, a, lda, b, ldb, 0.f, nt == 1 ? c1 : c, n);
            if (nt > 1)
                same = same && memcmp(c1, c, sizeof(float) * (size_t)(m * n)) == 0;
        }
        md_threads_set(threads);
        for (int64_t i = 0; i < m * n; i++) {
            worst_same = fmax(worst_same, fabs(c1[i] - ref[i]) / scale);
            worst_f32 = fmax(worst_f32, fabs(c1[i] - f32[i]) / scale);
        }
        /* beta 1 adds onto C */
        for (int64_t i = 0; i < m * n; i++)
            c[i] = 1.0f + (float)(i % 7);
        md_cpu_gemm_bf16(ta, tb, m, n, k, 1.f, a, lda, b, ldb, 1.f, c, n);
        for (int64_t i = 0; i < m * n; i++)
            worst_acc = fmax(worst_acc, fabs(c[i] - (1.0f + (float)(i % 7)) - c1[i]) / scale);
    }
    if (fast) {
        CHECK(worst_same < 1e-5, "bf16 products match the double-precision product of the rounded operands in 5 shapes "
                                 "(worst %.2e of the largest output)", worst_same);
    } else {
        CHECK(worst_f32 < 1e-5, "without fast bf16 the bf16 product is the f32 one (worst %.2e)", worst_f32);
    }
    CHECK(worst_f32 < 2e-2, "bf16 products within bf16 rounding of the f32 product (worst %.2e of the largest output)",
          worst_f32);
    CHECK(worst_acc < 1e-5, "bf16 products with beta 1 add onto C (worst %.2e)", worst_acc);
    CHECK(same, "bf16 products (one whole call, row tiles, transposed operands): the same bits on 1, 2 and 3 threads");
    /* alpha other than 1 is not taken: the f32 product, bit for bit */
    md_cpu_gemm_bf16(false, true, 300, 200, 1000, -2.f, a, 1000, b, 1000, 0.f, c, 200);
    md_cpu_gemm(false, true, 300, 200, 1000, -2.f, a, 1000, b, 1000, 0.f, c1, 200);
    CHECK(memcmp(c, c1, sizeof(float) * 300 * 200) == 0, "a product with alpha -2 (the codebook search) stays f32");

    /* a linear layer in a bf16 graph: gradients near f32's, same on 1-3 threads */
    enum { R = 1536, K = 384, N = 512 };
    float *dy = malloc(sizeof(float) * R * N), *g32[3], *g16[3];
    for (int64_t i = 0; i < (int64_t)R * N; i++)
        dy[i] = md_rng_uniform(&rng) - 0.5f;
    const int64_t sizes[3] = {(int64_t)R * N, (int64_t)R * K, (int64_t)N * K};
    bool same_grad = true;
    for (int j = 0; j < 3; j++) {
        g32[j] = malloc(sizeof(float) * (size_t)sizes[j]);
        g16[j] = malloc(sizeof(float) * (size_t)sizes[j]);
    }
    for (int run = 0; run < 4; run++) {   /* f32, then bf16 on 1, 2, 3 threads */
        md_threads_set(run == 0 ? threads : run);
        md_graph *g = md_graph_new((size_t)1 << 25);
        md_graph_set_bf16(g, run > 0);
        md_tensor *xt = md_tensor_new(g, MD_F32, 2, (int64_t[]){R, K}, true);
        md_tensor *wt = md_tensor_new(g, MD_F32, 2, (int64_t[]){N, K}, true);
        memcpy(xt->data, a, sizeof(float) * R * K);
        memcpy(wt->data, b, sizeof(float) * N * K);
        md_tensor *yt = md_linear(g, xt, wt, NULL);
        md_graph_backward_from(g, yt, dy);
        const float *got[3] = {yt->data, xt->grad, wt->grad};
        for (int j = 0; j < 3; j++) {
            if (run == 0)
                memcpy(g32[j], got[j], sizeof(float) * (size_t)sizes[j]);
            else if (run == 1)
                memcpy(g16[j], got[j], sizeof(float) * (size_t)sizes[j]);
            else
                same_grad = same_grad && memcmp(g16[j], got[j], sizeof(float) * (size_t)sizes[j]) == 0;
        }
        md_graph_free(g);
    }
    md_threads_set(threads);
    double rel[3];
    for (int j = 0; j < 3; j++) {
        double num = 0, den = 0;
        for (int64_t i = 0; i < sizes[j]; i++) {
            num += ((double)g16[j][i] - g32[j][i]) * ((double)g16[j][i] - g32[j][i]);
            den += (double)g32[j][i] * g32[j][i];
        }
        rel[j] = sqrt(num / den);
        free(g32[j]);
        free(g16[j]);
    }
    CHECK(rel[0] < 1e-2 && rel[1] < 1e-2 && rel[2] < 1e-2,
          "a linear layer in a bf16 graph: output, dX and dW within %.1e, %.1e, %.1e of f32 (relative l2 norm)",
          rel[0], rel[1], rel[2]);
    if (fast)
        CHECK(rel[0] > 0 && rel[2] > 0, "a bf16 graph does run bf16 products (it differs from f32)");
    CHECK(same_grad, "a linear layer in a bf16 graph: output and gradients the same bits on 1, 2 and 3 threads");
    free(dy);
    free(a); free(b); free(ar); free(br); free(c); free(c1); free(ref); free(f32);
}


/* f16 panels of loaded weights (md_paramset_make_half): a linear layer of
 * few rows reads them, each output one fma chain in k's order (so the
 * same bits however rows are grouped), within rounding of the f32 path; a
 * parameter not exact in f16 gets none; training drops them. */
static void test_half_weights(void)
{
    md_paramset *ps = md_paramset_new();
    md_tensor *w = md_param_add(ps, "w", 2, (int64_t[]){300, 256});
    md_tensor *v = md_param_add(ps, "v", 2, (int64_t[]){8, 8});
    md_tensor *bias = md_param_add(ps, "b", 1, (int64_t[]){300});
    CHECK(md_paramset_alloc(ps) == MD_OK, "paramset alloc");
    md_init_normal(w, 3, 0.f, 0.05f);
    for (int64_t i = 0; i < md_numel(w); i++)   /* as loaded from an f16 file */
        w->data[i] = md_f16_to_f32(md_f32_to_f16(w->data[i]));
    md_init_normal(v, 4, 0.f, 0.05f);
    v->data[3] = 1.0f + 1.0f / 4096;   /* not a half-precision number */
    md_init_normal(bias, 5, 0.f, 0.1f);
    const int with = md_paramset_make_half(ps);
    CHECK(with == 1 && w->half && !v->half && !bias->half,
          "f16 copies for the matrices exact in f16 only (%d made)", with);
    md_graph *g = md_graph_new((size_t)1 << 22);
    md_graph_set_grad(g, false);
    float x[20 * 256], y1[20 * 300], yalone[300];
    for (int i = 0; i < 20 * 256; i++)
        x[i] = sinf(0.37f * (float)i);
    bool chain = true, alone = true;
    double worst = 0, big = 0;
    const int threads = md_threads_get();
    for (int run = 0; run < 21; run++) {   /* on 1, 2 and 3 threads */
        const int rows = 1 + 3 * (run % 7);
        md_threads_set(1 + run / 7);
        md_graph_reset(g);
        md_tensor *xt = md_tensor_wrap(g, MD_F32, x, 2, (int64_t[]){rows, 256});
        const uint16_t *keep = w->half;
        md_tensor *a = md_linear(g, xt, w, bias);
        memcpy(y1, a->data, sizeof(float) * (size_t)(rows * 300));
        w->half = NULL;
        md_tensor *b = md_linear(g, xt, w, bias);
        w->half = keep;
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < 300; j++) {
                float acc = 0.f;   /* one fused multiply-add after another, in k's order */
                for (int p = 0; p < 256; p++)
                    acc = fmaf(x[r * 256 + p], w->data[j * 256 + p], acc);
                const float want = acc + bias->data[j], got = y1[r * 300 + j];
                chain = chain && memcmp(&want, &got, sizeof want) == 0;
                worst = fmax(worst, fabs((double)got - (double)b->data[r * 300 + j]));
                big = fmax(big, fabs((double)b->data[r * 300 + j]));
            }
        /* the last row made alone: the same bits as among the others */
        md_graph_reset(g);
        md_tensor *one = md_linear(g, md_tensor_wrap(g, MD_F32, x + (rows - 1) * 256, 2, (int64_t[]){1, 256}), w, bias);
        memcpy(yalone, one->data, sizeof yalone);
        alone = alone && memcmp(yalone, y1 + (rows - 1) * 300, sizeof yalone) == 0;
    }
    md_threads_set(threads);
    CHECK(chain, "a linear layer of 1 to 19 rows reading the f16 panels, on 1, 2 and 3 threads: each output one fma "
                 "chain in k's order");
    CHECK(alone, "and a row's outputs have the same bits alone or among others");
    CHECK(worst <= 1e-5 * big, "within %.2g of the f32 path (largest output %.3g)", worst, big);
    /* and it does read the panels: change W[7][5] there alone (panel 0, row 5, column 7) */
    const size_t hsz = md_f16_panels_size(300, 256);
    uint16_t *alt = malloc(sizeof(uint16_t) * hsz);
    memcpy(alt, w->half, sizeof(uint16_t) * hsz);
    alt[5 * MD_F16_PANEL + 7] = md_f32_to_f16(3.0f);
    const uint16_t *keep = w->half;
    w->half = alt;
    md_graph_reset(g);
    md_tensor *ya = md_linear(g, md_tensor_wrap(g, MD_F32, x, 2, (int64_t[]){4, 256}), w, bias);
    w->half = keep;
    const float a7 = ya->data[7], a8 = ya->data[8];
    md_graph_reset(g);
    md_tensor *yb = md_linear(g, md_tensor_wrap(g, MD_F32, x, 2, (int64_t[]){4, 256}), w, bias);
    CHECK(a7 != yb->data[7] && a8 == yb->data[8], "the product of few rows reads the f16 panels");
    free(alt);
    md_paramset_zero_grad(ps);
    CHECK(!w->half, "a training step (zero_grad) drops the f16 copies");
    CHECK(md_paramset_make_half(ps) == 1 && w->half, "and they can be made again");
    md_graph_free(g);
    md_paramset_free(ps);
}

/* Generation's attention runs row by row against the cache (AVX-512 forms
 * for head widths 16/32/64/128, plain loops otherwise): each step's output
 * against full causal attention over the same keys, which takes the
 * blocked product path. The cache keeps keys and values in half precision,
 * so the reference gets them rounded the same way: what is left to differ
 * is the order of the f32 sums. */
static void test_attention_rows(void)
{
    static const int widths[] = {16, 32, 20, 64, 128};
    const int B = 3, T = 150, H = 2;   /* 150 keys: key blocks four at a time, then one at a time */
    md_graph *g = md_graph_new(1 << 22);
    md_graph_set_grad(g, false);
    md_rng rng;
    md_rng_init(&rng, 9);
    for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++) {
        const int Dh = widths[wi], W = H * Dh;
        float *q = malloc(sizeof(float) * B * T * W), *k = malloc(sizeof(float) * B * T * W),
              *v = malloc(sizeof(float) * B * T * W), *ref = malloc(sizeof(float) * B * T * W);
        for (int i = 0; i < B * T * W; i++) {
            q[i] = 2.f * md_rng_uniform(&rng) - 1.f;
            k[i] = md_f16_to_f32(md_f32_to_f16(2.f * md_rng_uniform(&rng) - 1.f));
            v[i] = md_f16_to_f32(md_f32_to_f16(2.f * md_rng_uniform(&rng) - 1.f));
        }
        md_graph_reset(g);
        const int64_t shp[3] = {B, T, W};
        md_tensor *o = md_attention(g, md_tensor_wrap(g, MD_F32, q, 3, shp), md_tensor_wrap(g, MD_F32, k, 3, shp),
                                    md_tensor_wrap(g, MD_F32, v, 3, shp), H, true);
        memcpy(ref, o->data, sizeof(float) * B * T * W);
        md_kv_cache c;
        md_kv_cache_init(&c, B, T, W);
        float *qs = malloc(sizeof(float) * B * W), *ks = malloc(sizeof(float) * B * W),
              *vs = malloc(sizeof(float) * B * W);
        double worst = 0.0;
        for (int t = 0; t < T; t++) {
            for (int b = 0; b < B; b++) {
                memcpy(qs + b * W, q + (b * T + t) * W, sizeof(float) * W);
                memcpy(ks + b * W, k + (b * T + t) * W, sizeof(float) * W);
                memcpy(vs + b * W, v + (b * T + t) * W, sizeof(float) * W);
            }
            md_graph_reset(g);
            const int64_t one[3] = {B, 1, W};
            md_tensor *os = md_attention_cached(g, md_tensor_wrap(g, MD_F32, qs, 3, one),
                                                md_tensor_wrap(g, MD_F32, ks, 3, one),
                                                md_tensor_wrap(g, MD_F32, vs, 3, one), H, &c);
            for (int b = 0; b < B; b++)
                for (int i = 0; i < W; i++)
                    worst = fmax(worst, fabs(os->data[b * W + i] - ref[(b * T + t) * W + i]));
        }
        CHECK(worst < 1e-5, "attention step by step against the cache, head width %d: as the full causal pass "
                            "(max diff %.2e)", Dh, worst);
        md_kv_cache_free(&c);
        free(qs);
        free(ks);
        free(vs);
        free(q);
        free(k);
        free(v);
        free(ref);
    }
    md_graph_free(g);
}

static void test_kv_cache(void)
{
    md_lm m;
    md_lm_init(&m, 13, 32, 2, 2, 16, 5);
    md_graph *g = md_graph_new(1 << 20);
    md_graph_set_grad(g, false);
    int32_t ids[2 * 10];
    for (int i = 0; i < 20; i++)
        ids[i] = (i * 5 + 3) % 13;
    md_tensor *x = md_tensor_wrap(g, MD_I32, ids, 2, (int64_t[]){2, 10});
    md_tensor *full = md_lm_forward(g, &m, x, 0.f);    /* [20, 13] */
    float *ref = malloc(sizeof(float) * 20 * 13);
    memcpy(ref, full->data, sizeof(float) * 20 * 13);
    md_kv_cache caches[2];
    md_kv_cache_init(&caches[0], 2, 16, 32);
    md_kv_cache_init(&caches[1], 2, 16, 32);
    /* prefix of 4 positions, then one at a time */
    double worst = 0;
    int32_t step_ids[2 * 4];
    for (int b = 0; b < 2; b++)
        memcpy(step_ids + b * 4, ids + b * 10, sizeof(int32_t) * 4);
    md_graph_reset(g);
    md_tensor *lg = md_lm_forward_cached(g, &m, md_tensor_wrap(g, MD_I32, step_ids, 2, (int64_t[]){2, 4}), caches, 0);
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 4; t++)
            for (int v = 0; v < 13; v++)
                worst = fmax(worst, fabs(lg->data[(b * 4 + t) * 13 + v] - ref[(b * 10 + t) * 13 + v]));
    for (int t = 4; t < 10; t++) {
        int32_t one[2] = {ids[t], ids[10 + t]};
        md_graph_reset(g);
        lg = md_lm_forward_cached(g, &m, md_tensor_wrap(g, MD_I32, one, 2, (int64_t[]){2, 1}), caches, t);
        for (int b = 0; b < 2; b++)
            for (int v = 0; v < 13; v++)
                worst = fmax(worst, fabs(lg->data[b * 13 + v] - ref[(b * 10 + t) * 13 + v]));
    }
    /* the cache holds keys and values in half precision (relative rounding
     * 2^-11), so the bound is relative to the logits' size; a position
     * misplaced in the cache moves them by their own order */
    double big = 0;
    for (int i = 0; i < 20 * 13; i++)
        big = fmax(big, fabs(ref[i]));
    CHECK(worst < 1e-3 * big, "KV-cache decoding matches the full forward (max diff %.2e, %.1e of the largest logit)",
          worst, worst / big);
    md_graph_reset(g);
    for (int t = 10; t < 16; t++)
        md_attention_cached(g, md_tensor_zeros(g, MD_F32, 3, (int64_t[]){2, 1, 32}),
                            md_tensor_zeros(g, MD_F32, 3, (int64_t[]){2, 1, 32}),
                            md_tensor_zeros(g, MD_F32, 3, (int64_t[]){2, 1, 32}), 2, &caches[0]);
    md_clear_error();
    md_tensor *over = md_attention_cached(g, md_tensor_zeros(g, MD_F32, 3, (int64_t[]){2, 1, 32}),
                                          md_tensor_zeros(g, MD_F32, 3, (int64_t[]){2, 1, 32}),
                                          md_tensor_zeros(g, MD_F32, 3, (int64_t[]){2, 1, 32}), 2, &caches[0]);
    CHECK(over == NULL && strstr(md_last_error(), "KV cache full"), "full KV cache is an error: \"%s\"", md_last_error());
    md_kv_cache_free(&caches[0]);
    md_kv_cache_free(&caches[1]);
    free(ref);
    md_graph_free(g);
    md_lm_free(&m);
}

static void test_grad_accumulation(void)
{
    md_graph *g = md_graph_new(1 << 16);
    md_tensor *x = md_tensor_new(g, MD_F32, 1, (int64_t[]){5}, true);
    for (int i = 0; i < 5; i++)
        x->data[i] = (float)i;
    /* y = sum(x*x + 3x) -> dy/dx = 2x + 3; x used three times */
    md_tensor *y = md_sum(g, md_add(g, md_mul(g, x, x), md_scale(g, x, 3.f)));
    md_graph_backward(g, y);
    bool ok = true;
    for (int i = 0; i < 5; i++)
        ok &= fabsf(x->grad[i] - (2.f * i + 3.f)) < 1e-6f;
    CHECK(ok, "gradients accumulate over every use of a tensor");
    /* reshape view shares gradient storage */
    md_graph_reset(g);
    md_tensor *a = md_tensor_new(g, MD_F32, 2, (int64_t[]){2, 3}, true);
    for (int i = 0; i < 6; i++)
        a->data[i] = 1.f;
    md_tensor *v = md_reshape(g, a, 1, (int64_t[]){6});
    md_tensor *s = md_add(g, md_sum(g, v), md_sum(g, a));
    md_graph_backward(g, s);
    ok = v->data == a->data;
    for (int i = 0; i < 6; i++)
        ok &= a->grad[i] == 2.f;
    CHECK(ok, "a reshape is a view: same data, gradients meet in one buffer");
    md_graph_free(g);
}

static void test_dropout(void)
{
    md_graph *g = md_graph_new(1 << 20);
    md_graph_set_seed(g, 77);
    int64_t n = 100000;
    md_tensor *x = md_tensor_new(g, MD_F32, 1, &n, true);
    md_init_const(x, 1.f);
    md_tensor *y = md_dropout(g, x, 0.25f);
    int64_t zeros = 0;
    bool scaled = true;
    for (int64_t i = 0; i < n; i++) {
        zeros += y->data[i] == 0.f;
        scaled &= y->data[i] == 0.f || fabsf(y->data[i] - 1.f / 0.75f) < 1e-6f;
    }
    CHECK(fabs((double)zeros / n - 0.25) < 0.01 && scaled, "dropout drops %.3f of values, scales the rest", (double)zeros / n);
    md_graph_backward(g, md_sum(g, y));
    bool same_mask = true;
    for (int64_t i = 0; i < n; i++)
        same_mask &= (y->data[i] == 0.f) == (x->grad[i] == 0.f);
    CHECK(same_mask, "dropout backward uses the forward's mask");
    md_graph_set_training(g, false);
    CHECK(md_dropout(g, x, 0.5f) == x, "dropout is the identity in inference");
    md_graph_free(g);
}

static void test_views_5d(void)
{
    md_graph *g = md_graph_new(1 << 20);
    int64_t s[5] = {2, 3, 4, 5, 6};
    md_tensor *x = md_tensor_new(g, MD_F32, 5, s, false);
    for (int64_t i = 0; i < md_numel(x); i++)
        x->data[i] = (float)i;
    /* video B×T×C×H×W -> B×C×T×H×W */
    md_tensor *y = md_permute(g, x, (int[]){0, 2, 1, 3, 4});
    bool ok = y->shape[1] == 4 && y->shape[2] == 3;
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 3; t++)
            for (int c = 0; c < 4; c++)
                for (int h = 0; h < 5; h++)
                    for (int w = 0; w < 6; w++)
                        ok &= y->data[(((b * 4 + c) * 3 + t) * 5 + h) * 6 + w] ==
                              x->data[(((b * 3 + t) * 4 + c) * 5 + h) * 6 + w];
    CHECK(ok, "5-D permute (video layout change)");
    /* a strided view from outside the graph becomes contiguous */
    float base[12];
    for (int i = 0; i < 12; i++)
        base[i] = (float)i;
    md_tensor *v = md_tensor_wrap(g, MD_F32, base, 2, (int64_t[]){3, 2});
    v->stride[0] = 4;   /* every other pair of a 3x4 matrix: columns 0-1 */
    v->stride[1] = 1;
    md_tensor *c = md_contiguous(g, v);
    CHECK(!md_is_contiguous(v) && md_is_contiguous(c) && c->data[2] == 4.f && c->data[5] == 9.f,
          "md_contiguous copies a strided view");
    md_graph_free(g);
}

static void test_errors(void)
{
    md_clear_error();
    md_log(MD_LOG_ERROR, "file %s: %s", "x.bin", "bad");
    CHECK(strcmp(md_last_error(), "file x.bin: bad") == 0, "last error is kept for the caller");
    CHECK(strcmp(md_status_str(MD_ERR_FORMAT), "malformed data") == 0 && *md_status_str((md_status)99),
          "every status has a description");
    md_lm m;
    CHECK(md_lm_init(&m, 10, 30, 1, 4, 8, 1) == MD_ERR_INVALID, "width not divisible by heads is refused: %s", md_last_error());
}

static void *worker_threads(void *out)
{
    md_graph *g = md_graph_new(1 << 16);
    *(int *)out = omp_get_max_threads();
    md_graph_free(g);
    return NULL;
}

static void test_worker_threads(void)
{
    int before = md_threads_get(), seen = 0;
    md_threads_set(1);
    pthread_t t;
    pthread_create(&t, NULL, worker_threads, &seen);
    pthread_join(t, NULL);
    CHECK(seen == 1, "a worker thread uses the count set on the main thread (1; saw %d)", seen);
    md_threads_set(before);
}

int main(void)
{
    md_threads_init();
    int threads = md_threads_get();
    test_arena_steady_state();
    test_rng();
    md_threads_set(threads);
    test_dtypes();
    test_fast_math();
    test_small_products();
    test_bf16_products();
    test_half_weights();
    test_attention_rows();
    test_kv_cache();
    test_grad_accumulation();
    test_dropout();
    test_views_5d();
    test_errors();
    test_worker_threads();
    return check_done();
}
