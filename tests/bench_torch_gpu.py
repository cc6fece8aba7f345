#!/usr/bin/python3
"""PyTorch CUDA baseline for bench_gpu: the same shapes, timed the same way
(CUDA events around queued work, inputs already on the device, one
warm-up run). Prints one line per case in bench_gpu's order.
Usage: bench_torch_gpu.py   (needs PyTorch with CUDA and a GPU; exits 77
without them)"""
import sys

import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    print("skipped: PyTorch sees no CUDA device")
    sys.exit(77)

dev = torch.device("cuda")
torch.manual_seed(0)


def gpu_ms(fn, reps):
    fn()
    torch.cuda.synchronize()
    e0 = torch.cuda.Event(enable_timing=True)
    e1 = torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(reps):
        fn()
    e1.record()
    torch.cuda.synchronize()
    return e0.elapsed_time(e1) / reps


def uni(shape, lo, hi):
    return torch.empty(shape, device=dev).uniform_(lo, hi)


def row(what, ms):
    print(f"torch {what:<44} gpu {ms:9.3f} ms")
    sys.stdout.flush()


with torch.no_grad():
    for n, reps in ((1024, 20), (4096, 5)):
        a, b = uni((n, n), -1, 1), uni((n, n), -1, 1)
        gflop = 2.0 * n * n * n / 1e9
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            ms = gpu_ms(lambda: torch.mm(a, b), reps)
            row(f"gemm {n}^3 {'tf32' if tf32 else 'fp32'} ({gflop / (ms / 1e3):.0f} GFLOP/s)", ms)
    torch.backends.cuda.matmul.allow_tf32 = False

    B, T, D, H = 4, 256, 512, 8
    x = uni((B, T, D), -1, 1)
    wq, wk, wv, wo = (uni((D, D), -0.05, 0.05) for _ in range(4))
    w1 = uni((4 * D, D), -0.05, 0.05)
    lw, lb = uni((D,), 0.9, 1.1), uni((D,), -0.1, 0.1)

    def block():
        h = F.layer_norm(x, (D,), lw, lb, 1e-5)
        q, k, v = (F.linear(h, w).view(B, T, H, D // H).transpose(1, 2) for w in (wq, wk, wv))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, D)
        o = F.linear(att, wo)
        return F.gelu(F.linear(o, w1))

    row("transformer block fwd B4 T256 D512 H8 causal", gpu_ms(block, 20))

    for t in (256, 1024):
        q, k, v = (uni((B, H, t, D // H), -2 if i < 2 else -1, 2 if i < 2 else 1) for i in range(3))
        row(f"attention fwd B4 T{t} H8 Dh64 causal",
            gpu_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), 20))

    cx = uni((8, 64, 64, 64), -1, 1)
    cw = uni((128, 64, 3, 3), -0.05, 0.05)
    cb = uni((128,), -0.1, 0.1)
    gw, gb = uni((128,), 0.9, 1.1), uni((128,), -0.1, 0.1)
    torch.backends.cudnn.allow_tf32 = False
    row("conv block 8x64x64x64 -> 128 k3 + groupnorm",
        gpu_ms(lambda: F.group_norm(F.conv2d(cx, cw, cb, padding=1), 32, gw, gb, 1e-5), 20))
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
