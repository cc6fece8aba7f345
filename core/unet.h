/* unet.h — Medley's conditional diffusion model: a U-Net that predicts v
 * (Salimans & Ho's velocity) for data [cin, h, w] noised to time t, given
 * a condition of the aligned space; and its DDIM sampler with
 * classifier-free guidance. The audio generator runs it on log-mel
 * spectrograms; the same model serves any small [cin, h, w] array.
 *
 *   in     conv cin -> c0
 *   L0     res c0                         (h × w)        -> skip 0
 *   down   stride-2 conv;  res c0 -> c1   (h/2 × w/2)    -> skip 1
 *   down   stride-2 conv;  res c1 -> c2 | self-attention | cross-attention
 *          to the condition's tokens | res c2               (h/4 × w/4)
 *   up     nearest ×2, conv c2 -> c1; concat skip 1; res 2c1 -> c1
 *   up     nearest ×2, conv c1 -> c0; concat skip 0; res 2c0 -> c0
 *   out    GroupNorm SiLU conv c0 -> cin
 *
 * with c0 = ch, c1 = 2ch, c2 = 4ch.
 *
 * Videos (frames F > 1): an item is F frames [F, cin, h, w], which the
 * spatial layers above see as F pictures; temporal self-attention across
 * the F frames, at every position, follows the first level-1 block, the
 * lowest level's cross-attention and the up-path's level-1 block (layer
 * norm, a learnt frame embedding, attention, an output projection that
 * starts at zero, added back). At the start a video model is therefore a
 * picture model drawing F pictures; a picture model's weights load into it
 * by name (md_unet_copy_shared).
 *
 * Every residual block adds a per-channel
 * projection of the embedding e = MLP(sinusoid(1000 t)) + W·cond after its
 * first convolution. The condition (a unit vector of the space, or zeros:
 * "no condition", learnt through condition dropout) also becomes
 * cond_tokens tokens of width c2 that the lowest level attends to.
 *
 * Noise schedule: cosine, ᾱ(t) = cos²((t + 0.008) / 1.008 · π/2) for
 * continuous t in [0, 1]; x_t = √ᾱ x0 + √(1-ᾱ) ε; the model predicts
 * v = √ᾱ ε − √(1-ᾱ) x0. Data are normalised first: (x − shift) · scale,
 * with shift and scale measured on the training corpus and stored in the
 * model file.
 *
 * Threads and determinism: the sampler's noise comes from the seed by
 * position (md_rand_normal_at), and the engine's forward passes without
 * gradients are bit-identical on any thread count, so a seed gives the
 * same output everywhere.
 */
#ifndef MEDLEY_UNET_H
#define MEDLEY_UNET_H

#include "nn.h"
#include "space.h"
#include "world.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_UNET_VERSION 1

typedef struct md_unet_config {
    int cin, h, w;                   /* data shape; h and w divisible by 4 */
    int ch;                          /* base width (multiple of 8) */
    int cond_tokens;                 /* condition tokens for cross-attention (>= 1) */
    float shift, scale;              /* data normalisation: (x - shift) * scale */
    int frames;                      /* 0 or 1: pictures; 2..32: videos of this many frames */
    float noise_share;               /* videos: the share of the noise's variance their frames have in
                                      * common (0 .. 0.95; 0: independent), in training and sampling */
} md_unet_config;

typedef struct md_unet_temporal {   /* self-attention across a video's frames */
    md_tensor *ln_w, *ln_b, *pos, *qkv_w, *qkv_b, *proj_w, *proj_b;
} md_unet_temporal;
#define MD_UNET_TEMPORAL 3

typedef struct md_unet_res {         /* residual block with the embedding added */
    md_tensor *gn1_w, *gn1_b, *conv1_w, *conv1_b, *emb_w, *emb_b, *gn2_w, *gn2_b, *conv2_w, *conv2_b;
    md_tensor *skip_w, *skip_b;      /* NULL when cin == cout */
} md_unet_res;

typedef struct md_unet {
    md_unet_config cfg;
    md_paramset *ps;
    md_tensor *t1_w, *t1_b, *t2_w, *t2_b, *c_w, *c_b;   /* time MLP; condition -> embedding */
    md_tensor *tok_w, *tok_b;                           /* condition -> tokens [T*c2] */
    md_tensor *in_w, *in_b;
    md_unet_res r0, r1, r2, r3, r4, r5;
    md_tensor *down_w[2], *down_b[2], *up_w[2], *up_b[2];
    md_tensor *sa_gn_w, *sa_gn_b, *sa_qkv_w, *sa_qkv_b, *sa_proj_w, *sa_proj_b;
    md_tensor *xa_ln_w, *xa_ln_b, *xa_q_w, *xa_kv_w, *xa_proj_w, *xa_proj_b;
    md_tensor *out_gn_w, *out_gn_b, *out_w, *out_b;
    md_unet_temporal ta[MD_UNET_TEMPORAL];              /* videos only */
} md_unet;

/* Checks cfg (MD_ERR_INVALID naming the field) and builds the model. */
md_status md_unet_init(md_unet *u, const md_unet_config *cfg, uint64_t seed);
void md_unet_free(md_unet *u);
int64_t md_unet_size(const md_unet *u);   /* an item: frames * cin * h * w */
int md_unet_frames(const md_unet_config *c);   /* 1 for pictures */
/* Copies every parameter of src whose name and shape dst also has (a
 * picture model into a video model of the same widths); returns how many
 * values were copied. */
int64_t md_unet_copy_shared(md_unet *dst, const md_unet *src);

/* model: the kind written as medley.model ("audiogen"); noun and retrain
 * name it in errors. */
