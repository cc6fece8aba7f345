/* test_metrics.c — attribute scores, diversity, the symmetric eigensolver,
 * Gaussian fits, Fréchet distances and the evaluation matrix's outputs.
 *
 *   test_metrics                   unit checks; needs nothing outside
 *   test_metrics --oracle [SCRIPT] Fréchet distances against the numpy oracle
 *                                  (default tests/parity/metrics_oracle.py,
 *                                  or $MEDLEY_METRICS_ORACLE); python is
 *                                  $MEDLEY_PYTHON or /usr/bin/python3; exits
 *                                  77 (skipped) when python or numpy is missing
 *   test_metrics --bench           times the fit, the eigensolver and the
 *                                  distance at d = 128 and 512
 *
 * Temporary files go to $MEDLEY_TEST_TMP (default /tmp) and are removed.
 * Prints one line per check; exits 0 only if every check passed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "json.h"
#include "metrics.h"
#include "rng.h"

#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

extern char **environ;

/* Expected errors are shown indented, so the log reads as part of the test. */
static void quiet_log(md_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level >= MD_LOG_WARN)
        printf("       (logged) %s\n", msg);
}

static const char *tmp_dir(void)
{
    const char *d = getenv("MEDLEY_TEST_TMP");
    if (!d || !*d)
        return "/tmp";
    if (mkdir(d, 0755) != 0 && errno != EEXIST)
        return "/tmp";
    return d;
}

/* ---- fixtures -------------------------------------------------------------- */

static double rel_err(double got, double want)
{
    return fabs(got - want) / fmax(fabs(want), 1e-300);
}

/* Random symmetric d×d with entries ~N(0, 1). */
static void rand_sym(double *a, int d, md_rng *r)
{
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++)
            a[i * d + j] = a[j * d + i] = md_rng_normal(r);
}

/* a = B B^T / d + eps I, B ~N(0, 1) d×rank: symmetric positive (semi)definite. */
static void rand_psd(double *a, int d, int rank, double eps, md_rng *r)
{
    double *b = malloc(sizeof(double) * d * rank);
    for (int i = 0; i < d * rank; i++)
        b[i] = md_rng_normal(r);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0.0;
            for (int k = 0; k < rank; k++)
                s += b[i * rank + k] * b[j * rank + k];
            a[i * d + j] = s / d + (i == j ? eps : 0.0);
        }
    free(b);
}

/* n correlated samples: x = mu + z L, z ~N(0, 1), L ~N(0, scale^2/d), d×d. */
static float *rand_features(int64_t n, int d, double shift, double scale, uint64_t seed)
{
    md_rng r;
    md_rng_init(&r, seed);
    double *l = malloc(sizeof(double) * d * d), *z = malloc(sizeof(double) * d), *mu = malloc(sizeof(double) * d);
    float *x = malloc(sizeof(float) * (size_t)n * d);
    for (int i = 0; i < d * d; i++)
        l[i] = md_rng_normal(&r) * scale / sqrt(d);
    for (int j = 0; j < d; j++)
        mu[j] = shift * md_rng_normal(&r);
    for (int64_t s = 0; s < n; s++) {
        for (int k = 0; k < d; k++)
            z[k] = md_rng_normal(&r);
        for (int j = 0; j < d; j++) {
            double v = mu[j];
            for (int k = 0; k < d; k++)
                v += z[k] * l[k * d + j];
            x[s * d + j] = (float)v;
        }
    }
    free(l);
    free(z);
    free(mu);
    return x;
}

/* Checks vals/vecs of a: ascending, V^T V = I, A = V diag V^T. */
static void check_decomposition(const char *what, const double *a, int d, const double *vals, const double *v,
                                double tol)
{
    double amax = 0.0, rec = 0.0, orth = 0.0;
    bool asc = true;
    for (int i = 0; i < d * d; i++)
        amax = fmax(amax, fabs(a[i]));
    for (int j = 1; j < d; j++)
        asc &= vals[j - 1] <= vals[j];
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0.0, o = 0.0;
            for (int k = 0; k < d; k++) {
                s += v[i * d + k] * vals[k] * v[j * d + k];
                o += v[k * d + i] * v[k * d + j];
            }
            rec = fmax(rec, fabs(s - a[i * d + j]));
            orth = fmax(orth, fabs(o - (i == j)));
        }
    CHECK(asc, "eigen %s: eigenvalues ascending", what);
    CHECK(rec <= tol * fmax(amax, 1.0), "eigen %s: |A - V diag V^T| = %.2e (max |A| %.3g)", what, rec, amax);
    CHECK(orth <= 1e-12, "eigen %s: |V^T V - I| = %.2e", what, orth);
}

