/* vqgan.h — Medley's image tokenizer: a 64×64 RGB image (or video frame)
 * <-> a 16×16 grid of codes from a codebook of MD_VQ_CODES, so the token
 * transformer can read and write pictures as words.
 *
 *   encoder  conv 3->32 | res 32 | down | res 32->64 | down |
 *            res 64->128 | attention (16×16) | res 128 | GN SiLU conv ->
 *            [MD_VQ_DIM, 16, 16]
 *   codes    each position's vector and the codebook rows l2-normalised,
 *            then the nearest row (cosine): codes use the whole sphere and
 *            stay comparable; rows no position picked for a while restart
 *            at a random encoder output of the current batch
 *   decoder  conv ->128 | res 128 | attention | res 128 | up conv 128->64
 *            | res 64 | up conv 64->32 | res 32 | GN SiLU conv -> RGB
 *
 * Downsampling is a stride-2 3×3 conv, upsampling nearest ×2 then a 3×3
 * conv. Training (md_vqgan_train) minimises L1 on pixels, the codebook and
 * commitment terms, a squared error weighted by the ink map (md_judge_prep_rgb's
 * fourth plane: where the digit's strokes are), and — when an image judge is given — the distance
 * between the judge's features of the reconstruction and of the original
 * (a perceptual loss that asks the digit and its colours to survive).
 *
 * Pixels are [3, 64, 64] floats in [-1, 1] (md_vqgan_prep_rgb).
 */
#ifndef MEDLEY_VQGAN_H
#define MEDLEY_VQGAN_H

#include "judge.h"
#include "nn.h"
#include "world.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_VQ_GRID 16
#define MD_VQ_TOKENS (MD_VQ_GRID * MD_VQ_GRID)
#define MD_VQ_CODES 1024
#define MD_VQ_DIM 32
#define MD_VQGAN_VERSION 1

typedef struct md_vq_attn {          /* single-head self-attention over positions */
    md_tensor *gn_w, *gn_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
} md_vq_attn;

typedef struct md_vqgan {
    md_paramset *ps;
    /* encoder */
    md_tensor *ein_w, *ein_b;
    md_resblock e0, e1, e2, e3;
    md_tensor *edown_w[2], *edown_b[2];
    md_vq_attn ea;
    md_tensor *eout_gn_w, *eout_gn_b, *eout_w, *eout_b;
    md_tensor *codebook;             /* [MD_VQ_CODES, MD_VQ_DIM] */
    /* decoder */
    md_tensor *din_w, *din_b;
    md_resblock d0, d1, d2, d3;
    md_vq_attn da;
    md_tensor *dup_w[2], *dup_b[2];
    md_tensor *dout_gn_w, *dout_gn_b, *dout_w, *dout_b;
} md_vqgan;

md_status md_vqgan_init(md_vqgan *v, uint64_t seed);
void md_vqgan_free(md_vqgan *v);
md_status md_vqgan_save(const md_vqgan *v, const char *path, const char *recipe_json, const char *data_hash);
/* Refuses another kind of model file or another version, naming the file. */
md_status md_vqgan_load(md_vqgan *v, const char *path);

/* rgb [64, 64, 3] u8 -> x [3, 64, 64] in [-1, 1]; and back (clamped). */
void md_vqgan_prep_rgb(const uint8_t *rgb, float *x);
void md_vqgan_to_rgb(const float *x, uint8_t *rgb);

/* Graph builders. x [N, 3, 64, 64] -> the encoder's vectors [N*256, D]
 * (unit rows, position-major per image); codes -> [N, 3, 64, 64]. */
md_tensor *md_vqgan_encode(md_graph *g, const md_vqgan *v, md_tensor *x);
md_tensor *md_vqgan_decode(md_graph *g, const md_vqgan *v, md_tensor *zq, int64_t n);
/* The codebook rows l2-normalised [K, D] (graph op: gradient reaches the
 * codebook). */
md_tensor *md_vqgan_codes(md_graph *g, const md_vqgan *v);

/* No gradients, batched inside (graph reset inside). x: n prepared images;
 * tokens [n, 256] (I32). */
md_status md_vqgan_tokenize(const md_vqgan *v, md_graph *g, const float *x, int64_t n, int32_t *tokens);
/* tokens [n, 256] -> pixels [n, 3, 64, 64]; ids outside 0..K-1 are an
 * error. */
md_status md_vqgan_detokenize(const md_vqgan *v, md_graph *g, const int32_t *tokens, int64_t n, float *x);

/* ---- training ---- */
typedef struct md_vqgan_train_opts {
    int64_t steps;                   /* 2500 */
    int batch;                       /* 32: three quarters images, a quarter video frames */
    float lr;                        /* 1e-3 peak, warmup 2%, cosine to 1/20 */
    float beta;                      /* commitment weight, 0.25 */
    float perceptual;                /* weight of the judge-feature term, 0.2 (0 or no judge: off) */
    float stroke;                    /* weight of the squared error weighted by the ink map, 2.0 */
    int64_t restart_every;           /* dead-code restarts every N steps (200; 0 off) */
    bool decoder_only;               /* train the decoder alone (false): the encoder and the
                                        codebook stay as given, so every image keeps its codes
                                        and a token model trained on them stays valid */
    uint64_t seed;
    const md_judge *judge;           /* image judge for the perceptual term, or NULL */
    void (*progress)(int64_t step, int64_t steps, float loss, float l1, float used, void *user);
    void *user;
    const volatile int *cancel;
} md_vqgan_train_opts;

void md_vqgan_train_default_opts(md_vqgan_train_opts *o);
md_status md_vqgan_train(md_vqgan *v, const md_world *w, const md_vqgan_train_opts *o);

/* ---- evaluation ---- */
typedef struct md_vqgan_eval {
    int64_t n;
    double psnr;                     /* dB, mean over images of 10 log10(4 / mse) on [-1, 1] */
    double l1;                       /* mean |x - x'| on [-1, 1] */
    double used;                     /* share of codes used at least once */
    double perplexity;               /* exp(entropy) of code use */
    double judge_digit;              /* image judge's digit on reconstructions (NaN: no judge) */
    double judge_digit_orig;         /* ... and on the originals */
    double seconds;
} md_vqgan_eval;

/* n test images of `split` (md_world_draw, seed 17). judge may be NULL. */
md_status md_vqgan_evaluate(const md_vqgan *v, const md_world *w, md_world_split split, int64_t n,
                            const md_judge *judge, md_vqgan_eval *out);

#ifdef __cplusplus
}
#endif
#endif
