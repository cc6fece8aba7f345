/* demo.c — see demo.h. */
#include "demo.h"

#include "lm.h"
#include "optim.h"
#include "rng.h"

#include <stdlib.h>
#include <string.h>

#define SEP 10
#define VOCAB 11

void md_demo_default_opts(md_demo_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 300;
    o->batch = 64;
    o->length = 8;
    o->d = 64;
    o->layers = 2;
    o->heads = 4;
    o->seed = 1;
    o->lr = 3e-3f;
}

/* Fills inputs [B, 2L] and targets [B, 2L] (next token; -1 = ignored). */
static void make_batch(md_rng *rng, int B, int L, int32_t *in, int32_t *tg)
{
    int T = 2 * L;
    for (int b = 0; b < B; b++) {
        int32_t seq[129];
        for (int i = 0; i < L; i++)
            seq[i] = (int32_t)md_rng_below(rng, 10);
        seq[L] = SEP;
        for (int i = 0; i < L; i++)
            seq[L + 1 + i] = seq[L - 1 - i];
        for (int t = 0; t < T; t++) {
            in[b * T + t] = seq[t];
            tg[b * T + t] = t >= L ? seq[t + 1] : -1;
        }
    }
}

md_status md_demo_reverse(const md_demo_opts *o, md_demo_result *r)
{
    memset(r, 0, sizeof *r);
    if (o->steps < 1 || o->batch < 1 || o->length < 1 || o->length > 64) {
        md_log(MD_LOG_ERROR, "demo: steps and batch must be positive and length in 1..64");
        return MD_ERR_INVALID;
    }
    int B = o->batch, L = o->length, T = 2 * L;
    md_lm m;
    md_status st = md_lm_init(&m, VOCAB, o->d, o->layers, o->heads, T + 1, o->seed);
    if (st != MD_OK)
        return st;
    r->params = md_paramset_numel(m.ps);
    md_adamw opt;
    st = md_adamw_init(&opt, m.ps, 0.9f, 0.98f, 1e-8f, 0.01f);
    md_graph *g = st == MD_OK ? md_graph_new(1 << 24) : NULL;
    if (!g) {
        md_adamw_free(&opt);
        md_lm_free(&m);
        return st != MD_OK ? st : MD_ERR_ALLOC;
    }
    md_graph_set_seed(g, o->seed);
    md_rng rng;
    md_rng_init(&rng, o->seed ^ 0x7265766572736500ull);
    int32_t *in = calloc((size_t)(B * T) * 2, sizeof(int32_t));
    int32_t *tg = in + B * T;
    double t0 = md_time_now();
    double acc_first = 0, acc_last = 0;
    int n_first = 0, n_last = 0;
    st = MD_OK;
    for (int step = 0; step < o->steps; step++) {
        if (o->cancel && *o->cancel) {
            st = MD_ABORTED;
            break;
        }
        make_batch(&rng, B, L, in, tg);
        md_graph_reset(g);
        md_tensor *ids = md_tensor_wrap(g, MD_I32, in, 2, (int64_t[]){B, T});
        md_tensor *tgt = md_tensor_wrap(g, MD_I32, tg, 1, (int64_t[]){B * T});
        md_paramset_zero_grad(m.ps);
        md_tensor *logits = md_lm_forward(g, &m, ids, 0.f);
        md_tensor *loss = md_cross_entropy(g, logits, tgt, 0.f, -1);
        md_graph_backward(g, loss);
        md_paramset_finish_grads(m.ps);
        md_clip_grad_norm(m.ps, 1.0f);
        md_adamw_step(&opt, md_lr_warmup_cosine(step, o->steps / 10, o->steps, o->lr, o->lr * 0.1f));
        float lv = loss->data[0];
        if (step < 10) { acc_first += lv; n_first++; }
        if (step >= o->steps - 10) { acc_last += lv; n_last++; }
        r->steps_run = step + 1;
        if (o->progress)
            o->progress(step, o->steps, lv, o->user);
    }
    r->train_seconds = md_time_now() - t0;
    r->first_loss = n_first ? (float)(acc_first / n_first) : 0.f;
    r->final_loss = n_last ? (float)(acc_last / n_last) : 0.f;

    /* Held-out evaluation: greedy decoding with the KV cache. */
    if (st == MD_OK) {
        const int EB = 256;
        md_rng erng;
        md_rng_init(&erng, o->seed ^ 0x686f6c646f757400ull);   /* a stream training never uses */
        int32_t *ein = calloc((size_t)(EB * T) * 2, sizeof(int32_t));
        md_kv_cache *caches = calloc((size_t)m.layers, sizeof *caches);
        int exact = 0, tok_ok = 0;
        t0 = md_time_now();
        bool ok = ein && caches;
        for (int64_t l = 0; ok && l < m.layers; l++)
            ok = md_kv_cache_init(&caches[l], EB, T + 1, m.d) == MD_OK;
        if (ok) {
            make_batch(&erng, EB, L, ein, ein + EB * T);
            md_graph_set_training(g, false);
            md_graph_reset(g);
            /* prompt: digits and SEP (L+1 tokens) */
            int32_t *prompt = md_graph_scratch(g, sizeof(int32_t) * (size_t)(EB * (L + 1)));
            for (int b = 0; b < EB; b++)
                memcpy(prompt + b * (L + 1), ein + b * T, sizeof(int32_t) * (size_t)(L + 1));
            md_tensor *ids = md_tensor_wrap(g, MD_I32, prompt, 2, (int64_t[]){EB, L + 1});
            md_tensor *logits = md_lm_forward_cached(g, &m, ids, caches, 0);
            int32_t *outs = calloc((size_t)(EB * L), sizeof(int32_t));
            int32_t *next = calloc((size_t)EB, sizeof(int32_t));
            for (int i = 0; logits && outs && next && i < L; i++) {
                int64_t rows = logits->shape[0] / EB;   /* positions in this call */
                for (int b = 0; b < EB; b++) {
                    const float *lr = logits->data + ((int64_t)b * rows + rows - 1) * VOCAB;
                    int best = 0;
                    for (int v = 1; v < VOCAB; v++)
                        if (lr[v] > lr[best])
                            best = v;
                    next[b] = best;
                    outs[b * L + i] = best;
                }
                if (i + 1 < L) {
                    md_graph_reset(g);
                    md_tensor *nid = md_tensor_wrap(g, MD_I32, next, 2, (int64_t[]){EB, 1});
                    logits = md_lm_forward_cached(g, &m, nid, caches, L + 1 + i);
                }
            }
            for (int b = 0; outs && b < EB; b++) {
                int good = 0;
                const int32_t *want = ein + EB * T + b * T + L;   /* targets r_1..r_L */
                for (int i = 0; i < L; i++)
                    good += outs[b * L + i] == want[i];
                tok_ok += good;
                exact += good == L;
            }
            free(outs);
            free(next);
        } else {
            st = MD_ERR_ALLOC;
        }
        r->decode_seconds = md_time_now() - t0;
        r->accuracy = (float)exact / (float)EB;
        r->token_accuracy = (float)tok_ok / (float)(EB * L);
        for (int64_t l = 0; caches && l < m.layers; l++)
            md_kv_cache_free(&caches[l]);
        free(caches);
        free(ein);
    }
    free(in);
    md_graph_free(g);
    md_adamw_free(&opt);
    md_lm_free(&m);
    return st;
}
