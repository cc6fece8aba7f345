/* bench_gpu.c — the CUDA kernels against the CPU path: gemm (1024^3 and
 * 4096^3), a transformer-block forward (layernorm, q/k/v projections,
 * attention, output projection, gelu), attention alone (the tiled
 * kernel and the row kernel) and a conv block (conv2d + groupnorm).
 * Prints milliseconds per run and the CPU/GPU ratio. GPU time from CUDA
 * events around queued work (inputs already on the device); CPU
 * time from md_time_now. Exits 77 without a device or a CUDA build.
 *
 *     build/tests/bench_gpu          (or: meson test --benchmark --suite gpu)
 */
#include "backend.h"
#include "cuda_info.h"
#include "kernels_cpu.h"
#include "ops.h"
#include "rng.h"
#include "tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MEDLEY_HAVE_CUDA

int main(void)
{
    printf("skipped: this build has no CUDA kernels\n");
    return 77;
}

#else

#include "cuda/md_cuda.h"
#include "tokens_device.h"

#include <cuda_runtime_api.h>

static md_cuda *C;

static void must(md_status st, const char *what)
{
    if (st != MD_OK) {
        fprintf(stderr, "bench_gpu: %s failed: %s\n", what, md_last_error());
        exit(1);
    }
}

static float *dev_rand(int64_t n, uint64_t seed, float lo, float hi)
{
    float *h = malloc(sizeof(float) * (size_t)n);
    float *d = md_cuda_alloc(C, sizeof(float) * (size_t)n);
    if (!h || !d) {
        fprintf(stderr, "bench_gpu: out of memory for %lld floats\n", (long long)n);
        exit(1);
    }
    md_fill_uniform(h, n, seed, 0, lo, hi);
    must(md_cuda_upload(C, d, h, sizeof(float) * (size_t)n), "upload");
    free(h);
    return d;
}

static float *dev_new(int64_t n)
{
    float *d = md_cuda_alloc(C, sizeof(float) * (size_t)n);
    if (!d) {
        fprintf(stderr, "bench_gpu: device arena too small\n");
        exit(1);
    }
    return d;
}

/* Milliseconds per run of fn on the device: one warm-up, then reps runs
 * between two events. */
typedef void (*gpu_fn)(void *arg);
static double gpu_ms(gpu_fn fn, void *arg, int reps)
{
    cudaStream_t s = (cudaStream_t)md_cuda_stream(C);
    cudaEvent_t e0, e1;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
        fprintf(stderr, "bench_gpu: cannot create CUDA events\n");
        exit(1);
    }
    fn(arg);
    must(md_cuda_sync(C), "warm-up");
    cudaEventRecord(e0, s);
    for (int i = 0; i < reps; i++)
        fn(arg);
    cudaEventRecord(e1, s);
    must(md_cuda_sync(C), "timed runs");
    float ms = 0;
    if (cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
        ms = -1;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return ms / reps;
}

typedef void (*cpu_fn)(void *arg);
static double cpu_ms(cpu_fn fn, void *arg, int reps)
{
    fn(arg);
    double t0 = md_time_now();
    for (int i = 0; i < reps; i++)
        fn(arg);
    return (md_time_now() - t0) * 1e3 / reps;
}

static void row(const char *what, double cpu, double gpu)
{
    printf("%-44s cpu %10.3f ms   gpu %9.3f ms   x%.1f\n", what, cpu, gpu, gpu > 0 ? cpu / gpu : 0.0);
    fflush(stdout);
}

/* ---- gemm ------------------------------------------------------------------- */

typedef struct gemm_case {
    int64_t n;
    const float *a, *b;
    float *c;
} gemm_case;

static void gemm_gpu(void *p)
{
    gemm_case *g = p;
    must(md_cuda_gemm(C, false, false, g->n, g->n, g->n, 1.f, g->a, g->n, g->b, g->n, 0.f, g->c, g->n), "gemm");
}

static void gemm_cpu(void *p)
{
    gemm_case *g = p;
    md_cpu_gemm(false, false, g->n, g->n, g->n, 1.f, g->a, g->n, g->b, g->n, 0.f, g->c, g->n);
}

