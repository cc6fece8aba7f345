/* bundle.h — the models `medley generate` and `medley eval` run, loaded
 * from the models folder (medley_models_dir), with an identifier of each
 * file for outputs' metadata ("space:1a2b3c4d vqgan:... tokens:...": the
 * first 8 hex digits of a 64-bit FNV-1a hash of the file). */
#ifndef MEDLEY_BUNDLE_H
#define MEDLEY_BUNDLE_H

#include "commands.h"
#include "metrics.h"
#include "audiogen.h"
#include "imagegen.h"
#include "motion.h"
#include "probe.h"
#include "tokens.h"
#include "vocoder.h"

typedef struct medley_bundle {
    md_space sp;
    md_vqgan vq;
    md_tokmodel tm;
    md_unet ag;                      /* the audio decoder, when its file is there */
    md_unet ig;                      /* the latent diffusion decoder, when its file is there */
    md_unet vg;                      /* the video diffusion model, when its file is there */
    md_vocoder voc;                  /* the neural vocoder, when its file is there */
    md_motion mo;                    /* the motion model, when its file is there */
    md_probe pr;                     /* the candidate readers, when their file is there (attached to sp) */
    bool have_sp, have_vq, have_tm, have_ag, have_ig, have_vg, have_voc, have_mo, have_pr;
    char model_id[160];
} medley_bundle;

/* Loads the space, and with tokens the image tokenizer, the token
 * transformer and, when their files exist (have_ag, have_ig, have_voc,
 * have_mo, have_pr, have_vg say), the audio decoder, the neural vocoder, the latent
 * diffusion decoder, the video diffusion model, the motion model and the candidate readers (which
 * must have been fitted on this space; they are attached to it). Prints what is missing or damaged and how to make it;
 * returns 1 then. */
int medley_bundle_load(medley_bundle *b, const char *models, bool tokens);
void medley_bundle_free(medley_bundle *b);

/* 16 hex digits of the FNV-1a hash of a file's bytes; -1 if unreadable. */
int medley_file_hash(const char *path, char out[17]);

/* The generators' cells of the any-to-any matrix (cmd_tokens.c): every
 * input modality -> image, video, caption and (with the audio decoder)
 * audio, on held-out samples of
 * split; Fréchet distances against 1000 real test samples' judge features,
 * beside the floor of as many real validation samples. */
typedef struct medley_tok_eval_opts {
    int64_t n_image, n_video, n_text;    /* outputs per cell */
    float temperature;
    int top_k;
    float top_p, guidance;               /* top_p 0: the generators' default */
    md_world_split split;
    bool verbose;                        /* a line per cell on stderr */
    int only;                            /* a mask of output modalities (1 << MD_MOD_*), or -1: all */
    int via_caption;                     /* the generators' via_caption (-1: their default) */
    int candidates;                      /* pictures (clips) drawn per output (0: the generator's default) */
    int64_t n_audio;                     /* audio outputs per cell (when the audio decoder is there) */
    float audio_guidance;                /* 0: the audio generator's default */
    float diffusion_guidance;            /* 0: the image diffusion generator's default */
    int audio_vocoder;                   /* -1: the audio generator's default; 0 Griffin-Lim; 1 neural */
    float frame_temperature;             /* videos' frames 1..15; < 0: the generator's default */
    int motion;                          /* videos' "motion" parameter; -2: the generator's default */
    float motion_temperature;            /* < 0: the generator's default */
    float caption_check;                 /* < 0: the generator's default */
    int inputs;                          /* a mask of input modalities (1 << MD_MOD_*), or 0: all four */
    int audio_candidates;                /* clips drawn per audio output (0: the audio generator's default) */
    const char *const *set;              /* n_set "GENERATOR.NAME=VALUE": a generator's parameter */
    int n_set;
} medley_tok_eval_opts;
int medley_eval_tokens(const md_world *w, const md_judge j[3], const medley_bundle *b,
                       const medley_tok_eval_opts *eo, md_eval_matrix *m);

#endif
