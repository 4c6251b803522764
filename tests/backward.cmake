# Backward kernels of common/model against finite differences of double-precision references,
# and the whole model's backward (full and LoRA, post-LN and pre-LN) against directional ones.
add_executable(test_backward tests/test_backward.c)
target_link_libraries(test_backward PRIVATE slexcommon)
add_test(NAME backward COMMAND test_backward ${CMAKE_SOURCE_DIR}/tests/data/model)
set_tests_properties(backward PROPERTIES ENVIRONMENT "OPENBLAS_NUM_THREADS=1" LABELS unit)
