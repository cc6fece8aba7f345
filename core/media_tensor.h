/* media_tensor.h — from media to the tensors models read, and back.
 *
 * Models see fixed shapes: an image model reads C × H × W floats normalised
 * per channel, an audio model mono samples at one rate. These functions do
 * that fitting (crop or pad to an aspect, resize, channel conversion,
 * normalisation, mixdown, resampling) so loaders stay format-only and
 * models never touch media structs. Outputs are written into caller memory
 * (or a zeroed struct the caller frees); nothing here opens a file.
 */
#ifndef MEDLEY_MEDIA_TENSOR_H
#define MEDLEY_MEDIA_TENSOR_H

#include "media.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum md_fit {
    MD_FIT_STRETCH = 0,   /* resize to w × h, aspect not kept */
    MD_FIT_CROP = 1,      /* scale to cover w × h, centre crop the excess */
    MD_FIT_PAD = 2        /* scale to fit inside w × h, pad with `fill` */
} md_fit;

/* Crops the rectangle (x, y, w, h), which must lie inside src. */
md_status md_image_crop(const md_image *src, int x, int y, int w, int h, md_image *dst);
/* Places src centred on a w × h canvas (w >= src width, h >= src height)
 * filled with `fill` (every channel; alpha too). */
md_status md_image_pad(const md_image *src, int w, int h, float fill, md_image *dst);
/* Brings src to exactly w × h by mode, then to `channels` channels. */
md_status md_image_fit(const md_image *src, int w, int h, md_fit mode, float fill, int channels, md_image *dst);

/* HWC image -> CHW floats: (pixel - mean[c]) / std[c]. mean/std NULL =
 * 0 and 1. out holds channels × height × width floats. */
void md_image_to_chw(const md_image *im, const float *mean, const float *std, float *out);
/* CHW floats -> image, undoing mean/std and clamping to [0, 1]. */
md_status md_image_from_chw(const float *chw, int channels, int height, int width, const float *mean,
                            const float *std, md_image *dst);

/* Any audio -> mono at `rate` (mean of channels, then resampling). */
md_status md_audio_to_mono(const md_audio *src, int rate, md_audio *dst);
/* Exactly `frames` frames: cut from the start, or padded with silence at
 * the end. */
md_status md_audio_fix_length(const md_audio *src, int64_t frames, md_audio *dst);

#ifdef __cplusplus
}
#endif
#endif
