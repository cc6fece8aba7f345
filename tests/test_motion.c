/* test_motion.c — the motion model (core/motion.h): a frame moved along a
 * path measures back as that path (whole and fractional pixels; the
 * uncovered edge takes the background); a frame's foreground features; a
 * seed draws the same path, temperature 0 the likeliest; save/load round
 * trip; a wrong file and a bad temperature are refused. With --train
 * (needs MEDLEY_DATA_DIR and the bundled space) a small model trains and
 * reads the motion of held-out videos from their embeddings far above what
 * frame 0 alone tells. With --shipped (also the bundled token transformer,
 * tokenizer, motion model and video judge) the video generator makes
 * videos from motion captions and the judge reads the asked motion. */
#include "check.h"
#include "judge.h"
#include "motion.h"
#include "rng.h"
#include "tokens_gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S MD_WORLD_SIZE
#define HW (S * S)

static const char *tmpdir(void)
{
    const char *t = getenv("MEDLEY_TEST_TMP");
    return t ? t : "/tmp";
}

/* A frame [3, 64, 64]: background (0.2, -0.4, 0.6), a 9 x 13 block of
 * ink (-0.9, 0.8, -0.1) whose top-left corner is (x0, y0). */
static void block_frame(float *f, int x0, int y0)
{
    static const float bg[3] = {0.2f, -0.4f, 0.6f}, ink[3] = {-0.9f, 0.8f, -0.1f};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < HW; i++) {
            int x = i % S, y = i / S;
            bool in = x >= x0 && x < x0 + 9 && y >= y0 && y < y0 + 13;
            f[c * HW + i] = in ? ink[c] : bg[c];
        }
}

