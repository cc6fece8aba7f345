/* datasets.h — readers for the real sources the demo world is built from
 * (see ../shared/DESIGN.md, "The demo world"):
 *
 *   MNIST        IDX files, gzip-compressed or raw: 28×28 u8 digits + labels
 *   FSDD         a folder of WAV files named {digit}_{speaker}_{take}.wav
 *   Sign digits  a folder of JPEG photos in one sub-folder per digit, 0..9
 *
 * Every reader validates what it reads: a missing, truncated or corrupt
 * file, a bad magic number, a count that disagrees with the file size, an
 * unknown speaker, a missing take, a digit folder with no photos — each is
 * an error (MD_ERR_IO, MD_ERR_FORMAT or MD_ERR_INVALID) with a message naming
 * the file and the reason, never a crash and never a silently smaller set.
 *
 * Ownership: each struct owns its buffers; free with its _free function
 * (safe on a zeroed struct, leaves it zeroed). Loaders fill a zeroed struct
 * and leave it zeroed on failure. Not thread-safe per struct; loaded data is
 * read-only and may be shared between threads.
 */
#ifndef MEDLEY_DATASETS_H
#define MEDLEY_DATASETS_H

#include "md.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- MNIST (IDX) ---- */
typedef struct md_mnist {
    int64_t n;          /* number of images */
    uint8_t *images;    /* [n, 28, 28], 0 = paper, 255 = full ink */
    uint8_t *labels;    /* [n], 0..9 */
} md_mnist;

/* Reads an IDX3 image file and its IDX1 label file (".gz" or raw, told
 * apart by the gzip magic, not the name). Checks magics 2051/2049, 28×28,
 * equal counts, exact sizes (trailing bytes are an error) and labels 0..9. */
md_status md_mnist_load(const char *images_path, const char *labels_path, md_mnist *out);
void md_mnist_free(md_mnist *m);

/* ---- FSDD ---- */
#define MD_FSDD_SPEAKERS 6
#define MD_FSDD_TAKES 50
/* Speaker names in index order (alphabetical): george, jackson, lucas,
 * nicolas, theo, yweweler. */
extern const char *const md_fsdd_speaker_names[MD_FSDD_SPEAKERS];
int md_fsdd_speaker_index(const char *name);   /* -1 if unknown */

typedef struct md_fsdd_clip {
    int digit, speaker, take;
    int64_t n;          /* samples */
    float *samples;     /* mono, [-1, 1], at md_fsdd.rate; points into md_fsdd.pool */
} md_fsdd_clip;

typedef struct md_fsdd {
    int n;              /* 10 × 6 × 50 = 3000 for the complete set */
    int rate;
    md_fsdd_clip *clips;    /* sorted by (digit, speaker, take) */
    float *pool;            /* all samples, one block */
} md_fsdd;

/* Reads every "{digit}_{speaker}_{take}.wav" in dir (other files are
 * ignored), mixes down to mono and resamples to `rate`. Requires the complete
 * set: every digit 0..9 × every speaker × takes 0..49, each exactly once;
 * clips longer than 10 s or empty are errors. */
md_status md_fsdd_load(const char *dir, int rate, md_fsdd *out);
void md_fsdd_free(md_fsdd *f);
/* Index of (digit, speaker, take) in clips, or -1. */
int md_fsdd_find(const md_fsdd *f, int digit, int speaker, int take);

/* ---- Sign Language Digits ---- */
typedef struct md_sign {
    int n;
    int size;           /* images are size × size RGB */
    uint8_t *images;    /* [n, size, size, 3] */
    uint8_t *labels;    /* [n], 0..9 */
    int *rank;          /* [n], position of the photo in its digit folder, by sorted file name */
} md_sign;

/* Reads dir/0 .. dir/9 (each must exist and hold at least one photo with a
 * .jpg/.jpeg name, any case); every photo is decoded, centre-cropped to a
 * square and resized (area-averaged) to size × size. A photo that fails to
 * decode is an error naming it. Sorted by (digit, file name). */
md_status md_sign_load(const char *dir, int size, md_sign *out);
void md_sign_free(md_sign *s);

#ifdef __cplusplus
}
#endif
#endif
