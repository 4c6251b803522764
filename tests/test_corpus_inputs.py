"""Corpus inputs that used to hang, inflate or corrupt a run, through slex-mfcc on 2 MPI ranks:
  files     a FIFO named x.wav (open() blocked the rank, the other spun in the next collective),
            a directory and a character device named .wav, a WAV whose header says 1 Hz (it became
            16000 times longer): each rejected with its reason, the run finishing; a path that is
            not UTF-8 (stores declare ids UTF-8): rejected; a path on two lines: a warning naming
            both lines; a NUL byte in the root line (it cut the root short): the run fails naming
            line 1.
  outputs   an output that is, lies inside or contains an input, for every stage and however it is
            spelled (a symlink, "..", a trailing slash): refused before anything is touched, the
            input byte for byte as it was (`slex-label --store S --out S --force` used to destroy
            S).

usage: /usr/bin/python3 tests/test_corpus_inputs.py CASE BIN_DIR "MPIEXEC ..." WORK_DIR"""
import os
import shutil
import signal
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, make_corpus, mpi, run, tree_files  # noqa: E402

CASE, BIN, MPIEXEC, WORK = sys.argv[1:5]
WORK = os.path.join(WORK, "corpus_inputs_" + CASE)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
QUIET = {"SLEX_PROGRESS_INTERVAL": "1000"}
MFCC = os.path.join(BIN, "slex-mfcc")


def wav_with_rate(path, rate, n):
    """16-bit mono PCM WAV whose header declares `rate` Hz."""
    data = struct.pack(f"<{n}h", *[(1000 * ((i * 7) % 13 - 6)) for i in range(n)])
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " +
                struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16) + b"data" + struct.pack("<I", len(data)) +
                data)


def rejects(store):
    lines = open(os.path.join(store, "rejects.tsv"), "rb").read().decode("utf-8", "replace").strip().split("\n")
    return {int(r.split("\t")[0]): r.split("\t")[2] for r in lines[1:]}


def case_files():
    manifest, _ = make_corpus(WORK, 4, seed=7)
    wav = os.path.join(WORK, "wav")
    os.mkfifo(os.path.join(wav, "fifo.wav"))
    os.mkdir(os.path.join(wav, "dir.wav"))
    os.symlink("/dev/zero", os.path.join(wav, "device.wav"))
    wav_with_rate(os.path.join(wav, "one_hz.wav"), 1, 16000)
    wav_with_rate(os.path.join(wav, "eight_k.wav"), 8000, 8000)  # a real low rate: resampled, kept
    bad_name = b"wav/caf\xe9.wav"  # Latin-1, not UTF-8
    shutil.copy(os.path.join(wav, "u0000.wav"), os.path.join(WORK.encode(), bad_name))
    with open(manifest, "ab") as f:
        f.write(b"wav/fifo.wav\t16000\n"        # line 6
                b"wav/dir.wav\t16000\n"         # line 7
                b"wav/device.wav\t16000\n"      # line 8
                b"wav/one_hz.wav\t16000\n"      # line 9
                b"wav/eight_k.wav\t16000\n"     # line 10
                + bad_name + b"\t16000\n"       # line 11
                b"wav/u0001.wav\t16000\n")      # line 12 repeats line 3
    store = os.path.join(WORK, "store")
    cmd = mpi(MPIEXEC, 2, [MFCC, "--manifest", manifest, "--out", store, "--nshard", "2", "--max-reject", "1"])
    # In a session of its own, so that a run blocked on the FIFO can be stopped with its ranks.
    env = dict(os.environ, **QUIET)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        check(False, "slex-mfcc did not finish in 120 s (blocked on the FIFO?)")
        return
    check(proc.returncode == 0, f"slex-mfcc exited {proc.returncode}: {stderr[-500:]}")
    got = rejects(store)
    expect = {6: "a FIFO", 7: "a directory", 8: "a character device", 9: "sample rate 1 Hz",
              11: "not valid UTF-8"}
    check(sorted(got) == sorted(expect), f"rejected lines {sorted(got)}, expected {sorted(expect)}")
    for line, words in expect.items():
        check(words in got.get(line, ""), f"line {line}: reason '{got.get(line)}' lacks '{words}'")
    check("1 line(s) repeat the path of an earlier line, e.g. wav/u0001.wav (lines 3 and 12)" in stderr,
          "duplicate ids warned: " + stderr[-600:])
    kept = open(os.path.join(store, "manifest.tsv")).read().strip().split("\n")[1:]
    check(len(kept) == 6 and "wav/eight_k.wav\t16000" in kept, f"stored lines {kept}")

    # A NUL byte in the root line: the whole manifest is refused, naming line 1.
    nul = os.path.join(WORK, "nul.tsv")
    with open(nul, "wb") as f:
        f.write(WORK.encode() + b"\0junk\nwav/u0000.wav\t16000\n")
    p = run([MFCC, "--manifest", nul, "--out", os.path.join(WORK, "nul_store")], env=QUIET, expect=4)
    check("nul.tsv:1: line contains a NUL byte (line 1 is the root directory)" in p.stderr, "NUL: " + p.stderr[-300:])


