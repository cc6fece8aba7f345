/* test_image_io.c — PNG/JPEG load and save, limits, bad input, resize and
 * convert. Files go under $MEDLEY_TEST_TMP (default /tmp). */
#include "check.h"
#include "image_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

static char g_dir[512];

static const char *tpath(const char *name)
{
    static char buf[4][768];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/medley_test_image_%d_%s", g_dir, (int)getpid(), name);
    return buf[k];
}

static void quiet(md_log_level level, const char *msg, void *user)
{
    MD_UNUSED(level);
    MD_UNUSED(msg);
    MD_UNUSED(user);
}

static bool write_bytes(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(b, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* Whole file; caller frees. */
static uint8_t *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    *n = b ? fread(b, 1, (size_t)sz, f) : 0;
    fclose(f);
    return b;
}

static float *px(const md_image *im, int x, int y) { return im->pixels + ((size_t)y * im->width + x) * im->channels; }

static md_media_limits lim_default(void) { return md_media_limits_default(); }

/* ------------------------------------------------------------- PNG */

static void test_png_roundtrip(void)
{
    md_media_limits lim = lim_default();
    for (int depth = 8; depth <= 16; depth += 8) {
        for (int ch = 1; ch <= 4; ch++) {
            unsigned maxv = depth == 8 ? 255 : 65535;
            md_image im = {0};
            md_image_alloc(&im, 7, 5, ch);
            size_t n = (size_t)7 * 5 * ch;
            for (size_t i = 0; i < n; i++)
                im.pixels[i] = (float)((i * 37 + 11) % (maxv + 1)) / (float)maxv;
            im.pixels[0] = 0.0f;
            im.pixels[1 % n] = 1.0f;
            const char *p = tpath("rt.png");
            md_status s = md_image_save_png(p, &im, NULL, depth);
            md_image back = {0};
            md_status s2 = md_image_load(p, &lim, &back, NULL);
            bool exact = s == MD_OK && s2 == MD_OK && back.width == 7 && back.height == 5 && back.channels == ch;
            for (size_t i = 0; exact && i < n; i++)
                exact = back.pixels[i] == im.pixels[i];
            CHECK(exact, "PNG round trip %d-bit, %d channel(s) is exact", depth, ch);
            md_image_free(&im);
            md_image_free(&back);
        }
    }
    /* Out-of-range and NaN samples clamp. */
    md_image im = {0};
    md_image_alloc(&im, 3, 1, 1);
    im.pixels[0] = -0.5f;
    im.pixels[1] = 7.0f;
    im.pixels[2] = NAN;
    md_image back = {0};
    md_image_save_png(tpath("clamp.png"), &im, NULL, 8);
    md_status s = md_image_load(tpath("clamp.png"), &lim, &back, NULL);
    CHECK(s == MD_OK && back.pixels[0] == 0.0f && back.pixels[1] == 1.0f && back.pixels[2] == 0.0f,
          "PNG save clamps to [0, 1] and writes NaN as 0");
    CHECK(access(tpath("clamp.png.tmp"), F_OK) != 0, "PNG save leaves no .tmp behind");
    CHECK(md_image_save_png(tpath("bad.png"), &im, NULL, 12) == MD_ERR_INVALID, "PNG bit depth 12 refused");
    CHECK(md_image_save_png("/nonexistent-dir/x.png", &im, NULL, 8) == MD_ERR_IO, "PNG save to a missing folder fails with MD_ERR_IO");
    md_image_free(&im);
    md_image_free(&back);
}

static void test_png_meta(void)
{
    md_media_limits lim = lim_default();
    md_image im = {0};
    md_image_alloc(&im, 2, 2, 3);
    for (int i = 0; i < 12; i++)
        im.pixels[i] = (float)i / 11.0f;
    char longv[3000];
    for (int i = 0; i < (int)sizeof longv - 1; i++)
        longv[i] = (char)('a' + i % 26);
    longv[sizeof longv - 1] = 0;
    md_meta m = {0};
    md_meta_set(&m, "Title", "plain ascii");
    md_meta_set(&m, "Description", "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac");
    md_meta_set(&m, "Long", longv);
    md_meta_set(&m, "prompt", "a cat, 4k");
    char p[1024];
    snprintf(p, sizeof p, "%s", tpath("meta.png"));
    md_status s = md_image_save_png(p, &im, &m, 8);
    md_image back = {0};
    md_meta mb = {0};
    md_status s2 = md_image_load(p, &lim, &back, &mb);
    CHECK(s == MD_OK && s2 == MD_OK && mb.count == 4, "PNG metadata: 4 entries back (got %d)", mb.count);
    for (int i = 0; i < m.count; i++) {
        const char *v = md_meta_get(&mb, m.keys[i]);
        CHECK(v && strcmp(v, m.values[i]) == 0, "PNG metadata \"%s\" round trips", m.keys[i]);
    }
    CHECK(mb.count == 4 && strcmp(mb.keys[0], "Title") == 0 && strcmp(mb.keys[3], "prompt") == 0, "PNG metadata keeps order");
    /* The file really holds iTXt for the UTF-8 value and tEXt for ASCII. */
    size_t n = 0;
    uint8_t *b = read_bytes(p, &n);
    bool itxt = false, text = false;
    for (size_t i = 0; b && i + 15 <= n; i++) {
        itxt |= memcmp(b + i, "iTXtDescription", 15) == 0;
        text |= memcmp(b + i, "tEXtTitle", 9) == 0;
    }
    free(b);
    CHECK(itxt && text, "PNG metadata: iTXt for UTF-8, tEXt for ASCII");

    md_meta bad = {0};
    md_meta_set(&bad, "k\xc3\xa9y", "v");
    CHECK(md_image_save_png(tpath("badkey.png"), &im, &bad, 8) == MD_ERR_INVALID, "non-ASCII PNG key refused");
    md_meta_free(&bad);
    md_meta_set(&bad, "key", "\xff\xfe");
    CHECK(md_image_save_png(tpath("badval.png"), &im, &bad, 8) == MD_ERR_INVALID, "invalid UTF-8 value refused");
    CHECK(access(tpath("badval.png"), F_OK) != 0 && access(tpath("badval.png.tmp"), F_OK) != 0,
          "refused save leaves no file");
    /* A failed save leaves an existing file as it was. */
    md_image one = {0};
    md_image_alloc(&one, 1, 1, 1);
    one.pixels[0] = 0.0f;
    md_image_save_png(p, &one, &bad, 8);
    md_image_free(&one);
    md_image_free(&back);
    CHECK(md_image_load(p, &lim, &back, NULL) == MD_OK && back.width == 2, "failed save keeps the old file intact");
    md_meta_free(&bad);
    md_meta_free(&m);
    md_meta_free(&mb);
    md_image_free(&im);
    md_image_free(&back);
}

/* Writes a PNG with libpng directly, for what md_image_save_png never
 * produces: palettes, low bit depths, interlacing, Latin-1 tEXt. */
static bool write_png_raw(const char *path, int w, int h, int depth, int ctype, int interlace, uint8_t *const *rows,
                          const png_color *pal, int npal, const uint8_t *trans, int ntrans, png_text *text, int ntext)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return false;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (pal)
        png_set_PLTE(png, info, pal, npal);
    if (trans)
        png_set_tRNS(png, info, trans, ntrans, NULL);
    if (text)
        png_set_text(png, info, text, ntext);
    png_write_info(png, info);
    png_write_image(png, (png_bytepp)(uintptr_t)rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return fclose(f) == 0;
}

static void test_png_palette_and_friends(void)
{
    md_media_limits lim = lim_default();
    /* 4 × 2, 8-bit palette, tRNS for the first three entries. */
    png_color pal[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}};
    uint8_t trans[3] = {0, 128, 255};
    uint8_t r0[4] = {0, 1, 2, 3}, r1[4] = {3, 2, 1, 0};
    uint8_t *rows[2] = {r0, r1};
    const char *p = tpath("pal.png");
    bool w = write_png_raw(p, 4, 2, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, rows, pal, 4, trans, 3, NULL, 0);
    md_image im = {0};
    md_status s = md_image_load(p, &lim, &im, NULL);
    bool ok = w && s == MD_OK && im.width == 4 && im.height == 2 && im.channels == 4;
    static const uint8_t alpha[4] = {0, 128, 255, 255};
    for (int y = 0; ok && y < 2; y++)
        for (int x = 0; ok && x < 4; x++) {
            int e = y ? 3 - x : x;
            float *q = px(&im, x, y);
            ok = q[0] == pal[e].red / 255.0f && q[1] == pal[e].green / 255.0f && q[2] == pal[e].blue / 255.0f &&
                 q[3] == alpha[e] / 255.0f;
        }
    CHECK(ok, "palette + tRNS PNG → RGBA with the palette's colours and alphas");
    md_image_free(&im);

    /* Palette without tRNS → RGB. */
    write_png_raw(p, 4, 2, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, rows, pal, 4, NULL, 0, NULL, 0);
    s = md_image_load(p, &lim, &im, NULL);
    CHECK(s == MD_OK && im.channels == 3 && px(&im, 3, 0)[2] == 30 / 255.0f, "palette PNG without tRNS → RGB");
    md_image_free(&im);

    /* 2-bit gray: levels 0..3 scale to 0, 1/3, 2/3, 1. */
    uint8_t g0[1] = {0x1b}; /* 00 01 10 11 */
    uint8_t *grows[1] = {g0};
    write_png_raw(p, 4, 1, 2, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, grows, NULL, 0, NULL, 0, NULL, 0);
    s = md_image_load(p, &lim, &im, NULL);
    CHECK(s == MD_OK && im.channels == 1 && im.pixels[0] == 0.0f && im.pixels[1] == 85 / 255.0f &&
          im.pixels[2] == 170 / 255.0f && im.pixels[3] == 1.0f, "2-bit gray PNG scales to 8 bit");
    md_image_free(&im);

    /* Interlaced 16-bit RGB, 9 × 7 (every Adam7 pass non-empty). */
    enum { IW = 9, IH = 7 };
    uint8_t ibuf[IH][IW * 6];
    uint8_t *irows[IH];
    for (int y = 0; y < IH; y++) {
        irows[y] = ibuf[y];
        for (int i = 0; i < IW * 3; i++) {
            unsigned v = (unsigned)(y * 7919 + i * 1237) & 0xffff;
            ibuf[y][2 * i] = (uint8_t)(v >> 8);
            ibuf[y][2 * i + 1] = (uint8_t)v;
        }
    }
    write_png_raw(p, IW, IH, 16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7, irows, NULL, 0, NULL, 0, NULL, 0);
    s = md_image_load(p, &lim, &im, NULL);
    ok = s == MD_OK && im.width == IW && im.height == IH && im.channels == 3;
    for (int y = 0; ok && y < IH; y++)
        for (int i = 0; ok && i < IW * 3; i++)
            ok = im.pixels[(size_t)y * IW * 3 + i] == (float)((y * 7919 + i * 1237) & 0xffff) / 65535.0f;
    CHECK(ok, "interlaced 16-bit RGB PNG decodes exactly");
    md_image_free(&im);

    /* Gray + tRNS → gray+alpha; Latin-1 tEXt → UTF-8; zTXt. */
    png_color_16 tc = {0};
    uint8_t gr[2] = {0, 200};
    uint8_t *gr_rows[1] = {gr};
    png_text t[2] = {0};
    t[0].compression = PNG_TEXT_COMPRESSION_NONE;
    t[0].key = (char *)"Author";
    t[0].text = (char *)"Ren\xe9";
    t[1].compression = PNG_TEXT_COMPRESSION_zTXt;
    t[1].key = (char *)"Zipped";
    t[1].text = (char *)"compressed text";
    FILE *f = fopen(p, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (!setjmp(png_jmpbuf(png))) {
        png_init_io(png, f);
        png_set_IHDR(png, info, 2, 1, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, 0, 0);
        png_set_tRNS(png, info, NULL, 0, &tc);
        png_set_text(png, info, t, 2);
        png_write_info(png, info);
        png_write_image(png, gr_rows);
        png_write_end(png, info);
    }
    png_destroy_write_struct(&png, &info);
    fclose(f);
    md_meta m = {0};
    s = md_image_load(p, &lim, &im, &m);
    CHECK(s == MD_OK && im.channels == 2 && im.pixels[1] == 0.0f && im.pixels[3] == 1.0f &&
          im.pixels[2] == 200 / 255.0f, "gray + tRNS PNG → gray+alpha");
    const char *a = md_meta_get(&m, "Author"), *z = md_meta_get(&m, "Zipped");
    CHECK(a && strcmp(a, "Ren\xc3\xa9") == 0, "Latin-1 tEXt becomes UTF-8");
    CHECK(z && strcmp(z, "compressed text") == 0, "zTXt is read");
    md_meta_free(&m);
    md_image_free(&im);
}

/* ------------------------------------------------------------ JPEG */

static void test_jpeg_roundtrip(void)
{
    md_media_limits lim = lim_default();
    for (int ch = 1; ch <= 4; ch++) {
        md_image im = {0};
        md_image_alloc(&im, 40, 24, ch);
        for (int y = 0; y < 24; y++)
            for (int x = 0; x < 40; x++)
                for (int c = 0; c < ch; c++)
                    px(&im, x, y)[c] = c == 3 ? 0.25f : (float)(x + y + 10 * c) / 100.0f;
        const char *p = tpath("rt.jpg");
        md_status s = md_image_save_jpeg(p, &im, 95);
        md_image back = {0};
        md_status s2 = md_image_load(p, &lim, &back, NULL);
        int want = ch <= 2 ? 1 : 3;
        double err = 0;
        bool ok = s == MD_OK && s2 == MD_OK && back.width == 40 && back.height == 24 && back.channels == want;
        for (int y = 0; ok && y < 24; y++)
            for (int x = 0; x < 40; x++)
                for (int c = 0; c < want; c++)
                    err = fmax(err, fabs(px(&back, x, y)[c] - px(&im, x, y)[c]));
        CHECK(ok && err < 0.03, "JPEG round trip from %d channel(s) → %d, max error %.4f", ch, want, err);
        md_image_free(&im);
        md_image_free(&back);
    }
    md_image im = {0};
    md_image_alloc(&im, 8, 8, 3);
    CHECK(md_image_save_jpeg(tpath("q.jpg"), &im, 0) == MD_ERR_INVALID, "JPEG quality 0 refused");
    md_image_free(&im);
}

/* A JPEG written by libjpeg directly: progressive or CMYK. */
static bool write_jpeg_raw(const char *path, int w, int h, int comps, J_COLOR_SPACE cs, bool progressive,
                           const uint8_t *pixels)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr em;
    c.err = jpeg_std_error(&em);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    if (progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(uintptr_t)(pixels + (size_t)c.next_scanline * w * comps);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return fclose(f) == 0;
}

static void test_jpeg_variants(void)
{
    md_media_limits lim = lim_default();
    enum { W = 32, H = 16 };
    uint8_t rgb[W * H * 3];
    for (int i = 0; i < W * H; i++) {
        rgb[3 * i] = 200;
        rgb[3 * i + 1] = 100;
        rgb[3 * i + 2] = 50;
    }
    const char *p = tpath("prog.jpg");
    write_jpeg_raw(p, W, H, 3, JCS_RGB, true, rgb);
    md_image im = {0};
    md_status s = md_image_load(p, &lim, &im, NULL);
    CHECK(s == MD_OK && im.channels == 3 && fabsf(px(&im, 5, 5)[0] - 200 / 255.0f) < 0.02f &&
          fabsf(px(&im, 5, 5)[2] - 50 / 255.0f) < 0.02f, "progressive JPEG decodes");
    md_image_free(&im);

    /* Adobe CMYK (libjpeg writes the Adobe marker, samples inverted):
     * C stored 0 = full cyan ink, the rest 255 = none → RGB (0, 1, 1). */
    uint8_t cmyk[W * H * 4];
    for (int i = 0; i < W * H; i++) {
        cmyk[4 * i] = 0;
        cmyk[4 * i + 1] = cmyk[4 * i + 2] = cmyk[4 * i + 3] = 255;
    }
    p = tpath("cmyk.jpg");
    write_jpeg_raw(p, W, H, 4, JCS_CMYK, false, cmyk);
    s = md_image_load(p, &lim, &im, NULL);
    CHECK(s == MD_OK && im.channels == 3 && px(&im, 3, 3)[0] < 0.03f && px(&im, 3, 3)[1] > 0.97f &&
          px(&im, 3, 3)[2] > 0.97f, "CMYK JPEG → RGB (cyan)");
    md_image_free(&im);
}

/* A 32 × 16 RGB JPEG with a white 8 × 8 block at stored top-left, a
 * mid-gray one at stored top-right, black elsewhere; then an APP1 Exif
 * segment with Orientation = o spliced in after SOI. */
static uint8_t *jpeg_with_orientation(int o, bool little_endian, size_t *n)
{
    md_image im = {0};
    md_image_alloc(&im, 32, 16, 3);
    memset(im.pixels, 0, sizeof(float) * 32 * 16 * 3);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++)
            for (int c = 0; c < 3; c++) {
                px(&im, x, y)[c] = 1.0f;
                px(&im, 24 + x, y)[c] = 0.5f;
            }
    const char *p = tpath("orient_base.jpg");
    md_image_save_jpeg(p, &im, 95);
    md_image_free(&im);
    size_t bn = 0;
    uint8_t *base = read_bytes(p, &bn);
    /* TIFF: header, IFD0 with one entry (0x0112 SHORT 1 o), next IFD 0. */
    uint8_t tiff[8 + 2 + 12 + 4];
    memset(tiff, 0, sizeof tiff);
#define PUT16(q, v) (little_endian ? ((q)[0] = (uint8_t)(v), (q)[1] = (uint8_t)((v) >> 8)) : ((q)[0] = (uint8_t)((v) >> 8), (q)[1] = (uint8_t)(v)))
    tiff[0] = tiff[1] = little_endian ? 'I' : 'M';
    PUT16(tiff + 2, 42);
    if (little_endian)
        tiff[4] = 8;
    else
        tiff[7] = 8;
    PUT16(tiff + 8, 1);
    PUT16(tiff + 10, 0x0112);
    PUT16(tiff + 12, 3);
    if (little_endian)
        tiff[14] = 1;
    else
        tiff[17] = 1;
    PUT16(tiff + 18, o);
#undef PUT16
    size_t seg = 2 + 6 + sizeof tiff;
    *n = bn + 2 + seg;
    uint8_t *out = malloc(*n);
    memcpy(out, base, 2);
    out[2] = 0xff;
    out[3] = 0xe1;
    out[4] = (uint8_t)(seg >> 8);
    out[5] = (uint8_t)seg;
    memcpy(out + 6, "Exif\0\0", 6);
    memcpy(out + 12, tiff, sizeof tiff);
    memcpy(out + 12 + sizeof tiff, base + 2, bn - 2);
    free(base);
    return out;
}

