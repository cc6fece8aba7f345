/* media.c — media structs, metadata, limits (see media.h). */
#include "media.h"

#include <stdlib.h>
#include <string.h>

md_media_limits md_media_limits_default(void)
{
    md_media_limits l;
    l.max_pixels = (int64_t)64 << 20;
    l.max_frames = 20000;
    l.max_seconds = 3600.0;
    l.max_bytes = (int64_t)2 << 30;
    l.max_channels = 64;
    return l;
}

md_status md_meta_set(md_meta *m, const char *key, const char *value)
{
    for (int i = 0; i < m->count; i++)
        if (strcmp(m->keys[i], key) == 0) {
            char *v = strdup(value);
            if (!v)
                return MD_ERR_ALLOC;
            free(m->values[i]);
            m->values[i] = v;
            return MD_OK;
        }
    if (m->count == m->cap) {
        int nc = m->cap ? 2 * m->cap : 8;
        char **nk = realloc(m->keys, sizeof *nk * (size_t)nc);
        if (!nk)
            return MD_ERR_ALLOC;
        m->keys = nk;
        char **nv = realloc(m->values, sizeof *nv * (size_t)nc);
        if (!nv)
            return MD_ERR_ALLOC;
        m->values = nv;
        m->cap = nc;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return MD_ERR_ALLOC;
    }
    m->keys[m->count] = k;
    m->values[m->count] = v;
    m->count++;
    return MD_OK;
}

const char *md_meta_get(const md_meta *m, const char *key)
{
    for (int i = 0; i < m->count; i++)
        if (strcmp(m->keys[i], key) == 0)
            return m->values[i];
    return NULL;
}

void md_meta_free(md_meta *m)
{
    for (int i = 0; i < m->count; i++) {
        free(m->keys[i]);
        free(m->values[i]);
    }
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

md_status md_image_alloc(md_image *im, int width, int height, int channels)
{
    memset(im, 0, sizeof *im);
    if (width < 1 || height < 1 || channels < 1 || channels > 4) {
        md_log(MD_LOG_ERROR, "image of %d x %d x %d: sizes must be positive and channels 1 to 4", width, height,
               channels);
        return MD_ERR_INVALID;
    }
    size_t n;
    if (__builtin_mul_overflow((size_t)width, (size_t)height, &n) ||
        __builtin_mul_overflow(n, (size_t)channels * sizeof(float), &n)) {
        md_log(MD_LOG_ERROR, "image of %d x %d x %d is too large", width, height, channels);
        return MD_ERR_INVALID;
    }
    im->pixels = malloc(n);
    if (!im->pixels) {
        md_log(MD_LOG_ERROR, "out of memory for a %d x %d image", width, height);
        return MD_ERR_ALLOC;
    }
    im->width = width;
    im->height = height;
    im->channels = channels;
    return MD_OK;
}

void md_image_free(md_image *im)
{
    free(im->pixels);
    memset(im, 0, sizeof *im);
}

md_status md_audio_alloc(md_audio *a, int rate, int channels, int64_t frames)
{
    memset(a, 0, sizeof *a);
    if (rate < 1 || channels < 1 || frames < 0) {
        md_log(MD_LOG_ERROR, "audio of %d Hz, %d channels, %lld frames: invalid", rate, channels,
               (long long)frames);
        return MD_ERR_INVALID;
    }
    size_t n;
    if (__builtin_mul_overflow((size_t)frames, (size_t)channels * sizeof(float), &n)) {
        md_log(MD_LOG_ERROR, "audio of %lld frames is too long", (long long)frames);
        return MD_ERR_INVALID;
    }
    a->samples = malloc(n ? n : sizeof(float));
    if (!a->samples) {
        md_log(MD_LOG_ERROR, "out of memory for %lld audio frames", (long long)frames);
        return MD_ERR_ALLOC;
    }
    a->rate = rate;
    a->channels = channels;
    a->frames = frames;
    return MD_OK;
}

void md_audio_free(md_audio *a)
{
    free(a->samples);
    memset(a, 0, sizeof *a);
}

md_status md_video_alloc(md_video *v, int width, int height, int channels, int64_t frames, double fps)
{
    memset(v, 0, sizeof *v);
    if (width < 1 || height < 1 || channels < 1 || channels > 4 || frames < 0 || !(fps > 0) || fps > 1000) {
        md_log(MD_LOG_ERROR, "video of %d x %d x %d, %lld frames at %g fps: invalid", width, height, channels,
               (long long)frames, fps);
        return MD_ERR_INVALID;
    }
    size_t n;
    if (__builtin_mul_overflow((size_t)width, (size_t)height, &n) ||
        __builtin_mul_overflow(n, (size_t)channels * sizeof(float), &n) ||
        __builtin_mul_overflow(n, (size_t)(frames ? frames : 1), &n)) {
        md_log(MD_LOG_ERROR, "video of %d x %d, %lld frames is too large", width, height, (long long)frames);
        return MD_ERR_INVALID;
    }
    v->pixels = malloc(n);
    if (!v->pixels) {
        md_log(MD_LOG_ERROR, "out of memory for %lld video frames", (long long)frames);
        return MD_ERR_ALLOC;
    }
    v->width = width;
    v->height = height;
    v->channels = channels;
    v->frames = frames;
    v->fps = fps;
    return MD_OK;
}

void md_video_free(md_video *v)
{
    free(v->pixels);
    md_audio_free(&v->audio);
    memset(v, 0, sizeof *v);
}
