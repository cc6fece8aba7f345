/* video_io.c — FFmpeg-backed video loading and saving (see video_io.h). */
#include "video_io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>

#define MEM_IO_BUF 4096          /* AVIOContext buffer for memory input */
#define DEFAULT_AUDIO_RATE 16000

/* ---- FFmpeg logging: routed to md_log at DEBUG, installed once ---------- */

static void av_log_route(void *avcl, int level, const char *fmt, va_list ap)
{
    MD_UNUSED(avcl);
    if (level > AV_LOG_WARNING)   /* skip FFmpeg's chatter before formatting it */
        return;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    md_log(MD_LOG_DEBUG, "ffmpeg: %s", buf);
}

static pthread_once_t g_log_once = PTHREAD_ONCE_INIT;

static void av_log_install(void)
{
    av_log_set_callback(av_log_route);
}

static void ff_init(void)
{
    pthread_once(&g_log_once, av_log_install);
}

static const char *ff_err(int err, char *buf, size_t n)
{
    if (av_strerror(err, buf, n) < 0)
        snprintf(buf, n, "FFmpeg error %d", err);
    return buf;
}

md_video_load_opts md_video_load_opts_default(void)
{
    md_video_load_opts o;
    memset(&o, 0, sizeof o);
    return o;
}

/* ---- memory input ------------------------------------------------------- */

typedef struct mem_src {
    const uint8_t *buf;
    size_t len, pos;   /* invariant: pos <= len */
} mem_src;

static int mem_read(void *opaque, uint8_t *dst, int n)
{
    mem_src *m = opaque;
    size_t left = m->len - m->pos;
    if (left == 0 || n <= 0)
        return AVERROR_EOF;
    size_t k = MD_MIN((size_t)n, left);
    memcpy(dst, m->buf + m->pos, k);
    m->pos += k;
    return (int)k;
}

static int64_t mem_seek(void *opaque, int64_t off, int whence)
{
    mem_src *m = opaque;
    int64_t base;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return (int64_t)m->len;
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (int64_t)m->pos; break;
    case SEEK_END: base = (int64_t)m->len; break;
    default: return AVERROR(EINVAL);
    }
    int64_t p;
    if (__builtin_add_overflow(base, off, &p) || p < 0 || (uint64_t)p > m->len)
        return AVERROR(EINVAL);
    m->pos = (size_t)p;
    return p;
}

/* ---- loading ------------------------------------------------------------ */

static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p >> 5) == 6 ? 1 : (*p >> 4) == 14 ? 2 : (*p >> 3) == 30 ? 3 : -1;
        if (n < 0)
            return false;
        p++;
        for (int i = 0; i < n; i++, p++)
            if ((*p & 0xC0) != 0x80)
                return false;
    }
    return true;
}

/* Everything one load owns; ld_free releases it whatever state it is in. */
typedef struct loader {
    const char *label;
    md_media_limits lim;
    md_video_load_opts o;
    AVFormatContext *fmt;
    AVCodecContext *vdec, *adec;
    AVFrame *frame, *prev;
    AVPacket *pkt;
    struct SwsContext *sws;
    SwrContext *swr;
    int vidx, aidx;
    double vtb, atb;         /* stream time bases in seconds */
    double origin;           /* first video pts, seconds: time 0 for both streams */
    double nfps, ofps;       /* native and output frame rates */
    int tw, th;              /* output frame size */
    double end_limit;        /* start + duration, or INFINITY */

    /* video output: frames × th × tw × 3 f32, grown by doubling up to max_frames */
    float *vbuf;
    int64_t k, vcap;         /* frames emitted, frames allocated */
    int64_t vhint;           /* frames the header promises (first allocation; 0 = unknown) */
    int64_t decoded, decode_cap;
    double prev_t;
    bool have_prev, vdone;
    uint8_t *rgb[4];         /* one RGB24 frame for swscale */
    int rgb_ls[4];

    /* audio output: alen × och f32 interleaved, relative to start */
    int orate, och;
    float *abuf;
    int64_t alen, acap, amax, askip;
    bool astarted, adone;
    int swr_fmt, swr_rate, swr_nch;
} loader;

static void ld_free(loader *L)
{
    avcodec_free_context(&L->vdec);
    avcodec_free_context(&L->adec);
    av_frame_free(&L->frame);
    av_frame_free(&L->prev);
    av_packet_free(&L->pkt);
    sws_freeContext(L->sws);
    swr_free(&L->swr);
    if (L->rgb[0])
        av_freep(&L->rgb[0]);
    if (L->fmt)
        avformat_close_input(&L->fmt);
    free(L->vbuf);
    free(L->abuf);
}

static md_status ld_fail(loader *L, md_status s, const char *what, int err)
{
    char b[128];
    md_log(MD_LOG_ERROR, "%s: %s (%s)", L->label, what, ff_err(err, b, sizeof b));
    return s;
}

static md_status open_decoder(loader *L, int idx, const AVCodec *codec, AVCodecContext **out)
{
    AVStream *st = L->fmt->streams[idx];
    AVCodecContext *c = avcodec_alloc_context3(codec);
    if (!c) {
        md_log(MD_LOG_ERROR, "%s: out of memory for a decoder", L->label);
        return MD_ERR_ALLOC;
    }
    int ret = avcodec_parameters_to_context(c, st->codecpar);
    if (ret >= 0) {
        c->pkt_timebase = st->time_base;
        /* Decoding is exact, so threads change speed, not results. */
        c->thread_count = md_threads_get();
        ret = avcodec_open2(c, codec, NULL);
    }
    if (ret < 0) {
        avcodec_free_context(&c);
        char what[160];
        snprintf(what, sizeof what, "cannot open the %s decoder", codec->name);
        return ld_fail(L, MD_ERR_FORMAT, what, ret);
    }
    *out = c;
    return MD_OK;
}

