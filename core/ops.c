/* ops.c — matrix products, elementwise ops, norms, softmax, lookups, shape
 * ops, reductions and losses, each with its backward.
 *
 * Backward functions follow one pattern: for each input that keeps a grad,
 * either overwrite it (md_grad_beta() == 0, first writer) or accumulate.
 * Parallel loops split by index; reductions that cross rows (bias and norm
 * gains) sum each output element in a fixed order on one thread, so results
 * are identical for any thread count.
 */
#include "ops_internal.h"
#include "rng.h"
#include "simd.h"

#include <math.h>
#include <string.h>

void md_axpby(float *y, const float *x, int64_t n, float alpha, float beta)
{
    if (beta == 0.0f) {
        #pragma omp parallel for simd schedule(static) if (parallel: n > 32768)
        for (int64_t i = 0; i < n; i++)
            y[i] = alpha * x[i];
    } else {
        #pragma omp parallel for simd schedule(static) if (parallel: n > 32768)
        for (int64_t i = 0; i < n; i++)
            y[i] += alpha * x[i];
    }
}

void md_scatter_add_rows(float *dst, int64_t rows, int64_t d, const int32_t *idx, int64_t n,
                         const float *src, float scale)
{
    #pragma omp parallel if (n * d > 16384)
    {
        int nt = omp_get_num_threads(), it = omp_get_thread_num();
        int64_t r0 = rows * it / nt, r1 = rows * (it + 1) / nt;
        for (int64_t i = 0; i < n; i++) {
            int64_t r = idx[i];
            if (r < r0 || r >= r1)
                continue;
            float *dr = dst + r * d;
            const float *sr = src + i * d;
            #pragma omp simd
            for (int64_t j = 0; j < d; j++)
                dr[j] += scale * sr[j];
        }
    }
}

/* Column sums of x [rows, cols] into y (beta 0 overwrite / 1 accumulate).
 * Each column is summed in row order by one thread. */
static void col_sums(float *y, const float *x, int64_t rows, int64_t cols, float beta)
{
    const int64_t CB = 64;
    #pragma omp parallel for schedule(static) if (rows * cols > 32768)
    for (int64_t c0 = 0; c0 < cols; c0 += CB) {
        int64_t c1 = MD_MIN(c0 + CB, cols);
        float acc[64];
        for (int64_t c = c0; c < c1; c++)
            acc[c - c0] = 0.f;
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * cols;
            #pragma omp simd
            for (int64_t c = c0; c < c1; c++)
                acc[c - c0] += xr[c];
        }
        for (int64_t c = c0; c < c1; c++)
            y[c] = (beta == 0.0f ? 0.0f : y[c]) + acc[c - c0];
    }
}

static md_tensor *new_like(md_graph *g, const md_tensor *x, bool rg)
{
    return md_tensor_new(g, MD_F32, x->ndim, x->shape, rg);
}

/* ---- matmul ----------------------------------------------------------------- */

static void matmul_backward(md_graph *g, md_node *n)
{
    md_tensor *a = n->in[0], *b = n->in[1], *c = n->out;
    bool ta = n->iarg[0], tb = n->iarg[1];
    int64_t m = n->iarg[2], k = n->iarg[3], nn = n->iarg[4];
    const float *dc = c->grad;
    if (md_wants_grad(a)) {
        float beta = md_grad_beta(a);
        if (!ta) /* dA [M,K] = dC [M,N] · op(B)^T */
            md_gemm(g, false, !tb, m, k, nn, 1.f, dc, nn, b->data, tb ? k : nn, beta, a->grad, k);
        else     /* A stored [K,M]: dA = op(B) · dC^T */
            md_gemm(g, tb, true, k, m, nn, 1.f, b->data, tb ? k : nn, dc, nn, beta, a->grad, m);
    }
    if (md_wants_grad(b)) {
        float beta = md_grad_beta(b);
        if (!tb) /* dB [K,N] = op(A)^T · dC */
            md_gemm(g, !ta, false, k, nn, m, 1.f, a->data, ta ? m : k, dc, nn, beta, b->grad, nn);
        else     /* B stored [N,K]: dB = dC^T · op(A) */
            md_gemm(g, true, ta, nn, k, m, 1.f, dc, nn, a->data, ta ? m : k, beta, b->grad, k);
    }
}

md_tensor *md_matmul(md_graph *g, md_tensor *a, md_tensor *b, bool ta, bool tb)
{
    MD_CHECK_CONTIG(a);
    MD_CHECK_CONTIG(b);
    MD_ASSERT(b->ndim == 2);
    MD_ASSERT(!ta || a->ndim == 2);
    int64_t k = ta ? a->shape[0] : md_last(a);
    int64_t m = ta ? a->shape[1] : md_rows(a);
    int64_t kb = tb ? b->shape[1] : b->shape[0];
    int64_t nn = tb ? b->shape[0] : b->shape[1];
    MD_ASSERT(k == kb);
    int64_t shape[MD_MAX_DIMS];
    int nd = a->ndim;
    memcpy(shape, a->shape, sizeof shape);
    if (ta)
        shape[0] = m;
    shape[nd - 1] = nn;
    md_tensor *c = md_tensor_new(g, MD_F32, nd, shape, md_any_grad(g, a, b, NULL));
    md_gemm(g, ta, tb, m, nn, k, 1.f, a->data, ta ? m : k, b->data, tb ? k : nn, 0.f, c->data, nn);
    md_node *nd_ = md_graph_record(g, matmul_backward, c);
    if (nd_) {
        nd_->in[0] = a; nd_->in[1] = b;
        nd_->iarg[0] = ta; nd_->iarg[1] = tb;
        nd_->iarg[2] = m; nd_->iarg[3] = k; nd_->iarg[4] = nn;
    }
    return c;
}

static void bmm_backward(md_graph *g, md_node *n)
{
    md_tensor *a = n->in[0], *b = n->in[1], *c = n->out;
    bool ta = n->iarg[0], tb = n->iarg[1];
    int64_t B = n->iarg[5], m = n->iarg[2], k = n->iarg[3], nn = n->iarg[4];
    const float *dc = c->grad;
    int64_t lda = ta ? m : k, ldb = tb ? k : nn;
    if (md_wants_grad(a)) {
        float beta = md_grad_beta(a);
        if (!ta)
            md_gemm_batched(g, B, false, !tb, m, k, nn, 1.f, dc, nn, m * nn, b->data, ldb, k * nn, beta, a->grad, k, m * k);
        else
            md_gemm_batched(g, B, tb, true, k, m, nn, 1.f, b->data, ldb, k * nn, dc, nn, m * nn, beta, a->grad, m, m * k);
    }
    if (md_wants_grad(b)) {
        float beta = md_grad_beta(b);
        if (!tb)
            md_gemm_batched(g, B, !ta, false, k, nn, m, 1.f, a->data, lda, m * k, dc, nn, m * nn, beta, b->grad, nn, k * nn);
        else
            md_gemm_batched(g, B, true, ta, nn, k, m, 1.f, dc, nn, m * nn, a->data, lda, m * k, beta, b->grad, k, k * nn);
    }
}

