#!/bin/sh
# test_synth_ext.sh: slex-synth --engine festival|flite end to end.
#   test_synth_ext.sh <slex-synth> <test_synth checker> <scratch dir> <mpiexec command...>
# - flite (one voice) and festival (a pool of two voices) give byte-identical WAVs, alignments,
#   vocabularies and texts with 1 and 2 ranks;
# - the checker (tests/test_synth.c --one) checks each corpus against its audio: the phones tile
#   every utterance up to its last sample, silence is quiet, boundaries sit on energy changes;
# - a hand-checked sentence: "Hello there, my friend." is the CMU dictionary's HH AH0 L OW1,
#   DH EH1 R, M AY1, F R EH1 N D (flite and festival write AH0 as ax) with pauses around it, at
#   the comma too for flite; its boundaries are those flite -psdur prints for the same rate,
#   at round(t * 16000), and its samples are flite's own;
# - a missing voice or program exits 4 naming it; --engine flite with --lang zh or without
#   --voice exits 2.
set -eu
SYNTH=$1; CHECKER=$2; WORK=$3; shift 3
MPI="$*"
fail() { echo "test_synth_ext.sh: FAILED: $*" >&2; exit 1; }
rm -rf "$WORK"; mkdir -p "$WORK"
export SLEX_LOG=warn
CHECKER_ASAN=${ASAN_OPTIONS:-}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
checks=0

# Rank counts: same bytes.
$MPI -np 1 "$SYNTH" --lang en --engine flite --voice slt --minutes 0.4 --out "$WORK/fl1" --seed 3 --split test
$MPI -np 2 "$SYNTH" --lang en --engine flite --voice slt --minutes 0.4 --out "$WORK/fl2" --seed 3 --split test
$MPI -np 1 "$SYNTH" --lang en --engine festival --voice kal_diphone --voice cmu_us_slt_arctic_hts --minutes 0.4 \
    --out "$WORK/fe1" --seed 3
$MPI -np 2 "$SYNTH" --lang en --engine festival --voice kal_diphone --voice cmu_us_slt_arctic_hts --minutes 0.4 \
    --out "$WORK/fe2" --seed 3
for pair in "fl1 fl2 en_test" "fe1 fe2 en_train"; do
    set -- $pair
    for ext in align phones utts rejected columns; do
        cmp "$WORK/$1/$3.$ext" "$WORK/$2/$3.$ext" || fail "$1: $3.$ext differs between rank counts"
        checks=$((checks + 1))
    done
    tail -n +2 "$WORK/$1/$3.tsv" > "$WORK/a.body"
    tail -n +2 "$WORK/$2/$3.tsv" > "$WORK/b.body"
    cmp "$WORK/a.body" "$WORK/b.body" || fail "$1: $3.tsv differs between rank counts"
    [ "$(wc -l < "$WORK/a.body")" -ge 5 ] || fail "$1: fewer than 5 utterances"
    (cd "$WORK/$1/wav" && ls) > "$WORK/a.list"
    (cd "$WORK/$2/wav" && ls) > "$WORK/b.list"
    cmp "$WORK/a.list" "$WORK/b.list" || fail "$1: different WAV files between rank counts"
    [ "$(wc -l < "$WORK/a.list")" -eq "$(wc -l < "$WORK/a.body")" ] || fail "$1: WAV files that are not in the manifest"
    while read -r f; do
        cmp "$WORK/$1/wav/$f" "$WORK/$2/wav/$f" || fail "$1: wav/$f differs between rank counts"
        checks=$((checks + 1))
    done < "$WORK/a.list"
    [ -s "$WORK/$1/$3.rejected" ] && fail "$1: utterances rejected: $(head -3 "$WORK/$1/$3.rejected")"
    checks=$((checks + 5))
done
# The festival pool: both voices speak, each as its own speaker, with the voice's own pitch.
for spk in en_festival_kal_diphone en_festival_cmu_us_slt_arctic_hts; do
    grep -q "	$spk	" "$WORK/fe1/en_train.utts" || fail "no utterance of $spk in the pool corpus"
    checks=$((checks + 1))
done
awk -F'\t' '$4 < 92 || $4 > 108 || $5 != 0 || $6 != 0 { bad = 1 } END { exit bad }' "$WORK/fe1/en_train.utts" ||
    fail "rate outside 92..108 % or a pitch/range set in $WORK/fe1/en_train.utts"
checks=$((checks + 1))

# An espeak pool: the named accents only, with drawn variants, or the variant given.
"$SYNTH" --lang en --voice en-029 --voice en-us+f2 --minutes 0.3 --out "$WORK/es" --seed 3
awk -F'\t' '$3 !~ /^en-029[+][a-z0-9]+$/ && $3 != "en-us+f2" { bad = 1 } END { exit bad }' "$WORK/es/en_train.utts" ||
    fail "espeak voices outside the pool in $WORK/es/en_train.utts"
[ "$(cut -f3 "$WORK/es/en_train.utts" | sort -u | wc -l)" -ge 3 ] || fail "espeak pool: fewer than 3 voices"
checks=$((checks + 2))

