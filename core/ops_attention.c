/* ops_attention.c — scaled dot-product attention, causal or full, with a
 * memory-efficient backward, and a KV-cache path for generation.
 *
 * Layout: q [B, Tq, H*Dh], k/v [B, Tk, H*Dh]; head h owns columns
 * [h*Dh, (h+1)*Dh). Work is split over (batch, head) pairs; each pair runs
 * on one thread, through query blocks of QB rows, so scratch per thread is
 * QB × Tk floats whatever the sequence length. For backward, short
 * sequences keep the probabilities (up to ATTN_KEEP_PROBS_BYTES); longer
 * ones keep only the per-row log-sum-exp and recompute them.
 * Causal blocks stop their key range at the last visible key, which skips
 * the masked half of the work.
 */
#include "ops_internal.h"
#include "simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QB 128   /* query rows per block */
#define ONE_ROW_MAX 4   /* blocks of at most this many rows go row by row (generation steps) */

typedef struct attn_args {
    int64_t B, H, Tq, Tk, Dh;
    bool causal;
    const float *q, *k, *v;
    int64_t sq, sk, sv;        /* batch strides (elements) */
    int64_t lq, lk, lv;        /* row strides */
    float *o;                  /* output, batch stride so, row stride lo */
    int64_t so, lo;
    float *lse;                /* [B, H, Tq] or NULL */
    float *probs;              /* [B*H, Tq, Tk] kept for backward, or NULL */
} attn_args;

/* Probabilities are kept for backward while they take at most this much
 * (short sequences: saves recomputing Q·Kᵀ and the exps, ~20% of the
 * backward); longer sequences keep only the log-sum-exp, so memory stays
 * linear in T. MEDLEY_ATTN_KEEP_MAX (bytes) overrides; tests set 0 to run
 * the recomputing path. */
#define ATTN_KEEP_PROBS_BYTES ((int64_t)64 << 20)

static int64_t keep_probs_limit(void)
{
    static int64_t limit = -1;
    if (limit < 0) {
        const char *e = getenv("MEDLEY_ATTN_KEEP_MAX");
        char *end = NULL;
        long long v = e && *e ? strtoll(e, &end, 10) : -1;
        limit = (e && *e && end && !*end && v >= 0) ? (int64_t)v : ATTN_KEEP_PROBS_BYTES;
    }
    return limit;
}

/* Keys visible to query row i: [0, kend(i)). */
static inline int64_t kend(const attn_args *a, int64_t i)
{
    if (!a->causal)
        return a->Tk;
    int64_t e = i + 1 + (a->Tk - a->Tq);
    return e < 0 ? 0 : (e > a->Tk ? a->Tk : e);
}

/* Scores to unnormalised probabilities in place: s[j] = exp(s[j] - max)
 * over n scores; returns their sum, *mx the max (-inf when n is 0). */
static inline float exp_row(float *s, int64_t n, float *mx)
{
    float m = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        m = s[j] > m ? s[j] : m;   /* fmaxf is a call; this vectorises */
    float sum = 0.f;
    #pragma omp simd reduction(+:sum)
    for (int64_t j = 0; j < n; j++) {
        float e = md_fast_exp(s[j] - m);
        s[j] = e;
        sum += e;
    }
    *mx = m;
    return sum;
}

/* One query row against kn cached keys (a step of generation: one new
 * position per row): the scores, then the weighted sum of the values — no
 * product call per (row, head), which at these sizes costs more than the
 * arithmetic. The cache holds keys and values in half precision, widened
 * in registers; keys in blocks of 16 positions (md_kv_cache), so a head's
 * scores for 16 keys are Dh multiply-adds of whole vectors — no sums
 * across lanes — four blocks at a time so the chains overlap. The values'
 * weighted sum keeps four partial sums (keys j mod 4), added at the end.
 * Each output is summed in one fixed order. Head widths of 16, 32, 64 and
 * 128 take the AVX-512 form (NV vectors per value row, a constant so the
 * sums stay in registers); others plain loops in the same orders. kb: the
 * row's key blocks at this head's first column (block stride W · 16);
 * s: kn + 64 floats of scratch; o: the row's Dh outputs. Left out of the
 * sanitizer builds' instrumentation like the small products
 * (kernels_cpu.c); test_core checks them against the full pass. */
