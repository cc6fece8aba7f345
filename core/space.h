/* space.h — Medley's shared aligned embedding space (../shared/DESIGN.md):
 * four encoders that map text, images, audio and video into one
 * MD_SPACE_DIM-dimensional unit sphere where meaning lines up, trained as
 * CoDi's bridging alignment through text, and composition of several
 * inputs by a weighted sum.
 *
 *   text   byte-level BPE ids -> causal transformer (2 layers, d 128) ->
 *          the <eos> position -> LayerNorm -> linear -> unit vector
 *   image  [4, 64, 64] (RGB and the ink channel, as the image judge reads
 *          it) -> the judges' network shape without heads (seven convs
 *          with GroupNorm + SiLU, saliency pooling beside a "where"
 *          branch) -> 128 features -> linear -> unit vector
 *   audio  log-mel [1, 40, 101] at 8 kHz -> the audio judge's network
 *          shape without heads -> 128 -> linear -> unit vector
 *   video  frames 0, 3, .., 15 through the image encoder's network
 *          (frozen: the video stage learns only time) -> 6 frame tokens,
 *          and a motion token from the ink centroid's path over all 16
 *          frames -> + position -> one transformer block -> attention
 *          pooling (a learned query) -> linear -> unit vector
 *
 * Training (md_space_train): stage 1 aligns image <-> text with a symmetric
 * InfoNCE loss and a learned temperature; stage 2 freezes the text encoder
 * and aligns audio <-> text, then video <-> text. Beside the full captions,
 * each sample is also contrasted with the ten digit-only captions of its
 * kind ("a handwritten seven", "someone says 7"): the one thing every
 * modality shows, so it is what must line up across them. No image–audio or
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
#define MD_SPACE_VERSION 2
#define MD_SPACE_TEXT_LEN 48        /* tokens, <bos> and <eos> included */
#define MD_SPACE_VIDEO_FRAMES 6

typedef enum md_modality { MD_MOD_TEXT = 0, MD_MOD_IMAGE = 1, MD_MOD_AUDIO = 2, MD_MOD_VIDEO = 3 } md_modality;

typedef struct md_space {
    md_bpe *bpe;                      /* owned */
    int vocab, text_d, text_layers;
    /* one paramset per encoder, so stages train and freeze them apart */
    md_paramset *ps[4];
    /* text */
    md_tensor *tok_emb, *pos_emb;     /* [V, d], [T, d] */
    md_tblock text_blocks[4];
    md_tensor *lnf_w, *lnf_b, *text_proj;          /* proj [D, d] */
    /* image, audio: the judges' networks (no heads), then a projection */
    md_judge image_net, audio_net;
    md_tensor *image_proj, *audio_proj;            /* [D, 128] */
    /* video: 6 frame tokens (image_net features) and a motion token */
    md_tensor *video_pos;             /* [7, 128] */
    md_tensor *motion_w1, *motion_b1, *motion_w2, *motion_b2;   /* [128, 64], [128, 128] */
    md_tblock video_block;
    md_tensor *pool_q, *video_proj;   /* [128, 1], [D, 128] */
    /* learned temperatures (log of the logit scale), one per aligned pair */
    md_tensor *log_scale[4];          /* [1], in ps[modality]; text's unused */
    /* optional, not owned: readers that choose among candidate pictures
     * (probe.h); NULL: by the cosine alone */
    const struct md_probe *probe;
} md_space;

/* New space with a trained tokenizer (ownership passes to the space). */
md_status md_space_init(md_space *sp, md_bpe *bpe, uint64_t seed);
void md_space_free(md_space *sp);
md_status md_space_save(const md_space *sp, const char *path, const char *recipe_json, const char *data_hash);
/* Refuses another kind of model file or another version, naming the file. */
md_status md_space_load(md_space *sp, const char *path);

/* Input preparation. Text: ids [MD_SPACE_TEXT_LEN] (<bos> text <eos>,
 * padded, truncated) and the <eos> position. Image, audio and video are
 * prepared as their judges read them (md_judge_prep_rgb, _audio, _frames):
 * md_space_input_size(m) == md_judge_input_size(kind). */
int md_space_tokenize(const md_space *sp, const char *text, int32_t *ids);
int64_t md_space_input_size(md_modality m);
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

/* Which of n prepared inputs of one modality the space places closest to
 * cond (largest dot product; the first on ties): *best, and its score
 * when score is not NULL. Re-ranks a generator's candidates. Pictures,
 * when readers are attached (sp->probe), are scored by them instead
 * (md_probe_score, plus the cosine times their cos_weight). */
md_status md_space_pick_closest(const md_space *sp, md_graph *g, md_modality m, const void *inputs, int n,
                                const float *cond, int *best, float *score);
/* The score md_space_pick_closest ranks by, of each of n prepared inputs:
 * scores [n]. */
md_status md_space_scores(const md_space *sp, md_graph *g, md_modality m, const void *inputs, int n,
                          const float *cond, float *scores);

/* Composition: out = normalize(sum w_i v_i / sum w_i); v [n, D]. A zero
 * (|sum w| < 1e-6) or non-finite total weight, or a zero result, is
 * MD_ERR_INVALID with a message. */
md_status md_space_compose(const float *v, const float *w, int n, float *out);

/* ---- training ---- */
typedef struct md_space_train_opts {
    int64_t steps[4];                 /* per stage: [0] unused, [1] image-text, [2] audio-text, [3] video-text */
    int batch[4];
    float lr;
    float digit_weight;               /* weight of the digit-caption term (0.3) */
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
