/* test_audio_io.c — audio loading, saving, resampling and mixdown.
 *
 * Prints one line per check; exits 0 only if every check passed. Files go to
 * a fresh folder under $MEDLEY_TEST_TMP (default /tmp), removed at the end.
 * `test_audio_io --seeds DIR` writes small audio files for the fuzzer's seed
 * corpus (tests/fuzz_audio.c) instead of testing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "audio_io.h"
#include "check.h"

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[512];
static char g_warn[1024]; /* last WARN message, for the clipping checks */

static void capture_log(md_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level == MD_LOG_WARN)
        snprintf(g_warn, sizeof g_warn, "%s", msg);
}

static const char *tpath(const char *name)
{
    static char buf[8][640];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, sizeof buf[0], "%s/%s", g_dir, name);
    return p;
}

static bool write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    *n = b ? fread(b, 1, (size_t)len, f) : 0;
    fclose(f);
    return b;
}

static bool has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

/* frames × channels sine; channel c has frequency freq * (c + 1). */
static void make_sine(md_audio *a, int rate, int channels, int64_t frames, double freq, double amp)
{
    md_audio_alloc(a, rate, channels, frames);
    for (int64_t f = 0; f < frames; f++)
        for (int c = 0; c < channels; c++)
            a->samples[f * channels + c] = (float)(amp * sin(2 * M_PI * freq * (c + 1) * (double)f / rate));
}

static double max_abs_diff(const md_audio *a, const md_audio *b)
{
    if (a->frames != b->frames || a->channels != b->channels)
        return INFINITY;
    double m = 0;
    for (int64_t i = 0; i < a->frames * a->channels; i++)
        m = fmax(m, fabs((double)a->samples[i] - b->samples[i]));
    return m;
}

/* Frequency of channel 0 between frames [f0, f1) from rising zero crossings,
 * interpolated to a fraction of a frame. */
static double zc_freq(const md_audio *a, int64_t f0, int64_t f1)
{
    double first = -1, last = -1;
    int n = 0;
    for (int64_t f = f0 + 1; f < f1; f++) {
        float x0 = a->samples[(f - 1) * a->channels], x1 = a->samples[f * a->channels];
        if (x0 < 0 && x1 >= 0) {
            double t = (double)(f - 1) + x0 / (double)(x0 - x1);
            if (first < 0)
                first = t;
            else
                n++;
            last = t;
        }
    }
    return n > 0 ? n * a->rate / (last - first) : 0;
}

/* A canonical 44-byte WAV header (fmt tag 1 = PCM, 3 = float). */
static void wav_header(unsigned char *h, int tag, int channels, int rate, int bits, uint32_t data_bytes)
{
    uint32_t block = (uint32_t)(channels * bits / 8);
    uint32_t v[] = {36 + data_bytes, 16, (uint32_t)rate, (uint32_t)rate * block, data_bytes};
    memcpy(h, "RIFF", 4);
    memcpy(h + 4, &v[0], 4);
    memcpy(h + 8, "WAVEfmt ", 8);
    memcpy(h + 16, &v[1], 4);
    uint16_t s[] = {(uint16_t)tag, (uint16_t)channels};
    memcpy(h + 20, s, 4);
    memcpy(h + 24, &v[2], 4);
    memcpy(h + 28, &v[3], 4);
    uint16_t s2[] = {(uint16_t)block, (uint16_t)bits};
    memcpy(h + 32, s2, 4);
    memcpy(h + 36, "data", 4);
    memcpy(h + 40, &v[4], 4);
}

static md_status load(const char *path, md_audio *a, md_meta *meta)
{
    md_clear_error();
    return md_audio_load(path, NULL, a, meta);
}

/* ---- round trips ---------------------------------------------------------- */

