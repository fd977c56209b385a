# CMake toolchain file: cross-compile ferry for 64-bit ARM Linux (NVIDIA Jetson, Raspberry Pi 4/5)
# with Debian's cross toolchain (crossbuild-essential-arm64) and the multiarch :arm64 development
# packages (scripts/cross-arm64.sh installs both and uses this file):
#
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DFERRY_BUILD_INGEST=OFF
#
# Tests then run under qemu-user: CMAKE_CROSSCOMPILING_EMULATOR is set below when qemu-aarch64 (or
# qemu-aarch64-static) is installed, so `ctest` runs the aarch64 test binaries through it.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(FERRY_CROSS_TRIPLET aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${FERRY_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${FERRY_CROSS_TRIPLET}-g++)

# Headers and libraries of the target come from the multiarch directories of the :arm64 packages
# (/usr/include is shared; libraries live in /usr/lib/aarch64-linux-gnu). Programs (pkg-config,
# python3) are the build machine's.
set(CMAKE_LIBRARY_ARCHITECTURE ${FERRY_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH /usr/${FERRY_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# pkg-config must see only the arm64 .pc files: otherwise it finds the build machine's
# (x86_64) libraries and the link fails, or worse, a library present only for the build machine
# is silently "found". PKG_CONFIG_LIBDIR replaces the default search path rather than adding to it.
set(ENV{PKG_CONFIG_LIBDIR}
    "/usr/lib/${FERRY_CROSS_TRIPLET}/pkgconfig:/usr/share/pkgconfig")
# FERRY_CROSS_PKG_CONFIG_PATH (environment) adds directories of arm64 .pc files that are not
# installed system-wide (scripts/cross-arm64.sh: libevent-dev:arm64 unpacked into an overlay,
# because Debian's libevent-dev cannot be installed for two architectures at once).
set(ENV{PKG_CONFIG_PATH} "$ENV{FERRY_CROSS_PKG_CONFIG_PATH}")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# Run the target's programs (tests, fuzz-seed generators) under qemu-user with the multiarch arm64
# C library (libc6:arm64, installed with the :arm64 libraries) and ITS dynamic loader
# (/lib/ld-linux-aarch64.so.1). Not with "-L /usr/aarch64-linux-gnu": that takes the cross
# toolchain's ld.so (libc6-arm64-cross, another build of glibc) while the library search still
# finds libc.so.6 in /lib/aarch64-linux-gnu, and a loader and libc of two builds disagree on
# their private data: the first pthread_create walked a garbage stack-cache list forever (the
# "journal tests hang under qemu" of earlier versions of this file).
find_program(FERRY_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(FERRY_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FERRY_QEMU_AARCH64})
endif()
