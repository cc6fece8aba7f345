/* test_optim.c — AdamW, gradient clipping, schedule, EMA, checkpoints.
 *
 * Prints one line per check; exits 0 only if every check passed. Bit-exact
 * checks use memcmp: the optimizer promises identical results for any thread
 * count and across a save/load boundary. */
#include "checkpoint.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include "tensor.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_checks, g_failed;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s - ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    g_checks++;
    g_failed += !ok;
}

/* Expected errors are shown indented, so the log reads as part of the test. */
static void quiet_log(md_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level >= MD_LOG_WARN)
        printf("       (logged) %s\n", msg);
}

/* ---- fixtures -------------------------------------------------------------- */

/* ~26k values in five params, so the 8192-element chunks of the optimizer
 * cross parameter boundaries (decayed and non-decayed in one chunk). */
static md_paramset *make_params(uint64_t seed, bool extra, bool wrong_shape, bool drop_last)
{
    md_paramset *ps = md_paramset_new();
    md_param_add(ps, "enc.w", 2, (int64_t[]){37, wrong_shape ? 128 : 129});
    md_param_add(ps, "enc.b", 1, (int64_t[]){129});
    md_param_add(ps, "norm.g", 1, (int64_t[]){1});
    md_param_add(ps, "dec.w", 3, (int64_t[]){5, 7, 613});
    if (!drop_last)
        md_param_add(ps, "dec.b", 1, (int64_t[]){3});
    if (extra)
        md_param_add(ps, "extra.w", 2, (int64_t[]){4, 4});
    if (md_paramset_alloc(ps) != MD_OK)
        abort();
    for (int i = 0; i < md_paramset_count(ps); i++)
        md_init_normal(md_paramset_get(ps, i), seed + (uint64_t)i, 0.0f, 0.5f);
    return ps;
}

/* Deterministic synthetic gradient: a nonlinear function of the params plus
 * noise drawn from r (which advances r, so the RNG state matters on resume). */
static void synth_grads(md_paramset *ps, md_rng *r)
{
    md_paramset_zero_grad(ps);
    md_paramset_finish_grads(ps); /* all ready; we overwrite them below */
    const float *p = md_paramset_values(ps);
    float *g = md_paramset_grads(ps);
    for (int64_t i = 0; i < md_paramset_numel(ps); i++)
        g[i] = sinf(3.0f * p[i]) + 0.5f * p[i] * p[i] - 0.2f + 0.05f * md_rng_normal(r);
}

static void train(md_paramset *ps, md_adamw *o, md_ema *e, md_rng *r, int64_t from, int64_t to)
{
    for (int64_t s = from; s < to; s++) {
        synth_grads(ps, r);
        md_clip_grad_norm(ps, s % 2 ? 1e6f : 20.0f); /* clipped on even steps only */
        md_adamw_step(o, md_lr_warmup_cosine(s, 3, 20, 1e-2f, 1e-3f));
        if (e)
            md_ema_update(e);
    }
}

