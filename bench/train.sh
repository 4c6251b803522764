#!/bin/sh
# shellcheck disable=SC2046 # "set -- $(run ...)" splits a run's "seconds rss cpu" line on purpose
# slex-train next to PyTorch (bench/train_torch.py: torchaudio 0.13.1's hubert_pretrain_model) on
# the same steps, measured alternately in one run (slex and PyTorch take turns, ROUNDS times; each
# figure is the best over the rounds):
#   lora: a LoRA step of HuBERT Base (facebook/hubert-base-ls960's config, random weights) on
#         4 x 5 s, rank 24 / alpha 48 on q, k, v, out of every layer, 1000 units;
#   full: a full step of the 4 x 256 pre-LN model with a layer-norm CNN 256 on 4 x 4 s, 100 units.
# Both sides: fairseq's criterion (mask 0.8 / 10, feature penalty 10), dropout 0.1, attention
# dropout 0.1, layerdrop 0, clipping at 10, AdamW (0.9, 0.98), eps 1e-6, weight decay 0.01.
# slex with 1 and 2 MPI ranks (micro-batches of 2: two per step on one rank, one per rank on two),
# PyTorch with 1 and 2 threads (OMP and OpenBLAS), its cosine logits as one matrix product (the
# faster of the two ways of train_torch.py; torchaudio's own LogitGenerator, which expands
# (K, N, D) for cosine_similarity as fairseq does, is run once on 1 thread and printed apart).  Everybody gets OPENBLAS_CORETYPE=SkylakeX
# (OpenBLAS 0.3.21 takes this CPU for a Prescott; torch links the same OpenBLAS) unless it is set.
# Prints seconds per step (the best step after a warm-up step), the ratios (one core: slex 1 rank
# vs PyTorch 1 thread, in wall and in CPU seconds per step, the latter less disturbed by other
# work on the machine; two cores: slex 2 ranks vs PyTorch's better of 1 and 2 threads), peak RSS
# (the largest rank; PyTorch's process) and its ratio, the step's GFLOP (from the config,
# train_torch.py flops), the GFLOP/s slex reaches on one rank as a share of the one-thread sgemm
# peak (bench_sgemm), and the 1 -> 2 rank step time.  Builds nothing.
#   bench/train.sh [BUILD_DIR (build)] [ROUNDS (2)] [STEPS (2)] [MODES ("lora full")]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
rounds=${2:-2}
steps=${3:-2}
modes=${4:-lora full}
bin=$build/bin
py=/usr/bin/python3
for f in "$bin/slex-train" "$build/bench/bench_sgemm"; do
  [ -x "$f" ] || { echo "train.sh: $f not built (cmake --build $build)" >&2; exit 1; }
done
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-SkylakeX}"
mpirun=${MPIRUN:-mpirun}
[ "$(id -u)" = 0 ] && mpirun="$mpirun --allow-run-as-root"
dir=$(mktemp -d /tmp/slex-train-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT

"$py" "$here/train_torch.py" export "$dir"
field() { printf '%s\n' "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
peak=$(field "$(OPENBLAS_NUM_THREADS=1 "$build/bench/bench_sgemm" 4096 1024 768 5 | tr '=' ' ')" gflops)
# the smaller of two numbers (the first when the second is empty)
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 <= b + 0) ? a : b }'; }

# slex_run MODE RANKS [STEPS (steps + 1)]: the best step's seconds after the first, the largest
# rank's peak RSS (MB) and the CPU seconds (user + sys) of the whole run, summed over the ranks
slex_run() {
  mode=$1 ranks=$2 n=${3:-$((steps + 1))} out=$dir/run_$1_$2
  rm -rf "$out"
  if [ "$mode" = lora ]; then
    set -- --data "$dir/lora.tsv:$dir/lora.km" --init "$dir/base" --mode lora --num-classes 1000 \
      --max-tokens 320000 --max-sample-size 80000 --lora-rank 24 --lora-alpha 48 --lora-targets q,k,v,out
  else
    set -- --data "$dir/full.tsv:$dir/full.km" --arch "$dir/tiny.json" --mode full --num-classes 100 \
      --max-tokens 256000 --max-sample-size 64000
  fi
  set -- "$@" --label-rate 50 --min-sample-size 0 --micro-batch 2 --layerdrop 0 --steps "$n" \
    --checkpoint-every 1000000 --seed 1 --out "$out"
  OPENBLAS_NUM_THREADS=1 SLEX_LOG=warn $mpirun --oversubscribe -np "$ranks" \
    sh -c '/usr/bin/time -f "%M %U %S" -o "$0.${OMPI_COMM_WORLD_RANK:-0}" "$@"' "$dir/rss" "$bin/slex-train" "$@" >&2
  s=$(sed -n 's/.*"seconds_per_step":\([0-9.eE+-]*\).*/\1/p' "$out/train_log.jsonl" | tail -n +2 | sort -g | head -n 1)
  r=$(cat "$dir"/rss.* | awk '$1 > m { m = $1 } END { print int(m / 1024) }')
  c=$(cat "$dir"/rss.* | awk '{ c += $2 + $3 } END { print c }')
  rm -f "$dir"/rss.*
  echo "${s:-0} $r $c"
}

