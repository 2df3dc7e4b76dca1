"""The real-workload demo's serving stack: precomputed softmax served per request, the
colour incident switching pools, the canary collapsing onto its class, labels delayed and
garbled by the noisy vendor."""

from __future__ import annotations

import numpy as np
import orjson

from visionmon.demo.serving import PoolServing, ServingTopics

CLASSES = tuple(f"c{i}" for i in range(50))
N = 30


class Recorder:
    """A producer that keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, tuple]] = []

    def send(self, topic: str, value: bytes, headers: tuple = ()) -> None:
        self.sent.append((topic, value, headers))

    def flush(self, timeout: float) -> None:
        pass

    def records(self, topic: str) -> list[dict]:
        out = []
        for t, v, _ in self.sent:
            if t == topic:
                out += [orjson.loads(line) for line in v.split(b"\n")]
        return out


def _serving(producer: Recorder, canary_share: float = 0.3) -> PoolServing:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(CLASSES), N)
    clean = np.full((N, len(CLASSES)), 0.1 / (len(CLASSES) - 1))
    clean[np.arange(N), labels] = 0.9        # production right on every clean image
    shifted = np.roll(clean, 1, axis=1)       # and wrong on every shifted one
    pools = {"clean": ([b"clean-%d" % i for i in range(N)], clean),
             "colour_shift": ([b"shift-%d" % i for i in range(N)], shifted)}
    return PoolServing(model="real", classes=CLASSES, pools=pools, labels=labels,
                       collapsed_class=7, content_type="image/jpeg", producer=producer,
                       topics=ServingTopics(), image_fraction=0.5, canary_share=canary_share)


def test_clean_traffic_serves_the_pool_softmax_and_its_images() -> None:
    rec = Recorder()
    s = _serving(rec)
    s.tick(400, 0.0, 1_000.0, set())
    preds = rec.records("predictions")
    assert len(preds) == 400 == s.sent["predictions"]
    assert all(abs(sum(p["probs"]) - 1.0) < 1e-9 and len(p["probs"]) == len(CLASSES)
               for p in preds)
    assert all(abs(max(p["probs"]) - 0.9) < 1e-4 for p in preds)   # rounded to 6 places
    images = [(v, dict(h)) for t, v, h in rec.sent if t == "images"]
    assert 120 < len(images) < 280 and all(v.startswith(b"clean-") for v, _ in images)
    assert {h["content-type"] for _, h in images} == {b"image/jpeg"}


def test_the_colour_incident_serves_the_shifted_pool() -> None:
    rec = Recorder()
    s = _serving(rec)
    s.tick(200, 0.0, 1_000.0, {"colour_shift"})
    assert all(v.startswith(b"shift-") for t, v, _ in rec.sent if t == "images")


def test_the_bad_canary_collapses_most_of_its_predictions_onto_one_class() -> None:
    rec = Recorder()
    s = _serving(rec, canary_share=1.0)
    s.tick(1_000, 0.0, 1_000.0, {"bad_canary"})
    preds = rec.records("predictions")
    assert {p["version"] for p in preds} == {"v2"}
    onto = np.mean([int(np.argmax(p["probs"])) == 7 for p in preds])
    assert 0.5 < onto < 0.7    # 60 % collapse, and class 7's own images
    assert all(abs(sum(p["probs"]) - 1.0) < 1e-9 for p in preds)


def test_labels_arrive_after_their_delay_and_the_noisy_vendor_garbles_them() -> None:
    rec = Recorder()
    s = _serving(rec)
    s.tick(1_000, 0.0, 1_000.0, set())
    assert s.sent["feedback"] == 0                 # none due yet
    s.tick(0, 10.0, 1_010.0, {"label_noise"})
    fb = rec.records("feedback")
    assert 200 < len(fb) < 400                   # 30 % of requests are labelled
    truth = {p["request_id"]: CLASSES[int(np.argmax(p["probs"]))]
             for p in rec.records("predictions")}
    wrong = np.mean([f["label"] != truth[f["request_id"]] for f in fb])
    assert 0.45 < wrong < 0.7                       # 60 % garbled, a few back onto the truth
    assert {f["source"] for f in fb} == {"review", "vendor-b"}
