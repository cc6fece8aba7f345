/* tensor.c — dtypes, arenas, graphs with their tape, parameter sets. */
#include "tensor.h"
#include "kernels_cpu.h"

#include "backend.h"
#include "rng.h"
#include "simd.h"

#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- dtypes ------------------------------------------------------------ */

size_t md_dtype_size(md_dtype t)
{
    switch (t) {
    case MD_F32: case MD_I32: return 4;
    case MD_F16: case MD_BF16: return 2;
    case MD_I64: return 8;
    case MD_U8: return 1;
    }
    return 0;
}

static const char *const dtype_names[] = {"F32", "F16", "BF16", "I32", "I64", "U8"};

const char *md_dtype_name(md_dtype t)
{
    return (unsigned)t < sizeof dtype_names / sizeof *dtype_names ? dtype_names[t] : "?";
}

int md_dtype_from_name(const char *name)
{
    for (int i = 0; i < (int)(sizeof dtype_names / sizeof *dtype_names); i++)
        if (strcmp(name, dtype_names[i]) == 0)
            return i;
    return -1;
}

uint16_t md_f32_to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);   /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float md_bf16_to_f32(uint16_t x)
{
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t md_f32_to_f16(float x)
{
    return (uint16_t)_cvtss_sh(x, 0);
}

float md_f16_to_f32(uint16_t x)
{
    return _cvtsh_ss(x);
}

void md_convert(void *dst, md_dtype dt, const void *src, md_dtype st, size_t n)
{
    if (dt == st) {
        memcpy(dst, src, n * md_dtype_size(dt));
        return;
    }
    MD_ASSERT(dt == MD_F32 || st == MD_F32);
    if (dt == MD_F32) {
        float *d = dst;
        if (st == MD_BF16) {
            const uint16_t *s = src;
            for (size_t i = 0; i < n; i++) d[i] = md_bf16_to_f32(s[i]);
        } else if (st == MD_F16) {
            const uint16_t *s = src;
            size_t i = 0;
#if defined(__AVX512F__)
            for (; i + 16 <= n; i += 16)   /* the same conversion, 16 at a time */
                _mm512_storeu_ps(d + i, md_load_half16(s + i));
#endif
            for (; i < n; i++) d[i] = md_f16_to_f32(s[i]);
        } else if (st == MD_I32) {
            const int32_t *s = src;
            for (size_t i = 0; i < n; i++) d[i] = (float)s[i];
        } else if (st == MD_I64) {
            const int64_t *s = src;
            for (size_t i = 0; i < n; i++) d[i] = (float)s[i];
        } else {
            const uint8_t *s = src;
            for (size_t i = 0; i < n; i++) d[i] = (float)s[i];
        }
    } else {
        const float *s = src;
        if (dt == MD_BF16) {
            uint16_t *d = dst;
            for (size_t i = 0; i < n; i++) d[i] = md_f32_to_bf16(s[i]);
        } else if (dt == MD_F16) {
            uint16_t *d = dst;
            size_t i = 0;
#if defined(__AVX512F__)
            for (; i + 16 <= n; i += 16)
                md_store_half16(d + i, _mm512_loadu_ps(s + i));
#endif
            for (; i < n; i++) d[i] = md_f32_to_f16(s[i]);
        } else if (dt == MD_I32) {
            int32_t *d = dst;
            for (size_t i = 0; i < n; i++) d[i] = (int32_t)s[i];
        } else if (dt == MD_I64) {
            int64_t *d = dst;
            for (size_t i = 0; i < n; i++) d[i] = (int64_t)s[i];
        } else {
            uint8_t *d = dst;
            for (size_t i = 0; i < n; i++) d[i] = (uint8_t)fminf(fmaxf(s[i], 0.f), 255.f);
        }
    }
}

/* ---- tensors ------------------------------------------------------------ */

int64_t md_numel(const md_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

bool md_is_contiguous(const md_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s)
            return false;
        s *= t->shape[i];
    }
    return true;
}

