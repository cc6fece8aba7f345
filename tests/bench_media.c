/* bench_media.c — the media layer's benchmark, one run on one machine, each
 * figure as a multiple of real time (seconds of media per second of work):
 *   - decoding a 10 s 640×360 H.264 + AAC clip to RGB frames at 8 fps with
 *     its soundtrack at 16 kHz mono, against the ffmpeg CLI doing the same
 *     decode (video to rgb24 at 8 fps, audio to 16 kHz mono f32) in the same
 *     run;
 *   - a log-mel spectrogram (Medley's defaults: 16 kHz, n_fft 1024, hop 256,
 *     80 mels) of 60 s of audio;
 *   - Griffin-Lim (fast, momentum 0.99) of 1 s of audio, 32 and 100
 *     iterations.
 * The clip is made by the ffmpeg CLI (testsrc2 + a sine); without the CLI
 * the decode rows are skipped. Usage: bench_media [DIR] (scratch folder,
 * default $MEDLEY_TEST_TMP or /tmp). Median of 5 runs after one warm-up. */
#include "audio_io.h"
#include "dsp.h"
#include "video_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

#define RUNS 5

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : (getenv("MEDLEY_TEST_TMP") ? getenv("MEDLEY_TEST_TMP") : "/tmp");
    char clip[1024], cmd[4096];
    snprintf(clip, sizeof clip, "%s/bench_clip.mp4", dir);
    md_threads_init();
    printf("Medley media benchmark: %d threads; multiples of real time (higher is faster), median of %d runs\n\n",
           md_threads_get(), RUNS);

    bool have_cli = system("command -v ffmpeg >/dev/null 2>&1") == 0;
    if (have_cli) {
        snprintf(cmd, sizeof cmd,
                 "ffmpeg -v error -y -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi "
                 "-i sine=frequency=440:sample_rate=48000 -t 10 -c:v libx264 -pix_fmt yuv420p -c:a aac "
                 "-shortest '%s'", clip);
        have_cli = system(cmd) == 0;
    }
    if (have_cli) {
        double tm[RUNS + 1], tf[RUNS + 1];
        md_video_load_opts o = md_video_load_opts_default();
        o.fps = 8;
        o.audio_rate = 16000;
        o.audio_channels = 1;
        int64_t frames = 0;
        for (int r = 0; r <= RUNS; r++) {
            md_video v;
            double t0 = md_time_now();
            if (md_video_load(clip, NULL, &o, &v, NULL) != MD_OK) {
                fprintf(stderr, "bench_media: %s\n", md_last_error());
                return 1;
            }
            tm[r] = md_time_now() - t0;
            frames = v.frames;
            md_video_free(&v);
            snprintf(cmd, sizeof cmd,
                     "ffmpeg -v error -threads %d -i '%s' -map 0:v -vf fps=8 -f rawvideo -pix_fmt rgb24 -y /dev/null "
                     "-map 0:a -ar 16000 -ac 1 -f f32le -y /dev/null",
                     md_threads_get(), clip);
            t0 = md_time_now();
            if (system(cmd) != 0) {
                fprintf(stderr, "bench_media: the ffmpeg CLI decode failed\n");
                return 1;
            }
            tf[r] = md_time_now() - t0;
        }
        double m = median(tm + 1, RUNS), f = median(tf + 1, RUNS);
        printf("decode 10 s 640x360 H.264+AAC -> %lld RGB frames at 8 fps + 16 kHz mono:\n", (long long)frames);
        printf("  Medley %.1fx real time (%.0f ms), ffmpeg CLI %.1fx (%.0f ms, process start included): %.2fx the CLI\n",
               10.0 / m, 1e3 * m, 10.0 / f, 1e3 * f, f / m);
        remove(clip);
    } else {
        printf("decode: skipped (no ffmpeg CLI to make the clip and to compare with)\n");
    }

    /* log-mel of 60 s */
    md_mel_params p = md_mel_params_default();
    md_audio a;
    md_audio_alloc(&a, p.sample_rate, 1, (int64_t)60 * p.sample_rate);
    for (int64_t i = 0; i < a.frames; i++)
        a.samples[i] = 0.3f * sinf(2.f * 3.14159265f * (220.f + 0.01f * (float)(i % 16000)) * (float)i /
                                   (float)p.sample_rate);
    double tl[RUNS + 1];
    for (int r = 0; r <= RUNS; r++) {
        float *mel = NULL;
        int64_t nf = 0;
        double t0 = md_time_now();
        if (md_log_mel(&p, &a, &mel, &nf) != MD_OK) {
            fprintf(stderr, "bench_media: %s\n", md_last_error());
            return 1;
        }
        tl[r] = md_time_now() - t0;
        free(mel);
    }
    double l = median(tl + 1, RUNS);
    printf("log-mel of 60 s (80 mels, hop 256): %.0fx real time (%.1f ms)\n", 60.0 / l, 1e3 * l);

    /* Griffin-Lim of 1 s */
    md_stft *st = md_stft_new(p.n_fft, p.hop, p.win_length, true);
    int64_t n = p.sample_rate, nf = md_stft_frames(st, n);
    float *mag = malloc(sizeof(float) * (size_t)(nf * md_stft_bins(st))), *y = malloc(sizeof(float) * (size_t)n);
    md_stft_magnitude(st, a.samples, n, mag);
    const int iters[2] = {32, 100};
    for (int k = 0; k < 2; k++) {
        double tg[RUNS + 1];
        for (int r = 0; r <= RUNS; r++) {
            double t0 = md_time_now();
            md_griffin_lim(st, mag, nf, iters[k], 0.99f, 1, y, n, NULL);
            tg[r] = md_time_now() - t0;
        }
        double g = median(tg + 1, RUNS);
        printf("Griffin-Lim of 1 s, %d iterations: %.1fx real time (%.1f ms)\n", iters[k], 1.0 / g, 1e3 * g);
    }
    free(mag);
    free(y);
    md_stft_free(st);
    md_audio_free(&a);
    return 0;
}
