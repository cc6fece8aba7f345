/* tokens_device.c — see tokens_device.h. Host code queuing the kernels of
 * cuda/md_cuda.h; every call's status is checked, the first failure ends
 * the step with that status (already logged by the kernel's wrapper). */
#include "tokens_device.h"

#include "cuda/md_cuda.h"

#include <stdlib.h>
#include <string.h>

#define P MD_TOK_PREFIX

typedef struct dev_block {
    float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    float *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} dev_block;

typedef struct dev_set {              /* one set of caches: per layer k, v [rows, MD_TOK_TMAX, d] */
    int64_t rows;
    float **k, **v;
    /* One-position steps replayed from captured graphs, graph[r] for r
     * rows, over buffers of their own (device, and pinned host memory the
     * graph's copies read and write). */
    md_cuda_graph **graph;           /* [rows + 1] */
    float *x, *h, *q, *a, *u, *all, *te, *ge, *dl, *dcond;
    int32_t *dids, *dslots;
    int64_t *dpos;
    float *hcond, *hlogits;
    int32_t *hids, *hslots;
    int64_t *hpos;
} dev_set;

struct md_tok_device {
    const md_tokmodel *m;
    md_cuda *c;
    size_t mark;                     /* the arena before this object */
    int nsets;
    dev_set *sets;
    bool graphs;                     /* one-position steps from captured graphs (MEDLEY_CUDA_GRAPHS=0: off) */
    float *cond_w, *cond_b, *cond_all_w, *tok_emb, *pos_emb, *grid_emb, *lnf_w, *lnf_b, *head_w;
    dev_block *blocks;
};

#define TRY(x) do { md_status st_ = (x); if (st_ != MD_OK) return st_; } while (0)

static float *put(md_tok_device *d, const md_tensor *t, md_status *st)
{
    if (*st != MD_OK)
        return NULL;
    size_t bytes = sizeof(float) * (size_t)md_numel(t);
    float *p = md_cuda_alloc(d->c, bytes);
    if (!p) {
        *st = MD_ERR_ALLOC;
        return NULL;
    }
    *st = md_cuda_upload(d->c, p, t->data, bytes);
    return p;
}

/* The buffers of a set's one-position steps (see dev_set). */
static md_status step_buffers(md_tok_device *d, dev_set *e)
{
    const int64_t R = e->rows, D = d->m->d;
    md_cuda *c = d->c;
    float **dev[] = {&e->x, &e->h, &e->q, &e->a, &e->all, &e->te, &e->ge};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (!(*dev[i] = md_cuda_alloc(c, sizeof(float) * (size_t)(R * D))))
            return MD_ERR_ALLOC;
    e->u = md_cuda_alloc(c, sizeof(float) * (size_t)(R * 4 * D));
    e->dl = md_cuda_alloc(c, sizeof(float) * (size_t)(R * d->m->vocab));
    e->dcond = md_cuda_alloc(c, sizeof(float) * (size_t)(R * MD_SPACE_DIM));
    e->dids = md_cuda_alloc(c, sizeof(int32_t) * (size_t)R);
    e->dslots = md_cuda_alloc(c, sizeof(int32_t) * (size_t)R);
    e->dpos = md_cuda_alloc(c, sizeof(int64_t));
    e->hcond = md_cuda_host_alloc(c, sizeof(float) * (size_t)(R * MD_SPACE_DIM));
    e->hlogits = md_cuda_host_alloc(c, sizeof(float) * (size_t)(R * d->m->vocab));
    e->hids = md_cuda_host_alloc(c, sizeof(int32_t) * (size_t)R);
    e->hslots = md_cuda_host_alloc(c, sizeof(int32_t) * (size_t)R);
    e->hpos = md_cuda_host_alloc(c, sizeof(int64_t));
    bool ok = e->u && e->dl && e->dcond && e->dids && e->dslots && e->dpos && e->hcond && e->hlogits && e->hids &&
              e->hslots && e->hpos;
    return ok ? MD_OK : MD_ERR_ALLOC;
}

