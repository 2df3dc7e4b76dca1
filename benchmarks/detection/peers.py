"""The peer tools on the benchmark's streams (runs in .bench-venv-detection).

    .bench-venv-detection/bin/python -m benchmarks.detection.peers PLAN.json OUT.json

PLAN.json is written by run.py: the workload folder (pools), the baseline file, the
streams (scenario, seed, onset, length) and the no-drift run. Every stream is rebuilt here
from the same seed by `scenarios.make_plan` and read from its JSON records, exactly the
bytes visionmon decodes; image records are mapped to the embedding the reference model
computed for those bytes (the pools, see workload.py), so Alibi Detect sees the embeddings
visionmon sees.

Peers, each on a window of the last 1,000 requests (about 200 sampled images) at every
checkpoint after the onset, stopping at its first alarm:
  evidently_default  Evidently's default column drift test (auto-selected by
                     `get_stattest`: with a reference over 1,000 rows, Jensen-Shannon on the
                     predicted class and normalised Wasserstein on the confidence, both at
                     0.1); alarm when either column drifts
  evidently_psi      Evidently's `psi` test with its default threshold 0.1 on the same columns
  alibi_mmd          Alibi Detect `MMDDrift` (PyTorch backend, p_val 0.01, 100 permutations,
                     RBF kernel with the bandwidth from the reference) on the embeddings of
                     the window's sampled images; reference = ALIBI_REFERENCE rows drawn
                     (seeded) from the baseline's MMD reference sample
  nannyml_cbpe       NannyML CBPE fitted on the baseline's labelled requests; estimated
                     accuracy of 1,000-request chunks after the onset (error, not an alarm)
  bbsd               Failing Loudly's black-box shift detection (Rabanser et al. 2019):
                     the reference model's softmax on the window's sampled images against
                     the baseline's, one two-sample KS test per class (scipy, asymptotic
                     p-values), Bonferroni over the classes at BBSD_ALPHA; only where the
                     pools carry the reference softmax (the real-image workload)
Nothing is faked: a peer that fails to import is recorded with the error.
"""

from __future__ import annotations

import json
import os
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.detection.scenarios import (
    CLEAN,
    MODEL,
    NO_DRIFT,
    Plan,
    Pool,
    Scenario,
    Serialiser,
    all_scenarios,
    covariate_families,
    load_pool,
    make_plan,
)

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")   # no analytics calls
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DELAY_WINDOW = 1_000
#: reference rows Alibi's permutation test gets: its cost grows with (window + reference)² x
#: permutations, so 500 (what this benchmark gave it before visionmon's reference grew to
#: 2,000 rows) keeps a test at ~0.15 s
ALIBI_REFERENCE = 500
#: torch's global seed before Alibi's detector is built (its permutation test draws from it)
ALIBI_SEED = 0
#: BBSD's family-wise level (the paper's 0.05), split over the classes by Bonferroni
BBSD_ALPHA = 0.05


class Stream:
    """A stream's records parsed back from JSON: per request the top-1 class, confidence,
    probabilities, latency; per sampled image its request index and embedding."""

    def __init__(self, plan: Plan, pools: dict[str, Pool], emb_of: dict[bytes, np.ndarray],
                 chunk: int = 10_000, softmax_of: dict[bytes, np.ndarray] | None = None
                 ) -> None:
        n = plan.n
        c = pools[CLEAN].probs.shape[1]
        self.probs = np.empty((n, c))
        self.latency = np.empty(n)
        img_idx: list[int] = []
        embs: list[np.ndarray] = []
        soft: list[np.ndarray] = []
        ser = Serialiser(plan, pools)
        for ch in ser.chunks(chunk):
            for k, line in enumerate(ch.predictions):
                obj = json.loads(line)
                self.probs[ch.start + k] = obj["probs"]
                self.latency[ch.start + k] = obj["latency_ms"]
            for headers, data in ch.images:
                h = dict(headers)
                img_idx.append(int(h["request_id"].decode()[1:]))
                embs.append(emb_of[data])
                if softmax_of:
                    soft.append(softmax_of[data])
        self.pred = np.argmax(self.probs, axis=1)
        #: (images, C) reference softmax of the sampled images, or None
        self.softmax = np.stack(soft) if soft else None
        self.conf = self.probs.max(axis=1)
        self.image_index = np.asarray(img_idx, dtype=np.int64)
        self.embeddings = np.stack(embs).astype(np.float32) if embs else np.empty((0, 1))

    def images_in(self, lo: int, hi: int) -> np.ndarray:
        a, b = np.searchsorted(self.image_index, [lo, hi])
        return self.embeddings[a:b]

    def softmax_in(self, lo: int, hi: int) -> np.ndarray | None:
        if self.softmax is None:
            return None
        a, b = np.searchsorted(self.image_index, [lo, hi])
        return self.softmax[a:b]


