/* dsp.c — STFT, mel, Griffin-Lim, BS.1770 loudness (see dsp.h). */
#include "dsp.h"

#include "json.h"
#include "rng.h"

#include <fftw3.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Serialises every call into the FFTW planner (plan creation and
 * destruction); fftwf_execute_dft_* on a finished plan needs no lock. */
static pthread_mutex_t g_fftw_lock = PTHREAD_MUTEX_INITIALIZER;

struct md_stft {
    int n_fft, hop, win_length, bins;
    bool center;
    int win_lo, win_hi;      /* window is nonzero only in [win_lo, win_hi) */
    float *window;           /* [n_fft] */
    fftwf_plan r2c, c2r;     /* planned on fftwf_malloc'd arrays, so any
                                fftwf_malloc'd scratch has their alignment */
};

/* Frames processed per inverse-DFT batch in md_stft_inverse: bounds the
 * scratch to OLA_BATCH * n_fft floats whatever the signal length. */
#define OLA_BATCH 256

/* ---- scratch ------------------------------------------------------------- */

/* One fftwf_malloc'd block holding nth slots of (n_fft reals, bins
 * complexes). Each slot starts at a multiple of 64 bytes from the base, so
 * it keeps the base's SIMD alignment as the new-array interface requires. */
typedef struct scratch {
    char *base;
    size_t stride;
    int n_fft;
} scratch;

static bool scratch_init(scratch *s, int nth, int n_fft, int bins)
{
    size_t re_bytes = ((size_t)n_fft * sizeof(float) + 63) & ~(size_t)63;
    size_t c_bytes = ((size_t)bins * sizeof(fftwf_complex) + 63) & ~(size_t)63;
    s->stride = re_bytes + c_bytes;
    s->n_fft = n_fft;
    s->base = fftwf_malloc(s->stride * (size_t)nth);
    if (!s->base)
        md_log(MD_LOG_ERROR, "stft: out of memory for %d scratch slots of %zu bytes", nth, s->stride);
    return s->base != NULL;
}

static float *scratch_real(const scratch *s, int slot) { return (float *)(s->base + s->stride * (size_t)slot); }

static fftwf_complex *scratch_cplx(const scratch *s, int slot)
{
    size_t re_bytes = ((size_t)s->n_fft * sizeof(float) + 63) & ~(size_t)63;
    return (fftwf_complex *)(s->base + s->stride * (size_t)slot + re_bytes);
}

static int threads_for(int64_t items)
{
    int nth = md_threads_get();
    if (nth < 1)
        nth = 1;
    return (int)MD_MIN((int64_t)nth, MD_MAX(items, (int64_t)1));
}

/* ---- STFT -------------------------------------------------------------------- */

md_stft *md_stft_new(int n_fft, int hop, int win_length, bool center)
{
    if (n_fft < 2 || n_fft > (1 << 24) || hop < 1 || win_length < 1 || win_length > n_fft) {
        md_log(MD_LOG_ERROR, "stft: need n_fft in 2..%d, hop >= 1 and win_length in 1..n_fft "
               "(got n_fft %d, hop %d, win_length %d)", 1 << 24, n_fft, hop, win_length);
        return NULL;
    }
    md_stft *st = calloc(1, sizeof *st);
    if (!st) {
        md_log(MD_LOG_ERROR, "stft: out of memory");
        return NULL;
    }
    st->n_fft = n_fft;
    st->hop = hop;
    st->win_length = win_length;
    st->bins = n_fft / 2 + 1;
    st->center = center;
    st->window = calloc((size_t)n_fft, sizeof(float));
    float *in = fftwf_malloc(sizeof(float) * (size_t)n_fft);
    fftwf_complex *out = fftwf_malloc(sizeof(fftwf_complex) * (size_t)st->bins);
    if (!st->window || !in || !out) {
        md_log(MD_LOG_ERROR, "stft: out of memory");
        fftwf_free(in);
        fftwf_free(out);
        md_stft_free(st);
        return NULL;
    }
    /* Periodic Hann (torch.hann_window(periodic=True)): the N-point window
     * is the first N points of the N+1-point symmetric one. Centred in
     * n_fft with the same left offset as torch.stft. */
    st->win_lo = (n_fft - win_length) / 2;
    st->win_hi = st->win_lo + win_length;
    for (int i = 0; i < win_length; i++)
        st->window[st->win_lo + i] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * i / win_length));

    /* FFTW_ESTIMATE: planning is fast, does not touch the arrays and gives
     * the same plan on every run (MEASURE would time candidates). */
    pthread_mutex_lock(&g_fftw_lock);
    st->r2c = fftwf_plan_dft_r2c_1d(n_fft, in, out, FFTW_ESTIMATE);
    st->c2r = fftwf_plan_dft_c2r_1d(n_fft, out, in, FFTW_ESTIMATE);
    pthread_mutex_unlock(&g_fftw_lock);
    fftwf_free(in);
    fftwf_free(out);
    if (!st->r2c || !st->c2r) {
        md_log(MD_LOG_ERROR, "stft: FFTW could not plan a transform of size %d", n_fft);
        md_stft_free(st);
        return NULL;
    }
    return st;
}

void md_stft_free(md_stft *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&g_fftw_lock);
    if (st->r2c)
        fftwf_destroy_plan(st->r2c);
    if (st->c2r)
        fftwf_destroy_plan(st->c2r);
    pthread_mutex_unlock(&g_fftw_lock);
    free(st->window);
    free(st);
}

int md_stft_n_fft(const md_stft *st) { return st->n_fft; }
int md_stft_bins(const md_stft *st) { return st->bins; }
int md_stft_hop(const md_stft *st) { return st->hop; }
const float *md_stft_window(const md_stft *st) { return st->window; }

