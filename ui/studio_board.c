/* studio_board.c — the inputs board: files dropped, pasted or picked, and
 * typed text; each input with its preview, weight, mute, order and remove.
 * Files are read asynchronously (the main loop never waits on a disk). */
#include "studio.h"
#include "studio_audio.h"

#include <math.h>
#include <string.h>

static const char *const mod_icons[4] = {"text-x-generic-symbolic", "image-x-generic-symbolic",
                                         "audio-x-generic-symbolic", "video-x-generic-symbolic"};

/* ---- rows ---- */

typedef struct row_ctx {
    MedleyWindow *w;
    int64_t id;                      /* the input's id */
} row_ctx;

static int index_of(MedleyWindow *w, int64_t id)
{
    for (int i = 0; i < w->project.board.n; i++)
        if (w->project.board.in[i].id == id)
            return i;
    return -1;
}

static gboolean refreshing;
static int64_t last_weight_id;
static gint64 last_weight_us;

static void on_weight(GtkRange *r, gpointer user)
{
    row_ctx *c = user;
    if (refreshing)
        return;
    int i = index_of(c->w, c->id);
    if (i < 0)
        return;
    /* one undo step per slider gesture: changes of one input within a
     * second coalesce */
    gint64 now = g_get_monotonic_time();
    if (c->id != last_weight_id || now - last_weight_us > G_USEC_PER_SEC)
        medley_window_board_will_change(c->w);
    last_weight_id = c->id;
    last_weight_us = now;
    c->w->project.board.in[i].weight = gtk_range_get_value(r);
    medley_window_changed(c->w);
}

static void on_mute(GtkToggleButton *b, gpointer user)
{
    row_ctx *c = user;
    if (refreshing)
        return;
    int i = index_of(c->w, c->id);
    if (i < 0)
        return;
    medley_window_board_will_change(c->w);
    c->w->project.board.in[i].muted = gtk_toggle_button_get_active(b);
    medley_window_changed(c->w);
    studio_board_refresh(c->w);
}

static void move_by(row_ctx *c, int delta)
{
    int i = index_of(c->w, c->id);
    int j = i + delta;
    if (i < 0 || j < 0 || j >= c->w->project.board.n)
        return;
    medley_window_board_will_change(c->w);
    md_board_move(&c->w->project.board, i, j);
    medley_window_changed(c->w);
    studio_board_refresh(c->w);
}

static void on_up(GtkButton *b, gpointer user) { (void)b; move_by(user, -1); }
static void on_down(GtkButton *b, gpointer user) { (void)b; move_by(user, +1); }

static void on_remove(GtkButton *b, gpointer user)
{
    (void)b;
    row_ctx *c = user;
    int i = index_of(c->w, c->id);
    if (i < 0)
        return;
    medley_window_board_will_change(c->w);
    md_board_remove(&c->w->project.board, i);
    medley_window_changed(c->w);
    studio_board_refresh(c->w);
}

/* ---- sound ---- */

static void stop_sound(MedleyWindow *w)
{
    if (w->audio_timer && !w->rec) {
        g_source_remove(w->audio_timer);
        w->audio_timer = 0;
    }
    studio_play_stop(w->player);
    w->player = NULL;
    if (w->player_wave) {
        studio_waveform_set_playhead(w->player_wave, -1);
        g_object_remove_weak_pointer(G_OBJECT(w->player_wave), (gpointer *)&w->player_wave);
        w->player_wave = NULL;
    }
}

static void stop_recording(MedleyWindow *w);

static gboolean on_audio_timer(gpointer user)
{
    MedleyWindow *w = user;
    if (w->player) {
        if (w->player_wave)
            studio_waveform_set_playhead(w->player_wave, studio_play_fraction(w->player));
        if (studio_play_done(w->player)) {
            w->audio_timer = 0;
            stop_sound(w);
            return G_SOURCE_REMOVE;
        }
    }
    if (w->rec) {
        char t[64];
        snprintf(t, sizeof t, "Recording %.1f s", studio_rec_seconds(w->rec));
        gtk_label_set_text(w->rec_label, t);
        gtk_level_bar_set_value(w->rec_level, fmin(1.0, 4.0 * studio_rec_level(w->rec)));
        if (studio_rec_full(w->rec))
            gtk_toggle_button_set_active(w->rec_button, FALSE);   /* stops it */
    }
    return G_SOURCE_CONTINUE;
}

