/* job.c — see job.h. */
#include "job.h"

#include "image_io.h"
#include "json.h"
#include "space_input.h"
#include "audio_gen.h"
#include "audio_io.h"
#include "image_diffusion_gen.h"
#include "video_diffusion_gen.h"
#include "tokens_gen.h"
#include "video_io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const medley_modality_names[4] = {"text", "image", "audio", "video"};
const char *const medley_output_ext[4] = {"txt", "png", "wav", "mp4"};

int medley_modality_of(const char *name, size_t n)
{
    for (int m = 0; m < 4; m++)
        if (strlen(medley_modality_names[m]) == n && strncasecmp(name, medley_modality_names[m], n) == 0)
            return m;
    return -1;
}

int medley_route_of(const char *name, size_t n)
{
    if (n == 6 && strncasecmp(name, "tokens", 6) == 0)
        return MEDLEY_ROUTE_TOKENS;
    if (n == 9 && strncasecmp(name, "diffusion", 9) == 0)
        return MEDLEY_ROUTE_DIFFUSION;
    return -1;
}

int medley_route_candidates(int modality, int route)
{
    if (modality != MD_MOD_IMAGE && modality != MD_MOD_VIDEO)
        return 0;
    if (route == MEDLEY_ROUTE_DIFFUSION)   /* a video by the video model: 16 frames a candidate */
        return modality == MD_MOD_IMAGE ? MD_GEN_DIFFUSION_CANDIDATES : MD_GEN_VIDEO_DIFFUSION_CANDIDATES;
    return modality == MD_MOD_IMAGE ? MD_GEN_TOKENS_IMAGE_CANDIDATES : MD_GEN_TOKENS_VIDEO_CANDIDATES;
}

double medley_diffusion_steer(void) { return MD_GEN_DIFFUSION_STEER; }

int medley_route_of_generator(const char *gen)
{
    return gen && strncmp(gen, "diffusion-", 10) == 0 ? MEDLEY_ROUTE_DIFFUSION
           : gen && strncmp(gen, "tokens-", 7) == 0  ? MEDLEY_ROUTE_TOKENS
                                                      : MEDLEY_ROUTE_DEFAULT;
}

void medley_job_init(medley_job *j) { memset(j, 0, sizeof *j); }

void medley_job_free(medley_job *j)
{
    for (int i = 0; i < j->nin; i++) {
        free(j->in[i].text);
        free(j->in[i].path);
        free(j->in[i].name);
    }
    for (int i = 0; i < j->nparams; i++) {
        free(j->params[i][0]);
        free(j->params[i][1]);
    }
    medley_job_init(j);
}

static medley_job_input *new_input(medley_job *j, double weight)
{
    if (j->nin >= MEDLEY_JOB_MAX_INPUTS) {
        md_log(MD_LOG_ERROR, "at most %d inputs", MEDLEY_JOB_MAX_INPUTS);
        return NULL;
    }
    if (!isfinite(weight)) {
        md_log(MD_LOG_ERROR, "an input's weight must be a finite number");
        return NULL;
    }
    medley_job_input *in = &j->in[j->nin];
    memset(in, 0, sizeof *in);
    in->weight = weight;
    return in;
}

int medley_job_add_text(medley_job *j, const char *text, double weight)
{
    medley_job_input *in = new_input(j, weight);
    if (!in)
        return -1;
    in->modality = MD_MOD_TEXT;
    in->declared = true;
    if (!(in->text = strdup(text))) {
        md_log(MD_LOG_ERROR, "out of memory");
        return -1;
    }
    return j->nin++;
}

int medley_job_add_file(medley_job *j, const char *path, int modality, double weight)
{
    medley_job_input *in = new_input(j, weight);
    if (!in)
        return -1;
    in->path = strdup(path);
    in->name = strdup(path);
    if (!in->path || !in->name) {
        free(in->path);
        free(in->name);
        md_log(MD_LOG_ERROR, "out of memory");
        return -1;
    }
    in->modality = modality >= 0 ? (md_modality)modality : MD_MOD_TEXT;   /* else decided when read */
    in->declared = modality >= 0;
    return j->nin++;
}

