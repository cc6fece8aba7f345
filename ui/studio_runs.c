/* studio_runs.c — outputs, parameters and seed; the queue of jobs (run on
 * the queue's worker thread through app/job.h, reported to the main thread
 * by g_idle_add); the history of runs and the view of a run's outputs:
 * image with zoom, video playing in the window (or popped out to the SDL2
 * player), text with copy; outputs drag out as files; restore a job. */
#include "studio.h"

#include "json.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *const mod_names[4] = {"text", "image", "audio", "video"};

/* ---- the worker's side ---- */

static void on_gen_progress(const char *stage, int64_t step, int64_t steps, double fraction, const md_image *preview,
                            void *user)
{
    md_job_report_progress(user, stage, step, steps, fraction, preview, preview ? 1 : 0);
}

static md_status read_back(const char *path, md_blob **out)
{
    char *bytes;
    gsize n;
    GError *err = NULL;
    if (!g_file_get_contents(path, &bytes, &n, &err)) {
        md_log(MD_LOG_ERROR, "%s: %s", path, err->message);
        g_error_free(err);
        return MD_ERR_IO;
    }
    *out = md_blob_new(bytes, n);
    g_free(bytes);
    return *out ? MD_OK : MD_ERR_ALLOC;
}

/* Runs on the worker thread: everything a generation computes happens
 * here, under the models' lock. */
static md_status run_job(void *task, md_job_ctx *ctx)
{
    studio_job *sj = task;
    MedleyWindow *w = sj->win;
    /* the window comes first: the worker (and the compute threads it
     * starts, which inherit this) yields to the main loop */
    static __thread bool lowered;
    if (!lowered) {
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
        lowered = true;
    }
    g_mutex_lock(&w->models_lock);
    md_status st = MD_OK;
    if (!w->bundle_loaded && !w->bundle_failed) {
        md_job_report_progress(ctx, "loading models", 0, 1, 0.0, NULL, 0);
        if (medley_bundle_load(&w->bundle, NULL, true) == 0) {
            w->bundle_loaded = true;
        } else {
            w->bundle_failed = true;
            snprintf(w->bundle_error, sizeof w->bundle_error,
                     "the bundled models could not be loaded from %s (set MEDLEY_MODELS_DIR): %s",
                     medley_models_dir(NULL), md_last_error());
        }
    }
    if (w->bundle_failed) {
        md_log(MD_LOG_ERROR, "%s", w->bundle_error);
        st = MD_ERR;
    }
    md_gen_condition c = {{0}, NULL, 0.f};
    if (st == MD_OK)
        st = medley_gens_prepare(&w->gens, &sj->job, &w->bundle);
    if (st == MD_OK) {
        md_job_report_progress(ctx, "reading inputs", 0, 1, 0.0, NULL, 0);
        st = medley_job_compose(&sj->job, &w->bundle.sp, c.vec);
        c.text = medley_job_text(&sj->job);
        c.text_share = medley_job_text_share(&sj->job);
    }
    if (st == MD_OK && !(sj->job_json = medley_job_json(&sj->job, &w->gens, w->bundle.model_id)))
        st = MD_ERR_ALLOC;
    md_gen_output outs[4];
    memset(outs, 0, sizeof outs);
    if (st == MD_OK)
        st = medley_gens_run(&w->gens, &sj->job, &c, on_gen_progress, ctx, md_job_cancel_flag(ctx), outs);
    for (int m = 0; m < 4 && st == MD_OK; m++) {
        if (!w->gens.active[m])
            continue;
        char name[96], *path;
        snprintf(name, sizeof name, "medley-%llu-%s-%lld.%s", (unsigned long long)sj->job.seed, mod_names[m],
                 (long long)sj->id, medley_output_ext[m]);
        path = g_build_filename(w->out_dir, name, NULL);
        st = medley_output_write(sj->job_json, (md_modality)m, &outs[m], path);
        md_blob *b = NULL;
        if (st == MD_OK)
            st = read_back(path, &b);
        if (st == MD_OK) {
            snprintf(name, sizeof name, "medley-%llu-%s.%s", (unsigned long long)sj->job.seed, mod_names[m],
                     medley_output_ext[m]);
            sj->out[sj->nout].modality = (md_modality)m;
            sj->out[sj->nout].name = g_strdup(name);
            sj->out[sj->nout].media = b;
            sj->nout++;
        }
        g_free(path);
    }
    for (int m = 0; m < 4; m++)
        md_gen_output_free(&outs[m]);
    g_mutex_unlock(&w->models_lock);
    return st;
}

static void studio_job_free(studio_job *sj)
{
    medley_job_free(&sj->job);
    for (int i = 0; i < MEDLEY_JOB_MAX_INPUTS; i++)
        md_blob_unref(sj->media[i]);
    for (int k = 0; k < sj->nout; k++) {
        g_free(sj->out[k].name);
        md_blob_unref(sj->out[k].media);
    }
    free(sj->job_json);
    g_free(sj);
}

/* ---- reports, on the main thread ---- */

typedef struct report_msg {
    MedleyWindow *w;
    int64_t id;
    md_job_state state;
    char stage[64];
    double progress;
    GBytes *preview;                 /* RGB8 */
    int pw, ph;
    char error[512];
} report_msg;

