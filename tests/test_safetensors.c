/* test_safetensors.c — JSON parser/writer and safetensors reader/writer.
 *
 * Prints one line per case; exits 0 only if every case passed, 1 otherwise.
 * Files go to a fresh folder under $MEDLEY_TEST_TMP (default /tmp), removed
 * at the end. `test_safetensors --seeds DIR` writes the fuzzing seed corpus
 * (tests/fuzz/safetensors_corpus) instead of testing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "json.h"
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_pass, g_fail;
static char g_dir[512];

static void result(bool ok, const char *what, const char *detail)
{
    if (ok)
        g_pass++;
    else
        g_fail++;
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail && *detail ? ": " : "", detail ? detail : "");
}

#define CHECK(cond, what) result((cond), (what), (cond) ? "" : #cond)

static void quiet_log(md_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)msg;
    (void)user;
}

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_dir, name); }

static bool write_file(const char *path, const void *buf, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return false;
    bool ok = fwrite(buf, 1, n, fp) == n;
    return fclose(fp) == 0 && ok;
}

static unsigned char *read_file(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && fread(b, 1, (size_t)sz, fp) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *n = (size_t)sz;
    return b;
}

/* 8-byte length field `hlen`, then rest[0..restlen). */
static unsigned char *raw_file(uint64_t hlen, const void *rest, size_t restlen, size_t *n)
{
    unsigned char *b = calloc(1, 8 + restlen);
    for (int k = 0; k < 8; k++)
        b[k] = (unsigned char)(hlen >> (8 * k));
    if (restlen)
        memcpy(b + 8, rest, restlen);
    *n = 8 + restlen;
    return b;
}

/* Header text (its own length in the length field), then ndata zero bytes. */
static unsigned char *st_file(const char *hdr, size_t hlen, size_t ndata, size_t *n)
{
    unsigned char *b = calloc(1, 8 + hlen + ndata);
    for (int k = 0; k < 8; k++)
        b[k] = (unsigned char)((uint64_t)hlen >> (8 * k));
    memcpy(b + 8, hdr, hlen);
    *n = 8 + hlen + ndata;
    return b;
}

/* Both the file path and an exact-size heap copy (so ASan sees any
 * over-read) must be refused with MD_ERR_FORMAT and a message containing
 * `expect`. */
static void expect_reject(const char *name, const unsigned char *buf, size_t n, const char *expect)
{
    char path[600], what[200], detail[1400];
    snprintf(path, sizeof path, "%s/bad-%s.safetensors", g_dir, name);
    snprintf(what, sizeof what, "reject %s", name);
    if (!write_file(path, buf, n)) {
        result(false, what, "cannot write the test file");
        return;
    }
    md_clear_error();
    md_st_file *f = (md_st_file *)1;
    md_status s = md_st_open(path, &f);
    bool ok = s == MD_ERR_FORMAT && f == NULL && strstr(md_last_error(), expect) &&
              strstr(md_last_error(), path);
    char msg1[1024];
    snprintf(msg1, sizeof msg1, "%s", md_last_error());
    md_st_close(s == MD_OK ? f : NULL);
    unlink(path);

    unsigned char *copy = malloc(n ? n : 1);
    memcpy(copy, buf, n);
    md_clear_error();
    f = (md_st_file *)1;
    s = md_st_open_memory(copy, n, "mem", &f);
    ok = ok && s == MD_ERR_FORMAT && f == NULL && strstr(md_last_error(), expect) &&
         strncmp(md_last_error(), "mem", 3) == 0;
    if (s == MD_OK)
        md_st_close(f);
    free(copy);
    if (ok)
        snprintf(detail, sizeof detail, "%s", msg1);
    else
        snprintf(detail, sizeof detail, "expected \"%s\"; got status %d, \"%s\"", expect, (int)s, msg1);
    result(ok, what, detail);
}

static void reject_hdr(const char *name, const char *hdr, size_t ndata, const char *expect)
{
    size_t n;
    unsigned char *b = st_file(hdr, strlen(hdr), ndata, &n);
    expect_reject(name, b, n, expect);
    free(b);
}

/* ---- JSON ------------------------------------------------------------------ */

static void json_bad(const char *text, size_t len, const char *expect)
{
    char what[160], detail[1200];
    md_json_doc *d = (md_json_doc *)1;
    md_clear_error();
    md_status s = md_json_parse(text, len, "t.json", &d);
    bool ok = s == MD_ERR_FORMAT && d == NULL && strstr(md_last_error(), expect) != NULL;
    char shown[48];
    size_t k = 0;
    for (size_t i = 0; i < len && k < 40; i++)
        shown[k++] = ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] >= 0x7f) ? '?' : text[i];
    shown[k] = 0;
    snprintf(what, sizeof what, "json reject '%s'", shown);
    snprintf(detail, sizeof detail, ok ? "%s" : "got \"%s\"", md_last_error());
    if (!ok && s == MD_OK)
        md_json_free(d);
    result(ok, what, detail);
}

#define JSON_BAD(lit, expect) json_bad(lit, sizeof(lit) - 1, expect)