int medley_job_add_bytes(medley_job *j, const char *name, const void *bytes, size_t size, int modality,
                         double weight)
{
    medley_job_input *in = new_input(j, weight);
    if (!in)
        return -1;
    if (!(in->name = strdup(name ? name : "input"))) {
        md_log(MD_LOG_ERROR, "out of memory");
        return -1;
    }
    in->bytes = bytes;
    in->size = size;
    in->modality = modality >= 0 ? (md_modality)modality : MD_MOD_TEXT;
    in->declared = modality >= 0;
    return j->nin++;
}

md_status medley_job_set_param(medley_job *j, const char *name, const char *value)
{
    for (int i = 0; i < j->nparams; i++)
        if (strcmp(j->params[i][0], name) == 0) {
            char *v = strdup(value);
            if (!v)
                return MD_ERR_ALLOC;
            free(j->params[i][1]);
            j->params[i][1] = v;
            return MD_OK;
        }
    if (j->nparams >= MEDLEY_JOB_MAX_PARAMS) {
        md_log(MD_LOG_ERROR, "at most %d parameters", MEDLEY_JOB_MAX_PARAMS);
        return MD_ERR_INVALID;
    }
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return MD_ERR_ALLOC;
    }
    j->params[j->nparams][0] = n;
    j->params[j->nparams][1] = v;
    j->nparams++;
    return MD_OK;
}

void medley_bytes_hash(const void *bytes, size_t size, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)md_fnv1a(MD_FNV1A_INIT, bytes, size));
}

/* ---- the job an output carries ---- */

static char *job_from_text(const char *s, size_t n)
{
    const size_t ml = strlen(MEDLEY_JOB_TXT_MARK);
    for (size_t i = 0; i + ml <= n;) {
        size_t e = i;
        while (e < n && s[e] != '\n')
            e++;
        if (e - i >= ml && memcmp(s + i, MEDLEY_JOB_TXT_MARK, ml) == 0)
            return strndup(s + i + ml, e - i - ml);
        i = e + 1;
    }
    return NULL;
}

static void quiet_log(md_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)msg;
    (void)user;
}

char *medley_job_read_from_bytes(const void *bytes, size_t size, const char *label)
{
    char *job = job_from_text(bytes, size);
    if (job)
        return job;
    md_meta meta = {0};
    md_image im = {0};
    md_video v = {0};
    md_audio a = {0};
    md_media_limits lim = md_media_limits_default();
    md_log_set_callback(quiet_log, NULL);   /* not an image: try video, then audio, quietly */
    if (md_image_load_memory(bytes, size, label, &lim, &im, &meta) == MD_OK ||
        md_video_load_memory(bytes, size, label, &lim, NULL, &v, &meta) == MD_OK) {
        const char *jv = md_meta_get(&meta, MEDLEY_JOB_KEY);
        job = jv ? strdup(jv) : NULL;
    } else if (md_audio_load_memory(bytes, size, label, &lim, &a, &meta) == MD_OK) {
        const char *jv = md_meta_get(&meta, "comment");   /* a WAV of Medley's: the job as its comment */
        job = jv && jv[0] == '{' && strstr(jv, "\"outputs\"") ? strdup(jv) : NULL;
    }
    md_log_set_callback(NULL, NULL);
    md_clear_error();
    md_audio_free(&a);
    md_image_free(&im);
    md_video_free(&v);
    md_meta_free(&meta);
    return job;
}

char *medley_job_read_from(const char *path)
{
    /* outputs of Medley are small; a file too large to be one has no job */
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *job = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n > 0 && n <= (256L << 20) && fseek(f, 0, SEEK_SET) == 0) {
        char *buf = malloc((size_t)n);
        if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n)
            job = medley_job_read_from_bytes(buf, (size_t)n, path);
        free(buf);
    }
    fclose(f);
    return job;
}

