"""End-to-end tests of slex-kmeans and slex-label on stores: planted clusters recovered, a
bit-identical codebook and labels from 1/2/3 ranks, .km equal to fairseq's ApplyKmeans formula,
weighted pooling and --percent, resume after a kill, and every bad input.

usage: /usr/bin/python3 tests/test_kmeans_stage.py CASE BIN_DIR MAKE_STORE "MPIEXEC ..." WORK_DIR"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, mpi, read_label_store, run, same_tree, write_store  # noqa: E402

CASE, BIN, MAKE_STORE, MPIEXEC, WORK = sys.argv[1:6]
KMEANS, LABEL = os.path.join(BIN, "slex-kmeans"), os.path.join(BIN, "slex-label")
WORK = os.path.join(WORK, "kmeans_stage_" + CASE)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
QUIET = {"SLEX_PROGRESS_INTERVAL": "1000"}


def make_store(name, utts, nshard=3, rate=50.0):
    """utts: list of (frames, dim) float arrays -> a finished store written by the store module."""
    return write_store(MAKE_STORE, WORK, name, utts, nshard, rate)


def planted(n_utts, centers, seed, spread=0.05):
    """Utterances of frames drawn around the given centres; returns (utts, true labels)."""
    rng = np.random.default_rng(seed)
    utts, labels = [], []
    for _ in range(n_utts):
        lab = rng.integers(0, len(centers), int(rng.integers(20, 120)))
        utts.append(centers[lab] + spread * rng.standard_normal((len(lab), centers.shape[1])))
        labels.append(lab)
    return utts, labels


read_labels = read_label_store


CENTERS = np.random.default_rng(0).uniform(-10, 10, (6, 8))


def case_planted():
    utts, truth = planted(40, CENTERS, 1)
    store = make_store("planted", utts)
    cb = os.path.join(WORK, "cb.h5")
    run([KMEANS, "--store", store, "--k", "6", "--out", cb, "--seed", "1", "--batch-size", "500",
         "--export-npy", os.path.join(WORK, "cb.npy")], env=QUIET)
    with h5py.File(cb, "r") as f:
        centers = f["centers"][:]
        check(f.attrs["k"] == 6 and f.attrs["dim"] == 8 and f.attrs["frame_rate_hz"] == 50, "codebook attributes")
        check(f["inertia_history"].shape[1] == 3 and f["counts"][:].sum() > 0, "history and counts")
    check(np.array_equal(np.load(os.path.join(WORK, "cb.npy")), centers), ".npy export equals the centres")
    # Every planted centre is found (within the noise), whatever the order.
    d = ((CENTERS[:, None, :] - centers[None]) ** 2).sum(-1)
    check(sorted(d.argmin(1)) == list(range(6)) and d.min(1).max() < 0.01, f"centres found: {d.min(1)}")
    out = os.path.join(WORK, "labels")
    run([LABEL, "--store", store, "--codebook", cb, "--out", out], env=QUIET)
    perm = d.argmin(1)
    got = read_labels(out)
    check(all(np.array_equal(perm[t], g) for t, g in zip(truth, got)), "labels equal the planted clusters")


def case_ranks():
    utts, _ = planted(30, CENTERS, 2, spread=3.0)  # overlapping clusters: a real optimisation
    store = make_store("overlap", utts, nshard=4)
    cbs, labs = [], []
    for ranks in (1, 2, 3):
        cb = os.path.join(WORK, f"cb{ranks}.h5")
        run(mpi(MPIEXEC, ranks, [KMEANS, "--store", store, "--k", "12", "--out", cb, "--seed", "5", "--batch-size",
                                 "300", "--n-init", "3", "--lloyd-passes", "2"]), env=QUIET)
        cbs.append(open(cb, "rb").read())
        out = os.path.join(WORK, f"lab{ranks}")
        run(mpi(MPIEXEC, ranks, [LABEL, "--store", store, "--codebook", os.path.join(WORK, "cb1.h5"), "--out", out,
                                 "--km", os.path.join(WORK, f"km{ranks}"), "--split", "train"]), env=QUIET)
        labs.append(out)
    check(cbs[0] == cbs[1] and cbs[0] == cbs[2], "codebooks from 1, 2 and 3 ranks are bit-identical")
    same_tree(labs[0], labs[1], "label stores 1 vs 2 ranks")
    same_tree(labs[0], labs[2], "label stores 1 vs 3 ranks")
    same_tree(os.path.join(WORK, "km1"), os.path.join(WORK, "km3"), ".km 1 vs 3 ranks")
    # Re-running is a no-op for both stages.
    p = run([KMEANS, "--store", store, "--k", "12", "--out", os.path.join(WORK, "cb1.h5"), "--seed", "5",
             "--batch-size", "300", "--n-init", "3", "--lloyd-passes", "2"], env=QUIET)
    check("nothing to do" in p.stderr, "finished codebook is not redone")
    npy = os.path.join(WORK, "later.npy")
    run([KMEANS, "--store", store, "--k", "12", "--out", os.path.join(WORK, "cb1.h5"), "--seed", "5",
         "--batch-size", "300", "--n-init", "3", "--lloyd-passes", "2", "--export-npy", npy], env=QUIET)
    with h5py.File(os.path.join(WORK, "cb1.h5"), "r") as f:
        check(os.path.exists(npy) and np.array_equal(np.load(npy), f["centers"][:]), ".npy asked for later is written")
    p = run([LABEL, "--store", store, "--codebook", os.path.join(WORK, "cb1.h5"), "--out", labs[0]], env=QUIET)
    check("4 finished shard(s) skipped" in p.stderr, "finished label shards are skipped")
    # The Lloyd mode (random init, passes with bounds): 1, 2, 3 ranks, and no bounds, same bits.
    lloyd = []
    for ranks, bounds in ((1, "64"), (2, "64"), (3, "64"), (2, "0")):
        cb = os.path.join(WORK, f"lloyd{ranks}_{bounds}.h5")
        p = run(mpi(MPIEXEC, ranks, [KMEANS, "--store", store, "--k", "60", "--out", cb, "--init", "random",
                                     "--max-iter", "0", "--lloyd-passes", "10", "--bounds-mb", bounds]), env=QUIET)
        lloyd.append(open(cb, "rb").read())
    check(all(b == lloyd[0] for b in lloyd), "Lloyd-mode codebooks from 1, 2, 3 ranks and without bounds are bit-identical")
    check("Lloyd pass 10/10" in p.stderr, "Lloyd passes are reported")


def case_fairseq_km():
    """The .km lines equal fairseq's dump_km_label.py ApplyKmeans on the same codebook."""
    rng = np.random.default_rng(3)
    utts = [rng.standard_normal((int(rng.integers(30, 200)), 39)).astype(np.float32) * 5 for _ in range(25)]
    store = make_store("mfcc_like", utts, nshard=3, rate=100.0)
    cb = os.path.join(WORK, "cb.h5")
    run([KMEANS, "--store", store, "--k", "40", "--out", cb, "--batch-size", "1000"], env=QUIET)
    km = os.path.join(WORK, "km")
    run([LABEL, "--store", store, "--codebook", cb, "--out", os.path.join(WORK, "lab"), "--km", km, "--split",
         "valid"], env=QUIET)
    with h5py.File(cb, "r") as f:
        C = f["centers"][:]
    C_T = C.T.astype(np.float32)
    Cnorm = (C_T ** 2).sum(0, keepdims=True)
    lines = open(os.path.join(km, "valid.km")).read().split("\n")
    check(len(lines) == 26 and lines[-1] == "", f"one line per utterance ({len(lines) - 1})")
    exact, near_ties = 0, 0
    for u, line in zip(utts, lines):
        x = u.astype(np.float32)
        dist = (x ** 2).sum(1, keepdims=True) - 2 * np.matmul(x, C_T) + Cnorm  # ApplyKmeans.__call__
        ref = dist.argmin(axis=1)
        got = np.array([int(t) for t in line.split()])
        check(len(got) == len(ref), "labels per utterance")
        for i in np.nonzero(got != ref)[0]:
            d64 = ((x[i].astype(np.float64) - C.astype(np.float64)) ** 2).sum(1)
            # Only a tie at float32 precision may go either way.
            check(abs(d64[got[i]] - d64[ref[i]]) <= 1e-5 * d64[ref[i]], f"label {got[i]} vs fairseq {ref[i]}")
            near_ties += 1
        exact += int((got == ref).sum())
    print(f"fairseq_km: {exact} frames equal, {near_ties} float32 ties", file=sys.stderr)
    check(open(os.path.join(km, "dict.km.txt")).read() == "".join(f"{i} 1\n" for i in range(40)), "dict.km.txt")


