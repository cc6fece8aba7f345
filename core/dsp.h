/* dsp.h — audio signal processing: STFT / iSTFT, mel filterbanks, log-mel
 * features, Griffin-Lim phase recovery and BS.1770 loudness.
 *
 * Usage
 * -----
 *   md_mel_params p = md_mel_params_default();
 *   float *logmel; int64_t frames;
 *   if (md_log_mel(&p, &mono, &logmel, &frames) != MD_OK) return;  // log says why
 *   ...                                   // logmel: [frames, n_mels]
 *   free(logmel);
 *
 *   md_stft *st = md_stft_new(1024, 256, 1024, true);   // NULL on failure
 *   md_stft_forward(st, x, n, re, im);    // re, im: [frames, n_fft/2+1]
 *   md_stft_inverse(st, re, im, frames, y, n);
 *   md_stft_free(st);
 *
 * Conventions (those of torch.stft / torch.istft, torchaudio and librosa):
 *   - the window is a periodic Hann window of win_length samples
 *     (torch.hann_window default), zero-padded on both sides to n_fft;
 *   - center = true reflect-pads the signal by n_fft/2 on both sides, so
 *     frame t is centred on sample t*hop; this needs n > n_fft/2;
 *   - spectra are one-sided, bins = n_fft/2 + 1, unnormalised forward DFT
 *     with the e^{-i...} sign; arrays are [frames, bins], row-major;
 *   - log-mel uses the MAGNITUDE |STFT| (not power): log(max(floor, fb·|X|)).
 *
 * Threads: FFTW plans are made once in md_stft_new under a process-wide
 * mutex (the FFTW planner is not thread-safe) and executed with the
 * new-array interface, which is. An md_stft is read-only after creation, so
 * one context may be used by several threads at once; every call allocates
 * its own scratch. Frames are split across md_threads_get() OpenMP threads;
 * results do not depend on the thread count.
 *
 * Errors: MD_ERR_INVALID (with a message through md_log) for out-of-range
 * values; MD_ERR_ALLOC when scratch cannot be allocated. Shapes that the
 * caller controls but gets wrong (NULL buffers) are asserted.
 */
#ifndef MEDLEY_DSP_H
#define MEDLEY_DSP_H

#include "md.h"
#include "media.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Mel parameters -----------------------------------------------------
 * Recorded by models next to their weights (safetensors metadata), so the
 * features at inference match those at training. */
typedef struct md_mel_params {
    int sample_rate;      /* Hz; audio given to md_log_mel must have this rate */
    int n_fft;            /* any size >= 2 (FFTW needs no power of two) */
    int hop;              /* > 0 */
    int win_length;       /* 1..n_fft */
    int n_mels;           /* > 0 */
    float f_min, f_max;   /* 0 <= f_min < f_max <= sample_rate/2 */
    bool center;          /* reflect padding by n_fft/2 as torch.stft center=True */
    int mel_scale;        /* 0 = HTK, 1 = Slaney */
    int norm;             /* 0 none, 1 slaney area norm (2 / band width in Hz) */
    float log_floor;      /* > 0; log(max(floor, mel)) */
} md_mel_params;

#define MD_MEL_SCALE_HTK 0
#define MD_MEL_SCALE_SLANEY 1
#define MD_MEL_NORM_NONE 0
#define MD_MEL_NORM_SLANEY 1

/* 16 kHz, n_fft 1024, hop 256, win 1024, 80 mels over 0..8000 Hz, center,
 * Slaney scale and norm, floor 1e-5. */
md_mel_params md_mel_params_default(void);

/* MD_OK, or MD_ERR_INVALID with a message naming the first bad field. */
md_status md_mel_params_validate(const md_mel_params *p);

/* Flat JSON object with every field, e.g.
 *   {"sample_rate":16000,"n_fft":1024,"hop":256,"win_length":1024,
 *    "n_mels":80,"f_min":0,"f_max":8000,"center":true,"mel_scale":"slaney",
 *    "norm":"slaney","log_floor":1e-05}
 * Floats are written so they read back to the same float. Writes at most n
 * bytes including the NUL; MD_ERR_INVALID if buf is too small (about 220
 * bytes are enough), MD_ERR_ALLOC on out of memory. */
md_status md_mel_params_to_json(const md_mel_params *p, char *buf, size_t n);

/* Strict reader of the form above: every key present exactly once, no
 * unknown keys, integers written as integers, mel_scale "htk" | "slaney",
 * norm "none" | "slaney"; then md_mel_params_validate. Errors
 * (MD_ERR_FORMAT, or MD_ERR_INVALID from validation) name the key at
 * fault. *out is written only on success. */
md_status md_mel_params_from_json(const char *json, md_mel_params *out);

/* ---- STFT ---------------------------------------------------------------- */
typedef struct md_stft md_stft;   /* opaque; read-only after md_stft_new */

/* NULL (logged) if n_fft < 2, hop < 1, win_length not in 1..n_fft, or out
 * of memory. Free with md_stft_free (NULL is fine). */
md_stft *md_stft_new(int n_fft, int hop, int win_length, bool center);
void md_stft_free(md_stft *st);

int md_stft_n_fft(const md_stft *st);
int md_stft_bins(const md_stft *st);          /* n_fft/2 + 1 */
int md_stft_hop(const md_stft *st);
/* The analysis window, n_fft values (zeros outside the centred win_length). */
const float *md_stft_window(const md_stft *st);

/* Frames produced from n samples: 1 + (n + 2*(n_fft/2) - n_fft) / hop with
 * center, 1 + (n - n_fft) / hop without; 0 when the input is too short
 * (center: n <= n_fft/2, as reflect padding needs; no center: n < n_fft). */
