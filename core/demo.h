/* demo.h — the engine's demonstration job: train a small decoder-only
 * transformer from scratch to reverse digit strings, then decode held-out
 * strings greedily with the KV cache and report exact-match accuracy.
 * `medley demo` runs it; the end-to-end tests hold it to a threshold.
 *
 * Sequence layout (length 2L+1): d_1 .. d_L SEP r_1 .. r_L, where r is d
 * reversed; digits are tokens 0..9, SEP is 10. Loss covers predictions of
 * r_1..r_L only (other targets use ignore_index).
 */
#ifndef MEDLEY_DEMO_H
#define MEDLEY_DEMO_H

#include "md.h"

typedef struct md_demo_opts {
    int steps;           /* optimisation steps (default 300) */
    int batch;           /* sequences per step (default 64) */
    int length;          /* digits per string, L (default 8) */
    int d, layers, heads;
    uint64_t seed;
    float lr;
    /* Called after each step; may be NULL. */
    void (*progress)(int step, int steps, float loss, void *user);
    void *user;
    const volatile int *cancel;   /* nonzero = stop after the current step */
} md_demo_opts;

typedef struct md_demo_result {
    float first_loss, final_loss;   /* mean over the first / last 10 steps */
    float accuracy;                 /* exact-match on held-out strings, 0..1 */
    float token_accuracy;
    int steps_run;
    int64_t params;
    double train_seconds, decode_seconds;
} md_demo_result;

void md_demo_default_opts(md_demo_opts *o);
/* MD_OK, MD_ABORTED (cancelled; result holds what ran), or an error. */
md_status md_demo_reverse(const md_demo_opts *o, md_demo_result *r);

#endif