static studio_job *find_job(MedleyWindow *w, int64_t id)
{
    for (guint i = 0; i < w->jobs->len; i++) {
        studio_job *sj = g_ptr_array_index(w->jobs, i);
        if (sj->id == id)
            return sj;
    }
    return NULL;
}

static void finish_job(MedleyWindow *w, studio_job *sj, md_job_state state, const char *error)
{
    if (g_getenv("MEDLEY_STUDIO_DEBUG"))
        fprintf(stderr, "finish at frame %lld\n", (long long)w->frames);
    if (state == MD_JOB_DONE) {
        int r = md_project_add_run(&w->project, sj->job_json, MD_RUN_DONE, NULL, sj->out, sj->nout);
        if (r >= 0) {
            medley_window_changed(w);
            studio_runs_refresh_history(w);
            studio_runs_show(w, r);
        }
    } else if (state == MD_JOB_FAILED) {
        md_project_add_run(&w->project, sj->job_json ? sj->job_json : "{}", MD_RUN_FAILED, error, NULL, 0);
        medley_window_changed(w);
        studio_runs_refresh_history(w);
        medley_window_toast(w, "The run failed: %s", error && *error ? error : "unknown reason");
    } else {
        medley_window_toast(w, "Run cancelled");
    }
    if (sj->row)
        gtk_list_box_remove(w->queue_list, sj->row);
    g_ptr_array_remove(w->jobs, sj);
    studio_job_free(sj);
}

static gboolean on_report_main(gpointer data)
{
    report_msg *m = data;
    MedleyWindow *w = m->w;
    studio_job *sj = w->jobs ? find_job(w, m->id) : NULL;   /* none once the window shut down */
    if (sj && (m->state == MD_JOB_DONE || m->state == MD_JOB_FAILED || m->state == MD_JOB_CANCELLED)) {
        finish_job(w, sj, m->state, m->error);
    } else if (sj) {
        gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(sj->bar), m->progress);
        if (m->stage[0])
            gtk_progress_bar_set_text(GTK_PROGRESS_BAR(sj->bar), m->stage);
        if (m->preview) {
            GdkTexture *t = gdk_memory_texture_new(m->pw, m->ph, GDK_MEMORY_R8G8B8, m->preview, (gsize)m->pw * 3);
            gtk_picture_set_paintable(GTK_PICTURE(sj->picture), GDK_PAINTABLE(t));
            g_object_unref(t);
        }
    }
    if (m->preview)
        g_bytes_unref(m->preview);
    g_object_unref(w);
    g_free(m);
    return G_SOURCE_REMOVE;
}

/* On the worker thread (or the caller of md_jobs_cancel): copy, hand over. */
static void on_report(const md_job_report *r, void *user)
{
    MedleyWindow *w = user;
    /* progress comes at every token: pass on at most ~15 a second (a
     * preview, a new stage or a final state always), so the window redraws
     * for news, not for every step */
    static __thread gint64 last_us;
    static __thread char last_stage[64];
    gint64 now = g_get_monotonic_time();
    bool news = r->state != MD_JOB_RUNNING || r->preview || !r->stage || strcmp(r->stage, last_stage) != 0;
    if (!news && now - last_us < 66000)
        return;
    last_us = now;
    g_strlcpy(last_stage, r->stage ? r->stage : "", sizeof last_stage);
    report_msg *m = g_new0(report_msg, 1);
    m->w = g_object_ref(w);
    m->id = r->id;
    m->state = r->state;
    m->progress = r->progress;
    if (r->stage)
        g_strlcpy(m->stage, r->stage, sizeof m->stage);
    if (r->error)
        g_strlcpy(m->error, r->error, sizeof m->error);
    if (r->preview && r->preview_kind == 1) {
        const md_image *im = r->preview;
        m->preview = studio_rgb8_of(im);
        m->pw = im->width;
        m->ph = im->height;
    }
    g_idle_add(on_report_main, m);
}

/* ---- settings ---- */

/* The per-output parameter widgets by name. */
static GtkSpinButton *param_spin(MedleyWindow *w, int m, const char *name)
{
    if (m < 0 || m > 3)
        return NULL;
    if (strcmp(name, "guidance") == 0)
        return w->guidance[m];
    if (strcmp(name, "temperature") == 0)
        return w->temperature[m];
    if (strcmp(name, "candidates") == 0)
        return w->candidates[m];
    if (strcmp(name, "steps") == 0)
        return w->steps[m];
    if (strcmp(name, "steer") == 0)
        return w->steer[m];
    return NULL;
}

#define NPARAM_NAMES 5
static const char *const param_names[NPARAM_NAMES] = {"guidance", "temperature", "candidates", "steps", "steer"};