void md_tok_device_free(md_tok_device *d)
{
    if (!d)
        return;
    md_cuda_sync(d->c);   /* nothing queued may still read the memory given back */
    md_cuda_rewind_to(d->c, d->mark);
    for (int i = 0; d->sets && i < d->nsets; i++) {
        dev_set *e = &d->sets[i];
        for (int64_t r = 0; e->graph && r <= e->rows; r++)
            md_cuda_graph_free(e->graph[r]);
        free(e->graph);
        md_cuda_host_free(e->hcond);
        md_cuda_host_free(e->hlogits);
        md_cuda_host_free(e->hids);
        md_cuda_host_free(e->hslots);
        md_cuda_host_free(e->hpos);
        free(e->k);
        free(e->v);
    }
    free(d->sets);
    free(d->blocks);
    free(d);
}

md_status md_tok_device_new(const md_tokmodel *m, md_cuda *c, int nsets, const int64_t *set_rows,
                            md_tok_device **out)
{
    *out = NULL;
    for (int i = 0; i < nsets; i++)
        if (set_rows[i] < 1) {
            md_log(MD_LOG_ERROR, "token transformer on %s: cache set %d of %lld rows (at least 1)", md_cuda_name(c), i,
                   (long long)set_rows[i]);
            return MD_ERR_INVALID;
        }
    if (nsets < 1) {
        md_log(MD_LOG_ERROR, "token transformer on %s: no cache set", md_cuda_name(c));
        return MD_ERR_INVALID;
    }
    md_tok_device *d = calloc(1, sizeof *d);
    if (!d)
        return MD_ERR_ALLOC;
    d->m = m;
    d->c = c;
    d->mark = md_cuda_mark(c);
    d->nsets = nsets;
    d->blocks = calloc((size_t)m->layers, sizeof *d->blocks);
    d->sets = calloc((size_t)nsets, sizeof *d->sets);
    bool ok = d->blocks && d->sets;
    for (int i = 0; ok && i < nsets; i++) {
        d->sets[i].rows = set_rows[i];
        ok = (d->sets[i].k = calloc((size_t)m->layers, sizeof(float *))) &&
             (d->sets[i].v = calloc((size_t)m->layers, sizeof(float *))) &&
             (d->sets[i].graph = calloc((size_t)set_rows[i] + 1, sizeof(md_cuda_graph *)));
    }
    const char *e = getenv("MEDLEY_CUDA_GRAPHS");
    d->graphs = !(e && strcmp(e, "0") == 0);
    if (!ok) {
        md_tok_device_free(d);
        return MD_ERR_ALLOC;
    }
    md_status st = MD_OK;
    d->cond_w = put(d, m->cond_w, &st);
    d->cond_b = put(d, m->cond_b, &st);
    d->cond_all_w = put(d, m->cond_all_w, &st);
    d->tok_emb = put(d, m->tok_emb, &st);
    d->pos_emb = put(d, m->pos_emb, &st);
    d->grid_emb = put(d, m->grid_emb, &st);
    d->lnf_w = put(d, m->lnf_w, &st);
    d->lnf_b = put(d, m->lnf_b, &st);
    d->head_w = put(d, m->head_w, &st);
    for (int64_t l = 0; l < m->layers && st == MD_OK; l++) {
        const md_tblock *b = &m->blocks[l];
        dev_block *db = &d->blocks[l];
        db->ln1_w = put(d, b->ln1_w, &st);
        db->ln1_b = put(d, b->ln1_b, &st);
        db->qkv_w = put(d, b->qkv_w, &st);
        db->qkv_b = put(d, b->qkv_b, &st);
        db->proj_w = put(d, b->proj_w, &st);
        db->proj_b = put(d, b->proj_b, &st);
        db->ln2_w = put(d, b->ln2_w, &st);
        db->ln2_b = put(d, b->ln2_b, &st);
        db->fc1_w = put(d, b->fc1_w, &st);
        db->fc1_b = put(d, b->fc1_b, &st);
        db->fc2_w = put(d, b->fc2_w, &st);
        db->fc2_b = put(d, b->fc2_b, &st);
        for (int i = 0; i < nsets && st == MD_OK; i++) {
            size_t bytes = sizeof(float) * (size_t)(set_rows[i] * MD_TOK_TMAX * m->d);
            d->sets[i].k[l] = md_cuda_alloc(c, bytes);
            d->sets[i].v[l] = md_cuda_alloc(c, bytes);
            if (!d->sets[i].k[l] || !d->sets[i].v[l])
                st = MD_ERR_ALLOC;
        }
    }
    for (int i = 0; i < nsets && st == MD_OK; i++)
        st = step_buffers(d, &d->sets[i]);
    if (st == MD_OK)
        st = md_cuda_sync(c);
    if (st != MD_OK) {
        md_log(MD_LOG_ERROR, "token transformer on %s: cannot place the model (%s)", md_cuda_name(c),
               md_status_str(st));
        md_tok_device_free(d);
        return st;
    }
    *out = d;
    return MD_OK;
}

