#!/usr/bin/env python3
"""slex-train end to end on a tiny model: the weights after N updates are the same bytes for
1, 2, 3 and 4 ranks (LoRA and full), a killed run resumes to the same bytes, a finished run is not
redone, another command on the run directory is refused, and the loss goes down.

usage: test_train_stage.py CASE BIN_DIR SOURCE_DIR "MPIEXEC ..." WORK_DIR
CASE: ranks | resume | bad | outputs | arch"""
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


def case_bad():
    out = os.path.join(WORK, "run")
    train(out, 1, steps=2)
    p = train(out, 1, steps=2, extra=["--lr", "1e-3"], expect=1)
    if "other parameters" not in p.stderr or "lr" not in p.stderr:
        sys.exit("FAIL: another command on the run directory:\n" + p.stderr)
    before = result_files(out, "lora")
    if result_files(out, "lora") != before:
        sys.exit("FAIL: a refused run changed the result")
    train(out, 1, steps=2, extra=["--lr", "1e-3", "--force"])
    p = train(os.path.join(WORK, "t"), 1, extra=["--lora-targets", "q,query"], expect=1)
    if "query" not in p.stderr:
        sys.exit("FAIL: unknown LoRA target not named:\n" + p.stderr)
    p = train(os.path.join(WORK, "k"), 1, extra=["--num-classes", "5"], expect=1)
    if "train.km" not in p.stderr:
        sys.exit("FAIL: labels >= K not named:\n" + p.stderr)
    train(os.path.join(WORK, "m"), 1, extra=["--mode", "half"], expect=2)
    print("bad input: another command refused (naming lr), --force replaces it; unknown target, labels >= K, bad mode")


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
    train(out, 1, steps=6, extra=["--merge"])
    # The trained adapter, read back by slex-dump, equals the merged model slex-train wrote.
    dump = os.path.join(BIN, "slex-dump")
    a, m = os.path.join(WORK, "dump_adapter"), os.path.join(WORK, "dump_merged")
    for args, dst in ((["--model", MODEL, "--adapter", os.path.join(out, "adapter")], a),
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
    # The second iteration starts from a checkpoint of the first: its adapter is merged into the base.
    it2 = os.path.join(WORK, "it2")
    args = [TRAIN, "--data", f"{MANIFEST}:{LABELS}", "--init", os.path.join(out, "checkpoint-6"), "--mode", "lora",
            "--out", it2, "--num-classes", str(K), "--label-rate", "50", "--steps", "2", "--max-tokens", "60000",
            "--micro-batch", "2", "--min-sample-size", "4000", "--lora-rank", "4", "--lora-alpha", "8"]
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode or "merged into the base" not in p.stderr or "head of" not in p.stderr:
        sys.exit(f"FAIL: second iteration from a checkpoint:\n{p.stderr}")
    print(f"outputs: slex-dump --adapter on the trained adapter = the merged model (max abs {err:.1e}); "
          "PEFT adapter_config; second iteration from a checkpoint (adapter merged, head reused)")


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


{"ranks": case_ranks, "resume": case_resume, "bad": case_bad, "outputs": case_outputs, "arch": case_arch}[CASE]()
