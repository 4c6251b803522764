"""Tests of the committed English base model, models/base-en (issue 13, docs/base-model.md).

  reference  it is a Hugging Face HubertModel directory that slex-dump reads as torchaudio 0.13.1
             does: every layer of three held-out espeak-ng utterances within 1e-4 of
             tests/dump_reference.py (fairseq's dump_hubert_feature.py rule); the head has one
             label embedding per unit of the last iteration
  units      its units beat MFCC's on held-out speakers and sentences (3 minutes of the espeak-ng
             test split, the 40 test speakers of the base model's 200-speaker pool): k-means
             K=50 fit on that speech (seeds 1 and 2), PNMI at least MFCC's + 0.05 and ABX
             errors (within and across speakers) below MFCC's

usage: /usr/bin/python3 tests/test_base_model.py CASE BIN_DIR "MPIEXEC ..." WORK_DIR [MODEL_DIR]
MODEL_DIR defaults to models/base-en of this source tree."""
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from dump_reference import fairseq_features, load_torchaudio, read_safetensors  # noqa: E402
from stage_util import check, finish, mpi, read_store, read_wav, run  # noqa: E402

CASE, BIN, MPIEXEC, WORK = sys.argv[1:5]
MODEL = sys.argv[5] if len(sys.argv) > 5 else os.path.join(HERE, "..", "models", "base-en")
WORK = os.path.join(WORK, "base_model_" + CASE)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
QUIET = {"SLEX_PROGRESS_INTERVAL": "1000", "OPENBLAS_NUM_THREADS": "1"}
LAYER = 1  # the layer docs/base-model.md says to cluster
TOL = 1e-4


def slex(ranks, program, *args):
    return run(mpi(MPIEXEC, ranks, [os.path.join(BIN, program), *map(str, args)]), env=QUIET)


def test_corpus(minutes):
    """Held-out English: test sentences, the test speakers of the base model's 200-speaker pool."""
    out = os.path.join(WORK, "corpus")
    slex(2, "slex-synth", "--lang", "en", "--split", "test", "--minutes", minutes, "--speakers", 200,
         "--seed", 41, "--out", out)
    return os.path.join(out, "en_test")


def case_reference():
    corpus = test_corpus(0.1)
    lines = open(corpus + ".tsv").read().split("\n")
    root, rels = lines[0], [line.split("\t")[0] for line in lines[1:] if line]
    check(len(rels) >= 3, f"{corpus}.tsv: {len(rels)} utterances")
    waves = [(rel, read_wav(os.path.join(root, rel))) for rel in rels[:3]]
    model, cfg = load_torchaudio(MODEL)
    # The directory says how to feed it (slex-dump's default reads it): trained on normalised waveforms.
    normalize = json.load(open(os.path.join(MODEL, "preprocessor_config.json")))["do_normalize"]
    check(normalize is True, f"{MODEL}/preprocessor_config.json: do_normalize {normalize}, trained with true")
    for layer in range(1, cfg["num_hidden_layers"] + 1):
        store = os.path.join(WORK, f"l{layer}")
        slex(1, "slex-dump", "--manifest", corpus + ".tsv", "--model", MODEL, "--layer", layer, "--out", store)
        _, feats, _ = read_store(store)
        worst = 0.0
        for rel, wave in waves:
            ref = fairseq_features(model, cfg, wave, layer, normalize)
            got = feats.get(rel)
            check(got is not None and got.shape == ref.shape, f"layer {layer}: {rel}: shape "
                                                              f"{None if got is None else got.shape} vs {ref.shape}")
            if got is not None and got.shape == ref.shape:
                worst = max(worst, float(np.abs(got - ref).max()))
        check(worst <= TOL, f"layer {layer}: max abs difference to torchaudio {worst:.3g} > {TOL}")
        print(f"layer {layer}: max abs difference to torchaudio {worst:.3g}", file=sys.stderr)
    head = read_safetensors(os.path.join(MODEL, "head.safetensors"))
    shapes = {k: v.shape for k, v in head.items()}
    emb = [v for k, v in head.items() if "label_emb" in k]
    check(len(emb) == 1 and emb[0].shape[0] == 500, f"head.safetensors: one label embedding of 500 units: {shapes}")


def pnmi_of(eval_dir):
    return json.load(open(os.path.join(eval_dir, "metrics.json")))["languages"]["en"]["pnmi"]


def case_units():
    corpus = test_corpus(3)
    systems = {"mfcc": os.path.join(WORK, "mfcc"), "model": os.path.join(WORK, f"layer{LAYER}")}
    slex(2, "slex-mfcc", "--manifest", corpus + ".tsv", "--out", systems["mfcc"], "--nshard", 2)
    slex(2, "slex-dump", "--manifest", corpus + ".tsv", "--model", MODEL, "--layer", LAYER, "--out",
         systems["model"], "--nshard", 2)
    pnmi, abx = {}, {}
    for name, store in systems.items():
        values = []
        for seed in (1, 2):
            tag = os.path.join(WORK, f"{name}_s{seed}")
            slex(2, "slex-kmeans", "--store", store, "--k", 50, "--out", tag + ".h5", "--seed", seed,
                 "--batch-size", 10000, "--n-init", 3)
            slex(2, "slex-label", "--store", store, "--codebook", tag + ".h5", "--out", tag + "_units")
            slex(2, "slex-eval", "units", "--labels", tag + "_units", "--align", corpus + ".align", "--out",
                 tag + "_eval")
            values.append(pnmi_of(tag + "_eval"))
        pnmi[name] = float(np.mean(values))
        slex(2, "slex-eval", "abx", "--features", store, "--align", corpus + ".align", "--context", "any",
             "--out", os.path.join(WORK, f"{name}_abx"))
        m = json.load(open(os.path.join(WORK, f"{name}_abx", "metrics.json")))
        abx[name] = (m["abx_within"], m["abx_across"])
        print(f"{name}: PNMI {pnmi[name]:.4f} ({values}), ABX within {abx[name][0]:.4f} across {abx[name][1]:.4f}",
              file=sys.stderr)
    check(pnmi["model"] >= pnmi["mfcc"] + 0.05, f"PNMI of layer {LAYER} {pnmi['model']:.4f} < MFCC's "
                                                 f"{pnmi['mfcc']:.4f} + 0.05")
    for i, kind in enumerate(("within", "across")):
        check(abx["model"][i] < abx["mfcc"][i], f"ABX {kind} of layer {LAYER} {abx['model'][i]:.4f} not below "
                                                f"MFCC's {abx['mfcc'][i]:.4f}")


{"reference": case_reference, "units": case_units}[CASE]()
finish("base_model_" + CASE)
