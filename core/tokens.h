/* tokens.h — Medley's token transformer (as LWM): one decoder-only model over
 * the aligned space's text tokens and the image tokenizer's codes, which
 * writes pictures, video frames and captions from a condition vector.
 *
 *   vocabulary   [0, TV)              the space's BPE (TV = its vocabulary;
 *                                     <bos>/<eos> open and close a caption)
 *                [TV, TV + 1024)      image codes (vqgan.h)
 *                then markers         <boi> <eoi> <bov> <eof> and <frame 1>
 *                                     .. <frame 15>
 *   condition    a unit vector of the space (or zeros: "no condition") ->
 *                linear -> MD_TOK_PREFIX vectors that open every sequence;
 *                the zero vector's prefix is the bias alone, which training
 *                learns as the unconditional prefix for classifier-free
 *                guidance (a condition is dropped to zeros at random);
 *                a second linear map of it is added at every position
 *   positions    learned sequence positions, plus a learned grid position
 *                (0..255) on every image code, so a picture's layout means
 *                the same wherever a caption put it
 *
 * Sequences, both orders (so one model generates and captions):
 *   caption -> image    P <bos> caption <eos> <boi> 256 codes <eoi>
 *   image -> caption    P <boi> 256 codes <eoi> <bos> caption <eos>
 *   video               P [<bos> caption <eos>] <bov> frame 0 <eof>
 *                         <frame t> frame t <eof> [<bos> caption <eos>]
 * A video is written as its first frame, then every later frame t from the
 * first frame and its index (frames 1..15 are sampled side by side, sharing
 * the first frame's cache).
 */
#ifndef MEDLEY_TOKENS_H
#define MEDLEY_TOKENS_H

#include "space.h"
#include "vqgan.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_TOK_VERSION 1
#define MD_TOK_PREFIX 4
#define MD_TOK_CAPTION 24            /* caption tokens, <bos> and <eos> included */
#define MD_TOK_MARKERS (4 + MD_WORLD_FRAMES - 1)
/* longest sequence: prefix, caption, two frames with their markers */
#define MD_TOK_TMAX (MD_TOK_PREFIX + MD_TOK_CAPTION + 2 * (MD_VQ_TOKENS + 2))

typedef struct md_tokmodel {
    int64_t text_vocab, vocab, d, layers, heads;
    md_paramset *ps;
    md_tensor *cond_w, *cond_b;      /* [P*d, MD_SPACE_DIM], [P*d] */
    md_tensor *cond_all_w;           /* [d, MD_SPACE_DIM]: added at every position */
    md_tensor *tok_emb;              /* [vocab, d] */
    md_tensor *pos_emb;              /* [MD_TOK_TMAX, d] */
    md_tensor *grid_emb;             /* [MD_VQ_TOKENS + 1, d]; the last row: not a code */
    md_tblock *blocks;
    md_tensor *lnf_w, *lnf_b, *head_w;
    /* how a video's later frames read: 1, each after the frame before it
     * (<bov> frame t-1 <eof> <frame t> frame t, trained on consecutive
     * frames; sampled one frame after another); 0, each after frame 0
     * (trained on frame 0 and a later one; sampled side by side). Kept in
     * the model file ("chain"; absent: 0). */
    int video_chain;
} md_tokmodel;

/* Token ids of the layout above. */
static inline int32_t md_tok_code(const md_tokmodel *m, int c) { return (int32_t)m->text_vocab + c; }
static inline int32_t md_tok_boi(const md_tokmodel *m) { return (int32_t)m->text_vocab + MD_VQ_CODES; }
static inline int32_t md_tok_eoi(const md_tokmodel *m) { return md_tok_boi(m) + 1; }
static inline int32_t md_tok_bov(const md_tokmodel *m) { return md_tok_boi(m) + 2; }
static inline int32_t md_tok_eof(const md_tokmodel *m) { return md_tok_boi(m) + 3; }
static inline int32_t md_tok_frame(const md_tokmodel *m, int t) { return md_tok_boi(m) + 3 + t; } /* t 1..15 */

