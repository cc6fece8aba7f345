/* datasets.c — MNIST (IDX, gzip or raw), FSDD (a folder of WAVs) and Sign
 * Language Digits (JPEG folders); contracts in datasets.h.
 *
 * Shared shape of the folder loaders: list and validate every name first
 * (sorted, so the first bad name reported is always the same one), then
 * decode in parallel by index. Workers log through md_log as they fail, but
 * only the failure with the lowest index is kept and logged again on the
 * caller's thread, so the status and md_last_error() are deterministic. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* strdup, when built without meson's -D_GNU_SOURCE */
#endif
#include "datasets.h"

#include "audio_io.h"
#include "image_io.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

/* ------------------------------------------------------------ helpers */

/* dir + "/" + name into buf; false (and an error naming both) if too long. */
static bool join_path(char *buf, size_t cap, const char *dir, const char *name)
{
    int k = snprintf(buf, cap, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= cap) {
        md_log(MD_LOG_ERROR, "%s/%s: path longer than %zu bytes", dir, name, cap - 1);
        return false;
    }
    return true;
}

static bool has_suffix_ci(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && strcasecmp(name + n - k, suffix) == 0;
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Names in dir (not "." or "..") for which keep() holds, sorted by strcmp.
 * *names: n strdup'd strings; free with free_names. */
static md_status list_dir(const char *dir, bool (*keep)(const char *name), char ***names, int *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        md_log(MD_LOG_ERROR, "%s: cannot open folder (%s)", dir, strerror(errno));
        return MD_ERR_IO;
    }
    char **v = NULL;
    int cnt = 0, cap = 0;
    md_status s = MD_OK;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno) {
                md_log(MD_LOG_ERROR, "%s: cannot list folder (%s)", dir, strerror(errno));
                s = MD_ERR_IO;
            }
            break;
        }
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !keep(e->d_name))
            continue;
        if (cnt == cap) {
            if (cap > INT_MAX / 4) {
                md_log(MD_LOG_ERROR, "%s: more than %d entries", dir, cap);
                s = MD_ERR_INVALID;
                break;
            }
            int ncap = cap ? 2 * cap : 256;
            char **nv = realloc(v, (size_t)ncap * sizeof *nv);
            if (!nv) {
                s = MD_ERR_ALLOC;
                break;
            }
            v = nv;
            cap = ncap;
        }
        if (!(v[cnt] = strdup(e->d_name))) {
            s = MD_ERR_ALLOC;
            break;
        }
        cnt++;
    }
    closedir(d);
    if (s == MD_ERR_ALLOC)
        md_log(MD_LOG_ERROR, "%s: out of memory listing the folder", dir);
    if (s != MD_OK) {
        free_names(v, cnt);
        return s;
    }
    if (cnt > 1)
        qsort(v, (size_t)cnt, sizeof *v, cmp_str);
    *names = v;
    *n = cnt;
    return MD_OK;
}

/* The lowest-index failure of a parallel loop. `first` only decreases, so
 * every index below its final value has run: the kept error does not depend
 * on scheduling. */
typedef struct first_error {
    int first;              /* INT_MAX while none */
    md_status status;
    char msg[1024];         /* its message, as the failing thread logged it */
} first_error;

static bool first_error_skip(first_error *fe, int i)
{
    int f;
#pragma omp atomic read
    f = fe->first;
    return i > f;
}

/* Called by the worker that failed item i, right after it logged why. */
static void first_error_note(first_error *fe, int i, md_status s)
{
#pragma omp critical(md_datasets_first_error)
    if (i < fe->first) {
        fe->status = s;
        snprintf(fe->msg, sizeof fe->msg, "%s", md_last_error());
#pragma omp atomic write
        fe->first = i;
    }
}

/* After the loop, on the caller's thread: md_last_error() is per thread and
 * must name the file there too; logged again unless it already does. */
static md_status first_error_finish(const first_error *fe)
{
    if (fe->first == INT_MAX)
        return MD_OK;
    if (strcmp(md_last_error(), fe->msg) != 0)
        md_log(MD_LOG_ERROR, "%s", fe->msg);
    return fe->status;
}

