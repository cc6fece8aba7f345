/* studio_window.c — the studio's window: its template, actions and
 * shortcuts, project files (New / Open / Save / Save As / recent, autosave
 * every 30 s once a project has a file), undo and redo of board edits, and
 * what happens on close (unsaved work is never dropped silently). */
#include "studio.h"
#include "backend.h"
#include "cuda_info.h"

#include <string.h>

#define AUTOSAVE_SECONDS 30
#define UNDO_DEPTH 100

G_DEFINE_FINAL_TYPE(MedleyWindow, medley_window, ADW_TYPE_APPLICATION_WINDOW)

/* ---- messages ---- */

void medley_window_toast(MedleyWindow *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    AdwToast *t = adw_toast_new(s);
    adw_toast_set_timeout(t, 4);
    adw_toast_overlay_add_toast(w->toasts, t);
    g_object_set_data_full(G_OBJECT(w), "last-toast", s, g_free);   /* the self-test reads it */
}

void medley_window_error(MedleyWindow *w, const char *heading, const char *body)
{
    GtkWidget *d = adw_message_dialog_new(GTK_WINDOW(w), heading, body);
    adw_message_dialog_add_response(ADW_MESSAGE_DIALOG(d), "close", "_Close");
    g_object_set_data_full(G_OBJECT(w), "last-error", g_strdup(body), g_free);
    gtk_window_present(GTK_WINDOW(d));
}

/* ---- state ---- */

void medley_window_update_title(MedleyWindow *w)
{
    char *base = w->path ? g_path_get_basename(w->path) : g_strdup("Untitled project");
    bool dirty = w->edits != w->edits_saved;
    char *t = g_strdup_printf("%s%s", dirty ? "• " : "", base);
    adw_window_title_set_title(w->title, t);
    adw_window_title_set_subtitle(w->title, w->path ? w->path : "not saved yet");
    g_free(t);
    g_free(base);
}

void medley_window_changed(MedleyWindow *w)
{
    w->edits++;
    medley_window_update_title(w);
}

static void clear_stack(GPtrArray *a)
{
    while (a->len) {
        md_board *b = g_ptr_array_steal_index(a, a->len - 1);
        md_board_free(b);
        g_free(b);
    }
}

static void push_board(GPtrArray *a, const md_board *src)
{
    md_board *b = g_new0(md_board, 1);
    if (md_board_copy(b, src) != MD_OK) {
        g_free(b);
        return;
    }
    if (a->len >= UNDO_DEPTH) {
        md_board *old = g_ptr_array_steal_index(a, 0);
        md_board_free(old);
        g_free(old);
    }
    g_ptr_array_add(a, b);
}

void medley_window_board_will_change(MedleyWindow *w)
{
    push_board(w->undo, &w->project.board);
    clear_stack(w->redo);
}

static void swap_board(MedleyWindow *w, GPtrArray *from, GPtrArray *to)
{
    if (from->len == 0)
        return;
    push_board(to, &w->project.board);
    md_board *b = g_ptr_array_steal_index(from, from->len - 1);
    md_board_free(&w->project.board);
    w->project.board = *b;
    g_free(b);
    medley_window_changed(w);
    studio_board_refresh(w);
}

static void fill_recent(MedleyWindow *w);

/* ---- project files ---- */

static void reset_project(MedleyWindow *w)
{
    md_project_free(&w->project);
    md_project_init(&w->project);
    g_free(w->path);
    w->path = NULL;
    w->edits = w->edits_saved = 0;
    clear_stack(w->undo);
    clear_stack(w->redo);
}

gboolean medley_window_open(MedleyWindow *w, const char *path)
{
    md_project p;
    md_clear_error();
    if (md_project_load(&p, path) != MD_OK) {
        char *base = g_path_get_basename(path);
        char *heading = g_strdup_printf("Cannot Open “%s”", base);
        medley_window_error(w, heading, md_last_error());
        g_free(heading);
        g_free(base);
        return FALSE;
    }
    reset_project(w);
    w->project = p;
    w->path = g_strdup(path);
    studio_settings_apply(w, p.settings);
    studio_board_refresh(w);
    studio_runs_refresh_history(w);
    studio_runs_show(w, w->project.nruns - 1);
    medley_window_update_title(w);
    char *uri = g_filename_to_uri(path, NULL, NULL);
    if (uri)
        gtk_recent_manager_add_item(gtk_recent_manager_get_default(), uri);
    g_free(uri);
    fill_recent(w);
    return TRUE;
}

