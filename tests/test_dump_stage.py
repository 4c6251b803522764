"""End-to-end tests of slex-dump: layer features against torchaudio 0.13.1 with fairseq's
dump_hubert_feature.py rule (tests/dump_reference.py), with LoRA adapters merged as PEFT does,
identical stores from 1/2/3 ranks and job-array tasks, errors before any work, and restart.

usage: /usr/bin/python3 tests/test_dump_stage.py CASE BIN_DIR "MPIEXEC ..." WORK_DIR
CASE: reference | lora | ranks | bad | resume"""
import json
import os
import shutil
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dump_reference import fairseq_features, load_torchaudio, merge_adapter  # noqa: E402
from stage_util import check, finish, make_corpus, mpi, read_store, run, same_tree, speechlike, write_wav  # noqa: E402

CASE, BIN, MPIEXEC, WORK = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
DUMP = os.path.join(BIN, "slex-dump")
HERE = os.path.dirname(os.path.abspath(__file__))
MODELS, DATA = os.path.join(HERE, "data", "model"), os.path.join(HERE, "data", "dump")
WORK = os.path.join(WORK, "dump_stage_" + CASE)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
QUIET = {"SLEX_PROGRESS_INTERVAL": "1000", "OPENBLAS_NUM_THREADS": "1"}
TOL = 1e-4


def corpus_waves(manifest, pcms):
    rels = [line.split("\t")[0] for line in open(manifest).read().split("\n")[1:-1]]
    return list(zip(rels, [p.astype(np.float32) / 32768.0 for p in pcms]))


def compare(store, waves, model, cfg, layer, normalize, what, max_chunk=1600000, rate=None):
    """Max abs difference of the store's rows to the reference; checks shapes and the frame rate."""
    index, feats, attrs = read_store(store)
    stride = int(np.prod(cfg["conv_stride"]))
    rate = 16000 / stride
    check(index["dim"] == cfg["hidden_size"] and abs(index["frame_rate_hz"] - rate) < 1e-9,
          f"{what}: index dim {index['dim']} rate {index['frame_rate_hz']} vs {cfg['hidden_size']} {rate}")
    check(attrs["producer"] == "slex-dump" and attrs["dim"] == cfg["hidden_size"], f"{what}: attributes {attrs}")
    worst, frames = 0.0, 0
    for rel, wave in waves:
        ref = fairseq_features(model, cfg, wave, layer, normalize, max_chunk)
        got = feats.get(rel)
        check(got is not None and got.shape == ref.shape, f"{what}: {rel}: shape {None if got is None else got.shape} "
                                                          f"vs {ref.shape}")
        if got is not None and got.shape == ref.shape:
            worst = max(worst, float(np.abs(got - ref).max()))
            frames += len(ref)
    check(worst <= TOL, f"{what}: max abs difference to torchaudio {worst:.3g} > {TOL}")
    print(f"{what}: max abs difference to torchaudio over {frames} frames: {worst:.3g}", file=sys.stderr)
    return worst


