/* audiogen.h — Medley's audio decoder: a conditional diffusion model
 * (unet.h) over log-mel spectrograms of 1 s clips at 8 kHz, laid out as
 * the audio judge reads them (40 mels × 101 frames, n_fft 256, hop 80,
 * scaled (log + 4) / 4), padded to 104 frames with silence; and the
 * vocoder that turns such a spectrogram back into samples (the mel
 * projection inverted by nonnegative least squares, then fast Griffin-Lim).
 *
 *   float x[MD_AUDIOGEN_SIZE];
 *   md_audiogen_prep(audio, x);                   // 8000 samples -> mel
 *   md_unet_sample(&u, g, cond, 1, &so, seed, ...); // -> x
 *   md_audiogen_vocode(x, 48, seed, cancel, audio);   // -> 8000 samples
 *
 * Training (md_audiogen_train) draws a corpus of spoken digits from the
 * demo world's train split and conditions each on one of: nothing (for
 * classifier-free guidance), its caption, a digit-only caption of any kind,
 * or its own audio embedding, all through the aligned space, so any input
 * modality composes into a condition the model has seen.
 */
#ifndef MEDLEY_AUDIOGEN_H
#define MEDLEY_AUDIOGEN_H

#include "space.h"
#include "unet.h"
#include "world.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_AUDIOGEN_MELS 40
#define MD_AUDIOGEN_FRAMES 101             /* the judge's frames */
#define MD_AUDIOGEN_WIDTH 104              /* padded for the U-Net */
#define MD_AUDIOGEN_SIZE (MD_AUDIOGEN_MELS * MD_AUDIOGEN_WIDTH)
#define MD_AUDIOGEN_MODEL "audiogen"

/* The shipped model's shape: 1 × 40 × 104, ch 32, 4 condition tokens. */
md_unet_config md_audiogen_config(int ch);

/* MD_WORLD_AUDIO_SAMPLES samples at MD_WORLD_RATE -> x [40, 104]. */
md_status md_audiogen_prep(const float *audio, float *x);
/* x [40, 104] -> audio [MD_WORLD_AUDIO_SAMPLES], peak-normalised to 0.9
 * (silence stays silence). iters Griffin-Lim iterations (1..1000).
 * MD_ABORTED when cancelled (audio holds the estimate so far). */
md_status md_audiogen_vocode(const float *x, int iters, uint64_t seed, const volatile int *cancel, float *audio);
/* x [40, 104] -> the judge's input [1, 40, 101] (drops the padding). */
void md_audiogen_to_judge(const float *x, float *jx);

/* Spectral convergence ||S - S'||_F / ||S||_F between the magnitude
 * spectrograms (n_fft 256, hop 80) of two clips of n samples. */
double md_spectral_convergence(const float *ref, const float *est, int64_t n);
/* The same with est brought to ref's peak first (the vocoders
 * peak-normalise what they write); est is left as it is. */
double md_spectral_convergence_at_peak(const float *ref, const float *est, int64_t n);

typedef struct md_audiogen_train_opts {
    int64_t steps;                   /* 3000 */
    int batch;                       /* 32 */
    float lr;                        /* 2e-3 peak, warmup, cosine to 1/20 */
    float drop_cond;                 /* 0.1 */
    float ema;                       /* 0.995; the saved weights are the EMA's */
    int corpus;                      /* 3000 drawn clips */
    int ch;                          /* 32 */
    int digits;                      /* 0: every digit; k: only digits 0..k-1 (small tests) */
    uint64_t seed;
    void (*progress)(const char *stage, int64_t step, int64_t steps, float loss, void *user);
    void *user;
    const volatile int *cancel;
} md_audiogen_train_opts;

void md_audiogen_train_default_opts(md_audiogen_train_opts *o);
/* u uninitialised on entry; on MD_OK it holds the trained (EMA) model. */
md_status md_audiogen_train(md_unet *u, const md_space *sp, const md_world *w, const md_audiogen_train_opts *o);

#ifdef __cplusplus
}
#endif
#endif
