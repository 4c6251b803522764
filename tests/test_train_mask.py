#!/usr/bin/python3
"""train/mask against fairseq's compute_mask_indices (fairseq/data/data_utils.py, static spans,
no padding, require_same_masks, num_mask_ver 2, idc_select_ver 1).

1. Exact: fairseq's algorithm re-typed below, step for step, with its numpy draws replaced by
   slex's generator (xoshiro256** seeded by splitmix64: kmeans_reference.py's independent
   implementation, which pins common/core/rng.c) consumed as the
   header of common/train/mask.h documents.  Every mask must be identical, bit for bit.
2. Distribution: the same algorithm with numpy's own generator (np.random.default_rng, as
   fairseq draws) against the C masks over many seeds: the per-row masked count and the
   frequency with which each frame is masked must agree within 5 standard errors.

usage: test_train_mask.py PATH/TO/train_mask_dump"""
import subprocess
import sys

import os

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmeans_reference import Xoshiro256ss  # noqa: E402



class SlexRng(Xoshiro256ss):
    """slex's generator (the independent implementation of tests/kmeans_reference.py) with
    numpy Generator's names."""

    def random(self):
        return self.uniform()

    def choice(self, pool, k):
        """np.random.Generator.choice(pool, k, replace=False) with slex's partial Fisher-Yates."""
        a = list(range(int(pool))) if np.ndim(pool) == 0 else [int(v) for v in pool]
        for j in range(k):
            r = j + self.below(len(a) - j)
            a[j], a[r] = a[r], a[j]
        return np.asarray(a[:k], dtype=np.int64)


def compute_mask_indices(shape, mask_prob, mask_length, min_masks, rngs):
    """fairseq's compute_mask_indices, static lengths, padding_mask all False.  rngs(i) gives
    row i's generator (fairseq: np.random.default_rng(None) per row); the cuts use the last
    row's generator, as fairseq's loop variable does."""
    bsz, all_sz = shape
    mask = np.full((bsz, all_sz), False)
    mask_idcs = []
    for i in range(bsz):
        rng = rngs(i)
        sz = all_sz
        num_mask = int(mask_prob * sz / float(mask_length) + rng.random())
        num_mask = max(min_masks, num_mask)
        lengths = np.full(num_mask, mask_length)
        min_len = min(lengths)
        if sz - min_len <= num_mask:
            min_len = sz - num_mask - 1
        mask_idc = rng.choice(sz - min_len, num_mask, replace=False) if isinstance(rng, np.random.Generator) \
            else rng.choice(sz - min_len, num_mask)
        mask_idc = np.asarray([mask_idc[j] + offset for j in range(len(mask_idc)) for offset in range(lengths[j])])
        mask_idc = np.unique(mask_idc[mask_idc < sz])
        if len(mask_idc) >= sz:
            raise ValueError("the entire sequence is masked")
        mask_idcs.append(mask_idc)
    target_len = min([len(m) for m in mask_idcs])
    for i, mask_idc in enumerate(mask_idcs):
        if len(mask_idc) > target_len:
            mask_idc = rng.choice(mask_idc, target_len, replace=False) if isinstance(rng, np.random.Generator) \
                else rng.choice(mask_idc, target_len)
        mask[i, mask_idc] = True
    return mask


def run_c(tool, configs):
    text = "".join(f"{s} {b} {t} {p!r} {l} {m}\n" for s, b, t, p, l, m in configs)
    out = subprocess.run([tool], input=text, capture_output=True, text=True, check=True).stdout.splitlines()
    res, i = [], 0
    for s, b, t, p, l, m in configs:
        head = out[i]
        i += 1
        if head.startswith("error"):
            res.append(head)
            continue
        rows = np.array([[ch == "1" for ch in out[i + r]] for r in range(b)])
        i += b
        res.append((int(head.split()[1]), rows))
    return res


def main():
    tool = sys.argv[1]
    failures = 0
    # 1. exact agreement with the same draws
    configs = []
    for seed in range(40):
        for (b, t, p, l) in [(1, 50, 0.8, 10), (4, 100, 0.8, 10), (3, 249, 0.65, 10), (8, 31, 0.5, 5),
                             (2, 12, 0.8, 10), (5, 20, 0.8, 10), (2, 7, 0.3, 3), (6, 400, 0.8, 10), (2, 3, 0.9, 1)]:
            configs.append((seed * 7919 + t, b, t, p, l, 2))
    configs += [(5, 2, 2, 0.8, 10, 2), (6, 1, 1, 0.5, 1, 2)]  # too short: every frame masked
    got = run_c(tool, configs)
    n_exact = n_err = 0
    for cfg, g in zip(configs, got):
        seed, b, t, p, l, m = cfg
        rng = SlexRng(seed)
        try:
            ref = compute_mask_indices((b, t), p, l, m, lambda i: rng)
        except ValueError:
            ref = None
        if ref is None:
            if not (isinstance(g, str) and "masked" in g):
                print(f"config {cfg}: fairseq raises (whole row masked), C gave {g if isinstance(g, str) else 'a mask'}")
                failures += 1
            n_err += 1
            continue
        if isinstance(g, str):
            print(f"config {cfg}: C failed: {g}")
            failures += 1
            continue
        c, rows = g
        if not np.array_equal(rows, ref):
            print(f"config {cfg}: masks differ\nC:\n{rows.astype(int)}\nref:\n{ref.astype(int)}")
            failures += 1
        if not (rows.sum(1) == c).all() or c != ref.sum(1)[0]:
            print(f"config {cfg}: count {c} vs rows {rows.sum(1)} ref {ref.sum(1)}")
            failures += 1
        n_exact += 1
    print(f"exact: {n_exact} masks compared, {n_err} expected errors")
    # 2. distribution against numpy's generator (fairseq's own draws)
    for (b, t, p, l) in [(4, 100, 0.8, 10), (3, 25, 0.8, 10), (2, 60, 0.5, 5)]:
        trials = 3000
        got = run_c(tool, [(1000003 * k + t, b, t, p, l, 2) for k in range(trials)])
        cm = np.stack([g[1] for g in got])  # (trials, b, t)
        gen = np.random.default_rng(12345 + t)
        rm = np.stack([compute_mask_indices((b, t), p, l, 2, lambda i: gen) for _ in range(trials)])
        cc, rc = cm.sum(2)[:, 0].astype(float), rm.sum(2)[:, 0].astype(float)
        se = np.sqrt(cc.var() / trials + rc.var() / trials) + 1e-12
        z = abs(cc.mean() - rc.mean()) / se
        fc, fr = cm.mean((0, 1)), rm.mean((0, 1))
        sef = np.sqrt((fc * (1 - fc) + fr * (1 - fr)) / (trials * b)) + 1e-3
        zf = np.abs(fc - fr) / sef
        print(f"B={b} T={t} p={p} len={l}: masked/row C {cc.mean():.3f} numpy {rc.mean():.3f} (z {z:.2f}); "
              f"per-frame max z {zf.max():.2f}")
        if z > 5 or zf.max() > 5:
            print("  distributions differ")
            failures += 1
    print(f"test_train_mask: {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