gboolean medley_window_save_to(MedleyWindow *w, const char *path)
{
    char *settings = studio_settings_json(w);
    md_project_set_settings(&w->project, settings);
    g_free(settings);
    md_clear_error();
    if (md_project_save(&w->project, path) != MD_OK) {
        medley_window_error(w, "Cannot Save the Project", md_last_error());
        return FALSE;
    }
    if (!w->path || strcmp(w->path, path) != 0) {
        g_free(w->path);
        w->path = g_strdup(path);
        char *uri = g_filename_to_uri(path, NULL, NULL);
        if (uri)
            gtk_recent_manager_add_item(gtk_recent_manager_get_default(), uri);
        g_free(uri);
    }
    w->edits_saved = w->edits;
    medley_window_update_title(w);
    return TRUE;
}

static gboolean on_autosave(gpointer user)
{
    MedleyWindow *w = user;
    if (w->path && w->edits != w->edits_saved)
        medley_window_save_to(w, w->path);
    return G_SOURCE_CONTINUE;
}

typedef void (*path_cb)(MedleyWindow *w, const char *path);

static void on_chooser_response(GtkNativeDialog *d, int response, gpointer user)
{
    MedleyWindow *w = user;
    path_cb cb = g_object_get_data(G_OBJECT(d), "cb");
    if (response == GTK_RESPONSE_ACCEPT) {
        GFile *f = gtk_file_chooser_get_file(GTK_FILE_CHOOSER(d));
        char *path = f ? g_file_get_path(f) : NULL;
        if (path) {
            if (g_object_get_data(G_OBJECT(d), "save") && !g_str_has_suffix(path, ".medley")) {
                char *p2 = g_strconcat(path, ".medley", NULL);
                g_free(path);
                path = p2;
            }
            cb(w, path);
        }
        g_free(path);
        if (f)
            g_object_unref(f);
    }
    g_object_unref(d);
}

static void choose(MedleyWindow *w, const char *title, gboolean save, path_cb cb)
{
    GtkFileChooserNative *d = gtk_file_chooser_native_new(title, GTK_WINDOW(w),
                                                          save ? GTK_FILE_CHOOSER_ACTION_SAVE
                                                               : GTK_FILE_CHOOSER_ACTION_OPEN,
                                                          save ? "_Save" : "_Open", "_Cancel");
    GtkFileFilter *f = gtk_file_filter_new();
    gtk_file_filter_set_name(f, "Medley projects");
    gtk_file_filter_add_pattern(f, "*.medley");
    gtk_file_filter_add_mime_type(f, "application/x-medley-project");
    gtk_file_chooser_add_filter(GTK_FILE_CHOOSER(d), f);
    g_object_unref(f);
    if (save)
        gtk_file_chooser_set_current_name(GTK_FILE_CHOOSER(d), "Untitled.medley");
    g_object_set_data(G_OBJECT(d), "cb", cb);
    g_object_set_data(G_OBJECT(d), "save", GINT_TO_POINTER(save));
    g_signal_connect(d, "response", G_CALLBACK(on_chooser_response), w);
    gtk_native_dialog_show(GTK_NATIVE_DIALOG(d));
}

static void open_path(MedleyWindow *w, const char *path) { medley_window_open(w, path); }
static void save_path(MedleyWindow *w, const char *path) { medley_window_save_to(w, path); }

/* ---- actions ---- */

static void act_open(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    choose(MEDLEY_WINDOW(wd), "Open a Project", FALSE, open_path);
}

static void act_open_recent(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    medley_window_open(MEDLEY_WINDOW(wd), g_variant_get_string(p, NULL));
}

/* The recent-projects submenu: the latest Medley projects GTK's recent
 * files list knows, that still exist. */
static void fill_recent(MedleyWindow *w)
{
    GMenu *live = w->recent_menu;
    if (!live)
        return;
    g_menu_remove_all(live);
    GList *items = gtk_recent_manager_get_items(gtk_recent_manager_get_default());
    int n = 0;
    for (GList *l = items; l && n < 8; l = l->next) {
        const char *uri = gtk_recent_info_get_uri(l->data);
        char *path = g_filename_from_uri(uri, NULL, NULL);
        if (path && g_str_has_suffix(path, ".medley") && g_file_test(path, G_FILE_TEST_EXISTS)) {
            char *base = g_path_get_basename(path);
            GMenuItem *it = g_menu_item_new(base, NULL);
            g_menu_item_set_action_and_target_value(it, "win.open-recent", g_variant_new_string(path));
            g_menu_append_item(live, it);
            g_object_unref(it);
            g_free(base);
            n++;
        }
        g_free(path);
    }
    g_list_free_full(items, (GDestroyNotify)gtk_recent_info_unref);
}

