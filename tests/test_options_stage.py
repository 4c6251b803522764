"""Every program refuses a bad command line at parse time (issue 9): exit 2 (4 when the value came
from --config, a bad input file), a message naming the option (and FILE:LINE of the config),
nothing written.  The cases of the
issue: `--out --force`, negative --nshard/--shard, --max-reject nan, out-of-range --with-deltas
and --normalize-waveform, bad command lines that used to exit 1, and slex-kmeans checking its
options before it opens (loads) the pool.

usage: /usr/bin/python3 tests/test_options_stage.py BIN_DIR WORK_DIR"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, make_corpus, run  # noqa: E402

BIN, WORK = sys.argv[1:3]
WORK = os.path.join(WORK, "options_stage")
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
CWD = os.path.join(WORK, "cwd")  # where a value taken for a path would be created
os.makedirs(CWD)
QUIET = {"SLEX_PROGRESS_INTERVAL": "1000"}
NO_ARRAY = {"SLURM_ARRAY_TASK_ID": "", "SLURM_ARRAY_TASK_COUNT": "", "PBS_ARRAY_INDEX": "", "PBS_ARRAYID": ""}


def prog(name):
    return os.path.join(BIN, "slex-" + name)


def env():
    e = {k: v for k, v in os.environ.items() if k not in NO_ARRAY}
    e.update(QUIET)
    return e


def refused(name, args, words, what, code=2):
    """name args must exit code (2 by default) with every word in its message, and leave CWD empty."""
    p = subprocess.run([prog(name)] + args, cwd=CWD, env=env(), capture_output=True, text=True)
    check(p.returncode == code, f"{what}: exit {p.returncode}, not {code}: {p.stderr.strip()[-300:]}")
    for w in words:
        check(w in p.stderr, f"{what}: message lacks '{w}': {p.stderr.strip()[-300:]}")
    check(os.listdir(CWD) == [], f"{what}: wrote {os.listdir(CWD)}")
    for entry in os.listdir(CWD):
        shutil.rmtree(os.path.join(CWD, entry), ignore_errors=True)
    return p


manifest, _ = make_corpus(os.path.join(WORK, "corpus"), 3, seed=4, max_s=1.0)
store = os.path.join(WORK, "mfcc")
M = ["--manifest", manifest]

# ---- slex-mfcc (and the feature-stage options every feature stage shares) ----
refused("mfcc", M + ["--out", "--force"], ["--out needs a value", "--force"], "--out --force")
refused("mfcc", M + ["--out=--force"], ["--out --force", "looks like an option"], "--out=--force")
refused("mfcc", M + ["--out", "-o"], ["--out -o", "looks like an option"], "--out -o")
refused("mfcc", M + ["--out", "x", "--nshard", "-3"], ["--nshard -3", "at least 0"], "negative --nshard")
refused("mfcc", M + ["--out", "x", "--shard", "-2"], ["--shard -2", "at least -1"], "negative --shard")
for bad in ["nan", "inf", "-inf"]:
    refused("mfcc", M + ["--out", "x", "--max-reject", bad], ["--max-reject " + bad, "finite"], "--max-reject " + bad)
refused("mfcc", M + ["--out", "x", "--max-reject", "1.5"], ["--max-reject 1.5", "between 0 and 1"], "--max-reject 1.5")
refused("mfcc", M + ["--out", "x", "--max-reject", "-0.1"], ["--max-reject -0.1"], "--max-reject -0.1")
for bad in ["2", "-1"]:
    refused("mfcc", M + ["--out", "x", "--with-deltas", bad], ["--with-deltas " + bad, "between 0 and 1"],
            "--with-deltas " + bad)
refused("mfcc", M + ["--out", "x", "--num-ceps", "30"], ["--num-ceps 30", "--num-mel-bins"], "--num-ceps > mel bins")
refused("mfcc", M + ["--out", "x", "--preemphasis", "nan"], ["--preemphasis nan", "finite"], "--preemphasis nan")
refused("mfcc", M + ["--out", "x", "--num-mel-bins", "3"], ["--num-mel-bins 3", "between 4 and 1024"], "mel bins")
refused("mfcc", M + ["--out", "x", "--delta-window", "0"], ["--delta-window 0"], "--delta-window 0")
refused("mfcc", M + ["--out", "x", "--low-freq", "9000"], ["--low-freq 9000"], "--low-freq above Nyquist")
# Command lines that exited 1 before.
refused("mfcc", ["--out", "x"], ["--manifest is required"], "no --manifest")
refused("mfcc", M, ["--out is required"], "no --out")
refused("mfcc", M + ["--out", "x", "--shard", "5", "--nshard", "3"], ["shard 5 does not exist"], "--shard 5 of 3")
refused("mfcc", M + ["--out", "x", "--shard", "0"], ["--nshard is required with --shard"], "--shard without --nshard")
refused("mfcc", M + ["--out", "x", "--force=2"], ["--force 2", "true or false"], "--force=2")
refused("mfcc", M + ["--out", "x", "stray"], ["unexpected argument 'stray'"], "positional")
# Values from --config: the message names the file and the line.
cfg = os.path.join(WORK, "c.ini")
open(cfg, "w").write("; slex\n[common]\nnshard = -1\n")
refused("mfcc", M + ["--out", "x", "--config", cfg], [cfg + ":3", "--nshard -1", "at least 0"], "config nshard", code=4)
open(cfg, "w").write("[mfcc]\nwith-deltas = 1\n\nmax-reject = nan\n")
refused("mfcc", M + ["--out", "x", "--config", cfg], [cfg + ":4", "--max-reject nan", "finite"], "config max-reject",
        code=4)
open(cfg, "w").write("[mfcc]\nout = --force\n")
refused("mfcc", M + ["--config", cfg], [cfg + ":2", "looks like an option"], "config out", code=4)
# Valid values still run, and the store is what it was (defaults, bounds inclusive).
run([prog("mfcc")] + M + ["--out", store, "--nshard", "1", "--max-reject", "1", "--with-deltas", "1"], env=QUIET)
check(os.path.exists(os.path.join(store, "index.json")), "a valid command line runs")

# ---- slex-dump ----
D = M + ["--out", "x", "--model", os.path.join(WORK, "no_model"), "--layer", "1"]
for bad in ["2", "-2"]:
    refused("dump", D + ["--normalize-waveform", bad], ["--normalize-waveform " + bad, "between -1 and 1"],
            "--normalize-waveform " + bad)
refused("dump", D + ["--max-chunk-samples", "0"], ["--max-chunk-samples 0", "at least 1"], "--max-chunk-samples 0")
refused("dump", M + ["--out", "x", "--model", "--layer", "1"], ["--model needs a value", "--layer"], "--model --layer")
refused("dump", M + ["--out", "x", "--model", "m"], ["--layer is required"], "no --layer")
refused("dump", D + ["--layer", "1.5"], ["--layer 1.5", "integer"], "--layer 1.5")
refused("dump", D + ["--max-reject", "nan"], ["--max-reject nan"], "dump --max-reject nan")

# ---- slex-kmeans: options first, so a bad one is named before any store is opened ----
missing = os.path.join(WORK, "no_such_store")
K = ["--store", missing, "--out", "cb.h5"]
for args, words in [(["--k", "0"], ["--k 0", "at least 1"]),
                    (["--k", "3", "--percent", "0"], ["--percent 0", "greater than 0"]),
                    (["--k", "3", "--percent", "nan"], ["--percent nan", "finite"]),
                    (["--k", "3", "--tol", "nan"], ["--tol nan", "finite"]),
                    (["--k", "3", "--tol", "-1"], ["--tol -1", "at least 0"]),
                    (["--k", "3", "--batch-size", "0"], ["--batch-size 0"]),
                    (["--k", "3", "--n-init", "0"], ["--n-init 0"]),
                    (["--k", "3", "--max-iter", "-1"], ["--max-iter -1"]),
                    (["--k", "3", "--lloyd-passes", "-1"], ["--lloyd-passes -1"]),
                    (["--k", "3", "--cache-mb", "-1"], ["--cache-mb -1"]),
                    (["--k", "3", "--final-inertia", "2"], ["--final-inertia 2"]),
                    (["--k", "3", "--reassignment-ratio", "inf"], ["--reassignment-ratio inf"]),
                    (["--k", "3", "--init", "kmeans"], ["--init kmeans", "one of k-means++, random"]),
                    (["--k", "3", "--seed", "-1"], ["--seed -1"]),
                    ([], ["--k is required"])]:
    p = refused("kmeans", K + args, words, "kmeans " + " ".join(args))
    check(missing not in p.stderr, f"kmeans {args}: the store was opened before the options were checked")
    check(p.stderr.count("--") <= 3, f"kmeans {args}: the message names one option: {p.stderr.strip()}")
for weight in ["0", "-1", "nan", "inf"]:
    refused("kmeans", ["--store", missing + ":" + weight, "--out", "cb.h5", "--k", "3"],
            ["--store " + missing + ":" + weight, "weight"], "store weight " + weight)
refused("kmeans", ["--store", store, "--k", "2", "--out", "--force"], ["--out needs a value", "--force"],
        "kmeans --out --force")
refused("kmeans", ["--store", "--k", "2", "--out", "cb.h5"], ["--store needs a value", "--k"], "--store --k")
codebook = os.path.join(WORK, "cb.h5")
run([prog("kmeans"), "--store", store, "--k", "2", "--out", codebook, "--n-init", "1", "--batch-size", "50"],
    env=QUIET)

# ---- slex-label, slex-export ----
L = ["--store", store, "--codebook", codebook]
refused("label", L + ["--out", "--force"], ["--out needs a value"], "label --out --force")
refused("label", L + ["--out", "x", "--shard", "-5"], ["--shard -5", "at least -1"], "label --shard -5")
refused("label", ["--store", store, "--out", "x"], ["--codebook is required"], "label no --codebook")
refused("label", L + ["--out", "x", "--shard", "9"], ["shard 9 does not exist"], "label --shard 9 of 1")
refused("label", L + ["--out", "x", "--split", ""], ["--split", "must not be empty"], "label --split ''")
refused("export", ["--store", store, "--out", "--split", "x"], ["--out needs a value", "--split"], "export --out")
refused("export", ["--store", store, "--out", "x", "--split="], ["--split", "must not be empty"], "export --split=")
refused("export", ["--out", "x"], ["--store is required"], "export no --store")

# ---- slex-synth, slex-import-textgrid, slex-eval ----
refused("synth", ["--lang", "en", "--out", "c", "--minutes", "nan"], ["--minutes nan", "finite"], "--minutes nan")
refused("synth", ["--lang", "en", "--out", "c", "--minutes", "0"], ["--minutes 0", "greater than 0"], "--minutes 0")
refused("synth", ["--lang", "fr", "--out", "c", "--minutes", "1"], ["--lang fr", "one of en, zh"], "--lang fr")
refused("synth", ["--lang", "en", "--out", "--seed", "1", "--minutes", "1"], ["--out needs a value"], "synth --out")
refused("synth", ["--lang", "en", "--out", "c", "--minutes", "1", "--speakers", "3"], ["--speakers"], "--speakers 3")
refused("synth", ["--lang", "en", "--minutes", "1"], ["--out is required"], "synth no --out")
T = ["--manifest", manifest, "--textgrids", WORK, "--out", "a.align"]
refused("import-textgrid", T + ["--tolerance-ms", "-1"], ["--tolerance-ms -1", "at least 0"], "--tolerance-ms -1")
refused("import-textgrid", T + ["--tolerance-ms", "nan"], ["--tolerance-ms nan", "finite"], "--tolerance-ms nan")
refused("import-textgrid", ["--manifest", manifest, "--out", "a.align"], ["--textgrids is required"],
        "no --textgrids")
refused("eval", ["abx", "--features", store, "--align", "a", "--out", "e", "--max-items", "2"],
        ["--max-items 2", "at least 3"], "abx --max-items 2")
refused("eval", ["abx", "--features", store, "--align", "a", "--out", "e", "--context", "all"],
        ["--context all", "one of within, any"], "abx --context all")
refused("eval", ["units", "--labels", store, "--align", "a", "--out", "--no-plots"], ["--out needs a value"],
        "units --out")
refused("eval", ["compare", "r", "--out", "--x"], ["--out needs a directory"], "compare --out")

finish("test_options_stage")