/* ------------------------------------------------------------ MNIST */

#define MNIST_SIDE 28
#define MNIST_MAX_COUNT 10000000    /* 7.8 GB of images: bounds a header's count before any allocation */
#define GZ_MAX_RATIO 1032           /* deflate never expands 1 input byte to more than 1032 */
#define IDX_MAGIC_IMAGES 2051       /* 0x00000803: u8, 3 dimensions */
#define IDX_MAGIC_LABELS 2049       /* 0x00000801: u8, 1 dimension */

/* A file read as raw bytes or through every member of a gzip stream, told
 * apart by the first two bytes (1f 8b). */
typedef struct idx_reader {
    const char *path;
    FILE *f;
    int64_t file_bytes;
    bool gz, gz_live, gz_done;  /* gzip; inflate state allocated; last member ended, trailer checked */
    int members;                /* gzip members ended so far */
    z_stream z;
    unsigned char in[1 << 16];
} idx_reader;

static md_status idx_open(idx_reader *r, const char *path)
{
    r->path = path;
    r->f = fopen(path, "rb");
    struct stat st;
    if (!r->f || fstat(fileno(r->f), &st) != 0) {
        md_log(MD_LOG_ERROR, "%s: cannot open (%s)", path, strerror(errno));
        return MD_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        md_log(MD_LOG_ERROR, "%s: not a regular file", path);
        return MD_ERR_IO;
    }
    r->file_bytes = (int64_t)st.st_size;
    unsigned char head[2];
    size_t k = fread(head, 1, 2, r->f);
    if (ferror(r->f) || fseek(r->f, 0, SEEK_SET) != 0) {
        md_log(MD_LOG_ERROR, "%s: cannot read (%s)", path, strerror(errno));
        return MD_ERR_IO;
    }
    r->gz = k == 2 && head[0] == 0x1f && head[1] == 0x8b;
    if (r->gz) {
        if (inflateInit2(&r->z, 16 + MAX_WBITS) != Z_OK) {   /* 16: gzip wrapper only */
            md_log(MD_LOG_ERROR, "%s: out of memory for gzip", path);
            return MD_ERR_ALLOC;
        }
        r->gz_live = true;
    }
    return MD_OK;
}

static void idx_close(idx_reader *r)
{
    if (r->gz_live)
        inflateEnd(&r->z);
    if (r->f)
        fclose(r->f);
}

/* Reads up to n bytes into dst; *got < n only at the end of the data. A
 * gzip stream that stops before its end marker, or holds corrupt data or a
 * bad CRC, is an error here, not a short read. */
