"""rank_pattern / alpha_pattern keys written by slex_lora_save, resolved with the rules of every
PEFT version, re-implemented here from peft's source (huggingface/peft):
  peft <= 0.13  src/peft/tuners/lora/model.py LoraModel._create_and_replace: ONE key for rank and
                alpha, the first of chain(rank_pattern, alpha_pattern) with
                re.match(rf".*\\.{key}$", current_key), else current_key itself;
  peft 0.14     src/peft/utils/other.py get_pattern_key (peft #2195): the same expression, each
                dict on its own;
  peft >= 0.15  get_pattern_key (peft #2419): re.match(rf"(.*\\.)?({key})$", current_key).
In every version the value is pattern.get(key, default).  current_key is the module's name in
the model PEFT wraps: "encoder.layers.3.attention.q_proj" for HubertModel, with "hubert." in
front for HubertForCTC (PEFT adapts it too: target_modules entries match name suffixes).

Checks: every target of an adapter resolves to its own r and alpha under all three rules, in
both models; no key matches any other HuBERT module path (48 layers, both prefixes) under
either expression; slex's reader gets the same values without a warning; and the keys slex
wrote before (escaped paths) are caught by these rules (alpha falls back on peft < 0.15) and
make slex's reader warn.

usage: /usr/bin/python3 tests/test_lora_patterns.py LORA_ADAPTER_BINARY WORK_DIR"""
import itertools
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish  # noqa: E402

BINARY, WORK = sys.argv[1], os.path.join(sys.argv[2], "lora_peft_patterns")
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)

LAYER_MODULES = ["attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.out_proj",
                 "feed_forward.intermediate_dense", "feed_forward.output_dense"]


def hubert_linears(layers, prefix=""):
    return [prefix + "feature_projection.projection"] + [
        f"{prefix}encoder.layers.{l}.{m}" for l in range(layers) for m in LAYER_MODULES]


def old_match(key, name):
    return re.match(rf".*\.{key}$", name) is not None


def new_match(key, name):
    return re.match(rf"(.*\.)?({key})$", name) is not None


def peft_013(cfg, name):
    rank, alpha = cfg["rank_pattern"], cfg["alpha_pattern"]
    key = next(filter(lambda k: old_match(k, name), itertools.chain(rank.keys(), alpha.keys())), name)
    return rank.get(key, cfg["r"]), alpha.get(key, cfg["lora_alpha"])


def peft_014(cfg, name):
    def get(keys):
        return next(filter(lambda k: old_match(k, name), keys), name)
    rank, alpha = cfg["rank_pattern"], cfg["alpha_pattern"]
    return rank.get(get(rank.keys()), cfg["r"]), alpha.get(get(alpha.keys()), cfg["lora_alpha"])


def peft_015(cfg, name):
    def get(keys):
        for k in keys:
            if new_match(k, name):
                return k
        return name
    rank, alpha = cfg["rank_pattern"], cfg["alpha_pattern"]
    return rank.get(get(rank.keys()), cfg["r"]), alpha.get(get(alpha.keys()), cfg["lora_alpha"])


RULES = {"peft<=0.13": peft_013, "peft 0.14": peft_014, "peft>=0.15": peft_015}
R0, ALPHA0 = 8, 16.0