static void test_round_trips(void)
{
    md_audio a = {0}, b = {0};
    make_sine(&a, 44100, 2, 22050, 440, 0.8);
    const double half_lsb = 0.5 / 32768 + 1e-9;

    CHECK(md_audio_save(tpath("s16.wav"), &a, "wav", NULL) == MD_OK, "save 16-bit WAV");
    CHECK(load(tpath("s16.wav"), &b, NULL) == MD_OK, "load 16-bit WAV");
    CHECK(b.rate == 44100 && b.channels == 2 && b.frames == 22050, "16-bit WAV shape %d Hz %d ch %lld frames",
          b.rate, b.channels, (long long)b.frames);
    CHECK(max_abs_diff(&a, &b) <= half_lsb, "16-bit WAV within half an LSB (max diff %.3g LSB)",
          max_abs_diff(&a, &b) * 32768);
    md_audio_free(&b);

    CHECK(md_audio_save(tpath("f32.wav"), &a, "wav-float", NULL) == MD_OK, "save float WAV");
    CHECK(load(tpath("f32.wav"), &b, NULL) == MD_OK && max_abs_diff(&a, &b) == 0, "float WAV round trip is exact");
    md_audio_free(&b);

    CHECK(md_audio_save(tpath("s16.flac"), &a, "flac", NULL) == MD_OK, "save FLAC");
    CHECK(load(tpath("s16.flac"), &b, NULL) == MD_OK, "load FLAC");
    CHECK(b.frames == a.frames && max_abs_diff(&a, &b) <= half_lsb, "FLAC within half an LSB (max diff %.3g LSB)",
          max_abs_diff(&a, &b) * 32768);
    md_audio_free(&b);
    md_audio_free(&a);

    /* k/32768 values, both extremes included, survive 16-bit formats exactly. */
    md_audio q = {0};
    md_audio_alloc(&q, 8000, 1, 4096);
    srand(7);
    for (int i = 0; i < 4096; i++)
        q.samples[i] = (float)((rand() % 65536) - 32768) / 32768.0f;
    q.samples[0] = -1.0f;
    q.samples[1] = 32767.0f / 32768.0f;
    q.samples[2] = 0.0f;
    CHECK(md_audio_save(tpath("q.wav"), &q, "wav", NULL) == MD_OK && load(tpath("q.wav"), &b, NULL) == MD_OK &&
              max_abs_diff(&q, &b) == 0,
          "k/32768 samples round-trip WAV exactly");
    md_audio_free(&b);
    CHECK(md_audio_save(tpath("q.flac"), &q, "flac", NULL) == MD_OK && load(tpath("q.flac"), &b, NULL) == MD_OK &&
              max_abs_diff(&q, &b) == 0,
          "k/32768 samples round-trip FLAC exactly");
    md_audio_free(&b);
    md_audio_free(&q);

    /* Overwriting an existing file goes through the temporary and leaves no
     * PATH.tmp-* behind. */
    md_audio s = {0};
    make_sine(&s, 16000, 1, 1600, 100, 0.5);
    CHECK(md_audio_save(tpath("s16.wav"), &s, "wav", NULL) == MD_OK && load(tpath("s16.wav"), &b, NULL) == MD_OK &&
              b.frames == 1600 && b.rate == 16000,
          "save replaces an existing file");
    md_audio_free(&b);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp-", g_dir);
    CHECK(system(cmd) != 0, "no temporary files left behind");
    md_audio_free(&s);
}

static void test_multichannel(void)
{
    md_audio a = {0}, b = {0};
    make_sine(&a, 48000, 6, 4800, 200, 0.3);
    for (int64_t f = 0; f < a.frames; f++)
        a.samples[f * 6 + 5] = 0.25f; /* a constant channel shows order is kept */
    const char *fmts[] = {"wav", "wav-float", "flac"};
    const char *names[] = {"mc.wav", "mcf.wav", "mc.flac"};
    for (int i = 0; i < 3; i++) {
        md_status st = md_audio_save(tpath(names[i]), &a, fmts[i], NULL);
        st = st == MD_OK ? load(tpath(names[i]), &b, NULL) : st;
        CHECK(st == MD_OK && b.channels == 6 && max_abs_diff(&a, &b) <= 0.5 / 32768 + 1e-9 &&
                  b.samples[5] == 0.25f && b.samples[6 * 100 + 5] == 0.25f,
              "6-channel %s round trip keeps channel order", fmts[i]);
        md_audio_free(&b);
    }
    /* Over the channel limit: refused. */
    md_media_limits lim = md_media_limits_default();
    lim.max_channels = 2;
    md_clear_error();
    CHECK(md_audio_load(tpath("mc.wav"), &lim, &b, NULL) == MD_ERR_INVALID && has(md_last_error(), "6 channels") &&
              b.samples == NULL,
          "6 channels over a limit of 2 refused (%s)", md_last_error());
    lim = md_media_limits_default();
    lim.max_seconds = 0.05;
    md_clear_error();
    CHECK(md_audio_load(tpath("mc.flac"), &lim, &b, NULL) == MD_ERR_INVALID &&
              has(md_last_error(), "longer than the limit"),
          "0.1 s over a 0.05 s limit refused (%s)", md_last_error());
    md_audio_free(&a);
}

