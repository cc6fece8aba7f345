/* commands.h — the `medley` subcommands beyond main.c, and what they share. */
#ifndef MEDLEY_COMMANDS_H
#define MEDLEY_COMMANDS_H

#include "md.h"
#include "judge.h"
#include "vocoder.h"

extern volatile int medley_cancel;   /* set by SIGINT */

/* Parses an integer option value in [lo, hi]; prints the reason on failure
 * and returns -1. */
int medley_parse_int(const char *opt, const char *val, long lo, long hi, long *out);
/* The same for a real number in [lo, hi] (NaN and infinities refused). */
int medley_parse_double(const char *opt, const char *val, double lo, double hi, double *out);
/* The folder of bundled models: opt, else $MEDLEY_MODELS_DIR, else the
 * source tree's assets/models as configured at build time. */
const char *medley_models_dir(const char *opt);
/* As medley_models_dir, for a command that writes models there: creates the
 * folder (and its parents) if missing. NULL, with the reason printed under
 * cmd's name, when it cannot. Called before training starts, so a bad
 * folder fails at once, not after the run. */
const char *medley_output_dir(const char *opt, const char *cmd);

/* The three judges from the models folder; prints why not and returns 1. */
int medley_load_judges(const char *models, md_judge j[3]);
/* A log callback that drops messages (for probing files that may fail). */
void medley_quiet_log(md_log_level level, const char *msg, void *user);

int medley_cmd_corpus(int argc, char **argv);
int medley_cmd_play(int argc, char **argv);
int medley_cmd_train_judges(int argc, char **argv);
int medley_cmd_eval(int argc, char **argv);
int medley_cmd_train_space(int argc, char **argv);
int medley_cmd_embed(int argc, char **argv);
int medley_cmd_search(int argc, char **argv);
int medley_cmd_train_vqgan(int argc, char **argv);
int medley_cmd_train_tokens(int argc, char **argv);
int medley_cmd_train_audio(int argc, char **argv);
int medley_cmd_train_diffusion(int argc, char **argv);
int medley_cmd_train_vocoder(int argc, char **argv);
int medley_cmd_train_motion(int argc, char **argv);
int medley_cmd_train_probes(int argc, char **argv);
int medley_cmd_generate(int argc, char **argv);
/* A trainer's progress on stdout: every `every` steps the step and a
 * running mean of the loss, seconds since t0; other stages when done
 * (cmd_diffusion.c). user: a medley_train_ctx. */
typedef struct medley_train_ctx {
    double t0;
    float ema;
    int64_t every;
} medley_train_ctx;
void medley_train_progress(const char *stage, int64_t step, int64_t steps, float loss, void *user);
/* The comparison of md_vocoder_compare as a table on stdout (cmd_vocoder.c). */
void medley_vocoder_print(const md_vocoder_figures *f);
/* `medley eval --vocoder`: the bundled neural vocoder against Griffin-Lim
 * on n real test clips. */
int medley_eval_vocoder(const md_world *w, const char *models, long n);
/* `medley eval --vqgan` on the test split (cmd_vqgan.c). */
int medley_eval_vqgan(const md_world *w, const char *models, long quick);
/* `medley eval --space` on the test split (cmd_space.c). */
int medley_eval_space(const md_world *w, const char *models, long quick, bool baseline);
/* The any-to-any matrix (eval_matrix.c); json may be NULL. */
/* Sampling settings of the generator cells (0: the generators' defaults)
 * and whether they read validation inputs instead of test ones (tuning). */
typedef struct medley_gen_eval {
    double guidance, temperature, top_p;
    long top_k;
    bool val;
    int only;          /* a mask of output modalities (1 << MD_MOD_*; 1 << 4 / 5: pictures / videos by diffusion
                        * alone, 1 << 6 / 7: by tokens alone), or -1: all */
    int via_caption;   /* -1: the generators' default */
    long candidates;   /* pictures drawn per output, the space keeping one (0: the generators' default) */
    double audio_guidance;   /* the audio generator's guidance (0: its default) */
    int audio_vocoder;       /* the audio generator's vocoder (-1: its default) */
    double diffusion_guidance;   /* the image diffusion generator's guidance (0: its default) */
    long video_outputs;          /* videos per cell (0: as --outputs, default 40) */
    double frame_temperature;    /* videos' frames 1..15 (< 0: the generator's default) */
    int motion;                  /* videos' frames 1..15 by the motion model (1) or the tokens (0); -2: default */
    double motion_temperature;   /* the motion model's (< 0: the generator's default) */
    double caption_check;        /* pictures' caption re-check margin (< 0: the generator's default) */
    int inputs;                  /* a mask of input modalities (1 << MD_MOD_*), or 0: all four */
    long audio_candidates;       /* clips drawn per audio output (0: the audio generator's default) */
    const char *set[8];          /* n_set "GENERATOR.NAME=VALUE" (diffusion-image.steps=50): set last */
    int n_set;
} medley_gen_eval;
/* outputs: per generator cell (0: 100 images, 40 videos, 100 captions). */
int medley_eval_matrix(const md_world *w, const md_judge j[3], const char *json, long quick, const char *models,
                       long outputs, const medley_gen_eval *ge);

#endif