static void act_save(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    MedleyWindow *w = MEDLEY_WINDOW(wd);
    if (w->path)
        medley_window_save_to(w, w->path);
    else
        choose(w, "Save the Project", TRUE, save_path);
}

static void act_save_as(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    choose(MEDLEY_WINDOW(wd), "Save the Project As", TRUE, save_path);
}

static void act_undo(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    MedleyWindow *w = MEDLEY_WINDOW(wd);
    swap_board(w, w->undo, w->redo);
}

static void act_redo(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    MedleyWindow *w = MEDLEY_WINDOW(wd);
    swap_board(w, w->redo, w->undo);
}

static void act_add_text(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    MedleyWindow *w = MEDLEY_WINDOW(wd);
    GtkEntryBuffer *b = gtk_entry_get_buffer(w->text_entry);
    studio_board_add_text(w, gtk_entry_buffer_get_text(b));
    gtk_entry_buffer_set_text(b, "", 0);
}

static void on_files_chosen(GtkNativeDialog *d, int response, gpointer user)
{
    MedleyWindow *w = user;
    if (response == GTK_RESPONSE_ACCEPT) {
        GListModel *files = gtk_file_chooser_get_files(GTK_FILE_CHOOSER(d));
        GSList *l = NULL;
        for (guint i = 0; i < g_list_model_get_n_items(files); i++)
            l = g_slist_append(l, g_list_model_get_item(files, i));
        studio_board_add_files(w, l);
        g_slist_free_full(l, g_object_unref);
        g_object_unref(files);
    }
    g_object_unref(d);
}

static void act_add_files(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    MedleyWindow *w = MEDLEY_WINDOW(wd);
    GtkFileChooserNative *d = gtk_file_chooser_native_new("Add Inputs", GTK_WINDOW(w), GTK_FILE_CHOOSER_ACTION_OPEN,
                                                          "_Add", "_Cancel");
    gtk_file_chooser_set_select_multiple(GTK_FILE_CHOOSER(d), TRUE);
    g_signal_connect(d, "response", G_CALLBACK(on_files_chosen), w);
    gtk_native_dialog_show(GTK_NATIVE_DIALOG(d));
}

static void act_paste(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    MedleyWindow *w = MEDLEY_WINDOW(wd);
    if (gtk_widget_has_focus(GTK_WIDGET(w->text_entry)) ||
        gtk_widget_is_ancestor(gtk_root_get_focus(GTK_ROOT(w)), GTK_WIDGET(w->text_entry))) {
        gtk_widget_activate_action(GTK_WIDGET(w->text_entry), "clipboard.paste", NULL);
        return;
    }
    studio_board_paste(w);
}

static void act_generate(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    studio_runs_generate(MEDLEY_WINDOW(wd));
}

static void act_cancel(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    studio_runs_cancel_current(MEDLEY_WINDOW(wd));
}

static void act_restore_run(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    MedleyWindow *w = MEDLEY_WINDOW(wd);
    int run = GPOINTER_TO_INT(g_object_get_data(G_OBJECT(w), "shown-run"));
    if (run < 0 || run >= w->project.nruns) {
        medley_window_toast(w, "Pick a run in the history first");
        return;
    }
    studio_runs_restore(w, w->project.runs[run].job, "the run");
}

static void act_restore_dropped(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    MedleyWindow *w = MEDLEY_WINDOW(wd);
    const char *job = g_object_get_data(G_OBJECT(w), "dropped-job");
    if (job)
        studio_runs_restore(w, job, "the dropped file");
}

static void on_restore_file(GtkNativeDialog *d, int response, gpointer user)
{
    MedleyWindow *w = user;
    if (response == GTK_RESPONSE_ACCEPT) {
        GFile *f = gtk_file_chooser_get_file(GTK_FILE_CHOOSER(d));
        char *path = f ? g_file_get_path(f) : NULL;
        char *job = path ? medley_job_read_from(path) : NULL;
        if (job)
            studio_runs_restore(w, job, path);
        else if (path)
            medley_window_error(w, "No Job in This File", "Only images, videos and texts written by Medley carry "
                                                          "the job that made them.");
        free(job);
        g_free(path);
        if (f)
            g_object_unref(f);
    }
    g_object_unref(d);
}