static bool same_floats(const float *a, const float *b, int64_t n)
{
    return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

/* ---- clip ------------------------------------------------------------------ */

static void test_clip(void)
{
    md_paramset *ps = md_paramset_new();
    md_tensor *a = md_param_add(ps, "a", 2, (int64_t[]){2, 2});
    md_tensor *b = md_param_add(ps, "b", 1, (int64_t[]){3});
    md_paramset_alloc(ps);
    md_paramset_finish_grads(ps);
    a->grad[0] = 3.0f; /* norm exactly 5 */
    b->grad[2] = -4.0f;
    float n = md_clip_grad_norm(ps, 10.0f);
    check(n == 5.0f && a->grad[0] == 3.0f && b->grad[2] == -4.0f,
          "clip: norm of (3,-4) is 5 (%.9g); under max_norm grads unchanged", (double)n);
    n = md_clip_grad_norm(ps, 1.0f);
    const float s = (float)(1.0 / (5.0 + 1e-6));
    check(n == 5.0f && a->grad[0] == 3.0f * s && b->grad[2] == -4.0f * s && a->grad[1] == 0.0f,
          "clip: over max_norm grads scaled by max/(norm+1e-6) exactly (%.9g, %.9g)",
          (double)a->grad[0], (double)b->grad[2]);
    n = md_clip_grad_norm(ps, 1.0f);
    check(fabsf(n - 1.0f) < 1e-6f, "clip: clipped grads have norm <= max_norm (%.9g)", (double)n);

    b->grad[0] = NAN;
    float before = a->grad[0];
    n = md_clip_grad_norm(ps, 1e-3f);
    check(isnan(n) && a->grad[0] == before, "clip: NaN norm returned, grads untouched");
    b->grad[0] = INFINITY;
    n = md_clip_grad_norm(ps, 1e-3f);
    check(isinf(n) && a->grad[0] == before, "clip: Inf norm returned, grads untouched");
    md_paramset_free(ps);

    /* Many chunks: against a serial double reference, and thread-invariant. */
    md_paramset *big = make_params(7, false, false, false);
    md_paramset_finish_grads(big);
    const int64_t nn = md_paramset_numel(big);
    float *g = md_paramset_grads(big);
    md_fill_normal(g, nn, 99, 0, 0.0f, 3.0f);
    float *copy = malloc(sizeof(float) * (size_t)nn);
    memcpy(copy, g, sizeof(float) * (size_t)nn);
    double ref = 0;
    for (int64_t i = 0; i < nn; i++)
        ref += (double)g[i] * (double)g[i];
    ref = sqrt(ref);
    md_threads_set(1);
    float n1 = md_clip_grad_norm(big, 1.0f);
    float *g1 = malloc(sizeof(float) * (size_t)nn);
    memcpy(g1, g, sizeof(float) * (size_t)nn);
    memcpy(g, copy, sizeof(float) * (size_t)nn);
    md_threads_set(2);
    float n2 = md_clip_grad_norm(big, 1.0f);
    check(fabs((double)n1 - ref) <= 1e-6 * ref, "clip: %lld-element norm %.9g matches serial double %.9g",
          (long long)nn, (double)n1, ref);
    check(n1 == n2 && same_floats(g1, g, nn), "clip: norm and clipped grads identical for 1 and 2 threads");
    free(copy);
    free(g1);
    md_paramset_free(big);
}

/* ---- schedule -------------------------------------------------------------- */

static void test_schedule(void)
{
    struct { int64_t step; double want; } pts[] = {
        {-5, 0.0}, {0, 0.0}, {5, 0.5}, {9, 0.9}, {10, 1.0},
        {35, 0.1 + 0.9 * 0.5 * (1.0 + cos(M_PI * 0.25))},
        {60, 0.55}, {109, 0.1 + 0.9 * 0.5 * (1.0 + cos(M_PI * 0.99))}, {110, 0.1}, {1000, 0.1},
    };
    for (size_t i = 0; i < sizeof pts / sizeof pts[0]; i++) {
        float lr = md_lr_warmup_cosine(pts[i].step, 10, 110, 1.0f, 0.1f);
        check(fabs((double)lr - pts[i].want) <= 1e-6, "schedule(warmup 10, total 110): step %lld -> %.7f (want %.7f)",
              (long long)pts[i].step, (double)lr, pts[i].want);
    }
    check(md_lr_warmup_cosine(0, 0, 100, 2.0f, 0.0f) == 2.0f, "schedule: no warmup starts at lr_max");
    check(md_lr_warmup_cosine(7, 5, 5, 2.0f, 0.5f) == 0.5f, "schedule: total <= warmup gives lr_min after warmup");
}

/* ---- EMA ------------------------------------------------------------------- */

static void test_ema(void)
{
    md_paramset *ps = make_params(3, false, false, false);
    const int64_t n = md_paramset_numel(ps);
    float *p = md_paramset_values(ps);
    float *p0 = malloc(sizeof(float) * (size_t)n);
    memcpy(p0, p, sizeof(float) * (size_t)n);
    md_ema e;
    check(md_ema_init(&e, ps, 0.9f) == MD_OK && same_floats(e.shadow, p0, n) && e.n == 0,
          "ema: init copies the live values");
    for (int64_t i = 0; i < n; i++)
        p[i] = 2.0f * p[i] + 1.0f;
    md_ema_update(&e);
    md_ema_update(&e);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double s = 0.9 * (double)p0[i] + 0.1 * (double)p[i];
        s = 0.9 * s + 0.1 * (double)p[i];
        worst = fmax(worst, fabs(s - (double)e.shadow[i]) / (1.0 + fabs(s)));
    }
    check(worst < 1e-6 && e.n == 2, "ema: two updates match d^2*p0 + (1-d^2)*p1 (max rel err %.2g)", worst);

    float *live = malloc(sizeof(float) * (size_t)n), *shadow = malloc(sizeof(float) * (size_t)n);
    memcpy(live, p, sizeof(float) * (size_t)n);
    memcpy(shadow, e.shadow, sizeof(float) * (size_t)n);
    md_ema_swap(&e);
    check(same_floats(p, shadow, n) && same_floats(e.shadow, live, n), "ema: swap exchanges live and shadow");
    md_ema_swap(&e);
    check(same_floats(p, live, n) && same_floats(e.shadow, shadow, n), "ema: second swap restores both");
    md_ema bad;
    check(md_ema_init(&bad, ps, 1.5f) == MD_ERR_INVALID, "ema: decay 1.5 refused");
    md_ema_free(&bad);
    md_ema_free(&e);
    free(p0);
    free(live);
    free(shadow);
    md_paramset_free(ps);
}