md_tensor *md_bmm(md_graph *g, md_tensor *a, md_tensor *b, bool ta, bool tb)
{
    MD_CHECK_CONTIG(a);
    MD_CHECK_CONTIG(b);
    MD_ASSERT(a->ndim == 3 && b->ndim == 3 && a->shape[0] == b->shape[0]);
    int64_t B = a->shape[0];
    int64_t m = ta ? a->shape[2] : a->shape[1], k = ta ? a->shape[1] : a->shape[2];
    int64_t kb = tb ? b->shape[2] : b->shape[1], nn = tb ? b->shape[1] : b->shape[2];
    MD_ASSERT(k == kb);
    int64_t shape[3] = {B, m, nn};
    md_tensor *c = md_tensor_new(g, MD_F32, 3, shape, md_any_grad(g, a, b, NULL));
    md_gemm_batched(g, B, ta, tb, m, nn, k, 1.f, a->data, ta ? m : k, m * k, b->data, tb ? k : nn, k * nn,
                    0.f, c->data, nn, m * nn);
    md_node *nd = md_graph_record(g, bmm_backward, c);
    if (nd) {
        nd->in[0] = a; nd->in[1] = b;
        nd->iarg[0] = ta; nd->iarg[1] = tb;
        nd->iarg[2] = m; nd->iarg[3] = k; nd->iarg[4] = nn; nd->iarg[5] = B;
    }
    return c;
}

static void linear_backward(md_graph *g, md_node *n)
{
    md_tensor *x = n->in[0], *w = n->in[1], *bias = n->in[2], *y = n->out;
    int64_t R = md_rows(x), K = md_last(x), N = w->shape[0];
    const float *dy = y->grad;
    bool gx = md_wants_grad(x), gw = md_wants_grad(w);
    if (gx && gw && md_be(g)->gemm == md_cpu_gemm) {
        /* dX = dY·W and dW = dYᵀ·X cost the same: on two cores, one each,
         * single-threaded, beats both split across the cores. On one
         * thread (or more than two) the same two whole calls run, so the
         * bits do not follow the thread count (a product's bits follow the
         * shape of the call that makes it: kernels_cpu.c). */
        float bx = md_grad_beta(x), bw = md_grad_beta(w);
        const int nt = md_pool_threads() >= 2 ? 2 : 1;
        void (*gemm)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t,
                     float, float *, int64_t) = md_graph_bf16(g) ? md_cpu_gemm_bf16 : md_cpu_gemm;
        #pragma omp parallel num_threads(nt)
        {
            if (omp_get_thread_num() == 0)
                gemm(false, false, R, K, N, 1.f, dy, N, w->data, K, bx, x->grad, K);
            if (omp_get_thread_num() == nt - 1)
                gemm(true, false, N, K, R, 1.f, dy, N, x->data, K, bw, w->grad, K);
        }
    } else {
        if (gx)
            md_gemm(g, false, false, R, K, N, 1.f, dy, N, w->data, K, md_grad_beta(x), x->grad, K);
        if (gw)
            md_gemm(g, true, false, N, K, R, 1.f, dy, N, x->data, K, md_grad_beta(w), w->grad, K);
    }
    if (md_wants_grad(bias))
        col_sums(bias->grad, dy, R, N, md_grad_beta(bias));
}