def case_reference():
    manifest, pcms = make_corpus(WORK, 4, seed=11, min_s=0.3, max_s=1.2)
    # Edge lengths for the 50 Hz model: exactly one frame (400 samples), one short of a second (719).
    for n, name in [(400, "one_frame"), (719, "almost_two")]:
        pcms.append(write_wav(os.path.join(WORK, f"wav/{name}.wav"), speechlike(n, 5))[:, 0])
        with open(manifest, "a") as f:
            f.write(f"wav/{name}.wav\t{n}\n")
    waves = corpus_waves(manifest, pcms)
    # 50 Hz: HuBERT's conv stack; frame counts floor((N - 400) / 320) + 1.
    model, cfg = load_torchaudio(os.path.join(DATA, "base50"))
    out = os.path.join(WORK, "base50")
    run([DUMP, "--manifest", manifest, "--model", os.path.join(DATA, "base50"), "--layer", "2", "--out", out,
         "--nshard", "2"], env=QUIET)
    compare(out, waves, model, cfg, 2, False, "base50 layer 2 (50 Hz)")
    _, feats, _ = read_store(out)
    counts = {rel: len(feats[rel]) for rel, _ in waves}
    expect = {rel: (len(w) - 400) // 320 + 1 for rel, w in waves}
    check(counts == expect, f"50 Hz frame counts {counts} vs {expect}")
    # The tiny fixtures of the model tests, post-LN (layer 1 and 3) and pre-LN with waveform
    # normalisation (layer 2 = its last layer before the final LN), with fairseq's chunking.
    for name, layer, normalize, chunk in (("post_ln_group", 1, False, None), ("post_ln_group", 3, False, 6000),
                                          ("pre_ln_layer", 2, True, None)):
        model, cfg = load_torchaudio(os.path.join(MODELS, name))
        out = os.path.join(WORK, f"{name}_{layer}")
        cmd = [DUMP, "--manifest", manifest, "--model", os.path.join(MODELS, name), "--layer", str(layer),
               "--out", out, "--nshard", "3"]
        if chunk:
            cmd += ["--max-chunk-samples", str(chunk)]
        run(cmd, env=QUIET)
        compare(out, waves, model, cfg, layer, normalize, f"{name} layer {layer}" + (f" chunk {chunk}" if chunk else ""),
                max_chunk=chunk or 1600000)
    # Forcing normalisation off on the pre-LN model changes the rows and the fingerprint.
    model, cfg = load_torchaudio(os.path.join(MODELS, "pre_ln_layer"))
    out = os.path.join(WORK, "pre_ln_raw")
    run([DUMP, "--manifest", manifest, "--model", os.path.join(MODELS, "pre_ln_layer"), "--layer", "1", "--out", out,
         "--normalize-waveform", "0"], env=QUIET)
    compare(out, waves, model, cfg, 1, False, "pre_ln_layer layer 1 without normalisation")


def case_lora():
    manifest, pcms = make_corpus(WORK, 4, seed=12, min_s=0.3, max_s=1.2)
    waves = corpus_waves(manifest, pcms)
    for adapter, model_dir, extra in (("adapter_post_ln", "post_ln_group", []),
                                      ("adapter_ctc_rslora", "prefixed", ["--ignore-unexpected"])):
        model, cfg = load_torchaudio(os.path.join(MODELS, model_dir))
        base = {k: v.detach().clone() for k, v in model.named_parameters()}
        merge_adapter(model, os.path.join(DATA, adapter))
        changed = sum(1 for k, v in model.named_parameters() if not np.array_equal(v.detach().numpy(), base[k].numpy()))
        check(changed >= 7, f"{adapter}: the adapter changes {changed} weights")
        for layer in (1, 3):
            out = os.path.join(WORK, f"{adapter}_{layer}")
            run([DUMP, "--manifest", manifest, "--model", os.path.join(MODELS, model_dir), "--layer", str(layer),
                 "--adapter", os.path.join(DATA, adapter), "--out", out, "--nshard", "2"] + extra, env=QUIET)
            compare(out, waves, model, cfg, layer, False, f"{adapter} on {model_dir} layer {layer}")
        # The adapter matters: the unadapted model is far from these rows.
        plain, _ = load_torchaudio(os.path.join(MODELS, model_dir))
        _, feats, _ = read_store(os.path.join(WORK, f"{adapter}_3"))
        rel, wave = waves[0]
        diff = float(np.abs(feats[rel] - fairseq_features(plain, cfg, wave, 3, False)).max())
        check(diff > 100 * TOL, f"{adapter}: adapted rows differ from the base model's by only {diff:.3g}")
    # The adapter's identity is in the fingerprint: the store without it is not taken as done.
    out = os.path.join(WORK, "adapter_post_ln_1")
    p = run([DUMP, "--manifest", manifest, "--model", os.path.join(MODELS, "post_ln_group"), "--layer", "1",
             "--out", out, "--nshard", "2"], env=QUIET, expect=4)
    check("--force" in p.stderr, "dropping the adapter needs --force: " + p.stderr[-300:])


def case_ranks():
    manifest, _ = make_corpus(WORK, 9, seed=13, min_s=0.3, max_s=1.0)
    model = os.path.join(MODELS, "post_ln_group")
    adapter = os.path.join(DATA, "adapter_post_ln")
    stores = []
    for ranks in (1, 2, 3):
        out = os.path.join(WORK, f"r{ranks}")
        run(mpi(MPIEXEC, ranks, [DUMP, "--manifest", manifest, "--model", model, "--adapter", adapter, "--layer", "2",
                                 "--out", out, "--nshard", "4"]), env=QUIET)
        stores.append(out)
    same_tree(stores[0], stores[1], "1 vs 2 ranks")
    same_tree(stores[0], stores[2], "1 vs 3 ranks")
    out = os.path.join(WORK, "array")
    for task in (3, 1, 0, 2):
        run([DUMP, "--manifest", manifest, "--model", model, "--adapter", adapter, "--layer", "2", "--out", out,
             "--nshard", "4"], env=dict(QUIET, SLURM_ARRAY_TASK_ID=str(task)))
    same_tree(stores[0], out, "mpirun vs job array")


def no_shards(out, what):
    names = sorted(os.listdir(out)) if os.path.isdir(out) else []
    check(not any(n.startswith("part-") or n == "params.json" for n in names), f"{what}: files written: {names}")


def write_bad_adapter(name, edit_config=None, edit_tensors=None):
    """A copy of adapter_post_ln with its config and/or tensors changed."""
    from dump_reference import read_safetensors
    from model_reference import write_safetensors
    src, d = os.path.join(DATA, "adapter_post_ln"), os.path.join(WORK, name)
    os.makedirs(d)
    cfg = json.load(open(os.path.join(src, "adapter_config.json")))
    tensors = list(read_safetensors(os.path.join(src, "adapter_model.safetensors")).items())
    if edit_config:
        edit_config(cfg)
    if edit_tensors:
        tensors = edit_tensors(tensors)
    json.dump(cfg, open(os.path.join(d, "adapter_config.json"), "w"))
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors)
    return d


