/* image_io.c — PNG/JPEG load and save, resize, convert (see image_io.h).
 *
 * libpng and libjpeg report errors by longjmp. Each decoder/encoder keeps
 * everything it changes after setjmp in a job struct owned by its caller and
 * reached through a pointer that never changes, so no automatic variable of
 * the function that called setjmp is modified between setjmp and longjmp
 * (C17 7.13.2.1p3) and the caller can always clean up. */
#include "image_io.h"
#include "video_io.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <png.h>
#include <jpeglib.h>
#include <jerror.h>

/* A progressive JPEG may legally have many scans, but each one re-reads the
 * whole coefficient buffer; beyond this it is an attack, not a photo. */
#define JPEG_MAX_SCANS 256
/* Corrupt entropy data makes libjpeg warn per block; past this, give up. */
#define JPEG_MAX_WARNINGS 1000
/* Largest ancillary chunk (text, ICC profile, ...) kept, after inflating. */
#define PNG_MAX_CHUNK_BYTES ((size_t)8 << 20)
/* Ancillary chunks kept per file (bounds the metadata a file can add). */
#define PNG_MAX_ANCILLARY_CHUNKS 1000
/* Warnings forwarded to md_log per file, so a broken file cannot flood it. */
#define LOG_MAX_WARNINGS 8

/* ---------------------------------------------------------------- bytes */

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

static bool starts(const uint8_t *b, size_t n, size_t off, const char *s, size_t sn)
{
    return n >= off + sn && memcmp(b + off, s, sn) == 0;
}

/* Exact k/255 and k/65535 (division, not multiplication by a reciprocal), so
 * 8-bit round trips compare equal. */
static float unit8(unsigned k) { return (float)k / 255.0f; }
static float unit16(unsigned k) { return (float)k / 65535.0f; }

static unsigned quant(float v, unsigned maxv)
{
    if (!(v > 0.0f)) /* also NaN */
        return 0;
    if (v >= 1.0f)
        return maxv;
    return (unsigned)(v * (float)maxv + 0.5f);
}

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const char *str)
{
    const uint8_t *s = (const uint8_t *)str;
    while (*s) {
        uint8_t c = *s;
        int n;
        uint32_t cp, min;
        if (c < 0x80) { s++; continue; }
        else if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; min = 0x10000; }
        else return false;
        for (int i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        s += n + 1;
    }
    return true;
}

static bool ascii_only(const char *s)
{
    for (; *s; s++)
        if ((uint8_t)*s >= 0x80)
            return false;
    return true;
}

/* Latin-1 → UTF-8 (PNG tEXt/zTXt keys and values are Latin-1). Caller frees. */
static char *latin1_to_utf8(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(2 * n + 1), *p = o;
    if (!o)
        return NULL;
    for (; *s; s++) {
        uint8_t c = (uint8_t)*s;
        if (c < 0x80) {
            *p++ = (char)c;
        } else {
            *p++ = (char)(0xc0 | c >> 6);
            *p++ = (char)(0x80 | (c & 0x3f));
        }
    }
    *p = 0;
    return o;
}

/* Adds key=value, either already UTF-8 (when valid) or Latin-1. */
static md_status meta_add(md_meta *m, const char *key, const char *value, bool utf8)
{
    char *k = latin1_to_utf8(key);
    char *v = utf8 && utf8_valid(value) ? strdup(value) : latin1_to_utf8(value);
    md_status s = k && v ? md_meta_set(m, k, v) : MD_ERR_ALLOC;
    free(k);
    free(v);
    return s;
}

/* ------------------------------------------------------------- sniffing */

typedef enum sniff_kind { SNIFF_PNG, SNIFF_JPEG, SNIFF_IMAGE_OTHER, SNIFF_NOT_IMAGE } sniff_kind;

static bool looks_text(const uint8_t *b, size_t n)
{
    size_t m = MD_MIN(n, (size_t)512);
    for (size_t i = 0; i < m; i++)
        if (b[i] < 0x20 && b[i] != '\t' && b[i] != '\n' && b[i] != '\r')
            return false;
    return true;
}

/* What the first bytes say; *what describes it for messages. */
static sniff_kind sniff(const uint8_t *b, size_t n, const char **what)
{
    static const char png_sig[8] = {(char)0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    *what = "unrecognised binary data";
    if (starts(b, n, 0, png_sig, 8)) { *what = "a PNG image"; return SNIFF_PNG; }
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) { *what = "a JPEG image"; return SNIFF_JPEG; }
    if (starts(b, n, 0, "RIFF", 4)) {
        if (starts(b, n, 8, "WAVE", 4)) { *what = "a RIFF/WAVE audio file"; return SNIFF_NOT_IMAGE; }
        if (starts(b, n, 8, "WEBP", 4)) { *what = "a WebP image"; return SNIFF_IMAGE_OTHER; }
        if (starts(b, n, 8, "AVI ", 4)) { *what = "a RIFF/AVI video file"; return SNIFF_NOT_IMAGE; }
        *what = "a RIFF container";
        return SNIFF_NOT_IMAGE;
    }
    if (starts(b, n, 0, "GIF87a", 6) || starts(b, n, 0, "GIF89a", 6)) { *what = "a GIF image"; return SNIFF_IMAGE_OTHER; }
    if (starts(b, n, 0, "II*\0", 4) || starts(b, n, 0, "MM\0*", 4)) { *what = "a TIFF image"; return SNIFF_IMAGE_OTHER; }
    if (starts(b, n, 0, "qoif", 4)) { *what = "a QOI image"; return SNIFF_IMAGE_OTHER; }
    if (starts(b, n, 0, "8BPS", 4)) { *what = "a Photoshop document"; return SNIFF_IMAGE_OTHER; }
    if (starts(b, n, 4, "ftyp", 4)) {
        if (starts(b, n, 8, "avif", 4)) { *what = "an AVIF image"; return SNIFF_IMAGE_OTHER; }
        if (starts(b, n, 8, "hei", 3) || starts(b, n, 8, "mif1", 4)) { *what = "a HEIF image"; return SNIFF_IMAGE_OTHER; }
        *what = "an MP4/QuickTime file";
        return SNIFF_NOT_IMAGE;
    }
    /* "BM" alone is too weak: also the zero reserved field and a known DIB header size. */
    if (starts(b, n, 0, "BM", 2) && n >= 18 && !b[6] && !b[7] && !b[8] && !b[9] && !b[15] && !b[16] && !b[17] &&
        (b[14] == 12 || b[14] == 40 || b[14] == 52 || b[14] == 56 || b[14] == 64 || b[14] == 108 || b[14] == 124)) { *what = "a BMP image"; return SNIFF_IMAGE_OTHER; }
    if (starts(b, n, 0, "OggS", 4)) { *what = "an Ogg audio/video file"; return SNIFF_NOT_IMAGE; }
    if (starts(b, n, 0, "fLaC", 4)) { *what = "a FLAC audio file"; return SNIFF_NOT_IMAGE; }
    if (starts(b, n, 0, "ID3", 3)) { *what = "an MP3 audio file"; return SNIFF_NOT_IMAGE; }
    if (starts(b, n, 0, "\x1a\x45\xdf\xa3", 4)) { *what = "a Matroska/WebM file"; return SNIFF_NOT_IMAGE; }
    if (starts(b, n, 0, "%PDF", 4)) { *what = "a PDF document"; return SNIFF_NOT_IMAGE; }
    if (starts(b, n, 0, "PK\3\4", 4)) { *what = "a ZIP archive"; return SNIFF_NOT_IMAGE; }
    if (starts(b, n, 0, "\x1f\x8b", 2)) { *what = "a gzip archive"; return SNIFF_NOT_IMAGE; }
    if (n > 0 && looks_text(b, n)) { *what = "a text file"; return SNIFF_NOT_IMAGE; }
    return SNIFF_NOT_IMAGE;
}

