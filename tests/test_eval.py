#!/usr/bin/env python3
"""slex-eval against independent Python computations (numpy, sklearn, scipy; ABX written here).

usage: test_eval.py CASE BIN_DIR MAKE_STORE "MPIEXEC ..." WORK_DIR
CASE: units | drift | abx | reports | bad

The fixture (tests/data/eval/) is a committed alignment of 60 utterances of two languages'
worth of phones (with tonal finals), their speakers, and seeds; label and feature stores are
built from it here with make_store, the way slex-label and slex-dump write them."""
import json
import math
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import mutual_info_score, normalized_mutual_info_score

CASE, BIN, MAKE_STORE, MPIEXEC, WORK = sys.argv[1:6]
EVAL = os.path.join(BIN, "slex-eval")
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "eval")
WORK = os.path.join(WORK, "eval_" + CASE)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
HOP = {50: 320, 100: 160}


def run(args, ranks=1, expect=0):
    cmd = MPIEXEC.split() + ["-np", str(ranks), EVAL] + args if ranks > 1 else [EVAL] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != expect:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}, expected {expect}\n{p.stdout}\n{p.stderr}")
    return p


def read_align(path):
    utts = {}
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        u, s, e, lab = line.rstrip("\n").split("\t")
        utts.setdefault(u, []).append((int(s), int(e), lab))
    return utts


def base(label):  # tone-free label: before the last '+' when digits follow
    head, sep, tail = label.rpartition("+")
    return head if sep and tail.isdigit() else label


def frame_phones(segs, rate):
    n = segs[-1][1]
    frames = 0 if n < 400 else (n - 400) // HOP[rate] + 1
    out = []
    for i in range(frames):
        c = i * HOP[rate] + 200
        out.append(next(lab for s, e, lab in segs if s <= c < e))
    return out


def write_store(name, utts, rate, labels, nshard=3):
    """utts: list of arrays (frames,) int or (frames, dim) float, ids u00000..."""
    path = os.path.join(WORK, name + ".bin")
    dim = 1 if labels else utts[0].shape[1]
    with open(path, "wb") as f:
        f.write(struct.pack("<qi", len(utts), dim))
        for x in utts:
            f.write(struct.pack("<q", len(x)))
            f.write(np.ascontiguousarray(x, dtype=np.int32 if labels else np.float32).tobytes())
    out = os.path.join(WORK, name)
    args = [MAKE_STORE, path, out, str(nshard), str(rate)] + (["i32"] if labels else [])
    subprocess.run(args, check=True)
    return out


ALIGN = read_align(os.path.join(DATA, "fixture.align"))
IDS = sorted(ALIGN)  # u00000 ... (make_store's ids)
SPEAKER = dict(l.split("\t")[:2] for l in open(os.path.join(DATA, "fixture.utts"), encoding="utf-8").read().split("\n") if l)
rng = np.random.default_rng(7)


def noisy_units(rate, k, noise, seed):
    """Units that follow the tonal phone at each frame centre, with a share `noise` of random ones."""
    r = np.random.default_rng(seed)
    phones = sorted({lab for segs in ALIGN.values() for _, _, lab in segs})
    unit_of = {p: i % k for i, p in enumerate(phones)}
    out = []
    for u in IDS:
        fp = frame_phones(ALIGN[u], rate)
        x = np.array([unit_of[p] for p in fp], dtype=np.int64)
        flip = r.random(len(x)) < noise
        x[flip] = r.integers(0, k, flip.sum())
        out.append(x)
    return out


