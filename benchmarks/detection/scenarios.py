"""Scenarios and their event streams, in the event contract (docs/events.md).

numpy and the standard library only: this module runs both in .venv (visionmon) and in
.bench-venv-detection (the peers), and both read the same bytes from it.

A stream is planned once from a seed (`make_plan`: every random draw of the whole stream,
vectorised, so the result does not depend on how it is later cut into chunks) and then
serialised chunk by chunk (`chunk`) into
  predictions  one JSON object per request: request_id, ts, model, version, probs, latency_ms
  images       the sampled requests' encoded PNG bytes with the contract's headers
               (request_id, model, version, ts, content-type), as on the `images` topic
  feedback     one JSON object per label: request_id, label, ts (LABEL_DELAY_S later)

Event time: REQUEST_RATE requests per second from T0, request i at T0 + (i + 0.5) / rate
(the half step keeps every event off a window-slice boundary). Each request draws one test
image from a pool (with replacement: the digits pool has 898 images, Fashion-MNIST's 2,000, see
workload.py)
and serves the production model's softmax for that image, precomputed per pool variant.
Before the onset the clean pool is used; from the onset on, the scenario's change applies.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "digits"             # the served model's name in the records (the data set's name)
T0 = 1_800_000_000.0
REQUEST_RATE = 10.0          # requests per second of event time
IMAGE_SAMPLING = 0.2         # share of requests whose image is sampled to the images topic
LABEL_FRACTION = 0.3         # share of requests that later receive a ground-truth label
LABEL_DELAY_S = 30.0         # seconds from prediction to label
LATENCY_MEDIAN_MS = 40.0     # served latency: log-normal around this median
LATENCY_SIGMA = 0.3
CLEAN = "clean"
BAD_CLASS, BAD_CLASS_AS = 3, 8   # bad version "one class wrong": every 3 is served as 8

#: covariate shifts: family -> (unit, level at severities 1..5); workload.py applies them
COVARIATE: dict[str, tuple[str, tuple[float, ...]]] = {
    "brightness": ("pixel multiplier", (0.85, 0.7, 0.55, 0.4, 0.25)),
    "contrast": ("contrast factor", (0.8, 0.6, 0.45, 0.3, 0.15)),
    "colour_balance": ("blue gain (red 1 + (1 - blue) / 2)", (0.9, 0.8, 0.7, 0.6, 0.5)),
    "blur": ("Gaussian radius, px of 32", (0.4, 0.7, 1.0, 1.5, 2.0)),
    "noise": ("Gaussian sd, of 255", (8.0, 16.0, 28.0, 42.0, 60.0)),
    "rotation": ("degrees, random sign", (5.0, 10.0, 15.0, 25.0, 40.0)),
}
#: other scenarios: family -> (kind, unit, levels)
OTHER: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "prior_shift": ("label_shift", "extra share of class zero", (0.05, 0.1, 0.2, 0.35, 0.5)),
    "bad_version_random": ("model", "share of predictions wrong", (0.02, 0.05, 0.1, 0.2, 0.4)),
    "bad_version_class": ("model", f"class {BAD_CLASS} served as class {BAD_CLASS_AS}", (1.0,)),
    "label_noise": ("labels", "share of labels wrong", (0.05, 0.1, 0.2, 0.3, 0.5)),
    "latency": ("latency", "latency multiplier", (1.25, 1.5, 2.0, 3.0, 5.0)),
}


@dataclass(frozen=True, slots=True)
class Scenario:
    family: str
    kind: str       # none, covariate, label_shift, model, labels, latency
    severity: int   # 1..5; 0 for no drift; bad_version_class has the single severity 3
    level: float
    unit: str

    @property
    def name(self) -> str:
        return self.family if self.kind == "none" else f"{self.family}-s{self.severity}"

    @property
    def variant(self) -> str:
        """Pool variant served after the onset."""
        return self.name if self.kind == "covariate" else CLEAN


NO_DRIFT = Scenario("no_drift", "none", 0, 0.0, "")


Families = Mapping[str, tuple[str, Sequence[float]]]


def covariate_families(plan: Mapping[str, Any] | None) -> dict[str, tuple[str, tuple[float, ...]]]:
    """The covariate shift families of a run: those its plan names (the real-image workload's
    corruptions), else the digits' `COVARIATE`."""
    fams = (plan or {}).get("covariate")
    if not fams:
        return dict(COVARIATE)
    return {f: (str(unit), tuple(float(v) for v in levels)) for f, (unit, levels) in fams.items()}


def all_scenarios(severities: Sequence[int] = (1, 2, 3, 4, 5),
                  covariate: Families | None = None) -> list[Scenario]:
    out = []
    for family, (unit, levels) in (COVARIATE if covariate is None else covariate).items():
        out += [Scenario(family, "covariate", s, levels[s - 1], unit) for s in severities]
    for family, (kind, unit, levels) in OTHER.items():
        if len(levels) == 1:
            out.append(Scenario(family, kind, 3, levels[0], unit))
        else:
            out += [Scenario(family, kind, s, levels[s - 1], unit) for s in severities]
    return out


