/* test_world.c — the demo world and its corpus: same seed → same sample
 * (whatever the thread count and order), splits disjoint (no test source
 * item reaches train or val), held-out combinations only in compo, and the
 * corpus builder deterministic and equal to on-the-fly drawing.
 * Needs MEDLEY_DATA_DIR (exits 77 without it). */
#include "caption.h"
#include "check.h"
#include "corpus.h"
#include "safetensors.h"
#include "world.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static uint8_t frames_a[MD_WORLD_FRAMES * 64 * 64 * 3], frames_b[MD_WORLD_FRAMES * 64 * 64 * 3];

static bool same_sample(const md_world_sample *a, const md_world_sample *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

static void test_determinism(const md_world *w)
{
    bool same = true, differ = false;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 50; i++) {
            md_world_sample a, b, c;
            md_world_draw(w, 5, MD_SPLIT_TRAIN, (md_world_kind)k, i, &a);
            md_world_draw(w, 5, MD_SPLIT_TRAIN, (md_world_kind)k, i, &b);
            md_world_draw(w, 6, MD_SPLIT_TRAIN, (md_world_kind)k, i, &c);
            same &= same_sample(&a, &b);
            differ |= memcmp(a.attr, c.attr, sizeof a.attr) != 0;
        }
    CHECK(same, "same (seed, split, kind, index) gives the same sample");
    CHECK(differ, "another seed gives other samples");

    /* renders: serial vs parallel, forward vs reverse order */
    enum { N = 64 };
    static uint8_t ser[N][64 * 64 * 3], par[N][64 * 64 * 3];
    static float aser[N][MD_WORLD_AUDIO_SAMPLES], apar[N][MD_WORLD_AUDIO_SAMPLES];
    for (int i = 0; i < N; i++) {
        md_world_sample s;
        md_world_draw(w, 9, MD_SPLIT_TRAIN, MD_WORLD_IMAGE, i, &s);
        md_world_render_image(w, &s, ser[i]);
        md_world_draw(w, 9, MD_SPLIT_TRAIN, MD_WORLD_AUDIO, i, &s);
        md_world_render_audio(w, &s, aser[i]);
    }
#pragma omp parallel for num_threads(2) schedule(static, 1)
    for (int i = N - 1; i >= 0; i--) {
        md_world_sample s;
        md_world_draw(w, 9, MD_SPLIT_TRAIN, MD_WORLD_IMAGE, i, &s);
        md_world_render_image(w, &s, par[i]);
        md_world_draw(w, 9, MD_SPLIT_TRAIN, MD_WORLD_AUDIO, i, &s);
        md_world_render_audio(w, &s, apar[i]);
    }
    CHECK(memcmp(ser, par, sizeof ser) == 0, "images identical drawn serially or on 2 threads in reverse order");
    CHECK(memcmp(aser, apar, sizeof aser) == 0, "audio identical drawn serially or on 2 threads in reverse order");
    md_world_sample v;
    md_world_draw(w, 9, MD_SPLIT_TEST, MD_WORLD_VIDEO, 3, &v);
    md_world_render_video(w, &v, frames_a, NULL);
    md_world_render_video(w, &v, frames_b, NULL);
    CHECK(memcmp(frames_a, frames_b, sizeof frames_a) == 0, "video renders are repeatable");
    CHECK(memcmp(frames_a, frames_a + 64 * 64 * 3 * 15, 64 * 64 * 3) != 0, "the digit moves between frame 0 and 15");
}

/* A rendered sample shows what its attributes say: ink pixels near the
 * stated position, the ink and background colours where expected. */
