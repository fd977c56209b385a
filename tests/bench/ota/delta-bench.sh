#!/bin/bash
# delta-bench: ferry's delta size, make/apply time and apply memory beside the static delta tools
# Debian ships (bsdiff, xdelta3, zstd --patch-from -19 / --ultra -22 / -19 --long, casync,
# zchunk), all in the same run, on a corpus this script builds or downloads at run time (nothing
# of it is committed):
#   ext4    two ext4 images made with mke2fs -d from Debian-like trees copied from this host's /usr
#           and /etc; the newer one adds "packages" (more trees), changes configs, deletes files
#   model   a 100 MB model file and a retrained one with ~5 % of it rewritten in 40 regions
#   binary  two static builds of ferry-delta: the second from sources with a small code change
#   PKG-ARCH  (git, sshd, crypto, python, postgres; amd64 or arm64) an executable or shared
#           library from two Debian 12 versions of its package (bookworm and bookworm-security or
#           -updates), fetched with `apt-get download PKG:ARCH=VERSION`; arm64 needs
#           `dpkg --add-architecture arm64 && apt-get update` once
#   rootfs-arm64  ext4 images of an aarch64 tree made of those packages' older versions, and of
#           the same tree where three packages (git, openssh-server, libssl3) were updated
# Targets (issue 18): ferry's delta <= 1.0x the smallest delta of the other tools on each pair;
# ferry's apply CPU time (user + system: elapsed time on a shared machine is mostly other
# people's load, and ferry fsyncs the target where the others do not) <= 1.5x that of
# zstd --patch-from -19 (median of --runs runs, to the millisecond; elapsed times are printed
# too); ferry applies in <= 64 MiB of anonymous memory; every tool's output is compared with the
# target byte for byte.
# Exit status 1 when a target is missed. Not a ctest test: figures depend on the (shared) machine.
set -u
here=$(cd "$(dirname "$0")" && pwd)
FD=${FERRY_DELTA:-$here/ferry-delta}
SRC=${FERRY_SRC:-$(cd "$here/../.." 2>/dev/null && pwd)}
exe_pairs="git-amd64 git-arm64 sshd-amd64 sshd-arm64 crypto-amd64 crypto-arm64 python-amd64
python-arm64 postgres-amd64 postgres-arm64 rootfs-arm64"
pairs="ext4 model binary $exe_pairs"
keep=""
level=19
runs=3
usage() {
  cat <<USAGE
usage: delta-bench [--pairs "ext4 model binary git-arm64 ..."] [--keep DIR] [--level N]
                   [--runs N] [--only-zstd]
       (env TOOL_TIMEOUT=seconds per tool run, default 1200)
  --pairs   which corpus pairs to run (default: all: ext4 model binary $(echo $exe_pairs))
  --keep    build the corpus in DIR and keep it (reused when present)
  --level   ferry's zstd level (default 19)
  --runs    apply runs per tool; the median is reported (default 3)
  --only-zstd  compare with zstd --patch-from only (quick tuning runs)
Environment: FERRY_DELTA (path of ferry-delta), FERRY_SRC (source tree, for the binary pair).
Prints one table per pair, "name: value" lines, a verdict per target; exit 1 when one is missed.
USAGE
}
only_zstd=0
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --pairs) pairs="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    --level) level="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
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


# Debian packages of the executable pairs: PKG OLD-VERSION NEW-VERSION PATH-IN-PACKAGE
deb_spec() {
  case $1 in
    git) echo "git 1:2.39.5-0+deb12u2 1:2.39.5-0+deb12u3 usr/lib/git-core/git" ;;
    sshd) echo "openssh-server 1:9.2p1-2+deb12u9 1:9.2p1-2+deb12u10 usr/sbin/sshd" ;;
    crypto) echo "libssl3 3.0.20-1~deb12u2 3.0.22-1~deb12u2 usr/lib/TRIPLET/libcrypto.so.3" ;;
    python) echo "libpython3.11 3.11.2-6+deb12u8 3.11.2-6+deb12u9 usr/lib/TRIPLET/libpython3.11.so.1.0" ;;
    postgres) echo "postgresql-15 15.18-0+deb12u1 15.20-0+deb12u1 usr/lib/postgresql/15/bin/postgres" ;;
    *) return 1 ;;
  esac
}
triplet() { [ "$1" = arm64 ] && echo aarch64-linux-gnu || echo x86_64-linux-gnu; }

