/* audio_io.h — audio files to md_audio and back (libsndfile), plus the two
 * conversions models need: resampling (libsamplerate) and mixdown.
 *
 * Usage:
 *   md_media_limits lim = md_media_limits_default();
 *   md_audio a = {0};
 *   md_meta meta = {0};
 *   if (md_audio_load("in.flac", &lim, &a, &meta) != MD_OK)
 *       show(md_last_error());          // "in.flac: ..." names file and reason
 *   md_audio mono = {0}, a16 = {0};
 *   md_audio_mixdown(&a, &mono);
 *   md_audio_resample(&mono, 16000, &a16);
 *   md_audio_save("out.wav", &a16, "wav", &meta);
 *   md_audio_free(&a); md_audio_free(&mono); md_audio_free(&a16); md_meta_free(&meta);
 *
 * Formats read: whatever the linked libsndfile reads (WAV, FLAC, OGG/Vorbis,
 * AIFF, AU, ...; MP3 with libsndfile >= 1.1 built with mpg123, as Debian 12's
 * 1.2.0 is). Samples come back as f32; integer formats are scaled by
 * 1/2^(bits-1), so 16-bit PCM gives k/32768.
 *
 * Ownership: outputs are caller-zeroed structs filled on success and left
 * zeroed on failure; free them with md_audio_free / md_meta_free. Outputs must
 * not alias inputs.
 *
 * Threads: every function is reentrant (no globals; libsndfile and
 * libsamplerate handles are per call). Errors go through md_log, so
 * md_last_error() is per thread.
 */
#ifndef MEDLEY_AUDIO_IO_H
#define MEDLEY_AUDIO_IO_H

#include "media.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sample-rate bounds accepted by the loader and by md_audio_resample. */
#define MD_AUDIO_MIN_RATE 1
#define MD_AUDIO_MAX_RATE 768000

/* Loads an audio file as f32 interleaved frames.
 *
 * lim: NULL means md_media_limits_default(). Refused before any allocation
 * larger than one read chunk: file size > max_bytes, channels > max_channels,
 * rate outside [MD_AUDIO_MIN_RATE, MD_AUDIO_MAX_RATE], a header frame count
 * longer than max_seconds. Where the format does not say its length (streams,
 * some MP3s) or says it wrongly, frames are read in chunks into a buffer that
 * grows with the data actually decoded and stops at max_seconds, so memory is
 * at most about twice the decoded audio.
 *
 * A header that promises more frames than the file holds (a truncated WAV)
 * loads the frames that exist and logs a WARN with both counts.
 *
 * Errors: MD_ERR_IO (cannot open/stat/read), MD_ERR_FORMAT (not audio, no
 * frames, NaN/Inf samples, libsndfile refused it), MD_ERR_INVALID (over a
 * limit), MD_ERR_ALLOC.
 *
 * meta: nullable; on success receives the tags present, under the keys
 * "title", "artist", "album", "comment", "software", "date", "copyright",
 * "license", "tracknumber", "genre". Tags that are not valid UTF-8 (old WAV
 * INFO chunks are often Latin-1) are converted from Latin-1. Existing
 * entries with other keys are kept. */
md_status md_audio_load(const char *path, const md_media_limits *lim, md_audio *out, md_meta *meta);

/* The same from memory (buf is only read, and only during the call). label
 * names the input in messages (e.g. the original file name); NULL gives
 * "(memory)". */
md_status md_audio_load_memory(const void *buf, size_t len, const char *label, const md_media_limits *lim,
                               md_audio *out, md_meta *meta);

/* Writes a as an audio file, atomically: the data goes to PATH.tmp-XXXXXX in
 * the same folder, which is synced and renamed over path, so a reader never
 * sees half a file and a failure leaves any old file intact.
 *
 * format: "wav" (16-bit PCM), "wav-float" (32-bit float) or "flac" (16-bit).
 * 16-bit samples are round(x * 32768) clamped to [-32768, 32767], the inverse
 * of the loader's scaling, so k/32768 values round-trip exactly and others
 * within half an LSB (+1.0 within one).
 *
 * Samples outside [-1, 1] are clipped (for every format, float included)
 * and the number clipped is logged at WARN. NaN or Inf samples are refused
 * (MD_ERR_INVALID, naming the first bad frame): a silent zero would hide a
 * broken generator.
 *
 * meta: nullable; the known keys listed at md_audio_load are written (WAV
 * INFO chunk, FLAC Vorbis comments); other keys, and keys the container
 * cannot hold, are skipped with a DEBUG message. libsndfile may append its
 * own name to "software". */
md_status md_audio_save(const char *path, const md_audio *a, const char *format, const md_meta *meta);

/* Resamples src to rate Hz into dst, all channels, with libsamplerate's
 * SRC_SINC_MEDIUM_QUALITY (121 dB SNR, 90% bandwidth: far below 16-bit
 * noise, several times faster than BEST; model inputs do not need more).
 * dst->frames is exactly llround(src->frames * rate / src->rate). The
 * rate ratio must be within 1/256..256 (libsamplerate's bound). A rate equal
 * to src->rate copies. */
md_status md_audio_resample(const md_audio *src, int rate, md_audio *dst);

/* mono = one channel, each frame the mean of src's channels. */
md_status md_audio_mixdown(const md_audio *src, md_audio *mono);

#ifdef __cplusplus
}
#endif
#endif
