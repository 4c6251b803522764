#!/bin/sh
# slex-kmeans memory (issue 4): peak RSS (/usr/bin/time -f %M) of one rank on a store and on a
# store with 10x more frames (same D and K), with --cache-mb small enough that neither store is
# cached (frames are read from the shard files at every step), and once with the default cache
# (2048 MB, both stores fit: memory then follows the corpus up to that budget).  Memory should
# be bounded by the cache budget + the samples / mini-batch + the codebook, not by the corpus.
#   bench/kmeans_memory.sh [BUILD_DIR (build)] [FRAMES (72000)] [D (768)] [K (500)]
# FRAMES is the small store (above the init sample of 3 x 10000 frames, so both runs draw
# samples of the same size, and above the 65536 frames a Lloyd pass reduces at a time); the big
# one has 10 x FRAMES.  Short runs (--n-init 1 --max-iter 1):
# memory does not depend on the number of steps.  Then the Lloyd mode (2 passes over every
# frame) with 16 MB for the cache and 16 MB for the bounds.  Needs BUILD_DIR/bin/{slex-kmeans,make_store}.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
n=${2:-72000}
d=${3:-768}
k=${4:-500}
bin=$build/bin
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
for b in slex-kmeans make_store; do
    [ -x "$bin/$b" ] || { echo "missing $bin/$b (cmake --build $build --target $b)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/slex-bench-kmeans-mem.XXXXXX)
trap 'rm -rf "$work"' EXIT

for scale in 1 10; do
    /usr/bin/python3 "$root/bench/kmeans_ref.py" gen "$work/x.bin" "$work/x.npy" $((n * scale)) "$d" 50 $scale
    "$bin/make_store" "$work/x.bin" "$work/store$scale" 4 50
    rm -f "$work/x.bin" "$work/x.npy"
done

peak_kb() { # STORE CACHE_MB [options...] -> peak RSS in KB
    store=$1 cache=$2
    shift 2
    OPENBLAS_NUM_THREADS=1 /usr/bin/time -f "%M" -o "$work/rss" "$bin/slex-kmeans" --store "$store" --k "$k" \
        --n-init 1 --final-inertia 0 --cache-mb "$cache" --out "$work/cb.h5" --force "$@" 2>"$work/log" \
        || { cat "$work/log" >&2; exit 1; }
    tail -n 1 "$work/rss"
}

mb() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
corpus1=$((n * d * 4))
corpus10=$((10 * n * d * 4))
echo "slex-kmeans peak RSS, 1 rank, D=$d K=$k (codebook $(mb $((k * d * 4))) MB, mini-batch 10000 frames $(mb $((10000 * d * 4))) MB)"
echo "  corpus: $n frames ($(mb $corpus1) MB of features) and $((10 * n)) frames ($(mb $corpus10) MB)"
report() { # LABEL RSS1 RSS10
    awk -v l="$1" -v a="$2" -v b="$3" 'BEGIN {
        printf "  %-40s peak RSS %6.0f MB (1x)  %6.0f MB (10x)  ratio 10x/1x %.2f\n", l, a / 1024, b / 1024, b / a }'
}
for cache in 16 2048; do
    report "mini-batch, --cache-mb $cache" "$(peak_kb "$work/store1" $cache --max-iter 1)" \
        "$(peak_kb "$work/store10" $cache --max-iter 1)"
done
# Lloyd mode: every pass reads every frame; the per-frame bounds are capped by --bounds-mb.
lloyd="--init random --max-iter 0 --lloyd-passes 2 --bounds-mb 16"
# shellcheck disable=SC2086  # $lloyd is a list of options
report "Lloyd mode, --cache-mb 16 --bounds-mb 16" "$(peak_kb "$work/store1" 16 $lloyd)" \
    "$(peak_kb "$work/store10" 16 $lloyd)"
