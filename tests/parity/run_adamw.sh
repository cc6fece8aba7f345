#!/bin/sh
# run_adamw.sh ADAMW_DUMP_EXE — AdamW + clip_grad_norm parity with PyTorch.
# Runs the C side (writes a dump), then replays it with torch. Exit status:
# 0 match, 1 mismatch or failure, 77 when /usr/bin/python3 has no torch (skip).
set -u
if [ $# -ne 1 ]; then
    echo "usage: $0 PATH/TO/adamw_dump" >&2
    exit 2
fi
exe=$1
here=$(dirname "$0")
if ! /usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1; then
    echo "PyTorch is not importable by /usr/bin/python3: skipping"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/md_adamw.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
"$exe" "$tmp/adamw.bin" || { echo "$exe failed" >&2; exit 1; }
/usr/bin/python3 "$here/test_adamw_torch.py" "$tmp/adamw.bin"
