/* checkpoint.c — training checkpoints on top of safetensors. */
#include "checkpoint.h"

#include "json.h"
#include "safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tensor kinds, in file-name prefix order. */
enum { CK_PARAM, CK_ADAM_M, CK_ADAM_V, CK_EMA, CK_NKINDS };
static const char *const ck_prefix[CK_NKINDS] = {"param/", "adam_m/", "adam_v/", "ema/"};

/* Longest "<prefix><param name>" accepted; longer names are refused on save
 * rather than truncated (truncation could make two names collide). */
#define CK_NAME_MAX 1024

static bool ck_name(char *buf, int kind, const char *pname)
{
    int k = snprintf(buf, CK_NAME_MAX, "%s%s", ck_prefix[kind], pname);
    return k > 0 && k < CK_NAME_MAX;
}

/* Strict decimal: 1 to 20 digits, nothing else, no overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return false;
    uint64_t v = 0;
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9')
            return false;
        unsigned d = (unsigned)(*c - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Reads metadata key as a decimal no larger than max; logs why not. */
static md_status meta_u64(const md_st_file *f, const char *path, const char *key, uint64_t max,
                          uint64_t *out)
{
    const char *s = md_st_meta(f, key);
    if (!s) {
        md_log(MD_LOG_ERROR, "checkpoint '%s': metadata key '%s' is missing", path, key);
        return MD_ERR_FORMAT;
    }
    if (!parse_u64(s, out) || *out > max) {
        md_log(MD_LOG_ERROR,
               "checkpoint '%s': metadata key '%s' is \"%.40s\", expected a non-negative decimal "
               "integer (digits only%s)",
               path, key, s, max == UINT64_MAX ? ", below 2^64" : ", below 2^63");
        return MD_ERR_FORMAT;
    }
    return MD_OK;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t k = 0;
    buf[0] = '\0';
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

md_status md_checkpoint_save(const char *path, md_paramset *ps, const md_adamw *opt,
                             const md_ema *ema, const md_rng *rng, int64_t step,
                             const char *meta_json)
{
    MD_ASSERT(path && ps);
    MD_ASSERT(!opt || opt->ps == ps);
    MD_ASSERT(!ema || ema->ps == ps);
    if (step < 0) {
        md_log(MD_LOG_ERROR, "checkpoint '%s': step %lld is negative", path, (long long)step);
        return MD_ERR_INVALID;
    }
    if (meta_json) {
        md_json_doc *doc = NULL;
        if (md_json_parse(meta_json, strlen(meta_json), "checkpoint metadata", &doc) != MD_OK) {
            md_log(MD_LOG_ERROR, "checkpoint '%s': user metadata is not valid JSON; nothing saved", path);
            return MD_ERR_INVALID;
        }
        md_json_free(doc);
    }
    md_st_writer *w = md_st_writer_new();
    if (!w) {
        md_log(MD_LOG_ERROR, "checkpoint '%s': out of memory", path);
        return MD_ERR_ALLOC;
    }
    md_status st = MD_OK;
    char name[CK_NAME_MAX];
    const int np = md_paramset_count(ps);
    const float *base = md_paramset_values(ps);
    for (int i = 0; i < np && st == MD_OK; i++) {
        const md_tensor *t = md_paramset_get(ps, i);
        const int64_t off = t->data - base; /* same offset in m, v, shadow */
        if (!t->name || !*t->name) {
            md_log(MD_LOG_ERROR, "parameter %d has no name", i);
            st = MD_ERR_INVALID;
            break;
        }
        const float *src[CK_NKINDS] = {
            t->data,
            opt ? opt->m + off : NULL,
            opt ? opt->v + off : NULL,
            ema ? ema->shadow + off : NULL,
        };
        for (int k = 0; k < CK_NKINDS && st == MD_OK; k++) {
            if (!src[k])
                continue;
            if (!ck_name(name, k, t->name)) {
                md_log(MD_LOG_ERROR, "parameter name '%.60s...' is too long", t->name);
                st = MD_ERR_INVALID;
            } else {
                st = md_st_writer_add_f32(w, name, MD_F32, t->ndim, t->shape, src[k]);
            }
        }
    }

    char num[32];
    if (st == MD_OK)
        st = md_st_writer_meta(w, "format", MD_CHECKPOINT_FORMAT);
    if (st == MD_OK) {
        snprintf(num, sizeof num, "%d", MD_CHECKPOINT_VERSION);
        st = md_st_writer_meta(w, "format_version", num);
    }
    if (st == MD_OK) {
        snprintf(num, sizeof num, "%" PRId64, step);
        st = md_st_writer_meta(w, "step", num);
    }
    if (st == MD_OK && opt) {
        snprintf(num, sizeof num, "%" PRId64, opt->step);
        st = md_st_writer_meta(w, "adam_step", num);
    }
    if (st == MD_OK && ema) {
        snprintf(num, sizeof num, "%" PRId64, ema->n);
        st = md_st_writer_meta(w, "ema_n", num);
    }
    if (st == MD_OK && rng) {
        snprintf(num, sizeof num, "%" PRIu64, rng->key);
        st = md_st_writer_meta(w, "rng_key", num);
        if (st == MD_OK) {
            snprintf(num, sizeof num, "%" PRIu64, rng->counter);
            st = md_st_writer_meta(w, "rng_counter", num);
        }
    }
    if (st == MD_OK && meta_json)
        st = md_st_writer_meta(w, "user_meta", meta_json);
    if (st == MD_OK)
        st = md_st_writer_save(w, path);
    if (st != MD_OK) {
        char why[700];
        snprintf(why, sizeof why, "%s", md_last_error());
        md_log(MD_LOG_ERROR, "checkpoint '%s' not saved (%s): %s", path, md_status_str(st), why);
    }
    md_st_writer_free(w);
    return st;
}

/* The tensor `name` if present as F32 with t's shape; else logs and NULL. */
static const md_st_info *find_checked(const md_st_file *f, const char *path, const char *name,
                                      const md_tensor *t, md_status *st)
{
    const md_st_info *in = md_st_find(f, name);
    if (!in) {
        md_log(MD_LOG_ERROR, "checkpoint '%s': tensor '%s' is missing", path, name);
        *st = MD_ERR_FORMAT;
        return NULL;
    }
    bool same = in->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++)
        same = in->shape[d] == t->shape[d];
    if (!same) {
        char a[96], b[96];
        shape_str(a, sizeof a, in->ndim, in->shape);
        shape_str(b, sizeof b, t->ndim, t->shape);
        md_log(MD_LOG_ERROR, "checkpoint '%s': tensor '%s' has shape %s, the model expects %s",
               path, name, a, b);
        *st = MD_ERR_FORMAT;
        return NULL;
    }
    if (in->dtype != MD_F32) {
        md_log(MD_LOG_ERROR, "checkpoint '%s': tensor '%s' is %s, expected F32", path, name,
               md_dtype_name(in->dtype));
        *st = MD_ERR_FORMAT;
        return NULL;
    }
    if (in->nbytes != sizeof(float) * (size_t)md_numel(t) || (!in->data && in->nbytes)) {
        md_log(MD_LOG_ERROR, "checkpoint '%s': tensor '%s' holds %zu bytes, expected %zu", path,
               name, in->nbytes, sizeof(float) * (size_t)md_numel(t));
        *st = MD_ERR_FORMAT;
        return NULL;
    }
    return in;
}

