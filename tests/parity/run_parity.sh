#!/bin/sh
# run_parity.sh EXE NAME — runs a parity program (it writes a dump and checks
# gradients by finite differences), then the PyTorch oracle on the dump.
# Exit: 0 match, 1 mismatch, 77 when PyTorch is missing (meson: skipped).
set -u
exe=$1
name=$2
here=$(dirname "$0")
dir=${MEDLEY_TEST_TMP:-${MESON_BUILD_ROOT:-/tmp}/test-tmp}
mkdir -p "$dir"
dump="$dir/parity_$name.bin"
"$exe" "$dump" || { echo "finite-difference check failed"; exit 1; }
/usr/bin/python3 "$here/oracle.py" "$dump"
