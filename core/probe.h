/* probe.h — attribute readers on the aligned space, for choosing among a
 * generator's candidate pictures.
 *
 * The space places a picture near a condition when the two share meaning,
 * but one cosine weighs every direction at once: a candidate with the
 * asked colours and the wrong digit can outscore one with the right digit.
 * The readers split the question by attribute. Two sets of linear softmax
 * heads over the space's unit vectors, one head per picture attribute
 * (digit, style, ink, background, position, size):
 *
 *   ask   a condition's vector (any modality, or a composition) -> what it
 *         asks of a picture; trained toward the attribute where the
 *         condition states it (a caption's stated attributes, everything a
 *         picture shows, the digit a voice says) and toward the uniform
 *         distribution where it does not, so an unstated attribute reads
 *         as "any";
 *   show  a picture's vector -> what it shows; trained on train pictures,
 *         real and passed through the image tokenizer (the pictures a
 *         generator decodes look like the latter).
 *
 * A candidate's score is sum over heads of log sum_v ask(v) show(v): the
 * log-probability that the picture shows what the condition asks, heads
 * taken as independent; an unstated attribute adds the same constant to
 * every candidate. md_space_pick_closest uses it when a probe is attached
 * to the space (md_space.probe), adding the cosine times cos_weight.
 */
#ifndef MEDLEY_PROBE_H
#define MEDLEY_PROBE_H

#include "space.h"
#include "vqgan.h"
#include "world.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_PROBE_MODEL "medley-probe"
#define MD_PROBE_HEADS 6             /* digit, style, ink, background, position, size */
#define MD_PROBE_CLASSES 40          /* 10 + 2 + 8 + 8 + 9 + 3 */

extern const md_attr md_probe_attrs[MD_PROBE_HEADS];

typedef struct md_probe {
    md_paramset *ps;
    md_tensor *ask_w, *ask_b;        /* [MD_PROBE_CLASSES, MD_SPACE_DIM], [MD_PROBE_CLASSES] */
    md_tensor *show_w, *show_b;
    float cos_weight;                /* the cosine's weight beside the readers' log-probability */
    char space_id[17];               /* the space it reads (hash of the space file), "" unknown */
} md_probe;

md_status md_probe_init(md_probe *p);
void md_probe_free(md_probe *p);
md_status md_probe_save(const md_probe *p, const char *path, const char *recipe_json, const char *data_hash);
md_status md_probe_load(md_probe *p, const char *path);

/* Per-head distributions: what a condition asks (ask != 0) or a picture
 * shows, from a unit vector v; out [MD_PROBE_CLASSES], softmax per head. */
void md_probe_read(const md_probe *p, int ask, const float *v, float *out);
/* The score of a picture (vector img) for a condition (vector cond), as
 * above, without the cosine. */
float md_probe_score(const md_probe *p, const float *cond, const float *img);

typedef struct md_probe_train_opts {
    int images;                      /* train pictures read (each: itself, a reconstruction, a caption) */
    int videos, clips;               /* train videos and spoken clips read as conditions (and captions) */
    int iters;                       /* full-batch Adam steps */
    float lr, weight_decay;
    float cos_weight;                /* stored in the file */
    uint64_t seed;
    void (*progress)(const char *stage, int64_t done, int64_t total, float loss, void *user);
    void *user;
    const volatile int *cancel;
} md_probe_train_opts;

void md_probe_train_default_opts(md_probe_train_opts *o);

/* Held-out figures (validation samples the training never saw). */
typedef struct md_probe_figures {
    int n;                           /* validation pictures */
    double show_acc[MD_PROBE_HEADS]; /* the picture head's argmax equals the truth (real pictures) */
    double ask_acc[MD_PROBE_HEADS];  /* the caption head's argmax equals a stated attribute */
} md_probe_figures;

/* vq may be NULL (real pictures only). p must be zeroed. */
md_status md_probe_train(md_probe *p, const md_space *sp, const md_vqgan *vq, const md_world *w,
                         const md_probe_train_opts *o, md_probe_figures *f);

#ifdef __cplusplus
}
#endif
#endif
