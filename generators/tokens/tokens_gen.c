/* tokens_gen.c — see tokens_gen.h. */
#include "tokens_gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* frames 1..15 of a video: see README (Generation) for the measurement */
#define FRAME_TEMPERATURE 0.0

enum {
    P_TEMPERATURE, P_TOP_K, P_TOP_P, P_GUIDANCE, P_VIA_CAPTION, P_CANDIDATES, P_FRAME_TEMPERATURE, P_MOTION,
    P_MOTION_TEMPERATURE, P_CAPTION_CHECK, P_COUNT
};


static const md_gen_param_spec params[P_COUNT] = {
    {"temperature", "softmax temperature of each token", MD_GEN_FLOAT, 1.0, 0.05, 5.0},
    {"top_k", "sample among the k likeliest tokens (0: all)", MD_GEN_INT, 0, 0, 2048},
    {"top_p", "sample within the smallest set holding this much probability", MD_GEN_FLOAT, 1.0, 0.05, 1.0},
    {"guidance", "classifier-free guidance scale (1: none)", MD_GEN_FLOAT, 3.0, 0.0, 20.0},
    {"via_caption", "pictures: write a caption first, then the picture after it (1); the typed text as that "
                    "caption where it carries more than half the inputs' weight, else from the condition "
                    "alone (2, pictures' and videos' default); or from the condition alone (0)",
     MD_GEN_INT, 0, 0, 2},
    {"candidates", "pictures: draw this many (a video: first frames; 30 by default), 15 side by side at a "
                   "time, and keep the one the aligned space finds closest to the condition", MD_GEN_INT,
     MD_GEN_TOKENS_IMAGE_CANDIDATES, 1,
     MD_TOK_MAX_CANDIDATES},
    {"frame_temperature", "videos: softmax temperature of frames 1-15 (0: as temperature)", MD_GEN_FLOAT,
     FRAME_TEMPERATURE, 0.0, 5.0},
    {"motion", "videos: frames 1-15 move frame 0 along a path the motion model draws (1), or the token "
               "transformer draws them (0); -1: the motion model when there is one", MD_GEN_INT, -1, -1, 1},
    {"motion_temperature", "videos: softmax temperature of the motion model's choice of path (0: the likeliest)",
     MD_GEN_FLOAT, 1.0, 0.0, 5.0},
    {"caption_check", "pictures after the typed text: candidates the aligned space scores within this of its "
                      "choice are chosen among again by how likely the transformer finds the typed text as "
                      "their caption (0: the space's choice)", MD_GEN_FLOAT, 0.0, 0.0, 2.0},
};

#define PREVIEW_EVERY 64
#define DECODE_FRAMES 4

typedef struct tok_gen {
    md_modality out;
    const md_tokmodel *tm;
    const md_vqgan *vq;
    const md_space *sp;
    const md_motion *mo;             /* NULL: later frames by the token transformer only */
    md_gen_param_spec params[P_COUNT];   /* the table above, with this output's defaults */
    md_tok_session *session;
    md_graph *g;                     /* detokenising */
    bool own_session, own_graph;     /* false: lent by a workspace */
    char model_id[256];
    /* during a run */
    md_gen_progress_fn progress;
    void *user;
    int32_t *partial;                /* codes of the preview */
    float *pix;
    md_image preview;
    md_status preview_st;
    int64_t first;                   /* tokens of the first picture's phase (all its candidates) */
    md_tok_picker picker;            /* choosing among candidates */
} tok_gen;

static void codes_to_image(const float *x, md_image *im)
{
    const int hw = MD_WORLD_SIZE * MD_WORLD_SIZE;
    for (int i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) {
            float v = (x[c * hw + i] + 1.f) * 0.5f;
            im->pixels[i * 3 + c] = v < 0.f ? 0.f : v > 1.f ? 1.f : v;
        }
}

/* Progress of the sampler; a preview of frame 0 every PREVIEW_EVERY codes
 * (codes not yet drawn repeat the last drawn one). */
static void on_tokens(int64_t done, int64_t total, const int32_t *codes, int64_t ncodes, void *user)
{
    tok_gen *t = user;
    if (!t->progress)
        return;
    const md_image *pv = NULL;
    if (done <= t->first && ncodes % PREVIEW_EVERY == 0 && t->preview_st == MD_OK) {
        for (int64_t i = 0; i < MD_VQ_TOKENS; i++)
            t->partial[i] = codes[i < ncodes ? i : ncodes - 1];
        if (md_vqgan_detokenize(t->vq, t->g, t->partial, 1, t->pix) == MD_OK) {
            codes_to_image(t->pix, &t->preview);
            pv = &t->preview;
        }
    }
    t->progress(t->out == MD_MOD_VIDEO ? (done <= t->first ? "first frame" : "frames 1-15") : "image tokens",
                done, total, 0.95 * (double)done / (double)total, pv, t->user);
}

/* Keeps whole, valid UTF-8 sequences of s[0..n) (a byte-level tokenizer can
 * sample half a character); returns the new length. */
