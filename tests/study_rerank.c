/* study_rerank: among a picture's candidates drawn after the typed text,
 * what each one shows (the image judge) against how it would be chosen:
 * the aligned space's cosine to the condition, and the token transformer's
 * own log P(typed text | picture) read in the image -> caption order.
 * One line per candidate (CSV on stdout), for choosing a rule offline:
 *   input,cand,cos,ll0,llc,digit_ok,asked,right
 * ll0: no condition; llc: after the request's condition.
 *   study_rerank [--split val|test] [--n N] [--candidates K] [--models DIR] */
#include "caption.h"
#include "judge.h"
#include "space.h"
#include "space_input.h"
#include "tokens.h"
#include "vqgan.h"
#include "world.h"
#include "threads.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int keep_all(const int32_t *codes, int n, void *user, float *scores)
{
    memcpy(user, codes, sizeof(int32_t) * (size_t)n * MD_VQ_TOKENS);
    memset(scores, 0, sizeof(float) * (size_t)n);
    return 0;
}

int main(int argc, char **argv)
{
    md_threads_init();
    int n = 100, k = 8, repeat = 0;
    md_world_split split = MD_SPLIT_VAL;
    const char *models = getenv("MEDLEY_MODELS_DIR"), *data = getenv("MEDLEY_DATA_DIR");
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--n") == 0)
            n = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--repeat") == 0)
            repeat = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--candidates") == 0)
            k = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--models") == 0)
            models = argv[i + 1];
        else if (strcmp(argv[i], "--split") == 0)
            split = strcmp(argv[i + 1], "test") == 0 ? MD_SPLIT_TEST : MD_SPLIT_VAL;
    }
    if (!models || !*models)
        models = "assets/models";
    if (!data || !*data || n < 1 || k < 2 || k > MD_TOK_MAX_CANDIDATES) {
        fprintf(stderr, "study_rerank: needs MEDLEY_DATA_DIR, --n >= 1, --candidates 2..%d\n", MD_TOK_MAX_CANDIDATES);
        return 2;
    }
    char p[4][4096];
    snprintf(p[0], sizeof p[0], "%s/space.safetensors", models);
    snprintf(p[1], sizeof p[1], "%s/vqgan.safetensors", models);
    snprintf(p[2], sizeof p[2], "%s/tokens.safetensors", models);
    snprintf(p[3], sizeof p[3], "%s/judge-image.safetensors", models);
    md_space sp;
    md_vqgan vq;
    md_tokmodel tm;
    md_judge j;
    md_world w;
    if (md_space_load(&sp, p[0]) != MD_OK || md_vqgan_load(&vq, p[1]) != MD_OK || md_tok_load(&tm, p[2]) != MD_OK ||
        md_judge_load(&j, p[3], MD_WORLD_IMAGE) != MD_OK || md_world_open(data, &w) != MD_OK) {
        fprintf(stderr, "study_rerank: %s\n", md_last_error());
        return 1;
    }
    md_tok_session *s = md_tok_session_new(&tm);
    md_graph *g = md_graph_new((size_t)1 << 24);
    const int64_t hw = (int64_t)MD_WORLD_SIZE * MD_WORLD_SIZE, in = md_space_input_size(MD_MOD_IMAGE);
    int32_t *cand = malloc(sizeof(int32_t) * (size_t)k * MD_VQ_TOKENS);
    float *x = malloc(sizeof(float) * 3 * (size_t)(hw * k)), *prep = malloc(sizeof(float) * (size_t)(in * k));
    float *emb = malloc(sizeof(float) * MD_SPACE_DIM * (size_t)k), *jx = malloc(sizeof(float) * (size_t)(in * k));
    float ll0[MD_TOK_MAX_CANDIDATES], llc[MD_TOK_MAX_CANDIDATES];
    int(*got)[MD_ATTR_COUNT] = malloc(sizeof *got * (size_t)k);
    uint8_t *u8 = malloc((size_t)(hw * 3));
    md_image im = {0};
    if (!s || !g || !cand || !x || !prep || !emb || !jx || !got || !u8 ||
        md_image_alloc(&im, MD_WORLD_SIZE, MD_WORLD_SIZE, 3) != MD_OK)
        return 1;
    printf("input,cand,cos,ll0,llc,digit_ok,asked,right\n");
    double t_score = 0;   /* scoring 3 candidates, as a default re-check does on average */
    for (int i = 0; i < n; i++) {
        md_world_sample ws;
        char text[MD_CAPTION_MAX];
        int stated[MD_ATTR_COUNT];
        float cond[MD_SPACE_DIM];
        const char *t = text;
        if (md_world_draw(&w, 29, split, MD_WORLD_IMAGE, i, &ws) != MD_OK ||
            md_caption_make(&ws, i % MD_CAPTIONS_PER_SAMPLE, text, sizeof text, stated) != MD_OK ||
            md_space_embed(&sp, g, MD_MOD_TEXT, &t, 1, cond) != MD_OK)
            return 1;
        int32_t capids[MD_TOK_CAPTION];
        int nc = md_tok_put_caption(&sp, text, capids);
        md_tok_sample_opts o = {1.f, 0, 0.9f, 3.f, 1, k, NULL, NULL, 0.f, 0, capids, nc, 0.f};
        /* the candidates as drawn: a chooser that keeps them all */
        o.pick = keep_all;
        o.pick_user = cand;
        int32_t chosen[MD_VQ_TOKENS];
        if (md_tok_sample_image(s, cond, &o, 1000 + (uint64_t)i, NULL, NULL, NULL, chosen) != MD_OK)
            return 1;
        if (md_vqgan_detokenize(&vq, g, cand, k, x) != MD_OK)
            return 1;
        for (int c = 0; c < k; c++) {
            const float *xi = x + (size_t)c * 3 * (size_t)hw;
            for (int64_t q = 0; q < hw; q++)
                for (int ch = 0; ch < 3; ch++) {
                    float u = (xi[ch * hw + q] + 1.f) * 0.5f;
                    u = u < 0.f ? 0.f : u > 1.f ? 1.f : u;
                    im.pixels[q * 3 + ch] = u;
                    u8[q * 3 + ch] = (uint8_t)(u * 255.f + 0.5f);
                }
            if (md_space_prep_image(&im, prep + in * c) != MD_OK)
                return 1;
            md_judge_prep_rgb(u8, jx + in * c);
        }
        for (int r = 0; r < repeat; r++)   /* --repeat R: the scoring alone, R times, for profiling */
            md_tok_caption_logprob(s, NULL, cand, 3, capids, nc, ll0);
        if (repeat > 0)
            return 0;
        double t0 = md_time_now();
        md_status ls = md_tok_caption_logprob(s, NULL, cand, 3, capids, nc, ll0);
        t_score += md_time_now() - t0;
        if (md_space_embed(&sp, g, MD_MOD_IMAGE, prep, k, emb) != MD_OK ||
            md_judge_read(&j, g, jx, k, got, NULL) != MD_OK || ls != MD_OK ||
            md_tok_caption_logprob(s, NULL, cand, k, capids, nc, ll0) != MD_OK ||
            md_tok_caption_logprob(s, cond, cand, k, capids, nc, llc) != MD_OK) {
            fprintf(stderr, "study_rerank: %s\n", md_last_error());
            return 1;
        }
        double cn = 0;
        for (int d = 0; d < MD_SPACE_DIM; d++)
            cn += (double)cond[d] * cond[d];
        for (int c = 0; c < k; c++) {
            double dot = 0, en = 0;
            for (int d = 0; d < MD_SPACE_DIM; d++) {
                dot += (double)cond[d] * emb[c * MD_SPACE_DIM + d];
                en += (double)emb[c * MD_SPACE_DIM + d] * emb[c * MD_SPACE_DIM + d];
            }
            int asked = 0, right = 0;
            for (int a = 0; a < MD_ATTR_COUNT; a++)
                if (a != MD_ATTR_DIGIT && stated[a] >= 0 && md_judge_reads(MD_WORLD_IMAGE, (md_attr)a)) {
                    asked++;
                    right += got[c][a] == stated[a];
                }
            printf("%d,%d,%.5f,%.4f,%.4f,%d,%d,%d\n", i, c, dot / sqrt(cn * en + 1e-30), ll0[c], llc[c],
                   got[c][MD_ATTR_DIGIT] == ws.attr[MD_ATTR_DIGIT], asked, right);
        }
        fflush(stdout);
    }
    fprintf(stderr, "scoring 3 candidates' captions: %.1f ms each time (mean of %d)\n", 1e3 * t_score / n, n);
    return 0;
}
