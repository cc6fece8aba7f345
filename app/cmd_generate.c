/* cmd_generate.c — `medley generate`: any mix of inputs, with weights,
 * composed in the aligned space, then the chosen outputs written as PNG /
 * MP4 / TXT, each carrying its job in its metadata ("medley.job", JSON), so
 * `medley generate --from OUTPUT` runs the same job again.
 *
 * The run is one job on the queue (core/jobs.h): the terminal shows its
 * progress; Ctrl-C cancels it, and nothing is written unless every output
 * is made.
 */
#include "bundle.h"
#include "image_io.h"
#include "jobs.h"
#include "json.h"
#include "space_input.h"
#include "tokens_gen.h"
#include "video_io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_INPUTS 16
#define JOB_KEY "medley.job"
#define TXT_MARK "medley.job: "

static const char *const mods[4] = {"text", "image", "audio", "video"};

typedef struct gen_input {
    md_modality modality;
    char *text;                      /* text inputs */
    char *path;                      /* file inputs */
    char hash[17];                   /* of the file's bytes */
    bool declared;                   /* the modality was given (image:FILE), not found from the bytes */
    double weight;
} gen_input;

typedef struct gen_request {
    gen_input in[MAX_INPUTS];
    int nin;
    bool want[4];                    /* outputs by modality */
    uint64_t seed;
    const char *params[8][2];        /* name, value as typed */
    int nparams;
    const char *outdir;
} gen_request;

typedef struct gen_task {
    const gen_request *req;
    const medley_bundle *b;
    md_gen_condition cond;
    md_generator *gens[4];
    double pv[4][MD_GEN_MAX_PARAMS];
    char *job_json;
    char paths[4][4096];
    int noutputs;
    int current;                     /* output running */
    md_job_ctx *ctx;
} gen_task;

static void free_request(gen_request *r)
{
    for (int i = 0; i < r->nin; i++) {
        free(r->in[i].text);
        free(r->in[i].path);
    }
}

static int modality_of(const char *name, size_t n)
{
    for (int m = 0; m < 4; m++)
        if (strlen(mods[m]) == n && strncasecmp(name, mods[m], n) == 0)
            return m;
    return -1;
}

/* "MOD:VALUE[@W]" or "FILE[@W]". A trailing @W is a weight only when W is
 * a number; otherwise the @ belongs to the value. */
static int parse_input(const char *spec, gen_input *in)
{
    memset(in, 0, sizeof *in);
    in->weight = 1.0;
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
            in->weight = w;
            len = (size_t)(at - spec);
        }
    }
    const char *colon = memchr(spec, ':', len);
    int m = colon ? modality_of(spec, (size_t)(colon - spec)) : -1;
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
    if (m == MD_MOD_TEXT) {
        in->modality = MD_MOD_TEXT;
        in->text = strndup(val, vlen);
        return in->text ? 0 : -1;
    }
    in->path = strndup(val, vlen);
    if (!in->path)
        return -1;
    in->modality = m >= 0 ? (md_modality)m : MD_MOD_TEXT;   /* else decided when read */
    in->declared = m >= 0;
    return 0;
}

