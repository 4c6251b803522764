"""Stores are verified when read (issue 9): every attack on a store -- bytes flipped inside a
shard, shards swapped, a shard from another store, index entries removed, duplicated, with a
wrong CRC-32 or frame count, a manifest that no longer matches the ids -- is refused by
slex-label, slex-export and slex-kmeans (cached and uncached pools) with an error naming the
shard, and nothing is written from it; a store repaired by re-running its producer is then
labelled again (not taken as done) and the labels equal numpy's nearest centres.  Shards are
larger than one HDF5 chunk and than the read blocks of label (65,536 rows) and export (8,192).

usage: /usr/bin/python3 tests/test_store_verify.py CASE BIN_DIR MAKE_STORE "MPIEXEC ..." WORK_DIR"""
import glob
import json
import os
import shutil
import struct
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, make_corpus, mpi, run  # noqa: E402

CASE, BIN, MAKE_STORE, MPIEXEC, WORK = sys.argv[1:6]
MFCC, KMEANS, LABEL, EXPORT = (os.path.join(BIN, "slex-" + p) for p in ("mfcc", "kmeans", "label", "export"))
WORK = os.path.join(WORK, "store_verify_" + CASE)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
QUIET = {"SLEX_PROGRESS_INTERVAL": "1000"}

DIM, UTTS, FRAMES = 8, 200, 700  # 2 shards of 100 x 700 = 70,000 frames: 5 chunks of 16,384 rows each
CENTERS = np.random.default_rng(0).uniform(-10, 10, (4, DIM))
SHARD0, SHARD1 = "part-00000-of-00002.h5", "part-00001-of-00002.h5"


def planted(seed):
    rng = np.random.default_rng(seed)
    return [(CENTERS[rng.integers(0, 4, FRAMES)] + rng.standard_normal((FRAMES, DIM))).astype("<f4")
            for _ in range(UTTS)]


def make_store(name, utts, rate=50.0):
    """A finished 2-shard store with a manifest.tsv (ids u00000...), written by the store module."""
    binary, manifest = os.path.join(WORK, name + ".bin"), os.path.join(WORK, name + ".tsv")
    with open(binary, "wb") as f:
        f.write(struct.pack("<qi", len(utts), DIM))
        for u in utts:
            f.write(struct.pack("<q", len(u)) + u.tobytes())
    with open(manifest, "w") as f:
        f.write("/nowhere\n" + "".join(f"u{i:05d}\t{len(u) * 320}\n" for i, u in enumerate(utts)))
    out = os.path.join(WORK, name)
    run([MAKE_STORE, binary, out, "2", str(rate), manifest])
    return out


def flip_middle(path, n=64):
    """XORs n bytes in the middle of a file (inside the rows of a shard)."""
    data = bytearray(open(path, "rb").read())
    mid = len(data) // 2
    for i in range(mid, mid + n):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


def edit_index(store, fn):
    path = os.path.join(store, "index.json")
    index = json.load(open(path))
    fn(index)
    json.dump(index, open(path, "w"), indent=2)


def attack_flip(s, other):
    flip_middle(os.path.join(s, SHARD1))


def attack_swap(s, other):
    a, b = os.path.join(s, SHARD0), os.path.join(s, SHARD1)
    os.rename(a, a + ".x")
    os.rename(b, a)
    os.rename(a + ".x", b)


def attack_foreign(s, other):  # a shard of a store with other parameters (fingerprint)
    shutil.copy(os.path.join(other["rate"], SHARD1), os.path.join(s, SHARD1))


def attack_foreign_rows(s, other):  # same parameters, other rows: only the CRC tells
    shutil.copy(os.path.join(other["rows"], SHARD1), os.path.join(s, SHARD1))


def attack_removed(s, other):
    edit_index(s, lambda ix: ix["shards"].pop(1))


def attack_duplicated(s, other):
    edit_index(s, lambda ix: ix["shards"].__setitem__(1, dict(ix["shards"][0])))


def attack_extra(s, other):
    edit_index(s, lambda ix: ix["shards"].append(dict(ix["shards"][1])))


def attack_crc(s, other):
    def bad_crc(ix):
        ix["shards"][1]["crc32"] = "%08x" % (int(ix["shards"][1]["crc32"], 16) ^ 1)
    edit_index(s, bad_crc)