/* ---- eigensolver ----------------------------------------------------------- */

static void test_eigen(void)
{
    md_rng r;
    md_rng_init(&r, 11);

    { /* diagonal: eigenvalues sorted, vectors unit axes */
        const double dg[5] = {3, -1, 2, 0, 5}, want[5] = {-1, 0, 2, 3, 5};
        const int axis[5] = {1, 3, 2, 0, 4};
        double a[25] = {0}, vals[5], v[25];
        for (int i = 0; i < 5; i++)
            a[i * 5 + i] = dg[i];
        md_status st = md_sym_eigen(a, 5, vals, v);
        bool ok = st == MD_OK;
        for (int j = 0; j < 5; j++)
            ok = ok && vals[j] == want[j] && fabs(v[axis[j] * 5 + j]) == 1.0;
        CHECK(ok, "eigen diagonal 5×5: exact eigenvalues -1 0 2 3 5 and axis vectors");
    }
    { /* 2×2 analytic */
        const double a[4] = {2, 1, 1, 3};
        double vals[2], v[4];
        md_status st = md_sym_eigen(a, 2, vals, v);
        const double lo = 2.5 - sqrt(1.25), hi = 2.5 + sqrt(1.25);
        CHECK(st == MD_OK && fabs(vals[0] - lo) < 1e-15 && fabs(vals[1] - hi) < 1e-15,
              "eigen [[2,1],[1,3]]: %.17g %.17g (want 2.5 -/+ sqrt(1.25))", vals[0], vals[1]);
        double res = 0.0;
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < 2; i++)
                res = fmax(res, fabs(a[i * 2] * v[j] + a[i * 2 + 1] * v[2 + j] - vals[j] * v[i * 2 + j]));
        CHECK(res < 1e-15, "eigen [[2,1],[1,3]]: |A v - lambda v| = %.2e", res);
        const double b[4] = {0, 1, 1, 0};
        st = md_sym_eigen(b, 2, vals, NULL);
        CHECK(st == MD_OK && fabs(vals[0] + 1.0) < 1e-15 && fabs(vals[1] - 1.0) < 1e-15, "eigen [[0,1],[1,0]]: %.17g %.17g, values only", vals[0],
              vals[1]);
    }
    { /* random matrices of several sizes, odd and even */
        const int sizes[] = {1, 2, 3, 17, 64, 129};
        for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
            const int d = sizes[t];
            double *a = malloc(sizeof(double) * d * d), *v = malloc(sizeof(double) * d * d);
            double *vals = malloc(sizeof(double) * d), *vals2 = malloc(sizeof(double) * d);
            char what[64];
            rand_psd(a, d, d, 0.1, &r);
            md_status st = md_sym_eigen(a, d, vals, v);
            snprintf(what, sizeof what, "random SPD d=%d", d);
            CHECK(st == MD_OK, "eigen %s: converged", what);
            check_decomposition(what, a, d, vals, v, 1e-9);
            st = md_sym_eigen(a, d, vals2, NULL);
            CHECK(st == MD_OK && memcmp(vals, vals2, sizeof(double) * d) == 0,
                  "eigen %s: values alone are bit-identical to values with vectors", what);
            rand_sym(a, d, &r);
            st = md_sym_eigen(a, d, vals, v);
            snprintf(what, sizeof what, "random indefinite d=%d", d);
            CHECK(st == MD_OK, "eigen %s: converged", what);
            check_decomposition(what, a, d, vals, v, 1e-12);
            free(a);
            free(v);
            free(vals);
            free(vals2);
        }
    }
    { /* extreme scales: thresholds must be relative */
        const int d = 24;
        double a[24 * 24], vals[24], v[24 * 24], ref[24];
        rand_psd(a, d, d, 0.1, &r);
        md_sym_eigen(a, d, ref, NULL);
        const double scales[2] = {1e-150, 1e150};
        for (int t = 0; t < 2; t++) {
            double as[24 * 24], err = 0.0;
            for (int i = 0; i < d * d; i++)
                as[i] = a[i] * scales[t];
            md_status st = md_sym_eigen(as, d, vals, v);
            for (int j = 0; j < d; j++)
                err = fmax(err, rel_err(vals[j] / scales[t], ref[j]));
            CHECK(st == MD_OK && err < 1e-13, "eigen d=24 scaled by %g: eigenvalues scale (rel %.1e)", scales[t], err);
        }
    }
    { /* rank-deficient PSD (a covariance from fewer samples than features) */
        const int d = 40, rank = 8;
        double *a = malloc(sizeof(double) * d * d), *v = malloc(sizeof(double) * d * d), vals[40];
        rand_psd(a, d, rank, 0.0, &r);
        md_status st = md_sym_eigen(a, d, vals, v);
        double small = 0.0;
        for (int j = 0; j < d - rank; j++)
            small = fmax(small, fabs(vals[j]));
        CHECK(st == MD_OK && small < 1e-14 * vals[d - 1] && vals[d - rank] > 1e-3,
              "eigen rank-8 PSD d=40: 32 zero eigenvalues (|max| %.2e), 8 positive", small);
        check_decomposition("rank-8 PSD d=40", a, d, vals, v, 1e-12);
        free(a);
        free(v);
    }
    { /* repeated eigenvalues: Q diag(1,1,1,2,2,7) Q^T */
        const int d = 6;
        const double lam[6] = {1, 1, 1, 2, 2, 7};
        double s[36], q[36], vals[6], a[36];
        rand_sym(s, d, &r);
        md_sym_eigen(s, d, vals, q);
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) {
                a[i * d + j] = 0.0;
                for (int k = 0; k < d; k++)
                    a[i * d + j] += q[i * d + k] * lam[k] * q[j * d + k];
            }
        md_status st = md_sym_eigen(a, d, vals, s);
        double err = 0.0;
        for (int j = 0; j < d; j++)
            err = fmax(err, fabs(vals[j] - lam[j]));
        CHECK(st == MD_OK && err < 1e-14, "eigen repeated eigenvalues 1,1,1,2,2,7: max error %.2e", err);
        check_decomposition("repeated eigenvalues", a, d, vals, s, 1e-13);
    }
    { /* argument checks */
        double a[4] = {1, 0, 0, NAN}, vals[2];
        CHECK(md_sym_eigen(a, 0, vals, NULL) == MD_ERR_INVALID, "eigen d=0 -> MD_ERR_INVALID");
        CHECK(md_sym_eigen(a, 2, vals, NULL) == MD_ERR_INVALID && strstr(md_last_error(), "(1, 1)"),
              "eigen NaN entry -> MD_ERR_INVALID naming it (\"%s\")", md_last_error());
    }
}