char *studio_settings_json(MedleyWindow *w)
{
    md_json_buf b;
    md_json_buf_init(&b);
    md_json_buf_begin_object(&b);
    md_json_buf_key(&b, "outputs");
    md_json_buf_begin_array(&b);
    for (int m = 0; m < 4; m++)
        if (gtk_check_button_get_active(w->want[m]))
            md_json_buf_str(&b, mod_names[m]);
    md_json_buf_end_array(&b);
    md_json_buf_key(&b, "seed");
    md_json_buf_int(&b, (int64_t)gtk_spin_button_get_value(w->seed));
    md_json_buf_key(&b, "image_diffusion");
    md_json_buf_int(&b, gtk_check_button_get_active(w->diffusion_image));
    md_json_buf_key(&b, "video_diffusion");
    md_json_buf_int(&b, gtk_check_button_get_active(w->diffusion_video));
    md_json_buf_key(&b, "audio_vocoder");
    md_json_buf_int(&b, gtk_check_button_get_active(w->vocoder_audio));
    md_json_buf_key(&b, "seed_locked");
    md_json_buf_int(&b, gtk_toggle_button_get_active(w->seed_lock));
    md_json_buf_key(&b, "params");
    md_json_buf_begin_object(&b);
    for (int m = 0; m < 4; m++) {
        if (!w->guidance[m])
            continue;
        md_json_buf_key(&b, mod_names[m]);
        md_json_buf_begin_object(&b);
        for (int k = 0; k < NPARAM_NAMES; k++) {
            GtkSpinButton *sb = param_spin(w, m, param_names[k]);
            if (sb) {
                md_json_buf_key(&b, param_names[k]);
                md_json_buf_num(&b, gtk_spin_button_get_value(sb));
            }
        }
        md_json_buf_end_object(&b);
    }
    md_json_buf_end_object(&b);
    md_json_buf_end_object(&b);
    char *s = md_json_buf_finish(&b, NULL);
    char *g = g_strdup(s);
    free(s);
    return g;
}

void studio_settings_apply(MedleyWindow *w, const char *json)
{
    md_json_doc *doc;
    if (!json || md_json_parse(json, strlen(json), "settings", &doc) != MD_OK)
        return;
    const md_json *r = md_json_root(doc), *outs = md_json_get(r, "outputs"), *ps = md_json_get(r, "params");
    if (md_json_type_of(outs) == MD_JSON_ARRAY) {
        for (int m = 0; m < 4; m++)
            gtk_check_button_set_active(w->want[m], FALSE);
        for (size_t i = 0; i < md_json_len(outs); i++) {
            const char *s = md_json_str(md_json_at(outs, i));
            int m = s ? medley_modality_of(s, strlen(s)) : -1;
            if (m >= 0)
                gtk_check_button_set_active(w->want[m], TRUE);
        }
    }
    double v;
    int64_t k;
    if (md_json_int(md_json_get(r, "seed"), &k))
        gtk_spin_button_set_value(w->seed, (double)k);
    if (md_json_int(md_json_get(r, "image_diffusion"), &k))
        gtk_check_button_set_active(w->diffusion_image, k != 0);
    if (md_json_int(md_json_get(r, "video_diffusion"), &k))
        gtk_check_button_set_active(w->diffusion_video, k != 0);
    if (md_json_int(md_json_get(r, "audio_vocoder"), &k))
        gtk_check_button_set_active(w->vocoder_audio, k != 0);
    if (md_json_int(md_json_get(r, "seed_locked"), &k))
        gtk_toggle_button_set_active(w->seed_lock, k != 0);
    for (size_t i = 0; md_json_type_of(ps) == MD_JSON_OBJECT && i < md_json_len(ps); i++) {
        const char *mod = md_json_key_at(ps, i);
        int m = medley_modality_of(mod, strlen(mod));
        const md_json *o = md_json_at(ps, i);
        for (size_t q = 0; md_json_type_of(o) == MD_JSON_OBJECT && q < md_json_len(o); q++) {
            GtkSpinButton *sb = param_spin(w, m, md_json_key_at(o, q));
            if (sb && md_json_num(md_json_at(o, q), &v))
                gtk_spin_button_set_value(sb, v);
        }
    }
    md_json_free(doc);
}

/* ---- generate / cancel ---- */

static void on_cancel_clicked(GtkButton *b, gpointer user)
{
    MedleyWindow *w = user;
    int64_t id = GPOINTER_TO_INT(g_object_get_data(G_OBJECT(b), "job-id"));
    md_jobs_cancel(w->queue, id);
}

