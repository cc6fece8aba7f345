#!/usr/bin/python3
"""Compares Medley's STFT, iSTFT and mel filterbanks with references.

Usage: test_dsp_torch.py DSP_DUMP_EXE   (runs it, reads its dump; the format
is described at the top of tests/parity/dsp_dump.c)
  stft / istft: torch.stft(return_complex=True, center=True,
                pad_mode='reflect', window=torch.hann_window(win)) and
                torch.istft(length=...), in float64 on Medley's inputs;
  mel:          torchaudio.functional.melscale_fbanks's formula written
                here in numpy float64 (torchaudio is not installed).
Each array must satisfy max|medley - ref| <= TOL * max|ref|.
Exit status: 0 all match, 1 a mismatch, 77 PyTorch missing (skip).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import warnings

try:
    import numpy as np
    import torch
except ImportError:
    print("PyTorch is not importable by this Python: skipping")
    sys.exit(77)

TOL = 1e-4
# The zero-tail case pads on purpose; torch warns about it.
warnings.filterwarnings("ignore", message="The length of signal is shorter")


def read_dump(path):
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:4] != b"MDSP" or struct.unpack_from("<I", buf, 4)[0] != 1:
        raise SystemExit(f"{path}: not a dsp dump (version 1)")
    pos = 8
    narrays = {"stft": 3, "istft": 3, "mel": 1}
    while pos < len(buf):
        (n,) = struct.unpack_from("<I", buf, pos)
        case = json.loads(buf[pos + 4:pos + 4 + n].decode())
        pos += 4 + n
        arrs = []
        for _ in range(narrays[case["op"]]):
            (cnt,) = struct.unpack_from("<Q", buf, pos)
            arrs.append(np.frombuffer(buf, dtype="<f4", count=cnt, offset=pos + 8).astype(np.float64))
            pos += 8 + 4 * cnt
        yield case, arrs


def hz_to_mel(f, scale):
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                    f / f_sp)


def mel_to_hz(m, scale):
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), m * f_sp)


def ref_mel(p):
    """melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm,
    mel_scale), transposed to [n_mels, n_freqs]."""
    n_freqs = p["n_fft"] // 2 + 1
    all_freqs = np.linspace(0, p["sample_rate"] // 2, n_freqs)
    m_pts = np.linspace(hz_to_mel(p["f_min"], p["mel_scale"]), hz_to_mel(p["f_max"], p["mel_scale"]),
                        p["n_mels"] + 2)
    f_pts = mel_to_hz(m_pts, p["mel_scale"])
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    if p["norm"] == "slaney":
        fb *= 2.0 / (f_pts[2:p["n_mels"] + 2] - f_pts[:p["n_mels"]])
    return fb.T


def compare(name, got, ref):
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    got = got.reshape(-1)
    if got.shape != ref.shape:
        print(f"FAIL {name}: {got.size} values, reference has {ref.size}")
        return False
    scale = max(np.abs(ref).max(), 1e-30)
    err = np.abs(got - ref).max() / scale
    ok = err <= TOL
    print(f"{'ok' if ok else 'FAIL':4} {name}: max|diff|/max|ref| = {err:.2e}")
    return ok


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "dsp.bin")
        if subprocess.run([sys.argv[1], dump]).returncode != 0:
            print(f"FAIL {sys.argv[1]} did not write its dump")
            return 1
        cases = list(read_dump(dump))
    ok = True
    for case, arrs in cases:
        op = case["op"]
        if op in ("stft", "istft"):
            n_fft, hop, win = case["n_fft"], case["hop"], case["win"]
            window = torch.hann_window(win, dtype=torch.float64)
            tag = f"{op} n_fft {n_fft} hop {hop} win {win}"
            bins = n_fft // 2 + 1
        if op == "stft":
            x, re, im = arrs
            X = torch.stft(torch.from_numpy(x), n_fft, hop_length=hop, win_length=win, window=window,
                           center=True, pad_mode="reflect", normalized=False, onesided=True,
                           return_complex=True).numpy().T          # [frames, bins]
            if X.shape != (case["frames"], bins):
                print(f"FAIL {tag}: torch gives {X.shape} frames x bins, Medley {case['frames']} x {bins}")
                ok = False
                continue
            got = np.stack([re.reshape(X.shape), im.reshape(X.shape)])
            ok &= compare(tag + " (re, im)", got, np.stack([X.real, X.imag]))
        elif op == "istft":
            re, im, y = arrs
            shape = (case["frames"], bins)
            Z = torch.from_numpy((re + 1j * im).reshape(shape).T.copy())
            ref = torch.istft(Z, n_fft, hop_length=hop, win_length=win, window=window, center=True,
                              normalized=False, onesided=True, length=case["length"]).numpy()
            ok &= compare(tag + f" length {case['length']}", y, ref)
        else:
            p = case["params"]
            tag = (f"mel {p['mel_scale']} norm {p['norm']} rate {p['sample_rate']} n_fft {p['n_fft']} "
                   f"n_mels {p['n_mels']} {p['f_min']}..{p['f_max']} Hz")
            ok &= compare(tag, arrs[0], ref_mel(p))
    print("all match" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
