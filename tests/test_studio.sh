#!/bin/sh
# The studio under Xvfb: `medley-studio --self-test DIR` drives the real
# window (see ui/studio_test.c). The screenshot stays in DIR as the test's
# artifact. Skips (77) where the studio was not built or Xvfb is missing.
studio=$1
dir=${2:-studio-artifacts}
if [ ! -x "$studio" ]; then
    echo "skip: the studio was not built (GTK4/libadwaita missing)"
    exit 77
fi
if ! command -v xvfb-run >/dev/null 2>&1; then
    echo "skip: xvfb-run is not installed"
    exit 77
fi
rm -rf "$dir"
mkdir -p "$dir"
# a private cache and config, so a run never touches the user's
export XDG_CACHE_HOME="$dir/cache" XDG_CONFIG_HOME="$dir/config" XDG_DATA_HOME="$dir/data"
export GSETTINGS_BACKEND=memory NO_AT_BRIDGE=1
# Xvfb has no GPU: GTK's GL renderer would draw in software (llvmpipe) and
# compete with the generation for the two cores; cairo is its software path
export GSK_RENDERER=${GSK_RENDERER:-cairo}
xvfb-run -a -s "-screen 0 1280x800x24" "$studio" --self-test "$dir" 2>"$dir/stderr.log"
rc=$?
grep -v -e "Unable to acquire session bus" -e "^ALSA lib" -e "[Jj]ack" -e "server socket" \
    -e "server request channel" -e "^$" "$dir/stderr.log" | head -20
[ -s "$dir/studio.png" ] && echo "screenshot: $dir/studio.png"
exit $rc
