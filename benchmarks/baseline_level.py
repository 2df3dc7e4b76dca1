"""False alarms of the in-daemon `first_events` image baseline on clean traffic, per feature,
against the level each feature is tested at.

    .venv/bin/python benchmarks/baseline_level.py [--streams 200] [--images 500]
        [--baseline-images 300] [--baseline-events 300] [--window 5m] [--scrape 15]
        [--scorer-batch 0] [--mmd-null-draws 4000] [--seed 0]

A pool of clean coloured digits (the demo's held-out images, as PNG) is scored once by the
digits reference model (intake features and embedding) and once by a production model
(probabilities). Each stream then replays requests drawn with replacement from the pool
through the statistics the daemon builds (`visionmon.app.build_statistics`: engine, drift
and shadow monitors) with `baseline.mode: first_events`: the first `--baseline-events`
predictions seal the baseline, the first `--baseline-images` scored images after that give
it its image profile, and `--images` more images follow. Every `--scrape` seconds of event
time the drift figures of the `--window` window are read as a scrape would. Per feature the
table gives the streams with an alarm at any scrape (what an operator watching one run
sees), the streams whose last scrape alarmed (one full window each), and alarms per
evaluation: the rate comparable with `level` (`drift.feature_alpha`, per evaluation).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor import baseline as baseline_mod
from monitor.config import parse_config, resolve
from monitor.events import (
    DecodeLimits,
    ModelClassIndex,
    PredictionDecoder,
    PredictionEvent,
)
from monitor.scored import ScoredImage
from visionmon.app import Statistics, build_statistics

if TYPE_CHECKING:
    import torch

    from reference_model.digits import DigitsArtifact

MODEL = "digits"


@dataclass(frozen=True, slots=True, eq=False)
class ScoredPool:
    """Clean images scored once: per pool image, what production served (a prediction
    event to copy) and what the reference model measured (a scored image to copy)."""

    reference: dict[str, object]     # the reference model's card (config section)
    classes: tuple[str, ...]
    predictions: tuple[PredictionEvent, ...]
    images: tuple[ScoredImage, ...]
    labels: np.ndarray


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """One clean stream's shape: rates in events per second of event time."""

    baseline_events: int = 300
    baseline_images: int = 300
    images_after: int = 500
    predictions_per_s: float = 7.2
    image_fraction: float = 0.1
    scrape_s: float = 15.0
    window: str = "5m"
    #: 0: each second's images are scored as they arrive (batches of about one image);
    #: N: the scorer is behind (a backlog) and hands them over N at a time
    scorer_batch: int = 0


@dataclass(frozen=True, slots=True)
class StreamResult:
    """Per feature: whether PSI ever exceeded its threshold, whether the last evaluation
    did, and the last window's events; `level` the per-feature test level."""

    any_alarm: dict[str, bool]
    final_alarm: dict[str, bool]
    final_n: dict[str, int]
    level: float
    evaluations: dict[str, int]
    alarms: dict[str, int]
    #: per feature, the window events of each alarmed evaluation
    alarm_n: dict[str, list[int]]


def trained_pool(workdir: Path, seed: int = 0) -> ScoredPool:
    """Train the digits reference model and a production model, score the held-out images."""
    import torch

    from reference_model.digits import build_digits_reference, train_digits_model

    torch.set_num_threads(1)
    ref = build_digits_reference(workdir, seed=seed)
    return clean_pool(ref, train_digits_model(ref.data, seed=seed + 1, epochs=10))


def clean_pool(ref: DigitsArtifact, production: torch.nn.Module) -> ScoredPool:
    """The demo's held-out digits as PNG: served by `production` (probabilities), scored by
    the reference model through the daemon's intake (features, embedding)."""
    import torch

    from monitor.reference_config import ImagesConfig
    from reference_model.digits import DIGIT_CLASSES, model_inputs, render_digit
    from reference_model.profile import score_images

    idx = ref.data.test
    with torch.inference_mode():
        logits = production(model_inputs(ref.data.images[idx]))[0]
        probs = torch.softmax(logits.double(), 1).numpy()
    dec = PredictionDecoder({MODEL: ModelClassIndex.of(DIGIT_CLASSES)}, DecodeLimits())
    preds = []
    for j in range(len(idx)):
        p = probs[j].round(6)
        p[int(p.argmax())] += 1.0 - p.sum()
        preds += dec.decode(orjson.dumps({"request_id": f"p{j}", "ts": 1.0, "model": MODEL,
                                          "version": "v1", "probs": p.tolist()}), 2.0).events
    items = [(f"p{j}", "v1", 1.0, render_digit(ref.data.images[i])) for j, i in enumerate(idx)]
    scored = score_images(ref.config, ImagesConfig(), DIGIT_CLASSES, items)
    assert len(scored) == len(preds) == len(idx), "every clean image decodes"
    return ScoredPool(ref.config.model_dump(mode="json"), DIGIT_CLASSES, tuple(preds),
                      tuple(scored), ref.data.labels[idx])


