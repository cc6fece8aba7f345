/* space_input.h — from media (files, or structs already in memory) to the
 * prepared inputs the space encoders read (space.h):
 *
 *   text   UTF-8, kept as is (tokenized by the space)
 *   image  any decodable image -> RGB, cover-cropped to 64×64 -> RGB and
 *          ink channel [4, 64, 64] (md_judge_prep_rgb)
 *   audio  any decodable audio -> mono 8 kHz, the loudest second -> log-mel
 *   video  the first second at 16 fps, frames cover-cropped to 64×64 ->
 *          frames 0, 3, .., 15 and the ink path (md_judge_prep_frames);
 *          the soundtrack is not used
 *
 * A file's modality is decided by its first bytes (md_media_format_name):
 * image formats, audio containers, video containers; a file none of the
 * media loaders reads is tried as UTF-8 text. Errors name the file.
 */
#ifndef MEDLEY_SPACE_INPUT_H
#define MEDLEY_SPACE_INPUT_H

#include "media.h"
#include "space.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_space_input {
    md_modality modality;
    float *x;          /* md_space_input_size(modality) floats; NULL for text */
    char *text;        /* NUL-terminated UTF-8 for text; NULL otherwise */
} md_space_input;

/* What a file's first bytes (n of them, up to 16) say it is: image, audio
 * or video by its format (*fmt: its name, NULL when none is known), else
 * text (to be checked as UTF-8). fmt may be NULL. */
md_modality md_space_input_kind(const void *head, size_t n, const char **fmt);
md_status md_space_input_from_file(const char *path, md_space_input *in);
md_status md_space_input_from_text(const char *text, md_space_input *in);
/* The same as from_file for a file's bytes in memory; label names them in
 * messages (NULL: "(memory)"). */
md_status md_space_input_from_memory(const void *buf, size_t len, const char *label, md_space_input *in);
void md_space_input_free(md_space_input *in);

/* In-memory media to prepared inputs (x sized by md_space_input_size). */
md_status md_space_prep_image(const md_image *im, float *x);
md_status md_space_prep_audio(const md_audio *a, float *x);
md_status md_space_prep_video(const md_video *v, float *x);

/* Embeds one input into out [MD_SPACE_DIM]. */
md_status md_space_embed_input(const md_space *sp, md_graph *g, const md_space_input *in, float *out);

#ifdef __cplusplus
}
#endif
#endif
