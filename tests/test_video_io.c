/* test_video_io.c — md_video_load / md_video_save round trips (MP4, WebM),
 * sampling options, and bad inputs. Files go under $MEDLEY_TEST_TMP or /tmp.
 * Checks that decode files made by the ffmpeg CLI are skipped without it. */
#include "check.h"
#include "video_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 16      /* frames */
#define S 64      /* side */
#define FPS 8.0
#define SQ 8      /* square side */
#define RATE 16000

static char g_dir[512];

static const char *tpath(const char *name)
{
    static char buf[4][1024];
    static int i;
    i = (i + 1) & 3;
    snprintf(buf[i], sizeof buf[i], "%s/medley_vid_%s", g_dir, name);
    return buf[i];
}

/* Square's top-left in frame i of the synthetic clip. */
static void square_pos(int i, double *x, double *y)
{
    *x = 4 + 3 * i;
    *y = 8 + 2 * i;
}

static void make_clip(md_video *v)
{
    md_status s = md_video_alloc(v, S, S, 3, N, FPS);
    MD_ASSERT(s == MD_OK);
    memset(v->pixels, 0, sizeof(float) * S * S * 3 * N);
    for (int i = 0; i < N; i++) {
        double x0, y0;
        square_pos(i, &x0, &y0);
        for (int y = (int)y0; y < (int)y0 + SQ; y++)
            for (int x = (int)x0; x < (int)x0 + SQ; x++)
                for (int c = 0; c < 3; c++)
                    v->pixels[(((size_t)i * S + y) * S + x) * 3 + c] = 1.0f;
    }
    int64_t n = (int64_t)(N / FPS * RATE);
    s = md_audio_alloc(&v->audio, RATE, 1, n);
    MD_ASSERT(s == MD_OK);
    for (int64_t k = 0; k < n; k++)
        v->audio.samples[k] = 0.5f * (float)sin(2 * M_PI * 440.0 * (double)k / RATE);
}

/* Centroid of bright pixels (mean channel > 0.5) in frame i; false if none. */
static bool centroid(const md_video *v, int64_t i, double *cx, double *cy)
{
    double sx = 0, sy = 0, n = 0;
    for (int y = 0; y < v->height; y++)
        for (int x = 0; x < v->width; x++) {
            const float *p = v->pixels + (((size_t)i * v->height + y) * v->width + x) * v->channels;
            if ((p[0] + p[1] + p[2]) / 3 > 0.5f) {
                sx += x;
                sy += y;
                n++;
            }
        }
    if (n == 0)
        return false;
    *cx = sx / n;
    *cy = sy / n;
    return true;
}

/* Every frame j of v should show the square of source frame src0 + j*step,
 * scaled by scale; returns the largest centroid error in output pixels. */
static double track_error(const md_video *v, int src0, int step, double scale)
{
    double worst = 0;
    for (int64_t j = 0; j < v->frames; j++) {
        double x0, y0, cx, cy;
        square_pos(src0 + (int)j * step, &x0, &y0);
        double ex = (x0 + (SQ - 1) / 2.0 + 0.5) * scale - 0.5, ey = (y0 + (SQ - 1) / 2.0 + 0.5) * scale - 0.5;
        if (!centroid(v, j, &cx, &cy))
            return 1e9;
        worst = fmax(worst, fmax(fabs(cx - ex), fabs(cy - ey)));
    }
    return worst;
}

/* Frequency (Hz, 5 Hz steps in 100..2000) with the most energy, mono channel 0. */
static double dominant_freq(const md_audio *a)
{
    int64_t n = MD_MIN(a->frames, (int64_t)a->rate);
    int64_t off = (a->frames - n) / 2;
    double best = 0, bestf = 0;
    for (double f = 100; f <= 2000; f += 5) {
        double re = 0, im = 0;
        for (int64_t k = 0; k < n; k++) {
            double s = a->samples[(size_t)(off + k) * (size_t)a->channels];
            re += s * cos(2 * M_PI * f * (double)k / a->rate);
            im += s * sin(2 * M_PI * f * (double)k / a->rate);
        }
        double e = re * re + im * im;
        if (e > best) {
            best = e;
            bestf = f;
        }
    }
    return bestf;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    MD_ASSERT(f);
    if (n)
        MD_ASSERT(fwrite(p, 1, n, f) == n);
    fclose(f);
}

static bool err_has(const char *sub)
{
    return strstr(md_last_error(), sub) != NULL;
}