gboolean studio_sound_toggle(MedleyWindow *w, GtkWidget *wave, const void *bytes, size_t size)
{
    bool was_this = w->player && w->player_wave == wave;
    stop_sound(w);
    if (was_this)
        return FALSE;
    char why[256];
    w->player = studio_play(bytes, size, why, sizeof why);
    if (!w->player) {
        medley_window_toast(w, "Cannot play it: %s", why);
        return FALSE;
    }
    w->player_wave = wave;
    g_object_add_weak_pointer(G_OBJECT(wave), (gpointer *)&w->player_wave);
    if (!w->audio_timer)
        w->audio_timer = g_timeout_add(30, on_audio_timer, w);
    return TRUE;
}

static void on_play(GtkButton *b, gpointer user)
{
    row_ctx *c = user;
    MedleyWindow *w = c->w;
    int i = index_of(w, c->id);
    GtkWidget *wave = g_object_get_data(G_OBJECT(b), "wave");
    if (i < 0) {
        stop_sound(w);
        return;
    }
    const md_blob *m = w->project.board.in[i].media;
    studio_sound_toggle(w, wave, m->data, m->size);
}

/* Scrubbing a video input: its frames are decoded (small) on first use. */
static void on_scrub(GtkRange *r, gpointer user)
{
    row_ctx *c = user;
    GtkWidget *pic = g_object_get_data(G_OBJECT(r), "picture");
    GPtrArray *frames = g_object_get_data(G_OBJECT(r), "frames");
    if (!frames) {
        int i = index_of(c->w, c->id);
        if (i < 0)
            return;
        const md_blob *m = c->w->project.board.in[i].media;
        frames = studio_video_frames(m->data, m->size, 128);
        g_object_set_data_full(G_OBJECT(r), "frames", frames, (GDestroyNotify)g_ptr_array_unref);
    }
    if (frames->len == 0)
        return;
    guint k = (guint)(gtk_range_get_value(r) * (frames->len - 1) + 0.5);
    gtk_picture_set_paintable(GTK_PICTURE(pic), g_ptr_array_index(frames, k < frames->len ? k : frames->len - 1));
}

static GtkWidget *icon_button(const char *icon, const char *tip, GCallback cb, row_ctx *c)
{
    GtkWidget *b = gtk_button_new_from_icon_name(icon);
    gtk_widget_set_tooltip_text(b, tip);
    gtk_widget_add_css_class(b, "flat");
    gtk_widget_set_valign(b, GTK_ALIGN_CENTER);
    g_signal_connect(b, "clicked", cb, c);
    return b;
}

static GtkWidget *preview_of(const md_proj_input *in)
{
    GtkWidget *p = NULL;
    if (in->modality == MD_MOD_IMAGE || in->modality == MD_MOD_VIDEO) {
        GdkTexture *t = studio_texture_from_bytes(in->modality, in->media->data, in->media->size);
        if (t) {
            p = gtk_picture_new_for_paintable(GDK_PAINTABLE(t));
            g_object_unref(t);
            gtk_picture_set_content_fit(GTK_PICTURE(p), GTK_CONTENT_FIT_CONTAIN);
        }
    } else if (in->modality == MD_MOD_AUDIO) {
        p = studio_waveform_new(in->media->data, in->media->size);
        gtk_widget_set_name(p, "waveform");
    }
    if (!p) {
        p = gtk_image_new_from_icon_name(mod_icons[in->modality]);
        gtk_image_set_pixel_size(GTK_IMAGE(p), 32);
    }
    gtk_widget_set_size_request(p, 64, 64);
    gtk_widget_add_css_class(p, "thumb");
    return p;
}