def fewer_null_draws(draws: int) -> Callable[..., Any]:
    """`calibrate_mmd_null` with at most `draws` simulated windows instead of the daemon's
    4,000 (most of a stream's run time): install it as `monitor.baseline.calibrate_mmd_null`.
    It sets only the MMD critical value, which this benchmark does not read; the feature
    bins and their PSI are untouched."""
    real = baseline_mod.calibrate_mmd_null

    def fewer(reference: Any, held: np.ndarray, rng: np.random.Generator, *,
              sizes: tuple[int, ...], draws: int = draws) -> Any:
        return real(reference, held, rng, sizes=sizes, draws=min(draws, limit))

    limit = draws
    return fewer


def statistics_for(pool: ScoredPool, plan: StreamPlan) -> Statistics:
    """What `visionmon run` builds for a first-events baseline with shadow scoring."""
    cfg = {"version": 1, "models": [{"name": MODEL, "classes": list(pool.classes)}],
           "windows": {"sizes": [plan.window, "1h"], "slices": 30},
           "baseline": {"mode": "first_events", "events": plan.baseline_events,
                        "images": plan.baseline_images},
           "reference": pool.reference}
    return build_statistics(resolve(parse_config(cfg, "<benchmark>")))


def run_stream(pool: ScoredPool, plan: StreamPlan, seed: int) -> StreamResult:
    """Replay one clean stream through the daemon's statistics; read the window's drift
    figures every `plan.scrape_s` seconds of event time once the image profile exists."""
    stats = statistics_for(pool, plan)
    assert stats.shadow is not None
    drift = stats.drift
    rng = np.random.default_rng(seed)
    t, images, sealed_at = 0.0, 0, None
    next_scrape = plan.scrape_s
    any_alarm: dict[str, bool] = {}
    evaluations: dict[str, int] = {}
    alarms: dict[str, int] = {}
    alarm_n: dict[str, list[int]] = {}
    last: dict[str, tuple[bool, int]] = {}
    want = plan.baseline_images + plan.images_after
    tick = 1.0
    request = 0
    pending: list[ScoredImage] = []
    while sealed_at is None or images - sealed_at < plan.images_after:
        n = rng.poisson(plan.predictions_per_s * tick)
        idx = rng.integers(0, len(pool.predictions), n)
        ts = t + np.sort(rng.random(n)) * tick
        rids = [f"s{seed}-{request + i}" for i in range(n)]
        request += n
        stats.engine.apply_predictions([pool.predictions[k]._replace(request_id=r, ts=float(s))
                                        for k, r, s in zip(idx, rids, ts, strict=True)])
        sampled = rng.random(n) < plan.image_fraction
        pending += [_scored(pool.images[k], r, float(s))
                    for k, r, s, keep in zip(idx, rids, ts, sampled, strict=True) if keep]
        while pending and len(pending) >= plan.scorer_batch:
            batch, pending = _split(pending, plan.scorer_batch)
            stats.shadow.apply_scored(batch)
            images += len(batch)
        t += tick
        baseline = drift.baselines.get(MODEL)
        if sealed_at is None and baseline is not None and baseline.embedding is not None:
            sealed_at = images
        if sealed_at is not None and t >= next_scrape:
            next_scrape = t + plan.scrape_s
            last = _alarms(stats, plan.window)
            for name, (alarm, n_window) in last.items():
                any_alarm[name] = any_alarm.get(name, False) or alarm
                evaluations[name] = evaluations.get(name, 0) + 1
                alarms[name] = alarms.get(name, 0) + alarm
                if alarm:
                    alarm_n.setdefault(name, []).append(n_window)
        if images > 10 * want:
            raise RuntimeError("the image profile never sealed")
    return StreamResult(any_alarm, {k: a for k, (a, _) in last.items()},
                        {k: n for k, (_, n) in last.items()}, drift.feature_alpha(MODEL),
                        evaluations, alarms, alarm_n)


def _split(items: list[ScoredImage], size: int) -> tuple[list[ScoredImage], list[ScoredImage]]:
    """The next scorer batch (all items when `size` is 0) and what stays queued."""
    cut = size or len(items)
    return items[:cut], items[cut:]


