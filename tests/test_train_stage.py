#!/usr/bin/env python3
"""slex-train end to end on a tiny model: the weights after N updates are the same bytes for
1, 2, 3 and 4 ranks (LoRA and full), a killed run resumes to the same bytes, a finished run is not
redone, bad input is refused with its exit code and leaves the run directory alone, a run that
diverges stops and resumes from its last good checkpoint, and the loss goes down.

usage: test_train_stage.py CASE BIN_DIR SOURCE_DIR "MPIEXEC ..." WORK_DIR
CASE: ranks | resume | bad | diverge | outputs | arch | params"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import wave

import numpy as np

CASE, BIN, SRC, MPIEXEC, WORK = sys.argv[1:6]
TRAIN = os.path.join(BIN, "slex-train")
WORK = os.path.join(WORK, "train_stage_" + CASE)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
MODEL = os.path.join(SRC, "tests", "data", "dump", "base50")  # tiny random HubertModel (16 ch, 2 layers)
K = 12


def corpus():
    """30 utterances of 0.6-1.5 s: tones whose pitch follows a unit sequence at 50 Hz, as .km labels."""
    r = np.random.default_rng(5)
    root = os.path.join(WORK, "wav")
    os.makedirs(root)
    lines, km = [], []
    for i in range(30):
        n = int(r.integers(9600, 24000))
        frames = (n - 400) // 320 + 1
        units = np.repeat(r.integers(0, K, frames // 5 + 1), 5)[:frames]
        t = np.arange(n) / 16000
        f0 = 150 + 40 * units[np.minimum(np.arange(n) // 320, frames - 1)]
        x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / 16000) + 0.01 * r.normal(size=n)
        pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
        name = f"utt{i:03d}.wav"
        with wave.open(os.path.join(root, name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(pcm.tobytes())
        lines.append(f"{name}\t{n}")
        km.append(" ".join(str(u) for u in units))
        del t
    manifest = os.path.join(WORK, "train.tsv")
    open(manifest, "w").write(root + "\n" + "\n".join(lines) + "\n")
    labels = os.path.join(WORK, "train.km")
    open(labels, "w").write("\n".join(km) + "\n")
    return manifest, labels


MANIFEST, LABELS = corpus()


def train(out, ranks=1, extra=(), expect=0, mode="lora", steps=6, start=("--init", MODEL)):
    args = [TRAIN, "--data", f"{MANIFEST}:{LABELS}", *start, "--mode", mode, "--out", out,
            "--num-classes", str(K), "--label-rate", "50", "--steps", str(steps), "--max-tokens", "60000",
            "--micro-batch", "2", "--min-sample-size", "4000", "--checkpoint-every", "2", "--lora-rank", "4",
            "--lora-alpha", "8", "--lr", "2e-3", "--mask-prob", "0.5", "--mask-length", "3", "--seed", "3"] + list(extra)
    cmd = MPIEXEC.split() + ["-np", str(ranks)] + args if ranks > 1 else args
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != expect:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}, expected {expect}\n{p.stdout}\n{p.stderr}")
    return p


def result_files(out, mode):
    sub = "adapter" if mode == "lora" else "model"
    d = os.path.join(out, sub)
    return {f: open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d))}


def log(out):
    return [json.loads(l) for l in open(os.path.join(out, "train_log.jsonl"))]


def case_ranks():
    # Micro-batches of one utterance (LoRA) and two batches per update (full): updates of up to
    # 6 and 12 micro-batches, so that 4 ranks get different shares (and some ranks none).
    for mode, steps, extra in (("lora", 6, ["--micro-batch", "1"]), ("full", 4, ["--update-freq", "2"])):
        results = []
        for ranks in (1, 2, 3, 4):
            out = os.path.join(WORK, f"{mode}_r{ranks}")
            train(out, ranks, mode=mode, steps=steps, extra=extra)
            results.append(result_files(out, mode))
            lines = log(out)
            if [l["step"] for l in lines] != list(range(1, steps + 1)):
                sys.exit(f"FAIL: {mode} {ranks} ranks: log steps {[l['step'] for l in lines]}")
        for ranks, r in zip((2, 3, 4), results[1:]):
            if r != results[0]:
                sys.exit(f"FAIL: {mode}: the result of {ranks} ranks differs from 1 rank's: "
                         + ", ".join(f for f in r if r[f] != results[0].get(f)))
        print(f"{mode}: {steps} updates give the same bytes for 1, 2, 3 and 4 ranks ({', '.join(results[0])})")
    # The loss goes down on learnable targets (LoRA, more updates).
    out = os.path.join(WORK, "learn")
    train(out, 2, steps=40, extra=["--checkpoint-every", "40"])
    lines = log(out)
    first, last = np.mean([l["loss"] for l in lines[:5]]), np.mean([l["loss"] for l in lines[-5:]])
    if not last < first - 0.05:
        sys.exit(f"FAIL: the loss did not go down: {first:.3f} -> {last:.3f}")
    print(f"LoRA, 40 updates: loss {first:.3f} -> {last:.3f} bits")


def case_resume():
    ref = os.path.join(WORK, "ref")
    train(ref, 2, steps=8)
    want = result_files(ref, "lora")
    # A finished run is not redone.
    p = train(ref, 1, steps=8)
    if "nothing to do" not in p.stderr:
        sys.exit("FAIL: a finished run was redone:\n" + p.stderr)
    # Resume from a checkpoint: drop the end of a finished run as a kill after checkpoint 6 would
    # (a run keeps its last two checkpoints: 6 and 8).
    cut = os.path.join(WORK, "cut")
    shutil.copytree(ref, cut)
    if sorted(d for d in os.listdir(cut) if d.startswith("checkpoint-")) != ["checkpoint-6", "checkpoint-8"]:
        sys.exit(f"FAIL: checkpoints kept: {sorted(os.listdir(cut))}")
    for d in ("done.json", "adapter", "checkpoint-8"):
        path = os.path.join(cut, d)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    with open(os.path.join(cut, "train_log.jsonl"), "a") as f:
        f.write('{"step": 7, "loss": 1')  # a torn line of the killed run
    # run.json names the run directory's inputs, not the directory: the copy resumes.
    p = train(cut, 3, steps=8)
    if "resuming from" not in p.stderr or "checkpoint-6" not in p.stderr:
        sys.exit("FAIL: the run did not resume from checkpoint-6:\n" + p.stderr)
    if result_files(cut, "lora") != want:
        sys.exit("FAIL: resumed from checkpoint 6 (3 ranks), the adapter differs from an uninterrupted run's")
    if [l["step"] for l in log(cut)] != list(range(1, 9)):
        sys.exit(f"FAIL: resumed log steps {[l['step'] for l in log(cut)]}")
    # A real kill at some point of the run, then the same command again.
    killed = os.path.join(WORK, "killed")
    args = [TRAIN, "--data", f"{MANIFEST}:{LABELS}", "--init", MODEL, "--mode", "lora", "--out", killed,
            "--num-classes", str(K), "--label-rate", "50", "--steps", "8", "--max-tokens", "60000", "--micro-batch",
            "2", "--min-sample-size", "4000", "--checkpoint-every", "2", "--lora-rank", "4", "--lora-alpha", "8",
            "--lr", "2e-3", "--mask-prob", "0.5", "--mask-length", "3", "--seed", "3"]
    p = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not os.path.exists(os.path.join(killed, "checkpoint-2", "trainer.json")):
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    p = train(killed, 2, steps=8)
    if "resuming from" not in p.stderr:
        sys.exit("FAIL: the killed run did not resume:\n" + p.stderr)
    if result_files(killed, "lora") != want:
        sys.exit("FAIL: killed and re-run, the adapter differs from an uninterrupted run's")
    print("resume: from a checkpoint (torn log line dropped) and after SIGKILL, the same bytes as an uninterrupted run; "
          "a finished run is not redone")


def snapshot(out):
    """Every file of a run directory and its bytes."""
    files = {}
    for root, _, names in os.walk(out):
        for n in names:
            path = os.path.join(root, n)
            files[os.path.relpath(path, out)] = open(path, "rb").read()
    return files


def expect_error(what, out, code, words, extra=(), data=None, init=None, env=None, preexec=None):
    """A run that must fail with exit code `code` and a message holding every word."""
    args = [TRAIN, "--data", data or f"{MANIFEST}:{LABELS}", "--init", init or MODEL, "--mode", "lora", "--out", out,
            "--num-classes", str(K), "--label-rate", "50", "--steps", "2", "--max-tokens", "60000", "--micro-batch",
            "2", "--min-sample-size", "4000", "--checkpoint-every", "2", "--lora-rank", "4", "--lora-alpha", "8",
            "--lr", "2e-3", "--mask-prob", "0.5", "--mask-length", "3", "--seed", "3"] + list(extra)
    p = subprocess.run(args, capture_output=True, text=True, env=env, preexec_fn=preexec)
    missing = [w for w in words if w not in p.stderr]
    if p.returncode != code or missing:
        sys.exit(f"FAIL: {what}: exit {p.returncode} (expected {code}), missing {missing} in:\n{p.stderr[-1500:]}")
    return p


def km_variant(name, edit):
    """train.km with edit(line index, units) applied to its lines."""
    lines = [l.split() for l in open(LABELS).read().splitlines()]
    path = os.path.join(WORK, name)
    open(path, "w").write("\n".join(" ".join(edit(i, u)) for i, u in enumerate(lines)) + "\n")
    return path


def label_store(name, n_utts):
    """A label store of n_utts utterances (ids u00000...) made by make_store."""
    import struct
    src = os.path.join(WORK, name + ".bin")
    with open(src, "wb") as f:
        f.write(struct.pack("<qi", n_utts, 1))
        for line in open(LABELS).read().splitlines()[:n_utts]:
            units = np.array(line.split(), "<i4")
            f.write(struct.pack("<q", len(units)) + units.tobytes())
    out = os.path.join(WORK, name)
    subprocess.run([os.path.join(BIN, "make_store"), src, out, "2", "50", "i32"], check=True)
    return out


def checkpoint_with_adapter(src, adapter, dst):
    """A copy of slex checkpoint src whose adapter/ is another one, its manifest's sizes and CRCs
    updated (so that only the adapter's fit is wrong)."""
    import zlib
    shutil.copytree(src, dst)
    shutil.rmtree(os.path.join(dst, "adapter"))
    shutil.copytree(adapter, os.path.join(dst, "adapter"))
    man = json.load(open(os.path.join(dst, "slex_checkpoint.json")))
    for rel in list(man["files"]):
        if rel.startswith("adapter/"):
            data = open(os.path.join(dst, rel), "rb").read()
            man["files"][rel] = {"bytes": len(data), "crc32": f"{zlib.crc32(data):08x}"}
    json.dump(man, open(os.path.join(dst, "slex_checkpoint.json"), "w"))
    return dst


def case_bad():
    """Bad input: each refused with its exit code (2 command line, 4 bad input, 5 resources, 1 I/O)
    and a message naming the file and the reason; a refused run leaves the run directory as it was."""
    out = os.path.join(WORK, "run")
    train(out, 1, steps=2)
    before = snapshot(out)

    def unchanged(what):
        if snapshot(out) != before:
            sys.exit(f"FAIL: {what} changed the run directory {out}")

    # Another config on an existing run: bad input, naming the difference; nothing overwritten.
    expect_error("another config", out, 4, ["other parameters", "lr", "--force"], ["--lr", "1e-3"])
    unchanged("a resume with another config")
    # --force with bad input: refused before the old run is replaced.
    expect_error("--force with labels >= K", out, 4, [LABELS, "outside the 5 classes"], ["--num-classes", "5", "--force"])
    unchanged("a refused --force run")
    # Command-line errors exit 2 before any work, and create nothing.
    fresh = os.path.join(WORK, "fresh")
    expect_error("unknown --lora-targets", fresh, 2, ["--lora-targets", '"query"'], ["--lora-targets", "q,query"])
    expect_error("bad --lora-layers", fresh, 2, ["--lora-layers 2-1"], ["--lora-layers", "2-1"])
    expect_error("bad --mode", fresh, 2, ["--mode"], ["--mode", "half"])
    if os.path.exists(fresh):
        sys.exit("FAIL: a refused command line created " + fresh)
    # Bad input (4), each naming the file and the reason.
    expect_error("--lora-layers beyond the model", fresh, 4, ["--lora-layers 2,3", "layers 1..2"], ["--lora-layers", "2,3"])
    expect_error("labels >= K", fresh, 4, [LABELS, "utt000.wav", "outside the 5 classes"], ["--num-classes", "5"])
    # fairseq's tolerance is 0.1 s: 3 labels short at 50 Hz (0.06 s) pass, 10 (0.2 s) do not.
    short3 = km_variant("short3.km", lambda i, u: u[:-3] if i == 4 else u)
    train(os.path.join(WORK, "short3"), 1, steps=1, extra=["--data", f"{MANIFEST}:{short3}"])
    short10 = km_variant("short10.km", lambda i, u: u[:-10] if i == 4 else u)
    expect_error("labels 0.2 s short", fresh, 4, [short10, "utt004.wav", "line 6", "more than 0.1 s apart"],
                 data=f"{MANIFEST}:{short10}")
    fewer = km_variant("fewer.km", lambda i, u: u)
    open(fewer, "w").write("\n".join(open(LABELS).read().splitlines()[:-1]) + "\n")
    expect_error("a .km with a line missing", fresh, 4, [fewer, "29 lines", "30 utterances"], data=f"{MANIFEST}:{fewer}")
    store29, store30 = label_store("store29", 29), label_store("store30", 30)
    expect_error("label store of another manifest (count)", fresh, 4, [store29, "29 utterances", "another manifest"],
                 data=f"{MANIFEST}:{store29}")
    expect_error("label store of another manifest (ids)", fresh, 4, [store30, "u00000", "utt000.wav", "another manifest"],
                 data=f"{MANIFEST}:{store30}")
    expect_error("no usable utterance", fresh, 4, [MANIFEST, "no usable utterance", "30 shorter"],
                 ["--min-sample-size", "100000"])
    # An adapter for another base: a slex checkpoint whose adapter/ belongs to a 32-wide model.
    other = os.path.join(SRC, "tests", "data", "dump", "adapter_post_ln")
    wrong = checkpoint_with_adapter(os.path.join(out, "checkpoint-2"), other, os.path.join(WORK, "wrong_adapter"))
    expect_error("an adapter for another base", fresh, 4, [os.path.join(wrong, "adapter"), "adapter_model.safetensors"],
                 init=wrong)
    # A damaged checkpoint (its manifest's JSON cut short), a manifest line whose WAV is gone, a bad
    # --config value: bad input (4), naming the file.
    broken = os.path.join(WORK, "broken_checkpoint")
    shutil.copytree(os.path.join(out, "checkpoint-2"), broken)
    open(os.path.join(broken, "slex_checkpoint.json"), "w").write('{"format": "slex-checkpoint", "files": {')
    expect_error("a damaged checkpoint", os.path.join(WORK, "fresh_ck"), 4,
                 [os.path.join(broken, "slex_checkpoint.json")], init=broken)
    lines = open(MANIFEST).read().splitlines()
    gone = os.path.join(WORK, "gone.tsv")
    open(gone, "w").write("\n".join(lines[:1] + ["gone.wav\t" + l.split("\t")[1] for l in lines[1:]]) + "\n")
    expect_error("a missing WAV", os.path.join(WORK, "fresh_wav"), 4,
                 [os.path.join(WORK, "wav", "gone.wav"), "No such file"], data=f"{gone}:{LABELS}")
    cfg = os.path.join(WORK, "bad.ini")
    open(cfg, "w").write("[train]\nlr = fast\n")
    expect_error("a bad --config value", os.path.join(WORK, "fresh_cfg"), 4, [cfg + ":2", "--lr fast"],
                 ["--config", cfg])
    # Resources (5): activations for 1e10-sample crops do not fit (and 1e12, whose sizes overflow
    # int64, fail the same way instead of crashing).
    # (Under ASan, allocations too large to make return NULL as they do without it.)
    asan = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":allocator_may_return_null=1")
    for size in ("10000000000", "1000000000000"):
        expect_error(f"--max-sample-size {size}", fresh, 5, ["out of memory for the activations"],
                     ["--max-sample-size", size], env=asan)
    # I/O (1): a file-size limit makes the first checkpoint's write fail; retrying may succeed.
    import resource

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60000, 60000))
    io = os.path.join(WORK, "io")
    expect_error("a write failing", io, 1, ["checkpoint-2", "model.safetensors", "File too large"],
                 env=dict(os.environ, PMIX_MCA_gds="hash", OMPI_MCA_btl="self"), preexec=small_files)
    if any(d.startswith("checkpoint-") and os.path.exists(os.path.join(io, d, "trainer.json")) for d in os.listdir(io)):
        sys.exit("FAIL: a failed checkpoint write left a checkpoint that counts")
    # --force with good input replaces the run.
    train(out, 1, steps=2, extra=["--lr", "1e-3", "--force"])
    print("bad input: exit 2 for command lines, 4 for another config, labels >= K, labels 0.2 s off (0.06 s "
          "accepted), a missing .km line, label stores of another manifest, no usable utterance, an adapter of "
          "another base, a damaged checkpoint, a missing WAV, a bad --config value; 5 out of memory, 1 a failed "
          "write; refused runs change nothing, --force replaces")


