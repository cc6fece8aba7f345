#!/bin/sh
# test_cli.sh MEDLEY — the command line: help, info, bad options refused
# with a reason, and a short demo run that learns.
set -u
exe=$1
fail=0
# MEDLEY_TEST_LIGHT (the sanitizer build): the generations that must work
# draw one candidate, not eight; the checks are the same.
light=""
[ -n "${MEDLEY_TEST_LIGHT:-}" ] && light="--candidates 1"
check() { # name, expected status, command...
    name=$1; want=$2; shift 2
    out=$("$@" 2>&1); got=$?
    if [ "$got" = "$want" ]; then echo "ok   $name"; else echo "FAIL $name (exit $got, wanted $want): $out"; fail=1; fi
    LAST="$out"
}
check "help" 0 "$exe" --help
check "info" 0 "$exe" info
case "$LAST" in *oneDNN*) echo "ok   info names oneDNN";; *) echo "FAIL info: $LAST"; fail=1;; esac
check "info --devices" 0 "$exe" info --devices
case "$LAST" in *cpu*oneDNN*cuda*) echo "ok   lists the CPU and CUDA devices (or why none)";; *) echo "FAIL info --devices: $LAST"; fail=1;; esac
case "$LAST" in *"bf16 products for training (--bf16): "[yn]*) echo "ok   says whether the CPU has bf16 products";; *) echo "FAIL info --devices, bf16: $LAST"; fail=1;; esac
check "unknown command refused" 2 "$exe" frobnicate
check "bad --steps refused" 2 "$exe" demo --steps abc
case "$LAST" in *'--steps "abc"'*) echo "ok   message names the value";; *) echo "FAIL message: $LAST"; fail=1;; esac
check "zero --batch refused" 2 "$exe" demo --batch 0
check "short demo" 0 "$exe" demo --steps 40 --batch 16 --length 4
case "$LAST" in *"held-out strings reversed exactly"*) echo "ok   demo reports accuracy";; *) echo "FAIL demo output: $LAST"; fail=1;; esac
tmp=${MEDLEY_TEST_TMP:-/tmp}/cli
mkdir -p "$tmp"
printf 'a red seven, moving left\n' >"$tmp/prompt.txt"
check "info on a text file" 0 "$exe" info "$tmp/prompt.txt"
case "$LAST" in *"text, 25 characters"*) echo "ok   text described";; *) echo "FAIL text info: $LAST"; fail=1;; esac
check "info on a missing file" 1 "$exe" info "$tmp/missing.wav"
case "$LAST" in *"missing.wav"*"No such file"*) echo "ok   reason names the file";; *) echo "FAIL: $LAST"; fail=1;; esac
printf '\000\001\002garbage' >"$tmp/junk.png"
check "info on junk named .png" 1 "$exe" info "$tmp/junk.png"
if command -v sox >/dev/null 2>&1; then
    sox -n -r 16000 -c 1 -b 16 "$tmp/tone.wav" synth 0.5 sine 440 2>/dev/null
    check "info on a WAV made by sox" 0 "$exe" info "$tmp/tone.wav"
    case "$LAST" in *"audio, WAV, 16000 Hz, 1 channel, 8000 frames"*) echo "ok   WAV described";; *) echo "FAIL wav info: $LAST"; fail=1;; esac
else
    echo "skip sox checks: sox missing"
