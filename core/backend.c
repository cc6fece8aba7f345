/* backend.c — backend registry: the one file that knows which backends this
 * build has. */
#include "backend.h"

#include "cuda_info.h"
#include "kernels_cpu.h"

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

const md_backend *md_backend_default(void)
{
    const char *dev = getenv("MEDLEY_DEVICE");
    if (!dev || !*dev || strcmp(dev, "cpu") == 0)
        return &cpu_backend;
    if (strncmp(dev, "cuda", 4) == 0) {
        static int warned;
        if (!warned++) {
            const char *why = NULL;
            int n = md_cuda_device_count(&why);
            if (n == 0)
                md_log(MD_LOG_WARN, "MEDLEY_DEVICE=%s: %s; using the CPU", dev, why);
            else
                md_log(MD_LOG_WARN, "MEDLEY_DEVICE=%s: %d CUDA device%s present, but this build's CUDA "
                       "kernels are not written yet; using the CPU", dev, n, n == 1 ? "" : "s");
        }
        return &cpu_backend;
    }
    static int warned_bad;
    if (!warned_bad++)
        md_log(MD_LOG_WARN, "MEDLEY_DEVICE=%s is not cpu or cuda[:N]; using the CPU", dev);
    return &cpu_backend;
}
