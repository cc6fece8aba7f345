/* cmd_generate.c — `medley generate`: any mix of inputs, with weights,
 * composed in the aligned space, then the chosen outputs written as PNG /
 * MP4 / TXT, each carrying its job in its metadata ("medley.job", JSON), so
 * `medley generate --from OUTPUT` runs the same job again (app/job.h).
 *
 * The run is one job on the queue (core/jobs.h): the terminal shows its
 * progress; Ctrl-C cancels it, and nothing is written unless every output
 * is made.
 */
#include "job.h"
#include "jobs.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct gen_task {
    medley_job *job;
    medley_gens *gens;
    md_gen_condition cond;
    char *job_json;
    char paths[4][4096];
    md_job_ctx *ctx;
} gen_task;

/* "MOD:VALUE[@W]" or "FILE[@W]". A trailing @W is a weight only when W is
 * a number; otherwise the @ belongs to the value. */
static int parse_input(const char *spec, medley_job *j)
{
    double weight = 1.0;
    size_t len = strlen(spec);
    const char *at = strrchr(spec, '@');
    if (at) {
        char *end;
        errno = 0;
        double w = strtod(at + 1, &end);
        if (at[1] && !*end && !errno) {
            if (!isfinite(w)) {
                fprintf(stderr, "medley generate: --in %s: the weight must be a finite number\n", spec);
                return -1;
            }
            weight = w;
            len = (size_t)(at - spec);
        }
    }
    const char *colon = memchr(spec, ':', len);
    int m = colon ? medley_modality_of(spec, (size_t)(colon - spec)) : -1;
    const char *val = m >= 0 ? colon + 1 : spec;
    size_t vlen = len - (size_t)(val - spec);
    if (m < 0 && colon) {
        char path[4096];
        snprintf(path, sizeof path, "%.*s", (int)len, spec);
        struct stat stt;
        if (stat(path, &stt) != 0) {
            fprintf(stderr, "medley generate: --in %s: unknown modality \"%.*s\" (expected text, image, audio or "
                            "video, as text:\"a red seven\" or image:FILE)\n",
                    spec, (int)(colon - spec), spec);
            return -1;
        }
    }
    if (vlen == 0) {
        fprintf(stderr, "medley generate: --in %s: nothing after the modality\n", spec);
        return -1;
    }
    char *v = strndup(val, vlen);
    int k = !v ? -1 : m == MD_MOD_TEXT ? medley_job_add_text(j, v, weight) : medley_job_add_file(j, v, m, weight);
    free(v);
    if (k < 0)
        fprintf(stderr, "medley generate: --in %s: %s\n", spec, md_last_error());
    return k < 0 ? -1 : 0;
}

/* ---- the job ---- */

static void on_gen_progress(const char *stage, int64_t step, int64_t steps, double fraction, const md_image *preview,
                            void *user)
{
    gen_task *t = user;
    md_job_report_progress(t->ctx, stage, step, steps, fraction, preview, preview ? 1 : 0);
}

static md_status run_job(void *task, md_job_ctx *ctx)
{
    gen_task *t = task;
    t->ctx = ctx;
    md_gen_output outs[4];
    md_status st = medley_gens_run(t->gens, t->job, &t->cond, on_gen_progress, t, md_job_cancel_flag(ctx), outs);
    /* everything made: now the files, and all of them or none */
    int written[4], nw = 0;
    for (int m = 0; m < 4 && st == MD_OK; m++)
        if (t->gens->active[m]) {
            st = medley_output_write(t->job_json, (md_modality)m, &outs[m], t->paths[m]);
            if (st == MD_OK)
                written[nw++] = m;
        }
    if (st != MD_OK)
        for (int i = 0; i < nw; i++)
            remove(t->paths[written[i]]);
    for (int m = 0; m < 4; m++)
        md_gen_output_free(&outs[m]);
    return st;
}

static bool tty;

