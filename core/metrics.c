/* metrics.c — attribute accuracy, diversity, Fréchet distance and the
 * any-to-any matrix (see metrics.h).
 *
 * Everything accumulates in double. Results do not depend on the thread
 * count: every parallel loop gives each output element to one thread, which
 * sums in a fixed order.
 *
 * Eigensolver: Householder reduction to tridiagonal form, then implicit QL
 * with shifts (EISPACK's tred2 and tql2, as in JAMA): about (4/3) d^3 flops
 * for eigenvalues, 7 d^3 with vectors, every inner loop contiguous. A
 * cyclic Jacobi solver was tried first: the same results, but at d = 512 it
 * took 12 sweeps and 3.4 s against 0.06 s for this (one core).
 *
 * Fréchet distance: with Ca = V L V^T, Ca^1/2 Cb Ca^1/2 is similar to
 * L^1/2 (V^T Cb V) L^1/2, so one decomposition with vectors (Ca) and one
 * without (the inner matrix) give the trace of its square root.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "metrics.h"

#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const md_modality_names[MD_MODALITIES] = {"text", "image", "audio", "video"};

/* ---- attribute accuracy -------------------------------------------------- */

void md_attr_score_add(md_attr_score *s, const int want[MD_ATTR_COUNT], const int got[MD_ATTR_COUNT])
{
    MD_ASSERT(s && want && got);
    bool all = true;
    for (int a = 0; a < MD_ATTR_COUNT; a++) {
        if (want[a] < 0)
            continue;
        s->asked[a]++;
        if (got[a] == want[a])
            s->right[a]++;
        else
            all = false;
    }
    s->samples++;
    s->all_right += all;
}

double md_attr_score_acc(const md_attr_score *s, md_attr a)
{
    MD_ASSERT(s && (int)a >= 0 && a < MD_ATTR_COUNT);
    return s->asked[a] ? (double)s->right[a] / (double)s->asked[a] : NAN;
}

double md_attr_score_attrs(const md_attr_score *s)
{
    MD_ASSERT(s);
    int64_t asked = 0, right = 0;
    for (int a = 0; a < MD_ATTR_COUNT; a++) {
        if (a == MD_ATTR_DIGIT)
            continue;
        asked += s->asked[a];
        right += s->right[a];
    }
    return asked ? (double)right / (double)asked : NAN;
}

/* ---- diversity ----------------------------------------------------------- */

double md_diversity(const float *x, int k, int64_t n)
{
    if (k < 2 || n < 1)
        return NAN;
    MD_ASSERT(x);
    const int64_t npairs = (int64_t)k * (k - 1) / 2;
    double *rms = malloc((size_t)npairs * sizeof *rms);
    if (!rms) {
        md_log(MD_LOG_ERROR, "diversity: out of memory");
        return NAN;
    }
    /* Pairs (i, j), i < j, in row order, one slot each; the slots are summed
     * in order afterwards, so threads change nothing. */
#pragma omp parallel for schedule(dynamic) if ((double)npairs * (double)n > 1e6)
    for (int i = 0; i < k - 1; i++) {
        double *ri = rms + (int64_t)i * (2 * (int64_t)k - i - 1) / 2; /* pair (i, i + 1) */
        const float *xi = x + (size_t)i * (size_t)n;
        for (int j = i + 1; j < k; j++) {
            const float *xj = x + (size_t)j * (size_t)n;
            double ss = 0.0;
#pragma omp simd reduction(+ : ss)
            for (int64_t t = 0; t < n; t++) {
                const double e = (double)xi[t] - (double)xj[t];
                ss += e * e;
            }
            ri[j - i - 1] = sqrt(ss / (double)n);
        }
    }
    double num = 0.0;
    for (int64_t q = 0; q < npairs; q++)
        num += rms[q];
    free(rms);
    if (num == 0.0)
        return 0.0; /* identical outputs, even if every value is the same */
    num /= (double)npairs;

    const int64_t total = (int64_t)k * n;
    double mean = 0.0, var = 0.0;
    for (int64_t t = 0; t < total; t++)
        mean += x[t];
    mean /= (double)total;
    for (int64_t t = 0; t < total; t++) {
        double e = (double)x[t] - mean;
        var += e * e;
    }
    return num / sqrt(var / (double)total);
}

