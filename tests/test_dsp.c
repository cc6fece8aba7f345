/* test_dsp.c — STFT, mel, Griffin-Lim, loudness and mel-parameter JSON. */
#include "check.h"
#include "dsp.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *noise(int64_t n, uint64_t key)
{
    float *x = malloc(sizeof(float) * (size_t)n);
    md_fill_uniform(x, n, key, 0, -1.0f, 1.0f);
    return x;
}

static void test_roundtrip(int n_fft, int hop, int win, bool center, int64_t n)
{
    md_stft *st = md_stft_new(n_fft, hop, win, center);
    CHECK(st != NULL, "stft_new(%d, %d, %d, %d)", n_fft, hop, win, center);
    if (!st)
        return;
    float *x = noise(n, 7);
    int64_t T = md_stft_frames(st, n);
    int bins = md_stft_bins(st);
    float *re = malloc(sizeof(float) * (size_t)(T * bins)), *im = malloc(sizeof(float) * (size_t)(T * bins));
    float *y = malloc(sizeof(float) * (size_t)n);
    md_status s1 = md_stft_forward(st, x, n, re, im);
    md_clear_error();
    md_status s2 = md_stft_inverse(st, re, im, T, y, n);
    if (!center) {
        /* Hann is 0 at sample 0, where only one frame reaches: torch.istft
         * refuses this too (NOLA). */
        CHECK(s1 == MD_OK && s2 == MD_ERR_INVALID && strstr(md_last_error(), "NOLA"),
              "istft without center refuses the zero envelope at sample 0: %s", md_last_error());
        free(x); free(re); free(im); free(y);
        md_stft_free(st);
        return;
    }
    double err = 0.0;
    for (int64_t i = 0; i < n; i++)
        err = fmax(err, fabs(x[i] - y[i]));
    CHECK(s1 == MD_OK && s2 == MD_OK && err < 1e-5,
          "stft->istft noise n_fft %d hop %d win %d center %d: max error %.2e", n_fft, hop, win, center, err);
    free(x); free(re); free(im); free(y);
    md_stft_free(st);
}

static void test_stft_basics(void)
{
    /* Parseval on one non-centred frame: sum (w x)^2 = (1/N) sum_k |X_k|^2
     * over the full spectrum, one-sided bins 1..N/2-1 counted twice. */
    const int N = 512;
    md_stft *st = md_stft_new(N, 128, N, false);
    float *x = noise(N, 3);
    float re[257], im[257];
    CHECK(md_stft_frames(st, N) == 1 && md_stft_forward(st, x, N, re, im) == MD_OK, "one frame of %d", N);
    const float *w = md_stft_window(st);
    double et = 0.0, ef = 0.0;
    for (int i = 0; i < N; i++)
        et += (double)(w[i] * x[i]) * (w[i] * x[i]);
    for (int k = 0; k <= N / 2; k++) {
        double p = (double)re[k] * re[k] + (double)im[k] * im[k];
        ef += (k == 0 || k == N / 2) ? p : 2.0 * p;
    }
    ef /= N;
    CHECK(fabs(et - ef) < 1e-5 * et, "Parseval: time %.6f vs frequency %.6f", et, ef);
    CHECK(fabsf(w[0]) < 1e-7f && fabsf(w[N / 2] - 1.0f) < 1e-6f && fabsf(w[1] - w[N - 1]) < 1e-7f,
          "periodic Hann: w[0] 0, w[N/2] 1, symmetric about N/2");
    CHECK(md_stft_frames(st, N - 1) == 0 && md_stft_forward(st, x, N - 1, re, im) == MD_ERR_INVALID,
          "too short without center: 0 frames, MD_ERR_INVALID");
    free(x);
    md_stft_free(st);

    /* 1 kHz at 16 kHz with n_fft 1024: bin 1000 * 1024 / 16000 = 64. */
    const int64_t n = 16000;
    st = md_stft_new(1024, 256, 1024, true);
    int64_t T = md_stft_frames(st, n);
    CHECK(T == 1 + n / 256, "frames(16000) = %lld (expect %lld)", (long long)T, (long long)(1 + n / 256));
    float *s = malloc(sizeof(float) * n), *mag = malloc(sizeof(float) * (size_t)(T * 513));
    for (int64_t i = 0; i < n; i++)
        s[i] = 0.5f * sinf(2.0f * (float)M_PI * 1000.0f * (float)i / 16000.0f);
    CHECK(md_stft_magnitude(st, s, n, mag) == MD_OK, "magnitude");
    int best = 0;
    const float *row = mag + (T / 2) * 513;
    for (int k = 1; k < 513; k++)
        if (row[k] > row[best])
            best = k;
    /* Hann-windowed sine of amplitude A at an exact bin: |X| = A N / 4. */
    CHECK(best == 64 && fabsf(row[64] - 0.5f * 1024 / 4) < 0.5f,
          "1 kHz sine peaks at bin %d with %.2f (expect 64, 128)", best, row[best]);
    CHECK(md_stft_new(0, 256, 0, true) == NULL && md_stft_new(512, 0, 512, true) == NULL &&
          md_stft_new(512, 128, 600, true) == NULL, "stft_new rejects bad sizes");
    free(s); free(mag);
    md_stft_free(st);
}