/* y [r, n] = x [r, k] @ w [n, k]^T (+ bias [n]) */
static md_status linear(md_cuda *c, float *y, const float *x, const float *w, const float *bias, int64_t r,
                        int64_t n, int64_t k)
{
    TRY(md_cuda_gemm(c, false, true, r, n, k, 1.f, x, k, w, k, 0.f, y, n));
    return bias ? md_cuda_add_rows(c, y, y, bias, r, n) : MD_OK;
}

/* dst[b, t, :] = src[b, t, :] (+ beta dst), [B, T, n] views with the
 * given row strides (floats between positions, between batch rows) */
static md_status copy3(md_cuda *c, float *dst, int64_t dbs, int64_t dts, const float *src, int64_t sbs, int64_t sts,
                       int64_t B, int64_t T, int64_t n, float beta)
{
    int64_t shape[3] = {B, T, n}, ds[3] = {dbs, dts, 1}, ss[3] = {sbs, sts, 1};
    return md_cuda_copy_strided(c, dst, ds, src, ss, shape, 3, beta);
}

/* The rest of block b once attention's output a [R, D] is there: the
 * projection and its residual, then the MLP and its residual (h, u
 * scratch). Both kinds of step share it, so they queue the same kernels. */
static md_status block_rest(md_cuda *c, const dev_block *b, float *x, float *h, const float *a, float *u,
                            int64_t R, int64_t D)
{
    TRY(linear(c, h, a, b->proj_w, b->proj_b, R, D, D));
    TRY(md_cuda_binary(c, MD_CUDA_ADD, x, x, h, R * D));
    TRY(md_cuda_layernorm_fwd(c, h, NULL, NULL, x, b->ln2_w, b->ln2_b, R, D, 1e-5f));
    TRY(linear(c, u, h, b->fc1_w, b->fc1_b, R, 4 * D, D));
    TRY(md_cuda_unary_fwd(c, MD_CUDA_GELU, u, u, R * 4 * D));
    TRY(linear(c, h, u, b->fc2_w, b->fc2_b, R, D, 4 * D));
    return md_cuda_binary(c, MD_CUDA_ADD, x, x, h, R * D);
}

/* dl [B, vocab] = the head over the final norm of last [B, D] (h scratch). */
static md_status head(const md_tok_device *d, float *dl, float *h, const float *last, int64_t B)
{
    TRY(md_cuda_layernorm_fwd(d->c, h, NULL, NULL, last, d->lnf_w, d->lnf_b, B, d->m->d, 1e-5f));
    return linear(d->c, dl, h, d->head_w, NULL, B, d->m->vocab, d->m->d);
}