static void bench_gemm(int64_t n, int cpu_reps, int gpu_reps)
{
    size_t mark = md_cuda_mark(C);
    gemm_case dg = {n, dev_rand(n * n, 1, -1, 1), dev_rand(n * n, 2, -1, 1), dev_new(n * n)};
    float *ha = malloc(sizeof(float) * (size_t)(n * n)), *hb = malloc(sizeof(float) * (size_t)(n * n));
    float *hc = malloc(sizeof(float) * (size_t)(n * n));
    md_fill_uniform(ha, n * n, 1, 0, -1, 1);
    md_fill_uniform(hb, n * n, 2, 0, -1, 1);
    gemm_case hg = {n, ha, hb, hc};
    char what[64];
    double gflop = 2.0 * (double)n * n * n / 1e9;
    double g32 = gpu_ms(gemm_gpu, &dg, gpu_reps);
    must(md_cuda_set_tf32(C, true), "tf32 on");
    double gtf = gpu_ms(gemm_gpu, &dg, gpu_reps);
    must(md_cuda_set_tf32(C, false), "tf32 off");
    double cm = cpu_ms(gemm_cpu, &hg, cpu_reps);
    snprintf(what, sizeof what, "gemm %lld^3 fp32 (%.0f GFLOP/s on GPU)", (long long)n, gflop / (g32 / 1e3));
    row(what, cm, g32);
    snprintf(what, sizeof what, "gemm %lld^3 tf32 (%.0f GFLOP/s on GPU)", (long long)n, gflop / (gtf / 1e3));
    row(what, cm, gtf);
    free(ha); free(hb); free(hc);
    md_cuda_rewind_to(C, mark);
}

/* ---- transformer block ------------------------------------------------------------ */

#define TB_B 4
#define TB_T 256
#define TB_D 512
#define TB_H 8

typedef struct block_case {
    /* device */
    float *x, *wq, *wk, *wv, *wo, *w1, *ln_w, *ln_b;
    float *h, *q, *k, *v, *att, *o, *u, *y, *mean, *rstd;
    /* host */
    md_graph *g;
    md_tensor *hx, *hwq, *hwk, *hwv, *hwo, *hw1, *hlnw, *hlnb;
} block_case;

static void block_gpu(void *p)
{
    block_case *b = p;
    const int64_t R = TB_B * TB_T, D = TB_D;
    must(md_cuda_layernorm_fwd(C, b->h, b->mean, b->rstd, b->x, b->ln_w, b->ln_b, R, D, 1e-5f), "layernorm");
    must(md_cuda_gemm(C, false, true, R, D, D, 1.f, b->h, D, b->wq, D, 0.f, b->q, D), "q");
    must(md_cuda_gemm(C, false, true, R, D, D, 1.f, b->h, D, b->wk, D, 0.f, b->k, D), "k");
    must(md_cuda_gemm(C, false, true, R, D, D, 1.f, b->h, D, b->wv, D, 0.f, b->v, D), "v");
    must(md_cuda_attention_fwd(C, b->att, NULL, b->q, b->k, b->v, TB_B, TB_T, TB_T, TB_H, D / TB_H, true),
         "attention");
    must(md_cuda_gemm(C, false, true, R, D, D, 1.f, b->att, D, b->wo, D, 0.f, b->o, D), "out");
    must(md_cuda_gemm(C, false, true, R, 4 * D, D, 1.f, b->o, D, b->w1, D, 0.f, b->u, 4 * D), "mlp");
    must(md_cuda_unary_fwd(C, MD_CUDA_GELU, b->y, b->u, R * 4 * D), "gelu");
}

static void block_cpu(void *p)
{
    block_case *b = p;
    md_graph *g = b->g;
    md_graph_reset(g);
    md_graph_set_backend(g, md_backend_cpu());
    md_graph_set_grad(g, false);
    md_tensor *h = md_layernorm(g, b->hx, b->hlnw, b->hlnb, 1e-5f);
    md_tensor *q = md_linear(g, h, b->hwq, NULL), *k = md_linear(g, h, b->hwk, NULL);
    md_tensor *v = md_linear(g, h, b->hwv, NULL);
    md_tensor *a = md_attention(g, q, k, v, TB_H, true);
    md_tensor *o = md_linear(g, a, b->hwo, NULL);
    md_gelu(g, md_linear(g, o, b->hw1, NULL));
}

