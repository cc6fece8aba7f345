/* motion.h — Medley's motion model: how a video's later frames move its
 * first one.
 *
 * The token transformer draws frame 0 of a video well (it is a picture),
 * but its later frames, drawn from frame 0 and an index, do not move the
 * digit (README, Generation). The motion model takes the other road, as
 * image-animation models do: it draws a *path* — where frame t's content
 * sits relative to frame 0, for t = 0..15 — and frame t is frame 0 moved
 * along it (bilinear; the uncovered edge takes the background colour).
 *
 * Paths are learned from the world's train videos, from their pixels: the
 * foreground of a frame is every pixel's largest channel distance from the
 * frame's background (the median colour of its border); its weighted
 * centroid, frame by frame, less frame 0's, is the clip's path. k-means
 * over those paths gives k prototype paths (md_motion.paths); a small MLP
 * reads the aligned condition and the typed text as a bag of its tokens,
 * and gives logits over the prototypes. Sampling draws one, keyed by the
 * seed. Where frame 0's foreground would leave the picture along the path,
 * the whole clip is shifted by the fewest whole pixels that keep it in.
 *
 * Why the text beside the condition: the space's text encoder learned its
 * words from image captions and was then frozen while videos were aligned
 * to it (CoDi's bridging), so motion words barely move the text vector
 * (trained on the vector alone, the model read the motion of 57% of
 * held-out captions that state it; from the video's own embedding, 97%).
 *
 *   md_motion mo;  md_motion_load(&mo, "assets/models/motion.safetensors");
 *   md_motion_draw(&mo, g, cond, ids, nids, 1.0f, seed, path, NULL);
 *   md_motion_apply(frame0, path, frames);     // [16, 3, 64, 64]
 *
 * Frames here are [3, 64, 64] f32 in [-1, 1] (the image tokenizer's
 * output); no files are read but the model's own.
 */
#ifndef MEDLEY_MOTION_H
#define MEDLEY_MOTION_H

#include "bpe.h"
#include "space.h"
#include "tensor.h"
#include "world.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_MOTION_MODEL "motion"
#define MD_MOTION_MAX_PATHS 64
#define MD_MOTION_PATH (MD_WORLD_FRAMES * 2)   /* floats in a path: (dx, dy) per frame, pixels */
#define MD_MOTION_TEXT 32           /* width of the typed text's bag of tokens */

typedef struct md_motion {
    int k, hidden, vocab;            /* vocab: the space's text tokens */
    float paths[MD_MOTION_MAX_PATHS * MD_MOTION_PATH];   /* [k, 16, 2]; frame 0's is (0, 0) */
    md_paramset *ps;
    md_tensor *wt;                   /* [MD_MOTION_TEXT, vocab]: a bag of tokens -> the MLP's text input */
    md_tensor *w1, *b1, *w2, *b2, *w3, *b3;
} md_motion;

/* k prototype paths (zeroed), an MLP of the given width over a vocabulary
 * of vocab text tokens. */
md_status md_motion_init(md_motion *m, int k, int hidden, int vocab, uint64_t seed);
void md_motion_free(md_motion *m);
md_status md_motion_save(const md_motion *m, const char *path, const char *recipe_json, const char *data_hash);
md_status md_motion_load(md_motion *m, const char *path);

/* Frame [3, 64, 64]: its background colour bg[3] (border median), its
 * foreground's box (x0, y0, x1, y1, inclusive) and weighted centre
 * (pixels); box and centre may be NULL. A frame without foreground reads
 * as the whole frame, centred. */
void md_motion_frame(const float *frame, float bg[3], int box[4], float centre[2]);
/* The path of n frames [n, 3, 64, 64]: path [n, 2], centroid less frame 0's. */
void md_motion_measure(const float *frames, int n, float *path);

/* The bag of n text tokens ids (the space's BPE; others ignored): bag
 * [vocab], each token's share of the text. */
void md_motion_bag(const md_motion *m, const int32_t *ids, int n, float *bag);
/* Logits [n, k] for conditions cond [n, MD_SPACE_DIM] and bags of the
 * typed text bag [n, vocab] (zeros: none) (graph tensors). */
md_tensor *md_motion_forward(md_graph *g, const md_motion *m, md_tensor *cond, md_tensor *bag);
/* Draws a path for cond (MD_SPACE_DIM; zeros: no condition) and the typed
 * text's tokens (ids, nids; NULL: none): softmax at temperature (0: the
 * likeliest), one uniform draw keyed by seed. path [16, 2]; *which the
 * prototype (may be NULL). g is scratch (reset inside). */
md_status md_motion_draw(const md_motion *m, md_graph *g, const float *cond, const int32_t *ids, int nids,
                         float temperature, uint64_t seed, float *path, int *which);
/* frames [16, 3, 64, 64]: frame0 moved along path [16, 2], the whole clip
 * shifted by the fewest whole pixels that keep frame 0's foreground box a
 * pixel inside the picture all the way (centred where the box and path
 * are too wide); frames may begin at frame0. */
void md_motion_apply(const float *frame0, const float *path, float *frames);
/* What a video generator does with its frame 0: a path drawn for cond
 * and the typed text (NULL: none; its first MD_MOTION_TEXT_IDS tokens of
 * the space's BPE bpe), then frames [16, 3, 64, 64] made from frames[0]
 * along it. */
#define MD_MOTION_TEXT_IDS 64
md_status md_motion_move(const md_motion *m, md_graph *g, const md_bpe *bpe, const float *cond, const char *text,
                         float temperature, uint64_t seed, float *frames);

typedef struct md_motion_train_opts {
    int64_t steps;                  /* 3000 */
    int batch;                      /* 128 */
    float lr;                       /* 2e-3 peak, warmup 3%, cosine to 1/10 */
    int corpus;                     /* 6000 train videos */
    int k, hidden;                  /* 24 prototypes, width 256 */
    float drop_cond;                /* 0.1: as the token transformer's conditions */
    uint64_t seed;
    void (*progress)(const char *stage, int64_t step, int64_t steps, float loss, void *user);
    void *user;
    const volatile int *cancel;
} md_motion_train_opts;

void md_motion_train_default_opts(md_motion_train_opts *o);

/* How well paths are read on held-out videos: for n validation videos,
 * the share whose likeliest prototype is the nearest one to the video's
 * own path, under its caption, its own video embedding, and no condition
 * (the last: the prior alone); and the share whose likeliest
 * prototype moves the way the video does (one of the world's five
 * motions; under captions, those that state the motion). */
typedef struct md_motion_figures {
    int n;
    double caption, video, none;
    double caption_moves, video_moves, none_moves;
    double fit;                     /* mean distance (pixels a frame) from a path to its nearest prototype */
} md_motion_figures;

/* m uninitialised on entry; on MD_OK it holds the trained model, and f
 * (may be NULL) the figures on 500 validation videos. */
md_status md_motion_train(md_motion *m, const md_space *sp, const md_world *w, const md_motion_train_opts *o,
                          md_motion_figures *f);

#ifdef __cplusplus
}
#endif
#endif
