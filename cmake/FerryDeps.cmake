# Finds ferry's dependencies with pkg-config. A missing one stops configuration with the name of
# the Debian package that provides it (scripts/install-deps.sh installs them all).
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config (or run scripts/install-deps.sh)")
endif()

# ferry_require(<prefix> <pkg-config module> <debian package>)
macro(ferry_require prefix module debpkg)
  pkg_check_modules(${prefix} QUIET IMPORTED_TARGET ${module})
  if(NOT ${prefix}_FOUND)
    message(FATAL_ERROR "ferry needs ${module} (pkg-config module '${module}' not found): "
                        "apt-get install ${debpkg}   (or run scripts/install-deps.sh as root)")
  endif()
endmacro()

ferry_require(LMDB lmdb liblmdb-dev)
ferry_require(ZSTD libzstd libzstd-dev)
# libcurl 7.66.0 or newer (CURLINFO_RETRY_AFTER); options added later are used behind
# LIBCURL_VERSION_NUM checks (JetPack 5 ships 7.68, JetPack 6 7.81).
ferry_require(CURL "libcurl>=7.66.0" libcurl4-openssl-dev)
ferry_require(SODIUM libsodium libsodium-dev)
ferry_require(EVENT libevent libevent-dev)
ferry_require(EVENT_PTHREADS libevent_pthreads libevent-dev)
ferry_require(OPENSSL openssl libssl-dev)
# libpq and libevent's OpenSSL layer only for the ingest (its PostgreSQL store and its TLS): a
# device-only build (FERRY_BUILD_INGEST=OFF, the aarch64 cross build) must not need them, and
# Debian's libpq-dev is not multiarch (installing libpq-dev:arm64 removes the build machine's).
if(FERRY_BUILD_INGEST)
  ferry_require(EVENT_OPENSSL libevent_openssl libevent-dev)
  ferry_require(PQ libpq libpq-dev)
endif()
ferry_require(INIH inih libinih-dev)
ferry_require(JANSSON jansson libjansson-dev)
ferry_require(SYSTEMD libsystemd libsystemd-dev)
if(FERRY_BUILD_INGEST)
  # forwarders (cloud-ingest/forward/): remote write protobuf + snappy, InfluxDB gzip
  ferry_require(PROTOBUF_C libprotobuf-c libprotobuf-c-dev)
  ferry_require(SNAPPY snappy libsnappy-dev)
  ferry_require(ZLIB zlib zlib1g-dev)
  find_program(FERRY_PROTOC_C protoc-c)
  if(NOT FERRY_PROTOC_C)
    message(FATAL_ERROR "ferry needs protoc-c: apt-get install protobuf-c-compiler "
                        "(or run scripts/install-deps.sh as root)")
  endif()
endif()
if(FERRY_BUILD_TESTS)
  ferry_require(CMOCKA cmocka libcmocka-dev)
endif()
find_package(Threads REQUIRED)
