# Exact sums over ranks (common/core/exactsum): references in one process, then the same rows
# split over 2 and 3 real MPI ranks must give the single-process sums bit for bit.
add_executable(test_exactsum tests/test_exactsum.c)
target_link_libraries(test_exactsum PRIVATE slexcommon)
add_test(NAME exactsum COMMAND test_exactsum)
set_tests_properties(exactsum PROPERTIES LABELS unit)
foreach(ranks 2 3)
  add_test(NAME exactsum_mpi_${ranks} COMMAND ${SLEX_MPIEXEC} -n ${ranks} $<TARGET_FILE:test_exactsum> --mpi)
  set_tests_properties(exactsum_mpi_${ranks} PROPERTIES ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")
endforeach()