# deb_tree PKG VERSION ARCH: extracts the package into $W/deb/PKG_VERSION_ARCH (downloaded once)
deb_tree() {
  local d="$W/deb/$1_${2//:/%3a}_$3"
  [ -d "$d" ] && { echo "$d"; return 0; }
  mkdir -p "$W/deb/dl" && (cd "$W/deb/dl" && apt-get download -q "$1:$3=$2" > /dev/null 2>&1) || {
    echo "delta-bench: apt-get download $1:$3=$2 failed (arm64: dpkg --add-architecture arm64 && apt-get update; versions change as Debian updates: see apt-cache madison $1)" >&2
    return 1; }
  mkdir -p "$d" && dpkg-deb -x "$W/deb/dl/$1_${2//:/%3a}_$3.deb" "$d" || return 1
  echo "$d"
}

mk_deb() { # NAME-ARCH
  local name=${1%-*} arch=${1##*-}
  [ -f "$W/$1.old" ] && [ -f "$W/$1.new" ] && return 0
  local spec; spec=$(deb_spec "$name") || return 1
  set -- $spec
  local path=${4//TRIPLET/$(triplet "$arch")} o n
  o=$(deb_tree "$1" "$2" "$arch") && n=$(deb_tree "$1" "$3" "$arch") || return 1
  cp "$o/$path" "$W/$name-$arch.old" && cp "$n/$path" "$W/$name-$arch.new"
}

mk_rootfs_arm64() {
  [ -f "$W/rootfs-arm64.old" ] && [ -f "$W/rootfs-arm64.new" ] && return 0
  local a="$W/rtree-old" b="$W/rtree-new" name spec
  rm -rf "$a" "$b"; mkdir -p "$a" "$b"
  for name in git sshd crypto python postgres; do
    spec=$(deb_spec $name); set -- $spec
    local o n; o=$(deb_tree "$1" "$2" arm64) && n=$(deb_tree "$1" "$3" arm64) || return 1
    cp -a "$o/." "$a/"
    case $name in git|sshd|crypto) cp -a "$n/." "$b/" ;; *) cp -a "$o/." "$b/" ;; esac
  done
  local size_mb=$(( ($(du -sm "$b" | cut -f1) * 13 / 10) + 16 ))
  for v in old new; do
    local t=$a; [ $v = new ] && t=$b
    mke2fs -q -F -t ext4 -b 4096 -m 0 -U 0b8a3e1c-1d3f-4a55-9a4e-5b1f0e5a7c02 \
      -E root_owner=0:0,hash_seed=6f1e3c2a-0b9d-4c8e-8f7a-1e2d3c4b5a70,nodiscard \
      -d "$t" "$W/rootfs-arm64.$v" "${size_mb}M" || return 1
  done
  rm -rf "$a" "$b"
}

t0=$(date +%s)
for p in $pairs; do
  case $p in ext4) mk_ext4 ;; model) mk_model ;; binary) mk_binary ;; rootfs-arm64) mk_rootfs_arm64 ;;
    *-amd64|*-arm64) mk_deb "$p" ;;
    *) echo "unknown pair $p" >&2; exit 2 ;; esac || { echo "delta-bench: building the $p corpus failed" >&2; exit 1; }
done
echo "corpus built in $(( $(date +%s) - t0 )) s"

