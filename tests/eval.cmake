# slex-eval (issue 12): unit metrics, drift, ABX, reports, against Python references on the
# committed fixture of tests/data/eval (written by tests/eval_fixture.py).
slex_python_cases(eval test_eval.py ARGS $<TARGET_FILE:make_store> CASES units drift abx reports bad)
set_tests_properties(eval_units eval_abx PROPERTIES PROCESSORS 2)