#define ONE_ROW_KERNEL __attribute__((no_sanitize("address", "undefined")))
#define KB 16   /* positions per key block */

#if defined(__AVX512F__)
static inline __attribute__((always_inline)) ONE_ROW_KERNEL void
one_row_scores(int NV, const float *q, const uint16_t *kb, int64_t W, int64_t kn, float scale, float *s)
{
    const int64_t Dh = 16 * NV, bs = W * KB, nb = (kn + KB - 1) / KB;
    const __m512 sc = _mm512_set1_ps(scale);
    int64_t jb = 0;
    for (; jb + 4 <= nb; jb += 4) {
        const uint16_t *k0 = kb + jb * bs;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < Dh; i++) {
            const __m512 qi = _mm512_set1_ps(q[i]);
            a0 = _mm512_fmadd_ps(qi, md_load_half16(k0 + i * KB), a0);
            a1 = _mm512_fmadd_ps(qi, md_load_half16(k0 + bs + i * KB), a1);
            a2 = _mm512_fmadd_ps(qi, md_load_half16(k0 + 2 * bs + i * KB), a2);
            a3 = _mm512_fmadd_ps(qi, md_load_half16(k0 + 3 * bs + i * KB), a3);
        }
        _mm512_storeu_ps(s + jb * KB, _mm512_mul_ps(a0, sc));
        _mm512_storeu_ps(s + jb * KB + 16, _mm512_mul_ps(a1, sc));
        _mm512_storeu_ps(s + jb * KB + 32, _mm512_mul_ps(a2, sc));
        _mm512_storeu_ps(s + jb * KB + 48, _mm512_mul_ps(a3, sc));
    }
    for (; jb < nb; jb++) {   /* s has room for the last block's 16 */
        const uint16_t *k0 = kb + jb * bs;
        __m512 a0 = _mm512_setzero_ps();
        for (int64_t i = 0; i < Dh; i++)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(q[i]), md_load_half16(k0 + i * KB), a0);
        _mm512_storeu_ps(s + jb * KB, _mm512_mul_ps(a0, sc));
    }
}

static inline __attribute__((always_inline)) ONE_ROW_KERNEL void
one_row_values(int NV, const float *p, float inv, const uint16_t *v, int64_t lv, int64_t kn, float *o)
{
    __m512 acc[4][8];
    for (int u = 0; u < 4; u++)
        for (int i = 0; i < NV; i++)
            acc[u][i] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 4 <= kn; j += 4)
        for (int u = 0; u < 4; u++) {
            const __m512 pj = _mm512_set1_ps(p[j + u] * inv);
            for (int i = 0; i < NV; i++)
                acc[u][i] = _mm512_fmadd_ps(pj, md_load_half16(v + (j + u) * lv + 16 * i), acc[u][i]);
        }
    for (int u = 0; j < kn; j++, u++) {
        const __m512 pj = _mm512_set1_ps(p[j] * inv);
        for (int i = 0; i < NV; i++)
            acc[u][i] = _mm512_fmadd_ps(pj, md_load_half16(v + j * lv + 16 * i), acc[u][i]);
    }
    for (int i = 0; i < NV; i++)
        _mm512_storeu_ps(o + 16 * i, _mm512_add_ps(_mm512_add_ps(acc[0][i], acc[1][i]),
                                                   _mm512_add_ps(acc[2][i], acc[3][i])));
}
#endif