# run CMD... : times a command once, records elapsed seconds and peak RSS (KiB) in $T_S / $T_KB
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
# apply_time OUT CMD... : median elapsed seconds of $runs runs (user+system CPU seconds in
# $A_CPU, median too) of an apply command writing OUT; A_OK=0 when one failed. The CPU time is
# the child's rusage to the microsecond, printed to the millisecond: /usr/bin/time rounds it to
# 10 ms, which is 10 % of the apply of a few-MB executable.
cat > "$W/cputime.py" <<'PY'
import resource, subprocess, sys, time
limit, out, err = float(sys.argv[1]), sys.argv[2], sys.argv[3]
# before and after: the interpreter's own start may have run children (site hooks)
before = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.monotonic()
try:
    rc = subprocess.run(sys.argv[4:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=open(err, "w"), timeout=limit).returncode
except subprocess.TimeoutExpired:
    rc = 124
e = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = ru.ru_utime + ru.ru_stime - before.ru_utime - before.ru_stime
open(out, "w").write("%.3f %.3f\n" % (e, cpu))
sys.exit(rc)
PY
apply_time() {
  local out=$1; shift
  local ts="" cs="" i e c
  A_OK=1
  for i in $(seq 1 "$runs"); do
    rm -f "$out"
    if ! python3 "$W/cputime.py" "$TOOL_TIMEOUT" "$W/atime.txt" "$W/apply.err" "$@"; then
      A_OK=0; break; fi
    read -r e c < "$W/atime.txt"
    ts="$ts $e"; cs="$cs $c"
  done
  A_S=$(echo $ts | tr ' ' '\n' | sort -g | awk '{v[NR]=$1} END {print NR ? v[int((NR+1)/2)] : "-"}')
  A_CPU=$(echo $cs | tr ' ' '\n' | sort -g | awk '{v[NR]=$1} END {print NR ? v[int((NR+1)/2)] : "-"}')
}
fsize() { stat -c %s "$1" 2>/dev/null; }
ratio() { python3 -c "print('%.3f' % ($1 / $2))" 2>/dev/null || echo -; }

fail=0
declare -a summary
for p in $pairs; do
  old="$W/$p.old"; new="$W/$p.new"; d="$W/out.$p"; rm -rf "$d"; mkdir -p "$d"
  printf '\n== %s: old %s bytes, new %s bytes\n' "$p" "$(fsize "$old")" "$(fsize "$new")"
  printf '%-24s %12s %8s %9s %9s %8s %s\n' tool "delta bytes" "make s" "make MiB" "apply s" "apply CPU" "output"
  best=""; best_tool=""; zstd_apply=""
  # record TOOL BYTES [APPLY-OUTPUT-FILE]: one table line; the output, when given, is compared
  record() {
    if [ "$T_OK" != 1 ] || [ -z "$2" ]; then
      printf '%-24s %12s\n' "$1" "failed or timed out after ${TOOL_TIMEOUT}s: not counted"; return 0
    fi
    local same="-"
    if [ -n "${3:-}" ]; then
      if [ "$A_OK" = 1 ] && cmp -s "$new" "$3"; then same=identical; else same=DIFFERENT; fail=1; fi
      rm -f "$3"
    else A_S=-; A_CPU=-; fi
    printf '%-24s %12s %8s %9s %9s %8s %s\n' "$1" "$2" "$T_S" "$(( ${T_KB:-0} / 1024 ))" "$A_S" "$A_CPU" "$same"
    local key; key=$(echo "$1" | tr -c 'a-z0-9\n' '_' | tr -s '_' | sed 's/^_//; s/_$//')
    summary+=("$p.$key.bytes: $2" "$p.$key.make_s: $T_S" "$p.$key.apply_s: $A_S" "$p.$key.apply_cpu_s: $A_CPU")
    if [ "$1" != "ferry-delta -$level" ] && { [ -z "$best" ] || [ "$2" -lt "$best" ]; }; then best=$2; best_tool=$1; fi
  }
  sz=$(fsize "$old"); wl=$(python3 -c "import math;print(max(10,min(31,math.ceil(math.log2($sz+1)))))")
  if [ $only_zstd = 0 ]; then
    if command -v bsdiff > /dev/null; then
      run bsdiff "$old" "$new" "$d/bsdiff"
      [ "$T_OK" = 1 ] && apply_time "$d/bsdiff.out" bspatch "$old" "$d/bsdiff.out" "$d/bsdiff"
      record bsdiff "$(fsize "$d/bsdiff")" "$d/bsdiff.out"
    else echo "bsdiff: not installed, skipped"; fi
    if command -v xdelta3 > /dev/null; then
      run xdelta3 -e -9 -f -B 1073741824 -s "$old" "$new" "$d/xdelta3"
      [ "$T_OK" = 1 ] && apply_time "$d/xdelta3.out" xdelta3 -d -f -B 1073741824 -s "$old" "$d/xdelta3" "$d/xdelta3.out"
      record "xdelta3 -9" "$(fsize "$d/xdelta3")" "$d/xdelta3.out"
    else echo "xdelta3: not installed, skipped"; fi
  fi
  run zstd -q -f -19 --patch-from="$old" "$new" -o "$d/zstd19"
  [ "$T_OK" = 1 ] && apply_time "$d/zstd19.out" zstd -q -f -d --long=$wl --patch-from="$old" "$d/zstd19" -o "$d/zstd19.out"
  record "zstd --patch-from -19" "$(fsize "$d/zstd19")" "$d/zstd19.out"
  [ "$T_OK" = 1 ] && zstd_apply=$A_CPU
  run zstd -q -f -19 --long=$wl --patch-from="$old" "$new" -o "$d/zstd19l"
  [ "$T_OK" = 1 ] && apply_time "$d/zstd19l.out" zstd -q -f -d --long=$wl --patch-from="$old" "$d/zstd19l" -o "$d/zstd19l.out"
  record "zstd -19 --long" "$(fsize "$d/zstd19l")" "$d/zstd19l.out"
  run zstd -q -f --ultra -22 --long=$wl --patch-from="$old" "$new" -o "$d/zstd22"
  [ "$T_OK" = 1 ] && apply_time "$d/zstd22.out" zstd -q -f -d --long=$wl --patch-from="$old" "$d/zstd22" -o "$d/zstd22.out"
  record "zstd --patch-from -22" "$(fsize "$d/zstd22")" "$d/zstd22.out"
  if [ $only_zstd = 0 ]; then
    if command -v casync > /dev/null; then
      # delta = compressed chunks of the new index missing from the old store
      casync make --store="$d/ca-old" "$d/old.caibx" "$old" > /dev/null 2>&1
      run casync make --store="$d/ca-new" "$d/new.caibx" "$new"
      cab=0
      while read -r f; do rel=${f#"$d/ca-new/"}; [ -e "$d/ca-old/$rel" ] || cab=$((cab + $(fsize "$f"))); done \
        < <(find "$d/ca-new" -name '*.cacnk')
      cab=$((cab + $(fsize "$d/new.caibx"))); record "casync (missing chunks)" "$cab"
      rm -rf "$d/ca-old" "$d/ca-new"
    else echo "casync: not installed, skipped"; fi
    if command -v zck > /dev/null && command -v zck_delta_size > /dev/null; then
      zck -o "$d/old.zck" "$old" > /dev/null 2>&1
      run zck -o "$d/new.zck" "$new"
      zd=$(zck_delta_size "$d/old.zck" "$d/new.zck" 2>/dev/null | grep -Eo 'download [0-9]+' | grep -Eo '[0-9]+' | head -1)
      if [ -z "$zd" ]; then zd=$(zck_delta_size "$d/old.zck" "$d/new.zck" 2>&1 | grep -Eo '[0-9]+ bytes' | head -1 | grep -Eo '[0-9]+'); fi
      if [ -n "$zd" ]; then record "zchunk (download)" "$zd"; else echo "zchunk: could not read zck_delta_size output, skipped"; fi
    else echo "zchunk: not installed, skipped"; fi
  fi
  run "$FD" make --level "$level" "$old" "$new" "$d/ferry"
  fbytes=$(fsize "$d/ferry")
  if [ "$T_OK" = 1 ]; then
    apply_time "$d/ferry.out" "$FD" apply "$old" "$d/ferry" "$d/ferry.out"
    "$FD" apply --stats "$old" "$d/ferry" "$d/ferry.stats.out" 2> "$d/apply.txt" > /dev/null
    rm -f "$d/ferry.stats.out"
  fi
  record "ferry-delta -$level" "$fbytes" "$d/ferry.out"
  ferry_apply=$A_CPU
  cat "$d/apply.txt" 2>/dev/null
  anon_kib=$(grep -Eo 'peak anon [0-9]+' "$d/apply.txt" 2>/dev/null | grep -Eo '[0-9]+')
  size_ratio=$(ratio "${fbytes:-0}" "${best:-1}")
  apply_ratio=$(ratio "${ferry_apply:-0}" "${zstd_apply:-0}")
  ok_size=$(python3 -c "print(1 if ${fbytes:-1e30} <= 1.0 * ${best:-0} else 0)")
  ok_apply=$(python3 -c "print(1 if '$apply_ratio' != '-' and $apply_ratio <= 1.5 else 0)" 2>/dev/null || echo 0)
  ok_anon=0; [ -n "$anon_kib" ] && [ "$anon_kib" -le 65536 ] && ok_anon=1
  printf 'ferry/%s size = %s (target <= 1.0): %s; ferry/zstd -19 apply CPU time = %s (target <= 1.5): %s; apply peak anon %s KiB (target <= 65536): %s\n' \
    "$best_tool" "$size_ratio" "$([ "$ok_size" = 1 ] && echo PASS || echo MISS)" "$apply_ratio" \
    "$([ "$ok_apply" = 1 ] && echo PASS || echo MISS)" "${anon_kib:-?}" "$([ "$ok_anon" = 1 ] && echo PASS || echo MISS)"
  summary+=("$p.size_ratio_vs_best: $size_ratio" "$p.best_other: $best_tool" "$p.apply_ratio_vs_zstd19: $apply_ratio" "$p.apply_anon_kib: ${anon_kib:-?}")
  [ "$ok_size" = 1 ] && [ "$ok_apply" = 1 ] && [ "$ok_anon" = 1 ] || fail=1
  rm -rf "$d"
done
echo
for line in "${summary[@]}"; do echo "$line"; done
echo "total_s: $(( $(date +%s) - t0 ))"
exit $fail
