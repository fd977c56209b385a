#!/bin/sh
# Installs every build and test dependency of ferry from Debian's packages.
# Non-interactive; run as root (CI does). Safe to run again: apt-get skips what is there.
#
#   scripts/install-deps.sh          native build, tests, Debian packaging (debhelper, lintian)
#   scripts/install-deps.sh arm64    also the aarch64 cross build and its qemu-user tests
#                                    (scripts/cross-arm64.sh): adds the arm64 architecture

set -eu
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: run as root (sudo $0)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
PACKAGES="
    build-essential cmake pkg-config git ca-certificates
    clang libclang-rt-14-dev clang-format
    liblmdb-dev lmdb-utils
    libzstd-dev zstd
    libcurl4-openssl-dev curl
    libsodium-dev
    libevent-dev libssl-dev openssl
    libpq-dev postgresql
    nginx
    libprotobuf-c-dev protobuf-c-compiler libsnappy-dev zlib1g-dev
    victoria-metrics influxdb
    libinih-dev
    libjansson-dev
    libcmocka-dev
    libsystemd-dev
    iproute2 procps psmisc systemd-journal-remote
    python3 python3-influxdb python3-yaml
    bsdiff xdelta3 casync zchunk e2fsprogs
    prometheus prometheus-alertmanager
    debhelper fakeroot lintian file
    chromium chromium-driver python3-selenium
"
# The aarch64 cross build: Debian's cross toolchain, qemu-user, and the :arm64 libraries that are
# multiarch (co-installable with the amd64 ones). Not libevent-dev:arm64 nor libpq-dev:arm64:
# neither is multiarch, and installing them REMOVES the build machine's libevent-dev/libpq-dev.
# scripts/cross-arm64.sh unpacks libevent-dev:arm64 beside its build instead; the device build
# does not use libpq.
ARM64_PACKAGES="
    crossbuild-essential-arm64 qemu-user-static pkgconf:arm64
    liblmdb-dev:arm64 libzstd-dev:arm64 libcurl4-openssl-dev:arm64 libsodium-dev:arm64
    libevent-2.1-7:arm64 libevent-core-2.1-7:arm64 libevent-extra-2.1-7:arm64
    libevent-pthreads-2.1-7:arm64 libevent-openssl-2.1-7:arm64
    libinih-dev:arm64 libjansson-dev:arm64 libsystemd-dev:arm64 libcmocka-dev:arm64
    zlib1g-dev:arm64
"
case "${1:-}" in
"") ;;
arm64)
    dpkg --add-architecture arm64
    PACKAGES="$PACKAGES $ARM64_PACKAGES"
    ;;
*) echo "usage: $0 [arm64]" >&2; exit 2 ;;
esac
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $PACKAGES
