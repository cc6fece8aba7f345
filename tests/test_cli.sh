#!/bin/sh
# test_cli.sh MEDLEY — the command line: help, info, bad options refused
# with a reason, and a short demo run that learns.
set -u
exe=$1
fail=0
check() { # name, expected status, command...
    name=$1; want=$2; shift 2
    out=$("$@" 2>&1); got=$?
    if [ "$got" = "$want" ]; then echo "ok   $name"; else echo "FAIL $name (exit $got, wanted $want): $out"; fail=1; fi
    LAST="$out"
}
check "help" 0 "$exe" --help
check "info" 0 "$exe" info
case "$LAST" in *oneDNN*) echo "ok   info names oneDNN";; *) echo "FAIL info: $LAST"; fail=1;; esac
check "unknown command refused" 2 "$exe" frobnicate
check "bad --steps refused" 2 "$exe" demo --steps abc
case "$LAST" in *'--steps "abc"'*) echo "ok   message names the value";; *) echo "FAIL message: $LAST"; fail=1;; esac
check "zero --batch refused" 2 "$exe" demo --batch 0
check "short demo" 0 "$exe" demo --steps 40 --batch 16 --length 4
case "$LAST" in *"held-out strings reversed exactly"*) echo "ok   demo reports accuracy";; *) echo "FAIL demo output: $LAST"; fail=1;; esac
exit $fail
