/* checkpoint.h — save and resume training exactly.
 *
 *   md_checkpoint_save("run/ckpt.safetensors", ps, &opt, &ema, &rng, step, "{\"lr\":3e-4}");
 *   ...
 *   // fresh process: build the same model, md_adamw_init, md_ema_init, then
 *   md_checkpoint_load("run/ckpt.safetensors", ps, &opt, &ema, &rng, &step);
 *   // training continues bit-identically to a run that never stopped
 *
 * The file is a safetensors file (written atomically) holding, all F32:
 *     param/<name>    values            (shape of the parameter)
 *     adam_m/<name>   AdamW first moment   (only when saved with an optimizer)
 *     adam_v/<name>   AdamW second moment
 *     ema/<name>      EMA shadow           (only when saved with an EMA)
 * and in __metadata__, integers as plain decimal strings:
 *     format = "medley-checkpoint", format_version = "1", step,
 *     adam_step (with an optimizer), rng_key + rng_counter (with an RNG),
 *     ema_n (with an EMA), user_meta (the caller's JSON, when given; read it
 *     back with md_st_meta(f, "user_meta")).
 * Hyperparameters (lr, betas, decay mask, EMA decay) are configuration, not
 * state: they come from the objects passed to load, so a resumed run may
 * change them.
 */
#ifndef MEDLEY_CHECKPOINT_H
#define MEDLEY_CHECKPOINT_H

#include "md.h"
#include "tensor.h"
#include "optim.h"
#include "rng.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_CHECKPOINT_FORMAT "medley-checkpoint"
#define MD_CHECKPOINT_VERSION 1

/* opt, ema, rng and meta_json may be NULL (that part is not saved). opt and
 * ema must belong to ps. step must be >= 0. meta_json must be valid JSON
 * (MD_ERR_INVALID otherwise). Parameter names must be non-empty and unique. */
md_status md_checkpoint_save(const char *path, md_paramset *ps, const md_adamw *opt,
                             const md_ema *ema, const md_rng *rng, int64_t step,
                             const char *meta_json);

/* Restores into existing objects: ps with the same parameters (names and
 * shapes), opt and ema initialised on ps. opt, ema, rng and step may be NULL
 * (that part is not restored); a non-NULL part the file lacks is an error.
 * Everything is validated before anything is written, so on failure all
 * objects are unchanged. Errors (missing file, missing tensor, wrong shape or
 * dtype, bad metadata) are logged naming the file and the fault, and return
 * MD_ERR_IO / MD_ERR_FORMAT / MD_ERR_UNSUPPORTED (newer format version). */
md_status md_checkpoint_load(const char *path, md_paramset *ps, md_adamw *opt, md_ema *ema,
                             md_rng *rng, int64_t *step);

#ifdef __cplusplus
}
#endif
#endif
