/* media_tensor.c — see media_tensor.h. */
#include "media_tensor.h"

#include "audio_io.h"
#include "image_io.h"

#include <math.h>
#include <string.h>

md_status md_image_crop(const md_image *src, int x, int y, int w, int h, md_image *dst)
{
    memset(dst, 0, sizeof *dst);
    if (x < 0 || y < 0 || w < 1 || h < 1 || x > src->width - w || y > src->height - h) {
        md_log(MD_LOG_ERROR, "crop %dx%d at (%d, %d) does not lie inside a %dx%d image", w, h, x, y, src->width,
               src->height);
        return MD_ERR_INVALID;
    }
    md_status st = md_image_alloc(dst, w, h, src->channels);
    if (st != MD_OK)
        return st;
    size_t row = sizeof(float) * (size_t)w * (size_t)src->channels;
    for (int r = 0; r < h; r++)
        memcpy(dst->pixels + (size_t)r * w * src->channels,
               src->pixels + ((size_t)(y + r) * src->width + (size_t)x) * src->channels, row);
    return MD_OK;
}

md_status md_image_pad(const md_image *src, int w, int h, float fill, md_image *dst)
{
    memset(dst, 0, sizeof *dst);
    if (w < src->width || h < src->height) {
        md_log(MD_LOG_ERROR, "cannot pad a %dx%d image to the smaller %dx%d", src->width, src->height, w, h);
        return MD_ERR_INVALID;
    }
    md_status st = md_image_alloc(dst, w, h, src->channels);
    if (st != MD_OK)
        return st;
    size_t n = (size_t)w * (size_t)h * (size_t)src->channels;
    for (size_t i = 0; i < n; i++)
        dst->pixels[i] = fill;
    int x0 = (w - src->width) / 2, y0 = (h - src->height) / 2;
    size_t row = sizeof(float) * (size_t)src->width * (size_t)src->channels;
    for (int r = 0; r < src->height; r++)
        memcpy(dst->pixels + ((size_t)(y0 + r) * w + (size_t)x0) * src->channels,
               src->pixels + (size_t)r * src->width * src->channels, row);
    return MD_OK;
}

md_status md_image_fit(const md_image *src, int w, int h, md_fit mode, float fill, int channels, md_image *dst)
{
    memset(dst, 0, sizeof *dst);
    if (w < 1 || h < 1 || channels < 1 || channels > 4) {
        md_log(MD_LOG_ERROR, "cannot fit an image to %dx%d with %d channels", w, h, channels);
        return MD_ERR_INVALID;
    }
    /* Scaled size before crop/pad: cover (crop) or contain (pad). */
    double sx = (double)w / src->width, sy = (double)h / src->height;
    double s = mode == MD_FIT_CROP ? fmax(sx, sy) : fmin(sx, sy);
    int rw = w, rh = h;
    if (mode != MD_FIT_STRETCH) {
        rw = (int)lround(src->width * s);
        rh = (int)lround(src->height * s);
        if (mode == MD_FIT_CROP) {
            rw = rw < w ? w : rw;
            rh = rh < h ? h : rh;
        } else {
            rw = rw > w ? w : (rw < 1 ? 1 : rw);
            rh = rh > h ? h : (rh < 1 ? 1 : rh);
        }
    }
    md_image scaled = {0}, shaped = {0};
    md_status st = md_image_resize(src, rw, rh, &scaled);
    if (st != MD_OK)
        return st;
    if (mode == MD_FIT_CROP)
        st = md_image_crop(&scaled, (rw - w) / 2, (rh - h) / 2, w, h, &shaped);
    else if (mode == MD_FIT_PAD)
        st = md_image_pad(&scaled, w, h, fill, &shaped);
    else {
        shaped = scaled;
        scaled = (md_image){0};
    }
    md_image_free(&scaled);
    if (st != MD_OK)
        return st;
    if (shaped.channels == channels) {
        *dst = shaped;
        return MD_OK;
    }
    st = md_image_convert(&shaped, channels, dst);
    md_image_free(&shaped);
    return st;
}

void md_image_to_chw(const md_image *im, const float *mean, const float *std, float *out)
{
    int C = im->channels;
    size_t hw = (size_t)im->width * (size_t)im->height;
    for (int c = 0; c < C; c++) {
        float m = mean ? mean[c] : 0.f, inv = std ? 1.f / std[c] : 1.f;
        float *o = out + (size_t)c * hw;
        for (size_t i = 0; i < hw; i++)
            o[i] = (im->pixels[i * C + c] - m) * inv;
    }
}

md_status md_image_from_chw(const float *chw, int channels, int height, int width, const float *mean,
                            const float *std, md_image *dst)
{
    md_status st = md_image_alloc(dst, width, height, channels);
    if (st != MD_OK)
        return st;
    size_t hw = (size_t)width * (size_t)height;
    for (int c = 0; c < channels; c++) {
        float m = mean ? mean[c] : 0.f, sd = std ? std[c] : 1.f;
        for (size_t i = 0; i < hw; i++) {
            float v = chw[(size_t)c * hw + i] * sd + m;
            dst->pixels[i * channels + c] = v < 0.f ? 0.f : (v > 1.f ? 1.f : (v == v ? v : 0.f));
        }
    }
    return MD_OK;
}

md_status md_audio_to_mono(const md_audio *src, int rate, md_audio *dst)
{
    memset(dst, 0, sizeof *dst);
    md_audio mono = {0};
    md_status st = md_audio_mixdown(src, &mono);
    if (st != MD_OK)
        return st;
    if (mono.rate == rate) {
        *dst = mono;
        return MD_OK;
    }
    st = md_audio_resample(&mono, rate, dst);
    md_audio_free(&mono);
    return st;
}

md_status md_audio_fix_length(const md_audio *src, int64_t frames, md_audio *dst)
{
    md_status st = md_audio_alloc(dst, src->rate, src->channels, frames);
    if (st != MD_OK)
        return st;
    int64_t keep = src->frames < frames ? src->frames : frames;
    size_t ch = (size_t)src->channels;
    memcpy(dst->samples, src->samples, sizeof(float) * (size_t)keep * ch);
    memset(dst->samples + (size_t)keep * ch, 0, sizeof(float) * (size_t)(frames - keep) * ch);
    return MD_OK;
}
