/* cuda_info.c — see cuda_info.h. Compiled with MEDLEY_HAVE_CUDA when the
 * cuda feature found the toolkit; the runtime API is only queried, no
 * kernels are launched here. */
#include "cuda_info.h"

#include <stdio.h>
#include <string.h>

#ifdef MEDLEY_HAVE_CUDA
#include <cuda_runtime_api.h>

bool md_cuda_built(void) { return true; }

int md_cuda_device_count(const char **why)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why)
            *why = cudaGetErrorString(e);
        return 0;
    }
    if (n == 0 && why)
        *why = "no CUDA device";
    return n;
}

md_status md_cuda_device_info(int index, md_cuda_device *out)
{
    memset(out, 0, sizeof *out);
    struct cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, index);
    if (e != cudaSuccess) {
        md_log(MD_LOG_ERROR, "CUDA device %d: %s", index, cudaGetErrorString(e));
        return MD_ERR;
    }
    snprintf(out->name, sizeof out->name, "%s", p.name);
    out->major = p.major;
    out->minor = p.minor;
    out->memory_bytes = p.totalGlobalMem;
    out->multiprocessors = p.multiProcessorCount;
    return MD_OK;
}

#else

bool md_cuda_built(void) { return false; }

int md_cuda_device_count(const char **why)
{
    if (why)
        *why = "this build has no CUDA support (meson -Dcuda=enabled with the CUDA toolkit)";
    return 0;
}

md_status md_cuda_device_info(int index, md_cuda_device *out)
{
    (void)index;
    memset(out, 0, sizeof *out);
    md_log(MD_LOG_ERROR, "this build has no CUDA support");
    return MD_ERR_UNSUPPORTED;
}

#endif
