/* image_diffusion_gen.h — the diffusion path for pictures: DDIM over the
 * image tokenizer's latents (core/imagegen.h) with classifier-free
 * guidance, candidates drawn side by side of which the aligned space keeps
 * the one closest to the condition, snapped to codes and decoded. The token
 * path (tokens_gen.h) stays beside it; a job picks one per output.
 *
 * The caller loads the models (generators never open files) and keeps them
 * alive while the generator lives.
 *
 * Parameters: steps, guidance, eta, candidates; the seed is the run's.
 * Previews are the decoded estimate of the picture every few steps.
 *
 * Videos by diffusion ("diffusion-video"): the picture drawn so, then
 * moved along a path the motion model (core/motion.h) draws from the
 * condition and the typed text, as the token path moves its frame 0. There
 * is no temporal attention: every frame is the first one moved. One more
 * parameter, motion_temperature.
 */
#ifndef MEDLEY_IMAGE_DIFFUSION_GEN_H
#define MEDLEY_IMAGE_DIFFUSION_GEN_H

#include "generator.h"
#include "imagegen.h"
#include "motion.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The candidates parameter's default (pictures and videos' first frames). */
#define MD_GEN_DIFFUSION_CANDIDATES 4
/* The steer parameter's default (space guidance; 0: none). */
#define MD_GEN_DIFFUSION_STEER 0.2
#define MD_GEN_DIFFUSION_STEER_UNTIL 0.6

/* A drawn picture [3, 64, 64] in [-1, 1] as an image (values in [0, 1]);
 * and 16 such frames as a new video (MD_WORLD_FPS). Both diffusion
 * generators' outputs. */
void md_gen_diffusion_to_image(const float *x, md_image *im);
md_status md_gen_diffusion_to_video(const float *frames, md_video *v);

/* NULL with a message when the model is neither of the tokenizer's latent
 * shape nor of the pictures' or memory runs out. model_id is copied; ws
 * lends working memory (see generator.h; NULL: the generator keeps its
 * own). */
md_generator *md_gen_image_diffusion_new(const md_unet *u, const md_vqgan *vq, const md_space *sp,
                                         const char *model_id, md_gen_workspace *ws);
/* The same over a motion model (required: NULL is refused by name). */
md_generator *md_gen_video_diffusion_new(const md_unet *u, const md_vqgan *vq, const md_space *sp,
                                         const md_motion *mo, const char *model_id, md_gen_workspace *ws);

#ifdef __cplusplus
}
#endif
#endif
