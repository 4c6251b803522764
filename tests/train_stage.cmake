# slex-train end to end (issue 11): rank-count independent bytes (LoRA and full), resume after a
# checkpoint and after SIGKILL to the same bytes, finished runs not redone, bad input and exit codes,
# divergence (NaN/Inf) stopping with the last good checkpoint kept; every option that changes the
# training is in run.json (params).
string(REPLACE ";" " " SLEX_MPIEXEC_STRING "${SLEX_MPIEXEC}")  # tests/*.cmake are read in name order
foreach(case ranks resume bad diverge outputs arch params)
  add_test(NAME train_stage_${case}
           COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_train_stage.py ${case} ${CMAKE_BINARY_DIR}/bin
                   ${CMAKE_SOURCE_DIR} "${SLEX_MPIEXEC_STRING}" ${CMAKE_BINARY_DIR}/test-work)
endforeach()
set_tests_properties(train_stage_ranks train_stage_resume train_stage_diverge train_stage_arch PROPERTIES PROCESSORS 2)