static void test_round_trip(const char *fmt, const md_video *src)
{
    char name[32];
    snprintf(name, sizeof name, "clip.%s", fmt);
    const char *p = tpath(name);
    md_meta meta = {0};
    const char *json = "{\"job\":\"gen\",\"seed\":42,\"prompt\":\"a \\\"square\\\"\"}";
    md_meta_set(&meta, "medley", json);
    md_meta_set(&meta, "title", "moving square");
    md_status s = md_video_save(p, src, fmt, &meta);
    CHECK(s == MD_OK, "%s: save (%s)", fmt, md_last_error());
    md_meta_free(&meta);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%s", p, fmt);
    FILE *tf = fopen(tmp, "rb");
    CHECK(tf == NULL, "%s: no temporary left behind", fmt);
    if (tf)
        fclose(tf);

    md_video v = {0};
    md_meta m = {0};
    s = md_video_load(p, NULL, NULL, &v, &m);
    CHECK(s == MD_OK, "%s: load (%s)", fmt, md_last_error());
    if (s != MD_OK)
        return;
    CHECK(v.frames == N, "%s: %lld frames", fmt, (long long)v.frames);
    CHECK(fabs(v.fps - FPS) < 1e-3, "%s: fps %g", fmt, v.fps);
    CHECK(v.width == S && v.height == S && v.channels == 3, "%s: %dx%dx%d", fmt, v.width, v.height, v.channels);
    double e = track_error(&v, 0, 1, 1.0);
    CHECK(e <= 2.0, "%s: square centroid within 2 px on every frame (worst %.2f)", fmt, e);
    double vd = (double)v.frames / v.fps;
    double ad = v.audio.rate ? (double)v.audio.frames / v.audio.rate : 0;
    CHECK(v.audio.rate == 16000 && v.audio.channels == 1, "%s: audio %d Hz x %d", fmt, v.audio.rate,
          v.audio.channels);
    CHECK(fabs(ad - vd) < 0.05, "%s: audio %.3f s vs video %.3f s", fmt, ad, vd);
    if (v.audio.frames > 0) {
        double f = dominant_freq(&v.audio);
        CHECK(fabs(f - 440) <= 10, "%s: dominant frequency %.0f Hz", fmt, f);
    }
    const char *mv = md_meta_get(&m, "medley");
    CHECK(mv && strcmp(mv, json) == 0, "%s: \"medley\" tag round trip (%s)", fmt, mv ? mv : "(none)");
    md_video_free(&v);
    md_meta_free(&m);

    md_video_load_opts o = md_video_load_opts_default();
    o.fps = 4;
    s = md_video_load(p, NULL, &o, &v, NULL);
    /* targets t = k/4 for t < 2.0 s: 8 frames, frame k = source frame 2k */
    CHECK(s == MD_OK && v.frames == 8 && fabs(v.fps - 4) < 1e-9, "%s: fps 4 gives 8 frames (%lld)", fmt,
          (long long)v.frames);
    if (s == MD_OK) {
        e = track_error(&v, 0, 2, 1.0);
        CHECK(e <= 2.0, "%s: fps 4 picks every second frame (worst %.2f)", fmt, e);
        CHECK(fabs((double)v.audio.frames / v.audio.rate - 2.0) < 0.05, "%s: fps 4 audio %.3f s", fmt,
              (double)v.audio.frames / v.audio.rate);
    }
    md_video_free(&v);

    o = md_video_load_opts_default();
    o.width = 32;
    o.height = 32;
    o.no_audio = true;
    s = md_video_load(p, NULL, &o, &v, NULL);
    CHECK(s == MD_OK && v.width == 32 && v.height == 32 && v.frames == N && v.audio.samples == NULL,
          "%s: 32x32, no audio (%s)", fmt, md_last_error());
    if (s == MD_OK) {
        e = track_error(&v, 0, 1, 0.5);
        CHECK(e <= 2.0, "%s: 32x32 square centroid (worst %.2f)", fmt, e);
    }
    md_video_free(&v);

    o = md_video_load_opts_default();
    o.start = 1.0;
    o.duration = 0.5;
    s = md_video_load(p, NULL, &o, &v, NULL);
    /* start 1 s = source frame 8; 0.5 s at 8 fps = 4 frames */
    CHECK(s == MD_OK && v.frames == 4, "%s: start 1 s, 0.5 s gives 4 frames (%lld; %s)", fmt,
          (long long)v.frames, md_last_error());
    if (s == MD_OK) {
        e = track_error(&v, 8, 1, 1.0);
        CHECK(e <= 2.0, "%s: start 1 s begins at source frame 8 (worst %.2f)", fmt, e);
        CHECK(v.audio.frames == 8000, "%s: start audio %lld frames", fmt, (long long)v.audio.frames);
    }
    md_video_free(&v);
}

