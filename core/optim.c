/* optim.c — AdamW, gradient clipping, warmup-cosine schedule, EMA.
 *
 * Threads split fixed-size chunks of the flat blocks by index; a chunk's
 * boundaries never depend on the thread count, so neither do the results
 * (the vector body / scalar tail split of each span is the same for any
 * thread count too). */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Elements per work item. Large enough to amortise scheduling, small enough
 * to balance a few threads over a small model. */
#define OPT_CHUNK ((int64_t)8192)
/* Gradient-norm partials are computed this many chunks per parallel pass, so
 * the partials fit on the stack and no step allocates. */
#define NORM_PASS 512

static int64_t chunk_count(int64_t n) { return (n + OPT_CHUNK - 1) / OPT_CHUNK; }

static void assert_grads_ready(md_paramset *ps)
{
    int np = md_paramset_count(ps);
    for (int i = 0; i < np; i++) {
        const md_tensor *t = md_paramset_get(ps, i);
        MD_ASSERT(t->grad_ready && *t->grad_ready);
    }
}

/* ---- AdamW ---------------------------------------------------------------- */

md_status md_adamw_init(md_adamw *o, md_paramset *ps, float beta1, float beta2, float eps,
                        float weight_decay)
{
    MD_ASSERT(o && ps);
    memset(o, 0, sizeof *o);
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f) || !(eps >= 0.0f) ||
        !(weight_decay >= 0.0f) || !isfinite(eps) || !isfinite(weight_decay)) {
        md_log(MD_LOG_ERROR,
               "AdamW: invalid hyperparameters beta1=%g beta2=%g eps=%g weight_decay=%g "
               "(need betas in [0,1), eps and weight_decay finite and >= 0)",
               (double)beta1, (double)beta2, (double)eps, (double)weight_decay);
        return MD_ERR_INVALID;
    }
    int64_t n = md_paramset_numel(ps);
    int np = md_paramset_count(ps);
    MD_ASSERT(n == 0 || md_paramset_values(ps) != NULL); /* paramset allocated */
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    o->ps = ps;
    o->nparams = np;
    /* m and v share one block; +1 keeps calloc's size non-zero. */
    o->m = calloc((size_t)(2 * n + 1), sizeof(float));
    o->decay_mask = calloc((size_t)np + 1, 1);
    o->offset = calloc((size_t)np + 1, sizeof(int64_t));
    if (!o->m || !o->decay_mask || !o->offset) {
        md_log(MD_LOG_ERROR, "AdamW: out of memory for the state of %lld parameters", (long long)n);
        md_adamw_free(o);
        return MD_ERR_ALLOC;
    }
    o->v = o->m + n;
    int64_t off = 0;
    for (int i = 0; i < np; i++) {
        const md_tensor *t = md_paramset_get(ps, i);
        o->offset[i] = off;
        o->decay_mask[i] = t->ndim >= 2;
        MD_ASSERT(t->data == md_paramset_values(ps) + off); /* flat layout */
        off += md_numel(t);
    }
    o->offset[np] = off;
    MD_ASSERT(off == n);
    return MD_OK;
}

void md_adamw_free(md_adamw *o)
{
    if (!o)
        return;
    free(o->m);
    free(o->decay_mask);
    free(o->offset);
    memset(o, 0, sizeof *o);
}

void md_adamw_set_decay(md_adamw *o, int param_index, bool decay)
{
    MD_ASSERT(o && param_index >= 0 && param_index < o->nparams);
    o->decay_mask[param_index] = decay ? 1 : 0;
}

/* Per-step scalars, already rounded to float as torch rounds Python floats. */
typedef struct adamw_k {
    float b1, omb1, b2, omb2, eps, bc2_sqrt, neg_step_size;
} adamw_k;

/* Operation order mirrors torch's mul_/add_/addcmul_/sqrt/div/add_/addcdiv_
 * so each rounding matches (C17 mode: no FMA contraction). */
