#!/bin/sh
# Installs every build and test dependency of ferry from Debian's packages.
# Non-interactive; run as root (CI does). Safe to run again: apt-get skips what is there.
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
    libevent-dev
    libpq-dev postgresql
    libprotobuf-c-dev protobuf-c-compiler libsnappy-dev zlib1g-dev
    victoria-metrics influxdb
    libinih-dev
    libjansson-dev
    libcmocka-dev
    libsystemd-dev
    iproute2 procps psmisc
    python3
    bsdiff xdelta3 casync zchunk e2fsprogs
    prometheus
"
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $PACKAGES
