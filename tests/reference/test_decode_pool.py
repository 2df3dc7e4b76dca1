"""Decoding in worker processes: the same answers as in-process decoding, bounded slots,
recovery when a worker dies, and shadow scoring through it."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Iterator

import numpy as np
import pytest

from monitor.events import ImageEvent
from monitor.reference_config import ImagesConfig, ReferenceConfig
from monitor.scored import MEASURED_FEATURES
from monitor.snapshot import SnapshotBuilder
from reference_model.decode_pool import DECODE_CHUNK, ProcessDecoder, _decode_chunk
from reference_model.digits import DIGIT_CLASSES, DigitsArtifact, render_digit
from reference_model.intake import DecodedImage, ImageIntake, IntakeReason, IntakeRejection
from reference_model.scorer import bucket_size, padded_batch
from reference_model.shadow import ShadowScorer, decode_in_processes

from .test_shadow import Collector, wait_until

pytestmark = pytest.mark.slow  # left out of `make test-fast`

SIZE = 32


@pytest.fixture(scope="module")
def samples(digits: DigitsArtifact) -> list[bytes]:
    """Good images in three formats and sizes, interleaved with refusals of every kind the
    bytes alone can cause."""
    imgs = digits.data.images
    good = [render_digit(imgs[i], fmt, size=size)
            for i, (fmt, size) in enumerate([("PNG", None), ("JPEG", 64), ("WEBP", 48)] * 4)]
    jpeg = render_digit(imgs[0], "JPEG", size=200)
    bad = [b"", b"not an image at all", jpeg[: len(jpeg) // 3], b"\x89PNG\r\n\x1a\n" + b"\0" * 40]
    return [x for pair in zip(good, bad * 3, strict=True) for x in pair]


@pytest.fixture
def decoder() -> Iterator[ProcessDecoder]:
    d = ProcessDecoder(ImagesConfig(), SIZE, workers=2)
    yield d
    d.close()


def assert_same(got: list[DecodedImage | IntakeRejection],
                want: list[DecodedImage | IntakeRejection]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if isinstance(w, IntakeRejection):
            assert isinstance(g, IntakeRejection) and g.reason == w.reason
        else:
            assert isinstance(g, DecodedImage)
            np.testing.assert_array_equal(g.pixels, w.pixels)
            assert g.features == w.features


def test_worker_processes_decode_exactly_like_the_daemon_would(
        decoder: ProcessDecoder, samples: list[bytes]) -> None:
    intake = ImageIntake(ImagesConfig(), SIZE)
    want = [intake.decode(b) for b in samples]
    assert len(samples) > DECODE_CHUNK  # split into chunks, order kept
    assert_same(decoder.decode(samples), want)
    assert {w.reason for w in want if isinstance(w, IntakeRejection)} >= {
        IntakeReason.EMPTY, IntakeReason.NOT_AN_IMAGE, IntakeReason.TRUNCATED}
    # pixels are copies out of the shared slots: later chunks do not overwrite them
    first = decoder.decode(samples[:1])[0]
    decoder.decode(samples[2:3] * DECODE_CHUNK)
    assert isinstance(first, DecodedImage)
    np.testing.assert_array_equal(first.pixels, want[0].pixels)  # type: ignore[union-attr]


def test_a_killed_worker_costs_no_image(decoder: ProcessDecoder, samples: list[bytes]) -> None:
    want = decoder.decode(samples)
    workers = multiprocessing.active_children()
    assert workers, "the pool started no worker processes"
    for p in workers:
        os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
    for p in workers:
        p.join(10)
    assert_same(decoder.decode(samples), want)
    assert decoder.restarts == 1


POISON = b"POISON: the worker decoding this dies"


def decode_or_die(chunk: list[bytes], slots: list[int]) -> list:
    """A worker's decode that crashes its process on POISON, as a codec bug would."""
    if POISON in chunk:
        os._exit(1)
    return _decode_chunk(chunk, slots)


def test_an_image_that_kills_its_worker_costs_only_itself(samples: list[bytes]) -> None:
    good = [b for b in samples if b.startswith(b"\x89PNG") and len(b) > 100][:6]
    intake = ImageIntake(ImagesConfig(), SIZE)
    d = ProcessDecoder(ImagesConfig(), SIZE, workers=2, decode_chunk=decode_or_die)
    try:
        got = d.decode([*good[:3], POISON, *good[3:]])
        assert_same(got[:3] + got[4:], [intake.decode(b) for b in good])
        assert isinstance(got[3], IntakeRejection)
        assert got[3].reason == IntakeReason.DECODE_ERROR and "died" in got[3].detail
        assert d.restarts == 2  # the main pool, then the quarantine worker
        assert_same(d.decode(good), [intake.decode(b) for b in good])  # new pool works
    finally:
        d.close()


