#!/usr/bin/python3
"""PyTorch CPU baseline for bench_engine: the same blocks and shapes,
forward+backward, timed the same way. Prints one JSON object.
Usage: bench_torch.py THREADS ITERS
bench_engine runs it with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset,
OMP_WAIT_POLICY=passive and jemalloc preloaded with decay off (it keeps
freed memory; with its default decay PyTorch runs 6x slower here), in the
baseline's command alone."""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(sys.argv[1])
iters = int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)


class Block(nn.Module):
    def __init__(self, d, heads, causal):
        super().__init__()
        self.h, self.causal = heads, causal
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).chunk(3, -1)
        q, k, v = (t.reshape(B, T, self.h, D // self.h).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-1, -2) / (D // self.h) ** 0.5
        if self.causal:
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        a = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n1, self.n2 = nn.GroupNorm(32, c, eps=1e-6), nn.GroupNorm(32, c, eps=1e-6)
        self.c1, self.c2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        h = self.c1(F.silu(self.n1(x)))
        h = self.c2(F.silu(self.n2(h)))
        return x + h


def bench(model, x):
    dy = torch.randn_like(model(x))
    times = []
    for i in range(iters + 2):
        t0 = time.perf_counter()
        for p in model.parameters():
            p.grad = None
        xx = x.detach().requires_grad_(True)
        model(xx).backward(dy)
        times.append(time.perf_counter() - t0)
    times = sorted(times[2:])
    return times[len(times) // 2]


a = torch.randn(1024, 1024)
b = torch.randn(1024, 1024)
for _ in range(3):
    a @ b
t0 = time.perf_counter()
for _ in range(10):
    a @ b
gemm = 10 * 2 * 1024 ** 3 / (time.perf_counter() - t0) / 1e9

out = {
    "threads": torch.get_num_threads(),
    "sgemm_gflops": gemm,
    "tblock_full_s": bench(Block(256, 4, False), torch.randn(16, 256, 256)),
    "tblock_causal_s": bench(Block(256, 4, True), torch.randn(16, 256, 256)),
    "resblock_s": bench(ResBlock(64), torch.randn(16, 64, 32, 32)),
}
print(json.dumps(out))