md_tensor *md_linear(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *bias)
{
    MD_CHECK_CONTIG(x);
    MD_ASSERT(w->ndim == 2 && w->shape[1] == md_last(x));
    int64_t R = md_rows(x), K = md_last(x), N = w->shape[0];
    MD_ASSERT(!bias || md_numel(bias) == N);
    int64_t shape[MD_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = N;
    md_tensor *y = md_tensor_new(g, MD_F32, x->ndim, shape, md_any_grad(g, x, w, bias));
    float beta = 0.f;
    if (bias) {
        #pragma omp parallel for schedule(static) if (R * N > 32768)
        for (int64_t r = 0; r < R; r++)
            memcpy(y->data + r * N, bias->data, sizeof(float) * (size_t)N);
        beta = 1.f;
    }
    if (K >= 2 * N && R >= 256 && !md_graph_bf16(g)) {
        /* Wide-input layers (an MLP's down projection) run ~25% faster in
         * oneDNN as x · Wᵀ with Wᵀ stored [K, N]: transpose the (small)
         * weight once per call. */
        float *wt = md_graph_scratch(g, sizeof(float) * (size_t)(K * N));
        #pragma omp parallel for schedule(static)
        for (int64_t k0 = 0; k0 < K; k0 += 16)
            for (int64_t n = 0; n < N; n++)
                for (int64_t k = k0; k < MD_MIN(k0 + 16, K); k++)
                    wt[k * N + n] = w->data[n * K + k];
        md_gemm(g, false, false, R, N, K, 1.f, x->data, K, wt, N, beta, y->data, N);
    } else if (w->half && !md_graph_grad_enabled(g) && md_be(g)->gemm == md_cpu_gemm) {
        /* inference over a loaded model: read the weights' f16 copy */
        md_cpu_gemm_f16p(R, N, K, x->data, K, w->data, w->half, beta, y->data, N);
    } else {
        md_gemm(g, false, true, R, N, K, 1.f, x->data, K, w->data, K, beta, y->data, N);
    }
    md_node *nd = md_graph_record(g, linear_backward, y);
    if (nd) {
        nd->in[0] = x; nd->in[1] = w; nd->in[2] = bias;
    }
    return y;
}

/* ---- broadcasting binary ops ---------------------------------------------
 * b broadcasts onto a (aligned at the right; each b dim 1 or equal). Kinds:
 *   SAME   - identical shapes;
 *   SUFFIX - b's shape is a's trailing dims (a bias [D] on [.., D]);
 *   GENERAL - anything else, via a stride map. */
enum { BC_SAME, BC_SUFFIX, BC_ROWS, BC_GENERAL };
enum { BIN_ADD, BIN_SUB, BIN_MUL };

static int bcast_kind(const md_tensor *a, const md_tensor *b, int64_t bstride[MD_MAX_DIMS])
{
    MD_ASSERT(b->ndim <= a->ndim);
    int off = a->ndim - b->ndim;
    bool same = a->ndim == b->ndim, suffix = true;
    for (int i = 0; i < a->ndim; i++) {
        int64_t bs = i >= off ? b->shape[i - off] : 1;
        MD_ASSERT(bs == 1 || bs == a->shape[i]);
        if (bs != a->shape[i])
            same = false;
        if (i >= off && bs != a->shape[i])
            suffix = false;
    }
    /* strides of b in a's index space (0 on broadcast dims) */
    int64_t s = 1;
    for (int i = a->ndim - 1; i >= 0; i--) {
        int64_t bs = i >= off ? b->shape[i - off] : 1;
        bstride[i] = (bs == 1) ? 0 : s;
        s *= bs;
    }
    if (same)
        return BC_SAME;
    if (suffix)
        return BC_SUFFIX;
    /* ROWS: b is a's leading dims then ones (a per-channel value [N, C, 1, 1]
     * on [N, C, H, W]): one b value per contiguous run of a */
    if (off == 0) {
        int p = a->ndim;
        while (p > 0 && b->shape[p - 1] == 1)
            p--;
        bool rows = true;
        for (int i = 0; i < p; i++)
            rows = rows && b->shape[i] == a->shape[i];
        if (rows)
            return BC_ROWS;
    }
    return BC_GENERAL;
}

/* Index into b for flat index i of a. */
static inline int64_t bc_index(const md_tensor *a, const int64_t *bstride, int64_t i)
{
    int64_t j = 0;
    for (int d = a->ndim - 1; d >= 0; d--) {
        int64_t q = i % a->shape[d];
        i /= a->shape[d];
        j += q * bstride[d];
    }
    return j;
}

static void binary_backward(md_graph *g, md_node *n)
{
    md_tensor *a = n->in[0], *b = n->in[1], *y = n->out;
    int op = (int)n->iarg[0], kind = (int)n->iarg[1];
    int64_t N = md_numel(y), nb = md_numel(b);
    const float *dy = y->grad;
    if (md_wants_grad(a)) {
        float beta = md_grad_beta(a);
        float *da = a->grad;
        if (op == BIN_MUL) {
            int64_t bstride[MD_MAX_DIMS];
            bcast_kind(a, b, bstride);
            #pragma omp parallel for schedule(static) if (N > 32768)
            for (int64_t i = 0; i < N; i++) {
                float bv = kind == BC_SAME ? b->data[i] : kind == BC_SUFFIX ? b->data[i % nb]
                           : kind == BC_ROWS ? b->data[i / (N / nb)] : b->data[bc_index(a, bstride, i)];
                da[i] = (beta == 0.f ? 0.f : da[i]) + dy[i] * bv;
            }
        } else {
            md_axpby(da, dy, N, 1.f, beta);
        }
    }
    if (md_wants_grad(b)) {
        float sign = op == BIN_SUB ? -1.f : 1.f;
        if (kind == BC_SAME) {
            float beta = md_grad_beta(b);
            float *db = b->grad;
            #pragma omp parallel for simd schedule(static) if (parallel: N > 32768)
            for (int64_t i = 0; i < N; i++) {
                float v = op == BIN_MUL ? dy[i] * a->data[i] : sign * dy[i];
                db[i] = (beta == 0.f ? 0.f : db[i]) + v;
            }
        } else if (kind == BC_SUFFIX && op != BIN_MUL) {
            float *tmp = md_graph_scratch(g, sizeof(float) * (size_t)nb);
            col_sums(tmp, dy, N / nb, nb, 0.f);
            md_axpby(b->grad, tmp, nb, sign, md_grad_beta(b));
        } else if (kind == BC_ROWS) {
            /* each b value sums its own run, in order: any thread count
             * gives the same sums */
            float *acc = md_graph_scratch(g, sizeof(float) * (size_t)nb);
            const int64_t inner = N / nb;
            #pragma omp parallel for schedule(static) if (N > 32768)
            for (int64_t r = 0; r < nb; r++) {
                const float *d = dy + r * inner, *x = a->data + r * inner;
                float s0 = 0.f;
                if (op == BIN_MUL)
                    for (int64_t i = 0; i < inner; i++)
                        s0 += d[i] * x[i];
                else
                    for (int64_t i = 0; i < inner; i++)
                        s0 += d[i];
                acc[r] = sign * s0;
            }
            md_axpby(b->grad, acc, nb, 1.f, md_grad_beta(b));
        } else {
            /* General: serial accumulation in a fixed order. */
            int64_t bstride[MD_MAX_DIMS];
            bcast_kind(a, b, bstride);
            float *acc = md_graph_scratch(g, sizeof(float) * (size_t)nb);
            memset(acc, 0, sizeof(float) * (size_t)nb);
            for (int64_t i = 0; i < N; i++) {
                int64_t j = kind == BC_SUFFIX ? i % nb : bc_index(a, bstride, i);
                acc[j] += op == BIN_MUL ? dy[i] * a->data[i] : sign * dy[i];
            }
            md_axpby(b->grad, acc, nb, 1.f, md_grad_beta(b));
        }
    }
}

static md_tensor *binary(md_graph *g, md_tensor *a, md_tensor *b, int op)
{
    MD_CHECK_CONTIG(a);
    MD_CHECK_CONTIG(b);
    int64_t bstride[MD_MAX_DIMS];
    int kind = bcast_kind(a, b, bstride);
    md_tensor *y = new_like(g, a, md_any_grad(g, a, b, NULL));
    int64_t N = md_numel(a), nb = md_numel(b);
    const float *av = a->data, *bv = b->data;
    float *yv = y->data;
    if (kind == BC_SAME) {
        #pragma omp parallel for simd schedule(static) if (parallel: N > 32768)
        for (int64_t i = 0; i < N; i++)
            yv[i] = op == BIN_ADD ? av[i] + bv[i] : op == BIN_SUB ? av[i] - bv[i] : av[i] * bv[i];
    } else if (kind == BC_SUFFIX) {
        int64_t R = N / nb;
        #pragma omp parallel for schedule(static) if (N > 32768)
        for (int64_t r = 0; r < R; r++) {
            const float *ar = av + r * nb;
            float *yr = yv + r * nb;
            #pragma omp simd
            for (int64_t i = 0; i < nb; i++)
                yr[i] = op == BIN_ADD ? ar[i] + bv[i] : op == BIN_SUB ? ar[i] - bv[i] : ar[i] * bv[i];
        }
    } else if (kind == BC_ROWS) {
        int64_t inner = N / nb;
        #pragma omp parallel for schedule(static) if (N > 32768)
        for (int64_t r = 0; r < nb; r++) {
            const float *ar = av + r * inner;
            float *yr = yv + r * inner;
            const float b_ = bv[r];
            #pragma omp simd
            for (int64_t i = 0; i < inner; i++)
                yr[i] = op == BIN_ADD ? ar[i] + b_ : op == BIN_SUB ? ar[i] - b_ : ar[i] * b_;
        }
    } else {
        #pragma omp parallel for schedule(static) if (N > 32768)
        for (int64_t i = 0; i < N; i++) {
            float b_ = bv[bc_index(a, bstride, i)];
            yv[i] = op == BIN_ADD ? av[i] + b_ : op == BIN_SUB ? av[i] - b_ : av[i] * b_;
        }
    }
    md_node *nd = md_graph_record(g, binary_backward, y);
    if (nd) {
        nd->in[0] = a; nd->in[1] = b;
        nd->iarg[0] = op; nd->iarg[1] = kind;
    }
    return y;
}

md_tensor *md_add(md_graph *g, md_tensor *a, md_tensor *b) { return binary(g, a, b, BIN_ADD); }
md_tensor *md_sub(md_graph *g, md_tensor *a, md_tensor *b) { return binary(g, a, b, BIN_SUB); }
md_tensor *md_mul(md_graph *g, md_tensor *a, md_tensor *b) { return binary(g, a, b, BIN_MUL); }

/* ---- unary elementwise ---------------------------------------------------- */
enum { UN_SCALE, UN_ADDS, UN_GELU, UN_SILU, UN_RELU, UN_TANH, UN_SIGMOID, UN_EXP, UN_LOG, UN_SQRT };

static inline float gelu_f(float x) { return 0.5f * x * (1.0f + md_fast_erf(x * 0.70710678118654752f)); }
static inline float gelu_df(float x)
{
    float cdf = 0.5f * (1.0f + md_fast_erf(x * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * md_fast_exp(-0.5f * x * x);
    return cdf + x * pdf;
}

/* One loop per function so each vectorises (a switch inside would not). */
#define UNARY_LOOP(N, EXPR)                                                   \
    _Pragma("omp parallel for simd schedule(static) if (parallel: N > 16384)") \
    for (int64_t i = 0; i < N; i++) { EXPR; }

static void unary_backward(md_graph *g, md_node *n)
{
    md_tensor *x = n->in[0], *y = n->out;
    if (!md_wants_grad(x))
        return;
    int op = (int)n->iarg[0];
    float s = n->farg[0];
    int64_t N = md_numel(x);
    float beta = md_grad_beta(x);
    const float *xv = x->data, *yv = y->data, *dy = y->grad;
    float *dx = x->grad;
    if (beta == 0.f) {
        switch (op) {
        case UN_SCALE: UNARY_LOOP(N, dx[i] = dy[i] * s) break;
        case UN_ADDS: UNARY_LOOP(N, dx[i] = dy[i]) break;
        case UN_GELU: UNARY_LOOP(N, dx[i] = dy[i] * gelu_df(xv[i])) break;
        case UN_SILU: UNARY_LOOP(N, float sg = md_fast_sigmoid(xv[i]); dx[i] = dy[i] * sg * (1.f + xv[i] * (1.f - sg))) break;
        case UN_RELU: UNARY_LOOP(N, dx[i] = xv[i] > 0.f ? dy[i] : 0.f) break;
        case UN_TANH: UNARY_LOOP(N, dx[i] = dy[i] * (1.f - yv[i] * yv[i])) break;
        case UN_EXP: UNARY_LOOP(N, dx[i] = dy[i] * yv[i]) break;
        case UN_LOG: UNARY_LOOP(N, dx[i] = dy[i] / (xv[i] + s)) break;
        case UN_SQRT: UNARY_LOOP(N, dx[i] = dy[i] * 0.5f / yv[i]) break;
        default: UNARY_LOOP(N, dx[i] = dy[i] * yv[i] * (1.f - yv[i])) break;
        }
    } else {
        switch (op) {
        case UN_SCALE: UNARY_LOOP(N, dx[i] += dy[i] * s) break;
        case UN_ADDS: UNARY_LOOP(N, dx[i] += dy[i]) break;
        case UN_GELU: UNARY_LOOP(N, dx[i] += dy[i] * gelu_df(xv[i])) break;
        case UN_SILU: UNARY_LOOP(N, float sg = md_fast_sigmoid(xv[i]); dx[i] += dy[i] * sg * (1.f + xv[i] * (1.f - sg))) break;
        case UN_RELU: UNARY_LOOP(N, dx[i] += xv[i] > 0.f ? dy[i] : 0.f) break;
        case UN_TANH: UNARY_LOOP(N, dx[i] += dy[i] * (1.f - yv[i] * yv[i])) break;
        case UN_EXP: UNARY_LOOP(N, dx[i] += dy[i] * yv[i]) break;
        case UN_LOG: UNARY_LOOP(N, dx[i] += dy[i] / (xv[i] + s)) break;
        case UN_SQRT: UNARY_LOOP(N, dx[i] += dy[i] * 0.5f / yv[i]) break;
        default: UNARY_LOOP(N, dx[i] += dy[i] * yv[i] * (1.f - yv[i])) break;
        }
    }
}

static md_tensor *unary(md_graph *g, md_tensor *x, int op, float s)
{
    MD_CHECK_CONTIG(x);
    MD_CHECK_F32(x);
    md_tensor *y = new_like(g, x, md_any_grad(g, x, NULL, NULL));
    int64_t N = md_numel(x);
    const float *xv = x->data;
    float *yv = y->data;
    switch (op) {
    case UN_SCALE: UNARY_LOOP(N, yv[i] = xv[i] * s) break;
    case UN_ADDS: UNARY_LOOP(N, yv[i] = xv[i] + s) break;
    case UN_GELU: UNARY_LOOP(N, yv[i] = gelu_f(xv[i])) break;
    case UN_SILU: UNARY_LOOP(N, yv[i] = xv[i] * md_fast_sigmoid(xv[i])) break;
    case UN_RELU: UNARY_LOOP(N, yv[i] = xv[i] > 0.f ? xv[i] : 0.f) break;
    case UN_TANH: UNARY_LOOP(N, yv[i] = md_fast_tanh(xv[i])) break;
    case UN_EXP: UNARY_LOOP(N, yv[i] = expf(xv[i])) break;
    case UN_LOG: UNARY_LOOP(N, yv[i] = logf(xv[i] + s)) break;
    case UN_SQRT: UNARY_LOOP(N, yv[i] = sqrtf(xv[i] + s)) break;
    default: UNARY_LOOP(N, yv[i] = md_fast_sigmoid(xv[i])) break;
    }
    md_node *nd = md_graph_record(g, unary_backward, y);
    if (nd) {
        nd->in[0] = x;
        nd->iarg[0] = op;
        nd->farg[0] = s;
    }
    return y;
}

md_tensor *md_scale(md_graph *g, md_tensor *a, float s) { return unary(g, a, UN_SCALE, s); }
md_tensor *md_add_scalar(md_graph *g, md_tensor *a, float s) { return unary(g, a, UN_ADDS, s); }
md_tensor *md_gelu(md_graph *g, md_tensor *x) { return unary(g, x, UN_GELU, 0.f); }
md_tensor *md_silu(md_graph *g, md_tensor *x) { return unary(g, x, UN_SILU, 0.f); }
md_tensor *md_relu(md_graph *g, md_tensor *x) { return unary(g, x, UN_RELU, 0.f); }
md_tensor *md_tanh(md_graph *g, md_tensor *x) { return unary(g, x, UN_TANH, 0.f); }
md_tensor *md_sigmoid(md_graph *g, md_tensor *x) { return unary(g, x, UN_SIGMOID, 0.f); }
md_tensor *md_exp(md_graph *g, md_tensor *x) { return unary(g, x, UN_EXP, 0.f); }

md_tensor *md_log_eps(md_graph *g, md_tensor *x, float eps)
{
    MD_ASSERT(eps >= 0.f);
    return unary(g, x, UN_LOG, eps);
}

md_tensor *md_sqrt_eps(md_graph *g, md_tensor *x, float eps)
{
    MD_ASSERT(eps >= 0.f);
    return unary(g, x, UN_SQRT, eps);
}

/* ---- row L2 normalisation -------------------------------------------------
 * y = x / n, n = max(||x||, eps) over the last dim. Backward:
 * dx = (dy - y (y . dy)) / n where ||x|| > eps, else dy / eps. saved[0]: the
 * row norms n [rows]. */
static void l2n_backward(md_graph *g, md_node *n)
{
    md_tensor *x = n->in[0], *y = n->out;
    if (!md_wants_grad(x))
        return;
    int64_t D = x->shape[x->ndim - 1], R = md_numel(x) / D;
    const float *nrm = n->saved[0], *yv = y->data, *dy = y->grad;
    float beta = md_grad_beta(x), eps = n->farg[0];
    float *dx = x->grad;
#pragma omp parallel for schedule(static) if (R * D > 16384)
    for (int64_t r = 0; r < R; r++) {
        const float *yr = yv + r * D, *gr = dy + r * D;
        float *dr = dx + r * D;
        float dot = 0.f;
        if (nrm[r] > eps)
            for (int64_t i = 0; i < D; i++)
                dot += yr[i] * gr[i];
        float inv = 1.f / nrm[r];
        for (int64_t i = 0; i < D; i++) {
            float v = (gr[i] - yr[i] * dot) * inv;
            dr[i] = beta == 0.f ? v : dr[i] + v;
        }
    }
}

md_tensor *md_l2_normalize(md_graph *g, md_tensor *x, float eps)
{
    MD_CHECK_CONTIG(x);
    MD_CHECK_F32(x);
    md_tensor *y = new_like(g, x, md_any_grad(g, x, NULL, NULL));
    int64_t D = x->shape[x->ndim - 1], R = md_numel(x) / D;
    float *nrm = md_graph_scratch(g, sizeof(float) * (size_t)R);
    const float *xv = x->data;
    float *yv = y->data;
#pragma omp parallel for schedule(static) if (R * D > 16384)
    for (int64_t r = 0; r < R; r++) {
        double ss = 0.0;
        for (int64_t i = 0; i < D; i++)
            ss += (double)xv[r * D + i] * xv[r * D + i];
        float nv = (float)sqrt(ss);
        nrm[r] = nv > eps ? nv : eps;
        float inv = 1.f / nrm[r];
        for (int64_t i = 0; i < D; i++)
            yv[r * D + i] = xv[r * D + i] * inv;
    }
    md_node *nd = md_graph_record(g, l2n_backward, y);
    if (nd) {
        nd->in[0] = x;
        nd->saved[0] = nrm;
        nd->farg[0] = eps;
    }
    return y;
}

/* ---- dropout: mask regenerated from (stream key, index) in backward ------- */

static void dropout_backward(md_graph *g, md_node *n)
{
    md_tensor *x = n->in[0], *y = n->out;
    if (!md_wants_grad(x))
        return;
    uint64_t key = (uint64_t)n->iarg[0];
    float p = n->farg[0], inv = 1.f / (1.f - p);
    int64_t N = md_numel(x);
    float beta = md_grad_beta(x);
    #pragma omp parallel for schedule(static) if (N > 16384)
    for (int64_t i = 0; i < N; i++) {
        float keep = md_rand_uniform_at(key, (uint64_t)i) >= p ? inv : 0.f;
        x->grad[i] = (beta == 0.f ? 0.f : x->grad[i]) + y->grad[i] * keep;
    }
}

md_tensor *md_dropout(md_graph *g, md_tensor *x, float p)
{
    MD_CHECK_CONTIG(x);
    MD_ASSERT(p >= 0.f && p < 1.f);
    if (!md_graph_training(g) || p == 0.f)
        return x;
    uint64_t key = md_graph_next_stream(g);
    md_tensor *y = new_like(g, x, md_any_grad(g, x, NULL, NULL));
    float inv = 1.f / (1.f - p);
    int64_t N = md_numel(x);
    #pragma omp parallel for schedule(static) if (N > 16384)
    for (int64_t i = 0; i < N; i++)
        y->data[i] = md_rand_uniform_at(key, (uint64_t)i) >= p ? x->data[i] * inv : 0.f;
    md_node *nd = md_graph_record(g, dropout_backward, y);
    if (nd) {
        nd->in[0] = x;
        nd->iarg[0] = (int64_t)key;
        nd->farg[0] = p;
    }
    return y;
}

/* ---- layernorm / rmsnorm ---------------------------------------------------- */

static void layernorm_backward(md_graph *g, md_node *n)
{
    md_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    const float *mean = n->saved[0], *rstd = n->saved[1];
    bool rms = n->iarg[0];
    int64_t R = md_rows(x), D = md_last(x);
    const float *dy = y->grad;
    if (md_wants_grad(x)) {
        float beta = md_grad_beta(x);
        #pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < R; r++) {
            const float *xr = x->data + r * D, *dyr = dy + r * D;
            float *dxr = x->grad + r * D;
            float mu = rms ? 0.f : mean[r], rs = rstd[r];
            float s1 = 0.f, s2 = 0.f;   /* sum(dyw), sum(dyw * xhat) */
            #pragma omp simd reduction(+:s1, s2)
            for (int64_t i = 0; i < D; i++) {
                float dyw = dyr[i] * (w ? w->data[i] : 1.f);
                float xh = (xr[i] - mu) * rs;
                s1 += dyw;
                s2 += dyw * xh;
            }
            s1 /= (float)D;
            s2 /= (float)D;
            if (rms)
                s1 = 0.f;
            #pragma omp simd
            for (int64_t i = 0; i < D; i++) {
                float dyw = dyr[i] * (w ? w->data[i] : 1.f);
                float xh = (xr[i] - mu) * rs;
                float v = rs * (dyw - s1 - xh * s2);
                dxr[i] = (beta == 0.f ? 0.f : dxr[i]) + v;
            }
        }
    }
    bool gw = md_wants_grad(w), gb = md_wants_grad(b);
    if (gw || gb) {
        float bw = gw ? md_grad_beta(w) : 0.f, bb = gb ? md_grad_beta(b) : 0.f;
        const int64_t CB = 64;
        #pragma omp parallel for schedule(static)
        for (int64_t c0 = 0; c0 < D; c0 += CB) {
            int64_t c1 = MD_MIN(c0 + CB, D);
            float aw[64] = {0}, ab[64] = {0};
            for (int64_t r = 0; r < R; r++) {
                const float *xr = x->data + r * D, *dyr = dy + r * D;
                float mu = rms ? 0.f : mean[r], rs = rstd[r];
                #pragma omp simd
                for (int64_t c = c0; c < c1; c++) {
                    aw[c - c0] += dyr[c] * (xr[c] - mu) * rs;
                    ab[c - c0] += dyr[c];
                }
            }
            for (int64_t c = c0; c < c1; c++) {
                if (gw) w->grad[c] = (bw == 0.f ? 0.f : w->grad[c]) + aw[c - c0];
                if (gb) b->grad[c] = (bb == 0.f ? 0.f : b->grad[c]) + ab[c - c0];
            }
        }
    }
}

md_tensor *md_layernorm(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *b, float eps)
{
    MD_CHECK_CONTIG(x);
    int64_t R = md_rows(x), D = md_last(x);
    MD_ASSERT(!w || md_numel(w) == D);
    MD_ASSERT(!b || md_numel(b) == D);
    md_tensor *y = new_like(g, x, md_any_grad(g, x, w, b));
    bool rec = y->requires_grad;
    float *mean = md_graph_scratch(g, sizeof(float) * (size_t)R);
    float *rstd = md_graph_scratch(g, sizeof(float) * (size_t)R);
    const md_backend *be = md_be(g);
    (be->layernorm_fwd ? be->layernorm_fwd : md_cpu_layernorm_fwd)(y->data, mean, rstd, x->data,
        w ? w->data : NULL, b ? b->data : NULL, R, D, eps);
    if (rec) {
        md_node *nd = md_graph_record(g, layernorm_backward, y);
        nd->in[0] = x; nd->in[1] = w; nd->in[2] = b;
        nd->saved[0] = mean; nd->saved[1] = rstd;
        nd->iarg[0] = 0;
    }
    return y;
}

md_tensor *md_rmsnorm(md_graph *g, md_tensor *x, md_tensor *w, float eps)
{
    MD_CHECK_CONTIG(x);
    int64_t R = md_rows(x), D = md_last(x);
    MD_ASSERT(!w || md_numel(w) == D);
    md_tensor *y = new_like(g, x, md_any_grad(g, x, w, NULL));
    float *rstd = md_graph_scratch(g, sizeof(float) * (size_t)R);
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x->data + r * D;
        float *yr = y->data + r * D;
        float s = 0.f;
        #pragma omp simd reduction(+:s)
        for (int64_t i = 0; i < D; i++)
            s += xr[i] * xr[i];
        float rs = 1.f / sqrtf(s / (float)D + eps);
        rstd[r] = rs;
        #pragma omp simd
        for (int64_t i = 0; i < D; i++)
            yr[i] = xr[i] * rs * (w ? w->data[i] : 1.f);
    }
    md_node *nd = md_graph_record(g, layernorm_backward, y);
    if (nd) {
        nd->in[0] = x; nd->in[1] = w;
        nd->saved[1] = rstd;
        nd->iarg[0] = 1;
    }
    return y;
}

/* ---- softmax / log-softmax over the last dim --------------------------------- */

static void softmax_backward(md_graph *g, md_node *n)
{
    md_tensor *x = n->in[0], *y = n->out;
    if (!md_wants_grad(x))
        return;
    bool logsm = n->iarg[0];
    int64_t R = md_rows(x), D = md_last(x);
    float beta = md_grad_beta(x);
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *yr = y->data + r * D, *dyr = y->grad + r * D;
        float *dxr = x->grad + r * D;
        float s = 0.f;
        if (logsm) {
            for (int64_t i = 0; i < D; i++)
                s += dyr[i];
            for (int64_t i = 0; i < D; i++)
                dxr[i] = (beta == 0.f ? 0.f : dxr[i]) + dyr[i] - md_fast_exp(yr[i]) * s;
        } else {
            for (int64_t i = 0; i < D; i++)
                s += dyr[i] * yr[i];
            for (int64_t i = 0; i < D; i++)
                dxr[i] = (beta == 0.f ? 0.f : dxr[i]) + yr[i] * (dyr[i] - s);
        }
    }
}