md_status medley_job_from_json(medley_job *j, const char *json, const char *label, bool check_files)
{
    md_json_doc *doc;
    if (md_json_parse(json, strlen(json), label, &doc) != MD_OK)
        return MD_ERR_FORMAT;
    const md_json *root = md_json_root(doc), *ins = md_json_get(root, "inputs"), *outs = md_json_get(root, "outputs");
    int64_t seed;
    md_status st = MD_OK;
    if (md_json_type_of(ins) != MD_JSON_ARRAY || md_json_type_of(outs) != MD_JSON_ARRAY ||
        !md_json_int(md_json_get(root, "seed"), &seed) || seed < 0 || md_json_len(ins) < 1 ||
        md_json_len(ins) > MEDLEY_JOB_MAX_INPUTS) {
        md_log(MD_LOG_ERROR, "%s: its job lacks inputs, outputs or seed", label);
        md_json_free(doc);
        return MD_ERR_FORMAT;
    }
    j->seed = (uint64_t)seed;
    for (size_t i = 0; i < md_json_len(ins) && st == MD_OK; i++) {
        const md_json *e = md_json_at(ins, i);
        const char *mod = md_json_str(md_json_get(e, "modality"));
        int m = mod ? medley_modality_of(mod, strlen(mod)) : -1;
        double w;
        if (m < 0 || !md_json_num(md_json_get(e, "weight"), &w)) {
            md_log(MD_LOG_ERROR, "%s: input %zu has no modality or weight", label, i + 1);
            st = MD_ERR_FORMAT;
            break;
        }
        const char *tx = md_json_str(md_json_get(e, "text")), *file = md_json_str(md_json_get(e, "file"));
        const char *hash = md_json_str(md_json_get(e, "hash"));
        if (m == MD_MOD_TEXT && tx) {
            if (medley_job_add_text(j, tx, w) < 0)
                st = MD_ERR;
            continue;
        }
        if (!file || !hash || strlen(hash) != 16) {
            md_log(MD_LOG_ERROR, "%s: input %zu has neither text nor file", label, i + 1);
            st = MD_ERR_FORMAT;
            break;
        }
        if (check_files) {
            char now[17];
            if (medley_file_hash(file, now) != 0) {
                md_log(MD_LOG_ERROR, "%s: its input %s cannot be read: %s", label, file, strerror(errno));
                st = MD_ERR_IO;
                break;
            }
            if (strcmp(now, hash) != 0) {
                md_log(MD_LOG_ERROR, "%s: its input %s has changed since (hash %s, now %s)", label, file, hash, now);
                st = MD_ERR_INVALID;
                break;
            }
        }
        int k = medley_job_add_file(j, file, m, w);
        if (k < 0)
            st = MD_ERR;
        else
            memcpy(j->in[k].hash, hash, 17);
    }
    for (size_t i = 0; i < md_json_len(outs) && st == MD_OK; i++) {
        const md_json *e = md_json_at(outs, i), *ps = md_json_get(e, "params");
        const char *mod = md_json_str(md_json_get(e, "modality"));
        int m = mod ? medley_modality_of(mod, strlen(mod)) : -1;
        if (m < 0) {
            md_log(MD_LOG_ERROR, "%s: output %zu has no modality", label, i + 1);
            st = MD_ERR_FORMAT;
            break;
        }
        j->want[m] = true;
        j->route[m] = medley_route_of_generator(md_json_str(md_json_get(e, "generator")));
        /* every parameter as that output had it */
        for (size_t k = 0; st == MD_OK && md_json_type_of(ps) == MD_JSON_OBJECT && k < md_json_len(ps); k++) {
            double v;
            if (!md_json_num(md_json_at(ps, k), &v))
                continue;
            char num[64], name[96];
            snprintf(num, sizeof num, "%.17g", v);
            snprintf(name, sizeof name, "%s.%s", medley_modality_names[m], md_json_key_at(ps, k));
            st = medley_job_set_param(j, name, num);
        }
    }
    md_json_free(doc);
    if (st != MD_OK)
        medley_job_free(j);
    return st;
}

/* ---- composing ---- */

/* The typed text that leads: the first text input of positive weight (-1: none). */
static int job_text_index(const medley_job *j)
{
    for (int i = 0; i < j->nin; i++)
        if (j->in[i].text && j->in[i].weight > 0)
            return i;
    return -1;
}

const char *medley_job_text(const medley_job *j)
{
    int i = job_text_index(j);
    return i >= 0 ? j->in[i].text : NULL;
}

float medley_job_text_share(const medley_job *j)
{
    const int t = job_text_index(j);
    double sum = 0.0;
    for (int i = 0; i < j->nin; i++)
        sum += fabs(j->in[i].weight);
    return t >= 0 && sum > 0.0 ? (float)(j->in[t].weight / sum) : 0.f;
}

