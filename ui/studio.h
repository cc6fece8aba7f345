/* studio.h — Medley's studio (GTK4 + libadwaita): the window and what its
 * parts share. The studio draws and edits; it never computes tensors: every
 * generation runs as a job (core/jobs.h) on the queue's worker thread,
 * through app/job.h, and its reports reach the main thread by g_idle_add.
 *
 *   studio_window.c   the window (template window.ui), actions, project
 *                     files (core/project.h), autosave, undo/redo
 *   studio_board.c    the inputs board: drop, paste, files, text, previews,
 *                     weights, mute, order
 *   studio_runs.c     outputs and parameters, the queue, the history of
 *                     runs and their views (image zoom, video playback,
 *                     text copy), drag out, restore job
 *   studio_media.c    media bytes -> textures, waveforms, video frames
 *   studio_test.c     the self-test the CI runs under Xvfb
 */
#ifndef MEDLEY_STUDIO_H
#define MEDLEY_STUDIO_H

#include <adwaita.h>
#include <gtk/gtk.h>

#include "job.h"
#include "jobs.h"
#include "project.h"

G_BEGIN_DECLS

#define MEDLEY_TYPE_WINDOW (medley_window_get_type())
G_DECLARE_FINAL_TYPE(MedleyWindow, medley_window, MEDLEY, WINDOW, AdwApplicationWindow)

/* A job in the queue, as the main thread sees it. */
typedef struct studio_job {
    int64_t id;                      /* md_jobs id */
    MedleyWindow *win;
    GtkWidget *row, *bar, *label, *picture;
    /* the worker's copy of what to run */
    medley_job job;
    md_blob *media[MEDLEY_JOB_MAX_INPUTS];   /* the board's media, referenced while the job runs */
    char *job_json;                  /* the job as outputs carry it (set by the worker) */
    md_proj_output out[4];           /* the written outputs' bytes (set by the worker) */
    int nout;
    md_status result;
    char error[512];
    bool finished;
} studio_job;

struct _MedleyWindow {
    AdwApplicationWindow parent;

    /* template children */
    AdwToastOverlay *toasts;
    AdwWindowTitle *title;
    GtkListBox *board_list;
    GtkWidget *board_box;
    GtkStack *board_stack;
    GtkEntry *text_entry;
    GtkCheckButton *want[4];
    GtkSpinButton *seed;
    GtkSpinButton *guidance[4], *temperature[4], *candidates[4], *steps[4], *steer[4];   /* per output (NULL: none) */
    GtkCheckButton *diffusion_image;  /* pictures by the diffusion path */
    GtkCheckButton *diffusion_video;  /* videos' first frame by the diffusion path */
    GtkCheckButton *vocoder_audio;    /* sound by the neural vocoder (else Griffin-Lim) */
    GtkToggleButton *seed_lock;
    GtkListBox *queue_list;
    GtkListBox *history_list;
    GtkBox *result_box;
    GtkLabel *result_info;
    GtkButton *generate_button;
    GtkToggleButton *rec_button;
    GtkWidget *rec_box;
    GtkLabel *rec_label;
    GtkLevelBar *rec_level;
    GMenu *recent_menu;
    GMenu *device_menu;              /* the CPU and each CUDA device (dev.device) */
    GSimpleAction *device_action;    /* dev.device; its state names the device in use */

    /* sound (studio_audio.h) */
    struct studio_rec *rec;
    struct studio_player *player;
    GtkWidget *player_wave;          /* the waveform showing the playhead */
    guint audio_timer;

    /* the project */
    md_project project;
    char *path;                      /* its file, or NULL (untitled) */
    int64_t saved_gen;               /* project.saved_generation + edits at the last save */
    int64_t edits;                   /* bumped by every change */
    int64_t edits_saved;
    GPtrArray *undo, *redo;          /* md_board * snapshots */
    guint autosave_id;

    /* generation */
    md_jobs *queue;
    GPtrArray *jobs;                 /* studio_job *, queued or running */
    GMutex models_lock;              /* the bundle and generators, used by the worker */
    medley_bundle bundle;
    medley_gens gens;
    bool bundle_loaded, bundle_failed;
    char bundle_error[1024];
    char *out_dir;                   /* where outputs are written before they join the project */