static size_t keep_utf8(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 && c >= 0xc2 ? 2 : (c & 0xf0) == 0xe0 ? 3
                     : (c & 0xf8) == 0xf0 && c <= 0xf4 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
        if (ok && len == 3) {   /* no overlongs, no surrogates */
            unsigned char d = (unsigned char)s[i + 1];
            ok = !(c == 0xe0 && d < 0xa0) && !(c == 0xed && d >= 0xa0);
        } else if (ok && len == 4) {
            unsigned char d = (unsigned char)s[i + 1];
            ok = !(c == 0xf0 && d < 0x90) && !(c == 0xf4 && d >= 0x90);
        }
        if (!ok) {
            i++;
            continue;
        }
        if (c >= 0x20 || c == '\t' || len > 1) {   /* no control bytes in a caption */
            memmove(s + o, s + i, len);
            o += len;
        }
        i += len;
    }
    return o;
}

static md_status run(void *self, const md_gen_condition *c, const double *p, uint64_t seed,
                     md_gen_progress_fn progress, void *user, const volatile int *cancel, md_gen_output *out)
{
    tok_gen *t = self;
    memset(out, 0, sizeof *out);
    out->modality = t->out;
    md_tok_sample_opts o = {(float)p[P_TEMPERATURE], (int)p[P_TOP_K], (float)p[P_TOP_P], (float)p[P_GUIDANCE],
                          (int)p[P_VIA_CAPTION], (int)p[P_CANDIDATES], md_tok_pick_closest, &t->picker,
                          (float)p[P_FRAME_TEMPERATURE], 0, NULL, 0, (float)p[P_CAPTION_CHECK]};
    const bool motion = t->out == MD_MOD_VIDEO && (p[P_MOTION] > 0 || (p[P_MOTION] < 0 && t->mo));
    if (motion && !t->mo) {
        md_log(MD_LOG_ERROR, "tokens-video: motion 1 needs the motion model (motion.safetensors; train it with "
                             "'medley train motion'), or motion 0");
        return MD_ERR_INVALID;
    }
    o.first_frame_only = motion;
    int32_t capids[MD_TOK_CAPTION];
    if (o.via_caption == 2 && t->out != MD_MOD_TEXT) {
        /* the typed text is the caption the picture follows where it leads
         * the request (more than half its weight); else the condition alone */
        if (c->text && *c->text && c->text_share > 0.5f) {
            o.caption = capids;
            o.caption_len = md_tok_put_caption(t->sp, c->text, capids);
            o.via_caption = 1;
        } else {
            o.via_caption = 0;
        }
    }
    t->first = (int64_t)(o.candidates > 1 ? o.candidates : 1) * MD_VQ_TOKENS;
    t->picker = (md_tok_picker){t->vq, t->sp, t->g, c->vec, MD_OK, 0.f};
    t->progress = progress;
    t->user = user;
    md_status st = MD_OK;
    if (t->out == MD_MOD_TEXT) {
        int32_t ids[MD_TOK_CAPTION];
        int n = 0;
        st = md_tok_sample_caption(t->session, c->vec, &o, seed, cancel, ids, MD_TOK_CAPTION, &n);
        if (st == MD_OK) {
            char buf[MD_TOK_CAPTION * MD_BPE_MAX_CHUNK + 1];
            size_t len = 0;
            st = md_bpe_decode(t->sp->bpe, ids, (size_t)n, buf, sizeof buf, &len);
            if (st == MD_OK) {
                len = keep_utf8(buf, len);
                out->text = malloc(len + 1);
                if (!out->text)
                    st = MD_ERR_ALLOC;
                else {
                    memcpy(out->text, buf, len);
                    out->text[len] = '\0';
                }
            }
        }
        if (st == MD_OK && progress)
            progress("caption", 1, 1, 1.0, NULL, user);
        return st;
    }
    const int frames = t->out == MD_MOD_VIDEO ? MD_WORLD_FRAMES : 1;
    const int64_t isz = (int64_t)3 * MD_WORLD_SIZE * MD_WORLD_SIZE;
    int32_t *codes = malloc(sizeof(int32_t) * (size_t)frames * MD_VQ_TOKENS);
    float *x = malloc(sizeof(float) * (size_t)(isz * frames));
    if (!codes || !x) {
        free(codes);
        free(x);
        return MD_ERR_ALLOC;
    }
    if (t->out == MD_MOD_IMAGE)
        st = md_tok_sample_image(t->session, c->vec, &o, seed, on_tokens, t, cancel, codes);
    else
        st = md_tok_sample_video(t->session, c->vec, &o, seed, on_tokens, t, cancel, codes);
    if (st == MD_OK && t->picker.st != MD_OK)
        st = t->picker.st;
    if (st == MD_OK && cancel && *cancel)
        st = MD_ABORTED;
    const int drawn = motion ? 1 : frames;   /* frames the token transformer drew */
    for (int f = 0; st == MD_OK && f < drawn; f += DECODE_FRAMES)   /* a few at a time: less memory */
        st = cancel && *cancel ? MD_ABORTED : md_vqgan_detokenize(t->vq, t->g, codes + (size_t)f * MD_VQ_TOKENS,
                                 drawn - f < DECODE_FRAMES ? drawn - f : DECODE_FRAMES, x + isz * f);
    if (st == MD_OK && motion)   /* frames 1..15: frame 0 moved along a drawn path */
        st = md_motion_move(t->mo, t->g, t->sp->bpe, c->vec, c->text, (float)p[P_MOTION_TEMPERATURE], seed, x);
    if (st == MD_OK && t->out == MD_MOD_IMAGE) {
        st = md_image_alloc(&out->image, MD_WORLD_SIZE, MD_WORLD_SIZE, 3);
        if (st == MD_OK)
            codes_to_image(x, &out->image);
    } else if (st == MD_OK) {
        st = md_video_alloc(&out->video, MD_WORLD_SIZE, MD_WORLD_SIZE, 3, frames, MD_WORLD_FPS);
        for (int f = 0; st == MD_OK && f < frames; f++) {
            md_image im = {MD_WORLD_SIZE, MD_WORLD_SIZE, 3,
                           out->video.pixels + (size_t)f * MD_WORLD_SIZE * MD_WORLD_SIZE * 3};
            codes_to_image(x + isz * f, &im);
        }
    }
    if (st == MD_OK && progress)
        progress("decoding", 1, 1, 1.0, NULL, user);
    if (st != MD_OK)
        md_gen_output_free(out);
    free(codes);
    free(x);
    return st;
}

