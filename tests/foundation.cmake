# The foundation (issue 2): options, sharding, manifest and audio, the store, slex-mfcc end to end.
foreach(t options store audio_manifest)
  add_executable(test_${t} ${CMAKE_SOURCE_DIR}/tests/test_${t}.c)
  target_link_libraries(test_${t} PRIVATE slexcommon)
endforeach()
add_test(NAME options COMMAND test_options ${CMAKE_BINARY_DIR}/test-work)
# The option rows check their field's C type at compile time (the bad variant must not compile).
add_test(NAME options_field_type_good COMMAND ${CMAKE_C_COMPILER} -std=c11 -fsyntax-only -Wall -Werror
         -I${CMAKE_SOURCE_DIR}/common ${CMAKE_SOURCE_DIR}/tests/options_field_type.c)
add_test(NAME options_field_type_bad COMMAND ${CMAKE_C_COMPILER} -std=c11 -fsyntax-only -Wall -Werror
         -DSLEX_BAD_FIELD -I${CMAKE_SOURCE_DIR}/common ${CMAKE_SOURCE_DIR}/tests/options_field_type.c)
set_tests_properties(options_field_type_bad PROPERTIES WILL_FAIL TRUE)
set_tests_properties(options_field_type_good options_field_type_bad PROPERTIES LABELS unit)
# Every program: a bad command line exits 2 naming the option, before any work (issue 9).
add_test(NAME options_stage
         COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_options_stage.py ${CMAKE_BINARY_DIR}/bin
                 ${CMAKE_BINARY_DIR}/test-work)
add_test(NAME store COMMAND test_store ${CMAKE_BINARY_DIR}/test-work)
add_test(NAME audio_manifest COMMAND test_audio_manifest ${CMAKE_BINARY_DIR}/test-work)

add_executable(shard_ranges ${CMAKE_SOURCE_DIR}/tests/shard_ranges.c)
target_link_libraries(shard_ranges PRIVATE slexcommon)
add_test(NAME shard_fairseq COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_shard.py $<TARGET_FILE:shard_ranges>)

slex_python_cases(mfcc_stage test_mfcc_stage.py CASES reference ranks bad resume export options)
set_tests_properties(mfcc_stage_ranks PROPERTIES PROCESSORS 2)

# The Slurm/PBS templates of jobs/ on a local Slurm cluster (skipped unless root).
add_test(NAME jobs_slurm_pbs
         COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_jobs.py ${CMAKE_SOURCE_DIR}
                 ${CMAKE_BINARY_DIR}/bin "${SLEX_MPIEXEC_STRING}" ${CMAKE_BINARY_DIR}/test-work)
set_tests_properties(jobs_slurm_pbs PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
set_tests_properties(options store audio_manifest shard_fairseq PROPERTIES LABELS unit)

# The demo of `make -f Makefile.hpc demo`, end to end (Release pass only).
add_test(NAME demo COMMAND sh -c "rm -rf '${CMAKE_BINARY_DIR}/test-work/demo' && bash '${CMAKE_SOURCE_DIR}/pipeline/demo.sh' '${CMAKE_BINARY_DIR}/bin' '${CMAKE_BINARY_DIR}/test-work/demo'")
set_tests_properties(demo PROPERTIES LABELS slow ENVIRONMENT "SLEX_PROGRESS_INTERVAL=1000")

# configs/example.ini must stay valid for every program (unknown keys in a [stage] section fail).
foreach(prog mfcc dump kmeans label export synth)
  add_test(NAME example_config_${prog}
           COMMAND $<TARGET_FILE:slex-${prog}> --config ${CMAKE_SOURCE_DIR}/configs/example.ini --help)
endforeach()

# The layers of common/ (core < corpus < feat < store < cluster < model < run < train < eval):
# no module includes a higher layer, includes name their folder, no include cycles.
add_test(NAME layering COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/check_layers.py ${CMAKE_SOURCE_DIR})
set_tests_properties(layering PROPERTIES LABELS unit)

# FNV-1a (core/hash): pinned values of the fingerprints, checksums and the corpus split.
add_executable(test_hash ${CMAKE_SOURCE_DIR}/tests/test_hash.c)
target_link_libraries(test_hash PRIVATE slexcommon)
add_test(NAME hash COMMAND test_hash)
set_tests_properties(hash PROPERTIES LABELS unit)