def ref_purity(utt_units, rate, tonal, exclude=()):
    ys, zs = [], []
    for u, units in zip(IDS, utt_units):
        for lab, z in zip(frame_phones(ALIGN[u], rate), units):
            if base(lab) in exclude:
                continue
            ys.append(lab if tonal else base(lab))
            zs.append(int(z))
    ys, zs = np.array(ys), np.array(zs)
    phones, yi = np.unique(ys, return_inverse=True)
    units, zi = np.unique(zs, return_inverse=True)
    joint = np.zeros((len(phones), len(units)))
    np.add.at(joint, (yi, zi), 1)
    p = joint / joint.sum()
    py = p.sum(1)
    h = -(py[py > 0] * np.log(py[py > 0])).sum()
    return {"pnmi": mutual_info_score(yi, zi) / h, "phone_purity": p.max(0).sum(), "cluster_purity": p.max(1).sum()}


def close(name, got, want, tol=1e-9):
    if not math.isclose(got, want, rel_tol=tol, abs_tol=tol):
        sys.exit(f"FAIL: {name}: slex {got!r} vs reference {want!r}")


def case_units():
    k = 37
    utt_units = noisy_units(50, k, 0.3, 1)
    store = write_store("labels50", utt_units, 50, True)
    align = os.path.join(DATA, "fixture.align")
    outs = []
    for ranks in (1, 2, 3):
        out = os.path.join(WORK, f"units_r{ranks}")
        run(["units", "--labels", store, "--align", align, "--lang", "zh", "--out", out], ranks)
        outs.append(open(os.path.join(out, "metrics.json"), "rb").read())
    if len(set(outs)) != 1:
        sys.exit("FAIL: metrics.json differs between 1, 2 and 3 ranks")
    m = json.loads(outs[0])["languages"]["zh"]
    for tonal in (0, 1):
        ref = ref_purity(utt_units, 50, tonal)
        sfx = "_tonal" if tonal else ""
        for key in ref:
            close(key + sfx, m[key + sfx], ref[key])
    # Usage, runs, rate.
    allz = np.concatenate(utt_units)
    counts = np.bincount(allz, minlength=k)
    pz = counts[counts > 0] / counts.sum()
    close("perplexity", m["perplexity"], math.exp(-(pz * np.log(pz)).sum()))
    if m["units_used"] != int((counts > 0).sum()):
        sys.exit(f"FAIL: units_used {m['units_used']} vs {(counts > 0).sum()}")
    runs = sum(1 + int((np.diff(x) != 0).sum()) for x in utt_units)
    secs = sum(ALIGN[u][-1][1] for u in IDS) / 16000
    close("mean_run_length", m["mean_run_length"], len(allz) / runs)
    close("unit_rate_hz", m["unit_rate_hz"], runs / secs)
    # --exclude sil, at 100 Hz.
    u100 = noisy_units(100, k, 0.2, 2)
    s100 = write_store("labels100", u100, 100, True, nshard=4)
    out = os.path.join(WORK, "units_excl")
    run(["units", "--labels", s100, "--align", align, "--exclude", "sil", "--out", out, "--no-plots"], 2)
    m = json.load(open(os.path.join(out, "metrics.json")))
    ref = ref_purity(u100, 100, 0, exclude=("sil",))
    for key in ref:
        close("excl " + key, m["languages"]["fixture"][key], ref[key])
        close("top-level " + key, m[key], ref[key])
    # Two languages sharing a codebook: shared units and frames in units of the other language.
    half = len(IDS) // 2
    lang_a = [x for x in utt_units[:half]]
    lang_b = [(x + 5) % k for x in utt_units[half:]]
    sa = write_store("lang_a", lang_a, 50, True, nshard=2)
    sb = write_store("lang_b", lang_b, 50, True, nshard=2)
    # make_store names utterances u00000...: the second language's alignment is renamed to match.
    align_b = os.path.join(WORK, "lang_b.align")
    with open(align_b, "w") as f:
        for j, u in enumerate(IDS[half:]):
            for s, e, lab in ALIGN[u]:
                f.write(f"u{j:05d}\t{s}\t{e}\t{lab}\n")
    align_a = os.path.join(WORK, "lang_a.align")
    with open(align_a, "w") as f:
        for u in IDS[:half]:
            for s, e, lab in ALIGN[u]:
                f.write(f"{u}\t{s}\t{e}\t{lab}\n")
    out = os.path.join(WORK, "units_two")
    run(["units", "--labels", sa, "--align", align_a, "--lang", "en", "--labels", sb, "--align", align_b, "--lang",
         "zh", "--out", out], 3)
    m = json.load(open(os.path.join(out, "metrics.json")))
    ca = np.bincount(np.concatenate(lang_a), minlength=k)
    cb = np.bincount(np.concatenate(lang_b), minlength=k)
    qa, qb = ca / ca.sum(), cb / cb.sum()
    if m["shared"]["units_used_by_several"] != int(((ca > 0) & (cb > 0)).sum()):
        sys.exit("FAIL: shared units")
    dom_b = (qb > qa) & (cb > 0)  # ties go to the first language
    dom_a = (qa >= qb) & (ca > 0)
    close("en frames in zh units", m["languages"]["en"]["frames_in_units_of_other"], ca[dom_b].sum() / ca.sum())
    close("zh frames in en units", m["languages"]["zh"]["frames_in_units_of_other"], cb[dom_a].sum() / cb.sum())
    for f in ("usage_en.png", "cooc_en.png", "cooc_zh_tonal.png"):
        if open(os.path.join(out, f), "rb").read(8) != b"\x89PNG\r\n\x1a\n":
            sys.exit(f"FAIL: {f} is not a PNG")
    print("units: purities, PNMI (tonal too), usage, runs, shared units equal to the reference; 1/2/3 ranks identical")


