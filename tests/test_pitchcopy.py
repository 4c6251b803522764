"""slex-pitchcopy end to end, against sox run here and an envelope alignment in numpy.
   test_pitchcopy.py <slex-pitchcopy> <slex-synth> <scratch dir> <mpiexec command>
- an espeak-ng corpus copied with 1 and 3 ranks gives the same bytes (manifest lines, .pitch,
  WAVs); the copy's manifest has the original's relpaths and lengths (so its labels pair);
- every copy is sox's own `pitch CENTS` output of the original (run here, by the cents that
  .pitch records), delayed by the lag numpy finds from the 25 ms RMS envelopes (1 ms hops, the
  normalised correlation over lags 0..25 ms), cut to the original's length: within 1 LSB;
- the drawn cents are integers in the range and not all alike; sox's lead is 5..25 ms;
- a run killed after some copies resumes (a sox that sleeps, killed; a record cut at the end of
  a part file), makes only the rest and gives the same bytes; a re-run does nothing; other parameters are refused without --force and
  replace the copy with it;
- errors: --out at the corpus root or holding the manifest, a malformed manifest line, a relpath
  on two lines, no sox in PATH, --cents-min above --cents-max."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from stage_util import check, finish, mpi, read_wav, run

COPY, SYNTH, WORK, MPIEXEC = sys.argv[1:5]
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
W = lambda *p: os.path.join(WORK, *p)
OPTS = ["--cents-min", "250", "--cents-max", "550", "--seed", "7"]

run(mpi(MPIEXEC, 2, [SYNTH, "--lang", "en", "--split", "test", "--minutes", "0.8", "--seed", "3", "--out", W("c")]))
MANIFEST = W("c", "en_test.tsv")
orig_lines = open(MANIFEST).read().splitlines()


def copy(out, ranks=1, extra=(), expect=0, env=None):
    return run(mpi(MPIEXEC, ranks, [COPY, "--manifest", MANIFEST, "--out", W(out)] + OPTS + list(extra)),
               expect=expect, env=env)


def outputs(out):
    """Everything a copy consists of, the manifest's root line aside."""
    files = {"tsv": open(W(out, "en_test.tsv")).read().splitlines()[1:],
             "pitch": open(W(out, "en_test.pitch")).read(),
             "columns": open(W(out, "en_test.columns")).read()}
    for line in orig_lines[1:]:
        rel = line.split("\t")[0]
        files[rel] = open(W(out, rel), "rb").read()
    return files


copy("a1", 1)
copy("a3", 3)
a1 = outputs("a1")
check(a1 == outputs("a3"), "1 and 3 ranks differ")
check(open(W("a1", "en_test.tsv")).read().splitlines()[0] == os.path.realpath(W("a1")), "root of the copy's manifest")
check(a1["tsv"] == orig_lines[1:], "the copy's manifest lines are not the original's (relpath, num_samples)")
check(a1["columns"] == open(W("c", "en_test.columns")).read(), "side file columns not carried")
check(not [f for f in os.listdir(W("a1")) if f.startswith(".")], "part files left behind")


def envelope(x):
    """(hops,) RMS over 400 samples every 16, windows cut at the end (numpy, as the header says)."""
    sq = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    starts = np.arange(0, len(x), 16)
    ends = np.minimum(starts + 400, len(x))
    return np.sqrt(np.maximum(sq[ends] - sq[starts], 0) / 400)


def best_lag(orig, shifted, max_lag=25):
    eo, es = envelope(orig), envelope(shifted)
    scores = []
    for lag in range(0, min(max_lag, len(eo) - 1) + 1):
        n = min(len(eo) - lag, len(es))
        a, b = eo[lag:lag + n], es[:n]
        den = np.sqrt(np.sum(a * a) * np.sum(b * b))
        scores.append(np.sum(a * b) / den if den > 0 else -1)
    return int(np.argmax(scores))  # the first maximum: the smallest lag on ties