/* Converts f to the output size and appends it as frame L->k. */
static md_status emit_frame(loader *L, const AVFrame *f)
{
    if (L->k >= L->lim.max_frames) {
        md_log(MD_LOG_ERROR, "%s: yields more than %lld frames (max_frames)", L->label,
               (long long)L->lim.max_frames);
        return MD_ERR_INVALID;
    }
    size_t fsz = (size_t)L->tw * (size_t)L->th * 3; /* tw*th <= max_pixels, checked */
    if (L->k == L->vcap) {
        /* One allocation when the header's length is right; doubling (and
         * copying) only when it lied. */
        int64_t nc = L->vcap ? 2 * L->vcap : MD_MAX(16, L->vhint);
        nc = MD_MIN(nc, L->lim.max_frames);
        size_t bytes;
        if (__builtin_mul_overflow(fsz * sizeof(float), (size_t)nc, &bytes)) {
            md_log(MD_LOG_ERROR, "%s: video too large for memory", L->label);
            return MD_ERR_INVALID;
        }
        float *nb = realloc(L->vbuf, bytes);
        if (!nb) {
            md_log(MD_LOG_ERROR, "%s: out of memory for %lld frames", L->label, (long long)nc);
            return MD_ERR_ALLOC;
        }
        L->vbuf = nb;
        L->vcap = nc;
    }
    bool shrink = (int64_t)L->tw * L->th < (int64_t)f->width * f->height;
    int flags = (shrink ? SWS_AREA : SWS_BICUBIC) | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT;
    L->sws = sws_getCachedContext(L->sws, f->width, f->height, f->format, L->tw, L->th, AV_PIX_FMT_RGB24, flags,
                                  NULL, NULL, NULL);
    if (!L->sws) {
        const char *pf = av_get_pix_fmt_name(f->format);
        md_log(MD_LOG_ERROR, "%s: cannot convert %dx%d frames in pixel format %s", L->label, f->width, f->height,
               pf ? pf : "(unknown)");
        return MD_ERR_FORMAT;
    }
    int ret = sws_scale(L->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, L->rgb, L->rgb_ls);
    if (ret <= 0)
        return ld_fail(L, MD_ERR_FORMAT, "frame conversion failed", ret < 0 ? ret : AVERROR_INVALIDDATA);
    float *dst = L->vbuf + (size_t)L->k * fsz;
    for (int y = 0; y < L->th; y++) {
        const uint8_t *row = L->rgb[0] + (size_t)y * (size_t)L->rgb_ls[0];
        float *d = dst + (size_t)y * (size_t)L->tw * 3;
        for (int x = 0; x < L->tw * 3; x++)
            d[x] = row[x] * (1.0f / 255.0f);
    }
    L->k++;
    return MD_OK;
}

static double frame_time(const AVFrame *f, double tb, double origin, double fallback)
{
    int64_t pts = f->best_effort_timestamp;
    return pts == AV_NOPTS_VALUE ? fallback : (double)pts * tb - origin;
}

/* Emits every target time t_k = start + k/ofps at or before this frame,
 * choosing whichever of the previous and this frame is nearer in time. */
static md_status on_video(loader *L, AVFrame *f)
{
    if (f->width < 1 || f->height < 1 || (int64_t)f->width * f->height > L->lim.max_pixels) {
        md_log(MD_LOG_ERROR, "%s: a decoded frame is %dx%d, over max_pixels %lld", L->label, f->width,
               f->height, (long long)L->lim.max_pixels);
        return MD_ERR_INVALID;
    }
    if (++L->decoded > L->decode_cap) {
        md_log(MD_LOG_ERROR, "%s: more than %lld frames decoded without reaching the end (max_seconds)",
               L->label, (long long)L->decode_cap);
        return MD_ERR_INVALID;
    }
    double t = frame_time(f, L->vtb, L->origin, L->have_prev ? L->prev_t + 1.0 / L->nfps : 0.0);
    if (!isfinite(t))
        t = L->have_prev ? L->prev_t : 0.0;
    while (!L->vdone) {
        double tk = L->o.start + (double)L->k / L->ofps;
        if (tk >= L->end_limit - 1e-9) {
            L->vdone = true;
            break;
        }
        if (t + 1e-6 < tk)
            break;
        bool use_prev = L->have_prev && tk - L->prev_t < t - tk;
        md_status s = emit_frame(L, use_prev ? L->prev : f);
        if (s != MD_OK)
            return s;
    }
    av_frame_unref(L->prev);
    av_frame_move_ref(L->prev, f);
    L->prev_t = t;
    L->have_prev = true;
    return MD_OK;
}

/* At end of stream the last frame stays on screen for one native frame. */
static md_status video_tail(loader *L)
{
    if (!L->have_prev || L->vdone)
        return MD_OK;
    double end = MD_MIN(L->prev_t + 1.0 / L->nfps, L->end_limit);
    for (;;) {
        double tk = L->o.start + (double)L->k / L->ofps;
        if (tk >= end - 1e-9)
            break;
        md_status s = emit_frame(L, L->prev);
        if (s != MD_OK)
            return s;
    }
    L->vdone = true;
    return MD_OK;
}

static md_status audio_reserve(loader *L, int64_t frames)
{
    int64_t need = L->alen + frames;
    if (need <= L->acap)
        return MD_OK;
    int64_t nc = MD_MAX(need, L->acap ? 2 * L->acap : (int64_t)L->orate);
    size_t bytes;
    if (__builtin_mul_overflow((size_t)nc, (size_t)L->och * sizeof(float), &bytes)) {
        md_log(MD_LOG_ERROR, "%s: soundtrack too large", L->label);
        return MD_ERR_INVALID;
    }
    float *nb = realloc(L->abuf, bytes);
    if (!nb) {
        md_log(MD_LOG_ERROR, "%s: out of memory for the soundtrack", L->label);
        return MD_ERR_ALLOC;
    }
    L->abuf = nb;
    L->acap = nc;
    return MD_OK;
}

/* Runs n input samples (NULL = flush) through swr and appends the output,
 * dropping the first askip output frames (audio before start). */
static md_status audio_push(loader *L, const uint8_t **in, int n)
{
    int out_n = swr_get_out_samples(L->swr, n);
    if (out_n < 0)
        return ld_fail(L, MD_ERR_FORMAT, "audio resampling failed", out_n);
    if (out_n == 0)
        return MD_OK;
    md_status s = audio_reserve(L, out_n);
    if (s != MD_OK)
        return s;
    uint8_t *dst = (uint8_t *)(L->abuf + (size_t)L->alen * (size_t)L->och);
    int got = swr_convert(L->swr, &dst, out_n, in, n);
    if (got < 0)
        return ld_fail(L, MD_ERR_FORMAT, "audio resampling failed", got);
    int64_t drop = MD_MIN(L->askip, (int64_t)got);
    if (drop > 0) {
        memmove(dst, dst + (size_t)drop * (size_t)L->och * sizeof(float),
                (size_t)(got - drop) * (size_t)L->och * sizeof(float));
        L->askip -= drop;
    }
    L->alen += got - drop;
    if (L->alen >= L->amax) {
        L->alen = L->amax;
        L->adone = true;
    }
    return MD_OK;
}

