# core (issues 9 and 10): running out of disk space, temporary names, locks, error kinds.
add_test(NAME full_disk COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_full_disk.py ${CMAKE_BINARY_DIR}/bin
                                ${CMAKE_BINARY_DIR}/test-work)
set_tests_properties(full_disk PROPERTIES TIMEOUT 300)
add_test(NAME atomic_writes COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_atomic_writes.py ${CMAKE_BINARY_DIR}/bin
                                    ${CMAKE_BINARY_DIR}/test-work)
set_tests_properties(atomic_writes PROPERTIES TIMEOUT 300)