int64_t studio_runs_generate(MedleyWindow *w)
{
    studio_job *sj = g_new0(studio_job, 1);
    sj->win = w;
    medley_job_init(&sj->job);
    int k = 0;
    for (int i = 0; i < w->project.board.n; i++) {
        const md_proj_input *in = &w->project.board.in[i];
        if (in->muted)
            continue;
        int r = in->text ? medley_job_add_text(&sj->job, in->text, in->weight)
                         : medley_job_add_bytes(&sj->job, in->name, in->media->data, in->media->size,
                                                (int)in->modality, in->weight);
        if (r < 0) {
            medley_window_toast(w, "Cannot run: %s", md_last_error());
            studio_job_free(sj);
            return -1;
        }
        if (in->media)
            sj->media[k] = md_blob_ref(in->media);
        k++;
    }
    if (sj->job.nin == 0) {
        medley_window_toast(w, w->project.board.n ? "Every input is muted: unmute one to run"
                                                  : "Add an input first: drop a file, paste, or type a description");
        studio_job_free(sj);
        return -1;
    }
    bool any = false;
    for (int m = 0; m < 4; m++)
        any |= sj->job.want[m] = gtk_check_button_get_active(w->want[m]);
    if (!any) {
        medley_window_toast(w, "Choose at least one output");
        studio_job_free(sj);
        return -1;
    }
    if (!gtk_toggle_button_get_active(w->seed_lock))
        gtk_spin_button_set_value(w->seed, (double)g_random_int_range(0, G_MAXINT));
    sj->job.seed = (uint64_t)gtk_spin_button_get_value(w->seed);
    if (gtk_check_button_get_active(w->diffusion_image))
        sj->job.route[MD_MOD_IMAGE] = MEDLEY_ROUTE_DIFFUSION;
    if (gtk_check_button_get_active(w->diffusion_video))
        sj->job.route[MD_MOD_VIDEO] = MEDLEY_ROUTE_DIFFUSION;
    /* each chosen output's own parameters */
    for (int m = 0; m < 4; m++)
        for (int q = 0; sj->job.want[m] && q < NPARAM_NAMES; q++) {
            GtkSpinButton *sb = param_spin(w, m, param_names[q]);
            if (!sb || !gtk_widget_get_sensitive(GTK_WIDGET(sb)))   /* greyed out: the chosen path does not read it */
                continue;
            char name[64], num[64];
            snprintf(name, sizeof name, "%s.%s", mod_names[m], param_names[q]);
            g_ascii_dtostr(num, sizeof num, gtk_spin_button_get_value(sb));
            medley_job_set_param(&sj->job, name, num);
        }
    if (sj->job.want[MD_MOD_AUDIO] && gtk_check_button_get_active(w->vocoder_audio))
        medley_job_set_param(&sj->job, "audio.vocoder", "1");

    /* the queue row */
    GtkWidget *row = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 8);
    gtk_widget_set_margin_start(row, 8);
    gtk_widget_set_margin_end(row, 8);
    gtk_widget_set_margin_top(row, 4);
    gtk_widget_set_margin_bottom(row, 4);
    sj->picture = gtk_picture_new();
    gtk_widget_set_size_request(sj->picture, 48, 48);
    gtk_box_append(GTK_BOX(row), sj->picture);
    GtkWidget *mid = gtk_box_new(GTK_ORIENTATION_VERTICAL, 2);
    gtk_widget_set_hexpand(mid, TRUE);
    GString *what = g_string_new(NULL);
    for (int m = 0; m < 4; m++)
        if (sj->job.want[m])
            g_string_append_printf(what, "%s%s", what->len ? ", " : "", mod_names[m]);
    char *text = g_strdup_printf("Seed %llu → %s", (unsigned long long)sj->job.seed, what->str);
    g_string_free(what, TRUE);
    sj->label = gtk_label_new(text);
    g_free(text);
    gtk_label_set_xalign(GTK_LABEL(sj->label), 0);
    gtk_box_append(GTK_BOX(mid), sj->label);
    sj->bar = gtk_progress_bar_new();
    gtk_progress_bar_set_show_text(GTK_PROGRESS_BAR(sj->bar), TRUE);
    gtk_progress_bar_set_text(GTK_PROGRESS_BAR(sj->bar), "queued");
    gtk_box_append(GTK_BOX(mid), sj->bar);
    gtk_box_append(GTK_BOX(row), mid);
    GtkWidget *cancel = gtk_button_new_from_icon_name("process-stop-symbolic");
    gtk_widget_set_tooltip_text(cancel, "Cancel this job");
    gtk_widget_set_valign(cancel, GTK_ALIGN_CENTER);
    gtk_widget_add_css_class(cancel, "flat");
    gtk_box_append(GTK_BOX(row), cancel);
    gtk_list_box_append(w->queue_list, row);
    sj->row = gtk_widget_get_parent(row);   /* the GtkListBoxRow */

    g_ptr_array_add(w->jobs, sj);
    sj->id = md_jobs_submit(w->queue, run_job, sj, NULL);
    if (sj->id < 0) {
        gtk_list_box_remove(w->queue_list, sj->row);
        g_ptr_array_remove(w->jobs, sj);
        studio_job_free(sj);
        medley_window_toast(w, "Cannot queue the run (out of memory)");
        return -1;
    }
    g_object_set_data(G_OBJECT(cancel), "job-id", GINT_TO_POINTER((int)sj->id));
    g_signal_connect(cancel, "clicked", G_CALLBACK(on_cancel_clicked), w);
    return sj->id;
}

void studio_runs_cancel_current(MedleyWindow *w)
{
    /* the running job is the oldest one still in the queue */
    if (w->jobs->len == 0) {
        medley_window_toast(w, "Nothing is running");
        return;
    }
    studio_job *sj = g_ptr_array_index(w->jobs, 0);
    md_jobs_cancel(w->queue, sj->id);
    gtk_progress_bar_set_text(GTK_PROGRESS_BAR(sj->bar), "cancelling…");
}

/* ---- history ---- */

