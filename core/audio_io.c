/* audio_io.c — audio files through libsndfile, resampling through
 * libsamplerate (see audio_io.h). */
#include "audio_io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <samplerate.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The first read chunk is at most this many bytes of f32; later growth
 * doubles, so memory follows the frames actually decoded, never a count
 * read from a header. */
#define AUDIO_FIRST_CHUNK_BYTES ((size_t)4 << 20)
/* Frames converted per sf_write call when saving. */
#define AUDIO_WRITE_FRAMES 4096
/* Bytes kept from the start of an input to say what a non-audio file is. */
#define AUDIO_HEAD_BYTES 16

/* Tag keys and the libsndfile string each maps to; the order is the order
 * tags are added to md_meta on load. */
static const struct {
    const char *key;
    int sf_str;
} k_tags[] = {
    {"title", SF_STR_TITLE},     {"artist", SF_STR_ARTIST},       {"album", SF_STR_ALBUM},
    {"comment", SF_STR_COMMENT}, {"software", SF_STR_SOFTWARE},   {"date", SF_STR_DATE},
    {"copyright", SF_STR_COPYRIGHT}, {"license", SF_STR_LICENSE}, {"tracknumber", SF_STR_TRACKNUMBER},
    {"genre", SF_STR_GENRE},
};

/* ---- what a file that libsndfile refused looks like ---------------------- */

static bool head_is(const unsigned char *h, size_t n, const char *magic, size_t m)
{
    return n >= m && memcmp(h, magic, m) == 0;
}

/* Describes a non-audio input by its first bytes into buf; returns false
 * when the bytes look like an audio container (or nothing known), in which
 * case libsndfile's own message is the better one. */
static bool sniff_non_audio(const unsigned char *h, size_t n, char *buf, size_t cap)
{
    static const struct {
        const char *magic;
        size_t len;
        const char *what;
    } k_magic[] = {
        {"\x89PNG\r\n\x1a\n", 8, "a PNG image"}, {"\xff\xd8\xff", 3, "a JPEG image"},
        {"GIF87a", 6, "a GIF image"},            {"GIF89a", 6, "a GIF image"},
        {"%PDF", 4, "a PDF document"},           {"PK\x03\x04", 4, "a ZIP archive"},
        {"\x1f\x8b", 2, "gzip data"},            {"\x7f" "ELF", 4, "an ELF executable"},
        {"\x1a\x45\xdf\xa3", 4, "a Matroska/WebM container (not read here)"},
    };
    for (size_t i = 0; i < sizeof k_magic / sizeof k_magic[0]; i++)
        if (head_is(h, n, k_magic[i].magic, k_magic[i].len)) {
            snprintf(buf, cap, "%s", k_magic[i].what);
            return true;
        }
    if (head_is(h, n, "RIFF", 4) && n >= 12 && memcmp(h + 8, "WAVE", 4) != 0) {
        char form[5];
        for (int i = 0; i < 4; i++)
            form[i] = (h[8 + i] >= 0x20 && h[8 + i] < 0x7f) ? (char)h[8 + i] : '?';
        form[4] = 0;
        snprintf(buf, cap, "a RIFF file of form '%s', not WAVE", form);
        return true;
    }
    if (n >= 8 && memcmp(h + 4, "ftyp", 4) == 0) {
        snprintf(buf, cap, "an MP4/QuickTime container (not read here)");
        return true;
    }
    /* Text: every byte printable ASCII, whitespace or part of UTF-8. A few
     * audio magics are ASCII too, but only files libsndfile refused get here. */
    bool text = n >= 4;
    for (size_t i = 0; i < n && text; i++)
        text = h[i] >= 0x80 || (h[i] >= 0x20 && h[i] < 0x7f) || h[i] == '\n' || h[i] == '\r' || h[i] == '\t';
    if (text) {
        snprintf(buf, cap, "text");
        return true;
    }
    return false;
}

/* First bytes as hex, for messages about unknown data. */
static void hex_head(const unsigned char *h, size_t n, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i < MD_MIN(n, (size_t)8) && o + 4 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%02x", i ? " " : "", h[i]);
}

