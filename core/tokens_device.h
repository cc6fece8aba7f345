/* tokens_device.h — the token transformer's cached steps on a CUDA device.
 *
 * The model's weights are copied to the device once; each row's keys and
 * values stay there between steps, so a step moves only its conditions and
 * token ids in and its logits out. A step computes what
 * md_tok_forward_cached computes (tokens.h), in fp32 throughout: products
 * through cuBLAS (strict fp32), attention by md_cuda_attention_fwd_kv.
 * Built where the build has CUDA kernels (MEDLEY_HAVE_CUDA without
 * MEDLEY_CUDA_NO_KERNELS); a sampler session made for a device
 * (md_tok_session_new_on) runs every step here.
 *
 *     md_tok_device *td;
 *     int64_t rows = 16;
 *     if (md_tok_device_new(m, cuda, 1, &rows, &td) == MD_OK) {
 *         md_tok_device_step(td, 0, 0, conds, 16, ids, slots, 6, 0, logits);    // prefix + 6 tokens
 *         md_tok_device_step(td, 0, 0, conds, 16, next, nslots, 1, 10, logits); // one more each
 *         md_tok_device_free(td);
 *     }
 */
#ifndef MEDLEY_TOKENS_DEVICE_H
#define MEDLEY_TOKENS_DEVICE_H

#include "tokens.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_cuda md_cuda;
typedef struct md_tok_device md_tok_device;

/* Copies m's weights into c's arena and makes nsets sets of KV caches of
 * MD_TOK_TMAX positions there, set i for set_rows[i] rows (a sampler's
 * pair, its candidates side by side, ...). Everything is given back with
 * the object, by rewinding c's arena to where it stood: the object must
 * be the last thing taken from it. */
md_status md_tok_device_new(const md_tokmodel *m, md_cuda *c, int nsets, const int64_t *set_rows,
                            md_tok_device **out);
void md_tok_device_free(md_tok_device *d);

/* One step for `rows` rows of cache set `set` from row0: cond [rows,
 * MD_SPACE_DIM], ids and slots [rows, t] (t may be 0 when pos0 is 0), all
 * on the host; positions pos0 .. (pos0 == 0: the prefix first). Each row's
 * cache must hold pos0 positions from earlier steps. logits [rows, vocab]
 * (host) are the last position's. */
md_status md_tok_device_step(md_tok_device *d, int set, int64_t row0, const float *cond, int64_t rows,
                             const int32_t *ids, const int32_t *slots, int64_t t, int64_t pos0, float *logits);

/* One-position steps (t 1 after the prefix, from row 0) are recorded as
 * a CUDA graph at their first use for each row count and replayed after:
 * one launch a step instead of about a hundred, the same kernels and
 * bits. On by default; MEDLEY_CUDA_GRAPHS=0 in the environment, or this
 * call, turns it off (each step then queues its kernels one by one). */
void md_tok_device_set_graphs(md_tok_device *d, bool on);
/* Whether graphs are on (false after a recording failed). */
bool md_tok_device_graphs(const md_tok_device *d);

/* Positions [0, positions) of row src_row of set src_set into row dst_row
 * of set dst_set (as md_kv_cache_copy_row), queued on the device. */
md_status md_tok_device_copy_row(md_tok_device *d, int dst_set, int64_t dst_row, int src_set, int64_t src_row,
                                 int64_t positions);

#ifdef __cplusplus
}
#endif
#endif