def case_pool():
    """Weights give each store its share of the pool; --percent samples whole utterances."""
    a_utts, _ = planted(10, CENTERS[:3], 4)
    b_utts, _ = planted(60, CENTERS[3:], 5)
    a, b = make_store("a", a_utts, nshard=2), make_store("b", b_utts, nshard=2)
    fa, fb = sum(len(u) for u in a_utts), sum(len(u) for u in b_utts)
    cb = os.path.join(WORK, "w.h5")
    run([KMEANS, "--store", a + ":1", "--store", b + ":3", "--k", "6", "--out", cb, "--batch-size", "500"], env=QUIET)
    with h5py.File(cb, "r") as f:
        stores = json.loads(f.attrs["params"])["stores"]
    total = fa + fb
    check(stores[0]["pool_frames"] == total // 4 and stores[1]["pool_frames"] == 3 * total // 4,
          f"weighted shares {[s['pool_frames'] for s in stores]} of {total}")
    run([KMEANS, "--store", a, "--store", b, "--k", "6", "--out", os.path.join(WORK, "p.h5"), "--percent", "0.5",
         "--batch-size", "500"], env=QUIET)
    with h5py.File(os.path.join(WORK, "p.h5"), "r") as f:
        stores = json.loads(f.attrs["params"])["stores"]
    # fairseq: int(n_utts * percent) per shard; shards of 5+5 and 30+30 utterances.
    check([s["utterances"] for s in stores] == [4, 30], f"--percent 0.5 utterances {[s['utterances'] for s in stores]}")
    p = run([KMEANS, "--store", a + ":1", "--store", b, "--k", "6", "--out", os.path.join(WORK, "x.h5")], expect=4)
    check("weight to every store" in p.stderr, "mixed weights refused")


