/* metrics.h — how every generator is scored (../shared/DESIGN.md).
 *
 *   attribute accuracy   judges' readings of outputs against what was asked
 *   diversity            how different the outputs for distinct seeds are
 *   Fréchet distance     between Gaussians fitted to judge features of
 *                        generated and of real test samples
 *   any-to-any matrix    rows: input modality, columns: output modality
 */
#ifndef MEDLEY_METRICS_H
#define MEDLEY_METRICS_H

#include "json.h"
#include "world.h"
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- attribute accuracy ---- */
typedef struct md_attr_score {
    int64_t asked[MD_ATTR_COUNT];     /* outputs where the attribute was asked for */
    int64_t right[MD_ATTR_COUNT];     /* ... and the judge read the asked value */
    int64_t samples, all_right;       /* outputs; outputs with every asked attribute right */
} md_attr_score;

/* Adds one output: want[a] < 0 means not asked (not counted). */
void md_attr_score_add(md_attr_score *s, const int want[MD_ATTR_COUNT], const int got[MD_ATTR_COUNT]);
double md_attr_score_acc(const md_attr_score *s, md_attr a);   /* NaN when never asked */
/* Accuracy over every asked attribute except the digit (the "stated
 * attributes" figure); NaN when none. */
double md_attr_score_attrs(const md_attr_score *s);

/* ---- diversity ----
 * k outputs of n values each (x: [k, n]) made from one request with k
 * distinct seeds. Returns the mean pairwise RMS difference divided by the
 * RMS deviation of the values from their overall mean (0 when all outputs
 * are identical; about sqrt(2) for independent outputs). k < 2 → NaN. */
double md_diversity(const float *x, int k, int64_t n);
/* Share of the k outputs that differ from every earlier one (exact bytes). */
double md_distinct_share(const float *x, int k, int64_t n);

/* ---- Fréchet distance ----
 * ||mu_a - mu_b||^2 + Tr(Ca + Cb - 2 (Ca^1/2 Cb Ca^1/2)^1/2), features
 * [n, d] row-major, covariances with n - 1. Computed in double with a
 * symmetric eigensolver (no complex square roots). n >= 2 each. */
typedef struct md_gauss {
    int d;
    int64_t n;
    double *mu;      /* [d] */
    double *cov;     /* [d, d] */
} md_gauss;
md_status md_gauss_fit(const float *x, int64_t n, int d, md_gauss *g);
void md_gauss_free(md_gauss *g);
md_status md_frechet(const md_gauss *a, const md_gauss *b, double *out);
md_status md_frechet_distance(const float *a, int64_t na, const float *b, int64_t nb, int d, double *out);

/* Eigenvalues (ascending) and, if vecs != NULL, column eigenvectors of a
 * symmetric d×d matrix (Householder tridiagonalisation, then implicit QL). a is not modified. */
md_status md_sym_eigen(const double *a, int d, double *vals, double *vecs);

/* ---- any-to-any matrix ---- */
#define MD_MODALITIES 4   /* text image audio video */
extern const char *const md_modality_names[MD_MODALITIES];

typedef struct md_eval_cell {
    bool present;         /* a generator exists for this pair and was run */
    int64_t n;            /* outputs scored */
    double digit_acc;     /* requested digit recognised */
    double attr_acc;      /* other requested attributes recognised (NaN if none asked) */
    double diversity;     /* NaN if not measured */
    double fd, fd_floor;  /* Fréchet distance, and real-vs-real floor (NaN if not measured) */
    char generator[48];   /* which generator made the column's output */
} md_eval_cell;

typedef struct md_eval_matrix {
    md_eval_cell cell[MD_MODALITIES][MD_MODALITIES];   /* [input][output] */
    /* per input: the share of videos whose clip (made from the same
     * condition) says the digit the video shows; shown where both the
     * video and the audio cell of that input are present */
    double av_agree[MD_MODALITIES];
    /* pictures by the second path (diffusion), per input, beside the image
     * column (the tokens' path) */
    md_eval_cell alt_image[MD_MODALITIES];
    md_eval_cell alt_video[MD_MODALITIES];           /* and videos by it, beside the video column */
} md_eval_matrix;

/* Prints the digit-accuracy matrix and one line per present cell with the
 * other figures; absent cells print as "—". */
void md_eval_matrix_print(FILE *f, const md_eval_matrix *m);
/* Appends {"rows": [...], "cols": [...], "cells": [[{...}|null, ...], ...]}
 * to b (NaN becomes null). */
void md_eval_matrix_json(md_json_buf *b, const md_eval_matrix *m);
/* The same object written atomically (temp file + rename) to path. */
md_status md_eval_matrix_write_json(const char *path, const md_eval_matrix *m);

#ifdef __cplusplus
}
#endif
#endif