/* text_vocab must be the space's BPE vocabulary size. */
md_status md_tok_init(md_tokmodel *m, int64_t text_vocab, int64_t d, int64_t layers, int64_t heads,
                      uint64_t seed);
void md_tok_free(md_tokmodel *m);
md_status md_tok_save(const md_tokmodel *m, const char *path, const char *recipe_json, const char *data_hash);
/* Refuses another kind of model file or version, naming the file. */
md_status md_tok_load(md_tokmodel *m, const char *path);

/* Training graph: cond [B, MD_SPACE_DIM], ids and grid slots [B, T] (I32)
 * -> logits [B*(P+T), vocab]; row P-1+i predicts ids[i]. */
md_tensor *md_tok_forward(md_graph *g, const md_tokmodel *m, md_tensor *cond, md_tensor *ids, md_tensor *slots);
/* Incremental decoding (grad off): cond [B, D] at every call (it reaches
 * every position); at pos0 == 0 its prefix opens the sequence (ids may then
 * be NULL); ids/slots [B, Tn] follow. caches[layers]
 * (md_kv_cache_init(c, B, MD_TOK_TMAX, d)). Returns the logits of the last
 * position only, [B, vocab]; NULL when the context is full. */
md_tensor *md_tok_forward_cached(md_graph *g, const md_tokmodel *m, md_tensor *cond, md_tensor *ids,
                                 md_tensor *slots, md_kv_cache *caches, int64_t pos0);

/* ---- sampling ---- */
typedef struct md_tok_sample_opts {
    float temperature;               /* > 0 */
    int top_k;                       /* 0: off */
    float top_p;                     /* (0, 1]; 1: off */
    float guidance;                  /* classifier-free scale; 1: conditional only (no second pass) */
    int via_caption;                 /* pictures: first a caption (given, or sampled from the
                                      * condition), then the picture after it in context (caption ->
                                      * image order). With one candidate the unconditional twin runs
                                      * apart without the caption and a video's frames 1..15 run
                                      * unguided; with candidates every row and its twin read the
                                      * caption */
    int candidates;                  /* pictures: draw this many (a video: first frames),
                                      * MD_TOK_ROUND_CANDIDATES side by side at a time, and keep the
                                      * one pick() chooses; 0 or 1: one */
    int (*pick)(const int32_t *codes, int n, void *user, float *scores);   /* codes [n, 256] -> index,
                                      * and each one's score (higher: closer) into scores [n];
                                      * NULL: the first */
    void *pick_user;
    float frame_temperature;         /* a video's frames 1..15 (0: temperature) */
    int first_frame_only;            /* videos: frame 0 alone (codes [256]; the motion model moves it) */
    const int32_t *caption;          /* pictures, a video's frame 0: a caption given (BPE ids with <bos>
                                      * and <eos>, md_tok_put_caption) that the picture follows in
                                      * context (caption -> image order); NULL: none */
    int caption_len;
    float caption_margin;            /* with a caption given and candidates: those scoring within this
                                      * of pick()'s choice are chosen among again by the transformer's
                                      * log P(caption | picture) (md_tok_caption_logprob, no
                                      * condition); 0: pick()'s choice stands */
} md_tok_sample_opts;

/* The typed text of a request as a caption for md_tok_sample_opts: <bos>
 * ids <eos> into ids [MD_TOK_CAPTION]; a text longer than the caption slot
 * keeps its first MD_TOK_CAPTION - 2 tokens. Returns the count (>= 2). */
int md_tok_put_caption(const md_space *sp, const char *text, int32_t *ids);

#define MD_TOK_MAX_CANDIDATES 30
/* candidates drawn side by side at once; more are drawn in further rounds
 * of this many, each row from its own stream of the seed, so the first 15
 * of 30 are the 15 a request for 15 draws */
#define MD_TOK_ROUND_CANDIDATES 15
/* A chooser for candidates (pick_user points at one): the picture whose
 * decoding (vq) the aligned space (sp, as an image) places closest to
 * cond; the first on a tie. g is scratch (reset inside). */