static char *run_title(const md_proj_run *r)
{
    md_json_doc *doc;
    int64_t seed = -1;
    GString *s = g_string_new(NULL);
    if (md_json_parse(r->job, strlen(r->job), "job", &doc) == MD_OK) {
        md_json_int(md_json_get(md_json_root(doc), "seed"), &seed);
        const md_json *outs = md_json_get(md_json_root(doc), "outputs");
        for (size_t i = 0; i < md_json_len(outs); i++) {
            const char *m = md_json_str(md_json_get(md_json_at(outs, i), "modality"));
            g_string_append_printf(s, "%s%s", s->len ? ", " : "", m ? m : "?");
        }
        md_json_free(doc);
    }
    GDateTime *t = g_date_time_new_from_unix_local(r->created);
    char *when = t ? g_date_time_format(t, "%H:%M:%S") : g_strdup("");
    if (t)
        g_date_time_unref(t);
    char *title = g_strdup_printf("%s · seed %lld · %s%s", when, (long long)seed, s->len ? s->str : "—",
                                  r->state == MD_RUN_FAILED ? " · failed" : "");
    g_free(when);
    g_string_free(s, TRUE);
    return title;
}

static void on_history_selected(GtkListBox *box, GtkListBoxRow *row, gpointer user)
{
    (void)box;
    MedleyWindow *w = user;
    if (!row)
        return;
    int idx = w->project.nruns - 1 - gtk_list_box_row_get_index(row);   /* newest first */
    studio_runs_show(w, idx);
}

void studio_runs_refresh_history(MedleyWindow *w)
{
    g_signal_handlers_block_by_func(w->history_list, on_history_selected, w);
    GtkWidget *child;
    while ((child = gtk_widget_get_first_child(GTK_WIDGET(w->history_list))))
        gtk_list_box_remove(w->history_list, child);
    for (int i = w->project.nruns - 1; i >= 0; i--) {
        char *t = run_title(&w->project.runs[i]);
        GtkWidget *l = gtk_label_new(t);
        g_free(t);
        gtk_label_set_xalign(GTK_LABEL(l), 0);
        gtk_label_set_ellipsize(GTK_LABEL(l), PANGO_ELLIPSIZE_END);
        gtk_widget_set_margin_top(l, 4);
        gtk_widget_set_margin_bottom(l, 4);
        gtk_list_box_append(w->history_list, l);
    }
    g_signal_handlers_unblock_by_func(w->history_list, on_history_selected, w);
    if (w->project.nruns == 0) {
        studio_runs_show(w, -1);
    }
}

/* ---- the view of a run ---- */

static void stop_playback(MedleyWindow *w)
{
    if (w->play_id)
        g_source_remove(w->play_id);
    w->play_id = 0;
    if (w->play_frames)
        g_ptr_array_unref(w->play_frames);
    w->play_frames = NULL;
    w->play_picture = NULL;
}

static gboolean play_tick(gpointer user)
{
    MedleyWindow *w = user;
    if (!w->play_frames || w->play_frames->len == 0 || !w->play_picture)
        return G_SOURCE_CONTINUE;
    w->play_index = (w->play_index + 1) % w->play_frames->len;
    gtk_picture_set_paintable(w->play_picture, g_ptr_array_index(w->play_frames, w->play_index));
    return G_SOURCE_CONTINUE;
}

static void on_play_toggled(GtkToggleButton *b, gpointer user)
{
    MedleyWindow *w = user;
    gboolean on = gtk_toggle_button_get_active(b);
    gtk_button_set_icon_name(GTK_BUTTON(b), on ? "media-playback-pause-symbolic" : "media-playback-start-symbolic");
    if (on && !w->play_id)
        w->play_id = g_timeout_add(1000 / 16, play_tick, w);
    else if (!on && w->play_id) {
        g_source_remove(w->play_id);
        w->play_id = 0;
    }
}

/* The output's bytes as a file (for drag out and pop out): the studio's
 * output folder keeps them. */
static GFile *output_file(MedleyWindow *w, const md_proj_output *o)
{
    char *dir = g_build_filename(w->out_dir, "export", NULL);
    g_mkdir_with_parents(dir, 0700);
    char *path = g_build_filename(dir, o->name, NULL);
    g_free(dir);
    GError *err = NULL;
    GFile *f = NULL;
    if (!g_file_test(path, G_FILE_TEST_EXISTS) &&
        !g_file_set_contents(path, (const char *)o->media->data, (gssize)o->media->size, &err)) {
        medley_window_toast(w, "Cannot export %s: %s", o->name, err->message);
        g_error_free(err);
    } else {
        f = g_file_new_for_path(path);
    }
    g_free(path);
    return f;
}

static GdkContentProvider *on_drag_prepare(GtkDragSource *src, double x, double y, gpointer user)
{
    (void)src;
    (void)x;
    (void)y;
    GtkWidget *card = user;
    MedleyWindow *w = g_object_get_data(G_OBJECT(card), "win");
    const md_proj_output *o = g_object_get_data(G_OBJECT(card), "output");
    GFile *f = o ? output_file(w, o) : NULL;
    if (!f)
        return NULL;
    GdkContentProvider *p = gdk_content_provider_new_typed(G_TYPE_FILE, f);
    g_object_unref(f);
    return p;
}

static void on_copy_text(GtkButton *b, gpointer user)
{
    const char *text = user;
    gdk_clipboard_set_text(gtk_widget_get_clipboard(GTK_WIDGET(b)), text);
}

static void on_zoom(GtkRange *r, gpointer user)
{
    GtkWidget *pic = user;
    int side = (int)(64 * gtk_range_get_value(r));
    gtk_widget_set_size_request(pic, side, side);
}

