# k-means (common/kmeans, common/rng).  Fixtures: tests/data/kmeans, written by
# tests/kmeans_reference.py (sklearn 1.2.1).
# The k-means tests' shared helpers (tests/kmeans_test_util.h).
add_library(kmeans_test_util STATIC tests/kmeans_test_util.c)
target_link_libraries(kmeans_test_util PUBLIC slexcommon)
add_executable(test_kmeans tests/test_kmeans.c)
target_link_libraries(test_kmeans PRIVATE kmeans_test_util)
add_test(NAME kmeans COMMAND test_kmeans ${CMAKE_SOURCE_DIR}/tests/data/kmeans)
set_tests_properties(kmeans PROPERTIES ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
# The same fit over 2 and 3 real MPI ranks must give the single-process codebook bit for bit.
# (Leak detection is off here only: under SLEX_SANITIZE, Open MPI's own allocations at
# MPI_Finalize are reported as leaks; the single-process test above keeps it.)
foreach(ranks 2 3)
  add_test(NAME kmeans_mpi_${ranks} COMMAND ${SLEX_MPIEXEC} -n ${ranks} $<TARGET_FILE:test_kmeans> --mpi)
  set_tests_properties(kmeans_mpi_${ranks} PROPERTIES
    ENVIRONMENT "OPENBLAS_NUM_THREADS=1;ASAN_OPTIONS=detect_leaks=0")
endforeach()
# Lloyd passes with bounds (common/lloyd) give the labels of the plain assignment, bit for bit.
add_executable(test_lloyd tests/test_lloyd.c)
target_link_libraries(test_lloyd PRIVATE kmeans_test_util)
add_test(NAME lloyd COMMAND test_lloyd)
set_tests_properties(lloyd PROPERTIES ENVIRONMENT "OPENBLAS_NUM_THREADS=1" LABELS unit)