static md_status check_pixels(const char *label, const char *fmt, uint64_t w, uint64_t h,
                              const md_media_limits *lim)
{
    if (w == 0 || h == 0) {
        md_log(MD_LOG_ERROR, "%s: %s header gives a %llu x %llu image", label, fmt, (unsigned long long)w,
               (unsigned long long)h);
        return MD_ERR_FORMAT;
    }
    /* w, h < 2^32, so the product cannot overflow 64 bits. */
    if (w > INT32_MAX || h > INT32_MAX || (int64_t)(w * h) > lim->max_pixels) {
        md_log(MD_LOG_ERROR, "%s: %s of %llu x %llu pixels exceeds the limit of %lld pixels "
               "(md_media_limits.max_pixels)", label, fmt, (unsigned long long)w, (unsigned long long)h,
               (long long)lim->max_pixels);
        return MD_ERR_FORMAT;
    }
    return MD_OK;
}

/* Early IHDR check, before libpng sees the data: a bomb whose IDAT is
 * missing must still fail on size, not on truncation. */
static md_status png_precheck(const uint8_t *b, size_t n, const char *label, const md_media_limits *lim)
{
    if (n < 8 + 8 + 13 + 4) {
        md_log(MD_LOG_ERROR, "%s: PNG is truncated (%zu bytes; the header alone needs 33)", label, n);
        return MD_ERR_FORMAT;
    }
    if (memcmp(b + 12, "IHDR", 4) != 0 || be32(b + 8) != 13) {
        md_log(MD_LOG_ERROR, "%s: PNG does not start with a valid IHDR chunk", label);
        return MD_ERR_FORMAT;
    }
    md_status s = check_pixels(label, "PNG", be32(b + 16), be32(b + 20), lim);
    if (s != MD_OK)
        return s;
    /* libpng allocates each chunk's declared length before reading it, so a
     * 12-byte chunk claiming 2 GiB costs 2 GiB. Since the whole file is in
     * memory, a length running past its end can be refused here, which
     * bounds every such allocation by the input size. */
    for (size_t p = 8; p + 12 <= n;) {
        uint32_t clen = be32(b + p);
        if (clen > 0x7fffffffu || clen > n - p - 12) {
            char type[5];
            for (int i = 0; i < 4; i++) /* chunk types are letters; anything else is noise */
                type[i] = (b[p + 4 + i] | 0x20) >= 'a' && (b[p + 4 + i] | 0x20) <= 'z' ? (char)b[p + 4 + i] : '?';
            type[4] = 0;
            md_log(MD_LOG_ERROR, "%s: PNG chunk \"%s\" at byte %zu claims %u bytes but %zu remain (truncated?)",
                   label, type, p, (unsigned)clen, n - p - 12);
            return MD_ERR_FORMAT;
        }
        if (memcmp(b + p + 4, "IEND", 4) == 0)
            break;
        p += 12 + (size_t)clen;
    }
    return MD_OK;
}

/* Early SOF check by walking the JPEG marker segments. Only refuses on
 * size; anything it cannot follow is left to libjpeg, which checks again. */
static md_status jpeg_precheck(const uint8_t *b, size_t n, const char *label, const md_media_limits *lim)
{
    size_t p = 2;
    while (p + 4 <= n) {
        if (b[p] != 0xff)
            return MD_OK;
        while (p < n && b[p] == 0xff)
            p++;
        if (p >= n)
            return MD_OK;
        unsigned m = b[p++];
        if (m == 0x01 || (m >= 0xd0 && m <= 0xd8))
            continue; /* standalone markers */
        if (m == 0xd9 || m == 0xda || p + 2 > n)
            return MD_OK;
        unsigned len = be16(b + p);
        bool sof = m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
        if (sof && len >= 7 && p + 7 <= n)
            return check_pixels(label, "JPEG", be16(b + p + 5), be16(b + p + 3), lim);
        if (len < 2)
            return MD_OK;
        p += len;
    }
    return MD_OK;
}

/* ------------------------------------------------------------ PNG read */

typedef struct png_job {
    const uint8_t *buf;
    size_t len, pos;
    const md_media_limits *lim;
    png_structp png;
    png_infop info;
    uint8_t *raw;       /* height × rowbytes, decoded samples */
    png_bytep *rows;    /* height pointers into raw */
    md_image img;
    md_meta meta;
    int warnings;
    md_status fail;     /* status to return after longjmp (MD_ERR_FORMAT if 0) */
    char msg[256];
    jmp_buf jb;
} png_job;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_job *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg);
    longjmp(j->jb, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    png_job *j = png_get_error_ptr(png);
    if (j->warnings++ < LOG_MAX_WARNINGS)
        md_log(MD_LOG_DEBUG, "libpng: %s", msg);
}

static void png_on_read(png_structp png, png_bytep out, size_t n)
{
    png_job *j = png_get_io_ptr(png);
    if (n > j->len - j->pos)
        png_error(png, "unexpected end of data (truncated file?)");
    memcpy(out, j->buf + j->pos, n);
    j->pos += n;
}