int64_t md_stft_frames(const md_stft *st, int64_t n)
{
    MD_ASSERT(st);
    int64_t pad = st->center ? st->n_fft / 2 : 0;
    if (st->center ? n <= pad : n < st->n_fft)
        return 0;
    return 1 + (n + 2 * pad - st->n_fft) / st->hop;
}

static md_status check_length(const md_stft *st, int64_t n)
{
    if (md_stft_frames(st, n) > 0)
        return MD_OK;
    if (st->center)
        md_log(MD_LOG_ERROR, "stft: %lld samples are too few; reflect padding by n_fft/2 = %d "
               "needs more than %d", (long long)n, st->n_fft / 2, st->n_fft / 2);
    else
        md_log(MD_LOG_ERROR, "stft: %lld samples are fewer than n_fft = %d",
               (long long)n, st->n_fft);
    return MD_ERR_INVALID;
}

/* Spectrum of frame t into out[bins], using buf[n_fft] as the windowed
 * frame. Requires md_stft_frames(st, n) > t; then every reflected index
 * lies in [0, n) after one reflection (n > n_fft/2 bounds the overhang). */
static void frame_spectrum(const md_stft *st, const float *x, int64_t n, int64_t t,
                           float *buf, fftwf_complex *out)
{
    int64_t pad = st->center ? st->n_fft / 2 : 0;
    int64_t start = t * st->hop - pad;
    memset(buf, 0, sizeof(float) * (size_t)st->n_fft);
    for (int j = st->win_lo; j < st->win_hi; j++) {
        int64_t i = start + j;
        if (i < 0)
            i = -i;
        else if (i >= n)
            i = 2 * (n - 1) - i;
        buf[j] = x[i] * st->window[j];
    }
    fftwf_execute_dft_r2c(st->r2c, buf, out);
}

/* Shared body of forward and magnitude: mag == NULL writes re/im. */
static md_status stft_run(md_stft *st, const float *x, int64_t n, float *re, float *im, float *mag)
{
    md_status s = check_length(st, n);
    if (s != MD_OK)
        return s;
    int64_t frames = md_stft_frames(st, n);
    int nth = threads_for(frames);
    scratch sc;
    if (!scratch_init(&sc, nth, st->n_fft, st->bins))
        return MD_ERR_ALLOC;
    const int bins = st->bins;
    #pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t t = 0; t < frames; t++) {
        int slot = omp_get_thread_num();
        fftwf_complex *c = scratch_cplx(&sc, slot);
        frame_spectrum(st, x, n, t, scratch_real(&sc, slot), c);
        if (mag) {
            float *m = mag + t * bins;
            for (int k = 0; k < bins; k++)
                m[k] = hypotf(c[k][0], c[k][1]);
        } else {
            float *r = re + t * bins, *q = im + t * bins;
            for (int k = 0; k < bins; k++) {
                r[k] = c[k][0];
                q[k] = c[k][1];
            }
        }
    }
    fftwf_free(sc.base);
    return MD_OK;
}

md_status md_stft_forward(md_stft *st, const float *x, int64_t n, float *re, float *im)
{
    MD_ASSERT(st && x && re && im);
    return stft_run(st, x, n, re, im, NULL);
}

md_status md_stft_magnitude(md_stft *st, const float *x, int64_t n, float *mag)
{
    MD_ASSERT(st && x && mag);
    return stft_run(st, x, n, NULL, NULL, mag);
}

md_status md_stft_inverse(md_stft *st, const float *re, const float *im, int64_t frames,
                          float *y, int64_t n)
{
    MD_ASSERT(st && re && im && y);
    if (frames < 1 || n < 1) {
        md_log(MD_LOG_ERROR, "istft: need frames >= 1 and length >= 1 (got %lld frames, length %lld)",
               (long long)frames, (long long)n);
        return MD_ERR_INVALID;
    }
    const int n_fft = st->n_fft, bins = st->bins, hop = st->hop;
    const int64_t total = (int64_t)n_fft + (int64_t)hop * (frames - 1);  /* before trimming */
    const int64_t start = st->center ? n_fft / 2 : 0;
    const int64_t avail = MD_MAX(MD_MIN(n, total - start), (int64_t)0);  /* samples with data */
    const int batch = (int)MD_MIN(frames, (int64_t)OLA_BATCH);
    int nth = threads_for(batch);

    /* Overlap-add in double: the envelope divides sums of up to
     * n_fft/hop terms, and float sums would add error to the 1e-5 budget. */
    double *acc = calloc((size_t)total, sizeof(double));
    double *env = calloc((size_t)total, sizeof(double));
    float *frames_buf = malloc(sizeof(float) * (size_t)batch * (size_t)n_fft);
    scratch sc = {0};
    if (!acc || !env || !frames_buf || !scratch_init(&sc, nth, n_fft, bins)) {
        if (!sc.base)
            md_log(MD_LOG_ERROR, "istft: out of memory for %lld frames", (long long)frames);
        free(acc);
        free(env);
        free(frames_buf);
        fftwf_free(sc.base);
        return MD_ERR_ALLOC;
    }
    const float scale = 1.0f / (float)n_fft;   /* c2r is unnormalised */
    for (int64_t t0 = 0; t0 < frames; t0 += batch) {
        int nb = (int)MD_MIN((int64_t)batch, frames - t0);
        #pragma omp parallel for num_threads(nth) schedule(static)
        for (int b = 0; b < nb; b++) {
            int slot = omp_get_thread_num();
            fftwf_complex *c = scratch_cplx(&sc, slot);
            float *r = scratch_real(&sc, slot);
            const float *fr = re + (t0 + b) * bins, *fi = im + (t0 + b) * bins;
            for (int k = 0; k < bins; k++) {
                c[k][0] = fr[k];
                c[k][1] = fi[k];
            }
            fftwf_execute_dft_c2r(st->c2r, c, r);
            float *dst = frames_buf + (size_t)b * n_fft;
            for (int j = 0; j < n_fft; j++)
                dst[j] = r[j] * scale * st->window[j];
        }
        for (int b = 0; b < nb; b++) {
            double *a = acc + (t0 + b) * hop, *e = env + (t0 + b) * hop;
            const float *src = frames_buf + (size_t)b * n_fft;
            for (int j = st->win_lo; j < st->win_hi; j++) {
                a[j] += src[j];
                e[j] += (double)st->window[j] * st->window[j];
            }
        }
    }
    md_status s = MD_OK;
    for (int64_t i = 0; i < avail; i++) {
        if (env[start + i] < 1e-11) {
            md_log(MD_LOG_ERROR, "istft: the squared windows sum to %g at output sample %lld; "
                   "hop %d is too large for win_length %d (NOLA condition fails)",
                   env[start + i], (long long)i, hop, st->win_length);
            s = MD_ERR_INVALID;
            break;
        }
        y[i] = (float)(acc[start + i] / env[start + i]);
    }
    if (s == MD_OK)
        for (int64_t i = avail; i < n; i++)
            y[i] = 0.0f;
    free(acc);
    free(env);
    free(frames_buf);
    fftwf_free(sc.base);
    return s;
}

