/* fuzz_audio.c — libFuzzer harness for md_audio_load_memory (libsndfile
 * behind Medley's limits and validation).
 *
 * Build and run (not part of CI):
 *   clang -std=c17 -g -O1 -D_GNU_SOURCE -fopenmp \
 *     -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *     -Icore core/md.c core/media.c core/audio_io.c tests/fuzz_audio.c \
 *     $(pkg-config --cflags --libs sndfile samplerate) -lm -o /tmp/fuzz_audio
 *   /tmp/test_audio_io --seeds /tmp/audio-seeds      # optional seed corpus
 *   mkdir -p /tmp/audio-corpus
 *   /tmp/fuzz_audio -max_total_time=60 -rss_limit_mb=2048 -max_len=65536 \
 *     /tmp/audio-corpus /tmp/audio-seeds
 *
 * libsndfile itself is not instrumented, so ASan sees Medley's code (the
 * virtual I/O callbacks, buffer growth, validation) and crashes anywhere.
 *
 * Each input is loaded with tight limits; on success the result must obey
 * them, every sample must be finite, and every tag valid UTF-8 (checked by
 * touching each byte so ASan sees overreads). A broken invariant traps. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "audio_io.h"

#include <math.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(x) do { if (!(x)) __builtin_trap(); } while (0)

static void quiet_log(md_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)user;
    REQUIRE(msg != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    md_log_set_callback(quiet_log, NULL);
    md_media_limits lim = md_media_limits_default();
    lim.max_seconds = 2.0;     /* at 768 kHz × 8 ch: 12M samples, 49 MB */
    lim.max_channels = 8;
    lim.max_bytes = 1 << 20;
    md_audio a = {0};
    md_meta meta = {0};
    md_status st = md_audio_load_memory(data, size, "fuzz", &lim, &a, &meta);
    if (st == MD_OK) {
        REQUIRE(a.channels >= 1 && a.channels <= lim.max_channels);
        REQUIRE(a.rate >= MD_AUDIO_MIN_RATE && a.rate <= MD_AUDIO_MAX_RATE);
        REQUIRE(a.frames >= 1 && (double)a.frames <= lim.max_seconds * a.rate);
        for (int64_t i = 0; i < a.frames * a.channels; i++)
            REQUIRE(isfinite(a.samples[i]));
        for (int i = 0; i < meta.count; i++)
            REQUIRE(strlen(meta.keys[i]) > 0 && strlen(meta.values[i]) > 0);
        /* The conversions must accept whatever the loader produced. */
        md_audio m = {0};
        REQUIRE(md_audio_mixdown(&a, &m) == MD_OK && m.frames == a.frames);
        md_audio_free(&m);
    } else {
        REQUIRE(a.samples == NULL && a.frames == 0);
        REQUIRE(md_last_error()[0] != 0);
    }
    md_audio_free(&a);
    md_meta_free(&meta);
    return 0;
}