/* ---- AdamW ----------------------------------------------------------------- */

/* Scalar reference, one element, same operation order as torch. */
static void adamw_ref(float *p, float *m, float *v, float g, float lr, int64_t t, bool decay,
                      float b1, float b2, float eps, float wd)
{
    const double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    if (decay)
        *p = *p * (float)(1.0 - (double)lr * wd);
    *m = *m * b1 + (float)(1.0 - b1) * g;
    *v = *v * b2 + ((float)(1.0 - b2) * g) * g;
    const float denom = sqrtf(*v) / (float)sqrt(bc2) + eps;
    *p = *p + ((float)(-(double)lr / bc1) * *m) / denom;
}

static void test_adamw(void)
{
    md_paramset *ps = make_params(11, false, false, false);
    const int64_t n = md_paramset_numel(ps);
    md_adamw o;
    check(md_adamw_init(&o, ps, 0.9f, 1.0f, 1e-8f, 0.1f) == MD_ERR_INVALID, "adamw: beta2 = 1 refused");
    check(md_adamw_init(&o, ps, 0.9f, 0.999f, 1e-8f, 0.1f) == MD_OK, "adamw: init");
    check(o.decay_mask[0] == 1 && o.decay_mask[1] == 0 && o.decay_mask[2] == 0 && o.decay_mask[3] == 1 &&
              o.decay_mask[4] == 0,
          "adamw: default decay mask = params with ndim >= 2");
    md_adamw_set_decay(&o, 2, true); /* norm.g decayed, to test a mid-chunk switch */

    float *p = md_paramset_values(ps);
    float *rp = malloc(sizeof(float) * (size_t)n);
    float *rm = calloc((size_t)n, sizeof(float)), *rv = calloc((size_t)n, sizeof(float));
    memcpy(rp, p, sizeof(float) * (size_t)n);
    unsigned char *dec = malloc((size_t)n);
    for (int i = 0, k = 0; i < md_paramset_count(ps); i++)
        for (int64_t j = 0; j < md_numel(md_paramset_get(ps, i)); j++)
            dec[k++] = o.decay_mask[i];

    md_rng r;
    md_rng_init(&r, 5);
    const float lrs[4] = {1e-3f, 3e-2f, 5e-3f, 0.2f};
    for (int s = 0; s < 4; s++) {
        synth_grads(ps, &r);
        const float *g = md_paramset_grads(ps);
        for (int64_t i = 0; i < n; i++)
            adamw_ref(&rp[i], &rm[i], &rv[i], g[i], lrs[s], s + 1, dec[i], 0.9f, 0.999f, 1e-8f, 0.1f);
        md_adamw_step(&o, lrs[s]);
    }
    check(o.step == 4 && same_floats(p, rp, n) && same_floats(o.m, rm, n) && same_floats(o.v, rv, n),
          "adamw: 4 steps with varying lr equal the scalar reference bit for bit");

    /* Zero grad: decayed params shrink by exactly (1 - lr*wd), others stay. */
    md_adamw_free(&o);
    md_adamw_init(&o, ps, 0.9f, 0.999f, 1e-8f, 0.1f);
    md_paramset_finish_grads(ps);
    memset(md_paramset_grads(ps), 0, sizeof(float) * (size_t)n);
    md_tensor *w = md_paramset_get(ps, 0), *bias = md_paramset_get(ps, 1);
    const float w0 = w->data[5], b0 = bias->data[5];
    md_adamw_step(&o, 0.5f);
    check(w->data[5] == w0 * (float)(1.0 - 0.5 * (double)0.1f) && bias->data[5] == b0,
          "adamw: zero grad -> weight *= 1-lr*wd (%.9g -> %.9g), bias unchanged", (double)w0,
          (double)w->data[5]);
    md_adamw_free(&o);
    free(rp);
    free(rm);
    free(rv);
    free(dec);
    md_paramset_free(ps);
}

