# Training modules (common/train).  References: fairseq's algorithms re-typed in Python
# (tests/test_train_*.py), PyTorch fixtures (tests/train_reference.py -> tests/data/train).
add_executable(train_mask_dump tests/train_mask_dump.c)
target_link_libraries(train_mask_dump PRIVATE slexcommon)
add_test(NAME train_mask COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_train_mask.py
  $<TARGET_FILE:train_mask_dump>)
set_tests_properties(train_mask PROPERTIES LABELS unit)
add_executable(test_train_head tests/test_train_head.c)
target_link_libraries(test_train_head PRIVATE slexcommon)
add_test(NAME train_head COMMAND test_train_head)
set_tests_properties(train_head PROPERTIES ENVIRONMENT "OPENBLAS_NUM_THREADS=1" LABELS unit)
add_executable(test_train_optim tests/test_train_optim.c)
target_link_libraries(test_train_optim PRIVATE slexcommon)
add_test(NAME train_optim COMMAND test_train_optim ${CMAKE_SOURCE_DIR}/tests/data/train)
set_tests_properties(train_optim PROPERTIES LABELS unit)
add_executable(test_train_reference tests/test_train_reference.c)
target_link_libraries(test_train_reference PRIVATE slexcommon)
add_test(NAME train_reference COMMAND test_train_reference ${CMAKE_SOURCE_DIR}/tests/data/train)
set_tests_properties(train_reference PROPERTIES ENVIRONMENT "OPENBLAS_NUM_THREADS=1" LABELS unit)
