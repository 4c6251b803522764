"""Job arrays without a scheduler: the variables Slurm, PBS Pro and Torque set in each task
(SLURM_ARRAY_TASK_ID + SLURM_ARRAY_TASK_COUNT, PBS_ARRAY_INDEX, PBS_ARRAYID) are set by hand and
the stages (directly and through jobs/slurm/stage-array.sbatch and jobs/pbs/stage-array.pbs) run
as the tasks of an array would: one after the other in any order, or all at once.  The store
equals the one mpirun writes, byte for byte.  Runs everywhere (tests/test_jobs.py runs the same
templates on a real local Slurm, where ../shared/slurm-local exists).

  env       slex-mfcc and slex-label as Slurm, PBS Pro and Torque array tasks; bad task variables
  resubmit  a slex-label array with one task killed mid-shard, then the whole array resubmitted:
            only the killed task's shard is redone, and the store equals mpirun's

usage: /usr/bin/python3 tests/test_job_arrays.py CASE REPO BIN_DIR MAKE_STORE "MPIEXEC ..." WORK_DIR"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, make_corpus, mpi, run, same_tree, write_store  # noqa: E402

CASE, REPO, BIN, MAKE_STORE, MPIEXEC, WORK = sys.argv[1:7]
WORK = os.path.join(WORK, "job_arrays_" + CASE)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
ARRAY_VARIABLES = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_JOB_ID", "PBS_ARRAY_INDEX",
                   "PBS_ARRAYID", "PBS_O_WORKDIR", "SLEX_STAGE", "SLEX_NSHARD", "SLEX_ARGS")
for v in ARRAY_VARIABLES:  # this test may itself run inside a job
    os.environ.pop(v, None)
BASE = {"SLEX_BIN": BIN, "SLEX_PROGRESS_INTERVAL": "1000", "OPENBLAS_NUM_THREADS": "1"}
SBATCH = os.path.join(REPO, "jobs", "slurm", "stage-array.sbatch")
PBS = os.path.join(REPO, "jobs", "pbs", "stage-array.pbs")


def slurm_task(i, n):
    return dict(BASE, SLURM_ARRAY_TASK_ID=str(i), SLURM_ARRAY_TASK_COUNT=str(n), SLURM_ARRAY_JOB_ID="4242")


def array(tasks, cmd, env_of, what, at_once=False):
    """Runs cmd once per task index in the given order (or all at once); env_of(i) is the task's
    environment.  Only the last task to finish may write index.json."""
    out_dir = next(a for a, b in zip(cmd, cmd[1:]) if a == "--out") if "--out" in cmd else None
    if at_once:
        procs = [subprocess.Popen(cmd, env=dict(os.environ, **env_of(i)), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for i in tasks]
        for i, p in zip(tasks, procs):
            _, err = p.communicate(timeout=300)
            check(p.returncode == 0, f"{what}: task {i} exited {p.returncode}: {err[-300:]}")
        return
    for n, i in enumerate(tasks):
        p = run(cmd, env=env_of(i))
        check(p.returncode == 0, f"{what}: task {i}: {p.stderr[-300:]}")
        if out_dir and n < len(tasks) - 1:
            index = os.path.join(cmd[cmd.index("--out") + 1], "index.json")
            check(not os.path.exists(index), f"{what}: index.json written before the last task ({n + 1} done)")


def case_env():
    manifest, _ = make_corpus(WORK, 9, seed=8, max_s=1.0)
    mfcc, label = os.path.join(BIN, "slex-mfcc"), os.path.join(BIN, "slex-label")
    ref = os.path.join(WORK, "mpirun")
    run(mpi(MPIEXEC, 1, [mfcc, "--manifest", manifest, "--out", ref, "--nshard", "3"]), env=BASE)
    # Slurm: the sbatch template, tasks in the order 2, 0, 1.
    out = os.path.join(WORK, "slurm_script")
    array([2, 0, 1], ["bash", SBATCH, "mfcc", "--manifest", manifest, "--out", out], lambda i: slurm_task(i, 3),
          "Slurm template")
    same_tree(ref, out, "Slurm array (stage-array.sbatch) vs mpirun")
    # Slurm variables only: the shard count from SLURM_ARRAY_TASK_COUNT; all tasks at once.
    out = os.path.join(WORK, "slurm_at_once")
    array([0, 1, 2], [mfcc, "--manifest", manifest, "--out", out], lambda i: slurm_task(i, 3), "Slurm tasks at once",
          at_once=True)
    same_tree(ref, out, "Slurm tasks at once (SLURM_ARRAY_TASK_ID/COUNT) vs mpirun")
    # PBS Pro: the PBS template (stage and options in variables), tasks 1, 2, 0.
    out = os.path.join(WORK, "pbs_script")
    pbs_env = dict(BASE, SLEX_STAGE="mfcc", SLEX_NSHARD="3", SLEX_ARGS=f"--manifest {manifest} --out {out}",
                   PBS_O_WORKDIR=WORK)
    array([1, 2, 0], ["bash", PBS], lambda i: dict(pbs_env, PBS_ARRAY_INDEX=str(i)), "PBS Pro template")
    same_tree(ref, out, "PBS Pro array (stage-array.pbs, PBS_ARRAY_INDEX) vs mpirun")
    # Torque: PBS_ARRAYID, --nshard given (PBS has no task-count variable), tasks 0, 2, 1.
    out = os.path.join(WORK, "torque")
    array([0, 2, 1], [mfcc, "--manifest", manifest, "--out", out, "--nshard", "3"],
          lambda i: dict(BASE, PBS_ARRAYID=str(i)), "Torque tasks")
    same_tree(ref, out, "Torque array (PBS_ARRAYID) vs mpirun")

    # slex-label as array tasks through both templates: its shards are the feature store's.
    cb = os.path.join(WORK, "cb.h5")
    run([os.path.join(BIN, "slex-kmeans"), "--store", ref, "--k", "20", "--out", cb, "--n-init", "2",
         "--batch-size", "200"], env=BASE)
    lref = os.path.join(WORK, "labels_mpirun")
    run(mpi(MPIEXEC, 2, [label, "--store", ref, "--codebook", cb, "--out", lref]), env=BASE)
    out = os.path.join(WORK, "labels_slurm")
    array([1, 0, 2], ["bash", SBATCH, "label", "--store", ref, "--codebook", cb, "--out", out],
          lambda i: slurm_task(i, 3), "slex-label Slurm template")
    same_tree(lref, out, "slex-label Slurm array vs mpirun")
    out = os.path.join(WORK, "labels_pbs")
    label_env = dict(BASE, SLEX_STAGE="label", SLEX_ARGS=f"--store {ref} --codebook {cb} --out {out}",
                     PBS_O_WORKDIR=WORK)
    array([2, 1, 0], ["bash", PBS], lambda i: dict(label_env, PBS_ARRAY_INDEX=str(i)), "slex-label PBS template")
    same_tree(lref, out, "slex-label PBS array vs mpirun")

    # Bad task variables are errors naming the variable; nothing is written.
    bad = os.path.join(WORK, "bad")
    cmd = [mfcc, "--manifest", manifest, "--out", bad]
    for env, expect, msg in (
            (slurm_task("x", 3), None, "SLURM_ARRAY_TASK_ID is set but is not a task index"),
            (slurm_task(3, 3), None, "shard 3 does not exist: there are 3 shards (shard taken from SLURM_ARRAY_TASK_ID)"),
            (dict(BASE, PBS_ARRAY_INDEX="-1"), None, "PBS_ARRAY_INDEX is set but is not a task index"),
            (dict(BASE, PBS_ARRAYID="1"), None, "--nshard is required with --shard or a PBS job array")):
        p = run(cmd, env=env, expect=None)
        check(p.returncode != 0 and msg in p.stderr, f"{msg!r}: exit {p.returncode}, {p.stderr.strip()[-200:]}")
    check(not glob.glob(os.path.join(bad, "part-*.h5")), "no shard written by a bad task")
    p = run(["bash", SBATCH, "mfcc", "--manifest", manifest, "--out", bad], env=BASE, expect=None)
    check(p.returncode != 0 and "not inside a job array" in p.stderr, f"sbatch template outside an array: {p.stderr}")
    print("job arrays: Slurm (template, at once), PBS Pro (template), Torque and slex-label arrays equal mpirun",
          file=sys.stderr)


def case_resubmit():
    """Three shards of 100,000 frames, K = 1000: a task takes long enough to be killed mid-shard."""
    rng = np.random.default_rng(77)
    utts = [rng.standard_normal((2000, 16)).astype(np.float32) for _ in range(150)]
    feats = write_store(MAKE_STORE, WORK, "feats", utts, nshard=3)
    cb = os.path.join(WORK, "cb.h5")
    run([os.path.join(BIN, "slex-kmeans"), "--store", feats, "--k", "1000", "--out", cb, "--init", "random",
         "--n-init", "1", "--max-iter", "0", "--final-inertia", "0"], env=BASE)
    label = ["--store", feats, "--codebook", cb]
    ref = os.path.join(WORK, "mpirun")
    run(mpi(MPIEXEC, 2, [os.path.join(BIN, "slex-label")] + label + ["--out", ref]), env=BASE)
    out = os.path.join(WORK, "array")
    cmd = ["bash", SBATCH, "label"] + label + ["--out", out]
    array([2, 0], cmd, lambda i: slurm_task(i, 3), "first submission")
    # Task 1 is killed once it is writing its shard.
    proc = subprocess.Popen(cmd, env=dict(os.environ, **slurm_task(1, 3)), stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not glob.glob(os.path.join(out, "part-00001-*tmp*")):
        time.sleep(0.002)
    killed_midway = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    check(killed_midway, "task 1 was killed while writing its shard")
    partial = glob.glob(os.path.join(out, "part-00001-*tmp*"))
    records = sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "part-*.json")))
    check(records == ["part-00000-of-00003.json", "part-00002-of-00003.json"] and
          not os.path.exists(os.path.join(out, "index.json")), f"after the kill: records {records}, no index")
    finished = {f: os.stat(os.path.join(out, f)) for f in ("part-00000-of-00003.h5", "part-00002-of-00003.h5")}
    # The whole array resubmitted, tasks in another order.
    logs = {}
    for i in (1, 2, 0):
        t = time.time()
        p = run(cmd, env=slurm_task(i, 3))
        logs[i] = (p.stderr, time.time() - t)
    for i in (0, 2):
        check("1 finished shard(s) skipped" in logs[i][0], f"resubmitted task {i} skips its finished shard: "
                                                          f"{logs[i][0][-300:]}")
        f = f"part-0000{i}-of-00003.h5"
        st = os.stat(os.path.join(out, f))
        check((st.st_ino, st.st_mtime_ns) == (finished[f].st_ino, finished[f].st_mtime_ns), f"{f} not rewritten")
    check("skipped" not in logs[1][0], f"the killed task's shard is redone: {logs[1][0][-300:]}")
    same_tree(ref, out, "resubmitted array vs mpirun")
    idx = json.load(open(os.path.join(out, "index.json")))
    print(f"resubmit: task 1 killed mid-shard (left {[os.path.basename(p) for p in partial]}); resubmitted tasks 0 and 2 skipped their shards "
          f"({logs[0][1]:.2f} s, {logs[2][1]:.2f} s), task 1 redone ({logs[1][1]:.2f} s); "
          f"{idx.get('frames', sum(s['frames'] for s in idx['shards']))} labels equal mpirun's", file=sys.stderr)


{"env": case_env, "resubmit": case_resubmit}[CASE]()
finish("test_job_arrays " + CASE)