static void test_jpeg_orientation(void)
{
    md_media_limits lim = lim_default();
    /* Where the white and gray blocks' centres must land, from the EXIF
     * table ("row 0 is visual top/bottom/left/right, column 0 is ..."). */
    static const struct { int w, h, wx, wy, gx, gy; } want[9] = {
        {0},
        {32, 16, 4, 4, 28, 4},   /* 1 row0 top,    col0 left   */
        {32, 16, 27, 4, 3, 4},   /* 2 row0 top,    col0 right  */
        {32, 16, 27, 11, 3, 11}, /* 3 row0 bottom, col0 right  */
        {32, 16, 4, 11, 28, 11}, /* 4 row0 bottom, col0 left   */
        {16, 32, 4, 4, 4, 28},   /* 5 row0 left,   col0 top    */
        {16, 32, 11, 4, 11, 28}, /* 6 row0 right,  col0 top    */
        {16, 32, 11, 27, 11, 3}, /* 7 row0 right,  col0 bottom */
        {16, 32, 4, 27, 4, 3},   /* 8 row0 left,   col0 bottom */
    };
    for (int o = 1; o <= 8; o++) {
        size_t n = 0;
        uint8_t *b = jpeg_with_orientation(o, o % 2 == 0, &n);
        md_image im = {0};
        md_status s = md_image_load_memory(b, n, "orient.jpg", &lim, &im, NULL);
        bool ok = s == MD_OK && im.width == want[o].w && im.height == want[o].h;
        float white = ok ? px(&im, want[o].wx, want[o].wy)[0] : -1;
        float gray = ok ? px(&im, want[o].gx, want[o].gy)[0] : -1;
        /* A black pixel in the other corners rules out a lucky match. */
        int bx = ok ? im.width - 1 - want[o].wx : 0, by = ok ? im.height - 1 - want[o].wy : 0;
        float black = ok ? px(&im, bx, by)[0] : -1;
        CHECK(ok && white > 0.9f && fabsf(gray - 0.5f) < 0.06f && black < 0.1f,
              "EXIF orientation %d (%s-endian): %dx%d, white %.2f, gray %.2f, black %.2f", o, o % 2 ? "big" : "little",
              im.width, im.height, white, gray, black);
        md_image_free(&im);
        if (o == 3) { /* a COM segment becomes meta "Comment" */
            uint8_t *c = malloc(n + 9);
            memcpy(c, b, 2);
            memcpy(c + 2, "\xff\xfe\x00\x07hello", 9);
            memcpy(c + 11, b + 2, n - 2);
            md_meta m = {0};
            s = md_image_load_memory(c, n + 9, "com.jpg", &lim, &im, &m);
            const char *v = md_meta_get(&m, "Comment");
            CHECK(s == MD_OK && v && strcmp(v, "hello") == 0 && im.width == 32, "JPEG comment read into meta");
            md_meta_free(&m);
            md_image_free(&im);
            free(c);
        }
        free(b);
        if (o == 6) { /* and through a file */
            write_bytes(tpath("o6.jpg"), b = jpeg_with_orientation(6, false, &n), n);
            free(b);
            s = md_image_load(tpath("o6.jpg"), &lim, &im, NULL);
            CHECK(s == MD_OK && im.width == 16 && im.height == 32, "EXIF orientation applied when loading a file");
            md_image_free(&im);
        }
    }
}

