/* media.c — media structs, metadata, limits (see media.h). */
#include "media.h"

#include <errno.h>
#include <stdio.h>
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
    l.min_side = 0;
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

/* Offset of the first byte that breaks UTF-8 (overlongs, surrogates and
 * code points past U+10FFFF included) or is NUL; len when all is well. */
static size_t utf8_bad_offset(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c == 0)
            return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        int n = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0 || c == 0xC0 || c == 0xC1 || c > 0xF4 || i + (size_t)n >= len)
            return i;   /* not a lead byte, or the sequence is cut short */
        unsigned cp = c & (0x3F >> n);
        for (int k = 1; k <= n; k++) {
            if ((s[i + (size_t)k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + (size_t)k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += (size_t)n + 1;
    }
    return len;
}

md_status md_text_set(md_text *t, const char *s, int64_t len, const char *label)
{
    memset(t, 0, sizeof *t);
    size_t n = len < 0 ? strlen(s) : (size_t)len;
    size_t bad = utf8_bad_offset((const unsigned char *)s, n);
    if (bad < n) {
        md_log(MD_LOG_ERROR, "%s: not UTF-8 text (byte %zu is 0x%02x)", label ? label : "text", bad,
               (unsigned char)s[bad]);
        return MD_ERR_FORMAT;
    }
    t->utf8 = malloc(n + 1);
    if (!t->utf8) {
        md_log(MD_LOG_ERROR, "%s: out of memory for %zu bytes of text", label ? label : "text", n);
        return MD_ERR_ALLOC;
    }
    memcpy(t->utf8, s, n);
    t->utf8[n] = 0;
    t->len = n;
    return MD_OK;
}

md_status md_text_load(const char *path, const md_media_limits *lim, md_text *out)
{
    memset(out, 0, sizeof *out);
    md_media_limits dl = md_media_limits_default();
    if (!lim)
        lim = &dl;
    FILE *f = fopen(path, "rb");
    if (!f) {
        md_log(MD_LOG_ERROR, "%s: cannot open (%s)", path, strerror(errno));
        return MD_ERR_IO;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    md_status st = buf ? MD_OK : MD_ERR_ALLOC;
    while (st == MD_OK) {
        if (n == cap) {
            if ((int64_t)cap >= lim->max_bytes) {
                md_log(MD_LOG_ERROR, "%s: text longer than max_bytes %lld", path, (long long)lim->max_bytes);
                st = MD_ERR_INVALID;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                st = MD_ERR_ALLOC;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                md_log(MD_LOG_ERROR, "%s: read error", path);
                st = MD_ERR_IO;
            }
            break;
        }
    }
    fclose(f);
    if (st == MD_OK && (int64_t)n > lim->max_bytes) {
        md_log(MD_LOG_ERROR, "%s: text longer than max_bytes %lld", path, (long long)lim->max_bytes);
        st = MD_ERR_INVALID;
    }
    if (st == MD_OK) {
        size_t skip = n >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
        st = md_text_set(out, buf + skip, (int64_t)(n - skip), path);
    } else if (st == MD_ERR_ALLOC) {
        md_log(MD_LOG_ERROR, "%s: out of memory", path);
    }
    free(buf);
    return st;
}

void md_text_free(md_text *t)
{
    free(t->utf8);
    memset(t, 0, sizeof *t);
}

const char *md_media_format_name(const void *head, size_t n)
{
    const unsigned char *b = head;
#define HAS(off, lit) (n >= (size_t)(off) + sizeof(lit) - 1 && memcmp(b + (off), lit, sizeof(lit) - 1) == 0)
    if (HAS(0, "\x89PNG\r\n\x1a\n")) return "PNG";
    if (HAS(0, "\xff\xd8\xff")) return "JPEG";
    if (HAS(0, "GIF87a") || HAS(0, "GIF89a")) return "GIF";
    if (HAS(0, "RIFF") && HAS(8, "WEBP")) return "WebP";
    if (HAS(0, "RIFF") && HAS(8, "WAVE")) return "WAV";
    if (HAS(0, "RIFF") && HAS(8, "AVI ")) return "AVI";
    if (HAS(0, "BM") && n >= 26) return "BMP";
    if (HAS(0, "II*\0") || HAS(0, "MM\0*")) return "TIFF";
    if (HAS(0, "fLaC")) return "FLAC";
    if (HAS(0, "OggS")) return "Ogg";
    if (HAS(0, "ID3") || (n >= 2 && b[0] == 0xFF && (b[1] & 0xE0) == 0xE0)) return "MP3";
    if (HAS(4, "ftyp")) return "MP4/MOV";
    if (HAS(0, "\x1a\x45\xdf\xa3")) return "Matroska/WebM";
#undef HAS
    return NULL;
}