static void adamw_span(float *restrict p, const float *restrict g, float *restrict m,
                       float *restrict v, int64_t n, float decay, const adamw_k *k)
{
    const float b1 = k->b1, omb1 = k->omb1, b2 = k->b2, omb2 = k->omb2;
    const float eps = k->eps, bc2s = k->bc2_sqrt, nss = k->neg_step_size;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = m[i] * b1;
        mi = mi + omb1 * gi;
        float vi = v[i] * b2;
        vi = vi + (omb2 * gi) * gi;
        float denom = sqrtf(vi) / bc2s + eps;
        float pi = p[i] * decay;
        p[i] = pi + (nss * mi) / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

/* Index of the param holding flat element e: largest i with offset[i] <= e. */
static int param_at(const int64_t *offset, int np, int64_t e)
{
    int lo = 0, hi = np; /* offset[lo] <= e < offset[hi] */
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        if (offset[mid] <= e)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

void md_adamw_step(md_adamw *o, float lr)
{
    MD_ASSERT(o && o->ps);
    md_paramset *ps = o->ps;
    assert_grads_ready(ps);
    o->step++;
    const double t = (double)o->step;
    const double bc1 = 1.0 - pow((double)o->beta1, t);
    const double bc2 = 1.0 - pow((double)o->beta2, t);
    adamw_k k = {
        .b1 = o->beta1,
        .omb1 = (float)(1.0 - (double)o->beta1),
        .b2 = o->beta2,
        .omb2 = (float)(1.0 - (double)o->beta2),
        .eps = o->eps,
        .bc2_sqrt = (float)sqrt(bc2),
        .neg_step_size = (float)(-((double)lr / bc1)),
    };
    const float decay = (float)(1.0 - (double)lr * (double)o->weight_decay);

    float *p = md_paramset_values(ps);
    const float *g = md_paramset_grads(ps);
    const int64_t n = o->offset[o->nparams];
    const int64_t nchunks = chunk_count(n);
    const int np = o->nparams;
    const int64_t *offset = o->offset;
    const unsigned char *mask = o->decay_mask;
    float *m = o->m, *v = o->v;

#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t lo = c * OPT_CHUNK;
        const int64_t hi = MD_MIN(lo + OPT_CHUNK, n);
        /* A chunk may span several params (their decay differs): split at
         * param boundaries. Empty params give empty spans and are skipped. */
        for (int i = param_at(offset, np, lo); lo < hi; i++) {
            const int64_t end = MD_MIN(hi, offset[i + 1]);
            if (end > lo)
                adamw_span(p + lo, g + lo, m + lo, v + lo, end - lo, mask[i] ? decay : 1.0f, &k);
            lo = MD_MAX(lo, end);
        }
    }
}

/* ---- gradient clipping ---------------------------------------------------- */

/* Sum of squares of n floats in double; eight fixed lanes (vectorisable)
 * combined in a fixed tree, so the result depends only on the data. */
static double sumsq_span(const float *restrict g, int64_t n)
{
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += (double)g[i + l] * (double)g[i + l];
    for (int l = 0; i < n; i++, l++)
        acc[l] += (double)g[i] * (double)g[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static void scale_span(float *restrict x, int64_t n, float s)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= s;
}

float md_clip_grad_norm(md_paramset *ps, float max_norm)
{
    MD_ASSERT(ps && max_norm > 0.0f);
    assert_grads_ready(ps);
    float *g = md_paramset_grads(ps);
    const int64_t n = md_paramset_numel(ps);
    const int64_t nchunks = chunk_count(n);
    double total = 0.0;
    for (int64_t c0 = 0; c0 < nchunks; c0 += NORM_PASS) {
        double part[NORM_PASS];
        const int64_t nb = MD_MIN((int64_t)NORM_PASS, nchunks - c0);
#pragma omp parallel for schedule(static) if (nb > 1)
        for (int64_t j = 0; j < nb; j++) {
            const int64_t lo = (c0 + j) * OPT_CHUNK;
            part[j] = sumsq_span(g + lo, MD_MIN(OPT_CHUNK, n - lo));
        }
        for (int64_t j = 0; j < nb; j++) /* serial: fixed order */
            total += part[j];
    }
    const double norm = sqrt(total);
    if (!isfinite(norm)) {
        md_log(MD_LOG_WARN, "gradient norm is %s; gradients left unclipped (skip this step)",
               isnan(norm) ? "NaN" : "Inf");
        return (float)norm;
    }
    /* torch's coefficient, clamped at 1; a coefficient of 1 changes nothing,
     * so only scale below it. */
    const double coef = (double)max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        const float s = (float)coef;
#pragma omp parallel for schedule(static) if (nchunks > 1)
        for (int64_t c = 0; c < nchunks; c++) {
            const int64_t lo = c * OPT_CHUNK;
            scale_span(g + lo, MD_MIN(OPT_CHUNK, n - lo), s);
        }
    }
    return (float)norm;
}

/* ---- schedule ------------------------------------------------------------- */

float md_lr_warmup_cosine(int64_t step, int64_t warmup, int64_t total, float lr_max, float lr_min)
{
    if (step < 0)
        step = 0;
    if (step < warmup)
        return (float)((double)lr_max * (double)step / (double)warmup);
    const int64_t span = total - MD_MAX(warmup, (int64_t)0);
    if (span <= 0 || step >= total)
        return lr_min;
    const double progress = (double)(step - MD_MAX(warmup, (int64_t)0)) / (double)span;
    const double c = 0.5 * (1.0 + cos(M_PI * progress));
    return (float)((double)lr_min + ((double)lr_max - (double)lr_min) * c);
}

/* ---- EMA ------------------------------------------------------------------ */

md_status md_ema_init(md_ema *e, md_paramset *ps, float decay)
{
    MD_ASSERT(e && ps);
    memset(e, 0, sizeof *e);
    if (!(decay >= 0.0f && decay <= 1.0f)) {
        md_log(MD_LOG_ERROR, "EMA: decay %g is not in [0, 1]", (double)decay);
        return MD_ERR_INVALID;
    }
    const int64_t n = md_paramset_numel(ps);
    MD_ASSERT(n == 0 || md_paramset_values(ps) != NULL);
    e->shadow = malloc(sizeof(float) * (size_t)(n + 1));
    if (!e->shadow) {
        md_log(MD_LOG_ERROR, "EMA: out of memory for %lld parameters", (long long)n);
        return MD_ERR_ALLOC;
    }
    if (n)
        memcpy(e->shadow, md_paramset_values(ps), sizeof(float) * (size_t)n);
    e->decay = decay;
    e->ps = ps;
    return MD_OK;
}

static void ema_span(float *restrict s, const float *restrict p, int64_t n, float d, float omd)
{
    for (int64_t i = 0; i < n; i++)
        s[i] = d * s[i] + omd * p[i];
}

void md_ema_update(md_ema *e)
{
    MD_ASSERT(e && e->shadow);
    const float d = e->decay, omd = (float)(1.0 - (double)e->decay);
    float *s = e->shadow;
    const float *p = md_paramset_values(e->ps);
    const int64_t n = md_paramset_numel(e->ps);
    const int64_t nchunks = chunk_count(n);
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        const int64_t lo = c * OPT_CHUNK;
        ema_span(s + lo, p + lo, MD_MIN(OPT_CHUNK, n - lo), d, omd);
    }
    e->n++;
}

static void swap_span(float *restrict a, float *restrict b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

void md_ema_swap(md_ema *e)
{
    MD_ASSERT(e && e->shadow);
    float *s = e->shadow;
    float *p = md_paramset_values(e->ps);
    const int64_t n = md_paramset_numel(e->ps);
    const int64_t nchunks = chunk_count(n);
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        const int64_t lo = c * OPT_CHUNK;
        swap_span(s + lo, p + lo, MD_MIN(OPT_CHUNK, n - lo));
    }
}

void md_ema_free(md_ema *e)
{
    if (!e)
        return;
    free(e->shadow);
    memset(e, 0, sizeof *e);
}