static md_status report_open_failure(const char *label, const unsigned char *head, size_t n)
{
    char what[96];
    if (sniff_non_audio(head, n, what, sizeof what)) {
        md_log(MD_LOG_ERROR, "%s: not an audio file: it looks like %s", label, what);
        return MD_ERR_FORMAT;
    }
    char hex[40];
    hex_head(head, n, hex, sizeof hex);
    md_log(MD_LOG_ERROR, "%s: libsndfile cannot read it: %s (first bytes %s)", label, sf_strerror(NULL), hex);
    return MD_ERR_FORMAT;
}

/* ---- metadata ------------------------------------------------------------- */

static bool utf8_valid(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s, extra;
        if (c < 0x80) {
            s++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
        } else {
            return false;
        }
        unsigned cp = c & (0x3fu >> extra);
        for (unsigned k = 1; k <= extra; k++) {
            if ((s[k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[k] & 0x3fu);
        }
        /* overlong 3/4-byte forms, surrogates, beyond U+10FFFF */
        if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        s += extra + 1;
    }
    return true;
}

/* Latin-1 to UTF-8; the result is malloc'ed (at most twice the length). */
static char *latin1_to_utf8(const unsigned char *s)
{
    size_t n = strlen((const char *)s);
    char *o = malloc(2 * n + 1), *p = o;
    if (!o)
        return NULL;
    for (; *s; s++) {
        if (*s < 0x80) {
            *p++ = (char)*s;
        } else {
            *p++ = (char)(0xc0 | (*s >> 6));
            *p++ = (char)(0x80 | (*s & 0x3f));
        }
    }
    *p = 0;
    return o;
}

static md_status read_tags(SNDFILE *sf, md_meta *meta)
{
    for (size_t i = 0; i < sizeof k_tags / sizeof k_tags[0]; i++) {
        const char *v = sf_get_string(sf, k_tags[i].sf_str);
        if (!v || !*v)
            continue;
        md_status st;
        if (utf8_valid((const unsigned char *)v)) {
            st = md_meta_set(meta, k_tags[i].key, v);
        } else {
            char *u = latin1_to_utf8((const unsigned char *)v);
            st = u ? md_meta_set(meta, k_tags[i].key, u) : MD_ERR_ALLOC;
            free(u);
        }
        if (st != MD_OK) {
            md_log(MD_LOG_ERROR, "out of memory for audio tags");
            return st;
        }
    }
    return MD_OK;
}

/* ---- WAV LIST pre-check ---------------------------------------------------- */

/* libsndfile 1.2.x spins (minutes of CPU, found by tests/fuzz_audio.c; see
 * libsndfile issue #1118) on a WAV whose LIST sub-chunk claims more bytes
 * than its LIST chunk holds. Such files are refused here, before libsndfile
 * sees them. Reads go through a byte source so files and buffers share it. */
typedef struct byte_src {
    const unsigned char *mem; /* or NULL: read fd */
    int fd;
    int64_t len;
} byte_src;

static bool src_read(const byte_src *s, int64_t off, void *dst, size_t n)
{
    if (off < 0 || off > s->len || (int64_t)n > s->len - off)
        return false;
    if (s->mem) {
        memcpy(dst, s->mem + off, n);
        return true;
    }
    return pread(s->fd, dst, n, (off_t)off) == (ssize_t)n;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* At most this many top-level chunks are walked; real WAVs have a handful. */
#define WAV_MAX_CHUNKS 4096

static md_status wav_list_check(const byte_src *s, const char *label)
{
    unsigned char h[12];
    if (!src_read(s, 0, h, 12) || memcmp(h, "RIFF", 4) != 0 || memcmp(h + 8, "WAVE", 4) != 0)
        return MD_OK;
    int64_t off = 12;
    for (int k = 0; k < WAV_MAX_CHUNKS && src_read(s, off, h, 8); k++) {
        const int64_t size = le32(h + 4), body = off + 8;
        if (memcmp(h, "LIST", 4) == 0) {
            /* Sub-chunks: id, size, bytes; each must end inside the LIST. */
            const int64_t end = MD_MIN(body + size, s->len);
            int64_t p = body + 4;
            for (int j = 0; j < WAV_MAX_CHUNKS && p + 8 <= end; j++) {
                unsigned char sh[8];
                if (!src_read(s, p, sh, 8))
                    break;
                const int64_t ss = le32(sh + 4);
                if (ss > end - (p + 8)) {
                    md_log(MD_LOG_ERROR,
                           "%s: malformed WAV: a LIST sub-chunk at byte %lld claims %lld bytes but its LIST chunk "
                           "has %lld left",
                           label, (long long)p, (long long)ss, (long long)(end - (p + 8)));
                    return MD_ERR_FORMAT;
                }
                p += 8 + ss + (ss & 1);
            }
        }
        off = body + size + (size & 1);
    }
    return MD_OK;
}

/* ---- loading -------------------------------------------------------------- */

/* Reads every frame of an opened file, validating as it goes.
 * known_bytes: the input's size, for messages only. */
static md_status read_all(SNDFILE *sf, const SF_INFO *info, const char *label, const md_media_limits *lim,
                          md_audio *out, md_meta *meta)
{
    const int ch = info->channels, rate = info->samplerate;
    if (ch < 1 || ch > lim->max_channels) {
        md_log(MD_LOG_ERROR, "%s: %d channels; the limit is 1 to %d", label, ch, lim->max_channels);
        return MD_ERR_INVALID;
    }
    if (rate < MD_AUDIO_MIN_RATE || rate > MD_AUDIO_MAX_RATE) {
        md_log(MD_LOG_ERROR, "%s: sample rate %d Hz is outside %d..%d", label, rate, MD_AUDIO_MIN_RATE,
               MD_AUDIO_MAX_RATE);
        return MD_ERR_INVALID;
    }
    if (!(lim->max_seconds > 0)) {
        md_log(MD_LOG_ERROR, "%s: the audio duration limit (%g s) must be positive", label, lim->max_seconds);
        return MD_ERR_INVALID;
    }
    /* max_frames * ch * 4 must fit in size_t and in libsndfile's counts. */
    const double cap_d = (double)(INT64_MAX / 8) / ((double)ch * sizeof(float));
    const int64_t max_frames = (int64_t)fmin(floor(lim->max_seconds * rate), cap_d);

    /* Some decoders report 0 or SF_COUNT_MAX for "unknown"; only a real
     * count is checked here, and the read loop enforces the limit anyway. */
    const bool known = info->frames > 0 && info->frames != SF_COUNT_MAX;
    if (known && info->frames > max_frames) {
        md_log(MD_LOG_ERROR, "%s: %.1f s of audio (%lld frames at %d Hz) is longer than the limit of %g s", label,
               (double)info->frames / rate, (long long)info->frames, rate, lim->max_seconds);
        return MD_ERR_INVALID;
    }

    int64_t cap = (int64_t)(AUDIO_FIRST_CHUNK_BYTES / ((size_t)ch * sizeof(float)));
    if (known)
        cap = MD_MIN(cap, info->frames);
    /* One frame past the limit, so a stream that goes on is detected. */
    cap = MD_MAX(MD_MIN(cap, max_frames + 1), 1);
    float *buf = malloc((size_t)cap * (size_t)ch * sizeof(float));
    if (!buf) {
        md_log(MD_LOG_ERROR, "%s: out of memory for audio", label);
        return MD_ERR_ALLOC;
    }
    int64_t total = 0;
    for (;;) {
        if (total == cap) {
            if (cap > max_frames) {
                free(buf);
                md_log(MD_LOG_ERROR, "%s: audio is longer than the limit of %g s at %d Hz", label,
                       lim->max_seconds, rate);
                return MD_ERR_INVALID;
            }
            int64_t ncap = MD_MIN(2 * cap, max_frames + 1);
            float *nb = realloc(buf, (size_t)ncap * (size_t)ch * sizeof(float));
            if (!nb) {
                free(buf);
                md_log(MD_LOG_ERROR, "%s: out of memory for %lld audio frames", label, (long long)ncap);
                return MD_ERR_ALLOC;
            }
            buf = nb;
            cap = ncap;
        }
        sf_count_t got = sf_readf_float(sf, buf + (size_t)total * (size_t)ch, cap - total);
        if (got <= 0)
            break;
        total += got;
    }
    if (total > max_frames) {
        free(buf);
        md_log(MD_LOG_ERROR, "%s: audio is longer than the limit of %g s at %d Hz", label, lim->max_seconds, rate);
        return MD_ERR_INVALID;
    }
    int err = sf_error(sf);
    if (err != SF_ERR_NO_ERROR) {
        if (total == 0) {
            free(buf);
            md_log(MD_LOG_ERROR, "%s: libsndfile failed to decode it: %s", label, sf_error_number(err));
            return MD_ERR_FORMAT;
        }
        md_log(MD_LOG_WARN, "%s: decoding stopped after %lld frames: %s; keeping those", label, (long long)total,
               sf_error_number(err));
    }
    if (total == 0) {
        free(buf);
        md_log(MD_LOG_ERROR, "%s: no audio frames", label);
        return MD_ERR_FORMAT;
    }
    if (known && total < info->frames)
        md_log(MD_LOG_WARN, "%s: header promises %lld frames but the file holds %lld; loaded those", label,
               (long long)info->frames, (long long)total);

    const size_t n = (size_t)total * (size_t)ch;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(buf[i])) {
            md_log(MD_LOG_ERROR, "%s: sample at frame %lld, channel %d is %s; audio must be finite", label,
                   (long long)(i / (size_t)ch), (int)(i % (size_t)ch), isnan(buf[i]) ? "NaN" : "infinite");
            free(buf);
            return MD_ERR_FORMAT;
        }

    if (total < cap) {
        float *nb = realloc(buf, n * sizeof(float));
        if (nb)
            buf = nb;
    }
    if (meta) {
        md_status st = read_tags(sf, meta);
        if (st != MD_OK) {
            free(buf);
            return st;
        }
    }
    out->rate = rate;
    out->channels = ch;
    out->frames = total;
    out->samples = buf;
    return MD_OK;
}

md_status md_audio_load(const char *path, const md_media_limits *lim, md_audio *out, md_meta *meta)
{
    MD_ASSERT(path && out);
    memset(out, 0, sizeof *out);
    const md_media_limits def = md_media_limits_default();
    if (!lim)
        lim = &def;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        md_log(MD_LOG_ERROR, "%s: cannot open: %s", path, strerror(errno));
        return MD_ERR_IO;
    }
    struct stat stt;
    if (fstat(fd, &stt) != 0) {
        md_log(MD_LOG_ERROR, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return MD_ERR_IO;
    }
    if (!S_ISREG(stt.st_mode)) {
        md_log(MD_LOG_ERROR, "%s: not a regular file", path);
        close(fd);
        return MD_ERR_IO;
    }
    if (stt.st_size == 0) {
        md_log(MD_LOG_ERROR, "%s: empty file (0 bytes)", path);
        close(fd);
        return MD_ERR_FORMAT;
    }
    if ((int64_t)stt.st_size > lim->max_bytes) {
        md_log(MD_LOG_ERROR, "%s: file of %lld bytes is larger than the limit of %lld bytes", path,
               (long long)stt.st_size, (long long)lim->max_bytes);
        close(fd);
        return MD_ERR_INVALID;
    }
    unsigned char head[AUDIO_HEAD_BYTES];
    ssize_t nh = pread(fd, head, sizeof head, 0);
    if (nh < 0) {
        md_log(MD_LOG_ERROR, "%s: cannot read: %s", path, strerror(errno));
        close(fd);
        return MD_ERR_IO;
    }

    byte_src bs = {NULL, fd, (int64_t)stt.st_size};
    md_status pre = wav_list_check(&bs, path);
    if (pre != MD_OK) {
        close(fd);
        return pre;
    }

    SF_INFO info;
    memset(&info, 0, sizeof info);
    /* SF_FALSE: the descriptor is ours to close, whether or not it opens. */
    SNDFILE *sf = sf_open_fd(fd, SFM_READ, &info, SF_FALSE);
    if (!sf) {
        md_status st = report_open_failure(path, head, (size_t)nh);
        close(fd);
        return st;
    }
    md_status st = read_all(sf, &info, path, lim, out, meta);
    sf_close(sf);
    close(fd);
    return st;
}

/* libsndfile virtual I/O over a read-only buffer. pos may pass len (a seek
 * past the end); reads there return 0. */
typedef struct mem_file {
    const unsigned char *data;
    sf_count_t len, pos;
} mem_file;

static sf_count_t mem_get_len(void *user) { return ((mem_file *)user)->len; }

static sf_count_t mem_seek(sf_count_t off, int whence, void *user)
{
    mem_file *m = user;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->len, np;
    if (__builtin_add_overflow(base, off, &np) || np < 0)
        return -1;
    m->pos = np;
    return np;
}

static sf_count_t mem_read(void *ptr, sf_count_t count, void *user)
{
    mem_file *m = user;
    if (count <= 0 || m->pos >= m->len)
        return 0;
    sf_count_t n = MD_MIN(count, m->len - m->pos);
    memcpy(ptr, m->data + m->pos, (size_t)n);
    m->pos += n;
    return n;
}

static sf_count_t mem_write(const void *ptr, sf_count_t count, void *user)
{
    (void)ptr;
    (void)count;
    (void)user;
    return 0;
}

static sf_count_t mem_tell(void *user) { return ((mem_file *)user)->pos; }

md_status md_audio_load_memory(const void *buf, size_t len, const char *label, const md_media_limits *lim,
                               md_audio *out, md_meta *meta)
{
    MD_ASSERT(out && (buf || len == 0));
    memset(out, 0, sizeof *out);
    const md_media_limits def = md_media_limits_default();
    if (!lim)
        lim = &def;
    if (!label)
        label = "(memory)";
    if (len == 0) {
        md_log(MD_LOG_ERROR, "%s: empty (0 bytes)", label);
        return MD_ERR_FORMAT;
    }
    if (len > (uint64_t)INT64_MAX || (int64_t)len > lim->max_bytes) {
        md_log(MD_LOG_ERROR, "%s: %zu bytes is larger than the limit of %lld bytes", label, len,
               (long long)lim->max_bytes);
        return MD_ERR_INVALID;
    }
    byte_src bs = {buf, -1, (int64_t)len};
    md_status pre = wav_list_check(&bs, label);
    if (pre != MD_OK)
        return pre;
    mem_file m = {buf, (sf_count_t)len, 0};
    SF_VIRTUAL_IO io = {mem_get_len, mem_seek, mem_read, mem_write, mem_tell};
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_virtual(&io, SFM_READ, &info, &m);
    if (!sf)
        return report_open_failure(label, buf, MD_MIN(len, (size_t)AUDIO_HEAD_BYTES));
    md_status st = read_all(sf, &info, label, lim, out, meta);
    sf_close(sf);
    return st;
}

/* ---- saving --------------------------------------------------------------- */

static bool audio_valid(const md_audio *a, const char *what)
{
    if (a->rate < MD_AUDIO_MIN_RATE || a->rate > MD_AUDIO_MAX_RATE || a->channels < 1 || a->frames < 0 ||
        (a->frames > 0 && !a->samples)) {
        md_log(MD_LOG_ERROR, "%s: audio of %d Hz, %d channels, %lld frames is invalid", what, a->rate, a->channels,
               (long long)a->frames);
        return false;
    }
    return true;
}

static void fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* best effort: the data itself was synced before rename */
        close(dfd);
    }
    free(dir);
}

