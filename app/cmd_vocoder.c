/* cmd_vocoder.c — `medley train vocoder` (core/vocoder.h) and the
 * comparison of the two vocoders on real test clips that it prints after
 * training and `medley eval --vocoder` prints alone. */
#include "audiogen.h"
#include "commands.h"
#include "judge.h"
#include "vocoder.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void medley_vocoder_print(const md_vocoder_figures *f)
{
    printf("vocoders on %d real test clips (mel -> samples; spectral convergence at n_fft 256, hop 80, against "
           "the original at its level):\n", f->n);
    printf("  %-24s %-22s %-26s %s\n", "vocoder", "spectral convergence", "judge hears the digit", "time a clip");
    printf("  %-24s %-22s %-26.1f %s\n", "(the originals)", "0", 100 * f->digit_orig, "-");
    printf("  %-24s %-22.3f %-26.1f %.3f s\n", "Griffin-Lim, 48 iters", f->sc_gl, 100 * f->digit_gl, f->secs_gl);
    printf("  %-24s %-22.3f %-26.1f %.3f s\n", "neural (vocoder)", f->sc_nn, 100 * f->digit_nn, f->secs_nn);
}

int medley_eval_vocoder(const md_world *w, const char *models, long n)
{
    const char *dir = medley_models_dir(models);
    char path[4096];
    snprintf(path, sizeof path, "%s/vocoder.safetensors", dir);
    md_vocoder v;
    if (md_vocoder_load(&v, path) != MD_OK) {
        fprintf(stderr, "medley eval: %s (train it with 'medley train vocoder')\n", md_last_error());
        return 1;
    }
    md_judge judge;
    snprintf(path, sizeof path, "%s/judge-audio.safetensors", dir);
    bool have_judge = md_judge_load(&judge, path, MD_WORLD_AUDIO) == MD_OK;
    if (!have_judge)
        fprintf(stderr, "medley eval: no audio judge (%s): spectral convergence only\n", md_last_error());
    md_vocoder_figures f;
    int rc = md_vocoder_compare(&v, w, have_judge ? &judge : NULL, (int)n, &f) == MD_OK ? 0 : 1;
    if (rc == 0)
        medley_vocoder_print(&f);
    else
        fprintf(stderr, "medley eval: comparing the vocoders: %s\n", md_last_error());
    if (have_judge)
        md_judge_free(&judge);
    md_vocoder_free(&v);
    return rc;
}

int medley_cmd_train_vocoder(int argc, char **argv)
{
    static const char *cmd = "medley train vocoder";
    md_vocoder_train_opts o;
    md_vocoder_train_default_opts(&o);
    const char *data = NULL, *out = NULL, *models = NULL;
    long seed = (long)o.seed, steps = (long)o.steps, batch = o.batch, corpus = o.corpus, ch = o.ch, compare = 40;
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
            bad = medley_parse_int(a, val, 1, 256, &batch);
        else if (strcmp(a, "--corpus") == 0)
            bad = medley_parse_int(a, val, 1, 100000L, &corpus);
        else if (strcmp(a, "--compare") == 0)
            bad = medley_parse_int(a, val, 0, 10000L, &compare);
        else if (strcmp(a, "--ch") == 0) {
            bad = medley_parse_int(a, val, 16, 512, &ch);
            if (!bad && ch % 8) {
                fprintf(stderr, "%s: --ch %ld is not a multiple of 8\n", cmd, ch);
                bad = 1;
            }
        } else if (strcmp(a, "--lr") == 0)
            bad = medley_parse_double(a, val, 1e-6, 1.0, &lr);
        else {
            fprintf(stderr, "%s: unknown option \"%s\"\n", cmd, a);
            bad = 1;
        }
        if (bad)
            return 2;
        i++;
    }
    if (corpus < batch) {
        fprintf(stderr, "%s: --corpus %ld is smaller than --batch %ld\n", cmd, corpus, batch);
        return 2;
    }
    o.seed = (uint64_t)seed;
    o.steps = steps;
    o.batch = (int)batch;
    o.corpus = (int)corpus;
    o.ch = (int)ch;
    o.lr = (float)lr;
    if (!(out = medley_output_dir(out, cmd)))
        return 1;
    md_world w;
    if (md_world_open(data, &w) != MD_OK) {
        fprintf(stderr, "medley: %s\n", md_last_error());
        return 1;
    }
    const char *dir = medley_models_dir(models);
    char path[4096];
    md_judge judge;
    snprintf(path, sizeof path, "%s/judge-audio.safetensors", dir);
    bool have_judge = md_judge_load(&judge, path, MD_WORLD_AUDIO) == MD_OK;
    printf("training the vocoder (log-mel 40 x 104 -> 8000 samples, ch %d): %lld steps of %d from %d clips; "
           "%d threads\n", o.ch, (long long)o.steps, o.batch, o.corpus, md_threads_get());
    fflush(stdout);
    medley_train_ctx c = {md_time_now(), 0, o.steps >= 1000 ? 100 : 10};
    o.progress = medley_train_progress;
    o.user = &c;
    o.cancel = &medley_cancel;
    md_vocoder v;
    md_status st = md_vocoder_train(&v, &w, &o);
    double secs = md_time_now() - c.t0;
    if (st == MD_OK) {
        printf("  vocoder: %lld parameters\n", (long long)md_paramset_numel(v.ps));
        char recipe[512];
        snprintf(path, sizeof path, "%s/vocoder.safetensors", out);
        snprintf(recipe, sizeof recipe,
                 "{\"command\":\"%s\",\"steps\":%lld,\"batch\":%d,\"lr\":%g,\"ch\":%d,\"corpus\":%d,"
                 "\"seed\":%llu,\"seconds\":%.0f,\"threads\":%d}",
                 cmd, (long long)o.steps, o.batch, (double)o.lr, o.ch, o.corpus, (unsigned long long)o.seed, secs,
                 md_threads_get());
        st = md_vocoder_save(&v, path, recipe, w.data_hash);
        if (st == MD_OK)
            printf("saved %s (%.0f s in all)\n", path, secs);
        md_vocoder_figures f;
        if (st == MD_OK && compare > 0 &&
            md_vocoder_compare(&v, &w, have_judge ? &judge : NULL, (int)compare, &f) == MD_OK)
            medley_vocoder_print(&f);
        else if (st == MD_OK && compare > 0)
            fprintf(stderr, "%s: comparing the vocoders: %s\n", cmd, md_last_error());
        md_vocoder_free(&v);
    }
    if (st != MD_OK)
        fprintf(stderr, "%s: %s\n", cmd, st == MD_ABORTED ? "cancelled" : md_last_error());
    if (have_judge)
        md_judge_free(&judge);
    md_world_close(&w);
    return st == MD_OK ? 0 : st == MD_ABORTED ? 130 : 1;
}
