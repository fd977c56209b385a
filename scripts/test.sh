#!/bin/sh
# Runs ferry's whole test suite: the normal build and the sanitizer build (clang, ASan + UBSan,
# with the libFuzzer targets, which ctest runs for a bounded time each). Fails on any failure.
#
#   scripts/test.sh            both builds, then the packages stage
#   scripts/test.sh normal     only the normal build (build/)
#   scripts/test.sh sanitize   only the sanitizer build (build-asan/)
#   scripts/test.sh packages   Debian packages: build, lintian, install, start (root; see
#                              scripts/test-packages.sh)
#   scripts/test.sh arm64      optional: aarch64 cross build, its tests under qemu-user and the
#                              arm64 ferryd package (scripts/cross-arm64.sh; not part of "all")
#
# Environment: FERRY_TEST_JOBS (default: number of cores), FERRY_FUZZ_SECONDS (default 60).
set -eu
cd "$(dirname "$0")/.."
jobs=${FERRY_TEST_JOBS:-$(nproc)}
what=${1:-all}

run_normal() {
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_WERROR=ON
    cmake --build build -j "$jobs"
    (cd build && ctest --output-on-failure -j "$jobs" --timeout 600)
}

run_sanitize() {
    CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=ON -DFERRY_FUZZ=ON -DFERRY_WERROR=ON
    cmake --build build-asan -j "$jobs"
    # halt_on_error: a sanitizer finding fails the test that triggered it.
    ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        sh -c 'cd build-asan && ctest --output-on-failure -j "$0" --timeout 900' "$jobs"
}

case "$what" in
all) run_normal; run_sanitize; FERRY_DEB_JOBS=$jobs scripts/test-packages.sh ;;
normal) run_normal ;;
sanitize) run_sanitize ;;
packages) FERRY_DEB_JOBS=$jobs scripts/test-packages.sh ;;
arm64) FERRY_ARM64_JOBS=$jobs scripts/cross-arm64.sh ;;
*) echo "usage: $0 [all|normal|sanitize|packages|arm64]" >&2; exit 2 ;;
esac
echo "ferry: all tests passed ($what)"
