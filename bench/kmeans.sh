#!/bin/sh
# k-means benchmark (issue 4): slex-kmeans as users run it (a feature store written once by
# make_store, then `mpiexec -n R slex-kmeans`) vs sklearn MiniBatchKMeans with fairseq's
# learn_kmeans.py settings vs faiss.Kmeans, on the same generated features, in one run.
# Inertia: one numpy float64 function on all points for every codebook, mean per frame.
#   bench/kmeans.sh [BUILD_DIR (build)] [N_INIT_768 (1)] [VARIANTS (per case)] [CASES ("39 500 1000")]
# Cases: D=39 K=100 N=360000 (1 h of 100 Hz MFCC; fairseq's n_init 20) and D=768 K=500, K=1000
# N=180000 (1 h of 50 Hz HuBERT features; n_init N_INIT_768 for all three methods, so that the
# whole bench stays near 15 minutes on 2 cores).  slex runs with 1 rank and 2 ranks (one
# OpenBLAS thread per rank), plus variants (VARIANTS): a number P is fairseq's settings with P
# Lloyd passes after the mini-batches (2 ranks); LP is the Lloyd mode, --init random
# --max-iter 0 --lloyd-passes P (faiss's recipe with bounded passes, 1 and 2 ranks).  Default
# variants: "30 L50" for D=39 (cheap passes), "2 L30" for D=768.
# The 1- and 2-rank codebooks must be bit-identical.  sklearn and faiss use both cores; faiss
# runs 25 Lloyd iterations on all points from n_init (nredo) random starts.
# Wall seconds of slex include mpiexec start-up and reading the store.
# Needs BUILD_DIR/bin/{slex-kmeans,make_store}.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
n_init_768=${2:-1}
variants_arg=${3:-}
cases=${4:-39 500 1000}
bin=$build/bin
py=/usr/bin/python3
mpi="mpiexec --allow-run-as-root --oversubscribe"
for b in slex-kmeans make_store; do
    [ -x "$bin/$b" ] || { echo "missing $bin/$b (cmake --build $build --target $b)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/slex-bench-kmeans.XXXXXX)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }

# slex_run LABEL RANKS K N_INIT NPY [slex-kmeans options...]: appends LABEL=SECONDS=NPY=INFO
# to $work/runs (one line each).
slex_run() {
    label=$1 ranks=$2 k=$3 n_init=$4 npy=$5
    shift 5
    t0=$(now)
    if ! OPENBLAS_NUM_THREADS=1 $mpi -n "$ranks" "$bin/slex-kmeans" --store "$work/store" --k "$k" \
        --n-init "$n_init" --out "$work/cb.h5" --export-npy "$npy" --final-inertia 0 --force "$@" \
        2>"$work/log"; then
        cat "$work/log" >&2
        exit 1
    fi
    t1=$(now)
    info=$(sed -n 's/.* after \([0-9]*\) steps (\([a-z_]*\)), \([0-9]*\) Lloyd.*/\1 steps (\2), \3 Lloyd passes/p' "$work/log")
    echo "$label=$(echo "$t1 - $t0" | bc)=$npy=$info" >>"$work/runs"
}

run_case() { # N D K N_INIT FRAME_RATE DEFAULT_VARIANTS
    n=$1 d=$2 k=$3 n_init=$4 rate=$5 variants=${variants_arg:-$6}
    rm -rf "$work/store" "$work/runs" "$work"/*.npy
    $py "$root/bench/kmeans_ref.py" gen "$work/x.bin" "$work/x.npy" "$n" "$d" "$rate" 1234
    "$bin/make_store" "$work/x.bin" "$work/store" 4 "$rate"
    rm -f "$work/x.bin"
    slex_run "slex 1 rank" 1 "$k" "$n_init" "$work/c1.npy"
    slex_run "slex 2 ranks" 2 "$k" "$n_init" "$work/c2.npy"
    for v in $variants; do
        case $v in
            L*)
                p=${v#L}
                for r in 1 2; do
                    label="slex $r rank"; [ "$r" = 1 ] || label="${label}s"
                    slex_run "$label, Lloyd mode $p passes" "$r" "$k" "$n_init" "$work/c${r}_L$p.npy" \
                        --init random --max-iter 0 --lloyd-passes "$p"
                done
                if ! cmp -s "$work/c1_L$p.npy" "$work/c2_L$p.npy"; then
                    echo "  check: FAILED: Lloyd-mode codebooks of 1 and 2 ranks differ"
                    return 1
                fi ;;
            *) slex_run "slex 2 ranks + $v Lloyd pass(es)" 2 "$k" "$n_init" "$work/c2_l$v.npy" --lloyd-passes "$v" ;;
        esac
    done
    # shellcheck disable=SC2046  # one argument per line of runs
    (IFS='
'; $py "$root/bench/kmeans_ref.py" ref "$work/x.npy" "$k" "$n_init" 100 10000 "$work" $(cat "$work/runs"))
    if cmp -s "$work/c1.npy" "$work/c2.npy"; then
        echo "  check: slex codebooks of 1 rank and 2 ranks are bit-identical"
    else
        echo "  check: FAILED: slex codebooks of 1 and 2 ranks differ"
        return 1
    fi
}

echo "kmeans bench on $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
for c in $cases; do
    case $c in
        39) run_case 360000 39 100 20 100 "30 L50" ;;
        500 | 1000) run_case 180000 768 "$c" "$n_init_768" 50 "2 L30" ;;
        *) echo "unknown case $c (39, 500 or 1000)" >&2; exit 2 ;;
    esac
done