def case_bad():
    manifest, _ = make_corpus(WORK, 3, seed=14, min_s=0.3, max_s=0.8)
    model = os.path.join(MODELS, "post_ln_group")

    def dump(what, extra, expect, words, ranks=1):
        out = os.path.join(WORK, "out_" + what.replace(" ", "_"))
        cmd = [DUMP, "--manifest", manifest, "--out", out] + extra
        p = run(mpi(MPIEXEC, ranks, cmd) if ranks > 1 else cmd, env=QUIET, expect=expect)
        for w in words:
            check(w in p.stderr, f"{what}: message lacks '{w}': {p.stderr[-400:]}")
        no_shards(out, what)
        return p

    dump("layer beyond depth", ["--model", model, "--layer", "4"], 4, ["--layer 4", "post_ln_group/config.json", "3 transformer layers"])
    dump("layer beyond depth 2 ranks", ["--model", model, "--layer", "7", "--nshard", "2"], 4, ["--layer 7"], ranks=2)
    dump("negative layer", ["--model", model, "--layer", "-3"], 2, ["--layer -3", "at least -1"])
    dump("missing layer", ["--model", model], 2, ["--layer"])
    dump("bad layer", ["--model", model, "--layer", "two"], 2, ["--layer two"])
    missing = os.path.join(WORK, "no_such_model")
    dump("missing model dir", ["--model", missing, "--layer", "1"], 4, [missing + "/config.json"])  # bad input
    broken = os.path.join(WORK, "broken_model")
    shutil.copytree(model, broken)
    st = os.path.join(broken, "model.safetensors")
    open(st, "r+b").truncate(os.path.getsize(st) - 100)
    dump("broken safetensors", ["--model", broken, "--layer", "1"], 4, [st])
    # Issue 9: one NaN in a k_proj weight gave finite, plausible features with exit 0.
    from dump_reference import read_safetensors
    from model_reference import write_safetensors
    nan_model = os.path.join(WORK, "nan_model")
    shutil.copytree(model, nan_model)
    st = os.path.join(nan_model, "model.safetensors")
    tensors = [(n, a.copy()) for n, a in read_safetensors(st).items()]
    for n, a in tensors:
        if n == "encoder.layers.1.attention.k_proj.weight":
            a[3, 5] = np.nan
    write_safetensors(st, tensors)
    dump("NaN weight", ["--model", nan_model, "--layer", "1"], 4,
         [st, "encoder.layers.1.attention.k_proj.weight", "NaN"])
    dump("prefixed without --ignore-unexpected", ["--model", os.path.join(MODELS, "prefixed"), "--layer", "1"], 4,
         ["lm_head", "ignore"])

    def wide(tensors):  # lora_A (r, in) with in = 48 != hidden size 32
        return [(n, np.zeros((4, 48), np.float32) + 0.1 if n.endswith("layers.1.attention.k_proj.lora_A.weight") else a)
                for n, a in tensors]

    def deep(tensors):  # a module of layer 99
        return [(n.replace("layers.2.", "layers.99."), a) for n, a in tensors]

    def unknown(tensors):
        return [(n.replace("attention.out_proj", "attention.o_proj"), a) for n, a in tensors]

    def drop_b(tensors):
        return [(n, a) for n, a in tensors if n != "base_model.model.encoder.layers.0.attention.q_proj.lora_B.weight"]

    def inf_a(tensors):
        return [(n, np.where(np.arange(a.size).reshape(a.shape) == 2, np.float32(np.inf), a).astype(np.float32)
                 if n.endswith("layers.0.attention.q_proj.lora_A.weight") else a) for n, a in tensors]

    cases = [
        ("adapter in mismatch", write_bad_adapter("wide", edit_tensors=wide), ["layers.1.attention.k_proj.lora_A.weight", "different base"]),
        ("adapter layer 99", write_bad_adapter("deep", edit_tensors=deep), ["encoder.layers.99.", "3 transformer layers"]),
        ("adapter unknown module", write_bad_adapter("unknown", edit_tensors=unknown), ["attention.o_proj", "unknown module"]),
        ("adapter missing B", write_bad_adapter("nob", edit_tensors=drop_b), ["layers.0.attention.q_proj.lora_A.weight", "no matching"]),
        ("adapter bias", write_bad_adapter("bias", edit_config=lambda c: c.update(bias="all")), ["adapter_config.json", "bias"]),
        ("adapter dora", write_bad_adapter("dora", edit_config=lambda c: c.update(use_dora=True)), ["adapter_config.json", "DoRA"]),
        ("adapter ia3", write_bad_adapter("ia3", edit_config=lambda c: c.update(peft_type="IA3")), ["adapter_config.json", "IA3"]),
        ("adapter rank", write_bad_adapter("rank", edit_config=lambda c: c.update(r=8)), ["rank 4", "r = 8"]),
        ("adapter Inf", write_bad_adapter("inf", edit_tensors=inf_a), ["layers.0.attention.q_proj.lora_A.weight", "+Inf"]),
    ]
    for what, adapter, words in cases:
        file_word = [os.path.join(adapter, "adapter_model.safetensors")] if "config" not in words[0] else [adapter]
        dump(what, ["--model", model, "--layer", "1", "--adapter", adapter], 4, words + file_word)
    dump("missing adapter", ["--model", model, "--layer", "1", "--adapter", os.path.join(WORK, "nope")], 4,
         [os.path.join(WORK, "nope", "adapter_config.json")])
    broken_adapter = write_bad_adapter("broken")
    st = os.path.join(broken_adapter, "adapter_model.safetensors")
    open(st, "r+b").truncate(os.path.getsize(st) - 8)
    dump("broken adapter safetensors", ["--model", model, "--layer", "1", "--adapter", broken_adapter], 4, [st])