fi
# Training commands check their output folder before they start.
printf 'x' >"$tmp/afile"
check "train into a path under a file" 1 "$exe" train vqgan --steps 1 -o "$tmp/afile/models"
case "$LAST" in *"afile is not a folder"*) echo "ok   says why, before training";; *) echo "FAIL: $LAST"; fail=1;; esac
check "unknown thing to train" 2 "$exe" train unicorns
case "$LAST" in *"judges, space, vqgan, tokens, audio, diffusion, vocoder, motion or probes"*) echo "ok   lists what can be trained";; *) echo "FAIL: $LAST"; fail=1;; esac
check "vocoder: a width of 12 refused" 2 "$exe" train vocoder --ch 12
case "$LAST" in *"--ch"*) echo "ok   names --ch";; *) echo "FAIL: $LAST"; fail=1;; esac
check "motion: --paths 1 refused" 2 "$exe" train motion --paths 1
case "$LAST" in *"--paths"*) echo "ok   names --paths";; *) echo "FAIL: $LAST"; fail=1;; esac
check "vocoder: a corpus smaller than a batch refused" 2 "$exe" train vocoder --corpus 4 --batch 8
case "$LAST" in *"--corpus 4 is smaller than --batch 8"*) echo "ok   says so";; *) echo "FAIL: $LAST"; fail=1;; esac
check "bad --digit-weight refused" 2 "$exe" train space --digit-weight lots
check "pictures in an unknown space" 2 "$exe" train diffusion --space voxels
case "$LAST" in *'"voxels"'*latent*pixels*) echo "ok   names the value and the choices";; *) echo "FAIL: $LAST"; fail=1;; esac
check "--space is for pictures" 2 "$exe" train audio --space pixels
check "--init is for pictures" 2 "$exe" train audio --init x.safetensors
check "videos by diffusion need a picture model to start from" 2 "$exe" train diffusion --space video32 --steps 1
case "$LAST" in *--init*) echo "ok   names --init";; *) echo "FAIL: $LAST"; fail=1;; esac
check "--noise-share is for videos" 2 "$exe" train diffusion --space pixels32 --noise-share 0.5
case "$LAST" in *video32*) echo "ok   says what takes it";; *) echo "FAIL: $LAST"; fail=1;; esac
check "a noise share of 1 refused" 2 "$exe" train diffusion --space video32 --noise-share 1
check "diffusion: --init from a missing file" 1 "$exe" train diffusion --init "$tmp/none.safetensors" --steps 1 -o "$tmp/ig"
case "$LAST" in *none.safetensors*) echo "ok   names the file";; *) echo "FAIL: $LAST"; fail=1;; esac
check "eval: an unknown input modality" 2 "$exe" eval --inputs smell
case "$LAST" in *'"smell"'*text*video*) echo "ok   names the value and the choices";; *) echo "FAIL: $LAST"; fail=1;; esac
# The demo world commands (need the data folder; skipped without it).
if [ -n "${MEDLEY_DATA_DIR:-}" ]; then
    check "corpus without a subcommand" 2 "$exe" corpus
    check "corpus bad --scale" 2 "$exe" corpus build --scale 2 --out "$tmp/c0"
    case "$LAST" in *'--scale "2"'*) echo "ok   names the value";; *) echo "FAIL: $LAST"; fail=1;; esac
    check "corpus with a missing data folder" 1 "$exe" corpus build --data "$tmp/nowhere" --out "$tmp/c0"
    case "$LAST" in *"nowhere/mnist/train-images-idx3-ubyte.gz"*) echo "ok   names the missing file";; *) echo "FAIL: $LAST"; fail=1;; esac
    check "small corpus" 0 "$exe" corpus build --scale 0.002 --out "$tmp/corpus" --seed 3
    [ -s "$tmp/corpus/manifest.json" ] && [ -s "$tmp/corpus/test-audio-0000.safetensors" ] \
        && echo "ok   manifest and shards written" || { echo "FAIL corpus files"; fail=1; }
    check "info reads a shard" 0 "$exe" info "$tmp/corpus/train-image-0000.safetensors"
    check "train judges: bad kind" 2 "$exe" train judges --kind smell
    check "train: unknown target" 2 "$exe" train everything
    check "short judge training" 0 "$exe" train judges --kind audio --steps 20 --out "$tmp"
    [ -s "$tmp/judge-audio.safetensors" ] && echo "ok   judge saved" || { echo "FAIL judge not saved"; fail=1; }
    check "eval with a folder lacking judges" 1 "$exe" eval --judges --models "$tmp/corpus"
    case "$LAST" in *"judge-image.safetensors"*) echo "ok   names the missing judge";; *) echo "FAIL: $LAST"; fail=1;; esac
    if [ -n "${MEDLEY_MODELS_DIR:-}" ] && [ -s "$MEDLEY_MODELS_DIR/judge-image.safetensors" ]; then
        check "eval --judges --quick" 0 "$exe" eval --judges --quick 200 --json "$tmp/judges.json"
        case "$LAST" in *"image judge on test"*"audio judge on test"*"video judge on test"*"text  judge"*) echo "ok   every judge reported";; *) echo "FAIL: $LAST"; fail=1;; esac
        # every cell, at its smallest: two outputs each, one candidate (the
        # figures are the README's, from full runs; here: that each path runs;
        # a video by the video model, 16 frames a candidate, at 5 steps)
        check "eval matrix" 0 "$exe" eval --quick 60 --outputs 2 --video-outputs 2 --candidates 1 \
            --audio-candidates 1 --set diffusion-image.candidates=1 --set diffusion-video.candidates=1 \
            --set diffusion-video.steps=5 \
            --json "$tmp/matrix.json"
        grep -q '"matrix"' "$tmp/matrix.json" && echo "ok   matrix JSON written" || { echo "FAIL matrix json"; fail=1; }
    fi