/* ---- Gaussian fit and Fréchet distance -------------------------------------- */

static void test_fit(void)
{
    const float x[6] = {1, 2, 3, 6, 5, 4}; /* 3 samples of 2 features */
    md_gauss g;
    md_status st = md_gauss_fit(x, 3, 2, &g);
    CHECK(st == MD_OK && g.d == 2 && g.n == 3 && g.mu[0] == 3 && g.mu[1] == 4 && g.cov[0] == 4 && g.cov[1] == 2 &&
              g.cov[2] == 2 && g.cov[3] == 4,
          "fit 3×2: mean (3, 4), covariance [[4, 2], [2, 4]] with n - 1");
    md_gauss_free(&g);
    CHECK(g.mu == NULL && g.cov == NULL && g.d == 0, "fit: md_gauss_free zeroes the struct");

    /* Large offset, small spread: the two-pass variance keeps its digits. */
    float y[4] = {10000.5f, 10001.5f, 10002.5f, 10003.5f};
    st = md_gauss_fit(y, 4, 1, &g);
    CHECK(st == MD_OK && g.mu[0] == 10002.0 && fabs(g.cov[0] - 5.0 / 3.0) < 1e-15,
          "fit offset 1e4: mean %.17g, variance %.17g (want 5/3)", st == MD_OK ? g.mu[0] : NAN,
          st == MD_OK ? g.cov[0] : NAN);
    md_gauss_free(&g);

    CHECK(md_gauss_fit(x, 1, 2, &g) == MD_ERR_INVALID && !g.mu, "fit n=1 -> MD_ERR_INVALID, struct zeroed");
    CHECK(md_gauss_fit(x, 3, 0, &g) == MD_ERR_INVALID, "fit d=0 -> MD_ERR_INVALID");
    float bad[6] = {1, 2, 3, INFINITY, 5, 4};
    CHECK(md_gauss_fit(bad, 3, 2, &g) == MD_ERR_INVALID && strstr(md_last_error(), "feature 1 of sample 1"),
          "fit with inf -> MD_ERR_INVALID naming it (\"%s\")", md_last_error());
    bad[3] = NAN;
    CHECK(md_gauss_fit(bad, 3, 2, &g) == MD_ERR_INVALID && strstr(md_last_error(), "NaN"),
          "fit with NaN -> MD_ERR_INVALID");
}

