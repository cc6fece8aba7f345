/* optim.h — AdamW, gradient clipping, learning-rate schedule, EMA weights.
 *
 * A training step, in order:
 *     md_paramset_zero_grad(ps);  forward; md_graph_backward(...);
 *     md_paramset_finish_grads(ps);             // flat grad block now valid
 *     float norm = md_clip_grad_norm(ps, 1.0f); // optional
 *     md_adamw_step(&opt, md_lr_warmup_cosine(step, warmup, total, lr, lr_min));
 *     md_ema_update(&ema);                      // optional
 *
 * All state is flat and laid out like the paramset's value block (declaration
 * order), so element k of m, v or an EMA shadow belongs to value k.
 *
 * Determinism: every function here gives bit-identical results for any
 * thread count. Element-wise work is split into fixed-size chunks (the same
 * chunks whatever the thread count); the one reduction (the gradient norm)
 * sums fixed-size chunk partials serially, in chunk order.
 *
 * Ownership: an optimizer or EMA borrows its paramset (which must outlive it)
 * and owns its state buffers. Nothing is thread-safe per object.
 */
#ifndef MEDLEY_OPTIM_H
#define MEDLEY_OPTIM_H

#include "md.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- AdamW ---------------------------------------------------------------
 * Exactly torch.optim.AdamW (amsgrad off, maximize off): per element, with
 * t = step after increment,
 *     p *= 1 - lr*wd                       (only where decay is on)
 *     m  = beta1*m + (1-beta1)*g
 *     v  = beta2*v + (1-beta2)*g*g
 *     p += -(lr / (1-beta1^t)) * m / (sqrt(v) / sqrt(1-beta2^t) + eps)
 * Scalars are formed in double and rounded to float, as torch does with
 * Python floats; element arithmetic is float. */
typedef struct md_adamw {
    float beta1, beta2, eps, weight_decay;
    int64_t step;                  /* steps taken; bias correction uses step+1 */
    float *m, *v;                  /* (numel) each; one allocation, m owns it */
    md_paramset *ps;               /* borrowed */
    unsigned char *decay_mask;     /* (nparams) 1 = apply weight decay */
    /* private */
    int nparams;
    int64_t *offset;               /* (nparams+1) flat start of each param */
} md_adamw;

/* Zeroes m and v. beta1, beta2 in [0,1), eps >= 0, weight_decay >= 0, else
 * MD_ERR_INVALID. The paramset must be allocated and keep its parameters for
 * the optimizer's life. On failure *o is left safe to md_adamw_free. */
md_status md_adamw_init(md_adamw *o, md_paramset *ps, float beta1, float beta2, float eps,
                        float weight_decay);
void md_adamw_free(md_adamw *o);
/* Default: decay params with ndim >= 2 only (biases, norm gains excluded). */
void md_adamw_set_decay(md_adamw *o, int param_index, bool decay);
/* One step with learning rate lr. Reads the flat grad block: every grad must
 * be ready (md_paramset_finish_grads), asserted. */
void md_adamw_step(md_adamw *o, float lr);

/* ---- Gradient clipping ---------------------------------------------------
 * Global L2 norm of all grads (ready: asserted), computed in double with a
 * fixed summation order. When c = max_norm / (norm + 1e-6) is below 1, grads
 * are scaled by c, as torch.nn.utils.clip_grad_norm_ does. Returns the norm
 * before clipping. max_norm > 0 (asserted). A NaN/Inf norm is logged
 * (warning) and returned with grads unchanged, so the caller can skip the
 * step. */
float md_clip_grad_norm(md_paramset *ps, float max_norm);

/* ---- Schedule -------------------------------------------------------------
 * step counts from 0. For step < warmup: lr_max * step / warmup (0 at step 0,
 * reaching lr_max at step == warmup). Then half a cosine from lr_max down to
 * lr_min over steps warmup..total; lr_min from total on (and after warmup if
 * total <= warmup). Negative steps count as 0. */
float md_lr_warmup_cosine(int64_t step, int64_t warmup, int64_t total, float lr_max, float lr_min);

/* ---- EMA of weights --------------------------------------------------- */
typedef struct md_ema {
    float decay;                   /* in [0,1] */
    float *shadow;                 /* (numel) owned */
    int64_t n;                     /* updates applied */
    md_paramset *ps;               /* borrowed */
} md_ema;

/* shadow = current values. decay outside [0,1] is MD_ERR_INVALID. */
md_status md_ema_init(md_ema *e, md_paramset *ps, float decay);
/* shadow = d*shadow + (1-d)*param. */
void md_ema_update(md_ema *e);
/* Exchanges shadow and live values: swap, evaluate with EMA weights, swap
 * back. Between the swaps do not train (the optimizer would update the
 * averages). */
void md_ema_swap(md_ema *e);
void md_ema_free(md_ema *e);

#ifdef __cplusplus
}
#endif
#endif