    /* the result view */
    guint play_id;
    GPtrArray *play_frames;          /* GdkTexture * of the video being played */
    guint play_index;
    GtkPicture *play_picture;
    double zoom;

    /* measurement (the self-test reads it) */
    gint64 last_tick_us;
    gint64 max_stall_us;             /* the longest gap between main-loop ticks while a job ran */
    int64_t ticks, stalls_over_16ms; /* ticks while a job ran, and gaps over 16 ms among them */
    gint64 frame_start_us, max_frame_us;     /* the frame clock: before-paint .. after-paint */
    int64_t frames, frames_over_16ms;        /* frames drawn while a job ran */
    guint tick_id;
};

MedleyWindow *medley_window_new(GtkApplication *app);
/* Project files: open (refuses foreign, damaged or newer files with a
 * dialog) and save; return success. */
gboolean medley_window_open(MedleyWindow *w, const char *path);
gboolean medley_window_save_to(MedleyWindow *w, const char *path);
void medley_window_toast(MedleyWindow *w, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void medley_window_error(MedleyWindow *w, const char *heading, const char *body);
/* Records a board edit for undo (call before changing the board). */
void medley_window_board_will_change(MedleyWindow *w);
void medley_window_changed(MedleyWindow *w);
void medley_window_update_title(MedleyWindow *w);

/* studio_board.c */
void studio_board_init(MedleyWindow *w);
void studio_board_refresh(MedleyWindow *w);
/* Adds files (GFile *), each as an input of its modality; returns how many
 * were added (unreadable ones are reported). The drop handler calls it. */
int studio_board_add_files(MedleyWindow *w, GSList *files);
gboolean studio_board_on_drop(GtkDropTarget *t, const GValue *value, double x, double y, gpointer user);
void studio_board_add_text(MedleyWindow *w, const char *text);
void studio_board_paste(MedleyWindow *w);
/* Adds a file's bytes under name (its modality from the bytes); FALSE when
 * refused (a message says why). */
gboolean studio_board_add_bytes(MedleyWindow *w, const char *name, const char *bytes, size_t size);
void studio_board_shutdown(MedleyWindow *w);
/* Plays audio bytes (WAV, ...) with wave's playhead following; the same
 * wave again (or another sound) stops what plays. TRUE: it plays now. */
gboolean studio_sound_toggle(MedleyWindow *w, GtkWidget *wave, const void *bytes, size_t size);

/* studio_runs.c */
void studio_runs_init(MedleyWindow *w);
void studio_runs_shutdown(MedleyWindow *w);
/* Queues the board as a job; returns its id or -1 (with a message). */
int64_t studio_runs_generate(MedleyWindow *w);
void studio_runs_cancel_current(MedleyWindow *w);
void studio_runs_refresh_history(MedleyWindow *w);
void studio_runs_show(MedleyWindow *w, int run);
/* Restores a job (its JSON) onto the board and the output settings. */
gboolean studio_runs_restore(MedleyWindow *w, const char *job_json, const char *label);
char *studio_settings_json(MedleyWindow *w);
void studio_settings_apply(MedleyWindow *w, const char *json);

/* studio_media.c */
GdkTexture *studio_texture_from_image(const md_image *im);
/* Its pixels as RGB bytes, 3 per pixel (any thread). */
GBytes *studio_rgb8_of(const md_image *im);
/* A thumbnail of media bytes of modality m (image; video: first frame);
 * NULL when it cannot be decoded (reason in md_last_error). */
GdkTexture *studio_texture_from_bytes(md_modality m, const void *bytes, size_t size);
/* The frames of a video's bytes (its first 30 s) as textures; height 0:
 * as stored, else scaled to that height. */
GPtrArray *studio_video_frames(const void *bytes, size_t size, int height);
/* A waveform widget for audio bytes. */
GtkWidget *studio_waveform_new(const void *bytes, size_t size);
/* Where the playhead of a waveform is drawn (< 0: none). */
void studio_waveform_set_playhead(GtkWidget *wave, double fraction);
/* What a file's bytes hold: image, audio, video or text (by their first
 * bytes); -1: none Medley reads. */
int studio_modality_of_bytes(const void *bytes, size_t size);

/* studio_test.c */
int studio_self_test(GtkApplication *app, MedleyWindow *w, const char *dir);

G_END_DECLS
#endif
