/* cmd_play.c — `medley play FILE`: a player window (SDL2) for a video with
 * its soundtrack in sync, an audio file, or an image; what the studio's
 * "pop out" opens.
 *
 * The audio device's clock leads: the frame shown is the one whose time the
 * audio has reached (bytes queued minus bytes still waiting, over the byte
 * rate), so picture and sound stay together whatever the window does. With
 * no sound (or no audio device) the wall clock leads. Space pauses, Home
 * restarts, Esc or Q closes; --loop plays again at the end; --quit-after S
 * closes after S seconds (for tests). On exit it prints what it played and
 * the largest gap seen between the frame shown and the audio clock. */
#include "commands.h"

#include "audio_io.h"
#include "image_io.h"
#include "media.h"
#include "space_input.h"
#include "video_io.h"

#include <SDL.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct player {
    SDL_Window *win;
    SDL_Renderer *ren;
    SDL_Texture *tex;
    SDL_AudioDeviceID dev;
    int w, h;
    uint8_t *rgb;                    /* one frame, RGB24 */
    const md_video *video;           /* or */
    const md_image *image;
    const md_audio *audio;           /* the sound to play (the video's soundtrack or an audio file) */
    double fps, duration;
    Uint64 queued_bytes;             /* since the last (re)start */
    int bytes_per_frame;             /* of audio: 4 * channels (f32) */
    int rate;
} player;

static void frame_rgb(player *p, int64_t f)
{
    const float *src = p->video ? p->video->pixels + (size_t)f * (size_t)p->w * (size_t)p->h * (size_t)p->video->channels
                                : p->image->pixels;
    int ch = p->video ? p->video->channels : p->image->channels;
    for (int i = 0; i < p->w * p->h; i++)
        for (int c = 0; c < 3; c++) {
            float v = src[(size_t)i * (size_t)ch + (size_t)(ch >= 3 ? c : 0)];
            p->rgb[i * 3 + c] = (uint8_t)((v < 0.f ? 0.f : v > 1.f ? 1.f : v) * 255.f + 0.5f);
        }
}

/* A waveform with a playhead, for audio files. */
static void draw_wave(player *p, double t)
{
    int ww, wh;
    SDL_GetRendererOutputSize(p->ren, &ww, &wh);
    SDL_SetRenderDrawColor(p->ren, 24, 24, 32, 255);
    SDL_RenderClear(p->ren);
    SDL_SetRenderDrawColor(p->ren, 120, 170, 255, 255);
    const md_audio *a = p->audio;
    for (int x = 0; x < ww; x++) {
        int64_t i0 = (int64_t)x * a->frames / ww, i1 = (int64_t)(x + 1) * a->frames / ww;
        float peak = 0.f;
        for (int64_t i = i0; i < i1; i++)
            peak = fmaxf(peak, fabsf(a->samples[i * a->channels]));
        int hh = (int)(peak * (float)(wh / 2 - 4));
        SDL_RenderDrawLine(p->ren, x, wh / 2 - hh, x, wh / 2 + hh);
    }
    SDL_SetRenderDrawColor(p->ren, 255, 255, 255, 255);
    int px = (int)(t / p->duration * ww);
    SDL_RenderDrawLine(p->ren, px, 0, px, wh);
    SDL_RenderPresent(p->ren);
}

static void start_audio(player *p)
{
    if (!p->dev)
        return;
    SDL_ClearQueuedAudio(p->dev);
    Uint32 n = (Uint32)(p->audio->frames * p->bytes_per_frame);
    if (SDL_QueueAudio(p->dev, p->audio->samples, n) != 0)
        fprintf(stderr, "medley play: audio: %s\n", SDL_GetError());
    p->queued_bytes = n;
    SDL_PauseAudioDevice(p->dev, 0);
}

/* Seconds of sound played since the last start. */
static double audio_clock(const player *p)
{
    Uint64 left = SDL_GetQueuedAudioSize(p->dev);
    return (double)(p->queued_bytes - left) / (double)(p->bytes_per_frame * p->rate);
}

