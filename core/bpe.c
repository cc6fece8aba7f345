/* bpe.c — byte-level BPE: pre-tokenizer, trainer, encoder, JSON form.
 *
 * A tokenizer is one allocation: the struct, then the pair table (pair ->
 * merged token, open addressing), the merges and the token bytes. Every
 * tokenizer, trained or loaded, goes through bpe_build, which validates the
 * merges, so the two paths cannot disagree about what is valid.
 *
 * Trainer: unique chunks become "words" (symbols + count). Pair counts live
 * in a hash table, each pair with the list of words that hold it (entries
 * may be stale or repeated; a word is merged at most once per step thanks to
 * a stamp). The best pair comes from a max-heap with lazy entries: merging
 * (a, b) into z only lowers the counts of existing pairs and creates pairs
 * that contain z, so an entry whose count is stale is too high, and is
 * pushed back with its real count when it reaches the top. */
#include "bpe.h"
#include "json.h"

#include <stdlib.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)
#define EMPTY_KEY UINT64_MAX   /* a pair key is a << 32 | b with a, b < 2^20 */

static const char *const k_fixed[3] = {"<pad>", "<bos>", "<eos>"};

struct md_bpe {
    int32_t n_vocab, n_special, n_merges;
    uint32_t hmask;        /* pair table size - 1 (a power of two, >= 2 * merges) */
    uint64_t *pair_key;    /* (hmask + 1): a << 32 | b, EMPTY_KEY for a free slot */
    int32_t *pair_tok;     /* (hmask + 1): token made by merging a and b */
    int32_t *merges;       /* (n_merges, 2): parts of token 256 + S + r */
    uint32_t *tok_off;     /* (V + 1): token t is tok_bytes[tok_off[t] .. tok_off[t + 1]) */
    char *tok_bytes;       /* bytes of every token; for a special, its name */
};

static inline uint32_t pair_hash(uint64_t key)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32);
}

