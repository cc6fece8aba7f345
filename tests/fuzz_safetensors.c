/* fuzz_safetensors.c — libFuzzer harness for the safetensors reader and the
 * JSON parser/writer. Build and run with tests/run_fuzz.sh.
 *
 * Each input is
 *   1. opened with md_st_open_memory (libFuzzer's buffer is exactly `size`
 *      bytes on the heap, so ASan reports any read past it); when it opens,
 *      every byte of every tensor is read, md_st_find must return the same
 *      entry, md_st_read_f32 must succeed for float tensors, and every
 *      metadata key must be found;
 *   2. parsed as JSON; when it parses, it is written back with md_json_buf
 *      and parsed again, and the two documents must be equal.
 * A broken invariant calls __builtin_trap(), which libFuzzer reports. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "json.h"
#include "safetensors.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(x) do { if (!(x)) __builtin_trap(); } while (0)

static void quiet_log(md_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)msg;
    (void)user;
}

static volatile unsigned g_sink;

static void touch_tensor(const md_st_file *f, const md_st_info *t)
{
    const unsigned char *p = t->data;
    unsigned acc = 0;
    for (size_t k = 0; k < t->nbytes; k++)
        acc += p[k];
    g_sink += acc;
    REQUIRE(md_st_find(f, t->name) == t);
    REQUIRE(t->ndim >= 0 && t->ndim <= MD_MAX_DIMS);
    if (t->dtype != MD_F32 && t->dtype != MD_BF16 && t->dtype != MD_F16)
        return;
    size_t numel = t->nbytes / md_dtype_size(t->dtype);
    if (numel > ((size_t)1 << 20))
        return;
    md_tensor dst;
    memset(&dst, 0, sizeof dst);
    dst.dtype = MD_F32;
    float one;
    if (t->ndim == 0) {
        dst.data = &one;                 /* a 0-dim tensor: numel 1, contiguous */
    } else {
        md_tensor_set_shape(&dst, t->ndim, t->shape);
        dst.data = malloc(numel ? numel * sizeof(float) : 1);
        REQUIRE(dst.data);
    }
    REQUIRE(md_st_read_f32(f, t->name, &dst) == MD_OK);
    if (numel)
        g_sink += (unsigned)(dst.data[0] == dst.data[0]);
    if (dst.data != &one)
        free(dst.data);
}

static void write_value(md_json_buf *b, const md_json *v)
{
    double d;
    bool bv;
    switch (md_json_type_of(v)) {
    case MD_JSON_NULL: md_json_buf_null(b); break;
    case MD_JSON_BOOL: md_json_bool(v, &bv); md_json_buf_bool(b, bv); break;
    case MD_JSON_NUMBER: md_json_num(v, &d); md_json_buf_num(b, d); break;
    case MD_JSON_STRING: md_json_buf_strn(b, md_json_str(v), md_json_str_len(v)); break;
    case MD_JSON_ARRAY:
        md_json_buf_begin_array(b);
        for (size_t i = 0; i < md_json_len(v); i++)
            write_value(b, md_json_at(v, i));
        md_json_buf_end_array(b);
        break;
    case MD_JSON_OBJECT:
        md_json_buf_begin_object(b);
        for (size_t i = 0; i < md_json_len(v); i++) {
            md_json_buf_keyn(b, md_json_key_at(v, i), md_json_key_len_at(v, i));
            write_value(b, md_json_at(v, i));
        }
        md_json_buf_end_object(b);
        break;
    }
}

static bool same(const md_json *a, const md_json *b)
{
    md_json_type t = md_json_type_of(a);
    if (t != md_json_type_of(b))
        return false;
    double x, y;
    bool p, q;
    switch (t) {
    case MD_JSON_NULL: return true;
    case MD_JSON_BOOL: md_json_bool(a, &p); md_json_bool(b, &q); return p == q;
    case MD_JSON_NUMBER: md_json_num(a, &x); md_json_num(b, &y); return x == y;
    case MD_JSON_STRING:
        return md_json_str_len(a) == md_json_str_len(b) &&
               memcmp(md_json_str(a), md_json_str(b), md_json_str_len(a)) == 0;
    case MD_JSON_ARRAY:
    case MD_JSON_OBJECT:
        if (md_json_len(a) != md_json_len(b))
            return false;
        for (size_t i = 0; i < md_json_len(a); i++) {
            if (t == MD_JSON_OBJECT &&
                (md_json_key_len_at(a, i) != md_json_key_len_at(b, i) ||
                 memcmp(md_json_key_at(a, i), md_json_key_at(b, i), md_json_key_len_at(a, i)) != 0))
                return false;
            if (!same(md_json_at(a, i), md_json_at(b, i)))
                return false;
        }
        return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        md_log_set_callback(quiet_log, NULL);
        init = true;
    }

    md_st_file *f = NULL;
    if (md_st_open_memory(data, size, "fuzz", &f) == MD_OK) {
        for (int i = 0; i < md_st_count(f); i++)
            touch_tensor(f, md_st_get(f, i));
        for (int i = 0; i < md_st_meta_count(f); i++) {
            const char *k = md_st_meta_key(f, i);
            REQUIRE(k && md_st_meta(f, k));
            g_sink += (unsigned)strlen(md_st_meta(f, k));
        }
        REQUIRE(md_st_get(f, md_st_count(f)) == NULL);
        md_st_close(f);
    } else {
        REQUIRE(f == NULL);
    }

    md_json_doc *d = NULL;
    if (md_json_parse((const char *)data, size, "fuzz", &d) == MD_OK) {
        md_json_buf b;
        md_json_buf_init(&b);
        write_value(&b, md_json_root(d));
        size_t len = 0;
        char *text = md_json_buf_finish(&b, &len);
        REQUIRE(text);
        md_json_doc *d2 = NULL;
        REQUIRE(md_json_parse(text, len, "rewritten", &d2) == MD_OK);
        REQUIRE(same(md_json_root(d), md_json_root(d2)));
        md_json_free(d2);
        free(text);
        md_json_free(d);
    }
    return 0;
}
