#!/bin/sh
# Cross-builds ferry's device side for aarch64 (NVIDIA Jetson) with Debian's cross toolchain, runs
# its unit and integration tests under qemu-user, and builds the arm64 ferryd package.
#
#   scripts/cross-arm64.sh [--install-deps] [--no-tests] [--no-deb]
#
#   --install-deps  (root) dpkg --add-architecture arm64 and install the cross toolchain, qemu-user
#                   and the :arm64 libraries (scripts/install-deps.sh arm64)
#   --no-tests      build only
#   --no-deb        no arm64 package
#
# Build: build-arm64/ with cmake/aarch64-linux-gnu.cmake, FERRY_BUILD_INGEST=OFF (the device side:
# journal, transport, engine, OTA agent, ferryd, ferry). Debian's libevent-dev is not multiarch
# (installing libevent-dev:arm64 removes the build machine's libevent-dev), so its arm64 headers,
# .pc files and link symlinks are unpacked from the .deb into build-arm64/overlay instead; the
# arm64 run-time libraries are the installed libevent-2.1-7:arm64.
#
# Tests: ctest runs each test binary through CMAKE_CROSSCOMPILING_EMULATOR (qemu-aarch64, with
# the multiarch libc6:arm64 and its own loader: see cmake/aarch64-linux-gnu.cmake). A test that
# itself starts other aarch64 programs (ferryd, ferry) runs them through the emulator named by
# FERRY_TEST_EXEC_PREFIX when the kernel has no binfmt_misc entry for aarch64 (CI containers):
# the script sets it to qemu-aarch64-static then. FERRY_ARM64_TEST_TIMEOUT bounds each test (default
# 600 s, in place of the tests' native TIMEOUT properties: qemu runs them several times slower;
# scripts/ctest-emulated.py). FERRY_ARM64_TESTS replaces the test regex.
#
# Environment: FERRY_ARM64_JOBS (default: number of cores).
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)
build="$src/build-arm64"
jobs=${FERRY_ARM64_JOBS:-$(nproc)}
triplet=aarch64-linux-gnu
install_deps=0
run_tests=1
make_deb=1
for arg in "$@"; do
    case "$arg" in
    --install-deps) install_deps=1 ;;
    --no-tests) run_tests=0 ;;
    --no-deb) make_deb=0 ;;
    *) echo "usage: $0 [--install-deps] [--no-tests] [--no-deb]" >&2; exit 2 ;;
    esac
done
start=$(date +%s)
if [ "$install_deps" = 1 ]; then
    scripts/install-deps.sh arm64
fi
for tool in $triplet-gcc qemu-aarch64-static; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "cross-arm64: $tool not found: run $0 --install-deps as root" >&2
        exit 1
    fi
done

# libevent-dev:arm64, unpacked beside the build (see above), at the installed run-time version.
overlay="$build/overlay"
levver=$(dpkg-query -W -f='${Version}' libevent-2.1-7:arm64 2>/dev/null || true)
if [ -z "$levver" ]; then
    echo "cross-arm64: libevent-2.1-7:arm64 is not installed: run $0 --install-deps as root" >&2
    exit 1
fi
if [ ! -f "$overlay/.version" ] || [ "$(cat "$overlay/.version")" != "$levver" ]; then
    rm -rf "$overlay"
    mkdir -p "$overlay/debs"
    (cd "$overlay/debs" && apt-get download -q "libevent-dev:arm64=$levver")
    dpkg-deb -x "$overlay"/debs/libevent-dev_*_arm64.deb "$overlay"
    libdir="$overlay/usr/lib/$triplet"
    # The .so link symlinks point at the run-time libraries, which are installed system-wide.
    for l in "$libdir"/*.so; do
        [ -L "$l" ] && ln -sf "/usr/lib/$triplet/$(readlink "$l")" "$l"
    done
    sed -i "s|^prefix=/usr\$|prefix=$overlay/usr|" "$libdir"/pkgconfig/*.pc
    echo "$levver" >"$overlay/.version"
fi
export FERRY_CROSS_PKG_CONFIG_PATH="$overlay/usr/lib/$triplet/pkgconfig"

cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE="$src/cmake/aarch64-linux-gnu.cmake" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_WERROR=ON -DFERRY_BUILD_INGEST=OFF \
    -DFERRY_BUILD_SIMULATORS=OFF
cmake --build "$build" -j "$jobs"
file "$build/bin/ferryd" | grep -q "ARM aarch64" || {
    echo "cross-arm64: $build/bin/ferryd is not an aarch64 program" >&2
    exit 1
}
built=$(date +%s)
echo "cross-arm64: built in $((built - start)) s"

if [ "$run_tests" = 1 ]; then
    # Tests whose binary does all the work in its own process (run through the emulator): the
    # journal, the collectors, the sync engine and HTTP client, the transport codecs, the OTA
    # manifest / health gate / metered-link policy, two quick benchmarks, and the journal's crash
    # test (150 SIGKILLs of a forked child: fork needs no binfmt). Left out by default
    # (FERRY_ARM64_TESTS runs it): ota_delta, which compresses its test images at zstd level
    # 19, several minutes of emulated CPU.
    direct='unit\.common|unit\.journal|unit\.engine\.(config|input|collect_system|collect_jetson|collect_tail|collect_prom|collect_journald)|unit\.transport\.(lineproto|batch|dict)|unit\.sync\.(http_client|policy|netlink|engine)|ota_(manifest|gate|metered)|bench\.(journal\.quick|transport\.codec)|chaos\.journal\.sigkill'
    # Tests that start other aarch64 programs (through FERRY_TEST_EXEC_PREFIX without binfmt).
    spawning='integration\.engine\.(ferryd|influx_query|prometheus_scrape)|unit\.journal\.cli|unit\.transport\.dict_cli|ota_delta_cli_smoke|ota_release_cli'
    regex="^($direct|$spawning)\$"
    if ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
        FERRY_TEST_EXEC_PREFIX=$(command -v qemu-aarch64-static)
        export FERRY_TEST_EXEC_PREFIX
        echo "cross-arm64: no binfmt_misc entry for aarch64: the tests start aarch64 programs" \
            "through $FERRY_TEST_EXEC_PREFIX"
    fi
    regex=${FERRY_ARM64_TESTS:-$regex}
    # Not plain ctest: each test's TIMEOUT is sized for native speed (see ctest-emulated.py).
    python3 scripts/ctest-emulated.py "$build" "$regex" "${FERRY_ARM64_TEST_TIMEOUT:-600}" "$jobs"
    tested=$(date +%s)
    echo "cross-arm64: tests under qemu in $((tested - built)) s"
fi

if [ "$make_deb" = 1 ]; then
    debstart=$(date +%s)
    PKG_CONFIG_PATH="$FERRY_CROSS_PKG_CONFIG_PATH" scripts/build-deb.sh arm64
    echo "cross-arm64: arm64 package in $(($(date +%s) - debstart)) s"
fi
echo "cross-arm64: done in $(($(date +%s) - start)) s"
