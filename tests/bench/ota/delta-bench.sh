#!/bin/bash
# delta-bench: ferry's delta size, make/apply time and apply memory beside the static delta tools
# Debian ships (bsdiff, xdelta3, zstd --patch-from -19 / --ultra -22, casync, zchunk), on a corpus
# this script builds (bounded to a couple of minutes):
#   ext4    two ext4 images made with mke2fs -d from Debian-like trees copied from this host's /usr
#           and /etc; the newer one adds "packages" (more trees), changes configs, deletes files
#   model   a 100 MB model file and a retrained one with ~5 % of it rewritten in 40 regions
#   binary  two static builds of ferry-delta: the second from sources with a small code change
# Targets (issue 7): ferry's delta <= 1.25x the smallest delta of the other tools on each pair,
# ferry applies in <= 64 MiB of anonymous memory. Exit status 1 when a target is missed.
# Not a ctest test: it is a benchmark; figures depend on the (shared) machine.
set -u
here=$(cd "$(dirname "$0")" && pwd)
FD=${FERRY_DELTA:-$here/ferry-delta}
SRC=${FERRY_SRC:-$(cd "$here/../.." 2>/dev/null && pwd)}
pairs="ext4 model binary"
keep=""
level=19
usage() {
  cat <<USAGE
usage: delta-bench [--pairs "ext4 model binary"] [--keep DIR] [--level N] [--only-zstd]
       (env TOOL_TIMEOUT=seconds per tool run, default 1200)
  --pairs   which corpus pairs to run (default: all three)
  --keep    build the corpus in DIR and keep it (reused when present)
  --level   ferry's zstd level (default 19)
  --only-zstd  compare with zstd --patch-from only (quick tuning runs)
Environment: FERRY_DELTA (path of ferry-delta), FERRY_SRC (source tree, for the binary pair).
Prints one table per pair and a verdict per target; exit 1 when a target is missed.
USAGE
}
only_zstd=0
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --pairs) pairs="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    --level) level="$2"; shift 2 ;;
    --only-zstd) only_zstd=1; shift ;;
    *) echo "delta-bench: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
[ -x "$FD" ] || { echo "delta-bench: ferry-delta not found at $FD (set FERRY_DELTA)" >&2; exit 2; }
if [ -n "$keep" ]; then mkdir -p "$keep"; W=$(cd "$keep" && pwd); else
  W=$(mktemp -d /var/tmp/delta-bench.XXXXXX); trap 'rm -rf "$W"' EXIT INT TERM; fi
echo "delta-bench: corpus in $W (shared, loaded machine: times are indicative)"

mk_ext4() {
  [ -f "$W/ext4.old" ] && [ -f "$W/ext4.new" ] && return 0
  local a="$W/tree-old" b="$W/tree-new"
  rm -rf "$a" "$b"; mkdir -p "$a/usr/lib/python3" "$a/usr/include" "$a/usr/share" "$a/etc" "$a/usr/bin"
  cp -a /usr/lib/python3/dist-packages "$a/usr/lib/python3/" 2>/dev/null
  cp -a /usr/include/linux /usr/include/asm-generic "$a/usr/include/" 2>/dev/null
  cp -a /usr/share/perl5 "$a/usr/share/" 2>/dev/null
  (cd /etc && tar cf - --exclude=shadow* --exclude=gshadow* --exclude=ssl/private . 2>/dev/null) | (cd "$a/etc" && tar xf - 2>/dev/null)
  for f in bash ls cp tar gzip sed grep find; do cp -a "/usr/bin/$f" "$a/usr/bin/" 2>/dev/null; done
  cp -a "$a" "$b"
  # the newer release: new packages, changed configs, edited sources, removed files
  cp -a /usr/include/c++ "$b/usr/include/" 2>/dev/null
  mkdir -p "$b/usr/share/locale" && cp -a /usr/share/locale/de "$b/usr/share/locale/" 2>/dev/null
  find "$b/etc" -type f -size -8k 2>/dev/null | sort | head -60 | while read -r f; do
    printf '\n# changed by release 2\nsetting_%s = on\n' "$(basename "$f")" >> "$f"; done
  find "$b/usr/lib/python3" -name '*.py' | sort | awk 'NR % 23 == 0' | while read -r f; do
    sed -i '1i # patched in release 2' "$f"; done
  find "$b/usr/share/perl5" -type f | sort | awk 'NR % 5 == 0' | xargs -r rm -f
  local size_mb=$(( ($(du -sm "$b" | cut -f1) * 13 / 10) + 16 ))
  for v in old new; do
    local t=$a; [ $v = new ] && t=$b
    mke2fs -q -F -t ext4 -b 4096 -m 0 -U 0b8a3e1c-1d3f-4a55-9a4e-5b1f0e5a7c01 \
      -E root_owner=0:0,hash_seed=6f1e3c2a-0b9d-4c8e-8f7a-1e2d3c4b5a69,nodiscard \
      -d "$t" "$W/ext4.$v" "${size_mb}M" || return 1
  done
  rm -rf "$a" "$b"
}

