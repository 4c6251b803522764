#!/usr/bin/env bash
# The English base model (issue 13, docs/base-model.md): pretrained by slex from nothing, the HuBERT way.
#   1. slex-synth: 5 h of English training speech (160 espeak-ng speakers) and 30 min of held-out
#      test speakers, with phone alignments;
#   2. MFCC, k-means K=100 on the training MFCC, labels (iteration 1 targets, 100 Hz);
#   3. iteration 1: slex-train --arch configs/base-en.json (pre-LN, layer-norm CNN, 4 x 256) in
#      full mode on the MFCC targets, with the small-model recipe (N(0,1) label embeddings, loss on
#      unmasked frames too, mask 0.5 / span 5, no feature penalty, lr 1e-3 with warm-up);
#   4. iteration 2: 5 h more of varied speech (all espeak-ng voices, speed/reverberation/noise/gain
#      perturbation); k-means K=100 on the iteration-1 model's layer IT2_LAYER of both corpora,
#      labels (50 Hz), and slex-train from the iteration-1 weights on both, half each;
#   5. the result in models/base-en/ (HF HubertModel directory + head.safetensors), its
#      train_log.jsonl per iteration and its metrics (eval/).
# Every step is a restartable slex stage: re-running the script after an interruption (or a
# kill) continues where it stopped, and finished steps are not redone.
# usage: pipeline/base_model.sh [BIN_DIR (build/bin)] [WORK_DIR (base-model-work)] [MODEL_OUT (models/base-en)]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-build/bin}" && pwd)
work=${2:-base-model-work}
dest=${3:-$src/models/base-en}
mkdir -p "$dest" && dest=$(cd "$dest" && pwd)
mkdir -p "$work" && cd "$work"
ranks=${SLEX_RANKS:-2}
mpirun=(mpirun -np "$ranks")
[ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
mpirun+=(--oversubscribe)
IT1_STEPS=${IT1_STEPS:-3500}
IT2_STEPS=${IT2_STEPS:-2000}
IT2_LAYER=${IT2_LAYER:-1}
step() { printf '\n== %s  (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
# The recipe (docs/base-model.md has the why of each value).
recipe=(--mode full --max-tokens 400000 --max-sample-size 64000 --micro-batch 4 --lr 1e-3
        --mask-prob 0.5 --mask-length 5 --pred-nomask-weight 1 --feature-pen 0 --label-emb-init normal
        --layerdrop 0 --checkpoint-every 100 --seed 1)

step "1. corpus"
[ -f corpus/en_train.tsv ] || "${mpirun[@]}" "$bin/slex-synth" --lang en --split train --minutes 300 --speakers 200 --out corpus --seed 11
[ -f corpus/en_test.tsv ] || "${mpirun[@]}" "$bin/slex-synth" --lang en --split test --minutes 30 --speakers 200 --out corpus --seed 12

step "2. MFCC targets (K=100)"
"${mpirun[@]}" "$bin/slex-mfcc" --manifest corpus/en_train.tsv --out mfcc/en_train --nshard 4
"${mpirun[@]}" "$bin/slex-kmeans" --store mfcc/en_train --k 100 --out km/mfcc100.h5 --seed 1 --batch-size 10000 --n-init 3
"${mpirun[@]}" "$bin/slex-label" --store mfcc/en_train --codebook km/mfcc100.h5 --out units/en_train_mfcc100

step "3. iteration 1: $IT1_STEPS updates from random weights"
mkdir -p arch && cp "$src/configs/base-en.json" arch/base-en.json
"${mpirun[@]}" "$bin/slex-train" --data corpus/en_train.tsv:units/en_train_mfcc100 --arch arch/base-en.json --out it1 \
  --num-classes 100 --steps "$IT1_STEPS" --warmup-steps $((IT1_STEPS * 8 / 100)) "${recipe[@]}"

step "4. iteration 2: varied speech, k-means of iteration 1's layer $IT2_LAYER, $IT2_STEPS updates from its weights"
# 5 h more of English with all of espeak-ng's voices and accents, wider rates and pitches, and
# speed, reverberation, noise and gain perturbation (docs/synth.md), beside the plain corpus.
[ -f corpus2/en_train.tsv ] || "${mpirun[@]}" "$bin/slex-synth" --lang en --split train --minutes 300 --voices all \
  --speakers 400 --augment --out corpus2 --seed 21
[ -f corpus2/en_test.tsv ] || "${mpirun[@]}" "$bin/slex-synth" --lang en --split test --minutes 30 --voices all \
  --speakers 400 --out corpus2 --seed 22
for c in corpus/en_train corpus2/en_train; do
  name=$(echo "$c" | tr / _)
  "${mpirun[@]}" "$bin/slex-dump" --manifest "$c.tsv" --model it1/model --layer "$IT2_LAYER" --out "rep/${name}_it1_l$IT2_LAYER" --nshard 4
done
"${mpirun[@]}" "$bin/slex-kmeans" --store "rep/corpus_en_train_it1_l$IT2_LAYER:1" --store "rep/corpus2_en_train_it1_l$IT2_LAYER:1" \
  --k 100 --out "km/it1_l${IT2_LAYER}_100.h5" --seed 1 --batch-size 10000 --n-init 3
for c in corpus/en_train corpus2/en_train; do
  name=$(echo "$c" | tr / _)
  "${mpirun[@]}" "$bin/slex-label" --store "rep/${name}_it1_l$IT2_LAYER" --codebook "km/it1_l${IT2_LAYER}_100.h5" --out "units/${name}_it1_100"
done
"${mpirun[@]}" "$bin/slex-train" --data corpus/en_train.tsv:units/corpus_en_train_it1_100:1 \
  --data corpus2/en_train.tsv:units/corpus2_en_train_it1_100:1 --init it1/model --out it2 \
  --num-classes 100 --steps "$IT2_STEPS" --warmup-steps $((IT2_STEPS * 8 / 100)) "${recipe[@]}"

step "5. models/base-en"
last=$(ls -d it2/checkpoint-* | sort -t- -k2 -n | tail -1)
mkdir -p "$dest"
cp it2/model/config.json it2/model/model.safetensors "$dest/"
cp "$last/head.safetensors" "$dest/"
cat it1/train_log.jsonl > "$dest/train_log_it1.jsonl"
cat it2/train_log.jsonl > "$dest/train_log_it2.jsonl"
echo "base model in $dest"