# --- pools --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Pool:
    """One pool variant: test images (possibly corrupted), as PNG bytes, with what the
    production model serves for them and what the reference model's intake and model
    computed from the same bytes (workload.py)."""

    labels: np.ndarray        # (N,) true class
    probs: np.ndarray         # (N, C) production softmax, float64
    images: list[bytes]       # PNG bytes
    embeddings: np.ndarray    # (N, D) float32, reference model embedding of those bytes
    ref_pred: np.ndarray      # (N,) reference model top-1
    ref_conf: np.ndarray      # (N,)
    features: np.ndarray      # (N, F) intake input features
    #: (N, C) float32 reference model softmax (what BBSD tests); None in the digits pools
    ref_probs: np.ndarray | None = None

    @property
    def top(self) -> np.ndarray:
        return np.argmax(self.probs, axis=1)


def save_pool(path: Path, pool: Pool) -> None:
    offsets = np.cumsum([0] + [len(b) for b in pool.images]).astype(np.int64)
    data = np.frombuffer(b"".join(pool.images), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, labels=pool.labels, probs=pool.probs, png_data=data, png_offsets=offsets,
             embeddings=pool.embeddings, ref_pred=pool.ref_pred, ref_conf=pool.ref_conf,
             features=pool.features,
             **({} if pool.ref_probs is None else {"ref_probs": pool.ref_probs}))
    tmp.replace(path)


def load_pool(path: Path) -> Pool:
    with np.load(path) as z:
        data = z["png_data"].tobytes()
        off = z["png_offsets"]
        images = [data[int(a):int(b)] for a, b in itertools.pairwise(off.tolist())]
        return Pool(z["labels"], z["probs"].astype(np.float64), images, z["embeddings"],
                    z["ref_pred"], z["ref_conf"], z["features"],
                    z["ref_probs"] if "ref_probs" in z.files else None)


# --- plans ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """Every draw of one stream. Index i is request i; arrays have one entry per request."""

    scenario: Scenario
    seed: int
    onset: int                  # first request index after the change (n: never)
    n: int
    pool_index: np.ndarray      # (n,) int32 image in the pool
    post: np.ndarray            # (n,) bool, served from the scenario's pool/version
    label: np.ndarray           # (n,) int8 true class
    pred: np.ndarray            # (n,) int8 served top-1 (after a bad version's fault)
    swap: np.ndarray            # (n,) int8 class whose probability the top class swaps with
    latency_ms: np.ndarray      # (n,) float32
    sampled: np.ndarray         # (n,) bool, image sent to the images topic
    labelled: np.ndarray        # (n,) bool, a label arrives LABEL_DELAY_S later
    fed_label: np.ndarray       # (n,) int8 the label sent (differs from `label` under noise)
    model: str = MODEL          # the served model's name in every record

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.label

    def version(self, i: int) -> str:
        return "v2" if self.scenario.kind == "model" and self.post[i] else "v1"

    def ts(self, i: int | np.ndarray) -> np.ndarray | float:
        return T0 + (np.asarray(i) + 0.5) / REQUEST_RATE


def _seed(scenario: Scenario, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(scenario.name.encode())])


def make_plan(pools: dict[str, Pool], scenario: Scenario, seed: int, onset: int, n: int,
              label_fraction: float = LABEL_FRACTION,
              image_sampling: float = IMAGE_SAMPLING, model: str = MODEL) -> Plan:
    """Draw a stream of n requests; the change starts at request `onset`."""
    rng = _seed(scenario, seed)
    clean = pools[CLEAN]
    post = np.arange(n) >= onset
    n_pool = clean.labels.size
    idx = rng.integers(0, n_pool, size=n).astype(np.int32)
    u_prior = rng.random(n)
    if scenario.kind == "label_shift":
        zeros = np.flatnonzero(clean.labels == 0)
        extra = post & (u_prior < scenario.level)
        idx[extra] = zeros[rng.integers(0, zeros.size, size=int(extra.sum()))]
    label = clean.labels[idx].astype(np.int8)
    top = np.where(post, pools[scenario.variant].top[idx], clean.top[idx]).astype(np.int8)
    swap = np.full(n, -1, dtype=np.int8)
    u_fault = rng.random(n)
    other = rng.integers(1, clean.probs.shape[1], size=n)
    if scenario.family == "bad_version_random":
        hit = post & (u_fault < scenario.level)
        swap[hit] = ((top[hit] + other[hit]) % clean.probs.shape[1]).astype(np.int8)
    elif scenario.family == "bad_version_class":
        swap[post & (top == BAD_CLASS)] = BAD_CLASS_AS
    pred = np.where(swap >= 0, swap, top).astype(np.int8)
    latency = np.exp(rng.normal(np.log(LATENCY_MEDIAN_MS), LATENCY_SIGMA, size=n))
    if scenario.kind == "latency":
        latency = np.where(post, latency * scenario.level, latency)
    sampled = rng.random(n) < image_sampling
    labelled = rng.random(n) < label_fraction
    fed = label.copy()
    u_noise = rng.random(n)
    if scenario.kind == "labels":
        noisy = post & (u_noise < scenario.level)
        fed[noisy] = ((label[noisy] + other[noisy]) % clean.probs.shape[1]).astype(np.int8)
    return Plan(scenario, seed, onset, n, idx, post, label, pred, swap,
                latency.astype(np.float32), sampled, labelled, fed, model)


