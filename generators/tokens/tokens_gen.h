/* tokens_gen.h — the token generators: image, video and caption from the
 * token transformer (core/tokens.h) and the image tokenizer (core/vqgan.h).
 *
 * The caller loads the models (generators never open files) and keeps them
 * alive while the generator lives. A generator holds its own sampling
 * session, or shares the workspace's with the other token generators made
 * with it (ws, may be NULL; see generator.h), so one runs at a time.
 *
 * Parameters: seed is the run's; temperature, top_k, top_p, guidance.
 *
 * Videos: frame 0 from the token transformer; frames 1-15 either from it
 * too (motion 0), or frame 0 moved along a path the motion model
 * (core/motion.h; mo, may be NULL) draws for the condition (motion 1; -1,
 * the default, picks 1 when mo is given).
 */
#ifndef MEDLEY_TOKENS_GEN_H
#define MEDLEY_TOKENS_GEN_H

#include "generator.h"
#include "motion.h"
#include "tokens.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The candidates parameter's defaults: a picture's, and a video's first
 * frames' (its later frames cost nothing more with the motion model). */
#define MD_GEN_TOKENS_IMAGE_CANDIDATES 8
#define MD_GEN_TOKENS_VIDEO_CANDIDATES 30

/* out: MD_MOD_IMAGE, MD_MOD_VIDEO or MD_MOD_TEXT. model_id names the
 * models for outputs' metadata (copied). NULL with a message when out is
 * another modality or memory runs out. */
md_generator *md_gen_tokens_new(md_modality out, const md_tokmodel *tm, const md_vqgan *vq, const md_space *sp,
                                const md_motion *mo, const char *model_id, md_gen_workspace *ws);

#ifdef __cplusplus
}
#endif
#endif
