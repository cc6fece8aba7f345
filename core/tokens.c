/* tokens.c — see tokens.h. */
#include "tokens.h"
#include "space_input.h"

#include "caption.h"
#include "json.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include "backend.h"
#include "tokens_device.h"
#if defined(MEDLEY_HAVE_CUDA) && !defined(MEDLEY_CUDA_NO_KERNELS)
#define TOK_DEVICE 1
#include "cuda/md_cuda.h"
#endif

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P MD_TOK_PREFIX
#define NOSLOT MD_VQ_TOKENS          /* grid slot of a token that is not a code */
#define S MD_WORLD_SIZE

md_status md_tok_init(md_tokmodel *m, int64_t text_vocab, int64_t d, int64_t layers, int64_t heads,
                      uint64_t seed)
{
    memset(m, 0, sizeof *m);
    if (text_vocab < 260 || d < 8 || layers < 1 || heads < 1 || d % heads) {
        md_log(MD_LOG_ERROR, "token transformer: invalid shape (text vocabulary %lld, d %lld, layers %lld, heads %lld)",
               (long long)text_vocab, (long long)d, (long long)layers, (long long)heads);
        return MD_ERR_INVALID;
    }
    m->text_vocab = text_vocab;
    m->vocab = text_vocab + MD_VQ_CODES + MD_TOK_MARKERS;
    m->d = d;
    m->layers = layers;
    m->heads = heads;
    m->ps = md_paramset_new();
    m->blocks = calloc((size_t)layers, sizeof *m->blocks);
    if (!m->ps || !m->blocks) {
        md_tok_free(m);
        return MD_ERR_ALLOC;
    }
    m->cond_w = md_param_add(m->ps, "cond.weight", 2, (int64_t[]){P * d, MD_SPACE_DIM});
    m->cond_b = md_param_add(m->ps, "cond.bias", 1, (int64_t[]){P * d});
    m->cond_all_w = md_param_add(m->ps, "cond_all.weight", 2, (int64_t[]){d, MD_SPACE_DIM});
    m->tok_emb = md_param_add(m->ps, "tok_emb.weight", 2, (int64_t[]){m->vocab, d});
    m->pos_emb = md_param_add(m->ps, "pos_emb.weight", 2, (int64_t[]){MD_TOK_TMAX, d});
    m->grid_emb = md_param_add(m->ps, "grid_emb.weight", 2, (int64_t[]){MD_VQ_TOKENS + 1, d});
    for (int64_t l = 0; l < layers; l++) {
        char name[32];
        snprintf(name, sizeof name, "blocks.%lld", (long long)l);
        md_tblock_declare(&m->blocks[l], m->ps, name, d, heads, 4, 0);
    }
    m->lnf_w = md_param_add(m->ps, "ln_f.weight", 1, &d);
    m->lnf_b = md_param_add(m->ps, "ln_f.bias", 1, &d);
    m->head_w = md_param_add(m->ps, "head.weight", 2, (int64_t[]){m->vocab, d});
    md_status st = md_paramset_alloc(m->ps);
    if (st != MD_OK) {
        md_tok_free(m);
        return st;
    }
    md_init_normal(m->cond_w, seed * 31 + 1, 0.f, 0.02f);
    md_init_normal(m->cond_b, seed * 31 + 2, 0.f, 0.02f);
    md_init_normal(m->cond_all_w, seed * 31 + 7, 0.f, 0.02f);
    md_init_normal(m->tok_emb, seed * 31 + 3, 0.f, 0.02f);
    md_init_normal(m->pos_emb, seed * 31 + 4, 0.f, 0.02f);
    md_init_normal(m->grid_emb, seed * 31 + 5, 0.f, 0.02f);
    for (int64_t l = 0; l < layers; l++)
        md_tblock_init(&m->blocks[l], seed * 31 + 100 * (uint64_t)(l + 1), (int)layers);
    md_init_const(m->lnf_w, 1.f);
    md_init_const(m->lnf_b, 0.f);
    md_init_normal(m->head_w, seed * 31 + 6, 0.f, 0.02f);
    return MD_OK;
}

void md_tok_free(md_tokmodel *m)
{
    if (!m)
        return;
    md_paramset_free(m->ps);
    free(m->blocks);
    memset(m, 0, sizeof *m);
}

md_status md_tok_save(const md_tokmodel *m, const char *path, const char *recipe_json, const char *data_hash)
{
    char ver[16], wver[16], cfg[256];
    snprintf(ver, sizeof ver, "%d", MD_TOK_VERSION);
    snprintf(wver, sizeof wver, "%d", MD_WORLD_VERSION);
    snprintf(cfg, sizeof cfg,
             "{\"text_vocab\":%lld,\"d\":%lld,\"layers\":%lld,\"heads\":%lld,\"codes\":%d,\"chain\":%d}",
             (long long)m->text_vocab, (long long)m->d, (long long)m->layers, (long long)m->heads, MD_VQ_CODES,
             m->video_chain ? 1 : 0);
    const char *keys[] = {"medley.model", "medley.version", "tokens.config", "world.version", "data.hash",
                          "train.recipe"};
    const char *vals[] = {"tokens", ver, cfg, wver, data_hash ? data_hash : "", recipe_json ? recipe_json : "{}"};
    return md_st_save_paramset(path, m->ps, MD_F16, 6, keys, vals);
}

/* An integer field of the model's JSON configuration. */
static bool cfg_int(const md_json *cfg, const char *key, long long *out)
{
    int64_t v;
    if (!md_json_int(md_json_get(cfg, key), &v))
        return false;
    *out = (long long)v;
    return true;
}

md_status md_tok_load(md_tokmodel *m, const char *path)
{
    memset(m, 0, sizeof *m);
    md_st_file *f;
    md_status st = md_st_open(path, &f);
    if (st != MD_OK)
        return st;
    st = md_st_check_model(f, path, "tokens", "token transformer", MD_TOK_VERSION, "medley train tokens");
    long long tv = 0, d = 0, layers = 0, heads = 0, codes = 0, chain = 0;
    if (st == MD_OK) {
        const char *text = md_st_meta(f, "tokens.config");
        md_json_doc *doc = NULL;
        if (!text || md_json_parse(text, strlen(text), path, &doc) != MD_OK)
            doc = NULL;
        const md_json *cfg = doc ? md_json_root(doc) : NULL;
        if (!cfg_int(cfg, "text_vocab", &tv) || !cfg_int(cfg, "d", &d) || !cfg_int(cfg, "layers", &layers) ||
            !cfg_int(cfg, "heads", &heads) || !cfg_int(cfg, "codes", &codes) || d < 8 || d > 4096 || layers < 1 ||
            layers > 64 || heads < 1 || tv < 260 || tv > (1 << 20)) {
            md_log(MD_LOG_ERROR, "%s: the token transformer's configuration is missing or invalid", path);
            st = MD_ERR_FORMAT;
        } else if (md_json_get(cfg, "chain") && (!cfg_int(cfg, "chain", &chain) || chain < 0 || chain > 1)) {
            md_log(MD_LOG_ERROR, "%s: the token transformer's \"chain\" is not 0 or 1", path);
            st = MD_ERR_FORMAT;
        } else if (codes != MD_VQ_CODES) {
            md_log(MD_LOG_ERROR, "%s: made for %lld image codes, this build has %d", path, codes, MD_VQ_CODES);
            st = MD_ERR_FORMAT;
        }
        md_json_free(doc);
    }
    md_st_close(f);
    if (st != MD_OK)
        return st;
    if ((st = md_tok_init(m, tv, d, layers, heads, 0)) != MD_OK)
        return st;
    if ((st = md_st_load_paramset(path, m->ps)) != MD_OK)
        md_tok_free(m);
    else
        m->video_chain = (int)chain;
    return st;
}

/* ---- graph ---- */

static md_tensor *embed(md_graph *g, const md_tokmodel *m, md_tensor *cond, md_tensor *ids, md_tensor *slots,
                        int64_t pos0)
{
    md_tensor *parts[2] = {NULL, NULL};
    int np = 0;
    int64_t B = cond->shape[0], T = 0;
    if (pos0 == 0) {
        md_tensor *pre = md_linear(g, cond, m->cond_w, m->cond_b);          /* [B, P*d] */
        parts[np++] = md_reshape(g, pre, 3, (int64_t[]){B, P, m->d});
        T += P;
    }
    if (ids) {
        md_tensor *x = md_add(g, md_embedding(g, m->tok_emb, ids), md_embedding(g, m->grid_emb, slots));
        parts[np++] = x;
        T += ids->shape[1];
    }
    md_tensor *x = np == 2 ? md_concat(g, parts, 2, 1) : parts[0];
    md_tensor *pos = md_slice(g, m->pos_emb, 0, pos0, pos0 + T);
    /* the condition also reaches every position directly */
    md_tensor *all = md_reshape(g, md_linear(g, cond, m->cond_all_w, NULL), 3, (int64_t[]){B, 1, m->d});
    return md_add(g, md_add(g, x, pos), all);
}

md_tensor *md_tok_forward(md_graph *g, const md_tokmodel *m, md_tensor *cond, md_tensor *ids, md_tensor *slots)
{
    MD_ASSERT(ids->ndim == 2 && P + ids->shape[1] <= MD_TOK_TMAX);
    int64_t B = ids->shape[0], T = P + ids->shape[1];
    md_tensor *x = embed(g, m, cond, ids, slots, 0);
    for (int64_t l = 0; l < m->layers; l++)
        x = md_tblock_forward(g, &m->blocks[l], x, NULL, true, 0.f);
    x = md_layernorm(g, x, m->lnf_w, m->lnf_b, 1e-5f);
    return md_reshape(g, md_linear(g, x, m->head_w, NULL), 2, (int64_t[]){B * T, m->vocab});
}

md_tensor *md_tok_forward_cached(md_graph *g, const md_tokmodel *m, md_tensor *cond, md_tensor *ids,
                                 md_tensor *slots, md_kv_cache *caches, int64_t pos0)
{
    int64_t T = (pos0 == 0 ? P : 0) + (ids ? ids->shape[1] : 0);
    if (pos0 + T > MD_TOK_TMAX) {
        md_log(MD_LOG_ERROR, "token transformer: %lld positions exceed its context of %d", (long long)(pos0 + T),
               MD_TOK_TMAX);
        return NULL;
    }
    bool was = md_graph_grad_enabled(g);
    md_graph_set_grad(g, false);
    md_tensor *x = embed(g, m, cond, ids, slots, pos0);
    int64_t B = x->shape[0];
    for (int64_t l = 0; l < m->layers && x; l++)
        x = md_tblock_forward_cached(g, &m->blocks[l], x, &caches[l]);
    md_tensor *logits = NULL;
    if (x) {
        if (T > 1)
            x = md_slice(g, x, 1, T - 1, T);
        x = md_layernorm(g, x, m->lnf_w, m->lnf_b, 1e-5f);
        logits = md_reshape(g, md_linear(g, x, m->head_w, NULL), 2, (int64_t[]){B, m->vocab});
    }
    md_graph_set_grad(g, was);
    return logits;
}