static void bench_block(void)
{
    size_t mark = md_cuda_mark(C);
    const int64_t R = TB_B * TB_T, D = TB_D;
    block_case b = {0};
    b.x = dev_rand(R * D, 10, -1, 1);
    b.wq = dev_rand(D * D, 11, -0.05f, 0.05f);
    b.wk = dev_rand(D * D, 12, -0.05f, 0.05f);
    b.wv = dev_rand(D * D, 13, -0.05f, 0.05f);
    b.wo = dev_rand(D * D, 14, -0.05f, 0.05f);
    b.w1 = dev_rand(4 * D * D, 15, -0.05f, 0.05f);
    b.ln_w = dev_rand(D, 16, 0.9f, 1.1f);
    b.ln_b = dev_rand(D, 17, -0.1f, 0.1f);
    b.h = dev_new(R * D); b.q = dev_new(R * D); b.k = dev_new(R * D); b.v = dev_new(R * D);
    b.att = dev_new(R * D); b.o = dev_new(R * D); b.u = dev_new(R * 4 * D); b.y = dev_new(R * 4 * D);
    b.mean = dev_new(R); b.rstd = dev_new(R);

    md_graph *pg = md_graph_new(1 << 20);   /* holds the inputs */
    b.g = md_graph_new(1 << 26);
    if (!pg || !b.g) {
        fprintf(stderr, "bench_gpu: out of memory\n");
        exit(1);
    }
    md_graph_set_grad(pg, false);
    int64_t xs[3] = {TB_B, TB_T, D}, ds[2] = {D, D}, d4[2] = {4 * D, D}, d1[1] = {D};
    b.hx = md_tensor_new(pg, MD_F32, 3, xs, false);
    b.hwq = md_tensor_new(pg, MD_F32, 2, ds, false);
    b.hwk = md_tensor_new(pg, MD_F32, 2, ds, false);
    b.hwv = md_tensor_new(pg, MD_F32, 2, ds, false);
    b.hwo = md_tensor_new(pg, MD_F32, 2, ds, false);
    b.hw1 = md_tensor_new(pg, MD_F32, 2, d4, false);
    b.hlnw = md_tensor_new(pg, MD_F32, 1, d1, false);
    b.hlnb = md_tensor_new(pg, MD_F32, 1, d1, false);
    md_fill_uniform(b.hx->data, R * D, 10, 0, -1, 1);
    md_fill_uniform(b.hwq->data, D * D, 11, 0, -0.05f, 0.05f);
    md_fill_uniform(b.hwk->data, D * D, 12, 0, -0.05f, 0.05f);
    md_fill_uniform(b.hwv->data, D * D, 13, 0, -0.05f, 0.05f);
    md_fill_uniform(b.hwo->data, D * D, 14, 0, -0.05f, 0.05f);
    md_fill_uniform(b.hw1->data, 4 * D * D, 15, 0, -0.05f, 0.05f);
    md_fill_uniform(b.hlnw->data, D, 16, 0, 0.9f, 1.1f);
    md_fill_uniform(b.hlnb->data, D, 17, 0, -0.1f, 0.1f);

    double cm = cpu_ms(block_cpu, &b, 5);
    row("transformer block fwd B4 T256 D512 H8 causal", cm, gpu_ms(block_gpu, &b, 20));
    md_cuda_set_attention_rows(C, true);
    row("  the same, attention by the row kernel", cm, gpu_ms(block_gpu, &b, 20));
    md_cuda_set_attention_rows(C, false);
    md_graph_free(b.g);
    md_graph_free(pg);
    md_cuda_rewind_to(C, mark);
}

/* ---- attention alone: the tiled kernel and the row kernel ---------------------------- */

typedef struct att_case {
    int64_t t;
    float *q, *k, *v, *o;
    md_graph *g;
    md_tensor *hq, *hk, *hv;
} att_case;

static void att_gpu(void *p)
{
    att_case *a = p;
    must(md_cuda_attention_fwd(C, a->o, NULL, a->q, a->k, a->v, TB_B, a->t, a->t, TB_H, TB_D / TB_H, true),
         "attention");
}