double md_distinct_share(const float *x, int k, int64_t n)
{
    if (k < 1 || n < 0)
        return NAN;
    MD_ASSERT(x || n == 0);
    const size_t bytes = (size_t)n * sizeof(float);
    int distinct = 0;
    for (int i = 0; i < k; i++) {
        bool fresh = true;
        for (int j = 0; j < i && fresh; j++)
            fresh = bytes && memcmp(x + (size_t)i * (size_t)n, x + (size_t)j * (size_t)n, bytes) != 0;
        distinct += fresh;
    }
    return (double)distinct / k;
}

/* ---- symmetric eigensolver (see the top of the file) --------------------- */

/* QL iterations allowed per eigenvalue; 2 or 3 is usual. */
#define QL_MAX_ITER 60

/* EISPACK's tred2 + tql2 (as in JAMA), with V stored transposed: V(r, c)
 * lives at w[c * n + r], so the algorithm's walks down columns of V are
 * walks along rows of w here, and eigenvector c is row c of w.
 *
 * On entry w holds a symmetric matrix (both triangles). On success dg[k]
 * are the eigenvalues (unsorted) and, if vectors, row k of w is the unit
 * eigenvector of dg[k]; e is scratch of n. MD_ERR if an eigenvalue needs
 * more than QL_MAX_ITER iterations. */
