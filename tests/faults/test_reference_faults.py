"""Reference-model faults at the daemon level: an artifact missing or corrupt at start, an
out-of-memory error in inference, a model too slow for the image stream. The daemon
degrades (refuses to start when the model is required; otherwise drops images by policy),
keeps the prediction metrics exact, exports why, and recovers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.config import ConfigError
from tests.conftest import CLASSES, base_config, metric_sum, parse_metrics, scrape, wait_for
from tests.faults.harness import http_get, produce_stream
from visionmon.broker import EmbeddedBroker

torch = pytest.importorskip("torch", reason="the reference model needs the 'reference' extra")
digits_mod = pytest.importorskip("reference_model.digits")

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:.*torch\.jit\..* is deprecated:DeprecationWarning"),
    pytest.mark.slow,  # left out of `make test-fast`
]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The digits CNN, trained once for this module (about 2 s) and saved as TorchScript."""
    torch.set_num_threads(1)
    return digits_mod.build_digits_reference(Path(tmp_path_factory.mktemp("ref")),
                                             thread_nice=0)


@pytest.fixture(scope="module")
def pngs(artifact: Any) -> list[bytes]:
    return [digits_mod.render_digit(artifact.data.images[i]) for i in range(40)]


def _config(broker: EmbeddedBroker, names: dict[str, str], card: dict[str, Any]
            ) -> dict[str, Any]:
    return base_config(broker.bootstrap, names, models=[{"name": "digits", "classes": CLASSES}],
                       reference=card)


def _card(artifact: Any, **overrides: Any) -> dict[str, Any]:
    card = artifact.config.model_dump(mode="json")
    card.update({"device": "cpu", "batch_size": 8})
    card.update(overrides)
    return card


def _send_images(broker: EmbeddedBroker, topic: str, images: list[bytes], start: int) -> None:
    import confluent_kafka as ck

    p = ck.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i, data in enumerate(images, start):
        p.produce(topic, data, partition=i % 3, headers=[
            ("request_id", f"r{i}".encode()), ("model", b"digits"), ("version", b"v1"),
            ("content-type", b"image/png")])
    p.flush(10)


def _m(url: str) -> Any:
    return parse_metrics(scrape(url))


@pytest.mark.parametrize("fault", ["missing", "corrupt"])
def test_a_required_reference_model_that_cannot_load_stops_the_start_with_a_reason(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]],
        start_daemon: Callable[..., Any], artifact: Any, tmp_path: Path, fault: str) -> None:
    names = topics(partitions=3, dead_letter=False)
    bad = tmp_path / "digits.ts"
    if fault == "corrupt":
        data = bytearray(artifact.path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        bad.write_bytes(bytes(data))
    card = _card(artifact, path=str(bad), required=True)
    with pytest.raises(ConfigError) as err:
        start_daemon(_config(broker, names, card))
    text = str(err.value)
    assert "reference" in text and str(bad) in text
    if fault == "corrupt":
        assert "sha256" in text.lower() or "SHA-256" in text


def test_an_optional_reference_model_that_cannot_load_disables_shadow_scoring_only(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]],
        start_daemon: Callable[..., Any], artifact: Any, pngs: list[bytes],
        tmp_path: Path) -> None:
    names = topics(partitions=3, dead_letter=False)
    card = _card(artifact, path=str(tmp_path / "gone.ts"), required=False)
    d = start_daemon(_config(broker, names, card))
    status, why = http_get(f"{d.url}/readyz")
    assert status == 200 and "shadow scoring disabled" in why
    produce_stream(broker.bootstrap, names, 0, 2000, 3)
    _send_images(broker, names["images"], pngs[:10], 0)
    wait_for(lambda: metric_sum(_m(d.url), "visionmon_images_dropped_total") >= 10, 30)
    m = _m(d.url)
    assert metric_sum(m, "visionmon_reference_model_up") == 0
    assert metric_sum(m, "visionmon_images_dropped_total", reason="reference_unavailable") == 10
    wait_for(lambda: metric_sum(_m(d.url), "visionmon_requests_total") >= 2000, 30)
    assert metric_sum(_m(d.url), "visionmon_requests_total") == 2000