# torch_run MODE THREADS [HEAD (matmul)]
torch_run() {
  o=$(OMP_NUM_THREADS=$2 OPENBLAS_NUM_THREADS=$2 "$py" "$here/train_torch.py" bench "$dir" "$1" "$2" "$steps" "${3:-matmul}")
  echo "$(field "$o" step_seconds) $(field "$o" peak_rss_mb) $(field "$o" step_cpu_seconds)"
}

echo "loaded machine: load average $(cut -d' ' -f1-3 /proc/loadavg) at the start; $(nproc) cores"
for mode in $modes; do
  s1='' s2='' t1='' t2='' m1='' m2='' n1='' n2='' sc='' tc=''
  # the CPU time of one step on one rank: that of a run of 1 + STEPS steps less that of 1 step
  set -- $(slex_run "$mode" 1 1); c0=$3
  for round in $(seq "$rounds"); do
    set -- $(torch_run "$mode" 1); t1=$(best "$1" "$t1"); n1=$(best "$2" "$n1"); tc=$(best "$3" "$tc")
    set -- $(slex_run "$mode" 1); s1=$(best "$1" "$s1"); m1=$(best "$2" "$m1")
    sc=$(best "$(awk -v a="$3" -v b="$c0" -v n="$steps" 'BEGIN { print (a - b) / n }')" "$sc")
    set -- $(torch_run "$mode" 2); t2=$(best "$1" "$t2"); n2=$(best "$2" "$n2")
    set -- $(slex_run "$mode" 2); s2=$(best "$1" "$s2"); m2=$(best "$2" "$m2")
    echo "  round $round: PyTorch $t1 / $t2 s, slex $s1 / $s2 s (1 / 2, best so far)" >&2
  done
  set -- $(torch_run "$mode" 1 torchaudio); ta=$1 tam=$2
  flop=$(field "$("$py" "$here/train_torch.py" flops "$dir" "$mode")" gflop)
  if [ "$mode" = lora ]; then
    echo "LoRA step, HuBERT Base, 4 x 5 s, rank 24 on q,k,v,out, 1000 units: $flop GFLOP"
  else
    echo "full step, 4 x 256 pre-LN model, layer-norm CNN 256, 4 x 4 s, 100 units: $flop GFLOP"
  fi
  awk -v s1="$s1" -v s2="$s2" -v t1="$t1" -v t2="$t2" -v m1="$m1" -v m2="$m2" -v n1="$n1" -v n2="$n2" \
      -v flop="$flop" -v peak="$peak" -v ta="$ta" -v tam="$tam" -v sc="$sc" -v tc="$tc" 'BEGIN {
    tb = t1 < t2 ? t1 : t2; mm = m1 > m2 ? m1 : m2; nn = n1 > n2 ? n1 : n2
    printf "  slex    1 rank   %7.2f s/step  peak RSS %5d MB\n", s1, m1
    printf "  slex    2 ranks  %7.2f s/step  peak RSS %5d MB per rank\n", s2, m2
    printf "  PyTorch 1 thread %7.2f s/step  peak RSS %5d MB\n", t1, n1
    printf "  PyTorch 2 threads%7.2f s/step  peak RSS %5d MB\n", t2, n2
    printf "  (PyTorch 1 thread with torchaudio'"'"'s own LogitGenerator: %.2f s/step, peak RSS %d MB: slex %.2fx)\n", ta, tam, ta / s1
    printf "  one core:  slex %.2fx PyTorch (goal >= 1.5x); in CPU seconds per step %.2f vs %.2f: %.2fx\n", t1 / s1, sc, tc, tc / sc
    printf "  two cores: slex %.2fx PyTorch'"'"'s better of 1 and 2 threads (goal >= 2x)\n", tb / s2
    printf "  peak RSS:  slex / PyTorch %.2f (goal <= 0.5)\n", mm / nn
    printf "  slex 1 rank: %.1f GFLOP/s = %.0f %% of the 1-thread sgemm peak (%.1f GFLOP/s, both wall clock); %.1f GFLOP per CPU second\n", flop / s1, 100 * flop / s1 / peak, peak, flop / sc
    printf "  slex 1 -> 2 ranks: %.2f -> %.2f s/step (%.2fx)\n", s1, s2, s1 / s2
  }'
done