def intended(modules):
    """Per target (r, alpha): some only r differs, some only alpha, some both, some neither."""
    ranks, alphas = [8, 4, 2], [16.0, 32.0, 8.0, 12.5]
    return {m: (ranks[(7 * i) % 3], alphas[(5 * i // 3) % 4]) for i, m in enumerate(modules)}


def write_adapter(name, want):
    spec = os.path.join(WORK, name + ".spec")
    with open(spec, "w") as f:
        f.write(f"{R0} {ALPHA0} 0\n")
        for m, (r, a) in want.items():
            f.write(f"{m} {r} {a!r} 4 4\n")
    out = os.path.join(WORK, name)
    p = subprocess.run([BINARY, "write", spec, out], capture_output=True, text=True)
    check(p.returncode == 0, f"{name}: lora_adapter write failed: {p.stderr}")
    with open(os.path.join(out, "adapter_config.json")) as f:
        return out, json.load(f)


def slex_reads(out):
    p = subprocess.run([BINARY, "read", out], capture_output=True, text=True)
    check(p.returncode == 0, f"{out}: slex could not read it: {p.stderr}")
    got = {}
    for line in p.stdout.split("\n"):
        if line:
            m, r, a = line.split()
            got[m] = (int(r), float(a))
    return got, p.stderr


def check_adapter(name, prefix):
    """An adapter on layers 0..12 (keys for layer 1 must not catch 10, 11, 12) of a model whose
    module names carry `prefix`."""
    targets = hubert_linears(13, prefix)
    want = intended(targets)
    out, cfg = write_adapter(name, want)
    check(cfg["r"] == R0 and cfg["lora_alpha"] == ALPHA0, f"{name}: defaults {cfg['r']} {cfg['lora_alpha']}")
    check(sorted(cfg["target_modules"]) == sorted(targets), f"{name}: target_modules")
    check(len(cfg["rank_pattern"]) > 10 and len(cfg["alpha_pattern"]) > 10, f"{name}: patterns used")
    # Each target under each rule, in a HubertModel and (for unprefixed adapters) in a
    # HubertForCTC, where PEFT finds the same targets under "hubert.".
    names = [(m, m) for m in targets] + ([("hubert." + m, m) for m in targets] if not prefix else [])
    for rule, resolve in RULES.items():
        wrong = [(n, resolve(cfg, n), want[m]) for n, m in names if resolve(cfg, n) != want[m]]
        check(not wrong, f"{name}: {rule} resolves {len(wrong)} of {len(names)} targets wrongly, e.g. {wrong[:2]}")
    # No key reaches another module of any HuBERT (48 layers, both naming forms).
    every = hubert_linears(48) + hubert_linears(48, "hubert.")
    for key in set(cfg["rank_pattern"]) | set(cfg["alpha_pattern"]):
        for match in (old_match, new_match):
            stray = [n for n in every if match(key, n) and n != key and n != "hubert." + key]
            check(not stray, f"{name}: key {key!r} also matches {stray[:3]} ({match.__name__})")
    got, log = slex_reads(out)
    check(got == want, f"{name}: slex reads back {sorted(set(got.items()) ^ set(want.items()))[:3]}")
    check("warning" not in log.lower(), f"{name}: slex warns about its own adapter: {log}")
    return out, cfg, want


out, cfg, want = check_adapter("plain", "")
check_adapter("ctc", "hubert.")

# The keys slex wrote before (escaped full paths): these rules must see what went wrong (alpha
# and r fall back to the defaults before peft 0.15), and slex's reader must warn about it.
escaped = dict(cfg)
escaped["rank_pattern"] = {re.escape(k): v for k, v in cfg["rank_pattern"].items()}
escaped["alpha_pattern"] = {re.escape(k): v for k, v in cfg["alpha_pattern"].items()}
for rule, resolve in RULES.items():
    wrong = sum(resolve(escaped, m) != want[m] for m in want)
    check((wrong > 0) == (rule != "peft>=0.15"), f"escaped keys: {rule} resolves {wrong} targets wrongly")
with open(os.path.join(out, "adapter_config.json"), "w") as f:
    json.dump(escaped, f)
got, log = slex_reads(out)
check(got == want, "escaped keys: slex follows peft >= 0.15")
check("peft <= 0.13" in log and "rewrite its pattern keys" in log, f"escaped keys: no warning from slex: {log}")
# An adapter saved by peft >= 0.18 names its version: no warning then.
escaped["peft_version"] = "0.18.0"
with open(os.path.join(out, "adapter_config.json"), "w") as f:
    json.dump(escaped, f)
got, log = slex_reads(out)
check(got == want and "warning" not in log.lower(), f"peft_version given: {log}")

shutil.rmtree(WORK, ignore_errors=True)
finish("test_lora_patterns")
