#!/bin/sh
# run_fuzz.sh — build tests/fuzz_safetensors.c with libFuzzer, ASan and UBSan
# and fuzz the safetensors reader and JSON parser for SECONDS (default 30).
#
#   tests/run_fuzz.sh            # CI: short run
#   tests/run_fuzz.sh 3600       # a longer session before a release
#
# Seeds come from tests/fuzz/safetensors_corpus (read only; regenerate with
# `test_safetensors --seeds tests/fuzz/safetensors_corpus`); inputs found
# along the way go to $MEDLEY_FUZZ_DIR (default $TMPDIR/medley-fuzz), so
# later runs start from them. A crash leaves crash-* there and exits non-zero.
# Exits 77 (skipped) when clang or its libFuzzer runtime is missing.
# Environment: CLANG (default clang), MEDLEY_FUZZ_DIR.
set -eu

secs=${1:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
cc=${CLANG:-clang}
work=${MEDLEY_FUZZ_DIR:-${TMPDIR:-/tmp}/medley-fuzz}
mkdir -p "$work/corpus"

probe="$work/probe.c"
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$probe"
if ! command -v "$cc" >/dev/null 2>&1 ||
   ! "$cc" -fsanitize=fuzzer "$probe" -o "$work/probe" >/dev/null 2>&1; then
    echo "run_fuzz.sh: $cc with a libFuzzer runtime is not available (libclang-rt-dev); skipping"
    exit 77
fi

# The core files the reader needs; tensor.c pulls in the CPU backend.
core="$root/core"
"$cc" -std=c17 -g -O1 -D_GNU_SOURCE -march=native -fopenmp \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -Wno-unused-parameter -Wno-pass-failed -I"$core" \
    "$core/md.c" "$core/tensor.c" "$core/rng.c" "$core/backend.c" "$core/cuda_info.c" "$core/kernels_cpu.c" \
    "$core/json.c" "$core/safetensors.c" "$root/tests/fuzz_safetensors.c" \
    -ldnnl -lm -o "$work/fuzz_safetensors"

echo "run_fuzz.sh: fuzzing for ${secs}s; corpus in $work/corpus"
cd "$work"
OMP_NUM_THREADS=1 ./fuzz_safetensors -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 "$work/corpus" "$root/tests/fuzz/safetensors_corpus"