static void test_frames(void)
{
    float *fr = malloc(sizeof(float) * 3 * HW * MD_WORLD_FRAMES);
    block_frame(fr, 20, 30);
    float bg[3], c[2];
    int box[4];
    md_motion_frame(fr, bg, box, c);
    CHECK(fabsf(bg[0] - 0.2f) < 1e-6f && fabsf(bg[1] + 0.4f) < 1e-6f && fabsf(bg[2] - 0.6f) < 1e-6f,
          "the background is the border's colour (%.2f %.2f %.2f)", (double)bg[0], (double)bg[1], (double)bg[2]);
    CHECK(fabsf(c[0] - 24.f) < 1e-4f && fabsf(c[1] - 36.f) < 1e-4f, "the foreground's centre (%.2f, %.2f)",
          (double)c[0], (double)c[1]);
    CHECK(box[0] == 20 && box[1] == 30 && box[2] == 28 && box[3] == 42, "and its box (%d %d %d %d)", box[0], box[1],
          box[2], box[3]);

    /* moved along a path that fits (whole pixels, then fractions), measured back */
    float path[MD_MOTION_PATH], back[MD_MOTION_PATH];
    for (int t = 0; t < MD_WORLD_FRAMES; t++) {
        path[2 * t] = -1.f * (float)t;
        path[2 * t + 1] = t < 8 ? -1.5f * (float)t : -1.5f * (float)(15 - t) - 0.25f;
    }
    path[0] = path[1] = 0.f;
    md_motion_apply(fr, path, fr);
    md_motion_measure(fr, MD_WORLD_FRAMES, back);
    float worst = 0.f;
    for (int i = 0; i < MD_MOTION_PATH; i++)
        worst = fmaxf(worst, fabsf(back[i] - path[i]));
    CHECK(worst < 0.35f, "a moved frame measures back as its path (worst %.3f px)", (double)worst);
    float *last = fr + (size_t)15 * 3 * HW;
    CHECK(fabsf(last[0] - 0.2f) < 1e-6f && fabsf(last[HW * 2 + 63 * S + 63] - 0.6f) < 1e-6f,
          "the uncovered corners take the background");
    bool kept = true;
    float f0[3 * HW];
    block_frame(f0, 20, 30);
    for (int i = 0; i < 3 * HW; i++)
        kept &= fr[i] == f0[i];
    CHECK(kept, "frame 0 is left as it is when the path keeps it in the picture");

    /* near the right edge, a path 30 px to the right: the clip shifts left */
    block_frame(fr, 50, 10);
    for (int t = 0; t < MD_WORLD_FRAMES; t++) {
        path[2 * t] = 2.f * (float)t;
        path[2 * t + 1] = 0.f;
    }
    md_motion_apply(fr, path, fr);
    md_motion_measure(fr, MD_WORLD_FRAMES, back);
    int b0[4], b15[4];
    md_motion_frame(fr, bg, b0, NULL);
    md_motion_frame(fr + (size_t)15 * 3 * HW, bg, b15, NULL);
    CHECK(b15[2] <= S - 2 && b15[2] - b15[0] == 8 && fabsf(back[30] - 30.f) < 0.35f && b0[0] == 50 - (50 + 8 + 30 - 62),
          "a path that would leave the picture shifts the clip (frame 0 at x %d, frame 15 ends at %d, travel %.2f)",
          b0[0], b15[2], (double)back[30]);

    /* a faint seam along the bottom edge (as a decoder leaves) is not the
     * subject: a block near the left edge sent 30 px left still shifts */
    block_frame(fr, 4, 20);
    for (int x = 0; x < S; x++)
        fr[(size_t)(S - 1) * S + x] += 0.5f;   /* red channel, last row: 0.5 of the block's 1.1 */
    md_motion_frame(fr, bg, b0, NULL);
    CHECK(b0[0] == 4 && b0[2] == 12 && b0[3] == 32, "the box leaves out a seam along the edge (%d %d %d %d)", b0[0],
          b0[1], b0[2], b0[3]);
    for (int t = 0; t < MD_WORLD_FRAMES; t++) {
        path[2 * t] = -2.f * (float)t;
        path[2 * t + 1] = 0.f;
    }
    md_motion_apply(fr, path, fr);
    md_motion_frame(fr + (size_t)15 * 3 * HW, bg, b15, NULL);
    CHECK(b15[0] >= 1 && b15[2] - b15[0] == 8, "and the block stays whole to the last frame (x %d..%d)", b15[0],
          b15[2]);

    /* a frame without foreground reads as the whole frame, centred */
    for (int i = 0; i < 3 * HW; i++)
        f0[i] = 0.3f;
    md_motion_frame(f0, bg, box, c);
    CHECK(fabsf(c[0] - 31.5f) < 1e-4f && box[0] == 0 && box[2] == S - 1, "a blank frame reads as centred");
    free(fr);
}

