/* studio_test.c — `medley-studio --self-test DIR`, run by CI under Xvfb:
 * the real window, driven through the handlers a person's actions reach.
 *
 *   - files dropped: the drop handler fed a GdkFileList (image, audio,
 *     text), and text typed into the entry;
 *   - a weight changed through its slider, undone and redone;
 *   - a run (image + caption) to completion; a video run cancelled;
 *   - the main loop's longest stall while the run went (printed);
 *   - a screenshot of the window (DIR/studio.png), checked not blank;
 *   - save, reopen in a second window, compare;
 *   - a foreign and a truncated project refused with a dialog, no crash;
 *   - an output of the run dropped back: its job restored onto the board.
 * Prints a line per check; the exit status is the number of failures. */
#include "studio.h"

#include "audio_io.h"
#include "image_io.h"
#include "video_io.h"
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond, ...)                                        \
    do {                                                        \
        checks++;                                               \
        gboolean ok_ = (cond);                                  \
        failures += !ok_;                                       \
        printf("%-4s ", ok_ ? "ok" : "FAIL");                   \
        printf(__VA_ARGS__);                                    \
        printf("%s\n", ok_ ? "" : "   <-- " #cond);             \
        fflush(stdout);                                         \
    } while (0)

/* Runs the main loop until done(w) or the timeout; returns done(w). */
static gboolean wait_for(MedleyWindow *w, gboolean (*done)(MedleyWindow *), double seconds)
{
    gint64 end = g_get_monotonic_time() + (gint64)(seconds * G_USEC_PER_SEC);
    while (!done(w) && g_get_monotonic_time() < end)
        if (!g_main_context_iteration(NULL, FALSE))
            g_usleep(2000);
    return done(w);
}

static void spin(double seconds)
{
    gint64 end = g_get_monotonic_time() + (gint64)(seconds * G_USEC_PER_SEC);
    while (g_get_monotonic_time() < end)
        if (!g_main_context_iteration(NULL, FALSE))
            g_usleep(2000);
}

static int want_inputs;
static gboolean board_has(MedleyWindow *w) { return w->project.board.n >= want_inputs; }
static gboolean mapped(MedleyWindow *w) { return gtk_widget_get_mapped(GTK_WIDGET(w)); }
static gboolean idle_queue(MedleyWindow *w) { return w->jobs->len == 0; }
static gboolean running(MedleyWindow *w)
{
    if (w->jobs->len == 0)
        return FALSE;
    studio_job *sj = g_ptr_array_index(w->jobs, 0);
    return gtk_progress_bar_get_fraction(GTK_PROGRESS_BAR(sj->bar)) > 0.02;
}

static void write_inputs(const char *dir, char *png, char *wav, char *txt, size_t cap)
{
    snprintf(png, cap, "%s/seven.png", dir);
    snprintf(wav, cap, "%s/tone.wav", dir);
    snprintf(txt, cap, "%s/prompt.txt", dir);
    md_image im;
    md_image_alloc(&im, 128, 128, 3);
    for (int y = 0; y < 128; y++)
        for (int x = 0; x < 128; x++) {
            /* a thick "7": a bar on top and a diagonal */
            bool ink = (y >= 24 && y < 36 && x >= 32 && x < 96) ||
                       (y >= 36 && y < 108 && fabs((double)x - (96.0 - (y - 36) * 0.55)) < 7.0);
            for (int c = 0; c < 3; c++)
                im.pixels[(y * 128 + x) * 3 + c] = ink ? (c == 0 ? 0.9f : 0.15f) : 0.02f;
        }
    md_image_save_png(png, &im, NULL, 8);
    md_image_free(&im);
    md_audio a;
    md_audio_alloc(&a, 8000, 1, 8000);
    for (int i = 0; i < 8000; i++)
        a.samples[i] = 0.3f * sinf(2.f * 3.14159265f * 220.f * (float)i / 8000.f);
    md_audio_save(wav, &a, "wav", NULL);
    md_audio_free(&a);
    g_file_set_contents(txt, "a red seven on black\n", -1, NULL);
}

static GtkWidget *find_widget(GtkWidget *root, GType type)
{
    if (G_TYPE_CHECK_INSTANCE_TYPE(root, type))
        return root;
    for (GtkWidget *c = gtk_widget_get_first_child(root); c; c = gtk_widget_get_next_sibling(c)) {
        GtkWidget *f = find_widget(c, type);
        if (f)
            return f;
    }
    return NULL;
}

static GtkWidget *find_named(GtkWidget *root, const char *name)
{
    if (strcmp(gtk_widget_get_name(root), name) == 0)
        return root;
    for (GtkWidget *c = gtk_widget_get_first_child(root); c; c = gtk_widget_get_next_sibling(c)) {
        GtkWidget *f = find_named(c, name);
        if (f)
            return f;
    }
    return NULL;
}

/* Renders the window into a texture, saves it, and returns the spread of
 * its pixel values (0: blank). */
static double screenshot(MedleyWindow *w, const char *path)
{
    GdkPaintable *p = gtk_widget_paintable_new(GTK_WIDGET(w));
    int wd = gtk_widget_get_width(GTK_WIDGET(w)), ht = gtk_widget_get_height(GTK_WIDGET(w));
    GtkSnapshot *s = gtk_snapshot_new();
    gdk_paintable_snapshot(p, s, wd, ht);
    GskRenderNode *node = gtk_snapshot_free_to_node(s);
    double spread = 0;
    if (node) {
        GskRenderer *r = gtk_native_get_renderer(GTK_NATIVE(w));
        GdkTexture *t = gsk_renderer_render_texture(r, node, &GRAPHENE_RECT_INIT(0, 0, wd, ht));
        gdk_texture_save_to_png(t, path);
        int tw = gdk_texture_get_width(t), th = gdk_texture_get_height(t);
        guchar *px = g_malloc((size_t)tw * (size_t)th * 4);
        gdk_texture_download(t, px, (gsize)tw * 4);
        double sum = 0, sum2 = 0;
        size_t n = (size_t)tw * (size_t)th;
        for (size_t i = 0; i < n; i++) {
            double v = (px[i * 4] + px[i * 4 + 1] + px[i * 4 + 2]) / 3.0;
            sum += v;
            sum2 += v * v;
        }
        spread = n ? sqrt(fmax(0.0, sum2 / (double)n - (sum / (double)n) * (sum / (double)n))) : 0;
        g_free(px);
        g_object_unref(t);
        gsk_render_node_unref(node);
    }
    g_object_unref(p);
    return spread;
}

int studio_self_test(GtkApplication *app, MedleyWindow *w, const char *dir)
{
    g_mkdir_with_parents(dir, 0755);
    g_object_set_data(G_OBJECT(w), "no-close-prompt", GINT_TO_POINTER(1));
    CHECK(wait_for(w, mapped, 20), "the window opens");

    /* drop three files at once, then type a text */
    char png[1024], wav[1024], txt[1024];
    write_inputs(dir, png, wav, txt, sizeof png);
    GSList *files = NULL;
    files = g_slist_append(files, g_file_new_for_path(png));
    files = g_slist_append(files, g_file_new_for_path(wav));
    files = g_slist_append(files, g_file_new_for_path(txt));
    GdkFileList *fl = gdk_file_list_new_from_list(files);
    GValue v = G_VALUE_INIT;
    g_value_init(&v, GDK_TYPE_FILE_LIST);
    g_value_take_boxed(&v, fl);
    gboolean took = studio_board_on_drop(NULL, &v, 10, 10, w);
    g_value_unset(&v);
    g_slist_free_full(files, g_object_unref);
    want_inputs = 3;
    CHECK(took && wait_for(w, board_has, 20), "three dropped files become three inputs (%d)", w->project.board.n);
    gboolean kinds = w->project.board.n == 3;
    for (int i = 0; kinds && i < 3; i++) {
        const md_proj_input *in = &w->project.board.in[i];
        kinds = (strcmp(in->name, "seven.png") == 0 && in->modality == MD_MOD_IMAGE) ||
                (strcmp(in->name, "tone.wav") == 0 && in->modality == MD_MOD_AUDIO) ||
                (in->modality == MD_MOD_TEXT && strcmp(in->text, "a red seven on black") == 0);
    }
    CHECK(kinds, "each has its modality: image, audio, text");
    gtk_editable_set_text(GTK_EDITABLE(w->text_entry), "moving left");
    g_signal_emit_by_name(w->text_entry, "activate");
    want_inputs = 4;
    CHECK(wait_for(w, board_has, 5) && strcmp(w->project.board.in[3].text, "moving left") == 0,
          "typed text becomes an input");

    /* a weight through its slider; undo; redo */
    GtkWidget *row0 = GTK_WIDGET(gtk_list_box_get_row_at_index(w->board_list, 0));
    GtkWidget *scale = row0 ? find_widget(row0, GTK_TYPE_SCALE) : NULL;
    if (scale)
        gtk_range_set_value(GTK_RANGE(scale), 0.5);
    CHECK(scale && w->project.board.in[0].weight == 0.5, "a weight slider sets the input's weight");
    gtk_widget_activate_action(GTK_WIDGET(w), "win.undo", NULL);
    CHECK(w->project.board.in[0].weight == 1.0, "undo restores it");
    gtk_widget_activate_action(GTK_WIDGET(w), "win.redo", NULL);
    CHECK(w->project.board.in[0].weight == 0.5, "redo applies it again");
    /* the microphone: records into an audio input where a device exists;
     * where none does (CI), a clear message and nothing else */
    int n_before = w->project.board.n;
    gtk_toggle_button_set_active(w->rec_button, TRUE);
    if (w->rec) {
        spin(0.6);
        gtk_toggle_button_set_active(w->rec_button, FALSE);
        CHECK(w->project.board.n == n_before + 1 &&
                  w->project.board.in[w->project.board.n - 1].modality == MD_MOD_AUDIO,
              "recording from the microphone adds an audio input");
        medley_window_board_will_change(w);
        md_board_remove(&w->project.board, w->project.board.n - 1);
        studio_board_refresh(w);
    } else {
        const char *why = g_object_get_data(G_OBJECT(w), "last-record-error");
        CHECK(why && *why && !gtk_toggle_button_get_active(w->rec_button) && w->project.board.n == n_before,
              "without a microphone, Record says why (\"%s\") and changes nothing", why ? why : "");
    }
    /* mute the audio tone: a sine is far from the world's voices */
    for (int i = 0; i < w->project.board.n; i++)
        if (w->project.board.in[i].modality == MD_MOD_AUDIO)
            w->project.board.in[i].muted = true;
    studio_board_refresh(w);

    /* the compute device: the CPU at first; a CUDA device where one is
     * usable, else a message and the CPU still */
    GAction *dev = w->device_action ? G_ACTION(w->device_action) : NULL;
    GVariant *state = dev ? g_action_get_state(dev) : NULL;
    CHECK(state && strcmp(g_variant_get_string(state, NULL), "cpu") == 0, "the compute device starts as the CPU");
    if (state)
        g_variant_unref(state);
    if (dev) {
        g_action_change_state(dev, g_variant_new_string("cuda:0"));
        state = g_action_get_state(dev);
        const char *now = g_variant_get_string(state, NULL), *toast = g_object_get_data(G_OBJECT(w), "last-toast");
        CHECK(strcmp(now, "cuda:0") == 0 || (strcmp(now, "cpu") == 0 && toast && strstr(toast, "cannot be used")),
              "choosing cuda:0 uses it, or says why not and keeps the CPU (%s: \"%s\")", now, toast ? toast : "");
        g_variant_unref(state);
        g_action_change_state(dev, g_variant_new_string("cpu"));   /* the rest of the test runs on the CPU */
    }

    /* a run to completion: image and caption */
    gtk_check_button_set_active(w->want[MD_MOD_TEXT], TRUE);
    gtk_check_button_set_active(w->want[MD_MOD_IMAGE], TRUE);
    gtk_check_button_set_active(w->want[MD_MOD_VIDEO], FALSE);
    gtk_spin_button_set_value(w->seed, 7);
    gtk_toggle_button_set_active(w->seed_lock, TRUE);
    gtk_spin_button_set_value(w->guidance[MD_MOD_IMAGE], 4.5);   /* per-output parameters */
    gtk_spin_button_set_value(w->temperature[MD_MOD_TEXT], 0.8);
    w->max_stall_us = 0;
    w->ticks = w->stalls_over_16ms = 0;
    w->frames = w->frames_over_16ms = w->max_frame_us = 0;
    gint64 t0 = g_get_monotonic_time();
    gtk_widget_activate_action(GTK_WIDGET(w), "win.generate", NULL);
    CHECK(w->jobs->len == 1, "Generate queues a job");
    gboolean done = wait_for(w, idle_queue, 600);
    double secs = (double)(g_get_monotonic_time() - t0) / 1e6;
    const md_proj_run *r = w->project.nruns ? &w->project.runs[w->project.nruns - 1] : NULL;
    CHECK(done && r && r->state == MD_RUN_DONE && r->nout == 2, "the run completes with 2 outputs in %.1f s (%s)",
          secs, r && r->error ? r->error : "");
    gboolean image_ok = FALSE, text_ok = FALSE;
    for (int k = 0; r && k < r->nout; k++) {
        if (r->out[k].modality == MD_MOD_IMAGE) {
            GdkTexture *t = studio_texture_from_bytes(MD_MOD_IMAGE, r->out[k].media->data, r->out[k].media->size);
            image_ok = t && gdk_texture_get_width(t) == 64;
            if (t)
                g_object_unref(t);
        } else if (r->out[k].modality == MD_MOD_TEXT) {
            text_ok = r->out[k].media->size > 12 && g_utf8_validate((const char *)r->out[k].media->data,
                                                                    (gssize)r->out[k].media->size, NULL);
        }
    }
    CHECK(image_ok && text_ok, "its outputs are a 64x64 PNG and a caption");
    /* the job carries each output's own parameters */
    double ig = 0, it = 0, tg = 0, tt = 0;
    md_json_doc *doc;
    if (r && md_json_parse(r->job, strlen(r->job), "job", &doc) == MD_OK) {
        const md_json *outs = md_json_get(md_json_root(doc), "outputs");
        for (size_t i = 0; i < md_json_len(outs); i++) {
            const md_json *o = md_json_at(outs, i), *ps = md_json_get(o, "params");
            const char *mod = md_json_str(md_json_get(o, "modality"));
            bool img = mod && strcmp(mod, "image") == 0;
            md_json_num(md_json_get(ps, "guidance"), img ? &ig : &tg);
            md_json_num(md_json_get(ps, "temperature"), img ? &it : &tt);
        }
        md_json_free(doc);
    }
    CHECK(ig == 4.5 && it == 1.0 && tg == 3.0 && tt == 0.8, "each output ran with its own parameters (image "
          "guidance %g temperature %g, text guidance %g temperature %g)", ig, it, tg, tt);
    printf("     main loop while the run went (a tick every 5 ms): %lld ticks, %lld gaps over 16 ms, the longest "
           "%.1f ms (goal: none over 16 ms)\n",
           (long long)w->ticks, (long long)w->stalls_over_16ms, (double)w->max_stall_us / 1000.0);
    printf("     frames drawn while the run went: %lld, %lld over 16 ms, the longest %.1f ms\n", (long long)w->frames,
           (long long)w->frames_over_16ms, (double)w->max_frame_us / 1000.0);
    CHECK(gtk_widget_get_first_child(GTK_WIDGET(w->result_box)) != NULL, "the run's outputs are shown");
    CHECK(r && r->job && !strstr(r->job, "\"steer\"") && !gtk_widget_get_sensitive(GTK_WIDGET(w->steer[MD_MOD_IMAGE])) &&
              gtk_widget_get_sensitive(GTK_WIDGET(w->temperature[MD_MOD_IMAGE])),
          "by tokens the Steer field is greyed out and the job has no steer");

    /* audio, and the picture by diffusion, where those models are bundled */
    if (w->bundle_loaded && w->bundle.have_ag) {
        const bool has_ig = w->bundle.have_ig, has_dv = has_ig && w->bundle.have_mo;
        const gboolean want_video = gtk_check_button_get_active(w->want[MD_MOD_VIDEO]);
        gtk_check_button_set_active(w->want[MD_MOD_TEXT], FALSE);
        gtk_check_button_set_active(w->want[MD_MOD_IMAGE], has_ig);
        gtk_check_button_set_active(w->want[MD_MOD_VIDEO], has_dv);
        gtk_check_button_set_active(w->want[MD_MOD_AUDIO], TRUE);
        const int ci = (int)gtk_spin_button_get_value(w->candidates[MD_MOD_IMAGE]),
                  cv = (int)gtk_spin_button_get_value(w->candidates[MD_MOD_VIDEO]);
        gtk_check_button_set_active(w->diffusion_image, has_ig);
        gtk_check_button_set_active(w->diffusion_video, has_dv);
        if (has_ig)   /* the fields held the token path's defaults: now the diffusion generators' */
            CHECK(ci == medley_route_candidates(MD_MOD_IMAGE, MEDLEY_ROUTE_TOKENS) &&
                      cv == medley_route_candidates(MD_MOD_VIDEO, MEDLEY_ROUTE_TOKENS) &&
                      (int)gtk_spin_button_get_value(w->candidates[MD_MOD_IMAGE]) ==
                          medley_route_candidates(MD_MOD_IMAGE, MEDLEY_ROUTE_DIFFUSION) &&
                      (int)gtk_spin_button_get_value(w->candidates[MD_MOD_VIDEO]) ==
                          (has_dv ? medley_route_candidates(MD_MOD_VIDEO, MEDLEY_ROUTE_DIFFUSION) : cv),
                  "switching to diffusion moves candidates from the token path's defaults (%d, %d) to diffusion's "
                  "(%d, %d)",
                  ci, cv, (int)gtk_spin_button_get_value(w->candidates[MD_MOD_IMAGE]),
                  (int)gtk_spin_button_get_value(w->candidates[MD_MOD_VIDEO]));
        if (has_ig) {
            CHECK(gtk_widget_get_sensitive(GTK_WIDGET(w->steer[MD_MOD_IMAGE])) &&
                      !gtk_widget_get_sensitive(GTK_WIDGET(w->temperature[MD_MOD_IMAGE])),
                  "by diffusion the Steer field is live and Temperature greyed out");
            CHECK(gtk_spin_button_get_value(w->steer[MD_MOD_IMAGE]) == medley_diffusion_steer(),
                  "the Steer field starts at the generator's default (%g)", medley_diffusion_steer());
            gtk_spin_button_set_value(w->steer[MD_MOD_IMAGE], 0.25);
        }
        gtk_check_button_set_active(w->vocoder_audio, w->bundle.have_voc);
        gtk_spin_button_set_value(w->steps[MD_MOD_AUDIO], 10);
        t0 = g_get_monotonic_time();
        gtk_widget_activate_action(GTK_WIDGET(w), "win.generate", NULL);
        done = wait_for(w, idle_queue, 600);
        secs = (double)(g_get_monotonic_time() - t0) / 1e6;
        r = w->project.nruns ? &w->project.runs[w->project.nruns - 1] : NULL;
        gboolean wav_ok = FALSE, diff_ok = !has_ig;
        for (int k = 0; done && r && k < r->nout; k++)
            if (r->out[k].modality == MD_MOD_AUDIO) {
                md_audio a = {0};
                wav_ok = md_audio_load_memory(r->out[k].media->data, r->out[k].media->size, "out.wav", NULL, &a,
                                              NULL) == MD_OK &&
                         a.rate == 8000 && a.frames == 8000;
                md_audio_free(&a);
            }
        if (has_ig && r && r->job)
            diff_ok = strstr(r->job, "\"diffusion-image\"") != NULL && strstr(r->job, "\"steer\":0.25") != NULL &&
                      (!has_dv || strstr(r->job, "\"diffusion-video\"") != NULL);
        if (w->bundle.have_voc)   /* the neural vocoder asked for: the job says so */
            wav_ok = wav_ok && r && r->job && strstr(r->job, "\"vocoder\":1");
        CHECK(done && r && r->state == MD_RUN_DONE && wav_ok && diff_ok,
              "a run with audio%s gives a 1 s WAV at 8 kHz%s (%.1f s)",
              has_dv ? ", a picture and a video by diffusion" : has_ig ? " and a picture by diffusion" : "",
              has_dv ? ", and a picture (steer 0.25) and a video the diffusion generators made"
                     : has_ig ? " and a picture the diffusion generator made with steer 0.25" : "", secs);
        CHECK(find_named(GTK_WIDGET(w->result_box), "result-waveform") != NULL, "the clip's card shows its waveform");
        gtk_check_button_set_active(w->want[MD_MOD_AUDIO], FALSE);
        gtk_check_button_set_active(w->diffusion_image, FALSE);
        gtk_check_button_set_active(w->diffusion_video, FALSE);
        CHECK((int)gtk_spin_button_get_value(w->candidates[MD_MOD_IMAGE]) == ci &&
                  (int)gtk_spin_button_get_value(w->candidates[MD_MOD_VIDEO]) == cv,
              "and back to the token path's on switching back");
        gtk_check_button_set_active(w->want[MD_MOD_VIDEO], want_video);
        gtk_check_button_set_active(w->vocoder_audio, FALSE);
    } else {
        printf("     (no audio decoder bundled: the audio run is not checked)\n");
    }

    /* a video run, cancelled once it runs */
    gtk_check_button_set_active(w->want[MD_MOD_TEXT], FALSE);
    gtk_check_button_set_active(w->want[MD_MOD_IMAGE], FALSE);
    gtk_check_button_set_active(w->want[MD_MOD_VIDEO], TRUE);
    int runs_before = w->project.nruns;
    gtk_widget_activate_action(GTK_WIDGET(w), "win.generate", NULL);
    gboolean ran = wait_for(w, running, 120);
    gint64 tc = g_get_monotonic_time();
    gtk_widget_activate_action(GTK_WIDGET(w), "win.cancel", NULL);
    gboolean stopped = wait_for(w, idle_queue, 30);
    double lag = (double)(g_get_monotonic_time() - tc) / 1e3;
    CHECK(ran && stopped && w->project.nruns == runs_before, "a running video job cancels (%.0f ms), and no run is "
          "added", lag);

    /* the screenshot */
    spin(0.3);
    char shot[1100];
    snprintf(shot, sizeof shot, "%s/studio.png", dir);
    double spread = screenshot(w, shot);
    for (int k = 0; k < 3 && spread <= 5.0; k++) {   /* a frame caught mid-relayout renders empty: draw again */
        spin(0.5);
        spread = screenshot(w, shot);
    }
    CHECK(spread > 5.0 && g_file_test(shot, G_FILE_TEST_EXISTS), "a screenshot is saved and is not blank "
          "(pixel spread %.1f): %s", spread, shot);

    /* save, reopen, compare */
    gtk_check_button_set_active(w->vocoder_audio, TRUE);   /* a setting the reopened window must show */
    char proj[1100];
    snprintf(proj, sizeof proj, "%s/test.medley", dir);
    CHECK(medley_window_save_to(w, proj) && w->edits == w->edits_saved, "the project saves");
    MedleyWindow *w2 = medley_window_new(app);
    g_object_set_data(G_OBJECT(w2), "no-close-prompt", GINT_TO_POINTER(1));
    gtk_window_present(GTK_WINDOW(w2));
    gboolean opened = medley_window_open(w2, proj);
    CHECK(opened && md_project_equal(&w->project, &w2->project), "it reopens equal (%d inputs, %d runs)",
          w2->project.board.n, w2->project.nruns);
    CHECK(opened && gtk_spin_button_get_value(w2->seed) == 7 && gtk_check_button_get_active(w2->want[MD_MOD_VIDEO]) &&
              gtk_check_button_get_active(w2->vocoder_audio),
          "with its settings (seed, outputs, the neural vocoder chosen)");

    /* refusals */
    char bad[1100];
    snprintf(bad, sizeof bad, "%s/notes.medley", dir);
    g_file_set_contents(bad, "just some notes\n", -1, NULL);
    gboolean refused = !medley_window_open(w2, bad);
    const char *why = g_object_get_data(G_OBJECT(w2), "last-error");
    CHECK(refused && why && strstr(why, "not a Medley project") && md_project_equal(&w->project, &w2->project),
          "a text file named .medley is refused with a dialog, and the open project stays: \"%s\"", why ? why : "");
    char *bytes;
    gsize n;
    if (g_file_get_contents(proj, &bytes, &n, NULL)) {
        snprintf(bad, sizeof bad, "%s/truncated.medley", dir);
        g_file_set_contents(bad, bytes, (gssize)(n / 3), NULL);
        g_free(bytes);
    }
    refused = !medley_window_open(w2, bad);
    why = g_object_get_data(G_OBJECT(w2), "last-error");
    CHECK(refused && why && strstr(why, "damaged"), "a truncated project is refused: \"%s\"", why ? why : "");
    gtk_window_destroy(GTK_WINDOW(w2));

    /* drop an output back: it carries its job */
    const md_proj_run *done_run = NULL;
    for (int i = 0; i < w->project.nruns; i++)   /* the image-and-caption run */
        for (int k = 0; w->project.runs[i].state == MD_RUN_DONE && k < w->project.runs[i].nout; k++)
            if (w->project.runs[i].out[k].modality == MD_MOD_TEXT && !done_run)
                done_run = &w->project.runs[i];
    char outpng[1100] = "";
    for (int k = 0; done_run && k < done_run->nout; k++)
        if (done_run->out[k].modality == MD_MOD_IMAGE) {
            snprintf(outpng, sizeof outpng, "%s/%s", dir, done_run->out[k].name);
            g_file_set_contents(outpng, (const char *)done_run->out[k].media->data,
                                (gssize)done_run->out[k].media->size, NULL);
        }
    int before = w->project.board.n;
    GSList *one = g_slist_append(NULL, g_file_new_for_path(outpng));
    studio_board_add_files(w, one);
    g_slist_free_full(one, g_object_unref);
    want_inputs = before + 1;
    wait_for(w, board_has, 10);
    const char *job = g_object_get_data(G_OBJECT(w), "dropped-job");
    CHECK(outpng[0] && job && strstr(job, "\"seed\""), "a dropped output offers the job it carries");
    gtk_spin_button_set_value(w->seed, 99);
    gtk_spin_button_set_value(w->guidance[MD_MOD_IMAGE], 3.0);
    gtk_widget_activate_action(GTK_WIDGET(w), "win.restore-dropped", NULL);
    gboolean restored = gtk_spin_button_get_value(w->seed) == 7 && w->project.board.n == 3 &&
                        gtk_spin_button_get_value(w->guidance[MD_MOD_IMAGE]) == 4.5 &&
                        gtk_check_button_get_active(w->want[MD_MOD_IMAGE]) &&
                        gtk_check_button_get_active(w->want[MD_MOD_TEXT]);
    CHECK(restored, "Restore Job puts its inputs (%d: the muted tone left out) and settings back (seed %g)",
          w->project.board.n, gtk_spin_button_get_value(w->seed));

    /* a video input: its first frame shows, and its slider scrubs */
    char mp4[1100];
    snprintf(mp4, sizeof mp4, "%s/square.mp4", dir);
    md_video mv;
    md_video_alloc(&mv, 64, 64, 3, 16, 16.0);
    for (int f = 0; f < 16; f++)
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
                for (int c = 0; c < 3; c++)
                    mv.pixels[(((size_t)f * 64 + (size_t)y) * 64 + (size_t)x) * 3 + (size_t)c] =
                        (x >= 4 * f && x < 4 * f + 12 && y >= 26 && y < 38) ? 1.f : 0.f;
    md_video_save(mp4, &mv, "mp4", NULL);
    md_video_free(&mv);
    before = w->project.board.n;
    one = g_slist_append(NULL, g_file_new_for_path(mp4));
    studio_board_add_files(w, one);
    g_slist_free_full(one, g_object_unref);
    want_inputs = before + 1;
    wait_for(w, board_has, 10);
    GtkWidget *vrow = GTK_WIDGET(gtk_list_box_get_row_at_index(w->board_list, w->project.board.n - 1));
    GtkWidget *vpic = vrow ? find_widget(vrow, GTK_TYPE_PICTURE) : NULL;
    GtkWidget *scrub = NULL;
    /* the row: preview, then a box with the name, the weight slider and the scrubber */
    if (vrow) {
        GtkWidget *mid = gtk_widget_get_next_sibling(gtk_widget_get_first_child(gtk_widget_get_first_child(vrow)));
        for (GtkWidget *c = mid ? gtk_widget_get_first_child(mid) : NULL; c; c = gtk_widget_get_next_sibling(c))
            if (GTK_IS_SCALE(c) && g_object_get_data(G_OBJECT(c), "picture"))
                scrub = c;
    }
    GdkPaintable *first = vpic ? gtk_picture_get_paintable(GTK_PICTURE(vpic)) : NULL;
    if (first)
        g_object_ref(first);
    if (scrub)
        gtk_range_set_value(GTK_RANGE(scrub), 1.0);
    GdkPaintable *last = vpic ? gtk_picture_get_paintable(GTK_PICTURE(vpic)) : NULL;
    CHECK(w->project.board.n == before + 1 && first && scrub && last && last != first,
          "a dropped video shows its first frame, and its slider scrubs to another");
    if (first)
        g_object_unref(first);

    printf("%d checks, %d failed\n", checks, failures);
    fflush(stdout);
    gtk_window_destroy(GTK_WINDOW(w));
    return failures;
}