/* Runs every libpng call that may longjmp. On failure j->msg says why. */
static md_status png_decode(png_job *j)
{
    if (setjmp(j->jb))
        return j->fail ? j->fail : MD_ERR_FORMAT;
    png_structp png = j->png;
    png_infop info = j->info;
    png_set_read_fn(png, j, png_on_read);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff); /* the product is checked against max_pixels */
    /* libpng allocates a chunk's declared length (or a zTXt's inflated
     * size) before reading it; this build of libpng sets no bound. */
    png_set_chunk_malloc_max(png, PNG_MAX_CHUNK_BYTES);
    png_set_chunk_cache_max(png, PNG_MAX_ANCILLARY_CHUNKS);
    png_read_info(png, info);

    png_uint_32 w, h;
    int depth, ctype, ilace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &ilace, NULL, NULL);
    if ((int64_t)w * h > j->lim->max_pixels) { /* the precheck read the same IHDR */
        snprintf(j->msg, sizeof j->msg, "%u x %u pixels exceed the limit", (unsigned)w, (unsigned)h);
        return MD_ERR_FORMAT;
    }
    png_set_expand(png); /* palette → RGB, gray < 8 bit → 8 bit, tRNS → alpha */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    int bits = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (ch < 1 || ch > 4 || (bits != 8 && bits != 16) || rowbytes != (size_t)w * (size_t)ch * (size_t)(bits / 8)) {
        snprintf(j->msg, sizeof j->msg, "unexpected layout after expansion (%d channels, %d bits)", ch, bits);
        return MD_ERR_FORMAT;
    }
    size_t total;
    if (__builtin_mul_overflow(rowbytes, (size_t)h, &total)) {
        snprintf(j->msg, sizeof j->msg, "image too large");
        return MD_ERR_FORMAT;
    }
    j->raw = malloc(total);
    j->rows = malloc(sizeof *j->rows * h);
    if (!j->raw || !j->rows) {
        snprintf(j->msg, sizeof j->msg, "out of memory for %u x %u pixels", (unsigned)w, (unsigned)h);
        return MD_ERR_ALLOC;
    }
    for (png_uint_32 y = 0; y < h; y++)
        j->rows[y] = j->raw + (size_t)y * rowbytes;
    png_read_image(png, j->rows);
    png_read_end(png, info); /* text chunks after IDAT; fails on truncation */

    md_status s = md_image_alloc(&j->img, (int)w, (int)h, ch);
    if (s != MD_OK) {
        snprintf(j->msg, sizeof j->msg, "%s", md_last_error());
        return s;
    }
    size_t n = (size_t)w * h * (size_t)ch;
    float *px = j->img.pixels;
    if (bits == 8) {
        for (size_t i = 0; i < n; i++)
            px[i] = unit8(j->raw[i]);
    } else {
        for (size_t i = 0; i < n; i++)
            px[i] = unit16(be16(j->raw + 2 * i));
    }

    png_textp text;
    int ntext = 0;
    png_get_text(png, info, &text, &ntext);
    for (int i = 0; i < ntext; i++) {
        bool itxt = text[i].compression == PNG_ITXT_COMPRESSION_NONE || text[i].compression == PNG_ITXT_COMPRESSION_zTXt;
        if (!text[i].key || !text[i].text)
            continue;
        if ((s = meta_add(&j->meta, text[i].key, text[i].text, itxt)) != MD_OK) {
            snprintf(j->msg, sizeof j->msg, "out of memory for metadata");
            return s;
        }
    }
    return MD_OK;
}

/* Hands a decoder's image and tags to the caller on success; on failure
 * logs "LABEL: FORMAT: why" and frees them. Returns s. */
static md_status decode_finish(md_status s, const char *label, const char *format, const char *why,
                               md_image *img, md_meta *tags, md_image *out, md_meta *meta)
{
    if (s == MD_OK) {
        *out = *img;
        if (meta)
            *meta = *tags;
        else
            md_meta_free(tags);
    } else {
        md_log(MD_LOG_ERROR, "%s: %s: %s", label, format, why);
        md_image_free(img);
        md_meta_free(tags);
    }
    return s;
}

static md_status load_png(const uint8_t *buf, size_t len, const char *label, const md_media_limits *lim,
                          md_image *out, md_meta *meta)
{
    md_status s = png_precheck(buf, len, label, lim);
    if (s != MD_OK)
        return s;
    png_job *j = calloc(1, sizeof *j);
    if (!j) {
        md_log(MD_LOG_ERROR, "%s: out of memory", label);
        return MD_ERR_ALLOC;
    }
    j->buf = buf;
    j->len = len;
    j->lim = lim;
    j->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, j, png_on_error, png_on_warning);
    j->info = j->png ? png_create_info_struct(j->png) : NULL;
    if (!j->info) {
        s = MD_ERR_ALLOC;
        snprintf(j->msg, sizeof j->msg, "out of memory for the PNG decoder");
    } else {
        s = png_decode(j);
    }
    png_destroy_read_struct(j->png ? &j->png : NULL, j->info ? &j->info : NULL, NULL);
    free(j->raw);
    free(j->rows);
    s = decode_finish(s, label, "PNG", j->msg, &j->img, &j->meta, out, meta);
    free(j);
    return s;
}

/* ----------------------------------------------------------- JPEG read */

typedef struct jpeg_job {
    struct jpeg_error_mgr em; /* first: cinfo->err points here */
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress;
    const md_media_limits *lim;
    uint8_t *row;
    md_image img;
    md_meta meta;
    int orientation; /* EXIF 1–8; 1 when absent */
    md_status fail;
    char msg[JMSG_LENGTH_MAX + 64];
    jmp_buf jb;
} jpeg_job;

static void jpeg_on_error(j_common_ptr c)
{
    jpeg_job *j = (jpeg_job *)c->err;
    c->err->format_message(c, j->msg);
    longjmp(j->jb, 1);
}

static void jpeg_on_output(j_common_ptr c)
{
    char buf[JMSG_LENGTH_MAX];
    c->err->format_message(c, buf);
    md_log(MD_LOG_DEBUG, "libjpeg: %s", buf);
}

/* Warnings (level < 0) are counted; running out of data is fatal, since
 * libjpeg would otherwise pad the image with gray and call it a success. */
