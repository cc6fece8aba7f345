/* world.h — the demo world: what Medley's bundled models know, composed
 * procedurally from real data (MNIST digits, FSDD voices, sign-language
 * photos; see datasets.h and ../shared/DESIGN.md).
 *
 * A sample is drawn from (seed, split, kind, index) alone: the same four
 * numbers give the same sample, bit for bit, on any thread and in any order,
 * so the corpus builder and a training loop drawing on the fly agree.
 *
 *   image  64×64 RGB: a handwritten digit in an ink colour on a background
 *          colour at one of 9 positions in one of 3 sizes, or a photo of a
 *          hand signing the digit (full frame);
 *   audio  MD_WORLD_AUDIO_SAMPLES at MD_WORLD_RATE: the digit spoken by an
 *          FSDD speaker, placed at an offset in the clip;
 *   video  MD_WORLD_FRAMES frames of 64×64 at MD_WORLD_FPS: a handwritten
 *          digit moving left/right/up/down or bouncing, slow or fast, with
 *          the spoken digit as its soundtrack (same length as the video).
 *
 * Splits (the sources' own where they have one):
 *   MNIST   train: train-file images 0..54999; val: 55000..59999; test: t10k
 *   FSDD    train: takes 10..49; val: takes 5..9; test: takes 0..4
 *   Sign    per digit folder, photos sorted by name, rank r:
 *           test: r % 5 == 4; val: r % 10 == 3; train: the rest
 *   Compositional: the digit–ink pairs (d, ink (d + 2) % 8) and the
 *   digit–motion pairs (d, motion d % 5) never appear in train or val; the
 *   `compo` split draws only those combinations, from test sources.
 */
#ifndef MEDLEY_WORLD_H
#define MEDLEY_WORLD_H

#include "datasets.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_WORLD_SIZE 64            /* image and frame side, pixels */
#define MD_WORLD_RATE 8000          /* models' audio sample rate (FSDD's own) */
#define MD_WORLD_AUDIO_SAMPLES 8000 /* 1 s clips */
#define MD_WORLD_FRAMES 16
#define MD_WORLD_FPS 16             /* 16 frames = 1 s = one audio clip */
#define MD_WORLD_VERSION 1          /* bump when a sample's content changes */

typedef enum md_world_kind { MD_WORLD_IMAGE = 0, MD_WORLD_AUDIO = 1, MD_WORLD_VIDEO = 2 } md_world_kind;
typedef enum md_world_split {
    MD_SPLIT_TRAIN = 0, MD_SPLIT_VAL = 1, MD_SPLIT_TEST = 2, MD_SPLIT_COMPO = 3
} md_world_split;
#define MD_WORLD_SPLITS 4
extern const char *const md_world_split_names[MD_WORLD_SPLITS];   /* train val test compo */
extern const char *const md_world_kind_names[3];                  /* image audio video */

/* Attributes: an index per attribute, -1 = absent / not stated. */
typedef enum md_attr {
    MD_ATTR_DIGIT = 0,   /* 0..9 */
    MD_ATTR_STYLE,       /* 0 handwritten, 1 photo (sign language) */
    MD_ATTR_INK,         /* colour index */
    MD_ATTR_BG,          /* colour index */
    MD_ATTR_POS,         /* 0..8, row-major 3×3 grid: top left .. bottom right */
    MD_ATTR_SIZE,        /* 0 small, 1 medium, 2 large */
    MD_ATTR_MOTION,      /* 0 left, 1 right, 2 up, 3 down, 4 bounce */
    MD_ATTR_SPEED,       /* 0 slow, 1 fast */
    MD_ATTR_SPEAKER,     /* FSDD speaker index */
    MD_ATTR_COUNT
} md_attr;

#define MD_COLOURS 8
#define MD_POSITIONS 9
#define MD_SIZES 3
#define MD_MOTIONS 5
#define MD_SPEEDS 2
#define MD_STYLES 2

extern const char *const md_attr_names[MD_ATTR_COUNT];   /* "digit", "style", "ink", ... */
extern const int md_attr_classes[MD_ATTR_COUNT];         /* 10, 2, 8, 8, 9, 3, 5, 2, 6 */
/* Canonical value names: digit "0".."9"; style handwritten/photo; colours
 * black white red green blue yellow purple orange; positions "top left",
 * "top", "top right", "left", "center", "right", "bottom left", "bottom",
 * "bottom right"; sizes small medium large; motions left right up down
 * bounce; speeds slow fast; speakers as md_fsdd_speaker_names. */
