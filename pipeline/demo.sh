#!/usr/bin/env bash
# The demo: what slex does today, end to end, on a small corpus made here from Debian packages.
#   1. slex-synth: English and Mandarin train/test speech with phone alignments (espeak-ng);
#   2. slex-mfcc: Kaldi MFCC + deltas of every split into sharded HDF5 stores (2 MPI ranks);
#   3. slex-export: the English train features in fairseq's .npy/.len layout;
#   4. a re-run of step 2, which finds every shard done and skips it;
#   5. one-iteration targets: k-means (K=50) on Mandarin MFCC, units for the Mandarin train set
#      in fairseq's .km layout;
#   6. re-clustering: one codebook on pooled English+Mandarin MFCC (half each), units for both;
#   7. representations: slex-dump of slex's own English HuBERT (models/base-en, pretrained by
#      `make -f Makefile.hpc base-model`: no checkpoint can be downloaded here; point --model at
#      mHuBERT on a real system), layer 1, k-means and units on them;
#   8. unit quality: PNMI, purities and usage per language (slex-eval), and a table of the systems.
# usage: pipeline/demo.sh [BIN_DIR (build/bin)] [OUT_DIR (demo-out)]
set -euo pipefail
bin=$(cd "${1:-build/bin}" && pwd)
out=${2:-demo-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
ranks=2
mpirun=(mpirun -np "$ranks")
[ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
mpirun+=(--oversubscribe)
export SLEX_PROGRESS_INTERVAL=${SLEX_PROGRESS_INTERVAL:-5}
step() { printf '\n== %s\n' "$*"; }

step "1. synthesising the corpus (English and Mandarin, train 3 min + test 1 min each) into $out/corpus"
for lang in en zh; do
  "${mpirun[@]}" "$bin/slex-synth" --lang "$lang" --split train --minutes 3 --out "$out/corpus" --seed 1
  "${mpirun[@]}" "$bin/slex-synth" --lang "$lang" --split test --minutes 1 --out "$out/corpus" --seed 2
done

step "2. MFCC features (100 Hz, 39 dims) into $out/mfcc/<lang>_<split>"
for corpus in en_train en_test zh_train zh_test; do
  "${mpirun[@]}" "$bin/slex-mfcc" --manifest "$out/corpus/$corpus.tsv" --out "$out/mfcc/$corpus" --nshard 4
done

step "3. fairseq layout of the English train features in $out/fairseq"
"${mpirun[@]}" "$bin/slex-export" --store "$out/mfcc/en_train" --out "$out/fairseq" --split train

step "4. re-running step 2 for en_train: finished shards are skipped"
"${mpirun[@]}" "$bin/slex-mfcc" --manifest "$out/corpus/en_train.tsv" --out "$out/mfcc/en_train" --nshard 4

step "5. one-iteration targets: k-means on Mandarin MFCC, units in fairseq's layout ($out/km/zh_mfcc)"
"${mpirun[@]}" "$bin/slex-kmeans" --store "$out/mfcc/zh_train" --k 50 --out "$out/codebooks/zh_mfcc50.h5" \
  --seed 1 --batch-size 2000 --n-init 5
"${mpirun[@]}" "$bin/slex-label" --store "$out/mfcc/zh_train" --codebook "$out/codebooks/zh_mfcc50.h5" \
  --out "$out/units/zh_train_mfcc50" --km "$out/km/zh_mfcc" --split train

step "6. re-clustering: one codebook on English and Mandarin MFCC, half each"
"${mpirun[@]}" "$bin/slex-kmeans" --store "$out/mfcc/en_train:1" --store "$out/mfcc/zh_train:1" --k 50 \
  --out "$out/codebooks/enzh_mfcc50.h5" --seed 1 --batch-size 2000 --n-init 5
for corpus in en_train zh_train; do
  "${mpirun[@]}" "$bin/slex-label" --store "$out/mfcc/$corpus" --codebook "$out/codebooks/enzh_mfcc50.h5" \
    --out "$out/units/${corpus}_enzh50"
done

step "7. HuBERT representations (the English base model models/base-en, layer 1, 50 Hz), k-means, units"
model=$(cd "$(dirname "$0")/.." && pwd)/models/base-en
"${mpirun[@]}" "$bin/slex-dump" --manifest "$out/corpus/zh_train.tsv" --model "$model" --layer 1 \
  --out "$out/hubert/zh_train_l1" --nshard 4
"${mpirun[@]}" "$bin/slex-kmeans" --store "$out/hubert/zh_train_l1" --k 50 --out "$out/codebooks/zh_hubert50.h5" \
  --seed 1 --batch-size 2000 --n-init 5
"${mpirun[@]}" "$bin/slex-label" --store "$out/hubert/zh_train_l1" --codebook "$out/codebooks/zh_hubert50.h5" \
  --out "$out/units/zh_train_hubert50" --km "$out/km/zh_hubert" --split train

step "8. unit quality per language (slex-eval): PNMI, purities, codebook usage; a table of the systems"
"${mpirun[@]}" "$bin/slex-eval" units --labels "$out/units/zh_train_mfcc50" --align "$out/corpus/zh_train.align" \
  --lang zh --out "$out/eval/zh_mfcc50"
"${mpirun[@]}" "$bin/slex-eval" units --labels "$out/units/zh_train_hubert50" --align "$out/corpus/zh_train.align" \
  --lang zh --out "$out/eval/zh_hubert50"
"${mpirun[@]}" "$bin/slex-eval" units --labels "$out/units/en_train_enzh50" --align "$out/corpus/en_train.align" \
  --lang en --labels "$out/units/zh_train_enzh50" --align "$out/corpus/zh_train.align" --lang zh \
  --out "$out/eval/enzh_mfcc50"
"$bin/slex-eval" compare "zh MFCC k-means=$out/eval/zh_mfcc50" "zh English base layer 1=$out/eval/zh_hubert50" \
  "en+zh MFCC re-clustered=$out/eval/enzh_mfcc50" --out "$out/eval/table"
cat "$out/eval/table/compare.md"

step "what the demo produced"
printf '%-10s %7s %9s %8s %6s %9s %s\n' corpus utts "audio(s)" phones frames rejected store
for corpus in en_train en_test zh_train zh_test; do
  idx="$out/mfcc/$corpus/index.json"
  utts=$(awk 'NR > 1' "$out/corpus/$corpus.tsv" | wc -l)
  secs=$(awk -F'\t' 'NR > 1 { s += $2 } END { printf "%.0f", s / 16000 }' "$out/corpus/$corpus.tsv")
  phones=$(awk 'NF && $1 !~ /^#/' "$out/corpus/$corpus.phones" | wc -l)
  frames=$(sed -n 's/^[[:space:]]*"frames":[[:space:]]*\([0-9]*\),*$/\1/p' "$idx" | head -1)
  rejected=$(sed -n 's/^[[:space:]]*"rejected":[[:space:]]*\([0-9]*\),*$/\1/p' "$idx" | head -1)
  printf '%-10s %7s %9s %8s %6s %9s %s\n' "$corpus" "$utts" "$secs" "$phones" "$frames" "$rejected" "$out/mfcc/$corpus"
done
echo
echo "corpus (WAV, manifests .tsv, alignments .align, phone inventories .phones): $out/corpus"
echo "fairseq features: $(ls "$out/fairseq" | tr '\n' ' ')"
echo "codebooks: $(ls "$out/codebooks" | tr '\n' ' ')"
echo "fairseq units: $out/km/zh_mfcc/train.km ($(wc -l < "$out/km/zh_mfcc/train.km") lines), $out/km/zh_hubert/train.km"
echo "first units of $(sed -n 2p "$out/km/zh_mfcc/train.tsv" | cut -f1): $(sed -n 1p "$out/km/zh_mfcc/train.km" | cut -d' ' -f1-20) ..."
echo "unit quality: $out/eval/*/metrics.json, figures $out/eval/*/*.png, table $out/eval/table/compare.md"
echo "read a store with h5py: see README.md, section 'The store'"
