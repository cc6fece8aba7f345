/* safetensors.c — validated safetensors reader (mmap) and atomic writer.
 *
 * A reader keeps the parsed header document alive: tensor names and metadata
 * strings point into its pool, so an open file is the mapping, the document
 * and three small arrays. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "safetensors.h"

#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian; big-endian hosts need byte swapping here");

struct md_st_file {
    char *label;                   /* path or caller's label, for messages */
    const unsigned char *base;     /* whole file */
    size_t size;
    bool mapped;                   /* base came from mmap (else borrowed) */
    md_json_doc *doc;              /* header; owns names and metadata strings */
    int n;
    md_st_info *infos;             /* n, header order */
    int *by_name;                  /* n indices into infos, sorted by name */
    int nmeta;
    const char **meta_keys;        /* nmeta each, header order */
    const char **meta_vals;
};

/* ---- messages ------------------------------------------------------------ */

/* Names come from files: print at most ~100 bytes, control bytes as '?'. */
static const char *pname(char *out, size_t outsz, const char *s)
{
    size_t n = strlen(s), max = outsz - 4, o = 0;
    for (size_t k = 0; k < n && o < max; k++)
        out[o++] = ((unsigned char)s[k] < 0x20 || s[k] == 0x7f) ? '?' : s[k];
    if (n > max)
        out[o++] = '.', out[o++] = '.', out[o++] = '.';
    out[o] = 0;
    return out;
}

static const char *shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
    return buf;
}

