"""What a fairseq user runs on slex's outputs, with fairseq's own parsing rules re-implemented
here (facebookresearch/fairseq, read, not copied):
  manifests  every manifest slex writes (slex-synth's corpus, STORE/manifest.tsv, slex-label's
             {split}.tsv) passes HubertDataset's load_audio (fairseq/data/audio/hubert_dataset.py:
             root = readline().strip(); items = line.strip().split("\\t"); assert len(items) == 2;
             int(items[1])) and dump_*_feature.py's get_path_iterator
             (examples/hubert/simple_kmeans/feature_utils.py: subpath, nsample = line.split("\\t"));
             the label file has load_label's one line per manifest line; the extra columns are in
             the side file, which slex reads back (and refuses when it does not belong).
  km_glue    the snippet of docs/fairseq.md (taken from the file) turns slex-kmeans --export-npy
             into the sklearn model fairseq's dump_km_label.py loads; its predict (and the
             ApplyKmeans formula on its cluster_centers_) gives slex-label's .km labels, float32
             ties aside.

usage: /usr/bin/python3 tests/test_fairseq.py CASE BIN_DIR "MPIEXEC ..." WORK_DIR"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_util import check, finish, make_corpus, run  # noqa: E402

CASE, BIN, MPIEXEC, WORK = sys.argv[1:5]
WORK = os.path.join(WORK, "fairseq_" + CASE)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
QUIET = {"SLEX_PROGRESS_INTERVAL": "1000"}


def prog(name):
    return os.path.join(BIN, "slex-" + name)


def fairseq_load_audio(manifest):
    """HubertDataset's load_audio (without the size filters): (root, names, sizes, tot)."""
    names, sizes = [], []
    with open(manifest) as f:
        root = f.readline().strip()
        ind = -1
        for ind, line in enumerate(f):
            items = line.strip().split("\t")
            assert len(items) == 2, line
            sizes.append(int(items[1]))
            names.append(items[0])
    return root, names, sizes, ind + 1


def fairseq_path_iterator(manifest):
    """feature_utils.get_path_iterator over the whole manifest (nshard 1): [(path, nsample)]."""
    with open(manifest) as f:
        root = f.readline().rstrip()
        lines = [line.rstrip() for line in f]
    out = []
    for line in lines:
        subpath, nsample = line.split("\t")
        out.append((f"{root}/{subpath}", int(nsample)))
    return out


def fairseq_reads(manifest, what):
    """Both fairseq readers accept the manifest; returns load_audio's (root, names, sizes, tot)."""
    try:
        loaded = fairseq_load_audio(manifest)
        paths = fairseq_path_iterator(manifest)
    except (AssertionError, ValueError) as e:
        check(False, f"{what}: fairseq cannot read {manifest}: {type(e).__name__} {str(e).strip()[:120]}")
        return None
    check([p for p, _ in paths] == [loaded[0] + "/" + n for n in loaded[1]], f"{what}: the two readers agree")
    check(all(os.path.isfile(p) for p, _ in paths), f"{what}: every path is a file")
    return loaded


def side_file(manifest):
    base = manifest[:-4] if manifest.endswith(".tsv") else manifest
    return base + ".columns"


def read_columns(manifest):
    """The side file as (header, [fields per line]), or None when there is none."""
    path = side_file(manifest)
    if not os.path.exists(path):
        return None
    lines = open(path).read().split("\n")
    check(lines[-1] == "", f"{path}: ends with a newline")
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:-1]]


