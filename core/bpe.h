/* bpe.h — a byte-level BPE tokenizer that Medley trains itself.
 *
 * Usage
 * -----
 *   md_bpe_train_opts o = md_bpe_train_default_opts();
 *   const char *extra[] = {"<image>", "<video>", "<eof>"};
 *   o.specials = extra;  o.n_specials = 3;           // ids 259, 260, 261
 *   md_bpe *bpe;
 *   if (md_bpe_train(captions, NULL, n, 1024, &o, &bpe) != MD_OK)
 *       return;                                       // md_last_error() says why
 *   int32_t ids[77];
 *   size_t n = md_bpe_encode(bpe, text, strlen(text), ids, 77);  // n > 77: cut
 *   size_t len;
 *   md_bpe_decode(bpe, ids, MD_MIN(n, 77), buf, sizeof buf, &len);
 *   char *json = md_bpe_to_json(bpe, NULL);           // caller free()s
 *   md_bpe_free(bpe);
 *   md_bpe_from_json(json, strlen(json), "model.safetensors", &bpe);
 *
 * Vocabulary (V = md_bpe_vocab_size, S = number of specials):
 *   [0, 256)          the bytes, so every byte string encodes and
 *                     decode(encode(x)) == x exactly, invalid UTF-8 and NUL
 *                     included;
 *   [256, 256 + S)    specials: <pad> 256, <bos> 257, <eos> 258, then the
 *                     caller's names in the order given (md_bpe_token_id);
 *   [256 + S, V)      merges in the order learned: token 256 + S + r joins
 *                     the two earlier tokens of merge r (its rank).
 * Encode never produces a special, even for text such as "<eos>" (that is
 * five bytes of text): the caller adds them around or between encodings.
 * Decode writes nothing for a special.
 *
 * Pre-tokenization ("medley-v1"): text is cut into chunks and merges never
 * cross a chunk boundary. Byte classes: letters (A-Z, a-z and every byte
 * >= 0x80, so UTF-8 words, CJK runs and emoji stay together), digits,
 * whitespace (space \t \n \v \f \r) and other (punctuation, control bytes,
 * NUL). A chunk is a run of one class; a single space before a letter,
 * digit or other run is attached to it (" red", " 7", " ,"); in a longer
 * whitespace run the last space is left to the word that follows, as in
 * GPT-2. Digit runs are cut into groups of at most 3 (numbers learn tokens of
 * 1-3 digits), and every chunk is at most MD_BPE_MAX_CHUNK bytes, which bounds
 * the work per chunk and the length of any token. Case is kept as it is.
 *
 * Training counts unique chunks, then repeatedly merges the most frequent
 * adjacent pair (ties: the lowest left id, then the lowest right id), with
 * pair counts updated incrementally over the words that hold the pair. It
 * is deterministic: the same texts and options give the same tokenizer on
 * any machine. It stops early, with a vocabulary smaller than asked, when
 * no pair occurs min_count times.
 *
 * JSON form (md_bpe_to_json; fits safetensors __metadata__ as a string):
 *   {"format": "medley-bpe", "version": 1, "pretokenizer": "medley-v1",
 *    "vocab_size": V, "specials": ["<pad>", "<bos>", "<eos>", ...],
 *    "merges": [[a, b], ...]}
 * md_bpe_from_json checks all of it: exact keys and types, the three fixed
 * specials, names (1..MD_BPE_MAX_NAME printable ASCII bytes, no space,
 * unique), each merge [a, b] naming earlier non-special tokens, no merge
 * twice, tokens at most MD_BPE_MAX_CHUNK bytes (a longer one could never
 * apply), and V == 256 + S + merges. Failures log "<label>: ..." at
 * MD_LOG_ERROR and return MD_ERR_FORMAT (MD_ERR_ALLOC on out of memory).
 *
 * Cost (one core): 100k captions of ~40 bytes to V = 1024 train in ~0.02 s,
 * 100k texts of ~60 bytes with an open vocabulary to V = 8192 in ~0.5 s.
 * Memory: ~100 bytes per distinct chunk, ~80 per distinct pair. Encode
 * allocates nothing and is linear in the text: at most MD_BPE_MAX_CHUNK^2
 * compares per chunk; ~100 MB/s on captions, ~25 MB/s in the worst case.
 *
 * Ownership and threads: an md_bpe is immutable once made; encode, decode
 * and lookups may run on several threads at once. Pointers it returns live
 * until md_bpe_free. NULL bpe or NULL buffers with non-zero sizes are
 * programmer errors (asserted).
 */
