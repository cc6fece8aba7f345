/* imagegen.h — Medley's latent diffusion decoder for pictures: the
 * conditional U-Net (unet.h) over the image tokenizer's continuous latents
 * (its encoder's unit vectors before quantisation, laid out
 * [MD_VQ_DIM, 16, 16]); a sampled latent is snapped position by position to
 * the nearest code and decoded by the tokenizer's decoder.
 *
 *   float z[MD_IMAGEGEN_SIZE * n];
 *   md_unet_sample(&u, g, cond, n, &so, seed, ...);     // latents
 *   md_imagegen_codes(&vq, g, z, n, codes);             // [n, 256] codes
 *   md_vqgan_detokenize(&vq, g, codes, n, pixels);
 *
 * Training (md_imagegen_train) encodes a corpus of the demo world's train
 * images once and conditions each as the audio decoder does: nothing, its
 * caption, a digit-only caption of any kind, or its own image embedding.
 */
#ifndef MEDLEY_IMAGEGEN_H
#define MEDLEY_IMAGEGEN_H

#include "unet.h"
#include "vqgan.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_IMAGEGEN_SIZE (MD_VQ_DIM * MD_VQ_TOKENS)
#define MD_IMAGEGEN_PIXELS_SIZE (3 * MD_WORLD_SIZE * MD_WORLD_SIZE)
#define MD_IMAGEGEN_MODEL "imagegen"

/* A picture model works in one of two spaces, told apart by its shape:
 * the tokenizer's latents (MD_VQ_DIM × 16 × 16) or the pixels themselves
 * (3 × side × side in [-1, 1], as md_vqgan_prep_rgb lays them out), which
 * need no decoder. side is 64, or 32: a quarter of the work per step, the
 * picture drawn at half size and enlarged (bilinear) to 64 × 64. 4
 * condition tokens either way. */
md_unet_config md_imagegen_config(int ch);
md_unet_config md_imagegen_config_pixels(int ch, int side);
bool md_imagegen_is_pixels(const md_unet_config *c);
bool md_imagegen_is_latent(const md_unet_config *c);

/* Videos by diffusion (MD_VIDEOGEN_MODEL): the pixel model at 32 × 32 over
 * the world's 16 frames, with temporal attention across them (unet.h);
 * trained from a picture model's weights (md_imagegen_train with frames
 * 16), conditioned as pictures are, with each video's own embedding from
 * the space's video encoder. Frames are enlarged to 64 × 64 as pictures
 * are. */
#define MD_VIDEOGEN_MODEL "videogen"
md_unet_config md_videogen_config(int ch, float noise_share);
bool md_videogen_is_video(const md_unet_config *c);
/* n samples of a video model x [n, 16 · 3 · 32 · 32] -> frames [n · 16, 3,
 * 64, 64] in [-1, 1] (enlarged and clamped as pictures are). */
md_status md_videogen_frames(const md_unet *u, const float *x, int64_t n, float *pix);
/* Motion placement: one sample xi [size] of a video model with every
 * frame moved (bilinear, the edges extended) so that its digit's centre
 * (md_motion_frame's, read at 64 × 64) follows path [16, 2] (pixels at
 * 64, frame 0 at the origin), anchored where the frames' centres less the
 * path sit on average and kept 10 pixels inside the picture where the
 * path fits: out [size]. Each frame keeps its own drawing; only where it
 * sits changes. pix: scratch of [16, 3, 64, 64]. */
md_status md_videogen_place(const md_unet *u, const float *path, const float *xi, float *pix, float *out);
/* Space guidance for videos: each frame of each of n samples moved as
 * md_imagegen_space_grad moves a picture toward cond (the frames all show
 * the asked digit), grad [n, size]. */
md_status md_videogen_space_grad(const md_unet *u, const md_space *sp, md_graph *g, const float *x, int n,
                                 const float *cond, float *grad);