static void gen_free(void *self)
{
    tok_gen *t = self;
    if (!t)
        return;
    if (t->own_session)
        md_tok_session_free(t->session);
    if (t->own_graph)
        md_graph_free(t->g);
    free(t->partial);
    free(t->pix);
    md_image_free(&t->preview);
    free(t);
}

md_generator *md_gen_tokens_new(md_modality out, const md_tokmodel *tm, const md_vqgan *vq, const md_space *sp,
                                const md_motion *mo, const char *model_id, md_gen_workspace *ws)
{
    if (out != MD_MOD_IMAGE && out != MD_MOD_VIDEO && out != MD_MOD_TEXT) {
        md_log(MD_LOG_ERROR, "the token generators write image, video or text, not %s",
               out == MD_MOD_AUDIO ? "audio" : "this modality");
        return NULL;
    }
    if (tm->text_vocab != md_bpe_vocab_size(sp->bpe)) {
        md_log(MD_LOG_ERROR, "the token transformer was trained with a text vocabulary of %lld, the space has %d: "
                             "retrain it with 'medley train tokens'",
               (long long)tm->text_vocab, md_bpe_vocab_size(sp->bpe));
        return NULL;
    }
    md_generator *g = calloc(1, sizeof *g);
    tok_gen *t = calloc(1, sizeof *t);
    if (t) {
        t->out = out;
        t->tm = tm;
        t->vq = vq;
        t->sp = sp;
        t->mo = mo;
        memcpy(t->params, params, sizeof params);
        if (out == MD_MOD_VIDEO) {   /* README: candidates; the caption re-check (pictures: time), measured */
            t->params[P_CANDIDATES].def = MD_GEN_TOKENS_VIDEO_CANDIDATES;
            t->params[P_CAPTION_CHECK].def = 0.01;
        }
        if (out != MD_MOD_TEXT) {   /* README: colour follows the typed text; top-p 0.9, measured */
            t->params[P_VIA_CAPTION].def = 2;
            t->params[P_TOP_P].def = 0.9;
        }
        snprintf(t->model_id, sizeof t->model_id, "%s", model_id ? model_id : "tokens");
        if (ws && !ws->tokens) {
            ws->tokens = md_tok_session_new(tm);
            ws->tokens_model = tm;
        }
        t->own_session = !ws || ws->tokens_model != tm;
        t->session = t->own_session ? md_tok_session_new(tm) : ws->tokens;
        t->own_graph = !ws;
        t->g = ws ? ws->graph : md_graph_new((size_t)1 << 22);   /* grows to a decode of DECODE_FRAMES once */
        t->partial = malloc(sizeof(int32_t) * MD_VQ_TOKENS);
        t->pix = malloc(sizeof(float) * 3 * MD_WORLD_SIZE * MD_WORLD_SIZE);
        t->preview_st = md_image_alloc(&t->preview, MD_WORLD_SIZE, MD_WORLD_SIZE, 3);
    }
    if (!g || !t || !t->session || !t->g || !t->partial || !t->pix || t->preview_st != MD_OK) {
        md_log(MD_LOG_ERROR, "token generator: out of memory");
        gen_free(t);
        free(g);
        return NULL;
    }
    g->name = out == MD_MOD_IMAGE ? "tokens-image" : out == MD_MOD_VIDEO ? "tokens-video" : "tokens-caption";
    g->model_id = t->model_id;
    g->output = out;
    g->params = t->params;
    g->nparams = P_COUNT;
    g->self = t;
    g->run = run;
    g->free = gen_free;
    return g;
}