/* Reads every input and composes the condition. */
static int compose(const gen_request *r, const medley_bundle *b, gen_input *ins, float *cond)
{
    float *v = malloc(sizeof(float) * MD_SPACE_DIM * (size_t)r->nin);
    float w[MAX_INPUTS];
    md_graph *g = md_graph_new((size_t)1 << 24);
    int rc = v && g ? 0 : 1;
    for (int i = 0; i < r->nin && rc == 0; i++) {
        gen_input *in = &ins[i];
        md_space_input si;
        md_status st;
        if (in->text)
            st = md_space_input_from_text(in->text, &si);
        else {
            st = md_space_input_from_file(in->path, &si);
            if (st == MD_OK && in->declared && si.modality != in->modality) {
                fprintf(stderr, "medley generate: %s: given as %s, but it holds %s\n", in->path, mods[in->modality],
                        mods[si.modality]);
                md_space_input_free(&si);
                rc = 1;
                break;
            }
            if (st == MD_OK) {
                in->modality = si.modality;
                if (medley_file_hash(in->path, in->hash) != 0) {
                    fprintf(stderr, "medley generate: %s: cannot read it: %s\n", in->path, strerror(errno));
                    md_space_input_free(&si);
                    rc = 1;
                    break;
                }
            }
        }
        if (st != MD_OK) {
            fprintf(stderr, "medley generate: %s\n", md_last_error());
            rc = 1;
            break;
        }
        st = md_space_embed_input(&b->sp, g, &si, v + MD_SPACE_DIM * i);
        md_space_input_free(&si);
        if (st != MD_OK) {
            fprintf(stderr, "medley generate: %s\n", md_last_error());
            rc = 1;
        }
        w[i] = (float)in->weight;
    }
    if (rc == 0 && md_space_compose(v, w, r->nin, cond) != MD_OK) {
        fprintf(stderr, "medley generate: the inputs' weights: %s\n", md_last_error());
        rc = 1;
    }
    md_graph_free(g);
    free(v);
    return rc;
}

static char *job_json(const gen_request *r, const gen_input *ins, const gen_task *t)
{
    md_json_buf b;
    md_json_buf_init(&b);
    md_json_buf_begin_object(&b);
    md_json_buf_key(&b, "medley");
    md_json_buf_str(&b, MEDLEY_VERSION);
    md_json_buf_key(&b, "inputs");
    md_json_buf_begin_array(&b);
    for (int i = 0; i < r->nin; i++) {
        md_json_buf_begin_object(&b);
        md_json_buf_key(&b, "modality");
        md_json_buf_str(&b, mods[ins[i].modality]);
        if (ins[i].text) {
            md_json_buf_key(&b, "text");
            md_json_buf_str(&b, ins[i].text);
        } else {
            md_json_buf_key(&b, "file");
            md_json_buf_str(&b, ins[i].path);
            md_json_buf_key(&b, "hash");
            md_json_buf_str(&b, ins[i].hash);
        }
        md_json_buf_key(&b, "weight");
        md_json_buf_num(&b, ins[i].weight);
        md_json_buf_end_object(&b);
    }
    md_json_buf_end_array(&b);
    md_json_buf_key(&b, "outputs");
    md_json_buf_begin_array(&b);
    for (int m = 0; m < 4; m++)
        if (t->gens[m]) {
            md_json_buf_begin_object(&b);
            md_json_buf_key(&b, "modality");
            md_json_buf_str(&b, mods[m]);
            md_json_buf_key(&b, "generator");
            md_json_buf_str(&b, t->gens[m]->name);
            md_json_buf_key(&b, "params");
            md_json_buf_begin_object(&b);
            for (int k = 0; k < t->gens[m]->nparams; k++) {
                md_json_buf_key(&b, t->gens[m]->params[k].name);
                md_json_buf_num(&b, t->pv[m][k]);
            }
            md_json_buf_end_object(&b);
            md_json_buf_end_object(&b);
        }
    md_json_buf_end_array(&b);
    md_json_buf_key(&b, "seed");
    md_json_buf_int(&b, (int64_t)r->seed);
    md_json_buf_key(&b, "models");
    md_json_buf_str(&b, t->b->model_id);
    md_json_buf_end_object(&b);
    return md_json_buf_finish(&b, NULL);
}

/* ---- the job ---- */

static void on_gen_progress(const char *stage, int64_t step, int64_t steps, double fraction, const md_image *preview,
                            void *user)
{
    gen_task *t = user;
    double whole = ((double)t->current + fraction) / (double)t->noutputs;
    md_job_report_progress(t->ctx, stage, step, steps, whole, preview, preview ? 1 : 0);
}