/* --------------------------------------------------------- bad input */

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void test_bomb(void)
{
    md_media_limits lim = lim_default();
    uint8_t b[8 + 25 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    put32(b + 8, 13);
    memcpy(b + 12, "IHDR", 4);
    put32(b + 16, 100000);
    put32(b + 20, 100000);
    b[24] = 8; /* depth */
    b[25] = 2; /* RGB */
    put32(b + 29, crc32_of(b + 12, 17));
    put32(b + 33, 0);
    memcpy(b + 37, "IEND", 4);
    put32(b + 41, crc32_of(b + 37, 4));
    const char *p = tpath("bomb.png");
    write_bytes(p, b, sizeof b);
    md_image im = {0};
    md_clear_error();
    double t0 = md_time_now();
    md_status s = md_image_load(p, &lim, &im, NULL);
    double dt = md_time_now() - t0;
    CHECK(s != MD_OK && strstr(md_last_error(), "limit") && strstr(md_last_error(), "100000 x 100000") &&
          im.pixels == NULL, "PNG bomb header refused: \"%s\"", md_last_error());
    CHECK(dt < 0.1, "PNG bomb refused fast (%.4f s)", dt);
    /* Within the pixel limit but truncated: still an error. */
    put32(b + 16, 100);
    put32(b + 20, 100);
    put32(b + 29, crc32_of(b + 12, 17));
    s = md_image_load_memory(b, sizeof b, "noidat.png", &lim, &im, NULL);
    CHECK(s == MD_ERR_FORMAT, "PNG without IDAT refused: \"%s\"", md_last_error());

    /* A chunk claiming 2 GiB in a 60-byte file: refused before libpng
     * allocates its declared length. */
    uint8_t big[64];
    memcpy(big, b, 33);
    put32(big + 33, 0x7ffffff0u);
    memcpy(big + 37, "iTXtKey\0\0\0\0\0\0\0\0", 15);
    memcpy(big + 52, b + 33, 12);
    s = md_image_load_memory(big, 64, "chunk.png", &lim, &im, NULL);
    CHECK(s == MD_ERR_FORMAT && strstr(md_last_error(), "claims"), "PNG chunk longer than the file: \"%s\"",
          md_last_error());

    /* JPEG SOF claiming 60000 × 60000: refused on size. */
    md_image small = {0};
    md_image_alloc(&small, 8, 8, 3);
    memset(small.pixels, 0, sizeof(float) * 8 * 8 * 3);
    md_image_save_jpeg(tpath("j.jpg"), &small, 90);
    md_image_free(&small);
    size_t n = 0;
    uint8_t *j = read_bytes(tpath("j.jpg"), &n);
    for (size_t i = 2; j && i + 9 < n; i++)
        if (j[i] == 0xff && j[i + 1] == 0xc0) {
            j[i + 5] = j[i + 7] = 0xea;
            j[i + 6] = j[i + 8] = 0x60;
            break;
        }
    s = md_image_load_memory(j, n, "bomb.jpg", &lim, &im, NULL);
    CHECK(s != MD_OK && strstr(md_last_error(), "limit"), "JPEG bomb header refused: \"%s\"", md_last_error());
    free(j);

    /* max_bytes */
    md_media_limits tiny = lim;
    tiny.max_bytes = 10;
    s = md_image_load(p, &tiny, &im, NULL);
    CHECK(s != MD_OK && strstr(md_last_error(), "max_bytes"), "file over max_bytes refused: \"%s\"", md_last_error());
}

static void test_truncated(void)
{
    md_media_limits lim = lim_default();
    md_image im = {0};
    md_image_alloc(&im, 37, 23, 4);
    for (size_t i = 0; i < (size_t)37 * 23 * 4; i++)
        im.pixels[i] = (float)((i * 7919) % 256) / 255.0f;
    md_meta m = {0};
    md_meta_set(&m, "Title", "x");
    md_image_save_png(tpath("t.png"), &im, &m, 8);
    md_image_save_jpeg(tpath("t.jpg"), &im, 80);
    md_meta_free(&m);
    md_image_free(&im);
    const char *files[2] = {tpath("t.png"), tpath("t.jpg")};
    for (int f = 0; f < 2; f++) {
        size_t n = 0;
        uint8_t *b = read_bytes(files[f], &n);
        size_t cuts[] = {1, 4, 8, 20, 33, 40, 100, n / 3, n / 2, n - 20, n - 5, n - 1};
        int bad = 0;
        for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
            md_image t = {0};
            md_status s = md_image_load_memory(b, cuts[k], "cut", &lim, &t, NULL);
            if (s == MD_OK || t.pixels) {
                bad++;
                printf("     cut at %zu of %zu loaded\n", cuts[k], n);
            }
            md_image_free(&t);
        }
        CHECK(bad == 0, "truncated %s refused at 12 cut points", f ? "JPEG" : "PNG");
        /* Flipped bytes in the middle: error or some image, never a crash. */
        for (size_t k = 0; k < 64; k++) {
            uint8_t *c = malloc(n);
            memcpy(c, b, n);
            c[(k * 131) % n] ^= (uint8_t)(k * 37 + 1);
            md_image t = {0};
            md_image_load_memory(c, n, "flip", &lim, &t, NULL);
            md_image_free(&t);
            free(c);
        }
        CHECK(true, "%s with flipped bytes: no crash", f ? "JPEG" : "PNG");
        free(b);
    }
}