static void jpeg_on_emit(j_common_ptr c, int level)
{
    if (level >= 0)
        return; /* trace messages */
    if (c->err->msg_code == JWRN_JPEG_EOF)
        jpeg_on_error(c);
    if (c->err->num_warnings++ < LOG_MAX_WARNINGS)
        jpeg_on_output(c);
    if (c->err->num_warnings > JPEG_MAX_WARNINGS) {
        jpeg_job *j = (jpeg_job *)c->err;
        snprintf(j->msg, sizeof j->msg, "more than %d corrupt-data warnings", JPEG_MAX_WARNINGS);
        longjmp(j->jb, 1);
    }
}

static void jpeg_on_progress(j_common_ptr c)
{
    if (!c->is_decompressor)
        return;
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_job *j = (jpeg_job *)c->err;
        snprintf(j->msg, sizeof j->msg, "more than %d scans", JPEG_MAX_SCANS);
        longjmp(j->jb, 1);
    }
}

/* Orientation from an APP1 "Exif\0\0" TIFF block: IFD0 tag 0x0112, SHORT.
 * Every offset is checked against n; 0 when absent or malformed. */
static int exif_orientation(const uint8_t *d, size_t n)
{
    if (n < 6 + 8 || memcmp(d, "Exif\0\0", 6) != 0)
        return 0;
    const uint8_t *t = d + 6;
    size_t tn = n - 6;
    bool le;
    if (t[0] == 'I' && t[1] == 'I')
        le = true;
    else if (t[0] == 'M' && t[1] == 'M')
        le = false;
    else
        return 0;
#define RD16(p) (le ? (unsigned)(p)[0] | (unsigned)(p)[1] << 8 : be16(p))
#define RD32(p) (le ? (uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 | (uint32_t)(p)[2] << 16 | (uint32_t)(p)[3] << 24 : be32(p))
    if (RD16(t + 2) != 42)
        return 0;
    uint32_t ifd = RD32(t + 4);
    if (ifd > tn - 2)
        return 0;
    unsigned count = RD16(t + ifd);
    for (unsigned i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + 12 * (size_t)i;
        if (e + 12 > tn)
            break;
        if (RD16(t + e) == 0x0112) {
            unsigned v = RD16(t + e + 8);
            return RD16(t + e + 2) == 3 && RD32(t + e + 4) >= 1 && v >= 1 && v <= 8 ? (int)v : 0;
        }
    }
    return 0;
#undef RD16
#undef RD32
}

static md_status jpeg_decode(jpeg_job *j, const uint8_t *buf, size_t len)
{
    if (setjmp(j->jb))
        return j->fail ? j->fail : MD_ERR_FORMAT;
    j_decompress_ptr c = &j->cinfo;
    jpeg_create_decompress(c);
    /* Without backing store, libjpeg fails instead of exceeding this. A
     * progressive CMYK image holds 4 × 2 bytes of coefficients per pixel. */
    int64_t np = MD_MAX(j->lim->max_pixels, (int64_t)0);
    int64_t mem = np > (INT64_MAX >> 5) ? INT64_MAX : np * 12 + ((int64_t)64 << 20);
    c->mem->max_memory_to_use = (long)MD_MIN(mem, (int64_t)LONG_MAX);
    c->progress = &j->progress;
    jpeg_mem_src(c, buf, (unsigned long)len);
    jpeg_save_markers(c, JPEG_APP0 + 1, 0xffff);
    jpeg_save_markers(c, JPEG_COM, 0xffff);
    jpeg_read_header(c, TRUE);

    if (c->image_width == 0 || c->image_height == 0 ||
        (int64_t)c->image_width * c->image_height > j->lim->max_pixels) {
        snprintf(j->msg, sizeof j->msg, "%u x %u pixels exceed the limit of %lld", (unsigned)c->image_width,
                 (unsigned)c->image_height, (long long)j->lim->max_pixels);
        return MD_ERR_FORMAT;
    }
    j->orientation = 1;
    for (jpeg_saved_marker_ptr m = c->marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && j->orientation == 1) {
            int o = exif_orientation(m->data, m->data_length);
            if (o)
                j->orientation = o;
        } else if (m->marker == JPEG_COM && m->data_length > 0) {
            char *txt = malloc(m->data_length + 1);
            if (!txt) {
                snprintf(j->msg, sizeof j->msg, "out of memory for a comment");
                return MD_ERR_ALLOC;
            }
            memcpy(txt, m->data, m->data_length);
            txt[m->data_length] = 0; /* an embedded NUL just ends the text */
            md_status s = meta_add(&j->meta, "Comment", txt, true);
            free(txt);
            if (s != MD_OK) {
                snprintf(j->msg, sizeof j->msg, "out of memory for a comment");
                return s;
            }
        }
    }

    if (j->lim->min_side > 0) {
        /* shrink by DCT scaling while the shorter side stays >= min_side */
        unsigned side = MD_MIN(c->image_width, c->image_height), denom = 8;
        while (denom > 1 && side / denom < (unsigned)j->lim->min_side)
            denom /= 2;
        c->scale_num = 1;
        c->scale_denom = denom;
    }
    bool cmyk = c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK;
    c->out_color_space = c->jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(c);
    int comps = c->output_components;
    int ch = comps == 1 ? 1 : 3;
    if (comps != (cmyk ? 4 : ch)) {
        snprintf(j->msg, sizeof j->msg, "unexpected %d output components", comps);
        return MD_ERR_FORMAT;
    }
    int w = (int)c->output_width, h = (int)c->output_height;
    j->row = malloc((size_t)w * (size_t)comps);
    if (!j->row) {
        snprintf(j->msg, sizeof j->msg, "out of memory");
        return MD_ERR_ALLOC;
    }
    md_status s = md_image_alloc(&j->img, w, h, ch);
    if (s != MD_OK) {
        snprintf(j->msg, sizeof j->msg, "%s", md_last_error());
        return s;
    }
    /* Adobe CMYK JPEGs store inverted samples (255 = no ink). */
    bool inverted = c->saw_Adobe_marker;
    while (c->output_scanline < c->output_height) {
        int y = (int)c->output_scanline;
        JSAMPROW rp = j->row;
        if (jpeg_read_scanlines(c, &rp, 1) != 1) {
            snprintf(j->msg, sizeof j->msg, "decoder returned no scanline");
            return MD_ERR_FORMAT;
        }
        float *px = j->img.pixels + (size_t)y * (size_t)w * (size_t)ch;
        if (!cmyk) {
            for (size_t i = 0; i < (size_t)w * (size_t)ch; i++)
                px[i] = unit8(j->row[i]);
            continue;
        }
        for (int x = 0; x < w; x++) {
            const uint8_t *q = j->row + 4 * x;
            unsigned k = inverted ? q[3] : 255u - q[3];
            for (int i = 0; i < 3; i++) {
                unsigned v = inverted ? q[i] : 255u - q[i];
                px[3 * x + i] = (float)(v * k) / (255.0f * 255.0f);
            }
        }
    }
    jpeg_finish_decompress(c);
    return MD_OK;
}