def case_resume():
    manifest, _ = make_corpus(WORK, 6, seed=15, min_s=0.3, max_s=0.8)
    model = os.path.join(MODELS, "post_ln_group")
    out = os.path.join(WORK, "store")
    cmd = [DUMP, "--manifest", manifest, "--model", model, "--layer", "2", "--out", out, "--nshard", "3"]
    run(cmd + ["--shard", "1"], env=QUIET)
    p = run(cmd, env=QUIET)
    check("1 finished shard(s) skipped" in p.stderr, "second run skips the finished shard: " + p.stderr[-300:])
    p = run(cmd, env=QUIET)
    check("3 finished shard(s) skipped" in p.stderr, "third run skips all shards: " + p.stderr[-300:])
    clean = os.path.join(WORK, "clean")
    run([DUMP, "--manifest", manifest, "--model", model, "--layer", "2", "--out", clean, "--nshard", "3"], env=QUIET)
    same_tree(clean, out, "resumed vs clean")
    params = json.load(open(os.path.join(out, "params.json")))
    text = json.dumps(params)
    for word in ("model.safetensors", "crc32", "\"layer\": 2", "max_chunk_samples", "normalize_waveform"):
        check(word in text, f"params.json lacks {word}: {text[:400]}")
    # Another layer, chunk size, or a changed model file is not mistaken for the finished store.
    for what, extra in (("layer", ["--layer", "3"]), ("chunk", ["--max-chunk-samples", "9000"])):
        p = run(cmd[:-4] + extra + ["--out", out, "--nshard", "3"] if what == "layer" else cmd + extra, env=QUIET, expect=4)
        check("--force" in p.stderr, f"other {what}: the error suggests --force")
    changed = os.path.join(WORK, "changed_model")
    shutil.copytree(model, changed)
    cfg = json.load(open(os.path.join(changed, "config.json")))
    cfg["layer_norm_eps"] = 1e-6
    json.dump(cfg, open(os.path.join(changed, "config.json"), "w"))
    p = run([DUMP, "--manifest", manifest, "--model", changed, "--layer", "2", "--out", out, "--nshard", "3"],
            env=QUIET, expect=4)
    check("--force" in p.stderr, "changed model: the error suggests --force")


{"reference": case_reference, "lora": case_lora, "ranks": case_ranks, "bad": case_bad, "resume": case_resume}[CASE]()
finish("test_dump_stage " + CASE)
