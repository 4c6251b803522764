# slex checkpoint directories (common/model/checkpoint.c): save/reload of the model fixtures, head,
# adapter, damaged and killed saves (test_checkpoint), then the saved model.safetensors files
# compared with the original fixtures by name in numpy (checkpoint_reference.py).
add_executable(test_checkpoint tests/test_checkpoint.c)
target_link_libraries(test_checkpoint PRIVATE slexcommon)
set(SLEX_CHECKPOINT_WORK ${CMAKE_BINARY_DIR}/test_checkpoint_work)
add_test(NAME checkpoint COMMAND test_checkpoint ${CMAKE_SOURCE_DIR}/tests/data/model ${SLEX_CHECKPOINT_WORK})
set_tests_properties(checkpoint PROPERTIES ENVIRONMENT "OPENBLAS_NUM_THREADS=1" LABELS unit
  FIXTURES_SETUP checkpoint_dirs)
add_test(NAME checkpoint_hf_layout
  COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/checkpoint_reference.py
          ${CMAKE_SOURCE_DIR}/tests/data/model ${SLEX_CHECKPOINT_WORK})
set_tests_properties(checkpoint_hf_layout PROPERTIES LABELS unit FIXTURES_REQUIRED checkpoint_dirs)