/* ---- Mel parameters -------------------------------------------------------- */

md_mel_params md_mel_params_default(void)
{
    return (md_mel_params){
        .sample_rate = 16000, .n_fft = 1024, .hop = 256, .win_length = 1024, .n_mels = 80,
        .f_min = 0.0f, .f_max = 8000.0f, .center = true,
        .mel_scale = MD_MEL_SCALE_SLANEY, .norm = MD_MEL_NORM_SLANEY, .log_floor = 1e-5f,
    };
}

md_status md_mel_params_validate(const md_mel_params *p)
{
    MD_ASSERT(p);
    const char *why = NULL;
    if (p->sample_rate < 1 || p->sample_rate > 1000000)
        why = "sample_rate must be 1..1000000 Hz";
    else if (p->n_fft < 2 || p->n_fft > (1 << 24))
        why = "n_fft must be 2..16777216";
    else if (p->hop < 1)
        why = "hop must be > 0";
    else if (p->win_length < 1 || p->win_length > p->n_fft)
        why = "win_length must be 1..n_fft";
    else if (p->n_mels < 1 || p->n_mels > 4096)
        why = "n_mels must be 1..4096";
    else if (!isfinite(p->f_min) || p->f_min < 0.0f)
        why = "f_min must be >= 0";
    else if (!isfinite(p->f_max) || p->f_max <= p->f_min)
        why = "f_max must be > f_min";
    else if (p->f_max > 0.5f * (float)p->sample_rate)
        why = "f_max must be <= sample_rate/2";
    else if (p->mel_scale != MD_MEL_SCALE_HTK && p->mel_scale != MD_MEL_SCALE_SLANEY)
        why = "mel_scale must be 0 (HTK) or 1 (Slaney)";
    else if (p->norm != MD_MEL_NORM_NONE && p->norm != MD_MEL_NORM_SLANEY)
        why = "norm must be 0 (none) or 1 (Slaney)";
    else if (!isfinite(p->log_floor) || p->log_floor <= 0.0f)
        why = "log_floor must be > 0";
    if (!why)
        return MD_OK;
    md_log(MD_LOG_ERROR, "mel params: %s (sample_rate %d, n_fft %d, hop %d, win_length %d, "
           "n_mels %d, f_min %g, f_max %g, mel_scale %d, norm %d, log_floor %g)", why,
           p->sample_rate, p->n_fft, p->hop, p->win_length, p->n_mels, (double)p->f_min,
           (double)p->f_max, p->mel_scale, p->norm, (double)p->log_floor);
    return MD_ERR_INVALID;
}

/* The double nearest to the shortest decimal that reads back as f, found
 * with arithmetic alone (no printf, so no locale): the JSON writer then
 * prints it as that short decimal ("1e-05", not "9.99999974737875e-06"). */
static double float_shortest(float f)
{
    double d = f;
    if (d == 0.0 || !isfinite(d))
        return d;
    int e = (int)floor(log10(fabs(d)));
    for (int p = 1; p <= 9; p++) {
        int k = p - 1 - e;             /* keep k decimals: round(d * 10^k) / 10^k */
        double r;
        if (k >= 0 && k <= 22) {       /* 10^k exact: one correctly rounded division */
            r = nearbyint(d * pow(10.0, k)) / pow(10.0, k);
        } else if (k < 0 && k >= -22) {
            r = nearbyint(d / pow(10.0, -k)) * pow(10.0, -k);
        } else {
            break;
        }
        if ((float)r == f)
            return r;
    }
    return d;
}

