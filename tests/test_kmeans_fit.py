"""Stage-level tests of the paths real data takes through slex-kmeans and slex-label, each against
an independent reference (issue 9, "Tests that cannot see a bug"):

  label_blocks  shards larger than slex-label's block of rows: every label equals numpy's argmin of
                the exact float64 distances
  sklearn       a whole fit with fairseq's settings equals sklearn 1.2.1 MiniBatchKMeans.fit driven
                by slex's random draws: restart choice, greedy k-means++, the EWA inertia of every
                step, n_steps_ at the early stop, inertia and centres
  ranges        ranks whose data differ in range by 1000x: codebooks over 2 and 3 ranks equal the
                1-rank codebook bit for bit (mini-batch, k-means++, tol, Lloyd passes)

usage: /usr/bin/python3 tests/test_kmeans_fit.py CASE BIN_DIR MAKE_STORE "MPIEXEC ..." WORK_DIR"""
import json
import math
import os
import shutil
import subprocess
import sys

os.environ["OMP_NUM_THREADS"] = "1"  # sklearn's OpenMP threads crawl on a loaded machine
import h5py  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kmeans_reference import Xoshiro256ss  # noqa: E402
from stage_util import check, finish, mpi, read_label_store, run, write_store  # noqa: E402

CASE, BIN, MAKE_STORE, MPIEXEC, WORK = sys.argv[1:6]
KMEANS, LABEL = os.path.join(BIN, "slex-kmeans"), os.path.join(BIN, "slex-label")
WORK = os.path.join(WORK, "kmeans_fit_" + CASE)
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
QUIET = {"SLEX_PROGRESS_INTERVAL": "1000", "OPENBLAS_NUM_THREADS": "1"}


def store(name, utts, nshard=3, rate=50.0):
    return write_store(MAKE_STORE, WORK, name, utts, nshard, rate)


def codebook(path):
    with h5py.File(path, "r") as f:
        return {"centers": f["centers"][:], "history": f["inertia_history"][:],
                **{k: f.attrs[k] for k in f.attrs}}


def exact_argmin(x, centers, chunk=8192):
    """Labels by the float64 argmin of sum((x - c)^2), and a mask of rows whose two nearest
    centres are tied to 1e-12 (either label is right there)."""
    c = centers.astype(np.float64)
    labels, ties = np.empty(len(x), np.int64), np.zeros(len(x), bool)
    for i in range(0, len(x), chunk):
        xi = x[i:i + chunk].astype(np.float64)
        d = ((xi[:, None, :] - c[None]) ** 2).sum(-1)
        labels[i:i + chunk] = d.argmin(1)
        two = np.partition(d, 1, axis=1)[:, :2]
        ties[i:i + chunk] = two[:, 1] - two[:, 0] <= 1e-12 * two[:, 1]
    return labels, ties


# ---- label_blocks ------------------------------------------------------------------------------

LABEL_BLOCK_ROWS = 65536  # stages/label.c: rows assigned per sgemm pass