static md_tensor *softmax_impl(md_graph *g, md_tensor *x, bool logsm)
{
    MD_CHECK_CONTIG(x);
    int64_t R = md_rows(x), D = md_last(x);
    md_tensor *y = new_like(g, x, md_any_grad(g, x, NULL, NULL));
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x->data + r * D;
        float *yr = y->data + r * D;
        float mx = -INFINITY;
        for (int64_t i = 0; i < D; i++)
            mx = xr[i] > mx ? xr[i] : mx;   /* fmaxf is a call; this vectorises */
        float s = 0.f;
        #pragma omp simd reduction(+:s)
        for (int64_t i = 0; i < D; i++) {
            float e = md_fast_exp(xr[i] - mx);
            if (!logsm) yr[i] = e;
            s += e;
        }
        if (logsm) {
            float lse = mx + logf(s);
            #pragma omp simd
            for (int64_t i = 0; i < D; i++)
                yr[i] = xr[i] - lse;
        } else {
            float inv = 1.f / s;
            #pragma omp simd
            for (int64_t i = 0; i < D; i++)
                yr[i] *= inv;
        }
    }
    md_node *nd = md_graph_record(g, softmax_backward, y);
    if (nd) {
        nd->in[0] = x;
        nd->iarg[0] = logsm;
    }
    return y;
}