static void test_mel(void)
{
    md_mel_params p = md_mel_params_default();
    const int K = p.n_fft / 2 + 1;
    float *fb = malloc(sizeof(float) * (size_t)p.n_mels * K);
    CHECK(md_mel_filterbank(&p, fb) == MD_OK, "slaney filterbank %d x %d", p.n_mels, K);
    const double df = 0.5 * p.sample_rate / (K - 1);
    int bad = 0, neg = 0;
    for (int m = 0; m < p.n_mels; m++) {
        double area = 0.0;
        for (int k = 0; k < K; k++) {
            neg += fb[m * K + k] < 0.0f;
            area += fb[m * K + k] * df;
        }
        /* Slaney norm: each triangle has unit area in Hz; sampling a
         * triangle a few bins wide on the bin grid is off by up to ~20%. */
        bad += fabs(area - 1.0) > 0.2;
    }
    CHECK(neg == 0 && bad == 0, "slaney rows: none negative (%d), unit area +-20%% (%d off)", neg, bad);

    p.mel_scale = MD_MEL_SCALE_HTK;
    p.norm = MD_MEL_NORM_NONE;
    p.f_min = 50.0f;
    CHECK(md_mel_filterbank(&p, fb) == MD_OK, "htk filterbank");
    /* Unnormalised triangles between shared points sum to 1 inside the
     * outermost centres (here about 100 Hz .. 7.7 kHz). */
    double worst = 0.0, peak = 0.0;
    for (int k = 0; k < K; k++) {
        double f = k * df, sum = 0.0;
        for (int m = 0; m < p.n_mels; m++) {
            sum += fb[m * K + k];
            peak = fmax(peak, fb[m * K + k]);
        }
        if (f > 150.0 && f < 7500.0)
            worst = fmax(worst, fabs(sum - 1.0));
        if (f < 50.0 && sum != 0.0)
            worst = 1.0;
    }
    CHECK(worst < 1e-5 && peak <= 1.0, "htk rows sum to 1 between centres (worst %.2e), peak %.3f", worst, peak);

    md_mel_params q = md_mel_params_default();
    q.f_max = 9000.0f;
    CHECK(md_mel_filterbank(&q, fb) == MD_ERR_INVALID && strstr(md_last_error(), "f_max"),
          "f_max above Nyquist refused: %s", md_last_error());
    free(fb);

    /* log-mel of noise, then mel inversion: the reconstruction's mel
     * spectrum must match (mel is many-to-one, so compare there). */
    p = md_mel_params_default();
    md_audio a = {0};
    md_audio_alloc(&a, 16000, 1, 16000);
    md_fill_uniform(a.samples, a.frames, 11, 0, -0.5f, 0.5f);
    float *lm = NULL;
    int64_t T = 0;
    CHECK(md_log_mel(&p, &a, &lm, &T) == MD_OK && T == 63, "log-mel of 1 s: %lld frames", (long long)T);
    bool finite = true;
    for (int64_t i = 0; lm && i < T * p.n_mels; i++)
        finite = finite && isfinite(lm[i]) && lm[i] >= logf(p.log_floor) - 1e-6f;
    CHECK(finite, "log-mel values finite and >= log(floor)");

    float *mag = malloc(sizeof(float) * (size_t)(T * K));
    CHECK(md_mel_to_linear(&p, lm, T, mag) == MD_OK, "mel to linear");
    float *fb2 = malloc(sizeof(float) * (size_t)p.n_mels * K);
    md_mel_filterbank(&p, fb2);
    double num = 0.0, den = 0.0;
    bool nonneg = true;
    for (int64_t t = 0; t < T; t++)
        for (int m = 0; m < p.n_mels; m++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                acc += fb2[m * K + k] * mag[t * K + k];
                nonneg = nonneg && mag[t * K + k] >= 0.0f;
            }
            double want = exp(lm[t * p.n_mels + m]);
            num += (acc - want) * (acc - want);
            den += want * want;
        }
    CHECK(nonneg && sqrt(num / den) < 0.02, "mel(mel_to_linear(mel)) relative error %.4f, non-negative",
          sqrt(num / den));
    free(mag); free(fb2); free(lm);

    md_audio st2 = {0};
    md_audio_alloc(&st2, 16000, 2, 16000);
    memset(st2.samples, 0, sizeof(float) * 2 * 16000);
    CHECK(md_log_mel(&p, &st2, &lm, &T) == MD_ERR_INVALID && lm == NULL, "log-mel refuses stereo");
    md_audio_free(&st2);
    md_audio_free(&a);
}