static inline uint64_t pair_key(int32_t a, int32_t b)
{
    return (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
}

/* Token made by merging a and b (its id is 256 + S + rank), INT32_MAX if none. */
static inline int32_t bpe_lookup(const md_bpe *t, int32_t a, int32_t b)
{
    uint64_t k = pair_key(a, b);
    for (uint32_t h = pair_hash(k) & t->hmask;; h = (h + 1) & t->hmask) {
        if (t->pair_key[h] == k)
            return t->pair_tok[h];
        if (t->pair_key[h] == EMPTY_KEY)
            return INT32_MAX;
    }
}

/* ---- pre-tokenizer ----------------------------------------------------------- */

enum { CLS_LETTER, CLS_DIGIT, CLS_SPACE, CLS_OTHER };

static inline int byte_class(unsigned char c)
{
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
        return CLS_LETTER;
    if (c >= 0x80)
        return CLS_LETTER;
    if (c >= '0' && c <= '9')
        return CLS_DIGIT;
    if (c == ' ' || (c >= '\t' && c <= '\r'))
        return CLS_SPACE;
    return CLS_OTHER;
}

size_t md_bpe_chunk_len(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    if (len == 0)
        return 0;
    MD_ASSERT(text);
    size_t max = MD_MIN(len, (size_t)MD_BPE_MAX_CHUNK);
    size_t i = 0;
    int c = byte_class(s[0]);
    if (c == CLS_SPACE) {
        if (s[0] == ' ' && len > 1 && byte_class(s[1]) != CLS_SPACE) {
            i = 1;                      /* " word": the space leads the run */
            c = byte_class(s[1]);
        } else {
            size_t j = 1;
            while (j < max && byte_class(s[j]) == CLS_SPACE)
                j++;
            /* "  word": the last space goes with the word, as in GPT-2 */
            if (j < len && j >= 2 && s[j - 1] == ' ' && byte_class(s[j]) != CLS_SPACE)
                j--;
            return j;
        }
    }
    size_t lim = c == CLS_DIGIT ? MD_MIN(max, i + 3) : max;
    for (i++; i < lim && byte_class(s[i]) == c; i++) {}
    return i;
}

/* ---- building and lookups ---------------------------------------------------- */

/* 1..MD_BPE_MAX_NAME printable ASCII bytes, no space; unique, the first three
 * being <pad> <bos> <eos>. Logs "<label>: ..." and returns false otherwise. */
static bool check_names(const char *const *names, int n, const char *label)
{
    if (n < 3 || n > MD_BPE_MAX_SPECIALS) {
        md_log(MD_LOG_ERROR, "%s: %d special tokens; the limit is 3 to %d", label, n, MD_BPE_MAX_SPECIALS);
        return false;
    }
    for (int i = 0; i < n; i++) {
        const char *s = names[i];
        size_t len = s ? strlen(s) : 0;
        bool ok = len >= 1 && len <= MD_BPE_MAX_NAME;
        for (size_t k = 0; ok && k < len; k++)
            ok = s[k] > ' ' && s[k] < 0x7f;
        if (!ok) {
            md_log(MD_LOG_ERROR, "%s: special token %d (\"%.40s\") must be 1 to %d printable ASCII bytes without spaces",
                   label, i, s ? s : "(null)", MD_BPE_MAX_NAME);
            return false;
        }
        if (i < 3 && strcmp(s, k_fixed[i]) != 0) {
            md_log(MD_LOG_ERROR, "%s: special token %d is \"%s\"; ids 256-258 must be <pad> <bos> <eos>", label, i, s);
            return false;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(names[j], s) == 0) {
                md_log(MD_LOG_ERROR, "%s: special token \"%s\" appears twice (ids %d and %d)", label, s,
                       MD_BPE_BYTES + j, MD_BPE_BYTES + i);
                return false;
            }
    }
    return true;
}

/* Makes a tokenizer from specials names[0..S) and merges mg (nm, 2),
 * checking everything the header promises of the JSON form (MD_ERR_FORMAT,
 * logged with label). */
static md_status bpe_build(const char *const *names, int S, const int32_t *mg, int64_t nm, const char *label,
                           md_bpe **out)
{
    *out = NULL;
    if (!check_names(names, S, label))
        return MD_ERR_FORMAT;
    int64_t V = MD_BPE_BYTES + S + nm;
    if (nm < 0 || V > MD_BPE_MAX_VOCAB) {
        md_log(MD_LOG_ERROR, "%s: %lld tokens; the limit is %d", label, (long long)V, MD_BPE_MAX_VOCAB);
        return MD_ERR_FORMAT;
    }
    int32_t first = MD_BPE_BYTES + S;   /* first merged token */

    /* Token lengths first: they size the byte block and bound each token. */
    uint32_t *tlen = malloc(sizeof *tlen * (size_t)V);
    if (!tlen) {
        md_log(MD_LOG_ERROR, "%s: out of memory for %lld tokens", label, (long long)V);
        return MD_ERR_ALLOC;
    }
    size_t nbytes = 0;
    for (int64_t t = 0; t < V; t++) {
        if (t < MD_BPE_BYTES) {
            tlen[t] = 1;
        } else if (t < first) {
            tlen[t] = (uint32_t)strlen(names[t - MD_BPE_BYTES]);
        } else {
            int64_t r = t - first;
            int32_t a = mg[2 * r], b = mg[2 * r + 1];
            const char *why = NULL;
            if (a < 0 || b < 0 || a >= t || b >= t)
                why = "each part must be an earlier token";
            else if ((a >= MD_BPE_BYTES && a < first) || (b >= MD_BPE_BYTES && b < first))
                why = "a special token cannot be merged";
            else if (tlen[a] + tlen[b] > MD_BPE_MAX_CHUNK)
                why = "the token would be longer than " STR(MD_BPE_MAX_CHUNK) " bytes, so it could never apply";
            if (why) {
                md_log(MD_LOG_ERROR, "%s: merge %lld is [%d, %d] (making token %lld): %s", label, (long long)r, a, b,
                       (long long)t, why);
                free(tlen);
                return MD_ERR_FORMAT;
            }
            tlen[t] = tlen[a] + tlen[b];
        }
        nbytes += tlen[t];
    }

    uint32_t hsize = 16;
    while (hsize < 2 * (uint64_t)nm)
        hsize *= 2;
    /* One block: struct, then 8-byte, 4-byte and 1-byte arrays in that order. */
    size_t sz_struct = (sizeof(md_bpe) + 7) & ~(size_t)7;
    size_t total = sz_struct + sizeof(uint64_t) * hsize + sizeof(int32_t) * hsize + sizeof(int32_t) * 2 * (size_t)nm +
                   sizeof(uint32_t) * ((size_t)V + 1) + nbytes + 1;
    char *block = malloc(total);
    if (!block) {
        md_log(MD_LOG_ERROR, "%s: out of memory for a tokenizer of %lld tokens", label, (long long)V);
        free(tlen);
        return MD_ERR_ALLOC;
    }
    md_bpe *t = (md_bpe *)block;
    char *p = block + sz_struct;
    t->pair_key = (uint64_t *)p;  p += sizeof(uint64_t) * hsize;
    t->pair_tok = (int32_t *)p;   p += sizeof(int32_t) * hsize;
    t->merges = (int32_t *)p;     p += sizeof(int32_t) * 2 * (size_t)nm;
    t->tok_off = (uint32_t *)p;   p += sizeof(uint32_t) * ((size_t)V + 1);
    t->tok_bytes = p;
    t->n_vocab = (int32_t)V;
    t->n_special = S;
    t->n_merges = (int32_t)nm;
    t->hmask = hsize - 1;
    memset(t->pair_key, 0xff, sizeof(uint64_t) * hsize);
    if (nm)
        memcpy(t->merges, mg, sizeof(int32_t) * 2 * (size_t)nm);

    uint32_t off = 0;
    for (int64_t id = 0; id < V; id++) {
        t->tok_off[id] = off;
        char *dst = t->tok_bytes + off;
        if (id < MD_BPE_BYTES) {
            *dst = (char)id;
        } else if (id < first) {
            memcpy(dst, names[id - MD_BPE_BYTES], tlen[id]);
        } else {
            int32_t a = mg[2 * (id - first)], b = mg[2 * (id - first) + 1];
            memcpy(dst, t->tok_bytes + t->tok_off[a], tlen[a]);
            memcpy(dst + tlen[a], t->tok_bytes + t->tok_off[b], tlen[b]);
            uint64_t k = pair_key(a, b);
            uint32_t h = pair_hash(k) & t->hmask;
            while (t->pair_key[h] != EMPTY_KEY && t->pair_key[h] != k)
                h = (h + 1) & t->hmask;
            if (t->pair_key[h] == k) {
                md_log(MD_LOG_ERROR, "%s: merge %lld is [%d, %d], already merge %d", label, (long long)(id - first),
                       a, b, t->pair_tok[h] - first);
                free(tlen);
                free(block);
                return MD_ERR_FORMAT;
            }
            t->pair_key[h] = k;
            t->pair_tok[h] = (int32_t)id;
        }
        off += tlen[id];
    }
    t->tok_off[V] = off;
    t->tok_bytes[off] = 0;
    free(tlen);
    *out = t;
    return MD_OK;
}

void md_bpe_free(md_bpe *bpe) { free(bpe); }

int md_bpe_vocab_size(const md_bpe *bpe)
{
    MD_ASSERT(bpe);
    return bpe->n_vocab;
}

int md_bpe_n_specials(const md_bpe *bpe)
{
    MD_ASSERT(bpe);
    return bpe->n_special;
}

const char *md_bpe_token_bytes(const md_bpe *bpe, int32_t id, size_t *len)
{
    MD_ASSERT(bpe && len);
    if (id < 0 || id >= bpe->n_vocab) {
        *len = 0;
        return NULL;
    }
    *len = bpe->tok_off[id + 1] - bpe->tok_off[id];
    return bpe->tok_bytes + bpe->tok_off[id];
}

int32_t md_bpe_token_id(const md_bpe *bpe, const char *name)
{
    MD_ASSERT(bpe && name);
    size_t n = strlen(name);
    for (int32_t id = MD_BPE_BYTES; id < MD_BPE_BYTES + bpe->n_special; id++)
        if (bpe->tok_off[id + 1] - bpe->tok_off[id] == n && memcmp(bpe->tok_bytes + bpe->tok_off[id], name, n) == 0)
            return id;
    return -1;
}

/* ---- encode / decode --------------------------------------------------------- */

/* Encodes one chunk s[0..n) (n <= MD_BPE_MAX_CHUNK): merges the adjacent pair
 * of lowest rank, leftmost first, until none is left — O(n^2) compares and
 * O(n) lookups. Appends to ids while *count < max; returns the new count. */
static size_t encode_chunk(const md_bpe *t, const unsigned char *s, size_t n, int32_t *ids, size_t max, size_t count)
{
    int32_t sym[MD_BPE_MAX_CHUNK];
    int32_t pm[MD_BPE_MAX_CHUNK];   /* pm[i]: token of (sym[i], sym[i+1]), INT32_MAX if none */
    for (size_t i = 0; i < n; i++)
        sym[i] = s[i];
    if (t->n_merges > 0) {
        for (size_t i = 0; i + 1 < n; i++)
            pm[i] = bpe_lookup(t, sym[i], sym[i + 1]);
        while (n > 1) {
            size_t best = 0;
            for (size_t i = 1; i + 1 < n; i++)
                if (pm[i] < pm[best])
                    best = i;
            if (pm[best] == INT32_MAX)
                break;
            /* sym[best], sym[best + 1] -> one token; pm loses entry best + 1 */
            sym[best] = pm[best];
            memmove(sym + best + 1, sym + best + 2, sizeof(int32_t) * (n - best - 2));
            if (best + 3 <= n)
                memmove(pm + best + 1, pm + best + 2, sizeof(int32_t) * (n - best - 3));
            n--;
            if (best > 0)
                pm[best - 1] = bpe_lookup(t, sym[best - 1], sym[best]);
            if (best + 1 < n)
                pm[best] = bpe_lookup(t, sym[best], sym[best + 1]);
        }
    }
    for (size_t i = 0; i < n; i++, count++)
        if (count < max)
            ids[count] = sym[i];
    return count;
}

size_t md_bpe_encode(const md_bpe *bpe, const char *text, size_t len, int32_t *ids, size_t max)
{
    MD_ASSERT(bpe && (text || len == 0) && (ids || max == 0));
    const unsigned char *s = (const unsigned char *)text;
    size_t count = 0;
    for (size_t at = 0; at < len;) {
        size_t n = md_bpe_chunk_len(text + at, len - at);
        count = encode_chunk(bpe, s + at, n, ids, max, count);
        at += n;
    }
    return count;
}

md_status md_bpe_decode(const md_bpe *bpe, const int32_t *ids, size_t n, char *buf, size_t cap, size_t *len_out)
{
    MD_ASSERT(bpe && len_out && (ids || n == 0) && (buf || cap == 0));
    size_t total = 0;
    int32_t first = MD_BPE_BYTES + bpe->n_special;
    for (size_t k = 0; k < n; k++) {
        int32_t id = ids[k];
        if (id < 0 || id >= bpe->n_vocab) {
            md_log(MD_LOG_ERROR, "tokenizer: token id %d at position %zu is outside 0..%d", id, k, bpe->n_vocab - 1);
            *len_out = 0;
            return MD_ERR_INVALID;
        }
        if (id >= MD_BPE_BYTES && id < first)
            continue;
        size_t l = bpe->tok_off[id + 1] - bpe->tok_off[id];
        if (total < cap)
            memcpy(buf + total, bpe->tok_bytes + bpe->tok_off[id], MD_MIN(l, cap - total));
        total += l;
    }
    if (total < cap)
        buf[total] = 0;
    *len_out = total;
    return MD_OK;
}

/* ---- trainer ------------------------------------------------------------------ */

typedef struct {
    int32_t a, b;
    int64_t count;             /* sum of the counts of the words, per occurrence */
    int32_t *where;            /* words that hold or held the pair; may repeat */
    int32_t n_where, cap_where;
} pair_info;

typedef struct {
    int64_t count;             /* pair count when pushed; stale if it differs now */
    int32_t a, b, pi;
} heap_ent;

typedef struct {
    /* words: unique chunks, symbols of word w at sym[woff[w] .. + wlen[w]) */
    int32_t *sym;
    size_t n_sym, cap_sym;
    size_t *woff;
    uint8_t *wlen;             /* <= MD_BPE_MAX_CHUNK */
    int64_t *wcount;
    int32_t *stamp;            /* last merge step that rewrote the word */
    int32_t n_words, cap_words;
    int32_t *wtab;             /* (wmask + 1) chunk hash -> word, -1 free */
    uint32_t wmask;
    /* pairs */
    pair_info *pairs;
    int32_t n_pairs, cap_pairs;
    uint64_t *ptab_key;        /* (pmask + 1) pair key, EMPTY_KEY free */
    int32_t *ptab_val;         /* (pmask + 1) index into pairs */
    uint32_t pmask;
    heap_ent *heap;
    size_t n_heap, cap_heap;
    int32_t *fresh;            /* pairs created in the current merge step */
    int32_t n_fresh, cap_fresh;
} trainer;

/* Grows *p (elements of size el) to hold need; false on OOM. */
static bool grow(void *pp, size_t *cap, size_t need, size_t el)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(*(void **)pp, c * el);
    if (!q)
        return false;
    *(void **)pp = q;
    *cap = c;
    return true;
}

static bool grow32(void *pp, int32_t *cap, size_t need, size_t el)
{
    size_t c = (size_t)*cap;
    if (need > INT32_MAX || !grow(pp, &c, need, el))
        return false;
    *cap = (int32_t)MD_MIN(c, (size_t)INT32_MAX);
    return true;
}

static uint64_t bytes_hash(const unsigned char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* Counts one chunk as a word; false on OOM or too many words. */
static bool add_chunk(trainer *T, const unsigned char *s, size_t n)
{
    uint32_t h = (uint32_t)bytes_hash(s, n) & T->wmask;
    for (;; h = (h + 1) & T->wmask) {
        int32_t w = T->wtab[h];
        if (w < 0)
            break;
        if (T->wlen[w] == n) {
            const int32_t *ws = T->sym + T->woff[w];
            size_t i = 0;
            while (i < n && ws[i] == s[i])
                i++;
            if (i == n) {
                T->wcount[w]++;
                return true;
            }
        }
    }
    if (T->n_words == INT32_MAX / 2)
        return false;
    int32_t w = T->n_words;
    size_t cw = (size_t)T->cap_words;
    if ((size_t)w + 1 > cw) {
        size_t c1 = cw, c2 = cw, c3 = cw, c4 = cw;
        if (!grow(&T->woff, &c1, (size_t)w + 1, sizeof *T->woff) ||
            !grow(&T->wlen, &c2, (size_t)w + 1, sizeof *T->wlen) ||
            !grow(&T->wcount, &c3, (size_t)w + 1, sizeof *T->wcount) ||
            !grow(&T->stamp, &c4, (size_t)w + 1, sizeof *T->stamp))
            return false;
        T->cap_words = (int32_t)MD_MIN(MD_MIN(c1, c2), MD_MIN(c3, c4));
    }
    if (!grow(&T->sym, &T->cap_sym, T->n_sym + n, sizeof *T->sym))
        return false;
    T->woff[w] = T->n_sym;
    T->wlen[w] = (uint8_t)n;
    T->wcount[w] = 1;
    T->stamp[w] = -1;
    for (size_t i = 0; i < n; i++)
        T->sym[T->n_sym + i] = s[i];
    T->n_sym += n;
    T->wtab[h] = w;
    T->n_words++;
    if ((uint32_t)T->n_words * 2 > T->wmask) {   /* keep the load under 1/2 */
        uint32_t size = (T->wmask + 1) * 2;
        int32_t *tab = malloc(sizeof *tab * size);
        if (!tab)
            return false;
        memset(tab, 0xff, sizeof *tab * size);
        for (int32_t v = 0; v < T->n_words; v++) {
            const int32_t *ws = T->sym + T->woff[v];
            unsigned char tmp[MD_BPE_MAX_CHUNK];
            for (int i = 0; i < T->wlen[v]; i++)
                tmp[i] = (unsigned char)ws[i];
            uint32_t g = (uint32_t)bytes_hash(tmp, T->wlen[v]) & (size - 1);
            while (tab[g] >= 0)
                g = (g + 1) & (size - 1);
            tab[g] = v;
        }
        free(T->wtab);
        T->wtab = tab;
        T->wmask = size - 1;
    }
    return true;
}

/* Index of pair (a, b), created with count 0 if absent; -1 on OOM. */
static int32_t pair_get(trainer *T, int32_t a, int32_t b)
{
    uint64_t k = pair_key(a, b);
    uint32_t h = pair_hash(k) & T->pmask;
    for (; T->ptab_key[h] != EMPTY_KEY; h = (h + 1) & T->pmask)
        if (T->ptab_key[h] == k)
            return T->ptab_val[h];
    if (!grow32(&T->pairs, &T->cap_pairs, (size_t)T->n_pairs + 1, sizeof *T->pairs) ||
        !grow32(&T->fresh, &T->cap_fresh, (size_t)T->n_fresh + 1, sizeof *T->fresh))
        return -1;
    int32_t pi = T->n_pairs++;
    T->pairs[pi] = (pair_info){.a = a, .b = b};
    T->fresh[T->n_fresh++] = pi;
    T->ptab_key[h] = k;
    T->ptab_val[h] = pi;
    if ((uint32_t)T->n_pairs * 2 > T->pmask) {
        uint32_t size = (T->pmask + 1) * 2;
        uint64_t *keys = malloc(sizeof *keys * size);
        int32_t *vals = malloc(sizeof *vals * size);
        if (!keys || !vals) {
            free(keys);
            free(vals);
            return -1;
        }
        memset(keys, 0xff, sizeof *keys * size);
        for (int32_t q = 0; q < T->n_pairs; q++) {
            uint64_t kq = pair_key(T->pairs[q].a, T->pairs[q].b);
            uint32_t g = pair_hash(kq) & (size - 1);
            while (keys[g] != EMPTY_KEY)
                g = (g + 1) & (size - 1);
            keys[g] = kq;
            vals[g] = q;
        }
        free(T->ptab_key);
        free(T->ptab_val);
        T->ptab_key = keys;
        T->ptab_val = vals;
        T->pmask = size - 1;
    }
    return pi;
}

/* count(a, b) += delta; a positive delta also records that word w holds it. */
static bool pair_add(trainer *T, int32_t a, int32_t b, int64_t delta, int32_t w)
{
    int32_t pi = pair_get(T, a, b);
    if (pi < 0)
        return false;
    pair_info *p = &T->pairs[pi];
    p->count += delta;
    if (delta > 0 && (p->n_where == 0 || p->where[p->n_where - 1] != w)) {
        if (!grow32(&p->where, &p->cap_where, (size_t)p->n_where + 1, sizeof *p->where))
            return false;
        p->where[p->n_where++] = w;
    }
    return true;
}

/* x ranks above y: higher count, then lower a, then lower b. */
static inline bool heap_above(const heap_ent *x, const heap_ent *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    return x->a != y->a ? x->a < y->a : x->b < y->b;
}

static bool heap_push(trainer *T, int32_t pi)
{
    if (!grow(&T->heap, &T->cap_heap, T->n_heap + 1, sizeof *T->heap))
        return false;
    const pair_info *p = &T->pairs[pi];
    heap_ent e = {p->count, p->a, p->b, pi};
    size_t i = T->n_heap++;
    while (i > 0 && heap_above(&e, &T->heap[(i - 1) / 2])) {
        T->heap[i] = T->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    T->heap[i] = e;
    return true;
}

static heap_ent heap_pop(trainer *T)
{
    heap_ent top = T->heap[0], e = T->heap[--T->n_heap];
    size_t n = T->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_above(&T->heap[c + 1], &T->heap[c]))
            c++;
        if (!heap_above(&T->heap[c], &e))
            break;
        T->heap[i] = T->heap[c];
        i = c;
    }
    if (n)
        T->heap[i] = e;
    return top;
}

