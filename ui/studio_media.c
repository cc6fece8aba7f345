/* studio_media.c — media bytes as the studio shows them: textures of
 * images and video frames, audio waveforms. Decoding goes through core's
 * media readers (no tensors here). */
#include "studio.h"

#include "audio_io.h"
#include "image_io.h"
#include "space_input.h"
#include "video_io.h"

#include <math.h>
#include <string.h>

GBytes *studio_rgb8_of(const md_image *im)
{
    const int w = im->width, h = im->height, c = im->channels;
    guchar *px = g_malloc((size_t)w * (size_t)h * 3);
    for (int i = 0; i < w * h; i++)
        for (int k = 0; k < 3; k++) {
            float v = im->pixels[(size_t)i * (size_t)c + (size_t)(c >= 3 ? k : 0)];
            v = v < 0.f ? 0.f : v > 1.f ? 1.f : v;
            px[i * 3 + k] = (guchar)(v * 255.f + 0.5f);
        }
    return g_bytes_new_take(px, (size_t)w * (size_t)h * 3);
}

GdkTexture *studio_texture_from_image(const md_image *im)
{
    GBytes *b = studio_rgb8_of(im);
    GdkTexture *t = gdk_memory_texture_new(im->width, im->height, GDK_MEMORY_R8G8B8, b, (gsize)im->width * 3);
    g_bytes_unref(b);
    return t;
}

int studio_modality_of_bytes(const void *bytes, size_t size)
{
    const char *fmt;
    md_modality m = md_space_input_kind(bytes, size < 16 ? size : 16, &fmt);
    if (m != MD_MOD_TEXT)
        return m;
    return !fmt && g_utf8_validate(bytes, (gssize)size, NULL) ? MD_MOD_TEXT : -1;
}

static md_status load_video(const void *bytes, size_t size, int max_frames, int height, md_video *v)
{
    md_media_limits lim = md_media_limits_default();
    md_video_load_opts o = md_video_load_opts_default();
    o.no_audio = true;
    if (max_frames > 0) {   /* a thumbnail: the first frame, small */
        o.height = 128;
        o.duration = 0.25;
    } else {                /* playback and scrubbing; longer videos are cut */
        o.duration = 30.0;
        o.height = height;
    }
    return md_video_load_memory(bytes, size, "video", &lim, &o, v, NULL);
}

GdkTexture *studio_texture_from_bytes(md_modality m, const void *bytes, size_t size)
{
    md_media_limits lim = md_media_limits_default();
    GdkTexture *t = NULL;
    if (m == MD_MOD_IMAGE) {
        md_image im = {0};
        lim.min_side = 256;   /* JPEG may decode smaller: a thumbnail needs no more */
        if (md_image_load_memory(bytes, size, "image", &lim, &im, NULL) == MD_OK)
            t = studio_texture_from_image(&im);
        md_image_free(&im);
    } else if (m == MD_MOD_VIDEO) {
        md_video v = {0};
        if (load_video(bytes, size, 1, 0, &v) == MD_OK && v.frames > 0) {
            md_image f0 = {v.width, v.height, v.channels, v.pixels};
            t = studio_texture_from_image(&f0);
        }
        md_video_free(&v);
    }
    return t;
}

GPtrArray *studio_video_frames(const void *bytes, size_t size, int height)
{
    md_video v = {0};
    GPtrArray *a = g_ptr_array_new_with_free_func(g_object_unref);
    if (load_video(bytes, size, 0, height, &v) == MD_OK)
        for (int64_t f = 0; f < v.frames; f++) {
            md_image im = {v.width, v.height, v.channels,
                           v.pixels + (size_t)f * (size_t)v.width * (size_t)v.height * (size_t)v.channels};
            g_ptr_array_add(a, studio_texture_from_image(&im));
        }
    md_video_free(&v);
    return a;
}

/* ---- waveform ---- */

typedef struct wave {
    float *peak;                     /* max |x| per bucket */
    int n;
    double playhead;                 /* 0..1, or < 0: none */
} wave;

static void wave_free(gpointer p)
{
    wave *w = p;
    g_free(w->peak);
    g_free(w);
}

static void draw_wave(GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer user)
{
    wave *w = user;
    GdkRGBA fg;
    gtk_style_context_get_color(gtk_widget_get_style_context(GTK_WIDGET(area)), &fg);
    cairo_set_source_rgba(cr, fg.red, fg.green, fg.blue, 0.75);
    if (w->n == 0) {
        cairo_move_to(cr, 0, height / 2.0);
        cairo_line_to(cr, width, height / 2.0);
        cairo_stroke(cr);
        return;
    }
    for (int x = 0; x < width; x++) {
        int b = (int)((int64_t)x * w->n / (width > 0 ? width : 1));
        double a = w->peak[b] * (height / 2.0 - 1);
        cairo_rectangle(cr, x, height / 2.0 - a, 1, 2 * a + 1);
    }
    cairo_fill(cr);
    if (w->playhead >= 0) {
        cairo_set_source_rgba(cr, 0.21, 0.52, 0.89, 1.0);
        cairo_rectangle(cr, w->playhead * width - 1, 0, 2, height);
        cairo_fill(cr);
    }
}

void studio_waveform_set_playhead(GtkWidget *area, double fraction)
{
    wave *w = g_object_get_data(G_OBJECT(area), "wave");
    if (!w)
        return;
    w->playhead = fraction;
    gtk_widget_queue_draw(area);
}

GtkWidget *studio_waveform_new(const void *bytes, size_t size)
{
    wave *w = g_new0(wave, 1);
    w->playhead = -1;
    md_media_limits lim = md_media_limits_default();
    md_audio a = {0};
    if (md_audio_load_memory(bytes, size, "audio", &lim, &a, NULL) == MD_OK && a.frames > 0) {
        w->n = 256;
        w->peak = g_new0(float, w->n);
        for (int64_t i = 0; i < a.frames; i++) {
            int b = (int)(i * w->n / a.frames);
            float v = fabsf(a.samples[i * a.channels]);
            if (v > w->peak[b])
                w->peak[b] = v > 1.f ? 1.f : v;
        }
    }
    md_audio_free(&a);
    GtkWidget *area = gtk_drawing_area_new();
    gtk_drawing_area_set_content_width(GTK_DRAWING_AREA(area), 96);
    gtk_drawing_area_set_content_height(GTK_DRAWING_AREA(area), 48);
    gtk_drawing_area_set_draw_func(GTK_DRAWING_AREA(area), draw_wave, w, wave_free);
    g_object_set_data(G_OBJECT(area), "wave", w);
    return area;
}
