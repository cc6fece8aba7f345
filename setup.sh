#!/bin/sh
# setup.sh — Medley's one-command set-up on Debian 12.
#
#   ./setup.sh run     install what is missing, build, run Medley's main job
#   ./setup.sh test    install what is missing, build, run the whole test
#                      suite (plus the ASan/UBSan build of core, parity and
#                      media);
#                      the last line is "N passed, N failed, N skipped"
#   ./setup.sh bench   build and run the engine benchmark
#
# Installing is idempotent: apt-get runs only when a package is missing.
# BUILD_DIR (default: build) and ASAN_DIR (default: build-asan) may be set.
set -eu

cd "$(dirname "$0")"
mode=${1:-run}
[ $# -gt 0 ] && shift
BUILD_DIR=${BUILD_DIR:-build}
ASAN_DIR=${ASAN_DIR:-build-asan}

PACKAGES="gcc libc6-dev zlib1g-dev meson ninja-build pkg-config libdnnl-dev libomp-dev
python3 python3-numpy python3-torch libopenblas0-openmp clang libclang-rt-14-dev libjemalloc2
libfftw3-dev libpng-dev libjpeg-dev libsndfile1-dev libsamplerate0-dev
libavformat-dev libavcodec-dev libswscale-dev libswresample-dev libavutil-dev ffmpeg
sox libsox-fmt-all imagemagick espeak-ng libsqlite3-dev
libgtk-4-dev libadwaita-1-dev portaudio19-dev libsdl2-dev libglib2.0-dev-bin xvfb xauth
desktop-file-utils shared-mime-info"

install_missing() {
    missing=""
    for p in $PACKAGES; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing="$missing $p"
        fi
    done
    [ -z "$missing" ] && return 0
    echo "setup: installing$missing"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
}

configure() { # dir, extra meson args...
    dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@"
    fi
}

build() {
    configure "$BUILD_DIR" -Dwerror=true
    ninja -C "$BUILD_DIR"
}

# Prints "passed failed skipped" counted from a meson test log.
count_results() {
    /usr/bin/python3 - "$1" <<'PY'
import json, sys
p = f = s = 0
try:
    for line in open(sys.argv[1]):
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"):
            p += 1
        elif r == "SKIP":
            s += 1
        else:
            f += 1
except OSError:
    f += 1
print(p, f, s)
PY
}

install_missing
case "$mode" in
run)
    build
    exec "$BUILD_DIR/app/medley"
    ;;
test)
    build
    # Tests share two cores: threads sleep rather than spin at barriers.
    export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
    status=0
    meson test -C "$BUILD_DIR" --no-rebuild --print-errorlogs \
        --suite core --suite parity --suite media --suite world --suite gpu --suite ui || status=1
    set -- $(count_results "$BUILD_DIR/meson-logs/testlog.json")
    passed=$1 failed=$2 skipped=$3

    echo "setup: ASan/UBSan build of the core, parity, media and world suites"
    configure "$ASAN_DIR" -Dwerror=true -Db_sanitize=address,undefined -Dbuildtype=debugoptimized \
        -Dc_args=-fno-sanitize-recover=all -Dstudio=disabled
    ninja -C "$ASAN_DIR"
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    meson test -C "$ASAN_DIR" --no-rebuild --print-errorlogs --timeout-multiplier 4 \
        --suite core --suite parity --suite media --suite world --no-suite models || status=1
    set -- $(count_results "$ASAN_DIR/meson-logs/testlog.json")
    passed=$((passed + $1)) failed=$((failed + $2)) skipped=$((skipped + $3))
    echo "$passed passed, $failed failed, $skipped skipped"
    exit $status
    ;;
bench)
    build
    MEDLEY_SOURCE_DIR=$(pwd) exec "$BUILD_DIR/tests/bench_engine" "$@"
    ;;
*)
    echo "usage: ./setup.sh run|test|bench" >&2
    exit 2
    ;;
esac