/* Rewrites every (a, b) in word w as z, left to right without overlap, and
 * moves the counts of the neighbouring pairs onto the pairs with z. */
static bool merge_word(trainer *T, int32_t w, int32_t a, int32_t b, int32_t z)
{
    int32_t *s = T->sym + T->woff[w];
    int n = T->wlen[w], j = 0;
    int64_t c = T->wcount[w];
    for (int i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            /* s[j - 1] is already rewritten, so "a b a b" gives (z, z) */
            if (j > 0 && (!pair_add(T, s[j - 1], a, -c, w) || !pair_add(T, s[j - 1], z, c, w)))
                return false;
            if (i + 2 < n && (!pair_add(T, b, s[i + 2], -c, w) || !pair_add(T, z, s[i + 2], c, w)))
                return false;
            s[j++] = z;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    }
    T->wlen[w] = (uint8_t)j;
    return true;
}

static void trainer_free(trainer *T)
{
    for (int32_t i = 0; i < T->n_pairs; i++)
        free(T->pairs[i].where);
    free(T->pairs);
    free(T->ptab_key);
    free(T->ptab_val);
    free(T->heap);
    free(T->fresh);
    free(T->sym);
    free(T->woff);
    free(T->wlen);
    free(T->wcount);
    free(T->stamp);
    free(T->wtab);
}