static void test_json(void)
{
    /* Structure, key order, escapes, UTF-8. */
    const char *t = " {\"b\": 1, \"a\": [true, false, null, {}], \"c\": \"x\\u00e9\\ud83d\\ude00\\n\\\"\\/\\\\\","
                    " \"z\": \"\\u0000y\", \"e\": [] } \r\n";
    md_json_doc *d;
    md_status s = md_json_parse(t, strlen(t), NULL, &d);
    CHECK(s == MD_OK, "json parse object");
    if (s != MD_OK)
        return;
    const md_json *r = md_json_root(d);
    CHECK(md_json_type_of(r) == MD_JSON_OBJECT && md_json_len(r) == 5, "json object len");
    CHECK(strcmp(md_json_key_at(r, 0), "b") == 0 && strcmp(md_json_key_at(r, 1), "a") == 0 &&
              strcmp(md_json_key_at(r, 2), "c") == 0, "json key order kept");
    int64_t iv = 0;
    CHECK(md_json_int(md_json_get(r, "b"), &iv) && iv == 1, "json int");
    const md_json *a = md_json_get(r, "a");
    bool bv = false;
    CHECK(md_json_len(a) == 4 && md_json_bool(md_json_at(a, 0), &bv) && bv &&
              md_json_bool(md_json_at(a, 1), &bv) && !bv && md_json_is_null(md_json_at(a, 2)) &&
              md_json_type_of(md_json_at(a, 3)) == MD_JSON_OBJECT && md_json_len(md_json_at(a, 3)) == 0,
          "json array items");
    CHECK(md_json_at(a, 4) == NULL && md_json_get(r, "nope") == NULL && md_json_str(a) == NULL &&
              md_json_get(a, "b") == NULL && md_json_len(NULL) == 0, "json lookups of absent things");
    const char *want = "x\xc3\xa9\xf0\x9f\x98\x80\n\"/\\";
    CHECK(md_json_str(md_json_get(r, "c")) && strcmp(md_json_str(md_json_get(r, "c")), want) == 0 &&
              md_json_str_len(md_json_get(r, "c")) == strlen(want), "json escapes and surrogate pair to UTF-8");
    CHECK(md_json_str_len(md_json_get(r, "z")) == 2 && md_json_str(md_json_get(r, "z"))[1] == 'y',
          "json \\u0000 kept with length");
    CHECK(md_json_offset(md_json_get(r, "b")) == 7, "json value offsets");
    md_json_free(d);

    /* Numbers. */
    struct { const char *text; bool is_int; int64_t i; double v; } nums[] = {
        {"0", true, 0, 0}, {"-0", true, 0, -0.0}, {"42", true, 42, 42},
        {"9223372036854775807", true, INT64_MAX, 9223372036854775807.0},
        {"-9223372036854775808", true, INT64_MIN, -9223372036854775808.0},
        {"9223372036854775808", false, 0, 9223372036854775808.0},
        {"3.0", false, 0, 3.0}, {"1e3", false, 0, 1000}, {"-1.5E-3", false, 0, -1.5e-3},
        {"0.1", false, 0, 0.1}, {"1e-400", false, 0, 0},
    };
    for (size_t k = 0; k < sizeof nums / sizeof *nums; k++) {
        char what[80];
        snprintf(what, sizeof what, "json number %s", nums[k].text);
        s = md_json_parse(nums[k].text, strlen(nums[k].text), NULL, &d);
        double v = -1;
        int64_t i = -1;
        bool ok = s == MD_OK && md_json_num(md_json_root(d), &v) && v == nums[k].v &&
                  md_json_int(md_json_root(d), &i) == nums[k].is_int && (!nums[k].is_int || i == nums[k].i);
        result(ok, what, "");
        if (s == MD_OK)
            md_json_free(d);
    }

    /* Rejections, each with its own reason. */
    JSON_BAD("", "at byte 0: unexpected end of input");
    JSON_BAD("   ", "unexpected end of input");
    JSON_BAD("01", "leading zeros");
    JSON_BAD("-01", "leading zeros");
    JSON_BAD("[1, 00]", "at byte 4: leading zeros");
    JSON_BAD("NaN", "NaN and Infinity");
    JSON_BAD("-Infinity", "NaN and Infinity");
    JSON_BAD("[Infinity]", "NaN and Infinity");
    JSON_BAD("+1", "may not start with '+'");
    JSON_BAD(".5", "must start with a digit");
    JSON_BAD("1.", "digit must follow the decimal point");
    JSON_BAD("1e", "digit must follow the exponent");
    JSON_BAD("-", "'-' must be followed by a digit");
    JSON_BAD("1e999", "out of the range");
    JSON_BAD("[1,]", "at byte 3: unexpected ']', expected a value");
    JSON_BAD("[1 2]", "expected ',' or ']'");
    JSON_BAD("{\"a\":1,}", "expected a string key");
    JSON_BAD("{\"a\" 1}", "expected ':' after object key");
    JSON_BAD("{1:2}", "expected a string key");
    JSON_BAD("[1] x", "at byte 4: unexpected 'x' after the value");
    JSON_BAD("{} {}", "after the value");
    JSON_BAD("\xef\xbb\xbf{}", "unexpected byte 0xef");
    JSON_BAD("tru", "unexpected 't'");
    JSON_BAD("nul", "unexpected 'n'");
    JSON_BAD("\"abc", "unterminated string");
    JSON_BAD("\"ab\\\"", "unterminated string");
    JSON_BAD("\"a\x01\"", "control character 0x01");
    JSON_BAD("\"a\tb\"", "control character 0x09");
    JSON_BAD("\"\xc3\x28\"", "invalid UTF-8");
    JSON_BAD("\"\xc0\xaf\"", "invalid UTF-8");           /* overlong '/' */
    JSON_BAD("\"\xed\xa0\x80\"", "invalid UTF-8");       /* UTF-8-encoded surrogate */
    JSON_BAD("\"\xf4\x90\x80\x80\"", "invalid UTF-8");   /* past U+10FFFF */
    JSON_BAD("\"\xe2\x82\"", "invalid UTF-8");           /* truncated sequence */
    JSON_BAD("\"\\ud800\"", "high surrogate \\ud800 not followed");
    JSON_BAD("\"\\ud800\\u0041\"", "not followed by a low surrogate");
    JSON_BAD("\"\\udc00\"", "lone low surrogate");
    JSON_BAD("\"\\x\"", "invalid escape \\x");
    JSON_BAD("\"\\u12g4\"", "4 hex digits");
    JSON_BAD("\"\\u12\"", "4 hex digits");
    JSON_BAD("{\"a\":1,\"a\":2}", "at byte 7: duplicate key \"a\" (first at byte 1)");
    JSON_BAD("[1]\0", "unexpected byte 0x00 after the value");

    /* Duplicate detection through the sorted path (> 16 members). */
    char big[2048];
    size_t o = (size_t)snprintf(big, sizeof big, "{");
    for (int k = 0; k < 40; k++)
        o += (size_t)snprintf(big + o, sizeof big - o, "%s\"k%d\":%d", k ? "," : "", k % 39, k);
    snprintf(big + o, sizeof big - o, "}");
    json_bad(big, strlen(big), "duplicate key \"k0\"");
    o = (size_t)snprintf(big, sizeof big, "{");
    for (int k = 0; k < 40; k++)
        o += (size_t)snprintf(big + o, sizeof big - o, "%s\"k%d\":%d", k ? "," : "", k, k);
    snprintf(big + o, sizeof big - o, "}");
    s = md_json_parse(big, strlen(big), NULL, &d);
    CHECK(s == MD_OK && md_json_len(md_json_root(d)) == 40 &&
              md_json_int(md_json_get(md_json_root(d), "k39"), &iv) && iv == 39, "json 40 unique keys");
    if (s == MD_OK)
        md_json_free(d);

    /* Depth: 64 nested arrays parse, 65 do not. */
    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    s = md_json_parse(deep, 128, NULL, &d);
    CHECK(s == MD_OK, "json depth 64 accepted");
    if (s == MD_OK)
        md_json_free(d);
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    json_bad(deep, 130, "nesting deeper than 64");

    /* Writer: escaping, numbers, nesting; reads back identically. */
    md_json_buf b;
    md_json_buf_init(&b);
    md_json_buf_begin_object(&b);
    md_json_buf_key(&b, "s");
    md_json_buf_str(&b, "q\"b\\n\n\t\x01\x7f \xc3\xa9 \xff end");
    md_json_buf_key(&b, "k\"ey");
    md_json_buf_begin_array(&b);
    md_json_buf_num(&b, 0.1);
    md_json_buf_num(&b, 1e300);
    md_json_buf_num(&b, -2.5e-310);
    md_json_buf_num(&b, 3);
    md_json_buf_num(&b, NAN);
    md_json_buf_int(&b, INT64_MIN);
    md_json_buf_bool(&b, true);
    md_json_buf_null(&b);
    md_json_buf_begin_object(&b);
    md_json_buf_end_object(&b);
    md_json_buf_begin_array(&b);
    md_json_buf_end_array(&b);
    md_json_buf_end_array(&b);
    md_json_buf_end_object(&b);
    size_t len = 0;
    char *text = md_json_buf_finish(&b, &len);
    CHECK(text && len == strlen(text), "json writer finish");
    if (!text)
        return;
    s = md_json_parse(text, len, "written", &d);
    CHECK(s == MD_OK, "json writer output parses");
    if (s == MD_OK) {
        r = md_json_root(d);
        CHECK(strcmp(md_json_str(md_json_get(r, "s")), "q\"b\\n\n\t\x01\x7f \xc3\xa9 \xef\xbf\xbd end") == 0,
              "json writer string escapes (invalid UTF-8 becomes U+FFFD)");
        a = md_json_get(r, "k\"ey");
        double v[4];
        bool ok = md_json_len(a) == 10;
        for (int k = 0; ok && k < 4; k++)
            ok = md_json_num(md_json_at(a, (size_t)k), &v[k]);
        CHECK(ok && v[0] == 0.1 && v[1] == 1e300 && v[2] == -2.5e-310 && v[3] == 3,
              "json writer numbers round-trip exactly");
        CHECK(md_json_is_null(md_json_at(a, 4)), "json writer NaN -> null");
        CHECK(md_json_int(md_json_at(a, 5), &iv) && iv == INT64_MIN, "json writer int64 min");
        md_json_free(d);
    }
    printf("     writer produced: %s\n", text);
    free(text);

    /* Numbers ignore a decimal-comma locale when one is installed. */
    const char *locs[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "ru_RU.UTF-8"};
    const char *got = NULL;
    for (size_t k = 0; k < sizeof locs / sizeof *locs && !got; k++)
        got = setlocale(LC_NUMERIC, locs[k]);
    if (got) {
        s = md_json_parse("0.5", 3, NULL, &d);
        double v = 0;
        CHECK(s == MD_OK && md_json_num(md_json_root(d), &v) && v == 0.5, "json number under a comma locale");
        if (s == MD_OK)
            md_json_free(d);
        md_json_buf_init(&b);
        md_json_buf_num(&b, 0.25);
        text = md_json_buf_finish(&b, NULL);
        CHECK(text && strcmp(text, "0.25") == 0, "json writer under a comma locale");
        free(text);
        setlocale(LC_NUMERIC, "C");
    } else {
        printf("skip json under a comma locale (none installed)\n");
    }
}