static md_status err(md_status s, const char *label, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static md_status err(md_status s, const char *label, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    md_log(MD_LOG_ERROR, "%s: %s", label, msg);
    return s;
}

/* "label: tensor "name": ..." */
static md_status terr(const char *label, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static md_status terr(const char *label, const char *name, const char *fmt, ...)
{
    char msg[640], nb[112];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    md_log(MD_LOG_ERROR, "%s: tensor \"%s\": %s", label, pname(nb, sizeof nb, name), msg);
    return MD_ERR_FORMAT;
}

/* ---- reading --------------------------------------------------------------- */

static void file_free(md_st_file *f)
{
    if (!f)
        return;
    if (f->mapped && f->base)
        munmap((void *)f->base, f->size);
    md_json_free(f->doc);
    free(f->infos);
    free(f->by_name);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->label);
    free(f);
}

void md_st_close(md_st_file *f) { file_free(f); }

static bool is_metadata_key(const md_json *hdr, size_t i)
{
    return md_json_key_len_at(hdr, i) == 12 && memcmp(md_json_key_at(hdr, i), "__metadata__", 12) == 0;
}

static md_status parse_metadata(md_st_file *f, const md_json *m)
{
    if (md_json_type_of(m) != MD_JSON_OBJECT)
        return err(MD_ERR_FORMAT, f->label, "__metadata__ is %s, not an object of strings",
                   md_json_type_name(md_json_type_of(m)));
    size_t n = md_json_len(m);
    f->meta_keys = malloc((n ? n : 1) * sizeof *f->meta_keys);
    f->meta_vals = malloc((n ? n : 1) * sizeof *f->meta_vals);
    if (!f->meta_keys || !f->meta_vals)
        return err(MD_ERR_ALLOC, f->label, "out of memory reading metadata");
    for (size_t i = 0; i < n; i++) {
        const md_json *v = md_json_at(m, i);
        const char *key = md_json_key_at(m, i);
        char kb[112];
        if (md_json_type_of(v) != MD_JSON_STRING)
            return err(MD_ERR_FORMAT, f->label, "__metadata__ value for \"%s\" is %s, not a string",
                       pname(kb, sizeof kb, key), md_json_type_name(md_json_type_of(v)));
        f->meta_keys[i] = key;
        f->meta_vals[i] = md_json_str(v);
    }
    f->nmeta = (int)n;
    return MD_OK;
}

/* Fills one md_st_info from its header entry; data_size bounds the offsets. */
static md_status parse_entry(const md_st_file *f, const char *name, const md_json *e,
                             const unsigned char *data, size_t data_size, md_st_info *info,
                             uint64_t *begin_out)
{
    const char *L = f->label;
    char sb[160];
    if (md_json_type_of(e) != MD_JSON_OBJECT)
        return terr(L, name, "entry is %s, not an object", md_json_type_name(md_json_type_of(e)));
    const md_json *dt = md_json_get(e, "dtype");
    const md_json *sh = md_json_get(e, "shape");
    const md_json *off = md_json_get(e, "data_offsets");
    if (!dt)
        return terr(L, name, "missing \"dtype\"");
    if (!sh)
        return terr(L, name, "missing \"shape\"");
    if (!off)
        return terr(L, name, "missing \"data_offsets\"");

    if (md_json_type_of(dt) != MD_JSON_STRING)
        return terr(L, name, "\"dtype\" is %s, not a string", md_json_type_name(md_json_type_of(dt)));
    int dtype = md_dtype_from_name(md_json_str(dt));
    if (dtype < 0) {
        char db[40];
        return terr(L, name, "unsupported dtype \"%s\" (Medley reads F32, F16, BF16, I32, I64, U8)",
                    pname(db, sizeof db, md_json_str(dt)));
    }

    if (md_json_type_of(sh) != MD_JSON_ARRAY)
        return terr(L, name, "\"shape\" is %s, not an array", md_json_type_name(md_json_type_of(sh)));
    size_t nd = md_json_len(sh);
    if (nd > MD_MAX_DIMS)
        return terr(L, name, "shape has %zu dims; Medley supports at most %d", nd, MD_MAX_DIMS);
    info->ndim = (int)nd;
    int64_t numel = 1;
    for (int d = 0; d < MD_MAX_DIMS; d++)
        info->shape[d] = 1;
    for (size_t d = 0; d < nd; d++) {
        int64_t v;
        if (!md_json_int(md_json_at(sh, d), &v) || v < 0)
            return terr(L, name, "shape[%zu] is not a non-negative integer", d);
        info->shape[d] = v;
        if (__builtin_mul_overflow(numel, v, &numel))
            return terr(L, name, "shape %s has more elements than fit in 64 bits",
                        shape_str(sb, sizeof sb, (int)d + 1, info->shape));
    }
    info->dtype = (md_dtype)dtype;
    uint64_t nbytes;
    if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)md_dtype_size(info->dtype), &nbytes))
        return terr(L, name, "shape %s of %s is more bytes than fit in 64 bits",
                    shape_str(sb, sizeof sb, info->ndim, info->shape), md_dtype_name(info->dtype));

    if (md_json_type_of(off) != MD_JSON_ARRAY || md_json_len(off) != 2)
        return terr(L, name, "\"data_offsets\" must be an array [begin, end], found %s%s",
                    md_json_type_name(md_json_type_of(off)),
                    md_json_type_of(off) == MD_JSON_ARRAY ? " of another length" : "");
    int64_t b, en;
    if (!md_json_int(md_json_at(off, 0), &b) || !md_json_int(md_json_at(off, 1), &en) || b < 0 || en < 0)
        return terr(L, name, "data_offsets must be non-negative integers");
    if (b > en)
        return terr(L, name, "data_offsets [%lld, %lld] begin after they end", (long long)b, (long long)en);
    if ((uint64_t)(en - b) != nbytes)
        return terr(L, name, "data_offsets [%lld, %lld] hold %lld bytes but shape %s of %s needs %llu",
                    (long long)b, (long long)en, (long long)(en - b),
                    shape_str(sb, sizeof sb, info->ndim, info->shape), md_dtype_name(info->dtype),
                    (unsigned long long)nbytes);
    if ((uint64_t)en > data_size)
        return terr(L, name, "data_offsets [%lld, %lld] run past the end of the data region (%zu bytes)",
                    (long long)b, (long long)en, data_size);
    info->name = name;
    info->data = data + b;
    info->nbytes = (size_t)nbytes;
    *begin_out = (uint64_t)b;
    return MD_OK;
}

