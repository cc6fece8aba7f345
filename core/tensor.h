/* tensor.h — Medley's engine: tensors, arenas, graphs, parameters.
 *
 * How the engine works, in one page
 * ---------------------------------
 * Compute is f32. Weights may be stored bf16/f16 (model files) and are
 * converted when loaded. Tensors have up to 5 dimensions (video is
 * B × T × C × H × W), row-major strides in elements.
 *
 * Differentiation is reverse-mode autograd over a tape:
 *   - An md_graph owns an arena and a tape. Every op (ops.h) computes its
 *     result at once (eager) into arena memory and, when any input requires
 *     a gradient and the graph records, appends a tape node holding its
 *     backward function and what that needs (inputs, saved statistics).
 *   - md_graph_backward() walks the tape in reverse. Models are written once,
 *     as forward code; no model writes a backward pass by hand.
 *   - md_graph_reset() starts the next step: the tape empties and the arena
 *     rewinds. The arena's size is learned on the first step with a given
 *     configuration and kept, so later steps and calls allocate nothing
 *     (first touch of fresh pages is slow on these machines: plan once).
 *
 * Gradients of temporaries live in the arena beside the values. Each grad
 * buffer has a "ready" flag (shared between a tensor and its reshaped views):
 * the first backward writer overwrites, later ones accumulate, so no buffer
 * is zeroed needlessly.
 *
 * Parameters live outside graphs, in an md_paramset: one flat block for
 * values, one for gradients (so a data-parallel all-reduce is one call), laid
 * out in declaration order.
 *
 * Ownership: tensors returned by ops belong to the graph and are valid until
 * md_graph_reset/md_graph_free. Parameter tensors belong to their paramset.
 * Nothing here is thread-safe per object: one graph per thread of use.
 */
#ifndef MEDLEY_TENSOR_H
#define MEDLEY_TENSOR_H

#include "md.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_MAX_DIMS 5

typedef enum md_dtype {
    MD_F32 = 0,
    MD_F16 = 1,
    MD_BF16 = 2,
    MD_I32 = 3,   /* token ids, labels, code indices */
    MD_I64 = 4,
    MD_U8 = 5
} md_dtype;

size_t md_dtype_size(md_dtype t);
const char *md_dtype_name(md_dtype t);      /* "F32", "BF16", ... as in safetensors */
int md_dtype_from_name(const char *name);   /* -1 if unknown */

/* f32 <-> bf16/f16 conversion (round to nearest even; NaN preserved). */
uint16_t md_f32_to_bf16(float x);
float md_bf16_to_f32(uint16_t x);
uint16_t md_f32_to_f16(float x);
float md_f16_to_f32(uint16_t x);
void md_convert(void *dst, md_dtype dt, const void *src, md_dtype st, size_t n);

typedef struct md_tensor {
    float *data;                   /* values; for MD_I32 cast via md_i32() */
    float *grad;                   /* NULL when no gradient is kept */
    int *grad_ready;               /* shared by views; see header comment */
    int64_t shape[MD_MAX_DIMS];
    int64_t stride[MD_MAX_DIMS];   /* in elements */
    int ndim;
    md_dtype dtype;
    bool requires_grad;
    const char *name;              /* borrowed; may be NULL */
    const uint16_t *half;          /* a matrix's values, exactly, in f16 panels (md_paramset_make_half); else NULL */
} md_tensor;

static inline int32_t *md_i32(const md_tensor *t) { return (int32_t *)(void *)t->data; }
int64_t md_numel(const md_tensor *t);
bool md_is_contiguous(const md_tensor *t);
bool md_same_shape(const md_tensor *a, const md_tensor *b);
/* Fills shape/stride for a contiguous layout. */
void md_tensor_set_shape(md_tensor *t, int ndim, const int64_t *shape);
/* "[2, 3, 4]" into buf (for messages). */
const char *md_shape_str(const md_tensor *t, char *buf, size_t n);

/* ---- Arena: bump allocator, 64-byte aligned, rewinds on reset ---------- */
typedef struct md_arena md_arena;
md_arena *md_arena_new(size_t initial_bytes);
void md_arena_free(md_arena *a);
void *md_arena_alloc(md_arena *a, size_t bytes);  /* NULL on OOM (logged) */
/* Rewinds. Chunks are kept and reused in order, so a cycle that repeats the
 * last one allocates nothing and touches no fresh page. */
void md_arena_reset(md_arena *a);
size_t md_arena_capacity(const md_arena *a);
size_t md_arena_high_water(const md_arena *a);
/* Number of times the arena called malloc since creation (tests use it to
 * prove steady state allocates nothing). */
size_t md_arena_mallocs(const md_arena *a);

/* ---- Graph ------------------------------------------------------------ */
typedef struct md_graph md_graph;
typedef struct md_node md_node;
typedef void (*md_backward_fn)(md_graph *g, md_node *n);

/* A tape entry. Ops fill what their backward needs. */
struct md_node {
    md_backward_fn backward;
    const char *op;           /* backward function's name, for the profiler */
    md_tensor *out;
    md_tensor *in[4];
    void *saved[4];
    int64_t iarg[8];
    float farg[4];
};

struct md_backend;

md_graph *md_graph_new(size_t arena_bytes);   /* NULL on OOM */
void md_graph_free(md_graph *g);
void md_graph_reset(md_graph *g);
/* Record tape nodes (default true). Off for inference: ops only compute. */
void md_graph_set_grad(md_graph *g, bool on);
bool md_graph_grad_enabled(const md_graph *g);
/* Training mode affects dropout (default true). */
void md_graph_set_training(md_graph *g, bool on);
bool md_graph_training(const md_graph *g);
/* Products on bf16 operands with f32 sums (md_cpu_gemm_bf16) for this
 * graph's large matrix products, linear layers and convolutions: several
 * times faster where the CPU has bf16 units, at bf16's rounding of the
 * operands (8 bits of mantissa). Off by default; a graph starts with the
 * process default, which md_set_bf16_default sets (the trainers' --bf16).
 * Only the CPU backend reads it. */