/* n prepared images ([n, 3, 64, 64], md_vqgan_prep_rgb) -> latents [n,
 * MD_IMAGEGEN_SIZE]. g is scratch. */
md_status md_imagegen_latents(const md_vqgan *vq, md_graph *g, const float *x, int64_t n, float *z);
/* latents [n, MD_IMAGEGEN_SIZE] -> the nearest code at every position
 * (cosine), codes [n, 256]. */
md_status md_imagegen_codes(const md_vqgan *vq, md_graph *g, const float *z, int64_t n, int32_t *codes);

/* n samples of u (in its space) -> pictures [n, 3, 64, 64] in [-1, 1]:
 * latents are snapped to codes and decoded by vq, pixels are clamped (and
 * enlarged from 32 × 32). g is scratch. */
md_status md_imagegen_pixels(const md_unet *u, const md_vqgan *vq, md_graph *g, const float *x, int64_t n,
                             float *pix);

/* Space guidance, for pixel models: how each of n samples x [n, size] (the
 * model's data units) should change to sit closer to cond in the aligned
 * space: grad [n, size] receives d cos(E(picture(x_i)), cond) / d x_i, with
 * E the space's image encoder reading the picture as it reads a prepared
 * image (md_judge_prep_rgb: R, G, B and the ink channel, the border's
 * median colour held constant), picture() the enlargement and clamp of
 * md_imagegen_pixels; score[i] (may be NULL) the cosine. MD_ERR_INVALID for
 * a latent model. g is scratch (reset inside; left without gradients as
 * found). */
#define MD_IMAGEGEN_GRAD_ROWS 2   /* pictures through the encoder and back at once */
md_status md_imagegen_space_grad(const md_unet *u, const md_space *sp, md_graph *g, const float *x, int n,
                                 const float *cond, float *grad, float *score);

typedef struct md_imagegen_train_opts {
    int64_t steps;                   /* 3000 */
    int batch;                       /* 48 */
    float lr;                        /* 1.5e-3 */
    float drop_cond;                 /* 0.1 */
    float ema;                       /* 0.995 */
    int corpus;                      /* 6000 images */
    int ch;                          /* 64 */
    bool pixels;                     /* pixel space instead of the latents (false) */
    int side;                        /* pixels: 64 or 32 (64) */
    float ink_weight;                /* pixels: the loss on a handwritten digit's ink counts
                                        1 + ink_weight times the background's (0: even) */
    int frames;                      /* 0: pictures; MD_WORLD_FRAMES: videos (pixels at 32, from corpus
                                      * videos; batch counts videos) */
    float noise_share;               /* videos: the noise's variance the frames share (unet.h) */
    uint64_t seed;
    const md_unet *init;             /* NULL: fresh weights; else go on from this model (the same data
                                      * space and ch), keeping its data normalisation; a video run may go
                                      * on from a picture model (its layers; temporal ones fresh) */
    void (*progress)(const char *stage, int64_t step, int64_t steps, float loss, void *user);
    void *user;
    const volatile int *cancel;
} md_imagegen_train_opts;

/* The loss weights of one world picture (rgb 64 × 64 × 3, interleaved) at
 * side × side (64 or 32): 1 + lambda · the ink's coverage at each position
 * (where a pixel lies between the sample's background and ink colours,
 * the mean over 2 × 2 at 32 a side), scaled to mean 1. A photo (style 1)
 * weighs evenly. The thin stroke is a few per cent of the pixels; this is
 * what lets it count in the loss. */
void md_imagegen_ink_weights(const md_world_sample *s, const uint8_t *rgb, int side, float lambda, float *wt);

void md_imagegen_train_default_opts(md_imagegen_train_opts *o);
/* u uninitialised on entry; on MD_OK it holds the trained (EMA) model. */
md_status md_imagegen_train(md_unet *u, const md_space *sp, const md_vqgan *vq, const md_world *w,
                            const md_imagegen_train_opts *o);

#ifdef __cplusplus
}
#endif
#endif