def attack_frames(s, other):
    def bad_frames(ix):
        ix["shards"][1]["frames"] -= FRAMES  # as if the shard had one utterance less
    edit_index(s, bad_frames)


def edit_record_and_index(s, key, fn):
    """The same edit to shard 1's record and its index entry: only the file itself can tell."""
    record = os.path.join(s, SHARD1[:-3] + ".json")
    r = json.load(open(record))
    r[key] = fn(r[key])
    json.dump(r, open(record, "w"))
    edit_index(s, lambda ix: ix["shards"][1].__setitem__(key, fn(ix["shards"][1][key])))


def attack_record_crc(s, other):
    edit_record_and_index(s, "crc32", lambda c: "%08x" % (int(c, 16) ^ 1))


def attack_record_frames(s, other):
    edit_record_and_index(s, "frames", lambda f: f - FRAMES)


def attack_manifest(s, other):  # two ids of shard 1 swapped in manifest.tsv: .km would not match .tsv
    path = os.path.join(s, "manifest.tsv")
    lines = open(path).read().split("\n")
    lines[102], lines[103] = lines[103], lines[102]
    open(path, "w").write("\n".join(lines))


# attack -> what the error must say (besides the program exiting 1)
ATTACKS = {
    "flip": (attack_flip, [SHARD1, "CRC-32"]),
    "swap": (attack_swap, [SHARD0, "holds shard 1 of 2"]),
    "foreign": (attack_foreign, [SHARD1, "fingerprint"]),
    "foreign_rows": (attack_foreign_rows, [SHARD1, "CRC-32"]),
    "removed": (attack_removed, ["no entry for shard " + SHARD1]),
    "duplicated": (attack_duplicated, ["entry 1 names " + SHARD0 + ", expected " + SHARD1]),
    "extra": (attack_extra, ["3 entries for 2 shards"]),
    "crc": (attack_crc, [SHARD1, "has another crc32"]),
    "frames": (attack_frames, [SHARD1, "has another frame count"]),
    "record_crc": (attack_record_crc, [SHARD1, "CRC-32"]),
    "record_frames": (attack_record_frames, [SHARD1, "70000 frames, the index says 69300"]),
    "manifest": (attack_manifest, [SHARD1, "utterance 1 is 'u00101'"]),
}