static void test_not_images(void)
{
    md_media_limits lim = lim_default();
    md_image im = {0};
    md_status s;

    write_bytes(tpath("empty.png"), "", 0);
    s = md_image_load(tpath("empty.png"), &lim, &im, NULL);
    CHECK(s == MD_ERR_FORMAT && strstr(md_last_error(), "empty"), "empty file: \"%s\"", md_last_error());

    s = md_image_load("", &lim, &im, NULL);
    CHECK(s == MD_ERR_INVALID, "empty path refused: \"%s\"", md_last_error());
    s = md_image_load(tpath("does-not-exist.png"), &lim, &im, NULL);
    CHECK(s == MD_ERR_IO && strstr(md_last_error(), "does-not-exist"), "missing file: \"%s\"", md_last_error());
    s = md_image_load(g_dir, &lim, &im, NULL);
    CHECK(s == MD_ERR_IO, "directory refused: \"%s\"", md_last_error());

    uint8_t wav[44] = {'R', 'I', 'F', 'F', 36, 0, 0, 0, 'W', 'A', 'V', 'E', 'f', 'm', 't', ' ', 16, 0, 0, 0, 1, 0, 1, 0,
                       0x44, 0xac, 0, 0, 0x88, 0x58, 1, 0, 2, 0, 16, 0, 'd', 'a', 't', 'a', 0, 0, 0, 0};
    write_bytes(tpath("sound.png"), wav, sizeof wav);
    s = md_image_load(tpath("sound.png"), &lim, &im, NULL);
    CHECK(s == MD_ERR_FORMAT && strstr(md_last_error(), "sound.png: not an image") &&
          strstr(md_last_error(), "RIFF/WAVE"), "WAV named .png: \"%s\"", md_last_error());

    uint8_t rnd[1000];
    uint32_t x = 12345;
    for (int i = 0; i < 1000; i++) {
        x = x * 1664525u + 1013904223u;
        rnd[i] = (uint8_t)(x >> 24);
    }
    rnd[0] = 0x00;
    write_bytes(tpath("noise.png"), rnd, sizeof rnd);
    s = md_image_load(tpath("noise.png"), &lim, &im, NULL);
    CHECK(s == MD_ERR_FORMAT && strstr(md_last_error(), "not an image"), "random bytes: \"%s\"", md_last_error());

    s = md_image_load_memory("GIF89a\1\0\1\0", 10, "a.png", &lim, &im, NULL);
    CHECK(s != MD_OK && strstr(md_last_error(), "GIF") && strstr(md_last_error(), "a.png"),
          "a GIF header with no image data: \"%s\"", md_last_error());
    s = md_image_load_memory("hello, world\n", 13, "notes.jpg", &lim, &im, NULL);
    CHECK(s == MD_ERR_FORMAT && strstr(md_last_error(), "text"), "text: \"%s\"", md_last_error());
    uint8_t bmp[64] = {'B', 'M', 64, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 24};
    s = md_image_load_memory(bmp, sizeof bmp, "a.png", NULL, &im, NULL);
    CHECK(s == MD_OK && im.width == 1 && im.height == 1 && im.channels == 3,
          "a 1x1 BMP decodes through FFmpeg (NULL limits): %s", s == MD_OK ? "ok" : md_last_error());
    md_image_free(&im);
    s = md_image_load_memory("BMW motorcycle notes, two pages long", 36, "bmw.txt", NULL, &im, NULL);
    CHECK(s == MD_ERR_FORMAT && strstr(md_last_error(), "text"), "text starting \"BM\" is not a BMP: \"%s\"",
          md_last_error());
    /* Right magic, nothing after it. */
    s = md_image_load_memory("\x89PNG\r\n\x1a\n", 8, "sig.png", &lim, &im, NULL);
    CHECK(s == MD_ERR_FORMAT, "PNG signature only: \"%s\"", md_last_error());
    s = md_image_load_memory("\xff\xd8\xff", 3, "soi.jpg", &lim, &im, NULL);
    CHECK(s == MD_ERR_FORMAT, "JPEG SOI only: \"%s\"", md_last_error());
    CHECK(im.pixels == NULL && im.width == 0, "failed loads leave the image zeroed");
}