ONE_ROW_KERNEL static void attn_one_row(const float *q, const uint16_t *kb, int64_t W, const uint16_t *v,
                                        int64_t lv, int64_t kn, int64_t Dh, float scale, float *s, float *o)
{
#if defined(__AVX512F__)
    const int nv = Dh == 16 ? 1 : Dh == 32 ? 2 : Dh == 64 ? 4 : Dh == 128 ? 8 : 0;
#else
    const int nv = 0;
#endif
    switch (nv) {
#if defined(__AVX512F__)
    case 1: one_row_scores(1, q, kb, W, kn, scale, s); break;
    case 2: one_row_scores(2, q, kb, W, kn, scale, s); break;
    case 4: one_row_scores(4, q, kb, W, kn, scale, s); break;
    case 8: one_row_scores(8, q, kb, W, kn, scale, s); break;
#endif
    default:
        for (int64_t j = 0; j < kn; j++) {
            const uint16_t *kj = kb + (j / KB) * W * KB + j % KB;
            float d = 0.f;
            for (int64_t i = 0; i < Dh; i++)
                d = fmaf(q[i], md_f16_to_f32(kj[i * KB]), d);
            s[j] = d * scale;
        }
    }
    float mx;
    const float sum = exp_row(s, kn, &mx);
    const float inv = kn ? 1.f / sum : 0.f;
    switch (nv) {
#if defined(__AVX512F__)
    case 1: one_row_values(1, s, inv, v, lv, kn, o); break;
    case 2: one_row_values(2, s, inv, v, lv, kn, o); break;
    case 4: one_row_values(4, s, inv, v, lv, kn, o); break;
    case 8: one_row_values(8, s, inv, v, lv, kn, o); break;
#endif
    default:
        for (int64_t i = 0; i < Dh; i++) {
            float part[4] = {0.f, 0.f, 0.f, 0.f};
            for (int64_t j = 0; j < kn; j++)
                part[j % 4] = fmaf(s[j] * inv, md_f16_to_f32(v[j * lv + i]), part[j % 4]);
            o[i] = (part[0] + part[1]) + (part[2] + part[3]);
        }
    }
}

static void attn_forward_kernel(const md_graph *g, const attn_args *a, float *scratch)
{
    float scale = 1.0f / sqrtf((float)a->Dh);
    int64_t pairs = a->B * a->H;
    #pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < pairs; p++) {
        int64_t b = p / a->H, h = p % a->H;
        float *S0 = scratch + (int64_t)md_pool_thread_id() * QB * a->Tk;
        const float *qb = a->q + b * a->sq + h * a->Dh;
        const float *kb = a->k + b * a->sk + h * a->Dh;
        const float *vb = a->v + b * a->sv + h * a->Dh;
        float *ob = a->o + b * a->so + h * a->Dh;
        for (int64_t i0 = 0; i0 < a->Tq; i0 += QB) {
            int64_t rows = MD_MIN(QB, a->Tq - i0);
            int64_t kn = kend(a, i0 + rows - 1);
            if (kn == 0) {
                for (int64_t r = 0; r < rows; r++)
                    memset(ob + (i0 + r) * a->lo, 0, sizeof(float) * (size_t)a->Dh);
                continue;
            }
            /* scores, then probabilities, in place: into the kept buffer
             * (row stride Tk) or this thread's scratch (row stride kn) */
            float *S = a->probs ? a->probs + (p * a->Tq + i0) * a->Tk : S0;
            int64_t ls = a->probs ? a->Tk : kn;
            md_cpu_gemm(false, true, rows, kn, a->Dh, scale, qb + i0 * a->lq, a->lq, kb, a->lk, 0.f, S, ls);
            for (int64_t r = 0; r < rows; r++) {
                float *sr = S + r * ls;
                int64_t ke = kend(a, i0 + r);
                float mx;
                float s = exp_row(sr, ke, &mx);
                float inv = ke ? 1.f / s : 0.f;
                #pragma omp simd
                for (int64_t j = 0; j < ke; j++)
                    sr[j] *= inv;
                for (int64_t j = ke; j < kn; j++)
                    sr[j] = 0.f;
                if (a->lse)
                    a->lse[(b * a->H + h) * a->Tq + i0 + r] = ke ? mx + logf(s) : INFINITY;
            }
            md_cpu_gemm(false, false, rows, a->Dh, kn, 1.f, S, ls, vb, a->lv, 0.f, ob + i0 * a->lo, a->lo);
        }
    }
    MD_UNUSED(g);
}