static void att_cpu(void *p)
{
    att_case *a = p;
    md_graph_reset(a->g);
    md_graph_set_backend(a->g, md_backend_cpu());
    md_graph_set_grad(a->g, false);
    md_attention(a->g, a->hq, a->hk, a->hv, TB_H, true);
}

static void bench_attention(int64_t t)
{
    size_t mark = md_cuda_mark(C);
    const int64_t n = TB_B * t * TB_D;
    att_case a = {.t = t, .q = dev_rand(n, 30, -2, 2), .k = dev_rand(n, 31, -2, 2), .v = dev_rand(n, 32, -1, 1),
                  .o = dev_new(n)};
    md_graph *pg = md_graph_new((size_t)1 << 20);
    a.g = md_graph_new((size_t)1 << 26);
    if (!pg || !a.g)
        exit(1);
    md_graph_set_grad(pg, false);
    int64_t xs[3] = {TB_B, t, TB_D};
    a.hq = md_tensor_new(pg, MD_F32, 3, xs, false);
    a.hk = md_tensor_new(pg, MD_F32, 3, xs, false);
    a.hv = md_tensor_new(pg, MD_F32, 3, xs, false);
    md_fill_uniform(a.hq->data, n, 30, 0, -2, 2);
    md_fill_uniform(a.hk->data, n, 31, 0, -2, 2);
    md_fill_uniform(a.hv->data, n, 32, 0, -1, 1);
    double cm = cpu_ms(att_cpu, &a, 3);
    char what[64];
    snprintf(what, sizeof what, "attention fwd B4 T%lld H8 Dh64 causal, tiled", (long long)t);
    row(what, cm, gpu_ms(att_gpu, &a, 20));
    md_cuda_set_attention_rows(C, true);
    snprintf(what, sizeof what, "attention fwd B4 T%lld H8 Dh64 causal, rows", (long long)t);
    row(what, cm, gpu_ms(att_gpu, &a, 20));
    md_cuda_set_attention_rows(C, false);
    md_graph_free(a.g);
    md_graph_free(pg);
    md_cuda_rewind_to(C, mark);
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

/* ---- the bundled token transformer: an image's steps ------------------------------------- */

/* The steps that write one picture with 8 candidates and their
 * unconditional twins (16 rows): the prefix and 6 opening tokens, then 257
 * steps of one token each (256 codes and <eoi>), teacher-forced with fixed
 * random codes so both sides do the same work. The CPU side is the
 * sampler's step (md_tok_forward_cached over f16 weights and caches, every
 * op threaded); the device side md_tok_device_step. Both return each
 * step's logits to the host, as sampling needs. Sampling itself is not
 * timed. */
enum { TK_ROWS = 16, TK_OPEN = 6, TK_STEPS = MD_VQ_TOKENS + 1 };

typedef struct tok_case {
    md_tokmodel m;
    float cond[TK_ROWS * MD_SPACE_DIM];
    int32_t open_ids[TK_ROWS * TK_OPEN], open_slots[TK_ROWS * TK_OPEN];
    int32_t ids[TK_STEPS][TK_ROWS], slots[TK_STEPS][TK_ROWS];
    float *logits;
} tok_case;

static double tok_gpu(tok_case *t, bool graphs)
{
    md_tok_device *td;
    int64_t rows = TK_ROWS;
    must(md_tok_device_new(&t->m, C, 1, &rows, &td), "md_tok_device_new");
    md_tok_device_set_graphs(td, graphs);
    double t0 = md_time_now();
    must(md_tok_device_step(td, 0, 0, t->cond, TK_ROWS, t->open_ids, t->open_slots, TK_OPEN, 0, t->logits), "step");
    for (int s = 0; s < TK_STEPS; s++)
        must(md_tok_device_step(td, 0, 0, t->cond, TK_ROWS, t->ids[s], t->slots[s], 1, MD_TOK_PREFIX + TK_OPEN + s,
                                t->logits), "step");
    double ms = (md_time_now() - t0) * 1e3;
    md_tok_device_free(td);
    return ms;
}

static md_tensor *tok_cpu_step(md_graph *g, tok_case *t, md_kv_cache *caches, const int32_t *ids,
                               const int32_t *slots, int64_t n, int64_t pos0)
{
    md_graph_reset(g);
    md_tensor *ct = md_tensor_wrap(g, MD_F32, t->cond, 2, (int64_t[]){TK_ROWS, MD_SPACE_DIM});
    md_tensor *it = md_tensor_wrap(g, MD_I32, (void *)ids, 2, (int64_t[]){TK_ROWS, n});
    md_tensor *st = md_tensor_wrap(g, MD_I32, (void *)slots, 2, (int64_t[]){TK_ROWS, n});
    md_tensor *l = md_tok_forward_cached(g, &t->m, ct, it, st, caches, pos0);
    if (!l) {
        fprintf(stderr, "bench_gpu: a CPU token step failed: %s\n", md_last_error());
        exit(1);
    }
    return l;
}

static double tok_cpu(tok_case *t)
{
    md_kv_cache *caches = calloc((size_t)t->m.layers, sizeof *caches);
    md_graph *g = md_graph_new((size_t)1 << 24);
    if (!caches || !g)
        exit(1);
    md_graph_set_backend(g, md_backend_cpu());
    for (int64_t l = 0; l < t->m.layers; l++)
        must(md_kv_cache_init(&caches[l], TK_ROWS, MD_TOK_TMAX, t->m.d), "kv cache");
    double t0 = md_time_now();
    tok_cpu_step(g, t, caches, t->open_ids, t->open_slots, TK_OPEN, 0);
    for (int s = 0; s < TK_STEPS; s++)
        tok_cpu_step(g, t, caches, t->ids[s], t->slots[s], 1, MD_TOK_PREFIX + TK_OPEN + s);
    double ms = (md_time_now() - t0) * 1e3;
    for (int64_t l = 0; l < t->m.layers; l++)
        md_kv_cache_free(&caches[l]);
    free(caches);
    md_graph_free(g);
    return ms;
}

static void bench_tokens(void)
{
    tok_case *t = calloc(1, sizeof *t);
    if (!t)
        exit(1);
    if (!load_bundled_tokens(&t->m)) {
        printf("token transformer: skipped (MEDLEY_MODELS_DIR unset or no tokens.safetensors there)\n");
        free(t);
        return;
    }
    md_paramset_make_half(t->m.ps);   /* as the sampler does; the device copies the f32 values */
    md_fill_uniform(t->cond, TK_ROWS * MD_SPACE_DIM, 40, 0, -0.15f, 0.15f);
    for (int r = 1; r < TK_ROWS; r += 2)   /* the twins: no condition */
        for (int j = 0; j < MD_SPACE_DIM; j++)
            t->cond[r * MD_SPACE_DIM + j] = 0.f;
    md_rng rng;
    md_rng_init(&rng, 41);
    for (int i = 0; i < TK_ROWS * TK_OPEN; i++) {
        t->open_ids[i] = (int32_t)md_rng_below(&rng, (uint32_t)t->m.text_vocab);
        t->open_slots[i] = MD_VQ_TOKENS;
    }
    for (int s = 0; s < TK_STEPS; s++)
        for (int r = 0; r < TK_ROWS; r++) {
            t->ids[s][r] = s < MD_VQ_TOKENS ? md_tok_code(&t->m, (int)md_rng_below(&rng, MD_VQ_CODES))
                                            : md_tok_eoi(&t->m);
            t->slots[s][r] = s < MD_VQ_TOKENS ? s : MD_VQ_TOKENS;
        }
    t->logits = malloc(sizeof(float) * (size_t)(TK_ROWS * t->m.vocab));
    if (!t->logits)
        exit(1);
    tok_gpu(t, false);   /* warm-up: cuBLAS picks its kernels */
    double c1 = tok_cpu(t), c2 = tok_cpu(t), cm = c1 < c2 ? c1 : c2;
    for (int graphs = 1; graphs >= 0; graphs--) {
        double g1 = tok_gpu(t, graphs), g2 = tok_gpu(t, graphs);
        row(graphs ? "token transformer: a picture's 258 steps x16 rows" : "  the same, steps queued call by call", cm,
            g1 < g2 ? g1 : g2);
    }
    free(t->logits);
    md_tok_free(&t->m);
    free(t);
}

/* ---- the sampler: the bundled model's pictures, videos and captions ------------------------- */

static double best_of(md_tok_session *se, const float *cond, const md_tok_sample_opts *o, int what, int32_t *out,
                      int runs)
{
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        double t0 = md_time_now();
        int n = 0;
        md_status st = what == 0   ? md_tok_sample_image(se, cond, o, 5, NULL, NULL, NULL, out)
                       : what == 1 ? md_tok_sample_video(se, cond, o, 5, NULL, NULL, NULL, out)
                                   : md_tok_sample_caption(se, cond, o, 5, NULL, out, MD_TOK_CAPTION, &n);
        must(st, "sampling");
        double ms = (md_time_now() - t0) * 1e3;
        best = ms < best ? ms : best;
    }
    return best;
}