/* ---- sampling ---- */

#define MAX_ROWS (2 * (MD_WORLD_FRAMES - 1))
#define MAX_PARTS 8

/* A step of many rows (candidates, frames, each with its unconditional
 * twin) is cut into parts of at least PART_MIN_ROWS rows, one part per
 * thread, each run through its own graph with every op single-threaded
 * inside: one fork-join a step instead of ~100, one an op. Where threads
 * sleep at barriers (other work on the cores, OMP_WAIT_POLICY=passive)
 * each fork-join costs a wake-up, and parts made an image 2.3x quicker;
 * where they spin, about the same (README, Generation). Each part reads
 * all the weights, so with fewer rows, where a step is bound by reading
 * them, splitting every op's columns between the threads stays quicker
 * (1 candidate, spinning: 0.154 s op by op, 0.220 s in parts). Every op of a cached
 * step treats rows alone (products, norms, attention), so the logits have
 * the batched step's bits whatever the parts (test_tokens: 1, 2 and 3
 * threads). */
#define PART_MIN_ROWS 8
typedef struct step_parts {
    int n;                           /* parts; 1: the batched step */
    int row0[MAX_PARTS + 1];         /* part k: rows row0[k] .. row0[k+1] - 1 */
    md_tensor *logits[MAX_PARTS];
} step_parts;

struct md_tok_session {
    const md_tokmodel *m;
    md_graph *g;
    md_kv_cache *small;              /* batch 2: one sequence and its unconditional twin */
    md_kv_cache *wide;               /* batch MAX_ROWS: frames 1..15, each with its twin */
    md_kv_cache *twin;               /* batch 1: the unconditional twin when it runs apart */
    md_graph *g2;                    /* the twin's steps */
    float zeros[MD_SPACE_DIM];
    float conds[MAX_ROWS * MD_SPACE_DIM];   /* each row's condition (zeros: the unconditional twin) */
    float *probs;                    /* [vocab] */
    int32_t *order;                  /* [vocab] */
    md_graph *gp[MAX_PARTS];         /* the parts of a step (made when first needed) */
    md_kv_cache *views;              /* [MAX_PARTS, layers]: each part's rows of the caches */
    int part_rows;                   /* a step splits into parts from 2 x this many rows (PART_MIN_ROWS) */
    /* A session on a CUDA device runs every step there (tokens_device.h):
     * its own context, the model and one device cache set for each of
     * small, wide and twin (SET_*); the host caches above then only keep
     * their batch and length. */
    md_cuda *cuda;
    md_tok_device *dev;
    float *dlogits[2];               /* the device's logits [MAX_ROWS, vocab], for g and for g2 */
    char device[16];                 /* "cpu" or "cuda:N" */
};

enum { SET_SMALL, SET_WIDE, SET_TWIN };

static void device_close(md_tok_session *s)
{
#ifdef TOK_DEVICE
    md_tok_device_free(s->dev);
    md_cuda_close(s->cuda);
#endif
    s->dev = NULL;
    s->cuda = NULL;
    free(s->dlogits[0]);
    free(s->dlogits[1]);
    s->dlogits[0] = s->dlogits[1] = NULL;
}

/* Places the model on CUDA device `device` for this session; on any
 * failure (logged) the session samples on the CPU. */
static void device_open(md_tok_session *s, int device)
{
#ifdef TOK_DEVICE
    const md_tokmodel *m = s->m;
    const int64_t rows[3] = {[SET_SMALL] = 2, [SET_WIDE] = MAX_ROWS, [SET_TWIN] = 1};
    size_t cache = sizeof(float) * 2 * (size_t)(m->layers * MD_TOK_TMAX * m->d);
    size_t arena = sizeof(float) * (size_t)md_paramset_numel(m->ps) + (size_t)(2 + MAX_ROWS + 1) * cache +
                   ((size_t)64 << 20);   /* a step's scratch: well under 64 MiB */
    md_status st = md_cuda_open(device, arena, &s->cuda);
    if (st == MD_OK)
        st = md_tok_device_new(m, s->cuda, 3, rows, &s->dev);
    if (st == MD_OK) {
        s->dlogits[0] = malloc(sizeof(float) * (size_t)(MAX_ROWS * m->vocab));
        s->dlogits[1] = malloc(sizeof(float) * (size_t)(MAX_ROWS * m->vocab));
        if (!s->dlogits[0] || !s->dlogits[1])
            st = MD_ERR_ALLOC;
    }
    if (st == MD_OK) {
        snprintf(s->device, sizeof s->device, "%s", md_cuda_name(s->cuda));
        return;
    }
    device_close(s);
    md_log(MD_LOG_WARN, "token sampler: cuda:%d cannot take the model (%s); sampling on the CPU", device,
           md_status_str(st));
#else
    md_log(MD_LOG_WARN, "token sampler: this build has no CUDA kernels (cuda:%d asked for); sampling on the CPU",
           device);
#endif
}

md_tok_session *md_tok_session_new(const md_tokmodel *m)
{
    return md_tok_session_new_on(m, md_backend_device(md_backend_default()));
}

const char *md_tok_session_device(const md_tok_session *s) { return s->device; }

md_tok_session *md_tok_session_new_on(const md_tokmodel *m, int device)
{
    md_tok_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->m = m;
    snprintf(s->device, sizeof s->device, "cpu");
    s->part_rows = PART_MIN_ROWS;
    md_paramset_make_half(m->ps);   /* steps read the f16 weights: the same values, half the bytes */
    s->g = md_graph_new((size_t)1 << 22);   /* grows to the largest step once */
    s->small = calloc((size_t)m->layers, sizeof *s->small);
    s->twin = calloc((size_t)m->layers, sizeof *s->twin);
    s->g2 = md_graph_new((size_t)1 << 22);
    s->probs = malloc(sizeof(float) * (size_t)m->vocab);
    s->order = malloc(sizeof(int32_t) * (size_t)m->vocab);
    s->views = calloc((size_t)(MAX_PARTS * m->layers), sizeof *s->views);
    bool ok = s->g && s->g2 && s->small && s->twin && s->probs && s->order && s->views;
    for (int64_t l = 0; ok && l < m->layers; l++)
        ok = md_kv_cache_init(&s->small[l], 2, MD_TOK_TMAX, m->d) == MD_OK &&
             md_kv_cache_init(&s->twin[l], 1, MD_TOK_TMAX, m->d) == MD_OK;
    if (!ok) {
        md_tok_session_free(s);
        return NULL;
    }
    if (device >= 0)
        device_open(s, device);
    return s;
}

static void free_caches(md_kv_cache *c, int64_t n)
{
    if (!c)
        return;
    for (int64_t l = 0; l < n; l++)
        md_kv_cache_free(&c[l]);
    free(c);
}

void md_tok_session_free(md_tok_session *s)
{
    if (!s)
        return;
    free_caches(s->small, s->m->layers);
    free_caches(s->wide, s->m->layers);
    free_caches(s->twin, s->m->layers);
    md_graph_free(s->g);
    md_graph_free(s->g2);
    for (int k = 0; k < MAX_PARTS; k++)
        md_graph_free(s->gp[k]);
    free(s->views);
    free(s->probs);
    free(s->order);
    device_close(s);
    free(s);
}

static md_status check_opts(const md_tok_sample_opts *o)
{
    if (o->candidates < 0 || o->candidates > MD_TOK_MAX_CANDIDATES) {
        md_log(MD_LOG_ERROR, "token sampling: candidates in [1, %d] (got %d)", MD_TOK_MAX_CANDIDATES,
               o->candidates);
        return MD_ERR_INVALID;
    }
    if (o->caption && (o->caption_len < 2 || o->caption_len > MD_TOK_CAPTION || o->caption[0] != MD_BPE_BOS ||
                       o->caption[o->caption_len - 1] != MD_BPE_EOS || !o->via_caption)) {
        md_log(MD_LOG_ERROR, "token sampling: a given caption holds 2..%d ids, opens with <bos>, closes with <eos> "
                             "and needs via_caption (got %d ids)", MD_TOK_CAPTION, o->caption_len);
        return MD_ERR_INVALID;
    }
    if (!(o->temperature > 0.f) || !(o->temperature <= 100.f) || !(o->frame_temperature >= 0.f) ||
        !(o->frame_temperature <= 100.f) || o->top_k < 0 || !(o->top_p > 0.f) ||
        !(o->top_p <= 1.f) || !(o->guidance >= 0.f) || !(o->guidance <= 100.f)) {
        md_log(MD_LOG_ERROR, "token sampling: temperature in (0, 100], frame_temperature in [0, 100], top_k >= 0, "
                             "top_p in (0, 1], guidance in [0, 100] (got %g, %g, %d, %g, %g)",
               (double)o->temperature, (double)o->frame_temperature, o->top_k, (double)o->top_p,
               (double)o->guidance);
        return MD_ERR_INVALID;
    }
    if (!(o->caption_margin >= 0.f) || !(o->caption_margin <= 100.f)) {
        md_log(MD_LOG_ERROR, "token sampling: caption_margin in [0, 100] (got %g)", (double)o->caption_margin);
        return MD_ERR_INVALID;
    }
    return MD_OK;
}