else
    echo "skip demo world commands: MEDLEY_DATA_DIR is not set"
fi
# The aligned space (needs the shipped space.safetensors).
if [ -n "${MEDLEY_MODELS_DIR:-}" ] && [ -s "$MEDLEY_MODELS_DIR/space.safetensors" ]; then
    check "embed a text" 0 "$exe" embed "a red seven moving left"
    n=$(printf '%s\n' "$LAST" | awk -F, '{print NF}')
    [ "$n" = 128 ] && echo "ok   128 numbers" || { echo "FAIL embed printed $n numbers: $LAST"; fail=1; }
    check "embed a missing image" 1 "$exe" embed "$tmp/nothere.png"
    case "$LAST" in *"nothere.png: no such file"*) echo "ok   names the file";; *) echo "FAIL: $LAST"; fail=1;; esac
    lib="$tmp/library"
    mkdir -p "$lib"
    printf 'seven' >"$lib/a.txt"
    printf 'a blue four on a white background' >"$lib/b.txt"
    printf '\000\001junk' >"$lib/c.bin"
    command -v sox >/dev/null 2>&1 && sox -n -r 8000 -c 1 -b 16 "$lib/d.wav" synth 0.4 sine 300 2>/dev/null
    check "search a folder" 0 "$exe" search --query "the digit 7" --top 3 "$lib"
    first=$(printf '%s\n' "$LAST" | grep -m1 '^ 1 ')
    case "$first" in *"/a.txt") echo "ok   the seven ranks first";; *) echo "FAIL ranking: $LAST"; fail=1;; esac
    case "$LAST" in *"1 file skipped"*) echo "ok   unreadable file counted";; *) echo "FAIL skipped: $LAST"; fail=1;; esac
    check "search with weights adding to zero" 1 "$exe" search --query "seven@1" --query "four@-1" "$lib"
    case "$LAST" in *"add up to zero"*) echo "ok   says why";; *) echo "FAIL: $LAST"; fail=1;; esac
    check "search a missing folder" 1 "$exe" search --query seven "$tmp/nowhere"
else
    echo "skip space commands: no shipped space.safetensors"
