#!/usr/bin/python3
"""Replays adamw_dump's run with torch.optim.AdamW and clip_grad_norm_.

Usage: test_adamw_torch.py DUMP.bin   (format: comment at the top of
adamw_dump.c). Runs in float32 like Medley. Hyperparameters and lrs are
passed to torch as the exact float32 values Medley used, so both sides round
the same scalars. Each compared array must satisfy
    max|medley - torch| <= TOL * max|torch|
Exit status: 0 all match, 1 a mismatch, 77 PyTorch missing (skip).
"""
import struct
import sys

try:
    import numpy as np
    import torch
except ImportError:
    print("PyTorch is not importable by this Python: skipping")
    sys.exit(77)

TOL = 1e-6


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals

    def f32(self, n):
        a = np.frombuffer(self.buf, dtype="<f4", count=n, offset=self.pos).copy()
        self.pos += 4 * n
        return a


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    with open(sys.argv[1], "rb") as f:
        r = Reader(f.read())
    magic, version = r.take("4sI")
    if magic != b"MDAW" or version != 1:
        print(f"{sys.argv[1]}: not an AdamW dump (version 1)")
        return 1
    nparams, nsteps = r.take("II")
    beta1, beta2, eps, wd, max_norm = (float(x) for x in r.f32(5))
    shapes, decay = [], []
    for _ in range(nparams):
        (ndim,) = r.take("I")
        shapes.append(r.take(f"{ndim}q"))
        decay.append(r.take("I")[0] == 1)
    sizes = [int(np.prod(s)) for s in shapes]
    numel = sum(sizes)

    def split(flat):
        out, off = [], 0
        for s, k in zip(shapes, sizes):
            out.append(torch.from_numpy(flat[off:off + k].reshape(s)))
            off += k
        return out

    params = [t.clone().requires_grad_(True) for t in split(r.f32(numel))]
    groups = [
        {"params": [p for p, d in zip(params, decay) if d], "weight_decay": wd},
        {"params": [p for p, d in zip(params, decay) if not d], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=0.0, betas=(beta1, beta2), eps=eps, foreach=False)

    failures = 0

    def compare(what, mine, ref):
        nonlocal failures
        mine = np.asarray(mine, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        scale = max(1e-30, float(np.max(np.abs(ref))) if ref.size else 1.0)
        err = float(np.max(np.abs(mine - ref))) if ref.size else 0.0
        ok = np.isfinite(mine).all() and err <= TOL * scale
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} - {what}: max abs err {err:.3g} (limit {TOL * scale:.3g})")

    for s in range(nsteps):
        lr = float(r.f32(1)[0])
        norm_c = float(r.f32(1)[0])
        grad = r.f32(numel)
        clipped = r.f32(numel)
        for p, g in zip(params, split(grad)):
            p.grad = g.clone()
        norm_t = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        compare(f"step {s + 1}: grad norm ({norm_c:.6g}) relative",
                [norm_c / max(norm_t, 1e-30)], [1.0])
        compare(f"step {s + 1}: clipped grads",
                clipped, torch.cat([p.grad.flatten() for p in params]).numpy())
        for grp in opt.param_groups:
            grp["lr"] = lr
        opt.step()

    final_p, final_m, final_v = r.f32(numel), r.f32(numel), r.f32(numel)
    if r.pos != len(r.buf):
        print(f"{sys.argv[1]}: {len(r.buf) - r.pos} trailing bytes")
        return 1
    with torch.no_grad():
        compare("params after all steps", final_p, torch.cat([p.flatten() for p in params]).numpy())
        compare("adam m (exp_avg)", final_m,
                torch.cat([opt.state[p]["exp_avg"].flatten() for p in params]).numpy())
        compare("adam v (exp_avg_sq)", final_v,
                torch.cat([opt.state[p]["exp_avg_sq"].flatten() for p in params]).numpy())
    steps_t = {float(opt.state[p]["step"]) for p in params}
    print(f"torch {torch.__version__}: {nparams} params, {numel} values, {nsteps} steps, "
          f"torch step counters {sorted(steps_t)}")
    print("all match" if not failures else f"{failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