/* md_tok_sample_* with the generator's defaults (temperature 1, guidance
 * 3, 8 candidates; the candidates' chooser, which decodes them on the CPU,
 * is left out), on a session on cuda:0 and on a CPU session. */
static void bench_sampler(void)
{
    md_tokmodel m;
    if (!load_bundled_tokens(&m)) {
        printf("sampler: skipped (MEDLEY_MODELS_DIR unset or no tokens.safetensors there)\n");
        return;
    }
    md_tok_session *sd = md_tok_session_new_on(&m, 0), *sc = md_tok_session_new_on(&m, -1);
    if (!sd || !sc || strcmp(md_tok_session_device(sd), "cuda:0") != 0) {
        printf("sampler: no session on cuda:0\n");
        exit(1);
    }
    float cond[MD_SPACE_DIM];
    md_fill_normal(cond, MD_SPACE_DIM, 50, 0, 0.f, 0.088f);   /* about a unit vector */
    md_tok_sample_opts o = {.temperature = 1.f, .top_p = 1.f, .guidance = 3.f, .candidates = 8};
    int32_t *out = malloc(sizeof(int32_t) * MD_WORLD_FRAMES * MD_VQ_TOKENS);
    if (!out)
        exit(1);
    static const char *names[3] = {"sampler: picture, 8 candidates", "sampler: 16-frame video, 8 candidates",
                                   "sampler: caption"};
    setenv("MEDLEY_CUDA_GRAPHS", "0", 1);
    md_tok_session *sp = md_tok_session_new_on(&m, 0);   /* steps queued call by call */
    unsetenv("MEDLEY_CUDA_GRAPHS");
    if (!sp || strcmp(md_tok_session_device(sp), "cuda:0") != 0)
        exit(1);
    for (int what = 0; what < 3; what++) {
        best_of(sd, cond, &o, what, out, 1);   /* warm-up */
        best_of(sp, cond, &o, what, out, 1);
        double g = best_of(sd, cond, &o, what, out, 3), c = best_of(sc, cond, &o, what, out, 2);
        row(names[what], c, g);
        row("  the same, steps queued call by call", c, best_of(sp, cond, &o, what, out, 3));
    }
    free(out);
    md_tok_session_free(sp);
    md_tok_session_free(sd);
    md_tok_session_free(sc);
    md_tok_free(&m);
}

