/* bench_generate.c — how fast the bundled generators make an image, a
 * caption, a 16-frame video and (when the audio decoder is bundled) 1 s of
 * audio on this machine, and the peak memory of the process that does it
 * (models, caches and all).
 *
 * The baseline in the same run: sampling an image without the KV cache
 * (every step re-reads the whole sequence through the training graph), the
 * way a sampler without incremental decoding works. The ratio is what the
 * cache buys.
 *
 *   build/tests/bench_generate [--runs N] [--models DIR] [--only image|caption|video]
 */
#include "rng.h"
#include "audio_gen.h"
#include "image_diffusion_gen.h"
#include "video_diffusion_gen.h"
#include "tokens_gen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n);

/* A first run, then the median of `runs` more: *med, *first in seconds. */
static int time_runs(md_generator *gen, const md_gen_condition *c, const double *p, int runs, double *med,
                     double *first)
{
    double t[100];
    for (int r = 0; r <= runs && r <= 100; r++) {
        md_gen_output o;
        double t0 = md_time_now();
        md_status st = gen->run(gen->self, c, p, (uint64_t)(r + 1), NULL, NULL, NULL, &o);
        double dt = md_time_now() - t0;
        if (st != MD_OK) {
            fprintf(stderr, "bench_generate: %s\n", md_last_error());
            return 1;
        }
        md_gen_output_free(&o);
        if (r == 0)
            *first = dt;
        else
            t[r - 1] = dt;
    }
    *med = median(t, runs);
    return 0;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* One image's codes sampled with the full graph at every step (no cache),
 * guided like the generator's default; greedy so the two paths can be
 * compared token for token. */
static double naive_image(const md_tokmodel *m, const float *cond, int32_t *codes, float guidance)
{
    md_graph *g = md_graph_new((size_t)1 << 27);
    md_graph_set_grad(g, false);
    int32_t ids[2][MD_VQ_TOKENS + 1], slots[2][MD_VQ_TOKENS + 1];
    float conds[2 * MD_SPACE_DIM];
    memcpy(conds, cond, sizeof(float) * MD_SPACE_DIM);
    memset(conds + MD_SPACE_DIM, 0, sizeof(float) * MD_SPACE_DIM);
    double t0 = md_time_now();
    for (int r = 0; r < 2; r++) {
        ids[r][0] = md_tok_boi(m);
        slots[r][0] = MD_VQ_TOKENS;
    }
    for (int i = 0; i < MD_VQ_TOKENS; i++) {
        int T = i + 1;
        int32_t flat_ids[2 * (MD_VQ_TOKENS + 1)], flat_slots[2 * (MD_VQ_TOKENS + 1)];
        for (int r = 0; r < 2; r++) {
            memcpy(flat_ids + r * T, ids[r], sizeof(int32_t) * (size_t)T);
            memcpy(flat_slots + r * T, slots[r], sizeof(int32_t) * (size_t)T);
        }
        md_graph_reset(g);
        md_tensor *ct = md_tensor_wrap(g, MD_F32, conds, 2, (int64_t[]){2, MD_SPACE_DIM});
        md_tensor *it = md_tensor_wrap(g, MD_I32, flat_ids, 2, (int64_t[]){2, T});
        md_tensor *st = md_tensor_wrap(g, MD_I32, flat_slots, 2, (int64_t[]){2, T});
        md_tensor *lg = md_tok_forward(g, m, ct, it, st);
        const int64_t V = m->vocab, row = MD_TOK_PREFIX + T - 1;
        const float *lc = lg->data + (size_t)row * (size_t)V, *lu = lg->data + (size_t)(MD_TOK_PREFIX + T + row) * (size_t)V;
        int best = 0;
        float bv = -INFINITY;
        for (int c = 0; c < MD_VQ_CODES; c++) {
            int32_t id = md_tok_code(m, c);
            float l = lu[id] + guidance * (lc[id] - lu[id]);
            if (l > bv) {
                bv = l;
                best = c;
            }
        }
        codes[i] = best;
        for (int r = 0; r < 2; r++) {
            ids[r][T] = md_tok_code(m, best);
            slots[r][T] = i;
        }
    }
    double secs = md_time_now() - t0;
    md_graph_free(g);
    return secs;
}

static void quiet_progress(const char *stage, int64_t step, int64_t steps, double fraction, const md_image *preview,
                           void *user)
{
    (void)stage; (void)step; (void)steps; (void)fraction; (void)preview; (void)user;
}

int main(int argc, char **argv)
{
    md_threads_init();
    int runs = 5, repeat = 0;
    const char *only = NULL;   /* --only image|caption|video: that job's defaults alone (for profiling) */
    const char *models = getenv("MEDLEY_MODELS_DIR");
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--runs") == 0)
            runs = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--models") == 0)
            models = argv[i + 1];
        else if (strcmp(argv[i], "--repeat") == 0)
            repeat = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--only") == 0)
            only = argv[i + 1];
    }
    if (runs < 1 || runs > 100)
        runs = 5;
    if (!models || !*models)
        models = "assets/models";
    char p1[4096], p2[4096], p3[4096];
    snprintf(p1, sizeof p1, "%s/space.safetensors", models);
    snprintf(p2, sizeof p2, "%s/vqgan.safetensors", models);
    snprintf(p3, sizeof p3, "%s/tokens.safetensors", models);
    md_space sp;
    md_vqgan vq;
    md_tokmodel tm;
    if (md_space_load(&sp, p1) != MD_OK || md_vqgan_load(&vq, p2) != MD_OK || md_tok_load(&tm, p3) != MD_OK) {
        fprintf(stderr, "bench_generate: %s\n", md_last_error());
        return 1;
    }
    char pm[4096];
    snprintf(pm, sizeof pm, "%s/motion.safetensors", models);
    md_motion mo;
    const bool have_mo = md_motion_load(&mo, pm) == MD_OK;   /* optional, as in medley's bundle */
    double peak_models = peak_mb();
    printf("token generators: d %lld, %lld layers, %lld heads, vocabulary %lld; %d threads; median of %d runs\n",
           (long long)tm.d, (long long)tm.layers, (long long)tm.heads, (long long)tm.vocab, md_threads_get(), runs);
    /* one workspace lent to every generator, as medley's jobs do */
    md_gen_workspace *ws = md_gen_workspace_new();
    md_generator *gen[3] = {md_gen_tokens_new(MD_MOD_IMAGE, &tm, &vq, &sp, NULL, "bench", ws),
                            md_gen_tokens_new(MD_MOD_TEXT, &tm, &vq, &sp, NULL, "bench", ws),
                            md_gen_tokens_new(MD_MOD_VIDEO, &tm, &vq, &sp, have_mo ? &mo : NULL, "bench", ws)};
    if (!ws || !gen[0] || !gen[1] || !gen[2]) {
        fprintf(stderr, "bench_generate: %s\n", md_last_error());
        return 1;
    }
    md_graph *g = md_graph_new((size_t)1 << 24);
    const char *prompt = "a red seven moving left";
    md_gen_condition c = {{0}, prompt, 1.f};   /* a typed request, as `medley generate --in text:...` makes */
    md_space_embed(&sp, g, MD_MOD_TEXT, &prompt, 1, c.vec);
    if (repeat > 0) {   /* the same default video again and again, with previews, as a job makes it */
        double p[MD_GEN_MAX_PARAMS];
        md_gen_params_default(gen[2], p);
        md_gen_output o0, o;
        int differ = 0;
        for (int r = 0; r < repeat; r++) {
            md_gen_output *oo = r ? &o : &o0;
            if (gen[2]->run(gen[2]->self, &c, p, 5, quiet_progress, NULL, NULL, oo) != MD_OK)
                return 1;
            if (r) {
                differ += memcmp(o0.video.pixels, o.video.pixels,
                                 sizeof(float) * (size_t)o.video.frames * o.video.width * o.video.height * 3) != 0;
                md_gen_output_free(&o);
            }
        }
        printf("the same video %d times: %d differ from the first\n", repeat, differ);
        md_gen_output_free(&o0);
        return differ != 0;
    }
    static const char *const names[3] = {"image", "caption", "video (16 frames)"};   /* default parameters */
    static const double goal[3] = {0.5, 0.2, 3.0};
    double med[3];
    for (int k = 0; k < 3; k++) {
        double p[MD_GEN_MAX_PARAMS], first = 0;
        if (only && strncmp(names[k], only, strlen(only)) != 0)
            continue;
        md_gen_params_default(gen[k], p);
        if (time_runs(gen[k], &c, p, runs, &med[k], &first) != 0)
            return 1;
        printf("  %-18s %7.3f s  (goal <= %.1f s: %s; first run %.3f s; peak memory so far %.0f MB)\n", names[k],
               med[k], goal[k], med[k] <= goal[k] ? "met" : "NOT met", first, peak_mb());
    }
    if (only)
        return 0;
    if (have_mo) {   /* a video's frames 1-15 by the token transformer instead, in the same run */
        double p[MD_GEN_MAX_PARAMS], m, first;
        md_gen_params_default(gen[2], p);
        p[md_gen_param_index(gen[2], "motion")] = 0;
        if (time_runs(gen[2], &c, p, runs < 3 ? runs : 3, &m, &first) != 0)
            return 1;
        printf("  %-18s %7.3f s  with frames 1-15 by the token transformer (motion 0; %.2fx the default's time)\n",
               names[2], m, m / med[2]);
    }
    /* pictures and videos with one setting away from the default, against
     * the default's time: from the condition alone (no caption before the
     * codes), chosen by the space alone, from the whole distribution */
    static const struct {
        const char *param;
        double value;
        const char *what;
    } away[] = {
        {"via_caption", 0, "from the condition alone, not after the typed text"},
        {"caption_check", 0, "chosen by the space alone, no caption re-check"},
        {"top_p", 1, "from the whole distribution, not the nucleus"},
    };
    for (size_t a = 0; a < sizeof away / sizeof away[0]; a++)
        for (int k = 0; k < 3; k += 2) {
            double p[MD_GEN_MAX_PARAMS], m, first;
            md_gen_params_default(gen[k], p);
            p[md_gen_param_index(gen[k], away[a].param)] = away[a].value;
            if (time_runs(gen[k], &c, p, runs < 3 ? runs : 3, &m, &first) != 0)
                return 1;
            printf("  %-18s %7.3f s  %s (%s %g; %.2fx the default's time)\n", names[k], m, away[a].what,
                   away[a].param, away[a].value, m / med[k]);
        }
    /* candidates: n pictures side by side, the space keeping one; the
     * baseline is one candidate, in the same run */
    static const int cands[] = {1, 4, 8, 15, 24, 30};
    for (int k = 0; k < 3; k += 2) {
        int ci = md_gen_param_index(gen[k], "candidates");
        double one = 0;
        for (size_t q = 0; ci >= 0 && q < sizeof cands / sizeof cands[0]; q++) {
            double p[MD_GEN_MAX_PARAMS], m, first;
            md_gen_params_default(gen[k], p);
            p[ci] = cands[q];
            if (time_runs(gen[k], &c, p, runs < 3 ? runs : 3, &m, &first) != 0)
                return 1;
            if (cands[q] == 1)
                one = m;
            printf("  %-18s %7.3f s  with %2d candidate%s (%.2fx the time of one; peak memory so far %.0f MB)\n",
                   names[k], m, cands[q], cands[q] == 1 ? " " : "s", m / one, peak_mb());
        }
    }
    /* the audio decoder: default, then steps and candidates against the
     * default's time in the same run */
    char p4[4096];
    snprintf(p4, sizeof p4, "%s/audiogen.safetensors", models);
    md_unet ag;
    bool have_ag = md_unet_load(&ag, p4, MD_AUDIOGEN_MODEL, "audio decoder", "medley train audio") == MD_OK;
    snprintf(p4, sizeof p4, "%s/vocoder.safetensors", models);
    md_vocoder voc;
    bool have_voc = have_ag && md_vocoder_load(&voc, p4) == MD_OK;
    md_generator *agen = have_ag ? md_gen_audio_new(&ag, have_voc ? &voc : NULL, &sp, "bench", ws) : NULL;
    if (agen) {
        const char *say = "a voice saying seven";
        md_gen_condition ca = {{0}, NULL, 0.f};
        md_space_embed(&sp, g, MD_MOD_TEXT, &say, 1, ca.vec);
        double p[MD_GEN_MAX_PARAMS], base, first;
        md_gen_params_default(agen, p);
        if (time_runs(agen, &ca, p, runs, &base, &first) != 0)
            return 1;
        printf("  %-18s %7.3f s  (goal <= 1.0 s: %s; %d steps, %d candidate(s); first run %.3f s; peak memory so far "
               "%.0f MB)\n", "audio (1 s)", base, base <= 1.0 ? "met" : "NOT met",
               (int)p[md_gen_param_index(agen, "steps")], (int)p[md_gen_param_index(agen, "candidates")], first,
               peak_mb());
        const int vi = md_gen_param_index(agen, "vocoder");
        for (int q = 0; have_voc && q < 2; q++) {   /* each vocoder against the default */
            double pq[MD_GEN_MAX_PARAMS], m;
            md_gen_params_default(agen, pq);
            pq[vi] = q;
            if (time_runs(agen, &ca, pq, runs < 3 ? runs : 3, &m, &first) != 0)
                return 1;
            printf("  %-18s %7.3f s  with the %s vocoder (%.2fx the default's time)\n", "audio (1 s)", m,
                   q ? "neural" : "Griffin-Lim", m / base);
        }
        static const int steps[] = {10, 50};
        for (size_t q = 0; q < 2; q++) {
            double pq[MD_GEN_MAX_PARAMS], m;
            md_gen_params_default(agen, pq);
            pq[md_gen_param_index(agen, "steps")] = steps[q];
            if (time_runs(agen, &ca, pq, runs < 3 ? runs : 3, &m, &first) != 0)
                return 1;
            printf("  %-18s %7.3f s  with %d steps (%.2fx the default's time)\n", "audio (1 s)", m, steps[q], m / base);
        }
        static const int ac[] = {2, 4, 8};
        for (size_t q = 0; q < 3; q++) {
            double pq[MD_GEN_MAX_PARAMS], m;
            md_gen_params_default(agen, pq);
            pq[md_gen_param_index(agen, "candidates")] = ac[q];
            if (time_runs(agen, &ca, pq, runs < 3 ? runs : 3, &m, &first) != 0)
                return 1;
            printf("  %-18s %7.3f s  with %d candidates (%.2fx the default's time; peak memory so far %.0f MB)\n",
                   "audio (1 s)", m, ac[q], m / base, peak_mb());
        }
    } else {
        printf("  audio: no audio decoder in %s (%s)\n", models, have_ag ? md_last_error() : "not loaded");
    }
    /* pictures by latent diffusion, against the token path's image time above */
    char p5[4096];
    snprintf(p5, sizeof p5, "%s/imagegen.safetensors", models);
    md_unet ig;
    bool have_ig = md_unet_load(&ig, p5, MD_IMAGEGEN_MODEL, "latent diffusion decoder", "medley train diffusion") == MD_OK;
    md_generator *igen = have_ig ? md_gen_image_diffusion_new(&ig, &vq, &sp, "bench", ws) : NULL;
    if (igen) {
        static const int ic[] = {0, 1, 8, 0};   /* 0: the default */
        const int ci = md_gen_param_index(igen, "candidates"), si = md_gen_param_index(igen, "steer");
        double dmed = 0.0;
        for (size_t q = 0; q < 4; q++) {
            double pq[MD_GEN_MAX_PARAMS], m, first;
            md_gen_params_default(igen, pq);
            if (ic[q])
                pq[ci] = ic[q];
            if (q == 3)   /* the default without space guidance */
                pq[si] = 0.0;
            if (time_runs(igen, &c, pq, q == 0 || q == 3 ? runs : (runs < 3 ? runs : 3), &m, &first) != 0)
                return 1;
            if (q == 0)
                dmed = m;
            printf("  %-18s %7.3f s  by diffusion, %d steps, %d candidate(s), steer %g (goal <= 1.0 s: %s; %.2fx the "
                   "token path's default, %.2fx diffusion's default; peak memory so far %.0f MB)\n", "image", m,
                   (int)pq[md_gen_param_index(igen, "steps")], (int)pq[ci], pq[si], m <= 1.0 ? "met" : "NOT met",
                   m / med[0], m / dmed, peak_mb());
        }
        /* a video whose frame 0 is drawn so and moved by the motion model */
        md_generator *vgen = have_mo ? md_gen_video_diffusion_new(&ig, &vq, &sp, &mo, "bench", ws) : NULL;
        if (vgen) {
            double pq[MD_GEN_MAX_PARAMS], m, first;
            md_gen_params_default(vgen, pq);
            if (time_runs(vgen, &c, pq, runs, &m, &first) != 0)
                return 1;
            printf("  %-18s %7.3f s  by diffusion (frame 0: %d steps, %d candidate(s); then the motion model; goal "
                   "<= 3.0 s: %s; %.2fx the token path's default; peak memory so far %.0f MB)\n", "video (16 frames)", m,
                   (int)pq[md_gen_param_index(vgen, "steps")], (int)pq[md_gen_param_index(vgen, "candidates")],
                   m <= 3.0 ? "met" : "NOT met", m / med[2], peak_mb());
            md_generator_free(vgen);
        }
    } else {
        printf("  image by diffusion: no latent diffusion decoder in %s\n", models);
    }
    /* videos by the video model: all 16 frames by diffusion, temporal attention */
    snprintf(p5, sizeof p5, "%s/videogen.safetensors", models);
    md_unet vgm;
    bool have_vg = access(p5, F_OK) == 0 &&
                   md_unet_load(&vgm, p5, MD_VIDEOGEN_MODEL, "video diffusion model", "medley train diffusion") == MD_OK;
    md_generator *tgen = have_vg ? md_gen_video_diffusion_temporal_new(&vgm, &sp, have_mo ? &mo : NULL, "bench", ws) : NULL;
    for (int q = 0; tgen && q < 2; q++) {   /* the defaults; then without space guidance */
        double pq[MD_GEN_MAX_PARAMS], m, first;
        md_gen_params_default(tgen, pq);
        if (q == 1)
            pq[md_gen_param_index(tgen, "steer")] = 0.0;
        if (time_runs(tgen, &c, pq, q == 0 ? runs : (runs < 3 ? runs : 3), &m, &first) != 0)
            return 1;
        printf("  %-18s %7.3f s  by the video model (16 frames: %d steps, %d candidate(s), steer %g; goal <= 3.0 s: "
               "%s; %.2fx the token path's default; peak memory so far %.0f MB)\n", "video (16 frames)", m,
               (int)pq[md_gen_param_index(tgen, "steps")], (int)pq[md_gen_param_index(tgen, "candidates")],
               pq[md_gen_param_index(tgen, "steer")], m <= 3.0 ? "met" : "NOT met", m / med[2], peak_mb());
    }
    if (tgen)
        md_generator_free(tgen);
    if (have_vg)
        md_unet_free(&vgm);
    double peak = peak_mb();
    printf("  peak memory        %7.0f MB  (goal <= 500 MB: %s; %.0f MB with the models loaded)\n", peak,
           peak <= 500 ? "met" : "NOT met", peak_models);
    /* baseline: no KV cache, greedy, guided; against the cached sampler made greedy */
    int32_t naive[MD_VQ_TOKENS], cached[MD_VQ_TOKENS];
    double tn = naive_image(&tm, c.vec, naive, 3.0f);
    md_tok_session *s = md_tok_session_new(&tm);
    md_tok_sample_opts greedy = {1.0f, 1, 1.0f, 3.0f, 0, 0, NULL, NULL, 0.f, 0, NULL, 0, 0.f};
    double t0 = md_time_now();
    md_tok_sample_image(s, c.vec, &greedy, 1, NULL, NULL, NULL, cached);
    double tc = md_time_now() - t0;
    int same = 0;
    for (int i = 0; i < MD_VQ_TOKENS; i++)
        same += naive[i] == cached[i];
    printf("  image codes, greedy: KV cache %.3f s vs full recompute %.3f s: %.1fx faster; %d of 256 codes agree\n",
           tc, tn, tn / tc, same);
    md_tok_session_free(s);
    if (agen)
        md_generator_free(agen);
    if (igen)
        md_generator_free(igen);
    if (have_ig)
        md_unet_free(&ig);
    if (have_ag)
        md_unet_free(&ag);
    if (have_voc)
        md_vocoder_free(&voc);
    md_graph_free(g);
    for (int k = 0; k < 3; k++)
        md_generator_free(gen[k]);
    md_gen_workspace_free(ws);
    if (have_mo)
        md_motion_free(&mo);
    md_tok_free(&tm);
    md_vqgan_free(&vq);
    md_space_free(&sp);
    return 0;
}