static void on_pop_out(GtkButton *b, gpointer user)
{
    GtkWidget *card = user;
    MedleyWindow *w = g_object_get_data(G_OBJECT(card), "win");
    const md_proj_output *o = g_object_get_data(G_OBJECT(card), "output");
    GFile *f = output_file(w, o);
    if (!f)
        return;
    char *path = g_file_get_path(f);
    const char *self = g_object_get_data(G_OBJECT(b), "cli");
    GError *err = NULL;
    const char *argv[] = {self, "play", path, NULL};
    if (!g_spawn_async(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL, &err)) {
        medley_window_toast(w, "Cannot open the player: %s", err->message);
        g_error_free(err);
    }
    g_free(path);
    g_object_unref(f);
}

static void on_play_audio(GtkButton *b, gpointer user)
{
    GtkWidget *card = user;
    MedleyWindow *w = g_object_get_data(G_OBJECT(card), "win");
    const md_proj_output *o = g_object_get_data(G_OBJECT(card), "output");
    studio_sound_toggle(w, g_object_get_data(G_OBJECT(b), "wave"), o->media->data, o->media->size);
}

static GtkWidget *card_for(MedleyWindow *w, md_proj_output *o)
{
    GtkWidget *card = gtk_box_new(GTK_ORIENTATION_VERTICAL, 6);
    gtk_widget_add_css_class(card, "result-card");
    gtk_widget_set_valign(card, GTK_ALIGN_START);
    g_object_set_data(G_OBJECT(card), "win", w);
    g_object_set_data(G_OBJECT(card), "output", o);
    g_object_set_data(G_OBJECT(card), "modality", GINT_TO_POINTER((int)o->modality));
    GtkWidget *title = gtk_label_new(o->name);
    gtk_label_set_xalign(GTK_LABEL(title), 0);
    gtk_widget_add_css_class(title, "caption");
    gtk_box_append(GTK_BOX(card), title);
    GtkWidget *tools = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 6);
    if (o->modality == MD_MOD_IMAGE || o->modality == MD_MOD_VIDEO) {
        GtkWidget *pic = gtk_picture_new();
        gtk_picture_set_can_shrink(GTK_PICTURE(pic), TRUE);
        gtk_widget_set_size_request(pic, 256, 256);
        gtk_box_append(GTK_BOX(card), pic);
        if (o->modality == MD_MOD_IMAGE) {
            GdkTexture *t = studio_texture_from_bytes(MD_MOD_IMAGE, o->media->data, o->media->size);
            if (t) {
                gtk_picture_set_paintable(GTK_PICTURE(pic), GDK_PAINTABLE(t));
                g_object_unref(t);
            }
        } else {
            stop_playback(w);
            w->play_frames = studio_video_frames(o->media->data, o->media->size, 0);
            w->play_picture = GTK_PICTURE(pic);
            w->play_index = 0;
            if (w->play_frames->len)
                gtk_picture_set_paintable(GTK_PICTURE(pic), g_ptr_array_index(w->play_frames, 0));
            GtkWidget *play = gtk_toggle_button_new();
            gtk_button_set_icon_name(GTK_BUTTON(play), "media-playback-start-symbolic");
            gtk_widget_set_tooltip_text(play, "Play / pause");
            g_signal_connect(play, "toggled", G_CALLBACK(on_play_toggled), w);
            gtk_box_append(GTK_BOX(tools), play);
            GtkWidget *pop = gtk_button_new_from_icon_name("view-fullscreen-symbolic");
            gtk_widget_set_tooltip_text(pop, "Pop out to the player window");
            g_object_set_data_full(G_OBJECT(pop), "cli", g_strdup(g_object_get_data(G_OBJECT(w), "cli")), g_free);
            g_signal_connect(pop, "clicked", G_CALLBACK(on_pop_out), card);
            gtk_box_append(GTK_BOX(tools), pop);
            gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(play), TRUE);
        }
        GtkWidget *zoom = gtk_scale_new_with_range(GTK_ORIENTATION_HORIZONTAL, 1.0, 8.0, 0.5);
        gtk_range_set_value(GTK_RANGE(zoom), 4.0);
        gtk_widget_set_size_request(zoom, 120, -1);
        gtk_widget_set_tooltip_text(zoom, "Zoom");
        g_signal_connect(zoom, "value-changed", G_CALLBACK(on_zoom), pic);
        gtk_box_append(GTK_BOX(tools), zoom);
    } else if (o->modality == MD_MOD_AUDIO) {
        GtkWidget *wave = studio_waveform_new(o->media->data, o->media->size);
        gtk_widget_set_size_request(wave, 256, 64);
        gtk_widget_set_name(wave, "result-waveform");
        gtk_box_append(GTK_BOX(card), wave);
        GtkWidget *play = gtk_button_new_from_icon_name("media-playback-start-symbolic");
        gtk_widget_set_tooltip_text(play, "Play / stop");
        g_object_set_data(G_OBJECT(play), "wave", wave);
        g_signal_connect(play, "clicked", G_CALLBACK(on_play_audio), card);
        gtk_box_append(GTK_BOX(tools), play);
    } else if (o->modality == MD_MOD_TEXT) {
        char *text = g_strndup((const char *)o->media->data, o->media->size);
        char *mark = strstr(text, "\n" MEDLEY_JOB_TXT_MARK);
        if (mark)
            *mark = '\0';
        GtkWidget *l = gtk_label_new(text);
        gtk_label_set_selectable(GTK_LABEL(l), TRUE);
        gtk_label_set_wrap(GTK_LABEL(l), TRUE);
        gtk_label_set_max_width_chars(GTK_LABEL(l), 40);
        gtk_widget_add_css_class(l, "title-3");
        gtk_box_append(GTK_BOX(card), l);
        GtkWidget *copy = gtk_button_new_with_mnemonic("_Copy");
        g_object_set_data_full(G_OBJECT(copy), "text", text, g_free);
        g_signal_connect(copy, "clicked", G_CALLBACK(on_copy_text), text);
        gtk_box_append(GTK_BOX(tools), copy);
    }
    gtk_box_append(GTK_BOX(card), tools);
    GtkDragSource *drag = gtk_drag_source_new();
    gtk_drag_source_set_actions(drag, GDK_ACTION_COPY);
    g_signal_connect(drag, "prepare", G_CALLBACK(on_drag_prepare), card);
    gtk_widget_add_controller(card, GTK_EVENT_CONTROLLER(drag));
    gtk_widget_set_tooltip_text(card, "Drag out to save it as a file, or onto the inputs to use it");
    return card;
}

