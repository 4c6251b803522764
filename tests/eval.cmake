# slex-eval (issue 12): unit metrics, drift, ABX, reports, against Python references on the
# committed fixture of tests/data/eval (written by tests/eval_fixture.py).
string(REPLACE ";" " " SLEX_MPIEXEC_STRING "${SLEX_MPIEXEC}")  # tests/*.cmake are read in name order
foreach(case units drift abx reports bad)
  add_test(NAME eval_${case}
           COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_eval.py ${case} ${CMAKE_BINARY_DIR}/bin
                   $<TARGET_FILE:make_store> "${SLEX_MPIEXEC_STRING}" ${CMAKE_BINARY_DIR}/test-work)
endforeach()
set_tests_properties(eval_units eval_abx PROPERTIES PROCESSORS 2)