static GtkWidget *row_for(MedleyWindow *w, const md_proj_input *in)
{
    row_ctx *c = g_new0(row_ctx, 1);
    c->w = w;
    c->id = in->id;
    GtkWidget *box = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 8);
    gtk_widget_add_css_class(box, "input-row");
    g_object_set_data_full(G_OBJECT(box), "ctx", c, g_free);
    if (in->muted)
        gtk_widget_add_css_class(box, "muted-input");
    GtkWidget *pv = preview_of(in);
    gtk_box_append(GTK_BOX(box), pv);

    GtkWidget *mid = gtk_box_new(GTK_ORIENTATION_VERTICAL, 2);
    gtk_widget_set_hexpand(mid, TRUE);
    GtkWidget *name = gtk_label_new(in->modality == MD_MOD_TEXT ? in->text : in->name);
    gtk_label_set_xalign(GTK_LABEL(name), 0);
    gtk_label_set_ellipsize(GTK_LABEL(name), PANGO_ELLIPSIZE_END);
    gtk_label_set_lines(GTK_LABEL(name), 2);
    gtk_label_set_wrap(GTK_LABEL(name), TRUE);
    gtk_widget_set_tooltip_text(name, in->modality == MD_MOD_TEXT ? in->text : in->name);
    gtk_box_append(GTK_BOX(mid), name);
    GtkWidget *scale = gtk_scale_new_with_range(GTK_ORIENTATION_HORIZONTAL, -1.0, 2.0, 0.05);
    gtk_range_set_value(GTK_RANGE(scale), in->weight);
    gtk_scale_set_draw_value(GTK_SCALE(scale), TRUE);
    gtk_scale_set_digits(GTK_SCALE(scale), 2);
    gtk_scale_set_value_pos(GTK_SCALE(scale), GTK_POS_RIGHT);
    gtk_scale_add_mark(GTK_SCALE(scale), 0.0, GTK_POS_BOTTOM, NULL);
    gtk_scale_add_mark(GTK_SCALE(scale), 1.0, GTK_POS_BOTTOM, NULL);
    gtk_widget_set_tooltip_text(scale, "Weight in the mix (negative: away from it)");
    g_signal_connect(scale, "value-changed", G_CALLBACK(on_weight), c);
    gtk_box_append(GTK_BOX(mid), scale);
    gtk_box_append(GTK_BOX(box), mid);

    GtkWidget *mute = gtk_toggle_button_new();
    gtk_button_set_icon_name(GTK_BUTTON(mute), in->muted ? "audio-volume-muted-symbolic" : "audio-volume-high-symbolic");
    gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(mute), in->muted);
    gtk_widget_set_tooltip_text(mute, "Mute: leave this input out of runs");
    gtk_widget_add_css_class(mute, "flat");
    gtk_widget_set_valign(mute, GTK_ALIGN_CENTER);
    g_signal_connect(mute, "toggled", G_CALLBACK(on_mute), c);
    if (in->modality == MD_MOD_VIDEO && GTK_IS_PICTURE(pv)) {
        GtkWidget *scrub = gtk_scale_new_with_range(GTK_ORIENTATION_HORIZONTAL, 0.0, 1.0, 0.01);
        gtk_scale_set_draw_value(GTK_SCALE(scrub), FALSE);
        gtk_widget_set_tooltip_text(scrub, "Scrub through the video");
        g_object_set_data(G_OBJECT(scrub), "picture", pv);
        g_signal_connect(scrub, "value-changed", G_CALLBACK(on_scrub), c);
        gtk_box_append(GTK_BOX(mid), scrub);
    }
    if (in->modality == MD_MOD_AUDIO) {
        GtkWidget *play = icon_button("media-playback-start-symbolic", "Play / stop", G_CALLBACK(on_play), c);
        g_object_set_data(G_OBJECT(play), "wave", pv);
        gtk_box_insert_child_after(GTK_BOX(box), play, mid);
    }
    gtk_box_append(GTK_BOX(box), mute);
    gtk_box_append(GTK_BOX(box), icon_button("go-up-symbolic", "Move up", G_CALLBACK(on_up), c));
    gtk_box_append(GTK_BOX(box), icon_button("go-down-symbolic", "Move down", G_CALLBACK(on_down), c));
    gtk_box_append(GTK_BOX(box), icon_button("user-trash-symbolic", "Remove", G_CALLBACK(on_remove), c));
    return box;
}

void studio_board_refresh(MedleyWindow *w)
{
    stop_sound(w);
    refreshing = TRUE;
    GtkWidget *child;
    while ((child = gtk_widget_get_first_child(GTK_WIDGET(w->board_list))))
        gtk_list_box_remove(w->board_list, child);
    for (int i = 0; i < w->project.board.n; i++)
        gtk_list_box_append(w->board_list, row_for(w, &w->project.board.in[i]));
    gtk_stack_set_visible_child_name(w->board_stack, w->project.board.n ? "list" : "empty");
    refreshing = FALSE;
}

/* ---- adding ---- */

void studio_board_add_text(MedleyWindow *w, const char *text)
{
    while (*text == ' ' || *text == '\t' || *text == '\n')
        text++;
    if (!*text)
        return;
    medley_window_board_will_change(w);
    if (md_project_add_text(&w->project, text, 1.0) < 0) {
        medley_window_toast(w, "Cannot add the text: %s", md_last_error());
        return;
    }
    medley_window_changed(w);
    studio_board_refresh(w);
}

/* A text file: its text, without the job line a Medley output carries. */
static char *text_of(const char *bytes, size_t size)
{
    const char *mark = g_strstr_len(bytes, (gssize)size, "\n" MEDLEY_JOB_TXT_MARK);
    size_t n = mark ? (size_t)(mark - bytes) : size;
    while (n > 0 && (bytes[n - 1] == '\n' || bytes[n - 1] == '\r' || bytes[n - 1] == ' '))
        n--;
    return g_strndup(bytes, n);
}

