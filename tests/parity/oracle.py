#!/usr/bin/python3
"""PyTorch oracle for Medley's parity cases.

Reads a dump written by tests/parity/pcase.c, recomputes every case with
PyTorch in float64 from the same inputs, and compares outputs and input
gradients with Medley's. Usage: oracle.py DUMP [--tol-scale X]
Exit status: 0 all match, 1 a mismatch, 77 PyTorch missing (skip).
"""
import json
import os
import struct
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError:
    print("PyTorch is not importable by this Python: skipping")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

torch.set_grad_enabled(True)


def read_cases(path):
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:4] != b"MDPC":
        raise SystemExit(f"{path}: not a parity dump")
    pos = 8
    cases, cur = [], None

    def u32():
        nonlocal pos
        v = struct.unpack_from("<I", buf, pos)[0]
        pos += 4
        return v

    def s():
        nonlocal pos
        n = u32()
        v = buf[pos:pos + n].decode()
        pos += n
        return v

    while pos < len(buf):
        tag = u32()
        if tag == 1:
            cur = {"op": s(), "params": json.loads(s()), "t": {}}
        elif tag == 2:
            role = s()
            dt = u32()
            nd = u32()
            shape = struct.unpack_from("<%dq" % nd, buf, pos)
            pos += 8 * nd
            n = int(np.prod(shape)) if nd else 1
            arr = np.frombuffer(buf, dtype=np.int32 if dt == 3 else np.float32, count=n, offset=pos)
            pos += 4 * n
            cur["t"][role] = arr.reshape(shape).copy()
        elif tag == 3:
            cases.append(cur)
        else:
            raise SystemExit(f"{path}: bad record tag {tag}")
    return cases


# ---- reference implementations: fn(inputs, params) -> list of outputs ----

def bcast_b(b, a):
    return b.reshape((1,) * (a.dim() - b.dim()) + tuple(b.shape))


def attention(q, k, v, heads, causal):
    B, Tq, W = q.shape
    Tk = k.shape[1]
    dh = W // heads
    qh = q.reshape(B, Tq, heads, dh).transpose(1, 2)
    kh = k.reshape(B, Tk, heads, dh).transpose(1, 2)
    vh = v.reshape(B, Tk, heads, dh).transpose(1, 2)
    s = qh @ kh.transpose(-1, -2) / (dh ** 0.5)
    if causal:
        i = torch.arange(Tq).unsqueeze(1)
        j = torch.arange(Tk).unsqueeze(0)
        s = s.masked_fill(j > i + (Tk - Tq), float("-inf"))
    p = torch.softmax(s, -1)
    return (p @ vh).transpose(1, 2).reshape(B, Tq, W)


def cross_entropy(x, t, p):
    return F.cross_entropy(x, t.long(), label_smoothing=p.get("smoothing", 0.0),
                           ignore_index=p.get("ignore", -100))


def tblock(i, p):
    P = p["_params"]
    x = i[0]
    w = lambda n: P["blk." + n]
    d = x.shape[-1]
    h = F.layer_norm(x, (d,), w("ln1.weight"), w("ln1.bias"), 1e-5)
    h = F.linear(h, w("attn.qkv.weight"), w("attn.qkv.bias"))
    h = attention(*h.chunk(3, -1), p["heads"], p["causal"])
    x = x + F.linear(h, w("attn.proj.weight"), w("attn.proj.bias"))
    if p["cross"]:
        c = i[1]
        q = F.linear(F.layer_norm(x, (d,), w("lnx.weight"), w("lnx.bias"), 1e-5), w("xattn.q.weight"), w("xattn.q.bias"))
        k = F.linear(c, w("xattn.k.weight"), w("xattn.k.bias"))
        v = F.linear(c, w("xattn.v.weight"), w("xattn.v.bias"))
        x = x + F.linear(attention(q, k, v, p["heads"], False), w("xattn.proj.weight"), w("xattn.proj.bias"))
    h = F.layer_norm(x, (d,), w("ln2.weight"), w("ln2.bias"), 1e-5)
    h = F.linear(F.gelu(F.linear(h, w("mlp.fc1.weight"), w("mlp.fc1.bias"))), w("mlp.fc2.weight"), w("mlp.fc2.bias"))
    return [x + h]


