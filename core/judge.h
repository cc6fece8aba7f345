/* judge.h — the judges: small classifiers that read any image, audio clip
 * or video and report its demo-world attributes (world.h), so every
 * generator's outputs can be scored (metrics.h). Trained only on real and
 * corpus data (never on generated outputs); the text judge is the
 * rule-based md_caption_parse (caption.h).
 *
 *   image  [4, 64, 64]   RGB and an ink channel (distance from the border's
 *                        median colour): digit, style, ink, background,
 *                        position, size
 *   video  the image network on frames 0, 3, .., 15 (digit, ink,
 *          background and size by vote over the frames) and the path of
 *          the ink centroid over all 16 frames (motion, speed); its weights
 *          are the image judge's (md_judge_video_from_image)
 *   audio  [1, 40, 101]  log-mel at 8 kHz: digit, speaker
 *
 * One CNN shape for all three: seven 3×3 convs (32, 32, 64, 64, 128, 128,
 * 128 channels; stride 2 at the 2nd, 4th and 6th), each followed by
 * GroupNorm (8 groups) and SiLU, then a
 * 128-wide feature layer (the features Fréchet distances are computed on)
 * and one linear head per attribute. Image and video feed it the map
 * pooled by a learned saliency over the 8×8 positions (what is shown,
 * wherever it is, however small) beside a 64-wide layer over
 * the flattened 8×8 map (where it is, and how it moves); audio averages
 * over time (where the word falls in the clip does not matter) and keeps
 * the frequency axis.
 *
 * Usage
 *   md_judge j;
 *   md_judge_load(&j, "assets/models/judge-image.safetensors", MD_WORLD_IMAGE);
 *   md_judge_prep_rgb(rgb, x);                        // x: md_judge_input_size floats
 *   md_judge_read(&j, g, x, 1, attrs, feats);         // attrs [1][MD_ATTR_COUNT]
 *   md_judge_free(&j);
 */
#ifndef MEDLEY_JUDGE_H
#define MEDLEY_JUDGE_H

#include "dsp.h"
#include "tensor.h"
#include "world.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_JUDGE_FEATURES 128
#define MD_JUDGE_VERSION 4
#define MD_JUDGE_CONVS 7
#define MD_JUDGE_VIDEO_FRAMES 6     /* frames 0, 3, 6, 9, 12, 15 */
#define MD_JUDGE_IMAGE_CHANNELS 4   /* R, G, B, ink */

typedef struct md_judge {
    md_world_kind kind;
    int cin, h, w;                  /* input [cin, h, w] */
    md_paramset *ps;                /* owned; NULL inside another model */
    md_tensor *conv_w[MD_JUDGE_CONVS], *conv_b[MD_JUDGE_CONVS];
    md_tensor *gn_w[MD_JUDGE_CONVS], *gn_b[MD_JUDGE_CONVS];   /* GroupNorm (8 groups) + SiLU after each conv */
    md_tensor *att_w, *att_b;       /* image/video: saliency 1×1 conv [1, 128, 1, 1] */
    md_tensor *where_w, *where_b;   /* image/video: [64, 128·8·8] (NULL for audio) */
    md_tensor *fc_w, *fc_b;         /* [128, flat], [128] */
    md_tensor *head_w[MD_ATTR_COUNT], *head_b[MD_ATTR_COUNT];   /* NULL: not read */
    md_mel_params mel;              /* audio features */
} md_judge;

/* Whether a judge of this kind reads attribute a. */
bool md_judge_reads(md_world_kind kind, md_attr a);
/* Floats per prepared input. */
int64_t md_judge_input_size(md_world_kind kind);
/* Log-mel parameters of the audio judge: 8 kHz, n_fft 256, hop 80, 40 mels. */
md_mel_params md_judge_mel_params(void);

md_status md_judge_init(md_judge *j, md_world_kind kind, uint64_t seed);
/* The judge's network inside another model (the space's encoders):
 * declares its parameters into ps, names prefixed by `prefix`, with the
 * attribute heads or without; j->ps stays NULL (ps is the caller's).
 * md_judge_net_init fills the weights once ps is allocated. */
void md_judge_net_declare(md_judge *j, md_world_kind kind, md_paramset *ps, const char *prefix, bool heads);
void md_judge_net_init(md_judge *j, uint64_t seed);
void md_judge_free(md_judge *j);
/* Refuses a file that is not a judge, a judge of another kind, or another
 * version, with a message naming the file and what it is. */
md_status md_judge_load(md_judge *j, const char *path, md_world_kind kind);
md_status md_judge_save(const md_judge *j, const char *path, const char *recipe_json, const char *data_hash);

/* Input preparation (pure; no files). rgb: [64, 64, 3] u8 HWC;
 * frames: [16, 64, 64, 3] u8 (6 frames prepared, then the ink centroid of
 * all 16); audio: MD_WORLD_AUDIO_SAMPLES f32 at 8 kHz. */
void md_judge_prep_rgb(const uint8_t *rgb, float *x);
void md_judge_prep_frames(const uint8_t *frames, float *x);
md_status md_judge_prep_audio(const float *audio, float *x);
/* Renders and prepares a world sample for its kind's judge (scratch: at
 * least MD_WORLD_FRAMES*64*64*3 bytes for video, else may be NULL). */
md_status md_judge_prep_sample(const md_world *w, const md_world_sample *s, uint8_t *scratch, float *x);

/* Builds the forward graph: x [N, cin, h, w] -> features [N, 128] (after
 * ReLU); logits[a] [N, classes] for every attribute read (else NULL). */
md_tensor *md_judge_forward(md_graph *g, const md_judge *j, md_tensor *x, md_tensor *logits[MD_ATTR_COUNT]);

/* Reads n prepared inputs (in batches; graph reset inside): attrs[i][a] =
 * argmax or -1 for attributes not read; feats [n, 128] may be NULL. */
md_status md_judge_read(const md_judge *j, md_graph *g, const float *x, int64_t n,
                        int (*attrs)[MD_ATTR_COUNT], float *feats);

/* ---- training ---- */
typedef struct md_judge_train_opts {
    int64_t steps;                  /* default per kind */
    int batch;                      /* 32 */
    float lr;                       /* 2e-3 peak, warmup 3%, cosine to 1/20 */
    uint64_t seed;                  /* world and init seed */
    void (*progress)(int64_t step, int64_t steps, float loss, void *user);
    void *user;
    const volatile int *cancel;     /* checked every step */
} md_judge_train_opts;

void md_judge_train_default_opts(md_world_kind kind, md_judge_train_opts *o);
/* Trains j from its current weights on the world's train split (image and
 * audio; the video judge is made from the image judge). */
md_status md_judge_train(md_judge *j, const md_world *w, const md_judge_train_opts *o);

/* A video judge carrying image's weights. */
md_status md_judge_video_from_image(md_judge *video, const md_judge *image);

/* ---- evaluation on a split ---- */
typedef struct md_judge_eval {
    int64_t n;
    int64_t asked[MD_ATTR_COUNT], right[MD_ATTR_COUNT];
    int64_t photo_n, photo_right;   /* image: digit on sign photos */
    int64_t hand_n, hand_right;     /* image: digit on handwritten digits */
    double seconds;
} md_judge_eval;

/* Image and audio: every source item of the split once (md_world_draw_item);
 * video: `count` drawn samples. count > 0 also caps image/audio items
 * (spread evenly over the split), for quick checks. */
md_status md_judge_evaluate(const md_judge *j, const md_world *w, md_world_split split, uint64_t seed,
                            int64_t count, md_judge_eval *out);

#ifdef __cplusplus
}
#endif
#endif