static void test_model(void)
{
    md_motion m, back;
    CHECK(md_motion_init(&m, 6, 32, 50, 4) == MD_OK, "a model of 6 paths initialises (%lld parameters)",
          (long long)md_paramset_numel(m.ps));
    for (int k = 0; k < m.k; k++)
        for (int t = 0; t < MD_WORLD_FRAMES; t++) {
            m.paths[k * MD_MOTION_PATH + 2 * t] = (float)(k - 3) * 0.5f * (float)t;
            m.paths[k * MD_MOTION_PATH + 2 * t + 1] = (float)(k % 2) * (float)t;
        }
    md_init_normal(m.w3, 9, 0.f, 1.f);   /* distinct logits that follow the inputs */
    float frame[3 * HW], cond[MD_SPACE_DIM], p1[MD_MOTION_PATH], p2[MD_MOTION_PATH];
    block_frame(frame, 10, 12);
    for (int i = 0; i < MD_SPACE_DIM; i++)
        cond[i] = md_rand_normal_at(77, (uint64_t)i) * 0.1f;
    md_graph *g = md_graph_new((size_t)1 << 20);
    int w1 = -1, w2 = -2, seen = 0;
    CHECK(md_motion_draw(&m, g, cond, NULL, 0, 1.f, 5, p1, &w1) == MD_OK &&
              md_motion_draw(&m, g, cond, NULL, 0, 1.f, 5, p2, &w2) == MD_OK && w1 == w2 &&
              memcmp(p1, p2, sizeof p1) == 0 && memcmp(p1, m.paths + w1 * MD_MOTION_PATH, sizeof p1) == 0,
          "a seed draws the same path (prototype %d)", w1);
    for (uint64_t sd = 0; sd < 64; sd++) {
        int w;
        md_motion_draw(&m, g, cond, NULL, 0, 5.f, sd, p2, &w);
        seen |= 1 << w;
    }
    CHECK(__builtin_popcount((unsigned)seen) >= 4, "at a high temperature, seeds draw several paths (%d of 6)",
          __builtin_popcount((unsigned)seen));
    float bag[50];
    md_motion_bag(&m, (const int32_t[]){3, 3, 7, 999, -1}, 5, bag);
    CHECK(fabsf(bag[3] - 2.f / 3.f) < 1e-6f && fabsf(bag[7] - 1.f / 3.f) < 1e-6f && bag[0] == 0.f,
          "a bag of tokens holds each known token's share (%.3f, %.3f)", (double)bag[3], (double)bag[7]);
    int changed = 0;
    for (int32_t tok = 0; tok < 50; tok++) {
        int wa = -1, wb2 = -1;
        md_motion_draw(&m, g, cond, NULL, 0, 0.f, 1, p2, &wa);
        md_motion_draw(&m, g, cond, &tok, 1, 0.f, 1, p2, &wb2);
        changed += wa != wb2;
    }
    CHECK(changed > 0, "the typed text's tokens move the choice (%d of 50 single tokens)", changed);
    int a0 = -1, a1 = -1;
    md_motion_draw(&m, g, cond, NULL, 0, 0.f, 1, p2, &a0);
    md_motion_draw(&m, g, cond, NULL, 0, 0.f, 2, p2, &a1);
    CHECK(a0 == a1, "temperature 0 draws the likeliest whatever the seed (%d)", a0);

    char path[512];
    snprintf(path, sizeof path, "%s/motion-test.safetensors", tmpdir());
    CHECK(md_motion_save(&m, path, NULL, NULL) == MD_OK && md_motion_load(&back, path) == MD_OK,
          "save, then load");
    bool same = back.k == m.k && back.hidden == m.hidden;
    for (int i = 0; same && i < m.k * MD_MOTION_PATH; i++)
        same = fabsf(back.paths[i] - m.paths[i]) <= 5e-4f;
    int wb = -1;
    if (same)
        md_motion_draw(&back, g, cond, NULL, 0, 0.f, 1, p2, &wb);
    CHECK(same && wb == a0, "the loaded model has the same paths and the same likeliest one");
    md_motion_free(&back);

    md_log_set_callback(check_quiet_log, NULL);
    CHECK(md_motion_draw(&m, g, cond, NULL, 0, -1.f, 1, p2, NULL) == MD_ERR_INVALID &&
              md_motion_draw(&m, g, cond, NULL, 0, NAN, 1, p2, NULL) == MD_ERR_INVALID,
          "a negative or NaN temperature is refused");
    md_motion bad;
    CHECK(md_motion_init(&bad, 1, 32, 50, 1) == MD_ERR_INVALID && md_motion_init(&bad, 8, 4, 50, 1) == MD_ERR_INVALID &&
              md_motion_init(&bad, 8, 32, 0, 1) == MD_ERR_INVALID,
          "one path, a width of 4 or no vocabulary is refused");
    char other[512];
    check_model_path(other, sizeof other, "vocoder.safetensors");
    md_status st = md_motion_load(&bad, other);
    CHECK(st != MD_OK && strstr(md_last_error(), "motion") != NULL, "another model's file is refused: %s",
          md_last_error());
    st = md_motion_load(&bad, "/nonexistent/motion.safetensors");
    CHECK(st != MD_OK && strstr(md_last_error(), "/nonexistent/motion.safetensors") != NULL,
          "a missing file is named: %s", md_last_error());
    md_log_set_callback(NULL, NULL);
    md_graph_free(g);
    md_motion_free(&m);
}

