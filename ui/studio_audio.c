/* studio_audio.c — sound in the studio through PortAudio: recording from
 * the microphone (with a level meter) into an audio input, and playing an
 * audio input or output with a playhead. PortAudio's callbacks run on its
 * own thread: they only copy samples and update counters (atomics); the
 * main loop reads those on a timer. No device, or a busy one, is a message,
 * never a crash. */
#include "studio_audio.h"

#include "audio_io.h"

#include <math.h>
#include <glib/gstdio.h>
#include <portaudio.h>
#include <string.h>

#define REC_RATE 16000
#define REC_SECONDS 15

static int pa_state;   /* 0: not tried, 1: ready, -1: failed */

static gboolean pa_ready(char *why, size_t cap)
{
    if (pa_state == 0) {
        PaError e = Pa_Initialize();
        pa_state = e == paNoError ? 1 : -1;
        if (e != paNoError)
            g_strlcpy(why, Pa_GetErrorText(e), cap);
    }
    if (pa_state < 0 && why[0] == '\0')
        g_strlcpy(why, "the audio system did not start", cap);
    return pa_state > 0;
}

void studio_audio_shutdown(void)
{
    if (pa_state > 0)
        Pa_Terminate();
    pa_state = 0;
}

/* ---- recording ---- */

struct studio_rec {
    PaStream *stream;
    float *buf;
    int cap;
    int n;                           /* samples written (atomic) */
    float level;                     /* RMS of the last callback's block (written atomically as bits) */
};

static int rec_cb(const void *in, void *out, unsigned long frames, const PaStreamCallbackTimeInfo *ti,
                  PaStreamCallbackFlags flags, void *user)
{
    (void)out;
    (void)ti;
    (void)flags;
    studio_rec *r = user;
    const float *x = in;
    int n = __atomic_load_n(&r->n, __ATOMIC_RELAXED);
    double e = 0;
    for (unsigned long i = 0; i < frames && x; i++) {
        e += (double)x[i] * x[i];
        if (n < r->cap)
            r->buf[n++] = x[i];
    }
    float level = frames ? (float)sqrt(e / (double)frames) : 0.f;
    __atomic_store(&r->level, &level, __ATOMIC_RELAXED);
    __atomic_store_n(&r->n, n, __ATOMIC_RELEASE);
    return n < r->cap ? paContinue : paComplete;
}

studio_rec *studio_rec_start(char *why, size_t cap)
{
    why[0] = '\0';
    if (!pa_ready(why, cap))
        return NULL;
    PaDeviceIndex dev = Pa_GetDefaultInputDevice();
    if (dev == paNoDevice) {
        g_strlcpy(why, "no microphone was found", cap);
        return NULL;
    }
    studio_rec *r = g_new0(studio_rec, 1);
    r->cap = REC_RATE * REC_SECONDS;
    r->buf = g_new0(float, (size_t)r->cap);
    PaStreamParameters p = {dev, 1, paFloat32, Pa_GetDeviceInfo(dev)->defaultLowInputLatency, NULL};
    PaError e = Pa_OpenStream(&r->stream, &p, NULL, REC_RATE, 256, paNoFlag, rec_cb, r);
    if (e == paNoError)
        e = Pa_StartStream(r->stream);
    if (e != paNoError) {
        g_strlcpy(why, Pa_GetErrorText(e), cap);
        if (r->stream)
            Pa_CloseStream(r->stream);
        g_free(r->buf);
        g_free(r);
        return NULL;
    }
    return r;
}

float studio_rec_level(const studio_rec *r)
{
    float l;
    __atomic_load(&r->level, &l, __ATOMIC_RELAXED);
    return l;
}

double studio_rec_seconds(const studio_rec *r)
{
    return (double)__atomic_load_n(&r->n, __ATOMIC_ACQUIRE) / REC_RATE;
}

gboolean studio_rec_full(const studio_rec *r) { return __atomic_load_n(&r->n, __ATOMIC_ACQUIRE) >= r->cap; }