md_status md_mel_params_to_json(const md_mel_params *p, char *buf, size_t n)
{
    MD_ASSERT(p && buf);
    md_json_buf b;
    md_json_buf_init(&b);
    md_json_buf_begin_object(&b);
    md_json_buf_key(&b, "sample_rate"); md_json_buf_int(&b, p->sample_rate);
    md_json_buf_key(&b, "n_fft"); md_json_buf_int(&b, p->n_fft);
    md_json_buf_key(&b, "hop"); md_json_buf_int(&b, p->hop);
    md_json_buf_key(&b, "win_length"); md_json_buf_int(&b, p->win_length);
    md_json_buf_key(&b, "n_mels"); md_json_buf_int(&b, p->n_mels);
    md_json_buf_key(&b, "f_min"); md_json_buf_num(&b, float_shortest(p->f_min));
    md_json_buf_key(&b, "f_max"); md_json_buf_num(&b, float_shortest(p->f_max));
    md_json_buf_key(&b, "center"); md_json_buf_bool(&b, p->center);
    md_json_buf_key(&b, "mel_scale");
    md_json_buf_str(&b, p->mel_scale == MD_MEL_SCALE_HTK ? "htk" : "slaney");
    md_json_buf_key(&b, "norm");
    md_json_buf_str(&b, p->norm == MD_MEL_NORM_NONE ? "none" : "slaney");
    md_json_buf_key(&b, "log_floor"); md_json_buf_num(&b, float_shortest(p->log_floor));
    md_json_buf_end_object(&b);
    size_t len;
    char *text = md_json_buf_finish(&b, &len);
    if (!text)
        return MD_ERR_ALLOC;
    md_status s = MD_OK;
    if (len + 1 > n) {
        md_log(MD_LOG_ERROR, "mel params: JSON needs %zu bytes, buffer has %zu", len + 1, n);
        s = MD_ERR_INVALID;
    } else {
        memcpy(buf, text, len + 1);
    }
    free(text);
    return s;
}

enum { K_RATE, K_NFFT, K_HOP, K_WIN, K_NMELS, K_FMIN, K_FMAX, K_CENTER, K_SCALE, K_NORM, K_FLOOR, K_COUNT };
static const char *const g_mel_keys[K_COUNT] = {
    "sample_rate", "n_fft", "hop", "win_length", "n_mels", "f_min", "f_max",
    "center", "mel_scale", "norm", "log_floor",
};

static md_status json_key_error(const char *key, const char *what, const md_json *v)
{
    md_log(MD_LOG_ERROR, "mel params JSON: key \"%s\" %s (got %s)", key, what,
           md_json_type_name(md_json_type_of(v)));
    return MD_ERR_FORMAT;
}

md_status md_mel_params_from_json(const char *json, md_mel_params *out)
{
    MD_ASSERT(json && out);
    md_json_doc *doc;
    md_status s = md_json_parse(json, strlen(json), "mel params", &doc);
    if (s != MD_OK)
        return s;
    const md_json *root = md_json_root(doc);
    md_mel_params p = {0};
    bool seen[K_COUNT] = {0};
    if (md_json_type_of(root) != MD_JSON_OBJECT) {
        md_log(MD_LOG_ERROR, "mel params JSON: expected an object, got %s",
               md_json_type_name(md_json_type_of(root)));
        s = MD_ERR_FORMAT;
    }
    for (size_t i = 0; s == MD_OK && i < md_json_len(root); i++) {
        const char *key = md_json_key_at(root, i);
        const md_json *v = md_json_at(root, i);
        int k = 0;
        while (k < K_COUNT && strcmp(key, g_mel_keys[k]) != 0)
            k++;
        if (k == K_COUNT || strlen(key) != md_json_key_len_at(root, i)) {
            md_log(MD_LOG_ERROR, "mel params JSON: unknown key \"%s\"", key);
            s = MD_ERR_FORMAT;
            break;
        }
        seen[k] = true;
        int64_t iv;
        double dv;
        switch (k) {
        case K_RATE: case K_NFFT: case K_HOP: case K_WIN: case K_NMELS: {
            if (!md_json_int(v, &iv) || iv < INT32_MIN || iv > INT32_MAX) {
                s = json_key_error(key, "must be an integer that fits 32 bits", v);
                break;
            }
            int *dst = k == K_RATE ? &p.sample_rate : k == K_NFFT ? &p.n_fft : k == K_HOP ? &p.hop
                     : k == K_WIN ? &p.win_length : &p.n_mels;
            *dst = (int)iv;
            break;
        }
        case K_FMIN: case K_FMAX: case K_FLOOR: {
            if (!md_json_num(v, &dv) || !(fabs(dv) <= 3.4e38)) {
                s = json_key_error(key, "must be a number in float range", v);
                break;
            }
            float *dst = k == K_FMIN ? &p.f_min : k == K_FMAX ? &p.f_max : &p.log_floor;
            *dst = (float)dv;
            break;
        }
        case K_CENTER:
            if (!md_json_bool(v, &p.center))
                s = json_key_error(key, "must be true or false", v);
            break;
        case K_SCALE: {
            const char *str = md_json_str(v);
            if (str && strcmp(str, "htk") == 0) p.mel_scale = MD_MEL_SCALE_HTK;
            else if (str && strcmp(str, "slaney") == 0) p.mel_scale = MD_MEL_SCALE_SLANEY;
            else s = json_key_error(key, "must be \"htk\" or \"slaney\"", v);
            break;
        }
        case K_NORM: {
            const char *str = md_json_str(v);
            if (str && strcmp(str, "none") == 0) p.norm = MD_MEL_NORM_NONE;
            else if (str && strcmp(str, "slaney") == 0) p.norm = MD_MEL_NORM_SLANEY;
            else s = json_key_error(key, "must be \"none\" or \"slaney\"", v);
            break;
        }
        default:
            break;
        }
    }
    for (int k = 0; s == MD_OK && k < K_COUNT; k++)
        if (!seen[k]) {
            md_log(MD_LOG_ERROR, "mel params JSON: key \"%s\" is missing", g_mel_keys[k]);
            s = MD_ERR_FORMAT;
        }
    md_json_free(doc);
    if (s == MD_OK)
        s = md_mel_params_validate(&p);
    if (s == MD_OK)
        *out = p;
    return s;
}