#define V(r, c) w[(size_t)(c) * n + (r)]
static md_status tridiag_ql(double *w, int n, double *dg, double *e, bool vectors)
{
    double *d = dg;
    for (int j = 0; j < n; j++)
        d[j] = V(n - 1, j);

    /* Householder reduction to tridiagonal form, last row first. */
    for (int i = n - 1; i > 0; i--) {
        double scale = 0.0, h = 0.0;
        for (int k = 0; k < i; k++)
            scale += fabs(d[k]);
        if (scale == 0.0) {
            e[i] = d[i - 1];
            for (int j = 0; j < i; j++) {
                d[j] = V(i - 1, j);
                V(i, j) = 0.0;
                V(j, i) = 0.0;
            }
        } else {
            for (int k = 0; k < i; k++) {
                d[k] /= scale; /* scaled against under/overflow */
                h += d[k] * d[k];
            }
            double f = d[i - 1], g = f > 0 ? -sqrt(h) : sqrt(h);
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for (int j = 0; j < i; j++)
                e[j] = 0.0;
            /* e = A d over the leading i×i block (lower triangle of V). */
            for (int j = 0; j < i; j++) {
                double *restrict vj = &V(0, j), *restrict ee = e;
                const double *restrict dd = d;
                f = dd[j];
                V(j, i) = f;
                g = ee[j] + vj[j] * f;
#pragma omp simd reduction(+ : g)
                for (int k = j + 1; k < i; k++) {
                    g += vj[k] * dd[k];
                    ee[k] += vj[k] * f;
                }
                ee[j] = g;
            }
            f = 0.0;
            for (int j = 0; j < i; j++) {
                e[j] /= h;
                f += e[j] * d[j];
            }
            const double hh = f / (h + h);
            for (int j = 0; j < i; j++)
                e[j] -= hh * d[j];
            /* Rank-2 update of the block. */
            for (int j = 0; j < i; j++) {
                double *restrict vj = &V(0, j);
                const double *restrict ee = e, *restrict dd = d;
                f = dd[j];
                g = ee[j];
#pragma omp simd
                for (int k = j; k < i; k++)
                    vj[k] -= f * ee[k] + g * dd[k];
                d[j] = V(i - 1, j);
                V(i, j) = 0.0;
            }
        }
        d[i] = h;
    }

    if (vectors) {
        /* Accumulate the reflections into V. */
        for (int i = 0; i < n - 1; i++) {
            V(n - 1, i) = V(i, i);
            V(i, i) = 1.0;
            const double h = d[i + 1];
            double *restrict vi1 = &V(0, i + 1);
            if (h != 0.0) {
                for (int k = 0; k <= i; k++)
                    d[k] = vi1[k] / h;
                for (int j = 0; j <= i; j++) {
                    double *restrict vj = &V(0, j);
                    const double *restrict dd = d;
                    double g = 0.0;
#pragma omp simd reduction(+ : g)
                    for (int k = 0; k <= i; k++)
                        g += vi1[k] * vj[k];
#pragma omp simd
                    for (int k = 0; k <= i; k++)
                        vj[k] -= g * dd[k];
                }
            }
            for (int k = 0; k <= i; k++)
                vi1[k] = 0.0;
        }
        for (int j = 0; j < n; j++) {
            d[j] = V(n - 1, j);
            V(n - 1, j) = 0.0;
        }
        V(n - 1, n - 1) = 1.0;
    } else {
        for (int j = 0; j < n; j++)
            d[j] = V(j, j);
    }
    e[0] = 0.0;

    /* Implicit QL on the tridiagonal (d, e). */
    for (int i = 1; i < n; i++)
        e[i - 1] = e[i];
    e[n - 1] = 0.0;
    double f = 0.0, tst1 = 0.0;
    const double eps = DBL_EPSILON;
    for (int l = 0; l < n; l++) {
        tst1 = fmax(tst1, fabs(d[l]) + fabs(e[l]));
        int m = l;
        while (m < n - 1 && fabs(e[m]) > eps * tst1)
            m++; /* e[n - 1] is 0: m stops there at the latest */
        if (m > l) {
            int iter = 0;
            do {
                if (++iter > QL_MAX_ITER) {
                    md_log(MD_LOG_ERROR, "eigensolver: QL did not converge in %d iterations (d = %d)", QL_MAX_ITER,
                           n);
                    return MD_ERR;
                }
                /* Implicit shift from the leading 2×2. */
                double g = d[l], p = (d[l + 1] - g) / (2.0 * e[l]), r = hypot(p, 1.0);
                if (p < 0)
                    r = -r;
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                const double dl1 = d[l + 1];
                double h = g - d[l];
                for (int i = l + 2; i < n; i++)
                    d[i] -= h;
                f += h;
                p = d[m];
                double c = 1.0, c2 = 1.0, c3 = 1.0, s = 0.0, s2 = 0.0;
                const double el1 = e[l + 1];
                for (int i = m - 1; i >= l; i--) {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = hypot(p, e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    if (vectors) {
                        double *restrict vi = &V(0, i), *restrict vi1 = &V(0, i + 1);
#pragma omp simd
                        for (int k = 0; k < n; k++) {
                            const double t = vi1[k];
                            vi1[k] = s * vi[k] + c * t;
                            vi[k] = c * vi[k] - s * t;
                        }
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
            } while (fabs(e[l]) > eps * tst1);
        }
        d[l] += f;
        e[l] = 0.0;
    }
    return MD_OK;
}
#undef V

/* Index of the first non-finite of count values, or -1. */
static int64_t first_nonfinite(const double *m, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        if (!isfinite(m[i]))
            return i;
    return -1;
}

/* dst = (src + src^T) / 2: the symmetric part is what gets diagonalised. */
static void sym_full(double *dst, const double *src, int d)
{
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++)
            dst[(size_t)i * d + j] = dst[(size_t)j * d + i] =
                0.5 * (src[(size_t)i * d + j] + src[(size_t)j * d + i]);
}

typedef struct eig_order {
    double v;
    int pos;
} eig_order;

static int cmp_eig(const void *x, const void *y)
{
    const eig_order *a = x, *b = y;
    return a->v < b->v ? -1 : a->v > b->v ? 1 : (a->pos > b->pos) - (a->pos < b->pos);
}

md_status md_sym_eigen(const double *a, int d, double *vals, double *vecs)
{
    MD_ASSERT(a && vals);
    if (d < 1) {
        md_log(MD_LOG_ERROR, "eigensolver: matrix size %d is invalid", d);
        return MD_ERR_INVALID;
    }
    if ((size_t)d > SIZE_MAX / sizeof(double) / (size_t)d / 2) {
        md_log(MD_LOG_ERROR, "eigensolver: matrix size %d is too large", d);
        return MD_ERR_ALLOC;
    }
    const size_t dd = (size_t)d * d;
    int64_t bad = first_nonfinite(a, (int64_t)dd);
    if (bad >= 0) {
        md_log(MD_LOG_ERROR, "eigensolver: entry (%lld, %lld) is not finite", (long long)(bad / d),
               (long long)(bad % d));
        return MD_ERR_INVALID;
    }
    double *w = malloc((dd + 2 * (size_t)d) * sizeof *w);
    eig_order *ord = malloc((size_t)d * sizeof *ord);
    md_status st = MD_ERR_ALLOC;
    if (!w || !ord) {
        md_log(MD_LOG_ERROR, "eigensolver: out of memory for d = %d", d);
        goto done;
    }
    double *dg = w + dd, *e = dg + d;
    sym_full(w, a, d);
    st = tridiag_ql(w, d, dg, e, vecs != NULL);
    if (st != MD_OK)
        goto done;
    for (int k = 0; k < d; k++)
        ord[k] = (eig_order){dg[k], k};
    qsort(ord, (size_t)d, sizeof *ord, cmp_eig);
    for (int j = 0; j < d; j++) {
        vals[j] = ord[j].v;
        if (vecs)
            for (int i = 0; i < d; i++)
                vecs[(size_t)i * d + j] = w[(size_t)ord[j].pos * d + i];
    }
done:
    free(w);
    free(ord);
    return st;
}

/* ---- Gaussian fit -------------------------------------------------------- */

/* Bytes of centred samples per block of the covariance pass: the block
 * stays in cache while every covariance row takes it in. */
#define FIT_BLOCK_BYTES (256 * 1024)

md_status md_gauss_fit(const float *x, int64_t n, int d, md_gauss *g)
{
    MD_ASSERT(g);
    memset(g, 0, sizeof *g);
    if (n < 2 || d < 1 || !x) {
        md_log(MD_LOG_ERROR, "Gaussian fit: needs at least 2 samples of at least 1 feature (got %lld × %d%s)",
               (long long)n, d, x ? "" : ", no data");
        return MD_ERR_INVALID;
    }
    if ((size_t)d > SIZE_MAX / sizeof(double) / (size_t)d / 2 || n > INT64_MAX / d) {
        md_log(MD_LOG_ERROR, "Gaussian fit: %lld × %d features is too large", (long long)n, d);
        return MD_ERR_ALLOC;
    }
    const size_t dd = (size_t)d * d;
    double *mu = calloc((size_t)d, sizeof *mu), *cov = calloc(dd, sizeof *cov);
    /* Blocks of bs samples (a multiple of 4, 4 to 256), one buffer per thread. */
    const int bs = (int)MD_MAX(4, MD_MIN(256, FIT_BLOCK_BYTES / sizeof(double) / (size_t)d)) & ~3;
    const int nth = omp_get_max_threads();
    double *blks = malloc((size_t)nth * bs * d * sizeof *blks);
    if (!mu || !cov || !blks) {
        md_log(MD_LOG_ERROR, "Gaussian fit: out of memory for %d features", d);
        goto fail_alloc;
    }
    for (int64_t s = 0; s < n; s++) {
        const float *row = x + s * d;
        for (int j = 0; j < d; j++) {
            if (!isfinite(row[j])) {
                md_log(MD_LOG_ERROR, "Gaussian fit: feature %d of sample %lld is %s", j, (long long)s,
                       isnan(row[j]) ? "NaN" : "infinite");
                free(mu);
                free(cov);
                free(blks);
                return MD_ERR_INVALID;
            }
            mu[j] += row[j];
        }
    }
    for (int j = 0; j < d; j++)
        mu[j] /= (double)n;

    /* Second pass on centred values: cov[i][j] (j >= i) += x_i x_j, four
     * samples at a time. Thread t owns rows t, t + T, ... (balanced over the
     * triangle) and centres every block itself, so threads never wait on
     * each other; that costs 2T/d of the multiply-adds. */
#pragma omp parallel if ((double)n * d * d > 3e7)
    {
        const int nt = omp_get_num_threads(), t0 = omp_get_thread_num();
        double *blk = blks + (size_t)t0 * bs * d;
        for (int64_t s0 = 0; s0 < n; s0 += bs) {
            const int nb = (int)MD_MIN((int64_t)bs, n - s0);
            for (int s = 0; s < nb; s++)
                for (int j = 0; j < d; j++)
                    blk[(size_t)s * d + j] = (double)x[(s0 + s) * d + j] - mu[j];
            for (int i = t0; i < d; i += nt) {
                double *restrict ci = cov + (size_t)i * d;
                int s = 0;
                for (; s + 4 <= nb; s += 4) {
                    const double *restrict a0 = blk + (size_t)s * d, *restrict a1 = a0 + d, *restrict a2 = a1 + d,
                                           *restrict a3 = a2 + d;
                    const double x0 = a0[i], x1 = a1[i], x2 = a2[i], x3 = a3[i];
#pragma omp simd
                    for (int j = i; j < d; j++)
                        ci[j] += x0 * a0[j] + x1 * a1[j] + x2 * a2[j] + x3 * a3[j];
                }
                for (; s < nb; s++) {
                    const double *restrict a0 = blk + (size_t)s * d;
                    const double x0 = a0[i];
#pragma omp simd
                    for (int j = i; j < d; j++)
                        ci[j] += x0 * a0[j];
                }
            }
        }
    }
    const double inv = 1.0 / (double)(n - 1);
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++)
            cov[(size_t)j * d + i] = cov[(size_t)i * d + j] *= inv;
    free(blks);
    *g = (md_gauss){.d = d, .n = n, .mu = mu, .cov = cov};
    return MD_OK;

fail_alloc:
    free(mu);
    free(cov);
    free(blks);
    return MD_ERR_ALLOC;
}

/* mu and cov are separate blocks, so a caller may build an md_gauss by hand
 * (malloc'd) and free it here too. */
void md_gauss_free(md_gauss *g)
{
    if (!g)
        return;
    free(g->mu);
    free(g->cov);
    memset(g, 0, sizeof *g);
}

/* ---- Fréchet distance ---------------------------------------------------- */

static bool gauss_ok(const md_gauss *g, char which)
{
    if (g->d < 1 || g->n < 2 || !g->mu || !g->cov) {
        md_log(MD_LOG_ERROR, "Fréchet distance: statistics %c are empty or from fewer than 2 samples", which);
        return false;
    }
    if ((size_t)g->d > SIZE_MAX / sizeof(double) / (size_t)g->d / 4) {
        md_log(MD_LOG_ERROR, "Fréchet distance: %d features is too many", g->d);
        return false;
    }
    const char *bad = NULL;
    if (first_nonfinite(g->mu, g->d) >= 0)
        bad = "mean";
    else if (first_nonfinite(g->cov, (int64_t)g->d * g->d) >= 0)
        bad = "covariance";
    if (bad)
        md_log(MD_LOG_ERROR, "Fréchet distance: statistics %c have a non-finite %s", which, bad);
    return !bad;
}

/* tr (Ca^1/2 Cb Ca^1/2)^1/2 through the similar L^1/2 (V^T Cb V) L^1/2
 * (see the top of the file). Negative eigenvalues, roundoff on singular
 * covariances, count as 0. */
static md_status trace_sqrt(const double *ca, const double *cb, int d, double *out)
{
    const size_t dd = (size_t)d * d;
    double *v = malloc((3 * dd + 3 * (size_t)d) * sizeof *v);
    if (!v) {
        md_log(MD_LOG_ERROR, "Fréchet distance: out of memory for d = %d", d);
        return MD_ERR_ALLOC;
    }
    /* v: Ca, then its eigenvectors as rows; cbs: Cb, then the inner matrix;
     * t = V^T Cb; lam, r = sqrt(max(lam, 0)), e: per eigenvalue. */
    double *cbs = v + dd, *t = cbs + dd, *lam = t + dd, *r = lam + d, *e = r + d;
    sym_full(v, ca, d);
    md_status st = tridiag_ql(v, d, lam, e, true);
    if (st != MD_OK)
        goto done;
    for (int k = 0; k < d; k++)
        r[k] = sqrt(fmax(lam[k], 0.0));
    sym_full(cbs, cb, d);
    /* t = V^T Cb, four rows at a time so each row of Cb is loaded once per
     * four rows of t. */
#pragma omp parallel for schedule(static) if (d >= 256)
    for (int i0 = 0; i0 < d; i0 += 4) {
        const int ni = MD_MIN(4, d - i0);
        const double *vi = v + (size_t)i0 * d;
        double *restrict t0 = t + (size_t)i0 * d;
        memset(t0, 0, (size_t)ni * d * sizeof *t0);
        for (int k = 0; k < d; k++) {
            const double *restrict b = cbs + (size_t)k * d;
            if (ni == 4) {
                double *restrict t1 = t0 + d, *restrict t2 = t1 + d, *restrict t3 = t2 + d;
                const double v0 = vi[k], v1 = vi[d + k], v2 = vi[2 * d + k], v3 = vi[3 * d + k];
#pragma omp simd
                for (int j = 0; j < d; j++) {
                    t0[j] += v0 * b[j];
                    t1[j] += v1 * b[j];
                    t2[j] += v2 * b[j];
                    t3[j] += v3 * b[j];
                }
            } else {
                for (int q = 0; q < ni; q++) {
                    const double vq = vi[(size_t)q * d + k];
                    for (int j = 0; j < d; j++)
                        t0[(size_t)q * d + j] += vq * b[j];
                }
            }
        }
    }
    /* inner[i][j] = r_i (t_i . v_j) r_j, into cbs (both triangles). */
#pragma omp parallel for schedule(dynamic, 8) if (d >= 256)
    for (int i = 0; i < d; i++) {
        const double *restrict ti = t + (size_t)i * d;
        for (int j = i; j < d; j++) {
            const double *restrict vj = v + (size_t)j * d;
            double s = 0.0;
#pragma omp simd reduction(+ : s)
            for (int k = 0; k < d; k++)
                s += ti[k] * vj[k];
            cbs[(size_t)i * d + j] = r[i] * s * r[j];
        }
    }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++)
            cbs[(size_t)i * d + j] = cbs[(size_t)j * d + i];
    st = tridiag_ql(cbs, d, lam, e, false);
    if (st == MD_OK) {
        double sum = 0.0;
        for (int k = 0; k < d; k++)
            sum += sqrt(fmax(lam[k], 0.0));
        *out = sum;
    }
done:
    free(v);
    return st;
}

