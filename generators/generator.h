/* generator.h — the one interface every generator stands behind
 * (../shared/DESIGN.md): a generator writes one modality from a condition
 * (the composed vector of the aligned space), with declared parameters and
 * their defaults, reporting progress (with previews) and stopping when its
 * cancel flag is set. Generators never open files: the caller loads their
 * models and hands them over, and writes what they return.
 *
 *   md_generator *g = ...;                       // a generator's constructor
 *   double p[MD_GEN_MAX_PARAMS];
 *   md_gen_params_default(g, p);
 *   md_gen_param_set(g, p, "temperature", "0.8");  // range-checked, named errors
 *   md_gen_output out;
 *   g->run(g->self, &cond, p, seed, progress, user, cancel, &out);
 *   md_gen_output_free(&out);
 */
#ifndef MEDLEY_GENERATOR_H
#define MEDLEY_GENERATOR_H

#include "media.h"
#include "space.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_GEN_MAX_PARAMS 12

typedef enum md_gen_param_type { MD_GEN_INT = 0, MD_GEN_FLOAT = 1 } md_gen_param_type;

typedef struct md_gen_param_spec {
    const char *name;                /* "temperature", "top_k", "top_p", "guidance", "steps", ... */
    const char *help;
    md_gen_param_type type;
    double def, lo, hi;              /* default; inclusive range */
} md_gen_param_spec;

typedef struct md_gen_condition {
    float vec[MD_SPACE_DIM];         /* the composed condition (unit vector) */
    const char *text;                /* the typed text among the inputs, or NULL */
    float text_share;                /* that text's weight over the inputs' total |weight| (0..1; 1: the
                                      * text alone); 0 where unknown */
} md_gen_condition;

typedef struct md_gen_output {
    md_modality modality;
    md_image image;                  /* MD_MOD_IMAGE */
    md_video video;                  /* MD_MOD_VIDEO (with its audio when the generator makes it) */
    md_audio audio;                  /* MD_MOD_AUDIO */
    char *text;                      /* MD_MOD_TEXT, NUL-terminated UTF-8 */
} md_gen_output;

/* Progress: fraction 0..1, a stage name, and a preview of what the output
 * looks like so far (an md_image for image and video generators; NULL when
 * none this step), valid during the call. */
typedef void (*md_gen_progress_fn)(const char *stage, int64_t step, int64_t steps, double fraction,
                                   const md_image *preview, void *user);

typedef struct md_generator {
    const char *name;                /* "tokens" */
    const char *model_id;            /* the models it runs (for outputs' metadata) */
    md_modality output;
    const md_gen_param_spec *params;
    int nparams;
    void *self;
    md_status (*run)(void *self, const md_gen_condition *c, const double *params, uint64_t seed,
                     md_gen_progress_fn progress, void *user, const volatile int *cancel, md_gen_output *out);
    void (*free)(void *self);
} md_generator;

/* Working memory a host lends to the generators it runs one after another,
 * never two at once (a job's outputs are made in turn): they then share one
 * scratch graph, and the token generators one sampling session, so a job's
 * peak is its largest output's rather than the sum of all of them. A
 * generator made with a NULL workspace keeps its own. The workspace
 * outlives every generator made with it. */
struct md_tok_session;
struct md_tokmodel;
typedef struct md_gen_workspace {
    md_graph *graph;                 /* scratch, reset by whoever uses it */
    struct md_tok_session *tokens;   /* made by the first token generator */
    const struct md_tokmodel *tokens_model;   /* the model that session samples */
} md_gen_workspace;

md_gen_workspace *md_gen_workspace_new(void);   /* NULL with a message: out of memory */
void md_gen_workspace_free(md_gen_workspace *w);

void md_gen_params_default(const md_generator *g, double *vals);
/* Parses value for parameter `name` into vals: an unknown name, a value
 * that is not a number (or not an integer where one is wanted) or outside
 * the range is MD_ERR_INVALID with a message naming the generator, the
 * parameter and the range. */
md_status md_gen_param_set(const md_generator *g, double *vals, const char *name, const char *value);
int md_gen_param_index(const md_generator *g, const char *name);   /* -1: none */
void md_gen_output_free(md_gen_output *o);
void md_generator_free(md_generator *g);   /* calls g->free(g->self), then frees g */

#ifdef __cplusplus
}
#endif
#endif
