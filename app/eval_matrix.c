/* eval_matrix.c — `medley eval`: the any-to-any matrix (rows: input
 * modality, columns: output modality) for the generators this build has,
 * and beside it the real-data reference every generator is read against:
 * the judges on real held-out samples (the accuracy a perfect generator
 * would get) and the Fréchet floor (validation vs test features of real
 * data). */
#include "bundle.h"
#include "commands.h"
#include "caption.h"
#include "json.h"
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct reference {
    int64_t n;
    md_attr_score score;
    double fd_floor;
} reference;

/* Judge readings and features of n real samples of (split, kind). */
static md_status judge_split(const md_world *w, const md_judge *j, md_world_split split, int64_t n,
                             md_attr_score *sc, float *feats)
{
    const int64_t isz = md_judge_input_size(j->kind);
    float *x = malloc(sizeof(float) * (size_t)(isz * n));
    int(*got)[MD_ATTR_COUNT] = malloc(sizeof *got * (size_t)n);
    md_world_sample *ss = malloc(sizeof *ss * (size_t)n);
    uint8_t *scratch = malloc((size_t)MD_WORLD_FRAMES * MD_WORLD_SIZE * MD_WORLD_SIZE * 3);
    md_graph *g = md_graph_new((size_t)1 << 24);
    md_status st = x && got && ss && scratch && g ? MD_OK : MD_ERR_ALLOC;
    for (int64_t i = 0; i < n && st == MD_OK; i++) {
        st = md_world_draw(w, 23, split, j->kind, i, &ss[i]);
        if (st == MD_OK)
            st = md_judge_prep_sample(w, &ss[i], scratch, x + isz * i);
    }
    if (st == MD_OK)
        st = md_judge_read(j, g, x, n, got, feats);
    if (st == MD_OK && sc)
        for (int64_t i = 0; i < n; i++) {
            int want[MD_ATTR_COUNT];
            for (int a = 0; a < MD_ATTR_COUNT; a++)
                want[a] = md_judge_reads(j->kind, (md_attr)a) ? ss[i].attr[a] : -1;
            md_attr_score_add(sc, want, got[i]);
        }
    md_graph_free(g);
    free(scratch);
    free(ss);
    free(got);
    free(x);
    return st;
}

static md_status real_reference(const md_world *w, const md_judge *j, int64_t n, reference *r)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    float *fa = malloc(sizeof(float) * MD_JUDGE_FEATURES * (size_t)n);
    float *fb = malloc(sizeof(float) * MD_JUDGE_FEATURES * (size_t)n);
    md_status st = fa && fb ? MD_OK : MD_ERR_ALLOC;
    if (st == MD_OK) st = judge_split(w, j, MD_SPLIT_TEST, n, &r->score, fa);
    if (st == MD_OK) st = judge_split(w, j, MD_SPLIT_VAL, n, NULL, fb);
    if (st == MD_OK) st = md_frechet_distance(fa, n, fb, n, MD_JUDGE_FEATURES, &r->fd_floor);
    free(fa);
    free(fb);
    return st;
}