/* Learns up to nm_max merges into mg (nm_max, 2); *nm gets the number. */
static bool learn(trainer *T, const char *const *texts, const size_t *lens, int64_t n, int first, int64_t nm_max,
                  int64_t min_count, int32_t *mg, int64_t *nm)
{
    *nm = 0;
    T->wmask = 1023;
    T->pmask = 1023;
    T->wtab = malloc(sizeof *T->wtab * 1024);
    T->ptab_key = malloc(sizeof *T->ptab_key * 1024);
    T->ptab_val = malloc(sizeof *T->ptab_val * 1024);
    if (!T->wtab || !T->ptab_key || !T->ptab_val)
        return false;
    memset(T->wtab, 0xff, sizeof *T->wtab * 1024);
    memset(T->ptab_key, 0xff, sizeof *T->ptab_key * 1024);

    for (int64_t i = 0; i < n; i++) {
        const char *s = texts[i];
        size_t len = lens ? lens[i] : s ? strlen(s) : 0;
        MD_ASSERT(s || len == 0);
        for (size_t at = 0, k; at < len; at += k) {
            k = md_bpe_chunk_len(s + at, len - at);
            if (!add_chunk(T, (const unsigned char *)s + at, k))
                return false;
        }
    }
    for (int32_t w = 0; w < T->n_words; w++) {
        const int32_t *s = T->sym + T->woff[w];
        for (int i = 0; i + 1 < T->wlen[w]; i++)
            if (!pair_add(T, s[i], s[i + 1], T->wcount[w], w))
                return false;
    }
    for (int32_t pi = 0; pi < T->n_pairs; pi++)
        if (T->pairs[pi].count >= min_count && !heap_push(T, pi))
            return false;

    while (*nm < nm_max && T->n_heap > 0) {
        heap_ent e = heap_pop(T);
        pair_info *p = &T->pairs[e.pi];
        if (p->count != e.count) {   /* stale: only ever too high */
            if (p->count >= min_count && !heap_push(T, e.pi))
                return false;
            continue;
        }
        int32_t z = first + (int32_t)*nm;
        mg[2 * *nm] = e.a;
        mg[2 * *nm + 1] = e.b;
        int32_t step = (int32_t)(*nm)++;
        /* new pairs all contain z, so p->where does not grow during the loop;
         * p itself may move when T->pairs grows */
        int32_t *where = p->where, n_where = p->n_where;
        T->n_fresh = 0;
        for (int32_t k = 0; k < n_where; k++) {
            int32_t w = where[k];
            if (T->stamp[w] == step)
                continue;
            T->stamp[w] = step;
            if (!merge_word(T, w, e.a, e.b, z))
                return false;
        }
        p = &T->pairs[e.pi];
        p->count = 0;
        free(p->where);
        p->where = NULL;
        p->n_where = p->cap_where = 0;
        for (int32_t k = 0; k < T->n_fresh; k++)
            if (T->pairs[T->fresh[k]].count >= min_count && !heap_push(T, T->fresh[k]))
                return false;
    }
    return true;
}

