/* image_io.h — still images: PNG and JPEG in and out, resize, channel
 * conversion.
 *
 *   md_media_limits lim = md_media_limits_default();
 *   md_image im = {0};
 *   md_meta meta = {0};
 *   if (md_image_load("in.jpg", &lim, &im, &meta) != MD_OK)
 *       show(md_last_error());                 // names the file and why
 *   md_image small = {0};
 *   md_image_resize(&im, 256, 256, &small);
 *   md_image_save_png("out.png", &small, &meta, 8);
 *   md_image_free(&im); md_image_free(&small); md_meta_free(&meta);
 *
 * Loading
 *   - The format comes from the first bytes, never the file name. PNG and
 *     JPEG decode here (libpng, libjpeg: every colour type, text chunks,
 *     EXIF orientation); other image formats (GIF — its first frame —,
 *     WebP, BMP, TIFF, QOI, ...) go through FFmpeg's decoders as RGB, with
 *     the same limits, and fail with the format named when FFmpeg cannot
 *     decode them; anything that is not an image fails with MD_ERR_FORMAT
 *     and a message saying what the bytes look like (audio, video,
 *     archives, text, noise, empty files).
 *   - Limits: file size against lim->max_bytes, and width × height against
 *     lim->max_pixels read from the header before libpng or libjpeg decode
 *     anything (a 100000 × 100000 header in a tiny file fails at once with
 *     MD_ERR_FORMAT).
 *   - Truncated or corrupt data gives MD_ERR_FORMAT; nothing leaks, nothing
 *     is printed (library warnings go to md_log at MD_LOG_DEBUG).
 *   - PNG: every colour type and bit depth. Palette → RGB (RGBA when tRNS is
 *     present); tRNS on gray/RGB adds an alpha channel; 1/2/4-bit gray is
 *     scaled to [0, 1]; 16-bit samples keep their 16 bits (k / 65535).
 *     Interlaced files decode. gAMA/iCCP/sRGB are not applied: samples are
 *     returned as stored. tEXt/zTXt (Latin-1, converted to UTF-8) and iTXt
 *     (UTF-8) go into meta, in file order.
 *   - JPEG: baseline and progressive; gray → 1 channel, YCbCr/RGB → 3,
 *     CMYK/YCCK → 3 (naive conversion, Adobe inversion honoured; no colour
 *     management). The EXIF Orientation tag (APP1) is applied to the pixels,
 *     so the result is upright; orientations 5–8 swap width and height.
 *     COM segments go into meta under "Comment".
 *   - On failure `out` and `meta` are left zeroed (meta is only filled on
 *     success). `out` must be zeroed or freed on entry; it is overwritten.
 *
 * Thread safety: every function is reentrant; none keeps state.
 */
#ifndef MEDLEY_IMAGE_IO_H
#define MEDLEY_IMAGE_IO_H

#include "media.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loads a PNG or JPEG file. meta may be NULL; lim may be NULL for
 * md_media_limits_default(). */
md_status md_image_load(const char *path, const md_media_limits *lim, md_image *out, md_meta *meta);

/* The same from bytes in memory; label names the data in messages (NULL:
 * "image"). lim->max_bytes applies to len. */
md_status md_image_load_memory(const void *buf, size_t len, const char *label, const md_media_limits *lim,
                               md_image *out, md_meta *meta);

/* Writes a PNG of bit_depth 8 or 16 (colour type from im->channels: gray,
 * gray+alpha, RGB, RGBA). Samples are clamped to [0, 1] and rounded, so an
 * 8-bit round trip of k/255 is exact. meta entries are written as tEXt when
 * the value is ASCII (zTXt when longer than 1 KiB) and as iTXt otherwise;
 * keys must be 1–79 printable ASCII characters and values valid UTF-8
 * (MD_ERR_INVALID otherwise). Atomic: writes PATH.tmp, then renames it over
 * PATH; on failure PATH is untouched and PATH.tmp removed. */
md_status md_image_save_png(const char *path, const md_image *im, const md_meta *meta, int bit_depth);

/* Writes a baseline JPEG, quality 1–100 (4:2:0 chroma below 90, 4:4:4 from
 * 90 up). 1 and 2 channels write gray, 3 and 4 write YCbCr. Alpha is
 * DROPPED: colour samples are written as stored, not composited on any
 * background. Atomic as md_image_save_png. */
md_status md_image_save_jpeg(const char *path, const md_image *im, int quality);

/* Resizes src to w × h into dst (allocated here; dst must be zeroed or
 * freed). Separable triangle filter, sampled at pixel centres: when an axis
 * shrinks the triangle is widened to the scale factor (an antialiased tent
 * that averages every source pixel under the output pixel's footprint);
 * when it grows the triangle has radius 1, i.e. bilinear interpolation.
 * Edges clamp. Colour is filtered premultiplied by alpha (channels 2 and
 * 4), so transparent pixels do not bleed their colour. */
md_status md_image_resize(const md_image *src, int w, int h, md_image *dst);

/* Converts src to 1–4 channels into dst (allocated here). Gray → RGB
 * replicates; RGB → gray uses Rec. 601 luma (0.299 R + 0.587 G + 0.114 B,
 * the weights JPEG uses); alpha is dropped, or added as 1 (opaque). */
md_status md_image_convert(const md_image *src, int channels, md_image *dst);

#ifdef __cplusplus
}
#endif
#endif