def case_resume():
    utts, _ = planted(30, CENTERS, 6, spread=3.0)
    store = make_store("r", utts)
    args = ["--store", store, "--k", "10", "--batch-size", "100", "--max-iter", "400", "--max-no-improvement", "0",
            "--checkpoint-every", "50", "--lloyd-passes", "1"]
    clean = os.path.join(WORK, "clean.h5")
    run([KMEANS] + args + ["--out", clean], env=QUIET)
    out = os.path.join(WORK, "killed.h5")
    proc = subprocess.Popen([KMEANS] + args + ["--out", out], env=dict(os.environ, **QUIET), stderr=subprocess.PIPE)
    ckpt = out + ".ckpt"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(ckpt) and os.path.getsize(ckpt) > 0:
            with h5py.File(clean, "r"):
                pass
            time.sleep(0.05)
            break
        time.sleep(0.01)
    killed_midway = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    check(killed_midway, "the run was killed before it finished")
    check(not os.path.exists(out), "a killed run leaves no codebook")
    p = run([KMEANS] + args + ["--out", out], env=QUIET)
    check("resuming from" in p.stderr, "resumed from the checkpoint: " + p.stderr[-300:])
    check(open(clean, "rb").read() == open(out, "rb").read(), "resumed codebook is bit-identical")
    check(not os.path.exists(ckpt) and not os.path.exists(ckpt + ".history"), "checkpoint removed at the end")
    # A checkpoint left by a run with other parameters is never resumed.
    proc = subprocess.Popen([KMEANS] + args + ["--out", os.path.join(WORK, "other.h5")],
                            env=dict(os.environ, **QUIET), stderr=subprocess.PIPE)
    other_ckpt = os.path.join(WORK, "other.h5.ckpt")
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not os.path.exists(other_ckpt):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    args8 = [a if a != "10" else "8" for a in args]
    p = run([KMEANS] + args8 + ["--out", os.path.join(WORK, "other.h5")], env=QUIET)
    check("resuming" not in p.stderr, "other parameters: started afresh")
    run([KMEANS] + args8 + ["--out", os.path.join(WORK, "clean8.h5")], env=QUIET)
    check(open(os.path.join(WORK, "clean8.h5"), "rb").read() == open(os.path.join(WORK, "other.h5"), "rb").read(),
          "afresh run equals a clean run")