/* ---- Mel ----------------------------------------------------------------------- */

/* HTK: 2595 log10(1 + f/700). Slaney (Auditory Toolbox, librosa default):
 * linear 3 mels per 200 Hz below 1 kHz, logarithmic above with 27 mels per
 * factor 6.4. */
static double hz_to_mel(double f, int scale)
{
    if (scale == MD_MEL_SCALE_HTK)
        return 2595.0 * log10(1.0 + f / 700.0);
    const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, logstep = log(6.4) / 27.0;
    if (f >= min_log_hz)
        return min_log_hz / f_sp + log(f / min_log_hz) / logstep;
    return f / f_sp;
}

static double mel_to_hz(double m, int scale)
{
    if (scale == MD_MEL_SCALE_HTK)
        return 700.0 * (pow(10.0, m / 2595.0) - 1.0);
    const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, logstep = log(6.4) / 27.0;
    const double min_log_mel = min_log_hz / f_sp;
    if (m >= min_log_mel)
        return min_log_hz * exp(logstep * (m - min_log_mel));
    return m * f_sp;
}

md_status md_mel_filterbank(const md_mel_params *p, float *fb)
{
    MD_ASSERT(p && fb);
    md_status s = md_mel_params_validate(p);
    if (s != MD_OK)
        return s;
    const int bins = p->n_fft / 2 + 1, M = p->n_mels;
    double *f_pts = malloc(sizeof(double) * (size_t)(M + 2));
    if (!f_pts)
        return MD_ERR_ALLOC;
    double m_lo = hz_to_mel(p->f_min, p->mel_scale), m_hi = hz_to_mel(p->f_max, p->mel_scale);
    for (int i = 0; i < M + 2; i++)
        f_pts[i] = mel_to_hz(m_lo + (m_hi - m_lo) * i / (M + 1), p->mel_scale);
    const double nyq = 0.5 * p->sample_rate;
    int empty = 0;
    for (int m = 0; m < M; m++) {
        double lo = f_pts[m], c = f_pts[m + 1], hi = f_pts[m + 2];
        double enorm = p->norm == MD_MEL_NORM_SLANEY ? 2.0 / (hi - lo) : 1.0;
        float peak = 0.0f;
        for (int k = 0; k < bins; k++) {
            double f = bins > 1 ? nyq * k / (bins - 1) : 0.0;
            double up = (f - lo) / (c - lo), down = (hi - f) / (hi - c);
            double w = MD_MAX(0.0, MD_MIN(up, down));
            fb[(size_t)m * bins + k] = (float)(w * enorm);
            peak = MD_MAX(peak, fb[(size_t)m * bins + k]);
        }
        empty += peak == 0.0f;
    }
    free(f_pts);
    if (empty)
        md_log(MD_LOG_WARN, "mel filterbank: %d of %d filters cover no FFT bin; n_mels %d is "
               "too many for n_fft %d", empty, M, M, p->n_fft);
    return MD_OK;
}

/* Nonzero column range [lo[m], hi[m]) of each filter, to skip the zeros
 * of a [n_mels, bins] filterbank (each row is one narrow triangle). */
static void fb_ranges(const float *fb, int M, int bins, int *lo, int *hi)
{
    for (int m = 0; m < M; m++) {
        const float *row = fb + (size_t)m * bins;
        int a = 0, b = bins;
        while (a < bins && row[a] == 0.0f)
            a++;
        while (b > a && row[b - 1] == 0.0f)
            b--;
        lo[m] = a;
        hi[m] = b;
    }
}

typedef struct mel_bank {
    float *fb;       /* [M, bins] */
    int *lo, *hi;    /* [M] */
    int M, bins;
} mel_bank;

static void mel_bank_free(mel_bank *mb)
{
    free(mb->fb);
    free(mb->lo);
    free(mb->hi);
}

static md_status mel_bank_init(mel_bank *mb, const md_mel_params *p)
{
    mb->M = p->n_mels;
    mb->bins = p->n_fft / 2 + 1;
    mb->fb = malloc(sizeof(float) * (size_t)mb->M * (size_t)mb->bins);
    mb->lo = malloc(sizeof(int) * (size_t)mb->M);
    mb->hi = malloc(sizeof(int) * (size_t)mb->M);
    if (!mb->fb || !mb->lo || !mb->hi) {
        mel_bank_free(mb);
        md_log(MD_LOG_ERROR, "mel: out of memory for a %d x %d filterbank", mb->M, mb->bins);
        return MD_ERR_ALLOC;
    }
    md_status s = md_mel_filterbank(p, mb->fb);
    if (s != MD_OK) {
        mel_bank_free(mb);
        return s;
    }
    fb_ranges(mb->fb, mb->M, mb->bins, mb->lo, mb->hi);
    return MD_OK;
}