md_bpe_train_opts md_bpe_train_default_opts(void)
{
    return (md_bpe_train_opts){.specials = NULL, .n_specials = 0, .min_count = 2};
}

md_status md_bpe_train(const char *const *texts, const size_t *lens, int64_t n, int vocab_size,
                       const md_bpe_train_opts *opts, md_bpe **out)
{
    MD_ASSERT(out && n >= 0 && (texts || n == 0));
    *out = NULL;
    md_bpe_train_opts o = opts ? *opts : md_bpe_train_default_opts();
    if (o.n_specials < 0 || o.n_specials > MD_BPE_MAX_SPECIALS - 3 || (o.n_specials > 0 && !o.specials)) {
        md_log(MD_LOG_ERROR, "tokenizer training: %d caller specials; the limit is 0 to %d", o.n_specials,
               MD_BPE_MAX_SPECIALS - 3);
        return MD_ERR_INVALID;
    }
    const char *names[MD_BPE_MAX_SPECIALS];
    int S = 3 + o.n_specials;
    for (int i = 0; i < S; i++)
        names[i] = i < 3 ? k_fixed[i] : o.specials[i - 3];
    if (!check_names(names, S, "tokenizer training"))
        return MD_ERR_INVALID;
    int first = MD_BPE_BYTES + S;
    if (vocab_size < first || vocab_size > MD_BPE_MAX_VOCAB) {
        md_log(MD_LOG_ERROR, "tokenizer training: vocabulary size %d must be %d (256 bytes + %d specials) to %d",
               vocab_size, first, S, MD_BPE_MAX_VOCAB);
        return MD_ERR_INVALID;
    }
    if (o.min_count < 1)
        o.min_count = 1;

    int64_t nm_max = vocab_size - first, nm = 0;
    int32_t *mg = malloc(sizeof *mg * 2 * (size_t)MD_MAX(nm_max, 1));
    trainer T = {0};
    bool ok = mg && learn(&T, texts, lens, n, first, nm_max, o.min_count, mg, &nm);
    trainer_free(&T);
    if (!ok) {
        free(mg);
        md_log(MD_LOG_ERROR, "tokenizer training: out of memory (%lld texts)", (long long)n);
        return MD_ERR_ALLOC;
    }
    md_status st = bpe_build(names, S, mg, nm, "tokenizer training", out);
    free(mg);
    return st;
}

