/* fuzz_video.c — libFuzzer harness for md_video_load_memory (FFmpeg's
 * demuxers and decoders behind Medley's limits, custom AVIOContext,
 * frame sampling and resampling).
 *
 * Build and run (not part of CI):
 *   clang -std=c17 -g -O1 -D_GNU_SOURCE -fopenmp \
 *     -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *     -Icore core/md.c core/media.c core/video_io.c tests/fuzz_video.c \
 *     $(pkg-config --cflags --libs libavformat libavcodec libswscale libswresample libavutil) \
 *     -lm -o /tmp/fuzz_video
 *   mkdir -p /tmp/video-corpus /tmp/video-seeds    # seeds: small MP4/WebM/GIF files
 *   /tmp/fuzz_video -max_total_time=60 -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
 *     /tmp/video-corpus /tmp/video-seeds
 *
 * FFmpeg is not instrumented, so ASan sees Medley's code (the I/O
 * callbacks, sampling, buffer growth, hand-over) and crashes anywhere.
 *
 * Each input is loaded with tight limits and odd options chosen from its
 * first byte; on success the result must obey the limits, every pixel must
 * be in [0, 1] and every sample finite (each is read, so ASan sees
 * overreads). A broken invariant traps. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "video_io.h"

#include <math.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(x) do { if (!(x)) __builtin_trap(); } while (0)

static void quiet(md_log_level level, const char *msg, void *user)
{
    (void)level; (void)msg; (void)user;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        md_log_set_callback(quiet, NULL);
        init = 1;
    }
    md_media_limits lim = md_media_limits_default();
    lim.max_pixels = 256 * 256;
    lim.max_frames = 64;
    lim.max_seconds = 10;
    lim.max_bytes = 1 << 20;
    lim.max_channels = 8;
    md_video_load_opts o = md_video_load_opts_default();
    unsigned sel = size ? data[0] : 0;
    if (sel & 1) o.fps = 3;
    if (sel & 2) { o.width = 17; o.height = 0; }
    if (sel & 4) o.start = 0.3;
    if (sel & 8) o.duration = 0.7;
    if (sel & 16) o.no_audio = true;
    if (sel & 32) { o.audio_rate = 44100; o.audio_channels = 2; }

    md_video v = {0};
    md_meta m = {0};
    md_status s = md_video_load_memory(data, size, "fuzz", &lim, &o, &v, &m);
    if (s == MD_OK) {
        REQUIRE(v.frames >= 1 && v.frames <= lim.max_frames);
        REQUIRE((int64_t)v.width * v.height <= lim.max_pixels && v.channels == 3);
        REQUIRE(v.fps > 0 && v.fps <= MD_VIDEO_MAX_FPS);
        size_t n = (size_t)v.frames * (size_t)v.width * (size_t)v.height * 3;
        for (size_t i = 0; i < n; i++)
            REQUIRE(v.pixels[i] >= 0.0f && v.pixels[i] <= 1.0f);
        if (v.audio.samples) {
            REQUIRE(v.audio.channels >= 1 && v.audio.rate >= 1);
            size_t na = (size_t)v.audio.frames * (size_t)v.audio.channels;
            for (size_t i = 0; i < na; i++)
                REQUIRE(isfinite(v.audio.samples[i]));
        }
        for (int i = 0; i < m.count; i++)
            REQUIRE(strlen(m.keys[i]) < 256 && strlen(m.values[i]) < (size_t)1 << 30);
    } else {
        REQUIRE(v.pixels == NULL && v.frames == 0 && v.audio.samples == NULL);
    }
    md_video_free(&v);
    md_meta_free(&m);
    return 0;
}
