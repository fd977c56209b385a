#!/bin/sh
# Builds ferry's Debian packages (docs/packaging.md) into dist/:
#
#   scripts/build-deb.sh            amd64 (the build machine's architecture): ferryd, ferry-ingest,
#                                   ferry-tools
#   scripts/build-deb.sh arm64      ferryd only, cross-built for aarch64 (Jetson). Run by
#                                   scripts/cross-arm64.sh, which installs the cross toolchain and
#                                   :arm64 libraries and provides libevent-dev:arm64 (not
#                                   multiarch in Debian 12) through PKG_CONFIG_PATH
#
# The packaging lives in packaging/debian/. dpkg-buildpackage wants it as debian/ at the top of the
# source tree and writes its build directories there, so the tree is copied (the files git knows,
# as they are in the work tree, or everything but build directories outside a git checkout) to a
# scratch directory and built there; the work tree is never written to. lintian checks every
# package; a lintian error or warning fails the build.
#
# Environment: FERRY_DEB_OUT (default dist/), FERRY_DEB_JOBS (default: number of cores),
# FERRY_DEB_LINTIAN=0 to skip lintian.
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)
arch=${1:-$(dpkg --print-architecture)}
out=${FERRY_DEB_OUT:-$src/dist}
jobs=${FERRY_DEB_JOBS:-$(nproc)}
build_arch=$(dpkg --print-architecture)

case "$arch" in
"$build_arch") cross= ;;
arm64) cross=1 ;;
*) echo "usage: $0 [$build_arch|arm64]" >&2; exit 2 ;;
esac

for tool in dpkg-buildpackage dh lintian; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build-deb: $tool not found: run scripts/install-deps.sh as root" >&2
        exit 1
    fi
done

scratch=$(mktemp -d "${TMPDIR:-/tmp}/ferry-deb.XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM
tree="$scratch/ferry"
mkdir -p "$tree" "$out"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked and new (not ignored) files, with their work-tree contents; deleted files skipped.
    git -C "$src" ls-files -z --cached --others --exclude-standard |
        (cd "$src" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
        tar -C "$src" --null -T - -cf - | tar -C "$tree" -xf -
else
    tar -C "$src" --exclude='./build*' --exclude=./dist --exclude=./.git -cf - . |
        tar -C "$tree" -xf -
fi
cp -r "$tree/packaging/debian" "$tree/debian"

set -- -b -us -uc -j"$jobs"
if [ -n "$cross" ]; then
    # Cross build: debhelper passes the cross compiler and aarch64-linux-gnu-pkg-config to CMake.
    # Only ferryd: the ingest's libpq-dev cannot be installed for a second architecture.
    # -d: the build-dependency check would ask for libevent-dev:arm64, which cannot be installed
    # beside the build machine's libevent-dev; scripts/cross-arm64.sh provides it unpacked.
    set -- "$@" -d -a"$arch" -Pcross,nocheck,pkg.ferry.deviceonly
fi
echo "build-deb: building $arch packages in $tree"
# noddebs: no -dbgsym packages (the binaries keep no debug information in the packages).
(cd "$tree" && DEB_BUILD_OPTIONS="noddebs ${DEB_BUILD_OPTIONS:-}" dpkg-buildpackage "$@")

changes="$scratch/ferry_$(dpkg-parsechangelog -l "$tree/debian/changelog" -SVersion)_$arch.changes"
debs=$(sed -n '/^Files:/,/^[A-Z]/s/^ .* \([^ ]*\.deb\)$/\1/p' "$changes")
for deb in $debs; do
    cp "$scratch/$deb" "$out/"
done

if [ "${FERRY_DEB_LINTIAN:-1}" != 0 ]; then
    echo "build-deb: lintian"
    # shellcheck disable=SC2086
    (cd "$out" && lintian --fail-on error,warning $debs)
fi
for deb in $debs; do
    echo "build-deb: $out/$deb"
done
