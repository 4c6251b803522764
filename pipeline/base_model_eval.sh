#!/usr/bin/env bash
# Evaluation of an English base model (step 8 of pipeline/base_model.sh, docs/base-model.md): PNMI
# (K=50, 3 k-means seeds) and ABX of MFCC and of every layer on four test corpora of speakers and
# voices never trained on (espeak-ng standard voices, all espeak-ng voices, festival ked_diphone +
# cmu_us_slt_arctic_hts, flite slt), tables in MODEL/metrics/. The test corpora are synthesised
# in WORK_DIR unless they are there already; every step is a restartable slex stage.
# The features and units in WORK_DIR are the model's: evaluate another model in another WORK_DIR.
# usage: pipeline/base_model_eval.sh BIN_DIR WORK_DIR MODEL_DIR
set -euo pipefail
bin=$(cd "$1" && pwd)
mkdir -p "$2" && cd "$2"
dest=$(cd "$3" && pwd)
ranks=${SLEX_RANKS:-2}
mpirun=(mpirun -np "$ranks")
[ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
mpirun+=(--oversubscribe)
# synth DIR OPTIONS...: an English test corpus, unless it is there already. The espeak-ng ones
# take the training corpora's --speakers and --voices, so that their speakers are the others.
synth() {
  local dir=$1; shift
  [ -f "$dir/en_test.tsv" ] || "${mpirun[@]}" "$bin/slex-synth" --lang en --split test --out "$dir" "$@"
}
synth corpus --minutes 30 --speakers 200 --seed 12
synth corpus2 --minutes 30 --voices all --speakers 400 --seed 22
synth heldout/festival --minutes 10 --engine festival --voice ked_diphone --voice cmu_us_slt_arctic_hts --seed 32
synth heldout/flite --minutes 10 --engine flite --voice slt --seed 34
layers=$(sed -n 's/.*"num_hidden_layers":[[:space:]]*\([0-9]*\).*/\1/p' "$dest/config.json")
[ -n "$layers" ] || { echo "no num_hidden_layers in $dest/config.json" >&2; exit 1; }
# evaluate FEATURES NAME CORPUS: k-means K=50 fit on the test speech itself (seeds 1-3), PNMI of
# its units; ABX of the features (phone items, any context).
evaluate() {
  local feats=$1 name=$2 corpus=$3 seed
  for seed in 1 2 3; do
    "${mpirun[@]}" "$bin/slex-kmeans" --store "$feats" --k 50 --out "km/eval_${name}_s$seed.h5" --seed "$seed" --batch-size 10000 --n-init 3
    "${mpirun[@]}" "$bin/slex-label" --store "$feats" --codebook "km/eval_${name}_s$seed.h5" --out "units/eval_${name}_s$seed"
    "${mpirun[@]}" "$bin/slex-eval" units --labels "units/eval_${name}_s$seed" --align "$corpus.align" --out "eval/${name}_units_s$seed"
  done
  "${mpirun[@]}" "$bin/slex-eval" abx --features "$feats" --align "$corpus.align" --context any --out "eval/${name}_abx"
}
for t in espeak:corpus/en_test espeak_all:corpus2/en_test festival:heldout/festival/en_test flite:heldout/flite/en_test; do
  test_name=${t%%:*}; corpus=${t#*:}
  "${mpirun[@]}" "$bin/slex-mfcc" --manifest "$corpus.tsv" --out "mfcc/test_$test_name" --nshard 2
  evaluate "mfcc/test_$test_name" "${test_name}_mfcc" "$corpus"
  units=("MFCC=eval/${test_name}_mfcc_units_s"{1,2,3}); abx=("MFCC=eval/${test_name}_mfcc_abx")
  for L in $(seq 1 "$layers"); do
    "${mpirun[@]}" "$bin/slex-dump" --manifest "$corpus.tsv" --model "$dest" --layer "$L" --out "rep/test_${test_name}_l$L" --nshard 2
    evaluate "rep/test_${test_name}_l$L" "${test_name}_l$L" "$corpus"
    units+=("layer$L=eval/${test_name}_l${L}_units_s"{1,2,3}); abx+=("layer$L=eval/${test_name}_l${L}_abx")
  done
  "${mpirun[@]}" "$bin/slex-eval" compare "${units[@]}" --out "$dest/metrics/${test_name}_pnmi"
  "${mpirun[@]}" "$bin/slex-eval" compare "${abx[@]}" --out "$dest/metrics/${test_name}_abx"
done
echo "tables in $dest/metrics"
