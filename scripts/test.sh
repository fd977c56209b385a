#!/bin/sh
# Runs ferry's whole test suite: the normal build, the sanitizer build (clang, ASan + UBSan,
# with the libFuzzer targets, which ctest runs for a bounded time each), the build variants a
# packager may use (each must compile without a warning) and a ThreadSanitizer build of the
# threaded parts. Fails on any failure.
#
#   scripts/test.sh            normal, sanitize, variants, tsan, then the packages stage
#   scripts/test.sh normal     only the normal build (build/)
#   scripts/test.sh sanitize   only the sanitizer build (build-asan/)
#   scripts/test.sh variants   build-only: gcc Release -O3 (build-o3/), gcc LTO with
#                              _FORTIFY_SOURCE=3 (build-lto/, the programs only), clang
#                              (build-clang/; not in "all": the sanitizer build is clang);
#                              -O3 and clang run the fast unit tests
#                              (unit.common, unit.transport.*, unit.sync.policy)
#   scripts/test.sh tsan       ThreadSanitizer (build-tsan/): the log sink, journal and sync tests
#   scripts/test.sh packages   Debian packages: build, lintian, install, start (root; see
#                              scripts/test-packages.sh)
#   scripts/test.sh arm64      aarch64 cross build, its tests under qemu-user and the arm64 ferryd
#                              package (scripts/cross-arm64.sh). Part of "all" when the cross
#                              toolchain is installed (scripts/install-deps.sh arm64, as .ci/run
#                              does); skipped with a note otherwise, unless FERRY_REQUIRE_ARM64=1
#                              (CI), which makes a missing toolchain an error.
#
# Environment: FERRY_TEST_JOBS (default: number of cores), FERRY_FUZZ_SECONDS (seconds per fuzz
# target under ctest; default 20 here, 60 in a plain -DFERRY_FUZZ=ON build).
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
    CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=ON -DFERRY_FUZZ=ON \
        -DFERRY_WERROR=ON -DFERRY_FUZZ_SECONDS="${FERRY_FUZZ_SECONDS:-20}"
    cmake --build build-asan -j "$jobs"
    # halt_on_error: a sanitizer finding fails the test that triggered it.
    ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        sh -c 'cd build-asan && ctest --output-on-failure -j "$0" --timeout 900' "$jobs"
}

# The variants compile everything (programs and tests: a warning anywhere fails) but run only
# the unit tests that take well under a second: what differs between them is the compiler's
# view of the code, which the normal and sanitizer builds already exercise at run time.
quick_unit='^(unit\.common|unit\.transport\.(lineproto|batch|dict)|unit\.sync\.policy)$'

run_variant() { # <build dir> <cmake arguments...>
    dir=$1
    shift
    start=$(date +%s)
    cmake -S . -B "$dir" -DFERRY_WERROR=ON "$@"
    cmake --build "$dir" -j "$jobs"
    if [ -f "$dir/CTestTestfile.cmake" ]; then # not with FERRY_BUILD_TESTS=OFF
        (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 120 -R "$quick_unit")
    fi
    echo "ferry: variant $dir built and checked in $(($(date +%s) - start)) s"
}

run_variants() {
    # A packager's Release build: -O3 finds other warnings (maybe-uninitialized) than -O2.
    CC=gcc run_variant build-o3 -DCMAKE_BUILD_TYPE=Release
    # Distribution hardening: link-time optimization sees across files, _FORTIFY_SOURCE=3 checks
    # object sizes (-Wstringop-overread and friends). The programs only: an LTO link of each of
    # the ~60 test programs cost most of this stage's time and checks nothing a packager ships.
    CC=gcc run_variant build-lto -DCMAKE_BUILD_TYPE=Release -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=ON \
        -DCMAKE_C_FLAGS=-D_FORTIFY_SOURCE=3 -DFERRY_BUILD_TESTS=OFF
    # A clang build without sanitizers; `all` leaves it out (the sanitizer build is clang
    # already), `variants` runs it.
    if [ "${1:-}" = with-clang ]; then
        CC=clang run_variant build-clang -DCMAKE_BUILD_TYPE=RelWithDebInfo
    fi
}

# ThreadSanitizer on what runs on more than one thread: the log sink (reloaded by SIGHUP while
# threads log), the journal (its committer thread) and the sync engine (its helper thread). Only
# those test programs are built.
run_tsan() {
    start=$(date +%s)
    CC=clang cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_TSAN=ON -DFERRY_WERROR=ON
    cmake --build build-tsan -j "$jobs" --target test_common test_journal test_sync_engine \
        test_http_client test_sync_policy
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        sh -c 'cd build-tsan && ctest --output-on-failure -j "$0" --timeout 600 \
               -R "^(unit\.common|unit\.journal|unit\.sync\.(engine|http_client|policy))$"' "$jobs"
    echo "ferry: ThreadSanitizer build checked in $(($(date +%s) - start)) s"
}

run_arm64() {
    if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 ||
        ! command -v qemu-aarch64-static >/dev/null 2>&1; then
        if [ "${FERRY_REQUIRE_ARM64:-0}" = 1 ]; then
            echo "ferry: arm64 stage: no cross toolchain (run scripts/install-deps.sh arm64)" >&2
            exit 1
        fi
        echo "ferry: arm64 stage SKIPPED: the aarch64 cross toolchain is not installed" \
            "(scripts/install-deps.sh arm64 adds it; .ci/run does)"
        return 0
    fi
    FERRY_ARM64_JOBS=$jobs scripts/cross-arm64.sh
}

case "$what" in
all) run_normal; run_sanitize; run_variants; run_tsan; FERRY_DEB_JOBS=$jobs scripts/test-packages.sh
     run_arm64 ;;
normal) run_normal ;;
sanitize) run_sanitize ;;
variants) run_variants with-clang ;;
tsan) run_tsan ;;
packages) FERRY_DEB_JOBS=$jobs scripts/test-packages.sh ;;
arm64) FERRY_REQUIRE_ARM64=1 run_arm64 ;;
*) echo "usage: $0 [all|normal|sanitize|variants|tsan|packages|arm64]" >&2; exit 2 ;;
esac
echo "ferry: all tests passed ($what)"
