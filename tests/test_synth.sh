#!/bin/sh
# test_synth.sh: slex-synth end to end.
#   test_synth.sh <slex-synth> <test_synth checker> <scratch dir> <mpiexec command...>
# - the same arguments give byte-identical WAVs, alignments, vocabularies and texts with 1, 2
#   and 3 ranks (the manifest too, apart from its root line, which names the directory);
# - another seed gives another corpus;
# - bad arguments fail with a message;
# - the checker (tests/test_synth.c) checks the corpus against its audio and the splits.
set -eu
SYNTH=$1; CHECKER=$2; WORK=$3; shift 3
MPI="$*"
fail() { echo "test_synth.sh: FAILED: $*" >&2; exit 1; }
rm -rf "$WORK"; mkdir -p "$WORK"
export SLEX_LOG=warn
# Open MPI's MPI_Init leaks by design: LeakSanitizer (SLEX_SANITIZE builds) is off for the MPI
# programs only; the checker below runs with it.
CHECKER_ASAN=${ASAN_OPTIONS:-}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

$MPI -np 1 "$SYNTH" --lang en --minutes 0.5 --out "$WORK/a" --seed 11
$MPI -np 3 "$SYNTH" --lang en --minutes 0.5 --out "$WORK/b" --seed 11
$MPI -np 1 "$SYNTH" --lang zh --minutes 0.5 --out "$WORK/a" --seed 11
$MPI -np 2 "$SYNTH" --lang zh --minutes 0.5 --out "$WORK/b" --seed 11
$MPI -np 2 "$SYNTH" --lang en --split test --minutes 0.25 --out "$WORK/a" --seed 12
$MPI -np 3 "$SYNTH" --lang zh --split test --minutes 0.25 --out "$WORK/a" --seed 12

checks=0
for name in en_train zh_train; do
    for ext in align phones utts rejected; do
        cmp "$WORK/a/$name.$ext" "$WORK/b/$name.$ext" || fail "$name.$ext differs between rank counts"
        checks=$((checks + 1))
    done
    tail -n +2 "$WORK/a/$name.tsv" > "$WORK/a.body"
    tail -n +2 "$WORK/b/$name.tsv" > "$WORK/b.body"
    cmp "$WORK/a.body" "$WORK/b.body" || fail "$name.tsv differs between rank counts"
    [ "$(head -n 1 "$WORK/a/$name.tsv")" = "$(cd "$WORK/a" && pwd -P)" ] || fail "$name.tsv root is not absolute"
    checks=$((checks + 2))
done
(cd "$WORK/a/wav" && ls en_train_* zh_train_*) > "$WORK/a.list"
(cd "$WORK/b/wav" && ls) > "$WORK/b.list"
cmp "$WORK/a.list" "$WORK/b.list" || fail "different WAV files between rank counts"
[ "$(wc -l < "$WORK/a.list")" -gt 10 ] || fail "too few WAV files"
[ "$(($(wc -l < "$WORK/a/en_train.tsv") + $(wc -l < "$WORK/a/zh_train.tsv") - 2))" -eq "$(wc -l < "$WORK/a.list")" ] ||
    fail "WAV files that are not in the manifests"
while read -r f; do
    cmp "$WORK/a/wav/$f" "$WORK/b/wav/$f" || fail "wav/$f differs between rank counts"
    checks=$((checks + 1))
done < "$WORK/a.list"
[ ! -e "$WORK/a/.en_train.part0.tmp" ] || fail "part files left behind"

# Another seed, another corpus (into a directory whose parents are missing, made as needed).
"$SYNTH" --lang en --minutes 0.1 --out "$WORK/new/parents/c" --seed 99
mv "$WORK/new/parents/c" "$WORK/c"
cmp -s "$WORK/a/wav/en_train_000000.wav" "$WORK/c/wav/en_train_000000.wav" && fail "seed has no effect"
checks=$((checks + 1))

# Bad arguments (and the run above): a singleton process without mpiexec works too.
rc=0; "$SYNTH" --lang fr --minutes 1 --out "$WORK/d" 2> "$WORK/err.txt" || rc=$?
[ "$rc" = 2 ] || fail "--lang fr: exit $rc, not 2 (bad command line)"
grep -q -- "--lang fr: expected one of en, zh" "$WORK/err.txt" || fail "no message for --lang fr"
if "$SYNTH" --lang en --minutes 1 --out "$WORK/d" --fortune-dir /nonexistent 2> "$WORK/err.txt"; then
    fail "missing fortune files accepted"
fi
grep -q "/nonexistent/computers: cannot open fortune file" "$WORK/err.txt" || fail "no message for missing fortunes"
checks=$((checks + 2))
echo "test_synth.sh: $checks checks, 0 failed" >&2

ASAN_OPTIONS=$CHECKER_ASAN "$CHECKER" "$WORK/a"