md_status medley_job_compose(medley_job *j, const md_space *sp, float *cond)
{
    float *v = malloc(sizeof(float) * MD_SPACE_DIM * (size_t)(j->nin ? j->nin : 1));
    float w[MEDLEY_JOB_MAX_INPUTS];
    md_graph *g = md_graph_new((size_t)1 << 24);
    md_status st = v && g ? MD_OK : MD_ERR_ALLOC;
    if (st == MD_OK && j->nin == 0) {
        md_log(MD_LOG_ERROR, "no input");
        st = MD_ERR_INVALID;
    }
    for (int i = 0; i < j->nin && st == MD_OK; i++) {
        medley_job_input *in = &j->in[i];
        md_space_input si;
        if (in->text)
            st = md_space_input_from_text(in->text, &si);
        else if (in->path)
            st = md_space_input_from_file(in->path, &si);
        else
            st = md_space_input_from_memory(in->bytes, in->size, in->name, &si);
        if (st != MD_OK)
            break;
        if (!in->text && in->declared && si.modality != in->modality) {
            md_log(MD_LOG_ERROR, "%s: given as %s, but it holds %s", in->name, medley_modality_names[in->modality],
                   medley_modality_names[si.modality]);
            md_space_input_free(&si);
            st = MD_ERR_INVALID;
            break;
        }
        if (!in->text) {
            in->modality = si.modality;
            if (in->path && medley_file_hash(in->path, in->hash) != 0) {
                md_log(MD_LOG_ERROR, "%s: cannot read it: %s", in->path, strerror(errno));
                md_space_input_free(&si);
                st = MD_ERR_IO;
                break;
            }
            if (!in->path)
                medley_bytes_hash(in->bytes, in->size, in->hash);
        }
        st = md_space_embed_input(sp, g, &si, v + MD_SPACE_DIM * i);
        md_space_input_free(&si);
        w[i] = (float)in->weight;
    }
    if (st == MD_OK && md_space_compose(v, w, j->nin, cond) != MD_OK) {
        md_log(MD_LOG_ERROR, "the inputs' weights: %s", md_last_error());
        st = MD_ERR_INVALID;
    }
    md_graph_free(g);
    free(v);
    return st;
}

/* ---- generators ---- */

md_generator *medley_video_diffusion_new(const medley_bundle *b, md_gen_workspace *ws)
{
    if (b->have_vg)
        return md_gen_video_diffusion_temporal_new(&b->vg, &b->sp, b->have_mo ? &b->mo : NULL, b->model_id, ws);
    return md_gen_video_diffusion_new(&b->ig, &b->vq, &b->sp, &b->mo, b->model_id, ws);
}