static void on_report(const md_job_report *r, void *user)
{
    (void)user;
    if (r->state != MD_JOB_RUNNING || !r->stage)
        return;
    static double last;
    double now = md_time_now();
    if (now - last < 0.1 && r->progress < 1.0)
        return;
    last = now;
    int filled = (int)(r->progress * 30.0 + 0.5);
    char bar[31];
    for (int i = 0; i < 30; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "%s[%s] %3.0f%%  %-12s %lld/%lld%s", tty ? "\r" : "", bar, 100.0 * r->progress, r->stage,
            (long long)r->step, (long long)r->steps, tty ? "   " : "\n");
    fflush(stderr);
}

/* A unique name in dir: medley-SEED-KIND.EXT, then -2, -3, ... */
static void out_path(const char *dir, uint64_t seed, const char *kind, const char *ext, char *path, size_t cap)
{
    for (int k = 1; k < 10000; k++) {
        if (k == 1)
            snprintf(path, cap, "%s/medley-%llu-%s.%s", dir, (unsigned long long)seed, kind, ext);
        else
            snprintf(path, cap, "%s/medley-%llu-%s-%d.%s", dir, (unsigned long long)seed, kind, k, ext);
        if (access(path, F_OK) != 0)
            return;
    }
}

/* ---- the command ---- */