static void test_metadata(void)
{
    md_audio a = {0}, b = {0};
    make_sine(&a, 22050, 1, 2205, 300, 0.5);
    md_meta in = {0}, out = {0};
    md_meta_set(&in, "title", "Sine at 300 Hz");
    md_meta_set(&in, "artist", "Medley tests");
    md_meta_set(&in, "comment", "generated");
    md_meta_set(&in, "date", "2024-05-01");
    md_meta_set(&in, "album", "Round trips");
    md_meta_set(&in, "genre", "Test");
    md_meta_set(&in, "unknown-key", "skipped");

    CHECK(md_audio_save(tpath("meta.wav"), &a, "wav", &in) == MD_OK && load(tpath("meta.wav"), &b, &out) == MD_OK,
          "WAV with INFO tags saved and loaded");
    const char *keys[] = {"title", "artist", "comment", "date", "album", "genre"};
    for (int i = 0; i < 6; i++) {
        const char *v = md_meta_get(&out, keys[i]);
        CHECK(v && strcmp(v, md_meta_get(&in, keys[i])) == 0, "WAV INFO tag %s = \"%s\"", keys[i], v ? v : "(none)");
    }
    CHECK(md_meta_get(&out, "unknown-key") == NULL, "unknown key not written");
    md_audio_free(&b);
    md_meta_free(&out);

    const char *utf8 = "Ünïcødé — 日本語 🎵";
    md_meta_set(&in, "title", utf8);
    md_meta_set(&in, "license", "CC0-1.0");
    md_meta_set(&in, "tracknumber", "7");
    CHECK(md_audio_save(tpath("meta.flac"), &a, "flac", &in) == MD_OK && load(tpath("meta.flac"), &b, &out) == MD_OK,
          "FLAC with Vorbis comments saved and loaded");
    const char *fkeys[] = {"title", "artist", "comment", "date", "album", "genre", "license", "tracknumber"};
    for (int i = 0; i < 8; i++) {
        const char *v = md_meta_get(&out, fkeys[i]);
        CHECK(v && strcmp(v, md_meta_get(&in, fkeys[i])) == 0, "FLAC tag %s = \"%s\"", fkeys[i], v ? v : "(none)");
    }
    md_audio_free(&b);
    md_meta_free(&out);
    md_meta_free(&in);

    /* A Latin-1 INFO title (as old tools write) comes back as UTF-8. */
    SF_INFO info = {.samplerate = 8000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16};
    SNDFILE *sf = sf_open(tpath("latin1.wav"), SFM_WRITE, &info);
    if (sf) {
        sf_set_string(sf, SF_STR_TITLE, "Caf\xe9");
        short z[64] = {0};
        sf_writef_short(sf, z, 64);
        sf_close(sf);
    }
    CHECK(load(tpath("latin1.wav"), &b, &out) == MD_OK && md_meta_get(&out, "title") &&
              strcmp(md_meta_get(&out, "title"), "Caf\xc3\xa9") == 0,
          "Latin-1 INFO title converted to UTF-8");
    md_audio_free(&b);
    md_meta_free(&out);
    md_audio_free(&a);
}

/* OGG/Vorbis and MP3 written by libsndfile itself (when this build can)
 * load with their frequency intact; lossy, so no sample comparison. */