static void act_restore_file(GtkWidget *wd, const char *name, GVariant *p)
{
    (void)name;
    (void)p;
    MedleyWindow *w = MEDLEY_WINDOW(wd);
    GtkFileChooserNative *d = gtk_file_chooser_native_new("Restore a Job from an Output", GTK_WINDOW(w),
                                                          GTK_FILE_CHOOSER_ACTION_OPEN, "_Restore", "_Cancel");
    g_signal_connect(d, "response", G_CALLBACK(on_restore_file), w);
    gtk_native_dialog_show(GTK_NATIVE_DIALOG(d));
}

static void on_entry_activate(GtkEntry *e, gpointer user)
{
    (void)e;
    gtk_widget_activate_action(GTK_WIDGET(user), "win.add-text", NULL);
}

/* ---- close ---- */

static void on_close_response(AdwMessageDialog *d, const char *response, gpointer user)
{
    (void)d;
    MedleyWindow *w = user;
    if (strcmp(response, "save") == 0) {
        if (!w->path)
            choose(w, "Save the Project", TRUE, save_path);
        else if (medley_window_save_to(w, w->path))
            gtk_window_destroy(GTK_WINDOW(w));
    } else if (strcmp(response, "discard") == 0) {
        w->edits_saved = w->edits;
        gtk_window_destroy(GTK_WINDOW(w));
    }
}

static gboolean on_close_request(GtkWindow *win, gpointer user)
{
    (void)user;
    MedleyWindow *w = MEDLEY_WINDOW(win);
    if (w->edits == w->edits_saved || g_object_get_data(G_OBJECT(w), "no-close-prompt"))
        return FALSE;
    GtkWidget *d = adw_message_dialog_new(win, "Save Changes?",
                                          "The project has changes that are not saved. Unsaved work is lost when "
                                          "the window closes.");
    adw_message_dialog_add_responses(ADW_MESSAGE_DIALOG(d), "cancel", "_Cancel", "discard", "_Discard", "save",
                                     "_Save", NULL);
    adw_message_dialog_set_response_appearance(ADW_MESSAGE_DIALOG(d), "discard", ADW_RESPONSE_DESTRUCTIVE);
    adw_message_dialog_set_response_appearance(ADW_MESSAGE_DIALOG(d), "save", ADW_RESPONSE_SUGGESTED);
    adw_message_dialog_set_default_response(ADW_MESSAGE_DIALOG(d), "save");
    g_signal_connect(d, "response", G_CALLBACK(on_close_response), w);
    gtk_window_present(GTK_WINDOW(d));
    return TRUE;
}

/* ---- the type ---- */

static void medley_window_dispose(GObject *o)
{
    MedleyWindow *w = MEDLEY_WINDOW(o);
    if (w->autosave_id)
        g_source_remove(w->autosave_id);
    w->autosave_id = 0;
    if (w->queue)
        studio_runs_shutdown(w);
    studio_board_shutdown(w);
    G_OBJECT_CLASS(medley_window_parent_class)->dispose(o);
}

static void medley_window_finalize(GObject *o)
{
    MedleyWindow *w = MEDLEY_WINDOW(o);
    md_project_free(&w->project);
    g_free(w->path);
    clear_stack(w->undo);
    clear_stack(w->redo);
    g_ptr_array_unref(w->undo);
    g_ptr_array_unref(w->redo);
    g_mutex_clear(&w->models_lock);
    G_OBJECT_CLASS(medley_window_parent_class)->finalize(o);
}

/* The compute device: the CPU, or a CUDA device (MEDLEY_DEVICE, read
 * when a generator makes its graphs). A change waits for an idle queue,
 * then drops the generators so the next run makes them on the new device;
 * a device that cannot be opened leaves the CPU in charge, with a message. */