rows = [l.split("\t") for l in a1["pitch"].splitlines()]
check(rows[0] == ["relpath", "cents", "lag_samples"], f"header of .pitch: {rows[0]}")
rows = rows[1:]
check([r[0] for r in rows] == [l.split("\t")[0] for l in orig_lines[1:]], ".pitch relpaths")
cents = [int(r[1]) for r in rows]
check(all(250 <= c <= 550 for c in cents) and len(set(cents)) > len(cents) // 2, f"cents {cents}")
worst = 0
for rel, c, lag in rows:
    orig = read_wav(W("c", rel))
    ref_path = W("ref.wav")
    subprocess.run(["sox", "-D", "-V1", W("c", rel), "-b", "16", ref_path, "pitch", c], check=True)
    shifted = read_wav(ref_path)
    want_lag = 16 * best_lag(orig, shifted)
    check(int(lag) == want_lag, f"{rel}: lag {lag} samples, numpy finds {want_lag}")
    check(80 <= want_lag <= 400, f"{rel}: sox's lead {want_lag} samples outside 5..25 ms")
    want = np.zeros(len(orig), np.float32)
    m = min(len(orig) - want_lag, len(shifted))
    want[want_lag:want_lag + m] = shifted[:m]
    got = read_wav(W("a1", rel))
    check(len(got) == len(orig), f"{rel}: {len(got)} samples, the original has {len(orig)}")
    if len(got) == len(orig):
        worst = max(worst, float(np.max(np.abs(got - want))) * 32768)
check(worst <= 1.0, f"copies differ from sox + numpy by {worst} LSB")
print(f"{len(rows)} copies, cents {min(cents)}..{max(cents)}, lags {sorted({int(r[2]) for r in rows})}, "
      f"largest difference from the reference {worst:.1f} LSB", file=sys.stderr)

# A killed run resumes: sox that sleeps after each copy, killed once some are recorded.
fake = W("slow-sox")
os.makedirs(fake)
with open(os.path.join(fake, "sox"), "w") as f:
    f.write(f"#!/bin/sh\n{shutil.which('sox')} \"$@\" && sleep 0.4\n")
os.chmod(os.path.join(fake, "sox"), 0o755)
env = dict(os.environ, PATH=fake + ":" + os.environ["PATH"], OMPI_MCA_rmaps_base_oversubscribe="1")
# one process (an MPI singleton), so that SIGKILL stops all of it: mpirun's SIGKILL leaves ranks
p = subprocess.Popen([COPY, "--manifest", MANIFEST, "--out", W("k")] + OPTS, env=env,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.time() + 60
recorded = 0
while time.time() < deadline and recorded < 3:
    time.sleep(0.05)
    parts = [f for f in os.listdir(W("k")) if ".part." in f and not f.endswith(".json")] if os.path.isdir(W("k")) else []
    recorded = sum(open(W("k", f)).read().count("\n") for f in parts)
p.send_signal(signal.SIGKILL)
p.wait()
recorded = sum(open(W("k", f)).read().count("\n") for f in os.listdir(W("k")) if ".part." in f and not f.endswith(".json"))
check(3 <= recorded < len(rows), f"the killed run recorded {recorded} of {len(rows)} copies")
check(not os.path.exists(W("k", "en_test.tsv")), "a killed run left a manifest")
# a record cut by a kill (or a full disk) at the end of the part file of an earlier 3-rank run's
# rank 0, which the resumed 3-rank run appends to: cut off, not appended to
with open(W("k", ".en_test.part.3.0"), "a") as f:
    f.write(f"{len(rows) - 1}\t1")
r = copy("k", 3)
check(f"{recorded} of {len(rows)} copies made earlier" in r.stderr, f"resume not reported: {r.stderr}")
check(f"({len(rows) - recorded} made now)" in r.stderr, f"the resumed run redid copies: {r.stderr}")
check(outputs("k") == a1, "a resumed copy differs from an uninterrupted one")

# A re-run does nothing; other parameters need --force.
before = os.stat(W("a1", "en_test.tsv")).st_mtime_ns
r = copy("a1", 2)
check("nothing to do" in r.stderr and os.stat(W("a1", "en_test.tsv")).st_mtime_ns == before, "re-run redid the copy")
r = run(mpi(MPIEXEC, 1, [COPY, "--manifest", MANIFEST, "--out", W("a1"), "--seed", "8"]), expect=4)
check("--force" in r.stderr, f"other parameters: {r.stderr}")
run(mpi(MPIEXEC, 2, [COPY, "--manifest", MANIFEST, "--out", W("a1"), "--seed", "8", "--force"]))
check(outputs("a1")["pitch"] != a1["pitch"], "--force with another seed kept the old copy")

# Errors, each naming what is wrong.
r = run(mpi(MPIEXEC, 1, [COPY, "--manifest", MANIFEST, "--out", W("c")]), expect=4)
check("corpus root" in r.stderr, f"--out at the corpus root: {r.stderr}")
bad = W("bad.tsv")
with open(bad, "w") as f:
    f.write("\n".join(orig_lines[:3]) + "\nno-tab-here\n")
r = run(mpi(MPIEXEC, 1, [COPY, "--manifest", bad, "--out", W("b")]), expect=4)
check("bad.tsv:4" in r.stderr, f"malformed line: {r.stderr}")
with open(bad, "w") as f:
    f.write("\n".join(orig_lines + orig_lines[1:2]) + "\n")
r = run(mpi(MPIEXEC, 1, [COPY, "--manifest", bad, "--out", W("b")]), expect=4)
check("more than one line" in r.stderr, f"duplicate relpath: {r.stderr}")
os.makedirs(W("lists"))
shutil.copy(MANIFEST, W("lists", "en_test.tsv"))
r = run(mpi(MPIEXEC, 1, [COPY, "--manifest", W("lists", "en_test.tsv"), "--out", W("lists")]), expect=4)
check("--manifest" in r.stderr and open(W("lists", "en_test.tsv")).read() == "\n".join(orig_lines) + "\n",
      f"the manifest inside --out: {r.stderr}")
nosox = W("no-sox")
os.makedirs(nosox)
for tool in os.listdir("/usr/bin"):  # everything mpiexec may need, but sox
    if tool != "sox":
        os.symlink(os.path.join("/usr/bin", tool), os.path.join(nosox, tool))
# directly (a singleton): mpiexec puts its own directory, and so sox's, first in the ranks' PATH
r = run([COPY, "--manifest", MANIFEST, "--out", W("n")], expect=4, env={"PATH": nosox})
check("install the Debian package sox" in r.stderr, f"no sox: {r.stderr}")
r = run(mpi(MPIEXEC, 1, [COPY, "--manifest", MANIFEST, "--out", W("n"), "--cents-min", "600"]), expect=2)
check("--cents-min" in r.stderr, f"range upside down: {r.stderr}")
finish("test_pitchcopy")
