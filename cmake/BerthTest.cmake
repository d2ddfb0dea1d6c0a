# berth_test(NAME SOURCES... LIBS ... LABELS ... [TIMEOUT s]): one gtest binary whose test cases
# ctest lists one by one (gtest_discover_tests), so a skipped case shows as skipped and a
# failing one by name. Each case runs in its own process; TIMEOUT bounds one case.
# Tests find the daemons they start and the files they read through lib/testing's BinaryPath and
# SourcePath: this build's directories, or $BERTH_BINARY_DIR / $BERTH_SOURCE_DIR when set.
# (gtest_discover_tests cannot pass a two-variable ENVIRONMENT: it splits the list.)
include(GoogleTest)

function(berth_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_compile_options(${name} PRIVATE ${BERTH_WARNINGS})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  # PRE_TEST: the binary is asked for its cases when ctest runs, not at every link.
  gtest_discover_tests(${name}
    TEST_PREFIX "${name}."
    DISCOVERY_MODE PRE_TEST
    DISCOVERY_TIMEOUT 60
    # DISABLED_ cases are child processes other cases spawn, never tests of their own.
    TEST_FILTER "-*.DISABLED_*"
    PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT})
endfunction()
