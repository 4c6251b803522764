"""Two runs writing one store: a shard being written by another live run is refused with a
message naming that run (host, pid), whether it runs here or on another host; a lock left by a
dead process (this host) or not refreshed for long (another host) is taken over; the tasks of a
job array, writing different shards of one store at once, do not block each other; a finished
run removes the temporaries of dead processes of this host, never those of live processes or
of other hosts.
usage: test_locks.py BIN_DIR WORK_DIR"""
import glob
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, make_corpus, run, same_tree  # noqa: E402

BIN, WORK = sys.argv[1], os.path.join(sys.argv[2], "locks")
MFCC = os.path.join(BIN, "slex-mfcc")
ENV = {"SLEX_LOG": "warn"}
HOST = socket.gethostname()
SHARD2 = "part-00002-of-00004"


def start_time(pid):
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat[stat.rindex(")") + 2:].split()[19])


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid  # no longer runs (pids are not reused this quickly)


def mfcc(manifest, out, *extra, expect=0):
    return run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "4"] + list(extra), env=ENV, expect=expect)


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    manifest, _ = make_corpus(os.path.join(WORK, "corpus"), 12, seed=9, max_s=1.5)
    clean = os.path.join(WORK, "clean")
    mfcc(manifest, clean)
    out = os.path.join(WORK, "store")
    lock = os.path.join(out, SHARD2 + ".lock")

    # Another live run of this host writes shard 2 (a live process holds its lock).
    os.makedirs(out)
    holder = subprocess.Popen(["sleep", "120"])
    try:
        open(lock, "w").write(f"{HOST} {holder.pid} {start_time(holder.pid)}\n")
        p = mfcc(manifest, out, expect=1)
        check(f"pid {holder.pid} on host {HOST}" in p.stderr, "the message names the other run: " + p.stderr[-400:])
        check("shard 2" in p.stderr and out in p.stderr, "the message names the shard and the store: " + p.stderr[-400:])
        check(os.path.exists(lock), "the other run's lock is left alone")
        # The other shards were written meanwhile; the held one was not touched.
        names = os.listdir(out)
        check("part-00001-of-00004.json" in names and SHARD2 + ".json" not in names, f"other shards done: {names}")
        # A pid that now names another process (same pid, other start time) does not hold the lock.
        open(lock, "w").write(f"{HOST} {holder.pid} {start_time(holder.pid) + 1}\n")
        mfcc(manifest, out)
        same_tree(clean, out, "after taking over a lock whose pid was reused")
    finally:
        holder.kill()
        holder.wait()

    # A lock left by a dead process of this host is taken over.
    shutil.rmtree(out)
    mfcc(manifest, out, "--shard", "1")
    open(lock, "w").write(f"{HOST} {dead_pid()} 12345\n")
    mfcc(manifest, out)
    check(not glob.glob(os.path.join(out, "*.lock")), "no lock left after a run")
    same_tree(clean, out, "after taking over a dead process's lock")

    # Another host's lock: refused while fresh, taken over when not refreshed for long.
    shutil.rmtree(out)
    os.makedirs(out)
    open(lock, "w").write("node-elsewhere-7 4242 999\n")
    p = mfcc(manifest, out, expect=1)
    check("pid 4242 on host node-elsewhere-7" in p.stderr, "the message names the other host's run: " + p.stderr[-400:])
    old = time.time() - 3600
    os.utime(lock, (old, old))
    mfcc(manifest, out)
    same_tree(clean, out, "after taking over another host's stale lock")

    # A job array: the four tasks write their shards of one store at the same time.
    shutil.rmtree(out)
    tasks = [subprocess.Popen([MFCC, "--manifest", manifest, "--out", out, "--nshard", "4"],
                              env=dict(os.environ, SLEX_LOG="warn", SLURM_ARRAY_TASK_ID=str(i),
                                       SLURM_ARRAY_TASK_COUNT="4"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    for i, t in enumerate(tasks):
        _, err = t.communicate()
        check(t.returncode == 0, f"job-array task {i} exited {t.returncode}: {err[-300:]}")
    if not os.path.exists(os.path.join(out, "index.json")):
        mfcc(manifest, out)  # two tasks may both have seen the other unfinished: any re-run indexes
    same_tree(clean, out, "job array writing one store at once")

    # Temporaries: a finished run removes those of dead processes of this host, keeps the others.
    live = subprocess.Popen(["sleep", "120"])
    try:
        dead = dead_pid()
        planted = {
            f"{SHARD2}.h5.tmp-{HOST}-{dead}": False,          # a killed run's shard: removed
            f"manifest.tsv.tmp-{HOST}-{dead}": False,          # removed
            f"{SHARD2}.h5.tmp-{HOST}-{live.pid}": True,       # a live process's: kept
            f"{SHARD2}.h5.tmp-node-elsewhere-7-{dead}": True,  # another host's: kept
            f"notes.tmp-{HOST}-{dead}x": True,                 # not a slex temporary name: kept
        }
        for name in planted:
            open(os.path.join(out, name), "w").write("partial")
        mfcc(manifest, out, "--force")
        for name, kept in planted.items():
            check(os.path.exists(os.path.join(out, name)) == kept, f"{name}: {'kept' if kept else 'removed'}")
        # slex-export: a killed export's temporary is a whole shard.
        fairseq = os.path.join(WORK, "fairseq")
        os.makedirs(fairseq)
        killed = os.path.join(fairseq, f"train_2_4.npy.tmp-{HOST}-{dead}")
        kept = os.path.join(fairseq, f"train_2_4.npy.tmp-{HOST}-{live.pid}")
        for f in (killed, kept):
            open(f, "w").write("partial")
        run([os.path.join(BIN, "slex-export"), "--store", out, "--out", fairseq, "--split", "train"], env=ENV)
        check(not os.path.exists(killed) and os.path.exists(kept), "slex-export removes only dead runs' temporaries")
    finally:
        live.kill()
        live.wait()
    finish("locks")


main()