def read_safetensors(path):
    """{name: array} of an F32 safetensors file."""
    import struct
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    return {k: np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], "<f4")
            for k, v in header.items() if k != "__metadata__"}


def scaled_model(dst, name, value):
    """A copy of the tiny model with every element of tensor `name` set to value (finite)."""
    import struct
    shutil.copytree(MODEL, dst)
    path = os.path.join(dst, "model.safetensors")
    raw = bytearray(open(path, "rb").read())
    (n,) = struct.unpack("<Q", raw[:8])
    b, e = json.loads(raw[8:8 + n])[name]["data_offsets"]
    raw[8 + n + b:8 + n + e] = np.full((e - b) // 4, value, "<f4").tobytes()
    open(path, "wb").write(raw)
    return dst


def case_diverge():
    """A non-finite loss or gradient, for real: the run stops naming the step and the source, the
    last good checkpoint stays (finite weights, its step the last logged), and re-running the same
    command resumes from it (and stops at the same step)."""
    import re
    out = os.path.join(WORK, "diverge")
    extra = ["--mode", "full", "--lr", "1000", "--warmup-steps", "4", "--checkpoint-every", "1"]
    p = train(out, 2, steps=12, extra=extra, expect=4)
    m = re.search(r"step (\d+), micro-batch \d+ \(source ([^)]*)\): the loss is (finite but gradient element \d+ is )?"
                  r"(NaN|[+-]Inf)", p.stderr)
    if not m or MANIFEST not in m.group(2):
        sys.exit("FAIL: the divergence is not named (step, source, NaN/Inf):\n" + p.stderr[-1500:])
    bad = int(m.group(1))
    kept = sorted(int(d.split("-")[1]) for d in os.listdir(out) if d.startswith("checkpoint-"))
    if bad < 2 or kept != [bad - 2, bad - 1][-len(kept):] or not kept or f"checkpoint-{bad - 1} is kept" not in p.stderr:
        sys.exit(f"FAIL: diverged at step {bad}: checkpoints {kept}\n{p.stderr[-800:]}")
    if [l["step"] for l in log(out)] != list(range(1, bad)):
        sys.exit(f"FAIL: the log of a run that diverged at step {bad}: {[l['step'] for l in log(out)]}")
    if any(os.path.exists(os.path.join(out, f)) for f in ("done.json", "model")):
        sys.exit("FAIL: a diverged run wrote its result")
    ck = os.path.join(out, f"checkpoint-{bad - 1}")
    if json.load(open(os.path.join(ck, "trainer.json")))["step"] != bad - 1:
        sys.exit("FAIL: the kept checkpoint's step")
    for name, a in read_safetensors(os.path.join(ck, "model.safetensors")).items():
        if not np.isfinite(a).all():
            sys.exit(f"FAIL: the kept checkpoint has non-finite {name}")
    before = snapshot(ck)
    p = train(out, 1, steps=12, extra=extra, expect=4)
    if f"resuming from {ck}" not in p.stderr or f"step {bad}, micro-batch" not in p.stderr:
        sys.exit(f"FAIL: the re-run did not resume from {ck} and stop at step {bad}:\n{p.stderr[-1500:]}")
    if snapshot(ck) != before:
        sys.exit("FAIL: the re-run changed the last good checkpoint")
    # A model whose output overflows: the loss itself is NaN at the first step, before any checkpoint.
    huge = scaled_model(os.path.join(WORK, "huge"), "encoder.layers.1.final_layer_norm.bias", 3e38)
    p = expect_error("a model that overflows", os.path.join(WORK, "huge_run"), 4,
                     ["step 1, micro-batch 0", MANIFEST, "the loss is NaN", "no checkpoint was written"], init=huge)
    print(f"diverge: --lr 1000 stops at step {bad} ({m.group(0)}), checkpoint-{bad - 1} kept and resumed from; "
          "an overflowing model: the loss is NaN at step 1")


def read_store_rows(store):
    import h5py
    idx = json.load(open(os.path.join(store, "index.json")))
    rows = []
    for sh in idx["shards"]:
        with h5py.File(os.path.join(store, sh["file"]), "r") as f:
            rows.append(f["feats"][:])
    return np.concatenate(rows)


def case_outputs():
    out = os.path.join(WORK, "lora")
    # A base whose preprocessor_config.json asks for waveform normalisation, which its group-norm
    # conv stack alone would not imply: the merged model must say so too.
    base = os.path.join(WORK, "base_normalized")
    shutil.copytree(MODEL, base)
    with open(os.path.join(base, "preprocessor_config.json"), "w") as f:
        json.dump({"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": 16000}, f)
    train(out, 1, steps=6, extra=["--merge"], start=("--init", base))
    pre = json.load(open(os.path.join(out, "merged", "preprocessor_config.json")))
    if pre.get("do_normalize") is not True:
        sys.exit(f"FAIL: merged/preprocessor_config.json: {pre}")
    # The trained adapter, read back by slex-dump, equals the merged model slex-train wrote.
    dump = os.path.join(BIN, "slex-dump")
    a, m = os.path.join(WORK, "dump_adapter"), os.path.join(WORK, "dump_merged")
    for args, dst in ((["--model", base, "--adapter", os.path.join(out, "adapter")], a),
                      (["--model", os.path.join(out, "merged")], m)):
        p = subprocess.run([dump, "--manifest", MANIFEST, "--layer", "2", "--out", dst, "--nshard", "2"] + args,
                           capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"FAIL: slex-dump {' '.join(args)}: {p.stderr}")
    fa, fm = read_store_rows(a), read_store_rows(m)
    err = np.abs(fa - fm).max()
    if not err <= 1e-5:
        sys.exit(f"FAIL: slex-dump with the trained adapter vs the merged model: max abs {err}")
    cfg = json.load(open(os.path.join(out, "adapter", "adapter_config.json")))
    if cfg["r"] != 4 or cfg["lora_alpha"] != 8 or sorted(cfg["target_modules"]) != sorted(
            f"encoder.layers.{l}.attention.{p}_proj" for l in range(2) for p in ("q", "k", "v", "out")):
        sys.exit(f"FAIL: adapter_config.json: {cfg}")
    # Adapters on the top layer only: nothing below it trains (the mask embedding is frozen), so
    # the model keeps no activations of layer 1.  The first update's loss is the all-layer run's
    # (B starts at zero), the adapter covers layer 2 only, the mask embedding is the base's.
    top = os.path.join(WORK, "top")
    train(top, 2, steps=2, extra=["--lora-layers", "2"], start=("--init", base))
    if log(top)[0]["loss"] != log(out)[0]["loss"]:
        sys.exit(f"FAIL: --lora-layers 2: first loss {log(top)[0]['loss']} vs {log(out)[0]['loss']} with every layer")
    cfg2 = json.load(open(os.path.join(top, "adapter", "adapter_config.json")))
    if sorted(cfg2["target_modules"]) != sorted(f"encoder.layers.1.attention.{p}_proj" for p in ("q", "k", "v", "out")):
        sys.exit(f"FAIL: --lora-layers 2: adapter_config.json: {cfg2}")
    base_mask = read_safetensors(os.path.join(MODEL, "model.safetensors"))["masked_spec_embed"]
    for run, ck in ((out, "checkpoint-6"), (top, "checkpoint-2")):
        head = read_safetensors(os.path.join(run, ck, "head.safetensors"))["masked_spec_embed"]
        if not np.array_equal(head, base_mask):
            sys.exit(f"FAIL: {run}: LoRA mode changed the mask embedding")
    # The second iteration starts from a checkpoint of the first: its adapter is merged into the base.
    it2 = os.path.join(WORK, "it2")
    args = [TRAIN, "--data", f"{MANIFEST}:{LABELS}", "--init", os.path.join(out, "checkpoint-6"), "--mode", "lora",
            "--out", it2, "--num-classes", str(K), "--label-rate", "50", "--steps", "2", "--max-tokens", "60000",
            "--micro-batch", "2", "--min-sample-size", "4000", "--lora-rank", "4", "--lora-alpha", "8"]
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode or "merged into the base" not in p.stderr or "head of" not in p.stderr:
        sys.exit(f"FAIL: second iteration from a checkpoint:\n{p.stderr}")
    print(f"outputs: slex-dump --adapter on the trained adapter = the merged model (max abs {err:.1e}); "
          "PEFT adapter_config; --lora-layers 2 (first loss as with every layer, mask embedding frozen); second iteration from a checkpoint (adapter merged, head reused)")


def safetensors_metadata(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n)).get("__metadata__", {})