md_status md_checkpoint_load(const char *path, md_paramset *ps, md_adamw *opt, md_ema *ema,
                             md_rng *rng, int64_t *step)
{
    MD_ASSERT(path && ps);
    MD_ASSERT(!opt || opt->ps == ps);
    MD_ASSERT(!ema || ema->ps == ps);
    md_st_file *f = NULL;
    md_status st = md_st_open(path, &f);
    if (st != MD_OK) {
        char why[900];
        snprintf(why, sizeof why, "%s", md_last_error());
        md_log(MD_LOG_ERROR, "checkpoint not loaded: %s", why);
        return st;
    }
    const int np = md_paramset_count(ps);
    const md_st_info **info = NULL;
    uint64_t u_step = 0, u_adam = 0, u_ema = 0, u_key = 0, u_ctr = 0, u_ver = 0;

    /* Phase 1: validate everything; nothing is written. */
    const char *fmt = md_st_meta(f, "format");
    if (!fmt || strcmp(fmt, MD_CHECKPOINT_FORMAT) != 0) {
        md_log(MD_LOG_ERROR,
               "checkpoint '%s': not a Medley training checkpoint (metadata 'format' is %s%.40s%s)",
               path, fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "");
        st = MD_ERR_FORMAT;
        goto done;
    }
    if ((st = meta_u64(f, path, "format_version", INT32_MAX, &u_ver)) != MD_OK)
        goto done;
    if (u_ver == 0 || u_ver > MD_CHECKPOINT_VERSION) {
        md_log(MD_LOG_ERROR,
               "checkpoint '%s': format version %" PRIu64 " is not readable by this build "
               "(it reads version %d); update Medley",
               path, u_ver, MD_CHECKPOINT_VERSION);
        st = MD_ERR_UNSUPPORTED;
        goto done;
    }
    if (step && (st = meta_u64(f, path, "step", INT64_MAX, &u_step)) != MD_OK)
        goto done;
    if (opt && !md_st_meta(f, "adam_step")) {
        md_log(MD_LOG_ERROR, "checkpoint '%s' holds no optimizer state; load it without one", path);
        st = MD_ERR_FORMAT;
        goto done;
    }
    if (opt && (st = meta_u64(f, path, "adam_step", INT64_MAX, &u_adam)) != MD_OK)
        goto done;
    if (ema && !md_st_meta(f, "ema_n")) {
        md_log(MD_LOG_ERROR, "checkpoint '%s' holds no EMA weights; load it without an EMA", path);
        st = MD_ERR_FORMAT;
        goto done;
    }
    if (ema && (st = meta_u64(f, path, "ema_n", INT64_MAX, &u_ema)) != MD_OK)
        goto done;
    if (rng && ((st = meta_u64(f, path, "rng_key", UINT64_MAX, &u_key)) != MD_OK ||
                (st = meta_u64(f, path, "rng_counter", UINT64_MAX, &u_ctr)) != MD_OK))
        goto done;

    info = calloc((size_t)np * CK_NKINDS + 1, sizeof *info);
    if (!info) {
        md_log(MD_LOG_ERROR, "checkpoint '%s': out of memory", path);
        st = MD_ERR_ALLOC;
        goto done;
    }
    const bool want[CK_NKINDS] = {true, opt != NULL, opt != NULL, ema != NULL};
    char name[CK_NAME_MAX];
    for (int i = 0; i < np; i++) {
        const md_tensor *t = md_paramset_get(ps, i);
        for (int k = 0; k < CK_NKINDS; k++) {
            if (!want[k])
                continue;
            if (!ck_name(name, k, t->name ? t->name : "")) {
                md_log(MD_LOG_ERROR, "checkpoint '%s': parameter name '%.60s...' is too long", path,
                       t->name);
                st = MD_ERR_INVALID;
                goto done;
            }
            info[(size_t)i * CK_NKINDS + (size_t)k] = find_checked(f, path, name, t, &st);
            if (st != MD_OK)
                goto done;
        }
    }
    /* A tensor of a restored kind that names no parameter means the file is
     * from a different model: refuse rather than silently drop state. */
    for (int j = 0; j < md_st_count(f); j++) {
        const char *tn = md_st_get(f, j)->name;
        for (int k = 0; k < CK_NKINDS; k++) {
            size_t pl = strlen(ck_prefix[k]);
            if (want[k] && strncmp(tn, ck_prefix[k], pl) == 0 && !md_paramset_find(ps, tn + pl)) {
                md_log(MD_LOG_ERROR, "checkpoint '%s': tensor '%s' is not a parameter of this model",
                       path, tn);
                st = MD_ERR_FORMAT;
                goto done;
            }
        }
    }

    /* Phase 2: commit. */
    {
        const float *base = md_paramset_values(ps);
        for (int i = 0; i < np; i++) {
            md_tensor *t = md_paramset_get(ps, i);
            const int64_t off = t->data - base;
            float *dst[CK_NKINDS] = {
                t->data,
                opt ? opt->m + off : NULL,
                opt ? opt->v + off : NULL,
                ema ? ema->shadow + off : NULL,
            };
            for (int k = 0; k < CK_NKINDS; k++) {
                const md_st_info *in = info[(size_t)i * CK_NKINDS + (size_t)k];
                if (want[k] && in->nbytes)
                    memcpy(dst[k], in->data, in->nbytes);
            }
        }
        if (step)
            *step = (int64_t)u_step;
        if (opt)
            opt->step = (int64_t)u_adam;
        if (ema)
            ema->n = (int64_t)u_ema;
        if (rng) {
            rng->key = u_key;
            rng->counter = u_ctr;
        }
    }

done:
    free(info);
    md_st_close(f);
    return st;
}
