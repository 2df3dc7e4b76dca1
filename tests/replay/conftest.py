"""A recorded stretch through the real broker, consumed once by a live daemon and once by
`visionmon replay` (shared by the replay and report tests of this folder)."""

from __future__ import annotations

import io
import itertools
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer
from PIL import Image

from monitor import baseline as baseline_mod
from monitor.config import load_config
from tests.conftest import CLASSES, base_config, parse_metrics, scrape, wait_for, write_config
from visionmon import cli
from visionmon.baseline_cli import read_events
from visionmon.broker import EmbeddedBroker, create_topics
from visionmon.traffic import SyntheticTraffic, ndjson

STRETCH_S = 240
_names = itertools.count()
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+) (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def read_samples(path: Path) -> Iterator[tuple[str, frozenset[tuple[str, str]], float, float]]:
    """(name, labels, value, timestamp) of every sample of an OpenMetrics file that has
    timestamps. (prometheus_client's OpenMetrics parser drops the second point of a
    histogram series as a "duplicate", so the tests read the lines themselves; promtool
    is the real consumer and checks the format.)"""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m is not None, f"not a sample line with a timestamp: {line!r}"
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        yield m.group(1), labels, float(m.group(3).replace("Inf", "inf")), float(m.group(4))


@dataclass
class Recorded:
    """What was produced, what the live daemon exported and where the replay wrote."""

    t0: float
    config: Path
    names: dict[str, str]
    daemon_url: str
    live: dict[tuple[str, frozenset[tuple[str, str]]], float]
    replay_out: Path
    replay_stdout: str
    #: (record timestamp, event ts) of every prediction and label produced
    predictions: list[tuple[float, float]] = field(default_factory=list)
    feedback: list[tuple[float, float]] = field(default_factory=list)
    produced: dict[str, int] = field(default_factory=dict)


def _png(rng: np.random.Generator) -> bytes:
    pixels = (rng.random((28, 28)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").resize((96, 96)).save(buf, format="PNG")
    return buf.getvalue()


def _baseline(tmp: Path, loaded: Any) -> Path:
    events = SyntheticTraffic("digits", "v0", CLASSES, seed=9).events(4000, 1.0)
    decoded, _ = read_events(loaded, iter([ndjson(events)]))
    b = baseline_mod.build_baseline("digits", CLASSES, decoded, k=10, created_at=1.0,
                                    source="test reference traffic")
    return baseline_mod.save(b, tmp / "digits.baseline.json")


def _produce(broker: EmbeddedBroker, names: dict[str, str], t0: float,
             rec: Recorded) -> None:
    """Four minutes of traffic: two versions, errors, labels arriving 5-60 s later (a fifth
    wrong), sampled images, a few lagging records and a few bad ones."""
    rng = np.random.default_rng(5)
    v1 = SyntheticTraffic("digits", "v1", CLASSES, seed=1)
    v2 = SyntheticTraffic("digits", "v2", CLASSES, seed=2)
    out: list[tuple[str, float, bytes, list[tuple[str, bytes]]]] = []
    for k in range(STRETCH_S // 2):
        ts = t0 + 2 * k
        batch = v1.events(16, ts) + v2.events(4, ts)
        lag = 50.0 if k % 17 == 5 else 0.0  # a producer that fell behind
        record_ts = min(ts + lag, t0 + STRETCH_S)
        out.append((names["predictions"], record_ts, ndjson(batch), []))
        rec.predictions.extend((record_ts, ts) for _ in batch)
        for e in batch:
            if "pred" not in e or rng.random() > 0.4:
                continue
            pred = int(e["pred"])  # type: ignore[call-overload]
            wrong = rng.random() < 0.2
            label = int(rng.integers(10)) if wrong else pred
            fts = min(ts + float(rng.uniform(5, 60)), t0 + STRETCH_S)
            out.append((names["feedback"], fts, orjson.dumps(
                {"request_id": e["request_id"], "label": CLASSES[label], "ts": fts}), []))
            rec.feedback.append((fts, fts))
            if rng.random() < 0.25 or (wrong and label != pred):
                headers = [("request_id", str(e["request_id"]).encode()),
                           ("model", b"digits"), ("version", str(e["version"]).encode()),
                           ("content-type", b"image/png"), ("ts", f"{ts}".encode())]
                out.append((names["images"], ts, _png(rng), headers))
    bad = [(names["predictions"], b"{not json"), (names["predictions"], b""),
           (names["predictions"], orjson.dumps({"request_id": "x1", "ts": t0 + 10,
                                                "model": "cats", "version": "v1", "pred": 0})),
           (names["feedback"], orjson.dumps({"request_id": "x2", "ts": t0 + 20})),
           (names["images"], b"\x89PNG not really")]
    for i, (topic, value) in enumerate(bad):
        out.append((topic, t0 + 30 + 40 * i, value, []))
    out.sort(key=lambda r: r[1])
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    for topic, ts, value, headers in out:
        producer.send(topic, value, headers=headers, timestamp_ms=int(ts * 1000))
        rec.produced[topic] = rec.produced.get(topic, 0) + 1
    producer.flush()
    producer.close()


@pytest.fixture(scope="package")
def recorded(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Recorded]:
    from visionmon.app import App, wait_ready

    tmp = tmp_path_factory.mktemp("recorded")
    n = next(_names)
    names = {"predictions": f"rp-pred-{n}", "images": f"rp-img-{n}", "feedback": f"rp-fb-{n}"}
    create_topics(broker.bootstrap, list(names.values()), 3)
    t0 = math.floor(time.time() / 60) * 60 - 900.0
    cfg = base_config(broker.bootstrap, names, windows={"sizes": ["5m", "1h"], "slices": 60},
                      models=[{"name": "digits", "classes": CLASSES}],
                      baseline={"mode": "file", "path": str(tmp / "digits.baseline.json")})
    config = write_config(tmp, cfg)
    _baseline(tmp, load_config(config))
    rec = Recorded(t0, config, names, "", {}, tmp / "incident.om", "")
    _produce(broker, names, t0, rec)

    app = App(load_config(config))
    running = app.start_background()
    try:
        wait_ready(app.daemon, 60)
        rec.daemon_url = running.url

        def consumed() -> dict[str, float]:
            m = parse_metrics(scrape(running.url))
            return {t: m.get(("visionmon_records_consumed_total", frozenset({("topic", t)})), 0)
                    for t in names.values()}

        wait_for(lambda: consumed() == {names[k]: rec.produced[names[k]] for k in names},
                 60, what="the live daemon to consume every produced record")
        rec.live = parse_metrics(scrape(running.url))

        out = io.StringIO()
        from contextlib import redirect_stdout

        with redirect_stdout(out):
            rc = cli.main(["replay", "--config", str(config), "--since", str(t0),
                           "--until", str(t0 + STRETCH_S), "--out", str(rec.replay_out),
                           "--no-progress"])
        rec.replay_stdout = out.getvalue()
        assert rc == 0, rec.replay_stdout
        yield rec
    finally:
        running.stop()
