# The committed English base model, models/base-en (issue 13): a HubertModel directory that
# slex-dump reads as torchaudio does, and units that beat MFCC's on held-out speakers.
string(REPLACE ";" " " SLEX_BASE_MODEL_MPIEXEC "${SLEX_MPIEXEC}")
foreach(case reference units)
  add_test(NAME base_model_${case}
           COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_base_model.py ${case} ${CMAKE_BINARY_DIR}/bin
                   "${SLEX_BASE_MODEL_MPIEXEC}" ${CMAKE_BINARY_DIR}/test-work)
endforeach()
set_tests_properties(base_model_units PROPERTIES PROCESSORS 2 LABELS slow)
