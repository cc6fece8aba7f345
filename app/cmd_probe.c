/* cmd_probe.c — `medley train probes` (core/probe.h): the readers that
 * choose among a generator's candidate pictures, fitted on the bundled
 * aligned space (and image tokenizer, for reconstructed pictures). */
#include "bundle.h"
#include "commands.h"
#include "probe.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void progress(const char *stage, int64_t done, int64_t total, float loss, void *user)
{
    const double *t0 = user;
    if (done != total)
        return;
    if (strncmp(stage, "fitting", 7) == 0)
        printf("  %s: %lld steps, loss %.4f  %.0f s\n", stage, (long long)total, (double)loss, md_time_now() - *t0);
    else
        printf("  %s: %lld  %.0f s\n", stage, (long long)total, md_time_now() - *t0);
    fflush(stdout);
}

int medley_cmd_train_probes(int argc, char **argv)
{
    static const char *cmd = "medley train probes";
    md_probe_train_opts o;
    md_probe_train_default_opts(&o);
    const char *data = NULL, *out = NULL, *models = NULL;
    long seed = (long)o.seed, images = o.images, videos = o.videos, clips = o.clips, iters = o.iters;
    double lr = o.lr, cw = o.cos_weight;
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
        else if (strcmp(a, "--images") == 0)
            bad = medley_parse_int(a, val, 1, 1000000L, &images);
        else if (strcmp(a, "--videos") == 0)
            bad = medley_parse_int(a, val, 0, 1000000L, &videos);
        else if (strcmp(a, "--clips") == 0)
            bad = medley_parse_int(a, val, 0, 1000000L, &clips);
        else if (strcmp(a, "--iters") == 0)
            bad = medley_parse_int(a, val, 1, 100000L, &iters);
        else if (strcmp(a, "--lr") == 0)
            bad = medley_parse_double(a, val, 1e-6, 10.0, &lr);
        else if (strcmp(a, "--cos-weight") == 0)
            bad = medley_parse_double(a, val, 0.0, 1000.0, &cw);
        else {
            fprintf(stderr, "%s: unknown option \"%s\"\n", cmd, a);
            bad = 1;
        }
        if (bad)
            return 2;
        i++;
    }
    o.seed = (uint64_t)seed;
    o.images = (int)images;
    o.videos = (int)videos;
    o.clips = (int)clips;
    o.iters = (int)iters;
    o.lr = (float)lr;
    o.cos_weight = (float)cw;
    if (!(out = medley_output_dir(out, cmd)))
        return 1;
    const char *dir = medley_models_dir(models);
    char path[4096], space_id[17] = "";
    snprintf(path, sizeof path, "%s/space.safetensors", dir);
    md_space sp;
    if (md_space_load(&sp, path) != MD_OK) {
        fprintf(stderr, "%s: %s\n(the aligned space: train it with 'medley train space', or point --models at the "
                        "folder holding space.safetensors)\n", cmd, md_last_error());
        return 1;
    }
    medley_file_hash(path, space_id);
    md_vqgan vq;
    snprintf(path, sizeof path, "%s/vqgan.safetensors", dir);
    if (md_vqgan_load(&vq, path) != MD_OK) {
        fprintf(stderr, "%s: %s\n(the image tokenizer: train it with 'medley train vqgan', or point --models at "
                        "the folder holding vqgan.safetensors)\n", cmd, md_last_error());
        md_space_free(&sp);
        return 1;
    }
    md_world w;
    if (md_world_open(data, &w) != MD_OK) {
        fprintf(stderr, "medley: %s\n", md_last_error());
        md_vqgan_free(&vq);
        md_space_free(&sp);
        return 1;
    }
    printf("training the candidate readers: %d train pictures (and their reconstructions), %d videos, %d clips; "
           "%d Adam steps; %d threads\n", o.images, o.videos, o.clips, o.iters, md_threads_get());
    fflush(stdout);
    double t0 = md_time_now();
    o.progress = progress;
    o.user = &t0;
    o.cancel = &medley_cancel;
    md_probe p;
    md_probe_figures f;
    md_status st = md_probe_train(&p, &sp, &vq, &w, &o, &f);
    double secs = md_time_now() - t0;
    if (st == MD_OK) {
        printf("  %d validation pictures; the argmax of each head is right (digit style ink background position "
               "size):\n    picture readers  ", f.n);
        for (int h = 0; h < MD_PROBE_HEADS; h++)
            printf(" %5.1f%%", 100 * f.show_acc[h]);
        printf("\n    condition readers (the pictures and their captions, where they state it)");
        for (int h = 0; h < MD_PROBE_HEADS; h++)
            printf(" %5.1f%%", 100 * f.ask_acc[h]);
        printf("\n");
        memcpy(p.space_id, space_id, sizeof space_id);
        char recipe[512];
        snprintf(path, sizeof path, "%s/probes.safetensors", out);
        snprintf(recipe, sizeof recipe,
                 "{\"command\":\"%s\",\"images\":%d,\"videos\":%d,\"clips\":%d,\"iters\":%d,\"lr\":%g,"
                 "\"cos_weight\":%g,\"seed\":%llu,\"seconds\":%.0f,\"threads\":%d}",
                 cmd, o.images, o.videos, o.clips, o.iters, (double)o.lr, (double)o.cos_weight,
                 (unsigned long long)o.seed, secs, md_threads_get());
        st = md_probe_save(&p, path, recipe, w.data_hash);
        if (st == MD_OK)
            printf("saved %s (%.0f s in all)\n", path, secs);
        md_probe_free(&p);
    }
    if (st != MD_OK)
        fprintf(stderr, "%s: %s\n", cmd, st == MD_ABORTED ? "cancelled" : md_last_error());
    md_world_close(&w);
    md_vqgan_free(&vq);
    md_space_free(&sp);
    return st == MD_OK ? 0 : st == MD_ABORTED ? 130 : 1;
}
