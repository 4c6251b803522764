# The committed English base model, models/base-en (issue 13): a HubertModel directory that
# slex-dump reads as torchaudio does, and units that beat MFCC's on held-out speakers.
slex_python_cases(base_model test_base_model.py CASES reference units)
set_tests_properties(base_model_units PROPERTIES PROCESSORS 2 LABELS slow)