/* ---- conv block ----------------------------------------------------------------------- */

typedef struct conv_case {
    md_cuda_conv2d q;
    float *x, *w, *bias, *y, *z, *gw, *gb, *scratch;
    md_graph *g;
    md_tensor *hx, *hw, *hbias, *hgw, *hgb;
} conv_case;

static void conv_gpu(void *p)
{
    conv_case *cc = p;
    must(md_cuda_conv2d_fwd(C, &cc->q, cc->y, cc->x, cc->w, cc->bias, cc->scratch), "conv2d");
    int64_t s = md_cuda_conv2d_oh(&cc->q) * md_cuda_conv2d_ow(&cc->q);
    must(md_cuda_groupnorm_fwd(C, cc->z, NULL, NULL, cc->y, cc->gw, cc->gb, cc->q.n, cc->q.o, s, 32, 1e-5f),
         "groupnorm");
}

static void conv_cpu(void *p)
{
    conv_case *cc = p;
    md_graph *g = cc->g;
    md_graph_reset(g);
    md_graph_set_backend(g, md_backend_cpu());
    md_graph_set_grad(g, false);
    md_groupnorm(g, md_conv2d(g, cc->hx, cc->hw, cc->hbias, cc->q.stride, cc->q.pad, 1), 32, cc->hgw, cc->hgb, 1e-5f);
}