static md_status step(md_tok_device *d, const dev_set *set, int64_t row0, const float *cond, int64_t B,
                      const int32_t *ids, const int32_t *slots, int64_t t, int64_t pos0, float *logits)
{
    const md_tokmodel *m = d->m;
    md_cuda *c = d->c;
    const int64_t D = m->d, T = (pos0 == 0 ? P : 0) + t, R = B * T, H = m->heads, tk = pos0 + T;
    float *dcond = md_cuda_alloc(c, sizeof(float) * (size_t)(B * MD_SPACE_DIM));
    int32_t *dids = t ? md_cuda_alloc(c, sizeof(int32_t) * (size_t)(B * t)) : NULL;
    int32_t *dslots = t ? md_cuda_alloc(c, sizeof(int32_t) * (size_t)(B * t)) : NULL;
    float *x = md_cuda_alloc(c, sizeof(float) * (size_t)(R * D));
    float *h = md_cuda_alloc(c, sizeof(float) * (size_t)(R * D));
    float *q = md_cuda_alloc(c, sizeof(float) * (size_t)(R * D));
    float *a = md_cuda_alloc(c, sizeof(float) * (size_t)(R * D));
    float *u = md_cuda_alloc(c, sizeof(float) * (size_t)(R * 4 * D));   /* qkv [R, 3D], then the MLP's [R, 4D] */
    float *e = md_cuda_alloc(c, sizeof(float) * (size_t)(B * (P * D > 2 * D * t ? P * D : 2 * D * t) + B * D));
    float *dl = md_cuda_alloc(c, sizeof(float) * (size_t)(B * m->vocab));
    if (!dcond || (t && (!dids || !dslots)) || !x || !h || !q || !a || !u || !e || !dl)
        return MD_ERR_ALLOC;
    TRY(md_cuda_upload(c, dcond, cond, sizeof(float) * (size_t)(B * MD_SPACE_DIM)));
    if (t) {
        TRY(md_cuda_upload(c, dids, ids, sizeof(int32_t) * (size_t)(B * t)));
        TRY(md_cuda_upload(c, dslots, slots, sizeof(int32_t) * (size_t)(B * t)));
    }

    /* embed: [prefix] tokens + grid slots, + positions, + the condition's
     * map at every position (md_tok_forward_cached's order of sums) */
    float *all = e;                                  /* [B, D] */
    float *scratch = e + B * D;
    int64_t off = 0;
    if (pos0 == 0) {
        TRY(linear(c, scratch, dcond, d->cond_w, d->cond_b, B, P * D, MD_SPACE_DIM));   /* [B, P, D] */
        TRY(copy3(c, x, T * D, D, scratch, P * D, D, B, P, D, 0.f));
        off = P;
    }
    if (t) {
        float *te = scratch, *ge = scratch + B * t * D;
        TRY(md_cuda_embedding_fwd(c, te, d->tok_emb, dids, B * t, D));
        TRY(md_cuda_embedding_fwd(c, ge, d->grid_emb, dslots, B * t, D));
        TRY(md_cuda_binary(c, MD_CUDA_ADD, te, te, ge, B * t * D));
        TRY(copy3(c, x + off * D, T * D, D, te, t * D, D, B, t, D, 0.f));
    }
    TRY(copy3(c, x, T * D, D, d->pos_emb + pos0 * D, 0, D, B, T, D, 1.f));
    TRY(linear(c, all, dcond, d->cond_all_w, NULL, B, D, MD_SPACE_DIM));
    TRY(copy3(c, x, T * D, D, all, D, 0, B, T, D, 1.f));

    for (int64_t l = 0; l < m->layers; l++) {
        const dev_block *b = &d->blocks[l];
        const int64_t kvs = MD_TOK_TMAX * D;
        float *kc = set->k[l] + row0 * kvs, *vc = set->v[l] + row0 * kvs;
        TRY(md_cuda_layernorm_fwd(c, h, NULL, NULL, x, b->ln1_w, b->ln1_b, R, D, 1e-5f));
        TRY(linear(c, u, h, b->qkv_w, b->qkv_b, R, 3 * D, D));
        TRY(copy3(c, q, T * D, D, u, T * 3 * D, 3 * D, B, T, D, 0.f));
        TRY(copy3(c, kc + pos0 * D, kvs, D, u + D, T * 3 * D, 3 * D, B, T, D, 0.f));
        TRY(copy3(c, vc + pos0 * D, kvs, D, u + 2 * D, T * 3 * D, 3 * D, B, T, D, 0.f));
        TRY(md_cuda_attention_fwd_kv(c, a, NULL, q, kc, vc, B, T, tk, kvs, (int)H, D / H, true));
        TRY(block_rest(c, b, x, h, a, u, R, D));
    }
    /* the last position of each row -> final norm -> logits */
    TRY(copy3(c, a, D, 0, x + (T - 1) * D, T * D, 0, B, 1, D, 0.f));
    TRY(head(d, dl, h, a, B));
    return md_cuda_download(c, logits, dl, sizeof(float) * (size_t)(B * m->vocab));
}