static void test_threads(void)
{
    md_paramset *ps[2];
    md_adamw o[2];
    md_ema e[2];
    md_rng r[2];
    for (int k = 0; k < 2; k++) {
        md_threads_set(k + 1);
        ps[k] = make_params(21, false, false, false);
        md_adamw_init(&o[k], ps[k], 0.9f, 0.95f, 1e-8f, 0.05f);
        md_ema_init(&e[k], ps[k], 0.99f);
        md_rng_init(&r[k], 77);
        train(ps[k], &o[k], &e[k], &r[k], 0, 8);
    }
    const int64_t n = md_paramset_numel(ps[0]);
    check(same_floats(md_paramset_values(ps[0]), md_paramset_values(ps[1]), n) &&
              same_floats(o[0].m, o[1].m, n) && same_floats(o[0].v, o[1].v, n) &&
              same_floats(e[0].shadow, e[1].shadow, n),
          "threads: 8 steps of clip+adamw+ema bit-identical with 1 and 2 threads");
    for (int k = 0; k < 2; k++) {
        md_adamw_free(&o[k]);
        md_ema_free(&e[k]);
        md_paramset_free(ps[k]);
    }
}

/* ---- checkpoints ------------------------------------------------------------ */

static char g_dir[64];

static const char *tmp_path(const char *name)
{
    static char buf[4][128];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void test_resume(void)
{
    const int N = 6;
    const char *path = tmp_path("resume.safetensors");
    md_threads_set(2);

    /* Straight run: 2N steps. */
    md_paramset *a = make_params(31, false, false, false);
    md_adamw oa;
    md_ema ea;
    md_rng ra;
    md_adamw_init(&oa, a, 0.9f, 0.999f, 1e-8f, 0.01f);
    md_ema_init(&ea, a, 0.9f);
    md_rng_init(&ra, 1234);
    train(a, &oa, &ea, &ra, 0, 2 * N);

    /* Interrupted run: N steps, save, drop everything. */
    md_paramset *b = make_params(31, false, false, false);
    md_adamw ob;
    md_ema eb;
    md_rng rb;
    md_adamw_init(&ob, b, 0.9f, 0.999f, 1e-8f, 0.01f);
    md_ema_init(&eb, b, 0.9f);
    md_rng_init(&rb, 1234);
    train(b, &ob, &eb, &rb, 0, N);
    md_status st = md_checkpoint_save(path, b, &ob, &eb, &rb, N, "{\"run\": \"test\", \"lr\": 0.01}");
    check(st == MD_OK, "checkpoint: save after %d steps (%s)", N, md_status_str(st));
    md_adamw_free(&ob);
    md_ema_free(&eb);
    md_paramset_free(b);

    /* Fresh objects with different values, RNG and step, then load. */
    md_paramset *c = make_params(999, false, false, false);
    md_adamw oc;
    md_ema ec;
    md_rng rc;
    int64_t step = -1;
    md_adamw_init(&oc, c, 0.9f, 0.999f, 1e-8f, 0.01f);
    md_ema_init(&ec, c, 0.9f);
    md_rng_init(&rc, 1);
    st = md_checkpoint_load(path, c, &oc, &ec, &rc, &step);
    check(st == MD_OK && step == N && oc.step == N && ec.n == N, "checkpoint: load (%s), step %lld, adam step %lld",
          md_status_str(st), (long long)step, (long long)oc.step);
    train(c, &oc, &ec, &rc, step, 2 * N);

    const int64_t n = md_paramset_numel(a);
    check(same_floats(md_paramset_values(a), md_paramset_values(c), n), "resume: params bit-identical to the straight run");
    check(same_floats(oa.m, oc.m, n) && same_floats(oa.v, oc.v, n), "resume: adam m and v bit-identical");
    check(same_floats(ea.shadow, ec.shadow, n) && ea.n == ec.n, "resume: EMA shadow bit-identical");
    check(ra.key == rc.key && ra.counter == rc.counter && oa.step == oc.step, "resume: RNG state and step identical");

    md_st_file *f = NULL;
    if (md_st_open(path, &f) == MD_OK) {
        const char *um = md_st_meta(f, "user_meta");
        check(um && strcmp(um, "{\"run\": \"test\", \"lr\": 0.01}") == 0, "checkpoint: user metadata kept (%s)",
              um ? um : "(none)");
        md_st_close(f);
    } else {
        check(false, "checkpoint: reopen with md_st_open (%s)", md_last_error());
    }

    md_adamw_free(&oa);
    md_ema_free(&ea);
    md_paramset_free(a);
    md_adamw_free(&oc);
    md_ema_free(&ec);
    md_paramset_free(c);
}

static bool error_has(const char *a, const char *b)
{
    const char *e = md_last_error();
    return strstr(e, a) && (!b || strstr(e, b));
}

static void test_bad_checkpoints(void)
{
    const char *path = tmp_path("small.safetensors");
    md_paramset *ps = make_params(41, false, false, false);
    md_rng r;
    md_rng_init(&r, 3);
    check(md_checkpoint_save(path, ps, NULL, NULL, &r, 0, NULL) == MD_OK, "checkpoint: weights-only save");
    check(md_checkpoint_save(tmp_path("x.safetensors"), ps, NULL, NULL, NULL, 0, "{bad json") == MD_ERR_INVALID &&
              access(tmp_path("x.safetensors"), F_OK) != 0,
          "checkpoint: invalid user JSON refused, nothing written");

    /* Model with one more parameter: its tensor is missing. */
    md_paramset *more = make_params(5, true, false, false);
    const float keep = md_paramset_values(more)[0];
    md_status st = md_checkpoint_load(path, more, NULL, NULL, NULL, NULL);
    check(st == MD_ERR_FORMAT && error_has("param/extra.w", "missing") && error_has(path, NULL),
          "checkpoint: missing tensor -> \"%s\"", md_last_error());
    check(md_paramset_values(more)[0] == keep, "checkpoint: failed load leaves params unchanged");

    md_paramset *shape = make_params(5, false, true, false);
    st = md_checkpoint_load(path, shape, NULL, NULL, NULL, NULL);
    check(st == MD_ERR_FORMAT && error_has("param/enc.w", "[37, 129]") && error_has("[37, 128]", NULL),
          "checkpoint: wrong shape -> \"%s\"", md_last_error());

    md_paramset *fewer = make_params(5, false, false, true);
    st = md_checkpoint_load(path, fewer, NULL, NULL, NULL, NULL);
    check(st == MD_ERR_FORMAT && error_has("param/dec.b", "not a parameter"), "checkpoint: extra tensor -> \"%s\"",
          md_last_error());

    md_adamw o;
    md_ema e;
    md_adamw_init(&o, ps, 0.9f, 0.999f, 1e-8f, 0.0f);
    md_ema_init(&e, ps, 0.5f);
    st = md_checkpoint_load(path, ps, &o, NULL, NULL, NULL);
    check(st == MD_ERR_FORMAT && error_has("no optimizer state", NULL), "checkpoint: optimizer asked, none saved -> \"%s\"",
          md_last_error());
    st = md_checkpoint_load(path, ps, NULL, &e, NULL, NULL);
    check(st == MD_ERR_FORMAT && error_has("no EMA", NULL), "checkpoint: EMA asked, none saved -> \"%s\"", md_last_error());
    md_rng r2 = {0, 0};
    int64_t step = 7;
    st = md_checkpoint_load(path, ps, NULL, NULL, &r2, &step);
    check(st == MD_OK && r2.key == r.key && r2.counter == r.counter && step == 0, "checkpoint: weights + RNG load");

    st = md_checkpoint_load(tmp_path("nonexistent.safetensors"), ps, NULL, NULL, NULL, NULL);
    check(st == MD_ERR_IO && error_has("nonexistent.safetensors", NULL), "checkpoint: missing file -> %s: \"%s\"",
          md_status_str(st), md_last_error());

    /* Hand-made files with bad metadata. */
    struct { const char *key, *value; md_status want; const char *msg; } bad[] = {
        {"step", "12x", MD_ERR_FORMAT, "'step'"},
        {"step", "-3", MD_ERR_FORMAT, "'step'"},
        {"step", "99999999999999999999", MD_ERR_FORMAT, "'step'"},
        {"rng_counter", "", MD_ERR_FORMAT, "'rng_counter'"},
        {"rng_key", " 5", MD_ERR_FORMAT, "'rng_key'"},
        {"format_version", "2", MD_ERR_UNSUPPORTED, "version 2"},
        {"format", "something-else", MD_ERR_FORMAT, "not a Medley"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        md_st_writer *w = md_st_writer_new();
        for (int j = 0; j < md_paramset_count(ps); j++) {
            const md_tensor *t = md_paramset_get(ps, j);
            char name[128];
            snprintf(name, sizeof name, "param/%s", t->name);
            md_st_writer_add_f32(w, name, MD_F32, t->ndim, t->shape, t->data);
        }
        md_st_writer_meta(w, "format", MD_CHECKPOINT_FORMAT);
        md_st_writer_meta(w, "format_version", "1");
        md_st_writer_meta(w, "step", "3");
        md_st_writer_meta(w, "rng_key", "1");
        md_st_writer_meta(w, "rng_counter", "2");
        md_st_writer_meta(w, bad[i].key, bad[i].value);
        const char *bp = tmp_path("bad.safetensors");
        md_st_writer_save(w, bp);
        md_st_writer_free(w);
        r2 = (md_rng){0, 0};
        st = md_checkpoint_load(bp, ps, NULL, NULL, &r2, &step);
        check(st == bad[i].want && error_has(bp, bad[i].msg) && r2.key == 0,
              "checkpoint: %s = \"%s\" -> \"%s\"", bad[i].key, bad[i].value, md_last_error());
    }

    /* A BF16 copy of a tensor is refused (resume must be exact). */
    {
        md_st_writer *w = md_st_writer_new();
        for (int j = 0; j < md_paramset_count(ps); j++) {
            const md_tensor *t = md_paramset_get(ps, j);
            char name[128];
            snprintf(name, sizeof name, "param/%s", t->name);
            md_st_writer_add_f32(w, name, j == 1 ? MD_BF16 : MD_F32, t->ndim, t->shape, t->data);
        }
        md_st_writer_meta(w, "format", MD_CHECKPOINT_FORMAT);
        md_st_writer_meta(w, "format_version", "1");
        md_st_writer_meta(w, "step", "3");
        const char *bp = tmp_path("bf16.safetensors");
        md_st_writer_save(w, bp);
        md_st_writer_free(w);
        st = md_checkpoint_load(bp, ps, NULL, NULL, NULL, NULL);
        check(st == MD_ERR_FORMAT && error_has("param/enc.b", "BF16"), "checkpoint: BF16 tensor -> \"%s\"",
              md_last_error());
    }

    md_adamw_free(&o);
    md_ema_free(&e);
    md_paramset_free(ps);
    md_paramset_free(more);
    md_paramset_free(shape);
    md_paramset_free(fewer);
}

int main(void)
{
    md_log_set_callback(quiet_log, NULL);
    snprintf(g_dir, sizeof g_dir, "/tmp/md_test_optim_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_clip();
    test_schedule();
    test_ema();
    test_adamw();
    test_threads();
    test_resume();
    test_bad_checkpoints();

    const char *files[] = {"resume.safetensors", "small.safetensors", "bad.safetensors", "bf16.safetensors",
                           "x.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(tmp_path(files[i]));
    rmdir(g_dir);
    printf("%d/%d checks passed\n", g_checks - g_failed, g_checks);
    return g_failed ? 1 : 0;
}