const char *md_attr_value_name(md_attr a, int v);   /* NULL if out of range */
extern const uint8_t md_colour_rgb[MD_COLOURS][3];
extern const char *const md_colour_names[MD_COLOURS];
extern const char *const md_position_names[MD_POSITIONS];
extern const char *const md_size_names[MD_SIZES];
extern const char *const md_motion_names[MD_MOTIONS];
extern const char *const md_speed_names[MD_SPEEDS];
extern const char *const md_digit_words[10];        /* "zero" .. "nine" */

/* Whether (ink, bg) is a legal pair: different and far enough apart to read. */
bool md_world_colours_ok(int ink, int bg);
/* Whether an attribute set is held out of train/val (compositional split). */
bool md_world_is_heldout(const int attr[MD_ATTR_COUNT]);

/* One drawn sample: everything needed to render it. */
typedef struct md_world_sample {
    md_world_kind kind;
    md_world_split split;
    uint64_t seed;
    int64_t index;
    int attr[MD_ATTR_COUNT];
    int src_image;          /* MNIST index (train or t10k file by split), or sign index; -1 none */
    int src_audio;          /* md_fsdd clip index; -1 none */
    float cx, cy;           /* centre of the digit box, pixels (frame 0 for video) */
    float box;              /* side of the digit box (28×28 MNIST cell scaled) */
    float ink_rgb[3], bg_rgb[3];   /* jittered colours, 0..1 */
    float dx, dy;           /* video: velocity, pixels per frame (bounce: dy = amplitude) */
    int audio_offset;       /* first sample of the spoken word in the clip */
    float audio_gain;
    uint64_t noise_key;     /* photo jitter */
} md_world_sample;

typedef struct md_world {
    md_mnist mnist_train, mnist_test;
    md_fsdd fsdd;
    md_sign sign;
    char data_hash[17];     /* hex of a hash over every source byte read */
    /* per split: candidate source indices */
    /* per split and digit: source indices (MNIST: into the train file for
     * train/val, the t10k file for test/compo; sign: into sign; FSDD: into
     * fsdd.clips) */
    int *mnist_idx[MD_WORLD_SPLITS][10]; int n_mnist[MD_WORLD_SPLITS][10];
    int *sign_idx[MD_WORLD_SPLITS][10];  int n_sign[MD_WORLD_SPLITS][10];
    int *fsdd_idx[MD_WORLD_SPLITS][10];  int n_fsdd[MD_WORLD_SPLITS][10];
} md_world;

/* Loads all sources from data_dir (holding mnist/, fsdd/recordings/,
 * sign-digits/images/); NULL data_dir means $MEDLEY_DATA_DIR. Errors name the
 * missing or corrupt file. */
md_status md_world_open(const char *data_dir, md_world *w);
void md_world_close(md_world *w);

/* Draws sample `index` of (seed, split, kind). For images, a fraction of
 * draws are sign photos (MD_WORLD_PHOTO_SHARE). */
#define MD_WORLD_PHOTO_SHARE 0.2f
md_status md_world_draw(const md_world *w, uint64_t seed, md_world_split split, md_world_kind kind,
                        int64_t index, md_world_sample *s);
/* As md_world_draw, but held-out combinations may appear in any split (the
 * judges read every combination; the generators never train on them).
 * Sources still come from the split alone. */
md_status md_world_draw_any(const md_world *w, uint64_t seed, md_world_split split, md_world_kind kind,
                            int64_t index, md_world_sample *s);
/* The split's source items in order, one sample per item (for test-set
 * evaluation that covers every source exactly once): image kind enumerates
 * MNIST then sign items; audio kind FSDD clips; returns the count via *n. */
int64_t md_world_enumerate_count(const md_world *w, md_world_split split, md_world_kind kind);
md_status md_world_draw_item(const md_world *w, uint64_t seed, md_world_split split, md_world_kind kind,
                             int64_t item, md_world_sample *s);

/* Renderers. rgb: [64, 64, 3] u8 (HWC). audio: [MD_WORLD_AUDIO_SAMPLES] f32.
 * frames: [16, 64, 64, 3] u8. */
void md_world_render_image(const md_world *w, const md_world_sample *s, uint8_t *rgb);
void md_world_render_audio(const md_world *w, const md_world_sample *s, float *audio);
void md_world_render_video(const md_world *w, const md_world_sample *s, uint8_t *frames, float *audio);

#ifdef __cplusplus
}
#endif
#endif