void studio_runs_show(MedleyWindow *w, int run)
{
    stop_playback(w);
    GtkWidget *child;
    while ((child = gtk_widget_get_first_child(GTK_WIDGET(w->result_box))))
        gtk_box_remove(w->result_box, child);
    g_object_set_data(G_OBJECT(w), "shown-run", GINT_TO_POINTER(run));
    if (run < 0 || run >= w->project.nruns) {
        gtk_label_set_text(w->result_info, "No run yet");
        return;
    }
    md_proj_run *r = &w->project.runs[run];
    char *t = run_title(r);
    if (r->state == MD_RUN_FAILED) {
        char *s = g_strdup_printf("%s: %s", t, r->error ? r->error : "failed");
        gtk_label_set_text(w->result_info, s);
        g_free(s);
    } else {
        gtk_label_set_text(w->result_info, t);
    }
    g_free(t);
    for (int k = 0; k < r->nout; k++)
        gtk_box_append(w->result_box, card_for(w, &r->out[k]));
}

/* ---- restore ---- */

/* Media in the project (inputs or outputs) whose bytes hash to h (as a
 * job records it: the blob's own FNV-1a, in hex). */
static bool blob_is(const md_blob *b, const char *h)
{
    char x[17];
    snprintf(x, sizeof x, "%016llx", (unsigned long long)b->hash);
    return strcmp(x, h) == 0;
}

static md_blob *find_media(MedleyWindow *w, const char *h)
{
    for (int i = 0; i < w->project.board.n; i++)
        if (w->project.board.in[i].media && blob_is(w->project.board.in[i].media, h))
            return w->project.board.in[i].media;
    for (int i = 0; i < w->project.nruns; i++)
        for (int k = 0; k < w->project.runs[i].nout; k++)
            if (blob_is(w->project.runs[i].out[k].media, h))
                return w->project.runs[i].out[k].media;
    return NULL;
}

gboolean studio_runs_restore(MedleyWindow *w, const char *job_json, const char *label)
{
    medley_job j;
    medley_job_init(&j);
    if (medley_job_from_json(&j, job_json, label, false) != MD_OK) {
        medley_window_error(w, "Cannot Restore the Job", md_last_error());
        return FALSE;
    }
    /* every file input must be found: in the project, or on disk unchanged */
    md_board nb = {0};
    md_project tmp;
    md_project_init(&tmp);
    tmp.next_id = w->project.next_id;
    GString *missing = g_string_new(NULL);
    for (int i = 0; i < j.nin; i++) {
        medley_job_input *in = &j.in[i];
        if (in->text) {
            md_project_add_text(&tmp, in->text, in->weight);
            continue;
        }
        md_blob *b = find_media(w, in->hash);
        char *bytes = NULL;
        gsize n = 0;
        char now[17] = "";
        if (!b && g_file_get_contents(in->path, &bytes, &n, NULL)) {
            medley_bytes_hash(bytes, n, now);
            if (strcmp(now, in->hash) != 0) {
                g_free(bytes);
                bytes = NULL;
            }
        }
        if (!b && !bytes) {
            g_string_append_printf(missing, "%s%s", missing->len ? ", " : "", in->path);
            continue;
        }
        char *base = g_path_get_basename(in->path);
        md_project_add_media(&tmp, in->modality, base, b ? b->data : (const uint8_t *)bytes, b ? b->size : n,
                             in->weight);
        g_free(base);
        g_free(bytes);
    }
    gboolean ok = missing->len == 0;
    if (!ok) {
        char *msg = g_strdup_printf("The job's file inputs are neither in this project nor unchanged on disk: %s",
                                    missing->str);
        medley_window_error(w, "Cannot Restore the Job", msg);
        g_free(msg);
    } else {
        medley_window_board_will_change(w);
        nb = tmp.board;
        tmp.board = (md_board){0};
        md_board_free(&w->project.board);
        w->project.board = nb;
        w->project.next_id = tmp.next_id;
        for (int m = 0; m < 4; m++)
            gtk_check_button_set_active(w->want[m], j.want[m]);
        gtk_spin_button_set_value(w->seed, (double)j.seed);
        gtk_toggle_button_set_active(w->seed_lock, TRUE);
        gtk_check_button_set_active(w->diffusion_image, j.route[MD_MOD_IMAGE] == MEDLEY_ROUTE_DIFFUSION);
        gtk_check_button_set_active(w->diffusion_video, j.route[MD_MOD_VIDEO] == MEDLEY_ROUTE_DIFFUSION);
        gtk_check_button_set_active(w->vocoder_audio, FALSE);
        for (int k = 0; k < j.nparams; k++) {   /* "image.guidance", or a bare name for every output */
            double v = g_ascii_strtod(j.params[k][1], NULL);
            const char *name = j.params[k][0], *dot = strchr(name, '.');
            if (strcmp(name, "audio.vocoder") == 0 || strcmp(name, "vocoder") == 0)
                gtk_check_button_set_active(w->vocoder_audio, v == 1);
            int only = dot ? medley_modality_of(name, (size_t)(dot - name)) : -1;
            for (int m = 0; m < 4; m++) {
                GtkSpinButton *sb = (!dot || m == only) ? param_spin(w, m, dot ? dot + 1 : name) : NULL;
                if (sb)
                    gtk_spin_button_set_value(sb, v);
            }
        }
        medley_window_changed(w);
        studio_board_refresh(w);
        medley_window_toast(w, "Job restored: seed %llu", (unsigned long long)j.seed);
    }
    g_string_free(missing, TRUE);
    md_project_free(&tmp);
    medley_job_free(&j);
    return ok;
}