def case_head():
    """--init reuses the head of a HF directory that slex wrote (OUT/model/) or of a checkpoint
    exactly when it numbers the same units: the same codebook (its CRC-32, recorded in the head
    as label_set), or the unit count alone where a side records none (.km labels)."""
    import zlib
    mfcc = os.path.join(WORK, "mfcc")
    subprocess.run([os.path.join(BIN, "slex-mfcc"), "--manifest", MANIFEST, "--out", mfcc, "--nshard", "2"],
                   check=True, capture_output=True)
    stores, crcs = {}, {}
    for name, seed in (("a", 1), ("b", 2)):
        cb = os.path.join(WORK, f"km_{name}.h5")
        subprocess.run([os.path.join(BIN, "slex-kmeans"), "--store", mfcc, "--k", str(K), "--out", cb, "--seed", str(seed)],
                       check=True, capture_output=True)
        crcs[name] = f"{zlib.crc32(open(cb, 'rb').read()):08x}"
        stores[name] = os.path.join(WORK, f"labels_{name}")
        subprocess.run([os.path.join(BIN, "slex-label"), "--store", mfcc, "--codebook", cb, "--out", stores[name]],
                       check=True, capture_output=True)
    if crcs["a"] == crcs["b"]:
        sys.exit("FAIL: the two codebooks are the same file")

    def run(out, labels, init, lr="2e-3"):
        args = [TRAIN, "--data", f"{MANIFEST}:{labels}", "--init", init, "--mode", "full", "--out", out,
                "--num-classes", str(K), "--label-rate", "50", "--steps", "2", "--max-tokens", "60000", "--micro-batch", "2",
                "--min-sample-size", "4000", "--lr", lr, "--mask-prob", "0.5", "--mask-length", "3", "--seed", "3"]
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"FAIL: {' '.join(args)}\n{p.stderr}")
        return p.stderr

    def head(d):
        return read_safetensors(os.path.join(d, "head.safetensors"))["label_embeddings"]

    first = os.path.join(WORK, "first")
    run(first, stores["a"], MODEL)
    for d in (os.path.join(first, "model"), os.path.join(first, "checkpoint-2")):
        got = safetensors_metadata(os.path.join(d, "head.safetensors")).get("label_set")
        if got != crcs["a"]:
            sys.exit(f"FAIL: {d}/head.safetensors: label_set {got}, the codebook's CRC-32 is {crcs['a']}")
    # At lr 1e-9 nothing moves by more than ~2e-9, so the written head is the one the run started from.
    checks = [("same codebook, from OUT/model", stores["a"], os.path.join(first, "model"), True, "the same codebook"),
              ("same codebook, from a checkpoint", stores["a"], os.path.join(first, "checkpoint-2"), True, "the same codebook"),
              ("another codebook", stores["b"], os.path.join(first, "model"), False, f"codebook {crcs['a']}, the labels are of {crcs['b']}"),
              (".km labels", LABELS, os.path.join(first, "model"), True, "matched on the unit count")]
    for i, (what, labels, init, reused, words) in enumerate(checks):
        out = os.path.join(WORK, f"second{i}")
        log_text = run(out, labels, init, lr="1e-9")
        same = np.abs(head(os.path.join(out, "model")) - head(init)).max() < 1e-6
        if same != reused or words not in log_text:
            sys.exit(f"FAIL: {what}: head reused {same}, expected {reused}; log:\n{log_text}")
    meta = safetensors_metadata(os.path.join(WORK, "second3", "model", "head.safetensors"))
    if "label_set" in meta:
        sys.exit(f"FAIL: a head trained on .km labels records label_set {meta['label_set']}")
    # A head.safetensors beside a model it does not belong to (another mask embedding) is not used.
    alien = os.path.join(WORK, "alien")
    shutil.copytree(MODEL, alien)
    shutil.copy(os.path.join(first, "model", "head.safetensors"), alien)
    log_text = run(os.path.join(WORK, "third"), stores["a"], alien, lr="1e-9")
    if "is not this model's" not in log_text or np.abs(head(os.path.join(WORK, "third", "model")) - head(alien)).max() < 1e-6:
        sys.exit(f"FAIL: a foreign head.safetensors was used:\n{log_text}")
    print(f"head: label_set {crcs['a']} recorded in OUT/model and checkpoints; reused from OUT/model and a checkpoint on "
          "the same codebook and on .km labels, new for another codebook and for a foreign head.safetensors")


