#!/bin/sh
# Smoke test of the ferry-delta tool: make, info, apply, full, and refusal of a wrong base.
set -eu
FD_BIN="$1"
# FERRY_TEST_EXEC_PREFIX: the emulator of a cross build tested without binfmt_misc.
FD="${FERRY_TEST_EXEC_PREFIX:+$FERRY_TEST_EXEC_PREFIX }$FD_BIN"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT INT TERM
head -c 3000000 /dev/urandom > "$dir/base"
{ head -c 5000 /dev/urandom; head -c 2000000 "$dir/base"; head -c 100000 /dev/urandom;
  tail -c 900000 "$dir/base"; } > "$dir/target"
$FD --help > /dev/null
$FD --version | grep -q "^ferry-delta "
$FD apply --version | grep -q "^ferry-delta "
$FD make --level 3 --window 1MiB --stats "$dir/base" "$dir/target" "$dir/d"
$FD info "$dir/d" | grep -q '^kind: *delta'
$FD info --json "$dir/d" | grep -q '"chunks":3'
size=$(stat -c %s "$dir/d")
[ "$size" -lt 400000 ] || { echo "delta too large: $size"; exit 1; }
$FD apply --stats "$dir/base" "$dir/d" "$dir/out"
cmp "$dir/target" "$dir/out"
$FD full --level 3 "$dir/target" "$dir/f"
$FD apply - "$dir/f" "$dir/out2"
cmp "$dir/target" "$dir/out2"
head -c 3000000 /dev/urandom > "$dir/other"
if $FD apply "$dir/other" "$dir/d" "$dir/out3" 2> "$dir/err"; then
  echo "apply on a wrong base succeeded"; exit 1
fi
grep -q 'base mismatch' "$dir/err"
[ ! -e "$dir/out3" ]
if $FD bogus 2>/dev/null; then exit 1; fi
echo ok