/* ---- JSON form ---------------------------------------------------------------- */

char *md_bpe_to_json(const md_bpe *bpe, size_t *len_out)
{
    MD_ASSERT(bpe);
    md_json_buf b;
    md_json_buf_init(&b);
    md_json_buf_begin_object(&b);
    md_json_buf_key(&b, "format");        md_json_buf_str(&b, "medley-bpe");
    md_json_buf_key(&b, "version");       md_json_buf_int(&b, 1);
    md_json_buf_key(&b, "pretokenizer");  md_json_buf_str(&b, "medley-v1");
    md_json_buf_key(&b, "vocab_size");    md_json_buf_int(&b, bpe->n_vocab);
    md_json_buf_key(&b, "specials");
    md_json_buf_begin_array(&b);
    for (int32_t id = MD_BPE_BYTES; id < MD_BPE_BYTES + bpe->n_special; id++)
        md_json_buf_strn(&b, bpe->tok_bytes + bpe->tok_off[id], bpe->tok_off[id + 1] - bpe->tok_off[id]);
    md_json_buf_end_array(&b);
    md_json_buf_key(&b, "merges");
    md_json_buf_begin_array(&b);
    for (int32_t r = 0; r < bpe->n_merges; r++) {
        md_json_buf_begin_array(&b);
        md_json_buf_int(&b, bpe->merges[2 * r]);
        md_json_buf_int(&b, bpe->merges[2 * r + 1]);
        md_json_buf_end_array(&b);
    }
    md_json_buf_end_array(&b);
    md_json_buf_end_object(&b);
    return md_json_buf_finish(&b, len_out);
}

/* Value of key that must be a string equal to want; logs otherwise. */
static bool json_expect_str(const md_json *root, const char *key, const char *want, const char *label)
{
    const md_json *v = md_json_get(root, key);
    const char *s = md_json_str(v);
    if (!s || strcmp(s, want) != 0 || md_json_str_len(v) != strlen(want)) {
        md_log(MD_LOG_ERROR, "%s: \"%s\" must be \"%s\" (found %s)", label, key, want,
               v ? (s ? "another string" : md_json_type_name(md_json_type_of(v))) : "nothing");
        return false;
    }
    return true;
}

static bool json_expect_int(const md_json *root, const char *key, int64_t lo, int64_t hi, int64_t *out,
                            const char *label)
{
    const md_json *v = md_json_get(root, key);
    if (!md_json_int(v, out) || *out < lo || *out > hi) {
        md_log(MD_LOG_ERROR, "%s: \"%s\" must be an integer in %lld..%lld", label, key, (long long)lo,
               (long long)hi);
        return false;
    }
    return true;
}