static md_status idx_read(idx_reader *r, void *dst, size_t n, size_t *got)
{
    *got = 0;
    if (!r->gz) {
        *got = fread(dst, 1, n, r->f);
        if (*got < n && ferror(r->f)) {
            md_log(MD_LOG_ERROR, "%s: read error (%s)", r->path, strerror(errno));
            return MD_ERR_IO;
        }
        return MD_OK;
    }
    z_stream *z = &r->z;
    z->next_out = dst;
    while (*got < n && !r->gz_done) {
        /* avail_out is 32-bit: feed at most 1 GiB per call. */
        z->avail_out = (uInt)MD_MIN(n - *got, (size_t)1 << 30);
        size_t before = z->avail_out;
        if (z->avail_in == 0) {
            z->avail_in = (uInt)fread(r->in, 1, sizeof r->in, r->f);
            z->next_in = r->in;
            if (z->avail_in == 0) {
                if (ferror(r->f)) {
                    md_log(MD_LOG_ERROR, "%s: read error (%s)", r->path, strerror(errno));
                    return MD_ERR_IO;
                }
                md_log(MD_LOG_ERROR, "%s: truncated gzip data (the file ends inside the compressed stream)",
                       r->path);
                return MD_ERR_FORMAT;
            }
        }
        int zr = inflate(z, Z_NO_FLUSH);
        *got += before - z->avail_out;
        if (zr == Z_STREAM_END) {
            /* Another member may follow (concatenated .gz); anything else
             * after the trailer fails inflate's header check below. */
            if (z->avail_in == 0) {
                z->avail_in = (uInt)fread(r->in, 1, sizeof r->in, r->f);
                z->next_in = r->in;
                if (z->avail_in == 0 && ferror(r->f)) {
                    md_log(MD_LOG_ERROR, "%s: read error (%s)", r->path, strerror(errno));
                    return MD_ERR_IO;
                }
            }
            r->members++;
            if (z->avail_in == 0)
                r->gz_done = true;
            else
                inflateReset(z);
        } else if (zr == Z_MEM_ERROR) {
            md_log(MD_LOG_ERROR, "%s: out of memory inflating gzip data", r->path);
            return MD_ERR_ALLOC;
        } else if (zr == Z_DATA_ERROR && r->members > 0 && z->total_out == 0) {
            md_log(MD_LOG_ERROR, "%s: trailing bytes after the gzip stream", r->path);
            return MD_ERR_FORMAT;
        } else if (zr != Z_OK && !(zr == Z_BUF_ERROR && z->avail_in == 0)) {
            md_log(MD_LOG_ERROR, "%s: corrupt gzip data (%s)", r->path, z->msg ? z->msg : "inflate failed");
            return MD_ERR_FORMAT;
        }
    }
    return MD_OK;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* One IDX file: images [count, 28, 28] or labels [count] as u8, header
 * stripped. *data is malloc'd; NULL and 0 on failure. */
static md_status idx_load(const char *path, bool images, int64_t *count, uint8_t **data)
{
    *count = 0;
    *data = NULL;
    const uint32_t magic = images ? IDX_MAGIC_IMAGES : IDX_MAGIC_LABELS;
    const char *what = images ? "IDX3 image file" : "IDX1 label file";
    const size_t head_bytes = images ? 16 : 8, item = images ? MNIST_SIDE * MNIST_SIDE : 1;
    idx_reader *r = calloc(1, sizeof *r);
    if (!r) {
        md_log(MD_LOG_ERROR, "%s: out of memory", path);
        return MD_ERR_ALLOC;
    }
    uint8_t *buf = NULL;
    unsigned char h[16];
    size_t got = 0;
    md_status s = idx_open(r, path);
    if (s == MD_OK)
        s = idx_read(r, h, head_bytes, &got);
    if (s != MD_OK)
        goto done;
    s = MD_ERR_FORMAT;
    if (got < head_bytes) {
        md_log(MD_LOG_ERROR, "%s: truncated: %zu bytes, shorter than the %zu-byte header of an %s", path, got,
               head_bytes, what);
        goto done;
    }
    uint32_t m = be32(h), cnt = be32(h + 4);
    if (m != magic) {
        md_log(MD_LOG_ERROR, "%s: magic number %u (0x%08x), expected %u for an %s%s", path, m, m, magic, what,
               m == IDX_MAGIC_IMAGES ? " (this is an image file)" :
               m == IDX_MAGIC_LABELS ? " (this is a label file)" : "");
        goto done;
    }
    if (images && (be32(h + 8) != MNIST_SIDE || be32(h + 12) != MNIST_SIDE)) {
        md_log(MD_LOG_ERROR, "%s: images are %u x %u, expected 28 x 28", path, be32(h + 8), be32(h + 12));
        goto done;
    }
    if (cnt == 0 || cnt > MNIST_MAX_COUNT) {
        md_log(MD_LOG_ERROR, "%s: header declares %u items; expected 1 to %d", path, cnt, MNIST_MAX_COUNT);
        goto done;
    }
    const int64_t need = (int64_t)cnt * (int64_t)item, total = (int64_t)head_bytes + need;
    /* The file size bounds what the data can hold: check before allocating. */
    if (!r->gz && total != r->file_bytes) {
        if (total < r->file_bytes)
            md_log(MD_LOG_ERROR, "%s: %lld trailing bytes after the %u items the header declares", path,
                   (long long)(r->file_bytes - total), cnt);
        else
            md_log(MD_LOG_ERROR, "%s: truncated: the header declares %u items (%lld bytes) but the file has %lld",
                   path, cnt, (long long)total, (long long)r->file_bytes);
        goto done;
    }
    if (r->gz && total > r->file_bytes * GZ_MAX_RATIO) {
        md_log(MD_LOG_ERROR, "%s: truncated: the header declares %u items (%lld bytes), more than a %lld-byte "
               "gzip file can hold", path, cnt, (long long)total, (long long)r->file_bytes);
        goto done;
    }
    if (!(buf = malloc((size_t)need))) {
        md_log(MD_LOG_ERROR, "%s: out of memory for %lld bytes", path, (long long)need);
        s = MD_ERR_ALLOC;
        goto done;
    }
    if ((s = idx_read(r, buf, (size_t)need, &got)) != MD_OK)
        goto done;
    s = MD_ERR_FORMAT;
    if ((int64_t)got < need) {
        md_log(MD_LOG_ERROR, "%s: truncated: the header declares %u items but the data ends after %lld", path, cnt,
               (long long)(got / item));
        goto done;
    }
    unsigned char extra;
    if ((s = idx_read(r, &extra, 1, &got)) != MD_OK)
        goto done;
    if (got) {
        md_log(MD_LOG_ERROR, "%s: trailing bytes after the %u items the header declares", path, cnt);
        s = MD_ERR_FORMAT;
        goto done;
    }
    *count = cnt;
    *data = buf;
    buf = NULL;
done:
    free(buf);
    idx_close(r);
    free(r);
    return s;
}

md_status md_mnist_load(const char *images_path, const char *labels_path, md_mnist *out)
{
    MD_ASSERT(images_path && labels_path && out);
    memset(out, 0, sizeof *out);
    int64_t ni = 0, nl = 0;
    uint8_t *img = NULL, *lab = NULL;
    md_status s = idx_load(images_path, true, &ni, &img);
    if (s == MD_OK)
        s = idx_load(labels_path, false, &nl, &lab);
    if (s == MD_OK && ni != nl) {
        md_log(MD_LOG_ERROR, "%s holds %lld images but %s holds %lld labels", images_path, (long long)ni,
               labels_path, (long long)nl);
        s = MD_ERR_FORMAT;
    }
    for (int64_t i = 0; s == MD_OK && i < nl; i++)
        if (lab[i] > 9) {
            md_log(MD_LOG_ERROR, "%s: label %u at index %lld is outside 0..9", labels_path, lab[i], (long long)i);
            s = MD_ERR_FORMAT;
        }
    if (s != MD_OK) {
        free(img);
        free(lab);
        return s;
    }
    out->n = ni;
    out->images = img;
    out->labels = lab;
    return MD_OK;
}

void md_mnist_free(md_mnist *m)
{
    if (!m)
        return;
    free(m->images);
    free(m->labels);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------ FSDD */

#define FSDD_DIGITS 10
#define FSDD_CLIPS (FSDD_DIGITS * MD_FSDD_SPEAKERS * MD_FSDD_TAKES)   /* 3000 */
#define FSDD_MAX_SECONDS 10.0

const char *const md_fsdd_speaker_names[MD_FSDD_SPEAKERS] = {
    "george", "jackson", "lucas", "nicolas", "theo", "yweweler",
};

int md_fsdd_speaker_index(const char *name)
{
    for (int i = 0; name && i < MD_FSDD_SPEAKERS; i++)
        if (!strcmp(name, md_fsdd_speaker_names[i]))
            return i;
    return -1;
}

/* Position in the sorted, complete set. */
static int fsdd_slot(int digit, int speaker, int take)
{
    return (digit * MD_FSDD_SPEAKERS + speaker) * MD_FSDD_TAKES + take;
}

static bool is_wav_name(const char *name) { return has_suffix_ci(name, ".wav"); }

/* "{digit}_{speaker}_{take}.wav" → slot; -1 after logging why not. The take
 * is canonical decimal ("7", not "07"), so one clip has one name. */
static int fsdd_parse(const char *dir, const char *name)
{
    size_t len = strlen(name) - 4;   /* without ".wav" */
    const char *last = NULL;
    for (size_t i = 2; i < len; i++)
        if (name[i] == '_')
            last = name + i;
    if (len < 5 || name[0] < '0' || name[0] > '9' || name[1] != '_' || !last || last == name + 2) {
        md_log(MD_LOG_ERROR, "%s/%s: name is not {digit}_{speaker}_{take}.wav", dir, name);
        return -1;
    }
    char speaker[32];
    size_t sl = (size_t)(last - (name + 2));
    snprintf(speaker, sizeof speaker, "%.*s", (int)MD_MIN(sl, sizeof speaker - 1), name + 2);
    int sp = sl < sizeof speaker ? md_fsdd_speaker_index(speaker) : -1;
    if (sp < 0) {
        md_log(MD_LOG_ERROR, "%s/%s: unknown speaker \"%.*s\" (FSDD has george, jackson, lucas, nicolas, theo, "
               "yweweler)", dir, name, (int)sl, name + 2);
        return -1;
    }
    const char *t = last + 1, *end = name + len;
    int take = 0;
    bool ok = t < end && end - t <= 2 && !(t[0] == '0' && end - t > 1);
    for (const char *p = t; ok && p < end; p++) {
        ok = *p >= '0' && *p <= '9';
        take = take * 10 + (*p - '0');
    }
    if (!ok || take >= MD_FSDD_TAKES) {
        md_log(MD_LOG_ERROR, "%s/%s: take \"%.*s\" is not a number from 0 to %d", dir, name, (int)(end - t), t,
               MD_FSDD_TAKES - 1);
        return -1;
    }
    return fsdd_slot(name[0] - '0', sp, take);
}

/* libsndfile reads a WAV whose data chunk runs past the end of the file as
 * a shorter clip, without a word: a truncated take must be an error here.
 * Walks the RIFF chunks to "data"; other formats are left to the loader. */
static md_status wav_check_length(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    unsigned char h[12];
    md_status s = MD_OK;
    if (!f)
        return MD_OK;   /* md_audio_load has reported it */
    if (fstat(fileno(f), &st) == 0 && fread(h, 1, 12, f) == 12 && !memcmp(h, "RIFF", 4) &&
        !memcmp(h + 8, "WAVE", 4)) {
        const int64_t size = (int64_t)st.st_size;
        int64_t off = 12;
        while (off + 8 <= size && fseek(f, (long)off, SEEK_SET) == 0 && fread(h, 1, 8, f) == 8) {
            uint32_t len = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
            if (!memcmp(h, "data", 4)) {
                /* 0xffffffff: length left open by a streaming writer. */
                if (len != 0xffffffffu && off + 8 + (int64_t)len > size) {
                    md_log(MD_LOG_ERROR, "%s: truncated: the data chunk declares %u bytes but the file holds %lld",
                           path, len, (long long)(size - off - 8));
                    s = MD_ERR_FORMAT;
                }
                break;
            }
            off += 8 + (int64_t)len + (len & 1);
        }
    }
    fclose(f);
    return s;
}

/* One file → mono at `rate`. Every failure is logged naming the file. */
static md_status fsdd_decode(const char *path, int rate, const md_media_limits *lim, md_audio *out)
{
    md_audio a = {0}, b = {0};
    md_status s = md_audio_load(path, lim, &a, NULL);   /* names the file; refuses > 10 s and empty */
    if (s == MD_OK)
        s = wav_check_length(path);
    if (s == MD_OK && a.channels > 1) {
        if ((s = md_audio_mixdown(&a, &b)) != MD_OK)
            md_log(MD_LOG_ERROR, "%s: mixdown to mono failed (%s)", path, md_last_error());
        md_audio_free(&a);
        a = b;
        b = (md_audio){0};
    }
    if (s == MD_OK && a.rate != rate) {
        if ((s = md_audio_resample(&a, rate, &b)) != MD_OK)
            md_log(MD_LOG_ERROR, "%s: resampling %d Hz to %d Hz failed (%s)", path, a.rate, rate, md_last_error());
        else if (b.frames < 1) {
            md_log(MD_LOG_ERROR, "%s: no samples left after resampling to %d Hz", path, rate);
            s = MD_ERR_FORMAT;
        }
        md_audio_free(&a);
        a = b;
    }
    if (s != MD_OK) {
        md_audio_free(&a);
        return s;
    }
    *out = a;
    return MD_OK;
}

md_status md_fsdd_load(const char *dir, int rate, md_fsdd *out)
{
    MD_ASSERT(dir && out);
    memset(out, 0, sizeof *out);
    if (rate < MD_AUDIO_MIN_RATE || rate > MD_AUDIO_MAX_RATE) {
        md_log(MD_LOG_ERROR, "%s: target rate %d Hz is outside %d..%d", dir, rate, MD_AUDIO_MIN_RATE,
               MD_AUDIO_MAX_RATE);
        return MD_ERR_INVALID;
    }
    char **names = NULL;
    int nn = 0;
    md_status s = list_dir(dir, is_wav_name, &names, &nn);
    if (s != MD_OK)
        return s;
    int *name_of = malloc(FSDD_CLIPS * sizeof *name_of);        /* slot → index in names, -1 */
    md_audio *aud = calloc(FSDD_CLIPS, sizeof *aud);            /* per-clip decode, before pooling */
    md_fsdd_clip *clips = calloc(FSDD_CLIPS, sizeof *clips);
    float *pool = NULL;
    if (!name_of || !aud || !clips) {
        md_log(MD_LOG_ERROR, "%s: out of memory", dir);
        s = MD_ERR_ALLOC;
        goto done;
    }
    for (int i = 0; i < FSDD_CLIPS; i++)
        name_of[i] = -1;

    /* Names, in sorted order: each must parse, and name a clip only once. */
    for (int i = 0; i < nn; i++) {
        int slot = fsdd_parse(dir, names[i]);
        if (slot < 0) {
            s = MD_ERR_FORMAT;
            goto done;
        }
        if (name_of[slot] >= 0) {
            md_log(MD_LOG_ERROR, "%s: %s and %s are the same clip", dir, names[name_of[slot]], names[i]);
            s = MD_ERR_FORMAT;
            goto done;
        }
        name_of[slot] = i;
    }
    for (int d = 0; d < FSDD_DIGITS; d++)
        for (int sp = 0; sp < MD_FSDD_SPEAKERS; sp++)
            for (int t = 0; t < MD_FSDD_TAKES; t++)
                if (name_of[fsdd_slot(d, sp, t)] < 0) {
                    md_log(MD_LOG_ERROR, "%s: %d_%s_%d.wav is missing (the set needs digits 0..9 x %d speakers x "
                           "takes 0..%d, each once)", dir, d, md_fsdd_speaker_names[sp], t, MD_FSDD_SPEAKERS,
                           MD_FSDD_TAKES - 1);
                    s = MD_ERR_FORMAT;
                    goto done;
                }

    md_media_limits lim = md_media_limits_default();
    lim.max_seconds = FSDD_MAX_SECONDS;
    first_error fe = {.first = INT_MAX};
    md_threads_init();
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < FSDD_CLIPS; i++) {
        if (first_error_skip(&fe, i))
            continue;
        char path[4096];
        md_status si = MD_ERR_INVALID;
        if (join_path(path, sizeof path, dir, names[name_of[i]]))
            si = fsdd_decode(path, rate, &lim, &aud[i]);
        if (si != MD_OK)
            first_error_note(&fe, i, si);
    }
    if ((s = first_error_finish(&fe)) != MD_OK)
        goto done;

    /* One pool, clips in slot order, i.e. sorted by (digit, speaker, take). */
    int64_t total = 0;
    for (int i = 0; i < FSDD_CLIPS; i++)
        total += aud[i].frames;   /* each ≤ 10 s at ≤ 768 kHz: no overflow */
    if (!(pool = malloc((size_t)total * sizeof *pool))) {
        md_log(MD_LOG_ERROR, "%s: out of memory for %lld samples", dir, (long long)total);
        s = MD_ERR_ALLOC;
        goto done;
    }
    int64_t off = 0;
    for (int i = 0; i < FSDD_CLIPS; i++) {
        md_fsdd_clip *c = &clips[i];
        c->digit = i / (MD_FSDD_SPEAKERS * MD_FSDD_TAKES);
        c->speaker = i / MD_FSDD_TAKES % MD_FSDD_SPEAKERS;
        c->take = i % MD_FSDD_TAKES;
        c->n = aud[i].frames;
        c->samples = pool + off;
        memcpy(c->samples, aud[i].samples, (size_t)c->n * sizeof *pool);
        off += c->n;
    }
    out->n = FSDD_CLIPS;
    out->rate = rate;
    out->clips = clips;
    out->pool = pool;
    clips = NULL;
    pool = NULL;
done:
    for (int i = 0; aud && i < FSDD_CLIPS; i++)
        md_audio_free(&aud[i]);
    free(aud);
    free(name_of);
    free(clips);
    free(pool);
    free_names(names, nn);
    return s;
}

void md_fsdd_free(md_fsdd *f)
{
    if (!f)
        return;
    free(f->clips);
    free(f->pool);
    memset(f, 0, sizeof *f);
}

static int clip_cmp(const md_fsdd_clip *c, int digit, int speaker, int take)
{
    if (c->digit != digit)
        return c->digit < digit ? -1 : 1;
    if (c->speaker != speaker)
        return c->speaker < speaker ? -1 : 1;
    return c->take < take ? -1 : c->take > take;
}

int md_fsdd_find(const md_fsdd *f, int digit, int speaker, int take)
{
    if (!f || !f->clips || digit < 0 || digit >= FSDD_DIGITS || speaker < 0 || speaker >= MD_FSDD_SPEAKERS ||
        take < 0 || take >= MD_FSDD_TAKES)
        return -1;
    /* The loader's complete set: direct. A subset built by hand: bisect. */
    int i = fsdd_slot(digit, speaker, take);
    if (i < f->n && clip_cmp(&f->clips[i], digit, speaker, take) == 0)
        return i;
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = clip_cmp(&f->clips[mid], digit, speaker, take);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* ------------------------------------------------------------ Sign digits */

#define SIGN_MAX_SIZE 4096

static bool is_jpeg_name(const char *name) { return has_suffix_ci(name, ".jpg") || has_suffix_ci(name, ".jpeg"); }

/* One photo → centre square → size × size RGB u8 at dst [size, size, 3].
 * Every failure is logged naming the file. */
static md_status sign_decode(const char *path, int size, const md_media_limits *lim, uint8_t *dst)
{
    md_image im = {0}, tmp = {0};
    md_status s = md_image_load(path, lim, &im, NULL);   /* names the file */
    if (s != MD_OK)
        return s;
    if (im.channels != 3) {
        s = md_image_convert(&im, 3, &tmp);
        md_image_free(&im);
        im = tmp;
        tmp = (md_image){0};
    }
    if (s == MD_OK && im.width != im.height) {
        int side = MD_MIN(im.width, im.height), x0 = (im.width - side) / 2, y0 = (im.height - side) / 2;
        if ((s = md_image_alloc(&tmp, side, side, 3)) == MD_OK)
            for (int y = 0; y < side; y++)
                memcpy(tmp.pixels + (size_t)y * side * 3, im.pixels + ((size_t)(y0 + y) * im.width + x0) * 3,
                       (size_t)side * 3 * sizeof(float));
        md_image_free(&im);
        im = tmp;
        tmp = (md_image){0};
    }
    if (s == MD_OK && im.width != size) {
        s = md_image_resize(&im, size, size, &tmp);   /* antialiased tent: averages the footprint */
        md_image_free(&im);
        im = tmp;
    }
    if (s != MD_OK) {
        md_log(MD_LOG_ERROR, "%s: cannot convert the photo to %d x %d RGB (%s)", path, size, size, md_last_error());
        md_image_free(&im);
        return s;
    }
    const size_t n = (size_t)size * size * 3;
    for (size_t i = 0; i < n; i++) {
        float v = im.pixels[i];
        v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
        dst[i] = (uint8_t)(v * 255.0f + 0.5f);
    }
    md_image_free(&im);
    return MD_OK;
}

md_status md_sign_load(const char *dir, int size, md_sign *out)
{
    MD_ASSERT(dir && out);
    memset(out, 0, sizeof *out);
    if (size < 1 || size > SIGN_MAX_SIZE) {
        md_log(MD_LOG_ERROR, "%s: photo size %d is outside 1..%d", dir, size, SIGN_MAX_SIZE);
        return MD_ERR_INVALID;
    }
    char **names[10] = {0};     /* per digit, sorted by strcmp */
    int count[10] = {0}, start[11] = {0};
    char sub[4096];
    md_status s = MD_OK;
    for (int d = 0; d < 10 && s == MD_OK; d++) {
        char dn[2] = {(char)('0' + d), 0};
        if (!join_path(sub, sizeof sub, dir, dn))
            s = MD_ERR_INVALID;
        else if ((s = list_dir(sub, is_jpeg_name, &names[d], &count[d])) == MD_OK && count[d] == 0) {
            md_log(MD_LOG_ERROR, "%s: no .jpg or .jpeg photos in the digit folder", sub);
            s = MD_ERR_FORMAT;
        }
        if (s == MD_OK && count[d] > INT_MAX - start[d]) {
            md_log(MD_LOG_ERROR, "%s: too many photos", dir);
            s = MD_ERR_INVALID;
        }
        if (s == MD_OK)
            start[d + 1] = start[d] + count[d];
    }
    const int n = start[10];
    const size_t img_bytes = (size_t)size * size * 3;
    uint8_t *images = NULL, *labels = NULL;
    int *rank = NULL;
    if (s != MD_OK)
        goto done;
    images = malloc((size_t)n * img_bytes);
    labels = malloc((size_t)n);
    rank = malloc((size_t)n * sizeof *rank);
    if (!images || !labels || !rank) {
        md_log(MD_LOG_ERROR, "%s: out of memory for %d photos of %d x %d", dir, n, size, size);
        s = MD_ERR_ALLOC;
        goto done;
    }
    for (int d = 0; d < 10; d++)
        for (int k = 0; k < count[d]; k++) {
            labels[start[d] + k] = (uint8_t)d;
            rank[start[d] + k] = k;
        }

    md_media_limits lim = md_media_limits_default();
    lim.min_side = 2 * size;   /* a few photos are 3024 px: decode them at 1/8 */
    first_error fe = {.first = INT_MAX};
    md_threads_init();
#pragma omp parallel for schedule(dynamic, 1)   /* a few photos are 3024 x 3024: spread them */
    for (int i = 0; i < n; i++) {
        if (first_error_skip(&fe, i))
            continue;
        int d = labels[i];
        char path[4096];
        md_status si = MD_ERR_INVALID;
        if (snprintf(path, sizeof path, "%s/%d/%s", dir, d, names[d][rank[i]]) >= (int)sizeof path)
            md_log(MD_LOG_ERROR, "%s/%d/%s: path too long", dir, d, names[d][rank[i]]);
        else
            si = sign_decode(path, size, &lim, images + (size_t)i * img_bytes);
        if (si != MD_OK)
            first_error_note(&fe, i, si);
    }
    if ((s = first_error_finish(&fe)) != MD_OK)
        goto done;
    out->n = n;
    out->size = size;
    out->images = images;
    out->labels = labels;
    out->rank = rank;
    images = labels = NULL;
    rank = NULL;
done:
    free(images);
    free(labels);
    free(rank);
    for (int d = 0; d < 10; d++)
        free_names(names[d], count[d]);
    return s;
}

void md_sign_free(md_sign *s)
{
    if (!s)
        return;
    free(s->images);
    free(s->labels);
    free(s->rank);
    memset(s, 0, sizeof *s);
}