static double spectral_convergence(md_stft *st, const float *S, int64_t T, const float *y, int64_t n)
{
    int bins = md_stft_bins(st);
    float *m = malloc(sizeof(float) * (size_t)(T * bins));
    md_stft_magnitude(st, y, n, m);
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < T * bins; i++) {
        num += (double)(S[i] - m[i]) * (S[i] - m[i]);
        den += (double)S[i] * S[i];
    }
    free(m);
    return sqrt(num / den);
}

static void test_griffin_lim(void)
{
    const int64_t n = 16000;
    md_stft *st = md_stft_new(512, 128, 512, true);
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / 16000.0;
        x[i] = (float)(0.3 * sin(2 * M_PI * 440 * t) + 0.2 * sin(2 * M_PI * 1250 * t + 1.0) +
                       0.2 * sin(2 * M_PI * (200 + 1500 * t) * t));   /* chirp 200 -> 3200 Hz */
    }
    int64_t T = md_stft_frames(st, n);
    float *S = malloc(sizeof(float) * (size_t)(T * md_stft_bins(st)));
    md_stft_magnitude(st, x, n, S);

    double sc10, sc100, sc100_plain;
    md_status s = md_griffin_lim(st, S, T, 10, 0.99f, 42, y, n, NULL);
    sc10 = spectral_convergence(st, S, T, y, n);
    s = s == MD_OK ? md_griffin_lim(st, S, T, 100, 0.99f, 42, y, n, NULL) : s;
    sc100 = spectral_convergence(st, S, T, y, n);
    s = s == MD_OK ? md_griffin_lim(st, S, T, 100, 0.0f, 42, y, n, NULL) : s;
    sc100_plain = spectral_convergence(st, S, T, y, n);
    CHECK(s == MD_OK, "griffin-lim runs");
    CHECK(sc100 < sc10, "spectral convergence improves: %.4f after 10, %.4f after 100", sc10, sc100);
    CHECK(sc100 < 0.1, "fast griffin-lim (0.99) after 100 iterations: %.4f < 0.1", sc100);
    CHECK(sc100 < sc100_plain, "momentum beats plain griffin-lim: %.4f vs %.4f", sc100, sc100_plain);

    float *y2 = malloc(sizeof(float) * n);
    md_griffin_lim(st, S, T, 5, 0.99f, 42, y2, n, NULL);
    md_griffin_lim(st, S, T, 5, 0.99f, 42, y, n, NULL);
    CHECK(memcmp(y, y2, sizeof(float) * n) == 0, "same seed, same output");
    volatile int cancel = 1;
    CHECK(md_griffin_lim(st, S, T, 100, 0.99f, 42, y, n, &cancel) == MD_ABORTED, "cancel flag -> MD_ABORTED");
    CHECK(md_griffin_lim(st, S, T, 10, 0.99f, 42, y, n - 1000, NULL) == MD_ERR_INVALID,
          "length that does not give the frame count refused");
    free(x); free(y); free(y2); free(S);
    md_stft_free(st);
}