md_status md_frechet(const md_gauss *a, const md_gauss *b, double *out)
{
    MD_ASSERT(a && b && out);
    *out = NAN;
    if (!gauss_ok(a, 'a') || !gauss_ok(b, 'b'))
        return MD_ERR_INVALID;
    const int d = a->d;
    if (b->d != d) {
        md_log(MD_LOG_ERROR, "Fréchet distance: feature sizes differ (%d and %d)", d, b->d);
        return MD_ERR_INVALID;
    }
    double diff = 0.0, tr = 0.0, trs;
    for (int i = 0; i < d; i++) {
        const double e = a->mu[i] - b->mu[i];
        diff += e * e;
        tr += a->cov[(size_t)i * d + i] + b->cov[(size_t)i * d + i];
    }
    md_status st = trace_sqrt(a->cov, b->cov, d, &trs);
    if (st != MD_OK)
        return st;
    /* A squared distance: roundoff may take it a hair below 0. */
    *out = fmax(diff + tr - 2.0 * trs, 0.0);
    return MD_OK;
}

md_status md_frechet_distance(const float *a, int64_t na, const float *b, int64_t nb, int d, double *out)
{
    MD_ASSERT(out);
    *out = NAN;
    md_gauss ga, gb;
    md_status st = md_gauss_fit(a, na, d, &ga);
    if (st != MD_OK)
        return st;
    st = md_gauss_fit(b, nb, d, &gb);
    if (st == MD_OK)
        st = md_frechet(&ga, &gb, out);
    md_gauss_free(&ga);
    md_gauss_free(&gb);
    return st;
}

