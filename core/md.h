/* md.h — Medley's common definitions: status codes, logging, assertions.
 *
 * Two error channels (as the engine's header explains):
 *   - recoverable failures (bad files, bad user values, out of memory) come
 *     back as md_status values, with a message sent through the log callback;
 *   - programmer errors (shape mismatches between ops, NULL where the API
 *     forbids it) go through MD_ASSERT, whose handler the host may replace.
 * Library code never calls exit().
 */
#ifndef MEDLEY_MD_H
#define MEDLEY_MD_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum md_status {
    MD_OK = 0,              /* success */
    MD_ABORTED = 1,         /* stopped early by a cancel flag; not an error */
    MD_ERR = -1,            /* generic failure; the log says why */
    MD_ERR_ALLOC = -2,      /* out of memory */
    MD_ERR_IO = -3,         /* open/read/write/mmap failed */
    MD_ERR_FORMAT = -4,     /* a file's contents are malformed */
    MD_ERR_INVALID = -5,    /* an argument or user value is out of range */
    MD_ERR_UNSUPPORTED = -6 /* valid request this build or backend cannot do */
} md_status;

/* One-line description of a status code; never NULL. */
const char *md_status_str(md_status s);

typedef enum md_log_level {
    MD_LOG_DEBUG = 0,
    MD_LOG_INFO = 1,
    MD_LOG_WARN = 2,
    MD_LOG_ERROR = 3
} md_log_level;

/* The host may route messages; default prints WARN and ERROR to stderr.
 * The callback may be called from worker threads. */
typedef void (*md_log_fn)(md_log_level level, const char *msg, void *user);
void md_log_set_callback(md_log_fn fn, void *user);
void md_log(md_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Last error message logged at MD_LOG_ERROR on this thread ("" if none);
 * useful to tests and to UIs that show the reason for a failed call. */
const char *md_last_error(void);
void md_clear_error(void);

/* Programmer-error handler; default prints and aborts. A GUI host may
 * install one that saves work first. */
typedef void (*md_assert_fn)(const char *file, int line, const char *expr);
void md_assert_set_handler(md_assert_fn fn);
void md_assert_fail(const char *file, int line, const char *expr);

#define MD_ASSERT(x) \
    do { if (!(x)) md_assert_fail(__FILE__, __LINE__, #x); } while (0)

#define MD_UNUSED(x) ((void)(x))
#define MD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MD_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Threads: one OpenMP pool shared with oneDNN. Default = physical cores
 * (sysconf online CPUs); MEDLEY_THREADS overrides. md_threads_init also
 * tells malloc to keep freed memory (mmap threshold 256 MiB, trim 1 GiB),
 * so the library's per-call buffers reuse warm pages. OpenMP keeps the
 * count per thread: md_threads_init (called by md_graph_new and
 * md_graph_reset) applies it on the calling thread, so worker threads get
 * the same count as the main one. */
void md_threads_init(void);
int md_threads_get(void);
void md_threads_set(int n);

/* Monotonic seconds, for benchmarks and progress. */
/* Writes len bytes to path through path.tmp: write, fsync, rename over
 * path, fsync the folder. A crash leaves the old file or the new one, never
 * a mix. MD_ERR_IO (logged, naming the file) on failure. */
md_status md_write_file_atomic(const char *path, const void *data, size_t len);
double md_time_now(void);

/* 64-bit FNV-1a of n bytes, continuing from h (start with MD_FNV1A_INIT),
 * so a stream hashes in pieces: the identities of files, data and media. */
#define MD_FNV1A_INIT 0xcbf29ce484222325ull
uint64_t md_fnv1a(uint64_t h, const void *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif
