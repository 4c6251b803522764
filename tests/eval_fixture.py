#!/usr/bin/env python3
"""Writes tests/data/eval/fixture.align and fixture.utts: 60 utterances (ids u00000.. as
tests/make_store.c names them) of 4 speakers, phones with tonal finals and pauses, in slex's
alignment format (docs/alignments.md).  Run once; the files are committed."""
import os
import random

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "eval")
os.makedirs(out, exist_ok=True)
r = random.Random(2026)
initials = ["b", "d", "k", "s", "m"]
finals = ["a+1", "a+3", "i+2", "i+4", "ou+1", "ou+3", "e"]
with open(os.path.join(out, "fixture.align"), "w") as fa, open(os.path.join(out, "fixture.utts"), "w") as fu:
    fa.write("# slex alignment v1: utt_id<TAB>start<TAB>end<TAB>label, 16 kHz samples, end exclusive\n")
    for u in range(60):
        uid = f"u{u:05d}"
        fu.write(f"{uid}\tspk{u % 4}\ttest fixture\n")
        segs = [("sil", r.randint(800, 3000))]
        for _ in range(r.randint(4, 9)):
            segs.append((r.choice(initials), r.randint(700, 1800)))
            segs.append((r.choice(finals), r.randint(1200, 3500)))
            if r.random() < 0.25:
                segs.append(("sil", r.randint(300, 1500)))
        segs.append(("sil", r.randint(800, 3000)))
        t = 0
        for lab, n in segs:
            fa.write(f"{uid}\t{t}\t{t + n}\t{lab}\n")
            t += n