bool md_same_shape(const md_tensor *a, const md_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

void md_tensor_set_shape(md_tensor *t, int ndim, const int64_t *shape)
{
    MD_ASSERT(ndim >= 1 && ndim <= MD_MAX_DIMS);
    t->ndim = ndim;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        MD_ASSERT(shape[i] >= 0);
        t->shape[i] = shape[i];
        t->stride[i] = s;
        s *= shape[i];
    }
    for (int i = ndim; i < MD_MAX_DIMS; i++) {
        t->shape[i] = 1;
        t->stride[i] = 1;
    }
}

const char *md_shape_str(const md_tensor *t, char *buf, size_t n)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < t->ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
    return buf;
}

/* ---- arena --------------------------------------------------------------- */

#define ARENA_ALIGN 64

typedef struct arena_chunk {
    struct arena_chunk *next;   /* chunks stay in creation order */
    size_t size, used;
    unsigned char *base;
} arena_chunk;

/* Chunks are kept across resets and walked in the same order every cycle,
 * so a step that repeats the previous one's allocations lands on the same,
 * already-touched memory and allocates nothing. New chunks grow
 * geometrically (at least half the capacity so far), so the first step of a
 * configuration makes a handful of chunks, not hundreds. */
struct md_arena {
    arena_chunk *first, *cur;
    size_t used_total;          /* bytes handed out this cycle */
    size_t high_water;
    size_t capacity;
    size_t mallocs;
};

static arena_chunk *chunk_new(md_arena *a, size_t size)
{
    arena_chunk *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    size = (size + 4095) & ~(size_t)4095;
    c->base = aligned_alloc(4096, size);
    if (!c->base) {
        free(c);
        return NULL;
    }
    /* Touch once now, so steady-state steps never fault pages in. */
    memset(c->base, 0, size);
    c->size = size;
    c->used = 0;
    c->next = NULL;
    a->mallocs++;
    a->capacity += size;
    return c;
}

md_arena *md_arena_new(size_t initial_bytes)
{
    md_arena *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    if (initial_bytes < 65536)
        initial_bytes = 65536;
    a->first = a->cur = chunk_new(a, initial_bytes);
    if (!a->first) {
        free(a);
        md_log(MD_LOG_ERROR, "out of memory creating an arena of %zu bytes", initial_bytes);
        return NULL;
    }
    return a;
}

void md_arena_free(md_arena *a)
{
    if (!a)
        return;
    arena_chunk *c = a->first;
    while (c) {
        arena_chunk *n = c->next;
        free(c->base);
        free(c);
        c = n;
    }
    free(a);
}

void *md_arena_alloc(md_arena *a, size_t bytes)
{
    size_t need = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need == 0)
        need = ARENA_ALIGN;
    arena_chunk *c = a->cur;
    while (c->used + need > c->size) {
        if (!c->next) {
            arena_chunk *n = chunk_new(a, MD_MAX(need, a->capacity / 2));
            if (!n) {
                md_log(MD_LOG_ERROR, "out of memory: arena needs %zu more bytes", need);
                return NULL;
            }
            c->next = n;
        }
        c = c->next;
        c->used = 0;
    }
    a->cur = c;
    void *p = c->base + c->used;
    c->used += need;
    a->used_total += need;
    if (a->used_total > a->high_water)
        a->high_water = a->used_total;
    return p;
}

void md_arena_reset(md_arena *a)
{
    a->cur = a->first;
    a->first->used = 0;
    a->used_total = 0;
}

size_t md_arena_capacity(const md_arena *a) { return a->capacity; }
size_t md_arena_high_water(const md_arena *a) { return a->high_water; }
size_t md_arena_mallocs(const md_arena *a) { return a->mallocs; }

/* ---- graph ----------------------------------------------------------------- */

#define PROFILE_SLOTS 64