static void test_train(void)
{
    char p[512];
    md_world w;
    md_space sp;
    if (md_world_open(NULL, &w) != MD_OK ||
        md_space_load(&sp, check_model_path(p, sizeof p, "space.safetensors")) != MD_OK) {
        CHECK(false, "needs MEDLEY_DATA_DIR and the bundled space: %s", md_last_error());
        return;
    }
    md_motion_train_opts o;
    md_motion_train_default_opts(&o);
    o.corpus = 1500;
    o.steps = 1000;
    o.k = 16;
    o.hidden = 128;
    o.seed = 3;
    md_motion m;
    md_motion_figures f;
    md_status st = md_motion_train(&m, &sp, &w, &o, &f);
    CHECK(st == MD_OK, "a small motion model trains (1500 videos, 1000 steps)");
    if (st == MD_OK) {
        CHECK(f.fit < 0.5, "16 prototypes fit the train paths (%.3f px a frame)", f.fit);
        /* chance is 20% for five motions; frame 0's place alone tells some */
        CHECK(f.video_moves >= 0.7 && f.video_moves >= f.none_moves + 0.3,
              "from the video's embedding it reads the motion of %.1f%% of %d held-out videos (no condition: "
              "%.1f%%)", 100 * f.video_moves, f.n, 100 * f.none_moves);
        CHECK(f.caption_moves > f.none_moves, "captions that state the motion help (%.1f%% against %.1f%%)",
              100 * f.caption_moves, 100 * f.none_moves);
        md_motion_free(&m);
    }
    md_space_free(&sp);
    md_world_close(&w);
}

/* Videos from motion captions through the video generator; the judge
 * reads the motion. */