/* k-th largest of probs over order[0..n) moved to the front (quickselect). */
static void select_top(const float *p, int32_t *order, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = p[order[(lo + hi) / 2]];
        int i = lo, j = hi;
        while (i <= j) {
            while (p[order[i]] > pivot) i++;
            while (p[order[j]] < pivot) j--;
            if (i <= j) {
                int32_t t = order[i]; order[i] = order[j]; order[j] = t;
                i++; j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

static const float *g_sort_p;
static int cmp_desc(const void *a, const void *b)
{
    float x = g_sort_p[*(const int32_t *)a], y = g_sort_p[*(const int32_t *)b];
    if (x != y)
        return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* How many of order[0..n), in that order, first hold `want` of the mass. */
static int mass_prefix(const float *p, const int32_t *order, int n, double want)
{
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += p[order[i]];
        if (acc >= want)
            return i + 1;
    }
    return n;
}

/* The smallest prefix of order[0..n), ranked by descending probability (ties
 * by id), holding top_p of the mass; it is left ranked at the front and its
 * length returned. Only as many ids as the nucleus needs are ranked: the
 * largest k are selected (k doubling from 32) until they hold the mass, and
 * only they are sorted. Every id outside the selection is <= the smallest
 * inside it, so the ranked prefix is the full ranking's own whenever its last
 * kept id is strictly above that smallest; on a tie there the whole list is
 * ranked, as a full sort would. */
static int nucleus(const float *p, int32_t *order, int n, float top_p)
{
    double tot = 0;
    for (int i = 0; i < n; i++)
        tot += p[order[i]];
    double want = (double)top_p * tot, mass = 0;
    g_sort_p = p;
    int k = 0;
    for (int step = 32; k < n && mass < want; step *= 2) {
        int add = step < n - k ? step : n - k;
        if (add < n - k)
            select_top(p, order + k, n - k, add);
        for (int i = k; i < k + add; i++)
            mass += p[order[i]];
        k += add;
    }
    qsort(order, (size_t)k, sizeof *order, cmp_desc);
    int keep = mass_prefix(p, order, k, want);
    if (k < n && !(p[order[keep - 1]] > p[order[k - 1]])) {
        qsort(order, (size_t)n, sizeof *order, cmp_desc);
        keep = mass_prefix(p, order, n, want);
    }
    return keep;
}

/* Draws one id in [lo, hi) (and `extra` when >= 0) from conditional logits
 * lc and unconditional lu (NULL: no guidance). u in [0, 1). */
static int32_t draw(md_tok_session *s, const float *lc, const float *lu, const md_tok_sample_opts *o, int32_t lo,
                    int32_t hi, int32_t extra, const int32_t *banned, int nbanned, float u)
{
    float *p = s->probs;
    int32_t *order = s->order;
    int n = 0;
    float mx = -INFINITY;
    for (int32_t v = lo; v <= hi; v++) {
        int32_t id = v < hi ? v : extra;
        if (id < 0)
            continue;
        bool skip = false;
        for (int b = 0; b < nbanned; b++)
            skip |= banned[b] == id;
        if (skip)
            continue;
        float l = lu ? lu[id] + o->guidance * (lc[id] - lu[id]) : lc[id];
        p[id] = l / o->temperature;
        mx = p[id] > mx ? p[id] : mx;
        order[n++] = id;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) {
        p[order[i]] = expf(p[order[i]] - mx);
        sum += p[order[i]];
    }
    if (o->top_k > 0 && o->top_k < n) {
        select_top(p, order, n, o->top_k);
        n = o->top_k;
    }
    if (o->top_p < 1.f)
        n = nucleus(p, order, n, o->top_p);
    sum = 0;
    for (int i = 0; i < n; i++)
        sum += p[order[i]];
    double r = (double)u * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += p[order[i]];
        if (r < acc)
            return order[i];
    }
    return order[n - 1];
}

/* Rows: pairs (conditional, unconditional) when guided, else one row each. */
static md_tensor *wrap_cond(md_graph *g, const float *cond, int pairs, bool guided, float *buf)
{
    int rows = guided ? 2 * pairs : pairs;
    for (int r = 0; r < rows; r++) {
        bool uncond = guided && (r & 1);
        for (int i = 0; i < MD_SPACE_DIM; i++)
            buf[r * MD_SPACE_DIM + i] = uncond ? 0.f : cond[i];
    }
    return md_tensor_wrap(g, MD_F32, buf, 2, (int64_t[]){rows, MD_SPACE_DIM});
}

static void clear(md_kv_cache *c, int64_t n)
{
    for (int64_t l = 0; l < n; l++)
        md_kv_cache_clear(&c[l]);
}


/* Feeds ids [rows, tn] at pos0 through graph g with conditions conds. */
static md_tensor *feed(md_tok_session *s, md_graph *g, float *conds, md_kv_cache *caches, int rows,
                       const int32_t *ids, const int32_t *slots, int tn, int64_t pos0)
{
    md_graph_reset(g);
#ifdef TOK_DEVICE
    if (s->dev) {
        float *lg = s->dlogits[g == s->g2];
        int set = caches == s->small ? SET_SMALL : caches == s->wide ? SET_WIDE : SET_TWIN;
        MD_ASSERT(caches == s->small || caches == s->wide || caches == s->twin);
        if (md_tok_device_step(s->dev, set, 0, conds, rows, ids, slots, tn, pos0, lg) != MD_OK)
            return NULL;
        return md_tensor_wrap(g, MD_F32, lg, 2, (int64_t[]){rows, s->m->vocab});
    }
#endif
    md_tensor *ct = md_tensor_wrap(g, MD_F32, conds, 2, (int64_t[]){rows, MD_SPACE_DIM});
    md_tensor *it = md_tensor_wrap(g, MD_I32, (void *)ids, 2, (int64_t[]){rows, tn});
    md_tensor *st = md_tensor_wrap(g, MD_I32, (void *)slots, 2, (int64_t[]){rows, tn});
    return md_tok_forward_cached(g, s->m, ct, it, st, caches, pos0);
}

static md_tensor *step_ids(md_tok_session *s, md_kv_cache *caches, int rows, const int32_t *ids,
                           const int32_t *slots, int tn, int64_t pos0)
{
    return feed(s, s->g, s->conds, caches, rows, ids, slots, tn, pos0);
}

/* One new position for each of rows (pairs of stride rows) through the
 * caches, in parts (see step_parts); p->logits[k] [rows of part k, vocab]. */
static bool step_split(md_tok_session *s, md_kv_cache *caches, int pairs, int stride, const int32_t *ids,
                       const int32_t *slots, int64_t pos, step_parts *p)
{
    const md_tokmodel *m = s->m;
    const int rows = pairs * stride;
    int n = md_threads_get();
    n = n < rows / s->part_rows ? n : rows / s->part_rows;
    n = n < MAX_PARTS ? n : MAX_PARTS;
    if (n < 2 || s->dev) {   /* on a device: one step for every row */
        p->n = 1;
        p->row0[0] = 0;
        p->row0[1] = rows;
        p->logits[0] = step_ids(s, caches, rows, ids, slots, 1, pos);
        return p->logits[0] != NULL;
    }
    p->n = n;
    for (int k = 0; k <= n; k++)
        p->row0[k] = (int)((int64_t)rows * k / n);
    for (int k = 0; k < n; k++)
        if (!s->gp[k] && !(s->gp[k] = md_graph_new((size_t)1 << 22)))
            return false;
    #pragma omp parallel for schedule(static, 1) num_threads(n)
    for (int k = 0; k < n; k++) {
        const int r0 = p->row0[k], nr = p->row0[k + 1] - r0;
        for (int64_t l = 0; l < m->layers; l++) {
            s->views[k * m->layers + l] = md_kv_cache_rows(&caches[l], r0, nr);
        }
        p->logits[k] = feed(s, s->gp[k], s->conds + (size_t)r0 * MD_SPACE_DIM, s->views + k * m->layers, nr,
                            ids + r0, slots + r0, 1, pos);
    }
    bool ok = true;
    for (int k = 0; k < n; k++)
        ok = ok && p->logits[k] != NULL;
    for (int64_t l = 0; ok && l < m->layers; l++)
        caches[l].len = s->views[l].len;
    return ok;
}

/* logits of row r of a split step */
static const float *row_logits(const step_parts *p, int r, int64_t vocab)
{
    int k = 0;
    while (r >= p->row0[k + 1])
        k++;
    return p->logits[k]->data + (size_t)(r - p->row0[k]) * (size_t)vocab;
}

/* Samples 256 codes for `pairs` sequences whose caches already hold their
 * opening, given the logits that predict code 0. Row p draws from the
 * seed's stream key_row0 + p (a later round of candidates goes on where
 * the round before stopped). */
static md_status sample_codes(md_tok_session *s, md_kv_cache *caches, int pairs, bool guided, md_tensor *logits,
                              int64_t pos, const md_tok_sample_opts *o, uint64_t key, int64_t done0, int64_t total,
                              md_tok_progress_fn progress, void *user, const volatile int *cancel, int32_t *codes,
                              int key_row0)
{
    const md_tokmodel *m = s->m;
    const int stride = guided ? 2 : 1;
    int32_t ids[MAX_ROWS], slots[MAX_ROWS];
    step_parts sp = {1, {0, pairs * stride}, {logits}};
    for (int i = 0; i < MD_VQ_TOKENS; i++) {
        if (cancel && *cancel)
            return MD_ABORTED;
        if (!sp.logits[0])
            return MD_ERR;
        for (int p = 0; p < pairs; p++) {
            const float *lc = row_logits(&sp, p * stride, m->vocab);
            const float *lu = guided ? row_logits(&sp, p * stride + 1, m->vocab) : NULL;
            float u = md_rand_uniform_at(key, (uint64_t)(key_row0 + p) * 4096u + (uint64_t)i);
            int32_t id = draw(s, lc, lu, o, md_tok_code(m, 0), md_tok_code(m, MD_VQ_CODES), -1, NULL, 0, u);
            codes[(size_t)p * MD_VQ_TOKENS + (size_t)i] = id - md_tok_code(m, 0);
            for (int r = 0; r < stride; r++) {
                ids[p * stride + r] = id;
                slots[p * stride + r] = i;
            }
        }
        if (progress)
            progress(done0 + (int64_t)(i + 1) * pairs, total, codes, (int64_t)(i + 1), user);
        if (i + 1 < MD_VQ_TOKENS && !step_split(s, caches, pairs, stride, ids, slots, pos + i, &sp))
            return MD_ERR;
    }
    /* the last code goes into the cache too (a video's later frames read it) */
    if (!step_split(s, caches, pairs, stride, ids, slots, pos + MD_VQ_TOKENS - 1, &sp))
        return MD_ERR;
    return MD_OK;
}

static md_tensor *open_sequence(md_tok_session *s, const float *cond, bool guided, int32_t marker)
{
    md_graph_reset(s->g);
    int rows = guided ? 2 : 1;
    wrap_cond(s->g, cond, 1, guided, s->conds);
    int32_t ids[2] = {marker, marker}, slots[2] = {NOSLOT, NOSLOT};
    return feed(s, s->g, s->conds, s->small, rows, ids, slots, 1, 0);
}

/* The small cache has batch 2; unguided runs use its first row by running
 * with rows = 1 through a cache view of batch 1. */
static void set_batch(md_kv_cache *c, int64_t n, int64_t batch)
{
    for (int64_t l = 0; l < n; l++)
        c[l].batch = batch;
}

/* The opening of a picture (or a video's frame 0) drawn after a caption:
 * <bos> caption <eos> marker into open[MD_TOK_CAPTION + 1] — the given
 * caption, or one sampled from the condition. Returns the count, or -1. */
static int caption_opening(md_tok_session *s, const float *cond, const md_tok_sample_opts *o, uint64_t seed,
                           int32_t marker, const volatile int *cancel, int32_t *open, md_status *st)
{
    int n = 0;
    *st = MD_OK;
    if (o->caption) {
        n = o->caption_len - 2;
        memcpy(open + 1, o->caption + 1, sizeof(int32_t) * (size_t)n);
    } else if ((*st = md_tok_sample_caption(s, cond, o, seed, cancel, open + 1, MD_TOK_CAPTION - 2, &n)) != MD_OK) {
        return -1;
    }
    open[0] = MD_BPE_BOS;
    open[n + 1] = MD_BPE_EOS;
    open[n + 2] = marker;
    return n + 3;
}

/* Caption first, as LWM writes pictures: a caption is sampled from the
 * condition, then the picture follows it in context (P <bos> caption <eos>
 * marker codes) in the first row of the small cache. The unconditional
 * twin (P0 marker codes) runs in its own cache and graph. On return the
 * small cache holds the conditional sequence through the last code, and
 * *pos its length. */
static md_status sample_after_caption(md_tok_session *s, const float *cond, const md_tok_sample_opts *o,
                                      uint64_t seed, int32_t marker, md_tok_progress_fn progress, void *user,
                                      int64_t total, const volatile int *cancel, int32_t *codes, int64_t *pos)
{
    const md_tokmodel *m = s->m;
    const bool guided = o->guidance != 1.f;
    int32_t seq[MD_TOK_CAPTION + 1], slots[MD_TOK_CAPTION + 1];
    md_status st;
    const int n = caption_opening(s, cond, o, seed, marker, cancel, seq, &st) - 3;
    if (st != MD_OK)
        return st;
    for (int i = 0; i < n + 3; i++)
        slots[i] = NOSLOT;
    clear(s->small, m->layers);
    clear(s->twin, m->layers);
    set_batch(s->small, m->layers, 1);
    memcpy(s->conds, cond, sizeof(float) * MD_SPACE_DIM);
    md_tensor *lc = feed(s, s->g, s->conds, s->small, 1, seq, slots, n + 3, 0);
    md_tensor *lu = guided ? feed(s, s->g2, s->zeros, s->twin, 1, seq + n + 2, slots, 1, 0) : NULL;
    int64_t pc = P + n + 3, pu = P + 1;
    const uint64_t key = md_hash64(seed * 2 + 1);
    st = MD_OK;
    for (int i = 0; i < MD_VQ_TOKENS; i++) {
        if (cancel && *cancel) {
            st = MD_ABORTED;
            break;
        }
        if (!lc || (guided && !lu)) {
            st = MD_ERR;
            break;
        }
        int32_t id = draw(s, lc->data, lu ? lu->data : NULL, o, md_tok_code(m, 0), md_tok_code(m, MD_VQ_CODES), -1,
                          NULL, 0, md_rand_uniform_at(key, (uint64_t)i));
        codes[i] = id - md_tok_code(m, 0);
        if (progress)
            progress(i + 1, total, codes, i + 1, user);
        int32_t sl = i;
        lc = feed(s, s->g, s->conds, s->small, 1, &id, &sl, 1, pc++);
        if (guided && i + 1 < MD_VQ_TOKENS)
            lu = feed(s, s->g2, s->zeros, s->twin, 1, &id, &sl, 1, pu++);
    }
    set_batch(s->small, m->layers, 2);
    *pos = pc;
    return st;
}

/* The wide cache, long enough for tmax positions: made once at the length
 * the session needs (a picture's candidates need only their own length,
 * a video two frames), remade longer only if a longer use comes. */
static md_status ensure_wide(md_tok_session *s, int64_t tmax)
{
    if (s->wide && s->wide[0].tmax >= tmax)
        return MD_OK;
    const md_tokmodel *m = s->m;
    free_caches(s->wide, m->layers);
    s->wide = calloc((size_t)m->layers, sizeof *s->wide);
    bool ok = s->wide != NULL;
    for (int64_t l = 0; ok && l < m->layers; l++)
        ok = md_kv_cache_init(&s->wide[l], MAX_ROWS, tmax, m->d) == MD_OK;
    if (!ok) {
        free_caches(s->wide, m->layers);
        s->wide = NULL;
        return MD_ERR_ALLOC;
    }
    return MD_OK;
}

/* Rows 0..n-1 of dst (set dset on a device) start as rows src0 + (r %
 * period) of src (set sset): their first pos positions. */
static md_status copy_rows(md_tok_session *s, md_kv_cache *dst, int dset, const md_kv_cache *src, int sset, int n,
                           int src0, int period, int64_t pos)
{
    const md_tokmodel *m = s->m;
#ifdef TOK_DEVICE
    if (s->dev) {
        for (int r = 0; r < n; r++) {
            md_status st = md_tok_device_copy_row(s->dev, dset, r, sset, src0 + r % period, pos);
            if (st != MD_OK)
                return st;
        }
        for (int64_t l = 0; l < m->layers; l++)
            dst[l].len = pos;
        return MD_OK;
    }
#endif
    (void)dset;
    (void)sset;
    for (int64_t l = 0; l < m->layers; l++) {
        for (int r = 0; r < n; r++)
            md_kv_cache_copy_row(&dst[l], r, &src[l], src0 + r % period, pos);
        dst[l].len = pos;
    }
    return MD_OK;
}

/* The small cache (stride rows: the pair when guided) holds P, the opening
 * (a marker, or <bos> caption <eos> marker) and the codes, read again in
 * parts of 33 positions. */
static md_status reopen_frame(md_tok_session *s, const float *cond, bool guided, const int32_t *open, int nopen,
                              const int32_t *codes)
{
    const md_tokmodel *m = s->m;
    enum { PART = 33 };   /* read in parts: the graph of one part stays small */
    const int N = nopen + MD_VQ_TOKENS;
    const int stride = guided ? 2 : 1;
    int32_t ids[2 * PART], slots[2 * PART];
    clear(s->small, m->layers);
    set_batch(s->small, m->layers, stride);
    md_graph_reset(s->g);
    wrap_cond(s->g, cond, 1, guided, s->conds);
    for (int i0 = 0; i0 < N; i0 += PART) {
        const int tn = N - i0 < PART ? N - i0 : PART;
        for (int r = 0; r < stride; r++)
            for (int j = 0; j < tn; j++) {   /* position i0 + j: the opening, then code i0 + j - nopen */
                const int i = i0 + j;
                ids[r * tn + j] = i < nopen ? open[i] : md_tok_code(m, codes[i - nopen]);
                slots[r * tn + j] = i < nopen ? NOSLOT : i - nopen;
            }
        if (!feed(s, s->g, s->conds, s->small, stride, ids, slots, tn, i0 == 0 ? 0 : P + i0))
            return MD_ERR;
    }
    return MD_OK;
}

/* The candidates scoring within o->caption_margin of the chosen one
 * (scores from pick) are chosen among again by log P(caption | picture);
 * the first on a tie. *rescored: the wide cache was used. */
static md_status recheck_caption(md_tok_session *s, const md_tok_sample_opts *o, const int32_t *cand, int n,
                                 const float *scores, int *chosen, bool *rescored)
{
    int idx[MD_TOK_MAX_CANDIDATES], m = 0;
    for (int i = 0; i < n; i++)
        if (scores[i] >= scores[*chosen] - o->caption_margin)
            idx[m++] = i;
    if (m < 2)
        return MD_OK;
    int32_t *sub = malloc(sizeof(int32_t) * (size_t)m * MD_VQ_TOKENS);
    float ll[MD_TOK_MAX_CANDIDATES];
    if (!sub)
        return MD_ERR_ALLOC;
    for (int i = 0; i < m; i++)
        memcpy(sub + (size_t)i * MD_VQ_TOKENS, cand + (size_t)idx[i] * MD_VQ_TOKENS, sizeof(int32_t) * MD_VQ_TOKENS);
    *rescored = true;
    md_status st = md_tok_caption_logprob(s, NULL, sub, m, o->caption, o->caption_len, ll);
    free(sub);
    if (st != MD_OK)
        return st;
    int best = 0;
    for (int i = 1; i < m; i++)
        if (ll[i] > ll[best])
            best = i;
    *chosen = idx[best];
    return MD_OK;
}

/* n pictures in rounds of up to MD_TOK_ROUND_CANDIDATES side by side in
 * the wide cache, each row P, the opening open[nopen] (a marker, or <bos>
 * caption <eos> marker; the unconditional twins read it too) and the codes
 * (the last in the cache), then o->pick chooses one: *chosen. cand [n, 256].
 * *cached: the chosen one's row in the wide cache, or -1 where a later
 * round has overwritten it. The wide cache keeps the last round's batch
 * (the caller restores it); a longer opening is read once, by the pair in
 * the small cache, and copied to every row. */
static md_status sample_candidates(md_tok_session *s, const float *cond, const md_tok_sample_opts *o, uint64_t seed,
                                   const int32_t *open, int nopen, int n, md_tok_progress_fn progress, void *user,
                                   int64_t total, const volatile int *cancel, int32_t *cand, int *chosen, int *cached)
{
    const md_tokmodel *m = s->m;
    const bool guided = o->guidance != 1.f;
    const int stride = guided ? 2 : 1;
    const int32_t marker = open[nopen - 1];
    md_status st = ensure_wide(s, marker == md_tok_bov(m) ? MD_TOK_TMAX : P + nopen + 1 + MD_VQ_TOKENS);
    if (st != MD_OK)
        return st;
    float *shared = nopen > 1 ? malloc(sizeof(float) * MAX_ROWS * (size_t)m->vocab) : NULL;
    if (nopen > 1 && !shared)
        return MD_ERR_ALLOC;
    int last0 = 0;
    for (int r0 = 0; r0 < n && st == MD_OK; r0 += MD_TOK_ROUND_CANDIDATES) {
        const int nr = n - r0 < MD_TOK_ROUND_CANDIDATES ? n - r0 : MD_TOK_ROUND_CANDIDATES, rows = nr * stride;
        md_tensor *logits = NULL;
        clear(s->wide, m->layers);
        set_batch(s->wide, m->layers, rows);
        if (nopen > 1) {
            int32_t ids[2 * (MD_TOK_CAPTION + 1)], slots[2 * (MD_TOK_CAPTION + 1)];
            for (int r = 0; r < stride; r++)
                for (int j = 0; j < nopen; j++) {
                    ids[r * nopen + j] = open[j];
                    slots[r * nopen + j] = NOSLOT;
                }
            clear(s->small, m->layers);
            set_batch(s->small, m->layers, stride);
            md_graph_reset(s->g);
            wrap_cond(s->g, cond, 1, guided, s->conds);
            md_tensor *pl = feed(s, s->g, s->conds, s->small, stride, ids, slots, nopen, 0);
            st = pl ? copy_rows(s, s->wide, SET_WIDE, s->small, SET_SMALL, rows, 0, stride, P + nopen) : MD_ERR;
            set_batch(s->small, m->layers, 2);
            if (st != MD_OK)
                break;
            for (int r = 0; r < rows; r++)
                memcpy(shared + (size_t)r * (size_t)m->vocab, pl->data + (size_t)(r % stride) * (size_t)m->vocab,
                       sizeof(float) * (size_t)m->vocab);
            md_graph_reset(s->g);
            wrap_cond(s->g, cond, nr, guided, s->conds);
            logits = md_tensor_wrap(s->g, MD_F32, shared, 2, (int64_t[]){rows, m->vocab});
        } else {
            md_graph_reset(s->g);
            wrap_cond(s->g, cond, nr, guided, s->conds);
            int32_t ids[MAX_ROWS], slots[MAX_ROWS];
            for (int r = 0; r < rows; r++) {
                ids[r] = marker;
                slots[r] = NOSLOT;
            }
            logits = step_ids(s, s->wide, rows, ids, slots, 1, 0);
        }
        st = sample_codes(s, s->wide, nr, guided, logits, P + nopen, o, md_hash64(seed * 2 + 1),
                          (int64_t)r0 * MD_VQ_TOKENS, total, progress, user, cancel, cand + (size_t)r0 * MD_VQ_TOKENS,
                          r0);
        last0 = r0;
    }
    free(shared);
    *chosen = 0;
    float scores[MD_TOK_MAX_CANDIDATES];   /* n <= MD_TOK_MAX_CANDIDATES (check_opts) */
    if (st == MD_OK && o->pick) {
        int k = o->pick(cand, n, o->pick_user, scores);
        if (k < 0 || k >= n) {
            md_log(MD_LOG_ERROR, "token sampling: the candidate chooser returned %d of %d", k, n);
            st = MD_ERR;
        }
        *chosen = k;
    }
    bool rescored = false;
    if (st == MD_OK && o->pick && o->caption && o->caption_margin > 0.f)
        st = recheck_caption(s, o, cand, n, scores, chosen, &rescored);
    if (rescored) {   /* the scoring wrote over the wide cache */
        *cached = -1;
        return st;
    }
    *cached = *chosen >= last0 ? *chosen - last0 : -1;
    return st;
}

/* log P(caption | picture): each picture read in the image -> caption
 * order (P <boi> codes <eoi> <bos> caption <eos>), unguided, in the wide
 * cache, up to ROWS pictures side by side; the caption's words and its
 * <eos> are scored. */
md_status md_tok_caption_logprob(md_tok_session *s, const float *cond, const int32_t *codes, int n,
                                 const int32_t *caption, int caption_len, float *ll)
{
    const md_tokmodel *m = s->m;
    /* up to ROWS pictures at a time, fed about FEED positions over all rows
     * at once: the graph of a part stays about as small as a sampling
     * step's, so scoring adds little to the session's memory */
    enum { ROWS = 8, FEED = 64, PART_MIN = 4 };
    const int N = MD_VQ_TOKENS + 3;   /* <boi> codes <eoi> <bos> */
    if (n < 1 || caption_len < 2 || caption_len > MD_TOK_CAPTION || caption[0] != MD_BPE_BOS ||
        caption[caption_len - 1] != MD_BPE_EOS) {
        md_log(MD_LOG_ERROR, "caption scoring: %d pictures and a caption of %d ids (wants <bos> ... <eos>, at most %d)",
               n, caption_len, MD_TOK_CAPTION);
        return MD_ERR_INVALID;
    }
    md_status st = ensure_wide(s, P + N + MD_TOK_CAPTION);
    int32_t *ids = malloc(sizeof(int32_t) * (FEED + ROWS * PART_MIN)),
            *slots = malloc(sizeof(int32_t) * (FEED + ROWS * PART_MIN));
    if (st == MD_OK && (!ids || !slots))
        st = MD_ERR_ALLOC;
    for (int r0 = 0; r0 < n && st == MD_OK; r0 += ROWS) {
        const int rows = n - r0 < ROWS ? n - r0 : ROWS;
        clear(s->wide, m->layers);
        set_batch(s->wide, m->layers, rows);
        for (int r = 0; r < rows; r++)
            memcpy(s->conds + (size_t)r * MD_SPACE_DIM, cond ? cond : s->zeros, sizeof(float) * MD_SPACE_DIM);
        md_tensor *logits = NULL;
        const int part = FEED / rows < PART_MIN ? PART_MIN : FEED / rows;
        for (int i0 = 0; i0 < N && st == MD_OK; i0 += part) {
            const int tn = N - i0 < part ? N - i0 : part;
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < tn; j++) {
                    const int i = i0 + j, c = i - 1;
                    ids[r * tn + j] = i == 0 ? md_tok_boi(m)
                                      : c < MD_VQ_TOKENS ? md_tok_code(m, codes[(size_t)(r0 + r) * MD_VQ_TOKENS + c])
                                      : c == MD_VQ_TOKENS ? md_tok_eoi(m)
                                                          : MD_BPE_BOS;
                    slots[r * tn + j] = c >= 0 && c < MD_VQ_TOKENS ? c : NOSLOT;
                }
            logits = step_ids(s, s->wide, rows, ids, slots, tn, i0 == 0 ? 0 : P + i0);
            st = logits ? MD_OK : MD_ERR;
        }
        for (int r = 0; r < rows; r++)
            ll[r0 + r] = 0.f;
        for (int j = 1; j < caption_len && st == MD_OK; j++) {
            for (int r = 0; r < rows; r++) {
                const float *l = logits->data + (size_t)r * (size_t)m->vocab;
                float mx = -INFINITY;
                for (int64_t v = 0; v < m->vocab; v++)
                    mx = l[v] > mx ? l[v] : mx;
                double z = 0;
                for (int64_t v = 0; v < m->vocab; v++)
                    z += exp((double)(l[v] - mx));
                ll[r0 + r] += (float)((double)(l[caption[j]] - mx) - log(z));
                ids[r] = caption[j];
                slots[r] = NOSLOT;
            }
            if (j + 1 < caption_len) {
                logits = step_ids(s, s->wide, rows, ids, slots, 1, P + N + j - 1);
                st = logits ? MD_OK : MD_ERR;
            }
        }
    }
    if (s->wide)
        set_batch(s->wide, m->layers, MAX_ROWS);
    md_graph_reset(s->g);
    free(ids);
    free(slots);
    return st;
}

int md_tok_pick_closest(const int32_t *codes, int n, void *user, float *scores)
{
    md_tok_picker *pk = user;
    enum { CHUNK = 4 };
    const int64_t hw = (int64_t)MD_WORLD_SIZE * MD_WORLD_SIZE, in = md_space_input_size(MD_MOD_IMAGE);
    float *x = malloc(sizeof(float) * CHUNK * 3 * (size_t)hw);
    float *prep = malloc(sizeof(float) * (size_t)n * (size_t)in);
    md_image im = {0};
    md_status st = x && prep ? md_image_alloc(&im, MD_WORLD_SIZE, MD_WORLD_SIZE, 3) : MD_ERR_ALLOC;
    for (int f = 0; st == MD_OK && f < n; f += CHUNK) {
        int k = n - f < CHUNK ? n - f : CHUNK;
        st = md_vqgan_detokenize(pk->vq, pk->g, codes + (size_t)f * MD_VQ_TOKENS, k, x);
        for (int i = 0; st == MD_OK && i < k; i++) {
            const float *xi = x + (size_t)i * 3 * (size_t)hw;   /* [3, 64, 64] in [-1, 1] */
            for (int64_t q = 0; q < hw; q++)
                for (int c = 0; c < 3; c++) {
                    float u = (xi[c * hw + q] + 1.f) * 0.5f;
                    im.pixels[q * 3 + c] = u < 0.f ? 0.f : u > 1.f ? 1.f : u;
                }
            st = md_space_prep_image(&im, prep + in * (f + i));
        }
    }
    int best = 0;
    float best_s = -2.f, *sc = scores ? scores : malloc(sizeof(float) * (size_t)n);
    if (st == MD_OK)
        st = sc ? md_space_scores(pk->sp, pk->g, MD_MOD_IMAGE, prep, n, pk->cond, sc) : MD_ERR_ALLOC;
    for (int i = 0; st == MD_OK && i < n; i++)
        if (i == 0 || sc[i] > best_s) {   /* the first on a tie */
            best_s = sc[i];
            best = i;
        }
    if (sc != scores)
        free(sc);
    pk->st = st;
    pk->score = best_s;
    md_image_free(&im);
    free(x);
    free(prep);
    return best;
}

md_status md_tok_sample_image(md_tok_session *s, const float *cond, const md_tok_sample_opts *o, uint64_t seed,
                              md_tok_progress_fn progress, void *user, const volatile int *cancel,
                              int32_t *codes)
{
    md_status st = check_opts(o);
    if (st != MD_OK)
        return st;
    if (o->via_caption && o->candidates <= 1) {
        int64_t pos;
        st = sample_after_caption(s, cond, o, seed, md_tok_boi(s->m), progress, user, MD_VQ_TOKENS, cancel, codes,
                                  &pos);
        md_graph_reset(s->g);
        md_graph_reset(s->g2);
        return st;
    }
    const bool guided = o->guidance != 1.f;
    if (o->candidates > 1) {
        const int n = o->candidates;
        int32_t open[MD_TOK_CAPTION + 1] = {md_tok_boi(s->m)};
        int nopen = o->via_caption ? caption_opening(s, cond, o, seed, md_tok_boi(s->m), cancel, open, &st) : 1;
        if (st != MD_OK)
            return st;
        int32_t *cand = malloc(sizeof(int32_t) * (size_t)n * MD_VQ_TOKENS);
        int k = 0, cached;
        st = cand ? sample_candidates(s, cond, o, seed, open, nopen, n, progress, user, (int64_t)n * MD_VQ_TOKENS,
                                      cancel, cand, &k, &cached)
                  : MD_ERR_ALLOC;
        if (st == MD_OK)
            memcpy(codes, cand + (size_t)k * MD_VQ_TOKENS, sizeof(int32_t) * MD_VQ_TOKENS);
        free(cand);
        if (s->wide)
            set_batch(s->wide, s->m->layers, MAX_ROWS);
        md_graph_reset(s->g);
        return st;
    }
    clear(s->small, s->m->layers);
    set_batch(s->small, s->m->layers, guided ? 2 : 1);
    md_tensor *logits = open_sequence(s, cond, guided, md_tok_boi(s->m));
    st = sample_codes(s, s->small, 1, guided, logits, P + 1, o, md_hash64(seed * 2 + 1), 0, MD_VQ_TOKENS, progress,
                      user, cancel, codes, 0);
    set_batch(s->small, s->m->layers, 2);
    md_graph_reset(s->g);
    return st;
}

/* A chained model's frames 1..15, one after another: frame t from a fresh
 * sequence P <bov> frame t-1 <eof> <frame t> in the small cache (with its
 * unconditional twin when guided). codes holds frame 0 on entry. */
static md_status chain_frames(md_tok_session *s, const float *cond, const md_tok_sample_opts *o, uint64_t seed,
                              bool guided, md_tok_progress_fn progress, void *user, int64_t done0, int64_t total,
                              const volatile int *cancel, int32_t *codes)
{
    const md_tokmodel *m = s->m;
    const int stride = guided ? 2 : 1, n = MD_VQ_TOKENS + 3;
    md_tok_sample_opts fo = *o;
    if (o->frame_temperature > 0.f)
        fo.temperature = o->frame_temperature;
    int32_t ids[2 * (MD_VQ_TOKENS + 3)], slots[2 * (MD_VQ_TOKENS + 3)];
    md_status st = MD_OK;
    s->part_rows = 1;   /* the pair's rows, one a thread: a fork-join a step, not one an op */
    for (int t = 1; t < MD_WORLD_FRAMES && st == MD_OK; t++) {
        if (cancel && *cancel) {
            st = MD_ABORTED;
            break;
        }
        const int32_t *prev = codes + (size_t)(t - 1) * MD_VQ_TOKENS;
        for (int r = 0; r < stride; r++) {
            int32_t *id = ids + r * n, *sl = slots + r * n;
            id[0] = md_tok_bov(m);
            sl[0] = NOSLOT;
            for (int i = 0; i < MD_VQ_TOKENS; i++) {
                id[1 + i] = md_tok_code(m, prev[i]);
                sl[1 + i] = i;
            }
            id[MD_VQ_TOKENS + 1] = md_tok_eof(m);
            id[MD_VQ_TOKENS + 2] = md_tok_frame(m, t);
            sl[MD_VQ_TOKENS + 1] = sl[MD_VQ_TOKENS + 2] = NOSLOT;
        }
        clear(s->small, m->layers);
        set_batch(s->small, m->layers, stride);
        md_graph_reset(s->g);
        wrap_cond(s->g, cond, 1, guided, s->conds);
        md_tensor *logits = feed(s, s->g, s->conds, s->small, stride, ids, slots, n, 0);
        st = sample_codes(s, s->small, 1, guided, logits, P + n, &fo, md_hash64(seed * 2 + 2 + 2 * (uint64_t)t),
                          done0 + (int64_t)(t - 1) * MD_VQ_TOKENS, total, progress, user, cancel,
                          codes + (size_t)t * MD_VQ_TOKENS, 0);
    }
    s->part_rows = PART_MIN_ROWS;
    set_batch(s->small, m->layers, 2);
    md_graph_reset(s->g);
    return st;
}

md_status md_tok_sample_video(md_tok_session *s, const float *cond, const md_tok_sample_opts *o, uint64_t seed,
                              md_tok_progress_fn progress, void *user, const volatile int *cancel,
                              int32_t *codes)
{
    md_status st = check_opts(o);
    if (st != MD_OK)
        return st;
    const md_tokmodel *m = s->m;
    bool guided = o->guidance != 1.f;
    const int F = MD_WORLD_FRAMES - 1;
    int stride = guided ? 2 : 1, rows = F * stride;
    const int ncand = o->candidates > 1 ? o->candidates : 1;
    const int64_t first = (int64_t)ncand * MD_VQ_TOKENS,
                  total = first + (o->first_frame_only ? 0 : (int64_t)F * MD_VQ_TOKENS);
    st = ensure_wide(s, MD_TOK_TMAX);
    if (st != MD_OK)
        return st;
    md_tensor *logits;
    int64_t pos;
    const bool more = !o->first_frame_only;   /* frames 1..15 follow: frame 0 is closed in the cache */
    if (o->via_caption && ncand <= 1) {   /* frame 0 after a caption; frames 1..15 read it in context, unguided */
        st = sample_after_caption(s, cond, o, seed, md_tok_bov(m), progress, user, total, cancel, codes, &pos);
        if (st == MD_OK && more) {
            int32_t id = md_tok_eof(m), sl = NOSLOT;
            set_batch(s->small, m->layers, 1);
            st = feed(s, s->g, s->conds, s->small, 1, &id, &sl, 1, pos) ? MD_OK : MD_ERR;
            set_batch(s->small, m->layers, 2);
            pos++;
        }
        md_graph_reset(s->g2);
        guided = false;
        stride = 1;
        rows = F;
    } else if (o->candidates > 1) {
        /* first frames side by side (after the caption too, which the
         * twins read as well); the chosen one's rows become the small cache */
        const int n = o->candidates;
        int32_t open[MD_TOK_CAPTION + 1] = {md_tok_bov(m)};
        int nopen = o->via_caption ? caption_opening(s, cond, o, seed, md_tok_bov(m), cancel, open, &st) : 1;
        if (st != MD_OK)
            return st;
        int32_t *cand = malloc(sizeof(int32_t) * (size_t)n * MD_VQ_TOKENS);
        int k = 0, cached = -1;
        st = cand ? sample_candidates(s, cond, o, seed, open, nopen, n, progress, user, total, cancel, cand, &k,
                                      &cached)
                  : MD_ERR_ALLOC;
        pos = P + nopen + MD_VQ_TOKENS;
        if (st == MD_OK) {
            memcpy(codes, cand + (size_t)k * MD_VQ_TOKENS, sizeof(int32_t) * MD_VQ_TOKENS);
            if (more && cached >= 0)
                st = copy_rows(s, s->small, SET_SMALL, s->wide, SET_WIDE, stride, cached * stride, stride, pos);
            else if (more)   /* drawn in an earlier round: its opening and codes read again */
                st = reopen_frame(s, cond, guided, open, nopen, codes);
        }
        free(cand);
        set_batch(s->small, m->layers, stride);
        if (st == MD_OK && more) {   /* <eof> closes frame 0 (conds rows 0..stride-1 are the pair's) */
            int32_t ids[2] = {md_tok_eof(m), md_tok_eof(m)}, slots[2] = {NOSLOT, NOSLOT};
            md_graph_reset(s->g);
            st = step_ids(s, s->small, stride, ids, slots, 1, pos) ? MD_OK : MD_ERR;
            pos++;
        }
        set_batch(s->small, m->layers, 2);
    } else {
        clear(s->small, m->layers);
        set_batch(s->small, m->layers, stride);
        logits = open_sequence(s, cond, guided, md_tok_bov(m));
        st = sample_codes(s, s->small, 1, guided, logits, P + 1, o, md_hash64(seed * 2 + 1), 0, total, progress,
                          user, cancel, codes, 0);
        pos = P + 1 + MD_VQ_TOKENS;
        if (st == MD_OK && more) {   /* <eof> closes frame 0 */
            int32_t ids[2] = {md_tok_eof(m), md_tok_eof(m)}, slots[2] = {NOSLOT, NOSLOT};
            st = step_ids(s, s->small, stride, ids, slots, 1, pos) ? MD_OK : MD_ERR;
            pos++;
        }
        set_batch(s->small, m->layers, 2);
    }
    if (st != MD_OK || !more) {
        md_graph_reset(s->g);
        return st;
    }
    if (m->video_chain)
        return chain_frames(s, cond, o, seed, guided, progress, user, first, total, cancel, codes);
    /* frames 1..15 side by side: every row starts from frame 0's cache */
    set_batch(s->wide, m->layers, rows);
    st = copy_rows(s, s->wide, SET_WIDE, s->small, SET_SMALL, rows, 0, stride, pos);
    if (st != MD_OK) {
        set_batch(s->wide, m->layers, MAX_ROWS);
        md_graph_reset(s->g);
        return st;
    }
    md_graph_reset(s->g);
    wrap_cond(s->g, cond, F, guided, s->conds);
    int32_t ids[MAX_ROWS], slots[MAX_ROWS];
    for (int r = 0; r < rows; r++) {
        ids[r] = md_tok_frame(m, 1 + r / stride);
        slots[r] = NOSLOT;
    }
    logits = step_ids(s, s->wide, rows, ids, slots, 1, pos);
    md_tok_sample_opts fo = *o;
    if (o->frame_temperature > 0.f)
        fo.temperature = o->frame_temperature;
    st = sample_codes(s, s->wide, F, guided, logits, pos + 1, &fo, md_hash64(seed * 2 + 2), first, total,
                      progress, user, cancel, codes + MD_VQ_TOKENS, 0);
    for (int64_t l = 0; l < m->layers; l++)
        s->wide[l].batch = MAX_ROWS;
    md_graph_reset(s->g);
    return st;
}

md_status md_tok_sample_caption(md_tok_session *s, const float *cond, const md_tok_sample_opts *o, uint64_t seed,
                                const volatile int *cancel, int32_t *ids, int cap, int *n)
{
    md_status st = check_opts(o);
    if (st != MD_OK)
        return st;
    const md_tokmodel *m = s->m;
    const bool guided = o->guidance != 1.f;
    const int stride = guided ? 2 : 1;
    clear(s->small, m->layers);
    set_batch(s->small, m->layers, stride);
    md_tensor *logits = open_sequence(s, cond, guided, MD_BPE_BOS);
    const uint64_t key = md_hash64(seed * 2 + 7);
    const int32_t banned[2] = {MD_BPE_PAD, MD_BPE_BOS};
    *n = 0;
    int64_t pos = P + 1;
    for (int i = 0; i < MD_TOK_CAPTION - 2; i++) {
        if (cancel && *cancel) {
            st = MD_ABORTED;
            break;
        }
        if (!logits) {
            st = MD_ERR;
            break;
        }
        const float *lc = logits->data, *lu = guided ? lc + m->vocab : NULL;
        int32_t id = draw(s, lc, lu, o, 0, (int32_t)m->text_vocab, -1, banned, 2,
                          md_rand_uniform_at(key, (uint64_t)i));
        if (id == MD_BPE_EOS)
            break;
        if (*n < cap)
            ids[(*n)++] = id;
        int32_t fid[2] = {id, id}, fs[2] = {NOSLOT, NOSLOT};
        logits = step_ids(s, s->small, stride, fid, fs, 1, pos++);
    }
    set_batch(s->small, m->layers, 2);
    md_graph_reset(s->g);
    return st;
}

/* ---- training ---- */

void md_tok_train_default_opts(md_tok_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 1500;
    o->batch_images = 16;
    o->batch_videos = 4;
    o->corpus_images = 16000;
    o->corpus_videos = 4000;
    o->lr = 6e-4f;
    o->drop_cond = 0.1f;
    o->caption_weight = 3.0f;
    o->d = 256;
    o->layers = 6;
    o->heads = 8;
    o->seed = 1;
    o->video_chain = 0;
}

/* frames kept per corpus video: 0, then three pairs of consecutive frames
 * (t - 1, t) with distinct t in 1..15 */
#define VPAIRS 3
#define VFRAMES (1 + 2 * VPAIRS)

typedef struct tok_corpus {
    int64_t ni, nv;
    md_world_sample *is, *vs;
    int32_t *icodes;                 /* [ni, 256] */
    int32_t *vcodes;                 /* [nv, VFRAMES, 256] */
    int8_t *vframe;                  /* [nv, VFRAMES] frame index */
    float *iemb, *vemb, *aemb;       /* own embeddings [ni|nv, D]; aemb: the video's soundtrack */
} tok_corpus;

static void corpus_free(tok_corpus *c)
{
    free(c->is); free(c->vs); free(c->icodes); free(c->vcodes); free(c->vframe);
    free(c->iemb); free(c->vemb); free(c->aemb);
    memset(c, 0, sizeof *c);
}

#define CHUNK 64

/* Draws, renders, tokenises and embeds the corpus (train split). */
static md_status corpus_build(tok_corpus *c, const md_space *sp, const md_vqgan *vq, const md_world *w,
                              const md_tok_train_opts *o)
{
    memset(c, 0, sizeof *c);
    c->ni = o->corpus_images;
    c->nv = o->corpus_videos;
    const int64_t D = MD_SPACE_DIM, isz = md_space_input_size(MD_MOD_IMAGE), vsz = md_space_input_size(MD_MOD_VIDEO),
                  asz = md_space_input_size(MD_MOD_AUDIO), qsz = (int64_t)3 * S * S, T = md_threads_get();
    const size_t fsz = (size_t)S * S * 3;
    c->is = malloc(sizeof *c->is * (size_t)(c->ni + 1));
    c->vs = malloc(sizeof *c->vs * (size_t)(c->nv + 1));
    c->icodes = malloc(sizeof(int32_t) * MD_VQ_TOKENS * (size_t)(c->ni + 1));
    c->vcodes = malloc(sizeof(int32_t) * MD_VQ_TOKENS * VFRAMES * (size_t)(c->nv + 1));
    c->vframe = malloc((size_t)VFRAMES * (size_t)(c->nv + 1));
    c->iemb = malloc(sizeof(float) * (size_t)(D * (c->ni + 1)));
    c->vemb = malloc(sizeof(float) * (size_t)(D * (c->nv + 1)));
    c->aemb = malloc(sizeof(float) * (size_t)(D * (c->nv + 1)));
    float *qx = malloc(sizeof(float) * (size_t)(qsz * CHUNK * VFRAMES));
    float *sx = malloc(sizeof(float) * (size_t)((vsz > isz ? vsz : isz) * CHUNK));
    float *ax = malloc(sizeof(float) * (size_t)(asz * CHUNK));
    uint8_t *frames = malloc(fsz * MD_WORLD_FRAMES * (size_t)T);
    float *audio = malloc(sizeof(float) * MD_WORLD_AUDIO_SAMPLES * (size_t)T);
    md_graph *g = md_graph_new((size_t)1 << 26);
    md_status st = c->is && c->vs && c->icodes && c->vcodes && c->vframe && c->iemb && c->vemb && c->aemb && qx &&
                           sx && ax && frames && audio && g
                       ? MD_OK
                       : MD_ERR_ALLOC;
    for (int64_t i0 = 0; i0 < c->ni && st == MD_OK; i0 += CHUNK) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        const int nb = (int)(c->ni - i0 < CHUNK ? c->ni - i0 : CHUNK);
        volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads((int)T)
        for (int b = 0; b < nb; b++) {
            md_world_sample *s = &c->is[i0 + b];
            uint8_t *rgb = frames + fsz * MD_WORLD_FRAMES * (size_t)omp_get_thread_num();
            if (md_world_draw(w, o->seed, MD_SPLIT_TRAIN, MD_WORLD_IMAGE, i0 + b, s) != MD_OK) {
                bad = 1;
                continue;
            }
            md_world_render_image(w, s, rgb);
            md_vqgan_prep_rgb(rgb, qx + qsz * b);
            md_judge_prep_rgb(rgb, sx + isz * b);
        }
        if (bad) { st = MD_ERR; break; }
        st = md_vqgan_tokenize(vq, g, qx, nb, c->icodes + i0 * MD_VQ_TOKENS);
        if (st == MD_OK)
            st = md_space_embed(sp, g, MD_MOD_IMAGE, sx, nb, c->iemb + i0 * D);
        if (o->progress && st == MD_OK)
            o->progress("tokenising images", i0 + nb, c->ni, 0.f, o->user);
    }
    for (int64_t i0 = 0; i0 < c->nv && st == MD_OK; i0 += CHUNK) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        const int nb = (int)(c->nv - i0 < CHUNK ? c->nv - i0 : CHUNK);
        volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads((int)T)
        for (int b = 0; b < nb; b++) {
            md_world_sample *s = &c->vs[i0 + b];
            int th = omp_get_thread_num();
            uint8_t *fr = frames + fsz * MD_WORLD_FRAMES * (size_t)th;
            float *au = audio + MD_WORLD_AUDIO_SAMPLES * (size_t)th;
            if (md_world_draw(w, o->seed, MD_SPLIT_TRAIN, MD_WORLD_VIDEO, i0 + b, s) != MD_OK) {
                bad = 1;
                continue;
            }
            md_world_render_video(w, s, fr, au);
            int8_t *fi = c->vframe + (size_t)(i0 + b) * VFRAMES;
            uint64_t r = md_hash64(o->seed * 0x51ed27u + (uint64_t)(i0 + b));
            fi[0] = 0;
            for (int k = 1; k <= VPAIRS; k++)   /* three distinct later frames, each after its predecessor */
                for (;;) {
                    r = md_hash64(r + 1);
                    int t = 1 + (int)(r % (MD_WORLD_FRAMES - 1));
                    bool dup = false;
                    for (int q = 1; q < k; q++)
                        dup |= fi[2 * q] == t;
                    if (!dup) {
                        fi[2 * k - 1] = (int8_t)(t - 1);
                        fi[2 * k] = (int8_t)t;
                        break;
                    }
                }
            for (int k = 0; k < VFRAMES; k++)
                md_vqgan_prep_rgb(fr + fsz * (size_t)fi[k], qx + qsz * (b * VFRAMES + k));
            md_judge_prep_frames(fr, sx + vsz * b);
            if (md_judge_prep_audio(au, ax + asz * b) != MD_OK)
                bad = 1;
        }
        if (bad) { st = MD_ERR; break; }
        st = md_vqgan_tokenize(vq, g, qx, (int64_t)nb * VFRAMES, c->vcodes + i0 * VFRAMES * MD_VQ_TOKENS);
        if (st == MD_OK)
            st = md_space_embed(sp, g, MD_MOD_VIDEO, sx, nb, c->vemb + i0 * D);
        if (st == MD_OK)
            st = md_space_embed(sp, g, MD_MOD_AUDIO, ax, nb, c->aemb + i0 * D);
        if (o->progress && st == MD_OK)
            o->progress("tokenising videos", i0 + nb, c->nv, 0.f, o->user);
    }
    md_graph_free(g);
    free(audio); free(frames); free(ax); free(sx); free(qx);
    if (st != MD_OK)
        corpus_free(c);
    return st;
}

