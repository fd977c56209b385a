#!/bin/sh
# `ferry release` end to end: keygen, create (full + delta artifacts), sign, verify, and the
# refusals a device applies (unknown key, tampered manifest, wrong device class, downgrade).
set -eu
FERRY="$1"
# FERRY_TEST_EXEC_PREFIX: the emulator of a cross build tested without binfmt_misc
# (scripts/cross-arm64.sh) runs the program under test.
run_ferry() { ${FERRY_TEST_EXEC_PREFIX:-} "$FERRY" "$@"; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT INT TERM
head -c 2000000 /dev/urandom > "$dir/v1.img"
{ head -c 1500000 "$dir/v1.img"; head -c 50000 /dev/urandom; tail -c 400000 "$dir/v1.img"; } > "$dir/v2.img"
run_ferry release --help > /dev/null
run_ferry release keygen "$dir/rel" > /dev/null
run_ferry release keygen "$dir/other" > /dev/null
[ "$(stat -c %a "$dir/rel.key")" = 600 ]
run_ferry release create --component rootfs --version 2.0.0 --device-class jetson-orin-nano \
  --serial 2 --target "$dir/v2.img" --base "$dir/v1.img" --base-version 1.0.0 --level 3 \
  --out-dir "$dir/out" --key "$dir/rel.key" > "$dir/create.txt"
grep -q '^full artifact' "$dir/create.txt"
grep -q '^delta artifact' "$dir/create.txt"
run_ferry release verify --pub "$dir/rel.pub" --device-class jetson-orin-nano --running 1.0.0 \
  "$dir/out/manifest.json" | grep -q 'OK rootfs 2.0.0'
# sign separately from create gives a manifest that verifies too
run_ferry release sign --key "$dir/rel.key" "$dir/out/payload.json" "$dir/m2.json"
run_ferry release verify --pub "$dir/rel.pub" "$dir/m2.json" > /dev/null
expect_fail() { if "$@" > /dev/null 2> "$dir/err"; then echo "unexpected success: $*"; exit 1; fi; }
# create validates every name before it writes anything (issue 13: ../../x was written first)
for bad in "--component ../../x" "--component kernel" "--version ../../x" "--device-class a/b"; do
  # shellcheck disable=SC2086
  set -- --component rootfs --version 2.0.0 --device-class jetson-orin-nano $bad
  expect_fail run_ferry release create "$@" --serial 3 --target "$dir/v2.img" --out-dir "$dir/bad-out"
  [ ! -e "$dir/bad-out" ] || { echo "release create wrote $dir/bad-out for $bad"; exit 1; }
done
expect_fail run_ferry release create --component rootfs --version 2.0.0 --device-class c \
  --serial 3 --target "$dir/v2.img" --base "$dir/v1.img" --base-version "../1" --out-dir "$dir/bad-out"
[ ! -e "$dir/bad-out" ]
# refusals
expect_fail run_ferry release verify --pub "$dir/other.pub" "$dir/out/manifest.json"
grep -q 'unknown key' "$dir/err"
expect_fail run_ferry release verify --pub "$dir/rel.pub" --device-class jetson-agx-orin "$dir/out/manifest.json"
grep -q 'wrong device class' "$dir/err"
expect_fail run_ferry release verify --pub "$dir/rel.pub" --device-class jetson-orin-nano --running 2.1.0 "$dir/out/manifest.json"
grep -q 'downgrade' "$dir/err"
# one hex digit of the signature changed
sed 's/"sig":"0/"sig":"1/; t; s/"sig":"./"sig":"0/' "$dir/out/manifest.json" > "$dir/bad.json"
! cmp -s "$dir/out/manifest.json" "$dir/bad.json"
expect_fail run_ferry release verify --pub "$dir/rel.pub" "$dir/bad.json"
grep -q "bad manifest signature" "$dir/err"
# a release condition on local metrics: in the signed payload, shown by verify; a bad one is
# refused before anything is written, with the word at fault
run_ferry release create --component model --version 3.0.0 --device-class jetson-orin-nano \
  --serial 4 --target "$dir/v2.img" --out-dir "$dir/cond" --key "$dir/rel.key" \
  --condition 'detector.confidence mean 24h < 0.6 min_samples 10' > /dev/null
grep -q '"condition":{"metric":"detector.confidence","stat":"mean","window":"24h","op":"<"' \
  "$dir/cond/payload.json"
run_ferry release verify --pub "$dir/rel.pub" "$dir/cond/manifest.json" \
  | grep -q '^condition detector.confidence mean 24h < 0.6 (min 10 samples)$'
expect_fail run_ferry release create --component model --version 3.0.0 --device-class c \
  --serial 4 --target "$dir/v2.img" --out-dir "$dir/bad-cond" --condition 'detector.confidence p99 24h < 0.6'
grep -q 'stat "p99" is not one of' "$dir/err"
[ ! -e "$dir/bad-cond" ]
# a signed manifest whose condition devices cannot read: verify refuses it
sed 's/"stat":"mean"/"stat":"p99"/' "$dir/cond/payload.json" > "$dir/cond-bad.json"
run_ferry release sign --key "$dir/rel.key" "$dir/cond-bad.json" "$dir/cond-bad-manifest.json"
expect_fail run_ferry release verify --pub "$dir/rel.pub" "$dir/cond-bad-manifest.json"
grep -q 'stat "p99"' "$dir/err"
# the artifacts are content addressed and the delta applies to the base
for f in "$dir"/out/*; do case $(basename "$f") in payload.json|manifest.json) ;; *)
  [ "$(sha256sum "$f" | cut -c1-64)" = "$(basename "$f")" ] ;; esac; done
echo ok
