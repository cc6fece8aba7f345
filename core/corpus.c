/* corpus.c — see corpus.h. */
#include "corpus.h"
#include "caption.h"
#include "json.h"
#include "safetensors.h"
#include "tensor.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void md_corpus_default_opts(md_corpus_opts *o, double scale)
{
    memset(o, 0, sizeof *o);
    static const int64_t base[MD_WORLD_SPLITS][3] = {
        {20000, 4800, 1000},
        {2000, 600, 200},
        {MD_CORPUS_ALL_ITEMS, MD_CORPUS_ALL_ITEMS, 1000},
        {1000, 0, 500},
    };
    if (!(scale > 0.0) || scale > 1.0)
        scale = 1.0;
    o->seed = 1;
    for (int s = 0; s < MD_WORLD_SPLITS; s++)
        for (int k = 0; k < 3; k++) {
            int64_t c = base[s][k];
            if (c > 0 && scale < 1.0) {
                c = (int64_t)ceil((double)c * scale);
            }
            o->count[s][k] = c;
        }
    o->shard_items[MD_WORLD_IMAGE] = 4096;
    o->shard_items[MD_WORLD_AUDIO] = 2048;
    o->shard_items[MD_WORLD_VIDEO] = 256;
    /* all-items counts at scale < 1: resolved against the world at build time */
    if (scale < 1.0)
        for (int k = 0; k < 3; k++)
            if (o->count[MD_SPLIT_TEST][k] == MD_CORPUS_ALL_ITEMS)
                o->count[MD_SPLIT_TEST][k] = -2 - (int64_t)llround(scale * 1e6);   /* -2 - share·1e6 */
}

static md_status make_dir(const char *path)
{
    if (mkdir(path, 0777) == 0 || errno == EEXIST) {
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
            return MD_OK;
    }
    md_log(MD_LOG_ERROR, "%s: cannot create the corpus folder: %s", path, strerror(errno ? errno : ENOTDIR));
    return MD_ERR_IO;
}

typedef struct shard_buf {
    int32_t *attr, *src, *offsets, *stated;
    uint8_t *media;        /* image or video bytes */
    float *audio;          /* f32, converted at write */
    uint16_t *audio16;
    char *captions;        /* n * 4 * MD_CAPTION_MAX */
} shard_buf;

static void shard_buf_free(shard_buf *b)
{
    free(b->attr);
    free(b->src);
    free(b->offsets);
    free(b->stated);
    free(b->media);
    free(b->audio);
    free(b->audio16);
    free(b->captions);
    memset(b, 0, sizeof *b);
}

static md_status write_shard(const md_world *w, const md_corpus_opts *o, md_world_split split, md_world_kind kind,
                             bool items, int64_t all, int64_t total, int64_t first, int64_t n, const char *path,
                             int64_t *bytes)
{
    const int C = MD_CAPTIONS_PER_SAMPLE;
    const size_t isz = (size_t)MD_WORLD_SIZE * MD_WORLD_SIZE * 3;
    const size_t msz = kind == MD_WORLD_IMAGE ? isz : kind == MD_WORLD_VIDEO ? isz * MD_WORLD_FRAMES : 0;
    const bool has_audio = kind != MD_WORLD_IMAGE;
    shard_buf b = {0};
    b.attr = malloc(sizeof(int32_t) * (size_t)n * MD_ATTR_COUNT);
    b.src = malloc(sizeof(int32_t) * (size_t)n * 2);
    b.offsets = malloc(sizeof(int32_t) * (size_t)(n * C + 1));
    b.stated = malloc(sizeof(int32_t) * (size_t)n * C * MD_ATTR_COUNT);
    b.captions = malloc((size_t)n * C * MD_CAPTION_MAX);
    b.media = msz ? malloc(msz * (size_t)n) : NULL;
    b.audio = has_audio ? malloc(sizeof(float) * MD_WORLD_AUDIO_SAMPLES * (size_t)n) : NULL;
    b.audio16 = has_audio ? malloc(sizeof(uint16_t) * MD_WORLD_AUDIO_SAMPLES * (size_t)n) : NULL;
    if (!b.attr || !b.src || !b.offsets || !b.stated || !b.captions || (msz && !b.media) ||
        (has_audio && (!b.audio || !b.audio16))) {
        shard_buf_free(&b);
        md_log(MD_LOG_ERROR, "%s: out of memory for the shard", path);
        return MD_ERR_ALLOC;
    }
    volatile int bad = 0;
#pragma omp parallel for schedule(dynamic, 8) num_threads(md_threads_get())
    for (int64_t i = 0; i < n; i++) {
        md_world_sample s;
        /* items: the split's source items spread evenly when total < all */
        md_status st = items ? md_world_draw_item(w, o->seed, split, kind, (first + i) * all / total, &s)
                             : md_world_draw(w, o->seed, split, kind, first + i, &s);
        if (st != MD_OK) {
            bad = 1;
            continue;
        }
        for (int a = 0; a < MD_ATTR_COUNT; a++)
            b.attr[i * MD_ATTR_COUNT + a] = s.attr[a];
        b.src[i * 2] = s.src_image;
        b.src[i * 2 + 1] = s.src_audio;
        if (kind == MD_WORLD_IMAGE)
            md_world_render_image(w, &s, b.media + msz * (size_t)i);
        else if (kind == MD_WORLD_VIDEO)
            md_world_render_video(w, &s, b.media + msz * (size_t)i, b.audio + MD_WORLD_AUDIO_SAMPLES * i);
        else
            md_world_render_audio(w, &s, b.audio + MD_WORLD_AUDIO_SAMPLES * i);
        for (int c = 0; c < C; c++)
            if (md_caption_make(&s, c, b.captions + (size_t)(i * C + c) * MD_CAPTION_MAX, MD_CAPTION_MAX,
                                b.stated + (i * C + c) * MD_ATTR_COUNT) != MD_OK)
                bad = 1;
    }
    if (bad) {
        shard_buf_free(&b);
        md_log(MD_LOG_ERROR, "%s: drawing a sample failed: %s", path, md_last_error());
        return MD_ERR;
    }
    /* pack captions: NUL-separated, offsets to each start */
    size_t used = 0;
    for (int64_t k = 0; k < n * C; k++) {
        const char *cap = b.captions + (size_t)k * MD_CAPTION_MAX;
        size_t len = strlen(cap) + 1;
        b.offsets[k] = (int32_t)used;
        memmove(b.captions + used, cap, len);
        used += len;
    }
    b.offsets[n * C] = (int32_t)used;
    if (has_audio)
        md_convert(b.audio16, MD_F16, b.audio, MD_F32, (size_t)n * MD_WORLD_AUDIO_SAMPLES);

    md_st_writer *wr = md_st_writer_new();
    md_status st = wr ? MD_OK : MD_ERR_ALLOC;
    char buf[64];
    if (st == MD_OK) st = md_st_writer_add_raw(wr, "attr", MD_I32, 2, (int64_t[]){n, MD_ATTR_COUNT}, b.attr);
    if (st == MD_OK) st = md_st_writer_add_raw(wr, "src", MD_I32, 2, (int64_t[]){n, 2}, b.src);
    if (st == MD_OK && kind == MD_WORLD_IMAGE)
        st = md_st_writer_add_raw(wr, "image", MD_U8, 4, (int64_t[]){n, MD_WORLD_SIZE, MD_WORLD_SIZE, 3}, b.media);
    if (st == MD_OK && kind == MD_WORLD_VIDEO)
        st = md_st_writer_add_raw(wr, "video", MD_U8, 5,
                                  (int64_t[]){n, MD_WORLD_FRAMES, MD_WORLD_SIZE, MD_WORLD_SIZE, 3}, b.media);
    if (st == MD_OK && has_audio)
        st = md_st_writer_add_raw(wr, "audio", MD_F16, 2, (int64_t[]){n, MD_WORLD_AUDIO_SAMPLES}, b.audio16);
    if (st == MD_OK) st = md_st_writer_add_raw(wr, "captions", MD_U8, 1, (int64_t[]){(int64_t)used}, b.captions);
    if (st == MD_OK) st = md_st_writer_add_raw(wr, "caption_offsets", MD_I32, 1, (int64_t[]){n * C + 1}, b.offsets);
    if (st == MD_OK) st = md_st_writer_add_raw(wr, "stated", MD_I32, 3, (int64_t[]){n, C, MD_ATTR_COUNT}, b.stated);
    if (st == MD_OK) st = md_st_writer_meta(wr, "medley.model", "corpus-shard");
    snprintf(buf, sizeof buf, "%d", MD_WORLD_VERSION);
    if (st == MD_OK) st = md_st_writer_meta(wr, "world.version", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->seed);
    if (st == MD_OK) st = md_st_writer_meta(wr, "seed", buf);
    if (st == MD_OK) st = md_st_writer_meta(wr, "split", md_world_split_names[split]);
    if (st == MD_OK) st = md_st_writer_meta(wr, "kind", md_world_kind_names[kind]);
    snprintf(buf, sizeof buf, "%lld", (long long)first);
    if (st == MD_OK) st = md_st_writer_meta(wr, "first", buf);
    if (st == MD_OK) st = md_st_writer_meta(wr, "order", items ? "items" : "draw");
    if (st == MD_OK) st = md_st_writer_meta(wr, "data.hash", w->data_hash);
    if (st == MD_OK) st = md_st_writer_save(wr, path);
    md_st_writer_free(wr);
    shard_buf_free(&b);
    if (st == MD_OK) {
        struct stat sb;
        if (stat(path, &sb) == 0)
            *bytes += sb.st_size;
    }
    return st;
}

