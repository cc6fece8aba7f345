/* caption.h — captions of the demo world, and the text judge that reads
 * them back.
 *
 * md_caption_make writes natural captions of a drawn sample with varied
 * wording and order: digits as words ("seven") and numerals ("7"), synonyms
 * for colours, sizes, positions and motions, templates that differ per kind
 * (image, photo, audio, video), and some captions that state only some of
 * the attributes. Deterministic from (sample seed, index, variant).
 *
 * md_caption_parse is the text judge: a rule-based reader of the attributes
 * a caption states. It handles every wording md_caption_make produces and
 * the obvious ways a person types the same thing ("a red 7 at the top left
 * on black", "seven, written in green", "someone says three").
 */
#ifndef MEDLEY_CAPTION_H
#define MEDLEY_CAPTION_H

#include "world.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_CAPTION_MAX 256          /* bytes, NUL included */
#define MD_CAPTIONS_PER_SAMPLE 4    /* variants 0..3 of each sample */

/* Writes caption `variant` (any int >= 0) of s into buf (cap >= 64; longer
 * captions are never cut mid-word: MD_ERR_INVALID if cap is too small).
 * stated[] (may be NULL) receives the attributes the caption states, -1 for
 * the rest. */
md_status md_caption_make(const md_world_sample *s, int variant, char *buf, size_t cap,
                          int stated[MD_ATTR_COUNT]);

/* A caption that states only digit d, worded as for kind k ("a handwritten
 * seven", "someone says 7", ...); key picks the wording. */
md_status md_caption_digit(md_world_kind k, int d, uint64_t key, char *buf, size_t cap);

/* Fills attr[] with the attributes text states (-1 = not stated). Any UTF-8
 * or even invalid bytes are accepted; unknown words are ignored. */
void md_caption_parse(const char *text, int attr[MD_ATTR_COUNT]);

#ifdef __cplusplus
}
#endif
#endif