/* One training sequence: ids, slots and next-token targets (-100: no loss). */
typedef struct seq_buf {
    int32_t *ids, *slots, *tgt;      /* ids/slots [B, T], tgt [B, P + T] */
    int32_t *tgt_text, *tgt_code;    /* tgt split: caption tokens, and the rest */
    int64_t T;
} seq_buf;

/* <bos> text <eos> into out [MD_TOK_CAPTION]; a text longer than the slot
 * keeps its first tokens (cut) or is refused with -1. */
static int caption_ids(const md_space *sp, const char *text, int32_t *out, bool cut)
{
    int32_t tmp[MD_SPACE_TEXT_LEN];
    size_t n = md_bpe_encode(sp->bpe, text, strlen(text), tmp, MD_SPACE_TEXT_LEN);
    if (n > MD_TOK_CAPTION - 2) {
        if (!cut)
            return -1;
        n = MD_TOK_CAPTION - 2;
    }
    out[0] = MD_BPE_BOS;
    memcpy(out + 1, tmp, sizeof(int32_t) * n);
    out[n + 1] = MD_BPE_EOS;
    return (int)n + 2;
}

static int put_caption(const md_space *sp, const char *text, int32_t *out)
{
    return caption_ids(sp, text, out, false);
}

int md_tok_put_caption(const md_space *sp, const char *text, int32_t *ids)
{
    return caption_ids(sp, text, ids, true);
}