static void on_device_change(GSimpleAction *a, GVariant *v, gpointer user)
{
    MedleyWindow *w = user;
    const char *want = g_variant_get_string(v, NULL);
    if (w->jobs && w->jobs->len > 0) {
        medley_window_toast(w, "Finish or cancel the queued runs before changing the compute device");
        return;
    }
    g_mutex_lock(&w->models_lock);
    g_setenv("MEDLEY_DEVICE", want, TRUE);
    const char *got = md_backend_default()->name;
    bool ok = strcmp(got, want) == 0;
    if (!ok) {
        g_setenv("MEDLEY_DEVICE", "cpu", TRUE);
        got = md_backend_default()->name;
    }
    medley_gens_free(&w->gens);   /* made again by the next run, on the chosen device */
    g_mutex_unlock(&w->models_lock);
    g_simple_action_set_state(a, g_variant_new_string(got));
    if (ok)
        medley_window_toast(w, "Compute device: %s", strcmp(got, "cpu") == 0 ? "the CPU" : got);
    else
        medley_window_toast(w, "%s cannot be used (%s); the CPU computes", want, md_last_error());
}

static void fill_devices(MedleyWindow *w)
{
    GSimpleActionGroup *grp = g_simple_action_group_new();
    const char *now = md_backend_default()->name;
    GSimpleAction *a = g_simple_action_new_stateful("device", G_VARIANT_TYPE_STRING, g_variant_new_string(now));
    g_signal_connect(a, "change-state", G_CALLBACK(on_device_change), w);
    g_action_map_add_action(G_ACTION_MAP(grp), G_ACTION(a));
    w->device_action = a;   /* the group, kept by the window, holds it */
    g_object_unref(a);
    gtk_widget_insert_action_group(GTK_WIDGET(w), "dev", G_ACTION_GROUP(grp));
    g_object_unref(grp);
    GMenuItem *it = g_menu_item_new("CPU", NULL);
    g_menu_item_set_action_and_target_value(it, "dev.device", g_variant_new_string("cpu"));
    g_menu_append_item(w->device_menu, it);
    g_object_unref(it);
    const char *why = NULL;
    int n = md_cuda_device_count(&why);
    for (int i = 0; i < n; i++) {
        md_cuda_device d;
        char label[320], target[16];
        snprintf(target, sizeof target, "cuda:%d", i);
        if (md_cuda_device_info(i, &d) == MD_OK)
            snprintf(label, sizeof label, "%s — %s (matrix products)", target, d.name);
        else
            snprintf(label, sizeof label, "%s", target);
        it = g_menu_item_new(label, NULL);
        g_menu_item_set_action_and_target_value(it, "dev.device", g_variant_new_string(target));
        g_menu_append_item(w->device_menu, it);
        g_object_unref(it);
    }
    if (n == 0) {   /* shown, not chosen: an item without an action is greyed out */
        char label[320];
        snprintf(label, sizeof label, "No CUDA device: %s", why ? why : "none found");
        g_menu_append(w->device_menu, label, NULL);
    }
}

/* Temperature is the token path's, steer the diffusion path's: the field the
 * chosen path does not read is greyed out (and left out of the job). */
static void route_fields(MedleyWindow *w, int m)
{
    const bool diffusion = gtk_check_button_get_active(m == MD_MOD_IMAGE ? w->diffusion_image : w->diffusion_video);
    gtk_widget_set_sensitive(GTK_WIDGET(w->temperature[m]), !diffusion);
    gtk_widget_set_sensitive(GTK_WIDGET(w->steer[m]), diffusion);
}

/* Each path draws its own number of candidates by default (the token
 * path's are cheap, diffusion's dear): switching a path moves the field to
 * the new path's default, unless the person set another value. */
static void on_route_toggled(GtkCheckButton *b, MedleyWindow *w)
{
    const int m = b == w->diffusion_image ? MD_MOD_IMAGE : MD_MOD_VIDEO;
    const bool diffusion = gtk_check_button_get_active(b);
    const int was = medley_route_candidates(m, diffusion ? MEDLEY_ROUTE_TOKENS : MEDLEY_ROUTE_DIFFUSION),
              now = medley_route_candidates(m, diffusion ? MEDLEY_ROUTE_DIFFUSION : MEDLEY_ROUTE_TOKENS);
    if ((int)gtk_spin_button_get_value(w->candidates[m]) == was)
        gtk_spin_button_set_value(w->candidates[m], now);
    route_fields(w, m);
}