def case_drift():
    a = noisy_units(50, 40, 0.3, 3)
    rng_perm = np.random.default_rng(4).permutation(45)
    b = [rng_perm[np.where(np.random.default_rng(5 + i).random(len(x)) < 0.15, (x + 1) % 40, x)] for i, x in enumerate(a)]
    sa, sb = write_store("drift_a", a, 50, True), write_store("drift_b", b, 50, True)
    outs = []
    for ranks in (1, 3):
        out = os.path.join(WORK, f"drift_r{ranks}")
        run(["drift", "--labels", sa, "--labels", sb, "--out", out], ranks)
        outs.append(open(os.path.join(out, "metrics.json"), "rb").read())
    if outs[0] != outs[1]:
        sys.exit("FAIL: drift metrics differ between 1 and 3 ranks")
    m = json.loads(outs[0])
    A, B = np.concatenate(a), np.concatenate(b)
    close("nmi", m["nmi"], normalized_mutual_info_score(A, B))
    close("changed", m["changed"], float((A != B).mean()))
    joint = np.zeros((A.max() + 1, B.max() + 1), dtype=np.int64)
    np.add.at(joint, (A, B), 1)
    r, c = linear_sum_assignment(-joint)
    close("changed_after_matching", m["changed_after_matching"], 1 - joint[r, c].sum() / len(A))
    print(f"drift: NMI {m['nmi']:.4f}, changed {m['changed']:.4f}, after matching {m['changed_after_matching']:.4f}: "
          "equal to sklearn/scipy")


# ---- ABX reference, written independently of slex ------------------------------------------


def ref_items(rate, frames_of, any_context=False):
    items = []
    for u in IDS:
        segs = [(s, e, base(l)) for s, e, l in ALIGN[u]]
        for j in range(0 if any_context else 1, len(segs) if any_context else len(segs) - 1):
            if segs[j][2] == "sil" or not any_context and "sil" in (segs[j - 1][2], segs[j + 1][2]):
                continue
            lo, hi = (segs[j][0], segs[j][1]) if any_context else (segs[j - 1][0], segs[j + 1][1])
            idx = [i for i in range(frames_of[u]) if lo <= i * HOP[rate] + 200 < hi]
            ctx = None if any_context else (segs[j - 1][2], segs[j + 1][2])
            if idx:
                items.append((u, idx[0], len(idx), segs[j][2], ctx, SPEAKER[u]))
    return items