md_status md_audio_save(const char *path, const md_audio *a, const char *format, const md_meta *meta)
{
    MD_ASSERT(path && a && format);
    if (!audio_valid(a, path))
        return MD_ERR_INVALID;
    if (a->frames == 0) {
        md_log(MD_LOG_ERROR, "%s: no audio frames to write", path);
        return MD_ERR_INVALID;
    }
    int sfmt;
    bool as_float = false;
    if (strcmp(format, "wav") == 0) {
        sfmt = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
    } else if (strcmp(format, "wav-float") == 0) {
        sfmt = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
        as_float = true;
    } else if (strcmp(format, "flac") == 0) {
        sfmt = SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
    } else {
        md_log(MD_LOG_ERROR, "%s: unknown audio format \"%s\" (use wav, wav-float or flac)", path, format);
        return MD_ERR_INVALID;
    }
    if (a->frames > (int64_t)INT64_MAX / a->channels) {
        md_log(MD_LOG_ERROR, "%s: %lld frames is too long", path, (long long)a->frames);
        return MD_ERR_INVALID;
    }

    /* Refuse non-finite samples before creating anything; count clipping. */
    const size_t n = (size_t)a->frames * (size_t)a->channels;
    size_t clipped = 0;
    for (size_t i = 0; i < n; i++) {
        float x = a->samples[i];
        if (!isfinite(x)) {
            md_log(MD_LOG_ERROR, "%s: sample at frame %lld, channel %d is %s; nothing written", path,
                   (long long)(i / (size_t)a->channels), (int)(i % (size_t)a->channels),
                   isnan(x) ? "NaN" : "infinite");
            return MD_ERR_INVALID;
        }
        clipped += x > 1.0f || x < -1.0f;
    }

    SF_INFO info;
    memset(&info, 0, sizeof info);
    info.samplerate = a->rate;
    info.channels = a->channels;
    info.format = sfmt;
    if (!sf_format_check(&info)) {
        md_log(MD_LOG_ERROR, "%s: libsndfile cannot write %s at %d Hz with %d channels", path, format, a->rate,
               a->channels);
        return MD_ERR_UNSUPPORTED;
    }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp-XXXXXX");
    void *cbuf = malloc((size_t)AUDIO_WRITE_FRAMES * (size_t)a->channels * (as_float ? sizeof(float) : sizeof(short)));
    if (!tmp || !cbuf) {
        free(tmp);
        free(cbuf);
        md_log(MD_LOG_ERROR, "%s: out of memory", path);
        return MD_ERR_ALLOC;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp-XXXXXX", sizeof ".tmp-XXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        md_log(MD_LOG_ERROR, "%s: cannot create a temporary file beside it: %s", path, strerror(errno));
        free(tmp);
        free(cbuf);
        return MD_ERR_IO;
    }
    fchmod(fd, 0644); /* mkstemp makes 0600; audio outputs are meant to be shared */

    md_status st = MD_OK;
    SNDFILE *sf = sf_open_fd(fd, SFM_WRITE, &info, SF_FALSE);
    if (!sf) {
        md_log(MD_LOG_ERROR, "%s: libsndfile cannot write it: %s", path, sf_strerror(NULL));
        st = MD_ERR_IO;
        goto fail;
    }
    /* Tags go in before any data: FLAC keeps them in its header. */
    for (int i = 0; meta && i < meta->count; i++) {
        int type = 0;
        for (size_t k = 0; k < sizeof k_tags / sizeof k_tags[0]; k++)
            if (strcmp(meta->keys[i], k_tags[k].key) == 0)
                type = k_tags[k].sf_str;
        if (!type || sf_set_string(sf, type, meta->values[i]) != 0)
            md_log(MD_LOG_DEBUG, "%s: tag \"%s\" not stored in %s", path, meta->keys[i], format);
    }
    for (int64_t f0 = 0; f0 < a->frames; f0 += AUDIO_WRITE_FRAMES) {
        const int64_t nf = MD_MIN((int64_t)AUDIO_WRITE_FRAMES, a->frames - f0);
        const float *src = a->samples + (size_t)f0 * (size_t)a->channels;
        const size_t ns = (size_t)nf * (size_t)a->channels;
        sf_count_t wrote;
        if (as_float) {
            float *d = cbuf;
            for (size_t i = 0; i < ns; i++)
                d[i] = fminf(fmaxf(src[i], -1.0f), 1.0f);
            wrote = sf_writef_float(sf, d, nf);
        } else {
            /* round(x * 32768) inverts the loader's k/32768; +1.0 lands on 32767. */
            short *d = cbuf;
            for (size_t i = 0; i < ns; i++) {
                long q = lrintf(fminf(fmaxf(src[i], -1.0f), 1.0f) * 32768.0f);
                d[i] = (short)(q > 32767 ? 32767 : q);
            }
            wrote = sf_writef_short(sf, d, nf);
        }
        if (wrote != nf) {
            md_log(MD_LOG_ERROR, "%s: write failed: %s", path, sf_strerror(sf));
            st = MD_ERR_IO;
            goto fail;
        }
    }
    int rc = sf_close(sf);
    sf = NULL;
    if (rc != 0) {
        md_log(MD_LOG_ERROR, "%s: finishing the file failed: %s", path, sf_error_number(rc));
        st = MD_ERR_IO;
        goto fail;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        md_log(MD_LOG_ERROR, "%s: cannot flush to disk: %s", path, strerror(errno));
        st = MD_ERR_IO;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        md_log(MD_LOG_ERROR, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        st = MD_ERR_IO;
        goto fail;
    }
    fsync_parent(path);
    if (clipped)
        md_log(MD_LOG_WARN, "%s: %zu of %zu samples were outside [-1, 1] and clipped", path, clipped, n);
    free(tmp);
    free(cbuf);
    return MD_OK;

fail:
    if (sf)
        sf_close(sf);
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    free(cbuf);
    return st;
}

/* ---- conversions ---------------------------------------------------------- */

md_status md_audio_resample(const md_audio *src, int rate, md_audio *dst)
{
    MD_ASSERT(src && dst && src != dst);
    memset(dst, 0, sizeof *dst);
    if (!audio_valid(src, "resample"))
        return MD_ERR_INVALID;
    if (rate < MD_AUDIO_MIN_RATE || rate > MD_AUDIO_MAX_RATE) {
        md_log(MD_LOG_ERROR, "resample: target rate %d Hz is outside %d..%d", rate, MD_AUDIO_MIN_RATE,
               MD_AUDIO_MAX_RATE);
        return MD_ERR_INVALID;
    }
    const double ratio = (double)rate / src->rate;
    if (!src_is_valid_ratio(ratio)) {
        md_log(MD_LOG_ERROR, "resample: %d Hz to %d Hz is beyond libsamplerate's ratio range (1/256..256)",
               src->rate, rate);
        return MD_ERR_INVALID;
    }
    const double target_d = (double)src->frames * ratio;
    if (target_d > (double)LONG_MAX / 2 || src->frames > LONG_MAX) {
        md_log(MD_LOG_ERROR, "resample: %lld frames is too long", (long long)src->frames);
        return MD_ERR_INVALID;
    }
    const int64_t target = llround(target_d);
    md_status st = md_audio_alloc(dst, rate, src->channels, target);
    if (st != MD_OK)
        return st;
    const size_t ch = (size_t)src->channels;
    if (target == 0)
        return MD_OK;
    if (rate == src->rate) {
        memcpy(dst->samples, src->samples, (size_t)target * ch * sizeof(float));
        return MD_OK;
    }
    SRC_DATA d;
    memset(&d, 0, sizeof d);
    d.data_in = src->samples;
    d.data_out = dst->samples;
    d.input_frames = (long)src->frames;
    d.output_frames = (long)target;
    d.src_ratio = ratio;
    d.end_of_input = 1;
    int err = src_simple(&d, SRC_SINC_MEDIUM_QUALITY, src->channels);
    if (err) {
        md_audio_free(dst);
        md_log(MD_LOG_ERROR, "resample %d Hz to %d Hz: %s", src->rate, rate, src_strerror(err));
        return MD_ERR;
    }
    /* The converter may stop a frame or two short of the exact length. */
    if (d.output_frames_gen < target)
        memset(dst->samples + (size_t)d.output_frames_gen * ch, 0,
               (size_t)(target - d.output_frames_gen) * ch * sizeof(float));
    return MD_OK;
}

md_status md_audio_mixdown(const md_audio *src, md_audio *mono)
{
    MD_ASSERT(src && mono && src != mono);
    memset(mono, 0, sizeof *mono);
    if (!audio_valid(src, "mixdown"))
        return MD_ERR_INVALID;
    md_status st = md_audio_alloc(mono, src->rate, 1, src->frames);
    if (st != MD_OK)
        return st;
    const size_t ch = (size_t)src->channels;
    const double inv = 1.0 / (double)ch;
    for (int64_t f = 0; f < src->frames; f++) {
        const float *x = src->samples + (size_t)f * ch;
        double s = 0;
        for (size_t c = 0; c < ch; c++)
            s += x[c];
        mono->samples[f] = (float)(s * inv);
    }
    return MD_OK;
}
