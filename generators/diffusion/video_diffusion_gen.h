/* video_diffusion_gen.h — videos by diffusion with temporal attention:
 * DDIM over all 16 frames at once with the video model (core/imagegen.h,
 * MD_VIDEOGEN_MODEL; the U-Net's temporal attention ties the frames),
 * classifier-free guidance, space guidance on every frame, and candidates
 * of which the space's video encoder keeps the one closest to the
 * condition. Frames are drawn at 32 × 32 and enlarged to 64 × 64.
 *
 * The caller loads the model (generators never open files) and keeps it
 * alive while the generator lives. Parameters: steps, guidance, eta,
 * candidates, steer, steer_until; previews are frame 0 of the estimate.
 */
#ifndef MEDLEY_VIDEO_DIFFUSION_GEN_H
#define MEDLEY_VIDEO_DIFFUSION_GEN_H

#include "generator.h"
#include "image_diffusion_gen.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The candidates parameter's default: each candidate is 16 frames. */
#define MD_GEN_VIDEO_DIFFUSION_CANDIDATES 1

/* NULL with a message when u is not a video model or memory runs out. */
md_generator *md_gen_video_diffusion_temporal_new(const md_unet *u, const md_space *sp, const char *model_id,
                                                  md_gen_workspace *ws);

#ifdef __cplusplus
}
#endif
#endif