def ref_dtw(d):
    n, m = d.shape
    cost = np.full((n, m), np.inf)
    steps = np.zeros((n, m))
    for i in range(n):
        for j in range(m):
            if i == 0 and j == 0:
                cost[i, j], steps[i, j] = d[0, 0], 1
                continue
            cands = []  # preference on ties: diagonal, up, left
            if i and j:
                cands.append((cost[i - 1, j - 1], steps[i - 1, j - 1]))
            if i:
                cands.append((cost[i - 1, j], steps[i - 1, j]))
            if j:
                cands.append((cost[i, j - 1], steps[i, j - 1]))
            best = min(c for c, _ in cands)
            c, s = next(x for x in cands if x[0] == best)
            cost[i, j], steps[i, j] = c + d[i, j], s + 1
    return cost[-1, -1] / steps[-1, -1]


def ref_abx(feats, items, units):
    def frames(it):
        return feats[it[0]][it[1]:it[1] + it[2]]

    cache = {}

    def dist(x, y):
        key = (x.ctypes.data, x.shape, y.ctypes.data, y.shape)
        if key not in cache:
            cache[key] = dist_uncached(x, y)
        return cache[key]

    def dist_uncached(x, y):
        if units:
            d = np.where(x[:, None] != y[None, :], 0.5, 0.0)
        else:
            xn = x / np.linalg.norm(x, axis=1, keepdims=True)
            yn = y / np.linalg.norm(y, axis=1, keepdims=True)
            d = np.arccos(np.clip(xn @ yn.T, -1, 1)) / np.pi
        return ref_dtw(d)

    groups = {}
    for it in items:
        groups.setdefault((it[4], it[5], it[3]), []).append(it)
    result = {}
    for across in (0, 1):
        pair_cells = {}
        for (ctx, spk, a), A in groups.items():
            for (ctx2, spk2, b), B in groups.items():
                if ctx2 != ctx or spk2 != spk or b == a:
                    continue
                xs = [A] if not across else [X for (c3, s3, p3), X in groups.items() if c3 == ctx and p3 == a and s3 != spk]
                for X in xs:
                    errs = []
                    for xi, x in enumerate(X):
                        for ai, at in enumerate(A):
                            if not across and ai == xi:
                                continue
                            dax = dist(frames(at), frames(x))
                            for bt in B:
                                dbx = dist(frames(bt), frames(x))
                                errs.append(1.0 if dax > dbx else 0.5 if dax == dbx else 0.0)
                    if errs:
                        pair_cells.setdefault((a, b), []).append(np.mean(errs))
        result[across] = np.mean([np.mean(v) for v in pair_cells.values()])
    return result[0], result[1]


