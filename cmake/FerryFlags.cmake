# Compiler flags: strict warnings everywhere, sanitizers and libFuzzer as options.
set(FERRY_WARNINGS -Wall -Wextra -Wshadow -Wformat=2 -Wpointer-arith -Wstrict-prototypes
    -Wmissing-prototypes -Wvla -Wno-unused-parameter -Wimplicit-fallthrough -Wundef)
if(FERRY_WERROR)
  list(APPEND FERRY_WARNINGS -Werror)
  # With link-time optimization (-DCMAKE_INTERPROCEDURAL_OPTIMIZATION=ON) the compiler runs
  # again at link time and warns there (-Wstringop-overread across files): errors too.
  add_link_options(-Werror)
endif()
add_compile_options(${FERRY_WARNINGS})
add_compile_definitions(_GNU_SOURCE)

if(FERRY_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

if(FERRY_TSAN)
  if(FERRY_SANITIZE)
    message(FATAL_ERROR "FERRY_TSAN and FERRY_SANITIZE cannot be combined (ThreadSanitizer and "
                        "AddressSanitizer exclude each other): use two build directories")
  endif()
  # ThreadSanitizer: the journal's committer thread, the sync engine's helper thread and the log
  # sink (scripts/test.sh tsan runs their tests).
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()

# How long ctest runs each fuzz target (seconds). scripts/test.sh sets 20 so that the suite fits
# CI's time budget; longer runs: -DFERRY_FUZZ_SECONDS=600, or the target by hand.
set(FERRY_FUZZ_SECONDS 60 CACHE STRING "Seconds each fuzz target runs under ctest")

if(FERRY_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "FERRY_FUZZ needs clang: cmake -DCMAKE_C_COMPILER=clang -DFERRY_FUZZ=ON")
  endif()
  # Everything is built with coverage instrumentation; only fuzz targets link libFuzzer's main.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

# ferry_fuzz_target(<name> <sources...> LIBS <libs...>): a libFuzzer binary in build/bin.
function(ferry_fuzz_target name)
  if(NOT FERRY_FUZZ)
    return()
  endif()
  cmake_parse_arguments(F "" "" "LIBS" ${ARGN})
  add_executable(${name} ${F_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE ${F_LIBS})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
endfunction()
