# core (issues 9 and 10): running out of disk space, temporary names, locks, error kinds.
add_test(NAME full_disk COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_full_disk.py ${CMAKE_BINARY_DIR}/bin
                                ${CMAKE_BINARY_DIR}/test-work)
set_tests_properties(full_disk PROPERTIES TIMEOUT 300)
add_test(NAME atomic_writes COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_atomic_writes.py ${CMAKE_BINARY_DIR}/bin
                                    ${CMAKE_BINARY_DIR}/test-work)
set_tests_properties(atomic_writes PROPERTIES TIMEOUT 300)
add_test(NAME locks COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_locks.py ${CMAKE_BINARY_DIR}/bin
                            ${CMAKE_BINARY_DIR}/test-work)
set_tests_properties(locks PROPERTIES TIMEOUT 300)
add_executable(test_err ${CMAKE_SOURCE_DIR}/tests/test_err.c)
target_link_libraries(test_err PRIVATE slexcommon)
add_test(NAME err_kinds COMMAND test_err ${CMAKE_BINARY_DIR}/test-work)
set_tests_properties(err_kinds PROPERTIES LABELS unit)
add_test(NAME exit_codes COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_exit_codes.py ${CMAKE_BINARY_DIR}/bin
                                 "${SLEX_MPIEXEC_STRING}" ${CMAKE_BINARY_DIR}/test-work)
set_tests_properties(exit_codes PROPERTIES TIMEOUT 300 PROCESSORS 2)