/* ---- any-to-any matrix --------------------------------------------------- */

#define COL_W 8 /* display columns per matrix cell */

/* Writes s right-aligned in w display columns (s may hold UTF-8). */
static void put_right(FILE *f, const char *s, int w)
{
    int cols = 0;
    for (const char *c = s; *c; c++)
        cols += ((unsigned char)*c & 0xC0) != 0x80;
    fprintf(f, "%*s%s", MD_MAX(w - cols, 0), "", s);
}

/* v formatted with fmt (a percentage when pct), or "—" for NaN. */
static const char *fmt_val(char *buf, size_t size, double v, const char *fmt, bool pct)
{
    if (isnan(v))
        return "—";
    snprintf(buf, size, fmt, pct ? 100.0 * v : v);
    if (pct)
        strncat(buf, "%", size - strlen(buf) - 1);
    return buf;
}

void md_eval_matrix_print(FILE *f, const md_eval_matrix *m)
{
    MD_ASSERT(f && m);
    char b1[32], b2[32], b3[32], b4[32], b5[32];
    fprintf(f, "digit accuracy, %% (rows: input, columns: output)\n");
    put_right(f, "in \\ out", 8);
    for (int o = 0; o < MD_MODALITIES; o++)
        put_right(f, md_modality_names[o], COL_W);
    fputc('\n', f);
    for (int i = 0; i < MD_MODALITIES; i++) {
        put_right(f, md_modality_names[i], 8);
        for (int o = 0; o < MD_MODALITIES; o++) {
            const md_eval_cell *c = &m->cell[i][o];
            put_right(f, c->present ? fmt_val(b1, sizeof b1, 100.0 * c->digit_acc, "%.1f", false) : "—", COL_W);
        }
        fputc('\n', f);
    }
    for (int i = 0; i < MD_MODALITIES; i++)
        for (int o = 0; o < MD_MODALITIES; o++) {
            const md_eval_cell *c = &m->cell[i][o];
            if (!c->present)
                continue;
            const int glen = (int)strnlen(c->generator, sizeof c->generator);
            fprintf(f, "%s → %s: n=%lld, digit %s, attributes %s, diversity %s, FD %s (floor %s), generator %.*s\n",
                    md_modality_names[i], md_modality_names[o], (long long)c->n,
                    fmt_val(b1, sizeof b1, c->digit_acc, "%.1f", true),
                    fmt_val(b2, sizeof b2, c->attr_acc, "%.1f", true),
                    fmt_val(b3, sizeof b3, c->diversity, "%.3f", false), fmt_val(b4, sizeof b4, c->fd, "%.4g", false),
                    fmt_val(b5, sizeof b5, c->fd_floor, "%.4g", false), glen ? glen : (int)strlen("—"),
                    glen ? c->generator : "—");
        }
    for (int k = 0; k < 2 * MD_MODALITIES; k++) {
        const int i = k % MD_MODALITIES;
        const md_eval_cell *c = k < MD_MODALITIES ? &m->alt_image[i] : &m->alt_video[i];
        if (!c->present)
            continue;
        const int glen = (int)strnlen(c->generator, sizeof c->generator);
        fprintf(f, "%s → %s (second path): n=%lld, digit %s, attributes %s, FD %s (floor %s), generator %.*s\n",
                md_modality_names[i], k < MD_MODALITIES ? "image" : "video", (long long)c->n,
                fmt_val(b1, sizeof b1, c->digit_acc, "%.1f", true),
                fmt_val(b2, sizeof b2, c->attr_acc, "%.1f", true), fmt_val(b4, sizeof b4, c->fd, "%.4g", false),
                fmt_val(b5, sizeof b5, c->fd_floor, "%.4g", false), glen, c->generator);
    }
    for (int i = 0; i < MD_MODALITIES; i++)
        if (m->cell[i][2].present && m->cell[i][3].present && !isnan(m->av_agree[i]))
            fprintf(f, "%s → video+audio: the clip says the digit the video shows in %.1f%%\n", md_modality_names[i],
                    100 * m->av_agree[i]);
}

