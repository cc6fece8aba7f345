/* adamw_dump.c — runs md_clip_grad_norm + md_adamw_step on fixed data and
 * writes everything torch needs to replay it (test_adamw_torch.py).
 *
 * Usage: adamw_dump OUT.bin      (exit 0 when written)
 *
 * File format, little-endian, no padding:
 *   char magic[4] = "MDAW"; u32 version = 1
 *   u32 nparams; u32 nsteps
 *   f32 beta1, beta2, eps, weight_decay, max_norm
 *   nparams x { u32 ndim; i64 shape[ndim]; u32 decay (1 = weight decay on) }
 *   f32 init[numel]                  values before step 1, declaration order
 *   nsteps x { f32 lr; f32 norm      (md_clip_grad_norm's return)
 *              f32 grad[numel]       before clipping
 *              f32 clipped[numel] }  after clipping, as md_adamw_step read them
 *   f32 param[numel]; f32 m[numel]; f32 v[numel]   after the last step
 * numel is the sum over params of the product of their shapes.
 */
#include "optim.h"
#include "rng.h"
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSTEPS 12

static bool put(FILE *f, const void *p, size_t bytes) { return fwrite(p, 1, bytes, f) == bytes; }
static bool put_u32(FILE *f, uint32_t v) { return put(f, &v, 4); }

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT.bin\n", argv[0]);
        return 2;
    }
    const float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f, max_norm = 4.0f;
    md_paramset *ps = md_paramset_new();
    md_param_add(ps, "w1", 2, (int64_t[]){16, 33});
    md_param_add(ps, "b1", 1, (int64_t[]){33});
    md_param_add(ps, "w2", 3, (int64_t[]){4, 5, 7});
    md_param_add(ps, "g", 1, (int64_t[]){1});
    md_param_add(ps, "big", 2, (int64_t[]){97, 101}); /* > one 8192-element chunk */
    if (md_paramset_alloc(ps) != MD_OK)
        return 1;
    const int np = md_paramset_count(ps);
    const int64_t n = md_paramset_numel(ps);
    for (int i = 0; i < np; i++)
        md_init_normal(md_paramset_get(ps, i), 100 + (uint64_t)i, 0.0f, 0.3f);

    md_adamw o;
    if (md_adamw_init(&o, ps, beta1, beta2, eps, wd) != MD_OK)
        return 1;
    md_adamw_set_decay(&o, 3, true); /* a decayed 1-D param, besides the defaults */

    FILE *f = fopen(argv[1], "wb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    bool ok = put(f, "MDAW", 4) && put_u32(f, 1) && put_u32(f, (uint32_t)np) && put_u32(f, NSTEPS);
    const float hyper[5] = {beta1, beta2, eps, wd, max_norm};
    ok = ok && put(f, hyper, sizeof hyper);
    for (int i = 0; i < np && ok; i++) {
        const md_tensor *t = md_paramset_get(ps, i);
        ok = put_u32(f, (uint32_t)t->ndim) && put(f, t->shape, sizeof(int64_t) * (size_t)t->ndim) &&
             put_u32(f, o.decay_mask[i]);
    }
    ok = ok && put(f, md_paramset_values(ps), sizeof(float) * (size_t)n);

    float *g = md_paramset_grads(ps);
    for (int s = 0; s < NSTEPS && ok; s++) {
        /* Growing gradient scale: early steps pass under max_norm, later ones
         * are clipped. lr varies, including 0. */
        const float lr = s == 5 ? 0.0f : 1e-3f * (float)(1 + (s * 7) % 5) * (s % 3 ? 1.0f : 10.0f);
        md_paramset_zero_grad(ps);
        md_paramset_finish_grads(ps);
        md_fill_normal(g, n, 4242 + (uint64_t)s, 0, 0.0f, 0.005f * (float)(1 + s * s));
        g[7] = 0.0f;
        ok = put(f, &lr, 4);
        const long norm_at = ftell(f);
        float norm = 0.0f;
        ok = ok && put(f, &norm, 4) && put(f, g, sizeof(float) * (size_t)n);
        norm = md_clip_grad_norm(ps, max_norm);
        ok = ok && put(f, g, sizeof(float) * (size_t)n);
        /* Patch the norm in front of the grads it came from. */
        ok = ok && fseek(f, norm_at, SEEK_SET) == 0 && put(f, &norm, 4) && fseek(f, 0, SEEK_END) == 0;
        md_adamw_step(&o, lr);
        printf("step %2d: lr %.4g, grad norm %.6g%s\n", s + 1, (double)lr, (double)norm,
               norm > max_norm ? " (clipped)" : "");
    }
    ok = ok && put(f, md_paramset_values(ps), sizeof(float) * (size_t)n) &&
         put(f, o.m, sizeof(float) * (size_t)n) && put(f, o.v, sizeof(float) * (size_t)n);
    ok = (fclose(f) == 0) && ok;
    md_adamw_free(&o);
    md_paramset_free(ps);
    if (!ok) {
        fprintf(stderr, "%s: write failed\n", argv[1]);
        return 1;
    }
    printf("wrote %s: %d params, %lld values, %d steps\n", argv[1], np, (long long)n, NSTEPS);
    return 0;
}
