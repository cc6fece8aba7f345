/* test_bpe.c — byte-level BPE: pre-tokenizer, training, encode/decode, JSON.
 *
 * Prints one line per check; exits 0 only if every check passed. The fast
 * paths are checked against slow, obvious references written here: a
 * trainer that recounts every pair after each merge, and an encoder that
 * applies the merges one by one in rank order. */
#include "bpe.h"
#include "json.h"
#include "rng.h"
#include "safetensors.h"

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Expected errors are shown indented, so the log reads as part of the test. */
static void quiet_log(md_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level >= MD_LOG_WARN)
        printf("       (logged) %s\n", msg);
}

/* ---- synthetic captions ------------------------------------------------------ */

#define PICK(r, a) ((a)[md_rng_below((r), (uint32_t)(sizeof(a) / sizeof((a)[0])))])

static const char *const k_words[] = {"zero", "one", "two", "three", "four",
                                      "five", "six", "seven", "eight", "nine"};
static const char *const k_colours[] = {"red", "green", "blue", "yellow", "white", "orange",
                                        "purple", "cyan", "magenta", "pink", "grey", "teal"};
static const char *const k_sizes[] = {"small", "large", "big", "tiny", "huge", "medium"};
static const char *const k_pos[] = {"top left", "top right", "bottom left", "bottom right",
                                    "center", "middle", "left side", "right edge"};
static const char *const k_bg[] = {"black", "white", "a dark background", "grey", "navy"};
static const char *const k_names[] = {"theo", "maya", "sam", "lena", "omar", "Iris", "Kenji", "Zoe"};
static const char *const k_moves[] = {"moving left", "moving up", "spinning", "bouncing", "drifting right"};

/* One caption of ~40-80 bytes; digits as words or numerals, case kept. */
static int make_caption(md_rng *r, char *buf, size_t cap)
{
    int d = (int)md_rng_below(r, 10);
    char num[16];
    if (md_rng_below(r, 2))
        snprintf(num, sizeof num, "%d", d);
    else
        snprintf(num, sizeof num, "%s", k_words[d]);
    switch (md_rng_below(r, 8)) {
    case 0:
        return snprintf(buf, cap, "a %s %s %s in the %s corner on %s", PICK(r, k_sizes), PICK(r, k_colours), num,
                        PICK(r, k_pos), PICK(r, k_bg));
    case 1:
        return snprintf(buf, cap, "the voice of %s saying the digit %s", PICK(r, k_names), k_words[d]);
    case 2:
        return snprintf(buf, cap, "%s, written in %s at the %s.", num, PICK(r, k_colours), PICK(r, k_pos));
    case 3:
        return snprintf(buf, cap, "a video of a %s %s %s on %s", PICK(r, k_colours), num, PICK(r, k_moves),
                        PICK(r, k_bg));
    case 4:
        return snprintf(buf, cap, "Photo of the number %s: %s, %s, %s", num, PICK(r, k_sizes), PICK(r, k_colours),
                        PICK(r, k_pos));
    case 5:
        return snprintf(buf, cap, "%s says \"%s\" twice, then %d", PICK(r, k_names), k_words[d],
                        (int)md_rng_below(r, 1000));
    case 6:
        return snprintf(buf, cap, "sound: %s counting to %s (%d s)", PICK(r, k_names), k_words[d],
                        (int)md_rng_below(r, 60));
    default:
        return snprintf(buf, cap, "An image of a %s %s on %s, %s", PICK(r, k_colours), num, PICK(r, k_bg),
                        PICK(r, k_pos));
    }
}

/* Text with a large open vocabulary: words of 1-4 random syllables, some
 * capitalised, numbers, punctuation and a few UTF-8 letters, ~60 bytes. */
static int make_babble(md_rng *r, char *buf, size_t cap)
{
    static const char *const syl[] = {"ka", "lo", "mi", "nu", "ra", "te", "sho", "vi", "dre", "pa", "gu", "zen",
                                      "bo", "fi", "qua", "\xc3\xa9", "\xc3\xbc", "\xe6\x97\xa5", "x", "th"};
    size_t at = 0;
    while (at < 56 && at + 24 < cap) {
        if (at)
            buf[at++] = md_rng_below(r, 12) ? ' ' : '\n';
        int k = (int)md_rng_below(r, 10);
        if (k == 0) {
            at += (size_t)snprintf(buf + at, cap - at, "%u", md_rng_below(r, 100000));
        } else if (k == 1) {
            static const char punct[] = "!?.,;:-()\"'";
            buf[at++] = punct[md_rng_below(r, sizeof punct - 1)];
        } else {
            size_t start = at;
            for (int n = 1 + (int)md_rng_below(r, 4); n > 0; n--) {
                const char *s = PICK(r, syl);
                memcpy(buf + at, s, strlen(s));
                at += strlen(s);
            }
            if (md_rng_below(r, 5) == 0 && buf[start] >= 'a' && buf[start] <= 'z')
                buf[start] = (char)(buf[start] - 32);
        }
    }
    buf[at] = 0;
    return (int)at;
}