static int put_frame(const md_tokmodel *m, int32_t open, const int32_t *codes, int32_t close, int32_t *ids,
                     int32_t *slots)
{
    int n = 0;
    ids[n] = open; slots[n++] = NOSLOT;
    for (int i = 0; i < MD_VQ_TOKENS; i++) {
        ids[n] = md_tok_code(m, codes[i]);
        slots[n++] = i;
    }
    ids[n] = close; slots[n++] = NOSLOT;
    return n;
}

/* Fills row b of sb. caption is the sequence's caption (BPE ids incl.
 * <bos>/<eos>, nc of them); first: caption before the pictures. */
static void fill_row(const md_tokmodel *m, seq_buf *sb, int b, const int32_t *caption, int nc, bool first,
                     const int32_t *f0, int tframe, const int32_t *ft)
{
    int32_t *ids = sb->ids + (size_t)b * (size_t)sb->T, *slots = sb->slots + (size_t)b * (size_t)sb->T;
    int32_t *tgt = sb->tgt + (size_t)b * (size_t)(P + sb->T);
    int n = 0;
    if (first) {
        memcpy(ids, caption, sizeof(int32_t) * (size_t)nc);
        for (int i = 0; i < nc; i++)
            slots[i] = NOSLOT;
        n += nc;
    }
    if (!ft)
        n += put_frame(m, md_tok_boi(m), f0, md_tok_eoi(m), ids + n, slots + n);
    else {
        n += put_frame(m, md_tok_bov(m), f0, md_tok_eof(m), ids + n, slots + n);
        n += put_frame(m, md_tok_frame(m, tframe), ft, md_tok_eof(m), ids + n, slots + n);
    }
    if (!first) {
        memcpy(ids + n, caption, sizeof(int32_t) * (size_t)nc);
        for (int i = 0; i < nc; i++)
            slots[n + i] = NOSLOT;
        n += nc;
    }
    for (int64_t i = n; i < sb->T; i++) {
        ids[i] = MD_BPE_PAD;
        slots[i] = NOSLOT;
    }
    /* position P-1+i predicts ids[i]; prefix positions before it predict nothing */
    for (int64_t i = 0; i < P + sb->T; i++)
        tgt[i] = -100;
    for (int i = 0; i < n; i++)
        tgt[P - 1 + i] = ids[i];
}