/* Gradients into dq/dk/dv (same strides as q/k/v), overwriting them. */
static void attn_backward_kernel(const attn_args *a, const float *dout, float *dq, float *dk, float *dv,
                                 float *scratch)
{
    float scale = 1.0f / sqrtf((float)a->Dh);
    int64_t pairs = a->B * a->H;
    #pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < pairs; p++) {
        int64_t b = p / a->H, h = p % a->H;
        float *P0 = scratch + (int64_t)md_pool_thread_id() * (2 * QB * a->Tk + QB);
        float *dP = P0 + QB * a->Tk;
        float *Drow = dP + QB * a->Tk;
        const float *qb = a->q + b * a->sq + h * a->Dh;
        const float *kb = a->k + b * a->sk + h * a->Dh;
        const float *vb = a->v + b * a->sv + h * a->Dh;
        const float *ob = a->o + b * a->so + h * a->Dh;
        const float *dob = dout + b * a->so + h * a->Dh;
        float *dqb = dq + b * a->sq + h * a->Dh;
        float *dkb = dk + b * a->sk + h * a->Dh;
        float *dvb = dv + b * a->sv + h * a->Dh;
        const float *lse = a->lse + (b * a->H + h) * a->Tq;
        int64_t kdone = 0;   /* key rows of dK/dV written so far; the rest are undefined */
        for (int64_t i0 = 0; i0 < a->Tq; i0 += QB) {
            int64_t rows = MD_MIN(QB, a->Tq - i0);
            int64_t kn = kend(a, i0 + rows - 1);
            if (kn == 0) {
                for (int64_t r = 0; r < rows; r++)
                    memset(dqb + (i0 + r) * a->lq, 0, sizeof(float) * (size_t)a->Dh);
                continue;
            }
            for (int64_t r = 0; r < rows; r++) {
                const float *dor = dob + (i0 + r) * a->lo, *orow = ob + (i0 + r) * a->lo;
                float s = 0.f;
                for (int64_t d = 0; d < a->Dh; d++)
                    s += dor[d] * orow[d];
                Drow[r] = s;
            }
            /* P: kept from forward (row stride Tk), or recomputed from
             * Q·Kᵀ and the log-sum-exp into scratch (row stride kn) */
            float *P = a->probs ? a->probs + (p * a->Tq + i0) * a->Tk : P0;
            int64_t lp = a->probs ? a->Tk : kn;
            if (!a->probs)
                md_cpu_gemm(false, true, rows, kn, a->Dh, scale, qb + i0 * a->lq, a->lq, kb, a->lk, 0.f, P, kn);
            md_cpu_gemm(false, true, rows, kn, a->Dh, 1.f, dob + i0 * a->lo, a->lo, vb, a->lv, 0.f, dP, kn);
            for (int64_t r = 0; r < rows; r++) {
                float *pr = P + r * lp, *dpr = dP + r * kn;
                int64_t ke = kend(a, i0 + r);
                float l = lse[i0 + r], D = Drow[r];
                if (!a->probs) {
                    #pragma omp simd
                    for (int64_t j = 0; j < ke; j++)
                        pr[j] = md_fast_exp(pr[j] - l);
                }
                #pragma omp simd
                for (int64_t j = 0; j < ke; j++)
                    dpr[j] = pr[j] * (dpr[j] - D) * scale;   /* dS, pre-scaled */
                for (int64_t j = ke; j < kn; j++)
                    pr[j] = dpr[j] = 0.f;
            }
            /* dV += P^T dO ; dK += dS^T Q ; dQ = dS K. Key rows this block
             * reaches for the first time are overwritten (beta 0), so dK
             * and dV need no zeroing pass. */
            int64_t kold = MD_MIN(kdone, kn);
            if (kold > 0) {
                md_cpu_gemm(true, false, kold, a->Dh, rows, 1.f, P, lp, dob + i0 * a->lo, a->lo, 1.f, dvb, a->lv);
                md_cpu_gemm(true, false, kold, a->Dh, rows, 1.f, dP, kn, qb + i0 * a->lq, a->lq, 1.f, dkb, a->lk);
            }
            if (kn > kold) {
                md_cpu_gemm(true, false, kn - kold, a->Dh, rows, 1.f, P + kold, lp, dob + i0 * a->lo, a->lo, 0.f,
                            dvb + kold * a->lv, a->lv);
                md_cpu_gemm(true, false, kn - kold, a->Dh, rows, 1.f, dP + kold, kn, qb + i0 * a->lq, a->lq, 0.f,
                            dkb + kold * a->lk, a->lk);
                kdone = kn;
            }
            md_cpu_gemm(false, false, rows, a->Dh, kn, 1.f, dP, kn, kb, a->lk, 0.f, dqb + i0 * a->lq, a->lq);
        }
        for (int64_t j = kdone; j < a->Tk; j++) {   /* keys no query sees */
            memset(dkb + j * a->lk, 0, sizeof(float) * (size_t)a->Dh);
            memset(dvb + j * a->lv, 0, sizeof(float) * (size_t)a->Dh);
        }
    }
}

