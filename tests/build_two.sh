# Sourced by tests/compare_commit.sh and tests/compare_speed.sh: builds commit $rev of the
# repository at $src into $work/old-build (sources in $work/old-src) and the working tree into
# $work/new-build, both Release.
rm -rf "$work"
mkdir -p "$work/old-src"
git -C "$src" archive "$rev" | tar -x -C "$work/old-src"
for side in old new; do
  tree="$work/old-src"; [ "$side" = new ] && tree="$src"
  echo "== building $side ($([ "$side" = old ] && echo "$rev" || echo "working tree"))"
  cmake -S "$tree" -B "$work/$side-build" -DCMAKE_BUILD_TYPE=Release > "$work/$side-cmake.log"
  cmake --build "$work/$side-build" -j "$(nproc)" > "$work/$side-build.log" 2>&1 ||
    { tail -20 "$work/$side-build.log"; exit 1; }
done
