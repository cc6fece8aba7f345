/* main.c — the `medley` program.
 *
 * Today Medley's main job is the engine demo (`medley demo`, also what a
 * bare `medley` runs); the studio window and generation arrive with later
 * work and take over the bare command.
 */
#include "backend.h"
#include "kernels_cpu.h"
#include "audio_io.h"
#include "cuda_info.h"
#include "image_io.h"
#include "video_io.h"
#include "demo.h"
#include "safetensors.h"
#include "md.h"
#include "commands.h"

#include <errno.h>
#include <oneapi/dnnl/dnnl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef MEDLEY_VERSION
#define MEDLEY_VERSION "0.0.0"
#endif

volatile int medley_cancel;

static void on_sigint(int sig)
{
    (void)sig;
    medley_cancel = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: medley [COMMAND] [OPTIONS]\n"
            "\n"
            "commands:\n"
            "  (none)    the studio where a display exists; else one generation from the\n"
            "            bundled models into ./medley-out ($MEDLEY_OUT), or the engine demo\n"
            "            when they are missing\n"
            "  demo      train a small transformer from scratch on this machine and test it\n"
            "            --steps N (300)  --seed S (1)  --batch B (64)  --length L (8)\n"
            "  corpus build  write the demo-world corpus (train/val/test/compo shards)\n"
            "            --data DIR  --out DIR (corpus)  --seed S (1)  --scale F (1)\n"
            "  train ...     every trainer also takes --bf16: its matrix products on bf16\n"
            "            operands with f32 sums (much faster where the CPU has bf16 units)\n"
            "  train judges  retrain the judges (image, audio, video classifiers)\n"
            "            --data DIR  --kind image|audio|video|all  --steps N  --seed S  --out DIR\n"
            "  train space   train the aligned embedding space from scratch\n"
            "            --data DIR  --seed S  --image-steps N  --audio-steps N  --video-steps N\n"
            "            --batch B  --lr F  --digit-weight F  --out DIR\n"
            "  train vqgan   train the image tokenizer (64x64 <-> 16x16 codes)\n"
            "            --data DIR  --steps N  --batch B  --seed S  --no-perceptual  --out DIR\n"
            "  train tokens  train the token transformer (needs the space and the tokenizer)\n"
            "            --data DIR  --steps N  --batch-images N  --batch-videos N  --images N\n"
            "            --videos N  --d N  --layers N  --heads N  --lr F  --seed S  --eval N  --out DIR\n"
            "            --video-chain 0|1 (later frames after frame 0, or after the frame before)\n"
            "  train audio   train the audio decoder (diffusion over log-mels; needs the space)\n"
            "            --data DIR  --steps N  --batch B  --corpus N  --ch N  --lr F  --seed S  --out DIR\n"
            "  train diffusion  train the diffusion decoder for pictures (needs the space and the\n"
            "            tokenizer)  --space latent|pixels|pixels32 (the tokenizer's latents or the\n"
            "            pixels)  --init FILE (go on from a model of the same space and ch)\n"
            "            --space video32: the video model (16 frames, temporal attention; --corpus\n"
            "            counts videos, --batch videos) from --init PICTURE-MODEL, --noise-share F\n"
            "            (the noise's variance a video's frames share, 0..0.95; 0.9)\n"
            "            --data DIR  --steps N  --batch B  --corpus N  --ch N  --lr F  --seed S  --out DIR\n"
            "  train vocoder  train the neural vocoder (log-mel -> samples) on the train clips, then\n"
            "            compare it with Griffin-Lim on real test clips (--compare N, 0: skip)\n"
            "            --data DIR  --steps N  --batch B  --corpus N  --ch N  --lr F  --seed S  --out DIR\n"
            "  train motion  train the motion model (the paths a video's later frames move frame 0\n"
            "            along; needs the space)  --paths N  --hidden N\n"
            "            --data DIR  --steps N  --batch B  --corpus N  --lr F  --seed S  --out DIR\n"
            "  train probes  train the readers that choose among candidate pictures (per-attribute\n"
            "            heads on the space; needs the space and the tokenizer)  --images N\n"
            "            --videos N  --clips N  --iters N  --lr F  --cos-weight F  --seed S  --out DIR\n"
            "  generate --in MOD:VALUE[@WEIGHT] ... --out image,video,text [--seed S] [-o DIR]\n"
            "            compose the inputs (text:\"a red seven\", image:FILE, audio:FILE,\n"
            "            video:FILE) and write the outputs with their job in their metadata;\n"
            "            --temperature F  --top-k N  --top-p F  --guidance F  --candidates N\n"
            "            --set [OUTPUT.]NAME=VALUE (one output's parameter: image.guidance=5)\n"
            "            --models DIR  --quiet\n"
            "            --from OUTPUT: run the job an output of Medley carries again\n"
            "  embed [--models DIR] TEXT|FILE...  the unit vector of each input\n"
            "  search --query TEXT|FILE[@WEIGHT] [--query ...] [--top N] DIR\n"
            "            rank the media files of DIR by similarity to the (composed) query\n"
            "  eval      the any-to-any matrix of the generators present, and the\n"
            "            real-data reference; --judges: each judge on the test split;\n"
            "            --space: retrieval and zero-shot figures of the aligned space\n"
            "            (--baseline: beside the same encoders trained on the labels);\n"
            "            --vqgan: the image tokenizer's PSNR and code use\n"
            "            --vocoder: the neural vocoder against Griffin-Lim on real test clips\n"
            "            --data DIR  --models DIR  --json FILE  --quick N (reference samples)\n"
            "            --outputs N (per generator cell; default 100, videos 40)\n"
            "            --guidance F  --temperature F  --top-k N  --top-p F  --via-caption 0|1|2\n"
            "            --candidates N  --audio-guidance F  --audio-candidates N  --diffusion-guidance F\n"
            "            --set GENERATOR.NAME=VALUE (one generator's parameter: diffusion-image.steps=50)\n"
            "            --caption-check F (pictures after the typed text: re-choose candidates\n"
            "            within F of the space's choice by the text's likelihood as their caption)\n"
            "            --frame-temperature F (videos' frames 1-15; 0: as --temperature)\n"
            "            --motion 0|1 (videos' frames 1-15 by the token transformer, or frame 0\n"
            "            moved along a path of the motion model)  --motion-temperature F\n"
            "            --audio-vocoder 0|1 (Griffin-Lim or the neural vocoder)\n"
            "            --only OUTPUTS (comma-separated: text,image,image:tokens,image:diffusion,\n"
            "            audio,video,video:tokens,video:diffusion)\n"
            "            --inputs INPUTS (comma-separated: text,image,audio,video)\n"
            "            --video-outputs N (videos per cell)\n"
            "            --val (tuning inputs)\n"
            "  play FILE [--loop] [--quit-after S]  a player window: video with its sound in\n"
            "            sync, audio, or an image (Space pauses, Home restarts, Esc closes)\n"
            "  FILE.medley  the project in the studio\n"
            "  info [FILE...]  with files: what each holds (modality, size, duration,\n"
            "            codec, metadata) or why it cannot be read; without: version,\n"
            "            threads and compute devices; --devices: the devices alone\n"
            "\n"
            "environment:\n"
            "  MEDLEY_THREADS   threads for compute (default: all cores)\n"
            "  MEDLEY_DEVICE    cpu | cuda[:N] (default cpu)\n"
            "  MEDLEY_DATA_DIR  the data folder (mnist/, fsdd/, sign-digits/) when --data is absent\n"
            "  MEDLEY_MODELS_DIR  bundled models (default: the source tree's assets/models)\n"
            "  MEDLEY_STUDIO    the studio program (default: medley-studio beside medley)\n");
}