typedef struct {
    char **text;
    size_t *len;
    int64_t n;
    size_t bytes;
} corpus;

static corpus make_corpus(int64_t n, uint64_t seed, bool babble)
{
    corpus c = {malloc(sizeof(char *) * (size_t)n), malloc(sizeof(size_t) * (size_t)n), n, 0};
    md_rng r;
    md_rng_init(&r, seed);
    char buf[256];
    for (int64_t i = 0; i < n; i++) {
        int k = babble ? make_babble(&r, buf, sizeof buf) : make_caption(&r, buf, sizeof buf);
        c.text[i] = strdup(buf);
        c.len[i] = (size_t)k;
        c.bytes += (size_t)k;
    }
    return c;
}

static void corpus_free(corpus *c)
{
    for (int64_t i = 0; i < c->n; i++)
        free(c->text[i]);
    free(c->text);
    free(c->len);
}

/* ---- references ----------------------------------------------------------------- */

/* Merges of a tokenizer, read back from its JSON: (nm, 2). */
static int32_t *merges_of(const md_bpe *bpe, int *nm)
{
    char *js = md_bpe_to_json(bpe, NULL);
    md_json_doc *doc;
    if (!js || md_json_parse(js, strlen(js), "test", &doc) != MD_OK)
        abort();
    const md_json *m = md_json_get(md_json_root(doc), "merges");
    *nm = (int)md_json_len(m);
    int32_t *mg = malloc(sizeof *mg * 2 * (size_t)(*nm + 1));
    for (int r = 0; r < *nm; r++)
        for (int k = 0; k < 2; k++) {
            int64_t v;
            md_json_int(md_json_at(md_json_at(m, (size_t)r), (size_t)k), &v);
            mg[2 * r + k] = (int32_t)v;
        }
    md_json_free(doc);
    free(js);
    return mg;
}

/* Applies merge (a, b) -> z to s[0..n) left to right without overlap. */
static int apply_merge(int32_t *s, int n, int32_t a, int32_t b, int32_t z)
{
    int j = 0;
    for (int i = 0; i < n;)
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            s[j++] = z;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    return j;
}

/* Reference encoder: every merge in rank order over every chunk. */
static size_t ref_encode(const int32_t *mg, int nm, int first, const char *text, size_t len, int32_t *ids)
{
    size_t count = 0;
    for (size_t at = 0, k; at < len; at += k) {
        k = md_bpe_chunk_len(text + at, len - at);
        int32_t s[MD_BPE_MAX_CHUNK];
        int n = (int)k;
        for (int i = 0; i < n; i++)
            s[i] = (unsigned char)text[at + i];
        for (int r = 0; r < nm && n > 1; r++)
            n = apply_merge(s, n, mg[2 * r], mg[2 * r + 1], first + r);
        memcpy(ids + count, s, sizeof(int32_t) * (size_t)n);
        count += (size_t)n;
    }
    return count;
}

typedef struct {
    int32_t s[MD_BPE_MAX_CHUNK];
    int n;
    int64_t count;
} ref_word;

typedef struct {
    int32_t a, b;
    int64_t count;
} ref_pair;

static int cmp_pair(const void *x, const void *y)
{
    const ref_pair *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    return p->b < q->b ? -1 : p->b > q->b;
}

/* Reference trainer: unique chunks by linear search, then for each merge a
 * full recount of every pair (sort and sum), the best being the highest
 * count, then the lowest a, then the lowest b. Returns the merge count. */
static int ref_train(char *const *texts, const size_t *lens, int64_t n, int first, int nm_max, int32_t *mg)
{
    int cap = 1024, nw = 0;
    ref_word *w = malloc(sizeof *w * (size_t)cap);
    for (int64_t t = 0; t < n; t++)
        for (size_t at = 0, k; at < lens[t]; at += k) {
            k = md_bpe_chunk_len(texts[t] + at, lens[t] - at);
            ref_word x = {.n = (int)k, .count = 1};
            for (size_t i = 0; i < k; i++)
                x.s[i] = (unsigned char)texts[t][at + i];
            int j = 0;
            while (j < nw && !(w[j].n == x.n && memcmp(w[j].s, x.s, sizeof(int32_t) * k) == 0))
                j++;
            if (j < nw) {
                w[j].count++;
                continue;
            }
            if (nw == cap)
                w = realloc(w, sizeof *w * (size_t)(cap *= 2));
            w[nw++] = x;
        }
    int nm = 0;
    ref_pair *p = NULL;
    size_t pcap = 0;
    for (; nm < nm_max; nm++) {
        size_t np = 0;
        for (int j = 0; j < nw; j++)
            for (int i = 0; i + 1 < w[j].n; i++) {
                if (np == pcap)
                    p = realloc(p, sizeof *p * (pcap = pcap ? 2 * pcap : 4096));
                p[np++] = (ref_pair){w[j].s[i], w[j].s[i + 1], w[j].count};
            }
        qsort(p, np, sizeof *p, cmp_pair);
        ref_pair best = {0, 0, 0};
        for (size_t i = 0; i < np;) {
            ref_pair sum = p[i];
            for (i++; i < np && cmp_pair(&p[i], &sum) == 0; i++)
                sum.count += p[i].count;
            if (sum.count > best.count)   /* sorted by (a, b): the first of a tie wins */
                best = sum;
        }
        if (best.count < 2)
            break;
        mg[2 * nm] = best.a;
        mg[2 * nm + 1] = best.b;
        for (int j = 0; j < nw; j++)
            w[j].n = apply_merge(w[j].s, w[j].n, best.a, best.b, first + nm);
    }
    free(p);
    free(w);
    return nm;
}