static void attention_backward(md_graph *g, md_node *n)
{
    md_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *o = n->out;
    attn_args a = *(attn_args *)n->saved[0];
    a.o = o->data;
    bool packed = n->iarg[0];
    size_t scratch_n = (size_t)md_pool_threads() * (size_t)(2 * QB * a.Tk + QB);
    float *scratch = md_graph_scratch(g, sizeof(float) * scratch_n);
    if (packed) {
        /* q is the packed [B, T, 3W] tensor; k, v alias it. */
        int64_t W = a.H * a.Dh;
        float beta = md_grad_beta(q);
        float *dst = q->grad;
        if (beta != 0.f)
            dst = md_graph_scratch(g, sizeof(float) * (size_t)md_numel(q));
        attn_backward_kernel(&a, o->grad, dst, dst + W, dst + 2 * W, scratch);
        if (beta != 0.f)
            md_axpby(q->grad, dst, md_numel(q), 1.f, 1.f);
        return;
    }
    /* Separate tensors (possibly aliased): compute into scratch, then add. */
    size_t nq = (size_t)md_numel(q), nk = (size_t)md_numel(k), nv = (size_t)md_numel(v);
    float *dq = md_graph_scratch(g, sizeof(float) * nq);
    float *dk = md_graph_scratch(g, sizeof(float) * nk);
    float *dv = md_graph_scratch(g, sizeof(float) * nv);
    attn_backward_kernel(&a, o->grad, dq, dk, dv, scratch);
    if (md_wants_grad(q)) md_axpby(q->grad, dq, (int64_t)nq, 1.f, md_grad_beta(q));
    if (md_wants_grad(k)) md_axpby(k->grad, dk, (int64_t)nk, 1.f, md_grad_beta(k));
    if (md_wants_grad(v)) md_axpby(v->grad, dv, (int64_t)nv, 1.f, md_grad_beta(v));
}

static md_tensor *attention_run(md_graph *g, attn_args *a, md_tensor *q, md_tensor *k, md_tensor *v, bool packed)
{
    int64_t W = a->H * a->Dh;
    int64_t shape[3] = {a->B, a->Tq, W};
    bool rg = md_any_grad(g, q, k, v);
    md_tensor *o = md_tensor_new(g, MD_F32, 3, shape, rg);
    a->o = o->data;
    a->so = a->Tq * W;
    a->lo = W;
    a->lse = rg ? md_graph_scratch(g, sizeof(float) * (size_t)(a->B * a->H * a->Tq)) : NULL;
    int64_t pbytes = a->B * a->H * a->Tq * a->Tk * (int64_t)sizeof(float);
    a->probs = rg && pbytes <= keep_probs_limit() ? md_graph_scratch(g, (size_t)pbytes) : NULL;
    float *scratch = md_graph_scratch(g, sizeof(float) * (size_t)md_pool_threads() * QB * (size_t)a->Tk);
    attn_forward_kernel(g, a, scratch);
    md_node *n = md_graph_record(g, attention_backward, o);
    if (n) {
        attn_args *saved = md_graph_scratch(g, sizeof *saved);
        *saved = *a;
        n->saved[0] = saved;
        n->in[0] = q;
        n->in[1] = packed ? NULL : k;
        n->in[2] = packed ? NULL : v;
        n->iarg[0] = packed;
    }
    return o;
}

md_tensor *md_attention(md_graph *g, md_tensor *q, md_tensor *k, md_tensor *v, int heads, bool causal)
{
    MD_CHECK_CONTIG(q);
    MD_CHECK_CONTIG(k);
    MD_CHECK_CONTIG(v);
    MD_ASSERT(q->ndim == 3 && k->ndim == 3 && v->ndim == 3);
    MD_ASSERT(md_same_shape(k, v) && q->shape[0] == k->shape[0] && q->shape[2] == k->shape[2]);
    MD_ASSERT(heads > 0 && q->shape[2] % heads == 0);
    attn_args a = {0};
    a.B = q->shape[0];
    a.Tq = q->shape[1];
    a.Tk = k->shape[1];
    a.H = heads;
    a.Dh = q->shape[2] / heads;
    a.causal = causal;
    a.q = q->data; a.k = k->data; a.v = v->data;
    a.sq = a.Tq * q->shape[2]; a.sk = a.sv = a.Tk * k->shape[2];
    a.lq = a.lk = a.lv = q->shape[2];
    return attention_run(g, &a, q, k, v, false);
}