gboolean studio_board_add_bytes(MedleyWindow *w, const char *name, const char *bytes, size_t size)
{
    int m = studio_modality_of_bytes(bytes, size);
    if (m < 0) {
        medley_window_toast(w, "%s: not an image, audio, video or text file Medley reads", name);
        return FALSE;
    }
    medley_window_board_will_change(w);
    int k;
    if (m == MD_MOD_TEXT) {
        char *t = text_of(bytes, size);
        k = *t ? md_project_add_text(&w->project, t, 1.0) : -1;
        if (!*t)
            medley_window_toast(w, "%s: the file is empty", name);
        g_free(t);
    } else {
        k = md_project_add_media(&w->project, (md_modality)m, name, bytes, size, 1.0);
    }
    if (k < 0)
        return FALSE;
    /* an output of Medley carries its job: offer to restore it */
    char *job = medley_job_read_from_bytes(bytes, size, name);
    if (job) {
        g_free(g_object_get_data(G_OBJECT(w), "dropped-job"));
        g_object_set_data_full(G_OBJECT(w), "dropped-job", g_strdup(job), g_free);
        AdwToast *t = adw_toast_new_format("%s carries the Medley job that made it", name);
        adw_toast_set_button_label(t, "Restore Job");
        adw_toast_set_action_name(t, "win.restore-dropped");
        adw_toast_overlay_add_toast(w->toasts, t);
        free(job);
    }
    return TRUE;
}

typedef struct load_ctx {
    MedleyWindow *w;
    char *name;
} load_ctx;

static void on_loaded(GObject *src, GAsyncResult *res, gpointer user)
{
    load_ctx *c = user;
    char *bytes = NULL;
    gsize size = 0;
    GError *err = NULL;
    if (!g_file_load_contents_finish(G_FILE(src), res, &bytes, &size, NULL, &err)) {
        medley_window_toast(c->w, "%s: cannot read it: %s", c->name, err->message);
        g_error_free(err);
    } else if (studio_board_add_bytes(c->w, c->name, bytes, size)) {
        medley_window_changed(c->w);
        studio_board_refresh(c->w);
    }
    g_free(bytes);
    g_object_unref(c->w);
    g_free(c->name);
    g_free(c);
}

int studio_board_add_files(MedleyWindow *w, GSList *files)
{
    int n = 0;
    for (GSList *l = files; l; l = l->next) {
        GFile *f = l->data;
        load_ctx *c = g_new0(load_ctx, 1);
        c->w = g_object_ref(w);
        c->name = g_file_get_basename(f);
        if (!c->name)
            c->name = g_file_get_uri(f);
        g_file_load_contents_async(f, NULL, on_loaded, c);
        n++;
    }
    return n;
}

gboolean studio_board_on_drop(GtkDropTarget *t, const GValue *value, double x, double y, gpointer user)
{
    (void)t;
    (void)x;
    (void)y;
    MedleyWindow *w = user;
    if (G_VALUE_HOLDS(value, GDK_TYPE_FILE_LIST)) {
        GSList *files = gdk_file_list_get_files(g_value_get_boxed(value));
        int n = studio_board_add_files(w, files);
        g_slist_free(files);
        return n > 0;
    }
    if (G_VALUE_HOLDS(value, G_TYPE_FILE)) {
        GSList one = {g_value_get_object(value), NULL};
        return studio_board_add_files(w, &one) > 0;
    }
    if (G_VALUE_HOLDS(value, G_TYPE_STRING)) {
        studio_board_add_text(w, g_value_get_string(value));
        return TRUE;
    }
    return FALSE;
}

/* ---- paste ---- */

static void on_paste_files(GObject *src, GAsyncResult *res, gpointer user)
{
    MedleyWindow *w = user;
    const GValue *v = gdk_clipboard_read_value_finish(GDK_CLIPBOARD(src), res, NULL);
    if (v && G_VALUE_HOLDS(v, GDK_TYPE_FILE_LIST)) {
        GSList *files = gdk_file_list_get_files(g_value_get_boxed(v));
        studio_board_add_files(w, files);
        g_slist_free(files);
    }
    g_object_unref(w);
}