/* ---------------------------------------------------- resize, convert */

static bool near(float a, float b) { return fabsf(a - b) < 1e-5f; }

static void test_resize(void)
{
    md_image a = {0}, b = {0};
    md_image_alloc(&a, 4, 1, 1);
    float v[4] = {0, 1, 0, 1};
    memcpy(a.pixels, v, sizeof v);
    md_image_resize(&a, 2, 1, &b);
    /* Tent of radius 2 at centres 0.5 and 2.5, edges clamped. */
    CHECK(b.width == 2 && near(b.pixels[0], 0.375f) && near(b.pixels[1], 0.625f),
          "shrink 4 → 2: triangle filter (%.4f %.4f)", b.pixels[0], b.pixels[1]);
    md_image_free(&b);
    md_image_resize(&a, 4, 1, &b);
    CHECK(memcmp(a.pixels, b.pixels, sizeof v) == 0, "resize to the same size is exact");
    md_image_free(&a);
    md_image_free(&b);

    md_image_alloc(&a, 2, 1, 1);
    a.pixels[0] = 0;
    a.pixels[1] = 1;
    md_image_resize(&a, 4, 1, &b);
    CHECK(near(b.pixels[0], 0) && near(b.pixels[1], 0.25f) && near(b.pixels[2], 0.75f) && near(b.pixels[3], 1),
          "enlarge 2 → 4: bilinear (%.3f %.3f %.3f %.3f)", b.pixels[0], b.pixels[1], b.pixels[2], b.pixels[3]);
    md_image_free(&a);
    md_image_free(&b);

    /* 1-pixel checkerboard shrunk 10×: no aliasing, all ≈ 0.5. */
    md_image_alloc(&a, 100, 100, 1);
    for (int y = 0; y < 100; y++)
        for (int x = 0; x < 100; x++)
            *px(&a, x, y) = (float)((x + y) & 1);
    md_image_resize(&a, 10, 10, &b);
    float lo = 1, hi = 0;
    for (int i = 0; i < 100; i++) {
        lo = fminf(lo, b.pixels[i]);
        hi = fmaxf(hi, b.pixels[i]);
    }
    CHECK(lo > 0.45f && hi < 0.55f, "checkerboard 100 → 10 averages to gray (%.3f..%.3f)", lo, hi);
    md_image_free(&b);
    md_image_resize(&a, 37, 3, &b);
    CHECK(b.width == 37 && b.height == 3, "non-uniform resize 100x100 → 37x3");
    md_image_free(&a);
    md_image_free(&b);

    /* Premultiplied alpha: a transparent green pixel does not tint red. */
    md_image_alloc(&a, 2, 1, 4);
    float rgba[8] = {1, 0, 0, 1, 0, 1, 0, 0};
    memcpy(a.pixels, rgba, sizeof rgba);
    md_image_resize(&a, 1, 1, &b);
    CHECK(near(b.pixels[0], 1) && near(b.pixels[1], 0) && near(b.pixels[3], 0.5f),
          "RGBA shrink filters premultiplied (%.3f %.3f %.3f %.3f)", b.pixels[0], b.pixels[1], b.pixels[2], b.pixels[3]);
    md_image_free(&a);
    md_image_free(&b);
    md_image_alloc(&a, 2, 2, 3);
    CHECK(md_image_resize(&a, 0, 5, &b) == MD_ERR_INVALID && b.pixels == NULL, "resize to 0 wide refused");
    md_image_free(&a);
}

