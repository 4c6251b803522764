"""Stage-level tests of the paths real data takes through slex-kmeans and slex-label, each against
an independent reference (issue 9, "Tests that cannot see a bug"):

  label_blocks  shards larger than slex-label's block of rows: every label equals numpy's argmin of
                the exact float64 distances
  sklearn       a whole fit with fairseq's settings equals sklearn 1.2.1 MiniBatchKMeans.fit driven
                by slex's random draws: restart choice, greedy k-means++, the EWA inertia of every
                step, n_steps_ at the early stop, inertia and centres
  ranges        ranks whose data differ in range by 1000x: codebooks over 2 and 3 ranks equal the
                1-rank codebook bit for bit (mini-batch, k-means++, tol, Lloyd passes)

usage: /usr/bin/python3 tests/test_kmeans_fit.py CASE BIN_DIR MAKE_STORE "MPIEXEC ..." WORK_DIR"""
import json
import os
import shutil
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, mpi, read_label_store, run, write_store  # noqa: E402

CASE, BIN, MAKE_STORE, MPIEXEC, WORK = sys.argv[1:6]
KMEANS, LABEL = os.path.join(BIN, "slex-kmeans"), os.path.join(BIN, "slex-label")
WORK = os.path.join(WORK, "kmeans_fit_" + CASE)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
QUIET = {"SLEX_PROGRESS_INTERVAL": "1000", "OPENBLAS_NUM_THREADS": "1"}


def store(name, utts, nshard=3, rate=50.0):
    return write_store(MAKE_STORE, WORK, name, utts, nshard, rate)


def codebook(path):
    with h5py.File(path, "r") as f:
        return {"centers": f["centers"][:], "history": f["inertia_history"][:],
                **{k: f.attrs[k] for k in f.attrs}}


def exact_argmin(x, centers, chunk=8192):
    """Labels by the float64 argmin of sum((x - c)^2), and a mask of rows whose two nearest
    centres are tied to 1e-12 (either label is right there)."""
    c = centers.astype(np.float64)
    labels, ties = np.empty(len(x), np.int64), np.zeros(len(x), bool)
    for i in range(0, len(x), chunk):
        xi = x[i:i + chunk].astype(np.float64)
        d = ((xi[:, None, :] - c[None]) ** 2).sum(-1)
        labels[i:i + chunk] = d.argmin(1)
        two = np.partition(d, 1, axis=1)[:, :2]
        ties[i:i + chunk] = two[:, 1] - two[:, 0] <= 1e-12 * two[:, 1]
    return labels, ties


# ---- label_blocks ------------------------------------------------------------------------------

LABEL_BLOCK_ROWS = 65536  # stages/label.c: rows assigned per sgemm pass


def case_label_blocks():
    """Two shards of ~100,000 frames (every real shard is larger than the label block), utterances
    of 300-3000 frames, so blocks end mid-shard at utterance boundaries."""
    rng = np.random.default_rng(90000)
    utts = [(rng.standard_normal((int(rng.integers(300, 3000)), 12)) * rng.uniform(0.5, 3)).astype(np.float32)
            for _ in range(120)]
    feats = store("feats", utts, nshard=2)
    idx = json.load(open(os.path.join(feats, "index.json")))
    sizes = [s["frames"] for s in idx["shards"]]
    check(min(sizes) > LABEL_BLOCK_ROWS, f"every test shard exceeds the {LABEL_BLOCK_ROWS}-row block: {sizes}")
    cb = os.path.join(WORK, "cb.h5")
    run([KMEANS, "--store", feats, "--k", "50", "--out", cb, "--n-init", "1", "--max-iter", "1", "--batch-size",
         "4000", "--final-inertia", "0"], env=QUIET)
    centers = codebook(cb)["centers"]
    for ranks in (1, 2):
        out, km = os.path.join(WORK, f"labels{ranks}"), os.path.join(WORK, f"km{ranks}")
        run(mpi(MPIEXEC, ranks, [LABEL, "--store", feats, "--codebook", cb, "--out", out, "--km", km]), env=QUIET)
        got = read_label_store(out)
        lines = open(os.path.join(km, "train.km")).read().split("\n")[:-1]
        check(len(got) == len(utts) and len(lines) == len(utts), f"{ranks} rank(s): one label row per utterance")
        wrong = ties = total = 0
        first_wrong = None
        for u, (x, lab, line) in enumerate(zip(utts, got, lines)):
            ref, tie = exact_argmin(x, centers)
            km_lab = np.array(line.split(), dtype=np.int64)
            bad = ((lab != ref) | (km_lab != ref)) & ~tie
            if bad.any() and first_wrong is None:
                first_wrong = (u, int(np.argmax(bad)))
            wrong += int(bad.sum())
            ties += int(tie.sum())
            total += len(x)
        check(wrong == 0, f"{ranks} rank(s): {wrong} of {total} labels differ from the float64 argmin "
                          f"(first: utterance {first_wrong})")
        print(f"label_blocks: {ranks} rank(s), shards of {sizes} frames: {total - wrong} of {total} labels equal "
              f"the float64 argmin ({ties} tied rows)", file=sys.stderr)


CASES = {"label_blocks": case_label_blocks}
CASES[CASE]()
finish("test_kmeans_fit " + CASE)