static void test_shipped(void)
{
    char p[6][512];
    md_space sp;
    md_vqgan vq;
    md_tokmodel tm;
    md_motion mo;
    md_judge j;
    if (md_space_load(&sp, check_model_path(p[0], sizeof p[0], "space.safetensors")) != MD_OK ||
        md_vqgan_load(&vq, check_model_path(p[1], sizeof p[1], "vqgan.safetensors")) != MD_OK ||
        md_tok_load(&tm, check_model_path(p[2], sizeof p[2], "tokens.safetensors")) != MD_OK ||
        md_motion_load(&mo, check_model_path(p[3], sizeof p[3], "motion.safetensors")) != MD_OK ||
        md_judge_load(&j, check_model_path(p[4], sizeof p[4], "judge-video.safetensors"), MD_WORLD_VIDEO) != MD_OK) {
        CHECK(false, "needs the bundled models: %s", md_last_error());
        return;
    }
    md_generator *gen = md_gen_tokens_new(MD_MOD_VIDEO, &tm, &vq, &sp, &mo, "test", NULL);
    md_generator *plain = md_gen_tokens_new(MD_MOD_VIDEO, &tm, &vq, &sp, NULL, "test", NULL);
    md_graph *g = md_graph_new((size_t)1 << 24);
    float *x = malloc(sizeof(float) * (size_t)md_judge_input_size(MD_WORLD_VIDEO));
    static const char *asks[] = {"a blue four moving to the left", "a green three moving right",
                                 "a white two moving up", "a red nine moving down", "a yellow one bouncing"};
    const int want[] = {0, 1, 2, 3, 4};
    double pv[MD_GEN_MAX_PARAMS];
    md_gen_params_default(gen, pv);
    pv[md_gen_param_index(gen, "candidates")] = 2;
    int right = 0, n = 0;
    for (int a = 0; a < 5 && gen && plain && g && x; a++) {
        md_gen_condition c = {{0}, asks[a], 1.f};   /* typed alone, as `medley generate --in text:...` */
        const char *tp[1] = {asks[a]};
        if (md_space_embed(&sp, g, MD_MOD_TEXT, tp, 1, c.vec) != MD_OK)
            break;
        for (uint64_t seed = 1; seed <= 2; seed++) {
            md_gen_output out;
            if (gen->run(gen->self, &c, pv, seed, NULL, NULL, NULL, &out) != MD_OK)
                continue;
            uint8_t *u8 = malloc((size_t)MD_WORLD_FRAMES * HW * 3);
            for (size_t i = 0; i < (size_t)MD_WORLD_FRAMES * HW * 3; i++) {
                float v = out.video.pixels[i] * 255.f + 0.5f;
                u8[i] = (uint8_t)(v < 0.f ? 0.f : v > 255.f ? 255.f : v);
            }
            md_judge_prep_frames(u8, x);
            int attrs[1][MD_ATTR_COUNT];
            if (md_judge_read(&j, g, x, 1, attrs, NULL) == MD_OK) {
                n++;
                right += attrs[0][MD_ATTR_MOTION] == want[a];
            }
            free(u8);
            md_gen_output_free(&out);
        }
    }
    /* measured with the bundled models: see README; chance is 2 of 10 */
    CHECK(n == 10 && right >= 6, "the judge reads the asked motion in %d of %d videos", right, n);
    /* via_caption 2 (the default): a picture follows the typed text where it
     * leads the request (more than half the weight), else the condition
     * alone, bit for bit as via_caption 0 */
    md_generator *img = md_gen_tokens_new(MD_MOD_IMAGE, &tm, &vq, &sp, NULL, "test", NULL);
    md_gen_condition tc = {{0}, asks[0], 1.f};
    const char *tp[1] = {asks[0]};
    double pi[MD_GEN_MAX_PARAMS];
    md_gen_output o[3];
    memset(o, 0, sizeof o);
    double via_def = -1;
    md_status ts = img && md_space_embed(&sp, g, MD_MOD_TEXT, tp, 1, tc.vec) == MD_OK ? MD_OK : MD_ERR;
    if (ts == MD_OK) {
        md_gen_params_default(img, pi);
        pi[md_gen_param_index(img, "candidates")] = 2;
        via_def = pi[md_gen_param_index(img, "via_caption")];
        ts = img->run(img->self, &tc, pi, 3, NULL, NULL, NULL, &o[0]);
        tc.text_share = 0.5f;
        if (ts == MD_OK)
            ts = img->run(img->self, &tc, pi, 3, NULL, NULL, NULL, &o[1]);
        pi[md_gen_param_index(img, "via_caption")] = 0;
        if (ts == MD_OK)
            ts = img->run(img->self, &tc, pi, 3, NULL, NULL, NULL, &o[2]);
    }
    const size_t ib = sizeof(float) * 3 * (size_t)HW;
    CHECK(ts == MD_OK && via_def == 2 &&
              memcmp(o[1].image.pixels, o[2].image.pixels, ib) == 0 &&
              memcmp(o[0].image.pixels, o[2].image.pixels, ib) != 0,
          "pictures: the typed text alone is the caption they follow; at half the weight the condition alone is");
    for (int k = 0; k < 3; k++)
        md_gen_output_free(&o[k]);
    md_generator_free(img);
    /* without the motion model, motion 1 is refused by name */
    md_gen_condition c = {{0}, NULL, 0.f};
    c.vec[0] = 1.f;
    pv[md_gen_param_index(plain, "motion")] = 1;
    md_gen_output out;
    md_log_set_callback(check_quiet_log, NULL);
    md_status st = plain ? plain->run(plain->self, &c, pv, 1, NULL, NULL, NULL, &out) : MD_ERR;
    md_log_set_callback(NULL, NULL);
    CHECK(st == MD_ERR_INVALID && strstr(md_last_error(), "motion.safetensors") != NULL,
          "motion 1 without the motion model is refused: %s", md_last_error());
    free(x);
    md_graph_free(g);
    md_generator_free(gen);
    md_generator_free(plain);
    md_judge_free(&j);
    md_motion_free(&mo);
    md_tok_free(&tm);
    md_vqgan_free(&vq);
    md_space_free(&sp);
}

int main(int argc, char **argv)
{
    md_threads_init();
    mkdir(tmpdir(), 0777);
    if (argc > 1 && strcmp(argv[1], "--train") == 0)
        test_train();
    else if (argc > 1 && strcmp(argv[1], "--shipped") == 0)
        test_shipped();
    else {
        test_frames();
        test_model();
    }
    return check_done();
}
