"""Shared helpers of the end-to-end stage tests: running slex programs (with mpiexec), small
deterministic audio corpora, and comparing store directories.  Run with Debian's /usr/bin/python3."""
import os
import shlex
import subprocess
import sys
import wave

import numpy as np

FAILURES = []


def check(cond, msg):
    if not cond:
        FAILURES.append(msg)
        print("check failed: " + msg, file=sys.stderr)


def finish(name, checks=None):
    print(f"{name}: {len(FAILURES)} failed", file=sys.stderr)
    sys.exit(1 if FAILURES else 0)


def run(cmd, env=None, expect=0, **kw):
    """Runs cmd (a list); returns the CompletedProcess; checks the exit code when expect is not None."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    p = subprocess.run(cmd, env=full_env, capture_output=True, text=True, **kw)
    if expect is not None and p.returncode != expect:
        print(f"command {' '.join(cmd)} exited {p.returncode}, expected {expect}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}",
              file=sys.stderr)
        check(False, f"exit code of {cmd[0]}: {p.returncode} != {expect}")
    return p


def mpi(mpiexec, ranks, cmd):
    return shlex.split(mpiexec) + ["-np", str(ranks)] + cmd


def write_wav(path, samples, rate=16000, sampwidth=2):
    """samples: float array in [-1, 1], shape (n,) or (n, channels); written as 16-bit PCM."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(sampwidth)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return pcm


def read_wav(path):
    """A 16-bit PCM WAV -> float32 samples in [-1, 1) (mono)."""
    with wave.open(path, "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def speechlike(n, seed, rate=16000):
    """A deterministic voiced-speech-like signal: harmonics of a gliding pitch plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    f0 = 100 + 60 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum((0.3 / k) * np.sin(k * phase) for k in range(1, 12))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)
    return 0.5 * x / np.max(np.abs(x))


def make_corpus(root, n_utts, seed=0, min_s=0.5, max_s=3.0):
    """n_utts 16-bit 16 kHz WAVs under root/wav; returns (manifest path, list of int16 arrays)."""
    os.makedirs(os.path.join(root, "wav"), exist_ok=True)
    rng = np.random.default_rng(seed)
    lines, pcms = [], []
    for i in range(n_utts):
        n = int(rng.integers(int(min_s * 16000), int(max_s * 16000)))
        rel = f"wav/u{i:04d}.wav"
        pcms.append(write_wav(os.path.join(root, rel), speechlike(n, seed * 1000 + i))[:, 0])
        lines.append(f"{rel}\t{n}\ten\tsynthetic")
    manifest = os.path.join(root, "train.tsv")
    with open(manifest, "w") as f:
        f.write(os.path.abspath(root) + "\n" + "\n".join(lines) + "\n")
    return manifest, pcms


def tree_files(d):
    out = {}
    for base, _, files in os.walk(d):
        for f in files:
            p = os.path.join(base, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = fh.read()
    return out


def same_tree(a, b, what):
    ta, tb = tree_files(a), tree_files(b)
    check(sorted(ta) == sorted(tb), f"{what}: file lists differ: {sorted(set(ta) ^ set(tb))}")
    for k in sorted(set(ta) & set(tb)):
        check(ta[k] == tb[k], f"{what}: {k} differs")


def write_store(make_store, work, name, utts, nshard=3, rate=50.0):
    """utts: list of (frames, dim) float arrays -> a finished feature store work/name, written by
    the store module through tests/make_store.c (utterance ids u00000, u00001, ...)."""
    import struct
    path = os.path.join(work, name + ".bin")
    with open(path, "wb") as f:
        f.write(struct.pack("<qi", len(utts), utts[0].shape[1]))
        for u in utts:
            f.write(struct.pack("<q", len(u)))
            f.write(np.ascontiguousarray(u, dtype="<f4").tobytes())
    out = os.path.join(work, name)
    run([make_store, path, out, str(nshard), str(rate)])
    os.remove(path)
    return out


def read_store(d):
    """A feature store -> (index, {utt_id: feats}, attributes of the first shard), read with plain h5py."""
    import json
    import h5py
    index = json.load(open(os.path.join(d, "index.json")))
    feats, attrs = {}, None
    for rec in index["shards"]:
        with h5py.File(os.path.join(d, rec["file"]), "r") as f:
            attrs = attrs or dict(f.attrs)
            x, lengths, ids = f["feats"][:], f["lengths"][:], f["utt_ids"][:]
            check(x.shape[0] == rec["frames"] and lengths.sum() == rec["frames"], f"{rec['file']}: frame counts")
            off = np.concatenate([[0], np.cumsum(lengths)])
            for i, u in enumerate(ids):
                feats[u.decode() if isinstance(u, bytes) else u] = x[off[i]:off[i + 1]]
    return index, feats, attrs


def read_label_store(store):
    """A label store -> list of int32 arrays, one per utterance, shards in order."""
    import json
    import h5py
    idx = json.load(open(os.path.join(store, "index.json")))
    out = []
    for rec in idx["shards"]:
        with h5py.File(os.path.join(store, rec["file"]), "r") as f:
            lab, lengths = f["labels"][:], f["lengths"][:]
            off = np.concatenate([[0], np.cumsum(lengths)])
            out += [lab[off[i]:off[i + 1]] for i in range(len(lengths))]
    return out