@pytest.fixture
def flaky_scorer(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Wraps the real scorer: `oom` batches raise a CUDA-style out-of-memory error first;
    while `slow` is set each batch sleeps that many seconds."""
    from reference_model import scorer as scorer_mod

    knobs: dict[str, Any] = {"oom": 0, "slow": 0.0, "calls": 0}
    lock = threading.Lock()
    real = scorer_mod.Scorer.score

    def score(self: Any, images: Any) -> Any:
        with lock:
            knobs["calls"] += 1
            oom = knobs["oom"] > 0
            if oom:
                knobs["oom"] -= 1
        if oom:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        if knobs["slow"]:
            time.sleep(knobs["slow"])
        return real(self, images)

    monkeypatch.setattr(scorer_mod.Scorer, "score", score)
    yield knobs


def test_out_of_memory_in_inference_is_counted_and_scoring_recovers(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]],
        start_daemon: Callable[..., Any], artifact: Any, pngs: list[bytes],
        flaky_scorer: dict[str, Any]) -> None:
    names = topics(partitions=3, dead_letter=False)
    flaky_scorer["oom"] = 3
    d = start_daemon(_config(broker, names, _card(artifact)))
    produce_stream(broker.bootstrap, names, 0, 3000, 3)
    _send_images(broker, names["images"], pngs[:24], 0)
    wait_for(lambda: metric_sum(_m(d.url), "visionmon_reference_images_scored_total") >= 1, 60,
             what="scoring recovered after the injected out-of-memory errors")
    m = _m(d.url)
    assert metric_sum(m, "visionmon_reference_errors_total", reason="oom") >= 1
    assert metric_sum(m, "visionmon_reference_model_up") == 1
    assert http_get(f"{d.url}/readyz")[0] == 200
    wait_for(lambda: metric_sum(_m(d.url), "visionmon_requests_total") >= 3000, 30)
    assert metric_sum(_m(d.url), "visionmon_requests_total") == 3000
    # every image is accounted for: scored, or dropped with a reason
    wait_for(lambda: metric_sum(_m(d.url), "visionmon_reference_images_scored_total")
             + metric_sum(_m(d.url), "visionmon_images_dropped_total") >= 24, 60)


def test_a_slow_model_drops_images_by_policy_and_never_slows_prediction_metrics(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]],
        start_daemon: Callable[..., Any], artifact: Any, pngs: list[bytes],
        flaky_scorer: dict[str, Any]) -> None:
    names = topics(partitions=3, dead_letter=False)
    flaky_scorer["slow"] = 0.5
    d = start_daemon(_config(broker, names, _card(artifact, queue_size=4, batch_size=2)))
    _send_images(broker, names["images"], pngs, 0)
    t0 = time.monotonic()
    produce_stream(broker.bootstrap, names, 0, 5000, 3)
    wait_for(lambda: metric_sum(_m(d.url), "visionmon_requests_total") >= 5000, 30)
    took = time.monotonic() - t0
    assert took < 15.0, f"predictions took {took:.1f}s while the model was slow"
    wait_for(lambda: metric_sum(_m(d.url), "visionmon_images_dropped_total",
                                reason="queue_full") >= 1, 30)
    m = _m(d.url)
    assert metric_sum(m, "visionmon_requests_total") == 5000
    dropped = metric_sum(m, "visionmon_images_dropped_total", reason="queue_full")
    scored_slow = metric_sum(m, "visionmon_reference_images_scored_total")
    assert dropped + scored_slow <= len(pngs)
    # the model is fast again: new images are scored
    flaky_scorer["slow"] = 0.0
    wait_for(lambda: metric_sum(_m(d.url), "visionmon_reference_images_scored_total")
             + metric_sum(_m(d.url), "visionmon_images_dropped_total") >= len(pngs), 60)
    before = metric_sum(_m(d.url), "visionmon_reference_images_scored_total")
    _send_images(broker, names["images"], pngs[:4], 1000)
    wait_for(lambda: metric_sum(_m(d.url), "visionmon_reference_images_scored_total")
             >= before + 4, 30, what="fresh images scored after recovery")
