# fairseq interop: slex's outputs read with fairseq's own rules (tests/test_fairseq.py).
string(REPLACE ";" " " SLEX_FAIRSEQ_MPIEXEC_STRING "${SLEX_MPIEXEC}")
foreach(case manifests km_glue)
  add_test(NAME fairseq_${case}
           COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_fairseq.py ${case} ${CMAKE_BINARY_DIR}/bin
                   "${SLEX_FAIRSEQ_MPIEXEC_STRING}" ${CMAKE_BINARY_DIR}/test-work)
endforeach()

# Corpus inputs that hung, inflated or corrupted a run (tests/test_corpus_inputs.py).
foreach(case files outputs)
  add_test(NAME corpus_inputs_${case}
           COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_corpus_inputs.py ${case} ${CMAKE_BINARY_DIR}/bin
                   "${SLEX_FAIRSEQ_MPIEXEC_STRING}" ${CMAKE_BINARY_DIR}/test-work)
  set_tests_properties(corpus_inputs_${case} PROPERTIES PROCESSORS 2 TIMEOUT 300)
endforeach()