# The hand-checked sentence (and a train sentence, so that the loader finds both splits).
mkdir -p "$WORK/fortunes"
for f in computers cookie debian definitions disclaimer drugs education ethnic food fortunes goedel humorists kids \
    knghtbrd law linux linuxcookie literature love magic medicine men-women miscellaneous news paradoxum people perl \
    pets platitudes politics pratchett riddles science songs-poems sports startrek tao translate-me wisdom work zippy; do
    : > "$WORK/fortunes/$f"
done
printf 'Hello there, my friend.\n%%\nThe dog eats the meat.\n' > "$WORK/fortunes/computers"
for engine in "flite slt" "festival kal_diphone"; do
    set -- $engine
    "$SYNTH" --lang en --engine "$1" --voice "$2" --minutes 0.01 --split test --fortune-dir "$WORK/fortunes" \
        --out "$WORK/hand_$1"
    got=$(awk -F'\t' '!/^#/ { printf "%s ", $4 }' "$WORK/hand_$1/en_test.align")
    if [ "$1" = flite ]; then want="sil hh ax l ow dh eh r sil m ay f r eh n d sil "
    else want="sil hh ax l ow dh eh r m ay f r eh n d sil "; fi
    [ "$got" = "$want" ] || fail "$1 $2: phones '$got', expected '$want'"
    checks=$((checks + 1))
done
rate=$(cut -f4 "$WORK/hand_flite/en_test.utts")
stretch=$(awk -v r="$rate" 'BEGIN { printf "%.6f", 100 / r }')
flite -voice slt --setf duration_stretch="$stretch" -psdur -t "Hello there, my friend." -o "$WORK/flite.wav" \
    > "$WORK/flite.segs"
n=$(sed -n 2p "$WORK/hand_flite/en_test.tsv" | cut -f2)
# flite's segment ends at 16 kHz (round(t * 16000)), pauses merged, the last end = the audio's.
want=$(tr ' ' '\n' < "$WORK/flite.segs" | awk -F: -v n="$n" 'NF == 2 {
        lab = $1 == "pau" ? "sil" : $1; end = int($2 * 16000 + 0.5); if (end > n) end = n
        if (lab == "sil" && prev == "sil") { ends[k] = end; next }
        ends[++k] = end; prev = lab
    } END { ends[k] = n; for (i = 1; i <= k; i++) printf "%d ", ends[i] }')
got=$(awk -F'\t' '!/^#/ { printf "%s ", $3 }' "$WORK/hand_flite/en_test.align")
[ "$got" = "$want" ] || fail "flite boundaries '$got', flite -psdur says '$want'"
sox "$WORK/flite.wav" -t raw "$WORK/flite.raw"
sox "$WORK/hand_flite/wav/en_test_000000.wav" -t raw "$WORK/slex.raw"
cmp "$WORK/flite.raw" "$WORK/slex.raw" || fail "the WAV's samples are not flite's"
checks=$((checks + 2))

# Missing voices and programs: exit 4 naming them; bad command lines: exit 2.
expect() { # expect CODE PATTERN command...
    code=$1; pattern=$2; shift 2
    rc=0; "$@" 2> "$WORK/err.txt" || rc=$?
    [ "$rc" = "$code" ] || fail "$*: exit $rc, not $code ($(head -c 300 "$WORK/err.txt"))"
    grep -q -- "$pattern" "$WORK/err.txt" || fail "$*: no message '$pattern' ($(head -c 300 "$WORK/err.txt"))"
    checks=$((checks + 1))
}
expect 4 "festival has no voice 'kal' (it has: .*kal_diphone" \
    "$SYNTH" --lang en --engine festival --voice kal --minutes 0.1 --out "$WORK/x"
expect 4 "flite has no voice 'nosuch' (it has: kal .*slt; voices come with the Debian packages" \
    "$SYNTH" --lang en --engine flite --voice slt --voice nosuch --minutes 0.1 --out "$WORK/x"
expect 4 "espeak-ng has no voice 'en-nosuch'" "$SYNTH" --lang en --voice en-nosuch --minutes 0.1 --out "$WORK/x"
mkdir -p "$WORK/empty-path"
expect 4 "festival: not installed (not found in PATH); install the Debian package festival" \
    $MPI -np 1 /usr/bin/env PATH="$WORK/empty-path" "$SYNTH" --lang en --engine festival --voice kal_diphone --minutes 0.1 \
    --out "$WORK/x"
expect 2 "makes English only" "$SYNTH" --lang zh --engine flite --voice slt --minutes 0.1 --out "$WORK/x"
expect 2 "speaks with the --voice pool" "$SYNTH" --lang en --engine flite --voice slt --voices all --minutes 0.1 \
    --out "$WORK/x"
expect 2 "needs --voice" "$SYNTH" --lang en --engine festival --minutes 0.1 --out "$WORK/x"
expect 2 "a voice name is made of" "$SYNTH" --lang en --engine festival --voice 'kal)(x' --minutes 0.1 --out "$WORK/x"
echo "test_synth_ext.sh: $checks checks, 0 failed" >&2

export ASAN_OPTIONS=$CHECKER_ASAN
"$CHECKER" --one "$WORK/fl1" en_test
"$CHECKER" --one "$WORK/fe1" en_train