static md_status on_audio(loader *L, AVFrame *f)
{
    int nch = f->ch_layout.nb_channels;
    if (nch < 1 || f->sample_rate < 1 || f->nb_samples < 1)
        return MD_OK; /* an empty or malformed frame: nothing to hear */
    if (nch > L->lim.max_channels) {
        md_log(MD_LOG_ERROR, "%s: audio has %d channels, over max_channels %d", L->label, nch,
               L->lim.max_channels);
        return MD_ERR_INVALID;
    }
    if (!L->swr || f->format != L->swr_fmt || f->sample_rate != L->swr_rate || nch != L->swr_nch) {
        if (L->swr)
            md_log(MD_LOG_DEBUG, "%s: audio format changes mid-stream; resampler restarted", L->label);
        swr_free(&L->swr);
        AVChannelLayout in_l, out_l;
        if (f->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC || av_channel_layout_check(&f->ch_layout) == 0)
            av_channel_layout_default(&in_l, nch);
        else if (av_channel_layout_copy(&in_l, &f->ch_layout) < 0)
            return ld_fail(L, MD_ERR_ALLOC, "audio layout", AVERROR(ENOMEM));
        av_channel_layout_default(&out_l, L->och);
        int ret = swr_alloc_set_opts2(&L->swr, &out_l, AV_SAMPLE_FMT_FLT, L->orate, &in_l, f->format,
                                      f->sample_rate, 0, NULL);
        av_channel_layout_uninit(&in_l);
        av_channel_layout_uninit(&out_l);
        if (ret >= 0)
            ret = swr_init(L->swr);
        if (ret < 0)
            return ld_fail(L, MD_ERR_FORMAT, "cannot resample its audio", ret);
        L->swr_fmt = f->format;
        L->swr_rate = f->sample_rate;
        L->swr_nch = nch;
    }
    if (!L->astarted) {
        /* Place the first sample on the output timeline (0 = start). */
        double t = frame_time(f, L->atb, L->origin, L->o.start);
        double lead = isfinite(t) ? (t - L->o.start) * L->orate : 0.0;
        lead = fmax(fmin(lead, (double)L->amax), -(double)INT64_C(1) * (double)((int64_t)1 << 52));
        int64_t li = llround(lead);
        if (li > 0) {
            md_status s = audio_reserve(L, li);
            if (s != MD_OK)
                return s;
            memset(L->abuf, 0, (size_t)li * (size_t)L->och * sizeof(float));
            L->alen = li;
            if (L->alen >= L->amax)
                L->adone = true;
        } else {
            L->askip = -li;
        }
        L->astarted = true;
    }
    if (L->adone)
        return MD_OK;
    return audio_push(L, (const uint8_t **)f->extended_data, f->nb_samples);
}

/* Sends pkt (NULL = flush) to dec and handles every frame that comes out. */
static md_status decode(loader *L, AVCodecContext *dec, const AVPacket *pkt, bool video)
{
    int ret = avcodec_send_packet(dec, pkt);
    if (ret < 0 && ret != AVERROR_EOF) {
        /* A corrupt packet: skip it, as players do; the limits bound the work. */
        char b[128];
        md_log(MD_LOG_DEBUG, "%s: packet skipped (%s)", L->label, ff_err(ret, b, sizeof b));
        return MD_OK;
    }
    for (;;) {
        ret = avcodec_receive_frame(dec, L->frame);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return MD_OK;
        if (ret < 0) {
            char b[128];
            md_log(MD_LOG_DEBUG, "%s: frame skipped (%s)", L->label, ff_err(ret, b, sizeof b));
            return MD_OK;
        }
        md_status s = MD_OK;
        if (video)
            s = L->vdone ? MD_OK : on_video(L, L->frame);
        else
            s = L->adone ? MD_OK : on_audio(L, L->frame);
        av_frame_unref(L->frame);
        if (s != MD_OK)
            return s;
    }
}

static md_status check_opts(const char *label, const md_video_load_opts *o, const md_media_limits *lim)
{
    if (!(o->fps >= 0 && o->fps <= MD_VIDEO_MAX_FPS) || o->width < 0 || o->height < 0 ||
        o->width > MD_VIDEO_MAX_SIDE || o->height > MD_VIDEO_MAX_SIDE || !(o->start >= 0 && o->start < 1e9) ||
        !(o->duration >= 0 && o->duration < 1e9) || o->audio_rate < 0 || o->audio_rate > 768000 ||
        (o->audio_rate > 0 && o->audio_rate < 1000) || o->audio_channels < 0 ||
        o->audio_channels > MD_MIN(lim->max_channels, 64)) {
        md_log(MD_LOG_ERROR,
               "%s: load options out of range (fps %g, size %dx%d, start %g, duration %g, audio %d Hz x %d)",
               label, o->fps, o->width, o->height, o->start, o->duration, o->audio_rate, o->audio_channels);
        return MD_ERR_INVALID;
    }
    return MD_OK;
}

