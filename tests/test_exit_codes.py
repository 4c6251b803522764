"""Stages map error kinds to exit codes (README "Exit codes"): bad input 4 (fix it), I/O 1 (retry),
the same on every rank of an MPI run whichever rank failed, and the message names the file:
slex-mfcc, slex-kmeans, slex-eval, slex-dump, slex-synth, slex-export, slex-import-textgrid (slex-train's
cases are in test_train_stage.py).  A bad --config file is bad input (4), a bad command line 2; a
directory the stage may not write is 4 (EACCES: the input's fault, as every errno is classified).
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
DUMP, EXPORT, IMPORT = (os.path.join(BIN, "slex-" + n) for n in ("dump", "export", "import-textgrid"))
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
ENV = {"SLEX_LOG": "warn"}


def named(p, words, what):
    """The failure's message holds every word (the file, the reason)."""
    for w in words:
        check(w in p.stderr, f"{what}: the message lacks '{w}': {p.stderr[-400:]}")


def as_nobody():
    """Root writes into read-only directories: the stage runs as nobody, for whom they are read-only."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)


def read_only_dir(name):
    d = os.path.join(WORK, name)
    os.makedirs(d)
    os.chmod(d, 0o555)
    return d


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
    # A bad --config file: bad input (4), naming FILE:LINE; the same value on the command line is 2.
    cfg = os.path.join(WORK, "bad.ini")
    open(cfg, "w").write("[mfcc]\nnum-ceps = twelve\n")
    p = run([MFCC, "--manifest", manifest, "--out", os.path.join(WORK, "s3"), "--config", cfg], env=ENV, expect=4)
    named(p, [cfg + ":2", "--num-ceps twelve"], "mfcc bad --config value")
    run([MFCC, "--manifest", manifest, "--out", os.path.join(WORK, "s3"), "--num-ceps", "twelve"], env=ENV, expect=2)
    p = run([MFCC, "--manifest", manifest, "--out", os.path.join(WORK, "s3"), "--config", os.path.join(WORK, "no.ini")],
            env=ENV, expect=4)
    named(p, [os.path.join(WORK, "no.ini"), "No such file"], "mfcc missing --config")
    # An output directory the stage may not write: EACCES, the input's fault (4).
    ro = read_only_dir("ro")
    p = run([MFCC, "--manifest", manifest, "--out", os.path.join(ro, "feats")], env=ENV, expect=4, preexec_fn=as_nobody)
    named(p, [os.path.join(ro, "feats"), "Permission denied"], "mfcc read-only --out")
    kmeans_codes(store)
    eval_codes()
    dump_codes(manifest)
    synth_codes()
    export_codes(store)
    import_codes()
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


def dump_codes(manifest):
    """slex-dump: an adapter for another base model, a damaged safetensors header: 4 naming the file."""
    base = ["--manifest", manifest, "--layer", "1"]
    adapter = os.path.join(DATA, "dump", "adapter_post_ln")  # made for a 32-wide model, base50 is 16 wide
    for ranks in (1, 2):
        p = run(mpi(MPIEXEC, ranks, [DUMP] + base + ["--out", os.path.join(WORK, "dump1"), "--model",
                                                     os.path.join(DATA, "dump", "base50"), "--adapter", adapter]),
                env=ENV, expect=4)
        named(p, [os.path.join(adapter, "adapter_model.safetensors"), "not for this model"],
              f"{ranks} rank(s): dump with an adapter of another base")
    model = os.path.join(WORK, "bad_header_model")
    shutil.copytree(os.path.join(DATA, "model", "post_ln_group"), model)
    st = os.path.join(model, "model.safetensors")
    with open(st, "r+b") as f:
        f.seek(8)
        f.write(b"x")  # the header's JSON no longer parses
    p = run([DUMP] + base + ["--out", os.path.join(WORK, "dump2"), "--model", model], env=ENV, expect=4)
    named(p, [st, "not valid JSON"], "dump with a damaged safetensors header")
    p = run([DUMP] + base + ["--out", os.path.join(WORK, "dump3"), "--model", os.path.join(WORK, "no_model")],
            env=ENV, expect=4)
    named(p, [os.path.join(WORK, "no_model", "config.json")], "dump with a missing model")


def synth_codes():
    """slex-synth: missing fortunes, an unknown voice, a bad --config value, a read-only --out: 4."""
    base = ["--lang", "en", "--minutes", "0.05", "--seed", "3"]
    missing = os.path.join(WORK, "no_fortunes")
    for ranks in (1, 2):
        p = run(mpi(MPIEXEC, ranks, [SYNTH] + base + ["--out", os.path.join(WORK, "sy1"), "--fortune-dir", missing]),
                env=ENV, expect=4)
        named(p, [missing, "No such file"], f"{ranks} rank(s): synth without fortunes")
    p = run([SYNTH] + base + ["--out", os.path.join(WORK, "sy2"), "--voice", "no-such-voice"], env=ENV, expect=4)
    named(p, ["no-such-voice"], "synth with an unknown voice")
    cfg = os.path.join(WORK, "synth.ini")
    open(cfg, "w").write("[common]\n[synth]\nspeakers = 0\n")
    p = run([SYNTH] + base + ["--out", os.path.join(WORK, "sy3"), "--config", cfg], env=ENV, expect=4)
    named(p, [cfg + ":3", "--speakers 0"], "synth bad --config value")
    ro = read_only_dir("ro_synth")
    p = run([SYNTH] + base + ["--out", os.path.join(ro, "corpus")], env=ENV, expect=4, preexec_fn=as_nobody)
    named(p, [os.path.join(ro, "corpus"), "Permission denied"], "synth read-only --out")


def export_codes(store):
    """slex-export: a missing store, a label store, an export of other features, a read-only --out: 4."""
    p = run([EXPORT, "--store", os.path.join(WORK, "nowhere"), "--out", os.path.join(WORK, "ex0")], env=ENV, expect=4)
    named(p, [os.path.join(WORK, "nowhere")], "export of a missing store")
    labels = os.path.join(WORK, "labels")  # made by kmeans_codes
    p = run([EXPORT, "--store", labels, "--out", os.path.join(WORK, "ex1")], env=ENV, expect=4)
    named(p, [labels, "label store"], "export of a label store")
    out = os.path.join(WORK, "ex")
    run([EXPORT, "--store", store, "--out", out], env=ENV)
    other = os.path.join(WORK, "s_other")
    run([MFCC, "--manifest", os.path.join(WORK, "corpus", "train.tsv"), "--out", other, "--num-ceps", "12"], env=ENV)
    for ranks in (1, 2):
        p = run(mpi(MPIEXEC, ranks, [EXPORT, "--store", other, "--out", out]), env=ENV, expect=4)
        named(p, [os.path.join(out, "train.export.json"), "--force"], f"{ranks} rank(s): export of other features")
    ro = read_only_dir("ro_export")
    p = run([EXPORT, "--store", store, "--out", os.path.join(ro, "ex")], env=ENV, expect=4, preexec_fn=as_nobody)
    named(p, [os.path.join(ro, "ex"), "Permission denied"], "export read-only --out")


def import_codes():
    """slex-import-textgrid: a malformed TextGrid, a missing one, a manifest line it does not match: 4."""
    grids = os.path.join(WORK, "grids")
    shutil.copytree(os.path.join(DATA, "textgrid", "good"), grids)
    manifest = os.path.join(DATA, "textgrid", "good.tsv")
    out = os.path.join(WORK, "tg.align")
    run([IMPORT, "--manifest", manifest, "--textgrids", grids, "--out", out], env=ENV)
    shutil.copy(os.path.join(DATA, "textgrid", "bad", "truncated.TextGrid"), os.path.join(grids, "a.TextGrid"))
    for ranks in (1, 2):
        p = run(mpi(MPIEXEC, ranks, [IMPORT, "--manifest", manifest, "--textgrids", grids, "--out", out]), env=ENV,
                expect=4)
        named(p, [os.path.join(grids, "a.TextGrid"), "end of the file"], f"{ranks} rank(s): a truncated TextGrid")
    os.remove(os.path.join(grids, "a.TextGrid"))
    p = run([IMPORT, "--manifest", manifest, "--textgrids", grids, "--out", out], env=ENV, expect=4)
    named(p, [os.path.join(grids, "a.TextGrid"), "No such file"], "a missing TextGrid")
    ro = read_only_dir("ro_import")
    shutil.copytree(os.path.join(DATA, "textgrid", "good"), grids, dirs_exist_ok=True)
    p = run([IMPORT, "--manifest", manifest, "--textgrids", grids, "--out", os.path.join(ro, "x.align")], env=ENV,
            expect=4, preexec_fn=as_nobody)
    named(p, [os.path.join(ro, "x.align"), "Permission denied"], "import read-only --out")


main()