/* Upright copy of src for EXIF orientation o (2–8). For each output pixel
 * (x, y) the source pixel is (sx, sy); orientations 5–8 transpose. */
static md_status apply_orientation(const md_image *src, int o, md_image *dst)
{
    int W = src->width, H = src->height, C = src->channels;
    bool t = o >= 5;
    md_status s = md_image_alloc(dst, t ? H : W, t ? W : H, C);
    if (s != MD_OK)
        return s;
    for (int y = 0; y < dst->height; y++)
        for (int x = 0; x < dst->width; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = W - 1 - x; sy = y; break;         /* mirror horizontally */
            case 3: sx = W - 1 - x; sy = H - 1 - y; break; /* rotate 180 */
            case 4: sx = x; sy = H - 1 - y; break;         /* mirror vertically */
            case 5: sx = y; sy = x; break;                 /* transpose */
            case 6: sx = y; sy = H - 1 - x; break;         /* rotate 90 clockwise */
            case 7: sx = W - 1 - y; sy = H - 1 - x; break; /* transverse */
            case 8: sx = W - 1 - y; sy = x; break;         /* rotate 90 counter-clockwise */
            default: sx = x; sy = y; break;
            }
            memcpy(dst->pixels + ((size_t)y * (size_t)dst->width + (size_t)x) * (size_t)C,
                   src->pixels + ((size_t)sy * (size_t)W + (size_t)sx) * (size_t)C, sizeof(float) * (size_t)C);
        }
    return MD_OK;
}

static md_status load_jpeg(const uint8_t *buf, size_t len, const char *label, const md_media_limits *lim,
                           md_image *out, md_meta *meta)
{
    md_status s = jpeg_precheck(buf, len, label, lim);
    if (s != MD_OK)
        return s;
    if (len > ULONG_MAX) {
        md_log(MD_LOG_ERROR, "%s: JPEG too large", label);
        return MD_ERR_FORMAT;
    }
    jpeg_job *j = calloc(1, sizeof *j);
    if (!j) {
        md_log(MD_LOG_ERROR, "%s: out of memory", label);
        return MD_ERR_ALLOC;
    }
    j->lim = lim;
    j->cinfo.err = jpeg_std_error(&j->em);
    j->em.error_exit = jpeg_on_error; /* the default calls exit() */
    j->em.emit_message = jpeg_on_emit;
    j->em.output_message = jpeg_on_output;
    j->progress.progress_monitor = jpeg_on_progress;
    s = jpeg_decode(j, buf, len);
    jpeg_destroy_decompress(&j->cinfo); /* safe after a failed create too: mem is NULL */
    free(j->row);
    if (s == MD_OK && j->orientation > 1) {
        md_image up = {0};
        s = apply_orientation(&j->img, j->orientation, &up);
        md_image_free(&j->img);
        j->img = up;
        if (s != MD_OK)
            snprintf(j->msg, sizeof j->msg, "out of memory rotating the image");
    }
    s = decode_finish(s, label, "JPEG", j->msg, &j->img, &j->meta, out, meta);
    free(j);
    return s;
}

/* ---------------------------------------------------------------- load */

/* Formats libpng/libjpeg do not read (GIF, WebP, BMP, TIFF, ...) go
 * through FFmpeg's decoders as a one-frame video: the first frame, RGB
 * (alpha is not kept on this path), under the same limits. */
static md_status load_via_ffmpeg(const uint8_t *b, size_t len, const char *label, const md_media_limits *lim,
                                 const char *what, md_image *out)
{
    md_video_load_opts o = md_video_load_opts_default();
    o.still = true;
    o.no_audio = true;
    o.duration = 1e-3;   /* the first frame only (animated GIFs included) */
    md_video v;
    md_clear_error();
    md_status st = md_video_load_memory(b, len, label, lim, &o, &v, NULL);
    if (st != MD_OK || v.frames < 1) {
        char why[512];
        snprintf(why, sizeof why, "%s", md_last_error());
        md_log(MD_LOG_ERROR, "%s: looks like %s, but FFmpeg cannot decode it (%s)", label, what,
               st != MD_OK ? why : "no frame");
        md_video_free(&v);
        return st != MD_OK ? st : MD_ERR_FORMAT;
    }
    st = md_image_alloc(out, v.width, v.height, v.channels);
    if (st == MD_OK)
        memcpy(out->pixels, v.pixels, sizeof(float) * (size_t)v.width * (size_t)v.height * (size_t)v.channels);
    md_video_free(&v);
    return st;
}

md_status md_image_load_memory(const void *buf, size_t len, const char *label, const md_media_limits *lim,
                               md_image *out, md_meta *meta)
{
    MD_ASSERT(out && (buf || len == 0));
    md_media_limits dflt = md_media_limits_default();
    if (!lim)
        lim = &dflt;
    memset(out, 0, sizeof *out);
    if (meta)
        memset(meta, 0, sizeof *meta);
    if (!label)
        label = "image";
    if ((int64_t)len > lim->max_bytes || len > (size_t)INT64_MAX) {
        md_log(MD_LOG_ERROR, "%s: %zu bytes exceed the limit of %lld bytes (md_media_limits.max_bytes)", label, len,
               (long long)lim->max_bytes);
        return MD_ERR_FORMAT;
    }
    if (len == 0) {
        md_log(MD_LOG_ERROR, "%s: not an image (the file is empty)", label);
        return MD_ERR_FORMAT;
    }
    const uint8_t *b = buf;
    const char *what;
    switch (sniff(b, len, &what)) {
    case SNIFF_PNG: return load_png(b, len, label, lim, out, meta);
    case SNIFF_JPEG: return load_jpeg(b, len, label, lim, out, meta);
    case SNIFF_IMAGE_OTHER:
        return load_via_ffmpeg(b, len, label, lim, what, out);
    case SNIFF_NOT_IMAGE:
        break;
    }
    if (strcmp(what, "unrecognised binary data") == 0) {
        char hex[3 * 8 + 1] = "";
        for (size_t i = 0; i < MD_MIN(len, (size_t)8); i++)
            snprintf(hex + 3 * i, sizeof hex - 3 * i, "%02x ", b[i]);
        hex[strlen(hex) - 1] = 0;
        md_log(MD_LOG_ERROR, "%s: not an image (unrecognised binary data starting %s)", label, hex);
    } else {
        md_log(MD_LOG_ERROR, "%s: not an image (looks like %s)", label, what);
    }
    return MD_ERR_FORMAT;
}

