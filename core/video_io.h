/* video_io.h — video files to md_video and back (FFmpeg 5.1: libavformat,
 * libavcodec, libswscale, libswresample).
 *
 * Usage:
 *   md_video_load_opts o = md_video_load_opts_default();
 *   o.fps = 4; o.width = 256; o.height = 0;      // 0 keeps the aspect ratio
 *   md_video v = {0};
 *   md_meta meta = {0};
 *   if (md_video_load("in.mp4", NULL, &o, &v, &meta) != MD_OK)
 *       show(md_last_error());                   // "in.mp4: ..." names file and reason
 *   md_video_save("out.mp4", &v, "mp4", &meta);
 *   md_video_free(&v); md_meta_free(&meta);
 *
 * Containers read: whatever the linked FFmpeg demuxes (MP4, MOV, MKV, WebM,
 * AVI, animated GIF, ...). Frames come back as RGB (channels = 3), f32 in
 * [0, 1]; alpha (GIF, VP9 alpha) is dropped.
 *
 * Ownership: outputs are caller-zeroed structs, filled on success and left
 * zeroed on failure; free with md_video_free / md_meta_free.
 *
 * Threads: every function is reentrant (FFmpeg contexts are per call). The
 * first call routes FFmpeg's own log to md_log at DEBUG, once (pthread_once);
 * this replaces any av_log callback the host set before. Errors go through
 * md_log, so md_last_error() is per thread.
 */
#ifndef MEDLEY_VIDEO_IO_H
#define MEDLEY_VIDEO_IO_H

#include "media.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest output frame side, and frame rate, the loader accepts. */
#define MD_VIDEO_MAX_SIDE 16384
#define MD_VIDEO_MAX_FPS 1000.0

typedef struct md_video_load_opts {
    double fps;          /* output rate; 0 = the stream's own. Frame k is the
                            decoded frame whose presentation time is nearest
                            to start + k / fps */
    int width, height;   /* output size; both 0 = native; one 0 = keep aspect.
                            Shrinking uses SWS_AREA, enlarging bicubic */
    double start;        /* seconds from the first video frame; seeks with
                            av_seek_frame(BACKWARD) then decodes forward */
    double duration;     /* most seconds to return; 0 = to the end */
    bool no_audio;       /* true: out->audio stays empty */
    int audio_rate;      /* soundtrack rate; 0 = 16000 */
    int audio_channels;  /* soundtrack channels; 0 = 1 (mixdown) */
    bool still;          /* accept still-image inputs (image2, *_pipe demuxers)
                            as one-frame videos; md_image_load uses this for the
                            formats it hands to FFmpeg (GIF, WebP, BMP, TIFF) */
} md_video_load_opts;

/* Everything 0/false: native rate and size, whole file, 16 kHz mono audio. */
md_video_load_opts md_video_load_opts_default(void);

/* Loads a video (and its best audio stream) as f32 RGB frames.
 *
 * lim: NULL = md_media_limits_default(). o: NULL = defaults.
 * Refused before any large allocation: file size > max_bytes; a frame
 * (codec parameters, and every decoded frame again) or the output size
 * > max_pixels; a known duration of the requested segment > max_seconds;
 * its frame count at the output rate > max_frames; audio channels >
 * max_channels. Containers may lie about duration, so frames are counted
 * as they are decoded: a stream that turns out to yield more than
 * max_frames frames is refused too (MD_ERR_INVALID, never truncated).
 * Decoding also stops after max_seconds × 1000 + 1000 decoded frames
 * (a stream whose timestamps never advance).
 *
 * Frames: out->fps is o->fps, or the stream's guessed rate (25 when it
 * has none). The audio track covers exactly the returned frames
 * (frames / fps seconds), resampled with swresample; silence pads it where
 * the audio starts late or ends early. A file without audio, or
 * o->no_audio, leaves out->audio zeroed.
 *
 * A truncated file returns the frames that decode (MD_OK) when its
 * header is intact, else an error.
 *
 * Errors: MD_ERR_IO (cannot open/stat), MD_ERR_FORMAT (not media, no video
 * stream, no decoder, nothing decodes; FFmpeg's reason via av_strerror),
 * MD_ERR_INVALID (bad option, over a limit), MD_ERR_ALLOC.
 *
 * meta: nullable; on success receives the container tags, keys in ASCII
 * lower case (Matroska stores "MEDLEY"; we return "medley"; keys longer
 * than 255 bytes are cut), e.g. "title", "encoder", "medley"; tags that
 * are not valid UTF-8 are skipped. Existing entries with other keys are kept. */
md_status md_video_load(const char *path, const md_media_limits *lim, const md_video_load_opts *o,
                        md_video *out, md_meta *meta);

/* The same from memory (buf is only read, and only during the call),
 * through a custom AVIOContext. label names the input in messages; NULL
 * gives "(memory)". */
md_status md_video_load_memory(const void *buf, size_t len, const char *label, const md_media_limits *lim,
                               const md_video_load_opts *o, md_video *out, md_meta *meta);

/* Writes v atomically: to PATH.tmp.EXT (EXT = format; the muxer comes from
 * format, not the name), synced, then renamed over path; the temporary is
 * removed on failure, so a failure leaves any old file intact.
 *
 * format: "mp4"  = H.264 (libx264, yuv420p, crf 18) + AAC (FFmpeg's "aac");
 *         "webm" = VP9 (libvpx-vp9, yuv420p, crf 30) + Opus (libopus, 48 kHz).
 * Audio is written only when v->audio has samples; more than 2 channels are
 * downmixed to stereo. yuv420p needs even sides, so an odd width or height
 * is padded by one column/row repeating the edge (logged at INFO; the
 * loader then returns the padded size). Alpha (channels 4) is dropped.
 *
 * meta: nullable; every key/value becomes a container tag (MP4 with
 * movflags use_metadata_tags, so arbitrary keys such as "medley" survive).
 *
 * Errors: MD_ERR_INVALID (bad v or format), MD_ERR_UNSUPPORTED (encoder
 * missing from this FFmpeg), MD_ERR_IO, MD_ERR_ALLOC, MD_ERR (encoder or
 * muxer failure, with FFmpeg's reason). */
md_status md_video_save(const char *path, const md_video *v, const char *format, const md_meta *meta);

#ifdef __cplusplus
}
#endif
#endif
