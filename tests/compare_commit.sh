#!/usr/bin/env bash
# No behaviour change: build REV (default HEAD) and the working tree, run each one's demo, and
# compare every file the two demos wrote, byte for byte (stores, codebooks, labels, manifests,
# exports, alignments, audio).  For refactoring commits: run it before committing one.
# usage: tests/compare_commit.sh [REV (HEAD)] [WORK_DIR (/tmp/slex-compare)]
# Exit 0 when every file is identical; 1 with the differing files listed otherwise.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:-HEAD}
work=${2:-/tmp/slex-compare}
. "$src/tests/build_two.sh"
for side in old new; do
  tree="$work/old-src"; [ "$side" = new ] && tree="$src"
  echo "== demo ($side)"
  # Both demos run in the same directory: manifests hold their root's absolute path.
  SLEX_PROGRESS_INTERVAL=1000 bash "$tree/pipeline/demo.sh" "$work/$side-build/bin" "$work/out" \
    > "$work/$side-demo.log" 2>&1 || { tail -20 "$work/$side-demo.log"; exit 1; }
  mv "$work/out" "$work/$side-out"
done
cd "$work"
(cd old-out && find . -type f | sort) > old.files
(cd new-out && find . -type f | sort) > new.files
status=0
if ! diff -u old.files new.files > files.diff; then
  echo "the demos wrote different sets of files:"; cat files.diff; status=1
fi
n=0
while read -r f; do
  [ -f "new-out/$f" ] || continue
  n=$((n + 1))
  cmp -s "old-out/$f" "new-out/$f" || { echo "differs: $f"; status=1; }
done < old.files
[ "$status" = 0 ] && echo "compare: all $n files of the demo are byte-identical ($rev vs working tree)"
exit $status
