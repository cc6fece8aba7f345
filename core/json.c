/* json.c — strict JSON parser into a pooled DOM, and a small writer.
 *
 * Parser: recursive descent, depth bounded by MD_JSON_MAX_DEPTH. Children of
 * the container being parsed are pushed on one scratch stack shared by the
 * whole parse; when the container closes they are copied into the pool as
 * one array, so every array/object is contiguous and keeps file order.
 * Pool: a list of chunks, bump-allocated, freed together. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "json.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    FLAG_INT = 1,          /* literal was an integer that fits int64: u.i holds it */
    FLAG_NEG_ZERO = 2      /* the integer literal was "-0" */
};

/* 40 bytes. Sizes and offsets are 32-bit: input is at most MD_JSON_MAX_SIZE
 * (< 2^32) bytes, and a string or container is never longer than its text.
 * An integer literal keeps only u.i: (double)u.i equals strtod of the same
 * literal, both being the correctly rounded value. */
struct md_json {
    const char *key;       /* object members: NUL-terminated key; else NULL */
    union {
        double num;
        int64_t i;
        const char *str;   /* NUL-terminated, len bytes before the NUL */
        md_json *items;    /* len values */
    } u;
    uint32_t keylen;
    uint32_t keyoff;       /* byte offset of the key's opening quote */
    uint32_t len;          /* string bytes or item count */
    uint32_t offset;       /* byte offset of the value in the text */
    unsigned char type;
    unsigned char flags;
    bool b;
};

_Static_assert(MD_JSON_MAX_SIZE < ((size_t)1 << 32), "offsets are 32-bit");

typedef struct pool_chunk {
    struct pool_chunk *next;
    size_t size, used;
    max_align_t data[];    /* size bytes */
} pool_chunk;

struct md_json_doc {
    pool_chunk *chunks;
    md_json root;
};

/* ---- pool ---------------------------------------------------------------- */

#define POOL_MIN_CHUNK ((size_t)4096)
#define POOL_MAX_CHUNK ((size_t)1 << 20)

static void *pool_alloc(md_json_doc *d, size_t bytes)
{
    bytes = (bytes + 15) & ~(size_t)15;
    pool_chunk *c = d->chunks;
    if (!c || c->size - c->used < bytes) {
        size_t want = c ? MD_MIN(c->size * 2, POOL_MAX_CHUNK) : POOL_MIN_CHUNK;
        if (want < bytes)
            want = bytes;
        c = malloc(sizeof *c + want);
        if (!c)
            return NULL;
        c->size = want;
        c->used = 0;
        c->next = d->chunks;
        d->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += bytes;
    return p;
}

void md_json_free(md_json_doc *doc)
{
    if (!doc)
        return;
    pool_chunk *c = doc->chunks;
    while (c) {
        pool_chunk *n = c->next;
        free(c);
        c = n;
    }
    free(doc);
}

/* ---- locale ---------------------------------------------------------------
 * strtod and printf follow LC_NUMERIC, which a GUI host may set to a locale
 * with a decimal comma; both directions switch this thread to "C". */

static locale_t g_c_locale;
static pthread_once_t g_c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void) { g_c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

static locale_t c_locale_enter(void)
{
    pthread_once(&g_c_locale_once, c_locale_init);
    return g_c_locale ? uselocale(g_c_locale) : (locale_t)0;
}

static void c_locale_leave(locale_t old)
{
    if (old)
        uselocale(old);
}

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s[0..n) (n >= 1), or 0 if invalid
 * (Unicode table 3-7: no overlongs, no surrogates, nothing past U+10FFFF). */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c == 0xe0) { len = 3; lo = 0xa0; }
    else if (c >= 0xe1 && c <= 0xec) len = 3;
    else if (c == 0xed) { len = 3; hi = 0x9f; }
    else if (c >= 0xee && c <= 0xef) len = 3;
    else if (c == 0xf0) { len = 4; lo = 0x90; }
    else if (c >= 0xf1 && c <= 0xf3) len = 4;
    else if (c == 0xf4) { len = 4; hi = 0x8f; }
    else return 0;
    if (n < len)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xbf)
            return 0;
    return len;
}