md_tensor *md_softmax(md_graph *g, md_tensor *x) { return softmax_impl(g, x, false); }
md_tensor *md_log_softmax(md_graph *g, md_tensor *x) { return softmax_impl(g, x, true); }

/* ---- embedding ----------------------------------------------------------------- */

static void embedding_backward(md_graph *g, md_node *n)
{
    md_tensor *w = n->in[0], *ids = n->in[1], *y = n->out;
    if (!md_wants_grad(w))
        return;
    int64_t V = w->shape[0], D = w->shape[1], N = md_numel(ids);
    md_scatter_add_rows(md_grad_acc(w), V, D, md_i32(ids), N, y->grad, 1.f);
}

md_tensor *md_embedding(md_graph *g, md_tensor *weight, md_tensor *ids)
{
    MD_ASSERT(ids->dtype == MD_I32 && weight->ndim == 2);
    MD_ASSERT(ids->ndim < MD_MAX_DIMS);
    int64_t V = weight->shape[0], D = weight->shape[1], N = md_numel(ids);
    int64_t shape[MD_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof shape);
    shape[ids->ndim] = D;
    md_tensor *y = md_tensor_new(g, MD_F32, ids->ndim + 1, shape, md_any_grad(g, weight, NULL, NULL));
    const int32_t *id = md_i32(ids);
    for (int64_t t = 0; t < N; t++)
        MD_ASSERT(id[t] >= 0 && id[t] < V);
    #pragma omp parallel for schedule(static) if (N * D > 32768)
    for (int64_t t = 0; t < N; t++)
        memcpy(y->data + t * D, weight->data + (int64_t)id[t] * D, sizeof(float) * (size_t)D);
    md_node *nd = md_graph_record(g, embedding_backward, y);
    if (nd) {
        nd->in[0] = weight; nd->in[1] = ids;
    }
    return y;
}

