/* test_media.c — the media structs: metadata, allocation limits. */
#include "check.h"
#include "media.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    md_meta m = {0};
    CHECK(md_meta_set(&m, "title", "a red seven") == MD_OK && md_meta_set(&m, "seed", "7") == MD_OK,
          "metadata set");
    CHECK(md_meta_set(&m, "title", "a blue two, naïve") == MD_OK && m.count == 2 &&
              strcmp(md_meta_get(&m, "title"), "a blue two, naïve") == 0,
          "setting a key again replaces its value and keeps the order");
    CHECK(md_meta_get(&m, "missing") == NULL, "absent key is NULL");
    md_meta_free(&m);
    CHECK(m.count == 0 && m.keys == NULL, "free leaves the struct zeroed");

    md_image im;
    CHECK(md_image_alloc(&im, 3, 2, 4) == MD_OK && im.pixels && im.width == 3 && im.height == 2, "image alloc");
    md_image_free(&im);
    md_clear_error();
    CHECK(md_image_alloc(&im, 0, 2, 3) == MD_ERR_INVALID && im.pixels == NULL && strstr(md_last_error(), "0 x 2"),
          "zero-width image refused: %s", md_last_error());
    CHECK(md_image_alloc(&im, 1 << 30, 1 << 30, 4) != MD_OK && im.pixels == NULL, "overflowing image refused: %s",
          md_last_error());
    CHECK(md_image_alloc(&im, 2, 2, 5) == MD_ERR_INVALID, "five channels refused");

    md_audio a;
    CHECK(md_audio_alloc(&a, 16000, 1, 16000) == MD_OK && a.samples && a.frames == 16000, "audio alloc");
    md_audio_free(&a);
    CHECK(md_audio_alloc(&a, 0, 1, 10) == MD_ERR_INVALID && a.samples == NULL, "zero rate refused");
    CHECK(md_audio_alloc(&a, 8000, 2, 0) == MD_OK, "empty audio allowed as a value");
    md_audio_free(&a);

    md_video v;
    CHECK(md_video_alloc(&v, 64, 64, 3, 16, 8.0) == MD_OK && v.pixels && v.audio.samples == NULL,
          "video alloc (16 frames of 64x64 RGB, silent)");
    md_video_free(&v);
    CHECK(md_video_alloc(&v, 64, 64, 3, 16, 0.0) == MD_ERR_INVALID && v.pixels == NULL, "zero fps refused: %s",
          md_last_error());

    md_text t;
    CHECK(md_text_set(&t, "a red 7, naïve 😀", -1, "prompt") == MD_OK && t.len == strlen("a red 7, naïve 😀"),
          "UTF-8 text accepted");
    md_text_free(&t);
    md_clear_error();
    CHECK(md_text_set(&t, "caf\xe9", -1, "latin1.txt") == MD_ERR_FORMAT && strstr(md_last_error(), "latin1.txt") &&
              strstr(md_last_error(), "byte 3"),
          "Latin-1 refused with file and offset: %s", md_last_error());
    CHECK(md_text_set(&t, "\xed\xa0\x80", -1, "s") == MD_ERR_FORMAT, "UTF-16 surrogate refused");
    CHECK(md_text_set(&t, "\xc0\xaf", -1, "s") == MD_ERR_FORMAT, "overlong encoding refused");
    CHECK(md_text_set(&t, "ab\0cd", 5, "nul.txt") == MD_ERR_FORMAT, "NUL inside refused");
    CHECK(md_text_set(&t, "\xe2\x82", 2, "cut.txt") == MD_ERR_FORMAT, "cut-off sequence refused");
    {
        char path[512];
        const char *dir = getenv("MEDLEY_TEST_TMP");
        snprintf(path, sizeof path, "%s/bom.txt", dir && *dir ? dir : "/tmp");
        FILE *f = fopen(path, "wb");
        fputs("\xEF\xBB\xBFseven, written in green\n", f);
        fclose(f);
        CHECK(md_text_load(path, NULL, &t) == MD_OK && strcmp(t.utf8, "seven, written in green\n") == 0,
              "text file loads, BOM dropped");
        md_text_free(&t);
        md_media_limits tiny = md_media_limits_default();
        tiny.max_bytes = 8;
        CHECK(md_text_load(path, &tiny, &t) == MD_ERR_INVALID && strstr(md_last_error(), "max_bytes"),
              "text over max_bytes refused: %s", md_last_error());
        remove(path);
        CHECK(md_text_load(path, NULL, &t) == MD_ERR_IO && strstr(md_last_error(), "bom.txt"),
              "missing text file: %s", md_last_error());
    }

    md_media_limits l = md_media_limits_default();
    CHECK(l.max_pixels > 0 && l.max_frames > 0 && l.max_seconds > 0 && l.max_bytes > 0 && l.max_channels > 0,
          "default limits are set");
    return check_done();
}