#ifndef MEDLEY_BPE_H
#define MEDLEY_BPE_H

#include "md.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_BPE_BYTES 256              /* base tokens: one per byte value */
#define MD_BPE_PAD 256                /* fixed special ids */
#define MD_BPE_BOS 257
#define MD_BPE_EOS 258
#define MD_BPE_MAX_SPECIALS 64        /* the three fixed ones included */
#define MD_BPE_MAX_NAME 32            /* bytes of a special's name */
#define MD_BPE_MAX_CHUNK 64           /* bytes of a pre-token chunk, so of a token */
#define MD_BPE_MAX_VOCAB (1 << 20)    /* ids fit int32 with room to spare */

typedef struct md_bpe md_bpe;

typedef struct md_bpe_train_opts {
    const char *const *specials;  /* caller's specials after <pad> <bos> <eos>; may be NULL */
    int n_specials;               /* 0 .. MD_BPE_MAX_SPECIALS - 3 */
    int64_t min_count;            /* stop when the best pair occurs fewer times (default 2) */
} md_bpe_train_opts;

md_bpe_train_opts md_bpe_train_default_opts(void);

/* Learns a tokenizer of at most vocab_size tokens (bytes and specials
 * included: 256 + S <= vocab_size <= MD_BPE_MAX_VOCAB) from texts[0..n).
 * lens[i] is the length of texts[i], or lens is NULL and the texts are
 * NUL-terminated. opts NULL: defaults. *out NULL on error: MD_ERR_INVALID
 * (bad sizes or special names, logged) or MD_ERR_ALLOC. */
md_status md_bpe_train(const char *const *texts, const size_t *lens, int64_t n, int vocab_size,
                       const md_bpe_train_opts *opts, md_bpe **out);
void md_bpe_free(md_bpe *bpe);   /* NULL is fine */

int md_bpe_vocab_size(const md_bpe *bpe);    /* V */
int md_bpe_n_specials(const md_bpe *bpe);    /* S >= 3 */
/* Id of the special named name ("<eos>"), or -1 (not logged). */
int32_t md_bpe_token_id(const md_bpe *bpe, const char *name);
/* Bytes of token id (for a special: its name), *len set; NULL if id is out
 * of range. Not NUL-terminated in general: a token may hold NUL bytes. */
const char *md_bpe_token_bytes(const md_bpe *bpe, int32_t id, size_t *len);

/* Length of the first pre-token chunk of text[0..len): 1..MD_BPE_MAX_CHUNK,
 * or 0 when len is 0. Exposed for tests and tools; encode uses it. */
size_t md_bpe_chunk_len(const char *text, size_t len);

/* Encodes text[0..len) (any bytes). Writes the first min(count, max) ids to
 * ids and returns count, the number of tokens of the whole text (<= len), as
 * snprintf does: count > max means the ids were cut (what a fixed context
 * wants); ids may be NULL when max is 0. Never fails. */
size_t md_bpe_encode(const md_bpe *bpe, const char *text, size_t len, int32_t *ids, size_t max);

/* Decodes ids[0..n) into buf: writes the first min(total, cap) bytes, a NUL
 * after them when total < cap, and *len_out = total (bytes of the whole
 * text). Specials write nothing. MD_ERR_INVALID (logged, *len_out 0) if an
 * id is outside [0, V); buf is then unspecified. */
md_status md_bpe_decode(const md_bpe *bpe, const int32_t *ids, size_t n, char *buf, size_t cap,
                        size_t *len_out);

/* The JSON form above, NUL-terminated; caller free()s. NULL on OOM (logged). */
char *md_bpe_to_json(const md_bpe *bpe, size_t *len_out);
/* Reads and validates text[0..len); label names the source in messages
 * (NULL: "tokenizer"). *out NULL on error. */
md_status md_bpe_from_json(const char *text, size_t len, const char *label, md_bpe **out);

#ifdef __cplusplus
}
#endif
#endif
