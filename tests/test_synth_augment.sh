#!/bin/sh
# test_synth_augment.sh: slex-synth --voices all and --augment end to end.
#   test_synth_augment.sh <slex-synth> <test_augment> <default checksums> <scratch dir> <mpiexec command...>
# - without the new options, a small English and Mandarin corpus are byte for byte what slex-synth
#   wrote before them (checksums made with the binary of the commit before, in tests/data);
# - --voices all draws from the wider pool (other variants and accents, rates outside 130..230);
# - --augment gives byte-identical corpora with 1, 2 and 3 ranks;
# - test_augment compares the augmented corpus with the same corpus made without --augment
#   (lengths and phones rescaled by the recorded speed, SNRs and gains measured back), and a
#   speed change with sox's speed effect on the clean utterance;
# - the perturbation options need --augment; bad values fail; a run without --augment removes an
#   earlier run's .augment file.
set -eu
SYNTH=$1; CHECKER=$2; SUMS=$3; WORK=$4; shift 4
MPI="$*"
fail() { echo "test_synth_augment.sh: FAILED: $*" >&2; exit 1; }
rm -rf "$WORK"; mkdir -p "$WORK"
export SLEX_LOG=warn
CHECKER_ASAN=${ASAN_OPTIONS:-}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
checks=0

# Checksums of every file of a corpus directory (the manifest without its root line).
sums() {
    (cd "$1" && for f in $(find . -type f ! -name '*.tsv' | sort); do sha256sum "$f"; done
     for f in *.tsv; do printf '%s  %s\n' "$(tail -n +2 "$f" | sha256sum | cut -d' ' -f1)" "./$f:body"; done)
}

# 1. Default output unchanged.
$MPI -np 2 "$SYNTH" --lang en --minutes 0.3 --out "$WORK/default" --seed 5
$MPI -np 2 "$SYNTH" --lang zh --split test --minutes 0.15 --out "$WORK/default" --seed 6
sums "$WORK/default" > "$WORK/default.sha256"
diff "$SUMS" "$WORK/default.sha256" || fail "the default output changed (diff above: expected, then got)"
checks=$((checks + 1))

# 2. The wider pool.
$MPI -np 2 "$SYNTH" --lang en --minutes 1 --out "$WORK/all" --seed 7 --voices all --speakers 200
variants=$(cut -f3 "$WORK/all/en_train.utts" | sed 's/.*+//' | sort -u)
n_variants=$(echo "$variants" | wc -l)
[ "$n_variants" -ge 10 ] || fail "--voices all: only $n_variants variants"
echo "$variants" | grep -qv -x -E 'm[1-7]|f[1-5]|klatt|klatt2|klatt3' || fail "--voices all: only standard variants"
cut -f3 "$WORK/all/en_train.utts" | grep -q -E '^en-gb-x-gbc(lan|wmd)\+' || fail "--voices all: no Lancaster or West Midlands accent"
awk -F'\t' '$4 < 115 || $4 > 250 { found = 1 } END { exit !found }' "$WORK/all/en_train.utts" ||
    fail "--voices all: no rate outside the standard range"
checks=$((checks + 4))

# 3. --augment: the same bytes for 1, 2 and 3 ranks (English with every noise kind; Mandarin).
for np in 1 2 3; do
    $MPI -np $np "$SYNTH" --lang en --minutes 1.5 --out "$WORK/aug$np" --seed 8 --voices all --augment
    $MPI -np $np "$SYNTH" --lang zh --minutes 0.5 --out "$WORK/aug$np" --seed 8 --augment --noise-kinds pink,babble --speed-prob 0.3 --reverb-prob 0.2 --noise-prob 0.3 --gain-prob 0.8
    sums "$WORK/aug$np" > "$WORK/aug$np.sha256"
done
for np in 2 3; do
    diff "$WORK/aug1.sha256" "$WORK/aug$np.sha256" > /dev/null || fail "--augment: $np ranks differ from 1 rank"
    checks=$((checks + 1))
done
grep -q '\./en_train\.augment' "$WORK/aug1.sha256" || fail "no .augment file"

# 4. Against the clean corpus.
$MPI -np 2 "$SYNTH" --lang en --minutes 1.5 --out "$WORK/clean" --seed 8 --voices all
$MPI -np 2 "$SYNTH" --lang zh --minutes 0.5 --out "$WORK/clean" --seed 8
ASAN_OPTIONS=$CHECKER_ASAN "$CHECKER" corpus "$WORK/clean" "$WORK/aug1" en_train
ASAN_OPTIONS=$CHECKER_ASAN "$CHECKER" corpus "$WORK/clean" "$WORK/aug1" zh_train
checks=$((checks + 2))
# The speed change against sox's (`speed F` then `rate -v 16000`, the clean WAV as input), on the
# first utterances with a speed change alone.
awk -F'\t' 'NR > 1 && $2 != "1.000" && $3 == "-" && $5 == "none" { print $1 "\t" $2 }' "$WORK/aug1/en_train.augment" |
    head -n 3 > "$WORK/speed_only.txt"
[ "$(wc -l < "$WORK/speed_only.txt")" -eq 3 ] || fail "fewer than 3 utterances with a speed change alone"
while IFS="$(printf '\t')" read -r rel speed; do
    sox "$WORK/clean/$rel" "$WORK/sox.wav" speed "$speed" rate -v 16000
    ASAN_OPTIONS=$CHECKER_ASAN "$CHECKER" similar "$WORK/sox.wav" "$WORK/aug1/$rel"
    checks=$((checks + 1))
done < "$WORK/speed_only.txt"

# 5. Options.
rc=0; "$SYNTH" --lang en --minutes 0.1 --out "$WORK/e" --speed-prob 0.5 2> "$WORK/err.txt" || rc=$?
[ "$rc" = 2 ] && grep -q -- "--speed-prob needs --augment" "$WORK/err.txt" || fail "--speed-prob without --augment: exit $rc"
rc=0; "$SYNTH" --lang en --minutes 0.1 --out "$WORK/e" --augment --noise-kinds white,hum 2> "$WORK/err.txt" || rc=$?
[ "$rc" = 2 ] && grep -q "unknown kind 'hum'" "$WORK/err.txt" || fail "--noise-kinds white,hum: exit $rc"
rc=0; "$SYNTH" --lang en --minutes 0.1 --out "$WORK/e" --augment --speed-min 1.2 2> "$WORK/err.txt" || rc=$?
[ "$rc" = 2 ] && grep -q -- "--speed-min 1.2 is above --speed-max 1.15" "$WORK/err.txt" || fail "--speed-min above max: exit $rc"
rc=0; "$SYNTH" --lang en --minutes 0.1 --out "$WORK/e" --voices many 2> "$WORK/err.txt" || rc=$?
[ "$rc" = 2 ] || fail "--voices many: exit $rc"
"$SYNTH" --lang zh --minutes 0.5 --out "$WORK/aug1" --seed 8
[ ! -e "$WORK/aug1/zh_train.augment" ] || fail "a stale .augment file is left after a run without --augment"
checks=$((checks + 5))
echo "test_synth_augment.sh: $checks checks, 0 failed" >&2