static void test_convert(void)
{
    md_image a = {0}, b = {0};
    md_image_alloc(&a, 2, 1, 3);
    float rgb[6] = {1, 0, 0, 0.2f, 0.4f, 0.6f};
    memcpy(a.pixels, rgb, sizeof rgb);
    md_image_convert(&a, 1, &b);
    CHECK(near(b.pixels[0], 0.299f) && near(b.pixels[1], 0.299f * 0.2f + 0.587f * 0.4f + 0.114f * 0.6f),
          "RGB → gray with Rec. 601 luma");
    md_image_free(&b);
    md_image_convert(&a, 4, &b);
    CHECK(b.channels == 4 && b.pixels[3] == 1.0f && b.pixels[7] == 1.0f && b.pixels[5] == 0.4f, "RGB → RGBA adds opaque alpha");
    md_image c = {0};
    md_image_convert(&b, 2, &c);
    CHECK(c.channels == 2 && near(c.pixels[0], 0.299f) && c.pixels[1] == 1.0f, "RGBA → gray+alpha keeps alpha");
    md_image d = {0};
    md_image_convert(&c, 3, &d);
    CHECK(d.channels == 3 && d.pixels[0] == d.pixels[1] && d.pixels[1] == d.pixels[2] && near(d.pixels[0], 0.299f),
          "gray+alpha → RGB replicates and drops alpha");
    md_image_free(&c);
    CHECK(md_image_convert(&a, 5, &c) == MD_ERR_INVALID, "convert to 5 channels refused");
    md_image_free(&a);
    md_image_free(&b);
    md_image_free(&c);
    md_image_free(&d);
}