typedef struct prof_slot {
    const char *op;
    int64_t calls;
    double fwd, bwd;   /* seconds */
} prof_slot;

struct md_graph {
    md_arena *arena;
    md_node *tape;
    int ntape, captape;
    bool grad, training, bf16;
    uint64_t seed, streams;
    const md_backend *be;
    bool profile;
    double mark;                      /* end of the previous op */
    prof_slot prof[PROFILE_SLOTS];
};

static prof_slot *prof_find(md_graph *g, const char *op)
{
    for (int i = 0; i < PROFILE_SLOTS; i++) {
        if (g->prof[i].op == op || (g->prof[i].op && strcmp(g->prof[i].op, op) == 0))
            return &g->prof[i];
        if (!g->prof[i].op) {
            g->prof[i].op = op;
            return &g->prof[i];
        }
    }
    return NULL;   /* table full: further ops go unprofiled */
}

void md_graph_set_profile(md_graph *g, bool on)
{
    if (on)
        memset(g->prof, 0, sizeof g->prof);   /* start a fresh table */
    g->profile = on;
    g->mark = md_time_now();
}

static int prof_cmp(const void *a, const void *b)
{
    const prof_slot *x = a, *y = b;
    double tx = x->fwd + x->bwd, ty = y->fwd + y->bwd;
    return tx < ty ? 1 : tx > ty ? -1 : 0;
}

void md_graph_profile_print(const md_graph *g, void *fp)
{
    FILE *f = fp;
    if (!g->profile)
        return;
    prof_slot s[PROFILE_SLOTS];
    int n = 0;
    double tf = 0, tb = 0;
    for (int i = 0; i < PROFILE_SLOTS && g->prof[i].op; i++) {
        s[n++] = g->prof[i];
        tf += g->prof[i].fwd;
        tb += g->prof[i].bwd;
    }
    qsort(s, (size_t)n, sizeof *s, prof_cmp);
    fprintf(f, "%-24s %8s %10s %10s\n", "op (backward fn)", "calls", "fwd ms", "bwd ms");
    for (int i = 0; i < n; i++)
        fprintf(f, "%-24s %8lld %10.2f %10.2f\n", s[i].op, (long long)s[i].calls, 1e3 * s[i].fwd, 1e3 * s[i].bwd);
    fprintf(f, "%-24s %8s %10.2f %10.2f\n", "total", "", 1e3 * tf, 1e3 * tb);
}

static bool g_bf16_default;

void md_set_bf16_default(bool on) { g_bf16_default = on; }

md_graph *md_graph_new(size_t arena_bytes)
{
    md_graph *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->arena = md_arena_new(arena_bytes);
    g->captape = 256;
    g->tape = malloc(sizeof(md_node) * (size_t)g->captape);
    if (!g->arena || !g->tape) {
        md_arena_free(g->arena);
        free(g->tape);
        free(g);
        md_log(MD_LOG_ERROR, "out of memory creating a graph");
        return NULL;
    }
    g->grad = true;
    g->training = true;
    g->be = md_backend_default();
    g->bf16 = g_bf16_default;
    const char *prof = getenv("MEDLEY_PROFILE");
    if (prof && *prof && strcmp(prof, "0") != 0)
        md_graph_set_profile(g, true);
    md_threads_init();
    return g;
}

void md_graph_free(md_graph *g)
{
    if (!g)
        return;
    md_arena_free(g->arena);
    free(g->tape);
    free(g);
}

void md_graph_reset(md_graph *g)
{
    md_threads_init();   /* this thread may be new to the engine */
    md_arena_reset(g->arena);
    g->ntape = 0;
    g->streams = 0;
    if (g->profile)
        g->mark = md_time_now();
}