int medley_cmd_generate(int argc, char **argv)
{
    medley_job j;
    medley_job_init(&j);
    const char *outdir = ".", *models = NULL, *from = NULL;
    bool outs_given = false, quiet = false;
    int rc = 2;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = true;
            continue;
        }
        if (!val) {
            fprintf(stderr, "medley generate: %s needs a value\n", a);
            goto out;
        }
        i++;
        if (strcmp(a, "--in") == 0) {
            if (parse_input(val, &j) != 0)
                goto out;
        } else if (strcmp(a, "--out") == 0) {
            outs_given = true;
            const char *p = val;
            while (*p) {
                size_t n = strcspn(p, ",+");
                size_t mn = strcspn(p, ",+:");   /* image:diffusion picks the path */
                int m = medley_modality_of(p, mn < n ? mn : n);
                if (m < 0) {
                    fprintf(stderr, "medley generate: --out: unknown output \"%.*s\" (expected image, video, text "
                                    "or audio, comma-separated; image:diffusion or image:tokens picks the path)\n",
                            (int)n, p);
                    goto out;
                }
                if (mn < n) {
                    int r = medley_route_of(p + mn + 1, n - mn - 1);
                    if (r < 0) {
                        fprintf(stderr, "medley generate: --out: unknown path \"%.*s\" for %s (expected tokens or "
                                        "diffusion)\n", (int)(n - mn - 1), p + mn + 1, medley_modality_names[m]);
                        goto out;
                    }
                    j.route[m] = r;
                }
                j.want[m] = true;
                p += n;
                if (*p)
                    p++;
            }
        } else if (strcmp(a, "--seed") == 0) {
            long v;
            if (medley_parse_int(a, val, 0, 2147483647L, &v)) goto out;
            j.seed = (uint64_t)v;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            outdir = val;
        } else if (strcmp(a, "--models") == 0) {
            models = val;
        } else if (strcmp(a, "--from") == 0) {
            from = val;
        } else if (strcmp(a, "--set") == 0) {
            const char *eq = strchr(val, '=');
            char name[96];
            if (!eq || eq == val || (size_t)(eq - val) >= sizeof name) {
                fprintf(stderr, "medley generate: --set %s: expected NAME=VALUE (NAME may be scoped to an output: "
                                "image.guidance=5)\n", val);
                goto out;
            }
            snprintf(name, sizeof name, "%.*s", (int)(eq - val), val);
            if (medley_job_set_param(&j, name, eq + 1) != MD_OK) {
                fprintf(stderr, "medley generate: %s\n", md_last_error());
                goto out;
            }
        } else if (strcmp(a, "--temperature") == 0 || strcmp(a, "--top-k") == 0 || strcmp(a, "--top-p") == 0 ||
                   strcmp(a, "--guidance") == 0 || strcmp(a, "--candidates") == 0 ||
                   strcmp(a, "--via-caption") == 0) {
            char name[32];
            snprintf(name, sizeof name, "%s", a + 2);
            for (char *c = name; *c; c++)
                if (*c == '-')
                    *c = '_';
            if (medley_job_set_param(&j, name, val) != MD_OK) {
                fprintf(stderr, "medley generate: %s\n", md_last_error());
                goto out;
            }
        } else {
            fprintf(stderr, "medley generate: unknown option \"%s\"\n", a);
            goto out;
        }
    }
    if (from) {
        char *job = medley_job_read_from(from);
        if (!job) {
            fprintf(stderr, "medley generate: --from %s: no Medley job in it (only outputs of 'medley generate' "
                            "carry one)\n", from);
            rc = 1;
            goto out;
        }
        if (j.nin > 0 || outs_given) {
            fprintf(stderr, "medley generate: --from takes the inputs and outputs from the file; drop --in/--out\n");
            free(job);
            goto out;
        }
        char label[4200];
        snprintf(label, sizeof label, "--from %s", from);
        md_status st = medley_job_from_json(&j, job, label, true);
        free(job);
        if (st != MD_OK) {
            fprintf(stderr, "medley generate: %s\n", md_last_error());
            rc = 1;
            goto out;
        }
    }
    if (j.nin == 0) {
        fprintf(stderr, "medley generate: no input: give --in text:\"...\" or --in image:FILE (audio:, video:), "
                        "with @WEIGHT where wanted\n");
        goto out;
    }
    if (!j.want[0] && !j.want[1] && !j.want[2] && !j.want[3]) {
        fprintf(stderr, "medley generate: no output: give --out image,video,text,audio (video+audio: a video with its sound)\n");
        goto out;
    }
    rc = 1;
    medley_bundle b;
    if (medley_bundle_load(&b, models, true))
        goto out;
    medley_gens gens = {0};
    gen_task t;
    memset(&t, 0, sizeof t);
    t.job = &j;
    t.gens = &gens;
    if (medley_gens_prepare(&gens, &j, &b) != MD_OK) {
        fprintf(stderr, "medley generate: %s\n", md_last_error());
        goto done;
    }
    if (medley_job_compose(&j, &b.sp, t.cond.vec) != MD_OK) {
        fprintf(stderr, "medley generate: %s\n", md_last_error());
        goto done;
    }
    t.cond.text = medley_job_text(&j);
    t.cond.text_share = medley_job_text_share(&j);
    if (!medley_output_dir(outdir, "medley generate"))
        goto done;
    for (int m = 0; m < 4; m++)
        if (gens.active[m])
            out_path(outdir, j.seed, medley_modality_names[m], medley_output_ext[m], t.paths[m], sizeof t.paths[m]);
    t.job_json = medley_job_json(&j, &gens, b.model_id);
    if (!t.job_json)
        goto done;
    tty = isatty(2);
    md_jobs *q = md_jobs_new(quiet ? NULL : on_report, NULL);
    int64_t id = q ? md_jobs_submit(q, run_job, &t, NULL) : -1;
    if (id < 0) {
        fprintf(stderr, "medley generate: cannot start the job (out of memory)\n");
        md_jobs_free(q);
        goto done;
    }
    while (md_jobs_pending(q) > 0) {
        if (medley_cancel) {
            md_jobs_cancel(q, id);
            break;
        }
        usleep(10000);
    }
    char msg[1024];
    md_status st = md_jobs_wait(q, id, msg, sizeof msg);
    md_jobs_free(q);
    if (!quiet && tty)
        fputc('\n', stderr);
    if (st == MD_ABORTED) {
        fprintf(stderr, "medley generate: cancelled; nothing was written\n");
        rc = 130;
    } else if (st != MD_OK) {
        fprintf(stderr, "medley generate: %s\n", msg[0] ? msg : md_status_str(st));
    } else {
        for (int m = 0; m < 4; m++)
            if (gens.active[m])
                printf("%s\n", t.paths[m]);
        rc = 0;
    }
done:
    free(t.job_json);
    medley_gens_free(&gens);
    medley_bundle_free(&b);
out:
    medley_job_free(&j);
    return rc;
}
