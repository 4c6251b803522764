#!/usr/bin/env bash
# No slowdown: build REV and the working tree, then measure both on the same inputs, alternating,
# so that a loaded machine weighs on both alike:
#   - slex-label (N=180000, D=768, K=1000) and slex-kmeans (N=360000, D=39, K=100, defaults) on one
#     rank: user + sys CPU seconds, the best of ROUNDS rounds (CPU time is less disturbed by other
#     work than wall time), and whether the two codebooks' centers are identical;
#   - bench/mfcc.sh and bench/model.sh with each build: their ratio to torchaudio / PyTorch,
#     measured in the same run.
# Both builds get OPENBLAS_CORETYPE=SkylakeX (older builds do not choose the kernels themselves).
# For refactoring commits, beside tests/compare_commit.sh (byte-identical outputs).
# usage: tests/compare_speed.sh [REV (HEAD)] [WORK_DIR (/tmp/slex-compare-speed)] [ROUNDS (5)]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:-HEAD}
work=${2:-/tmp/slex-compare-speed}
rounds=${3:-5}
. "$src/tests/build_two.sh"
mkdir -p "$work/data"
export OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=1 PMIX_MCA_psec=${PMIX_MCA_psec:-^munge}
d=$work/data new=$work/new-build/bin
/usr/bin/python3 "$src/bench/kmeans_ref.py" gen "$d/x.bin" "$d/x.npy" 180000 768 50 7
"$new/make_store" "$d/x.bin" "$d/s768" 4 50
/usr/bin/python3 "$src/bench/kmeans_ref.py" gen "$d/y.bin" "$d/y.npy" 360000 39 100 7
"$new/make_store" "$d/y.bin" "$d/s39" 4 100
rm -f "$d"/*.bin "$d"/*.npy
"$new/slex-kmeans" --store "$d/s768" --k 1000 --n-init 1 --init-size 3000 --max-iter 1 --final-inertia 0 \
  --out "$d/cb.h5" 2>/dev/null
cpu() { /usr/bin/time -f "%U %S" -o "$d/time" "$@" > /dev/null 2>&1; awk '{ printf "%.2f\n", $1 + $2 }' "$d/time"; }
for side in old new; do : > "$d/label_$side"; : > "$d/kmeans_$side"; done
for round in $(seq "$rounds"); do
  for side in old new; do
    b=$work/$side-build/bin
    rm -rf "$d/labels_$side" "$d/km_$side.h5"
    cpu "$b/slex-label" --store "$d/s768" --codebook "$d/cb.h5" --out "$d/labels_$side" >> "$d/label_$side"
    cpu "$b/slex-kmeans" --store "$d/s39" --k 100 --out "$d/km_$side.h5" --seed 1 >> "$d/kmeans_$side"
  done
  echo "round $round: label old $(tail -1 "$d/label_old") new $(tail -1 "$d/label_new") CPU s;" \
    "kmeans old $(tail -1 "$d/kmeans_old") new $(tail -1 "$d/kmeans_new") CPU s"
done
best() { sort -g "$1" | head -1; }
echo "slex-label, best of $rounds: old $(best "$d/label_old") new $(best "$d/label_new") CPU s"
echo "slex-kmeans, best of $rounds: old $(best "$d/kmeans_old") new $(best "$d/kmeans_new") CPU s"
if h5diff "$d/km_old.h5" "$d/km_new.h5" /centers > /dev/null; then echo "k-means centers identical"
else echo "k-means centers DIFFER"; fi
for side in old new; do
  echo "== bench/mfcc.sh and bench/model.sh, $side build"
  bash "$src/bench/mfcc.sh" "$work/$side-build" | grep ratio
  bash "$src/bench/model.sh" "$work/$side-build" 30 1 12 2 | grep -E "ratio|GEMMs"
done
