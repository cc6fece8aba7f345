/* backend.c — backend registry: the one file that knows which backends this
 * build has. */
#include "backend.h"

#include "cuda_info.h"
#include "kernels_cpu.h"
#if defined(MEDLEY_HAVE_CUDA) && !defined(MEDLEY_CUDA_NO_KERNELS)
#include "cuda/md_cuda.h"
#endif

#include <stdlib.h>
#include <string.h>

static const md_backend cpu_backend = {
    .name = "cpu",
    .gemm = md_cpu_gemm,
    .gemm_batched = md_cpu_gemm_batched,
    .layernorm_fwd = md_cpu_layernorm_fwd,
    .softmax_fwd = md_cpu_softmax_fwd,
};

const md_backend *md_backend_cpu(void) { return &cpu_backend; }

int md_backend_device(const md_backend *be)
{
    if (!be || be == &cpu_backend || strncmp(be->name, "cuda:", 5) != 0)
        return -1;
    return atoi(be->name + 5);
}

const md_backend *md_backend_default(void)
{
    const char *dev = getenv("MEDLEY_DEVICE");
    if (!dev || !*dev || strcmp(dev, "cpu") == 0)
        return &cpu_backend;
    /* "cuda" is device 0; "cuda:N" device N. */
    int index = -1;
    if (strcmp(dev, "cuda") == 0) {
        index = 0;
    } else if (strncmp(dev, "cuda:", 5) == 0 && dev[5]) {
        char *end = NULL;
        long v = strtol(dev + 5, &end, 10);
        if (*end == '\0' && v >= 0 && v < 1024)
            index = (int)v;
    }
    if (index >= 0) {
#if defined(MEDLEY_HAVE_CUDA) && !defined(MEDLEY_CUDA_NO_KERNELS)
        const md_backend *be = md_cuda_backend(index);   /* opened once; logs why not */
        if (be)
            return be;
        static int warned_open;
        if (!warned_open++)
            md_log(MD_LOG_WARN, "MEDLEY_DEVICE=%s: the device cannot be used; using the CPU", dev);
#else
        static int warned;
        if (!warned++) {
            const char *why = NULL;
            md_cuda_device_count(&why);
            md_log(MD_LOG_WARN, "MEDLEY_DEVICE=%s: %s; using the CPU", dev, why);
        }
#endif
        return &cpu_backend;
    }
    static int warned_bad;
    if (!warned_bad++)
        md_log(MD_LOG_WARN, "MEDLEY_DEVICE=%s is not cpu or cuda[:N]; using the CPU", dev);
    return &cpu_backend;
}