typedef struct span { uint64_t begin, end; int idx; } span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static int name_cmp_r(const void *a, const void *b, void *ctx)
{
    const md_st_file *f = ctx;
    return strcmp(f->infos[*(const int *)a].name, f->infos[*(const int *)b].name);
}

static md_status validate(md_st_file *f)
{
    const char *L = f->label;
    if (f->size < 8)
        return err(MD_ERR_FORMAT, L, "file is %zu bytes, too short for the 8-byte header length "
                   "that starts a safetensors file", f->size);
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--)
        hlen = (hlen << 8) | f->base[k];
    if (hlen == 0)
        return err(MD_ERR_FORMAT, L, "header length is 0; even an empty header is \"{}\"");
    if (hlen > MD_ST_MAX_HEADER)
        return err(MD_ERR_FORMAT, L, "header length %llu exceeds the limit of %llu bytes "
                   "(not a safetensors file?)", (unsigned long long)hlen,
                   (unsigned long long)MD_ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return err(MD_ERR_FORMAT, L, "header length %llu runs past the end of the file "
                   "(%zu bytes follow the length; truncated?)", (unsigned long long)hlen, f->size - 8);

    char jl[600];
    snprintf(jl, sizeof jl, "%s: header", L);
    md_status s = md_json_parse((const char *)f->base + 8, (size_t)hlen, jl, &f->doc);
    if (s != MD_OK)
        return s;
    const md_json *hdr = md_json_root(f->doc);
    if (md_json_type_of(hdr) != MD_JSON_OBJECT)
        return err(MD_ERR_FORMAT, L, "header is %s, not an object",
                   md_json_type_name(md_json_type_of(hdr)));

    const unsigned char *data = f->base + 8 + hlen;
    size_t data_size = f->size - 8 - (size_t)hlen;
    size_t nmembers = md_json_len(hdr), ntensors = 0;
    for (size_t i = 0; i < nmembers; i++)
        ntensors += !is_metadata_key(hdr, i);
    if (ntensors > (size_t)INT32_MAX)
        return err(MD_ERR_FORMAT, L, "%zu tensors is more than Medley handles", ntensors);
    f->infos = calloc(ntensors ? ntensors : 1, sizeof *f->infos);
    f->by_name = malloc((ntensors ? ntensors : 1) * sizeof *f->by_name);
    span *spans = malloc((ntensors ? ntensors : 1) * sizeof *spans);
    if (!f->infos || !f->by_name || !spans) {
        free(spans);
        return err(MD_ERR_ALLOC, L, "out of memory reading the header (%zu tensors)", ntensors);
    }

    int n = 0;
    for (size_t i = 0; i < nmembers; i++) {
        const md_json *v = md_json_at(hdr, i);
        if (is_metadata_key(hdr, i)) {
            s = parse_metadata(f, v);
        } else {
            const char *name = md_json_key_at(hdr, i);
            if (strlen(name) != md_json_key_len_at(hdr, i)) {
                s = err(MD_ERR_FORMAT, L, "tensor name at header byte %zu contains a NUL character",
                        md_json_key_offset_at(hdr, i));
            } else {
                uint64_t b = 0;
                s = parse_entry(f, name, v, data, data_size, &f->infos[n], &b);
                spans[n].begin = b;
                spans[n].end = b + f->infos[n].nbytes;
                spans[n].idx = n;
                f->by_name[n] = n;
                n++;
            }
        }
        if (s != MD_OK) {
            free(spans);
            return s;
        }
    }
    f->n = n;

    /* Overlaps: after sorting by begin, each non-empty span must start at or
     * after the furthest end seen so far. Empty tensors hold no bytes. */
    qsort(spans, (size_t)n, sizeof *spans, span_cmp);
    int prev = -1;
    for (int k = 0; k < n; k++) {
        if (spans[k].begin == spans[k].end)
            continue;
        if (prev >= 0 && spans[k].begin < spans[prev].end) {
            char a[112], b[112];
            s = err(MD_ERR_FORMAT, L, "tensors \"%s\" [%llu, %llu] and \"%s\" [%llu, %llu] overlap",
                    pname(a, sizeof a, f->infos[spans[prev].idx].name),
                    (unsigned long long)spans[prev].begin, (unsigned long long)spans[prev].end,
                    pname(b, sizeof b, f->infos[spans[k].idx].name),
                    (unsigned long long)spans[k].begin, (unsigned long long)spans[k].end);
            free(spans);
            return s;
        }
        if (prev < 0 || spans[k].end > spans[prev].end)
            prev = k;
    }
    free(spans);

    /* Names are unique (the JSON parser refuses duplicate keys). */
    qsort_r(f->by_name, (size_t)n, sizeof *f->by_name, name_cmp_r, f);
    return MD_OK;
}

static md_status open_common(md_st_file *f, md_st_file **out)
{
    md_status s = validate(f);
    if (s != MD_OK) {
        file_free(f);
        return s;
    }
    *out = f;
    return MD_OK;
}

md_status md_st_open_memory(const void *buf, size_t len, const char *label, md_st_file **out)
{
    MD_ASSERT(out && (buf || len == 0));
    *out = NULL;
    if (!label)
        label = "<memory>";
    md_st_file *f = calloc(1, sizeof *f);
    char *l = strdup(label);
    if (!f || !l) {
        free(f);
        free(l);
        return err(MD_ERR_ALLOC, label, "out of memory");
    }
    f->label = l;
    f->base = buf;
    f->size = len;
    return open_common(f, out);
}

md_status md_st_open(const char *path, md_st_file **out)
{
    MD_ASSERT(path && out);
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err(MD_ERR_IO, path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err(MD_ERR_IO, path, "cannot stat: %s", strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return err(MD_ERR_IO, path, "is a folder, not a safetensors file");
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err(MD_ERR_IO, path, "is not a regular file");
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        return err(MD_ERR_FORMAT, path, "file is %zu bytes, too short for the 8-byte header length "
                   "that starts a safetensors file", size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);   /* the mapping keeps the file */
    if (map == MAP_FAILED)
        return err(MD_ERR_IO, path, "cannot map %zu bytes: %s", size, strerror(e));
    md_st_file *f = calloc(1, sizeof *f);
    char *l = strdup(path);
    if (!f || !l) {
        munmap(map, size);
        free(f);
        free(l);
        return err(MD_ERR_ALLOC, path, "out of memory");
    }
    f->label = l;
    f->base = map;
    f->size = size;
    f->mapped = true;
    return open_common(f, out);
}

int md_st_count(const md_st_file *f) { return f->n; }

const md_st_info *md_st_get(const md_st_file *f, int i)
{
    return i >= 0 && i < f->n ? &f->infos[i] : NULL;
}

const md_st_info *md_st_find(const md_st_file *f, const char *name)
{
    int lo = 0, hi = f->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const md_st_info *t = &f->infos[f->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0)
            return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *md_st_meta(const md_st_file *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_vals[i];
    return NULL;
}

int md_st_meta_count(const md_st_file *f) { return f->nmeta; }

const char *md_st_meta_key(const md_st_file *f, int i)
{
    return i >= 0 && i < f->nmeta ? f->meta_keys[i] : NULL;
}

/* Checks that t can fill dst: float dtype, same shape. */
static md_status check_into(const md_st_file *f, const md_st_info *t, const md_tensor *dst)
{
    if (t->dtype != MD_F32 && t->dtype != MD_BF16 && t->dtype != MD_F16)
        return terr(f->label, t->name, "is %s; only F32, BF16 and F16 load as f32",
                    md_dtype_name(t->dtype));
    bool same = t->ndim == dst->ndim;
    for (int d = 0; same && d < t->ndim; d++)
        same = t->shape[d] == dst->shape[d];
    if (!same) {
        char a[160], b[160];
        return terr(f->label, t->name, "has shape %s but the destination needs %s",
                    shape_str(a, sizeof a, t->ndim, t->shape), shape_str(b, sizeof b, dst->ndim, dst->shape));
    }
    return MD_OK;
}

/* numel elements from src (any alignment) into f32 dst. */
static void copy_to_f32(float *dst, const void *src, md_dtype dt, size_t numel)
{
    if (dt == MD_F32) {
        memcpy(dst, src, numel * 4);
        return;
    }
    if (((uintptr_t)src & 1) == 0) {
        md_convert(dst, MD_F32, src, dt, numel);
        return;
    }
    const unsigned char *s = src;
    for (size_t i = 0; i < numel; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = dt == MD_BF16 ? md_bf16_to_f32(h) : md_f16_to_f32(h);
    }
}

md_status md_st_read_f32(const md_st_file *f, const char *name, md_tensor *dst)
{
    MD_ASSERT(f && name && dst);
    MD_ASSERT(dst->dtype == MD_F32 && (dst->data || md_numel(dst) == 0) && md_is_contiguous(dst));
    const md_st_info *t = md_st_find(f, name);
    if (!t) {
        char nb[112];
        return err(MD_ERR_FORMAT, f->label, "tensor \"%s\" not found", pname(nb, sizeof nb, name));
    }
    md_status s = check_into(f, t, dst);
    if (s != MD_OK)
        return s;
    size_t numel = t->nbytes / md_dtype_size(t->dtype);
    if (numel)
        copy_to_f32(dst->data, t->data, t->dtype, numel);
    return MD_OK;
}

/* ---- writing ------------------------------------------------------------------ */

typedef struct st_entry {
    char *name;
    md_dtype dtype;
    int ndim;
    int64_t shape[MD_MAX_DIMS];
    unsigned char *data;           /* nbytes (NULL when 0) */
    size_t nbytes;
} st_entry;

struct md_st_writer {
    st_entry *t;
    int n, cap;
    char **mkeys, **mvals;
    int nm, mcap;
};

md_st_writer *md_st_writer_new(void)
{
    md_st_writer *w = calloc(1, sizeof *w);
    if (!w)
        md_log(MD_LOG_ERROR, "out of memory creating a safetensors writer");
    return w;
}

void md_st_writer_free(md_st_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    for (int i = 0; i < w->nm; i++) {
        free(w->mkeys[i]);
        free(w->mvals[i]);
    }
    free(w->t);
    free(w->mkeys);
    free(w->mvals);
    free(w);
}

/* Validates the arguments and appends an entry whose data buffer (nbytes,
 * uninitialised) the caller fills. */
static md_status writer_add(md_st_writer *w, const char *name, md_dtype dtype, int ndim,
                            const int64_t *shape, const void *data, st_entry **out)
{
    MD_ASSERT(w);
    char nb[112];
    if (!name)
        return err(MD_ERR_INVALID, "safetensors writer", "tensor name is NULL");
    pname(nb, sizeof nb, name);
    if (strcmp(name, "__metadata__") == 0)
        return err(MD_ERR_INVALID, "safetensors writer", "\"__metadata__\" cannot name a tensor");
    if (md_dtype_size(dtype) == 0)
        return err(MD_ERR_INVALID, "safetensors writer", "tensor \"%s\": invalid dtype %d", nb, (int)dtype);
    if (ndim < 0 || ndim > MD_MAX_DIMS || (ndim > 0 && !shape))
        return err(MD_ERR_INVALID, "safetensors writer", "tensor \"%s\": %d dims (0..%d allowed)", nb,
                   ndim, MD_MAX_DIMS);
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || __builtin_mul_overflow(numel, shape[d], &numel))
            return err(MD_ERR_INVALID, "safetensors writer", "tensor \"%s\": bad shape", nb);
    }
    size_t nbytes;
    if (__builtin_mul_overflow((size_t)numel, md_dtype_size(dtype), &nbytes))
        return err(MD_ERR_INVALID, "safetensors writer", "tensor \"%s\": too many bytes", nb);
    if (nbytes && !data)
        return err(MD_ERR_INVALID, "safetensors writer", "tensor \"%s\": data is NULL", nb);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return err(MD_ERR_INVALID, "safetensors writer", "tensor \"%s\" added twice", nb);
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 16;
        st_entry *nt = realloc(w->t, (size_t)nc * sizeof *nt);
        if (!nt)
            return err(MD_ERR_ALLOC, "safetensors writer", "out of memory");
        w->t = nt;
        w->cap = nc;
    }
    st_entry *e = &w->t[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->data = nbytes ? malloc(nbytes) : NULL;
    if (!e->name || (nbytes && !e->data)) {
        free(e->name);
        free(e->data);
        return err(MD_ERR_ALLOC, "safetensors writer", "out of memory copying tensor \"%s\" (%zu bytes)",
                   nb, nbytes);
    }
    e->dtype = dtype;
    e->ndim = ndim;
    for (int d = 0; d < MD_MAX_DIMS; d++)
        e->shape[d] = d < ndim ? shape[d] : 1;
    e->nbytes = nbytes;
    w->n++;
    *out = e;
    return MD_OK;
}

md_status md_st_writer_add_f32(md_st_writer *w, const char *name, md_dtype store, int ndim,
                               const int64_t *shape, const float *data)
{
    if (store != MD_F32 && store != MD_BF16 && store != MD_F16)
        return err(MD_ERR_INVALID, "safetensors writer", "f32 data can be stored as F32, BF16 or F16, not %s",
                   md_dtype_name(store));
    st_entry *e;
    md_status s = writer_add(w, name, store, ndim, shape, data, &e);
    if (s == MD_OK && e->nbytes)
        md_convert(e->data, store, data, MD_F32, e->nbytes / md_dtype_size(store));
    return s;
}

md_status md_st_writer_add_raw(md_st_writer *w, const char *name, md_dtype dtype, int ndim,
                               const int64_t *shape, const void *data)
{
    st_entry *e;
    md_status s = writer_add(w, name, dtype, ndim, shape, data, &e);
    if (s == MD_OK && e->nbytes)
        memcpy(e->data, data, e->nbytes);
    return s;
}

md_status md_st_writer_meta(md_st_writer *w, const char *key, const char *value)
{
    MD_ASSERT(w);
    if (!key || !value)
        return err(MD_ERR_INVALID, "safetensors writer", "metadata key or value is NULL");
    char *v = strdup(value);
    if (!v)
        return err(MD_ERR_ALLOC, "safetensors writer", "out of memory");
    for (int i = 0; i < w->nm; i++)
        if (strcmp(w->mkeys[i], key) == 0) {
            free(w->mvals[i]);
            w->mvals[i] = v;
            return MD_OK;
        }
    if (w->nm == w->mcap) {
        int nc = w->mcap ? w->mcap * 2 : 8;
        char **nk = realloc(w->mkeys, (size_t)nc * sizeof *nk);
        if (nk)
            w->mkeys = nk;
        char **nv = nk ? realloc(w->mvals, (size_t)nc * sizeof *nv) : NULL;
        if (nv)
            w->mvals = nv;
        if (!nk || !nv) {
            free(v);
            return err(MD_ERR_ALLOC, "safetensors writer", "out of memory");
        }
        w->mcap = nc;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return err(MD_ERR_ALLOC, "safetensors writer", "out of memory");
    }
    w->mkeys[w->nm] = k;
    w->mvals[w->nm] = v;
    w->nm++;
    return MD_OK;
}

static bool write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, MD_MIN(n, (size_t)1 << 30));
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* Header text for the given data offsets, padded with spaces so that
 * 8 + length is a multiple of 8. Caller frees. */