/* ---- shape ops ------------------------------------------------------------------- */

static void reshape_backward(md_graph *g, md_node *n)
{
    /* The view shares its grad buffer with its source: nothing to move. */
    MD_UNUSED(g);
    MD_UNUSED(n);
}

md_tensor *md_reshape(md_graph *g, md_tensor *x, int ndim, const int64_t *shape)
{
    MD_CHECK_CONTIG(x);
    int64_t s[MD_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1) {
            MD_ASSERT(infer < 0);
            infer = i;
        } else {
            known *= s[i];
        }
    }
    if (infer >= 0)
        s[infer] = known ? md_numel(x) / known : 0;
    md_tensor *y = md_graph_scratch(g, sizeof *y);
    *y = *x;
    md_tensor_set_shape(y, ndim, s);
    MD_ASSERT(md_numel(y) == md_numel(x));
    if (y->requires_grad)
        md_graph_record(g, reshape_backward, y);
    return y;
}

/* Generic strided copy: out (contiguous, shape oshape) from x with strides
 * xs and base offset; used by permute, slice, concat and contiguous. */
static void strided_copy(float *out, const float *x, int nd, const int64_t *oshape,
                         const int64_t *xs, bool accumulate_into_x, float *xg, const float *og)
{
    int64_t N = 1;
    for (int i = 0; i < nd; i++)
        N *= oshape[i];
    int64_t inner = oshape[nd - 1], innerst = xs[nd - 1], rows = N / (inner ? inner : 1);
    if (inner == 0)
        return;
    #pragma omp parallel for schedule(static) if (N > 32768)
    for (int64_t r = 0; r < rows; r++) {
        int64_t rem = r, off = 0;
        for (int d = nd - 2; d >= 0; d--) {
            off += (rem % oshape[d]) * xs[d];
            rem /= oshape[d];
        }
        if (!accumulate_into_x) {
            float *o = out + r * inner;
            for (int64_t i = 0; i < inner; i++)
                o[i] = x[off + i * innerst];
        } else {
            const float *o = og + r * inner;
            for (int64_t i = 0; i < inner; i++)
                xg[off + i * innerst] += o[i];
        }
    }
}