def case_bad():
    utts, _ = planted(6, CENTERS, 7)
    good = make_store("good", utts)
    other = make_store("other", [np.zeros((10, 4), np.float32) + i for i in range(3)])
    p = run([KMEANS, "--store", good, "--store", other, "--k", "3", "--out", os.path.join(WORK, "x.h5")], expect=4)
    check("4-dimensional" in p.stderr or "dimensional features" in p.stderr, "different dims: " + p.stderr[-200:])
    p = run([KMEANS, "--store", good, "--k", "3", "--init", "kmeans", "--out", os.path.join(WORK, "x.h5")], expect=2)
    check("--init kmeans: expected one of k-means++, random" in p.stderr, f"bad --init named: {p.stderr.strip()}")
    p = run([KMEANS, "--store", good, "--k", "100000", "--out", os.path.join(WORK, "x.h5")], expect=4)
    check("more than the" in p.stderr, "K larger than the frames")
    p = run([KMEANS, "--store", os.path.join(WORK, "nowhere"), "--k", "3", "--out", os.path.join(WORK, "x.h5")],
            expect=4)
    check("not a finished store" in p.stderr, "missing store")
    empty = make_store("empty", [np.zeros((0, 8), np.float32)] * 3)
    p = run([KMEANS, "--store", empty, "--k", "3", "--out", os.path.join(WORK, "x.h5")], expect=4)
    check("no frames" in p.stderr, "empty store: " + p.stderr[-200:])
    nan_utts = [u.copy() for u in utts]
    nan_utts[4][7, 2] = np.nan
    nanstore = make_store("nan", nan_utts, nshard=2)
    p = run([KMEANS, "--store", nanstore, "--k", "3", "--out", os.path.join(WORK, "x.h5")], expect=4)
    check("u00004, frame 7" in p.stderr and "part-00001-of-00002" in p.stderr, "NaN named: " + p.stderr[-300:])
    check(not os.path.exists(os.path.join(WORK, "x.h5")), "no codebook written on errors")
    # Labelling with a codebook of another dimension: an error before anything is written.
    cb = os.path.join(WORK, "cb4.h5")
    run([KMEANS, "--store", other, "--k", "2", "--out", cb], env=QUIET)
    out = os.path.join(WORK, "lab")
    p = run([LABEL, "--store", good, "--codebook", cb, "--out", out], expect=4)
    check("4-dimensional centres" in p.stderr and not os.path.exists(out), "dim mismatch at labelling")
    p = run([LABEL, "--store", nanstore, "--codebook", os.path.join(WORK, "nope.h5"), "--out", out], expect=4)
    check("no such codebook" in p.stderr, "missing codebook")
    # An existing codebook of other parameters is not overwritten without --force.
    p = run([KMEANS, "--store", other, "--k", "3", "--out", cb], expect=4)
    check("--force" in p.stderr, "other parameters refused")


