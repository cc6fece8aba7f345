/* corpus.h — writes the demo world (world.h) to disk as train / val / test /
 * compo shards, for inspection, other tools and training runs that prefer
 * files. Training loops may instead draw samples on the fly with
 * md_world_draw: with the same seed the shards hold exactly those samples.
 *
 * Layout of out_dir:
 *   manifest.json                        seed, data hash, held-out pairs,
 *                                        one entry per shard (written last)
 *   {split}-{kind}-{NNNN}.safetensors    one shard, tensors:
 *     attr             I32 [n, 9]        attributes (world.h order; -1 absent)
 *     src              I32 [n, 2]        source items (image, audio; -1 none)
 *     image            U8  [n, 64, 64, 3]            (image)
 *     video            U8  [n, 16, 64, 64, 3]        (video)
 *     audio            F16 [n, 8000]                 (audio; video soundtrack)
 *     captions         U8  [bytes]       MD_CAPTIONS_PER_SAMPLE per sample, NUL-separated
 *     caption_offsets  I32 [n * 4 + 1]   byte offsets of each caption
 *     stated           I32 [n, 4, 9]     attributes each caption states
 *   metadata: medley.model = "corpus-shard", world.version, seed, split,
 *   kind, first (index of the first sample), order ("draw" or "items"),
 *   data.hash.
 * Sample i of a shard is md_world_draw(seed, split, kind, first + i), or for
 * order "items" md_world_draw_item(..., (first + i) * items / count), where
 * items is md_world_enumerate_count and count the manifest's total for that
 * split and kind (equal when every item is written: one sample per item).
 */
#ifndef MEDLEY_CORPUS_H
#define MEDLEY_CORPUS_H

#include "world.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_CORPUS_ALL_ITEMS (-1)   /* count: every source item of the split, once */

typedef struct md_corpus_opts {
    const char *out_dir;
    uint64_t seed;
    int64_t count[MD_WORLD_SPLITS][3];   /* [split][kind]: samples, 0 = none, or MD_CORPUS_ALL_ITEMS */
    int shard_items[3];                  /* samples per shard, per kind */
    void (*progress)(const char *shard, int64_t done, int64_t total, void *user);
    void *user;
    const volatile int *cancel;          /* checked between shards */
} md_corpus_opts;

/* The default corpus: train 20000 images, 4800 clips, 1000 videos; val
 * 2000 / 600 / 200; test every image and audio source item once and 1000
 * videos; compo 1000 images and 500 videos. scale (0, 1] shrinks every count
 * (at least 1; all-items counts become that share of the items). */
void md_corpus_default_opts(md_corpus_opts *o, double scale);

typedef struct md_corpus_stats {
    int shards;
    int64_t samples[3];
    int64_t bytes;
    double seconds;
} md_corpus_stats;

/* Creates out_dir if needed. Errors name the file. */
md_status md_corpus_build(const md_world *w, const md_corpus_opts *o, md_corpus_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