/* ---- life ---- */

static gboolean on_tick(gpointer user)
{
    MedleyWindow *w = user;
    gint64 now = g_get_monotonic_time();
    if (w->jobs->len > 0 && w->last_tick_us) {
        gint64 gap = now - w->last_tick_us;
        if (gap > w->max_stall_us)
            w->max_stall_us = gap;
        w->ticks++;
        w->stalls_over_16ms += gap > 16000 + 5000;   /* the tick itself is every 5 ms */
    }
    w->last_tick_us = now;
    return G_SOURCE_CONTINUE;
}

static void on_before_paint(GdkFrameClock *c, gpointer user)
{
    (void)c;
    MedleyWindow *w = user;
    w->frame_start_us = g_get_monotonic_time();
}

static void on_after_paint(GdkFrameClock *c, gpointer user)
{
    (void)c;
    MedleyWindow *w = user;
    if (!w->jobs || w->jobs->len == 0 || !w->frame_start_us)
        return;
    gint64 d = g_get_monotonic_time() - w->frame_start_us;
    w->frames++;
    w->frames_over_16ms += d > 16000;
    if (d > 16000 && g_getenv("MEDLEY_STUDIO_DEBUG"))
        fprintf(stderr, "slow frame %.1f ms (frame %lld)\n", (double)d / 1000.0, (long long)w->frames);
    if (d > w->max_frame_us)
        w->max_frame_us = d;
}

static void on_realize(GtkWidget *wd, gpointer user)
{
    GdkFrameClock *c = gtk_widget_get_frame_clock(wd);
    if (c) {
        g_signal_connect(c, "before-paint", G_CALLBACK(on_before_paint), user);
        g_signal_connect(c, "after-paint", G_CALLBACK(on_after_paint), user);
    }
}

void studio_runs_init(MedleyWindow *w)
{
    g_signal_connect(w, "realize", G_CALLBACK(on_realize), w);
    w->jobs = g_ptr_array_new();
    g_mutex_init(&w->models_lock);
    w->out_dir = g_build_filename(g_get_user_cache_dir(), "medley", "outputs", NULL);
    g_mkdir_with_parents(w->out_dir, 0700);
    w->queue = md_jobs_new(on_report, w);
    g_signal_connect(w->history_list, "row-selected", G_CALLBACK(on_history_selected), w);
    w->tick_id = g_timeout_add(5, on_tick, w);
}

void studio_runs_shutdown(MedleyWindow *w)
{
    stop_playback(w);
    if (w->tick_id)
        g_source_remove(w->tick_id);
    w->tick_id = 0;
    md_jobs_free(w->queue);   /* cancels what is left and joins the worker */
    w->queue = NULL;
    /* reports still pending in the main loop hold a reference to w; the
     * jobs themselves are freed here */
    while (w->jobs->len) {
        studio_job *sj = g_ptr_array_index(w->jobs, 0);
        g_ptr_array_remove_index(w->jobs, 0);
        studio_job_free(sj);
    }
    g_ptr_array_unref(w->jobs);
    w->jobs = NULL;
    g_mutex_lock(&w->models_lock);
    medley_gens_free(&w->gens);
    if (w->bundle_loaded)
        medley_bundle_free(&w->bundle);
    w->bundle_loaded = false;
    g_mutex_unlock(&w->models_lock);
    g_free(w->out_dir);
    w->out_dir = NULL;
}