/* Hand-built statistics: Ca = Q diag(la) Q^T, Cb = Q diag(lb) Q^T commute,
 * so FD = |mu_a - mu_b|^2 + sum (sqrt la - sqrt lb)^2. */
static void test_frechet_commuting(int d, bool singular)
{
    md_rng r;
    md_rng_init(&r, 500 + (uint64_t)d);
    double *s = malloc(sizeof(double) * d * d), *q = malloc(sizeof(double) * d * d), *w = malloc(sizeof(double) * d);
    rand_sym(s, d, &r);
    md_sym_eigen(s, d, w, q);
    md_gauss a = {d, 100, malloc(sizeof(double) * d), malloc(sizeof(double) * d * d)};
    md_gauss b = {d, 100, malloc(sizeof(double) * d), malloc(sizeof(double) * d * d)};
    double *la = malloc(sizeof(double) * d), *lb = malloc(sizeof(double) * d), want = 0.0;
    for (int k = 0; k < d; k++) {
        la[k] = singular && k % 3 == 0 ? 0.0 : 0.05 + 2.0 * md_rng_uniform(&r);
        lb[k] = 0.05 + 2.0 * md_rng_uniform(&r);
        a.mu[k] = md_rng_normal(&r);
        b.mu[k] = md_rng_normal(&r);
        want += (a.mu[k] - b.mu[k]) * (a.mu[k] - b.mu[k]) + (sqrt(la[k]) - sqrt(lb[k])) * (sqrt(la[k]) - sqrt(lb[k]));
    }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double sa = 0.0, sb = 0.0;
            for (int k = 0; k < d; k++) {
                sa += q[i * d + k] * la[k] * q[j * d + k];
                sb += q[i * d + k] * lb[k] * q[j * d + k];
            }
            a.cov[i * d + j] = sa;
            b.cov[i * d + j] = sb;
        }
    double fd = NAN, fd2 = NAN;
    md_status st = md_frechet(&a, &b, &fd);
    md_status st2 = md_frechet(&b, &a, &fd2);
    /* A zero eigenvalue of Ca puts an eigenvalue of order eps |C|^2 inside
     * the square root: sqrt(eps)-sized error, as for any sqrtm. */
    const double tol = singular ? 1e-6 : 1e-10;
    CHECK(st == MD_OK && rel_err(fd, want) < tol, "FD commuting d=%d%s: %.12g, analytic %.12g (rel %.1e)", d,
          singular ? " with Ca singular" : "", fd, want, rel_err(fd, want));
    CHECK(st2 == MD_OK && rel_err(fd2, fd) < tol, "FD commuting d=%d%s: symmetric (rel %.1e)", d,
          singular ? " with Ca singular" : "", rel_err(fd2, fd));
    md_gauss_free(&a);
    md_gauss_free(&b);
    free(s);
    free(q);
    free(w);
    free(la);
    free(lb);
}