def case_abx():
    dim = 6
    phones = sorted({base(l) for segs in ALIGN.values() for _, _, l in segs})
    r = np.random.default_rng(11)
    centre = {p: r.normal(size=dim) for p in phones}
    spk_shift = {s: r.normal(scale=0.8, size=dim) for s in set(SPEAKER.values())}
    feats, labels = {}, {}
    for u in IDS:
        fp = [base(p) for p in frame_phones(ALIGN[u], 50)]
        feats[u] = np.array([centre[p] + spk_shift[SPEAKER[u]] + r.normal(scale=1.2, size=dim) for p in fp])
        labels[u] = np.array([phones.index(p) % 9 if r.random() > 0.3 else r.integers(0, 9) for p in fp])
    fstore = write_store("abx_feats", [feats[u] for u in IDS], 50, False)
    lstore = write_store("abx_units", [labels[u] for u in IDS], 50, True)
    speakers = os.path.join(DATA, "fixture.utts")
    align = os.path.join(DATA, "fixture.align")
    items = ref_items(50, {u: len(feats[u]) for u in IDS})
    big = ["--max-size-group", "1000", "--max-x-across", "1000", "--max-items", "100000"]
    for store, ref_in, units in ((fstore, feats, False), (lstore, labels, True)):
        outs = []
        for ranks in ((1, 3) if not units else (1, 2)):
            out = os.path.join(WORK, f"abx_{'u' if units else 'f'}_r{ranks}")
            run(["abx", "--features", store, "--align", align, "--speakers", speakers, "--out", out] + big, ranks)
            outs.append(open(os.path.join(out, "metrics.json"), "rb").read())
        if len(set(outs)) != 1:
            sys.exit("FAIL: ABX metrics differ between rank counts")
        m = json.loads(outs[0])
        within, across = ref_abx(ref_in, items, units)
        close("abx_within " + ("units" if units else "features"), m["abx_within"], within, 1e-9)
        close("abx_across " + ("units" if units else "features"), m["abx_across"], across, 1e-9)
        if m["items"] != len(items):
            sys.exit(f"FAIL: {m['items']} items vs the reference's {len(items)}")
        print(f"abx ({'units' if units else 'features'}): within {m['abx_within']:.4f}, across {m['abx_across']:.4f}, "
              f"{m['triplets_within']} + {m['triplets_across']} triplets: equal to the reference")
    # Any context: phone items, context ignored (units, so DTW costs little).
    items_any = ref_items(50, {u: len(feats[u]) for u in IDS}, any_context=True)
    out = os.path.join(WORK, "abx_any")
    run(["abx", "--features", lstore, "--align", align, "--speakers", speakers, "--out", out, "--context", "any",
         "--max-size-group", "4", "--max-x-across", "1000", "--max-items", "100000"], 2)
    m = json.load(open(os.path.join(out, "metrics.json")))
    if m["items_before_subsampling"] != len(items_any):
        sys.exit(f"FAIL: any-context items {m['items_before_subsampling']} vs {len(items_any)}")
    # ... and its scores against the reference on the first 12 utterances (no subsampling).
    few = IDS[:12]
    few_align = os.path.join(WORK, "few.align")
    with open(few_align, "w") as f:
        for u in few:
            for s, e, lab in ALIGN[u]:
                f.write(f"{u}\t{s}\t{e}\t{lab}\n")
    few_store = write_store("abx_few", [labels[u] for u in few], 50, True, nshard=2)
    out = os.path.join(WORK, "abx_any_few")
    run(["abx", "--features", few_store, "--align", few_align, "--speakers", speakers, "--out", out, "--context",
         "any"] + big, 3)
    m = json.load(open(os.path.join(out, "metrics.json")))
    within, across = ref_abx(labels, [it for it in items_any if it[0] in few], True)
    close("abx_within any context", m["abx_within"], within, 1e-9)
    close("abx_across any context", m["abx_across"], across, 1e-9)
    print(f"abx any context: within {within:.4f}, across {across:.4f}: equal to the reference")
    # Subsampling: bounded, seeded, rank-independent.
    outs = []
    for ranks in (1, 2):
        out = os.path.join(WORK, f"abx_sub_r{ranks}")
        run(["abx", "--features", fstore, "--align", align, "--speakers", speakers, "--out", out, "--max-size-group",
             "2", "--max-x-across", "1", "--max-items", "150", "--seed", "3"], ranks)
        outs.append(open(os.path.join(out, "metrics.json"), "rb").read())
    m = json.loads(outs[0])
    if outs[0] != outs[1] or m["items"] != 150 or m["items_before_subsampling"] != len(items):
        sys.exit(f"FAIL: subsampled ABX: {m['items']} items of {m['items_before_subsampling']}, identical: {outs[0] == outs[1]}")
    print(f"abx subsampled: 150 of {len(items)} items, identical for 1 and 2 ranks")