/* ---- safetensors round trip ---------------------------------------------- */

static float test_value(int k) { return sinf(0.37f * (float)k + 0.1f) * (1.0f + (float)k * 0.25f); }

static bool no_temp_left(void)
{
    DIR *dir = opendir(g_dir);
    if (!dir)
        return false;
    bool clean = true;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strstr(e->d_name, ".tmp-"))
            clean = false;
    closedir(dir);
    return clean;
}

static md_st_writer *sample_writer(void)
{
    md_st_writer *w = md_st_writer_new();
    float f[24];
    for (int k = 0; k < 24; k++)
        f[k] = test_value(k);
    int64_t s_a[] = {2, 3}, s_b[] = {5}, s_c[] = {3, 1, 2}, s_e[] = {0, 4}, s_ids[] = {5}, s_u[] = {3},
            s_big[] = {2};
    int32_t ids[] = {1, -2, 3, 2147483647, -2147483647 - 1};
    uint8_t u[] = {0, 127, 255};
    int64_t bigv[] = {INT64_MIN, 1234567890123LL};
    md_status s = MD_OK;
    s |= md_st_writer_meta(w, "format", "medley");
    s |= md_st_writer_meta(w, "note", "quote \" newline \n and \xc3\xa9");
    s |= md_st_writer_add_raw(w, "u", MD_U8, 1, s_u, u);
    s |= md_st_writer_add_f32(w, "b", MD_BF16, 1, s_b, f);
    s |= md_st_writer_add_f32(w, "a", MD_F32, 2, s_a, f);
    s |= md_st_writer_add_f32(w, "c", MD_F16, 3, s_c, f + 6);
    s |= md_st_writer_add_raw(w, "ids", MD_I32, 1, s_ids, ids);
    s |= md_st_writer_add_f32(w, "s", MD_F32, 0, NULL, f + 3);
    s |= md_st_writer_add_f32(w, "e", MD_F32, 2, s_e, NULL);
    s |= md_st_writer_add_raw(w, "big", MD_I64, 1, s_big, bigv);
    s |= md_st_writer_meta(w, "format", "medley-1");   /* replaces */
    if (s != MD_OK) {
        md_st_writer_free(w);
        return NULL;
    }
    return w;
}

