"""Shadow scoring end to end (bytes -> ScoredImage) and its failure policies."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import torch

from monitor.events import ImageEvent
from monitor.reference_config import ImagesConfig, ReferenceConfig
from monitor.scored import INPUT_FEATURES, ScoredImage
from monitor.snapshot import HistogramValue, SnapshotBuilder
from reference_model.artifact import ArtifactError, load_reference
from reference_model.digits import (
    DIGIT_CLASSES,
    DigitsArtifact,
    colourise,
    digits_reference_config,
    render_digit,
)
from reference_model.intake import normalise
from reference_model.scorer import Scorer, ScoreResult, ScorerInfo, bucket_size
from reference_model.shadow import ShadowScorer, class_index_map

FEATURE = {name: i for i, name in enumerate(INPUT_FEATURES)}
BLANK_PNG = render_digit(colourise(np.zeros((32, 32))))


class Collector:
    """on_scored callback that remembers everything and can wait for a count."""

    def __init__(self) -> None:
        self.items: list[ScoredImage] = []
        self.batches: list[int] = []
        self._cv = threading.Condition()

    def __call__(self, batch: list[ScoredImage]) -> None:
        with self._cv:
            self.items.extend(batch)
            self.batches.append(len(batch))
            self._cv.notify_all()

    def wait_for(self, n: int, timeout_s: float = 30.0) -> list[ScoredImage]:
        with self._cv:
            assert self._cv.wait_for(lambda: len(self.items) >= n, timeout_s), \
                f"only {len(self.items)} of {n} scored"
            return list(self.items)


class FakeScorer:
    """A scorer without a model: one-hot on `pred`, embedding = per-image mean pixel.
    `hook(n)` runs before each batch (to sleep, block or raise)."""

    def __init__(self, hook: Callable[[int], None] | None = None, classes: int = 10,
                 pred: int = 3) -> None:
        self.hook = hook
        self.sizes: list[int] = []
        self.classes = classes
        self.pred = pred

    @property
    def info(self) -> ScorerInfo:
        return ScorerInfo("f" * 64, "cpu", 64, self.classes, 3, 0.01)

    def score(self, images: Sequence[np.ndarray]) -> ScoreResult:
        n = len(images)
        if self.hook is not None:
            self.hook(n)
        self.sizes.append(n)
        probs = np.zeros((n, self.classes), np.float32)
        probs[:, self.pred] = 1.0
        emb = np.stack([im.reshape(-1, 3).mean(0) for im in images]).astype(np.float32)
        return ScoreResult(probs, emb)


def card(**kw: object) -> ReferenceConfig:
    base = {"model": "digits", "path": "unused.ts", "sha256": "0" * 64, "input_size": 32,
            "batch_size": 16, "queue_size": 64, "linger_ms": 2.0, "thread_nice": 0}
    base.update(kw)
    return ReferenceConfig(**base)  # type: ignore[arg-type]


def events(n: int, data: bytes = BLANK_PNG, start: int = 0, model: str = "digits") -> list:
    return [ImageEvent(f"r{start + i}", model, "v1", 1000.0 + i, "image/png", data)
            for i in range(n)]


def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def make_shadow() -> Iterator[Callable[..., ShadowScorer]]:
    made: list[ShadowScorer] = []

    def make(config: ReferenceConfig, on_scored: Callable[[list[ScoredImage]], None],
             scorer: object = None, **kw: object) -> ShadowScorer:
        s = ShadowScorer(config, ImagesConfig(), DIGIT_CLASSES, on_scored,
                         scorer=scorer, **kw)  # type: ignore[arg-type]
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _score_digits(digits: DigitsArtifact, make_shadow, **render: object) -> list[ScoredImage]:
    sink = Collector()
    shadow = make_shadow(digits.config, sink)
    test = digits.data.test
    shadow.submit([ImageEvent(str(i), "digits", "v1", None, "image/png",
                              render_digit(digits.data.images[i], **render)) for i in test])
    return sink.wait_for(len(test))


def _accuracy(digits: DigitsArtifact, scored: list[ScoredImage]) -> float:
    return float(np.mean([s.ref_pred == digits.data.labels[int(s.request_id)] for s in scored]))


def _mean_features(scored: list[ScoredImage]) -> dict[str, float]:
    means = np.mean([s.features for s in scored], axis=0)
    return dict(zip(INPUT_FEATURES, means.tolist(), strict=True))


def test_digits_model_scores_clean_held_out_digits_accurately(digits: DigitsArtifact,
                                                              make_shadow) -> None:
    scored = _score_digits(digits, make_shadow)
    assert len({s.request_id for s in scored}) == len(digits.data.test)
    assert _accuracy(digits, scored) > 0.85
    assert all(np.isfinite(s.energy) for s in scored)   # each image carries its energy
    s = scored[0]
    assert s.embedding.shape == (32,) and s.embedding.dtype == np.float32
    assert 0.0 < s.ref_confidence <= 1.0 and len(s.features) == len(INPUT_FEATURES)
    assert s.model == "digits" and s.version == "v1" and s.ts > 1e9  # clock() fallback


def test_colour_shift_moves_channel_means_and_rotation_hurts_accuracy(
        digits: DigitsArtifact, make_shadow) -> None:
    clean = _mean_features(_score_digits(digits, make_shadow))
    shifted = _mean_features(_score_digits(digits, make_shadow, gains=(1.3, 1.0, 0.7)))
    assert shifted["red_mean"] > clean["red_mean"] + 0.05
    assert shifted["blue_mean"] < clean["blue_mean"] - 0.05
    assert shifted["green_mean"] == pytest.approx(clean["green_mean"], abs=0.005)
    dark = _mean_features(_score_digits(digits, make_shadow, brightness=0.5))
    assert dark["brightness"] == pytest.approx(clean["brightness"] * 0.5, rel=0.05)
    rotated = _score_digits(digits, make_shadow, rotate=90)
    assert _accuracy(digits, rotated) < 0.5


def test_scorer_preprocessing_matches_the_numpy_reference(digits: DigitsArtifact) -> None:
    cfg = digits_reference_config(digits.path, digits.sha256, channel_order="BGR",
                                  mean=[0.1, 0.2, 0.3], std=[0.5, 0.25, 0.2])
    scorer = Scorer(load_reference(cfg), cfg)
    imgs = digits.data.images[:7]
    x = scorer._to_device(list(imgs))
    np.testing.assert_allclose(x.numpy(), normalise(imgs, cfg.mean, cfg.std, "BGR"), atol=1e-5)
    out = scorer.score(list(imgs))
    assert out.probs.shape == (7, 10) and out.embeddings.shape == (7, 32)
    np.testing.assert_allclose(out.probs.sum(1), 1.0, atol=1e-5)


def test_the_scorer_hands_back_the_energy_of_the_models_own_logits(
        digits: DigitsArtifact) -> None:
    cfg = digits_reference_config(digits.path, digits.sha256)
    scorer = Scorer(load_reference(cfg), cfg)
    imgs = list(digits.data.images[:9])
    with torch.inference_mode():
        logits, _ = scorer._forward(scorer._to_device(imgs))
    want = -scipy.special.logsumexp(logits.float().numpy(), axis=1)
    out = scorer.score(imgs)
    assert out.energy is not None and out.energy.shape == (9,)
    np.testing.assert_allclose(out.energy, want, rtol=1e-5, atol=1e-4)


def test_full_queue_drops_the_oldest_and_submit_stays_fast(make_shadow) -> None:
    gate = threading.Event()
    sink = Collector()
    shadow = make_shadow(card(queue_size=50, batch_size=8, decode_workers=1), sink,
                         FakeScorer(hook=lambda n: gate.wait(10)))
    slowest = 0.0
    for k in range(20):
        start = time.perf_counter()
        shadow.submit(events(100, start=100 * k))
        slowest = max(slowest, time.perf_counter() - start)
    assert slowest < 0.05, f"submit of 100 images took {slowest * 1000:.1f} ms"
    assert shadow.queue_depth <= 50 + 2 * 8 + 1 + 8
    gate.set()

    def settled() -> bool:  # queue_depth leaves out the batch in inference: wait for counts
        counts = shadow.counts()
        return counts["scored"][""] + counts["dropped"]["queue_full"] == 2000 \
            and len(sink.items) == counts["scored"][""]

    wait_until(settled)  # times out if an accepted image is neither scored nor dropped
    counts = shadow.counts()
    scored_ids = {s.request_id for s in sink.items}
    assert counts["dropped"]["queue_full"] > 1800
    assert {f"r{i}" for i in range(1950, 2000)} <= scored_ids  # the newest survive


def test_queue_byte_budget_also_drops_oldest(make_shadow) -> None:
    gate = threading.Event()
    shadow = make_shadow(card(queue_size=1000, queue_max_bytes=20 * len(BLANK_PNG) + 1,
                              decode_workers=1), Collector(),
                         FakeScorer(hook=lambda n: gate.wait(10)))
    shadow.submit(events(200))
    assert shadow.counts()["dropped"]["queue_full"] >= 200 - 20 - 2 * 16 - 1 - 16
    gate.set()


def test_injected_oom_is_counted_batch_halved_and_later_batches_succeed(make_shadow) -> None:
    def oom_above_4(n: int) -> None:
        if n > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    gate = threading.Event()
    fake = FakeScorer(hook=lambda n: (gate.wait(10), oom_above_4(n)))
    sink = Collector()
    shadow = make_shadow(card(batch_size=16, linger_ms=50.0), sink, fake)
    shadow.submit(events(64))
    gate.set()
    sink.wait_for(64)
    counts = shadow.counts()
    assert counts["errors"]["oom"] >= 2  # 16 -> 8 -> 4
    assert counts["dropped"]["oom"] == 0 and counts["scored"][""] == 64
    assert shadow.batch_limit == 4
    assert max(fake.sizes) == 4
    shadow.submit(events(8, start=100))
    sink.wait_for(72)
    assert shadow.ready()[0]


def test_other_failures_drop_the_batch_and_the_thread_carries_on(make_shadow) -> None:
    calls = {"n": 0}

    def fail_first(n: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR")

    sink = Collector()
    shadow = make_shadow(card(batch_size=4, linger_ms=0.0), sink, FakeScorer(hook=fail_first))
    shadow.submit(events(1))
    wait_until(lambda: shadow.counts()["errors"]["inference_error"] == 1)
    shadow.submit(events(3, start=10))
    sink.wait_for(3)
    assert shadow.counts()["dropped"]["inference_error"] == 1
    assert shadow.ready()[0]


def test_callback_failure_is_counted_not_fatal(make_shadow) -> None:
    calls = {"n": 0}

    def flaky(batch: list[ScoredImage]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("engine rejected the batch")

    shadow = make_shadow(card(batch_size=2, linger_ms=0.0), flaky, FakeScorer())
    shadow.submit(events(1))
    wait_until(lambda: shadow.counts()["errors"]["callback_error"] == 1)
    shadow.submit(events(1, start=5))
    wait_until(lambda: calls["n"] == 2)
    assert shadow.ready()[0]


def test_slow_model_drops_by_policy_without_blocking_the_caller(make_shadow) -> None:
    sink = Collector()
    shadow = make_shadow(card(queue_size=32, batch_size=8, decode_workers=2), sink,
                         FakeScorer(hook=lambda n: time.sleep(0.05)))
    worst = 0.0
    for k in range(30):  # 3000 images in ~0.3 s, far more than 8 per 50 ms
        start = time.perf_counter()
        shadow.submit(events(100, start=100 * k))
        worst = max(worst, time.perf_counter() - start)
        time.sleep(0.01)
    assert worst < 0.05
    assert shadow.counts()["dropped"]["queue_full"] > 2000
    assert shadow.queue_depth <= 32 + 2 * 8 + 2 + 8
    assert len(sink.items) > 0 and shadow.ready()[0]


def test_snapshot_exports_every_reference_metric(make_shadow) -> None:
    sink = Collector()
    shadow = make_shadow(card(batch_size=4, linger_ms=0.0), sink, FakeScorer())
    empty = ImageEvent("x", "digits", "v1", None, None, b"")
    gif = ImageEvent("y", "digits", "v1", None, None, b"GIF89a" + b"\0" * 50)
    shadow.submit([*events(6), empty, gif, *events(2, model="fashion", start=50)])
    sink.wait_for(6)
    wait_until(lambda: shadow.counts()["rejected"]["format_not_allowed"] == 1)
    b = SnapshotBuilder()
    shadow.snapshot(b)
    snap = b.build()
    assert snap["visionmon_reference_model_info"] == {
        ("digits", "f" * 64, "cpu", "4", "float32"): 1.0}
    assert snap["visionmon_reference_model_up"][("digits",)] == 1.0
    assert snap["visionmon_reference_images_scored_total"][("digits",)] == 6.0
    assert snap["visionmon_reference_queue_depth"][("digits",)] == 0.0
    hist = snap["visionmon_reference_batch_seconds"][("digits",)]
    assert isinstance(hist, HistogramValue) and hist.count == len(sink.batches)
    assert snap["visionmon_images_rejected_total"][("empty",)] == 1.0
    assert snap["visionmon_images_rejected_total"][("format_not_allowed",)] == 1.0
    assert snap["visionmon_images_dropped_total"][("other_model",)] == 2.0
    assert snap["visionmon_reference_errors_total"][("digits", "oom")] == 0.0


def test_unloadable_model_disables_scoring_only_when_not_required(tmp_path: Path,
                                                                  make_shadow) -> None:
    missing = card(path=str(tmp_path / "gone.ts"), required=True)
    with pytest.raises(ArtifactError, match="does not exist"):
        make_shadow(missing, Collector())
    shadow = make_shadow(missing.model_copy(update={"required": False}), Collector())
    ok, why = shadow.ready()
    assert ok and "disabled" in why and "gone.ts" in why
    assert shadow.device == "none"
    shadow.submit(events(3))
    b = SnapshotBuilder()
    shadow.snapshot(b)
    snap = b.build()
    assert snap["visionmon_reference_model_up"][("digits",)] == 0.0
    assert "visionmon_reference_model_info" not in snap
    assert snap["visionmon_images_dropped_total"][("reference_unavailable",)] == 3.0


def test_reference_classes_are_mapped_to_production_order(make_shadow) -> None:
    reversed_classes = list(reversed(DIGIT_CLASSES))
    sink = Collector()
    # reference column 3 is "six" -> production index 6
    shadow = make_shadow(card(classes=reversed_classes, linger_ms=0.0), sink, FakeScorer(pred=3))
    shadow.submit(events(2))
    assert {s.ref_pred for s in sink.wait_for(2)} == {6}
    with pytest.raises(ValueError, match="lacks production classes"):
        class_index_map(["zero", "one"], DIGIT_CLASSES)
    with pytest.raises(ArtifactError, match="outputs 5 classes"):
        make_shadow(card(), Collector(), FakeScorer(classes=5))


def test_close_stops_threads_and_counts_what_was_queued(make_shadow) -> None:
    gate = threading.Event()
    shadow = make_shadow(card(batch_size=2, decode_workers=1), Collector(),
                         FakeScorer(hook=lambda n: gate.wait(5)))
    shadow.submit(events(20))
    wait_until(lambda: shadow.queue_depth < 20)
    gate.set()
    shadow.close()
    shadow.close()  # idempotent
    assert not shadow.ready()[0]
    c = shadow.counts()
    assert c["scored"][""] + c["dropped"]["shutdown"] <= 20
    assert all(not t.is_alive() for t in shadow._threads)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_shadow_threads_run_at_a_lower_priority(make_shadow) -> None:
    seen: list[int] = []
    sink = Collector()
    shadow = make_shadow(card(thread_nice=7, linger_ms=0.0), sink,
                         FakeScorer(hook=lambda n: seen.append(os.getpriority(os.PRIO_PROCESS, 0))))
    shadow.submit(events(1))
    sink.wait_for(1)
    assert seen and seen[0] >= 7
    assert os.getpriority(os.PRIO_PROCESS, 0) < 7  # the caller's thread is untouched


@pytest.mark.parametrize(("n", "batch", "want"), [(1, 64, 1), (3, 64, 4), (33, 64, 64),
                                                   (64, 64, 64), (65, 100, 100), (5, 3, 5)])
def test_bucket_size(n: int, batch: int, want: int) -> None:
    assert bucket_size(n, batch) == want


def test_the_scorer_logs_when_it_starts_and_stops(make_shadow, caplog) -> None:  # type: ignore[no-untyped-def]
    """Reference-model state changes reach the operator's log at INFO (issue 21)."""
    import logging

    caplog.set_level(logging.INFO, logger="reference_model.shadow")
    shadow = make_shadow(card(decode_workers=1), Collector(), FakeScorer())
    shadow.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(m.startswith("shadow scoring started for model digits: reference model on cpu")
               for m in lines), lines
    assert any(m.startswith("shadow scoring stopped for model digits") for m in lines), lines


def test_cpu_bf16_scores_in_bf16_close_to_float32_with_the_same_top1(
        digits: DigitsArtifact) -> None:
    """`cpu_bf16` runs the CPU forward pass under bf16 autocast: the probabilities move (they
    would be identical were the option ignored) but stay close, and the top-1 holds."""
    cfg = digits_reference_config(digits.path, digits.sha256)
    imgs = list(digits.data.images[:64])
    exact = Scorer(load_reference(cfg), cfg).score(imgs)
    bf16_cfg = cfg.model_copy(update={"cpu_bf16": True})
    fast = Scorer(load_reference(bf16_cfg), bf16_cfg).score(imgs)
    assert fast.probs.dtype == np.float32 and fast.probs.shape == exact.probs.shape
    # bf16 keeps 8 bits of mantissa: it moves probabilities by ~1e-3, a float32 layout
    # change (channels_last alone) by ~1e-7
    assert np.abs(fast.probs - exact.probs).max() > 1e-4
    np.testing.assert_allclose(fast.probs, exact.probs, atol=0.05)
    assert (fast.probs.argmax(1) == exact.probs.argmax(1)).mean() >= 0.95
