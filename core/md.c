/* md.c — status strings, logging, assertions, threads, time. */
#include "md.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *md_status_str(md_status s)
{
    switch (s) {
    case MD_OK: return "ok";
    case MD_ABORTED: return "cancelled";
    case MD_ERR: return "failed";
    case MD_ERR_ALLOC: return "out of memory";
    case MD_ERR_IO: return "input/output error";
    case MD_ERR_FORMAT: return "malformed data";
    case MD_ERR_INVALID: return "invalid argument";
    case MD_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

static md_log_fn g_log_fn;
static void *g_log_user;
static _Thread_local char g_last_error[1024];

void md_log_set_callback(md_log_fn fn, void *user)
{
    g_log_fn = fn;
    g_log_user = user;
}

void md_log(md_log_level level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (level >= MD_LOG_ERROR)
        snprintf(g_last_error, sizeof g_last_error, "%s", buf);
    if (g_log_fn) {
        g_log_fn(level, buf, g_log_user);
        return;
    }
    if (level >= MD_LOG_WARN)
        fprintf(stderr, "medley: %s%s\n", level >= MD_LOG_ERROR ? "error: " : "warning: ", buf);
}

const char *md_last_error(void) { return g_last_error; }
void md_clear_error(void) { g_last_error[0] = 0; }

static md_assert_fn g_assert_fn;

void md_assert_set_handler(md_assert_fn fn) { g_assert_fn = fn; }

void md_assert_fail(const char *file, int line, const char *expr)
{
    if (g_assert_fn) {
        g_assert_fn(file, line, expr);
        return;
    }
    fprintf(stderr, "medley: internal error: %s:%d: assertion failed: %s\n", file, line, expr);
    abort();
}

static int g_threads;
/* OpenMP's thread count is a per-thread setting: each thread that runs
 * engine work applies Medley's count once (and again after a change). */
static _Thread_local int t_applied;

static void apply_threads(void)
{
    if (t_applied != g_threads) {
        omp_set_dynamic(0);
        omp_set_num_threads(g_threads);
        t_applied = g_threads;
    }
}

/* Physical cores: distinct (package, core) pairs among online CPUs, so SMT
 * siblings do not double the count (two threads on one core's FMA units
 * only contend). Falls back to the online CPU count. */
static int physical_cores(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1)
        return 1;
    enum { MAXC = 1024 };
    static long seen[MAXC];
    int nseen = 0;
    for (long cpu = 0; cpu < online && cpu < MAXC; cpu++) {
        char path[128];
        long pkg = 0, core = -1;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/core_id", cpu);
        FILE *f = fopen(path, "r");
        if (!f || fscanf(f, "%ld", &core) != 1)
            core = -1;
        if (f)
            fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/physical_package_id", cpu);
        f = fopen(path, "r");
        if (!f || fscanf(f, "%ld", &pkg) != 1)
            pkg = 0;
        if (f)
            fclose(f);
        if (core < 0)
            return (int)online;
        long key = pkg * 65536 + core;
        bool dup = false;
        for (int i = 0; i < nseen && !dup; i++)
            dup = seen[i] == key;
        if (!dup)
            seen[nseen++] = key;
    }
    return nseen > 0 ? nseen : (int)online;
}

void md_threads_init(void)
{
    if (g_threads > 0) {
        apply_threads();
        return;
    }
    /* oneDNN allocates packing buffers on every large product. Keep freed
     * memory in the heap instead of returning it to the system, so those
     * buffers do not fault fresh pages in on every call. */
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    int n = 0;
    const char *e = getenv("MEDLEY_THREADS");
    if (e && *e) {
        char *end;
        long v = strtol(e, &end, 10);
        if (*end || v < 1 || v > 1024)
            md_log(MD_LOG_WARN, "MEDLEY_THREADS=\"%s\" is not a thread count from 1 to 1024; using the default", e);
        else
            n = (int)v;
    }
    if (n == 0)
        n = physical_cores();
    md_threads_set(n);
}

int md_threads_get(void)
{
    if (g_threads == 0)
        md_threads_init();
    return g_threads;
}

void md_threads_set(int n)
{
    if (n < 1)
        n = 1;
    g_threads = n;
    apply_threads();
}

uint64_t md_fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

double md_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

md_status md_write_file_atomic(const char *path, const void *data, size_t len)
{
    const size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        md_log(MD_LOG_ERROR, "%s: out of memory", path);
        return MD_ERR_ALLOC;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        md_log(MD_LOG_ERROR, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        free(tmp);
        return MD_ERR_IO;
    }
    bool ok = true;
    for (size_t off = 0; ok && off < len;) {
        ssize_t w = write(fd, (const char *)data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        off += ok ? (size_t)w : 0;
    }
    ok = ok && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok)
        md_log(MD_LOG_ERROR, "%s: writing %s failed: %s", path, tmp, strerror(errno));
    if (ok && rename(tmp, path) != 0) {
        md_log(MD_LOG_ERROR, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        ok = false;
    }
    if (!ok) {
        unlink(tmp);
        free(tmp);
        return MD_ERR_IO;
    }
    /* The folder entry: the data is already safe, so failure is ignored. */
    const char *slash = strrchr(path, '/');
    tmp[slash ? (slash == path ? 1 : (size_t)(slash - path)) : 0] = '\0';
    int dfd = open(slash ? tmp : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(tmp);
    return MD_OK;
}
