/* vocoder.h — Medley's neural vocoder: the audio decoder's log-mel
 * spectrograms (audiogen.h: 40 mels × 104 frames, hop 80 at 8 kHz, scaled
 * (log + 4) / 4) to samples, by 1-D convolutions over time:
 *
 *   in     conv k7, 40 -> c                              (104 frames)
 *   up ×5  conv k3, c -> c/2 · 5, then the 5 phases interleaved in time
 *          (a learned sub-sample step); then three residual units
 *          x + conv k1(silu(conv k3 dilated d(silu x))), d = 1, 2, 4
 *   up ×4  the same, c/2 -> c/4, d = 1, 4, 16              (520 -> 2080)
 *   up ×4  the same, c/4 -> c/8, d = 1, 4, 16              (2080 -> 8320)
 *   out    silu, conv k7, c/8 -> 1, tanh                 (the first 8000 kept)
 *
 * The dilations widen what each sample sees to a pitch period or more (±21
 * samples at the last rate, ±84 at the one before); a dilated convolution
 * runs as an ordinary one over the d interleaved phases of the sequence.
 *
 * Trained (md_vocoder_train) on the demo world's train clips against their
 * own samples, by multi-resolution STFT magnitudes (FFT sizes 512, 256 and
 * 128, hops a quarter of them): spectral convergence plus the L1 distance
 * of log magnitudes, the two terms the vocoder's quality is read by. No
 * adversary: phase is whatever reproduces the magnitudes at every
 * resolution.
 *
 *   md_vocoder v;
 *   md_vocoder_load(&v, "assets/models/vocoder.safetensors");
 *   md_vocoder_run(&v, g, x, audio);        // x [40, 104] -> 8000 samples
 */
#ifndef MEDLEY_VOCODER_H
#define MEDLEY_VOCODER_H

#include "judge.h"
#include "tensor.h"
#include "world.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_VOCODER_MODEL "vocoder"
#define MD_VOCODER_STAGES 3

#define MD_VOCODER_UNITS 3

typedef struct md_vocoder_stage {
    md_tensor *up_w, *up_b;            /* [cout * s, cin, 3] */
    md_tensor *dil_w[MD_VOCODER_UNITS], *dil_b[MD_VOCODER_UNITS];   /* [cout, cout, 3] */
    md_tensor *mix_w[MD_VOCODER_UNITS], *mix_b[MD_VOCODER_UNITS];   /* [cout, cout, 1] */
} md_vocoder_stage;

typedef struct md_vocoder {
    int ch;                            /* width at the frame rate: 16..512, a multiple of 8 */
    md_paramset *ps;
    md_tensor *in_w, *in_b;
    md_vocoder_stage st[MD_VOCODER_STAGES];
    md_tensor *out_w, *out_b;
} md_vocoder;

md_status md_vocoder_init(md_vocoder *v, int ch, uint64_t seed);
void md_vocoder_free(md_vocoder *v);
md_status md_vocoder_save(const md_vocoder *v, const char *path, const char *recipe_json, const char *data_hash);
md_status md_vocoder_load(md_vocoder *v, const char *path);

/* A k3 convolution with dilation d (padding d: the length kept) over
 * x [n, c, L], L a multiple of d; w [o, c, 3], b [o] or NULL. */
md_tensor *md_vocoder_dilated_conv(md_graph *g, md_tensor *x, md_tensor *w, md_tensor *b, int d);

/* x [n, 40, 104] (graph) -> [n, 8320] samples in (-1, 1). */
md_tensor *md_vocoder_forward(md_graph *g, const md_vocoder *v, md_tensor *x);
/* One spectrogram x [40, 104] -> MD_WORLD_AUDIO_SAMPLES samples,
 * peak-normalised to 0.9 as md_audiogen_vocode (silence stays silence).
 * g is scratch (reset inside). */
md_status md_vocoder_run(const md_vocoder *v, md_graph *g, const float *x, float *audio);

/* The training loss on a batch: y [n, >= len] (graph) against the real
 * samples ref [n, len]: mean over the three resolutions of spectral
 * convergence + L1 of log magnitudes. */
md_tensor *md_vocoder_loss(md_graph *g, md_tensor *y, const float *ref, int n, int64_t len);

/* The two vocoders side by side on n real test clips (the test split, seed
 * 5): each clip's log-mel through Griffin-Lim (48 iterations) and through
 * v; mean spectral convergence against the original at its level, the
 * share of clips whose digit the audio judge hears (NAN without a judge),
 * seconds a clip. */
typedef struct md_vocoder_figures {
    int n;
    double sc_gl, sc_nn;
    double digit_orig, digit_gl, digit_nn;
    double secs_gl, secs_nn;
} md_vocoder_figures;
md_status md_vocoder_compare(const md_vocoder *v, const md_world *w, const md_judge *judge, int n,
                             md_vocoder_figures *f);

typedef struct md_vocoder_train_opts {
    int64_t steps;                     /* 3000 */
    int batch;                         /* 8 */
    float lr;                          /* 2e-3 peak, warmup, cosine to 1/20 */
    int corpus;                        /* 2000 drawn clips */
    int ch;                            /* 64 */
    uint64_t seed;
    void (*progress)(const char *stage, int64_t step, int64_t steps, float loss, void *user);
    void *user;
    const volatile int *cancel;
} md_vocoder_train_opts;

void md_vocoder_train_default_opts(md_vocoder_train_opts *o);
/* v uninitialised on entry; on MD_OK it holds the trained model. */
md_status md_vocoder_train(md_vocoder *v, const md_world *w, const md_vocoder_train_opts *o);

#ifdef __cplusplus
}
#endif
#endif
