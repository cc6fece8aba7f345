/* json.h — a small strict JSON reader (into a DOM) and writer.
 *
 * Usage
 * -----
 *   md_json_doc *doc;
 *   if (md_json_parse(text, len, "config.json", &doc) != MD_OK)
 *       return;                          // md_last_error() says why and where
 *   const md_json *root = md_json_root(doc);
 *   const char *name = md_json_str(md_json_get(root, "name"));   // NULL if absent
 *   for (size_t i = 0; i < md_json_len(root); i++)
 *       use(md_json_key_at(root, i), md_json_at(root, i));
 *   md_json_free(doc);                    // every value and string goes with it
 *
 *   md_json_buf b;  md_json_buf_init(&b);
 *   md_json_buf_begin_object(&b);
 *   md_json_buf_key(&b, "steps");  md_json_buf_int(&b, 1000);
 *   md_json_buf_end_object(&b);
 *   char *text = md_json_buf_finish(&b, NULL);   // caller free()s; NULL on OOM
 *
 * What "strict" means (RFC 8259, nothing more): one value, optionally
 * surrounded by spaces, tabs, CR or LF; no trailing garbage, comments,
 * trailing commas, BOM, NaN/Infinity, leading zeros or '+' signs; strings
 * hold valid UTF-8 with no raw control characters, and \uXXXX escapes
 * (surrogate pairs included) become UTF-8; a lone surrogate is an error.
 * Duplicate keys in one object are an error. Nesting is limited to
 * MD_JSON_MAX_DEPTH and input to MD_JSON_MAX_SIZE bytes, so hostile input
 * costs bounded stack and memory: each value takes 40 bytes, so the worst
 * case, an array of one-digit numbers, peaks near 60 bytes per input byte
 * (the values, plus the parse stack they are gathered on).
 *
 * Errors are logged at MD_LOG_ERROR as "<label>: invalid JSON at byte N:
 * <reason>" (N counts from 0 in the text passed in).
 *
 * Ownership: all values and strings of a document live in one pool owned by
 * the md_json_doc; pointers stay valid until md_json_free(). Accessors
 * accept NULL (and values of the wrong type) and then return NULL / 0 /
 * false, so lookups chain without checks in between. A document is
 * read-only after parsing and may be read from several threads.
 * Numbers are locale-independent in both directions.
 */
#ifndef MEDLEY_JSON_H
#define MEDLEY_JSON_H

#include "md.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_JSON_MAX_DEPTH 64                 /* nested arrays/objects */
#define MD_JSON_MAX_SIZE ((size_t)1 << 30)   /* bytes of input text */

typedef enum md_json_type {
    MD_JSON_NULL = 0,
    MD_JSON_BOOL,
    MD_JSON_NUMBER,
    MD_JSON_STRING,
    MD_JSON_ARRAY,
    MD_JSON_OBJECT
} md_json_type;

typedef struct md_json md_json;          /* one value inside a document */
typedef struct md_json_doc md_json_doc;  /* owns the pool */

/* Parses text[0..len) (need not be NUL-terminated). label names the source
 * in messages (NULL: "JSON"). On success *out is the document; on failure
 * *out is NULL and the status is MD_ERR_FORMAT (bad text) or MD_ERR_ALLOC. */
md_status md_json_parse(const char *text, size_t len, const char *label, md_json_doc **out);
void md_json_free(md_json_doc *doc);
const md_json *md_json_root(const md_json_doc *doc);

md_json_type md_json_type_of(const md_json *v);   /* MD_JSON_NULL for NULL */
const char *md_json_type_name(md_json_type t);    /* "an object", "a number", ... */
/* Byte offset of the value's first character in the parsed text. */
size_t md_json_offset(const md_json *v);

/* Arrays and objects: number of items (0 for any other value). */
size_t md_json_len(const md_json *v);
/* Item i of an array or object (members in file order); NULL if out of range. */
const md_json *md_json_at(const md_json *v, size_t i);
/* Key of member i of an object (NUL-terminated; may contain NUL if the text
 * had \u0000, see md_json_key_len_at); NULL if not an object or out of range. */
const char *md_json_key_at(const md_json *v, size_t i);
size_t md_json_key_len_at(const md_json *v, size_t i);
size_t md_json_key_offset_at(const md_json *v, size_t i);   /* of its opening quote */
/* Member named key (NULL if absent or v is not an object). Linear scan:
 * iterate with md_json_at for large objects. */
const md_json *md_json_get(const md_json *obj, const char *key);

/* String value (NUL-terminated UTF-8), or NULL if v is not a string. */
const char *md_json_str(const md_json *v);
size_t md_json_str_len(const md_json *v);         /* bytes, without the NUL */
/* Number: true and *out set if v is a number. */
bool md_json_num(const md_json *v, double *out);
/* Integer: true only if the literal was written without fraction or exponent
 * and fits int64 exactly ("3" yes; "3.0", "3e0", "1e99" no). */
bool md_json_int(const md_json *v, int64_t *out);
bool md_json_bool(const md_json *v, bool *out);
bool md_json_is_null(const md_json *v);           /* false for a NULL pointer */

/* ---- Writer ------------------------------------------------------------
 * A growing string. Commas and colons are inserted automatically: call
 * md_json_buf_key before each member value and nothing between array items.
 * Misuse (a value where a key is due, unbalanced ends, depth over
 * MD_JSON_MAX_DEPTH) is a programmer error and asserted. Out of memory
 * makes the buffer "failed": later calls do nothing and finish returns
 * NULL with MD_ERR_ALLOC. */
typedef struct md_json_buf {
    char *data;            /* NUL-terminated while not failed */
    size_t len, cap;
    bool failed;
    bool after_key;        /* a member value is due */
    int depth;
    unsigned char nitems[MD_JSON_MAX_DEPTH + 1]; /* 0/1: container has an item */
    unsigned char is_obj[MD_JSON_MAX_DEPTH + 1];
} md_json_buf;

void md_json_buf_init(md_json_buf *b);
void md_json_buf_free(md_json_buf *b);
/* Hands the text over (caller free()s it; *len_out gets its length if not
 * NULL) and resets b. NULL if an allocation failed (logged) — b is freed. */
char *md_json_buf_finish(md_json_buf *b, size_t *len_out);

void md_json_buf_begin_object(md_json_buf *b);
void md_json_buf_end_object(md_json_buf *b);
void md_json_buf_begin_array(md_json_buf *b);
void md_json_buf_end_array(md_json_buf *b);
void md_json_buf_key(md_json_buf *b, const char *key);
void md_json_buf_keyn(md_json_buf *b, const char *key, size_t n);   /* may hold NUL */
/* Strings are escaped: ", \, control characters (\n, \t, ... or \u00XX);
 * other bytes, UTF-8 included, are copied as they are. */
void md_json_buf_str(md_json_buf *b, const char *s);
void md_json_buf_strn(md_json_buf *b, const char *s, size_t n);
/* Shortest form that reads back to the same double; NaN and infinities have
 * no JSON form and are written as null. */
void md_json_buf_num(md_json_buf *b, double v);
void md_json_buf_int(md_json_buf *b, int64_t v);
void md_json_buf_bool(md_json_buf *b, bool v);
void md_json_buf_null(md_json_buf *b);
/* Appends bytes as they are (no separator logic): padding, pre-made JSON. */
void md_json_buf_raw(md_json_buf *b, const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif
