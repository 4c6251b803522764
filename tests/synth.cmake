# Tests of the synthetic corpus (slex-synth) and of alignments (align, textgrid, slex-import-textgrid).
add_executable(test_synth tests/test_synth.c)
target_link_libraries(test_synth PRIVATE slexcommon)
add_executable(test_align tests/test_align.c)
target_link_libraries(test_align PRIVATE slexcommon)

add_test(NAME align
         COMMAND test_align ${CMAKE_SOURCE_DIR}/tests/data/textgrid $<TARGET_FILE:slex-import-textgrid>
                 ${CMAKE_BINARY_DIR}/test_align_scratch)
add_test(NAME synth
         COMMAND sh ${CMAKE_SOURCE_DIR}/tests/test_synth.sh $<TARGET_FILE:slex-synth> $<TARGET_FILE:test_synth>
                 ${CMAKE_BINARY_DIR}/test_synth_scratch ${SLEX_MPIEXEC})
set_tests_properties(synth PROPERTIES TIMEOUT 120)
set_tests_properties(align PROPERTIES TIMEOUT 60)

# Augmentation (corpus/augment.h): unit checks, then slex-synth --voices all --augment end to end.
add_executable(test_augment tests/test_augment.c)
target_link_libraries(test_augment PRIVATE slexcommon)
add_test(NAME augment COMMAND test_augment)
add_test(NAME synth_augment
         COMMAND sh ${CMAKE_SOURCE_DIR}/tests/test_synth_augment.sh $<TARGET_FILE:slex-synth> $<TARGET_FILE:test_augment>
                 ${CMAKE_SOURCE_DIR}/tests/data/synth_default.sha256 ${CMAKE_BINARY_DIR}/test_synth_augment_scratch
                 ${SLEX_MPIEXEC})
set_tests_properties(augment PROPERTIES TIMEOUT 120)
set_tests_properties(synth_augment PROPERTIES TIMEOUT 300)

# Other synthesisers (corpus/extsynth.h): parsers, then slex-synth --engine festival|flite end to end.
add_test(NAME synth_ext
         COMMAND sh ${CMAKE_SOURCE_DIR}/tests/test_synth_ext.sh $<TARGET_FILE:slex-synth> $<TARGET_FILE:test_synth>
                 ${CMAKE_BINARY_DIR}/test_synth_ext_scratch ${SLEX_MPIEXEC})
set_tests_properties(synth_ext PROPERTIES TIMEOUT 600)
add_executable(test_extsynth tests/test_extsynth.c)
target_link_libraries(test_extsynth PRIVATE slexcommon)
add_test(NAME extsynth_parse COMMAND test_extsynth)
set_tests_properties(extsynth_parse PROPERTIES LABELS unit)

# --f0-min/--f0-max: festival's and flite's pitch, measured from the WAVs by autocorrelation.
add_test(NAME synth_f0
         COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_synth_f0.py $<TARGET_FILE:slex-synth>
                 ${CMAKE_BINARY_DIR}/test_synth_f0_scratch "${SLEX_MPIEXEC_STRING}")
set_tests_properties(synth_f0 PROPERTIES TIMEOUT 300 PROCESSORS 2)

# Pitch-shifted copies (corpus/pitchcopy.h, slex-pitchcopy): the envelope lag and the draws on
# hand-made cases, then the stage against sox and numpy, with 1 and 3 ranks, resumed after a kill.
add_executable(test_pitchcopy tests/test_pitchcopy.c)
target_link_libraries(test_pitchcopy PRIVATE slexcommon)
add_test(NAME pitchcopy_lag COMMAND test_pitchcopy)
set_tests_properties(pitchcopy_lag PROPERTIES LABELS unit TIMEOUT 60)
add_test(NAME pitchcopy_stage
         COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_pitchcopy.py $<TARGET_FILE:slex-pitchcopy>
                 $<TARGET_FILE:slex-synth> ${CMAKE_BINARY_DIR}/test_pitchcopy_scratch "${SLEX_MPIEXEC_STRING}")
set_tests_properties(pitchcopy_stage PROPERTIES TIMEOUT 300 PROCESSORS 2)