static char *build_header(const md_st_writer *w, const uint64_t *begin, size_t *len_out)
{
    md_json_buf b;
    md_json_buf_init(&b);
    md_json_buf_begin_object(&b);
    if (w->nm) {
        md_json_buf_key(&b, "__metadata__");
        md_json_buf_begin_object(&b);
        for (int i = 0; i < w->nm; i++) {
            md_json_buf_key(&b, w->mkeys[i]);
            md_json_buf_str(&b, w->mvals[i]);
        }
        md_json_buf_end_object(&b);
    }
    for (int i = 0; i < w->n; i++) {
        const st_entry *e = &w->t[i];
        md_json_buf_key(&b, e->name);
        md_json_buf_begin_object(&b);
        md_json_buf_key(&b, "dtype");
        md_json_buf_str(&b, md_dtype_name(e->dtype));
        md_json_buf_key(&b, "shape");
        md_json_buf_begin_array(&b);
        for (int d = 0; d < e->ndim; d++)
            md_json_buf_int(&b, e->shape[d]);
        md_json_buf_end_array(&b);
        md_json_buf_key(&b, "data_offsets");
        md_json_buf_begin_array(&b);
        md_json_buf_int(&b, (int64_t)begin[i]);
        md_json_buf_int(&b, (int64_t)(begin[i] + e->nbytes));
        md_json_buf_end_array(&b);
        md_json_buf_end_object(&b);
    }
    md_json_buf_end_object(&b);
    static const char spaces[8] = "        ";
    md_json_buf_raw(&b, spaces, (8 - b.len % 8) % 8);
    return md_json_buf_finish(&b, len_out);
}