int medley_cmd_play(int argc, char **argv)
{
    const char *path = NULL;
    bool loop = false;
    double quit_after = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--loop") == 0)
            loop = true;
        else if (strcmp(argv[i], "--quit-after") == 0 && i + 1 < argc) {
            if (medley_parse_double("--quit-after", argv[++i], 0.01, 1e6, &quit_after))
                return 2;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "medley play: unknown option \"%s\"\n", argv[i]);
            return 2;
        } else if (!path)
            path = argv[i];
        else {
            fprintf(stderr, "medley play: one file at a time\n");
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "medley play: give a video, audio or image file\n");
        return 2;
    }
    FILE *f = fopen(path, "rb");
    unsigned char head[16];
    size_t nh = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    else {
        fprintf(stderr, "medley play: %s: cannot open it\n", path);
        return 1;
    }
    md_modality kind = md_space_input_kind(head, nh, NULL);
    md_media_limits lim = md_media_limits_default();
    md_video v = {0};
    md_image im = {0};
    md_audio a = {0};
    player p = {0};
    md_status st;
    if (kind == MD_MOD_VIDEO) {
        md_video_load_opts o = md_video_load_opts_default();
        o.audio_rate = 48000;
        st = md_video_load(path, &lim, &o, &v, NULL);
        p.video = &v;
        p.w = v.width;
        p.h = v.height;
        p.fps = v.fps;
        p.duration = (double)v.frames / v.fps;
        if (st == MD_OK && v.audio.samples && v.audio.frames > 0)
            p.audio = &v.audio;
    } else if (kind == MD_MOD_AUDIO) {
        st = md_audio_load(path, &lim, &a, NULL);
        p.audio = &a;
        p.w = 640;
        p.h = 160;
        p.duration = st == MD_OK ? (double)a.frames / a.rate : 0;
    } else if (kind == MD_MOD_IMAGE) {
        st = md_image_load(path, &lim, &im, NULL);
        p.image = &im;
        p.w = im.width;
        p.h = im.height;
    } else {
        fprintf(stderr, "medley play: %s: not a video, audio or image file\n", path);
        return 1;
    }
    if (st != MD_OK) {
        fprintf(stderr, "medley play: %s\n", md_last_error());
        md_video_free(&v);
        md_audio_free(&a);
        md_image_free(&im);
        return 1;
    }
    int rc = 1;
    if (SDL_Init(SDL_INIT_VIDEO | SDL_INIT_EVENTS) != 0) {
        fprintf(stderr, "medley play: no window: %s\n", SDL_GetError());
        goto out;
    }
    int scale = p.w <= 128 ? 8 : p.w <= 320 ? 2 : 1;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char title[512];
    snprintf(title, sizeof title, "%s — Medley", base);
    p.win = SDL_CreateWindow(title, SDL_WINDOWPOS_CENTERED, SDL_WINDOWPOS_CENTERED, p.w * scale, p.h * scale,
                             SDL_WINDOW_RESIZABLE);
    p.ren = p.win ? SDL_CreateRenderer(p.win, -1, 0) : NULL;
    if (!p.ren) {
        fprintf(stderr, "medley play: no window: %s\n", SDL_GetError());
        goto quit;
    }
    SDL_SetHint(SDL_HINT_RENDER_SCALE_QUALITY, "nearest");
    if (p.video || p.image) {
        p.tex = SDL_CreateTexture(p.ren, SDL_PIXELFORMAT_RGB24, SDL_TEXTUREACCESS_STREAMING, p.w, p.h);
        p.rgb = malloc((size_t)p.w * (size_t)p.h * 3);
        if (!p.tex || !p.rgb) {
            fprintf(stderr, "medley play: %s\n", p.tex ? "out of memory" : SDL_GetError());
            goto quit;
        }
    }
    if (p.audio) {
        if (SDL_InitSubSystem(SDL_INIT_AUDIO) == 0) {
            SDL_AudioSpec want = {0}, got;
            want.freq = p.audio->rate;
            want.format = AUDIO_F32SYS;
            want.channels = (Uint8)p.audio->channels;
            want.samples = 1024;
            p.dev = SDL_OpenAudioDevice(NULL, 0, &want, &got, 0);
        }
        if (!p.dev)
            fprintf(stderr, "medley play: no sound (%s); the picture plays by the clock\n", SDL_GetError());
        p.rate = p.audio->rate;
        p.bytes_per_frame = 4 * p.audio->channels;
    }
    start_audio(&p);
    Uint64 t0 = SDL_GetTicks64(), paused_at = 0, opened = t0;
    bool paused = false, running = true;
    int64_t shown = -1, frames_shown = 0;
    double max_gap = 0;
    while (running) {
        SDL_Event e;
        while (SDL_PollEvent(&e)) {
            if (e.type == SDL_QUIT)
                running = false;
            else if (e.type == SDL_KEYDOWN) {
                SDL_Keycode k = e.key.keysym.sym;
                if (k == SDLK_ESCAPE || k == SDLK_q)
                    running = false;
                else if (k == SDLK_SPACE) {
                    paused = !paused;
                    if (p.dev)
                        SDL_PauseAudioDevice(p.dev, paused);
                    if (paused)
                        paused_at = SDL_GetTicks64();
                    else
                        t0 += SDL_GetTicks64() - paused_at;
                } else if (k == SDLK_HOME) {
                    start_audio(&p);
                    t0 = SDL_GetTicks64();
                    shown = -1;
                }
            }
        }
        Uint64 now = SDL_GetTicks64();
        if (quit_after > 0 && (double)(now - opened) / 1000.0 >= quit_after)
            break;
        double t = p.dev ? audio_clock(&p) : (double)((paused ? paused_at : now) - t0) / 1000.0;
        if (p.duration > 0 && t >= p.duration) {
            if (!loop && !p.image)
                break;
            start_audio(&p);
            t0 = now;
            shown = -1;
            t = 0;
        }
        if (p.video) {
            int64_t fi = (int64_t)(t * p.fps);
            if (fi >= v.frames)
                fi = v.frames - 1;
            if (fi != shown) {
                frame_rgb(&p, fi);
                SDL_UpdateTexture(p.tex, NULL, p.rgb, p.w * 3);
                SDL_RenderClear(p.ren);
                SDL_RenderCopy(p.ren, p.tex, NULL, NULL);
                SDL_RenderPresent(p.ren);
                /* how late the frame came, by the sound's clock */
                double gap = t - (double)fi / p.fps;
                if (p.dev && gap > max_gap)
                    max_gap = gap;
                shown = fi;
                frames_shown++;
            }
        } else if (p.image) {
            if (shown < 0) {
                frame_rgb(&p, 0);
                SDL_UpdateTexture(p.tex, NULL, p.rgb, p.w * 3);
                SDL_RenderCopy(p.ren, p.tex, NULL, NULL);
                SDL_RenderPresent(p.ren);
                shown = 0;
            }
        } else {
            draw_wave(&p, t);
        }
        SDL_Delay(4);
    }
    if (p.video)
        printf("played %lld frames of %lld (%.2f s at %.3g fps)%s; by the sound's clock, the latest frame came "
               "%.1f ms late\n",
               (long long)frames_shown, (long long)v.frames, p.duration, p.fps, p.dev ? " with sound" : ", silent",
               max_gap * 1000.0);
    else if (p.audio)
        printf("played %.2f s of sound%s\n", p.duration, p.dev ? "" : " (no audio device: silent)");
    rc = 0;
quit:
    if (p.dev)
        SDL_CloseAudioDevice(p.dev);
    if (p.tex)
        SDL_DestroyTexture(p.tex);
    if (p.ren)
        SDL_DestroyRenderer(p.ren);
    if (p.win)
        SDL_DestroyWindow(p.win);
    SDL_Quit();
out:
    free(p.rgb);
    md_video_free(&v);
    md_audio_free(&a);
    md_image_free(&im);
    return rc;
}