/* Validates the opened container against the limits, then decodes. */
static md_status load_opened(loader *L, md_video *out, md_meta *meta)
{
    AVFormatContext *fmt = L->fmt;
    int ret = avformat_find_stream_info(fmt, NULL);
    if (ret < 0)
        return ld_fail(L, MD_ERR_FORMAT, "cannot read its streams", ret);

    const AVCodec *vcodec = NULL;
    L->vidx = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &vcodec, 0);
    if (L->vidx >= 0 && (fmt->streams[L->vidx]->disposition & AV_DISPOSITION_ATTACHED_PIC))
        L->vidx = AVERROR_STREAM_NOT_FOUND; /* cover art of an audio file is not a video */
    if (L->vidx == AVERROR_DECODER_NOT_FOUND) {
        int i = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
        md_log(MD_LOG_ERROR, "%s: no decoder for its video codec (%s) in this FFmpeg", L->label,
               i >= 0 ? avcodec_get_name(fmt->streams[i]->codecpar->codec_id) : "?");
        return MD_ERR_FORMAT;
    }
    if (L->vidx < 0) {
        bool audio = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0) >= 0;
        md_log(MD_LOG_ERROR, "%s: no video stream%s", L->label, audio ? " (it holds audio only)" : "");
        return MD_ERR_FORMAT;
    }
    /* Still-image demuxers (png_pipe, image2, ...) would give one frame;
     * stills belong to md_image_load, and a .mp4 that is a PNG is a mistake. */
    const char *dn = fmt->iformat->name;
    size_t dl = strlen(dn);
    if (!L->o.still && (strcmp(dn, "image2") == 0 || (dl > 5 && strcmp(dn + dl - 5, "_pipe") == 0))) {
        md_log(MD_LOG_ERROR, "%s: a still image (%s), not a video", L->label, dn);
        return MD_ERR_FORMAT;
    }
    AVStream *vst = fmt->streams[L->vidx];
    const AVCodecParameters *par = vst->codecpar;
    if (par->width < 1 || par->height < 1) {
        md_log(MD_LOG_ERROR, "%s: video stream has no valid frame size (%dx%d)", L->label, par->width,
               par->height);
        return MD_ERR_FORMAT;
    }
    if ((int64_t)par->width * par->height > L->lim.max_pixels) {
        md_log(MD_LOG_ERROR, "%s: frames of %dx%d exceed max_pixels %lld", L->label, par->width, par->height,
               (long long)L->lim.max_pixels);
        return MD_ERR_INVALID;
    }

    L->vtb = av_q2d(vst->time_base);
    if (!(L->vtb > 0))
        L->vtb = 1.0 / 90000;
    L->origin = vst->start_time != AV_NOPTS_VALUE ? (double)vst->start_time * L->vtb : 0.0;
    AVRational gr = av_guess_frame_rate(fmt, vst, NULL);
    L->nfps = gr.num > 0 && gr.den > 0 ? av_q2d(gr) : 25.0;
    if (!(L->nfps >= 0.01 && L->nfps <= MD_VIDEO_MAX_FPS))
        L->nfps = 25.0;
    L->ofps = L->o.fps > 0 ? L->o.fps : L->nfps;

    /* Duration the header claims; -1 when unknown. Only a hint: the decode
     * loop re-checks everything it actually gets. */
    double dur = -1;
    if (vst->duration != AV_NOPTS_VALUE && vst->duration > 0)
        dur = (double)vst->duration * L->vtb;
    else if (fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0)
        dur = (double)fmt->duration / AV_TIME_BASE;
    if (dur >= 0 && L->o.start > 0 && L->o.start >= dur) {
        md_log(MD_LOG_ERROR, "%s: start %.3f s is past its end (%.3f s)", L->label, L->o.start, dur);
        return MD_ERR_INVALID;
    }
    double seg = dur >= 0 ? dur - L->o.start : -1;
    if (L->o.duration > 0)
        seg = seg < 0 ? L->o.duration : fmin(seg, L->o.duration);
    if (seg > L->lim.max_seconds + 1e-6) {
        md_log(MD_LOG_ERROR, "%s: %.1f s of video exceed max_seconds %.1f", L->label, seg, L->lim.max_seconds);
        return MD_ERR_INVALID;
    }
    if (seg > 0) {
        double est = ceil(seg * L->ofps - 1e-6);
        if (est > (double)L->lim.max_frames) {
            md_log(MD_LOG_ERROR, "%s: about %.0f frames at %g fps exceed max_frames %lld", L->label, est, L->ofps,
                   (long long)L->lim.max_frames);
            return MD_ERR_INVALID;
        }
        L->vhint = (int64_t)est + 1;
    }
    L->end_limit = L->o.duration > 0 ? L->o.start + L->o.duration : INFINITY;
    L->decode_cap = (int64_t)fmin(L->lim.max_seconds * 1000.0 + 1000.0, 1e15);

    /* Output size: 0 keeps the native side, one 0 keeps the aspect ratio. */
    L->tw = L->o.width, L->th = L->o.height;
    if (!L->tw && !L->th) {
        L->tw = par->width;
        L->th = par->height;
    } else if (!L->tw) {
        L->tw = (int)MD_MAX(1, lround((double)par->width * L->th / par->height));
    } else if (!L->th) {
        L->th = (int)MD_MAX(1, lround((double)par->height * L->tw / par->width));
    }
    if (L->tw > MD_VIDEO_MAX_SIDE || L->th > MD_VIDEO_MAX_SIDE ||
        (int64_t)L->tw * L->th > L->lim.max_pixels) {
        md_log(MD_LOG_ERROR, "%s: output size %dx%d exceeds max_pixels %lld", L->label, L->tw, L->th,
               (long long)L->lim.max_pixels);
        return MD_ERR_INVALID;
    }

    md_status s = open_decoder(L, L->vidx, vcodec, &L->vdec);
    if (s != MD_OK)
        return s;

    L->aidx = -1;
    if (!L->o.no_audio) {
        const AVCodec *acodec = NULL;
        int ai = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, L->vidx, &acodec, 0);
        if (ai >= 0) {
            if (fmt->streams[ai]->codecpar->ch_layout.nb_channels > L->lim.max_channels) {
                md_log(MD_LOG_ERROR, "%s: audio has %d channels, over max_channels %d", L->label,
                       fmt->streams[ai]->codecpar->ch_layout.nb_channels, L->lim.max_channels);
                return MD_ERR_INVALID;
            }
            if (open_decoder(L, ai, acodec, &L->adec) == MD_OK) {
                L->aidx = ai;
                L->atb = av_q2d(fmt->streams[ai]->time_base);
                if (!(L->atb > 0))
                    L->atb = 1.0 / 90000;
            } else {
                md_log(MD_LOG_WARN, "%s: its audio cannot be decoded; loading the video silent", L->label);
            }
        } else if (ai == AVERROR_DECODER_NOT_FOUND) {
            md_log(MD_LOG_WARN, "%s: no decoder for its audio; loading the video silent", L->label);
        }
        L->orate = L->o.audio_rate ? L->o.audio_rate : DEFAULT_AUDIO_RATE;
        L->och = L->o.audio_channels ? L->o.audio_channels : 1;
        L->amax = (int64_t)ceil(fmin(L->lim.max_seconds, L->end_limit - L->o.start) * L->orate) + 1;
    }
    L->adone = L->aidx < 0;

    L->frame = av_frame_alloc();
    L->prev = av_frame_alloc();
    L->pkt = av_packet_alloc();
    if (!L->frame || !L->prev || !L->pkt) {
        md_log(MD_LOG_ERROR, "%s: out of memory", L->label);
        return MD_ERR_ALLOC;
    }
    ret = av_image_alloc(L->rgb, L->rgb_ls, L->tw, L->th, AV_PIX_FMT_RGB24, 32);
    if (ret < 0)
        return ld_fail(L, MD_ERR_ALLOC, "cannot allocate a frame", ret);

    if (L->o.start > 0) {
        double ts = (L->o.start + L->origin) / L->vtb;
        int r = ts < 9e18 ? av_seek_frame(fmt, L->vidx, (int64_t)ts, AVSEEK_FLAG_BACKWARD) : -1;
        if (r < 0) /* not seekable: decode from the beginning and drop what precedes start */
            md_log(MD_LOG_DEBUG, "%s: seek to %.3f s failed; decoding from the start", L->label, L->o.start);
    }

    /* Demux until the video has its last frame and the audio covers it. */
    while (!L->vdone || !L->adone) {
        ret = av_read_frame(fmt, L->pkt);
        if (ret == AVERROR_EOF)
            break;
        if (ret < 0) {
            char b[128];
            md_log(MD_LOG_WARN, "%s: read stopped early (%s); keeping what decoded", L->label,
                   ff_err(ret, b, sizeof b));
            break;
        }
        s = MD_OK;
        if (L->pkt->stream_index == L->vidx && !L->vdone)
            s = decode(L, L->vdec, L->pkt, true);
        else if (L->pkt->stream_index == L->aidx && !L->adone)
            s = decode(L, L->adec, L->pkt, false);
        av_packet_unref(L->pkt);
        if (s != MD_OK)
            return s;
        if (L->vdone && !L->adone && L->alen >= (int64_t)ceil((double)L->k / L->ofps * L->orate))
            L->adone = true;
    }
    if (!L->vdone) {
        if ((s = decode(L, L->vdec, NULL, true)) != MD_OK || (s = video_tail(L)) != MD_OK)
            return s;
    }
    if (L->aidx >= 0 && !L->adone) {
        if ((s = decode(L, L->adec, NULL, false)) != MD_OK)
            return s;
        if (L->swr && !L->adone && (s = audio_push(L, NULL, 0)) != MD_OK)
            return s;
    }
    if (L->k == 0) {
        md_log(MD_LOG_ERROR, "%s: no video frame decodes%s", L->label,
               L->o.start > 0 ? " at or after the start time" : "");
        return MD_ERR_FORMAT;
    }

    /* Hand the buffers over: exact sizes, soundtrack = frames / fps seconds. */
    memset(out, 0, sizeof *out);
    size_t fbytes = (size_t)L->tw * (size_t)L->th * 3 * sizeof(float) * (size_t)L->k;
    float *vp = realloc(L->vbuf, fbytes);
    out->pixels = vp ? vp : L->vbuf;
    L->vbuf = NULL;
    out->width = L->tw;
    out->height = L->th;
    out->channels = 3;
    out->frames = L->k;
    out->fps = L->ofps;
    if (L->aidx >= 0 && L->astarted) {
        int64_t want = llround((double)L->k / L->ofps * L->orate);
        if ((s = audio_reserve(L, MD_MAX(0, want - L->alen))) != MD_OK) {
            md_video_free(out);
            return s;
        }
        if (want > L->alen)
            memset(L->abuf + (size_t)L->alen * (size_t)L->och, 0,
                   (size_t)(want - L->alen) * (size_t)L->och * sizeof(float));
        out->audio.rate = L->orate;
        out->audio.channels = L->och;
        out->audio.frames = want;
        out->audio.samples = L->abuf;
        L->abuf = NULL;
        if (!out->audio.samples) { /* want == 0 and nothing was allocated */
            memset(&out->audio, 0, sizeof out->audio);
        }
    }
    snprintf(out->video_codec, sizeof out->video_codec, "%s",
             avcodec_get_name(fmt->streams[L->vidx]->codecpar->codec_id));
    if (L->aidx >= 0 && out->audio.samples)
        snprintf(out->audio_codec, sizeof out->audio_codec, "%s",
                 avcodec_get_name(fmt->streams[L->aidx]->codecpar->codec_id));
    if (meta) {
        const AVDictionaryEntry *e = NULL;
        while ((e = av_dict_get(fmt->metadata, "", e, AV_DICT_IGNORE_SUFFIX))) {
            if (!utf8_valid(e->key) || !utf8_valid(e->value))
                continue;
            /* Matroska stores tag names upper-case ("MEDLEY"); keys come back
             * lower-case (ASCII) whatever the container, as the saver wrote them. */
            char key[256];
            snprintf(key, sizeof key, "%s", e->key);
            for (char *c = key; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c - 'A' + 'a');
            if (md_meta_set(meta, key, e->value) != MD_OK) {
                md_log(MD_LOG_ERROR, "%s: out of memory for its tags", L->label);
                md_video_free(out);
                return MD_ERR_ALLOC;
            }
        }
    }
    return MD_OK;
}

