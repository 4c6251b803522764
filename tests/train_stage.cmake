# slex-train end to end (issue 11): rank-count independent bytes (LoRA and full), resume after a
# checkpoint and after SIGKILL to the same bytes, finished runs not redone, bad input and exit codes,
# divergence (NaN/Inf) stopping with the last good checkpoint kept; every option that changes the
# training is in run.json (params).
slex_python_cases(train_stage test_train_stage.py ARGS ${CMAKE_SOURCE_DIR} CASES ranks resume bad diverge outputs arch params head)
set_tests_properties(train_stage_ranks train_stage_resume train_stage_diverge train_stage_arch PROPERTIES PROCESSORS 2)