/* ---- checks ------------------------------------------------------------------- */

static bool round_trip(const md_bpe *bpe, const char *text, size_t len, size_t *ntok)
{
    int32_t *ids = malloc(sizeof *ids * (len + 1));
    char *back = malloc(len + 1);
    size_t n = md_bpe_encode(bpe, text, len, ids, len + 1), blen = 0;
    bool ok = n <= len && md_bpe_decode(bpe, ids, n, back, len + 1, &blen) == MD_OK && blen == len &&
              memcmp(back, text, len) == 0 && back[len] == 0;
    if (ntok)
        *ntok = n;
    free(ids);
    free(back);
    return ok;
}

static void test_chunks(void)
{
    const char *text = "a small red 7 in the  top-left corner, 12345!\n\nok  \t x";
    const char *want[] = {"a", " small", " red", " 7", " in", " the", " ", " top", "-", "left", " corner", ",",
                          " 123", "45", "!", "\n\n", "ok", "  \t", " x"};
    size_t len = strlen(text), at = 0;
    int n = 0;
    bool ok = true;
    while (at < len) {
        size_t k = md_bpe_chunk_len(text + at, len - at);
        ok = ok && n < 19 && k == strlen(want[n]) && memcmp(text + at, want[n], k) == 0;
        at += k;
        n++;
    }
    CHECK(ok && n == 19, "chunks: words keep their leading space; letters, digits (<= 3), punctuation apart");
    char big[200];
    memset(big, 'a', sizeof big);
    CHECK(md_bpe_chunk_len(big, sizeof big) == MD_BPE_MAX_CHUNK && md_bpe_chunk_len(big, 10) == 10 &&
              md_bpe_chunk_len(big, 0) == 0,
          "chunks: at most %d bytes", MD_BPE_MAX_CHUNK);
    const char *u = "\xe6\x97\xa5\xe6\x9c\xac caf\xc3\xa9\xf0\x9f\x8e\xa8";
    CHECK(md_bpe_chunk_len(u, strlen(u)) == 6 && md_bpe_chunk_len(u + 6, strlen(u) - 6) == 10,
          "chunks: UTF-8 runs (CJK, accents, emoji) count as letters");
}

/* Every chunk boundary of text is a token boundary. */
static bool respects_chunks(const md_bpe *bpe, const char *text, size_t len)
{
    int32_t *ids = malloc(sizeof *ids * (len + 1));
    size_t n = md_bpe_encode(bpe, text, len, ids, len + 1);
    size_t at = 0, next = md_bpe_chunk_len(text, len);
    bool ok = true;
    for (size_t k = 0; k < n; k++) {
        size_t l;
        md_bpe_token_bytes(bpe, ids[k], &l);
        ok = ok && at + l <= next;   /* the token ends inside or at the end of its chunk */
        at += l;
        if (at == next && at < len)
            next += md_bpe_chunk_len(text + at, len - at);
    }
    free(ids);
    return ok && at == len;
}