/* Frames like a generated video's: a flat background, a coloured stroke
 * shape moving one pixel a frame, soft edges and a little noise. */
static void shape_frames(md_video *v)
{
    const int W = v->width;
    uint64_t r = 777;
    for (int64_t f = 0; f < v->frames; f++)
        for (int y = 0; y < W; y++)
            for (int x = 0; x < W; x++) {
                float dx = (float)(x - 40 + f), dy = (float)(y - 30);
                float ring = fabsf(sqrtf(dx * dx + dy * dy) - 11.f), ink = ring < 3.f ? 1.f - ring / 3.f : 0.f;
                if (x - 36 + f > 0 && x - 36 + f < 5 && y > 30 && y < 52)
                    ink = 1.f;
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                float noise = ((float)(r >> 40) / (float)(1u << 24) - 0.5f) * 0.03f;
                const float bg[3] = {0.15f, 0.2f, 0.55f}, fg[3] = {0.9f, 0.15f, 0.1f};
                for (int c = 0; c < 3; c++)
                    v->pixels[(((size_t)f * W + y) * W + x) * 3 + c] = bg[c] + (fg[c] - bg[c]) * ink + noise;
            }
}

/* The same frames give the same file, save after save (a generated video
 * is the same file for the same job): on 1, 2 and 3 threads, with other
 * bytes left in the heap before each save. Two kinds of frames: textured
 * ones that drift, so the encoder's motion search and rate control have
 * work to do, and a shape moving on a flat background, as generated. */
static void test_same_bytes(const char *fmt, bool shape)
{
    enum { W = 64, F = 16, SAVES = 24 };
    md_video v = {0};
    md_status s = md_video_alloc(&v, W, W, 3, F, FPS);
    MD_ASSERT(s == MD_OK);
    if (shape)
        shape_frames(&v);
    else {
        uint64_t r = 12345;
        float tex[2 * W][2 * W];
        for (int y = 0; y < 2 * W; y++)
            for (int x = 0; x < 2 * W; x++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                tex[y][x] = (float)(r >> 40) / (float)(1u << 24);
            }
        for (int f = 0; f < F; f++)
            for (int y = 0; y < W; y++)
                for (int x = 0; x < W; x++)
                    for (int c = 0; c < 3; c++)
                        v.pixels[(((size_t)f * W + y) * W + x) * 3 + c] =
                            0.5f * tex[y + f][x + 2 * f] + 0.5f * tex[(y + 3 * c) % W][(x + f) % W];
    }
    char name[32];
    snprintf(name, sizeof name, "same.%s", fmt);
    const char *p = tpath(name);
    unsigned char *first = NULL;
    size_t n0 = 0;
    int differ = 0, saved = 0;
    const int threads = md_threads_get();
    for (int i = 0; i < SAVES; i++) {
        md_threads_set(1 + i % 3);   /* and whatever the thread count */
        check_dirty_heap((uint64_t)i + 1);
        if (md_video_save(p, &v, fmt, NULL) != MD_OK)
            continue;
        saved++;
        size_t n = 0;
        unsigned char *b = check_read_file(p, &n);
        if (!first) {
            first = b;
            n0 = n;
            continue;
        }
        differ += !b || n != n0 || memcmp(b, first, n) != 0;
        free(b);
    }
    md_threads_set(threads);
    CHECK(saved == SAVES && first && differ == 0, "%s, %s: %d saves of the same frames, %d differ from the first",
          fmt, shape ? "a moving shape" : "drifting texture", saved, differ);
    free(first);
    md_video_free(&v);
}

