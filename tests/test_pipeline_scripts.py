"""The shell pipelines of the base model (pipeline/base_model.sh, which runs
pipeline/base_model_eval.sh as its last step), run with stub stages that record their command
lines and write empty outputs, so that the whole script runs in seconds.  What is checked is
what a typo or a forgotten edit in the scripts breaks, and what no stage test can see:
- every option of every command is an option of the real stage (its --help), with a value where
  the stage takes one;
- every input of a command is the output of an earlier command (manifests of slex-synth,
  features of slex-mfcc/slex-dump, codebooks of slex-kmeans, labels of slex-label, models of
  slex-train), and matches: labels given to slex-train with a manifest are labels of that
  manifest's features, with as many classes as --num-classes; a codebook is applied only to
  features of its own kind; alignments are those of the labels' or features' own corpus;
- each iteration starts from the weights of the one before, with the IT<n>_STEPS updates of the
  environment and 8 % of them warm-up, and models/base-en receives the last iteration's model
  and the gzipped logs of every iteration;
- the festival and flite test voices are never among the training voices, and the espeak-ng
  test corpora draw from the training corpora's speaker pools (--speakers, --voices);
- run again on the same work directory, the script synthesises nothing twice and otherwise
  issues the same commands (the stages skip their finished work themselves).

usage: /usr/bin/python3 tests/test_pipeline_scripts.py CASE BIN_DIR REPO "MPIEXEC" WORK_DIR
(CASE: base_model; MPIEXEC is unused: the stub mpirun runs the stub stages directly)"""
import gzip
import json
import os
import re
import shutil
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish  # noqa: E402

CASE, BIN, REPO, _MPIEXEC, WORK = sys.argv[1:6]
WORK = os.path.join(WORK, "pipeline_scripts")
shutil.rmtree(WORK, ignore_errors=True)
STUBS = os.path.join(WORK, "stubs")
os.makedirs(STUBS)
LOG = os.path.join(WORK, "calls.jsonl")

# The stub mpirun drops the launcher's options and runs the command once (as one rank).
MPIRUN = """#!/bin/bash
while [ $# -gt 0 ]; do
  case $1 in -np|-n) shift 2 ;; --allow-run-as-root|--oversubscribe) shift ;; *) break ;; esac
done
exec "$@"
"""
# A stub stage records (cwd, stage, args) and writes what later commands of the scripts read.
STAGE = r'''#!/usr/bin/python3
import json, os, sys
stage, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps([os.getcwd(), stage] + args) + "\n")
def value(opt, default=None):
    return args[args.index(opt) + 1] if opt in args else default
out = value("--out")
if stage == "slex-synth":
    os.makedirs(out, exist_ok=True)
    for ext in ("tsv", "align"):
        open(os.path.join(out, "%s_%s.%s" % (value("--lang"), value("--split", "train"), ext)), "w").close()
elif stage == "slex-pitchcopy":
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, os.path.basename(value("--manifest"))), "w").close()
elif stage == "slex-kmeans":
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    open(out, "w").close()
elif stage == "slex-train":
    os.makedirs(os.path.join(out, "model"), exist_ok=True)
    layers = 4
    for cfg in (value("--arch"), value("--init") and os.path.join(value("--init"), "config.json")):
        if cfg and os.path.exists(cfg):
            layers = json.load(open(cfg))["num_hidden_layers"]
    json.dump({"num_hidden_layers": layers}, open(os.path.join(out, "model", "config.json"), "w"))
    for f in ("model.safetensors", "head.safetensors", "preprocessor_config.json"):
        open(os.path.join(out, "model", f), "w").write(os.path.abspath(out))
    open(os.path.join(out, "train_log.jsonl"), "w").write('{"log": "%s"}\n' % os.path.abspath(out))
elif out:
    os.makedirs(out, exist_ok=True)
    if stage == "slex-eval" and args[0] == "curves":
        for f in ("curves_loss.png", "curves_loss.dat", "curves_loss.gp"):
            open(os.path.join(out, f), "w").close()
'''
STAGES = ["slex-synth", "slex-pitchcopy", "slex-mfcc", "slex-dump", "slex-kmeans", "slex-label", "slex-train", "slex-eval"]
for name, text in [("mpirun", MPIRUN)] + [(s, STAGE) for s in STAGES]:
    path = os.path.join(STUBS, name)
    open(path, "w").write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