static md_status ld_prepare(loader *L, const char *label, const md_media_limits *lim,
                            const md_video_load_opts *o, md_video *out)
{
    ff_init();
    memset(L, 0, sizeof *L);
    L->label = label;
    L->lim = lim ? *lim : md_media_limits_default();
    L->o = o ? *o : md_video_load_opts_default();
    MD_ASSERT(out);
    memset(out, 0, sizeof *out);
    if (L->lim.max_frames < 1 || L->lim.max_pixels < 1 || !(L->lim.max_seconds > 0)) {
        md_log(MD_LOG_ERROR, "%s: limits allow no video", label);
        return MD_ERR_INVALID;
    }
    return check_opts(label, &L->o, &L->lim);
}

md_status md_video_load(const char *path, const md_media_limits *lim, const md_video_load_opts *o,
                        md_video *out, md_meta *meta)
{
    MD_ASSERT(path);
    loader L;
    md_status s = ld_prepare(&L, path, lim, o, out);
    if (s != MD_OK)
        return s;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        md_log(MD_LOG_ERROR, "%s: cannot open (%s)", path, strerror(errno));
        return MD_ERR_IO;
    }
    if (!S_ISREG(sb.st_mode)) {
        md_log(MD_LOG_ERROR, "%s: not a regular file", path);
        return MD_ERR_IO;
    }
    if (sb.st_size == 0) {
        md_log(MD_LOG_ERROR, "%s: empty file, not media", path);
        return MD_ERR_FORMAT;
    }
    if ((int64_t)sb.st_size > L.lim.max_bytes) {
        md_log(MD_LOG_ERROR, "%s: %lld bytes exceed max_bytes %lld", path, (long long)sb.st_size,
               (long long)L.lim.max_bytes);
        return MD_ERR_INVALID;
    }
    /* "file:" prefix: a name with a colon is never taken for a protocol, and
     * the whitelist keeps playlists (HLS, concat) from reaching the network. */
    size_t n = strlen(path) + 6;
    char *url = malloc(n);
    if (!url) {
        md_log(MD_LOG_ERROR, "%s: out of memory", path);
        return MD_ERR_ALLOC;
    }
    snprintf(url, n, "file:%s", path);
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "protocol_whitelist", "file", 0);
    int ret = avformat_open_input(&L.fmt, url, NULL, &opts);
    av_dict_free(&opts);
    free(url);
    if (ret < 0) {
        L.fmt = NULL;
        s = ld_fail(&L, ret == AVERROR(ENOENT) || ret == AVERROR(EACCES) ? MD_ERR_IO : MD_ERR_FORMAT,
                    "not a video or audio file FFmpeg can open", ret);
    } else {
        s = load_opened(&L, out, meta);
    }
    ld_free(&L);
    if (s != MD_OK)
        md_video_free(out);
    return s;
}