/* The work of a one-position step (t 1, pos0 past the prefix) for rows of
 * set e, reading its inputs from the set's pinned buffers and leaving the
 * logits in hlogits: the same kernels, in the same order, as step() runs
 * for such a step, except that the position is read on the device (the
 * position embedding's row, where the new keys and values go, how many
 * keys attention sees), so one recording serves every position. */
static md_status one_step_body(md_tok_device *d, dev_set *e, int64_t B)
{
    const md_tokmodel *m = d->m;
    md_cuda *c = d->c;
    const int64_t D = m->d, H = m->heads, kvs = MD_TOK_TMAX * D;
    TRY(md_cuda_upload(c, e->dcond, e->hcond, sizeof(float) * (size_t)(B * MD_SPACE_DIM)));
    TRY(md_cuda_upload(c, e->dids, e->hids, sizeof(int32_t) * (size_t)B));
    TRY(md_cuda_upload(c, e->dslots, e->hslots, sizeof(int32_t) * (size_t)B));
    TRY(md_cuda_upload(c, e->dpos, e->hpos, sizeof(int64_t)));
    TRY(md_cuda_embedding_fwd(c, e->te, d->tok_emb, e->dids, B, D));
    TRY(md_cuda_embedding_fwd(c, e->ge, d->grid_emb, e->dslots, B, D));
    TRY(md_cuda_binary(c, MD_CUDA_ADD, e->te, e->te, e->ge, B * D));
    TRY(copy3(c, e->x, D, D, e->te, D, D, B, 1, D, 0.f));
    TRY(md_cuda_add_row_at(c, e->x, B, D, d->pos_emb, e->dpos));
    TRY(linear(c, e->all, e->dcond, d->cond_all_w, NULL, B, D, MD_SPACE_DIM));
    TRY(copy3(c, e->x, D, D, e->all, D, 0, B, 1, D, 1.f));
    for (int64_t l = 0; l < m->layers; l++) {
        const dev_block *b = &d->blocks[l];
        TRY(md_cuda_layernorm_fwd(c, e->h, NULL, NULL, e->x, b->ln1_w, b->ln1_b, B, D, 1e-5f));
        TRY(linear(c, e->u, e->h, b->qkv_w, b->qkv_b, B, 3 * D, D));
        TRY(md_cuda_split_qkv_at(c, e->q, e->k[l], e->v[l], e->u, B, D, kvs, e->dpos));
        TRY(md_cuda_attention_fwd_kv_at(c, e->a, e->q, e->k[l], e->v[l], B, 1, e->dpos, kvs, (int)H, D / H));
        TRY(block_rest(c, b, e->x, e->h, e->a, e->u, B, D));
    }
    TRY(copy3(c, e->a, D, 0, e->x, D, 0, B, 1, D, 0.f));
    TRY(head(d, e->dl, e->h, e->a, B));
    return md_cuda_download_async(c, e->hlogits, e->dl, sizeof(float) * (size_t)(B * m->vocab));
}

/* A one-position step replayed from the graph recorded for this many rows
 * (recorded at its first use). MD_ERR_UNSUPPORTED when recording failed:
 * the caller runs the step call by call, and so do later steps. */
static md_status step_graph(md_tok_device *d, dev_set *e, const float *cond, int64_t B, const int32_t *ids,
                            const int32_t *slots, int64_t pos0, float *logits)
{
    md_cuda *c = d->c;
    memcpy(e->hcond, cond, sizeof(float) * (size_t)(B * MD_SPACE_DIM));
    memcpy(e->hids, ids, sizeof(int32_t) * (size_t)B);
    memcpy(e->hslots, slots, sizeof(int32_t) * (size_t)B);
    *e->hpos = pos0;
    if (!e->graph[B]) {
        md_status st = md_cuda_capture_begin(c);
        if (st == MD_OK) {
            md_status body = one_step_body(d, e, B);
            st = md_cuda_capture_end(c, body == MD_OK, &e->graph[B]);
            if (body != MD_OK)
                st = body;
        }
        if (st != MD_OK || !e->graph[B]) {
            d->graphs = false;
            md_log(MD_LOG_WARN, "token transformer on %s: steps cannot be recorded as a graph (%s); they run call "
                   "by call", md_cuda_name(c), md_status_str(st));
            return MD_ERR_UNSUPPORTED;
        }
    }
    TRY(md_cuda_graph_run(c, e->graph[B]));
    memcpy(logits, e->hlogits, sizeof(float) * (size_t)(B * d->m->vocab));
    return MD_OK;
}