# --- serialising ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chunk:
    """Requests [start, stop): their prediction records, the sampled images (headers,
    bytes) and the feedback records whose labels arrive in this stretch of event time."""

    start: int
    stop: int
    predictions: list[bytes]
    images: list[tuple[list[tuple[str, bytes]], bytes]]
    feedback: list[bytes]
    image_index: np.ndarray      # request index of every image, in order


class Serialiser:
    """Turns a plan into event-contract records; the probs text of each pool image is
    formatted once."""

    def __init__(self, plan: Plan, pools: dict[str, Pool]) -> None:
        self.plan = plan
        self.pre = pools[CLEAN]
        self.post = pools[plan.scenario.variant]
        self._text: dict[tuple[bool, int, int], str] = {}
        self.label_delay = round(LABEL_DELAY_S * REQUEST_RATE)

    def _probs(self, post: bool, j: int, swap: int) -> str:
        key = (post, j, swap)
        text = self._text.get(key)
        if text is None:
            p = (self.post if post else self.pre).probs[j].copy()
            if swap >= 0:
                top = int(np.argmax(p))
                p[top], p[swap] = p[swap], p[top]
            p = np.round(p, 6)
            text = ",".join(repr(float(v)) for v in p.tolist())
            self._text[key] = text
        return text

    def chunk(self, start: int, stop: int) -> Chunk:
        plan = self.plan
        stop = min(stop, plan.n)
        preds: list[bytes] = []
        images: list[tuple[list[tuple[str, bytes]], bytes]] = []
        image_index = []
        for i in range(start, stop):
            post = bool(plan.post[i])
            j = int(plan.pool_index[i])
            rid = f"r{i:08d}"
            ts = f"{T0 + (i + 0.5) / REQUEST_RATE:.3f}"
            version = plan.version(i)
            probs = self._probs(post, j, int(plan.swap[i]))
            preds.append(
                f'{{"request_id":"{rid}","ts":{ts},"model":"{plan.model}","version":"{version}",'
                f'"probs":[{probs}],"latency_ms":{float(plan.latency_ms[i]):.3f}}}'.encode())
            if plan.sampled[i]:
                headers = [("request_id", rid.encode()), ("model", plan.model.encode()),
                           ("version", version.encode()), ("ts", ts.encode()),
                           ("content-type", b"image/png")]
                images.append((headers, (self.post if post else self.pre).images[j]))
                image_index.append(i)
        feedback = []
        lo, hi = max(0, start - self.label_delay), max(0, stop - self.label_delay)
        for i in np.flatnonzero(plan.labelled[lo:hi]) + lo:
            ts = T0 + (i + 0.5) / REQUEST_RATE + LABEL_DELAY_S
            feedback.append(f'{{"request_id":"r{i:08d}","label":{int(plan.fed_label[i])},'
                            f'"ts":{ts:.3f}}}'.encode())
        return Chunk(start, stop, preds, images, feedback,
                     np.asarray(image_index, dtype=np.int64))

    def chunks(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        end = self.plan.n if stop is None else min(stop, self.plan.n)
        for a in range(start, end, size):
            yield self.chunk(a, min(a + size, end))


def write_jsonl(plan: Plan, pools: dict[str, Pool], folder: Path) -> None:
    """Dump a whole stream as three JSON-lines files (images as base64 with headers)."""
    import base64
    import json

    folder.mkdir(parents=True, exist_ok=True)
    ser = Serialiser(plan, pools)
    with (open(folder / "predictions.jsonl", "wb") as fp, open(folder / "images.jsonl", "w") as fi,
          open(folder / "feedback.jsonl", "wb") as ff):
        for c in ser.chunks(10_000):
            fp.write(b"\n".join(c.predictions) + b"\n")
            for headers, data in c.images:
                fi.write(json.dumps({"headers": {k: v.decode() for k, v in headers},
                                     "value_b64": base64.b64encode(data).decode()}) + "\n")
            if c.feedback:
                ff.write(b"\n".join(c.feedback) + b"\n")
