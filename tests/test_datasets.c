/* test_datasets.c — the MNIST, FSDD and Sign-digit readers on the real data
 * ($MEDLEY_DATA_DIR, the folder holding mnist/, fsdd/, sign-digits/; the
 * test skips with 77 when it is unset) and on damaged copies built under
 * $MEDLEY_TEST_TMP (default /tmp): every damage must give an error whose
 * message names the file, never a crash or a smaller set. Folder copies are
 * symlinks to the real files, so they cost no disk and little time. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* strdup, mkdtemp, nftw, symlink outside meson's -D_GNU_SOURCE */
#endif
#include "check.h"
#include "datasets.h"
#include "image_io.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char g_data[1024], g_tmp[1024];

static void quiet(md_log_level level, const char *msg, void *user)
{
    MD_UNUSED(level);
    MD_UNUSED(msg);
    MD_UNUSED(user);
}

/* Path under the data folder or the temp folder (four rotating buffers). */
static const char *P(const char *base, const char *rel)
{
    static char buf[4][2048];
    static int k;
    k = (k + 1) % 4;
    if (snprintf(buf[k], sizeof buf[k], "%s/%s", base, rel) >= (int)sizeof buf[k])
        printf("note: path %s/%s truncated\n", base, rel);
    return buf[k];
}
#define DATA(rel) P(g_data, rel)
#define TMP(rel) P(g_tmp, rel)

static bool names(const char *needle) { return strstr(md_last_error(), needle) != NULL; }

