#!/usr/bin/env bash
# The English base model (issue 13, docs/base-model.md): pretrained by slex from nothing, the HuBERT way.
#   1. slex-synth: 5 h of English training speech (160 espeak-ng speakers), with phone alignments;
#   2. MFCC, k-means K=100 on the training MFCC, labels (iteration 1 targets, 100 Hz);
#   3. iteration 1: slex-train --arch configs/base-en.json (pre-LN, layer-norm CNN, 4 x 256) in
#      full mode on the MFCC targets, with the small-model recipe (N(0,1) label embeddings, loss on
#      unmasked frames too, mask 0.5 / span 5, no feature penalty, lr 1e-3 with warm-up);
#   4. iteration 2: varied speech beside the plain corpus: 5 h of all espeak-ng voices and 1.5 h of
#      flite (awb, rms, kal16) and festival (kal_diphone) voices, all with speed/reverberation/
#      noise/gain perturbation; k-means K=100 on the iteration-1 model's layer IT2_LAYER of the
#      four, labels (50 Hz), and slex-train from the iteration-1 weights on them;
#   5. iteration 3: MFCC k-means K=100 targets pooled over the plain and varied espeak-ng corpora
#      and 2.75 h of flite and festival voices (F0 90-240 Hz), slex-train from iteration 2's weights;
#   6. iteration 4: finer MFCC k-means targets (K=500) of the same five corpora and shares,
#      slex-train from iteration 3's weights;
#   7. iteration 5: the same K=500 MFCC targets, pooled over the five corpora and 1 h of festival's
#      Italian, Catalan, Czech and Finnish voices (4 female, 3 male) reading the English sentences,
#      slex-train from iteration 4's weights;
#   8. iteration 6: pitch-shifted copies (slex-pitchcopy, +300..+500 cents, re-aligned) of the
#      three male non-espeak corpora beside iteration 5's six, on iteration 5's targets (a copy
#      takes its original's labels), slex-train from iteration 5's weights and head;
#   9. the result in models/base-en/ (HF HubertModel directory + head.safetensors) and its
#      train_log.jsonl per iteration, with training curves;
#  10. the evaluation (pipeline/base_model_eval.sh): PNMI (K=50, 3 k-means seeds) and ABX of MFCC
#      and of every layer on four test corpora of speakers and voices never trained on (espeak-ng
#      standard voices, all espeak-ng voices, festival ked_diphone + cmu_us_slt_arctic_hts, flite
#      slt), tables in models/base-en/metrics/.
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
IT3_STEPS=${IT3_STEPS:-5000}
IT4_STEPS=${IT4_STEPS:-4500}
IT5_STEPS=${IT5_STEPS:-4500}
IT6_STEPS=${IT6_STEPS:-4500}
step() { printf '\n== %s  (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
# The recipe (docs/base-model.md has the why of each value).
recipe=(--mode full --max-tokens 400000 --max-sample-size 64000 --micro-batch 4 --lr 1e-3
        --mask-prob 0.5 --mask-length 5 --pred-nomask-weight 1 --feature-pen 0 --label-emb-init normal
        --layerdrop 0 --checkpoint-every 100 --seed 1)

step "1. corpus"
[ -f corpus/en_train.tsv ] || "${mpirun[@]}" "$bin/slex-synth" --lang en --split train --minutes 300 --speakers 200 --out corpus --seed 11

step "2. MFCC targets (K=100)"
"${mpirun[@]}" "$bin/slex-mfcc" --manifest corpus/en_train.tsv --out mfcc/corpus_en_train --nshard 4
"${mpirun[@]}" "$bin/slex-kmeans" --store mfcc/corpus_en_train --k 100 --out km/mfcc100.h5 --seed 1 --batch-size 10000 --n-init 3
"${mpirun[@]}" "$bin/slex-label" --store mfcc/corpus_en_train --codebook km/mfcc100.h5 --out units/en_train_mfcc100

step "3. iteration 1: $IT1_STEPS updates from random weights"
mkdir -p arch && cp "$src/configs/base-en.json" arch/base-en.json
"${mpirun[@]}" "$bin/slex-train" --data corpus/en_train.tsv:units/en_train_mfcc100 --arch arch/base-en.json --out it1 \
  --num-classes 100 --steps "$IT1_STEPS" --warmup-steps $((IT1_STEPS * 8 / 100)) "${recipe[@]}"

# pooled_targets K CODEBOOK FEATURES UNITS CORPORA WEIGHTS: k-means K (CODEBOOK) of the feature
# stores FEATURES (a printf pattern of the corpus name, a/b -> a_b) pooled over the corpora of the
# array named CORPORA, each corpus' labels in UNITS, and in data the --data options of them with
# the batch shares of the array named WEIGHTS.
pooled_targets() {
  local k=$1 codebook=$2 feats=$3 units=$4 i name
  local -n corpora=$5 weights=$6
  local pool=()
  for i in "${!corpora[@]}"; do pool+=(--store "$(printf "$feats" "$(echo "${corpora[$i]}" | tr / _)"):1"); done
  "${mpirun[@]}" "$bin/slex-kmeans" "${pool[@]}" --k "$k" --out "$codebook" --seed 1 --batch-size 10000 --n-init 3
  data=()
  for i in "${!corpora[@]}"; do
    name=$(echo "${corpora[$i]}" | tr / _)
    "${mpirun[@]}" "$bin/slex-label" --store "$(printf "$feats" "$name")" --codebook "$codebook" --out "$(printf "$units" "$name")"
    data+=(--data "${corpora[$i]}.tsv:$(printf "$units" "$name"):${weights[$i]}")
  done
}

# next_iteration FROM TO K STEPS: slex-train from FROM's weights into TO on the --data options of
# pooled_targets, K classes, STEPS updates with the recipe's 8 % warm-up.
next_iteration() {
  "${mpirun[@]}" "$bin/slex-train" "${data[@]}" --init "$1/model" --out "$2" \
    --num-classes "$3" --steps "$4" --warmup-steps $(($4 * 8 / 100)) "${recipe[@]}"
}

step "4. iteration 2: varied speech, k-means of iteration 1's layer $IT2_LAYER, $IT2_STEPS updates from its weights"
# All of espeak-ng's voices and accents with wider rates and pitches, and other synthesisers'
# voices, all perturbed (speed, reverberation, noise, gain: docs/synth.md), beside the plain
# corpus. The voices of step 9's festival and flite tests are never trained on.
# synth DIR SPLIT OPTIONS...: an English corpus, unless it is there already.
synth() {
  local dir=$1 split=$2; shift 2
  [ -f "$dir/en_$split.tsv" ] || "${mpirun[@]}" "$bin/slex-synth" --lang en --split "$split" --out "$dir" "$@"
}
synth corpus2 train --minutes 300 --voices all --speakers 400 --augment --seed 21
synth corpus3/flite train --minutes 60 --engine flite --voice awb --voice rms --voice kal16 --augment --seed 31
synth corpus3/festival train --minutes 30 --engine festival --voice kal_diphone --augment --seed 33
train_corpora=(corpus/en_train corpus2/en_train corpus3/flite/en_train corpus3/festival/en_train)
# Shares of the batches: the plain and the varied espeak-ng corpus alike, the two small ones by
# about two epochs each over the run.
train_weights=(1 1 0.5 0.25)
for c in "${train_corpora[@]}"; do
  name=$(echo "$c" | tr / _)
  "${mpirun[@]}" "$bin/slex-dump" --manifest "$c.tsv" --model it1/model --layer "$IT2_LAYER" --out "rep/${name}_it1_l$IT2_LAYER" --nshard 4
done
pooled_targets 100 "km/it1_l${IT2_LAYER}_100.h5" "rep/%s_it1_l$IT2_LAYER" "units/%s_it1_100" train_corpora train_weights
next_iteration it1 it2 100 "$IT2_STEPS"

step "5. iteration 3: MFCC k-means targets of five corpora, $IT3_STEPS updates from iteration 2's weights"
# Iteration 2's targets (k-means of the model) serve flite's and festival's voices worse than
# MFCC k-means does (on flite's slt 0.400 vs 0.432 PNMI, docs/base-model.md), so iteration 3
# goes back to MFCC targets, pooled over the plain and varied espeak-ng corpora and three
# non-espeak corpora: flite awb and kal16 and festival kal_diphone at F0 90-240 Hz (female
# pitch too; rms keeps its own pitch, in a corpus of its own).
synth corpus4/flite train --minutes 90 --engine flite --voice awb --voice kal16 --f0-min 90 --f0-max 240 --augment --seed 31
synth corpus4/flite_rms train --minutes 30 --engine flite --voice rms --augment --seed 35
synth corpus4/festival train --minutes 45 --engine festival --voice kal_diphone --f0-min 90 --f0-max 240 --augment --seed 33
it3_corpora=(corpus/en_train corpus2/en_train corpus4/flite/en_train corpus4/flite_rms/en_train corpus4/festival/en_train)
# Shares of the batches: non-espeak speech ~47 % of them.
it3_weights=(1 1 1 0.3 0.5)
for c in "${it3_corpora[@]}"; do
  "${mpirun[@]}" "$bin/slex-mfcc" --manifest "$c.tsv" --out "mfcc/$(echo "$c" | tr / _)" --nshard 4 # step 2's for corpus/
done
pooled_targets 100 km/mfcc_pooled_100.h5 "mfcc/%s" "units/%s_pooled_mfcc100" it3_corpora it3_weights
next_iteration it2 it3 100 "$IT3_STEPS"

step "6. iteration 4: finer MFCC k-means targets (K=500) of the same five corpora, $IT4_STEPS updates from iteration 3's weights"
# K=100 merges the unseen voices' phones (the pooled codebook uses 66 of its units on flite's
# slt, K=500 257 of them), and iteration 3's gains were slowing: finer targets of the same
# speech and shares (HuBERT and mHuBERT raise K in later iterations too).
pooled_targets 500 km/mfcc_pooled_500.h5 "mfcc/%s" "units/%s_pooled_mfcc500" it3_corpora it3_weights
next_iteration it3 it4 500 "$IT4_STEPS"

step "7. iteration 5: other voices of festival (Italian, Catalan, Czech, Finnish) reading English, $IT5_STEPS updates from iteration 4's weights"
# Every English non-espeak training voice is male, and the model stays below MFCC on the unseen
# female slt (it matches MFCC on the training voice awb): Debian has no other English voices,
# so festival's voices of other languages read the English sentences (their own letter-to-sound
# rules: accented English; their alignments use their own phone sets and are not used here).
synth corpus5/festival_foreign train --minutes 60 --engine festival --voice lp_diphone --voice upc_ca_ona_hts \
  --voice czech_dita --voice suo_fi_lj_diphone --voice pc_diphone --voice hy_fi_mv_diphone --voice czech_ph --augment --seed 37
it5_corpora=("${it3_corpora[@]}" corpus5/festival_foreign/en_train)
it5_weights=("${it3_weights[@]}" 0.7)
"${mpirun[@]}" "$bin/slex-mfcc" --manifest corpus5/festival_foreign/en_train.tsv --out mfcc/corpus5_festival_foreign_en_train --nshard 4
pooled_targets 500 km/mfcc_pooled6_500.h5 "mfcc/%s" "units/%s_pooled6_mfcc500" it5_corpora it5_weights
next_iteration it4 it5 500 "$IT5_STEPS"

step "8. iteration 6: pitch-shifted copies of the male voices, $IT6_STEPS updates from iteration 5's weights"
# The model's lead over MFCC shrinks on high voices (docs/base-model.md: +0.061 PNMI on a male
# espeak-ng voice, +0.014 on a female one), and every English non-espeak training voice is male.
# A copy shifted up by 3-5 semitones (F0 and formants: a higher, shorter vocal tract) says the
# same phones at the same times, so it trains on its original's labels (ContentVec's idea).
seed=41
for c in corpus4/flite corpus4/flite_rms corpus4/festival; do
  "${mpirun[@]}" "$bin/slex-pitchcopy" --manifest "$c/en_train.tsv" --out "${c/corpus4/corpus6}" --seed $seed
  seed=$((seed + 2))
done
# Shares: the copies 3/4, 2/3 and 4/5 of their originals' (session 16's run).
data=()
for i in "${!it5_corpora[@]}"; do
  data+=(--data "${it5_corpora[$i]}.tsv:units/$(echo "${it5_corpora[$i]}" | tr / _)_pooled6_mfcc500:${it5_weights[$i]}")
done
data+=(--data corpus6/flite/en_train.tsv:units/corpus4_flite_en_train_pooled6_mfcc500:0.75
       --data corpus6/flite_rms/en_train.tsv:units/corpus4_flite_rms_en_train_pooled6_mfcc500:0.2
       --data corpus6/festival/en_train.tsv:units/corpus4_festival_en_train_pooled6_mfcc500:0.4)
next_iteration it5 it6 500 "$IT6_STEPS"

step "9. models/base-en"
mkdir -p "$dest"
# it6/model holds the HF directory and the head of the last update
cp it6/model/config.json it6/model/model.safetensors it6/model/head.safetensors it6/model/preprocessor_config.json "$dest/"
# every log gzipped (zcat reads them), so that the directory stays under 25 MB
rm -f "$dest"/train_log_it*.jsonl
for it in it1 it2 it3 it4 it5 it6; do
  gzip -n -9 -c "$it/train_log.jsonl" > "$dest/train_log_$it.jsonl.gz"
  "${mpirun[@]}" "$bin/slex-eval" curves --log "$it/train_log.jsonl" --smooth 50 --out "$dest/curves_$it"
  rm -f "$dest/curves_$it/"*.dat "$dest/curves_$it/"*.gp # the plots only: the rest is remade from the log
done

step "10. evaluation: MFCC and every layer on unseen speakers and voices"
SLEX_RANKS=$ranks bash "$src/pipeline/base_model_eval.sh" "$bin" . "$dest"
echo "base model in $dest"
