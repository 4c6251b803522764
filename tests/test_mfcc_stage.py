"""End-to-end tests of slex-mfcc: features against torchaudio as fairseq computes them, the store
read with plain h5py, identical stores from 1/2/3 ranks and job-array tasks, every bad input,
kill-and-resume, and the fairseq exporter.

usage: /usr/bin/python3 tests/test_mfcc_stage.py CASE BIN_DIR "MPIEXEC ..." WORK_DIR
CASE: reference | ranks | bad | resume | export | options"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import torch
import torchaudio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, make_corpus, mpi, run, same_tree, speechlike, write_wav  # noqa: E402

CASE, BIN, MPIEXEC, WORK = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
MFCC, EXPORT = os.path.join(BIN, "slex-mfcc"), os.path.join(BIN, "slex-export")
WORK = os.path.join(WORK, "mfcc_stage_" + CASE)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
QUIET = {"SLEX_PROGRESS_INTERVAL": "1000"}


def fairseq_mfcc(x):
    """examples/hubert/simple_kmeans/dump_mfcc_feature.py, MfccFeatureReader.get_feats."""
    with torch.no_grad():
        w = torch.from_numpy(np.asarray(x, dtype=np.float32)).view(1, -1)
        m = torchaudio.compliance.kaldi.mfcc(waveform=w, sample_frequency=16000, use_energy=False)
        m = m.transpose(0, 1)
        d = torchaudio.functional.compute_deltas(m)
        dd = torchaudio.functional.compute_deltas(d)
        return torch.cat([m, d, dd], dim=0).transpose(0, 1).contiguous().numpy()


def read_store(d):
    """{utt_id: feats} and the attributes of shard 0, read with plain h5py."""
    index = json.load(open(os.path.join(d, "index.json")))
    feats = {}
    for rec in index["shards"]:
        with h5py.File(os.path.join(d, rec["file"]), "r") as f:
            x, lengths, ids = f["feats"][:], f["lengths"][:], f["utt_ids"][:]
            check(x.shape[0] == rec["frames"] and lengths.sum() == rec["frames"], f"{rec['file']}: frame counts")
            off = np.concatenate([[0], np.cumsum(lengths)])
            for i, u in enumerate(ids):
                feats[u.decode() if isinstance(u, bytes) else u] = x[off[i]:off[i + 1]]
    return index, feats


def case_reference():
    manifest, pcms = make_corpus(WORK, 6, seed=1)
    # Edge lengths: exactly one frame, one sample short of a second frame.
    for n, name in [(400, "one_frame"), (559, "almost_two")]:
        pcms.append(write_wav(os.path.join(WORK, f"wav/{name}.wav"), speechlike(n, 7))[:, 0])
        with open(manifest, "a") as f:
            f.write(f"wav/{name}.wav\t{n}\ten\tedge\n")
    out = os.path.join(WORK, "store")
    run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "2"], env=QUIET)
    index, feats = read_store(out)
    check(index["dim"] == 39 and index["frame_rate_hz"] == 100 and index["utterances"] == 8, "index fields")
    worst = 0.0
    for i, line in enumerate(open(manifest).read().split("\n")[1:-1]):
        rel = line.split("\t")[0]
        ref = fairseq_mfcc(pcms[i].astype(np.float32) / 32768.0)
        got = feats.get(rel)
        check(got is not None and got.shape == ref.shape, f"{rel}: shape {None if got is None else got.shape} vs {ref.shape}")
        if got is not None and got.shape == ref.shape:
            worst = max(worst, float(np.abs(got - ref).max()))
    check(worst <= 1e-3, f"max abs difference to torchaudio {worst:.3g} > 1e-3")
    print(f"max abs difference to torchaudio over {sum(len(v) for v in feats.values())} frames: {worst:.3g}",
          file=sys.stderr)
    with h5py.File(os.path.join(out, "part-00000-of-00002.h5"), "r") as f:
        a = dict(f.attrs)
        check(a["dim"] == 39 and a["frame_rate_hz"] == 100 and a["producer"] == "slex-mfcc", f"attributes {a}")
        check(f["feats"].chunks is not None and f["feats"].chunks[0] < f["feats"].shape[0] + 4096, "feats is chunked")
    # Stereo 16 kHz: the mean of the channels, as fairseq's reader averages them.
    stereo = np.stack([speechlike(8000, 3), 0.5 * speechlike(8000, 4)], axis=1)
    pcm = write_wav(os.path.join(WORK, "wav/stereo.wav"), stereo)
    m2 = os.path.join(WORK, "stereo.tsv")
    open(m2, "w").write(f"{WORK}\nwav/stereo.wav\t8000\n")
    p = run([MFCC, "--manifest", m2, "--out", os.path.join(WORK, "stereo")], env=QUIET)
    check("averaged to mono" in p.stderr, "stereo files are reported once")
    _, f2 = read_store(os.path.join(WORK, "stereo"))
    ref = fairseq_mfcc(((pcm[:, 0].astype(np.float32) / 32768.0) + (pcm[:, 1].astype(np.float32) / 32768.0)) / 2)
    check(np.abs(f2["wav/stereo.wav"] - ref).max() <= 1e-3, "stereo features")


def case_ranks():
    manifest, _ = make_corpus(WORK, 14, seed=2, max_s=1.5)
    stores = []
    for ranks in (1, 2, 3):
        out = os.path.join(WORK, f"r{ranks}")
        run(mpi(MPIEXEC, ranks, [MFCC, "--manifest", manifest, "--out", out, "--nshard", "5"]), env=QUIET)
        stores.append(out)
    same_tree(stores[0], stores[1], "1 vs 2 ranks")
    same_tree(stores[0], stores[2], "1 vs 3 ranks")
    # Job-array tasks, in reverse order, each one process: the same store.
    out = os.path.join(WORK, "array")
    for task in (4, 3, 2, 1, 0):
        run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "5"],
            env=dict(QUIET, SLURM_ARRAY_TASK_ID=str(task)))
    same_tree(stores[0], out, "mpirun vs job array")
    # The default nshard is the rank count, and shard boundaries follow fairseq's formula.
    out = os.path.join(WORK, "default")
    run(mpi(MPIEXEC, 3, [MFCC, "--manifest", manifest, "--out", out]), env=QUIET)
    index = json.load(open(os.path.join(out, "index.json")))
    counts = [r["utterances"] for r in index["shards"]]
    expect = [round(14 / 3 * (r + 1)) - round(14 / 3 * r) for r in range(3)]
    check(counts == expect, f"utterances per shard {counts} vs fairseq {expect}")


def case_bad():
    manifest, _ = make_corpus(WORK, 3, seed=3)
    root = WORK
    write_wav(os.path.join(root, "wav/short.wav"), speechlike(399, 1))
    write_wav(os.path.join(root, "wav/empty.wav"), np.zeros(0))
    good = open(os.path.join(root, "wav/u0000.wav"), "rb").read()
    open(os.path.join(root, "wav/truncated.wav"), "wb").write(good[: len(good) // 2])
    open(os.path.join(root, "wav/garbage.wav"), "wb").write(b"this is not audio at all" * 50)
    with open(os.path.join(root, "wav/nan.wav"), "wb") as f:  # 32-bit float WAV with a NaN
        x = speechlike(4000, 2).astype("<f4")
        x[1000] = np.nan
        data = x.tobytes()
        f.write(b"RIFF" + (36 + len(data)).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
                + (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + (16000).to_bytes(4, "little")
                + (64000).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
                + b"data" + len(data).to_bytes(4, "little") + data)
    n0 = len(good[44:]) // 2
    bad_lines = ["wav/missing.wav\t16000", "wav/short.wav\t399", "wav/empty.wav\t0", "wav/truncated.wav\t" + str(n0),
                 "wav/garbage.wav\t1000", "wav/nan.wav\t4000", "no tab here", "wav/u0001.wav\tmany",
                 "wav/u0002.wav\t123"]  # the last one is usable but its sample count is wrong: a warning
    with open(manifest, "a") as f:
        f.write("\n".join(bad_lines) + "\n")
    out = os.path.join(WORK, "store")
    p = run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "2"], env=QUIET, expect=3)
    check("more than --max-reject" in p.stderr, "the failure names --max-reject")
    check("the manifest says 123" in p.stderr, "sample-count mismatch warned: " + p.stderr[-500:])
    rejects = open(os.path.join(out, "rejects.tsv")).read().strip().split("\n")
    check(rejects[0] == "line\tutt_id\treason", "rejects header")
    reasons = {r.split("\t")[0]: r.split("\t")[2] for r in rejects[1:]}
    expect = {"5": "No such file", "6": "fewer than the 400", "7": "zero samples", "8": "truncated",
              "9": "cannot open audio", "10": "NaN", "11": "no tab", "12": "not a non-negative integer"}
    check(sorted(reasons) == sorted(expect), f"rejected lines {sorted(reasons)}")
    for line, word in expect.items():
        check(word in reasons.get(line, ""), f"line {line}: reason '{reasons.get(line)}' lacks '{word}'")
    kept = open(os.path.join(out, "manifest.tsv")).read().strip().split("\n")
    check(kept[0] == os.path.abspath(WORK) and len(kept) == 1 + 4, f"filtered manifest has {len(kept) - 1} lines")
    check(all(len(k.split("\t")) == 2 for k in kept[1:]), "the filtered manifest has fairseq's two columns")
    columns = open(os.path.join(out, "manifest.columns")).read().strip().split("\n")
    check(columns[0] == "relpath\tcolumn3\tcolumn4" and len(columns) == len(kept) and
          [c.split("\t")[0] for c in columns[1:]] == [k.split("\t")[0] for k in kept[1:]] and
          all(c.endswith("\ten\tsynthetic") for c in columns[1:4]) and "\t" not in columns[4],
          "extra columns kept in the filtered manifest's side file")
    index = json.load(open(os.path.join(out, "index.json")))
    check(index["utterances"] == 4 and index["rejected"] == 8, "index counts")
    # With a tolerance the same run succeeds, and the finished shards are not redone.
    p = run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "2", "--max-reject", "0.7"], env=QUIET)
    check("2 finished shard(s) skipped" in p.stderr, "re-run skips finished shards")
    # A store made with other parameters is not overwritten without --force.
    p = run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "3", "--max-reject", "1"], env=QUIET, expect=4)
    check("--force" in p.stderr, "other parameters: the error suggests --force")
    run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "3", "--max-reject", "1", "--force"], env=QUIET)
    # Manifest-level errors.
    p = run([MFCC, "--manifest", os.path.join(WORK, "nope.tsv"), "--out", out], env=QUIET, expect=4)
    check("nope.tsv: cannot open manifest" in p.stderr, "missing manifest named")
    p = run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "40", "--force"], env=QUIET, expect=4)
    check("cannot fill 40 shards" in p.stderr, "too many shards")


def case_resume():
    """Kill the run while it works on one long utterance, then re-run: finished shards are
    skipped, the killed shard left nothing that looks complete, the result equals a clean run."""
    manifest, _ = make_corpus(WORK, 12, seed=4, max_s=1.0)
    clean = os.path.join(WORK, "clean")
    run([MFCC, "--manifest", manifest, "--out", clean, "--nshard", "4"], env=QUIET)
    target = os.path.join(WORK, "wav/u0007.wav")  # shard 2 of 4 (entries 6..8)
    saved = open(target, "rb").read()
    # 30 min of silence in a sparse WAV (slow enough to be killed in the middle of; a FIFO, which
    # used to stall the run, is now rejected at once).
    n = 16000 * 1800
    with open(target, "wb") as f:
        f.write(b"RIFF" + (36 + 2 * n).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
                + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (16000).to_bytes(4, "little")
                + (32000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
                + b"data" + (2 * n).to_bytes(4, "little"))
        f.truncate(44 + 2 * n)
    out = os.path.join(WORK, "killed")
    proc = subprocess.Popen([MFCC, "--manifest", manifest, "--out", out, "--nshard", "4"],
                            env=dict(os.environ, **QUIET), stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not glob.glob(os.path.join(out, "part-00002-of-00004.h5.tmp-*")):
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    names = sorted(os.listdir(out))
    check("part-00001-of-00004.json" in names, f"shard 1 finished before the kill: {names}")
    check(not any(n.startswith("part-00002-of-00004") and ".tmp-" not in n and not n.endswith(".lock") for n in names),
          f"the killed shard left something that looks complete: {names}")
    check("index.json" not in names, "no index after a kill")
    os.unlink(target)
    open(target, "wb").write(saved)
    p = run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "4"], env=QUIET)
    check("2 finished shard(s) skipped" in p.stderr, "resume skipped shards 0 and 1: " + p.stderr[-300:])
    # The killed run's temporaries (its shard, its rejects) are removed by the run that finished.
    check(not glob.glob(os.path.join(out, "*.tmp-*")) and not glob.glob(os.path.join(out, "*.lock")),
          f"the killed run's temporaries and lock are gone: {sorted(os.listdir(out))}")
    same_tree(clean, out, "resumed vs clean")
    # A finished shard whose file was damaged is redone, not trusted.
    shard = os.path.join(out, "part-00003-of-00004.h5")
    data = bytearray(open(shard, "rb").read())
    data[-100] ^= 0xFF
    open(shard, "wb").write(bytes(data))
    p = run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "4"], env=QUIET)
    check("3 finished shard(s) skipped" in p.stderr, "damaged shard redone: " + p.stderr[-300:])
    same_tree(clean, out, "after repairing a damaged shard")


def case_export():
    manifest, pcms = make_corpus(WORK, 7, seed=5, max_s=1.0)
    out = os.path.join(WORK, "store")
    run([MFCC, "--manifest", manifest, "--out", out, "--nshard", "2"], env=QUIET)
    _, feats = read_store(out)
    run(mpi(MPIEXEC, 2, [EXPORT, "--store", out, "--out", os.path.join(WORK, "fs"), "--split", "train"]))
    rows, lengths = [], []
    for r in range(2):
        rows.append(np.load(os.path.join(WORK, f"fs/train_{r}_2.npy")))
        lengths += [int(x) for x in open(os.path.join(WORK, f"fs/train_{r}_2.len")).read().split()]
    allrows = np.concatenate(rows)
    rels = [line.split("\t")[0] for line in open(manifest).read().split("\n")[1:-1]]
    ref = np.concatenate([feats[r] for r in rels])
    check(lengths == [len(feats[r]) for r in rels], "exported lengths")
    check(allrows.dtype == np.float32 and np.array_equal(allrows, ref), "exported rows equal the store's")
    marker = json.load(open(os.path.join(WORK, "fs/train.export.json")))
    check(marker["split"] == "train" and marker["nshard"] == 2 and len(marker["content_id"]) == 16, "train.export.json")


def case_options():
    p = run([MFCC, "--help"])
    check("--manifest" in p.stdout and "--max-reject" in p.stdout and "default: 23" in p.stdout, "help lists options")
    p = run([MFCC, "--bogus", "1"], expect=2)
    check("unknown option --bogus" in p.stderr, "unknown option named")
    manifest, pcms = make_corpus(WORK, 2, seed=6, max_s=1.0)
    cfg = os.path.join(WORK, "c.ini")
    open(cfg, "w").write("[common]\nnshard = 2\n[mfcc]\nwith-deltas = 0\n")
    out = os.path.join(WORK, "store")
    run([MFCC, "--config", cfg, "--manifest", manifest, "--out", out], env=QUIET)
    index = json.load(open(os.path.join(out, "index.json")))
    check(index["dim"] == 13 and index["nshard"] == 2, "config file applied")
    ref = fairseq_mfcc(pcms[0].astype(np.float32) / 32768.0)[:, :13]
    _, feats = read_store(out)
    check(np.abs(feats["wav/u0000.wav"] - ref).max() <= 1e-3, "13-dim MFCC without deltas")
    open(cfg, "w").write("[mfcc]\nnum-cepz = 3\n")
    p = run([MFCC, "--config", cfg, "--manifest", manifest, "--out", out], expect=4)  # a bad input file
    check("num-cepz" in p.stderr and "c.ini:2" in p.stderr, "unknown config key named with the file")
    # Progress: done/total, audio hours per second and ETA.
    p = run([MFCC, "--manifest", manifest, "--out", os.path.join(WORK, "p"), "--nshard", "2"],
            env={"SLEX_PROGRESS_INTERVAL": "0"})
    check("audio h/s" in p.stderr and "ETA" in p.stderr and "2/2 utterances" in p.stderr, "progress lines: " + p.stderr)
    # SLEX_LOG=warn: no info lines, no progress.
    p = run([MFCC, "--manifest", manifest, "--out", os.path.join(WORK, "q"), "--nshard", "2"],
            env={"SLEX_PROGRESS_INTERVAL": "0", "SLEX_LOG": "warn"})
    check(p.stderr.strip() == "", "SLEX_LOG=warn leaves stderr empty: " + p.stderr)


{"reference": case_reference, "ranks": case_ranks, "bad": case_bad, "resume": case_resume,
 "export": case_export, "options": case_options}[CASE]()
finish("test_mfcc_stage " + CASE)