md_tensor *md_attention_qkv(md_graph *g, md_tensor *qkv, int heads, bool causal)
{
    MD_CHECK_CONTIG(qkv);
    MD_ASSERT(qkv->ndim == 3 && qkv->shape[2] % 3 == 0);
    int64_t W = qkv->shape[2] / 3;
    MD_ASSERT(heads > 0 && W % heads == 0);
    attn_args a = {0};
    a.B = qkv->shape[0];
    a.Tq = a.Tk = qkv->shape[1];
    a.H = heads;
    a.Dh = W / heads;
    a.causal = causal;
    a.q = qkv->data; a.k = qkv->data + W; a.v = qkv->data + 2 * W;
    a.sq = a.sk = a.sv = a.Tq * 3 * W;
    a.lq = a.lk = a.lv = 3 * W;
    return attention_run(g, &a, qkv, NULL, NULL, true);
}

/* ---- KV cache -------------------------------------------------------------- */

/* positions a row's key blocks cover */
static int64_t kv_kpad(int64_t tmax) { return (tmax + KB - 1) / KB * KB; }

/* key of position t, column c, in a row's blocks */
static inline size_t kv_kat(int64_t W, int64_t t, int64_t c)
{
    return ((size_t)(t / KB) * (size_t)W + (size_t)c) * KB + (size_t)(t % KB);
}

md_status md_kv_cache_init(md_kv_cache *c, int64_t batch, int64_t tmax, int64_t width)
{
    memset(c, 0, sizeof *c);
    size_t nk = (size_t)(batch * kv_kpad(tmax) * width), nv = (size_t)(batch * tmax * width);
    c->k = calloc(nk ? nk : 1, sizeof(uint16_t));
    c->v = calloc(nv ? nv : 1, sizeof(uint16_t));
    if (!c->k || !c->v) {
        md_kv_cache_free(c);
        md_log(MD_LOG_ERROR, "out of memory for a KV cache of %lld positions", (long long)tmax);
        return MD_ERR_ALLOC;
    }
    c->batch = batch;
    c->tmax = tmax;
    c->width = width;
    return MD_OK;
}

void md_kv_cache_free(md_kv_cache *c)
{
    free(c->k);
    free(c->v);
    c->k = c->v = NULL;
    c->len = 0;
}

void md_kv_cache_clear(md_kv_cache *c) { c->len = 0; }

md_kv_cache md_kv_cache_rows(const md_kv_cache *c, int64_t row0, int64_t rows)
{
    MD_ASSERT(row0 >= 0 && rows >= 0 && row0 + rows <= c->batch);
    return (md_kv_cache){c->k + (size_t)(row0 * kv_kpad(c->tmax) * c->width),
                         c->v + (size_t)(row0 * c->tmax * c->width), rows, c->tmax, c->width, c->len};
}

void md_kv_cache_copy_row(md_kv_cache *dst, int64_t dst_row, const md_kv_cache *src, int64_t src_row, int64_t n)
{
    MD_ASSERT(dst->width == src->width && n <= dst->tmax && n <= src->tmax);
    const int64_t W = src->width;
    /* whole key blocks (a block's positions past n are never read before they are written) */
    const size_t kd = (size_t)(dst_row * kv_kpad(dst->tmax) * W), ks = (size_t)(src_row * kv_kpad(src->tmax) * W);
    memcpy(dst->k + kd, src->k + ks, sizeof(uint16_t) * (size_t)((n + KB - 1) / KB * KB * W));
    const size_t vd = (size_t)(dst_row * dst->tmax * W), vs = (size_t)(src_row * src->tmax * W);
    memcpy(dst->v + vd, src->v + vs, sizeof(uint16_t) * (size_t)(n * W));
}

/* Rows of a step (at most ONE_ROW_MAX new positions per sequence) against
 * the cache, (sequence, head) pairs split over the threads. */