/* GIF (animated: first frame), WebP, TIFF and BMP made by the ffmpeg CLI
 * decode through FFmpeg; skipped when the CLI is missing. */
static void test_other_formats(void)
{
    if (system("command -v ffmpeg >/dev/null 2>&1") != 0) {
        printf("skip other formats: no ffmpeg CLI\n");
        return;
    }
    const char *ext[] = {"gif", "webp", "tiff", "bmp"};
    for (int i = 0; i < 4; i++) {
        char name[32], cmd[1024];
        snprintf(name, sizeof name, "other.%s", ext[i]);
        snprintf(cmd, sizeof cmd,
                 "ffmpeg -loglevel error -y -f lavfi -i testsrc=size=40x30:rate=5 -t 1 %s '%s'",
                 i == 0 ? "" : "-frames:v 1", tpath(name));
        if (system(cmd) != 0) {
            printf("skip %s: ffmpeg could not write it\n", ext[i]);
            continue;
        }
        md_image im;
        md_status s = md_image_load(tpath(name), NULL, &im, NULL);
        CHECK(s == MD_OK && im.width == 40 && im.height == 30 && im.channels == 3,
              "%s from ffmpeg decodes (%dx%d)", ext[i], im.width, im.height);
        /* testsrc is colourful: the first frame is not blank */
        double sum = 0;
        for (size_t k = 0; s == MD_OK && k < (size_t)40 * 30 * 3; k++)
            sum += im.pixels[k];
        CHECK(s == MD_OK && sum > 100.0, "%s pixels carry the picture (sum %.1f)", ext[i], sum);
        md_image_free(&im);
        remove(tpath(name));
    }
}

int main(void)
{
    const char *t = getenv("MEDLEY_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s", t && *t ? t : "/tmp");
    if (!getenv("MEDLEY_TEST_VERBOSE"))
        md_log_set_callback(quiet, NULL); /* md_last_error still records errors */
    test_png_roundtrip();
    test_png_meta();
    test_png_palette_and_friends();
    test_jpeg_roundtrip();
    test_jpeg_variants();
    test_jpeg_orientation();
    test_bomb();
    test_truncated();
    test_not_images();
    test_resize();
    test_convert();
    test_other_formats();
    const char *names[] = {"rt.png", "clamp.png", "meta.png", "pal.png", "rt.jpg", "prog.jpg", "cmyk.jpg",
                           "orient_base.jpg", "o6.jpg", "bomb.png", "j.jpg", "t.png", "t.jpg", "empty.png",
                           "sound.png", "noise.png"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        remove(tpath(names[i]));
    return check_done();
}