static size_t utf8_put(unsigned char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Copies up to max bytes of s into out for a message, '?' for control bytes. */
static const char *printable(char *out, size_t outsz, const char *s, size_t n)
{
    size_t max = outsz - 4, o = 0;
    for (size_t k = 0; k < n && o < max; k++)
        out[o++] = ((unsigned char)s[k] < 0x20 || s[k] == 0x7f) ? '?' : s[k];
    if (n > max)
        out[o++] = '.', out[o++] = '.', out[o++] = '.';
    out[o] = 0;
    return out;
}

/* ---- parser -------------------------------------------------------------- */

typedef struct parser {
    const unsigned char *s;
    size_t n, pos;
    md_json_doc *doc;
    md_json *stack;        /* children of open containers */
    size_t sp, scap;
    bool oom;
    bool failed;
    size_t err_off;
    char err[200];
} parser;

static bool fail(parser *p, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static bool fail(parser *p, size_t off, const char *fmt, ...)
{
    if (p->failed)
        return false;
    p->failed = true;
    p->err_off = off;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    return false;
}

static bool fail_oom(parser *p)
{
    p->oom = true;
    return fail(p, p->pos, "out of memory");
}

static void skip_ws(parser *p)
{
    while (p->pos < p->n) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static const char *describe_char(char *buf, size_t sz, const parser *p)
{
    if (p->pos >= p->n)
        return "end of input";
    unsigned char c = p->s[p->pos];
    if (c >= 0x21 && c < 0x7f)
        snprintf(buf, sz, "'%c'", c);
    else
        snprintf(buf, sz, "byte 0x%02x", c);
    return buf;
}

static bool push(parser *p, const md_json *v)
{
    if (p->sp == p->scap) {
        size_t nc = p->scap ? p->scap * 2 : 64;
        md_json *ns = realloc(p->stack, nc * sizeof *ns);
        if (!ns)
            return fail_oom(p);
        p->stack = ns;
        p->scap = nc;
    }
    p->stack[p->sp++] = *v;
    return true;
}

static int hex4(const unsigned char *s)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        int c = s[k], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

/* At the opening quote. Decoded text goes to the pool: it is never longer
 * than the raw text (each escape shrinks or keeps its length). */
static bool parse_string(parser *p, const char **out, size_t *out_len)
{
    size_t start = p->pos++;
    size_t end = p->pos;
    while (end < p->n && p->s[end] != '"')
        end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->n)
        return fail(p, start, "unterminated string");
    unsigned char *o = pool_alloc(p->doc, end - p->pos + 1);
    if (!o)
        return fail_oom(p);
    size_t k = 0;
    while (p->pos < end) {
        unsigned char c = p->s[p->pos];
        if (c < 0x20)
            return fail(p, p->pos, "control character 0x%02x in string (escape it)", c);
        if (c != '\\') {
            size_t l = utf8_valid_len(p->s + p->pos, end - p->pos);
            if (!l)
                return fail(p, p->pos, "invalid UTF-8 in string");
            memcpy(o + k, p->s + p->pos, l);
            k += l;
            p->pos += l;
            continue;
        }
        unsigned char e = p->s[p->pos + 1];   /* exists: end > pos + 1 by the scan */
        size_t esc = p->pos;
        p->pos += 2;
        switch (e) {
        case '"': o[k++] = '"'; break;
        case '\\': o[k++] = '\\'; break;
        case '/': o[k++] = '/'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            int cp = end - p->pos >= 4 ? hex4(p->s + p->pos) : -1;
            if (cp < 0)
                return fail(p, esc, "\\u must be followed by 4 hex digits");
            p->pos += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail(p, esc, "lone low surrogate \\u%04x", (unsigned)cp);
            if (cp >= 0xd800 && cp <= 0xdbff) {
                int lo = -1;
                if (end - p->pos >= 6 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u')
                    lo = hex4(p->s + p->pos + 2);
                if (lo < 0xdc00 || lo > 0xdfff)
                    return fail(p, esc, "high surrogate \\u%04x not followed by a low surrogate",
                                (unsigned)cp);
                p->pos += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            k += utf8_put(o + k, (unsigned)cp);
            break;
        }
        default:
            if (e >= 0x21 && e < 0x7f)
                return fail(p, esc, "invalid escape \\%c", e);
            return fail(p, esc, "invalid escape (backslash then byte 0x%02x)", e);
        }
    }
    o[k] = 0;
    p->pos = end + 1;
    *out = (const char *)o;
    *out_len = k;
    return true;
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static bool parse_number(parser *p, md_json *v)
{
    size_t start = p->pos, q = p->pos;
    const unsigned char *s = p->s;
    if (q < p->n && s[q] == '-')
        q++;
    if (q < p->n && (s[q] == 'I' || s[q] == 'N'))
        return fail(p, start, "NaN and Infinity are not JSON numbers");
    if (q >= p->n || !is_digit(s[q]))
        return fail(p, start, "'-' must be followed by a digit");
    if (s[q] == '0' && q + 1 < p->n && is_digit(s[q + 1]))
        return fail(p, start, "leading zeros are not allowed in numbers");
    while (q < p->n && is_digit(s[q]))
        q++;
    bool integer = true;
    if (q < p->n && s[q] == '.') {
        integer = false;
        q++;
        if (q >= p->n || !is_digit(s[q]))
            return fail(p, q, "a digit must follow the decimal point");
        while (q < p->n && is_digit(s[q]))
            q++;
    }
    if (q < p->n && (s[q] == 'e' || s[q] == 'E')) {
        integer = false;
        q++;
        if (q < p->n && (s[q] == '+' || s[q] == '-'))
            q++;
        if (q >= p->n || !is_digit(s[q]))
            return fail(p, q, "a digit must follow the exponent");
        while (q < p->n && is_digit(s[q]))
            q++;
    }
    size_t len = q - start;
    v->type = MD_JSON_NUMBER;
    v->offset = (uint32_t)start;

    if (integer) {
        /* Accumulate negatively so INT64_MIN fits. */
        bool neg = s[start] == '-', ok = true;
        int64_t acc = 0;
        for (size_t k = start + neg; k < q && ok; k++)
            ok = !__builtin_mul_overflow(acc, 10, &acc) && !__builtin_sub_overflow(acc, s[k] - '0', &acc);
        if (ok && !neg)
            ok = !__builtin_mul_overflow(acc, -1, &acc);
        if (ok) {
            v->flags |= FLAG_INT | (neg && acc == 0 ? FLAG_NEG_ZERO : 0);
            v->u.i = acc;
            p->pos = q;
            return true;
        }
    }

    char small[64];
    char *tmp = len < sizeof small ? small : malloc(len + 1);
    if (!tmp)
        return fail_oom(p);
    memcpy(tmp, s + start, len);
    tmp[len] = 0;
    double d = strtod(tmp, NULL);   /* grammar already checked; C locale is active */
    if (tmp != small)
        free(tmp);
    if (!isfinite(d))
        return fail(p, start, "number out of the range of a double");
    v->u.num = d;
    p->pos = q;
    return true;
}

static bool parse_value(parser *p, md_json *v, int depth);

static bool literal(parser *p, const char *word, md_json *v, md_json_type t, bool b)
{
    size_t l = strlen(word);
    if (p->n - p->pos < l || memcmp(p->s + p->pos, word, l) != 0)
        return false;
    v->type = (unsigned char)t;
    v->b = b;
    v->offset = (uint32_t)p->pos;
    p->pos += l;
    return true;
}

typedef struct key_ref { const md_json *m; } key_ref;

static int key_cmp(const void *a, const void *b)
{
    const md_json *x = ((const key_ref *)a)->m, *y = ((const key_ref *)b)->m;
    if (x->keylen != y->keylen)
        return x->keylen < y->keylen ? -1 : 1;
    int c = memcmp(x->key, y->key, x->keylen);
    if (c)
        return c;
    return x->keyoff < y->keyoff ? -1 : x->keyoff > y->keyoff;
}

/* Members m[0..n): pairwise for small objects, else sorted (O(n log n), so a
 * hostile object with a million keys costs no more than sorting them). */
static bool check_dup_keys(parser *p, const md_json *m, size_t n)
{
    const md_json *dup = NULL, *first = NULL;
    if (n <= 16) {
        for (size_t a = 1; a < n && !dup; a++)
            for (size_t b = 0; b < a; b++)
                if (m[a].keylen == m[b].keylen && memcmp(m[a].key, m[b].key, m[a].keylen) == 0) {
                    dup = &m[a];
                    first = &m[b];
                    break;
                }
    } else {
        key_ref *r = malloc(n * sizeof *r);
        if (!r)
            return fail_oom(p);
        for (size_t k = 0; k < n; k++)
            r[k].m = &m[k];
        qsort(r, n, sizeof *r, key_cmp);
        for (size_t k = 1; k < n; k++)
            if (r[k].m->keylen == r[k - 1].m->keylen &&
                memcmp(r[k].m->key, r[k - 1].m->key, r[k].m->keylen) == 0) {
                dup = r[k].m;
                first = r[k - 1].m;
                break;
            }
        free(r);
    }
    if (!dup)
        return true;
    char buf[80];
    return fail(p, dup->keyoff, "duplicate key \"%s\" (first at byte %zu)",
                printable(buf, sizeof buf, dup->key, dup->keylen), (size_t)first->keyoff);
}

static bool parse_container(parser *p, md_json *v, int depth, bool obj)
{
    size_t start = p->pos++;
    if (depth >= MD_JSON_MAX_DEPTH)
        return fail(p, start, "nesting deeper than %d levels", MD_JSON_MAX_DEPTH);
    size_t base = p->sp;
    char cb[24];
    char close = obj ? '}' : ']';
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == close) {
        p->pos++;
    } else {
        for (;;) {
            md_json item;
            memset(&item, 0, sizeof item);
            skip_ws(p);
            if (obj) {
                if (p->pos >= p->n || p->s[p->pos] != '"')
                    return fail(p, p->pos, "expected a string key, found %s",
                                describe_char(cb, sizeof cb, p));
                item.keyoff = (uint32_t)p->pos;
                size_t kl;
                if (!parse_string(p, &item.key, &kl))
                    return false;
                item.keylen = (uint32_t)kl;
                skip_ws(p);
                if (p->pos >= p->n || p->s[p->pos] != ':')
                    return fail(p, p->pos, "expected ':' after object key, found %s",
                                describe_char(cb, sizeof cb, p));
                p->pos++;
            }
            const char *key = item.key;
            uint32_t keylen = item.keylen, keyoff = item.keyoff;
            if (!parse_value(p, &item, depth + 1))
                return false;
            item.key = key;
            item.keylen = keylen;
            item.keyoff = keyoff;
            if (!push(p, &item))
                return false;
            skip_ws(p);
            if (p->pos < p->n && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->n && p->s[p->pos] == close) {
                p->pos++;
                break;
            }
            return fail(p, p->pos, "expected ',' or '%c', found %s", close,
                        describe_char(cb, sizeof cb, p));
        }
    }
    size_t n = p->sp - base;
    v->type = obj ? MD_JSON_OBJECT : MD_JSON_ARRAY;
    v->offset = (uint32_t)start;
    v->len = (uint32_t)n;
    v->u.items = NULL;
    if (n) {
        md_json *items = pool_alloc(p->doc, n * sizeof *items);
        if (!items)
            return fail_oom(p);
        memcpy(items, p->stack + base, n * sizeof *items);
        v->u.items = items;
        if (obj && !check_dup_keys(p, items, n))
            return false;
    }
    p->sp = base;
    return true;
}

static bool parse_value(parser *p, md_json *v, int depth)
{
    char cb[24];
    skip_ws(p);
    if (p->pos >= p->n)
        return fail(p, p->pos, "unexpected end of input, expected a value");
    unsigned char c = p->s[p->pos];
    switch (c) {
    case '{': return parse_container(p, v, depth, true);
    case '[': return parse_container(p, v, depth, false);
    case '"': {
        v->type = MD_JSON_STRING;
        v->offset = (uint32_t)p->pos;
        size_t sl;
        bool ok = parse_string(p, &v->u.str, &sl);
        v->len = (uint32_t)sl;
        return ok;
    }
    case 't': if (literal(p, "true", v, MD_JSON_BOOL, true)) return true; break;
    case 'f': if (literal(p, "false", v, MD_JSON_BOOL, false)) return true; break;
    case 'n': if (literal(p, "null", v, MD_JSON_NULL, false)) return true; break;
    case 'N': case 'I':
        return fail(p, p->pos, "NaN and Infinity are not JSON numbers");
    case '+':
        return fail(p, p->pos, "numbers may not start with '+'");
    case '.':
        return fail(p, p->pos, "numbers must start with a digit");
    default:
        if (c == '-' || is_digit(c))
            return parse_number(p, v);
        break;
    }
    return fail(p, p->pos, "unexpected %s, expected a value", describe_char(cb, sizeof cb, p));
}

md_status md_json_parse(const char *text, size_t len, const char *label, md_json_doc **out)
{
    MD_ASSERT(out && (text || len == 0));
    *out = NULL;
    if (!label)
        label = "JSON";
    if (len > MD_JSON_MAX_SIZE) {
        md_log(MD_LOG_ERROR, "%s: %zu bytes of JSON exceed the limit of %zu", label, len,
               (size_t)MD_JSON_MAX_SIZE);
        return MD_ERR_FORMAT;
    }
    md_json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) {
        md_log(MD_LOG_ERROR, "%s: out of memory parsing JSON", label);
        return MD_ERR_ALLOC;
    }
    parser p;
    memset(&p, 0, sizeof p);
    p.s = (const unsigned char *)text;
    p.n = len;
    p.doc = doc;

    locale_t old = c_locale_enter();
    bool ok = parse_value(&p, &doc->root, 0);
    c_locale_leave(old);
    if (ok) {
        skip_ws(&p);
        if (p.pos < p.n) {
            char cb[24];
            ok = fail(&p, p.pos, "unexpected %s after the value", describe_char(cb, sizeof cb, &p));
        }
    }
    free(p.stack);
    if (!ok) {
        md_json_free(doc);
        if (p.oom) {
            md_log(MD_LOG_ERROR, "%s: out of memory parsing JSON", label);
            return MD_ERR_ALLOC;
        }
        md_log(MD_LOG_ERROR, "%s: invalid JSON at byte %zu: %s", label, p.err_off, p.err);
        return MD_ERR_FORMAT;
    }
    *out = doc;
    return MD_OK;
}

/* ---- accessors --------------------------------------------------------------- */

const md_json *md_json_root(const md_json_doc *doc) { return doc ? &doc->root : NULL; }

md_json_type md_json_type_of(const md_json *v) { return v ? (md_json_type)v->type : MD_JSON_NULL; }

const char *md_json_type_name(md_json_type t)
{
    switch (t) {
    case MD_JSON_NULL: return "null";
    case MD_JSON_BOOL: return "a boolean";
    case MD_JSON_NUMBER: return "a number";
    case MD_JSON_STRING: return "a string";
    case MD_JSON_ARRAY: return "an array";
    case MD_JSON_OBJECT: return "an object";
    }
    return "?";
}

size_t md_json_offset(const md_json *v) { return v ? v->offset : 0; }

static bool is_container(const md_json *v)
{
    return v && (v->type == MD_JSON_ARRAY || v->type == MD_JSON_OBJECT);
}

size_t md_json_len(const md_json *v) { return is_container(v) ? v->len : 0; }

const md_json *md_json_at(const md_json *v, size_t i)
{
    return is_container(v) && i < v->len ? &v->u.items[i] : NULL;
}

const char *md_json_key_at(const md_json *v, size_t i)
{
    return v && v->type == MD_JSON_OBJECT && i < v->len ? v->u.items[i].key : NULL;
}

size_t md_json_key_len_at(const md_json *v, size_t i)
{
    return v && v->type == MD_JSON_OBJECT && i < v->len ? v->u.items[i].keylen : 0;
}

size_t md_json_key_offset_at(const md_json *v, size_t i)
{
    return v && v->type == MD_JSON_OBJECT && i < v->len ? v->u.items[i].keyoff : 0;
}

const md_json *md_json_get(const md_json *obj, const char *key)
{
    if (!obj || obj->type != MD_JSON_OBJECT || !key)
        return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->len; i++) {
        const md_json *m = &obj->u.items[i];
        if (m->keylen == kl && memcmp(m->key, key, kl) == 0)
            return m;
    }
    return NULL;
}

const char *md_json_str(const md_json *v) { return v && v->type == MD_JSON_STRING ? v->u.str : NULL; }
size_t md_json_str_len(const md_json *v) { return v && v->type == MD_JSON_STRING ? v->len : 0; }

bool md_json_num(const md_json *v, double *out)
{
    if (!v || v->type != MD_JSON_NUMBER)
        return false;
    if (v->flags & FLAG_INT)
        *out = (v->flags & FLAG_NEG_ZERO) ? -0.0 : (double)v->u.i;
    else
        *out = v->u.num;
    return true;
}

bool md_json_int(const md_json *v, int64_t *out)
{
    if (!v || v->type != MD_JSON_NUMBER || !(v->flags & FLAG_INT))
        return false;
    *out = v->u.i;
    return true;
}

bool md_json_bool(const md_json *v, bool *out)
{
    if (!v || v->type != MD_JSON_BOOL)
        return false;
    *out = v->b;
    return true;
}

bool md_json_is_null(const md_json *v) { return v && v->type == MD_JSON_NULL; }

/* ---- writer ---------------------------------------------------------------- */

void md_json_buf_init(md_json_buf *b) { memset(b, 0, sizeof *b); }

void md_json_buf_free(md_json_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

char *md_json_buf_finish(md_json_buf *b, size_t *len_out)
{
    if (b->failed || !b->data) {
        bool failed = b->failed;
        md_json_buf_free(b);
        if (failed) {
            md_log(MD_LOG_ERROR, "out of memory writing JSON");
            return NULL;
        }
        b->data = malloc(1);   /* nothing was written: an empty string */
        if (!b->data) {
            md_log(MD_LOG_ERROR, "out of memory writing JSON");
            return NULL;
        }
        b->data[0] = 0;
    }
    MD_ASSERT(b->depth == 0);
    char *s = b->data;
    if (len_out)
        *len_out = b->len;
    memset(b, 0, sizeof *b);
    return s;
}

void md_json_buf_raw(md_json_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->cap - b->len <= n) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc - b->len <= n) {
            if (nc > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            nc *= 2;
        }
        char *nd = realloc(b->data, nc);
        if (!nd) {
            b->failed = true;
            return;
        }
        b->data = nd;
        b->cap = nc;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void put(md_json_buf *b, const char *s) { md_json_buf_raw(b, s, strlen(s)); }

/* Separator before a value: ',' between array items; nothing after a key. */
static void before_value(md_json_buf *b)
{
    if (b->after_key) {
        b->after_key = false;
        return;
    }
    MD_ASSERT(!b->is_obj[b->depth]);   /* object members need md_json_buf_key first */
    if (b->depth > 0 && b->nitems[b->depth])
        put(b, ",");
    b->nitems[b->depth] = 1;
}

static void begin(md_json_buf *b, bool obj)
{
    before_value(b);
    MD_ASSERT(b->depth < MD_JSON_MAX_DEPTH);
    b->depth++;
    b->nitems[b->depth] = 0;
    b->is_obj[b->depth] = obj;
    put(b, obj ? "{" : "[");
}

static void end(md_json_buf *b, bool obj)
{
    MD_ASSERT(b->depth > 0 && b->is_obj[b->depth] == obj && !b->after_key);
    b->depth--;
    put(b, obj ? "}" : "]");
}

void md_json_buf_begin_object(md_json_buf *b) { begin(b, true); }
void md_json_buf_end_object(md_json_buf *b) { end(b, true); }
void md_json_buf_begin_array(md_json_buf *b) { begin(b, false); }
void md_json_buf_end_array(md_json_buf *b) { end(b, false); }

static void put_escaped(md_json_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    put(b, "\"");
    size_t run = 0;   /* start of bytes not yet copied */
    for (size_t k = 0; k < n;) {
        unsigned char c = u[k];
        const char *rep = NULL;
        char hex[8];
        size_t adv = 1;
        switch (c) {
        case '"': rep = "\\\""; break;
        case '\\': rep = "\\\\"; break;
        case '\b': rep = "\\b"; break;
        case '\f': rep = "\\f"; break;
        case '\n': rep = "\\n"; break;
        case '\r': rep = "\\r"; break;
        case '\t': rep = "\\t"; break;
        default:
            if (c < 0x20) {
                snprintf(hex, sizeof hex, "\\u%04x", c);
                rep = hex;
            } else if (c >= 0x80) {
                adv = utf8_valid_len(u + k, n - k);
                if (!adv) {
                    rep = "\xef\xbf\xbd";   /* U+FFFD: the output stays valid UTF-8 */
                    adv = 1;
                }
            }
        }
        if (rep) {
            md_json_buf_raw(b, s + run, k - run);
            put(b, rep);
            run = k + adv;
        }
        k += adv;
    }
    md_json_buf_raw(b, s + run, n - run);
    put(b, "\"");
}

void md_json_buf_key(md_json_buf *b, const char *key) { md_json_buf_keyn(b, key, strlen(key)); }

void md_json_buf_keyn(md_json_buf *b, const char *key, size_t n)
{
    MD_ASSERT(b->depth > 0 && b->is_obj[b->depth] && !b->after_key);
    if (b->nitems[b->depth])
        put(b, ",");
    b->nitems[b->depth] = 1;
    put_escaped(b, key, n);
    put(b, ":");
    b->after_key = true;
}

void md_json_buf_strn(md_json_buf *b, const char *s, size_t n)
{
    before_value(b);
    put_escaped(b, s, n);
}

void md_json_buf_str(md_json_buf *b, const char *s) { md_json_buf_strn(b, s, strlen(s)); }

void md_json_buf_num(md_json_buf *b, double v)
{
    before_value(b);
    if (!isfinite(v)) {
        put(b, "null");
        return;
    }
    char tmp[40];
    locale_t old = c_locale_enter();
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    c_locale_leave(old);
    put(b, tmp);
}

void md_json_buf_int(md_json_buf *b, int64_t v)
{
    before_value(b);
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    put(b, tmp);
}

void md_json_buf_bool(md_json_buf *b, bool v)
{
    before_value(b);
    put(b, v ? "true" : "false");
}

void md_json_buf_null(md_json_buf *b)
{
    before_value(b);
    put(b, "null");
}