def case_manifests():
    # slex-synth's corpus: two columns for fairseq; lang and speaker beside.
    corpus = os.path.join(WORK, "corpus")
    run([prog("synth"), "--lang", "en", "--minutes", "0.15", "--out", corpus, "--seed", "3"], env=QUIET)
    synth_tsv = os.path.join(corpus, "en_train.tsv")
    loaded = fairseq_reads(synth_tsv, "slex-synth")
    cols = read_columns(synth_tsv)
    check(cols is not None and cols[0] == ["relpath", "lang", "speaker"], f"synth side file header {cols and cols[0]}")
    if loaded and cols:
        check([c[0] for c in cols[1]] == loaded[1], "synth side file: one line per manifest line, same relpaths")
        check(all(len(c) == 3 and c[1] == "en" and c[2].startswith("en_spk") for c in cols[1]),
              f"synth side file: lang and speaker {cols[1][:2]}")

    # slex-mfcc on it: the store's manifest for fairseq, the columns carried in its side file.
    feats = os.path.join(WORK, "feats")
    run([prog("mfcc"), "--manifest", synth_tsv, "--out", feats, "--nshard", "2"], env=QUIET)
    store_tsv = os.path.join(feats, "manifest.tsv")
    stored = fairseq_reads(store_tsv, "STORE/manifest.tsv")
    check(stored is not None and loaded is not None and stored[1:] == loaded[1:], "store manifest = corpus manifest")
    check(read_columns(store_tsv) == cols, "STORE/manifest.columns carries lang and speaker")

    # slex-kmeans + slex-label --km: train.km has load_label's one line per manifest line.
    codebook = os.path.join(WORK, "cb.h5")
    run([prog("kmeans"), "--store", feats, "--k", "8", "--out", codebook, "--n-init", "1", "--batch-size", "500"],
        env=QUIET)
    km = os.path.join(WORK, "km")
    run([prog("label"), "--store", feats, "--codebook", codebook, "--out", os.path.join(WORK, "units"),
         "--km", km, "--split", "train"], env=QUIET)
    km_tsv = os.path.join(km, "train.tsv")
    labelled = fairseq_reads(km_tsv, "slex-label --km")
    labels = open(os.path.join(km, "train.km")).read().rstrip("\n").split("\n")
    check(labelled is not None and len(labels) == labelled[3], "load_label: one label line per manifest line")
    check(read_columns(km_tsv) == cols, "train.columns carries lang and speaker")

    # A wide input manifest (mHuBERT-147 style, extra columns on its lines) with a rejected line:
    # the store's manifest has the stored lines only, their columns in the side file.
    wide, _ = make_corpus(os.path.join(WORK, "wide"), 4, seed=5)
    with open(wide, "a") as f:
        f.write("wav/missing.wav\t16000\ten\tsynthetic\n")
    wide_store = os.path.join(WORK, "wide_feats")
    run([prog("mfcc"), "--manifest", wide, "--out", wide_store, "--nshard", "2", "--max-reject", "0.5"], env=QUIET)
    wide_tsv = os.path.join(wide_store, "manifest.tsv")
    got = fairseq_reads(wide_tsv, "store of a wide manifest")
    check(got is not None and len(got[1]) == 4, "the rejected line is left out")
    wide_cols = read_columns(wide_tsv)
    check(wide_cols is not None and wide_cols[0] == ["relpath", "column3", "column4"], f"header {wide_cols}")
    check(wide_cols is not None and got is not None and
          wide_cols[1] == [[n, "en", "synthetic"] for n in got[1]], "the stored lines' columns")

    # slex reads its own side files: a store made from a store's manifest carries them again.
    again = os.path.join(WORK, "again")
    run([prog("mfcc"), "--manifest", wide_tsv, "--out", again, "--nshard", "1"], env=QUIET)
    check(read_columns(os.path.join(again, "manifest.tsv")) == wide_cols, "side file read back by slex-mfcc")

    # A side file that does not belong to its manifest, or beside a wide manifest: refused.
    bad = os.path.join(WORK, "bad")
    os.makedirs(bad)
    shutil.copy(wide_tsv, os.path.join(bad, "m.tsv"))
    lines = open(os.path.join(wide_store, "manifest.columns")).read().split("\n")
    open(os.path.join(bad, "m.columns"), "w").write("\n".join(lines[:2] + lines[3:]))
    p = run([prog("mfcc"), "--manifest", os.path.join(bad, "m.tsv"), "--out", os.path.join(bad, "s"), "--nshard",
             "1"], env=QUIET, expect=4)
    check("m.columns" in p.stderr and "does not belong" in p.stderr, "mismatched side file: " + p.stderr[-300:])
    # Same length, two lines swapped: each line must be for its manifest line's relpath.
    open(os.path.join(bad, "m.columns"), "w").write("\n".join(lines[:1] + [lines[2], lines[1]] + lines[3:]))
    p = run([prog("mfcc"), "--manifest", os.path.join(bad, "m.tsv"), "--out", os.path.join(bad, "s"), "--nshard",
             "1"], env=QUIET, expect=4)
    check("m.columns:2: is for" in p.stderr and "does not belong" in p.stderr, "swapped side file: " + p.stderr[-300:])
    shutil.copy(wide, os.path.join(bad, "m.tsv"))
    shutil.copy(os.path.join(wide_store, "manifest.columns"), os.path.join(bad, "m.columns"))
    p = run([prog("mfcc"), "--manifest", os.path.join(bad, "m.tsv"), "--out", os.path.join(bad, "s"), "--nshard",
             "1"], env=QUIET, expect=4)
    check("keep one of them" in p.stderr, "extra columns and a side file: " + p.stderr[-300:])

    # A manifest without extra columns: no side file; labels written into the km directory above
    # replace its train.columns, which no longer belongs to train.tsv, by nothing.
    narrow = os.path.join(WORK, "narrow.tsv")
    shutil.copy(wide_tsv, narrow)
    narrow_store = os.path.join(WORK, "narrow_feats")
    run([prog("mfcc"), "--manifest", narrow, "--out", narrow_store, "--nshard", "1"], env=QUIET)
    check(not os.path.exists(os.path.join(narrow_store, "manifest.columns")), "no side file without columns")
    run([prog("label"), "--store", narrow_store, "--codebook", codebook, "--out", os.path.join(WORK, "units2"),
         "--km", km, "--split", "train"], env=QUIET)
    check(fairseq_reads(km_tsv, "narrow") is not None and not os.path.exists(side_file(km_tsv)),
          "a stale train.columns is removed")