static void test_frechet(void)
{
    /* identical sets: exactly the same statistics on both sides */
    const int dims[2] = {16, 64};
    for (int t = 0; t < 2; t++) {
        const int d = dims[t];
        float *x = rand_features(6 * d, d, 1.0, 1.0, 70 + (uint64_t)t);
        md_gauss g;
        double fd = NAN, tr = 0.0;
        md_status st = md_gauss_fit(x, 6 * d, d, &g);
        for (int i = 0; st == MD_OK && i < d; i++)
            tr += g.cov[i * d + i];
        st = st == MD_OK ? md_frechet(&g, &g, &fd) : st;
        CHECK(st == MD_OK && fd <= 1e-9 * tr, "FD identical sets d=%d: %.3g (<= 1e-9 × trace %.3g)", d, fd, tr);
        md_gauss_free(&g);
        free(x);
    }

    /* 1-D: FD = (m1 - m2)^2 + (s1 - s2)^2 of the fitted statistics */
    float *a = rand_features(200, 1, 1.0, 2.0, 80), *b = rand_features(150, 1, -0.5, 0.5, 81);
    md_gauss ga, gb;
    double fd = NAN, fd2 = NAN;
    md_gauss_fit(a, 200, 1, &ga);
    md_gauss_fit(b, 150, 1, &gb);
    md_status st = md_frechet(&ga, &gb, &fd);
    const double dm = ga.mu[0] - gb.mu[0], ds = sqrt(ga.cov[0]) - sqrt(gb.cov[0]), want = dm * dm + ds * ds;
    CHECK(st == MD_OK && rel_err(fd, want) < 1e-13, "FD 1-D Gaussians: %.15g, analytic %.15g", fd, want);
    st = md_frechet_distance(a, 200, b, 150, 1, &fd2);
    CHECK(st == MD_OK && fd2 == fd, "FD from features equals fit + md_frechet");
    md_gauss_free(&ga);
    md_gauss_free(&gb);
    free(a);
    free(b);

    /* FD(s a, s b) = s^2 FD(a, b) (up to the features' float rounding) */
    {
        const int d = 20;
        const int64_t n = 200;
        float *fa = rand_features(n, d, 0.5, 1.0, 86), *fb = rand_features(n, d, 0.5, 1.3, 87);
        float *sa = malloc(sizeof(float) * n * d), *sb = malloc(sizeof(float) * n * d);
        double ref = NAN;
        md_frechet_distance(fa, n, fb, n, d, &ref);
        const double scales[2] = {1e-15, 1e15};
        for (int t = 0; t < 2; t++) {
            for (int64_t i = 0; i < n * d; i++) {
                sa[i] = (float)(fa[i] * scales[t]);
                sb[i] = (float)(fb[i] * scales[t]);
            }
            double fs = NAN;
            md_status st2 = md_frechet_distance(sa, n, sb, n, d, &fs);
            const double e = rel_err(fs / (scales[t] * scales[t]), ref);
            CHECK(st2 == MD_OK && e < 1e-5, "FD d=20 of features scaled by %g: scales by its square (rel %.1e)",
                  scales[t], e);
        }
        free(fa);
        free(fb);
        free(sa);
        free(sb);
    }

    test_frechet_commuting(48, false);
    test_frechet_commuting(33, true);

    /* Large enough for every parallel path: the same bits for 1 and 3 threads. */
    {
        const int d = 256;
        const int64_t n = 600;
        float *fa = rand_features(n, d, 0.5, 1.0, 84), *fb = rand_features(n, d, 0.5, 1.2, 85);
        md_gauss g1, g3, h;
        double fd1 = NAN, fd3 = NAN;
        const int saved = md_threads_get();
        md_threads_set(1);
        md_gauss_fit(fa, n, d, &g1);
        md_gauss_fit(fb, n, d, &h);
        md_frechet(&g1, &h, &fd1);
        md_threads_set(3);
        md_gauss_fit(fa, n, d, &g3);
        md_frechet(&g3, &h, &fd3);
        md_threads_set(saved);
        CHECK(memcmp(g1.cov, g3.cov, sizeof(double) * d * d) == 0 && fd1 == fd3 && fd1 > 0,
              "fit and FD d=256: bit-identical with 1 and 3 threads (FD %.12g)", fd1);
        md_gauss_free(&g1);
        md_gauss_free(&g3);
        md_gauss_free(&h);
        free(fa);
        free(fb);
    }

    /* errors */
    float *x3 = rand_features(10, 3, 0.0, 1.0, 82), *x4 = rand_features(10, 4, 0.0, 1.0, 83);
    md_gauss g3, g4;
    md_gauss_fit(x3, 10, 3, &g3);
    md_gauss_fit(x4, 10, 4, &g4);
    st = md_frechet(&g3, &g4, &fd);
    CHECK(st == MD_ERR_INVALID && isnan(fd), "FD of d=3 vs d=4 -> MD_ERR_INVALID (\"%s\")", md_last_error());
    g3.cov[4] = NAN;
    CHECK(md_frechet(&g3, &g3, &fd) == MD_ERR_INVALID, "FD with a NaN covariance -> MD_ERR_INVALID");
    x3[7] = NAN;
    CHECK(md_frechet_distance(x3, 10, x3, 10, 3, &fd) == MD_ERR_INVALID && isnan(fd),
          "FD of features holding NaN -> MD_ERR_INVALID, *out NaN");
    md_gauss_free(&g3);
    md_gauss_free(&g4);
    free(x3);
    free(x4);
}

/* ---- diversity and attributes ----------------------------------------------- */