md_status md_st_writer_save(md_st_writer *w, const char *path)
{
    MD_ASSERT(w && path);
    /* Data order: element size 8, 4, 2, 1, insertion order within a size, so
     * that with no gaps every tensor is aligned to its element size. */
    int *order = malloc((size_t)(w->n ? w->n : 1) * sizeof *order);
    uint64_t *begin = malloc((size_t)(w->n ? w->n : 1) * sizeof *begin);
    char *hdr = NULL;
    char *tmp = NULL;
    int fd = -1;
    md_status s = MD_ERR_ALLOC;
    if (!order || !begin) {
        err(s, path, "out of memory");
        goto done;
    }
    int k = 0;
    uint64_t off = 0;
    for (size_t es = 8; es >= 1; es /= 2)
        for (int i = 0; i < w->n; i++)
            if (md_dtype_size(w->t[i].dtype) == es) {
                order[k++] = i;
                begin[i] = off;
                off += w->t[i].nbytes;
            }
    size_t hlen;
    hdr = build_header(w, begin, &hlen);
    if (!hdr) {
        err(s, path, "out of memory building the header");
        goto done;
    }
    if (hlen > MD_ST_MAX_HEADER) {
        s = err(MD_ERR_INVALID, path, "header would be %zu bytes, over the %llu-byte limit readers accept",
                hlen, (unsigned long long)MD_ST_MAX_HEADER);
        goto done;
    }

    size_t plen = strlen(path);
    tmp = malloc(plen + 12);
    if (!tmp) {
        err(s, path, "out of memory");
        goto done;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp-XXXXXX", 12);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        s = err(MD_ERR_IO, path, "cannot create a temporary file beside it: %s", strerror(errno));
        free(tmp);
        tmp = NULL;
        goto done;
    }
    unsigned char lenbytes[8];
    for (int b = 0; b < 8; b++)
        lenbytes[b] = (unsigned char)((uint64_t)hlen >> (8 * b));
    bool ok = write_all(fd, lenbytes, 8) && write_all(fd, hdr, hlen);
    for (int i = 0; ok && i < w->n; i++)
        ok = write_all(fd, w->t[order[i]].data, w->t[order[i]].nbytes);
    /* mkstemp creates 0600; a model file is as readable as any other. */
    ok = ok && fchmod(fd, 0644) == 0 && fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        e = errno;
    }
    fd = -1;
    if (!ok || rename(tmp, path) != 0) {
        if (ok)
            e = errno;
        s = err(MD_ERR_IO, path, "cannot write: %s", strerror(e));
        unlink(tmp);
        goto done;
    }
    /* Make the rename itself durable; not every filesystem lets a folder be
     * fsynced, and the data is already safe, so failure here is ignored. */
    char *slash = strrchr(tmp, '/');
    if (slash) {
        *slash = 0;
        int dfd = open(slash == tmp ? "/" : tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    } else {
        int dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    s = MD_OK;
done:
    free(tmp);
    free(hdr);
    free(order);
    free(begin);
    return s;
}

md_status md_st_save_paramset(const char *path, md_paramset *ps, md_dtype store, int nmeta,
                              const char *const *keys, const char *const *values)
{
    MD_ASSERT(path && ps && (nmeta == 0 || (keys && values)));
    md_st_writer *w = md_st_writer_new();
    if (!w)
        return MD_ERR_ALLOC;
    md_status s = MD_OK;
    for (int i = 0; s == MD_OK && i < nmeta; i++)
        s = md_st_writer_meta(w, keys[i], values[i]);
    for (int i = 0; s == MD_OK && i < md_paramset_count(ps); i++) {
        const md_tensor *t = md_paramset_get(ps, i);
        s = md_st_writer_add_f32(w, t->name, store, t->ndim, t->shape, t->data);
    }
    if (s == MD_OK)
        s = md_st_writer_save(w, path);
    md_st_writer_free(w);
    return s;
}

md_status md_st_load_paramset(const char *path, md_paramset *ps)
{
    MD_ASSERT(path && ps);
    md_st_file *f;
    md_status s = md_st_open(path, &f);
    if (s != MD_OK)
        return s;
    int np = md_paramset_count(ps);
    /* 1: every parameter present, float, same shape. */
    for (int i = 0; s == MD_OK && i < np; i++) {
        const md_tensor *p = md_paramset_get(ps, i);
        const md_st_info *t = md_st_find(f, p->name);
        if (!t) {
            char nb[112];
            s = err(MD_ERR_FORMAT, path, "parameter \"%s\" is missing", pname(nb, sizeof nb, p->name));
        } else {
            s = check_into(f, t, p);
        }
    }
    /* 2: no tensor the model does not have; name the first few. */
    if (s == MD_OK) {
        char list[400];
        size_t o = 0;
        int extra = 0;
        for (int i = 0; i < f->n; i++) {
            if (md_paramset_find(ps, f->infos[i].name))
                continue;
            if (extra < 4 && o < sizeof list) {
                char nb[80];
                o += (size_t)snprintf(list + o, sizeof list - o, "%s\"%s\"", extra ? ", " : "",
                                      pname(nb, sizeof nb, f->infos[i].name));
            }
            extra++;
        }
        if (extra) {
            list[sizeof list - 1] = 0;
            s = err(MD_ERR_FORMAT, path, "%d tensor%s the model does not have: %s%s", extra,
                    extra == 1 ? "" : "s", list, extra > 4 ? ", ..." : "");
        }
    }
    /* 3: copy; nothing can fail now. */
    for (int i = 0; s == MD_OK && i < np; i++) {
        md_tensor *p = md_paramset_get(ps, i);
        const md_st_info *t = md_st_find(f, p->name);
        size_t numel = t->nbytes / md_dtype_size(t->dtype);
        MD_ASSERT(p->data || numel == 0);
        if (numel)
            copy_to_f32(p->data, t->data, t->dtype, numel);
    }
    md_st_close(f);
    return s;
}

md_status md_st_check_model(const md_st_file *f, const char *path, const char *model, const char *noun,
                            int version, const char *retrain)
{
    const char *m = md_st_meta(f, "medley.model"), *v = md_st_meta(f, "medley.version");
    char want[16];
    snprintf(want, sizeof want, "%d", version);
    if (!m || strcmp(m, model) != 0) {
        md_log(MD_LOG_ERROR, "%s: not a Medley %s (model kind '%s')", path, noun, m ? m : "none");
        return MD_ERR_FORMAT;
    }
    if (!v || strcmp(v, want) != 0) {
        md_log(MD_LOG_ERROR, "%s: %s format version %s, this Medley reads version %s; retrain with '%s'", path,
               noun, v ? v : "none", want, retrain);
        return MD_ERR_FORMAT;
    }
    return MD_OK;
}
