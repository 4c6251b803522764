# Stage-level k-means and labelling tests on the paths real data takes (tests/test_kmeans_fit.py):
# shards larger than the label block, a whole fit against sklearn, ranks whose data differ in range.
slex_python_cases(kmeans_fit test_kmeans_fit.py ARGS $<TARGET_FILE:make_store> CASES label_blocks sklearn ranges)
# ~300,000 frames labelled twice: covered by the Release pass, too slow under ASan.
set_tests_properties(kmeans_fit_label_blocks PROPERTIES LABELS slow)
# The whole fit over 2 and 3 real MPI ranks on data whose ranks' parts differ in range by 1000x
# equals the single-process fit bit for bit (tests/test_kmeans_ranges.c).
add_executable(test_kmeans_ranges tests/test_kmeans_ranges.c)
target_link_libraries(test_kmeans_ranges PRIVATE kmeans_test_util)
foreach(ranks 2 3)
  add_test(NAME kmeans_ranges_mpi_${ranks} COMMAND ${SLEX_MPIEXEC} -n ${ranks} $<TARGET_FILE:test_kmeans_ranges>)
  set_tests_properties(kmeans_ranges_mpi_${ranks} PROPERTIES
    ENVIRONMENT "OPENBLAS_NUM_THREADS=1;ASAN_OPTIONS=detect_leaks=0")
endforeach()