/* Parses a positive integer option value; prints the reason on failure. */
int medley_parse_int(const char *opt, const char *val, long lo, long hi, long *out)
{
    if (!val) {
        fprintf(stderr, "medley: %s needs a value\n", opt);
        return -1;
    }
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || *end || end == val || v < lo || v > hi) {
        fprintf(stderr, "medley: %s \"%s\": expected an integer from %ld to %ld\n", opt, val, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int medley_parse_double(const char *opt, const char *val, double lo, double hi, double *out)
{
    if (!val) {
        fprintf(stderr, "medley: %s needs a value\n", opt);
        return -1;
    }
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || *end || end == val || !(v >= lo && v <= hi)) {
        fprintf(stderr, "medley: %s \"%s\": expected a number from %g to %g\n", opt, val, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static void demo_progress(int step, int steps, float loss, void *user)
{
    (void)user;
    if (step % 25 == 0 || step == steps - 1)
        printf("  step %4d/%d  loss %.4f\n", step + 1, steps, loss);
    fflush(stdout);
}

static int cmd_demo(int argc, char **argv)
{
    md_demo_opts o;
    md_demo_default_opts(&o);
    for (int i = 0; i < argc; i++) {
        long v;
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--steps") == 0) {
            if (medley_parse_int(a, val, 1, 1000000, &v)) return 2;
            o.steps = (int)v;
        } else if (strcmp(a, "--seed") == 0) {
            if (medley_parse_int(a, val, 0, 2147483647L, &v)) return 2;
            o.seed = (uint64_t)v;
        } else if (strcmp(a, "--batch") == 0) {
            if (medley_parse_int(a, val, 1, 4096, &v)) return 2;
            o.batch = (int)v;
        } else if (strcmp(a, "--length") == 0) {
            if (medley_parse_int(a, val, 1, 64, &v)) return 2;
            o.length = (int)v;
        } else {
            fprintf(stderr, "medley demo: unknown option \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    o.progress = demo_progress;
    o.cancel = &medley_cancel;
    signal(SIGINT, on_sigint);
    printf("Medley engine demo: a %d-layer transformer (d=%d, %d heads) learns to reverse\n"
           "%d-digit strings from scratch, on %d thread%s of this machine's %s.\n",
           o.layers, o.d, o.heads, o.length, md_threads_get(), md_threads_get() == 1 ? "" : "s",
           md_backend_default()->name);
    md_demo_result r;
    md_status st = md_demo_reverse(&o, &r);
    if (st == MD_ABORTED) {
        printf("cancelled after %d steps (loss %.4f)\n", r.steps_run, r.final_loss);
        return 130;
    }
    if (st != MD_OK) {
        fprintf(stderr, "medley demo: %s: %s\n", md_status_str(st), md_last_error());
        return 1;
    }
    printf("\ntrained %lld parameters for %d steps in %.1f s (%.0f ms/step); loss %.3f -> %.3f\n",
           (long long)r.params, r.steps_run, r.train_seconds, 1000.0 * r.train_seconds / r.steps_run,
           r.first_loss, r.final_loss);
    printf("held-out strings reversed exactly: %.1f%% (digits right: %.1f%%), decoded with the KV cache in %.2f s\n",
           100.0 * r.accuracy, 100.0 * r.token_accuracy, r.decode_seconds);
    return 0;
}

static void print_meta(const md_meta *m)
{
    for (int i = 0; i < m->count; i++)
        printf("  %-10s %s\n", m->keys[i], m->values[i]);
}

void medley_quiet_log(md_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)msg;
    (void)user;
}

/* One file: the first loader that reads it says what it is. The error
 * reported when none does is the most specific one (a decoder's, rather
 * than "this is not my format"). */
static int info_file(const char *path)
{
    md_media_limits lim = md_media_limits_default();
    unsigned char head[16];
    size_t nhead = 0;
    FILE *hf = fopen(path, "rb");
    if (hf) {
        nhead = fread(head, 1, sizeof head, hf);
        fclose(hf);
    }
    /* safetensors: 8-byte little-endian header length, then '{' */
    if (nhead >= 9 && head[8] == '{' && head[6] == 0 && head[7] == 0) {
        md_st_file *f;
        if (md_st_open(path, &f) != MD_OK) {
            fprintf(stderr, "medley info: cannot read %s\n", md_last_error());
            return 1;
        }
        int64_t numel = 0;
        for (int i = 0; i < md_st_count(f); i++) {
            const md_st_info *t = md_st_get(f, i);
            numel += (int64_t)(t->nbytes / md_dtype_size(t->dtype));
        }
        printf("%s: safetensors, %d tensors, %lld values\n", path, md_st_count(f), (long long)numel);
        for (int i = 0; i < md_st_meta_count(f); i++) {
            const char *k = md_st_meta_key(f, i), *v = md_st_meta(f, k);
            printf("  %s: %.*s%s\n", k, 160, v, strlen(v) > 160 ? "..." : "");
        }
        md_st_close(f);
        return 0;
    }
    const char *fmt = md_media_format_name(head, nhead);
    char err[3][1024] = {"", "", ""};
    md_log_set_callback(medley_quiet_log, NULL);
    md_meta meta = {0};
    md_image im;
    md_clear_error();
    if (md_image_load(path, &lim, &im, &meta) == MD_OK) {
        md_log_set_callback(NULL, NULL);
        printf("%s: image, %s, %d x %d, %d channel%s\n", path, fmt ? fmt : "?", im.width, im.height,
               im.channels, im.channels == 1 ? "" : "s");
        print_meta(&meta);
        md_image_free(&im);
        md_meta_free(&meta);
        return 0;
    }
    snprintf(err[0], sizeof err[0], "%s", md_last_error());
    md_audio a;
    md_clear_error();
    if (md_audio_load(path, &lim, &a, &meta) == MD_OK) {
        md_log_set_callback(NULL, NULL);
        printf("%s: audio, %s, %d Hz, %d channel%s, %lld frames, %.3f s\n", path, fmt ? fmt : "?", a.rate,
               a.channels, a.channels == 1 ? "" : "s", (long long)a.frames, (double)a.frames / a.rate);
        print_meta(&meta);
        md_audio_free(&a);
        md_meta_free(&meta);
        return 0;
    }
    snprintf(err[1], sizeof err[1], "%s", md_last_error());
    md_video v;
    md_video_load_opts o = md_video_load_opts_default();
    md_clear_error();
    if (md_video_load(path, &lim, &o, &v, &meta) == MD_OK) {
        md_log_set_callback(NULL, NULL);
        printf("%s: video, %s, %d x %d, %lld frames at %.3f fps, %.3f s, %s", path, fmt ? fmt : "?", v.width,
               v.height, (long long)v.frames, v.fps, (double)v.frames / v.fps, v.video_codec);
        if (v.audio.samples)
            printf(", audio %s (decoded at %d Hz)", v.audio_codec, v.audio.rate);
        printf("\n");
        print_meta(&meta);
        md_video_free(&v);
        md_meta_free(&meta);
        return 0;
    }
    snprintf(err[2], sizeof err[2], "%s", md_last_error());
    md_log_set_callback(NULL, NULL);
    md_text text;
    md_log_set_callback(medley_quiet_log, NULL);
    if (md_text_load(path, &lim, &text) == MD_OK) {
        md_log_set_callback(NULL, NULL);
        long cps = 0, lines = 0;
        for (size_t i = 0; i < text.len; i++) {
            cps += ((unsigned char)text.utf8[i] & 0xC0) != 0x80;   /* lead bytes */
            lines += text.utf8[i] == '\n';
        }
        printf("%s: text, %ld characters, %ld line%s (UTF-8)\n", path, cps, lines, lines == 1 ? "" : "s");
        md_text_free(&text);
        return 0;
    }
    md_log_set_callback(NULL, NULL);
    const char *why = err[0];
    for (int i = 2; i >= 0; i--)
        if (err[i][0] && !strstr(err[i], "not an image") && !strstr(err[i], "not an audio file") &&
            !strstr(err[i], "not a video or audio file") && !strstr(err[i], "no video stream"))
            why = err[i];
    fprintf(stderr, "medley info: cannot read %s\n", why[0] ? why : path);
    return 1;
}

/* The compute devices: the CPU, and each CUDA device with whether it is
 * the one MEDLEY_DEVICE chose. */
static void print_devices(void)
{
    const dnnl_version_t *v = dnnl_version();
    printf("devices:\n  cpu    oneDNN %d.%d.%d (%s)\n", v->major, v->minor, v->patch,
           md_backend_default() == md_backend_cpu() ? "in use" : "available");
    const char *impl = NULL;
    const bool bf16 = md_cpu_bf16_available(&impl);
    printf("         bf16 products for training (--bf16): %s (oneDNN %s)\n", bf16 ? "yes" : "no", impl);
    const char *why = NULL;
    int n = md_cuda_device_count(&why);
    if (n == 0)
        printf("  cuda   none: %s\n", why);
    for (int i = 0; i < n; i++) {
        md_cuda_device d;
        char name[16];
        snprintf(name, sizeof name, "cuda:%d", i);
        if (md_cuda_device_info(i, &d) == MD_OK)
            printf("  %s %s, compute %d.%d, %.1f GiB, %d SMs (%s)\n", name, d.name, d.major, d.minor,
                   (double)d.memory_bytes / (1 << 30), d.multiprocessors,
                   strcmp(md_backend_default()->name, name) == 0 ? "in use: token sampling, large products"
                                                                 : "MEDLEY_DEVICE=cuda:N selects it");
    }
}

static int cmd_info(int argc, char **argv)
{
    if (argc == 1 && strcmp(argv[0], "--devices") == 0) {
        print_devices();
        return 0;
    }
    if (argc > 0) {
        int bad = 0;
        for (int i = 0; i < argc; i++)
            bad |= info_file(argv[i]);
        return bad;
    }
    printf("medley %s\n", MEDLEY_VERSION);
    printf("threads: %d (MEDLEY_THREADS overrides)\n", md_threads_get());
    print_devices();
    return 0;
}

/* The studio program: $MEDLEY_STUDIO, else medley-studio beside this
 * program (installed), else in the build tree's ui folder. NULL: none. */
static char *studio_path(void)
{
    const char *e = getenv("MEDLEY_STUDIO");
    if (e && *e)
        return access(e, X_OK) == 0 ? strdup(e) : NULL;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return NULL;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    static const char *const where[] = {"%s/medley-studio", "%s/../ui/medley-studio"};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, where[i], self);
        if (access(path, X_OK) == 0)
            return strdup(path);
    }
    return NULL;
}

static bool have_display(void)
{
    const char *x = getenv("DISPLAY"), *wl = getenv("WAYLAND_DISPLAY");
    return (x && *x) || (wl && *wl);
}

/* Replaces this process with the studio (opening file when given);
 * returns only when it cannot start. */
static void exec_studio(const char *studio, const char *file)
{
    char *args[] = {(char *)studio, (char *)file, NULL};
    fflush(stdout);
    execv(studio, args);
    fprintf(stderr, "medley: cannot start the studio %s: %s\n", studio, strerror(errno));
}

/* A bare `medley`: the studio where a display exists; else one real
 * generation from the bundled models (text in; image, video and caption
 * out, into ./medley-out or $MEDLEY_OUT); the engine demo when the
 * generators' models are missing. */
static int cmd_default(void)
{
    char *studio = have_display() ? studio_path() : NULL;
    if (studio) {
        exec_studio(studio, NULL);
        free(studio);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/tokens.safetensors", medley_models_dir(NULL));
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("(no token transformer at %s: running the engine demo instead)\n", path);
        return cmd_demo(0, NULL);
    }
    fclose(f);
    /* with the audio decoder bundled, the video speaks its digit */
    snprintf(path, sizeof path, "%s/audiogen.safetensors", medley_models_dir(NULL));
    bool audio = access(path, R_OK) == 0;
    const char *out = getenv("MEDLEY_OUT");
    char *args[] = {"--in", "text:a red seven moving left on black", "--out",
                    audio ? "image,video+audio,text" : "image,video,text", "--seed", "7",
                    "-o", (char *)(out && *out ? out : "medley-out")};
    printf("Medley: no display here (or no studio in this build), so one generation from the command line:\n"
           "  medley generate --in text:\"%s\" --out %s --seed 7 -o %s\n",
           args[1] + 5, args[3], args[7]);
    fflush(stdout);
    signal(SIGINT, on_sigint);
    return medley_cmd_generate(8, args);
}

/* `medley FILE.medley`: the project in the studio. */
static int cmd_open_project(const char *file)
{
    if (access(file, R_OK) != 0) {
        fprintf(stderr, "medley: %s: cannot open: %s\n", file, strerror(errno));
        return 1;
    }
    char *studio = studio_path();
    if (!studio) {
        fprintf(stderr, "medley: %s: projects open in the studio, which this build lacks (it needs GTK4 and "
                        "libadwaita)\n", file);
        return 1;
    }
    if (!have_display()) {
        fprintf(stderr, "medley: %s: the studio needs a display (DISPLAY or WAYLAND_DISPLAY)\n", file);
        free(studio);
        return 1;
    }
    exec_studio(studio, file);
    free(studio);
    return 1;
}

/* --bf16, taken by every trainer: products on bf16 operands (tensor.h) */
static int train_take_bf16(int *argc, char **argv)
{
    int w = 0;
    bool on = false;
    for (int i = 0; i < *argc; i++) {
        if (i >= 3 && strcmp(argv[i], "--bf16") == 0)
            on = true;
        else
            argv[w++] = argv[i];
    }
    *argc = w;
    if (!on)
        return 0;
    const char *impl = NULL;
    if (!md_cpu_bf16_available(&impl)) {
        fprintf(stderr, "medley train: --bf16: this CPU has no fast bf16 product (oneDNN offers %s); "
                        "leave --bf16 out to train with f32 products\n", impl);
        return -1;
    }
    md_set_bf16_default(true);
    printf("products on bf16 operands, f32 sums (oneDNN %s)\n", impl);
    return 0;
}

int main(int argc, char **argv)
{
    md_threads_init();
    if (argc < 2)
        return cmd_default();
    const char *cmd = argv[1];
    size_t cl = strlen(cmd);
    if (cl > 7 && strcmp(cmd + cl - 7, ".medley") == 0)
        return cmd_open_project(cmd);
    if (strcmp(cmd, "play") == 0)
        return medley_cmd_play(argc - 2, argv + 2);
    if (strcmp(cmd, "demo") == 0)
        return cmd_demo(argc - 2, argv + 2);
    if (strcmp(cmd, "info") == 0)
        return cmd_info(argc - 2, argv + 2);
    if (strcmp(cmd, "corpus") == 0 || strcmp(cmd, "train") == 0 || strcmp(cmd, "eval") == 0 ||
        strcmp(cmd, "generate") == 0)
        signal(SIGINT, on_sigint);
    if (strcmp(cmd, "generate") == 0)
        return medley_cmd_generate(argc - 2, argv + 2);
    if (strcmp(cmd, "corpus") == 0)
        return medley_cmd_corpus(argc - 2, argv + 2);
    if (strcmp(cmd, "train") == 0) {
        if (train_take_bf16(&argc, argv) != 0)
            return 2;
        if (argc >= 3 && strcmp(argv[2], "judges") == 0)
            return medley_cmd_train_judges(argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[2], "space") == 0)
            return medley_cmd_train_space(argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[2], "vqgan") == 0)
            return medley_cmd_train_vqgan(argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[2], "tokens") == 0)
            return medley_cmd_train_tokens(argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[2], "audio") == 0)
            return medley_cmd_train_audio(argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[2], "diffusion") == 0)
            return medley_cmd_train_diffusion(argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[2], "vocoder") == 0)
            return medley_cmd_train_vocoder(argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[2], "motion") == 0)
            return medley_cmd_train_motion(argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[2], "probes") == 0)
            return medley_cmd_train_probes(argc - 3, argv + 3);
        fprintf(stderr, "medley train: expected what to train: judges, space, vqgan, tokens, audio, diffusion, "
                        "vocoder, motion or probes\n");
        return 2;
    }
    if (strcmp(cmd, "eval") == 0)
        return medley_cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "embed") == 0)
        return medley_cmd_embed(argc - 2, argv + 2);
    if (strcmp(cmd, "search") == 0)
        return medley_cmd_search(argc - 2, argv + 2);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("medley %s\n", MEDLEY_VERSION);
        return 0;
    }
    fprintf(stderr, "medley: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
