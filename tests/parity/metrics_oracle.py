"""Reference Fréchet distance for tests/test_metrics.c --oracle (numpy only).

    metrics_oracle.py IN OUT

IN: b"MDFD", then little-endian u32 version (1), i32 na, nb, d, then float32
a[na, d] and b[nb, d]. OUT gets one line: "fd trace_a trace_b".

Independent of core/metrics.c: numpy's mean and np.cov (n - 1), Ca^1/2 from
numpy.linalg.eigh with negative eigenvalues clamped to 0, and the eigenvalues
of Ca^1/2 Cb Ca^1/2 from numpy.linalg.eigvalsh, likewise clamped:
    FD = |mu_a - mu_b|^2 + tr Ca + tr Cb - 2 sum sqrt(eig(S Cb S)).
Exits 77 when numpy is missing (the test then counts as skipped).
"""
import struct
import sys

try:
    import numpy as np
except ImportError:
    sys.exit(77)


def read_case(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:4] != b"MDFD":
        sys.exit(f"{path}: not a metrics oracle case (bad magic)")
    version, na, nb, d = struct.unpack_from("<Iiii", raw, 4)
    if version != 1 or na < 2 or nb < 2 or d < 1:
        sys.exit(f"{path}: version {version}, na {na}, nb {nb}, d {d} not understood")
    want = 20 + 4 * d * (na + nb)
    if len(raw) != want:
        sys.exit(f"{path}: {len(raw)} bytes, expected {want}")
    x = np.frombuffer(raw, dtype="<f4", offset=20).astype(np.float64)
    return x[: na * d].reshape(na, d), x[na * d :].reshape(nb, d)


def fit(x):
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False, ddof=1))


def sqrtm_psd(c):
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet(a, b):
    mu_a, ca = fit(a)
    mu_b, cb = fit(b)
    s = sqrtm_psd(ca)
    m = s @ cb @ s
    inner = np.linalg.eigvalsh(0.5 * (m + m.T))
    tr_sqrt = np.sqrt(np.clip(inner, 0.0, None)).sum()
    diff = mu_a - mu_b
    fd = diff @ diff + np.trace(ca) + np.trace(cb) - 2.0 * tr_sqrt
    return max(fd, 0.0), np.trace(ca), np.trace(cb)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = read_case(sys.argv[1])
    fd, tra, trb = frechet(a, b)
    with open(sys.argv[2], "w") as f:
        f.write(f"{fd:.17g} {tra:.17g} {trb:.17g}\n")


if __name__ == "__main__":
    main()