static void test_lossy_formats(void)
{
    struct {
        const char *name, *what;
        int format;
    } fm[] = {
        {"v.ogg", "OGG/Vorbis", SF_FORMAT_OGG | SF_FORMAT_VORBIS},
        {"m.mp3", "MP3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III},
    };
    md_audio a = {0}, b = {0};
    make_sine(&a, 44100, 1, 44100, 440, 0.5);
    for (int i = 0; i < 2; i++) {
        SF_INFO info = {.samplerate = 44100, .channels = 1, .format = fm[i].format};
        SNDFILE *sf = sf_format_check(&info) ? sf_open(tpath(fm[i].name), SFM_WRITE, &info) : NULL;
        if (!sf) {
            printf("skip %s: this libsndfile cannot write it\n", fm[i].what);
            continue;
        }
        sf_writef_float(sf, a.samples, a.frames);
        sf_close(sf);
        md_status st = load(tpath(fm[i].name), &b, NULL);
        double fq = st == MD_OK ? zc_freq(&b, b.frames / 4, 3 * b.frames / 4) : 0;
        CHECK(st == MD_OK && b.rate == 44100 && labs((long)(b.frames - 44100)) < 4096 && fabs(fq - 440) < 1,
              "%s loads: %lld frames, %.2f Hz (%s)", fm[i].what, (long long)b.frames, fq, md_last_error());
        md_audio_free(&b);
    }
    md_audio_free(&a);
}

/* ---- conversions ---------------------------------------------------------- */

static void test_resample(void)
{
    md_audio a = {0}, d = {0}, u = {0};
    make_sine(&a, 44100, 1, 44100, 440, 0.5);
    CHECK(md_audio_resample(&a, 16000, &d) == MD_OK && d.rate == 16000 && d.frames == 16000,
          "44100 -> 16000: %lld frames", (long long)d.frames);
    double fd = zc_freq(&d, 1000, 15000);
    CHECK(fabs(fd - 440) < 0.05, "440 Hz preserved at 16 kHz (%.4f Hz)", fd);
    double amp = 0;
    for (int64_t f = 1000; f < 15000; f++)
        amp = fmax(amp, fabs(d.samples[f]));
    CHECK(fabs(amp - 0.5) < 0.005, "amplitude preserved at 16 kHz (%.4f)", amp);
    CHECK(md_audio_resample(&d, 44100, &u) == MD_OK && u.frames == 44100 && u.rate == 44100,
          "16000 -> 44100: %lld frames", (long long)u.frames);
    double err = 0;
    for (int64_t f = 2000; f < 42000; f++)
        err = fmax(err, fabs((double)u.samples[f] - a.samples[f]));
    CHECK(err < 1e-3, "down and up again matches the original in the middle (max err %.2g)", err);
    md_audio_free(&d);
    md_audio_free(&u);

    /* Odd ratio and several channels: length is llround(frames * ratio). */
    md_audio s = {0};
    make_sine(&s, 22050, 3, 12345, 100, 0.4);
    CHECK(md_audio_resample(&s, 48000, &d) == MD_OK && d.channels == 3 && d.frames == llround(12345.0 * 48000 / 22050),
          "3-channel 22050 -> 48000: %lld frames", (long long)d.frames);
    double f2 = zc_freq(&d, 2000, 24000); /* channel 0 at 100 Hz */
    CHECK(fabs(f2 - 100) < 0.05, "100 Hz preserved (%.4f Hz)", f2);
    md_audio_free(&d);
    CHECK(md_audio_resample(&s, 22050, &d) == MD_OK && max_abs_diff(&s, &d) == 0, "same rate copies");
    md_audio_free(&d);
    md_clear_error();
    md_audio lo = {0};
    make_sine(&lo, 1000, 1, 100, 10, 0.5);
    CHECK(md_audio_resample(&lo, 300000, &d) == MD_ERR_INVALID && d.samples == NULL &&
              has(md_last_error(), "ratio range"),
          "ratio 300 refused (%s)", md_last_error());
    md_audio_free(&lo);
    CHECK(md_audio_resample(&s, 0, &d) == MD_ERR_INVALID, "rate 0 refused");
    md_audio_free(&s);
    md_audio_free(&a);
}

static void test_mixdown(void)
{
    md_audio a = {0}, m = {0};
    md_audio_alloc(&a, 8000, 3, 100);
    for (int f = 0; f < 100; f++) {
        a.samples[f * 3 + 0] = 0.5f;
        a.samples[f * 3 + 1] = -0.1f;
        a.samples[f * 3 + 2] = (float)f / 100;
    }
    CHECK(md_audio_mixdown(&a, &m) == MD_OK && m.channels == 1 && m.frames == 100 && m.rate == 8000,
          "mixdown shape");
    bool ok = true;
    for (int f = 0; f < 100 && m.samples; f++)
        ok &= fabs(m.samples[f] - (0.4 + f / 100.0) / 3) < 1e-6;
    CHECK(ok, "mixdown is the mean of the channels");
    md_audio_free(&m);
    md_audio_free(&a);
}

static void test_clipping(void)
{
    md_audio a = {0}, b = {0};
    md_audio_alloc(&a, 8000, 1, 10);
    const float v[10] = {0, 1.5f, -2, 0.5f, 1, -1, 3, -1.0001f, 1.25f, 0};
    memcpy(a.samples, v, sizeof v);
    g_warn[0] = 0;
    CHECK(md_audio_save(tpath("clip.wav"), &a, "wav", NULL) == MD_OK && has(g_warn, "5 of 10 samples"),
          "5 clipped samples counted at WARN (\"%s\")", g_warn);
    CHECK(load(tpath("clip.wav"), &b, NULL) == MD_OK && b.samples[1] == 32767.0f / 32768 && b.samples[2] == -1.0f &&
              b.samples[4] == 32767.0f / 32768 && b.samples[7] == -1.0f,
          "clipped 16-bit values are the extremes");
    md_audio_free(&b);
    g_warn[0] = 0;
    CHECK(md_audio_save(tpath("clipf.wav"), &a, "wav-float", NULL) == MD_OK && has(g_warn, "5 of 10 samples") &&
              load(tpath("clipf.wav"), &b, NULL) == MD_OK && b.samples[6] == 1.0f && b.samples[2] == -1.0f,
          "float WAV clipped to [-1, 1] too");
    md_audio_free(&b);
    a.samples[3] = NAN;
    md_clear_error();
    CHECK(md_audio_save(tpath("nan-out.wav"), &a, "wav", NULL) == MD_ERR_INVALID && has(md_last_error(), "frame 3") &&
              access(tpath("nan-out.wav"), F_OK) != 0,
          "saving NaN refused, nothing written (%s)", md_last_error());
    a.samples[3] = 0;
    md_clear_error();
    CHECK(md_audio_save(tpath("x.mp4"), &a, "mp4", NULL) == MD_ERR_INVALID && has(md_last_error(), "\"mp4\""),
          "unknown save format refused (%s)", md_last_error());
    md_clear_error();
    CHECK(md_audio_save("/nonexistent-dir/x.wav", &a, "wav", NULL) == MD_ERR_IO &&
              has(md_last_error(), "/nonexistent-dir/x.wav"),
          "unwritable folder refused (%s)", md_last_error());
    md_audio_free(&a);
}

/* ---- bad inputs ----------------------------------------------------------- */

static void expect_fail(const char *name, md_status want, const char *sub, const char *what)
{
    md_audio b = {0};
    md_meta meta = {0};
    md_status st = load(tpath(name), &b, &meta);
    CHECK(st == want && has(md_last_error(), sub) && has(md_last_error(), name) && b.samples == NULL &&
              b.frames == 0 && meta.count == 0,
          "%s: %s -> %s", what, md_status_str(st), md_last_error());
    md_audio_free(&b);
    md_meta_free(&meta);
}

static void test_bad_inputs(void)
{
    write_bytes(tpath("empty.wav"), "", 0);
    expect_fail("empty.wav", MD_ERR_FORMAT, "empty file", "empty file");

    size_t n = 0;
    unsigned char *good = read_bytes(tpath("q.wav"), &n); /* 8 kHz mono 16-bit, 4096 frames */
    if (good && n > 44) {
        write_bytes(tpath("trunc-header.wav"), good, 20);
        expect_fail("trunc-header.wav", MD_ERR_FORMAT, "libsndfile", "truncated WAV header");

        /* Data chunk claims 4096 frames; the file holds 1000. libsndfile
         * trims its count to the file, and the loader keeps what exists. */
        write_bytes(tpath("short-data.wav"), good, 44 + 2000);
        md_audio b = {0};
        CHECK(load(tpath("short-data.wav"), &b, NULL) == MD_OK && b.frames == 1000, "short data chunk: %lld frames loaded",
              (long long)b.frames);
        md_audio_free(&b);
        /* Header claiming much more than any file, on a 9-byte data chunk. */
        unsigned char h[53];
        wav_header(h, 1, 1, 8000, 16, 0x7ffffff0u);
        memcpy(h + 44, good + 44, 9);
        write_bytes(tpath("huge-claim.wav"), h, sizeof h);
        CHECK(load(tpath("huge-claim.wav"), &b, NULL) == MD_OK && b.frames == 4,
              "2^31-byte data claim on a 53-byte file: %lld frames loaded", (long long)b.frames);
        md_audio_free(&b);
        /* Header only: the data chunk is empty. */
        wav_header(h, 1, 1, 8000, 16, 0);
        write_bytes(tpath("nodata.wav"), h, 44);
        expect_fail("nodata.wav", MD_ERR_FORMAT, "no audio frames", "WAV with no frames");
    }
    free(good);

    static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                        0,    0,   0,   1,   0,    0,    0,    1,    8, 6, 0, 0,  0};
    write_bytes(tpath("picture.wav"), png, sizeof png);
    expect_fail("picture.wav", MD_ERR_FORMAT, "looks like a PNG image", "PNG named .wav");

    static const unsigned char jpg[] = {0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1};
    write_bytes(tpath("photo.flac"), jpg, sizeof jpg);
    expect_fail("photo.flac", MD_ERR_FORMAT, "looks like a JPEG image", "JPEG named .flac");

    unsigned char webp[64] = "RIFF\x38\0\0\0WEBPVP8 ";
    write_bytes(tpath("image.wav"), webp, sizeof webp);
    expect_fail("image.wav", MD_ERR_FORMAT, "RIFF file of form 'WEBP', not WAVE", "RIFF WEBP named .wav");

    const char *txt = "This is not audio, just some notes.\n";
    write_bytes(tpath("notes.wav"), txt, strlen(txt));
    expect_fail("notes.wav", MD_ERR_FORMAT, "looks like text", "text named .wav");

    unsigned char rnd[4096];
    srand(12345);
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (unsigned char)rand();
    rnd[0] = 0x01; /* keep the first bytes binary and non-magic */
    write_bytes(tpath("random.wav"), rnd, sizeof rnd);
    expect_fail("random.wav", MD_ERR_FORMAT, "libsndfile cannot read it", "random bytes");

    /* Float WAV with a NaN at frame 7 and an Inf later. */
    unsigned char fw[44 + 16 * 8];
    wav_header(fw, 3, 2, 8000, 32, 16 * 8);
    float fs[32];
    for (int i = 0; i < 32; i++)
        fs[i] = 0.1f * (float)(i % 5);
    fs[7 * 2 + 1] = NAN;
    fs[20] = INFINITY;
    memcpy(fw + 44, fs, sizeof fs);
    write_bytes(tpath("nan.wav"), fw, sizeof fw);
    expect_fail("nan.wav", MD_ERR_FORMAT, "frame 7, channel 1 is NaN", "WAV with NaN floats");

    /* 100 hours claimed: 8-bit mono 8 kHz, 2.88 GB of data in a sparse file,
     * so libsndfile believes the header. Refused by the byte limit with the
     * defaults, by the duration limit when the byte limit allows it; either
     * way before the sample buffer is allocated. */
    const uint32_t bytes100h = 100u * 3600u * 8000u;
    unsigned char h[44];
    wav_header(h, 1, 1, 8000, 8, bytes100h);
    FILE *f = fopen(tpath("100h.wav"), "wb");
    bool made = f && fwrite(h, 1, 44, f) == 44 && ftruncate(fileno(f), 44 + (off_t)bytes100h) == 0;
    if (f)
        fclose(f);
    CHECK(made, "sparse 100-hour WAV created");
    expect_fail("100h.wav", MD_ERR_INVALID, "larger than the limit", "100 h WAV over the byte limit");
    md_media_limits lim = md_media_limits_default();
    lim.max_bytes = (int64_t)4 << 30;
    md_audio b = {0};
    md_clear_error();
    double t0 = md_time_now();
    md_status st = md_audio_load(tpath("100h.wav"), &lim, &b, NULL);
    double dt = md_time_now() - t0;
    CHECK(st == MD_ERR_INVALID && has(md_last_error(), "360000.0 s of audio") &&
              has(md_last_error(), "longer than the limit of 3600 s") && dt < 1.0,
          "100 h WAV over the duration limit, in %.3f s (%s)", dt, md_last_error());
    md_audio_free(&b);
    unlink(tpath("100h.wav"));

    /* A LIST/INFO sub-chunk claiming ~4 GiB inside a 34-byte LIST: libsndfile
     * 1.2.0 spins on this for minutes (found by fuzz_audio.c); the loader
     * refuses it first. */
    unsigned char lw[44 + 42 + 8];
    wav_header(lw, 1, 1, 8000, 16, 8);
    memcpy(lw + 36, "LIST\x22\0\0\0INFOINAM\x06\0\0\0MedleyIART\xf7\xff\xff\xff", 34);
    memset(lw + 70, 'x', 8);
    memcpy(lw + 78, "data\x08\0\0\0", 8);
    memset(lw + 86, 0, 8);
    write_bytes(tpath("list-overrun.wav"), lw, sizeof lw);
    expect_fail("list-overrun.wav", MD_ERR_FORMAT, "LIST sub-chunk at byte 62 claims 4294967287 bytes",
                "LIST sub-chunk overrunning its LIST");

    expect_fail("does-not-exist.wav", MD_ERR_IO, "No such file", "nonexistent path");

    /* The same from memory, with a label. */
    md_clear_error();
    CHECK(md_audio_load_memory(png, sizeof png, "upload.wav", NULL, &b, NULL) == MD_ERR_FORMAT &&
              has(md_last_error(), "upload.wav: not an audio file: it looks like a PNG image"),
          "PNG from memory (%s)", md_last_error());
    md_clear_error();
    CHECK(md_audio_load_memory(png, 0, NULL, NULL, &b, NULL) == MD_ERR_FORMAT && has(md_last_error(), "(memory)"),
          "empty buffer (%s)", md_last_error());
    unsigned char *wav = read_bytes(tpath("meta.wav"), &n);
    md_meta meta = {0};
    CHECK(wav && md_audio_load_memory(wav, n, "meta.wav", NULL, &b, &meta) == MD_OK && b.frames == 2205 &&
              md_meta_get(&meta, "title") && strcmp(md_meta_get(&meta, "title"), "Sine at 300 Hz") == 0,
          "WAV with tags from memory");
    md_audio_free(&b);
    md_meta_free(&meta);
    free(wav);
}

