/* cmd_motion.c — `medley train motion` (core/motion.h): the paths later
 * video frames move frame 0 along, learned from the train videos. */
#include "commands.h"
#include "motion.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int medley_cmd_train_motion(int argc, char **argv)
{
    static const char *cmd = "medley train motion";
    md_motion_train_opts o;
    md_motion_train_default_opts(&o);
    const char *data = NULL, *out = NULL, *models = NULL;
    long seed = (long)o.seed, steps = (long)o.steps, batch = o.batch, corpus = o.corpus, k = o.k,
         hidden = o.hidden;
    double lr = o.lr;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            fprintf(stderr, "%s: %s needs a value\n", cmd, a);
            return 2;
        }
        int bad = 0;
        if (strcmp(a, "--data") == 0)
            data = val;
        else if (strcmp(a, "--out") == 0 || strcmp(a, "-o") == 0)
            out = val;
        else if (strcmp(a, "--models") == 0)
            models = val;
        else if (strcmp(a, "--seed") == 0)
            bad = medley_parse_int(a, val, 0, 2147483647L, &seed);
        else if (strcmp(a, "--steps") == 0)
            bad = medley_parse_int(a, val, 1, 10000000L, &steps);
        else if (strcmp(a, "--batch") == 0)
            bad = medley_parse_int(a, val, 1, 4096, &batch);
        else if (strcmp(a, "--corpus") == 0)
            bad = medley_parse_int(a, val, 2, 200000L, &corpus);
        else if (strcmp(a, "--paths") == 0)
            bad = medley_parse_int(a, val, 2, MD_MOTION_MAX_PATHS, &k);
        else if (strcmp(a, "--hidden") == 0)
            bad = medley_parse_int(a, val, 8, 4096, &hidden);
        else if (strcmp(a, "--lr") == 0)
            bad = medley_parse_double(a, val, 1e-6, 1.0, &lr);
        else {
            fprintf(stderr, "%s: unknown option \"%s\"\n", cmd, a);
            bad = 1;
        }
        if (bad)
            return 2;
        i++;
    }
    if (corpus < k) {
        fprintf(stderr, "%s: --corpus %ld is smaller than --paths %ld\n", cmd, corpus, k);
        return 2;
    }
    o.seed = (uint64_t)seed;
    o.steps = steps;
    o.batch = (int)batch;
    o.corpus = (int)corpus;
    o.k = (int)k;
    o.hidden = (int)hidden;
    o.lr = (float)lr;
    if (!(out = medley_output_dir(out, cmd)))
        return 1;
    const char *dir = medley_models_dir(models);
    char path[4096];
    snprintf(path, sizeof path, "%s/space.safetensors", dir);
    md_space sp;
    if (md_space_load(&sp, path) != MD_OK) {
        fprintf(stderr, "%s: %s\n(the aligned space: train it with 'medley train space', or point --models at the "
                        "folder holding space.safetensors)\n", cmd, md_last_error());
        return 1;
    }
    md_world w;
    if (md_world_open(data, &w) != MD_OK) {
        fprintf(stderr, "medley: %s\n", md_last_error());
        md_space_free(&sp);
        return 1;
    }
    printf("training the motion model (%d paths, width %d): %lld steps of %d from %d train videos; %d threads\n",
           o.k, o.hidden, (long long)o.steps, o.batch, o.corpus, md_threads_get());
    fflush(stdout);
    medley_train_ctx c = {md_time_now(), 0, o.steps >= 1000 ? 250 : 25};
    o.progress = medley_train_progress;
    o.user = &c;
    o.cancel = &medley_cancel;
    md_motion m;
    md_motion_figures f;
    md_status st = md_motion_train(&m, &sp, &w, &o, &f);
    double secs = md_time_now() - c.t0;
    if (st == MD_OK) {
        printf("  motion model: %lld parameters; the paths sit %.2f px a frame from their nearest prototype\n",
               (long long)md_paramset_numel(m.ps), f.fit);
        printf("  %d validation videos, the likeliest prototype is the nearest to the video's own path: "
               "%.1f%% under its caption, %.1f%% under its video's embedding, %.1f%% with no condition\n",
               f.n, 100 * f.caption, 100 * f.video, 100 * f.none);
        printf("  it moves the way the video does (left, right, up, down or a bounce): %.1f%% under the captions "
               "that state the motion, %.1f%% under the video's embedding, %.1f%% with no condition\n",
               100 * f.caption_moves, 100 * f.video_moves, 100 * f.none_moves);
        char recipe[512];
        snprintf(path, sizeof path, "%s/motion.safetensors", out);
        snprintf(recipe, sizeof recipe,
                 "{\"command\":\"%s\",\"steps\":%lld,\"batch\":%d,\"lr\":%g,\"paths\":%d,\"hidden\":%d,"
                 "\"corpus\":%d,\"seed\":%llu,\"seconds\":%.0f,\"threads\":%d}",
                 cmd, (long long)o.steps, o.batch, (double)o.lr, o.k, o.hidden, o.corpus,
                 (unsigned long long)o.seed, secs, md_threads_get());
        st = md_motion_save(&m, path, recipe, w.data_hash);
        if (st == MD_OK)
            printf("saved %s (%.0f s in all)\n", path, secs);
        md_motion_free(&m);
    }
    if (st != MD_OK)
        fprintf(stderr, "%s: %s\n", cmd, st == MD_ABORTED ? "cancelled" : md_last_error());
    md_world_close(&w);
    md_space_free(&sp);
    return st == MD_OK ? 0 : st == MD_ABORTED ? 130 : 1;
}