static void test_render_matches_attrs(const md_world *w)
{
    int pos_ok = 0, col_ok = 0, n = 0;
    for (int i = 0; i < 300; i++) {
        md_world_sample s;
        uint8_t rgb[64 * 64 * 3];
        md_world_draw(w, 3, MD_SPLIT_VAL, MD_WORLD_IMAGE, i, &s);
        if (s.attr[MD_ATTR_STYLE] == 1)
            continue;
        md_world_render_image(w, &s, rgb);
        n++;
        /* ink centroid: pixels far from the background colour */
        double sx = 0, sy = 0, sw = 0;
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++) {
                const uint8_t *p = rgb + (y * 64 + x) * 3;
                double d = 0;
                for (int c = 0; c < 3; c++)
                    d += fabs((double)p[c] / 255.0 - s.bg_rgb[c]);
                if (d > 0.3) {
                    sx += x;
                    sy += y;
                    sw += 1;
                }
            }
        if (sw > 0) {
            int col = sx / sw < 64 / 3.0 ? 0 : sx / sw < 128 / 3.0 ? 1 : 2;
            int row = sy / sw < 64 / 3.0 ? 0 : sy / sw < 128 / 3.0 ? 1 : 2;
            pos_ok += row * 3 + col == s.attr[MD_ATTR_POS];
        }
        const uint8_t *corner = rgb;   /* the top-left pixel is background unless the digit sits there */
        bool bg = true;
        for (int c = 0; c < 3; c++)
            bg &= abs((int)corner[c] - (int)md_colour_rgb[s.attr[MD_ATTR_BG]][c]) <= 14;
        col_ok += bg || s.attr[MD_ATTR_POS] == 0;
    }
    CHECK(n > 200 && pos_ok >= n * 95 / 100, "ink centroid in the stated third of the frame: %d/%d", pos_ok, n);
    CHECK(col_ok == n, "background colour as stated: %d/%d", col_ok, n);
}

static bool in_list(const int *l, int n, int v)
{
    for (int i = 0; i < n; i++)
        if (l[i] == v)
            return true;
    return false;
}