def stores():
    """The pristine store, a codebook of it, and the two foreign stores the attacks take shards from."""
    pristine = make_store("pristine", planted(1))
    other = {"rate": make_store("other_rate", planted(1), rate=100.0), "rows": make_store("other_rows", planted(2))}
    with h5py.File(os.path.join(pristine, SHARD0), "r") as f:
        check(f["feats"].chunks[0] < f["feats"].shape[0] // 4, "shards span several HDF5 chunks")
    cb = os.path.join(WORK, "cb.h5")
    run([KMEANS, "--store", pristine, "--k", "4", "--out", cb, "--n-init", "1", "--max-iter", "1"], env=QUIET)
    return pristine, other, cb


def attacked(pristine, other, name):
    s = os.path.join(WORK, "attacked_" + name)
    shutil.copytree(pristine, s)
    ATTACKS[name][0](s, other)
    return s


def refused(p, name, what):
    for text in ATTACKS[name][1]:
        check(text in p.stderr, f"{what}, attack {name}: the error says '{text}': {p.stderr.strip()[-400:]}")


def case_label():
    pristine, other, cb = stores()
    ok = run(mpi(MPIEXEC, 2, [LABEL, "--store", pristine, "--codebook", cb, "--out", os.path.join(WORK, "lab"),
                              "--km", os.path.join(WORK, "km")]), env=QUIET)
    check(ok.returncode == 0, "the pristine store is labelled")
    for name in ATTACKS:
        s = attacked(pristine, other, name)
        out, km = os.path.join(WORK, "lab_" + name), os.path.join(WORK, "km_" + name)
        p = run([LABEL, "--store", s, "--codebook", cb, "--out", out, "--km", km], env=QUIET, expect=4)
        refused(p, name, "slex-label")
        check(not os.path.exists(os.path.join(out, "index.json")) and not os.path.exists(os.path.join(km, "train.km")),
              f"slex-label, attack {name}: no finished label store, no train.km")
        if name in ("flip", "record_crc", "foreign_rows"):  # shard 0 is fine, shard 1 must not be committed
            check(not os.path.exists(os.path.join(out, "part-00001-of-00002.json")),
                  f"slex-label, attack {name}: no label shard from the damaged shard")
    # Label stores are verified by their readers too: slex-eval, and slex-label's own .km writer.
    lab = os.path.join(WORK, "lab")
    damaged = os.path.join(WORK, "lab_damaged")
    shutil.copytree(lab, damaged)
    flip_middle(os.path.join(damaged, SHARD1))
    for cmd in (["export-units", "--labels", damaged, "--out", os.path.join(WORK, "units.txt")],
                ["drift", "--labels", lab, "--labels", damaged, "--out", os.path.join(WORK, "drift")]):
        p = run([os.path.join(BIN, "slex-eval")] + cmd, env=QUIET, expect=4)
        check(os.path.join("lab_damaged", SHARD1) in p.stderr and "CRC-32" in p.stderr,
              f"slex-eval {cmd[0]} refuses a damaged label store: {p.stderr.strip()[-300:]}")
    # Two ranks: the rank that meets the damage fails the run.
    p = run(mpi(MPIEXEC, 2, [LABEL, "--store", os.path.join(WORK, "attacked_flip"), "--codebook", cb, "--out",
                             os.path.join(WORK, "lab_flip2")]), env=QUIET, expect=4)
    refused(p, "flip", "slex-label on 2 ranks")


def case_export():
    pristine, other, cb = stores()
    fs = os.path.join(WORK, "fs")
    p = run([EXPORT, "--store", pristine, "--out", fs])
    x = np.concatenate([np.load(os.path.join(fs, f"train_{r}_2.npy")) for r in range(2)])
    check(np.array_equal(x, np.concatenate(planted(1))), "the pristine store is exported")
    check(f"{UTTS * FRAMES} frames of dim" in p.stderr, "the rows written are reported: " + p.stderr)
    for name in ATTACKS:
        s = attacked(pristine, other, name)
        out = os.path.join(WORK, "fs_" + name)
        p = run([EXPORT, "--store", s, "--out", out], expect=4)
        refused(p, name, "slex-export")
        check(not os.path.exists(os.path.join(out, "train.export.json")), f"slex-export, attack {name}: not finished")
        if name in ("flip", "record_crc", "foreign_rows"):
            check(not os.path.exists(os.path.join(out, "train_1_2.npy")) and not glob.glob(os.path.join(out, "*tmp*")),
                  f"slex-export, attack {name}: the damaged shard's .npy is not left behind")
    # A finished export of the same rows is not redone; one of other rows is stale: an error
    # without --force (the rows of "other_rows" differ, its shape and parameters do not).
    p = run([EXPORT, "--store", pristine, "--out", fs])
    check("nothing to do" in p.stderr, "a finished export is not redone: " + p.stderr)
    p = run([EXPORT, "--store", other["rows"], "--out", fs], expect=4)
    check("use --force" in p.stderr and "train.export.json" in p.stderr, "a stale export is an error: " + p.stderr)
    run([EXPORT, "--store", other["rows"], "--out", fs, "--force"])
    x = np.load(os.path.join(fs, "train_1_2.npy"))
    check(np.array_equal(x, np.concatenate(planted(2)[100:])), "--force redoes the stale export")
    # Another split in the same directory keeps its own marker.
    run([EXPORT, "--store", pristine, "--out", fs, "--split", "valid"])
    check(os.path.exists(os.path.join(fs, "train.export.json")) and os.path.exists(os.path.join(fs, "valid.export.json")),
          "one marker per split")


def case_kmeans():
    pristine, other, cb = stores()
    for name in ATTACKS:
        s = attacked(pristine, other, name)
        for cache in ("2048", "0"):  # the cached pool streams the shards; the uncached one verifies them at open
            out = os.path.join(WORK, f"cb_{name}_{cache}.h5")
            p = run([KMEANS, "--store", s, "--k", "4", "--out", out, "--n-init", "1", "--max-iter", "1", "--cache-mb",
                     cache], env=QUIET, expect=4)
            refused(p, name, f"slex-kmeans --cache-mb {cache}")
            check(not os.path.exists(out), f"slex-kmeans, attack {name}: no codebook")
    # A pooled run names the damaged store among several.
    p = run([KMEANS, "--store", pristine, "--store", os.path.join(WORK, "attacked_flip"), "--k", "4", "--out",
             os.path.join(WORK, "pooled.h5"), "--n-init", "1", "--max-iter", "1", "--cache-mb", "1"], env=QUIET, expect=4)
    check(os.path.join("attacked_flip", SHARD1) in p.stderr, "pooled: the damaged store's shard is named: " + p.stderr)


def nearest(x, centers):
    d = ((x.astype(np.float64)[:, None, :] - centers.astype(np.float64)[None]) ** 2).sum(-1)
    return d.argmin(1)


def case_repair():
    """damage -> the label run fails -> the producer repairs the store -> labels are redone."""
    manifest, _ = make_corpus(WORK, 20, seed=9, min_s=68.0, max_s=72.0)  # 2 shards of ~70,000 MFCC frames
    feats = os.path.join(WORK, "feats")
    mfcc = [MFCC, "--manifest", manifest, "--out", feats, "--nshard", "2"]
    run(mfcc, env=QUIET)
    with h5py.File(os.path.join(feats, SHARD1), "r") as f:
        check(f["feats"].shape[0] > 65536, "shard 1 is larger than slex-label's block")
        x1 = f["feats"][:]
    cb = os.path.join(WORK, "cb.h5")
    run([KMEANS, "--store", feats, "--k", "16", "--out", cb, "--n-init", "1", "--max-iter", "2"], env=QUIET)
    with h5py.File(cb, "r") as f:
        centers = f["centers"][:]
    labels, km = os.path.join(WORK, "labels"), os.path.join(WORK, "km")
    label = [LABEL, "--store", feats, "--codebook", cb, "--out", labels, "--km", km]
    flip_middle(os.path.join(feats, SHARD1))
    p = run(label, env=QUIET, expect=4)
    check(SHARD1 in p.stderr and "CRC-32" in p.stderr, "the damaged shard is refused: " + p.stderr[-300:])
    check(not os.path.exists(os.path.join(labels, "part-00001-of-00002.json")), "no labels from the damaged shard")
    p = run(mfcc, env=QUIET)
    check("1 finished shard(s) skipped" in p.stderr, "the producer redoes the damaged shard: " + p.stderr[-300:])
    p = run(label, env=QUIET)
    check("1 finished shard(s) skipped" in p.stderr, "the label run redoes shard 1, keeps shard 0: " + p.stderr[-300:])
    with h5py.File(os.path.join(labels, SHARD1), "r") as f:
        got = f["labels"][:]
    check(np.array_equal(got, nearest(x1, centers)), "labels of the repaired shard equal numpy's nearest centres")
    lines = open(os.path.join(km, "train.km")).read().split("\n")[:-1]
    tsv = open(os.path.join(km, "train.tsv")).read().split("\n")[1:-1]
    check(len(lines) == len(tsv) == 20, "train.km matches train.tsv line by line")
    with h5py.File(os.path.join(feats, SHARD0), "r") as f:
        ids = [i.decode() for i in f["utt_ids"][:]]
    check([t.split("\t")[0] for t in tsv[:len(ids)]] == ids, "train.tsv lists the store's utterances in order")
    # Index damage is repaired the same way: the producer rewrites index.json.
    edit_index(feats, lambda ix: ix["shards"][0].__setitem__("crc32", "00000000"))
    p = run(label + ["--out", os.path.join(WORK, "labels2")], env=QUIET, expect=4)
    check(SHARD0 in p.stderr, "a damaged index entry is refused: " + p.stderr[-300:])
    run(mfcc, env=QUIET)
    run([LABEL, "--store", feats, "--codebook", cb, "--out", os.path.join(WORK, "labels2")], env=QUIET)
    with h5py.File(os.path.join(WORK, "labels2", SHARD1), "r") as f:
        check(np.array_equal(f["labels"][:], got), "after the index is repaired, the labels are the same")


{"label": case_label, "export": case_export, "kmeans": case_kmeans, "repair": case_repair}[CASE]()
finish("test_store_verify " + CASE)