int main(void)
{
    const char *d = getenv("MEDLEY_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s", d && *d ? d : "/tmp");

    md_video src = {0};
    make_clip(&src);
    test_round_trip("mp4", &src);
    test_round_trip("webm", &src);
    test_same_bytes("mp4", false);
    test_same_bytes("mp4", true);
    test_same_bytes("webm", false);
    test_same_bytes("webm", true);

    /* odd size: padded to even */
    {
        md_video odd = {0};
        md_video_alloc(&odd, 33, 17, 4, 3, 10);
        for (size_t i = 0; i < (size_t)33 * 17 * 4 * 3; i++)
            odd.pixels[i] = 0.5f;
        const char *p = tpath("odd.mp4");
        md_status s = md_video_save(p, &odd, "mp4", NULL);
        md_video v = {0};
        if (s == MD_OK)
            s = md_video_load(p, NULL, NULL, &v, NULL);
        CHECK(s == MD_OK && v.width == 34 && v.height == 18 && v.frames == 3 && v.audio.samples == NULL,
              "odd 33x17 RGBA saves padded to 34x18, silent (%dx%d, %lld)", v.width, v.height,
              (long long)v.frames);
        md_video_free(&v);
        md_video_free(&odd);
        CHECK(md_video_save(p, &src, "avi", NULL) == MD_ERR_INVALID && err_has("unknown video format"),
              "unknown save format refused");
    }

    md_video v = {0};
    md_status s;
    const char *clip = tpath("clip.mp4");

    /* limits */
    md_media_limits lim = md_media_limits_default();
    lim.max_frames = 4;
    s = md_video_load(clip, &lim, NULL, &v, NULL);
    CHECK(s == MD_ERR_INVALID && err_has("max_frames") && v.pixels == NULL, "max_frames 4 refused (%s)",
          md_last_error());
    lim = md_media_limits_default();
    lim.max_pixels = 63 * 63;
    s = md_video_load(clip, &lim, NULL, &v, NULL);
    CHECK(s == MD_ERR_INVALID && err_has("max_pixels"), "max_pixels < 64x64 refused (%s)", md_last_error());
    lim = md_media_limits_default();
    lim.max_seconds = 1.0;
    s = md_video_load(clip, &lim, NULL, &v, NULL);
    CHECK(s == MD_ERR_INVALID && err_has("max_seconds"), "max_seconds 1 refused (%s)", md_last_error());
    lim = md_media_limits_default();
    lim.max_bytes = 100;
    s = md_video_load(clip, &lim, NULL, &v, NULL);
    CHECK(s == MD_ERR_INVALID && err_has("max_bytes"), "max_bytes refused (%s)", md_last_error());
    md_video_load_opts o = md_video_load_opts_default();
    o.start = 5;
    s = md_video_load(clip, NULL, &o, &v, NULL);
    CHECK(s == MD_ERR_INVALID && err_has("past its end"), "start past end refused (%s)", md_last_error());
    o = md_video_load_opts_default();
    o.fps = -1;
    s = md_video_load(clip, NULL, &o, &v, NULL);
    CHECK(s == MD_ERR_INVALID && err_has("options"), "negative fps refused (%s)", md_last_error());

    /* bad inputs */
    const char *p = tpath("empty.mp4");
    write_bytes(p, "", 0);
    s = md_video_load(p, NULL, NULL, &v, NULL);
    CHECK(s == MD_ERR_FORMAT && err_has("empty.mp4: empty"), "empty file (%s)", md_last_error());

    s = md_video_load(tpath("does_not_exist.mp4"), NULL, NULL, &v, NULL);
    CHECK(s == MD_ERR_IO && err_has("does_not_exist.mp4: cannot open"), "nonexistent path (%s)",
          md_last_error());

    static const unsigned char png[] = {
        137, 80, 78,  71,  13, 10, 26, 10,  0,   0,   0,  13,  73,  72,  68, 82, 0,   0,   0,   1,  0,   0,  0,   1,
        8,   6,  0,   0,   0,  31, 21, 196, 137, 0,   0,  0,   13,  73,  68, 65, 84,  120, 218, 99, 100, 96, 248, 95,
        15,  0,  2,   135, 1,  128, 235, 71, 186, 146, 0, 0,   0,   0,   73, 69, 78,  68,  174, 66, 96,  130};
    p = tpath("png.mp4");
    write_bytes(p, png, sizeof png);
    s = md_video_load(p, NULL, NULL, &v, NULL);
    CHECK(s == MD_ERR_FORMAT && err_has("png.mp4: a still image"), "PNG named .mp4 (%s)", md_last_error());

    unsigned char rnd[4096];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof rnd; i++) {
        x = x * 1664525u + 1013904223u;
        rnd[i] = (unsigned char)(x >> 24);
    }
    p = tpath("random.mp4");
    write_bytes(p, rnd, sizeof rnd);
    s = md_video_load(p, NULL, NULL, &v, NULL);
    CHECK(s != MD_OK && err_has("random.mp4: "), "random bytes (%s)", md_last_error());

    /* audio-only WAV: 44-byte header, 0.5 s of 16-bit mono at 8 kHz */
    {
        unsigned char wav[44 + 8000];
        memset(wav, 0, sizeof wav);
        uint32_t data = 8000, riff = 36 + data, fmtlen = 16, rate = 8000, brate = 16000;
        uint16_t pcm = 1, ch = 1, align = 2, bits = 16;
        memcpy(wav, "RIFF", 4);
        memcpy(wav + 4, &riff, 4);
        memcpy(wav + 8, "WAVEfmt ", 8);
        memcpy(wav + 16, &fmtlen, 4);
        memcpy(wav + 20, &pcm, 2);
        memcpy(wav + 22, &ch, 2);
        memcpy(wav + 24, &rate, 4);
        memcpy(wav + 28, &brate, 4);
        memcpy(wav + 32, &align, 2);
        memcpy(wav + 34, &bits, 2);
        memcpy(wav + 36, "data", 4);
        memcpy(wav + 40, &data, 4);
        p = tpath("audio.wav");
        write_bytes(p, wav, sizeof wav);
        s = md_video_load(p, NULL, NULL, &v, NULL);
        CHECK(s == MD_ERR_FORMAT && err_has("audio.wav: no video stream (it holds audio only)"),
              "audio-only file (%s)", md_last_error());
    }

    /* truncated MP4 and WebM, cut at several points: an error or fewer frames, never a crash */
    const char *fmts[2] = {"mp4", "webm"};
    for (int fi = 0; fi < 2; fi++) {
        size_t n = 0;
        char name[32];
        snprintf(name, sizeof name, "clip.%s", fmts[fi]);
        unsigned char *b = check_read_file(tpath(name), &n);
        CHECK(b && n > 100, "%s: read back %zu bytes", fmts[fi], n);
        if (!b)
            continue;
        int fine = 0, cuts = 0;
        for (int pct = 1; pct < 100; pct += 7) {
            size_t cut = n * (size_t)pct / 100;
            snprintf(name, sizeof name, "cut.%s", fmts[fi]);
            p = tpath(name);
            write_bytes(p, b, cut);
            s = md_video_load(p, NULL, NULL, &v, NULL);
            bool ok = (s == MD_OK && v.frames >= 1 && v.frames <= N) ||
                      (s != MD_OK && v.pixels == NULL && err_has(name));
            fine += ok;
            cuts++;
            if (!ok)
                printf("     cut %d%%: status %d, %lld frames, %s\n", pct, s, (long long)v.frames, md_last_error());
            md_video_free(&v);
            /* the same from memory */
            s = md_video_load_memory(b, cut, "mem", NULL, NULL, &v, NULL);
            fine += (s == MD_OK && v.frames <= N) || (s != MD_OK && v.pixels == NULL);
            cuts++;
            md_video_free(&v);
        }
        CHECK(fine == cuts, "%s: %d truncations load fewer frames or fail cleanly", fmts[fi], cuts);
        /* whole file from memory */
        md_meta m = {0};
        s = md_video_load_memory(b, n, NULL, NULL, NULL, &v, &m);
        CHECK(s == MD_OK && v.frames == N && md_meta_get(&m, "medley"), "%s: loads from memory", fmts[fi]);
        md_video_free(&v);
        md_meta_free(&m);
        free(b);
    }

    /* files made by the ffmpeg CLI */
    if (system("ffmpeg -version >/dev/null 2>&1") == 0) {
        char cmd[2048];
        const char *mkv = tpath("cli.mkv"), *gif = tpath("cli.gif");
        snprintf(cmd, sizeof cmd,
                 "ffmpeg -v error -y -f lavfi -i testsrc=size=64x48:rate=10 -f lavfi -i sine=frequency=440 "
                 "-t 1 -shortest '%s' && ffmpeg -v error -y -f lavfi -i testsrc=size=32x24:rate=5 -t 1 '%s'",
                 mkv, gif);
        int rc = system(cmd);
        CHECK(rc == 0, "ffmpeg CLI made an MKV and a GIF");
        s = md_video_load(mkv, NULL, NULL, &v, NULL);
        CHECK(s == MD_OK && v.frames == 10 && v.width == 64 && v.height == 48 && fabs(v.fps - 10) < 1e-6,
              "CLI MKV: %lld frames %dx%d at %g fps (%s)", (long long)v.frames, v.width, v.height, v.fps,
              md_last_error());
        if (s == MD_OK && v.audio.frames > 0) {
            double f = dominant_freq(&v.audio);
            CHECK(fabs(f - 440) <= 10, "CLI MKV: sine at %.0f Hz", f);
        }
        md_video_free(&v);
        s = md_video_load(gif, NULL, NULL, &v, NULL);
        CHECK(s == MD_OK && v.frames == 5 && v.width == 32 && v.height == 24,
              "CLI GIF: %lld frames %dx%d at %g fps (%s)", (long long)v.frames, v.width, v.height, v.fps,
              md_last_error());
        md_video_free(&v);
    } else {
        printf("skip ffmpeg CLI checks (no ffmpeg)\n");
    }

    md_video_free(&src);
    return check_done();
}