def case_km_glue():
    import h5py
    import joblib
    import numpy as np
    manifest, _ = make_corpus(os.path.join(WORK, "corpus"), 8, seed=11)
    feats = os.path.join(WORK, "feats")
    run([prog("mfcc"), "--manifest", manifest, "--out", feats, "--nshard", "2"], env=QUIET)
    run([prog("kmeans"), "--store", feats, "--k", "16", "--out", os.path.join(WORK, "cb.h5"), "--n-init", "2",
         "--batch-size", "500", "--export-npy", os.path.join(WORK, "km500.npy")], env=QUIET)
    km_dir = os.path.join(WORK, "km")
    run([prog("label"), "--store", feats, "--codebook", os.path.join(WORK, "cb.h5"), "--out",
         os.path.join(WORK, "units"), "--km", km_dir, "--split", "train"], env=QUIET)
    doc = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "fairseq.md")).read()
    snippet = doc.split("```python\n", 1)[1].split("```", 1)[0]
    open(os.path.join(WORK, "glue.py"), "w").write(snippet)
    run([sys.executable, "glue.py"], cwd=WORK)
    km = joblib.load(os.path.join(WORK, "km500.bin"))
    C = np.load(os.path.join(WORK, "km500.npy"))
    check(np.array_equal(km.cluster_centers_, C), "the sklearn model holds exactly slex's centres")
    lines = open(os.path.join(km_dir, "train.km")).read().rstrip("\n").split("\n")
    utts = []
    idx = __import__("json").load(open(os.path.join(feats, "index.json")))
    for rec in idx["shards"]:
        with h5py.File(os.path.join(feats, rec["file"]), "r") as f:
            x, lengths = f["feats"][:], f["lengths"][:]
        off = np.concatenate([[0], np.cumsum(lengths)])
        utts += [x[off[i]:off[i + 1]] for i in range(len(lengths))]
    check(len(utts) == len(lines) == 8, f"{len(utts)} utterances, {len(lines)} label lines")
    C_T = km.cluster_centers_.transpose()  # dump_km_label.py's ApplyKmeans
    Cnorm = (C_T ** 2).sum(0, keepdims=True)
    same, ties = 0, 0
    for x, line in zip(utts, lines):
        got = np.array([int(t) for t in line.split()])
        for ref in (km.predict(x), ((x ** 2).sum(1, keepdims=True) - 2 * np.matmul(x, C_T) + Cnorm).argmin(1)):
            check(len(ref) == len(got), "labels per utterance")
            for i in np.nonzero(got != ref)[0]:
                d64 = ((x[i].astype(np.float64) - C.astype(np.float64)) ** 2).sum(1)
                check(abs(d64[got[i]] - d64[ref[i]]) <= 1e-5 * d64[ref[i]], f"label {got[i]} vs sklearn {ref[i]}")
                ties += 1
            same += int((got == ref).sum())
    check(same > 1000, f"only {same} frames compared")
    print(f"km_glue: {same} labels equal, {ties} float32 ties", file=sys.stderr)


CASES = {"manifests": case_manifests, "km_glue": case_km_glue}
CASES[CASE]()
finish("test_fairseq " + CASE)
