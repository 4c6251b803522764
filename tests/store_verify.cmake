# Stores are verified when read (issue 9): every attack on a store, through slex-label,
# slex-export and slex-kmeans, and the repair of a damaged store by its producer.
string(REPLACE ";" " " SLEX_MPIEXEC_STRING "${SLEX_MPIEXEC}")
foreach(case label export kmeans repair)
  add_test(NAME store_verify_${case}
           COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_store_verify.py ${case} ${CMAKE_BINARY_DIR}/bin
                   $<TARGET_FILE:make_store> "${SLEX_MPIEXEC_STRING}" ${CMAKE_BINARY_DIR}/test-work)
endforeach()
set_tests_properties(store_verify_label PROPERTIES PROCESSORS 2)
# The verifying reader itself, leak-checked (unit): direct row reads, verify after whole,
# partial and no reads, a changed byte, a truncated shard.
add_executable(test_store_read ${CMAKE_SOURCE_DIR}/tests/test_store_read.c)
target_link_libraries(test_store_read PRIVATE slexcommon)
add_test(NAME store_read COMMAND test_store_read ${CMAKE_BINARY_DIR}/test-work)
set_tests_properties(store_read PROPERTIES LABELS unit)
