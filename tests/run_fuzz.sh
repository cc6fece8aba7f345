#!/bin/sh
# run_fuzz.sh — build a libFuzzer harness with ASan and UBSan and fuzz it for
# SECONDS (default 30).
#
#   tests/run_fuzz.sh                      # safetensors reader + JSON, 30 s
#   tests/run_fuzz.sh 10 image             # CI: short runs per target
#   tests/run_fuzz.sh 3600 audio           # a longer session before a release
#
# Targets: safetensors (tests/fuzz_safetensors.c), image (PNG/JPEG loader
# and the FFmpeg path for other formats, tests/fuzz_image.c), audio (libsndfile loader, tests/fuzz_audio.c), video
# (FFmpeg loader, tests/fuzz_video.c).
# Seeds come from tests/fuzz/TARGET_corpus (read only; regenerate the
# safetensors and audio ones with `test_safetensors --seeds DIR` and
# `test_audio_io --seeds DIR`); inputs found along the way go to
# $MEDLEY_FUZZ_DIR/TARGET (default $TMPDIR/medley-fuzz/TARGET), so later
# runs start from them. A crash leaves crash-* there and exits non-zero.
# Exits 77 (skipped) when clang or its libFuzzer runtime is missing.
# Environment: CLANG (default clang), MEDLEY_FUZZ_DIR.
set -eu

secs=${1:-30}
target=${2:-safetensors}
root=$(cd "$(dirname "$0")/.." && pwd)
cc=${CLANG:-clang}
work=${MEDLEY_FUZZ_DIR:-${TMPDIR:-/tmp}/medley-fuzz}/$target
mkdir -p "$work/corpus"

probe="$work/probe.c"
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$probe"
if ! command -v "$cc" >/dev/null 2>&1 ||
   ! "$cc" -fsanitize=fuzzer "$probe" -o "$work/probe" >/dev/null 2>&1; then
    echo "run_fuzz.sh: $cc with a libFuzzer runtime is not available (libclang-rt-dev); skipping"
    exit 77
fi

core="$root/core"
base="$core/md.c $core/media.c"
case "$target" in
safetensors)
    # tensor.c pulls in the CPU backend.
    srcs="$base $core/tensor.c $core/rng.c $core/backend.c $core/cuda_info.c $core/kernels_cpu.c $core/json.c $core/safetensors.c"
    libs="-ldnnl"
    ;;
image)
    # GIF, WebP, BMP, TIFF go through the FFmpeg loader.
    srcs="$base $core/image_io.c $core/video_io.c"
    libs=$(pkg-config --libs libpng libjpeg libavformat libavcodec libswscale libswresample libavutil)
    ;;
video)
    srcs="$base $core/video_io.c"
    libs=$(pkg-config --libs libavformat libavcodec libswscale libswresample libavutil)
    ;;
audio)
    srcs="$base $core/audio_io.c"
    libs=$(pkg-config --libs sndfile samplerate)
    # libsndfile leaks inside libvorbis when an Ogg file fails to open
    # (upstream; nothing of ours): keep LeakSanitizer on for everything else.
    printf 'leak:libsndfile.so\nleak:libvorbis.so\nleak:libogg.so\nleak:libFLAC.so\nleak:libmpg123.so\n' >"$work/lsan.supp"
    export LSAN_OPTIONS="suppressions=$work/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
    ;;
*)
    echo "run_fuzz.sh: unknown target \"$target\" (safetensors, image, audio, video)" >&2
    exit 2
    ;;
esac

# shellcheck disable=SC2086
"$cc" -std=c17 -g -O1 -D_GNU_SOURCE -march=native -fopenmp \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -Wno-unused-parameter -Wno-pass-failed -I"$core" \
    $(pkg-config --cflags libavformat 2>/dev/null) \
    $srcs "$root/tests/fuzz_$target.c" $libs -lm -o "$work/fuzz_$target"

echo "run_fuzz.sh: fuzzing $target for ${secs}s; corpus in $work/corpus"
cd "$work"
rc=0
OMP_NUM_THREADS=1 "./fuzz_$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 "$work/corpus" "$root/tests/fuzz/${target}_corpus" \
    >"$work/log" 2>&1 || rc=$?
# The decoders' own chatter (mpg123, libpng) is noise; the summary is not.
grep -v -i -E '^(note: |\[src/|mpg123|warning: )' "$work/log" | tail -30
[ "$rc" = 0 ] || echo "run_fuzz.sh: $target: the fuzzer stopped with status $rc; artifacts in $work"
exit "$rc"