static void cached_rows(const md_kv_cache *c, const float *q, int64_t Tn, int64_t H, float *o, float *scratch)
{
    const int64_t W = c->width, Dh = W / H, Tk = c->len, kpad = kv_kpad(c->tmax);
    const float scale = 1.0f / sqrtf((float)Dh);
    #pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < c->batch * H; p++) {
        const int64_t b = p / H, h = p % H;
        float *s = scratch + (int64_t)md_pool_thread_id() * (Tk + 64);
        const uint16_t *kb = c->k + b * kpad * W + h * Dh * KB, *vb = c->v + b * c->tmax * W + h * Dh;
        for (int64_t r = 0; r < Tn; r++)
            attn_one_row(q + (b * Tn + r) * W + h * Dh, kb, W, vb, W, Tk - Tn + r + 1, Dh, scale, s,
                         o + (b * Tn + r) * W + h * Dh);
    }
}

md_tensor *md_attention_cached(md_graph *g, md_tensor *q, md_tensor *k, md_tensor *v,
                               int heads, md_kv_cache *cache)
{
    MD_CHECK_CONTIG(q);
    MD_CHECK_CONTIG(k);
    MD_CHECK_CONTIG(v);
    int64_t B = q->shape[0], Tn = q->shape[1], W = q->shape[2];
    MD_ASSERT(B == cache->batch && W == cache->width && md_same_shape(q, k) && md_same_shape(k, v));
    MD_ASSERT(heads > 0 && W % heads == 0);
    if (cache->len + Tn > cache->tmax) {
        md_log(MD_LOG_ERROR, "KV cache full: %lld + %lld positions exceed its %lld",
               (long long)cache->len, (long long)Tn, (long long)cache->tmax);
        return NULL;
    }
    const int64_t kpad = kv_kpad(cache->tmax);
    for (int64_t b = 0; b < B; b++) {
        size_t at = (size_t)((b * cache->tmax + cache->len) * W), n = (size_t)(Tn * W);
        md_convert(cache->v + at, MD_F16, v->data + b * Tn * W, MD_F32, n);
        uint16_t *kr = cache->k + (size_t)(b * kpad * W);
        for (int64_t t = 0; t < Tn; t++) {
            const float *src = k->data + (b * Tn + t) * W;
            for (int64_t c = 0; c < W; c++)
                kr[kv_kat(W, cache->len + t, c)] = md_f32_to_f16(src[c]);
        }
    }
    cache->len += Tn;
    const int64_t Tk = cache->len;
    if (Tn <= ONE_ROW_MAX) {
        md_tensor *o = md_tensor_new(g, MD_F32, 3, (int64_t[]){B, Tn, W}, false);
        float *scratch = md_graph_scratch(g, sizeof(float) * (size_t)(md_pool_threads() * (Tk + 64)));
        cached_rows(cache, q->data, Tn, heads, o->data, scratch);
        return o;
    }
    /* a longer block (a prefix): the cached keys and values widened, then
     * the blocked product path */
    float *kf = md_graph_scratch(g, sizeof(float) * (size_t)(B * Tk * W));
    float *vf = md_graph_scratch(g, sizeof(float) * (size_t)(B * Tk * W));
    for (int64_t b = 0; b < B; b++) {
        const uint16_t *kr = cache->k + (size_t)(b * kpad * W);
        for (int64_t t = 0; t < Tk; t++)
            for (int64_t c = 0; c < W; c++)
                kf[(b * Tk + t) * W + c] = md_f16_to_f32(kr[kv_kat(W, t, c)]);
        md_convert(vf + b * Tk * W, MD_F32, cache->v + b * cache->tmax * W, MD_F16, (size_t)(Tk * W));
    }
    attn_args a = {0};
    a.B = B; a.Tq = Tn; a.Tk = Tk; a.H = heads; a.Dh = W / heads;
    a.causal = true;
    a.q = q->data; a.k = kf; a.v = vf;
    a.sq = Tn * W; a.sk = a.sv = Tk * W;
    a.lq = a.lk = a.lv = W;
    bool was = md_graph_grad_enabled(g);
    md_graph_set_grad(g, false);
    md_tensor *o = attention_run(g, &a, q, NULL, NULL, false);
    md_graph_set_grad(g, was);
    return o;
}