static void on_paste_texture(GObject *src, GAsyncResult *res, gpointer user)
{
    MedleyWindow *w = user;
    GdkTexture *t = gdk_clipboard_read_texture_finish(GDK_CLIPBOARD(src), res, NULL);
    if (t) {
        GBytes *png = gdk_texture_save_to_png_bytes(t);
        gsize n;
        const char *d = g_bytes_get_data(png, &n);
        if (studio_board_add_bytes(w, "pasted image.png", d, n)) {
            medley_window_changed(w);
            studio_board_refresh(w);
        }
        g_bytes_unref(png);
        g_object_unref(t);
    }
    g_object_unref(w);
}

static void on_paste_text(GObject *src, GAsyncResult *res, gpointer user)
{
    MedleyWindow *w = user;
    char *text = gdk_clipboard_read_text_finish(GDK_CLIPBOARD(src), res, NULL);
    if (text)
        studio_board_add_text(w, text);
    g_free(text);
    g_object_unref(w);
}

void studio_board_paste(MedleyWindow *w)
{
    GdkClipboard *cb = gtk_widget_get_clipboard(GTK_WIDGET(w));
    GdkContentFormats *f = gdk_clipboard_get_formats(cb);
    if (gdk_content_formats_contain_gtype(f, GDK_TYPE_FILE_LIST))
        gdk_clipboard_read_value_async(cb, GDK_TYPE_FILE_LIST, G_PRIORITY_DEFAULT, NULL, on_paste_files,
                                       g_object_ref(w));
    else if (gdk_content_formats_contain_gtype(f, GDK_TYPE_TEXTURE))
        gdk_clipboard_read_texture_async(cb, NULL, on_paste_texture, g_object_ref(w));
    else
        gdk_clipboard_read_text_async(cb, NULL, on_paste_text, g_object_ref(w));
}

/* ---- recording ---- */

static void stop_recording(MedleyWindow *w)
{
    if (!w->rec)
        return;
    char why[256];
    GBytes *wav = studio_rec_stop(w->rec, w->out_dir, why, sizeof why);
    w->rec = NULL;
    gtk_widget_set_visible(w->rec_box, FALSE);
    if (w->audio_timer && !w->player) {
        g_source_remove(w->audio_timer);
        w->audio_timer = 0;
    }
    if (!wav) {
        medley_window_toast(w, "Nothing recorded: %s", why);
        return;
    }
    GDateTime *now = g_date_time_new_now_local();
    char *name = g_date_time_format(now, "recording %H-%M-%S.wav");
    g_date_time_unref(now);
    gsize n;
    const char *d = g_bytes_get_data(wav, &n);
    if (studio_board_add_bytes(w, name, d, n)) {
        medley_window_changed(w);
        studio_board_refresh(w);
    }
    g_free(name);
    g_bytes_unref(wav);
}

static void on_rec_toggled(GtkToggleButton *b, gpointer user)
{
    MedleyWindow *w = user;
    if (!gtk_toggle_button_get_active(b)) {
        stop_recording(w);
        return;
    }
    if (w->rec)
        return;
    stop_sound(w);
    char why[256];
    w->rec = studio_rec_start(why, sizeof why);
    if (!w->rec) {
        medley_window_toast(w, "Cannot record: %s", why);
        g_object_set_data_full(G_OBJECT(w), "last-record-error", g_strdup(why), g_free);
        gtk_toggle_button_set_active(b, FALSE);
        return;
    }
    gtk_widget_set_visible(w->rec_box, TRUE);
    if (!w->audio_timer)
        w->audio_timer = g_timeout_add(30, on_audio_timer, w);
}

void studio_board_shutdown(MedleyWindow *w)
{
    if (w->rec) {
        char why[256];
        GBytes *b = studio_rec_stop(w->rec, w->out_dir ? w->out_dir : g_get_tmp_dir(), why, sizeof why);
        if (b)
            g_bytes_unref(b);
        w->rec = NULL;
    }
    studio_play_stop(w->player);
    w->player = NULL;
    if (w->audio_timer)
        g_source_remove(w->audio_timer);
    w->audio_timer = 0;
}

void studio_board_init(MedleyWindow *w)
{
    g_signal_connect(w->rec_button, "toggled", G_CALLBACK(on_rec_toggled), w);
    GtkDropTarget *t = gtk_drop_target_new(G_TYPE_INVALID, GDK_ACTION_COPY);
    GType types[] = {GDK_TYPE_FILE_LIST, G_TYPE_FILE, G_TYPE_STRING};
    gtk_drop_target_set_gtypes(t, types, G_N_ELEMENTS(types));
    g_signal_connect(t, "drop", G_CALLBACK(studio_board_on_drop), w);
    gtk_widget_add_controller(w->board_box, GTK_EVENT_CONTROLLER(t));
    studio_board_refresh(w);
}
