/* fuzz_image.c — libFuzzer harness for md_image_load_memory (PNG, JPEG,
 * sniffing). Limits are tight so each input decodes in milliseconds.
 *
 *   clang -std=c17 -g -O1 -fsanitize=fuzzer,address,undefined -fopenmp -D_GNU_SOURCE -Icore \
 *       core/md.c core/media.c core/image_io.c tests/fuzz_image.c \
 *       $(pkg-config --cflags --libs libpng libjpeg) -lm -o /tmp/fuzz_image
 *   /tmp/fuzz_image -max_total_time=60 -max_len=65536 CORPUS_DIR
 */
#include "image_io.h"

#include <string.h>

static void quiet(md_log_level level, const char *msg, void *user)
{
    MD_UNUSED(level);
    MD_UNUSED(msg);
    MD_UNUSED(user);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        md_log_set_callback(quiet, NULL);
        init = true;
    }
    md_media_limits lim = md_media_limits_default();
    lim.max_pixels = 1 << 20;
    lim.max_bytes = 1 << 20;
    md_image im = {0};
    md_meta meta = {0};
    if (md_image_load_memory(data, size, "fuzz", &lim, &im, &meta) == MD_OK) {
        /* Touch every sample: a short buffer shows up under ASan. */
        size_t n = (size_t)im.width * (size_t)im.height * (size_t)im.channels;
        float acc = 0.0f;
        for (size_t i = 0; i < n; i++)
            acc += im.pixels[i];
        MD_ASSERT(acc >= 0.0f && im.channels >= 1 && im.channels <= 4);
        for (int i = 0; i < meta.count; i++)
            MD_ASSERT(strlen(meta.keys[i]) < 1024 && meta.values[i]);
    }
    md_image_free(&im);
    md_meta_free(&meta);
    return 0;
}