md_status md_image_load(const char *path, const md_media_limits *lim, md_image *out, md_meta *meta)
{
    MD_ASSERT(path && out);
    md_media_limits dflt = md_media_limits_default();
    if (!lim)
        lim = &dflt;
    memset(out, 0, sizeof *out);
    if (meta)
        memset(meta, 0, sizeof *meta);
    if (!*path) {
        md_log(MD_LOG_ERROR, "image path is empty");
        return MD_ERR_INVALID;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        md_log(MD_LOG_ERROR, "%s: cannot open: %s", path, strerror(errno));
        return MD_ERR_IO;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        md_log(MD_LOG_ERROR, "%s: not a regular file", path);
        fclose(f);
        return MD_ERR_IO;
    }
    if ((int64_t)st.st_size > lim->max_bytes) {
        md_log(MD_LOG_ERROR, "%s: %lld bytes exceed the limit of %lld bytes (md_media_limits.max_bytes)", path,
               (long long)st.st_size, (long long)lim->max_bytes);
        fclose(f);
        return MD_ERR_FORMAT;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        md_log(MD_LOG_ERROR, "%s: out of memory for %zu bytes", path, n);
        fclose(f);
        return MD_ERR_ALLOC;
    }
    size_t got = fread(buf, 1, n, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        md_log(MD_LOG_ERROR, "%s: read failed", path);
        free(buf);
        return MD_ERR_IO;
    }
    /* A file that shrank while being read is judged on what was read. */
    md_status s = md_image_load_memory(buf, got, path, lim, out, meta);
    free(buf);
    return s;
}

/* ---------------------------------------------------------------- save */

/* PATH.tmp; caller frees. */
static char *tmp_path(const char *path)
{
    size_t n = strlen(path);
    char *t = malloc(n + 5);
    if (t) {
        memcpy(t, path, n);
        memcpy(t + n, ".tmp", 5);
    }
    return t;
}

/* Flushes, syncs and closes f, then renames tmp over path; removes tmp on
 * any failure. ok says whether the encoder succeeded. */
static md_status finish_atomic(FILE *f, const char *tmp, const char *path, bool ok)
{
    if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0)) {
        md_log(MD_LOG_ERROR, "%s: write failed: %s", tmp, strerror(errno));
        ok = false;
    }
    if (fclose(f) != 0 && ok) {
        md_log(MD_LOG_ERROR, "%s: write failed: %s", tmp, strerror(errno));
        ok = false;
    }
    if (ok && rename(tmp, path) != 0) {
        md_log(MD_LOG_ERROR, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        ok = false;
    }
    if (!ok)
        remove(tmp);
    return ok ? MD_OK : MD_ERR_IO;
}

static md_status check_image(const char *path, const md_image *im)
{
    if (!im->pixels || im->width < 1 || im->height < 1 || im->channels < 1 || im->channels > 4) {
        md_log(MD_LOG_ERROR, "%s: cannot save an image of %d x %d x %d", path, im->width, im->height, im->channels);
        return MD_ERR_INVALID;
    }
    return MD_OK;
}

typedef struct png_wjob {
    png_structp png;
    png_infop info;
    FILE *f;
    const md_image *im;
    int depth;
    png_textp text;  /* ntext entries pointing into the caller's md_meta */
    int ntext;
    uint8_t *row;    /* width × channels × depth/8 */
    char msg[256];
    jmp_buf jb;
} png_wjob;

static void png_on_write_error(png_structp png, png_const_charp msg)
{
    png_wjob *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg);
    longjmp(j->jb, 1);
}

static void png_on_write_warning(png_structp png, png_const_charp msg)
{
    MD_UNUSED(png);
    md_log(MD_LOG_DEBUG, "libpng: %s", msg);
}