fi
# Generation (needs the shipped space, tokenizer and token transformer).
if [ -n "${MEDLEY_MODELS_DIR:-}" ] && [ -s "$MEDLEY_MODELS_DIR/tokens.safetensors" ]; then
    g1="$tmp/gen1"; g2="$tmp/gen2"; g3="$tmp/gen3"
    rm -rf "$g1" "$g2" "$g3"
    check "generate image and caption from text" 0 "$exe" generate --in text:"a red seven on black" \
        --out image,text --seed 7 -o "$g1" $light --quiet
    [ -s "$g1/medley-7-image.png" ] && [ -s "$g1/medley-7-text.txt" ] && echo "ok   PNG and TXT written" \
        || { echo "FAIL outputs missing: $(ls "$g1")"; fail=1; }
    check "info shows the job" 0 "$exe" info "$g1/medley-7-image.png"
    case "$LAST" in *medley.job*'"seed":7'*) echo "ok   the PNG carries its job";; *) echo "FAIL: $LAST"; fail=1;; esac
    check "the same request again" 0 "$exe" generate --in text:"a red seven on black" --out image,text --seed 7 -o "$g2" $light --quiet
    cmp -s "$g1/medley-7-image.png" "$g2/medley-7-image.png" && echo "ok   same seed, same image bytes" \
        || { echo "FAIL images differ"; fail=1; }
    rm -rf "$g2"
    check "the same request on one thread" 0 env MEDLEY_THREADS=1 "$exe" generate --in text:"a red seven on black" \
        --out image,text --seed 7 -o "$g2" $light --quiet
    cmp -s "$g1/medley-7-image.png" "$g2/medley-7-image.png" && cmp -s "$g1/medley-7-text.txt" "$g2/medley-7-text.txt" \
        && echo "ok   one thread or two, the same bytes" || { echo "FAIL thread count changed the outputs"; fail=1; }
    check "restore the job from the PNG" 0 "$exe" generate --from "$g1/medley-7-image.png" -o "$g3" --quiet
    cmp -s "$g1/medley-7-image.png" "$g3/medley-7-image.png" && cmp -s "$g1/medley-7-text.txt" "$g3/medley-7-text.txt" \
        && echo "ok   the restored job makes the same outputs" || { echo "FAIL restored outputs differ"; fail=1; }
    check "restore from the TXT" 0 "$exe" generate --from "$g1/medley-7-text.txt" -o "$g3" --quiet
    [ -s "$g3/medley-7-image-2.png" ] && echo "ok   a second run does not overwrite" || { echo "FAIL: $(ls "$g3")"; fail=1; }
    check "generate from an image and text with weights" 0 "$exe" generate --in "image:$g1/medley-7-image.png@0.5" \
        --in text:seven --out text --seed 1 -o "$g2" --quiet
    check "unknown input modality" 2 "$exe" generate --in smell:roses --out image
    case "$LAST" in *'unknown modality "smell"'*) echo "ok   names it";; *) echo "FAIL: $LAST"; fail=1;; esac
    check "missing input file" 1 "$exe" generate --in "image:$tmp/none.png" --out image -o "$g2"
    case "$LAST" in *"none.png"*) echo "ok   names the file";; *) echo "FAIL: $LAST"; fail=1;; esac
    check "unreadable input file" 1 "$exe" generate --in "image:$tmp/junk.png" --out image -o "$g2"
    case "$LAST" in *"junk.png"*) echo "ok   names the file";; *) echo "FAIL: $LAST"; fail=1;; esac
    check "input of another modality than declared" 1 "$exe" generate --in "audio:$g1/medley-7-image.png" --out text -o "$g2"
    case "$LAST" in *"given as audio, but it holds image"*) echo "ok   says so";; *) echo "FAIL: $LAST"; fail=1;; esac
    check "weights adding to zero" 1 "$exe" generate --in text:seven@1 --in text:four@-1 --out image -o "$g2"
    case "$LAST" in *"zero"*) echo "ok   says why";; *) echo "FAIL: $LAST"; fail=1;; esac
    if [ -s "$MEDLEY_MODELS_DIR/audiogen.safetensors" ]; then
        g5="$tmp/gen5"; g6="$tmp/gen6"; rm -rf "$g5" "$g6"
        check "video+audio from text" 0 "$exe" generate --in text:"a blue three" --out video+audio --seed 5 \
            --set audio.steps=10 -o "$g5" $light --quiet
        check "the MP4 carries the clip" 0 "$exe" info "$g5/medley-5-video.mp4"
        case "$LAST" in *audio*8000*|*audio*aac*|*aac*) echo "ok   an audio track in the MP4";; *) echo "FAIL: $LAST"; fail=1;; esac
        check "info shows the WAV's job" 0 "$exe" info "$g5/medley-5-audio.wav"
        case "$LAST" in *'"generator":"diffusion-audio"'*'"steps":10'*) echo "ok   the WAV carries its job";;
            *) echo "FAIL: $LAST"; fail=1;; esac
        check "restore the job from the WAV" 0 "$exe" generate --from "$g5/medley-5-audio.wav" -o "$g6" --quiet
        cmp -s "$g5/medley-5-audio.wav" "$g6/medley-5-audio.wav" && echo "ok   the restored job says the same bytes" \
            || { echo "FAIL restored audio differs"; fail=1; }
        check "audio with 0 steps" 1 "$exe" generate --in text:seven --out audio --set audio.steps=0 -o "$g2"
        case "$LAST" in *steps*) echo "ok   names the parameter";; *) echo "FAIL: $LAST"; fail=1;; esac
        check "audio with negative guidance" 1 "$exe" generate --in text:seven --out audio --set audio.guidance=-1 -o "$g2"
        check "audio by tokens" 1 "$exe" generate --in text:seven --out audio:tokens -o "$g2"
    else
        check "audio without the audio decoder" 1 "$exe" generate --in text:seven --out audio -o "$g2"
        case "$LAST" in *"medley train audio"*) echo "ok   says how to make it";; *) echo "FAIL: $LAST"; fail=1;; esac
    fi
    if [ -s "$MEDLEY_MODELS_DIR/imagegen.safetensors" ]; then
        g7="$tmp/gen7"; g8="$tmp/gen8"; rm -rf "$g7" "$g8"
        check "a picture by diffusion" 0 "$exe" generate --in text:"a red four" --out image:diffusion --seed 6 \
            --set steps=10 -o "$g7" --quiet
        check "restored by the same path" 0 "$exe" generate --from "$g7/medley-6-image.png" -o "$g8" --quiet
        cmp -s "$g7/medley-6-image.png" "$g8/medley-6-image.png" && echo "ok   the same picture again" \
            || { echo "FAIL restored picture differs"; fail=1; }
        if [ -s "$MEDLEY_MODELS_DIR/motion.safetensors" ]; then
            g9="$tmp/gen9"; g10="$tmp/gen10"; rm -rf "$g9" "$g10"
            check "a video by diffusion" 0 "$exe" generate --in text:"a green two moving up" --out video:diffusion \
                --seed 4 --set steps=10 -o "$g9" --quiet
            check "info shows the MP4's job" 0 "$exe" info "$g9/medley-4-video.mp4"
            case "$LAST" in *'"generator":"diffusion-video"'*'"steps":10'*) echo "ok   made by the diffusion path";;
                *) echo "FAIL: $LAST"; fail=1;; esac
            check "restored by the same path" 0 "$exe" generate --from "$g9/medley-4-video.mp4" -o "$g10" --quiet
            cmp -s "$g9/medley-4-video.mp4" "$g10/medley-4-video.mp4" && echo "ok   the same video again" \
                || { echo "FAIL restored video differs"; fail=1; }
            check "video by diffusion, motion temperature -1" 1 "$exe" generate --in text:seven --out video:diffusion \
                --set video.motion_temperature=-1 -o "$g2"
            case "$LAST" in *motion_temperature*) echo "ok   names the parameter";; *) echo "FAIL: $LAST"; fail=1;; esac
        fi
    fi
    check "an unknown path" 2 "$exe" generate --in text:seven --out image:magic
    check "text by diffusion" 1 "$exe" generate --in text:seven --out text:diffusion -o "$g2"
    case "$LAST" in *"no diffusion path"*) echo "ok   says so";; *) echo "FAIL: $LAST"; fail=1;; esac
    check "an unknown output" 2 "$exe" generate --in text:seven --out smell
    check "no input" 2 "$exe" generate --out image
    check "temperature 0" 1 "$exe" generate --in text:seven --out image --temperature 0 -o "$g2"
    case "$LAST" in *temperature*) echo "ok   names the parameter";; *) echo "FAIL: $LAST"; fail=1;; esac
    check "top-p 2" 1 "$exe" generate --in text:seven --out image --top-p 2 -o "$g2"
    check "negative guidance" 1 "$exe" generate --in text:seven --out image --guidance -1 -o "$g2"
    check "a non-number seed" 2 "$exe" generate --in text:seven --out image --seed many
    check "--from a file without a job" 1 "$exe" generate --from "$tmp/prompt.txt"
    # Ctrl-C: a clean stop, exit 130, nothing written
    g4="$tmp/gen4"; rm -rf "$g4"; mkdir -p "$g4"
    # (the transformer's frames and 15 first frames: several seconds, where the
    # motion model's video may be done within the second)
    "$exe" generate --in text:"a blue two moving up" --out video --set video.motion=0 --candidates 15 -o "$g4" \
        --quiet >/dev/null 2>&1 &
    pid=$!
    sleep 1
    kill -INT $pid
    wait $pid; got=$?
    left=$(ls -A "$g4")
    [ "$got" = 130 ] && [ -z "$left" ] && echo "ok   Ctrl-C cancels (exit 130), no file left" \
        || { echo "FAIL Ctrl-C: exit $got, left: $left"; fail=1; }
    # a video moved by the motion model (when it is there): the same bytes again from its job
    if [ -s "$MEDLEY_MODELS_DIR/motion.safetensors" ]; then
        g9="$tmp/gen9"; g10="$tmp/gen10"; rm -rf "$g9" "$g10"
        check "a moving video" 0 "$exe" generate --in text:"a blue two moving up" --out video --seed 3 -o "$g9" --quiet
        check "restore the video's job" 0 "$exe" generate --from "$g9/medley-3-video.mp4" -o "$g10" --quiet
        cmp -s "$g9/medley-3-video.mp4" "$g10/medley-3-video.mp4" && echo "ok   the same video again" \
            || { echo "FAIL restored video differs"; fail=1; }
    fi
    check "motion 2 refused" 1 "$exe" generate --in text:seven --out video --set video.motion=2 -o "$g2"
    case "$LAST" in *motion*) echo "ok   names the parameter";; *) echo "FAIL: $LAST"; fail=1;; esac
    # candidates: a parameter like the others, range-checked
    check "candidates 4" 0 "$exe" generate --in text:"a green two" --out image --candidates 4 --seed 3 -o "$g2" --quiet
    check "candidates 31 refused" 1 "$exe" generate --in text:seven --out image --candidates 31 -o "$g2"
    case "$LAST" in *candidates*) echo "ok   names the parameter";; *) echo "FAIL: $LAST"; fail=1;; esac
    # one output's own parameter; an output that is not chosen; a bad scope
    check "--set image.guidance" 0 "$exe" generate --in text:"a green two" --out image,text --set image.guidance=5 \
        --candidates 1 --seed 4 -o "$g2" --quiet
    case "$(cat "$g2/medley-4-text.txt")" in *'"modality":"image"'*'"guidance":5'*'"modality":"text"'*'"guidance":3'*|\
        *'"modality":"text"'*'"guidance":3'*'"modality":"image"'*'"guidance":5'*)
        echo "ok   the image ran with guidance 5, the caption with 3";; *) echo "FAIL: $(cat "$g2/medley-4-text.txt")"; fail=1;; esac
    check "--set for an output not chosen" 1 "$exe" generate --in text:seven --out image --set video.guidance=5 -o "$g2"
    check "--set with a bad scope" 1 "$exe" generate --in text:seven --out image --set smell.guidance=5 -o "$g2"
    check "--set without =" 2 "$exe" generate --in text:seven --out image --set guidance -o "$g2"