typedef struct md_tok_picker {
    const md_vqgan *vq;
    const md_space *sp;
    md_graph *g;
    const float *cond;               /* MD_SPACE_DIM */
    md_status st;                    /* of the last call (the sampler then keeps candidate 0) */
    float score;                     /* the chosen candidate's cosine */
} md_tok_picker;
int md_tok_pick_closest(const int32_t *codes, int n, void *picker, float *scores);

/* Progress inside a generation: tokens done of total; cancel is polled at
 * every token. */
typedef void (*md_tok_progress_fn)(int64_t done, int64_t total, const int32_t *codes, int64_t ncodes, void *user);

/* A session holds the caches and graph for one batch shape (reused across
 * calls: memory is planned once). */
typedef struct md_tok_session md_tok_session;
/* Samples where MEDLEY_DEVICE says (md_backend_default): the CPU, or a
 * CUDA device, where every step runs on the device (tokens_device.h). */
md_tok_session *md_tok_session_new(const md_tokmodel *m);
/* The same on CUDA device `device` (-1: the CPU). A device that cannot
 * take the model is logged and the session samples on the CPU. */
md_tok_session *md_tok_session_new_on(const md_tokmodel *m, int device);
/* Where the session's steps run: "cpu" or "cuda:N". */
const char *md_tok_session_device(const md_tok_session *s);
void md_tok_session_free(md_tok_session *s);

/* ll[n]: log P(caption | picture) for each of n pictures (codes [n, 256]),
 * read in the image -> caption order after condition cond (NULL: none);
 * caption as md_tok_put_caption writes it. Uses the session's wide cache. */
md_status md_tok_caption_logprob(md_tok_session *s, const float *cond, const int32_t *codes, int n,
                                 const int32_t *caption, int caption_len, float *ll);

/* 256 codes of one image for cond (MD_SPACE_DIM); codes out [256] in
 * 0..1023. MD_ABORTED when cancelled. */
md_status md_tok_sample_image(md_tok_session *s, const float *cond, const md_tok_sample_opts *o, uint64_t seed,
                              md_tok_progress_fn progress, void *user, const volatile int *cancel,
                              int32_t *codes);
/* 16 frames of codes [16, 256] (frame 0's alone with first_frame_only). */
md_status md_tok_sample_video(md_tok_session *s, const float *cond, const md_tok_sample_opts *o, uint64_t seed,
                              md_tok_progress_fn progress, void *user, const volatile int *cancel,
                              int32_t *codes);
/* A caption as BPE ids (<bos>, <eos> excluded) into ids[cap]; *n gets the
 * count. */
md_status md_tok_sample_caption(md_tok_session *s, const float *cond, const md_tok_sample_opts *o, uint64_t seed,
                                const volatile int *cancel, int32_t *ids, int cap, int *n);

/* ---- training ---- */
typedef struct md_tok_train_opts {
    int64_t steps;                   /* 1500 */
    int batch_images, batch_videos;  /* 16, 4 sequences per step */
    int64_t corpus_images, corpus_videos;   /* 16000, 4000 train samples tokenised once */
    float lr;                        /* 6e-4 peak, warmup 3%, cosine to 1/10 */
    float drop_cond;                 /* share of sequences trained without condition: 0.1 */
    float caption_weight;            /* caption tokens count this many times in the loss: 3 */
    int64_t d, layers, heads;        /* 256, 6, 8 */
    uint64_t seed;
    int video_chain;                 /* 0: later frames after frame 0 (the default); 1: after the frame before */
    const md_tokmodel *init;         /* NULL: fresh weights; else go on from this model (same shape) */
    void (*progress)(const char *stage, int64_t step, int64_t steps, float loss, void *user);
    void *user;
    const volatile int *cancel;
} md_tok_train_opts;

void md_tok_train_default_opts(md_tok_train_opts *o);
/* Trains a fresh model (m zeroed on entry) on the world's train split with
 * the given space (conditions, caption tokens) and image tokenizer (codes). */
md_status md_tok_train(md_tokmodel *m, const md_space *sp, const md_vqgan *vq, const md_world *w,
                       const md_tok_train_opts *o);

#ifdef __cplusplus
}
#endif
#endif