static void test_diversity(void)
{
    const int k = 8;
    const int64_t n = 20000;
    float *x = malloc(sizeof(float) * k * n);
    md_rng r;
    md_rng_init(&r, 5);
    for (int64_t t = 0; t < n; t++)
        x[t] = md_rng_normal(&r);
    for (int i = 1; i < k; i++)
        memcpy(x + i * n, x, sizeof(float) * n);
    CHECK(md_diversity(x, k, n) == 0.0, "diversity of identical outputs is exactly 0");
    CHECK(md_distinct_share(x, k, n) == 1.0 / k, "distinct share of identical outputs: 1/k");
    for (int64_t t = 0; t < k * n; t++)
        x[t] = 0.25f;
    CHECK(md_diversity(x, k, n) == 0.0, "diversity of constant outputs is exactly 0");

    for (int64_t t = 0; t < k * n; t++)
        x[t] = md_rng_normal(&r);
    const double div = md_diversity(x, k, n);
    CHECK(div > 1.0 && fabs(div - sqrt(2.0)) < 0.02, "diversity of independent outputs: %.4f (about sqrt 2)", div);
    CHECK(md_distinct_share(x, k, n) == 1.0, "distinct share of independent outputs: 1");
    for (int64_t t = 0; t < k * n; t++)
        x[t] = 4.0f * x[t] + 3.0f;
    const double div2 = md_diversity(x, k, n);
    CHECK(rel_err(div2, div) < 1e-5, "diversity is scale and shift invariant: %.6f vs %.6f", div2, div);
    /* [a, b, a, c] with a half-identical pair in between */
    memcpy(x + 2 * n, x, sizeof(float) * n);
    CHECK(md_distinct_share(x, 4, n) == 0.75, "distinct share of [a, b, a, c]: 0.75");
    const double half = md_diversity(x, 3, n); /* pairs: ab, aa, ba */
    CHECK(fabs(half - div2 * 2.0 / 3.0) < 0.03, "diversity of [a, b, a]: %.4f (two of three pairs differ: %.4f)", half,
          div2 * 2.0 / 3.0);
    CHECK(isnan(md_diversity(x, 1, n)) && isnan(md_distinct_share(x, 0, n)), "k < 2 diversity, k < 1 share: NaN");
    free(x);
}

static void test_attr(void)
{
    md_attr_score s = {0};
    int want[MD_ATTR_COUNT], got[MD_ATTR_COUNT];
    for (int a = 0; a < MD_ATTR_COUNT; a++)
        want[a] = got[a] = -1;
    /* 1: digit right, ink right */
    want[MD_ATTR_DIGIT] = got[MD_ATTR_DIGIT] = 3;
    want[MD_ATTR_INK] = got[MD_ATTR_INK] = 2;
    md_attr_score_add(&s, want, got);
    /* 2: digit wrong, ink right, size wrong */
    got[MD_ATTR_DIGIT] = 5;
    want[MD_ATTR_SIZE] = 1;
    got[MD_ATTR_SIZE] = 2;
    md_attr_score_add(&s, want, got);
    /* 3: nothing asked (the judge's readings do not count) */
    int none[MD_ATTR_COUNT];
    for (int a = 0; a < MD_ATTR_COUNT; a++)
        none[a] = -1;
    md_attr_score_add(&s, none, got);
    CHECK(s.samples == 3 && s.all_right == 2, "attributes: 3 samples, 2 with every asked attribute right");
    CHECK(s.asked[MD_ATTR_DIGIT] == 2 && s.right[MD_ATTR_DIGIT] == 1 && md_attr_score_acc(&s, MD_ATTR_DIGIT) == 0.5,
          "attributes: digit 1 of 2");
    CHECK(md_attr_score_acc(&s, MD_ATTR_INK) == 1.0 && md_attr_score_acc(&s, MD_ATTR_SIZE) == 0.0,
          "attributes: ink 2 of 2, size 0 of 1");
    CHECK(isnan(md_attr_score_acc(&s, MD_ATTR_SPEAKER)) && s.asked[MD_ATTR_SPEAKER] == 0,
          "attributes: never asked -> NaN");
    CHECK(md_attr_score_attrs(&s) == 2.0 / 3.0, "attributes: stated attributes 2 of 3 (digit left out)");
    md_attr_score e = {0};
    CHECK(isnan(md_attr_score_attrs(&e)), "attributes: none asked -> NaN");
}