else
    echo "skip generate commands: no shipped tokens.safetensors"
fi
# The player window, with SDL's dummy drivers: a video with its sound plays
# through to the end; an image shows; bad files refused.
if command -v ffmpeg >/dev/null 2>&1; then
    ffmpeg -loglevel error -y -f lavfi -i testsrc=size=64x64:rate=16:duration=1 -f lavfi -i sine=frequency=440:duration=1 \
        -c:v libx264 -pix_fmt yuv420p -c:a aac -shortest "$tmp/av.mp4"
    check "play a video with sound" 0 env SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy "$exe" play "$tmp/av.mp4"
    case "$LAST" in *"played 16 frames of 16"*"with sound"*) echo "ok   every frame shown, by the sound's clock";;
        *) echo "FAIL play: $LAST"; fail=1;; esac
fi
check "play a missing file" 1 "$exe" play "$tmp/none.mp4"
check "play junk" 1 env SDL_VIDEODRIVER=dummy "$exe" play "$tmp/junk.png"
check "play without a file" 2 "$exe" play
# A project opens in the studio; without a display, a clear refusal.
printf 'x' >"$tmp/p.medley"
check "a project without a display" 1 env -u DISPLAY -u WAYLAND_DISPLAY "$exe" "$tmp/p.medley"
case "$LAST" in *"p.medley"*) echo "ok   names the project";; *) echo "FAIL: $LAST"; fail=1;; esac
check "a missing project" 1 "$exe" "$tmp/none.medley"
exit $fail