def resblock(i, p):
    P = p["_params"]
    w = lambda n: P.get("res." + n)
    x = i[0]
    g = p["groups"]
    h = F.silu(F.group_norm(x, g, w("norm1.weight"), w("norm1.bias"), 1e-6))
    h = F.conv2d(h, w("conv1.weight"), w("conv1.bias"), padding=1)
    h = F.silu(F.group_norm(h, g, w("norm2.weight"), w("norm2.bias"), 1e-6))
    h = F.conv2d(h, w("conv2.weight"), w("conv2.bias"), padding=1)
    skip = F.conv2d(x, w("skip.weight"), w("skip.bias")) if w("skip.weight") is not None else x
    return [skip + h]


OPS = {
    "nn.tblock": tblock,
    "nn.resblock": resblock,
    "matmul": lambda i, p: [(i[0].T if p["ta"] else i[0]) @ (i[1].T if p["tb"] else i[1])],
    "bmm": lambda i, p: [(i[0].transpose(1, 2) if p["ta"] else i[0]) @ (i[1].transpose(1, 2) if p["tb"] else i[1])],
    "linear": lambda i, p: [F.linear(i[0], i[1], i[2] if len(i) > 2 else None)],
    "add": lambda i, p: [i[0] + bcast_b(i[1], i[0])],
    "sub": lambda i, p: [i[0] - bcast_b(i[1], i[0])],
    "mul": lambda i, p: [i[0] * bcast_b(i[1], i[0])],
    "scale": lambda i, p: [i[0] * p["s"]],
    "gelu": lambda i, p: [F.gelu(i[0])],
    "silu": lambda i, p: [F.silu(i[0])],
    "relu": lambda i, p: [F.relu(i[0])],
    "tanh": lambda i, p: [torch.tanh(i[0])],
    "sigmoid": lambda i, p: [torch.sigmoid(i[0])],
    "exp": lambda i, p: [torch.exp(i[0])],
    "log_eps": lambda i, p: [torch.log(i[0] + p["eps"])],
    "sqrt_eps": lambda i, p: [torch.sqrt(i[0] + p["eps"])],
    "l2_normalize": lambda i, p: [F.normalize(i[0], dim=-1, eps=p["eps"])],
    "layernorm": lambda i, p: [F.layer_norm(i[0], i[0].shape[-1:], i[1], i[2], p["eps"])],
    "rmsnorm": lambda i, p: [i[0] * torch.rsqrt((i[0] ** 2).mean(-1, keepdim=True) + p["eps"]) * i[1]],
    "softmax": lambda i, p: [torch.softmax(i[0], -1)],
    "log_softmax": lambda i, p: [torch.log_softmax(i[0], -1)],
    "attention": lambda i, p: [attention(i[0], i[1], i[2], p["heads"], p["causal"])],
    "attention_qkv": lambda i, p: [attention(*i[0].chunk(3, -1), p["heads"], p["causal"])],
    "embedding": lambda i, p: [F.embedding(i[1].long(), i[0])],
    "permute": lambda i, p: [i[0].permute(*p["perm"])],
    "slice": lambda i, p: [i[0].narrow(p["dim"], p["start"], p["end"] - p["start"])],
    "concat": lambda i, p: [torch.cat(i, p["dim"])],
    "reshape": lambda i, p: [i[0].reshape(p["shape"])],
    "sum": lambda i, p: [i[0].sum().reshape(1)],
    "mean": lambda i, p: [i[0].mean().reshape(1)],
    "sum_dim": lambda i, p: [i[0].sum(p["dim"], keepdim=True)],
    "mean_dim": lambda i, p: [i[0].mean(p["dim"], keepdim=True)],
    "cross_entropy": lambda i, p: [cross_entropy(i[0], i[1], p).reshape(1)],
    "mse": lambda i, p: [F.mse_loss(i[0], i[1]).reshape(1)],
    "l1": lambda i, p: [F.l1_loss(i[0], i[1]).reshape(1)],
}