/* ---- evaluation matrix -------------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void test_matrix(void)
{
    md_eval_matrix m;
    memset(&m, 0, sizeof m);
    md_eval_cell *iv = &m.cell[1][3], *ti = &m.cell[0][1];
    *iv = (md_eval_cell){true, 1000, 0.973, 0.85, 0.812, 12.34, 1.2, "pixel-diffusion"};
    *ti = (md_eval_cell){true, 500, 0.5, NAN, NAN, NAN, NAN, "text2image"};

    char *text = NULL;
    size_t tlen = 0;
    FILE *mf = open_memstream(&text, &tlen);
    md_eval_matrix_print(mf, &m);
    fclose(mf);
    printf("%s", text);
    CHECK(strstr(text, "image → video: n=1000, digit 97.3%, attributes 85.0%, diversity 0.812, FD 12.34 (floor 1.2), "
                       "generator pixel-diffusion\n") != NULL,
          "print: the image → video line");
    CHECK(strstr(text, "text → image: n=500, digit 50.0%, attributes —, diversity —, FD — (floor —), generator "
                       "text2image\n") != NULL,
          "print: unmeasured figures as —");
    CHECK(strstr(text, "   image       —       —       —    97.3\n") != NULL, "print: the image row of the table");
    free(text);

    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/test_metrics_%d.json", tmp_dir(), (int)getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    md_status st = md_eval_matrix_write_json(path, &m);
    CHECK(st == MD_OK && access(tmp, F_OK) != 0, "json: written to %s, no .tmp left", path);
    size_t len = 0;
    char *js = read_file(path, &len);
    md_json_doc *doc = NULL;
    st = js ? md_json_parse(js, len, path, &doc) : MD_ERR_IO;
    CHECK(st == MD_OK, "json: parses back");
    const md_json *root = md_json_root(doc), *cells = md_json_get(root, "cells");
    const md_json *c13 = md_json_at(md_json_at(cells, 1), 3), *c01 = md_json_at(md_json_at(cells, 0), 1);
    double v = 0.0;
    int64_t n = 0;
    CHECK(md_json_len(md_json_get(root, "rows")) == 4 &&
              strcmp(md_json_str(md_json_at(md_json_get(root, "rows"), 2)), "audio") == 0 &&
              strcmp(md_json_str(md_json_at(md_json_get(root, "cols"), 3)), "video") == 0,
          "json: rows and cols name the modalities");
    CHECK(md_json_len(cells) == 4 && md_json_is_null(md_json_at(md_json_at(cells, 0), 0)) &&
              md_json_is_null(md_json_at(md_json_at(cells, 3), 3)),
          "json: absent cells are null");
    CHECK(md_json_int(md_json_get(c13, "n"), &n) && n == 1000 && md_json_num(md_json_get(c13, "digit_acc"), &v) &&
              v == 0.973 && md_json_num(md_json_get(c13, "fd"), &v) && v == 12.34 &&
              md_json_num(md_json_get(c13, "fd_floor"), &v) && v == 1.2 &&
              strcmp(md_json_str(md_json_get(c13, "generator")), "pixel-diffusion") == 0,
          "json: image → video figures read back exactly");
    CHECK(md_json_is_null(md_json_get(c01, "attr_acc")) && md_json_is_null(md_json_get(c01, "diversity")) &&
              md_json_is_null(md_json_get(c01, "fd")) && md_json_num(md_json_get(c01, "digit_acc"), &v) && v == 0.5,
          "json: NaN figures are null");
    md_json_free(doc);
    free(js);
    unlink(path);

    st = md_eval_matrix_write_json("/nonexistent-medley-dir/m.json", &m);
    CHECK(st == MD_ERR_IO && strstr(md_last_error(), "/nonexistent-medley-dir/m.json"),
          "json: unwritable folder -> MD_ERR_IO naming the path");
}

/* ---- oracle ------------------------------------------------------------------- */

/* Runs python script in out; returns its exit status, or 127 if it could
 * not be started. */
