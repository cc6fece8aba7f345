/* test_probe.c — the candidate readers (core/probe.h): the score's
 * arithmetic, a file round trip, and refusals. */
#include "check.h"
#include "probe.h"
#include "safetensors.h"
#include <math.h>
#include <string.h>
#include <unistd.h>

static void unit(float *v, int axis)
{
    memset(v, 0, sizeof(float) * MD_SPACE_DIM);
    v[axis] = 1.f;
}

int main(void)
{
    md_probe p;
    CHECK(md_probe_init(&p) == MD_OK, "readers initialise");
    /* digit head (classes 0..9): the ask side reads digit d from axis d, the show side too */
    for (int d = 0; d < 10; d++) {
        p.ask_w->data[d * MD_SPACE_DIM + d] = 20.f;
        p.show_w->data[d * MD_SPACE_DIM + d] = 20.f;
    }
    float cond[MD_SPACE_DIM], right[MD_SPACE_DIM], wrong[MD_SPACE_DIM], pr[MD_PROBE_CLASSES];
    unit(cond, 7);
    unit(right, 7);
    unit(wrong, 2);
    md_probe_read(&p, 1, cond, pr);
    double sum = 0;
    for (int c = 0; c < 10; c++)
        sum += pr[c];
    CHECK(fabs(sum - 1.0) < 1e-5 && pr[7] > 0.99f, "a head's distribution sums to one (%.6f) and reads 7 (%.4f)", sum,
          (double)pr[7]);
    const float sr = md_probe_score(&p, cond, right), sw = md_probe_score(&p, cond, wrong);
    CHECK(sr > sw + 10.f, "a picture showing the asked digit scores above one that does not (%.2f > %.2f)",
          (double)sr, (double)sw);
    /* a condition that asks nothing (zero vector: every head uniform) scores every picture alike */
    float none[MD_SPACE_DIM] = {0};
    const float a = md_probe_score(&p, none, right), b = md_probe_score(&p, none, wrong);
    CHECK(fabs(a - b) < 1e-4f, "an unstated attribute adds the same to every picture (%.5f, %.5f)", (double)a,
          (double)b);
    const char *path = "/tmp/medley-test-probe.safetensors";
    p.cos_weight = 0.5f;
    snprintf(p.space_id, sizeof p.space_id, "0123456789abcdef");
    CHECK(md_probe_save(&p, path, NULL, NULL) == MD_OK, "saves");
    md_probe q;
    CHECK(md_probe_load(&q, path) == MD_OK && q.cos_weight == 0.5f && strcmp(q.space_id, "0123456789abcdef") == 0,
          "loads back with its cosine weight and the space it reads");
    CHECK(fabsf(md_probe_score(&q, cond, right) - sr) < 0.05f && fabsf(md_probe_score(&q, cond, wrong) - sw) < 0.5f,
          "and scores as before within f16 rounding");
    md_probe_free(&q);
    md_log_set_callback(check_quiet_log, NULL);
    /* another kind of model file is refused, naming it */
    md_st_writer *w = md_st_writer_new();
    const float z[1] = {0};
    md_st_writer_add_f32(w, "x", MD_F32, 1, (int64_t[]){1}, z);
    md_st_writer_meta(w, "medley.model", "vqgan");
    md_st_writer_meta(w, "medley.version", "1");
    md_st_writer_save(w, path);
    md_st_writer_free(w);
    md_status st = md_probe_load(&q, path);
    CHECK(st != MD_OK && strstr(md_last_error(), path), "another model's file is refused, naming it (%s)",
          md_last_error());
    unlink(path);
    CHECK(md_probe_load(&q, path) != MD_OK, "a missing file is an error");
    md_probe_train_opts o;
    md_probe_train_default_opts(&o);
    o.iters = 0;
    CHECK(md_probe_train(&q, NULL, NULL, NULL, &o, NULL) == MD_ERR_INVALID, "zero fitting steps are refused");
    md_log_set_callback(NULL, NULL);
    md_probe_free(&p);
    return check_done();
}