void md_graph_set_grad(md_graph *g, bool on) { g->grad = on; }
bool md_graph_grad_enabled(const md_graph *g) { return g->grad; }
void md_graph_set_training(md_graph *g, bool on) { g->training = on; }
bool md_graph_training(const md_graph *g) { return g->training; }
void md_graph_set_seed(md_graph *g, uint64_t seed) { g->seed = seed; }
void md_graph_set_bf16(md_graph *g, bool on) { g->bf16 = on; }
bool md_graph_bf16(const md_graph *g) { return g->bf16; }
uint64_t md_graph_next_stream(md_graph *g) { return md_hash64(g->seed ^ md_hash64(++g->streams)); }
md_arena *md_graph_arena(md_graph *g) { return g->arena; }
const md_backend *md_graph_backend(const md_graph *g) { return g->be; }
void md_graph_set_backend(md_graph *g, const md_backend *be) { g->be = be ? be : md_backend_cpu(); }
int md_graph_tape_len(const md_graph *g) { return g->ntape; }

void *md_graph_scratch(md_graph *g, size_t bytes)
{
    void *p = md_arena_alloc(g->arena, bytes);
    MD_ASSERT(p != NULL);   /* out of memory mid-graph cannot be unwound */
    return p;
}

md_tensor *md_tensor_new(md_graph *g, md_dtype dt, int ndim, const int64_t *shape, bool requires_grad)
{
    md_tensor *t = md_graph_scratch(g, sizeof *t);
    memset(t, 0, sizeof *t);
    md_tensor_set_shape(t, ndim, shape);
    t->dtype = dt;
    size_t n = (size_t)md_numel(t);
    t->data = md_graph_scratch(g, n * md_dtype_size(dt));
    if (requires_grad && g->grad && dt == MD_F32) {
        t->requires_grad = true;
        t->grad = md_graph_scratch(g, n * sizeof(float));
        t->grad_ready = md_graph_scratch(g, sizeof(int));
        *t->grad_ready = 0;
    }
    return t;
}

md_tensor *md_tensor_new2(md_graph *g, int64_t d0, int64_t d1)
{
    int64_t s[2] = {d0, d1};
    return md_tensor_new(g, MD_F32, 2, s, false);
}

md_tensor *md_tensor_zeros(md_graph *g, md_dtype dt, int ndim, const int64_t *shape)
{
    md_tensor *t = md_tensor_new(g, dt, ndim, shape, false);
    memset(t->data, 0, (size_t)md_numel(t) * md_dtype_size(dt));
    return t;
}

md_tensor *md_tensor_wrap(md_graph *g, md_dtype dt, void *data, int ndim, const int64_t *shape)
{
    md_tensor *t = md_graph_scratch(g, sizeof *t);
    memset(t, 0, sizeof *t);
    md_tensor_set_shape(t, ndim, shape);
    t->dtype = dt;
    t->data = data;
    return t;
}

md_node *md_graph_record_named(md_graph *g, md_backward_fn fn, md_tensor *out, const char *op)
{
    if (g->profile) {
        double now = md_time_now();
        prof_slot *ps = prof_find(g, op);
        if (ps) {
            ps->calls++;
            ps->fwd += now - g->mark;
        }
        g->mark = now;
    }
    if (!g->grad || !out->requires_grad)
        return NULL;
    if (g->ntape == g->captape) {
        /* Grows only while a new configuration runs its first step. */
        int nc = g->captape * 2;
        md_node *nt = realloc(g->tape, sizeof(md_node) * (size_t)nc);
        MD_ASSERT(nt != NULL);
        g->tape = nt;
        g->captape = nc;
    }
    md_node *n = &g->tape[g->ntape++];
    memset(n, 0, sizeof *n);
    n->backward = fn;
    n->op = op;
    n->out = out;
    return n;
}

float md_grad_beta(md_tensor *t)
{
    if (*t->grad_ready)
        return 1.0f;
    *t->grad_ready = 1;
    return 0.0f;
}