static void sine(md_audio *a, int rate, int channels, double seconds, double freq, double amp)
{
    md_audio_alloc(a, rate, channels, (int64_t)(seconds * rate));
    for (int64_t i = 0; i < a->frames; i++)
        for (int c = 0; c < channels; c++)
            a->samples[i * channels + c] = (float)(amp * sin(2 * M_PI * freq * (double)i / rate));
}

static void test_loudness(void)
{
    double b1[3], a1[3], b2[3], a2[3];
    md_loudness_kweighting(48000, b1, a1, b2, a2);
    /* BS.1770-4 tables 1 and 2 (48 kHz). */
    double err = fmax(fmax(fabs(b1[0] - 1.53512485958697), fabs(b1[1] + 2.69169618940638)),
                      fmax(fabs(b1[2] - 1.19839281085285), fabs(a1[1] + 1.69065929318241)));
    err = fmax(err, fmax(fabs(a1[2] - 0.73248077421585), fabs(a2[1] + 1.99004745483398)));
    err = fmax(err, fabs(a2[2] - 0.99007225036621));
    CHECK(err < 1e-9, "K-weighting at 48 kHz matches the standard's table (max diff %.2e)", err);

    md_audio a = {0};
    sine(&a, 48000, 1, 5.0, 997.0, 1.0);
    float l = md_loudness_lufs(&a);
    CHECK(fabsf(l + 3.01f) < 0.1f, "full-scale 997 Hz sine, 48 kHz mono: %.3f LUFS (expect -3.01)", l);
    md_audio_free(&a);
    sine(&a, 44100, 2, 3.0, 997.0, 1.0);
    l = md_loudness_lufs(&a);
    CHECK(fabsf(l - 0.0f) < 0.1f, "same sine on 2 channels at 44.1 kHz: %.3f LUFS (expect 0)", l);
    md_audio_free(&a);

    md_audio_alloc(&a, 16000, 1, 32000);
    memset(a.samples, 0, sizeof(float) * (size_t)a.frames);
    CHECK(md_loudness_lufs(&a) == -INFINITY, "silence reads -inf");
    CHECK(md_loudness_normalize(&a, -23.0f) == MD_OK, "normalising silence is a no-op");
    md_fill_uniform(a.samples, a.frames, 5, 0, -0.05f, 0.05f);
    /* quiet first half: exercises the relative gate */
    for (int64_t i = 0; i < a.frames / 2; i++)
        a.samples[i] *= 0.01f;
    CHECK(md_loudness_normalize(&a, -23.0f) == MD_OK, "normalise noise");
    l = md_loudness_lufs(&a);
    CHECK(fabsf(l + 23.0f) < 0.1f, "normalised to %.3f LUFS (target -23)", l);
    CHECK(md_loudness_normalize(&a, 0.0f) == MD_OK, "normalise to 0 LUFS (needs limiting)");
    float peak = 0.0f;
    for (int64_t i = 0; i < a.frames; i++)
        peak = fmaxf(peak, fabsf(a.samples[i]));
    CHECK(peak <= 1.0f && peak > 0.999f, "limited: peak %.6f", peak);
    CHECK(md_loudness_normalize(&a, NAN) == MD_ERR_INVALID, "NaN target refused");
    md_audio_free(&a);

    sine(&a, 48000, 1, 0.2, 997.0, 0.5);   /* shorter than one block */
    l = md_loudness_lufs(&a);
    CHECK(fabsf(l + 9.03f) < 0.2f, "200 ms clip measured as one block: %.3f LUFS", l);
    md_audio_free(&a);
}

