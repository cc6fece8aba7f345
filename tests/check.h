/* check.h — a tiny assertion kit for Medley's C tests: each CHECK prints
 * one line, failures are counted, and check_done() gives the exit status. */
#ifndef MEDLEY_CHECK_H
#define MEDLEY_CHECK_H

#include "md.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures, check_count;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        check_count++;                                                       \
        bool check_ok_ = (cond);                                             \
        if (!check_ok_) check_failures++;                                    \
        printf("%-4s ", check_ok_ ? "ok" : "FAIL");                          \
        printf(__VA_ARGS__);                                                 \
        printf("%s\n", check_ok_ ? "" : "   <-- " #cond);                    \
        fflush(stdout);                                                      \
    } while (0)

/* A log callback that drops messages, for tests that provoke errors and
 * read them with md_last_error() (install with md_log_set_callback). */
static inline void check_quiet_log(md_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)msg;
    (void)user;
}

/* buf = the bundled model `file` in $MEDLEY_MODELS_DIR (else
 * assets/models); returns buf. */
static inline const char *check_model_path(char *buf, size_t cap, const char *file)
{
    const char *m = getenv("MEDLEY_MODELS_DIR");
    snprintf(buf, cap, "%s/%s", m && *m ? m : "assets/models", file);
    return buf;
}

/* Leaves pseudo-random bytes in freed blocks of many sizes, the large ones
 * from the heap too (a freed 8 MB block raises glibc's mmap threshold), so
 * memory an encoder reads before writing it holds different bytes from save
 * to save. */
static inline void check_dirty_heap(uint64_t seed)
{
    enum { BLOCKS = 32 };
    volatile unsigned char *big = malloc((size_t)8 << 20);   /* volatile: the pair is not optimised away */
    if (big)
        big[0] = 1;
    free((void *)big);
    unsigned char *bl[BLOCKS];
    uint64_t r = seed * 977 + 1;
    for (int k = 0; k < BLOCKS; k++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        size_t sz = 64 + (size_t)(r >> 40) % (k < 8 ? 2000000 : 20000);
        bl[k] = malloc(sz);
        for (size_t j = 0; bl[k] && j < sz; j++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            bl[k][j] = (unsigned char)(r >> 56);
        }
    }
    for (int k = 0; k < BLOCKS; k++)
        free(bl[k]);
}

/* A file's bytes (malloc'd, *n of them), or NULL if it cannot be read. */
static inline unsigned char *check_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    long len = -1;
    unsigned char *b = NULL;
    if (f && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (b = malloc((size_t)len + 1)) && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    if (f)
        fclose(f);
    *n = b ? (size_t)len : 0;
    return b;
}

static inline int check_done(void)
{
    printf("%d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