md_status md_video_load_memory(const void *buf, size_t len, const char *label, const md_media_limits *lim,
                               const md_video_load_opts *o, md_video *out, md_meta *meta)
{
    if (!label)
        label = "(memory)";
    loader L;
    md_status s = ld_prepare(&L, label, lim, o, out);
    if (s != MD_OK)
        return s;
    if (!buf || len == 0) {
        md_log(MD_LOG_ERROR, "%s: empty input, not media", label);
        return MD_ERR_FORMAT;
    }
    if (len > (uint64_t)L.lim.max_bytes) {
        md_log(MD_LOG_ERROR, "%s: %zu bytes exceed max_bytes %lld", label, len, (long long)L.lim.max_bytes);
        return MD_ERR_INVALID;
    }
    mem_src src = {buf, len, 0};
    uint8_t *iobuf = av_malloc(MEM_IO_BUF);
    AVIOContext *io = iobuf ? avio_alloc_context(iobuf, MEM_IO_BUF, 0, &src, mem_read, NULL, mem_seek) : NULL;
    L.fmt = io ? avformat_alloc_context() : NULL;
    if (!L.fmt) {
        if (io)
            av_freep(&io->buffer); /* FFmpeg may have replaced iobuf */
        else
            av_free(iobuf);
        avio_context_free(&io);
        md_log(MD_LOG_ERROR, "%s: out of memory", label);
        return MD_ERR_ALLOC;
    }
    L.fmt->pb = io;
    L.fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "protocol_whitelist", "file", 0);
    int ret = avformat_open_input(&L.fmt, NULL, NULL, &opts); /* frees L.fmt on failure */
    av_dict_free(&opts);
    if (ret < 0) {
        L.fmt = NULL;
        s = ld_fail(&L, MD_ERR_FORMAT, "not a video or audio file FFmpeg can open", ret);
    } else {
        s = load_opened(&L, out, meta);
    }
    ld_free(&L); /* closes the format context; the custom pb is ours to free */
    av_freep(&io->buffer);
    avio_context_free(&io);
    if (s != MD_OK)
        md_video_free(out);
    return s;
}

/* ---- saving ------------------------------------------------------------- */

typedef struct saver {
    const char *path;
    AVFormatContext *oc;
    AVCodecContext *venc, *aenc;
    AVStream *vst, *ast;
    AVFrame *vf, *af;
    AVPacket *pkt;
    struct SwsContext *sws;
    SwrContext *swr;
    AVAudioFifo *fifo;
    uint8_t *rgb;            /* W2 × H2 × 3 RGB24, padded to even sides; rows rgb_ls bytes apart */
    int rgb_ls;
    int64_t apts;            /* audio samples sent to the encoder */
} saver;

static md_status sv_fail(const saver *S, const char *what, int err)
{
    char b[128];
    md_log(MD_LOG_ERROR, "%s: %s (%s)", S->path, what, ff_err(err, b, sizeof b));
    return MD_ERR;
}

/* Sends frame (NULL = flush) and writes every packet that comes out. */
static md_status sv_encode(saver *S, AVCodecContext *enc, AVStream *st, AVFrame *frame)
{
    int ret = avcodec_send_frame(enc, frame);
    if (ret < 0)
        return sv_fail(S, "encoding failed", ret);
    for (;;) {
        ret = avcodec_receive_packet(enc, S->pkt);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return MD_OK;
        if (ret < 0)
            return sv_fail(S, "encoding failed", ret);
        av_packet_rescale_ts(S->pkt, enc->time_base, st->time_base);
        S->pkt->stream_index = st->index;
        ret = av_interleaved_write_frame(S->oc, S->pkt); /* takes the packet's reference */
        if (ret < 0)
            return sv_fail(S, "writing failed", ret);
    }
}

/* Encodes whole encoder frames from the fifo; flush also sends the rest. */
static md_status sv_audio_drain(saver *S, bool flush)
{
    int fs = S->aenc->frame_size > 0 ? S->aenc->frame_size : 1024;
    while (av_audio_fifo_size(S->fifo) >= fs || (flush && av_audio_fifo_size(S->fifo) > 0)) {
        int n = MD_MIN(fs, av_audio_fifo_size(S->fifo));
        av_frame_unref(S->af);
        S->af->nb_samples = n;
        S->af->format = S->aenc->sample_fmt;
        S->af->sample_rate = S->aenc->sample_rate;
        int ret = av_channel_layout_copy(&S->af->ch_layout, &S->aenc->ch_layout);
        if (ret >= 0)
            ret = av_frame_get_buffer(S->af, 0);
        if (ret >= 0)
            ret = av_audio_fifo_read(S->fifo, (void **)S->af->data, n);
        if (ret < 0)
            return sv_fail(S, "audio buffering failed", ret);
        S->af->pts = S->apts;
        S->apts += n;
        md_status s = sv_encode(S, S->aenc, S->ast, S->af);
        if (s != MD_OK)
            return s;
    }
    return MD_OK;
}

/* Pushes input audio frames [from, to) (NULL input with from == to: flush
 * the resampler) through swr into the fifo, then encodes what fills. */
static md_status sv_audio_feed(saver *S, const md_audio *a, int64_t from, int64_t to, bool flush)
{
    while (from < to || flush) {
        int n = (int)MD_MIN(to - from, (int64_t)4096);
        const uint8_t *in = flush ? NULL : (const uint8_t *)(a->samples + (size_t)from * (size_t)a->channels);
        int cap = swr_get_out_samples(S->swr, flush ? 0 : n);
        if (cap < 0)
            return sv_fail(S, "audio resampling failed", cap);
        if (cap > 0) {
            uint8_t **tmp = NULL;
            int ret = av_samples_alloc_array_and_samples(&tmp, NULL, S->aenc->ch_layout.nb_channels, cap,
                                                         S->aenc->sample_fmt, 0);
            if (ret < 0)
                return sv_fail(S, "audio buffering failed", ret);
            int got = swr_convert(S->swr, tmp, cap, flush ? NULL : &in, flush ? 0 : n);
            if (got > 0)
                ret = av_audio_fifo_write(S->fifo, (void **)tmp, got);
            av_freep(&tmp[0]);
            av_freep(&tmp);
            if (got < 0 || ret < 0)
                return sv_fail(S, "audio resampling failed", got < 0 ? got : ret);
        } else if (!flush) {
            /* swr buffers the input internally when it has no output yet */
            int got = swr_convert(S->swr, NULL, 0, &in, n);
            if (got < 0)
                return sv_fail(S, "audio resampling failed", got);
        }
        md_status s = sv_audio_drain(S, false);
        if (s != MD_OK)
            return s;
        if (flush)
            break;
        from += n;
    }
    return MD_OK;
}

static md_status sv_open_audio(saver *S, const md_audio *a, const char *enc_name)
{
    const AVCodec *codec = avcodec_find_encoder_by_name(enc_name);
    if (!codec) {
        md_log(MD_LOG_ERROR, "%s: this FFmpeg has no %s encoder", S->path, enc_name);
        return MD_ERR_UNSUPPORTED;
    }
    S->aenc = avcodec_alloc_context3(codec);
    if (!S->aenc)
        return sv_fail(S, "out of memory", AVERROR(ENOMEM));
    /* Rate: the track's own when the encoder takes it, else 48 kHz. */
    int rate = 48000;
    if (codec->supported_samplerates) {
        for (const int *r = codec->supported_samplerates; *r; r++)
            if (*r == a->rate)
                rate = a->rate;
    } else {
        rate = a->rate;
    }
    S->aenc->sample_rate = rate;
    S->aenc->sample_fmt = codec->sample_fmts ? codec->sample_fmts[0] : AV_SAMPLE_FMT_FLTP;
    for (const enum AVSampleFormat *f = codec->sample_fmts; f && *f != AV_SAMPLE_FMT_NONE; f++)
        if (*f == AV_SAMPLE_FMT_FLTP || *f == AV_SAMPLE_FMT_FLT) {
            S->aenc->sample_fmt = *f;
            break;
        }
    av_channel_layout_default(&S->aenc->ch_layout, MD_MIN(a->channels, 2));
    S->aenc->bit_rate = 64000 * S->aenc->ch_layout.nb_channels;
    S->aenc->time_base = (AVRational){1, rate};
    if (S->oc->oformat->flags & AVFMT_GLOBALHEADER)
        S->aenc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    int ret = avcodec_open2(S->aenc, codec, NULL);
    if (ret < 0)
        return sv_fail(S, "cannot open the audio encoder", ret);
    S->ast = avformat_new_stream(S->oc, NULL);
    if (!S->ast)
        return sv_fail(S, "out of memory", AVERROR(ENOMEM));
    S->ast->time_base = S->aenc->time_base;
    ret = avcodec_parameters_from_context(S->ast->codecpar, S->aenc);
    if (ret < 0)
        return sv_fail(S, "cannot set up the audio stream", ret);

    AVChannelLayout in_l;
    av_channel_layout_default(&in_l, a->channels);
    ret = swr_alloc_set_opts2(&S->swr, &S->aenc->ch_layout, S->aenc->sample_fmt, rate, &in_l, AV_SAMPLE_FMT_FLT,
                              a->rate, 0, NULL);
    av_channel_layout_uninit(&in_l);
    if (ret >= 0)
        ret = swr_init(S->swr);
    if (ret < 0)
        return sv_fail(S, "cannot set up audio resampling", ret);
    S->fifo = av_audio_fifo_alloc(S->aenc->sample_fmt, S->aenc->ch_layout.nb_channels, 4096);
    S->af = av_frame_alloc();
    if (!S->fifo || !S->af)
        return sv_fail(S, "out of memory", AVERROR(ENOMEM));
    return MD_OK;
}

static void sv_free(saver *S)
{
    avcodec_free_context(&S->venc);
    avcodec_free_context(&S->aenc);
    av_frame_free(&S->vf);
    av_frame_free(&S->af);
    av_packet_free(&S->pkt);
    sws_freeContext(S->sws);
    swr_free(&S->swr);
    if (S->fifo)
        av_audio_fifo_free(S->fifo);
    free(S->rgb);
    if (S->oc) {
        if (S->oc->pb)
            avio_closep(&S->oc->pb);
        avformat_free_context(S->oc);
    }
}