def bbsd_pvalue(baseline: np.ndarray, window: np.ndarray) -> float:
    """BBSD's Bonferroni-adjusted p-value: the smallest per-class two-sample KS p-value
    (asymptotic) of the window's softmax against the baseline's, times the classes (at most
    1); the shift is detected when it is below BBSD_ALPHA."""
    from scipy.stats import ks_2samp

    c = baseline.shape[1]
    p = min(float(ks_2samp(baseline[:, k], window[:, k], method="asymp").pvalue)
            for k in range(c))
    return min(1.0, p * c)


def versions() -> dict[str, str]:
    out = {}
    for name in ("evidently", "alibi-detect", "nannyml", "torch", "pandas", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class Peers:
    """The peer detectors, each built once on the baseline."""

    def __init__(self, ref: Stream, ref_emb: np.ndarray, labelled: np.ndarray,
                 ref_labels: np.ndarray) -> None:
        self.errors: dict[str, str] = {}
        self.seconds: dict[str, list[float]] = {}
        self.ref = ref
        if ref.softmax is None:
            self.errors["bbsd"] = "the pools carry no reference softmax (digits, Fashion-MNIST)"
        try:
            import pandas as pd
            from evidently.legacy.calculations.stattests import get_stattest, psi_stat_test
            from evidently.legacy.core import ColumnType

            self.pd = pd
            self.cat, self.num = ColumnType.Categorical, ColumnType.Numerical
            self.get_stattest, self.psi = get_stattest, psi_stat_test
            self.ref_cols = {"class": pd.Series(ref.pred), "confidence": pd.Series(ref.conf),
                             "latency": pd.Series(ref.latency)}
        except Exception as err:  # reported in the output, never faked
            self.errors["evidently"] = f"{type(err).__name__}: {err}"
        try:
            import torch
            from alibi_detect.cd import MMDDrift

            torch.set_num_threads(1)
            # its permutations draw from torch's global generator: seeded, so that a run
            # repeats (the streams are replayed in a fixed order)
            torch.manual_seed(ALIBI_SEED)
            self.mmd = MMDDrift(ref_emb.astype(np.float32), backend="pytorch", p_val=0.01,
                                n_permutations=100, device="cpu")
        except Exception as err:
            self.errors["alibi-detect"] = f"{type(err).__name__}: {err}"
        try:
            import nannyml as nml
            import pandas as pd

            cols = {f"p{k}": ref.probs[labelled, k] for k in range(ref.probs.shape[1])}
            frame = pd.DataFrame({**cols, "y_pred": ref.pred[labelled], "y_true": ref_labels})
            self.cbpe = nml.CBPE(
                y_pred_proba={k: f"p{k}" for k in range(ref.probs.shape[1])}, y_pred="y_pred",
                y_true="y_true", problem_type="classification_multiclass",
                metrics=["accuracy"], chunk_size=DELAY_WINDOW)
            t = time.perf_counter()
            self.cbpe.fit(frame)
            self.seconds["nannyml_cbpe_fit"] = [time.perf_counter() - t]
        except Exception as err:
            self.errors["nannyml"] = f"{type(err).__name__}: {err}"

    def _timed(self, name: str, t: float) -> None:
        self.seconds.setdefault(name, []).append(time.perf_counter() - t)

    def evidently(self, s: Stream, lo: int, hi: int, latency: bool = False
                  ) -> tuple[bool, bool] | None:
        """(default test alarm, psi alarm) on class and confidence (and latency)."""
        if "evidently" in self.errors:
            return None
        pd = self.pd
        t = time.perf_counter()
        cur = {"class": pd.Series(s.pred[lo:hi]), "confidence": pd.Series(s.conf[lo:hi])}
        kinds = {"class": self.cat, "confidence": self.num}
        if latency:
            cur["latency"] = pd.Series(s.latency[lo:hi])
            kinds["latency"] = self.num
        default = False
        for col, kind in kinds.items():
            test = self.get_stattest(self.ref_cols[col], cur[col], kind, None)
            default |= bool(test(self.ref_cols[col], cur[col], kind, None).drifted)
        self._timed("evidently_default", t)
        t = time.perf_counter()
        psi = False
        for col, kind in kinds.items():
            psi |= bool(self.psi(self.ref_cols[col], cur[col], kind, None).drifted)
        self._timed("evidently_psi", t)
        return default, psi

    def alibi(self, emb: np.ndarray, key: str = "alibi_mmd") -> bool | None:
        if "alibi-detect" in self.errors or emb.shape[0] < 2:
            return None
        t = time.perf_counter()
        out = self.mmd.predict(emb.astype(np.float32))
        self._timed(key, t)
        return bool(out["data"]["is_drift"])

    def time_alibi_reference(self, sample: np.ndarray, window: np.ndarray, key: str,
                             repeats: int = 3) -> None:
        """Seconds of `MMDDrift.predict` with the whole of `sample` as its reference (what
        the bigger reference would cost Alibi; timed only, its verdicts are not used)."""
        if "alibi-detect" in self.errors:
            return
        from alibi_detect.cd import MMDDrift

        big = MMDDrift(sample.astype(np.float32), backend="pytorch", p_val=0.01,
                       n_permutations=100, device="cpu")
        big.predict(window.astype(np.float32))   # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            big.predict(window.astype(np.float32))
            self._timed(key, t)

    def bbsd(self, s: Stream, lo: int, hi: int, key: str = "bbsd") -> float | None:
        """BBSD's adjusted p-value on the images of requests [lo, hi), None where it does
        not run (no softmax in the pools, fewer than 2 images)."""
        window = s.softmax_in(lo, hi)
        if "bbsd" in self.errors or window is None or window.shape[0] < 2:
            return None
        assert self.ref.softmax is not None
        t = time.perf_counter()
        p = bbsd_pvalue(self.ref.softmax, window)
        self._timed(key, t)
        return p

    def cbpe_estimates(self, s: Stream, lo: int, hi: int) -> list[float] | None:
        if "nannyml" in self.errors:
            return None
        pd = self.pd
        k = s.probs.shape[1]
        frame = pd.DataFrame({**{f"p{j}": s.probs[lo:hi, j] for j in range(k)},
                              "y_pred": s.pred[lo:hi]})
        t = time.perf_counter()
        res = self.cbpe.estimate(frame).filter(period="analysis").to_df()
        self._timed("nannyml_cbpe", t)
        return [float(v) for v in res[("accuracy", "value")].to_numpy()]


def run_delay(peers: Peers, s: Stream, plan: Plan, chunk: int) -> dict[str, Any]:
    """First alarm of each peer after the onset (requests and images after it)."""
    onset, n = plan.onset, plan.n
    kind = plan.scenario.kind
    out: dict[str, Any] = {"scenario": plan.scenario.name, "seed": plan.seed}
    cum_img = np.searchsorted(s.image_index, np.arange(n + 1))
    pending = {"evidently_default", "evidently_psi"}
    # images are unchanged by construction in these kinds: alibi only raises false alarms
    if kind in ("covariate", "label_shift"):
        pending.add("alibi_mmd")
        if "bbsd" not in peers.errors:
            pending.add("bbsd")
            out["bbsd_p"] = []   # BBSD's p-value at every reading (the equal-rate delays)
    for name in pending:
        out[name] = None
    for stop in range(onset + chunk, n + 1, chunk):
        lo = max(0, stop - DELAY_WINDOW)
        after = (stop - onset, int(cum_img[stop] - cum_img[onset]))
        if {"evidently_default", "evidently_psi"} & pending:
            ev = peers.evidently(s, lo, stop, latency=kind == "latency")
            if ev is not None:
                for name, fired in zip(("evidently_default", "evidently_psi"), ev, strict=True):
                    if fired and name in pending:
                        out[name] = after
                        pending.discard(name)
        if "alibi_mmd" in pending:
            fired = peers.alibi(s.images_in(lo, stop))
            if fired:
                out["alibi_mmd"] = after
                pending.discard("alibi_mmd")
        if "bbsd_p" in out:   # read to the end: the equal-rate delays need every reading
            p = peers.bbsd(s, lo, stop)
            out["bbsd_p"].append([after[0], after[1], 1.0 if p is None else p])
            if p is not None and p < BBSD_ALPHA and "bbsd" in pending:
                out["bbsd"] = after
                pending.discard("bbsd")
        if not pending and "bbsd_p" not in out:
            break
    if kind == "covariate" and n - onset >= DELAY_WINDOW:
        est = peers.cbpe_estimates(s, onset, onset + (n - onset) // DELAY_WINDOW * DELAY_WINDOW)
        if est is not None:
            correct = (s.pred == plan.label)[onset:]
            realized = [float(correct[a:a + DELAY_WINDOW].mean())
                        for a in range(0, len(est) * DELAY_WINDOW, DELAY_WINDOW)]
            out["cbpe"] = {"estimate": est, "realized": realized}
    return out


def run_false_alarms(peers: Peers, s: Stream, max_windows: dict[str, int],
                     sizes: dict[str, int], alibi_max: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, size in sizes.items():
        rows = []
        for k in range(min(max_windows.get(name, 0), s.pred.size // size)):
            lo, hi = k * size, (k + 1) * size
            ev = peers.evidently(s, lo, hi)
            row: dict[str, Any] = {}
            if ev is not None:
                row["evidently_default"], row["evidently_psi"] = ev
            if k < alibi_max.get(name, 0):
                row["alibi_mmd"] = peers.alibi(s.images_in(lo, hi), f"alibi_mmd_{name}")
            p = peers.bbsd(s, lo, hi, f"bbsd_{name}")
            if p is not None:
                row["bbsd"] = p < BBSD_ALPHA
                row["bbsd_p"] = p
            rows.append(row)
        out[name] = rows
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    t0 = time.perf_counter()
    folder = Path(spec["workload"])
    variants = [p.name[len("pool-"):-len(".npz")] for p in folder.glob("pool-*.npz")]
    pools = {v: load_pool(folder / f"pool-{v}.npz") for v in variants}
    emb_of: dict[bytes, np.ndarray] = {}
    softmax_of: dict[bytes, np.ndarray] = {}
    for pool in pools.values():
        for j, data in enumerate(pool.images):
            emb_of.setdefault(data, pool.embeddings[j])
            if pool.ref_probs is not None:
                softmax_of.setdefault(data, pool.ref_probs[j])
    b = spec["baseline"]
    model = spec.get("model", MODEL)
    base_plan = make_plan(pools, NO_DRIFT, b["seed"], b["n"], b["n"],
                          label_fraction=b["label_fraction"], model=model)
    ref = Stream(base_plan, pools, emb_of, softmax_of=softmax_of)
    baseline_file = json.loads(Path(b["path"]).read_text())
    sample = np.asarray(baseline_file["embedding"]["sample"], dtype=np.float32)
    take = np.random.default_rng(0).choice(sample.shape[0], size=min(ALIBI_REFERENCE,
                                                                   sample.shape[0]),
                                           replace=False)
    ref_emb = sample[np.sort(take)]
    labelled = np.flatnonzero(base_plan.labelled)
    peers = Peers(ref, ref_emb, labelled, base_plan.label[labelled].astype(np.int64))
    if sample.shape[0] > ref_emb.shape[0]:
        window = sample[np.random.default_rng(1).choice(sample.shape[0], size=200)]
        peers.time_alibi_reference(sample, window, f"alibi_mmd_100s_ref{sample.shape[0]}")
    scenarios: dict[str, Scenario] = {
        sc.name: sc for sc in all_scenarios(covariate=covariate_families(spec))}
    delays = []
    for st in spec["streams"]:
        kw = {}
        if st.get("image_sampling") is not None:
            kw = {"image_sampling": st["image_sampling"], "label_fraction": st["label_fraction"]}
        plan = make_plan(pools, scenarios[st["scenario"]], st["seed"], st["onset"], st["n"],
                         model=model, **kw)
        stream = Stream(plan, pools, emb_of, softmax_of=softmax_of)
        delays.append(run_delay(peers, stream, plan, spec["chunk"]))
    fa = spec["false_alarms"]
    fa_plan = make_plan(pools, NO_DRIFT, fa["seed"], fa["n"], fa["n"], model=model)
    fa_stream = Stream(fa_plan, pools, emb_of, softmax_of=softmax_of)
    false_alarms = run_false_alarms(peers, fa_stream, fa["max_windows"],
                                    fa["sizes"], fa["alibi_max_windows"])
    result = {"versions": versions(), "errors": peers.errors,
              "seconds": {k: {"calls": len(v), "mean": float(np.mean(v)),
                              "total": float(np.sum(v))} for k, v in peers.seconds.items()},
              "delays": delays, "false_alarms": false_alarms,
              "wall_seconds": time.perf_counter() - t0}
    out = Path(argv[1])
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