def test_a_dead_decode_worker_is_counted_on_the_metrics_and_loses_no_image(
        digits: DigitsArtifact) -> None:
    card = digits.config.model_copy(update={"decode_mode": "processes", "decode_workers": 2})
    sink = Collector()
    shadow = ShadowScorer(card, ImagesConfig(), DIGIT_CLASSES, sink)
    png = render_digit(digits.data.images[0])
    try:
        shadow.submit([ImageEvent(f"a{i}", "digits", "v1", 1000.0, None, png) for i in range(8)])
        sink.wait_for(8)
        for p in multiprocessing.active_children():
            # the pool may have ended the other worker since it broke: it is gone already
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
            p.join(10)
        shadow.submit([ImageEvent(f"b{i}", "digits", "v1", 1000.0, None, png) for i in range(8)])
        sink.wait_for(16)
        b = SnapshotBuilder()
        shadow.snapshot(b)
        snap = b.build()
        assert snap["visionmon_reference_errors_total"][("digits", "decoder_died")] == 1.0
        assert snap["visionmon_reference_images_scored_total"][("digits",)] == 16.0
    finally:
        shadow.close()


def test_closed_decoder_refuses_work_and_its_workers_exit(samples: list[bytes]) -> None:
    d = ProcessDecoder(ImagesConfig(), SIZE, workers=2)
    d.decode(samples[:4])
    workers = list(d._pool._processes.values())  # type: ignore[union-attr]
    assert workers
    d.close(timeout_s=20.0)  # generous: a loaded CI machine can be slow to start or stop one
    for p in workers:  # /proc: a worker reaped by the pool's own thread may report alive
        assert p.exitcode is not None or not os.path.exists(f"/proc/{p.pid}"), \
            f"worker {p.pid} still running after close()"
    with pytest.raises(RuntimeError, match="closed"):
        d.decode(samples[:1])


def test_decode_mode_auto_uses_processes_only_for_cuda() -> None:
    def cfg(mode: str) -> ReferenceConfig:
        return ReferenceConfig(model="digits", path="x.ts", sha256="0" * 64,
                               decode_mode=mode)  # type: ignore[arg-type]

    assert decode_in_processes(cfg("auto"), "cuda")
    assert not decode_in_processes(cfg("auto"), "cpu")
    assert decode_in_processes(cfg("processes"), "cpu")
    assert not decode_in_processes(cfg("threads"), "cuda")


@pytest.mark.parametrize(("n", "batch", "one_shape", "rows"), [
    (1, 256, False, 1), (3, 256, False, 4), (200, 256, False, 256), (90, 96, False, 96),
    (1, 256, True, 256), (200, 256, True, 256), (300, 256, True, 300),
])
def test_padded_batch_is_a_power_of_two_or_one_shape_when_compiled(
        n: int, batch: int, one_shape: bool, rows: int) -> None:
    assert padded_batch(n, batch, one_shape=one_shape) == rows
    if not one_shape:
        assert rows == bucket_size(n, batch)


def test_a_decoder_failure_is_counted_and_the_decode_thread_carries_on(
        digits: DigitsArtifact, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = Collector()
    shadow = ShadowScorer(digits.config.model_copy(update={"decode_workers": 1}),
                          ImagesConfig(), DIGIT_CLASSES, sink)
    real = shadow._decode
    failures = iter([OSError("cannot start a process")])

    def flaky(chunk: list[bytes]) -> list:
        for err in failures:
            raise err
        return real(chunk)

    monkeypatch.setattr(shadow, "_decode", flaky)
    try:
        png = render_digit(digits.data.images[0])
        shadow.submit([ImageEvent(f"r{i}", "digits", "v1", 1000.0, None, png) for i in range(3)])
        sink.wait_for(2)
        wait_until(lambda: shadow.queue_depth == 0)
        counts = shadow.counts()
        assert counts["rejected"]["decode_error"] == 1 and counts["scored"][""] == 2
    finally:
        shadow.close()


def test_shadow_scoring_through_worker_processes_matches_threads(
        digits: DigitsArtifact) -> None:
    test = digits.data.test[:120]
    evs = [ImageEvent(str(i), "digits", "v1", 1000.0, "image/png",
                      render_digit(digits.data.images[i])) for i in test]
    evs.insert(5, ImageEvent("bad", "digits", "v1", 1000.0, None, b"garbage"))
    results = {}
    for mode in ("threads", "processes"):
        card = digits.config.model_copy(update={"decode_mode": mode, "decode_workers": 2})
        sink = Collector()
        shadow = ShadowScorer(card, ImagesConfig(), DIGIT_CLASSES, sink)
        try:
            shadow.submit(evs)
            scored = sink.wait_for(len(test))
            wait_until(lambda s=shadow: s.queue_depth == 0)
            assert shadow.counts()["rejected"]["not_an_image"] == 1
        finally:
            shadow.close()
        # the duplicate flag (last) depends on the order images reach the model, which the
        # decoders' race decides
        results[mode] = {s.request_id: (s.ref_pred, s.features[:len(MEASURED_FEATURES)])
                         for s in scored}
    assert results["processes"] == results["threads"]
    assert len(results["processes"]) == len(test)