def case_reports():
    align = os.path.join(DATA, "fixture.align")
    runs = []
    values = {}
    for sys_name, noise in (("mfcc", 0.5), ("hubert", 0.2)):
        for seed in (1, 2, 3):
            store = write_store(f"{sys_name}_{seed}", noisy_units(50, 30, noise, 100 * seed + int(noise * 10)), 50, True)
            out = os.path.join(WORK, f"run_{sys_name}_{seed}")
            run(["units", "--labels", store, "--align", align, "--lang", "zh", "--out", out, "--no-plots"])
            values.setdefault(sys_name, []).append(json.load(open(os.path.join(out, "metrics.json")))["pnmi"])
            runs.append(f"{sys_name}={out}")
    out = os.path.join(WORK, "compare")
    run(["compare"] + runs + ["--out", out])
    doc = json.load(open(os.path.join(out, "compare.json")))
    for row in doc["systems"]:
        v = values[row["name"]]
        col = row["columns"]["zh/pnmi"]
        close(f"{row['name']} mean", col["mean"], float(np.mean(v)))
        close(f"{row['name']} sd", col["sd"], float(np.std(v, ddof=1)))
    md = open(os.path.join(out, "compare.md")).read()
    if "| hubert | 3 |" not in md or "±" not in md:
        sys.exit("FAIL: compare.md lacks the system rows:\n" + md)
    png = open(os.path.join(out, "pnmi.png"), "rb").read()
    run(["compare"] + runs + ["--out", out])
    if open(os.path.join(out, "pnmi.png"), "rb").read() != png:
        sys.exit("FAIL: the same data gave another pnmi.png")
    # export-units, plain and deduplicated.
    units = noisy_units(50, 30, 0.4, 9)
    store = write_store("export", units, 50, True)
    for dedup in (0, 1):
        path = os.path.join(WORK, f"units{dedup}.txt")
        run(["export-units", "--labels", store, "--out", path] + (["--dedup"] if dedup else []), 2)
        lines = open(path).read().split("\n")[:-1]
        want = [" ".join(str(int(z)) for i, z in enumerate(x) if not dedup or i == 0 or z != x[i - 1]) for x in units]
        if lines != want:
            sys.exit(f"FAIL: export-units (dedup {dedup}) differs from the labels")
    # Training curves from a jsonl log.
    log = os.path.join(WORK, "train_log.jsonl")
    with open(log, "w") as f:
        for step in range(1, 51):
            f.write(json.dumps({"step": step, "loss": 5 / step, "loss_zh": 5.5 / step, "acc_masked": 1 - 1 / step,
                                "lr": 1e-4 * step}) + "\n")
    out = os.path.join(WORK, "curves")
    run(["curves", "--log", log, "--out", out])
    for f in ("curves_loss.png", "curves_accuracy.png", "curves_lr.png"):
        if open(os.path.join(out, f), "rb").read(4) != b"\x89PNG":
            sys.exit(f"FAIL: {f}")
    # --smooth 4: every loss and accuracy point the mean of its last 4 logged values (fewer at the
    # start; a source missing at a step is skipped), the learning rate as logged.
    with open(log, "a") as f:
        for step in range(51, 61):  # a step without loss_zh
            f.write(json.dumps({"step": step, "loss": 5 / step, "acc_masked": 1 - 1 / step, "lr": 1e-4 * step}) + "\n")
    smooth = os.path.join(WORK, "curves_smooth")
    run(["curves", "--log", log, "--out", smooth, "--smooth", "4"])
    def trailing(v):
        return [float(np.mean(v[max(0, i - 3):i + 1])) for i in range(len(v))]
    steps = np.arange(1, 61)
    want = {"curves_loss": [trailing(5 / steps), trailing(5.5 / steps[:50]) + [None] * 10],
            "curves_accuracy": [trailing(1 - 1 / steps)], "curves_lr": [list(1e-4 * steps)]}
    for name, cols in want.items():
        rows = [line.split() for line in open(os.path.join(smooth, name + ".dat")) if line.strip()]
        for c, col in enumerate(cols):
            got = [None if r[c + 1] in ("nan", "NaN", "?", "-nan") else float(r[c + 1]) for r in rows]
            if len(got) != len(col) or any((a is None) != (b is None) or (a is not None and abs(a - b) > 1e-6 * abs(b))
                                           for a, b in zip(got, col)):
                sys.exit(f"FAIL: --smooth 4: {name}.dat column {c + 1}: {got[:6]}... vs {col[:6]}...")
    print("reports: compare mean/sd equal to numpy, same PNG for the same data; export-units and curves")


