/* test_media_tensor.c — fitting media to model shapes and back. */
#include "check.h"
#include "media_tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* w × h RGB image whose pixel (x, y) holds (x/w, y/h, 0.5). */
static void ramp(md_image *im, int w, int h)
{
    md_image_alloc(im, w, h, 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float *p = im->pixels + ((size_t)y * w + x) * 3;
            p[0] = (float)x / (float)w;
            p[1] = (float)y / (float)h;
            p[2] = 0.5f;
        }
}

int main(void)
{
    md_image src, out;
    ramp(&src, 8, 4);

    CHECK(md_image_crop(&src, 2, 1, 3, 2, &out) == MD_OK && out.width == 3 && out.height == 2 &&
              out.pixels[0] == 2.f / 8.f && out.pixels[1] == 1.f / 4.f,
          "crop takes the requested rectangle");
    md_image_free(&out);
    md_clear_error();
    CHECK(md_image_crop(&src, 6, 0, 3, 2, &out) == MD_ERR_INVALID && strstr(md_last_error(), "inside"),
          "a crop past the edge is refused: %s", md_last_error());

    CHECK(md_image_pad(&src, 10, 8, 0.25f, &out) == MD_OK && out.pixels[0] == 0.25f &&
              out.pixels[((size_t)2 * 10 + 1) * 3] == 0.f,
          "pad centres the image on the fill colour");
    md_image_free(&out);

    CHECK(md_image_fit(&src, 4, 4, MD_FIT_CROP, 0.f, 3, &out) == MD_OK && out.width == 4 && out.height == 4,
          "fit by crop: 8x4 -> 4x4");
    /* centre crop of a horizontal ramp keeps the middle: red spans ~[0.25, 0.75) */
    CHECK(out.pixels[0] > 0.2f && out.pixels[(size_t)3 * 3] < 0.8f, "crop keeps the centre (red %.3f..%.3f)",
          out.pixels[0], out.pixels[(size_t)3 * 3]);
    md_image_free(&out);

    CHECK(md_image_fit(&src, 4, 4, MD_FIT_PAD, 0.f, 1, &out) == MD_OK && out.channels == 1 && out.width == 4,
          "fit by pad to gray 4x4");
    CHECK(out.pixels[0] == 0.f && out.pixels[4 * 4 - 1] == 0.f && out.pixels[1 * 4 + 2] > 0.f,
          "letterbox rows are the fill, the middle rows image");
    md_image_free(&out);

    float mean[3] = {0.5f, 0.5f, 0.5f}, sd[3] = {0.25f, 0.25f, 0.25f};
    float chw[3 * 4 * 8];
    md_image_to_chw(&src, mean, sd, chw);
    CHECK(fabsf(chw[0] - (0.f - 0.5f) / 0.25f) < 1e-6f && fabsf(chw[32 + 8] - (0.25f - 0.5f) / 0.25f) < 1e-6f,
          "HWC -> normalised CHW");
    CHECK(md_image_from_chw(chw, 3, 4, 8, mean, sd, &out) == MD_OK &&
              memcmp(out.pixels, src.pixels, sizeof(float) * 8 * 4 * 3) == 0,
          "CHW -> image undoes the normalisation");
    md_image_free(&out);
    md_image_free(&src);

    md_audio a, m;
    md_audio_alloc(&a, 44100, 2, 44100);
    for (int64_t i = 0; i < a.frames; i++) {
        a.samples[2 * i] = 0.5f * sinf(2.f * 3.14159265f * 440.f * (float)i / 44100.f);
        a.samples[2 * i + 1] = a.samples[2 * i];
    }
    CHECK(md_audio_to_mono(&a, 16000, &m) == MD_OK && m.channels == 1 && m.rate == 16000 &&
              llabs((long long)m.frames - 16000) <= 1,
          "stereo 44.1 kHz -> mono 16 kHz (%lld frames)", (long long)m.frames);
    md_audio fixed;
    CHECK(md_audio_fix_length(&m, 20000, &fixed) == MD_OK && fixed.frames == 20000 &&
              fixed.samples[19999] == 0.f && fixed.samples[100] == m.samples[100],
          "fix length pads with silence");
    md_audio_free(&fixed);
    CHECK(md_audio_fix_length(&m, 100, &fixed) == MD_OK && fixed.frames == 100, "fix length cuts");
    md_audio_free(&fixed);
    md_audio_free(&m);
    md_audio_free(&a);
    return check_done();
}