md_status medley_gens_prepare(medley_gens *g, const medley_job *j, const medley_bundle *b)
{
    memset(g->active, 0, sizeof g->active);
    g->count = 0;
    if (!g->ws && !(g->ws = md_gen_workspace_new()))
        return MD_ERR_ALLOC;
    if (j->want[MD_MOD_AUDIO] && !b->have_ag) {
        md_log(MD_LOG_ERROR, "audio output needs the audio decoder (audiogen.safetensors in the models folder; "
                             "train it with 'medley train audio')");
        return MD_ERR_INVALID;
    }
    for (int m = 0; m < 4; m++) {
        if (!j->want[m])
            continue;
        const int route = j->route[m];
        if (route == MEDLEY_ROUTE_DIFFUSION && m == MD_MOD_TEXT) {
            md_log(MD_LOG_ERROR, "%s output: no diffusion path (pictures, videos and audio have one)",
                   medley_modality_names[m]);
            return MD_ERR_INVALID;
        }
        if (route == MEDLEY_ROUTE_TOKENS && m == MD_MOD_AUDIO) {
            md_log(MD_LOG_ERROR, "audio output: no token path (audio is made by diffusion)");
            return MD_ERR_INVALID;
        }
        const bool diff_image = m == MD_MOD_IMAGE && route == MEDLEY_ROUTE_DIFFUSION,
                   diff_video = m == MD_MOD_VIDEO && route == MEDLEY_ROUTE_DIFFUSION;
        const bool temporal = diff_video && b->have_vg;   /* the video model; else a picture moved */
        if ((diff_image || (diff_video && !temporal)) && !b->have_ig) {
            md_log(MD_LOG_ERROR, "%s:diffusion needs the picture diffusion decoder (imagegen.safetensors in the "
                                 "models folder; train it with 'medley train diffusion')", medley_modality_names[m]);
            return MD_ERR_INVALID;
        }
        if (diff_video && !temporal && !b->have_mo) {
            md_log(MD_LOG_ERROR, "video:diffusion needs the motion model (motion.safetensors in the models folder; "
                                 "train it with 'medley train motion')");
            return MD_ERR_INVALID;
        }
        if (g->gen[m] && g->route[m] != route) {   /* another path than last time */
            md_generator_free(g->gen[m]);
            g->gen[m] = NULL;
        }
        g->route[m] = route;
        if (!g->gen[m] &&
            !(g->gen[m] = m == MD_MOD_AUDIO ? md_gen_audio_new(&b->ag, b->have_voc ? &b->voc : NULL, &b->sp, b->model_id, g->ws)
                          : diff_image ? md_gen_image_diffusion_new(&b->ig, &b->vq, &b->sp, b->model_id, g->ws)
                          : diff_video ? medley_video_diffusion_new(b, g->ws)
                                       : md_gen_tokens_new((md_modality)m, &b->tm, &b->vq, &b->sp, b->have_mo ? &b->mo : NULL,
                                                           b->model_id, g->ws)))
            return MD_ERR;
        md_gen_params_default(g->gen[m], g->pv[m]);
        g->active[m] = true;
        g->count++;
    }
    if (g->count == 0) {
        md_log(MD_LOG_ERROR, "no output chosen");
        return MD_ERR_INVALID;
    }
    /* a parameter applies to every chosen generator that has it, one scoped
     * to an output ("image.guidance") to that one only, after the others;
     * one that reaches no chosen generator is an error */
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < j->nparams; k++) {
            const char *name = j->params[k][0], *dot = strchr(name, '.');
            int only = dot ? medley_modality_of(name, (size_t)(dot - name)) : -1;
            if (dot && only < 0) {
                md_log(MD_LOG_ERROR, "parameter \"%s\": expected text., image., video. or audio. before the dot",
                       name);
                return MD_ERR_INVALID;
            }
            if ((pass == 0) != (only < 0))
                continue;
            const char *bare = dot ? dot + 1 : name;
            bool used = false;
            for (int m = 0; m < 4; m++) {
                if (!g->active[m] || (only >= 0 && m != only) || md_gen_param_index(g->gen[m], bare) < 0)
                    continue;
                used = true;
                if (md_gen_param_set(g->gen[m], g->pv[m], bare, j->params[k][1]) != MD_OK)
                    return MD_ERR_INVALID;
            }
            if (!used) {
                md_log(MD_LOG_ERROR, only >= 0 ? "parameter \"%s\": that output is not chosen, or has no such "
                                                 "parameter"
                                               : "no chosen output has a parameter \"%s\"",
                       name);
                return MD_ERR_INVALID;
            }
        }
    return MD_OK;
}

void medley_gens_free(medley_gens *g)
{
    for (int m = 0; m < 4; m++)
        if (g->gen[m])
            md_generator_free(g->gen[m]);
    md_gen_workspace_free(g->ws);   /* after the generators it lent to */
    memset(g, 0, sizeof *g);
}

char *medley_job_json(const medley_job *j, const medley_gens *g, const char *model_id)
{
    md_json_buf b;
    md_json_buf_init(&b);
    md_json_buf_begin_object(&b);
    md_json_buf_key(&b, "medley");
    md_json_buf_str(&b, MEDLEY_VERSION);
    md_json_buf_key(&b, "inputs");
    md_json_buf_begin_array(&b);
    for (int i = 0; i < j->nin; i++) {
        const medley_job_input *in = &j->in[i];
        md_json_buf_begin_object(&b);
        md_json_buf_key(&b, "modality");
        md_json_buf_str(&b, medley_modality_names[in->modality]);
        if (in->text) {
            md_json_buf_key(&b, "text");
            md_json_buf_str(&b, in->text);
        } else {
            md_json_buf_key(&b, "file");
            md_json_buf_str(&b, in->name);
            md_json_buf_key(&b, "hash");
            md_json_buf_str(&b, in->hash);
        }
        md_json_buf_key(&b, "weight");
        md_json_buf_num(&b, in->weight);
        md_json_buf_end_object(&b);
    }
    md_json_buf_end_array(&b);
    md_json_buf_key(&b, "outputs");
    md_json_buf_begin_array(&b);
    for (int m = 0; m < 4; m++)
        if (g->active[m]) {
            md_json_buf_begin_object(&b);
            md_json_buf_key(&b, "modality");
            md_json_buf_str(&b, medley_modality_names[m]);
            md_json_buf_key(&b, "generator");
            md_json_buf_str(&b, g->gen[m]->name);
            md_json_buf_key(&b, "params");
            md_json_buf_begin_object(&b);
            for (int k = 0; k < g->gen[m]->nparams; k++) {
                md_json_buf_key(&b, g->gen[m]->params[k].name);
                md_json_buf_num(&b, g->pv[m][k]);
            }
            md_json_buf_end_object(&b);
            md_json_buf_end_object(&b);
        }
    md_json_buf_end_array(&b);
    md_json_buf_key(&b, "seed");
    md_json_buf_int(&b, (int64_t)j->seed);
    md_json_buf_key(&b, "models");
    md_json_buf_str(&b, model_id);
    md_json_buf_end_object(&b);
    return md_json_buf_finish(&b, NULL);
}