def case_bad():
    align = os.path.join(DATA, "fixture.align")
    units = noisy_units(50, 20, 0.3, 1)
    store = write_store("good", units, 50, True)
    # Alignment that does not cover the labelled utterances: say how many and which.
    part = os.path.join(WORK, "part.align")
    with open(part, "w") as f:
        for u in IDS[:-4]:
            for s, e, lab in ALIGN[u]:
                f.write(f"{u}\t{s}\t{e}\t{lab}\n")
    p = run(["units", "--labels", store, "--align", part, "--out", os.path.join(WORK, "x")], 2, expect=4)
    if "4 of 60 utterance(s)" not in p.stderr or IDS[-1] not in p.stderr and IDS[-4] not in p.stderr:
        sys.exit("FAIL: missing alignments not named:\n" + p.stderr)
    # Drift of stores from different manifests.
    other = write_store("other", units[:-1], 50, True)
    p = run(["drift", "--labels", store, "--labels", other, "--out", os.path.join(WORK, "y")], 1, expect=4)
    if "same manifest" not in p.stderr:
        sys.exit("FAIL: drift of different manifests:\n" + p.stderr)
    # Mismatched label rates (drift and units).
    s100 = write_store("r100", noisy_units(100, 20, 0.3, 1), 100, True)
    p = run(["drift", "--labels", store, "--labels", s100, "--out", os.path.join(WORK, "z")], 1, expect=4)
    if "Hz" not in p.stderr:
        sys.exit("FAIL: drift of mismatched rates:\n" + p.stderr)
    p = run(["units", "--labels", store, "--align", align, "--lang", "a", "--labels", s100, "--align", align, "--lang",
             "b", "--out", os.path.join(WORK, "w")], 1, expect=4)
    if "one label rate" not in p.stderr:
        sys.exit("FAIL: units with mismatched rates:\n" + p.stderr)
    # Labels that do not fit the audio length of the alignment.
    short = write_store("short", [x[:-1] for x in units], 50, True)
    p = run(["units", "--labels", short, "--align", align, "--out", os.path.join(WORK, "v")], 1, expect=4)
    if "gives" not in p.stderr or "u0000" not in p.stderr:
        sys.exit("FAIL: wrong label counts:\n" + p.stderr)
    # An empty store; a feature store where labels are expected; bad command lines exit 2.
    empty = write_store("empty", [np.zeros(0)], 50, True, nshard=1)
    p = run(["units", "--labels", empty, "--align", align, "--out", os.path.join(WORK, "u")], 1, expect=4)
    if "no labelled frames" not in p.stderr:
        sys.exit("FAIL: empty store:\n" + p.stderr)
    feats = write_store("feats", [np.ones((len(x), 3)) for x in units], 50, False)
    p = run(["units", "--labels", feats, "--align", align, "--out", os.path.join(WORK, "t")], 1, expect=4)
    if "not a label store" not in p.stderr:
        sys.exit("FAIL: feature store as labels:\n" + p.stderr)
    run(["units", "--labels", store, "--out", os.path.join(WORK, "s")], 1, expect=2)
    run(["nonsense"], 1, expect=2)
    run(["drift", "--labels", store, "--out", os.path.join(WORK, "r")], 1, expect=2)
    print("bad inputs: uncovered utterances counted and named, other manifests, rates, lengths, empty store")


{"units": case_units, "drift": case_drift, "abx": case_abx, "reports": case_reports, "bad": case_bad}[CASE]()