float *md_grad_acc(md_tensor *t)
{
    if (!t->grad)
        return NULL;
    if (!*t->grad_ready) {
        memset(t->grad, 0, (size_t)md_numel(t) * sizeof(float));
        *t->grad_ready = 1;
    }
    return t->grad;
}

void md_graph_run_backward(md_graph *g)
{
    for (int i = g->ntape - 1; i >= 0; i--) {
        md_node *n = &g->tape[i];
        if (!*n->out->grad_ready)
            continue;   /* nothing flowed into this node */
        if (g->profile) {
            double t0 = md_time_now();
            n->backward(g, n);
            prof_slot *ps = prof_find(g, n->op);
            if (ps)
                ps->bwd += md_time_now() - t0;
        } else {
            n->backward(g, n);
        }
    }
}

void md_graph_backward(md_graph *g, md_tensor *loss)
{
    MD_ASSERT(md_numel(loss) == 1);
    if (!loss->grad)
        return;
    loss->grad[0] = 1.0f;
    *loss->grad_ready = 1;
    md_graph_run_backward(g);
}

void md_graph_backward_from(md_graph *g, md_tensor *out, const float *dout)
{
    if (!out->grad)
        return;
    memcpy(out->grad, dout, (size_t)md_numel(out) * sizeof(float));
    *out->grad_ready = 1;
    md_graph_run_backward(g);
}

/* ---- parameters ------------------------------------------------------------ */

struct md_paramset {
    md_tensor **params;
    char **names;
    int n, cap;
    float *values, *grads;
    uint16_t *half;                  /* md_paramset_make_half's block */
    int *ready;
    int64_t numel;
    bool allocated, half_valid;
};

md_paramset *md_paramset_new(void) { return calloc(1, sizeof(md_paramset)); }

void md_paramset_free(md_paramset *ps)
{
    if (!ps)
        return;
    for (int i = 0; i < ps->n; i++) {
        free(ps->params[i]);
        free(ps->names[i]);
    }
    free(ps->params);
    free(ps->names);
    free(ps->values);
    free(ps->grads);
    free(ps->half);
    free(ps->ready);
    free(ps);
}

int md_paramset_make_half(md_paramset *ps)
{
    MD_ASSERT(ps->allocated);
    if (!ps->half_valid) {
        size_t total = 1;
        for (int i = 0; i < ps->n; i++)
            if (ps->params[i]->ndim == 2)
                total += md_f16_panels_size(ps->params[i]->shape[0], ps->params[i]->shape[1]);
        free(ps->half);
        ps->half = malloc(sizeof(uint16_t) * total);
        uint16_t *rows = NULL;
        size_t off = 0;
        for (int i = 0; ps->half && i < ps->n; i++) {
            md_tensor *t = ps->params[i];
            t->half = NULL;
            if (t->ndim != 2)
                continue;
            const int64_t n = md_numel(t);
            uint16_t *r = realloc(rows, sizeof(uint16_t) * (size_t)n);
            if (!r)
                break;
            rows = r;
            bool exact = true;
            for (int64_t j = 0; exact && j < n; j++) {
                rows[j] = md_f32_to_f16(t->data[j]);
                const float back = md_f16_to_f32(rows[j]);
                exact = memcmp(&back, &t->data[j], sizeof back) == 0;
            }
            if (exact) {
                md_f16_panels_pack(ps->half + off, rows, t->shape[0], t->shape[1]);
                t->half = ps->half + off;
                off += md_f16_panels_size(t->shape[0], t->shape[1]);
            }
        }
        free(rows);
        if (!ps->half)
            return 0;   /* no copies: inference reads the f32 values */
        ps->half_valid = true;
    }
    int with = 0;
    for (int i = 0; i < ps->n; i++)
        with += ps->params[i]->half != NULL;
    return with;
}