def case_label_blocks():
    """Two shards of ~100,000 frames (every real shard is larger than the label block), utterances
    of 300-3000 frames, so blocks end mid-shard at utterance boundaries."""
    rng = np.random.default_rng(90000)
    utts = [(rng.standard_normal((int(rng.integers(300, 3000)), 12)) * rng.uniform(0.5, 3)).astype(np.float32)
            for _ in range(120)]
    feats = store("feats", utts, nshard=2)
    idx = json.load(open(os.path.join(feats, "index.json")))
    sizes = [s["frames"] for s in idx["shards"]]
    check(min(sizes) > LABEL_BLOCK_ROWS, f"every test shard exceeds the {LABEL_BLOCK_ROWS}-row block: {sizes}")
    cb = os.path.join(WORK, "cb.h5")
    run([KMEANS, "--store", feats, "--k", "50", "--out", cb, "--n-init", "1", "--max-iter", "1", "--batch-size",
         "4000", "--final-inertia", "0"], env=QUIET)
    centers = codebook(cb)["centers"]
    for ranks in (1, 2):
        out, km = os.path.join(WORK, f"labels{ranks}"), os.path.join(WORK, f"km{ranks}")
        run(mpi(MPIEXEC, ranks, [LABEL, "--store", feats, "--codebook", cb, "--out", out, "--km", km]), env=QUIET)
        got = read_label_store(out)
        lines = open(os.path.join(km, "train.km")).read().split("\n")[:-1]
        check(len(got) == len(utts) and len(lines) == len(utts), f"{ranks} rank(s): one label row per utterance")
        wrong = ties = total = 0
        first_wrong = None
        for u, (x, lab, line) in enumerate(zip(utts, got, lines)):
            ref, tie = exact_argmin(x, centers)
            km_lab = np.array(line.split(), dtype=np.int64)
            bad = ((lab != ref) | (km_lab != ref)) & ~tie
            if bad.any() and first_wrong is None:
                first_wrong = (u, int(np.argmax(bad)))
            wrong += int(bad.sum())
            ties += int(tie.sum())
            total += len(x)
        check(wrong == 0, f"{ranks} rank(s): {wrong} of {total} labels differ from the float64 argmin "
                          f"(first: utterance {first_wrong})")
        print(f"label_blocks: {ranks} rank(s), shards of {sizes} frames: {total - wrong} of {total} labels equal "
              f"the float64 argmin ({ties} tied rows)", file=sys.stderr)


# ---- sklearn ----------------------------------------------------------------------------------


