"""slex-synth --f0-min/--f0-max (festival and flite voices' pitch), end to end.
   test_synth_f0.py <slex-synth> <scratch dir> <mpiexec command>
- flite (awb, kal16) and festival (kal_diphone) corpora with an F0 range: every utterance's pitch,
  measured from its WAV by autocorrelation (below, independent of slex and of the synthesisers),
  is within 12 % of the mean F0 its .utts record says was asked for, the asked values span the
  range, and the measured ones follow them (correlation > 0.9), while the same voices without a
  range speak at their own pitch whatever the utterance;
- 1 and 2 ranks give the same records and WAVs;
- voices that ignore the target (flite rms, festival's HTS voices) exit 4 naming the voice;
  espeak-ng with a range, and a range upside down or below 50 Hz, exit 2."""
import os
import shutil
import sys
import wave

import numpy as np

from stage_util import check, finish, mpi, run

SYNTH, WORK, MPIEXEC = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)


def median_f0(path):
    """Median F0 (Hz) over the voiced 40 ms frames (10 ms hop) of a 16-bit WAV: the lag of the
    autocorrelation's highest peak between 1/400 and 1/60 s, where that peak is above 0.4 of the
    frame's energy; frames 40 dB below the loudest are skipped."""
    with wave.open(path) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768.0
    win, hop = int(0.04 * rate), int(0.01 * rate)
    lo, hi = int(rate / 400), int(rate / 60)
    floor = 1e-4 * np.max(x ** 2)
    taper = np.hanning(win)
    f0 = []
    for i in range(0, len(x) - win, hop):
        f = x[i:i + win] * taper
        if np.mean(f ** 2) < floor:
            continue
        ac = np.correlate(f, f, "full")[win - 1:]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            f0.append(rate / lag)
    return float(np.median(f0)) if len(f0) >= 20 else float("nan")


def utts(corpus):
    """relpath -> (voice, asked pitch) from a corpus' .utts file."""
    rows = {}
    for line in open(os.path.join(WORK, corpus, "en_train.utts")):
        f = line.rstrip("\n").split("\t")
        rows[f[0]] = (f[2], int(f[4]))
    return rows


def synth(corpus, ranks, args, expect=0):
    return run(mpi(MPIEXEC, ranks, [SYNTH, "--lang", "en", "--minutes", "0.7", "--seed", "5",
                                    "--out", os.path.join(WORK, corpus)] + args), expect=expect)


F0 = ["--f0-min", "140", "--f0-max", "260"]
cases = {"flite": ["--engine", "flite", "--voice", "awb", "--voice", "kal16"],
         "festival": ["--engine", "festival", "--voice", "kal_diphone"]}
for name, voices in cases.items():
    synth(name + "_own", 2, voices)
    synth(name + "_f0", 2, voices + F0)
    own, asked = utts(name + "_own"), utts(name + "_f0")
    check(len(asked) >= 8, f"{name}: {len(asked)} utterances, expected 8 or more")
    check(all(p == 0 for _, p in own.values()), f"{name}: a pitch recorded without --f0-min/--f0-max")
    targets = np.array([p for _, p in asked.values()], float)
    check(targets.min() >= 140 and targets.max() <= 260 and targets.max() - targets.min() >= 50,
          f"{name}: asked F0 {targets.min()}..{targets.max()} Hz does not span 140..260")
    measured = np.array([median_f0(os.path.join(WORK, name + "_f0", u)) for u in asked])
    rel = np.abs(measured / targets - 1)
    print(f"{name}: asked {targets.astype(int).tolist()}\n  measured {np.round(measured).astype(int).tolist()}",
          file=sys.stderr)
    check(np.all(rel < 0.12), f"{name}: measured F0 off the asked one by up to {np.nanmax(rel):.3f} (> 0.12)")
    check(np.corrcoef(targets, measured)[0, 1] > 0.9, f"{name}: measured F0 does not follow the asked one")
    # Without a range each voice keeps one pitch: its utterances spread much less than the range.
    for voice in {v for v, _ in own.values()}:
        f = np.array([median_f0(os.path.join(WORK, name + "_own", u)) for u, (v, _) in own.items() if v == voice])
        check(np.ptp(f) < 40, f"{name} {voice}: own pitch spreads {np.ptp(f):.0f} Hz over its utterances")

# Rank counts: the same records and bytes.
synth("flite_f0_1", 1, cases["flite"] + F0)
for ext in ("utts", "align"):
    a = open(os.path.join(WORK, "flite_f0", "en_train." + ext), "rb").read()
    b = open(os.path.join(WORK, "flite_f0_1", "en_train." + ext), "rb").read()
    check(a == b, f"flite with an F0 range: en_train.{ext} differs between 1 and 2 ranks")
for u in utts("flite_f0"):
    a = open(os.path.join(WORK, "flite_f0", u), "rb").read()
    b = open(os.path.join(WORK, "flite_f0_1", u), "rb").read()
    check(a == b, f"flite with an F0 range: {u} differs between 1 and 2 ranks")

# Refusals.
for voices, voice in ((["--engine", "flite", "--voice", "awb", "--voice", "rms"], "rms"),
                      (["--engine", "festival", "--voice", "cmu_us_slt_arctic_hts"], "cmu_us_slt_arctic_hts")):
    p = synth("refused", 1, voices + F0, expect=4)
    check(f"voice {voice} keeps its own pitch" in p.stderr, f"the refusal of {voice} does not name it: {p.stderr}")
    check(not os.path.exists(os.path.join(WORK, "refused", "en_train.tsv")), f"{voice}: a corpus despite the refusal")
for args in (F0, cases["flite"] + ["--f0-min", "260", "--f0-max", "140"], cases["flite"] + ["--f0-min", "30", "--f0-max", "140"],
             cases["flite"] + ["--f0-max", "140"]):
    synth("refused", 1, args, expect=2)
finish("synth_f0")