typedef struct run_progress {
    md_gen_progress_fn fn;
    void *user;
    int current, count;
} run_progress;

static void on_progress(const char *stage, int64_t step, int64_t steps, double fraction, const md_image *preview,
                        void *user)
{
    run_progress *p = user;
    if (p->fn)
        p->fn(stage, step, steps, ((double)p->current + fraction) / (double)p->count, preview, p->user);
}

md_status medley_gens_run(medley_gens *g, const medley_job *j, const md_gen_condition *c,
                          md_gen_progress_fn progress, void *user, const volatile int *cancel, md_gen_output outs[4])
{
    memset(outs, 0, sizeof(md_gen_output) * 4);
    run_progress rp = {progress, user, 0, g->count};
    md_status st = MD_OK;
    for (int m = 0; m < 4 && st == MD_OK; m++) {
        if (!g->active[m])
            continue;
        st = g->gen[m]->run(g->gen[m]->self, c, g->pv[m], j->seed, on_progress, &rp, cancel, &outs[m]);
        rp.current++;
    }
    if (st == MD_OK && cancel && *cancel)
        st = MD_ABORTED;
    /* video and audio from one condition: the video carries the clip */
    if (st == MD_OK && g->active[MD_MOD_VIDEO] && g->active[MD_MOD_AUDIO]) {
        const md_audio *a = &outs[MD_MOD_AUDIO].audio;
        md_audio *t = &outs[MD_MOD_VIDEO].video.audio;
        md_audio_free(t);
        st = md_audio_alloc(t, a->rate, a->channels, a->frames);
        if (st == MD_OK)
            memcpy(t->samples, a->samples, sizeof(float) * (size_t)(a->frames * a->channels));
    }
    if (st != MD_OK)
        for (int m = 0; m < 4; m++)
            md_gen_output_free(&outs[m]);
    return st;
}

md_status medley_output_write(const char *job_json, md_modality m, const md_gen_output *o, const char *path)
{
    md_meta meta = {0};
    md_status st = md_meta_set(&meta, MEDLEY_JOB_KEY, job_json);
    if (st == MD_OK && m == MD_MOD_IMAGE)
        st = md_image_save_png(path, &o->image, &meta, 8);
    else if (st == MD_OK && m == MD_MOD_VIDEO)
        st = md_video_save(path, &o->video, "mp4", &meta);
    else if (st == MD_OK && m == MD_MOD_AUDIO) {
        md_meta wm = {0};   /* WAV INFO holds the job as its comment */
        st = md_meta_set(&wm, "comment", job_json);
        if (st == MD_OK)
            st = md_meta_set(&wm, "software", "Medley");
        if (st == MD_OK)
            st = md_audio_save(path, &o->audio, "wav", &wm);
        md_meta_free(&wm);
    }
    else if (st == MD_OK && m == MD_MOD_TEXT) {
        size_t n = strlen(o->text) + strlen(job_json) + sizeof MEDLEY_JOB_TXT_MARK + 4;
        char *buf = malloc(n);
        if (!buf)
            st = MD_ERR_ALLOC;
        else {
            int len = snprintf(buf, n, "%s\n" MEDLEY_JOB_TXT_MARK "%s\n", o->text, job_json);
            st = md_write_file_atomic(path, buf, (size_t)len);
            free(buf);
        }
    } else if (st == MD_OK) {
        md_log(MD_LOG_ERROR, "%s: no writer for %s outputs yet", path, medley_modality_names[m]);
        st = MD_ERR_UNSUPPORTED;
    }
    md_meta_free(&meta);
    return st;
}