void md_tok_device_set_graphs(md_tok_device *d, bool on) { d->graphs = on; }
bool md_tok_device_graphs(const md_tok_device *d) { return d->graphs; }

static bool set_ok(const md_tok_device *d, int set, int64_t row0, int64_t rows)
{
    if (set >= 0 && set < d->nsets && row0 >= 0 && rows >= 1 && row0 + rows <= d->sets[set].rows)
        return true;
    md_log(MD_LOG_ERROR, "token transformer on %s: rows %lld..%lld of cache set %d do not exist", md_cuda_name(d->c),
           (long long)row0, (long long)(row0 + rows - 1), set);
    return false;
}

md_status md_tok_device_step(md_tok_device *d, int set, int64_t row0, const float *cond, int64_t rows,
                             const int32_t *ids, const int32_t *slots, int64_t t, int64_t pos0, float *logits)
{
    const md_tokmodel *m = d->m;
    int64_t T = (pos0 == 0 ? P : 0) + t;
    if (!set_ok(d, set, row0, rows))
        return MD_ERR_INVALID;
    if (t < 0 || pos0 < 0 || T < 1 || pos0 + T > MD_TOK_TMAX || (pos0 > 0 && pos0 < P)) {
        md_log(MD_LOG_ERROR, "token transformer on %s: a step of %lld tokens at position %lld does not fit (%d "
               "positions, the prefix first)", md_cuda_name(d->c), (long long)t, (long long)pos0, MD_TOK_TMAX);
        return MD_ERR_INVALID;
    }
    for (int64_t i = 0; i < rows * t; i++) {
        if (ids[i] < 0 || ids[i] >= m->vocab || slots[i] < 0 || slots[i] > MD_VQ_TOKENS) {
            md_log(MD_LOG_ERROR, "token transformer on %s: token %lld (id %d, grid slot %d) out of range",
                   md_cuda_name(d->c), (long long)i, ids[i], slots[i]);
            return MD_ERR_INVALID;
        }
    }
    if (d->graphs && t == 1 && pos0 >= P && row0 == 0) {
        md_status st = step_graph(d, &d->sets[set], cond, rows, ids, slots, pos0, logits);
        if (st != MD_ERR_UNSUPPORTED)
            return st;
    }
    size_t mark = md_cuda_mark(d->c);
    md_status st = step(d, &d->sets[set], row0, cond, rows, ids, slots, t, pos0, logits);
    /* md_cuda_download waited for the step; after a failure, wait here
     * before the scratch is given back */
    if (st != MD_OK)
        md_cuda_sync(d->c);
    md_cuda_rewind_to(d->c, mark);
    return st;
}

md_status md_tok_device_copy_row(md_tok_device *d, int dst_set, int64_t dst_row, int src_set, int64_t src_row,
                                 int64_t positions)
{
    if (!set_ok(d, dst_set, dst_row, 1) || !set_ok(d, src_set, src_row, 1))
        return MD_ERR_INVALID;
    if (positions < 0 || positions > MD_TOK_TMAX) {
        md_log(MD_LOG_ERROR, "token transformer on %s: %lld cached positions to copy (at most %d)",
               md_cuda_name(d->c), (long long)positions, MD_TOK_TMAX);
        return MD_ERR_INVALID;
    }
    const int64_t kvs = MD_TOK_TMAX * d->m->d;
    int64_t shape[1] = {positions * d->m->d}, one[1] = {1};
    for (int64_t l = 0; l < d->m->layers; l++) {
        const dev_set *a = &d->sets[src_set], *b = &d->sets[dst_set];
        TRY(md_cuda_copy_strided(d->c, b->k[l] + dst_row * kvs, one, a->k[l] + src_row * kvs, one, shape, 1, 0.f));
        TRY(md_cuda_copy_strided(d->c, b->v[l] + dst_row * kvs, one, a->v[l] + src_row * kvs, one, shape, 1, 0.f));
    }
    return MD_OK;
}
