"""A full disk (or a file size limit, or quota) must end slex-mfcc, slex-label and slex-kmeans'
codebook write with exit 1 and a message, never with a crash inside HDF5 (exit 139), leave no
temporary files, and a later run with space must succeed with the same bytes as a clean run.
Two ways to run out of space: RLIMIT_FSIZE with SIGXFSZ ignored (writes fail with EFBIG; works
for any user), and, when root, a real full tmpfs (ENOSPC).
usage: test_full_disk.py BIN_DIR WORK_DIR"""
import glob
import os
import resource
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, make_corpus, run, same_tree  # noqa: E402

BIN, WORK = sys.argv[1], os.path.join(sys.argv[2], "full_disk")
MFCC, LABEL, KMEANS = (os.path.join(BIN, "slex-" + s) for s in ("mfcc", "label", "kmeans"))
# A singleton MPI process without shared-memory files (they would exceed the size limit).
ENV = dict(os.environ, SLEX_LOG="warn", PMIX_MCA_gds="hash", OMPI_MCA_btl="self")


def limited(cmd, limit):
    """Runs cmd with a file size limit of `limit` bytes (writes beyond it fail with EFBIG)."""
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, preexec_fn=preexec)


def no_temporaries(d, what):
    left = [os.path.basename(p) for p in glob.glob(os.path.join(d, "**", "*.tmp-*"), recursive=True)]
    check(not left, f"{what}: temporary files left behind: {left}")


def failed_cleanly(p, what, path_hint):
    check(p.returncode == 1, f"{what}: exit {p.returncode}, expected 1 (139 = crash in HDF5's cleanup); "
          f"stderr: {p.stderr[-400:]}")
    check(path_hint in p.stderr, f"{what}: the message names the file: {p.stderr[-300:]}")


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    manifest, _ = make_corpus(os.path.join(WORK, "corpus"), 16, seed=7, min_s=2.0, max_s=4.0)
    clean = os.path.join(WORK, "clean")
    run([MFCC, "--manifest", manifest, "--out", clean, "--nshard", "1"], env=ENV)
    shard = os.path.join(clean, "part-00000-of-00001.h5")
    size = os.path.getsize(shard)
    check(size > 600_000, f"the shard is large enough to fail at several points: {size}")

    # slex-mfcc: out of space while rows are appended, and at the very end (HDF5's last flush).
    for limit in (64 * 1024, size // 2, size - 40 * 1024, size - 4096, size - 100):
        out = os.path.join(WORK, "mfcc")
        shutil.rmtree(out, ignore_errors=True)
        p = limited([MFCC, "--manifest", manifest, "--out", out, "--nshard", "1"], limit)
        failed_cleanly(p, f"slex-mfcc with a {limit}-byte limit", "part-00000-of-00001.h5")
        check(not os.path.exists(os.path.join(out, "part-00000-of-00001.h5")), "no shard after a failed write")
        no_temporaries(out, f"slex-mfcc with a {limit}-byte limit")
        run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "1"], env=ENV)
        same_tree(clean, out, f"slex-mfcc re-run with space after a {limit}-byte limit")

    # slex-kmeans: the codebook is larger than the checkpoint, so only the codebook write fails.
    km_clean = os.path.join(WORK, "km_clean.h5")
    km_args = ["--store", clean, "--k", "64", "--n-init", "1", "--batch-size", "2000", "--seed", "3"]
    run([KMEANS] + km_args + ["--out", km_clean], env=ENV)
    cb_size = os.path.getsize(km_clean)
    km = os.path.join(WORK, "km", "c.h5")
    os.makedirs(os.path.dirname(km))
    p = limited([KMEANS] + km_args + ["--out", km], cb_size - 2048)
    failed_cleanly(p, "slex-kmeans codebook write with too little space", "c.h5")
    check(not os.path.exists(km), "no codebook after a failed write")
    no_temporaries(os.path.dirname(km), "slex-kmeans")
    run([KMEANS] + km_args + ["--out", km], env=ENV)
    check(open(km, "rb").read() == open(km_clean, "rb").read(), "slex-kmeans re-run: same codebook as a clean run")

    # slex-label: out of space while labels are written and at the end.
    lab_clean = os.path.join(WORK, "lab_clean")
    run([LABEL, "--store", clean, "--codebook", km_clean, "--out", lab_clean], env=ENV)
    lsize = os.path.getsize(os.path.join(lab_clean, "part-00000-of-00001.h5"))
    for limit in (16 * 1024, lsize - 1024):
        lab = os.path.join(WORK, "lab")
        shutil.rmtree(lab, ignore_errors=True)
        p = limited([LABEL, "--store", clean, "--codebook", km_clean, "--out", lab], limit)
        failed_cleanly(p, f"slex-label with a {limit}-byte limit", "part-00000-of-00001.h5")
        no_temporaries(lab, f"slex-label with a {limit}-byte limit")
        run([LABEL, "--store", clean, "--codebook", km_clean, "--out", lab], env=ENV)
        same_tree(lab_clean, lab, f"slex-label re-run with space after a {limit}-byte limit")

    # A real full file system (ENOSPC), when this user may mount a tmpfs.
    mnt = os.path.join(WORK, "mnt")
    os.makedirs(mnt)
    if os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size // 2}", "tmpfs", mnt]).returncode == 0:
        try:
            out = os.path.join(mnt, "mfcc")
            p = subprocess.run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "1"], env=ENV,
                               capture_output=True, text=True)
            failed_cleanly(p, "slex-mfcc on a full tmpfs", "part-00000-of-00001.h5")
            no_temporaries(out, "slex-mfcc on a full tmpfs")
            subprocess.run(["mount", "-o", f"remount,size={4 * size}", mnt], check=True)
            run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "1"], env=ENV)
            same_tree(clean, out, "slex-mfcc re-run on the tmpfs with space")
        finally:
            subprocess.run(["umount", mnt])
    else:
        print("full tmpfs case not run (needs root and tmpfs); the file size limit cases ran", file=sys.stderr)
    finish("full_disk")


main()