static bool png_encode(png_wjob *j)
{
    if (setjmp(j->jb))
        return false;
    static const int ctypes[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                  PNG_COLOR_TYPE_RGB_ALPHA};
    const md_image *im = j->im;
    png_init_io(j->png, j->f);
    png_set_IHDR(j->png, j->info, (png_uint_32)im->width, (png_uint_32)im->height, j->depth, ctypes[im->channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (j->ntext)
        png_set_text(j->png, j->info, j->text, j->ntext);
    png_write_info(j->png, j->info);
    size_t n = (size_t)im->width * (size_t)im->channels;
    for (int y = 0; y < im->height; y++) {
        const float *p = im->pixels + (size_t)y * n;
        if (j->depth == 8) {
            for (size_t i = 0; i < n; i++)
                j->row[i] = (uint8_t)quant(p[i], 255);
        } else {
            for (size_t i = 0; i < n; i++) {
                unsigned v = quant(p[i], 65535);
                j->row[2 * i] = (uint8_t)(v >> 8);
                j->row[2 * i + 1] = (uint8_t)v;
            }
        }
        png_write_row(j->png, j->row);
    }
    png_write_end(j->png, j->info);
    return true;
}

/* PNG keywords: 1–79 printable Latin-1; we take the ASCII subset and refuse
 * the spaces libpng would silently trim or collapse. */
static bool png_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n < 1 || n > 79 || k[0] == ' ' || k[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if (k[i] < 0x20 || k[i] > 0x7e || (k[i] == ' ' && k[i + 1] == ' '))
            return false;
    return true;
}

md_status md_image_save_png(const char *path, const md_image *im, const md_meta *meta, int bit_depth)
{
    MD_ASSERT(path && im);
    md_status s = check_image(path, im);
    if (s != MD_OK)
        return s;
    if (bit_depth != 8 && bit_depth != 16) {
        md_log(MD_LOG_ERROR, "%s: PNG bit depth %d; use 8 or 16", path, bit_depth);
        return MD_ERR_INVALID;
    }
    int ntext = meta ? meta->count : 0;
    for (int i = 0; i < ntext; i++) {
        if (!png_key_ok(meta->keys[i])) {
            md_log(MD_LOG_ERROR, "%s: metadata key \"%s\" is not a PNG keyword (1-79 printable ASCII characters, "
                   "no leading, trailing or double spaces)", path, meta->keys[i]);
            return MD_ERR_INVALID;
        }
        if (!utf8_valid(meta->values[i])) {
            md_log(MD_LOG_ERROR, "%s: metadata value for \"%s\" is not valid UTF-8", path, meta->keys[i]);
            return MD_ERR_INVALID;
        }
    }
    png_wjob *j = calloc(1, sizeof *j);
    char *tmp = tmp_path(path);
    if (j) {
        j->im = im;
        j->depth = bit_depth;
        j->ntext = ntext;
        j->text = calloc((size_t)ntext + 1, sizeof *j->text);
        j->row = malloc((size_t)im->width * (size_t)im->channels * (size_t)(bit_depth / 8));
    }
    if (!j || !tmp || !j->text || !j->row) {
        md_log(MD_LOG_ERROR, "%s: out of memory", path);
        s = MD_ERR_ALLOC;
        goto done;
    }
    for (int i = 0; i < ntext; i++) {
        png_text *t = &j->text[i];
        bool plain = ascii_only(meta->values[i]);
        size_t vlen = strlen(meta->values[i]);
        /* libpng copies these strings in png_set_text; it never writes them. */
        t->key = (png_charp)(uintptr_t)meta->keys[i];
        t->text = (png_charp)(uintptr_t)meta->values[i];
        t->compression = plain ? (vlen > 1024 ? PNG_TEXT_COMPRESSION_zTXt : PNG_TEXT_COMPRESSION_NONE)
                               : (vlen > 1024 ? PNG_ITXT_COMPRESSION_zTXt : PNG_ITXT_COMPRESSION_NONE);
    }
    j->f = fopen(tmp, "wb");
    if (!j->f) {
        md_log(MD_LOG_ERROR, "%s: cannot create: %s", tmp, strerror(errno));
        s = MD_ERR_IO;
        goto done;
    }
    j->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, j, png_on_write_error, png_on_write_warning);
    j->info = j->png ? png_create_info_struct(j->png) : NULL;
    bool ok = j->info && png_encode(j);
    if (!ok)
        md_log(MD_LOG_ERROR, "%s: PNG encoder: %s", path, j->info ? j->msg : "out of memory");
    png_destroy_write_struct(j->png ? &j->png : NULL, j->info ? &j->info : NULL);
    s = finish_atomic(j->f, tmp, path, ok);
done:
    if (j) {
        free(j->text);
        free(j->row);
    }
    free(j);
    free(tmp);
    return s;
}

typedef struct jpeg_wjob {
    struct jpeg_error_mgr em; /* first: cinfo->err points here */
    struct jpeg_compress_struct cinfo;
    FILE *f;
    const md_image *im;
    int quality;
    uint8_t *row;
    char msg[JMSG_LENGTH_MAX];
    jmp_buf jb;
} jpeg_wjob;

static void jpeg_on_write_error(j_common_ptr c)
{
    jpeg_wjob *j = (jpeg_wjob *)c->err;
    c->err->format_message(c, j->msg);
    longjmp(j->jb, 1);
}

static bool jpeg_encode(jpeg_wjob *j)
{
    if (setjmp(j->jb))
        return false;
    j_compress_ptr c = &j->cinfo;
    const md_image *im = j->im;
    bool gray = im->channels <= 2;
    int comps = gray ? 1 : 3;
    jpeg_create_compress(c);
    jpeg_stdio_dest(c, j->f);
    c->image_width = (JDIMENSION)im->width;
    c->image_height = (JDIMENSION)im->height;
    c->input_components = comps;
    c->in_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(c);
    jpeg_set_quality(c, j->quality, TRUE);
    if (!gray && j->quality >= 90)
        for (int i = 0; i < c->num_components; i++)
            c->comp_info[i].h_samp_factor = c->comp_info[i].v_samp_factor = 1;
    jpeg_start_compress(c, TRUE);
    while (c->next_scanline < c->image_height) {
        const float *p = im->pixels + (size_t)c->next_scanline * (size_t)im->width * (size_t)im->channels;
        for (int x = 0; x < im->width; x++)
            for (int i = 0; i < comps; i++)
                j->row[x * comps + i] = (uint8_t)quant(p[(size_t)x * (size_t)im->channels + (size_t)i], 255);
        JSAMPROW rp = j->row;
        jpeg_write_scanlines(c, &rp, 1);
    }
    jpeg_finish_compress(c);
    return true;
}

md_status md_image_save_jpeg(const char *path, const md_image *im, int quality)
{
    MD_ASSERT(path && im);
    md_status s = check_image(path, im);
    if (s != MD_OK)
        return s;
    if (quality < 1 || quality > 100) {
        md_log(MD_LOG_ERROR, "%s: JPEG quality %d; use 1 to 100", path, quality);
        return MD_ERR_INVALID;
    }
    if (im->width > JPEG_MAX_DIMENSION || im->height > JPEG_MAX_DIMENSION) {
        md_log(MD_LOG_ERROR, "%s: %d x %d is larger than JPEG allows (%d per side)", path, im->width, im->height,
               (int)JPEG_MAX_DIMENSION);
        return MD_ERR_INVALID;
    }
    jpeg_wjob *j = calloc(1, sizeof *j);
    char *tmp = tmp_path(path);
    if (j)
        j->row = malloc((size_t)im->width * 3);
    if (!j || !tmp || !j->row) {
        md_log(MD_LOG_ERROR, "%s: out of memory", path);
        s = MD_ERR_ALLOC;
        goto done;
    }
    j->im = im;
    j->quality = quality;
    j->f = fopen(tmp, "wb");
    if (!j->f) {
        md_log(MD_LOG_ERROR, "%s: cannot create: %s", tmp, strerror(errno));
        s = MD_ERR_IO;
        goto done;
    }
    j->cinfo.err = jpeg_std_error(&j->em);
    j->em.error_exit = jpeg_on_write_error; /* the default calls exit() */
    j->em.output_message = jpeg_on_output;
    bool ok = jpeg_encode(j);
    if (!ok)
        md_log(MD_LOG_ERROR, "%s: JPEG encoder: %s", path, j->msg);
    jpeg_destroy_compress(&j->cinfo);
    s = finish_atomic(j->f, tmp, path, ok);
done:
    if (j)
        free(j->row);
    free(j);
    free(tmp);
    return s;
}

/* --------------------------------------------------------------- resize */

/* One axis of the separable filter: output i reads taps source indices
 * idx[i*taps .. +taps) with weights w[...] summing to 1. */
typedef struct axis_filter {
    int taps;
    int *idx;
    float *w;
} axis_filter;

static md_status axis_init(axis_filter *a, int in, int out)
{
    double scale = (double)in / out;
    double radius = scale > 1.0 ? scale : 1.0; /* tent over the footprint, or bilinear */
    a->taps = (int)ceil(radius) * 2 + 1;
    size_t n = (size_t)out * (size_t)a->taps;
    a->idx = malloc(n * sizeof *a->idx);
    a->w = malloc(n * sizeof *a->w);
    if (!a->idx || !a->w) {
        free(a->idx);
        free(a->w);
        return MD_ERR_ALLOC;
    }
    for (int i = 0; i < out; i++) {
        double center = (i + 0.5) * scale - 0.5; /* pixel centres line up */
        int lo = (int)floor(center - radius) + 1;
        double sum = 0.0;
        int *ix = a->idx + (size_t)i * (size_t)a->taps;
        float *w = a->w + (size_t)i * (size_t)a->taps;
        for (int t = 0; t < a->taps; t++) {
            int x = lo + t;
            double wt = 1.0 - fabs(x - center) / radius;
            if (wt < 0.0)
                wt = 0.0;
            ix[t] = x < 0 ? 0 : x >= in ? in - 1 : x; /* clamp to edge */
            w[t] = (float)wt;
            sum += wt;
        }
        /* sum > 0: the nearest source centre is within 0.5 < radius. */
        for (int t = 0; t < a->taps; t++)
            w[t] = (float)(w[t] / sum);
    }
    return MD_OK;
}

static void axis_free(axis_filter *a)
{
    free(a->idx);
    free(a->w);
}

md_status md_image_resize(const md_image *src, int w, int h, md_image *dst)
{
    MD_ASSERT(src && dst && src->pixels && src->channels >= 1 && src->channels <= 4);
    memset(dst, 0, sizeof *dst);
    if (w < 1 || h < 1) {
        md_log(MD_LOG_ERROR, "cannot resize to %d x %d", w, h);
        return MD_ERR_INVALID;
    }
    int C = src->channels, sw = src->width, sh = src->height;
    bool alpha = C == 2 || C == 4;
    axis_filter fx = {0}, fy = {0};
    md_image mid = {0};
    md_status s = axis_init(&fx, sw, w);
    if (s == MD_OK)
        s = axis_init(&fy, sh, h);
    if (s == MD_OK)
        s = md_image_alloc(&mid, w, sh, C);
    if (s == MD_OK)
        s = md_image_alloc(dst, w, h, C);
    if (s != MD_OK) {
        md_log(MD_LOG_ERROR, "out of memory resizing %d x %d to %d x %d", sw, sh, w, h);
        goto done;
    }
    /* Horizontal pass, premultiplying colour by alpha on the way in. */
    for (int y = 0; y < sh; y++) {
        const float *row = src->pixels + (size_t)y * (size_t)sw * (size_t)C;
        float *o = mid.pixels + (size_t)y * (size_t)w * (size_t)C;
        for (int x = 0; x < w; x++) {
            float acc[4] = {0, 0, 0, 0};
            const int *ix = fx.idx + (size_t)x * (size_t)fx.taps;
            const float *wt = fx.w + (size_t)x * (size_t)fx.taps;
            for (int t = 0; t < fx.taps; t++) {
                const float *p = row + (size_t)ix[t] * (size_t)C;
                float a = alpha ? p[C - 1] : 1.0f;
                for (int c = 0; c < C; c++)
                    acc[c] += wt[t] * (alpha && c < C - 1 ? p[c] * a : p[c]);
            }
            for (int c = 0; c < C; c++)
                o[(size_t)x * (size_t)C + (size_t)c] = acc[c];
        }
    }
    /* Vertical pass, then back from premultiplied. */
    size_t rn = (size_t)w * (size_t)C;
    for (int y = 0; y < h; y++) {
        float *o = dst->pixels + (size_t)y * rn;
        const int *iy = fy.idx + (size_t)y * (size_t)fy.taps;
        const float *wt = fy.w + (size_t)y * (size_t)fy.taps;
        for (size_t i = 0; i < rn; i++)
            o[i] = 0.0f;
        for (int t = 0; t < fy.taps; t++) {
            if (wt[t] == 0.0f)
                continue;
            const float *r = mid.pixels + (size_t)iy[t] * rn;
            for (size_t i = 0; i < rn; i++)
                o[i] += wt[t] * r[i];
        }
        for (int x = 0; x < w; x++) {
            float *p = o + (size_t)x * (size_t)C;
            if (alpha) {
                float a = p[C - 1];
                for (int c = 0; c < C - 1; c++)
                    p[c] = a > 0.0f ? p[c] / a : 0.0f;
            }
            for (int c = 0; c < C; c++) /* rounding can step just outside [0, 1] */
                p[c] = p[c] < 0.0f ? 0.0f : p[c] > 1.0f ? 1.0f : p[c];
        }
    }
done:
    axis_free(&fx);
    axis_free(&fy);
    md_image_free(&mid);
    if (s != MD_OK)
        md_image_free(dst);
    return s;
}

md_status md_image_convert(const md_image *src, int channels, md_image *dst)
{
    MD_ASSERT(src && dst && src->pixels && src->channels >= 1 && src->channels <= 4);
    memset(dst, 0, sizeof *dst);
    if (channels < 1 || channels > 4) {
        md_log(MD_LOG_ERROR, "cannot convert to %d channels; use 1 to 4", channels);
        return MD_ERR_INVALID;
    }
    md_status s = md_image_alloc(dst, src->width, src->height, channels);
    if (s != MD_OK)
        return s;
    int sc = src->channels;
    bool src_rgb = sc >= 3, src_alpha = sc == 2 || sc == 4;
    bool dst_rgb = channels >= 3, dst_alpha = channels == 2 || channels == 4;
    size_t n = (size_t)src->width * (size_t)src->height;
    for (size_t i = 0; i < n; i++) {
        const float *p = src->pixels + i * (size_t)sc;
        float *o = dst->pixels + i * (size_t)channels;
        if (dst_rgb) {
            for (int c = 0; c < 3; c++)
                o[c] = src_rgb ? p[c] : p[0];
        } else {
            o[0] = src_rgb ? 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2] : p[0]; /* Rec. 601 */
        }
        if (dst_alpha)
            o[channels - 1] = src_alpha ? p[sc - 1] : 1.0f;
    }
    return MD_OK;
}