static void permute_backward(md_graph *g, md_node *n)
{
    md_tensor *x = n->in[0], *y = n->out;
    if (!md_wants_grad(x))
        return;
    int nd = x->ndim;
    int64_t xs[MD_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        xs[i] = x->stride[n->iarg[i]];
    /* Each element of x maps to one of y: scatter-add is race free. */
    strided_copy(NULL, NULL, nd, y->shape, xs, true, md_grad_acc(x), y->grad);
}

md_tensor *md_permute(md_graph *g, md_tensor *x, const int *perm)
{
    MD_CHECK_CONTIG(x);
    int nd = x->ndim;
    int64_t shape[MD_MAX_DIMS], xs[MD_MAX_DIMS];
    int seen = 0;
    for (int i = 0; i < nd; i++) {
        MD_ASSERT(perm[i] >= 0 && perm[i] < nd && !(seen & (1 << perm[i])));
        seen |= 1 << perm[i];
        shape[i] = x->shape[perm[i]];
        xs[i] = x->stride[perm[i]];
    }
    md_tensor *y = md_tensor_new(g, MD_F32, nd, shape, md_any_grad(g, x, NULL, NULL));
    strided_copy(y->data, x->data, nd, shape, xs, false, NULL, NULL);
    md_node *n = md_graph_record(g, permute_backward, y);
    if (n) {
        n->in[0] = x;
        for (int i = 0; i < nd; i++)
            n->iarg[i] = perm[i];
    }
    return y;
}

md_tensor *md_transpose(md_graph *g, md_tensor *x, int d0, int d1)
{
    int perm[MD_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        perm[i] = i;
    perm[d0] = d1;
    perm[d1] = d0;
    return md_permute(g, x, perm);
}

static void slice_backward(md_graph *g, md_node *n)
{
    md_tensor *x = n->in[0], *y = n->out;
    if (!md_wants_grad(x))
        return;
    int dim = (int)n->iarg[0];
    int64_t start = n->iarg[1];
    float *dx = md_grad_acc(x);
    strided_copy(NULL, NULL, x->ndim, y->shape, x->stride, true, dx + start * x->stride[dim], y->grad);
}

md_tensor *md_slice(md_graph *g, md_tensor *x, int dim, int64_t start, int64_t end)
{
    MD_CHECK_CONTIG(x);
    if (dim < 0)
        dim += x->ndim;
    MD_ASSERT(dim >= 0 && dim < x->ndim && start >= 0 && start <= end && end <= x->shape[dim]);
    int64_t shape[MD_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = end - start;
    md_tensor *y = md_tensor_new(g, MD_F32, x->ndim, shape, md_any_grad(g, x, NULL, NULL));
    if (md_numel(y) > 0)
        strided_copy(y->data, x->data + start * x->stride[dim], x->ndim, shape, x->stride, false, NULL, NULL);
    md_node *n = md_graph_record(g, slice_backward, y);
    if (n) {
        n->in[0] = x;
        n->iarg[0] = dim;
        n->iarg[1] = start;
    }
    return y;
}

static void concat_backward(md_graph *g, md_node *n)
{
    md_tensor *y = n->out;
    md_tensor **xs = n->saved[0];
    int cnt = (int)n->iarg[0], dim = (int)n->iarg[1];
    int64_t off = 0;
    for (int i = 0; i < cnt; i++) {
        md_tensor *x = xs[i];
        if (md_wants_grad(x)) {
            /* grad_x = slice of grad_y: walk y's layout with x's shape. */
            float *dx = md_grad_acc(x);
            const float *src = y->grad + off * y->stride[dim];
            int64_t N = md_numel(x), inner = x->shape[x->ndim - 1];
            int64_t rows = inner ? N / inner : 0;
            #pragma omp parallel for schedule(static) if (N > 65536)
            for (int64_t r = 0; r < rows; r++) {
                int64_t rem = r, o = 0;
                for (int d = x->ndim - 2; d >= 0; d--) {
                    o += (rem % x->shape[d]) * y->stride[d];
                    rem /= x->shape[d];
                }
                for (int64_t k = 0; k < inner; k++)
                    dx[r * inner + k] += src[o + k * y->stride[x->ndim - 1]];
            }
        }
        off += x->shape[dim];
    }
}

md_tensor *md_concat(md_graph *g, md_tensor **xs, int cnt, int dim)
{
    MD_ASSERT(cnt >= 1);
    md_tensor *x0 = xs[0];
    if (dim < 0)
        dim += x0->ndim;
    int64_t shape[MD_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[dim] = 0;
    bool rg = false;
    for (int i = 0; i < cnt; i++) {
        MD_CHECK_CONTIG(xs[i]);
        MD_ASSERT(xs[i]->ndim == x0->ndim);
        for (int d = 0; d < x0->ndim; d++)
            MD_ASSERT(d == dim || xs[i]->shape[d] == x0->shape[d]);
        shape[dim] += xs[i]->shape[dim];
        rg = rg || md_any_grad(g, xs[i], NULL, NULL);
    }
    md_tensor *y = md_tensor_new(g, MD_F32, x0->ndim, shape, rg);
    int64_t off = 0;
    for (int i = 0; i < cnt; i++) {
        md_tensor *x = xs[i];
        int64_t N = md_numel(x), inner = x->shape[x->ndim - 1];
        int64_t rows = inner ? N / inner : 0;
        float *dst = y->data + off * y->stride[dim];
        #pragma omp parallel for schedule(static) if (N > 65536)
        for (int64_t r = 0; r < rows; r++) {
            int64_t rem = r, o = 0;
            for (int d = x->ndim - 2; d >= 0; d--) {
                o += (rem % x->shape[d]) * y->stride[d];
                rem /= x->shape[d];
            }
            for (int64_t k = 0; k < inner; k++)
                dst[o + k * y->stride[x->ndim - 1]] = x->data[r * inner + k];
        }
        off += x->shape[dim];
    }
    md_node *n = md_graph_record(g, concat_backward, y);
    if (n) {
        md_tensor **saved = md_graph_scratch(g, sizeof(md_tensor *) * (size_t)cnt);
        memcpy(saved, xs, sizeof(md_tensor *) * (size_t)cnt);
        n->saved[0] = saved;
        n->iarg[0] = cnt;
        n->iarg[1] = dim;
    }
    return y;
}

md_tensor *md_contiguous(md_graph *g, md_tensor *x)
{
    if (md_is_contiguous(x))
        return x;
    /* Views with strides come only from outside the graph (wrapped data). */
    md_tensor *y = md_tensor_new(g, MD_F32, x->ndim, x->shape, false);
    strided_copy(y->data, x->data, x->ndim, x->shape, x->stride, false, NULL, NULL);
    return y;
}

/* ---- reductions -------------------------------------------------------------- */

/* Sum in double over fixed-size blocks, blocks summed in order: the same
 * bits for any thread count. */
static double det_sum(const float *x, int64_t n)
{
    const int64_t BS = 4096;
    int64_t nb = (n + BS - 1) / BS;
    double part[256];
    double total = 0;
    for (int64_t b0 = 0; b0 < nb; b0 += 256) {
        int64_t b1 = MD_MIN(b0 + 256, nb);
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t b = b0; b < b1; b++) {
            int64_t s = b * BS, e = MD_MIN(s + BS, n);
            double acc = 0;
            for (int64_t i = s; i < e; i++)
                acc += x[i];
            part[b - b0] = acc;
        }
        for (int64_t b = b0; b < b1; b++)
            total += part[b - b0];
    }
    return total;
}

static void sum_backward(md_graph *g, md_node *n)
{
    md_tensor *x = n->in[0], *y = n->out;
    if (!md_wants_grad(x))
        return;
    float s = y->grad[0] * n->farg[0];
    int64_t N = md_numel(x);
    float beta = md_grad_beta(x);
    #pragma omp parallel for simd schedule(static) if (parallel: N > 32768)
    for (int64_t i = 0; i < N; i++)
        x->grad[i] = (beta == 0.f ? 0.f : x->grad[i]) + s;
}

static md_tensor *sum_all(md_graph *g, md_tensor *x, bool mean)
{
    MD_CHECK_CONTIG(x);
    int64_t one = 1, N = md_numel(x);
    md_tensor *y = md_tensor_new(g, MD_F32, 1, &one, md_any_grad(g, x, NULL, NULL));
    double s = det_sum(x->data, N);
    float scale = mean ? 1.f / (float)(N ? N : 1) : 1.f;
    y->data[0] = (float)(s * scale);
    md_node *n = md_graph_record(g, sum_backward, y);
    if (n) {
        n->in[0] = x;
        n->farg[0] = scale;
    }
    return y;
}

md_tensor *md_sum(md_graph *g, md_tensor *x) { return sum_all(g, x, false); }
md_tensor *md_mean(md_graph *g, md_tensor *x) { return sum_all(g, x, true); }

static void sum_dim_backward(md_graph *g, md_node *n)
{
    md_tensor *x = n->in[0], *y = n->out;
    if (!md_wants_grad(x))
        return;
    int dim = (int)n->iarg[0];
    float scale = n->farg[0];
    int64_t outer = 1, inner = 1, L = x->shape[dim];
    for (int i = 0; i < dim; i++) outer *= x->shape[i];
    for (int i = dim + 1; i < x->ndim; i++) inner *= x->shape[i];
    float beta = md_grad_beta(x);
    #pragma omp parallel for schedule(static) if (outer * L * inner > 32768)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t l = 0; l < L; l++) {
            float *dx = x->grad + (o * L + l) * inner;
            const float *dy = y->grad + o * inner;
            for (int64_t i = 0; i < inner; i++)
                dx[i] = (beta == 0.f ? 0.f : dx[i]) + dy[i] * scale;
        }
}

static md_tensor *sum_dim_impl(md_graph *g, md_tensor *x, int dim, bool mean)
{
    MD_CHECK_CONTIG(x);
    if (dim < 0)
        dim += x->ndim;
    MD_ASSERT(dim >= 0 && dim < x->ndim);
    int64_t shape[MD_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    int64_t L = shape[dim];
    shape[dim] = 1;
    md_tensor *y = md_tensor_new(g, MD_F32, x->ndim, shape, md_any_grad(g, x, NULL, NULL));
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= x->shape[i];
    for (int i = dim + 1; i < x->ndim; i++) inner *= x->shape[i];
    float scale = mean ? 1.f / (float)(L ? L : 1) : 1.f;
    #pragma omp parallel for schedule(static) if (outer * L * inner > 32768)
    for (int64_t o = 0; o < outer; o++) {
        float *yr = y->data + o * inner;
        for (int64_t i = 0; i < inner; i++)
            yr[i] = 0.f;
        for (int64_t l = 0; l < L; l++) {
            const float *xr = x->data + (o * L + l) * inner;
            #pragma omp simd
            for (int64_t i = 0; i < inner; i++)
                yr[i] += xr[i];
        }
        for (int64_t i = 0; i < inner; i++)
            yr[i] *= scale;
    }
    md_node *n = md_graph_record(g, sum_dim_backward, y);
    if (n) {
        n->in[0] = x;
        n->iarg[0] = dim;
        n->farg[0] = scale;
    }
    return y;
}

md_tensor *md_sum_dim(md_graph *g, md_tensor *x, int dim) { return sum_dim_impl(g, x, dim, false); }
md_tensor *md_mean_dim(md_graph *g, md_tensor *x, int dim) { return sum_dim_impl(g, x, dim, true); }

/* ---- losses ---------------------------------------------------------------- */

/* Cross-entropy with label smoothing ε over V classes:
 *   loss_r = -(1-ε)·logp[t] - (ε/V)·Σ_j logp[j], averaged over kept rows.
 * saved: per-row log-sum-exp. */
static void xent_backward(md_graph *g, md_node *n)
{
    md_tensor *x = n->in[0], *tg = n->in[1], *y = n->out;
    if (!md_wants_grad(x))
        return;
    const float *lse = n->saved[0];
    float eps = n->farg[0];
    int ignore = (int)n->iarg[0];
    int64_t count = n->iarg[1];
    int64_t R = x->shape[0], V = x->shape[1];
    float scale = count ? y->grad[0] / (float)count : 0.f;
    float beta = md_grad_beta(x);
    const int32_t *t = md_i32(tg);
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x->data + r * V;
        float *dx = x->grad + r * V;
        bool skip = t[r] == ignore;
        for (int64_t j = 0; j < V; j++) {
            float v = 0.f;
            if (!skip) {
                float p = md_fast_exp(xr[j] - lse[r]);
                v = (p - eps / (float)V - (j == t[r] ? 1.f - eps : 0.f)) * scale;
            }
            dx[j] = (beta == 0.f ? 0.f : dx[j]) + v;
        }
    }
}

md_tensor *md_cross_entropy(md_graph *g, md_tensor *logits, md_tensor *targets,
                            float label_smoothing, int ignore_index)
{
    MD_CHECK_CONTIG(logits);
    MD_ASSERT(logits->ndim == 2 && targets->dtype == MD_I32 && md_numel(targets) == logits->shape[0]);
    int64_t R = logits->shape[0], V = logits->shape[1];
    const int32_t *t = md_i32(targets);
    float *lse = md_graph_scratch(g, sizeof(float) * (size_t)R);
    double *rl = md_graph_scratch(g, sizeof(double) * (size_t)R);
    float eps = label_smoothing;
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = logits->data + r * V;
        float mx = -INFINITY;
        for (int64_t j = 0; j < V; j++)
            mx = xr[j] > mx ? xr[j] : mx;   /* fmaxf is a call; this vectorises */
        float s = 0.f, sx = 0.f;
        #pragma omp simd reduction(+:s, sx)
        for (int64_t j = 0; j < V; j++) {
            s += md_fast_exp(xr[j] - mx);
            sx += xr[j];
        }
        lse[r] = mx + logf(s);
        if (t[r] == ignore_index) {
            rl[r] = 0;
            continue;
        }
        MD_ASSERT(t[r] >= 0 && t[r] < V);
        double lp_t = (double)xr[t[r]] - lse[r];
        double mean_lp = (double)sx / (double)V - lse[r];
        rl[r] = -(1.0 - eps) * lp_t - eps * mean_lp;
    }
    int64_t count = 0;
    double total = 0;
    for (int64_t r = 0; r < R; r++)
        if (t[r] != ignore_index) {
            count++;
            total += rl[r];
        }
    int64_t one = 1;
    md_tensor *y = md_tensor_new(g, MD_F32, 1, &one, md_any_grad(g, logits, NULL, NULL));
    y->data[0] = count ? (float)(total / (double)count) : 0.f;
    md_node *n = md_graph_record(g, xent_backward, y);
    if (n) {
        n->in[0] = logits; n->in[1] = targets;
        n->saved[0] = lse;
        n->farg[0] = eps;
        n->iarg[0] = ignore_index;
        n->iarg[1] = count;
    }
    return y;
}

static void pair_loss_backward(md_graph *g, md_node *n)
{
    md_tensor *a = n->in[0], *b = n->in[1], *y = n->out;
    bool l1 = n->iarg[0];
    int64_t N = md_numel(a);
    float s = y->grad[0] / (float)(N ? N : 1);
    for (int k = 0; k < 2; k++) {
        md_tensor *t = n->in[k];
        if (!md_wants_grad(t))
            continue;
        float sign = k == 0 ? 1.f : -1.f;
        float beta = md_grad_beta(t);
        #pragma omp parallel for simd schedule(static) if (parallel: N > 32768)
        for (int64_t i = 0; i < N; i++) {
            float d = a->data[i] - b->data[i];
            float gv = l1 ? (d > 0.f ? 1.f : (d < 0.f ? -1.f : 0.f)) : 2.f * d;
            t->grad[i] = (beta == 0.f ? 0.f : t->grad[i]) + sign * s * gv;
        }
    }
}

static md_tensor *pair_loss(md_graph *g, md_tensor *a, md_tensor *b, bool l1)
{
    MD_CHECK_CONTIG(a);
    MD_CHECK_CONTIG(b);
    MD_ASSERT(md_numel(a) == md_numel(b));
    int64_t N = md_numel(a), one = 1;
    const int64_t BS = 4096;
    int64_t nb = (N + BS - 1) / BS;
    double *part = md_graph_scratch(g, sizeof(double) * (size_t)(nb ? nb : 1));
    #pragma omp parallel for schedule(static) if (N > 65536)
    for (int64_t blk = 0; blk < nb; blk++) {
        double acc = 0;
        for (int64_t i = blk * BS; i < MD_MIN(N, (blk + 1) * BS); i++) {
            double d = (double)a->data[i] - b->data[i];
            acc += l1 ? fabs(d) : d * d;
        }
        part[blk] = acc;
    }
    double total = 0;
    for (int64_t blk = 0; blk < nb; blk++)
        total += part[blk];
    md_tensor *y = md_tensor_new(g, MD_F32, 1, &one, md_any_grad(g, a, b, NULL));
    y->data[0] = (float)(total / (double)(N ? N : 1));
    md_node *n = md_graph_record(g, pair_loss_backward, y);
    if (n) {
        n->in[0] = a; n->in[1] = b;
        n->iarg[0] = l1;
    }
    return y;
}

md_tensor *md_mse(md_graph *g, md_tensor *a, md_tensor *b) { return pair_loss(g, a, b, false); }
md_tensor *md_l1(md_graph *g, md_tensor *a, md_tensor *b) { return pair_loss(g, a, b, true); }