static bool write_bytes(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(b, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
    *n = 0;
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

/* A whole .gz file decompressed by zlib's own gz reader: the reference. */
static uint8_t *gunzip_file(const char *path, size_t *n)
{
    *n = 0;
    gzFile g = gzopen(path, "rb");
    if (!g)
        return NULL;
    size_t cap = 1 << 20;
    uint8_t *b = malloc(cap);
    int k;
    while (b && (k = gzread(g, b + *n, (unsigned)(cap - *n))) > 0) {
        *n += (size_t)k;
        if (*n == cap)
            b = realloc(b, cap *= 2);
    }
    gzclose(g);
    return b;
}

static bool write_gz(const char *path, const void *b, size_t n, const char *mode)
{
    gzFile g = gzopen(path, mode);
    if (!g)
        return false;
    bool ok = n == 0 || gzwrite(g, b, (unsigned)n) == (int)n;
    return gzclose(g) == Z_OK && ok;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Small IDX file: images (magic 2051, count, rows, cols, data) or labels
 * (2049, count, data); `extra` bytes past the declared data; gz or raw. */
static bool write_idx(const char *path, uint32_t magic, uint32_t count, uint32_t rows, uint32_t cols,
                      uint32_t ndata, int extra, uint8_t fill, bool gz)
{
    bool img = magic == 2051;
    size_t head = img ? 16 : 8, n = head + ndata + (size_t)extra;
    uint8_t *b = calloc(n, 1);
    put_be32(b, magic);
    put_be32(b + 4, count);
    if (img) {
        put_be32(b + 8, rows);
        put_be32(b + 12, cols);
    }
    memset(b + head, fill, n - head);
    bool ok = gz ? write_gz(path, b, n, "wb9") : write_bytes(path, b, n);
    free(b);
    return ok;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    MD_UNUSED(sb);
    MD_UNUSED(flag);
    MD_UNUSED(ftw);
    return remove(p);
}

static void rm_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* ------------------------------------------------------------ MNIST */

static void test_mnist_real(void)
{
    static const int first_train[10] = {5, 0, 4, 1, 9, 2, 1, 3, 1, 4}, first_test[10] = {7, 2, 1, 0, 4, 1, 4, 9, 5, 9};
    static const int count_train[10] = {5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949};
    static const int count_test[10] = {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009};
    md_mnist tr = {0}, te = {0};
    double t0 = md_time_now();
    md_status s1 = md_mnist_load(DATA("mnist/train-images-idx3-ubyte.gz"), DATA("mnist/train-labels-idx1-ubyte.gz"), &tr);
    double t1 = md_time_now();
    md_status s2 = md_mnist_load(DATA("mnist/t10k-images-idx3-ubyte.gz"), DATA("mnist/t10k-labels-idx1-ubyte.gz"), &te);
    double t2 = md_time_now();
    CHECK(s1 == MD_OK && tr.n == 60000, "MNIST train: 60000 images (got %lld, %.2f s) %s", (long long)tr.n, t1 - t0,
          md_last_error());
    CHECK(s2 == MD_OK && te.n == 10000, "MNIST test: 10000 images (got %lld, %.2f s)", (long long)te.n, t2 - t1);
    if (s1 != MD_OK || s2 != MD_OK)
        return;
    bool f1 = true, f2 = true;
    for (int i = 0; i < 10; i++) {
        f1 &= tr.labels[i] == first_train[i];
        f2 &= te.labels[i] == first_test[i];
    }
    CHECK(f1, "MNIST train starts 5 0 4 1 9 2 1 3 1 4");
    CHECK(f2, "MNIST test starts 7 2 1 0 4 1 4 9 5 9");
    int c1[10] = {0}, c2[10] = {0};
    for (int64_t i = 0; i < tr.n; i++)
        c1[tr.labels[i]]++;
    for (int64_t i = 0; i < te.n; i++)
        c2[te.labels[i]]++;
    CHECK(!memcmp(c1, count_train, sizeof c1), "MNIST train label counts match the README");
    CHECK(!memcmp(c2, count_test, sizeof c2), "MNIST test label counts match the README");

    /* Pixels equal zlib's own decompression of the file, header stripped. */
    size_t n = 0;
    uint8_t *ref = gunzip_file(DATA("mnist/t10k-images-idx3-ubyte.gz"), &n);
    CHECK(ref && n == 16 + (size_t)10000 * 784 && !memcmp(ref + 16, te.images, (size_t)10000 * 784),
          "MNIST test images equal a direct gzread");
    /* The same data uncompressed loads the same (format by magic: the raw
     * copy keeps a ".gz" name on purpose). */
    size_t nl = 0;
    uint8_t *lab = gunzip_file(DATA("mnist/t10k-labels-idx1-ubyte.gz"), &nl);
    write_bytes(TMP("raw-images.gz"), ref, n);
    write_bytes(TMP("raw-labels"), lab, nl);
    md_mnist raw = {0};
    md_status s = md_mnist_load(TMP("raw-images.gz"), TMP("raw-labels"), &raw);
    CHECK(s == MD_OK && raw.n == te.n && !memcmp(raw.images, te.images, (size_t)te.n * 784) &&
              !memcmp(raw.labels, te.labels, (size_t)te.n),
          "uncompressed IDX (named .gz) loads the same as the gzip one");
    md_mnist_free(&raw);
    CHECK(raw.n == 0 && raw.images == NULL, "md_mnist_free leaves the struct zeroed");
    md_mnist_free(&raw);

    /* Concatenated gzip members are one stream. */
    FILE *f = fopen(TMP("multi.gz"), "wb");
    fclose(f);
    write_gz(TMP("multi.gz"), lab, 5000, "ab9");
    write_gz(TMP("multi.gz"), lab + 5000, nl - 5000, "ab9");
    md_mnist mm = {0};
    s = md_mnist_load(TMP("raw-images.gz"), TMP("multi.gz"), &mm);
    CHECK(s == MD_OK && mm.n == 10000 && !memcmp(mm.labels, te.labels, 10000), "two concatenated gzip members load");
    md_mnist_free(&mm);

    /* Damaged copies of the real files. */
    size_t gzn = 0;
    uint8_t *gz = read_bytes(DATA("mnist/t10k-images-idx3-ubyte.gz"), &gzn);
    md_mnist bad = {0};
    struct {
        const char *name;
        size_t keep;
    } cuts[] = {{"cut-half.gz", gzn / 2}, {"cut-trailer.gz", gzn - 3}, {"cut-header.gz", 10}};
    for (int i = 0; i < 3; i++) {
        write_bytes(TMP(cuts[i].name), gz, cuts[i].keep);
        s = md_mnist_load(TMP(cuts[i].name), DATA("mnist/t10k-labels-idx1-ubyte.gz"), &bad);
        CHECK(s == MD_ERR_FORMAT && bad.images == NULL && names(cuts[i].name), "truncated gzip (%s) is refused: %s",
              cuts[i].name, md_last_error());
    }
    /* Bytes after the gzip stream. */
    uint8_t *gz2 = malloc(gzn + 7);
    memcpy(gz2, gz, gzn);
    memcpy(gz2 + gzn, "garbage", 7);
    write_bytes(TMP("after-gz.gz"), gz2, gzn + 7);
    s = md_mnist_load(TMP("after-gz.gz"), DATA("mnist/t10k-labels-idx1-ubyte.gz"), &bad);
    CHECK(s == MD_ERR_FORMAT && names("after-gz.gz"), "garbage after the gzip stream is refused: %s", md_last_error());
    /* A flipped byte inside the compressed data (CRC or inflate error). */
    memcpy(gz2, gz, gzn);
    gz2[gzn / 2] ^= 0x55;
    write_bytes(TMP("flip.gz"), gz2, gzn);
    s = md_mnist_load(TMP("flip.gz"), DATA("mnist/t10k-labels-idx1-ubyte.gz"), &bad);
    CHECK(s == MD_ERR_FORMAT && names("flip.gz"), "corrupt gzip data is refused: %s", md_last_error());
    free(gz2);
    free(gz);
    /* Raw labels with one byte more, and one byte less. */
    write_bytes(TMP("lab-long"), lab, nl);
    FILE *fa = fopen(TMP("lab-long"), "ab");
    fputc(3, fa);
    fclose(fa);
    s = md_mnist_load(TMP("raw-images.gz"), TMP("lab-long"), &bad);
    CHECK(s == MD_ERR_FORMAT && names("lab-long") && names("trailing"), "raw trailing byte is refused: %s",
          md_last_error());
    write_bytes(TMP("lab-short"), lab, nl - 1);
    s = md_mnist_load(TMP("raw-images.gz"), TMP("lab-short"), &bad);
    CHECK(s == MD_ERR_FORMAT && names("lab-short") && names("truncated"), "raw truncated labels are refused: %s",
          md_last_error());
    /* Label 10 at index 1234, in a gzip file. */
    lab[8 + 1234] = 10;   /* past the 8-byte header */
    write_gz(TMP("lab10.gz"), lab, nl, "wb6");
    s = md_mnist_load(TMP("raw-images.gz"), TMP("lab10.gz"), &bad);
    CHECK(s == MD_ERR_FORMAT && names("lab10.gz") && names("1234"), "label 10 is refused: %s", md_last_error());
    /* Images and labels swapped. */
    s = md_mnist_load(DATA("mnist/t10k-labels-idx1-ubyte.gz"), DATA("mnist/t10k-images-idx3-ubyte.gz"), &bad);
    CHECK(s == MD_ERR_FORMAT && names("t10k-labels-idx1-ubyte.gz"), "a label file as images is refused: %s",
          md_last_error());
    /* Train images with test labels. */
    s = md_mnist_load(DATA("mnist/train-images-idx3-ubyte.gz"), DATA("mnist/t10k-labels-idx1-ubyte.gz"), &bad);
    CHECK(s == MD_ERR_FORMAT && names("train-images") && names("t10k-labels"), "60000 images with 10000 labels is refused: %s",
          md_last_error());
    CHECK(bad.n == 0 && bad.images == NULL && bad.labels == NULL, "failed loads leave the struct zeroed");
    free(ref);
    free(lab);
    md_mnist_free(&tr);
    md_mnist_free(&te);
}

static void test_mnist_synthetic(void)
{
    md_mnist m = {0};
    md_status s;
    /* A valid pair of 3 to start from, gzip and raw. */
    write_idx(TMP("s-img.gz"), 2051, 3, 28, 28, 3 * 784, 0, 7, true);
    write_idx(TMP("s-lab"), 2049, 3, 0, 0, 3, 0, 9, false);
    s = md_mnist_load(TMP("s-img.gz"), TMP("s-lab"), &m);
    CHECK(s == MD_OK && m.n == 3 && m.images[3 * 784 - 1] == 7 && m.labels[2] == 9, "3-image synthetic pair loads");
    md_mnist_free(&m);

    struct {
        const char *name;
        uint32_t magic, count, rows, cols, ndata;
        int extra;
        bool gz, as_images;
        const char *why;
    } cases[] = {
        {"badmagic", 2052, 3, 28, 28, 3 * 784, 0, false, true, "magic"},
        {"badmagic-lab.gz", 2050, 3, 0, 0, 3, 0, true, false, "magic"},
        {"dims", 2051, 3, 27, 28, 3 * 784, 0, false, true, "28 x 28"},
        {"trail.gz", 2051, 3, 28, 28, 3 * 784, 1, true, true, "trailing"},
        {"trail-raw", 2051, 3, 28, 28, 3 * 784, 5, false, true, "trailing"},
        {"short.gz", 2051, 3, 28, 28, 2 * 784 + 100, 0, true, true, "truncated"},
        {"short-raw", 2051, 3, 28, 28, 3 * 784 - 1, 0, false, true, "truncated"},
        {"huge.gz", 2051, 9000000, 28, 28, 784, 0, true, true, "truncated"},       /* 7 GB promised by ~1 KB */
        {"toomany", 2051, 20000000, 28, 28, 784, 0, false, true, "items"},
        {"zero", 2051, 0, 28, 28, 0, 0, false, true, "items"},
        {"neg.gz", 2049, 0xffffffffu, 0, 0, 3, 0, true, false, "items"},
        {"count4", 2049, 4, 0, 0, 4, 0, false, false, "4 labels"},   /* 3 images, 4 labels */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_idx(TMP(cases[i].name), cases[i].magic, cases[i].count, cases[i].rows, cases[i].cols, cases[i].ndata,
                  cases[i].extra, 1, cases[i].gz);
        double t0 = md_time_now();
        s = cases[i].as_images ? md_mnist_load(TMP(cases[i].name), TMP("s-lab"), &m)
                               : md_mnist_load(TMP("s-img.gz"), TMP(cases[i].name), &m);
        CHECK(s == MD_ERR_FORMAT && m.n == 0 && m.images == NULL && names(cases[i].name) && names(cases[i].why) &&
                  md_time_now() - t0 < 1.0,
              "IDX %-16s refused: %s", cases[i].name, md_last_error());
    }
    /* Missing, empty, a folder. */
    s = md_mnist_load(TMP("no-such-file.gz"), TMP("s-lab"), &m);
    CHECK(s == MD_ERR_IO && names("no-such-file.gz"), "missing image file: %s", md_last_error());
    s = md_mnist_load(TMP("s-img.gz"), TMP("no-such-labels"), &m);
    CHECK(s == MD_ERR_IO && names("no-such-labels") && m.images == NULL, "missing label file: %s", md_last_error());
    write_bytes(TMP("empty"), "", 0);
    s = md_mnist_load(TMP("empty"), TMP("s-lab"), &m);
    CHECK(s == MD_ERR_FORMAT && names("empty"), "empty file: %s", md_last_error());
    s = md_mnist_load(g_tmp, TMP("s-lab"), &m);
    CHECK(s == MD_ERR_IO && names(g_tmp), "a folder as the image file: %s", md_last_error());
}

/* ------------------------------------------------------------ FSDD */

/* 16-bit mono PCM samples of a WAV, from its "data" chunk, as k / 32768. */
static float *wav_direct(const char *path, int64_t *n)
{
    size_t len = 0;
    uint8_t *b = read_bytes(path, &len);
    float *out = NULL;
    *n = 0;
    for (size_t p = 12; b && p + 8 <= len;) {
        uint32_t sz = (uint32_t)b[p + 4] | (uint32_t)b[p + 5] << 8 | (uint32_t)b[p + 6] << 16 | (uint32_t)b[p + 7] << 24;
        if (!memcmp(b + p, "data", 4)) {
            *n = MD_MIN(sz, len - p - 8) / 2;
            out = malloc((size_t)*n * sizeof *out);
            for (int64_t i = 0; i < *n; i++)
                out[i] = (float)(int16_t)(b[p + 8 + 2 * i] | b[p + 9 + 2 * i] << 8) / 32768.0f;
            break;
        }
        p += 8 + sz + (sz & 1);
    }
    free(b);
    return out;
}

static void test_fsdd_real(void)
{
    char dir[2048];
    snprintf(dir, sizeof dir, "%s", DATA("fsdd/recordings"));
    md_fsdd f = {0};
    double t0 = md_time_now();
    md_status s = md_fsdd_load(dir, 8000, &f);
    double dt = md_time_now() - t0;
    CHECK(s == MD_OK && f.n == 3000 && f.rate == 8000, "FSDD: 3000 clips at 8000 Hz (got %d, %.2f s) %s", f.n, dt,
          s ? md_last_error() : "");
    if (s != MD_OK)
        return;
    bool sorted = true, packed = true;
    int64_t total = 0;
    int per_digit[10] = {0}, per_speaker[MD_FSDD_SPEAKERS] = {0};
    for (int i = 0; i < f.n; i++) {
        const md_fsdd_clip *c = &f.clips[i];
        if (i) {
            const md_fsdd_clip *p = &f.clips[i - 1];
            sorted &= p->digit < c->digit || (p->digit == c->digit && (p->speaker < c->speaker ||
                                                                        (p->speaker == c->speaker && p->take < c->take)));
        }
        packed &= c->samples == f.pool + total && c->n > 0 && c->n <= 10 * 8000;
        total += c->n;
        per_digit[c->digit]++;
        per_speaker[c->speaker]++;
    }
    CHECK(sorted, "FSDD clips sorted by (digit, speaker, take), each once");
    CHECK(packed, "FSDD clips lie end to end in the pool, 1 to 80000 samples each");
    bool even = true;
    for (int i = 0; i < 10; i++)
        even &= per_digit[i] == 300;
    for (int i = 0; i < MD_FSDD_SPEAKERS; i++)
        even &= per_speaker[i] == 500;
    CHECK(even, "FSDD: 300 clips per digit, 500 per speaker");
    CHECK(total > 1300 * 8000 && total < 1325 * 8000, "FSDD total about 1312 s (%.1f s)", (double)total / 8000);

    CHECK(md_fsdd_speaker_index("jackson") == 1 && md_fsdd_speaker_index("yweweler") == 5 &&
              md_fsdd_speaker_index("alice") == -1 && md_fsdd_speaker_index(NULL) == -1 &&
              !strcmp(md_fsdd_speaker_names[0], "george"),
          "speaker names and indices");
    int k = md_fsdd_find(&f, 7, 1, 32);
    CHECK(k >= 0 && f.clips[k].digit == 7 && f.clips[k].speaker == 1 && f.clips[k].take == 32, "find 7_jackson_32 (%d)", k);
    CHECK(md_fsdd_find(&f, 10, 0, 0) == -1 && md_fsdd_find(&f, 0, 6, 0) == -1 && md_fsdd_find(&f, 0, 0, 50) == -1 &&
              md_fsdd_find(&f, -1, 0, 0) == -1 && md_fsdd_find(NULL, 0, 0, 0) == -1,
          "find out of range gives -1");
    /* A hand-made subset goes through the search path. */
    md_fsdd sub = {.n = 3, .rate = 8000, .clips = (md_fsdd_clip[3]){f.clips[5], f.clips[700], f.clips[2999]}};
    CHECK(md_fsdd_find(&sub, f.clips[700].digit, f.clips[700].speaker, f.clips[700].take) == 1 &&
              md_fsdd_find(&sub, 9, 5, 49) == 2 && md_fsdd_find(&sub, 0, 0, 0) == -1,
          "find in a subset");

    const char *probe[] = {"7_jackson_32.wav", "0_george_0.wav", "9_yweweler_49.wav", "4_nicolas_17.wav"};
    for (int i = 0; i < 4; i++) {
        int d = probe[i][0] - '0', sp = -1, t = atoi(strrchr(probe[i], '_') + 1);
        for (int j = 0; j < MD_FSDD_SPEAKERS; j++)
            if (!strncmp(probe[i] + 2, md_fsdd_speaker_names[j], strlen(md_fsdd_speaker_names[j])))
                sp = j;
        int64_t n = 0;
        float *ref = wav_direct(P(dir, probe[i]), &n);
        int c = md_fsdd_find(&f, d, sp, t);
        bool same = ref && c >= 0 && f.clips[c].n == n;
        for (int64_t j = 0; same && j < n; j++)
            same = f.clips[c].samples[j] == ref[j];
        CHECK(same, "%s samples equal its PCM data (%lld samples)", probe[i], (long long)n);
        free(ref);
    }

    /* Resampled to 16 kHz: twice the samples, same shape. */
    md_fsdd f16 = {0};
    t0 = md_time_now();
    s = md_fsdd_load(dir, 16000, &f16);
    dt = md_time_now() - t0;
    bool twice = s == MD_OK && f16.n == 3000 && f16.rate == 16000;
    for (int i = 0; twice && i < 3000; i++)
        twice = f16.clips[i].n == 2 * f.clips[i].n;
    CHECK(twice, "FSDD at 16000 Hz: every clip exactly twice as long (%.2f s)", dt);
    double e = 0, e16 = 0;
    for (int64_t j = 0; twice && j < f.clips[k].n; j++) {
        e += (double)f.clips[k].samples[j] * f.clips[k].samples[j];
        e16 += (double)f16.clips[k].samples[2 * j] * f16.clips[k].samples[2 * j];
    }
    CHECK(twice && fabs(e16 / e - 1.0) < 0.05, "resampled clip keeps its energy (ratio %.3f)", e / (e16 + 1e-30));
    md_fsdd_free(&f16);
    md_fsdd_free(&f);
    CHECK(f.n == 0 && f.clips == NULL && f.pool == NULL, "md_fsdd_free leaves the struct zeroed");
    s = md_fsdd_load(dir, 0, &f);
    CHECK(s == MD_ERR_INVALID && f.clips == NULL, "rate 0 refused: %s", md_last_error());
}

static void test_fsdd_damaged(void)
{
    char src[2048], d[2048];
    snprintf(src, sizeof src, "%s", DATA("fsdd/recordings"));
    snprintf(d, sizeof d, "%s", TMP("fsdd"));
    mkdir(d, 0755);
    /* Symlinks to the real 3000, plus things that are not clips. */
    for (int dg = 0; dg < 10; dg++)
        for (int sp = 0; sp < MD_FSDD_SPEAKERS; sp++)
            for (int t = 0; t < MD_FSDD_TAKES; t++) {
                char name[64];
                snprintf(name, sizeof name, "%d_%s_%d.wav", dg, md_fsdd_speaker_names[sp], t);
                char target[2048];
                snprintf(target, sizeof target, "%s", P(src, name));
                symlink(target, P(d, name));
            }
    write_bytes(P(d, "README.txt"), "not audio", 9);
    write_bytes(P(d, "1_george_3.wav.bak"), "x", 1);
    mkdir(P(d, "sub"), 0755);
    md_fsdd f = {0};
    md_status s = md_fsdd_load(d, 8000, &f);
    CHECK(s == MD_OK && f.n == 3000, "symlinked copy with extra non-.wav files loads: %s", s ? md_last_error() : "");
    md_fsdd_free(&f);

    /* One missing. */
    rename(P(d, "3_lucas_17.wav"), P(d, "3_lucas_17.hidden"));
    s = md_fsdd_load(d, 8000, &f);
    CHECK(s == MD_ERR_FORMAT && f.n == 0 && f.clips == NULL && names("3_lucas_17.wav"), "missing clip named: %s",
          md_last_error());
    rename(P(d, "3_lucas_17.hidden"), P(d, "3_lucas_17.wav"));

    /* Garbage bytes in place of one clip. */
    rename(P(d, "5_theo_20.wav"), P(d, "5_theo_20.keep"));
    write_bytes(P(d, "5_theo_20.wav"), "RIFF\x10\0\0\0WAVEjunkjunkjunkjunk", 24);
    s = md_fsdd_load(d, 8000, &f);
    CHECK(s != MD_OK && f.n == 0 && f.clips == NULL && names("5_theo_20.wav"), "garbage clip named: %s", md_last_error());
    /* Two bad ones: the first in (digit, speaker, take) order wins, every time. */
    rename(P(d, "1_george_3.wav"), P(d, "1_george_3.keep"));
    write_bytes(P(d, "1_george_3.wav"), "\x89PNG\r\n\x1a\n", 8);
    bool same = true;
    for (int r = 0; r < 3; r++) {
        s = md_fsdd_load(d, 8000, &f);
        same &= s != MD_OK && names("1_george_3.wav");
    }
    CHECK(same, "two bad clips: the first is always the one named: %s", md_last_error());
    remove(P(d, "1_george_3.wav"));
    rename(P(d, "1_george_3.keep"), P(d, "1_george_3.wav"));
    remove(P(d, "5_theo_20.wav"));
    /* A real clip cut short: libsndfile alone would load the first part. */
    size_t wn = 0;
    uint8_t *wb = read_bytes(P(src, "5_theo_20.wav"), &wn);
    write_bytes(P(d, "5_theo_20.wav"), wb, wn / 2);
    free(wb);
    s = md_fsdd_load(d, 8000, &f);
    CHECK(s == MD_ERR_FORMAT && names("5_theo_20.wav") && names("truncated"), "truncated clip named: %s",
          md_last_error());
    remove(P(d, "5_theo_20.wav"));
    /* Empty WAV (header only). */
    static const uint8_t hdr[44] = {'R', 'I', 'F', 'F', 36, 0, 0, 0, 'W', 'A', 'V', 'E', 'f', 'm', 't', ' ', 16, 0, 0,
                                    0, 1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x80, 0x3e, 0, 0, 2, 0, 16, 0, 'd', 'a', 't', 'a',
                                    0, 0, 0, 0};
    write_bytes(P(d, "5_theo_20.wav"), hdr, sizeof hdr);
    s = md_fsdd_load(d, 8000, &f);
    CHECK(s != MD_OK && names("5_theo_20.wav"), "empty clip named: %s", md_last_error());
    remove(P(d, "5_theo_20.wav"));
    rename(P(d, "5_theo_20.keep"), P(d, "5_theo_20.wav"));

    /* Names that are .wav but not clips. */
    const char *bad[] = {"0_alice_0.wav", "0_george_00.wav", "0_george_50.wav", "x_george_1.wav", "george.wav",
                         "0_george_1.WAV", "12_george_1.wav"};
    const char *why[] = {"unknown speaker", "take", "take", "not {digit}", "not {digit}", "same clip", "not {digit}"};
    for (int i = 0; i < 7; i++) {
        symlink(P(src, "0_george_1.wav"), P(d, bad[i]));
        s = md_fsdd_load(d, 8000, &f);
        CHECK(s == MD_ERR_FORMAT && f.clips == NULL && names(bad[i]) && names(why[i]), "%s refused: %s", bad[i],
              md_last_error());
        remove(P(d, bad[i]));
    }
    s = md_fsdd_load(TMP("no-such-folder"), 8000, &f);
    CHECK(s == MD_ERR_IO && names("no-such-folder"), "missing folder: %s", md_last_error());
}

/* ------------------------------------------------------------ Sign digits */

static const int sign_counts[10] = {205, 206, 206, 206, 207, 207, 207, 206, 208, 204};

/* The loader's pipeline written out for a square photo: load, resize, round. */
static bool sign_reference(const char *path, int size, uint8_t *out)
{
    md_image im = {0}, r = {0};
    if (md_image_load(path, NULL, &im, NULL) != MD_OK || im.channels != 3 || im.width != im.height)
        return false;
    bool ok = md_image_resize(&im, size, size, &r) == MD_OK;
    for (int i = 0; ok && i < size * size * 3; i++)
        out[i] = (uint8_t)lrintf(fminf(fmaxf(r.pixels[i], 0.0f), 1.0f) * 255.0f);
    md_image_free(&im);
    md_image_free(&r);
    return ok;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_sign_real(void)
{
    char dir[2048];
    snprintf(dir, sizeof dir, "%s", DATA("sign-digits/images"));
    md_sign sg = {0};
    double t0 = md_time_now();
    md_status s = md_sign_load(dir, 64, &sg);
    double dt = md_time_now() - t0;
    CHECK(s == MD_OK && sg.n == 2062 && sg.size == 64, "Sign: 2062 photos at 64 x 64 (got %d, %.2f s) %s", sg.n, dt,
          s ? md_last_error() : "");
    if (s != MD_OK)
        return;
    int cnt[10] = {0};
    bool order = true;
    for (int i = 0; i < sg.n; i++) {
        order &= sg.labels[i] <= 9 && sg.rank[i] == cnt[sg.labels[i]] && (i == 0 || sg.labels[i] >= sg.labels[i - 1]);
        cnt[sg.labels[i] % 10]++;
    }
    CHECK(!memcmp(cnt, sign_counts, sizeof cnt), "Sign per-digit counts match the README");
    CHECK(order, "Sign sorted by digit, rank counting 0.. within each");
    double mean = 0;
    for (size_t i = 0; i < (size_t)sg.n * 64 * 64 * 3; i++)
        mean += sg.images[i];
    mean /= (double)sg.n * 64 * 64 * 3;
    CHECK(mean > 40 && mean < 220, "Sign pixels carry pictures (mean %.1f)", mean);

    /* Rank k of digit 3 is the k-th name in strcmp order, and its pixels
     * equal the pipeline written out. */
    char **nm = NULL;
    int nn = 0, cap = 0;
    char sub[2048];
    snprintf(sub, sizeof sub, "%s", P(dir, "3"));
    FILE *ls = NULL;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls -1 '%s'", sub);
    ls = popen(cmd, "r");
    char line[512];
    while (ls && fgets(line, sizeof line, ls)) {
        line[strcspn(line, "\n")] = 0;
        if (nn == cap)
            nm = realloc(nm, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *nm);
        nm[nn++] = strdup(line);
    }
    if (ls)
        pclose(ls);
    qsort(nm, (size_t)nn, sizeof *nm, cmp_str);
    int base = sign_counts[0] + sign_counts[1] + sign_counts[2];
    for (int k = 0; k < nn; k += 57) {
        uint8_t ref[64 * 64 * 3];
        bool ok = sign_reference(P(sub, nm[k]), 64, ref);
        int maxd = 0;
        for (int i = 0; ok && i < 64 * 64 * 3; i++)
            maxd = MD_MAX(maxd, abs((int)ref[i] - sg.images[(size_t)(base + k) * 64 * 64 * 3 + (size_t)i]));
        CHECK(ok && sg.labels[base + k] == 3 && sg.rank[base + k] == k && maxd <= 1,
              "sign 3/%s is rank %d and matches load+resize (max diff %d)", nm[k], k, maxd);
    }
    for (int i = 0; i < nn; i++)
        free(nm[i]);
    free(nm);
    md_sign_free(&sg);
    CHECK(sg.n == 0 && sg.images == NULL && sg.labels == NULL && sg.rank == NULL, "md_sign_free leaves the struct zeroed");
    s = md_sign_load(dir, 0, &sg);
    CHECK(s == MD_ERR_INVALID && sg.images == NULL, "size 0 refused: %s", md_last_error());
}

static void test_sign_damaged(void)
{
    char src[2048], d[2048];
    snprintf(src, sizeof src, "%s", DATA("sign-digits/images"));
    snprintf(d, sizeof d, "%s", TMP("sign"));
    mkdir(d, 0755);
    /* Two real photos per digit (the first two listed), symlinked. */
    for (int dg = 0; dg < 10; dg++) {
        char dn[2] = {(char)('0' + dg), 0}, sd[2048], cmd[4200], line[512];
        snprintf(sd, sizeof sd, "%s", P(d, dn));
        mkdir(sd, 0755);
        snprintf(cmd, sizeof cmd, "ls -1 '%s/%d' | sort | head -2", src, dg);
        FILE *ls = popen(cmd, "r");
        while (ls && fgets(line, sizeof line, ls)) {
            line[strcspn(line, "\n")] = 0;
            char target[4200];
            snprintf(target, sizeof target, "%s/%d/%s", src, dg, line);
            symlink(target, P(sd, line));
        }
        if (ls)
            pclose(ls);
    }
    /* Digit 0 also gets a wide photo, lower-case ".jpeg": red | green | blue
     * thirds; the centre crop keeps only green. And a file to ignore. */
    md_image wide = {0};
    md_image_alloc(&wide, 48, 16, 3);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 48; x++)
            for (int c = 0; c < 3; c++)
                wide.pixels[(y * 48 + x) * 3 + c] = c == x / 16 ? 1.0f : 0.0f;
    char wp[2048];
    snprintf(wp, sizeof wp, "%s", TMP("sign/0/zz_wide.jpeg"));
    CHECK(md_image_save_jpeg(wp, &wide, 100) == MD_OK, "wrote a 48 x 16 test photo");
    md_image_free(&wide);
    write_bytes(TMP("sign/0/notes.txt"), "x", 1);

    md_sign sg = {0};
    md_status s = md_sign_load(d, 8, &sg);
    CHECK(s == MD_OK && sg.n == 21 && sg.labels[2] == 0 && sg.rank[2] == 2 && sg.labels[3] == 1 && sg.rank[3] == 0,
          "small copy: 21 photos, wide .jpeg last in digit 0: %s", s ? md_last_error() : "");
    if (s == MD_OK) {
        const uint8_t *g = sg.images + 2 * 8 * 8 * 3;
        bool green = true;
        for (int i = 0; i < 8 * 8; i++)
            green &= g[3 * i] < 40 && g[3 * i + 1] > 215 && g[3 * i + 2] < 40;
        CHECK(green, "non-square photo is centre-cropped (only the green third is left)");
    }
    md_sign_free(&sg);

    /* A corrupt photo: garbage, then a truncated real JPEG. */
    write_bytes(TMP("sign/4/bad.jpg"), "\xff\xd8\xff\xe0 this is not a jpeg at all", 29);
    s = md_sign_load(d, 8, &sg);
    CHECK(s != MD_OK && sg.images == NULL && names("bad.jpg"), "garbage photo named: %s", md_last_error());
    remove(TMP("sign/4/bad.jpg"));
    size_t n = 0;
    char first[512], cmd[4200];
    snprintf(cmd, sizeof cmd, "ls -1 '%s/7' | sort | head -1", src);
    FILE *ls = popen(cmd, "r");
    if (!ls || !fgets(first, sizeof first, ls))
        first[0] = 0;
    if (ls)
        pclose(ls);
    first[strcspn(first, "\n")] = 0;
    char full[4200];
    snprintf(full, sizeof full, "%s/7/%s", src, first);
    uint8_t *jb = read_bytes(full, &n);
    write_bytes(TMP("sign/7/cut.JPG"), jb, n / 3);
    free(jb);
    s = md_sign_load(d, 8, &sg);
    CHECK(s != MD_OK && sg.images == NULL && names("cut.JPG"), "truncated photo named: %s", md_last_error());
    remove(TMP("sign/7/cut.JPG"));

    /* A digit folder with no photos, then none at all. */
    char keep[2048];
    snprintf(keep, sizeof keep, "%s", TMP("sign-keep9"));
    rename(TMP("sign/9"), keep);
    mkdir(TMP("sign/9"), 0755);
    write_bytes(TMP("sign/9/readme.md"), "x", 1);
    s = md_sign_load(d, 8, &sg);
    CHECK(s == MD_ERR_FORMAT && sg.images == NULL && names("sign/9"), "digit folder without photos named: %s",
          md_last_error());
    rm_tree(TMP("sign/9"));
    s = md_sign_load(d, 8, &sg);
    CHECK(s == MD_ERR_IO && sg.images == NULL && names("sign/9"), "missing digit folder named: %s", md_last_error());
    rename(keep, TMP("sign/9"));
    s = md_sign_load(d, 8, &sg);
    CHECK(s == MD_OK && sg.n == 21, "restored copy loads again");
    md_sign_free(&sg);
}

int main(void)
{
    const char *data = getenv("MEDLEY_DATA_DIR");
    if (!data || !*data) {
        printf("skip: MEDLEY_DATA_DIR is not set (the folder holding mnist/, fsdd/, sign-digits/)\n");
        return 77;
    }
    snprintf(g_data, sizeof g_data, "%s", data);
    const char *t = getenv("MEDLEY_TEST_TMP");
    snprintf(g_tmp, sizeof g_tmp, "%s/medley-datasets-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_tmp)) {
        printf("FAIL cannot create a folder under %s (%s)\n", t && *t ? t : "/tmp", strerror(errno));
        return 1;
    }
    if (!getenv("MEDLEY_TEST_VERBOSE"))
        md_log_set_callback(quiet, NULL);   /* md_last_error still records errors */
    test_mnist_real();
    test_mnist_synthetic();
    test_fsdd_real();
    test_fsdd_damaged();
    test_sign_real();
    test_sign_damaged();
    rm_tree(g_tmp);
    return check_done();
}