static void medley_window_init(MedleyWindow *w)
{
    gtk_widget_init_template(GTK_WIDGET(w));
    md_project_init(&w->project);
    w->undo = g_ptr_array_new();
    w->redo = g_ptr_array_new();
    w->zoom = 4.0;
    studio_board_init(w);
    studio_runs_init(w);
    g_signal_connect(w->text_entry, "activate", G_CALLBACK(on_entry_activate), w);
    g_signal_connect(w, "close-request", G_CALLBACK(on_close_request), NULL);
    g_signal_connect(w->diffusion_image, "toggled", G_CALLBACK(on_route_toggled), w);
    g_signal_connect(w->diffusion_video, "toggled", G_CALLBACK(on_route_toggled), w);
    gtk_spin_button_set_value(w->steer[MD_MOD_IMAGE], medley_diffusion_steer());
    gtk_spin_button_set_value(w->steer[MD_MOD_VIDEO], medley_diffusion_steer());
    route_fields(w, MD_MOD_IMAGE);
    route_fields(w, MD_MOD_VIDEO);
    w->autosave_id = g_timeout_add_seconds(AUTOSAVE_SECONDS, on_autosave, w);
    fill_recent(w);
    fill_devices(w);
    medley_window_update_title(w);
}

static void medley_window_class_init(MedleyWindowClass *k)
{
    GObjectClass *oc = G_OBJECT_CLASS(k);
    GtkWidgetClass *wc = GTK_WIDGET_CLASS(k);
    oc->dispose = medley_window_dispose;
    oc->finalize = medley_window_finalize;
    gtk_widget_class_set_template_from_resource(wc, "/org/medley/Studio/window.ui");
#define BIND(name, field) gtk_widget_class_bind_template_child_full(wc, name, FALSE, G_STRUCT_OFFSET(MedleyWindow, field))
    BIND("toasts", toasts);
    BIND("title", title);
    BIND("board_list", board_list);
    BIND("board_box", board_box);
    BIND("board_stack", board_stack);
    BIND("text_entry", text_entry);
    BIND("want_text", want[0]);
    BIND("want_image", want[1]);
    BIND("want_audio", want[2]);
    BIND("want_video", want[3]);
    BIND("seed", seed);
    BIND("seed_lock", seed_lock);
    BIND("guidance_text", guidance[0]);
    BIND("guidance_image", guidance[1]);
    BIND("guidance_video", guidance[3]);
    BIND("temperature_text", temperature[0]);
    BIND("temperature_image", temperature[1]);
    BIND("temperature_video", temperature[3]);
    BIND("candidates_image", candidates[1]);
    BIND("candidates_video", candidates[3]);
    BIND("steer_image", steer[1]);
    BIND("steer_video", steer[3]);
    BIND("guidance_audio", guidance[2]);
    BIND("steps_audio", steps[2]);
    BIND("candidates_audio", candidates[2]);
    BIND("diffusion_image", diffusion_image);
    BIND("diffusion_video", diffusion_video);
    BIND("vocoder_audio", vocoder_audio);
    BIND("queue_list", queue_list);
    BIND("history_list", history_list);
    BIND("result_box", result_box);
    BIND("result_info", result_info);
    BIND("generate_button", generate_button);
    BIND("rec_button", rec_button);
    BIND("rec_box", rec_box);
    BIND("rec_label", rec_label);
    BIND("rec_level", rec_level);
    BIND("recent_menu", recent_menu);
    BIND("device_menu", device_menu);
#undef BIND
    gtk_widget_class_install_action(wc, "win.open", NULL, act_open);
    gtk_widget_class_install_action(wc, "win.save", NULL, act_save);
    gtk_widget_class_install_action(wc, "win.open-recent", "s", act_open_recent);
    gtk_widget_class_install_action(wc, "win.save-as", NULL, act_save_as);
    gtk_widget_class_install_action(wc, "win.undo", NULL, act_undo);
    gtk_widget_class_install_action(wc, "win.redo", NULL, act_redo);
    gtk_widget_class_install_action(wc, "win.add-text", NULL, act_add_text);
    gtk_widget_class_install_action(wc, "win.add-files", NULL, act_add_files);
    gtk_widget_class_install_action(wc, "win.paste", NULL, act_paste);
    gtk_widget_class_install_action(wc, "win.generate", NULL, act_generate);
    gtk_widget_class_install_action(wc, "win.cancel", NULL, act_cancel);
    gtk_widget_class_install_action(wc, "win.restore-run", NULL, act_restore_run);
    gtk_widget_class_install_action(wc, "win.restore-dropped", NULL, act_restore_dropped);
    gtk_widget_class_install_action(wc, "win.restore-file", NULL, act_restore_file);
}

MedleyWindow *medley_window_new(GtkApplication *app)
{
    return g_object_new(MEDLEY_TYPE_WINDOW, "application", app, NULL);
}
