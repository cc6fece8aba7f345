/* pcase.h — parity cases: run an op (or a block) forward and backward on
 * random inputs, check its gradients by finite differences, and dump
 * everything for the PyTorch oracle (tests/parity/oracle.py).
 *
 * Dump format (little-endian), one file per test program:
 *   "MDPC" u32 version=1, then records:
 *   u32 tag=1 (case): u32 len + op name, u32 len + params (JSON object)
 *   u32 tag=2 (tensor): u32 len + role ("in0", "out0", "dout0", "grad0", or
 *       "param:<name>" / "pgrad:<name>"), u32 dtype (0 f32, 3 i32),
 *       u32 ndim, i64 shape[ndim], data
 *   u32 tag=3 (end of case)
 */
#ifndef MEDLEY_PCASE_H
#define MEDLEY_PCASE_H

#include "ops.h"
#include "rng.h"

#include <stdio.h>

typedef struct pc_ctx {
    FILE *f;
    md_rng rng;
    int failures, cases;
    double fd_tol;        /* relative tolerance of the finite-difference check */
} pc_ctx;

/* Opens path (from argv or "parity_<name>.bin"); seed from MEDLEY_TEST_SEED
 * or the clock (printed, so a failure can be replayed). */
int pc_open(pc_ctx *c, const char *path);
int pc_close(pc_ctx *c);   /* returns number of failures */

/* An op under test: builds outputs from inputs. Returns the output count. */
typedef int (*pc_op_fn)(md_graph *g, md_tensor **in, md_tensor **out, void *user);

typedef struct pc_input {
    int ndim;
    int64_t shape[MD_MAX_DIMS];
    bool grad;           /* differentiate with respect to it */
    md_dtype dtype;      /* MD_F32 or MD_I32 */
    int32_t ihigh;       /* ids drawn from [0, ihigh) */
    float lo, hi;        /* uniform range for f32 (0,0 = normal(0,1)) */
    bool positive;       /* f32 inputs kept away from kinks (|x| > 0.05) */
} pc_input;

/* Runs the op: forward, random upstream gradient, backward; dumps all;
 * finite-difference check of <grad, v> for each grad input (f32 forward,
 * loss accumulated in double, central differences). params is the JSON
 * the oracle reads. */
void pc_run(pc_ctx *c, const char *op, const char *params, int nin, const pc_input *ins,
            pc_op_fn fn, void *user);

/* Writes a named tensor into the current case (for blocks with params). */
void pc_dump(pc_ctx *c, const char *role, const md_tensor *t, const float *data);
void pc_case_begin(pc_ctx *c, const char *op, const char *params);
void pc_case_end(pc_ctx *c);
/* Random f32 tensor data, normal(0, std). */
void pc_fill(pc_ctx *c, float *x, int64_t n, float std);

#endif