def case_outputs():
    manifest, _ = make_corpus(os.path.join(WORK, "corpus"), 3, seed=9)
    feats = os.path.join(WORK, "feats")
    run([MFCC, "--manifest", manifest, "--out", feats, "--nshard", "1"], env=QUIET)
    codebook = os.path.join(WORK, "cb.h5")
    run([os.path.join(BIN, "slex-kmeans"), "--store", feats, "--k", "4", "--out", codebook, "--n-init", "1",
         "--batch-size", "200"], env=QUIET)
    model = os.path.join(WORK, "model")
    shutil.copytree(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "dump", "base50"), model)
    grids = os.path.join(WORK, "grids")
    os.makedirs(grids)
    fortunes = os.path.join(WORK, "fortunes")
    os.makedirs(fortunes)
    open(os.path.join(fortunes, "one"), "w").write("A sentence.\n%\n")
    os.symlink(feats, os.path.join(WORK, "link"))
    units = os.path.join(WORK, "units")
    os.makedirs(units)
    shutil.copy(codebook, os.path.join(units, "cb.h5"))
    before = tree_files(WORK)

    label = [os.path.join(BIN, "slex-label"), "--codebook", codebook, "--force"]
    cases = [
        ("label --out = --store", label + ["--store", feats, "--out", feats], "--out", "is --store"),
        ("label --out symlink to --store", label + ["--store", feats, "--out", os.path.join(WORK, "link")], "--out",
         "is --store"),
        ("label --out with ..", label + ["--store", feats, "--out", os.path.join(WORK, "new", "..", "feats/")],
         "--out", "is --store"),
        ("label --out inside", label + ["--store", feats, "--out", os.path.join(WORK, "link", "units")], "--out",
         "lies inside --store"),
        ("label --out contains", label + ["--store", feats, "--out", WORK], "--out", "contains --store"),
        ("label --km = --store", label + ["--store", feats, "--out", os.path.join(WORK, "u2"), "--km", feats],
         "--km", "is --store"),
        ("label --out contains --codebook",
         [os.path.join(BIN, "slex-label"), "--store", feats, "--codebook", os.path.join(units, "cb.h5"), "--out",
          units, "--force"], "--out", "contains --codebook"),
        ("kmeans --out inside --store", [os.path.join(BIN, "slex-kmeans"), "--store", feats + ":1", "--k", "4",
                                         "--out", os.path.join(feats, "cb.h5")], "--out", "lies inside --store"),
        ("kmeans --export-npy inside", [os.path.join(BIN, "slex-kmeans"), "--store", feats, "--k", "4", "--out",
                                        os.path.join(WORK, "cb2.h5"), "--export-npy",
                                        os.path.join(WORK, "link", "c.npy")], "--export-npy", "lies inside --store"),
        ("mfcc --out contains --manifest", [MFCC, "--manifest", os.path.join(feats, "manifest.tsv"), "--out", feats,
                                            "--force"], "--out", "contains --manifest"),
        ("dump --out inside --model", [os.path.join(BIN, "slex-dump"), "--manifest", manifest, "--model", model,
                                       "--layer", "1", "--out", os.path.join(model, "store")], "--out",
         "lies inside --model"),
        ("export --out = --store", [os.path.join(BIN, "slex-export"), "--store", feats, "--out", feats], "--out",
         "is --store"),
        ("import-textgrid --out inside --textgrids",
         [os.path.join(BIN, "slex-import-textgrid"), "--manifest", manifest, "--textgrids", grids, "--out",
          os.path.join(grids, "x.align")], "--out", "lies inside --textgrids"),
        ("import-textgrid --out = --manifest",
         [os.path.join(BIN, "slex-import-textgrid"), "--manifest", manifest, "--textgrids", grids, "--out",
          manifest], "--out", "is --manifest"),
        ("synth --out inside --fortune-dir",
         [os.path.join(BIN, "slex-synth"), "--lang", "en", "--minutes", "0.1", "--fortune-dir", fortunes, "--out",
          os.path.join(fortunes, "corpus")], "--out", "lies inside --fortune-dir"),
    ]
    for what, cmd, option, how in cases:
        p = run(cmd, env=QUIET, expect=None)
        check(p.returncode != 0, f"{what}: accepted")
        check(f"{option} " in p.stderr and how in p.stderr and "must be apart from the inputs" in p.stderr,
              f"{what}: message lacks '{option}' / '{how}': {p.stderr[-300:]}")
        after = tree_files(WORK)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        check(not changed, f"{what}: files touched: {changed[:5]}")
        before = after
    # Apart, the same commands work (the checks do not refuse what is fine).
    run(label + ["--store", feats, "--out", os.path.join(WORK, "units_ok"), "--km", os.path.join(WORK, "km")],
        env=QUIET)


CASES = {"files": case_files, "outputs": case_outputs}
CASES[CASE]()
finish("test_corpus_inputs " + CASE)
