/* video_diffusion_gen.h — videos by diffusion with temporal attention:
 * DDIM over all 16 frames at once with the video model (core/imagegen.h,
 * MD_VIDEOGEN_MODEL; the U-Net's temporal attention ties the frames),
 * classifier-free guidance, space guidance on every frame, motion
 * guidance (while space guidance steers, each frame pulled toward itself
 * moved so that its digit follows a path the motion model draws,
 * core/motion.h; at the end the frames placed on that path), and
 * candidates of which the space's video encoder keeps the one closest to
 * the condition. Frames are drawn at 32 × 32 and enlarged to 64 × 64.
 *
 * The caller loads the model (generators never open files) and keeps it
 * alive while the generator lives. Parameters: steps, guidance, eta,
 * candidates, steer, steer_until, motion_steer, motion_temperature;
 * previews are frame 0 of the estimate.
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

/* motion_steer's default. */
#define MD_GEN_VIDEO_DIFFUSION_MOTION_STEER 0.5

/* NULL with a message when u is not a video model or memory runs out. mo
 * (may be NULL: no motion guidance, and no motion_steer or
 * motion_temperature parameters) draws the path motion guidance follows. */
md_generator *md_gen_video_diffusion_temporal_new(const md_unet *u, const md_space *sp, const md_motion *mo,
                                                  const char *model_id, md_gen_workspace *ws);

#ifdef __cplusplus
}
#endif
#endif