md_status md_log_mel(const md_mel_params *p, const md_audio *mono, float **out, int64_t *frames)
{
    MD_ASSERT(p && mono && out && frames);
    *out = NULL;
    *frames = 0;
    md_status s = md_mel_params_validate(p);
    if (s != MD_OK)
        return s;
    if (mono->channels != 1 || mono->rate != p->sample_rate || !mono->samples) {
        md_log(MD_LOG_ERROR, "log-mel: need mono audio at %d Hz (got %d channels at %d Hz); "
               "mix down and resample first", p->sample_rate, mono->channels, mono->rate);
        return MD_ERR_INVALID;
    }
    md_stft *st = md_stft_new(p->n_fft, p->hop, p->win_length, p->center);
    if (!st)
        return MD_ERR_ALLOC;
    s = check_length(st, mono->frames);
    mel_bank mb = {0};
    if (s == MD_OK)
        s = mel_bank_init(&mb, p);
    if (s != MD_OK) {
        md_stft_free(st);
        return s;
    }
    int64_t T = md_stft_frames(st, mono->frames);
    int nth = threads_for(T);
    float *res = malloc(sizeof(float) * (size_t)T * (size_t)mb.M);
    float *mag = malloc(sizeof(float) * (size_t)nth * (size_t)mb.bins);
    scratch sc = {0};
    if (!res || !mag || !scratch_init(&sc, nth, p->n_fft, mb.bins)) {
        md_log(MD_LOG_ERROR, "log-mel: out of memory for %lld frames", (long long)T);
        free(res);
        free(mag);
        fftwf_free(sc.base);
        mel_bank_free(&mb);
        md_stft_free(st);
        return MD_ERR_ALLOC;
    }
    const float floor_ = p->log_floor;
    #pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t t = 0; t < T; t++) {
        int slot = omp_get_thread_num();
        fftwf_complex *c = scratch_cplx(&sc, slot);
        float *mg = mag + (size_t)slot * mb.bins;
        frame_spectrum(st, mono->samples, mono->frames, t, scratch_real(&sc, slot), c);
        for (int k = 0; k < mb.bins; k++)
            mg[k] = hypotf(c[k][0], c[k][1]);
        for (int m = 0; m < mb.M; m++) {
            const float *row = mb.fb + (size_t)m * mb.bins;
            float acc = 0.0f;
            for (int k = mb.lo[m]; k < mb.hi[m]; k++)
                acc += row[k] * mg[k];
            res[t * mb.M + m] = logf(MD_MAX(acc, floor_));
        }
    }
    fftwf_free(sc.base);
    free(mag);
    mel_bank_free(&mb);
    md_stft_free(st);
    *out = res;
    *frames = T;
    return MD_OK;
}

md_status md_mel_to_linear(const md_mel_params *p, const float *logmel, int64_t frames, float *mag)
{
    MD_ASSERT(p && logmel && mag);
    if (frames < 0) {
        md_log(MD_LOG_ERROR, "mel to linear: negative frame count %lld", (long long)frames);
        return MD_ERR_INVALID;
    }
    mel_bank mb = {0};
    md_status s = mel_bank_init(&mb, p);
    if (s != MD_OK)
        return s;
    const int M = mb.M, K = mb.bins;
    /* Lipschitz constant of the gradient, ||A||_2^2 <= ||A||_1 ||A||_inf
     * (largest column sum times largest row sum): a safe step 1/L without
     * an eigen solve. colsum also normalises the starting point. */
    double *colsum = calloc((size_t)K, sizeof(double));
    int nth = threads_for(frames);
    /* per thread: b[M], r[M], x_prev[K], z[K], w[K] */
    size_t per = (size_t)2 * M + (size_t)3 * K;
    float *work = malloc(sizeof(float) * per * (size_t)nth);
    if (!colsum || !work) {
        md_log(MD_LOG_ERROR, "mel to linear: out of memory");
        free(colsum);
        free(work);
        mel_bank_free(&mb);
        return MD_ERR_ALLOC;
    }
    double rowmax = 0.0, colmax = 0.0;
    for (int m = 0; m < M; m++) {
        double rs = 0.0;
        for (int k = mb.lo[m]; k < mb.hi[m]; k++) {
            rs += mb.fb[(size_t)m * K + k];
            colsum[k] += mb.fb[(size_t)m * K + k];
        }
        rowmax = MD_MAX(rowmax, rs);
    }
    for (int k = 0; k < K; k++)
        colmax = MD_MAX(colmax, colsum[k]);
    const float inv_L = (float)(1.0 / MD_MAX(rowmax * colmax, 1e-30));

    #pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t t = 0; t < frames; t++) {
        float *w0 = work + per * (size_t)omp_get_thread_num();
        float *b = w0, *r = b + M, *xp = r + M, *z = xp + K, *w = z + K;
        for (int m = 0; m < M; m++)
            b[m] = expf(logmel[t * M + m]);
        /* Start: x = (A^T b) / (A^T A 1), exact when the spectrum is flat
         * and nonnegative by construction. */
        for (int k = 0; k < K; k++)
            z[k] = w[k] = 0.0f;
        for (int m = 0; m < M; m++) {
            const float *row = mb.fb + (size_t)m * K;
            float rs = 0.0f;
            for (int k = mb.lo[m]; k < mb.hi[m]; k++)
                rs += row[k];
            for (int k = mb.lo[m]; k < mb.hi[m]; k++) {
                z[k] += row[k] * b[m];
                w[k] += row[k] * rs;
            }
        }
        for (int k = 0; k < K; k++)
            xp[k] = z[k] = w[k] > 0.0f ? z[k] / w[k] : 0.0f;
        float tk = 1.0f;
        for (int it = 0; it < MD_MEL_NNLS_ITERS; it++) {
            for (int m = 0; m < M; m++) {          /* r = A z - b */
                const float *row = mb.fb + (size_t)m * K;
                float acc = -b[m];
                for (int k = mb.lo[m]; k < mb.hi[m]; k++)
                    acc += row[k] * z[k];
                r[m] = acc;
            }
            for (int k = 0; k < K; k++)
                w[k] = 0.0f;
            for (int m = 0; m < M; m++) {          /* w = A^T r */
                const float *row = mb.fb + (size_t)m * K;
                for (int k = mb.lo[m]; k < mb.hi[m]; k++)
                    w[k] += row[k] * r[m];
            }
            float tn = 0.5f * (1.0f + sqrtf(1.0f + 4.0f * tk * tk));
            float beta = (tk - 1.0f) / tn;
            for (int k = 0; k < K; k++) {
                float xn = MD_MAX(0.0f, z[k] - inv_L * w[k]);
                z[k] = MD_MAX(0.0f, xn + beta * (xn - xp[k]));
                xp[k] = xn;
            }
            tk = tn;
        }
        float *out = mag + t * K;
        for (int k = 0; k < K; k++)
            out[k] = colsum[k] > 0.0 ? xp[k] : 0.0f;
    }
    free(colsum);
    free(work);
    mel_bank_free(&mb);
    return MD_OK;
}