class SlexDraws(np.random.RandomState):
    """A RandomState whose draws are slex-kmeans' own (common/core/rng: xoshiro256** seeded by
    splitmix64, from the independent implementation of tests/kmeans_reference.py), consumed in
    the same order, so that sklearn's MiniBatchKMeans.fit samples exactly the frames slex samples:
    randint(0, n, size) is size x below(n).  k-means++ candidates: slex draws r = below(T) on the
    potentials in fixed point (q_i = d_i 2^e, T = sum q_i, candidate = first i whose running sum
    exceeds r); uniform() hands sklearn the value that makes its searchsorted on the float64
    cumsum pick that same row.  Exact when the potentials are integers (integer-valued frames):
    then the condition cumsum_i 2^e > r is cumsum_i >= floor(r / 2^e) + 1."""

    def __init__(self, seed):
        super().__init__(0)
        self.gen = Xoshiro256ss(seed)
        self.closest = None  # the potentials of the current k-means++ step (see stable_cumsum below)

    def randint(self, low, high=None, size=None, dtype=int):
        if high is None:
            low, high = 0, low
        if size is None:
            return low + self.gen.below(high - low)
        return low + np.array(self._below_many(high - low, size), dtype=np.int64)

    def _below_many(self, n, size):
        """size x self.gen.below(n), inlined (the fit draws ~700,000 of them)."""
        m64, limit = (1 << 64) - 1, ((1 << 64) // n) * n
        s0, s1, s2, s3 = self.gen.s
        out = []
        while len(out) < size:
            r = ((((s1 * 5) << 7 | (s1 * 5 & m64) >> 57) & m64) * 9) & m64
            t = (s1 << 17) & m64
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = ((s3 << 45) | (s3 >> 19)) & m64
            if r < limit:
                out.append(r % n)
        self.gen.s = [s0, s1, s2, s3]
        return out

    def uniform(self, low=0.0, high=1.0, size=None):
        return _TrialDraws(self, size)


class _TrialDraws:
    """uniform(size=trials) * current_pot in sklearn's _kmeans_plusplus: evaluated when
    searchsorted reads it, after stable_cumsum has recorded the potentials."""

    def __init__(self, rs, size):
        self.rs, self.size, self.vals = rs, size, None

    def __mul__(self, pot):
        return self

    def __array__(self, dtype=None):
        if self.vals is None:  # numpy may convert it more than once: draw once
            self.vals = self._draw()
        return self.vals.astype(dtype or np.float64)

    def _draw(self):
        d = self.rs.closest.ravel()
        check(np.all(d == np.round(d)), "k-means++ potentials are integers (the draws are exact)")
        e_max = math.frexp(float(d.max()))[1]
        e_n = 0
        while e_n < 62 and (1 << e_n) < len(d):
            e_n += 1
        e = 62 - e_max - e_n  # common/kmeans: slex_kmeans_fixed_exponent(max, n)
        check(e >= 1, f"fixed-point exponent {e} >= 1")
        total = sum(int(v) for v in d) << e
        vals = [float((self.rs.gen.below(total) >> e) if total else 0) + 0.5 for _ in range(self.size)]
        return np.array(vals if total else [0.0] * self.size)


def sklearn_fit(x, seed, **params):
    """sklearn MiniBatchKMeans(fairseq's settings, **params).fit(x) on slex's draws; returns the
    model and what fit does not keep: every init's centres and validation inertia, and the EWA
    inertia after every step."""
    import sklearn
    import sklearn.cluster._kmeans as skk
    from sklearn.cluster import MiniBatchKMeans
    # The hooks below follow sklearn 1.2's MiniBatchKMeans.fit and _kmeans_plusplus (Debian 12's).
    check(sklearn.__version__.startswith("1.2."), f"sklearn {sklearn.__version__}: the hooks are for 1.2")
    rs = SlexDraws(seed)
    log = {"inits": [], "init_inertia": [], "ewa": [], "improved_by": []}
    saved = (skk.stable_cumsum, skk._labels_inertia_threadpool_limit, MiniBatchKMeans._init_centroids,
             MiniBatchKMeans._mini_batch_convergence)

    def cumsum(arr, *a, **kw):
        rs.closest = np.asarray(arr)
        return saved[0](arr, *a, **kw)

    def labels_inertia(*a, **kw):
        out = saved[1](*a, **kw)
        log["init_inertia"].append(out[1])
        return out

    def init_centroids(self, *a, **kw):
        c = saved[2](self, *a, **kw)
        log["inits"].append(c.copy())
        return c

    def convergence(self, *a, **kw):
        before = self._ewa_inertia_min
        stop = saved[3](self, *a, **kw)
        if self._ewa_inertia is not None:
            log["ewa"].append(self._ewa_inertia)
            if before is not None:  # how close each improvement decision was
                log["improved_by"].append(abs(self._ewa_inertia - before) / before)
        return stop

    skk.stable_cumsum, skk._labels_inertia_threadpool_limit = cumsum, labels_inertia
    MiniBatchKMeans._init_centroids, MiniBatchKMeans._mini_batch_convergence = init_centroids, convergence
    try:
        # fairseq learn_kmeans.py get_km_model (FACTS.md section 4)
        settings = dict(init="k-means++", max_iter=100, batch_size=10000, tol=0.0, max_no_improvement=100,
                        n_init=20, reassignment_ratio=0.0, init_size=None, compute_labels=False)
        settings.update(params)
        km = MiniBatchKMeans(random_state=rs, **settings).fit(x)
    finally:
        (skk.stable_cumsum, skk._labels_inertia_threadpool_limit, MiniBatchKMeans._init_centroids,
         MiniBatchKMeans._mini_batch_convergence) = saved
    return km, log


def integer_clusters(seed, n_utts, k, dim, spacing=40, noise=3.0):
    """Utterances of integer-valued frames around k integer means: every k-means++ potential and
    validation inertia is an exact integer in slex (float32 sgemm) and in sklearn (float64)."""
    rng = np.random.default_rng(seed)
    means = rng.integers(-spacing, spacing + 1, (k, dim))
    utts = []
    for _ in range(n_utts):
        lab = rng.integers(0, k, int(rng.integers(100, 400)))
        utts.append((means[lab] + np.round(noise * rng.standard_normal((len(lab), dim)))).astype(np.float32))
    return utts


def case_sklearn():
    utts = integer_clusters(4, 100, 10, 8)
    x = np.concatenate(utts).astype(np.float64)
    feats = store("feats", utts)
    k, batch, seed = 10, 2000, 7
    common = ["--store", feats, "--k", str(k), "--batch-size", str(batch), "--seed", str(seed), "--final-inertia", "0"]
    km, log = sklearn_fit(x, seed, n_clusters=k, batch_size=batch)
    n_init = len(log["inits"])
    check(n_init == 20 and len(log["init_inertia"]) == n_init, f"sklearn ran {n_init} inits")
    best = int(np.argmin(log["init_inertia"]))  # first of the lowest, as fit keeps it
    # 1. The initialisation alone (no mini-batch step): the restart sklearn keeps, and its
    #    greedy k-means++ centres, exactly.
    cb0 = os.path.join(WORK, "init.h5")
    run([KMEANS] + common + ["--out", cb0, "--max-iter", "0"], env=QUIET)
    init = codebook(cb0)
    check(init["init_inertia"] == log["init_inertia"][best],
          f"validation inertia of the kept init: slex {init['init_inertia']!r}, sklearn {log['init_inertia'][best]!r} "
          f"(restart {best} of {n_init}; sklearn's range {min(log['init_inertia'])}..{max(log['init_inertia'])})")
    check(np.array_equal(init["centers"], log["inits"][best].astype(np.float32)),
          "k-means++ centres of the kept init equal sklearn's exactly")
    # 2. The whole fit: every step's EWA inertia, the early stop, inertia, counts, centres.
    cb = os.path.join(WORK, "fit.h5")
    run([KMEANS] + common + ["--out", cb, "--checkpoint-every", "1"], env=QUIET)
    fit = codebook(cb)
    n_steps = 100 * len(x) // batch
    check(km.n_steps_ < n_steps, f"sklearn stopped early ({km.n_steps_} of {n_steps} steps)")
    check(fit["steps"] == km.n_steps_ and fit["stop_reason"] == "no_improvement",
          f"n_steps_ at the early stop: slex {fit['steps']} ({fit['stop_reason']}), sklearn {km.n_steps_}")
    hist = fit["history"]
    ewa = {int(s): e for s, e, _ in hist if np.isfinite(e)}
    sk = {i + 2: e for i, e in enumerate(log["ewa"])}  # sklearn's first EWA is after step 2
    common_steps = sorted(set(ewa) & set(sk))
    check(len(common_steps) == len(sk) == km.n_steps_ - 1, f"EWA of every step ({len(common_steps)} vs {len(sk)})")
    rel = max(abs(ewa[s] - sk[s]) / sk[s] for s in common_steps) if common_steps else np.inf
    check(rel <= 1e-6, f"EWA inertia of every step: max relative difference {rel:.3g}")
    slex_inertia = ewa[max(ewa)] * len(x)  # sklearn with compute_labels=False: inertia_ = EWA * n
    check(abs(slex_inertia - km.inertia_) <= 1e-6 * km.inertia_, f"inertia {slex_inertia} vs sklearn {km.inertia_}")
    with h5py.File(cb, "r") as f:
        counts = f["counts"][:]
    check(np.array_equal(counts, km._counts.astype(np.int64)), "per-centre counts equal sklearn's")
    dc = np.abs(fit["centers"] - km.cluster_centers_).max()
    check(dc <= 1e-4, f"centres vs sklearn: max |diff| {dc:.3g}")
    print(f"sklearn: kept init {best} of {n_init} (validation inertia {init['init_inertia']:.0f}, sklearn's range "
          f"{min(log['init_inertia']):.0f}..{max(log['init_inertia']):.0f}), k-means++ centres equal; early stop at "
          f"step {fit['steps']} of {n_steps} (sklearn {km.n_steps_}); EWA max rel. diff {rel:.2g} (closest "
          f"improvement decision {min(log['improved_by']):.2g}); inertia {slex_inertia:.6g} vs {km.inertia_:.6g}; "
          f"centres max |diff| {dc:.2g}", file=sys.stderr)


# ---- ranges -----------------------------------------------------------------------------------


def slice_rows(n, rank, size, block=256):
    """common/kmeans slex_kmeans_slice: a rank's rows of a sample, in whole blocks of 256."""
    nb = (n + block - 1) // block
    return min(nb * rank // size * block, n), min(nb * (rank + 1) // size * block, n)


def case_ranges():
    """Most frames near 1, the last four 1000x larger: each rank's part of a pass over the frames
    in order (k-means++ on all frames, Lloyd passes, the final inertia), and about half of the
    mini-batch slices, have maxima 1000x apart, so an exponent of the exact sums taken from a
    rank's own maximum changes the sums.  Codebooks over 2 and 3 ranks must equal 1 rank's."""
    rng = np.random.default_rng(1000)
    means = rng.uniform(-1, 1, (6, 8))
    utts = []
    for _ in range(30):
        lab = rng.integers(0, 6, int(rng.integers(80, 120)))
        utts.append((means[lab] + 0.1 * rng.standard_normal((len(lab), 8))).astype(np.float32))
    utts.append((3000 * rng.uniform(-1, 1, (4, 8))).astype(np.float32))
    x = np.concatenate(utts)
    feats = store("ranges", utts, nshard=3)
    for size in (2, 3):
        peaks = [np.abs(x[lo:hi]).max() for lo, hi in (slice_rows(len(x), r, size) for r in range(size))]
        check(max(peaks) >= 1000 * min(peaks), f"{size} ranks: maxima of the ranks' parts {peaks} differ by 1000x")
    configs = {
        "mini-batch, k-means++ on all frames, Lloyd passes": ["--k", "8", "--batch-size", "1000", "--n-init", "3",
                                                             "--lloyd-passes", "2"],
        "drawn init sample, tol": ["--k", "8", "--batch-size", "500", "--init-size", "1200", "--n-init", "2",
                                   "--tol", "1e-4"],
        "Lloyd mode": ["--k", "8", "--init", "random", "--max-iter", "0", "--lloyd-passes", "5"],
    }
    for c, (name, args) in enumerate(configs.items()):
        got = []
        for ranks in (1, 2, 3):
            cb = os.path.join(WORK, f"cb{c}_{ranks}.h5")
            cmd = mpi(MPIEXEC, ranks, [KMEANS, "--store", feats, "--out", cb, "--seed", "3"] + args)
            try:
                run(cmd, env=QUIET, timeout=120)
            except subprocess.TimeoutExpired:
                check(False, f"{name}, {ranks} ranks: no result after 120 s")
            got.append(open(cb, "rb").read() if os.path.exists(cb) else None)
        check(got[0] is not None and got[1] == got[0], f"{name}: 2 ranks give the 1-rank codebook bit for bit")
        check(got[0] is not None and got[2] == got[0], f"{name}: 3 ranks give the 1-rank codebook bit for bit")
        if got[0] is not None:
            cb = codebook(os.path.join(WORK, f"cb{c}_1.h5"))
            print(f"ranges: {name}: {cb['steps']} steps ({cb['stop_reason']}), final inertia "
                  f"{cb['final_inertia']:.6g}; 2 and 3 ranks identical: {got[1] == got[0]}, {got[2] == got[0]}",
                  file=sys.stderr)


CASES = {"label_blocks": case_label_blocks, "sklearn": case_sklearn, "ranges": case_ranges}
CASES[CASE]()
finish("test_kmeans_fit " + CASE)
