/* audio_gen.h — the audio generator: a spoken clip (1 s at 8 kHz) from the
 * audio decoder (core/audiogen.h): DDIM over log-mels with classifier-free
 * guidance, optionally several candidates of which the aligned space keeps
 * the one closest to the condition, then the vocoder.
 *
 * The caller loads the model and the space (generators never open files)
 * and keeps them alive while the generator lives.
 *
 * Parameters: steps, guidance, eta, candidates, vocoder (0: Griffin-Lim,
 * the default, which measured better; 1: the neural vocoder of
 * core/vocoder.h when one is given),
 * vocoder_iters (Griffin-Lim's); the seed is the run's. Previews are the
 * spectrogram so far, as a picture.
 */
#ifndef MEDLEY_AUDIO_GEN_H
#define MEDLEY_AUDIO_GEN_H

#include "audiogen.h"
#include "generator.h"
#include "vocoder.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NULL with a message when the model is not an audio decoder's shape or
 * memory runs out. voc: the neural vocoder, or NULL (Griffin-Lim only).
 * model_id is copied; ws lends working memory (see generator.h; NULL: the
 * generator keeps its own). */
md_generator *md_gen_audio_new(const md_unet *u, const md_vocoder *voc, const md_space *sp, const char *model_id,
                               md_gen_workspace *ws);

/* The spectrogram x [40, 104] as a picture (101 × 40, time left to right,
 * low frequencies at the bottom); im allocated by the caller. */
void md_gen_audio_mel_picture(const float *x, md_image *im);

#ifdef __cplusplus
}
#endif
#endif