static md_status sv_write(saver *S, const char *tmp, const md_video *v, const char *format, const md_meta *meta)
{
    bool mp4 = strcmp(format, "mp4") == 0;
    const char *venc_name = mp4 ? "libx264" : "libvpx-vp9";
    const char *aenc_name = mp4 ? "aac" : "libopus";
    const AVOutputFormat *ofmt = av_guess_format(format, NULL, NULL);
    const AVCodec *vcodec = avcodec_find_encoder_by_name(venc_name);
    if (!ofmt || !vcodec) {
        md_log(MD_LOG_ERROR, "%s: this FFmpeg has no %s", S->path, !ofmt ? "such muxer" : venc_name);
        return MD_ERR_UNSUPPORTED;
    }
    int ret = avformat_alloc_output_context2(&S->oc, ofmt, NULL, tmp);
    if (ret < 0)
        return sv_fail(S, "cannot set up the container", ret);
    S->oc->flags |= AVFMT_FLAG_BITEXACT;   /* no random segment ids: the same frames, the same bytes */

    int w2 = (v->width + 1) & ~1, h2 = (v->height + 1) & ~1;
    if (w2 != v->width || h2 != v->height)
        md_log(MD_LOG_INFO, "%s: %dx%d padded to %dx%d (yuv420p needs even sides)", S->path, v->width,
               v->height, w2, h2);
    AVRational fr = av_d2q(v->fps, 1001000);
    S->venc = avcodec_alloc_context3(vcodec);
    if (!S->venc)
        return sv_fail(S, "out of memory", AVERROR(ENOMEM));
    S->venc->width = w2;
    S->venc->height = h2;
    S->venc->pix_fmt = AV_PIX_FMT_YUV420P;
    S->venc->framerate = fr;
    S->venc->time_base = av_inv_q(fr);
    S->venc->gop_size = 48;
    /* One encoder thread: with two, x264 gave different bytes for the same
     * frames in 1 to 3 runs of 10 (a generated video must be the same file
     * for the same job); Medley's videos are small enough that one thread
     * costs little. */
    S->venc->thread_count = 1;
    if (S->oc->oformat->flags & AVFMT_GLOBALHEADER)
        S->venc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (mp4) {
        av_opt_set(S->venc->priv_data, "crf", "18", 0);
        av_opt_set(S->venc->priv_data, "preset", "medium", 0);
#if defined(__x86_64__) || defined(__i386__)
        /* x264's AVX-512 routines made different files from the same
         * frames, in one thread: 1 or 2 of 24–30 saves of a generated
         * video, and 23 of 24 with other bytes left in freed heap blocks
         * before each save (what the heap held behind x264's buffers
         * decided). Its AVX2 and C routines gave the same bytes every time,
         * so where the CPU has AVX-512, x264 is held to AVX2 (a 64×64
         * video encodes in milliseconds either way). */
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
            av_opt_set(S->venc->priv_data, "x264-params", "asm=AVX2", 0) < 0)
            md_log(MD_LOG_DEBUG, "%s: x264 cannot be held to AVX2: its output may vary from run to run", S->path);
#endif
    } else {
        S->venc->bit_rate = 0; /* constant quality */
        av_opt_set(S->venc->priv_data, "crf", "30", 0);
        av_opt_set(S->venc->priv_data, "deadline", "good", 0);
        av_opt_set(S->venc->priv_data, "cpu-used", "4", 0);
        av_opt_set(S->venc->priv_data, "row-mt", "1", 0);
    }
    ret = avcodec_open2(S->venc, vcodec, NULL);
    if (ret < 0)
        return sv_fail(S, "cannot open the video encoder", ret);
    S->vst = avformat_new_stream(S->oc, NULL);
    if (!S->vst)
        return sv_fail(S, "out of memory", AVERROR(ENOMEM));
    S->vst->time_base = S->venc->time_base;
    S->vst->avg_frame_rate = fr;
    ret = avcodec_parameters_from_context(S->vst->codecpar, S->venc);
    if (ret < 0)
        return sv_fail(S, "cannot set up the video stream", ret);

    bool audio = v->audio.samples && v->audio.frames > 0;
    if (audio) {
        if (v->audio.rate < 1 || v->audio.channels < 1 || v->audio.channels > 64) {
            md_log(MD_LOG_ERROR, "%s: soundtrack of %d Hz x %d channels is invalid", S->path, v->audio.rate,
                   v->audio.channels);
            return MD_ERR_INVALID;
        }
        md_status s = sv_open_audio(S, &v->audio, aenc_name);
        if (s != MD_OK)
            return s;
    }

    for (int i = 0; meta && i < meta->count; i++)
        av_dict_set(&S->oc->metadata, meta->keys[i], meta->values[i], 0);

    ret = avio_open(&S->oc->pb, tmp, AVIO_FLAG_WRITE);
    if (ret < 0) {
        md_log(MD_LOG_ERROR, "%s: cannot write %s (%s)", S->path, tmp, ff_err(ret, (char[128]){0}, 128));
        return MD_ERR_IO;
    }
    AVDictionary *mux = NULL;
    if (mp4)
        av_dict_set(&mux, "movflags", "use_metadata_tags", 0); /* keep arbitrary keys like "medley" */
    ret = avformat_write_header(S->oc, &mux);
    av_dict_free(&mux);
    if (ret < 0)
        return sv_fail(S, "cannot write the header", ret);

    S->pkt = av_packet_alloc();
    S->vf = av_frame_alloc();
    /* swscale's vector readers load up to 16 bytes past a row's last pixel
     * (valgrind: 4 bytes past the end of an unpadded frame), and those bytes
     * reached the encoded frames: the same frames gave different files when
     * the heap behind the buffer held different bytes. Rows 64-byte aligned
     * and a zeroed tail keep every byte it reads defined and the same. */
    S->rgb_ls = (w2 * 3 + 63) & ~63;
    S->rgb = calloc((size_t)S->rgb_ls * (size_t)h2 + 64, 1);
    S->sws = sws_getContext(w2, h2, AV_PIX_FMT_RGB24, w2, h2, AV_PIX_FMT_YUV420P,
                            SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, NULL, NULL, NULL);
    if (!S->pkt || !S->vf || !S->rgb || !S->sws)
        return sv_fail(S, "out of memory", AVERROR(ENOMEM));
    S->vf->format = AV_PIX_FMT_YUV420P;
    S->vf->width = w2;
    S->vf->height = h2;
    ret = av_frame_get_buffer(S->vf, 0);
    if (ret < 0)
        return sv_fail(S, "out of memory", ret);

    size_t fsz = (size_t)v->width * (size_t)v->height * (size_t)v->channels;
    int64_t a_sent = 0;
    for (int64_t i = 0; i < v->frames; i++) {
        /* Audio up to the end of this frame first, so packets interleave. */
        if (audio) {
            int64_t upto = MD_MIN(v->audio.frames, llround((double)(i + 1) / v->fps * v->audio.rate));
            md_status s = sv_audio_feed(S, &v->audio, a_sent, upto, false);
            if (s != MD_OK)
                return s;
            a_sent = MD_MAX(a_sent, upto);
        }
        const float *src = v->pixels + (size_t)i * fsz;
        for (int y = 0; y < h2; y++) {
            const float *row = src + (size_t)MD_MIN(y, v->height - 1) * (size_t)v->width * (size_t)v->channels;
            uint8_t *d = S->rgb + (size_t)y * (size_t)S->rgb_ls;
            for (int x = 0; x < w2; x++) {
                const float *p = row + (size_t)MD_MIN(x, v->width - 1) * (size_t)v->channels;
                for (int c = 0; c < 3; c++) {
                    float f = p[c];
                    f = f > 0 ? (f < 1 ? f : 1) : 0; /* NaN -> 0 */
                    d[3 * x + c] = (uint8_t)lrintf(f * 255.0f);
                }
            }
        }
        ret = av_frame_make_writable(S->vf);
        if (ret < 0)
            return sv_fail(S, "out of memory", ret);
        const uint8_t *in[1] = {S->rgb};
        int ls[1] = {S->rgb_ls};
        sws_scale(S->sws, in, ls, 0, h2, S->vf->data, S->vf->linesize);
        S->vf->pts = i;
        md_status s = sv_encode(S, S->venc, S->vst, S->vf);
        if (s != MD_OK)
            return s;
    }
    md_status s = sv_encode(S, S->venc, S->vst, NULL);
    if (s == MD_OK && audio) {
        if ((s = sv_audio_feed(S, &v->audio, a_sent, v->audio.frames, false)) == MD_OK &&
            (s = sv_audio_feed(S, &v->audio, 0, 0, true)) == MD_OK && (s = sv_audio_drain(S, true)) == MD_OK)
            s = sv_encode(S, S->aenc, S->ast, NULL);
    }
    if (s != MD_OK)
        return s;
    ret = av_write_trailer(S->oc);
    if (ret < 0)
        return sv_fail(S, "cannot finish the file", ret);
    ret = avio_closep(&S->oc->pb);
    if (ret < 0) {
        md_log(MD_LOG_ERROR, "%s: cannot write %s", S->path, tmp);
        return MD_ERR_IO;
    }
    return MD_OK;
}

md_status md_video_save(const char *path, const md_video *v, const char *format, const md_meta *meta)
{
    MD_ASSERT(path && v && format);
    if (!path || !v || !format) /* the assert handler may return */
        return MD_ERR_INVALID;
    ff_init();
    if (strcmp(format, "mp4") != 0 && strcmp(format, "webm") != 0) {
        md_log(MD_LOG_ERROR, "%s: unknown video format \"%s\" (use \"mp4\" or \"webm\")", path, format);
        return MD_ERR_INVALID;
    }
    if (!v->pixels || v->width < 1 || v->height < 1 || v->width > MD_VIDEO_MAX_SIDE ||
        v->height > MD_VIDEO_MAX_SIDE || (v->channels != 3 && v->channels != 4) || v->frames < 1 ||
        !(v->fps > 0 && v->fps <= MD_VIDEO_MAX_FPS)) {
        md_log(MD_LOG_ERROR, "%s: video of %dx%dx%d, %lld frames at %g fps cannot be saved", path, v->width,
               v->height, v->channels, (long long)v->frames, v->fps);
        return MD_ERR_INVALID;
    }
    size_t n = strlen(path) + strlen(format) + 6;
    char *tmp = malloc(n);
    if (!tmp) {
        md_log(MD_LOG_ERROR, "%s: out of memory", path);
        return MD_ERR_ALLOC;
    }
    snprintf(tmp, n, "%s.tmp.%s", path, format);
    saver S;
    memset(&S, 0, sizeof S);
    S.path = path;
    md_status s = sv_write(&S, tmp, v, format, meta);
    sv_free(&S);
    if (s == MD_OK) {
        int fd = open(tmp, O_RDONLY);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
        if (rename(tmp, path) != 0) {
            md_log(MD_LOG_ERROR, "%s: cannot rename %s into place (%s)", path, tmp, strerror(errno));
            s = MD_ERR_IO;
        }
    }
    if (s != MD_OK)
        unlink(tmp);
    free(tmp);
    return s;
}
