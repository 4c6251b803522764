"""Stages map error kinds to exit codes (README "Exit codes"): bad input 4 (fix it), I/O 1 (retry),
the same on every rank of an MPI run whichever rank failed: slex-mfcc, slex-kmeans, slex-eval.
usage: test_exit_codes.py BIN_DIR MPIEXEC WORK_DIR"""
import os
import shutil
import socket
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, make_corpus, mpi, run  # noqa: E402

BIN, MPIEXEC, WORK = sys.argv[1], sys.argv[2], os.path.join(sys.argv[3], "exit_codes")
MFCC, LABEL = os.path.join(BIN, "slex-mfcc"), os.path.join(BIN, "slex-label")
KMEANS, EVAL, SYNTH = (os.path.join(BIN, "slex-" + n) for n in ("kmeans", "eval", "synth"))
ENV = {"SLEX_LOG": "warn"}


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    manifest, _ = make_corpus(os.path.join(WORK, "corpus"), 6, seed=2, max_s=1.0)
    store = os.path.join(WORK, "store")
    run([MFCC, "--manifest", manifest, "--out", store, "--nshard", "2"], env=ENV)
    # Bad input: the store was made with other parameters (no --force): fix the command, not retry.
    for ranks in (1, 2):
        p = run(mpi(MPIEXEC, ranks, [MFCC, "--manifest", manifest, "--out", store, "--nshard", "2", "--num-ceps", "12"]),
                env=ENV, expect=4)
        check("--force" in p.stderr, f"{ranks} rank(s): the message says what to do: {p.stderr[-300:]}")
    # Bad input: the manifest does not exist.
    run([MFCC, "--manifest", os.path.join(WORK, "missing.tsv"), "--out", os.path.join(WORK, "s2")], env=ENV, expect=4)
    # I/O: another run holds a shard (retry later): 1, on both ranks.
    holder = subprocess.Popen(["sleep", "60"])
    try:
        start = open(f"/proc/{holder.pid}/stat").read()
        start = int(start[start.rindex(")") + 2:].split()[19])
        out = os.path.join(WORK, "held")
        os.makedirs(out)
        open(os.path.join(out, "part-00001-of-00002.lock"), "w").write(f"{socket.gethostname()} {holder.pid} {start}\n")
        run(mpi(MPIEXEC, 2, [MFCC, "--manifest", manifest, "--out", out, "--nshard", "2"]), env=ENV, expect=1)
    finally:
        holder.kill()
        holder.wait()
    kmeans_codes(store)
    eval_codes()
    finish("exit_codes")


def kmeans_codes(store):
    """slex-kmeans: bad inputs exit 4 on every rank."""
    out = os.path.join(WORK, "km.h5")
    base = ["--k", "4", "--n-init", "1", "--batch-size", "100", "--max-iter", "2"]
    run([KMEANS, "--store", os.path.join(WORK, "nowhere")] + base + ["--out", out], env=ENV, expect=4)
    for ranks in (1, 2):
        p = run(mpi(MPIEXEC, ranks, [KMEANS, "--store", store, "--k", "100000000", "--out", out]), env=ENV, expect=4)
        check("more than the" in p.stderr, f"{ranks} rank(s): K above the frames named: {p.stderr[-300:]}")
    labels = os.path.join(WORK, "labels")
    run([KMEANS, "--store", store] + base + ["--out", out], env=ENV)
    run([LABEL, "--store", store, "--codebook", out, "--out", labels], env=ENV)
    p = run([KMEANS, "--store", labels] + base + ["--out", os.path.join(WORK, "km2.h5")], env=ENV, expect=4)
    check("label store" in p.stderr, "a label store as features named: " + p.stderr[-300:])
    # The codebook exists, made with other parameters: --force, not a retry.
    for ranks in (1, 2):
        p = run(mpi(MPIEXEC, ranks, [KMEANS, "--store", store, "--k", "5", "--n-init", "1", "--batch-size", "100",
                                     "--max-iter", "2", "--out", out]), env=ENV, expect=4)
        check("--force" in p.stderr, f"{ranks} rank(s): other parameters refused: {p.stderr[-300:]}")
    # A shard changed after the store was written (its CRC-32 differs from the index's): re-run the stage.
    broken = os.path.join(WORK, "damaged_store")
    shutil.copytree(store, broken)
    with h5py.File(os.path.join(broken, "part-00001-of-00002.h5"), "r+") as f:
        f["feats"][3, 1] = np.nan
    p = run(mpi(MPIEXEC, 2, [KMEANS, "--store", broken, "--k", "4", "--n-init", "1", "--batch-size", "100000",
                             "--out", os.path.join(WORK, "km3.h5")]), env=ENV, expect=4)
    check("damaged" in p.stderr, "damaged shard named: " + p.stderr[-300:])


def eval_codes():
    """slex-eval: bad inputs exit 4 (on every rank), a good run 0."""
    corpus = os.path.join(WORK, "synth")
    run([SYNTH, "--lang", "en", "--minutes", "0.1", "--out", corpus, "--seed", "3"], env=ENV)
    feats, cb, labels = (os.path.join(WORK, n) for n in ("ev_feats", "ev_km.h5", "ev_labels"))
    run([MFCC, "--manifest", os.path.join(corpus, "en_train.tsv"), "--out", feats], env=ENV)
    run([KMEANS, "--store", feats, "--k", "6", "--n-init", "1", "--out", cb], env=ENV)
    run([LABEL, "--store", feats, "--codebook", cb, "--out", labels], env=ENV)
    align = os.path.join(corpus, "en_train.align")
    out = os.path.join(WORK, "ev_out")
    run([EVAL, "units", "--labels", labels, "--align", align, "--out", out, "--no-plots"], env=ENV)
    for ranks in (1, 2):
        p = run(mpi(MPIEXEC, ranks, [EVAL, "units", "--labels", feats, "--align", align, "--out", out]), env=ENV,
                expect=4)
        check("not a label store" in p.stderr, f"{ranks} rank(s): a feature store as labels: {p.stderr[-300:]}")
    run([EVAL, "units", "--labels", labels, "--align", os.path.join(WORK, "missing.align"), "--out", out], env=ENV,
        expect=4)
    run([EVAL, "units", "--labels", os.path.join(WORK, "nowhere"), "--align", align, "--out", out], env=ENV, expect=4)
    run([EVAL, "drift", "--labels", labels, "--labels", feats, "--out", out], env=ENV, expect=4)
    bad_run = os.path.join(WORK, "bad_run")
    os.makedirs(bad_run)
    open(os.path.join(bad_run, "metrics.json"), "w").write("[1, 2]")
    run(mpi(MPIEXEC, 2, [EVAL, "compare", "a=" + bad_run, "--out", out]), env=ENV, expect=4)
    run([EVAL, "compare", "a=" + os.path.join(WORK, "no_run"), "--out", out], env=ENV, expect=4)
    log = os.path.join(WORK, "bad_log.jsonl")
    open(log, "w").write("{\"step\": 1, \"loss\": 2.0}\nnot json\n")
    run([EVAL, "curves", "--log", log, "--out", out], env=ENV, expect=4)


main()