md_status md_tok_train(md_tokmodel *m, const md_space *sp, const md_vqgan *vq, const md_world *w,
                       const md_tok_train_opts *o)
{
    if (o->steps < 1 || o->batch_images < 0 || o->batch_videos < 0 || o->batch_images + o->batch_videos < 1 ||
        o->corpus_images < (o->batch_images ? 1 : 0) || o->corpus_videos < (o->batch_videos ? 1 : 0) ||
        !(o->lr > 0.f) || !(o->drop_cond >= 0.f && o->drop_cond < 1.f) || !(o->caption_weight > 0.f)) {
        md_log(MD_LOG_ERROR, "token transformer training: steps >= 1, batches >= 0 (one > 0), a corpus for each "
                             "batch, lr > 0, drop_cond in [0, 1)");
        return MD_ERR_INVALID;
    }
    md_status st = md_tok_init(m, md_bpe_vocab_size(sp->bpe), o->d, o->layers, o->heads, o->seed);
    if (st != MD_OK)
        return st;
    if (o->init) {   /* go on from a trained model of the same shape */
        if (o->init->text_vocab != m->text_vocab || o->init->d != m->d || o->init->layers != m->layers ||
            o->init->heads != m->heads) {
            md_log(MD_LOG_ERROR, "token transformer training: the model to go on from has another shape "
                                 "(d %lld, %lld layers, %lld heads)",
                   (long long)o->init->d, (long long)o->init->layers, (long long)o->init->heads);
            md_tok_free(m);
            return MD_ERR_INVALID;
        }
        memcpy(md_paramset_values(m->ps), md_paramset_values(o->init->ps),
               sizeof(float) * (size_t)md_paramset_numel(m->ps));
    }
    m->video_chain = o->video_chain ? 1 : 0;
    tok_corpus c;
    if ((st = corpus_build(&c, sp, vq, w, o)) != MD_OK) {
        md_tok_free(m);
        return st;
    }
    const int BI = o->batch_images, BV = o->batch_videos, B = BI + BV;
    const int64_t D = MD_SPACE_DIM;
    seq_buf si = {.T = MD_TOK_CAPTION + MD_VQ_TOKENS + 2}, sv = {.T = MD_TOK_CAPTION + 2 * (MD_VQ_TOKENS + 2)};
    si.ids = malloc(sizeof(int32_t) * (size_t)(BI * si.T + 1));
    si.slots = malloc(sizeof(int32_t) * (size_t)(BI * si.T + 1));
    si.tgt = malloc(sizeof(int32_t) * (size_t)(BI * (P + si.T) + 1));
    si.tgt_text = malloc(sizeof(int32_t) * (size_t)(BI * (P + si.T) + 1));
    si.tgt_code = malloc(sizeof(int32_t) * (size_t)(BI * (P + si.T) + 1));
    sv.tgt_text = malloc(sizeof(int32_t) * (size_t)(BV * (P + sv.T) + 1));
    sv.tgt_code = malloc(sizeof(int32_t) * (size_t)(BV * (P + sv.T) + 1));
    sv.ids = malloc(sizeof(int32_t) * (size_t)(BV * sv.T + 1));
    sv.slots = malloc(sizeof(int32_t) * (size_t)(BV * sv.T + 1));
    sv.tgt = malloc(sizeof(int32_t) * (size_t)(BV * (P + sv.T) + 1));
    float *cond = malloc(sizeof(float) * (size_t)(D * B));
    float *temb = malloc(sizeof(float) * (size_t)(D * B));
    char(*texts)[MD_CAPTION_MAX] = malloc(sizeof *texts * (size_t)B);
    const char **tp = malloc(sizeof *tp * (size_t)B);
    int *text_row = malloc(sizeof(int) * (size_t)B);
    md_graph *g = md_graph_new((size_t)1 << 28);
    md_adamw opt;
    bool have_opt = false;
    if (!si.ids || !si.slots || !si.tgt || !si.tgt_text || !si.tgt_code || !sv.tgt_text || !sv.tgt_code || !sv.ids || !sv.slots || !sv.tgt || !cond || !temb || !texts || !tp ||
        !text_row || !g)
        st = MD_ERR_ALLOC;
    if (st == MD_OK && (st = md_adamw_init(&opt, m->ps, 0.9f, 0.95f, 1e-8f, 0.05f)) == MD_OK)
        have_opt = true;
    md_rng r;
    md_rng_init(&r, o->seed * 7 + 3);
    for (int64_t step = 0; step < o->steps && st == MD_OK; step++) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        int nt = 0;
        for (int b = 0; b < B && st == MD_OK; b++) {
            const bool vid = b >= BI;
            const int64_t k = vid ? (int64_t)md_rng_below(&r, (uint32_t)c.nv) : (int64_t)md_rng_below(&r, (uint32_t)c.ni);
            const md_world_sample *s = vid ? &c.vs[k] : &c.is[k];
            char cap[MD_CAPTION_MAX];
            int32_t capids[MD_TOK_CAPTION];
            int nc = -1;
            for (int tries = 0; tries < 8 && nc < 0; tries++) {
                if (md_caption_make(s, (int)md_rng_below(&r, 1000), cap, sizeof cap, NULL) != MD_OK)
                    continue;
                nc = put_caption(sp, cap, capids);
            }
            if (nc < 0 && md_caption_digit(s->kind, s->attr[MD_ATTR_DIGIT], md_rng_u32(&r), cap, sizeof cap) == MD_OK)
                nc = put_caption(sp, cap, capids);
            if (nc < 0) {
                md_log(MD_LOG_ERROR, "token transformer training: no caption of sample %lld fits %d tokens",
                       (long long)s->index, MD_TOK_CAPTION);
                st = MD_ERR;
                break;
            }
            /* the condition: none, the caption, a digit-only caption of any
             * kind (as audio reads), or the sample's own embedding */
            float u = md_rng_uniform(&r);
            float *cv = cond + D * b;
            if (u < o->drop_cond) {
                memset(cv, 0, sizeof(float) * (size_t)D);
            } else if (u < o->drop_cond + 0.45f) {
                strcpy(texts[nt], cap);
                text_row[nt++] = b;
            } else if (u < o->drop_cond + 0.6f) {
                md_world_kind kk = (md_world_kind)md_rng_below(&r, 3);
                if (md_caption_digit(kk, s->attr[MD_ATTR_DIGIT], md_rng_u32(&r), texts[nt], MD_CAPTION_MAX) != MD_OK) {
                    st = MD_ERR;
                    break;
                }
                text_row[nt++] = b;
            } else {
                const float *own = vid ? (md_rng_uniform(&r) < 0.25f ? c.aemb : c.vemb) + D * k : c.iemb + D * k;
                memcpy(cv, own, sizeof(float) * (size_t)D);
            }
            bool first = md_rng_uniform(&r) < 0.5f;
            if (!vid)
                fill_row(m, &si, b, capids, nc, first, c.icodes + k * MD_VQ_TOKENS, 0, NULL);
            else {
                /* a later frame after frame 0, or after the frame before it */
                int j = 2 * (1 + (int)md_rng_below(&r, VPAIRS)), j0 = o->video_chain ? j - 1 : 0;
                const int32_t *vc = c.vcodes + (size_t)k * VFRAMES * MD_VQ_TOKENS;
                fill_row(m, &sv, b - BI, capids, nc, first, vc + j0 * MD_VQ_TOKENS, c.vframe[k * VFRAMES + j],
                         vc + j * MD_VQ_TOKENS);
            }
        }
        if (st != MD_OK)
            break;
        if (nt > 0) {
            for (int i = 0; i < nt; i++)
                tp[i] = texts[i];
            if ((st = md_space_embed(sp, g, MD_MOD_TEXT, tp, nt, temb)) != MD_OK)
                break;
            for (int i = 0; i < nt; i++)
                memcpy(cond + D * text_row[i], temb + D * i, sizeof(float) * (size_t)D);
        }
        md_graph_reset(g);
        md_paramset_zero_grad(m->ps);
        /* the loss: a mean over every target token, caption tokens
         * counted caption_weight times */
        md_tensor *loss = NULL;
        double wsum = 0;
        int64_t cnt[2][2] = {{0, 0}, {0, 0}};   /* [part][text, other] */
        for (int part = 0; part < 2; part++) {
            int nb = part ? BV : BI;
            seq_buf *sb = part ? &sv : &si;
            for (int64_t i = 0; i < nb * (P + sb->T); i++) {
                int32_t t = sb->tgt[i];
                sb->tgt_text[i] = t >= 0 && t < m->text_vocab ? t : -100;
                sb->tgt_code[i] = t >= m->text_vocab ? t : -100;
                cnt[part][0] += sb->tgt_text[i] >= 0;
                cnt[part][1] += sb->tgt_code[i] >= 0;
            }
            wsum += o->caption_weight * (double)cnt[part][0] + (double)cnt[part][1];
        }
        for (int part = 0; part < 2; part++) {
            int nb = part ? BV : BI;
            if (nb == 0)
                continue;
            seq_buf *sb = part ? &sv : &si;
            md_tensor *ct = md_tensor_wrap(g, MD_F32, cond + (part ? D * BI : 0), 2, (int64_t[]){nb, D});
            md_tensor *it = md_tensor_wrap(g, MD_I32, sb->ids, 2, (int64_t[]){nb, sb->T});
            md_tensor *lt = md_tensor_wrap(g, MD_I32, sb->slots, 2, (int64_t[]){nb, sb->T});
            md_tensor *logits = md_tok_forward(g, m, ct, it, lt);
            for (int k = 0; k < 2; k++) {
                if (cnt[part][k] == 0)
                    continue;
                md_tensor *tt = md_tensor_wrap(g, MD_I32, k ? sb->tgt_code : sb->tgt_text, 1,
                                               (int64_t[]){nb * (P + sb->T)});
                md_tensor *l = md_cross_entropy(g, logits, tt, 0.f, -100);
                double wk = (k ? 1.0 : o->caption_weight) * (double)cnt[part][k] / wsum;
                l = md_scale(g, l, (float)wk);
                loss = loss ? md_add(g, loss, l) : l;
            }
        }
        md_graph_backward(g, loss);
        md_paramset_finish_grads(m->ps);
        md_clip_grad_norm(m->ps, 1.0f);
        md_adamw_step(&opt, md_lr_warmup_cosine(step, o->steps * 3 / 100 + 1, o->steps, o->lr, o->lr * 0.1f));
        if (o->progress)
            o->progress("training", step, o->steps, loss->data[0], o->user);
    }
    if (g && getenv("MEDLEY_PROFILE"))
        md_graph_profile_print(g, stderr);
    if (have_opt)
        md_adamw_free(&opt);
    md_graph_free(g);
    free(text_row); free(tp); free(texts); free(temb); free(cond);
    free(si.ids); free(si.slots); free(si.tgt); free(sv.ids); free(sv.slots); free(sv.tgt);
    free(si.tgt_text); free(si.tgt_code); free(sv.tgt_text); free(sv.tgt_code);
    corpus_free(&c);
    if (st != MD_OK)
        md_tok_free(m);
    return st;
}