static void test_roundtrip(char *good_path, size_t good_path_n)
{
    md_st_writer *w = sample_writer();
    CHECK(w != NULL, "writer add tensors and metadata");
    if (!w)
        return;
    path_in(good_path, good_path_n, "good.safetensors");
    CHECK(md_st_writer_save(w, good_path) == MD_OK, "writer save");
    CHECK(md_st_writer_save(w, good_path) == MD_OK, "writer save over an existing file");
    CHECK(no_temp_left(), "no temporary file left behind");
    struct stat st;
    CHECK(stat(good_path, &st) == 0 && (st.st_mode & 0777) == 0644, "saved file mode 0644");

    /* Writer argument errors. */
    int64_t s1[] = {1};
    float one = 1;
    md_clear_error();
    CHECK(md_st_writer_add_f32(w, "a", MD_F32, 1, s1, &one) == MD_ERR_INVALID &&
              strstr(md_last_error(), "added twice"), "writer refuses a duplicate name");
    CHECK(md_st_writer_add_f32(w, "__metadata__", MD_F32, 1, s1, &one) == MD_ERR_INVALID,
          "writer refuses the name __metadata__");
    CHECK(md_st_writer_add_f32(w, "x", MD_I32, 1, s1, &one) == MD_ERR_INVALID,
          "writer refuses f32 stored as I32");
    int64_t s6[] = {1, 1, 1, 1, 1, 1};
    CHECK(md_st_writer_add_f32(w, "x", MD_F32, 6, s6, &one) == MD_ERR_INVALID, "writer refuses 6 dims");
    int64_t sneg[] = {-1};
    CHECK(md_st_writer_add_f32(w, "x", MD_F32, 1, sneg, &one) == MD_ERR_INVALID, "writer refuses negative dim");
    char nodir[700];
    path_in(nodir, sizeof nodir, "no/such/folder/x.safetensors");
    md_clear_error();
    CHECK(md_st_writer_save(w, nodir) == MD_ERR_IO && strstr(md_last_error(), "cannot create a temporary file"),
          "writer save into a missing folder is an IO error");
    md_st_writer_free(w);

    md_st_file *f;
    md_status s = md_st_open(good_path, &f);
    CHECK(s == MD_OK, "open written file");
    if (s != MD_OK)
        return;
    CHECK(md_st_count(f) == 8, "tensor count");
    const char *order[] = {"u", "b", "a", "c", "ids", "s", "e", "big"};
    bool ok = true;
    for (int i = 0; i < 8; i++)
        ok = ok && strcmp(md_st_get(f, i)->name, order[i]) == 0;
    CHECK(ok && md_st_get(f, 8) == NULL && md_st_get(f, -1) == NULL, "header keeps insertion order");
    CHECK(md_st_meta_count(f) == 2 && strcmp(md_st_meta_key(f, 0), "format") == 0 &&
              strcmp(md_st_meta(f, "format"), "medley-1") == 0 &&
              strcmp(md_st_meta(f, "note"), "quote \" newline \n and \xc3\xa9") == 0 &&
              md_st_meta(f, "absent") == NULL, "metadata preserved");

    /* Layout: data region at a multiple of 8, every tensor aligned to its
     * element size, no gaps (the reference loader insists on that). */
    size_t total = 0;
    const unsigned char *lo = NULL;
    for (int i = 0; i < md_st_count(f); i++) {
        const md_st_info *t = md_st_get(f, i);
        total += t->nbytes;
        if (t->nbytes && (!lo || (const unsigned char *)t->data < lo))
            lo = t->data;
        ok = ok && ((uintptr_t)t->data % md_dtype_size(t->dtype)) == 0;
    }
    CHECK(ok, "every tensor aligned to its element size");
    CHECK(lo && ((uintptr_t)lo % 8) == 0, "data region aligned to 8 (mapping is page-aligned)");
    size_t fsz = 0;
    unsigned char *raw = read_file(good_path, &fsz);
    uint64_t hl = 0;
    for (int k = 7; raw && k >= 0; k--)
        hl = (hl << 8) | raw[k];
    CHECK(raw && (8 + hl) % 8 == 0 && 8 + hl + total == fsz && raw[8 + hl - 1] != 0,
          "header padded to 8 and data region has no gaps");
    free(raw);

    float f24[24];
    for (int k = 0; k < 24; k++)
        f24[k] = test_value(k);
    const md_st_info *a = md_st_find(f, "a");
    ok = a && a->dtype == MD_F32 && a->ndim == 2 && a->shape[0] == 2 && a->shape[1] == 3 && a->nbytes == 24 &&
         memcmp(a->data, f24, 24) == 0;
    CHECK(ok, "F32 tensor exact");

    md_tensor dst;
    float buf[8];
    memset(&dst, 0, sizeof dst);
    dst.dtype = MD_F32;
    dst.data = buf;
    int64_t sb[] = {5};
    md_tensor_set_shape(&dst, 1, sb);
    CHECK(md_st_read_f32(f, "b", &dst) == MD_OK, "read BF16 into f32");
    ok = true;
    for (int k = 0; k < 5; k++)
        ok = ok && fabsf(buf[k] - f24[k]) <= fabsf(f24[k]) * (1.0f / 256) && buf[k] == md_bf16_to_f32(md_f32_to_bf16(f24[k]));
    CHECK(ok, "BF16 values within rounding (rel 2^-8, round to nearest)");

    int64_t sc[] = {3, 1, 2};
    md_tensor_set_shape(&dst, 3, sc);
    CHECK(md_st_read_f32(f, "c", &dst) == MD_OK, "read F16 into f32");
    ok = true;
    for (int k = 0; k < 6; k++)
        ok = ok && fabsf(buf[k] - f24[6 + k]) <= fabsf(f24[6 + k]) * (1.0f / 2048);
    CHECK(ok, "F16 values within rounding (rel 2^-11)");

    const md_st_info *ids = md_st_find(f, "ids");
    int32_t idv[5];
    if (ids)
        memcpy(idv, ids->data, sizeof idv);
    CHECK(ids && ids->dtype == MD_I32 && ids->nbytes == 20 && idv[1] == -2 && idv[3] == 2147483647,
          "I32 raw bytes");
    const md_st_info *u = md_st_find(f, "u");
    CHECK(u && u->dtype == MD_U8 && u->nbytes == 3 && ((const uint8_t *)u->data)[2] == 255, "U8 raw bytes");
    const md_st_info *bg = md_st_find(f, "big");
    int64_t bgv[2];
    if (bg)
        memcpy(bgv, bg->data, sizeof bgv);
    CHECK(bg && bg->dtype == MD_I64 && bgv[0] == INT64_MIN && bgv[1] == 1234567890123LL, "I64 raw bytes");
    const md_st_info *sc0 = md_st_find(f, "s");
    CHECK(sc0 && sc0->ndim == 0 && sc0->nbytes == 4 && memcmp(sc0->data, &f24[3], 4) == 0, "scalar (0 dims)");
    const md_st_info *e = md_st_find(f, "e");
    CHECK(e && e->ndim == 2 && e->shape[0] == 0 && e->nbytes == 0, "empty tensor");
    CHECK(md_st_find(f, "nope") == NULL && md_st_find(f, "") == NULL, "find absent name");

    md_clear_error();
    CHECK(md_st_read_f32(f, "nope", &dst) == MD_ERR_FORMAT && strstr(md_last_error(), "tensor \"nope\" not found"),
          "read_f32 of a missing tensor names it");
    md_tensor_set_shape(&dst, 1, sb);
    CHECK(md_st_read_f32(f, "ids", &dst) == MD_ERR_FORMAT &&
              strstr(md_last_error(), "tensor \"ids\": is I32; only F32, BF16 and F16"),
          "read_f32 of an I32 tensor is refused");
    int64_t s32[] = {3, 2};
    md_tensor_set_shape(&dst, 2, s32);
    CHECK(md_st_read_f32(f, "a", &dst) == MD_ERR_FORMAT &&
              strstr(md_last_error(), "tensor \"a\": has shape [2, 3] but the destination needs [3, 2]") &&
              strstr(md_last_error(), good_path),
          "read_f32 shape mismatch names file, tensor and both shapes");
    md_st_close(f);

    /* Header-only file with no tensors. */
    size_t n;
    unsigned char *b = st_file("{}      ", 8, 0, &n);
    s = md_st_open_memory(b, n, "empty", &f);
    CHECK(s == MD_OK && md_st_count(f) == 0 && md_st_meta_count(f) == 0, "header {} alone is a valid file");
    if (s == MD_OK)
        md_st_close(f);
    free(b);

    /* Unaligned BF16 data (13-byte header, from a writer that does not pad),
     * extra keys ignored, gaps and trailing bytes accepted. */
    const char *h = "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[1,5],\"x\":1}}";
    size_t hlen = strlen(h);
    b = st_file(h, hlen, 7, &n);
    uint16_t v0 = md_f32_to_bf16(1.5f), v1 = md_f32_to_bf16(-2.0f);
    memcpy(b + 8 + hlen + 1, &v0, 2);
    memcpy(b + 8 + hlen + 3, &v1, 2);
    s = md_st_open_memory(b, n, "unaligned", &f);
    CHECK(s == MD_OK, "open file with unaligned data and a gap");
    if (s == MD_OK) {
        int64_t s2[] = {2};
        md_tensor_set_shape(&dst, 1, s2);
        CHECK(md_st_read_f32(f, "w", &dst) == MD_OK && buf[0] == 1.5f && buf[1] == -2.0f,
              "read unaligned BF16");
        md_st_close(f);
    }
    free(b);

    /* An empty tensor may sit anywhere inside the data region. */
    h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}";
    b = st_file(h, strlen(h), 8, &n);
    s = md_st_open_memory(b, n, "emptyinside", &f);
    CHECK(s == MD_OK, "empty tensor inside another's range is not an overlap");
    if (s == MD_OK)
        md_st_close(f);
    free(b);
}