# The options each real stage takes (from its --help): name -> takes a value.
HELP_LINE = re.compile(r"^  (--[A-Za-z0-9][-A-Za-z0-9]*)(?: ([A-Z][A-Z|]*))?(?:\s{2,}|$)")


def real_options(stage, command=None):
    cmd = [os.path.join(BIN, stage)] + ([command] if command else []) + ["--help"]
    text = subprocess.run(cmd, capture_output=True, text=True).stdout
    opts = {}
    for line in text.splitlines():
        m = HELP_LINE.match(line)
        if m:
            opts[m.group(1)] = m.group(2) is not None
    check(opts, f"{' '.join(cmd)} lists options")
    return opts


OPTIONS = {}


def parse(stage, args):
    """args -> (command, {option: [values]}), checked against the real stage's --help."""
    command = None
    if stage == "slex-eval":
        command, args = args[0], args[1:]
    key = (stage, command)
    if key not in OPTIONS:
        OPTIONS[key] = real_options(stage, command)
    opts, parsed, i = OPTIONS[key], {}, 0
    while i < len(args):
        a = args[i]
        if key == ("slex-eval", "compare") and not a.startswith("--"):
            i += 1  # a NAME=DIR run
            continue
        if a not in opts:
            check(False, f"{stage} {command or ''}: {a!r} is not an option of the real stage")
            i += 1
            continue
        if opts[a]:
            check(i + 1 < len(args) and not args[i + 1].startswith("--"), f"{stage}: {a} without a value")
            parsed.setdefault(a, []).append(args[i + 1] if i + 1 < len(args) else "")
            i += 2
        else:
            parsed.setdefault(a, []).append(True)
            i += 1
    return command, parsed


def run_script(env_steps):
    if os.path.exists(LOG):
        os.remove(LOG)
    env = dict(os.environ, PATH=STUBS + ":" + os.environ["PATH"], STUB_LOG=LOG, **env_steps)
    p = subprocess.run(["bash", os.path.join(REPO, "pipeline", "base_model.sh"), STUBS,
                        os.path.join(WORK, "work"), os.path.join(WORK, "model")],
                       env=env, capture_output=True, text=True)
    check(p.returncode == 0, f"base_model.sh with stub stages exits 0 (got {p.returncode}): {p.stderr[-2000:]}")
    return [json.loads(line) for line in open(LOG)] if os.path.exists(LOG) else []


def one(parsed, opt, stage):
    v = parsed.get(opt, [])
    check(len(v) == 1, f"{stage}: {opt} given once (got {v})")
    return v[0] if v else None