/* ---- Griffin-Lim ------------------------------------------------------------------- */

md_status md_griffin_lim(md_stft *st, const float *mag, int64_t frames, int iters, float momentum,
                         uint64_t seed, float *y, int64_t n, volatile const int *cancel)
{
    MD_ASSERT(st && mag && y);
    if (iters < 0 || !isfinite(momentum) || momentum < 0.0f || momentum >= 10.0f) {
        md_log(MD_LOG_ERROR, "griffin-lim: need iters >= 0 and momentum in [0, 10) "
               "(got %d, %g)", iters, (double)momentum);
        return MD_ERR_INVALID;
    }
    if (frames < 1 || md_stft_frames(st, n) != frames) {
        md_log(MD_LOG_ERROR, "griffin-lim: %lld samples make %lld frames, not %lld",
               (long long)n, (long long)md_stft_frames(st, n), (long long)frames);
        return MD_ERR_INVALID;
    }
    const size_t N = (size_t)frames * (size_t)st->bins;
    /* t: accelerated estimate; c_prev: previous projection; x: work. */
    float *buf = malloc(sizeof(float) * N * 6);
    if (!buf) {
        md_log(MD_LOG_ERROR, "griffin-lim: out of memory for %lld frames", (long long)frames);
        return MD_ERR_ALLOC;
    }
    float *t_re = buf, *t_im = t_re + N, *p_re = t_im + N, *p_im = p_re + N;
    float *x_re = p_im + N, *x_im = x_re + N;
    for (size_t i = 0; i < N; i++) {
        float ph = 2.0f * (float)M_PI * md_rand_uniform_at(seed, i);
        t_re[i] = cosf(ph);
        t_im[i] = sinf(ph);
        p_re[i] = p_im[i] = 0.0f;   /* first step: t = (1+momentum) c, same phase */
    }
    md_status s = MD_OK;
    for (int it = 0; it <= iters; it++) {
        /* Impose the target magnitude on the estimate's phase. */
        for (size_t i = 0; i < N; i++) {
            float a = hypotf(t_re[i], t_im[i]);
            if (a > 0.0f) {
                x_re[i] = mag[i] * t_re[i] / a;
                x_im[i] = mag[i] * t_im[i] / a;
            } else {
                x_re[i] = mag[i];
                x_im[i] = 0.0f;
            }
        }
        s = md_stft_inverse(st, x_re, x_im, frames, y, n);
        if (s != MD_OK || it == iters)
            break;
        if (cancel && *cancel) {
            s = MD_ABORTED;
            break;
        }
        s = md_stft_forward(st, y, n, x_re, x_im);   /* c = consistent projection */
        if (s != MD_OK)
            break;
        for (size_t i = 0; i < N; i++) {
            t_re[i] = x_re[i] + momentum * (x_re[i] - p_re[i]);
            t_im[i] = x_im[i] + momentum * (x_im[i] - p_im[i]);
            p_re[i] = x_re[i];
            p_im[i] = x_im[i];
        }
    }
    free(buf);
    return s;
}

/* ---- Loudness ------------------------------------------------------------------------ */

void md_loudness_kweighting(double rate, double b1[3], double a1[3], double b2[3], double a2[3])
{
    /* Analog prototypes whose bilinear transforms at 48 kHz give the
     * coefficients tabulated in BS.1770-4 (to ~1e-12). Stage 1, high shelf:
     *   H(s) = (Vh s^2 + Vb (w/Q) s + w^2) / (s^2 + (w/Q) s + w^2),
     * stage 2, high pass: H(s) = s^2 / (s^2 + (w/Q) s + w^2);
     * with prewarped K = tan(pi f0 / rate) standing for w. */
    const double f0s = 1681.974450955533, gain_db = 3.999843853973347, qs = 0.7071752369554196;
    const double vh = pow(10.0, gain_db / 20.0), vb = pow(vh, 0.4996667741545416);
    double K = tan(M_PI * f0s / rate);
    double a0 = 1.0 + K / qs + K * K;
    b1[0] = (vh + vb * K / qs + K * K) / a0;
    b1[1] = 2.0 * (K * K - vh) / a0;
    b1[2] = (vh - vb * K / qs + K * K) / a0;
    a1[0] = 1.0;
    a1[1] = 2.0 * (K * K - 1.0) / a0;
    a1[2] = (1.0 - K / qs + K * K) / a0;

    const double f0h = 38.13547087602444, qh = 0.5003270373238773;
    K = tan(M_PI * f0h / rate);
    a0 = 1.0 + K / qh + K * K;
    /* The standard's numerator is 1, -2, 1, not divided by a0 (a passband
     * gain of a0, +0.04 dB at 48 kHz); its -0.691 dB offset assumes it. */
    b2[0] = 1.0;
    b2[1] = -2.0;
    b2[2] = 1.0;
    a2[0] = 1.0;
    a2[1] = 2.0 * (K * K - 1.0) / a0;
    a2[2] = (1.0 - K / qh + K * K) / a0;
}