int medley_eval_matrix(const md_world *w, const md_judge j[3], const char *json, long quick, const char *models,
                       long outputs, const medley_gen_eval *ge)
{
    md_eval_matrix m;
    memset(&m, 0, sizeof m);
    /* the token generators' cells, when their models are present */
    medley_bundle bundle;
    if (medley_bundle_load(&bundle, models, true) == 0) {
        int64_t nq = outputs ? outputs : 100;
        medley_tok_eval_opts eo = {nq, outputs ? outputs : 40, nq, 1.0f, 0, 0.0f, 3.0f, MD_SPLIT_TEST, true,
                                   ge->only, ge->via_caption, 0, 0, 0, 0, -1, -1.0f, -2, -1.0f, -1.0f, 0, 0,
                                   ge->set, ge->n_set};
        if (ge->guidance > 0) eo.guidance = (float)ge->guidance;
        if (ge->temperature > 0) eo.temperature = (float)ge->temperature;
        if (ge->top_p > 0) eo.top_p = (float)ge->top_p;
        eo.top_k = (int)ge->top_k;
        if (ge->val) eo.split = MD_SPLIT_VAL;
        eo.candidates = (int)ge->candidates;   /* 0: the generators' default */
        eo.frame_temperature = (float)ge->frame_temperature;
        eo.motion = ge->motion;
        eo.motion_temperature = (float)ge->motion_temperature;
        eo.caption_check = (float)ge->caption_check;
        eo.n_audio = nq;
        eo.audio_guidance = (float)ge->audio_guidance;
        eo.audio_vocoder = ge->audio_vocoder;
        eo.audio_candidates = (int)ge->audio_candidates;
        eo.inputs = ge->inputs;
        eo.diffusion_guidance = (float)ge->diffusion_guidance;
        if (ge->video_outputs > 0)
            eo.n_video = ge->video_outputs;
        printf("token generators (%s), held-out %s inputs; temperature %g, top-k %d, top-p %g (0: default), guidance %g, candidates %d (0: default):\n",
               bundle.model_id, ge->val ? "validation" : "test", (double)eo.temperature, eo.top_k, (double)eo.top_p,
               (double)eo.guidance, eo.candidates);
        fflush(stdout);
        int e = medley_eval_tokens(w, j, &bundle, &eo, &m);
        medley_bundle_free(&bundle);
        if (e)
            return 1;
    }
    md_eval_matrix_print(stdout, &m);

    int64_t n = quick ? quick : 1000;
    if (n < 2)
        n = 2;
    printf("\nreal-data reference (held-out test samples as if generated; %lld per modality):\n", (long long)n);
    reference ref[3];
    static const int out_mod[3] = {1, 2, 3};   /* image, audio, video columns */
    for (int k = 0; k < 3; k++) {
        if (real_reference(w, &j[k], n, &ref[k]) != MD_OK) {
            fprintf(stderr, "medley eval: %s\n", md_last_error());
            return 1;
        }
        printf("  %-5s  digit %.2f%%  attributes %.2f%%  Fréchet floor (val vs test) %.3f\n",
               md_modality_names[out_mod[k]], 100.0 * md_attr_score_acc(&ref[k].score, MD_ATTR_DIGIT),
               100.0 * md_attr_score_attrs(&ref[k].score), ref[k].fd_floor);
    }
    md_attr_score text;
    memset(&text, 0, sizeof text);
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < n / 3 + 1; i++) {
            md_world_sample s;
            char cap[MD_CAPTION_MAX];
            int stated[MD_ATTR_COUNT], got[MD_ATTR_COUNT];
            if (md_world_draw(w, 23, MD_SPLIT_TEST, (md_world_kind)k, i, &s) != MD_OK ||
                md_caption_make(&s, (int)(i % MD_CAPTIONS_PER_SAMPLE), cap, sizeof cap, stated) != MD_OK)
                continue;
            md_caption_parse(cap, got);
            md_attr_score_add(&text, stated, got);
        }
    printf("  %-5s  digit %.2f%%  attributes %.2f%%  (captions read by the text judge)\n", "text",
           100.0 * md_attr_score_acc(&text, MD_ATTR_DIGIT), 100.0 * md_attr_score_attrs(&text));

    if (json) {
        md_json_buf b;
        md_json_buf_init(&b);
        md_json_buf_begin_object(&b);
        md_json_buf_key(&b, "matrix");
        md_eval_matrix_json(&b, &m);
        md_json_buf_key(&b, "reference");
        md_json_buf_begin_object(&b);
        for (int k = 0; k < 4; k++) {
            const md_attr_score *sc = k < 3 ? &ref[k].score : &text;
            md_json_buf_key(&b, md_modality_names[k < 3 ? out_mod[k] : 0]);
            md_json_buf_begin_object(&b);
            md_json_buf_key(&b, "n"); md_json_buf_int(&b, sc->samples);
            md_json_buf_key(&b, "digit_acc"); md_json_buf_num(&b, md_attr_score_acc(sc, MD_ATTR_DIGIT));
            md_json_buf_key(&b, "attr_acc"); md_json_buf_num(&b, md_attr_score_attrs(sc));
            if (k < 3) {
                md_json_buf_key(&b, "fd_floor");
                md_json_buf_num(&b, ref[k].fd_floor);
            }
            md_json_buf_end_object(&b);
        }
        md_json_buf_end_object(&b);
        md_json_buf_end_object(&b);
        char *text_out = md_json_buf_finish(&b, NULL);
        md_status st = text_out ? md_write_file_atomic(json, text_out, strlen(text_out)) : MD_ERR_ALLOC;
        free(text_out);
        if (st != MD_OK) {
            fprintf(stderr, "medley eval: %s\n", md_last_error());
            return 1;
        }
        printf("matrix written to %s\n", json);
    }
    return 0;
}
