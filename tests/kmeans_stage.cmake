# slex-kmeans and slex-label on stores (issue 4), with stores planted by make_store.
add_executable(make_store ${CMAKE_SOURCE_DIR}/tests/make_store.c)
target_link_libraries(make_store PRIVATE slexcommon)
string(REPLACE ";" " " SLEX_MPIEXEC_STRING "${SLEX_MPIEXEC}")
foreach(case planted ranks fairseq_km pool resume bad stale stale_codebook older logs shards large)
  add_test(NAME kmeans_stage_${case}
           COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_kmeans_stage.py ${case} ${CMAKE_BINARY_DIR}/bin
                   $<TARGET_FILE:make_store> "${SLEX_MPIEXEC_STRING}" ${CMAKE_BINARY_DIR}/test-work)
endforeach()
# The checkpoint/resume protocol (common/run/resume) on hand-worked cases.
add_executable(test_resume tests/test_resume.c)
target_link_libraries(test_resume PRIVATE slexcommon)
add_test(NAME resume COMMAND test_resume ${CMAKE_BINARY_DIR}/test-work/resume)
set_tests_properties(resume PROPERTIES LABELS unit)