int64_t md_stft_frames(const md_stft *st, int64_t n);

/* x: [n]; re, im: [md_stft_frames(n), bins]. MD_ERR_INVALID if n is too
 * short (see md_stft_frames). */
md_status md_stft_forward(md_stft *st, const float *x, int64_t n, float *re, float *im);

/* mag: [frames, bins] = |X|. Same conditions as md_stft_forward. */
md_status md_stft_magnitude(md_stft *st, const float *x, int64_t n, float *mag);

/* Inverse as torch.istft(center, length=n): each frame's inverse real DFT
 * (imaginary parts of the DC and Nyquist bins ignored) times the window,
 * overlap-added, divided by the overlap-added squared window, centre padding
 * trimmed. y: [n]; samples beyond the last frame's reach are 0 (torch pads
 * likewise). MD_ERR_INVALID if frames < 1, n < 1, or the squared-window sum
 * is below 1e-11 somewhere in the output (hop too large for the window:
 * the NOLA condition fails, as torch reports). */
md_status md_stft_inverse(md_stft *st, const float *re, const float *im, int64_t frames,
                          float *y, int64_t n);

/* ---- Mel ------------------------------------------------------------------
 * fb: [n_mels, n_fft/2+1], triangular filters as
 * torchaudio.functional.melscale_fbanks (transposed) and librosa.filters.mel
 * (htk = scale 0): n_mels+2 points equally spaced on the mel scale between
 * f_min and f_max, bin k at frequency k * (rate/2) / (bins-1). With Slaney
 * norm each row is scaled by 2 / (f[m+2] - f[m]). A filter that falls
 * between two bins is all zeros (logged as a warning: too many mels for
 * n_fft). */
md_status md_mel_filterbank(const md_mel_params *p, float *fb);

/* mono: one channel at p->sample_rate. *out: malloc'd [frames, n_mels]
 * (caller frees), frames = md_stft_frames for the audio length.
 * log(max(log_floor, fb · |STFT|)), natural log, magnitude spectrum. */
md_status md_log_mel(const md_mel_params *p, const md_audio *mono, float **out, int64_t *frames);

/* Approximate inverse of the mel projection: logmel [frames, n_mels] →
 * mag [frames, n_fft/2+1], mag >= 0, minimising ||fb·mag - exp(logmel)||²
 * by MD_MEL_NNLS_ITERS accelerated projected-gradient (FISTA) steps per
 * frame, started from the nonnegative back-projection. Bins that no filter
 * covers come out 0. Not exact: mel is a many-to-one map. */
#define MD_MEL_NNLS_ITERS 64
md_status md_mel_to_linear(const md_mel_params *p, const float *logmel, int64_t frames, float *mag);

/* ---- Griffin-Lim -------------------------------------------------------------
 * Fast Griffin-Lim (Perraudin, Balazs, Søndergaard 2013): with c_k the
 * projection of the current estimate onto consistent spectrograms with the
 * target magnitude, t_k = c_k + momentum * (c_k - c_{k-1}). momentum = 0 is
 * the classic algorithm; 0.99 is the paper's recommended value.
 * mag: [frames, bins] target magnitude for st; initial phases uniform in
 * [0, 2π) drawn from md_rand_uniform_at(seed, t*bins + k), so a seed gives
 * the same output on any thread count. y: [n] output. cancel (nullable) is
 * polled once per iteration: MD_ABORTED, with y holding the estimate so
 * far. n must give `frames` frames (md_stft_frames(st, n) == frames). */
#define MD_GRIFFIN_LIM_MOMENTUM 0.99f
md_status md_griffin_lim(md_stft *st, const float *mag, int64_t frames, int iters, float momentum,
                         uint64_t seed, float *y, int64_t n, volatile const int *cancel);

/* ---- Loudness (ITU-R BS.1770-4) ------------------------------------------------
 * K-weighting (high shelf then high pass) designed for the sample rate by
 * the bilinear transform of the analog prototypes that reproduce the
 * standard's 48 kHz coefficients; 400 ms blocks every 100 ms; absolute gate
 * -70 LUFS, relative gate -10 LU. Channel weights: 1 for all channels, except
 * 5 channels (L R C Ls Rs) and 6 channels (L R C LFE Ls Rs): surrounds 1.41,
 * LFE 0. Audio shorter than 400 ms is measured as one block (the standard
 * does not define it). */

/* Integrated loudness in LUFS; -INFINITY for silence (nothing above the
 * absolute gate) or empty audio; NAN if scratch could not be allocated. */
float md_loudness_lufs(const md_audio *a);

/* Scales a so its integrated loudness is target_lufs. If that gain would
 * push a sample past ±1.0 the gain is lowered so the peak is exactly 1.0,
 * and a warning gives the loudness reached. Silence is left as it is (a
 * warning; MD_OK). MD_ERR_INVALID for a non-finite target. */
md_status md_loudness_normalize(md_audio *a, float target_lufs);

/* Start of the len-sample window of x[0..n) with the most energy (sum of
 * squares, earliest on ties); 0 when n <= len. */
int64_t md_loudest_window(const float *x, int64_t n, int64_t len);

/* The two K-weighting biquads for a rate, as b[0..2], a[0..2] (a[0] = 1),
 * for y[n] = b0 x[n] + b1 x[n-1] + b2 x[n-2] - a1 y[n-1] - a2 y[n-2].
 * Stage 1: high shelf (+4 dB above ~1.5 kHz), stage 2: high pass (~38 Hz).
 * Exposed for tests against the standard's table. */
void md_loudness_kweighting(double rate, double b1[3], double a1[3], double b2[3], double a2[3]);

#ifdef __cplusplus
}
#endif
#endif
