# fairseq interop: slex's outputs read with fairseq's own rules (tests/test_fairseq.py).
slex_python_cases(fairseq test_fairseq.py CASES manifests km_glue)

# Corpus inputs that hung, inflated or corrupted a run (tests/test_corpus_inputs.py).
slex_python_cases(corpus_inputs test_corpus_inputs.py CASES files outputs)
set_tests_properties(corpus_inputs_files corpus_inputs_outputs PROPERTIES PROCESSORS 2 TIMEOUT 300)