static double channel_weight(int ch, int channels)
{
    if (channels == 5)
        return ch >= 3 ? 1.41 : 1.0;                      /* L R C Ls Rs */
    if (channels == 6)
        return ch == 3 ? 0.0 : ch >= 4 ? 1.41 : 1.0;      /* L R C LFE Ls Rs */
    return 1.0;
}

float md_loudness_lufs(const md_audio *a)
{
    MD_ASSERT(a);
    if (a->frames < 1 || a->channels < 1 || a->rate < 1 || !a->samples)
        return -INFINITY;
    /* Energy of the K-weighted signal per 100 ms step, summed over weighted
     * channels; a 400 ms block is 4 consecutive steps. */
    int64_t step = MD_MAX((int64_t)llround(0.1 * a->rate), (int64_t)1);
    int64_t nsteps = a->frames / step;
    bool short_clip = nsteps < 4;
    if (short_clip) {   /* one block of the whole clip */
        step = a->frames;
        nsteps = 1;
    }
    double *seg = calloc((size_t)nsteps, sizeof(double));
    if (!seg) {
        md_log(MD_LOG_ERROR, "loudness: out of memory");
        return NAN;
    }
    double b1[3], a1[3], b2[3], a2[3];
    md_loudness_kweighting(a->rate, b1, a1, b2, a2);
    const int C = a->channels;
    for (int c = 0; c < C; c++) {
        double g = channel_weight(c, C);
        if (g == 0.0)
            continue;
        double s1a = 0, s1b = 0, s2a = 0, s2b = 0;   /* transposed direct form II states */
        for (int64_t i = 0; i < nsteps * step; i++) {
            double x = a->samples[i * C + c];
            double u = b1[0] * x + s1a;
            s1a = b1[1] * x - a1[1] * u + s1b;
            s1b = b1[2] * x - a1[2] * u;
            double v = b2[0] * u + s2a;
            s2a = b2[1] * u - a2[1] * v + s2b;
            s2b = b2[2] * u - a2[2] * v;
            seg[i / step] += g * v * v;
        }
    }
    int64_t nblocks = short_clip ? 1 : nsteps - 3;
    int64_t bsteps = short_clip ? 1 : 4;
    double *blk = malloc(sizeof(double) * (size_t)nblocks);   /* mean square per block */
    if (!blk) {
        free(seg);
        md_log(MD_LOG_ERROR, "loudness: out of memory");
        return NAN;
    }
    for (int64_t j = 0; j < nblocks; j++) {
        double e = 0.0;
        for (int64_t q = 0; q < bsteps; q++)
            e += seg[j + q];
        blk[j] = e / (double)(bsteps * step);
    }
    free(seg);
    /* Absolute gate at -70 LUFS, then relative gate 10 LU below the
     * loudness of the blocks that passed it. Compare mean squares rather
     * than per-block logs: l > G  <=>  z > 10^((G + 0.691)/10). */
    const double z_abs = pow(10.0, (-70.0 + 0.691) / 10.0);
    double sum = 0.0;
    int64_t cnt = 0;
    for (int64_t j = 0; j < nblocks; j++)
        if (blk[j] > z_abs) {
            sum += blk[j];
            cnt++;
        }
    if (cnt == 0) {
        free(blk);
        return -INFINITY;
    }
    const double z_rel = sum / (double)cnt * pow(10.0, -10.0 / 10.0);
    sum = 0.0;
    cnt = 0;
    for (int64_t j = 0; j < nblocks; j++)
        if (blk[j] > z_abs && blk[j] > z_rel) {
            sum += blk[j];
            cnt++;
        }
    free(blk);
    return (float)(-0.691 + 10.0 * log10(sum / (double)cnt));
}

md_status md_loudness_normalize(md_audio *a, float target_lufs)
{
    MD_ASSERT(a);
    if (!isfinite(target_lufs)) {
        md_log(MD_LOG_ERROR, "loudness: target %g LUFS is not a finite number", (double)target_lufs);
        return MD_ERR_INVALID;
    }
    float lufs = md_loudness_lufs(a);
    if (isnan(lufs))
        return MD_ERR_ALLOC;
    if (lufs == -INFINITY) {
        md_log(MD_LOG_WARN, "loudness: audio is silent (below -70 LUFS); left unchanged");
        return MD_OK;
    }
    const int64_t n = a->frames * a->channels;
    float peak = 0.0f;
    for (int64_t i = 0; i < n; i++)
        peak = MD_MAX(peak, fabsf(a->samples[i]));
    double gain = pow(10.0, ((double)target_lufs - lufs) / 20.0);
    if (peak * gain > 1.0) {
        double limited = 1.0 / peak;
        md_log(MD_LOG_WARN, "loudness: reaching %.2f LUFS would need a peak of %.2f dBFS; "
               "gain limited to peak 0 dBFS, giving %.2f LUFS", (double)target_lufs,
               20.0 * log10(peak * gain), lufs + 20.0 * log10(limited));
        gain = limited;
    }
    const float g = (float)gain;
    for (int64_t i = 0; i < n; i++) {
        float v = a->samples[i] * g;
        a->samples[i] = v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;   /* rounding of g*peak */
    }
    return MD_OK;
}

int64_t md_loudest_window(const float *x, int64_t n, int64_t len)
{
    if (n <= len)
        return 0;
    double e = 0, best = -1;
    int64_t start = 0;
    for (int64_t i = 0; i < len; i++)
        e += (double)x[i] * x[i];
    for (int64_t i = 0;; i++) {
        if (e > best) {
            best = e;
            start = i;
        }
        if (i + len >= n)
            break;
        e += (double)x[i + len] * x[i + len] - (double)x[i] * x[i];   /* slide by one */
    }
    return start;
}
