/* dsp_dump.c — writes Medley's STFT, iSTFT and mel filterbank outputs for
 * tests/parity/test_dsp_torch.py to compare with torch / a numpy reference.
 *
 * Usage: dsp_dump OUT.bin
 * Format (little endian): "MDSP", u32 version 1, then records until EOF:
 *   u32 len, len bytes of JSON (the case: op and parameters),
 *   then the op's arrays, each u64 count followed by count f32:
 *     stft:  x[n], re[frames*bins], im[frames*bins]
 *     istft: re[frames*bins], im[frames*bins], y[length]
 *     mel:   fb[n_mels*bins]
 * Arrays are row-major [frames, bins] / [n_mels, bins].
 */
#include "dsp.h"
#include "rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool put_u32(FILE *f, uint32_t v) { return fwrite(&v, 4, 1, f) == 1; }

static bool put_arr(FILE *f, const float *a, uint64_t n)
{
    return fwrite(&n, 8, 1, f) == 1 && fwrite(a, sizeof(float), (size_t)n, f) == (size_t)n;
}

static bool put_json(FILE *f, const char *json)
{
    return put_u32(f, (uint32_t)strlen(json)) && fwrite(json, 1, strlen(json), f) == strlen(json);
}

static bool case_stft(FILE *f, int n_fft, int hop, int win, int64_t n, uint64_t seed)
{
    md_stft *st = md_stft_new(n_fft, hop, win, true);
    if (!st)
        return false;
    int64_t T = md_stft_frames(st, n);
    int64_t N = T * md_stft_bins(st);
    float *x = malloc(sizeof(float) * (size_t)n);
    float *re = malloc(sizeof(float) * (size_t)N), *im = malloc(sizeof(float) * (size_t)N);
    bool ok = x && re && im;
    if (ok) {
        md_fill_uniform(x, n, seed, 0, -1.0f, 1.0f);
        ok = md_stft_forward(st, x, n, re, im) == MD_OK;
    }
    char js[256];
    snprintf(js, sizeof js, "{\"op\":\"stft\",\"n_fft\":%d,\"hop\":%d,\"win\":%d,\"n\":%lld,\"frames\":%lld}",
             n_fft, hop, win, (long long)n, (long long)T);
    ok = ok && put_json(f, js) && put_arr(f, x, (uint64_t)n) && put_arr(f, re, (uint64_t)N) &&
         put_arr(f, im, (uint64_t)N);
    free(x); free(re); free(im);
    md_stft_free(st);
    return ok;
}

/* Random (inconsistent) spectra, so the overlap-add and envelope division
 * are tested on their own, not just as the inverse of md_stft_forward. */
static bool case_istft(FILE *f, int n_fft, int hop, int win, int64_t frames, int64_t length, uint64_t seed)
{
    md_stft *st = md_stft_new(n_fft, hop, win, true);
    if (!st)
        return false;
    int bins = md_stft_bins(st);
    int64_t N = frames * bins;
    float *re = malloc(sizeof(float) * (size_t)N), *im = malloc(sizeof(float) * (size_t)N);
    float *y = malloc(sizeof(float) * (size_t)length);
    bool ok = re && im && y;
    if (ok) {
        md_fill_normal(re, N, seed, 0, 0.0f, 1.0f);
        md_fill_normal(im, N, seed + 1, 0, 0.0f, 1.0f);
        /* The DC and (even n_fft) Nyquist bins of a real signal are real;
         * the two sides may treat their imaginary parts differently. */
        for (int64_t t = 0; t < frames; t++) {
            im[t * bins] = 0.0f;
            if (n_fft % 2 == 0)
                im[t * bins + bins - 1] = 0.0f;
        }
        ok = md_stft_inverse(st, re, im, frames, y, length) == MD_OK;
    }
    char js[256];
    snprintf(js, sizeof js, "{\"op\":\"istft\",\"n_fft\":%d,\"hop\":%d,\"win\":%d,\"frames\":%lld,\"length\":%lld}",
             n_fft, hop, win, (long long)frames, (long long)length);
    ok = ok && put_json(f, js) && put_arr(f, re, (uint64_t)N) && put_arr(f, im, (uint64_t)N) &&
         put_arr(f, y, (uint64_t)length);
    free(re); free(im); free(y);
    md_stft_free(st);
    return ok;
}

static bool case_mel(FILE *f, int rate, int n_fft, int n_mels, float f_min, float f_max, int scale, int norm)
{
    md_mel_params p = md_mel_params_default();
    p.sample_rate = rate;
    p.n_fft = p.win_length = n_fft;
    p.n_mels = n_mels;
    p.f_min = f_min;
    p.f_max = f_max;
    p.mel_scale = scale;
    p.norm = norm;
    int64_t N = (int64_t)n_mels * (n_fft / 2 + 1);
    float *fb = malloc(sizeof(float) * (size_t)N);
    char js[512], pj[400];
    bool ok = fb && md_mel_filterbank(&p, fb) == MD_OK && md_mel_params_to_json(&p, pj, sizeof pj) == MD_OK;
    if (ok)
        snprintf(js, sizeof js, "{\"op\":\"mel\",\"params\":%s}", pj);
    ok = ok && put_json(f, js) && put_arr(f, fb, (uint64_t)N);
    free(fb);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT.bin\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "wb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    bool ok = fwrite("MDSP", 1, 4, f) == 4 && put_u32(f, 1);
    ok = ok && case_stft(f, 1024, 256, 1024, 16000, 1);
    ok = ok && case_stft(f, 400, 160, 400, 5001, 2);     /* not a power of two */
    ok = ok && case_stft(f, 512, 128, 400, 3000, 3);     /* window shorter than n_fft */
    ok = ok && case_stft(f, 511, 100, 511, 2000, 4);     /* odd n_fft */
    ok = ok && case_istft(f, 1024, 256, 1024, 40, 39 * 256, 5);
    ok = ok && case_istft(f, 400, 160, 400, 30, 29 * 160 - 7, 6);
    ok = ok && case_istft(f, 512, 100, 400, 25, 24 * 100, 7);
    ok = ok && case_istft(f, 512, 128, 512, 25, 24 * 128 + 500, 9);   /* longer: zero tail */
    ok = ok && case_istft(f, 511, 100, 511, 20, 19 * 100, 8);
    ok = ok && case_mel(f, 16000, 1024, 80, 0.0f, 8000.0f, MD_MEL_SCALE_SLANEY, MD_MEL_NORM_SLANEY);
    ok = ok && case_mel(f, 16000, 1024, 80, 0.0f, 8000.0f, MD_MEL_SCALE_HTK, MD_MEL_NORM_NONE);
    ok = ok && case_mel(f, 22050, 1024, 128, 20.0f, 11025.0f, MD_MEL_SCALE_HTK, MD_MEL_NORM_SLANEY);
    ok = ok && case_mel(f, 24000, 2048, 100, 50.0f, 11000.0f, MD_MEL_SCALE_SLANEY, MD_MEL_NORM_NONE);
    ok = ok && case_mel(f, 44100, 2048, 128, 0.0f, 22050.0f, MD_MEL_SCALE_SLANEY, MD_MEL_NORM_SLANEY);
    if (fclose(f) != 0)
        ok = false;
    if (!ok)
        fprintf(stderr, "dsp_dump: a case failed: %s\n", md_last_error());
    return ok ? 0 : 1;
}