md_tensor *md_param_add(md_paramset *ps, const char *name, int ndim, const int64_t *shape)
{
    MD_ASSERT(!ps->allocated);
    if (ps->n == ps->cap) {
        int nc = ps->cap ? ps->cap * 2 : 32;
        md_tensor **np = realloc(ps->params, sizeof *np * (size_t)nc);
        char **nn = np ? realloc(ps->names, sizeof *nn * (size_t)nc) : NULL;
        MD_ASSERT(np && nn);
        ps->params = np;
        ps->names = nn;
        ps->cap = nc;
    }
    md_tensor *t = calloc(1, sizeof *t);
    char *nm = strdup(name ? name : "");
    MD_ASSERT(t && nm);
    md_tensor_set_shape(t, ndim, shape);
    t->dtype = MD_F32;
    t->requires_grad = true;
    t->name = nm;
    ps->params[ps->n] = t;
    ps->names[ps->n] = nm;
    ps->n++;
    ps->numel += md_numel(t);
    return t;
}

md_status md_paramset_alloc(md_paramset *ps)
{
    MD_ASSERT(!ps->allocated);
    size_t bytes = (size_t)(ps->numel ? ps->numel : 1) * sizeof(float);
    ps->values = calloc(1, bytes);
    ps->grads = calloc(1, bytes);
    ps->ready = calloc((size_t)(ps->n ? ps->n : 1), sizeof(int));
    if (!ps->values || !ps->grads || !ps->ready) {
        md_log(MD_LOG_ERROR, "out of memory allocating %lld parameters", (long long)ps->numel);
        return MD_ERR_ALLOC;
    }
    int64_t off = 0;
    for (int i = 0; i < ps->n; i++) {
        md_tensor *t = ps->params[i];
        t->data = ps->values + off;
        t->grad = ps->grads + off;
        t->grad_ready = &ps->ready[i];
        off += md_numel(t);
    }
    ps->allocated = true;
    return MD_OK;
}

void md_paramset_set_frozen(md_paramset *ps, bool frozen)
{
    MD_ASSERT(ps->allocated);
    int64_t off = 0;
    for (int i = 0; i < ps->n; i++) {
        md_tensor *t = ps->params[i];
        t->grad = frozen ? NULL : ps->grads + off;
        t->requires_grad = !frozen;
        off += md_numel(t);
    }
}

int md_paramset_count(const md_paramset *ps) { return ps->n; }
md_tensor *md_paramset_get(md_paramset *ps, int i) { return (i >= 0 && i < ps->n) ? ps->params[i] : NULL; }

md_tensor *md_paramset_find(md_paramset *ps, const char *name)
{
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->names[i], name) == 0)
            return ps->params[i];
    return NULL;
}

int64_t md_paramset_numel(const md_paramset *ps) { return ps->numel; }
float *md_paramset_values(md_paramset *ps) { return ps->values; }
float *md_paramset_grads(md_paramset *ps) { return ps->grads; }

void md_paramset_zero_grad(md_paramset *ps)
{
    memset(ps->ready, 0, sizeof(int) * (size_t)ps->n);
    if (ps->half_valid) {
        for (int i = 0; i < ps->n; i++)
            ps->params[i]->half = NULL;
        ps->half_valid = false;
    }
}

void md_paramset_finish_grads(md_paramset *ps)
{
    for (int i = 0; i < ps->n; i++)
        if (!ps->ready[i]) {
            memset(ps->params[i]->grad, 0, sizeof(float) * (size_t)md_numel(ps->params[i]));
            ps->ready[i] = 1;
        }
}

void md_init_normal(md_tensor *t, uint64_t seed, float mean, float std)
{
    md_fill_normal(t->data, md_numel(t), md_hash64(seed), 0, mean, std);
}

void md_init_uniform(md_tensor *t, uint64_t seed, float lo, float hi)
{
    md_fill_uniform(t->data, md_numel(t), md_hash64(seed), 0, lo, hi);
}

void md_init_const(md_tensor *t, float v)
{
    int64_t n = md_numel(t);
    for (int64_t i = 0; i < n; i++)
        t->data[i] = v;
}
