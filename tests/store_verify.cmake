# Stores are verified when read (issue 9): every attack on a store, through slex-label,
# slex-export and slex-kmeans, and the repair of a damaged store by its producer.
slex_python_cases(store_verify test_store_verify.py ARGS $<TARGET_FILE:make_store> CASES label export kmeans repair)
set_tests_properties(store_verify_label PROPERTIES PROCESSORS 2)
# The verifying reader itself, leak-checked (unit): direct row reads, verify after whole,
# partial and no reads, a changed byte, a truncated shard.
add_executable(test_store_read ${CMAKE_SOURCE_DIR}/tests/test_store_read.c)
target_link_libraries(test_store_read PRIVATE slexcommon)
add_test(NAME store_read COMMAND test_store_read ${CMAKE_BINARY_DIR}/test-work)
set_tests_properties(store_read PROPERTIES LABELS unit)
