# berth_test(NAME SOURCES... LIBS ... LABELS ...): one gtest binary registered with ctest.
# Every test gets BERTH_BINARY_DIR so it can find the daemons it starts.
function(berth_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_compile_options(${name} PRIVATE ${BERTH_WARNINGS})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "BERTH_BINARY_DIR=${CMAKE_BINARY_DIR};BERTH_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endfunction()