void md_graph_set_bf16(md_graph *g, bool on);
bool md_graph_bf16(const md_graph *g);
void md_set_bf16_default(bool on);
/* Seed for stochastic ops in this graph (dropout): numbers come from a
 * counter-based generator keyed by (seed, op index), so they do not depend
 * on the thread count. */
void md_graph_set_seed(md_graph *g, uint64_t seed);
uint64_t md_graph_next_stream(md_graph *g);
md_arena *md_graph_arena(md_graph *g);
const struct md_backend *md_graph_backend(const md_graph *g);
void md_graph_set_backend(md_graph *g, const struct md_backend *be);

/* New uninitialised tensor in the graph's arena (grad buffer too when
 * requires_grad and the graph records). */
md_tensor *md_tensor_new(md_graph *g, md_dtype dt, int ndim, const int64_t *shape,
                         bool requires_grad);
md_tensor *md_tensor_new2(md_graph *g, int64_t d0, int64_t d1);
md_tensor *md_tensor_zeros(md_graph *g, md_dtype dt, int ndim, const int64_t *shape);
/* Wrap external memory (not copied; caller keeps it alive for the step). */
md_tensor *md_tensor_wrap(md_graph *g, md_dtype dt, void *data, int ndim, const int64_t *shape);
/* Scratch memory from the graph's arena. */
void *md_graph_scratch(md_graph *g, size_t bytes);

/* Appends a tape node for out (when recording and out requires grad) and
 * returns it, else NULL. */
md_node *md_graph_record_named(md_graph *g, md_backward_fn fn, md_tensor *out, const char *op);
#define md_graph_record(g, fn, out) md_graph_record_named((g), (fn), (out), #fn)

/* Op profiler (MEDLEY_PROFILE=1 in the environment, or this call): times
 * each recorded op's forward (from the previous op's end to its own) and
 * each backward node, summed by op. Turning it on clears the table (so a
 * caller can skip warm-up steps). */
void md_graph_set_profile(md_graph *g, bool on);
/* Prints the table to f (a FILE*), slowest first; no-op when off. */
void md_graph_profile_print(const md_graph *g, void *f);

/* Runs backward from a scalar (numel 1) loss: d loss = 1. */
void md_graph_backward(md_graph *g, md_tensor *loss);
/* Runs backward with a given upstream gradient for out (same shape). */
void md_graph_backward_from(md_graph *g, md_tensor *out, const float *dout);
/* Runs backward from whatever output grads the caller seeded (grad data
 * written and *grad_ready set to 1), e.g. for several outputs at once. */
void md_graph_run_backward(md_graph *g);
int md_graph_tape_len(const md_graph *g);

/* For backward functions: the grad buffer of t to write.
 * md_grad_beta() returns 0 for the first writer (overwrite all of it) and 1
 * afterwards (accumulate), marking it ready. md_grad_acc() zeroes it if not
 * yet ready and returns it for accumulation. Both return NULL/-1 semantics:
 * if t keeps no grad, md_grad_acc returns NULL. */
float md_grad_beta(md_tensor *t);
float *md_grad_acc(md_tensor *t);
static inline bool md_wants_grad(const md_tensor *t) { return t && t->grad != NULL; }

/* ---- Parameters ------------------------------------------------------- */
typedef struct md_paramset md_paramset;
md_paramset *md_paramset_new(void);
void md_paramset_free(md_paramset *ps);
/* Declares a parameter; valid after md_paramset_alloc(). Names are copied.
 * Returns NULL after alloc (programmer error, asserted). */
md_tensor *md_param_add(md_paramset *ps, const char *name, int ndim, const int64_t *shape);
md_status md_paramset_alloc(md_paramset *ps);
/* Frozen parameters keep no gradient: graphs over them still pass
 * gradients to their other inputs, but no op computes or stores one for
 * them (a fixed network inside another's loss). Unfreezing restores them. */
void md_paramset_set_frozen(md_paramset *ps, bool frozen);
int md_paramset_count(const md_paramset *ps);
md_tensor *md_paramset_get(md_paramset *ps, int i);
md_tensor *md_paramset_find(md_paramset *ps, const char *name);
int64_t md_paramset_numel(const md_paramset *ps);
float *md_paramset_values(md_paramset *ps);   /* flat block, numel floats */
float *md_paramset_grads(md_paramset *ps);    /* flat block, numel floats */
/* Gives every matrix parameter whose values are all exact in half
 * precision (a model as loaded from f16 weights) a copy in f16 (its
 * `half`, packed as md_f16_panels_pack lays a weight out), which
 * inference reads instead of the f32 values: the same numbers in half the
 * bytes (md_linear's products of few rows, md_cpu_gemm_f16p). Returns
 * how many parameters have one. Training drops the copies
 * (md_paramset_zero_grad), since it changes the values. */
int md_paramset_make_half(md_paramset *ps);
/* Marks all grads "not ready" (cheap); drops the f16 copies. */
void md_paramset_zero_grad(md_paramset *ps);
/* Zeroes the grads no op wrote this step, so the flat block is valid. */
void md_paramset_finish_grads(md_paramset *ps);
/* Initialisers (counter-based RNG; same result for any thread count). */
void md_init_normal(md_tensor *t, uint64_t seed, float mean, float std);
void md_init_uniform(md_tensor *t, uint64_t seed, float lo, float hi);
void md_init_const(md_tensor *t, float v);

#ifdef __cplusplus
}
#endif
#endif