md_status md_unet_save(const md_unet *u, const char *path, const char *model, const char *recipe_json,
                       const char *data_hash);
md_status md_unet_load(md_unet *u, const char *path, const char *model, const char *noun, const char *retrain);

/* v-prediction. x [N·F, cin, h, w] (normalised, noised; F = frames, each
 * item's frames in a row), t: N·F times in [0, 1] (host memory; a video's
 * frames share one), cond [N·F, MD_SPACE_DIM] (likewise). */
md_tensor *md_unet_forward(md_graph *g, const md_unet *u, md_tensor *x, const float *t, md_tensor *cond);

/* ᾱ(t) of the schedule. */
double md_unet_alpha_bar(double t);

/* One training batch's inputs: for normalised x0 [n, size] and times t[n],
 * noise from (seed, position): xt = √ᾱ x0 + √(1-ᾱ) ε and the target v.
 * For a video model (c with frames > 1 and a noise share ρ) each frame's
 * ε is √ρ times one draw the video's frames share plus √(1-ρ) times its
 * own (a mixed noise prior: the frames start alike); c NULL or ρ 0:
 * independent. */
void md_unet_noise(const md_unet_config *c, const float *x0, int64_t n, int64_t size, const float *t, uint64_t seed,
                   float *xt, float *v);

/* ---- training ---- */

/* What a diffusion model learns from: n items of data (normalised, [n,
 * size]) with, for each, the conditions it may be trained under: its own
 * embedding in the space, a caption's, and digit-only captions of its
 * digit from a bank (bank_per_digit rows per digit, [10, bank_per_digit,
 * MD_SPACE_DIM]). */
typedef struct md_unet_corpus {
    int n;
    float *x;
    float *own, *caption;            /* [n, MD_SPACE_DIM] */
    float *bank;
    int bank_per_digit;
    int *digit;                      /* [n] */
    float *weight;                   /* [n, h*w]: each position's loss weight (mean 1 an item,
                                        shared by the channels), or NULL: all equal */
} md_unet_corpus;

void md_unet_corpus_free(md_unet_corpus *c);
/* Fills c->bank with MD_UNET_BANK digit-only captions per digit, worded
 * for every kind (image, audio, video), embedded by sp. */
#define MD_UNET_BANK 24
md_status md_unet_corpus_bank(md_unet_corpus *c, const md_space *sp, md_graph *g, uint64_t seed);
/* Measures shift and scale on c->x (mean and 1/std) into cfg and
 * normalises c->x with them. */
void md_unet_corpus_normalise(md_unet_corpus *c, int64_t size, md_unet_config *cfg);

typedef struct md_unet_train_opts {
    int64_t steps;
    int batch;
    float lr;                        /* peak; warmup steps/50, cosine to 1/20 */
    float drop_cond;                 /* share trained with no condition (zeros) */
    float ema;                       /* decay of the weight average kept at the end */
    uint64_t seed;
    void (*progress)(const char *stage, int64_t step, int64_t steps, float loss, void *user);
    void *user;
    const volatile int *cancel;
} md_unet_train_opts;

/* Trains u (initialised, of c's data shape) with v-prediction: each item
 * drawn under no condition (drop_cond), its caption (30%), a digit caption
 * of the bank (30%) or its own embedding (the rest); times stratified over
 * the batch; the squared error weighted by c->weight where given. On MD_OK
 * u holds the EMA weights. */
md_status md_unet_train(md_unet *u, const md_unet_corpus *c, const md_unet_train_opts *o);

/* ---- DDIM sampling ---- */
/* Steering: for n estimates x0 [n, size] (data units) fills grad [n, size]
 * with the gradient of a score to raise (in data units). */
typedef md_status (*md_unet_guide_fn)(const float *x0, int n, float *grad, void *user);
typedef struct md_unet_sample_opts {
    int steps;                       /* >= 1 */
    float guidance;                  /* >= 0; 1: conditional only (one pass a step) */
    float eta;                       /* 0 (deterministic DDIM) .. 1 (DDPM-like) */
    int preview_every;               /* a preview every N steps (0: none) */
    /* optional: over the first steer_until of the steps, each sample's x0
     * estimate moves along guide's gradient, scaled to an RMS of steer (in
     * the model's normalised units), before the step is taken; the later
     * steps are left to the model, which settles the moved estimates back
     * into pictures of its own. NULL, steer 0 or steer_until 0: none, and
     * the sampler's numbers are exactly those without it. */
    md_unet_guide_fn guide;
    void *guide_user;
    float steer;                     /* 0 .. 10 */
    float steer_until;               /* 0 .. 1 */
} md_unet_sample_opts;

/* Called after each step with the current estimate of x0 (data units, not
 * normalised) when a preview is due, else NULL. */
typedef void (*md_unet_step_fn)(int step, int steps, const float *x0, void *user);

/* Rows (candidates, and their unconditioned twins under guidance) the
 * sampler runs through the network at once; a video model's rows one at a
 * time (each is its frames' worth of pictures). */
#define MD_UNET_SAMPLE_ROWS 2

/* n samples for one condition (cond: MD_SPACE_DIM floats), out [n, size] in
 * data units. g is scratch (reset inside). Cancel is polled before every
 * step and between the rows a step runs through the network one after
 * another (MD_ABORTED; a guide's MD_ABORTED stops the sampler as well).
 * Errors: MD_ERR_INVALID for bad options (named). */
md_status md_unet_sample(const md_unet *u, md_graph *g, const float *cond, int n, const md_unet_sample_opts *o,
                         uint64_t seed, md_unet_step_fn step, void *user, const volatile int *cancel, float *out);

#ifdef __cplusplus
}
#endif
#endif