static void test_reference_trainer(void)
{
    /* captions plus text that stresses overlapping pairs and odd bytes */
    corpus c = make_corpus(3000, 7, false), d = make_corpus(400, 8, true);
    static const char *extra[] = {"aaaaaaaaaaaaa", "aaaa aaaa aaa", "abababababab", "!!!!!!!!", "xyxyxyx yxyx",
                                  "\xff\xfe\xff\xfe\xff", "  \n\n\t\t  ", "1111122222333334444"};
    int ne = (int)(sizeof extra / sizeof extra[0]);
    int64_t n = c.n + d.n + 40 * ne;
    char **texts = malloc(sizeof(char *) * (size_t)n);
    size_t *lens = malloc(sizeof(size_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        int64_t j = i - c.n - d.n;
        texts[i] = i < c.n ? c.text[i] : j < 0 ? d.text[i - c.n] : (char *)extra[j % ne];
        lens[i] = i < c.n ? c.len[i] : j < 0 ? d.len[i - c.n] : strlen(texts[i]);
    }
    md_bpe *bpe;
    md_status st = md_bpe_train((const char *const *)texts, lens, n, 700, NULL, &bpe);
    CHECK(st == MD_OK, "small corpus: trained (%d tokens)", bpe ? md_bpe_vocab_size(bpe) : 0);
    if (st != MD_OK)
        return;
    int nm;
    int32_t *mg = merges_of(bpe, &nm);
    int32_t *ref = malloc(sizeof *ref * 2 * 700);
    int rn = ref_train(texts, lens, n, MD_BPE_BYTES + 3, 700 - MD_BPE_BYTES - 3, ref);
    CHECK(rn == nm && memcmp(ref, mg, sizeof(int32_t) * 2 * (size_t)nm) == 0,
          "small corpus: incremental trainer == full recount, merge for merge (%d merges)", nm);
    /* every training text encodes exactly as the reference */
    bool same = true;
    int32_t a[512], b[512];
    for (int64_t i = 0; i < n && same; i++) {
        size_t ka = md_bpe_encode(bpe, texts[i], lens[i], a, 512);
        size_t kb = ref_encode(mg, nm, MD_BPE_BYTES + 3, texts[i], lens[i], b);
        same = ka == kb && memcmp(a, b, sizeof(int32_t) * ka) == 0;
    }
    CHECK(same, "small corpus: encoder == merges applied in rank order, on every text");
    free(ref);
    free(mg);
    free(texts);
    free(lens);
    md_bpe_free(bpe);
    corpus_free(&c);
    corpus_free(&d);
}

/* An open vocabulary: many distinct words, so many pairs to keep counts of. */
static void test_open_vocab(void)
{
    corpus c = make_corpus(100000, 3, true);
    md_bpe *bpe;
    double t0 = md_time_now();
    md_status st = md_bpe_train((const char *const *)c.text, c.len, c.n, 8192, NULL, &bpe);
    double t = md_time_now() - t0;
    CHECK(st == MD_OK && t < 10.0, "open vocabulary: %lld texts (%.1f MB), vocab %d in %.3f s", (long long)c.n,
          c.bytes / 1e6, bpe ? md_bpe_vocab_size(bpe) : 0, t);
    if (st != MD_OK)
        return;
    size_t ntok = 0, k;
    bool rt = true;
    for (int64_t i = 0; i < c.n && rt; i++) {
        rt = round_trip(bpe, c.text[i], c.len[i], &k);
        ntok += k;
    }
    CHECK(rt, "open vocabulary: round trip on every text (%.3f tokens per byte)", (double)ntok / (double)c.bytes);
    md_bpe_free(bpe);
    corpus_free(&c);
}

static void test_edges(void)
{
    md_bpe *bpe;
    CHECK(md_bpe_train(NULL, NULL, 0, 1000, NULL, &bpe) == MD_OK && md_bpe_vocab_size(bpe) == 259,
          "empty corpus: bytes and specials only (259 tokens)");
    CHECK(bpe && round_trip(bpe, "hello \xff\x00", 8, NULL), "empty corpus: still encodes everything");
    md_bpe_free(bpe);
    const char *one[] = {"ab", "ab", "cd"};
    CHECK(md_bpe_train(one, NULL, 3, 1000, NULL, &bpe) == MD_OK && md_bpe_vocab_size(bpe) == 260,
          "tiny corpus: stops when no pair occurs twice (260 tokens)");
    md_bpe_free(bpe);
    md_bpe_train_opts o = md_bpe_train_default_opts();
    o.min_count = 1;
    CHECK(md_bpe_train(one, NULL, 3, 1000, &o, &bpe) == MD_OK && md_bpe_vocab_size(bpe) == 261,
          "tiny corpus, min_count 1: merges pairs seen once too (261 tokens)");
    md_bpe_free(bpe);

    md_bpe *none = (md_bpe *)1;
    CHECK(md_bpe_train(one, NULL, 3, 258, NULL, &none) == MD_ERR_INVALID && !none,
          "train: vocab_size below 256 + specials refused");
    const char *bad1[] = {"<image>", "<pad>"}, *bad2[] = {"<my token>"}, *bad3[] = {"<a>", "<a>"}, *bad4[] = {""};
    const char *const *bads[] = {bad1, bad2, bad3, bad4};
    int nb[] = {2, 1, 2, 1};
    bool all = true;
    for (int i = 0; i < 4; i++) {
        o = md_bpe_train_default_opts();
        o.specials = bads[i];
        o.n_specials = nb[i];
        none = (md_bpe *)1;
        all = all && md_bpe_train(one, NULL, 3, 1000, &o, &none) == MD_ERR_INVALID && !none;
    }
    CHECK(all, "train: duplicate, spaced or empty special names refused");
}

static const char *fmt_rate(double bytes, double s)
{
    static char buf[4][32];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%.1f MB/s", bytes / 1e6 / (s > 0 ? s : 1e-9));
    return buf[k];
}

/* Malformed tokenizers: each is refused with MD_ERR_FORMAT, a NULL result
 * and a message naming the fault. */
static void test_bad_json(const char *good)
{
    md_bpe *bpe;
    CHECK(md_bpe_from_json(good, strlen(good), "good.json", &bpe) == MD_OK, "json: the reference text loads");
    md_bpe_free(bpe);
#define HEAD "{\"format\":\"medley-bpe\",\"version\":1,\"pretokenizer\":\"medley-v1\","
#define SP3 "\"specials\":[\"<pad>\",\"<bos>\",\"<eos>\"]"
    static const struct {
        const char *json, *why, *what;
    } cases[] = {
        {"{\"format\":", "invalid JSON", "truncated text"},
        {"[1, 2]", "not an array", "an array"},
        {"\"hello\"", "JSON object", "a string"},
        {HEAD "\"vocab_size\":260," SP3 "}", "needs all", "missing merges"},
        {"{\"format\":\"gpt2\",\"version\":1,\"pretokenizer\":\"medley-v1\",\"vocab_size\":259," SP3 ",\"merges\":[]}",
         "\"format\" must be", "wrong format"},
        {"{\"format\":\"medley-bpe\",\"version\":2,\"pretokenizer\":\"medley-v1\",\"vocab_size\":259," SP3
         ",\"merges\":[]}",
         "\"version\" must be", "version 2"},
        {"{\"format\":\"medley-bpe\",\"version\":1,\"pretokenizer\":\"gpt2\",\"vocab_size\":259," SP3 ",\"merges\":[]}",
         "\"pretokenizer\" must be", "unknown pre-tokenizer"},
        {HEAD "\"vocab_size\":\"259\"," SP3 ",\"merges\":[]}", "\"vocab_size\" must be", "vocab_size a string"},
        {HEAD "\"vocab_size\":260.0," SP3 ",\"merges\":[[97,98]]}", "\"vocab_size\" must be", "vocab_size 260.0"},
        {HEAD "\"vocab_size\":261," SP3 ",\"merges\":[[97,98]]}", "make 260", "vocab_size mismatch"},
        {HEAD "\"vocab_size\":260," SP3 ",\"merges\":[[300,98]]}", "integer ids in 0..259", "id past the vocab"},
        {HEAD "\"vocab_size\":261," SP3 ",\"merges\":[[259,98],[97,98]]}", "earlier token", "merge of a future id"},
        {HEAD "\"vocab_size\":260," SP3 ",\"merges\":[[259,98]]}", "earlier token", "merge of itself"},
        {HEAD "\"vocab_size\":260," SP3 ",\"merges\":[[-1,98]]}", "integer ids", "negative id"},
        {HEAD "\"vocab_size\":260," SP3 ",\"merges\":[[\"a\",98]]}", "integer ids", "id a string"},
        {HEAD "\"vocab_size\":260," SP3 ",\"merges\":[[97,98,99]]}", "[a, b]", "three parts"},
        {HEAD "\"vocab_size\":260," SP3 ",\"merges\":[97]}", "[a, b]", "a merge not an array"},
        {HEAD "\"vocab_size\":260," SP3 ",\"merges\":{\"0\":[97,98]}}", "\"merges\" must be", "merges an object"},
        {HEAD "\"vocab_size\":260," SP3 ",\"merges\":[[256,98]]}", "special token cannot", "merging <pad>"},
        {HEAD "\"vocab_size\":261," SP3 ",\"merges\":[[97,98],[97,98]]}", "already merge 0", "duplicate merge"},
        {HEAD "\"vocab_size\":260,\"specials\":[\"<pad>\",\"<bos>\",\"<eos>\",\"<eos>\"],\"merges\":[]}",
         "appears twice", "duplicate special"},
        {HEAD "\"vocab_size\":259,\"specials\":[\"<bos>\",\"<pad>\",\"<eos>\"],\"merges\":[]}", "must be <pad>",
         "fixed specials swapped"},
        {HEAD "\"vocab_size\":259,\"specials\":[\"<pad>\",\"<bos>\"],\"merges\":[]}", "array of 3 to",
         "two specials"},
        {HEAD "\"vocab_size\":260,\"specials\":[\"<pad>\",\"<bos>\",\"<eos>\",\"a b\"],\"merges\":[]}",
         "printable ASCII", "special with a space"},
        {HEAD "\"vocab_size\":260,\"specials\":[\"<pad>\",\"<bos>\",\"<eos>\",\"\"],\"merges\":[]}", "printable ASCII",
         "empty special"},
        {HEAD "\"vocab_size\":260,\"specials\":[\"<pad>\",\"<bos>\",\"<eos>\",\"x\\u0000y\"],\"merges\":[]}",
         "without NUL", "special holding NUL"},
        {HEAD "\"vocab_size\":260,\"specials\":[\"<pad>\",\"<bos>\",\"<eos>\",7],\"merges\":[]}", "without NUL",
         "special a number"},
        {HEAD "\"vocab_size\":259," SP3 ",\"merges\":[],\"extra\":1}", "unknown key", "unknown key"},
        {HEAD "\"vocab_size\":266," SP3 ",\"merges\":[[97,97],[259,259],[260,260],[261,261],[262,262],[263,263],"
              "[264,264]]}",
         "longer than 64", "a 128-byte token"},
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        md_clear_error();
        bpe = (md_bpe *)1;
        md_status st = md_bpe_from_json(cases[i].json, strlen(cases[i].json), "bad.json", &bpe);
        CHECK(st == MD_ERR_FORMAT && !bpe && strstr(md_last_error(), cases[i].why) &&
                  strstr(md_last_error(), "bad.json"),
              "json refused: %s", cases[i].what);
    }
    /* the longest legal token (64 bytes) is accepted */
    const char *ok64 = HEAD "\"vocab_size\":265," SP3
                            ",\"merges\":[[97,97],[259,259],[260,260],[261,261],[262,262],[263,263]]}";
    CHECK(md_bpe_from_json(ok64, strlen(ok64), "ok.json", &bpe) == MD_OK, "json: a 64-byte token is accepted");
    if (bpe) {
        char a64[64];
        memset(a64, 'a', 64);
        int32_t ids[4];
        size_t len;
        md_bpe_token_bytes(bpe, 264, &len);
        CHECK(md_bpe_encode(bpe, a64, 64, ids, 4) == 1 && ids[0] == 264 && len == 64,
              "json: 64 'a' encode as that one token");
        /* the encoder's worst case: 63 merges in every 64-byte chunk */
        size_t mb = (size_t)1 << 20;
        char *aa = malloc(mb);
        int32_t *out = malloc(sizeof *out * mb / 64);
        memset(aa, 'a', mb);
        double t0 = md_time_now();
        size_t n1 = md_bpe_encode(bpe, aa, mb, out, mb / 64);
        double t = md_time_now() - t0;
        CHECK(n1 == mb / 64 && out[n1 - 1] == 264 && round_trip(bpe, aa, mb, NULL),
              "worst case, 1 MiB of 'a' with doubling merges: %zu tokens, encode %s", n1, fmt_rate((double)mb, t));
        free(aa);
        free(out);
        md_bpe_free(bpe);
    }
#undef HEAD
#undef SP3
}

int main(void)
{
    md_log_set_callback(quiet_log, NULL);
    test_chunks();
    test_edges();
    test_reference_trainer();
    test_open_vocab();

    /* ---- train on 100k captions ---- */
    corpus c = make_corpus(100000, 1, false);
    const char *extra[] = {"<image>", "<video>", "<eof>"};
    md_bpe_train_opts o = md_bpe_train_default_opts();
    o.specials = extra;
    o.n_specials = 3;
    md_bpe *bpe;
    double t0 = md_time_now();
    md_status st = md_bpe_train((const char *const *)c.text, c.len, c.n, 1024, &o, &bpe);
    double t_train = md_time_now() - t0;
    CHECK(st == MD_OK && md_bpe_vocab_size(bpe) == 1024,
          "train: %lld captions (%.1f MB), vocab 1024 in %.3f s", (long long)c.n, c.bytes / 1e6, t_train);
    if (st != MD_OK)
        return check_done();
    CHECK(md_bpe_token_id(bpe, "<pad>") == MD_BPE_PAD && md_bpe_token_id(bpe, "<bos>") == MD_BPE_BOS &&
              md_bpe_token_id(bpe, "<eos>") == MD_BPE_EOS && md_bpe_token_id(bpe, "<image>") == 259 &&
              md_bpe_token_id(bpe, "<eof>") == 261 && md_bpe_token_id(bpe, "<nope>") == -1 &&
              md_bpe_n_specials(bpe) == 6,
          "specials: <pad> <bos> <eos> = 256..258, caller's from 259, unknown -1");

    /* ---- encode the corpus ---- */
    int32_t *ids = malloc(sizeof *ids * 4096);
    char back[4096];
    size_t ntok = 0;
    bool rt = true;
    t0 = md_time_now();
    for (int64_t i = 0; i < c.n; i++)
        ntok += md_bpe_encode(bpe, c.text[i], c.len[i], ids, 4096);
    double t_enc = md_time_now() - t0;
    for (int64_t i = 0; i < c.n && rt; i++)
        rt = round_trip(bpe, c.text[i], c.len[i], NULL);
    CHECK(rt, "round trip: all %lld training captions", (long long)c.n);
    double tpb = (double)ntok / (double)c.bytes;
    CHECK(tpb < 0.35, "compression: %.3f tokens per byte on the training captions (%.1f tokens per caption); "
                      "encode %s", tpb, (double)ntok / (double)c.n, fmt_rate((double)c.bytes, t_enc));

    corpus h = make_corpus(5000, 99, false);
    int nm;
    int32_t *mg = merges_of(bpe, &nm);
    size_t hn = 0;
    bool same = true, bounds = true;
    rt = true;
    for (int64_t i = 0; i < h.n; i++) {
        size_t k = md_bpe_encode(bpe, h.text[i], h.len[i], ids, 4096);
        int32_t ref[512];
        same = same && k == ref_encode(mg, nm, 262, h.text[i], h.len[i], ref) &&
               memcmp(ids, ref, sizeof(int32_t) * k) == 0;
        rt = rt && round_trip(bpe, h.text[i], h.len[i], NULL);
        bounds = bounds && respects_chunks(bpe, h.text[i], h.len[i]);
        hn += k;
    }
    CHECK(rt && same, "held-out captions: round trip, and encoder == merges in rank order");
    CHECK(bounds, "held-out captions: no token crosses a chunk boundary");
    CHECK((double)hn / (double)h.bytes < 0.35, "compression: %.3f tokens per byte on 5000 held-out captions",
          (double)hn / (double)h.bytes);
    const char *cap = "a small red 7 in the top left corner on black";
    size_t k = md_bpe_encode(bpe, cap, strlen(cap), ids, 4096);
    printf("     \"%s\" -> %zu tokens:", cap, k);
    for (size_t i = 0; i < k; i++) {
        size_t l;
        const char *b = md_bpe_token_bytes(bpe, ids[i], &l);
        printf(" [%.*s]", (int)l, b);
    }
    printf("\n");

    /* ---- any bytes ---- */
    const char *utf8 = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83"
                       "\x88 \xf0\x9f\x8e\xa8\xf0\x9f\x9a\x80 na\xc3\xafve caf\xc3\xa9 \xe2\x80\x94 ok \xf0\x9f\x91"
                       "\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb";
    CHECK(round_trip(bpe, utf8, strlen(utf8), NULL), "round trip: UTF-8 with CJK, emoji, ZWJ sequence");
    const char bad[] = "\xff\xfe\x00" "abc\x00\x80\xc3 \xed\xa0\x80 \xf8\x88\x80\x80\x80\x00";
    CHECK(round_trip(bpe, bad, sizeof bad, NULL) && round_trip(bpe, "", 0, NULL),
          "round trip: invalid UTF-8, surrogates, NUL bytes, empty text");
    CHECK(respects_chunks(bpe, utf8, strlen(utf8)) && respects_chunks(bpe, bad, sizeof bad),
          "UTF-8 and invalid bytes: no token crosses a chunk boundary");

    size_t mb = (size_t)1 << 20;
    char *rnd = malloc(mb);
    int32_t *big = malloc(sizeof *big * mb);
    int32_t *refbig = malloc(sizeof *refbig * mb);
    for (size_t i = 0; i < mb; i++)
        rnd[i] = (char)md_rand_u32_at(5, i);
    t0 = md_time_now();
    size_t nr = md_bpe_encode(bpe, rnd, mb, big, mb);
    double t_rnd = md_time_now() - t0;
    size_t nref = ref_encode(mg, nm, 262, rnd, 65536, refbig);
    CHECK(round_trip(bpe, rnd, mb, NULL) && md_bpe_encode(bpe, rnd, 65536, big, mb) == nref &&
              memcmp(big, refbig, sizeof(int32_t) * nref) == 0,
          "1 MiB random bytes: round trip (%zu tokens), first 64 KiB == reference; encode %s", nr,
          fmt_rate((double)mb, t_rnd));
    bool ok = true;
    for (int pat = 0; pat < 3; pat++) {
        static const char *const pats[] = {"a", "ab", " "};
        for (size_t i = 0; i < mb; i++)
            rnd[i] = pats[pat][i % strlen(pats[pat])];
        t0 = md_time_now();
        nr = md_bpe_encode(bpe, rnd, mb, big, mb);
        double t = md_time_now() - t0;
        ok = ok && round_trip(bpe, rnd, mb, NULL);
        printf("     1 MiB of \"%s\" repeated: %zu tokens, encode %s\n", pats[pat], nr, fmt_rate((double)mb, t));
    }
    CHECK(ok, "round trip: 1 MiB runs of one and two bytes, and of spaces");
    free(refbig);

    /* ---- cut encodes, decode with specials, token bytes ---- */
    size_t full = md_bpe_encode(bpe, cap, strlen(cap), ids, 4096);
    int32_t cut[5];
    CHECK(md_bpe_encode(bpe, cap, strlen(cap), cut, 5) == full && memcmp(cut, ids, sizeof cut) == 0 &&
              md_bpe_encode(bpe, cap, strlen(cap), NULL, 0) == full,
          "encode: max 5 keeps the first 5 ids and still returns the full count (%zu)", full);
    int32_t seq[64];
    seq[0] = MD_BPE_BOS;
    memcpy(seq + 1, ids, sizeof(int32_t) * full);
    seq[full + 1] = md_bpe_token_id(bpe, "<image>");
    seq[full + 2] = MD_BPE_EOS;
    size_t blen;
    CHECK(md_bpe_decode(bpe, seq, full + 3, back, sizeof back, &blen) == MD_OK && blen == strlen(cap) &&
              strcmp(back, cap) == 0,
          "decode: specials write nothing");
    memset(back, '#', 16);
    CHECK(md_bpe_decode(bpe, ids, full, back, 10, &blen) == MD_OK && blen == strlen(cap) &&
              memcmp(back, cap, 10) == 0 && back[10] == '#',
          "decode: cap 10 writes 10 bytes, no NUL, and reports the full length");
    int32_t badid[3] = {97, 1024, 98}, negid[1] = {-1};
    CHECK(md_bpe_decode(bpe, badid, 3, back, sizeof back, &blen) == MD_ERR_INVALID && blen == 0 &&
              md_bpe_decode(bpe, negid, 1, back, sizeof back, &blen) == MD_ERR_INVALID,
          "decode: ids outside 0..V-1 refused");
    size_t l1, l2, l3;
    const char *tb = md_bpe_token_bytes(bpe, ids[1], &l1);
    CHECK(tb && l1 == strlen(" small") && memcmp(tb, " small", l1) == 0 &&
              memcmp(md_bpe_token_bytes(bpe, MD_BPE_EOS, &l2), "<eos>", 5) == 0 && l2 == 5 &&
              !md_bpe_token_bytes(bpe, 1024, &l3) && !md_bpe_token_bytes(bpe, -1, &l3),
          "token bytes: merged, special (its name), out of range (NULL)");

    /* ---- determinism and JSON ---- */
    size_t jlen;
    char *json = md_bpe_to_json(bpe, &jlen);
    md_bpe *again;
    t0 = md_time_now();
    md_bpe_train((const char *const *)c.text, c.len, c.n, 1024, &o, &again);
    double t_train2 = md_time_now() - t0;
    char *json2 = again ? md_bpe_to_json(again, NULL) : NULL;
    CHECK(json && json2 && strcmp(json, json2) == 0, "determinism: a second training gives the same JSON "
                                                     "(%zu bytes, %.3f s)", jlen, t_train2);
    md_bpe_free(again);
    free(json2);
    md_bpe *loaded;
    CHECK(md_bpe_from_json(json, jlen, "memory", &loaded) == MD_OK, "json: loads back");
    char *json3 = loaded ? md_bpe_to_json(loaded, NULL) : NULL;
    same = json3 && strcmp(json, json3) == 0;
    for (int64_t i = 0; i < h.n && same; i++) {
        int32_t x[512], y[512];
        size_t kx = md_bpe_encode(bpe, h.text[i], h.len[i], x, 512);
        same = kx == md_bpe_encode(loaded, h.text[i], h.len[i], y, 512) && memcmp(x, y, sizeof(int32_t) * kx) == 0;
    }
    CHECK(same, "json: same JSON again, same encodes on the held-out captions");
    md_bpe_free(loaded);
    free(json3);

    /* the JSON travels in safetensors metadata */
    char path[] = "/tmp/md_test_bpe_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0)
        close(fd);
    md_st_writer *w = md_st_writer_new();
    float one = 1.0f;
    md_st_writer_add_f32(w, "x", MD_F32, 1, (int64_t[]){1}, &one);
    md_st_writer_meta(w, "tokenizer", json);
    md_st_file *f = NULL;
    loaded = NULL;
    st = md_st_writer_save(w, path);
    if (st == MD_OK)
        st = md_st_open(path, &f);
    const char *meta = f ? md_st_meta(f, "tokenizer") : NULL;
    CHECK(meta && md_bpe_from_json(meta, strlen(meta), path, &loaded) == MD_OK &&
              md_bpe_vocab_size(loaded) == 1024,
          "json: carried through safetensors __metadata__");
    md_bpe_free(loaded);
    md_st_close(f);
    md_st_writer_free(w);
    unlink(path);

    test_bad_json(json);

    printf("     timings: train %.3f s (100k captions, 1024 tokens); encode %s on captions, %s on random bytes\n",
           t_train, fmt_rate((double)c.bytes, t_enc), fmt_rate((double)mb, t_rnd));
    free(json);
    free(mg);
    free(rnd);
    free(big);
    free(ids);
    md_bpe_free(bpe);
    corpus_free(&h);
    corpus_free(&c);
    return check_done();
}