def case_stale():
    """Features redone with the same parameters but other content: labels made from the old
    features are not taken as done (the store's content id changed)."""
    utts, truth = planted(12, CENTERS, 9)
    store = make_store("feats", utts)
    cb = os.path.join(WORK, "cb.h5")
    run([KMEANS, "--store", store, "--k", "6", "--out", cb, "--seed", "1", "--batch-size", "200"], env=QUIET)
    out = os.path.join(WORK, "labels")
    run([LABEL, "--store", store, "--codebook", cb, "--out", out], env=QUIET)
    before = read_labels(out)
    shifted = [CENTERS[(t + 1) % 6] for t in truth]  # every frame moves to the next planted centre
    make_store("feats", shifted)
    p = run([LABEL, "--store", store, "--codebook", cb, "--out", out], env=QUIET, expect=4)
    check("other parameters or inputs" in p.stderr and "--force" in p.stderr, "stale labels refused: " + p.stderr[-300:])
    run([LABEL, "--store", store, "--codebook", cb, "--out", out, "--force"], env=QUIET)
    after = read_labels(out)
    check(any(not np.array_equal(a, b) for a, b in zip(before, after)), "labels follow the new features")


def kill_after_checkpoint(cmd, ckpt):
    """Starts cmd and SIGKILLs it once its checkpoint exists; True when it was still running."""
    proc = subprocess.Popen(cmd, env=dict(os.environ, **QUIET), stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not (os.path.exists(ckpt) and os.path.getsize(ckpt)):
        time.sleep(0.01)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return running


def case_stale_codebook():
    """Features redone with other audio of the same length (same fingerprint, other content id):
    the old codebook is not "nothing to do" but an error naming the store (redone with --force),
    and a checkpoint of the old features is not resumed."""
    utts, truth = planted(30, CENTERS, 10, spread=3.0)
    store = make_store("feats", utts)
    shifted = [CENTERS[(t + 1) % 6] + 0.5 for t in truth]  # same utterances and lengths, other values
    args = ["--store", store, "--k", "10", "--batch-size", "100", "--max-iter", "400", "--max-no-improvement", "0",
            "--checkpoint-every", "50"]
    cb = os.path.join(WORK, "cb.h5")
    run([KMEANS] + args + ["--out", cb], env=QUIET)
    old = open(cb, "rb").read()
    fp_before = json.load(open(os.path.join(store, "index.json")))
    make_store("feats", shifted)
    fp_after = json.load(open(os.path.join(store, "index.json")))
    check(fp_before["fingerprint"] == fp_after["fingerprint"] and fp_before["content_id"] != fp_after["content_id"],
          "the redone store keeps its fingerprint and changes its content id")
    p = run([KMEANS] + args + ["--out", cb], env=QUIET, expect=4)
    check("nothing to do" not in p.stderr, "stale codebook not taken as done")
    check(store in p.stderr and "other contents" in p.stderr and "--force" in p.stderr,
          "the error names the store: " + p.stderr[-400:])
    check(open(cb, "rb").read() == old, "the stale codebook is left alone without --force")
    run([KMEANS] + args + ["--out", cb, "--force"], env=QUIET)
    clean_new = os.path.join(WORK, "clean_new.h5")
    run([KMEANS] + args + ["--out", clean_new], env=QUIET)
    check(open(cb, "rb").read() == open(clean_new, "rb").read() != old, "--force redoes it on the new features")
    # A checkpoint of the old features is not resumed: the run starts afresh on the new ones.
    make_store("feats", utts)
    out = os.path.join(WORK, "killed.h5")
    check(kill_after_checkpoint([KMEANS] + args + ["--out", out], out + ".ckpt"), "killed before it finished")
    make_store("feats", shifted)
    p = run([KMEANS] + args + ["--out", out], env=QUIET)
    check("resuming" not in p.stderr, "checkpoint of other contents not resumed: " + p.stderr[-300:])
    check(open(out, "rb").read() == open(clean_new, "rb").read(), "afresh run on the new features equals a clean run")


def case_older():
    """A codebook or checkpoint recorded by an older slex lacks the options added since: with them
    at their defaults it is the same run (done, or resumed); one at another value is another run,
    named "KEY: (absent) -> VALUE"."""
    utts, _ = planted(30, CENTERS, 12, spread=3.0)
    store = make_store("older", utts)
    args = ["--store", store, "--k", "10", "--batch-size", "100", "--max-iter", "400", "--max-no-improvement", "0",
            "--checkpoint-every", "50"]
    cb = os.path.join(WORK, "older.h5")
    run([KMEANS] + args + ["--out", cb], env=QUIET)
    with h5py.File(cb, "r") as f:
        kept = f.attrs["params"]
        kept = kept.decode() if isinstance(kept, bytes) else kept
    recorded = json.loads(kept)
    check(recorded.get("tol") == 0 and recorded.get("batch_size") == 100, "the codebook records tol 0, batch_size 100")

    def record_without(key):
        with h5py.File(cb, "r+") as f:
            f.attrs["params"] = json.dumps({k: v for k, v in recorded.items() if k != key}, separators=(",", ":"))
    record_without("tol")
    p = run([KMEANS] + args + ["--out", cb], env=QUIET)
    check("nothing to do" in p.stderr, "a codebook without tol (at its default) is done: " + p.stderr[-300:])
    record_without("batch_size")
    p = run([KMEANS] + args + ["--out", cb], env=QUIET, expect=4)
    check("batch_size: (absent) -> 100" in p.stderr, "without batch_size (100 now) it is another run: " + p.stderr[-300:])
    # A checkpoint whose .ckpt.json lacks tol resumes and gives the clean run's codebook.
    out = os.path.join(WORK, "older_killed.h5")
    check(kill_after_checkpoint([KMEANS] + args + ["--out", out], out + ".ckpt"), "killed before it finished")
    ckpt_json = json.load(open(out + ".ckpt.json"))
    with open(out + ".ckpt.json", "w") as f:
        json.dump({k: v for k, v in ckpt_json.items() if k != "tol"}, f, separators=(",", ":"))
    p = run([KMEANS] + args + ["--out", out], env=QUIET)
    check("resuming from" in p.stderr, "a checkpoint without tol resumes: " + p.stderr[-300:])
    record_without(None)
    run([KMEANS] + args + ["--out", cb, "--force"], env=QUIET)
    check(open(out, "rb").read() == open(cb, "rb").read(), "the resumed codebook equals a clean run's")


def case_logs():
    """What slex-kmeans logs: one error, from the rank that had it; Lloyd passes' share of the
    distances computed (all of them without bounds; none reported for passes a resumed run did not do)."""
    utts, _ = planted(20, CENTERS, 11, spread=2.0)
    store = make_store("feats", utts)
    args = ["--store", store, "--k", "8", "--batch-size", "200", "--max-iter", "2", "--lloyd-passes", "2"]
    out = os.path.join(WORK, "cb.h5")
    os.makedirs(out + ".ckpt.history")  # the checkpoint cannot be written
    p = run(mpi(MPIEXEC, 2, [KMEANS] + args + ["--out", out]), env=QUIET, expect=4)
    errors = [line for line in p.stderr.splitlines() if "error" in line]
    check(len(errors) == 1 and out + ".ckpt.history" in errors[0], "one error naming the file: " + repr(errors))
    check(not any(line.rstrip().endswith("checkpoint:") for line in p.stderr.splitlines()),
          "no empty checkpoint error: " + p.stderr[-400:])
    os.rmdir(out + ".ckpt.history")
    p = run([KMEANS] + args + ["--out", out, "--bounds-mb", "0"], env=QUIET)
    passes = [line for line in p.stderr.splitlines() if re.search(r"Lloyd pass \d", line)]
    check(len(passes) == 2 and all("100.0% of the distances computed" in line for line in passes),
          "without bounds every distance is computed: " + repr(passes))
    # The codebook's .npy cannot be written (a directory is in the way): the finished state stays
    # as the checkpoint; with the codebook gone the re-run resumes it and reports no pass it did not do.
    os.remove(out)
    npy = os.path.join(WORK, "centres.npy")
    os.makedirs(npy)
    run([KMEANS] + args + ["--out", out, "--export-npy", npy], env=QUIET, expect=4)
    check(os.path.exists(out + ".ckpt"), "the finished state is kept as the checkpoint")
    clean = open(out, "rb").read()
    os.remove(out)
    p = run([KMEANS] + args + ["--out", out], env=QUIET)
    check("resuming from" in p.stderr, "resumed the finished state: " + p.stderr[-300:])
    check(not re.search(r"Lloyd pass \d", p.stderr), "no pass reported that this run did not do: " + p.stderr[-300:])
    check(open(out, "rb").read() == clean, "the resumed codebook is the same")


def case_shards():
    """A store of many more shards than a process may open files: frames read on demand."""
    import resource
    utts, truth = planted(300, CENTERS, 10)
    store = make_store("many", utts, nshard=300)

    def few_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    cb = os.path.join(WORK, "cb.h5")
    for cache in ("0", "2048"):
        p = subprocess.run([KMEANS, "--store", store, "--k", "6", "--out", cb, "--seed", "1", "--batch-size", "500",
                            "--cache-mb", cache, "--force"], env=dict(os.environ, **QUIET), capture_output=True,
                           text=True, preexec_fn=few_files)
        check(p.returncode == 0, f"--cache-mb {cache} with 256 open files: {p.stderr[-300:]}")
    with h5py.File(cb, "r") as f:
        centers = f["centers"][:]
    d = ((CENTERS[:, None, :] - centers[None]) ** 2).sum(-1)
    check(sorted(d.argmin(1)) == list(range(6)), "centres found from 300 shards")


def case_large():
    """K = 2000 and D = 1024 (HuBERT Large): codebook and labels of the right shapes, every unit
    a nearest centre."""
    rng = np.random.default_rng(11)
    utts = [rng.standard_normal((150, 1024)).astype(np.float32) for _ in range(20)]
    store = make_store("large", utts, nshard=2)
    cb = os.path.join(WORK, "cb.h5")
    run(mpi(MPIEXEC, 2, [KMEANS, "--store", store, "--k", "2000", "--out", cb, "--n-init", "1", "--max-iter", "2",
                         "--batch-size", "1000"]), env=QUIET)
    out = os.path.join(WORK, "labels")
    run(mpi(MPIEXEC, 2, [LABEL, "--store", store, "--codebook", cb, "--out", out]), env=QUIET)
    with h5py.File(cb, "r") as f:
        C = f["centers"][:]
    check(C.shape == (2000, 1024), f"codebook shape {C.shape}")
    labels = read_labels(out)
    x = utts[3].astype(np.float64)
    d = (x ** 2).sum(1)[:, None] - 2 * x @ C.T.astype(np.float64) + (C.astype(np.float64) ** 2).sum(1)[None]
    best = d.min(1)
    check(np.all(d[np.arange(len(x)), labels[3]] <= best + 1e-3 * np.abs(best)), "labels are nearest centres")


{"stale_codebook": case_stale_codebook, "older": case_older, "logs": case_logs, "large": case_large, "shards": case_shards, "stale": case_stale, "planted": case_planted, "ranks": case_ranks, "fairseq_km": case_fairseq_km, "pool": case_pool,
 "resume": case_resume, "bad": case_bad}[CASE]()
finish("test_kmeans_stage " + CASE)
