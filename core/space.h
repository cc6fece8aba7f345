/* space.h — Medley's shared aligned embedding space (../shared/DESIGN.md):
 * four encoders that map text, images, audio and video into one
 * MD_SPACE_DIM-dimensional unit sphere where meaning lines up, trained as
 * CoDi's bridging alignment through text, and composition of several
 * inputs by a weighted sum.
 *
 *   text   byte-level BPE ids -> causal transformer (2 layers, d 128) ->
 *          the <eos> position -> LayerNorm -> linear -> unit vector
 *   image  [3, 64, 64] -> four 3×3 convs (32, 64, 128, 128; stride 2),
 *          each with GroupNorm + SiLU -> flatten 4×4 -> 256 -> unit vector
 *   audio  log-mel [1, 40, 101] at 8 kHz (the audio judge's features) ->
 *          four convs -> mean over time -> 256 -> unit vector
 *   video  frames 0, 3, .., 15 -> the image trunk (own weights, started
 *          from the trained image encoder) per frame -> + frame position ->
 *          one transformer block across frames -> attention pooling (a
 *          learned query) -> unit vector
 *
 * Training (md_space_train): stage 1 aligns image <-> text with a symmetric
 * InfoNCE loss and a learned temperature; stage 2 freezes the text encoder
 * and aligns audio <-> text, then video <-> text. No image–audio or
 * video–audio pair is ever used: their agreement is emergent.
 *
 * Composition: condition = normalize(sum_i w_i v_i / sum_i w_i); negative
 * weights subtract a concept; a total weight of zero is an error.
 */
#ifndef MEDLEY_SPACE_H
#define MEDLEY_SPACE_H

#include "bpe.h"
#include "judge.h"
#include "nn.h"
#include "world.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_SPACE_DIM 128
#define MD_SPACE_VERSION 1
#define MD_SPACE_TEXT_LEN 48        /* tokens, <bos> and <eos> included */
#define MD_SPACE_VIDEO_FRAMES 6

typedef enum md_modality { MD_MOD_TEXT = 0, MD_MOD_IMAGE = 1, MD_MOD_AUDIO = 2, MD_MOD_VIDEO = 3 } md_modality;

typedef struct md_space_trunk {       /* conv encoder shared by image, audio, video frames */
    int nconv, cin;
    md_tensor *conv_w[4], *conv_b[4];
    md_tensor *gn_w[4], *gn_b[4];     /* GroupNorm (8 groups) + SiLU after each conv */
    md_tensor *fc_w, *fc_b;           /* [256, flat] */
} md_space_trunk;

typedef struct md_space {
    md_bpe *bpe;                      /* owned */
    int vocab, text_d, text_layers;
    /* one paramset per encoder, so stages train and freeze them apart */
    md_paramset *ps[4];
    /* text */
    md_tensor *tok_emb, *pos_emb;     /* [V, d], [T, d] */
    md_tblock text_blocks[4];
    md_tensor *lnf_w, *lnf_b, *text_proj;          /* proj [D, d] */
    /* image, audio */
    md_space_trunk image, audio;
    md_tensor *image_proj, *audio_proj;            /* [D, 256] */
    /* video */
    md_space_trunk frame;
    md_tensor *frame_pos;             /* [F, 256] */
    md_tblock video_block;
    md_tensor *pool_q, *video_proj;   /* [256], [D, 256] */
    /* learned temperatures (log of the logit scale), one per aligned pair */
    md_tensor *log_scale[4];          /* [1], in ps[modality]; text's unused */
} md_space;

/* New space with a trained tokenizer (ownership passes to the space). */
md_status md_space_init(md_space *sp, md_bpe *bpe, uint64_t seed);
void md_space_free(md_space *sp);
md_status md_space_save(const md_space *sp, const char *path, const char *recipe_json, const char *data_hash);
/* Refuses another kind of model file or another version, naming the file. */
md_status md_space_load(md_space *sp, const char *path);

/* Input preparation. Text: ids [MD_SPACE_TEXT_LEN] (<bos> text <eos>,
 * padded, truncated) and the <eos> position. Image/audio as the judges';
 * video: MD_SPACE_VIDEO_FRAMES frames of [3, 64, 64]. */
int md_space_tokenize(const md_space *sp, const char *text, int32_t *ids);
int64_t md_space_input_size(md_modality m);
void md_space_prep_rgb(const uint8_t *rgb, float *x);         /* [64, 64, 3] u8 -> [3, 64, 64] in [-1, 1] */
void md_space_prep_frames(const uint8_t *frames, float *x);   /* frames [16, 64, 64, 3] u8 */
/* Renders a world sample as its encoder's input (scratch: 16 frames for
 * video, else may be NULL). */
md_status md_space_prep_sample(const md_world *w, const md_world_sample *s, uint8_t *scratch, float *x);

/* Graph builders: unit vectors [B, D]. Text takes ids [B, T] (I32) and eos
 * positions [B] (I32). */
md_tensor *md_space_text(md_graph *g, const md_space *sp, md_tensor *ids, md_tensor *eos);
md_tensor *md_space_image(md_graph *g, const md_space *sp, md_tensor *x);
md_tensor *md_space_audio(md_graph *g, const md_space *sp, md_tensor *x);
md_tensor *md_space_video(md_graph *g, const md_space *sp, md_tensor *x);

/* Embeds n inputs of one modality (prepared as above; text: n strings),
 * into out [n, D]; batches inside, no gradients. */
md_status md_space_embed(const md_space *sp, md_graph *g, md_modality m, const void *inputs, int64_t n,
                         float *out);

/* Composition: out = normalize(sum w_i v_i / sum w_i); v [n, D]. A zero
 * (|sum w| < 1e-6) or non-finite total weight, or a zero result, is
 * MD_ERR_INVALID with a message. */
md_status md_space_compose(const float *v, const float *w, int n, float *out);

/* ---- training ---- */
typedef struct md_space_train_opts {
    int64_t steps[4];                 /* per stage: [0] unused, [1] image-text, [2] audio-text, [3] video-text */
    int batch[4];
    float lr;
    uint64_t seed;
    void (*progress)(int stage, int64_t step, int64_t steps, float loss, void *user);
    void *user;
    const volatile int *cancel;
} md_space_train_opts;

void md_space_train_default_opts(md_space_train_opts *o);
/* Trains a tokenizer on the world's train captions, then the three stages.
 * sp must be zeroed; on success it holds the trained space. */
md_status md_space_train(md_space *sp, const md_world *w, const md_space_train_opts *o);

/* ---- evaluation ---- */
typedef struct md_space_eval {
    int64_t n;                        /* samples per modality */
    double r1[4][4], r5[4][4];        /* retrieval [query][gallery] of the paired item (NaN: no pairs) */
    double zeroshot[4];               /* digit by nearest digit prompt (image, audio, video) */
    double agree[4][4];               /* top-1 neighbour shows the same digit */
    double seconds;
} md_space_eval;

md_status md_space_evaluate(const md_space *sp, const md_world *w, md_world_split split, int64_t n,
                            md_space_eval *out);

/* The supervised baseline (AV-MNIST style): the same image, audio and video
 * encoders, each trained from scratch with a linear digit head on the
 * labels for steps[m] steps of batch[m] (train split), then scored on n
 * samples of `split` as md_space_evaluate draws them. acc[m] for image,
 * audio, video; acc[0] unused. */
md_status md_space_supervised_baseline(const md_world *w, const md_space_train_opts *o, md_world_split split,
                                       int64_t n, double acc[4]);

#ifdef __cplusplus
}
#endif
#endif
