/* space_input.c — see space_input.h. */
#include "space_input.h"
#include "audio_io.h"
#include "dsp.h"
#include "image_io.h"
#include "media_tensor.h"
#include "video_io.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Any image -> 64×64 RGB bytes, cover-cropped (the world's frame). */
static md_status fit_rgb(const md_image *im, uint8_t *rgb)
{
    md_image fit = {0};
    md_status st = md_image_fit(im, MD_WORLD_SIZE, MD_WORLD_SIZE, MD_FIT_CROP, 0.f, 3, &fit);
    if (st != MD_OK)
        return st;
    for (int i = 0; i < MD_WORLD_SIZE * MD_WORLD_SIZE * 3; i++) {
        float v = fit.pixels[i] * 255.f + 0.5f;
        rgb[i] = (uint8_t)(v < 0.f ? 0.f : v > 255.f ? 255.f : v);
    }
    md_image_free(&fit);
    return MD_OK;
}

md_status md_space_prep_image(const md_image *im, float *x)
{
    uint8_t rgb[MD_WORLD_SIZE * MD_WORLD_SIZE * 3];
    md_status st = fit_rgb(im, rgb);
    if (st == MD_OK)
        md_judge_prep_rgb(rgb, x);   /* as the image encoder reads the world's images */
    return st;
}

md_status md_space_prep_audio(const md_audio *a, float *x)
{
    md_audio mono = {0};
    md_status st = md_audio_to_mono(a, MD_WORLD_RATE, &mono);
    if (st != MD_OK)
        return st;
    /* the loudest second, as the demo world keeps it */
    float clip[MD_WORLD_AUDIO_SAMPLES] = {0};
    int64_t start = md_loudest_window(mono.samples, mono.frames, MD_WORLD_AUDIO_SAMPLES);
    int64_t n = mono.frames < MD_WORLD_AUDIO_SAMPLES ? mono.frames : MD_WORLD_AUDIO_SAMPLES;
    float peak = 0;
    for (int64_t i = 0; i < n; i++)
        peak = fmaxf(peak, fabsf(mono.samples[start + i]));
    float gain = peak > 1e-4f ? 0.7f / peak : 1.f;   /* the world's level */
    for (int64_t i = 0; i < n; i++)
        clip[i] = mono.samples[start + i] * gain;
    md_audio_free(&mono);
    return md_judge_prep_audio(clip, x);
}

md_status md_space_prep_video(const md_video *v, float *x)
{
    if (v->frames < 1) {
        md_log(MD_LOG_ERROR, "video has no frames");
        return MD_ERR_INVALID;
    }
    /* the first second at the world's 16 fps (the last frame repeats in a
     * shorter clip) */
    const size_t fsz = (size_t)MD_WORLD_SIZE * MD_WORLD_SIZE * 3;
    uint8_t *frames = malloc(fsz * MD_WORLD_FRAMES);
    if (!frames)
        return MD_ERR_ALLOC;
    md_status st = MD_OK;
    for (int t = 0; t < MD_WORLD_FRAMES && st == MD_OK; t++) {
        int64_t want = (int64_t)llround((double)t * v->fps / MD_WORLD_FPS);
        int64_t f = want < v->frames ? want : v->frames - 1;
        md_image fr = {.width = v->width, .height = v->height, .channels = v->channels,
                       .pixels = v->pixels + (size_t)f * (size_t)v->width * (size_t)v->height * (size_t)v->channels};
        st = fit_rgb(&fr, frames + fsz * (size_t)t);
    }
    if (st == MD_OK)
        md_judge_prep_frames(frames, x);
    free(frames);
    return st;
}

void md_space_input_free(md_space_input *in)
{
    if (!in)
        return;
    free(in->x);
    free(in->text);
    memset(in, 0, sizeof *in);
}

md_status md_space_input_from_text(const char *text, md_space_input *in)
{
    memset(in, 0, sizeof *in);
    md_text t = {0};
    md_status st = md_text_set(&t, text, -1, "text input");
    if (st != MD_OK)
        return st;
    in->modality = MD_MOD_TEXT;
    in->text = t.utf8;   /* ownership moves */
    return MD_OK;
}

static md_status alloc_x(md_space_input *in, md_modality m)
{
    in->modality = m;
    in->x = malloc(sizeof(float) * (size_t)md_space_input_size(m));
    if (!in->x) {
        md_log(MD_LOG_ERROR, "out of memory");
        return MD_ERR_ALLOC;
    }
    return MD_OK;
}