def arch_config():
    """base50's shape as a pre-LN model with a layer-norm CNN (the base-model recipe's kind)."""
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    cfg.update(do_stable_layer_norm=True, feat_extract_norm="layer")
    path = os.path.join(WORK, "arch.json")
    json.dump(cfg, open(path, "w"))
    return path


def train_arch(out, ranks=1, steps=6, extra=(), expect=0):
    """train() from random weights: --arch instead of --init, the small-model head and criterion."""
    recipe = ["--label-emb-init", "normal", "--pred-nomask-weight", "1", "--feature-pen", "0"]
    return train(out, ranks, recipe + list(extra), expect, "full", steps, ("--arch", arch_config()))


def case_arch():
    one, two = os.path.join(WORK, "a1"), os.path.join(WORK, "a2")
    train_arch(one)
    train_arch(two, ranks=2)
    if result_files(one, "full") != result_files(two, "full"):
        sys.exit("FAIL: --arch: 2 ranks give other weights than 1")
    run = json.load(open(os.path.join(one, "run.json")))
    if "arch" not in json.dumps(run) or "normal" not in json.dumps(run):
        sys.exit(f"FAIL: run.json does not record --arch and --label-emb-init: {run}")
    # Resuming a random-weight run continues from its checkpoint (no new draw).
    again = os.path.join(WORK, "a3")
    train_arch(again)
    for name in ("done.json", "model", "checkpoint-6"):
        path = os.path.join(again, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    p = train_arch(again)
    if "random weights" in p.stderr or result_files(again, "full") != result_files(one, "full"):
        sys.exit("FAIL: --arch run resumed from checkpoint-4 differs (or drew new weights):\n" + p.stderr)
    # Another seed draws other weights.
    other = os.path.join(WORK, "a4")
    train_arch(other, steps=2, extra=["--seed", "4"])
    first = result_files(other, "full")["model.safetensors"]
    if first == result_files(one, "full")["model.safetensors"]:
        sys.exit("FAIL: --seed does not change the random weights")
    # It learns: the loss falls over 40 updates.
    learn = os.path.join(WORK, "learn")
    train_arch(learn, ranks=2, steps=40, extra=["--checkpoint-every", "40"])
    lines = log(learn)
    first, last = np.mean([l["loss"] for l in lines[:5]]), np.mean([l["loss"] for l in lines[-5:]])
    if not last < first - 0.05:
        sys.exit(f"FAIL: --arch: the loss did not go down: {first:.3f} -> {last:.3f}")
    # Commands that cannot work.
    p = train(os.path.join(WORK, "b1"), expect=2, mode="lora", start=("--arch", arch_config()))
    p2 = train(os.path.join(WORK, "b2"), expect=2, mode="full", start=("--arch", arch_config(), "--init", MODEL))
    if "--mode full" not in p.stderr or "one of --init" not in p2.stderr:
        sys.exit("FAIL: --arch in LoRA mode or with --init: unclear errors:\n" + p.stderr + p2.stderr)
    print(f"--arch: 1 and 2 ranks the same bytes, resume without a new draw, seed changes the weights, "
          f"loss {first:.3f} -> {last:.3f} bits over 40 updates; lora mode and --init with --arch refused")


# One changed value per option of slex-train --help: every option that changes the training must
# make a run of other parameters (run.json), refused on the finished run directory.  An option
# missing from both dicts fails the test: a new option must be placed in one of them.
CHANGED = {
    "data": None, "adam-betas": "0.9,0.99", "init": None, "mode": "full", "lora-rank": "8", "lora-alpha": "16",
    "lora-targets": "q,v", "lora-layers": "1", "rslora": "", "merge": "", "steps": "3", "update-freq": "2",
    "clip-norm": "5", "feature-grad-mult": "0.2", "layerdrop": "0.1", "dropout": "0.2", "attention-dropout": "0.2",
    "activation-dropout": "0.1", "final-dim": "128", "label-emb-init": "normal", "seed": "4", "num-classes": "13",
    "label-rate": "100", "max-tokens": "50000", "micro-batch": "1", "max-sample-size": "20000",
    "min-sample-size": "3000", "mask-prob": "0.4", "mask-length": "4", "lr": "1e-3", "warmup-steps": "1",
    "lr-schedule": "cosine", "power": "2", "end-learning-rate": "1e-5", "weight-decay": "0.02", "adam-eps": "1e-7",
    "pred-masked-weight": "0.5", "pred-nomask-weight": "0.5", "feature-pen": "5",
}
# Options that do not change the training (checkpoint-every: the finished run has nothing to do),
# or are not a value of a run (arch excludes init: case_arch covers it).
SAME_RUN = {"checkpoint-every": "1", "keep-interval-updates": None, "out": None, "force": None, "config": None, "help": None,
            "arch": None}


def case_params():
    out = os.path.join(WORK, "run")
    train(out, 1, steps=2)
    other_model = os.path.join(WORK, "model_copy")
    shutil.copytree(MODEL, other_model)
    CHANGED["init"] = other_model  # the same weights under another name: another run
    CHANGED["data"] = f"{MANIFEST}:{shutil.copy(LABELS, os.path.join(WORK, 'more.km'))}"  # a second source
    helptext = subprocess.run([TRAIN, "--help"], capture_output=True, text=True).stdout
    names = [line.split()[0][2:] for line in helptext.splitlines() if line.startswith("  --")]
    unknown = [n for n in names if n not in CHANGED and n not in SAME_RUN]
    if unknown:
        sys.exit(f"FAIL: options neither in CHANGED nor in SAME_RUN: {unknown}")
    refused = 0
    for name in names:
        if name not in CHANGED:
            continue
        value = CHANGED[name]
        extra = [f"--{name}"] + ([value] if value else [])
        p = subprocess.run([TRAIN, "--data", f"{MANIFEST}:{LABELS}", "--init", MODEL, "--mode", "lora", "--out", out,
                            "--num-classes", str(K), "--label-rate", "50", "--steps", "2", "--max-tokens", "60000",
                            "--micro-batch", "2", "--min-sample-size", "4000", "--checkpoint-every", "2",
                            "--lora-rank", "4", "--lora-alpha", "8", "--lr", "2e-3", "--mask-prob", "0.5",
                            "--mask-length", "3", "--seed", "3"] + extra, capture_output=True, text=True)
        if p.returncode in (0, 2) or "other parameters" not in p.stderr:
            sys.exit(f"FAIL: --{name} {value or ''} on a finished run was not refused as another run "
                     f"(exit {p.returncode}):\n{p.stderr[-600:]}")
        refused += 1
    p = train(out, 1, steps=2, extra=["--checkpoint-every", SAME_RUN["checkpoint-every"]])
    if "nothing to do" not in p.stderr:
        sys.exit("FAIL: --checkpoint-every made another run:\n" + p.stderr)
    # A run.json of an older slex lacks the options added since: one at its default is the same
    # run (activation_dropout: 0), one that is not (lr: 2e-3) makes another.
    run_json = os.path.join(out, "run.json")
    kept = open(run_json).read()
    for key, same in (("activation_dropout", True), ("lr", False)):
        older = {k: v for k, v in json.loads(kept).items() if k != key}
        with open(run_json, "w") as f:
            f.write(json.dumps(older, separators=(",", ":")) + "\n")
        p = train(out, 1, steps=2, expect=0 if same else 4)
        if (same and "nothing to do" not in p.stderr) or (not same and f"{key}: (absent) -> " not in p.stderr):
            sys.exit(f"FAIL: run.json without {key}:\n{p.stderr[-600:]}")
    with open(run_json, "w") as f:
        f.write(kept)
    # --keep-interval-updates: the newest N checkpoints stay (default 2, -1 all); 0 is refused.
    for keep, left in ((None, [4, 6]), ("1", [6]), ("-1", [2, 4, 6])):
        run = os.path.join(WORK, f"keep{keep}")
        train(run, 1, steps=6, extra=["--keep-interval-updates", keep] if keep else [])
        got = sorted(int(n.split("-")[1]) for n in os.listdir(run) if n.startswith("checkpoint-"))
        if got != left:
            sys.exit(f"FAIL: --keep-interval-updates {keep}: checkpoints {got}, expected {left}")
    p = train(os.path.join(WORK, "keep0"), 1, steps=2, extra=["--keep-interval-updates", "0"], expect=2)
    if "--keep-interval-updates 0" not in p.stderr:
        sys.exit(f"FAIL: --keep-interval-updates 0 not refused by name:\n{p.stderr}")
    print(f"params: each of {refused} options changed alone is another run (refused); --checkpoint-every is not; "
          f"an older run.json without an option at its default is the same run; --keep-interval-updates 2 / 1 / -1 keep "
          f"the newest 2 / 1 / all checkpoints")


{"ranks": case_ranks, "resume": case_resume, "bad": case_bad, "diverge": case_diverge, "outputs": case_outputs,
 "arch": case_arch, "params": case_params, "head": case_head}[CASE]()
