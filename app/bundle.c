/* bundle.c — the bundled models a generation needs, loaded together, with
 * the identifiers outputs' metadata records. */
#include "bundle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef MEDLEY_ASSETS_DIR
#define MEDLEY_ASSETS_DIR "assets/models"
#endif

const char *medley_models_dir(const char *opt)
{
    if (opt && *opt)
        return opt;
    const char *e = getenv("MEDLEY_MODELS_DIR");
    if (e && *e)
        return e;
    return MEDLEY_ASSETS_DIR;
}

int medley_file_hash(const char *path, char out[17])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    uint64_t h = MD_FNV1A_INIT;
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        h = md_fnv1a(h, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return -1;
    snprintf(out, 17, "%016llx", (unsigned long long)h);
    return 0;
}

static int load_one(const char *dir, const char *file, const char *what, const char *train, char *id, size_t idcap,
                    md_status (*load)(void *, const char *), void *model)
{
    char path[4096], h[17] = "";
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (load(model, path) != MD_OK) {
        fprintf(stderr, "medley: %s\n(the %s: train it with '%s', or point --models / MEDLEY_MODELS_DIR at the "
                        "folder holding %s)\n",
                md_last_error(), what, train, file);
        return 1;
    }
    medley_file_hash(path, h);
    size_t n = strlen(id);
    snprintf(id + n, idcap - n, "%s%.*s:%.8s", n ? " " : "", (int)(strchr(file, '.') - file), file, h);
    return 0;
}

static md_status ld_space(void *m, const char *p) { return md_space_load(m, p); }
static md_status ld_vqgan(void *m, const char *p) { return md_vqgan_load(m, p); }
static md_status ld_tokens(void *m, const char *p) { return md_tok_load(m, p); }
static md_status ld_audio(void *m, const char *p)
{
    return md_unet_load(m, p, MD_AUDIOGEN_MODEL, "audio decoder", "medley train audio");
}
static md_status ld_vocoder(void *m, const char *p) { return md_vocoder_load(m, p); }
static md_status ld_motion(void *m, const char *p) { return md_motion_load(m, p); }
static md_status ld_probe(void *m, const char *p) { return md_probe_load(m, p); }
static md_status ld_imagegen(void *m, const char *p)
{
    return md_unet_load(m, p, MD_IMAGEGEN_MODEL, "latent diffusion decoder", "medley train diffusion");
}

static md_status ld_videogen(void *m, const char *p)
{
    return md_unet_load(m, p, MD_VIDEOGEN_MODEL, "video diffusion model", "medley train diffusion --space video32");
}

int medley_bundle_load(medley_bundle *b, const char *models, bool tokens)
{
    memset(b, 0, sizeof *b);
    const char *dir = medley_models_dir(models);
    if (load_one(dir, "space.safetensors", "aligned space", "medley train space", b->model_id, sizeof b->model_id,
                 ld_space, &b->sp))
        return 1;
    b->have_sp = true;
    if (!tokens)
        return 0;
    if (load_one(dir, "vqgan.safetensors", "image tokenizer", "medley train vqgan", b->model_id, sizeof b->model_id,
                 ld_vqgan, &b->vq)) {
        medley_bundle_free(b);
        return 1;
    }
    b->have_vq = true;
    if (load_one(dir, "tokens.safetensors", "token transformer", "medley train tokens", b->model_id,
                 sizeof b->model_id, ld_tokens, &b->tm)) {
        medley_bundle_free(b);
        return 1;
    }
    b->have_tm = true;
    char path[4096];
    snprintf(path, sizeof path, "%s/audiogen.safetensors", dir);
    if (access(path, F_OK) == 0) {   /* optional: only audio outputs need it */
        if (load_one(dir, "audiogen.safetensors", "audio decoder", "medley train audio", b->model_id,
                     sizeof b->model_id, ld_audio, &b->ag)) {
            medley_bundle_free(b);
            return 1;
        }
        b->have_ag = true;
    }
    snprintf(path, sizeof path, "%s/vocoder.safetensors", dir);
    if (b->have_ag && access(path, F_OK) == 0) {   /* optional: Griffin-Lim without it */
        if (load_one(dir, "vocoder.safetensors", "vocoder", "medley train vocoder", b->model_id, sizeof b->model_id,
                     ld_vocoder, &b->voc)) {
            medley_bundle_free(b);
            return 1;
        }
        b->have_voc = true;
    }
    snprintf(path, sizeof path, "%s/motion.safetensors", dir);
    if (access(path, F_OK) == 0) {   /* optional: videos' frames from the token transformer without it */
        if (load_one(dir, "motion.safetensors", "motion model", "medley train motion", b->model_id,
                     sizeof b->model_id, ld_motion, &b->mo)) {
            medley_bundle_free(b);
            return 1;
        }
        b->have_mo = true;
    }
    snprintf(path, sizeof path, "%s/probes.safetensors", dir);
    if (access(path, F_OK) == 0) {   /* optional: candidates chosen by the cosine alone without it */
        if (load_one(dir, "probes.safetensors", "candidate readers", "medley train probes", b->model_id,
                     sizeof b->model_id, ld_probe, &b->pr)) {
            medley_bundle_free(b);
            return 1;
        }
        b->have_pr = true;
        char sid[17] = "";
        snprintf(path, sizeof path, "%s/space.safetensors", dir);
        medley_file_hash(path, sid);
        if (strcmp(sid, b->pr.space_id) != 0) {
            fprintf(stderr, "medley: %s/probes.safetensors was fitted on another aligned space (%s, this one is "
                            "%s)\n(refit it with 'medley train probes', or remove it to choose candidates by the "
                            "cosine)\n", dir, b->pr.space_id[0] ? b->pr.space_id : "unknown", sid);
            medley_bundle_free(b);
            return 1;
        }
        b->sp.probe = &b->pr;
    }
    snprintf(path, sizeof path, "%s/imagegen.safetensors", dir);
    if (access(path, F_OK) == 0) {
        if (load_one(dir, "imagegen.safetensors", "latent diffusion decoder", "medley train diffusion", b->model_id,
                     sizeof b->model_id, ld_imagegen, &b->ig)) {
            medley_bundle_free(b);
            return 1;
        }
        b->have_ig = true;
    }
    snprintf(path, sizeof path, "%s/videogen.safetensors", dir);
    if (access(path, F_OK) == 0) {   /* optional: video:diffusion moves a picture without it */
        if (load_one(dir, "videogen.safetensors", "video diffusion model", "medley train diffusion --space video32",
                     b->model_id, sizeof b->model_id, ld_videogen, &b->vg)) {
            medley_bundle_free(b);
            return 1;
        }
        b->have_vg = true;
    }
    return 0;
}

void medley_bundle_free(medley_bundle *b)
{
    if (b->have_ag)
        md_unet_free(&b->ag);
    if (b->have_ig)
        md_unet_free(&b->ig);
    if (b->have_vg)
        md_unet_free(&b->vg);
    if (b->have_voc)
        md_vocoder_free(&b->voc);
    if (b->have_mo)
        md_motion_free(&b->mo);
    if (b->have_pr)
        md_probe_free(&b->pr);
    if (b->have_tm)
        md_tok_free(&b->tm);
    if (b->have_vq)
        md_vqgan_free(&b->vq);
    if (b->have_sp)
        md_space_free(&b->sp);
    memset(b, 0, sizeof *b);
}