static int run_python(const char *script, const char *in, const char *out)
{
    const char *py = getenv("MEDLEY_PYTHON");
    if (!py || !*py)
        py = "/usr/bin/python3";
    char *argv[] = {(char *)py, (char *)script, (char *)in, (char *)out, NULL};
    pid_t pid;
    if (posix_spawnp(&pid, py, NULL, NULL, argv, environ) != 0)
        return 127;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 127;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Input: "MDFD", u32 version 1, i32 na, nb, d, then f32 a[na][d], b[nb][d]
 * (little-endian); output: one line "fd trace_a trace_b". */
static int oracle_case(const char *script, int64_t na, int64_t nb, int d, uint64_t seed)
{
    float *a = rand_features(na, d, 0.5, 1.0, seed), *b = rand_features(nb, d, 0.5, 1.3, seed + 1);
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/test_metrics_%d_%d.in", tmp_dir(), (int)getpid(), d);
    snprintf(out, sizeof out, "%s/test_metrics_%d_%d.out", tmp_dir(), (int)getpid(), d);
    FILE *f = fopen(in, "wb");
    const int32_t head[4] = {1, (int32_t)na, (int32_t)nb, d};
    bool ok = f && fwrite("MDFD", 1, 4, f) == 4 && fwrite(head, sizeof head, 1, f) == 1 &&
              fwrite(a, sizeof(float) * d, (size_t)na, f) == (size_t)na &&
              fwrite(b, sizeof(float) * d, (size_t)nb, f) == (size_t)nb;
    ok = f && fclose(f) == 0 && ok;
    CHECK(ok, "oracle: features written to %s", in);
    int rc = ok ? run_python(script, in, out) : 1;
    int skip = rc == 127 || rc == 77;
    if (!skip) {
        double want = NAN, tra = NAN, trb = NAN, fd = NAN;
        FILE *o = fopen(out, "r");
        bool got = rc == 0 && o && fscanf(o, "%lf %lf %lf", &want, &tra, &trb) == 3;
        if (o)
            fclose(o);
        CHECK(got, "oracle d=%d: python exited %d and wrote its answer", d, rc);
        md_status st = md_frechet_distance(a, na, b, nb, d, &fd);
        CHECK(st == MD_OK && rel_err(fd, want) <= 1e-6, "FD d=%d (n %lld, %lld%s): %.12g, numpy %.12g (rel %.1e)", d,
              (long long)na, (long long)nb, na <= d ? "; singular covariances" : "", fd, want, rel_err(fd, want));
    }
    unlink(in);
    unlink(out);
    free(a);
    free(b);
    return skip;
}

static int oracle_main(int argc, char **argv)
{
    const char *script = argc > 2 ? argv[2] : getenv("MEDLEY_METRICS_ORACLE");
    if (!script || !*script)
        script = "tests/parity/metrics_oracle.py";
    if (access(script, R_OK) != 0) {
        printf("FAIL oracle script %s not found: pass its path after --oracle\n", script);
        return 1;
    }
    struct {
        int64_t na, nb;
        int d;
    } cases[] = {{400, 300, 16}, {1000, 800, 64}, {40, 50, 64}, {100, 120, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (oracle_case(script, cases[i].na, cases[i].nb, cases[i].d, 900 + 10 * i)) {
            printf("skip: python or numpy is not available\n");
            return 77;
        }
    return check_done();
}

/* ---- bench ---------------------------------------------------------------- */

static int bench_main(void)
{
    const int dims[2] = {128, 512};
    printf("best of 5 runs, %d threads ($MEDLEY_THREADS):\n", md_threads_get());
    for (int t = 0; t < 2; t++) {
        const int d = dims[t];
        const int64_t n = 4 * d;
        float *a = rand_features(n, d, 0.5, 1.0, 40), *b = rand_features(n, d, 0.5, 1.3, 41);
        md_gauss ga, gb;
        double best_fit = 1e9, best_fd = 1e9, best_eig = 1e9, fd = NAN;
        double *vals = malloc(sizeof(double) * d), *vecs = malloc(sizeof(double) * d * d);
        md_gauss_fit(b, n, d, &gb);
        for (int rep = 0; rep < 5; rep++) {
            double s0 = md_time_now();
            md_gauss_fit(a, n, d, &ga);
            double s1 = md_time_now();
            md_frechet(&ga, &gb, &fd);
            double s2 = md_time_now();
            md_sym_eigen(ga.cov, d, vals, vecs);
            double s3 = md_time_now();
            best_fit = fmin(best_fit, s1 - s0);
            best_fd = fmin(best_fd, s2 - s1);
            best_eig = fmin(best_eig, s3 - s2);
            if (rep < 4)
                md_gauss_free(&ga);
        }
        printf("d=%d: md_gauss_fit (n=%lld) %.1f ms, md_sym_eigen with vectors %.1f ms, md_frechet %.1f ms (FD %.6g)\n",
               d, (long long)n, 1e3 * best_fit, 1e3 * best_eig, 1e3 * best_fd, fd);
        md_gauss_free(&ga);
        md_gauss_free(&gb);
        free(vals);
        free(vecs);
        free(a);
        free(b);
    }
    return 0;
}

int main(int argc, char **argv)
{
    md_log_set_callback(quiet_log, NULL);
    if (argc > 1 && strcmp(argv[1], "--oracle") == 0)
        return oracle_main(argc, argv);
    if (argc > 1 && strcmp(argv[1], "--bench") == 0)
        return bench_main();
    test_attr();
    test_diversity();
    test_eigen();
    test_fit();
    test_frechet();
    test_matrix();
    return check_done();
}