static void test_json(void)
{
    char buf[512];
    md_mel_params p = md_mel_params_default(), q;
    CHECK(md_mel_params_to_json(&p, buf, sizeof buf) == MD_OK, "to json: %s", buf);
    CHECK(strstr(buf, "\"log_floor\":1e-05") != NULL, "floats written short");
    CHECK(md_mel_params_from_json(buf, &q) == MD_OK && memcmp(&p, &q, sizeof p) == 0, "round trip default");
    p.mel_scale = MD_MEL_SCALE_HTK;
    p.norm = MD_MEL_NORM_NONE;
    p.f_min = 20.3f;
    p.f_max = 7999.9f;
    p.log_floor = 1e-9f;
    p.center = false;
    p.n_fft = 400;
    p.win_length = 400;
    p.hop = 160;
    CHECK(md_mel_params_to_json(&p, buf, sizeof buf) == MD_OK && md_mel_params_from_json(buf, &q) == MD_OK &&
          memcmp(&p, &q, sizeof p) == 0, "round trip custom: %s", buf);
    CHECK(md_mel_params_to_json(&p, buf, 20) == MD_ERR_INVALID, "small buffer refused");

    static const struct { const char *json, *want; } bad[] = {
        {"{\"sample_rate\":16000,", "invalid JSON"},
        {"[1,2]", "expected an object"},
        {"{\"sample_rate\":16000,\"n_fft\":1024,\"hop\":256,\"win_length\":1024,\"n_mels\":80,"
         "\"f_min\":0,\"f_max\":8000,\"center\":true,\"mel_scale\":\"slaney\",\"norm\":\"slaney\","
         "\"log_floor\":1e-5,\"extra\":1}", "unknown key \"extra\""},
        {"{\"sample_rate\":16000,\"n_fft\":1024,\"hop\":256.5}", "key \"hop\" must be an integer"},
        {"{\"mel_scale\":\"mel\"}", "key \"mel_scale\""},
        {"{\"sample_rate\":16000}", "key \"n_fft\" is missing"},
        {"{\"sample_rate\":16000,\"n_fft\":1024,\"hop\":0,\"win_length\":1024,\"n_mels\":80,"
         "\"f_min\":0,\"f_max\":8000,\"center\":true,\"mel_scale\":\"slaney\",\"norm\":\"slaney\","
         "\"log_floor\":1e-5}", "hop must be > 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        md_clear_error();
        md_status s = md_mel_params_from_json(bad[i].json, &q);
        CHECK(s != MD_OK && strstr(md_last_error(), bad[i].want), "bad JSON %zu: \"%s\"", i, md_last_error());
    }
}

static void quiet_log(md_log_level level, const char *msg, void *user)
{
    MD_UNUSED(level); MD_UNUSED(msg); MD_UNUSED(user);
}

int main(void)
{
    md_log_set_callback(quiet_log, NULL);   /* expected errors; md_last_error still records */
    test_roundtrip(1024, 256, 1024, true, 16000);
    test_roundtrip(400, 160, 400, true, 12345);        /* not a power of two */
    test_roundtrip(512, 100, 400, true, 9999);         /* window shorter than n_fft */
    test_roundtrip(511, 128, 511, true, 5000);         /* odd n_fft */
    test_roundtrip(512, 128, 512, false, 8000);
    test_stft_basics();
    test_mel();
    test_griffin_lim();
    test_loudness();
    test_json();
    return check_done();
}
