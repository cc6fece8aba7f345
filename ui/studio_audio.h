/* studio_audio.h — the studio's sound (PortAudio): record the microphone,
 * play audio bytes. Every call returns NULL (with why) when there is no
 * device or it cannot start; nothing here touches widgets. */
#ifndef MEDLEY_STUDIO_AUDIO_H
#define MEDLEY_STUDIO_AUDIO_H

#include <glib.h>

typedef struct studio_rec studio_rec;
typedef struct studio_player studio_player;

/* Recording: 16 kHz mono, at most 15 s. */
studio_rec *studio_rec_start(char *why, size_t cap);
float studio_rec_level(const studio_rec *r);       /* RMS of the latest block, 0..1 */
double studio_rec_seconds(const studio_rec *r);
gboolean studio_rec_full(const studio_rec *r);
/* Stops, frees r, and returns the recording as WAV bytes (NULL: why). */
GBytes *studio_rec_stop(studio_rec *r, const char *tmp_dir, char *why, size_t cap);

/* Playing any audio file's bytes Medley reads. */
studio_player *studio_play(const void *bytes, size_t size, char *why, size_t cap);
double studio_play_fraction(const studio_player *p);   /* 0..1 played */
gboolean studio_play_done(const studio_player *p);
void studio_play_stop(studio_player *p);            /* NULL is fine */

void studio_audio_shutdown(void);

#endif