/* ---- paramsets --------------------------------------------------------------- */

static md_paramset *make_ps(int variant)
{
    md_paramset *ps = md_paramset_new();
    int64_t s0[] = {3, 4}, s1[] = {4}, s2[] = {2, 2, 2}, s3[] = {4, 3};
    md_param_add(ps, "enc.w", 2, variant == 2 ? s3 : s0);
    md_param_add(ps, "enc.b", 1, s1);
    if (variant != 1)
        md_param_add(ps, "dec.w", 3, s2);
    if (variant == 3)
        md_param_add(ps, "extra", 1, s1);
    if (md_paramset_alloc(ps) != MD_OK) {
        md_paramset_free(ps);
        return NULL;
    }
    return ps;
}

static void test_paramset(void)
{
    char p32[600], p16[600];
    path_in(p32, sizeof p32, "params-f32.safetensors");
    path_in(p16, sizeof p16, "params-bf16.safetensors");
    md_paramset *ps = make_ps(0);
    for (int i = 0; i < md_paramset_count(ps); i++)
        md_init_normal(md_paramset_get(ps, i), 7 + (uint64_t)i, 0.f, 1.f);
    const char *keys[] = {"model", "step"}, *vals[] = {"tiny", "100"};
    CHECK(md_st_save_paramset(p32, ps, MD_F32, 2, keys, vals) == MD_OK, "save paramset F32");
    CHECK(md_st_save_paramset(p16, ps, MD_BF16, 0, NULL, NULL) == MD_OK, "save paramset BF16");

    md_paramset *q = make_ps(0);
    CHECK(md_st_load_paramset(p32, q) == MD_OK, "load paramset F32");
    int64_t n = md_paramset_numel(ps);
    CHECK(memcmp(md_paramset_values(ps), md_paramset_values(q), (size_t)n * 4) == 0, "paramset F32 exact");
    CHECK(md_st_load_paramset(p16, q) == MD_OK, "load paramset BF16");
    bool ok = true;
    const float *x = md_paramset_values(ps), *y = md_paramset_values(q);
    for (int64_t i = 0; i < n; i++)
        ok = ok && fabsf(x[i] - y[i]) <= fabsf(x[i]) / 256;
    CHECK(ok, "paramset BF16 within rounding");

    md_st_file *f;
    if (md_st_open(p32, &f) == MD_OK) {
        CHECK(md_st_meta(f, "step") && strcmp(md_st_meta(f, "step"), "100") == 0, "paramset metadata saved");
        md_st_close(f);
    }

    /* Errors leave the destination unchanged. */
    md_paramset *r = make_ps(3);
    md_init_const(md_paramset_get(r, 0), 9.f);
    md_clear_error();
    CHECK(md_st_load_paramset(p32, r) == MD_ERR_FORMAT && strstr(md_last_error(), "parameter \"extra\" is missing"),
          "load paramset: missing parameter named");
    CHECK(md_paramset_get(r, 0)->data[0] == 9.f, "failed load leaves the paramset unchanged");
    md_paramset_free(r);
    r = make_ps(1);
    md_clear_error();
    CHECK(md_st_load_paramset(p32, r) == MD_ERR_FORMAT &&
              strstr(md_last_error(), "1 tensor the model does not have: \"dec.w\""),
          "load paramset: extra tensor named");
    md_paramset_free(r);
    r = make_ps(2);
    md_clear_error();
    CHECK(md_st_load_paramset(p32, r) == MD_ERR_FORMAT &&
              strstr(md_last_error(), "tensor \"enc.w\": has shape [3, 4] but the destination needs [4, 3]"),
          "load paramset: shape mismatch named");
    md_paramset_free(r);
    char missing[600];
    path_in(missing, sizeof missing, "missing.safetensors");
    md_clear_error();
    CHECK(md_st_load_paramset(missing, q) == MD_ERR_IO && strstr(md_last_error(), "cannot open: No such file"),
          "load paramset: missing file is an IO error");
    md_clear_error();
    md_st_file *fd = NULL;
    CHECK(md_st_open(g_dir, &fd) == MD_ERR_IO && fd == NULL && strstr(md_last_error(), "is a folder"),
          "open a folder is an IO error");
    md_paramset_free(ps);
    md_paramset_free(q);
    unlink(p32);
    unlink(p16);
}

