"""Stages map error kinds to exit codes (README "Exit codes"): bad input 4 (fix it), I/O 1 (retry),
the same on every rank of an MPI run whichever rank failed.
usage: test_exit_codes.py BIN_DIR MPIEXEC WORK_DIR"""
import os
import shutil
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, make_corpus, mpi, run  # noqa: E402

BIN, MPIEXEC, WORK = sys.argv[1], sys.argv[2], os.path.join(sys.argv[3], "exit_codes")
MFCC, LABEL = os.path.join(BIN, "slex-mfcc"), os.path.join(BIN, "slex-label")
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
    finish("exit_codes")


main()
