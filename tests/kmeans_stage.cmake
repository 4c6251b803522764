# slex-kmeans and slex-label on stores (issue 4), with stores planted by make_store.
add_executable(make_store ${CMAKE_SOURCE_DIR}/tests/make_store.c)
target_link_libraries(make_store PRIVATE slexcommon)
slex_python_cases(kmeans_stage test_kmeans_stage.py ARGS $<TARGET_FILE:make_store> CASES planted ranks fairseq_km pool resume bad stale stale_codebook older logs shards large)
# The checkpoint/resume protocol (common/run/resume) on hand-worked cases.
add_executable(test_resume tests/test_resume.c)
target_link_libraries(test_resume PRIVATE slexcommon)
add_test(NAME resume COMMAND test_resume ${CMAKE_BINARY_DIR}/test-work/resume)
set_tests_properties(resume PROPERTIES LABELS unit)
