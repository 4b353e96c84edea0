# eoe_add_test(<name> [LABELS l...] [LIBS lib...] [SKIP_RETURN_CODE n] [OWN_MAIN])
#
# Registers tests/<name>.cpp, one Catch2 file per component, as the CTest test <name>,
# linked with the shared Catch2 main and eoe_experts (plus LIBS). Labels select suites:
# `ctest -L gpu`, `ctest -LE gpu`. A test that exits with SKIP_RETURN_CODE shows as skipped;
# OWN_MAIN is for a test that decides that itself before it starts Catch2.
function(eoe_add_test name)
  cmake_parse_arguments(arg "OWN_MAIN" "SKIP_RETURN_CODE" "LABELS;LIBS" ${ARGN})
  add_executable(${name} ${name}.cpp)
  if(arg_OWN_MAIN)
    target_link_libraries(${name} PRIVATE Catch2::Catch2)
  else()
    target_link_libraries(${name} PRIVATE eoe_catch_main)
  endif()
  target_link_libraries(${name} PRIVATE eoe_experts ${arg_LIBS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES
    LABELS "unit;${arg_LABELS}"
    TIMEOUT 600 # the longest takes about 40 s: a hang fails instead of holding CI for 25 min
    ENVIRONMENT "EOE_SOURCE_DIR=${PROJECT_SOURCE_DIR};EOE_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
  if(DEFINED arg_SKIP_RETURN_CODE)
    set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE ${arg_SKIP_RETURN_CODE})
  endif()
endfunction()
