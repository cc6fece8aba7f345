/* tokens_gen.h — the token generators: image, video and caption from the
 * token transformer (core/tokens.h) and the image tokenizer (core/vqgan.h).
 *
 * The caller loads the models (generators never open files) and keeps them
 * alive while the generator lives. A generator holds its own sampling
 * session, or shares the workspace's with the other token generators made
 * with it (ws, may be NULL; see generator.h), so one runs at a time.
 *
 * Parameters: seed is the run's; temperature, top_k, top_p, guidance.
 */
#ifndef MEDLEY_TOKENS_GEN_H
#define MEDLEY_TOKENS_GEN_H

#include "generator.h"
#include "tokens.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out: MD_MOD_IMAGE, MD_MOD_VIDEO or MD_MOD_TEXT. model_id names the
 * models for outputs' metadata (copied). NULL with a message when out is
 * another modality or memory runs out. */
md_generator *md_gen_tokens_new(md_modality out, const md_tokmodel *tm, const md_vqgan *vq, const md_space *sp,
                                const char *model_id, md_gen_workspace *ws);

#ifdef __cplusplus
}
#endif
#endif