# Other op families register theirs in modules named oracle_*.py.
for name in sorted(os.listdir(os.path.dirname(os.path.abspath(__file__)))):
    if name.startswith("oracle_") and name.endswith(".py"):
        mod = __import__(name[:-3])
        OPS.update(getattr(mod, "OPS", {}))
        BLOCKS = getattr(mod, "BLOCKS", None)


def rel_err(a, b):
    """max |a-b| / max(1e-3, max |b|): error normalised by the reference's
    scale; the floor keeps gradients that are zero in exact arithmetic (a
    key bias under softmax) from dividing rounding noise by zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1e-3, float(np.max(np.abs(b)))))


def check_case(c, tol):
    t = c["t"]
    ins = []
    i = 0
    while f"in{i}" in t:
        a = t[f"in{i}"]
        if a.dtype == np.int32:
            ins.append(torch.from_numpy(a.astype(np.int64)))
        else:
            ins.append(torch.from_numpy(a.astype(np.float64)).requires_grad_(f"grad{i}" in t))
        i += 1
    params = {k[6:]: torch.from_numpy(v.astype(np.float64)).requires_grad_(True)
              for k, v in t.items() if k.startswith("param:")}
    c["params"]["_params"] = params
    fn = OPS.get(c["op"])
    if fn is None:
        return [f"no reference for op {c['op']}"], {}
    outs = fn(ins, c["params"])
    errs = {}
    problems = []
    loss = 0
    for k, o in enumerate(outs):
        mine = t.get(f"out{k}")
        if mine is None:
            continue
        if o.dtype in (torch.int64, torch.int32):
            e = 0.0 if np.array_equal(o.numpy(), mine) else float("inf")
        else:
            e = rel_err(mine, o.detach().numpy())
        errs[f"out{k}"] = e
        if f"dout{k}" in t and o.requires_grad:
            loss = loss + (o * torch.from_numpy(t[f"dout{k}"].astype(np.float64))).sum()
    if torch.is_tensor(loss) and loss.requires_grad:
        loss.backward()
    for i, x in enumerate(ins):
        if f"grad{i}" in t:
            ref = x.grad.numpy() if x.grad is not None else np.zeros(x.shape)
            errs[f"grad{i}"] = rel_err(t[f"grad{i}"], ref)
    for name, x in params.items():
        if "pgrad:" + name in t:
            ref = x.grad.numpy() if x.grad is not None else np.zeros(x.shape)
            errs["pgrad:" + name] = rel_err(t["pgrad:" + name], ref)
    limit = c["params"].get("tol", 1e-4) * tol
    for k, e in errs.items():
        if not (e <= limit):
            problems.append(f"{k} error {e:.2e} > {limit:.1e}")
    return problems, errs


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    tol = 1.0
    if "--tol-scale" in sys.argv:
        tol = float(sys.argv[sys.argv.index("--tol-scale") + 1])
    cases = read_cases(sys.argv[1])
    bad = 0
    for c in cases:
        problems, errs = check_case(c, tol)
        worst = max(errs.values()) if errs else float("nan")
        tag = "FAIL" if problems else "ok"
        print(f"{tag:4} torch {c['op']:<18} {json.dumps({k: v for k, v in c['params'].items() if k not in ('tol', '_params')})} max err {worst:.2e}"
              + ("  " + "; ".join(problems) if problems else ""))
        bad += bool(problems)
    print(f"{len(cases) - bad} of {len(cases)} cases match PyTorch")
    return 1 if bad or not cases else 0


if __name__ == "__main__":
    sys.exit(main())