GBytes *studio_rec_stop(studio_rec *r, const char *tmp_dir, char *why, size_t cap)
{
    why[0] = '\0';
    Pa_StopStream(r->stream);
    Pa_CloseStream(r->stream);
    int n = __atomic_load_n(&r->n, __ATOMIC_ACQUIRE);
    GBytes *out = NULL;
    if (n < REC_RATE / 10) {
        g_strlcpy(why, "the recording is too short (under 0.1 s)", cap);
    } else {
        /* a WAV through core's writer, read back as the input's bytes */
        md_audio a = {REC_RATE, 1, n, r->buf};
        char *path = g_build_filename(tmp_dir, "recording.wav", NULL);
        char *bytes;
        gsize len;
        if (md_audio_save(path, &a, "wav", NULL) == MD_OK && g_file_get_contents(path, &bytes, &len, NULL))
            out = g_bytes_new_take(bytes, len);
        else
            g_strlcpy(why, md_last_error(), cap);
        g_unlink(path);
        g_free(path);
    }
    g_free(r->buf);
    g_free(r);
    return out;
}

/* ---- playing ---- */

struct studio_player {
    PaStream *stream;
    md_audio a;
    int64_t pos;                     /* frames played (atomic) */
};

static int play_cb(const void *in, void *out, unsigned long frames, const PaStreamCallbackTimeInfo *ti,
                   PaStreamCallbackFlags flags, void *user)
{
    (void)in;
    (void)ti;
    (void)flags;
    studio_player *p = user;
    float *y = out;
    int64_t pos = __atomic_load_n(&p->pos, __ATOMIC_RELAXED);
    int ch = p->a.channels;
    for (unsigned long i = 0; i < frames; i++, pos++)
        for (int c = 0; c < ch; c++)
            y[i * (unsigned long)ch + (unsigned long)c] = pos < p->a.frames ? p->a.samples[pos * ch + c] : 0.f;
    __atomic_store_n(&p->pos, pos < p->a.frames ? pos : p->a.frames, __ATOMIC_RELEASE);
    return pos < p->a.frames ? paContinue : paComplete;
}

studio_player *studio_play(const void *bytes, size_t size, char *why, size_t cap)
{
    why[0] = '\0';
    if (!pa_ready(why, cap))
        return NULL;
    PaDeviceIndex dev = Pa_GetDefaultOutputDevice();
    if (dev == paNoDevice) {
        g_strlcpy(why, "no audio output was found", cap);
        return NULL;
    }
    studio_player *p = g_new0(studio_player, 1);
    md_media_limits lim = md_media_limits_default();
    if (md_audio_load_memory(bytes, size, "audio", &lim, &p->a, NULL) != MD_OK) {
        g_strlcpy(why, md_last_error(), cap);
        g_free(p);
        return NULL;
    }
    if (p->a.channels > 2) {   /* what any output takes */
        md_audio mono = {0};
        if (md_audio_mixdown(&p->a, &mono) == MD_OK) {
            md_audio_free(&p->a);
            p->a = mono;
        }
    }
    PaStreamParameters o = {dev, p->a.channels, paFloat32, Pa_GetDeviceInfo(dev)->defaultLowOutputLatency, NULL};
    PaError e = Pa_OpenStream(&p->stream, NULL, &o, p->a.rate, 512, paNoFlag, play_cb, p);
    if (e == paNoError)
        e = Pa_StartStream(p->stream);
    if (e != paNoError) {
        g_strlcpy(why, Pa_GetErrorText(e), cap);
        if (p->stream)
            Pa_CloseStream(p->stream);
        md_audio_free(&p->a);
        g_free(p);
        return NULL;
    }
    return p;
}

double studio_play_fraction(const studio_player *p)
{
    int64_t pos = __atomic_load_n(&p->pos, __ATOMIC_ACQUIRE);
    return p->a.frames ? (double)pos / (double)p->a.frames : 1.0;
}

gboolean studio_play_done(const studio_player *p) { return __atomic_load_n(&p->pos, __ATOMIC_ACQUIRE) >= p->a.frames; }

void studio_play_stop(studio_player *p)
{
    if (!p)
        return;
    Pa_StopStream(p->stream);
    Pa_CloseStream(p->stream);
    md_audio_free(&p->a);
    g_free(p);
}
