# Stage-level k-means and labelling tests on the paths real data takes (tests/test_kmeans_fit.py):
# shards larger than the label block, a whole fit against sklearn, ranks whose data differ in range.
string(REPLACE ";" " " SLEX_MPIEXEC_STRING "${SLEX_MPIEXEC}")
foreach(case label_blocks sklearn ranges)
  add_test(NAME kmeans_fit_${case}
           COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_kmeans_fit.py ${case} ${CMAKE_BINARY_DIR}/bin
                   $<TARGET_FILE:make_store> "${SLEX_MPIEXEC_STRING}" ${CMAKE_BINARY_DIR}/test-work)
endforeach()
# ~300,000 frames labelled twice: covered by the Release pass, too slow under ASan.
set_tests_properties(kmeans_fit_label_blocks PROPERTIES LABELS slow)