def flow(calls):
    """Follows every input to the command that wrote it; returns the slex-train outputs in order."""
    made = {}  # absolute path -> what it is
    trains, synths = [], []

    def path(cwd, p):
        return os.path.normpath(os.path.join(cwd, p))

    def need(p, kind, who):
        what = made.get(p)
        check(what is not None and what["kind"] == kind,
              f"{who}: {p} is {what['kind'] if what else 'not written by any earlier command'}, not {kind}")
        return what or {}

    for cwd, stage, *args in calls:
        command, opt = parse(stage, args)
        who = f"{stage} {command or ''} {' '.join(args)}"
        out = path(cwd, one(opt, "--out", who) or "")
        if stage == "slex-synth":
            split = opt.get("--split", ["train"])[0]
            lang = one(opt, "--lang", who)
            info = {"kind": "manifest", "split": split, "engine": opt.get("--engine", ["espeak"])[0],
                    "voices": set(opt.get("--voice", [])), "pool": (opt.get("--speakers", ["40"])[0],
                                                                    opt.get("--voices", ["standard"])[0])}
            made[os.path.join(out, f"{lang}_{split}.tsv")] = info
            made[os.path.join(out, f"{lang}_{split}.align")] = {"kind": "align", "split": split}
            synths.append(info)
        elif stage == "slex-pitchcopy":
            manifest = path(cwd, one(opt, "--manifest", who))
            original = need(manifest, "manifest", who)
            made[os.path.join(out, os.path.basename(manifest))] = dict(original, copy_of=manifest)
        elif stage in ("slex-mfcc", "slex-dump"):
            manifest = path(cwd, one(opt, "--manifest", who))
            need(manifest, "manifest", who)
            feats = ("mfcc",)
            if stage == "slex-dump":
                model = path(cwd, one(opt, "--model", who))
                check(model in made or os.path.exists(os.path.join(model, "config.json")),
                      f"{who}: model {model} not written")
                feats = ("layer", model, one(opt, "--layer", who))
            made[out] = {"kind": "features", "manifest": manifest, "feats": feats}
        elif stage == "slex-kmeans":
            stores = [need(path(cwd, s.split(":")[0]), "features", who) for s in opt.get("--store", [])]
            kinds = {s.get("feats") for s in stores}
            check(len(kinds) == 1, f"{who}: a codebook pooled over features of one kind (got {kinds})")
            made[out] = {"kind": "codebook", "feats": kinds.pop() if kinds else None,
                         "k": int(one(opt, "--k", who) or 0)}
        elif stage == "slex-label":
            store = need(path(cwd, one(opt, "--store", who)), "features", who)
            codebook = need(path(cwd, one(opt, "--codebook", who)), "codebook", who)
            check(store.get("feats") == codebook.get("feats"),
                  f"{who}: a codebook of {codebook.get('feats')} applied to {store.get('feats')}")
            made[out] = {"kind": "labels", "manifest": store.get("manifest"), "k": codebook.get("k")}
        elif stage == "slex-train":
            k = int(one(opt, "--num-classes", who) or 0)
            copies, plain = [], []
            for d in opt.get("--data", []):
                manifest, units = d.split(":")[:2]
                need(path(cwd, manifest), "manifest", who)
                labels = need(path(cwd, units), "labels", who)
                # a pitch-shifted copy (slex-pitchcopy) trains on its original's labels
                of = made.get(path(cwd, manifest), {}).get("copy_of", path(cwd, manifest))
                check(labels.get("manifest") == of,
                      f"{who}: labels {units} are of {labels.get('manifest')}, not of {manifest} ({of})")
                if of != path(cwd, manifest):
                    copies.append(of)
                else:
                    plain.append(of)
                check(labels.get("k") == k, f"{who}: labels {units} have K={labels.get('k')}, --num-classes {k}")
                check(made[path(cwd, manifest)]["split"] == "train", f"{who}: {manifest} is not a train split")
            init = opt.get("--init")
            if trains:
                check(init and path(cwd, init[0]) == os.path.join(trains[-1]["out"], "model"),
                      f"{who}: starts from {init}, not from the previous iteration {trains[-1]['out']}")
            else:
                check(init is None and "--arch" in opt, f"{who}: iteration 1 starts from --arch")
            steps = int(one(opt, "--steps", who) or 0)
            check(set(copies) <= set(plain), f"{who}: copies of {set(copies) - set(plain)} without their originals")
            trains.append({"out": out, "steps": steps, "warmup": int(one(opt, "--warmup-steps", who) or -1),
                           "copies": copies})
            made[os.path.join(out, "model")] = {"kind": "model"}
            made[os.path.join(out, "train_log.jsonl")] = {"kind": "train_log"}
        elif stage == "slex-eval":
            if command in ("units", "abx"):
                src = opt.get("--labels" if command == "units" else "--features", [""])
                what = need(path(cwd, src[0]), "labels" if command == "units" else "features", who)
                align = path(cwd, one(opt, "--align", who))
                need(align, "align", who)
                check(what.get("manifest", "")[:-len(".tsv")] + ".align" == align,
                      f"{who}: {align} is not the alignment of {what.get('manifest')}")
            elif command == "curves":
                need(path(cwd, one(opt, "--log", who)), "train_log", who)
            elif command == "compare":
                for run in args[1:]:
                    if "=" in run:
                        need(path(cwd, run.split("=", 1)[1]), "eval", who)
            made[out] = {"kind": "eval"}
    return trains, synths