static md_status write_output(const gen_task *t, int m, const md_gen_output *o)
{
    md_meta meta = {0};
    md_status st = md_meta_set(&meta, JOB_KEY, t->job_json);
    if (st == MD_OK && m == MD_MOD_IMAGE)
        st = md_image_save_png(t->paths[m], &o->image, &meta, 8);
    else if (st == MD_OK && m == MD_MOD_VIDEO)
        st = md_video_save(t->paths[m], &o->video, "mp4", &meta);
    else if (st == MD_OK) {
        size_t n = strlen(o->text) + strlen(t->job_json) + sizeof TXT_MARK + 4;
        char *buf = malloc(n);
        if (!buf)
            st = MD_ERR_ALLOC;
        else {
            int len = snprintf(buf, n, "%s\n" TXT_MARK "%s\n", o->text, t->job_json);
            st = md_write_file_atomic(t->paths[m], buf, (size_t)len);
            free(buf);
        }
    }
    md_meta_free(&meta);
    return st;
}

static md_status run_job(void *task, md_job_ctx *ctx)
{
    gen_task *t = task;
    t->ctx = ctx;
    md_gen_output outs[4];
    memset(outs, 0, sizeof outs);
    md_status st = MD_OK;
    t->current = 0;
    for (int m = 0; m < 4 && st == MD_OK; m++) {
        if (!t->gens[m])
            continue;
        st = t->gens[m]->run(t->gens[m]->self, &t->cond, t->pv[m], t->req->seed, on_gen_progress, t,
                             md_job_cancel_flag(ctx), &outs[m]);
        t->current++;
    }
    if (st == MD_OK && md_job_cancelled(ctx))
        st = MD_ABORTED;
    /* everything made: now the files, and all of them or none */
    int written[4], nw = 0;
    for (int m = 0; m < 4 && st == MD_OK; m++)
        if (t->gens[m]) {
            st = write_output(t, m, &outs[m]);
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

/* ---- restoring a job from an output ---- */

/* The job an output carries: a TXT's marked line, else a PNG's or MP4's
 * metadata. NULL when none. */
static char *read_job_from(const char *path)
{
    char *job = NULL;
    FILE *f = fopen(path, "rb");
    if (f) {
        char line[65536];
        while (!job && fgets(line, sizeof line, f))
            if (strncmp(line, TXT_MARK, strlen(TXT_MARK)) == 0) {
                line[strcspn(line, "\n")] = '\0';
                job = strdup(line + strlen(TXT_MARK));
            }
        fclose(f);
    }
    if (job)
        return job;
    md_meta meta = {0};
    md_image im = {0};
    md_video v = {0};
    md_media_limits lim = md_media_limits_default();
    md_log_set_callback(medley_quiet_log, NULL);   /* not an image: try video, quietly */
    if (md_image_load(path, &lim, &im, &meta) == MD_OK || md_video_load(path, &lim, NULL, &v, &meta) == MD_OK) {
        const char *j = md_meta_get(&meta, JOB_KEY);
        job = j ? strdup(j) : NULL;
    }
    md_log_set_callback(NULL, NULL);
    md_image_free(&im);
    md_video_free(&v);
    md_meta_free(&meta);
    return job;
}

static int request_from_job(const char *path, const char *text, gen_request *r, char ***owned, int *nowned)
{
    md_json_doc *doc;
    if (md_json_parse(text, strlen(text), path, &doc) != MD_OK) {
        fprintf(stderr, "medley generate: --from %s: %s\n", path, md_last_error());
        return 1;
    }
    const md_json *root = md_json_root(doc), *ins = md_json_get(root, "inputs"), *outs = md_json_get(root, "outputs");
    int64_t seed;
    int rc = 0;
    if (md_json_type_of(ins) != MD_JSON_ARRAY || md_json_type_of(outs) != MD_JSON_ARRAY ||
        !md_json_int(md_json_get(root, "seed"), &seed) || seed < 0 || md_json_len(ins) < 1 ||
        md_json_len(ins) > MAX_INPUTS) {
        fprintf(stderr, "medley generate: --from %s: its job lacks inputs, outputs or seed\n", path);
        md_json_free(doc);
        return 1;
    }
    r->seed = (uint64_t)seed;
    for (size_t i = 0; i < md_json_len(ins) && rc == 0; i++) {
        const md_json *e = md_json_at(ins, i);
        gen_input *in = &r->in[r->nin];
        memset(in, 0, sizeof *in);
        const char *mod = md_json_str(md_json_get(e, "modality"));
        int m = mod ? modality_of(mod, strlen(mod)) : -1;
        if (m < 0 || !md_json_num(md_json_get(e, "weight"), &in->weight)) {
            fprintf(stderr, "medley generate: --from %s: input %zu has no modality or weight\n", path, i + 1);
            rc = 1;
            break;
        }
        in->modality = (md_modality)m;
        const char *tx = md_json_str(md_json_get(e, "text")), *file = md_json_str(md_json_get(e, "file"));
        const char *hash = md_json_str(md_json_get(e, "hash"));
        if (m == MD_MOD_TEXT && tx)
            in->text = strdup(tx);
        else if (file && hash) {
            char now[17];
            if (medley_file_hash(file, now) != 0) {
                fprintf(stderr, "medley generate: --from %s: its input %s cannot be read: %s\n", path, file,
                        strerror(errno));
                rc = 1;
                break;
            }
            if (strcmp(now, hash) != 0) {
                fprintf(stderr, "medley generate: --from %s: its input %s has changed since (hash %s, now %s)\n",
                        path, file, hash, now);
                rc = 1;
                break;
            }
            in->path = strdup(file);
            in->declared = true;
        } else {
            fprintf(stderr, "medley generate: --from %s: input %zu has neither text nor file\n", path, i + 1);
            rc = 1;
            break;
        }
        r->nin++;
    }
    for (size_t i = 0; i < md_json_len(outs) && rc == 0; i++) {
        const md_json *e = md_json_at(outs, i), *ps = md_json_get(e, "params");
        const char *mod = md_json_str(md_json_get(e, "modality"));
        int m = mod ? modality_of(mod, strlen(mod)) : -1;
        if (m < 0) {
            fprintf(stderr, "medley generate: --from %s: output %zu has no modality\n", path, i + 1);
            rc = 1;
            break;
        }
        r->want[m] = true;
        for (size_t k = 0; md_json_type_of(ps) == MD_JSON_OBJECT && k < md_json_len(ps); k++) {
            double v;
            if (!md_json_num(md_json_at(ps, k), &v) || r->nparams >= 8)
                continue;
            char **pair = realloc(*owned, sizeof(char *) * (size_t)(*nowned + 2));
            if (!pair) {
                rc = 1;
                break;
            }
            *owned = pair;
            char num[64];
            snprintf(num, sizeof num, "%.17g", v);
            pair[*nowned] = strdup(md_json_key_at(ps, k));
            pair[*nowned + 1] = strdup(num);
            bool dup = false;
            for (int q = 0; q < r->nparams; q++)
                dup |= strcmp(r->params[q][0], pair[*nowned]) == 0;
            if (!dup) {
                r->params[r->nparams][0] = pair[*nowned];
                r->params[r->nparams][1] = pair[*nowned + 1];
                r->nparams++;
            }
            *nowned += 2;
        }
    }
    md_json_free(doc);
    return rc;
}

/* ---- the command ---- */

int medley_cmd_generate(int argc, char **argv)
{
    gen_request r;
    memset(&r, 0, sizeof r);
    r.outdir = ".";
    const char *models = NULL, *from = NULL;
    bool outs_given = false, quiet = false;
    char **owned = NULL;
    int nowned = 0, rc = 2;
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
            if (r.nin >= MAX_INPUTS) {
                fprintf(stderr, "medley generate: at most %d inputs\n", MAX_INPUTS);
                goto out;
            }
            if (parse_input(val, &r.in[r.nin]) != 0)
                goto out;
            r.nin++;
        } else if (strcmp(a, "--out") == 0) {
            outs_given = true;
            const char *p = val;
            while (*p) {
                size_t n = strcspn(p, ",+");
                int m = modality_of(p, n);
                if (m < 0) {
                    fprintf(stderr, "medley generate: --out: unknown output \"%.*s\" (expected image, video, text "
                                    "or audio, comma-separated)\n", (int)n, p);
                    goto out;
                }
                r.want[m] = true;
                p += n;
                if (*p)
                    p++;
            }
        } else if (strcmp(a, "--seed") == 0) {
            long v;
            if (medley_parse_int(a, val, 0, 2147483647L, &v)) goto out;
            r.seed = (uint64_t)v;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            r.outdir = val;
        } else if (strcmp(a, "--models") == 0) {
            models = val;
        } else if (strcmp(a, "--from") == 0) {
            from = val;
        } else if (strncmp(a, "--", 2) == 0 && r.nparams < 8 &&
                   (strcmp(a + 2, "temperature") == 0 || strcmp(a + 2, "top-k") == 0 || strcmp(a + 2, "top-p") == 0 ||
                    strcmp(a + 2, "guidance") == 0)) {
            r.params[r.nparams][0] = strcmp(a + 2, "top-k") == 0 ? "top_k" : strcmp(a + 2, "top-p") == 0 ? "top_p" : a + 2;
            r.params[r.nparams][1] = val;
            r.nparams++;
        } else {
            fprintf(stderr, "medley generate: unknown option \"%s\"\n", a);
            goto out;
        }
    }
    if (from) {
        char *job = read_job_from(from);
        if (!job) {
            fprintf(stderr, "medley generate: --from %s: no Medley job in it (only outputs of 'medley generate' "
                            "carry one)\n", from);
            rc = 1;
            goto out;
        }
        if (r.nin > 0 || outs_given) {
            fprintf(stderr, "medley generate: --from takes the inputs and outputs from the file; drop --in/--out\n");
            free(job);
            goto out;
        }
        int e = request_from_job(from, job, &r, &owned, &nowned);
        free(job);
        if (e) {
            rc = 1;
            goto out;
        }
    }
    if (r.nin == 0) {
        fprintf(stderr, "medley generate: no input: give --in text:\"...\" or --in image:FILE (audio:, video:), "
                        "with @WEIGHT where wanted\n");
        goto out;
    }
    if (!r.want[0] && !r.want[1] && !r.want[2] && !r.want[3]) {
        fprintf(stderr, "medley generate: no output: give --out image,video,text\n");
        goto out;
    }
    if (r.want[MD_MOD_AUDIO]) {
        fprintf(stderr, "medley generate: no generator makes audio in this build yet (image, video and text do)\n");
        goto out;
    }
    rc = 1;
    medley_bundle b;
    if (medley_bundle_load(&b, models, true))
        goto out;
    gen_task t;
    memset(&t, 0, sizeof t);
    t.req = &r;
    t.b = &b;
    for (int m = 0; m < 4; m++) {
        if (!r.want[m])
            continue;
        t.gens[m] = md_gen_tokens_new((md_modality)m, &b.tm, &b.vq, &b.sp, b.model_id);
        if (!t.gens[m]) {
            fprintf(stderr, "medley generate: %s\n", md_last_error());
            goto done;
        }
        md_gen_params_default(t.gens[m], t.pv[m]);
        for (int k = 0; k < r.nparams; k++)
            if (md_gen_param_set(t.gens[m], t.pv[m], r.params[k][0], r.params[k][1]) != MD_OK) {
                fprintf(stderr, "medley generate: %s\n", md_last_error());
                goto done;
            }
        t.noutputs++;
    }
    if (compose(&r, &b, r.in, t.cond.vec))
        goto done;
    if (!medley_output_dir(r.outdir, "medley generate"))
        goto done;
    static const char *const ext[4] = {"txt", "png", "wav", "mp4"};
    for (int m = 0; m < 4; m++)
        if (t.gens[m])
            out_path(r.outdir, r.seed, mods[m], ext[m], t.paths[m], sizeof t.paths[m]);
    t.job_json = job_json(&r, r.in, &t);
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
            if (t.gens[m])
                printf("%s\n", t.paths[m]);
        rc = 0;
    }
done:
    free(t.job_json);
    for (int m = 0; m < 4; m++)
        if (t.gens[m])
            md_generator_free(t.gens[m]);
    medley_bundle_free(&b);
out:
    free_request(&r);
    for (int i = 0; i < nowned; i++)
        free(owned[i]);
    free(owned);
    return rc;
}