static void bench_conv(void)
{
    size_t mark = md_cuda_mark(C);
    conv_case cc = {.q = {.n = 8, .c = 64, .h = 64, .w = 64, .o = 128, .kh = 3, .kw = 3, .stride = 1, .pad = 1}};
    const md_cuda_conv2d *q = &cc.q;
    int64_t nx = q->n * q->c * q->h * q->w, nw = q->o * q->c * q->kh * q->kw;
    int64_t ny = q->n * q->o * md_cuda_conv2d_oh(q) * md_cuda_conv2d_ow(q);
    cc.x = dev_rand(nx, 20, -1, 1);
    cc.w = dev_rand(nw, 21, -0.05f, 0.05f);
    cc.bias = dev_rand(q->o, 22, -0.1f, 0.1f);
    cc.gw = dev_rand(q->o, 23, 0.9f, 1.1f);
    cc.gb = dev_rand(q->o, 24, -0.1f, 0.1f);
    cc.y = dev_new(ny);
    cc.z = dev_new(ny);
    cc.scratch = md_cuda_alloc(C, md_cuda_conv2d_scratch_bytes(q));
    if (!cc.scratch)
        exit(1);
    md_graph *pg = md_graph_new(1 << 20);
    cc.g = md_graph_new(1 << 26);
    if (!pg || !cc.g)
        exit(1);
    md_graph_set_grad(pg, false);
    int64_t xs[4] = {q->n, q->c, q->h, q->w}, ws[4] = {q->o, q->c, q->kh, q->kw}, os[1] = {q->o};
    cc.hx = md_tensor_new(pg, MD_F32, 4, xs, false);
    cc.hw = md_tensor_new(pg, MD_F32, 4, ws, false);
    cc.hbias = md_tensor_new(pg, MD_F32, 1, os, false);
    cc.hgw = md_tensor_new(pg, MD_F32, 1, os, false);
    cc.hgb = md_tensor_new(pg, MD_F32, 1, os, false);
    md_fill_uniform(cc.hx->data, nx, 20, 0, -1, 1);
    md_fill_uniform(cc.hw->data, nw, 21, 0, -0.05f, 0.05f);
    md_fill_uniform(cc.hbias->data, q->o, 22, 0, -0.1f, 0.1f);
    md_fill_uniform(cc.hgw->data, q->o, 23, 0, 0.9f, 1.1f);
    md_fill_uniform(cc.hgb->data, q->o, 24, 0, -0.1f, 0.1f);
    row("conv block 8x64x64x64 -> 128 k3 + groupnorm", cpu_ms(conv_cpu, &cc, 3), gpu_ms(conv_gpu, &cc, 20));
    md_graph_free(cc.g);
    md_graph_free(pg);
    md_cuda_rewind_to(C, mark);
}

int main(void)
{
    const char *why = NULL;
    if (md_cuda_device_count(&why) == 0) {
        printf("skipped: no GPU: %s\n", why);
        return 77;
    }
    md_cuda_device d;
    if (md_cuda_device_info(0, &d) == MD_OK)
        printf("cuda:0 %s (compute %d.%d, %d SMs); CPU: %d threads\n", d.name, d.major, d.minor, d.multiprocessors,
               md_threads_get());
    if (md_cuda_open(0, (size_t)1 << 30, &C) != MD_OK) {
        printf("cannot open cuda:0: %s\n", md_last_error());
        return 1;
    }
    bench_gemm(1024, 5, 20);
    bench_gemm(4096, 1, 5);
    bench_block();
    bench_attention(256);
    bench_attention(1024);
    bench_conv();
    bench_tokens();
    bench_sampler();
    md_cuda_close(C);
    return 0;
}

#endif
