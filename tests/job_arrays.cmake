# Job arrays without a scheduler (tests/test_job_arrays.py): the Slurm, PBS Pro and Torque task
# variables set by hand, tasks in any order or at once, one killed and the array resubmitted.
foreach(case env resubmit)
  add_test(NAME job_arrays_${case}
           COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_job_arrays.py ${case} ${CMAKE_SOURCE_DIR}
                   ${CMAKE_BINARY_DIR}/bin $<TARGET_FILE:make_store> "${SLEX_MPIEXEC_STRING}"
                   ${CMAKE_BINARY_DIR}/test-work)
endforeach()
# Seven labellings of 100,000-frame shards: covered by the Release pass, too slow under ASan.
set_tests_properties(job_arrays_resubmit PROPERTIES LABELS slow)
