/* safetensors.h — read (mmap) and write safetensors model files.
 *
 * Format: u64 little-endian N, then N bytes of JSON header
 *   {"__metadata__": {"k": "v", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * then the data region; offsets count from the start of the data region.
 *
 * Reading
 * -------
 *   md_st_file *f;
 *   if (md_st_open("model.safetensors", &f) != MD_OK) return;  // md_last_error()
 *   md_st_read_f32(f, "enc.w", param);     // shape-checked copy into f32
 *   md_st_close(f);
 *
 * md_st_open validates the whole header before returning: sizes, JSON,
 * dtypes (F32 F16 BF16 I32 I64 U8; others such as F64 or BOOL are refused),
 * shapes (0..MD_MAX_DIMS non-negative dims, element and byte counts that fit
 * 64 bits), data_offsets (begin <= end, end - begin == numel * dtype size,
 * inside the data region, no two non-empty tensors overlapping), unique
 * names, metadata (an object of strings). The header is at most
 * MD_ST_MAX_HEADER bytes. Gaps and trailing bytes in the data region are
 * accepted. Every failure is logged at MD_LOG_ERROR naming the file and the
 * fault, and returns MD_ERR_FORMAT (MD_ERR_IO when the file cannot be opened,
 * stat'ed or mapped; MD_ERR_ALLOC on out of memory).
 *
 * The file stays mapped until md_st_close; md_st_info.data points into the
 * mapping. That pointer is aligned to the element size in files Medley
 * writes but not necessarily in others: read it with memcpy, or use
 * md_st_read_f32. A file truncated by another process while mapped can
 * raise SIGBUS; Medley writes files atomically so it never does that itself.
 *
 * Writing
 * -------
 *   md_st_writer *w = md_st_writer_new();
 *   md_st_writer_meta(w, "format", "medley");
 *   md_st_writer_add_f32(w, "enc.w", MD_BF16, 2, shape, data);
 *   md_st_writer_save(w, "model.safetensors");
 *   md_st_writer_free(w);
 * The header lists tensors in insertion order, __metadata__ first. The data
 * region holds tensors by element size, largest first (insertion order within
 * a size), with no gaps: every tensor starts aligned to its element size, the
 * data region starts at a multiple of 8 (the header is padded with spaces),
 * and the files load with the reference Python/Rust implementation, which
 * refuses gaps.
 *
 * Thread safety: an md_st_file is read-only after open and may be read from
 * several threads; a writer is used from one thread at a time.
 * Byte order: little-endian hosts only (checked at compile time).
 */
#ifndef MEDLEY_SAFETENSORS_H
#define MEDLEY_SAFETENSORS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* bytes. The reference loader allows 100 MB; the JSON DOM can take ~60
 * bytes per header byte on hostile input, so Medley stops at 16 MB (~160k
 * tensors), which bounds a hostile header to ~1 GB and ~0.5 s. */
#define MD_ST_MAX_HEADER ((uint64_t)16000000)

typedef struct md_st_file md_st_file;

typedef struct md_st_info {
    const char *name;              /* owned by the file */
    md_dtype dtype;
    int ndim;                      /* 0 (scalar) .. MD_MAX_DIMS */
    int64_t shape[MD_MAX_DIMS];    /* dims past ndim are 1 */
    const void *data;              /* nbytes inside the mapping; see alignment above */
    size_t nbytes;                 /* numel * md_dtype_size(dtype) */
} md_st_info;

/* Opens and validates path; *out NULL on error. */
md_status md_st_open(const char *path, md_st_file **out);
/* Same from memory (fuzzing, tests, embedded resources). buf must outlive
 * the file; label names it in messages. */
md_status md_st_open_memory(const void *buf, size_t len, const char *label, md_st_file **out);
void md_st_close(md_st_file *f);   /* NULL is fine */

/* Tensors in header order; i in [0, count). */
int md_st_count(const md_st_file *f);
const md_st_info *md_st_get(const md_st_file *f, int i);
/* NULL if absent (binary search; no message logged). */
const md_st_info *md_st_find(const md_st_file *f, const char *name);
/* __metadata__ value string, NULL if absent. Keys in header order. */
const char *md_st_meta(const md_st_file *f, const char *key);
int md_st_meta_count(const md_st_file *f);
const char *md_st_meta_key(const md_st_file *f, int i);

/* Copies tensor `name` into dst (f32, contiguous, allocated: asserted),
 * converting from F32/BF16/F16. The shape must match exactly (a scalar only
 * matches a 0-dim tensor). Errors (MD_ERR_FORMAT) name file, tensor and the
 * mismatch; dst is untouched then. */
md_status md_st_read_f32(const md_st_file *f, const char *name, md_tensor *dst);

/* Checks that f is a Medley model of kind `model` (metadata medley.model)
 * at format `version` (medley.version); otherwise MD_ERR_FORMAT with a
 * message naming path, using `noun` ("judge") and telling the command that
 * retrains one. */
md_status md_st_check_model(const md_st_file *f, const char *path, const char *model, const char *noun,
                            int version, const char *retrain);

typedef struct md_st_writer md_st_writer;
md_st_writer *md_st_writer_new(void);   /* NULL on OOM (logged) */
void md_st_writer_free(md_st_writer *w);
/* Adds a tensor from f32 data, converted to `store` (F32, BF16 or F16; round
 * to nearest even); data is copied now. Names must be unique and not
 * "__metadata__"; ndim 0..MD_MAX_DIMS. MD_ERR_INVALID for bad arguments. */
md_status md_st_writer_add_f32(md_st_writer *w, const char *name, md_dtype store, int ndim,
                               const int64_t *shape, const float *data);
/* Adds numel * md_dtype_size(dtype) bytes as they are; data is copied now. */
md_status md_st_writer_add_raw(md_st_writer *w, const char *name, md_dtype dtype, int ndim,
                               const int64_t *shape, const void *data);
/* Sets metadata key to value (both copied; setting a key again replaces it). */
md_status md_st_writer_meta(md_st_writer *w, const char *key, const char *value);
/* Writes PATH.tmp-XXXXXX in the same folder, fsyncs, renames over path and
 * fsyncs the folder: a crash leaves either the old file or the new one, never
 * half a file. The writer is unchanged and may be saved again. */
md_status md_st_writer_save(md_st_writer *w, const char *path);

/* Every parameter of ps, by name, stored as `store`, with metadata pairs
 * (keys[i], values[i]). */
md_status md_st_save_paramset(const char *path, md_paramset *ps, md_dtype store, int nmeta,
                              const char *const *keys, const char *const *values);
/* Loads every parameter of ps (allocated) from path. Every parameter must be
 * present with its exact shape and a float dtype; a tensor that is not a
 * parameter is an error naming it. Everything is checked before anything is
 * copied, so on error ps is unchanged. */
md_status md_st_load_paramset(const char *path, md_paramset *ps);

#ifdef __cplusplus
}
#endif
#endif