md_modality md_space_input_kind(const void *head, size_t n, const char **fmt_out)
{
    const char *fmt = md_media_format_name(head, n);
    if (fmt_out)
        *fmt_out = fmt;
    if (fmt && (!strcmp(fmt, "PNG") || !strcmp(fmt, "JPEG") || !strcmp(fmt, "GIF") || !strcmp(fmt, "WebP") ||
                !strcmp(fmt, "BMP") || !strcmp(fmt, "TIFF")))
        return MD_MOD_IMAGE;
    if (fmt && (!strcmp(fmt, "WAV") || !strcmp(fmt, "FLAC") || !strcmp(fmt, "Ogg") || !strcmp(fmt, "MP3")))
        return MD_MOD_AUDIO;
    if (fmt && (!strcmp(fmt, "MP4/MOV") || !strcmp(fmt, "Matroska/WebM") || !strcmp(fmt, "AVI")))
        return MD_MOD_VIDEO;
    return MD_MOD_TEXT;
}

static md_video_load_opts video_opts(void)
{
    md_video_load_opts o = md_video_load_opts_default();
    o.fps = MD_WORLD_FPS;
    o.duration = (double)MD_WORLD_FRAMES / MD_WORLD_FPS;
    o.height = MD_WORLD_SIZE * 2;
    o.no_audio = true;
    return o;
}

/* Decoded media -> the encoder's input. */
static md_status prep_decoded(md_space_input *in, md_modality m, const md_image *im, const md_audio *a,
                              const md_video *v)
{
    md_status st = alloc_x(in, m);
    if (st == MD_OK)
        st = m == MD_MOD_IMAGE ? md_space_prep_image(im, in->x)
             : m == MD_MOD_AUDIO ? md_space_prep_audio(a, in->x)
                                 : md_space_prep_video(v, in->x);
    if (st != MD_OK)
        md_space_input_free(in);
    return st;
}

/* A file (path) or bytes in memory (buf, len, label): one reader. */
static md_status input_from(const char *path, const void *buf, size_t len, const char *label, md_space_input *in)
{
    memset(in, 0, sizeof *in);
    md_media_limits lim = md_media_limits_default();
    unsigned char head[16];
    size_t nhead = len < sizeof head ? len : sizeof head;
    if (path) {
        FILE *f = fopen(path, "rb");
        if (!f) {
            md_log(MD_LOG_ERROR, "%s: cannot open: %s", path, strerror(errno));
            return MD_ERR_IO;
        }
        nhead = fread(head, 1, sizeof head, f);
        fclose(f);
        label = path;
    } else {
        memcpy(head, buf, nhead);
    }
    const char *fmt;
    md_modality m = md_space_input_kind(head, nhead, &fmt);
    md_image im = {0};
    md_audio a = {0};
    md_video v = {0};
    md_video_load_opts o = video_opts();
    md_status st;
    if (m == MD_MOD_IMAGE) {
        lim.min_side = MD_WORLD_SIZE * 2;
        st = path ? md_image_load(path, &lim, &im, NULL) : md_image_load_memory(buf, len, label, &lim, &im, NULL);
    } else if (m == MD_MOD_AUDIO) {
        st = path ? md_audio_load(path, &lim, &a, NULL) : md_audio_load_memory(buf, len, label, &lim, &a, NULL);
    } else if (m == MD_MOD_VIDEO) {
        st = path ? md_video_load(path, &lim, &o, &v, NULL)
                  : md_video_load_memory(buf, len, label, &lim, &o, &v, NULL);
    } else {
        md_text t = {0};
        st = path ? md_text_load(path, &lim, &t) : md_text_set(&t, buf, (int64_t)len, label);
        if (st != MD_OK) {
            md_log(MD_LOG_ERROR, "%s: neither a media file Medley reads (%s) nor UTF-8 text", label,
                   fmt ? fmt : "unknown format");
            return MD_ERR_FORMAT;
        }
        in->modality = MD_MOD_TEXT;
        in->text = t.utf8;
        return MD_OK;
    }
    if (st == MD_OK)
        st = prep_decoded(in, m, &im, &a, &v);
    md_image_free(&im);
    md_audio_free(&a);
    md_video_free(&v);
    return st;
}

md_status md_space_input_from_file(const char *path, md_space_input *in)
{
    return input_from(path, NULL, 0, NULL, in);
}

md_status md_space_input_from_memory(const void *buf, size_t len, const char *label, md_space_input *in)
{
    return input_from(NULL, buf, len, label ? label : "(memory)", in);
}

md_status md_space_embed_input(const md_space *sp, md_graph *g, const md_space_input *in, float *out)
{
    if (in->modality == MD_MOD_TEXT) {
        const char *t = in->text;
        return md_space_embed(sp, g, MD_MOD_TEXT, &t, 1, out);
    }
    return md_space_embed(sp, g, in->modality, in->x, 1, out);
}
