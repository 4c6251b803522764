# The base model's shell pipelines (pipeline/base_model.sh and base_model_eval.sh) run with stub
# stages: options, data flow, iterations and resumption (tests/test_pipeline_scripts.py).
slex_python_cases(pipeline_scripts test_pipeline_scripts.py ARGS ${CMAKE_SOURCE_DIR} CASES base_model)