def _scored(template: ScoredImage, request_id: str, ts: float) -> ScoredImage:
    return ScoredImage(request_id, template.model, template.version, ts, template.ref_pred,
                       template.ref_confidence, template.embedding, template.features)


def _alarms(stats: Statistics, window: str) -> dict[str, tuple[bool, int]]:
    """{feature: (PSI above threshold, window events)} of every (version, feature)."""
    out: dict[str, tuple[bool, int]] = {}
    for (model, version) in list(stats.drift.by_version):
        for (name, w), f in stats.drift.figures(model, version).items():
            if w == window and not np.isnan(f.psi):
                out[name] = (bool(f.psi > f.threshold), f.n)
    return out


def table(results: Sequence[StreamResult]) -> str:
    """Markdown rows per feature, then "any image feature": streams with an alarm at any
    scrape; streams whose last evaluation alarmed; alarms per evaluation over all scrapes
    (the rate to compare with the level) and the window events of the alarmed ones."""
    features = sorted({k for r in results for k in r.any_alarm})
    level = results[0].level
    lines = ["| feature | streams with an alarm | last evaluation alarmed | alarms / evaluations "
             "| rate per evaluation | level | window n of the alarms |",
             "|---|---|---|---|---|---|---|"]
    for name in features:
        anyn = sum(r.any_alarm.get(name, False) for r in results)
        final = sum(r.final_alarm.get(name, False) for r in results)
        alarms = sum(r.alarms.get(name, 0) for r in results)
        evals = sum(r.evaluations.get(name, 0) for r in results)
        ns = sorted(n for r in results for n in r.alarm_n.get(name, ()))
        lines.append(f"| {name} | {anyn}/{len(results)} | {final}/{len(results)} | "
                     f"{alarms}/{evals} | {alarms / max(evals, 1):.1e} | {level:.1e} | "
                     f"{_ns(ns)} |")
    image = set(features) - {"predicted_class", "confidence", "margin", "entropy"}
    family = sum(any(r.any_alarm.get(n, False) for n in image) for r in results)
    lines.append(f"| any image feature | {family}/{len(results)} | "
                 f"{sum(any(r.final_alarm.get(n, False) for n in image) for r in results)}"
                 f"/{len(results)} | | | {level * len(image):.1e} | |")
    return "\n".join(lines)


def _ns(ns: Sequence[int]) -> str:
    """A short list of window sizes: all of them up to 6, else the range and count."""
    if len(ns) <= 6:
        return ", ".join(map(str, ns)) or "-"
    return f"{ns[0]}..{ns[-1]} ({len(ns)})"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--images", type=int, default=500, help="images after the profile")
    ap.add_argument("--baseline-images", type=int, default=300)
    ap.add_argument("--baseline-events", type=int, default=300)
    ap.add_argument("--window", default="5m")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scorer-batch", type=int, default=0,
                    help="hand images over N at a time (a scorer working off a backlog)")
    ap.add_argument("--scrape", type=float, default=15.0, help="seconds of event time")
    ap.add_argument("--mmd-null-draws", type=int, default=baseline_mod.EMBEDDING_NULL_DRAWS,
                    help="fewer: faster streams, same feature PSI (see fewer_null_draws)")
    args = ap.parse_args(argv)
    if args.mmd_null_draws < baseline_mod.EMBEDDING_NULL_DRAWS:
        baseline_mod.calibrate_mmd_null = fewer_null_draws(args.mmd_null_draws)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        pool = trained_pool(Path(tmp), args.seed)
    pooled = time.perf_counter()
    plan = StreamPlan(baseline_events=args.baseline_events,
                      baseline_images=args.baseline_images, images_after=args.images,
                      window=args.window, scorer_batch=args.scorer_batch,
                      scrape_s=args.scrape)
    results = [run_stream(pool, plan, args.seed * 100_003 + s) for s in range(args.streams)]
    done = time.perf_counter()
    print(f"{args.streams} clean streams of {len(pool.images)} pool images: baseline "
          f"{plan.baseline_events} predictions + {plan.baseline_images} images, then "
          f"{plan.images_after} images; window {plan.window}, scraped every {plan.scrape_s:g} s"
          f"{f', scorer batches of {plan.scorer_batch}' if plan.scorer_batch else ''}")
    print(table(results))
    print(f"pool {pooled - started:.1f} s, streams {done - pooled:.1f} s "
          f"({(done - pooled) / max(args.streams, 1):.2f} s each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