md_status md_bpe_from_json(const char *text, size_t len, const char *label, md_bpe **out)
{
    MD_ASSERT(out && (text || len == 0));
    *out = NULL;
    if (!label)
        label = "tokenizer";
    md_json_doc *doc;
    md_status st = md_json_parse(text, len, label, &doc);
    if (st != MD_OK)
        return st;
    const md_json *root = md_json_root(doc);
    const md_json *specials = md_json_get(root, "specials"), *merges = md_json_get(root, "merges");
    const char *names[MD_BPE_MAX_SPECIALS];
    int32_t *mg = NULL;
    int64_t version, vocab;
    st = MD_ERR_FORMAT;

    if (md_json_type_of(root) != MD_JSON_OBJECT) {
        md_log(MD_LOG_ERROR, "%s: a tokenizer is a JSON object, not %s", label,
               md_json_type_name(md_json_type_of(root)));
        goto done;
    }
    static const char *const keys[] = {"format", "version", "pretokenizer", "vocab_size", "specials", "merges"};
    for (size_t i = 0; i < md_json_len(root); i++) {
        const char *k = md_json_key_at(root, i);
        size_t j = 0;
        while (j < 6 && (strcmp(k, keys[j]) != 0 || md_json_key_len_at(root, i) != strlen(keys[j])))
            j++;
        if (j == 6) {
            md_log(MD_LOG_ERROR, "%s: unknown key \"%.40s\"", label, k);
            goto done;
        }
    }
    if (md_json_len(root) != 6) {
        md_log(MD_LOG_ERROR, "%s: a tokenizer needs all of format, version, pretokenizer, vocab_size, specials, merges",
               label);
        goto done;
    }
    if (!json_expect_str(root, "format", "medley-bpe", label) ||
        !json_expect_int(root, "version", 1, 1, &version, label) ||
        !json_expect_str(root, "pretokenizer", "medley-v1", label) ||
        !json_expect_int(root, "vocab_size", MD_BPE_BYTES + 3, MD_BPE_MAX_VOCAB, &vocab, label))
        goto done;
    size_t S = md_json_len(specials);
    if (md_json_type_of(specials) != MD_JSON_ARRAY || S < 3 || S > MD_BPE_MAX_SPECIALS) {
        md_log(MD_LOG_ERROR, "%s: \"specials\" must be an array of 3 to %d names", label, MD_BPE_MAX_SPECIALS);
        goto done;
    }
    for (size_t i = 0; i < S; i++) {
        const md_json *v = md_json_at(specials, i);
        names[i] = md_json_str(v);
        if (!names[i] || strlen(names[i]) != md_json_str_len(v)) {
            md_log(MD_LOG_ERROR, "%s: special token %zu must be a string without NUL", label, i);
            goto done;
        }
    }
    size_t nm = md_json_len(merges);
    if (md_json_type_of(merges) != MD_JSON_ARRAY || nm > MD_BPE_MAX_VOCAB) {
        md_log(MD_LOG_ERROR, "%s: \"merges\" must be an array of at most %d [a, b] pairs", label, MD_BPE_MAX_VOCAB);
        goto done;
    }
    if ((int64_t)(MD_BPE_BYTES + S + nm) != vocab) {
        md_log(MD_LOG_ERROR, "%s: vocab_size is %lld but 256 bytes + %zu specials + %zu merges make %zu", label,
               (long long)vocab, S, nm, MD_BPE_BYTES + S + nm);
        goto done;
    }
    mg = malloc(sizeof *mg * 2 * (nm ? nm : 1));
    if (!mg) {
        md_log(MD_LOG_ERROR, "%s: out of memory for %zu merges", label, nm);
        st = MD_ERR_ALLOC;
        goto done;
    }
    for (size_t r = 0; r < nm; r++) {
        const md_json *m = md_json_at(merges, r);
        int64_t a, b;
        if (md_json_type_of(m) != MD_JSON_ARRAY || md_json_len(m) != 2 || !md_json_int(md_json_at(m, 0), &a) ||
            !md_json_int(md_json_at(m, 1), &b) || a < 0 || b < 0 || a >= vocab || b >= vocab) {
            md_log(MD_LOG_ERROR, "%s: merge %zu (byte %zu) must be [a, b] with integer ids in 0..%lld", label, r,
                   md_json_offset(m), (long long)vocab - 1);
            goto done;
        }
        mg[2 * r] = (int32_t)a;
        mg[2 * r + 1] = (int32_t)b;
    }
    st = bpe_build(names, (int)S, mg, (int64_t)nm, label, out);
done:
    free(mg);
    md_json_free(doc);
    return st;
}