/* ---- malformed files --------------------------------------------------------- */

static void test_malformed(const char *good_path)
{
    size_t n;
    unsigned char *b;

    expect_reject("empty", (const unsigned char *)"", 0, "file is 0 bytes, too short");
    expect_reject("five-bytes", (const unsigned char *)"\x02\0\0\0\0", 5, "file is 5 bytes, too short");
    b = raw_file(0, "{}", 2, &n);
    expect_reject("header-length-0", b, n, "header length is 0");
    free(b);
    b = raw_file((uint64_t)1 << 40, "{}", 2, &n);
    expect_reject("huge-header-length", b, n, "header length 1099511627776 exceeds the limit of 16000000");
    free(b);
    b = raw_file(UINT64_MAX, "{}", 2, &n);
    expect_reject("max-header-length", b, n, "exceeds the limit");
    free(b);
    b = raw_file(100, "{\"a\":1}", 7, &n);
    expect_reject("header-past-end", b, n, "header length 100 runs past the end of the file (7 bytes");
    free(b);

    /* A good file truncated at several points. */
    size_t gn;
    unsigned char *good = read_file(good_path, &gn);
    uint64_t hl = 0;
    for (int k = 7; good && k >= 0; k--)
        hl = (hl << 8) | good[k];
    if (good && gn > 8 + hl + 8) {
        expect_reject("truncated-4", good, 4, "file is 4 bytes");
        expect_reject("truncated-8", good, 8, "runs past the end of the file (0 bytes");
        expect_reject("truncated-mid-header", good, 8 + (size_t)hl / 2, "runs past the end of the file");
        expect_reject("truncated-header-end", good, 8 + (size_t)hl - 1, "runs past the end of the file");
        expect_reject("truncated-no-data", good, 8 + (size_t)hl, "run past the end of the data region (0 bytes)");
        expect_reject("truncated-mid-data", good, 8 + (size_t)hl + 20, "run past the end of the data region (20 bytes)");
        expect_reject("truncated-last-byte", good, gn - 1, "run past the end of the data region");
    } else {
        result(false, "truncation cases", "good file missing");
    }
    free(good);

    reject_hdr("bad-json", "{\"w\": ", 0, "header: invalid JSON at byte 6: unexpected end of input");
    reject_hdr("bad-json-2", "{\"w\" {}}", 0, "expected ':' after object key");
    reject_hdr("trailing-garbage", "{} x", 0, "unexpected 'x' after the value");
    size_t nn;
    b = st_file("{}\0\0\0\0\0\0", 8, 0, &nn);
    expect_reject("nul-padding", b, nn, "unexpected byte 0x00 after the value");
    free(b);
    reject_hdr("invalid-utf8", "{\"w\xff\": {}}", 0, "invalid UTF-8");
    reject_hdr("header-array", "[1, 2]", 0, "header is an array, not an object");
    reject_hdr("header-string", "\"x\"", 0, "header is a string, not an object");
    reject_hdr("entry-number", "{\"w\": 5}", 0, "tensor \"w\": entry is a number, not an object");
    reject_hdr("missing-dtype", "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
               "tensor \"w\": missing \"dtype\"");
    reject_hdr("missing-shape", "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4,
               "tensor \"w\": missing \"shape\"");
    reject_hdr("missing-data-offsets", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4,
               "tensor \"w\": missing \"data_offsets\"");
    reject_hdr("dtype-number", "{\"w\": {\"dtype\": 32, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
               "\"dtype\" is a number, not a string");
    reject_hdr("unknown-dtype-f64", "{\"w\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8,
               "tensor \"w\": unsupported dtype \"F64\"");
    reject_hdr("unknown-dtype-bool", "{\"w\": {\"dtype\": \"BOOL\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
               "unsupported dtype \"BOOL\"");
    reject_hdr("lowercase-dtype", "{\"w\": {\"dtype\": \"f32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
               "unsupported dtype \"f32\"");
    reject_hdr("shape-string", "{\"w\": {\"dtype\": \"F32\", \"shape\": \"1\", \"data_offsets\": [0, 4]}}", 4,
               "\"shape\" is a string, not an array");
    reject_hdr("negative-dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -3], \"data_offsets\": [0, 4]}}", 4,
               "tensor \"w\": shape[1] is not a non-negative integer");
    reject_hdr("fractional-dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]}}", 8,
               "shape[0] is not a non-negative integer");
    reject_hdr("string-dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1, \"2\"], \"data_offsets\": [0, 8]}}", 8,
               "shape[1] is not a non-negative integer");
    reject_hdr("too-many-dims",
               "{\"w\": {\"dtype\": \"F32\", \"shape\": [1, 1, 1, 1, 1, 1], \"data_offsets\": [0, 4]}}", 4,
               "shape has 6 dims; Medley supports at most 5");
    reject_hdr("numel-overflow",
               "{\"w\": {\"dtype\": \"U8\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 4]}}", 4,
               "shape [4294967296, 4294967296] has more elements than fit in 64 bits");
    reject_hdr("bytes-overflow",
               "{\"w\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904], \"data_offsets\": [0, 4]}}", 4,
               "more bytes than fit in 64 bits");
    reject_hdr("offsets-three", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 8,
               "\"data_offsets\" must be an array [begin, end], found an array of another length");
    reject_hdr("offsets-object", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": {}}}", 8,
               "must be an array [begin, end], found an object");
    reject_hdr("offsets-negative", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 8,
               "data_offsets must be non-negative integers");
    reject_hdr("offsets-float", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4.0]}}", 8,
               "data_offsets must be non-negative integers");
    reject_hdr("offsets-huge", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 1e30]}}", 8,
               "data_offsets must be non-negative integers");
    reject_hdr("offsets-reversed", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8,
               "data_offsets [8, 4] begin after they end");
    reject_hdr("offsets-wrong-size", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 12]}}", 24,
               "tensor \"w\": data_offsets [0, 12] hold 12 bytes but shape [2, 3] of F32 needs 24");
    reject_hdr("wrong-dtype-size", "{\"w\": {\"dtype\": \"F16\", \"shape\": [2, 3], \"data_offsets\": [0, 24]}}", 24,
               "data_offsets [0, 24] hold 24 bytes but shape [2, 3] of F16 needs 12");
    reject_hdr("offsets-past-end", "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}", 20,
               "tensor \"w\": data_offsets [8, 24] run past the end of the data region (20 bytes)");
    reject_hdr("offsets-int64-max",
               "{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [9223372036854775806, "
               "9223372036854775807]}}", 8, "run past the end of the data region");
    reject_hdr("overlap",
               "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
               " \"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}", 24,
               "tensors \"a\" [0, 16] and \"b\" [8, 24] overlap");
    reject_hdr("overlap-contained",
               "{\"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [4, 6]},"
               " \"c\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [10, 12]},"
               " \"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16,
               "tensors \"a\" [0, 16] and \"b\" [4, 6] overlap");
    reject_hdr("overlap-after-long",
               "{\"a\": {\"dtype\": \"U8\", \"shape\": [16], \"data_offsets\": [0, 16]},"
               " \"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [2, 4]},"
               " \"c\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [8, 10]}}", 16,
               "overlap");
    reject_hdr("same-range",
               "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
               " \"b\": {\"dtype\": \"I32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
               "tensors \"a\" [0, 4] and \"b\" [0, 4] overlap");
    reject_hdr("duplicate-name",
               "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
               " \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
               "duplicate key \"w\"");
    reject_hdr("nul-in-name", "{\"a\\u0000b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
               "tensor name at header byte 1 contains a NUL character");
    reject_hdr("metadata-array", "{\"__metadata__\": [\"a\"]}", 0, "__metadata__ is an array, not an object");
    reject_hdr("metadata-number", "{\"__metadata__\": {\"ok\": \"1\", \"n\": 1.5}}", 0,
               "__metadata__ value for \"n\" is a number, not a string");
    reject_hdr("metadata-null", "{\"__metadata__\": {\"n\": null}}", 0,
               "__metadata__ value for \"n\" is null, not a string");
    reject_hdr("metadata-nan", "{\"__metadata__\": {\"n\": NaN}}", 0, "NaN and Infinity are not JSON numbers");
    reject_hdr("metadata-neg-infinity", "{\"__metadata__\": {\"n\": -Infinity}}", 0,
               "NaN and Infinity are not JSON numbers");
    reject_hdr("duplicate-metadata", "{\"__metadata__\": {}, \"__metadata__\": {}}", 0,
               "duplicate key \"__metadata__\"");

    /* Deep nesting inside an entry stays bounded. */
    char deep[400];
    size_t o = (size_t)snprintf(deep, sizeof deep, "{\"w\": ");
    for (int k = 0; k < 100; k++)
        deep[o++] = '[';
    deep[o] = 0;
    reject_hdr("deep-nesting", deep, 0, "nesting deeper than 64");
}