/* Writes len bytes to path atomically: path.tmp, fsync, rename, then a
 * best-effort fsync of the folder. Errors name the path. */

void md_eval_matrix_json(md_json_buf *b, const md_eval_matrix *m)
{
    md_json_buf_begin_object(b);
    for (int side = 0; side < 2; side++) {
        md_json_buf_key(b, side ? "cols" : "rows");
        md_json_buf_begin_array(b);
        for (int i = 0; i < MD_MODALITIES; i++)
            md_json_buf_str(b, md_modality_names[i]);
        md_json_buf_end_array(b);
    }
    md_json_buf_key(b, "cells");
    md_json_buf_begin_array(b);
    for (int i = 0; i < MD_MODALITIES; i++) {
        md_json_buf_begin_array(b);
        for (int o = 0; o < MD_MODALITIES; o++) {
            const md_eval_cell *c = &m->cell[i][o];
            if (!c->present) {
                md_json_buf_null(b);
                continue;
            }
            md_json_buf_begin_object(b);
            md_json_buf_key(b, "n");
            md_json_buf_int(b, c->n);
            const char *const keys[] = {"digit_acc", "attr_acc", "diversity", "fd", "fd_floor"};
            const double vals[] = {c->digit_acc, c->attr_acc, c->diversity, c->fd, c->fd_floor};
            for (int k = 0; k < 5; k++) {
                md_json_buf_key(b, keys[k]);
                md_json_buf_num(b, vals[k]); /* NaN → null */
            }
            md_json_buf_key(b, "generator");
            md_json_buf_strn(b, c->generator, strnlen(c->generator, sizeof c->generator));
            md_json_buf_end_object(b);
        }
        md_json_buf_end_array(b);
    }
    md_json_buf_end_array(b);
    md_json_buf_key(b, "video_audio_agreement");   /* per input row; null where not measured */
    md_json_buf_begin_array(b);
    for (int i = 0; i < MD_MODALITIES; i++) {
        bool have = m->cell[i][2].present && m->cell[i][3].present;
        md_json_buf_num(b, have ? m->av_agree[i] : NAN);
    }
    md_json_buf_end_array(b);
    md_json_buf_end_object(b);
}

md_status md_eval_matrix_write_json(const char *path, const md_eval_matrix *m)
{
    MD_ASSERT(path && m);
    md_json_buf b;
    md_json_buf_init(&b);
    md_eval_matrix_json(&b, m);
    md_json_buf_raw(&b, "\n", 1);
    size_t len;
    char *text = md_json_buf_finish(&b, &len);
    if (!text) {
        md_log(MD_LOG_ERROR, "%s: out of memory building the evaluation JSON", path);
        return MD_ERR_ALLOC;
    }
    md_status st = md_write_file_atomic(path, text, len);
    free(text);
    return st;
}