static void test_splits(const md_world *w)
{
    /* source lists disjoint across train / val / test */
    bool disjoint = true;
    for (int d = 0; d < 10; d++) {
        for (int i = 0; i < w->n_sign[MD_SPLIT_TEST][d]; i++) {
            int v = w->sign_idx[MD_SPLIT_TEST][d][i];
            disjoint &= !in_list(w->sign_idx[MD_SPLIT_TRAIN][d], w->n_sign[MD_SPLIT_TRAIN][d], v);
            disjoint &= !in_list(w->sign_idx[MD_SPLIT_VAL][d], w->n_sign[MD_SPLIT_VAL][d], v);
            disjoint &= w->sign.rank[v] % 5 == 4;
        }
        for (int i = 0; i < w->n_sign[MD_SPLIT_VAL][d]; i++)
            disjoint &= !in_list(w->sign_idx[MD_SPLIT_TRAIN][d], w->n_sign[MD_SPLIT_TRAIN][d],
                                 w->sign_idx[MD_SPLIT_VAL][d][i]);
        for (int i = 0; i < w->n_mnist[MD_SPLIT_TRAIN][d]; i++)
            disjoint &= w->mnist_idx[MD_SPLIT_TRAIN][d][i] < 55000;
        for (int i = 0; i < w->n_mnist[MD_SPLIT_VAL][d]; i++)
            disjoint &= w->mnist_idx[MD_SPLIT_VAL][d][i] >= 55000;
        for (int i = 0; i < w->n_fsdd[MD_SPLIT_TRAIN][d]; i++)
            disjoint &= w->fsdd.clips[w->fsdd_idx[MD_SPLIT_TRAIN][d][i]].take >= 10;
        for (int i = 0; i < w->n_fsdd[MD_SPLIT_VAL][d]; i++) {
            int t = w->fsdd.clips[w->fsdd_idx[MD_SPLIT_VAL][d][i]].take;
            disjoint &= t >= 5 && t < 10;
        }
        for (int i = 0; i < w->n_fsdd[MD_SPLIT_TEST][d]; i++)
            disjoint &= w->fsdd.clips[w->fsdd_idx[MD_SPLIT_TEST][d][i]].take < 5;
    }
    CHECK(disjoint, "source lists: sign ranks, MNIST index ranges and FSDD takes disjoint by split");
    /* every fifth photo of each digit folder (ranks 4, 9, 14, ...) */
    int64_t n_sign_test = 0, want_sign_test = 0;
    for (int d = 0; d < 10; d++) {
        n_sign_test += w->n_sign[MD_SPLIT_TEST][d];
        int64_t in_folder = w->n_sign[MD_SPLIT_TRAIN][d] + w->n_sign[MD_SPLIT_VAL][d] + w->n_sign[MD_SPLIT_TEST][d];
        want_sign_test += in_folder / 5;
    }
    CHECK(n_sign_test == want_sign_test && n_sign_test * 5 > w->sign.n - 50,
          "a fifth of the sign photos held out for test (%lld of %d)", (long long)n_sign_test, w->sign.n);

    /* drawn samples: train/val never use a test source, never a held-out
     * combination; compo always shows one */
    bool clean = true, heldout_absent = true, compo_heldout = true;
    for (int sp = MD_SPLIT_TRAIN; sp <= MD_SPLIT_VAL; sp++)
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < 3000; i++) {
                md_world_sample s;
                md_world_draw(w, 2, (md_world_split)sp, (md_world_kind)k, i, &s);
                if (s.src_audio >= 0)
                    clean &= w->fsdd.clips[s.src_audio].take >= 5;
                if (s.src_image >= 0 && s.attr[MD_ATTR_STYLE] == 1)
                    clean &= w->sign.rank[s.src_image] % 5 != 4;
                heldout_absent &= !md_world_is_heldout(s.attr);
            }
    for (int k = 0; k < 3; k += 2)
        for (int i = 0; i < 2000; i++) {
            md_world_sample s;
            md_world_draw(w, 2, MD_SPLIT_COMPO, (md_world_kind)k, i, &s);
            compo_heldout &= md_world_is_heldout(s.attr);
            if (s.src_audio >= 0)
                compo_heldout &= w->fsdd.clips[s.src_audio].take < 5;
        }
    CHECK(clean, "18000 train/val draws use no test source item");
    CHECK(heldout_absent, "no held-out digit-ink or digit-motion pair in train/val draws");
    CHECK(compo_heldout, "every compo draw shows a held-out pair, from test sources");

    /* enumeration covers each test item once */
    int64_t n = md_world_enumerate_count(w, MD_SPLIT_TEST, MD_WORLD_IMAGE);
    CHECK(n == 10000 + n_sign_test, "test images enumerate MNIST t10k and the test photos: %lld", (long long)n);
    CHECK(md_world_enumerate_count(w, MD_SPLIT_TEST, MD_WORLD_AUDIO) == 300, "test audio: FSDD takes 0-4, 300 clips");
    md_world_sample s;
    CHECK(md_world_draw_item(w, 1, MD_SPLIT_TEST, MD_WORLD_IMAGE, n, &s) == MD_ERR_INVALID, "item past the end refused");
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void test_corpus(const md_world *w, const char *tmp)
{
    char d1[1024], d2[1024];
    snprintf(d1, sizeof d1, "%s/corpus_a", tmp);
    snprintf(d2, sizeof d2, "%s/corpus_b", tmp);
    md_corpus_opts o;
    md_corpus_default_opts(&o, 0.01);
    o.shard_items[MD_WORLD_IMAGE] = 64;   /* several shards per split */
    o.seed = 4;
    md_corpus_stats s1, s2;
    o.out_dir = d1;
    md_status st1 = md_corpus_build(w, &o, &s1);
    int threads = md_threads_get();
    md_threads_set(1);
    o.out_dir = d2;
    md_status st2 = md_corpus_build(w, &o, &s2);
    md_threads_set(threads);
    CHECK(st1 == MD_OK && st2 == MD_OK, "small corpus built twice (%d shards, %.1f MB, %.1f s)", s1.shards,
          (double)s1.bytes / 1e6, s1.seconds);
    CHECK(s1.shards == s2.shards && s1.bytes == s2.bytes && s1.shards > 10, "same shard count and bytes");
    /* every shard byte-identical (built on 2 threads and on 1) */
    const char *names[] = {"manifest.json", "train-image-0000.safetensors", "train-image-0003.safetensors",
                           "test-image-0000.safetensors", "test-audio-0000.safetensors",
                           "val-video-0000.safetensors", "compo-video-0000.safetensors"};
    bool ident = true;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char p1[1200], p2[1200];
        snprintf(p1, sizeof p1, "%s/%s", d1, names[i]);
        snprintf(p2, sizeof p2, "%s/%s", d2, names[i]);
        size_t l1 = 0, l2 = 0;
        char *a = read_all(p1, &l1), *b = read_all(p2, &l2);
        bool same = a && b && l1 == l2 && memcmp(a, b, l1) == 0;
        if (!same)
            printf("     differs or missing: %s\n", names[i]);
        ident &= same;
        free(a);
        free(b);
    }
    CHECK(ident, "shards byte-identical across builds and thread counts");

    /* a shard holds exactly the on-the-fly samples */
    char p[1200];
    snprintf(p, sizeof p, "%s/train-image-0001.safetensors", d1);
    md_st_file *f;
    bool match = md_st_open(p, &f) == MD_OK;
    if (match) {
        const md_st_info *im = md_st_find(f, "image"), *at = md_st_find(f, "attr");
        const md_st_info *caps = md_st_find(f, "captions"), *off = md_st_find(f, "caption_offsets");
        const char *first = md_st_meta(f, "first");
        match = im && at && caps && off && first && im->shape[0] == 64 && strcmp(first, "64") == 0;
        for (int i = 0; match && i < 64; i++) {
            md_world_sample s;
            uint8_t rgb[64 * 64 * 3];
            md_world_draw(w, 4, MD_SPLIT_TRAIN, MD_WORLD_IMAGE, 64 + i, &s);
            md_world_render_image(w, &s, rgb);
            match &= memcmp(rgb, (const uint8_t *)im->data + (size_t)i * sizeof rgb, sizeof rgb) == 0;
            const int32_t *a = (const int32_t *)at->data + i * MD_ATTR_COUNT;
            for (int k = 0; k < MD_ATTR_COUNT; k++)
                match &= a[k] == s.attr[k];
            char cap[MD_CAPTION_MAX];
            md_caption_make(&s, 2, cap, sizeof cap, NULL);
            const int32_t *o32 = off->data;
            match &= strcmp(cap, (const char *)caps->data + o32[i * MD_CAPTIONS_PER_SAMPLE + 2]) == 0;
        }
        md_st_close(f);
    }
    CHECK(match, "shard train-image-0001 holds draws 64..127: pixels, attributes and captions");
    CHECK(md_corpus_build(w, &(md_corpus_opts){.out_dir = "", .shard_items = {1, 1, 1}}, &s1) == MD_ERR_INVALID,
          "empty output folder refused");
    snprintf(p, sizeof p, "%s/manifest.json/sub", d1);
    o.out_dir = p;
    CHECK(md_corpus_build(w, &o, &s1) == MD_ERR_IO && strstr(md_last_error(), "manifest.json"),
          "an output folder that cannot be made is an error naming it: %s", md_last_error());
}

int main(void)
{
    if (!getenv("MEDLEY_DATA_DIR")) {
        printf("skip: MEDLEY_DATA_DIR is not set\n");
        return 77;
    }
    const char *tmp = getenv("MEDLEY_TEST_TMP") ? getenv("MEDLEY_TEST_TMP") : "/tmp";
    mkdir(tmp, 0777);
    md_threads_init();
    md_world w;
    double t0 = md_time_now();
    md_status st = md_world_open(NULL, &w);
    CHECK(st == MD_OK, "world opens from MEDLEY_DATA_DIR in %.1f s: %s", md_time_now() - t0,
          st == MD_OK ? w.data_hash : md_last_error());
    if (st != MD_OK)
        return check_done();
    test_determinism(&w);
    test_render_matches_attrs(&w);
    test_splits(&w);
    test_corpus(&w, tmp);
    md_world_close(&w);
    return check_done();
}
