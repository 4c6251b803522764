"""Every file a stage replaces goes through the atomic-write protocol (core/fileio.h slex_atomic):
written under a per-process temporary name, fsynced, renamed, and the directory fsynced after
the rename.  Runs the stages under strace and checks each rename into the work directory:
an fsync of the temporary before it, an fsync of the target's directory after it, and a
temporary named <final>.tmp-<host>-<pid> of the renaming process.
usage: test_atomic_writes.py BIN_DIR WORK_DIR"""
import collections
import os
import re
import shutil
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, make_corpus, run  # noqa: E402

BIN, WORK = sys.argv[1], os.path.abspath(os.path.join(sys.argv[2], "atomic_writes"))
ENV = {"SLEX_LOG": "warn"}
HOST = socket.gethostname()


def traced(name, cmd):
    log = os.path.join(WORK, name + ".strace")
    run(["strace", "-f", "-qq", "-o", log, "-e", "trace=open,openat,fsync,fdatasync,rename,renameat,renameat2,close,dup2,dup3"] + cmd,
        env=ENV)
    return log


LINE = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")


def check_log(name, log):
    fds = collections.defaultdict(dict)  # pid -> fd -> path
    fsynced = []  # (index, path)
    renames = []  # (index, pid, old, new)
    for i, line in enumerate(open(log)):
        m = LINE.match(line)
        if not m:
            continue
        pid, call, args, ret = m.group(1), m.group(2), m.group(3), int(m.group(4))
        if ret < 0:
            continue
        strings = re.findall(r'"((?:[^"\\]|\\.)*)"', args)
        if call in ("open", "openat") and strings:
            path = strings[0]
            if not path.startswith("/"):
                continue  # slex is given absolute paths here
            fds[pid][ret] = os.path.normpath(path)
        elif call in ("fsync", "fdatasync"):
            fd = int(args.split(",")[0])
            if fd in fds[pid]:
                fsynced.append((i, fds[pid][fd]))
        elif call == "close":
            fds[pid].pop(int(args), None)
        elif call.startswith("rename") and len(strings) == 2:
            renames.append((i, pid, os.path.normpath(strings[0]), os.path.normpath(strings[1])))
    mine = [r for r in renames if r[3].startswith(WORK)]
    check(mine, f"{name}: renames were seen")
    for i, pid, old, new in mine:
        check(any(j < i and p == old for j, p in fsynced), f"{name}: {old} renamed without an fsync first")
        d = os.path.dirname(new)
        check(any(j > i and p == d for j, p in fsynced), f"{name}: {d} not fsynced after renaming {new}")
        # The checkpoint directory keeps its DIR.tmp-/DIR.old- pair; files use <final>.tmp-<host>-<pid>.
        check(re.fullmatch(re.escape(new) + r"\.tmp-" + re.escape(HOST) + r"-\d+", old) is not None,
              f"{name}: temporary {old} of {new} is not <final>.tmp-<host>-<pid>")
    return [new for _, _, _, new in mine]


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    manifest, _ = make_corpus(os.path.join(WORK, "corpus"), 8, seed=3, max_s=1.5)
    store, km, npy = (os.path.join(WORK, n) for n in ("store", "km.h5", "km.npy"))
    counts = {}
    counts["mfcc"] = check_log("slex-mfcc", traced("mfcc", [os.path.join(BIN, "slex-mfcc"), "--manifest", manifest,
                                                             "--out", store, "--nshard", "2"]))
    counts["kmeans"] = check_log("slex-kmeans", traced("kmeans", [
        os.path.join(BIN, "slex-kmeans"), "--store", store, "--k", "8", "--n-init", "1", "--batch-size", "200",
        "--out", km, "--export-npy", npy]))
    counts["label"] = check_log("slex-label", traced("label", [
        os.path.join(BIN, "slex-label"), "--store", store, "--codebook", km, "--out", os.path.join(WORK, "units"),
        "--km", os.path.join(WORK, "fairseq_km"), "--split", "train"]))
    counts["export"] = check_log("slex-export", traced("export", [
        os.path.join(BIN, "slex-export"), "--store", store, "--out", os.path.join(WORK, "fairseq"), "--split", "train"]))
    counts["synth"] = check_log("slex-synth", traced("synth", [
        os.path.join(BIN, "slex-synth"), "--lang", "en", "--minutes", "0.1", "--out", os.path.join(WORK, "synth"),
        "--seed", "5"]))
    counts["pitchcopy"] = check_log("slex-pitchcopy", traced("pitchcopy", [
        os.path.join(BIN, "slex-pitchcopy"), "--manifest", manifest, "--out", os.path.join(WORK, "pitchcopy")]))
    # stores: 2 shards x (h5, rejects, record) + params, index, rejects, manifest.
    check(len(counts["mfcc"]) >= 10, f"slex-mfcc renamed {len(counts['mfcc'])} files")
    check(any(new.endswith("km.h5.ckpt") for new in counts["kmeans"]), "slex-kmeans wrote its checkpoint (km.h5.ckpt)")
    # 8 copies + .pitch, .params.json, the manifest and its side file's absence, the parts' params
    check(len(counts["pitchcopy"]) >= 11, f"slex-pitchcopy renamed {len(counts['pitchcopy'])} files")
    print("renames checked:", {name: len(news) for name, news in counts.items()}, file=sys.stderr)
    finish("atomic_writes")


main()