/* ---- seeds for tests/fuzz_audio.c ------------------------------------------ */

static int write_seeds(const char *dir)
{
    mkdir(dir, 0755);
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    md_audio a = {0};
    make_sine(&a, 8000, 2, 200, 440, 0.7);
    md_meta m = {0};
    md_meta_set(&m, "title", "seed");
    md_meta_set(&m, "artist", "medley");
    int bad = 0;
    bad |= md_audio_save(tpath("seed16.wav"), &a, "wav", &m) != MD_OK;
    bad |= md_audio_save(tpath("seedf.wav"), &a, "wav-float", NULL) != MD_OK;
    bad |= md_audio_save(tpath("seed.flac"), &a, "flac", &m) != MD_OK;
    SF_INFO info = {.samplerate = 8000, .channels = 1, .format = SF_FORMAT_OGG | SF_FORMAT_VORBIS};
    SNDFILE *sf = sf_open(tpath("seed.ogg"), SFM_WRITE, &info);
    if (sf) {
        sf_writef_float(sf, a.samples, 100);
        sf_close(sf);
    }
    md_audio_free(&a);
    md_meta_free(&m);
    return bad;
}

int main(int argc, char **argv)
{
    md_log_set_callback(capture_log, NULL);
    if (argc == 3 && strcmp(argv[1], "--seeds") == 0)
        return write_seeds(argv[2]);

    const char *base = getenv("MEDLEY_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s/medley-audio-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(g_dir)) {
        printf("FAIL cannot create a folder under %s\n", base && *base ? base : "/tmp");
        return 1;
    }

    test_round_trips();
    test_multichannel();
    test_metadata();
    test_lossy_formats();
    test_resample();
    test_mixdown();
    test_clipping();
    test_bad_inputs();

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", g_dir);
    return check_done();
}