# Distinct update counts per iteration (more than the script has), to see each reach its run.
steps = {f"IT{i}_STEPS": str(20 + 7 * i) for i in range(1, 10)}
calls = run_script(steps)
check(len(calls) > 50, f"base_model.sh issued {len(calls)} commands")
trains, synths = flow(calls)

# Iterations: the environment's updates, 8 % warm-up, and the last one's model in the model dir.
want = [int(steps[f"IT{i}_STEPS"]) for i in range(1, len(trains) + 1)]
check(len(trains) >= 2, f"iterations run (got {len(trains)})")
check([t["steps"] for t in trains] == want, f"--steps {[t['steps'] for t in trains]} = IT<n>_STEPS {want}")
check(all(t["warmup"] == t["steps"] * 8 // 100 for t in trains), "warm-up 8 % of the updates")
# The last iteration trains on pitch-shifted copies of the three male non-espeak corpora.
male = {os.path.join(WORK, "work", c, "en_train.tsv") for c in ("corpus4/flite", "corpus4/flite_rms", "corpus4/festival")}
check(trains and set(trains[-1]["copies"]) == male, f"the last iteration's copies: {trains[-1]['copies'] if trains else None}")
dest = os.path.join(WORK, "model")
if trains:
    last = trains[-1]["out"]
    for f in ("model.safetensors", "head.safetensors", "preprocessor_config.json"):
        got = open(os.path.join(dest, f)).read() if os.path.exists(os.path.join(dest, f)) else None
        check(got == last, f"models/base-en/{f} is the last iteration's ({last}), got {got}")
    for t in trains:
        name = os.path.basename(t["out"])
        plain, gz = os.path.join(dest, f"train_log_{name}.jsonl"), os.path.join(dest, f"train_log_{name}.jsonl.gz")
        want_log = '{"log": "%s"}\n' % t["out"]
        check(os.path.exists(gz) and gzip.open(gz, "rt").read() == want_log and not os.path.exists(plain),
              f"{gz}: iteration {name}'s log, gzipped")
        curves = os.path.join(dest, f"curves_{name}")
        files = sorted(os.listdir(curves)) if os.path.isdir(curves) else []
        check(files == ["curves_loss.png"], f"{curves} holds the plots only (got {files})")

# Test voices and speakers: never trained on.
train_voices = {}
for s in synths:
    if s["split"] == "train":
        train_voices.setdefault(s["engine"], set()).update(s["voices"])
tests = [s for s in synths if s["split"] == "test"]
check(len(tests) == 4, f"four test corpora (got {len(tests)})")
for s in tests:
    if s["engine"] == "espeak":
        check(any(t["engine"] == "espeak" and t["split"] == "train" and t["pool"] == s["pool"] for t in synths),
              f"espeak-ng test corpus with speaker pool {s['pool']}: no training corpus draws from that pool")
    else:
        check(s["voices"] and not s["voices"] & train_voices.get(s["engine"], set()),
              f"{s['engine']} test voices {s['voices']} are not training voices {train_voices.get(s['engine'])}")

# Run again: nothing synthesised twice, and otherwise the same commands.
again = run_script(steps)
check(not [c for c in again if c[1] == "slex-synth"], "a second run synthesises nothing")
check(again == [c for c in calls if c[1] != "slex-synth"],
      "a second run issues the first run's commands but slex-synth's")
finish(f"test_pipeline_scripts {CASE}")
