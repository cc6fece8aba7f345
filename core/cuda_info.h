/* cuda_info.h — what CUDA devices this machine has, for `medley info
 * --devices` and for backend selection. Built only with the `cuda` meson
 * feature; without it every call reports zero devices. Never fails hard: a
 * missing driver or a busy GPU is a count of 0 and a reason. */
#ifndef MEDLEY_CUDA_INFO_H
#define MEDLEY_CUDA_INFO_H

#include "md.h"

typedef struct md_cuda_device {
    char name[256];
    int major, minor;            /* compute capability */
    size_t memory_bytes;
    int multiprocessors;
} md_cuda_device;

/* true when this binary was built with CUDA. */
bool md_cuda_built(void);
/* Number of usable devices (0 when none, no driver, or not built); when 0,
 * *why (may be NULL) points to a static explanation. */
int md_cuda_device_count(const char **why);
md_status md_cuda_device_info(int index, md_cuda_device *out);

#endif