mk_model() {
  [ -f "$W/model.old" ] && [ -f "$W/model.new" ] && return 0
  python3 - "$W" <<'PY'
import random, sys
w = sys.argv[1]
r = random.Random(20240601)
size = 100 * 1000 * 1000
# float32-like weights: random mantissas with a narrow exponent range (what trained weights
# look like to a compressor: mostly incompressible, a little structure in the exponent bytes)
old = bytearray(r.randbytes(size))
old[3::4] = bytes((0x3c + (b & 3)) for b in old[3::4])
new = bytearray(old)
changed = 0
for i in range(40):  # ~5 % retrained, in 40 layer-like regions
    n = size // 20 // 40
    at = r.randrange(0, size - n) & ~3
    block = bytearray(r.randbytes(n))
    block[3::4] = bytes((0x3c + (b & 3)) for b in block[3::4])
    new[at:at + n] = block
    changed += n
open(w + "/model.old", "wb").write(old)
open(w + "/model.new", "wb").write(new)
PY
}

mk_binary() {
  [ -f "$W/binary.old" ] && [ -f "$W/binary.new" ] && return 0
  local s="$W/src"; rm -rf "$s"; mkdir -p "$s/transport" "$s/common"
  cp "$SRC"/common/*.c "$SRC"/common/*.h "$s/common/" && cp "$SRC"/transport/delta.[ch] "$s/transport/" &&
    cp "$SRC"/cloud-ingest/release/ferry-delta.c "$s/" || return 1
  local cc="cc -std=gnu11 -O2 -g -D_GNU_SOURCE -I$s"
  local libs="-Wl,-Bstatic -lzstd -lsodium -Wl,-Bdynamic -lpthread"
  $cc -o "$W/binary.old" "$s"/ferry-delta.c "$s"/transport/delta.c "$s"/common/*.c $libs || return 1
  # the "next commit": a tuning constant and a message changed, one function grew
  sed -i 's/#define DELTA_PAD 4096u/#define DELTA_PAD 8192u/; s/zstd error/zstd refused the frame/' "$s/transport/delta.c"
  sed -i 's/show a delta.s header/show the header of a delta/' "$s/ferry-delta.c"
  # a new subcommand early in the file: everything after it moves, as in a real release
  cat > "$s/extra.h" <<'C'
#include <stdio.h>
static int cmd_version(int argc, char **argv) {
    for (int i = 0; i < argc; i++) printf("arg %d: %s\n", i, argv[i]);
    printf("ferry-delta 0.2.0 (format %u, window max %u, ref max %u)\n", 1u, 16u << 20, 64u << 20);
    return 0;
}
C
  sed -i 's|#include "transport/delta.h"|#include "transport/delta.h"\n#include "extra.h"|; s|if (strcmp(cmd, "info") == 0)|if (strcmp(cmd, "version") == 0) return cmd_version(argc, argv);\n    if (strcmp(cmd, "info") == 0)|' "$s/ferry-delta.c"
  $cc -o "$W/binary.new" "$s"/ferry-delta.c "$s"/transport/delta.c "$s"/common/*.c $libs || return 1
  rm -rf "$s"
}

t0=$(date +%s)
for p in $pairs; do
  case $p in ext4) mk_ext4 ;; model) mk_model ;; binary) mk_binary ;;
    *) echo "unknown pair $p" >&2; exit 2 ;; esac || { echo "delta-bench: building the $p corpus failed" >&2; exit 1; }
done
echo "corpus built in $(( $(date +%s) - t0 )) s"

# run NAME CMD... : times a command, records elapsed seconds and peak RSS (KiB) in $T_S / $T_KB
# (a tool that runs longer than TOOL_TIMEOUT seconds, default 1200, is stopped and reported as
# timed out: bsdiff's suffix sort can take very long on large images on a loaded machine)
TOOL_TIMEOUT=${TOOL_TIMEOUT:-1200}
run() {
  T_S=-; T_KB=0; T_OK=1
  if ! timeout "$TOOL_TIMEOUT" /usr/bin/time -o "$W/time.txt" -f '%e %M' "$@" > /dev/null 2> "$W/run.err"; then
    T_OK=0
  fi
  [ -s "$W/time.txt" ] && read -r T_S T_KB < "$W/time.txt" 2>/dev/null
  rm -f "$W/time.txt"
  return 0
}
fsize() { stat -c %s "$1" 2>/dev/null; }

fail=0
for p in $pairs; do
  old="$W/$p.old"; new="$W/$p.new"; d="$W/out.$p"; rm -rf "$d"; mkdir -p "$d"
  printf '\n== %s: old %s bytes, new %s bytes\n' "$p" "$(fsize "$old")" "$(fsize "$new")"
  printf '%-26s %14s %9s %10s\n' tool "delta bytes" "make s" "make MiB"
  best=""; best_tool=""
  record() { # tool bytes
    if [ "$T_OK" != 1 ] || [ -z "$2" ]; then
      printf '%-26s %14s\n' "$1" "failed or timed out after ${TOOL_TIMEOUT}s: not counted"; return 0
    fi
    printf '%-26s %14s %9s %10s\n' "$1" "$2" "$T_S" "$(( ${T_KB:-0} / 1024 ))"
    if [ -z "$best" ] || [ "$2" -lt "$best" ]; then best=$2; best_tool=$1; fi
  }
  if [ $only_zstd = 0 ]; then
    if command -v bsdiff > /dev/null; then run bsdiff "$old" "$new" "$d/bsdiff"; record bsdiff "$(fsize "$d/bsdiff" 2>/dev/null)"
    else echo "bsdiff: not installed, skipped"; fi
    if command -v xdelta3 > /dev/null; then
      run xdelta3 -e -9 -f -B 1073741824 -s "$old" "$new" "$d/xdelta3"; record "xdelta3 -9" "$(fsize "$d/xdelta3")"
    else echo "xdelta3: not installed, skipped"; fi
  fi
  sz=$(fsize "$old"); wl=$(python3 -c "import math;print(max(10,min(31,math.ceil(math.log2($sz+1)))))")
  run zstd -q -f -19 --long=$wl --patch-from="$old" "$new" -o "$d/zstd19"; record "zstd --patch-from -19" "$(fsize "$d/zstd19")"
  run zstd -q -f --ultra -22 --long=$wl --patch-from="$old" "$new" -o "$d/zstd22"; record "zstd --patch-from -22" "$(fsize "$d/zstd22")"
  if [ $only_zstd = 0 ]; then
    if command -v casync > /dev/null; then
      # delta = compressed chunks of the new index missing from the old store
      casync make --store="$d/ca-old" "$d/old.caibx" "$old" > /dev/null 2>&1
      run casync make --store="$d/ca-new" "$d/new.caibx" "$new"
      cab=0
      while read -r f; do rel=${f#"$d/ca-new/"}; [ -e "$d/ca-old/$rel" ] || cab=$((cab + $(fsize "$f"))); done \
        < <(find "$d/ca-new" -name '*.cacnk')
      cab=$((cab + $(fsize "$d/new.caibx"))); record "casync (missing chunks)" "$cab"
    else echo "casync: not installed, skipped"; fi
    if command -v zck > /dev/null && command -v zck_delta_size > /dev/null; then
      zck -o "$d/old.zck" "$old" > /dev/null 2>&1
      run zck -o "$d/new.zck" "$new"
      zd=$(zck_delta_size "$d/old.zck" "$d/new.zck" 2>/dev/null | grep -Eo 'download [0-9]+' | grep -Eo '[0-9]+' | head -1)
      if [ -z "$zd" ]; then zd=$(zck_delta_size "$d/old.zck" "$d/new.zck" 2>&1 | grep -Eo '[0-9]+ bytes' | head -1 | grep -Eo '[0-9]+'); fi
      if [ -n "$zd" ]; then record "zchunk (download)" "$zd"; else echo "zchunk: could not read zck_delta_size output, skipped"; fi
    else echo "zchunk: not installed, skipped"; fi
  fi
  others_best=$best; others_tool=$best_tool
  run "$FD" make --level "$level" "$old" "$new" "$d/ferry"; fmake_s=$T_S; fmake_kb=$T_KB
  fbytes=$(fsize "$d/ferry")
  record "ferry-delta -$level" "$fbytes"
  "$FD" apply --stats "$old" "$d/ferry" "$d/ferry.out" 2> "$d/apply.txt" > /dev/null
  if ! cmp -s "$new" "$d/ferry.out"; then echo "FAIL: ferry apply did not reproduce $p"; fail=1; fi
  cat "$d/apply.txt"
  anon_kib=$(grep -Eo 'peak anon [0-9]+' "$d/apply.txt" | grep -Eo '[0-9]+')
  ratio=$(python3 -c "print('%.3f' % ($fbytes / $others_best))")
  ok_size=$(python3 -c "print(1 if $fbytes <= 1.25 * $others_best else 0)")
  printf 'ferry/%s = %s (target <= 1.25): %s; apply peak anon %s KiB (target <= 65536): %s\n' \
    "$others_tool" "$ratio" "$([ "$ok_size" = 1 ] && echo PASS || echo MISS)" "${anon_kib:-?}" \
    "$([ -n "$anon_kib" ] && [ "$anon_kib" -le 65536 ] && echo PASS || echo MISS)"
  [ "$ok_size" = 1 ] || fail=1
  [ -n "$anon_kib" ] && [ "$anon_kib" -le 65536 ] || fail=1
  rm -rf "$d"
done
echo "total $(( $(date +%s) - t0 )) s"
exit $fail
