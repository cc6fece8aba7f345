/* media.h — Medley's media types: what files become before any model sees
 * them, and what generated outputs are before they become files.
 *
 * Four modalities, one set of plain structs (no hidden state, no GTK):
 *   text   UTF-8 bytes;
 *   image  W × H × C, interleaved (HWC), f32 in [0, 1], C = 1 (gray),
 *          2 (gray+alpha), 3 (RGB) or 4 (RGBA);
 *   audio  rate × channels × frames, interleaved frames, f32 in [-1, 1];
 *   video  frames of one image shape at a frame rate (T × H × W × C), plus
 *          an optional audio track.
 * Conversion to model tensors (resize, normalise, resample, mixdown) lives
 * beside the loaders; models and generators never open files.
 *
 * Ownership: every struct owns its buffers; free with its _free function
 * (safe on a zeroed struct, leaves it zeroed). Loaders fill a zeroed struct
 * and leave it zeroed on failure.
 *
 * Limits: every loader takes an md_media_limits and refuses, before any
 * large allocation, input whose header promises more (decompression bombs,
 * absurd sizes). md_media_limits_default() gives generous desktop values.
 *
 * Errors: a status code, and a message through md_log naming the file (or
 * label) and the reason; never a crash.
 */
#ifndef MEDLEY_MEDIA_H
#define MEDLEY_MEDIA_H

#include "md.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_media_limits {
    int64_t max_pixels;        /* width × height of one image or frame */
    int64_t max_frames;        /* video frames */
    double max_seconds;        /* audio or video duration */
    int64_t max_bytes;         /* size of the file read */
    int max_channels;          /* audio channels */
    int min_side;              /* 0: full size. Else a decoder that can shrink
                                * cheaply while decoding (JPEG's DCT scaling by
                                * 1/2, 1/4, 1/8) may return a smaller image whose
                                * shorter side is still >= min_side */
} md_media_limits;

/* 64 Mpixel images, 1 h of audio or video, 20 000 frames, 2 GiB files,
 * 64 audio channels, full-size decoding. */
md_media_limits md_media_limits_default(void);

/* Key/value metadata (PNG tEXt/iTXt, WAV INFO, container tags): UTF-8
 * strings, order kept. */
typedef struct md_meta {
    int count, cap;
    char **keys, **values;
} md_meta;

md_status md_meta_set(md_meta *m, const char *key, const char *value);   /* replaces */
const char *md_meta_get(const md_meta *m, const char *key);              /* NULL if absent */
void md_meta_free(md_meta *m);

/* Container or format name from a file's first bytes ("PNG", "JPEG",
 * "GIF", "WebP", "BMP", "TIFF", "WAV", "FLAC", "Ogg", "MP3", "MP4/MOV",
 * "Matroska/WebM", "AVI"), or NULL when the bytes name none of these.
 * Reports only; the loaders decide what they can read. */
const char *md_media_format_name(const void *head, size_t n);

typedef struct md_text {
    char *utf8;                /* valid UTF-8, NUL-terminated, no NUL inside */
    size_t len;                /* bytes, without the terminator */
} md_text;

/* Copies len bytes of s (len < 0: up to its NUL) after checking they are
 * UTF-8 without NUL bytes; the error names `label` and the byte offset. */
md_status md_text_set(md_text *t, const char *s, int64_t len, const char *label);
/* Reads a UTF-8 text file (a leading BOM is dropped); size against
 * lim->max_bytes (NULL = defaults). */
md_status md_text_load(const char *path, const md_media_limits *lim, md_text *out);
void md_text_free(md_text *t);

typedef struct md_image {
    int width, height, channels;
    float *pixels;             /* height × width × channels, row-major */
} md_image;

md_status md_image_alloc(md_image *im, int width, int height, int channels);
void md_image_free(md_image *im);

typedef struct md_audio {
    int rate;                  /* samples per second per channel */
    int channels;
    int64_t frames;
    float *samples;            /* frames × channels, interleaved */
} md_audio;

md_status md_audio_alloc(md_audio *a, int rate, int channels, int64_t frames);
void md_audio_free(md_audio *a);

typedef struct md_video {
    int width, height, channels;   /* every frame; channels 3 (RGB) or 4 */
    int64_t frames;
    double fps;                    /* frames per second, > 0 */
    float *pixels;                 /* frames × height × width × channels */
    md_audio audio;                /* soundtrack; samples NULL when silent */
    char video_codec[32];          /* as decoded ("h264", "vp9"); "" when made in memory */
    char audio_codec[32];          /* soundtrack's codec, "" when none */
} md_video;

md_status md_video_alloc(md_video *v, int width, int height, int channels, int64_t frames, double fps);
/* Frees frames and soundtrack. */
void md_video_free(md_video *v);

#ifdef __cplusplus
}
#endif
#endif
