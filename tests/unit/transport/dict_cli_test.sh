#!/bin/sh
# dict_cli_test.sh FERRY CODEC_BENCH - `ferry dict train` on a generated corpus writes a zstd
# dictionary whose id `ferry dict id` reproduces; bad usage exits 2, bad input exits 1.
set -eu
ferry=$1
bench=$2
# FERRY_TEST_EXEC_PREFIX: the emulator of a cross build tested without binfmt_misc
# (scripts/cross-arm64.sh) runs the programs under test.
run_ferry() { ${FERRY_TEST_EXEC_PREFIX:-} "$ferry" "$@"; }
run_bench() { ${FERRY_TEST_EXEC_PREFIX:-} "$bench" "$@"; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT INT TERM
run_bench --seconds 600 --write-corpus "$dir"
out=$(run_ferry dict train --out "$dir/d.zdict" --size 16KiB --lp "$dir/metrics.lp" --log "$dir/app.log")
echo "$out"
id=$(echo "$out" | sed -n 's/^dictionary \([0-9]*\) .*/\1/p')
[ -n "$id" ] || { echo "no id printed"; exit 1; }
[ "$(run_ferry dict id "$dir/d.zdict")" = "$id" ] || { echo "id differs"; exit 1; }
size=$(wc -c < "$dir/d.zdict")
[ "$size" -le 16384 ] && [ "$size" -gt 1000 ] || { echo "size $size"; exit 1; }
set +e
run_ferry dict train --out "$dir/x" >/dev/null 2>&1; [ $? -eq 2 ] || { echo "usage not 2"; exit 1; }
run_ferry dict id "$dir/metrics.lp" >/dev/null 2>&1; [ $? -eq 1 ] || { echo "bad dict not 1"; exit 1; }
run_ferry dict train --out "$dir/x" --lp "$dir/missing" >/dev/null 2>&1; [ $? -eq 1 ] || { echo "missing not 1"; exit 1; }
printf 'm v=\n' > "$dir/bad.lp"
msg=$(run_ferry dict train --out "$dir/x" --lp "$dir/bad.lp" 2>&1); [ $? -eq 1 ] || exit 1
echo "$msg" | grep -q "bad.lp:1:5" || { echo "error does not say where: $msg"; exit 1; }
echo ok