md_status md_corpus_build(const md_world *w, const md_corpus_opts *o, md_corpus_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    double t0 = md_time_now();
    if (!o->out_dir || !*o->out_dir) {
        md_log(MD_LOG_ERROR, "corpus: no output folder given");
        return MD_ERR_INVALID;
    }
    for (int k = 0; k < 3; k++)
        if (o->shard_items[k] < 1) {
            md_log(MD_LOG_ERROR, "corpus: shard size must be positive");
            return MD_ERR_INVALID;
        }
    md_status st = make_dir(o->out_dir);
    if (st != MD_OK)
        return st;
    md_json_buf j;
    md_json_buf_init(&j);
    md_json_buf_begin_object(&j);
    md_json_buf_key(&j, "format"); md_json_buf_str(&j, "medley-corpus");
    md_json_buf_key(&j, "world_version"); md_json_buf_int(&j, MD_WORLD_VERSION);
    md_json_buf_key(&j, "seed"); md_json_buf_int(&j, (int64_t)o->seed);
    md_json_buf_key(&j, "data_hash"); md_json_buf_str(&j, w->data_hash);
    md_json_buf_key(&j, "heldout_digit_ink");
    md_json_buf_begin_array(&j);
    for (int d = 0; d < 10; d++) {
        md_json_buf_begin_array(&j);
        md_json_buf_int(&j, d);
        md_json_buf_str(&j, md_colour_names[(d + 2) % MD_COLOURS]);
        md_json_buf_end_array(&j);
    }
    md_json_buf_end_array(&j);
    md_json_buf_key(&j, "heldout_digit_motion");
    md_json_buf_begin_array(&j);
    for (int d = 0; d < 10; d++) {
        md_json_buf_begin_array(&j);
        md_json_buf_int(&j, d);
        md_json_buf_str(&j, md_motion_names[d % MD_MOTIONS]);
        md_json_buf_end_array(&j);
    }
    md_json_buf_end_array(&j);
    md_json_buf_key(&j, "shards");
    md_json_buf_begin_array(&j);
    char path[4096], name[128];
    for (int sp = 0; sp < MD_WORLD_SPLITS && st == MD_OK; sp++)
        for (int k = 0; k < 3 && st == MD_OK; k++) {
            int64_t n = o->count[sp][k];
            bool items = n < 0;
            int64_t all = md_world_enumerate_count(w, (md_world_split)sp, (md_world_kind)k);
            if (items) {
                n = n == MD_CORPUS_ALL_ITEMS ? all : (int64_t)ceil((double)all * (double)(-2 - n) / 1e6);
            }
            for (int64_t first = 0, part = 0; first < n && st == MD_OK; first += o->shard_items[k], part++) {
                if (o->cancel && *o->cancel) {
                    st = MD_ABORTED;
                    break;
                }
                int64_t m = n - first < o->shard_items[k] ? n - first : o->shard_items[k];
                snprintf(name, sizeof name, "%s-%s-%04lld.safetensors", md_world_split_names[sp],
                         md_world_kind_names[k], (long long)part);
                if (snprintf(path, sizeof path, "%s/%s", o->out_dir, name) >= (int)sizeof path) {
                    md_log(MD_LOG_ERROR, "corpus: output folder path too long");
                    st = MD_ERR_INVALID;
                    break;
                }
                st = write_shard(w, o, (md_world_split)sp, (md_world_kind)k, items, all, n, first, m, path,
                                 &stats->bytes);
                if (st != MD_OK)
                    break;
                stats->shards++;
                stats->samples[k] += m;
                md_json_buf_begin_object(&j);
                md_json_buf_key(&j, "file"); md_json_buf_str(&j, name);
                md_json_buf_key(&j, "split"); md_json_buf_str(&j, md_world_split_names[sp]);
                md_json_buf_key(&j, "kind"); md_json_buf_str(&j, md_world_kind_names[k]);
                md_json_buf_key(&j, "order"); md_json_buf_str(&j, items ? "items" : "draw");
                md_json_buf_key(&j, "first"); md_json_buf_int(&j, first);
                md_json_buf_key(&j, "count"); md_json_buf_int(&j, m);
                md_json_buf_key(&j, "total"); md_json_buf_int(&j, n);
                md_json_buf_end_object(&j);
                if (o->progress)
                    o->progress(name, first + m, n, o->user);
            }
        }
    md_json_buf_end_array(&j);
    md_json_buf_end_object(&j);
    char *text = md_json_buf_finish(&j, NULL);
    if (st == MD_OK && !text)
        st = MD_ERR_ALLOC;
    if (st == MD_OK) {
        snprintf(path, sizeof path, "%s/manifest.json", o->out_dir);
        st = md_write_file_atomic(path, text, strlen(text));
    }
    free(text);
    stats->seconds = md_time_now() - t0;
    return st;
}
