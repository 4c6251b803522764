# slex-dump (HuBERT layer features, issue 5's stage) and PEFT LoRA adapters (common/model/lora.c).
# Fixtures from tests/dump_reference.py (torch 1.13 / torchaudio 0.13.1).
add_executable(test_lora ${CMAKE_SOURCE_DIR}/tests/test_lora.c)
target_link_libraries(test_lora PRIVATE slexcommon)
add_test(NAME lora COMMAND test_lora ${CMAKE_SOURCE_DIR}/tests/data/model ${CMAKE_SOURCE_DIR}/tests/data/dump)
set_tests_properties(lora PROPERTIES LABELS unit ENVIRONMENT "OPENBLAS_NUM_THREADS=1")

slex_python_cases(dump_stage test_dump_stage.py CASES reference lora ranks bad resume)
set_tests_properties(dump_stage_ranks dump_stage_bad PROPERTIES PROCESSORS 2)

# rank_pattern / alpha_pattern keys as every PEFT version resolves them (peft's rules in Python).
add_executable(lora_adapter ${CMAKE_SOURCE_DIR}/tests/lora_adapter.c)
target_link_libraries(lora_adapter PRIVATE slexcommon)
add_test(NAME lora_peft_patterns
         COMMAND ${SLEX_PYTHON} ${CMAKE_SOURCE_DIR}/tests/test_lora_patterns.py $<TARGET_FILE:lora_adapter>
                 ${CMAKE_BINARY_DIR}/test-work)
set_tests_properties(lora_peft_patterns PROPERTIES LABELS unit)