/* ---- seed corpus ----------------------------------------------------------- */

static int write_seeds(const char *dir)
{
    char p[700];
    int bad = 0;
    md_st_writer *w = sample_writer();
    snprintf(p, sizeof p, "%s/mixed.safetensors", dir);
    bad |= !w || md_st_writer_save(w, p) != MD_OK;
    md_st_writer_free(w);

    w = md_st_writer_new();
    float v[6] = {1, -2, 3.5f, 0, 1e-3f, 65504};
    int64_t s23[] = {2, 3};
    bad |= md_st_writer_add_f32(w, "w", MD_F16, 2, s23, v) != MD_OK;
    bad |= md_st_writer_meta(w, "format", "pt") != MD_OK;
    snprintf(p, sizeof p, "%s/f16.safetensors", dir);
    bad |= md_st_writer_save(w, p) != MD_OK;
    md_st_writer_free(w);

    struct { const char *name, *hdr; size_t ndata; } raw[] = {
        {"empty-header", "{}      ", 0},
        {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24},
        {"escapes", "{\"__metadata__\":{\"k\\u00e9\":\"\\ud83d\\ude00\\n\"},"
                    "\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,2]}}", 2},
    };
    for (size_t k = 0; k < sizeof raw / sizeof *raw; k++) {
        size_t n;
        unsigned char *b = st_file(raw[k].hdr, strlen(raw[k].hdr), raw[k].ndata, &n);
        snprintf(p, sizeof p, "%s/%s.safetensors", dir, raw[k].name);
        bad |= !write_file(p, b, n);
        free(b);
    }
    /* The harness also feeds every input to the JSON parser. */
    const char *js = "{\"a\": [1, -0.5e3, true, false, null, \"\\u00e9\\ud83d\\ude00\\n\"], \"b\": {}}";
    snprintf(p, sizeof p, "%s/plain.json", dir);
    bad |= !write_file(p, js, strlen(js));
    printf("%s seeds in %s\n", bad ? "FAILED writing" : "wrote", dir);
    return bad ? 1 : 0;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    md_log_set_callback(quiet_log, NULL);
    if (argc == 3 && strcmp(argv[1], "--seeds") == 0)
        return write_seeds(argv[2]);

    const char *base = getenv("MEDLEY_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/medley-st-XXXXXX", base);
    if (!mkdtemp(g_dir)) {
        printf("FAIL cannot create a folder under %s: %s\n", base, strerror(errno));
        return 1;
    }

    char good[600];
    test_json();
    test_roundtrip(good, sizeof good);
    test_paramset();
    test_malformed(good);
    remove_dir(g_dir);

    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
