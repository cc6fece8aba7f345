/* studio_main.c — `medley-studio [FILE.medley]`: the application, its
 * shortcuts, the About window, and `--self-test DIR` (what CI runs under
 * Xvfb: the real window driven through its own handlers). */
#include "studio.h"
#include "studio_audio.h"

#include <string.h>

static const char *self_test_dir;
static int self_test_status;
static char *cli_path;

static MedleyWindow *new_window(GtkApplication *app)
{
    MedleyWindow *w = medley_window_new(app);
    g_object_set_data_full(G_OBJECT(w), "cli", g_strdup(cli_path), g_free);
    return w;
}

static void act_new(GSimpleAction *a, GVariant *p, gpointer user)
{
    (void)a;
    (void)p;
    gtk_window_present(GTK_WINDOW(new_window(user)));
}

static void act_quit(GSimpleAction *a, GVariant *p, gpointer user)
{
    (void)a;
    (void)p;
    GList *wins = gtk_application_get_windows(user);
    for (GList *l = wins; l; l = l->next)
        gtk_window_close(l->data);   /* each asks about unsaved changes */
}

static void act_about(GSimpleAction *a, GVariant *p, gpointer user)
{
    (void)a;
    (void)p;
    GtkWidget *about = adw_about_window_new();
    GtkWindow *parent = gtk_application_get_active_window(user);
    if (parent)
        gtk_window_set_transient_for(GTK_WINDOW(about), parent);
    g_object_set(about, "application-name", "Medley", "application-icon", "org.medley.Studio", "version",
                 MEDLEY_VERSION, "developer-name", "The Medley developers", "license-type", GTK_LICENSE_MIT_X11,
                 "comments",
                 "Any-to-any generation on your own machine: mix text, images, audio and video, and get any of "
                 "them back. The bundled models were trained by Medley itself on the data credited below.",
                 NULL);
    adw_about_window_add_legal_section(ADW_ABOUT_WINDOW(about), "MNIST handwritten digits",
                                       "Yann LeCun, Corinna Cortes and Christopher J. C. Burges",
                                       GTK_LICENSE_CUSTOM,
                                       "Creative Commons Attribution-ShareAlike 3.0 (CC BY-SA 3.0). The bundled "
                                       "models' handwritten digits come from MNIST.");
    adw_about_window_add_legal_section(ADW_ABOUT_WINDOW(about), "Free Spoken Digit Dataset",
                                       "Zohar Jackson and contributors", GTK_LICENSE_CUSTOM,
                                       "Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0). "
                                       "The bundled models' spoken digits come from FSDD.");
    adw_about_window_add_legal_section(ADW_ABOUT_WINDOW(about), "Sign Language Digits Dataset",
                                       "Turkey Ankara Ayrancı Anadolu High School students (leads Zeynep Dikle "
                                       "and Arda Mavi)",
                                       GTK_LICENSE_APACHE_2_0, NULL);
    gtk_window_present(GTK_WINDOW(about));
}

static void on_startup(GApplication *app, gpointer user)
{
    (void)user;
    static const GActionEntry entries[] = {
        {"new", act_new, NULL, NULL, NULL, {0}},
        {"quit", act_quit, NULL, NULL, NULL, {0}},
        {"about", act_about, NULL, NULL, NULL, {0}},
    };
    g_action_map_add_action_entries(G_ACTION_MAP(app), entries, G_N_ELEMENTS(entries), app);
    static const struct {
        const char *action;
        const char *accels[3];
    } keys[] = {
        {"app.new", {"<Primary>n", NULL, NULL}},
        {"app.quit", {"<Primary>q", NULL, NULL}},
        {"win.open", {"<Primary>o", NULL, NULL}},
        {"win.save", {"<Primary>s", NULL, NULL}},
        {"win.save-as", {"<Primary><Shift>s", NULL, NULL}},
        {"win.undo", {"<Primary>z", NULL, NULL}},
        {"win.redo", {"<Primary><Shift>z", "<Primary>y", NULL}},
        {"win.add-files", {"<Primary>i", NULL, NULL}},
        {"win.paste", {"<Primary>v", NULL, NULL}},
        {"win.generate", {"<Primary>Return", "<Primary>KP_Enter", NULL}},
        {"win.cancel", {"Escape", NULL, NULL}},
        {"win.show-help-overlay", {"<Primary>question", NULL, NULL}},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(keys); i++)
        gtk_application_set_accels_for_action(GTK_APPLICATION(app), keys[i].action, keys[i].accels);
    GtkCssProvider *css = gtk_css_provider_new();
    gtk_css_provider_load_from_resource(css, "/org/medley/Studio/style.css");
    gtk_style_context_add_provider_for_display(gdk_display_get_default(), GTK_STYLE_PROVIDER(css),
                                               GTK_STYLE_PROVIDER_PRIORITY_APPLICATION);
    g_object_unref(css);
    gtk_icon_theme_add_resource_path(gtk_icon_theme_get_for_display(gdk_display_get_default()),
                                     "/org/medley/Studio/icons");
    gtk_window_set_default_icon_name("org.medley.Studio");
}

static void on_activate(GApplication *app, gpointer user)
{
    (void)user;
    MedleyWindow *w = new_window(GTK_APPLICATION(app));
    gtk_window_present(GTK_WINDOW(w));
    if (self_test_dir) {
        g_application_hold(app);
        self_test_status = studio_self_test(GTK_APPLICATION(app), w, self_test_dir);
        g_application_release(app);
        g_application_quit(app);
    }
}

static void on_open(GApplication *app, GFile **files, int n, const char *hint, gpointer user)
{
    (void)hint;
    (void)user;
    for (int i = 0; i < n; i++) {
        MedleyWindow *w = new_window(GTK_APPLICATION(app));
        gtk_window_present(GTK_WINDOW(w));
        char *path = g_file_get_path(files[i]);
        if (path)
            medley_window_open(w, path);
        g_free(path);
    }
}

int main(int argc, char **argv)
{
    md_threads_init();
    /* the command-line tool beside this program, for the player window */
    char *dir = g_path_get_dirname(argv[0]);
    cli_path = g_getenv("MEDLEY_CLI") ? g_strdup(g_getenv("MEDLEY_CLI")) : g_build_filename(dir, "medley", NULL);
    if (!g_file_test(cli_path, G_FILE_TEST_IS_EXECUTABLE)) {
        g_free(cli_path);
        cli_path = g_build_filename(dir, "..", "app", "medley", NULL);   /* the build tree */
    }
    g_free(dir);
    if (argc >= 3 && strcmp(argv[1], "--self-test") == 0) {
        self_test_dir = argv[2];
        argv[2] = argv[0];
        argv += 2;
        argc -= 2;
    }
    AdwApplication *app = adw_application_new("org.medley.Studio",
                                              G_APPLICATION_HANDLES_OPEN | G_APPLICATION_NON_UNIQUE);
    g_application_set_resource_base_path(G_APPLICATION(app), "/org/medley/Studio");
    g_signal_connect(app, "startup", G_CALLBACK(on_startup), NULL);
    g_signal_connect(app, "activate", G_CALLBACK(on_activate), NULL);
    g_signal_connect(app, "open", G_CALLBACK(on_open), NULL);
    int rc = g_application_run(G_APPLICATION(app), argc, argv);
    g_object_unref(app);
    studio_audio_shutdown();
    g_free(cli_path);
    return self_test_dir ? self_test_status : rc;
}
